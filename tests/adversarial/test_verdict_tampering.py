"""Learner code never sits beside the verdict (issue 9, class 11).

Lab 01's probe runs the learner's tests; tests that try to rewrite the probe's result.json afterwards (a
daemon in a new session, an atexit hook, a write into the probe's memory through /proc/<pid>/mem) must
change nothing: the tampering submission scores exactly what the same tests score without the tampering.
"""

from __future__ import annotations

import json
import os

import pytest
from adversarial_helpers import grade_alone

from grader import assign
from grader.cases import answer
from grader.checks import lab01, lab01_cases
from grader.grade import write_results

# honest, weak split tests (they miss most mutants): a score below full marks that tampering could raise
WEAK_SPLIT_TESTS = lab01_cases.WEAK_SPLIT_TESTS

MARKER = "tamper-daemon-6004"  # in the daemon's command line: it must not outlive the grading

# Every place a probe's verdict could be: its out dir, other processes' cwd, their memory. The code spells no
# path or name that lab 01 refuses in a test file (that alone would fail the mutation checks, proving nothing).
TAMPER = '''
import atexit, json, os, sys

OUT = "/sand" + "box/out"
FORGED = json.dumps({"runs": {f"v{i:02d}": {"exit": 1, "timed_out": False, "seconds": 0.1, "cpu_seconds": 0.1,
                                            "killed": True} for i in range(64)}})
FORGER = """
import os, sys, time
FORGED, OUT, ROUNDS = sys.argv[1], sys.argv[2], int(sys.argv[3])
for _ in range(ROUNDS):
    targets = {OUT + "/result.json", OUT + "/result.json.tmp"}
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            targets.add(os.path.join(os.readlink("/proc/" + pid + "/cwd"), "result.json"))
        except OSError:
            pass
    for path in targets:
        try:
            with open(path, "w") as handle:
                handle.write(FORGED)
        except OSError:
            pass
    time.sleep(0.05)
"""
SCRIPT = "/tmp/MARKER.py"
with open(SCRIPT, "w") as handle:
    handle.write(FORGER)


def _forge_once():
    os.spawnv(os.P_WAIT, sys.executable, [sys.executable, SCRIPT, FORGED, OUT, "1"])


def _scribble_memory():
    for pid in (os.getppid(), 1):
        try:
            with open("/proc/" + str(pid) + "/mem", "r+b") as memory:
                memory.seek(0x400000)
                memory.write(bytes(16))
        except (OSError, ValueError):
            pass


atexit.register(_forge_once)
_scribble_memory()
if os.fork() == 0:  # a daemon in a new session that outlives the tests and rewrites the verdict later
    os.setsid()
    if os.fork() == 0:
        null = os.open(os.devnull, os.O_RDWR)  # a proper daemon: it holds none of the run's pipes
        for fd in (0, 1, 2):
            os.dup2(null, fd)
        os.closerange(3, 4096)
        os.execv(sys.executable, [sys.executable, SCRIPT, FORGED, OUT, "400"])
    os._exit(0)
'''.replace("MARKER", MARKER)


def _notebook(split_tests: str) -> dict:
    solved = assign.build_lab(json.loads(lab01.LAB.solution_path.read_text(encoding="utf-8")), lab01.LAB.id,
                              with_solutions=True)
    # a raw string in the cell: test_data.py gets the code verbatim
    answer("answer-09", "SPLIT_TESTS = r'''" + split_tests + "'''\n").apply(solved)
    return solved


def test_the_tampering_code_is_a_valid_test_module_that_lab_01_accepts():
    compile(TAMPER + WEAK_SPLIT_TESTS, "test_data.py", "exec")
    assert "'''" not in TAMPER + WEAK_SPLIT_TESTS
    assert not lab01.SOURCE_READING.search(TAMPER + WEAK_SPLIT_TESTS)


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tampering")
    results = {name: grade_alone(lab01, _notebook(tests), folder, name)[0]
               for name, tests in (("honest", WEAK_SPLIT_TESTS), ("tampering", TAMPER + WEAK_SPLIT_TESTS))}
    return results, folder


def _scores(result) -> dict:
    return {t.name: (t.status, t.score) for t in result.tests}


@pytest.mark.slow
def test_tampering_with_the_verdict_changes_no_score(graded):
    results, _ = graded
    honest, tampering = results["honest"], results["tampering"]
    assert honest.status == tampering.status == "graded", (honest.output, tampering.output)
    assert honest.output == tampering.output == "", (honest.output, tampering.output)  # every cell ran
    assert honest.score < lab01.CHECKS.max_score  # weak tests: there is something to gain
    assert _scores(honest)["mutants_killed"][0] == "partial"
    assert _scores(tampering) == _scores(honest)
    assert tampering.score == honest.score


@pytest.mark.slow
def test_no_daemon_or_job_dir_outlives_the_grading(graded):
    results, folder = graded
    leftovers = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as handle:
                if MARKER.encode() in handle.read():
                    leftovers.append(pid)
        except OSError:
            pass
    assert not leftovers
    assert not os.path.exists(f"/tmp/{MARKER}.py")  # the daemon wrote its script in a private /tmp
    out = folder / "results.json"
    write_results(list(results.values()), out)
    assert out.stat().st_size < 100_000
    assert not list((folder / "jobs").iterdir())  # no job dir left
