"""The planted contamination set of the decontam benchmark (bench_decontam.py), made from the real public data in
../shared/data. Deterministic for a seed.

Benchmark items (test splits, as the stage protects them): all 164 HumanEval tasks, all 974 MBPP tasks, the 1,319
GSM8K test questions and the 14,042 MMLU test questions. Each item has an id in the stage's format:
`humaneval/HumanEval/3` (task_id), `mbpp/11` (task_id), `gsm8k/test/17` (0-based line of test.jsonl) and
`mmlu/test/abstract_algebra/4` (subject and idx); `item_key` reduces any such id to (benchmark, key) so that a
change of prefix in the stage's ids does not matter.

Its verbatim rendering as a conversation: GSM8K question (user) and answer (assistant); MMLU question and choices
(`A. ...` lines, user) and `B. <choice>` (assistant); HumanEval prompt (user) and prompt + canonical solution in
a ```python fence (assistant); MBPP text (user) and its code in a ```python fence (assistant).

Planted categories (`per_category` records each, default 50; a record never reuses an item of another record):
- `verbatim`: the rendering as it is (the four benchmarks in turn).
- `reformatted`: the rendering with whitespace or case changed (`variant`): lines joined, double spaces, a
  newline every 3-7 words, UPPER case, Title Case, or lines joined + upper case. Case is changed only in prose
  (GSM8K, MMLU, MBPP's text); code gets the whitespace variants.
- `embedded`: a real SFT record (the host: its instruction, and an answer of >= 60 words) with the item
  (question + answer, question + choices + answer, fenced code) put in the middle of its answer, host text
  before and after.
- `partial`: part of an item: a GSM8K question with its answer stripped, an MMLU question without its choices,
  a HumanEval prompt only (no solution), the first 50-65% (by words) of an MBPP text + code.
- `code_renamed`: HumanEval prompt + solution or MBPP code with every local name, argument and defined function
  consistently renamed (ast + tokenize; attributes, imports and builtins kept), the renames also applied in
  docstrings and comments and a few of their words swapped for synonyms; fenced as python under a generic
  instruction that carries no benchmark text.
- `numbers_changed`: GSM8K (80%) and MMLU items with >= 3 numbers (20%), every number replaced by another of
  the same shape (same mapping in question and answer).
- `light_paraphrase`: GSM8K and MMLU items with fixed function-word swaps applied to every occurrence
  (the -> a, a -> the, is -> was, of -> in, and -> as well as, ... see FUNCTION_SWAPS; MMLU's choice letters
  kept) and 2-3 swaps of a function word with its neighbour in the question.
- `clean`: `clean` untouched SFT records (default 3,000) drawn from every file of sft/ (hosts excluded).

Only items whose planted benchmark text has >= MIN_ITEM_WORDS words are used (short MMLU questions such as
"What is 2+2?" cannot be told apart from ordinary text by any n-gram method); for `partial` that holds for the
part that is kept.

Records are `{"messages": [...], "bench_id": "<category>-0007"}` (ingest keeps `bench_id` in meta); the labels
(category, benchmark, item, variant, host source) stay here, outside the stage's input.

`python tests/benchmarks/decontam_planted.py --out DIR` writes DIR/planted.jsonl and DIR/labels.jsonl to look at.
"""

from __future__ import annotations

import argparse
import ast
import builtins
import io
import keyword
import math
import random
import re
import tokenize
from dataclasses import asdict, dataclass, field
from pathlib import Path

import orjson
from bench_clean import SFT_FILES
from shared_data import SHARED_DATA, read_json, read_jsonl

