"""Run untrusted benchmark programs (HumanEval/MBPP completions with their tests) safely, many at a time.

Owns executing a program and saying how it ended; building the programs and scoring pass@k belong to the
caller. A program is a whole Python source (prompt + completion + tests + `check(entry_point)`); it passes
when it exits 0. It never runs in the factory process: each one gets a process of its own, an interpreter
started without site through the launcher (`sandbox_child.py`, which does the isolation steps in order and
then runs the program in that same interpreter), in a fresh temp dir that is removed afterwards:

    BASE/        root-owned, 0755: program.py, stdout, stderr (the program cannot rewrite what we read back)
    BASE/work/   the program's cwd, owned by the user it runs as

What each measure guards against, and the fallback where the machine does not allow it (`isolation()` says
which applied; it is probed once per process by running the launcher in probe mode, and the launcher is then
told to take exactly the steps that worked, failing the program with reason "sandbox_error" should one stop
working):
- an empty environment (no API keys, tokens or proxy settings) and no descriptor of ours inherited;
- a session of its own: on the wall-clock timeout the whole process group gets SIGKILL, and so does whatever
  is left in it once the program exits; stdout and stderr go to files, of which only the tail is read back;
- rlimits (`Limits`): CPU time (-> "cpu_limit"), address space (a big allocation raises MemoryError), file
  size (SIGXFSZ -> "file_size_limit", stdout and stderr included, so printing forever is stopped too), open
  files, processes, no core files;
- network namespace: no interface but a loopback that is down, so no exfiltration and no local services, not
  even on 127.0.0.1 (as root; otherwise inside a user namespace). Fallback: the network is open, and
  "network" says "none: <why>";
- PID namespace: the program runs under a bare init of its own; when it ends, the kernel kills every process
  it left, setsid or not, so fork bombs and daemons cannot outlive it; with a mount namespace also its own
  /proc ("proc": "own"), so no other process's command line is readable. Fallback "pids": "process group" (a
  process that calls setsid escapes it and lives on), "proc": "host";
- drop to nobody (uid/gid 65534, no groups) when running as root: the kernel applies neither RLIMIT_NPROC nor
  file permissions to root, and root could raise its limits back. A 0700 home on the way to the interpreter
  (pyenv under /root) is replaced, in the private mount namespace, by a tmpfs holding only the interpreter's
  entry. Fallback "user": "same": the program runs as the factory's own user, and as root a fork bomb is then
  stopped by the PID namespace or the process group and the timeout, not by RLIMIT_NPROC.
RLIMIT_NPROC counts every task (process or thread) of the uid on the whole machine, not per sandbox: a program
may hold `Limits.processes` of them counting itself, on top of those the uid had at the probe and one for each
other program running at the same time (`run_many`'s workers; when not nobody, also one per worker thread of
ours). A fork bomb stops at that cap, and while it lasts the programs beside it cannot start threads or
processes either.

Not isolated: the file system beyond that (a program reads what nobody can read and may write to /tmp, one
file-size cap per file, until the timeout) and CPU time spread over many short-lived children (the limit is
per process; the timeout bounds the total).

`run_many` runs programs on threads that each wait on one subprocess (posix_spawn: no preexec_fn), so one
program's fate never touches another's. The venv's site-packages go on the program's sys.path as plain
directories (numpy imports; the .pth files, ~20 ms a start, do not run). Cost, measured with every step on
(2 cores): ~35 ms a trivial program, about what a bare `python -c` with the venv's site costs, and ~20 ms more
than `python -I -S -c` (ctypes for the namespace calls ~5, the two forks and their copy-on-write ~6, the rest
the launcher's imports, the temp dir and interpreter exit); HumanEval's 164 reference programs in ~3.2 s.
"""

from __future__ import annotations

import functools
import json
import os
import re
import select
import shutil
import signal
import site
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path

