"""Lab 08's machinery: the Containerfile reader, .dockerignore rules, and the container runs the grader starts —
whatever the image does (never ready, ignores SIGTERM, a build that hangs), nothing is left behind."""

from __future__ import annotations

import os
import subprocess
import uuid

import pytest

from grader import containerfile
from grader.checks.lab08 import ignore_rules, ignored

REFERENCE = """# a comment
ARG BASE_IMAGE=python:3.11-slim
FROM ${BASE_IMAGE} AS builder
RUN python3 -m venv /opt/venv
COPY requirements.txt /tmp/
RUN /opt/venv/bin/pip install --no-index \\
    # a comment inside a continuation
    -r /tmp/requirements.txt
FROM ${BASE_IMAGE}
COPY --from=builder /opt/venv /opt/venv
ENV A="one two" TOKEN=$FROM_RUNTIME
USER app:app
HEALTHCHECK --interval=5s CMD ["python3", "-c", "pass"]
CMD ["bentoml", "serve"]
"""


def test_containerfile_is_read_into_stages_with_lines_and_flags():
    cf = containerfile.parse(REFERENCE)
    assert cf.global_args == {"BASE_IMAGE": "python:3.11-slim"}
    assert [(s.base, s.name, s.line) for s in cf.stages] == [("${BASE_IMAGE}", "builder", 3), ("${BASE_IMAGE}", "", 9)]
    install = cf.stages[0].instructions[-1]
    assert install.line == 6 and "-r /tmp/requirements.txt" in install.args and "comment" not in install.args
    copy = cf.final.all("COPY")[0]
    assert copy.flags() == {"from": "builder"} and copy.words() == ["/opt/venv", "/opt/venv"]
    assert containerfile.env_pairs(cf.final.last("ENV")) == [("A", "one two"), ("TOKEN", "$FROM_RUNTIME")]
    assert cf.final.last("HEALTHCHECK").flags() == {"interval": "5s"}
    assert cf.final.last("CMD").words() == ["bentoml", "serve"]


def test_base_image_references_and_pins():
    assert containerfile.arg_reference("${BASE_IMAGE}") == "BASE_IMAGE"
    assert containerfile.arg_reference("$BASE_IMAGE") == "BASE_IMAGE"
    assert containerfile.arg_reference("python:3.11-slim") is None
    assert containerfile.pinned("python:3.11-slim") and containerfile.pinned("localhost:5000/py@sha256:abc")
    assert not containerfile.pinned("python") and not containerfile.pinned("python:latest")
    assert not containerfile.pinned("localhost:5000/python")


@pytest.mark.parametrize("text", ["", "RUN echo before any FROM\nFROM x", "FROM x\n!!! not an instruction"])
def test_what_is_not_a_containerfile_is_refused_with_the_reason(text):
    with pytest.raises(containerfile.ParseError):
        containerfile.parse(text)


def test_dockerignore_rules_follow_docker_last_match_wins():
    rules = ignore_rules("# comment\n.env\n*.ipynb\nregistry/\n*\n!service.py\n!wheels/\n")
    assert ignored(rules, ".env") and ignored(rules, "registry/mlflow.db") and ignored(rules, "lab.ipynb")
    assert not ignored(rules, "service.py") and not ignored(rules, "wheels/x.whl")
    assert ignored(rules, "settings.py")  # "*" excludes it and nothing lets it back in
    assert not ignored(ignore_rules(""), ".env")


# --- live: the grader's container runs leave nothing behind -------------------------------------------------

containers = pytest.importorskip("grader.containers")
needs_engine = pytest.mark.skipif(bool(containers.unavailable()), reason=containers.unavailable() or "engine here")


def _base() -> str:
    from mlops_kit.containers import BASE_IMAGE

    if not containers.image_exists(BASE_IMAGE):
        pytest.skip(f"{BASE_IMAGE} is missing: run `make images`")
    return BASE_IMAGE


def _build(tmp_path, body: str, job: str, timeout: float = 120):
    (tmp_path / "Containerfile").write_text("ARG BASE_IMAGE\nFROM ${BASE_IMAGE}\n" + body)
    return containers.build(tmp_path, f"localhost/{job}:t", job, _base(), timeout)


def _host_listeners() -> set[str]:
    """Local addresses of the host's listening TCP sockets (/proc/net/tcp and tcp6: state 0A)."""
    found = set()
    for name in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = open(name).read().splitlines()[1:]
        except OSError:
            continue
        found |= {line.split()[1] for line in lines if len(line.split()) > 3 and line.split()[3] == "0A"}
    return found


