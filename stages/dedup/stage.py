"""The `dedup` stage: removes exact repeats and MinHash-LSH near duplicates, code-aware, with a chaining guard.

`prepare` runs the global passes over all input shards (`passes.py`: signatures, on-disk band grouping,
verification and clustering); `process` then applies the decisions to each shard.

What is compared: the counted turns (`turns`, by default the user turns plus the final answer) of each record.
Exact: a 64-bit hash of that text, case, whitespace and punctuation folded (configurable). Near: MinHash
(datasketch's permutations, 128 by default) of word 5-gram shingles of the normalised prose plus token n-grams of
its code (`code_tokens.py`: tree-sitter tokens, comments dropped, identifiers and literals as placeholders), LSH
bands chosen by datasketch for the threshold with recall-tilted weights, every candidate pair verified on its
signatures (estimated Jaccard >= threshold), union-find clusters, and per cluster the best record by `keep` with
only the records similar to it removed (`clusters.py`).

Input columns: the canonical record. Output columns: the same; a kept record whose cluster kept other records
too (they were not similar enough to each other) gets `meta.dedup_cluster`, the id of that cluster's first kept
record, so that `mix` can keep them on one side of a train/validation split.
Reject reasons: `exact_duplicate` (detail: kept, similarity 1.0, cluster) and `near_duplicate` (detail: kept,
similarity (estimated Jaccard to the kept record), cluster, and `exact_of` when the record was an exact copy of a
near duplicate).
Config: `stages.dedup` (`config.py`). Manifest figures (`dedup`): LSH parameters and their error probabilities,
exact groups, candidate and verified pairs, components, records kept by the chaining guard, clusters and their
size histogram, code records and blocks by language, partitions, and the time of each pass.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc

from factory import shards
from factory.records import REJECT_SCHEMA, dumps_meta, loads_meta
from factory.stage import PrepareContext, ShardContext, ShardResult
from stages.dedup import passes
from stages.dedup.config import DedupConfig


class DedupStage:
    name: ClassVar[str] = "dedup"
    Config: ClassVar[type[DedupConfig]] = DedupConfig
    version: ClassVar[int] = 1

    def __init__(self, config: DedupConfig):
        self.config = config
        self.keep_work = config.keep_work

    def prepare(self, ctx: PrepareContext) -> dict:
        return passes.prepare(ctx, self.config)

    def process(self, table: pa.Table, ctx: ShardContext) -> ShardResult:
        path = ctx.work_dir / passes.DECISIONS / ctx.name
        if not path.exists():
            return ShardResult(table, REJECT_SCHEMA.empty_table())
        decisions = shards.read_table(path)
        rows = decisions.column("row").to_numpy()
        is_removed = pc.is_valid(decisions.column("reason")).to_numpy(zero_copy_only=False)
        removed = np.zeros(table.num_rows, dtype=bool)
        removed[rows[is_removed]] = True

        rejected = table.take(pa.array(rows[is_removed]))
        details = [
            orjson.dumps(
                {
                    "kept": d["kept"],
                    "similarity": d["similarity"],
                    "cluster": d["cluster"],
                    **({"exact_of": d["exact_of"]} if d["exact_of"] else {}),
                }
            ).decode()
            for d in decisions.filter(pa.array(is_removed))
            .select(["kept", "similarity", "cluster", "exact_of"])
            .to_pylist()
        ]
        reasons = decisions.column("reason").filter(pa.array(is_removed))
        rejected = rejected.append_column("reason", reasons).append_column(
            "detail", pa.array(details, pa.string())
        )

        annotate = rows[~is_removed]
        if len(annotate):
            meta = table.column("meta").to_pylist()
            clusters = decisions.column("cluster").filter(pa.array(~is_removed)).to_pylist()
            for row, cluster in zip(annotate.tolist(), clusters, strict=True):
                m = loads_meta(meta[row])
                m["dedup_cluster"] = cluster
                meta[row] = dumps_meta(m)
            table = table.set_column(
                table.schema.get_field_index("meta"), "meta", pa.array(meta, pa.string())
            )
        kept = table.filter(pa.array(~removed))
        return ShardResult(kept, rejected.cast(REJECT_SCHEMA))
