"""Run learner code many times from one pre-imported process: a worker that forks a fresh child per run.

Runs inside the sandbox, beside the probe that uses it (the launcher copies it): it must not import the grader.

Starting Python and importing pandas, scikit-learn or Evidently costs seconds of CPU; a probe that runs learner
code once per variant or per hidden scenario paid that every time. Here the probe starts one *worker* in the
harness's inner sandbox (another uid, its own PID namespace, the probe's inputs and output hidden); the worker
imports only trusted modules (never the learner's), says it is ready, then for each request line on its stdin
forks a child that runs the learner's code and exits. Each child is a fresh copy of the worker as it was before
any run: it has seen no other run's data, because the worker never reads a run's files (the probe writes them,
one run at a time, and the child reads them). After each run the worker kills every process the run left in
the inner PID namespace and empties the private /tmp and /dev/shm, so no run hands anything to the next. The
worker is non-dumpable: a child cannot read or trace it. A worker that dies (a run can kill it) is replaced,
and that run counts as a crash.

Probe side::

    worker = ForkWorker([sys.executable, "-I", __file__, "--worker"], scratch, hidden, env)
    answer = worker.run({"root": "...", ...}, timeout)   # {"exit", "timed_out", "seconds", "cpu_seconds"}
    worker.close()

Several workers, each in its own inner sandbox with its own scratch, share a probe's runs with
`on_workers(workers, items, job)` (one thread per worker; `parallel_workers()` says how many).

Worker side (the same file with --worker)::

    serve(prewarm=lambda: import_heavy_modules(), child=lambda request: ... os._exit(code))
"""

from __future__ import annotations

import json
import os
import select
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # the harness, beside this file (-I drops it)
from harness import INNER_NOT_NEEDED, INNER_UID, block_imports, make_undumpable  # noqa: E402

