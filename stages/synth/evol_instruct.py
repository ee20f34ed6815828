"""Evol-Instruct (Xu et al. 2023, "WizardLM: Empowering Large Language Models to Follow Complex Instructions"): the
evolution prompts, the parsers of their replies and the elimination of failed evolutions. Pure: no client, no
I/O but the templates.

What this module owns (the driver, `loops.py`, runs the rounds and sends the requests):
- The operations (`OPERATIONS`): five in-depth ones, which rewrite an instruction into a harder one,
  `add_constraints`, `deepening`, `concretizing`, `increased_reasoning_steps` (nlpxucan/WizardLM
  `Evol_Instruct/depth.py`) and `complicate_input` (the paper's fifth: add input data in some format, e.g. a table
  or code; the format is `data_format`, by default one of `DATA_FORMATS` picked by a hash of the instruction, so the
  prompt is a pure function of its arguments), and in-breadth `breadth` (a new, rarer instruction of the same
  domain, `Evol_Instruct/breadth.py`). `choose_operation` draws one uniformly, as WizardLM's `main.py` does.
- `evol_prompt` / `parse_evolved`: one template file per operation (templates.py); the reply less its
  "#Rewritten Prompt#:" / "#Created Prompt#:" label and an echoed given prompt.
- Elimination, the paper's four cases (section 3.3):
  1. no information gain: `equality_prompt` / `parse_equality`, the model judges "Equal" or "Not Equal"
     (the paper's Appendix prompt); Equal -> `no_information_gain` (the driver rejects it);
  2. the evolved instruction is hard to answer: the answer says "sorry" and is shorter than 80 words
     -> `response_refusal` (we also take "I apologize", "I cannot", "I'm unable to" and "as an AI" as the
     apology, since current models say those as often);
  3. the answer has only punctuation and stop words -> `response_too_short` (an empty answer too);
  4. the evolved instruction copies the evolving prompt's words ("#Given Prompt#", "#Rewritten Prompt#",
     "given prompt", "rewritten prompt", ...) -> `copied_template`.
  Cases 2-4 are `failed_evolution(evolved, response)`, a pure rule returning None or (reason, detail).
- `answer_prompt`: the evolved instruction alone as the user turn (template `evol_answer`).
"""

from __future__ import annotations

import hashlib
import random
import re
from pathlib import Path

from stages.synth import templates
from stages.synth.templates import Messages, Verdict

__all__ = [
    "DATA_FORMATS",
    "DEPTH_OPERATIONS",
    "OPERATIONS",
    "answer_prompt",
    "choose_operation",
    "equality_prompt",
    "evol_prompt",
    "failed_evolution",
    "parse_equality",
    "parse_evolved",
]


DEPTH_OPERATIONS: tuple[str, ...] = (
    "add_constraints",
    "deepening",
    "concretizing",
    "increased_reasoning_steps",
    "complicate_input",
)
OPERATIONS: tuple[str, ...] = (*DEPTH_OPERATIONS, "breadth")

# The paper's complicate-input examples use formats like these ("You must add [XML data] format text as input data").
DATA_FORMATS: tuple[str, ...] = (
    "XML data", "SQL database", "Python code", "HTML page", "Shell cmd", "JSON data", "Markdown table",
    "LaTeX formula", "Excel table", "C++ code", "Java code", "JavaScript code", "R code", "Go code", "CSV data",
)  # fmt: skip


def choose_operation(rng: random.Random, depth_only: bool = False) -> str:
    """One operation, uniformly: of the five in-depth ones, or of all six."""
    return rng.choice(DEPTH_OPERATIONS if depth_only else OPERATIONS)


def _data_format_for(instruction: str) -> str:
    digest = hashlib.sha256(instruction.encode("utf-8")).digest()
    return DATA_FORMATS[int.from_bytes(digest[:4], "big") % len(DATA_FORMATS)]


def evol_prompt(
    op: str, instruction: str, override_dir: Path | str | None = None, data_format: str | None = None
) -> Messages:
    """The evolving prompt of operation `op` for `instruction`, as one user turn (template `evol_<op>`)."""
    if op not in OPERATIONS:
        raise ValueError(f"unknown Evol-Instruct operation {op!r} (known: {', '.join(OPERATIONS)})")
    tpl = templates.load(f"evol_{op}", override_dir)
    fields: dict[str, str] = {"instruction": instruction.strip()}
    if op == "complicate_input":
        fields["data_format"] = data_format or _data_format_for(instruction)
    return [("user", tpl.render(**fields))]


# "#Rewritten Prompt#:", "**Rewritten Prompt:**", "#Created Prompt#:", "Rewritten Prompt (MUST contain ...):", and
# "Rewritten Prompt" alone on its line; "Rewritten prompt should ..." (no # nor colon) is not a label.
_EVOLVED_LABEL = re.compile(
    r"^[ \t>*_]*#?[ \t]*(?:the\s+)?(?:rewritten|created)\s+prompt[ \t]*(?P<hash>#)?(?:[ \t]*\([^)\n]*\))?"
    r"[ \t*_]*(?P<colon>:)?[ \t*_]*(?P<eol>$)?",
    re.IGNORECASE | re.MULTILINE,
)
_GIVEN_LABEL = re.compile(
    r"^[ \t>*_#]*(?:the\s+)?given\s+prompt[ \t]*#?[ \t*_]*:", re.IGNORECASE | re.MULTILINE
)


