"""Lab 12 — Drift: the learner's `detect_drift` is called on drift scenarios drawn from the installation's secret, each
window pair in a fresh process, and scored by its recall and precision; the saved Evidently report is read as
Evidently's data (the snapshot's metrics, the HTML's dashboard) and its numbers recomputed; the drift gauge is read
from the exposition `drift_metrics` returns for a quiet and a drifted window; the membership figures are recomputed by
retraining the two models."""

from __future__ import annotations

import json
import math

from grader import collect
from grader.checks.common import Checks, Fail, Partial, log_tail, require_keys, require_number
from grader.labs import Lab
from grader.sandbox import Limits
from grader.secret import seed_for

LAB = Lab(
    id="12_drift",
    title="Detect drift and expose it",
    week=12,
    minutes=90,
    objectives=(
        "detect data and prediction drift with Evidently, with one decision over many columns that survives small "
        "samples",
        "save Evidently's report as HTML and JSON, and read it back as data",
        "expose the decision as the service's cancer_drift_detected gauge",
        "measure what a model leaks about its training rows with a membership-inference attack",
    ),
    lesson="curriculum/12_drift.ipynb",
    seed=47,
    timeout=150,
    cell_timeout=90,
    budget=240,
)

CHECKS = Checks()
DRIFT, REPORT_HTML, REPORT_JSON, MEMBERSHIP = "drift.py", "drift_report.html", "drift_report.json", "membership.json"
MODELS = ("logreg", "hgb")
RECALL_MIN, PRECISION_MIN = 0.6, 0.8  # below: no credit; between: credit in proportion; 1.0: full credit
P_TOLERANCE, SHOWN_TOLERANCE, MEMBERSHIP_TOLERANCE = 1e-6, 2e-6, 1e-4
MAX_HTML_BYTES = 16 * 2**20  # Evidently's HTML carries its viewer: about 6 MB
SECONDS = ("--seconds", "60")  # one call: learner code, one report run
PRELOAD = ("pandas", "scipy.stats", "evidently", "evidently.metrics", "evidently.presets", "prometheus_client")
QUIET = ("evidently.metrics.column_statistics:ValueDriftCalculation._render",  # the figures no check reads: ~80 %
         "evidently.presets.drift:DataDriftPreset.render")  # of a call; the report's values are the same without
CALL_LIMITS, HIDDEN_LIMITS = Limits(wall_seconds=120), Limits(wall_seconds=180)


def prepare(work):
    """Lab 07's graded registry for the service (the notebook draws the lab's windows from `seed`). The hidden
    scenarios, one per kind, are drawn from the installation's secret and kept here with their answers."""
    import shutil

    from grader.checks.lab07 import graded_registry
    from mlops_kit.drift import DRIFT_SCENARIOS, drift_scenario

    shutil.copytree(graded_registry() / "registry", work / "registry")

    base = seed_for(LAB.id, "scenarios")
    scenarios = []
    for kind, (drifted, _) in DRIFT_SCENARIOS.items():
        reference, current = drift_scenario(kind, base)
        scenarios.append({"kind": kind, "drift": drifted, "reference": _columns(reference),
                          "current": _columns(current), "column": current.attrs.get("column")})
    return {"seed": LAB.seed, "registry_dir": "registry", "output_dir": "outputs"}, {"scenarios": scenarios}


def _columns(frame) -> dict:
    """A window as plain JSON: {column: [values]}."""
    return {column: [float(v) for v in frame[column]] for column in frame.columns}


def lab_windows(ctx, kind: str = "one_feature"):
    """The lab's windows of `kind` at the run's seed (the notebook draws the same)."""
    from mlops_kit.drift import drift_scenario

    return drift_scenario(kind, int(ctx.params["seed"]))


def expected_pvalues(reference, current) -> dict:
    from scipy.stats import ks_2samp

    return {column: float(ks_2samp(reference[column], current[column]).pvalue) for column in reference.columns}


def calls(ctx, requests: list[dict], secret: bool, limits: Limits) -> dict:
    """Call functions of drift.py, each call in a fresh inner process that sees only its own windows (forked from
    one that has imported Evidently)."""
    import numpy as np

    plan = {"file": ctx.output(DRIFT), "calls": requests, "preload": PRELOAD, "quiet": list(QUIET)}
    result = ctx.probe("function_probe", {"plan": np.array(json.dumps(plan, sort_keys=True))}, args=SECONDS,
                       limits=limits, needs=(ctx.output(DRIFT),), secret=secret)
    return {c["id"]: c for c in result["calls"]}


