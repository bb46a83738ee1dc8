"""The shared in-sandbox side of every probe: arguments, inputs, a catch-all, strays killed, an atomic result.

Runs inside the sandbox, beside the probe script (the launcher copies both); it must not import the grader.
A probe is one function of (args, inputs) returning a JSON-able dict::

    from harness import probe_main

    def add_arguments(parser):            # the probe's own options (besides --work, --input, --out)
        parser.add_argument("--artifact", required=True)

    def probe(args, inputs) -> dict:      # inputs: name → numpy array, loaded without pickle
        ...

    if __name__ == "__main__":
        probe_main(probe, add_arguments)

What the harness guarantees, whatever the probe or the learner's code in it does:
- the process is made non-dumpable first (no /proc/<pid>/mem or ptrace from the sandbox's other processes);
- an exception becomes {"error": "..."} (the grader shows it as the probe's failure, never as a crash);
- before result.json is written, every other process in the sandbox's PID namespace is killed, so nothing
  the learner started (a daemon, an atexit hook in a child) can rewrite it afterwards;
- result.json is written once, atomically, with non-finite floats encoded as the strings "nan", "inf",
  "-inf" (data, not a crash: a learner's NaN metric is reported, not fatal).

`run_learner()` runs a command of the learner's (their tests, their CLI, their pipeline, their gate) in an
*inner* sandbox where bubblewrap nests: its own PID namespace, another uid, and no view of the probe's
output directory or inputs; outside that, in a child process of its own session.
"""

from __future__ import annotations

import argparse
import functools
import json
import math
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import traceback
from pathlib import Path

INNER_UID = 1001  # the learner's code inside a probe runs as another user than the probe itself
# Unimportable one sandbox further in, where /proc is the probe's (a fresh procfs cannot be mounted there): Dask
# calls psutil.Process() at import, which reads /proc/<the inner PID> — another process, or none, and then a crash
# (pandera imports Dask when it validates). No lab uses Dask; the grader's cohort backend runs outside sandboxes.
INNER_NOT_NEEDED = ("dask", "distributed")
_CAP = 4000


def retitle(argv: list[str], env: dict[str, str]) -> None:
    """Make /proc/self/cmdline and /proc/self/environ say `argv` and `env`: a forked process (an entrant of
    grader/entrants.py, the kernel the runner forks) would show its parent's. Written over this process's own
    argument and environment areas (cut to their size); with CAP_SYS_RESOURCE the areas end where the new text
    does, else NULs pad them."""
    import ctypes

    try:
        rest = Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()
        arg_start, arg_end, env_start, env_end = (int(rest[field - 3]) for field in (48, 49, 50, 51))
        libc = ctypes.CDLL(None, use_errno=True)
    except (OSError, ValueError, IndexError):
        return
    for start, end, items, option in ((arg_start, arg_end, argv, 9),  # PR_SET_MM_ARG_END
                                      (env_start, env_end, [f"{k}={v}" for k, v in env.items()], 11)):  # ENV_END
        if end <= start:
            continue
        data = b"".join(str(item).encode() + b"\0" for item in items)[: end - start]
        if not data.endswith(b"\0"):
            data = data[:-1] + b"\0"
        ctypes.memmove(start, data.ljust(end - start, b"\0"), end - start)
        libc.prctl(35, option, start + len(data), 0, 0)  # PR_SET_MM: refused without the capability (then padded)


def make_undumpable() -> None:
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(4, 0, 0, 0, 0)  # PR_SET_DUMPABLE = 0
    except (OSError, AttributeError):
        pass


def load_inputs(folder: Path) -> dict:
    """Every `<name>.npy` in `folder` (never pickles)."""
    import numpy as np

    return {p.stem: np.load(p, allow_pickle=False) for p in sorted(Path(folder).glob("*.npy"))}


def finite(value):
    """`value` with NaN and infinities replaced by "nan", "inf", "-inf" (strict JSON can hold them then)."""
    if isinstance(value, float) and not math.isfinite(value):
        return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")
    if isinstance(value, dict):
        return {str(k): finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite(v) for v in value]
    if hasattr(value, "item") and hasattr(value, "dtype"):  # numpy scalars
        return finite(value.item())
    return value


def write_result(out: Path, result: dict) -> None:
    """Write result.json atomically (a reader sees the whole file or none)."""
    text = json.dumps(finite(result), allow_nan=False, default=str)
    partial = Path(out) / ".result.json.tmp"
    partial.write_text(text, encoding="utf-8")
    partial.replace(Path(out) / "result.json")


