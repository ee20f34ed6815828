"""Self-Instruct (Wang et al. 2022, "Self-Instruct: Aligning Language Models with Self-Generated Instructions"):
the prompts, the parsers of the replies and the instruction filters. Pure: no client, no I/O but the templates.

What this module owns, step by step (the driver, `loops.py`, sends the requests and grows the pool):
1. `sample_prompt_instructions`: k instructions shown per prompt, `n_machine` (2) drawn from the generated ones and
   the rest from the human seed tasks (6, or more while fewer than 2 are generated: the paper keeps 8 in all),
   shuffled (yizhongw/self-instruct `self_instruct/bootstrap_instructions.py`).
2. `encode_prompt` / `parse_instructions`: "Come up with a series of tasks:", the k instructions numbered 1..k (white
   space collapsed, a final colon dropped, as `encode_prompt` there) and "k+1." to continue; a chat model gets it
   as one user turn. The reply's items numbered k+1 and up are the new instructions (see `parse_instructions`).
3. `filter_instruction`: `post_process_gpt3_response`'s filters (<= 3 or > 150 words, the keyword list, "Write a
   program", a first character that is punctuation or not ASCII), then ROUGE-L F > 0.7 against every pooled
   instruction (`RougePool`, rouge.py). The keyword list is the paper's plus the five words Stanford Alpaca
   (`generate_instruction.py`) added: video, audio, music, flowchart, diagram.
4. `is_classification_prompt` / `parse_is_classification`: the paper's few-shot "Can the following task be regarded
   as a classification task with finite output labels?" (`templates/clf_task_template.py`, `identify_clf_or_not.py`).
5. `instances_prompt` / `parse_instances`: input-first generation for other tasks, output-first ("Class label:"
   first) for classification (`templates/instance_gen_template.py`), parsed and filtered as
   `prepare_for_finetuning.py` does (`parse_input_output`, `filter_invalid_instances`, `filter_duplicate_instances`).

Messages are `[(role, content)]`. Every template is a file (templates.py); `override_dir` is the config's
`stages.synth.templates`. Filters return None (keep) or `(reason, detail)`, reasons: `too_short`, `too_long`,
`blacklisted_keyword`, `write_a_program`, `starts_with_punctuation`, `non_english`, `too_similar`.
"""

from __future__ import annotations

import random
import re
import string
from collections.abc import Sequence
from pathlib import Path

from stages.synth import templates
from stages.synth.rouge import RougePool
from stages.synth.templates import Messages, Verdict

__all__ = [
    "KEYWORDS",
    "RougePool",
    "encode_prompt",
    "filter_instruction",
    "instances_prompt",
    "is_classification_prompt",
    "parse_instances",
    "parse_instructions",
    "parse_is_classification",
    "sample_prompt_instructions",
]


KEYWORDS: tuple[str, ...] = (
    # Self-Instruct, bootstrap_instructions.py
    "image", "images", "graph", "graphs", "picture", "pictures", "file", "files", "map", "maps", "draw", "plot",
    "go to",
    # added by Stanford Alpaca, generate_instruction.py
    "video", "audio", "music", "flowchart", "diagram",
)  # fmt: skip


# ---- 1. sampling ----------------------------------------------------------------------------------------------


def sample_prompt_instructions(
    human: Sequence[str], machine: Sequence[str], rng: random.Random, n_human: int = 6, n_machine: int = 2
) -> list[str]:
    """`n_machine` generated and `n_human` seed instructions, shuffled; while fewer than `n_machine` are generated,
    seed ones fill their places (the paper shows n_human + n_machine = 8 in every prompt)."""
    k_machine = min(n_machine, len(machine))
    k_human = min(n_human + n_machine - k_machine, len(human))
    shown = rng.sample(list(machine), k_machine) + rng.sample(list(human), k_human)
    rng.shuffle(shown)
    return shown


# ---- 2. new instructions --------------------------------------------------------------------------------------


def _one_line(instruction: str) -> str:
    return re.sub(r"\s+", " ", instruction).strip().rstrip(":")


def encode_prompt(instructions: Sequence[str], override_dir: Path | str | None = None) -> Messages:
    """The paper's prompt: "Come up with a series of tasks:", instructions numbered from 1, then "k+1."."""
    numbered = "\n".join(f"{i}. {_one_line(inst)}" for i, inst in enumerate(instructions, 1))
    tpl = templates.load("self_instruct_generate", override_dir)
    return [("user", tpl.render(instructions=numbered, next_index=len(instructions) + 1))]


# "9. text", "9) text", "**9.** text", "- 9. text"; "9." alone (a list cut right after its number)
_ITEM = re.compile(r"^\s*(?:[-*]\s+)?(?:\*\*)?(\d{1,3})\s?[.)](?:\*\*)?(?:\s+(.*))?$")
_LABEL = re.compile(r"^(?:\*\*)?(?:task|instruction)\s*\d*\s*:(?:\*\*)?\s*", re.IGNORECASE)
_COMPLETE_END = tuple(".?!)]\"'”’`")


