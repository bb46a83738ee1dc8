"""`--backend dask` across test hosts: the scheduler and each of two workers run in a network namespace of their own
(one Linux host each, with its own addresses), joined by veth pairs in 10.213.0.0/16:

    this process (coordinator) --veth 10.213.K.1/30 -- 10.213.K.2 [scheduler ns] 10.213.1.1/30 -- 10.213.1.2 [worker ns 0]
                                                                                 10.213.2.1/30 -- 10.213.2.2 [worker ns 1]

Only the coordinator's link lives in this host's namespace (K varies per run so that two runs on one machine do
not collide); the workers are reachable from the scheduler's namespace only, so every byte between the coordinator,
the scheduler and the workers crosses a veth. Worker 1 is SIGKILLed while it is grading a submission (seen in the
scheduler's `processing` state); that submission is graded again on worker 0 and every learner has exactly one
grade. Namespaces and links are removed in a `finally`, also when the test fails.

Needs root and `ip netns` (iproute2); skipped otherwise, except under CI=true, where it fails."""

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from grader.assign import build_lab
from grader.cohort import gradebook as gb
from grader.cohort.runner import grade_cohort
from grader.labs import REPO, find_lab

LAB = "10_kubernetes"
DASK = Path(sys.executable).parent / "dask"
PORT = 8786


def _unavailable() -> str | None:
    if not DASK.exists():
        return "dask's command line is not installed in this environment"
    if os.geteuid() != 0:
        return "network namespaces need root (ip netns add)"
    if not shutil.which("ip"):
        return "iproute2's `ip` is not installed"
    probe = f"mgprobe{os.getpid() % 100000}"
    made = subprocess.run(["ip", "netns", "add", probe], capture_output=True, text=True)
    subprocess.run(["ip", "netns", "del", probe], capture_output=True)
    if made.returncode != 0:
        return f"`ip netns add` fails here: {made.stderr.strip()}"
    return None


def _ip(*args: str, ns: str | None = None) -> None:
    cmd = ["ip", *(["-n", ns] if ns else []), *args]
    done = subprocess.run(cmd, capture_output=True, text=True)
    assert done.returncode == 0, f"{' '.join(cmd)}: {done.stderr.strip()}"


def _free_coordinator_subnet() -> int:
    used = subprocess.run(["ip", "-4", "-o", "addr"], capture_output=True, text=True).stdout
    for k in [10 + (os.getpid() + i) % 240 for i in range(240)]:
        if f"10.213.{k}." not in used:
            return k
    raise RuntimeError("no free 10.213.K.0/30 on this host")


class NetnsHosts:
    """Three namespaces (scheduler, w0, w1) and three veth pairs; `close()` removes them all."""

    def __init__(self):
        tag = f"{os.getpid() % 100000}"
        self.sched, self.workers = f"mgs{tag}", [f"mgw0_{tag}", f"mgw1_{tag}"]
        self.host_link = f"mgc{tag}"  # the coordinator's end, in this namespace
        self.k = _free_coordinator_subnet()
        self.scheduler_ip = f"10.213.{self.k}.2"
        self.worker_ips = ["10.213.1.2", "10.213.2.2"]
        self.scheduler_side = ["10.213.1.1", "10.213.2.1"]

    def open(self) -> None:
        for ns in (self.sched, *self.workers):
            _ip("netns", "add", ns)
            _ip("link", "set", "lo", "up", ns=ns)
        _ip("link", "add", self.host_link, "type", "veth", "peer", "name", "up0", "netns", self.sched)
        _ip("addr", "add", f"10.213.{self.k}.1/30", "dev", self.host_link)
        _ip("link", "set", self.host_link, "up")
        _ip("addr", "add", f"{self.scheduler_ip}/30", "dev", "up0", ns=self.sched)
        _ip("link", "set", "up0", "up", ns=self.sched)
        for n, ns in enumerate(self.workers):
            _ip("link", "add", f"w{n}", "netns", self.sched, "type", "veth", "peer", "name", "eth0", "netns", ns)
            _ip("addr", "add", f"{self.scheduler_side[n]}/30", "dev", f"w{n}", ns=self.sched)
            _ip("link", "set", f"w{n}", "up", ns=self.sched)
            _ip("addr", "add", f"{self.worker_ips[n]}/30", "dev", "eth0", ns=ns)
            _ip("link", "set", "eth0", "up", ns=ns)

    def close(self) -> list[str]:
        """Remove what exists; returns what could not be removed."""
        left = []
        for ns in (self.sched, *self.workers):
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)  # takes the veths inside with it
        subprocess.run(["ip", "link", "del", self.host_link], capture_output=True)
        names = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
        left += [ns for ns in (self.sched, *self.workers) if ns in names.split()]
        if subprocess.run(["ip", "link", "show", self.host_link], capture_output=True).returncode == 0:
            left.append(self.host_link)
        return left


def _in_ns(ns: str, *cmd: str) -> list[str]:
    return ["ip", "netns", "exec", ns, *cmd]  # `ip netns exec` execs: the Popen's pid is the command's


