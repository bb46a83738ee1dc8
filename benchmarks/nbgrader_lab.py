"""Lab 03 in nbgrader's format, for `make bench-cohort` (benchmarks/bench_cohort.py).

- `source_notebook(solution, holdout_csv, hgb)`: the reference solution as an nbgrader *source* notebook.
  Solution regions keep their `### BEGIN/END SOLUTION` markers (nbgrader's own); every cell gets nbgrader
  metadata (answer cells `solution: true`, every other cell `locked: true`, ids as `mlops-grade assign`
  numbers them: `answer-04`, `locked-05`), and after exercise 5 come a locked helpers cell and one autograder
  test cell per check of `grader/checks/lab03.py` (`grade: true`, the same points), doing in the kernel the
  computations that check does outside it: metrics.json's keys, the seeded split's rows, the skops artifact
  reloaded (with the course's own `load_model`), the saved probabilities reproduced, the scaler fitted on the
  training rows only, the recomputed test ROC AUC, metrics, a re-run of the CV folds on a clone, the hidden
  holdout (a hidden test reading a CSV outside the course's release), the comparison with gradient boosting
  and the 5-bin calibration curve.
- `submission(learner, release)`: a learner's notebook (ours, cells named by `metadata.mlops.id`) as an
  nbgrader submission: the release notebook with the learner's answer cells, locked cells and test cells
  as released, and the learner's added cells where they put them.

Differences that remain: nbgrader runs the notebook with its own seed (0: no parameters are injected), a test
cell is all-or-nothing (the holdout's half credit is not kept), and the reference gradient boosting's scores are
written into the test as constants (an nbgrader instructor would do so; our grader computes them once per batch).
"""

from __future__ import annotations

import copy
import json
import textwrap
from pathlib import Path

BEGIN, END = "### BEGIN SOLUTION", "### END SOLUTION"
SCHEMA = 3
OUT = "_OUT"

HELPERS = '''
# grading helpers (locked): what the test cells below recompute from the files the notebook wrote
import json as _json
from pathlib import Path as _Path

import numpy as _np
import pandas as _pd

from mlops_kit.classifier import load_model as _load_model
from mlops_kit.data import load_csv as _load_csv, stratified_split as _stratified_split

_OUT = _Path(output_dir)


def _g_split():
    """X_train, X_test, y_train, y_test of the seeded, stratified 25 % split."""
    _X, _y = _load_csv(data_path)
    return _stratified_split(_X, _y, test_size=0.25, seed=seed)


def _g_model():
    """The saved artifact, loaded trusting only scikit-learn, NumPy and SciPy types."""
    return _load_model(_OUT / "model.skops")


def _g_proba():
    """The reloaded artifact's probabilities on the test split, and the test labels."""
    _split = _g_split()
    return _g_model().predict_proba(_split[1])[:, 1], _split[3].to_numpy()


def _g_cv(_model):
    """Mean and std of 5 shuffled stratified folds of the training split, on a clone of `_model`."""
    from sklearn.base import clone
    from sklearn.model_selection import StratifiedKFold, cross_val_score

    _X_train, _, _y_train, _ = _g_split()
    _folds = StratifiedKFold(n_splits=5, shuffle=True, random_state=seed)
    _scores = cross_val_score(clone(_model), _X_train, _y_train, cv=_folds, scoring="roc_auc")
    return float(_scores.mean()), float(_scores.std())
'''

