"""Record sets for the dedup benchmark (bench_dedup.py), all made from the real public data in ../shared/data.

- `labelled_set(seed)`: a labelled near-duplicate set made by controlled edits of real records. Text pairs: an
  SFT record (alpaca, alpaca_gpt4, LIMA, GPTeacher roleplay; answers of >= 50 words) and a copy of it whose
  answer was edited in one way: word substitutions, deletions or insertions at 1%, 2% or 3% of its words (at
  least one), two adjacent sentences swapped, whitespace changed, letter case changed, or punctuation changed.
  Code pairs: a HumanEval-X program (prompt + canonical solution, six languages) in a fenced block of an
  assistant turn (the user turn is a fixed instruction plus the task's docstring) and a copy with local
  variable/parameter names consistently renamed (1-3 of them, outside comments), a comment line changed, added
  or removed, or the layout changed (indent unit, blank lines, spaces around operators). Every pair has its
  own base record, so pairs never touch each other. The rest of the records (the other SFT records, short
  answers included, and the other programs) are added untouched.
- `throughput_set(n, seed)`: n records of a real instruction and a ~200-word answer cut from real SFT answers
  (split into pieces of <= 25 words, shuffled, concatenated and cut into 200-word windows), ~10% of them
  planted near-duplicates (word edits at 1-3%) of other records.
- `write_memory_set(path, n, seed)`: n records made by repeating every SFT record, each copy with one random
  word substituted in its answer so that ids differ.

`words`/`shingles`/`jaccard` are the reference similarity: word 5-grams of lower-cased text with punctuation
dropped and digit runs folded to "0".
"""

from __future__ import annotations

import random
import re
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import orjson
from shared_data import SHARED_DATA, read_json, read_jsonl

SFT = SHARED_DATA / "sft"
HUMANEVAL_X = SHARED_DATA / "code" / "humaneval-x"

TEXT_SOURCES = {
    "alpaca": "alpaca/alpaca_data_subset5000.json",
    "alpaca_gpt4": "alpaca_gpt4_sample/alpaca_en_demo.json",
    "lima": "lima/lima.json.gz",
    "gpteacher_roleplay": "gpteacher/roleplay-simple-deduped-roleplay-instruct.json.gz",
}
# more SFT files for the memory set (every SFT record, repeated)
MORE_SOURCES = {
    "gpteacher_toolformer": "gpteacher/toolformer-dedupe-only-dataset.json.gz",
    "gpteacher_codegen": "gpteacher/codegen-instruct.json.gz",
    "codealpaca": "codealpaca/code_alpaca_2k.json",
}

TEXT_EDITS = (
    "sub_1",
    "sub_2",
    "sub_3",
    "del_1",
    "del_2",
    "del_3",
    "ins_1",
    "ins_2",
    "ins_3",
    "reorder",
    "whitespace",
    "case",
    "punct",
)
CODE_EDITS = ("rename", "comment_change", "comment_add", "comment_remove", "reformat")
CODE_LANGS = {  # file stem -> fence tag
    "python": "python",
    "cpp": "cpp",
    "java": "java",
    "js": "javascript",
    "go": "go",
    "rust": "rust",
}
CODE_INSTRUCTION = "Complete the following function."
MIN_TEXT_WORDS = 50


# ---- the reference similarity ------------------------------------------------------------------------------

_WORD = re.compile(r"\w+")
_DIGITS = re.compile(r"\d+")


def words(text: str) -> list[str]:
    """Lower-cased words, punctuation dropped, digit runs folded to '0'."""
    return _WORD.findall(_DIGITS.sub("0", text.lower()))


def shingle_list(text: str, n: int = 5) -> list[str]:
    """Word n-grams (one shingle of all words when there are fewer than n)."""
    w = words(text)
    if len(w) < n:
        return [" ".join(w)] if w else []
    return [" ".join(w[i : i + n]) for i in range(len(w) - n + 1)]


def shingles(text: str, n: int = 5) -> set[str]:
    return set(shingle_list(text, n))


def jaccard(a: set, b: set) -> float:
    if not a and not b:
        return 1.0
    return len(a & b) / len(a | b)


