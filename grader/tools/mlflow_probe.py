"""Probe a learner's MLflow tracking store (labs 05 and 06) in a fresh sandboxed process; write result.json.

Runs inside the sandbox (`python -I mlflow_probe.py ...`): it must not import the grader. The SQLite file
and every artifact are learner-written, so they are only opened here: the database is copied into the
probe's own writable folder first (the work dir is read-only), models load with skops trusting only
scikit-learn/NumPy/SciPy types, and a learner's promotion gate is imported only here.

Modes:
- `tracking`: the experiment's runs (params, metrics, tags, parent) and, for `--run-id`, its logged model
  reloaded and asked for probabilities on every `X_*.npy` input, plus a cross-validation of a clone.
- `registry`: a registered model's versions, aliases and source runs; the champion's and challenger's models
  reloaded, with the lesson's behavioural tests run on them.
- `gate`: imports `--gate-file` and calls `decide(...)` on the scenarios in `scenarios.npy` (a JSON string).
Inputs are .npy files (never pickles); labels of hidden data never come here.
"""

import argparse
import json
import os
import shutil
import sys
import traceback
from pathlib import Path, PurePosixPath

TRUSTED_PREFIXES = ("sklearn.", "numpy.", "scipy.")
MAX_DB_BYTES = 200 * 2**20
RUN_FIELDS_MAX = 200  # runs reported at most


