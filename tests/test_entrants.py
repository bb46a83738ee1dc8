"""Entrants (grader/entrants.py): a process forked from a pre-imported zygote into a job's fresh sandbox must be
exactly as confined as a fresh process started there. The whole sandbox suite runs again with every command an
entrant; then what only entrants could get wrong: the namespaces they joined, descriptors, one job's request in
the next job's memory, what is left after a timeout, the placeholder they live beside, and the fallback."""

import os
import sys
import time

import pytest
import test_sandbox
from test_sandbox import *  # noqa: F401,F403 — the sandbox suite, collected again here with entrants
from test_sandbox import _running

from grader import entrants
from grader.sandbox import Limits, Sandbox


@pytest.fixture(scope="module")
def zygote():
    if not entrants.enabled():
        if os.environ.get("CI"):
            pytest.fail("CI runs as root: entrants must work there")
        pytest.skip("entrants need root here")
    made = entrants.Zygote(("numpy",), ("torch",))
    assert made.wait_ready(), "the zygote did not get ready"
    yield made
    made.close()


@pytest.fixture(autouse=True)
def as_entrants(zygote, monkeypatch):
    monkeypatch.setattr(test_sandbox, "ZYGOTE", zygote)


def entrant(code: str, zygote, limits: Limits = Limits(wall_seconds=60), *args: str):
    box = Sandbox(limits)
    try:
        box.mount("work", writable=True)
        started = []
        original = box._start_entrant

        def traced(*a, **k):
            started.append(original(*a, **k))
            return started[-1]

        box._start_entrant = traced
        result = box.run([sys.executable, "-I", "-c", code, *args], cwd="work", zygote=zygote)
        assert started and started[0] is not None, "the command did not run as an entrant"
        return result
    finally:
        box.cleanup()


def test_it_joined_every_namespace_of_the_sandbox_and_kept_no_privilege(isolate, zygote):
    result = entrant("""
import os
for name in ("mnt", "pid", "net", "ipc", "uts", "user", "cgroup"):
    mine = os.readlink(f"/proc/self/ns/{name}")
    print(name, mine == os.readlink(f"/proc/1/ns/{name}"))
    print("id-" + name, mine)
status = dict(line.split(":", 1) for line in open("/proc/self/status"))
for key in ("CapEff", "CapPrm", "CapInh", "CapBnd", "CapAmb", "NoNewPrivs", "Uid", "Gid"):
    print(key, status[key].split()[0])
print("pids", sorted(int(p) for p in os.listdir("/proc") if p.isdigit()))
print("fds", sorted(int(fd) for fd in os.listdir("/proc/self/fd")))
print("comm1", open("/proc/1/comm").read().strip())
""", zygote)
    out = dict(line.split(" ", 1) for line in result.stdout.splitlines())
    host = {name: os.readlink(f"/proc/self/ns/{name}") for name in ("mnt", "pid", "net", "ipc", "uts", "user")}
    assert all(out[name] == "True" for name in ("mnt", "pid", "net", "ipc", "uts", "user", "cgroup")), out
    assert all(out[key] == "0000000000000000" for key in ("CapEff", "CapPrm", "CapInh", "CapBnd", "CapAmb")), out
    assert out["NoNewPrivs"] == "1" and out["Uid"] == out["Gid"] == "1000", out
    assert out["pids"] == "[1, 2]" and out["comm1"] == "mlops-hold", out  # the placeholder and itself: no host PID
    assert out["fds"] == "[0, 1, 2, 3]", out  # stdio and listdir's own: nothing of the host or the zygote
    assert all(out["id-" + name] != host[name] for name in host), (out, host)  # none of them is the host's


SCAN = """
import sys
needle = sys.argv[1][::-1].encode()  # the needle itself is in memory once: it is what we search with
found = 0
with open("/proc/self/maps") as maps, open("/proc/self/mem", "rb", buffering=0) as mem:
    for line in maps:
        start, end = (int(x, 16) for x in line.split()[0].split("-"))
        if "r" not in line.split()[1] or end - start > 1 << 30:
            continue
        try:
            mem.seek(start)
            found += mem.read(end - start).count(needle)
        except (OSError, ValueError, OverflowError):
            pass
print("found", found)
"""


def test_one_jobs_request_is_not_in_the_next_jobs_memory(isolate, zygote):
    secret = "mlops" + os.urandom(8).hex()
    first = entrant("import sys; print(len(sys.argv))", zygote, Limits(wall_seconds=60), secret)
    assert first.stdout.strip() == "2"
    control = entrant(SCAN, zygote, Limits(wall_seconds=120), secret[::-1], secret)  # its own request: found
    assert int(control.stdout.split()[-1]) >= 2, control.stdout + control.stderr
    second = entrant(SCAN, zygote, Limits(wall_seconds=120), secret[::-1])
    assert second.stdout.strip() == "found 1", second.stdout + second.stderr  # the needle only


