"""Entrants: a tool's process forked from a pre-imported zygote into a job's fresh sandbox.

A tool run inside a sandbox today starts a fresh Python and imports what it needs (papermill 2 s, scikit-learn
and pandas 2-3 s) for every job. With entrants, the sandbox is made exactly as before, holding a placeholder
process, and a zygote that imported the tool's trusted modules once forks a process that joins the job's cgroup
and namespaces, drops every privilege and runs the tool (grader/tools/zygote.py; docs/design-preforked-
entrants.md has the measurements and the security argument).

One zygote per tool and grading process, started on first use, restarted when it dies. Where entrants cannot
work (not root, no setns, `MLOPS_GRADE_ENTRANTS=0`), `zygote_for()` says None and tools run as before.
"""

from __future__ import annotations

import atexit
import json
import os
import select
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

TOOLS = Path(__file__).parent / "tools"
NO_HOME = "/proc/mlops-zygote"
ROOM = 32768  # bytes of the zygote's command line and environment that a job's own are written over
HOLD = "/mlops-hold"  # where the placeholder (coreutils' sleep) is, inside the sandbox: its comm is "mlops-hold"
READY_SECONDS = 120.0

SCIENCE = ("numpy", "pandas", "sklearn.base", "sklearn.model_selection", "sklearn.metrics", "sklearn.ensemble",
           "sklearn.linear_model", "sklearn.pipeline", "sklearn.preprocessing")
# What each tool imports that is worth importing once: trusted third-party modules only, never the grader, the
# course library (mlops_kit) or anything of a submission. Blocked: what the tool blocks itself (kept unimported).
# The notebook runner's zygote also imports what a lab's kernel needs first: the runner forks the kernel from
# itself (run_notebook.fork_kernel), so that zygote runs without -I (ISOLATED), as a kernel does.
PRELOAD = {
    "run_notebook": (("nbformat", "nbclient", "nbclient.client", "jupyter_client", "papermill",
                      "ipykernel.kernelapp", "IPython", "numpy", "pandas"), ("rfc3987_syntax", "torch")),
    "sklearn_model": ((*SCIENCE, "skops.io"), ("torch", "rfc3987_syntax", "dask", "distributed")),
    "mlflow_probe": (("numpy", "pandas", "yaml", "sklearn.utils", "skops.io"),
                     ("torch", "rfc3987_syntax", "dask", "distributed")),
}
ISOLATED = {tool: tool != "run_notebook" for tool in PRELOAD}  # the zygote runs as `python -I`
# Imported after "ready", while the zygote is idle (zygote.py --later). The runner's first job is a single
# `mlops-grade check`'s only notebook, and it comes at once: 0.75 s of imports instead of 2.2 s before its kernel can
# fork, and a notebook that uses scikit-learn imports it itself. A batch's later notebooks find these imported.
LATER = {"run_notebook": (*SCIENCE[2:], "skops.io")}


class EntrantError(RuntimeError):
    """The entrant could not be started (the caller runs the tool the classic way)."""


def enabled() -> bool:
    return (os.environ.get("MLOPS_GRADE_ENTRANTS", "1") != "0" and os.path.exists("/proc/self/ns/mnt")
            and os.geteuid() == 0 and hasattr(socket, "send_fds"))


