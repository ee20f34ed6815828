"""Benchmark: the dedup stage (exact + MinHash near-duplicates) vs datasketch and datatrove. One JSON line.

Everything is built from the real public data of ../shared/data (see dedup_labelled.py) and seeded.
Similarity below means the reference one: Jaccard of word 5-grams after lower-casing, dropping punctuation and
folding digit runs to "0" (`re.findall(r"\\w+", re.sub(r"\\d+", "0", text.lower()))`), of the user turn +
final answer.

- `throughput`: --n records (default 20,000) of a real instruction and a ~200-word answer cut from real SFT
  answers, ~10% of them planted near-duplicates (word edits at 1-3%). `baseline` is the straightforward
  datasketch loop on one core: per record one MinHash(num_perm=128), `update_batch` of its shingles, then
  MinHashLSH(threshold=0.8).query and insert when nothing is found (`records_per_s`, and the split between
  hashing and LSH, `hashing_records_per_s` for the MinHash part alone); `per_shingle_update` is the same
  hashing with one `update` call per shingle, on a subsample. `stage` is `factory run dedup --workers N` on
  the same records (keep: first, so that it keeps what the loop keeps): records/s of the stage (manifest
  counts.in / duration_s), of signatures alone (timings.signatures_s, where the stage reports it) and of the
  whole process (ingest included); `speedup_vs_baseline` is the stage's records/s over the loop's.
  `same_clusters` compares the two: the share of records both call duplicate or both call unique
  (`decision_agreement`), the same for "is in a duplicate cluster", the share of the loop's candidate pairs
  that the stage put in one cluster (`recall_of_baseline_pairs`; the loop does not verify, so some of its
  candidates are below the threshold: `baseline_candidates_below_threshold`) and the share of the stage's
  links (rejected -> kept) that the loop also put together (`precision_vs_baseline`); and both sides' recall
  of the planted pairs.
- `quality`: the labelled set of dedup_labelled.py (text pairs by edit type and rate, code pairs by renames,
  comments and layout, plus thousands of untouched records). `set` shows how hard it is: pairs and true
  Jaccard quantiles per kind and per edit. Per system (`stage`, and datasketch's default LSH bands at
  threshold 0.8 without verification, `datasketch_default`): `by_edit` (pairs, share resolved, i.e. both
  members end in one cluster), `text_recall`, `code_recall`, `recall_of_pairs_ge_0.8` (the pairs whose true
  Jaccard reaches the threshold: what a system that verifies at 0.8 should all find), `pair_precision` (of the
  pairs inside the system's clusters, the share that are labelled pairs; pairs involving a distinct record
  count as wrong, the rest, e.g. the same task in two languages, are not counted), `false_positive_removal`
  (share of the distinct records, those not in a labelled pair whose true Jaccard to every other record is
  below 0.3, found with an LSH at 0.3 and exact Jaccard on its candidates, that were removed). For the stage
  also the true Jaccard of the pairs it missed, the misses at or above the threshold per edit, and examples
  (highest Jaccard first). Targets: text recall >= 0.99, code recall >= 0.95, false positives <= 0.002.
- `datatrove`: datatrove's four MinHash stages (datatrove_minhash.py, its example's settings: 14 buckets x 8
  hashes, word 5-grams) with --workers tasks on the labelled set, run with --datatrove-python (a separate
  venv): the same scores, clusters found, and seconds per stage.
- `memory`: peak RSS (and PSS: forked workers share pages) of the whole process tree of `factory run dedup`
  (ingest included) at --sizes records (default 100k and 1M: every SFT record repeated, each copy with one
  random word changed so that ids differ; so most records are near-duplicates of ~40 others), the growth per
  record between the two sizes, records/s, and the disk used by the run directory.
Each part has `seconds`, its own wall time. A part whose stage run cannot happen (the stage not there yet, a
failed run) says so in `skipped` or `error` and the rest of the part is still reported.

Usage: python tests/benchmarks/bench_dedup.py [--n 20000] [--sizes 100000 1000000] [--workers 2]
       [--skip-memory] [--only throughput,quality,datatrove,memory]
       [--datatrove-python /tmp/dtvenv/bin/python] [--stage-config JSON] [--seed 0]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter, defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(HERE))

from bench_clean import manifest, run_tree, write_config  # noqa: E402
from dedup_labelled import (  # noqa: E402
    LabelledSet,
    jaccard,
    labelled_set,
    shingle_list,
    shingles,
    throughput_set,
    write_jsonl,
    write_memory_set,
)

PARTS = ("throughput", "quality", "datatrove", "memory")
NUM_PERM = 128
THRESHOLD = 0.8
DISTINCT_BELOW = 0.3
TARGETS = {"text_recall": 0.99, "code_recall": 0.95, "false_positive_removal_max": 0.002}
STAGE_CONFIG = {
    "turns": "user_and_final",
    "keep": "longest",
    "exact": {"enabled": True},
    "near": {"enabled": True, "threshold": THRESHOLD, "ngram": 5, "num_perm": NUM_PERM},
    "code": {"enabled": True, "ngram": 5},
}
DEFAULT_DT_PYTHON = Path("/tmp/dtvenv/bin/python")


def log(msg: str) -> None:
    print(f"[bench_dedup {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# ---- the stage under test (one function: run it, read what it did) -----------------------------------------


def stage_missing() -> str | None:
    """None when `factory run dedup` exists; else why not."""
    if not (ROOT / "stages" / "dedup" / "stage.py").exists():
        return "the dedup stage is not there yet (stages/dedup/stage.py is missing)"
    probe = subprocess.run(
        [sys.executable, "-c", "from stages import STAGES; print('dedup' in STAGES)"],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    if probe.stdout.strip() != "True":
        return f"the dedup stage is not registered in stages.STAGES ({(probe.stderr or probe.stdout)[-300:]})"
    return None


class Outcome:
    """What the stage did to each record, by bench_id (a top-level field of the input, so in meta)."""

    def __init__(self) -> None:
        self.kept: set[str] = set()
        self.removed: dict[
            str, tuple[str, str, float | None]
        ] = {}  # bench_id -> (reason, kept id, similarity)
        self.id_of: dict[str, str] = {}
        self.kept_by_id: dict[str, list[str]] = defaultdict(list)
        self.removed_by_id: dict[str, list[str]] = defaultdict(list)

    def cluster(self, bid: str) -> str:
        """The bench_id of the record kept for this one (itself when kept), following chains."""
        seen = set()
        while bid in self.removed and bid not in seen:
            seen.add(bid)
            kid = self.removed[bid][1]
            if self.kept_by_id.get(kid):
                return self.kept_by_id[kid][0]
            if self.removed_by_id.get(kid):
                bid = self.removed_by_id[kid][0]
            else:
                return f"?{kid}"
        return bid

    def clusters(self) -> dict[str, str]:
        return {b: self.cluster(b) for b in [*self.kept, *self.removed]}


def read_outcome(run_dir: Path) -> Outcome:
    import orjson
    import pyarrow.parquet as pq

    out = Outcome()
    for path in sorted((run_dir / "dedup").glob("part-*.parquet")):
        t = pq.read_table(path, columns=["id", "meta"]).to_pydict()
        for rid, meta in zip(t["id"], t["meta"], strict=True):
            bid = orjson.loads(meta).get("bench_id", rid)
            out.kept.add(bid)
            out.id_of[bid] = rid
            out.kept_by_id[rid].append(bid)
    for path in sorted((run_dir / "dedup" / "rejects").glob("part-*.parquet")):
        t = pq.read_table(path, columns=["id", "meta", "reason", "detail"]).to_pydict()
        for rid, meta, reason, detail in zip(t["id"], t["meta"], t["reason"], t["detail"], strict=True):
            bid = orjson.loads(meta).get("bench_id", rid)
            d = orjson.loads(detail) if detail else {}
            out.removed[bid] = (reason, str(d.get("kept", "")), d.get("similarity"))
            out.id_of[bid] = rid
            out.removed_by_id[rid].append(bid)
    return out


def du(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) if path.exists() else 0


def run_stage(
    tmp: Path,
    name: str,
    records: Path,
    workers: int,
    stage_config: dict,
    pss: bool = False,
    read: bool = True,
) -> dict:
    """`factory run dedup` on a JSONL of messages records: process tree figures, manifests, disk, outcome."""
    run_dir = tmp / name
    inputs = [{"path": str(records), "format": "messages", "source": "bench"}]
    cfg = write_config(tmp / f"{name}.yaml", run_dir, inputs, {"dedup": stage_config})
    cmd = [sys.executable, "-m", "factory", "run", "dedup", "-c", str(cfg), "--workers", str(workers)]
    try:
        tree = run_tree(cmd, ROOT, pss)
    except SystemExit as exc:  # run_tree's way of saying the command failed
        return {"error": str(exc)[-1500:]}
    man, ing = manifest(run_dir, "dedup"), manifest(run_dir, "ingest")
    res = {
        "tree": tree,
        "manifest": man,
        "ingest": ing,
        "disk_mb": {
            "run_dir": round(du(run_dir) / 2**20, 1),
            "ingest": round(du(run_dir / "ingest") / 2**20, 1),
            "dedup": round(du(run_dir / "dedup") / 2**20, 1),
        },
        "run_dir": run_dir,
    }
    if read:
        res["outcome"] = read_outcome(run_dir)
    return res


def stage_figures(res: dict, workers: int) -> dict:
    man = res["manifest"]
    counts = man.get("counts", {})
    n = counts.get("in") or 0
    dd = man.get("dedup") or {}
    timings = dd.get("timings") or {}
    out = {
        "records": n,
        "kept": counts.get("out"),
        "rejected": counts.get("rejected"),
        "rejected_by_reason": man.get("rejected_by_reason"),
        "duration_s": man.get("duration_s"),
        "records_per_s": round(n / man["duration_s"]) if man.get("duration_s") else None,
        "signatures_records_per_s": round(n / timings["signatures_s"])
        if timings.get("signatures_s")
        else None,
        "timings": timings or None,
        "ingest_duration_s": res["ingest"].get("duration_s"),
        "process_wall_s": res["tree"]["wall_s"],
        "process_records_per_s": round(n / res["tree"]["wall_s"]) if n else None,
        "cpu_utilisation": round(res["tree"]["cpu_s"] / (res["tree"]["wall_s"] * workers), 2),
        "peak_rss_mb": res["tree"]["peak_rss_mb"],
        "disk_mb": res["disk_mb"],
    }
    extra = {k: v for k, v in dd.items() if k != "timings"}
    if extra:
        out["figures"] = extra
    return out


# ---- datasketch --------------------------------------------------------------------------------------------


def baseline_loop(texts: list[str]) -> dict:
    """The straightforward datasketch loop: MinHash + update_batch, LSH query, insert when none found."""
    from datasketch import MinHash, MinHashLSH

    lsh = MinHashLSH(threshold=THRESHOLD, num_perm=NUM_PERM)
    dup = [False] * len(texts)
    pairs: list[tuple[int, int]] = []
    hash_s = lsh_s = 0.0
    start = time.perf_counter()
    for i, text in enumerate(texts):
        t0 = time.perf_counter()
        m = MinHash(num_perm=NUM_PERM)
        m.update_batch([s.encode("utf-8") for s in shingle_list(text)])
        t1 = time.perf_counter()
        found = lsh.query(m)
        if found:
            dup[i] = True
            pairs += [(i, j) for j in found]
        else:
            lsh.insert(i, m)
        lsh_s += time.perf_counter() - t1
        hash_s += t1 - t0
    total = time.perf_counter() - start
    return {
        "dup": dup,
        "pairs": pairs,
        "seconds": total,
        "hash_s": hash_s,
        "lsh_s": lsh_s,
        "b": lsh.b,
        "r": lsh.r,
    }


def per_shingle_loop(texts: list[str]) -> float:
    """Records/s of MinHash with one update() per shingle (the tutorial way)."""
    from datasketch import MinHash

    start = time.perf_counter()
    for text in texts:
        m = MinHash(num_perm=NUM_PERM)
        for s in shingle_list(text):
            m.update(s.encode("utf-8"))
    return len(texts) / (time.perf_counter() - start)


class UnionFind:
    def __init__(self) -> None:
        self.parent: dict = {}

    def find(self, x):
        self.parent.setdefault(x, x)
        while self.parent[x] != x:
            self.parent[x] = self.parent[self.parent[x]]
            x = self.parent[x]
        return x

    def union(self, a, b) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            self.parent[max(ra, rb)] = min(ra, rb)


def loop_clusters(ids: list[str], result: dict) -> tuple[dict[str, str], set[str]]:
    uf = UnionFind()
    for i, j in result["pairs"]:
        uf.union(ids[i], ids[j])
    clusters = {b: uf.find(b) for b in ids}
    removed = {ids[i] for i, d in enumerate(result["dup"]) if d}
    return clusters, removed


# ---- scoring -----------------------------------------------------------------------------------------------


def quantiles(values: list[float], at: float = THRESHOLD) -> dict:
    if not values:
        return {}
    v = sorted(values)

    def q(p: float) -> float:
        return round(v[min(len(v) - 1, int(p * len(v)))], 3)

    return {
        "n": len(v),
        "min": round(v[0], 3),
        "p5": q(0.05),
        "p25": q(0.25),
        "p50": q(0.5),
        "p75": q(0.75),
        "p95": q(0.95),
        "max": round(v[-1], 3),
        "mean": round(statistics.fmean(v), 3),
        f"share_ge_{at}": round(sum(x >= at for x in v) / len(v), 3),
    }


def score(ls: LabelledSet, clusters: dict[str, str], removed: set[str], distinct: set[str]) -> dict:
    """Recall per edit and kind, pair precision, false-positive removal of one system's clusters."""

    def cl(b: str) -> str:
        return clusters.get(b, b)

    by_edit: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    by_kind: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for p in ls.pairs:
        ok = cl(p.a) == cl(p.b)
        for d, key in ((by_edit, p.edit), (by_kind, p.kind)):
            d[key][0] += 1
            d[key][1] += ok
    members: dict[str, list[str]] = defaultdict(list)
    for r in ls.records:
        members[cl(r.bench_id)].append(r.bench_id)
    groups = [m for m in members.values() if len(m) > 1]
    pos = sum(cl(p.a) == cl(p.b) for p in ls.pairs)
    neg = together = 0
    for m in groups:
        k, d = len(m), sum(b in distinct for b in m)
        together += k * (k - 1) // 2
        neg += k * (k - 1) // 2 - (k - d) * (k - d - 1) // 2
    fp = len(removed & distinct)
    easy = [cl(p.a) == cl(p.b) for p in ls.pairs if p.jaccard >= THRESHOLD]
    return {
        "by_edit": {e: {"pairs": n, "resolved": round(ok / n, 4)} for e, (n, ok) in by_edit.items()},
        "text_recall": round(by_kind["text"][1] / by_kind["text"][0], 4) if by_kind["text"][0] else None,
        "code_recall": round(by_kind["code"][1] / by_kind["code"][0], 4) if by_kind["code"][0] else None,
        f"recall_of_pairs_ge_{THRESHOLD}": round(sum(easy) / len(easy), 4) if easy else None,
        "pair_precision": round(pos / (pos + neg), 4) if pos + neg else None,
        "pairs_together": {"labelled": pos, "wrong": neg, "not_judged": together - pos - neg},
        "false_positive_removal": round(fp / len(distinct), 5) if distinct else None,
        "distinct_removed": fp,
        "removed": len(removed),
        "clusters": len(groups),
    }


