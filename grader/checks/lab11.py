"""Lab 11 — Monitoring: the learner's instrumented service runs beside a real Prometheus that scrapes it and evaluates
the learner's rules while the grader sends known traffic; counters, histograms, recorded series and spans are
compared with what was sent. promtool checks the configuration and rules and runs the learner's rule tests and the
grader's hidden ones; every PromQL expression is parsed with a real parser."""

from __future__ import annotations

import json
import math
import random
import shutil
from pathlib import Path

from grader.checks.common import Checks, Fail, learner_yaml, log_tail
from grader.labs import Lab
from grader.sandbox import Limits
from grader.secret import seed_for

LAB = Lab(
    id="11_monitoring",
    title="Monitor the service with Prometheus",
    week=11,
    minutes=100,
    objectives=(
        "instrument a model service with Prometheus metrics: requests by route and status, latency and prediction "
        "histograms, the model's version",
        "write one trace span per request with OpenTelemetry",
        "derive recording rules and burn-rate alerts from an SLO, and unit-test them with promtool",
        "build a Grafana dashboard whose every query reads a metric the service really emits",
    ),
    lesson="curriculum/11_monitoring.ipynb",
    seed=47,
    timeout=180,
    cell_timeout=90,
    budget=300,
)

CHECKS = Checks()
SERVICE, SCRAPE, RULES, TESTS, DASHBOARD = "service.py", "prometheus.yml", "rules.yml", "rule_tests.yml", "dashboard.json"
SLO_FILE = "slo.yaml"
JOB, TARGETS = "cancer-service", ("127.0.0.1:3000", "localhost:3000")
FOR = {"CancerErrorBudgetBurn": "2m", "CancerLatencyBudgetBurn": "2m", "CancerDriftDetected": "15m"}
PROMTOOL_LIMITS, LIVE_LIMITS = Limits(wall_seconds=90), Limits(wall_seconds=150)
BUILTIN_SERIES = {"up", "ALERTS", "ALERTS_FOR_STATE", "scrape_duration_seconds", "scrape_samples_scraped"}


def prepare(work: Path) -> tuple[dict, dict]:
    """Lab 07's graded registry in work/registry and an SLO file unlike the notebook's (drawn per installation)."""
    from grader.checks.lab07 import graded_registry

    shutil.copytree(graded_registry() / "registry", work / "registry")
    (work / SLO_FILE).write_text(json.dumps(graded_slo()))  # JSON is YAML
    params = {"seed": LAB.seed, "registry_dir": "registry", "output_dir": "outputs", "slo_path": SLO_FILE}
    return params, {}


def graded_slo() -> dict:
    """An SLO the notebook has not seen: another latency threshold (a bucket edge), percentile and error budget."""
    rng = random.Random(seed_for(LAB.id, "slo"))
    return {"service": "cancer-service", "window_days": rng.choice([28, 30]),
            "latency": {"percentile": rng.choice([97.5, 99.0, 99.5]), "threshold_ms": rng.choice([100, 200, 250, 500])},
            "error_rate": {"max_ratio": rng.choice([0.002, 0.005, 0.02])}}


def slo_of(ctx) -> dict:
    """The SLO the graded notebook was given."""
    text = ctx.read_text(str(ctx.params.get("slo_path", SLO_FILE)))
    slo = learner_yaml(text, SLO_FILE)
    return slo


def threshold_seconds(slo: dict) -> float:
    return slo["latency"]["threshold_ms"] / 1000


# --- the learner's files --------------------------------------------------------------------------------


def yaml_output(ctx, name: str) -> dict:
    relative = ctx.output(name)
    if not ctx.exists(relative):
        raise Fail(f"{name} was not written{ctx.why_missing()}")
    text = ctx.read_text(relative)
    if "NotImplementedError" in text and "YOUR CODE HERE" in text:
        raise Fail(f"{name} still holds the exercise's stub: write it in its %%writefile cell")
    document = learner_yaml(text, name)
    if not isinstance(document, dict):
        raise Fail(f"{name} holds {type(document).__name__}, not a mapping")
    return document


def rules_document(ctx) -> dict:
    return yaml_output(ctx, RULES)


def dashboard_document(ctx) -> dict:
    relative = ctx.output(DASHBOARD)
    if not ctx.exists(relative):
        raise Fail(f"{DASHBOARD} was not written{ctx.why_missing()}")
    try:
        return ctx.read_json(relative)
    except Exception as err:  # noqa: BLE001 - the learner's file: any refusal is theirs to see
        raise Fail(f"{DASHBOARD} is not JSON the grader can read: {err}") from None


def promtool_runs(ctx, runs: list[dict], texts: dict | None = None, secret: bool = False) -> dict:
    """promtool on copies of the learner's Prometheus files, in a probe."""
    import numpy as np

    files = {name: ctx.output(name) for name in (SCRAPE, RULES, TESTS)}
    plan = {"files": files, "texts": texts or {}, "runs": runs}
    result = ctx.probe("promtool_probe", {"plan": np.array(json.dumps(plan, sort_keys=True))}, limits=PROMTOOL_LIMITS,
                       secret=secret)
    if result.get("skipped"):
        raise Fail(f"skipped: {result['skipped']} (promtool is what Prometheus itself would say)")
    return result


