"""Text normalisation of the clean stage: newlines, mojibake, NFC, control and zero-width characters, trailing
whitespace. Each step is reported by name when it changed the text, so the stage can count what it fixed.

Steps run in this order (names as reported): `newlines` (\\r\\n, \\r, U+2028/9 -> \\n; first, so that control
stripping never merges lines), `mojibake` (ftfy, encoding fixes only), `nfc`, `control`, `zero_width`,
`trailing_whitespace` (last, since removed characters may leave spaces at a line end). No step changes the
leading whitespace of a non-blank line, so code indentation survives; tabs are kept.

Speed: pure-ASCII text skips ftfy and NFC (`str.isascii()` is a C scan), ftfy runs only when a cheap check finds
a sign of mojibake (its own `is_bad` score, C1 controls or surrogates), and every regex is compiled once.
"""

from __future__ import annotations

import re
import unicodedata

import ftfy
from ftfy.badness import is_bad

from stages.clean.config import NormalizeConfig

# Only the encoding repairs: everything else ftfy can do changes text a user meant (curly quotes, HTML entities
# in an answer about HTML, ligatures, full-width characters, ANSI escapes in a terminal example).
FTFY_CONFIG = ftfy.TextFixerConfig(
    unescape_html=False,
    remove_terminal_escapes=False,
    fix_encoding=True,
    restore_byte_a0=True,
    replace_lossy_sequences=True,
    decode_inconsistent_utf8=True,
    fix_c1_controls=True,
    fix_latin_ligatures=False,
    fix_character_width=False,
    uncurl_quotes=False,
    fix_line_breaks=False,
    fix_surrogates=True,
    remove_control_chars=False,
    normalization=None,
    explain=False,
)

_NEWLINE_RE = re.compile(r"\r\n?|[\u2028\u2029]")
_C1_OR_SURROGATE_RE = re.compile(r"[\x80-\x9f\ud800-\udfff]")
# C0 controls except \t (09) and \n (0a), DEL, C1 controls. \r is kept so that it survives when `newlines` is off.
_CONTROL_RE = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")
_ZERO_WIDTH_RE = re.compile(r"[\u200b\u2060\ufeff\u00ad]|(?<!\S)[\u200c\u200d]+|[\u200c\u200d]+(?!\S)")
_TRAILING_WS_RE = re.compile(r"[^\S\r\n]+$", re.MULTILINE)
_LEADING_BLANK_LINES_RE = re.compile(r"\A(?:[^\S\n]*\n)+")

STEPS = ("newlines", "mojibake", "nfc", "control", "zero_width", "trailing_whitespace")


def fix_mojibake(text: str) -> str:
    if text.isascii():
        return text
    if not is_bad(text) and not _C1_OR_SURROGATE_RE.search(text):
        return text
    return ftfy.fix_text(text, FTFY_CONFIG)


def strip_trailing_whitespace(text: str) -> str:
    text = _TRAILING_WS_RE.sub("", text)
    text = _LEADING_BLANK_LINES_RE.sub("", text)
    return text.rstrip()


def normalize_text(text: str, cfg: NormalizeConfig) -> tuple[str, list[str]]:
    """Returns the new text and the names of the steps that changed it (e.g. ["mojibake", "zero_width"])."""
    if not cfg.enabled or not text:
        return text, []
    changed: list[str] = []
    ascii_ = text.isascii()
    if cfg.newlines:
        new, n = _NEWLINE_RE.subn("\n", text)
        if n:
            text = new
            changed.append("newlines")
    if cfg.fix_mojibake and not ascii_:
        new = fix_mojibake(text)
        if new != text:
            text = new
            changed.append("mojibake")
    if cfg.nfc and not ascii_ and not unicodedata.is_normalized("NFC", text):
        text = unicodedata.normalize("NFC", text)
        changed.append("nfc")
    if cfg.strip_control:
        new, n = _CONTROL_RE.subn("", text)
        if n:
            text = new
            changed.append("control")
    if cfg.strip_zero_width and not ascii_:
        new, n = _ZERO_WIDTH_RE.subn("", text)
        if n:
            text = new
            changed.append("zero_width")
    if cfg.trailing_whitespace:
        new = strip_trailing_whitespace(text)
        if new != text:
            text = new
            changed.append("trailing_whitespace")
    return text, changed


def normalize_messages(
    messages: list[dict[str, str]], cfg: NormalizeConfig
) -> tuple[list[dict[str, str]], list[str]]:
    """Normalise every message's content. Returns new message dicts (the input is not modified) and the names of
    the steps that changed any message, each once, in step order."""
    if not cfg.enabled:
        return messages, []
    out: list[dict[str, str]] = []
    seen: set[str] = set()
    for m in messages:
        content, steps = normalize_text(m["content"], cfg)
        if steps:
            seen.update(steps)
            m = {**m, "content": content}
        out.append(m)
    return out, [s for s in STEPS if s in seen]
