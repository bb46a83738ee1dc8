"""How checks are written: the `Checks` registry, `Fail`, `Partial`, and helpers every lab shares.

A check is a plain function of one argument, the judging context (`grader.judge.Context`).
It returns None (full points), returns `Partial(fraction, message)`, or raises `Fail(message)`.
A failure message says what was expected, what happened and where to look.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable


class Fail(Exception):
    """A check failed; the message is shown to the learner (for visible checks)."""


class Unavailable(Exception):
    """The check cannot run on this machine (no cluster reachable, no CUDA device): it is reported as
    "skipped: <why>", neither passes nor costs points (its points leave the total), and never says "passed"."""


@dataclass(frozen=True)
class Partial:
    """Part of a check's points: `fraction` in [0, 1] and why not all of them."""

    fraction: float
    message: str


@dataclass(frozen=True)
class Check:
    """One graded check."""

    name: str  # unique within a lab; used in `depends`
    func: Callable  # func(ctx) -> None | Partial, raises Fail
    points: float  # what a pass is worth
    visible: bool  # learners can run it with `mlops-grade check`; hidden ones run only at grading
    hint: str  # what to try when it fails
    section: str  # the lesson section to reread
    depends: tuple[str, ...] = field(default_factory=tuple)  # checks that must pass first
    description: str = ""  # one line: what it verifies
    runs_only_with: str = ""  # what a machine needs for this check to run at all ("a Kubernetes cluster"): such a
    # check raises Unavailable elsewhere, and its verdicts are proven by its own tests, not by wrong-answer cases


class Checks:
    """An ordered registry of a lab's checks; `@CHECKS.add(...)` registers a function."""

    def __init__(self) -> None:
        self._checks: dict[str, Check] = {}

    def add(self, *, points: float, hint: str, section: str, visible: bool = True, depends=(), runs_only_with=""):
        def register(func: Callable) -> Callable:
            name = func.__name__
            if name in self._checks:
                raise ValueError(f"check {name!r} is defined twice")
            missing = [d for d in depends if d not in self._checks]
            if missing:
                raise ValueError(f"check {name!r} depends on {missing}, which must be defined before it")
            doc = (func.__doc__ or "").strip().splitlines()
            self._checks[name] = Check(
                name=name, func=func, points=points, visible=visible, hint=hint, section=section,
                depends=tuple(depends), description=doc[0] if doc else name, runs_only_with=runs_only_with,
            )
            return func

        return register

    def __iter__(self):
        return iter(self._checks.values())

    def __len__(self) -> int:
        return len(self._checks)

    def __getitem__(self, name: str) -> Check:
        return self._checks[name]

    @property
    def max_score(self) -> float:
        return sum(c.points for c in self._checks.values())


# --- helpers shared by the labs' checks ---------------------------------------------------------


def require_keys(obj: object, keys: tuple[str, ...], where: str) -> dict:
    """`obj` must be a JSON object holding every key in `keys`."""
    if not isinstance(obj, dict):
        raise Fail(f"{where} must hold a JSON object, found {type(obj).__name__}")
    missing = [k for k in keys if k not in obj]
    if missing:
        raise Fail(f"{where} lacks the key(s) {', '.join(missing)}; found: {', '.join(map(str, obj)) or 'none'}")
    return obj


def require_number(value: object, name: str, low: float = -math.inf, high: float = math.inf) -> float:
    """`value` must be a finite real number in [low, high]."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise Fail(f"{name} must be a finite number, found {value!r}")
    if not low <= value <= high:
        raise Fail(f"{name} must lie in [{low}, {high}], found {value}")
    return float(value)


def require_close(reported: float, recomputed: float, name: str, tol: float, source: str = "your saved model") -> None:
    """A reported number must agree with the grader's recomputation (from `source`) within `tol`."""
    if abs(reported - recomputed) > tol:
        raise Fail(
            f"you reported {name} = {reported:.6f}, but recomputing it from {source} gives "
            f"{recomputed:.6f} (allowed difference {tol:g})"
        )


