"""Lab 11's machinery: the metric contract, PromQL read with a real parser, the dashboard's structure, a real
Prometheus started and stopped, the hidden promtool tests against the reference and typed-in rules for SLOs the
grader can draw, and the monitoring probe leaving nothing running when the service never gets ready."""

from __future__ import annotations

import itertools
import json
import sys
import time
from argparse import Namespace
from pathlib import Path

import numpy as np
import psutil
import pytest
import yaml
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from grader.checks import lab11
from mlops_kit import monitoring
from mlops_kit.cicd import slo_problems
from mlops_kit.serving import free_port

TOOLS = Path(__file__).resolve().parent.parent / "grader" / "tools"
needs_prometheus = pytest.mark.skipif(monitoring.binary("prometheus") is None or monitoring.binary("promtool") is None,
                                      reason="prometheus is not installed here (make monitoring installs it)")


def exposition(**overrides) -> str:
    """The contract's metrics in a private registry, one of them replaced by `overrides`, as /metrics shows them."""
    registry = CollectorRegistry()
    made = {
        monitoring.REQUESTS: lambda: Counter(monitoring.REQUESTS, "r", ["route", "status"], registry=registry),
        monitoring.LATENCY: lambda: Histogram(monitoring.LATENCY, "l", ["route"], buckets=monitoring.LATENCY_BUCKETS,
                                              registry=registry),
        monitoring.PREDICTIONS: lambda: Histogram(monitoring.PREDICTIONS, "p", buckets=monitoring.PROBABILITY_BUCKETS,
                                                  registry=registry),
        monitoring.MODEL_INFO: lambda: Gauge(monitoring.MODEL_INFO, "i", ["model_name", "model_version", "git_sha"],
                                             registry=registry),
        monitoring.DRIFT: lambda: Gauge(monitoring.DRIFT, "d", registry=registry),
    }
    metrics = {name: overrides[name](registry) if name in overrides else make() for name, make in made.items()}
    for name, metric in metrics.items():
        if name == monitoring.REQUESTS and metric._labelnames == ("route", "status"):
            metric.labels("/predict", "200").inc(3)
        elif name == monitoring.LATENCY and metric._labelnames == ("route",):
            metric.labels("/predict").observe(0.02)
        elif name == monitoring.MODEL_INFO and len(metric._labelnames) == 3:
            metric.labels("breast-cancer-classifier", "2", "0" * 40).set(1)
    return generate_latest(registry).decode()


def _set(gauge, *labels):
    gauge.labels(*labels).set(1)
    return gauge


def test_the_contract_holds_for_exactly_the_metrics_it_names():
    assert monitoring.contract_problems(monitoring.families(exposition())) == []


@pytest.mark.parametrize("name,make,said", [
    (monitoring.REQUESTS, lambda r: Gauge(monitoring.REQUESTS, "r", ["route", "status"], registry=r),
     "is a gauge, not a counter"),
    (monitoring.LATENCY, lambda r: Histogram(monitoring.LATENCY, "l", ["route"], registry=r), "has bucket edges"),
    (monitoring.MODEL_INFO, lambda r: _set(Gauge(monitoring.MODEL_INFO, "i", ["model_version"], registry=r), "2"),
     "has labels \\(model_version\\), expected \\(model_name, model_version, git_sha\\)"),
    (monitoring.DRIFT, lambda r: Counter("cancer_drift", "d", registry=r), "cancer_drift_detected is not exposed"),
])
def test_the_contract_names_what_is_wrong(name, make, said):
    import re

    problems = monitoring.contract_problems(monitoring.families(exposition(**{name: make})))
    assert any(re.search(said, problem) for problem in problems), problems


def test_a_label_too_many_is_named():
    def made(registry):
        counter = Counter(monitoring.REQUESTS, "r", ["route", "status", "pid"], registry=registry)
        counter.labels("/predict", "200", "17").inc()
        return counter

    problems = monitoring.contract_problems(monitoring.families(exposition(**{monitoring.REQUESTS: made})))
    assert problems == ["cancer_requests_total has labels (pid, route, status), expected (route, status)"]


@pytest.mark.parametrize("expr,names", [
    ('sum by (route) (rate(cancer_requests_total{status=~"5.."}[5m] offset 1m))', {"cancer_requests_total"}),
    ("histogram_quantile(0.9, sum by (le) (rate(a_bucket[5m]))) / on() group_left b", {"a_bucket", "b"}),
    ("max_over_time(c[10m:1m]) or vector(0)", {"c"}),
    ('{__name__="d", x="1"} + {__name__=~"e.*"}', {"d"}),
    ("-(f) > bool 2", {"f"}),
    ("1 + 2", set()),
])
def test_metric_names_are_read_from_the_syntax_tree(expr, names):
    assert monitoring.metric_names(expr) == names


@pytest.mark.parametrize("expr", ["rate(x[5m]", "sum by (le (x)", "x{a=}", "rate(x)"])
def test_what_is_not_promql_is_refused_with_the_reason(expr):
    with pytest.raises(ValueError, match="is not PromQL"):
        monitoring.parse_promql(expr)


