"""The PII patterns of the clean stage: what each entity kind looks like, how a candidate is checked, what it scores.

Pure Python (no presidio, no spaCy): `pii.py` wraps each `Detector` in a presidio recognizer, and builds its
pre-screen from the same `Detector.gates`, so that the two can never disagree about what may be found.

A detector finds candidates with compiled regexes, then validates each one (Luhn, IBAN mod-97, TLD of the public
suffix list, IP parsing, token randomness, base64 key material) and gives it a score:

| score | meaning |
| --- | --- |
| 1.0 | checksum- or structure-validated: credit card (IIN + length + Luhn), IBAN (country length + mod 97), provider tokens, JWTs, private key blocks |
| 0.9 | e-mail with a public-suffix TLD, password in a URL |
| 0.7-0.8 | unambiguous shapes: +CC international, NANP `(415) 555-0100` / `415-555-0100`, trunk-0 national numbers (`020 7946 0958`), `(08) 8747 6301`, IPv4/IPv6, dashed SSNs |
| 0.6 | grouped digits with a phone word within ~5 words ("Phone:", "call me at", "... office"), a bare 9-12 digit run right after a phone label ("Fax: 9498777106"), a spaced or bare SSN after "SSN" |
| 0.3 | the same shapes where the evidence points the other way: no phone word, toll-free or 555 NANP numbers (they reach no person), a version/`==`/"section" context, all-one-digit IPv4 octets (`1.2.3.4`), CIDR blocks, netmasks, "order/invoice/ISBN/licence" before the number |

With the default threshold 0.5, only the first four rows are PII; 0.3 trades precision for recall.
Never emitted at all: Luhn/mod-97 failures, e-mails whose suffix is not a TLD (`x@self.weight`), bare digit runs
without a phone label, dates, decimals, ZIP+4 codes, lists of round numbers, a house number before a street name,
placeholder secrets (`sk-your-key-here`, `ghp_xxxx...`, `AKIA...EXAMPLE`, `user:password@`, `-----BEGIN ...
PRIVATE KEY-----` without key material).

Why not presidio's predefined recognizers (measured on plain SFT data, see `tests/benchmarks/pii_eval.py`):
its phone recognizer (`phonenumbers`) rejects unassigned area codes and misses ~19% of phones; its driver-licence,
bank-number, URL and date recognizers fire on `x2`, 8-digit numbers, `np.array` and dates; its e-mail check
downloads the public suffix list at run time. Phone context here is a regex over the raw text, not presidio's
lemma-based context enhancer, because a blank spaCy pipeline has no lemmas (results must not depend on whether a
spaCy model is installed).
"""

from __future__ import annotations

import base64
import ipaddress
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cache, lru_cache

# ---- kinds -----------------------------------------------------------------------------------------------------

EMAIL, PHONE, IP, CARD, IBAN, SSN, SECRET = (
    "email",
    "phone",
    "ip_address",
    "credit_card",
    "iban",
    "us_ssn",
    "secret",
)
PERSON, LOCATION = "person", "location"  # only with a spaCy NER model
PATTERN_KINDS = (EMAIL, PHONE, IP, CARD, IBAN, SSN, SECRET)
NER_KINDS = (PERSON, LOCATION)
ALL_KINDS = PATTERN_KINDS + NER_KINDS

# kind -> presidio entity type (presidio's own names where it has one)
ENTITY_OF = {
    EMAIL: "EMAIL_ADDRESS",
    PHONE: "PHONE_NUMBER",
    IP: "IP_ADDRESS",
    CARD: "CREDIT_CARD",
    IBAN: "IBAN_CODE",
    SSN: "US_SSN",
    SECRET: "SECRET",
    PERSON: "PERSON",
    LOCATION: "LOCATION",
}
KIND_OF = {v: k for k, v in ENTITY_OF.items()}

STRONG, GOOD, SHAPE, CONTEXT, WEAK = 1.0, 0.9, 0.75, 0.6, 0.3


@dataclass(frozen=True, slots=True)
class Candidate:
    start: int
    end: int
    score: float
    pattern: str  # which pattern found it (for reject evidence)


@dataclass(frozen=True, slots=True)
class Gate:
    """One pre-screen test, a superset of one detector pattern, cheapest test first: one of `substrings` is in
    the text (none: no such test), `pre` (a cheaper necessary condition) holds, `regex` matches, and `context`
    (optional) matches somewhere in the text unless the threshold is at most `score_without_context` (what the
    pattern scores without its context words; the case-insensitive word lists are the costliest regexes here).

    The regex is the detector's own with its leading boundary check (`(?<!...)`) dropped: looser, and the regex
    engine can then skip ahead to the first character that can start a match (about 2x faster)."""

    regex: re.Pattern
    substrings: tuple[str, ...] = ()
    pre: Callable[[str], object] | None = None
    context: re.Pattern | None = None
    score_without_context: float = 0.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "regex", _without_lookbehind(self.regex))

    def may_match(self, text: str, threshold: float) -> bool:
        if self.substrings and not any(s in text for s in self.substrings):
            return False
        if self.pre is not None and not self.pre(text):
            return False
        if self.regex.search(text) is None:
            return False
        return (
            self.context is None or threshold <= self.score_without_context or bool(self.context.search(text))
        )


