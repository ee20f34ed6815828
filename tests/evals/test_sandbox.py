"""The sandbox stops or denies what a hostile completion tries, and the rest of the suite goes on."""

from __future__ import annotations

import os
import re
import socket
import time
import uuid
from pathlib import Path

import pytest

from evals import sandbox
from evals.sandbox import Limits, Outcome, isolation, run_many, run_program

LIMITS = Limits(timeout_s=2.0, cpu_s=5, memory_mb=512, file_size_mb=4, processes=16)


def bomb(marker: str) -> str:
    """A fork bomb whose processes all carry `marker` as their name (inherited by fork), bounded to 2**8
    processes in case no limit applies on this machine, each then sleeping so a leftover would show."""
    return (
        "import ctypes, os, time\n"
        f"ctypes.CDLL(None).prctl(15, b'{marker}', 0, 0, 0)\n"
        "for _ in range(8):\n"
        "    os.fork()\n"
        "time.sleep(60)\n"
    )


def live_processes_named(marker: str) -> list[int]:
    """Processes (not zombies) whose name is `marker`."""
    found = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            comm = Path(f"/proc/{entry.name}/comm").read_text().strip()
            state = Path(f"/proc/{entry.name}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if comm == marker and state != "Z":
            found.append(int(entry.name))
    return found


def assert_none_left(marker: str) -> None:
    deadline = time.monotonic() + 3
    while live_processes_named(marker) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert live_processes_named(marker) == []


def test_isolation_reports_what_the_machine_allows():
    iso = isolation()
    assert set(iso) == {"network", "user", "pids", "proc"}
    assert iso["network"] == "namespace" or iso["network"].startswith("none: ")
    assert iso["user"] in ("nobody", "same")
    assert iso["pids"] in ("namespace", "process group")
    assert iso["proc"] in ("own", "host")
    assert isolation() == iso  # probed once


def test_hostile_programs_are_stopped_and_the_rest_goes_on(tmp_path, monkeypatch):
    monkeypatch.setenv("FACTORY_SANDBOX_SECRET", "hunter2")
    monkeypatch.chdir(tmp_path)
    marker = "fb" + uuid.uuid4().hex[:10]
    programs = {
        "passes": "def add(a, b):\n    return a + b\n\nassert add(2, 3) == 5\n",
        "asserts": "def add(a, b):\n    return a - b\n\nassert add(2, 3) == 5\n",
        "syntax": "def add(a, b)\n    return a + b\n",
        "loops": "while True:\n    pass\n",
        "forks": bomb(marker),
        "allocates": 'x = b"x" * 10**10\n',
        "writes": 'f = open("big", "wb")\nwhile True:\n    f.write(b"x" * 2**20)\n',
        "prints": 'while True:\n    print("y" * 1000)\n',
        "no_env": 'import os\nassert "FACTORY_SANDBOX_SECRET" not in os.environ and len(os.environ) == 0\n',
        "shows_env": "import os\nprint(dict(os.environ))\n",
        "cwd": 'import os\nopen("x", "w").write("x")\nprint(os.getcwd())\n',
    }
    done: dict[int, Outcome] = {}
    start = time.monotonic()
    outcomes = run_many(list(programs.values()), LIMITS, workers=len(programs), on_done=done.__setitem__)
    elapsed = time.monotonic() - start
    got = dict(zip(programs, outcomes, strict=True))
    assert sorted(done) == list(range(len(programs))) and [done[i] for i in range(len(programs))] == outcomes

    assert (got["passes"].status, got["passes"].reason) == ("passed", "ok")
    assert (got["asserts"].status, got["asserts"].reason) == ("failed", "AssertionError")
    assert "AssertionError" in got["asserts"].detail and "sandbox_child" not in got["asserts"].detail
    assert (got["syntax"].status, got["syntax"].reason) == ("failed", "SyntaxError")

    assert (got["loops"].status, got["loops"].reason) == ("timeout", "timeout")
    assert LIMITS.timeout_s <= got["loops"].wall_s <= LIMITS.timeout_s + 1

    assert got["forks"].status != "passed" and got["forks"].wall_s <= LIMITS.timeout_s + 1
    assert_none_left(marker)

    assert got["allocates"].status != "passed"
    assert got["allocates"].reason == "MemoryError" or got["allocates"].status == "killed"
    assert (got["writes"].status, got["writes"].reason) == ("killed", "file_size_limit")
    assert (got["prints"].status, got["prints"].reason) == ("killed", "file_size_limit")
    assert len(got["prints"].detail) <= 2000 and got["prints"].detail.count("\n") < 20

    assert got["no_env"].status == "passed", got["no_env"].detail
    assert got["shows_env"].status == "passed" and got["shows_env"].detail == "{}"
    assert all("hunter2" not in o.detail for o in outcomes)

    assert got["cwd"].status == "passed"
    program_cwd = Path(got["cwd"].detail.strip())
    assert program_cwd != tmp_path and not (tmp_path / "x").exists()
    assert program_cwd.name == "work" and not program_cwd.parent.exists()  # the temp dir is gone
    assert elapsed < LIMITS.timeout_s + 4


def test_cpu_limit():
    out = run_program("while True:\n    pass\n", Limits(timeout_s=6, cpu_s=1))
    assert (out.status, out.reason) == ("killed", "cpu_limit")
    assert out.wall_s < 4  # SIGXCPU at 1 s of CPU, or SIGKILL a second later


def test_exit_codes_and_signals():
    programs = ["import sys\nsys.exit(3)\n", "import os, signal\nos.kill(os.getpid(), signal.SIGTERM)\n"]
    exits, killed = run_many(programs, LIMITS)
    assert (exits.status, exits.reason) == ("failed", "exit:3")
    assert (killed.status, killed.reason) == ("killed", "signal:SIGTERM")


def test_no_network():
    iso = isolation()
    if iso["network"] != "namespace":
        pytest.skip(
            f"no network namespace on this machine ({iso['network']}): programs can reach the network"
        )
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        port = server.getsockname()[1]
        connect = f"import socket\nsocket.create_connection(('127.0.0.1', {port}), timeout=1)\n"
        out = run_program(connect + "print('CONNECTED')\n", LIMITS)
        server.settimeout(0.3)
        with pytest.raises(TimeoutError):
            server.accept()
    assert out.status == "failed" and "CONNECTED" not in out.detail


def test_no_other_process_visible():
    if isolation()["proc"] != "own":
        pytest.skip(f"no PID and mount namespace on this machine ({isolation()}): /proc shows every process")
    out = run_program(
        'import os\nprint(sorted(int(p) for p in os.listdir("/proc") if p.isdigit()))\n', LIMITS
    )
    assert out.status == "passed" and out.detail == "[1, 2]"  # the namespace's init and the program


def test_runs_without_any_namespace(monkeypatch):
    """Where the machine allows no isolation step, programs still run, and the process group still goes."""
    bare = sandbox._Plan(steps=(), report={**isolation(), "network": "none: test"}, tasks_before=0)
    monkeypatch.setattr(sandbox, "_plan", lambda: bare)
    marker = "fb" + uuid.uuid4().hex[:10]
    daemon = (
        "import ctypes, os, time\n"
        f"ctypes.CDLL(None).prctl(15, b'{marker}', 0, 0, 0)\n"
        "if os.fork() == 0:\n"
        "    time.sleep(60)\n"  # left behind in the process group when the program exits
    )
    passes, fails, forks, leaves_child = run_many(
        ["assert 1 + 1 == 2\n", "assert 1 + 1 == 3\n", bomb(marker), daemon], LIMITS
    )
    assert isolation()["network"] == "none: test"
    assert passes.status == "passed" and fails.reason == "AssertionError"
    assert forks.status != "passed" and leaves_child.status == "passed"
    assert_none_left(marker)


def test_reason_is_the_exception_class():
    out = run_program('import json\njson.loads("{")\n', LIMITS)
    assert (out.status, out.reason) == ("failed", "JSONDecodeError")
    assert re.search(r"JSONDecodeError: Expecting", out.detail)


def test_an_error_in_on_done_kills_the_programs_still_running():
    def on_done(index: int, outcome: Outcome) -> None:
        raise RuntimeError("stop")

    start = time.monotonic()
    with pytest.raises(RuntimeError, match="stop"):
        run_many(
            ["pass\n", "import time\ntime.sleep(30)\n"], Limits(timeout_s=30), workers=2, on_done=on_done
        )
    assert time.monotonic() - start < 5
