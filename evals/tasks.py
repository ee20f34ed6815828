"""The four benchmarks as eval tasks: the prompt a model sees, how its answer is read, and how it is scored.

| benchmark | tasks | prompt | answer read as | scored by |
| --- | --- | --- | --- | --- |
| humaneval | 164 (`HumanEval/0` ...) | the function signature + docstring, asked for the whole function in a ```python block | the function body after the prompt (human-eval's `completion`) | running `check(entry_point)` in the sandbox |
| mbpp | 500: the test split, task_ids 11-510 (`mbpp/11` ...) | the task text and its three asserts, as in the MBPP paper | the code block | running the asserts in the sandbox |
| gsm8k | 1,319 test (`gsm8k/test/0` ...) | the question, asked to end with `#### <number>` | the number after `####`, else the last number | numeric equality with the reference's `####` number |
| mmlu | 14,042 test (`mmlu/<subject>/<idx>`) | the MMLU paper's "multiple choice questions (with answers) about <subject>" with lettered choices, after `mmlu_shots` (default 5) solved examples of the subject from the dev split (data/benchmarks/mmlu/mmlu_dev.jsonl.gz) | `Answer: X`, else the first standalone letter A-D | equality with the answer letter |

That is the `chat` prompt style. The `completion` style (`prompt_style: completion`, for base models) uses the
plain-text prompts base models are usually scored with, each with stop strings so that generation ends with the
answer:

| benchmark | completion prompt | stops at |
| --- | --- | --- |
| humaneval | the prompt itself (signature + docstring): the model writes the body | the Codex paper's `\nclass`, `\ndef`, `\n#`, `\nif`, `\nprint` |
| mbpp | the MBPP paper's 3-shot prompt (tasks 2, 3, 4 of the prompt split as examples; none when the rows lack them) ending in `[BEGIN]` | `[DONE]` |
| gsm8k | `gsm8k_shots` (default 8) solved examples (`Question: ...\nAnswer: <solution> #### N`, the first train rows, calculator annotations removed; data/benchmarks/gsm8k/train_first8.jsonl.gz), then `Question: <question>\nAnswer:` | `Question:` |
| mmlu | the same examples and question as above, ending in `Answer:` (the MMLU paper's prompt) | a newline |

The ids are decontam's item ids, so an eval result and an audit name the same item. Rows come from decontam's
loader (`stages.decontam.benchmarks`): the copies shipped in data/benchmarks/, a `benchmark_paths` entry, or the
local hub cache.

Programs follow human-eval's layout: `prompt + completion + "\\n\\n" + test + "\\n\\ncheck(entry_point)\\n"`. A
chat model usually answers with the whole function rather than its body: the completion is then the code block
itself, which follows the prompt's own (docstring-only) definition and replaces it. `--completions FILE` takes
human-eval's samples format (`task_id`, `completion`), so scoring runs apart from generation.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from functools import partial

from factory.errors import UserError
from stages.decontam.benchmarks import SHIPPED, locate, read_rows, rows_of_file
from stages.decontam.config import BenchmarkSpec

MBPP_TEST_IDS = range(11, 511)  # the MBPP paper's test split
GSM8K_STOP = ("\n\nQuestion:", "\n\nProblem:")  # a chat reply that rambles on into the next problem
BENCHMARK_ORDER = ("humaneval", "mbpp", "gsm8k", "mmlu")


@dataclass(frozen=True)
class Task:
    id: str
    benchmark: str
    prompt: str  # the user message (chat style) or the text the model continues (completion style)
    answer: str  # gsm8k: the number; mmlu: the letter; code: "" (tests decide)
    code_prompt: str = ""  # humaneval: the signature + docstring the completion follows
    test: str = ""  # humaneval: the check function; mbpp: the asserts (with the setup code)
    entry_point: str = ""
    completion_style: bool = False  # `prompt` is plain text for a base model, not a chat message
    stop: tuple[str, ...] = ()  # where generation ends


# ---- loading ---------------------------------------------------------------------------------------------------


def load_tasks(
    name: str,
    path: str | None = None,
    limit: int | None = None,
    style: str = "chat",
    mmlu_shots: int = 0,
    gsm8k_shots: int = 0,
) -> list[Task]:
    """The tasks of one benchmark, in the benchmark's order (the first `limit` when given), with the prompts of
    `style` (`chat` or `completion`); MMLU's with `mmlu_shots` solved examples of the subject first, GSM8K's
    completion prompts with `gsm8k_shots`."""
    source = locate(BenchmarkSpec(name=name, path=path))
    rows = read_rows(source)
    make = {"humaneval": _humaneval, "mbpp": _mbpp, "gsm8k": _gsm8k, "mmlu": _mmlu}[name]
    if name == "mmlu":
        make = partial(_mmlu, shots=_mmlu_shots(mmlu_shots))
    restyle = _completion_style(name, rows, gsm8k_shots) if style == "completion" else None
    tasks = []
    for i, row in enumerate(rows):
        task = make(row, i)
        if task is not None:
            tasks.append(restyle(task, row) if restyle else task)
        if limit is not None and len(tasks) >= limit:
            break
    if not tasks:
        raise UserError(f"eval: {name}: no tasks in {source.paths[0]}")
    return tasks


HUMANEVAL_PROMPT = (
    "Complete the following Python function. Reply with the whole function (its imports included) in one "
    "```python code block.\n\n```python\n{prompt}```"
)

MBPP_PROMPT = (
    "You are an expert Python programmer, and here is your task: {text} Your code should pass these tests:\n\n"
    "{tests}\n\nReply with the code in one ```python code block."
)

GSM8K_PROMPT = (
    "Solve the following math problem step by step. End your answer with a line of the form "
    "'#### <number>'.\n\n{question}"
)

MMLU_PROMPT = (
    "The following are multiple choice questions (with answers) about {subject}.\n\n{shots}{question}\n"
    "{choices}\nAnswer with the letter of the correct choice (A, B, C or D)."
)
MMLU_DEV = SHIPPED / "mmlu" / "mmlu_dev.jsonl.gz"  # 5 solved examples per subject


def _humaneval(row: dict, i: int) -> Task:
    prompt = row["prompt"]
    return Task(
        id=str(row.get("task_id") or f"HumanEval/{i}"),
        benchmark="humaneval",
        prompt=HUMANEVAL_PROMPT.format(prompt=prompt),
        answer="",
        code_prompt=prompt,
        test=row["test"],
        entry_point=row["entry_point"],
    )


def _mbpp(row: dict, i: int) -> Task | None:
    task_id = int(row.get("task_id", i))
    if task_id not in MBPP_TEST_IDS:
        return None
    tests = list(row.get("test_list") or [])
    setup = row.get("test_setup_code") or ""
    text = row.get("text") or row.get("prompt") or ""
    return Task(
        id=f"mbpp/{task_id}",
        benchmark="mbpp",
        prompt=MBPP_PROMPT.format(text=text, tests="\n".join(tests)),
        answer="",
        test="\n".join([setup, *tests]).strip() + "\n",
    )


def _gsm8k(row: dict, i: int) -> Task:
    return Task(
        id=f"gsm8k/test/{i}",
        benchmark="gsm8k",
        prompt=GSM8K_PROMPT.format(question=row["question"]),
        answer=gsm8k_reference(row["answer"]),
        stop=GSM8K_STOP,
    )


def _mmlu_choices(row: dict) -> str:
    return "\n".join(f"{chr(65 + j)}. {c}" for j, c in enumerate(row["choices"]))


def _mmlu_letter(row: dict) -> str:
    return str(row.get("answer_letter") or "ABCD"[int(row["answer"])])


def _mmlu_shots(k: int) -> dict[str, str]:
    """subject -> its first k dev examples as prompt text (`question`, choices, `Answer: X`, a blank line)."""
    examples: dict[str, list[str]] = {}
    for row in rows_of_file(MMLU_DEV) if k > 0 and MMLU_DEV.exists() else ():
        mine = examples.setdefault(str(row["subject"]), [])
        if len(mine) < k:
            mine.append(f"{row['question']}\n{_mmlu_choices(row)}\nAnswer: {_mmlu_letter(row)}\n\n")
    return {subject: "".join(texts) for subject, texts in examples.items()}


def _mmlu(row: dict, i: int, shots: dict[str, str] | None = None) -> Task:
    subject = str(row.get("subject", "all"))
    return Task(
        id=f"mmlu/{subject}/{row.get('idx', i)}",
        benchmark="mmlu",
        prompt=MMLU_PROMPT.format(
            subject=subject.replace("_", " "),
            shots=(shots or {}).get(subject, ""),
            question=row["question"],
            choices=_mmlu_choices(row),
        ),
        answer=_mmlu_letter(row),
    )


# ---- the completion style (base models) -----------------------------------------------------------------------

HUMANEVAL_STOP = ("\nclass", "\ndef", "\n#", "\nif", "\nprint")  # the Codex paper's
GSM8K_SHOTS = SHIPPED / "gsm8k" / "train_first8.jsonl.gz"  # solved examples for base models
_CALCULATOR = re.compile(r"<<[^>]*>>")  # GSM8K's calculator annotations: `48/2 = <<48/2=24>>24`
MBPP_SHOTS = (2, 3, 4)  # the MBPP paper's few-shot examples, from its prompt split (task ids 1-10)
MBPP_COMPLETION = (
    "You are an expert Python programmer, and here is your task: {text} Your code should pass these tests:\n\n"
    "{tests}\n[BEGIN]\n"
)


def _completion_style(name: str, rows: list[dict], gsm8k_shots: int = 0):
    """`restyle(task, row) -> task` with the completion-style prompt and stops of benchmark `name`."""
    if name == "humaneval":
        return lambda task, row: replace(
            task, prompt=task.code_prompt, stop=HUMANEVAL_STOP, completion_style=True
        )
    if name == "mbpp":
        shots = "".join(
            _mbpp_text(row) + row["code"].strip() + "\n[DONE]\n\n"
            for row in rows
            if int(row.get("task_id", -1)) in MBPP_SHOTS
        )
        return lambda task, row: replace(
            task, prompt=shots + _mbpp_text(row), stop=("[DONE]",), completion_style=True
        )
    if name == "gsm8k":
        shots = "".join(
            f"Question: {r['question']}\nAnswer: {_CALCULATOR.sub('', r['answer'])}\n\n"
            for r in list(rows_of_file(GSM8K_SHOTS))[:gsm8k_shots]
        )
        return lambda task, row: replace(
            task,
            prompt=f"{shots}Question: {row['question']}\nAnswer:",
            stop=("Question:",),
            completion_style=True,
        )
    return lambda task, row: replace(  # the chat prompt without its last line: it ends in `Answer:`
        task, prompt=task.prompt.rsplit("\n", 1)[0] + "\nAnswer:", stop=("\n",), completion_style=True
    )


def _mbpp_text(row: dict) -> str:
    text = row.get("text") or row.get("prompt") or ""
    return MBPP_COMPLETION.format(text=text, tests="\n".join(row.get("test_list") or []))


def benchmark_of(task_id: str) -> str | None:
    """Which benchmark a task id belongs to (for `--completions`): HumanEval/3, mbpp/11 or Mbpp/11, ..."""
    head = task_id.split("/", 1)[0].lower()
    return {"humaneval": "humaneval", "mbpp": "mbpp", "gsm8k": "gsm8k", "mmlu": "mmlu"}.get(head)


def normalise_id(task_id: str) -> str:
    """EvalPlus writes `Mbpp/11`; decontam and this module write `mbpp/11`."""
    return "mbpp/" + task_id.split("/", 1)[1] if task_id.startswith("Mbpp/") else task_id


# ---- reading answers -------------------------------------------------------------------------------------------

_FENCE = re.compile(r"```[ \t]*([\w+#-]*)[^\n]*\n(.*?)(?:```|\Z)", re.S)


def code_of(reply: str) -> str:
    """The code in a reply: the first python (or untagged) fenced block, else the first block, else the reply."""
    blocks = _FENCE.findall(reply)
    for lang, body in blocks:
        if lang.lower() in ("python", "py", "python3", ""):
            return body
    return blocks[0][1] if blocks else reply


def humaneval_completion(task: Task, reply: str) -> str:
    """human-eval's `completion` for a reply: what follows the prompt. A reply that repeats the prompt gives the
    rest of it; a reply that defines the function gives the whole code (it replaces the prompt's definition);
    anything else is taken as the body."""
    code = code_of(reply)
    if code.startswith(task.code_prompt):
        return code[len(task.code_prompt) :]
    if re.search(rf"^\s*def\s+{re.escape(task.entry_point)}\s*\(", code, re.M):
        return "\n" + code
    return code


def program(task: Task, completion: str) -> str:
    """The whole program a code task runs in the sandbox; it passes when it exits 0."""
    if task.benchmark == "humaneval":
        return f"{task.code_prompt}{completion}\n\n{task.test}\n\ncheck({task.entry_point})\n"
    return f"{completion}\n\n{task.test}"


_NUMBER = re.compile(r"-?\d[\d,]*(?:\.\d+)?|-?\.\d+")


def _number(text: str) -> str | None:
    text = text.replace(",", "").replace("$", "").strip().rstrip(".")
    try:
        value = float(text)
    except ValueError:
        return None
    return str(int(value)) if value == int(value) else repr(value)


def gsm8k_reference(answer: str) -> str:
    """The number after GSM8K's `####`."""
    return _number(answer.rsplit("####", 1)[-1]) or ""


def gsm8k_extract(reply: str) -> str | None:
    """The answer a reply gives: the number after its last `####`, else its last number."""
    if "####" in reply:
        found = _NUMBER.findall(reply.rsplit("####", 1)[1])
        if found:
            return _number(found[0])
    found = _NUMBER.findall(reply)
    return _number(found[-1]) if found else None


_ANSWER_LETTER = re.compile(r"answer(?: is)?\s*[:\-]?\s*\(?([ABCD])\b", re.I)
_LETTER = re.compile(r"(?<![\w'])\(?([ABCD])[\).:]?(?![\w'])")


def mmlu_extract(reply: str) -> str | None:
    """The letter a reply picks: `Answer: X` (or `the answer is X`), else its first standalone A-D."""
    found = _ANSWER_LETTER.search(reply) or _LETTER.search(reply.strip())
    return found.group(1).upper() if found else None


def extract(task: Task, reply: str) -> str:
    """What is scored for a reply: the completion for code tasks (a completion-style reply is the code itself),
    the answer for the others ("" if none)."""
    if task.completion_style and task.benchmark in ("humaneval", "mbpp"):
        return reply
    if task.benchmark == "humaneval":
        return humaneval_completion(task, reply)
    if task.benchmark == "mbpp":
        return code_of(reply)
    if task.benchmark == "gsm8k":
        return gsm8k_extract(reply) or ""
    return mmlu_extract(reply) or ""
