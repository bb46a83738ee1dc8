"""Grade each group of adversarial submissions once per test run, in one batch, and share the results.

The batch is graded with a copy of lab 03's checks module that has short limits (20 s per cell, 150 s per
notebook, 1 GiB, 200 MB of disk), so the whole suite takes a few minutes. Under pytest-xdist the first
worker that needs a group grades it while holding a file lock; the others load its pickled results.
"""

from __future__ import annotations

import dataclasses
import os
import pickle
import types
import uuid
from pathlib import Path

import adversarial_cases as cases
import pytest
from adversarial_helpers import cgroups_work
from filelock import FileLock

from grader.checks import lab03
from grader.grade import grade_batch

SENTINEL = "zz_sentinel"


def fast_lab03():
    """Lab 03 with short limits: same checks, same data, same solution."""
    module = types.ModuleType("lab03_fast")
    module.__dict__.update({k: v for k, v in vars(lab03).items() if not k.startswith("__")})
    # 1 GiB for the whole job in a cgroup; without one, RLIMIT_AS applies per process and a kernel with
    # scikit-learn needs the lab's own 3 GiB of address space
    module.LAB = dataclasses.replace(lab03.LAB, timeout=150, cell_timeout=20,
                                     memory_bytes=2**30 if cgroups_work() else 3 * 2**30, disk_bytes=200 * 2**20)
    return module


@dataclasses.dataclass
class Graded:
    """A graded group: cases in batch order (the sentinel last), their results and kept work dirs."""

    cases: list
    results: dict
    kept: dict
    submissions: dict
    token: str = ""

    def after(self, name: str):
        """The case graded right after `name` in the same batch, and its result."""
        names = [c.name for c in self.cases]
        following = self.cases[names.index(name) + 1]
        return following, self.results[following.name]


def _build(name: str, folder: Path) -> tuple[list, dict]:
    submissions = folder / "submissions"
    submissions.mkdir(parents=True, exist_ok=True)
    sentinel = cases.Case(SENTINEL, "the reference answers, graded after the attacks", cases.dump(cases.solved()),
                          score=cases.FULL, output=r"^$")
    if name == "broken":
        group = cases.broken_cases()
    elif name == "resources":
        group = cases.resource_cases()
    else:
        group = cases.cheat_cases(other_submission=submissions / f"{SENTINEL}.ipynb")
    group.append(sentinel)
    paths = {}
    for case in group:
        path = submissions / f"{case.name}{case.suffix}"
        if case.link_to:
            path.symlink_to(case.link_to)
        else:
            path.write_bytes(case.data)
        paths[case.name] = path
    return group, paths


def _grade(name: str, folder: Path) -> Graded:
    group, paths = _build(name, folder)
    kept = folder / "kept"
    token = f"fake-instructor-token-{uuid.uuid4().hex}"
    previous = os.environ.get(cases.TOKEN_VAR)
    os.environ[cases.TOKEN_VAR] = token  # the grader's environment holds a secret; no notebook may see it
    try:
        # two sandboxes at a time, also under xdist: a worker that needs a group another worker is grading waits
        results = grade_batch(fast_lab03(), [paths[c.name] for c in group], jobs=2, keep_dir=kept, isolate=True)
    finally:
        if previous is None:
            os.environ.pop(cases.TOKEN_VAR, None)
        else:
            os.environ[cases.TOKEN_VAR] = previous
    by_name = {c.name: r for c, r in zip(group, results)}
    dirs = {c.name: kept / f"{i:03d}-{paths[c.name].stem}" for i, c in enumerate(group)}
    for case in group:
        case.data = None  # keep the pickle small
    return Graded(cases=group, results=by_name, kept=dirs, submissions=paths, token=token)


@pytest.fixture(scope="session")
def adversarial_root(tmp_path_factory) -> Path:
    base = tmp_path_factory.getbasetemp()  # under xdist, its parent is shared by the workers of this run
    root = (base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base) / "adversarial"
    root.mkdir(exist_ok=True)
    return root


@pytest.fixture(scope="session")
def graded_group(adversarial_root, isolate):
    """graded_group(name) → `Graded`, computed once per run across xdist workers."""
    memo: dict[str, Graded] = {}

    def get(name: str) -> Graded:
        if name in memo:
            return memo[name]
        folder = adversarial_root / name
        folder.mkdir(exist_ok=True)
        done = folder / "graded.pickle"
        with FileLock(str(folder / ".lock")):
            if done.exists():
                memo[name] = pickle.loads(done.read_bytes())
            else:
                memo[name] = _grade(name, folder)
                done.write_bytes(pickle.dumps(memo[name]))
        return memo[name]

    return get
