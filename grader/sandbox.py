"""Run untrusted commands in a bubblewrap sandbox with limits; one fresh sandbox per job.

Inside: no network (its own network namespace with loopback only), its own PID, IPC, UTS and
user namespaces, no capabilities, a private /tmp, /var/tmp and HOME, a read-only root, system,
Python and venv, and only the named mounts (`/sandbox/<name>`), of which only writable ones can be
written. The grader's files, other submissions and the grader's environment variables are not there.
Limits: wall clock (the whole process tree is killed), CPU seconds, memory and process count
(a cgroup where one can be made, rlimits otherwise), file size, open files, captured output (head
and tail kept), and disk use of the writable mounts (polled each second; the job is killed beyond it).

`isolate=False` runs the same command without bubblewrap (limits and a scrubbed environment
still apply): for a learner's self-check on a machine without it, never for grading others.
"""

from __future__ import annotations

import functools
import os
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

INSIDE_HOME = "/home/learner"
SANDBOX_UID = 1000
_PASSTHROUGH = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE", "TZ")


@dataclass(frozen=True)
class Limits:
    """Resource limits for one sandboxed job."""

    wall_seconds: float = 300  # the whole job; then every process in it is killed
    cpu_seconds: int = 600  # per process (RLIMIT_CPU)
    memory_bytes: int = 3 * 2**30  # the whole job (cgroup), or per process (RLIMIT_AS) without cgroups
    pids: int = 256  # processes and threads of the whole job (cgroup pids.max)
    file_bytes: int = 256 * 2**20  # largest file it may write (RLIMIT_FSIZE)
    open_files: int = 1024  # RLIMIT_NOFILE
    output_bytes: int = 1 * 2**20  # stdout and stderr kept, each (its head, and its last 64 KB); rest dropped
    disk_bytes: int = 2 * 2**30  # all writable mounts together; the job is killed beyond it (polled 1/s)
    disk_files: int = 100_000  # files and directories in the writable mounts together


@dataclass
class RunResult:
    """What happened to a sandboxed job."""

    returncode: int | None
    stdout: str
    stderr: str
    seconds: float
    timed_out: bool = False
    out_of_memory: bool = False
    output_truncated: bool = False
    disk_exceeded: bool = False
    notes: list[str] = field(default_factory=list)
    cpu_seconds: float | None = None  # CPU the whole job used (cgroup cpuacct), where a cgroup could be made
    load: float = 0.0  # the machine's highest 1-minute load average seen while the job ran

    @property
    def signal(self) -> int | None:
        return -self.returncode if self.returncode is not None and self.returncode < 0 else None


class SandboxUnavailable(RuntimeError):
    """No working bubblewrap here: grading other people's code must not start."""


@functools.lru_cache(maxsize=1)
def probe_bubblewrap() -> str | None:
    """None when bubblewrap works here, else the reason it does not."""
    bwrap = shutil.which("bwrap")
    if not bwrap:
        return "bubblewrap (bwrap) is not installed; on Debian/Ubuntu: apt-get install bubblewrap"
    try:
        done = subprocess.run(
            [bwrap, "--unshare-all", "--die-with-parent", "--ro-bind", "/", "/", "--uid", str(SANDBOX_UID),
             "--cap-drop", "ALL", "true"], capture_output=True, timeout=20,
        )
    except (OSError, subprocess.TimeoutExpired) as err:
        return f"bubblewrap did not start: {err}"
    if done.returncode != 0:
        return f"bubblewrap cannot create namespaces here: {done.stderr.decode(errors='replace').strip()}"
    return None


