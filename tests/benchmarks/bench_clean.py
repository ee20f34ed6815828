"""Benchmark: ingest + clean on the shared SFT files. Prints one JSON line.

Measures, on this machine, in one run:
- `pipeline`: `factory run clean` on every SFT file of ../shared/data/sft (a subprocess, all cores): records/s of
  ingest, of clean, and of both together; the CPU utilisation of the process tree (1.0 = every core busy);
- `rules`: per clean rule group, records/s on one core, and the share of each SFT set each rule drops with
  examples (`clean_rule_shares.rule_shares`);
- `pii_speed`: clean records/s with PII scrubbing on (with the pre-screen, the default), without the
  pre-screen, and with PII off; `pii_eval`: recall/precision per entity type on ../shared/data/pii and on values
  planted in SFT records, look-alike survival (`pii_eval.evaluate`);
- `code_eval`: tree-sitter checks/s per language and catches/false rejects on ../shared/data/code
  (`code_eval.evaluate`);
- `memory`: peak RSS of the whole process tree (main + workers) for ingest + clean at two input sizes (default
  100k and 1M records, made by repeating the SFT files with an edit per copy so ids differ), and its ratio.

Usage: python tests/benchmarks/bench_clean.py [--sizes 100000 1000000] [--workers 2] [--skip-memory]
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

import psutil

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from shared_data import SHARED_DATA, read_json  # noqa: E402

SHARED = SHARED_DATA / "sft"


SFT_FILES = {
    "alpaca": "alpaca/alpaca_data_subset5000.json",
    "alpaca_gpt4": "alpaca_gpt4_sample/alpaca_en_demo.json",
    "lima": "lima/lima.json.gz",
    "codealpaca": "codealpaca/code_alpaca_2k.json",
    "gpteacher_codegen": "gpteacher/codegen-instruct.json.gz",
    "gpteacher_roleplay": "gpteacher/roleplay-simple-deduped-roleplay-instruct.json.gz",
    "gpteacher_toolformer": "gpteacher/toolformer-dedupe-only-dataset.json.gz",
    "sharegpt": "sharegpt/dummy_conversation.json",
}


def run_tree(cmd: list[str], cwd: Path, pss: bool) -> dict:
    """Run a command; sample the RSS (and PSS, which costs CPU to read) and CPU time of its whole process tree."""
    start = time.time()
    proc = psutil.Popen(cmd, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    peak, peak_pss, cpu = 0, 0, {}
    while proc.poll() is None:
        try:
            procs = [proc, *proc.children(recursive=True)]
            rss = pss_sum = 0
            for p in procs:
                try:
                    # pss: forked workers share pages that rss counts in each
                    mem = p.memory_full_info() if pss else p.memory_info()
                    rss += mem.rss
                    pss_sum += getattr(mem, "pss", mem.rss)
                    t = p.cpu_times()
                    cpu[p.pid] = t.user + t.system
                except (psutil.NoSuchProcess, psutil.AccessDenied):
                    pass
            peak, peak_pss = max(peak, rss), max(peak_pss, pss_sum)
        except psutil.NoSuchProcess:
            break
        time.sleep(0.1 if pss else 0.25)
    wall = time.time() - start
    stderr = proc.stderr.read().decode()
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed ({proc.returncode}): {stderr[-2000:]}")
    return {
        "wall_s": round(wall, 2),
        "peak_rss_mb": round(peak / 2**20, 1),
        "peak_pss_mb": round(peak_pss / 2**20, 1),
        "cpu_s": sum(cpu.values()),
    }


def write_config(path: Path, run_dir: Path, inputs: list[dict], stages: dict | None = None) -> Path:
    import yaml

    path.write_text(yaml.safe_dump({"run_dir": str(run_dir), "inputs": inputs, "stages": stages or {}}))
    return path


def manifest(run_dir: Path, stage: str) -> dict:
    return json.loads((run_dir / stage / "manifest.json").read_text())


def pipeline(
    tmp: Path, inputs: list[dict], workers: int, name: str, pss: bool = False, stages: dict | None = None
) -> dict:
    run_dir = tmp / name
    cfg = write_config(tmp / f"{name}.yaml", run_dir, inputs, stages)
    cmd = [sys.executable, "-m", "factory", "run", "clean", "-c", str(cfg), "--workers", str(workers)]
    tree = run_tree(cmd, ROOT, pss)
    ing, cln = manifest(run_dir, "ingest"), manifest(run_dir, "clean")
    n = ing["counts"]["in"]
    return {
        "records": n,
        "ingest_records_per_s": round(n / ing["duration_s"]),
        "clean_records_per_s": round(cln["counts"]["in"] / cln["duration_s"]),
        "ingest_clean_records_per_s": round(n / (ing["duration_s"] + cln["duration_s"])),
        "process_records_per_s": round(n / tree["wall_s"]),
        "cpu_utilisation": round(tree["cpu_s"] / (tree["wall_s"] * workers), 2),
        "peak_rss_mb": tree["peak_rss_mb"],
        "peak_pss_mb": tree["peak_pss_mb"],
        "clean_kept": cln["counts"]["out"],
        "clean_rejected_by_reason": cln["rejected_by_reason"],
        "pii": cln.get("pii"),
        "code": cln.get("code"),
    }


def make_big(path: Path, base: list[dict], n: int) -> None:
    """n alpaca records: the base records repeated, each copy edited so that its id differs."""
    with open(path, "w") as f:
        i = 0
        while i < n:
            for r in base:
                if i >= n:
                    break
                copy = i // len(base)
                rec = dict(r)
                if copy:
                    rec["instruction"] = f"{r['instruction']} (variant {copy})"
                f.write(json.dumps(rec) + "\n")
                i += 1


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", type=int, nargs=2, default=[100_000, 1_000_000])
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 2)
    parser.add_argument("--skip-memory", action="store_true")
    args = parser.parse_args()

    from clean_rule_shares import load_file, rule_shares
    from code_eval import evaluate as code_evaluate
    from pii_eval import evaluate as pii_evaluate

    out: dict = {"bench": "clean", "workers": args.workers, "cpus": os.cpu_count()}
    with tempfile.TemporaryDirectory(prefix="bench-clean-") as tmpdir:
        tmp = Path(tmpdir)
        inputs, alpaca_like = [], []
        for name, rel in SFT_FILES.items():
            rows = read_json(SHARED / rel)
            path = tmp / f"{name}.jsonl"
            with open(path, "w") as f:
                for r in rows:
                    f.write(json.dumps(r) + "\n")
            inputs.append(
                {
                    "path": str(path),
                    "source": name,
                    "fields": {"output": "response"} if "gpteacher" in name else {},
                }
            )
            if "conversations" not in rows[0]:
                alpaca_like += [
                    {
                        "instruction": r["instruction"],
                        "input": r.get("input", ""),
                        "output": r.get("output", r.get("response", "")),
                    }
                    for r in rows
                ]
        for i in inputs:
            if not i["fields"]:
                del i["fields"]
        out["pipeline"] = pipeline(tmp, inputs, args.workers, "sft")
        out["pipeline"]["target_records_per_s"] = 10_000
        # The same run with PII scrubbing: with the pre-screen (the default), without it, and PII off.
        variants = {
            "pii_off": {"clean": {"pii": {"enabled": False}}},
            "pii_no_prescreen": {"clean": {"pii": {"prescreen": False}}},
        }
        # PII is scanned where records enter the run directory (ingest) and again in clean only where needed, so
        # the comparison is of ingest + clean: with the pre-screen (the default), without it, and PII off.
        speed_keys = ("ingest_records_per_s", "clean_records_per_s", "ingest_clean_records_per_s")
        out["pii_speed"] = {"pii_on_prescreen": {k: out["pipeline"][k] for k in speed_keys}}
        out["pii_speed"]["target_clean_records_per_s"] = 2_000
        for name, stages in variants.items():
            res = pipeline(tmp, inputs, args.workers, name, stages=stages)
            out["pii_speed"][name] = {k: res[k] for k in speed_keys}
        out["pii_eval"] = pii_evaluate(SHARED_DATA)
        out["code_eval"] = code_evaluate(SHARED_DATA / "code")
        out["rules"] = {name: rule_shares(load_file(SHARED / rel, name)) for name, rel in SFT_FILES.items()}

        if not args.skip_memory:
            mem = {}
            for n in args.sizes:
                path = tmp / f"big-{n}.jsonl"
                make_big(path, alpaca_like, n)
                res = pipeline(
                    tmp, [{"path": str(path), "format": "alpaca"}], args.workers, f"big{n}", pss=True
                )
                mem[str(n)] = {
                    k: res[k]
                    for k in (
                        "records",
                        "peak_rss_mb",
                        "peak_pss_mb",
                        "ingest_clean_records_per_s",
                        "cpu_utilisation",
                    )
                }
                path.unlink()
            small, big = (mem[str(n)]["peak_rss_mb"] for n in args.sizes)
            out["memory"] = {
                "runs": mem,
                "rss_ratio_big_over_small": round(big / small, 2),
                "target_peak_rss_mb": 1024,
            }
    print(json.dumps(out))


if __name__ == "__main__":
    main()