def stop_strays() -> None:
    """Kill every process in this sandbox's PID namespace but this one and its ancestors.

    Only inside the sandbox (pid 1 is bubblewrap, or the placeholder an entrant of grader/entrants.py entered);
    outside it, /proc lists the user's other processes, which are none of our business.
    """
    try:
        if Path("/proc/1/comm").read_text().strip() not in ("bwrap", "mlops-hold"):
            return
    except OSError:
        return
    keep, pid = {1, os.getpid()}, os.getpid()
    while pid > 1:
        try:
            pid = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            break
        keep.add(pid)
    for _ in range(3):  # a fork bomb's children appear while we kill: sweep until none is left
        found = False
        for entry in os.listdir("/proc"):
            if entry.isdigit() and int(entry) not in keep:
                found = True
                try:
                    os.kill(int(entry), signal.SIGKILL)
                except OSError:
                    pass
        if not found:
            break


class _NotNeeded:
    """A meta-path entry that makes whole packages unimportable (`import torch` → ModuleNotFoundError)."""

    def __init__(self, blocked: tuple[str, ...]):
        self.blocked = set(blocked)

    def find_spec(self, name, path=None, target=None):
        if name.split(".", 1)[0] in self.blocked:
            raise ModuleNotFoundError(f"No module named {name!r} (this probe does not use it)", name=name)
        return None


BLOCKER = """\
# mlops-grade: modules not needed here fail to import (scikit-learn's estimator discovery, which skops runs
# at import, would otherwise load PyTorch for seconds of CPU in every graded notebook)
import sys as _sys


class _NotNeeded:
    blocked = {blocked!r}

    def find_spec(self, name, path=None, target=None):
        if name.split(".", 1)[0] in self.blocked:
            raise ModuleNotFoundError(f"No module named {{name!r}} (not needed here)", name=name)
        return None


_sys.meta_path.insert(0, _NotNeeded())
del _sys
"""


QUIETER = """\
# mlops-grade: renderers no check reads draw nothing (Evidently draws a plotly figure per column, ~80 % of a drift
# check); a renderer another release does not have is left alone
import sys as _sys


class _Quieter:
    targets = {targets!r}  # module -> ["Class.method", ...]
    meta_path = _sys.meta_path

    @staticmethod
    def draw_nothing(*args, **kwargs):
        return []

    def quiet(self, module):
        for path in self.targets.get(module.__name__, ()):
            owner, (*parents, name) = module, path.split(".")
            try:
                for parent in parents:
                    owner = getattr(owner, parent)
                if callable(getattr(owner, name, None)):
                    setattr(owner, name, self.draw_nothing)
            except AttributeError:
                pass

    def find_spec(self, name, path=None, target=None):
        if name not in self.targets:
            return None
        for finder in self.meta_path:
            if finder is not self and hasattr(finder, "find_spec"):
                spec = finder.find_spec(name, path, target)
                if spec is not None and spec.loader is not None:
                    run = spec.loader.exec_module
                    spec.loader.exec_module = lambda module: (run(module), self.quiet(module))
                    return spec
        return None


_quieter = _Quieter()
for _name in _quieter.targets:  # a module imported already
    if _name in _sys.modules:
        _quieter.quiet(_sys.modules[_name])
_sys.meta_path.insert(0, _quieter)
del _sys, _quieter
"""


def quieter_source(targets) -> str:
    """QUIETER for `targets` ("module:Class.method", ...): once a module is imported, its renderers draw nothing."""
    by_module: dict[str, list[str]] = {}
    for target in targets:
        module, _, path = str(target).partition(":")
        by_module.setdefault(module, []).append(path)
    return QUIETER.format(targets=by_module)


def site_customize(blocked: tuple[str, ...], quiet: tuple[str, ...] = ()) -> str:
    """A sitecustomize: `blocked` packages unimportable, `quiet` renderers drawing nothing."""
    return BLOCKER.format(blocked=tuple(blocked)) + (quieter_source(quiet) if quiet else "")


def write_site(folder: str, blocked: tuple[str, ...], quiet: tuple[str, ...] = ()) -> str:
    """`folder`/sitecustomize.py (see site_customize), readable by the inner uid; the folder."""
    Path(folder, "sitecustomize.py").write_text(site_customize(blocked, quiet), encoding="utf-8")
    os.chmod(Path(folder, "sitecustomize.py"), 0o644)
    os.chmod(folder, 0o755)
    return folder


