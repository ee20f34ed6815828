"""`factory eval`: generate (or read) answers, score them, and write OUTPUT_DIR/results.json and a table.

Steps: load the tasks of each benchmark (`evals.tasks`); get one reply per sample, from the model through
`evals.generate` or from a `--completions` file; turn replies into what is scored (completion, number, letter);
run code in the sandbox (`evals.sandbox`, one process per program); score (`evals.scores`); attach the training
run's decontam findings; write.

Output in OUTPUT_DIR:
- `results.json`: per benchmark the metric (pass@k with n samples per task, or accuracy) with a 95% bootstrap
  interval, the score without the items decontam found in the training data (when it found any), generation
  failures and warnings; per task its outcomes (passed or not, the sandbox's reason); the config, the model and
  adapter fingerprints, the sandbox's isolation and limits, the generation counters.
- `completions.jsonl`: human-eval's samples format (`task_id`, `completion`) plus the raw `reply`, so the same
  answers can be re-scored with `--completions`.
When the eval belongs to a pipeline run (`run_dir`, or found from the adapter's train_config.json), a summary
goes to RUN_DIR/evals/<name>.json as well, which `factory report RUN_DIR` shows.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections import defaultdict
from datetime import UTC, datetime
from pathlib import Path

import orjson
from rich.console import Console
from rich.table import Table

from evals import tasks as T
from evals.config import CODE_BENCHMARKS, EvalConfig
from evals.scores import accuracy, summarise
from factory import store
from factory.errors import UserError
from factory.log import progress_bar
from factory.shards import RunPath, jsonl_objects, read_json, write_json, write_text

log = logging.getLogger("factory")


def evaluate(cfg: EvalConfig, completions: str | None = None, console: Console | None = None) -> dict:
    """Run the eval the config describes; returns what results.json holds."""
    started = time.perf_counter()
    out = Path(cfg.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    run_dir = training_run(cfg)
    adapter_info: dict | None = None
    generation: dict | None = None
    if completions:
        samples = read_completions(Path(completions))
        names = [b for b in T.BENCHMARK_ORDER if b in samples]
        tasks = {name: _tasks_for(cfg, name, set(samples[name])) for name in names}
        model_info = {"name": cfg.model, "backend": cfg.backend, "completions": str(completions)}
    else:
        tasks = {
            name: T.load_tasks(
                name,
                cfg.benchmark_paths.get(name),
                cfg.limit,
                cfg.prompt_style,
                cfg.mmlu_shots,
                cfg.gsm8k_shots,
            )
            for name in cfg.benchmarks
        }
        samples, generation, model_info, adapter_info = _generate(cfg, tasks, console)
        _write_completions(out / "completions.jsonl", tasks, samples)
    from evals.sandbox import Limits, isolation

    limits = Limits(
        timeout_s=cfg.sandbox.timeout_s,
        cpu_s=cfg.sandbox.cpu_s,
        memory_mb=cfg.sandbox.memory_mb,
        file_size_mb=cfg.sandbox.file_size_mb,
    )
    contamination = decontam_findings(run_dir)
    benchmarks = {}
    for name, items in tasks.items():
        benchmarks[name] = _score(name, items, samples[name], cfg, limits, console)
        _attach_contamination(benchmarks[name], name, contamination, run_dir, cfg)
    results = {
        "model": model_info,
        "adapter": adapter_info,
        "benchmarks": benchmarks,
        "sandbox": {"isolation": isolation(), "limits": limits.__dict__}
        if any(n in CODE_BENCHMARKS for n in tasks)
        else None,
        "generation": generation,
        "run_dir": str(run_dir) if run_dir else None,
        "config": cfg.model_dump(mode="json"),
        "finished_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "duration_s": round(time.perf_counter() - started, 3),
    }
    write_json(results, out / "results.json")
    if run_dir is not None:
        _register(run_dir, out, results)
    print_table(results, out, console)
    return results


# ---- getting replies -------------------------------------------------------------------------------------------


def _generate(cfg: EvalConfig, tasks: dict[str, list[T.Task]], console: Console | None):
    from evals.generate import fingerprint, generate, make_client, resolve_model

    model_dir, adapter_dir = resolve_model(cfg)
    model_info: dict = {"name": cfg.model, "backend": cfg.backend}
    adapter_info = None
    if model_dir is not None:
        model_info |= {"path": str(model_dir), "fingerprint": fingerprint(model_dir)}
    if adapter_dir is not None:
        adapter_info = {"path": str(adapter_dir), "fingerprint": fingerprint(adapter_dir)}
    key = ":".join(
        [cfg.backend, model_info.get("fingerprint", cfg.model)]
        + ([adapter_info["fingerprint"]] if adapter_info else [])
        + [cfg.chat_template]
    )
    client = make_client(cfg, model_dir, adapter_dir, key)
    samples: dict[str, dict[str, list[dict]]] = {}
    try:
        with progress_bar(console) as bar:
            for name, items in tasks.items():
                job = bar.add_task(f"generate {name}", total=len(items))
                results = generate(client, items, cfg, lambda done, job=job: bar.update(job, completed=done))
                samples[name] = {
                    task.id: [
                        {"reply": text, "finish_reason": (r.finish_reasons or [None] * len(r.texts))[j]}
                        for j, text in enumerate(r.texts)
                    ]
                    or [{"reply": None, "error": r.error, "detail": (r.detail or "")[:500]}]
                    * (cfg.n_samples if name in CODE_BENCHMARKS else 1)  # each asked-for sample failed
                    for task, r in zip(items, results, strict=True)
                }
        stats = client.stats()
    finally:
        client.close()
    return samples, stats, model_info, adapter_info


def read_completions(path: Path) -> dict[str, dict[str, list[dict]]]:
    """human-eval's samples format (JSONL of task_id + completion) -> {benchmark: {task_id: [{completion}]}}.
    For gsm8k and mmlu the completion is the model's reply; it is read as a number or a letter."""
    if not path.is_file():
        raise UserError(f"--completions: {path} does not exist")
    out: dict[str, dict[str, list[dict]]] = defaultdict(lambda: defaultdict(list))
    for n, row in jsonl_objects(path):
        if not isinstance(row.get("task_id"), str):
            raise UserError(f"{path}:{n}: needs a string `task_id` (human-eval's samples format)")
        completion = row.get("completion")
        if not isinstance(completion, str):
            raise UserError(f"{path}:{n}: needs a string `completion`")
        task_id = T.normalise_id(row["task_id"])
        name = T.benchmark_of(task_id)
        if name is None:
            raise UserError(
                f"{path}:{n}: task_id {row['task_id']!r} is not a humaneval, mbpp, gsm8k or mmlu id"
            )
        out[name][task_id].append({"completion": completion})
    if not out:
        raise UserError(f"--completions: {path} holds no completions")
    return out


