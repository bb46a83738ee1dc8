"""Scoring integrity (issue 9, items 4, 12, 13, 14): one public case per class of cheat, graded end to end.

Each end-to-end case grades an edited reference with `grade_notebook` and asserts the exact score, that no job
dir is left behind and how large the result JSON is. The class is what is tested; more cheats of each class
are tried that are not in this file.
- 4: one fitted model logged six times under six claimed settings (lab 05);
- 12: a skops file built only of NumPy/scikit-learn names whose FunctionTransformer runs `numpy.load` with
  `allow_pickle=True` (lab 03, and the guard itself against a real payload);
- 13: a test that fingerprints the module's file, so it "kills" every mutant (lab 01);
- 14: quality gates switched off from inside the project (lab 02).
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest

from grader import assign
from grader.cases import replace
from grader.grade import grade_notebook, write_results
from grader.labs import lab_modules

MODULES = lab_modules()
TOOLS = Path(__file__).resolve().parents[2] / "grader" / "tools"


def _solved(lab_id: str) -> dict:
    module = MODULES[lab_id]
    return assign.build_lab(json.loads(module.LAB.solution_path.read_text(encoding="utf-8")), lab_id,
                            with_solutions=True)


def _case(lab_id: str, name: str):
    from grader.cases import cases_of

    return next(c for c in cases_of(MODULES[lab_id]) if c.name == name)


def _grade(lab_id: str, notebook: dict, tmp_path, monkeypatch, isolate):
    """Grade `notebook`; the job dirs of this grading go under tmp_path/jobs, which must end up empty."""
    path = tmp_path / "submission.ipynb"
    path.write_text(assign.dumps(notebook), encoding="utf-8")
    jobs = tmp_path / "jobs"
    jobs.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(jobs))
    result = grade_notebook(MODULES[lab_id], path, isolate=isolate)
    monkeypatch.setattr(tempfile, "tempdir", None)
    assert result.status == "graded", result.output
    assert not list(jobs.iterdir()), f"job dirs left behind: {list(jobs.iterdir())}"
    out = tmp_path / "results.json"
    write_results([result], out)
    assert out.stat().st_size < 40_000, out.stat().st_size
    return result, {t.name: t for t in result.tests}


def _max(lab_id: str) -> float:
    return float(sum(c.points for c in MODULES[lab_id].CHECKS))


# --- 12: artifact loaders trust an explicit list, not module prefixes --------------------------------------


class _Payload:
    """What a pickle inside the .npy file does when numpy.load(allow_pickle=True) reads it: make a folder."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        import os

        return os.mkdir, (self.marker,)


def _evil_transformer(payload: Path):
    from sklearn.preprocessing import FunctionTransformer

    return FunctionTransformer(func=np.load, kw_args={"allow_pickle": True}, validate=False).fit(str(payload))


def test_a_skops_file_of_numpy_and_sklearn_names_that_runs_code_is_refused_before_anything_runs(tmp_path):
    import skops.io as sio

    sys.path.insert(0, str(TOOLS))
    try:
        import skops_guard
    finally:
        sys.path.remove(str(TOOLS))
    marker = tmp_path / "pwned"
    payload = tmp_path / "payload.npy"
    with open(payload, "wb") as handle:  # an object array: np.load(allow_pickle=True) unpickles it
        np.lib.format.write_array(handle, np.array([_Payload(str(marker))], dtype=object), allow_pickle=True)
    artifact = tmp_path / "model.skops"
    sio.dump(_evil_transformer(payload), artifact)
    asked = sio.get_untrusted_types(file=artifact)
    assert asked and all(t.startswith(("sklearn.", "numpy.", "scipy.")) for t in asked)  # the old rule let it in
    with pytest.raises(skops_guard.Refused, match=r"FunctionTransformer with func=numpy\.load"):
        skops_guard.load(artifact, sio)
    assert not marker.exists()  # refused from schema.json alone: nothing was constructed or called
    # what the old rule allowed: loading it and using it runs the payload
    sio.load(artifact, trusted=asked).transform(str(payload))
    assert marker.is_dir()


def test_the_guard_admits_what_the_labs_save(tmp_path):
    import skops.io as sio
    from sklearn.compose import ColumnTransformer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline

    from mlops_kit.classifier import build_pipeline
    from mlops_kit.data import breast_cancer_frame

    sys.path.insert(0, str(TOOLS))
    try:
        import skops_guard
    finally:
        sys.path.remove(str(TOOLS))
    frame = breast_cancer_frame()
    X, y = frame.drop(columns="target"), frame["target"]
    picked = Pipeline([("pick", ColumnTransformer([("keep", "passthrough", ["mean_texture"])])),
                       ("model", LogisticRegression(max_iter=500))])
    for i, model in enumerate((build_pipeline("logreg"), build_pipeline("hgb"), picked)):
        path = tmp_path / f"{i}.skops"
        sio.dump(model.fit(X, y), path)
        assert skops_guard.load(path, sio).predict_proba(X.head(3)).shape == (3, 2)


