"""Code parse checks of the clean stage: code the model is trained on must parse.

`CodeChecker.check(view)` parses the fenced code blocks of the assistant turns (and the document of a `code`
record) with tree-sitter and rejects the record (`code_syntax_error`) at the first tagged block of a supported
language (Python, JavaScript, TypeScript, Java, Go, Rust, C, C++, Bash) that does not parse. Code is never run:
tree-sitter only builds a syntax tree. The detail names the language, the tag as written, the turn, the block
(0-based within the turn), the first error's 1-based line within the block (`line`) and within the turn
(`turn_line`), what went wrong (`missing '}'`, `unexpected '...'`) and the text of that line.

What is checked, and what is only counted (`unchecked: {reason: n}`, never rejected):
- **Trained-on code only.** Assistant turns, and the first user turn of a `code` record without answers (the
  document; its language is its fence tag, else `meta.language` / `meta.lang`). Code in prompts is often broken
  on purpose ("fix the bug in this code"): prompt blocks are counted (`prompt`), never parsed. System turns and
  `text` records are not looked at.
- **Tags.** The info string's first word, lower-cased, `{.x}` and `language-x` unwrapped, aliases resolved (py,
  python3, js, jsx, node, ts, c++, cc, hpp, golang, rs, sh, shell, zsh, console ...; `tsx` uses the TSX grammar).
  Other tags are `unsupported:<tag>` (sql, json, html, yaml, text, output, diff, csharp ...); a supported language
  left out of `languages` is `disabled:<lang>`.
- **Untagged blocks** get a language by trying the parsers, conservatively: only the (at most 3) languages whose
  cues appear in the block (`def `, `self.` for Python; `#include`, `printf(` for C; `fn `, `let mut` for Rust;
  shell commands for Bash ...) are tried, best cue score first, and the first grammar that parses the block
  without an error is its language (`detected: {lang: n}`, also counted in `checked`). A block no parser accepts
  may be prose, program output or pseudo-code: it is `untagged`, never rejected. Ambiguity: TypeScript and C++
  cues weigh double on top of the JavaScript and C cues they extend, so plain JS stays JS and plain C stays C; Bash
  is tried only on shell cues, since almost any line of words is a valid command.
- **Unfenced code answers** (CodeAlpaca writes raw code with no fences): an answer with no fence that
  `looks_like_code` is detected like an untagged block (`unfenced` when no parser accepts it) and never rejected:
  without a tag the language is a guess, and a guess must not reject a record. This costs a parse per such
  answer (CodeAlpaca-like sets run at about a third of the speed); `detect_untagged: false` skips it.
- **Fragments.** Answers show fragments that are valid in context: a Java method without a class, Go statements
  without a function, C++ statements, a Rust tail expression, a JS class method or a JSON object under a js tag,
  an indented Python method. When the bare parse fails, the block is parsed again inside balanced wrappers
  (`class W__ { ... }`, `func w__() { ... }`, `( ... )`; the wrapper opens on the block's first line, so line
  numbers stay put) and with the neighbouring grammar (JS as TypeScript/TSX, C as C++ and back): mislabelled but
  valid code is not a syntax error. A balanced wrapper adds an opener for each closer, so it cannot mend a
  missing or extra bracket: broken code stays broken.
- **Placeholders.** Lines that are only an ellipsis (`...`, `…`) are blanked (outside Python, where `...` is
  valid); a block whose first error is an ellipsis token ("{ ... }", "foo(...)", "...rest of code"; not a spread
  `...xs`) or sits on a line with a fill-in ("<your-api-key>", "<repo_url>"; in Bash, Python and Go any
  "<word>") is `placeholder`. Bash fill-ins are rewritten before parsing ("git clone <repo-url>" parses).
- **Transcripts and notebooks.** Python blocks starting with `>>> ` (or `In [1]:`) keep only the prompt lines
  (prompts cut, output blanked); IPython magics and shell escapes (`%`, `!` lines) are blanked. Shell blocks
  starting with `$ ` (or tagged console) keep only the `$ ` lines.
- **Not code.** A tagged block that fails and has no line that looks like code (`text.is_code_line`) is program
  output or prose under a language tag ("6 4 6 3" in a c block): `not_code`.
- **Grammar gaps.** Valid code a grammar rejects (tree-sitter-c on "#include <x.h> " with a trailing blank,
  tree-sitter-bash on "${s:$i:1}", tree-sitter-cpp on "typeid(int)") is rewritten on the same line first
  (`_GRAMMAR_GAPS`).
- **Limits.** Blocks over `max_block_chars` are `too_long`; an unclosed fence is `unclosed` (the `truncated` rule
  owns cut answers); an empty block is `empty`.

Shared with other stages: `parser_for(grammar)` (the per-process parsers) and `block_language(info, body)` (the
language of a block from its tag, else detected as above), used by the dedup stage's code tokens.

Counters (non-empty keys only): `checked`, `failed`, `detected` by language and `unchecked` by reason. A record's
counting stops at its first failing block. `tests/benchmarks/code_eval.py` measures false rejects, caught
breakage and detection on HumanEval-X and CodeXGLUE.

Speed: a turn without ``` or ~~~ costs two substring tests (an answer also `looks_like_code`, taken from the
rules' cached prose when they computed it); a block costs one parse (about 1 µs per character on the build
machine), a failing block up to five. Parsers are built on first use, once per process, at module level, so the
checker stays picklable. tree-sitter has no time limit here, hence `max_block_chars`.
"""

