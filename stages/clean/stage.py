"""The `clean` stage: normalises every turn's text and drops records that fail a quality rule.

Input columns: the canonical record (id, source, messages, meta, origin).
Output columns: the same; `messages` normalised (see `normalize.py`), everything else unchanged.
Reject reasons: the rule names of `rules.py` (too_short, too_long, empty_response, repeats_instruction,
repetition, symbol_ratio, refusal, truncated, needs_modality), each with its evidence in `detail`.
Config: `stages.clean` (`config.py`): `normalize` steps and one section per rule, each with `enabled`.
Manifest figures: `normalised` (records changed by each normalisation step), `kinds` (records seen by meta.kind).
"""

from __future__ import annotations

from typing import ClassVar

import orjson
import pyarrow as pa

from factory.stage import ShardResult, reject_row
from stages.clean.config import CleanConfig
from stages.clean.normalize import normalize_messages
from stages.clean.rules import RecordView, check


class CleanStage:
    name: ClassVar[str] = "clean"
    Config: ClassVar[type[CleanConfig]] = CleanConfig
    version: ClassVar[int] = 1

    def __init__(self, config: CleanConfig):
        self.config = config

    def process(self, table: pa.Table) -> ShardResult:
        cfg = self.config
        kept: list[dict] = []
        rejected: list[dict] = []
        normalised: dict[str, int] = {}
        kinds: dict[str, int] = {}
        for row in table.to_pylist():
            messages, fixes = normalize_messages(row["messages"], cfg.normalize)
            for fix in fixes:
                normalised[fix] = normalised.get(fix, 0) + 1
            row["messages"] = messages
            meta = orjson.loads(row["meta"]) if row["meta"] else {}
            kind = meta.get("kind", "chat")
            kinds[kind] = kinds.get(kind, 0) + 1
            verdict = check(RecordView(messages, kind, meta), cfg)
            if verdict is None:
                kept.append(row)
            else:
                rejected.append(reject_row(row, verdict[0], verdict[1]))
        return ShardResult.from_rows(kept, rejected, {"normalised": normalised, "kinds": kinds})
