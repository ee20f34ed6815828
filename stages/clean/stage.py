"""The `clean` stage: normalises text, scrubs PII, drops low-quality records and code that does not parse.

PII and the run directory: raw PII must reach no file of the run directory, so records are scrubbed where they
enter it. With `stages.clean.pii` enabled, ingest redacts every record with these settings (`PiiDoor`, handed to
ingest by the CLI) and notes in `meta.pii` the entity types it replaced and, where an entity's action is
`reject`, the masked evidence (`meta.pii_reject`); an empty `meta.pii` says "scanned, nothing found". The clean
stage scans again only what the door did not see: records that entered another way (e.g. from synth) and records
whose normalisation removed characters that can hide PII (`REVEALING`: zero-width or control characters,
mojibake). It counts entities by type, applies the `reject` actions and drops an empty `meta.pii`. With
`keep_raw_in_rejects`, nothing is scrubbed at the door and rejects keep records as they were before scrubbing.

Order per record: 1. normalisation (`normalize.py`); 2. PII (`pii.py`): placeholders in messages and in `meta`,
`pii_<kind>` rejects; 3. quality rules (`rules.py`), first failing rule wins; 4. code parse checks (`code.py`):
a fenced block (or a `code` record) that tree-sitter cannot parse rejects the record (`code_syntax_error`).

Input columns: the canonical record (id, source, messages, meta, origin).
Output columns: the same; `messages` normalised and scrubbed, `meta` scrubbed (plus `meta.pii`, the entity
counts of a redacted record); everything else unchanged.
Reject reasons: too_short, too_long, empty_response, repeats_instruction, needs_modality, refusal, truncated,
symbol_ratio, repetition, pii_<kind>, code_syntax_error; each with its evidence in `detail`.
Config: `stages.clean` (`config.py`): `normalize`, one section per rule, `pii`, `code_parse`.
Manifest figures: `normalised` (records changed by each normalisation step), `kinds` (records by meta.kind),
`pii` (entities by type, records redacted, pre-screen figures), `code` (blocks checked, failed and unchecked by
language).
"""

from __future__ import annotations

from typing import Any, ClassVar

import pyarrow as pa

from factory.ingest import Redactor
from factory.records import dumps_meta, loads_meta
from factory.stage import ShardContext, ShardResult, merge_counters, reject_row
from stages.clean.code import CodeChecker
from stages.clean.config import CleanConfig
from stages.clean.normalize import normalize_messages
from stages.clean.pii import PiiConfig, PiiScrubber, note_no_ner
from stages.clean.rules import RecordView, check

# Normalisation steps that can reveal PII the door could not see (an address split by a zero-width space, or
# hidden in mojibake): records they changed are scanned again; all others were scanned at the door already.
REVEALING = frozenset({"mojibake", "nfc", "control", "zero_width"})