from __future__ import annotations

import importlib
import re
import textwrap
from typing import TYPE_CHECKING, Literal

from pydantic import Field
from tree_sitter import Language, Node, Parser

from factory.config import Section
from stages.clean.text import Prose, fenced_blocks, is_code_line, looks_like_code, snippet

if TYPE_CHECKING:  # config.py imports this module for CodeParseConfig; rules.py imports config.py
    from stages.clean.rules import RecordView

LanguageName = Literal["python", "javascript", "typescript", "java", "go", "rust", "c", "cpp", "bash"]
LANGUAGES: tuple[str, ...] = ("python", "javascript", "typescript", "java", "go", "rust", "c", "cpp", "bash")

REASON = "code_syntax_error"


class CodeParseConfig(Section):
    """Parse fenced code blocks with tree-sitter and drop records whose trained-on code has a syntax error."""

    enabled: bool = Field(
        default=True,
        description="Parse code blocks of assistant turns (and `code` records) and drop records with a syntax "
        "error (`code_syntax_error`). Code in user turns is never judged: prompts are often broken on purpose.",
    )
    languages: list[LanguageName] = Field(
        default_factory=lambda: list(LANGUAGES),
        description="Languages to parse. A block tagged with another language (or with one left out here) is "
        "counted as unchecked, never rejected. Tag aliases are understood (py, js, ts, tsx, c++, golang, rs, "
        "sh, zsh, console ...).",
    )
    detect_untagged: bool = Field(
        default=True,
        description="Give untagged blocks (and unfenced answers that look like code) a language by trying the "
        "parsers of the languages whose cues they show; a block no parser accepts is counted as unchecked, never "
        "rejected. False: every untagged block is counted unchecked.",
    )
    check_unfenced: bool = Field(
        default=False,
        description="Also try the parsers on unfenced answers that look like code (CodeAlpaca-style raw code). "
        "Such an answer never rejects a record (nothing declares its language), so this only fills the "
        "`checked`/`detected` counters, at about 3x the stage's cost on code-heavy sets. Off: they are counted "
        "as `unchecked: unfenced`.",
    )
    max_block_chars: int = Field(
        default=20_000,
        ge=1,
        description="Longer blocks are counted unchecked (`too_long`). tree-sitter takes about 1 ms per 1,000 "
        "characters of broken code and a failing block is parsed up to 5 times (fragment wrappers), so the cap "
        "bounds a record's check to about 0.1 s; SFT code blocks are nearly all far shorter.",
    )


# ---- grammars and tags ---------------------------------------------------------------------------------------

