"""Private hidden checks: an instructor's own checks, kept out of the public course repository.

`--checks-dir PRIVATE` names a folder holding `<lab id>.py` or `labNN.py` (e.g. `10_kubernetes.py`, `lab10.py`),
written with the same authoring API as `grader/checks/labNN.py`:

    from grader.checks.common import Checks, Fail
    CHECKS = Checks()

    @CHECKS.add(points=2, hint="...", section="10.3 ...", visible=False)
    def kustomize_renders(ctx): ...

A check with a public check's name replaces it (in its place); a new name is added after the lab's checks. A
private check is always hidden (its details reach only the instructor). It runs where every check runs: in the
grader's own process, after the notebook's sandbox has finished; the folder is never mounted into a sandbox,
never copied into labs/ or the cohort folder, and its source is never part of any output.
"""

from __future__ import annotations

import dataclasses
import hashlib
import sys
import types
from pathlib import Path

from grader.checks.common import Checks
from grader.labs import REPO


def private_file(checks_dir: Path, lab) -> Path | None:
    """The private checks file for `lab` in `checks_dir`, or None."""
    for name in (f"{lab.id}.py", f"lab{lab.number}.py"):
        path = Path(checks_dir) / name
        if path.is_file():
            return path
    return None


def refuse_public_places(checks_dir: Path, *public: Path) -> None:
    """Refuse a private folder that learners or their sandboxed code could read: inside labs/, solutions/,
    curriculum/ or the cohort folder, or inside what every sandbox mounts read-only (/usr, /etc, the libraries,
    the Python environment and the course library)."""
    import os

    from grader.sandbox import _library_dirs

    where = Path(os.path.realpath(checks_dir))
    seen = [REPO / "labs", REPO / "solutions", REPO / "curriculum", *public]
    seen += [Path(p) for p in ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/etc")]
    seen += [Path(sys.prefix), Path(sys.base_prefix), *map(Path, _library_dirs())]
    for place in seen:
        place = Path(os.path.realpath(place))
        if where == place or place in where.parents:
            raise ValueError(f"--checks-dir {checks_dir} lies inside {place}, which learners or the grading sandbox "
                             "can read: keep private checks elsewhere")


def load(lab_module, checks_dir: Path | None, sources: dict[str, str] | None = None):
    """`lab_module` with the private checks merged over its own (or `lab_module` itself when there are none).

    `sources` ({file name: text}) loads the checks from text instead of from `checks_dir` (a Dask worker)."""
    if sources is None:
        if checks_dir is None:
            return lab_module
        path = private_file(Path(checks_dir), lab_module.LAB)
        if path is None:
            return lab_module
        name, text = path.name, path.read_text(encoding="utf-8")
    elif sources:
        (name, text), = sources.items()
    else:
        return lab_module
    digest = hashlib.sha256(text.encode()).hexdigest()[:16]
    module_name = f"_mlops_private_checks_{lab_module.LAB.number}_{digest}"
    private = sys.modules.get(module_name)
    if private is None:
        private = types.ModuleType(module_name)
        private.__file__ = f"<private checks {name}>"
        exec(compile(text, private.__file__, "exec"), private.__dict__)  # noqa: S102 — the instructor's own code
        sys.modules[module_name] = private
    extra = getattr(private, "CHECKS", None)
    if not isinstance(extra, Checks):
        raise ValueError(f"private checks {name}: define `CHECKS = Checks()` (grader.checks.common) and add checks to it")
    merged = Checks()
    own = {c.name: c for c in extra}
    for check in lab_module.CHECKS:
        merged._checks[check.name] = dataclasses.replace(own[check.name], visible=False) if check.name in own else check
    for check in extra:
        if check.name not in merged._checks:
            missing = [d for d in check.depends if d not in merged._checks]
            if missing:
                raise ValueError(f"private check {check.name!r} depends on unknown checks {missing}")
            merged._checks[check.name] = dataclasses.replace(check, visible=False)
    combined = types.ModuleType(f"{lab_module.__name__}+private")
    combined.__dict__.update({k: v for k, v in vars(lab_module).items() if not k.startswith("__")})
    combined.CHECKS = merged
    combined.PRIVATE = {name: text}
    combined.PRIVATE_NAMES = frozenset(own)
    return combined


def sources_of(lab_module) -> dict[str, str]:
    """The private checks' text a merged module was built from ({} for a lab's own module)."""
    return dict(getattr(lab_module, "PRIVATE", {}))