BENCH = SHARED_DATA / "benchmarks"
SFT = SHARED_DATA / "sft"
BENCHMARKS = ("humaneval", "mbpp", "gsm8k", "mmlu")
CATEGORIES = (
    "verbatim",
    "reformatted",
    "embedded",
    "partial",
    "code_renamed",
    "numbers_changed",
    "light_paraphrase",
)
MIN_ITEM_WORDS = 20
MIN_HOST_WORDS = 60
LETTERS = "ABCD"
# which benchmarks each category draws from, with their shares
CATEGORY_BENCHMARKS = {
    "verbatim": {"humaneval": 1, "mbpp": 1, "gsm8k": 1, "mmlu": 1},
    "reformatted": {"humaneval": 1, "mbpp": 1, "gsm8k": 1, "mmlu": 1},
    "embedded": {"humaneval": 1, "mbpp": 1, "gsm8k": 1, "mmlu": 1},
    "partial": {"humaneval": 1, "mbpp": 1, "gsm8k": 1, "mmlu": 1},
    "code_renamed": {"humaneval": 1, "mbpp": 1},
    "numbers_changed": {"gsm8k": 4, "mmlu": 1},
    "light_paraphrase": {"gsm8k": 1, "mmlu": 1},
}
PARTIAL_ASSISTANT = "Sure, I can help with that. Let me work through it."
CODE_INSTRUCTIONS = (
    "Write this in Python, please.",
    "Can you show me a Python implementation?",
    "Give me the code for this task.",
    "Please provide a working Python solution.",
    "Show me how you would implement it.",
    "Implement the function in Python.",
)
CODE_LEADS = ("Here is an implementation:", "Sure:", "Here you go.", "One way to write it:", "")


# ---- benchmark items ---------------------------------------------------------------------------------------


@dataclass
class Item:
    benchmark: str
    item: str  # in the stage's id format, e.g. gsm8k/test/17
    fields: dict
    segments: list[str]  # the protected text, piece by piece (the baselines take n-grams within each piece)

    @property
    def text(self) -> str:
        return "\n".join(self.segments)


def _code(s: str) -> str:
    return s.replace("\r\n", "\n").replace("\r", "\n").rstrip()


def load_benchmarks() -> dict[str, list[Item]]:
    """Every item of the four built-in benchmarks (test splits), in file order."""
    out: dict[str, list[Item]] = {}
    out["humaneval"] = [
        Item("humaneval", f"humaneval/{r['task_id']}", r, [r["prompt"] + r["canonical_solution"]])
        for r in read_jsonl(BENCH / "humaneval" / "HumanEval.jsonl.gz")
    ]
    out["mbpp"] = [
        Item("mbpp", f"mbpp/{r['task_id']}", r, [r["text"], _code(r["code"])])
        for r in read_jsonl(BENCH / "mbpp" / "mbpp.jsonl")
    ]
    out["gsm8k"] = [
        Item("gsm8k", f"gsm8k/test/{i}", r, [r["question"], r["answer"]])
        for i, r in enumerate(read_jsonl(BENCH / "gsm8k" / "test.jsonl"))
    ]
    out["mmlu"] = [
        Item("mmlu", f"mmlu/test/{r['subject']}/{r['idx']}", r, [r["question"], *map(str, r["choices"])])
        for r in read_jsonl(BENCH / "mmlu" / "mmlu_test.jsonl.gz")
    ]
    return out


def item_key(benchmark: str | None, item: str | None) -> tuple[str, str] | None:
    """(benchmark, key) of an item id in any of the usual shapes: the task number, or subject/idx for MMLU."""
    if not benchmark or item is None:
        return None
    parts = [p for p in re.split(r"[/:#]", str(item)) if p]
    nums = [p for p in parts if p.isdigit()]
    if benchmark == "mmlu" and len(parts) >= 2 and nums:
        return benchmark, f"{parts[-2]}/{parts[-1]}"
    return benchmark, nums[-1] if nums else str(item)


def mmlu_user(q: str, choices: list[str]) -> str:
    return q + "\n" + "\n".join(f"{LETTERS[i]}. {c}" for i, c in enumerate(choices))


def mmlu_answer(r: dict) -> str:
    return f"{LETTERS[r['answer']]}. {r['choices'][r['answer']]}"


def fence(code: str) -> str:
    return f"```python\n{code.rstrip()}\n```"