# grammar -> (module, function returning the language pointer)
_GRAMMARS: dict[str, tuple[str, str]] = {
    "python": ("tree_sitter_python", "language"),
    "javascript": ("tree_sitter_javascript", "language"),
    "typescript": ("tree_sitter_typescript", "language_typescript"),
    "tsx": ("tree_sitter_typescript", "language_tsx"),
    "java": ("tree_sitter_java", "language"),
    "go": ("tree_sitter_go", "language"),
    "rust": ("tree_sitter_rust", "language"),
    "c": ("tree_sitter_c", "language"),
    "cpp": ("tree_sitter_cpp", "language"),
    "bash": ("tree_sitter_bash", "language"),
}
_PARSERS: dict[str, Parser] = {}  # per process, built on first use


def _parser(grammar: str) -> Parser:
    parser = _PARSERS.get(grammar)
    if parser is None:
        module, fn = _GRAMMARS[grammar]
        parser = _PARSERS[grammar] = Parser(Language(getattr(importlib.import_module(module), fn)()))
    return parser


def parser_for(grammar: str) -> Parser:
    """The process's tree-sitter parser of a grammar (python, javascript, typescript, tsx, java, go, rust, c,
    cpp, bash), built on first use and shared (not thread-safe: one parse at a time per process)."""
    return _parser(grammar)


# tag -> (language, grammar of the first attempt)
_TAGS: dict[str, tuple[str, str]] = {}
for _lang, _aliases in {
    "python": "python py python3 py3 ipython pycon pyi sage",
    "javascript": "javascript js jsx node nodejs mjs cjs es6 ecmascript",
    "typescript": "typescript ts mts cts",
    "java": "java",
    "go": "go golang",
    "rust": "rust rs",
    "c": "c h",
    "cpp": "cpp c++ cc cxx hpp hxx hh h++ cplusplus",
    "bash": "bash sh shell zsh ksh console shell-session shellsession terminal",
}.items():
    for _alias in _aliases.split():
        _TAGS[_alias] = (_lang, _lang)
_TAGS["tsx"] = ("typescript", "tsx")
_TRANSCRIPT_TAGS = frozenset({"console", "shell-session", "shellsession", "terminal", "pycon"})

# Attempts per grammar of the first parse: (grammar, prefix, suffix). Prefixes carry no newline, so the block's
# lines keep their numbers; every wrapper is balanced, so it cannot mend a missing or extra bracket.
_ATTEMPTS: dict[str, tuple[tuple[str, str, str], ...]] = {
    "python": (("python", "", ""),),
    "javascript": (
        ("javascript", "", ""),
        ("javascript", "class W__ {", "\n}"),
        ("javascript", "(", "\n)"),
        ("typescript", "", ""),
        ("tsx", "", ""),
    ),
    "typescript": (
        ("typescript", "", ""),
        ("typescript", "class W__ {", "\n}"),
        ("typescript", "(", "\n)"),
        ("tsx", "", ""),
    ),
    "tsx": (("tsx", "", ""), ("tsx", "class W__ {", "\n}"), ("typescript", "", "")),
    "java": (("java", "", ""), ("java", "class W__ {", "\n}"), ("java", "class W__ { void w__() {", "\n}}")),
    "go": (("go", "", ""), ("go", "func w__() {", "\n}")),
    "rust": (("rust", "", ""), ("rust", "fn w__() {", "\n}"), ("rust", "impl W__ {", "\n}")),
    "c": (("c", "", ""), ("c", "void w__(void) {", "\n}"), ("cpp", "", "")),
    "cpp": (("cpp", "", ""), ("cpp", "void w__() {", "\n}"), ("cpp", "class W__ {", "\n};"), ("c", "", "")),
    "bash": (("bash", "", ""),),
}
# For detection only the language's own grammar and wrappers count: a cross-grammar success is another language.
_DETECT_ATTEMPTS = {g: tuple(a for a in atts if a[0] == g) for g, atts in _ATTEMPTS.items()}


def tag_language(info: str) -> tuple[str, str | None, str | None]:
    """(normalised tag, language, grammar) of a fence's info string; language None when unsupported."""
    tag = info.split(None, 1)[0].lower() if info else ""
    tag = tag.strip("{}").lstrip(".")
    for prefix in ("language-", "lang-"):
        if tag.startswith(prefix):
            tag = tag[len(prefix) :]
    tag = tag.split(":", 1)[0].split(",", 1)[0]
    lang, grammar = _TAGS.get(tag, (None, None))
    return tag, lang, grammar


