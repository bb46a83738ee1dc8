"""Lab 03 — binary classifier from CSV: checks judged on the saved artifact, never on kernel variables."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from grader.checks.common import (
    Checks,
    Fail,
    Partial,
    public_frame,
    require_close,
    require_keys,
    require_number,
    seeded_split,
    write_public_and_holdout,
)
from grader.labs import Lab

LAB = Lab(
    id="03_classifier",
    title="A binary classifier from CSV to a safe artifact",
    week=3,
    minutes=75,
    objectives=(
        "split a CSV reproducibly and keep preprocessing inside a scikit-learn Pipeline",
        "estimate ROC AUC with stratified cross-validation and confirm it on a test split",
        "save the model as a skops artifact that reloads and predicts in a fresh process",
        "report metrics that anyone can recompute from the artifact",
        "compare two model families fairly and read a calibration curve",
    ),
    lesson="curriculum/03_classifier.ipynb",
    seed=17,
    timeout=240,
    cell_timeout=120,
)

TEST_SIZE = 0.25
CV_FOLDS = 5
HOLDOUT_SHARE = 0.2
HOLDOUT_SEED = 20261127
HOLDOUT_AUC = 0.95
ARTIFACT, METRICS, PREDICTIONS = "model.skops", "metrics.json", "test_predictions.csv"
COMPARISON, CALIBRATION = "comparison.json", "calibration.csv"
CALIBRATION_BINS = 5
METRIC_KEYS = ("roc_auc", "accuracy", "cv_roc_auc_mean", "cv_roc_auc_std")
CHECKS = Checks()


def prepare(work: Path) -> tuple[dict, dict]:
    """Write the public CSV into the job's work dir; keep the holdout (and its labels) here."""
    public, holdout = write_public_and_holdout(work, "data/breast_cancer.csv", HOLDOUT_SHARE, HOLDOUT_SEED)
    params = {"seed": LAB.seed, "data_path": "data/breast_cancer.csv", "output_dir": "outputs"}
    return params, {"public": public, "holdout": holdout}


def _split(ctx):
    return seeded_split(ctx, TEST_SIZE)


def _probe(ctx) -> dict:
    X_train, X_test, y_train, _ = _split(ctx)
    inputs = {"X_test": X_test.to_numpy(), "columns": np.array(list(X_test.columns)),
              "train_features": X_train.to_numpy(), "train_labels": y_train.to_numpy()}
    if "holdout" in ctx.hidden:
        inputs["X_holdout"] = ctx.hidden["holdout"].drop(columns="target").to_numpy()
    return ctx.probe("sklearn_model", inputs, args=("--artifact", ctx.output(ARTIFACT), "--cv-folds",
                                                    str(CV_FOLDS), "--cv-seed", str(ctx.params["seed"])),
                     needs=(ctx.output(ARTIFACT),))


@CHECKS.add(points=1, hint="Write metrics.json with json.dump(metrics, f) in the last exercise.",
            section="3.3 Evaluate on the test split")
def metrics_reported(ctx):
    """metrics.json holds roc_auc, accuracy, cv_roc_auc_mean and cv_roc_auc_std, each in [0, 1]."""
    metrics = require_keys(ctx.read_json(ctx.output(METRICS)), METRIC_KEYS, METRICS)
    for key in METRIC_KEYS:
        require_number(metrics[key], f"{METRICS}: {key}", 0.0, 1.0)


@CHECKS.add(points=1, hint="Use stratified_split(X, y, test_size=0.25, seed=seed) with the notebook's `seed`.",
            section="1.3 A deterministic, stratified split (week 1)")
def split_as_asked(ctx):
    """test_predictions.csv lists the test rows of the seeded, stratified 25 % split, in order."""
    table = ctx.read_csv(ctx.output(PREDICTIONS))
    require_keys({c: 1 for c in table.columns}, ("row", "proba"), PREDICTIONS)
    expected = list(_split(ctx)[1].index)
    rows = list(table["row"])
    if rows != expected:
        same_set = sorted(rows) == sorted(expected)
        raise Fail(f"{PREDICTIONS} has {len(rows)} rows; the seeded split (seed={ctx.params['seed']}) gives "
                   f"{len(expected)} test rows" + (" in another order" if same_set else
                   ", and the row numbers differ: did you hard-code the seed or split differently?"))


@CHECKS.add(points=2, hint="save_model(pipeline, Path(output_dir) / 'model.skops') from mlops_kit.classifier.",
            section="3.7 Save the artifact safely")