def test_a_timeout_leaves_nothing_running_and_the_zygote_serves_on(isolate, zygote):
    marker = "entrant-" + os.urandom(6).hex()
    result = entrant(f"""
import os, subprocess, time
for _ in range(3):
    subprocess.Popen(["sleep", "600", "{marker}"], start_new_session=True)
print("started", flush=True)
time.sleep(600)
""", zygote, Limits(wall_seconds=4))
    assert result.timed_out and "started" in result.stdout
    deadline = time.monotonic() + 10
    while _running(marker) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not _running(marker)
    assert zygote.alive() and entrant("print('again')", zygote).stdout.strip() == "again"


def test_the_placeholder_cannot_be_killed_from_inside(isolate, zygote):
    result = entrant("""
import os, signal, time
for sig in (signal.SIGKILL, signal.SIGTERM, signal.SIGSTOP):
    try:
        os.kill(1, sig)
    except OSError as err:
        print("refused", err)
time.sleep(0.5)
print("still here", open("/proc/1/comm").read().strip())
""", zygote)
    assert "still here mlops-hold" in result.stdout and result.returncode == 0, result.stdout + result.stderr


def test_exit_status_and_output_are_the_tools(isolate, zygote):
    result = entrant("import sys; print('out'); print('err', file=sys.stderr); sys.exit(7)", zygote)
    assert (result.returncode, result.stdout.strip(), result.stderr.strip()) == (7, "out", "err")
    crashed = entrant("raise ValueError('boom')", zygote)
    assert crashed.returncode == 1 and "ValueError: boom" in crashed.stderr


def test_generators_are_not_shared_between_jobs(isolate, zygote):
    code = "import numpy, random; print(numpy.random.rand(), random.random())"
    assert entrant(code, zygote).stdout != entrant(code, zygote).stdout


def test_later_modules_are_imported_while_idle_and_blocked_ones_never(isolate):
    """`--later`: imported after "ready", one at a time while no job waits; the blocker holds for them too."""
    if not entrants.enabled():
        pytest.skip("entrants need root here")
    made = entrants.Zygote(("json",), ("torch",), later=("decimal", "torch", "fractions"))
    try:
        assert made.wait_ready(), "the zygote did not get ready"
        code = "import sys; print(sorted(m for m in ('decimal', 'fractions', 'torch') if m in sys.modules))"
        deadline = time.monotonic() + 30
        seen = entrant(code, made).stdout.strip()
        while seen != "['decimal', 'fractions']" and time.monotonic() < deadline:
            time.sleep(0.2)
            seen = entrant(code, made).stdout.strip()
        assert seen == "['decimal', 'fractions']", seen  # both imported in idle time; torch stayed blocked
        assert made.alive()
    finally:
        made.close()


def test_switched_off_or_unknown_tools_run_the_classic_way(monkeypatch):
    monkeypatch.setenv("MLOPS_GRADE_ENTRANTS", "0")
    assert entrants.zygote_for("sklearn_model") is None
    monkeypatch.delenv("MLOPS_GRADE_ENTRANTS")
    assert entrants.zygote_for("no_such_tool") is None


KERNEL_FACTS = r'''
import json, os, sys
status = dict(line.split(":", 1) for line in open("/proc/self/status"))
facts = {"path": [p for p in sys.path if "site-packages" not in p and "python3" not in p],
         "isolated": sys.flags.isolated, "cwd": os.getcwd(), "argv0": os.path.basename(sys.argv[0]),
         "own_group": os.getpgid(0) == os.getpid(), "own_session": os.getsid(0) == os.getpid(),
         "caps": status["CapEff"].strip(), "uid": os.getuid(), "env": sorted(os.environ),
         "runner_modules": sorted(m for m in ("harness", "run_notebook") if m in sys.modules),
         "dumpable": os.access("/proc/self/fd", os.R_OK), "stdin": os.readlink("/proc/self/fd/0").split("[")[0],
         "stdout": os.readlink("/proc/self/fd/1").split("[")[0]}
try:
    import torch  # noqa: F401 — blocked by the lab's not_needed, in both kernels
    facts["torch"] = "imported"
except ImportError:
    facts["torch"] = "blocked"
open("facts.json", "w").write(json.dumps(facts))
'''


def test_a_notebooks_kernel_is_the_same_process_with_and_without_entrants(isolate, monkeypatch):
    """The runner forks the kernel from itself when it is an entrant: the learner's code must not tell."""
    import json

    import nbformat

    from grader.execute import execute

    notebook = nbformat.v4.new_notebook()
    notebook.cells = [nbformat.v4.new_code_cell(KERNEL_FACTS)]
    notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    facts = {}
    for mode in ("1", "0"):
        monkeypatch.setenv("MLOPS_GRADE_ENTRANTS", mode)
        with Sandbox(Limits(wall_seconds=180)) as box:
            work = box.mount("work", writable=True)
            ran = execute(json.loads(nbformat.writes(notebook)), box, {}, cell_timeout=120, not_needed=("torch",))
            assert ran.ok, (mode, ran.error, ran.run.stderr[-2000:])
            facts[mode] = json.loads((work / "facts.json").read_text())
    assert facts["1"] == facts["0"]
    assert facts["1"]["runner_modules"] == [] and facts["1"]["torch"] == "blocked" and facts["1"]["isolated"] == 0
    assert "" in facts["1"]["path"] and facts["1"]["cwd"] == "/sandbox/work"  # the learner's own modules import
