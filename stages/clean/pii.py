"""PII scrubbing for the clean stage: find e-mails, phones, IPs, cards, IBANs, US SSNs and secrets, and redact them.

`PiiScrubber.scrub_messages` returns redacted copies of a record's turns, the entities found by kind, and a reject
verdict (`pii_<kind>`) when a kind whose action is `reject` was found; `scrub_text` does the same for one string
(the stage uses it for the strings inside `meta`). The input is never mutated.

Entity kinds, placeholders and reject reasons (one vocabulary everywhere: config keys, `found`, manifest):

| kind | placeholder | reject reason | found by |
| --- | --- | --- | --- |
| `email` | `<EMAIL>` | `pii_email` | `@` + a domain whose suffix is on the public suffix list (offline snapshot) |
| `phone` | `<PHONE>` | `pii_phone` | +CC, NANP, trunk-0 national shapes; grouped digits only next to a phone word |
| `ip_address` | `<IP_ADDRESS>` | `pii_ip_address` | IPv4 and IPv6 (parsed), not version strings, CIDR blocks or netmasks |
| `credit_card` | `<CREDIT_CARD>` | `pii_credit_card` | issuer prefix + length + Luhn |
| `iban` | `<IBAN>` | `pii_iban` | country length + mod 97 |
| `us_ssn` | `<US_SSN>` | `pii_us_ssn` | `ddd-dd-dddd` with never-issued areas/groups excluded; 9 digits only after "SSN" |
| `secret` | `<SECRET>` | `pii_secret` | provider tokens (GitHub, AWS, Slack, Stripe, OpenAI, Google, HF, GitLab, npm, SendGrid), JWTs, private key blocks, `scheme://user:password@host` |
| `person`, `location` | `<PERSON>`, `<LOCATION>` | `pii_person`, `pii_location` | spaCy NER, only with `spacy_model` set |

A whole token is redacted (`ghp_` and its 36 characters, the whole key block from BEGIN to END); in a URL the
user info is (`postgres://<SECRET>@db.internal:5432/app`). Presidio's entity names (`US_SSN`, `EMAIL_ADDRESS`,
...) are accepted as `actions` keys too.

How detection runs. Presidio's `AnalyzerEngine` runs one recognizer per kind (the detectors of
`pii_recognizers.py`, none of presidio's predefined ones: see there why) on a spaCy pipeline: the configured NER
model, or `spacy.blank("en")` (tokens only). The engine is built lazily, once per process. Before it, the
*pre-screen* runs the detectors' gates (substring tests such as `"@" in text`, `"ghp_" in text`, then the compiled
candidate regexes, without validation) and calls presidio only for texts, and entity kinds, where a gate matched.
A gate is a superset of what its detector can report at the configured threshold, so the pre-screen never changes
the result (tests compare both on a varied sample); with `spacy_model` set it is off (a name has no cheap
trigger). Measured on Alpaca + CodeAlpaca, one core (`tests/benchmarks/pii_eval.py`): presidio with these
recognizers on every text ~2,300 records/s (with its predefined ones ~550); with the pre-screen ~27,000 records/s,
presidio being called for 0.4% of the texts.

After presidio: values on the allow-list are dropped, overlapping findings are resolved (secrets first, then the
higher score, then the longer span: `postgres://u:pw@host.com` is one secret, not an e-mail), and the text is
rebuilt with placeholders. We do not use presidio's AnonymizerEngine: replacing non-overlapping spans is a few
lines, and the overlap rule above is ours.

Nothing leaves this process: tldextract is pinned to its bundled suffix list (`TLDEXTRACT_PUBLIC_SUFFIX_LIST_URLS`
empty, and its module-level extractor swapped if it would fetch), and a named spaCy model is loaded with
`spacy.load` (presidio's loader would download a missing one).
"""

from __future__ import annotations

import ipaddress
import logging
import os
import re
from collections import Counter
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, field_validator

from factory.config import Section
from stages.clean import pii_recognizers as R

# Before anything imports tldextract: its module-level extractor reads this when it is built.
os.environ.setdefault("TLDEXTRACT_PUBLIC_SUFFIX_LIST_URLS", "")

log = logging.getLogger("factory")

Action = Literal["redact", "reject"]
KINDS = R.ALL_KINDS
PLACEHOLDERS = {kind: f"<{kind.upper()}>" for kind in KINDS}
_ALIASES = {
    "email_address": R.EMAIL,
    "phone_number": R.PHONE,
    "ip": R.IP,
    "iban_code": R.IBAN,
    "ssn": R.SSN,
    "secrets": R.SECRET,
}

