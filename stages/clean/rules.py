"""The quality rules of the clean stage: pure functions `rule(view, cfg) -> None | (reason, detail)`.

A rule looks at one record (`RecordView`: normalised messages, kind, meta) and either passes it (None) or names
the fault (`reason`, the rule's name) with the evidence a reviewer needs (`detail`: the measured value, the
threshold, the matched phrase, the turn index; snippets at most 200 characters). `check` runs the enabled rules
in `RULES` order and returns the first verdict. Adding a rule = one function here, one `Rule` in `RULES`, and
one section of the same name in `CleanConfig`.

Where the defaults come from (details in `config.py`):
- `too_short`: Self-Instruct (Wang et al. 2022) drops instructions of <= 3 words; we drop under 3, never answers.
- `too_long`: 32k tokens at ~4 characters per token, the longest context common SFT recipes train with.
- `repetition`: Gopher (Rae et al. 2021, Table A1) duplicate-line and n-gram fractions, relaxed for SFT.
- `symbol_ratio`: Gopher's hash/ellipsis-to-word ratio and words-with-letters fraction, relaxed; cf. C4 and
  FineWeb line filters, which we do not use because they drop code and short answers by design.
- `needs_modality`: Self-Instruct's keyword filter (image, graph, picture, file, map, draw, plot, go to), made
  precise: a keyword alone never fires, only a request to perceive or produce non-text media does.

Web heuristics were built for web pages. Here they run only on *prose* (see `text.extract_prose`: fenced code,
code lines and indented code blocks removed; a field that looks like code is not prose at all), only on answers
(prompts are not trained on), and only on prose long enough for the statistics to mean something.
`text`/`code` records (one user turn, no answer) get only the rules that make sense for a document: `too_short`
and `too_long` (text), `too_long` (code), and the prose statistics `symbol_ratio` and `repetition` (text).

Speed (the whole rule set runs at 10-20k records/s on one core on typical SFT sets, see
`tests/benchmarks/clean_rule_shares.py`): regexes are compiled at import; the prose of a turn is computed once
per record and shared by the rules (`RecordView.cache`); the pattern rules first look for cheap trigger strings
(`str.__contains__`) and run their regexes only on the few turns that have one; the apologetic-refusal regex is
matched at sentence starts only; n-gram statistics run only on prose over `min_words`, on at most `max_chars` of
it, and exact n-gram counts only when C-level bounds (word counts, repeated-word characters) say a threshold
could be crossed.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from operator import mul
from typing import Any

from stages.clean.config import CleanConfig
from stages.clean.text import Prose, count_cjk, count_words, extract_prose, snippet, tail

Verdict = tuple[str, dict]

CHAT, TEXT, CODE = "chat", "text", "code"


@dataclass(slots=True)
class RecordView:
    """What a rule sees of a record. `messages` are already normalised; `cache` is private to the rules."""

    messages: list[dict[str, str]]
    kind: str = CHAT
    meta: dict = field(default_factory=dict)
    cache: dict = field(default_factory=dict, repr=False, compare=False)


@dataclass(frozen=True, slots=True)
class Rule:
    name: str  # the reject reason, and the name of the rule's config section
    group: str  # for benchmarks: "length", "content", "structure", "statistics"
    fn: Callable[[RecordView, CleanConfig], Verdict | None]
    kinds: frozenset[str]  # record kinds the rule applies to


# ---- shared helpers ------------------------------------------------------------------------------------------


def _prose(view: RecordView, i: int) -> Prose:
    p = view.cache.get(i)
    if p is None:
        p = view.cache[i] = extract_prose(view.messages[i]["content"])
    return p


def _kind(view: RecordView) -> str:
    return view.kind if view.kind in (TEXT, CODE) else CHAT


def _answers(view: RecordView) -> list[int]:
    """Indices of the turns whose prose the statistics look at: answers, or the document of a text record."""
    if _kind(view) == TEXT:
        return [i for i, m in enumerate(view.messages) if m["role"] == "user"][:1]
    return [i for i, m in enumerate(view.messages) if m["role"] == "assistant"]


def _prompt_before(view: RecordView, i: int) -> int | None:
    for j in range(i - 1, -1, -1):
        if view.messages[j]["role"] == "user":
            return j
    return None


def _answer_has_code(view: RecordView) -> bool:
    for i in _answers(view):
        p = _prose(view, i)
        if p.is_code or p.has_fences:
            return True
    return False


# ---- too_short -----------------------------------------------------------------------------------------------


def too_short(view: RecordView, cfg: CleanConfig) -> Verdict | None:
    """The instruction (first user turn) has under `min_words` words (Self-Instruct). Answers have no minimum."""
    c = cfg.too_short
    users = [i for i, m in enumerate(view.messages) if m["role"] == "user"]
    if not users:
        return None
    first = users[0]
    words = count_words(view.messages[first]["content"])
    if words >= c.min_words:
        return None
    # A multi-turn chat that opens with "Hi" and asks its question later is fine.
    if any(count_words(view.messages[i]["content"]) >= c.min_words for i in users[1:]):
        return None
    return "too_short", {
        "turn": first,
        "words": words,
        "min_words": c.min_words,
        "text": snippet(view.messages[first]["content"]),
    }


# ---- too_long ------------------------------------------------------------------------------------------------


def too_long(view: RecordView, cfg: CleanConfig) -> Verdict | None:
    """The record's estimated tokens exceed `max_tokens` (characters / chars_per_token; CJK one token each)."""
    c = cfg.too_long
    chars = sum(len(m["content"]) for m in view.messages)
    # Fast exit: no estimate can exceed max(1, 1/chars_per_token) tokens per character.
    if chars * max(1.0, 1.0 / c.chars_per_token) <= c.max_tokens:
        return None
    cjk = sum(count_cjk(m["content"]) for m in view.messages)
    est = cjk + (chars - cjk) / c.chars_per_token
    if est <= c.max_tokens:
        return None
    return "too_long", {
        "est_tokens": int(est),
        "max_tokens": c.max_tokens,
        "chars": chars,
        "chars_per_token": c.chars_per_token,
    }


# ---- empty_response ------------------------------------------------------------------------------------------