def _without_lookbehind(rx: re.Pattern) -> re.Pattern:
    """`rx` without a leading `(?<!...)`: scan to the parenthesis that closes it (escapes and classes skipped)."""
    p = rx.pattern
    if not p.startswith("(?<!"):
        return rx
    depth, i, in_class = 0, 0, False
    while i < len(p):
        c = p[i]
        if c == "\\":
            i += 2
            continue
        if in_class:
            in_class = c != "]"
        elif c == "[":
            in_class = True
            if p[i + 1 : i + 2] == "]":  # "[]...]": a leading "]" is a member
                i += 1
        elif c == "(":
            depth += 1
        elif c == ")":
            depth -= 1
            if depth == 0:
                return re.compile(p[i + 1 :], rx.flags)
        i += 1
    raise ValueError(f"unbalanced pattern: {p!r}")


@dataclass(frozen=True, slots=True)
class Detector:
    kind: str
    find: Callable[[str], list[Candidate]]
    gates: tuple[Gate, ...] = field(default=())
    needs: re.Pattern | None = (
        None  # holds for every candidate: tried before the gates, shared between detectors
    )


# Six digits with at most two separator characters between neighbours: every phone, card, SSN and IBAN candidate
# has them ("+1 (415) 555-0100", "4111 1111 ...", "536-22-8817", "GB82 WEST 1234 5698 ..."), most texts do not.
SIX_DIGITS = re.compile(r"\d(?:[ .()-]{0,2}\d){5}")


def prescreen(text: str, threshold: float) -> tuple[str, ...]:
    """The kinds whose detector may report something at `threshold` in `text` (a superset; no validation)."""
    kinds, needs = [], {}
    for kind, detector in DETECTORS.items():
        if detector.needs is not None:
            ok = needs.get(detector.needs)
            if ok is None:
                ok = needs[detector.needs] = detector.needs.search(text) is not None
            if not ok:
                continue
        if any(gate.may_match(text, threshold) for gate in detector.gates):
            kinds.append(kind)
    return tuple(kinds)


def _before(text: str, start: int, n: int = 48) -> str:
    return text[max(0, start - n) : start]


# ---- e-mail ----------------------------------------------------------------------------------------------------

# The domain part anchored on "@" (a literal first character lets the regex engine skip ahead cheaply); the local
# part is then matched backwards from the "@".
_EMAIL_DOMAIN_RE = re.compile(
    r"@((?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]{2,24})(?![\w-]|\.[A-Za-z0-9])"
)
_EMAIL_LOCAL_RE = re.compile(r"(?<![\w.%+-])[A-Za-z0-9](?:[A-Za-z0-9._%+-]{0,62}[A-Za-z0-9_%+-])?$")


@cache
def _tld_extractor():
    """tldextract on its bundled public suffix list snapshot: no download, no cache directory."""
    import tldextract

    return tldextract.TLDExtract(suffix_list_urls=(), cache_dir=None, fallback_to_snapshot=True)


@lru_cache(maxsize=1 << 16)
def is_public_suffix_domain(domain: str) -> bool:
    r = _tld_extractor()(domain)
    return bool(r.suffix and r.domain)


def find_emails(text: str) -> list[Candidate]:
    out = []
    for m in _EMAIL_DOMAIN_RE.finditer(text):
        at = m.start()
        local = _EMAIL_LOCAL_RE.search(text, max(0, at - 64), at)
        if local is None or not is_public_suffix_domain(m.group(1).lower()):
            continue
        out.append(Candidate(local.start(), m.end(), GOOD, "email"))
    return out


EMAIL_DETECTOR = Detector(
    EMAIL, find_emails, (Gate(re.compile(r"[A-Za-z0-9_%+-]" + _EMAIL_DOMAIN_RE.pattern), ("@",)),)
)


# ---- phone -----------------------------------------------------------------------------------------------------