DEFAULT_ALLOW_LIST = [
    # e-mail: the RFC 2606 example domains (and their subdomains), placeholder domains and mailboxes of tutorials,
    # SSH remotes of the big forges
    "*@example.com",
    "*@example.org",
    "*@example.net",
    "*@example.edu",
    "*@domain.com",
    "*@yourdomain.com",
    "*@mydomain.com",
    "*@email.com",
    "example@*",
    "test@*",
    "user@*",
    "username@*",
    "you@*",
    "yourname@*",
    "your.name@*",
    "your_email@*",
    "youremail@*",
    "someone@*",
    "git@github.com",
    "git@gitlab.com",
    "git@bitbucket.org",
    # IP: loopback, unspecified, broadcast, documentation ranges (RFC 5737, RFC 3849), router defaults, public DNS
    "127.0.0.0/8",
    "0.0.0.0",
    "255.255.255.255",
    "::1",
    "::",
    "192.0.2.0/24",
    "198.51.100.0/24",
    "203.0.113.0/24",
    "2001:db8::/32",
    "192.168.0.1",
    "192.168.1.1",
    "10.0.0.1",
    "8.8.8.8",
    "8.8.4.4",
    "1.1.1.1",
    "1.0.0.1",
    "9.9.9.9",
    "123.45.67.89",
    # numbers printed as examples: SSA's advertising/wallet SSNs, the textbook phone, payment test cards
    "123-45-6789",
    "078-05-1120",
    "219-09-9999",
    "123-456-7890",
    "555-555-5555",
    "4111 1111 1111 1111",
    "4242 4242 4242 4242",
    "4012 8888 8888 1881",
    "4000 0566 5566 5556",
    "5555 5555 5555 4444",
    "5105 1051 0510 5100",
    "2223 0031 2200 3222",
    "3782 822463 10005",
    "3714 496353 98431",
    "6011 1111 1111 1117",
    "3530 1113 3330 0000",
]