def _tasks_for(cfg: EvalConfig, name: str, wanted: set[str]) -> list[T.Task]:
    items = [t for t in T.load_tasks(name, cfg.benchmark_paths.get(name)) if t.id in wanted]
    unknown = wanted - {t.id for t in items}
    if unknown:
        raise UserError(
            f"--completions: {name} has no task {sorted(unknown)[0]!r} ({len(unknown)} unknown ids)"
        )
    return items


def _write_completions(path: Path, tasks: dict[str, list[T.Task]], samples: dict) -> None:
    lines = []
    for name, items in tasks.items():
        for task in items:
            for s in samples[name][task.id]:
                if s.get("reply") is None:
                    continue
                completion = T.extract(task, s["reply"]) if name in CODE_BENCHMARKS else s["reply"]
                lines.append(
                    orjson.dumps({"task_id": task.id, "completion": completion, "reply": s["reply"]})
                )
    write_text(b"\n".join(lines).decode() + ("\n" if lines else ""), path)


# ---- scoring ---------------------------------------------------------------------------------------------------


def _score(
    name: str, items: list[T.Task], samples: dict[str, list[dict]], cfg: EvalConfig, limits, console
) -> dict:
    failures = sum(
        1 for t in items for s in samples[t.id] if s.get("reply") is None and "completion" not in s
    )
    per_task: list[dict] = []
    if name in CODE_BENCHMARKS:
        from evals.sandbox import run_many

        programs, owners = [], []
        for i, task in enumerate(items):
            for s in samples[task.id]:
                if "completion" in s:
                    completion = s["completion"]
                elif s.get("reply") is not None:
                    completion = T.extract(task, s["reply"])
                else:
                    continue
                programs.append(T.program(task, completion))
                owners.append(i)
        outcomes: dict[int, list] = defaultdict(list)
        with progress_bar(console) as bar:
            job = bar.add_task(f"run {name}", total=len(programs))
            results = run_many(programs, limits, cfg.sandbox.workers, on_done=lambda i, o: bar.advance(job))
        for owner, outcome in zip(owners, results, strict=True):
            outcomes[owner].append(outcome)
        counts = []
        for i, task in enumerate(items):
            runs = outcomes.get(i, [])
            n = len(samples[task.id])  # a failed request counts as a wrong sample
            c = sum(o.status == "passed" for o in runs)
            counts.append((n, c))
            per_task.append(
                {
                    "task_id": task.id,
                    "n": n,
                    "passed": c,
                    "outcomes": [{"status": o.status, "reason": o.reason} for o in runs],
                }
            )
        scores = summarise(counts, cfg.k, cfg.seed)
        metric = "pass@k"
    else:
        correct = []
        for task in items:
            s = samples[task.id][0]
            reply = s.get("completion", s.get("reply"))
            got = (T.gsm8k_extract(reply) if name == "gsm8k" else T.mmlu_extract(reply)) if reply else None
            ok = got is not None and got == task.answer
            correct.append(ok)
            per_task.append({"task_id": task.id, "answer": task.answer, "got": got, "correct": ok})
        scores = {"accuracy": accuracy(correct, cfg.seed)}
        metric = "accuracy"
    result = {"metric": metric, "tasks": len(items), "scores": scores, "generation_failures": failures}
    result["warnings"] = (
        [f"{failures} sample(s) got no answer from the model (counted as wrong); see results.json generation"]
        if failures
        else []
    )
    result["per_task"] = per_task
    return result