LAUNCHER = Path(__file__).with_name("sandbox_child.py")
# the launcher is imported, not run as a script, so its bytecode is cached; its dir leaves sys.path at once
_BOOT = (
    f"import sys; sys.path.insert(0, {str(LAUNCHER.parent)!r}); import {LAUNCHER.stem}; del sys.path[0]; "
    f"{LAUNCHER.stem}.main(sys.argv)"
)
NOBODY = 65534
SANDBOX_ERROR = 125  # the launcher's exit status when an isolation step it was asked for failed
DETAIL_LINES = 20
DETAIL_CHARS = 2000
_EXCEPTION_LINE = re.compile(r"^(?:[A-Za-z_]\w*\.)*([A-Z]\w*)(?::|$)")  # "json.decoder.JSONDecodeError: ..."


@dataclass(frozen=True)
class Limits:
    """What one program may use. Sizes in MiB; `processes`: RLIMIT_NPROC's share, see the module docstring."""

    timeout_s: float = 10.0  # wall clock per program
    cpu_s: int = 10  # RLIMIT_CPU
    memory_mb: int = 1024  # RLIMIT_AS
    file_size_mb: int = 16  # RLIMIT_FSIZE
    processes: int = 32  # RLIMIT_NPROC
    open_files: int = 64  # RLIMIT_NOFILE


@dataclass
class Outcome:
    """How one program ended."""

    status: str  # "passed" (exit 0) | "failed" (non-zero exit) | "timeout" | "killed" (a signal or a limit)
    reason: str  # "ok", "AssertionError" (a Python exception's class), "timeout", "cpu_limit", "exit:3" ...
    detail: str  # the tail of stderr, then of stdout
    wall_s: float


@dataclass(frozen=True)
class _Plan:
    """What the probe found this machine allows: the launcher's steps and what isolation() reports."""

    steps: tuple[str, ...]
    report: dict[str, str]
    tasks_before: int  # tasks the sandbox's uid already had at the probe (they count against RLIMIT_NPROC)


def isolation() -> dict[str, str]:
    """What the sandbox can do on this machine, probed once per process:
    {"network": "namespace" | "none: <why>", "user": "nobody" | "same", "pids": "namespace" | "process group",
    "proc": "own" | "host"}."""
    return dict(_plan().report)


def run_program(source: str, limits: Limits = Limits()) -> Outcome:
    """Run one program in the sandbox and say how it ended."""
    return _run(source, limits, _plan(), concurrent=1, live=set())


def run_many(
    sources: list[str],
    limits: Limits = Limits(),
    workers: int | None = None,
    on_done: Callable[[int, Outcome], None] | None = None,
) -> list[Outcome]:
    """Run programs `workers` at a time (default: one per CPU); outcomes in the order of `sources`.

    `on_done(index, outcome)` is called on the calling thread as each program ends. If this raises (an
    interrupt, or on_done itself), the programs still running are killed and the rest are not started."""
    plan = _plan()
    workers = max(1, min(workers or os.cpu_count() or 1, len(sources) or 1))
    outcomes: list[Outcome | None] = [None] * len(sources)
    live: set[int] = set()
    pool = ThreadPoolExecutor(workers, thread_name_prefix="sandbox")
    try:
        futures = {pool.submit(_run, src, limits, plan, workers, live): i for i, src in enumerate(sources)}
        for future in as_completed(futures):
            index = futures[future]
            outcomes[index] = future.result()
            if on_done is not None:
                on_done(index, outcomes[index])
    except BaseException:
        pool.shutdown(wait=False, cancel_futures=True)
        for pid in list(live):
            _kill_group(pid)
        raise
    finally:
        pool.shutdown(wait=True)
    return outcomes  # type: ignore[return-value]  # every slot was filled above