STATIC_RUNS = [{"name": "config", "args": ["check", "config", SCRAPE]},
               {"name": "rules", "args": ["check", "rules", RULES]},
               {"name": "tests", "args": ["test", "rules", TESTS]}]


def static_run(ctx, name: str) -> dict:
    result = promtool_runs(ctx, STATIC_RUNS)
    return result["runs"].get(name, {"exit": None, "output": "it did not run"})


def promtool_said(output: str, lines: int = 6) -> str:
    return log_tail(output, lines, 300)


# --- the live run -----------------------------------------------------------------------------------------


def traffic() -> list[dict]:
    """The requests the grader sends: valid rows one by one, batches, and the invalid requests of lab 07."""
    from grader.checks.lab07 import bad_inputs
    from grader.datasets import breast_cancer_frame

    rng = random.Random(seed_for(LAB.id, "traffic"))
    frame = breast_cancer_frame().drop(columns="target")
    rows = [{k: float(v) for k, v in frame.iloc[i].items()} for i in rng.sample(range(len(frame)), 60)]
    requests = [{"name": f"single_{i}", "method": "POST", "path": "/predict", "json": {"features": rows[i]}}
                for i in range(9)]
    start = 9
    for size in (4, 11, 30):
        requests.append({"name": f"batch_{size}", "method": "POST", "path": "/predict_batch",
                         "json": {"rows": rows[start:start + size]}})
        start += size
    for name, _, path, body, _ in bad_inputs(rows[0]):
        requests.append({"name": f"bad_{name}", "method": "POST", "path": path, "json": body})
    requests.append({"name": "metadata", "method": "GET", "path": "/metadata"})  # not a counted route
    for kind in ("single_0", "batch_4", "bad_missing", "bad_empty_batch"):  # the warm-up: one of each series
        next(r for r in requests if r["name"] == kind)["phase"] = 1
    return requests


def reference_recorded(slo: dict) -> dict:
    """The grader's own expression for each recording rule, computed from the SLO."""
    from mlops_kit.monitoring import LATENCY, REQUESTS

    threshold, quantile = threshold_seconds(slo), slo["latency"]["percentile"] / 100
    total = f"sum(rate({REQUESTS}[5m]))"
    return {
        "cancer:requests:rate5m": f"sum by (route, status) (rate({REQUESTS}[5m]))",
        "cancer:error_ratio:rate5m": f'(sum(rate({REQUESTS}{{status=~"5.."}}[5m])) or vector(0)) / {total}',
        "cancer:latency_slow_ratio:rate5m":
            f'1 - sum(rate({LATENCY}_bucket{{le="{threshold}"}}[5m])) / sum(rate({LATENCY}_count[5m]))',
        "cancer:latency_quantile:5m": f"histogram_quantile({quantile}, sum by (le) (rate({LATENCY}_bucket[5m])))",
    }


def live(ctx) -> dict:
    """The learner's service and a real Prometheus scraping it, once per submission."""
    import numpy as np

    from grader.checks.lab07 import service_command
    from mlops_kit.monitoring import REQUESTS, ROUTES
    from mlops_kit.serving import LOADER_DIED

    if not ctx.exists(ctx.output(SERVICE)):
        raise Fail(f"{SERVICE} was not written{ctx.why_missing()}")
    sent = traffic()
    try:
        recorded = reference_recorded(slo_of(ctx))
    except (Fail, KeyError, TypeError, ZeroDivisionError):
        recorded = {}
    rules = ctx.output(RULES) if ctx.exists(ctx.output(RULES)) else None
    plan = {"service": {"command": service_command(f"service:{'CancerClassifier'}", "."),
                        "cwd": ctx.params.get("output_dir", "outputs"),
                        "env": {"BENTOML_DO_NOT_TRACK": "true", "MLFLOW_DISABLE_TELEMETRY": "true",
                                "REGISTRY_DIR": "{work}/" + str(ctx.params.get("registry_dir", "registry")),
                                "TRACES_FILE": "{home}/traces.jsonl"},
                        "port": 8080, "health": "/readyz", "ready_seconds": 60, "stop_grace": 8,
                        "not_needed": ["torch"], "give_up_on": [LOADER_DIED]},
            "traffic": sent, "metrics_path": "/metrics", "rules": rules, "job": JOB, "counter": REQUESTS,
            "expect_total": sum(1 for r in sent if r["path"] in ROUTES), "recorded": recorded,
            "expect_warmup": sum(1 for r in sent if r["path"] in ROUTES and r.get("phase") == 1),
            "queries": {"requests": f"sum by (route, status) ({REQUESTS})"}, "traces": "traces.jsonl",
            "settle_seconds": 20}
    return ctx.probe("monitor_probe", {"plan": np.array(json.dumps(plan, sort_keys=True))}, limits=LIVE_LIMITS)


def running(ctx) -> dict:
    result = live(ctx)
    if not result.get("ready"):
        raise Fail("skipped: the service never became ready")
    return result


def scraped(ctx) -> dict:
    """The metric families on the service's /metrics after the traffic."""
    from mlops_kit.monitoring import families

    text = running(ctx).get("metrics_text")
    if text is None:
        raise Fail("GET /metrics did not answer 200 with Prometheus' text format")
    try:
        return families(text)
    except Exception as err:  # noqa: BLE001 - the learner's exposition
        raise Fail(f"/metrics is not Prometheus' text format: {err}") from None


