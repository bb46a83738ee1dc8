"""Job-wide memory and process limits: one cgroup per sandboxed job, on cgroup v1 or a delegated v2 subtree.

`create(limits)` returns a `JobCgroup` whatever the host gives: `ok` says whether the job-wide limits
apply (else the sandbox falls back to per-process rlimits), `procs_files` are the files the launcher
writes its own PID into before it execs the sandbox (so every process of the job is inside from the
start), `add(pid)` puts a running process in, `cpu_seconds()` is the CPU the whole job used,
`oom_killed()` whether the kernel killed a process of it for memory, `kill()` SIGKILLs every process
in it, `destroy()` kills what is left and removes it (never raises).

Backends, tried in order (detected once per process, `host()` says which and why not):
- **v1** (`/sys/fs/cgroup/memory`, `/pids`, optional `/cpuacct`): a child of this process's own cgroup in
  each hierarchy; needs write access there (root, usually).
- **v2**: a child of a *delegated* subtree of the unified hierarchy, with `memory` and `pids` enabled in
  its `cgroup.subtree_control`: `$MLOPS_GRADE_CGROUP` (a path under the cgroup2 mount that an admin
  delegated); this process's own cgroup when it is alone there (e.g. started by
  `systemd-run --scope -p Delegate=yes …`: the grader moves itself into a leaf `grader` so that the
  scope can enable controllers for its jobs); or, as root, `<mount>/mlops-grade` under the root cgroup.
  A job writes `memory.max`, `memory.swap.max` (0), `pids.max`, joins through `cgroup.procs`, reads
  `cpu.stat`'s `usage_usec` and `memory.events`' `oom_kill`, and is killed through `cgroup.kill` where
  the kernel has it (5.14+), else process by process.

The cgroup root is injectable (`root=`), so the v2 code is tested against a fake tree in a temp dir.
"""

from __future__ import annotations

import functools
import os
import signal
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

CGROUP_ROOT = Path("/sys/fs/cgroup")
ENV_SUBTREE = "MLOPS_GRADE_CGROUP"  # a delegated cgroup v2 directory the grader may use for its jobs
V2_CONTROLLERS = ("memory", "pids")


class JobCgroup:
    """No cgroup: nothing is limited job-wide (the sandbox uses rlimits); every method is a no-op."""

    version = 0

    def __init__(self, dirs: list[Path] | None = None, reason: str = ""):
        self.dirs = list(dirs or [])
        self.reason = reason

    @property
    def ok(self) -> bool:
        return bool(self.dirs)

    @property
    def procs_files(self) -> list[str]:
        return [str(d / "cgroup.procs") for d in self.dirs]

    def add(self, pid: int) -> None:
        for path in self.procs_files:
            Path(path).write_text(str(pid))

    def pids(self) -> list[int]:
        found: set[int] = set()
        for path in self.dirs[:1]:
            try:
                found.update(int(p) for p in (path / "cgroup.procs").read_text().split())
            except (OSError, ValueError):
                pass
        return sorted(found)

    def cpu_seconds(self) -> float | None:
        return None

    def oom_killed(self) -> bool:
        return False

    def kill(self) -> None:
        """SIGKILL every process still in the job's cgroup (ones that left the process group too)."""
        for pid in self.pids():
            _sigkill(pid)

    def destroy(self) -> None:
        """Kill what is left, wait (up to a second) until it is gone, and remove the cgroup. Never raises."""
        try:
            for _ in range(50):
                alive = [pid for pid in self.pids() if _alive(pid)]
                if not alive:
                    break
                self.kill()
                time.sleep(0.02)
        except Exception:  # noqa: BLE001 — a cgroup left behind must not cost a grade
            pass
        for path in reversed(self.dirs):
            _rmdir(path)


class V1Cgroup(JobCgroup):
    """memory + pids (+ cpuacct when present) directories, one per v1 hierarchy."""

    version = 1

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
        except (OSError, ValueError):
            pass
        return False


