"""What a grade rests on, recorded with it so that anyone can regrade and get the same result: the grader's
version (a hash of the engine, the probes, the lab's checks and solution), the lock's hash, the notebook's hash,
the seeds, the installation secret's fingerprint (never the secret) and the timings.

Checks add *figures*: values the grader measured or recomputed itself (a holdout AUC, a p95 latency, an image
size), never a number the learner typed. They travel with the check's result (`CheckResult.figures`) and are
what the portfolio shows (grader/portfolio.py).
"""

from __future__ import annotations

import hashlib
import platform
from pathlib import Path

from grader.labs import REPO

ENGINE_FILES = ("grade.py", "judge.py", "execute.py", "sandbox.py", "launch.py", "collect.py", "notebook.py", "assign.py",
                "budget.py", "bounded.py", "checks/common.py")
LOCK = REPO / "requirements.txt"


def grader_version(lab_module) -> str:
    """A hash of what decides this lab's grades: the engine, the probes, the lab's checks and solution, and any
    private checks. Changing any of them makes every submission of the lab due for grading again."""
    from grader.cohort import private

    digest = hashlib.sha256()
    grader_dir = REPO / "grader"
    lab = lab_module.LAB
    files = [grader_dir / f for f in ENGINE_FILES] + sorted((grader_dir / "tools").glob("*.py"))
    files += sorted((grader_dir / "checks").glob(f"lab{lab.number}*.py")) + [lab.solution_path]
    for path in files:
        if path.exists():
            digest.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    for name, text in sorted(private.sources_of(lab_module).items()):
        digest.update(b"private\0" + name.encode() + b"\0" + text.encode())
    return digest.hexdigest()[:16]


def sha256_of(path: Path | str) -> str:
    """A file's SHA-256 ("" where it cannot be read)."""
    try:
        return hashlib.sha256(Path(path).read_bytes()).hexdigest()
    except OSError:
        return ""


def bundle(lab_module, notebook: Path | str, digest: str) -> dict:
    """The evidence of one grading run, beside its result (`Result.evidence`). `digest` is the hash of the code
    cells as run, from which (with the secret) the per-submission hidden draws come."""
    lab = lab_module.LAB
    return {"grader_version": grader_version(lab_module), "lock_sha256": sha256_of(LOCK),
            "notebook_sha256": sha256_of(notebook), "code_sha256": digest, "lab_seed": lab.seed,
            "python": platform.python_version(),
            "regrade": f"mlops-grade grade {lab.number} <notebook> --json result.json"}
