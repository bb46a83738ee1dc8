"""Lab 05 — MLflow tracking: the learner's SQLite store is opened only in a probe; numbers are recomputed."""

from __future__ import annotations

import json
import math
import re
import subprocess
from pathlib import Path
from urllib.parse import urlparse

import numpy as np

from grader.checks.common import (
    Checks,
    Fail,
    Partial,
    require_keys,
    seeded_split,
    write_dvc_pointer,
    write_public_and_holdout,
)
from grader.labs import Lab
from grader.sandbox import Limits

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
    return params, {"public": public, "holdout": holdout, "git_sha": sha, "md5": md5, "lesson_md5": _lesson_md5(),
                    "sample_seed": _sample_seed()}


def _sample_seed() -> str:
    """Which child runs the probe recomputes when a sweep has more than it checks: a draw from the grading
    installation's secret (fixed, so a regrade samples the same runs), mixed in the probe with the run ids."""
    try:
        from grader import secret
    except ImportError:  # an installation without the secret module: the run ids alone seed the sample
        return ""
    return f"{secret.seed_for(LAB.id, 'sweep-sample') % 2**64:016x}"


def _lesson_md5() -> str:
    """The md5 of the whole course CSV, as the lesson writes it: the data version a learner may have typed in."""
    import hashlib

    from grader.datasets import breast_cancer_frame

    return hashlib.md5(breast_cancer_frame().to_csv(index=False).encode()).hexdigest()


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


def _value(value) -> float | None:
    """A logged metric as the probe reports it (NaN and infinities come as strings): a float, or None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return float(value)
    if value in ("nan", "inf", "-inf"):
        return float(value)
    return None


def _named_id(ctx) -> str:
    """The run id best_run.json names ("" when it cannot be read): only steers which runs the probe samples."""
    try:
        best = ctx.read_json(ctx.output(BEST))
    except Fail:
        return ""
    return best.get("run_id", "") if isinstance(best, dict) and isinstance(best.get("run_id"), str) else ""


def _store(ctx) -> dict:
    """The probe's view of the store: runs, and every child run's own model reloaded and recomputed."""
    def inputs() -> dict:
        X_train, X_test, y_train, y_test = _split(ctx)
        return {"X_test": X_test.to_numpy(), "y_test": y_test.to_numpy(), "columns": np.array(list(X_test.columns)),
                "train_features": X_train.to_numpy(), "train_labels": y_train.to_numpy()}

    args = ("--mode", "tracking", "--output-dir", str(ctx.params.get("output_dir", "outputs")),
            "--experiment", EXPERIMENT, "--cv-folds", str(CV_FOLDS), "--cv-seed", str(ctx.params["seed"]),
            "--named-run", _named_id(ctx), "--sample-seed", str(ctx.hidden.get("sample_seed", "")))
    return ctx.probe("mlflow_probe", inputs, args=args, needs=(ctx.output("mlflow.db"),),
                     limits=Limits(wall_seconds=180))


def _children(ctx) -> list[dict]:
    """The child runs of the parent with the most children (the sweep)."""
    store = _store(ctx)
    if not store.get("sweep_parent"):
        raise Fail(f"the experiment {EXPERIMENT!r} holds {len(store['runs'])} run(s) and none is nested: start each "
                   "candidate with mlflow.start_run(nested=True) inside the parent's `with` block")
    return [r for r in store["runs"] if r.get("parent") == store["sweep_parent"]]


def _problems(run: dict) -> list[str]:
    """Why a child run cannot count as a candidate of the sweep (empty when it can)."""
    found = []
    if run["status"] != "FINISHED":
        found.append(f"status {run['status']}")
    if not run["params"]:
        found.append("no parameters")
    for key in ("cv_roc_auc", "roc_auc"):
        value = _value(run["metrics"].get(key))
        if value is None or not 0.0 <= value <= 1.0:
            found.append(f"{key} is {run['metrics'].get(key, 'missing')}")
    return found


def _candidates(ctx) -> list[dict]:
    """The sweep's complete child runs (the incomplete ones are reported by sweep_logged, not held against others)."""
    return [r for r in _children(ctx) if not _problems(r)]