# An answer that is only a stand-in: "<nooutput>", "No Output", "<noinput>\n<output image>", "[screenshot of
# ...]" (Alpaca has a few). Code answers such as "[1, 2, 3]" or "<h1>Title</h1>" do not match.
_PLACEHOLDER_ANSWER_RE = re.compile(
    r"(?:\s*(?:[<\[(]\s*(?:no\s*_?(?:output|input|answer|response)\b[^<>\[\]()\n]{0,60}|[^<>\[\]()\n]{0,60}?"
    r"\b(?:image|picture|photo|screenshot|video|audio|recording|drawing|sketch|chart|graph|diagram)s?\b"
    r"[^<>\[\]()\n]{0,40})[>\])]|no\s*(?:output|input|answer|response)\.?))+\s*",
    re.IGNORECASE,
)


def empty_response(view: RecordView, cfg: CleanConfig) -> Verdict | None:
    """An assistant turn that is empty, whitespace only, or only a placeholder ("<nooutput>", "[image]")."""
    for i, m in enumerate(view.messages):
        if m["role"] != "assistant":
            continue
        content = m["content"]
        if not content.strip():
            return "empty_response", {"turn": i, "check": "empty", "chars": len(content)}
        if (
            len(content) <= 200
            and content.lstrip()[:1] in "<[(Nn"
            and _PLACEHOLDER_ANSWER_RE.fullmatch(content)
        ):
            return "empty_response", {"turn": i, "check": "placeholder", "text": snippet(content)}
    return None


# ---- repeats_instruction -------------------------------------------------------------------------------------

_WORD_RE = re.compile(r"\w+")


def _norm_words(text: str) -> str:
    return " ".join(_WORD_RE.findall(text.lower()))


def repeats_instruction(view: RecordView, cfg: CleanConfig) -> Verdict | None:
    """An answer whose words are the instruction's words (or nearly all of them): it did not do the task.

    "Repeat after me: hello" -> "hello" is kept (the answer is a small part of the instruction), and so is an
    answer equal to only the *input* part of an alpaca instruction (a grammar fix of a correct sentence)."""
    c = cfg.repeats_instruction
    for i, m in enumerate(view.messages):
        if m["role"] != "assistant":
            continue
        j = _prompt_before(view, i)
        if j is None:
            continue
        a_raw, q_raw = m["content"], view.messages[j]["content"]
        la, lq = len(a_raw), len(q_raw)
        if not la or not lq or min(la, lq) < 0.5 * c.min_overlap * max(la, lq):
            continue  # raw lengths too different for the word strings to be near-equal
        a, q = _norm_words(a_raw), _norm_words(q_raw)
        if not a or not q:
            continue
        short, long_ = (a, q) if len(a) <= len(q) else (q, a)
        if a == q or (short in long_ and len(short) >= c.min_overlap * len(long_)):
            return "repeats_instruction", {
                "turn": i,
                "instruction_turn": j,
                "overlap": round(len(short) / len(long_), 3),
                "min_overlap": c.min_overlap,
                "answer": snippet(a_raw),
            }
    return None


# ---- needs_modality ------------------------------------------------------------------------------------------