def verbatim_turns(it: Item) -> tuple[str, str]:
    r = it.fields
    if it.benchmark == "gsm8k":
        return r["question"], r["answer"]
    if it.benchmark == "mmlu":
        return mmlu_user(r["question"], r["choices"]), mmlu_answer(r)
    if it.benchmark == "humaneval":
        return r["prompt"], fence(r["prompt"] + r["canonical_solution"])
    return r["text"], fence(_code(r["code"]))


def embedded_block(it: Item) -> str:
    r = it.fields
    if it.benchmark == "gsm8k":
        return f"{r['question']}\n\n{r['answer']}"
    if it.benchmark == "mmlu":
        return f"{mmlu_user(r['question'], r['choices'])}\nAnswer: {mmlu_answer(r)}"
    if it.benchmark == "humaneval":
        return fence(r["prompt"] + r["canonical_solution"])
    return f"{r['text']}\n\n{fence(_code(r['code']))}"


def n_words(text: str) -> int:
    return len(text.split())


# ---- SFT records -------------------------------------------------------------------------------------------

SHAREGPT_ROLES = {
    "human": "user",
    "user": "user",
    "gpt": "assistant",
    "assistant": "assistant",
    "system": "system",
}


def sft_messages(row: dict) -> list[dict] | None:
    """A row of an SFT file (alpaca with optional history/system, GPTeacher, ShareGPT) as messages; None when it
    has an empty turn or not a user/assistant alternation."""
    msgs: list[dict] = []
    if "conversations" in row:
        for t in row["conversations"]:
            role = SHAREGPT_ROLES.get(t.get("from", ""))
            if role is None:
                return None
            msgs.append({"role": role, "content": t.get("value") or ""})
    else:
        if row.get("system"):
            msgs.append({"role": "system", "content": row["system"]})
        for pair in row.get("history") or []:
            msgs += [{"role": "user", "content": pair[0]}, {"role": "assistant", "content": pair[1]}]
        inp = (row.get("input") or "").strip()
        user = f"{row.get('instruction') or ''}\n\n{inp}" if inp else row.get("instruction") or ""
        msgs += [
            {"role": "user", "content": user},
            {"role": "assistant", "content": row.get("output", row.get("response")) or ""},
        ]
    turns = [m for m in msgs if m["role"] != "system"]
    if not turns or any(not (m["content"] or "").strip() for m in msgs):
        return None
    if any(m["role"] != ("user" if i % 2 == 0 else "assistant") for i, m in enumerate(turns)):
        return None
    if turns[-1]["role"] != "assistant":
        return None
    return msgs


def load_sft() -> list[tuple[str, int, list[dict]]]:
    """(file name, row, messages) of every usable record of every SFT file, in file order."""
    out = []
    for name, rel in SFT_FILES.items():
        for i, row in enumerate(read_json(SFT / rel)):
            msgs = sft_messages(row)
            if msgs is not None:
                out.append((name, i, msgs))
    return out


# ---- edits -------------------------------------------------------------------------------------------------

FUNCTION_SWAPS = {
    "the": "a",
    "a": "the",
    "an": "the",
    "is": "was",
    "was": "is",
    "are": "were",
    "were": "are",
    "of": "in",
    "in": "of",
    "and": "as well as",
    "on": "upon",
    "with": "alongside",
    "this": "that",
    "that": "this",
    "has": "had",
    "have": "had",
    "by": "via",
}
FUNCTION_WORDS = set(FUNCTION_SWAPS) | {"as", "well", "upon", "alongside", "via", "had", "to", "for", "it"}
_WORD_RE = re.compile(r"\b[A-Za-z]+\b")


def _same_case(src: str, dst: str) -> str:
    if src.isupper() and len(src) > 1:
        return dst.upper()
    if src[:1].isupper():
        return dst[:1].upper() + dst[1:]
    return dst


def function_word_swaps(text: str) -> str:
    return _WORD_RE.sub(lambda m: _same_case(m[0], FUNCTION_SWAPS.get(m[0].lower(), m[0])), text)