def _recomputed(ctx) -> list[tuple[dict, dict]]:
    """(run, the probe's findings on its own model) for every complete child run the probe recomputed."""
    recomputed = _store(ctx).get("recomputed", {})
    pairs = [(r, recomputed[r["run_id"]]) for r in _candidates(ctx) if r["run_id"] in recomputed]
    if not pairs:
        raise Fail("no complete child run (finished, with parameters, cv_roc_auc and roc_auc) to check")
    return pairs


def _loaded(ctx) -> list[tuple[dict, dict]]:
    """The recomputed runs whose model reloaded and predicted (the others are reported by model_reloads)."""
    return [(r, m) for r, m in _recomputed(ctx) if "error" not in m and "proba_error" not in m]


def _share(problems: list[str], total: int, what: str):
    """Full points without problems; else the share of runs without one, naming the first few."""
    if not problems:
        return None
    message = f"{len(problems)} of {total} child run(s) {what}: " + "; ".join(problems[:4])
    if len(problems) > 4:
        message += f"; … ({len(problems) - 4} more)"
    if len(problems) >= total:
        raise Fail(message)
    return Partial(1 - len(problems) / total, message)


@CHECKS.add(points=1, hint="use_local_store(output_dir, EXPERIMENT) before starting any run.",
            section="5.2 A tracking store that is just two paths")
def store_opens(ctx):
    """output_dir/mlflow.db is an MLflow store holding the experiment breast-cancer-sweep, artifacts in output_dir/artifacts."""
    store = _store(ctx)
    if not store["runs"]:
        raise Fail(f"the experiment {EXPERIMENT!r} in {ctx.output('mlflow.db')} holds no runs")
    location = urlparse(str(store.get("artifact_location") or "")).path.rstrip("/")
    if not location.endswith("/" + ctx.output("artifacts").strip("/")):
        return Partial(0.5, f"the experiment keeps its artifacts in {store.get('artifact_location')}, not in "
                            f"{ctx.output('artifacts')}: create it with use_local_store (5.2)")


@CHECKS.add(points=2, depends=("store_opens",), hint="Log params, cv_roc_auc and roc_auc in every child run, and fit "
            "each candidate with its own settings.", section="5.4 A sweep: parent and child runs")
def sweep_logged(ctx):
    """At least six finished child runs with hyperparameters, cv_roc_auc and roc_auc, and six different models."""
    children = _children(ctx)
    incomplete = [f"{r['name']}: {', '.join(_problems(r))}" for r in children if _problems(r)]
    complete = [r for r in children if not _problems(r)]
    if len(complete) < MIN_RUNS:
        flat = sum(1 for r in _store(ctx)["runs"] if not r.get("parent"))
        raise Fail(f"expected at least {MIN_RUNS} complete child runs under one parent run in {EXPERIMENT!r}, found "
                   f"{len(complete)} (and {flat} top-level runs)" + (": " + "; ".join(incomplete[:4]) if incomplete
                                                                    else ""))
    settings = {tuple(sorted(r["params"].items())) for r in complete}
    if len(settings) < MIN_RUNS:
        raise Fail(f"only {len(settings)} distinct hyperparameter settings among {len(complete)} runs: a sweep "
                   f"needs at least {MIN_RUNS} different candidates")
    shared = _shared_models(_loaded(ctx))
    loaded = len(_loaded(ctx))
    distinct = loaded - sum(len(names) - 1 for names, _ in shared)
    if shared and distinct < MIN_RUNS:
        raise Fail(f"the {loaded} child runs checked logged only {distinct} different model(s), under different "
                   f"logged settings: {_shared_text(shared)}: fit each candidate with its own hyperparameters and "
                   "log that fitted pipeline in its own run")
    if shared:
        return Partial(0.5, f"some child runs logged the same fitted model under different settings: "
                            f"{_shared_text(shared)} (the {distinct} different ones count as the sweep)")
    if incomplete:
        return Partial(0.5, f"{len(incomplete)} child run(s) are incomplete and were left out of the sweep: "
                            + "; ".join(incomplete[:4]) + f" (the other {len(complete)} are graded)")


