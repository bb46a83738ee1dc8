"""Lab 07 — serving: the learner's BentoML service is started for real in a sandbox and probed as a client."""

from __future__ import annotations

import ast
import hashlib
import json
import math
import os
import random
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from grader.checks.common import Checks, Fail, Partial, log_tail, solution_file
from grader.labs import REPO, Lab
from grader.secret import fingerprint, seed_for

LAB = Lab(
    id="07_serving",
    title="Serve the champion with BentoML",
    week=7,
    minutes=75,
    objectives=(
        "serve the registry's champion behind a BentoML 1.4 service with a validated input contract",
        "answer 4xx with the field's name for a missing feature, a wrong type, NaN, infinity and a bad batch",
        "tell liveness from readiness: ready only once the model is loaded",
        "load-test the service with locust and read its latency percentiles",
    ),
    lesson="curriculum/07_serving.ipynb",
    seed=31,
    timeout=240,
    cell_timeout=150,
)

MODEL_NAME = "breast-cancer-classifier"
SERVICE, CLASS = "service.py", "CancerClassifier"
REGISTRY = "registry"
PUBLIC_CHAMPION = 2  # the champion of the registry a learner builds at home (mlops_kit.serving.demo_registry)
LOAD_DELAY = 3.0  # seconds load_champion waits in the graded run, so readiness can be watched while it loads
MAX_BATCH = 256
LATENCY_RATIO = 5.0  # the learner's p95 over the reference service's, both at 20 clients on this machine
LOAD = {"requests": 400, "concurrency": 20, "seconds": 5, "timeout": 10}
STOP_GRACE = 8.0
GOLDEN_ROWS = 64
CHECKS = Checks()


# --- the registry the graded service loads (built once per installation secret, then copied) -------------


def _cache_root() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "mlops-grade" / "lab07"


def _draws() -> dict:
    """The graded registry's champion, git SHA and golden rows: drawn from the installation's secret."""
    from grader.datasets import breast_cancer_frame

    rng = random.Random(seed_for(LAB.id, "registry"))
    champion = rng.choice([v for v in (1, 3) if v != PUBLIC_CHAMPION])
    git_sha = "".join(rng.choice("0123456789abcdef") for _ in range(40))
    frame = breast_cancer_frame().drop(columns="target")
    rows = []
    for index in rng.sample(range(len(frame)), GOLDEN_ROWS):
        row = frame.iloc[index]
        rows.append({k: round(float(v) * rng.uniform(0.9, 1.1), 6) for k, v in row.items()})
    return {"champion": champion, "git_sha": git_sha, "rows": rows}


def graded_champion() -> str:
    """The version the graded registry's champion alias names (drawn from the installation's secret)."""
    return str(_draws()["champion"])


BUILD = """
import json, sys
from pathlib import Path
import mlflow
from mlops_kit.serving import demo_registry, load_champion
spec = json.loads(Path(sys.argv[1]).read_text())
out = Path(sys.argv[2])
info = demo_registry(out / "registry", seed=spec["seed"], champion=spec["champion"], git_sha=spec["git_sha"])
import pandas as pd
expected = {}
for version in info["versions"]:
    model, _ = load_champion(out / "registry", alias=version)
    expected[version] = model.predict_proba(pd.DataFrame(spec["rows"]))[:, 1].tolist()
(out / "expected.json").write_text(json.dumps({"info": info, "expected": expected}))
"""


