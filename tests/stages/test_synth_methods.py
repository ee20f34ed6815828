"""The generation methods of `synth` as pure functions: templates, ROUGE-L, and each method's prompts, parsers and
filters (stages/synth/{templates,rouge,self_instruct,evol_instruct,oss_instruct}.py). No client, no network."""

from __future__ import annotations

import hashlib
import random

import pytest

from stages.synth import evol_instruct as ev
from stages.synth import oss_instruct as oi
from stages.synth import self_instruct as si
from stages.synth import templates
from stages.synth.rouge import RougePool, lcs_length, rouge_l, tokenize

# ---- templates ------------------------------------------------------------------------------------------------


def test_every_builtin_template_loads_with_a_version_of_its_text():
    names = sorted(p.stem for p in templates.BUILTIN_DIR.glob("*.txt"))
    assert names == sorted(n for ns in templates.BY_METHOD.values() for n in ns)
    for name in names:
        tpl = templates.load(name)
        raw = tpl.path.read_text(encoding="utf-8")
        assert tpl.text == raw[:-1] if raw.endswith("\n") else raw
        assert tpl.version == hashlib.sha256(tpl.text.encode()).hexdigest()[:8]
        assert len(tpl.version) == 8


def test_template_placeholders_render_and_other_braces_are_literal(tmp_path):
    (tmp_path / "evol_answer.txt").write_text(
        'Answer {instruction} as JSON {"a": { x }} {{instruction}} {}\n'
    )
    tpl = templates.load("evol_answer", tmp_path)
    assert tpl.fields == {"instruction"}
    assert tpl.render(instruction="Q?", unused=1) == 'Answer Q? as JSON {"a": { x }} {instruction} {}'
    assert tpl.version != templates.load("evol_answer").version
    # the value itself is not scanned for placeholders
    assert tpl.render(instruction="{instruction}").startswith("Answer {instruction} as")


def test_template_missing_field_is_a_value_error_naming_template_and_key():
    with pytest.raises(ValueError, match=r"evol_equality.*\{second\}"):
        templates.load("evol_equality").render(first="a")


def test_template_override_errors(tmp_path):
    (tmp_path / "evol_answer.txt").write_text("Answer {instrution}\n")
    with pytest.raises(ValueError, match=r"evol_answer.*unknown placeholder \{instrution\}"):
        templates.load("evol_answer", tmp_path)
    with pytest.raises(templates.TemplateError, match="no such folder"):
        templates.load("evol_answer", tmp_path / "missing")
    with pytest.raises(templates.TemplateError, match="unknown template"):
        templates.load("nope")
    with pytest.raises(templates.TemplateError, match="instrution"):
        templates.check_dir(tmp_path)


def test_template_override_is_used_only_for_the_files_present(tmp_path):
    (tmp_path / "oss_instruct_system.txt").write_text("You write problems.\n")
    msgs = oi.oss_prompt("x = 1\n", "python", tmp_path)
    assert msgs[0] == ("system", "You write problems.")
    assert msgs[1][1] == oi.oss_prompt("x = 1\n", "python")[1][1]
    assert templates.check_dir(tmp_path) == ["oss_instruct_system"]
    v = templates.versions("oss_instruct", tmp_path)
    assert v["oss_instruct_system"] == templates.load("oss_instruct_system", tmp_path).version
    assert v["oss_instruct"] == templates.load("oss_instruct").version


# ---- ROUGE-L --------------------------------------------------------------------------------------------------


def _lcs_dp(a, b) -> int:
    prev = [0] * (len(b) + 1)
    for x in a:
        cur = [0]
        for j, y in enumerate(b):
            cur.append(prev[j] + 1 if x == y else max(prev[j + 1], cur[j]))
        prev = cur
    return prev[-1]


def test_tokenize_is_rouge_scores_default():
    assert tokenize("Don't STOP: the 2nd-best, café!") == ["don", "t", "stop", "the", "2nd", "best", "caf"]
    assert tokenize("写一首诗") == []