def _panel(index: int, **changes) -> dict:
    panel = {"id": index, "type": "timeseries", "title": f"p{index}",
             "gridPos": {"h": 8, "w": 12, "x": 12 * (index % 2), "y": 8 * (index // 2)},
             "targets": [{"refId": "A", "expr": "up"}]}
    panel.update(changes)
    return panel


@pytest.mark.parametrize("change,said", [
    ({"panels": [_panel(0), _panel(1), _panel(2, id=1)]}, "unique"),
    ({"panels": [_panel(0), _panel(1, type="graph")]}, "not a Grafana panel type"),
    ({"panels": [_panel(0), _panel(1, gridPos={"h": 8, "w": 12, "x": 6, "y": 0})]}, "overlaps panel 'p0'"),
    ({"panels": [_panel(0, gridPos={"h": 8, "w": 30, "x": 0, "y": 0})]}, "24-column grid"),
    ({"panels": [_panel(0, targets=[{"expr": "rate(up[5m]"}])]}, "is not PromQL"),
    ({"schemaVersion": "39"}, "schemaVersion"),
    ({"uid": ""}, "`uid`"),
    ({"panels": []}, "non-empty list"),
])
def test_dashboard_problems_name_what_grafana_would_not_show(change, said):
    board = {"title": "t", "uid": "u", "schemaVersion": 39, "panels": [_panel(0), _panel(1), _panel(2)]}
    board.update(change)
    problems = monitoring.dashboard_problems(board)
    assert any(said in problem for problem in problems), problems


def test_a_sound_dashboard_has_no_problem():
    board = {"title": "t", "uid": "u", "schemaVersion": 39, "panels": [_panel(0), _panel(1), _panel(2)]}
    assert monitoring.dashboard_problems(board) == []


@needs_prometheus
def test_a_real_prometheus_scrapes_counts_and_stops():
    from prometheus_client import start_http_server

    registry = CollectorRegistry()
    counter = Counter(monitoring.REQUESTS, "r", ["route", "status"], registry=registry)
    port = free_port()
    server, thread = start_http_server(port, registry=registry)
    try:
        with monitoring.Prometheus(monitoring.scrape_config([f"127.0.0.1:{port}"], "1s"), free_port()) as prom:
            prom.wait_for('up{job="cancer-service"} == 1', 30)
            counter.labels("/predict", "200").inc(7)
            counter.labels("/predict", "400").inc(2)
            seen = prom.wait_for(f"sum({monitoring.REQUESTS})", 30, lambda r: bool(r) and r[0][1] == 9)
            assert seen == [({}, 9.0)]
            proc = prom.proc
        assert proc.poll() is not None
    finally:
        server.shutdown()


def reference_rules(slo: dict) -> dict:
    """The rules the solution's notebook writes for `slo`."""
    from grader.assign import build_lab

    nb = build_lab(json.loads(lab11.LAB.solution_path.read_text()), lab11.LAB.id, with_solutions=True)
    source = next("".join(c["source"]) for c in nb["cells"] if c.get("id") == "answer-09")
    namespace = {name: getattr(monitoring, name) for name in monitoring.__all__}
    exec(compile(source, "answer-09", "exec"), namespace)  # noqa: S102 - the repository's own solution
    return {"groups": [namespace["recording_rules"](slo), namespace["alert_rules"](slo)]}


NOTEBOOK_SLO = {"service": "cancer-service", "window_days": 28, "latency": {"percentile": 95, "threshold_ms": 300},
                "error_rate": {"max_ratio": 0.01}}


def run_hidden(tmp_path: Path, rules: dict, slo: dict) -> dict[str, int]:
    (tmp_path / lab11.RULES).write_text(yaml.safe_dump(rules, sort_keys=False))
    codes = {}
    for name, document in lab11.hidden_tests(slo).items():
        (tmp_path / f"{name}.yml").write_text(yaml.safe_dump(document, sort_keys=False))
        codes[name], _ = monitoring.promtool("test", "rules", f"{name}.yml", cwd=tmp_path)
    return codes


SLOS = [{"service": "cancer-service", "window_days": 28, "latency": {"percentile": p, "threshold_ms": t},
         "error_rate": {"max_ratio": r}}
        for p, t, r in itertools.product((97.5, 99.0, 99.5), (100, 200, 250, 500), (0.002, 0.005, 0.02))]


@needs_prometheus
@pytest.mark.parametrize("slo", SLOS[::5] + [lab11.graded_slo()], ids=lambda s: json.dumps(s["latency"]))
def test_hidden_rule_tests_pass_the_reference_and_fail_the_notebooks_slo_typed_in(tmp_path, slo):
    assert run_hidden(tmp_path, reference_rules(slo), slo) == {"errors": 0, "latency": 0, "drift": 0}
    wrong = run_hidden(tmp_path, reference_rules(NOTEBOOK_SLO), slo)  # the notebook's SLO typed in
    assert wrong["errors"] != 0 and wrong["latency"] != 0, wrong


def test_the_graded_slo_is_plausible_and_not_the_notebooks():
    slo = lab11.graded_slo()
    assert slo_problems(slo) == []
    assert slo["latency"]["threshold_ms"] != 300
    assert lab11.threshold_seconds(slo) in monitoring.LATENCY_BUCKETS
    assert monitoring.FAST_BURN * (1 - slo["latency"]["percentile"] / 100) * 1.25 < 1  # a burst can burn it


def test_the_traffic_counts_valid_batches_and_invalid_requests():
    sent = lab11.traffic()
    assert sent == lab11.traffic()
    routes = [r["path"] for r in sent]
    assert routes.count("/predict") == 9 + 4 and routes.count("/predict_batch") == 3 + 2
    assert sum(len(r["json"]["rows"]) for r in sent if r["name"].startswith("batch_")) == 45
    assert "/metadata" in routes  # sent, never counted


@needs_prometheus
def test_the_monitoring_probe_stops_prometheus_and_the_server_when_the_service_never_gets_ready(tmp_path):
    sys.path.insert(0, str(TOOLS))
    try:
        import monitor_probe
    finally:
        sys.path.remove(str(TOOLS))
    server = "import signal, time\nsignal.signal(signal.SIGTERM, signal.SIG_IGN)\ntime.sleep(600)\n"
    plan = {"service": {"command": [sys.executable, "{files}/server.py"], "files": {"server.py": server},
                        "cwd": ".", "port": free_port(),
                        "health": "/readyz", "ready_seconds": 3, "stop_grace": 1},
            "traffic": [], "rules": None, "job": lab11.JOB, "counter": monitoring.REQUESTS, "expect_total": 1,
            "traces": "traces.jsonl"}
    before = {p.pid for p in psutil.Process().children(recursive=True)}
    args = Namespace(work=str(tmp_path), out=str(tmp_path / "out"), input=str(tmp_path / "in"), label="")
    (tmp_path / "out").mkdir()
    (tmp_path / "in").mkdir()
    start = time.monotonic()
    result = monitor_probe.run(args, {"plan": np.array(json.dumps(plan))})
    assert not result["ready"] and "not ready after 3 s" in result["startup"]
    assert result["spans_error"].startswith("no trace file was written")
    left = [p for p in psutil.Process().children(recursive=True) if p.pid not in before and p.is_running()
            and p.status() != psutil.STATUS_ZOMBIE]
    assert left == [], [p.cmdline() for p in left]
    assert time.monotonic() - start < 30


@needs_prometheus
def test_the_graders_prometheus_runs_its_own_config_with_only_the_learners_rules(tmp_path):
    """Threat class 19: a learner's prometheus.yml (remote_write out, other targets, credential files) never configures
    the grader's Prometheus; rules reach it only once promtool accepts them, their own interval dropped."""
    sys.path.insert(0, str(TOOLS))
    try:
        import monitor_probe
    finally:
        sys.path.remove(str(TOOLS))
    (tmp_path / "outputs").mkdir()
    (tmp_path / "outputs" / "prometheus.yml").write_text(yaml.safe_dump({
        "remote_write": [{"url": "http://198.51.100.7/write"}],
        "scrape_configs": [{"job_name": "host", "static_configs": [{"targets": ["10.0.0.1:9100"]}],
                            "authorization": {"credentials_file": "/etc/shadow"}}]}))
    rules = {"groups": [{"name": "g", "interval": "1h", "rules": [{"record": "x:up:sum", "expr": "sum(up)"}]}]}
    (tmp_path / "outputs" / "rules.yml").write_text(yaml.safe_dump(rules))
    plan = {"rules": "outputs/rules.yml", "job": lab11.JOB}
    prometheus, facts = monitor_probe.start_prometheus(plan, tmp_path, 3000)
    try:
        assert facts == {"rules_loaded": True, "rules_error": ""}
        config = yaml.safe_load(_status_config(prometheus))
        assert "remote_write" not in config
        assert [job["job_name"] for job in config["scrape_configs"]] == [lab11.JOB]
        assert config["scrape_configs"][0]["static_configs"] == [{"targets": ["127.0.0.1:3000"]}]
        groups = yaml.safe_load((prometheus.folder / "rules.yml").read_text())["groups"]
        assert "interval" not in groups[0]
    finally:
        prometheus.stop()
    broken = {"groups": [{"name": "g", "rules": [{"record": "x", "expr": "sum(up"}]}]}
    (tmp_path / "outputs" / "rules.yml").write_text(yaml.safe_dump(broken))
    prometheus, facts = monitor_probe.start_prometheus(plan, tmp_path, 3000)
    prometheus.stop()
    assert not facts["rules_loaded"] and "parse error" in facts["rules_error"]


def _status_config(prometheus) -> str:
    deadline = time.monotonic() + 20
    while True:
        try:
            return prometheus.api("status/config")["yaml"]
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)