@pytest.mark.slow
def test_lab03_a_model_with_a_loading_function_is_refused(tmp_path, monkeypatch, isolate):
    from grader.checks.lab03_cases import SAVE

    evil = ('from sklearn.preprocessing import FunctionTransformer\n'
            'pipeline.steps.insert(0, ("load", FunctionTransformer(func=np.load, kw_args={"allow_pickle": True})))\n'
            + SAVE + '\npipeline.steps.pop(0)')
    notebook = replace("answer-13", SAVE, "import numpy as np\n" + evil).apply
    solved = _solved("03_classifier")
    notebook(solved)
    result, tests = _grade("03_classifier", solved, tmp_path, monkeypatch, isolate)
    assert tests["artifact_loads"].status == "failed"
    assert "was refused: a FunctionTransformer with func=numpy.load" in tests["artifact_loads"].message
    assert result.score == pytest.approx(LAB03_REFUSED_SCORE), [(t.name, t.status, t.score) for t in result.tests]


# the checks that read files the notebook wrote still score; every check that needs the model is skipped
LAB03_REFUSED_SCORE = 2.0  # metrics_reported (1) and split_as_asked (1)


# --- 4: every logged run's claims checked against its own artifact ---------------------------------------


@pytest.mark.slow
def test_lab05_one_fitted_model_relabelled_six_times_is_not_a_sweep(tmp_path, monkeypatch, isolate):
    case = _case("05_tracking", "relabelled_one_model")
    result, tests = _grade("05_tracking", case.notebook(_solved("05_tracking")), tmp_path, monkeypatch, isolate)
    assert tests["sweep_logged"].status == "failed"
    assert "share one model (the same predictions on every test row)" in tests["sweep_logged"].message
    assert tests["fitted_on_train"].status == "partial"
    # sweep_logged (2) lost, fitted_on_train keeps the one run in six that was fitted with its own C
    assert result.score == pytest.approx(_max("05_tracking") - 2 - 5 / 6, abs=1e-4)  # scores are rounded


# --- 13: the learner's tests run on behaviour-preserving variants of the reference -----------------------


@pytest.mark.slow
def test_lab01_a_test_that_fingerprints_the_source_earns_no_mutation_points(tmp_path, monkeypatch, isolate):
    case = _case("01_tested_code", "tests_fingerprint_the_source")
    result, tests = _grade("01_tested_code", case.notebook(_solved("01_tested_code")), tmp_path, monkeypatch,
                           isolate)
    assert tests["tests_pass_on_reference"].status == "passed"
    for name in ("mutants_killed", "hidden_mutants_killed"):
        assert tests[name].status == "failed"
        assert "they test its text, not its behaviour" in tests[name].message
    assert result.score == pytest.approx(_max("01_tested_code") - 6 - 2)


# --- 14: quality gates run with the grader's rules, and what switches them off is named ------------------


def test_lab02_what_learner_code_writes_during_the_install_never_reaches_the_gates(tmp_path, monkeypatch):
    """The gates (ruff, mypy) run beside the learner's install and commands, which may rewrite anything in the
    probe's scratch (a setup.py runs while pip installs). Here the learner's side annotates the sources and only
    then lets the gates start: they must still see the code as submitted, from their own copy."""
    import importlib.util
    import threading
    from argparse import Namespace

    tools = Path(__file__).resolve().parents[2] / "grader" / "tools"
    monkeypatch.syspath_prepend(str(tools))
    spec = importlib.util.spec_from_file_location("package_probe_under_test", tools / "package_probe.py")
    probe = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(probe)

    work = tmp_path / "work"
    source = work / "project" / "src" / "bcdata"
    source.mkdir(parents=True)
    (source / "__init__.py").write_text("")
    (source / "cli.py").write_text("def summary(csv):\n    return None\n")
    (work / "project" / "pyproject.toml").write_text('[project]\nname = "bcdata"\nversion = "0.1"\n')
    written = threading.Event()
    gates = probe.run_gates

    def learner_side(args, inputs, project, scratch, out, env, result):  # what a setup.py could do
        for path in scratch.rglob("cli.py"):
            path.write_text("def summary(csv: str) -> None:\n    return None\n")
        written.set()

    def late_gates(*args):
        assert written.wait(30)
        return gates(*args)

    monkeypatch.setattr(probe, "learner_side", learner_side)
    monkeypatch.setattr(probe, "run_gates", late_gates)
    out, inputs = tmp_path / "out", tmp_path / "in"
    out.mkdir()
    inputs.mkdir()
    args = Namespace(work=str(work), project="project", package="bcdata", script="bcdata", ruff_args="[]",
                     mypy_args=json.dumps(["--strict"]), out=str(out), input=str(inputs), seed=0, test_size="")
    result = probe.run(args, {})
    assert written.is_set()
    assert result["mypy"]["returncode"] != 0, result["mypy"]
    assert "missing a type annotation" in result["mypy"]["output"], result["mypy"]


@pytest.mark.slow
@pytest.mark.parametrize("name,lost", [("config_relaxes_the_gates", 2), ("mypy_ignore_errors_header", 1),
                                       ("stub_shadows_module", 1)])
def test_lab02_quality_gates_cannot_be_switched_off_from_the_project(name, lost, tmp_path, monkeypatch, isolate):
    case = _case("02_packaging", name)
    result, tests = _grade("02_packaging", case.notebook(_solved("02_packaging")), tmp_path, monkeypatch, isolate)
    assert tests["types_clean"].status == "failed", tests["types_clean"].message
    assert result.score == pytest.approx(_max("02_packaging") - lost), \
        [(t.name, t.status, t.score, t.message[:100]) for t in result.tests if t.status != "passed"]
