"""Lab 09's machinery: the local runner's verdicts, and a learner's repository that tries to run commands through git
(config, hooks, links) when the grader lists, checks out or reads what a job pushed."""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from mlops_kit import cicd

TOOLS = Path(__file__).resolve().parent.parent / "grader" / "tools"
PATH = {"PATH": f"{Path(os.sys.executable).parent}:/usr/bin:/bin"}

pytestmark = pytest.mark.skipif(shutil.which("git") is None, reason="git is not installed")


def _ci_probe():
    spec = importlib.util.spec_from_file_location("ci_probe_under_test", TOOLS / "ci_probe.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def repo(tmp_path_factory):
    return cicd.project_repo(tmp_path_factory.mktemp("project") / "repo", seed=3)


def _trap(marker: Path) -> str:
    """A shell command that leaves `marker` behind if anything runs it."""
    return f"sh -c 'touch {marker}'"


def test_listing_and_checkout_never_read_the_learners_git_config(repo, tmp_path):
    marker = tmp_path / "ran"
    evil = tmp_path / "evil"
    shutil.copytree(repo, evil, symlinks=True)
    with open(evil / ".git" / "config", "a") as config:
        config.write(f"[core]\n\tfsmonitor = {_trap(marker)}\n\thooksPath = hooks\n")
    (evil / ".git" / "hooks").mkdir(exist_ok=True)
    hook = evil / ".git" / "hooks" / "post-checkout"
    hook.write_text(f"#!/bin/sh\ntouch {marker}\n")
    hook.chmod(0o755)
    (evil / "secret-link").symlink_to("/etc/hostname")
    names = cicd.tracked_files(evil)
    work = cicd.checkout(evil, tmp_path / "run")
    assert not marker.exists(), "git ran a command from the learner's repository"
    assert "secret-link" not in names and not (work / "secret-link").exists()
    assert not any(part == ".git" for name in names for part in Path(name).parts)
    assert (work / "cancer_model" / "train.py").is_file()


def test_pushed_commits_are_read_without_the_origins_config(repo, tmp_path):
    marker = tmp_path / "ran"
    work = cicd.checkout(repo, tmp_path / "run")
    origin = tmp_path / "run" / "origin.git"
    (work / "deploy" / "overlays" / "prod" / "kustomization.yaml").write_text(
        (work / "deploy" / "overlays" / "prod" / "kustomization.yaml").read_text().replace("replicas", "replicas"))
    cicd._git(work, "commit", "-q", "--allow-empty", "-m", "deploy")
    cicd._git(work, "push", "-q", "origin", "HEAD:main")
    with open(origin / "config", "a") as config:  # what a job could write into the origin it pushes to
        config.write(f"[log]\n\tshowSignature = true\n[gpg]\n\tprogram = {marker}.sh\n"
                     f"[diff]\n\texternal = {_trap(marker)}\n[core]\n\tpager = {_trap(marker)}\n")
    Path(f"{marker}.sh").write_text(f"#!/bin/sh\ntouch {marker}\n")
    Path(f"{marker}.sh").chmod(0o755)
    (origin / "refs" / "heads" / "link").symlink_to("/etc/hostname")
    pushed = _ci_probe()._pushed(origin, tmp_path / "run")
    assert not marker.exists(), "reading the push ran a command from the origin's config"
    assert pushed["commits"] == 1 and pushed["messages"] == ["Course <course@example.org>: deploy"]
    assert (Path(pushed["tree"]) / "deploy" / "base" / "deployment.yaml").is_file()


def _workflow(lint: str, **step) -> dict:
    return {"on": {"push": {"branches": ["main"]}}, "jobs": {
        "lint": {"runs-on": "ubuntu-24.04", "steps": [{"uses": "actions/checkout@v4"}, {"run": lint, **step}]},
        "deploy": {"needs": "lint", "if": "github.event_name == 'push' && github.ref == 'refs/heads/main'",
                   "runs-on": "ubuntu-24.04", "steps": [{"run": "echo deploying $GITHUB_SHA > deployed.txt"}]}}}


@pytest.mark.parametrize("lint,step,ok", [
    ("ruff check .", {}, True),
    ("python -c 'import sys; sys.exit(3)'", {}, False),
    ("python -c 'import sys; sys.exit(3)' || true", {}, True),
    ("python -c 'import sys; sys.exit(3)'", {"continue-on-error": True}, True),
    ("false\necho after", {}, False),  # bash -e: the first failing line fails the step
    ("false | cat", {}, False),  # -o pipefail, as GitHub's bash
])
def test_run_job_fails_a_job_as_github_would(repo, tmp_path, lint, step, ok):
    result = cicd.run_job(_workflow(lint, **step), "lint", cicd.checkout(repo, tmp_path), base_env=PATH)
    assert result["ran"] and result["ok"] is ok
    assert result["steps"][0]["status"] == "not run"  # uses: is listed, not run


def test_job_conditions_and_expressions(repo, tmp_path):
    work = cicd.checkout(repo, tmp_path / "push")
    pushed = cicd.run_job(_workflow("true"), "deploy", work, base_env=PATH,
                          context=cicd.github_context(sha="c" * 40))
    assert pushed["ok"] and (work / "deployed.txt").read_text().split() == ["deploying", "c" * 40]
    pr = cicd.run_job(_workflow("true"), "deploy", cicd.checkout(repo, tmp_path / "pr"), base_env=PATH,
                      context=cicd.github_context(sha="c" * 40, event="pull_request", ref="refs/pull/1/merge"))
    assert not pr["ran"] and "is false" in pr["why"]
    assert cicd.interpolate("${{ github.event.pull_request.body }}",
                            cicd.github_context(sha="0" * 40, event="pull_request", pr_body="x; rm -rf /")) == \
        "x; rm -rf /"
    assert cicd.untrusted_in_run({"jobs": {"g": {"steps": [{"run": "echo ${{ GitHub.Head_Ref }}"}]}}})


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl is not installed")
def test_manifest_changes_name_exactly_the_bumped_image(repo, tmp_path):
    work = cicd.checkout(repo, tmp_path)
    overlay = work / "deploy" / "overlays" / "prod" / "kustomization.yaml"
    before = cicd.render(overlay.parent)
    text = overlay.read_text()
    tag = text.split("newTag: ")[1].split()[0]
    overlay.write_text(text.replace(tag, "d" * 40))
    changes = cicd.manifest_changes(before, cicd.render(overlay.parent))
    assert len(changes) == 1 and changes[0].startswith("Deployment/cancer-prod/cancer-service ")
    assert changes[0].endswith(f"-> '{cicd.IMAGE}:{'d' * 40}'")
    subprocess.run(["git", "status"], cwd=work, capture_output=True, check=True)


BOMB = "a: &a [x, x, x, x, x, x, x, x, x, x]\n" + "".join(
    f"{chr(98 + i)}: &{chr(98 + i)} [*{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, "
    f"*{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}]\n"
    for i in range(8)) + "on: push\njobs: {}\n"


@pytest.mark.parametrize("text,says", [(BOMB, "once its YAML aliases are expanded"),
                                       ("a: &a [1, *a]\non: push\n", "contains itself|nested deeper")])
def test_learner_yaml_refuses_alias_bombs_before_anything_walks_them(text, says):
    from grader.checks.common import Fail, learner_yaml

    with pytest.raises(Fail, match=says):
        learner_yaml(text, "ci.yml")


def test_learner_yaml_reads_on_as_a_key():
    from grader.checks.common import learner_yaml

    assert learner_yaml("on: push\njobs: {}\n", "ci.yml") == {"on": "push", "jobs": {}}