# Media a text model can never perceive.
_MEDIA = (
    r"(?:image|picture|pic|photo|photograph|screenshot|snapshot|video|video\s+clip|film\s+clip|footage|"
    r"audio|audio\s+clip|sound\s+clip|recording|voice\s+(?:note|message|memo)|x-?ray|gif)s?"
)
# Visual objects that can also be given as text (a graph as an edge list, a table as Markdown): they fire only
# when the turn carries nothing after the instruction.
_VISUAL = r"(?:graph|chart|figure|diagram|map|plot|drawing|painting|sketch|illustration|infographic)s?"
# Words after a media noun that make it a modifier ("image classifier", "video game"), not the object.
_HEADS = (
    r"(?:classifier|classification|recognition|processing|compression|format|file\s+format|editing|editor|"
    r"generation|generator|model|data|dataset|search|filter|tag|caption|description|url|link|path|library|api|"
    r"element|object|size|resolution|quality|analysis|segmentation|detection|game|games|gaming|camera|player|"
    r"streaming|conference|call|chat|production|script|album|credit|card|sharing|upload|codec|encoder|decoder|"
    r"driver|signal|source|feature|features|content|platform|site|sites|service)\b"
)
_DEICTIC = (
    r"(?:this|these|that|those|the\s+(?:following|above|below|attached|provided|given|uploaded|accompanying|"
    r"enclosed|included|embedded|shown|linked)|(?:my|our)\s+(?:attached|uploaded)|attached|uploaded|enclosed)"
)
# A word right before "this image" that makes it the object of the request: a verb of perceiving or editing, or
# a preposition ("a caption for this photo", "the bird in this picture"). "I saw this video where ..." is kept.
_PERCEIVE = (
    r"(?:describe|caption|analy[sz]e|examine|interpret|explain|identify|classify|summari[sz]e|transcribe|"
    r"colori[sz]e|crop|edit|enhance|retouch|rate|title|label|name|watch|view|see|look\s+at|listen\s+to|"
    r"in|of|from|on|for|about|at|to|with|using|into|behind|regarding|based\s+on|according\s+to|given|is|are)"
)
_MEDIA_REF_RE = re.compile(
    rf"\b{_PERCEIVE}\s+{_DEICTIC}\s+(?:[\w-]+\s+){{0,2}}?{_MEDIA}\b(?!\s+{_HEADS})"
    rf"|\b{_MEDIA}\s+(?:below|above|attached|provided|shown\s+(?:below|above|here))\b"
    rf"|\b(?:in|on|from)\s+the\s+{_MEDIA}\b(?!\s+{_HEADS})(?!\s*(?:of|editor|app)\b)",
    re.IGNORECASE,
)
_VISUAL_REF_RE = re.compile(
    rf"\b{_PERCEIVE}\s+{_DEICTIC}\s+(?:[\w-]+\s+){{0,2}}?{_VISUAL}\b(?!\s+{_HEADS})"
    rf"|\b{_VISUAL}\s+(?:below|above|attached|provided|shown\s+(?:below|above|here))\b"
    r"|\b(?:in|on|from)\s+the\s+(?:graph|chart|figure|diagram|plot|map|infographic)s?\b(?!\s*of\b)",
    re.IGNORECASE,
)
_AUDIO_RE = re.compile(
    r"\b(?:listen(?:ing)?\s+to|transcribe|watch(?:ing)?)\s+(?:the|this|these|that|my|our)\s+"
    r"(?:following\s+|attached\s+|given\s+|provided\s+|above\s+|below\s+)?(?:[\w-]+\s+)?"
    r"(?:audio|recording|clip|video|podcast|song|track|voice\s+\w+|sound|speech|interview|lecture|footage|"
    r"episode|voicemail)s?\b",
    re.IGNORECASE,
)
# Media embedded or left as a placeholder: ![alt](url), <img ...>, <image>, [Image of ...], (Link to photo).
_PLACEHOLDER_RE = re.compile(
    r"!\[[^\]\n]*\]\([^)\s]+\)"
    r"|<\s*(?:img|image|video|audio|picture|photo)\b[^>\n]{0,80}>"
    r"|[\[(]\s*(?:an?\s+)?(?:image|picture|photo|photograph|video|audio|recording|figure|screenshot|attachment|"
    r"attached\s+\w+|link\s+to\s+(?:the\s+|a\s+)?(?:photo|image|video|picture|file|audio))\b[^\])\n]{0,100}[\])]"
    r"|https?://\S+?\.(?:jpe?g|png|gif|bmp|webp|tiff?|heic|mp4|mov|avi|mkv|webm|mp3|wav|flac|ogg|m4a)\b",
    re.IGNORECASE,
)
_URL_RE = re.compile(r"https?://\S+|\bwww\.\S+", re.IGNORECASE)
_OPEN_URL_RE = re.compile(
    r"\b(?:go\s+to|visit|open|browse(?:\s+to)?|navigate\s+to|click(?:\s+on)?|check\s+out|access|read|look\s+at)\b"
    r"[^\n]{0,40}?(?:https?://|www\.)"
    r"|\b(?:go\s+to|visit|open|browse|navigate\s+to|access)\s+(?:the|this|that|my|our|a)\s+(?:given\s+|following\s+)?"
    r"(?:website|site|web\s?page|page|link|url)\b",
    re.IGNORECASE,
)
# An instruction that works on what is behind a URL (alpaca: "Summarize this article." + a bare link).
_URL_CONTENT_RE = re.compile(
    r"\b(?:summari[sz]e|summary|read|outline|extract|highlights?|main\s+points|headline|title|describe|explain|"
    r"rewrite|edit|review|analy[sz]e|classify|categori[sz]e|cite|colori[sz]e|snapshot|screenshot|bookmark)\b"
    r"[^\n]{0,80}?\b(?:article|page|web\s?page|website|site|link|url|blog|post|pdf|document|spreadsheet|paper|"
    r"source|news|story|repository|video|photo|image|painting|content)s?\b",
    re.IGNORECASE,
)
# Tasks about URLs themselves (parse, shorten, link to them), answerable in text.
_URL_TASK_RE = re.compile(
    r"\b(?:domain|subdomains?|hostname|host\s+name|parse|parser|shorten|protocol|query\s+string|parameters?|"
    r"hyperlink|anchor|href|endpoint|request|valid|validate|regex|format)\b",
    re.IGNORECASE,
)
# The start of an imperative: sentence start, optionally "please", "can you", "I want you to", "help me".
_IMPERATIVE = (
    r"(?:^|[.!?:]\s+|\n)\s*(?:(?:please|now|then|also|and)\s+)*(?:(?:can|could|would|will)\s+you\s+(?:please\s+)?|"
    r"i\s+(?:want|need|would\s+like)\s+you\s+to\s+|i'd\s+like\s+you\s+to\s+|help\s+me\s+|let's\s+)?"
)
_DRAW_RE = re.compile(
    rf"{_IMPERATIVE}(?:draw\b(?!\s+(?:(?:a|an|the|some|your|my|two|three)\s+)?(?:up|on|upon|from|out|in|"
    r"conclusions?|comparisons?|parallels?|lines?|lessons?|insights?|distinctions?|similarit\w+|connections?|"
    r"analog\w+|contrasts?|differences?|attention|inspiration|breath|straws?|cards?|lots|blood|water|crowds?|"
    r"plan|inferences?|implications?|upon|together|back|near|closer)\b)|paint\s+(?:me\s+)?(?:a|an|some)\b)",
    re.IGNORECASE,
)
_OUTPUT_MEDIA_RE = re.compile(
    rf"{_IMPERATIVE}(?:create|generate|make|design|produce|take|render|record|film|shoot|paint|draw|sketch|plot|"
    r"construct|build|give\s+me|show\s+me|send\s+me)\s+(?:me\s+)?(?:(?:a|an|the|some|\d+|this|these)\s+)?"
    r"(?:(?!vivid|mental|word|verbal|clear|written|textual|big|bigger|full|complete|accurate|rough|general|"
    r"overall|better)[\w-]+\s+){0,3}?"
    r"(?:image|picture|photo|photograph|painting|drawing|illustration|video|animation|gif|screenshot|"
    r"pie\s+chart|bar\s+chart|bar\s+graph|line\s+graph|line\s+chart|scatter\s*plot|histogram|flow\s*chart|"
    r"infographic|heat\s*map|word\s*cloud|(?:data\s+)?visuali[sz]ation|audio|recording|podcast\s+episode|"
    r"voice\s+message)s?"
    r"(?=\s*$|\s*[.,;:!?]|\s+(?:of|for|that|showing|depicting|about|with|which|to|in|from|illustrating|"
    r"representing|comparing|displaying|outlining)\b)(?!\s+(?:with|in)\s+words)",
    re.IGNORECASE,
)
_PLOT_RE = re.compile(
    r"(?:^|[.!?:]\s+|\n)\s*(?:please\s+|now\s+)?plot\s+(?!twist|summary|of\b|line|points?\s+of\s+view)",
    re.IGNORECASE,
)
# A coding or text-art task can produce any "image" as code (matplotlib, SVG, HTML, ASCII art), and a tool-use
# record opens URLs through its tools.
_CODE_CONTEXT_RE = re.compile(
    r"\b(?:python|java|javascript|typescript|golang|rust|ruby|php|perl|kotlin|swift|scala|matlab|octave|html|"
    r"css|svg|sql|bash|shell|powershell|matplotlib|seaborn|plotly|ggplot2?|pandas|numpy|opencv|pillow|pil|"
    r"tkinter|turtle|pygame|p5\.?js|d3(?:\.js)?|latex|tikz|pgfplots|graphviz|mermaid|ascii|code|coding|program|"
    r"programming|script|algorithm|api|regex|curl|json|xml|markdown|emoji|text-based|textual|canvas|react|"
    r"android|ios|jquery)\b"
    r"|\bc(?:\+\+|#)"
    r"|\b(?:toolformer|tool\s+(?:access|use|call)\w*|function\s+call\w*|plugins?)\b"
    r"|\b(?:write|create|implement|define|complete|modify|fix|debug|refactor|optimi[sz]e)\s+(?:a|an|the|this|"
    r"that|following)?\s*(?:[\w-]+\s+)?(?:function|method|class)\b"
    r"|\b(?:function|method|class)\s+(?:that|to|which|in|for)\b",
    re.IGNORECASE,
)


