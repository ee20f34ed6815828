"""A run directory on an object store (a real S3 server: moto's, on 127.0.0.1): the whole pipeline (clean, dedup,
decontam, mix) gives the same records, rejects and counts as with a local run directory, on the local executor
and on Ray; a re-run is skipped, a cut-off stage resumes only its unfinished shards; `factory report` and
`factory audit` read it; the log is uploaded; errors are one line, exit 2."""

from __future__ import annotations

import gzip
import json
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from factory import store
from tests.conftest import chat_corpus, read_stage, run_cli, write_config, write_jsonl

BENCHMARKS = Path(__file__).resolve().parents[2] / "data" / "benchmarks"
STAGES = ["clean", "dedup", "decontam", "mix"]


def corpus() -> list[dict]:
    """`chat_corpus` (duplicates, an empty answer, a line that is not an object) and a record holding a GSM8K test
    question (decontam's hit)."""
    with gzip.open(BENCHMARKS / "gsm8k" / "test.jsonl.gz", "rt") as f:
        question = json.loads(f.readline())["question"]
    reply = {"role": "assistant", "content": "It is 18 dollars."}
    return [*chat_corpus(600), {"messages": [{"role": "user", "content": question}, reply]}]


def run(data: Path, run_dir: str, *extra: str, name: str = "cfg") -> int:
    """The pipeline over `data` (one file for every test of the module: origins name it)."""
    cfg = write_config(
        data.parent / f"{name}-{abs(hash(run_dir))}.yaml",
        run_dir,
        [{"path": data, "format": "messages", "source": "t"}],
        stages={
            "ingest": {"shard_rows": 150},
            "clean": {"pii": {"enabled": False}},
            "decontam": {"benchmarks": ["gsm8k"]},
            "mix": {"validation": 0.1},
        },
    )
    return run_cli("run", *STAGES, "-c", str(cfg), "--workers", "2", *extra)


def outcome(run_dir: str | Path) -> dict:
    """Per stage: kept ids, (origin, reason) of the rejects, counts; mix's train/validation rows."""
    root = store.location(str(run_dir))
    out = {}
    for stage in ["ingest", *STAGES]:
        if isinstance(root, Path):
            kept, rejects, manifest = read_stage(root, stage)
        else:
            kept, rejects, manifest = read_store_stage(root / stage)
        out[stage] = (
            sorted(r["id"] for r in kept) if stage != "mix" else None,
            sorted((r["origin"], r["reason"]) for r in rejects),
            manifest["counts"],
        )
    for split in ("train", "validation"):
        folder = root / "mix" / split
        files = folder.glob("part-*.parquet")
        out[split] = sorted(json.dumps(r, sort_keys=True) for p in files for r in table(p).to_pylist())
    return out


def table(path):
    if isinstance(path, Path):
        return pq.read_table(path)
    return pq.read_table(path.path, filesystem=path.fs)


def read_store_stage(d: store.StorePath) -> tuple[list[dict], list[dict], dict]:
    kept = [r for p in d.glob("part-*.parquet") for r in table(p).to_pylist()]
    rejects = [r for p in (d / "rejects").glob("part-*.parquet") for r in table(p).to_pylist()]
    return kept, rejects, json.loads((d / "manifest.json").read_bytes())


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    return write_jsonl(tmp_path_factory.mktemp("data") / "in.jsonl", corpus())


@pytest.fixture(scope="module")
def local_run(data, tmp_path_factory) -> tuple[Path, dict]:
    run_dir = tmp_path_factory.mktemp("local") / "run"
    assert run(data, str(run_dir)) == 0
    return run_dir, outcome(run_dir)


def test_pipeline_on_a_store_matches_a_local_run_dir(s3, data, local_run, capsys):
    _, expected = local_run
    uri = s3.uri("runs/a")
    assert run(data, uri) == 0
    got = outcome(uri)
    assert got == expected
    assert got["dedup"][2]["rejected"] >= 2 and got["decontam"][2]["rejected"] == 1
    assert got["ingest"][2]["rejected"] == 1 and got["train"] and got["validation"]
    root = store.location(uri)
    assert (root / "mix" / "README.md").exists() and (root / "mix" / "dataset_info.json").exists()
    assert not (root / "dedup" / "_work").exists() and not (root / "decontam" / "_work").exists()
    log = (root / "factory.log").read_text()
    assert "mix: " in log and "endpoint_override" not in log  # the URI is shown without its query
    assert f"-> s3://{s3.bucket}/runs/a (2 workers)" in log

    capsys.readouterr()
    assert run(data, uri) == 0  # everything up to date: skipped, and the log appended to, not replaced
    log = (root / "factory.log").read_text()
    assert all(f"{stage}: skipped, up to date" in log for stage in ["ingest", *STAGES])
    assert log.count("run clean dedup decontam mix") == 2


