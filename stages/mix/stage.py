"""The `mix` stage: a mixture balanced by source, split into train and validation, written as Alpaca or ShareGPT
Parquet with a LLaMA-Factory `dataset_info.json` and a dataset card.

`prepare` reads the source, approximate tokens, quality score and near-duplicate cluster of every input record
(all shards, on the run's workers) and makes the plan (`plan.py`), one small file per shard in `_work/plan/`;
`process` applies it to a shard: dropped records to rejects, kept ones converted (`formats.py`) into
`train/part-NNNNN.parquet` (repeated as planned) and `validation/part-NNNNN.parquet`; `publish` writes
`dataset_info.json` and the card (`card.py`).

Input columns: the canonical record. Output: `train/` and `validation/` in the chosen format (see formats.py),
each row with its record's `id` and `source`. Manifest `counts.out` counts the distinct records kept;
`split` the rows written per split (`copies` of them repeats).
Reject reasons: `mix_downsampled` (detail: source, policy, its planned and available size, and why: over its
share, or not in `weights`), `mix_not_conversation` (a `text` record: SFT formats need an answer).
Config: `stages.mix` (`config.py`). Manifest figures: format, unit, mixture (planned, achieved, per source),
split, copies, short (sources that could not reach their share).
"""

from __future__ import annotations

import logging
from typing import ClassVar

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc

from factory import shards
from factory.records import REJECT_SCHEMA, meta_scores, meta_values
from factory.shards import RunPath
from factory.stage import PrepareContext, ShardContext, ShardResult
from factory.tokens import message_tokens
from stages.mix import card, formats
from stages.mix.config import MixConfig
from stages.mix.plan import TRAIN, VALIDATION, Pool, make_plan

log = logging.getLogger("factory")

NOT_CONVERSATION = -1  # plan code of a record that cannot be written in an SFT format
FIGURES = "figures.json"  # the plan's figures, for the workers' reject details


def scan(task: tuple[RunPath, str, str]) -> dict:
    """One input shard's planning columns (runs on a worker)."""
    path, score_key, cluster_key = task
    table = shards.read_table(path)
    messages = table.column("messages").combine_chunks()
    lengths = pc.list_value_length(messages).fill_null(0).to_numpy(zero_copy_only=False)
    ends = np.cumsum(lengths) - 1
    last_role = pc.list_flatten(messages).field("role").to_numpy(zero_copy_only=False)
    answered = (lengths > 0) & (last_role[np.maximum(ends, 0)] == "assistant") if len(ends) else lengths > 0
    meta = table.column("meta")
    cluster = [None if c is None else str(c) for c in meta_values(meta, cluster_key)]
    ids = table.column("id").to_pylist()
    return {
        "source": table.column("source").to_numpy(zero_copy_only=False).astype(str),
        "tokens": message_tokens(messages).to_numpy(),
        "score": meta_scores(meta, score_key),
        "unit": np.array([c if c is not None else i for c, i in zip(cluster, ids, strict=True)], dtype=str),
        "answered": answered,
    }


