"""Text helpers shared by the clean rules: code fences, code detection, prose extraction and word counts.

Web-text heuristics (Gopher, C4, FineWeb) misfire on code, so the rules run them on *prose* only: fenced blocks
(``` or ~~~, CommonMark rules: a closing fence uses the same character and is at least as long) are cut out, a
field that looks like code as a whole is not prose at all, and in mixed fields the lines that look like code and
indented code blocks are left out. Everything here is a pure function over a string; regexes are compiled once.
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
    | [;{]\s*$
    | \)\s*(?:->\s*[\w\[\], .]+)?:\s*$
    """,
    re.VERBOSE,
)

_LIST_ITEM_RE = re.compile(r"^\s*(?:[-*+•]|\d{1,3}[.)])\s")


def split_fences(text: str) -> tuple[str, list[str], bool]:
    """(text outside fenced blocks, the fenced blocks' bodies, whether every opened fence was closed).

    Lenient about the fences real SFT data contains besides CommonMark's: code on the opening line
    ("```int x = 1;", as LIMA's conversion from StackExchange writes it), a closing fence at the end of the
    last code line ("}```"), and a closing fence of any length. A line that opens *and* closes an inline span
    ("```null``` is returned") is not a fence."""
    if "```" not in text and "~~~" not in text:
        return text, [], True
    outside: list[str] = []
    blocks: list[str] = []
    body: list[str] = []
    fence = ""  # the open fence's character, "" outside a block
    for line in text.split("\n"):
        m = _FENCE_RE.match(line)
        if not fence:
            if m and m.group(1)[:3] not in m.group(2):
                fence = m.group(1)[0]
                rest = m.group(2)
                body = [rest] if rest.strip() and not _INFO_RE.fullmatch(rest.strip()) else []
            else:
                outside.append(line)
        elif m and m.group(1)[0] == fence:
            if m.group(2).strip():
                body.append(m.group(2))
            blocks.append("\n".join(body))
            fence = ""
        elif line.rstrip().endswith(fence * 3):
            body.append(line.rstrip()[:-3])
            blocks.append("\n".join(body))
            fence = ""
        else:
            body.append(line)
    if fence:
        blocks.append("\n".join(body))
    return "\n".join(outside), blocks, not fence


def fences_balanced(text: str) -> bool:
    """Whether every ``` / ~~~ fence opened in the text is closed."""
    return split_fences(text)[2]


def is_code_line(line: str) -> bool:
    return _CODE_LINE_RE.match(line) is not None


def looks_like_code(text: str, max_lines: int = 60) -> bool:
    """True when most non-blank lines (of the first `max_lines`) look like source code, as unfenced CodeAlpaca
    answers do. One code line makes a one-line text code; otherwise half the lines, and at least two."""
    n = code = 0
    for line in text.split("\n", max_lines)[:max_lines]:
        if not line.strip():
            continue
        n += 1
        if _CODE_LINE_RE.match(line):
            code += 1
    if n == 0:
        return False
    return code * 2 >= n and (code >= 2 or n == 1)


@dataclass(slots=True)
class Prose:
    """The prose of one field: what text heuristics may look at."""

    text: str  # fenced blocks, code lines and indented code blocks removed; "" when the field is code
    is_code: bool  # the field (outside fences) looks like code as a whole
    balanced: bool  # every code fence is closed
    has_fences: bool


def extract_prose(text: str) -> Prose:
    """Cut code out of a field, leaving the prose the web heuristics are meant for."""
    outside, blocks, balanced = split_fences(text)
    if looks_like_code(outside):
        return Prose("", True, balanced, bool(blocks))
    kept: list[str] = []
    prev_blank = True
    in_indented = False
    for line in outside.split("\n"):
        stripped = line.strip()
        if not stripped:
            prev_blank = True
            kept.append("")
            continue
        indent = len(line) - len(line.lstrip(" \t"))
        # A CommonMark indented code block: 4+ spaces after a blank line (not a nested list item).
        if indent >= 4 and (prev_blank or in_indented) and not _LIST_ITEM_RE.match(line):
            in_indented = True
        else:
            in_indented = False
        prev_blank = False
        if in_indented or _CODE_LINE_RE.match(line):
            continue
        kept.append(line)
    return Prose("\n".join(kept), False, balanced, bool(blocks))


def count_words(text: str) -> int:
    """Whitespace-separated words, with Chinese/Japanese characters counted as 1 word per 1.5 characters."""
    if text.isascii():
        return len(text.split())
    n_cjk = len(_CJK_RE.findall(text))
    if not n_cjk:
        return len(text.split())
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