START_SECONDS = 120  # the worker's imports, once
ENV_KEPT = ("PATH", "LANG", "LC_ALL", "TZ", "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


# --- the probe's side (trusted) -------------------------------------------------------------------------------


class ForkWorker:
    """The inner-sandboxed worker process, started on first use and restarted when it dies."""

    def __init__(self, argv: list[str], scratch: Path, hidden: list[str], env: dict | None = None,
                 share_net: bool = True) -> None:
        self.argv, self.scratch, self.hidden, self.share_net = list(argv), Path(scratch), list(hidden), share_net
        self.env = {k: os.environ[k] for k in ENV_KEPT if k in os.environ}
        self.env.update(HOME=str(self.scratch), TMPDIR=str(self.scratch), PYTHONDONTWRITEBYTECODE="1")
        self.env.update(env or {})
        self.proc: subprocess.Popen | None = None
        self.nested = False

    def start(self) -> None:
        from harness import inner_command, inner_sandbox_available

        self.nested = inner_sandbox_available()
        argv = self.argv
        if self.nested:
            argv = inner_command(argv + ["--nested"], [str(self.scratch)], self.hidden, share_net=self.share_net,
                                 pythonpath=self.env.get("PYTHONPATH", ""))
        self.proc = subprocess.Popen(argv, cwd=str(self.scratch), env=self.env, stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, start_new_session=True)
        if self._read_line(START_SECONDS) != {"ready": True}:
            self.close()
            raise RuntimeError("the probe's worker process did not start")

    def run(self, request: dict, timeout: float) -> dict:
        """One forked run; {"exit", "timed_out", "seconds", "cpu_seconds"} (+ "worker_died" when it crashed)."""
        if self.proc is None or self.proc.poll() is not None:
            self.start()
        try:
            self.proc.stdin.write((json.dumps({**request, "timeout": timeout}) + "\n").encode())
            self.proc.stdin.flush()
        except OSError:
            pass
        answer = self._read_line(timeout + 15)
        if not isinstance(answer, dict) or "exit" not in answer:  # the worker died (or hung): a crashed run
            self.close()
            return {"exit": -9, "timed_out": False, "seconds": round(timeout, 3), "cpu_seconds": 0.0,
                    "worker_died": True}
        return {k: answer.get(k) for k in ("exit", "timed_out", "seconds", "cpu_seconds")}

    def _read_line(self, timeout: float):
        end, buffer = time.monotonic() + timeout, b""
        fd = self.proc.stdout.fileno()
        while b"\n" not in buffer:
            left = end - time.monotonic()
            if left <= 0 or not select.select([fd], [], [], left)[0]:
                return None
            chunk = os.read(fd, 4096)
            if not chunk:
                return None
            buffer += chunk
        try:
            return json.loads(buffer.split(b"\n", 1)[0])
        except ValueError:
            return None

    def close(self) -> None:
        if self.proc is not None:
            kill_group(self.proc.pid)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                pass
            self.proc = None

    def __enter__(self) -> "ForkWorker":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def parallel_workers(most: int = 2) -> int:
    """How many workers a probe runs at once: the CPUs this process may use, at most `most`."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cpus = os.cpu_count() or 1
    return max(1, min(most, cpus))


def on_workers(workers: list[ForkWorker], items: list, job) -> list:
    """`job(worker, item)` for every item, each worker taking the next item as soon as it is free (one thread per
    worker); the answers in the order of `items`. Each worker keeps its own scratch, so runs on different workers
    never see each other's files, and one worker's runs still come one at a time."""
    import threading

    answers: list = [None] * len(items)
    pending = list(enumerate(items))
    lock = threading.Lock()
    errors: list[BaseException] = []

    def drain(worker: ForkWorker) -> None:
        while True:
            with lock:
                if not pending or errors:
                    return
                index, item = pending.pop(0)
            try:
                answers[index] = job(worker, item)
            except BaseException as err:  # noqa: BLE001 — raised again in the caller's thread
                with lock:
                    errors.append(err)
                return

    threads = [threading.Thread(target=drain, args=(worker,), daemon=True) for worker in workers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise errors[0]
    return answers


def wipe(folder: Path) -> None:
    """Empty `folder` (the worker's scratch) between runs: nothing a run wrote is there for the next."""
    for entry in list(folder.iterdir()) if folder.is_dir() else []:
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry, ignore_errors=True)
        else:
            entry.unlink(missing_ok=True)


def kill_group(pid: int) -> None:
    try:
        os.killpg(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


# --- the worker's side (in the inner sandbox) ------------------------------------------------------------------


def serve(prewarm, child) -> None:
    """Import once (`prewarm()`), then one forked `child(request)` per request line on stdin, one answer line each.

    `child` runs in the forked process and must end it with `os._exit`; `start_child` prepares that process.
    """
    make_undumpable()  # a run cannot read or trace the worker
    block_imports(INNER_NOT_NEEDED)  # -I ignores the inner sandbox's sitecustomize: the same, for every child too
    prewarm()
    answers = os.fdopen(os.dup(1), "w")
    os.dup2(os.open(os.devnull, os.O_WRONLY), 1)  # nothing printed by an import lands in the answers
    answers.write('{"ready": true}\n')
    answers.flush()
    nested = "--nested" in sys.argv and os.getuid() == INNER_UID  # never outside the inner sandbox
    for line in sys.stdin:
        request = json.loads(line)
        answer = run_forked(child, request, float(request["timeout"]))
        if nested:
            forget()  # before answering: nothing the run left can still write while the probe reads
        answers.write(json.dumps(answer) + "\n")
        answers.flush()


def start_child(cwd: Path, log: Path) -> None:
    """In a forked child: its own process group, `cwd`, stdout and stderr to `log`, no stdin, and none of the
    worker's descriptors (its answer pipe among them: learner code cannot write a verdict)."""
    os.setpgid(0, 0)
    os.chdir(cwd)
    fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.dup2(os.open(os.devnull, os.O_RDONLY), 0)
    os.closerange(3, 4096)
    sys.stdin = open(os.devnull)  # noqa: SIM115 - the worker's requests are not the run's business


def run_forked(child, request: dict, timeout: float) -> dict:
    """Fork; the child runs `child(request)` (which never returns); wait at most `timeout` s, then kill its group."""
    start = time.monotonic()
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid == 0:  # the child
        try:
            child(request)
        finally:
            os._exit(3)
    timed_out = False
    while True:
        done, status, usage = os.wait4(pid, os.WNOHANG)
        if done:
            break
        if time.monotonic() - start > timeout:
            timed_out = True
            kill_group(pid)
            _, status, usage = os.wait4(pid, 0)
            break
        time.sleep(0.01)
    kill_group(pid)  # whatever the run left running in its group
    return {"exit": None if timed_out else exit_code(status), "timed_out": timed_out,
            "seconds": round(time.monotonic() - start, 3), "cpu_seconds": round(usage.ru_utime + usage.ru_stime, 3)}


def forget() -> None:
    """After a run, in the inner sandbox only: end every process it left (kill(-1) reaches no further than
    this PID namespace, and spares its init), and empty the private /tmp and /dev/shm, so that no run
    hands anything to the next."""
    try:
        os.kill(-1, signal.SIGKILL)
    except OSError:
        pass
    scratch = Path(os.environ["HOME"])  # the probe's scratch, mounted under /tmp: the probe empties it
    for folder in ("/tmp", "/dev/shm"):
        try:
            entries = [e for e in Path(folder).iterdir() if e != scratch and e not in scratch.parents]
        except OSError:
            continue
        for entry in entries:
            try:
                if entry.is_dir() and not entry.is_symlink():
                    shutil.rmtree(entry, ignore_errors=True)
                else:
                    entry.unlink()
            except OSError:
                pass


def exit_code(status: int) -> int:
    if os.WIFEXITED(status):
        return os.WEXITSTATUS(status)
    return -os.WTERMSIG(status) if os.WIFSIGNALED(status) else 3


if __name__ == "__main__":  # pragma: no cover — a library for probes, not a probe
    sys.exit("forkserver.py is imported by probes")
