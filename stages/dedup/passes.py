"""The global passes of the dedup stage: map steps over files, as the large-scale pipelines do (datatrove's
signatures -> buckets -> clusters -> filter), so that they run on the local pool or, unchanged, as Ray tasks.

1. `sign_shard`, per input shard, on all workers: exact key, length, keep score and MinHash signature of every
   record (`shingles.py`, `minhash.py`), written to `signatures/`; the LSH band keys and exact keys, hash-
   partitioned into `partitions` record batches, written to `bands/`.
2. `pair_partition`, per partition, on all workers: the keys of every shard's batch for that partition, sorted;
   records that share a key become candidate pairs (the run's first record with each of the others), written to
   `pairs/`. This is the on-disk group-by: no process ever holds the whole band index.
3. `resolve`, once, in the main process: exact groups first (one record kept per group), then the near candidate
   pairs between what is left, verified (Jaccard >= threshold: the MinHash estimate, or the exact Jaccard of the
   shingle sets where the estimate is within 3 standard errors of the threshold), clustered, and a
   record kept per cluster with the chaining guard (`clusters.py`); the outcome per input shard goes to
   `decisions/`, the figures to `resolved.json`, written last.
The stage's `process` then applies each shard's decisions.

Work folder (RUN_DIR/dedup/_work): `signatures/part-*.parquet` (id, length, score, empty, sig),
`shingles/part-*.arrow` (each record's shingle hashes, memory-mapped for exact checks), `bands/part-*.arrow`
(key, idx, kind in `partitions` batches), `pairs/p-*.parquet` (u, v, kind), `decisions/part-*.parquet` (row,
reason, kept, similarity, cluster), `resolved.json`. Every file is written atomically and a pass skips the pieces
whose output exists, so a run cut off anywhere resumes where it stopped.

Memory: a worker holds one shard (its text and 4 x num_perm bytes per record of signatures) or one partition
(17 bytes per record and key, (bands + 1) keys per record, divided by `partitions`, which grows with the input
so that a partition stays near 128 MB). The main process holds 16 bytes per record (length and score), the
candidate pairs (about 24 bytes each) and the signatures of the records that are in a candidate pair (4 x
num_perm bytes each): about 16 MB per million records plus ~0.5 KB per record with a duplicate candidate; the
shingle sets of exact checks are read from memory-mapped files, a few shards at a time. Disk: about 4 x (num_perm + shingles) + 17 x (bands + 1) bytes per record, removed with
`_work` when the stage is done.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass

import numpy as np
import orjson
import pyarrow as pa

from factory import shards
from factory.records import meta_scores
from factory.shards import RunPath
from factory.stage import PrepareContext
from stages.dedup.clusters import choose_keepers, components, size_histogram
from stages.dedup.config import DedupConfig
from stages.dedup.minhash import LshParams, band_keys, lsh_params, permutations, signatures, similarity
from stages.dedup.shingles import features, mix64

log = logging.getLogger("factory")

SIGNATURES, SHINGLES, BANDS, PAIRS, DECISIONS = "signatures", "shingles", "bands", "pairs", "decisions"
RESOLVED = "resolved.json"
EXACT, BAND = 0, 1  # kinds of key and of candidate pair
_EXACT_SALT = np.uint64(0xA0761D6478BD642F)
_BATCH_ROWS = 1_000  # records shingled at once: bounds a worker's temporary arrays to a few tens of MB
_PARTITION_BYTES = 128 << 20
_KEY_BYTES = 17  # key (8) + idx (8) + kind (1)

BAND_SCHEMA = pa.schema([("key", pa.uint64()), ("idx", pa.int64()), ("kind", pa.uint8())])
PAIR_SCHEMA = pa.schema([("u", pa.int64()), ("v", pa.int64()), ("kind", pa.uint8())])
DECISION_SCHEMA = pa.schema(
    [
        ("row", pa.int64()),
        ("reason", pa.string()),  # exact_duplicate, near_duplicate, or null: kept, in a cluster with others
        ("kept", pa.string()),
        ("similarity", pa.float64()),
        ("cluster", pa.string()),
        ("exact_of", pa.string()),
    ]
)


def lsh_for(cfg: DedupConfig) -> LshParams:
    near = cfg.near
    return lsh_params(near.threshold, near.num_perm, near.weights, near.bands, near.rows)


_CONFIGS: dict[bytes, tuple[DedupConfig, LshParams, tuple[np.ndarray, np.ndarray]]] = {}


def _setup(config: dict) -> tuple[DedupConfig, LshParams, tuple[np.ndarray, np.ndarray]]:
    """Config, LSH parameters and permutations, built once per worker process."""
    key = orjson.dumps(config, option=orjson.OPT_SORT_KEYS)
    if key not in _CONFIGS:
        cfg = DedupConfig.model_validate(config)
        _CONFIGS[key] = (cfg, lsh_for(cfg), permutations(cfg.near.num_perm, cfg.near.seed))
    return _CONFIGS[key]


# ---- 1. signatures ---------------------------------------------------------------------------------------------


@dataclass
class SignTask:
    work_dir: RunPath
    name: str
    path: RunPath
    offset: int  # global index of the shard's first record
    config: dict
    partitions: int


def sign_shard(task: SignTask) -> dict:
    """Pass 1 for one input shard: signatures and partitioned keys (see the module docstring)."""
    started = time.perf_counter()
    cfg, lsh, (a, b) = _setup(task.config)
    work = task.work_dir
    table = shards.read_table(task.path)
    n = table.num_rows
    exact, length, sigs, shingle_lists = [], [], [], []
    code_records, languages = 0, {}
    for lo in range(0, n, _BATCH_ROWS):
        f = features(table.slice(lo, _BATCH_ROWS), cfg)
        exact.append(f.exact)
        length.append(f.length)
        sigs.append(signatures(f.shingles, f.offsets, a, b) if cfg.near.enabled else None)
        shingle_lists.append(
            pa.ListArray.from_arrays(pa.array(f.offsets.astype(np.int32)), pa.array(f.shingles, pa.uint32()))
        )
        code_records += f.code_records
        for lang, k in f.code_languages.items():
            languages[lang] = languages.get(lang, 0) + k
    exact_keys = np.concatenate(exact) if exact else np.zeros(0, dtype=np.uint64)
    lengths = np.concatenate(length) if length else np.zeros(0, dtype=np.int64)
    num_perm = cfg.near.num_perm
    if cfg.near.enabled and sigs:
        sig = np.concatenate(sigs)
    else:
        sig = np.zeros((n, num_perm if cfg.near.enabled else 0), dtype=np.uint32)
    empty = (sig == np.uint32(0xFFFFFFFF)).all(axis=1) if sig.shape[1] else np.ones(n, dtype=bool)
    idx = task.offset + np.arange(n, dtype=np.int64)

    keys, owners, kinds = [], [], []
    if cfg.exact.enabled:
        keys.append(mix64(exact_keys ^ _EXACT_SALT))
        owners.append(idx)
        kinds.append(np.full(n, EXACT, dtype=np.uint8))
    if cfg.near.enabled:
        live = ~empty  # a record without shingles has no near duplicates (its exact ones are found above)
        bk = band_keys(sig[live], lsh.bands, lsh.rows)
        keys.append(bk.ravel())
        owners.append(np.repeat(idx[live], lsh.bands))
        kinds.append(np.full(bk.size, BAND, dtype=np.uint8))
    key = np.concatenate(keys) if keys else np.zeros(0, dtype=np.uint64)
    owner = np.concatenate(owners) if owners else np.zeros(0, dtype=np.int64)
    kind = np.concatenate(kinds) if kinds else np.zeros(0, dtype=np.uint8)
    part = (key >> np.uint64(40)) % np.uint64(task.partitions)
    order = np.argsort(part, kind="stable")
    key, owner, kind, part = key[order], owner[order], kind[order], part[order]
    bounds = np.searchsorted(part, np.arange(task.partitions + 1, dtype=np.uint64))
    batches = [
        pa.record_batch([pa.array(key[s:e]), pa.array(owner[s:e]), pa.array(kind[s:e])], schema=BAND_SCHEMA)
        for s, e in zip(bounds[:-1], bounds[1:], strict=True)
    ]
    shards.write_batches(batches, BAND_SCHEMA, work / BANDS / _arrow(task.name))

    score = meta_scores(table.column("meta"), cfg.score_key) if cfg.keep == "score" else np.full(n, np.nan)
    flat = pa.array(sig.ravel(), type=pa.uint32())
    out = pa.table(
        {
            "id": table.column("id"),
            "length": pa.array(lengths, pa.int64()),
            "score": pa.array(score, pa.float64()),
            "empty": pa.array(empty),
            "sig": pa.FixedSizeListArray.from_arrays(flat, max(sig.shape[1], 1))
            if sig.shape[1]
            else pa.nulls(n, pa.list_(pa.uint32(), 1)),
        }
    )
    lists = pa.concat_arrays(shingle_lists) if shingle_lists else pa.array([], pa.list_(pa.uint32()))
    shingle_batch = pa.record_batch([lists], names=["shingles"])
    shards.write_batches([shingle_batch], shingle_batch.schema, work / SHINGLES / _arrow(task.name))
    # written last: this file marks the shard done
    shards.write_table(out, work / SIGNATURES / task.name, compression="none", dictionary=False)
    return {
        "name": task.name,
        "rows": n,
        "empty": int(empty.sum()) if cfg.near.enabled else 0,
        "code_records": code_records,
        "code_blocks": languages,
        "seconds": time.perf_counter() - started,
    }


def _arrow(name: str) -> str:
    return name.removesuffix(".parquet") + ".arrow"


# ---- 2. candidate pairs ----------------------------------------------------------------------------------------


@dataclass
class PairTask:
    work_dir: RunPath
    partition: int
    shard_names: list[str]


def _pair_name(partition: int) -> str:
    return f"p-{partition:05d}.parquet"


def pair_partition(task: PairTask) -> dict:
    """Pass 2 for one partition: records sharing a key become candidate pairs (first record, other record)."""
    work = task.work_dir
    key_parts, idx_parts, kind_parts = [], [], []
    for name in task.shard_names:
        batch = shards.read_batch(work / BANDS / _arrow(name), task.partition)
        key_parts.append(batch.column(0).to_numpy())
        idx_parts.append(batch.column(1).to_numpy())
        kind_parts.append(batch.column(2).to_numpy())
    key = np.concatenate(key_parts) if key_parts else np.zeros(0, dtype=np.uint64)
    idx = np.concatenate(idx_parts) if idx_parts else np.zeros(0, dtype=np.int64)
    kind = np.concatenate(kind_parts) if kind_parts else np.zeros(0, dtype=np.uint8)
    u = v = np.zeros(0, dtype=np.int64)
    k = np.zeros(0, dtype=np.uint8)
    if len(key):
        order = np.lexsort((idx, key))
        key, idx, kind = key[order], idx[order], kind[order]
        new_run = np.concatenate(([True], key[1:] != key[:-1]))
        first = idx[np.flatnonzero(new_run)][np.cumsum(new_run) - 1]
        m = idx != first
        u, v, k = first[m], idx[m], kind[m]
        if len(u):  # the same pair from several bands: once
            order = np.lexsort((k, v, u))
            u, v, k = u[order], v[order], k[order]
            keep = np.concatenate(([True], (u[1:] != u[:-1]) | (v[1:] != v[:-1]) | (k[1:] != k[:-1])))
            u, v, k = u[keep], v[keep], k[keep]
    table = pa.table([pa.array(u), pa.array(v), pa.array(k)], schema=PAIR_SCHEMA)
    shards.write_table(table, work / PAIRS / _pair_name(task.partition))
    return {"partition": task.partition, "keys": int(len(key)), "pairs": int(len(u))}


# ---- 3. clusters -----------------------------------------------------------------------------------------------


class Shards:
    """Index arithmetic over the input shards: global record index <-> (shard, row), and column reads."""

    def __init__(self, ctx: PrepareContext):
        self.ctx = ctx
        self.names = [s.name for s in ctx.inputs]
        rows = np.array([s.rows for s in ctx.inputs], dtype=np.int64)
        self.offsets = np.concatenate(([0], np.cumsum(rows))).astype(np.int64)

    @property
    def total(self) -> int:
        return int(self.offsets[-1])

    def shard_of(self, idx: np.ndarray) -> np.ndarray:
        return np.searchsorted(self.offsets, idx, side="right") - 1

    def column(self, name: str) -> np.ndarray:
        """One numeric column of every signature file, in global order."""
        parts = [
            shards.read_table(self.ctx.work_dir / SIGNATURES / s, columns=[name]).column(0).to_numpy()
            for s in self.names
        ]
        return np.concatenate(parts) if parts else np.zeros(0)

    def gather(self, idx: np.ndarray, name: str) -> list | np.ndarray:
        """Column `name` of the records `idx` (sorted, unique): ids as a list, signatures as a 2-D array."""
        shard = self.shard_of(idx)
        out: list = []
        for s in np.unique(shard):
            rows = idx[shard == s] - self.offsets[s]
            col = shards.read_table(self.ctx.work_dir / SIGNATURES / self.names[s], columns=[name]).column(0)
            col = col.combine_chunks().take(pa.array(rows))
            if name == "sig":
                width = col.type.list_size
                out.append(col.values.to_numpy().reshape(len(rows), width))
            else:
                out.extend(col.to_pylist())
        if name == "sig":
            return np.concatenate(out) if out else np.zeros((0, 0), dtype=np.uint32)
        return out


class Similarity:
    """Jaccard of record pairs: the MinHash estimate, and where the estimate is too close to the threshold to
    decide (within 3 standard errors, ~0.1 at 128 permutations), the exact Jaccard of the two shingle sets,
    read from the memory-mapped `shingles/` files (only the pages of those records are touched). MinHash alone
    would misjudge a pair at true Jaccard 0.84 about one time in ten."""

    _OPEN = 64  # memory-mapped shingle files kept open

    def __init__(self, idx_map: Shards, need: np.ndarray, sig: np.ndarray, threshold: float):
        self.idx_map, self.need, self.sig, self.threshold = idx_map, need, sig, threshold
        num_perm = max(sig.shape[1], 1)
        self.margin = 3.0 * math.sqrt(threshold * (1.0 - threshold) / num_perm) + 1e-9
        self.files: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        self.exact_pairs = 0

    def shingle_set(self, idx: int) -> np.ndarray:
        s = int(self.idx_map.shard_of(np.array([idx]))[0])
        if s not in self.files:
            if len(self.files) >= self._OPEN:
                self.files.pop(next(iter(self.files)))
            name = _arrow(self.idx_map.names[s])
            col = shards.read_batch(self.idx_map.ctx.work_dir / SHINGLES / name, 0).column(0)
            self.files[s] = (col.offsets.to_numpy(), col.values.to_numpy())
        offsets, values = self.files[s]
        row = idx - int(self.idx_map.offsets[s])
        return np.unique(values[offsets[row] : offsets[row + 1]])

    def estimate(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        out = np.empty(len(x))
        rows_x, rows_y = np.searchsorted(self.need, x), np.searchsorted(self.need, y)
        for s in range(0, len(x), 65_536):  # bounds the temporary comparison arrays
            out[s : s + 65_536] = similarity(
                self.sig[rows_x[s : s + 65_536]], self.sig[rows_y[s : s + 65_536]]
            )
        return out

    def of(self, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(similarity, exact?) of the pairs x[i]-y[i]."""
        sims = self.estimate(x, y)
        close = np.abs(sims - self.threshold) < self.margin
        for i in np.flatnonzero(close):
            a, b = self.shingle_set(int(x[i])), self.shingle_set(int(y[i]))
            inter = len(np.intersect1d(a, b, assume_unique=True))
            union = len(a) + len(b) - inter
            sims[i] = inter / union if union else 1.0
        self.exact_pairs += int(close.sum())
        return sims, close


