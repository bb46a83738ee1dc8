"""Run a learner's pytest module against variants of `mlops_kit/data.py` (the harness writes result.json).

Runs inside the sandbox: it must not import the grader. Each input `<name>.npy` holds one variant's source
(a 0-d unicode array): the reference or a mutant, under an opaque name; which is which stays in the grader.

The learner's tests are learner code, so they never run in this process. One *worker* (this file with
`--worker`) runs in the harness's inner sandbox (another uid, its own PID namespace, this probe's inputs and
output hidden): it imports pandas, scikit-learn and pytest once, then, for each variant the probe hands it,
forks a child that runs pytest on the learner's file with that variant as `mlops_kit.data` — so each run
only pays for collecting and running the tests (a plain `python -m pytest` per variant costs about 1.5 s of
CPU more). The probe writes one variant at a time into the worker's scratch directory, asks for one run over
the worker's stdin, and deletes the variant when the run is over: a run never sees the other variants, on
disk or in memory. Every run has its own working directory, temporary directory and wall-clock timeout; its
whole process group is killed after it; in the inner sandbox, every process a run left and whatever it
wrote to /tmp, /dev/shm or the scratch directory is gone before the next run starts. A worker that dies (a
test can kill it) is replaced, and the run counts as a crash.

result.json: {"runs": {name: {"exit": int | None, "timed_out": bool, "seconds": float, "cpu_seconds": float,
"collected": int, "passed": int, "failed": int, "errors": int, "skipped": int, "failures": [str],
"passed_tests": [str], "tail": str}}, "nested": bool} or {"error": str}; a variant left when the time budget
is spent gets {"not_run": true, ...}.
"""

import json
import os
import re
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

MAX_TEST_BYTES = 200_000
MAX_TESTS_LISTED = 400  # passed test ids kept per run
INIT = '"""mlops_kit as the grader\'s mutation probe builds it: only the data module."""\n'
INI = "[pytest]\naddopts =\n"


# --- the probe (trusted): hands variants to the worker one at a time ------------------------------------


def add_arguments(parser) -> None:
    parser.add_argument("--tests", required=True, help="the learner's test file, relative to --work")
    parser.add_argument("--timeout", type=float, default=20.0, help="wall-clock seconds for one variant's run")
    parser.add_argument("--budget", type=float, default=100.0, help="wall-clock seconds for all runs together")


def run(args, inputs) -> dict:
    source = Path(args.work).resolve() / args.tests
    if os.path.islink(source) or not source.is_file():
        return {"error": f"{args.tests} was not found (or is not a regular file)"}
    if source.stat().st_size > MAX_TEST_BYTES:
        return {"error": f"{args.tests} is larger than {MAX_TEST_BYTES // 1000} kB"}
    tests = source.read_bytes()
    variants = {name: str(value) for name, value in inputs.items()}
    scratch = Path(tempfile.mkdtemp(prefix="mutants-"))
    hidden = [str(Path(args.out).resolve()), str(Path(args.input).resolve())]
    worker = Worker(scratch, hidden)
    runs, deadline = {}, time.monotonic() + args.budget
    try:
        for name, code in variants.items():
            left = deadline - time.monotonic()
            if left <= 1:
                runs[name] = {"exit": None, "timed_out": False, "not_run": True, "seconds": 0.0,
                              "cpu_seconds": 0.0, "tail": "not run: the runs before it used up the time budget"}
                continue
            root = scratch / "run"
            _wipe(scratch)  # nothing a run wrote (HOME is here too) is there for the next one
            _prepare_run(root, code, tests)
            result = worker.run(root, min(args.timeout, left))
            result.update(read_tally(root / "tally.json"))
            result["tail"] = tail(root / "pytest.log")
            runs[name] = result
            shutil.rmtree(root, ignore_errors=True)
    finally:
        worker.close()
    return {"runs": runs, "nested": worker.nested}


def _wipe(folder: Path) -> None:
    for entry in list(folder.iterdir()) if folder.is_dir() else []:
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry, ignore_errors=True)
        else:
            entry.unlink(missing_ok=True)