def adjacent_swaps(text: str, rng: random.Random, k: int) -> str:
    """Swap a function word with the word after it, k times (plain words only, layout kept)."""
    toks = re.split(r"(\s+)", text)
    slots = [i for i in range(0, len(toks) - 2, 2) if toks[i].isalpha() and toks[i + 2].isalpha()]
    cand = [i for i in slots if toks[i].lower() in FUNCTION_WORDS or toks[i + 2].lower() in FUNCTION_WORDS]
    rng.shuffle(cand)
    done: set[int] = set()
    for i in cand:
        if len(done) >= k:
            break
        if i in done or i + 2 in done or i - 2 in done:
            continue
        toks[i], toks[i + 2] = toks[i + 2], toks[i]
        done.add(i)
    return "".join(toks)


def light_paraphrase(text: str, rng: random.Random) -> str:
    return adjacent_swaps(function_word_swaps(text), rng, rng.randint(2, 3))


_NUMBER = re.compile(r"\d+(?:,\d{3})*(?:\.\d+)?")


def change_numbers(texts: list[str], rng: random.Random) -> list[str]:
    """Every number in the texts replaced by another of the same shape; one mapping for all the texts."""
    mapping: dict[str, str] = {}

    def new(old: str) -> str:
        if old in mapping:
            return mapping[old]
        whole, _, frac = old.replace(",", "").partition(".")
        d = len(whole)
        for _ in range(20):
            w = str(rng.randint(10 ** (d - 1) if d > 1 else 0, 10**d - 1))
            if frac:
                w += "." + "".join(str(rng.randint(0, 9)) for _ in frac)
            if "," in old:
                w = f"{int(w.partition('.')[0]):,}" + (w[w.index(".") :] if "." in w else "")
            if w != old:
                break
        else:
            w = str(int(whole) + 1) + ("." + frac if frac else "")
        mapping[old] = w
        return w

    return [_NUMBER.sub(lambda m: new(m[0]), t) for t in texts]


def count_numbers(text: str) -> int:
    return len(_NUMBER.findall(text))


def join_lines(s: str) -> str:
    return re.sub(r"\s*\n\s*", " ", s)


def double_spaces(s: str) -> str:
    return s.replace(" ", "  ")


def newlines_between_words(s: str, rng: random.Random) -> str:
    toks = re.split(r"( +)", s)
    k, out, count = rng.randint(3, 7), [], 0
    for t in toks:
        if t.startswith(" "):
            count += 1
            out.append("\n" if count % k == 0 else t)
        else:
            out.append(t)
    return "".join(out)


REFORMAT_PROSE = (
    "join_lines",
    "double_spaces",
    "newlines_between_words",
    "upper",
    "title",
    "join_lines_upper",
)
REFORMAT_CODE = ("join_lines", "double_spaces", "newlines_between_words")


def reformat(s: str, variant: str, rng: random.Random, prose: bool) -> str:
    if variant == "join_lines":
        return join_lines(s)
    if variant == "double_spaces":
        return double_spaces(s)
    if variant == "newlines_between_words":
        return newlines_between_words(s, rng)
    if not prose:
        return s
    if variant == "upper":
        return s.upper()
    if variant == "title":
        return s.title()
    if variant == "join_lines_upper":
        return join_lines(s).upper()
    raise ValueError(variant)


def cut_words(text: str, frac: float) -> str:
    """The first ceil(frac * words) words of text, layout kept."""
    ms = list(re.finditer(r"\S+", text))
    k = max(1, math.ceil(frac * len(ms)))
    return text[: ms[k - 1].end()]


def split_host(answer: str) -> tuple[str, str] | None:
    """The host answer cut at a sentence or line end near its middle."""
    ends = [m.end() for m in re.finditer(r"(?<=[.!?:])\s+|\n+", answer)]
    ends = [e for e in ends if 0.25 * len(answer) <= e <= 0.75 * len(answer)]
    if not ends:
        return None
    cut = min(ends, key=lambda e: abs(e - len(answer) / 2))
    return answer[:cut].rstrip(), answer[cut:].lstrip()


# ---- code renaming -----------------------------------------------------------------------------------------

