"""The launcher of one sandboxed program, started by evals/sandbox.py; never imported by factory. Stdlib only.

    python -I -S -c "...import sandbox_child; sandbox_child.main(sys.argv)"
        STEPS BASE CPU_S MEMORY_MB FILE_MB NPROC NOFILE [SITE_DIR ...]

(imported rather than run as a script, so that its bytecode comes from __pycache__: compiling it costs
6 ms a start)

It is started with an empty environment, in a session of its own, stdin on /dev/null and stdout/stderr on
files in BASE (a root-owned temp dir); the program is BASE/program.py and runs from BASE/work. In order it:
1. closes every inherited descriptor above stderr, so nothing the factory process had open leaks in;
2. `net`: enters a new network namespace (as root; otherwise together with a user namespace that maps the uid
   to itself): its only interface is a loopback that is down, so no connection can be made, not even to
   127.0.0.1;
3. `mnt` (root only): enters a private mount namespace. With `drop`, a 0700 home such as /root, where pyenv,
   conda or uv keep the interpreter, would leave nobody unable to import anything: each such directory on the
   way to sys.path gets a tmpfs over it holding only the entry needed, bound from the real one, so the
   interpreter is reachable at its own paths and the rest of that home is hidden;
4. `pid`: enters a new PID namespace and forks a bare init (PID 1, dies with the launcher by
   PR_SET_PDEATHSIG), which forks the program. When the program ends init exits, and the kernel then kills
   every process left in the namespace (fork bombs, daemons, setsid or not); the launcher exits with the
   program's status or dies of the same signal. `proc` (with `mnt`): the program mounts the namespace's own
   /proc, so it sees no other process (command lines can hold secrets);
5. sets the rlimits: CPU (SIGXCPU, then SIGKILL a second later), address space, file size, processes, open
   files, no core files;
6. `drop` (root only): becomes nobody with no supplementary groups, since the kernel does not apply
   RLIMIT_NPROC to root and root could undo every limit;
7. clears os.environ (an empty environment is not enough: Python's locale coercion puts LC_CTYPE back),
   restores SIGXFSZ's default action (Python ignores it to raise EFBIG; dying of it says file_size_limit), and
   runs the program as __main__ in this interpreter, so one interpreter starts per program. An uncaught
   exception prints the usual traceback without the launcher's frame and exits 1.
STEPS is a comma-separated subset of net,mnt,pid,proc,drop; a step that fails exits 125 after a "sandbox
error:" line on stderr, so a program never runs with less isolation than `isolation()` reported. STEPS "probe"
tries them all, goes on past a failed one, checks that the final user can list every sys.path directory, and
prints, as the final process, a JSON object of what worked instead of running a program.
"""

import _signal as signal  # the C module: "signal" imports enum and more, 8 ms of a 25 ms start without site
import os
import resource
import sys

CLONE_NEWNS = 0x00020000
CLONE_NEWUSER = 0x10000000
CLONE_NEWPID = 0x20000000
CLONE_NEWNET = 0x40000000
MS_NOSUID, MS_NODEV, MS_NOEXEC, MS_BIND, MS_REC, MS_PRIVATE = 2, 4, 8, 4096, 16384, 1 << 18
PR_SET_PDEATHSIG = 1
PR_SET_DUMPABLE = 4
NOBODY = 65534
SANDBOX_ERROR = 125

_libc = None


def _call(name: str, *args: int | bytes | None) -> None:
    """A libc call that returns 0 or sets errno (unshare, mount, prctl: os.unshare is Python 3.12+)."""
    global _libc
    import ctypes  # only when a namespace is wanted: about 2 ms

    if _libc is None:
        _libc = ctypes.CDLL(None, use_errno=True)
    c_args = (ctypes.c_ulong(a) if isinstance(a, int) else a for a in args)
    if getattr(_libc, name)(*c_args) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{name}(): {os.strerror(err)}")


def _write(path: str, text: str) -> None:
    with open(path, "w") as f:
        f.write(text)


