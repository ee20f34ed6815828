"""`--executor ray` against the local executor on a local Ray cluster: the same kept ids, the same rejects with the
same reasons, for ingest, clean, dedup and decontam; and resume after a cut-off run skips finished shards."""

from __future__ import annotations

import json

import pytest

from tests.conftest import chat_corpus, read_stage, run_cli, write_config, write_jsonl

ray = pytest.importorskip("ray", reason="the Ray extra is not installed (pip install 'factory[ray]')")


def run(tmp_path, name: str, *args: str, **config) -> dict:
    """`factory run clean dedup decontam` with CLI `args` (`--executor ray`) and top-level `config` keys (`executor`,
    `ray`); {stage: (kept ids, (origin, reason) rejects, counts, number of shards)}."""
    data = tmp_path / "in.jsonl"
    if not data.exists():
        write_jsonl(data, chat_corpus())
    cfg = write_config(
        tmp_path / f"{name}.yaml",
        tmp_path / name,
        [{"path": data, "format": "messages", "source": "t"}],
        stages={"ingest": {"shard_rows": 500}, "clean": {"pii": {"enabled": False}}},
        **config,
    )
    stages = ["clean", "dedup", "decontam"]
    assert run_cli("run", *stages, "-c", str(cfg), "--workers", "2", *args) == 0
    out = {}
    for stage in ["ingest", *stages]:
        kept, rejects, manifest = read_stage(tmp_path / name, stage)
        out[stage] = (
            sorted(r["id"] or r["origin"] for r in kept),
            sorted((r["origin"], r["reason"]) for r in rejects),
            manifest["counts"],
            len(manifest["shards"]),
        )
    return out


@pytest.fixture(scope="module", autouse=True)
def _no_usage_stats():
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("RAY_USAGE_STATS_ENABLED", "0")
        yield


def test_ray_gives_the_same_outputs_as_local(tmp_path):
    local = run(tmp_path, "local", "--executor", "local")
    on_ray = run(tmp_path, "ray", "--executor", "ray")
    for stage in local:
        assert on_ray[stage] == local[stage], stage
    assert local["dedup"][2]["rejected"] > 0 and local["ingest"][2]["rejected"] == 1


def test_ray_run_resumes_finished_shards(tmp_path, caplog):
    run(tmp_path, "r", "--executor", "ray")
    # cut off: clean's manifest back to running and two shard markers gone, as a crash would leave them
    clean = tmp_path / "r" / "clean"
    manifest = json.loads((clean / "manifest.json").read_text())
    manifest["status"] = "running"
    (clean / "manifest.json").write_text(json.dumps(manifest))
    markers = sorted((clean / "_shards").glob("part-*.json"))
    for m in markers[:2]:
        m.unlink()
    before = {p.name: p.stat().st_mtime_ns for p in clean.glob("part-*.parquet")}
    again = run(tmp_path, "r", "--executor", "ray")
    assert "clean: resuming" in (tmp_path / "r" / "factory.log").read_text()
    after = {p.name: p.stat().st_mtime_ns for p in clean.glob("part-*.parquet")}
    redone = {name for name in before if before[name] != after[name]}
    assert redone == {m.name.removesuffix(".json") for m in markers[:2]}
    assert again["clean"][2]["in"] == again["clean"][2]["out"] + again["clean"][2]["rejected"]


def test_unreachable_cluster_address_is_exit_2_in_seconds(tmp_path, capsys):
    import socket
    import time

    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    data = tmp_path / "in.jsonl"
    write_jsonl(data, chat_corpus(10))
    cfg = write_config(
        tmp_path / "c.yaml",
        tmp_path / "run",
        [{"path": data, "format": "messages"}],
        executor="ray",
        ray={"address": f"127.0.0.1:{port}"},
    )
    start = time.perf_counter()
    assert run_cli("run", "clean", "-c", str(cfg)) == 2
    assert time.perf_counter() - start < 30
    err = " ".join(capsys.readouterr().err.split())
    assert f"cannot connect to the Ray cluster at 127.0.0.1:{port}: nothing answers there" in err


def test_no_address_starts_a_local_cluster_even_when_another_is_named(tmp_path, monkeypatch):
    """Without `ray.address`, a run starts its own cluster: RAY_ADDRESS (or a `ray start` on this machine) naming
    another, here a dead one, is not joined."""
    monkeypatch.setenv("RAY_ADDRESS", "127.0.0.1:1")
    data = write_jsonl(tmp_path / "in.jsonl", chat_corpus(20))
    cfg = write_config(tmp_path / "c.yaml", tmp_path / "run", [{"path": data, "format": "messages"}])
    assert run_cli("run", "clean", "-c", str(cfg), "--executor", "ray", "--workers", "1") == 0
    ingest, clean = (read_stage(tmp_path / "run", stage)[2]["counts"] for stage in ("ingest", "clean"))
    assert clean["in"] == ingest["out"] == 23
