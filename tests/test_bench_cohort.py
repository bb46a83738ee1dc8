"""`make bench-cohort`'s pieces, fast: lab 03 converted to nbgrader's format, submissions mapped onto it, and the
generated cohort's mix (the benchmark itself runs both graders: benchmarks/bench_cohort.py)."""

from __future__ import annotations

import collections
import json
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "benchmarks"))

import bench_cohort  # noqa: E402
import nbgrader_lab  # noqa: E402

from grader import assign  # noqa: E402
from grader.checks import lab03  # noqa: E402

SOLUTION = json.loads(lab03.LAB.solution_path.read_text())
HGB = (0.987654, 0.012345)


@pytest.fixture(scope="module")
def source():
    return nbgrader_lab.source_notebook(SOLUTION, "/hidden/holdout.csv", HGB)


def _meta(cell: dict) -> dict:
    return cell["metadata"]["nbgrader"]


def test_every_cell_has_valid_nbgrader_metadata(source):
    ids = [_meta(c)["grade_id"] for c in source["cells"]]
    assert len(ids) == len(set(ids)) == len(source["cells"])
    for cell in source["cells"]:
        meta = _meta(cell)
        assert meta["schema_version"] == 3 and cell["id"] == meta["grade_id"]
        assert set(meta) >= {"grade", "grade_id", "locked", "solution", "task"}
        assert meta["locked"] != meta["solution"], "a cell is either the learner's or locked"
        if meta["grade"]:
            assert meta["points"] > 0 and cell["cell_type"] == "code" and not meta["solution"]


def test_solution_cells_are_the_marked_ones(source):
    solutions = [c for c in source["cells"] if _meta(c)["solution"]]
    assert [c["id"] for c in solutions] == ["answer-04", "answer-07", "answer-10", "answer-13", "answer-16"]
    for cell in source["cells"]:
        marked = nbgrader_lab.BEGIN in cell["source"]
        assert marked == _meta(cell)["solution"]
        if marked:
            assert nbgrader_lab.END in cell["source"]


def test_one_test_cell_per_check_with_its_points(source):
    graded = {c["id"]: _meta(c)["points"] for c in source["cells"] if _meta(c)["grade"]}
    assert graded == {f"test-{check.name}": check.points for check in lab03.CHECKS}
    assert nbgrader_lab.points(source) == sum(check.points for check in lab03.CHECKS)


def test_test_cells_compile_and_hide_the_holdout(source):
    for cell in source["cells"]:
        if cell["cell_type"] == "code" and not cell["source"].lstrip().startswith("%"):
            compile(cell["source"], cell["id"], "exec")
    tests = {c["id"]: c["source"] for c in source["cells"] if _meta(c)["grade"]}
    holdout = tests.pop("test-holdout_auc")
    assert "### BEGIN HIDDEN TESTS" in holdout and "'/hidden/holdout.csv'" in holdout
    assert not any("holdout.csv" in text for text in tests.values())
    assert "0.987654" in tests["test-families_compared"]
    for text in tests.values():  # an expression on a test's last line would be read as partial credit
        last = [line for line in text.splitlines() if line.strip()][-1]
        assert last.lstrip().startswith(("assert", "### END HIDDEN TESTS")), last


def test_tests_come_after_the_last_exercise(source):
    ids = [c["id"] for c in source["cells"]]
    assert ids.index("grading-helpers") == ids.index(nbgrader_lab.TESTS_AFTER) + 1
    assert ids.index("test-calibration_reported") < ids.index("locked-19")