def distinct_records(ls: LabelledSet, sets: dict[str, set[str]]) -> tuple[set[str], dict]:
    """Records in no labelled pair, true Jaccard < 0.3 to every other record (LSH at 0.3 + exact check)."""
    from datasketch import MinHash, MinHashLSH

    ids = [r.bench_id for r in ls.records]
    mins = MinHash.bulk([[s.encode("utf-8") for s in sets[b]] for b in ids], num_perm=NUM_PERM)
    lsh = MinHashLSH(threshold=DISTINCT_BELOW, num_perm=NUM_PERM)
    for b, m in zip(ids, mins, strict=True):
        lsh.insert(b, m)
    in_pair = {p.a for p in ls.pairs} | {p.b for p in ls.pairs}
    best: dict[str, float] = {}
    for b, m in zip(ids, mins, strict=True):
        best[b] = max((jaccard(sets[b], sets[c]) for c in lsh.query(m) if c != b), default=0.0)
    distinct = {b for b in ids if b not in in_pair and best[b] < DISTINCT_BELOW}
    near = [b for b in ids if b not in in_pair and best[b] >= THRESHOLD]
    return distinct, {
        "distinct": len(distinct),
        "untouched_not_distinct": sum(1 for b in ids if b not in in_pair and b not in distinct),
        "untouched_with_a_neighbour_ge_0.8": len(near),
    }