def _prepare_run(root: Path, code: str, tests: bytes) -> None:
    package = root / "pkg" / "mlops_kit"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text(INIT)
    (package / "data.py").write_text(code)
    (root / "t").mkdir()
    (root / "t" / "test_data.py").write_bytes(tests)
    (root / "pytest.ini").write_text(INI)
    (root / "tmp").mkdir()


class Worker:
    """The inner-sandboxed worker process, restarted when it dies."""

    def __init__(self, scratch: Path, hidden: list[str]) -> None:
        self.scratch, self.hidden, self.proc, self.nested = scratch, hidden, None, False

    def start(self) -> None:
        sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
        from harness import inner_command, inner_sandbox_available

        env = {k: os.environ[k] for k in ("PATH", "LANG", "LC_ALL", "TZ", "OMP_NUM_THREADS",
                                          "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS") if k in os.environ}
        env.update(HOME=str(self.scratch), PYTEST_DISABLE_PLUGIN_AUTOLOAD="1", PYTHONDONTWRITEBYTECODE="1",
                   TMPDIR=str(self.scratch))
        argv = [sys.executable, "-I", os.path.abspath(__file__), "--worker"]
        self.nested = inner_sandbox_available()
        if self.nested:
            argv = inner_command(argv + ["--nested"], [str(self.scratch)], self.hidden)
        self.proc = subprocess.Popen(argv, cwd=str(self.scratch), env=env, stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, start_new_session=True)
        if self._read_line(120) != {"ready": True}:  # the imports, once
            self.close()
            raise RuntimeError("the test worker did not start")

    def run(self, root: Path, timeout: float) -> dict:
        if self.proc is None or self.proc.poll() is not None:
            self.start()
        try:
            self.proc.stdin.write((json.dumps({"root": str(root), "timeout": timeout}) + "\n").encode())
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


def read_tally(path: Path) -> dict:
    try:
        tally = json.loads(path.read_text()) if not path.is_symlink() else {}
    except (OSError, ValueError):
        tally = {}
    if not isinstance(tally, dict):
        tally = {}
    out: dict = {}
    for key in ("collected", "passed", "failed", "errors", "skipped"):
        value = tally.get(key, 0)
        out[key] = value if isinstance(value, int) and not isinstance(value, bool) else 0
    for key, limit in (("failures", 20), ("passed_tests", MAX_TESTS_LISTED)):
        value = tally.get(key, [])
        out[key] = [str(f)[:200] for f in value[:limit]] if isinstance(value, list) else []
    return out


def tail(log: Path, lines: int = 15, chars: int = 2000) -> str:
    try:
        if log.is_symlink():
            return ""
        text = log.read_bytes()[-20_000:].decode("utf-8", errors="replace")
    except OSError:
        return ""
    text = re.sub(r"\x1b\[[0-9;]*m", "", text)
    return "\n".join(text.strip().splitlines()[-lines:])[-chars:]