@functools.cache
def _plan() -> _Plan:
    """Run the launcher once in probe mode: it tries every step and reports, as the final process, what
    worked."""
    root = os.geteuid() == 0
    probe_limits = Limits(timeout_s=10.0, processes=1 << 16)
    outcome, stdout = _execute("", probe_limits, "probe", nproc=1 << 16, drop=root)
    try:
        found = json.loads(stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        why = f"probe failed: {outcome.status} {outcome.reason} {outcome.detail[-200:]}".strip()
        found = {"net": why, "pid": why, "drop": why}
    net = found.get("net") == "ok"
    mnt = root and found.get("mnt") == "ok"
    pid = found.get("pid") == "ok" and found.get("pid_in_ns") == 2  # init is 1
    proc = mnt and pid and found.get("proc") == "ok"
    drop = root and found.get("drop") == "ok" and "path" not in found  # and nobody can reach the interpreter
    wanted = (("net", net), ("mnt", mnt), ("pid", pid), ("proc", proc), ("drop", drop))
    steps = tuple(name for name, ok in wanted if ok)
    report = {
        "network": "namespace" if net else f"none: {found.get('net', 'not tried')}",
        "user": "nobody" if drop else "same",
        "pids": "namespace" if pid else "process group",
        "proc": "own" if proc else "host",
    }
    return _Plan(steps, report, _tasks_of(NOBODY if drop else os.getuid()))


def _tasks_of(uid: int) -> int:
    """Tasks (threads of every process) whose real uid is `uid`: what RLIMIT_NPROC counts."""
    count = 0
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/status") as f:
                fields = dict(line.split(":", 1) for line in f if ":" in line)
            if int(fields["Uid"].split()[0]) == uid:
                count += int(fields.get("Threads", "1"))
        except (OSError, KeyError, ValueError):  # gone meanwhile, or not ours to read
            continue
    return count


def _run(source: str, limits: Limits, plan: _Plan, concurrent: int, live: set[int]) -> Outcome:
    drop = "drop" in plan.steps
    # one task for each other program running beside it; not as nobody, also our own worker threads
    nproc = plan.tasks_before + limits.processes + concurrent - 1 + (0 if drop else concurrent)
    return _execute(source, limits, ",".join(plan.steps), nproc, drop=drop, live=live)[0]


def _execute(
    source: str, limits: Limits, steps: str, nproc: int, drop: bool = False, live: set[int] | None = None
) -> tuple[Outcome, str]:
    """Run the launcher on `source` with `steps`; (outcome, the tail of stdout)."""
    start = time.monotonic()
    try:
        base = tempfile.mkdtemp(prefix="factory-sandbox-")
    except OSError as exc:
        return Outcome("failed", "sandbox_error", f"temp dir: {exc}", 0.0), ""
    try:
        try:
            pid = _spawn(base, source, limits, steps, nproc, drop)
        except OSError as exc:  # e.g. a full /tmp: this program is lost, the suite goes on
            return Outcome("failed", "sandbox_error", f"start: {exc}", time.monotonic() - start), ""
        if live is not None:
            live.add(pid)
        timed_out = True
        try:
            timed_out = not _wait_exit(pid, limits.timeout_s)
        finally:
            # the process group goes whether the program ended, timed out or we were interrupted: what it left
            # behind dies with it. Its leader is not reaped yet, so the group id cannot be anyone else's.
            _kill_group(pid)
            _, status, usage = os.wait4(pid, 0)
            if live is not None:
                live.discard(pid)
        wall_s = time.monotonic() - start
        stderr, stdout = _tail(os.path.join(base, "stderr")), _tail(os.path.join(base, "stdout"))
        status_, reason = _classify(status, usage.ru_utime + usage.ru_stime, timed_out, limits, stderr)
        return Outcome(status_, reason, _detail(stderr, stdout), round(wall_s, 4)), stdout
    finally:
        _remove(base)


def _spawn(base: str, source: str, limits: Limits, steps: str, nproc: int, drop: bool) -> int:
    os.chmod(base, 0o755)
    work = os.path.join(base, "work")
    os.mkdir(work, 0o700)
    if drop:
        os.chown(work, NOBODY, NOBODY)
    with open(os.path.join(base, "program.py"), "w", encoding="utf-8") as f:
        f.write(source)
    args = [
        sys.executable,
        "-I",  # no PYTHON* variables, no user site, no script dir on sys.path
        "-S",  # no site: the venv's .pth files cost ~20 ms a start (site-packages go on sys.path as dirs)
        "-c",
        _BOOT,
        steps,
        base,
        *(str(n) for n in (limits.cpu_s, limits.memory_mb, limits.file_size_mb, nproc, limits.open_files)),
        *_site_dirs(),
    ]
    out = os.O_WRONLY | os.O_CREAT | os.O_TRUNC
    actions = [
        (os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
        (os.POSIX_SPAWN_OPEN, 1, os.path.join(base, "stdout"), out, 0o600),
        (os.POSIX_SPAWN_OPEN, 2, os.path.join(base, "stderr"), out, 0o600),
    ]
    # posix_spawn (vfork + exec) is safe from threads, unlike a preexec_fn; all the rest is the launcher's job
    return os.posix_spawn(sys.executable, args, {}, file_actions=actions, setsid=True)


@functools.cache
def _site_dirs() -> tuple[str, ...]:
    return tuple(p for p in site.getsitepackages() if os.path.isdir(p))


def _wait_exit(pid: int, timeout_s: float) -> bool:
    """Wait until `pid` has exited, without reaping it; False if the timeout came first."""
    try:
        fd = os.pidfd_open(pid)
    except (AttributeError, OSError):  # Linux < 5.3: poll, backing off to 50 ms
        deadline, delay = time.monotonic() + timeout_s, 0.001
        while os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is None:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            time.sleep(min(delay, remaining))
            delay = min(delay * 2, 0.05)
        return True
    try:
        poller = select.poll()
        poller.register(fd, select.POLLIN)
        return bool(poller.poll(max(0, int(timeout_s * 1000))))
    finally:
        os.close(fd)


def _kill_group(pid: int) -> None:
    try:
        os.killpg(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def _classify(status: int, cpu_s: float, timed_out: bool, limits: Limits, stderr: str) -> tuple[str, str]:
    if timed_out:
        return "timeout", "timeout"
    if os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        # past the soft CPU limit comes SIGXCPU, past the hard one (a second later: SIGXCPU handled) SIGKILL
        if sig == signal.SIGXCPU or (sig == signal.SIGKILL and cpu_s >= limits.cpu_s):
            return "killed", "cpu_limit"
        if sig == signal.SIGXFSZ:
            return "killed", "file_size_limit"
        try:
            return "killed", f"signal:{signal.Signals(sig).name}"
        except ValueError:
            return "killed", f"signal:{sig}"
    code = os.WEXITSTATUS(status)
    if code == 0:
        return "passed", "ok"
    lines = stderr.rstrip().splitlines()
    last = lines[-1] if lines else ""
    if code == SANDBOX_ERROR and last.startswith("sandbox error:"):
        return "failed", "sandbox_error"
    match = _EXCEPTION_LINE.match(last) if code == 1 else None
    if match:
        return "failed", match.group(1)
    return "failed", f"exit:{code}"


def _tail(path: str, max_bytes: int = 4 * DETAIL_CHARS) -> str:
    """The last lines of a (possibly huge) output file."""
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - max_bytes))
            data = f.read()
    except OSError:
        return ""
    lines = data.decode("utf-8", "replace").splitlines()[-DETAIL_LINES:]
    return "\n".join(lines)[-DETAIL_CHARS:]


def _detail(stderr: str, stdout: str) -> str:
    """The tail of stderr, topped up with the tail of stdout, within DETAIL_LINES / DETAIL_CHARS."""
    text = stderr.strip("\n")
    lines_left = DETAIL_LINES - (text.count("\n") + 1 if text else 0)
    chars_left = DETAIL_CHARS - len(text)
    if stdout.strip() and lines_left > 1 and chars_left > 20:
        out = "\n".join(stdout.strip("\n").splitlines()[-(lines_left - 1) :])[-(chars_left - 10) :]
        text = f"{text}\n[stdout]\n{out}" if text else out
    return text


def _remove(base: str) -> None:
    try:
        shutil.rmtree(base)
    except OSError:  # a program that made a dir unreadable (not root) or is somehow still writing there
        for root, dirs, _ in os.walk(base):
            for name in dirs:
                try:
                    os.chmod(os.path.join(root, name), 0o700)
                except OSError:
                    pass
        shutil.rmtree(base, ignore_errors=True)
