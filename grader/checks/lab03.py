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
from mlops_kit.data import stratified_split

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
LEARNED_AUC = 0.90
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


def _seeded(ctx):
    """The split the lab asks for: the reference split with the run's seed."""
    return seeded_split(ctx, TEST_SIZE)


def _split(ctx):
    """The split the downstream checks judge on: the seeded one, or the learner's own when their
    test_predictions.csv lists another valid set of rows (a wrong split costs split_as_asked only)."""
    X_train, X_test, y_train, y_test = _seeded(ctx)
    rows = _learner_rows(ctx)
    if rows is None or rows == list(X_test.index):
        return X_train, X_test, y_train, y_test
    frame = public_frame(ctx)
    X, y = frame.drop(columns="target"), frame["target"]
    other = _seed_of(ctx, rows)
    if other is not None:  # a typed-in seed: the whole split, in that seed's order (the folds depend on it)
        return stratified_split(X, y, test_size=TEST_SIZE, seed=other)
    chosen = set(rows)
    train_rows = [r for r in X.index if r not in chosen]
    return X.loc[train_rows], X.loc[rows], y.loc[train_rows], y.loc[rows]


def _seed_of(ctx, rows: list) -> int | None:
    """The commonly typed seed whose split has exactly these test rows, if any."""
    frame = public_frame(ctx)
    X, y = frame.drop(columns="target"), frame["target"]
    for other in CANDIDATE_SEEDS:
        if other != int(ctx.params["seed"]) and \
                sorted(stratified_split(X, y, test_size=TEST_SIZE, seed=other)[1].index) == sorted(rows):
            return other
    return None


def _learner_rows(ctx) -> list | None:
    """The row labels in test_predictions.csv, if they are distinct rows of the data (and not 0..n-1)."""
    if not ctx.exists(ctx.output(PREDICTIONS)):
        return None
    try:
        table = ctx.read_csv(ctx.output(PREDICTIONS))
        rows = [int(r) for r in table["row"]]
    except (Fail, KeyError, TypeError, ValueError):
        return None
    labels = set(public_frame(ctx).index)
    if not rows or len(set(rows)) != len(rows) or not set(rows) <= labels or rows == list(range(len(rows))):
        return None
    if len(rows) >= len(labels):  # no rows left to train on
        return None
    return rows


def _probe(ctx, fold_seed: int | None = None) -> dict:
    """The artifact probe: predictions, steps, and a cross-validation of a clone on folds of `fold_seed`."""
    def inputs() -> dict:
        X_train, X_test, y_train, _ = _split(ctx)
        return {"X_test": X_test.to_numpy(), "columns": np.array(list(X_test.columns)),
                "train_features": X_train.to_numpy(), "train_labels": y_train.to_numpy()}

    seed = int(ctx.params["seed"]) if fold_seed is None else fold_seed
    return ctx.probe("sklearn_model", inputs, args=("--artifact", ctx.output(ARTIFACT), "--cv-folds",
                                                    str(CV_FOLDS), "--cv-seed", str(seed)),
                     needs=(ctx.output(ARTIFACT),))


def _fold_seed(ctx) -> int:
    """The seed of the folds to re-run: the run's, unless the learner typed a seed into the split and their
    reported CV only matches folds of that seed (they overrode `seed` throughout)."""
    seed = int(ctx.params["seed"])
    rows = _learner_rows(ctx)
    other = _seed_of(ctx, rows) if rows is not None and rows != list(_seeded(ctx)[1].index) else None
    if other is None:
        return seed
    try:
        reported = float(ctx.read_json(ctx.output(METRICS))["cv_roc_auc_mean"])
    except (Fail, KeyError, TypeError, ValueError):
        return seed
    cv = _probe(ctx, seed).get("cv", {})
    return seed if "mean" in cv and abs(cv["mean"] - reported) <= 1e-4 else other


def _metrics(ctx, keys: tuple[str, ...]) -> dict:
    """The keys of metrics.json a check needs, each a number in [0, 1] (metrics_reported judges the file whole)."""
    metrics = require_keys(ctx.read_json(ctx.output(METRICS)), keys, METRICS)
    for key in keys:
        require_number(metrics[key], f"{METRICS}: {key}", 0.0, 1.0)
    return metrics


@CHECKS.add(points=1, hint="Write metrics.json with json.dump(metrics, f) in the last exercise.",
            section="3.3 Evaluate on the test split")
