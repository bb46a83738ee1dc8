"""`mlops-grade doctor`: one line per isolation feature, each "ok" or "missing: why + what it costs"; exit 0."""

import subprocess
import sys
from pathlib import Path

from grader import cgroups, doctor
from grader.labs import REPO

FEATURES = ("bubblewrap", "user namespaces", "PID namespace", "network namespace",
            "nested sandbox (learner code in probes)", "job-wide memory and pids (cgroup)",
            "work-dir quota (tmpfs size + inodes)", "tmpfs size limits (bwrap --size)",
            "pre-imported entrants (grader/entrants.py)")


def test_doctor_prints_every_feature_and_exits_0():
    done = subprocess.run([str(Path(sys.executable).parent / "mlops-grade"), "doctor"], capture_output=True,
                          text=True, cwd=REPO, timeout=120)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    for name in FEATURES:
        line = next(line for line in lines if line.startswith(name))
        assert line[len(name):].lstrip().startswith(("ok: ", "missing: ")), line
    assert lines[-1].split(" features available")[0].endswith(f"of {len(FEATURES)}")


def test_a_missing_cgroup_says_why_and_what_it_costs(monkeypatch):
    monkeypatch.setattr(cgroups, "host", lambda root=None: cgroups.Host(0, reason="cgroup v2: no delegated "
                                                                         "subtree", mount_version=2))
    monkeypatch.setattr(cgroups, "create", lambda limits, root=None: cgroups.JobCgroup(reason="cgroup v2: no "
                                                                                        "delegated subtree"))
    feature = doctor.cgroup()
    assert not feature.ok
    assert feature.line().startswith("job-wide memory and pids (cgroup)        missing: cgroup v2: no delegated "
                                     "subtree (cgroup v2 here). Cost: memory is limited per process")
    assert "systemd-run --user --scope -p Delegate=yes" in feature.detail


def test_a_missing_tmpfs_quota_says_what_it_costs(monkeypatch):
    import grader.sandbox as sandbox

    monkeypatch.setattr(sandbox, "tmpfs_quota_available", lambda: "mounting a tmpfs failed (it needs root)")
    feature = doctor.disk_quota()
    assert not feature.ok and "scanned instead" in feature.detail and "needs root" in feature.detail


def test_the_host_features_match_what_the_sandbox_uses():
    found = {f.name: f for f in doctor.features()}
    job = cgroups.create(sandbox_limits())
    try:
        assert found["job-wide memory and pids (cgroup)"].ok == job.ok
    finally:
        job.destroy()


def sandbox_limits():
    from grader.sandbox import Limits

    return Limits()


def test_entrants_switched_off_say_so_and_what_it_costs(monkeypatch):
    monkeypatch.setenv("MLOPS_GRADE_ENTRANTS", "0")
    feature = doctor.entrants()
    assert not feature.ok and feature.detail.startswith("switched off (MLOPS_GRADE_ENTRANTS=0). Cost: every notebook")