VAR_NAMES = (
    "value items result acc current total index pos buf seq tmp res out counter lhs rhs num val elem entry arr "
    "data word chars flag step limit node prev nxt best first second ptr mid lo hi cur score part piece head tail "
    "bucket record cell row col width height depth size item target memo cache stack queue window answer state "
    "source dest left_part right_part seen found collected pieces values parts total_sum k_val m_val n_val"
).split()
FUNC_NAMES = (
    "solve compute process_input helper evaluate transform find_result check_input calculate run_task do_work "
    "handle apply_rule get_answer main_logic solution work_out derive produce build_result"
).split()
DOC_SYNONYMS = {
    "given": "provided",
    "Given": "Provided",
    "list": "sequence",
    "number": "value",
    "numbers": "values",
    "string": "text",
    "strings": "texts",
    "return": "produce",
    "Return": "Produce",
    "returns": "produces",
    "Returns": "Produces",
    "check": "determine",
    "Check": "Determine",
    "find": "locate",
    "Find": "Locate",
    "function": "routine",
    "should": "must",
}
_BUILTINS = set(dir(builtins)) | set(keyword.kwlist) | {"self", "cls", "__name__", "_"}


def rename_map(code: str, rng: random.Random) -> dict[str, str] | None:
    try:
        tree = ast.parse(code)
    except SyntaxError:
        return None
    imported, funcs, names, attrs = set(), [], [], set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import | ast.ImportFrom):
            imported |= {(a.asname or a.name).split(".")[0] for a in node.names}
        elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            funcs.append(node.name)
        elif isinstance(node, ast.arg):
            names.append(node.arg)
        elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            names.append(node.id)
        elif isinstance(node, ast.Attribute):
            attrs.add(node.attr)
        elif isinstance(node, ast.ClassDef):
            imported.add(node.name)  # classes and their methods stay
            for b in node.body:
                if isinstance(b, ast.FunctionDef | ast.AsyncFunctionDef):
                    imported.add(b.name)
    existing = {n.id for n in ast.walk(tree) if isinstance(n, ast.Name)} | set(funcs) | set(names) | attrs
    skip = imported | _BUILTINS | attrs
    mapping: dict[str, str] = {}
    used = set(existing)
    for old, pool in [*((f, FUNC_NAMES) for f in funcs), *((n, VAR_NAMES) for n in names)]:
        if old in mapping or old in skip or old.startswith("__"):
            continue
        free = [p for p in pool if p not in used and p not in _BUILTINS]
        new = rng.choice(free) if free else f"{old}_{len(mapping)}"
        used.add(new)
        mapping[old] = new
    return mapping or None


def rename_code(code: str, rng: random.Random) -> tuple[str, dict[str, str]] | None:
    """Code with its local names, arguments and functions consistently renamed, and in its docstrings and comments
    the renames applied and a few words swapped for synonyms. None when it cannot be parsed or nothing changes."""
    mapping = rename_map(code, rng)
    if not mapping:
        return None
    lines = code.splitlines(keepends=True)
    starts = [0]
    for line in lines:
        starts.append(starts[-1] + len(line))
    edits: list[tuple[int, int, str]] = []
    names_re = re.compile(r"\b(" + "|".join(map(re.escape, sorted(mapping, key=len, reverse=True))) + r")\b")
    syn_re = re.compile(r"\b(" + "|".join(map(re.escape, DOC_SYNONYMS)) + r")\b")

    def prose(s: str) -> str:
        return syn_re.sub(lambda m: DOC_SYNONYMS[m[0]], names_re.sub(lambda m: mapping[m[0]], s))

    try:
        toks = list(tokenize.generate_tokens(io.StringIO(code).readline))
    except (tokenize.TokenError, IndentationError, SyntaxError):
        return None
    depth, in_def = 0, False
    for i, t in enumerate(toks):
        if t.type == tokenize.OP and t.string in "([{":
            depth += 1
        elif t.type == tokenize.OP and t.string in ")]}":
            depth -= 1
        elif t.type == tokenize.NEWLINE:
            in_def = False
        if t.type == tokenize.NAME and t.string == "def":
            in_def = True
        a = starts[t.start[0] - 1] + t.start[1]
        b = starts[t.end[0] - 1] + t.end[1]
        if t.type == tokenize.NAME and t.string in mapping:
            prev = toks[i - 1] if i else None
            nxt = toks[i + 1] if i + 1 < len(toks) else None
            if prev is not None and prev.string == ".":
                continue
            if (
                depth
                and not in_def
                and nxt is not None
                and nxt.string == "="
                and prev
                and prev.string in "(,"
            ):
                continue  # a keyword argument of a call: the callee's parameter name, which may not be ours
            edits.append((a, b, mapping[t.string]))
        elif t.type == tokenize.COMMENT or (
            t.type == tokenize.STRING and t.string.lstrip("rbuRBU")[:3] in ('"""', "'''")
        ):
            new = prose(t.string)
            if new != t.string:
                edits.append((a, b, new))
    out = code
    for a, b, s in sorted(edits, reverse=True):
        out = out[:a] + s + out[b:]
    try:
        ast.parse(out)
    except SyntaxError:
        return None
    return (out, mapping) if out != code else None


