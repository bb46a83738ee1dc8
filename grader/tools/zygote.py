"""A pre-imported Python whose forked children enter a job's fresh sandbox ("entrants").

See docs/design-preforked-entrants.md. This runs on the host, never inside a sandbox; it never imports the
grader and never reads a job's request itself, so nothing of one job is in the memory the next job's entrant
starts from. It imports the trusted modules named on its command line (a tool's own imports), says "ready",
then, for each message on its control socket (three descriptors: the job's report socket, its stdout and its
stderr), forks. The child reads the request from the report socket, joins the job's cgroup, enters the
namespaces of the job's placeholder process (mount first, the user namespace last), forks once more so that it
is inside the PID namespace, and reports the grandchild's exit status. The grandchild drops every capability,
sets no_new_privs, closes every other descriptor, applies the job's rlimits and environment, and runs the tool
as `python -I tool.py args…` (or `python -I -c code args…`) would.

Usage: python -I zygote.py FD [--preload a,b.c] [--later d,e] [--block x,y] [--room PADDING]

`--later` modules are imported after "ready", one at a time, only while no job is waiting: the first job (a single
`mlops-grade check`) is not held up by imports its notebook may never need, and the jobs of a batch that come
after find them imported. A job that arrives during one of these imports waits for that one import only.

A job's command line and environment are written over the zygote's own (`harness.retitle`), so that /proc shows
the job's: `--room` and the environment variable MLOPS_ZYGOTE_ROOM only make room for them.
"""

import ctypes
import importlib
import io
import json
import os
import resource
import select
import signal
import socket
import struct
import sys

NAMESPACES = (("mnt", 0x00020000), ("pid", 0x20000000), ("net", 0x40000000), ("ipc", 0x08000000),
              ("uts", 0x04000000), ("cgroup", 0x02000000), ("user", 0x10000000))
PR_CAPBSET_DROP, PR_SET_NO_NEW_PRIVS, PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL = 24, 38, 47, 4
RLIMITS = {"cpu": resource.RLIMIT_CPU, "fsize": resource.RLIMIT_FSIZE, "nofile": resource.RLIMIT_NOFILE,
           "core": resource.RLIMIT_CORE, "as": resource.RLIMIT_AS, "nproc": resource.RLIMIT_NPROC}
LIBC = ctypes.CDLL(None, use_errno=True)


def preload(modules, blocked, not_needed) -> None:
    """Import `modules`; packages a tool blocks (`blocked`) stay unimported here too (the harness's own blocker,
    `not_needed`, removed again before any job runs)."""
    blocker = not_needed(tuple(blocked))
    sys.meta_path.insert(0, blocker)
    try:
        for name in modules:
            try:
                importlib.import_module(name)
            except Exception:  # noqa: BLE001 — a module that fails here is imported (and fails) in the job instead
                pass
    finally:
        sys.meta_path.remove(blocker)


def _check(result: int, what: str) -> None:
    if result != 0:
        raise OSError(ctypes.get_errno(), f"{what}: {os.strerror(ctypes.get_errno())}")


def drop_privileges(last_cap: int) -> None:
    """No capability left in any set, none to regain: as bubblewrap's --cap-drop ALL and no_new_privs."""
    for cap in range(last_cap + 1):
        LIBC.prctl(PR_CAPBSET_DROP, cap, 0, 0, 0)
    LIBC.prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0)
    header = struct.pack("Ii", 0x20080522, 0)  # _LINUX_CAPABILITY_VERSION_3, this process
    data = ctypes.create_string_buffer(24)  # two zeroed {effective, permitted, inheritable}
    _check(LIBC.capset(ctypes.c_char_p(header), data), "capset")
    _check(LIBC.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), "no_new_privs")


def enter(target: int) -> None:
    """Join the namespaces of process `target` (its descriptors opened before the first setns changes /proc)."""
    mine = {name: os.stat(f"/proc/self/ns/{name}").st_ino for name, _ in NAMESPACES}
    fds = []
    for name, flag in NAMESPACES:
        path = f"/proc/{target}/ns/{name}"
        if os.stat(path).st_ino != mine[name]:  # a namespace the sandbox did not unshare is already ours
            fds.append((name, flag, os.open(path, os.O_RDONLY | os.O_CLOEXEC)))
    for name, flag, fd in fds:
        _check(LIBC.setns(fd, flag), f"setns {name}")
        os.close(fd)


