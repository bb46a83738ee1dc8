"""The live-service probe: a learner's server started in a sandbox, probed from inside its network, stopped.

Each server here is a small script of the kind a learner might write by mistake; every test asserts the
probe's verdict and that nothing of the server is left running on the host afterwards.
"""

from __future__ import annotations

import os
import textwrap
import time
import uuid
from pathlib import Path

import pytest

from grader.checks.common import Fail
from grader.judge import Context
from grader.labs import find_lab
from grader.sandbox import Limits, Sandbox

SERVER = '''
import json, os, signal, sys, time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

MARK = {mark!r}
STARTED = time.monotonic()

class Handler(BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def reply(self, status, payload):
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        if self.path == "/healthz":
            return self.reply(*health())
        self.reply(404, {{"detail": "no such route"}})

    def do_POST(self):
        length = int(self.headers.get("Content-Length", 0))
        body = json.loads(self.rfile.read(length) or b"{{}}")
        if self.path == "/predict":
            return self.reply(*predict(body))
        self.reply(404, {{"detail": "no such route"}})

def health():
    return 200, {{"status": "ok"}}

def predict(body):
    rows = body.get("rows")
    if not isinstance(rows, list) or not rows:
        return 422, {{"detail": "rows must be a non-empty list"}}
    return 200, {{"predictions": [sum(r) for r in rows]}}

{extra}

ThreadingHTTPServer(("127.0.0.1", int(os.environ["PORT"])), Handler).serve_forever()
'''

EXTRA = {
    "healthy": "",
    "never_ready": "def health():\n    return 503, {'status': 'loading'}",
    "crashes": "def predict(body):\n    os._exit(3)",
    "loader_died": "def health():\n    return 503, {'status': 'loading'}\n"
                   "print('Exception in thread Thread-1 (_load):', file=sys.stderr, flush=True)",
    "ignores_sigterm": "signal.signal(signal.SIGTERM, signal.SIG_IGN)",
    "forks_daemon": textwrap.dedent("""
        if os.fork() == 0:
            os.setsid()
            if os.fork() == 0:
                while True:
                    time.sleep(1)  # a daemon that outlives its server
            os._exit(0)
    """),
}


def _plan(script: str) -> dict:
    return {"command": ["python3", script], "port": 8123, "health": "/healthz", "ready_seconds": 30,
            "requests": [{"name": "ok", "method": "POST", "path": "/predict", "json": {"rows": [[1, 2], [3, 4]]}},
                         {"name": "empty", "method": "POST", "path": "/predict", "json": {"rows": []}}],
            "load": {"method": "POST", "path": "/predict", "json": {"rows": [[1, 1]]}, "requests": 60,
                     "concurrency": 4, "seconds": 5},
            "stop_grace": 2}


def _host_processes_with(mark: str) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                if mark.encode() in Path(f"/proc/{entry}/cmdline").read_bytes() or \
                        mark.encode() in Path(f"/proc/{entry}/environ").read_bytes():
                    found.append(int(entry))
            except OSError:
                continue
    return found


def _serve(tmp_path: Path, kind: str, isolate: bool, **plan_changes) -> tuple[dict, str]:
    mark = f"mlops-service-test-{uuid.uuid4().hex}"
    work = tmp_path / "work"
    work.mkdir()
    script = f"server_{mark}.py"
    (work / script).write_text(SERVER.format(mark=mark, extra=EXTRA[kind]))
    ctx = Context(lab=find_lab("03").LAB, work=work, params={},
                  new_sandbox=lambda limits: Sandbox(limits, isolate=isolate))
    plan = _plan(script)
    plan["env"] = {"SERVICE_MARK": mark}
    plan.update(plan_changes)
    result = ctx.serve(plan, limits=Limits(wall_seconds=60))
    return result, mark


def _nothing_left(mark: str) -> None:
    for _ in range(20):
        if not _host_processes_with(mark):
            return
        time.sleep(0.1)
    pytest.fail(f"processes of the server are still running on the host: {_host_processes_with(mark)}")


