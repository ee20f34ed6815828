"""The Stage protocol every stage implements, and ShardResult, what one shard's processing returns.

A stage never opens its input or output shards: the runner reads an input shard, calls `process(table, ctx)`,
and writes what it returns (kept records, rejects, counters). Counters are nested dicts of ints, summed over
shards into the manifest.

A stage that needs a global pass before its per-shard map (dedup: signatures, band grouping and clustering over
all shards) also defines `prepare(ctx)`. The runner calls it once per run of the stage, in the main process,
before mapping the undone shards, and puts the dict it returns into the manifest. Its work goes in
`ctx.work_dir` (RUN_DIR/<stage>/_work), where `process` finds it again through `ShardContext.work_dir`; the runner
deletes that folder when the stage is done unless the stage's `keep_work` is true. `prepare` must be resumable
itself (skip the pieces of work whose outputs exist), since it runs again when a cut-off stage resumes.

A stage whose output is not canonical records (`mix`: Alpaca or ShareGPT rows in `train/` and `validation/`)
returns them in `ShardResult.outputs`, by folder name; the runner then writes `<stage>/<folder>/<shard>` for each
non-empty table instead of the canonical `kept` table, which still says which input records were kept (the
`in == out + rejected` count). Two optional hooks finish a stage: `finish(counters) -> dict` turns the summed
counters into the manifest's stage-specific figures, and `publish(manifest, stage_dir)` writes files that
describe the whole stage (mix's dataset card) before the manifest is marked done.

A generating stage (`synth`, class attribute `generates = True`) makes its records in `prepare`, writing them as
shards (records and rejects in one table, `reason` null for a record) into `ctx.work_dir / GENERATED`; the runner
then maps those shards through `process` instead of the upstream ones.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol

import orjson
import pyarrow as pa

from factory.config import Section
from factory.records import RECORD_SCHEMA, REJECT_SCHEMA
from factory.shards import RunPath

Counters = dict[str, Any]  # name -> int, or name -> Counters
GENERATED = "generated"  # the work folder a generating stage writes its shards to


@dataclass
class ShardResult:
    kept: pa.Table
    rejected: pa.Table
    counters: Counters = field(default_factory=dict)
    outputs: dict[str, pa.Table] | None = None  # folder -> rows written instead of `kept` (see above)

    @classmethod
    def from_rows(
        cls, kept: list[dict], rejected: list[dict], counters: Counters | None = None
    ) -> ShardResult:
        return cls(
            pa.Table.from_pylist(kept, schema=RECORD_SCHEMA),
            pa.Table.from_pylist(rejected, schema=REJECT_SCHEMA),
            counters or {},
        )


@dataclass(frozen=True)
class ShardContext:
    """What `process` knows besides its table: the shard's name and the stage's work folder."""

    name: str
    work_dir: RunPath


@dataclass(frozen=True)
class InputShard:
    name: str
    path: RunPath
    rows: int


@dataclass
class PrepareContext:
    """What `prepare` gets: the input shards in order, a work folder, and the run's executor and progress bars.

    `map(fn, tasks)` yields fn(task) for each task as it finishes, on the run's workers (fn must be a module-level
    function and tasks picklable). `progress(description, total)` is a context manager giving an
    `advance(n)` callable."""

    inputs: list[InputShard]
    work_dir: RunPath
    workers: int
    map: Callable[[Callable[[Any], Any], Iterable[Any]], Iterator[Any]]
    progress: Callable[[str, int], AbstractContextManager[Callable[[int], None]]]


class Stage(Protocol):
    """One pipeline stage: a map from a shard of canonical records to a ShardResult (optionally after a global
    `prepare(ctx: PrepareContext) -> dict`)."""

    name: ClassVar[str]
    Config: ClassVar[type[Section]]

    def __init__(self, config: Section) -> None: ...

    def process(self, table: pa.Table, ctx: ShardContext) -> ShardResult: ...


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