def answered(ctx) -> list[tuple[dict, dict]]:
    """(request, response) for every request the grader sent to a counted route and that got an HTTP status."""
    from mlops_kit.monitoring import ROUTES

    responses = running(ctx).get("responses", {})
    return [(r, responses[r["name"]]) for r in traffic()
            if r["path"] in ROUTES and "status" in responses.get(r["name"], {})]


def prometheus_facts(ctx) -> dict:
    facts = running(ctx).get("prometheus") or {}
    if str(facts.get("error", "")).startswith("skipped"):
        raise Fail(facts["error"])
    return facts


def emitted_names(ctx) -> set[str]:
    """Every sample name the service exposes, and every series the learner's rules record."""
    from mlops_kit.monitoring import rules_by_name

    names = {name for family in scraped(ctx).values() for name, _, _ in family["samples"]}
    try:
        names |= {name for name, rule in rules_by_name(rules_document(ctx)).items() if "record" in rule}
    except Fail:
        pass
    return names | BUILTIN_SERIES


# --- checks -------------------------------------------------------------------------------------------------


@CHECKS.add(points=1, hint=f"write output_dir/{SERVICE}: your week-7 service (class CancerClassifier) with the "
            "metrics and the middleware", section="11.3 Instrumenting the BentoML service")
def service_defined(ctx):
    """output_dir/service.py defines the BentoML service class CancerClassifier."""
    import ast

    relative = ctx.output(SERVICE)
    if not ctx.exists(relative):
        raise Fail(f"{SERVICE} was not written{ctx.why_missing()}")
    try:
        tree = ast.parse(ctx.read_text(relative))
    except SyntaxError as err:
        raise Fail(f"{SERVICE} is not valid Python: line {err.lineno}: {err.msg}") from None
    if "CancerClassifier" not in {node.name for node in tree.body if isinstance(node, ast.ClassDef)}:
        raise Fail(f"{SERVICE} defines no class CancerClassifier")


@CHECKS.add(points=2, hint="global scrape_interval/evaluation_interval, rule_files: [rules.yml], a job cancer-service "
            "with targets [\"127.0.0.1:3000\"]; run promtool check config in the notebook",
            section="11.5 Prometheus: scraping and storing")
def scrape_config(ctx):
    """prometheus.yml passes `promtool check config` and scrapes the service's /metrics as job cancer-service,
    with rules.yml as its rule file."""
    config = yaml_output(ctx, SCRAPE)
    problems = []
    run = static_run(ctx, "config")
    if run["exit"] != 0:
        problems.append(f"promtool check config refuses it: {promtool_said(run['output'])}")
    jobs = [job for job in config.get("scrape_configs") or [] if isinstance(job, dict)]
    job = next((j for j in jobs if j.get("job_name") == JOB), None)
    if job is None:
        problems.append(f"no scrape job named {JOB} (found {[j.get('job_name') for j in jobs]})")
    else:
        targets = [t for group in job.get("static_configs") or [] if isinstance(group, dict)
                   for t in group.get("targets") or []]
        if not any(t in TARGETS for t in targets):
            problems.append(f"job {JOB} scrapes {targets}, not 127.0.0.1:3000 where bentoml serve listens")
        if job.get("metrics_path", "/metrics") != "/metrics":
            problems.append(f"job {JOB} reads {job.get('metrics_path')}, not /metrics")
    rule_files = [str(f) for f in config.get("rule_files") or []]
    if RULES not in rule_files and f"./{RULES}" not in rule_files:
        problems.append(f"rule_files is {rule_files}: it must name {RULES}")
    if problems:
        raise Fail("; ".join(problems))


@CHECKS.add(points=2, hint="two groups: recording_rules(slo) and alert_rules(slo), named as RECORDED and ALERTS; "
            "promtool check rules prints what it refuses", section="11.6 Recording rules")
def rules_valid(ctx):
    """rules.yml passes `promtool check rules` and records every series of RECORDED and defines every alert of
    ALERTS."""
    from mlops_kit.monitoring import ALERTS, RECORDED, rules_by_name

    rules = rules_by_name(rules_document(ctx))
    problems = []
    run = static_run(ctx, "rules")
    if run["exit"] != 0:
        problems.append(f"promtool check rules refuses it: {promtool_said(run['output'])}")
    missing = [name for name in list(RECORDED) + list(ALERTS) if name not in rules]
    if missing:
        problems.append(f"missing: {', '.join(missing)}")
    kinds = [name for name in RECORDED if name in rules and "record" not in rules[name]]
    kinds += [name for name in ALERTS if name in rules and "alert" not in rules[name]]
    if kinds:
        problems.append(f"{', '.join(kinds)} must be a {'recording rule' if kinds[0] in RECORDED else 'alert'}")
    if problems:
        raise Fail("; ".join(problems))


@CHECKS.add(points=2, hint="`for:` 2m on both burn alerts and 15m on drift; labels: {severity: ...} as ALERTS says; "
            "annotations: {summary: ...}", section="11.7 Alerts that mean something: burn rates",
            depends=("rules_valid",))