_EXT = r"(?:[ ]?(?:x|ext\.?|#)[ ]?\d{1,6})?"
_PHONE_END = r"(?![\w]|[.,/-]\d)"
_PHONE_STRONG = [
    # +CC international: +44 20 7946 0958, +1-984-182-0190, +46 (0)8 928 571 38, +447700677662
    (
        "phone_international",
        0.8,
        re.compile(
            r"(?<![\w+])\+\d{1,3}(?:[ .-]?\(0\))?[ .-]?(?:\(\d{1,4}\)|\d{1,6})(?:[ .-]?(?:\(\d{1,4}\)|\d{2,6})){0,5}"
            + _EXT
            + _PHONE_END
        ),
    ),
    # NANP: (415) 555-0100, 415-555-0100, 415.555.0100, 1-800-555-0100, 001-415-555-0100, with extensions
    (
        "phone_nanp",
        SHAPE,
        re.compile(
            r"(?<![\w+.-])(?:(?:\+?1|001)[ .-]?)?(?:\(\d{3}\)[ .-]?|\d{3}[.-])\d{3}[ .-]\d{4}"
            + _EXT
            + _PHONE_END
        ),
    ),
    # national numbers with a trunk 0 and one kind of separator: 020 7946 0958, 06-10446904, 01.84.17.61.18
    (
        "phone_national",
        0.7,
        re.compile(r"(?<![\w+.,:/-])0\d{1,4}([ .-])\d{2,8}(?:\1\d{2,4}){0,3}" + _PHONE_END),
    ),
    # area code in parentheses: (08) 8747 6301, (37) 788-063, (022) 0793-176
    (
        "phone_area_code",
        0.7,
        re.compile(r"(?<![\w+])\(0?\d{2,3}\)[ ]?\d{3,5}[ -]\d{3,4}" + _PHONE_END),
    ),
]
# Grouped digits (2-8 per group, same kinds of separator) such as 467 3395, 60-56-85-91, 99 668472, or a bare run
# of 9-12 digits: only with a phone word nearby.
_PHONE_WEAK_RE = re.compile(
    r"(?<![\w+.:/#-])(?:\(\d{1,4}\)[ ]?)?\d{2,12}(?:[ .-]\d{2,8}){0,5}" + _EXT + r"(?![\w]|[.,:/-]\d)"
)
_PHONE_WORDS = (
    r"phone|telephone|tel|ph|mobile|mob|cell|cellphone|fax|call|calls|called|calling|dial|dialed|dialing|ring|"
    r"sms|whatsapp|contact|reach|desk|office|hotline|helpline|voicemail|answering|answered|tlf|tfn|"
    r"(?:text|message)(?:s|d|ing)?\s+(?:me|us|to)|(?:my|your|his|her|their|our)\s+(?:number|no\.?)"
)
# strong words: enough for a bare digit run
_PHONE_STRONG_WORDS = r"phone|telephone|tel|ph|mobile|mob|cell|cellphone|fax|desk|office|hotline|whatsapp|sms"
_PHONE_CTX_BEFORE = re.compile(rf"(?i)\b(?:{_PHONE_WORDS})\b")
_PHONE_STRONG_BEFORE = re.compile(rf"(?i)\b(?:{_PHONE_STRONG_WORDS})\b[^\n\d]{{0,16}}\n?[^\n\d]{{0,4}}$")
# a label right before a bare digit run: "Fax: 9498777106", "Phone:\n5403926876", "mobile no. 9876543210"
_PHONE_LABEL_BEFORE = re.compile(
    rf"(?i)\b(?:{_PHONE_STRONG_WORDS})(?:[ ]+(?:number|no\.?|#))?[ ]*[:#.-]?[ ]*\n?[ ]*$"
)
_PHONE_CTX_AFTER = re.compile(rf"(?i)^[\s,;:)\-]{{0,3}}(?:{_PHONE_STRONG_WORDS}|home|work)\b")
# evidence that a phone-shaped number is something else
_NOT_PHONE_BEFORE = re.compile(
    r"(?i)(?:\b(?:order|invoice|inv|ticket|tracking|serial|isbn|issn|doi|account|acct|ref|reference|id|licen[cs]e|"
    r"part|sku|model|case|version|ver|build|patent|page|pages|pp|vol|volume|item|transaction|confirmation|"
    r"policy|claim)\b|[#№])[^\w\n]{0,3}(?:(?:no|nr|number|num|code|id|ref)\b\.?[^\w\n]{0,3})?(?:is[^\w\n]{1,3})?$"
)
_SSN_SHAPE = re.compile(r"^\d{3}-\d{2}-\d{4}$")
# a house number before a street name: "office is at 17031 2202 Rissik St"
_STREET_AFTER = re.compile(
    r"^[ ,]+(?:[A-Z][\w'-]*[ ]){1,3}(?:St|Street|Rd|Road|Ave|Avenue|Blvd|Boulevard|La|Lane|Ln|Dr|Drive|Way|Ct|Court|"
    r"Pl|Place|Sq|Square|Ter|Terrace|Pkwy|Parkway|Hwy|Highway|Cres|Crescent|Gardens|Park|Row|Loop)\b"
)
_DATE_LIKE = re.compile(r"^(?:\d{4}[-./]\d{1,2}[-./]\d{1,2}|\d{1,2}[-./]\d{1,2}[-./]\d{2,4})(?:$|[ T])")
# grouped digits that are something else: a date, a decimal (40.7128), a dotted quad (an IP), a year in parentheses,
# a ZIP+4 code, a toll-free prefix, a list of round numbers (10 20 30 40)
_NOT_GROUPED_PHONE = re.compile(
    r"^(?:\d{4}[-./]\d{1,2}[-./]\d{1,2}|\d{1,2}[-./]\d{1,2}[-./]\d{2,4}(?:$|[ T])|\d+\.\d+$|\d{1,3}(?:\.\d{1,3}){3}$|"
    r"\((?:19|20)\d\d\)|\d{5}-\d{4}$|(?:\+?1[ .-]?)?\(?8(?:00|33|44|55|66|77|88)\b|(?:\d*0[ .-]){2,}\d*0$)"
)
_THOUSANDS = re.compile(r"^\d{1,3}(?:([ .])\d{3})(?:\1\d{3})*$")
# NANP numbers that reach no person: toll-free area codes (businesses, hotlines) and the fictional area code 555
_FICTIONAL_NANP = re.compile(
    r"^(?:\+?1[ .-]?|001[ .-]?)?\(?(?:8(?:00|33|44|55|66|77|88)|555)\)?[ .-]?\d{3}[ .-]\d{4}"
)