# ---- the set -----------------------------------------------------------------------------------------------


@dataclass
class Planted:
    bench_id: str
    category: str  # one of CATEGORIES, or clean
    benchmark: str | None
    item: str | None
    messages: list[dict]
    variant: str | None = None
    source: str | None = None  # the SFT file (and row) of a host or clean record
    item_words: int = 0  # words of benchmark text planted

    @property
    def text(self) -> str:
        return "\n".join(m["content"] for m in self.messages)

    def to_json(self) -> dict:
        return {"messages": self.messages, "bench_id": self.bench_id}

    def label(self) -> dict:
        d = asdict(self)
        del d["messages"]
        return d


@dataclass
class PlantedSet:
    records: list[Planted]
    stats: dict = field(default_factory=dict)

    @property
    def by_id(self) -> dict[str, Planted]:
        return {r.bench_id: r for r in self.records}


def _chat(user: str, assistant: str) -> list[dict]:
    return [{"role": "user", "content": user}, {"role": "assistant", "content": assistant}]


def _shares(total: int, weights: dict[str, int]) -> dict[str, int]:
    s = sum(weights.values())
    out = {b: total * w // s for b, w in weights.items()}
    for b in list(weights)[: total - sum(out.values())]:
        out[b] += 1
    return out


def planted_set(seed: int = 0, per_category: int = 50, clean: int = 3000) -> PlantedSet:
    rng = random.Random(seed)
    items = load_benchmarks()
    sft = load_sft()
    used: dict[str, set[str]] = {b: set() for b in BENCHMARKS}
    order = {b: rng.sample(v, len(v)) for b, v in items.items()}  # each benchmark's items in a seeded order
    records: list[Planted] = []
    skipped: dict[str, int] = {}

    hosts_pool = [
        (name, row, msgs)
        for name, row, msgs in sft
        if len(msgs) == 2 and n_words(msgs[1]["content"]) >= MIN_HOST_WORDS and split_host(msgs[1]["content"])
    ]
    rng.shuffle(hosts_pool)
    host_i = 0

    def make(cat: str, it: Item) -> Planted | None:
        nonlocal host_i
        r = it.fields
        prose = it.benchmark in ("gsm8k", "mmlu")
        if cat == "verbatim":
            u, a = verbatim_turns(it)
            return Planted("", cat, it.benchmark, it.item, _chat(u, a), item_words=n_words(it.text))
        if cat == "reformatted":
            u, a = verbatim_turns(it)
            variant = rng.choice(REFORMAT_PROSE if prose else REFORMAT_CODE)
            if it.benchmark == "mbpp" and rng.random() < 0.3:
                variant = rng.choice(("upper", "title"))  # MBPP's text is prose: its case may change
                u = reformat(u, variant, rng, True)
                variant += "_text"
            else:
                u, a = reformat(u, variant, rng, prose), reformat(a, variant, rng, prose)
            return Planted("", cat, it.benchmark, it.item, _chat(u, a), variant, item_words=n_words(it.text))
        if cat == "embedded":
            name, row, msgs = hosts_pool[host_i]
            host_i += 1
            before, after = split_host(msgs[1]["content"])
            a = f"{before}\n\n{embedded_block(it)}\n\n{after}"
            return Planted(
                "",
                cat,
                it.benchmark,
                it.item,
                _chat(msgs[0]["content"], a),
                source=f"{name}#{row}",
                item_words=n_words(it.text),
            )
        if cat == "partial":
            if it.benchmark == "gsm8k":
                part, variant = r["question"], "question_only"
            elif it.benchmark == "mmlu":
                part, variant = r["question"], "question_without_choices"
            elif it.benchmark == "humaneval":
                part, variant = r["prompt"], "prompt_only"
            else:
                frac = rng.uniform(0.5, 0.65)
                part, variant = (
                    cut_words(f"{r['text']}\n{_code(r['code'])}", frac),
                    f"first_{round(frac * 100)}pct",
                )
            if n_words(part) < MIN_ITEM_WORDS:
                return None
            return Planted(
                "",
                cat,
                it.benchmark,
                it.item,
                _chat(part, PARTIAL_ASSISTANT),
                variant,
                item_words=n_words(part),
            )
        if cat == "code_renamed":
            code = r["prompt"] + r["canonical_solution"] if it.benchmark == "humaneval" else _code(r["code"])
            if it.benchmark == "mbpp" and (len([x for x in code.splitlines() if x.strip()]) < 4):
                return None  # a one- or two-line function is ordinary code, not evidence
            renamed = rename_code(code, rng)
            if renamed is None:
                return None
            new, mapping = renamed
            lead = rng.choice(CODE_LEADS)
            a = f"{lead}\n\n{fence(new)}" if lead else fence(new)
            return Planted(
                "",
                cat,
                it.benchmark,
                it.item,
                _chat(rng.choice(CODE_INSTRUCTIONS), a),
                f"renamed_{len(mapping)}",
                item_words=n_words(code),
            )
        if cat == "numbers_changed":
            if it.benchmark == "gsm8k":
                u, a = change_numbers([r["question"], r["answer"]], rng)
            else:
                if count_numbers(it.text) < 3:
                    return None
                q, *ch = change_numbers([r["question"], *map(str, r["choices"])], rng)
                u, a = mmlu_user(q, ch), f"{LETTERS[r['answer']]}. {ch[r['answer']]}"
            return Planted("", cat, it.benchmark, it.item, _chat(u, a), item_words=n_words(it.text))
        if cat == "light_paraphrase":
            # swaps everywhere, 2-3 word order swaps in the question; MMLU's choice letters stay ('A.' is no article)
            q = light_paraphrase(r["question"], rng)
            if it.benchmark == "mmlu":
                ch = [function_word_swaps(str(c)) for c in r["choices"]]
                u, a = mmlu_user(q, ch), f"{LETTERS[r['answer']]}. {ch[r['answer']]}"
            else:
                u, a = q, function_word_swaps(r["answer"])
            return Planted("", cat, it.benchmark, it.item, _chat(u, a), item_words=n_words(it.text))
        raise ValueError(cat)

    for cat in CATEGORIES:
        k = 0
        for bench, want in _shares(per_category, CATEGORY_BENCHMARKS[cat]).items():
            got = 0
            for it in order[bench]:
                if got >= want:
                    break
                if it.item in used[bench] or n_words(it.text) < MIN_ITEM_WORDS:
                    continue
                rec = make(cat, it)
                if rec is None:
                    skipped[f"{cat}/{bench}"] = skipped.get(f"{cat}/{bench}", 0) + 1
                    continue
                rec.bench_id = f"{cat}-{k:04d}"
                k += 1
                got += 1
                used[bench].add(it.item)
                records.append(rec)

    host_ids = {r.source for r in records if r.source}
    pool = [(n, i, m) for n, i, m in sft if f"{n}#{i}" not in host_ids]
    for k, (name, row, msgs) in enumerate(rng.sample(pool, min(clean, len(pool)))):
        records.append(Planted(f"clean-{k:05d}", "clean", None, None, msgs, source=f"{name}#{row}"))
    rng.shuffle(records)

    def count(key) -> dict:
        out: dict = {}
        for r in records:
            k = key(r)
            out[k] = out.get(k, 0) + 1
        return dict(sorted(out.items()))

    stats = {
        "records": len(records),
        "by_category": count(lambda r: r.category),
        "by_category_benchmark": count(lambda r: f"{r.category}/{r.benchmark}" if r.benchmark else "clean"),
        "clean_by_source": count(lambda r: r.source.split("#")[0] if r.category == "clean" else "-"),
        "variants": count(lambda r: f"{r.category}/{r.variant}" if r.variant else "-"),
        "items_not_usable": skipped,
        "min_item_words": MIN_ITEM_WORDS,
        "benchmark_items": {b: len(v) for b, v in items.items()},
        "seed": seed,
    }
    stats["clean_by_source"].pop("-", None)
    stats["variants"].pop("-", None)
    return PlantedSet(records, stats)


# ---- the rephrased hard positives (lm-sys/llm-decontaminator) -------------------------------------------------

REPHRASED = BENCH / "rephrased_llm_decontaminator"
REPHRASED_CODE_USER = "Solve this programming task."
REPHRASED_TEXT_ASSISTANT = "Let me think about this step by step."


def rephrased_file_item(stem: str, line: int, n_lines: int) -> tuple[str, str]:
    """(benchmark, item id) of line `line` of a rephrased file (the files keep the benchmark's order)."""
    if stem.startswith("humaneval"):
        return "humaneval", f"humaneval/HumanEval/{line % 164}"  # humaneval_multi: five languages in turn
    if "gsm8k" in stem:
        return "gsm8k", f"gsm8k/test/{line}"
    subject = re.sub(r"_test_.*$", "", stem)
    return "mmlu", f"mmlu/test/{subject}/{line}"


def rephrased_set() -> tuple[list[Planted], dict]:
    """One record per non-empty line of every rephrased file: code as the answer to a fixed instruction, a GSM8K
    rewrite split at 'Answer:' into question and answer, an MMLU question as the user turn."""
    records, stats = [], {}
    for path in sorted(REPHRASED.glob("*.jsonl")):
        rows = read_jsonl(path)
        stem = path.stem
        n = 0
        for line, row in enumerate(rows):
            text = (row.get("text") or "").strip()
            if not text:
                continue
            bench, item = rephrased_file_item(stem, line, len(rows))
            if bench == "humaneval":
                msgs = _chat(REPHRASED_CODE_USER, text)
            elif bench == "gsm8k":
                q, sep, a = text.partition("Answer:")
                q = q.removeprefix("Question:").strip()
                msgs = _chat(q, a.strip() or text) if sep and q else _chat(text, REPHRASED_TEXT_ASSISTANT)
            else:
                msgs = _chat(text, REPHRASED_TEXT_ASSISTANT)
            records.append(Planted(f"reph-{stem}-{line:04d}", stem, bench, item, msgs, source=stem))
            n += 1
        stats[stem] = {"lines": len(rows), "records": n, "empty": len(rows) - n}
    return records, stats


def write_jsonl(path: Path, recs: list[Planted]) -> None:
    with open(path, "wb") as f:
        for r in recs:
            f.write(orjson.dumps(r.to_json()) + b"\n")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, required=True, help="folder for planted.jsonl and labels.jsonl")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--per-category", type=int, default=50)
    p.add_argument("--clean", type=int, default=3000)
    a = p.parse_args()
    ps = planted_set(a.seed, a.per_category, a.clean)
    a.out.mkdir(parents=True, exist_ok=True)
    write_jsonl(a.out / "planted.jsonl", ps.records)
    with open(a.out / "labels.jsonl", "wb") as f:
        for r in ps.records:
            f.write(orjson.dumps(r.label()) + b"\n")
    print(orjson.dumps(ps.stats, option=orjson.OPT_INDENT_2).decode())


if __name__ == "__main__":
    main()