def become_tool(request: dict, out_fd: int, err_fd: int, last_cap: int) -> None:
    """In the sandbox, as the grandchild: the limits, no privileges, then the tool itself. Never returns."""
    code = 1
    try:
        os.setsid()
        null = os.open("/dev/null", os.O_RDONLY)
        os.dup2(null, 0)
        os.dup2(out_fd, 1)
        os.dup2(err_fd, 2)
        os.closerange(3, os.sysconf("SC_OPEN_MAX"))
        for name, value in request["rlimits"].items():
            resource.setrlimit(RLIMITS[name], (value, value))
        drop_privileges(last_cap)
        os.chdir(request["cwd"])
        os.environ.clear()
        os.environ.update(request["env"])
        os.environ["PWD"] = request["cwd"]  # as bubblewrap's --chdir sets it
        os.umask(0o022)
        sys.stdin = open(0, encoding="utf-8", closefd=False)  # noqa: SIM115
        for fd, name in ((1, "stdout"), (2, "stderr")):  # unbuffered, as PYTHONUNBUFFERED=1 in the sandbox
            setattr(sys, name, io.TextIOWrapper(open(fd, "wb", buffering=0, closefd=False), encoding="utf-8",  # noqa: SIM115
                                                errors="backslashreplace", write_through=True))
        if "numpy" in sys.modules:  # the zygote's global generator state must not be every job's
            sys.modules["numpy"].random.seed()
        args = request["args"]
        import runpy

        try:
            if "code" in request:  # python -I -c CODE args...
                sys.argv = ["-c", *args]
                import builtins

                exec(compile(request["code"], "<string>", "exec"), {"__name__": "__main__", "__builtins__": builtins})
            else:  # python -I tool.py args... (isolated: the tool's folder is not on sys.path)
                sys.argv = [request["tool"], *args]
                runpy.run_path(request["tool"], run_name="__main__")
            code = 0
        except SystemExit as stop:
            code = stop.code if isinstance(stop.code, int) else (0 if stop.code is None else 1)
            if not isinstance(stop.code, int) and stop.code is not None:
                print(stop.code, file=sys.stderr)
        except BaseException:  # noqa: BLE001 — as an uncaught exception in `python tool.py`
            import traceback

            traceback.print_exc()
            code = 1
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        except Exception:  # noqa: BLE001
            pass
    except BaseException as error:  # noqa: BLE001 — setting up failed: say so on the job's stderr
        try:
            os.write(2, f"mlops-grade entrant: {error}\n".encode())
        except OSError:
            pass
        code = 125
    os._exit(code & 0xFF)


def serve_one(report: socket.socket, out_fd: int, err_fd: int, last_cap: int) -> None:
    """The forked child: read the request, enter the job, fork the tool, report how it ended. Never returns."""
    status = {"error": "no request"}
    try:
        request = json.loads(report.makefile("rb").readline())
        RETITLE(request["argv"], {**request["env"], "PWD": request["cwd"]})  # as root on the host: areas shrink
        for path in request.get("cgroup_procs", []):
            with open(path, "w") as handle:
                handle.write(str(os.getpid()))
        enter(int(request["target"]))
        pid = os.fork()
        if pid == 0:
            report.close()
            become_tool(request, out_fd, err_fd, last_cap)
        os.close(out_fd)
        os.close(err_fd)
        report.sendall((json.dumps({"pid": pid}) + "\n").encode())
        _, raw = os.waitpid(pid, 0)
        status = {"returncode": os.waitstatus_to_exitcode(raw)}
    except BaseException as error:  # noqa: BLE001
        status = {"error": f"{type(error).__name__}: {error}"}
    try:
        report.sendall((json.dumps(status) + "\n").encode())
    except OSError:
        pass
    os._exit(0)


FORK_SAFE_THREADS = {"jemalloc_bg_thd"}  # pyarrow's allocator: its pthread_atfork handlers keep its locks sane


def other_threads() -> list[str]:
    """The names of this process's threads besides the main one that a fork is not known to be safe with."""
    names = []
    for task in os.listdir("/proc/self/task"):
        if int(task) != os.getpid():
            with open(f"/proc/self/task/{task}/comm") as handle:
                names.append(handle.read().strip())
    return [name for name in names if name not in FORK_SAFE_THREADS]


def _harness():
    """grader/tools/harness.py (its retitle and import blocker), without leaving `harness` imported for the jobs'
    tools."""
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    try:
        import harness

        return harness
    finally:
        sys.path.pop(0)
        sys.modules.pop("harness", None)


RETITLE = None


def main() -> None:
    global RETITLE
    harness = _harness()
    RETITLE = harness.retitle
    if not sys.flags.isolated and sys.path and sys.path[0] == os.path.dirname(os.path.abspath(__file__)):
        del sys.path[0]  # started without -I (the notebook runner's zygote): this folder is no job's business
    control = socket.socket(fileno=int(sys.argv[1]))
    options = dict(zip(sys.argv[2::2], sys.argv[3::2]))
    split = lambda value: [name for name in (value or "").split(",") if name]  # noqa: E731
    preload(split(options.get("--preload")), split(options.get("--block")), harness._NotNeeded)
    with open("/proc/sys/kernel/cap_last_cap") as handle:
        last_cap = int(handle.read())
    if other_threads():  # a module started a thread: a fork could inherit a lock it holds
        control.sendall(b"threads")
        os._exit(0)
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # children are reaped by the kernel
    control.sendall(b"ready")
    later = split(options.get("--later"))
    while True:
        if later and not select.select([control], [], [], 0)[0]:  # idle: import the next module now
            preload([later.pop(0)], split(options.get("--block")), harness._NotNeeded)
            if other_threads():  # as above, but jobs already ran: go, and the grader starts jobs the classic way
                os._exit(0)
            continue
        try:
            message, fds, _, _ = socket.recv_fds(control, 16, 3)
        except InterruptedError:
            continue
        if not message:  # the grader closed its end, or died
            os._exit(0)
        if len(fds) != 3:
            for fd in fds:
                os.close(fd)
            continue
        pid = os.fork()
        if pid == 0:
            control.close()
            signal.signal(signal.SIGCHLD, signal.SIG_DFL)  # so that waitpid sees the tool's exit
            serve_one(socket.socket(fileno=fds[0]), fds[1], fds[2], last_cap)
        for fd in fds:
            os.close(fd)


if __name__ == "__main__":
    main()
