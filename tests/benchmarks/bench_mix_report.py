"""Benchmark: the mix stage and `factory report` on a big run, against a plain pyarrow scan of the same shards.
One JSON line.

Records: the SFT files of ../shared/data/sft (general: alpaca, alpaca_gpt4, lima, GPTeacher roleplay and
toolformer, FastChat conversations; code: Code Alpaca, GPTeacher codegen) plus the GSM8K train split (math),
repeated with an edit per copy (so that ids differ) up to --n records, written as one Parquet file in the messages
format. `factory run mix` (ingest + mix; mix: 50/40/10 general/code/math, total n/2, 1% validation) runs as a
subprocess whose process tree is sampled for peak RSS; then `factory report RUN_DIR --json` likewise.

Figures:
- `mix_s`: the mix stage's duration (its manifest); `scan_mix_input_s`: `pq.read_table` of every shard mix read
  (all columns), in one process; `mix_vs_scan`: the ratio.
- `report_s`: the wall time of `factory report`; `scan_run_s`: `pq.read_table` of every Parquet file of the run
  (stage outputs, rejects, mix splits); `report_vs_scan` (target <= 3).
- Peak RSS of each process tree, and of a run with --n/10 records for the growth per record.

Usage: python tests/benchmarks/bench_mix_report.py [--n 1000000] [--workers 2] [--keep DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_clean import ROOT, SFT_FILES, run_tree, write_config  # noqa: E402
from shared_data import SHARED_DATA, read_json, read_jsonl  # noqa: E402

CODE = {"codealpaca", "gpteacher_codegen"}
MESSAGE = pa.struct([("role", pa.string()), ("content", pa.string())])


def base_records() -> list[tuple[str, str, str]]:
    """(source, user, assistant) of every SFT record and GSM8K train problem (first turn pair of chats)."""
    out = []
    for name, rel in SFT_FILES.items():
        for r in read_json(SHARED_DATA / "sft" / rel):
            if "conversations" in r:
                turns = [t["value"] for t in r["conversations"]]
                if len(turns) < 2:
                    continue
                user, answer = turns[0], turns[1]
            else:
                user = r["instruction"] + ("\n\n" + r["input"] if r.get("input") else "")
                answer = r.get("output") or r.get("response") or ""
            if user.strip() and answer.strip():
                out.append(("code" if name in CODE else "general", user, answer))
    for r in read_jsonl(SHARED_DATA / "benchmarks" / "gsm8k" / "train.jsonl"):
        out.append(("math", r["question"], r["answer"]))
    random.Random(0).shuffle(out)
    return out


def make_input(path: Path, n: int) -> None:
    base = base_records()
    writer = None
    for start in range(0, n, 100_000):
        stop = min(n, start + 100_000)
        sources, messages = [], []
        for i in range(start, stop):
            source, user, answer = base[i % len(base)]
            copy = i // len(base)
            if copy:
                user = f"{user} (variant {copy})"
            sources.append(source)
            messages.append([{"role": "user", "content": user}, {"role": "assistant", "content": answer}])
        table = pa.table(
            {"messages": pa.array(messages, pa.list_(MESSAGE)), "src": pa.array(sources, pa.string())}
        )
        writer = writer or pq.ParquetWriter(path, table.schema, compression="zstd")
        writer.write_table(table)
    writer.close()


def scan(paths: list[Path]) -> tuple[float, int]:
    start = time.perf_counter()
    rows = sum(pq.read_table(p).num_rows for p in paths)
    return time.perf_counter() - start, rows


def run(tmp: Path, n: int, workers: int) -> dict:
    data = tmp / f"in-{n}.parquet"
    if not data.exists():
        make_input(data, n)
    run_dir = tmp / f"run-{n}"
    inputs = []
    for source in ("general", "code", "math"):  # one input per source: a filtered view of the one file
        part = tmp / f"in-{n}-{source}.parquet"
        if not part.exists():
            table = pq.read_table(data)
            pq.write_table(table.filter(pa.compute.equal(table["src"], source)).drop(["src"]), part)
        inputs.append({"path": str(part), "format": "messages", "source": source})
    mix = {"total": n // 2, "weights": {"general": 0.5, "code": 0.4, "math": 0.1}, "validation": 0.01}
    cfg = write_config(tmp / f"cfg-{n}.yaml", run_dir, inputs, {"mix": mix})
    cmd = [sys.executable, "-m", "factory", "run", "mix", "-c", str(cfg), "--workers", str(workers)]
    tree = run_tree(cmd, ROOT, False)
    man = json.loads((run_dir / "mix" / "manifest.json").read_text())
    ing = json.loads((run_dir / "ingest" / "manifest.json").read_text())
    scan_in_s, scan_rows = scan(sorted((run_dir / "ingest").glob("part-*.parquet")))
    out = {
        "records": n,
        "ingest_s": ing["duration_s"],
        "mix_s": man["duration_s"],
        "mix_records_per_s": round(man["counts"]["in"] / man["duration_s"]),
        "scan_mix_input_s": round(scan_in_s, 3),
        "mix_vs_scan": round(man["duration_s"] / scan_in_s, 2),
        "run_peak_rss_mb": tree["peak_rss_mb"],
        "run_wall_s": tree["wall_s"],
        "achieved": man["mixture"]["achieved"],
        "split": man["split"],
        "copies": man["copies"],
        "scan_rows": scan_rows,
    }
    probe = subprocess.run(
        [sys.executable, "-m", "factory", "report", "--help"], cwd=ROOT, capture_output=True, text=True
    )
    if probe.returncode != 0:
        out["report"] = {"skipped": "factory report is not there yet"}
        return out
    report = run_tree([sys.executable, "-m", "factory", "report", str(run_dir), "--json"], ROOT, False)
    files = sorted(p for p in run_dir.rglob("*.parquet") if "_work" not in p.parts)
    scan_run_s, _ = scan(files)
    out["report"] = {
        "report_s": report["wall_s"],
        "report_peak_rss_mb": report["peak_rss_mb"],
        "scan_run_s": round(scan_run_s, 3),
        "files": len(files),
        "report_vs_scan": round(report["wall_s"] / scan_run_s, 2),
    }
    return out


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--n", type=int, default=1_000_000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--keep", type=Path, default=None, help="work in this folder and keep it")
    args = parser.parse_args()
    out: dict = {"bench": "mix_report", "workers": args.workers, "cpus": os.cpu_count()}
    ctx = None
    if args.keep:
        args.keep.mkdir(parents=True, exist_ok=True)
        tmp = args.keep
    else:
        ctx = tempfile.TemporaryDirectory(prefix="bench-mix-")
        tmp = Path(ctx.name)
    try:
        small = run(tmp, max(args.n // 10, 1000), args.workers)
        big = run(tmp, args.n, args.workers)
        out["small"], out["big"] = small, big
        grow = (
            (big["run_peak_rss_mb"] - small["run_peak_rss_mb"]) * 2**20 / (big["records"] - small["records"])
        )
        out["run_rss_bytes_per_record"] = round(grow, 1)
        if "report_vs_scan" in big.get("report", {}):
            out["targets"] = {"report_vs_scan<=3": big["report"]["report_vs_scan"] <= 3}
    finally:
        if ctx:
            ctx.cleanup()
    print(json.dumps(out))


if __name__ == "__main__":
    main()