def metrics_reported(ctx):
    """metrics.json holds roc_auc, accuracy, cv_roc_auc_mean and cv_roc_auc_std, each in [0, 1]."""
    metrics = require_keys(ctx.read_json(ctx.output(METRICS)), METRIC_KEYS, METRICS)
    for key in METRIC_KEYS:
        require_number(metrics[key], f"{METRICS}: {key}", 0.0, 1.0)


@CHECKS.add(points=1, hint="Use stratified_split(X, y, test_size=0.25, seed=seed) with the notebook's `seed`, and "
            "write X_test.index as the row column.", section="1.3 A deterministic, stratified split (week 1)")
def split_as_asked(ctx):
    """test_predictions.csv lists the test rows of the seeded, stratified 25 % split, in order."""
    table = ctx.read_csv(ctx.output(PREDICTIONS))
    require_keys({c: 1 for c in table.columns}, ("row", "proba"), PREDICTIONS)
    expected = list(_seeded(ctx)[1].index)
    try:
        rows = [int(r) for r in table["row"]]
    except (TypeError, ValueError):
        raise Fail(f"the row column of {PREDICTIONS} must hold X_test's index labels (integers)") from None
    if rows != expected:
        raise Fail(_diagnose_split(ctx, rows, expected))


CANDIDATE_SEEDS = (0, 1, 7, 42, 123, 1234, 2024, 2025, 2026)


def _diagnose_split(ctx, rows: list, expected: list) -> str:
    """Why the learner's test rows differ from the seeded split's, as far as the grader can tell."""
    seed = int(ctx.params["seed"])
    head = f"{PREDICTIONS} lists {len(rows)} rows; the seeded split (seed={seed}) has {len(expected)} test rows"
    if rows == list(range(len(rows))):
        return (f"{PREDICTIONS}'s row column holds the positions 0..{len(rows) - 1}, not the index labels of "
                "X_test's rows: write X_test.index (the split shuffles the rows, so positions are not labels)")
    if sorted(rows) == sorted(expected):
        return f"{head}: the same rows, in another order; keep X_test's order"
    frame = public_frame(ctx)
    other = _seed_of(ctx, rows)
    if other is not None:
        return (f"{head}, and yours are exactly the test rows of seed={other}: the seed is typed in. Pass the "
                "notebook's `seed` variable (the grader runs it with another one)")
    if len(rows) != len(expected):
        share = len(rows) / len(frame)
        return f"{head}: your test split holds {share:.0%} of the rows; the lab asks for test_size=0.25"
    return f"{head}, and the row numbers differ: split with stratified_split(X, y, test_size=0.25, seed=seed)"


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


@CHECKS.add(points=1, depends=("artifact_loads",),
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
            hint="Put a StandardScaler inside the Pipeline, scale nothing before it, and fit the pipeline on X_train only.",
            section="3.1 Preprocessing belongs inside the pipeline")
def preprocessing_in_pipeline(ctx):
    """The pipeline standardises with a StandardScaler fitted on exactly the training split (no leakage)."""
    steps = _probe(ctx)["steps"]
    X_train = _split(ctx)[0]
    scalers = [s for s in steps[:-1] if "n_samples_seen" in s]
    names = [s["class"].rsplit(".", 1)[-1] for s in steps]
    if len(steps) < 2 or not scalers:
        raise Fail(f"the pipeline has no fitted preprocessing step before the classifier (expected a StandardScaler); "
                   f"its steps are {names}")
    scaler = scalers[0]
    if not scaler["class"].endswith(".StandardScaler"):
        raise Fail(f"the pipeline scales with {scaler['class'].rsplit('.', 1)[-1]}; the lab asks to standardise the "
                   "features with a StandardScaler")
    seen, total = scaler["n_samples_seen"], len(public_frame(ctx))
    if seen == total:
        raise Fail(f"the scaler was fitted on all {total} rows (train + test): the test rows leaked into training. "
                   "Fit the pipeline on X_train, y_train only")
    if seen != len(X_train):
        raise Fail(f"the scaler was fitted on {seen} rows; the training split has {len(X_train)}: fit the whole "
                   "pipeline on X_train, y_train")
    mean, scale = np.asarray(scaler.get("mean", [])), np.asarray(scaler.get("scale", []))
    if mean.size and not np.allclose(mean, X_train.mean().to_numpy(), rtol=1e-6):
        if scale.size and np.all(np.abs(mean) < 0.2) and np.all(np.abs(scale - 1) < 0.2):
            raise Fail("the scaler inside the pipeline learned means near 0 and scales near 1: the features it saw "
                       "were already standardised, so they were scaled before the pipeline (on the whole dataset, "
                       "before the split: leakage). Keep the raw features and let the pipeline's scaler do it")
        raise Fail("the scaler's learned means are not the means of the training split's raw features: the data "
                   "was transformed before it reached the pipeline")


