"""Lab 05 — MLflow tracking: the learner's SQLite store is opened only in a probe; numbers are recomputed."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import numpy as np

from grader.checks.common import (
    Checks,
    Fail,
    Partial,
    require_keys,
    require_number,
    seeded_split,
    write_dvc_pointer,
    write_public_and_holdout,
)
from grader.labs import Lab

LAB = Lab(
    id="05_tracking",
    title="Track a sweep with MLflow and prove the best run's number",
    week=5,
    minutes=60,
    objectives=(
        "keep an MLflow tracking store in a SQLite file with a local artifact folder",
        "log a sweep as child runs of one parent, with parameters, metrics and lineage tags (git SHA, data version)",
        "log each model in the safe skops format with a signature and an input example",
        "choose the best run by a validation metric and report numbers anyone can recompute from its model",
    ),
    lesson="curriculum/05_tracking.ipynb",
    seed=23,
    timeout=240,
    cell_timeout=150,
)

EXPERIMENT = "breast-cancer-sweep"
MIN_RUNS = 6
TEST_SIZE = 0.25
CV_FOLDS = 3
HOLDOUT_SHARE = 0.2
HOLDOUT_SEED = 20261205
HOLDOUT_FLOOR = 0.95  # the hidden holdout's ROC AUC must reach this …
HOLDOUT_SLACK = 0.05  # … and lie within this of the test ROC AUC you logged
BEST, DATA = "best_run.json", "data/breast_cancer.csv"
SHA = re.compile(r"^[0-9a-f]{40}$")
MD5 = re.compile(r"^[0-9a-f]{32}$")
CHECKS = Checks()


def prepare(work: Path) -> tuple[dict, dict]:
    """Public CSV tracked by a .dvc file inside a fresh git repository; the holdout and both versions stay here."""
    public, holdout = write_public_and_holdout(work, DATA, HOLDOUT_SHARE, HOLDOUT_SEED)
    md5 = write_dvc_pointer(work / DATA)
    (work / ".gitignore").write_text("/data/breast_cancer.csv\n/outputs/\n")
    sha = _git_commit(work)
    params = {"seed": LAB.seed, "data_path": DATA, "output_dir": "outputs"}
    return params, {"public": public, "holdout": holdout, "git_sha": sha, "md5": md5}


def _git_commit(work: Path) -> str:
    env = {"PATH": "/usr/bin:/bin", "GIT_CONFIG_NOSYSTEM": "1", "GIT_CONFIG_GLOBAL": "/dev/null", "HOME": str(work),
           "GIT_AUTHOR_NAME": "grader", "GIT_AUTHOR_EMAIL": "grader@example.invalid",
           "GIT_COMMITTER_NAME": "grader", "GIT_COMMITTER_EMAIL": "grader@example.invalid"}
    for argv in (["init", "-q", "-b", "main"], ["add", "-A"], ["commit", "-q", "-m", "lab 05 inputs"]):
        subprocess.run(["git", "-C", str(work), *argv], check=True, env=env, capture_output=True, timeout=30)
    done = subprocess.run(["git", "-C", str(work), "rev-parse", "HEAD"], check=True, env=env,
                          capture_output=True, text=True, timeout=30)
    return done.stdout.strip()


def _split(ctx):
    return seeded_split(ctx, TEST_SIZE)


def _best(ctx) -> dict:
    best = require_keys(ctx.read_json(ctx.output(BEST)), ("run_id", "cv_roc_auc", "roc_auc"), BEST)
    if not isinstance(best["run_id"], str) or not re.fullmatch(r"[0-9a-f]{32}", best["run_id"]):
        raise Fail(f"{BEST}: run_id must be an MLflow run id (32 hex digits), found {best['run_id']!r}")
    return best


def _store(ctx, with_model: bool = False) -> dict:
    """The probe's view of the store; with the best run's model reloaded when `with_model`."""
    args = ["--mode", "tracking", "--output-dir", str(ctx.params.get("output_dir", "outputs")),
            "--experiment", EXPERIMENT]
    inputs = None
    if with_model:
        X_train, X_test, y_train, y_test = _split(ctx)
        inputs = {"X_test": X_test.to_numpy(), "y_test": y_test.to_numpy(), "columns": np.array(list(X_test.columns)),
                  "train_features": X_train.to_numpy(), "train_labels": y_train.to_numpy()}
        if "holdout" in ctx.hidden:
            inputs["X_holdout"] = ctx.hidden["holdout"].drop(columns="target").to_numpy()
        args += ["--run-id", _best(ctx)["run_id"], "--cv-folds", str(CV_FOLDS), "--cv-seed", str(ctx.params["seed"]),
                 "--all-runs"]
    result = ctx.probe("mlflow_probe", inputs, args=tuple(args))
    if "error" in result:
        raise Fail(f"{result['error']}{ctx.why_missing() if 'not found' in result['error'] else ''}")
    return result


def _children(ctx) -> tuple[str | None, list[dict]]:
    """The parent with the most child runs in the experiment, and those children."""
    runs = _store(ctx)["runs"]
    counts: dict[str, int] = {}
    for run in runs:
        if run.get("parent"):
            counts[run["parent"]] = counts.get(run["parent"], 0) + 1
    if not counts:
        return None, []
    parent = max(counts, key=counts.get)
    return parent, [r for r in runs if r.get("parent") == parent]


def _model(ctx) -> dict:
    model = _store(ctx, with_model=True)["model"]
    if "error" in model:
        raise Fail(model["error"])
    return model


@CHECKS.add(points=1, hint="use_local_store(output_dir, EXPERIMENT) before starting any run.",
            section="5.2 A tracking store that is just two paths")
def store_opens(ctx):
    """output_dir/mlflow.db is an MLflow store holding the experiment breast-cancer-sweep."""
    runs = _store(ctx)["runs"]
    if not runs:
        raise Fail(f"the experiment {EXPERIMENT!r} in {ctx.output('mlflow.db')} holds no runs")


@CHECKS.add(points=2, depends=("store_opens",), hint="Log params, cv_roc_auc and roc_auc in every child run.",
            section="5.4 A sweep: parent and child runs")
def sweep_logged(ctx):
    """At least six finished child runs, each with hyperparameters, cv_roc_auc and roc_auc; settings differ."""
    _, children = _children(ctx)
    if len(children) < MIN_RUNS:
        flat = sum(1 for r in _store(ctx)["runs"] if not r.get("parent"))
        raise Fail(f"expected at least {MIN_RUNS} child runs under one parent run in {EXPERIMENT!r}, found "
                   f"{len(children)} (and {flat} top-level runs): start each candidate with "
                   "mlflow.start_run(nested=True) inside the parent's `with` block")
    problems = []
    for run in children:
        if run["status"] != "FINISHED":
            problems.append(f"{run['name']}: status {run['status']}")
        if not run["params"]:
            problems.append(f"{run['name']}: no parameters")
        for key in ("cv_roc_auc", "roc_auc"):
            value = run["metrics"].get(key)
            if value is None or not 0.0 <= value <= 1.0:
                problems.append(f"{run['name']}: metric {key} is {value}")
    if problems:
        raise Fail("child runs are incomplete: " + "; ".join(problems[:5]))
    settings = {tuple(sorted(r["params"].items())) for r in children}
    if len(settings) < MIN_RUNS:
        raise Fail(f"only {len(settings)} distinct hyperparameter settings among {len(children)} runs: a sweep "
                   f"needs at least {MIN_RUNS} different candidates")


@CHECKS.add(points=1, depends=("sweep_logged",), hint="Open the parent with mlflow.start_run() and the children "
            "inside it with nested=True.", section="5.4 A sweep: parent and child runs")
def parent_run(ctx):
    """The children's parent is a finished top-level run of the same experiment."""
    parent, _ = _children(ctx)
    runs = {r["run_id"]: r for r in _store(ctx)["runs"]}
    if parent not in runs:
        raise Fail(f"the children point to parent run {parent}, which is not in the experiment {EXPERIMENT!r}")
    if runs[parent].get("parent"):
        raise Fail("the sweep's parent is itself nested: make the parent a top-level run")
    if runs[parent]["status"] != "FINISHED":
        raise Fail(f"the parent run is {runs[parent]['status']}: end it (leave its `with` block)")