def kill_group(pid: int) -> None:
    try:
        os.killpg(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


# --- the worker (runs the learner's tests, in the inner sandbox) ---------------------------------------


class Tally:
    """A pytest plugin that counts outcomes; the child writes it to tally.json."""

    def __init__(self) -> None:
        self.counts = {"collected": 0, "passed": 0, "failed": 0, "errors": 0, "skipped": 0}
        self.failures: list = []
        self.passed: list = []
        self.broken: set = set()

    def pytest_collection_finish(self, session) -> None:
        self.counts["collected"] = len(session.items)

    def pytest_collectreport(self, report) -> None:
        if report.failed:
            self.counts["errors"] += 1
            self.failures.append(f"collecting {report.nodeid or 'the module'} failed")

    def pytest_runtest_logreport(self, report) -> None:
        test = report.nodeid.split("::", 1)[-1]
        if report.when == "call" or (report.when == "setup" and not report.passed):
            if report.passed:
                self.counts["passed"] += 1
                self.passed.append(test)
            elif report.skipped:
                self.counts["skipped"] += 1
            elif report.when == "call":
                self.counts["failed"] += 1
                self.failures.append(test)
            else:
                self.counts["errors"] += 1
                self.failures.append(f"{test} (error in its setup)")
        elif report.when == "teardown" and report.failed:
            self.counts["errors"] += 1
            self.failures.append(f"{test} (error in its teardown)")
            self.broken.add(test)

    def write(self, path: Path) -> None:
        passed = [t for t in self.passed if t not in self.broken]
        path.write_text(json.dumps({**self.counts, "failures": self.failures[:20],
                                    "passed_tests": passed[:MAX_TESTS_LISTED]}))


def worker_main() -> None:
    """Import once, then one forked pytest run per request line on stdin; one JSON answer line per run."""
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(4, 0, 0, 0, 0)  # non-dumpable: a run cannot read our memory
    except (OSError, AttributeError):
        pass
    prewarm()
    answers = os.fdopen(os.dup(1), "w")
    os.dup2(os.open(os.devnull, os.O_WRONLY), 1)  # nothing printed by an import lands in the answers
    answers.write('{"ready": true}\n')
    answers.flush()
    nested = "--nested" in sys.argv and os.getuid() == 1001  # harness.INNER_UID: never outside the inner sandbox
    for line in sys.stdin:
        request = json.loads(line)
        answer = run_variant(Path(request["root"]), float(request["timeout"]))
        if nested:
            forget()  # before answering: nothing the run left can still write while the probe reads
        answers.write(json.dumps(answer) + "\n")
        answers.flush()


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


def prewarm() -> None:
    """Import what nearly every run needs once, before forking."""
    import numpy  # noqa: F401
    import pandas  # noqa: F401
    import pytest  # noqa: F401
    import sklearn.datasets
    import sklearn.model_selection  # noqa: F401
    from _pytest import capture, fixtures, monkeypatch, python, terminal, tmpdir  # noqa: F401


def run_variant(root: Path, timeout: float) -> dict:
    start = time.monotonic()
    pid = os.fork()
    if pid == 0:  # the child: never returns
        child(root, root / "pytest.log")
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
        time.sleep(0.02)
    kill_group(pid)  # whatever the tests left running
    return {"exit": None if timed_out else exit_code(status), "timed_out": timed_out,
            "seconds": round(time.monotonic() - start, 3), "cpu_seconds": round(usage.ru_utime + usage.ru_stime, 3)}


def child(root: Path, log: Path) -> None:
    code = 3
    try:
        os.setpgid(0, 0)
        os.chdir(root)
        fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        os.dup2(fd, 1)
        os.dup2(fd, 2)
        os.dup2(os.open(os.devnull, os.O_RDONLY), 0)
        os.closerange(3, 4096)  # the worker's answer pipe among them: a test cannot write a verdict
        os.environ["TMPDIR"] = str(root / "tmp")
        sys.path.insert(0, str(root / "pkg"))
        for name in [m for m in sys.modules if m == "mlops_kit" or m.startswith("mlops_kit.")]:
            del sys.modules[name]
        import pytest

        sys.stdin = open(os.devnull)  # noqa: SIM115 - the worker's requests are not the tests' business
        tally = Tally()
        code = int(pytest.main(["-q", "-p", "no:cacheprovider", "-c", str(root / "pytest.ini"), "--rootdir",
                                str(root), "--basetemp", str(root / "tmp" / "pytest"), "-o",
                                "console_output_style=classic", "--tb=short", str(root / "t" / "test_data.py")],
                               plugins=[tally]))
        tally.write(root / "tally.json")
        sys.stdout.flush()
        sys.stderr.flush()
    except BaseException:  # noqa: BLE001 - anything the tests raise ends this child only
        import traceback

        traceback.print_exc()
    finally:
        os._exit(code)


def exit_code(status: int) -> int:
    if os.WIFEXITED(status):
        return os.WEXITSTATUS(status)
    return -os.WTERMSIG(status) if os.WIFSIGNALED(status) else 3


if __name__ == "__main__":
    if sys.argv[1:2] == ["--worker"]:
        worker_main()
    else:
        sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # the harness, beside this file
        from harness import probe_main

        probe_main(run, add_arguments)