def artifact_loads(ctx):
    """model.skops loads in a fresh sandboxed process, trusting only scikit-learn/NumPy types."""
    result = _probe(ctx)
    if not result["is_pipeline"]:
        raise Fail(f"the artifact is a {result['class']}, expected a sklearn.pipeline.Pipeline")
    if not result["has_predict_proba"]:
        raise Fail("the pipeline has no predict_proba: end it with a probabilistic classifier")
    if "proba_error" in result:
        raise Fail(f"the reloaded pipeline cannot predict on the test split: {result['proba_error']}")


@CHECKS.add(points=1, depends=("artifact_loads", "split_as_asked"),
            hint="Write the probabilities of the *fitted* pipeline you saved, for X_test, in X_test's order.",
            section="3.7 Save the artifact safely")
def predictions_reproduce(ctx):
    """The reloaded artifact reproduces the test probabilities you saved."""
    saved = ctx.read_csv(ctx.output(PREDICTIONS))["proba"].to_numpy(dtype=float)
    fresh = np.asarray(_probe(ctx)["proba"]["test"])
    worst = float(np.max(np.abs(saved - fresh))) if len(saved) == len(fresh) else None
    if worst is None or worst > 1e-6:
        raise Fail("the probabilities in test_predictions.csv differ from what the saved model predicts "
                   f"(largest difference {worst if worst is not None else 'n/a: lengths differ'}); save the "
                   "same fitted pipeline you predicted with")


@CHECKS.add(points=2, depends=("artifact_loads",),
            hint="Put the scaler inside the Pipeline and fit the pipeline on X_train only.",
            section="3.1 Preprocessing belongs inside the pipeline")
def preprocessing_in_pipeline(ctx):
    """The scaler is a step of the pipeline, fitted on exactly the training split (no leakage)."""
    steps = _probe(ctx)["steps"]
    X_train = _split(ctx)[0]
    scalers = [s for s in steps[:-1] if "n_samples_seen" in s]
    if len(steps) < 2 or not scalers:
        raise Fail("the pipeline has no fitted preprocessing step before the classifier (expected a "
                   f"StandardScaler); its steps are {[s['class'].rsplit('.', 1)[-1] for s in steps]}")
    seen = scalers[0]["n_samples_seen"]
    total = len(public_frame(ctx))
    if seen == total:
        raise Fail(f"the scaler was fitted on all {total} rows (train + test): test data leaked into training")
    if seen != len(X_train):
        raise Fail(f"the scaler was fitted on {seen} rows; the training split has {len(X_train)}: fit the whole "
                   "pipeline on X_train, y_train")
    if "mean" in scalers[0] and not np.allclose(scalers[0]["mean"], X_train.mean().to_numpy(), rtol=1e-6):
        raise Fail("the scaler's learned means are not those of the training split: fit it on X_train")


@CHECKS.add(points=1, depends=("metrics_reported", "predictions_reproduce"),
            hint="Compute the metrics from the same pipeline's predictions on X_test, y_test.",
            section="3.3 Evaluate on the test split")
def metrics_agree(ctx):
    """Reported test ROC AUC and accuracy match the grader's recomputation from the artifact."""
    from sklearn.metrics import accuracy_score, roc_auc_score

    metrics = ctx.read_json(ctx.output(METRICS))
    y_test = _split(ctx)[3].to_numpy()
    proba = np.asarray(_probe(ctx)["proba"]["test"])
    require_close(float(metrics["roc_auc"]), roc_auc_score(y_test, proba), "roc_auc", 1e-4)
    require_close(float(metrics["accuracy"]), accuracy_score(y_test, proba >= 0.5), "accuracy", 1e-4)


@CHECKS.add(points=1, depends=("metrics_reported", "artifact_loads"),
            hint="StratifiedKFold(n_splits=5, shuffle=True, random_state=seed) on the training split only.",
            section="3.2 Cross-validation")
def cv_reproduces(ctx):
    """Your reported cross-validated ROC AUC matches a re-run of the same folds on a clone of your pipeline."""
    cv = _probe(ctx).get("cv", {})
    if "error" in cv or "mean" not in cv:
        raise Fail(f"cross-validating a clone of your pipeline failed: {cv.get('error', 'no result')}")
    metrics = ctx.read_json(ctx.output(METRICS))
    require_close(float(metrics["cv_roc_auc_mean"]), cv["mean"], "cv_roc_auc_mean", 1e-4)
    require_close(float(metrics["cv_roc_auc_std"]), cv["std"], "cv_roc_auc_std", 1e-4)


@CHECKS.add(points=3, visible=False, depends=("artifact_loads",),
            hint="A well-regularised, scaled model generalises; do not tune on the test split.",
            section="3.2 Cross-validation")