def test_rouge_l_f_measure():
    # LCS("the cat sat on the mat", "the cat on the mat") = 5: F = 2 * 5 / (6 + 5)
    assert rouge_l("The cat sat on the mat.", "the cat on the mat") == pytest.approx(10 / 11)
    assert rouge_l("a b c", "a b c") == 1.0
    assert rouge_l("a b c", "x y z") == 0.0
    assert rouge_l("", "a") == 0.0


def test_bit_parallel_lcs_agrees_with_dp():
    rng = random.Random(7)
    for _ in range(500):
        a = [rng.choice("abcdef") for _ in range(rng.randint(0, 70))]
        b = [rng.choice("abcdef") for _ in range(rng.randint(0, 70))]
        assert lcs_length(a, b) == _lcs_dp(a, b)


def test_rouge_pool_best_agrees_with_brute_force():
    rng = random.Random(3)
    words = "the a of to write give list explain story poem list sort number names city why how".split()

    def sentence() -> str:
        return " ".join(rng.choice(words) for _ in range(rng.randint(1, 14)))

    pool = RougePool()
    assert pool.best("anything") == (0.0, -1)
    for _ in range(60):
        pool.add(sentence())
    for step in range(300):
        q = sentence()
        scores = [
            2 * _lcs_dp(tokenize(q), tokenize(t)) / (len(tokenize(q)) + len(tokenize(t))) for t in pool.texts
        ]
        want = max(scores)
        score, index = pool.best(q)
        assert score == pytest.approx(want)
        assert index == scores.index(want)  # ties go to the first pooled
        assert pool.scores(q) == pytest.approx(scores)
        if step % 3 == 0:
            pool.add(q)  # grows between queries, as the Self-Instruct loop does
    assert pool.best("zzz qqq") == (0.0, -1)
    assert pool.best("!!!") == (0.0, -1)


# ---- Self-Instruct --------------------------------------------------------------------------------------------

HUMAN = [f"Seed task number {i} about a topic." for i in range(30)]
MACHINE = [f"Generated task number {i} about a topic." for i in range(5)]


def test_sampling_is_deterministic_and_mixes_6_human_and_2_machine():
    a = si.sample_prompt_instructions(HUMAN, MACHINE, random.Random(1))
    b = si.sample_prompt_instructions(HUMAN, MACHINE, random.Random(1))
    assert a == b
    assert len(a) == 8 and len(set(a)) == 8
    assert sum(x in MACHINE for x in a) == 2 and sum(x in HUMAN for x in a) == 6
    assert a != si.sample_prompt_instructions(HUMAN, MACHINE, random.Random(2))
    # no machine instructions yet: 8 human ones (the paper keeps 8 in the prompt)
    first = si.sample_prompt_instructions(HUMAN, [], random.Random(1))
    assert len(first) == 8 and all(x in HUMAN for x in first)
    one = si.sample_prompt_instructions(HUMAN, MACHINE[:1], random.Random(1))
    assert len(one) == 8 and sum(x in MACHINE for x in one) == 1
    assert len(si.sample_prompt_instructions(HUMAN[:3], [], random.Random(1))) == 3


def test_encode_prompt_is_the_papers_numbered_list():
    msgs = si.encode_prompt(["Sort   the list:", "Name a\ncolour."])
    assert msgs == [("user", "Come up with a series of tasks:\n1. Sort the list\n2. Name a colour.\n3.")]