def block_imports(names) -> None:
    """Make the packages `names` unimportable in this process (ModuleNotFoundError, as if not installed)."""
    sys.meta_path.insert(0, _NotNeeded(tuple(names)))


def probe_main(probe, add_arguments=None,
               not_needed: tuple[str, ...] = ("torch", "rfc3987_syntax", "dask", "distributed")) -> None:
    """Parse the standard arguments, run `probe(args, inputs)`, and write its result (see the module doc).

    `not_needed` packages cannot be imported in the probe: scikit-learn's estimator discovery (which skops runs
    at import) would otherwise load PyTorch, and jsonschema an IRI grammar: seconds of CPU per probe.
    """
    make_undumpable()
    if not_needed:
        block_imports(not_needed)
    parser = argparse.ArgumentParser()
    parser.add_argument("--work", required=True)
    parser.add_argument("--input", required=True)
    parser.add_argument("--out", required=True)
    if add_arguments:
        add_arguments(parser)
    args = parser.parse_args()
    try:
        result = probe(args, load_inputs(Path(args.input)))
        if not isinstance(result, dict):
            result = {"error": f"the probe returned {type(result).__name__}, not a result"}
    except BaseException as err:  # noqa: BLE001 — whatever happened, the grader gets a result
        where = traceback.extract_tb(err.__traceback__)[-1:] if err.__traceback__ else []
        line = f" (line {where[0].lineno})" if where else ""
        result = {"error": f"the probe failed: {type(err).__name__}: {str(err)[:_CAP]}{line}"}
    stop_strays()
    write_result(Path(args.out), result)


# --- the learner's code, one level further in ---------------------------------------------------------


@functools.lru_cache(maxsize=1)
def _runtime_under_tmp() -> tuple[str, ...]:
    """The interpreter's prefixes and the course library, where they lie under /tmp (hidden by a private /tmp)."""
    import importlib.util

    paths = {sys.prefix, sys.base_prefix, os.path.realpath(sys.prefix), os.path.realpath(sys.base_prefix)}
    spec = importlib.util.find_spec("mlops_kit")
    if spec is not None and spec.submodule_search_locations:
        paths.add(os.path.realpath(list(spec.submodule_search_locations)[0]))
    return tuple(sorted(p for p in paths if p == "/tmp" or p.startswith("/tmp/")))


@functools.lru_cache(maxsize=1)
def inner_sandbox_available() -> bool:
    """Whether bubblewrap can nest here (a user namespace inside the probe's)."""
    if not shutil.which("bwrap"):
        return False
    try:
        # this interpreter, not just /bin/true: the one learner code runs with must be reachable one level down
        done = subprocess.run(inner_command([sys.executable, "-I", "-c", "pass"], [], []), capture_output=True,
                              timeout=20)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return done.returncode == 0


def _private_dirs() -> tuple[str, str] | None:
    """Fresh directories in the probe's own /tmp and /dev/shm for the inner sandbox's: inside the grader's
    sandbox those are the job dir's, under its disk quota (a fresh tmpfs would be unbounded)."""
    if os.environ.get("MLOPS_GRADING") != "1" or not os.path.isdir("/sandbox"):
        return None
    try:
        return tempfile.mkdtemp(prefix="inner-tmp-", dir="/tmp"), tempfile.mkdtemp(prefix="inner-shm-", dir="/dev/shm")
    except OSError:
        return None


@functools.lru_cache(maxsize=8)
def _inner_site(not_needed: tuple[str, ...] = (), quiet: tuple[str, ...] = (), allow: tuple[str, ...] = ()) -> str | None:
    """A folder with a sitecustomize that makes INNER_NOT_NEEDED and `not_needed` (but `allow`) unimportable and
    keeps `quiet` renderers quiet, readable by the inner uid."""
    blocked = tuple(name for name in INNER_NOT_NEEDED + tuple(not_needed) if name not in allow)
    try:
        return write_site(tempfile.mkdtemp(prefix="inner-site-"), blocked, quiet)
    except OSError:
        return None


