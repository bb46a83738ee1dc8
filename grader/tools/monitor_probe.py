"""The monitoring probe: the learner's service and a real Prometheus scraping it, known traffic, then queries.

Runs inside the probe sandbox (its own loopback-only network namespace). The service is learner code and runs one
level further in, exactly as in the live-service probe (`service_probe.Server`); Prometheus and promtool are the
grader's and run here. Input `plan` (a JSON string):

    {"service": a service_probe plan (command, cwd, env, port, health, ready_seconds, stop_grace, not_needed),
     "traffic": [{"name", "method", "path", "json", "phase"}], "metrics_path": "/metrics",
     "expect_warmup": what the counter must reach after the requests of phase 1,
     "rules": "work-relative rules file" | null, "job": "scrape job name", "counter": "metric",
     "expect_total": requests the counter must reach, "recorded": {learner's recorded series: reference expr},
     "queries": {name: expr}, "traces": "file in the server's home (its TRACES_FILE)", "settle_seconds": 20}

Prometheus scrapes the service every second and evaluates the learner's rules (each group's own interval
dropped) every second; it starts while the service loads. The traffic goes in two phases, the warm-up (phase 1)
scraped before the rest is sent, so every series has two samples and its rate is not zero. Recorded series are
compared with the grader's reference expressions evaluated at the very timestamp of the recorded sample.
result.json: {"ready", "startup", "responses", "metrics_text", "prometheus": {"error", "rules_loaded", "rules_error",
"scraped_total", "queries", "recorded"}, "spans", "spans_error", "stop", "stderr_tail"}. Every process is stopped
before it is written.
"""

import json
import os
import shutil
import socket
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # the harness, beside this file (-I drops it)
from harness import probe_main  # noqa: E402
from service_probe import Server, call  # noqa: E402

SPAN_CAP = 2000
TRACE_BYTES = 4 * 2**20
METRICS_BYTES = 256 * 1024


def add_arguments(parser) -> None:
    parser.add_argument("--label", default="")


def run(args, inputs) -> dict:
    plan = json.loads(str(inputs["plan"][()]))
    work = Path(args.work)
    server = Server(plan["service"], work, hidden=[args.out, args.input])
    result = {"ready": False, "startup": "", "responses": {}, "metrics_text": None, "prometheus": {}, "spans": [],
              "stop": None}
    prometheus = None
    try:
        server.start()
        prometheus, result["prometheus"] = start_prometheus(plan, work, server.port)
        ready, why, seconds = server.wait_ready(float(plan["service"].get("ready_seconds", 60)),
                                                plan["service"].get("health", "/readyz"),
                                                [str(text) for text in plan["service"].get("give_up_on", [])])
        result.update(ready=ready, startup=why, ready_seconds=seconds)
        if ready:
            traffic = plan.get("traffic", [])
            if prometheus is not None:  # scraped once before any traffic, once after the warm-up
                result["prometheus"].update(scraped(prometheus, plan, None))
            for request in [r for r in traffic if r.get("phase") == 1]:
                result["responses"][request["name"]] = call(server.port, request)
            if prometheus is not None:
                result["prometheus"].update(scraped(prometheus, plan, int(plan.get("expect_warmup", 0))))
            for request in [r for r in traffic if r.get("phase") != 1]:
                result["responses"][request["name"]] = call(server.port, request)
            result["metrics_text"] = metrics_text(server.port, plan.get("metrics_path", "/metrics"))
            if prometheus is not None:
                result["prometheus"].update(observe(prometheus, plan))
        result["stop"] = server.stop(float(plan["service"].get("stop_grace", 5)))
    finally:
        server.kill()
        if prometheus is not None:
            prometheus.stop()
    result["spans"], result["spans_error"] = spans(server.home, plan.get("traces", ""))
    result["stderr_tail"] = server.stderr_tail()
    return result


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_prometheus(plan: dict, work: Path, target_port: int):
    """A Prometheus scraping the service every second with the learner's rules if promtool accepts them; (it or
    None, what is known so far)."""
    from mlops_kit.monitoring import Prometheus, binary, promtool, scrape_config

    if binary("prometheus") is None:
        return None, {"error": "skipped: prometheus is not installed here"}
    folder = Path(tempfile.mkdtemp(prefix="prometheus-"))
    facts, rules = {"rules_loaded": False, "rules_error": ""}, {}
    relative = plan.get("rules")
    if relative:
        source = work / relative
        if source.is_file() and not source.is_symlink() and source.stat().st_size < 1_000_000:
            import yaml

            text = source.read_text(encoding="utf-8", errors="replace")
            (folder / "check.yml").write_text(text)
            code, said = promtool("check", "rules", str(folder / "check.yml"), timeout=30)
            if code == 0:
                document = yaml.safe_load(text) or {}
                for group in document.get("groups") or []:
                    group.pop("interval", None)  # every group evaluated each second, whatever the learner chose
                rules = {"rules.yml": yaml.safe_dump(document, sort_keys=False)}
                facts["rules_loaded"] = True
            else:
                facts["rules_error"] = said[-1500:]
        else:
            facts["rules_error"] = f"{relative} was not found"
    config = scrape_config([f"127.0.0.1:{target_port}"], "1s", list(rules), job=plan.get("job", "cancer-service"))
    config["scrape_configs"][0]["metrics_path"] = plan.get("metrics_path", "/metrics")
    return Prometheus(config, free_port(), rules=rules, folder=folder), facts