def alerts_well_formed(ctx):
    """Each alert waits as long as the lab says, carries the severity ALERTS gives it and a summary."""
    from mlops_kit.monitoring import ALERTS, rules_by_name

    rules = rules_by_name(rules_document(ctx))
    problems = []
    for name, severity in ALERTS.items():
        rule = rules[name]
        if str(rule.get("for", "0s")) != FOR[name]:
            problems.append(f"{name} waits for: {rule.get('for', '(nothing)')}, expected {FOR[name]}")
        labels = rule.get("labels") or {}
        if labels.get("severity") != severity:
            problems.append(f"{name} has severity {labels.get('severity')!r}, expected {severity!r}")
        summary = (rule.get("annotations") or {}).get("summary")
        if not isinstance(summary, str) or len(summary.strip()) < 10:
            problems.append(f"{name} has no summary annotation a person woken at night could act on")
    if problems:
        raise Fail("; ".join(problems))


@CHECKS.add(points=2, hint="compute le from slo['latency']['threshold_ms'] / 1000 and the quantile from "
            "slo['latency']['percentile'] / 100, never type them in", section="11.6 Recording rules",
            depends=("rules_valid",))
def rules_from_slo(ctx):
    """The latency rules use the graded SLO's threshold bucket and percentile (the grader's SLO differs from the
    notebook's)."""
    import promql_parser

    from mlops_kit.monitoring import LATENCY, parse_promql, rules_by_name, selectors

    slo = slo_of(ctx)
    rules = rules_by_name(rules_document(ctx))
    problems = []
    slow = str(rules["cancer:latency_slow_ratio:rate5m"].get("expr", ""))
    edges = {labels.get("le", ("", None))[1] for name, labels in selectors(slow) if name == f"{LATENCY}_bucket"}
    if str(threshold_seconds(slo)) not in edges:
        problems.append(f"cancer:latency_slow_ratio:rate5m reads the bucket(s) le={sorted(map(str, edges))}, but the "
                        f"SLO's threshold is {slo['latency']['threshold_ms']} ms: le=\"{threshold_seconds(slo)}\"")
    quantiles = []

    def visit(node) -> None:
        if isinstance(node, promql_parser.Call) and node.func.name == "histogram_quantile":
            first = node.args[0]
            quantiles.append(first.val if isinstance(first, promql_parser.NumberLiteral) else str(first))

    promql_parser.walk(parse_promql(str(rules["cancer:latency_quantile:5m"].get("expr", ""))), visit)
    wanted = slo["latency"]["percentile"] / 100
    if not any(isinstance(q, float) and math.isclose(q, wanted, abs_tol=1e-9) for q in quantiles):
        problems.append(f"cancer:latency_quantile:5m estimates the quantile(s) {quantiles or 'none'}, but the SLO's "
                        f"percentile is {slo['latency']['percentile']}: {wanted}")
    if problems:
        raise Fail("; ".join(problems) + " — derive them from slo")


def _alert_cases(tests: dict, alert: str) -> tuple[bool, bool]:
    fires = silent = False
    for test in tests.get("tests") or []:
        for case in (test or {}).get("alert_rule_test") or []:
            if isinstance(case, dict) and case.get("alertname") == alert:
                if case.get("exp_alerts"):
                    fires = True
                else:
                    silent = True
    return fires, silent


@CHECKS.add(points=3, hint="rule_tests(slo): for each burn alert one case that fires (exp_alerts with its labels) "
            "and one that stays silent (exp_alerts: []), and a promql_expr_test of a recorded series",
            section="11.8 Unit-testing rules with promtool", depends=("rules_valid",))
def learner_rule_tests(ctx):
    """Your rule tests pass with `promtool test rules` on the graded SLO, and test both burn alerts firing and
    staying silent, and a recorded series' value."""
    from mlops_kit.monitoring import RECORDED

    tests = yaml_output(ctx, TESTS)
    problems = []
    for alert in ("CancerErrorBudgetBurn", "CancerLatencyBudgetBurn"):
        fires, silent = _alert_cases(tests, alert)
        if not fires:
            problems.append(f"no case in which {alert} fires")
        if not silent:
            problems.append(f"no case in which {alert} stays silent")
    exprs = [str(case.get("expr", "")) for test in tests.get("tests") or [] if isinstance(test, dict)
             for case in test.get("promql_expr_test") or [] if isinstance(case, dict)]
    if not any(name in expr for expr in exprs for name in RECORDED):
        problems.append("no promql_expr_test reads a recorded series")
    run = static_run(ctx, "tests")
    if run["exit"] != 0:
        problems.insert(0, f"promtool test rules fails: {promtool_said(run['output'], 8)}")
    if problems:
        raise Fail("; ".join(problems))


# --- the grader's hidden rule tests ---------------------------------------------------------------------------


def _counter_series(ratio: float, per_minute: float = 600.0, minutes: int = 40) -> list[dict]:
    from mlops_kit.monitoring import REQUESTS

    series = [{"series": f'{REQUESTS}{{route="/predict",status="200"}}',
               "values": f"0+{per_minute * (1 - ratio):.6f}x{minutes}"},
              {"series": f'{REQUESTS}{{route="/predict",status="400"}}', "values": f"0+3x{minutes}"}]
    if ratio > 0:
        series.append({"series": f'{REQUESTS}{{route="/predict_batch",status="503"}}',
                       "values": f"0+{per_minute * ratio:.6f}x{minutes}"})
    return series