class ProbeError(Exception):
    """A finding about the learner's store, reported as {"error": ...}."""


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--work", required=True)
    parser.add_argument("--input", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--mode", choices=("tracking", "registry", "gate"), required=True)
    parser.add_argument("--output-dir", default="outputs")
    parser.add_argument("--experiment", default="")
    parser.add_argument("--run-id", default="")
    parser.add_argument("--model-name", default="")
    parser.add_argument("--gate-file", default="")
    parser.add_argument("--cv-folds", type=int, default=0)
    parser.add_argument("--cv-seed", type=int, default=0)
    parser.add_argument("--all-runs", action="store_true", help="recompute every child run's metrics")
    parser.add_argument("--label", default="")  # only makes the grader's cache key differ between calls
    args = parser.parse_args()
    os.environ["MLFLOW_DISABLE_TELEMETRY"] = "true"
    os.environ.setdefault("GIT_PYTHON_REFRESH", "quiet")
    try:
        result = {"tracking": tracking, "registry": registry, "gate": gate}[args.mode](args)
    except ProbeError as err:
        result = {"error": str(err)[:600]}
    except Exception as err:  # an unforeseen shape of the learner's store: report, never crash silently
        result = {"error": f"reading your store failed: {type(err).__name__}: {err}"[:600],
                  "trace": traceback.format_exc(limit=3)[-800:]}
    Path(args.out, "result.json").write_text(json.dumps(result, default=str))


# --- the store ---------------------------------------------------------------------------------------


def _output_root(args) -> Path:
    parts = [p for p in PurePosixPath(args.output_dir).parts if p not in ("", ".")]
    if not parts or ".." in parts or PurePosixPath(args.output_dir).is_absolute():
        raise ProbeError(f"output_dir {args.output_dir!r} must be a relative folder")
    return Path(args.work, *parts)


def open_store(args):
    """A client on a private copy of output_dir/mlflow.db (the learner's file is never written)."""
    import logging
    import warnings

    logging.getLogger("mlflow").setLevel(logging.ERROR)
    logging.getLogger("alembic").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore")
    db = _output_root(args) / "mlflow.db"
    if os.path.islink(db) or not db.is_file():
        raise ProbeError(f"{args.output_dir}/mlflow.db was not found (or is not a regular file): track with "
                         "a SQLite URI that points into output_dir")
    if db.stat().st_size > MAX_DB_BYTES:
        raise ProbeError(f"{args.output_dir}/mlflow.db is larger than {MAX_DB_BYTES // 2**20} MiB")
    with open(db, "rb") as handle:
        if handle.read(16) != b"SQLite format 3\x00":
            raise ProbeError(f"{args.output_dir}/mlflow.db is not a SQLite database")
    copy = Path(args.out) / ".store" / "mlflow.db"
    copy.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(db, copy)
    from mlflow import MlflowClient

    try:
        return MlflowClient(tracking_uri=f"sqlite:///{copy}", registry_uri=f"sqlite:///{copy}")
    except Exception as err:
        raise ProbeError(f"{args.output_dir}/mlflow.db is not an MLflow store: {type(err).__name__}: {err}"[:400]) from None


def local_path(uri: str, args) -> Path:
    """Where an artifact URI written in the learner's sandbox lies in this probe's view of the work dir."""
    from urllib.parse import unquote, urlparse

    parsed = urlparse(uri)
    if parsed.scheme not in ("file", ""):
        raise ProbeError(f"artifact location {uri} is not a local path: keep artifacts in output_dir")
    path = unquote(parsed.path)
    marker = "/" + "/".join(p for p in PurePosixPath(args.output_dir).parts if p not in ("", ".")) + "/"
    index = path.rfind(marker)
    if index < 0:
        raise ProbeError(f"artifact location {uri} is not inside output_dir ({args.output_dir})")
    root = _output_root(args).resolve()
    candidate = (root / path[index + len(marker):]).resolve()
    if candidate != root and root not in candidate.parents:
        raise ProbeError(f"artifact location {uri} escapes output_dir")
    return candidate


def _run_record(run) -> dict:
    tags = run.data.tags
    return {"run_id": run.info.run_id, "status": run.info.status, "name": run.info.run_name,
            "parent": tags.get("mlflow.parentRunId"), "params": dict(run.data.params),
            "metrics": {k: float(v) for k, v in run.data.metrics.items()},
            "tags": {k: v for k, v in tags.items() if not k.startswith("mlflow.")}}


def load_logged_model(client, model_id: str, args) -> tuple[object, dict]:
    """Reload a LoggedModel's scikit-learn flavor with skops; (model, facts about its MLmodel)."""
    import skops.io as sio
    import yaml

    logged = client.get_logged_model(model_id)
    folder = local_path(logged.artifact_location, args)
    mlmodel = folder / "MLmodel"
    if os.path.islink(mlmodel) or not mlmodel.is_file():
        raise ProbeError(f"model {model_id}: no MLmodel file under {args.output_dir}; log it with "
                         "mlflow.sklearn.log_model while tracking into output_dir")
    spec = yaml.safe_load(mlmodel.read_text()) or {}
    flavor = (spec.get("flavors") or {}).get("sklearn") or {}
    facts = {"model_id": model_id, "source_run_id": logged.source_run_id, "has_signature": bool(spec.get("signature")),
             "has_input_example": bool(spec.get("saved_input_example_info")),
             "serialization_format": flavor.get("serialization_format")}
    if not flavor:
        raise ProbeError(f"model {model_id} has no sklearn flavor: log it with mlflow.sklearn.log_model")
    if flavor.get("serialization_format") != "skops":
        raise ProbeError(f"model {model_id} was saved as {flavor.get('serialization_format')!r}; a pickle runs "
                         "code when loaded: log it with serialization_format='skops' (log_sklearn_model does)")
    artifact = (folder / str(flavor.get("pickled_model", "model.skops"))).resolve()
    if folder not in artifact.parents or os.path.islink(artifact) or not artifact.is_file():
        raise ProbeError(f"model {model_id}: its skops file is missing")
    untrusted = sio.get_untrusted_types(file=artifact)
    refused = [t for t in untrusted if not t.startswith(TRUSTED_PREFIXES)]
    if refused:
        raise ProbeError(f"model {model_id} holds types outside scikit-learn/NumPy/SciPy, refused: {refused[:5]}")
    return sio.load(artifact, trusted=untrusted), facts


def _final_params(model) -> dict:
    estimator = model.steps[-1][1] if hasattr(model, "steps") else model
    return {k: repr(v) if not isinstance(v, (int, float, str, bool, type(None))) else v
            for k, v in estimator.get_params(deep=False).items()}


def _predictions(model, args) -> dict:
    import numpy as np
    import pandas as pd

    columns_file = Path(args.input) / "columns.npy"
    columns = [str(c) for c in np.load(columns_file, allow_pickle=False)] if columns_file.exists() else None
    proba = {}
    for file in sorted(Path(args.input).glob("X_*.npy")):
        X = np.load(file, allow_pickle=False)
        proba[file.stem[2:]] = [float(p) for p in model.predict_proba(pd.DataFrame(X, columns=columns))[:, 1]]
    return proba


# --- modes -------------------------------------------------------------------------------------------


def tracking(args) -> dict:
    client = open_store(args)
    experiment = client.get_experiment_by_name(args.experiment)
    if experiment is None:
        names = [e.name for e in client.search_experiments()][:10]
        raise ProbeError(f"no experiment named {args.experiment!r} in {args.output_dir}/mlflow.db; found {names}")
    runs = client.search_runs([experiment.experiment_id], max_results=RUN_FIELDS_MAX)
    result = {"experiment_id": experiment.experiment_id, "runs": [_run_record(r) for r in runs]}
    if args.run_id:
        result["model"] = _best_model(client, experiment.experiment_id, args)
    if args.all_runs:
        result["recomputed"] = _recompute_children(client, experiment.experiment_id, runs, args)
    return result


def _recompute_children(client, experiment_id: str, runs, args) -> dict:
    """For every child run: its model's test ROC AUC and a clone's CV ROC AUC, or why they are missing."""
    import numpy as np
    from sklearn.metrics import roc_auc_score

    y_test = np.load(Path(args.input) / "y_test.npy", allow_pickle=False)
    found = {}
    for run in runs[:RUN_FIELDS_MAX]:
        if "mlflow.parentRunId" not in run.data.tags:
            continue
        try:
            models = client.search_logged_models(experiment_ids=[experiment_id],
                                                 filter_string=f"source_run_id = '{run.info.run_id}'")
            if not models:
                found[run.info.run_id] = {"error": "no logged model"}
                continue
            model, _ = load_logged_model(client, models[-1].model_id, args)
            proba = _predictions(model, args)["test"]
            found[run.info.run_id] = {"roc_auc": float(roc_auc_score(y_test, proba)), "cv": _cross_validate(model, args)}
        except ProbeError as err:
            found[run.info.run_id] = {"error": str(err)}
        except Exception as err:
            found[run.info.run_id] = {"error": f"{type(err).__name__}: {err}"[:300]}
    return found


def _best_model(client, experiment_id: str, args) -> dict:
    try:
        models = client.search_logged_models(experiment_ids=[experiment_id],
                                             filter_string=f"source_run_id = '{args.run_id}'")
    except Exception as err:
        return {"error": f"searching the models of run {args.run_id} failed: {err}"[:300]}
    if not models:
        return {"error": f"run {args.run_id} has no logged model: log it inside the run with log_sklearn_model"}
    try:
        model, facts = load_logged_model(client, models[-1].model_id, args)
    except ProbeError as err:
        return {"error": str(err)}
    except Exception as err:
        return {"error": f"the model of run {args.run_id} could not be loaded: {type(err).__name__}: {err}"[:400]}
    facts.update(n_models=len(models), model_uri=f"models:/{models[-1].model_id}",
                 class_=f"{type(model).__module__}.{type(model).__qualname__}", params=_final_params(model))
    try:
        facts["proba"] = _predictions(model, args)
    except Exception as err:
        facts["proba_error"] = f"predict_proba failed: {type(err).__name__}: {err}"[:400]
        return facts
    if args.cv_folds:
        facts["cv"] = _cross_validate(model, args)
    return facts


def _cross_validate(model, args) -> dict:
    import numpy as np
    import pandas as pd
    from sklearn.base import clone
    from sklearn.model_selection import StratifiedKFold, cross_val_score

    columns = [str(c) for c in np.load(Path(args.input) / "columns.npy", allow_pickle=False)]
    X = pd.DataFrame(np.load(Path(args.input) / "train_features.npy", allow_pickle=False), columns=columns)
    y = np.load(Path(args.input) / "train_labels.npy", allow_pickle=False)
    try:
        cv = StratifiedKFold(n_splits=args.cv_folds, shuffle=True, random_state=args.cv_seed)
        scores = cross_val_score(clone(model), X, y, cv=cv, scoring="roc_auc")
        return {"mean": float(scores.mean()), "std": float(scores.std())}
    except Exception as err:
        return {"error": f"{type(err).__name__}: {err}"[:300]}


def registry(args) -> dict:
    import numpy as np
    import pandas as pd

    client = open_store(args)
    try:
        registered = client.get_registered_model(args.model_name)
    except Exception:
        names = [m.name for m in client.search_registered_models()][:10]
        raise ProbeError(f"no registered model named {args.model_name!r} in {args.output_dir}/mlflow.db; "
                         f"found {names}") from None
    versions = {}
    for version in client.search_model_versions(f"name = '{args.model_name}'"):
        record = {"version": str(version.version), "run_id": version.run_id, "source": version.source,
                  "model_id": getattr(version, "model_id", None), "tags": dict(version.tags or {}),
                  "description": version.description or ""}
        if version.run_id:
            try:
                record["run"] = _run_record(client.get_run(version.run_id))
            except Exception as err:
                record["run_error"] = str(err)[:200]
        versions[record["version"]] = record
    aliases = {str(k): str(v) for k, v in (registered.aliases or {}).items()}
    result = {"name": registered.name, "aliases": aliases, "versions": versions,
              "description": registered.description or "", "tags": dict(registered.tags or {})}
    experiment = client.get_experiment_by_name(args.experiment) if args.experiment else None
    if experiment is not None:
        result["runs"] = [_run_record(r) for r in client.search_runs([experiment.experiment_id],
                                                                     max_results=RUN_FIELDS_MAX)]
    columns = [str(c) for c in np.load(Path(args.input) / "columns.npy", allow_pickle=False)]
    X = pd.DataFrame(np.load(Path(args.input) / "X_test.npy", allow_pickle=False), columns=columns)
    y = np.load(Path(args.input) / "y_test.npy", allow_pickle=False)
    scored = [v for v in versions if "cv_roc_auc" in versions[v].get("run", {}).get("metrics", {})]
    wanted = set(aliases.values()) & set(versions)
    if scored:
        wanted.add(max(scored, key=lambda v: (versions[v]["run"]["metrics"]["cv_roc_auc"], int(v))))
    result["behaviour"] = {v: _behaviour(client, versions[v], X, y, args) for v in sorted(wanted, key=int)}
    return result


def _behaviour(client, record: dict, X, y, args) -> dict:
    from sklearn.metrics import roc_auc_score

    model_id = record.get("model_id") or str(record.get("source", "")).removeprefix("models:/")
    if not model_id.startswith("m-"):
        return {"error": f"version {record['version']} does not come from a logged model ({record.get('source')})"}
    try:
        model, facts = load_logged_model(client, model_id, args)
        from mlops_kit.registry import behaviour_tests

        proba = model.predict_proba(X)[:, 1]
        results = behaviour_tests(model, X, y)
        return {"roc_auc": float(roc_auc_score(y, proba)), "tests": {k: bool(v) for k, v in results.items()},
                **{k: facts[k] for k in ("has_signature", "has_input_example")}}
    except ProbeError as err:
        return {"error": str(err)}
    except Exception as err:
        return {"error": f"{type(err).__name__}: {err}"[:300]}


def gate(args) -> dict:
    import copy
    import importlib.util
    import signal

    import numpy as np

    path = _output_root(args) / args.gate_file
    if os.path.islink(path) or not path.is_file():
        return {"error": f"{args.output_dir}/{args.gate_file} was not found (or is not a regular file)"}
    scenarios = json.loads(str(np.load(Path(args.input) / "scenarios.npy", allow_pickle=False)))
    sys.path.insert(0, str(path.parent))
    spec = importlib.util.spec_from_file_location("promotion_gate", path)
    module = importlib.util.module_from_spec(spec)

    def too_slow(*_):
        raise TimeoutError("took over 5 s")

    signal.signal(signal.SIGALRM, too_slow)
    try:
        signal.alarm(10)
        spec.loader.exec_module(module)
        signal.alarm(0)
    except BaseException as err:  # SystemExit too: a module that exits on import is a finding
        return {"error": f"importing {args.gate_file} failed: {type(err).__name__}: {err}"[:400]}
    decide = getattr(module, "decide", None)
    if not callable(decide):
        return {"error": f"{args.gate_file} defines no function decide(champion_metrics, challenger_metrics, "
                         "behaviour_results)"}
    answers = []
    for scenario in scenarios:
        try:
            signal.alarm(5)
            value = decide(copy.deepcopy(scenario["champion"]), copy.deepcopy(scenario["challenger"]),
                           copy.deepcopy(scenario["behaviour"]))
            signal.alarm(0)
            if type(value).__module__ == "numpy" and type(value).__name__ == "bool":  # numpy.bool is a bool too
                value = bool(value)
            answers.append({"type": type(value).__name__, "value": value if isinstance(value, bool) else None})
        except BaseException as err:
            signal.alarm(0)
            answers.append({"type": "error", "value": None, "error": f"{type(err).__name__}: {err}"[:200]})
    return {"answers": answers}


if __name__ == "__main__":
    sys.exit(main())