def _rank(nodes: np.ndarray, cfg: DedupConfig, length: np.ndarray, score: np.ndarray) -> np.ndarray:
    """Position of each node in the keep order (0 = kept first)."""
    if cfg.keep == "first":
        keys: tuple = (nodes,)
    elif cfg.keep == "longest":
        keys = (nodes, -length[nodes])
    else:
        s = np.where(np.isnan(score[nodes]), -np.inf, score[nodes])
        keys = (nodes, -length[nodes], -s)
    order = np.lexsort(keys)
    rank = np.empty(len(nodes), dtype=np.int64)
    rank[order] = np.arange(len(nodes))
    return rank


def _read_pairs(work: RunPath, partitions: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    parts = [shards.read_table(work / PAIRS / _pair_name(p)) for p in range(partitions)]
    t = pa.concat_tables(parts) if parts else PAIR_SCHEMA.empty_table()
    return (
        t.column("u").to_numpy().astype(np.int64),
        t.column("v").to_numpy().astype(np.int64),
        t.column("kind").to_numpy().astype(np.uint8),
    )


def _remap(x: np.ndarray, removed: np.ndarray, kept: np.ndarray) -> np.ndarray:
    """x with every removed record replaced by the record kept instead (removed sorted)."""
    if len(removed) == 0 or len(x) == 0:
        return x
    pos = np.minimum(np.searchsorted(removed, x), len(removed) - 1)
    hit = removed[pos] == x
    return np.where(hit, kept[pos], x)


def resolve(ctx: PrepareContext, cfg: DedupConfig, lsh: LshParams, partitions: int) -> dict:
    """Pass 3: exact groups, verified near pairs, clusters, keepers; writes `decisions/` and the figures."""
    work = ctx.work_dir
    idx_map = Shards(ctx)
    length = idx_map.column("length").astype(np.int64)
    score = idx_map.column("score").astype(np.float64)
    u, v, kind = _read_pairs(work, partitions)

    # exact groups: every member is a duplicate of the group's best record
    ex = kind == EXACT
    nodes, root = components(u[ex], v[ex])
    exact = choose_keepers(nodes, root, _rank(nodes, cfg, length, score), None, 0.0)
    ex_removed, ex_kept, _ = exact.arrays()
    order = np.argsort(ex_removed)
    ex_removed, ex_kept = ex_removed[order], ex_kept[order]
    exact_groups = int(len(np.unique(ex_kept)))

    # near pairs between the records exact dedup kept
    nu, nv = _remap(u[~ex], ex_removed, ex_kept), _remap(v[~ex], ex_removed, ex_kept)
    lo, hi = np.minimum(nu, nv), np.maximum(nu, nv)
    distinct = lo != hi
    pairs = np.unique(np.stack((lo[distinct], hi[distinct]), axis=1), axis=0) if distinct.any() else None
    candidates = 0 if pairs is None else len(pairs)
    need = np.unique(pairs) if pairs is not None else np.zeros(0, dtype=np.int64)
    sig = idx_map.gather(need, "sig") if len(need) else np.zeros((0, cfg.near.num_perm), dtype=np.uint32)
    threshold = cfg.near.threshold
    sim_of = Similarity(idx_map, need, sig, threshold)
    verified = 0
    near_removed = near_kept = np.zeros(0, dtype=np.int64)
    near_sim = np.zeros(0)
    extra_keepers = extra_root = np.zeros(0, dtype=np.int64)
    components_n = 0
    if pairs is not None:
        sims, _ = sim_of.of(pairs[:, 0], pairs[:, 1])
        ok = sims >= threshold - 1e-9
        verified = int(ok.sum())
        good, good_sims = pairs[ok], sims[ok]
        nodes, root = components(good[:, 0], good[:, 1])
        components_n = int(len(np.unique(root)))
        pair_key = good[:, 0] * (idx_map.total + 1) + good[:, 1]
        order = np.argsort(pair_key)
        pair_key, good_sims = pair_key[order], good_sims[order]

        def pair_similarity(x: np.ndarray, y: np.ndarray) -> np.ndarray:
            """Similarity of verified pairs (a two-record component is one verified pair)."""
            lo, hi = np.minimum(x, y), np.maximum(x, y)
            return good_sims[np.searchsorted(pair_key, lo * (idx_map.total + 1) + hi)]

        def similar_to(members: np.ndarray, keeper: int) -> np.ndarray:
            return sim_of.of(members, np.full(len(members), keeper))[0]

        near = choose_keepers(
            nodes, root, _rank(nodes, cfg, length, score), similar_to, threshold, pair_similarity
        )
        near_removed, near_kept, near_sim = near.arrays()
        cat = lambda xs: np.concatenate(xs) if xs else np.zeros(0, dtype=np.int64)  # noqa: E731
        extra_keepers, extra_root = cat(near.extra_keepers), cat(near.extra_root)

    # an exact duplicate of a record that near dedup removed points at the record finally kept
    order = np.argsort(near_removed)
    nr_sorted, nk_sorted, ns_sorted = near_removed[order], near_kept[order], near_sim[order]
    ex_final = _remap(ex_kept, nr_sorted, nk_sorted)
    via_near = ex_final != ex_kept
    ex_sim = np.ones(len(ex_removed))
    if via_near.any():
        ex_sim[via_near] = ns_sorted[np.searchsorted(nr_sorted, ex_kept[via_near])]

    removed = np.concatenate((ex_removed, near_removed))
    kept = np.concatenate((ex_final, near_kept))
    sim = np.concatenate((ex_sim, near_sim))
    reason = np.concatenate(
        (
            np.where(via_near, "near_duplicate", "exact_duplicate"),
            np.full(len(near_removed), "near_duplicate"),
        )
    ).astype(object)
    exact_of = np.concatenate((np.where(via_near, ex_kept, -1), np.full(len(near_removed), -1)))
    # kept records whose component holds other kept records: mix keeps such records on one side of a split
    first_keepers = np.unique(extra_root)
    annotated = np.concatenate((extra_keepers, first_keepers))
    annotated_root = np.concatenate((extra_root, first_keepers))

    ids_needed = np.unique(np.concatenate((kept, annotated_root, exact_of[exact_of >= 0])))
    id_list = idx_map.gather(ids_needed, "id") if len(ids_needed) else []
    id_of = dict(zip(ids_needed.tolist(), id_list, strict=True))
    _write_decisions(
        work,
        idx_map,
        removed,
        reason,
        [id_of[k] for k in kept.tolist()],
        sim,
        [id_of[k] for k in kept.tolist()],
        [id_of[e] if e >= 0 else None for e in exact_of.tolist()],
        annotated,
        [id_of[r] for r in annotated_root.tolist()],
    )

    counts = np.unique(kept, return_counts=True)[1] + 1 if len(kept) else np.zeros(0, dtype=np.int64)
    return {
        "exact": {"groups": exact_groups, "removed": int((reason == "exact_duplicate").sum())},
        "near": {
            "candidate_pairs": candidates,
            "verified_pairs": verified,
            "components": components_n,
            "removed": int((reason == "near_duplicate").sum()),
            "kept_by_chaining_guard": int(len(extra_keepers)),
            "exact_jaccard_checks": sim_of.exact_pairs,
        },
        "clusters": int(len(counts)),
        "cluster_sizes": size_histogram(counts),
        "largest_cluster": int(counts.max()) if len(counts) else 0,
    }


def _write_decisions(
    work: RunPath,
    idx_map: Shards,
    removed: np.ndarray,
    reason: np.ndarray,
    kept_ids: list,
    sim: np.ndarray,
    cluster_ids: list,
    exact_of_ids: list,
    annotated: np.ndarray,
    annotated_cluster: list,
) -> None:
    rows = np.concatenate((removed, annotated))
    cols = {
        "reason": list(reason) + [None] * len(annotated),
        "kept": kept_ids + [None] * len(annotated),
        "similarity": np.concatenate((np.round(sim, 4), np.full(len(annotated), np.nan))),
        "cluster": cluster_ids + annotated_cluster,
        "exact_of": exact_of_ids + [None] * len(annotated),
    }
    shard = idx_map.shard_of(rows)
    by_shard = np.argsort(shard, kind="stable")
    bounds = np.searchsorted(shard[by_shard], np.arange(len(idx_map.names) + 1))
    for s, name in enumerate(idx_map.names):
        take = by_shard[bounds[s] : bounds[s + 1]]
        if len(take) == 0:
            continue
        table = pa.table(
            {
                "row": pa.array(rows[take] - idx_map.offsets[s], pa.int64()),
                "reason": pa.array([cols["reason"][i] for i in take], pa.string()),
                "kept": pa.array([cols["kept"][i] for i in take], pa.string()),
                "similarity": pa.array(cols["similarity"][take], pa.float64(), from_pandas=True),
                "cluster": pa.array([cols["cluster"][i] for i in take], pa.string()),
                "exact_of": pa.array([cols["exact_of"][i] for i in take], pa.string()),
            },
            schema=DECISION_SCHEMA,
        )
        shards.write_table(table, work / DECISIONS / name)


# ---- the whole prepare ---------------------------------------------------------------------------------------


def partitions_for(total_rows: int, lsh: LshParams, workers: int) -> int:
    keys = total_rows * (lsh.bands + 1) * _KEY_BYTES
    return max(2 * workers, math.ceil(keys / _PARTITION_BYTES), 1)


def prepare(ctx: PrepareContext, cfg: DedupConfig) -> dict:
    """Run passes 1-3, skipping finished pieces; returns the manifest's `dedup` figures."""
    work = ctx.work_dir
    lsh = lsh_for(cfg)
    config = cfg.model_dump(mode="json")
    saved = shards.read_json(work / RESOLVED)
    if saved is not None:
        log.info("dedup: clustering already done (resuming)")
        return saved
    total = sum(s.rows for s in ctx.inputs)
    partitions = partitions_for(total, lsh, ctx.workers)
    if cfg.near.enabled:
        log.info("dedup: %s", lsh.describe())
    timings: dict[str, float] = {}

    started = time.perf_counter()
    offsets = np.concatenate(([0], np.cumsum([s.rows for s in ctx.inputs]))).astype(int)
    tasks = [
        SignTask(work, s.name, s.path, int(offsets[i]), config, partitions)
        for i, s in enumerate(ctx.inputs)
        if not (work / SIGNATURES / s.name).exists()
    ]
    empty, code_records, code_blocks = 0, 0, {}
    sign_cpu = 0.0
    with ctx.progress("dedup: signatures", sum(s.rows for s in ctx.inputs)) as advance:
        advance(total - sum(ctx.inputs[i].rows for i, s in enumerate(ctx.inputs) if s.name in _names(tasks)))
        for result in ctx.map(sign_shard, tasks):
            advance(result["rows"])
            empty += result["empty"]
            code_records += result["code_records"]
            sign_cpu += result["seconds"]
            for lang, k in result["code_blocks"].items():
                code_blocks[lang] = code_blocks.get(lang, 0) + k
    timings["signatures_s"] = round(time.perf_counter() - started, 3)

    started = time.perf_counter()
    names = [s.name for s in ctx.inputs]
    pair_tasks = [
        PairTask(work, p, names) for p in range(partitions) if not (work / PAIRS / _pair_name(p)).exists()
    ]
    with ctx.progress("dedup: candidate pairs", len(pair_tasks)) as advance:
        for _ in ctx.map(pair_partition, pair_tasks):
            advance(1)
    timings["pairs_s"] = round(time.perf_counter() - started, 3)

    started = time.perf_counter()
    figures = resolve(ctx, cfg, lsh, partitions)
    timings["clusters_s"] = round(time.perf_counter() - started, 3)
    result = {
        "dedup": {
            "lsh": lsh.as_dict() if cfg.near.enabled else None,
            "records": total,
            "records_without_shingles": empty,
            "code_records": code_records,
            "code_blocks": code_blocks,
            **figures,
            "partitions": partitions,
            "timings": {**timings, "signatures_cpu_s": round(sign_cpu, 3)},
        }
    }
    log.info(
        "dedup: %d exact groups (%d removed); %d candidate pairs, %d verified, %d near duplicates removed, "
        "%d kept by the chaining guard; %d clusters",
        figures["exact"]["groups"],
        figures["exact"]["removed"],
        figures["near"]["candidate_pairs"],
        figures["near"]["verified_pairs"],
        figures["near"]["removed"],
        figures["near"]["kept_by_chaining_guard"],
        figures["clusters"],
    )
    shards.write_json(result, work / RESOLVED)
    return result


def _names(tasks: list[SignTask]) -> set[str]:
    return {t.name for t in tasks}