# (check name as in grader/checks/lab03.py, points, test code); {holdout} and {hgb_*} are filled in
TESTS = (
    ("metrics_reported", 1, '''
        _metrics = _json.loads((_OUT / "metrics.json").read_text())
        for _key in ("roc_auc", "accuracy", "cv_roc_auc_mean", "cv_roc_auc_std"):
            assert _key in _metrics, f"metrics.json lacks {_key}"
            assert 0.0 <= float(_metrics[_key]) <= 1.0, f"metrics.json: {_key} is not in [0, 1]"
        '''),
    ("split_as_asked", 1, '''
        _table = _pd.read_csv(_OUT / "test_predictions.csv")
        assert {"row", "proba"} <= set(_table.columns), "test_predictions.csv needs row and proba columns"
        assert [int(_r) for _r in _table["row"]] == list(_g_split()[1].index), "not the seeded split's test rows"
        '''),
    ("artifact_loads", 2, '''
        from sklearn.pipeline import Pipeline as _Pipeline

        _model = _g_model()
        assert isinstance(_model, _Pipeline), f"the artifact is a {type(_model).__name__}, not a Pipeline"
        assert hasattr(_model, "predict_proba"), "the pipeline has no predict_proba"
        assert len(_model.predict_proba(_g_split()[1])) == len(_g_split()[1]), "no prediction per test row"
        '''),
    ("predictions_reproduce", 1, '''
        _saved = _pd.read_csv(_OUT / "test_predictions.csv")["proba"].to_numpy(dtype=float)
        _fresh = _g_proba()[0]
        assert len(_saved) == len(_fresh), "test_predictions.csv has another length"
        assert float(_np.max(_np.abs(_saved - _fresh))) <= 1e-6, "the saved probabilities differ from the model's"
        '''),
    ("preprocessing_in_pipeline", 2, '''
        from sklearn.preprocessing import StandardScaler as _StandardScaler

        _steps = [_step for _, _step in _g_model().steps[:-1] if hasattr(_step, "n_samples_seen_")]
        _X_train = _g_split()[0]
        assert _steps and isinstance(_steps[0], _StandardScaler), "no StandardScaler before the classifier"
        assert int(_np.max(_steps[0].n_samples_seen_)) == len(_X_train), "the scaler saw other rows than X_train"
        assert _np.allclose(_steps[0].mean_, _X_train.mean().to_numpy(), rtol=1e-6), "data transformed before"
        '''),
    ("model_learned", 2, '''
        from sklearn.metrics import roc_auc_score as _roc_auc_score

        _proba, _y_test = _g_proba()
        assert _np.ptp(_proba) > 0, "the same probability for every test row"
        assert _roc_auc_score(_y_test, _proba) >= 0.90, "recomputed test ROC AUC below 0.90"
        '''),
    ("metrics_agree", 1, '''
        from sklearn.metrics import accuracy_score as _accuracy_score, roc_auc_score as _roc_auc_score

        _metrics = _json.loads((_OUT / "metrics.json").read_text())
        _proba, _y_test = _g_proba()
        assert abs(float(_metrics["roc_auc"]) - _roc_auc_score(_y_test, _proba)) <= 1e-4, "roc_auc differs"
        assert abs(float(_metrics["accuracy"]) - _accuracy_score(_y_test, _proba >= 0.5)) <= 1e-4, "accuracy"
        '''),
    ("cv_reproduces", 1, '''
        _metrics = _json.loads((_OUT / "metrics.json").read_text())
        _mean, _std = _g_cv(_g_model())
        assert abs(float(_metrics["cv_roc_auc_mean"]) - _mean) <= 1e-4, "cv_roc_auc_mean is not these folds'"
        assert abs(float(_metrics["cv_roc_auc_std"]) - _std) <= 1e-4, "cv_roc_auc_std is not these folds'"
        '''),
    ("holdout_auc", 3, '''
        ### BEGIN HIDDEN TESTS
        from sklearn.metrics import roc_auc_score as _roc_auc_score

        _holdout = _pd.read_csv({holdout!r})
        _proba = _g_model().predict_proba(_holdout.drop(columns="target"))[:, 1]
        assert _roc_auc_score(_holdout["target"], _proba) >= 0.95, "holdout ROC AUC below 0.95"
        ### END HIDDEN TESTS
        '''),
    ("families_compared", 2, '''
        _comparison = _json.loads((_OUT / "comparison.json").read_text())
        for _family in ("logreg", "hgb"):
            for _key in ("mean", "std"):
                assert 0.0 <= float(_comparison[_family][_key]) <= 1.0, f"{_family}.{_key} is not in [0, 1]"
        _mean = _g_cv(_g_model())[0]
        assert abs(float(_comparison["logreg"]["mean"]) - _mean) <= 1e-4, "logreg mean is not your pipeline's"
        _hgb_mean, _hgb_std = {hgb_mean!r}, {hgb_std!r}  # build_pipeline("hgb", seed=0) on the same folds
        assert abs(float(_comparison["hgb"]["mean"]) - _hgb_mean) <= 1e-4, "hgb mean is not the same folds'"
        assert abs(float(_comparison["hgb"]["std"]) - _hgb_std) <= 1e-4, "hgb std is not the same folds'"
        assert _comparison["better"] == ("logreg" if _mean >= _hgb_mean else "hgb"), "better names the worse"
        '''),
    ("calibration_reported", 1, '''
        from sklearn.calibration import calibration_curve as _calibration_curve

        _table = _pd.read_csv(_OUT / "calibration.csv")
        _proba, _y_test = _g_proba()
        _observed, _predicted = _calibration_curve(_y_test, _proba, n_bins=5, strategy="quantile")
        _mine = _table[["predicted", "observed"]].to_numpy(dtype=float)
        assert _mine.shape == (len(_predicted), 2), "calibration.csv has another number of bins"
        assert _np.allclose(_mine, _np.column_stack([_predicted, _observed]), atol=1e-6), "another curve"
        '''),
)
TESTS_AFTER = "locked-17"  # exercise 5's locked cell: the tests come after the last exercise


def metadata(grade_id: str, *, solution: bool = False, grade: bool = False, points: float = 0) -> dict:
    """nbgrader cell metadata (schema 3): a solution cell, an autograder test cell, or a locked cell."""
    meta = {"grade": grade, "grade_id": grade_id, "locked": not solution, "schema_version": SCHEMA,
            "solution": solution, "task": False}
    if grade:
        meta["points"] = points
    return meta