class PiiConfig(Section):
    """PII scrubbing: typed placeholders for e-mails, phones, IPs, cards, IBANs, US SSNs and secrets."""

    enabled: bool = Field(
        default=True,
        description="Scrub PII from every turn and every string in `meta` before the quality rules run (and "
        "before anything is written, rejects included).",
    )
    actions: dict[str, Action] = Field(
        default_factory=lambda: dict.fromkeys(KINDS, "redact"),
        description="Per entity kind (email, phone, ip_address, credit_card, iban, us_ssn, secret, person, "
        "location; presidio names such as US_SSN also accepted): `redact` replaces the value by its placeholder "
        "(`<EMAIL>`, `<PHONE>`, `<IP_ADDRESS>`, `<CREDIT_CARD>`, `<IBAN>`, `<US_SSN>`, `<SECRET>`, `<PERSON>`, "
        "`<LOCATION>`) and keeps the record; `reject` also drops the record as `pii_<kind>` (stored redacted). "
        "Kinds left out are `redact`: a placeholder keeps the sample useful, and one leaked value should not cost "
        "a whole conversation unless you say so (e.g. `secret: reject` for code corpora).",
    )
    allow_list: list[str] = Field(
        default_factory=lambda: list(DEFAULT_ALLOW_LIST),
        description="Values never treated as PII: exact strings (case-insensitive; numbers compared by their "
        "digits, so `4111 1111 1111 1111` also allows `4111111111111111`), `*@domain` for every address at a "
        "domain and its subdomains, `mailbox@*` for a mailbox at any domain, and IP networks in CIDR form. The "
        "default holds placeholders that appear in tutorials and code: the RFC 2606 example domains, placeholder "
        "domains and mailboxes (`*@domain.com`, `you@*`), loopback/unspecified/broadcast, the RFC 5737/3849 "
        "documentation ranges, router defaults, public DNS resolvers, SSA's example SSNs, 123-456-7890 and the "
        "payment processors' test cards. Private ranges (10/8, 172.16/12, 192.168/16) are not on it: internal "
        "addresses leak infrastructure; add them if your corpus is full of tutorials.",
    )
    spacy_model: str | None = Field(
        default=None,
        description="An installed spaCy model (e.g. `en_core_web_lg`) whose NER finds PERSON and LOCATION; it is "
        "never downloaded. None: no names or places are detected (logged once per process) and the pattern "
        "recognizers run on `spacy.blank('en')`. With a model every text goes through the NER pipeline (no "
        "pre-screen is possible for names), which costs far more than the pattern recognizers.",
    )
    prescreen: bool = Field(
        default=True,
        description="Screen each text with cheap substring tests and compiled patterns and call presidio only "
        "where something may be found. It never changes the result (it is a superset of every recognizer); off "
        "only to measure what it buys. Ignored with `spacy_model`.",
    )
    keep_raw_in_rejects: bool = Field(
        default=False,
        description="Put the raw value in a `pii_<kind>` reject's detail (and leave ingest's raw reject lines "
        "unscrubbed). Off: the detail carries kind, turn, span, score, recognizer and a masked form such as "
        "`ghp_****…(40 chars)`, so no raw PII lands in the run directory.",
    )
    score_threshold: float = Field(
        default=0.5,
        ge=0.0,
        le=1.0,
        description="Minimum recognizer score. Validated values (Luhn, mod 97, public-suffix TLD, provider "
        "tokens) score 0.9-1.0, unambiguous shapes (+CC or NANP phones, IPs, dashed SSNs) 0.7-0.8, grouped "
        "digits next to a phone word 0.6, and ambiguous shapes 0.3: grouped digits with no phone word, "
        "`==1.2.3.4`-style versions, CIDR blocks, numbers after 'order'/'invoice'/'ISBN'. 0.5 keeps the first "
        "three (recall >= 0.95 on presidio's labelled sets with ~no change to plain SFT records); 0.3 trades "
        "precision for recall.",
    )

    @field_validator("spacy_model")
    @classmethod
    def _model_installed(cls, value: str | None) -> str | None:
        if value is None:
            return value
        import spacy.util

        if not (spacy.util.is_package(value) or Path(value).is_dir()):
            raise ValueError(
                f"spaCy model {value!r} is not installed (models are never downloaded at run time)"
            )
        return value

    @field_validator("actions", mode="before")
    @classmethod
    def _complete_actions(cls, value: Any) -> Any:
        if not isinstance(value, dict):
            return value
        out = dict.fromkeys(KINDS, "redact")
        for key, action in value.items():
            kind = str(key).lower()
            kind = _ALIASES.get(kind, kind)
            if kind not in out:
                raise ValueError(f"unknown entity kind {key!r} (known: {', '.join(KINDS)})")
            out[kind] = action
        return out


@dataclass(frozen=True, slots=True)
class Finding:
    kind: str
    start: int
    end: int
    score: float
    recognizer: str


@dataclass
class PiiResult:
    messages: list[dict[str, str]]  # redacted copies; the very input list when nothing was found
    found: dict[str, int]  # kind -> entities in this record
    reject: tuple[str, dict] | None  # ("pii_<kind>", detail) when a kind whose action is reject was found


class AllowList:
    """Exact strings, digit forms of numbers, `*@domain` wildcards and IP networks."""

    def __init__(self, entries: list[str]):
        self.exact: set[str] = set()
        self.digits: set[str] = set()
        self.domains: list[str] = []
        self.mailboxes: set[str] = set()
        self.networks: list[ipaddress.IPv4Network | ipaddress.IPv6Network] = []
        for raw in entries:
            entry = raw.strip()
            if entry.startswith("*@"):
                self.domains.append(entry[2:].lower())
                continue
            if entry.endswith("@*"):
                self.mailboxes.add(entry[:-2].lower())
                continue
            try:
                self.networks.append(ipaddress.ip_network(entry, strict=False))
                continue
            except ValueError:
                pass
            self.exact.add(entry.lower())
            digits = re.sub(r"\D", "", entry)
            if len(digits) >= 7 and re.fullmatch(r"[\d\s().+-]+", entry):
                self.digits.add(digits)
                if len(digits) == 11 and digits[0] == "1":  # +1 415 555 0199 also allows (415) 555-0199
                    self.digits.add(digits[1:])

    def allows(self, kind: str, value: str) -> bool:
        if value.lower() in self.exact:
            return True
        if kind == R.EMAIL:
            local, _, domain = value.lower().rpartition("@")
            return local in self.mailboxes or any(
                domain == d or domain.endswith("." + d) for d in self.domains
            )
        if kind == R.IP:
            try:
                ip = ipaddress.ip_address(value.split("%")[0])
            except ValueError:
                return False
            return any(ip.version == net.version and ip in net for net in self.networks)
        if kind in (R.PHONE, R.CARD, R.SSN):
            digits = re.sub(r"\D", "", value)
            return digits in self.digits or (
                kind == R.PHONE and len(digits) == 11 and digits[0] == "1" and digits[1:] in self.digits
            )
        return False