def _latency_series(slow: float, threshold: float, per_minute: float = 600.0, minutes: int = 40) -> list[dict]:
    """Fast requests in the first bucket, slow ones just above the threshold: only le=threshold tells them apart."""
    from mlops_kit.monitoring import LATENCY, LATENCY_BUCKETS

    series = []
    for edge in list(LATENCY_BUCKETS) + ["+Inf"]:
        count = per_minute if edge == "+Inf" or edge > threshold else per_minute * (1 - slow)
        series.append({"series": f'{LATENCY}_bucket{{route="/predict",le="{edge}"}}',
                       "values": f"0+{count:.6f}x{minutes}"})
    series.append({"series": f'{LATENCY}_count{{route="/predict"}}', "values": f"0+{per_minute}x{minutes}"})
    series.append({"series": f'{LATENCY}_sum{{route="/predict"}}', "values": f"0+{per_minute * 0.01}x{minutes}"})
    return series


def _expect(expr: str, at: str, value: float) -> dict:
    return {"expr": expr, "eval_time": at, "exp_samples": [{"labels": "{}", "value": value}]}


def _firing(alert: str, at: str, fires: bool) -> dict:
    return _expect(f'count(ALERTS{{alertname="{alert}",alertstate="firing"}}) or vector(0)', at, 1 if fires else 0)


def _equals(record: str, value: str, at: str) -> dict:
    return _expect(f"count(abs({record} - scalar({value})) < 1e-9) or vector(0)", at, 1)


def hidden_tests(slo: dict) -> dict[str, dict]:
    """The grader's promtool tests, one file per hidden check, computed from the graded SLO."""
    from mlops_kit.monitoring import DRIFT, FAST_BURN

    error_burn = FAST_BURN * slo["error_rate"]["max_ratio"]
    slow_burn = FAST_BURN * (1 - slo["latency"]["percentile"] / 100)
    threshold = threshold_seconds(slo)
    reference = reference_recorded(slo)

    def test(series: list, cases: list) -> dict:
        return {"interval": "1m", "input_series": series, "promql_expr_test": cases}

    errors = [
        test(_counter_series(min(0.95, 1.25 * error_burn)),
             [_firing("CancerErrorBudgetBurn", "25m", True),
              _equals("cancer:error_ratio:rate5m", reference["cancer:error_ratio:rate5m"], "25m")]),
        test(_counter_series(0.8 * error_burn), [_firing("CancerErrorBudgetBurn", "25m", False)]),
        test(_counter_series(0.0), [_firing("CancerErrorBudgetBurn", "25m", False),
                                    _expect("count(cancer:error_ratio:rate5m == 0) or vector(0)", "25m", 1)]),
    ]
    latency = [
        test(_latency_series(min(0.95, 1.25 * slow_burn), threshold),
             [_firing("CancerLatencyBudgetBurn", "25m", True),
              _equals("cancer:latency_slow_ratio:rate5m", reference["cancer:latency_slow_ratio:rate5m"], "25m"),
              _equals("cancer:latency_quantile:5m", reference["cancer:latency_quantile:5m"], "25m")]),
        test(_latency_series(0.8 * slow_burn, threshold), [_firing("CancerLatencyBudgetBurn", "25m", False)]),
    ]
    drift = [
        test([{"series": DRIFT, "values": "0x5 1x40"}], [_firing("CancerDriftDetected", "25m", True)]),
        test([{"series": DRIFT, "values": "0x5 1x5 0x30"}], [_firing("CancerDriftDetected", "9m", False),
                                                              _firing("CancerDriftDetected", "25m", False)]),
        test([{"series": DRIFT, "values": "0x40"}], [_firing("CancerDriftDetected", "25m", False)]),
    ]
    return {name: {"rule_files": [RULES], "evaluation_interval": "1m", "tests": tests}
            for name, tests in (("errors", errors), ("latency", latency), ("drift", drift))}


def hidden_run(ctx, name: str) -> dict:
    import yaml

    slo = slo_of(ctx)
    files = {f"hidden_{key}.yml": yaml.safe_dump(doc, sort_keys=False) for key, doc in hidden_tests(slo).items()}
    runs = [{"name": key, "args": ["test", "rules", f"hidden_{key}.yml"]} for key in hidden_tests(slo)]
    result = promtool_runs(ctx, runs, texts=files, secret=True)
    return result["runs"].get(name, {"exit": None, "output": "it did not run"})


def _hidden_verdict(ctx, name: str, what: str) -> None:
    run = hidden_run(ctx, name)
    if run["exit"] != 0:
        failed = [line.strip() for line in run["output"].splitlines() if line.strip().startswith(("expr:", "exp:",
                                                                                                   "got:"))]
        raise Fail(f"{what}: " + (" | ".join(failed[:6]) or promtool_said(run["output"])))


@CHECKS.add(points=3, hint="the expr compares cancer:error_ratio:rate5m with FAST_BURN times error_rate.max_ratio "
            "from slo; `or vector(0)` keeps the ratio at 0 when nothing failed",
            section="11.7 Alerts that mean something: burn rates", visible=False, depends=("rules_valid",))
def hidden_error_burn(ctx):
    """Hidden promtool tests: CancerErrorBudgetBurn fires on an error burst a quarter above the fast-burn threshold,
    stays silent a fifth below it and on traffic without errors; the error ratio is exact and 0 without errors."""
    _hidden_verdict(ctx, "errors", "the grader's error-burn tests fail")