def metrics_text(port: int, path: str) -> str | None:
    import http.client

    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        connection.request("GET", path)
        response = connection.getresponse()
        data = response.read(METRICS_BYTES + 1)
        if response.status != 200:
            return None
        return data[:METRICS_BYTES].decode("utf-8", "replace")
    except (OSError, http.client.HTTPException):
        return None
    finally:
        connection.close()


def scraped(prometheus, plan: dict, expected: int | None) -> dict:
    """Wait until Prometheus scraped the service (expected None), or until its counter reached `expected`;
    what was seen. A counter that never gets there is the learner's to explain: the wait is bounded."""
    job = plan.get("job", "cancer-service")
    try:
        if expected is None:
            prometheus.wait_for(f'up{{job="{job}"}} == 1', float(plan.get("settle_seconds", 20)))
            return {}
        counter = plan.get("counter")
        last = prometheus.wait_for(f"sum({counter})", 10, lambda r: bool(r) and r[0][1] >= expected)
        return {"warmup_scraped": last[0][1]}
    except TimeoutError as err:
        return {"warmup_error": str(err)[:300]} if expected is not None else {"error": f"TimeoutError: {err}"[:800]}
    except (RuntimeError, OSError) as err:
        return {"error": f"{type(err).__name__}: {err}"[:800]}


def observe(prometheus, plan: dict) -> dict:
    """Wait until Prometheus has scraped all the traffic and evaluated the rules after that scrape; query it."""
    facts = {"queries": {}, "recorded": {}}
    settle = float(plan.get("settle_seconds", 20))
    counter, expected = plan.get("counter"), int(plan.get("expect_total", 0))
    try:
        prometheus.wait_for(f'up{{job="{plan.get("job", "cancer-service")}"}} == 1', settle)
        if counter:
            try:
                last = prometheus.wait_for(f"sum({counter})", settle,
                                           lambda r: bool(r) and r[0][1] >= expected)
                facts["scraped_total"] = last[0][1]
            except TimeoutError:
                seen = prometheus.query(f"sum({counter})")
                facts["scraped_total"] = seen[0][1] if seen else None
        after = time.time()  # every rule evaluated from now on sees the last scrape
        for name in plan.get("recorded") or {}:
            try:
                # a few evaluations after the traffic's last scrape: `settled` picks one that missed no scrape
                prometheus.wait_for(f"max(timestamp({name}))", 8, lambda r, t=after: bool(r) and r[0][1] >= t + 2.5)
            except TimeoutError:
                continue  # records nothing (or not since): compared as it is
        for name, expr in (plan.get("queries") or {}).items():
            facts["queries"][name] = ask(prometheus, expr)
        for name, reference in (plan.get("recorded") or {}).items():
            facts["recorded"][name] = compare(prometheus, name, reference, plan.get("job", "cancer-service"), after)
    except (TimeoutError, RuntimeError, OSError) as err:
        facts["error"] = f"{type(err).__name__}: {err}"[:800]
    facts["log"] = prometheus.log_tail(1500)
    return facts