class PiiScrubber:
    """Finds and redacts PII. Cheap to build: presidio and spaCy are loaded on the first text that needs them."""

    def __init__(self, cfg: PiiConfig):
        self.cfg = cfg
        self.allow = AllowList(cfg.allow_list)
        self.ner = cfg.spacy_model is not None
        self.kinds = R.PATTERN_KINDS + (R.NER_KINDS if self.ner else ())
        self._counts: Counter[str] = Counter()
        if not self.ner:
            note_no_ner()

    # ---- public API --------------------------------------------------------------------------------------------

    def scrub_messages(self, messages: list[dict[str, str]]) -> PiiResult:
        found: dict[str, int] = {}
        out: list[dict[str, str]] | None = None
        reject: tuple[str, dict] | None = None
        for i, message in enumerate(messages):
            content = message.get("content")
            if not isinstance(content, str) or not content:
                continue
            findings = self.find(content)
            if not findings:
                continue
            if out is None:
                out = list(messages)
            out[i] = {**message, "content": redact(content, findings)}
            for f in findings:
                found[f.kind] = found.get(f.kind, 0) + 1
                if reject is None and self.cfg.actions.get(f.kind) == "reject":
                    reject = (f"pii_{f.kind}", self._evidence(f, content, i, message.get("role")))
        if out is None:
            return PiiResult(messages, {}, None)
        if reject is not None:
            reject[1]["found"] = dict(found)
        return PiiResult(out, found, reject)

    def scrub_text(self, text: str) -> tuple[str, dict[str, int]]:
        findings = self.find(text) if text else []
        if not findings:
            return text, {}
        return redact(text, findings), dict(Counter(f.kind for f in findings))

    def counters(self) -> dict[str, int]:
        """Texts seen, texts passed to presidio, since the previous call (the stage reads it once per shard)."""
        out = {
            "texts_scanned": self._counts["texts"],
            "presidio_calls": self._counts["presidio"],
        }
        self._counts.clear()
        return out

    def find(self, text: str) -> list[Finding]:
        """Non-overlapping findings in `text`, allow-listed values removed, by position."""
        self._counts["texts"] += 1
        kinds = self.prescreen(text) if self.cfg.prescreen and not self.ner else self.kinds
        if not kinds:
            return []
        self._counts["presidio"] += 1
        results = _analyzer(self.cfg.spacy_model).analyze(
            text=text,
            language="en",
            entities=[R.ENTITY_OF[k] for k in kinds],
            score_threshold=self.cfg.score_threshold,
        )
        findings = []
        for r in results:
            kind = R.KIND_OF.get(r.entity_type)
            if kind is None or self.allow.allows(kind, text[r.start : r.end]):
                continue
            meta = r.recognition_metadata or {}
            name = meta.get("pattern") or meta.get("recognizer_name") or r.entity_type
            findings.append(Finding(kind, r.start, r.end, round(float(r.score), 3), name))
        return resolve_overlaps(findings)

    def prescreen(self, text: str) -> tuple[str, ...]:
        """The pattern kinds that may be present in `text` (a superset of what presidio would report)."""
        return R.prescreen(text, self.cfg.score_threshold)

    # ---- internals ---------------------------------------------------------------------------------------------

    def _evidence(self, f: Finding, text: str, turn: int, role: str | None) -> dict:
        value = text[f.start : f.end]
        detail = {
            "entity": f.kind,
            "turn": turn,
            "role": role,
            "start": f.start,
            "end": f.end,
            "score": f.score,
            "recognizer": f.recognizer,
            "masked": R.mask(f.kind, value),
        }
        if self.cfg.keep_raw_in_rejects:
            detail["value"] = value
        return detail


def resolve_overlaps(findings: list[Finding]) -> list[Finding]:
    """Keep a non-overlapping subset: secrets first (a key block or URL holds other shapes), then by score, then
    the longer span."""
    if len(findings) < 2:
        return findings
    ranked = sorted(findings, key=lambda f: (f.kind != R.SECRET, -f.score, f.start - f.end, f.start))
    kept: list[Finding] = []
    for f in ranked:
        if all(f.end <= k.start or k.end <= f.start for k in kept):
            kept.append(f)
    return sorted(kept, key=lambda f: f.start)


