"""Probe a learner's MLflow tracking store (labs 05 and 06) in a fresh sandboxed process (the harness writes
result.json).

Runs inside the sandbox: it must not import the grader. The SQLite file and every artifact are
learner-written, so they are opened only here. The store is read with the standard library's `sqlite3` on
a private copy (never through mlflow: its import costs two CPU seconds and it would migrate the file);
models load with skops only after `skops_guard` admitted every type in them (an explicit list; no
function, no pickle flavour). The learner's promotion gate never
runs in this process: each scenario is answered by a fresh process in the inner sandbox (`run_learner`).

Modes:
- `tracking`: the experiment's runs (params, metrics, tags, parent, logged models) and, for each child run
  of the sweep (every one up to `MAX_RECOMPUTED`, else a seeded sample that keeps `--named-run`), its own
  logged model reloaded: facts of its MLmodel, the final estimator's parameters, its test ROC AUC, a
  clone's cross-validation, and which rows it was fitted on (train split, train + test, or neither).
- `registry`: a registered model's versions, aliases and source runs; the aliased versions' and the
  best-cv version's models reloaded, with the lesson's behavioural tests run on them.
- `gate`: `decide(...)` of `--gate-file`, asked one scenario of `scenarios.npy` (a JSON list) per process.
Inputs are .npy files (never pickles); labels of hidden data never come here.
"""

import json
import os
import shutil
import sqlite3
import sys
import time
from pathlib import Path, PurePosixPath

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # the harness, beside this file (-I drops it)
import skops_guard  # noqa: E402
from harness import inner_sandbox_available, probe_main, run_learner, sibling_limit  # noqa: E402

MAX_DB_BYTES = 200 * 2**20
RUN_FIELDS_MAX = 200  # runs reported at most
MAX_RECOMPUTED = 12  # child runs whose models are reloaded and recomputed; beyond, a seeded sample
GATE_SECONDS = 10  # one scenario, import included (a fresh process takes ~0.1 s)
GATE_MARK = "@@gate-answer@@"


class ProbeError(Exception):
    """A finding about the learner's store, reported as {"error": ...}."""


def add_arguments(parser) -> None:
    parser.add_argument("--mode", choices=("tracking", "registry", "gate"), required=True)
    parser.add_argument("--output-dir", default="outputs")
    parser.add_argument("--experiment", default="")
    parser.add_argument("--named-run", default="", help="a run that is always among the recomputed ones")
    parser.add_argument("--sample-seed", default="", help="the grader's secret draw of which runs to recompute")
    parser.add_argument("--model-name", default="")
    parser.add_argument("--gate-file", default="")
    parser.add_argument("--cv-folds", type=int, default=3)
    parser.add_argument("--cv-seed", type=int, default=0)


def run(args, inputs) -> dict:
    os.environ["MLFLOW_DISABLE_TELEMETRY"] = "true"
    try:
        return {"tracking": tracking, "registry": registry, "gate": gate}[args.mode](args, inputs)
    except ProbeError as err:
        return {"error": str(err)[:600]}
    except sqlite3.Error as err:
        return {"error": f"{args.output_dir}/mlflow.db is not a readable MLflow store: {type(err).__name__}: {err}"[:400]}


# --- fast imports -------------------------------------------------------------------------------------


def _skops():
    """skops.io without its import-time walk over every scikit-learn module (`all_estimators`, ~2 s).

    That walk only fills skops' list of types trusted by default; this probe trusts explicitly (what
    skops_guard admits), so an empty default list changes nothing about what loads.
    """
    if "skops.io" not in sys.modules:  # torch is already unimportable here (the harness blocks it)
        import sklearn.utils

        sklearn.utils.all_estimators = lambda *args, **kwargs: []
    import skops.io

    return skops.io


# --- the store ----------------------------------------------------------------------------------------


def _output_root(args) -> Path:
    parts = [p for p in PurePosixPath(args.output_dir).parts if p not in ("", ".")]
    if not parts or ".." in parts or PurePosixPath(args.output_dir).is_absolute():
        raise ProbeError(f"output_dir {args.output_dir!r} must be a relative folder")
    return Path(args.work, *parts)