def inner_command(argv: list[str], writable: list[str], hidden: list[str], share_net: bool = True,
                  pythonpath: str = "", not_needed: tuple[str, ...] = (), quiet: tuple[str, ...] = (),
                  allow: tuple[str, ...] = ()) -> list[str]:
    """`argv` wrapped in a nested bubblewrap: another uid, its own PID namespace, `hidden` paths replaced by
    empty read-only directories (the probe's output and inputs), only `writable` paths, a private /tmp and
    /dev/shm writable (in the grader's sandbox: directories under the job's quota; /dev read-only), and
    INNER_NOT_NEEDED and `not_needed` unimportable in its Python processes but for those in `allow`, `quiet`
    renderers drawing nothing (a sitecustomize ahead of `pythonpath`: the only one Python imports). A probe that
    allows Dask (Feast's file store reads with it) runs MEND_PSUTIL first in that process (psutil then sees
    /proc as this process does)."""
    args = ["bwrap", "--unshare-user", "--unshare-pid", "--unshare-ipc", "--die-with-parent", "--new-session",
            "--uid", str(INNER_UID), "--gid", str(INNER_UID), "--ro-bind", "/", "/",
            # a fresh procfs cannot be mounted one level down; the outer one shows no process it could signal
            # (its PIDs are another namespace's) and nothing of the probe's (the probe is non-dumpable)
            "--ro-bind", "/proc", "/proc", "--dev", "/dev"]
    private = _private_dirs()
    if private:
        args += ["--bind", private[0], "/tmp", "--bind", private[1], "/dev/shm", "--remount-ro", "/dev"]
    else:
        args += ["--tmpfs", "/tmp"]
    if not share_net:
        args.append("--unshare-net")
    for path in _runtime_under_tmp():  # a checkout (venv, library) under /tmp stays visible past the new /tmp
        args += ["--ro-bind", path, path]
    for path in writable:
        args += ["--bind", path, path]
    for path in hidden:
        args += ["--tmpfs", path, "--remount-ro", path]
    site = _inner_site(tuple(not_needed), tuple(quiet), tuple(allow))
    if site:
        args += ["--ro-bind", site, site, "--setenv", "PYTHONPATH", os.pathsep.join(p for p in (site, pythonpath) if p)]
    return args + ["--"] + list(argv)


def sibling_limit(took: list[float], full: float, factor: float = 10.0, floor: float = 3.0) -> float:
    """The time limit of the next of several like runs of learner code, given how long its siblings took.

    Until three siblings have answered, the full limit; then `factor` times the slowest of them (at least
    `floor` seconds): a run that stalls while its siblings answer in a fraction of a second is cut off early,
    and a busy machine, which slows every sibling alike, moves the limit with it.
    """
    if len(took) < 3:
        return full
    return min(full, max(floor, factor * max(took)))


def run_learner(argv: list[str], *, cwd: str, env: dict, timeout: float, writable: list[str],
                hidden: list[str], share_net: bool = True, stdin: bytes | None = None,
                not_needed: tuple[str, ...] = (), allow: tuple[str, ...] = ()) -> dict:
    """Run the learner's command (nested sandbox where possible); {exit, timed_out, stdout, stderr}.

    Whatever it started is gone when this returns: the inner PID namespace dies with its first process,
    and without nesting, its whole process group (session) is killed.
    """
    nested = inner_sandbox_available()
    command = (inner_command(argv, writable, hidden, share_net, env.get("PYTHONPATH", ""), not_needed=not_needed,
                             allow=allow) if nested else list(argv))
    proc = subprocess.Popen(command, cwd=cwd, env=env, stdin=subprocess.PIPE if stdin is not None else
                            subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            start_new_session=True)
    timed_out = False
    try:
        out, err = proc.communicate(stdin, timeout=timeout)
    except subprocess.TimeoutExpired:
        timed_out = True
        _kill_group(proc.pid)
        out, err = proc.communicate()
    finally:
        _kill_group(proc.pid)
    return {"exit": proc.returncode, "timed_out": timed_out, "nested": nested,
            "stdout": out.decode("utf-8", "replace")[-_CAP:], "stderr": err.decode("utf-8", "replace")[-_CAP:]}


MEND_PSUTIL = """
import os as _os
import psutil as _psutil


class _Self(_psutil.Process):
    # One sandbox further in, /proc is the probe's: this process's PID there is not os.getpid(). psutil.Process()
    # is asked for by Dask at import (its CPU count) and by Feast; give it this process as /proc names it.
    def __init__(self, pid=None):
        super().__init__(int(_os.readlink("/proc/self")) if pid is None else pid)

    def cpu_affinity(self, cpus=None):
        return sorted(_os.sched_getaffinity(0)) if cpus is None else None


_psutil.Process = _Self
"""


def _kill_group(pid: int) -> None:
    try:
        os.killpg(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


if __name__ == "__main__":  # pragma: no cover — a library for probes, not a probe
    sys.exit("harness.py is imported by probes")
