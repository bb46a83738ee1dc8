"""`mlops-grade doctor`: which isolation features this host gives the grader, and what each missing one costs.

Each feature is probed for real (a tiny sandbox, a cgroup made and removed, a tmpfs mounted and unmounted),
never guessed from the kernel version. Nothing here changes a grade; it tells an instructor what the
sandbox guarantees on this machine (docs/threat-model.md).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from dataclasses import dataclass

from grader import cgroups


@dataclass
class Feature:
    name: str
    ok: bool
    detail: str  # ok: what is used; missing: why, and what it costs

    def line(self) -> str:
        return f"{self.name:<40} {'ok' if self.ok else 'missing'}: {self.detail}"


def _bwrap(*flags: str) -> str | None:
    """None when `bwrap <flags> true` runs here, else its error."""
    bwrap = shutil.which("bwrap")
    if not bwrap:
        return "bwrap is not installed"
    try:
        done = subprocess.run([bwrap, *flags, "--die-with-parent", "--ro-bind", "/", "/", "true"],
                              capture_output=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired) as err:
        return str(err)
    return None if done.returncode == 0 else done.stderr.decode(errors="replace").strip()[:200] or "failed"


def bubblewrap() -> Feature:
    from grader.sandbox import probe_bubblewrap

    reason = probe_bubblewrap()
    if reason:
        return Feature("bubblewrap", False, f"{reason}; grading refuses to start without --no-sandbox, "
                       "self-checks run unsandboxed")
    try:
        version = subprocess.run(["bwrap", "--version"], capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        version = "bubblewrap"
    return Feature("bubblewrap", True, version or "bubblewrap")


def user_namespaces() -> Feature:
    reason = _bwrap("--unshare-user", "--uid", "1000")
    limit = _read("/proc/sys/user/max_user_namespaces")
    if reason:
        return Feature("user namespaces", False, f"{reason}; no sandbox can start (sandboxed code would run as "
                       "the grader's user)")
    return Feature("user namespaces", True, f"another uid, no capabilities (max_user_namespaces={limit or '?'})")


def pid_and_network_namespaces() -> list[Feature]:
    found = []
    for name, flag, cost in (("PID namespace", "--unshare-pid", "processes could outlive their job"),
                             ("network namespace", "--unshare-net", "sandboxed code could reach the network")):
        reason = _bwrap("--unshare-user", flag)
        found.append(Feature(name, reason is None, "its own, per job" if reason is None else f"{reason}; {cost}"))
    return found


def nested_sandbox() -> Feature:
    """Whether a probe can start learner code in an inner sandbox (harness.inner_sandbox_available), inside one."""
    from grader.sandbox import Limits, Sandbox, SandboxUnavailable

    try:
        box = Sandbox(Limits(wall_seconds=60))
    except SandboxUnavailable as err:
        return Feature("nested sandbox (learner code in probes)", False, f"{err}")
    try:
        tools = box.mount("tools")
        shutil.copy(os.path.join(os.path.dirname(__file__), "tools", "harness.py"), tools / "harness.py")
        code = ("import sys; sys.path.insert(0, sys.argv[1]); import harness; "
                "print('NESTED', harness.inner_sandbox_available())")
        run = box.run([sys.executable, "-I", "-c", code, box.path("tools")], cwd="tools")
    finally:
        box.cleanup()
    if "NESTED True" in run.stdout:
        return Feature("nested sandbox (learner code in probes)", True, "its own PID namespace and uid, the probe's "
                       "inputs and output hidden")
    why = (run.stderr.strip().splitlines() or [f"exit {run.returncode}"])[-1][:200]
    return Feature("nested sandbox (learner code in probes)", False, f"bubblewrap does not nest here ({why}); "
                   "learner code in probes runs in its own session inside the probe's sandbox, as the probe's user")


def cgroup() -> Feature:
    from grader.sandbox import Limits

    found = cgroups.host()
    job = cgroups.create(Limits())
    try:
        ok = job.ok
    finally:
        job.destroy()
    name = "job-wide memory and pids (cgroup)"
    if ok:
        return Feature(name, True, f"cgroup v{job.version} under {found.base}")
    mounted = {2: "cgroup v2", 1: "cgroup v1/hybrid"}.get(found.mount_version, "no cgroup fs")
    return Feature(name, False, f"{job.reason or found.reason} ({mounted} here). Cost: memory is limited per process "
                   "(RLIMIT_AS), processes per user (RLIMIT_NPROC counts every process of the grader's user), "
                   "and a job's CPU is not measured (a busy machine's timeout reads as the learner's). Fix: run as "
                   f"root, or under `systemd-run --user --scope -p Delegate=yes`, or set {cgroups.ENV_SUBTREE} "
                   "to a delegated cgroup v2 directory")


def disk_quota() -> Feature:
    from grader.sandbox import tmpfs_quota_available

    reason = tmpfs_quota_available()
    name = "work-dir quota (tmpfs size + inodes)"
    if reason is None:
        return Feature(name, True, "each job dir is a tmpfs with size= and nr_inodes= (the kernel stops a flood "
                       "at the limit; its files are in RAM and count against the job's memory)")
    return Feature(name, False, f"{reason}. Cost: the writable places are scanned instead (0.02-1 s apart, "
                   "sooner near the limit), so a fast flood overshoots the quota by a few percent before the job "
                   "is stopped")


def bwrap_tmpfs_size() -> Feature:
    try:
        text = subprocess.run(["bwrap", "--help"], capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.TimeoutExpired):
        text = ""
    ok = "--size" in text
    return Feature("tmpfs size limits (bwrap --size)", ok, "available (not needed: private /tmp, /dev/shm, HOME "
                   "are job-dir directories under the quota)" if ok else "this bubblewrap is older than 0.8; not "
                   "needed: private /tmp, /dev/shm, HOME are job-dir directories under the quota")


def entrants() -> Feature:
    """A zygote forks a process into a fresh sandbox, for real (grader/entrants.py)."""
    from grader import entrants as module
    from grader.sandbox import Limits, Sandbox, probe_bubblewrap

    name = "pre-imported entrants (grader/entrants.py)"
    cost = ("Cost: every notebook runner, kernel and probe is a fresh Python that imports its modules again "
            "(papermill 2 s, scikit-learn and pandas 2-3 s per process)")
    if os.environ.get("MLOPS_GRADE_ENTRANTS") == "0":
        return Feature(name, False, f"switched off (MLOPS_GRADE_ENTRANTS=0). {cost}")
    if not module.enabled():
        return Feature(name, False, f"the grader is not root here (entering a sandbox's namespaces needs it). {cost}")
    if probe_bubblewrap():
        return Feature(name, False, f"no sandbox to enter. {cost}")
    zygote = module.Zygote(("json",), ())
    try:
        with Sandbox(Limits(wall_seconds=30)) as box:
            box.mount("work", writable=True)
            run = box.run([sys.executable, "-I", "-c", "print('entered')"], cwd="work", zygote=zygote)
    finally:
        zygote.close()
    if run.stdout.strip() == "entered" and not run.notes:
        return Feature(name, True, "the notebook runner, its kernel and the heavy probes start from pre-imported "
                       "zygotes, each in its job's own fresh sandbox")
    return Feature(name, False, f"a test entrant failed ({(run.notes or [run.stderr.strip()[-200:]])[0]}). {cost}")


def features() -> list[Feature]:
    found = [bubblewrap(), user_namespaces(), *pid_and_network_namespaces()]
    found.append(nested_sandbox() if found[0].ok else Feature("nested sandbox (learner code in probes)", False,
                                                              "no bubblewrap"))
    found += [cgroup(), disk_quota(), bwrap_tmpfs_size(), entrants()]
    return found


def _read(path: str) -> str:
    try:
        with open(path) as handle:
            return handle.read().strip()
    except OSError:
        return ""