def _has_payload(text: str, end: int) -> bool:
    """Whether the turn carries content after the instruction sentence that matched (a table, an edge list)."""
    rest = text[end:]
    nl = rest.find("\n")
    if nl < 0:
        return False
    rest = _URL_RE.sub("", rest[nl:]).strip()
    return len(rest) >= 20


# Each family of needs_modality patterns needs one of its trigger strings in the lower-cased turn (with a space
# put before it and line breaks made spaces: " map" skips "bitmap"). The regexes run only on turns that have
# one, which is a few percent of them.
_AUDIO_T = (" listen", " transcri", " watch")
_MEDIA_T = (
    " image", " pic", " photo", " video", " clip", " film", " footage", " audio", " recording", " voice",
    " x-ray", " xray", " gif", " screenshot", " snapshot",
)  # fmt: skip
_VISUAL_T = (
    " graph", " chart", " figure", " diagram", " map", " plot", " drawing", " painting", " sketch",
    " illustration", " infographic",
)  # fmt: skip
_PLACEHOLDER_T = (
    "![", "<img", "<image", "<video", "<audio", "<picture", "<photo", "[image", "[picture", "[photo", "[video",
    "[audio", "[recording", "[figure", "[screenshot", "(image", "(picture", "(photo", "(video", "(audio",
    "(link", "(figure", "(screenshot", " image", " picture", " photo", " video", " audio", " recording",
    " figure", " screenshot", "attach", "http",
)  # fmt: skip
_URL_T = ("http", "www.", " website", " web page", " webpage", " site", " link", " url")
_DRAW_T = (" draw", " paint")
_OUTPUT_T = (
    " image", " pic", " photo", " painting", " drawing", " illustration", " video", " animat", " gif",
    " screenshot", " chart", " graph", " histogram", " scatter", " flow", " infographic", " heat", "cloud",
    " visuali", " audio", " recording", " podcast", " voice",
)  # fmt: skip
_PLOT_T = (" plot",)
# The first gate: every trigger above contains one of these (tested), so a turn without any needs no more look.
_MODALITY_GATE = (
    "image", "pic", "photo", "video", "clip", "film", "footage", "audio", "record", "voice", "ray", "gif", "shot",
    "graph", "chart", "figure", "diagram", "map", "plot", "draw", "paint", "sketch", "illustrat", "infographic",
    "listen", "transcri", "watch", "animat", "scatter", "histogram", "flow", "heat", "cloud", "visuali",
    "podcast", "http", "www.", "attach", "![", "<img", "site", "link", "url", "web",
)  # fmt: skip
MODALITY_TRIGGERS = _AUDIO_T + _MEDIA_T + _VISUAL_T + _PLACEHOLDER_T + _URL_T + _DRAW_T + _OUTPUT_T + _PLOT_T


def _has(low: str, triggers: tuple[str, ...]) -> bool:
    return any(t in low for t in triggers)


def needs_modality(view: RecordView, cfg: CleanConfig) -> Verdict | None:
    """An instruction that needs what a text model cannot see, hear, open or produce.

    Fires on: media in the record's meta (LLaVA's `image`); media embedded or left as a placeholder in a user
    turn (`![..](..)`, `<img>`, `[Image of ...]`, a link to a .jpg/.mp3); a request about "this image", "the
    attached photo", "the video below", "in the photo" (and "the graph below" when no graph follows as text);
    "listen to / transcribe / watch this ..."; "go to https://..." or "summarize this article" + a bare link;
    "Draw a cat", "create a pie chart", "plot y = x^2". Never on a mere keyword ("reads a file", "an image
    classifier", "draw a conclusion"), and the URL, placeholder and output checks are skipped for coding or
    ASCII-art tasks and when the answer is code (code can open URLs and draw)."""
    c = cfg.needs_modality
    for key in c.meta_keys:
        if view.meta.get(key):
            return "needs_modality", {"check": "meta", "meta_key": key}
    for i, m in enumerate(view.messages):
        if m["role"] != "user":
            continue
        text = m["content"]
        low = text.lower()
        if not _has(low, _MODALITY_GATE):
            continue
        low = " " + low.replace("\n", " ")
        found = _modality_match(text, low, view, c)
        if found:
            return "needs_modality", {
                "check": found[0],
                "turn": i,
                "match": snippet(found[1], 120),
                "text": snippet(text),
            }
    return None


