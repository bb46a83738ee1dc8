"""Shared fixtures: the labs, and whether a sandbox works on this machine."""

import atexit
import os
import shutil
import tempfile

import pytest

os.environ.setdefault("DO_NOT_TRACK", "1")
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("BENTOML_DO_NOT_TRACK", "true")
os.environ.setdefault("DVC_NO_ANALYTICS", "1")
# Hidden scenarios are drawn from the grading installation's secret (grader/secret.py): a test run uses one
# of its own, generated on first use in a folder made for this run (xdist workers inherit it), never the
# user's ~/.config/mlops-grade/secret. Set MLOPS_GRADE_SECRET to run the suite with a given secret.
if not os.environ.get("MLOPS_GRADE_SECRET"):
    _secret_dir = tempfile.mkdtemp(prefix="mlops-test-secret-")
    os.environ["MLOPS_GRADE_SECRET"] = os.path.join(_secret_dir, "secret")
    atexit.register(shutil.rmtree, _secret_dir, ignore_errors=True)
# A learner's progress history (grader/progress.py): the tests' self-checks must not land in the course's own
if not os.environ.get("MLOPS_PROGRESS_DB"):
    _progress_dir = tempfile.mkdtemp(prefix="mlops-test-progress-")
    os.environ["MLOPS_PROGRESS_DB"] = os.path.join(_progress_dir, "progress.sqlite")
    atexit.register(shutil.rmtree, _progress_dir, ignore_errors=True)


def sandbox_reason():
    from grader.sandbox import probe_bubblewrap

    return probe_bubblewrap()


@pytest.fixture(scope="session")
def isolate():
    """Grade in the sandbox; CI installs bubblewrap, so there a missing sandbox is an error, not a skip."""
    reason = sandbox_reason()
    if reason and os.environ.get("CI"):
        pytest.fail(f"CI must grade in the sandbox: {reason}")
    if reason:
        pytest.skip(f"no sandbox here: {reason}")
    return True
