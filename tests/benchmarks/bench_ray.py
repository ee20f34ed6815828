"""Benchmark: the same run on the local executor and on Ray (a local cluster on this machine). One JSON line.

Records: the SFT files of ../shared/data/sft (~23.7k), repeated with an edit per copy up to --n. Each executor
runs `factory run clean dedup -c CFG --workers N` as a subprocess (ingest included, PII scrubbing on), and the
figures are each stage's records/s from its manifest and the whole process's wall time. `ray_overhead_s`: a run
of 10 records on each executor, Ray's minus local's wall time (starting the local cluster and its workers).
`same_outputs`: the kept ids and the reject reasons of every stage are equal on both.

`--store`: also the Ray run with its run directory on an object store (moto's S3 server on 127.0.0.1, in this
process: a Python server, so its figures bound the cost of the store code paths from above rather than measure
S3), `ray_store` and `store_vs_disk` (records/s on the store over records/s on disk, both on Ray).

Usage: python tests/benchmarks/bench_ray.py [--n 100000] [--workers 2] [--store]
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

import pyarrow.fs as pafs

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_clean import ROOT, SFT_FILES, make_big, write_config  # noqa: E402
from shared_data import SHARED_DATA, read_json  # noqa: E402

from factory import shards, store  # noqa: E402

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


def run(tmp: Path, data: Path, executor: str, workers: int, name: str, run_dir: str | None = None) -> dict:
    raw = run_dir or str(tmp / name)
    run_dir = store.location(raw)
    cfg = write_config(tmp / f"{name}.yaml", raw, [{"path": str(data), "format": "alpaca", "source": "sft"}])
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
        m = shards.read_json(run_dir / stage / "manifest.json")
        out[stage] = {
            "records_per_s": round(m["counts"]["in"] / m["duration_s"]),
            "duration_s": m["duration_s"],
        }
    return out


def outcome(run_dir) -> dict:
    out = {}
    for stage in ["ingest", *STAGES]:
        kept = sorted(
            i
            for p in shards.list_shards(run_dir / stage)
            for i in shards.read_table(p, columns=["id"])["id"].to_pylist()
        )
        rej = sorted(
            (o, r)
            for p in shards.list_shards(run_dir / stage / "rejects")
            for o, r in zip(*shards.read_table(p, ["origin", "reason"]).to_pydict().values(), strict=True)
        )
        out[stage] = (kept, rej)
    return out


@contextmanager
def s3_bucket():
    """A bucket on moto's S3 server started in this process (the run's subprocesses and Ray workers reach it on
    127.0.0.1); yields the run directory's URI."""
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    for key, value in (
        ("AWS_ACCESS_KEY_ID", "bench"),
        ("AWS_SECRET_ACCESS_KEY", "bench"),
        ("AWS_DEFAULT_REGION", "us-east-1"),
    ):
        os.environ[key] = value
    endpoint = f"{host}:{port}"
    pafs.S3FileSystem(endpoint_override=endpoint, scheme="http", allow_bucket_creation=True).create_dir(
        "bench"
    )
    try:
        yield f"s3://bench/run?endpoint_override={endpoint}&scheme=http"
    finally:
        server.stop()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=100_000)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument(
        "--store", action="store_true", help="also Ray with the run directory on moto's S3 server"
    )
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
        ray_outcome = outcome(on_ray["run_dir"])
        result["same_outputs"] = outcome(local["run_dir"]) == ray_outcome
        for name, r in (("local", local), ("ray", on_ray)):
            r.pop("run_dir")
            result[name] = r
        result["ray_vs_local"] = {
            stage: round(on_ray[stage]["records_per_s"] / local[stage]["records_per_s"], 2)
            for stage in ["ingest", *STAGES]
        }
        result["ray_overhead_s"] = round(small_ray["wall_s"] - small_local["wall_s"], 2)
        if args.store:
            with s3_bucket() as uri:
                on_store = run(tmp, data, "ray", args.workers, "ray-store", uri)
                result["same_outputs_store"] = outcome(on_store.pop("run_dir")) == ray_outcome
                result["ray_store"] = on_store
                result["store_vs_disk"] = {
                    stage: round(on_store[stage]["records_per_s"] / on_ray[stage]["records_per_s"], 2)
                    for stage in ["ingest", *STAGES]
                }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
