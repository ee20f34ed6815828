"""Reading answers: code blocks, human-eval completions, GSM8K numbers, MMLU letters; task loading and ids."""

import pytest

from evals import tasks as T


@pytest.fixture(scope="module")
def humaneval():
    return T.load_tasks("humaneval", limit=3)


def test_task_ids_are_decontams_item_ids(humaneval):
    assert [t.id for t in humaneval] == ["HumanEval/0", "HumanEval/1", "HumanEval/2"]
    mbpp = T.load_tasks("mbpp", limit=2)
    assert [t.id for t in mbpp] == ["mbpp/11", "mbpp/12"]  # the test split starts at 11
    assert len(T.load_tasks("mbpp")) == 500
    gsm = T.load_tasks("gsm8k", limit=1)[0]
    assert gsm.id == "gsm8k/test/0" and gsm.answer == "18"
    mmlu = T.load_tasks("mmlu", limit=1)[0]
    assert mmlu.id == "mmlu/abstract_algebra/0" and mmlu.answer == "B"
    assert "A. 0\nB. 4\nC. 2\nD. 6" in mmlu.prompt and "abstract algebra" in mmlu.prompt


def test_mmlu_prompts_carry_the_subjects_dev_examples():
    from stages.decontam.benchmarks import rows_of_file

    dev = [r for r in rows_of_file(T.MMLU_DEV) if r["subject"] == "abstract_algebra"]
    assert len(dev) == 5
    zero, five = T.load_tasks("mmlu", limit=1)[0], T.load_tasks("mmlu", limit=1, mmlu_shots=5)[0]
    assert "Answer: " not in zero.prompt.replace("Answer with", "")
    assert [line for line in five.prompt.splitlines() if line.startswith("Answer: ")] == [
        f"Answer: {r['answer_letter']}" for r in dev
    ]
    assert five.prompt.index(dev[-1]["question"]) < five.prompt.index(zero.prompt.split("\n\n", 1)[1])
    assert five.prompt.endswith("D. 6\nAnswer with the letter of the correct choice (A, B, C or D).")
    two = T.load_tasks("mmlu", limit=1, style="completion", mmlu_shots=2)[0]
    assert (
        two.prompt.count("\nAnswer: ") == 2 and two.prompt.endswith("D. 6\nAnswer:") and two.stop == ("\n",)
    )
    assert dev[2]["question"] not in two.prompt  # the first two examples only


def test_gsm8k_completion_prompt_has_solved_examples_without_calculator_notes():
    task = T.load_tasks("gsm8k", limit=1, style="completion", gsm8k_shots=3)[0]
    assert task.prompt.count("Question: ") == 4 and task.prompt.count("\n#### ") == 3
    assert "<<" not in task.prompt and "Natalia sold 48/2 = 24 clips in May." in task.prompt
    assert task.prompt.endswith("at the farmers' market?\nAnswer:") and task.completion_style
    chat = T.load_tasks("gsm8k", limit=1, gsm8k_shots=3)[0]  # a chat model is asked zero-shot
    assert "####" not in chat.prompt.split("\n\n", 1)[1] and not chat.completion_style


def test_humaneval_completion_from_each_kind_of_reply(humaneval):
    task = humaneval[0]
    body = "    return True\n"
    # the prompt repeated, then the body: the completion is what follows the prompt
    assert T.humaneval_completion(task, f"```python\n{task.code_prompt}{body}```") == body
    # a whole function of its own: kept whole, after the prompt's docstring-only definition
    whole = "def has_close_elements(numbers, threshold):\n    return True\n"
    completion = T.humaneval_completion(task, f"Sure!\n```python\n{whole}```\nDone.")
    assert completion.strip() == whole.strip()
    program = T.program(task, completion)
    assert program.startswith(task.code_prompt) and program.rstrip().endswith("check(has_close_elements)")
    # a bare body without fences
    assert T.humaneval_completion(task, body) == body


def test_code_of_prefers_python_blocks():
    reply = "```text\nout\n```\n```python\nx = 1\n```"
    assert T.code_of(reply) == "x = 1\n"
    assert T.code_of("```js\nlet x\n```") == "let x\n"
    assert T.code_of("```python\nunclosed = 1\n") == "unclosed = 1\n"


@pytest.mark.parametrize(
    "reply, number",
    [
        ("16 - 3 - 4 = 9 eggs, 9 * 2 = 18.\n#### 18", "18"),
        ("#### $1,234", "1234"),
        ("The answer is 42.", "42"),
        ("It costs 3.50 dollars", "3.5"),
        ("so -7 degrees", "-7"),
        ("#### 5.0", "5"),
        ("no number here", None),
    ],
)
def test_gsm8k_extract(reply, number):
    assert T.gsm8k_extract(reply) == number


@pytest.mark.parametrize(
    "reply, letter",
    [
        ("Answer: C", "C"),
        ("The answer is (B).", "B"),
        ("B", "B"),
        ("D. 6", "D"),
        ("I'd say A is right", "A"),
        ("none of them", None),
    ],
)
def test_mmlu_extract(reply, letter):
    assert T.mmlu_extract(reply) == letter


def test_benchmark_of_ids():
    assert T.benchmark_of("HumanEval/3") == "humaneval"
    assert T.benchmark_of(T.normalise_id("Mbpp/11")) == "mbpp"
    assert T.normalise_id("Mbpp/11") == "mbpp/11"
    assert T.benchmark_of("gsm8k/test/2") == "gsm8k"
    assert T.benchmark_of("arc/1") is None