@needs_engine
@pytest.mark.slow
def test_a_container_that_never_gets_ready_and_ignores_sigterm_leaves_nothing(tmp_path):
    job = f"lab08-test-{uuid.uuid4().hex[:8]}"
    # PID 1 that ignores SIGTERM, forks a child that also lingers, and never listens
    body = ('STOPSIGNAL SIGTERM\nCMD ["python3", "-c", "import os, signal, time; signal.signal(signal.SIGTERM, '
            'signal.SIG_IGN); os.fork(); time.sleep(600)"]\n')
    before = _host_listeners()
    try:
        assert _build(tmp_path, body, job).ok
        started, error = containers.run(f"localhost/{job}:t", job, job, tmp_path, {})
        assert started, error
        pid = containers.state(job)["pid"]
        seen = containers.client(job, {"port": 3000, "health": "/readyz", "ready_seconds": 3}, timeout=30)
        assert seen["ready"] is False and "not ready after 3 s" in seen["startup"]
        stop = containers.stop(job, grace=2)
        assert stop["killed"] is True  # SIGTERM ignored: killed after the grace
        assert not subprocess.run(["kill", "-0", str(pid)], capture_output=True).returncode == 0
    finally:
        containers.cleanup(job)
    assert containers.leftovers(job) == []
    # nothing was published on the host: no new listener on the service's port (other tests, run in parallel, may
    # open loopback listeners of their own on other ports meanwhile)
    assert {a for a in _host_listeners() - before if a.endswith(":0BB8")} == set()


@needs_engine
@pytest.mark.slow
def test_a_build_that_hangs_is_stopped_at_its_limit_and_leaves_nothing(tmp_path):
    job = f"lab08-test-{uuid.uuid4().hex[:8]}"
    seconds = 600 + uuid.uuid4().int % 300  # a sleep no other process here runs
    try:
        built = _build(tmp_path, f"RUN sleep {seconds}\n", job, timeout=8)
        assert not built.ok and built.timed_out and built.seconds < 60
    finally:
        containers.cleanup(job)
    assert containers.leftovers(job) == []
    assert not _processes_running(f"sleep {seconds}")


def _processes_running(command: str) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/cmdline", "rb") as handle:
                    if handle.read().replace(b"\0", b" ").strip() == command.encode():
                        found.append(int(entry))
            except OSError:
                continue
    return found


@needs_engine
@pytest.mark.slow
def test_stale_jobs_of_a_dead_grader_are_swept(tmp_path):
    job = f"lab08-test-{uuid.uuid4().hex[:8]}"
    try:
        assert _build(tmp_path, 'CMD ["sleep", "600"]\n', job).ok
        started, _ = containers.run(f"localhost/{job}:t", job, job, tmp_path, {})
        assert started
        containers.sweep_stale(max_age=3600, prefix=job)
        assert containers.leftovers(job)  # young: kept
        containers.sweep_stale(max_age=-1, prefix=job)  # now it counts as old
        assert containers.leftovers(job) == []
    finally:
        containers.cleanup(job)


def test_run_flags_that_reach_for_the_host_are_refused_before_building():
    from grader.checks.lab08 import host_requests

    ok = containerfile.parse("FROM x\nRUN --mount=type=cache,target=/root/.cache/pip pip install -r r.txt\n")
    assert host_requests(ok) == ""
    for flag in ("--network=host", "--security=insecure", "--mount=type=bind,source=/,target=/host"):
        refused = host_requests(containerfile.parse(f"FROM x\nRUN {flag} cat /etc/shadow\n"))
        assert "line 2" in refused and flag.split("=")[0] in refused


def test_a_baseline_cannot_make_the_secrets_probe_import_code(tmp_path):
    import json
    import sys

    from grader.labs import REPO

    sys.path.insert(0, str(REPO / "grader" / "tools"))
    import supply_chain_probe as probe

    marker = tmp_path / "ran"
    evil = tmp_path / "evil.py"
    evil.write_text(f"open({str(marker)!r}, 'w').write('x')\ndef f(filename):\n    return True\n")
    (tmp_path / "project").mkdir()
    project = tmp_path / "project"
    (project / "config.py").write_text('password = "hunter2-but-longer-9f8e7d"\n')
    baseline = {"version": "1.5.0", "results": {},
                "plugins_used": [{"name": "KeywordDetector"}, {"name": "Evil", "path": f"file://{evil}"}],
                "filters_used": [{"path": f"file://{evil}::f"},
                                 {"path": "detect_secrets.filters.wordlist.should_exclude_secret",
                                  "file_name": str(evil), "min_length": 3, "file_hash": "x"}]}
    (project / ".secrets.baseline").write_text(json.dumps(baseline))
    result = probe.secrets(project, None)
    assert not marker.exists()
    assert [(f["filename"], f["type"]) for f in result["new"]] == [("config.py", "Secret Keyword")]