@pytest.mark.parametrize(
    ("reply", "want"),
    [
        # continues the list; the last item is cut off
        (
            "9. Write a poem about the sea.\n10. Explain why the sky is blue.\n11. List three fruits that are",
            ["Write a poem about the sea.", "Explain why the sky is blue."],
        ),
        # completion style: the reply starts with item 9's text
        (
            " Summarize the article in two sentences.\n10. Translate the sentence into French.\n11.",
            ["Summarize the article in two sentences.", "Translate the sentence into French."],
        ),
        # echoes the shown items first, then goes on
        (
            "1. Seed one.\n2. Seed two.\n8. Seed eight.\n9. Give three tips for staying healthy.\n"
            "10) **Describe a sunset in one paragraph.**",
            ["Give three tips for staying healthy.", "Describe a sunset in one paragraph."],
        ),
        # numbers its own list from 1, with chatter around it
        (
            "Sure! Here are more tasks:\n\n1. Tell me a joke about cats.\n2. **What** is the capital of Peru?\n\n"
            "Let me know if you want more!",
            ["Tell me a joke about cats.", "**What** is the capital of Peru?"],
        ),
        # an item running over two lines, a label, markdown numbers, quotes
        (
            '**9.** Task: Rewrite the following sentence\nin the passive voice.\n10. "Find the odd one out."\n',
            ["Rewrite the following sentence in the passive voice.", "Find the odd one out."],
        ),
        ("", []),
        ("I cannot help with that", []),
        ("9.", []),
    ],
)
def test_parse_instructions(reply, want):
    assert si.parse_instructions(reply, 9) == want


def test_parse_instructions_truncated_flag_drops_the_last_item():
    reply = "9. Write a poem about the sea.\n10. Explain why the sky is blue."
    assert si.parse_instructions(reply, 9) == ["Write a poem about the sea.", "Explain why the sky is blue."]
    assert si.parse_instructions(reply, 9, truncated=True) == ["Write a poem about the sea."]


def test_filter_instruction_each_rule():
    pool = RougePool(["Write a short story about a brave knight and a dragon.", "Name three primary colors."])
    ok = "Explain the difference between a virus and a bacterium."
    assert si.filter_instruction(ok, pool) is None
    assert si.filter_instruction("Sort the numbers.", pool)[0] == "too_short"
    assert si.filter_instruction("Sort the numbers ascending.", pool) is None
    assert si.filter_instruction("word " * 151, pool)[0] == "too_long"
    reason, detail = si.filter_instruction("Draw a picture of your favourite animal.", pool)
    assert (reason, detail["keyword"]) == ("blacklisted_keyword", "picture")
    assert si.filter_instruction("Tell me how to go to the station.", pool)[0] == "blacklisted_keyword"
    assert (
        si.filter_instruction("Describe the mapping between keys and values.", pool) is None
    )  # whole words only
    assert si.filter_instruction("Write a program that prints primes.", pool)[0] == "write_a_program"
    assert (
        si.filter_instruction("Write a program that prints primes.", pool, drop_write_a_program=False) is None
    )
    assert si.filter_instruction("- List some fruits please.", pool)[0] == "starts_with_punctuation"
    assert si.filter_instruction("Écris un poème sur la mer.", pool)[0] == "non_english"
    assert (
        si.filter_instruction("Summarize 这篇 文章 的 主要 内容 并 给出 三个 关键点.", pool)[0]
        == "non_english"
    )
    reason, detail = si.filter_instruction("Write a short story about a brave knight and his dragon.", pool)
    assert reason == "too_similar"
    assert detail["most_similar"] == pool.texts[0] and detail["pool_index"] == 0
    assert detail["score"] == pytest.approx(2 * 10 / 22, abs=1e-4) and detail["score"] > 0.7
    assert si.filter_instruction("Write a short story about a brave knight and his dragon.", None) is None
    assert (
        si.filter_instruction("Write a short story about a brave knight and his dragon.", pool, 0.95) is None
    )


@pytest.mark.parametrize(
    ("reply", "want"),
    [
        ("Yes", True),
        (" yes.", True),
        ("**Yes**", True),
        ("Is it classification? No", False),
        ("No, it asks for open-ended text.", False),
        ("The answer is yes.", True),
        ("TRUE", True),
        ("Maybe, it depends", None),
        ("", None),
        ("Not sure: yes or no", None),
    ],
)
def test_parse_is_classification(reply, want):
    assert si.parse_is_classification(reply) is want