class Sandbox:
    """A fresh job directory with named mounts; `run()` executes a command inside it."""

    def __init__(self, limits: Limits = Limits(), isolate: bool = True, root: Path | None = None):
        if isolate and (reason := probe_bubblewrap()):
            raise SandboxUnavailable(reason)
        self.limits, self.isolate = limits, isolate
        self.root = Path(root or tempfile.mkdtemp(prefix="mlops-grade-"))
        self.mounts: dict[str, tuple[Path, bool]] = {}
        self.home = self.root / "home"
        self.home.mkdir(parents=True, exist_ok=True)

    def mount(self, name: str, host: Path | None = None, writable: bool = False) -> Path:
        """Expose a host directory (a new empty one under the job root by default) as `name`."""
        host = Path(host) if host else self.root / name
        host.mkdir(parents=True, exist_ok=True)
        self.mounts[name] = (host, writable)
        return host

    def path(self, name: str) -> str:
        """The path of mount `name` as the sandboxed process sees it."""
        return f"/sandbox/{name}" if self.isolate else str(self.mounts[name][0])

    def run(self, argv: list[str], cwd: str, env: dict[str, str] | None = None,
            timeout: float | None = None) -> RunResult:
        """Run `argv` (inside paths) with working directory `cwd` (a mount name)."""
        limits = self.limits
        timeout = timeout or limits.wall_seconds
        cgroup = _Cgroup.create(limits)
        notes = [] if cgroup.ok else ["no cgroup could be made: memory is limited per process, processes by rlimit"]
        command = self._command(argv, cwd, env or {}, cgroup)
        start = time.monotonic()
        proc = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, start_new_session=True,
                                env=_host_env_for_launch(), cwd=self.root)
        _RUNNING.add(proc)
        out, err = _Drain(proc.stdout, limits.output_bytes), _Drain(proc.stderr, limits.output_bytes)
        timed_out = disk_exceeded = False
        writable = [host for host, rw in self.mounts.values() if rw]
        deadline = start + timeout
        load = _load()
        try:
            while True:
                load = max(load, _load())
                try:
                    proc.wait(timeout=max(0.0, min(1.0, deadline - time.monotonic())))
                    break
                except subprocess.TimeoutExpired:
                    if time.monotonic() >= deadline:
                        timed_out = True
                        break
                    if writable and _over_disk(writable, limits):
                        disk_exceeded = True
                        notes.append(f"the job wrote more than {limits.disk_bytes / 2**20:.0f} MB or "
                                     f"{limits.disk_files} files and was stopped")
                        break
            if timed_out or disk_exceeded:
                _kill_group(proc.pid)
                cgroup.kill()
                proc.wait()
        finally:
            _kill_group(proc.pid)
            _RUNNING.discard(proc)
            out_of_memory = cgroup.oom_killed()
            cpu_seconds = cgroup.cpu_seconds()
            cgroup.destroy()
            out.join(), err.join()
        return RunResult(
            returncode=proc.returncode, stdout=out.text(), stderr=err.text(),
            seconds=time.monotonic() - start, timed_out=timed_out, out_of_memory=out_of_memory,
            output_truncated=out.truncated or err.truncated, disk_exceeded=disk_exceeded, notes=notes,
            cpu_seconds=cpu_seconds, load=load,
        )

    def cleanup(self) -> None:
        """Remove the job's files, even directories the job made unwritable; never raises, never recurses
        (a chain of thousands of nested directories is fine), never follows links."""
        try:
            remove_tree(self.root)
        except Exception:  # noqa: BLE001 — cleanup must not cost a grade; what is left is reported by tests
            pass

    def __enter__(self) -> "Sandbox":
        return self

    def __exit__(self, *exc) -> None:
        self.cleanup()

    # --- command line -----------------------------------------------------------------------

    def _command(self, argv: list[str], cwd: str, env: dict[str, str], cgroup: "_Cgroup") -> list[str]:
        limits = self.limits
        rlimits = [f"--cpu={limits.cpu_seconds}", f"--fsize={limits.file_bytes}",
                   f"--nofile={limits.open_files}", "--core=0"]
        if not cgroup.ok:
            rlimits += [f"--as={limits.memory_bytes}", f"--nproc={limits.pids}"]
        full_env = self._environment(env)
        if self.isolate:
            inner = self._bwrap(full_env, cwd) + ["--"] + argv
        else:
            inner = ["env", "-i", *[f"{k}={v}" for k, v in full_env.items()]] + argv
            inner = ["sh", "-c", 'cd "$1" && shift && exec "$@"', "sh", self.path(cwd)] + inner
        join = 'while [ "$1" != "--" ]; do echo $$ > "$1" || exit 97; shift; done; shift; exec "$@"'
        return ["sh", "-c", join, "sh", *cgroup.procs_files, "--", "prlimit", *rlimits, "--", *inner]

    def _environment(self, extra: dict[str, str]) -> dict[str, str]:
        home = INSIDE_HOME if self.isolate else str(self.home)
        venv_bin = str(Path(sys.executable).parent)
        env = {
            "PATH": f"{venv_bin}:/usr/local/bin:/usr/bin:/bin", "HOME": home, "USER": "learner",
            "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8", "PYTHONUNBUFFERED": "1", "PYTHONDONTWRITEBYTECODE": "1",
            "MPLBACKEND": "Agg", "MPLCONFIGDIR": f"{home}/.config/matplotlib",
            "JUPYTER_RUNTIME_DIR": f"{home}/.local/share/jupyter/runtime", "IPYTHONDIR": f"{home}/.ipython",
            "MLOPS_GRADING": "1", "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
            "DO_NOT_TRACK": "1", "MLFLOW_DISABLE_TELEMETRY": "true", "BENTOML_DO_NOT_TRACK": "true",
            "DVC_NO_ANALYTICS": "1", "GIT_CONFIG_NOSYSTEM": "1", "PYDEVD_DISABLE_FILE_VALIDATION": "1",
        }
        env.update({k: os.environ[k] for k in _PASSTHROUGH if k in os.environ})
        env.update(extra)
        return env

    def _bwrap(self, env: dict[str, str], cwd: str) -> list[str]:
        args = ["bwrap", "--unshare-all", "--die-with-parent", "--new-session", "--cap-drop", "ALL",
                "--uid", str(SANDBOX_UID), "--gid", str(SANDBOX_UID), "--hostname", "sandbox",
                "--ro-bind", "/usr", "/usr"]
        for top in ("/bin", "/sbin", "/lib", "/lib32", "/lib64"):
            if os.path.islink(top):
                args += ["--symlink", os.readlink(top), top]
            elif os.path.isdir(top):
                args += ["--ro-bind", top, top]
        for etc in ("/etc/ld.so.cache", "/etc/ld.so.conf", "/etc/ld.so.conf.d", "/etc/localtime", "/etc/hosts",
                    "/etc/nsswitch.conf", "/etc/fonts", "/etc/alternatives", "/etc/mime.types", "/etc/ssl"):
            args += ["--ro-bind-try", etc, etc]
        etc_dir = self.root / ".etc"
        etc_dir.mkdir(exist_ok=True)
        (etc_dir / "passwd").write_text(f"learner:x:{SANDBOX_UID}:{SANDBOX_UID}:learner:{INSIDE_HOME}:/bin/sh\n")
        (etc_dir / "group").write_text(f"learner:x:{SANDBOX_UID}:\n")
        args += ["--ro-bind", str(etc_dir / "passwd"), "/etc/passwd",
                 "--ro-bind", str(etc_dir / "group"), "/etc/group"]
        args += ["--proc", "/proc", "--dev", "/dev", "--tmpfs", "/tmp", "--tmpfs", "/var/tmp",
                 "--tmpfs", "/home", "--dir", INSIDE_HOME, "--dir", "/sandbox"]
        # after the private /tmp and /home, so a checkout under /tmp or /home stays visible
        for prefix in sorted({os.path.realpath(sys.base_prefix), sys.base_prefix, sys.prefix}):
            args += ["--ro-bind", prefix, prefix]
        for name, (host, writable) in self.mounts.items():
            args += ["--bind" if writable else "--ro-bind", str(host), self.path(name)]
        for extra in _library_dirs():
            args += ["--ro-bind", extra, extra]
        args += ["--remount-ro", "/"]  # bwrap's root (a tmpfs holding the mount points) is no scratch space
        args += ["--chdir", self.path(cwd), "--clearenv"]
        for key, value in env.items():
            args += ["--setenv", key, value]
        return args