def _shared_models(pairs: list[tuple[dict, dict]]) -> list[tuple[list[str], str]]:
    """Groups of runs (their names) whose logged models are one fitted model, and how that shows: the same file
    bytes, or the same prediction on every row of the test split (whatever parameters each run or model claims)."""
    groups: dict[str, list[tuple[str, str]]] = {}
    for run, model in pairs:
        key = model.get("predictions_sha256") or json.dumps(model.get("fingerprint"))
        groups.setdefault(key, []).append((run["name"], str(model.get("artifact_sha256"))))
    return [([name for name, _ in members],
             "the same file bytes" if len({digest for _, digest in members}) == 1 else
             "the same predictions on every test row")
            for members in groups.values() if len(members) > 1]


def _shared_text(shared: list[tuple[list[str], str]]) -> str:
    parts = [f"{', '.join(names[:4])}{' …' if len(names) > 4 else ''} share one model ({how})" for names, how in shared]
    return "; ".join(parts[:3])


@CHECKS.add(points=1, depends=("store_opens",), hint="Open the parent with mlflow.start_run() and the children "
            "inside it with nested=True.", section="5.4 A sweep: parent and child runs")
def parent_run(ctx):
    """The children's parent is a finished top-level run of the same experiment."""
    _children(ctx)
    parent = _store(ctx)["sweep_parent"]
    runs = {r["run_id"]: r for r in _store(ctx)["runs"]}
    if parent not in runs:
        raise Fail(f"the children point to parent run {parent}, which is not in the experiment {EXPERIMENT!r}")
    if runs[parent].get("parent"):
        raise Fail(f"the sweep's parent {runs[parent]['name']} is itself nested in run {runs[parent]['parent']}: "
                   "make the parent a top-level run")
    if runs[parent]["status"] != "FINISHED":
        raise Fail(f"the parent run is {runs[parent]['status']}: end it (leave its `with` block)")


def _tag_problem(ctx, key: str, children: list[dict]) -> str | None:
    """What is wrong with tag `key` on the child runs, diagnosed from the values found (None: nothing)."""
    values = [r["tags"].get(key) for r in children]
    lacking = [r["name"] for r, v in zip(children, values) if v is None]
    if lacking:
        return f"{len(lacking)} of {len(children)} child runs lack the tag {key} (e.g. {', '.join(lacking[:2])})"
    found = sorted(set(values))
    want = ctx.hidden.get("git_sha" if key == "git_sha" else "md5")
    helper = "git_sha('.')" if key == "git_sha" else "data_version(data_path)"
    if want is None:  # a self-check: only the shape can be judged
        shape = SHA if key == "git_sha" else MD5
        if all(v == "unknown" or shape.match(v) for v in found):
            return None
        return f"tag {key} must be a {'commit SHA' if key == 'git_sha' else 'md5'} or 'unknown', found {found[:3]}"
    if found == [want]:
        return None
    if "unknown" in found:
        where = ("found no git repository: call it on the notebook's working directory, which the grader makes a "
                 "repository" if key == "git_sha" else "found no .dvc file for that path: give it data_path itself")
        return f"tag {key} is 'unknown' on some runs: {helper} {where} (expected {want})"
    if key == "data_version" and ctx.hidden.get("lesson_md5") in found:
        return (f"tag data_version is {ctx.hidden['lesson_md5']}, the md5 of the lesson's full CSV, not of the file "
                f"at data_path ({want}): it was typed in: compute it with {helper}")
    shape = SHA if key == "git_sha" else MD5
    if all(shape.match(v) for v in found):
        what = ("the commit checked out where the grader ran your notebook" if key == "git_sha"
                else "the md5 the .dvc file beside data_path records")
        return (f"tag {key} is {', '.join(found[:2])} but {what} is {want}: a value typed in (or computed for "
                f"another folder or file) goes stale: compute it with {helper}")
    return f"tag {key}: expected {want} on every child run, found {found[:3]}: compute it with {helper}"