# ---- records -----------------------------------------------------------------------------------------------


@dataclass
class Rec:
    bench_id: str
    user: str
    assistant: str
    kind: str  # text | code
    source: str
    edit: str | None = None  # the edit that made this record (the edited member of a pair)
    pair: int | None = None  # pair number, both members

    @property
    def text(self) -> str:
        """What dedup compares (turns: user_and_final): the user turn and the final answer."""
        return f"{self.user}\n{self.assistant}"

    def to_json(self) -> dict:
        return {
            "messages": [
                {"role": "user", "content": self.user},
                {"role": "assistant", "content": self.assistant},
            ],
            "bench_id": self.bench_id,
        }


@dataclass
class Pair:
    a: str
    b: str
    kind: str
    edit: str
    jaccard: float = 0.0


@dataclass
class LabelledSet:
    records: list[Rec]
    pairs: list[Pair]
    stats: dict = field(default_factory=dict)


def load_text_pool(sources: dict[str, str] = TEXT_SOURCES) -> list[tuple[str, str, str]]:
    """(source, user, assistant) of every single-turn view of the SFT files (history turns are left out)."""
    pool = []
    for name, rel in sources.items():
        for r in read_json(SFT / rel):
            inp = (r.get("input") or "").strip()
            user = f"{r['instruction']}\n\n{inp}" if inp else r["instruction"]
            answer = r.get("output", r.get("response", "")) or ""
            if user.strip() and answer.strip():
                pool.append((name, user, answer))
    return pool


def vocabulary(texts: list[str], min_count: int = 3) -> list[str]:
    counts = Counter(w for t in texts for w in re.findall(r"[a-z]{3,}", t.lower()))
    return sorted(w for w, c in counts.items() if c >= min_count)


# ---- text edits (on the answer; layout kept) ---------------------------------------------------------------

_SPLIT_WS = re.compile(r"(\s+)")
_CORE = re.compile(r"^(\W*)(.*?)(\W*)$", re.S)


def _word_slots(tokens: list[str]) -> list[int]:
    return [i for i in range(0, len(tokens), 2) if tokens[i] and re.search(r"\w", tokens[i])]


def _count(rate: float, n_words: int) -> int:
    return max(1, round(rate * n_words))


def edit_substitute(text: str, rate: float, rng: random.Random, vocab: list[str]) -> str:
    tokens = _SPLIT_WS.split(text)
    slots = _word_slots(tokens)
    for i in rng.sample(slots, min(len(slots), _count(rate, len(slots)))):
        pre, core, post = _CORE.match(tokens[i]).groups()
        new = rng.choice(vocab)
        while new == core.lower():
            new = rng.choice(vocab)
        tokens[i] = pre + new + post
    return "".join(tokens)


def edit_delete(text: str, rate: float, rng: random.Random) -> str:
    tokens = _SPLIT_WS.split(text)
    slots = _word_slots(tokens)
    drop = set(rng.sample(slots, min(len(slots) - 1, _count(rate, len(slots)))))
    out = []
    for i, tok in enumerate(tokens):
        if i in drop:
            continue
        if i % 2 == 1 and i - 1 in drop:  # the whitespace after a dropped word
            continue
        out.append(tok)
    return "".join(out)


def edit_insert(text: str, rate: float, rng: random.Random, vocab: list[str]) -> str:
    tokens = _SPLIT_WS.split(text)
    slots = _word_slots(tokens)
    at = Counter(rng.choice(slots) for _ in range(_count(rate, len(slots))))
    out = []
    for i, tok in enumerate(tokens):
        out.append(tok)
        for _ in range(at.get(i, 0)):
            out.append(" " + rng.choice(vocab))
    return "".join(out)


_SENT = re.compile(r"((?<=[.!?])\s+)")


def sentences(text: str) -> list[str]:
    return _SENT.split(text)  # sentences at even positions, their separators at odd positions


def edit_reorder(text: str, rng: random.Random) -> str:
    """Swap two adjacent sentences (the text must have at least two)."""
    parts = sentences(text)
    idx = list(range(0, len(parts) - 2, 2))
    i = rng.choice(idx)
    parts[i], parts[i + 2] = parts[i + 2], parts[i]
    return "".join(parts)