def test_a_submission_keeps_answers_and_added_cells_and_the_released_tests(source):
    learner = assign.build_lab(SOLUTION, lab03.LAB.id, with_solutions=True)
    learner["cells"][4]["source"] = "X, y = 1, 2  # mine"
    learner["cells"][2]["source"] = "print('edited a locked cell')"
    learner["cells"].insert(0, {"cell_type": "code", "metadata": {}, "execution_count": 3,
                                "outputs": [{"output_type": "stream", "name": "stdout", "text": "x"}],
                                "source": "raise SystemExit(3)"})
    nb = nbgrader_lab.submission(learner, source)
    cells = nb["cells"]
    assert cells[0]["source"] == "raise SystemExit(3)" and "nbgrader" not in cells[0]["metadata"]
    by_id = {c["id"]: c for c in cells}
    assert len(by_id) == len(cells)
    assert by_id["answer-04"]["source"] == "X, y = 1, 2  # mine"
    assert by_id["locked-02"]["source"] == next(c["source"] for c in source["cells"] if c["id"] == "locked-02")
    assert {c["id"] for c in source["cells"]} <= set(by_id)
    assert all(c["outputs"] == [] and c["execution_count"] is None for c in cells if c["cell_type"] == "code")


def test_plan_has_the_promised_mix():
    mix = collections.Counter(bench_cohort.family(k) for k in bench_cohort.plan(40))
    assert mix["solved"] >= 20 and mix["wrong"] >= 8 and mix["starter"] >= 3 and mix["broken"] >= 2
    assert sum(mix.values()) == 40
    kinds = set(bench_cohort.plan(40))
    assert {"broken-json", "broken-raises", "broken-dies"} <= kinds
    assert bench_cohort.plan(3, ["solved", "broken-dies"]) == ["solved", "broken-dies", "solved"]


def test_generated_cohort():
    subs = bench_cohort.submissions(40)
    assert len(subs) == 40 and len({data for _, data, _ in subs.values()}) == 40  # a distinct hash each
    wrong = [kind for kind, _, _ in subs.values() if kind.startswith("wrong-")]
    assert len(wrong) == len(set(wrong)) >= 8  # different mistakes
    for kind, data, nb in subs.values():
        if kind == "broken-json":
            assert nb is None
            with pytest.raises(json.JSONDecodeError):
                json.loads(data)
        else:
            assert json.loads(data) == nb
        if kind in ("broken-raises", "broken-dies"):
            assert "mlops" not in nb["cells"][0]["metadata"]


def test_nbgrader_venv_pins_the_lock():
    pins = dict(p.split("==") for p in bench_cohort.pinned(("scikit-learn", "skops")))
    lock = (REPO / "requirements.txt").read_text()
    assert all(f"{name}=={version}" in lock for name, version in pins.items())
    assert bench_cohort.failed_students(
        "[AutogradeApp | ERROR] There was an error processing assignment 'ps03' for student 's0006'\n") == ["s0006"]


def test_report_compares_like_with_like(capsys):
    subs = {"s0": ("solved", b"", {}), "s1": ("wrong-x", b"", {}), "s2": ("broken-json", b"", None)}
    ours = {"seconds": 30.0, "exit": 0, "output": "", "scores": {
        "s0": {"score": 17.0, "max": 17.0, "status": "graded"}, "s1": {"score": 7.0, "max": 17.0, "status": "graded"},
        "s2": {"score": 0.0, "max": 17.0, "status": "rejected"}}}
    theirs = {"seconds": 60.0, "exit": 1, "output": "", "failed": ["s2"], "scores": {
        "s0": {"score": 17.0, "max": 17.0, "status": "graded"}, "s1": {"score": 9.0, "max": 17.0, "status": "graded"},
        "s2": {"score": 0.0, "max": None, "status": "error"}}}
    bare = {"seconds": 20.0, "exits": {"s0": 0, "s1": 0, "s2": 1}}
    result = bench_cohort.report(3, 2, subs, ours, theirs, bare)
    assert result["ratio_vs_nbgrader"] == 2.0 and result["overhead_over_papermill"] == 1.5
    assert result["same_score"] == "1 of 2" and result["kinds"] == {"solved": 1, "wrong": 1, "starter": 0, "broken": 1}
    printed = capsys.readouterr().out
    assert "s1 wrong-x: mlops-grade 7, nbgrader 9" in printed and "goal ×3.00" in printed
    assert "mlops-grade rejected 0.0; nbgrader error 0.0 (logged an error" in printed