def graded_registry() -> Path:
    """The folder holding `registry/` and `expected.json` for this installation (built on first use)."""
    draws = _draws()
    sources = [Path(__file__).read_bytes(), (REPO / "mlops_kit" / "serving.py").read_bytes()]
    key = hashlib.sha256(b"".join(sources) + fingerprint().encode() + json.dumps(draws).encode()).hexdigest()[:20]
    target = _cache_root() / key
    if (target / "expected.json").is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix="build-", dir=target.parent))
    try:
        (staging / "spec.json").write_text(json.dumps({**draws, "seed": LAB.seed}))
        env = {**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true", "PYTHONWARNINGS": "ignore"}
        done = subprocess.run([sys.executable, "-c", BUILD, str(staging / "spec.json"), str(staging)], env=env,
                              capture_output=True, text=True, timeout=300, cwd=staging)
        if done.returncode != 0:
            raise RuntimeError(f"building lab 07's registry failed: {done.stderr[-2000:]}")
        try:
            staging.rename(target)
        except OSError:  # another grader built it meanwhile
            if not (target / "expected.json").is_file():
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


def prepare(work: Path) -> tuple[dict, dict]:
    """A copy of the graded registry in work/registry; the champion's golden predictions stay hidden."""
    built = graded_registry()
    shutil.copytree(built / "registry", work / REGISTRY)
    expected = json.loads((built / "expected.json").read_text())
    params = {"seed": LAB.seed, "registry_dir": REGISTRY, "output_dir": "outputs", "load_seconds": 6}  # 20 users after 2 s
    return params, {"golden_rows": _draws()["rows"], "expected": expected["expected"], "info": expected["info"]}


# --- what the registry in the work dir says (read with sqlite3: no MLflow in the grader) ------------------


def _registry_dir(ctx) -> str:
    """The registry folder, work-relative (the notebook's registry_dir parameter)."""
    relative = str(ctx.params.get("registry_dir", REGISTRY)).strip("/") or REGISTRY
    if ".." in Path(relative).parts:
        raise Fail(f"registry_dir {relative!r} must lie inside the lab's folder")
    return relative


def registry_facts(ctx) -> dict:
    """The champion's version, run id and git SHA tag, from work/registry/mlflow.db."""
    db = ctx.work / _registry_dir(ctx) / "mlflow.db"
    if not db.is_file() or db.is_symlink():
        raise Fail(f"{_registry_dir(ctx)}/mlflow.db is missing: keep the setup cell, which provides the registry")
    connection = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        row = connection.execute("select version from registered_model_aliases where name = ? and alias = ?",
                                 (MODEL_NAME, "champion")).fetchone()
        if row is None:
            raise Fail(f"the registry has no {MODEL_NAME}@champion: keep the registry as the setup cell provides it")
        run = connection.execute("select run_id from model_versions where name = ? and version = ?",
                                 (MODEL_NAME, row[0])).fetchone()
        tag = connection.execute("select value from tags where run_uuid = ? and key = 'git_sha'", (run[0],)).fetchone()
    finally:
        connection.close()
    return {"version": str(row[0]), "run_id": run[0], "git_sha": tag[0] if tag else ""}


# --- requests -----------------------------------------------------------------------------------------


def example_row() -> dict:
    from grader.datasets import breast_cancer_frame

    return {k: float(v) for k, v in breast_cancer_frame().drop(columns="target").iloc[7].items()}


def _with(row: dict, **changes) -> dict:
    return {**row, **changes}


def _without(row: dict, name: str) -> dict:
    return {k: v for k, v in row.items() if k != name}


# (name, what is wrong, the JSON body, the field the 4xx must name or None)
def bad_inputs(row: dict) -> list[tuple[str, str, str, dict, str]]:
    return [
        ("missing", "a missing feature", "/predict", {"features": _without(row, "mean_area")}, "mean_area"),
        ("wrong_type", "a feature that is not a number", "/predict", {"features": _with(row, mean_texture="big")},
         "mean_texture"),
        ("nan", 'NaN (sent as "NaN")', "/predict", {"features": _with(row, worst_area="NaN")}, "worst_area"),
        ("infinity", 'infinity (sent as "inf")', "/predict", {"features": _with(row, mean_radius="inf")},
         "mean_radius"),
        ("empty_batch", "an empty batch", "/predict_batch", {"rows": []}, "rows"),
        ("oversized_batch", f"a batch of {MAX_BATCH + 1} rows", "/predict_batch", {"rows": [row] * (MAX_BATCH + 1)},
         "rows"),
    ]


def service_command(target: str, working_dir: str) -> list[str]:
    return [sys.executable, "-m", "bentoml", "serve", target, "--working-dir", working_dir, "--host", "127.0.0.1",
            "--port", "8080"]


def _plan(ctx, requests: list, env: dict, load: dict | None = None, files: dict | None = None,
          target: str = f"service:{CLASS}") -> dict:
    from mlops_kit.serving import LOADER_DIED  # a loader thread's traceback: the service will never be ready

    registry = "{work}/" + _registry_dir(ctx)  # the probe writes in the work dir's path as the server sees it
    working_dir = "{files}" if files else "."
    plan = {"command": service_command(target, working_dir), "cwd": ctx.params.get("output_dir", "outputs"),
            "env": {"BENTOML_DO_NOT_TRACK": "true", "MLFLOW_DISABLE_TELEMETRY": "true", "REGISTRY_DIR": registry,
                    **env},
            "port": 8080, "health": "/readyz", "ready_seconds": 60, "requests": requests, "stop_grace": STOP_GRACE,
            "not_needed": ["torch"], "give_up_on": [LOADER_DIED]}
    if load:
        plan["load"] = load
    if files:
        plan["files"] = files
    return plan


def _visible_requests(row: dict) -> list[dict]:
    requests = [{"name": "first", "method": "POST", "path": "/predict", "json": {"features": row}, "timeout": 30},
                {"name": "healthz", "method": "GET", "path": "/healthz"},
                {"name": "predict", "method": "POST", "path": "/predict", "json": {"features": row}},
                {"name": "batch_1", "method": "POST", "path": "/predict_batch", "json": {"rows": [row]}},
                {"name": "batch_256", "method": "POST", "path": "/predict_batch", "json": {"rows": [row] * MAX_BATCH},
                 "timeout": 20},
                {"name": "metadata", "method": "POST", "path": "/metadata", "json": {}},
                {"name": "metadata_get", "method": "GET", "path": "/metadata"}]
    for name, _, path, body, _ in bad_inputs(row):
        requests.append({"name": f"bad_{name}", "method": "POST", "path": path, "json": body})
    return requests


def _load_spec(row: dict) -> dict:
    return {"method": "POST", "path": "/predict", "json": {"features": row}, **LOAD}


def served(ctx) -> dict:
    """The learner's service, started from output_dir with a slow model store, probed, load-tested, stopped."""
    row = example_row()
    plan = _plan(ctx, _visible_requests(row), {"MLOPS_LOAD_DELAY_SECONDS": str(LOAD_DELAY)}, load=_load_spec(row))
    return ctx.serve(plan, label="learner")


_REFERENCE_RUNS: dict = {}  # digest of the reference service -> (when, result): one measurement serves a batch
REFERENCE_TTL = 600.0  # seconds a reference measurement is reused within one grading process


def reference(ctx) -> dict:
    """The reference solution's service, started in this run on the same machine, load-tested the same way."""
    source = reference_source()
    key = hashlib.sha256(source.encode()).hexdigest()
    cached = _REFERENCE_RUNS.get(key)
    if cached and time.monotonic() - cached[0] < REFERENCE_TTL:
        return cached[1]
    plan = _plan(ctx, [], {}, load=_load_spec(example_row()), files={"reference_service.py": source},
                 target=f"reference_service:{CLASS}")
    result = ctx.serve(plan, label="reference")
    if (result.get("load") or {}).get("p95"):
        _REFERENCE_RUNS[key] = (time.monotonic(), result)
    return result


def reference_source() -> str:
    """The service the solution notebook writes (its %%writefile cell, solution markers dropped)."""
    return solution_file(LAB, SERVICE)


def _running(ctx) -> dict:
    result = served(ctx)
    if "error" in result:
        raise Fail(result["error"])
    if not result.get("ready"):
        raise Fail("skipped: the service never became ready")
    return result


def _answer(result: dict, name: str) -> dict:
    return result.get("responses", {}).get(name) or {"error": "not sent"}


def _said(answer: dict) -> str:
    if "error" in answer:
        return f"no answer ({answer['error']})"
    body = answer.get("json", answer.get("text", ""))
    text = json.dumps(body) if not isinstance(body, str) else body
    return f"{answer['status']} {text[:300]}"


def _stderr(result: dict, lines: int = 8) -> str:
    return log_tail(result.get("stderr_tail", ""), lines)


# --- checks -------------------------------------------------------------------------------------------


@CHECKS.add(points=1, hint=f"write output_dir/{SERVICE} with a class {CLASS} decorated with @bentoml.service and "
            "@bentoml.api methods predict, predict_batch and metadata", section="7.3 A BentoML service")
def service_defined(ctx):
    """output_dir/service.py defines the BentoML service class CancerClassifier with its three APIs."""
    path = ctx.output(SERVICE)
    if not ctx.exists(path):
        raise Fail(f"{path} was not written: run the %%writefile cell{ctx.why_missing()}")
    try:
        tree = ast.parse(ctx.read_text(path))
    except SyntaxError as err:
        raise Fail(f"{SERVICE} does not parse: line {err.lineno}: {err.msg}") from None
    classes = {node.name: node for node in tree.body if isinstance(node, ast.ClassDef)}
    if CLASS not in classes:
        raise Fail(f"{SERVICE} defines no class {CLASS} (classes found: {sorted(classes) or 'none'}): the grader "
                   f"serves service:{CLASS}")
    node = classes[CLASS]
    if not any("service" in ast.unparse(d) for d in node.decorator_list):
        raise Fail(f"{CLASS} is not decorated with @bentoml.service(...)")
    apis = {item.name for item in node.body if isinstance(item, (ast.FunctionDef, ast.AsyncFunctionDef))
            and any("api" in ast.unparse(d) for d in item.decorator_list)}
    missing = [name for name in ("predict", "predict_batch", "metadata") if name not in apis]
    if missing:
        raise Fail(f"{CLASS} has no @bentoml.api method {', '.join(missing)} (its APIs: {sorted(apis) or 'none'})")


@CHECKS.add(points=2, hint="run `bentoml serve service:CancerClassifier` in output_dir yourself and read its log; "
            "read the registry folder from the REGISTRY_DIR environment variable and open it with load_champion",
            section="7.1 From a registry to a service; 7.3 A BentoML service", depends=("service_defined",))
def service_ready(ctx):
    """`bentoml serve service:CancerClassifier` starts and /readyz answers 200 within 60 s."""
    result = served(ctx)
    if "error" in result:
        raise Fail(result["error"])
    if not result.get("ready"):
        log, full = _stderr(result), str(result.get("stderr_tail", ""))
        cause = ""
        if "mlflow" in full and any(sign in full for sign in ("Read-only file system", "registered_model_meta",
                                                              "No such file", "does not exist",
                                                              "No such artifact", "Errno 2", "Errno 30")):
            cause = (" MLflow's models:/ URIs follow the absolute artifact paths recorded when the registry was "
                     "built, and write into it: the graded registry was built elsewhere and is mounted read-only, as "
                     "in a container. Load with mlops_kit.serving.load_champion(REGISTRY_DIR), which only reads.")
        raise Fail(f"the service did not become ready: {result.get('startup')}.{cause} Its log ends: {log}")


@CHECKS.add(points=2, hint="predict(self, features: Features) returns {'probability': p, 'label': int(p >= 0.5), "
            "'model_version': ...}", section="7.3 A BentoML service", depends=("service_ready",))
def predict_contract(ctx):
    """POST /predict {"features": {...}} answers 200 with a probability in [0, 1] and the label it implies."""
    answer = _answer(_running(ctx), "predict")
    body = answer.get("json")
    if answer.get("status") != 200 or not isinstance(body, dict):
        raise Fail(f"POST /predict with a valid row answered {_said(answer)}")
    p, label = body.get("probability"), body.get("label")
    if isinstance(p, bool) or not isinstance(p, (int, float)) or not 0 <= p <= 1:
        raise Fail(f"the answer's probability is {p!r}, expected a number in [0, 1]: {_said(answer)}")
    if label not in (0, 1) or isinstance(label, bool) or label != int(p >= 0.5):
        raise Fail(f"label {label!r} does not follow from probability {p:.4f} (label = 1 when p >= 0.5)")


@CHECKS.add(points=3, hint="one required field per feature with allow_inf_nan=False and extra='forbid'; "
            "the batch as Annotated[list[Features], Field(min_length=1, max_length=256)]",
            section="7.2 The input contract", depends=("service_ready",))
def rejects_bad_input(ctx):
    """Each kind of bad input gets a 4xx that names the offending field, never a 200 or a 500."""
    result = _running(ctx)
    problems, kinds = [], bad_inputs(example_row())
    for name, what, _, _, field_name in kinds:
        answer = _answer(result, f"bad_{name}")
        status = answer.get("status")
        text = json.dumps(answer.get("json", answer.get("text", "")))
        if status is None:
            problems.append(f"{what}: no answer ({answer.get('error')})")
        elif status == 200:
            problems.append(f"{what} was accepted (200): the contract lets it through")
        elif status >= 500:
            problems.append(f"{what} crashed the service ({status}) instead of being refused with a 4xx: "
                            "validate it in the input model")
        elif not 400 <= status < 500:
            problems.append(f"{what} answered {status}, not a 4xx")
        elif field_name not in text:
            problems.append(f"{what} was refused ({status}) but the message does not name {field_name!r}")
    if problems:
        good = len(kinds) - len(problems)
        return Partial(good / len(kinds), f"{good} of {len(kinds)} kinds of bad input handled; " + "; ".join(problems))


@CHECKS.add(points=2, hint="predict_batch(self, rows: ...) with max_length=256, answering one probability per row",
            section="7.3 A BentoML service", depends=("service_ready",))
def batch_sizes(ctx):
    """POST /predict_batch answers batches of 1 and 256 rows, one probability per row, equal to /predict's."""
    result = _running(ctx)
    single = _answer(result, "predict").get("json") or {}
    for name, size in (("batch_1", 1), (f"batch_{MAX_BATCH}", MAX_BATCH)):
        answer = _answer(result, name)
        body = answer.get("json")
        if answer.get("status") != 200 or not isinstance(body, dict):
            raise Fail(f"a batch of {size} row(s) answered {_said(answer)}")
        probabilities = body.get("probabilities")
        if not isinstance(probabilities, list) or len(probabilities) != size:
            count = len(probabilities) if isinstance(probabilities, list) else probabilities
            raise Fail(f"a batch of {size} row(s) answered {count!r} probabilities, expected {size}")
        p = single.get("probability")
        if isinstance(p, (int, float)) and not all(isinstance(q, (int, float)) and math.isclose(q, p, abs_tol=1e-9)
                                                    for q in probabilities):
            raise Fail(f"the batch's probabilities for the same row differ from /predict's ({p}): "
                       "both endpoints must score with the same model and feature order")


@CHECKS.add(points=2, hint="metadata() returns the dict load_champion gives you: model_name, model_version, "
            "git_sha", section="7.5 Metadata", depends=("service_ready",))
def metadata(ctx):
    """/metadata names the model, the champion's version in the registry and its run's git SHA tag."""
    result, facts = _running(ctx), registry_facts(ctx)
    answer = _answer(result, "metadata")
    if answer.get("status") != 200:
        answer = _answer(result, "metadata_get")
    body = answer.get("json")
    if answer.get("status") != 200 or not isinstance(body, dict):
        raise Fail(f"/metadata answered {_said(answer)}")
    wrong = []
    for key, expected in (("model_name", MODEL_NAME), ("model_version", facts["version"]), ("git_sha", facts["git_sha"])):
        if str(body.get(key)) != expected:
            wrong.append(f"{key} is {body.get(key)!r}, the registry says {expected!r}")
    if wrong:
        cause = " (read them from the loaded champion, not typed in: the graded registry is not yours)" \
            if str(body.get("model_version")) == str(PUBLIC_CHAMPION) else ""
        raise Fail("; ".join(wrong) + cause)


@CHECKS.add(points=2, hint="load the model in a background thread started in __init__ and define __is_ready__; "
            "never load it on the first request", section="7.4 Liveness and readiness", depends=("service_ready",))
def ready_means_ready(ctx):
    """/readyz turns 200 only once the model is loaded: the first request right after it is answered at once."""
    result = _running(ctx)
    first = _answer(result, "first")
    seconds = result.get("ready_seconds") or 0
    if first.get("status") != 200:
        raise Fail(f"/readyz said ready, but the /predict sent right after answered {_said(first)}: readiness "
                   "does not wait for the model")
    if first.get("seconds", 0) > LOAD_DELAY * 0.6:
        raise Fail(f"/readyz said ready, but the first /predict took {first['seconds']:.1f} s (later ones "
                   f"{_answer(result, 'predict').get('seconds', 0):.2f} s): the model is loaded on the first request, "
                   "not before the service says it is ready")
    if seconds < LOAD_DELAY:
        raise Fail(f"/readyz said ready after {seconds:.1f} s, before the model store answered ({LOAD_DELAY:.0f} s "
                   "in this run): load the champion with load_champion, and say ready only once it returned")
    if _answer(result, "healthz").get("status") != 200:
        raise Fail(f"/healthz answered {_said(_answer(result, 'healthz'))}: keep BentoML's liveness endpoint")


@CHECKS.add(points=2, hint="keep predict light: the model is loaded once, requests only score",
            section="7.6 Load testing with locust", depends=("service_ready",))
def latency_under_load(ctx):
    """At 20 concurrent clients every request succeeds and p95 is within 5x the reference service's."""
    load = _running(ctx).get("load") or {}
    if not load.get("sent"):
        raise Fail("the load test sent no request")
    failed = {k: v for k, v in (load.get("statuses") or {}).items() if k != "200"}
    if failed:
        raise Fail(f"under load {sum(failed.values())} of {load['sent']} requests failed ({failed})")
    theirs = load.get("p95")
    base = (reference(ctx).get("load") or {}).get("p95")
    if not base:
        raise Fail("skipped: the reference service could not be measured in this run")
    ratio = theirs / base
    ctx.figure("p95_ms", theirs * 1000, "p95 latency at 20 concurrent clients, measured by the grader", "ms")
    ctx.figure("p95_vs_reference", ratio, "p95 latency over the reference service's, same run", "x")
    if ratio > LATENCY_RATIO:
        raise Fail(f"p95 latency {theirs * 1000:.0f} ms at 20 clients, {ratio:.1f}x the reference service's "
                   f"{base * 1000:.0f} ms (at most {LATENCY_RATIO:.0f}x): something slow runs on every request")


@CHECKS.add(points=1, hint="no non-daemon threads or child processes that outlive SIGTERM",
            section="7.7 Shutting down cleanly", depends=("service_ready",))
def clean_shutdown(ctx):
    """On SIGTERM the service exits within 8 s and leaves no process behind."""
    stop = _running(ctx).get("stop") or {}
    if stop.get("exited_before_stop"):
        raise Fail("the service had exited before it was asked to stop")
    if stop.get("ignored_sigterm"):
        raise Fail(f"the service was still running {STOP_GRACE:.0f} s after SIGTERM: a non-daemon thread or a "
                   "blocking loop keeps it alive")
    if stop.get("daemons") or stop.get("left_running"):
        raise Fail(f"after stopping, {stop.get('left_running') or stop.get('daemons')} process(es) of the service "
                   "were still running")


@CHECKS.add(points=2, hint="run_load_test(locustfile, host, f'{output_dir}/load', users=20, seconds=load_seconds), "
            "then plot load_history(...) into latency.png", section="7.6 Load testing with locust")
def load_test_ran(ctx):
    """The notebook's locust run: load_stats.csv with /predict requests and no failure, 20 users, latency.png."""
    import pandas as pd

    from grader import collect

    stats_path, history_path = ctx.output("load_stats.csv"), ctx.output("load_stats_history.csv")
    for path in (stats_path, history_path):
        if not ctx.exists(path):
            raise Fail(f"{path} was not written: run locust with --csv {{output_dir}}/load (run_load_test)"
                       f"{ctx.why_missing()}")
    stats = ctx.read_csv(stats_path)
    predict = stats[(stats.get("Name") == "/predict")] if "Name" in stats else stats.iloc[0:0]
    if predict.empty:
        raise Fail(f"load_stats.csv has no /predict row (rows: {list(stats.get('Name', []))[:5]}): the locustfile "
                   "must POST /predict")
    requests, failures = int(predict["Request Count"].sum()), int(predict["Failure Count"].sum())
    if requests < 1:
        raise Fail("the load test completed no /predict request: run it for load_seconds with 20 users")
    if failures:
        raise Fail(f"{failures} of {requests} load-test requests failed: the locustfile's body does not match the "
                   'contract ({"features": {...}})')
    history = ctx.read_csv(history_path)
    if "User Count" not in history or history["User Count"].max() < 20:
        raise Fail(f"the load test reached {history.get('User Count', pd.Series([0])).max()} users, expected 20")
    plot = ctx.output("latency.png")
    try:
        head = collect.safe_open_bytes(ctx.work, plot, 8 * 2**20)[:8]
    except collect.CollectError:
        head = b""
    if head[:8] != b"\x89PNG\r\n\x1a\n":
        raise Fail("latency.png (the percentiles over time) was not saved as a PNG")


@CHECKS.add(points=3, hint="serve the version behind the champion alias, with the feature order of FEATURES",
            section="7.1 From a registry to a service", visible=False, depends=("service_ready",))
def golden_predictions(ctx):
    """On hidden rows, /predict_batch answers exactly the registered champion's probabilities."""
    import numpy as np

    rows = ctx.hidden["golden_rows"]
    plan = _plan(ctx, [{"name": "golden", "method": "POST", "path": "/predict_batch", "json": {"rows": rows},
                        "timeout": 20}], {})
    result = ctx.probe("service_probe", {"plan": np.array(json.dumps(plan, sort_keys=True))},
                       args=("--label", "golden"), secret=True)
    if "error" in result:
        raise Fail(result["error"])
    answer = _answer(result, "golden")
    got = (answer.get("json") or {}).get("probabilities") if answer.get("status") == 200 else None
    if not isinstance(got, list) or len(got) != len(rows):
        raise Fail(f"/predict_batch on the hidden rows answered {_said(answer)[:200]}")
    expected = ctx.hidden["expected"]
    champion = ctx.hidden["info"]["champion"]

    def same(values) -> bool:
        return all(isinstance(a, (int, float)) and math.isclose(a, b, abs_tol=1e-6) for a, b in zip(got, values))

    if same(expected[champion]):
        return
    other = [v for v, values in expected.items() if v != champion and same(values)]
    if other:
        raise Fail(f"the predictions are version {other[0]}'s, not the champion's (version {champion}): load the "
                   "alias champion, not a version number or the latest")
    worst = max(abs(a - b) for a, b in zip(got, expected[champion]) if isinstance(a, (int, float)))
    raise Fail(f"the predictions differ from the champion's by up to {worst:.3g}: score the rows in the "
               "order of FEATURES, with the model as loaded")