def _source(cell: dict) -> str:
    return "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]


def _code(grade_id: str, source: str, meta: dict) -> dict:
    return {"cell_type": "code", "execution_count": None, "id": grade_id, "metadata": {"nbgrader": meta},
            "outputs": [], "source": source.strip("\n")}


def test_cells(holdout_csv: str, hgb: tuple[float, float]) -> list[dict]:
    """The helpers cell and one graded test cell per check (grade_id `test-<check>`)."""
    cells = [_code("grading-helpers", HELPERS, metadata("grading-helpers"))]
    for name, points, code in TESTS:
        source = textwrap.dedent(code).replace("{holdout!r}", repr(str(holdout_csv)))
        source = source.replace("{hgb_mean!r}", repr(float(hgb[0]))).replace("{hgb_std!r}", repr(float(hgb[1])))
        cells.append(_code(f"test-{name}", source, metadata(f"test-{name}", grade=True, points=points)))
    return cells


def source_notebook(solution: dict, holdout_csv: str, hgb: tuple[float, float], header: str | None = None) -> dict:
    """The nbgrader source notebook of lab 03 from its reference solution (markers kept)."""
    cells = []
    for index, cell in enumerate(solution["cells"]):
        source = _source(cell)
        if index == 0 and header is not None:
            source = header
        kind = "answer" if cell["cell_type"] == "code" and BEGIN in source else "locked"
        grade_id = f"{kind}-{index:02d}"
        new = {"cell_type": cell["cell_type"], "id": grade_id,
               "metadata": {"nbgrader": metadata(grade_id, solution=kind == "answer")}, "source": source}
        if cell.get("metadata", {}).get("tags"):
            new["metadata"]["tags"] = list(cell["metadata"]["tags"])
        if cell["cell_type"] == "code":
            new.update(execution_count=None, outputs=[])
        cells.append(new)
        if grade_id == TESTS_AFTER:
            cells += test_cells(holdout_csv, hgb)
    if not any(c["id"] == "test-metrics_reported" for c in cells):
        raise ValueError(f"no cell {TESTS_AFTER} in the solution: where do the tests go?")
    return {"cells": cells, "metadata": copy.deepcopy(solution.get("metadata", {})) | {
        "kernelspec": {"display_name": "Python 3 (ipykernel)", "language": "python", "name": "python3"},
        "language_info": {"name": "python"}}, "nbformat": 4, "nbformat_minor": 5}


def points(nb: dict) -> float:
    """Total points of the graded cells."""
    return sum(c["metadata"]["nbgrader"].get("points", 0) for c in nb["cells"]
               if c.get("metadata", {}).get("nbgrader", {}).get("grade"))


def submission(learner: dict, release: dict) -> dict:
    """A learner's notebook (cells named by metadata.mlops.id) as an nbgrader submission of `release`."""
    theirs: dict[str, dict] = {}
    added: dict[str | None, list[dict]] = {}
    previous = None
    for cell in learner["cells"]:
        cell_id = cell.get("metadata", {}).get("mlops", {}).get("id")
        if cell_id is None:
            extra = copy.deepcopy(cell)
            extra.get("metadata", {}).pop("nbgrader", None)
            added.setdefault(previous, []).append(extra)
        else:
            theirs[cell_id] = cell
            previous = cell_id
    cells = list(added.get(None, []))
    for cell in release["cells"]:
        new = copy.deepcopy(cell)
        grade_id = cell.get("metadata", {}).get("nbgrader", {}).get("grade_id")
        if grade_id in theirs and cell["metadata"]["nbgrader"].get("solution"):
            new["source"] = _source(theirs[grade_id])
        cells.append(new)
        cells += added.get(grade_id, [])
    for index, cell in enumerate(cells):
        cell.setdefault("id", f"added-{index:02d}")
        if cell["cell_type"] == "code":
            cell["outputs"], cell["execution_count"] = [], None
    return {**copy.deepcopy(release), "cells": cells}


def reference_hgb(public_csv: Path, seed: int = 0) -> tuple[float, float]:
    """build_pipeline("hgb", seed) cross-validated on the seeded split's training rows: (mean, std)."""
    from sklearn.model_selection import StratifiedKFold, cross_val_score

    from mlops_kit.classifier import build_pipeline
    from mlops_kit.data import load_csv, stratified_split

    X, y = load_csv(public_csv)
    X_train, _, y_train, _ = stratified_split(X, y, test_size=0.25, seed=seed)
    folds = StratifiedKFold(n_splits=5, shuffle=True, random_state=seed)
    scores = cross_val_score(build_pipeline("hgb", seed=seed), X_train, y_train, cv=folds, scoring="roc_auc")
    return float(scores.mean()), float(scores.std())


def dumps(nb: dict) -> str:
    return json.dumps(nb, indent=1, sort_keys=True, ensure_ascii=False) + "\n"
