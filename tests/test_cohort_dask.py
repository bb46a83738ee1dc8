"""`--backend dask`: a real scheduler and two workers (separate processes on 127.0.0.1) grade a cohort, each
submission in the worker's own sandbox; the coordinator writes the results; a worker killed mid-run loses nothing
(its task runs again on the other worker) and every learner is graded exactly once."""

import json
import os
import shutil
import signal
import socket
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


# A SIGKILLed worker cannot unmount its sandboxes' tmpfs quotas: give each worker a private mount namespace (as a
# container or `systemd-run -p PrivateMounts=yes` would), so the kernel drops its mounts when it dies.
_OWN_MOUNTS = (["unshare", "--mount", "--propagation", "private"]
               if os.geteuid() == 0 and shutil.which("unshare") else [])


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_for_workers(address: str, count: int, timeout: float = 90) -> None:
    from distributed import Client

    with Client(address, timeout=timeout) as client:
        client.wait_for_workers(count, timeout=timeout)


@pytest.fixture
def cluster(tmp_path):
    if not DASK.exists():
        pytest.skip("dask's command line is not installed in this environment")
    port = _free_port()
    address = f"tcp://127.0.0.1:{port}"
    (tmp_path / "tmp").mkdir()  # what a killed worker cannot clean up stays in the test's own folder
    env = {**os.environ, "PYTHONPATH": str(REPO), "DASK_DISTRIBUTED__WORKER__DAEMON": "False",
           "TMPDIR": str(tmp_path / "tmp")}
    procs = [subprocess.Popen([str(DASK), "scheduler", "--host", "127.0.0.1", "--port", str(port), "--no-dashboard"],
                              cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=open(tmp_path / "scheduler.log", "w"))]
    try:
        for n in range(2):  # --no-nanny: a killed worker stays dead (a nanny would restart it)
            procs.append(subprocess.Popen(
                [*_OWN_MOUNTS, str(DASK), "worker", address, "--no-nanny", "--nthreads", "1", "--host", "127.0.0.1",
                 "--name", f"w{n}", "--no-dashboard", "--local-directory", str(tmp_path / f"w{n}")], cwd=REPO, env=env,
                stdout=subprocess.DEVNULL, stderr=open(tmp_path / f"worker{n}.log", "w")))
        _wait_for_workers(address, 2)
        yield address, procs
    finally:
        for proc in reversed(procs):
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in procs:
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
        mounts = [line.split()[1] for line in Path("/proc/mounts").read_text().splitlines()
                  if line.split()[1].startswith(str(tmp_path))]
        assert not mounts, f"sandbox mounts left behind by the workers: {mounts}"


@pytest.mark.slow
def test_dask_workers_grade_and_a_killed_worker_loses_nothing(tmp_path, cluster, isolate):
    address, procs = cluster
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
    killed = threading.Event()

    def kill_one_worker(job, result):
        if not killed.is_set():  # after the first result, while the others run or wait on both workers
            killed.set()
            os.kill(procs[1].pid, signal.SIGKILL)

    start = time.monotonic()
    summary = grade_cohort(find_lab(LAB), tmp_path / "cohort", engine, backend="dask", scheduler=address,
                           progress=False, on_result=kill_one_worker)
    print(f"dask: {len(learners)} submissions in {time.monotonic() - start:.1f} s with a worker killed")
    assert killed.is_set() and procs[1].poll() == -signal.SIGKILL
    assert summary.todo == len(learners) and summary.errors == 0
    with Session(engine) as session:
        rows = session.execute(select(gb.Grade.learner_id, gb.Grade.score, gb.Grade.graded_by)).all()
        audited = session.scalar(select(func.count()).select_from(gb.Audit).where(gb.Audit.kind == "grade"))
    assert sorted(r.learner_id for r in rows) == learners and audited == len(learners)  # each exactly once
    assert {r.learner_id: r.score for r in rows} == {w: (37.0 if i % 2 == 0 else 0.0) for i, w in enumerate(learners)}
    assert all(r.graded_by.startswith("dask@") for r in rows)


def test_dask_backend_needs_a_scheduler_address(tmp_path):
    (tmp_path / "cohort" / "ada").mkdir(parents=True)
    (tmp_path / "cohort" / "ada" / f"{LAB}.ipynb").write_text("{}")
    engine = gb.open_gradebook(str(tmp_path / "gb.db"))
    with pytest.raises(ValueError, match="--scheduler"):
        grade_cohort(find_lab(LAB), tmp_path / "cohort", engine, backend="dask", progress=False)