# ---- the training run and its decontam findings -----------------------------------------------------------------


def training_run(cfg: EvalConfig) -> RunPath | None:
    """The pipeline run whose data trained the model: `run_dir`, else the adapter's train_config.json `data`
    when that is RUN_DIR/mix (or inside it)."""
    if cfg.run_dir:
        run = store.location(cfg.run_dir)
        if not (run.is_dir() if isinstance(run, Path) else run.glob("*")):
            raise UserError(f"run_dir: {run} is not a directory")
        return run
    if not cfg.adapter:
        return None
    train_cfg = read_json(Path(cfg.adapter) / "train_config.json") or {}
    data = train_cfg.get("data")
    if not isinstance(data, str):
        return None
    where = store.location(data)
    if isinstance(where, store.StorePath):  # RUN_DIR/mix on a store
        run = where.parent if where.name == "mix" else None
        return run if run is not None and (run / "mix" / "manifest.json").exists() else None
    for folder in [where, *where.parents]:
        if folder.name == "mix" and (folder.parent / "mix" / "manifest.json").is_file():
            return folder.parent
    return None


def decontam_findings(run_dir: RunPath | None) -> dict | None:
    """decontam's per-benchmark figures of the run (None: no run, or no finished decontam stage)."""
    if run_dir is None:
        return None
    manifest = read_json(run_dir / "decontam" / "manifest.json")
    if not manifest or manifest.get("status") != "done":
        return None
    return (manifest.get("decontam") or {}).get("benchmarks") or {}


