"""One time budget per submission (issue 9, class 6), and no probe on hidden inputs for a visible check (class 2).

A submission that stalls holds its grading slot for at most `Lab.budget` seconds: the notebook and every
probe draw on it, a probe that would start with nothing left is not started, and the result says where
the time went. A stalling run among quick siblings (one gate scenario of many) is cut off early.
"""

from __future__ import annotations

import dataclasses
import json
import os
import tempfile
import time
import types
import uuid
from pathlib import Path

import pytest
from adversarial_helpers import grade_alone

from grader import assign
from grader.budget import MIN_PROBE_SECONDS, Budget, BudgetSpent
from grader.checks import lab03
from grader.checks.common import Checks
from grader.grade import write_results
from grader.judge import Context, judge
from grader.launch import ProbeOutcome
from grader.sandbox import Limits, RunResult


def _run(seconds: float, timed_out: bool = False, cpu: float | None = 0.5, load: float = 0.0) -> RunResult:
    return RunResult(returncode=0, stdout="", stderr="", seconds=seconds, timed_out=timed_out, cpu_seconds=cpu,
                     load=load)


def test_a_part_gets_its_own_limit_or_what_is_left():
    budget = Budget(100)
    assert budget.allow("probe a", 30) == (30, False)
    budget.started -= 80  # 80 s spent
    wall, cut = budget.allow("probe b", 30)
    assert cut and 19 < wall <= 20
    budget.started -= 20 - MIN_PROBE_SECONDS / 2
    with pytest.raises(BudgetSpent, match="time budget was used up before probe c could start"):
        budget.allow("probe c", 30)
    assert budget.ran_out == "probe c"


def test_the_summary_names_every_part_and_where_it_ran_out():
    budget = Budget(60)
    budget.spend("the notebook", _run(20.4), cut=False)
    budget.spend("mlflow_probe", _run(39.6, timed_out=True), cut=True)
    text = budget.summary()
    assert text == ("time budget 60 s for the notebook and all its checks: the notebook 20 s, mlflow_probe 40 s "
                    "(cut off); it ran out during mlflow_probe")
    assert budget.to_json()["parts"][1] == {"part": "mlflow_probe", "seconds": 39.6, "cut_off": True}


def test_a_starved_budget_is_the_machines_fault_not_the_learners():
    cores = len(os.sched_getaffinity(0))
    budget = Budget(60)
    budget.started -= 60
    budget.spend("the notebook", _run(60, timed_out=True, cpu=5.0, load=cores + 3), cut=True)
    assert budget.starved()
    busy_learner = Budget(60)
    busy_learner.started -= 60
    busy_learner.spend("the notebook", _run(60, timed_out=True, cpu=58.0, load=cores + 3), cut=True)
    assert not busy_learner.starved()


def _context(monkeypatch, seconds_left: float, probe_seconds: float, timed_out: bool = False):
    calls = []

    def fake_run_probe(sandbox, tool, work, inputs, args):
        calls.append(sandbox.limits.wall_seconds)
        return ProbeOutcome({"error": "it took over N s"} if timed_out else {"ok": True},
                            _run(probe_seconds, timed_out=timed_out))

    class FakeSandbox:
        def __init__(self, limits):
            self.limits = limits

        def cleanup(self):
            pass

    monkeypatch.setattr("grader.launch.run_probe", fake_run_probe)
    budget = Budget(100)
    budget.started -= 100 - seconds_left
    ctx = Context(lab=lab03.LAB, work=Path(tempfile.gettempdir()), params={}, new_sandbox=FakeSandbox, budget=budget)
    return ctx, calls


def test_a_probe_runs_with_what_is_left_and_says_when_the_budget_stopped_it(monkeypatch):
    ctx, calls = _context(monkeypatch, seconds_left=30, probe_seconds=30, timed_out=True)
    result = ctx.probe("mlflow_probe", raw=True, limits=Limits(wall_seconds=120))
    assert 29 < calls[0] <= 30
    assert "when this submission's time budget ran out" in result["error"]
    assert ctx.budget.ran_out == "mlflow_probe"