def visible_calls(ctx) -> dict:
    """The calls on the lab's own windows, in one probe the checks share: detect_drift on the drifted window and
    drift_metrics on a quiet and on the drifted one."""
    reference, current = lab_windows(ctx)
    quiet = lab_windows(ctx, "none")
    requests = [{"id": "lab", "function": "detect_drift",
                 "kwargs": {"reference": _columns(reference), "current": _columns(current)}}]
    requests += [{"id": name, "function": "drift_metrics", "kwargs": {"reference": _columns(ref), "current": _columns(cur)}}
                 for name, (ref, cur) in (("quiet", quiet), ("drifted", (reference, current)))]
    return calls(ctx, requests, secret=False, limits=CALL_LIMITS)


def answer_problem(call: dict, columns: list[str]) -> str | None:
    """What is wrong with one `detect_drift` answer, None when it is a (bool, {column: number}) pair for `columns`."""
    if "error" in call:
        return f"detect_drift failed: {call['error']}"
    got = call.get("result")
    if not isinstance(got, list) or len(got) != 2:
        return f"detect_drift returned {str(got)[:120]}, not a (decision, scores) pair"
    decision, scores = got
    if not isinstance(decision, bool):
        return (f"the decision is {decision!r}, not a bool: return bool(...) (a NumPy bool is not JSON and arrives "
                "as its repr)")
    if not isinstance(scores, dict):
        return f"the scores are {type(scores).__name__}, not a dict of column → score"
    if set(scores) != set(columns):
        missing, extra = sorted(set(columns) - set(scores)), sorted(set(scores) - set(columns))
        return (f"the scores cover other columns than the windows: missing {missing[:5] or 'none'}, extra "
                f"{extra[:5] or 'none'} (every input and the prediction)")
    bad = [c for c, v in scores.items() if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v)]
    if bad:
        return f"the scores of {bad[:5]} are not finite numbers: {[scores[c] for c in bad[:3]]}"
    return None


# --- checks ---------------------------------------------------------------------------------------------


@CHECKS.add(points=3, hint="detect_drift(reference, current) → (bool(decision), {column: float(p-value)}) for every "
            "column, the prediction included; the scores are Evidently's ValueDrift values",
            section="12.5 Evidently: the report as code and as data")
def detector_contract(ctx):
    """detect_drift on the lab's window returns (a bool, Evidently's p-value of every column)."""
    reference, current = lab_windows(ctx)
    found = visible_calls(ctx)["lab"]
    problem = answer_problem(found, list(reference.columns))
    if problem:
        raise Fail(f"on the lab's window: {problem}")
    scores, expected = found["result"][1], expected_pvalues(reference, current)
    wrong = [f"{c}: {scores[c]:.3g}, Evidently's KS p-value is {expected[c]:.3g}" for c in expected
             if abs(scores[c] - expected[c]) > P_TOLERANCE]
    if wrong:
        raise Fail(f"{len(wrong)} of {len(expected)} scores are not Evidently's drift scores (the KS p-value for these "
                   f"windows): {'; '.join(wrong[:4])}")


def _hidden_answers(ctx) -> list[tuple[dict, bool | None, str | None]]:
    """(scenario, the decision or None, what went wrong) for every hidden scenario."""
    scenarios = ctx.hidden["scenarios"]
    requests = [{"id": s["kind"], "function": "detect_drift",
                 "kwargs": {"reference": s["reference"], "current": s["current"]}} for s in scenarios]
    found = calls(ctx, requests, secret=True, limits=HIDDEN_LIMITS)
    answers = []
    for scenario in scenarios:
        call = found.get(scenario["kind"], {"error": "it was not called"})
        problem = answer_problem(call, list(scenario["reference"]))
        answers.append((scenario, None if problem else call["result"][0], problem))
    return answers


def _name(scenario: dict) -> str:
    from mlops_kit.drift import DRIFT_SCENARIOS

    return f"{scenario['kind']} ({DRIFT_SCENARIOS[scenario['kind']][1]})"


@CHECKS.add(points=4, hint="watch every column, the prediction too, and flag a window when one column's p-value is "
            "below your corrected threshold: a drift that touches one column in 31 is still a drift",
            section="12.6 Watching the predictions, and scoring a detector", visible=False,
            depends=("detector_contract",))
