"""Learner code asked about hidden scenarios sees one at a time and keeps nothing between them (issue 9, class 3).

A promotion gate that could see the scenario table, or remember the scenarios it was asked before, could learn
the pattern of the hidden groups (each group shares one answer). This gate remembers every call it can: in its
private /tmp, its HOME, its working directory, the gate's own folder, an environment variable, and by counting
its own process's calls. After a few calls it answers the opposite of the right answer, so any memory that
survives from one scenario to the next costs points. It also looks for the table (any .npy or .json file it
can find) and, if it finds one, answers wrongly too. It must score exactly what the reference gate scores.
"""

from __future__ import annotations

import json
import os
import tempfile

import pytest
from adversarial_helpers import grade_alone

from grader import assign
from grader.cases import replace
from grader.checks import lab06
from grader.grade import write_results

GATE_CELL = "answer-07"
DEF = "def decide(champion_metrics, challenger_metrics, behaviour_results):\n"
# the reference decide() renamed _right(), behind a decide() that is wrong as soon as it remembers more
# than the notebook's own calls or finds the scenario table
REMEMBERING = '''_CALLS = []


def _remembered():
    import glob, os, tempfile
    places = [tempfile.gettempdir(), os.path.expanduser("~"), os.getcwd(), os.path.dirname(os.path.abspath(__file__))]
    seen = len(_CALLS) + int(os.environ.get("GATE_SEEN", "0"))
    for place in places:
        try:
            seen += len(glob.glob(os.path.join(place, ".gate-seen-*")))
        except OSError:
            pass
    for place in places:
        try:
            open(os.path.join(place, f".gate-seen-{os.getpid()}-{len(_CALLS)}"), "w").close()
        except OSError:
            pass
    os.environ["GATE_SEEN"] = str(seen + 1)
    _CALLS.append(1)
    return seen


def _sees_a_table():
    import glob
    for pattern in ("/sandbox/**/*.npy", "/sandbox/**/scenarios*", "/tmp/**/*.npy"):
        try:
            if glob.glob(pattern, recursive=True):
                return True
        except OSError:
            pass
    return False


''' + DEF + '''    """The reference rule, until it remembers far more calls than the notebook makes (then the opposite)."""
    right = _right(champion_metrics, challenger_metrics, behaviour_results)
    if _remembered() > 20 or _sees_a_table():
        return not right
    return right


''' + DEF.replace("def decide(", "def _right(")


def _notebook(edit: bool) -> dict:
    solved = assign.build_lab(json.loads(lab06.LAB.solution_path.read_text(encoding="utf-8")), lab06.LAB.id,
                              with_solutions=True)
    if edit:
        replace(GATE_CELL, "\n\n" + DEF, "\n\n" + REMEMBERING).apply(solved)
    return solved


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    folder = tmp_path_factory.mktemp("gate")
    result, _ = grade_alone(lab06, _notebook(edit=True), folder, "remembering")
    return result, folder


@pytest.mark.slow
def test_a_gate_that_remembers_or_looks_around_still_sees_one_scenario(graded):
    result, folder = graded
    assert result.status == "graded" and result.output == "", result.output
    failed = {t.name: t.message for t in result.tests if t.status != "passed"}
    assert not failed  # every call was its first: the gate answered by the rule alone
    assert result.score == lab06.CHECKS.max_score
    out = folder / "results.json"
    write_results([result], out, reveal_hidden=True)
    assert out.stat().st_size < 60_000
    assert not list((folder / "jobs").iterdir())  # no job dir left
    assert not [p for p in os.listdir(tempfile.gettempdir()) if p.startswith(".gate-seen-")]  # nothing on the host


def test_the_remembering_gate_does_turn_wrong_once_it_remembers():
    """The attack is real: called again and again in one process, it turns wrong."""
    namespace: dict = {}
    source = _notebook(edit=True)
    cell = next(c for c in source["cells"] if c.get("metadata", {}).get("mlops", {}).get("id") == GATE_CELL)
    text = "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]
    code = text.split("\n", 1)[1]  # drop the %%writefile line
    old_cwd = os.getcwd()
    with tempfile.TemporaryDirectory() as scratch:
        os.chdir(scratch)
        try:
            namespace["__file__"] = os.path.join(scratch, "promotion_gate.py")
            os.environ.pop("GATE_SEEN", None)
            exec(compile(code, "promotion_gate.py", "exec"), namespace)  # noqa: S102 - our own test code
            namespace["_sees_a_table"] = lambda: False  # this host's /tmp holds other tests' .npy files
            passing = dict.fromkeys(namespace["REQUIRED"], True)
            answers = [namespace["decide"]({"roc_auc": 0.9}, {"roc_auc": 0.95}, passing) for _ in range(30)]
        finally:
            os.chdir(old_cwd)
            os.environ.pop("GATE_SEEN", None)
            for place in (tempfile.gettempdir(), os.path.expanduser("~")):
                for name in os.listdir(place):
                    if name.startswith(".gate-seen-"):
                        os.unlink(os.path.join(place, name))
    assert answers[0] is True and False in answers