def _modality_match(text: str, low: str, view: RecordView, c: Any) -> tuple[str, str] | None:
    mm = _has(low, _AUDIO_T) and _AUDIO_RE.search(text) or _has(low, _MEDIA_T) and _MEDIA_REF_RE.search(text)
    if mm:
        return "media_reference", mm.group(0)
    code_ok: bool | None = None  # a coding task, or an answer in code: code can open URLs and draw
    if _has(low, _VISUAL_T):
        for mm in _VISUAL_REF_RE.finditer(text):
            if not _has_payload(text, mm.end()):
                code_ok = bool(_CODE_CONTEXT_RE.search(text)) or _answer_has_code(view)
                if not code_ok:
                    return "media_reference", mm.group(0)
                break
    checks: list[tuple[str, re.Pattern | None]] = []
    if _has(low, _PLACEHOLDER_T):
        checks.append(("placeholder", _PLACEHOLDER_RE))
    if c.check_urls and _has(low, _URL_T):
        checks.append(("url", None))
    if c.check_output:
        if _has(low, _DRAW_T):
            checks.append(("output", _DRAW_RE))
        if _has(low, _OUTPUT_T):
            checks.append(("output", _OUTPUT_MEDIA_RE))
        if _has(low, _PLOT_T):
            checks.append(("output", _PLOT_RE))
    for name, rx in checks:
        if rx is None:
            mm = _OPEN_URL_RE.search(text)
            if mm is None and _URL_RE.search(text) and not _URL_TASK_RE.search(text):
                mm = _URL_CONTENT_RE.search(text)
        else:
            mm = rx.search(text)
        if mm is None:
            continue
        if code_ok is None:
            code_ok = bool(_CODE_CONTEXT_RE.search(text)) or _answer_has_code(view)
        return None if code_ok else (name, mm.group(0).strip())
    return None


# ---- refusal -------------------------------------------------------------------------------------------------

# AI disclaimers: "As an AI language model, I ...". Anywhere in an answer. Not "I am Vicuna, a language model
# trained by ...", which is an identity answer, nor "as an AI researcher".
_DISCLAIMER_RE = re.compile(
    r"\b(?:as|being)\s+(?:an?\s+)?(?:ai|a\.i\.|artificial\s+intelligence)\s+language\s+model\b"
    r"|\b(?:as|being)\s+(?:an?\s+(?:ai|a\.i\.|artificial\s+intelligence)(?:\s+(?:model|assistant|chatbot|bot|"
    r"program|system|entity))?|a\s+(?:large\s+)?language\s+model)\s*,?\s*(?:i|i'm|my)\b[^.!?\n]{0,60}?"
    r"(?:\bnot\b|n't\b|\bcannot\b|\bunable\b|\bno\b|\black\w*|\bincapable\b|\bwithout\b|\bnever\b)"
    r"|\bi(?:'m|\s+am)\s+(?:just|only|merely|simply)\s+(?:an?\s+)?(?:ai|a\.i\.|artificial\s+intelligence|"
    r"(?:large\s+)?language\s+model|computer\s+program|machine|bot|chatbot|virtual\s+assistant)\b"
    r"|\b(?:my|the)\s+(?:knowledge|training(?:\s+data)?)\s+cut-?off\b"
    r"|\bas\s+of\s+my\s+(?:last\s+)?(?:knowledge\s+|training\s+)?(?:update|cut-?off)\b"
    r"|\bi\s+(?:do\s+not|don't|cannot|can't|am\s+unable\s+to|am\s+not\s+able\s+to)\s+"
    r"(?:have\s+(?:the\s+ability\s+to\s+|access\s+to\s+)?)?(?:browse|access|surf)\s+(?:the\s+)?"
    r"(?:internet|web|real-time|current\s+events|urls?|links?|websites?|external)"
    r"|\bi\s+(?:do\s+not|don't)\s+have\s+(?:access\s+to\s+)?(?:real-time|current|up-to-date)\s+"
    r"(?:information|data|news)"
    r"|\bi\s+(?:do\s+not|don't)\s+have\s+(?:the\s+)?(?:ability|capability|capacity)\s+to\s+"
    r"(?:see|view|hear|browse|access|open|watch|listen|perceive|draw|create\s+(?:images|visual)|display|"
    r"physically|experience|feel|have\s+personal)"
    r"|\bi\s+(?:do\s+not|don't)\s+have\s+(?:personal\s+)?(?:opinions|feelings|emotions|beliefs|preferences|"
    r"personal\s+experiences|consciousness|a\s+physical\s+(?:body|form))\b"
    r"|\b(?:text-based|language)\s+(?:ai|model|assistant)\b[^.\n]{0,40}\b(?:cannot|can't|unable|not\s+able)\b",
    re.IGNORECASE,
)
# Apologetic refusals at the start of a sentence near the start of an answer.
_REQUEST_VERBS = (
    r"(?:help(?!\s+but)|assist|provide|fulfill|fulfil|comply|complete|do\s+(?:that|this|so)|create|generate|"
    r"write|produce|answer|respond|reply|engage|support|participate|perform|share|offer|give|draw|display|show|"
    r"browse|access|view|see|open|process|translate|predict|determine|estimate|retrieve|find|identify|know|"
    r"recommend|express|make|calculate|compute|play|sing|compose|listen|watch|guarantee|confirm|verify|locate|"
    r"search|check|read|hear|visit|comment|discuss|speculate|endorse|promote|condone|encourage|continue|"
    r"physically|fulfil|accommodate|grant|tell\s+you)"
)
_NEGATION = (
    r"(?:can't|cannot|can\s+not|am\s+unable\s+to|'m\s+unable\s+to|am\s+not\s+able\s+to|'m\s+not\s+able\s+to|"
    r"won't\s+be\s+able\s+to|will\s+not\s+be\s+able\s+to|won't|will\s+not|am\s+not\s+(?:allowed|permitted)\s+to|"
    r"'m\s+not\s+(?:allowed|permitted)\s+to|do\s+not|don't)"
)
# Matched at sentence starts only (see `_refusal_at_start`): "I'm sorry, but I can't help with that", "I cannot
# provide ...", "I must decline". "I'm sorry to hear that" and "I can't help but wonder" are not refusals.
_REFUSAL_RE = re.compile(
    r"(?:(?:i'?m|i\s+am)\s+(?:so\s+|very\s+|really\s+|truly\s+)?sorry|sorry|i\s+apologi[sz]e|my\s+apologies|"
    r"unfortunately|i'?m\s+afraid|i\s+am\s+afraid)\b[^.!?\n]{0,60}?\b(?:"
    rf"i\s*{_NEGATION}\s+(?:\w+\s+)?{_REQUEST_VERBS}\b"
    r"|i\s+must\s+(?:respectfully\s+|politely\s+)?decline|i(?:'m|\s+am)\s+not\s+(?:comfortable|able\s+to\s+comply))"
    rf"|i\s*{_NEGATION}\s+(?:\w+\s+)?{_REQUEST_VERBS}\b"
    r"|i\s+must\s+(?:respectfully\s+|politely\s+)?decline",
    re.IGNORECASE,
)
_SENTENCE_BREAK_RE = re.compile(r"[.!?]\s+|\n\s*")