@CHECKS.add(points=2, depends=("artifact_loads",),
            hint="A constant or random predictor scores ROC AUC 0.5: fit a real classifier (e.g. LogisticRegression).",
            section="3.3 Evaluate on the test split")
def model_learned(ctx):
    """Your saved model has learned something: its test ROC AUC, recomputed by the grader, is at least 0.90."""
    from sklearn.metrics import roc_auc_score

    proba = np.asarray(_probe(ctx)["proba"]["test"])
    y_test = _split(ctx)[3].to_numpy()
    if np.ptp(proba) == 0:
        raise Fail(f"your model predicts the same probability ({proba[0]:.3f}) for every test row: it has not "
                   "learned from the features (a constant predictor's ROC AUC is 0.5)")
    auc = roc_auc_score(y_test, proba)
    if auc < LEARNED_AUC:
        raise Fail(f"the recomputed test ROC AUC of your model is {auc:.3f}, below {LEARNED_AUC}: a sensible "
                   "scaled linear model reaches about 0.99 here")


@CHECKS.add(points=1, depends=("predictions_reproduce",),
            hint="Compute the metrics from the same pipeline's predictions on X_test, y_test.",
            section="3.3 Evaluate on the test split")
def metrics_agree(ctx):
    """Reported test ROC AUC and accuracy match the grader's recomputation from the artifact."""
    from sklearn.metrics import accuracy_score, roc_auc_score

    metrics = _metrics(ctx, ("roc_auc", "accuracy"))
    y_test = _split(ctx)[3].to_numpy()
    proba = np.asarray(_probe(ctx)["proba"]["test"])
    require_close(float(metrics["roc_auc"]), roc_auc_score(y_test, proba), "roc_auc", 1e-4)
    require_close(float(metrics["accuracy"]), accuracy_score(y_test, proba >= 0.5), "accuracy", 1e-4)


@CHECKS.add(points=1, depends=("artifact_loads",),
            hint="StratifiedKFold(n_splits=5, shuffle=True, random_state=seed) on the training split only.",
            section="3.2 Cross-validation")
def cv_reproduces(ctx):
    """Your reported cross-validated ROC AUC matches a re-run of the same folds on a clone of your pipeline."""
    cv = _probe(ctx, _fold_seed(ctx)).get("cv", {})
    if "error" in cv or "mean" not in cv:
        raise Fail(f"cross-validating a clone of your pipeline failed: {cv.get('error', 'no result')}")
    metrics = _metrics(ctx, ("cv_roc_auc_mean", "cv_roc_auc_std"))
    mean, std = float(metrics["cv_roc_auc_mean"]), float(metrics["cv_roc_auc_std"])
    if abs(mean - cv["mean"]) <= 1e-4 and abs(std - cv["std"]) <= 1e-4:
        return None
    everything = _cv_on_all_rows(ctx)
    if everything and abs(mean - everything["mean"]) <= 1e-4:
        raise Fail(f"your cv_roc_auc_mean {mean:.6f} is the cross-validation of all rows, train and test "
                   f"({everything['mean']:.6f}); on the training split only it is {cv['mean']:.6f}: the test rows "
                   "must stay out of model selection")
    require_close(mean, cv["mean"], "cv_roc_auc_mean", 1e-4, "the same 5 shuffled stratified folds of X_train")
    require_close(std, cv["std"], "cv_roc_auc_std", 1e-4, "the same 5 shuffled stratified folds of X_train")


def _cv_on_all_rows(ctx) -> dict | None:
    """The learner pipeline's cross-validation on every public row (a diagnosis, run only on a mismatch)."""
    frame = public_frame(ctx)
    X, y = frame.drop(columns="target"), frame["target"]
    inputs = {"X_test": X.to_numpy()[:1], "columns": np.array(list(X.columns)), "train_features": X.to_numpy(),
              "train_labels": y.to_numpy()}
    result = ctx.probe("sklearn_model", inputs, args=("--artifact", ctx.output(ARTIFACT), "--cv-folds",
                                                      str(CV_FOLDS), "--cv-seed", str(_fold_seed(ctx))), raw=True)
    cv = result.get("cv", {})
    return cv if "mean" in cv else None