def _clean_item(text: str) -> str:
    text = re.sub(r"\s+", " ", text).strip()
    if text.startswith("**") and text.endswith("**") and len(text) > 4:
        text = text[2:-2].strip()
    text = _LABEL.sub("", text)
    if len(text) >= 2 and text[0] == text[-1] and text[0] in "\"'`":
        text = text[1:-1].strip()
    return text[:1].upper() + text[1:]


def parse_instructions(text: str, start_index: int, truncated: bool = False) -> list[str]:
    """The new instructions in a reply to `encode_prompt` whose last line was "`start_index`.".

    Items are lines "N. text" (or "N) text", markdown-bold numbers), each running on over following non-blank lines
    that are not items; a blank line ends an item, so chatter after the list is not taken. A reply that continues
    the prompt (its first item, before any number, is item `start_index`) counts when "start_index+1." follows it.
    A reply that repeats the shown items and goes on keeps only items numbered `start_index` and up; one that
    numbers its own list from 1 keeps them all (repeats of shown ones are dropped by the ROUGE-L filter). The last
    item is dropped when it is empty or looks cut off (`truncated`, e.g. finish_reason "length", or it does not
    end in . ? ! ) ] or a quote): the paper drops generations stopped by length."""
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    items: list[tuple[int, list[str]]] = []
    lead: list[str] = []
    current: list[str] | None = None
    for line in lines:
        m = _ITEM.match(line)
        if m:
            current = [m.group(2) or ""]
            items.append((int(m.group(1)), current))
        elif not line.strip():
            current = None
        elif current is not None:
            current.append(line)
        elif not items:
            lead.append(line)
    # a completion-style reply: its first lines are item `start_index`
    if lead and (items and items[0][0] == start_index + 1 or not items and len(lead) == 1):
        items.insert(0, (start_index, lead))
    if any(n >= start_index for n, _ in items):
        items = [(n, parts) for n, parts in items if n >= start_index]
    found = [_clean_item(" ".join(parts)) for _, parts in items]
    if found and (truncated or not found[-1] or not found[-1].endswith(_COMPLETE_END)):
        found.pop()
    return [f for f in found if f]


def _word_re(word: str) -> re.Pattern:
    return re.compile(r"\b" + re.escape(word).replace(r"\ ", r"\s+") + r"\b", re.IGNORECASE)


_KEYWORD_RES = {w: _word_re(w) for w in KEYWORDS}


def filter_instruction(
    instruction: str,
    pool: RougePool | None,
    threshold: float = 0.7,
    *,
    min_words: int = 4,
    max_words: int = 150,
    keywords: Sequence[str] = KEYWORDS,
    drop_write_a_program: bool = True,
) -> Verdict | None:
    """The paper's filters on a new instruction, cheapest first; None keeps it.

    - `too_short` (fewer than `min_words` words: the paper drops <= 3) / `too_long` (more than `max_words`, 150);
    - `blacklisted_keyword`: a whole word (or phrase) of `keywords`, any case: tasks a text model cannot do;
    - `write_a_program`: starts with "Write a program" (the paper: ambiguous between code and a direct answer);
    - `starts_with_punctuation`; `non_english` (first character not ASCII, or fewer than half of its letters ASCII);
    - `too_similar`: ROUGE-L F above `threshold` with a pooled instruction (detail: the most similar one, its score
      and pool index). `pool` None skips it."""
    words = len(instruction.split())
    if words < min_words:
        return "too_short", {"words": words, "min_words": min_words}
    if words > max_words:
        return "too_long", {"words": words, "max_words": max_words}
    for word in keywords:
        rx = _KEYWORD_RES.get(word) or _word_re(word)
        m = rx.search(instruction)
        if m:
            return "blacklisted_keyword", {"keyword": word, "matched": m.group(0)}
    text = instruction.strip()
    if drop_write_a_program and text.lower().startswith("write a program"):
        return "write_a_program", {"start": text[:40]}
    if text[0] in string.punctuation:
        return "starts_with_punctuation", {"first": text[0]}
    letters = [c for c in text if c.isalpha()]
    ascii_letters = sum(c.isascii() for c in letters)
    if not text[0].isascii() or (letters and ascii_letters * 2 < len(letters)):
        return "non_english", {"first": text[0], "ascii_letters": ascii_letters, "letters": len(letters)}
    if pool is not None:
        score, index = pool.best(instruction)
        if score > threshold:
            return "too_similar", {
                "score": round(score, 4),
                "threshold": threshold,
                "most_similar": pool.texts[index],
                "pool_index": index,
            }
    return None


# ---- 4. classification or not ---------------------------------------------------------------------------------


def is_classification_prompt(instruction: str, override_dir: Path | str | None = None) -> Messages:
    """The paper's few-shot question "Can the following task be regarded as a classification task with finite
    output labels?" ending with "Task: <instruction>\\nIs it classification?"."""
    tpl = templates.load("self_instruct_is_classification", override_dir)
    return [("user", tpl.render(instruction=instruction.strip()))]


_YES_NO = re.compile(r"\b(yes|no|true|false)\b", re.IGNORECASE)


