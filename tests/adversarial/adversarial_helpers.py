"""Assertions shared by the adversarial tests."""

from __future__ import annotations

import functools
import json
import re

import pytest


def explain(result) -> str:
    lines = [f"status={result.status} score={result.score}", f"output={result.output!r}"]
    lines += [f"{t.name}: {t.status} {t.score}/{t.max_score} {t.message!r}" for t in result.tests]
    return "\n".join(lines)


@functools.lru_cache(maxsize=1)
def cgroups_work() -> bool:
    """Whether the grader can make a job-wide memory + pids cgroup here (else rlimits per process/user apply)."""
    from grader.sandbox import Limits, _Cgroup

    cgroup = _Cgroup.create(Limits())
    cgroup.destroy()
    return cgroup.ok


def assert_outcome(case, result) -> None:
    """The exact score, the status, and the messages the learner sees."""
    assert result.status == case.status, explain(result)
    if case.needs_cgroup and not cgroups_work():
        return  # contained and graded, but the exact outcome depends on this machine's rlimits
    assert result.score == pytest.approx(case.score), explain(result)
    if case.output is not None:
        assert re.search(case.output, result.output), f"output does not match {case.output!r}\n{explain(result)}"
    by_name = {t.name: t for t in result.tests}
    for name, pattern in case.tests.items():
        assert re.search(pattern, by_name[name].message), f"{name} does not match {pattern!r}\n{explain(result)}"
    failed = [t for t in result.tests if t.status == "failed"]
    assert all(t.message for t in failed), "every failed check tells the learner why"


def assert_case_and_next(graded, name: str) -> None:
    """The case's outcome, then the next submission of the same batch: the grader stayed up."""
    case = next(c for c in graded.cases if c.name == name)
    assert_outcome(case, graded.results[name])
    following, result = graded.after(name)
    assert_outcome(following, result)


def spy_report(graded, name: str) -> dict:
    """What a spy cell found, from its kept work directory."""
    path = graded.kept[name] / "outputs" / "spy.json"
    assert path.is_file(), f"the spy cell did not run: {explain(graded.results[name])}"
    return json.loads(path.read_text())


def grade_alone(lab_module, notebook: dict, folder, name: str):
    """Grade `notebook` (written to `folder/<name>.ipynb`) with its job dirs in `folder/jobs`, so that other
    graders on the machine cannot blur whether this one left a job dir behind; (result, jobs folder)."""
    import tempfile

    from grader.grade import grade_notebook

    jobs = folder / "jobs"
    jobs.mkdir(exist_ok=True)
    path = folder / f"{name}.ipynb"
    path.write_text(json.dumps(notebook), encoding="utf-8")
    previous, tempfile.tempdir = tempfile.tempdir, str(jobs)
    try:
        return grade_notebook(lab_module, path), jobs
    finally:
        tempfile.tempdir = previous