def test_cut_off_stage_on_a_store_redoes_only_its_unfinished_shards(s3, data, local_run):
    _, expected = local_run
    uri = s3.uri("runs/b")
    assert run(data, uri, name="first") == 0
    dedup = store.location(uri) / "dedup"
    manifest = json.loads((dedup / "manifest.json").read_bytes())
    manifest["status"] = "running"  # as a crash leaves it: two shards without their markers
    (dedup / "manifest.json").write_bytes(json.dumps(manifest).encode())
    markers = (dedup / "_shards").glob("part-*.json")
    for m in markers[:2]:
        m.unlink()
    before = {p.name: p.fs.get_file_info(p.path).mtime_ns for p in dedup.glob("part-*.parquet")}
    time.sleep(1.1)  # S3 modification times are in seconds
    assert run(data, uri, name="again") == 0
    log = (store.location(uri) / "factory.log").read_text()
    assert f"dedup: resuming, {len(markers) - 2} shards already done" in log
    after = {p.name: p.fs.get_file_info(p.path).mtime_ns for p in dedup.glob("part-*.parquet")}
    redone = {name for name in before if before[name] != after[name]}
    assert redone == {m.name.removesuffix(".json") for m in markers[:2]}
    assert outcome(uri) == expected


def test_report_and_audit_read_a_run_dir_on_a_store(s3, data, local_run, capsys):
    local_dir, _ = local_run
    uri = s3.uri("runs/c")
    assert run(data, uri) == 0

    def summary(target: str) -> dict:
        capsys.readouterr()
        assert run_cli("report", target, "--json") == 0
        data = json.loads(capsys.readouterr().out)  # what the data says; not where or how fast
        return {
            key: data[key] for key in ("rejects", "before", "after", "dedup", "decontam", "mix", "warnings")
        }

    assert summary(uri) == summary(str(local_dir))
    root = store.location(uri)
    assert (root / "report" / "index.html").exists() and (root / "report" / "summary.json").exists()

    def audit(target: str) -> dict:
        capsys.readouterr()
        assert run_cli("audit", target, "--benchmark", "gsm8k", "--json") == 0
        data = json.loads(capsys.readouterr().out)
        data.pop("run_dir")
        return data

    got = audit(uri)
    assert got == audit(str(local_dir))
    assert got["rows"] and got["rows"][0]["item"].startswith("gsm8k/test/")


def test_ray_executor_with_a_run_dir_on_a_store(s3, data, local_run, monkeypatch):
    pytest.importorskip("ray", reason="the Ray extra is not installed (pip install 'factory[ray]')")
    monkeypatch.setenv("RAY_USAGE_STATS_ENABLED", "0")
    _, expected = local_run
    uri = s3.uri("runs/ray")
    assert run(data, uri, "--executor", "ray") == 0
    assert outcome(uri) == expected


def test_run_dir_store_errors_are_one_line(s3, data, capsys):
    started = time.perf_counter()
    missing = f"s3://no-such-bucket-{s3.bucket}/run?endpoint_override={s3.endpoint}&scheme=http"
    assert run(data, missing) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and f"s3://no-such-bucket-{s3.bucket}/run" in err, err
    assert "endpoint_override" not in err
    assert time.perf_counter() - started < 20

    assert run_cli("report", s3.uri("runs/nothing-here")) == 2
    err = capsys.readouterr().err
    assert f"run directory s3://{s3.bucket}/runs/nothing-here does not exist" in err, err


def test_synth_on_a_store_keeps_its_response_cache_on_this_machine(s3, tmp_path, monkeypatch):
    from tests.fake_openai import serve
    from tests.stages.test_synth_stage import script, synth_config

    monkeypatch.setenv("FACTORY_CACHE_DIR", str(tmp_path / "cache"))
    uri = s3.uri("runs/synth")
    with serve(script) as server:
        cfg = synth_config(tmp_path, server, "self_instruct", target=8)
        assert run_cli("run", "synth", "-c", str(cfg), "--run-dir", uri) == 0
        first = len(server.requests)
        assert run_cli("run", "synth", "-c", str(cfg), "--run-dir", uri, "--force", "synth") == 0
        assert len(server.requests) == first  # redone from the cache: nothing asked twice
    kept, rejects, manifest = read_store_stage(store.location(uri) / "synth")
    assert len(kept) == 8 and manifest["counts"]["in"] == 8 + len(rejects)
    assert manifest["synth"]["cache_hits"] >= first
    caches = list((tmp_path / "cache" / "runs").glob("*/_cache/llm.sqlite"))
    assert len(caches) == 1  # the SQLite cache of that run, on this machine