def holdout_auc(ctx):
    """ROC AUC on the grader's hidden holdout is at least 0.95."""
    from sklearn.metrics import roc_auc_score

    if "holdout" not in ctx.hidden:
        raise Fail("the hidden holdout is only available at grading")
    proba = np.asarray(_probe(ctx)["proba"].get("holdout", []))
    auc = roc_auc_score(ctx.hidden["holdout"]["target"].to_numpy(), proba)
    if auc < HOLDOUT_AUC:
        if auc >= HOLDOUT_AUC - 0.05:
            return Partial(0.5, f"holdout ROC AUC {auc:.3f} is below {HOLDOUT_AUC}")
        raise Fail(f"holdout ROC AUC {auc:.3f} is below {HOLDOUT_AUC}")


@CHECKS.add(points=2, depends=("artifact_loads",),
            hint="Cross-validate build_pipeline('hgb', seed=seed) with the same StratifiedKFold as exercise 3.",
            section="3.6 A second model family, compared fairly")
def families_compared(ctx):
    """comparison.json: your pipeline and gradient boosting scored on the same folds, and the better one named."""
    comparison = require_keys(ctx.read_json(ctx.output(COMPARISON)), ("logreg", "hgb", "better"), COMPARISON)
    for family in ("logreg", "hgb"):
        require_keys(comparison[family], ("mean", "std"), f"{COMPARISON}: {family}")
        for key in ("mean", "std"):
            require_number(comparison[family][key], f"{COMPARISON}: {family}.{key}", 0.0, 1.0)
    cv = _probe(ctx).get("cv", {})
    if "mean" not in cv:
        raise Fail(f"cross-validating a clone of your pipeline failed: {cv.get('error', 'no result')}")
    require_close(float(comparison["logreg"]["mean"]), cv["mean"], "logreg mean (your pipeline)", 1e-4)
    X_train, _, y_train, _ = _split(ctx)
    hgb = _reference_hgb_scores(int(ctx.params["seed"]), _fingerprint(X_train, y_train), X_train, y_train)
    reference = "build_pipeline('hgb', seed=seed) on the same folds"
    require_close(float(comparison["hgb"]["mean"]), float(hgb.mean()), "hgb mean", 1e-4, reference)
    require_close(float(comparison["hgb"]["std"]), float(hgb.std()), "hgb std", 1e-4, reference)
    better = "logreg" if cv["mean"] >= hgb.mean() else "hgb"
    if comparison["better"] != better:
        raise Fail(f"'better' says {comparison['better']!r}, but {better} has the higher mean ROC AUC")


_HGB_CACHE: dict[tuple, np.ndarray] = {}


def _fingerprint(X, y) -> str:
    import hashlib

    return hashlib.sha256(X.to_numpy().tobytes() + y.to_numpy().tobytes()).hexdigest()


def _reference_hgb_scores(seed: int, fingerprint: str, X_train, y_train) -> np.ndarray:
    """The reference gradient boosting's fold scores: they depend on the seed and the data only, so a batch
    computes them once (the data is the grader's own, identical for every submission)."""
    from sklearn.model_selection import StratifiedKFold, cross_val_score

    from mlops_kit.classifier import build_pipeline

    key = (seed, fingerprint)
    if key not in _HGB_CACHE:
        folds = StratifiedKFold(n_splits=CV_FOLDS, shuffle=True, random_state=seed)
        _HGB_CACHE[key] = cross_val_score(build_pipeline("hgb", seed=seed), X_train, y_train, cv=folds,
                                          scoring="roc_auc")
    return _HGB_CACHE[key]


@CHECKS.add(points=1, depends=("predictions_reproduce",),
            hint="calibration_table(pipeline, X_test, y_test, bins=5).to_csv(..., index=False) for the saved pipeline.",
            section="3.5 Calibration")
def calibration_reported(ctx):
    """calibration.csv is the 5-bin calibration curve of your saved pipeline on the test split."""
    from sklearn.calibration import calibration_curve

    table = ctx.read_csv(ctx.output(CALIBRATION))
    require_keys({c: 1 for c in table.columns}, ("predicted", "observed"), CALIBRATION)
    y_test = _split(ctx)[3].to_numpy()
    observed, predicted = calibration_curve(y_test, np.asarray(_probe(ctx)["proba"]["test"]),
                                            n_bins=CALIBRATION_BINS, strategy="quantile")
    mine = table[["predicted", "observed"]].to_numpy(dtype=float)
    if mine.shape != (len(predicted), 2) or not np.allclose(mine, np.column_stack([predicted, observed]), atol=1e-6):
        raise Fail(f"{CALIBRATION} differs from the calibration curve of your saved model on the test split "
                   f"({len(predicted)} quantile bins expected, found {len(mine)} rows)")
