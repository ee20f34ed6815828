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

Speed: regexes are compiled at import; the prose of a turn is computed once per record and shared by the rules
(`RecordView.cache`); n-gram statistics run only on prose over `min_words` and at most `max_chars` of it, and the
costly duplicate-n-gram scan runs only when a single pass over 5-grams shows enough repetition to matter.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
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


def empty_response(view: RecordView, cfg: CleanConfig) -> Verdict | None:
    """An assistant turn that is empty or whitespace only."""
    for i, m in enumerate(view.messages):
        if m["role"] == "assistant" and not m["content"].strip():
            return "empty_response", {"turn": i, "chars": len(m["content"])}
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
    r"driver|signal|card|source|tag|feature|features|content|platform|site|sites|service)\b"
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
    rf"|\b{_VISUAL}\s+(?:below|above|attached|provided|shown\s+(?:below|above|here))\b",
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
# A coding or text-art task can produce any "image" as code (matplotlib, SVG, HTML, ASCII art).
_CODE_CONTEXT_RE = re.compile(
    r"\b(?:python|java|javascript|typescript|c\+\+|c#|golang|rust|ruby|php|perl|kotlin|swift|scala|matlab|"
    r"octave|html|css|svg|sql|bash|shell|powershell|matplotlib|seaborn|plotly|ggplot2?|pandas|numpy|opencv|"
    r"pillow|pil|tkinter|turtle|pygame|p5\.?js|d3(?:\.js)?|latex|tikz|pgfplots|graphviz|mermaid|ascii|"
    r"code|coding|program|programming|script|function|class|method|algorithm|api|regex|curl|json|xml|"
    r"markdown|emoji|text-based|textual|canvas|react|android|ios|jquery|url|urls)\b",
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
    code_ok: bool | None = None  # computed lazily: a coding task, or an answer in code
    for i, m in enumerate(view.messages):
        if m["role"] != "user":
            continue
        text = m["content"]
        found: tuple[str, str] | None = None
        mm = _AUDIO_RE.search(text) or _MEDIA_REF_RE.search(text)
        if mm:
            found = ("media_reference", mm.group(0))
        else:
            for mm in _VISUAL_REF_RE.finditer(text):
                if not _has_payload(text, mm.end()) and not _CODE_CONTEXT_RE.search(text):
                    found = ("media_reference", mm.group(0))
                    break
        if found is None:
            # The remaining checks can be satisfied by code: skip them for coding tasks.
            checks = []
            checks.append(("placeholder", _PLACEHOLDER_RE))
            if c.check_urls and ("http" in text or "www." in text):
                checks.append(("url", None))
            if c.check_output:
                checks.extend((("output", _DRAW_RE), ("output", _OUTPUT_MEDIA_RE), ("output", _PLOT_RE)))
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
                if code_ok:
                    break
                found = (name, mm.group(0).strip())
                break
        if found:
            return "needs_modality", {
                "check": found[0],
                "turn": i,
                "match": snippet(found[1], 120),
                "text": snippet(text),
            }
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
_REFUSAL_RE = re.compile(
    r"(?:^|[.!?]\s+|\n)\s*(?:"
    r"(?:i'?m|i\s+am)\s+(?:so\s+|very\s+|really\s+|truly\s+)?sorry|sorry|i\s+apologi[sz]e|my\s+apologies|"
    r"unfortunately|i'?m\s+afraid|i\s+am\s+afraid)\b[^.!?\n]{0,60}?\b(?:"
    rf"i\s*{_NEGATION}\s+(?:\w+\s+)?{_REQUEST_VERBS}\b"
    r"|i\s+must\s+(?:respectfully\s+|politely\s+)?decline|i(?:'m|\s+am)\s+not\s+(?:comfortable|able\s+to\s+comply))"
    rf"|(?:^|[.!?]\s+|\n)\s*i\s*{_NEGATION}\s+(?:\w+\s+)?{_REQUEST_VERBS}\b"
    r"|(?:^|[.!?]\s+|\n)\s*i\s+must\s+(?:respectfully\s+|politely\s+)?decline",
    re.IGNORECASE,
)
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


def refusal(view: RecordView, cfg: CleanConfig) -> Verdict | None:
    """An answer that refuses ("I'm sorry, but I can't ...", "I cannot fulfill that request") or disclaims
    ("As an AI language model, I ...", "my knowledge cutoff"). Apologetic refusals count only near the start of
    an answer and not when the task asks for such a sentence (translate, rewrite, write a letter or dialogue,
    role-play, decline); disclaimers count anywhere unless the task casts the answerer as an AI."""
    c = cfg.refusal
    extra = [p.lower() for p in c.extra_phrases]
    for i, m in enumerate(view.messages):
        if m["role"] != "assistant":
            continue
        text = _prose(view, i).text if "`" in m["content"] or "~~~" in m["content"] else m["content"]
        j = _prompt_before(view, i)
        prompt = view.messages[j]["content"] if j is not None else ""
        mm = _DISCLAIMER_RE.search(text)
        if mm and not _AI_ROLE_RE.search(prompt):
            return _refusal_verdict(i, "disclaimer", mm.group(0), text)
        if c.start_chars:
            head = text[: c.start_chars]
            mm = _REFUSAL_RE.search(head)
            if mm and not _REFUSAL_TASK_RE.search(prompt):
                return _refusal_verdict(i, "refusal", mm.group(0), text)
        if extra:
            low = text.lower()
            for p in extra:
                if p in low:
                    return _refusal_verdict(i, "extra_phrase", p, text)
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
        p = _prose(view, i)
        if c.check_fences and not p.balanced:
            return "truncated", {"check": "unclosed_fence", "turn": i, "tail": tail(content, 120)}
        if not c.check_mid_sentence or p.is_code:
            continue
        text = content.rstrip()
        if not _CUT_END_RE.search(text) or text.endswith(("```", "~~~")):
            continue
        words = count_words(text)
        if words < c.min_words:
            continue
        function_end = _FUNCTION_END_RE.search(text) is not None
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
        if others and sum(1 for ln in others if _CUT_END_RE.search(ln.rstrip())) * 2 >= len(others):
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
_SYMBOL_WORD_RE = re.compile(r"(?<!\S)[^\w\s]+(?!\S)")
# Symbol-only words that are Markdown structure or math, not noise: table pipes, bullets, rules, operators.
_STRUCTURE_WORD_RE = re.compile(r"[-|*+=<>/\\#~^:.,;_()\[\]{}$%&'\"•·–—×÷±≤≥≠≈→←↔⇒⇔∑∏√∞∫∂∆°′″!?…]+")


def symbol_ratio(view: RecordView, cfg: CleanConfig) -> Verdict | None:
    """Gopher's symbol checks on answer prose of at least `min_words` words: '#' per word (Markdown headings not
    counted), ellipses per word, and the fraction of words with a letter or digit (structure and math symbols
    left out)."""
    c = cfg.symbol_ratio
    for i in _answers(view):
        if view.messages[i]["content"].count(" ") + 1 < c.min_words:
            continue  # cheap pre-check, before extracting prose
        p = _prose(view, i)
        if p.is_code or not p.text:
            continue
        prose = p.text
        n = count_words(prose)
        if n < c.min_words:
            continue
        hashes = prose.count("#")
        if hashes:
            hashes -= sum(len(h) for h in _HEADING_HASHES_RE.findall(prose))
            if hashes / n > c.max_hash_ratio:
                return _symbol_verdict(i, "hash_ratio", hashes / n, c.max_hash_ratio, n, prose)
        ellipses = prose.count("...") + prose.count("…")
        if ellipses / n > c.max_ellipsis_ratio:
            return _symbol_verdict(i, "ellipsis_ratio", ellipses / n, c.max_ellipsis_ratio, n, prose)
        symbol_words = _SYMBOL_WORD_RE.findall(prose)
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


def repetition_stats(prose: str, c: Any) -> tuple[str, float, float] | None:
    """The first Gopher repetition statistic over its threshold: (name, value, threshold), or None."""
    if len(prose) > c.max_chars:
        half = c.max_chars // 2
        prose = prose[:half] + "\n" + prose[-half:]
    lines = [ln.strip() for ln in prose.split("\n")]
    lines = [ln for ln in lines if ln]
    if len(lines) >= 4:
        seen: set[str] = set()
        dup = dup_chars = 0
        for ln in lines:
            if ln in seen:
                dup += 1
                dup_chars += len(ln)
            else:
                seen.add(ln)
        if dup:
            frac = dup / len(lines)
            if frac > c.max_dup_line_frac:
                return "dup_line_frac", frac, c.max_dup_line_frac
            frac = dup_chars / sum(len(ln) for ln in lines)
            if frac > c.max_dup_line_char_frac:
                return "dup_line_char_frac", frac, c.max_dup_line_char_frac
    # Single-character tokens (T/F of a truth table, digits of a list, "a", "I") are left out: their repeats are
    # the structure of tables and enumerations, not degenerate text.
    words = [w for w in _WORD_RE.findall(prose.lower()) if len(w) > 1]
    if len(words) < 5:
        return None
    lens = [len(w) for w in words]
    total = sum(lens)
    for n, thr in sorted(c.max_top_ngram_char_frac.items()):
        if len(words) < n:
            continue
        gram, count = Counter(zip(*(words[k:] for k in range(n)))).most_common(1)[0]
        if count > 1:
            frac = count * sum(len(w) for w in gram) / total
            if frac > thr:
                return f"top_{n}gram_char_frac", frac, thr
    dup = sorted(c.max_dup_ngram_char_frac.items())
    if not dup:
        return None
    n0 = dup[0][0]
    grams = list(zip(*(words[k:] for k in range(n0))))
    if len(set(grams)) == len(grams):
        return None
    # Upper bound for every n >= n0: characters covered by any later occurrence of a repeated n0-gram.
    first: dict[tuple[str, ...], int] = {}
    covered = bytearray(len(words))
    for k, g in enumerate(grams):
        if first.setdefault(g, k) != k:
            covered[k : k + n0] = b"\x01" * n0
    bound = sum(ln for ln, cv in zip(lens, covered, strict=True) if cv) / total
    if bound <= min(thr for _, thr in dup):
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
        if p.is_code or not p.text:
            continue
        n = count_words(p.text)
        if n < c.min_words:
            continue
        hit = repetition_stats(p.text, c)
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