def _refusal_at_start(head: str) -> re.Match | None:
    """A refusal that starts a sentence of `head` (matching only at sentence starts keeps this cheap)."""
    m = _REFUSAL_RE.match(head, len(head) - len(head.lstrip()))
    if m:
        return m
    for brk in _SENTENCE_BREAK_RE.finditer(head):
        m = _REFUSAL_RE.match(head, brk.end())
        if m:
            return m
    return None


# Tasks whose answer may legitimately say "I'm sorry, but I can't ...": translations, rewrites, letters,
# dialogues, role-play, and requests for a refusal or an apology.
_REFUSAL_TASK_RE = re.compile(
    r"\b(?:translat\w*|paraphras\w*|rephras\w*|rewrit\w*|re-write|reword\w*|restat\w*|correct|proofread|edit|"
    r"convert|repeat|quote|say|dialog(?:ue)?s?|conversations?|script|scene|story|role-?play|pretend|act\s+as|"
    r"imagine|as\s+if|in\s+the\s+voice|character|respond\s+as|reply|response|email|e-mail|letter|message|note|"
    r"text\s+message|declin\w*|refus\w*|reject\w*|apolog\w*|excuse|say\s+no|turn\s+down|sorry|passive|active\s+voice|"
    r"tense|grammar|sentence)\b",
    re.IGNORECASE,
)
# Role-play as an AI: "As an AI, I ..." is in character there.
_AI_ROLE_RE = re.compile(
    r"\b(?:you\s+are|you're|pretend|imagine|act\s+as|play|role-?play|as\s+if\s+you\s+were)\b[^.\n]{0,60}"
    r"\b(?:ai|a\.i\.|artificial\s+intelligence|robot|android|language\s+model|chatbot|assistant|computer|machine)\b",
    re.IGNORECASE,
)


# Every disclaimer pattern contains one of these (lower-cased): the regex runs only on answers that do.
_DISCLAIMER_TRIGGERS = (
    "an ai", "an a.i", "an artificial", "language model", "cutoff", "cut-off", "as of my", "i don't", "i do not",
    "i cannot", "i can't", "i am unable", "i am not able", "text-based", "computer program", "a machine",
    "a bot", "chatbot", "virtual assistant",
)  # fmt: skip


def refusal(view: RecordView, cfg: CleanConfig) -> Verdict | None:
    """An answer that refuses ("I'm sorry, but I can't ...", "I cannot fulfill that request") or disclaims
    ("As an AI language model, I ...", "my knowledge cutoff"). Apologetic refusals count only near the start of
    an answer and not when the task asks for such a sentence (translate, rewrite, write a letter or dialogue,
    role-play, decline); disclaimers count anywhere unless the task casts the answerer as an AI."""
    c = cfg.refusal
    for i, m in enumerate(view.messages):
        if m["role"] != "assistant":
            continue
        text = m["content"]
        if "`" in text or "~~~" in text:
            text = _prose(view, i).text
        text = text.replace("\u2019", "'")
        low = text.lower()
        j = _prompt_before(view, i)
        prompt = view.messages[j]["content"] if j is not None else ""
        if any(t in low for t in _DISCLAIMER_TRIGGERS):
            mm = _DISCLAIMER_RE.search(text)
            if mm and not _AI_ROLE_RE.search(prompt):
                return _refusal_verdict(i, "disclaimer", mm.group(0), text)
        if c.start_chars:
            mm = _refusal_at_start(text[: c.start_chars])
            if mm and not _REFUSAL_TASK_RE.search(prompt):
                return _refusal_verdict(i, "refusal", mm.group(0), text)
        for phrase in c.extra_phrases:
            if phrase.lower() in low:
                return _refusal_verdict(i, "extra_phrase", phrase, text)
    return None


def _refusal_verdict(turn: int, check: str, phrase: str, text: str) -> Verdict:
    return "refusal", {"turn": turn, "check": check, "phrase": snippet(phrase, 120), "text": snippet(text)}


# ---- truncated -----------------------------------------------------------------------------------------------

# A last character that cannot end a sentence: a letter, or one of , ; : - ( & / + (digits are left alone: "the
# total is 42" is a complete answer without a period). End punctuation, closing quotes and brackets, Markdown
# emphasis, emoji and symbols all end an answer.
_CUT_END_RE = re.compile(r"(?:[^\W\d_]|[,;:\-–—(&/+])$")
# Function words: an answer that stops on one ("... the importance of") was cut, whoever wrote it.
_FUNCTION_END_RE = re.compile(
    r"(?:[,;:\-–—(&/+]|\b(?:the|a|an|of|to|in|on|at|by|for|from|with|into|onto|about|as|than|and|or|but|nor|so|"
    r"if|because|while|when|whereas|although|though|that|which|who|whom|whose|where|is|are|was|were|be|been|"
    r"being|has|have|had|can|could|will|would|shall|should|may|might|must|do|does|did|not|no|its|their|your|"
    r"our|my|his|her|this|these|those|such|very|more|most|less|also|between|through|during|including|like|"
    r"e\.g|i\.e|etc\.?,?))$",
    re.IGNORECASE,
)
_NOT_PROSE_LINE_RE = re.compile(r"^\s*(?:[-*+•>|#]|\d{1,3}[.)]|[a-zA-Z][.)]\s|\[|!\[|<|https?://|`)")
_CAPITALISED_RE = re.compile(r"\b[A-Z]")