@functools.lru_cache(maxsize=1)
def _library_dirs() -> tuple[str, ...]:
    """The course library (mlops_kit) where an editable install points; never the grader."""
    import importlib.util

    spec = importlib.util.find_spec("mlops_kit")
    if spec is None or not spec.submodule_search_locations:
        return ()
    location = os.path.realpath(list(spec.submodule_search_locations)[0])
    if location.startswith(os.path.realpath(sys.prefix)):
        return ()  # a regular install: already inside the venv
    return (location,)


_RUNNING: set = set()  # every sandbox process running now, for stop_all()


def stop_all() -> int:
    """Kill every sandboxed job running in this process (Ctrl-C on a batch); how many there were."""
    running = list(_RUNNING)
    for proc in running:
        _kill_group(proc.pid)
    return len(running)


def remove_tree(root: Path) -> None:
    """Delete `root` and everything under it, iteratively, making unwritable directories writable first."""
    root = str(root)
    if not os.path.lexists(root):
        return
    if not stat.S_ISDIR(os.lstat(root).st_mode):
        os.unlink(root)
        return
    stack, order = [root], []
    while stack:  # depth-first listing; directories are removed in reverse order of discovery
        directory = stack.pop()
        order.append(directory)
        try:
            os.chmod(directory, 0o700)
            with os.scandir(directory) as entries:
                for entry in entries:
                    if entry.is_dir(follow_symlinks=False):
                        stack.append(entry.path)
                    else:
                        try:
                            os.unlink(entry.path)
                        except OSError:
                            pass
        except OSError:
            continue
    for directory in reversed(order):
        try:
            os.rmdir(directory)
        except OSError:
            pass