# ---- parts -------------------------------------------------------------------------------------------------


def part_throughput(tmp: Path, args: argparse.Namespace, missing: str | None) -> dict:
    recs, planted = throughput_set(args.n, args.seed)
    ids = [r.bench_id for r in recs]
    texts = [r.text for r in recs]
    log(f"throughput: {len(recs)} records, {len(planted)} planted near-duplicates; datasketch loop")
    base = baseline_loop(texts)
    sub = random.Random(args.seed).sample(texts, min(1000, len(texts)))
    per_shingle = per_shingle_loop(sub)
    n = len(recs)
    base_rps = n / base["seconds"]
    base_clusters, base_removed = loop_clusters(ids, base)
    sets = {r.bench_id: shingles(r.text) for r in recs}
    below = sum(jaccard(sets[ids[i]], sets[ids[j]]) < THRESHOLD for i, j in base["pairs"])
    planted_j = [jaccard(sets[a], sets[b]) for a, b in planted]
    easy = [ab for ab, j in zip(planted, planted_j, strict=True) if j >= THRESHOLD]

    def recall(cl: dict[str, str], pairs: list[tuple[str, str]]) -> float | None:
        return round(sum(cl.get(a, a) == cl.get(b, b) for a, b in pairs) / len(pairs), 4) if pairs else None

    out: dict = {
        "records": n,
        "planted_pairs": len(planted),
        "mean_words": round(statistics.fmean(len(t.split()) for t in texts), 1),
        "planted_jaccard": quantiles(planted_j),
        "baseline": {
            "records_per_s": round(base_rps),
            "hashing_records_per_s": round(n / base["hash_s"]),
            "hash_share": round(base["hash_s"] / base["seconds"], 3),
            "lsh_share": round(base["lsh_s"] / base["seconds"], 3),
            "seconds": round(base["seconds"], 2),
            "duplicates": sum(base["dup"]),
            "candidate_pairs": len(base["pairs"]),
            "bands": {"b": base["b"], "r": base["r"]},
            "planted_recall": recall(base_clusters, planted),
            f"planted_recall_ge_{THRESHOLD}": recall(base_clusters, easy),
        },
        "per_shingle_update": {"records_per_s": round(per_shingle), "sample": len(sub)},
    }
    if missing:
        out["stage"] = {"skipped": missing}
        return out
    path = tmp / "throughput.jsonl"
    write_jsonl(path, recs)
    log("throughput: factory run dedup")
    res = run_stage(tmp, "throughput", path, args.workers, {**args.stage_config, "keep": "first"})
    if "error" in res:
        out["stage"] = res
        return out
    fig = stage_figures(res, args.workers)
    fig["config_keep"] = "first"
    out["stage"] = fig
    if fig["records_per_s"]:
        out["speedup_vs_baseline"] = round(fig["records_per_s"] / base_rps, 2)
    oc: Outcome = res["outcome"]
    st_clusters = oc.clusters()
    st_removed = set(oc.removed)
    size = Counter(st_clusters.values())
    base_size = Counter(base_clusters.values())
    links = [(b, oc.cluster(b)) for b in oc.removed]
    out["same_clusters"] = {
        "decision_agreement": round(sum((b in st_removed) == (b in base_removed) for b in ids) / n, 4),
        "in_duplicate_cluster_agreement": round(
            sum((size[st_clusters.get(b, b)] > 1) == (base_size[base_clusters[b]] > 1) for b in ids) / n,
            4,
        ),
        "recall_of_baseline_pairs": round(
            sum(st_clusters.get(ids[i], ids[i]) == st_clusters.get(ids[j], ids[j]) for i, j in base["pairs"])
            / len(base["pairs"]),
            4,
        )
        if base["pairs"]
        else None,
        "baseline_candidates_below_threshold": below,
        "precision_vs_baseline": round(
            sum(base_clusters[a] == base_clusters.get(k) for a, k in links) / len(links), 4
        )
        if links
        else None,
        "stage_links": len(links),
        "stage_planted_recall": recall(st_clusters, planted),
        f"stage_planted_recall_ge_{THRESHOLD}": recall(st_clusters, easy),
        "missing_from_output": n - len(st_clusters),
    }
    shutil.rmtree(res["run_dir"], ignore_errors=True)
    return out


