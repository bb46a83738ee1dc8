"""Run untrusted commands in a bubblewrap sandbox with limits; one fresh sandbox per job.

Inside: no network (its own network namespace with loopback only), its own PID, IPC, UTS and
user namespaces, no capabilities, a private /tmp, /var/tmp, /dev/shm and HOME, a read-only root, /dev,
system, Python and venv, and only the named mounts (`/sandbox/<name>`), of which only writable ones can
be written. The grader's files, other submissions and the grader's environment variables are not there.
Limits: wall clock (the whole process tree is killed), CPU seconds, memory and process count
(a cgroup, v1 or delegated v2, where one can be made: grader/cgroups.py; rlimits otherwise), file size,
open files, captured output (head and tail kept), and disk use (bytes and files) of every writable
place. Every writable place, the private /tmp, /var/tmp, /dev/shm and HOME included, is a directory
of the job's own directory, so one quota covers them all: where the grader may mount (root), the job
directory is a tmpfs of exactly the quota's size and inode count, so the kernel stops a flood at the
limit (`disk_quota="tmpfs"`); elsewhere the directories are scanned (0.02-1 s apart, sooner as the job
nears the limit) and the job is killed beyond the quota (`disk_quota="polled"`; the result reports what
it had written when stopped).

`isolate=False` runs the same command without bubblewrap (limits and a scrubbed environment
still apply): for a learner's self-check on a machine without it, never for grading others.
"""

from __future__ import annotations

import ctypes
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
from dataclasses import dataclass, field
from pathlib import Path