@CHECKS.add(points=2, depends=("store_opens",), hint="tags = {'git_sha': git_sha('.'), 'data_version': "
            "data_version(data_path)}; set them in every child run.", section="5.1 Lineage: which code, which data?")
def lineage_tags(ctx):
    """Every child run carries the git SHA of the work directory and the DVC md5 of the data, both computed."""
    children = _candidates(ctx) or _children(ctx)
    problems = [p for p in (_tag_problem(ctx, key, children) for key in ("git_sha", "data_version")) if p]
    if len(problems) == 2:
        raise Fail("; ".join(problems))
    if problems:
        return Partial(0.5, problems[0])


def _best(ctx) -> dict:
    best = ctx.read_json(ctx.output(BEST))
    best = require_keys(best, ("run_id",), BEST)
    if not isinstance(best["run_id"], str) or not re.fullmatch(r"[0-9a-f]{32}", best["run_id"]):
        raise Fail(f"{BEST}: run_id must be an MLflow run id (32 hex digits), found {best['run_id']!r}")
    return best


def _best_run(ctx) -> dict:
    """The child run best_run.json names."""
    best = _best(ctx)
    mine = next((r for r in _children(ctx) if r["run_id"] == best["run_id"]), None)
    if mine is None:
        raise Fail(f"{BEST} names run {best['run_id']}, which is not a child run of the sweep")
    return mine


@CHECKS.add(points=1, depends=("store_opens",), hint="Write the chosen child run's run_id into best_run.json.",
            section="5.6 The best run, and trusting its number")
def best_run_named(ctx):
    """best_run.json names a complete child run of the sweep by its run_id."""
    mine = _best_run(ctx)
    if _problems(mine):
        raise Fail(f"{BEST} names {mine['name']}, an incomplete run ({', '.join(_problems(mine))})")


@CHECKS.add(points=1, depends=("best_run_named",), hint="Copy the run's model_uri and its logged metrics unrounded: "
            "best_run(...) and mlflow.get_run(run_id).data.metrics.", section="5.6 The best run, and trusting its number")
def best_run_copied(ctx):
    """best_run.json repeats the named run's model_uri (models:/m-…) and the cv_roc_auc and roc_auc it logged."""
    best, mine = _best(ctx), _best_run(ctx)
    problems = []
    uri = best.get("model_uri")
    if uri is None:
        problems.append("it has no model_uri")
    elif uri not in mine["model_uris"]:
        problems.append(f"model_uri is {uri!r}, but that run's logged model is "
                        f"{mine['model_uris'][-1] if mine['model_uris'] else 'missing'}")
    for key in ("cv_roc_auc", "roc_auc"):
        reported, logged = best.get(key), _value(mine["metrics"].get(key))
        if isinstance(reported, bool) or not isinstance(reported, (int, float)):
            problems.append(f"{key} is {reported!r}, not a number")
        elif logged is None or abs(reported - logged) > 1e-9:
            problems.append(f"{key} = {reported}, but the run logged {mine['metrics'].get(key)}: copy the logged value")
    if problems:
        raise Fail(f"{BEST}: " + "; ".join(problems))


@CHECKS.add(points=1, depends=("best_run_named",), hint="Pick the child with the highest cv_roc_auc, never the "
            "highest test score.", section="5.6 The best run, and trusting its number")