class CleanStage:
    name: ClassVar[str] = "clean"
    Config: ClassVar[type[CleanConfig]] = CleanConfig
    version: ClassVar[int] = 2

    def __init__(self, config: CleanConfig):
        self.config = config
        self.pii = PiiScrubber(config.pii) if config.pii.enabled else None
        self.code = CodeChecker(config.code_parse) if config.code_parse.enabled else None

    @classmethod
    def ingest_redactor(cls, config: CleanConfig) -> Redactor | None:
        """Scrub records at the door of the run directory, with this stage's PII settings.

        Called once in the main process before workers start: the "no NER model" note is said here, once, and
        the forked workers inherit that it was said."""
        if config.pii.enabled and config.pii.spacy_model is None:
            note_no_ner()
        if not config.pii.enabled or config.pii.keep_raw_in_rejects:
            return None
        return Redactor(PiiDoor, config.pii.model_dump(mode="json"))

    def process(self, table: pa.Table, ctx: ShardContext | None = None) -> ShardResult:
        cfg = self.config
        keep_raw = self.pii is not None and cfg.pii.keep_raw_in_rejects
        kept: list[dict] = []
        rejected: list[dict] = []
        normalised: dict[str, int] = {}
        kinds: dict[str, int] = {}
        pii: dict[str, Any] = {"entities": {}, "records_redacted": 0}
        code: dict[str, Any] = {}
        for row in table.to_pylist():
            messages, fixes = normalize_messages(row["messages"], cfg.normalize)
            for fix in fixes:
                normalised[fix] = normalised.get(fix, 0) + 1
            meta = loads_meta(row["meta"])
            # as it was before scrubbing: kept in rejects only when the config asks for raw values there
            raw = {**row, "messages": messages} if keep_raw else None
            verdict = None
            if self.pii is not None:
                rescan = "pii" not in meta or not REVEALING.isdisjoint(fixes)
                messages, meta, verdict = self._scrub(messages, meta, pii, rescan)
            row["messages"] = messages
            row["meta"] = dumps_meta(meta)
            kind = meta.get("kind", "chat")
            kinds[kind] = kinds.get(kind, 0) + 1
            view = RecordView(messages, kind, meta)
            if verdict is None:
                verdict = check(view, cfg)
            if verdict is None and self.code is not None:
                verdict, counts = self.code.check(view)
                merge_counters(code, counts)
            if verdict is None:
                kept.append(row)
            else:
                stored = raw if raw is not None else row
                rejected.append(reject_row(stored, verdict[0], verdict[1]))
        counters: dict[str, Any] = {"normalised": normalised, "kinds": kinds}
        if self.pii is not None:
            counters["pii"] = merge_counters(pii, self.pii.counters())
        if self.code is not None:
            counters["code"] = code
        return ShardResult.from_rows(kept, rejected, counters)

    def _scrub(
        self, messages: list, meta: dict, pii: dict, rescan: bool
    ) -> tuple[list, dict, tuple[str, dict] | None]:
        """Merge what the door found (meta.pii) with a new scan, when one is needed; drop an empty meta.pii."""
        door_reject = meta.pop("pii_reject", None)
        verdict = tuple(door_reject) if door_reject else None
        found = meta.pop("pii", None) or {}
        if rescan:
            result = self.pii.scrub_messages(messages)
            messages, verdict = result.messages, result.reject or verdict
            merge_counters(found, result.found)
            meta = scrub_meta(self.pii, meta, found)
        if found:
            meta["pii"] = found
            pii["records_redacted"] += 1
            merge_counters(pii["entities"], found)
        return messages, meta, verdict


def scrub_meta(scrubber: PiiScrubber, value: Any, found: dict[str, int]) -> Any:
    """Scrub every string inside meta (original fields may hold PII too); counts go into `found`."""
    if isinstance(value, str):
        text, hits = scrubber.scrub_text(value)
        merge_counters(found, hits)
        return text
    if isinstance(value, dict):
        return {k: (v if k == "pii" else scrub_meta(scrubber, v, found)) for k, v in value.items()}
    if isinstance(value, list):
        return [scrub_meta(scrubber, v, found) for v in value]
    return value


class PiiDoor:
    """What ingest calls (through `factory.ingest.Redactor`) to scrub records before they are written."""

    def __init__(self, config: dict):
        self.scrubber = PiiScrubber(PiiConfig.model_validate(config))

    def text(self, text: str) -> str:
        return self.scrubber.scrub_text(text)[0]

    def record(self, rec: dict) -> dict:
        result = self.scrubber.scrub_messages(rec["messages"])
        found = dict(result.found)
        meta = scrub_meta(self.scrubber, loads_meta(rec["meta"]), found)
        meta["pii"] = found  # also when empty: it says the record was scanned here
        if result.reject is not None:
            meta["pii_reject"] = list(result.reject)
        return {**rec, "messages": result.messages, "meta": dumps_meta(meta)}