def build_labelled(args: argparse.Namespace) -> tuple[LabelledSet, dict[str, set[str]], set[str], dict]:
    ls = labelled_set(args.seed)
    sets = {r.bench_id: shingles(r.text) for r in ls.records}
    distinct, dstats = distinct_records(ls, sets)
    js = defaultdict(list)
    for p in ls.pairs:
        js[p.kind].append(p.jaccard)
    by_edit = defaultdict(list)
    for p in ls.pairs:
        by_edit[p.edit].append(p.jaccard)
    stats = {
        **ls.stats,
        **dstats,
        "jaccard": {k: quantiles(v) for k, v in js.items()},
        "jaccard_by_edit": {e: quantiles(v) for e, v in by_edit.items()},
    }
    return ls, sets, distinct, stats


def part_quality(
    tmp: Path, args: argparse.Namespace, missing: str | None, ls: LabelledSet, sets, distinct, stats
) -> dict:
    out: dict = {"set": stats, "targets": TARGETS}
    # datasketch's own band choice for threshold 0.8, query/insert, no verification (same shingles)
    ids = [r.bench_id for r in ls.records]
    t = time.perf_counter()
    res = baseline_loop([r.text for r in ls.records])
    cl, removed = loop_clusters(ids, res)
    out["datasketch_default"] = {
        **score(ls, cl, removed, distinct),
        "bands": {"b": res["b"], "r": res["r"]},
        "seconds": round(time.perf_counter() - t, 2),
    }
    if missing:
        out["stage"] = {"skipped": missing}
        return out
    path = tmp / "labelled.jsonl"
    write_jsonl(path, ls.records)
    log(f"quality: factory run dedup on {len(ls.records)} labelled records")
    res = run_stage(tmp, "labelled", path, args.workers, args.stage_config)
    if "error" in res:
        out["stage"] = res
        return out
    oc: Outcome = res["outcome"]
    out["stage"] = {
        **score(ls, oc.clusters(), set(oc.removed), distinct),
        "meets_targets": None,
        "run": stage_figures(res, args.workers),
        "missing_from_output": len(ls.records) - len(oc.kept) - len(oc.removed),
    }
    s = out["stage"]
    s["meets_targets"] = bool(
        (s["text_recall"] or 0) >= TARGETS["text_recall"]
        and (s["code_recall"] or 0) >= TARGETS["code_recall"]
        and (s["false_positive_removal"] or 0) <= TARGETS["false_positive_removal_max"]
    )
    # what the misses look like: true Jaccard of unresolved pairs per edit, a few examples
    clusters = oc.clusters()
    missed = [p for p in ls.pairs if clusters.get(p.a, p.a) != clusters.get(p.b, p.b)]
    missed.sort(key=lambda p: -p.jaccard)  # the most surprising misses first
    s["missed_jaccard"] = quantiles([p.jaccard for p in missed])
    s[f"missed_ge_{THRESHOLD}_by_edit"] = dict(Counter(p.edit for p in missed if p.jaccard >= THRESHOLD))
    s["missed_examples"] = [
        {"a": p.a, "b": p.b, "edit": p.edit, "jaccard": round(p.jaccard, 3)} for p in missed[:8]
    ]
    wrong = [b for b in distinct if b in oc.removed][:5]
    s["false_positive_examples"] = [
        {"removed": b, "kept": oc.cluster(b), "reason": oc.removed[b][0], "similarity": oc.removed[b][2]}
        for b in wrong
    ]
    shutil.rmtree(res["run_dir"], ignore_errors=True)
    return out