def test_a_healthy_server_answers_and_stops_cleanly(tmp_path, isolate):
    result, mark = _serve(tmp_path, "healthy", isolate)
    assert result["ready"] and result["startup"] == ""
    assert result["nested"], "bubblewrap nests here: the server must run one sandbox further in"
    assert result["responses"]["ok"]["status"] == 200
    assert result["responses"]["ok"]["json"] == {"predictions": [3, 7]}
    assert result["responses"]["empty"]["status"] == 422
    load = result["load"]
    assert load["sent"] == 60 and load["ok"] == 60 and load["statuses"] == {"200": 60}
    assert 0 < load["p50"] <= load["p95"] <= load["p99"]
    assert result["stop"]["ignored_sigterm"] is False and result["stop"]["left_running"] == 0
    assert result["stop"]["daemons"] == 0
    _nothing_left(mark)


def test_a_server_that_never_becomes_ready_is_reported_and_stopped(tmp_path, isolate):
    result, mark = _serve(tmp_path, "never_ready", isolate, ready_seconds=8)
    assert not result["ready"]
    assert "not ready after 8 s: /healthz answered 503" in result["startup"]
    assert result["responses"] == {} and result["load"] is None
    _nothing_left(mark)


def test_a_server_whose_loader_died_is_given_up_on_early(tmp_path, isolate):
    started = time.monotonic()
    result, mark = _serve(tmp_path, "loader_died", isolate, ready_seconds=60, give_up_on=["Exception in thread"])
    assert not result["ready"]
    assert "its log shows 'Exception in thread'" in result["startup"], result["startup"]
    assert time.monotonic() - started < 40, "the wait must end GIVE_UP_GRACE after the traceback, not at 60 s"
    _nothing_left(mark)


def test_a_server_that_crashes_mid_request_gives_an_error_not_a_hang(tmp_path, isolate):
    result, mark = _serve(tmp_path, "crashes", isolate)
    assert result["ready"]
    assert "error" in result["responses"]["ok"]  # the connection closed without an answer
    assert result["stop"]["exited_before_stop"] is True
    _nothing_left(mark)


def test_a_server_that_ignores_sigterm_is_killed_and_reported(tmp_path, isolate):
    result, mark = _serve(tmp_path, "ignores_sigterm", isolate)
    assert result["ready"] and result["responses"]["ok"]["status"] == 200
    assert result["stop"]["ignored_sigterm"] is True
    _nothing_left(mark)


def test_a_server_that_forks_a_daemon_leaves_nothing_behind(tmp_path, isolate):
    result, mark = _serve(tmp_path, "forks_daemon", isolate)
    assert result["ready"]
    assert result["stop"]["ignored_sigterm"] is False
    assert result["stop"]["daemons"] == 1, result["stop"]  # the daemon is seen, and reported
    _nothing_left(mark)


def test_no_port_is_exposed_on_the_host(tmp_path, isolate):
    import socket

    result, _ = _serve(tmp_path, "healthy", isolate)
    assert result["ready"]
    with socket.socket() as sock:
        assert sock.connect_ex(("127.0.0.1", 8123)) != 0  # it listened inside the sandbox's own network only


def test_a_missing_plan_command_fails_the_check_with_a_reason(tmp_path, isolate):
    work = tmp_path / "work"
    work.mkdir()
    ctx = Context(lab=find_lab("03").LAB, work=work, params={},
                  new_sandbox=lambda limits: Sandbox(limits, isolate=isolate))
    result = ctx.serve({"command": ["python3", "no_such_server.py"], "port": 8124, "ready_seconds": 3},
                       limits=Limits(wall_seconds=30))
    assert not result["ready"] and "exited with status" in result["startup"]
    assert "no_such_server.py" in result["stderr_tail"]
    with pytest.raises(Fail):
        ctx.probe("service_probe", {}, limits=Limits(wall_seconds=30))  # no plan: the probe's error is a Fail