def truncated(view: RecordView, cfg: CleanConfig) -> Verdict | None:
    """An answer cut off: meta finish_reason == "length", an unclosed code fence, or a long prose answer whose
    last line stops mid-sentence.

    Mid-sentence means the last line has no end punctuation, and either stops on a function word or a comma
    ("... the importance of") in an answer of `min_words`, or stops on any word in an answer of
    `min_words_any_end` (humans forget a final period; a model stopped at its token limit is long). Exempt:
    code, list items, headings, tables, quotes, short last lines (names, sign-offs), Title Case lines
    (references), and answers whose other long lines also lack end punctuation (verse)."""
    c = cfg.truncated
    if c.check_finish_reason and view.meta.get("finish_reason") == "length":
        return "truncated", {"check": "finish_reason", "finish_reason": "length"}
    for i in _answers(view):
        content = view.messages[i]["content"]
        has_fence = "```" in content or "~~~" in content
        if c.check_fences and has_fence and not _prose(view, i).balanced:
            return "truncated", {"check": "unclosed_fence", "turn": i, "tail": tail(content, 120)}
        if not c.check_mid_sentence:
            continue
        text = content.rstrip()
        # Cheap tests first: most answers end with punctuation, and short ones are never "cut".
        if not _CUT_END_RE.search(text[-1:]) or text.endswith(("```", "~~~")):
            continue
        if text.count(" ") + 1 < c.min_words:
            continue
        p = _prose(view, i)
        if p.is_code:
            continue
        words = count_words(text)
        if words < c.min_words:
            continue
        function_end = _FUNCTION_END_RE.search(text[-24:]) is not None
        if not function_end and words < c.min_words_any_end:
            continue
        last = text[text.rfind("\n") + 1 :]
        if _NOT_PROSE_LINE_RE.match(last) or last.startswith(("    ", "\t")) or last.strip() not in p.text:
            continue  # a list item, heading, table row, quote, or a code line
        last_words = last.split()
        if len(last_words) < c.min_last_line_words:
            continue  # a name, a label, a sign-off
        if not function_end and len(_CAPITALISED_RE.findall(last)) * 3 >= len(last_words) * 2:
            continue  # a title or a reference
        # Verse, or notes without periods: if other long lines also end without punctuation, it is style.
        others = [ln for ln in text.split("\n")[:-1] if len(ln.split()) >= c.min_last_line_words]
        if others and sum(1 for ln in others if _CUT_END_RE.search(ln.rstrip()[-1:])) * 2 >= len(others):
            continue
        return "truncated", {
            "check": "mid_sentence",
            "turn": i,
            "words": words,
            "ends_on_function_word": function_end,
            "last_line": tail(last, 120),
        }
    return None


# ---- symbol_ratio --------------------------------------------------------------------------------------------

_HEADING_HASHES_RE = re.compile(r"^[ \t]*(#{1,6})(?=[ \t])", re.MULTILINE)
# Words made only of symbols (no letter, no digit).
_SYMBOL_WORD_RE = re.compile(r"\s([^\w\s]+)(?=\s)")  # run on " " + text + " "
# Symbol-only words that are Markdown structure or math, not noise: table pipes, bullets, rules, operators.
_TYPOGRAPHIC = "‘’“”«»•·–—…"
_STRUCTURE_WORD_RE = re.compile(
    rf"[-|*+=<>/\\#~^:.,;_()\[\]{{}}$%&'\"{_TYPOGRAPHIC}×÷±≤≥≠≈→←↔⇒⇔∑∏√∞∫∂∆°′″!?]+"
)


def symbol_ratio(view: RecordView, cfg: CleanConfig) -> Verdict | None:
    """Gopher's symbol checks on answer prose of at least `min_words` words: '#' per word (Markdown headings not
    counted), ellipses per word, and the fraction of words with a letter or digit (structure and math symbols
    left out)."""
    c = cfg.symbol_ratio
    for i in _answers(view):
        if view.messages[i]["content"].count(" ") + 1 < c.min_words:
            continue  # cheap pre-check, before extracting prose
        p = _prose(view, i)
        prose, n = p.text, p.words
        if p.is_code or n < c.min_words:
            continue
        if len(prose) > c.max_chars:
            half = c.max_chars // 2
            prose = prose[:half] + "\n" + prose[-half:]
            n = count_words(prose)
        hashes = prose.count("#")
        if hashes:
            hashes -= sum(len(h) for h in _HEADING_HASHES_RE.findall(prose))
            if hashes / n > c.max_hash_ratio:
                return _symbol_verdict(i, "hash_ratio", hashes / n, c.max_hash_ratio, n, prose)
        ellipses = prose.count("...") + prose.count("…")
        if ellipses / n > c.max_ellipsis_ratio:
            return _symbol_verdict(i, "ellipsis_ratio", ellipses / n, c.max_ellipsis_ratio, n, prose)
        # A noise word needs an "@", a "`" or a non-ASCII character that is not typographic punctuation (all
        # other ASCII symbols are structure): without one, skip the scan.
        if "@" not in prose and "`" not in prose:
            if prose.isascii():
                continue
            non_ascii = len(prose) - len(prose.encode("ascii", "ignore"))
            if non_ascii == sum(prose.count(ch) for ch in _TYPOGRAPHIC):
                continue
        symbol_words = _SYMBOL_WORD_RE.findall(f" {prose} ")
        if symbol_words:
            noise = sum(1 for w in symbol_words if not _STRUCTURE_WORD_RE.fullmatch(w))
            structure = len(symbol_words) - noise
            counted = n - structure
            if counted > 0 and noise and (counted - noise) / counted < c.min_word_frac:
                return _symbol_verdict(i, "word_frac", (counted - noise) / counted, c.min_word_frac, n, prose)
    return None


def _symbol_verdict(turn: int, check: str, value: float, threshold: float, words: int, prose: str) -> Verdict:
    return "symbol_ratio", {
        "turn": turn,
        "check": check,
        "value": round(value, 3),
        "threshold": threshold,
        "words": words,
        "text": snippet(prose),
    }


# ---- repetition ----------------------------------------------------------------------------------------------


def _ngrams(words: list[str], n: int) -> zip:
    """The word n-grams as tuples, built in C (the shifted lists are of different lengths on purpose)."""
    return zip(*(words[i:] for i in range(n)), strict=False)


def _dup_ngram_chars(words: list[str], lens: list[int], n: int) -> int:
    """Characters in word n-grams that occur earlier (Gopher; the greedy count of datatrove's filter)."""
    seen: set[tuple[str, ...]] = set()
    idx, rep, last = 0, 0, len(words) - n + 1
    while idx < last:
        g = tuple(words[idx : idx + n])
        if g in seen:
            rep += sum(lens[idx : idx + n])
            idx += n
        else:
            seen.add(g)
            idx += 1
    return rep


