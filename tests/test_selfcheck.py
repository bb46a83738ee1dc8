"""The in-notebook self-check: visible checks only, shown as HTML, on the outputs a run just wrote."""

import os
import subprocess
import sys

import pytest

from grader.grade import grade_notebook
from grader.labs import find_lab
from grader.selfcheck import show_self_check


@pytest.mark.slow
def test_self_check_on_a_solved_run_shows_visible_checks_passing(tmp_path, isolate, monkeypatch):
    module = find_lab("03")
    kept = tmp_path / "run"
    grade_notebook(module, module.LAB.solution_path, reference=True, keep_dir=kept, isolate=isolate)
    params = {"seed": 17, "data_path": "data/breast_cancer.csv", "output_dir": "outputs"}
    report = show_self_check("03", params, work=kept)
    visible = [c.name for c in module.CHECKS if c.visible]
    assert [r.name for r in report.results] == visible, "hidden checks must not run in a self-check"
    assert all(r.status == "passed" for r in report.results), repr(report)
    html = report._repr_html_()
    assert "passed" in html and "<table>" in html
    # the same from the library, which asks the grader in a process of its own
    from mlops_kit.course import self_check

    monkeypatch.chdir(kept)
    answer = self_check("03", **params)
    assert answer.score == answer.max_score == report.max_score and "<table>" in answer._repr_html_()
    # wrong seed: the split no longer matches, and the self-check says so
    wrong = show_self_check("03", dict(params, seed=18), work=kept)
    assert any(r.name == "split_as_asked" and r.status == "failed" for r in wrong.results)


def test_self_check_does_nothing_while_graded():
    code = "from mlops_kit.course import self_check; print(repr(self_check('03')))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env={**os.environ, "MLOPS_GRADING": "1"})
    assert "graded by mlops-grade outside this notebook" in out.stdout and "None" in out.stdout


def test_the_library_never_imports_the_grader():
    from grader.labs import REPO

    for module in (REPO / "mlops_kit").glob("*.py"):
        text = module.read_text()
        assert "import grader" not in text and "from grader" not in text, module.name