def edit_whitespace(text: str, rng: random.Random) -> str:
    tokens = _SPLIT_WS.split(text)
    ws = [i for i in range(1, len(tokens), 2)]
    changed = False
    for i in ws:
        if rng.random() < 0.25:
            t = tokens[i]
            tokens[i] = (
                rng.choice(["  ", " \n", "\t", "   "]) if "\n" not in t else t + rng.choice(["\n", " "])
            )
            changed = True
    if not changed and ws:
        tokens[ws[0]] += " "
    out = "".join(tokens)
    if rng.random() < 0.5:
        out = "\n" + out + "  \n"
    return out


def edit_case(text: str, rng: random.Random) -> str:
    tokens = _SPLIT_WS.split(text)
    slots = [i for i in _word_slots(tokens) if re.search(r"[A-Za-z]", tokens[i])]
    for i in rng.sample(slots, max(1, len(slots) // 7)):
        tok = tokens[i]
        for op in rng.sample([str.upper, str.lower, str.capitalize, str.swapcase], 4):
            if op(tok) != tok:
                tokens[i] = op(tok)
                break
    return "".join(tokens)


_PUNCT_END = re.compile(r"[,.;:!?](?=\s|$)")


def edit_punct(text: str, rng: random.Random) -> str:
    """Change, drop or add punctuation marks that end a word (never inside words or numbers)."""

    def change(m: re.Match) -> str:
        if rng.random() < 0.5:
            return m.group(0)
        return rng.choice([c for c in [",", ";", ".", "!", ":", ""] if c != m.group(0)])

    out = _PUNCT_END.sub(change, text)
    tokens = _SPLIT_WS.split(out)
    slots = [i for i in _word_slots(tokens) if re.search(r"\w$", tokens[i])]
    for i in rng.sample(slots, max(1, len(slots) // 20)) if slots else []:
        tokens[i] += rng.choice([",", ";", " -", "!"])
    return "".join(tokens)


def edit_text(answer: str, edit: str, rng: random.Random, vocab: list[str]) -> str:
    if edit.startswith(("sub_", "del_", "ins_")):
        rate = int(edit[-1]) / 100
        if edit.startswith("sub_"):
            return edit_substitute(answer, rate, rng, vocab)
        if edit.startswith("del_"):
            return edit_delete(answer, rate, rng)
        return edit_insert(answer, rate, rng, vocab)
    return {"reorder": edit_reorder, "whitespace": edit_whitespace, "case": edit_case, "punct": edit_punct}[
        edit
    ](answer, rng)


# ---- code: programs and edits ------------------------------------------------------------------------------

KEYWORDS = set(
    """
and as assert async await break case catch char class const continue def default del do double elif
else enum except extends false final finally float for from func function go goto if impl import in
int interface is lambda let long loop match mod mut new nil none not null or package pass pub raise
range return self short static struct super switch this throw throws true try type typeof use var
void while with yield string vector auto bool boolean size_t usize isize i32 i64 u8 u32 u64 f32 f64
vec len str list dict tuple set map print println printf fmt math strings sort sorted sum max min
abs std main string_view unsigned signed byte rune error make append cap copy true false none true_
false_ some ok err option result box iter into collect clone unwrap push pop
""".split()
)
NEW_NAMES = (
    "value item acc current cursor total counter tmp elem entry token buf index_ pos vals left_part "
    "right_part head tail part piece chunk seq arr lst data res out cnt step flag best prev nxt "
    "width depth score limit mark slot bucket probe"
).split()
COMMENT_PHRASES = (
    "handle the empty input first",
    "walk over every element once",
    "keep track of the running result",
    "this is the main loop",
    "early exit when the answer is known",
    "compute the answer from the parts",
    "edge case: nothing to do",
    "build the output step by step",
    "the result is ready at this point",
    "check the boundary before indexing",
    "simple and linear in the input size",
    "note: the input is not modified",
)


@dataclass
class Program:
    lang: str
    task: int
    code: str
    docstring: str


def load_programs() -> list[Program]:
    docs = {}
    for r in read_jsonl(HUMANEVAL_X / "humaneval_python.jsonl.gz"):
        docs[int(r["task_id"].split("/")[1])] = _dedent(r.get("text") or "")
    progs = []
    for lang in CODE_LANGS:
        for r in read_jsonl(HUMANEVAL_X / f"humaneval_{lang}.jsonl.gz"):
            task = int(r["task_id"].split("/")[1])
            code = r["prompt"] + (r["declaration"] if lang == "rust" else "") + r["canonical_solution"]
            progs.append(Program(lang, task, code.strip("\n"), docs.get(task, "")))
    return progs


def _dedent(s: str) -> str:
    lines = [ln.strip() for ln in s.strip("\n").splitlines()]
    return "\n".join(lines).strip()


def code_record_parts(p: Program, code: str) -> tuple[str, str]:
    user = f"{CODE_INSTRUCTION}\n\n{p.docstring}" if p.docstring else CODE_INSTRUCTION
    return user, f"```{CODE_LANGS[p.lang]}\n{code}\n```"


def comment_lines(code: str, lang: str) -> list[int]:
    """Indexes of lines that are wholly comment text (or Python docstring text), with at least one word, and
    whose removal keeps every comment delimited (lines with an opening or closing delimiter are left out)."""
    out, in_block = [], False
    for i, line in enumerate(code.split("\n")):
        s = line.strip()
        if lang == "python":
            quotes = s.count('"""') + s.count("'''")
            if in_block:
                if quotes:
                    in_block = False
                elif re.search(r"\w", s):
                    out.append(i)
                continue
            if quotes == 1:
                in_block = True
                continue
            if s.startswith("#") and re.search(r"\w", s):
                out.append(i)
            continue
        if in_block:
            if "*/" in s:
                in_block = False
            elif re.search(r"\w", s):
                out.append(i)
            continue
        if s.startswith("/*"):
            if "*/" not in s:
                in_block = True
            continue
        if s.startswith("//") and re.search(r"\w", s):
            out.append(i)
    return out


def _marker(line: str) -> tuple[str, str]:
    """(prefix kept: indent + comment marker, text) of a comment line."""
    m = re.match(r"^(\s*(?://+|#+|\*+)?\s*)(.*)$", line)
    return m.group(1), m.group(2)


def _split_params(s: str) -> list[str]:
    parts, depth, cur = [], 0, ""
    for ch in s:
        if ch in "<([{":
            depth += 1
        elif ch in ">)]}":
            depth -= 1
        if ch == "," and depth == 0:
            parts.append(cur)
            cur = ""
        else:
            cur += ch
    if cur.strip():
        parts.append(cur)
    return parts


_SIGNATURES = {
    "python": re.compile(r"^\s*def\s+(\w+)\s*\((.*)\)"),
    "cpp": re.compile(r"^[\w:<>,\s*&]*?\b(\w+)\s*\((.*)\)\s*\{?\s*$"),
    "java": re.compile(r"^\s*public[\w<>,\s\[\]]*?\b(\w+)\s*\((.*)\)\s*\{?\s*$"),
    "js": re.compile(r"^\s*const\s+(\w+)\s*=\s*\((.*)\)\s*=>"),
    "go": re.compile(r"^\s*func\s+(\w+)\s*\((.*?)\)"),
    "rust": re.compile(r"^\s*fn\s+(\w+)\s*\((.*?)\)"),
}
_LOCALS = {
    "python": [r"^\s*(\w+)\s*(?:,\s*(\w+)\s*)?=[^=]", r"\bfor\s+(\w+)\s*(?:,\s*(\w+))?\s+in\b"],
    "cpp": [r"\b(?:int|long|float|double|bool|char|string|auto|size_t|vector<[^;=()]*>)\s+(\w+)\s*(?:=|;|,)"],
    "java": [
        r"\b(?:int|long|float|double|boolean|char|String|var|Integer|List<[^;=()]*>|Map<[^;=()]*>)"
        r"\s+(\w+)\s*(?:=|;|:)"
    ],
    "js": [r"\b(?:let|var|const)\s+(\w+)"],
    "go": [r"\b(\w+)\s*(?:,\s*(\w+)\s*)?:=", r"\bvar\s+(\w+)"],
    "rust": [r"\blet\s+(?:mut\s+)?(\w+)", r"\bfor\s+(\w+)\s+in\b"],
}


def rename_candidates(code: str, lang: str) -> list[str]:
    lines = code.split("\n")
    skip = set(comment_lines(code, lang))
    code_lines = [ln for i, ln in enumerate(lines) if i not in skip]
    names: list[str] = []
    fname = None
    for ln in code_lines:
        m = _SIGNATURES[lang].match(ln)
        if m:
            fname = m.group(1)
            params = []
            for part in _split_params(m.group(2)):
                part = part.strip()
                if not part:
                    continue
                if lang == "python":
                    params.append(part.split(":")[0].split("=")[0].strip().lstrip("*"))
                elif lang in ("cpp", "java"):
                    ws = re.findall(r"\w+", part.split("=")[0])
                    params.append(ws[-1] if ws else "")
                elif lang == "js":
                    params.append(part.split("=")[0].strip())
                elif lang == "go":
                    params.append(re.findall(r"\w+", part)[0])
                else:
                    params.append(re.sub(r"^mut\s+", "", part.split(":")[0].strip()))
            names += params  # the last signature wins: the task's function is declared last
    body = "\n".join(code_lines)
    for pat in _LOCALS[lang]:
        for m in re.finditer(pat, body, re.M):
            names += [g for g in m.groups() if g]
    members = set(re.findall(r"\.\s*(\w+)", body))
    seen, out = set(), []
    for n in names:
        if (
            n
            and re.fullmatch(r"[A-Za-z_]\w*", n)
            and n != "_"
            and n != fname
            and n.lower() not in KEYWORDS
            and n not in members
            and n not in seen
        ):
            seen.add(n)
            out.append(n)
    return out


def edit_rename(code: str, lang: str, rng: random.Random) -> str | None:
    cands = rename_candidates(code, lang)
    if not cands:
        return None
    present = set(re.findall(r"\w+", code))
    chosen = rng.sample(cands, min(len(cands), rng.randint(1, 3)))
    mapping = {}
    for name in chosen:
        new = rng.choice([n for n in NEW_NAMES if n not in present and n not in mapping.values()])
        mapping[name] = new
    pattern = re.compile(r"(?<![.\w])(" + "|".join(map(re.escape, mapping)) + r")\b")
    skip = set(comment_lines(code, lang))
    lines = code.split("\n")
    for i, ln in enumerate(lines):
        if i not in skip:
            lines[i] = pattern.sub(lambda m: mapping[m.group(1)], ln)
    return "\n".join(lines)


def edit_comment(code: str, lang: str, rng: random.Random, how: str) -> str | None:
    lines = code.split("\n")
    marked = comment_lines(code, lang)
    if how == "add":
        # before a code line of the body (after the signature), indented like it
        skip = set(marked)
        body = [
            i
            for i, ln in enumerate(lines)
            if i not in skip and ln.strip() and ln.startswith((" ", "\t")) and i > len(lines) // 3
        ]
        if not body:
            return None
        i = rng.choice(body)
        indent = re.match(r"^\s*", lines[i]).group(0)
        mark = "#" if lang == "python" else "//"
        lines.insert(i, f"{indent}{mark} {rng.choice(COMMENT_PHRASES)}")
        return "\n".join(lines)
    if not marked:
        return None
    i = rng.choice(marked)
    if how == "remove":
        del lines[i]
    else:
        prefix, old = _marker(lines[i])
        new = rng.choice([p for p in COMMENT_PHRASES if p != old])
        lines[i] = prefix + new
    return "\n".join(lines)


_OPS = re.compile(r"\s*(=>|->|==|!=|<=|>=|\+=|-=|\*=|/=|%=|&&|\|\||(?<![=!<>+\-*/%&|:])=(?![=>]))\s*")


def edit_reformat(code: str, lang: str, rng: random.Random) -> str:
    """Indent unit changed, blank lines added or removed, spaces around operators and after commas changed."""
    lines = code.split("\n")
    skip = set(comment_lines(code, lang))
    indents = [len(ln) - len(ln.lstrip(" ")) for ln in lines if ln.strip() and ln.startswith(" ")]
    unit = min((n for n in indents if n in (2, 4)), default=4)
    new_unit = rng.choice([u for u in ("  ", "    ", "\t") if u != " " * unit])
    tight = rng.random() < 0.5
    out = []
    for i, ln in enumerate(lines):
        n = len(ln) - len(ln.lstrip(" "))
        ln = new_unit * (n // unit) + " " * (n % unit) + ln[n:]
        if i not in skip and not ln.lstrip().startswith(("#", "//", "/*", "*", '"""', "'''")):
            head = re.match(r"^\s*", ln).group(0)
            rest = ln[len(head) :]
            rest = _OPS.sub((lambda m: m.group(1)) if tight else (lambda m: f" {m.group(1)} "), rest)
            rest = re.sub(r",\s*", "," if tight else ", ", rest)
            ln = head + rest
        if not ln.strip() and rng.random() < 0.5:
            continue  # drop a blank line
        out.append(ln)
        if ln.strip() and rng.random() < 0.15:
            out.append("")  # add a blank line
    return "\n".join(out)


def edit_code(code: str, lang: str, edit: str, rng: random.Random) -> str | None:
    if edit == "rename":
        return edit_rename(code, lang, rng)
    if edit == "reformat":
        return edit_reformat(code, lang, rng)
    return edit_comment(code, lang, rng, edit.split("_")[1])


# ---- the sets ----------------------------------------------------------------------------------------------


def labelled_set(seed: int = 0, pairs_per_text_edit: int = 200) -> LabelledSet:
    rng = random.Random(seed)
    pool = load_text_pool()
    vocab = vocabulary([a for _, _, a in pool])
    eligible = [i for i, (_, _, a) in enumerate(pool) if len(a.split()) >= MIN_TEXT_WORDS]
    rng.shuffle(eligible)
    multi = [i for i in eligible if len(sentences(pool[i][2])) >= 5]  # >= 3 sentences
    used: set[int] = set()
    recs: list[Rec] = []
    pairs: list[Pair] = []

    def add_pair(kind: str, source: str, user: str, a: str, b: str, edit: str) -> None:
        k = len(pairs)
        ra = Rec("", user, a, kind, source, None, k)
        rb = Rec("", user, b, kind, source, edit, k)
        recs.extend([ra, rb])
        pairs.append(Pair("", "", kind, edit))

    for edit in TEXT_EDITS:
        candidates = multi if edit == "reorder" else eligible
        taken = 0
        for i in candidates:
            if taken >= pairs_per_text_edit:
                break
            if i in used:
                continue
            used.add(i)
            source, user, answer = pool[i]
            edited = edit_text(answer, edit, rng, vocab)
            if edited == answer:
                continue
            add_pair("text", source, user, answer, edited, edit)
            taken += 1
    untouched_text = 0
    for i, (source, user, answer) in enumerate(pool):
        if i not in used:
            recs.append(Rec("", user, answer, "text", source))
            untouched_text += 1

    progs = load_programs()
    order = list(range(len(progs)))
    rng.shuffle(order)
    per_edit = len(progs) * 5 // 6 // len(CODE_EDITS)
    counts = dict.fromkeys(CODE_EDITS, 0)
    untouched_code = 0
    for j in order:
        p = progs[j]
        done = False
        for edit in sorted(CODE_EDITS, key=lambda e: counts[e]):
            if counts[edit] >= per_edit:
                continue
            edited = edit_code(p.code, p.lang, edit, rng)
            if edited is None or edited == p.code:
                continue
            user, a = code_record_parts(p, p.code)
            _, b = code_record_parts(p, edited)
            add_pair("code", p.lang, user, a, b, edit)
            counts[edit] += 1
            done = True
            break
        if not done:
            user, a = code_record_parts(p, p.code)
            recs.append(Rec("", user, a, "code", p.lang))
            untouched_code += 1

    rng.shuffle(recs)
    members: dict[int, list[Rec]] = {}
    for n, r in enumerate(recs):
        r.bench_id = f"L{n:06d}"
        if r.pair is not None:
            members.setdefault(r.pair, []).append(r)
    for k, pair in enumerate(pairs):
        orig, edited = sorted(members[k], key=lambda r: r.edit is not None)
        pair.a, pair.b = orig.bench_id, edited.bench_id
        pair.jaccard = jaccard(shingles(orig.text), shingles(edited.text))
    stats = {
        "records": len(recs),
        "text_pairs": sum(p.kind == "text" for p in pairs),
        "code_pairs": sum(p.kind == "code" for p in pairs),
        "untouched_text": untouched_text,
        "untouched_code": untouched_code,
    }
    return LabelledSet(recs, pairs, stats)


def _pieces(texts: list[str], max_words: int = 25) -> list[list[str]]:
    out = []
    for t in texts:
        t = re.sub(r"(```|~~~)[\w+-]*|`", " ", t)  # fence markers and backticks: the windows are prose
        for s in re.split(r"(?<=[.!?])\s+|\n+", t):
            w = s.split()
            for i in range(0, len(w), max_words):
                if w[i : i + max_words]:
                    out.append(w[i : i + max_words])
    return out


def throughput_set(n: int, seed: int = 0, words_per_record: int = 200, dup_share: float = 0.1):
    """(records, planted pairs (original bench_id, copy bench_id)) -- see the module docstring."""
    rng = random.Random(seed)
    pool = load_text_pool()
    answers = [a for _, _, a in pool]
    instructions = [u for _, u, _ in pool if len(u.split()) <= 60]
    vocab = vocabulary(answers)
    pieces = _pieces(answers)
    n_dup = round(n * dup_share)
    n_base = n - n_dup
    base: list[Rec] = []
    buf: list[str] = []
    while len(base) < n_base:
        order = list(range(len(pieces)))
        rng.shuffle(order)
        for k in order:
            buf.extend(pieces[k])
            while len(buf) >= words_per_record and len(base) < n_base:
                text, buf = " ".join(buf[:words_per_record]), buf[words_per_record:]
                base.append(Rec("", rng.choice(instructions), text, "text", "window"))
            if len(base) >= n_base:
                break
    originals = rng.sample(range(n_base), n_dup)
    recs = list(base)
    for k in originals:
        o = base[k]
        edit = rng.choice(["sub_1", "sub_2", "sub_3", "del_1", "del_2", "ins_1", "ins_2"])
        recs.append(Rec("", o.user, edit_text(o.assistant, edit, rng, vocab), "text", "window", edit, k))
        o.pair = k
    rng.shuffle(recs)
    by_pair: dict[int, list[Rec]] = {}
    for i, r in enumerate(recs):
        r.bench_id = f"T{i:07d}"
        if r.pair is not None:
            by_pair.setdefault(r.pair, []).append(r)
    planted = []
    for rs in by_pair.values():
        orig, copy = sorted(rs, key=lambda r: r.edit is not None)
        planted.append((orig.bench_id, copy.bench_id))
    return recs, planted


def memory_records(n: int, seed: int = 0) -> Iterator[bytes]:
    """n JSONL lines: the SFT records repeated, each copy after the first with one random word substituted."""
    rng = random.Random(seed)
    pool = load_text_pool({**TEXT_SOURCES, **MORE_SOURCES})
    vocab = vocabulary([a for _, _, a in pool[:5000]])
    for i in range(n):
        source, user, answer = pool[i % len(pool)]
        if i >= len(pool):
            tokens = _SPLIT_WS.split(answer)
            slots = _word_slots(tokens) or [0]
            tokens[rng.choice(slots)] = rng.choice(vocab)
            answer = "".join(tokens)
        rec = {"messages": [{"role": "user", "content": user}, {"role": "assistant", "content": answer}]}
        yield orjson.dumps(rec) + b"\n"


def write_memory_set(path: Path, n: int, seed: int = 0) -> None:
    with open(path, "wb") as f:
        f.writelines(memory_records(n, seed))


def write_jsonl(path: Path, recs: list[Rec]) -> None:
    with open(path, "wb") as f:
        for r in recs:
            f.write(orjson.dumps(r.to_json()) + b"\n")