def repetition_stats(prose: str, c: Any, tokens: list[str] | None = None) -> tuple[str, float, float] | None:
    """The first Gopher repetition statistic over its threshold: (name, value, threshold), or None.

    Cheap bounds skip the n-gram counts on ordinary text: the top n-gram's character fraction is at most n
    times the largest count*length of a single word, and the duplicated n-gram fraction for every n >= n0 is
    at most the characters of all repeated n0-gram occurrences."""
    if len(prose) > c.max_chars:
        half = c.max_chars // 2
        prose = prose[:half] + "\n" + prose[-half:]
        tokens = None
    if prose.count("\n") >= 3:
        lines = [ln for ln in map(str.strip, prose.split("\n")) if ln]
        if len(lines) >= 4 and len(set(lines)) < len(lines):
            counts = Counter(lines)
            dup = len(lines) - len(counts)
            frac = dup / len(lines)
            if frac > c.max_dup_line_frac:
                return "dup_line_frac", frac, c.max_dup_line_frac
            dup_chars = sum((k - 1) * len(ln) for ln, k in counts.items() if k > 1)
            frac = dup_chars / sum(len(ln) for ln in lines)
            if frac > c.max_dup_line_char_frac:
                return "dup_line_char_frac", frac, c.max_dup_line_char_frac
    # Whitespace tokens, case kept (as Gopher's words). An n-gram covers its words' characters plus one separator
    # each, and the fractions are of the whole prose, as in Gopher (the analysed part of it, see `max_chars`).
    words = tokens if tokens is not None else prose.split()
    if len(words) < 5:
        return None
    counts = Counter(words)
    if len(counts) == len(words):
        return None  # no word repeats, so no n-gram does
    total = len(prose)
    # The largest count * (length + 1) of a word, computed in C: bounds every n-gram's count * length / n.
    top_word = max(map(mul, counts.values(), map(len, counts))) + max(counts.values())
    for n, thr in sorted(c.max_top_ngram_char_frac.items()):
        if len(words) < n or n * top_word <= thr * total:
            continue  # the top n-gram occurs at most as often as its most frequent word
        gram, k = Counter(_ngrams(words, n)).most_common(1)[0]
        if k > 1:
            frac = k * (sum(len(w) for w in gram) + n) / total
            if frac > thr:
                return f"top_{n}gram_char_frac", frac, thr
    dup = sorted(c.max_dup_ngram_char_frac.items())
    if not dup or len(words) < dup[0][0]:
        return None
    min_thr = min(thr for _, thr in dup)
    # Every word of a repeated n-gram occurrence is a repeated word occurrence, so the characters of all
    # repeated word occurrences bound every duplicated-n-gram fraction (computed in C).
    repeated = sum(map(len, words)) + len(words) - sum(map(len, counts)) - len(counts)
    if repeated <= min_thr * total:
        return None
    n0 = dup[0][0]
    grams = Counter(_ngrams(words, n0))
    if len(grams) == len(words) - n0 + 1:
        return None  # no repeated n0-gram, so no longer repeat either
    bound = sum((k - 1) * (sum(len(w) for w in g) + n0) for g, k in grams.items() if k > 1)
    if bound <= min_thr * total:
        return None
    # Tighter: characters of the positions that some later occurrence of a repeated n0-gram covers.
    lens = [len(w) + 1 for w in words]
    first: dict[tuple[str, ...], int] = {}
    covered = bytearray(len(words))
    for k, g in enumerate(_ngrams(words, n0)):
        if first.setdefault(g, k) != k:
            covered[k : k + n0] = b"\x01" * n0
    if sum(ln for ln, cv in zip(lens, covered, strict=True) if cv) <= min_thr * total:
        return None
    for n, thr in dup:
        if len(words) < n:
            continue
        frac = _dup_ngram_chars(words, lens, n) / total
        if frac > thr:
            return f"dup_{n}gram_char_frac", frac, thr
    return None


def repetition(view: RecordView, cfg: CleanConfig) -> Verdict | None:
    """Gopher repetition statistics on answer prose of at least `min_words` words: duplicate lines, the most
    frequent 2/3/4-gram, duplicated 5..10-grams (lower-cased words, punctuation dropped). Catches degenerate
    loops and copy-pasted blocks; thresholds are relaxed for SFT (see config)."""
    c = cfg.repetition
    for i in _answers(view):
        if view.messages[i]["content"].count(" ") + 1 < c.min_words:
            continue
        p = _prose(view, i)
        n = p.words
        if p.is_code or n < c.min_words:
            continue
        hit = repetition_stats(p.text, c, p.tokens)
        if hit:
            name, value, thr = hit
            return "repetition", {
                "turn": i,
                "check": name,
                "value": round(value, 3),
                "threshold": thr,
                "words": n,
                "text": snippet(p.text),
            }
    return None


# ---- the rule list -------------------------------------------------------------------------------------------

_CHAT = frozenset({CHAT})
_CHAT_TEXT = frozenset({CHAT, TEXT})
_ALL = frozenset({CHAT, TEXT, CODE})

RULES: list[Rule] = [
    Rule("empty_response", "length", empty_response, _CHAT),
    Rule("too_short", "length", too_short, _CHAT_TEXT),
    Rule("too_long", "length", too_long, _ALL),
    Rule("repeats_instruction", "content", repeats_instruction, _CHAT),
    Rule("needs_modality", "content", needs_modality, _CHAT),
    Rule("refusal", "content", refusal, _CHAT),
    Rule("truncated", "structure", truncated, _CHAT),
    Rule("symbol_ratio", "statistics", symbol_ratio, _CHAT_TEXT),
    Rule("repetition", "statistics", repetition, _CHAT_TEXT),
]

RULES_BY_NAME: dict[str, Rule] = {r.name: r for r in RULES}


def applies(rule: Rule, view: RecordView) -> bool:
    return _kind(view) in rule.kinds


def check(view: RecordView, cfg: CleanConfig) -> Verdict | None:
    """The verdict of the first enabled rule that fires, in `RULES` order, else None."""
    kind = _kind(view)
    for rule in RULES:
        if kind in rule.kinds and getattr(cfg, rule.name).enabled:
            verdict = rule.fn(view, cfg)
            if verdict is not None:
                return verdict
    return None