def test_a_probe_with_no_time_left_is_not_started(monkeypatch):
    ctx, calls = _context(monkeypatch, seconds_left=1, probe_seconds=1)
    checks = Checks()

    @checks.add(points=1, hint="", section="")
    def needs_a_probe(ctx):
        """Runs a probe."""
        ctx.probe("mlflow_probe", limits=Limits(wall_seconds=120))

    [result] = judge(checks, ctx)
    assert not calls
    assert result.status == "failed"
    assert result.message.startswith("not run: this submission's time budget was used up before mlflow_probe")


def test_a_visible_check_never_runs_a_probe_on_hidden_inputs(monkeypatch):
    ctx, calls = _context(monkeypatch, seconds_left=90, probe_seconds=1)
    checks = Checks()

    @checks.add(points=1, hint="", section="")
    def visible_peeks(ctx):
        """A visible check that (wrongly) asks for the hidden scenario's probe."""
        ctx.probe("dvc_probe", secret=True)

    @checks.add(points=1, hint="", section="", visible=False)
    def hidden_may(ctx):
        """A hidden check may."""
        ctx.probe("dvc_probe", secret=True)

    visible, hidden = judge(checks, ctx)
    assert visible.status == "failed" and "HiddenInputsError" in visible.message
    assert hidden.status == "passed"
    assert len(calls) == 1


def test_a_stalling_sibling_is_cut_off_relative_to_the_others():
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "grader" / "tools"))
    from harness import sibling_limit

    assert sibling_limit([], 10) == 10
    assert sibling_limit([0.1, 0.2], 10) == 10  # too few siblings to judge by
    assert sibling_limit([0.1, 0.2, 0.15], 10) == 3.0  # the floor
    assert sibling_limit([0.1, 0.6, 0.15], 10) == 6.0
    assert sibling_limit([2.0, 0.6, 0.15], 10) == 10


# --- end to end: a notebook that stalls in its last cell, graded with a 45 s budget ---------------------------

BUDGET = 45


def _lab03_with_budget():
    module = types.ModuleType("lab03_budget")
    module.__dict__.update({k: v for k, v in vars(lab03).items() if not k.startswith("__")})
    module.LAB = dataclasses.replace(lab03.LAB, timeout=150, cell_timeout=150, budget=BUDGET)
    return module


@pytest.mark.slow
def test_a_stalling_notebook_holds_its_slot_for_the_budget_only(tmp_path, monkeypatch):
    # a sleeping notebook on a machine this busy reads as starved (a regrade): here the budget is under test
    monkeypatch.setattr("grader.execute.starved", lambda run, wall: False)
    monkeypatch.setattr(Budget, "starved", lambda self: False)
    solved = assign.build_lab(json.loads(lab03.LAB.solution_path.read_text(encoding="utf-8")), lab03.LAB.id,
                              with_solutions=True)
    solved["cells"].append({"cell_type": "code", "id": f"stall-{uuid.uuid4().hex[:8]}", "metadata": {},
                            "execution_count": None, "outputs": [],
                            "source": "import signal, time\nsignal.signal(signal.SIGALRM, signal.SIG_IGN)\n"
                                      "time.sleep(1000)\n"})
    started = time.monotonic()
    result, jobs = grade_alone(_lab03_with_budget(), solved, tmp_path, "stalls")
    took = time.monotonic() - started
    assert result.status == "graded", result.output
    # every check judged from a probe says the budget ran out; the file-only checks still score
    probe_checks = [t for t in result.tests if "time budget was used up" in t.message]
    assert probe_checks, [(t.name, t.message) for t in result.tests]
    assert all(t.score == 0 for t in probe_checks)
    assert result.score == pytest.approx(sum(t.score for t in result.tests if t not in probe_checks))
    assert result.score == pytest.approx(EXPECTED_SCORE), [(t.name, t.status, t.message[:80]) for t in result.tests]
    assert "it ran out during the notebook" in result.output
    assert result.timing["ran_out"] == "the notebook" and result.timing["parts"][0]["cut_off"]
    assert took < BUDGET + 60  # the budget, plus preparing inputs and judging files (never the 150 s limit)
    out = tmp_path / "results.json"
    write_results([result], out)
    assert out.stat().st_size < 50_000
    assert not list(jobs.iterdir())  # no job dir left


# what lab 03 judges from the files the notebook wrote before it stalled
EXPECTED_SCORE = 2.0  # metrics_reported (1) and split_as_asked (1): every other check needs a probe