from grader import cgroups

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
    disk_bytes: int = 2 * 2**30  # what the job may add to all its writable places together (tmpfs or polled)
    disk_files: int = 100_000  # files and directories it may add there (tmpfs inodes or polled)


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
    disk_quota: str = ""  # how the disk limits applied: "tmpfs" (kernel-enforced) or "polled" (scanned)
    disk_bytes_used: int | None = None  # what the job had added to its writable places when it ended or stopped
    disk_files_used: int | None = None
    cgroup_version: int = 0  # 1 or 2: job-wide memory and pids limits applied; 0: per-process rlimits

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

    def __init__(self, limits: Limits = Limits(), isolate: bool = True, root: Path | None = None,
                 quota: str | None = None):
        """`quota`: "tmpfs", "polled", or None for the best this host gives ($MLOPS_GRADE_QUOTA overrides)."""
        if isolate and (reason := probe_bubblewrap()):
            raise SandboxUnavailable(reason)
        self.limits, self.isolate = limits, isolate
        self.root = Path(root or tempfile.mkdtemp(prefix="mlops-grade-"))
        self.root.mkdir(parents=True, exist_ok=True)
        self.mounts: dict[str, tuple[Path, bool]] = {}
        wanted = quota or os.environ.get("MLOPS_GRADE_QUOTA") or "tmpfs"
        self.mounted = wanted == "tmpfs" and _mount_tmpfs(self.root, limits)
        self.quota = "tmpfs" if self.mounted else "polled"
        self.home = self.root / "home"
        self.home.mkdir(parents=True, exist_ok=True)
        self.scratch = {inside: self.root / ".scratch" / name for inside, name in _SCRATCH.items()}
        for path in self.scratch.values():
            path.mkdir(parents=True, exist_ok=True)

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
            timeout: float | None = None, zygote=None) -> RunResult:
        """Run `argv` (inside paths) with working directory `cwd` (a mount name).

        With `zygote` (grader.entrants) and `argv` of the form `python -I tool.py args...` (or `python -I -c code
        args...`), the process is an entrant forked from that zygote into this same sandbox; where it cannot be,
        the classic way."""
        limits = self.limits
        timeout = timeout or limits.wall_seconds
        cgroup = cgroups.create(limits)
        notes = [] if cgroup.ok else ["no cgroup could be made: memory is limited per process, processes by rlimit"]
        watch = _DiskWatch(self)
        start = time.monotonic()
        started = None
        if zygote is not None and self.isolate and argv[1:2] == ["-I"] and len(argv) > 2:
            started = self._start_entrant(zygote, argv, cwd, env or {}, cgroup)
        if started is None:
            proc = subprocess.Popen(self._command(argv, cwd, env or {}, cgroup), stdin=subprocess.DEVNULL,
                                    stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True,
                                    env=_host_env_for_launch(), cwd=self.root)
            entrant, stdout, stderr = None, proc.stdout, proc.stderr
        else:
            proc, entrant, stdout, stderr = started
        _RUNNING.add(proc)
        out, err = _Drain(stdout, limits.output_bytes), _Drain(stderr, limits.output_bytes)
        timed_out = disk_exceeded = False
        deadline = start + timeout
        load, next_load = _load(), 0.0

        def ended(seconds: float) -> bool:
            if entrant is not None:
                return entrant.wait(seconds)
            try:
                proc.wait(timeout=seconds)
                return True
            except subprocess.TimeoutExpired:
                return False

        try:
            while True:
                if time.monotonic() >= next_load:
                    load, next_load = max(load, _load()), time.monotonic() + 1.0
                if ended(max(0.0, min(watch.interval, deadline - time.monotonic()))):
                    break
                if time.monotonic() >= deadline:
                    timed_out = True
                    break
                if watch.exceeded():
                    disk_exceeded = True
                    break
            if timed_out or disk_exceeded:
                _kill_group(proc.pid)
                cgroup.kill()
                proc.wait()
        finally:
            _kill_group(proc.pid)
            if entrant is not None:
                entrant.wait(10.0)  # the sandbox is gone: its entrant too, and the report follows at once
                entrant.close()
            proc.wait()
            _RUNNING.discard(proc)
            out_of_memory = cgroup.oom_killed()
            cpu_seconds = cgroup.cpu_seconds()
            cgroup.destroy()
            out.join(), err.join()
        returncode = proc.returncode
        if entrant is not None:
            returncode = entrant.returncode if entrant.returncode is not None else 125
            if entrant.error:
                notes.append(f"the tool's process could not be started in the sandbox: {entrant.error}")
        if not disk_exceeded and not timed_out:
            disk_exceeded = watch.exceeded()  # it stopped by itself on a full quota (ENOSPC) before a check saw it
        used_bytes, used_files = watch.used()
        if disk_exceeded:
            notes.append(f"the job wrote more than {limits.disk_bytes / 2**20:.0f} MB or {limits.disk_files} files "
                         f"and was stopped ({watch.describe(used_bytes, used_files)})")
        return RunResult(
            returncode=returncode, stdout=out.text(), stderr=err.text(),
            seconds=time.monotonic() - start, timed_out=timed_out, out_of_memory=out_of_memory,
            output_truncated=out.truncated or err.truncated, disk_exceeded=disk_exceeded, notes=notes,
            cpu_seconds=cpu_seconds, load=load, disk_quota=self.quota, disk_bytes_used=used_bytes,
            disk_files_used=used_files, cgroup_version=cgroup.version if cgroup.ok else 0,
        )

    def _start_entrant(self, zygote, argv: list[str], cwd: str, env: dict[str, str], cgroup):
        """The sandbox with its placeholder, and the tool's process forked into it: (placeholder, entrant,
        stdout, stderr); None (nothing left running) where that cannot be done."""
        from grader import entrants

        limits = self.limits
        hold = subprocess.Popen(self._command([entrants.HOLD, "infinity"], cwd, env, cgroup, hold=True),
                                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                start_new_session=True, env=_host_env_for_launch(), cwd=self.root)
        target = entrants.find_placeholder(hold)
        rlimits = {"cpu": limits.cpu_seconds, "fsize": limits.file_bytes, "nofile": limits.open_files, "core": 0}
        if not cgroup.ok:
            rlimits.update({"as": limits.memory_bytes, "nproc": limits.pids})
        request = {"target": target, "cgroup_procs": cgroup.procs_files, "rlimits": rlimits, "argv": argv,
                   "env": self._environment(env), "cwd": self.path(cwd),
                   **({"code": argv[3], "args": argv[4:]} if argv[2] == "-c" else {"tool": argv[2], "args": argv[3:]})}
        out_r, out_w = os.pipe()
        err_r, err_w = os.pipe()
        try:
            if target is None:
                raise entrants.EntrantError("the placeholder did not start")
            entrant = zygote.spawn(request, out_w, err_w)
        except entrants.EntrantError:
            _kill_group(hold.pid)
            hold.wait()
            for fd in (out_r, err_r):
                os.close(fd)
            return None
        finally:
            os.close(out_w)
            os.close(err_w)
        return hold, entrant, os.fdopen(out_r, "rb"), os.fdopen(err_r, "rb")

    def writable_places(self) -> list[Path]:
        """Every host directory the job can write to: writable mounts, HOME, /tmp, /var/tmp, /dev/shm."""
        return [self.home, *self.scratch.values(), *(host for host, rw in self.mounts.values() if rw)]

    def cleanup(self) -> bool:
        """Remove the job's files (a tmpfs job dir is unmounted), even directories the job made unwritable;
        never raises, never recurses (a chain of thousands of nested directories is fine), never follows
        links. Whether the job dir is gone."""
        try:
            if self.mounted:
                _umount(self.root)
            return remove_tree(self.root)
        except Exception:  # noqa: BLE001 — cleanup must not cost a grade; what is left is reported by tests
            return False

    def __enter__(self) -> "Sandbox":
        return self

    def __exit__(self, *exc) -> None:
        self.cleanup()

    # --- command line -----------------------------------------------------------------------

    def _command(self, argv: list[str], cwd: str, env: dict[str, str], cgroup: cgroups.JobCgroup,
                 hold: bool = False) -> list[str]:
        limits = self.limits
        rlimits = [f"--cpu={limits.cpu_seconds}", f"--fsize={limits.file_bytes}",
                   f"--nofile={limits.open_files}", "--core=0"]
        if not cgroup.ok:
            rlimits += [f"--as={limits.memory_bytes}", f"--nproc={limits.pids}"]
        full_env = self._environment(env)
        if self.isolate:
            inner = self._bwrap(full_env, cwd, hold) + ["--"] + argv
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

    def _bwrap(self, env: dict[str, str], cwd: str, hold: bool = False) -> list[str]:
        """bubblewrap's arguments; `hold`: the command is an entrant's placeholder, run as the PID namespace's
        init (nothing inside can signal it) from a path whose name (its comm) tells it apart."""
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
        # the private writable places are the job dir's own directories, under its quota; /dev itself is read-only
        args += ["--proc", "/proc", "--dev", "/dev"]
        for inside, host in self.scratch.items():
            args += ["--bind", str(host), inside]
        args += ["--remount-ro", "/dev", "--dir", "/home", "--bind", str(self.home), INSIDE_HOME, "--dir", "/sandbox"]
        # after the private /tmp and /home, so a checkout under /tmp or /home stays visible
        for prefix in sorted({os.path.realpath(sys.base_prefix), sys.base_prefix, sys.prefix}):
            args += ["--ro-bind", prefix, prefix]
        for name, (host, writable) in self.mounts.items():
            args += ["--bind" if writable else "--ro-bind", str(host), self.path(name)]
        for extra in _library_dirs():
            args += ["--ro-bind", extra, extra]
        if hold:
            from grader.entrants import HOLD

            args += ["--as-pid-1", "--ro-bind", shutil.which("sleep") or "/usr/bin/sleep", HOLD]
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