def detects_drift(ctx):
    """detect_drift flags the hidden drifted windows: one input shifted, a gradual creep, a covariate shift, a label
    shift and a swapped prediction (recall)."""
    drifted = [(s, said, problem) for s, said, problem in _hidden_answers(ctx) if s["drift"]]
    caught = [s for s, said, _ in drifted if said is True]
    missed = [f"{_name(s)}: {problem or 'not flagged'}" for s, said, problem in drifted if said is not True]
    recall = len(caught) / len(drifted)
    ctx.figure("drift_recall", recall, "recall on the grader's hidden drifted windows", f"of {len(drifted)} windows")
    if not missed:
        return None
    message = f"recall {recall:.2f}: {len(missed)} of {len(drifted)} drifted windows missed — " + "; ".join(missed)
    if recall < RECALL_MIN:
        raise Fail(message + f" (at least {RECALL_MIN} earns partial credit)")
    return Partial(recall, message)


@CHECKS.add(points=4, hint="31 tests at p < 0.05 fire by chance on a quiet window: compare each p-value with "
            "alpha / 31 (Bonferroni); a distance like PSI fires on small samples",
            section="12.4 Thirty-one columns: one decision", visible=False, depends=("detector_contract",))
def no_false_alarms(ctx):
    """detect_drift's alarms on the hidden windows are real: none on a quiet window or on the small-sample trap
    (precision)."""
    answers = _hidden_answers(ctx)
    true_alarms = sum(1 for s, said, _ in answers if s["drift"] and said is True)
    false = [f"{_name(s)}: {problem or 'flagged as drift'}" for s, said, problem in answers
             if not s["drift"] and said is not False]
    precision = true_alarms / (true_alarms + len(false)) if true_alarms + len(false) else 0.0
    ctx.figure("drift_precision", precision, "precision of the alarms on the grader's hidden windows",
               f"of {len(answers)} windows")
    if not false:
        return None
    message = (f"precision {precision:.2f}: {len(false)} false alarm(s) on windows without drift — " + "; ".join(false))
    if precision < PRECISION_MIN:
        raise Fail(message + f" (at least {PRECISION_MIN} earns partial credit)")
    return Partial(precision, message)


@CHECKS.add(points=3, hint="drift_metrics returns generate_latest(registry).decode() of a fresh CollectorRegistry "
            "with Gauge('cancer_drift_detected', ...) set to int(decision)",
            section="12.7 The decision as a metric")
def metric_flips(ctx):
    """The gauge cancer_drift_detected that drift_metrics exposes is 0 for a quiet window and 1 for the lab's drifted
    one."""
    from mlops_kit.drift import DRIFT_METRIC, gauge_value

    found = visible_calls(ctx)
    values, problems = {}, []
    for name in ("quiet", "drifted"):
        call = found.get(name, {"error": "it was not called"})
        if "error" in call:
            problems.append(f"on the {name} window drift_metrics failed: {call['error']}")
            continue
        text = call.get("result")
        if not isinstance(text, str):
            problems.append(f"on the {name} window drift_metrics returned {type(text).__name__}, not the exposition "
                            "text (decode generate_latest's bytes)")
            continue
        try:
            values[name] = gauge_value(text)
        except Exception as err:  # noqa: BLE001 — the parser's complaint is the learner's to see
            problems.append(f"on the {name} window the exposition does not parse: {str(err)[:160]}")
            continue
        if values[name] is None:
            problems.append(f"on the {name} window there is no unlabelled gauge {DRIFT_METRIC} (a counter, another "
                            "name or a label does not count)")
    if problems:
        raise Fail("; ".join(problems))
    if (values["quiet"], values["drifted"]) != (0.0, 1.0):
        raise Fail(f"{DRIFT_METRIC} is {values['quiet']:g} on a quiet window and {values['drifted']:g} on the lab's "
                   "drifted window: it must be 0, then 1")


def _read_html(ctx, relative: str) -> str:
    try:
        return collect.read_text(ctx.work, relative, max_bytes=MAX_HTML_BYTES)
    except collect.CollectError as err:
        raise Fail(f"{err}{ctx.why_missing()}") from None


