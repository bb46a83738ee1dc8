"""Escapes: the hidden checks, other submissions, the host filesystem, the network, the grader's environment.

Each spy notebook is the starter plus one cell that tries, and records what it found in outputs/spy.json.
"""

import json
import os
from pathlib import Path

import adversarial_cases as cases
import pytest
from adversarial_helpers import assert_case_and_next, spy_report


@pytest.fixture(scope="module")
def graded(graded_group):
    return graded_group("cheats")


def _refused(found: dict, *names: str) -> None:
    for name in names:
        assert not found[name]["ok"], f"{name} succeeded: {found[name]}"


@pytest.mark.slow
def test_hidden_checks_and_solutions_are_unreadable(graded):
    assert_case_and_next(graded, "read_hidden_checks")
    found = spy_report(graded, "read_hidden_checks")
    _refused(found, "open0", "open1", "open2", "open3", "import_checks")
    assert "FileNotFoundError" in found["open0"]["error"]
    assert found["search"] == {"ok": True, "value": "[]"}, found["search"]
    listing = found["repo_listing"]
    assert "grader" not in listing.get("value", "") and "solutions" not in listing.get("value", "")


@pytest.mark.slow
def test_other_submissions_and_jobs_are_invisible(graded):
    assert_case_and_next(graded, "read_other_submission")
    found = spy_report(graded, "read_other_submission")
    _refused(found, "other", "other_dir")
    assert found["host_tmp_jobs"]["value"] == "[]"
    assert found["sandbox_mounts"]["value"] == "['tools', 'work']"
    processes = found["processes"]["value"]
    assert "run_notebook.py" in processes, processes  # it sees its own job's processes ...
    assert "pytest" not in processes and "zz_sentinel" not in processes  # ... and nothing else


@pytest.mark.slow
def test_writes_outside_the_work_dir_fail(graded):
    assert_case_and_next(graded, "write_outside")
    found = spy_report(graded, "write_outside")
    # a checkout under /tmp or /home sits in the sandbox's private tmpfs there: a write lands in that tmpfs only
    private_repo = str(cases.REPO).startswith(("/tmp/", "/home/"))
    _refused(found, "venv", "venv_bin", "library", "usr", "etc_passwd", "chmod_tools", *(() if private_repo else ("repo",)))
    for name in ("venv", "library", "usr"):
        assert "Read-only file system" in found[name]["error"], found[name]
    assert found["host_tmp"]["ok"], "the sandbox's own /tmp is writable (and private)"
    assert not Path(cases.HOST_MARKER).exists(), "a notebook wrote into the host's /tmp"
    assert not (cases.REPO / "pwned.txt").exists()
    import sysconfig

    assert not Path(sysconfig.get_paths()["purelib"], "zz_pwned.pth").exists()


@pytest.mark.slow
def test_network_is_unreachable(graded):
    assert_case_and_next(graded, "network")
    found = spy_report(graded, "network")
    _refused(found, "tcp_ip", "dns", "udp", "urllib")
    assert "Network is unreachable" in found["tcp_ip"]["error"]
    assert found["interfaces"]["value"] == "['lo']"


@pytest.mark.slow
def test_grader_environment_is_invisible(graded):
    assert_case_and_next(graded, "read_environment")
    assert graded.token and len(graded.token) > 30
    found = spy_report(graded, "read_environment")
    assert found["environ"]["ok"] and "'HOME': '/home/learner'" in found["environ"]["value"]
    assert found["proc_environ"]["ok"] and found["own_environ"]["ok"] and "MLOPS_GRADING" in found["own_environ"]["value"]
    assert "PermissionError" in found["parent_environ"]["error"], "the runner hides itself (non-dumpable)"
    text = json.dumps(found)
    assert graded.token not in text and cases.TOKEN_VAR not in text
    assert os.environ.get(cases.TOKEN_VAR) != graded.token  # restored after the batch