def part_datatrove(tmp: Path, args: argparse.Namespace, ls: LabelledSet, distinct: set[str]) -> dict:
    python = args.datatrove_python
    if not python or not Path(python).exists():
        return {"skipped": f"no datatrove Python at {python} (see --datatrove-python)"}
    in_dir, work = tmp / "dt_in", tmp / "dt_work"
    in_dir.mkdir()
    k = args.workers
    per = -(-len(ls.records) // k)
    for t in range(k):  # one file per task, in the set's order
        with open(in_dir / f"part-{t}.jsonl", "w") as f:
            for r in ls.records[t * per : (t + 1) * per]:
                f.write(json.dumps({"id": r.bench_id, "text": r.text}) + "\n")
    result = tmp / "dt_result.json"
    cmd = [
        str(python),
        str(HERE / "datatrove_minhash.py"),
        *("--input", str(in_dir), "--work", str(work), "--out", str(result)),
        *("--tasks", str(k), "--workers", str(k)),
    ]
    log(f"datatrove: {len(ls.records)} records, {k} tasks")
    start = time.perf_counter()
    proc = subprocess.run(cmd, cwd=tmp, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if proc.returncode != 0 or not result.exists():
        return {"error": f"datatrove failed ({proc.returncode}): {proc.stderr[-1500:]}"}
    dt = json.loads(result.read_text())
    clusters: dict[str, str] = {}
    for bid, c in [*dt["kept"].items(), *dt["removed"].items()]:
        clusters[bid] = f"c{c}" if c is not None and c >= 0 else bid
    out = {
        **score(ls, clusters, set(dt["removed"]), distinct),
        "docs": dt["docs"],
        "seconds_by_stage": dt["seconds"],
        "pipeline_s": dt["total_s"],
        "process_wall_s": round(wall, 2),
        "records_per_s": round(len(ls.records) / dt["total_s"]) if dt["total_s"] else None,
        "config": dt["config"],
    }
    try:
        out["datatrove_version"] = subprocess.run(
            [str(python), "-c", "import importlib.metadata as m; print(m.version('datatrove'))"],
            capture_output=True,
            text=True,
        ).stdout.strip()
    except OSError:
        pass
    return out


def part_memory(tmp: Path, args: argparse.Namespace, missing: str | None) -> dict:
    if missing:
        return {"skipped": missing}
    runs = {}
    for n in args.sizes:
        path = tmp / f"mem-{n}.jsonl"
        log(f"memory: writing {n} records")
        write_memory_set(path, n, args.seed)
        input_mb = round(path.stat().st_size / 2**20, 1)
        log(f"memory: factory run dedup on {n} records")
        res = run_stage(tmp, f"mem{n}", path, args.workers, args.stage_config, pss=True, read=False)
        path.unlink()
        if "error" in res:
            runs[str(n)] = res
            break
        fig = stage_figures(res, args.workers)
        runs[str(n)] = {
            "records": fig["records"],
            "kept": fig["kept"],
            "rejected_by_reason": fig["rejected_by_reason"],
            "peak_rss_mb": res["tree"]["peak_rss_mb"],
            "peak_pss_mb": res["tree"]["peak_pss_mb"],
            "dedup_records_per_s": fig["records_per_s"],
            "process_wall_s": fig["process_wall_s"],
            "cpu_utilisation": fig["cpu_utilisation"],
            "input_mb": input_mb,
            "disk_mb": fig["disk_mb"],
            "timings": fig["timings"],
        }
        shutil.rmtree(res["run_dir"], ignore_errors=True)
    out: dict = {"runs": runs}
    ok = [str(n) for n in args.sizes if "peak_rss_mb" in runs.get(str(n), {})]
    if len(ok) == 2:
        (n0, n1), (r0, r1) = args.sizes, (runs[k] for k in ok)
        out["growth_bytes_per_record"] = round((r1["peak_rss_mb"] - r0["peak_rss_mb"]) * 2**20 / (n1 - n0), 1)
        out["growth_pss_bytes_per_record"] = round(
            (r1["peak_pss_mb"] - r0["peak_pss_mb"]) * 2**20 / (n1 - n0), 1
        )
        out["rss_ratio_big_over_small"] = round(r1["peak_rss_mb"] / r0["peak_rss_mb"], 2)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--n", type=int, default=20_000, help="records of the throughput set")
    parser.add_argument("--sizes", type=int, nargs=2, default=[100_000, 1_000_000])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--skip-memory", action="store_true")
    parser.add_argument("--only", default=",".join(PARTS), help="comma-separated parts: " + ",".join(PARTS))
    parser.add_argument(
        "--datatrove-python",
        default=str(DEFAULT_DT_PYTHON) if DEFAULT_DT_PYTHON.exists() else None,
        help="a Python with datatrove installed (default /tmp/dtvenv/bin/python when it exists)",
    )
    parser.add_argument(
        "--stage-config",
        type=json.loads,
        default=None,
        help="JSON of stages.dedup (default: the benchmark's)",
    )
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    args.stage_config = args.stage_config or STAGE_CONFIG
    parts = [p.strip() for p in args.only.split(",") if p.strip()]
    unknown = set(parts) - set(PARTS)
    if unknown:
        parser.error(f"unknown parts {sorted(unknown)}; choose from {','.join(PARTS)}")
    if args.skip_memory and "memory" in parts:
        parts.remove("memory")

    missing = stage_missing()
    out: dict = {
        "bench": "dedup",
        "workers": args.workers,
        "cpus": os.cpu_count(),
        "stage_ready": missing is None,
        "stage_config": args.stage_config,
    }
    if missing:
        log(missing)
    with tempfile.TemporaryDirectory(prefix="bench-dedup-") as tmpdir:
        tmp = Path(tmpdir)
        if "throughput" in parts:
            t = time.perf_counter()
            out["throughput"] = part_throughput(tmp, args, missing)
            out["throughput"]["seconds"] = round(time.perf_counter() - t, 1)
        if "quality" in parts or "datatrove" in parts:
            t = time.perf_counter()
            log("labelled set: building, finding the distinct records")
            ls, sets, distinct, stats = build_labelled(args)
            build_s = round(time.perf_counter() - t, 1)
            if "quality" in parts:
                out["quality"] = part_quality(tmp, args, missing, ls, sets, distinct, stats)
                out["quality"]["seconds"] = round(time.perf_counter() - t, 1)
                out["quality"]["set_build_s"] = build_s
            if "datatrove" in parts:
                t = time.perf_counter()
                out["datatrove"] = part_datatrove(tmp, args, ls, distinct)
                out["datatrove"]["seconds"] = round(time.perf_counter() - t, 1)
        if "memory" in parts:
            t = time.perf_counter()
            out["memory"] = part_memory(tmp, args, missing)
            out["memory"]["seconds"] = round(time.perf_counter() - t, 1)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