# ---- untagged detection --------------------------------------------------------------------------------------

# Cues per language: substrings counted over the block's first `_CUE_CHARS` characters (`str.count` is C-fast;
# one regex per language cost 10x more). The distinctive cues of TypeScript and C++ weigh double and add the
# cues of the language they extend, so that a block with them tries that grammar before the JavaScript or C one.
_CUE_CHARS = 2_000
_MAX_CANDIDATES = 3  # each failed try is a parse; three best-cued languages cover the real ambiguities
_CUES: dict[str, tuple[str, ...]] = {
    "python": (
        "def ",
        "self.",
        "print(",
        "elif ",
        "__init__",
        "None",
        "True",
        ":\n",
        "lambda ",
        " in range(",
    ),
    "javascript": ("=>", "console.", "===", "function", "const ", "let ", "var ", "document.", "require("),
    "typescript": (": string", ": number", ": boolean", ": any", "interface ", ": void", "<string>"),
    "java": (
        "System.",
        "String[]",
        "@Override",
        "public ",
        "import java",
        "List<",
        "Arrays.",
        "boolean ",
        "String ",
        "Integer",
        "new ",
    ),
    "go": (
        ":=",
        "fmt.",
        "func ",
        "package ",
        "err != nil",
        "chan ",
        "[]string",
        "[]int",
        "[]float",
        "strconv.",
    ),
    "rust": (
        "fn ",
        "let mut",
        "println!",
        "&str",
        "Vec<",
        ".unwrap()",
        "::new(",
        "impl ",
        "&mut ",
        "usize",
        "i32",
        "String::",
    ),
    "c": (
        "#include",
        "printf(",
        "scanf(",
        "malloc(",
        "free(",
        "int main",
        "sizeof(",
        "NULL",
        "char *",
        "int ",
    ),
    "cpp": (
        "std::",
        "cout",
        "cin >>",
        "nullptr",
        "vector<",
        "template",
        "using namespace",
        "public:",
        "auto ",
    ),
    "bash": (
        "$ ",
        "sudo ",
        "apt",
        "pip install",
        "npm ",
        "echo ",
        "#!/",
        "| grep",
        "cd ",
        "export ",
        "mkdir ",
    ),
}
_DOUBLE = {"typescript": "javascript", "cpp": "c"}  # language -> the language whose cues it shares


def _candidates(body: str, languages: frozenset[str]) -> list[str]:
    """Languages to try on an untagged block, best cue score first (ties: `LANGUAGES` order), at most 3."""
    head = body[:_CUE_CHARS]
    scores = {lang: sum(map(head.count, cues)) for lang, cues in _CUES.items()}
    for lang, base in _DOUBLE.items():
        if scores[lang]:
            scores[lang] = 2 * scores[lang] + scores[base]
    ranked = [lang for lang in LANGUAGES if scores[lang] and lang in languages]
    ranked.sort(key=lambda lang: -scores[lang])
    return ranked[:_MAX_CANDIDATES]


def block_language(
    info: str, body: str, languages: frozenset[str] = frozenset(LANGUAGES)
) -> tuple[str, str] | None:
    """(language, grammar) of a code block: from the fence's info string when it has a tag, else detected the
    way the checker detects untagged blocks (the best-cued languages tried in turn, the first whose grammar, with
    its own fragment wrappers, parses the block without an error). None when the tag is unsupported or its
    language is not in `languages`, or when no parser accepts an untagged block."""
    tag, lang, grammar = tag_language(info)
    if tag:
        return (lang, grammar) if lang is not None and grammar is not None and lang in languages else None
    for lang in _candidates(body, languages):
        if _parse(_prepare(body, lang, ""), _DETECT_ATTEMPTS[lang])[0]:
            return lang, lang
    return None


# ---- preparing a block ---------------------------------------------------------------------------------------

