"""Runs stages in order over a run directory (a local folder, or a prefix on an object store: `factory.store`):
skip what is up to date, resume what was cut off, map the rest.

For each stage the runner
1. computes the stage's config hash and input fingerprint (for `ingest`: the input files' paths, sizes and
   modification times; for later stages: the digests of the upstream shards);
2. skips the stage when its manifest is `done` with the same hashes ("skipped, up to date"), resumes it when the
   manifest is `running` with the same hashes (done shards, those with a marker in `_shards/`, are never redone),
   and otherwise (or under `--force`) empties the stage folder and starts it afresh;
3. calls the stage's `prepare(ctx)` once when it has one (a global pass over all input shards, e.g. dedup's
   clustering; see `factory.stage`), then maps every undone shard through `run_shard` on the executor; a worker
   writes the shard's outputs, its rejects and, last, its marker, each atomically, so a shard without a marker is
   simply redone;
4. merges the markers into `manifest.json` (with what `prepare` returned, and the merged counters passed through
   the stage's `finish(counters) -> dict` when it has one), logs the funnel line and removes the stage's `_work`
   folder.

Shard layout per stage folder: `part-NNNNN.parquet`, `rejects/part-NNNNN.parquet`, `_shards/part-NNNNN.json`.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson
from rich.console import Console
from rich.progress import Progress, TextColumn

from factory import ingest, shards, store
from factory.config import Section, config_hash
from factory.errors import StrictError, UserError
from factory.executors.local import LocalExecutor
from factory.log import progress_bar
from factory.shards import RunPath
from factory.stage import GENERATED, InputShard, PrepareContext, ShardContext, Stage, merge_counters

log = logging.getLogger("factory")

MARKERS = "_shards"
REJECTS = "rejects"
WORK = "_work"


@dataclass
class ShardTask:
    """One shard of work: either an ingest chunk or an input shard of a stage."""

    stage: str
    stage_dir: RunPath
    name: str
    chunk: ingest.Chunk | None = None
    input_path: RunPath | None = None
    stage_cls: type | None = None
    config: dict | None = None


_STAGE_CACHE: dict[tuple[str, bytes], Stage] = {}


def _stage_instance(task: ShardTask) -> Stage:
    """One Stage object per worker process and config: stages may build costly things once (models, patterns)."""
    key = (task.stage, orjson.dumps(task.config, option=orjson.OPT_SORT_KEYS))
    if key not in _STAGE_CACHE:
        cls = task.stage_cls
        _STAGE_CACHE[key] = cls(cls.Config.model_validate(task.config))
    return _STAGE_CACHE[key]


def run_shard(task: ShardTask) -> dict:
    """Process one shard and write its outputs, rejects and marker; returns the marker."""
    stage_dir = task.stage_dir
    if task.chunk is not None:
        result = ingest.convert_chunk(task.chunk)
        n_in = len(task.chunk.positions) + len(task.chunk.faults)
    else:
        table = shards.read_table(task.input_path)
        n_in = table.num_rows
        ctx = ShardContext(task.name, stage_dir / WORK)
        result = _stage_instance(task).process(table, ctx)
    n_out, n_rej = result.kept.num_rows, result.rejected.num_rows
    if n_in != n_out + n_rej:
        raise RuntimeError(f"{task.stage}/{task.name}: {n_in} in != {n_out} out + {n_rej} rejected")
    if result.outputs is None:
        digest = shards.write_table(result.kept, stage_dir / task.name)
    else:
        digests = []
        for folder, table in sorted(result.outputs.items()):
            if table.num_rows:
                digests.append(f"{folder}:{shards.write_table(table, stage_dir / folder / task.name)}")
        digest = hashlib.blake2b("\n".join(digests).encode(), digest_size=16).hexdigest()
    shards.write_table(result.rejected, stage_dir / REJECTS / task.name)
    by_reason: dict[str, int] = {}
    for reason in result.rejected.column("reason").to_pylist():
        by_reason[reason] = by_reason.get(reason, 0) + 1
    marker = {
        "name": task.name,
        "rows": n_out,
        "in": n_in,
        "rejected": n_rej,
        "rejected_by_reason": by_reason,
        "digest": digest,
        "counters": result.counters,
    }
    shards.write_json(marker, stage_dir / MARKERS / (task.name + ".json"))
    return marker


# ---- the run ---------------------------------------------------------------------------------------------------


@dataclass
class RunOptions:
    force: frozenset[str] = frozenset()
    strict: bool = False
    workers: int = 1
    console: Console | None = None
    redact: ingest.Redactor | None = None  # scrubs records and raw reject text as ingest writes them
    executor: str = "local"  # or "ray"
    ray_address: str | None = None  # a running cluster; None with executor ray: a local one
    after_stage: Callable[[], None] | None = (
        None  # called when each stage is done or skipped (the CLI's log sync)
    )


def prepare_run_dir(path: str | RunPath) -> RunPath:
    """Create the run directory (a local folder, or a prefix on an object store that must be writable); a path
    that cannot be one is a user error."""
    run_dir = store.location(path)
    if isinstance(run_dir, store.StorePath):
        store.check_writable(run_dir)
        return run_dir
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UserError(f"run_dir {run_dir}: cannot create: {exc.strerror or exc}") from None
    return run_dir


def existing_run_dir(path: str | RunPath) -> RunPath:
    """A run directory that must already exist (report, audit); UserError (exit 2) when it does not."""
    run_dir = store.location(path)
    if isinstance(run_dir, store.StorePath):
        if not run_dir.glob("*"):
            raise UserError(f"run directory {run_dir} does not exist (nothing under that prefix)")
        return run_dir
    if not run_dir.exists():
        raise UserError(f"run directory {run_dir} does not exist")
    if not run_dir.is_dir():
        raise UserError(f"{run_dir} is not a run directory")
    return run_dir


def _executor(opts: RunOptions):
    """Where shard tasks run: a local process pool, or Ray tasks (factory/executors/ray.py)."""
    if opts.executor == "ray":
        from factory.executors.ray import RayExecutor

        return RayExecutor(opts.ray_address, opts.workers)
    return LocalExecutor(opts.workers)


def plan(stage_names: list[str], registry: dict[str, type]) -> list[str]:
    """The stages to run, in order, with the implicit `ingest` first."""
    known = ["ingest", *registry]
    for name in stage_names:
        if name not in known:
            raise UserError(f"unknown stage {name!r}; stages: {', '.join(known)}")
    seen: list[str] = []
    for name in stage_names:
        if name not in seen:
            seen.append(name)
    if seen[:1] != ["ingest"]:
        seen = ["ingest", *[n for n in seen if n != "ingest"]]
    return seen


def run(cfg: Section, stage_names: list[str], registry: dict[str, type], opts: RunOptions) -> list[dict]:
    """Run the named stages over cfg.run_dir; returns their manifests."""
    if not cfg.inputs and "synth" not in stage_names:
        raise UserError("inputs: empty: name at least one input file (only a run with synth can do without)")
    for name in stage_names:  # settings a stage needs only when it runs: fail before any work is done
        check = getattr(registry.get(name), "check", None)
        if check is not None:
            check(getattr(cfg.stages, name))
    run_dir = prepare_run_dir(cfg.run_dir)
    for name in opts.force:
        if name not in ("ingest", *registry):
            raise UserError(f"--force {name}: unknown stage")
    manifests = []
    upstream: dict | None = None
    with _executor(opts) as executor:
        for name in plan(stage_names, registry):
            if name == "ingest":
                manifest = _run_ingest(cfg, run_dir, opts, executor)
                if opts.strict and manifest["counts"]["rejected"]:
                    _fail_on_first_reject(run_dir / "ingest")
            else:
                section = getattr(cfg.stages, name)
                manifest = _run_stage(name, registry[name], section, run_dir, upstream, opts, executor)
            manifests.append(manifest)
            if opts.after_stage is not None:
                opts.after_stage()
            upstream = manifest
    return manifests


def _run_ingest(cfg: Section, run_dir: RunPath, opts: RunOptions, executor: LocalExecutor) -> dict:
    files = ingest.resolve_inputs(cfg.inputs)
    ingest_cfg = cfg.stages.ingest
    stage_dir = run_dir / "ingest"
    chash = config_hash(ingest_cfg)
    if opts.redact is not None:  # redacted rejects differ from raw ones: a different result
        chash += "-redact-" + hashlib.blake2b(orjson.dumps(opts.redact.config), digest_size=6).hexdigest()
    fp = ingest.fingerprint(files, cfg.inputs)

    def tasks(done: set[str]) -> Iterator[ShardTask]:
        index = 0
        for f in files:
            first = True
            for chunk in ingest.read_chunks(f, ingest_cfg, opts.strict, opts.redact):
                if first and f.detected:
                    log.info("ingest: %s: format %s (detected from the first record)", f.path, f.format)
                first = False
                name = shards.shard_name(index)
                index += 1
                if name not in done:
                    yield ShardTask("ingest", stage_dir, name, chunk=chunk)

    def extra(merged: dict[str, Any]) -> dict[str, Any]:
        read_from = merged.pop("read_from", {})
        inputs = [
            {
                "path": f.path,
                "type": f.type,
                "format": f.format,
                "format_detected": f.detected,
                "source": f.spec.source,
                "records": read_from.get(f.path, 0),
            }
            for f in files
        ]
        return {"inputs": inputs, **merged}

    config = ingest_cfg.model_dump(mode="json")
    return _execute("ingest", stage_dir, config, chash, fp, None, tasks, extra, opts, executor)


def _fail_on_first_reject(stage_dir: RunPath) -> None:
    """--strict over an ingest that is up to date but has rejects: fail as a fresh strict run would."""
    for path in shards.list_shards(stage_dir / REJECTS):
        rows = shards.read_table(path).slice(0, 1).to_pylist()
        if rows:
            error = orjson.loads(rows[0]["detail"]).get("error", "")
            raise StrictError(f"{rows[0]['origin']}: {rows[0]['reason']}: {error}")


def _run_stage(
    name: str,
    cls: type,
    section: Section,
    run_dir: RunPath,
    upstream: dict,
    opts: RunOptions,
    executor: LocalExecutor,
) -> dict:
    up_dir = run_dir / upstream["stage"]
    stage_dir = run_dir / name
    chash = config_hash(section, getattr(cls, "hash_exclude", None)) + f"-v{getattr(cls, 'version', 1)}"
    fp = hashlib.blake2b(
        orjson.dumps([upstream["stage"], [(s["name"], s["digest"]) for s in upstream["shards"]]]),
        digest_size=12,
    ).hexdigest()
    config = section.model_dump(mode="json")

    generates = getattr(cls, "generates", False)

    def tasks(done: set[str]) -> Iterator[ShardTask]:
        if generates:  # listed after prepare() made them
            paths = shards.list_shards(stage_dir / WORK / GENERATED)
        else:
            paths = [up_dir / shard["name"] for shard in upstream["shards"]]
        for path in paths:
            if path.name not in done:
                yield ShardTask(name, stage_dir, path.name, input_path=path, stage_cls=cls, config=config)

    total = None if generates else upstream["counts"]["out"]
    prepare = None
    stage = None
    if hasattr(cls, "prepare"):
        stage = cls(section)
        inputs = [InputShard(s["name"], up_dir / s["name"], s["rows"]) for s in upstream["shards"]]

        def prepare() -> dict:
            ctx = PrepareContext(
                inputs=inputs,
                work_dir=stage_dir / WORK,
                workers=executor.workers,
                map=executor.map_unordered,
                progress=lambda description, n: _advance(opts.console, description, n),
            )
            return stage.prepare(ctx)

    stage_finish = getattr(stage, "finish", None) or (lambda merged: merged)

    def finish(merged: dict) -> dict:
        return {"upstream": upstream["stage"], **stage_finish(merged)}

    publish = getattr(stage, "publish", None)
    manifest = _execute(
        name, stage_dir, config, chash, fp, total, tasks, finish, opts, executor, prepare, publish
    )
    if not getattr(stage, "keep_work", False):
        shards.remove_tree(stage_dir / WORK)
    return manifest


@contextmanager
def _advance(console: Console | None, description: str, total: int) -> Iterator[Callable[[int], None]]:
    """A progress bar for one pass of a stage's `prepare`; yields `advance(n)`."""
    with _progress(console) as progress:
        bar = progress.add_task(description, total=total, rate="")
        yield lambda n: progress.update(bar, advance=n)