@CHECKS.add(points=3, hint="snapshot = Report([DataDriftPreset(...)]).run(current, reference) on the lab's window; "
            "snapshot.save_html(str(path)) and snapshot.save_json(str(path))",
            section="12.5 Evidently: the report as code and as data")
def report_is_evidently(ctx):
    """drift_report.json is an Evidently data-drift snapshot and drift_report.html Evidently's report of it, both of
    the lab's window: their scores are the ones the grader recomputes."""
    from mlops_kit.drift import dashboard_scores, html_dashboard, snapshot_scores

    reference, current = lab_windows(ctx)
    expected = expected_pvalues(reference, current)
    snapshot = ctx.read_json(ctx.output(REPORT_JSON))
    try:
        saved, _ = snapshot_scores(snapshot)
    except ValueError as err:
        raise Fail(f"{REPORT_JSON}: {err} — save the snapshot Evidently's Report.run returns") from None
    html = _read_html(ctx, ctx.output(REPORT_HTML))
    try:
        shown = dashboard_scores(html_dashboard(html))
    except (ValueError, RecursionError) as err:
        raise Fail(f"{REPORT_HTML}: {str(err)[:200]} — save it with snapshot.save_html") from None
    problems = []
    for name, scores, tolerance in ((REPORT_JSON, saved, P_TOLERANCE), (REPORT_HTML, shown, SHOWN_TOLERANCE)):
        if set(scores) != set(expected):
            problems.append(f"{name} scores the columns {sorted(scores)[:4]}…, not the window's {len(expected)} "
                            "columns (every input and the prediction)")
            continue
        wrong = [c for c in expected if not isinstance(scores[c], (int, float)) or isinstance(scores[c], bool)
                 or abs(scores[c] - expected[c]) > tolerance]
        if wrong:
            problems.append(f"{name} is not the report of the lab's window: {len(wrong)} scores differ from the "
                            f"recomputed ones, e.g. {wrong[0]}: {scores[wrong[0]]!r}, expected {expected[wrong[0]]:.6g} "
                            "(run it on reference and current, current first)")
    if problems:
        raise Fail("; ".join(problems))


@CHECKS.add(points=3, hint="members: the training rows of stratified_split(..., test_size=0.25, seed=seed); loss = "
            "-ln(probability of the true label); auc = roc_auc_score(member, -loss); advantage = max(tpr - fpr)",
            section="12.9 ML-specific risks: what a model remembers")
def membership_measured(ctx):
    """membership.json holds the attack's AUC and advantage on week 3's logreg and on hgb, as the grader recomputes
    them at the run's seed."""
    from mlops_kit.classifier import build_pipeline
    from mlops_kit.data import breast_cancer_frame, stratified_split
    from mlops_kit.drift import membership_advantage

    reported = require_keys(ctx.read_json(ctx.output(MEMBERSHIP)), MODELS, MEMBERSHIP)
    seed = int(ctx.params["seed"])

    def recompute() -> dict:
        frame = breast_cancer_frame()
        X_train, X_test, y_train, y_test = stratified_split(frame.drop(columns="target"), frame.target,
                                                            test_size=0.25, seed=seed)
        return {name: membership_advantage(build_pipeline(name, seed=seed).fit(X_train, y_train),
                                           (X_train, y_train), (X_test, y_test)) for name in MODELS}

    expected = ctx.once(f"membership:{seed}", recompute)
    problems = []
    for name in MODELS:
        figures = require_keys(reported[name], ("auc", "advantage"), f"{MEMBERSHIP}[{name!r}]")
        for key in ("auc", "advantage"):
            value = require_number(figures[key], f"{name} {key}", 0.0, 1.0)
            if abs(value - expected[name][key]) > MEMBERSHIP_TOLERANCE:
                problems.append(f"{name} {key} = {value:.4f}, recomputed {expected[name][key]:.4f}")
    if problems:
        raise Fail("the figures are not what the attack gives at this run's seed (the grader retrains both models "
                   "on the seeded split): " + "; ".join(problems))


# --- the service's own gauge ---------------------------------------------------------------------------------

SERVICE, SHIFTED = "service.py", "worst_area"
WATCH_ROWS = 100  # rows of each kind the grader sends: one window


