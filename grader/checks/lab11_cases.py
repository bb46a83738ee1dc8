"""Wrong-answer cases of lab 11: mistakes learners make when they first instrument a service and write alerts."""

from grader.cases import Case, replace

SERVICE, SCRAPE, RULES, TESTS, BOARD = "answer-04", "answer-07", "answer-09", "answer-12", "answer-15"
LIVE = ("metrics_contract", "requests_counted", "latency_histogram", "predictions_observed", "model_info",
        "recording_rules_live", "queries_read_real_metrics", "traces")

CASES = [
    Case("counts_every_route", "counted every request the middleware saw: health checks, /metrics and /metadata too",
         edits=(replace(SERVICE, """        if route not in ROUTES:
            return await self.app(scope, receive, send)""", """        if scope["type"] != "http":
            return await self.app(scope, receive, send)"""),),
         expect={"requests_counted": "failed", "traces": "failed"},
         says={"requests_counted": r"route=/readyz, status=200: \d+ counted, but only /predict, /predict_batch are "
               r"counted",
               "traces": r"span\(s\) for /metadata"},
         fix="Count and trace only the prediction routes: /readyz is polled every few seconds by Kubernetes."),
    Case("status_before_response", "labelled every request status 200, counted before the response was known",
         edits=(replace(SERVICE, "REQUESTS_TOTAL.labels(route, str(code)).inc()",
                        'REQUESTS_TOTAL.labels(route, "200").inc()'),),
         expect={"requests_counted": "failed"},
         says={"requests_counted": r"route=/predict, status=200: 1\d counted, 9 sent"},
         fix="Take the status from the http.response.start message the application sends."),
    Case("latency_in_milliseconds", "observed milliseconds in a histogram whose buckets are seconds",
         edits=(replace(SERVICE, "SECONDS.labels(route).observe(time.perf_counter() - start)",
                        "SECONDS.labels(route).observe((time.perf_counter() - start) * 1000)"),),
         expect={"latency_histogram": "failed"},
         says={"latency_histogram": r"the latencies sum to .* but the client waited"},
         fix="Prometheus' base unit is the second: observe seconds, and name the metric _seconds."),
    Case("one_observation_per_batch", "observed only the first probability of each batch",
         edits=(replace(SERVICE, """        for probability in probabilities:
            PROBABILITIES.observe(probability)""", """        PROBABILITIES.observe(probabilities[0])"""),),
         expect={"predictions_observed": "failed"},
         says={"predictions_observed": r"\d+ probabilities observed, 54 answered"},
         fix="Observe every probability you answer: a batch of 30 rows is 30 predictions."),
    Case("version_typed_in", "typed in the champion's version seen at home instead of the loaded model's",
         edits=(replace(SERVICE, 'INFO.labels(info["model_name"], info["model_version"], info["git_sha"]).set(1)',
                        'INFO.labels(info["model_name"], "2", info["git_sha"]).set(1)'),),
         expect={"model_info": "failed"},
         says={"model_info": r"model_version': '2'.*expected .*model_version': '[13]'"},
         fix="Label the info metric with what load_champion returned: the registry decides the version."),
    Case("gauges_per_process", "created the gauges without a multiprocess mode: BentoML's worker processes each "
         "report their own, labelled by pid",
         edits=(replace(SERVICE, '["model_name", "model_version", "git_sha"], multiprocess_mode="max")',
                        '["model_name", "model_version", "git_sha"])'),
                replace(SERVICE, 'DRIFTED = Gauge(DRIFT, "1 while the inputs have drifted from the training data", '
                        'multiprocess_mode="max")',
                        'DRIFTED = Gauge(DRIFT, "1 while the inputs have drifted from the training data")')),
         expect={"metrics_contract": "failed", "model_info": "failed"},
         says={"metrics_contract": r"cancer_model_info has labels .*pid"},
         fix="Gauge(..., multiprocess_mode='max') (or 'liveall'): one value across the worker processes."),
    Case("default_buckets", "kept prometheus_client's default histogram buckets",
         edits=(replace(SERVICE, '["route"], buckets=LATENCY_BUCKETS)', '["route"])'),),
         expect={"metrics_contract": "failed"},
         says={"metrics_contract": r"cancer_request_duration_seconds has bucket edges .* expected"},
         fix="The SLO's threshold must be a bucket edge, or no query can count the requests under it."),
    Case("spans_not_sampled", "built a TracerProvider with the default sampler: BentoML's unsampled request "
         "context makes every span a no-op",
         edits=(replace(SERVICE, 'TRACER = tracer(os.environ.get("TRACES_FILE", "traces.jsonl"))',
                        """from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor

from mlops_kit.monitoring import JsonLinesSpanExporter

_provider = TracerProvider()
_provider.add_span_processor(SimpleSpanProcessor(JsonLinesSpanExporter(os.environ.get("TRACES_FILE", "traces.jsonl"))))
TRACER = _provider.get_tracer("cancer-service")"""),),
         expect={"traces": "failed"},
         says={"traces": r"no trace file was written|holds no span"},
         fix="TracerProvider(sampler=ALWAYS_ON): a parent-based sampler follows BentoML's unsampled parent span."),
    Case("registry_env_renamed", "read the registry's folder from REGISTRY_PATH instead of REGISTRY_DIR",
         edits=(replace(SERVICE, 'REGISTRY = os.environ.get("REGISTRY_DIR", "registry")',
                        'REGISTRY = os.environ.get("REGISTRY_PATH", "registry")'),),
         expect={"service_ready": "failed", **{name: "skipped" for name in LIVE}},
         says={"service_ready": r"never became ready"},
         fix="The grader and the Deployment of week 10 set REGISTRY_DIR."),
    Case("scrapes_prometheus_itself", "kept the example target of Prometheus' own configuration",
         edits=(replace(SCRAPE, '      - targets: ["127.0.0.1:3000"]', '      - targets: ["localhost:9090"]'),),
         expect={"scrape_config": "failed"},
         says={"scrape_config": r"scrapes \['localhost:9090'\], not 127.0.0.1:3000"},
         fix="Scrape where bentoml serve listens: 127.0.0.1:3000."),
    Case("alert_named_freely", "named the error alert HighErrorRate, as in a blog post, instead of the lab's name",
         edits=(replace(RULES, '{"alert": "CancerErrorBudgetBurn", "expr"', '{"alert": "HighErrorRate", "expr"'),),
         expect={"rules_valid": "failed", "alerts_well_formed": "skipped", "rules_from_slo": "skipped",
                 "learner_rule_tests": "skipped", "hidden_error_burn": "skipped", "hidden_latency_burn": "skipped",
                 "hidden_drift_alert": "skipped"},
         says={"rules_valid": r"missing: CancerErrorBudgetBurn"},
         fix="Alerts are an interface: runbooks, silences and routing match them by name."),
    Case("no_rule_files", "forgot rule_files: Prometheus never evaluates the rules",
         edits=(replace(SCRAPE, "rule_files:\n  - rules.yml\n", ""),),
         expect={"scrape_config": "failed"},
         says={"scrape_config": r"rule_files is \[\]: it must name rules.yml"},
         fix="rule_files: [rules.yml], relative to prometheus.yml."),
    Case("error_ratio_absent_without_errors", "divided the 5xx rate by the total without `or vector(0)`: "
         "with no error at all the ratio is absent, not 0",
         edits=(replace(RULES, """f'(sum(rate({REQUESTS}{{status=~"5.."}}[5m])) or vector(0)) / {requests}'""",
                        """f'sum(rate({REQUESTS}{{status=~"5.."}}[5m])) / {requests}'"""),),
         expect={"learner_rule_tests": "failed", "hidden_error_burn": "failed", "recording_rules_live": "failed"},
         says={"recording_rules_live": r"cancer:error_ratio:rate5m recorded nothing after the traffic"},
         fix="(sum(rate(errors[5m])) or vector(0)) / sum(rate(all[5m])): a healthy service has an error ratio of 0."),
    # not the notebook's 95th percentile: its fast-burn threshold (14.4 × 5 %) equals twice the graded 97.5th's, the
    # very rate the learner's own test sends, so whether that test fails would depend on float rounding
    Case("slo_typed_in", "typed in an SLO (300 ms at the 90th percentile) instead of reading slo",
         edits=(replace(RULES, 'threshold = slo["latency"]["threshold_ms"] / 1000\n    quantile = '
                        'slo["latency"]["percentile"] / 100', "threshold = 0.3\n    quantile = 0.9"),),
         expect={"rules_from_slo": "failed", "hidden_latency_burn": "failed", "recording_rules_live": "failed"},
         says={"rules_from_slo": r"reads the bucket\(s\) le=\['0.3'\], but the SLO's threshold is \d+ ms"},
         fix="Compute le and the quantile from slo: the SLO is a file that changes, the rules follow it.",
         varies={"learner_rule_tests": "the learner's own tests catch it only where the graded threshold is below "
                 "300 ms: above it (500 ms) their slow requests are slower than both, so only the grader's checks, "
                 "whose slow requests lie just above the threshold, see it"}),
    Case("burn_without_factor", "alerted when the error ratio exceeds the budget itself, not 14.4 times the budget",
         edits=(replace(RULES, '"expr": f"cancer:error_ratio:rate5m > {FAST_BURN} * {error_budget}"',
                        '"expr": f"cancer:error_ratio:rate5m > {error_budget}"'),),
         expect={"learner_rule_tests": "failed", "hidden_error_burn": "failed"},
         fix="A fast-burn page compares the ratio with FAST_BURN × the budget: a ratio above the budget for 2 "
             "minutes spends almost nothing of a 28-day budget."),
    Case("alerts_without_for", "left out `for:` on the alerts: one bad scrape pages someone",
         edits=(replace(RULES, '"for": "15m",', ""),),
         expect={"alerts_well_formed": "failed", "hidden_drift_alert": "failed"},
         says={"alerts_well_formed": r"CancerDriftDetected waits for: \(nothing\), expected 15m"},
         fix="for: 15m on the drift alert: a flag that flickers for five minutes is not drift."),
    Case("drift_alert_always", "wrote the drift alert as `cancer_drift_detected >= 0`",
         edits=(replace(RULES, 'f"max({DRIFT}) == 1"', 'f"{DRIFT} >= 0"'),),
         expect={"hidden_drift_alert": "failed"},
         fix="Fire on the flag being up: max(cancer_drift_detected) == 1."),
    Case("tests_only_fire", "tested only that the alerts fire, never that they stay silent",
         edits=(replace(TESTS, """        case(errors(error_burn / 2), "CancerErrorBudgetBurn", False),
        case(errors(0.0)[:1], "CancerErrorBudgetBurn", False, 0.0, "cancer:error_ratio:rate5m"),
""", ""), replace(TESTS, """        case(latencies(slow_burn / 2), "CancerLatencyBudgetBurn", False),
""", "")),
         expect={"learner_rule_tests": "failed"},
         says={"learner_rule_tests": r"no case in which CancerErrorBudgetBurn stays silent"},
         fix="An alert that always fires passes a test that only checks firing: test the quiet side too."),
    Case("panels_stacked", "placed every panel at the same spot of the grid",
         edits=(replace(BOARD, '"gridPos": {"h": 8, "w": 12, "x": 12 * (index % 2), "y": 8 * (index // 2)},',
                        '"gridPos": {"h": 8, "w": 12, "x": 0, "y": 0},'),),
         expect={"dashboard_valid": "failed"},
         says={"dashboard_valid": r"overlaps panel"},
         fix="Give each panel its own gridPos on the 24-column grid."),
    Case("panel_reads_a_guess", "queried cancer:latency_p95:5m, a series that nothing records",
         edits=(replace(BOARD, '("Latency at the SLO\'s percentile", "timeseries", "cancer:latency_quantile:5m"),',
                        '("Latency at the SLO\'s percentile", "timeseries", "cancer:latency_p95:5m"),'),),
         expect={"queries_read_real_metrics": "failed"},
         says={"queries_read_real_metrics": r"panel .Latency at the SLO's percentile. reads cancer:latency_p95:5m, "
               r"which nothing emits"},
         fix="A panel over a series nobody records shows 'No data' forever: query what the rules record."),
    Case("no_service_class", "renamed the service class",
         edits=(replace(SERVICE, "class CancerClassifier:", "class Classifier:"),
                replace(SERVICE, "\n\nCancerClassifier.add_asgi_middleware(Metrics)",
                        "\n\nClassifier.add_asgi_middleware(Metrics)")),
         expect={"service_defined": "failed", "service_ready": "skipped", **{name: "skipped" for name in LIVE}},
         fix="The grader serves service:CancerClassifier."),
]