def _enter_net(root: bool) -> None:
    if root:
        _call("unshare", CLONE_NEWNET)
        return
    uid, gid = os.getuid(), os.getgid()
    _call("unshare", CLONE_NEWUSER | CLONE_NEWNET)
    # map the uid and gid to themselves: an unmapped uid could not even create a file in the work dir
    _write("/proc/self/setgroups", "deny")
    _write("/proc/self/uid_map", f"{uid} {uid} 1")
    _write("/proc/self/gid_map", f"{gid} {gid} 1")


def _closed_dirs(paths: list[str]) -> dict[str, set[str]]:
    """Directories others cannot enter on the way to `paths`, each with the entries the way goes through."""
    closed: dict[str, set[str]] = {}
    for path in paths:
        parts = os.path.realpath(path).split("/")[1:]
        for depth in range(len(parts)):
            parent = "/" + "/".join(parts[:depth])
            if not os.stat(parent).st_mode & 0o001:
                closed.setdefault(parent, set()).add(parts[depth])
    return closed


def _private_mounts(closed: dict[str, set[str]]) -> None:
    """A mount namespace of our own; each closed directory becomes a tmpfs that holds only what is needed."""
    _call("unshare", CLONE_NEWNS)
    _call("mount", b"none", b"/", None, MS_REC | MS_PRIVATE, None)  # nothing below reaches the host's mounts
    for parent in sorted(closed, key=lambda p: p.count("/")):  # outer first: an inner one may lie in a bind
        keep = {name: os.open(os.path.join(parent, name), os.O_PATH) for name in closed[parent]}
        _call("mount", b"tmpfs", parent.encode(), b"tmpfs", MS_NOSUID | MS_NODEV, b"mode=0755,size=64k")
        for name, fd in keep.items():
            target = os.path.join(parent, name)
            if os.path.isdir(f"/proc/self/fd/{fd}"):
                os.mkdir(target)
            else:
                open(target, "x").close()
            _call("mount", f"/proc/self/fd/{fd}".encode(), target.encode(), None, MS_BIND | MS_REC, None)
            os.close(fd)