# --- the course dataset at grading: public rows for the notebook, a holdout kept by the grader ---------


def write_public_and_holdout(work, relative: str, share: float, seed: int):
    """Split the course dataset into (public, holdout), stratified; write only `public` to `work/relative`."""
    from grader.datasets import breast_cancer_frame, stratified_rows

    frame = breast_cancer_frame()
    first, second = stratified_rows(share, seed)  # train_test_split(frame, test_size=share, stratify=target, …)
    public, holdout = frame.iloc[first], frame.iloc[second]
    public, holdout = public.reset_index(drop=True), holdout.reset_index(drop=True)
    path = work / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    public.to_csv(path, index=False)
    return public, holdout


def write_dvc_pointer(csv) -> str:
    """Write a DVC-style `<csv>.dvc` file beside `csv` (as `dvc add` would); return the CSV's md5."""
    import hashlib

    md5 = hashlib.md5(csv.read_bytes()).hexdigest()
    csv.with_name(csv.name + ".dvc").write_text(
        f"outs:\n- md5: {md5}\n  size: {csv.stat().st_size}\n  hash: md5\n  path: {csv.name}\n")
    return md5


def public_frame(ctx):
    """The data the notebook was given: the grader's own copy when grading, the learner's CSV in a self-check."""
    if "public" in ctx.hidden:
        return ctx.hidden["public"]
    return ctx.read_csv(ctx.params["data_path"])


def seeded_split(ctx, test_size: float):
    """The lab's reference split of `public_frame(ctx)` with the run's seed (week 1's `stratified_split`)."""
    from mlops_kit.data import stratified_split

    frame = public_frame(ctx)
    return stratified_split(frame.drop(columns="target"), frame["target"], test_size=test_size,
                            seed=int(ctx.params["seed"]))


def solution_file(lab, name: str) -> str:
    """A file the lab's solution notebook writes with `%%writefile {output_dir}/<name>`, solution markers and hints
    dropped: what a grader serves or builds as the reference."""
    import json

    for cell in json.loads(lab.solution_path.read_text(encoding="utf-8"))["cells"]:
        source = "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]
        if source.startswith(f"%%writefile {{output_dir}}/{name}"):
            lines = source.splitlines()[1:]
            return "\n".join(line for line in lines if not line.startswith(("### BEGIN", "### END", "# Hint:"))) + "\n"
    raise RuntimeError(f"the solution of {lab.id} writes no {name}")


def log_tail(text: str, lines: int = 6, width: int = 240) -> str:
    """The last non-blank `lines` of a log, each cut at `width`, joined with " | " for a one-line message."""
    tail = [line for line in str(text).splitlines() if line.strip()][-lines:]
    return " | ".join(line[:width] for line in tail)


def learner_yaml(text: str, name: str):
    """A learner's YAML file read as GitHub and Kubernetes read it (YAML 1.2: `on:` stays a key), within the grader's
    limits: aliases are shared by the parser, so the result is walked with a budget before any check walks it —
    one that expands past `bounded.MAX_NODES` nodes or nests past `bounded.MAX_DEPTH` levels fails (threat class 1)."""
    from grader import bounded
    from mlops_kit.cicd import load_yaml

    try:
        found = load_yaml(text)
    except Exception as err:  # noqa: BLE001 — any parse error is the learner's to see
        first = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise Fail(f"{name} is not valid YAML: {first}") from None
    stack, nodes = [(found, 1)], 0
    while stack:
        item, depth = stack.pop()
        nodes += 1
        if nodes > bounded.MAX_NODES:
            raise Fail(f"{name} holds more than {bounded.MAX_NODES} entries once its YAML aliases are expanded: "
                       "write the entries out")
        if depth > bounded.MAX_DEPTH:
            raise Fail(f"{name} is nested deeper than {bounded.MAX_DEPTH} levels (or contains itself through an alias)")
        if isinstance(item, dict):
            stack.extend((value, depth + 1) for value in item.values())
        elif isinstance(item, list):
            stack.extend((value, depth + 1) for value in item)
    return found