class MixStage:
    name: ClassVar[str] = "mix"
    Config: ClassVar[type[MixConfig]] = MixConfig
    version: ClassVar[int] = 1

    def __init__(self, config: MixConfig) -> None:
        self.config = config
        self._figures: dict = {}

    # ---- the global pass: the plan -----------------------------------------------------------------------------

    def prepare(self, ctx: PrepareContext) -> dict:
        cfg = self.config
        tasks = [(s.path, cfg.score_key, cfg.cluster_key) for s in ctx.inputs]
        scanned: dict[str, dict] = {}
        with ctx.progress("mix: reading sources and sizes", len(tasks)) as advance:
            for path, columns in ctx.map(_scan_keyed, tasks):
                scanned[path] = columns
                advance(1)
        pool, answered = _pool([scanned[s.path] for s in ctx.inputs])
        if cfg.policy == "quality" and len(pool) and np.isnan(pool.score).all():
            log.warning("mix: policy quality, but no record has meta.%s: the choice is random", cfg.score_key)
        plan = make_plan(
            pool,
            cfg.weights,
            cfg.total,
            cfg.total_tokens,
            cfg.validation,
            cfg.policy,
            cfg.max_repeats,
            cfg.seed,
        )
        copies = np.full(len(answered), NOT_CONVERSATION, dtype=np.int64)
        copies[answered] = plan.copies
        split = np.full(len(answered), TRAIN, dtype=np.int8)
        split[answered] = plan.split
        plan_dir = ctx.work_dir / "plan"
        start = 0
        for shard in ctx.inputs:
            stop = start + shard.rows
            shards.write_npz(
                plan_dir / (shard.name + ".npz"), copies=copies[start:stop], split=split[start:stop]
            )
            start = stop
        self._figures = self._plan_figures(plan)
        shards.write_json(self._figures, plan_dir / FIGURES)
        parts = [
            f"{s} {a[plan.unit]:,} of {plan.available[s][plan.unit]:,} (planned {plan.planned.get(s, 0):,.0f})"
            for s, a in sorted(plan.achieved.items())
        ]
        n_val = sum(a["validation"] for a in plan.achieved.values())
        n_copies = sum(a["copies"] for a in plan.achieved.values())
        log.info(
            "mix: %s %s; %d to validation, %d extra copies", ", ".join(parts), plan.unit, n_val, n_copies
        )
        for s, want in plan.short.items():
            got = self._figures["mixture"]["achieved"].get(s, 0)
            log.warning(
                "mix: source %r short of its share: %s of %s planned %s (max_repeats %d)",
                s, f"{got:,}", f"{want:,.0f}", plan.unit, cfg.max_repeats,
            )  # fmt: skip
        return {}

    def _plan_figures(self, plan) -> dict:
        key = "tokens" if plan.unit == "tokens" else "records"
        planned = {s: round(v) for s, v in sorted(plan.planned.items())}
        return {
            "format": self.config.format,
            "unit": plan.unit,
            "mixture": {
                "weights": self.config.weights,
                "planned": planned,
                "achieved": {s: a[key] for s, a in sorted(plan.achieved.items())},
                "sources": {
                    s: {"planned": planned.get(s, 0), "available": plan.available[s], **plan.achieved[s]}
                    for s in sorted(plan.achieved)
                },
            },
            "short": {s: round(v) for s, v in plan.short.items()},
            "policy": self.config.policy,
            "max_repeats": self.config.max_repeats,
        }

    # ---- the map: one shard ------------------------------------------------------------------------------------

    def process(self, table: pa.Table, ctx: ShardContext) -> ShardResult:
        plan = shards.read_npz(ctx.work_dir / "plan" / (ctx.name + ".npz"))
        copies, split = plan["copies"], plan["split"]
        if len(copies) != table.num_rows:
            raise RuntimeError(f"mix: plan of {ctx.name} has {len(copies)} rows, the shard {table.num_rows}")
        kept = np.flatnonzero(copies > 0)
        train = kept[split[kept] == TRAIN]
        val = kept[split[kept] == VALIDATION]
        convert = formats.CONVERT[self.config.format]
        outputs = {
            "train": convert(table.take(np.repeat(train, copies[train]))),
            "validation": convert(table.take(val)),
        }
        rejected = self._rejects(table, copies, ctx.work_dir)
        counters = {
            "written": {"train": outputs["train"].num_rows, "validation": outputs["validation"].num_rows},
            "copies": int(copies[train].sum()) - len(train),
        }
        return ShardResult(table.take(kept), rejected, counters, outputs)

    def _rejects(self, table: pa.Table, copies: np.ndarray, work_dir: RunPath) -> pa.Table:
        dropped = np.flatnonzero(copies <= 0)
        if not len(dropped):
            return REJECT_SCHEMA.empty_table()
        rows = table.take(dropped)
        sources = shards.read_json(work_dir / "plan" / FIGURES)["mixture"][
            "sources"
        ]  # prepare's, any process
        weights = self.config.weights
        details, reasons = [], []
        for source, code in zip(rows.column("source").to_pylist(), copies[dropped], strict=True):
            if code == NOT_CONVERSATION:
                reasons.append("mix_not_conversation")
                details.append({"why": "a text record has no answer turn; Alpaca and ShareGPT need one"})
                continue
            s = sources.get(source, {})
            reasons.append("mix_downsampled")
            details.append(
                {
                    "source": source,
                    "policy": self.config.policy,
                    "planned": s.get("planned", 0),
                    "available": s.get("available", {}).get("records", 0),
                    "why": "source not in weights"
                    if weights is not None and not weights.get(source)
                    else "source over its share",
                }
            )
        return rows.append_column("reason", pa.array(reasons, pa.string())).append_column(
            "detail", pa.array([orjson.dumps(d).decode() for d in details], pa.string())
        )

    # ---- the end: figures, LLaMA-Factory entry, card -----------------------------------------------------------

    def finish(self, merged: dict) -> dict:
        written = merged.get("written", {})
        split = {"train": written.get("train", 0), "validation": written.get("validation", 0)}
        return {**self._figures, "split": split, "copies": merged.get("copies", 0)}

    def publish(self, manifest: dict, stage_dir: RunPath) -> None:
        folders = [f for f in ("train", "validation") if manifest["split"][f]]
        info = {
            (self.config.name if f == "train" else f"{self.config.name}_{f}"): formats.llamafactory_entry(
                self.config.format, f
            )
            for f in folders
        }
        shards.write_json(info, stage_dir / "dataset_info.json")
        shards.write_text(
            card.render(self.config, manifest, stage_dir.parent, list(info)), stage_dir / "README.md"
        )


def _scan_keyed(task: tuple[str, str, str]) -> tuple[str, dict]:
    return task[0], scan(task)


def _pool(parts: list[dict]) -> tuple[Pool, np.ndarray]:
    """The eligible records of all shards (in input order) as a Pool, and the eligibility mask over all rows."""
    if not parts:
        empty = np.zeros(0, dtype=np.int64)
        return Pool([], empty, empty, np.zeros(0), empty), np.zeros(0, dtype=bool)
    answered = np.concatenate([p["answered"] for p in parts])
    col = {k: np.concatenate([p[k] for p in parts])[answered] for k in ("source", "tokens", "score", "unit")}
    names, source = np.unique(col["source"], return_inverse=True)
    _, unit = np.unique(col["unit"], return_inverse=True)
    pool = Pool(
        [str(n) for n in names],
        source.astype(np.int64),
        col["tokens"].astype(np.int64),
        col["score"].astype(np.float64),
        unit.astype(np.int64),
    )
    return pool, answered