def _mount_proc() -> None:
    """The PID namespace's own /proc: other processes' command lines are not the program's to read."""
    _call("mount", b"proc", b"/proc", b"proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, None)


def _enter_pid_namespace() -> None:
    """Fork twice: a bare init, PID 1 of a new namespace, and under it the program, which returns from here.

    The program is not PID 1 itself because a namespace's init ignores every signal it has no handler for,
    SIGXFSZ and SIGXCPU from the rlimits included. Init cannot die of a signal either, so it passes the
    program's wait status to the launcher through a pipe and the launcher ends the same way."""
    _call("unshare", CLONE_NEWPID)
    read_fd, write_fd = os.pipe()
    init = os.fork()
    if init:  # the launcher, outside the namespace
        os.close(write_fd)
        _, status = os.waitpid(init, 0)
        relayed = os.read(read_fd, 32)
        _end_as(int(relayed) if relayed else status)
    os.close(read_fd)
    _call("prctl", PR_SET_PDEATHSIG, signal.SIGKILL)  # killed with the launcher, it takes the namespace along
    program = os.fork()
    if program:
        _, status = os.waitpid(program, 0)
        os.write(write_fd, str(status).encode())
        os._exit(0)
    os.close(write_fd)


def _end_as(status: int) -> None:
    """Exit the way a waited-for child ended: the same exit code, or death by the same signal."""
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    _call("prctl", PR_SET_DUMPABLE, 0)  # dying of SIGXCPU or SIGSEGV below must not write a core anywhere
    if os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        try:
            signal.signal(sig, signal.SIG_DFL)
        except (OSError, ValueError):  # SIGKILL and SIGSTOP cannot be caught anyway
            pass
        os.kill(os.getpid(), sig)
        os._exit(128 + sig)  # only reached for a signal whose default action is not to terminate
    os._exit(os.waitstatus_to_exitcode(status))


def _set_limits(cpu_s: int, memory_mb: int, file_mb: int, nproc: int, nofile: int) -> None:
    mb = 1 << 20
    wanted = (
        (resource.RLIMIT_CPU, cpu_s, cpu_s + 1),
        (resource.RLIMIT_AS, memory_mb * mb, memory_mb * mb),
        (resource.RLIMIT_FSIZE, file_mb * mb, file_mb * mb),
        (resource.RLIMIT_NPROC, nproc, nproc),
        (resource.RLIMIT_NOFILE, nofile, nofile),
        (resource.RLIMIT_CORE, 0, 0),
    )
    for res, soft, hard in wanted:
        current = resource.getrlimit(res)[1]
        if current != resource.RLIM_INFINITY:  # not root: a hard limit can only go down
            hard = min(hard, current)
        resource.setrlimit(res, (min(soft, hard), hard))


def _drop() -> None:
    os.setgroups([])
    os.setgid(NOBODY)
    os.setuid(NOBODY)


def _fail(message: str) -> None:
    sys.stderr.write(f"sandbox error: {message}\n")
    sys.stderr.flush()
    os._exit(SANDBOX_ERROR)


def _run(source: bytes, path: str) -> None:
    signal.signal(signal.SIGXFSZ, signal.SIG_DFL)
    os.environ.clear()
    sys.argv = [path]
    module = type(sys)("__main__")
    module.__file__ = path
    sys.modules["__main__"] = module
    try:
        exec(compile(source, path, "exec"), module.__dict__)
    except SystemExit:
        raise
    except BaseException as exc:
        # the traceback starts at the program's frame, not this one (a SyntaxError has none of its own)
        exc.__traceback__ = exc.__traceback__.tb_next if exc.__traceback__ else None
        sys.excepthook(type(exc), exc, exc.__traceback__)
        sys.exit(1)


def main(argv: list[str]) -> None:
    os.closerange(3, max(3, resource.getrlimit(resource.RLIMIT_NOFILE)[0]))
    steps_arg, base = argv[1], argv[2]
    cpu_s, memory_mb, file_mb, nproc, nofile = (int(a) for a in argv[3:8])
    sys.path.extend(argv[8:])
    path_dirs = [p for p in sys.path if os.path.isdir(p)]
    probe = steps_arg == "probe"
    steps = {"net", "mnt", "pid", "proc", "drop"} if probe else set(filter(None, steps_arg.split(",")))
    root = os.geteuid() == 0
    done: dict[str, str] = {}

    def step(name: str, action) -> bool:
        if name not in steps:
            return False
        try:
            action()
        except OSError as exc:
            if not probe:
                _fail(f"{name}: {exc.strerror or exc}")
            done[name] = exc.strerror or str(exc)
            return False
        done[name] = "ok"
        return True

    path = os.path.join(base, "program.py")
    with open(path, "rb") as f:
        source = f.read()
    os.chdir(os.path.join(base, "work"))
    os.umask(0o077)
    if probe:
        import json  # now: nobody may not be able to

    step("net", lambda: _enter_net(root))
    if root:
        step("mnt", lambda: _private_mounts(_closed_dirs(path_dirs) if "drop" in steps else {}))
    step("pid", _enter_pid_namespace)  # from here on: the program's process
    if done.get("mnt") == "ok" and done.get("pid") == "ok":
        step("proc", _mount_proc)
    _set_limits(cpu_s, memory_mb, file_mb, nproc, nofile)
    if root:
        step("drop", _drop)
    if probe:
        for entry in path_dirs:
            try:
                os.listdir(entry)
            except OSError as exc:
                done["path"] = f"cannot list {entry}: {exc.strerror}"
                break
        print(json.dumps({"root": root, "pid_in_ns": os.getpid(), **done}))
        return
    _run(source, path)


if __name__ == "__main__":
    main(sys.argv)
