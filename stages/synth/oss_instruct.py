"""OSS-Instruct (Wei et al. 2023, "Magicoder: Source Code Is All You Need"): seed snippets from code, the prompt
asking for a problem and its solution inspired by a snippet, and the parser of the reply. Pure: no client, no I/O
but the templates.

What this module owns (the driver, `loops.py`, picks documents and sends the requests):
- `extract_snippets`: as ise-uiuc/magicoder `src/magicoder/generate_data.py` (`extract_seed_code`): a random start
  line, then a random number of consecutive lines in [min_lines, max_lines] (1-15), kept with their line ends. Unlike
  Magicoder, a draw that is only white space is redrawn (a few times), since it can inspire nothing.
- `language_of`: the snippet's language, lower-case, from a hint (a fence tag, a file name or extension, a language
  name) or else from the snippet itself (a few telling patterns per language); `UNKNOWN` when neither says.
- `oss_prompt`: Magicoder's system message and `data/prompt.txt` (templates `oss_instruct_system`, `oss_instruct`),
  with the language as the snippet fence's info string.
- `parse_problem_solution`: Magicoder's `parse_problem_solution` (the lines after the first "[Problem
  Description]" up to the first "[Solution]", and the lines after that), also taking markdown headings ("##
  Problem Description", "**Solution:**") that chat models write instead of the brackets; None unless both sections
  are non-empty, the solution holds code (a closed fenced block, or at least two lines that read as code) and its
  fences are balanced (an unclosed fence is a reply cut short).
"""

from __future__ import annotations

import random
import re
from pathlib import Path

from stages.synth import templates
from stages.synth.templates import Messages

__all__ = ["UNKNOWN", "extract_snippets", "language_of", "oss_prompt", "parse_problem_solution"]

UNKNOWN = "unknown"


def extract_snippets(
    text: str, rng: random.Random, min_lines: int = 1, max_lines: int = 15, n: int = 1
) -> list[str]:
    """`n` seed snippets of `text` (fewer, or none, when it has no line that is not blank): each a random start
    line and 1 + randint(min_lines - 1, max_lines - 1) consecutive lines from it (fewer at the end of the text)."""
    if min_lines < 1 or max_lines < min_lines:
        raise ValueError(f"snippet lines: need 1 <= min_lines <= max_lines, got {min_lines}, {max_lines}")
    lines = text.splitlines(keepends=True)
    if not any(line.strip() for line in lines):
        return []
    out = []
    for _ in range(n):
        for _attempt in range(8):
            start = rng.randrange(len(lines))
            count = rng.randint(min_lines, max_lines)
            code = "".join(lines[start : start + count])
            if code.strip():
                out.append(code)
                break
    return out


# fence tags, extensions and names -> the language's name
_ALIASES: dict[str, str] = {}
for _name, _keys in {
    "python": "py python python3 py3 pyw pyi ipython",
    "javascript": "js javascript node jsx mjs cjs",
    "typescript": "ts typescript tsx mts cts",
    "java": "java",
    "c": "c h",
    "cpp": "cpp c++ cc cxx hpp hh hxx cplusplus",
    "csharp": "cs c# csharp",
    "go": "go golang",
    "rust": "rs rust",
    "ruby": "rb ruby",
    "php": "php",
    "swift": "swift",
    "kotlin": "kt kts kotlin",
    "scala": "scala sc",
    "shell": "sh bash shell zsh ksh console shellscript",
    "powershell": "ps1 powershell pwsh",
    "sql": "sql mysql postgresql psql plsql sqlite",
    "html": "html htm xhtml",
    "css": "css scss sass less",
    "r": "r",
    "lua": "lua",
    "perl": "pl pm perl",
    "haskell": "hs haskell",
    "julia": "jl julia",
    "dart": "dart",
    "elixir": "ex exs elixir",
    "matlab": "matlab",
    "objective-c": "objc objective-c objectivec mm",
    "fortran": "f f90 f95 fortran",
    "verilog": "v sv verilog systemverilog",
    "yaml": "yml yaml",
    "json": "json",
    "xml": "xml",
    "markdown": "md markdown",
    "dockerfile": "dockerfile docker",
    "makefile": "makefile make mk",
}.items():
    for _key in _keys.split():
        _ALIASES[_key] = _name