class Zygote:
    """One pre-imported process (grader/tools/zygote.py) and the control socket to it."""

    def __init__(self, preload: tuple[str, ...], block: tuple[str, ...], isolated: bool = True,
                 later: tuple[str, ...] = ()):
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        # a HOME nothing can be written to, even as root (it is under /proc): importing leaves no file anywhere
        env = {"PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin", "HOME": NO_HOME, "LANG": "C.UTF-8",
               "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
               "MPLBACKEND": "Agg", "PYTHONDONTWRITEBYTECODE": "1", "MLOPS_ZYGOTE_ROOM": "-" * ROOM}
        self.proc = subprocess.Popen(
            [sys.executable, *(["-I"] if isolated else []), str(TOOLS / "zygote.py"), str(theirs.fileno()),
             "--preload", ",".join(preload), "--later", ",".join(later), "--block", ",".join(block),
             "--room", "-" * ROOM],
            pass_fds=[theirs.fileno()], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL, env=env, cwd="/", start_new_session=True)
        theirs.close()
        self.control, self.lock, self.ready = ours, threading.Lock(), False

    def wait_ready(self, timeout: float = READY_SECONDS) -> bool:
        with self.lock:
            if not self.ready:
                readable, _, _ = select.select([self.control], [], [], timeout)
                self.ready = bool(readable) and self.control.recv(16) == b"ready"  # else "threads": see zygote.py
        return self.ready

    def alive(self) -> bool:
        return self.proc.poll() is None

    def spawn(self, request: dict, stdout_fd: int, stderr_fd: int) -> "Entrant":
        """Fork an entrant for `request`; it writes to the given descriptors (the caller closes its copies)."""
        if not self.wait_ready():
            raise EntrantError("the zygote did not get ready")
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            with self.lock:
                socket.send_fds(self.control, [b"job"], [theirs.fileno(), stdout_fd, stderr_fd])
        except OSError as error:
            ours.close()
            raise EntrantError(f"the zygote is gone: {error}") from error
        finally:
            theirs.close()
        ours.sendall((json.dumps(request) + "\n").encode())
        return Entrant(ours)

    def close(self) -> None:
        self.control.close()
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.proc.kill()


class Entrant:
    """One forked tool process: its start and its exit, as the zygote's child reports them."""

    def __init__(self, report: socket.socket):
        self.report, self.buffer, self.pid, self.returncode, self.error = report, b"", None, None, None

    def _read(self, timeout: float) -> dict | None:
        while b"\n" not in self.buffer:
            readable, _, _ = select.select([self.report], [], [], max(0.0, timeout))
            if not readable:
                return None
            chunk = self.report.recv(4096)
            if not chunk:
                return {"error": "the entrant's parent ended without a report"}
            self.buffer += chunk
        line, self.buffer = self.buffer.split(b"\n", 1)
        return json.loads(line)

    def wait(self, timeout: float) -> bool:
        """Whether it has ended (within `timeout` seconds); then `returncode`, or `error` when it never ran."""
        deadline = time.monotonic() + timeout
        while self.returncode is None and self.error is None:
            message = self._read(deadline - time.monotonic())
            if message is None:
                return False
            if "pid" in message:
                self.pid = message["pid"]
            elif "returncode" in message:
                self.returncode = int(message["returncode"])
            else:
                self.error = str(message.get("error", "unknown"))
        return True

    def close(self) -> None:
        self.report.close()


_ZYGOTES: dict[str, Zygote] = {}
_OWNER = {"pid": os.getpid()}
_LOCK = threading.Lock()


def zygote_for(tool: str) -> Zygote | None:
    """The zygote for `tool` (started now if needed), or None where the tool runs the classic way."""
    if tool not in PRELOAD or not enabled():
        return None
    with _LOCK:
        if _OWNER["pid"] != os.getpid():  # a forked grader process: its parent's zygotes are not its own
            _ZYGOTES.clear()
            _OWNER["pid"] = os.getpid()
        zygote = _ZYGOTES.get(tool)
        if zygote is None or not zygote.alive():
            zygote = _ZYGOTES[tool] = Zygote(*PRELOAD[tool], isolated=ISOLATED[tool], later=LATER.get(tool, ()))
        return zygote


def prestart(lab_module) -> None:
    """Start the zygotes of the notebook runner and of the probes `lab_module`'s checks call, so that their imports
    overlap other work (the notebook's run) instead of waiting for the first job that needs them."""
    import inspect
    import re

    try:
        source = inspect.getsource(lab_module)
    except (OSError, TypeError):
        source = ""
    for tool in ("run_notebook", *re.findall(r"probe\(\s*[\"'](\w+)[\"']", source)):
        zygote_for(tool)


@atexit.register
def stop_all() -> None:
    with _LOCK:
        for zygote in _ZYGOTES.values():
            zygote.close()
        _ZYGOTES.clear()


def find_placeholder(proc: subprocess.Popen, timeout: float = 10.0) -> int | None:
    """The PID (on the host) of the placeholder process `proc` started, once it runs; None if it never does."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        todo = [proc.pid]
        while todo:
            pid = todo.pop()
            try:
                if Path(f"/proc/{pid}/comm").read_text().strip() == Path(HOLD).name:
                    return pid
                children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
            except OSError:
                continue
            todo.extend(int(child) for child in children)
        time.sleep(0.005)
    return None