def watch_traffic(seed: int) -> tuple[list[dict], list[dict]]:
    """100 unseen rows like the training data (week 1's test split at the run's seed), and the same rows with one
    feature grown by half: what the service is sent, in batches of 25."""
    from mlops_kit.data import breast_cancer_frame, stratified_split

    frame = breast_cancer_frame()
    _, X_test, _, _ = stratified_split(frame.drop(columns="target"), frame.target, test_size=0.25, seed=seed)
    quiet = [{k: float(v) for k, v in row.items()} for row in X_test.head(WATCH_ROWS).to_dict("records")]
    return quiet, [{**row, SHIFTED: row[SHIFTED] * 1.5} for row in quiet]


def _gauge(answer: dict):
    from mlops_kit.drift import gauge_value

    if answer.get("status") != 200:
        return None, f"GET /metrics answered {answer.get('status', answer.get('error'))}"
    try:
        return gauge_value(str(answer.get("text", ""))), ""
    except Exception as err:  # noqa: BLE001 - the learner's exposition
        return None, f"/metrics is not Prometheus' text format: {err}"


@CHECKS.add(points=3, hint="keep a deque(maxlen=100) of {**row, 'prediction': p}; every 25 rows once it is full, "
            "DRIFTED.set(int(detect_drift(REFERENCE, pd.DataFrame(window))[0])) with Gauge(DRIFT, ..., "
            "multiprocess_mode='max')", section="12.7 The decision as a metric")
def service_raises_the_flag(ctx):
    """The served service's cancer_drift_detected reads 0 after 100 rows like the training data and 1 after 100 rows in
    which one feature has shifted."""
    from grader.checks.lab07 import service_command
    from mlops_kit.drift import DRIFT_METRIC
    from mlops_kit.serving import LOADER_DIED

    if not ctx.exists(ctx.output(SERVICE)):
        raise Fail(f"{SERVICE} was not written{ctx.why_missing()}")
    quiet, drifted = watch_traffic(int(ctx.params["seed"]))
    requests = []
    for name, rows in (("quiet", quiet), ("drifted", drifted)):
        for start in range(0, WATCH_ROWS, 25):
            requests.append({"name": f"{name}_{start}", "method": "POST", "path": "/predict_batch",
                             "json": {"rows": rows[start:start + 25]}, "timeout": 60})
        requests.append({"name": f"{name}_metrics", "method": "GET", "path": "/metrics", "grep": DRIFT_METRIC})
    plan = {"command": service_command("service:CancerClassifier", "."), "cwd": ctx.params.get("output_dir", "outputs"),
            "env": {"BENTOML_DO_NOT_TRACK": "true", "MLFLOW_DISABLE_TELEMETRY": "true",
                    "REGISTRY_DIR": "{work}/" + str(ctx.params.get("registry_dir", "registry"))},
            "port": 8080, "health": "/readyz", "ready_seconds": 60, "requests": requests, "stop_grace": 5,
            "not_needed": ["torch"], "quiet": list(QUIET), "give_up_on": [LOADER_DIED]}
    result = ctx.serve(plan, limits=Limits(wall_seconds=150), label="drift-watch")
    if not result.get("ready"):
        raise Fail(f"the service never became ready: {result.get('startup')}; its log: "
                   f"{log_tail(result.get('stderr_tail', ''), 6)}")
    refused = [name for name, answer in result["responses"].items() if name.endswith(tuple("0123456789"))
               and answer.get("status") != 200]
    if refused:
        answer = result["responses"][refused[0]]
        raise Fail(f"{len(refused)} of the {2 * WATCH_ROWS // 25} batches were not answered 200 (first: "
                   f"{answer.get('status', answer.get('error'))}); its log: {log_tail(result.get('stderr_tail', ''), 4)}")
    problems = []
    for name, want in (("quiet", 0.0), ("drifted", 1.0)):
        value, why = _gauge(result["responses"].get(f"{name}_metrics", {}))
        if why:
            problems.append(why)
        elif value is None:
            problems.append(f"after the {name} rows /metrics shows no unlabelled gauge {DRIFT_METRIC} (a Gauge without "
                            "multiprocess_mode='max' is labelled by pid under BentoML)")
        elif value != want:
            rows = "rows like the training data" if name == "quiet" else f"rows with {SHIFTED} grown by half"
            why = ": a false alarm" if name == "quiet" else ": the window's drift was never evaluated, or missed"
            problems.append(f"after 100 {rows} the gauge reads {value:g}, expected {want:g}{why}")
    if problems:
        raise Fail("; ".join(problems))