def ask(prometheus, expr: str, at=None) -> dict:
    try:
        return {"result": [[labels, value] for labels, value in prometheus.query(expr, at=at)]}
    except Exception as err:  # noqa: BLE001 - the expression is data: any refusal is its answer
        return {"error": f"{err}"[:400]}


def compare(prometheus, name: str, reference: str, job: str = "cancer-service", since: float = 0.0,
            tries: int = 6) -> dict:
    """The learner's recorded series and the reference expression, both at the timestamp of a recorded sample
    whose rule evaluation saw every scrape up to it (`settled`); under load a scrape can still land after a rule
    ran, so "others" holds the same pair at up to `tries` - 1 more recorded timestamps after the traffic (newest
    first): the grader accepts the rule when any evaluation agrees with its expression."""
    stamps = ask(prometheus, f"max(timestamp({name}))")
    if "error" in stamps or not stamps["result"]:
        return {"at": None, "learner": ask(prometheus, name), "reference": ask(prometheus, reference)}
    at = settled(prometheus, name, job, since) or stamps["result"][0][1]
    recorded = sorted({t for t, _ in _sample_times(prometheus, f"{name}[60s]") if t >= since and t != at},
                      reverse=True)
    others = [{"at": t, "learner": ask(prometheus, name, t), "reference": ask(prometheus, reference, t)}
              for t in recorded[: tries - 1]]
    return {"at": at, "learner": ask(prometheus, name, at), "reference": ask(prometheus, reference, at),
            "others": others}


def _sample_times(prometheus, expr: str) -> list[tuple[float, float]]:
    """(timestamp, value) of every sample of a range selector `expr`, all series together."""
    try:
        data = prometheus.api("query", query=expr)
    except Exception:  # noqa: BLE001 - no history: the caller falls back to the latest sample
        return []
    return sorted((float(t), float(v)) for item in data.get("result", []) for t, v in item.get("values", []))


def settled(prometheus, name: str, job: str, since: float, window: str = "60s") -> float | None:
    """The latest timestamp of a recorded sample whose evaluation missed no scrape: a scrape stamped before it but
    still running when the rule ran is seen by a later query and not by the rule (with few samples in a 5-minute
    window, rate() then differs by a large factor). A scrape with timestamp t and duration d is in by t + d."""
    scrapes = _sample_times(prometheus, f'scrape_duration_seconds{{job="{job}"}}[{window}]')
    recorded = sorted({t for t, _ in _sample_times(prometheus, f"{name}[{window}]")}, reverse=True)
    for at in (t for t in recorded if t >= since):  # evaluated after the traffic's last scrape
        if all(t + d + 0.25 < at for t, d in scrapes if t <= at):
            return at
    return None


def spans(home: str, relative: str) -> tuple[list, str]:
    """The spans the service wrote to its trace file (JSON lines), capped."""
    if not relative:
        return [], ""
    path = Path(home) / relative
    if path.is_symlink() or not path.is_file():
        return [], f"no trace file was written (the service's TRACES_FILE, {relative})"
    if path.stat().st_size > TRACE_BYTES:
        return [], f"the trace file is larger than {TRACE_BYTES // 2**20} MB"
    from mlops_kit.monitoring import read_spans

    found = read_spans(path, limit=SPAN_CAP)
    shutil.rmtree(home, ignore_errors=True)
    return found, ""


if __name__ == "__main__":
    probe_main(run, add_arguments)
