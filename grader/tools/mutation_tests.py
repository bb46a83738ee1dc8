"""Run a learner's pytest module against variants of `mlops_kit/data.py`; write result.json.

Runs inside the sandbox (`python -I mutation_tests.py ...`): it must not import the grader.
Each input `<name>.npy` holds one variant's source (a 0-d unicode array): the reference or a mutant,
under an opaque name; which is which stays in the grader. For every variant this script builds a
private package directory `<out>/runs/<name>/pkg/mlops_kit/` (an `__init__.py` and the variant as
`data.py`), copies the learner's test file next to it, and runs pytest on it in a child process whose
`sys.path` starts with that package directory, so the learner's `import mlops_kit.data` gets the
variant. The children are forked from this process after pandas, scikit-learn and pytest are
imported, so each run only pays for collecting and running the tests (a plain
`python -m pytest` per variant costs about 1.5 s of CPU more). Every run has its own working
directory, temporary directory and a wall-clock timeout; its whole process group is killed after it.

result.json: {"runs": {name: {"exit": int | None, "timed_out": bool, "seconds": float, "cpu_seconds": float,
"collected": int, "passed": int, "failed": int, "errors": int, "skipped": int, "failures": [str],
"tail": str}}} or {"error": str}; a variant left when the time budget is spent gets {"not_run": true, ...}.
"""

import argparse
import json
import os
import re
import signal
import sys
import time
from pathlib import Path

MAX_TEST_BYTES = 200_000
INIT = '"""mlops_kit as the grader\'s mutation probe builds it: only the data module."""\n'
INI = "[pytest]\naddopts =\n"


class Tally:
    """A pytest plugin that counts outcomes; the child writes it to tally.json."""

    def __init__(self) -> None:
        self.counts = {"collected": 0, "passed": 0, "failed": 0, "errors": 0, "skipped": 0}
        self.failures: list = []

    def pytest_collection_finish(self, session) -> None:
        self.counts["collected"] = len(session.items)

    def pytest_collectreport(self, report) -> None:
        if report.failed:
            self.counts["errors"] += 1
            self.failures.append(f"collecting {report.nodeid or 'the module'} failed")

    def pytest_runtest_logreport(self, report) -> None:
        if report.when == "call" or (report.when == "setup" and not report.passed):
            if report.passed:
                self.counts["passed"] += 1
            elif report.skipped:
                self.counts["skipped"] += 1
            elif report.when == "call":
                self.counts["failed"] += 1
                self.failures.append(report.nodeid.split("::", 1)[-1])
            else:
                self.counts["errors"] += 1
                self.failures.append(f"{report.nodeid.split('::', 1)[-1]} (error in its setup)")
        elif report.when == "teardown" and report.failed:
            self.counts["errors"] += 1
            self.failures.append(f"{report.nodeid.split('::', 1)[-1]} (error in its teardown)")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--work", required=True)
    parser.add_argument("--input", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--tests", required=True, help="the learner's test file, relative to --work")
    parser.add_argument("--timeout", type=float, default=20.0, help="wall-clock seconds for one variant's run")
    parser.add_argument("--budget", type=float, default=100.0, help="wall-clock seconds for all runs together")
    args = parser.parse_args()
    result = run(args)
    Path(args.out, "result.json").write_text(json.dumps(result))


def run(args) -> dict:
    import numpy as np

    source = Path(args.work).resolve() / args.tests
    if os.path.islink(source) or not source.is_file():
        return {"error": f"{args.tests} was not found (or is not a regular file)"}
    if source.stat().st_size > MAX_TEST_BYTES:
        return {"error": f"{args.tests} is larger than {MAX_TEST_BYTES // 1000} kB"}
    tests = source.read_bytes()
    variants = {}
    for file in sorted(Path(args.input).glob("*.npy")):
        variants[file.stem] = str(np.load(file, allow_pickle=False))
    os.environ["PYTEST_DISABLE_PLUGIN_AUTOLOAD"] = "1"  # nbval & co. would cost seconds per run
    os.environ.pop("PYTHONPATH", None)
    prewarm()
    runs, deadline = {}, time.monotonic() + args.budget
    for name, code in variants.items():
        left = deadline - time.monotonic()
        if left <= 1:
            runs[name] = {"exit": None, "timed_out": False, "not_run": True, "seconds": 0.0, "cpu_seconds": 0.0,
                          "tail": "not run: the runs before it used up the time budget"}
            continue
        runs[name] = run_variant(Path(args.out).resolve() / "runs" / name, code, tests, min(args.timeout, left))
    return {"runs": runs}


def prewarm() -> None:
    """Import what nearly every run needs once, before forking."""
    import numpy  # noqa: F401
    import pandas  # noqa: F401
    import pytest  # noqa: F401
    import sklearn.datasets
    import sklearn.model_selection  # noqa: F401
    from _pytest import capture, fixtures, monkeypatch, python, terminal, tmpdir  # noqa: F401


def run_variant(root: Path, code: str, tests: bytes, timeout: float) -> dict:
    package = root / "pkg" / "mlops_kit"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text(INIT)
    (package / "data.py").write_text(code)
    (root / "t").mkdir()
    (root / "t" / "test_data.py").write_bytes(tests)
    (root / "pytest.ini").write_text(INI)
    (root / "tmp").mkdir()
    log = root / "pytest.log"
    start = time.monotonic()
    pid = os.fork()
    if pid == 0:  # the child: never returns
        child(root, log)
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
    result = {"exit": None if timed_out else exit_code(status), "timed_out": timed_out,
              "seconds": round(time.monotonic() - start, 3),
              "cpu_seconds": round(usage.ru_utime + usage.ru_stime, 3), "tail": tail(log)}
    result.update(read_tally(root / "tally.json"))
    return result


def child(root: Path, log: Path) -> None:
    code = 3
    try:
        os.setpgid(0, 0)
        os.chdir(root)
        fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        os.dup2(fd, 1)
        os.dup2(fd, 2)
        null = os.open(os.devnull, os.O_RDONLY)
        os.dup2(null, 0)
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
        (root / "tally.json").write_text(json.dumps({**tally.counts, "failures": tally.failures[:20]}))
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


def kill_group(pid: int) -> None:
    try:
        os.killpg(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


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
    failures = tally.get("failures", [])
    out["failures"] = [str(f)[:200] for f in failures[:20]] if isinstance(failures, list) else []
    return out


def tail(log: Path, lines: int = 15, chars: int = 2000) -> str:
    try:
        text = log.read_bytes()[-20_000:].decode("utf-8", errors="replace")
    except OSError:
        return ""
    text = re.sub(r"\x1b\[[0-9;]*m", "", text)
    return "\n".join(text.strip().splitlines()[-lines:])[-chars:]


if __name__ == "__main__":
    main()