def test_decontam_index_reaches_a_worker_without_the_drivers_cache(s3, tmp_path, monkeypatch):
    """A worker on another machine has no copy of the driver's index cache: it reads the copy `prepare` put in
    the run directory (in place when local, downloaded once into its own cache from a store)."""
    import numpy as np

    from stages.decontam import benchmarks as bm
    from stages.decontam import index as ix

    driver_cache = tmp_path / "driver"
    sources = [bm.locate(spec) for spec in bm.specs(["gsm8k"])]
    settings = ix.Settings(13, 10, 6, 8)
    folder, meta, _ = ix.ensure(sources, settings, driver_cache)
    local_run = tmp_path / "run" / "decontam" / "_work" / "index"
    store_run = store.location(s3.uri("runs/ix")) / "decontam" / "_work" / "index"
    for target in (local_run, store_run):
        ix.publish(folder, target)
        ix.publish(folder, target)  # already there: kept

    monkeypatch.setenv("FACTORY_CACHE_DIR", str(tmp_path / "worker"))  # the worker's own cache
    gone = str(tmp_path / "elsewhere" / folder.name)  # the driver's path, which this worker lacks
    assert ix.fetch(str(folder), store_run) == folder  # the driver's machine: its own cache
    assert ix.fetch(gone, local_run) == local_run
    fetched = ix.fetch(gone, store_run)
    assert fetched == tmp_path / "worker" / "decontam" / folder.name
    for got in (local_run, fetched):
        index = ix.Index(got)
        assert index.meta["ngrams"] == meta["ngrams"] and index.settings == settings
        assert np.array_equal(index.grams, np.load(folder / "grams.npy"))
    assert ix.fetch(gone, store_run) == fetched  # once: the next call finds it


def test_trainer_and_eval_read_a_mix_on_a_store(s3, local_run, tmp_path):
    """`factory train` takes `data: s3://.../RUN_DIR/mix` (its train/ and validation/ as from a local folder), and
    `factory eval` finds that run from the adapter's train_config.json."""
    from types import SimpleNamespace

    from evals.run import decontam_findings, training_run
    from trainers.data import read_conversations, resolve_splits

    local_dir, _ = local_run
    s3.put(
        {f"runs/t/{p.relative_to(local_dir)}": p.read_bytes() for p in local_dir.rglob("*") if p.is_file()}
    )
    uri = s3.uri("runs/t/mix")
    train, val = resolve_splits(uri, None)
    local_train, local_val = resolve_splits(str(local_dir / "mix"), None)
    assert [p.name for p in train] == [p.name for p in local_train] and len(val) == len(local_val) > 0
    assert read_conversations(train) == read_conversations(local_train)
    assert read_conversations(val) == read_conversations(local_val)

    adapter = tmp_path / "adapter"
    adapter.mkdir()
    (adapter / "train_config.json").write_text(json.dumps({"data": uri}))
    run_dir = training_run(SimpleNamespace(run_dir=None, adapter=str(adapter)))
    assert str(run_dir) == f"s3://{s3.bucket}/runs/t"
    assert decontam_findings(run_dir) == decontam_findings(local_dir)
    assert decontam_findings(run_dir)["gsm8k"]["records_removed"] == 1


def test_the_log_reaches_the_store_after_each_stage(s3, data, monkeypatch):
    """A driver killed mid-run (no chance to upload at the end) leaves the store's log at most one stage behind:
    here the final upload never happens, and the log still holds every stage's funnel line."""
    from factory import log

    monkeypatch.setattr(log, "close_run_log", lambda handler, run_dir: handler.close())
    uri = s3.uri("runs/log")
    cfg = write_config(data.parent / "log.yaml", uri, [{"path": data, "format": "messages", "source": "t"}])
    assert run_cli("run", "clean", "-c", str(cfg), "--workers", "1") == 0
    text = (store.location(uri) / "factory.log").read_text()
    assert "ingest: 627 in -> 626 out" in text and "clean: 626 in -> 625 out" in text