def _attach_contamination(
    result: dict, name: str, findings: dict | None, run_dir: RunPath | None, cfg
) -> None:
    if run_dir is None:
        return
    if findings is None:
        result["contamination"] = None
        result["warnings"].append(f"the training run {run_dir} has no finished decontam stage: not checked")
        return
    found = findings.get(name)
    if found is None:
        result["contamination"] = None
        result["warnings"].append(f"decontam in {run_dir} did not check {name}")
        return
    hit = set((found.get("by_item") or {}).keys())
    result["contamination"] = {
        "items_hit": found.get("items_hit", len(hit)),
        "records_removed": found.get("records_removed"),
        "items": sorted(hit),
    }
    if not hit:
        return
    result["warnings"].append(
        f"decontam found {len(hit)} {name} item(s) in the training data ({found.get('records_removed')} "
        f"record(s) removed before training); see `factory audit {run_dir} --benchmark {name}`"
    )
    clean = [t for t in result["per_task"] if t["task_id"] not in hit]
    for t in result["per_task"]:
        t["hit_in_training_data"] = t["task_id"] in hit
    if len(clean) < len(result["per_task"]):
        if result["metric"] == "accuracy":
            result["scores_without_hit_items"] = {
                "accuracy": accuracy([t["correct"] for t in clean], cfg.seed)
            }
        else:
            result["scores_without_hit_items"] = summarise(
                [(t["n"], t["passed"]) for t in clean], cfg.k, cfg.seed
            )


def _register(run_dir: RunPath, out: Path, results: dict) -> None:
    name = f"{out.name}-{hashlib.blake2b(str(out.resolve()).encode(), digest_size=4).hexdigest()}"
    summary = {
        "results": str(out.resolve() / "results.json"),
        "model": results["model"],
        "adapter": results["adapter"],
        "finished_at": results["finished_at"],
        "benchmarks": {
            n: {k: v for k, v in b.items() if k != "per_task"} for n, b in results["benchmarks"].items()
        },
    }
    write_json(summary, run_dir / "evals" / f"{name}.json")


# ---- printing --------------------------------------------------------------------------------------------------


def headline(bench: dict) -> list[tuple[str, dict]]:
    """(label, {score, ci95}) of each score of a benchmark, in order."""
    return [(k, v) for k, v in bench["scores"].items() if isinstance(v, dict)]


def print_table(results: dict, out: Path, console: Console | None) -> None:
    console = console or Console(stderr=True)
    table = Table(
        title=f"factory eval: {results['model']['name']}" + (" + adapter" if results["adapter"] else "")
    )
    for column in ("benchmark", "metric", "score", "95% interval", "tasks", "note"):
        table.add_column(column, justify="right" if column in ("score", "tasks") else "left")
    for name, bench in results["benchmarks"].items():
        for label, value in headline(bench):
            low, high = value["ci95"]
            note = (
                f"{bench['contamination']['items_hit']} of its items were in the training data"
                if (bench.get("contamination") or {}).get("items_hit")
                else ""
            )
            table.add_row(
                name, label, f"{value['score']:.3f}", f"{low:.3f}-{high:.3f}", f"{value['tasks']:,}", note
            )
        if bench["scores"].get("skipped_k"):
            table.add_row(name, "", "", "", "", f"pass@{bench['scores']['skipped_k']} skipped: n_samples < k")
    console.print(table)
    iso = (results.get("sandbox") or {}).get("isolation") or {}
    if iso and not str(iso.get("network", "")).startswith("namespace"):
        console.print(f"[yellow]warning:[/yellow] programs ran with the network reachable ({iso['network']})")
    for name, bench in results["benchmarks"].items():
        for warning in bench["warnings"]:
            console.print(f"[yellow]warning:[/yellow] {name}: {warning}", highlight=False)
    console.print(f"results: {out / 'results.json'}", highlight=False)