def _digits(s: str) -> str:
    return "".join(c for c in s if c.isdigit())


def _phone_digits(value: str) -> int:
    core = re.split(r"[ ]?(?:x|ext\.?|#)[ ]?\d", value, maxsplit=1)[0]
    return len(_digits(core.replace("(0)", "")))


def find_phones(text: str) -> list[Candidate]:
    out: list[Candidate] = []
    taken: list[tuple[int, int]] = []
    for name, score, rx in _PHONE_STRONG:
        for m in rx.finditer(text):
            n = _phone_digits(m.group())
            if not 8 <= n <= 15 or (name == "phone_national" and n < 9):
                continue
            if (
                _DATE_LIKE.match(m.group())
                or _SSN_SHAPE.match(m.group())
                or _STREET_AFTER.match(text[m.end() : m.end() + 40])
            ):
                continue
            if _NOT_PHONE_BEFORE.search(_before(text, m.start(), 24)) or _FICTIONAL_NANP.search(m.group()):
                s = WEAK
            else:
                s = score
            out.append(Candidate(m.start(), m.end(), s, name))
            taken.append(m.span())
    for m in _PHONE_WEAK_RE.finditer(text):
        a, b = m.span()
        if any(x <= a and b <= y for x, y in taken):
            continue
        value = m.group()
        n = _phone_digits(value)
        grouped = not value.isdigit()
        if not (6 if grouped else 9) <= n <= 15 or _NOT_GROUPED_PHONE.match(value):
            continue
        before = _before(text, a)
        if _NOT_PHONE_BEFORE.search(before[-24:]) or _STREET_AFTER.match(text[b : b + 40]):
            continue
        label_after = _PHONE_CTX_AFTER.match(text[b : b + 16])
        if not grouped:
            if label_after or _PHONE_LABEL_BEFORE.search(before):
                out.append(Candidate(a, b, CONTEXT, "phone_digits"))
            continue
        if label_after or _PHONE_STRONG_BEFORE.search(before):
            near = True
        elif _PHONE_CTX_BEFORE.search(before):
            # a verb ("call", "reach") next to a count such as "1 000 000" or "12 500 000" is not enough
            near = not (_THOUSANDS.match(value) and (value[1] == " " or value.endswith("00")))
        else:
            near = False
        out.append(Candidate(a, b, CONTEXT if near else WEAK, "phone_grouped"))
    return out


_PHONE_CTX_ANY = re.compile(rf"(?i)\b(?:{_PHONE_WORDS}|home|work)\b")
PHONE_DETECTOR = Detector(
    PHONE,
    find_phones,
    (Gate(_PHONE_STRONG[0][2], ("+",)),)
    + tuple(Gate(rx) for _, _, rx in _PHONE_STRONG[1:])
    + (Gate(SIX_DIGITS, context=_PHONE_CTX_ANY, score_without_context=WEAK),),
    needs=SIX_DIGITS,
)


# ---- IP addresses ----------------------------------------------------------------------------------------------

