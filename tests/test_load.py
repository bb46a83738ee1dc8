"""Grades never depend on machine load: the same submission graded idle and beside a CPU hog scores the same.

A grader-made timeout on a starved machine is reported as the grader's error (status `error`, regrade),
never as the learner's failure: the unit test below fakes one.
"""

from __future__ import annotations

import json
import multiprocessing
import os

import pytest

from grader import assign
from grader.cases import cases_of
from grader.grade import grade_notebook
from grader.labs import find_lab
from grader.launch import starved
from grader.sandbox import RunResult


def _spin() -> None:
    while True:
        pass


@pytest.mark.slow
def test_same_score_idle_and_beside_a_cpu_hog(tmp_path, isolate):
    module = find_lab("03")
    case = next(c for c in cases_of(module) if c.name == "typed_in_seed")  # a half-right answer
    solved = assign.build_lab(json.loads(module.LAB.solution_path.read_text()), module.LAB.id, with_solutions=True)
    path = tmp_path / "half_right.ipynb"
    path.write_text(assign.dumps(case.notebook(solved)))
    idle = grade_notebook(module, path, isolate=isolate)
    hogs = [multiprocessing.Process(target=_spin, daemon=True) for _ in range(2 * (os.cpu_count() or 1))]
    for hog in hogs:
        hog.start()
    try:
        busy = grade_notebook(module, path, isolate=isolate)
    finally:
        for hog in hogs:
            hog.kill()
    assert idle.status == busy.status == "graded", busy.output
    assert {t.name: t.score for t in idle.tests} == {t.name: t.score for t in busy.tests}
    assert 0 < idle.score < idle.max_score


def test_a_timeout_on_a_starved_machine_is_the_graders_not_the_learners(monkeypatch):
    monkeypatch.setattr(os, "getloadavg", lambda: (9.0, 9.0, 9.0), raising=False)
    cores = len(os.sched_getaffinity(0))
    slow_by_itself = RunResult(None, "", "", 100.0, timed_out=True, cpu_seconds=95.0, load=1.0)
    starved_run = RunResult(None, "", "", 100.0, timed_out=True, cpu_seconds=10.0, load=cores + 4.0)
    sleeping_learner = RunResult(None, "", "", 100.0, timed_out=True, cpu_seconds=0.1, load=0.2)
    assert not starved(slow_by_itself, 100)
    assert starved(starved_run, 100)
    assert not starved(sleeping_learner, 100)  # an idle machine: the learner's own sleep