_ELLIPSIS_LINE_RE = re.compile(r"^[ \t]*(?:\.\.\.|…|\. \. \.)[ \t]*$", re.MULTILINE)
# An ellipsis standing for left-out code: not a spread (`...args`), a range or Go's `xs...`.
_PLACEHOLDER_RE = re.compile(r"(?<![\w.])\.\.\.(?![\w$.\[({])|…")
# A fill-in such as <your-api-key>, <repo_url>, <Download folder path>, <TOKEN>: a template, not a syntax error.
_ANGLE_PLACEHOLDER_RE = re.compile(r"<(?:(?i:your)\b[^<>\n]*|[A-Za-z]\w*(?:[ _-]\w+)+|[A-Z][A-Z0-9_]{2,})>")
# In shell commands (and Python, Go) every <word> is a fill-in ("git clone <repo-url>"); a real redirection has
# spaces.
_SHELL_PLACEHOLDER_RE = re.compile(r"<([A-Za-z][\w.-]*(?: [\w.-]+)*)>")
_NO_ANGLE_GRAMMARS = frozenset({"python", "go", "bash"})  # no <T> generics: any <word> is a fill-in
_SPREAD_GRAMMARS = frozenset({"javascript", "typescript", "tsx", "go"})
_MAGIC_RE = re.compile(r"^[ \t]*[%!].*$", re.MULTILINE)
_IPY_PROMPT_RE = re.compile(r"^In \[\d*\]: ?")


def _transcript(body: str, prompts: tuple[str, ...], cont: tuple[str, ...]) -> str:
    """Keep the commands of a REPL or shell session (prompts stripped), blank the output; lines keep numbers."""
    out = []
    for line in body.split("\n"):
        stripped = line.lstrip()
        for p in prompts + cont:
            if stripped.startswith(p) or stripped == p.rstrip():
                out.append(stripped[len(p) :])
                break
        else:
            m = _IPY_PROMPT_RE.match(stripped)
            out.append(stripped[m.end() :] if m else "")
    return "\n".join(out)


# Valid code the grammars reject (found on LLM-written and CodeAlpaca/GPTeacher code), rewritten in place to an
# equivalent the grammar takes, on the same line: (grammar, trigger substring, pattern, replacement).
_GRAMMAR_GAPS: tuple[tuple[str, str, re.Pattern, str], ...] = (
    # tree-sitter-bash: a `$var` offset or length in a substring expansion, "${s:$i:1}".
    ("bash", "${", re.compile(r"(\$\{[^{}\n]*?:)\$(?=\w)"), r"\1"),
    # tree-sitter-cpp: typeid of a built-in type, "typeid(int)".
    (
        "cpp",
        "typeid",
        re.compile(
            r"\btypeid\s*\(\s*(?:(?:unsigned|signed|const|long|short)\s+)*(?:int|char|bool|float|double|long|"
            r"short|void|wchar_t|size_t)\s*[*&]*\s*\)"
        ),
        "typeid(T__)",
    ),
)
_TRAILING_WS_RE = re.compile(r"[ \t]+$", re.MULTILINE)


def _prepare(body: str, grammar: str, tag: str) -> str:
    """The text to parse: dedented, trailing blanks cut (tree-sitter-c rejects "#include <x.h> "), prompts,
    magics and placeholder lines handled, known grammar gaps rewritten; every line keeps its number."""
    if body[:1] in (" ", "\t", "\n"):
        body = textwrap.dedent(body)
    if " \n" in body or "\t\n" in body:
        body = _TRAILING_WS_RE.sub("", body)
    first = body.lstrip()[:4]
    if grammar == "python":
        if first.startswith(">>>") or first.startswith("In ["):
            body = _transcript(body, (">>> ",), ("... ",))
        if "%" in body or "!" in body:
            body = _MAGIC_RE.sub("", body)
        if "…" in body:
            body = _ELLIPSIS_LINE_RE.sub("", body)
    else:
        if grammar == "bash" and (first.startswith("$ ") or tag in _TRANSCRIPT_TAGS):
            if "$ " in body:
                body = _transcript(body, ("$ ",), ("> ",))
        if "..." in body or "…" in body:
            body = _ELLIPSIS_LINE_RE.sub("", body)
    if grammar == "bash" and "<" in body:
        body = _SHELL_PLACEHOLDER_RE.sub(lambda m: "_" + m.group(1).replace(" ", "_") + "_", body)
    for gap_grammar, trigger, pattern, replacement in _GRAMMAR_GAPS:
        if gap_grammar == grammar and trigger in body:
            body = pattern.sub(replacement, body)
    return body