@CHECKS.add(points=3, visible=False, depends=("artifact_loads",),
            hint="A well-regularised, scaled model generalises; do not tune on the test split.",
            section="3.2 Cross-validation")
def holdout_auc(ctx):
    """ROC AUC on the grader's hidden holdout is at least 0.95."""
    from sklearn.metrics import roc_auc_score

    if "holdout" not in ctx.hidden:
        raise Fail("the hidden holdout is only available at grading")
    features = ctx.hidden["holdout"].drop(columns="target")
    # a probe of its own: what the model does on hidden rows never shares a result with a visible check
    result = ctx.probe("sklearn_model", {"X_holdout": features.to_numpy(), "columns": np.array(list(features.columns))},
                       args=("--artifact", ctx.output(ARTIFACT)), needs=(ctx.output(ARTIFACT),), secret=True)
    if "proba_error" in result:
        raise Fail(f"the model cannot predict the hidden holdout: {result['proba_error']}")
    proba = np.asarray(result["proba"].get("holdout", []))
    auc = roc_auc_score(ctx.hidden["holdout"]["target"].to_numpy(), proba)
    ctx.figure("holdout_auc", auc, "ROC AUC on the grader's hidden holdout")
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
    cv = _probe(ctx, _fold_seed(ctx)).get("cv", {})
    if "mean" not in cv:
        raise Fail(f"cross-validating a clone of your pipeline failed: {cv.get('error', 'no result')}")
    require_close(float(comparison["logreg"]["mean"]), cv["mean"], "logreg mean (your pipeline)", 1e-4)
    X_train, _, y_train, _ = _split(ctx)
    hgb = _reference_hgb_scores(_fold_seed(ctx), _fingerprint(X_train, y_train), X_train, y_train)
    reference = "build_pipeline('hgb', seed=seed) on the same folds"
    if abs(float(comparison["hgb"]["mean"]) - float(hgb.mean())) > 1e-4:
        raise Fail(_diagnose_hgb(ctx, float(comparison["hgb"]["mean"]), float(hgb.mean())))
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


def _diagnose_hgb(ctx, reported: float, recomputed: float) -> str:
    """Why a reported gradient-boosting score differs: other folds, or other rows, when the grader can tell."""
    from sklearn.model_selection import StratifiedKFold, cross_val_score

    from mlops_kit.classifier import build_pipeline

    seed = _fold_seed(ctx)
    X_train, _, y_train, _ = _split(ctx)
    frame = public_frame(ctx)
    tries = (("5 folds without shuffling (cv=5): not the same folds as exercise 3", X_train, y_train, CV_FOLDS),
             ("all rows, train and test: the test rows leaked into the comparison", frame.drop(columns="target"),
              frame["target"], StratifiedKFold(n_splits=CV_FOLDS, shuffle=True, random_state=seed)))
    for why, X, y, folds in tries:
        score = cross_val_score(build_pipeline("hgb", seed=seed), X, y, cv=folds, scoring="roc_auc").mean()
        if abs(score - reported) <= 1e-4:
            return (f"your hgb mean {reported:.6f} is what gradient boosting scores on {why}; on the same shuffled "
                    f"folds of X_train it is {recomputed:.6f}")
    return (f"you reported hgb mean = {reported:.6f}, but build_pipeline('hgb', seed=seed) on the same folds of "
            f"X_train gives {recomputed:.6f} (allowed difference 0.0001)")


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
        uniform = calibration_curve(y_test, np.asarray(_probe(ctx)["proba"]["test"]), n_bins=CALIBRATION_BINS)
        if mine.shape == (len(uniform[1]), 2) and np.allclose(mine, np.column_stack([uniform[1], uniform[0]]),
                                                               atol=1e-6):
            raise Fail(f"{CALIBRATION} is the curve with 5 equal-width bins; calibration_table uses quantile bins "
                       "(equal counts), which the lab asks for")
        if mine.shape == (len(predicted), 2) and np.allclose(mine, np.column_stack([observed, predicted]), atol=1e-6):
            raise Fail(f"{CALIBRATION} has its predicted and observed columns swapped")
        raise Fail(f"{CALIBRATION} differs from the calibration curve of your saved model on the test split "
                   f"({len(predicted)} quantile bins expected, found {len(mine)} rows)")