@CHECKS.add(points=2, depends=("sweep_logged",), hint="tags = {'git_sha': git_sha('.'), 'data_version': "
            "data_version(data_path)}; set them in every child run.", section="5.1 Lineage: which code, which data?")
def lineage_tags(ctx):
    """Every child run carries the git SHA of the work directory and the DVC md5 of the data."""
    _, children = _children(ctx)
    expected = {"git_sha": ctx.hidden.get("git_sha"), "data_version": ctx.hidden.get("md5")}
    shapes = {"git_sha": SHA, "data_version": MD5}
    for key, want in expected.items():
        found = {r["tags"].get(key) for r in children}
        if None in found:
            raise Fail(f"some child runs lack the tag {key}; found values {sorted(map(str, found))[:3]}")
        if want is not None:
            if found != {want}:
                raise Fail(f"tag {key}: expected {want} on every child run (the grader's repository and .dvc "
                           f"file), found {sorted(found)[:3]}: compute it, do not type it")
        elif not all(v == "unknown" or shapes[key].match(v) for v in found):
            raise Fail(f"tag {key} must be a {'commit SHA' if key == 'git_sha' else 'md5'} or 'unknown', "
                       f"found {sorted(found)[:3]}")


@CHECKS.add(points=1, depends=("sweep_logged",), hint="Copy the chosen child run's id and its logged metrics into "
            "best_run.json.", section="5.6 The best run, and trusting its number")