def open_store(args) -> sqlite3.Connection:
    """A read-only connection to a private copy of output_dir/mlflow.db (the learner's file is never written)."""
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
    conn = sqlite3.connect(f"file:{copy}?mode=ro", uri=True)
    tables = {row[0] for row in conn.execute("select name from sqlite_master where type = 'table'")}
    missing = {"experiments", "runs", "tags", "params", "latest_metrics"} - tables
    if missing:
        raise ProbeError(f"{args.output_dir}/mlflow.db is not an MLflow store (no table {', '.join(sorted(missing))})")
    return conn


def local_path(uri: str, args) -> Path:
    """Where an artifact URI written in the learner's sandbox lies in this probe's view of the work dir."""
    from urllib.parse import unquote, urlparse

    parsed = urlparse(str(uri))
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


def _experiment(conn, name: str, args) -> dict:
    row = conn.execute("select experiment_id, artifact_location from experiments where name = ? and "
                       "lifecycle_stage = 'active'", (name,)).fetchone()
    if row is None:
        names = [r[0] for r in conn.execute("select name from experiments limit 10")]
        raise ProbeError(f"no experiment named {name!r} in {args.output_dir}/mlflow.db; found {names}")
    return {"experiment_id": str(row[0]), "artifact_location": row[1]}


def _metric(value, is_nan) -> float:
    return float("nan") if is_nan else float(value)


def _runs(conn, where: str, values: tuple) -> dict:
    """Run id → its record (status, name, parent, params, metrics, tags, logged models), for runs matching `where`."""
    found = {}
    for run_id, name, status in conn.execute(f"select run_uuid, name, status from runs where {where} and "
                                             "lifecycle_stage = 'active' order by start_time desc limit ?",
                                             (*values, RUN_FIELDS_MAX)):
        found[run_id] = {"run_id": run_id, "status": status, "name": name, "parent": None, "params": {},
                         "metrics": {}, "tags": {}, "models": []}
    if not found:
        return found
    marks = ",".join("?" * len(found))
    ids = tuple(found)
    for run_id, key, value in conn.execute(f"select run_uuid, key, value from tags where run_uuid in ({marks})", ids):
        if key == "mlflow.parentRunId":
            found[run_id]["parent"] = value
        elif key == "mlflow.runName":
            found[run_id]["name"] = found[run_id]["name"] or value
        elif not key.startswith("mlflow."):
            found[run_id]["tags"][key] = value
    for run_id, key, value in conn.execute(f"select run_uuid, key, value from params where run_uuid in ({marks})", ids):
        found[run_id]["params"][key] = value
    for run_id, key, value, is_nan in conn.execute(f"select run_uuid, key, value, is_nan from latest_metrics "
                                                   f"where run_uuid in ({marks})", ids):
        found[run_id]["metrics"][key] = _metric(value, is_nan)
    if _has_table(conn, "logged_models"):
        for model_id, run_id, location in conn.execute(
                f"select model_id, source_run_id, artifact_location from logged_models where source_run_id in "
                f"({marks}) and lifecycle_stage = 'active' order by creation_timestamp_ms", ids):
            found[run_id]["models"].append({"model_id": model_id, "artifact_location": location})
    return found


def _has_table(conn, name: str) -> bool:
    return conn.execute("select 1 from sqlite_master where type = 'table' and name = ?", (name,)).fetchone() is not None


def _public(record: dict) -> dict:
    return {k: v for k, v in record.items() if k != "models"} | {
        "model_uris": [f"models:/{m['model_id']}" for m in record["models"]]}