@CHECKS.add(points=3, hint="the slow ratio reads the bucket le = the SLO's threshold; the alert compares it with "
            "FAST_BURN * (1 - percentile / 100)", section="11.7 Alerts that mean something: burn rates",
            visible=False, depends=("rules_valid",))
def hidden_latency_burn(ctx):
    """Hidden promtool tests: CancerLatencyBudgetBurn fires when slow answers burn the latency budget a quarter above
    the fast-burn threshold and stays silent a fifth below; the slow ratio and the quantile are exact."""
    _hidden_verdict(ctx, "latency", "the grader's latency-burn tests fail")


@CHECKS.add(points=1, hint="max(cancer_drift_detected) == 1 with for: 15m", section="11.7 Alerts that mean something: "
            "burn rates", visible=False, depends=("rules_valid",))
def hidden_drift_alert(ctx):
    """Hidden promtool tests: CancerDriftDetected fires after the drift flag has been up for 15 minutes, not after 5,
    and never while it is down."""
    _hidden_verdict(ctx, "drift", "the grader's drift-alert tests fail")


@CHECKS.add(points=2, hint="dashboard_problems(dashboard()) must be empty; add a panel per metric of METRICS",
            section="11.9 A dashboard as code")
def dashboard_valid(ctx):
    """dashboard.json is a sound Grafana dashboard model and some panel reads every metric of METRICS (directly or
    through a recording rule)."""
    from mlops_kit.monitoring import METRICS, dashboard_expressions, dashboard_problems, metric_names, rules_by_name

    board = dashboard_document(ctx)
    problems = dashboard_problems(board)
    if problems:
        raise Fail("; ".join(problems[:6]))
    try:
        recorded = {name: str(rule.get("expr", "")) for name, rule in rules_by_name(rules_document(ctx)).items()
                    if "record" in rule}
    except Fail:
        recorded = {}
    read = set()
    for _, expr in dashboard_expressions(board):
        for name in metric_names(expr):
            read.add(name)
            if name in recorded:
                try:
                    read |= metric_names(recorded[name])
                except ValueError:
                    pass
    unread = [m for m in METRICS if not any(n == m or n.startswith(m.removesuffix("_total") + "_") for n in read)]
    if unread:
        raise Fail(f"no panel shows {', '.join(unread)}")


@CHECKS.add(points=1, hint="run the self-check: it starts the service as the grader does and shows its log",
            section="11.3 Instrumenting the BentoML service", depends=("service_defined",))
def service_ready(ctx):
    """The instrumented service starts with `bentoml serve` and answers /readyz."""
    result = live(ctx)
    if not result.get("ready"):
        raise Fail(f"the service never became ready: {result.get('startup')}; its log: "
                   f"{log_tail(result.get('stderr_tail', ''), 8)}")


@CHECKS.add(points=3, hint="names, types and labels exactly as METRICS; buckets LATENCY_BUCKETS and "
            "PROBABILITY_BUCKETS; Gauge(..., multiprocess_mode='max') under BentoML",
            section="11.2 Metric types and labels", depends=("service_ready",))
def metrics_contract(ctx):
    """/metrics exposes every metric of METRICS with its type, its labels and its buckets."""
    from mlops_kit.monitoring import contract_problems

    problems = contract_problems(scraped(ctx))
    if problems:
        raise Fail("; ".join(problems))


@CHECKS.add(points=4, hint="count in an ASGI middleware, after the response started: BentoML answers invalid input "
            "before your method runs; count only the routes in ROUTES",
            section="11.3 Instrumenting the BentoML service", depends=("service_ready",))
def requests_counted(ctx):
    """After known traffic, Prometheus holds exactly the requests sent to each route with each status — invalid ones
    included, health checks and /metrics not."""
    from mlops_kit.monitoring import ROUTES

    expected: dict = {}
    for request, response in answered(ctx):
        key = (request["path"], str(response["status"]))
        expected[key] = expected.get(key, 0) + 1
    facts = prometheus_facts(ctx)
    if facts.get("error"):
        raise Fail(f"Prometheus could not scrape the service: {facts['error']}")
    rows = (facts.get("queries", {}).get("requests") or {}).get("result")
    if rows is None:
        raise Fail(f"Prometheus answered no {('cancer_requests_total')} at all")
    seen = {(labels.get("route"), labels.get("status")): value for labels, value in rows}
    problems = []
    for key in sorted(set(expected) | set(seen), key=str):
        want, got = expected.get(key, 0), seen.get(key, 0)
        if not math.isclose(want, got):
            route, status = key
            where = f"route={route}, status={status}"
            if route not in ROUTES:
                problems.append(f"{where}: {got:g} counted, but only {', '.join(ROUTES)} are counted")
            else:
                problems.append(f"{where}: {got:g} counted, {want} sent")
    if problems:
        raise Fail("; ".join(problems[:8]))


@CHECKS.add(points=2, hint="observe time.perf_counter() differences in the middleware, with buckets=LATENCY_BUCKETS",
            section="11.2 Metric types and labels", depends=("service_ready",))