def best_run_named(ctx):
    """best_run.json names a child run of the sweep and repeats the metrics that run logged."""
    best = _best(ctx)
    _, children = _children(ctx)
    mine = next((r for r in children if r["run_id"] == best["run_id"]), None)
    if mine is None:
        raise Fail(f"{BEST} names run {best['run_id']}, which is not a child run of the sweep")
    for key in ("cv_roc_auc", "roc_auc"):
        reported = require_number(best[key], f"{BEST}: {key}", 0.0, 1.0)
        if abs(reported - mine["metrics"][key]) > 1e-9:
            raise Fail(f"{BEST}: {key} = {reported}, but the run logged {mine['metrics'][key]}: copy the logged value")


@CHECKS.add(points=1, depends=("best_run_named",), hint="Pick the child with the highest cv_roc_auc, never the "
            "highest test score.", section="5.6 The best run, and trusting its number")
def best_by_cv(ctx):
    """The run named in best_run.json has the highest cv_roc_auc of the sweep."""
    _, children = _children(ctx)
    top = max(children, key=lambda r: r["metrics"]["cv_roc_auc"])
    mine = next(r for r in children if r["run_id"] == _best(ctx)["run_id"])
    if mine["metrics"]["cv_roc_auc"] < top["metrics"]["cv_roc_auc"] - 1e-12:
        raise Fail(f"{BEST} names {mine['name']} (cv_roc_auc {mine['metrics']['cv_roc_auc']:.4f}), but "
                   f"{top['name']} has {top['metrics']['cv_roc_auc']:.4f}: choose by cv_roc_auc")


@CHECKS.add(points=2, depends=("best_run_named",), hint="log_sklearn_model(pipeline, X_train) inside the child "
            "run: skops format, signature and input example.", section="5.3 Logging a model that can be trusted later")
def model_reloads(ctx):
    """The best run's logged model (skops, with signature and input example) reloads in a sandbox and predicts."""
    model = _model(ctx)
    if "proba_error" in model:
        raise Fail(f"the reloaded model cannot predict on the test split: {model['proba_error']}")
    missing = [what for what, key in (("a signature", "has_signature"), ("an input example", "has_input_example"))
               if not model[key]]
    if missing:
        return Partial(0.5, f"the model reloads, but was logged without {' and '.join(missing)}: pass "
                            "signature= and input_example= to log_model")


