"""Text helpers shared by the clean rules: code fences, code detection, prose extraction and word counts.

`fenced_blocks` gives the fenced blocks with their info strings and first lines (for the code parse check);
`split_fences` gives the prose rules the text outside them; both read fences with one scanner.

Web-text heuristics (Gopher, C4, FineWeb) misfire on code, so the rules run them on *prose* only: fenced blocks
(``` or ~~~; CommonMark's rules, made lenient for the fences real SFT data writes, see `split_fences`) are cut
out, a field that looks like code as a whole is not prose at all, and in mixed fields the lines that look like
code, indented code blocks and inline code spans are left out. Everything here is a pure function over a string;
regexes are compiled once.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

# Chinese/Japanese are written without spaces: count their characters separately. A Chinese word is ~1.5
# characters on average, so 1.5 characters make one word for the word count.
CJK_CHARS_PER_WORD = 1.5
_CJK_RE = re.compile(
    r"[\u3040-\u30ff\u31f0-\u31ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\U00020000-\U0002fa1f]"
)

# An opening or closing fence: up to 3 spaces of indent, then 3+ backticks or tildes (CommonMark 4.5).
_FENCE_RE = re.compile(r"^ {0,3}(`{3,}|~{3,})(.*)$")
# An info string after an opening fence: a language name such as "python", "c++", "objective-c", "{r}".
_INFO_RE = re.compile(r"[\w+#.{}-]{1,30}")

# A line that is code rather than prose. Case-sensitive on purpose: "Select the best answer" is prose, "SELECT"
# is SQL. False positives only shield a line from prose heuristics, which errs on the side of keeping.
_CODE_LINE_RE = re.compile(
    r"""^\s*(?:
      (?:def|class|import|from\s+[\w.]+\s+import|return|elif|except|finally|lambda|yield|raise|assert|async\s+def|
         await|nonlocal|global|try:|else:|pass$|break$|continue$)\b
    | (?:\#include|\#define|\#ifn?def|\#endif|\#pragma|\#!|using\s+namespace|template\s*<|namespace\s+\w)
    | (?:public|private|protected|static|final|void|int|float|double|char|bool|boolean|string|String|var|let|const|
         function|func|fn|package|struct|enum|interface|impl|pub|val|export|module\.exports|console\.log|
         System\.out|fmt\.|printf|cout|cin|std::|echo|SELECT|INSERT|UPDATE|DELETE|CREATE|ALTER|DROP|FROM|WHERE|
         JOIN|GROUP\s+BY|ORDER\s+BY|VALUES|BEGIN|END|mysql|sudo|pip|npm|git|cd|ls|mkdir|\$\s)\b
    | print\s*\(|if\s*\(|for\s*\(|while\s*\(|switch\s*\(|catch\s*\(|\w+\.\w+\(.*\)\s*;?\s*$
    | (?:if|for|while|with)\s[^\n]*:\s*$
    | </?[A-Za-z][\w:-]*(?:\s[^<>]*)?/?>
    | (?://|/\*|\*/|--\s|<!--)
    | [{}\[\]()]+[;,]?\s*$
    | @\w+
    | [A-Za-z_][\w.\[\]'"]*\s*(?:[-+*/%|&^]|<<|>>|\*\*|//)?=(?!=)\s*\S
    | \w+\s*\([^()]*\)\s*[{:;]?\s*$
    )
    """,
    re.VERBOSE,
)
# A line ending with "):" or ") -> T:" (a Python def/if/for header).
_PAREN_COLON_RE = re.compile(r"\)\s*(?:->\s*[\w\[\], .]+)?:\s*$")


def is_code_line(line: str) -> bool:
    """A line that looks like code: it ends with ';' or '{', is a block header, or starts like code."""
    end = line.rstrip()[-1:]
    if end == ";" or end == "{":
        return True
    if end == ":" and ")" in line and _PAREN_COLON_RE.search(line):
        return True
    return _CODE_LINE_RE.match(line) is not None


# Inline code spans (`x`, and ```x``` as LIMA writes them): code, not prose.
_INLINE_CODE_RE = re.compile(r"`+[^`\n]+`+")
_LIST_ITEM_RE = re.compile(r"^\s*(?:[-*+•]|\d{1,3}[.)])\s")


@dataclass(slots=True)
class Block:
    """One fenced block: its info string (as written, "" if none), its body, where the body starts (1-based
    line of the field) and whether its fence was closed."""

    info: str
    body: str
    line: int
    closed: bool = True


def _scan_fences(text: str) -> tuple[list[str], list[Block]]:
    """The lines outside fenced blocks and the blocks (see `split_fences` for the fence rules)."""
    outside: list[str] = []
    blocks: list[Block] = []
    body: list[str] = []
    fence = ""  # the open fence's character, "" outside a block
    info = ""
    start = 0
    for n, line in enumerate(text.split("\n"), 1):
        m = _FENCE_RE.match(line)
        if not fence:
            if m and m.group(1)[:3] not in m.group(2):
                fence = m.group(1)[0]
                rest = m.group(2)
                word = rest.strip()
                if word and not _INFO_RE.fullmatch(word):
                    body, info, start = [rest], "", n  # code on the opening line
                else:
                    body, info, start = [], word, n + 1
            else:
                outside.append(line)
        elif m and m.group(1)[0] == fence:
            if m.group(2).strip():
                body.append(m.group(2))
            blocks.append(Block(info, "\n".join(body), start))
            fence = ""
        elif line.rstrip().endswith(fence * 3):
            body.append(line.rstrip()[:-3])
            blocks.append(Block(info, "\n".join(body), start))
            fence = ""
        else:
            body.append(line)
    if fence:
        blocks.append(Block(info, "\n".join(body), start, closed=False))
    return outside, blocks


def fenced_blocks(text: str) -> list[Block]:
    """The fenced blocks of a field with their info strings ("python", "c++", "" when untagged) and first lines,
    found by the same rules as `split_fences`."""
    if "```" not in text and "~~~" not in text:
        return []
    return _scan_fences(text)[1]


def split_fences(text: str) -> tuple[str, list[str], bool]:
    """(text outside fenced blocks, the fenced blocks' bodies, whether every opened fence was closed).

    Lenient about the fences real SFT data contains besides CommonMark's: code on the opening line
    ("```int x = 1;", as LIMA's conversion from StackExchange writes it), a closing fence at the end of the
    last code line ("}```"), and a closing fence of any length. A line that opens *and* closes an inline span
    ("```null``` is returned") is not a fence."""
    if "```" not in text and "~~~" not in text:
        return text, [], True
    outside, blocks = _scan_fences(text)
    return "\n".join(outside), [b.body for b in blocks], not blocks or blocks[-1].closed


def looks_like_code(text: str, max_lines: int = 60) -> bool:
    """True when most non-blank lines (of the first `max_lines`) look like source code, as unfenced CodeAlpaca
    answers do. One code line makes a one-line text code; otherwise half the lines, and at least two."""
    n = code = 0
    for line in text.split("\n", max_lines)[:max_lines]:
        if not line.strip():
            continue
        n += 1
        if is_code_line(line):
            code += 1
    if n == 0:
        return False
    return code * 2 >= n and (code >= 2 or n == 1)  # half the lines, at least two (or the only one)


@dataclass(slots=True)
class Prose:
    """The prose of one field: what text heuristics may look at."""

    text: str  # fenced blocks, code lines and indented code blocks removed; "" when the field is code
    words: int  # count_words(text)
    tokens: list[str]  # text.split(), shared by the rules that need words
    is_code: bool  # the field (outside fences) looks like code as a whole
    balanced: bool  # every code fence is closed
    has_fences: bool


def extract_prose(text: str, max_lines: int = 60) -> Prose:
    """Cut code out of a field, leaving the prose the web heuristics are meant for.

    Inline code spans are cut too. One pass over the lines: a line is code if it looks like code or belongs to an indented code block (4+
    spaces after a blank line, not a nested list item). The field is code as a whole when `looks_like_code`
    says so of its first `max_lines` non-blank lines."""
    outside, blocks, balanced = split_fences(text)
    kept: list[str] = []
    n = code = 0
    prev_blank = True
    in_indented = False
    for line in outside.split("\n"):
        if not line or line.isspace():
            prev_blank = True
            kept.append("")
            continue
        if line[0] in " \t" and (prev_blank or in_indented):
            indent = len(line) - len(line.lstrip(" \t"))
            in_indented = indent >= 4 and not _LIST_ITEM_RE.match(line)
        else:
            in_indented = False
        prev_blank = False
        if in_indented:
            is_code = True
        elif line[-1] in ".!?" and line[0].isupper() and line[1:2].islower():
            is_code = False  # "Capitalised sentence." is prose: skip the regex (most lines of an answer)
        else:
            is_code = is_code_line(line)
        if n < max_lines:
            n += 1
            code += is_code
        if not is_code:
            kept.append(line)
    if n and code * 2 >= n and (code >= 2 or n == 1):
        return Prose("", 0, [], True, balanced, bool(blocks))
    prose = "\n".join(kept)
    if "`" in prose:
        prose = _INLINE_CODE_RE.sub(" ", prose)
    tokens = prose.split()
    words = len(tokens) if prose.isascii() or not _CJK_RE.search(prose) else count_words(prose)
    return Prose(prose, words, tokens, False, balanced, bool(blocks))


def count_words(text: str) -> int:
    """Whitespace-separated words, with Chinese/Japanese characters counted as 1 word per 1.5 characters."""
    if text.isascii() or not _CJK_RE.search(text):
        return len(text.split())
    n_cjk = len(_CJK_RE.findall(text))
    return len(_CJK_RE.sub(" ", text).split()) + max(1, round(n_cjk / CJK_CHARS_PER_WORD))


def count_cjk(text: str) -> int:
    """Number of Chinese/Japanese characters (0 fast for ASCII)."""
    return 0 if text.isascii() else len(_CJK_RE.findall(text))


def snippet(text: str, limit: int = 200) -> str:
    """The text cut to `limit` characters for a reject's detail."""
    text = text.strip()
    return text if len(text) <= limit else text[: limit - 1] + "…"


def tail(text: str, limit: int = 200) -> str:
    text = text.strip()
    return text if len(text) <= limit else "…" + text[-(limit - 1) :]