def _execute(
    name: str,
    stage_dir: RunPath,
    config: dict,
    chash: str,
    fp: str,
    total: int | None,
    tasks: Callable[[set[str]], Iterator[ShardTask]],
    extra: Callable[[dict], dict],
    opts: RunOptions,
    executor: LocalExecutor,
    prepare: Callable[[], dict] | None = None,
    publish: Callable[[dict, RunPath], None] | None = None,
) -> dict:
    manifest_path = stage_dir / "manifest.json"
    old = shards.read_json(manifest_path)
    same = bool(old) and old.get("config_hash") == chash and old.get("input_fingerprint") == fp
    if same and old.get("status") == "done" and name not in opts.force:
        log.info("%s: skipped, up to date (%s)", name, funnel_line(old))
        return old
    if stage_dir.exists() and not (same and old.get("status") == "running" and name not in opts.force):
        if old and not same:
            log.info("%s: config or input changed, redoing the stage", name)
        shards.remove_tree(stage_dir)
    stage_dir.mkdir(parents=True, exist_ok=True)
    shards.remove_temp_files(stage_dir)
    done = {p.name.removesuffix(".json") for p in (stage_dir / MARKERS).glob("part-*.json")}
    started = time.time()
    manifest = {
        "stage": name,
        "status": "running",
        "config": config,
        "config_hash": chash,
        "input_fingerprint": fp,
        "started_at": _now(),
    }
    shards.write_json(manifest, manifest_path)
    if done:
        log.info("%s: resuming, %d shards already done", name, len(done))
    figures = prepare() if prepare is not None else {}

    markers = [shards.read_json(stage_dir / MARKERS / f"{n}.json") for n in sorted(done)]  # done before
    with _progress(opts.console) as progress:
        bar = progress.add_task(name, total=total, rate="")
        seen = 0
        for marker in executor.map_unordered(run_shard, tasks(done)):
            markers.append(marker)
            seen += marker["in"]
            elapsed = max(time.time() - started, 1e-9)
            progress.update(bar, advance=marker["in"], rate=f"{seen / elapsed:,.0f} rec/s")
    markers.sort(key=lambda m: m["name"])
    counts = {"in": 0, "out": 0, "rejected": 0}
    by_reason: dict[str, int] = {}
    merged: dict[str, Any] = {}
    for m in markers:
        counts["in"] += m["in"]
        counts["out"] += m["rows"]
        counts["rejected"] += m["rejected"]
        merge_counters(by_reason, m["rejected_by_reason"])
        merge_counters(merged, m["counters"])
    finished = time.time()
    manifest = {
        "stage": name,
        "status": "done",
        "counts": counts,
        "rejected_by_reason": dict(sorted(by_reason.items(), key=lambda kv: -kv[1])),
        "config": config,
        "config_hash": chash,
        "input_fingerprint": fp,
        "shards": [{k: m[k] for k in ("name", "rows", "in", "rejected", "digest")} for m in markers],
        "started_at": manifest["started_at"],
        "finished_at": _now(),
        "duration_s": round(finished - started, 3),
        "records_per_s": round(counts["in"] / max(finished - started, 1e-9), 1),
        **extra(merged),
        **figures,
    }
    if publish is not None:
        publish(manifest, stage_dir)
    shards.write_json(manifest, manifest_path)
    log.info("%s", funnel_line(manifest))
    return manifest


def funnel_line(manifest: dict) -> str:
    """`clean: 52,002 in -> 49,871 out, 2,131 rejected (too_short 1,200, ...)`."""
    c = manifest["counts"]
    reasons = ", ".join(f"{r} {n:,}" for r, n in manifest.get("rejected_by_reason", {}).items())
    tail = f" ({reasons})" if reasons else ""
    return f"{manifest['stage']}: {c['in']:,} in -> {c['out']:,} out, {c['rejected']:,} rejected{tail}"


def _progress(console: Console | None) -> Progress:
    return progress_bar(console, TextColumn("{task.fields[rate]}"))


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")