# (language, patterns): the language whose patterns match most often wins, ties going to the earlier one.
_SIGNALS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("php", (r"<\?php", r"\$this->", r"^\s*(?:public |private )?function \w+\(\$")),
    (
        "python",
        (
            r"^\s*def \w+\(.*\)\s*(?:->\s*[^:]+)?:\s*$",
            r"^\s*(?:from [\w.]+ )?import [\w., ]+$",
            r"\bself\.\w",
            r"^\s*elif\b",
            r"^\s*class \w+(?:\([^)]*\))?:\s*$",
            r"\bprint\(",
            r"^\s*@\w+",
            r"#!.*python",
            r"\bNone\b",
            r"\b(?:True|False)\b",
        ),
    ),
    (
        "csharp",
        (
            r"^\s*using System",
            r"^\s*namespace [\w.]+",
            r"\bConsole\.Write",
            r"\bstring\[\]",
            r"\bvar \w+ = new ",
        ),
    ),
    (
        "java",
        (
            r"\bpublic (?:static |final |abstract )*(?:class|void|int|String)\b",
            r"\bSystem\.out\.",
            r"^\s*import java",
            r"^\s*package [\w.]+;",
            r"@Override",
            r"\bString\[\]",
        ),
    ),
    (
        "cpp",
        (
            r"#include\s*<(?:iostream|vector|string|map|memory|algorithm)>",
            r"\bstd::",
            r"\bcout\b",
            r"\btemplate\s*<",
            r"::\w+\(",
        ),
    ),
    ("c", (r"#include\s*[<\"]", r"\bprintf\(", r"\bmalloc\(", r"\bint main\(", r"\bstruct \w+ \{")),
    ("go", (r"^\s*package \w+\s*$", r"\bfunc (?:\([^)]*\) )?\w+\(", r":=", r"\bfmt\.", r"\bgo func\b")),
    (
        "rust",
        (
            r"\bfn \w+\s*[<(]",
            r"\blet mut\b",
            r"\bimpl\b",
            r"\w!\(",
            r"->\s*(?:Self|Result|Option|&)",
            r"\bpub fn\b",
        ),
    ),
    (
        "typescript",
        (
            r":\s*(?:string|number|boolean|any|void)\b",
            r"^\s*(?:export )?interface \w+",
            r"^\s*(?:export )?type \w+\s*=",
        ),
    ),
    (
        "javascript",
        (
            r"\bconsole\.log\(",
            r"\bfunction\s*\w*\s*\(",
            r"=>",
            r"^\s*(?:const|let|var) \w+",
            r"\brequire\(",
            r"\bdocument\.",
            r"^\s*export (?:default )?",
        ),
    ),
    ("kotlin", (r"^\s*fun \w+\(", r"^\s*val \w+", r"\bprintln\(")),
    (
        "swift",
        (
            r"^\s*func \w+\(",
            r"^\s*(?:let|var) \w+\s*:\s*\w+",
            r"\bguard let\b",
            r"^\s*import (?:UIKit|Foundation|SwiftUI)",
        ),
    ),
    ("ruby", (r"^\s*def \w+[^:]*$", r"^\s*end\s*$", r"\bputs\b", r"\.each do\b", r"^\s*require '")),
    (
        "shell",
        (
            r"^#!.*\b(?:ba|z)?sh\b",
            r"^\s*(?:echo|export|cd|sudo|apt-get|pip|npm)\b",
            r"^\s*(?:fi|done|esac)\s*$",
            r"\$\{?\w+\}?",
        ),
    ),
    (
        "sql",
        (r"(?i)\bselect\b.+\bfrom\b", r"(?i)\binsert into\b", r"(?i)\bcreate table\b", r"(?i)\bwhere\b.+="),
    ),
    ("html", (r"<(?:html|head|body|div|span|p|a|ul|li|table|script)\b[^>]*>", r"</\w+>")),
    ("css", (r"^\s*[.#]?[\w-]+(?:\s*[,>+~]\s*[.#]?[\w-]+)*\s*\{\s*$", r"^\s*[\w-]+\s*:\s*[^;]+;\s*$")),
)
_SIGNAL_RES = tuple((lang, tuple(re.compile(p, re.MULTILINE) for p in pats)) for lang, pats in _SIGNALS)


def _from_hint(hint: str) -> str | None:
    hint = hint.strip().lower()
    if not hint:
        return None
    word = hint.split()[0].strip("{}.")
    if word in _ALIASES:
        return _ALIASES[word]
    name = re.split(r"[\\/]", word)[-1]
    if name in _ALIASES:  # Makefile, Dockerfile
        return _ALIASES[name]
    if "." in name:
        return _ALIASES.get(name.rsplit(".", 1)[1])
    return None