def redact(text: str, findings: list[Finding]) -> str:
    parts, pos = [], 0
    for f in findings:  # sorted, non-overlapping
        parts.append(text[pos : f.start])
        parts.append(PLACEHOLDERS[f.kind])
        pos = f.end
    parts.append(text[pos:])
    return "".join(parts)


# ---- presidio, built once per process --------------------------------------------------------------------------

_NOTED_NO_NER = False


def note_no_ner() -> None:
    """Say once per process that person/location need a spaCy NER model."""
    global _NOTED_NO_NER
    if not _NOTED_NO_NER:
        _NOTED_NO_NER = True
        log.info(
            "pii: no spaCy NER model configured (stages.clean.pii.spacy_model); person and location are not "
            "detected, pattern recognizers run on spacy.blank('en')"
        )


@cache
def _analyzer(spacy_model: str | None):
    """Presidio's AnalyzerEngine with our recognizers, on an already-built spaCy pipeline."""
    _offline_tldextract()
    import spacy
    from presidio_analyzer import AnalyzerEngine, RecognizerRegistry
    from presidio_analyzer.nlp_engine import NerModelConfiguration, SpacyNlpEngine
    from presidio_analyzer.predefined_recognizers import SpacyRecognizer

    if spacy_model is None:
        nlp = spacy.blank("en")
        nlp.max_length = 50_000_000  # tokenizer only: long documents are fine
    else:
        try:
            nlp = spacy.load(spacy_model)
        except OSError as exc:
            raise ValueError(
                f"stages.clean.pii.spacy_model: spaCy model {spacy_model!r} is not installed ({exc})"
            ) from None
    mapping = {
        "PERSON": "PERSON",
        "PER": "PERSON",
        "GPE": "LOCATION",
        "LOC": "LOCATION",
        "LOCATION": "LOCATION",
    }
    labels = {label for _, pipe in nlp.pipeline for label in getattr(pipe, "labels", ())}
    ner_config = NerModelConfiguration(
        model_to_presidio_entity_mapping=mapping,
        labels_to_ignore=sorted(labels - set(mapping)),
    )
    engine = SpacyNlpEngine(
        models=[{"lang_code": "en", "model_name": spacy_model or "blank:en"}],
        ner_model_configuration=ner_config,
    )
    engine.nlp = {"en": nlp}  # already loaded: presidio's load() would download a missing model
    recognizers = [_recognizer_class()(d) for d in R.DETECTORS.values()]
    if spacy_model is not None:
        recognizers.append(
            SpacyRecognizer(supported_language="en", supported_entities=["PERSON", "LOCATION"])
        )
    registry = RecognizerRegistry(recognizers=recognizers, supported_languages=["en"])
    return AnalyzerEngine(registry=registry, nlp_engine=engine, supported_languages=["en"])


@cache
def _recognizer_class():
    """Defined on first use so that importing this module does not import presidio (over a second)."""
    from presidio_analyzer import LocalRecognizer, RecognizerResult

    class DetectorRecognizer(LocalRecognizer):
        """Runs one `pii_recognizers.Detector`; the pattern that matched goes into the result's metadata."""

        def __init__(self, detector: R.Detector):
            self.detector = detector
            super().__init__(
                supported_entities=[R.ENTITY_OF[detector.kind]],
                supported_language="en",
                name=f"factory_{detector.kind}",
            )

        def load(self) -> None:
            pass

        def analyze(self, text, entities, nlp_artifacts=None):
            entity = self.supported_entities[0]
            if entities and entity not in entities:
                return []
            return [
                RecognizerResult(
                    entity_type=entity,
                    start=c.start,
                    end=c.end,
                    score=c.score,
                    recognition_metadata={
                        RecognizerResult.RECOGNIZER_NAME_KEY: self.name,
                        RecognizerResult.RECOGNIZER_IDENTIFIER_KEY: self.id,
                        "pattern": c.pattern,
                    },
                )
                for c in self.detector.find(text)
            ]

    return DetectorRecognizer


def _offline_tldextract() -> None:
    """tldextract's module-level extractor (presidio's e-mail check uses it) must not fetch the suffix list."""
    import tldextract.tldextract as tx

    if any(url.startswith(("http:", "https:")) for url in tx.TLD_EXTRACTOR.suffix_list_urls):
        tx.TLD_EXTRACTOR = tx.TLDExtract(suffix_list_urls=(), cache_dir=None)