_OCTET = r"(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)"
_IPV4_RE = re.compile(rf"(?<![\w.])(?:{_OCTET}\.){{3}}{_OCTET}(?![\w]|\.\d)")
_H = "[0-9A-Fa-f]{1,4}"
# the full eight groups, or a compressed form with "::"
_IPV6_RE = re.compile(
    rf"(?<![\w:.])(?:(?:{_H}:){{7}}{_H}|(?:{_H}:){{0,6}}(?:{_H})?::(?:{_H}(?::{_H}){{0,6}})?)(?:%[\w.]+)?"
    r"(?![\w:]|\.\w)"
)
_VERSION_BEFORE = re.compile(
    r"(?i)(?:[=<>~!^§]=?|\b(?:v|ver|version|versions|release|build|rev|revision|python|java|ruby|php|"
    r"perl|ios|android|chrome|firefox|windows|macos|ubuntu|debian|kernel|firmware|sdk|section|sec|chapter|"
    r"clause|rule|step|figure|fig|table|eq|equation)\b\.?)\s*[:=]?\s*$"
)


def find_ips(text: str) -> list[Candidate]:
    out = []
    if "." in text:
        for m in _IPV4_RE.finditer(text):
            value = m.group()
            octets = [int(x) for x in value.split(".")]
            weak = (
                all(o < 10 for o in octets)  # 1.2.3.4: a version or section number far more often than an IP
                or _VERSION_BEFORE.search(_before(text, m.start(), 24))
                or text.startswith("/", m.end())  # CIDR block: a network, not a host
                or (octets[0] == 255 and _is_netmask(octets))
            )
            out.append(Candidate(m.start(), m.end(), WEAK if weak else 0.8, "ipv4"))
    if "::" in text or text.count(":") >= 7:
        for m in _IPV6_RE.finditer(text):
            value = m.group().split("%")[0]
            try:
                ipaddress.IPv6Address(value)
            except ValueError:
                continue
            groups = [g for g in value.split(":") if g]
            strong = len(groups) >= 3 and max(len(g) for g in groups) >= 3
            out.append(Candidate(m.start(), m.end(), 0.8 if strong else WEAK, "ipv6"))
    return out


def _is_netmask(octets: list[int]) -> bool:
    bits = "".join(f"{o:08b}" for o in octets)
    return "01" not in bits


IP_DETECTOR = Detector(
    IP,
    find_ips,
    (
        Gate(_IPV4_RE, (".",), pre=re.compile(r"\d\.\d{1,3}\.\d{1,3}\.\d").search),
        Gate(_IPV6_RE, (":",), pre=lambda t: "::" in t or t.count(":") >= 7),
    ),
)


# ---- credit cards ----------------------------------------------------------------------------------------------

_CARD_RE = re.compile(
    r"(?<![\w.,-])(?:\d{4}([ -])\d{4}\1\d{4}\1\d{1,4}(?:\1\d{3})?|\d{4}([ -])\d{6}\2\d{4,5}|\d{12,19})"
    r"(?![\w]|[.,-]\d)"
)

# (lowest, highest prefix) -> allowed lengths: the issuer ranges of ISO/IEC 7812 in use. JCB is taken as all of 35
# (test generators use 3500-3599, not only the assigned 3528-3589), Maestro includes the old UK 0604.
_IIN = [
    (("4", "4"), (13, 16, 19)),  # Visa
    (("51", "55"), (16,)),  # Mastercard
    (("2221", "2720"), (16,)),  # Mastercard 2-series
    (("34", "34"), (15,)),  # Amex
    (("37", "37"), (15,)),
    (("300", "305"), (14, 16, 17, 18, 19)),  # Diners
    (("36", "36"), (14, 16, 17, 18, 19)),
    (("38", "39"), (14, 16, 17, 18, 19)),
    (("35", "35"), (16, 17, 18, 19)),  # JCB
    (("1800", "1800"), (15,)),  # JCB (legacy)
    (("2131", "2131"), (15,)),
    (("2200", "2204"), (16, 17, 18, 19)),  # Mir
    (("50", "50"), tuple(range(12, 20))),  # Maestro
    (("56", "69"), tuple(range(12, 20))),  # Maestro, Discover, UnionPay, RuPay
    (("0604", "0604"), tuple(range(12, 20))),  # Maestro UK
]


def luhn_ok(digits: str) -> bool:
    total = 0
    for i, c in enumerate(reversed(digits)):
        d = ord(c) - 48
        if i % 2:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def card_ok(digits: str) -> bool:
    n = len(digits)
    if not 12 <= n <= 19 or len(set(digits)) < 3:
        return False
    for (lo, hi), lengths in _IIN:
        if lo <= digits[: len(lo)] <= hi and n in lengths:
            return luhn_ok(digits)
    return False


def find_cards(text: str) -> list[Candidate]:
    out = []
    for m in _CARD_RE.finditer(text):
        value = m.group()
        if not card_ok(_digits(value)) and m.group(1) and value.count(m.group(1)) == 4:
            # "4117 1731 6874 1715 1. First, ...": the regex took the list number after the card
            value = value.rsplit(m.group(1), 1)[0]
        if card_ok(_digits(value)):
            out.append(Candidate(m.start(), m.start() + len(value), STRONG, "credit_card"))
    return out


