"""Sandbox throughput on HumanEval's canonical solutions: programs per second, and the cost per program against a
bare `subprocess.run` of the same code. Prints one JSON line.

    python tests/benchmarks/bench_eval.py [--repeat 3] [--workers N]

Checks: pass@1 = 1.0 on the 164 reference solutions and 0.0 on empty bodies (every check() must fail). Timings:
- `sandbox_programs_per_s`: `run_many` over the 164 references with all cores (what `factory eval` does);
- `bare_programs_per_s`: the same programs through `subprocess.run([python, "-c", src])` in a thread pool of the
  same size (no limits, no namespaces, no temp folder, the caller's environment);
- `overhead_ms_per_program`: one at a time, sandbox minus bare, median over the programs (the sandbox's own cost:
  the launcher, namespaces, rlimits, the temp folder, reading the outputs back).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from evals import tasks as T  # noqa: E402
from evals.sandbox import Limits, isolation, run_many, run_program  # noqa: E402
from stages.decontam.benchmarks import locate, read_rows  # noqa: E402
from stages.decontam.config import BenchmarkSpec  # noqa: E402


def bare(src: str) -> bool:
    return subprocess.run([sys.executable, "-c", src], capture_output=True, timeout=30).returncode == 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3, help="timed passes (best is kept)")
    parser.add_argument("--workers", type=int, default=os.cpu_count())
    args = parser.parse_args()

    tasks = T.load_tasks("humaneval")
    solutions = {
        r["task_id"]: r["canonical_solution"] for r in read_rows(locate(BenchmarkSpec(name="humaneval")))
    }
    programs = [T.program(t, solutions[t.id]) for t in tasks]
    empty = [T.program(t, "") for t in tasks]
    limits = Limits()

    wrong = run_many(empty, limits, args.workers)
    best_sandbox = best_bare = float("inf")
    for _ in range(args.repeat):
        start = time.perf_counter()
        outcomes = run_many(programs, limits, args.workers)
        best_sandbox = min(best_sandbox, time.perf_counter() - start)
        start = time.perf_counter()
        with ThreadPoolExecutor(args.workers) as pool:
            bare_ok = list(pool.map(bare, programs))
        best_bare = min(best_bare, time.perf_counter() - start)

    one_sandbox, one_bare = [], []
    for src in programs[:40]:
        start = time.perf_counter()
        run_program(src, limits)
        one_sandbox.append(time.perf_counter() - start)
        start = time.perf_counter()
        bare(src)
        one_bare.append(time.perf_counter() - start)

    passed = sum(o.status == "passed" for o in outcomes)
    failures = [(t.id, o.reason) for t, o in zip(tasks, outcomes, strict=True) if o.status != "passed"]
    result = {
        "bench": "eval_sandbox",
        "programs": len(programs),
        "workers": args.workers,
        "cpus": os.cpu_count(),
        "isolation": isolation(),
        "pass@1_references": passed / len(programs),
        "pass@1_empty_bodies": sum(o.status == "passed" for o in wrong) / len(empty),
        "bare_all_passed": all(bare_ok),
        "sandbox_s": round(best_sandbox, 3),
        "sandbox_programs_per_s": round(len(programs) / best_sandbox, 1),
        "bare_s": round(best_bare, 3),
        "bare_programs_per_s": round(len(programs) / best_bare, 1),
        "sandbox_vs_bare": round(best_sandbox / best_bare, 2),
        "one_program_ms": {
            "sandbox_median": round(1000 * statistics.median(one_sandbox), 1),
            "bare_median": round(1000 * statistics.median(one_bare), 1),
        },
        "overhead_ms_per_program": round(
            1000 * (statistics.median(one_sandbox) - statistics.median(one_bare)), 1
        ),
        "failures": failures[:5],
        "targets": {
            "references_all_pass": passed == len(programs),
            "empty_all_fail": not any(o.status == "passed" for o in wrong),
        },
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