# ---- parsing -------------------------------------------------------------------------------------------------


def _first_error(node: Node) -> Node:
    """The first ERROR or MISSING node in document order (the node must have an error)."""
    while not (node.is_error or node.is_missing):
        for child in node.children:
            if child.has_error:
                node = child
                break
        else:
            return node
    return node


def _parse(code: str, attempts: tuple[tuple[str, str, str], ...]) -> tuple[bool, Node | None, int, bytes]:
    """(parsed, the error node of the attempt that got furthest, its 0-based row, that attempt's source)."""
    best: Node | None = None
    best_row = -1
    best_data = b""
    for grammar, prefix, suffix in attempts:
        data = ((prefix + code + suffix) if prefix else code).encode("utf-8")
        root = _parser(grammar).parse(data).root_node
        if not root.has_error:
            return True, None, 0, data
        err = _first_error(root)
        row = err.start_point.row
        if err.is_missing and err.start_point.column == 0 and row > 0 and err.start_byte >= len(data):
            row -= 1  # a closer missing at the very end belongs to the last line
        if row > best_row:
            best, best_row, best_data = err, row, data
    return False, best, best_row, best_data


def _is_placeholder(err: Node, data: bytes, grammar: str) -> bool:
    """Whether the error is an ellipsis standing for left-out code: an ERROR node holding a `...` token (in
    JavaScript, TypeScript and Go one that is not a spread `...xs`, `xs...` or `...int`) or a `…` outside strings
    and comments, or a MISSING node next to one."""
    if err.is_missing:
        prev, nxt = err.prev_sibling, err.next_sibling
        while prev is not None and prev.child_count:
            prev = prev.children[-1]
        while nxt is not None and nxt.child_count:
            nxt = nxt.children[0]
        return any(n is not None and _is_ellipsis(n, data, grammar) for n in (prev, nxt))
    stack, seen = [err], 0
    while stack and seen < 200:
        node = stack.pop()
        seen += 1
        if "string" in node.type or "comment" in node.type:
            continue
        if node.child_count:
            stack.extend(node.children)
        elif _is_ellipsis(node, data, grammar):
            return True
    return False


def _is_ellipsis(leaf: Node, data: bytes, grammar: str) -> bool:
    """A `...` token (C lexes it as three `.` where it expects an expression) or a leaf holding `…`."""
    if data[leaf.start_byte : leaf.start_byte + 3] == b"...":
        if grammar not in _SPREAD_GRAMMARS:
            return True
        around = data[max(leaf.start_byte - 1, 0) : leaf.end_byte + 1].decode("utf-8", "replace")
        return _PLACEHOLDER_RE.search(around if leaf.start_byte else " " + around) is not None
    return "…".encode() in data[leaf.start_byte : leaf.end_byte]


def _describe(err: Node) -> str:
    if err.is_missing:
        return f"missing {err.type!r}"
    text = (err.text or b"").decode("utf-8", "replace").strip().split("\n", 1)[0]
    return f"unexpected {snippet(text, 40)!r}" if text else "syntax error"


# ---- the checker ---------------------------------------------------------------------------------------------

Verdict = tuple[str, dict]


Counts = dict[str, dict[str, int]]


def _add(counts: Counts, key: str, name: str) -> None:
    d = counts.setdefault(key, {})
    d[name] = d.get(name, 0) + 1


def _looks_like_code(view: RecordView, i: int, content: str) -> bool:
    """`looks_like_code` of an unfenced turn, taken from the rules' prose of that turn when they computed it
    (the same test on the same text) instead of running the line regexes again."""
    prose = view.cache.get(i)
    if isinstance(prose, Prose):
        return prose.is_code
    return looks_like_code(content)