def parse_is_classification(text: str) -> bool | None:
    """Yes -> True, No -> False: the first word of the reply ("Yes", " yes.", "**No**", "No, because ..."), after
    an echoed "Is it classification?"; otherwise a lone yes or no anywhere ("The answer is yes."). None when it
    says neither, or both without one first."""
    body = re.sub(
        r"^[\s*_>#]*(?:is it (?:a )?classification\??\s*:?)?[\s*_:]*", "", text, flags=re.IGNORECASE
    )
    first = re.match(r"(yes|no|true|false)\b", body, re.IGNORECASE)
    if first:
        return first.group(1).lower() in ("yes", "true")
    found = {m.group(1).lower() in ("yes", "true") for m in _YES_NO.finditer(text)}
    return found.pop() if len(found) == 1 else None


# ---- 5. instances ---------------------------------------------------------------------------------------------


def instances_prompt(
    instruction: str, classification: bool, override_dir: Path | str | None = None
) -> Messages:
    """Output-first (class label, then an input for it) for a classification task, input-first otherwise."""
    name = "self_instruct_instances_output_first" if classification else "self_instruct_instances_input_first"
    return [("user", templates.load(name, override_dir).render(instruction=instruction.strip()))]


_NEXT_TASK = re.compile(r"^[\s*#]*Task\s*:", re.IGNORECASE | re.MULTILINE)
_EXAMPLE = re.compile(r"^[\s*#_]*Example\s*\d*\s*[.:]?[\s*_:]*$", re.IGNORECASE | re.MULTILINE)
_OUTPUT = re.compile(r"(?:\*\*)?Output\s*\d*\s*:(?:\*\*)?", re.IGNORECASE)
_INPUT = re.compile(r"(?:\*\*)?Input\s*\d*\s*:(?:\*\*)?", re.IGNORECASE)
_CLASS_LABEL = re.compile(r"(?:\*\*)?Class label\s*:(?:\*\*)?", re.IGNORECASE)


def _this_task(text: str) -> str:
    """The reply less an echoed "Task: ..." first line and anything from the next "Task:" on (the paper's stop)."""
    text = text.replace("\r\n", "\n").strip()
    first = _NEXT_TASK.match(text)
    if first:
        text = text.split("\n", 1)[1] if "\n" in text else ""
    nxt = _NEXT_TASK.search(text)
    return text[: nxt.start()] if nxt else text


def _input_output(chunk: str) -> tuple[str, str]:
    """prepare_for_finetuning.py's parse_input_output."""
    parts = _OUTPUT.split(chunk, maxsplit=1)
    if len(parts) == 2:
        inp, out = parts[0].strip(), parts[1].strip()
    else:
        inp, out = "", chunk.strip()
    out = _INPUT.split(out, maxsplit=1)[0].strip()
    inp = re.sub(r"^" + _INPUT.pattern, "", inp, flags=re.IGNORECASE).strip()
    return inp, out


def _valid(instances: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """filter_invalid_instances then filter_duplicate_instances (order kept, unlike the paper's set())."""
    kept = [
        (i, o)
        for i, o in instances
        if o and i != o and not i.strip().endswith(":") and not o.strip().endswith(":")
    ]
    outputs: dict[str, str] = {}
    for i, o in kept:
        if i and outputs.setdefault(i, o) != o:
            return []  # the same input with two outputs: the task is ill-posed
    return list(dict.fromkeys(kept))


def parse_instances(
    text: str, classification: bool, max_instances: int = 5, truncated: bool = False
) -> list[tuple[str, str]]:
    """(input, output) pairs of a reply to `instances_prompt`; [] when none parse.

    Input-first: "Example N" lines split the instances, each "Input: ... Output: ..." (the input may be several
    labelled fields, "Sentence: ...", kept as written; no "Output:" means no input); a reply without "Example" but
    with "Output:" is one instance; neither is a failure. Output-first: every "Class label: X" starts an instance
    whose output is X and whose input is the lines after it. Then the paper's filters: output empty or equal to
    the input, a field ending in ":" (cut off), duplicates, and the same input with two outputs (all dropped).
    `truncated` (finish_reason "length") drops the last instance; at most `max_instances` are kept."""
    body = _this_task(text)
    pairs: list[tuple[str, str]] = []
    if classification:
        chunks = _CLASS_LABEL.split(body)[1:]
        for chunk in chunks:
            chunk = chunk.strip()
            label, _, inp = chunk.partition("\n")
            pairs.append((inp.strip(), label.strip().strip("*").strip()))
    elif _EXAMPLE.search(body):
        preamble, *chunks = _EXAMPLE.split(body)
        if _OUTPUT.search(preamble):  # an instance before "Example 1" (the paper keeps it); else chatter
            chunks.insert(0, preamble)
        for chunk in chunks:
            if chunk.strip():
                pairs.append(_input_output(chunk))
    elif _OUTPUT.search(body):
        pairs.append(_input_output(body))
    if truncated and pairs:
        pairs.pop()
    return _valid(pairs)[:max_instances]
