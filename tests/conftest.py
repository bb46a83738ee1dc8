"""Shared fixtures: the labs, and whether a sandbox works on this machine."""

import os

import pytest

os.environ.setdefault("DO_NOT_TRACK", "1")
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("BENTOML_DO_NOT_TRACK", "true")
os.environ.setdefault("DVC_NO_ANALYTICS", "1")


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
