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
test can kill it) is replaced, and the run counts as a crash. With two CPUs, two such workers share the
variants (each in its own inner sandbox, with its own scratch, /tmp and /dev/shm): a variant on one worker
never sees what runs on the other.

result.json: {"runs": {name: {"exit": int | None, "timed_out": bool, "seconds": float, "cpu_seconds": float,
"collected": int, "passed": int, "failed": int, "errors": int, "skipped": int, "failures": [str],
"passed_tests": [str], "tail": str}}, "nested": bool} or {"error": str}; a variant left when the time budget
is spent gets {"not_run": true, ...}.
"""

import json
import os
import re
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # the harness, beside this file (-I drops it)
from forkserver import ForkWorker, on_workers, parallel_workers, serve, start_child, wipe  # noqa: E402

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
    variants = [(name, str(value)) for name, value in inputs.items()]
    hidden = [str(Path(args.out).resolve()), str(Path(args.input).resolve())]
    # one worker per CPU (at most two), each in its own inner sandbox with its own scratch: runs on different
    # workers never see each other's files, and each worker's runs still come one at a time
    workers = [ForkWorker([sys.executable, "-I", os.path.abspath(__file__), "--worker"],
                          Path(tempfile.mkdtemp(prefix="mutants-")), hidden, env={"PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1"})
               for _ in range(min(parallel_workers(), len(variants)) or 1)]
    deadline = time.monotonic() + args.budget

    def one(worker: ForkWorker, variant: tuple[str, str]) -> dict:
        left = deadline - time.monotonic()
        if left <= 1:
            return {"exit": None, "timed_out": False, "not_run": True, "seconds": 0.0, "cpu_seconds": 0.0,
                    "tail": "not run: the runs before it used up the time budget"}
        root = worker.scratch / "run"
        wipe(worker.scratch)  # nothing a run wrote (HOME is here too) is there for the next one
        _prepare_run(root, variant[1], tests)
        result = worker.run({"root": str(root)}, min(args.timeout, left))
        result.update(read_tally(root / "tally.json"))
        result["tail"] = tail(root / "pytest.log")
        shutil.rmtree(root, ignore_errors=True)
        return result

    try:
        results = on_workers(workers, variants, one)
    finally:
        for worker in workers:
            worker.close()
    return {"runs": {name: result for (name, _), result in zip(variants, results)},
            "nested": any(worker.nested for worker in workers)}


def _prepare_run(root: Path, code: str, tests: bytes) -> None:
    package = root / "pkg" / "mlops_kit"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text(INIT)
    (package / "data.py").write_text(code)
    (root / "t").mkdir()
    (root / "t" / "test_data.py").write_bytes(tests)
    (root / "pytest.ini").write_text(INI)
    (root / "tmp").mkdir()


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
    """Import once, then one forked pytest run per request (forkserver.serve)."""
    serve(prewarm, lambda request: child(Path(request["root"]), Path(request["root"]) / "pytest.log"))


def prewarm() -> None:
    """Import what nearly every run needs once, before forking."""
    import numpy  # noqa: F401
    import pandas  # noqa: F401
    import pytest  # noqa: F401
    import sklearn.datasets
    import sklearn.model_selection  # noqa: F401
    from _pytest import capture, fixtures, monkeypatch, python, terminal, tmpdir  # noqa: F401


def child(root: Path, log: Path) -> None:
    code = 3
    try:
        start_child(root, log)
        os.environ["TMPDIR"] = str(root / "tmp")
        sys.path.insert(0, str(root / "pkg"))
        for name in [m for m in sys.modules if m == "mlops_kit" or m.startswith("mlops_kit.")]:
            del sys.modules[name]
        import pytest

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


if __name__ == "__main__":
    if sys.argv[1:2] == ["--worker"]:
        worker_main()
    else:
        from harness import probe_main

        probe_main(run, add_arguments)