def test_classification_and_instance_prompts_follow_the_paper():
    ((role, text),) = si.is_classification_prompt("  Detect spam. ")
    assert role == "user"
    assert text.startswith(
        "Can the following task be regarded as a classification task with finite output labels?"
    )
    assert text.endswith("Task: Detect spam.\nIs it classification?")
    gen = si.instances_prompt("Sort a list.", False)[0][1]
    clf = si.instances_prompt("Detect spam.", True)[0][1]
    assert gen.startswith("Come up with examples for the following tasks.") and gen.endswith(
        "Task: Sort a list."
    )
    assert clf.startswith("Given the classification task definition and the class labels")
    assert clf.endswith("Task: Detect spam.")


@pytest.mark.parametrize(
    ("reply", "want"),
    [
        (
            "Example 1\nSentence: I like it.\nOutput: Nice.\nExample 2\nSentence: Bad day.\nOutput: Sad.\n"
            "Task: Something else\nOutput: not this",
            [("Sentence: I like it.", "Nice."), ("Sentence: Bad day.", "Sad.")],
        ),
        ("Output: 85°F = 29.44°C", [("", "85°F = 29.44°C")]),
        ("Output:\n- Plank\n- Sit-ups", [("", "- Plank\n- Sit-ups")]),
        # a chat reply: echoes the task, bold labels, Input: label removed from the input
        (
            "Task: Sort the list.\n**Example 1:**\nInput: [3, 1, 2]\n**Output:** [1, 2, 3]\n\n**Example 2:**\n"
            "Input: [9, 8]\nOutput: [8, 9]",
            [("[3, 1, 2]", "[1, 2, 3]"), ("[9, 8]", "[8, 9]")],
        ),
        # preamble chatter before Example 1 is not an instance
        ("Sure, here you go.\nExample 1\nList: 2, 1\nOutput: 1, 2", [("List: 2, 1", "1, 2")]),
        # a field ending in a colon (cut off), an output equal to its input, duplicates
        (
            "Example 1\nList: a\nOutput: b\nExample 2\nList: c\nOutput:\nExample 3\nx\nOutput: x\nExample 4\n"
            "List: a\nOutput: b",
            [("List: a", "b")],
        ),
        # the same input with two outputs: the task is ill-posed
        ("Example 1\nList: a\nOutput: b\nExample 2\nList: a\nOutput: c", []),
        ("I don't know what to do here.", []),
        ("", []),
    ],
)
def test_parse_instances_input_first(reply, want):
    assert si.parse_instances(reply, classification=False) == want


@pytest.mark.parametrize(
    ("reply", "want"),
    [
        (
            "Class label: Positive\nSentence: I love it.\nClass label: Negative\nSentence: I hate it.",
            [("Sentence: I love it.", "Positive"), ("Sentence: I hate it.", "Negative")],
        ),
        ("Class label: Montreal", [("", "Montreal")]),
        (
            "Here are some:\n**Class label:** Spam\nEmail: Win money now!\n\n**Class label:** Not spam\nEmail: Hi mum.\n"
            "Task: Next one\nClass label: X",
            [("Email: Win money now!", "Spam"), ("Email: Hi mum.", "Not spam")],
        ),
        ("Positive: I love it.", []),
    ],
)
def test_parse_instances_output_first(reply, want):
    assert si.parse_instances(reply, classification=True) == want


def test_parse_instances_truncated_and_max():
    reply = "\n".join(f"Example {i}\nList: {i}\nOutput: {i + 1}" for i in range(1, 8))
    assert len(si.parse_instances(reply, False)) == 5
    assert si.parse_instances(reply, False, max_instances=10)[-1] == ("List: 7", "8")
    assert si.parse_instances(reply, False, max_instances=10, truncated=True)[-1] == ("List: 6", "7")


# ---- Evol-Instruct --------------------------------------------------------------------------------------------


