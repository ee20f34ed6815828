"""The Stage protocol every stage implements, and ShardResult, what one shard's processing returns.

A stage never opens files: the runner reads its input shard, calls `process`, and writes what it returns (kept
records, rejects, counters). Counters are nested dicts of ints, summed over shards into the manifest.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol

import orjson
import pyarrow as pa

from factory.config import Section
from factory.records import RECORD_SCHEMA, REJECT_SCHEMA

Counters = dict[str, Any]  # name -> int, or name -> Counters


@dataclass
class ShardResult:
    kept: pa.Table
    rejected: pa.Table
    counters: Counters = field(default_factory=dict)

    @classmethod
    def from_rows(
        cls, kept: list[dict], rejected: list[dict], counters: Counters | None = None
    ) -> ShardResult:
        return cls(
            pa.Table.from_pylist(kept, schema=RECORD_SCHEMA),
            pa.Table.from_pylist(rejected, schema=REJECT_SCHEMA),
            counters or {},
        )


class Stage(Protocol):
    """One pipeline stage: a pure map from a shard of canonical records to a ShardResult."""

    name: ClassVar[str]
    Config: ClassVar[type[Section]]

    def __init__(self, config: Section) -> None: ...

    def process(self, table: pa.Table) -> ShardResult: ...


def reject_row(row: dict, reason: str, detail: dict) -> dict:
    """A record as it was when rejected, plus its reason and evidence."""
    return {**row, "reason": reason, "detail": orjson.dumps(detail, default=str).decode()}


def merge_counters(into: Counters, other: Counters) -> Counters:
    """Sum nested counters in place."""
    for key, value in other.items():
        if isinstance(value, dict):
            merge_counters(into.setdefault(key, {}), value)
        else:
            into[key] = into.get(key, 0) + value
    return into