CARD_DETECTOR = Detector(CARD, find_cards, (Gate(_CARD_RE),), needs=SIX_DIGITS)


# ---- IBAN ------------------------------------------------------------------------------------------------------

IBAN_LENGTHS = {
    "AD": 24, "AE": 23, "AL": 28, "AT": 20, "AZ": 28, "BA": 20, "BE": 16, "BG": 22, "BH": 22, "BI": 27,
    "BR": 29, "BY": 28, "CH": 21, "CR": 22, "CY": 28, "CZ": 24, "DE": 22, "DJ": 27, "DK": 18, "DO": 28,
    "EE": 20, "EG": 29, "ES": 24, "FI": 18, "FK": 18, "FO": 18, "FR": 27, "GB": 22, "GE": 22, "GI": 23,
    "GL": 18, "GR": 27, "GT": 28, "HR": 21, "HU": 28, "IE": 22, "IL": 23, "IQ": 23, "IS": 26, "IT": 27,
    "JO": 30, "KW": 30, "KZ": 20, "LB": 28, "LC": 32, "LI": 21, "LT": 20, "LU": 20, "LV": 21, "LY": 25,
    "MC": 27, "MD": 24, "ME": 22, "MK": 19, "MN": 20, "MR": 27, "MT": 31, "MU": 30, "NI": 28, "NL": 18,
    "NO": 15, "OM": 23, "PK": 24, "PL": 28, "PS": 29, "PT": 25, "QA": 29, "RO": 24, "RS": 22, "RU": 33,
    "SA": 24, "SC": 31, "SD": 18, "SE": 24, "SI": 19, "SK": 24, "SM": 27, "SO": 23, "ST": 25, "SV": 28,
    "TL": 23, "TN": 24, "TR": 26, "UA": 29, "VA": 22, "VG": 24, "XK": 20, "YE": 30,
}  # fmt: skip
_IBAN_RE = re.compile(
    r"(?<![\w])[A-Za-z]{2}\d{2}(?:[ ]?[A-Za-z0-9]{4}){2,7}(?:[ ]?[A-Za-z0-9]{1,3})?(?![\w])"
)


def iban_ok(compact: str) -> bool:
    """Country length, a mostly-numeric account part with a run of six digits (every national format has both),
    and ISO 7064 mod 97."""
    compact = compact.upper()
    if IBAN_LENGTHS.get(compact[:2]) != len(compact):
        return False
    bban = compact[4:]
    if sum(c.isdigit() for c in bban) < 0.6 * len(bban) or not re.search(r"\d{6}", compact):
        return False
    moved = compact[4:] + compact[:4]
    return int("".join(str(int(c, 36)) for c in moved)) % 97 == 1


def find_ibans(text: str) -> list[Candidate]:
    out = []
    for m in _IBAN_RE.finditer(text):
        value = m.group()
        want = IBAN_LENGTHS.get(value[:2].upper())
        if want is None:
            continue
        # the regex may run on into a following 4-letter word ("BE68 5390 0754 7034 from"): cut at the length
        n, end = 0, m.start()
        for i, c in enumerate(value):
            if c != " ":
                n += 1
            if n == want:
                end = m.start() + i + 1
                break
        if n < want or (end < m.end() and text[end] != " "):
            continue
        if iban_ok(text[m.start() : end].replace(" ", "")):
            out.append(Candidate(m.start(), end, STRONG, "iban"))
    return out


IBAN_DETECTOR = Detector(IBAN, find_ibans, (Gate(_IBAN_RE),), needs=SIX_DIGITS)


# ---- US SSN ----------------------------------------------------------------------------------------------------

# Area 000, 666 and 900-999, group 00 and serial 0000 are never issued.
_SSN_RE = re.compile(r"(?<![\w+.-])(?!000|666|9\d\d)\d{3}([- ])(?!00)\d{2}\1(?!0000)\d{4}(?![\w]|[.-]\d)")
_SSN_BARE_RE = re.compile(r"(?<![\w+.-])(?!000|666|9\d\d)\d{3}(?!00)\d{2}(?!0000)\d{4}(?![\w]|[.-]\d)")
_SSN_CTX = re.compile(r"(?i)\b(?:ssn|ssns|social[\s-]+security|ss#|ss\s+no|tin)\b")