def _mismatches(ctx, metric: str) -> list[str]:
    """Child runs whose logged `metric` differs from the grader's recomputation from their own logged model."""
    recomputed = _store(ctx, with_model=True).get("recomputed", {})
    wrong = []
    for run in sorted(_children(ctx)[1], key=lambda r: r["run_id"] != _best(ctx)["run_id"]):
        again = recomputed.get(run["run_id"], {})
        value = again.get("roc_auc") if metric == "roc_auc" else again.get("cv", {}).get("mean")
        if value is None:
            wrong.append(f"{run['name']}: cannot recompute ({again.get('error') or again.get('cv', {}).get('error')})")
        elif abs(run["metrics"][metric] - value) > 1e-4:
            wrong.append(f"{run['name']}: logged {run['metrics'][metric]:.6f}, recomputed {value:.6f}")
    return wrong


@CHECKS.add(points=2, depends=("model_reloads",), hint="Log roc_auc of the same fitted pipeline you log as the "
            "model, on X_test of the seeded split.", section="5.6 The best run, and trusting its number")
def metric_reproduces(ctx):
    """Every child run's logged roc_auc equals the ROC AUC its own logged model gives on the seeded test split."""
    wrong = _mismatches(ctx, "roc_auc")
    if wrong:
        raise Fail(f"{len(wrong)} run(s) logged a roc_auc that their model does not give on the test split of "
                   f"seed {ctx.params['seed']} (allowed difference 1e-4): " + "; ".join(wrong[:3]))


@CHECKS.add(points=1, depends=("model_reloads",), hint="cross_validate_auc(pipeline, X_train, y_train, folds=3, "
            "seed=seed) before fitting; log its mean as cv_roc_auc.", section="5.4 A sweep: parent and child runs")
def cv_reproduces(ctx):
    """Every child run's cv_roc_auc matches a re-run of the seeded 3-fold CV on a clone of its model."""
    wrong = _mismatches(ctx, "cv_roc_auc")
    if wrong:
        raise Fail(f"{len(wrong)} run(s) logged a cv_roc_auc that 3-fold CV (seed {ctx.params['seed']}) of their "
                   "model does not reproduce (allowed difference 1e-4): " + "; ".join(wrong[:3]))


@CHECKS.add(points=1, depends=("model_reloads",), hint="Log the hyperparameters under the estimator's own names "
            "(C, max_depth, …) with the values the model was fitted with.", section="5.4 A sweep: parent and child runs")
def params_match_model(ctx):
    """The best run's logged hyperparameters are those of the model it logged."""
    model = _model(ctx)
    logged = next(r for r in _children(ctx)[1] if r["run_id"] == _best(ctx)["run_id"])["params"]
    shared = [k for k in logged if k in model["params"]]
    if not shared:
        raise Fail(f"none of the logged parameters {sorted(logged)[:5]} is a parameter of the final estimator "
                   f"({sorted(model['params'])[:6]}…): log them under the estimator's names")
    wrong = [f"{k}: logged {logged[k]}, model has {model['params'][k]}" for k in shared
             if str(logged[k]) != str(model["params"][k])]
    if wrong:
        raise Fail("logged parameters differ from the model's: " + "; ".join(wrong[:3]))


@CHECKS.add(points=2, visible=False, depends=("metric_reproduces",),
            hint="Choose by cross-validation, never by the test score; a scaled, regularised model generalises.",
            section="5.6 The best run, and trusting its number")
def holdout_confirms(ctx):
    """On the grader's hidden holdout the best model reaches ROC AUC 0.95, within 0.05 of the logged roc_auc."""
    from sklearn.metrics import roc_auc_score

    if "holdout" not in ctx.hidden:
        raise Fail("the hidden holdout is only available at grading")
    proba = np.asarray(_model(ctx)["proba"].get("holdout", []))
    auc = float(roc_auc_score(ctx.hidden["holdout"]["target"].to_numpy(), proba))
    logged = float(_best(ctx)["roc_auc"])
    if auc < HOLDOUT_FLOOR:
        raise Fail(f"holdout ROC AUC {auc:.3f} is below {HOLDOUT_FLOOR}")
    if auc < logged - HOLDOUT_SLACK:
        return Partial(0.5, f"holdout ROC AUC {auc:.3f} is more than {HOLDOUT_SLACK} below the logged {logged:.3f}")