class V2Cgroup(JobCgroup):
    """One directory in a delegated cgroup v2 subtree."""

    version = 2

    def cpu_seconds(self) -> float | None:
        for path in self.dirs[:1]:
            try:
                for line in (path / "cpu.stat").read_text().splitlines():
                    key, _, value = line.partition(" ")
                    if key == "usage_usec":
                        return int(value) / 1e6
            except (OSError, ValueError):
                return None
        return None

    def oom_killed(self) -> bool:
        for path in self.dirs[:1]:
            try:
                for line in (path / "memory.events").read_text().splitlines():
                    key, _, value = line.partition(" ")
                    if key == "oom_kill" and int(value) > 0:
                        return True
            except (OSError, ValueError):
                return False
        return False

    def kill(self) -> None:
        for path in self.dirs[:1]:
            try:
                if (path / "cgroup.kill").exists():
                    (path / "cgroup.kill").write_text("1")  # the kernel kills every process in it, forks too
            except OSError:
                pass
        super().kill()  # without cgroup.kill (kernel < 5.14), or where it did not take: one by one


# --- creating one ----------------------------------------------------------------------------------------


def create(limits, root: Path | None = None) -> JobCgroup:
    """A cgroup for one job with `limits.memory_bytes` and `limits.pids`, or a `JobCgroup` that is not ok."""
    name = f"mlops-grade-{uuid.uuid4().hex[:12]}"
    found = host(root)
    try:
        if found.version == 1:
            return _create_v1(Path(found.base), name, limits)
        if found.version == 2:
            return _create_v2(Path(found.base), name, limits)
    except OSError as err:
        return JobCgroup(reason=f"the job's cgroup could not be made: {err}")
    return JobCgroup(reason=found.reason)


@dataclass(frozen=True)
class Host:
    """What this host gives: version 1 or 2 with `base` (where job cgroups are made), or 0 and why not."""

    version: int
    base: str = ""
    reason: str = ""
    mount_version: int = 0  # the cgroup version mounted at the root (2: unified; 1: v1 or hybrid)


def host(root: Path | None = None) -> Host:
    """Which cgroup backend this process can use (decided once per root; a v2 leaf move happens once)."""
    return _host(str(root or CGROUP_ROOT), os.environ.get(ENV_SUBTREE, ""))


@functools.lru_cache(maxsize=8)
def _host(root: str, env_subtree: str) -> Host:
    base = Path(root)
    if (base / "memory" / "cgroup.procs").exists() and (base / "pids" / "cgroup.procs").exists():
        own = own_cgroups(base)
        probe = base / "memory" / own.get("memory", "/").lstrip("/")
        if os.access(probe, os.W_OK):
            return Host(1, str(base), mount_version=1)
        v1_reason = f"cgroup v1: {probe} is not writable (the grader is not root)"
    else:
        v1_reason = ""
    mount = _v2_mount(base)
    if mount is None:
        return Host(0, reason=v1_reason or f"no cgroup v1 memory/pids hierarchy and no cgroup v2 under {base}",
                    mount_version=1 if v1_reason else 0)
    found = select_v2_base(mount, own_cgroups(base).get("", "/"), env_subtree)
    if found.version == 0 and v1_reason:
        return Host(0, reason=f"{v1_reason}; {found.reason}", mount_version=found.mount_version)
    return found


def _v2_mount(base: Path) -> Path | None:
    """The unified hierarchy: `base` itself (a v2-only host) or `base/unified` (a hybrid one)."""
    for candidate in (base, base / "unified"):
        if (candidate / "cgroup.controllers").exists():
            return candidate
    return None


def select_v2_base(mount: Path, own: str, env_subtree: str = "") -> Host:
    """The delegated v2 directory job cgroups go in (memory and pids enabled for its children), or why none."""
    version = 2 if mount.name != "unified" else 1
    tried = []
    candidates = []
    if env_subtree:
        path = Path(env_subtree)
        candidates.append(("env", path if str(path).startswith(str(mount)) else mount / str(path).lstrip("/")))
    candidates.append(("own", mount / own.lstrip("/")))
    candidates.append(("root", mount / "mlops-grade"))
    for kind, path in candidates:
        try:
            reason = _prepare_v2(mount, path, kind)
        except OSError as err:
            reason = f"{path}: {err.strerror or err}"
        if reason is None:
            return Host(2, str(path), mount_version=version)
        tried.append(reason)
    return Host(0, reason="cgroup v2: no delegated subtree with memory and pids (" + "; ".join(tried) + ")",
                mount_version=version)