class CodeChecker:
    """Parses the trained-on code of a record; see the module docstring for what is checked and counted."""

    def __init__(self, cfg: CodeParseConfig):
        self.cfg = cfg
        self.languages = frozenset(cfg.languages)

    def check(self, view: RecordView) -> tuple[Verdict | None, Counts]:
        """(("code_syntax_error", detail) or None, counters). Counters, non-empty keys only: {"checked": {lang:
        n}, "failed": {lang: n}, "detected": {lang: n}, "unchecked": {reason: n}}; reasons: untagged (fenced, no
        parser accepted it), unfenced (an unfenced code answer no parser accepted), unsupported:<tag>,
        disabled:<lang>, too_long, unclosed, empty, placeholder, not_code, prompt."""
        counts: Counts = {}
        if not self.cfg.enabled:
            return None, counts
        messages = view.messages
        doc = view.kind == "code" and not any(m["role"] == "assistant" for m in messages)
        for i, m in enumerate(messages):
            role, content = m["role"], m["content"]
            fenced = "```" in content or "~~~" in content
            if role == "assistant" or (doc and role == "user"):
                if fenced:
                    blocks = [(b.info, b.body, b.line, b.closed, "untagged") for b in fenced_blocks(content)]
                elif doc:
                    info = str(view.meta.get("language") or view.meta.get("lang") or "")
                    blocks = [(info, content, 1, True, "untagged")]
                elif _looks_like_code(view, i, content):
                    if not (self.cfg.detect_untagged and self.cfg.check_unfenced):
                        _add(counts, "unchecked", "unfenced")
                        continue
                    blocks = [("", content, 1, True, "unfenced")]
                else:
                    continue
                doc = False  # a code record's document is its first user turn only
                for k, (info, body, line, closed, untagged) in enumerate(blocks):
                    failed = self._check_block(info, body, closed, untagged, counts)
                    if failed is not None:
                        lang, block_line, detail = failed
                        where = {
                            "turn": i,
                            "block": k,
                            "line": block_line,
                            "turn_line": line + block_line - 1,
                        }
                        return (REASON, {"language": lang, "tag": info, **where, **detail}), counts
            elif role == "user" and fenced and view.kind != "text":  # a text record's turn is no prompt
                for _ in fenced_blocks(content):
                    _add(counts, "unchecked", "prompt")
        return None, counts

    def _check_block(
        self, info: str, body: str, closed: bool, untagged: str, counts: Counts
    ) -> tuple[str, int, dict] | None:
        """None when the block passes or is not checked (counted); else (language, 1-based line, detail)."""
        if not body.strip():
            _add(counts, "unchecked", "empty")
            return None
        tag, lang, grammar = tag_language(info)
        if tag and lang is None:
            _add(counts, "unchecked", f"unsupported:{tag}")
            return None
        if not closed:
            _add(counts, "unchecked", "unclosed")
            return None
        if len(body) > self.cfg.max_block_chars:
            _add(counts, "unchecked", "too_long")
            return None
        if lang is None:
            detected = self._detect(body) if self.cfg.detect_untagged else None
            if detected is None:
                _add(counts, "unchecked", untagged)
            else:
                _add(counts, "detected", detected)
                _add(counts, "checked", detected)
            return None
        if lang not in self.languages:
            _add(counts, "unchecked", f"disabled:{lang}")
            return None
        ok, err, row, data = _parse(_prepare(body, grammar, tag), _ATTEMPTS[grammar])
        if ok:
            _add(counts, "checked", lang)
            return None
        lines = body.split("\n")
        row = min(row, len(lines) - 1)
        angle = _SHELL_PLACEHOLDER_RE if grammar in _NO_ANGLE_GRAMMARS else _ANGLE_PLACEHOLDER_RE
        if _is_placeholder(err, data, grammar) or angle.search(lines[row]):
            _add(counts, "unchecked", "placeholder")
            return None
        if not any(is_code_line(line) for line in lines if line.strip()):
            _add(counts, "unchecked", "not_code")  # program output or prose under a language tag
            return None
        _add(counts, "checked", lang)
        _add(counts, "failed", lang)
        return lang, row + 1, {"error": _describe(err), "text": snippet(lines[row], 120)}

    def _detect(self, body: str) -> str | None:
        """The language of an untagged block: the best-cued language whose grammar parses it, or None."""
        found = block_language("", body, self.languages)
        return found[0] if found is not None else None