def find_ssns(text: str) -> list[Candidate]:
    out = []
    for m in _SSN_RE.finditer(text):
        context = _SSN_CTX.search(_before(text, m.start()))
        if m.group(1) == " ":  # "680 36 4022" is as often a house number and a zip: only after "SSN"
            score = CONTEXT if context else WEAK
        elif _NOT_PHONE_BEFORE.search(_before(text, m.start(), 24)) and not context:
            score = WEAK
        else:
            score = 0.7
        out.append(Candidate(m.start(), m.end(), score, "us_ssn"))
    if _SSN_CTX.search(text):
        for m in _SSN_BARE_RE.finditer(text):
            if _SSN_CTX.search(_before(text, m.start())):
                out.append(Candidate(m.start(), m.end(), CONTEXT, "us_ssn_bare"))
    return out


SSN_DETECTOR = Detector(
    SSN,
    find_ssns,
    (Gate(_SSN_RE), Gate(_SSN_BARE_RE, context=_SSN_CTX, score_without_context=0.0)),
    needs=SIX_DIGITS,
)


# ---- secrets ---------------------------------------------------------------------------------------------------

_PLACEHOLDER_WORDS = re.compile(
    r"(?i)x{4,}|\*{3,}|\.\.\.|0{8,}|1234567|abcdef|your|example|sample|placeholder|dummy|redacted|insert|"
    r"changeme|replace|fake|here|secret_?key|api_?key|token"
)