def remove_tree(root: Path) -> bool:
    """Delete `root` and everything under it; whether it is gone. Never raises, never recurses, never
    follows links: it walks with directory file descriptors (two open at a time, so neither the depth nor
    PATH_MAX matter), makes directories the job made unreadable or unwritable accessible first, and skips
    what it cannot remove instead of looping on it."""
    root = os.path.abspath(os.fspath(root))
    try:
        info = os.lstat(root)
    except FileNotFoundError:
        return True
    except OSError:
        return False
    try:
        if not stat.S_ISDIR(info.st_mode):
            os.unlink(root)
        else:
            parent = os.open(os.path.dirname(root), os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
            try:
                name = os.path.basename(root)
                _empty_directory(parent, name)
                os.rmdir(name, dir_fd=parent)
            finally:
                os.close(parent)
    except OSError:
        pass
    return not os.path.lexists(root)


_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


def _open_directory(name: str, dir_fd: int | None) -> int:
    """Open directory `name` in `dir_fd` without following a link; made readable, writable, searchable."""
    try:
        fd = os.open(name, _DIR_FLAGS, dir_fd=dir_fd)
    except PermissionError:  # mode 000 made by the job (a link would have failed with ELOOP, not EACCES)
        os.chmod(name, 0o700, dir_fd=dir_fd)
        fd = os.open(name, _DIR_FLAGS, dir_fd=dir_fd)
    try:
        if stat.S_IMODE(os.fstat(fd).st_mode) & 0o700 != 0o700:
            os.fchmod(fd, 0o700)
    except OSError:
        pass
    return fd


def _empty_directory(parent: int, name: str) -> None:
    """Remove everything inside `parent`/`name`, depth first, holding one directory open at a time."""
    current = _open_directory(name, parent)
    ids = [(os.fstat(current).st_dev, os.fstat(current).st_ino)]
    names: list[str] = []
    stuck: set[tuple[int, int]] = set()  # directories that could not be entered or removed: skipped
    try:
        while True:
            child = child_id = None
            with os.scandir(current) as entries:
                for entry in entries:
                    try:
                        info = entry.stat(follow_symlinks=False)
                    except OSError:
                        continue
                    if stat.S_ISDIR(info.st_mode):
                        if (info.st_dev, info.st_ino) not in stuck:
                            child, child_id = entry.name, (info.st_dev, info.st_ino)
                            break
                        continue
                    try:
                        os.unlink(entry.name, dir_fd=current)
                    except OSError:
                        pass
            if child is not None:
                try:
                    below = _open_directory(child, current)
                except OSError:
                    stuck.add(child_id)
                    continue
                os.close(current)
                current = below
                names.append(child)
                ids.append(child_id)
                continue
            if not names:
                return
            above = os.open("..", _DIR_FLAGS & ~os.O_NOFOLLOW, dir_fd=current)
            if (os.fstat(above).st_dev, os.fstat(above).st_ino) != ids[-2]:
                os.close(above)
                return  # the tree was moved while it was being removed: stop rather than delete elsewhere
            os.close(current)
            current = above
            done, done_id = names.pop(), ids.pop()
            try:
                os.rmdir(done, dir_fd=current)
            except OSError:
                stuck.add(done_id)
    finally:
        os.close(current)


def _load() -> float:
    try:
        return os.getloadavg()[0]
    except OSError:
        return 0.0


def _host_env_for_launch() -> dict[str, str]:
    """The launcher (sh, prlimit, bwrap) sees only PATH; the sandbox gets its own clean environment."""
    return {"PATH": os.environ.get("PATH", "/usr/bin:/bin")}


_SCRATCH = {"/tmp": "tmp", "/var/tmp": "var_tmp", "/dev/shm": "shm"}  # inside path → dir under .scratch
_MS_NOSUID, _MS_NODEV, _MS_REMOUNT, _MNT_DETACH = 2, 4, 32, 2
FULL_SLACK = 2**20  # a tmpfs quota with less than this free (or no inode free) counts as exhausted


@functools.lru_cache(maxsize=1)
def _libc():
    return ctypes.CDLL(None, use_errno=True)


def _mount_tmpfs(root: Path, limits: Limits, remount: bool = False, size: int = 0, inodes: int = 0) -> bool:
    """Mount a tmpfs on the job dir (the grader's own inputs and the job's quota fit); needs CAP_SYS_ADMIN."""
    if not sys.platform.startswith("linux"):
        return False
    size = size or 2 * limits.disk_bytes + 256 * 2**20  # tightened to used + quota when the job starts
    inodes = inodes or 2 * limits.disk_files + 10_000
    options = f"size={size},nr_inodes={inodes}" + ("" if remount else ",mode=0700")
    flags = _MS_NOSUID | _MS_NODEV | (_MS_REMOUNT if remount else 0)
    try:
        done = _libc().mount(b"tmpfs", os.fsencode(root), b"tmpfs", flags, options.encode())
    except (OSError, AttributeError):
        return False
    return done == 0


def _umount(root: Path) -> None:
    try:
        _libc().umount2(os.fsencode(root), _MNT_DETACH)
    except (OSError, AttributeError):
        pass


@functools.lru_cache(maxsize=1)
def tmpfs_quota_available() -> str | None:
    """None when job dirs can be size- and inode-bounded tmpfs mounts here, else why not."""
    probe = Path(tempfile.mkdtemp(prefix="mlops-grade-probe-"))
    try:
        if _mount_tmpfs(probe, Limits(disk_bytes=2**20, disk_files=10)):
            _umount(probe)
            return None
        err = ctypes.get_errno()
        return f"mounting a tmpfs failed ({os.strerror(err) if err else 'not Linux'}; it needs root)"
    finally:
        remove_tree(probe)


class _DiskWatch:
    """The quota on everything the job writes: measured against what the job dir held when the job started.

    tmpfs: the job dir is remounted with size = used + disk_bytes and nr_inodes = used + disk_files, so
    writes fail at the limit (ENOSPC); the watch sees the exhausted filesystem (statvfs, every 0.05 s) and
    stops the job. polled: the writable places are scanned (links not followed) and the job is stopped at the
    first scan beyond the limit. Entries are counted by reading directories (cheap), bytes by a stat of each
    entry, each on its own cadence: ten times what its last scan took (a tenth of a core; 0.05-1 s), but
    while the figure grows, within 0.25 s and a quarter of the time its growth rate needs to reach the limit
    (down to 0.02 s): a flood is caught about one scan's time past the limit.
    """

    def __init__(self, sandbox: Sandbox):
        self.sandbox, self.limits, self.tmpfs = sandbox, sandbox.limits, sandbox.quota == "tmpfs"
        self.interval, self.last, self.previous, self.next_sizes = 0.05, (0, 0), {}, 0.0
        if self.tmpfs:
            used, files, _, _ = self._statvfs()
            if _mount_tmpfs(sandbox.root, self.limits, remount=True, size=used + self.limits.disk_bytes,
                            inodes=files + self.limits.disk_files):
                self.base = (used, files)
                return
            self.tmpfs, sandbox.quota = False, "polled"  # the remount failed: scan instead
        self.base = _scan(sandbox.writable_places(), None)

    def _statvfs(self) -> tuple[int, int, int, int]:
        found = os.statvfs(self.sandbox.root)
        used = (found.f_blocks - found.f_bfree) * found.f_frsize
        return used, found.f_files - found.f_ffree, found.f_bavail * found.f_frsize, found.f_favail

    def used(self) -> tuple[int, int]:
        """Bytes and files the job added (at least 0)."""
        try:
            if self.tmpfs:
                used, files, _, _ = self._statvfs()
            else:
                used, files = _scan(self.sandbox.writable_places(), None)
        except OSError:
            used, files = self.last
        self.last = (used, files)
        return max(0, used - self.base[0]), max(0, files - self.base[1])

    def exceeded(self) -> bool:
        if self.tmpfs:
            try:
                _, _, free, free_files = self._statvfs()
            except OSError:
                return False
            return free < min(FULL_SLACK, self.limits.disk_bytes // 10) or free_files <= 0
        bound = (self.base[0] + self.limits.disk_bytes, self.base[1] + self.limits.disk_files)
        places = self.sandbox.writable_places()
        # entries are counted by reading directories only (about 6x cheaper than a stat each), every time;
        # bytes need a stat of every entry, so that scan runs on its own, slower cadence
        began = time.monotonic()
        counted = _scan(places, (None, bound[1]), sizes=False)
        now = time.monotonic()
        if counted is None:
            return True
        self.interval = self._cadence("count", now, now - began, counted[1], bound[1])
        if now >= self.next_sizes:
            found = _scan(places, bound)
            done = time.monotonic()
            if found is None:
                return True
            self.next_sizes = done + self._cadence("bytes", done, done - now, found[0], bound[0])
        return False

    def _cadence(self, what: str, now: float, took: float, have: int, limit: int) -> float:
        """Seconds to the next scan: ten times this one took (a tenth of a core), 0.05-1 s; while it grows,
        within 0.25 s and a quarter of the time its growth rate needs to reach the limit (down to 0.02 s)."""
        cadence = min(1.0, max(0.05, 10 * took))
        previous = self.previous.get(what)
        if previous and have > previous[1]:
            rate = (have - previous[1]) / max(now - previous[0], 1e-3)
            cadence = max(0.02, min(cadence, 0.25, (limit - have) / rate / 4))
        self.previous[what] = (now, have)
        return cadence

    def describe(self, used: int, files: int) -> str:
        found = f"{used / 2**20:.1f} MB and {files} files added"
        if self.tmpfs:
            return f"the job dir is a tmpfs of that size: writes failed at the limit; {found}"
        return f"found by a scan of the writable places (no tmpfs quota here): {found} when it stopped"


def _scan(roots: list[Path], bound: tuple[int | None, int] | None, sizes: bool = True) -> tuple[int, int] | None:
    """Bytes (blocks; 0 without `sizes`) and entries under `roots` (links not followed); None as soon as
    either passes `bound` (a bound of None is not checked).

    Walks by directory file descriptors where paths get long (a chain deeper than PATH_MAX is counted too)
    and opens up directories the job locked (mode 000) rather than skipping what is in them."""
    used = count = 0
    max_bytes, max_count = bound if bound else (None, None)
    anchors: list[int] = []
    stack: list[tuple[int | None, str]] = [(None, str(r)) for r in roots]  # (directory fd or None, path from it)
    try:
        while stack:
            anchor, rel = stack.pop()
            try:
                fd = _open_directory(rel, anchor)
            except OSError:
                continue
            if len(rel) > 1024:  # deep: what is below is named from this directory from now on
                anchors.append(fd)
                anchor, rel, keep = fd, "", True
            else:
                keep = False
            try:
                with os.scandir(fd) as entries:
                    for entry in entries:
                        count += 1
                        try:
                            if sizes:
                                info = entry.stat(follow_symlinks=False)
                                used += info.st_blocks * 512
                                is_dir = stat.S_ISDIR(info.st_mode)
                            else:
                                is_dir = entry.is_dir(follow_symlinks=False)  # the directory entry's type: no stat
                        except OSError:
                            continue
                        if is_dir:
                            stack.append((anchor, f"{rel}/{entry.name}" if rel else entry.name))
                        if (max_count is not None and count > max_count) or (max_bytes is not None and used > max_bytes):
                            return None
            except OSError:
                pass
            finally:
                if not keep:
                    os.close(fd)
    finally:
        for fd in anchors:
            os.close(fd)
    return used, count


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
    """Kept for callers of the old name: `_Cgroup.create(limits)` is `grader.cgroups.create(limits)`."""

    create = staticmethod(cgroups.create)