def _prepare_v2(mount: Path, path: Path, kind: str) -> str | None:
    """Make `path` a place for job cgroups (controllers enabled for its children); None if done, else why not."""
    if kind == "root":
        if os.geteuid() != 0:
            return "not root, so no cgroup of its own under the root cgroup"
        if not _has(mount / "cgroup.subtree_control", V2_CONTROLLERS):
            _enable(mount)
        path.mkdir(exist_ok=True)
    elif not path.is_dir():
        return f"{path} does not exist"
    if not _has(path / "cgroup.controllers", V2_CONTROLLERS):
        return f"{path} is not given the memory and pids controllers"
    if not os.access(path / "cgroup.subtree_control", os.W_OK) or not os.access(path, os.W_OK):
        return f"{path} is not delegated to this user"
    if _has(path / "cgroup.subtree_control", V2_CONTROLLERS):
        return None
    procs = _read_pids(path / "cgroup.procs")
    if procs and set(procs) - _this_process_tree():
        return f"{path} holds other processes too: start the grader in a scope of its own " \
               "(systemd-run --user --scope -p Delegate=yes mlops-grade …) or set MLOPS_GRADE_CGROUP"
    if procs:  # alone in our own cgroup (a delegated scope): move into a leaf, then enable for the jobs
        leaf = path / "grader"
        leaf.mkdir(exist_ok=True)
        for pid in procs:
            (leaf / "cgroup.procs").write_text(str(pid))
    _enable(path)
    return None if _has(path / "cgroup.subtree_control", V2_CONTROLLERS) else f"{path}: controllers did not enable"


def _enable(path: Path) -> None:
    (path / "cgroup.subtree_control").write_text(" ".join(f"+{c}" for c in V2_CONTROLLERS))


def _has(path: Path, names) -> bool:
    try:
        present = set(path.read_text().split())
    except OSError:
        return False
    return set(names) <= {p.lstrip("+") for p in present}


def _read_pids(path: Path) -> list[int]:
    try:
        return [int(p) for p in path.read_text().split()]
    except (OSError, ValueError):
        return []


def _this_process_tree() -> set[int]:
    """This process and its threads' process (cgroup.procs lists thread-group leaders) and its children."""
    mine = {os.getpid()}
    try:
        for entry in os.listdir("/proc"):
            if entry.isdigit():
                try:
                    fields = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
                except (OSError, IndexError):
                    continue
                if int(fields[1]) == os.getpid():
                    mine.add(int(entry))
    except OSError:
        pass
    return mine


def _create_v1(base: Path, name: str, limits) -> JobCgroup:
    memory, pids = base / "memory", base / "pids"
    own = own_cgroups(base)
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
    except OSError as err:
        for path in made:
            _rmdir(path)
        return JobCgroup(reason=f"cgroup v1: {err}")
    cpu = base / "cpuacct"
    if (cpu / "cpuacct.usage").exists():  # optional: only for telling a busy machine from a slow job
        try:
            path = cpu / own.get("cpuacct", "/").lstrip("/") / name
            path.mkdir()
            made.append(path)
        except OSError:
            pass
    return V1Cgroup(made)


def _create_v2(base: Path, name: str, limits) -> JobCgroup:
    path = base / name
    path.mkdir()
    try:
        (path / "memory.max").write_text(str(limits.memory_bytes))
        try:
            (path / "memory.swap.max").write_text("0")  # like memsw on v1: no swapping past the limit
        except OSError:
            pass  # no swap controller (no swap)
        (path / "pids.max").write_text(str(limits.pids))
    except OSError as err:
        _rmdir(path)
        return JobCgroup(reason=f"cgroup v2: {err}")
    return V2Cgroup([path])


def own_cgroups(base: Path | None = None, text: str | None = None) -> dict[str, str]:
    """This process's cgroup path per v1 controller, and under "" its v2 path (from /proc/self/cgroup)."""
    found: dict[str, str] = {}
    try:
        text = text if text is not None else Path("/proc/self/cgroup").read_text()
    except OSError:
        return found
    for line in text.splitlines():
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        _, controllers, path = parts
        for controller in controllers.split(","):
            found[controller] = path
    return found


def _alive(pid: int) -> bool:
    """Whether `pid` is still a running (not zombie) process."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in ("Z", "X")


def _sigkill(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def _rmdir(path: Path) -> None:
    for _ in range(50):
        try:
            path.rmdir()
            return
        except FileNotFoundError:
            return
        except OSError as err:
            if err.errno in (20, 39):  # not a directory / not empty (a fake tree's plain files): give up now
                return
            time.sleep(0.02)