def looks_random(body: str, min_unique: int = 8) -> bool:
    """A real token body: no placeholder words, enough distinct characters, at least two of lower/upper/digit."""
    if _PLACEHOLDER_WORDS.search(body):
        return False
    if len(set(body)) < min(min_unique, len(body) // 2):
        return False
    classes = any(c.islower() for c in body) + any(c.isupper() for c in body) + any(c.isdigit() for c in body)
    return classes >= 2


def _jwt_ok(value: str) -> bool:
    head = value.split(".", 1)[0]
    try:
        decoded = base64.urlsafe_b64decode(head + "=" * (-len(head) % 4))
    except ValueError:
        return False
    return decoded.startswith(b"{") and (b'"alg"' in decoded or b'"typ"' in decoded)


_KEY_MATERIAL = re.compile(r"[A-Za-z0-9+/]{40,}")

# (name, regex, substrings that must be present, group holding the secret, validator of that group)
_TOKEN_SPECS: list[tuple[str, str, tuple[str, ...], int, Callable[[str], bool]]] = [
    (
        "github_token",
        r"\b(?:ghp|gho|ghu|ghs|ghr)_([A-Za-z0-9]{36,255})\b",
        ("ghp_", "gho_", "ghu_", "ghs_", "ghr_"),
        0,
        lambda v: looks_random(v[4:]),
    ),
    (
        "github_pat",
        r"\bgithub_pat_[A-Za-z0-9_]{22,255}\b",
        ("github_pat_",),
        0,
        lambda v: looks_random(v[11:]),
    ),
    (
        "aws_access_key_id",
        r"\b(?:AKIA|ASIA|ABIA|ACCA|A3T[A-Z0-9])[A-Z0-9]{16}\b",
        ("AKIA", "ASIA", "ABIA", "ACCA", "A3T"),
        0,
        lambda v: looks_random(v[4:]),
    ),
    (
        "aws_secret_access_key",
        r"(?i:aws_?secret_?(?:access_?)?key)[\"']?\s{0,3}[=:]\s{0,3}[\"']?([A-Za-z0-9/+]{40})(?![A-Za-z0-9/+=])",
        ("aws_secret", "AWS_SECRET", "AwsSecret", "awsSecret"),
        1,
        looks_random,
    ),
    (
        "slack_token",
        r"\bxox[abposrce]-[A-Za-z0-9-]{10,250}",
        ("xox",),
        0,
        lambda v: looks_random(v[5:]),
    ),
    (
        "slack_webhook",
        r"https://hooks\.slack\.com/services/T[A-Za-z0-9_]{6,}/B[A-Za-z0-9_]{6,}/[A-Za-z0-9_]{16,}",
        ("hooks.slack.com",),
        0,
        lambda v: looks_random(v.rsplit("/", 1)[1]),
    ),
    (
        "stripe_key",
        r"\b(?:sk|rk)_live_[A-Za-z0-9]{20,255}\b",
        ("_live_",),
        0,
        lambda v: looks_random(v[8:]),
    ),
    (
        "openai_key",
        r"\bsk-(?:proj-|svcacct-|admin-|ant-(?:api|admin)\d\d-)?[A-Za-z0-9_-]{20,255}",
        ("sk-",),
        0,
        lambda v: looks_random(v[3:]),
    ),
    (
        "google_api_key",
        r"\bAIza[0-9A-Za-z_-]{35}(?![\w-])",
        ("AIza",),
        0,
        lambda v: looks_random(v[4:]),
    ),
    (
        "huggingface_token",
        r"\bhf_[A-Za-z0-9]{30,255}\b",
        ("hf_",),
        0,
        lambda v: looks_random(v[3:]),
    ),
    (
        "gitlab_token",
        r"\bglpat-[A-Za-z0-9_-]{20,255}",
        ("glpat-",),
        0,
        lambda v: looks_random(v[6:]),
    ),
    ("npm_token", r"\bnpm_[A-Za-z0-9]{36}\b", ("npm_",), 0, lambda v: looks_random(v[4:])),
    (
        "sendgrid_key",
        r"\bSG\.[A-Za-z0-9_-]{22}\.[A-Za-z0-9_-]{43}(?![\w-])",
        ("SG.",),
        0,
        lambda v: looks_random(v[3:]),
    ),
    ("jwt", r"\beyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]*", ("eyJ",), 0, _jwt_ok),
    (
        "private_key",
        r"-----BEGIN[A-Z0-9 ]{0,40} PRIVATE KEY(?: BLOCK)?-----"
        r"(?:(?:(?!-----BEGIN)[\s\S]){0,20000}?-----END[A-Z0-9 ]{0,40} PRIVATE KEY(?: BLOCK)?-----"
        r"|[A-Za-z0-9+/=\s\\:,.-]*)",
        ("PRIVATE KEY",),
        0,
        lambda v: _KEY_MATERIAL.search(v) is not None,
    ),
]
_TOKENS = [(n, re.compile(rx), subs, g, ok) for n, rx, subs, g, ok in _TOKEN_SPECS]

# scheme://user:password@host: the user info is redacted (the user name is often a person's too)
_URL_CREDS_RE = re.compile(
    r"\b[A-Za-z][A-Za-z0-9+.-]{1,20}://([^\s:/?#@'\"<>`]{1,128}):([^\s/?#@'\"<>`]{1,128})@(?=[A-Za-z0-9\[])"
)
_PLACEHOLDER_PASSWORDS = frozenset(
    "password passwd pass pwd pw secret changeme root admin user username usr test guest example anonymous "
    "mypassword yourpassword your_password my_password db_password dbpassword pass123 password123 123 1234 "
    "12345 123456 12345678 qwerty letmein default postgres mysql redis rabbitmq mongo sa p ***** ****".split()
)


def _real_password(pw: str) -> bool:
    low = pw.lower()
    if low in _PLACEHOLDER_PASSWORDS or re.fullmatch(r"(.)\1*", pw):
        return False
    return not re.search(r"[<>{}$%*\[\]]|your|example|passw|placeholder|secret|xxx", low)


def find_secrets(text: str) -> list[Candidate]:
    out = []
    for name, rx, subs, group, ok in _TOKENS:
        if not any(s in text for s in subs):
            continue
        for m in rx.finditer(text):
            if ok(m.group(group)):
                a, b = m.span(group)
                out.append(Candidate(a, b, STRONG, name))
    if "://" in text and "@" in text:
        for m in _URL_CREDS_RE.finditer(text):
            if _real_password(m.group(2)):
                out.append(Candidate(m.start(1), m.end(2), GOOD, "url_password"))
    return out


SECRET_DETECTOR = Detector(
    SECRET,
    find_secrets,
    tuple(Gate(rx, subs) for _, rx, subs, _, _ in _TOKENS) + (Gate(_URL_CREDS_RE, ("://",)),),
)

DETECTORS = {
    d.kind: d
    for d in (
        EMAIL_DETECTOR,
        PHONE_DETECTOR,
        IP_DETECTOR,
        CARD_DETECTOR,
        IBAN_DETECTOR,
        SSN_DETECTOR,
        SECRET_DETECTOR,
    )
}


# ---- evidence without the value --------------------------------------------------------------------------------

_SECRET_PREFIX = re.compile(
    r"^(?:-----BEGIN[A-Z0-9 ]{0,40}-----|github_pat_|(?:ghp|gho|ghu|ghs|ghr|hf|npm)_|(?:sk|rk)_live_|"
    r"sk-(?:proj-|svcacct-|admin-|ant-)?|xox[a-z]-|glpat-|SG\.|AIza|AKIA|ASIA|ABIA|ACCA|eyJ|https://hooks\.slack\.com/)"
)


def mask(kind: str, value: str) -> str:
    """A reviewer's view of a value that gives none of it away: `ghp_****…(40 chars)`, `****@****.com`."""
    n = f"({len(value)} chars)"
    if kind == SECRET:
        m = _SECRET_PREFIX.match(value)
        return f"{m.group() if m else ''}****…{n}"
    if kind == EMAIL and "@" in value:
        return f"****@****.{value.rsplit('.', 1)[-1]} {n}"
    if kind == IBAN:
        return f"{value[:2].upper()}****…{n}"
    shape = re.sub(r"[A-Za-z0-9]", "*", value[:40])
    return f"{shape}{'…' if len(value) > 40 else ''} {n}"
