"""The command line: help that explains, exit codes, no traceback for a user mistake."""

from __future__ import annotations

import subprocess
import sys

from tests.conftest import ROOT, alpaca, run_cli, write_config, write_jsonl


def factory(*args: str, cwd=ROOT) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "factory", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"},
    )


def test_help_explains_commands_stages_and_exit_codes():
    top = factory("--help")
    assert top.returncode == 0 and "run" in top.stdout and "130" in top.stdout
    run = factory("run", "--help")
    assert run.returncode == 0
    for word in ("clean", "ingest", "--strict", "--force", "--workers", "--run-dir", "exit codes"):
        assert word in run.stdout


def test_unknown_stage_exit_2_one_line(tmp_path, capsys):
    write_jsonl(tmp_path / "a.jsonl", [alpaca(0)])
    cfg = write_config(tmp_path / "c.yaml", tmp_path / "run", [{"path": tmp_path / "a.jsonl"}])
    assert run_cli("run", "cleen", "-c", str(cfg)) == 2
    err = capsys.readouterr().err
    assert "unknown stage 'cleen'" in err and "Traceback" not in err
    assert not (tmp_path / "run").exists()


def test_bad_config_exit_2_names_key(tmp_path):
    (tmp_path / "c.yaml").write_text(
        "run_dir: r\ninputs: [{path: a.jsonl}]\nstages: {clean: {too_short: {min_wordz: 2}}}\n"
    )
    proc = factory("run", "clean", "-c", str(tmp_path / "c.yaml"), cwd=tmp_path)
    assert proc.returncode == 2
    assert "stages.clean.too_short.min_wordz" in proc.stderr and "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1


def test_ray_executor_without_ray_installed_is_a_user_error(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # import fails, as where the extra is not installed
    write_jsonl(tmp_path / "a.jsonl", [alpaca(0)])
    cfg = write_config(tmp_path / "c.yaml", tmp_path / "run", [{"path": tmp_path / "a.jsonl"}])
    assert run_cli("run", "clean", "-c", str(cfg), "--executor", "ray") == 2
    assert "factory[ray]" in capsys.readouterr().err


def test_run_dir_override_and_internal_error_exit_1(tmp_path, monkeypatch, capsys):
    write_jsonl(tmp_path / "a.jsonl", [alpaca(0)])
    cfg = write_config(tmp_path / "c.yaml", tmp_path / "run", [{"path": tmp_path / "a.jsonl"}])
    assert (
        run_cli("run", "clean", "-c", str(cfg), "--run-dir", str(tmp_path / "other"), "--workers", "1") == 0
    )
    assert (tmp_path / "other" / "clean" / "manifest.json").exists() and not (tmp_path / "run").exists()

    import stages.clean.stage as clean_stage

    def boom(self, table):
        raise ValueError("boom")

    monkeypatch.setattr(clean_stage.CleanStage, "process", boom)
    assert run_cli("run", "clean", "-c", str(cfg), "--workers", "1", "--force", "clean") == 1
    err = capsys.readouterr().err
    assert "internal error" in err and "boom" in err and "Traceback" not in err
