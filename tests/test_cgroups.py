"""The cgroup backends (grader/cgroups.py): v2 against a fake cgroup2 tree in a temp dir (the host may be v1),
v1 against a fake v1 tree, and the real host's backend where it gives one."""

import os
import subprocess
import time
from pathlib import Path

import pytest

from grader import cgroups
from grader.sandbox import Limits

LIMITS = Limits(memory_bytes=512 * 2**20, pids=64)


def fake_v2(tmp_path: Path, delegated: str = "user.slice/grader.scope", procs: str | None = None,
            controllers: str = "cpu memory pids") -> tuple[Path, Path]:
    """A cgroup2 mount with `delegated` (holding `procs`, default this process) given `controllers`."""
    mount = tmp_path / "cgroup"
    mount.mkdir()
    (mount / "cgroup.controllers").write_text("cpu io memory pids\n")
    (mount / "cgroup.subtree_control").write_text("cpu memory pids\n")
    path = mount / delegated
    path.mkdir(parents=True)
    (path / "cgroup.controllers").write_text(controllers + "\n")
    (path / "cgroup.subtree_control").write_text("")
    (path / "cgroup.procs").write_text(f"{os.getpid()}\n" if procs is None else procs)
    return mount, path


def test_v2_scope_alone_moves_itself_to_a_leaf_and_enables_controllers(tmp_path):
    mount, scope = fake_v2(tmp_path)
    found = cgroups.select_v2_base(mount, "/user.slice/grader.scope")
    assert (found.version, found.base, found.reason) == (2, str(scope), "")
    assert (scope / "grader" / "cgroup.procs").read_text() == str(os.getpid())
    assert set((scope / "cgroup.subtree_control").read_text().split()) == {"+memory", "+pids"}


def test_v2_job_writes_limits_joins_reads_cpu_and_oom_and_kills(tmp_path, monkeypatch):
    mount, scope = fake_v2(tmp_path)
    monkeypatch.setenv(cgroups.ENV_SUBTREE, str(scope))
    job = cgroups.create(LIMITS, root=mount)
    assert job.ok and job.version == 2, job.reason
    path = job.dirs[0]
    assert path.parent == scope and path.name.startswith("mlops-grade-")
    assert (path / "memory.max").read_text() == str(512 * 2**20)
    assert (path / "memory.swap.max").read_text() == "0"
    assert (path / "pids.max").read_text() == "64"
    assert job.procs_files == [str(path / "cgroup.procs")]
    (path / "cgroup.kill").write_text("")  # what the kernel (5.14+) gives each cgroup
    sleeper = subprocess.Popen(["sleep", "600"])
    try:
        job.add(sleeper.pid)
        assert (path / "cgroup.procs").read_text() == str(sleeper.pid)
        (path / "cpu.stat").write_text("usage_usec 1500000\nuser_usec 1000000\nsystem_usec 500000\n")
        (path / "memory.events").write_text("low 0\nhigh 0\nmax 3\noom 1\noom_kill 1\n")
        assert job.cpu_seconds() == pytest.approx(1.5)
        assert job.oom_killed()
        start = time.monotonic()
        job.destroy()  # cgroup.kill is written; the fake one kills nothing, so each process is killed too
        assert sleeper.wait(timeout=5) == -9
        assert time.monotonic() - start < 2
        assert (path / "cgroup.kill").read_text() == "1"
    finally:
        sleeper.kill()
        sleeper.wait()


def test_v2_no_oom_and_missing_files_read_as_nothing(tmp_path, monkeypatch):
    mount, scope = fake_v2(tmp_path)
    monkeypatch.setenv(cgroups.ENV_SUBTREE, str(scope))
    job = cgroups.create(LIMITS, root=mount)
    (job.dirs[0] / "memory.events").write_text("oom 0\noom_kill 0\n")
    assert not job.oom_killed() and job.cpu_seconds() is None
    job.kill()  # no cgroup.kill, no process: nothing happens
    job.destroy()
    assert not (job.dirs[0] / "cgroup.kill").exists()


@pytest.mark.parametrize("case, expected", [
    (dict(controllers="cpu"), "not given the memory and pids controllers"),
    (dict(procs="1\n"), "holds other processes too: start the grader in a scope of its own (systemd-run"),
])
def test_v2_without_a_usable_subtree_says_why(tmp_path, case, expected, monkeypatch):
    mount, _ = fake_v2(tmp_path, **case)
    monkeypatch.setattr(os, "geteuid", lambda: 1000)  # not root: no cgroup under the root cgroup either
    found = cgroups.select_v2_base(mount, "/user.slice/grader.scope")
    assert found.version == 0 and expected in found.reason, found.reason
    assert "not root" in found.reason


def test_v2_already_delegated_subtree_is_used_as_is(tmp_path):
    mount, scope = fake_v2(tmp_path, procs="")
    (scope / "cgroup.subtree_control").write_text("memory pids\n")
    found = cgroups.select_v2_base(mount, "/elsewhere", env_subtree="/user.slice/grader.scope")
    assert (found.version, found.base) == (2, str(scope))
    assert not (scope / "grader").exists()  # nothing was moved


def test_v1_fake_tree(tmp_path, monkeypatch):
    root = tmp_path / "v1"
    for controller in ("memory", "pids", "cpuacct"):
        (root / controller / "job-slice").mkdir(parents=True)
        (root / controller / "cgroup.procs").write_text("")
    (root / "cpuacct" / "cpuacct.usage").write_text("0")
    text = "4:memory:/job-slice\n8:pids:/job-slice\n2:cpuacct:/job-slice\n0::/\n"
    monkeypatch.setattr(cgroups, "own_cgroups", lambda *args, **kwargs: _parse(text))
    job = cgroups.create(LIMITS, root=root)
    assert job.ok and job.version == 1, job.reason
    memory, pids, cpu = job.dirs
    assert memory.parent == root / "memory" / "job-slice"
    assert (memory / "memory.limit_in_bytes").read_text() == str(512 * 2**20)
    assert (pids / "pids.max").read_text() == "64"
    (cpu / "cpuacct.usage").write_text("2500000000")
    (memory / "memory.oom_control").write_text("oom_kill_disable 0\nunder_oom 0\noom_kill 2\n")
    assert job.cpu_seconds() == pytest.approx(2.5) and job.oom_killed()
    job.destroy()


def _parse(text):
    found = {}
    for line in text.splitlines():
        _, controllers, path = line.split(":", 2)
        for controller in controllers.split(","):
            found[controller] = path
    return found


def test_own_cgroups_parses_v1_and_v2_lines():
    text = "9:name=systemd:/\n4:memory:/a/b\n2:cpu,cpuacct:/c\n0::/user.slice/x.scope\n"
    found = cgroups.own_cgroups(text=text)
    assert found["memory"] == "/a/b" and found["cpuacct"] == "/c" and found[""] == "/user.slice/x.scope"


def test_this_host_gives_a_backend_or_says_why():
    job = cgroups.create(LIMITS)
    try:
        assert job.ok or job.reason
        if job.ok:
            assert job.version in (1, 2) and all(p.is_dir() for p in job.dirs)
            assert job.cpu_seconds() is not None or job.version == 1
    finally:
        job.destroy()
    assert not any(p.exists() for p in job.dirs)