def best_by_cv(ctx):
    """The run named in best_run.json has the highest cv_roc_auc of the sweep."""
    candidates = _candidates(ctx)
    top = max(candidates, key=lambda r: r["metrics"]["cv_roc_auc"])
    mine = _best_run(ctx)
    if mine["metrics"]["cv_roc_auc"] < top["metrics"]["cv_roc_auc"] - 1e-12:
        by_test = max(candidates, key=lambda r: r["metrics"]["roc_auc"])
        why = " — it has the highest test roc_auc: the test split chose it" if by_test["run_id"] == mine["run_id"] else ""
        raise Fail(f"{BEST} names {mine['name']} (cv_roc_auc {mine['metrics']['cv_roc_auc']:.4f}), but "
                   f"{top['name']} has {top['metrics']['cv_roc_auc']:.4f}{why}: choose by cv_roc_auc")


@CHECKS.add(points=2, depends=("store_opens",), hint="log_sklearn_model(pipeline, X_train) inside each child "
            "run: skops format, signature and input example.", section="5.3 Logging a model that can be trusted later")
def model_reloads(ctx):
    """Every child run's logged model (skops, with signature and input example) reloads in a sandbox and predicts."""
    pairs = _recomputed(ctx)
    broken, unsigned = [], []
    for run, model in pairs:
        if "error" in model or "proba_error" in model:
            broken.append(f"{run['name']}: {model.get('error') or model['proba_error']}")
            continue
        missing = [what for what, key in (("a signature", "has_signature"), ("an input example", "has_input_example"))
                   if not model.get(key)]
        if missing:
            unsigned.append(f"{run['name']}: the model was logged without {' and '.join(missing)}")
    if not broken and not unsigned:
        return None
    message = "; ".join([*broken, *unsigned][:4])
    if unsigned:
        message += " (pass signature= and input_example= to log_model, as log_sklearn_model does)"
    if len(broken) == len(pairs):
        raise Fail(f"no child run's model reloads: {message}")
    return Partial(1 - (len(broken) + 0.5 * len(unsigned)) / len(pairs),
                   f"{len(broken)} of {len(pairs)} child run(s) have a model that does not reload, {len(unsigned)} "
                   f"one logged without what a later user needs: {message}")


def _per_run(ctx, judge, what: str):
    """Apply `judge(run, model) -> problem or None` to every run whose model reloaded; share of runs without one."""
    pairs = _loaded(ctx)
    if not pairs:
        raise Fail("no child run's model reloaded (see model_reloads)")
    problems = [p for p in (judge(run, model) for run, model in pairs) if p]
    return _share(problems, len(pairs), what)


@CHECKS.add(points=2, depends=("model_reloads",), hint="Log roc_auc of the same fitted pipeline you log as the "
            "model, on X_test of the seeded split.", section="5.6 The best run, and trusting its number")
def metric_reproduces(ctx):
    """Every child run's logged roc_auc equals the ROC AUC its own logged model gives on the seeded test split."""
    def judge(run, model):
        logged = run["metrics"]["roc_auc"]
        if abs(logged - model["roc_auc"]) > 1e-4:
            return f"{run['name']}: logged {logged:.6f}, its model gives {model['roc_auc']:.6f}"
        return None

    return _per_run(ctx, judge, f"logged a roc_auc that their model does not give on the test split of seed "
                                f"{ctx.params['seed']} (allowed difference 1e-4)")


@CHECKS.add(points=1, depends=("model_reloads",), hint="cross_validate_auc(pipeline, X_train, y_train, folds=3, "
            "seed=seed) before fitting; log its mean as cv_roc_auc.", section="5.4 A sweep: parent and child runs")
def cv_reproduces(ctx):
    """Every child run's cv_roc_auc matches a re-run of the seeded 3-fold CV on a clone of its model."""
    def judge(run, model):
        cv = model.get("cv", {})
        if "mean" not in cv:
            return f"{run['name']}: cross-validating a clone failed ({cv.get('error')})"
        if abs(run["metrics"]["cv_roc_auc"] - cv["mean"]) > 1e-4:
            return f"{run['name']}: logged {run['metrics']['cv_roc_auc']:.6f}, recomputed {cv['mean']:.6f}"
        return None

    return _per_run(ctx, judge, f"logged a cv_roc_auc that {CV_FOLDS}-fold stratified CV (seed {ctx.params['seed']}) "
                                "of their model's clone on X_train does not reproduce (allowed difference 1e-4)")