def test_operations_and_choice():
    assert ev.DEPTH_OPERATIONS == (
        "add_constraints",
        "deepening",
        "concretizing",
        "increased_reasoning_steps",
        "complicate_input",
    )
    assert ev.OPERATIONS == (*ev.DEPTH_OPERATIONS, "breadth")
    a = [ev.choose_operation(random.Random(5)) for _ in range(3)]
    assert a == [ev.choose_operation(random.Random(5)) for _ in range(3)]
    rng = random.Random(0)
    drawn = {ev.choose_operation(rng) for _ in range(300)}
    assert drawn == set(ev.OPERATIONS)
    assert {ev.choose_operation(rng, depth_only=True) for _ in range(300)} == set(ev.DEPTH_OPERATIONS)


@pytest.mark.parametrize(
    ("op", "marker"),
    [
        ("add_constraints", "Please add one more constraints/requirements into #The Given Prompt#."),
        ("deepening", "the depth and breadth of the inquiry can be increased."),
        ("concretizing", "Please replace general concepts with more specific concepts."),
        ("increased_reasoning_steps", "explicitly request multiple-step reasoning."),
        ("complicate_input", "format text as input data in #Rewritten Prompt#."),
        ("breadth", "I want you act as a Prompt Creator."),
    ],
)
def test_evol_prompt_per_operation(op, marker):
    ((role, text),) = ev.evol_prompt(op, "  How do plants grow?  ")
    assert role == "user" and marker in text
    given = "#Given Prompt#:" if op == "breadth" else "#The Given Prompt#:"
    assert f"{given}\nHow do plants grow?\n" in text
    assert text.rstrip().endswith(":")


def test_evol_prompt_complicate_input_format_is_a_pure_choice():
    a = ev.evol_prompt("complicate_input", "Sort a list.")[0][1]
    assert a == ev.evol_prompt("complicate_input", "Sort a list.")[0][1]
    assert any(f"You must add {f} format text" in a for f in ev.DATA_FORMATS)
    b = ev.evol_prompt("complicate_input", "Sort a list.", data_format="XML data")[0][1]
    assert "You must add XML data format text" in b and "MUST contain a specific XML data as input" in b
    with pytest.raises(ValueError, match="unknown Evol-Instruct operation"):
        ev.evol_prompt("shorten", "x")


@pytest.mark.parametrize(
    ("reply", "want"),
    [
        (
            "#Rewritten Prompt#:\nWrite a haiku about rain in exactly three lines.",
            "Write a haiku about rain in exactly three lines.",
        ),
        (
            "**Rewritten Prompt:** Explain recursion with an example in Python.",
            "Explain recursion with an example in Python.",
        ),
        (
            "#Created Prompt#: Describe the mating rituals of deep-sea anglerfish.",
            "Describe the mating rituals of deep-sea anglerfish.",
        ),
        (
            "#The Given Prompt#:\nWhat is AI?\n#Rewritten Prompt#:\nWhat is AI, and how does it learn?",
            "What is AI, and how does it learn?",
        ),
        (
            '#Rewritten Prompt# (MUST contain a specific JSON data as input):\nGiven {"a": 1}, sum the values.',
            'Given {"a": 1}, sum the values.',
        ),
        ('"Compare TCP and UDP for video calls."', "Compare TCP and UDP for video calls."),
        (
            "Rewritten prompt ideas are hard. Compare A and B.",
            "Rewritten prompt ideas are hard. Compare A and B.",
        ),
        (
            "Compare two sorting algorithms by stability and memory.",
            "Compare two sorting algorithms by stability and memory.",
        ),
        ("#Rewritten Prompt#:\n   ", None),
        ("#The Given Prompt#: What is AI?", None),
        ("", None),
    ],
)
def test_parse_evolved(reply, want):
    assert ev.parse_evolved(reply) == want


