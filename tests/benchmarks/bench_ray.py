"""Benchmark: the same run on the local executor and on Ray (a local cluster on this machine). One JSON line.

Records: the SFT files of ../shared/data/sft (~23.7k), repeated with an edit per copy up to --n. Each executor
runs `factory run clean dedup -c CFG --workers N` as a subprocess (ingest included, PII scrubbing on), and the
figures are each stage's records/s from its manifest and the whole process's wall time. `ray_overhead_s`: a run
of 10 records on each executor, Ray's minus local's wall time (starting the local cluster and its workers).
`same_outputs`: the kept ids and the reject reasons of every stage are equal on both.

Usage: python tests/benchmarks/bench_ray.py [--n 100000] [--workers 2]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pyarrow.parquet as pq

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_clean import ROOT, SFT_FILES, make_big, write_config  # noqa: E402
from shared_data import SHARED_DATA, read_json  # noqa: E402

STAGES = ["clean", "dedup"]


def base_records() -> list[dict]:
    out = []
    for rel in SFT_FILES.values():
        for r in read_json(SHARED_DATA / "sft" / rel):
            if "instruction" in r:
                out.append(
                    {
                        "instruction": r["instruction"],
                        "input": r.get("input", ""),
                        "output": r.get("output") or r.get("response", ""),
                    }
                )
    return out


def run(tmp: Path, data: Path, executor: str, workers: int, name: str) -> dict:
    run_dir = tmp / name
    cfg = write_config(
        tmp / f"{name}.yaml", run_dir, [{"path": str(data), "format": "alpaca", "source": "sft"}]
    )
    cmd = [sys.executable, "-m", "factory", "run", *STAGES, "-c", str(cfg), "--workers", str(workers)]
    cmd += ["--executor", executor]
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0"}
    start = time.perf_counter()
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed: {proc.stderr[-2000:]}")
    out = {"wall_s": round(wall, 2), "run_dir": run_dir}
    for stage in ["ingest", *STAGES]:
        m = json.loads((run_dir / stage / "manifest.json").read_text())
        out[stage] = {
            "records_per_s": round(m["counts"]["in"] / m["duration_s"]),
            "duration_s": m["duration_s"],
        }
    return out


def outcome(run_dir: Path) -> dict:
    out = {}
    for stage in ["ingest", *STAGES]:
        kept = sorted(
            i
            for p in sorted((run_dir / stage).glob("part-*.parquet"))
            for i in pq.read_table(p, columns=["id"])["id"].to_pylist()
        )
        rej = sorted(
            (o, r)
            for p in sorted((run_dir / stage / "rejects").glob("part-*.parquet"))
            for o, r in zip(*pq.read_table(p, columns=["origin", "reason"]).to_pydict().values(), strict=True)
        )
        out[stage] = (kept, rej)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=100_000)
    ap.add_argument("--workers", type=int, default=2)
    args = ap.parse_args()
    result: dict = {"bench": "ray", "records": args.n, "workers": args.workers, "cpus": os.cpu_count()}
    with tempfile.TemporaryDirectory(prefix="bench-ray-") as d:
        tmp = Path(d)
        base = base_records()
        data = tmp / "in.jsonl"
        make_big(data, base, args.n)
        tiny = tmp / "tiny.jsonl"
        make_big(tiny, base, 10)
        local = run(tmp, data, "local", args.workers, "local")
        on_ray = run(tmp, data, "ray", args.workers, "ray")
        small_local = run(tmp, tiny, "local", args.workers, "tiny-local")
        small_ray = run(tmp, tiny, "ray", args.workers, "tiny-ray")
        result["same_outputs"] = outcome(local["run_dir"]) == outcome(on_ray["run_dir"])
        for name, r in (("local", local), ("ray", on_ray)):
            r.pop("run_dir")
            result[name] = r
        result["ray_vs_local"] = {
            stage: round(on_ray[stage]["records_per_s"] / local[stage]["records_per_s"], 2)
            for stage in ["ingest", *STAGES]
        }
        result["ray_overhead_s"] = round(small_ray["wall_s"] - small_local["wall_s"], 2)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