def load_logged_model(model: dict, args) -> tuple[object, dict]:
    """Reload a LoggedModel's scikit-learn flavor with skops; (model, facts about its MLmodel)."""
    import yaml

    model_id = model["model_id"]
    folder = local_path(model["artifact_location"], args)
    mlmodel = folder / "MLmodel"
    if os.path.islink(mlmodel) or not mlmodel.is_file():
        raise ProbeError(f"model {model_id}: no MLmodel file under {args.output_dir}; log it with "
                         "mlflow.sklearn.log_model while tracking into output_dir")
    spec = yaml.safe_load(mlmodel.read_text()) or {}
    flavor = (spec.get("flavors") or {}).get("sklearn") or {}
    facts = {"model_uri": f"models:/{model_id}", "has_signature": bool(spec.get("signature")),
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
    facts["artifact"] = artifact.relative_to(Path(args.work).resolve()).as_posix()
    try:
        return skops_guard.load(artifact, _skops()), facts
    except skops_guard.Refused as err:
        raise ProbeError(f"model {model_id} was refused: {err}") from None


def _final_params(model) -> dict:
    estimator = model.steps[-1][1] if hasattr(model, "steps") else model
    return {k: repr(v) if not isinstance(v, (int, float, str, bool, type(None))) else v
            for k, v in estimator.get_params(deep=False).items()}


def _frame(inputs, name: str):
    import pandas as pd

    return pd.DataFrame(inputs[name], columns=[str(c) for c in inputs["columns"]])


# --- tracking -----------------------------------------------------------------------------------------


def tracking(args, inputs) -> dict:
    conn = open_store(args)
    experiment = _experiment(conn, args.experiment, args)
    runs = _runs(conn, "experiment_id = ?", (experiment["experiment_id"],))
    result = {**experiment, "runs": [_public(r) for r in runs.values()]}
    counts: dict[str, int] = {}
    for record in runs.values():
        if record["parent"]:
            counts[record["parent"]] = counts.get(record["parent"], 0) + 1
    if counts:
        parent = max(counts, key=counts.get)
        children = [r for r in runs.values() if r["parent"] == parent]
        result["sweep_parent"] = parent
        result["recomputed"] = {r["run_id"]: _recompute(r, args, inputs) for r in _sample(children, args)}
    return result


def _sample(children: list, args) -> list:
    """Every child, or the named run plus a sample seeded by the grader's secret draw (`--sample-seed`, which
    the learner cannot know) and the run ids; without a draw (a self-check), by the run ids alone."""
    if len(children) <= MAX_RECOMPUTED:
        return children
    import random

    named = [r for r in children if r["run_id"] == args.named_run]
    rest = sorted((r for r in children if r["run_id"] != args.named_run), key=lambda r: r["run_id"])
    rng = random.Random(str(args.sample_seed) + "".join(r["run_id"] for r in rest))
    return named + rng.sample(rest, MAX_RECOMPUTED - len(named))


def _recompute(record: dict, args, inputs) -> dict:
    """A child run's own model: reloaded, asked for the test split, cross-validated, and refitted to see its rows."""
    if not record["models"]:
        return {"error": "it logged no model"}
    try:
        model, facts = load_logged_model(record["models"][-1], args)
    except ProbeError as err:
        return {"error": str(err)}
    except Exception as err:
        return {"error": f"its model could not be loaded: {type(err).__name__}: {err}"[:400]}
    import numpy as np
    from sklearn.metrics import roc_auc_score

    facts.update(n_models=len(record["models"]), class_=f"{type(model).__module__}.{type(model).__qualname__}")
    try:
        facts["params"] = _final_params(model)
    except Exception as err:
        facts["params_error"] = f"{type(err).__name__}: {err}"[:200]
    X_test, X_train = _frame(inputs, "X_test"), _frame(inputs, "train_features")
    y_test, y_train = inputs["y_test"], inputs["train_labels"]
    try:
        proba = model.predict_proba(X_test)[:, 1]
    except Exception as err:
        facts["proba_error"] = f"predict_proba failed: {type(err).__name__}: {err}"[:400]
        return facts
    facts["roc_auc"] = float(roc_auc_score(y_test, proba))
    facts["fingerprint"] = [round(float(p), 6) for p in proba[:20]]
    facts["predictions_sha256"] = _digest(np.round(np.asarray(proba, dtype=float), 9).tobytes())
    facts["artifact_sha256"] = _file_digest(Path(args.work) / facts["artifact"])
    facts["cv"] = _cross_validate(model, X_train, y_train, args)
    facts["fitted_on"] = _fitted_on(model, proba, X_train, y_train, X_test, y_test, np)
    return facts


def _digest(data: bytes) -> str:
    import hashlib

    return hashlib.sha256(data).hexdigest()[:16]


def _file_digest(path: Path) -> str:
    """The artifact's own bytes, hashed: the same file logged under two runs is one model."""
    import hashlib

    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()[:16]


def _cross_validate(model, X, y, args) -> dict:
    from sklearn.base import clone
    from sklearn.model_selection import StratifiedKFold, cross_val_score

    try:
        cv = StratifiedKFold(n_splits=args.cv_folds, shuffle=True, random_state=args.cv_seed)
        scores = cross_val_score(clone(model), X, y, cv=cv, scoring="roc_auc")
        return {"mean": float(scores.mean()), "std": float(scores.std())}
    except Exception as err:
        return {"error": f"{type(err).__name__}: {err}"[:300]}


def _fitted_on(model, proba, X_train, y_train, X_test, y_test, np) -> str:
    """Which rows the logged model was fitted on: a clone refitted on them predicts the same ("train", "all")."""
    import pandas as pd
    from sklearn.base import clone

    candidates = (("train", X_train, y_train),
                  ("all", pd.concat([X_train, X_test], ignore_index=True), np.concatenate([y_train, y_test])))
    try:
        for name, X, y in candidates:
            again = clone(model).fit(X, y).predict_proba(X_test)[:, 1]
            if np.allclose(again, proba, atol=1e-6):
                return name
        return "other"
    except Exception as err:
        return f"error: {type(err).__name__}: {err}"[:200]


# --- registry -----------------------------------------------------------------------------------------


def registry(args, inputs) -> dict:
    conn = open_store(args)
    if not _has_table(conn, "registered_models") or conn.execute(
            "select 1 from registered_models where name = ?", (args.model_name,)).fetchone() is None:
        names = [r[0] for r in conn.execute("select name from registered_models limit 10")] \
            if _has_table(conn, "registered_models") else []
        raise ProbeError(f"no registered model named {args.model_name!r} in {args.output_dir}/mlflow.db; "
                         f"found {names}")
    rows = conn.execute("select version, source, run_id, description from model_versions where name = ? and "
                        "coalesce(current_stage, '') != 'Deleted_Internal' order by version", (args.model_name,))
    versions = {str(v): {"version": str(v), "source": source, "run_id": run_id, "description": description or ""}
                for v, source, run_id, description in rows}
    runs = _runs(conn, f"run_uuid in ({','.join('?' * len(versions)) or 'null'})",
                 tuple(r["run_id"] for r in versions.values()))
    for record in versions.values():
        if record["run_id"] in runs:
            record["run"] = _public(runs[record["run_id"]])
    aliases = {str(a): str(v) for a, v in conn.execute("select alias, version from registered_model_aliases where "
                                                         "name = ?", (args.model_name,))}
    result = {"name": args.model_name, "aliases": aliases, "versions": versions}
    if args.experiment:
        experiment = _experiment(conn, args.experiment, args)
        result["runs"] = [_public(r) for r in _runs(conn, "experiment_id = ?", (experiment["experiment_id"],)).values()]
    scored = [v for v in versions if "cv_roc_auc" in versions[v].get("run", {}).get("metrics", {})]
    wanted = set(aliases.values()) & set(versions)
    if scored:
        wanted.add(max(scored, key=lambda v: (versions[v]["run"]["metrics"]["cv_roc_auc"], int(v))))
    result["behaviour"] = {v: _behaviour(conn, versions[v], inputs, args) for v in sorted(wanted, key=int)}
    return result


def _behaviour(conn, record: dict, inputs, args) -> dict:
    from sklearn.metrics import roc_auc_score

    model_id = str(record.get("source") or "").removeprefix("models:/")
    row = conn.execute("select model_id, artifact_location from logged_models where model_id = ?",
                       (model_id,)).fetchone() if model_id.startswith("m-") and _has_table(conn, "logged_models") else None
    if row is None:
        return {"error": f"version {record['version']} does not come from a logged model ({record.get('source')})"}
    try:
        model, facts = load_logged_model({"model_id": row[0], "artifact_location": row[1]}, args)
        from mlops_kit.registry import behaviour_tests

        X, y = _frame(inputs, "X_test"), inputs["y_test"]
        proba = model.predict_proba(X)[:, 1]
        results = behaviour_tests(model, X, y)
        return {"roc_auc": float(roc_auc_score(y, proba)), "tests": {k: bool(v) for k, v in results.items()},
                **{k: facts[k] for k in ("has_signature", "has_input_example")}}
    except ProbeError as err:
        return {"error": str(err)}
    except Exception as err:
        return {"error": f"{type(err).__name__}: {err}"[:300]}


# --- the gate: one scenario per fresh process in the inner sandbox --------------------------------------

# Run as `python -I -c GATE_CHILD <gate file>` with one scenario on stdin. Everything the gate's process
# ever holds is that scenario: no other scenario, no expected answer, no file it could leave for the next.
GATE_CHILD = f"""
import importlib.util, json, os, sys
scenario = json.loads(sys.stdin.read())
sys.stdin = open(os.devnull)
before = set(sys.modules)
def answer(**found):
    sys.stdout.write("\\n{GATE_MARK}" + json.dumps(found) + "\\n")
    sys.stdout.flush()
    os._exit(0)
path = sys.argv[1]
sys.path.insert(0, os.path.dirname(path))
try:
    spec = importlib.util.spec_from_file_location("promotion_gate", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
except BaseException as err:
    answer(stage="import", error=f"{{type(err).__name__}}: {{err}}"[:300])
imports = sorted({{m.split(".")[0] for m in set(sys.modules) - before}} - set(sys.stdlib_module_names) - {{"promotion_gate"}})
decide = getattr(module, "decide", None)
if not callable(decide):
    answer(stage="import", error="it defines no function decide(champion_metrics, challenger_metrics, behaviour_results)",
           imports=imports)
try:
    value = decide(scenario["champion"], scenario["challenger"], scenario["behaviour"])
except BaseException as err:
    answer(stage="decide", error=f"{{type(err).__name__}}: {{err}}"[:200], imports=imports)
kind = type(value)
answer(stage="decide", type=kind.__name__ if kind.__module__ == "builtins" else f"{{kind.__module__}}.{{kind.__name__}}",
       value=value if kind is bool else None, imports=imports)
"""


def gate(args, inputs) -> dict:
    from concurrent.futures import ThreadPoolExecutor

    path = _output_root(args) / args.gate_file
    if os.path.islink(path) or not path.is_file():
        return {"error": f"{args.output_dir}/{args.gate_file} was not found (or is not a regular file)"}
    scenarios = json.loads(str(inputs["scenarios"]))
    env = {"PATH": "/usr/bin:/bin", "HOME": "/tmp", "LANG": "C.UTF-8", "PYTHONDONTWRITEBYTECODE": "1"}
    hidden = [str(Path(args.out).resolve()), str(Path(args.input).resolve())]

    stalled = []  # once one scenario runs out of time, the rest are not asked (the probe's own time is bounded)
    took: list[float] = []  # seconds of each answered scenario: a stalling one is cut off relative to its siblings

    def ask(scenario) -> dict:
        if stalled:
            return {"stage": "decide", "error": "not asked: an earlier scenario ran out of time"}
        limit = sibling_limit(took, GATE_SECONDS)
        started = time.monotonic()
        done = run_learner([sys.executable, "-I", "-c", GATE_CHILD, str(path.resolve())], cwd=str(path.parent),
                           env=env, timeout=limit, writable=[], hidden=hidden, share_net=False,
                           stdin=json.dumps(scenario).encode())
        if done["timed_out"]:
            stalled.append(True)
            return {"stage": "decide", "error": f"it took over {limit:.1f} s (the other scenarios took at most "
                    f"{max(took, default=0):.1f} s each)" if limit < GATE_SECONDS else f"it took over {GATE_SECONDS} s"}
        took.append(time.monotonic() - started)
        marked = [line for line in done["stdout"].splitlines() if line.startswith(GATE_MARK)]
        if not marked:
            tail = (done["stderr"].strip().splitlines() or [f"exit status {done['exit']}"])[-1]
            return {"stage": "decide", "error": f"its process ended without an answer: {tail}"[:300]}
        try:
            found = json.loads(marked[-1][len(GATE_MARK):])
        except ValueError:
            return {"stage": "decide", "error": "its process printed a garbled answer"}
        return found if isinstance(found, dict) else {"stage": "decide", "error": "garbled answer"}

    with ThreadPoolExecutor(max_workers=2) as pool:  # two fresh processes at a time: ~0.1 s each
        answers = list(pool.map(ask, scenarios))
    return {"answers": answers, "nested": bool(scenarios) and inner_sandbox_available()}


if __name__ == "__main__":
    probe_main(run, add_arguments)