@pytest.mark.parametrize(
    ("reply", "want"),
    [
        ("Equal", True),
        ("Equal.", True),
        ("They are equal.", True),
        ("Not Equal", False),
        ("**Not equal**", False),
        ("not  equal - the second adds a constraint", False),
        ("Unequal", False),
        ("I cannot judge that.", None),
        ("", None),
    ],
)
def test_parse_equality(reply, want):
    assert ev.parse_equality(reply) is want


def test_equality_and_answer_prompts():
    ((role, text),) = ev.equality_prompt("Sort a list.", "Sort a list of 10 integers in O(n log n).")
    assert role == "user"
    assert (
        "The First Prompt: Sort a list.\nThe Second Prompt: Sort a list of 10 integers in O(n log n)." in text
    )
    assert text.endswith("Your Judgement (Just answer: Equal or Not Equal. No need to explain the reason.):")
    assert ev.answer_prompt("  Explain X.  ") == [("user", "Explain X.")]


LONG_ANSWER = "Photosynthesis converts light energy into chemical energy stored in glucose. " * 3


def test_failed_evolution_each_case():
    assert ev.failed_evolution("Explain photosynthesis step by step.", LONG_ANSWER) is None
    for evolved in (
        "Rewrite the #Given Prompt# to be harder.",
        "In the rewritten prompt, list X.",
        "#Created Prompt#: Y",
    ):
        reason, detail = ev.failed_evolution(evolved, LONG_ANSWER)
        assert reason == "copied_template" and detail["phrase"] in evolved.lower()
    reason, detail = ev.failed_evolution("Explain X.", "I'm sorry, but I can't help with that request.")
    assert reason == "response_refusal" and detail["phrase"].lower() == "sorry" and detail["words"] < 80
    assert ev.failed_evolution("Explain X.", "I apologize, the question is unclear.")[0] == "response_refusal"
    # an apology inside a long, useful answer is not a failure (the paper: "sorry" and fewer than 80 words)
    long_sorry = "Sorry for the long answer. " + "Plants use chlorophyll to capture light energy. " * 12
    assert ev.failed_evolution("Explain X.", long_sorry) is None
    assert ev.failed_evolution("Explain X.", "... the, and! Of it?")[0] == "response_too_short"
    assert ev.failed_evolution("Explain X.", "")[0] == "response_too_short"
    assert ev.failed_evolution("What is 6 times 7?", "42.") is None


# ---- OSS-Instruct ---------------------------------------------------------------------------------------------

DOC = "".join(f"line_{i} = {i}\n" for i in range(40))


def test_extract_snippets_are_consecutive_lines_and_deterministic():
    a = oi.extract_snippets(DOC, random.Random(9), 1, 15, n=20)
    assert a == oi.extract_snippets(DOC, random.Random(9), 1, 15, n=20)
    assert len(a) == 20
    for snip in a:
        assert snip in DOC and snip.endswith("\n")
        assert 1 <= snip.count("\n") <= 15
    assert {
        s.count("\n") for s in oi.extract_snippets(DOC, random.Random(1), 3, 3, n=10) if "line_39" not in s
    } == {3}
    assert oi.extract_snippets("\n  \n\n", random.Random(0)) == []
    assert oi.extract_snippets("", random.Random(0)) == []
    # blank draws are redrawn
    sparse = "\n" * 50 + "x = 1\n" + "\n" * 50
    got = oi.extract_snippets(sparse, random.Random(0), 1, 60, n=5)
    assert got and all("x = 1" in s for s in got)
    with pytest.raises(ValueError):
        oi.extract_snippets(DOC, random.Random(0), 5, 2)


