"""The runner: skip when up to date, redo on change or --force, resume after kill -9, same output on any workers."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import ROOT, alpaca, read_stage, run_cli, write_config, write_jsonl


def make_run(tmp_path: Path, n: int = 60, shard_rows: int = 10, run: str = "run", **stages) -> Path:
    """A config over `n` records (one too short) in shards of `shard_rows`; the input is written once."""
    if not (tmp_path / "in.jsonl").exists():
        rows = [alpaca(i) for i in range(n)]
        rows[3] = alpaca(3, instruction="Hi")  # too short: a clean reject
        write_jsonl(tmp_path / "in.jsonl", rows)
    return write_config(
        tmp_path / f"{run}.yaml",
        tmp_path / run,
        [{"path": tmp_path / "in.jsonl", "source": "general"}],
        stages={"ingest": {"shard_rows": shard_rows}, **stages},
    )


def markers(run_dir: Path, stage: str) -> dict[str, int]:
    return {p.name: p.stat().st_mtime_ns for p in (run_dir / stage / "_shards").glob("*.json")}


def test_counts_add_up_and_no_temp_files(tmp_path):
    cfg = make_run(tmp_path)
    assert run_cli("run", "clean", "-c", str(cfg), "--workers", "2") == 0
    for stage in ("ingest", "clean"):
        records, rejects, manifest = read_stage(tmp_path / "run", stage)
        c = manifest["counts"]
        assert c["in"] == c["out"] + c["rejected"]
        assert len(records) == c["out"] and len(rejects) == c["rejected"]
        assert manifest["status"] == "done" and len(manifest["shards"]) == 6
        assert sum(manifest["rejected_by_reason"].values()) == c["rejected"]
    assert read_stage(tmp_path / "run", "clean")[2]["counts"] == {"in": 60, "out": 59, "rejected": 1}
    assert not list((tmp_path / "run").rglob(".tmp-*"))
    log = (tmp_path / "run" / "factory.log").read_text()
    assert "clean: 60 in -> 59 out, 1 rejected (too_short 1)" in log


def test_second_run_is_skipped_up_to_date(tmp_path, caplog):
    cfg = make_run(tmp_path)
    assert run_cli("run", "clean", "-c", str(cfg), "--workers", "1") == 0
    before = markers(tmp_path / "run", "clean")
    assert run_cli("run", "clean", "-c", str(cfg), "--workers", "1") == 0
    assert markers(tmp_path / "run", "clean") == before
    log = (tmp_path / "run" / "factory.log").read_text()
    assert "ingest: skipped, up to date" in log and "clean: skipped, up to date" in log


def test_force_redoes_one_stage(tmp_path):
    cfg = make_run(tmp_path)
    assert run_cli("run", "clean", "-c", str(cfg), "--workers", "1") == 0
    ingest_before, clean_before = markers(tmp_path / "run", "ingest"), markers(tmp_path / "run", "clean")
    assert run_cli("run", "clean", "-c", str(cfg), "--workers", "1", "--force", "clean") == 0
    assert markers(tmp_path / "run", "ingest") == ingest_before
    after = markers(tmp_path / "run", "clean")
    assert after.keys() == clean_before.keys() and all(after[k] != clean_before[k] for k in after)


def test_config_change_redoes_the_stage(tmp_path):
    cfg = make_run(tmp_path)
    assert run_cli("run", "clean", "-c", str(cfg), "--workers", "1") == 0
    cfg = make_run(tmp_path, clean={"too_short": {"enabled": False}})
    assert run_cli("run", "clean", "-c", str(cfg), "--workers", "1") == 0
    assert read_stage(tmp_path / "run", "clean")[2]["counts"] == {"in": 60, "out": 60, "rejected": 0}
    log = (tmp_path / "run" / "factory.log").read_text()
    assert "ingest: skipped, up to date" in log and "clean: config or input changed" in log


def test_input_change_redoes_ingest_and_clean(tmp_path):
    cfg = make_run(tmp_path)
    assert run_cli("run", "clean", "-c", str(cfg), "--workers", "1") == 0
    write_jsonl(tmp_path / "in.jsonl", [alpaca(i) for i in range(30)])
    assert run_cli("run", "clean", "-c", str(cfg), "--workers", "1") == 0
    assert read_stage(tmp_path / "run", "clean")[2]["counts"]["in"] == 30


def test_one_and_two_workers_give_identical_outputs(tmp_path):
    cfg1 = make_run(tmp_path, run="w1")
    cfg2 = make_run(tmp_path, run="w2")
    assert run_cli("run", "clean", "-c", str(cfg1), "--workers", "1") == 0
    assert run_cli("run", "clean", "-c", str(cfg2), "--workers", "2") == 0
    for stage in ("ingest", "clean"):
        a, ra, ma = read_stage(tmp_path / "w1", stage)
        b, rb, mb = read_stage(tmp_path / "w2", stage)
        assert a == b and ra == rb
        assert [s["digest"] for s in ma["shards"]] == [s["digest"] for s in mb["shards"]]


def start_and_wait(cfg: Path, stage: str, workers: int, min_done: int = 5) -> subprocess.Popen:
    """Start `factory run clean` in a subprocess and return once `min_done` shards of `stage` are finished."""
    run_dir = cfg.parent / "run"
    proc = subprocess.Popen(
        [sys.executable, "-m", "factory", "run", "clean", "-c", str(cfg), "--workers", str(workers)],
        cwd=cfg.parent,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.time() + 120
    while len(markers(run_dir, stage)) < min_done and proc.poll() is None and time.time() < deadline:
        time.sleep(0.005)
    return proc


@pytest.mark.parametrize("stage", ["ingest", "clean"])
def test_kill_9_mid_stage_then_resume(tmp_path, stage):
    """Kill the process once a few shards of `stage` are done; the rerun redoes none of them and matches."""
    cfg = make_run(tmp_path, n=2000, shard_rows=4)
    run_dir = tmp_path / "run"
    proc = start_and_wait(cfg, stage, workers=1)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done_before = markers(run_dir, stage)
    assert 5 <= len(done_before) < 500, "the run must be killed part-way through the stage"

    assert run_cli("run", "clean", "-c", str(cfg), "--workers", "2") == 0
    after = markers(run_dir, stage)
    assert len(after) == 500
    assert all(after[name] == mtime for name, mtime in done_before.items()), "a finished shard was redone"
    assert (
        f"{stage}: resuming, {len(done_before)} shards already done" in (run_dir / "factory.log").read_text()
    )

    ref = make_run(tmp_path, n=2000, shard_rows=4, run="ref")
    assert run_cli("run", "clean", "-c", str(ref), "--workers", "2") == 0
    for s in ("ingest", "clean"):
        got, got_rej, got_manifest = read_stage(run_dir, s)
        want, want_rej, want_manifest = read_stage(tmp_path / "ref", s)
        assert got == want and got_rej == want_rej
        assert got_manifest["counts"] == want_manifest["counts"]
    assert not list(run_dir.rglob(".tmp-*"))


def test_ctrl_c_exits_130_and_the_run_resumes(tmp_path):
    cfg = make_run(tmp_path, n=2000, shard_rows=4)
    run_dir = tmp_path / "run"
    proc = start_and_wait(cfg, "clean", workers=2)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "interrupted" in err and "Traceback" not in err
    assert run_cli("run", "clean", "-c", str(cfg), "--workers", "2") == 0
    assert read_stage(run_dir, "clean")[2]["counts"] == {"in": 2000, "out": 1999, "rejected": 1}


def test_unwritable_run_dir_is_a_user_error(tmp_path, capsys):
    (tmp_path / "file").write_text("not a directory")
    write_jsonl(tmp_path / "in.jsonl", [alpaca(0)])
    cfg = write_config(tmp_path / "c.yaml", tmp_path / "file" / "run", [{"path": tmp_path / "in.jsonl"}])
    assert run_cli("run", "clean", "-c", str(cfg)) == 2
    assert "cannot create" in capsys.readouterr().err