def language_of(snippet: str, hint: str = "") -> str:
    """The language of a snippet, lower-case (`python`, `cpp`, `csharp`, `shell`, ...): from `hint` (a fence tag
    "py", a file name "src/main.rs", an extension ".rs", a name "Python") when it names one, else the language
    whose telling patterns match the snippet most (`def f():`, `#include`, `fn main(`, ...); `UNKNOWN` if none."""
    named = _from_hint(hint)
    if named:
        return named
    best, best_hits = UNKNOWN, 0
    for lang, patterns in _SIGNAL_RES:
        hits = sum(1 for p in patterns if p.search(snippet))
        if hits > best_hits:
            best, best_hits = lang, hits
    return best


def oss_prompt(snippet: str, language: str = UNKNOWN, override_dir: Path | str | None = None) -> Messages:
    """Magicoder's system message and prompt for one snippet (the language tags its fence, when known)."""
    system = templates.load("oss_instruct_system", override_dir).render()
    tag = "" if language in ("", UNKNOWN) else language
    user = templates.load("oss_instruct", override_dir).render(code=snippet, language=tag)
    return [("system", system), ("user", user)]


_BRACKETED = re.compile(r"\[\s*(problem description|solution)\s*\]", re.IGNORECASE)
# "## Problem Description", "**Solution:**", "Problem:" on a line of their own; "Solution: text" with text after
_HEADING = re.compile(
    r"^[ \t#>*_]*(problem description|problem statement|problem|solution)[ \t*_]*:?[ \t*_]*$", re.IGNORECASE
)
_LABELLED = re.compile(
    r"^[ \t#>*_]*(problem description|solution)[*_]*[ \t]*:[*_]*[ \t]*(\S.*)$", re.IGNORECASE
)
_FENCE_LINE = re.compile(r"^\s*(```|~~~)")
_CLOSED_FENCE = re.compile(r"^\s*(```|~~~)[^\n]*\n(.*?)^\s*\1\s*$", re.MULTILINE | re.DOTALL)
_CODE_LINE = re.compile(
    r"^(?:\s*(?:def |class |import |from \S+ import |#include|function\b|const |let |var |public |private |"
    r"static |fn |func |package |return\b|for\s*\(|while\s*\(|if\s*\(|SELECT\b|print\(|console\.)|"
    r".*[;{}]\s*$|(?: {4}|\t)\S)"
)


def _header(line: str) -> tuple[str, str] | None:
    """(section, text after the header on the same line) when `line` opens a section."""
    found = _BRACKETED.findall(line)
    if (
        len({f.lower() for f in found}) > 1
    ):  # "... two sections: [Problem Description] and [Solution]": an echo
        return None
    m = _BRACKETED.search(line)
    if m:
        rest = line[m.end() :].lstrip(" \t*_:").rstrip()
        return ("problem" if m.group(1).lower().startswith("problem") else "solution"), rest
    m = _HEADING.match(line)
    if m:
        return ("problem" if m.group(1).lower().startswith("problem") else "solution"), ""
    m = _LABELLED.match(line)
    if m:
        return ("problem" if m.group(1).lower().startswith("problem") else "solution"), m.group(2).strip()
    return None


def _has_code(solution: str) -> bool:
    fences = sum(1 for line in solution.split("\n") if _FENCE_LINE.match(line))
    if fences % 2:
        return False
    if any(m.group(2).strip() for m in _CLOSED_FENCE.finditer(solution)):
        return True
    return fences == 0 and sum(1 for line in solution.split("\n") if _CODE_LINE.match(line)) >= 2


def _trim(lines: list[str]) -> str:
    text = "".join(lines).strip()
    return re.sub(r"\n\s*(?:-{3,}|\*{3,}|_{3,})\s*$", "", text).strip()


def parse_problem_solution(text: str) -> tuple[str, str] | None:
    """(problem, solution) from a reply to `oss_prompt`; None when either section is missing or empty, the
    solution comes first, or the solution has no code (see the module docstring)."""
    lines = text.replace("\r\n", "\n").splitlines(keepends=True)
    problem_at = solution_at = None
    heads: dict[int, str] = {}
    for i, line in enumerate(lines):
        head = _header(line)
        if head is None:
            continue
        section, rest = head
        if section == "problem" and problem_at is None and solution_at is None:
            problem_at, heads[i] = i, rest
        elif section == "solution" and problem_at is not None and solution_at is None:
            solution_at, heads[i] = i, rest
    if problem_at is None or solution_at is None:
        return None
    problem = _trim([heads[problem_at] + "\n", *lines[problem_at + 1 : solution_at]])
    solution = _trim([heads[solution_at] + "\n", *lines[solution_at + 1 :]])
    if not problem or not solution or not _has_code(solution):
        return None
    return problem, solution