@pytest.mark.parametrize(
    ("snippet", "hint", "want"),
    [
        ("whatever", "py", "python"),
        ("whatever", "Python", "python"),
        ("whatever", "src/lib/main.rs", "rust"),
        ("whatever", ".tsx", "typescript"),
        ("whatever", "c++", "cpp"),
        ("whatever", "bash", "shell"),
        ("whatever", "Makefile", "makefile"),
        ("def area(r):\n    return 3.14 * r * r\n", "", "python"),
        ("import os\nfor name in os.listdir('.'):\n    print(name)\n", "", "python"),
        ('#include <stdio.h>\nint main() {\n    printf("hi");\n}\n', "", "c"),
        ("#include <vector>\nstd::vector<int> v;\nstd::cout << v.size();\n", "", "cpp"),
        ('fn main() {\n    let mut x = 1;\n    println!("{}", x);\n}\n', "", "rust"),
        ("package main\n\nfunc main() {\n\tx := 1\n\tfmt.Println(x)\n}\n", "", "go"),
        (
            "public class A {\n  public static void main(String[] args) {\n    System.out.println(1);\n  }\n}\n",
            "",
            "java",
        ),
        ("const add = (a, b) => a + b;\nconsole.log(add(1, 2));\n", "", "javascript"),
        ("SELECT name, age FROM users WHERE age > 30;\n", "", "sql"),
        ("<?php\necho $this->name;\n", "", "php"),
        ('#!/bin/bash\necho "$HOME"\n', "", "shell"),
        ("Lorem ipsum dolor sit amet.", "", oi.UNKNOWN),
        ("def area(r):\n    return r\n", "unknowntag", "python"),
    ],
)
def test_language_of(snippet, hint, want):
    assert oi.language_of(snippet, hint) == want


def test_oss_prompt_is_magicoders():
    msgs = oi.oss_prompt("x = compute(1)\n", "python")
    assert msgs[0] == (
        "system",
        "You are exceptionally skilled at crafting high-quality programming problems and offering precise solutions.",
    )
    user = msgs[1][1]
    assert user.startswith(
        "Please gain inspiration from the following random code snippet to create a high-quality programming "
        "problem. Present your output in two distinct sections: [Problem Description] and [Solution]."
    )
    assert "Code snippet for inspiration:\n```python\nx = compute(1)\n\n```" in user
    assert "```\nx = 1\n" in oi.oss_prompt("x = 1\n", oi.UNKNOWN)[1][1]


SOLUTION = "```python\ndef add(a, b):\n    return a + b\n```\nThis returns the sum."


@pytest.mark.parametrize(
    ("reply", "want"),
    [
        (
            f"[Problem Description]\nWrite a function `add` that sums two integers.\n\n[Solution]\n{SOLUTION}",
            ("Write a function `add` that sums two integers.", SOLUTION),
        ),
        (
            f"## Problem Description\n\nWrite `add`.\n\n---\n\n## Solution\n\n{SOLUTION}\n",
            ("Write `add`.", SOLUTION),
        ),
        (
            f"**[Problem Description]**: Write `add`.\n**[Solution]**\n{SOLUTION}",
            ("Write `add`.", SOLUTION),
        ),
        (
            "Here are the two sections: [Problem Description] and [Solution].\n\n[Problem Description]\nWrite `add`.\n"
            f"[Solution]\n{SOLUTION}",
            ("Write `add`.", SOLUTION),
        ),
        (
            "Problem Description: Write add.\nSolution:\ndef add(a, b):\n    return a + b\n",
            ("Write add.", "def add(a, b):\n    return a + b"),
        ),
        (f"[Problem Description]\n\n[Solution]\n{SOLUTION}", None),  # empty problem
        (f"[Solution]\n{SOLUTION}\n[Problem Description]\nWrite add.", None),  # solution first
        (
            "[Problem Description]\nWrite add.\n[Solution]\nJust add the two numbers together.",
            None,
        ),  # no code
        (
            "[Problem Description]\nWrite add.\n[Solution]\n```python\ndef add(a, b):\n    return",
            None,
        ),  # cut off
        (f"Write add.\n{SOLUTION}", None),  # no sections
        ("", None),
    ],
)
def test_parse_problem_solution(reply, want):
    assert oi.parse_problem_solution(reply) == want