def latency_histogram(ctx):
    """Each route's latency histogram counted every request sent to it, its buckets are cumulative and its sum is no
    more than the time the grader's client waited."""
    from mlops_kit.monitoring import LATENCY, ROUTES

    found = scraped(ctx)
    samples = (found.get(LATENCY) or {}).get("samples", [])
    if not samples:
        raise Fail(f"{LATENCY} is not exposed")
    problems = []
    pairs = answered(ctx)
    for route in ROUTES:
        sent = [response for request, response in pairs if request["path"] == route]
        buckets = sorted((float(labels["le"]), value) for name, labels, value in samples
                         if name == f"{LATENCY}_bucket" and labels.get("route") == route)
        count = next((v for n, labels, v in samples if n == f"{LATENCY}_count" and labels.get("route") == route), 0)
        total = next((v for n, labels, v in samples if n == f"{LATENCY}_sum" and labels.get("route") == route), 0)
        waited = sum(response["seconds"] for response in sent)
        if count != len(sent):
            problems.append(f"{route}: {count:g} observations, {len(sent)} requests sent")
        if any(later < earlier for (_, earlier), (_, later) in zip(buckets, buckets[1:], strict=False)):
            problems.append(f"{route}: bucket counts decrease with le: they must be cumulative")
        if buckets and buckets[-1][1] != count:
            problems.append(f"{route}: the +Inf bucket holds {buckets[-1][1]:g}, the count {count:g}")
        if sent and not 0 < total <= waited + 0.01 * len(sent):
            problems.append(f"{route}: the latencies sum to {total:.4f} s, but the client waited {waited:.4f} s in all "
                            "(observe seconds, from request to response)")
    if problems:
        raise Fail("; ".join(problems))


@CHECKS.add(points=3, hint="observe each probability you answer, batch rows included, never invalid requests",
            section="11.2 Metric types and labels", depends=("service_ready",))
def predictions_observed(ctx):
    """The prediction histogram holds exactly the probabilities the service answered: its count and every bucket."""
    from mlops_kit.monitoring import PREDICTIONS, PROBABILITY_BUCKETS

    answered_probabilities = []
    for _, response in answered(ctx):
        body = response.get("json") if response.get("status") == 200 else None
        if isinstance(body, dict):
            if "probability" in body:
                answered_probabilities.append(float(body["probability"]))
            answered_probabilities.extend(float(p) for p in body.get("probabilities") or [])
    samples = (scraped(ctx).get(PREDICTIONS) or {}).get("samples", [])
    if not samples:
        raise Fail(f"{PREDICTIONS} is not exposed")
    count = next((v for n, _, v in samples if n == f"{PREDICTIONS}_count"), 0)
    problems = []
    if count != len(answered_probabilities):
        problems.append(f"{count:g} probabilities observed, {len(answered_probabilities)} answered (each row of a batch "
                        "is one)")
    else:
        for edge in PROBABILITY_BUCKETS:
            want = sum(p <= edge + 1e-12 for p in answered_probabilities)
            got = next((v for n, labels, v in samples if n == f"{PREDICTIONS}_bucket" and
                        math.isclose(float(labels.get("le", "nan")), edge)), None)
            if got != want:
                problems.append(f"bucket le={edge} holds {got}, but {want} answered probabilities are ≤ {edge}")
                break
    if problems:
        raise Fail("; ".join(problems))


@CHECKS.add(points=2, hint="set MODEL_INFO's child with the loaded champion's model_name, model_version and git_sha "
            "to 1 once it is loaded; DRIFT starts at 0", section="11.2 Metric types and labels",
            depends=("service_ready",))
def model_info(ctx):
    """cancer_model_info is 1 for the graded registry's champion (its name, version and git SHA), and the drift flag
    is down."""
    from grader.checks.lab07 import MODEL_NAME, registry_facts
    from mlops_kit.monitoring import DRIFT, MODEL_INFO

    facts = registry_facts(ctx)  # the registry the service was given (the graded one, or the learner's own)
    want = {"model_name": MODEL_NAME, "model_version": facts["version"], "git_sha": facts["git_sha"]}
    samples = [(labels, value) for family in scraped(ctx).values() for name, labels, value in family["samples"]
               if name == MODEL_INFO]
    problems = []
    if not any(labels == want and value == 1 for labels, value in samples):
        said = [f"{labels} = {value:g}" for labels, value in samples] or ["no sample"]
        problems.append(f"{MODEL_INFO}: {'; '.join(said)[:400]}, expected {want} = 1 (the champion the registry names)")
    drift = [value for family in scraped(ctx).values() for name, _, value in family["samples"] if name == DRIFT]
    if drift != [0]:
        problems.append(f"{DRIFT} is {drift or 'not exposed'}, expected one sample at 0 until week 12 sets it")
    if problems:
        raise Fail("; ".join(problems))


def _same(learner: list, reference: list) -> bool:
    def keyed(rows):  # values come back as numbers, or as strings for NaN and infinities
        return {json.dumps({k: v for k, v in labels.items() if k != "__name__"}, sort_keys=True): float(value)
                for labels, value in rows}

    mine, theirs = keyed(learner), keyed(reference)
    if set(mine) != set(theirs):
        return False
    return all((math.isnan(mine[k]) and math.isnan(theirs[k])) or math.isclose(mine[k], theirs[k], rel_tol=1e-9,
                                                                                abs_tol=1e-12) for k in mine)


@CHECKS.add(points=3, hint="compare your rules with lesson 11.6; a ratio with nothing failed must be 0 (`or "
            "vector(0)`), not absent", section="11.6 Recording rules", depends=("service_ready",))