def parse_evolved(text: str) -> str | None:
    """The evolved instruction in a reply to `evol_prompt`: the text after the first "#Rewritten Prompt#:" /
    "#Created Prompt#:" label when there is one (so an echoed "#The Given Prompt#: ..." before it goes), else the
    whole reply; surrounding quotes and markdown bold removed. None when nothing is left, or when the reply is
    only an echoed given prompt."""
    text = text.replace("\r\n", "\n").strip()
    label = next(
        (
            m
            for m in _EVOLVED_LABEL.finditer(text)
            if m.group("hash") or m.group("colon") or m.group("eol") is not None
        ),
        None,
    )
    if label is not None:
        text = text[label.end() :]
    elif _GIVEN_LABEL.match(text):
        return None
    text = text.strip()
    for a, b in (("**", "**"), ('"', '"'), ("“", "”"), ("'", "'")):
        if len(text) > len(a) + len(b) and text.startswith(a) and text.endswith(b):
            inner = text[len(a) : -len(b)]
            if a not in inner and b not in inner:
                text = inner.strip()
    return text or None


def equality_prompt(before: str, after: str, override_dir: Path | str | None = None) -> Messages:
    """The paper's equality check (elimination case 1): are the two instructions equal in constraints, depth and
    breadth? Answered "Equal" or "Not Equal"."""
    tpl = templates.load("evol_equality", override_dir)
    return [("user", tpl.render(first=before.strip(), second=after.strip()))]


_EQUALITY = re.compile(r"\b(not\s+equal|unequal|non-equal|equal)\b", re.IGNORECASE)


def parse_equality(text: str) -> bool | None:
    """True when the reply judges the two instructions Equal (no information gain: eliminate), False for "Not
    Equal" (or "unequal"); the first judgement in the reply counts. None when it gives neither."""
    m = _EQUALITY.search(text)
    if not m:
        return None
    return m.group(1).lower() == "equal"


def answer_prompt(instruction: str, override_dir: Path | str | None = None) -> Messages:
    """The evolved instruction as the user turn, to be answered (template `evol_answer`)."""
    return [("user", templates.load("evol_answer", override_dir).render(instruction=instruction.strip()))]


# Case 4: words of the evolving prompts (lower-cased substrings; "#The Given Prompt#" contains "given prompt").
TEMPLATE_WORDS: tuple[str, ...] = ("given prompt", "rewritten prompt", "created prompt")
# Case 2: the paper's "sorry", and the apologies and refusals current models use instead.
_APOLOGY = re.compile(
    r"\b(?:sorry|apologi[sz]e|apologies|as an ai\b|i\s+cannot|i\s+can't|i\s+can’t|i\s+am\s+unable\s+to|"
    r"i'm\s+unable\s+to|i’m\s+unable\s+to)",
    re.IGNORECASE,
)
_WORD = re.compile(r"[^\W_]+(?:['’][^\W_]+)*")
# NLTK's English stop words (case 3: an answer of only these and punctuation says nothing).
STOP_WORDS = frozenset(
    """i me my myself we our ours ourselves you you're you've you'll you'd your yours yourself yourselves he him his
    himself she she's her hers herself it it's its itself they them their theirs themselves what which who whom this
    that that'll these those am is are was were be been being have has had having do does did doing a an the and but
    if or because as until while of at by for with about against between into through during before after above below
    to from up down in out on off over under again further then once here there when where why how all any both each
    few more most other some such no nor not only own same so than too very s t can will just don don't should
    should've now d ll m o re ve y ain aren aren't couldn couldn't didn didn't doesn doesn't hadn hadn't hasn hasn't
    haven haven't isn isn't ma mightn mightn't mustn mustn't needn needn't shan shan't shouldn shouldn't wasn wasn't
    weren weren't won won't wouldn wouldn't""".split()
)


def failed_evolution(evolved: str, response: str, max_refusal_words: int = 80) -> Verdict | None:
    """Elimination cases 2-4 of the paper for an evolved instruction and the answer it got; None keeps it.

    `copied_template` (the instruction contains "given prompt", "rewritten prompt" or "created prompt", any case,
    with or without #), `response_refusal` (the answer apologises: "sorry", "I apologize", "I cannot", ... and has
    fewer than `max_refusal_words` words, 80 in the paper), `response_too_short` (the answer has no word but stop
    words: only punctuation, stop words, or nothing)."""
    low = evolved.lower()
    for phrase in TEMPLATE_WORDS:
        if phrase in low:
            at = low.index(phrase)
            return "copied_template", {"phrase": phrase, "context": evolved[max(0, at - 40) : at + 60]}
    words = _WORD.findall(response)
    m = _APOLOGY.search(response)
    if m and len(words) < max_refusal_words:
        return "response_refusal", {"phrase": m.group(0), "words": len(words), "max_words": max_refusal_words}
    if not any(w.lower().replace("’", "'") not in STOP_WORDS for w in words):
        return "response_too_short", {"words": len(words), "content_words": 0, "response": response[:200]}
    return None