@CHECKS.add(points=1, depends=("model_reloads",), hint="Log the hyperparameters under the estimator's own names "
            "(C, max_depth, …) with the values the model was fitted with.", section="5.4 A sweep: parent and child runs")
def params_match_model(ctx):
    """Every child run's logged hyperparameters are those of the model it logged."""
    def judge(run, model):
        own = model.get("params") or {}
        shared = [k for k in run["params"] if k in own]
        if not shared:
            return (f"{run['name']}: none of its parameters {sorted(run['params'])[:4]} is a parameter of the "
                    f"final estimator ({', '.join(sorted(own)[:5])}, …)")
        wrong = [f"{k} logged {run['params'][k]}, model has {own[k]}" for k in shared
                 if str(run["params"][k]) != str(own[k])]
        return f"{run['name']}: " + ", ".join(wrong[:2]) if wrong else None

    return _per_run(ctx, judge, "claim hyperparameters their logged model does not have")


@CHECKS.add(points=1, depends=("model_reloads",), hint="Fit each candidate on X_train only (never on X or on the "
            "test rows) and log that fitted pipeline.", section="5.6 The best run, and trusting its number")
def fitted_on_train(ctx):
    """Every child run's model was fitted on X_train of the seeded split (a clone refitted on it predicts the same)."""
    def judge(run, model):
        rows = model.get("fitted_on")
        if rows == "train":
            return None
        if rows == "all":
            return f"{run['name']}: it was fitted on train + test (refitting a clone on all rows reproduces it)"
        if str(rows).startswith("error"):
            return f"{run['name']}: refitting a clone failed ({rows})"
        return (f"{run['name']}: a clone refitted on X_train (seed {ctx.params['seed']}) predicts differently, so it "
                "was fitted on other rows")

    return _per_run(ctx, judge, "logged a model not fitted on X_train, so its test roc_auc is not a test score")


@CHECKS.add(points=2, visible=False, depends=("best_run_named", "model_reloads"),
            hint="Choose by cross-validation, never by the test score; a scaled, regularised model generalises.",
            section="5.6 The best run, and trusting its number")
def holdout_confirms(ctx):
    """On the grader's hidden holdout the best model reaches ROC AUC 0.95, within 0.05 of the logged roc_auc."""
    from sklearn.metrics import roc_auc_score

    if "holdout" not in ctx.hidden:
        raise Fail("the hidden holdout is only available at grading")
    mine = _best_run(ctx)
    model = _store(ctx).get("recomputed", {}).get(mine["run_id"], {})
    if "artifact" not in model or "proba_error" in model:
        raise Fail(f"the model of {mine['name']} did not reload ({model.get('error') or model.get('proba_error')})")
    holdout = ctx.hidden["holdout"]
    features = holdout.drop(columns="target")
    result = ctx.probe("sklearn_model", {"X_holdout": features.to_numpy(), "columns": np.array(list(features.columns))},
                       args=("--artifact", model["artifact"]), secret=True)
    if "proba_error" in result:
        raise Fail(f"the best model cannot predict the holdout: {result['proba_error']}")
    auc = float(roc_auc_score(holdout["target"].to_numpy(), np.asarray(result["proba"]["holdout"])))
    ctx.figure("holdout_auc", auc, "the best run's ROC AUC on the grader's hidden holdout")
    logged = _value(mine["metrics"]["roc_auc"])
    if auc < HOLDOUT_FLOOR:
        raise Fail(f"holdout ROC AUC {auc:.3f} is below {HOLDOUT_FLOOR}")
    if logged is not None and math.isfinite(logged) and auc < logged - HOLDOUT_SLACK:
        return Partial(0.5, f"holdout ROC AUC {auc:.3f} is more than {HOLDOUT_SLACK} below the logged {logged:.3f}")