@pytest.fixture
def hosts_cluster(tmp_path):
    reason = _unavailable()
    if reason and os.environ.get("CI") == "true":
        pytest.fail(f"CI must run the multi-host Dask test: {reason}")
    if reason:
        pytest.skip(reason)
    hosts = NetnsHosts()
    procs: list[subprocess.Popen] = []
    (tmp_path / "tmp").mkdir()
    env = {**os.environ, "PYTHONPATH": str(REPO), "DASK_DISTRIBUTED__WORKER__DAEMON": "False",
           "TMPDIR": str(tmp_path / "tmp")}
    try:
        hosts.open()
        procs.append(subprocess.Popen(
            _in_ns(hosts.sched, str(DASK), "scheduler", "--host", "0.0.0.0", "--port", str(PORT), "--no-dashboard"),
            cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=open(tmp_path / "scheduler.log", "w")))
        for n, ns in enumerate(hosts.workers):  # --no-nanny: a killed worker stays dead
            procs.append(subprocess.Popen(_in_ns(
                ns, str(DASK), "worker", f"tcp://{hosts.scheduler_side[n]}:{PORT}", "--no-nanny", "--nthreads", "1",
                "--host", hosts.worker_ips[n], "--name", f"w{n}", "--no-dashboard",
                "--local-directory", str(tmp_path / f"w{n}")),
                cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=open(tmp_path / f"worker{n}.log", "w")))
        address = f"tcp://{hosts.scheduler_ip}:{PORT}"
        from distributed import Client

        with Client(address, timeout=60) as client:
            client.wait_for_workers(2, timeout=60)
            seen = {w["host"] for w in client.scheduler_info()["workers"].values()}
        assert seen == set(hosts.worker_ips), seen  # each worker registered from its own host's address
        yield address, procs, hosts
    finally:
        for proc in reversed(procs):
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in procs:
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=5)
        left = hosts.close()
        assert not left, f"test hosts not removed: {left}"
        mounts = [line.split()[1] for line in Path("/proc/mounts").read_text().splitlines()
                  if line.split()[1].startswith(str(tmp_path))]  # `ip netns exec` gives each its own mounts
        assert not mounts, f"sandbox mounts left behind by the workers: {mounts}"


@pytest.mark.slow
def test_workers_on_their_own_hosts_one_killed_mid_job_every_submission_graded_once(tmp_path, hosts_cluster, isolate):
    address, procs, hosts = hosts_cluster
    lab = find_lab(LAB).LAB
    correct = build_lab(json.loads(lab.solution_path.read_text()), LAB, with_solutions=True)
    starter = json.loads(lab.lab_path.read_text())
    learners = [f"l{i}" for i in range(4)]
    for i, who in enumerate(learners):
        (tmp_path / "cohort" / who).mkdir(parents=True)
        notebook = json.loads(json.dumps(correct if i % 2 == 0 else starter))
        notebook["metadata"]["who"] = who
        (tmp_path / "cohort" / who / f"{LAB}.ipynb").write_text(json.dumps(notebook))
    engine = gb.open_gradebook(str(tmp_path / "gb.db"))
    victim = f"tcp://{hosts.worker_ips[1]}:"
    killed: dict = {}
    stop = threading.Event()

    def kill_worker_1_mid_job():
        """Watch the scheduler; SIGKILL worker 1 once it has been grading one submission for a second."""
        from distributed import Client

        with Client(address, timeout=30) as watcher:
            since = None
            while not stop.is_set() and not killed:
                busy = [k for w, keys in watcher.processing().items() if w.startswith(victim) for k in keys]
                if busy and since is None:
                    since = time.monotonic()
                if busy and time.monotonic() - since > 1.0:
                    os.kill(procs[2].pid, signal.SIGKILL)
                    killed["keys"] = busy
                    return
                stop.wait(0.2)

    watcher = threading.Thread(target=kill_worker_1_mid_job, daemon=True)
    watcher.start()
    start = time.monotonic()
    try:
        summary = grade_cohort(find_lab(LAB), tmp_path / "cohort", engine, backend="dask", scheduler=address,
                               progress=False)
    finally:
        stop.set()
        watcher.join(10)
    print(f"dask across namespaces: {len(learners)} submissions in {time.monotonic() - start:.1f} s, "
          f"worker 1 killed while grading {killed.get('keys')}")
    assert killed, "worker 1 never got a submission to grade, so nothing was killed mid-job"
    assert procs[2].wait(timeout=10) == -signal.SIGKILL
    assert summary.todo == len(learners) and summary.errors == 0
    with Session(engine) as session:
        rows = session.execute(select(gb.Grade.learner_id, gb.Grade.score)).all()
        audited = session.scalar(select(func.count()).select_from(gb.Audit).where(gb.Audit.kind == "grade"))
    assert sorted(r.learner_id for r in rows) == learners and audited == len(learners)  # each exactly once
    assert {r.learner_id: r.score for r in rows} == {w: (37.0 if i % 2 == 0 else 0.0) for i, w in enumerate(learners)}
    interrupted = {k.split("-")[2] for k in killed["keys"]}  # grade-10_kubernetes-<learner>-<hash>-<ns>
    assert interrupted <= set(learners) and interrupted  # the killed job's learner is among the graded-once ones