def _load() -> float:
    try:
        return os.getloadavg()[0]
    except OSError:
        return 0.0


def _host_env_for_launch() -> dict[str, str]:
    """The launcher (sh, prlimit, bwrap) sees only PATH; the sandbox gets its own clean environment."""
    return {"PATH": os.environ.get("PATH", "/usr/bin:/bin")}


def _over_disk(roots: list[Path], limits: Limits) -> bool:
    """Whether the writable mounts together hold more than the disk limits allow (links are not followed)."""
    used = count = 0
    stack = [str(r) for r in roots]
    while stack:
        try:
            with os.scandir(stack.pop()) as entries:
                for entry in entries:
                    count += 1
                    try:
                        info = entry.stat(follow_symlinks=False)
                    except OSError:
                        continue
                    used += info.st_blocks * 512
                    if entry.is_dir(follow_symlinks=False):
                        stack.append(entry.path)
                    if used > limits.disk_bytes or count > limits.disk_files:
                        return True
        except OSError:
            continue
    return False


def _kill_group(pid: int) -> None:
    try:
        os.killpg(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


class _Drain(threading.Thread):
    """Reads a pipe to its end, keeping its first `limit` bytes and its last `TAIL` bytes.

    The tail survives a flood, so a status line written last is never lost.
    """

    TAIL = 64 * 1024

    def __init__(self, pipe, limit: int):
        super().__init__(daemon=True)
        self.pipe, self.limit, self.chunks, self.kept, self.truncated = pipe, limit, [], 0, False
        self.tail = bytearray()
        self.start()

    def run(self) -> None:
        while chunk := self.pipe.read1(65536):
            if self.kept < self.limit:
                head = chunk[: self.limit - self.kept]
                self.chunks.append(head)
                self.kept += len(head)
                chunk = chunk[len(head):]
            if chunk:
                self.truncated = True
                self.tail += chunk
                if len(self.tail) > 2 * self.TAIL:
                    del self.tail[: len(self.tail) - self.TAIL]
        self.pipe.close()

    def text(self) -> str:
        head = b"".join(self.chunks).decode("utf-8", errors="replace")
        if not self.truncated:
            return head
        tail = bytes(self.tail[-self.TAIL:]).decode("utf-8", errors="replace")
        return f"{head}\n[... output dropped ...]\n{tail}"


class _Cgroup:
    """A memory + pids cgroup (v1 hierarchies or v2) for one job, where this machine allows one."""

    def __init__(self, dirs: list[Path], version: int):
        self.dirs, self.version = dirs, version

    @property
    def ok(self) -> bool:
        return bool(self.dirs)

    @property
    def procs_files(self) -> list[str]:
        return [str(d / "cgroup.procs") for d in self.dirs]

    @classmethod
    def create(cls, limits: Limits) -> "_Cgroup":
        name = f"mlops-grade-{uuid.uuid4().hex[:12]}"
        try:
            v1 = cls._create_v1(name, limits)
            if v1:
                return v1
        except OSError:
            pass
        return cls([], 0)

    @classmethod
    def _create_v1(cls, name: str, limits: Limits) -> "_Cgroup | None":
        base = Path("/sys/fs/cgroup")
        memory, pids = base / "memory", base / "pids"
        if not (memory / "cgroup.procs").exists() or not (pids / "cgroup.procs").exists():
            return None
        own = _own_cgroup_v1()
        made: list[Path] = []
        try:
            for root, controller in ((memory, "memory"), (pids, "pids")):
                path = root / own.get(controller, "/").lstrip("/") / name
                path.mkdir()
                made.append(path)
            (made[0] / "memory.limit_in_bytes").write_text(str(limits.memory_bytes))
            try:
                (made[0] / "memory.memsw.limit_in_bytes").write_text(str(limits.memory_bytes))
            except OSError:
                pass  # no swap accounting here; there is no swap either
            (made[1] / "pids.max").write_text(str(limits.pids))
        except OSError:
            for path in made:
                _rmdir(path)
            return None
        cpu = base / "cpuacct"
        if (cpu / "cpuacct.usage").exists():  # optional: only for telling a busy machine from a slow job
            try:
                path = cpu / own.get("cpuacct", "/").lstrip("/") / name
                path.mkdir()
                made.append(path)
            except OSError:
                pass
        return cls(made, 1)

    def cpu_seconds(self) -> float | None:
        for path in self.dirs[2:]:
            try:
                return int((path / "cpuacct.usage").read_text()) / 1e9
            except (OSError, ValueError):
                return None
        return None

    def oom_killed(self) -> bool:
        if not self.dirs:
            return False
        try:
            for line in (self.dirs[0] / "memory.oom_control").read_text().splitlines():
                if line.startswith("oom_kill ") and int(line.split()[1]) > 0:
                    return True
            return int((self.dirs[0] / "memory.failcnt").read_text()) > 0 and False
        except (OSError, ValueError):
            return False

    def kill(self) -> None:
        """SIGKILL every process still in the job's cgroup (ones that left the process group too)."""
        for path in self.dirs[:1]:
            try:
                pids = [int(p) for p in (path / "cgroup.procs").read_text().split()]
            except OSError:
                continue
            for pid in pids:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass

    def destroy(self) -> None:
        for path in self.dirs:
            for _ in range(50):
                try:
                    pids = [int(p) for p in (path / "cgroup.procs").read_text().split()]
                except OSError:
                    break
                if not pids:
                    break
                for pid in pids:
                    try:
                        os.kill(pid, signal.SIGKILL)
                    except ProcessLookupError:
                        pass
                time.sleep(0.02)
            _rmdir(path)


def _own_cgroup_v1() -> dict[str, str]:
    """This process's cgroup path for each v1 controller."""
    found = {}
    for line in Path("/proc/self/cgroup").read_text().splitlines():
        _, controllers, path = line.split(":", 2)
        for controller in controllers.split(","):
            found[controller] = path
    return found


def _rmdir(path: Path) -> None:
    for _ in range(50):
        try:
            path.rmdir()
            return
        except FileNotFoundError:
            return
        except OSError:
            time.sleep(0.02)