def recording_rules_live(ctx):
    """In the real Prometheus, each recorded series equals the grader's own expression evaluated at the recorded
    sample's timestamp (at one of its evaluations after the traffic: under load a scrape may land after a rule
    ran, and the rule is not to blame)."""
    facts = prometheus_facts(ctx)
    if not facts.get("rules_loaded"):
        raise Fail(f"Prometheus could not load {RULES}: {facts.get('rules_error') or 'it was not written'}")
    problems = []
    for name, seen in (facts.get("recorded") or {}).items():
        learner, reference = seen.get("learner", {}), seen.get("reference", {})
        if "error" in learner or "error" in reference:
            problems.append(f"{name}: {learner.get('error') or reference.get('error')}")
        elif not learner.get("result") and not reference.get("result"):
            continue  # the traffic gives this series no value (a bucket edge missing is metrics_contract's)
        elif not learner.get("result"):
            problems.append(f"{name} recorded nothing after the traffic (the grader's expression gives "
                            f"{_shown(reference.get('result'))})")
        elif not any((other.get("learner") or {}).get("result")
                     and _same(other["learner"]["result"], (other.get("reference") or {}).get("result") or [])
                     for other in [seen, *(seen.get("others") or [])]):  # any evaluation after the traffic
            problems.append(f"{name} recorded {_shown(learner['result'])}; expected {_shown(reference.get('result'))}")
    if not facts.get("recorded"):
        problems.append("nothing was compared: " + str(facts.get("error") or "no recorded series"))
    if problems:
        raise Fail("; ".join(problems))


def _shown(rows) -> str:
    if not rows:
        return "nothing"
    return ", ".join(f"{ {k: v for k, v in labels.items() if k != '__name__'} or ''} {float(value):.4g}".strip()
                     for labels, value in rows[:4]) + (" …" if len(rows) > 4 else "")


@CHECKS.add(points=2, hint="every metric name in a rule or a panel must be one /metrics shows (counters end in "
            "_total, histograms read _bucket, _count or _sum) or one your rules record",
            section="11.9 A dashboard as code", depends=("service_ready",))
def queries_read_real_metrics(ctx):
    """Every expression in rules.yml and dashboard.json parses as PromQL and reads only series the service emits or
    the rules record."""
    from mlops_kit.monitoring import dashboard_expressions, metric_names, rule_expressions

    names = emitted_names(ctx)
    expressions = []
    for loader, describe in ((lambda: rule_expressions(rules_document(ctx)), "rule"),
                             (lambda: dashboard_expressions(dashboard_document(ctx)), "panel")):
        try:
            expressions += [(f"{describe} {where!r}", expr) for where, expr in loader()]
        except Fail as failure:
            raise Fail(f"skipped: {failure}") from None
    problems = []
    for where, expr in expressions:
        try:
            unknown = sorted(metric_names(expr) - names)
        except ValueError as err:
            problems.append(f"{where}: {err}")
            continue
        if unknown:
            problems.append(f"{where} reads {', '.join(unknown)}, which nothing emits")
    if problems:
        raise Fail("; ".join(problems[:6]))


@CHECKS.add(points=3, hint="tracer(os.environ.get('TRACES_FILE', 'traces.jsonl')) from mlops_kit.monitoring; set "
            "http.route, http.response.status_code and model.version on the span in the middleware",
            section="11.4 Traces with OpenTelemetry", depends=("service_ready",))
def traces(ctx):
    """The trace file holds one span per counted request, with its route, its status and, on a 200, the model
    version."""
    from grader.checks.lab07 import registry_facts

    result = running(ctx)
    if result.get("spans_error"):
        raise Fail(result["spans_error"])
    spans = [s for s in result.get("spans", []) if isinstance(s.get("attributes"), dict)]
    expected: dict = {}
    for request, response in answered(ctx):
        key = (request["path"], int(response["status"]))
        expected[key] = expected.get(key, 0) + 1
    seen: dict = {}
    problems = []
    version = registry_facts(ctx)["version"]
    for span in spans:
        attributes = span["attributes"]
        try:
            key = (attributes.get("http.route"), int(attributes.get("http.response.status_code")))
        except (TypeError, ValueError):
            key = (attributes.get("http.route"), None)
        seen[key] = seen.get(key, 0) + 1
        if key[1] == 200 and str(attributes.get("model.version")) != version and "version" not in problems:
            problems.append(f"a 200 span's model.version is {attributes.get('model.version')!r}, expected {version!r}")
            problems.append("version")
        context = span.get("context") or {}
        if not all(isinstance(context.get(k), str) and len(context[k].removeprefix("0x")) == n
                   for k, n in (("trace_id", 32), ("span_id", 16))) and "ids" not in problems:
            problems.append("a span has no context.trace_id/span_id (write span.to_json(), one per line)")
            problems.append("ids")
    problems = [p for p in problems if p not in ("version", "ids")]
    for key in sorted(set(expected) | set(seen), key=str):
        if expected.get(key, 0) != seen.get(key, 0):
            route, status = key
            problems.append(f"{seen.get(key, 0)} span(s) for {route} with status {status}, {expected.get(key, 0)} "
                            "request(s) sent")
    if not spans:
        problems = [f"the trace file holds no span with attributes ({len(result.get('spans', []))} lines read)"]
    if problems:
        raise Fail("; ".join(problems[:6]))
