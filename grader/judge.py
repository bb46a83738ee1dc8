"""Judge a submission's outputs in the grader's own process: checks in order, with dependencies."""

from __future__ import annotations

import dataclasses
import math
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from grader import collect
from grader.budget import Budget, BudgetSpent
from grader.checks.common import Check, Checks, Fail, Partial, Unavailable
from grader.execute import Execution, clean_text
from grader.labs import Lab
from grader.launch import GraderTimeout
from grader.sandbox import Limits, Sandbox


@dataclass
class CheckResult:
    """One check's verdict."""

    name: str
    description: str
    score: float
    max_score: float
    status: str  # passed | partial | failed | skipped
    message: str
    visible: bool
    hint: str
    section: str
    figures: dict = field(default_factory=dict)  # key → {value, label, unit}: what the grader measured (evidence.py)


@dataclass
class Context:
    """What a check sees: the job's outputs (read safely), parameters, hidden expectations, probes."""

    lab: Lab
    work: Path  # host path of the executed job's work directory (learner-written: untrusted)
    params: dict  # the papermill parameters the notebook ran with
    hidden: dict = field(default_factory=dict)  # expectations kept in the grader process only
    execution: Execution | None = None
    new_sandbox: Callable[[Limits], Sandbox] | None = None  # makes a fresh sandbox for probes
    budget: Budget | None = None  # the submission's time budget, which every probe draws on
    running: Check | None = None  # the check being judged (a visible one may not run probes on hidden inputs)
    figures: dict = field(default_factory=dict)  # the running check's figures (see `figure`)
    _probes: dict = field(default_factory=dict)

    def figure(self, key: str, value, label: str, unit: str = "") -> None:
        """Record a value the grader measured or recomputed for the running check (a holdout AUC, a p95 latency):
        the portfolio shows it as evidence. Never a value the learner reports."""
        value = value.item() if hasattr(value, "item") else value  # numpy scalars
        if isinstance(value, float):
            value = round(value, 6)
        self.figures[key] = {"value": value, "label": label, "unit": unit}

    # --- outputs ---------------------------------------------------------------------------

    def output(self, name: str) -> str:
        """The work-relative path of an output file named inside the lab's output_dir."""
        return f"{self.params.get('output_dir', 'outputs').rstrip('/')}/{name}"

    def read_json(self, relative: str):
        return self._read(collect.read_json, relative)

    def read_csv(self, relative: str):
        return self._read(collect.read_csv, relative)

    def read_text(self, relative: str) -> str:
        return self._read(collect.read_text, relative)

    def exists(self, relative: str) -> bool:
        return collect.exists(self.work, relative)

    def _read(self, reader, relative: str):
        try:
            return reader(self.work, relative)
        except collect.CollectError as err:
            raise Fail(f"{err}{self.why_missing()}") from None

    def why_missing(self) -> str:
        """A pointer to the notebook's own failure, appended to 'not found' messages."""
        if self.execution and not self.execution.ok and self.execution.error:
            if not self.execution.stopped:
                return f" — an earlier error may explain it: {self.execution.error}"
            return f" — the notebook did not finish: {self.execution.error}"
        return ""

    # --- probes: trusted scripts run in a fresh sandbox over the learner's artifacts ---------

    def probe(self, tool: str, inputs: dict | Callable[[], dict] | None = None, args: tuple[str, ...] = (),
              limits: Limits = Limits(wall_seconds=120), needs: tuple[str, ...] = (), raw: bool = False,
              secret: bool = False) -> dict:
        """Run probe `grader/tools/<tool>.py` in a fresh sandbox over the work dir (read-only); its result.

        `inputs` (name → numpy array) are written as .npy files; labels and expected values never go in. A
        callable is called only once `needs` are there (a starter with no artifact costs no split or import).
        Results are cached by a hash of the tool, its arguments and its inputs. A work-relative path in
        `needs` that is not there fails the check without starting a sandbox. A probe that reports an
        error raises `Fail` with it (unless `raw`); one the busy machine starved raises `GraderTimeout`.
        A probe runs with at most what is left of the submission's time budget; with too little left it is
        not started and the check fails saying so.

        `secret`: the inputs hold hidden scenarios (a corrupted CSV, a holdout, hidden mutants or gate cases).
        Only hidden checks may run such a probe, so nothing learner code did or printed on hidden inputs can
        reach visible feedback; a visible check that asks is a grader bug and raises `HiddenInputsError`.
        """
        from grader.launch import inputs_key

        if secret and self.running is not None and self.running.visible:
            raise HiddenInputsError(f"visible check {self.running.name} asked for probe {tool} on hidden inputs")

        for relative in needs:
            try:
                collect.safe_open_bytes(self.work, relative, 0, read=False)
            except collect.CollectError as err:
                raise Fail(f"{err}{self.why_missing()}") from None
        inputs = (inputs() if callable(inputs) else inputs) or {}
        key = inputs_key(tool, tuple(args), inputs) + (":secret" if secret else "")
        if key not in self._probes:
            self._probes[key] = self._run_probe(tool, inputs, tuple(args), limits)
        result = self._probes[key]
        if "error" in result and not raw:
            raise Fail(f"{result['error']}{self.why_missing() if 'not found' in str(result['error']) else ''}")
        return result

    def _run_probe(self, tool: str, inputs: dict, args: tuple[str, ...], limits: Limits) -> dict:
        from grader.launch import run_probe

        cut = False
        if self.budget is not None:
            try:
                wall, cut = self.budget.allow(tool, limits.wall_seconds)
            except BudgetSpent as spent:
                if self.budget.starved():
                    raise GraderTimeout(f"the submission's time budget ran out while the machine was busy "
                                        f"({self.budget.summary()})") from None
                raise Fail(str(spent)) from None
            limits = dataclasses.replace(limits, wall_seconds=wall)
        sandbox = self.new_sandbox(limits)
        try:
            outcome = run_probe(sandbox, tool, self.work, inputs, args)
        finally:
            sandbox.cleanup()
        if self.budget is not None:
            self.budget.spend(tool, outcome.run, cut)
            if cut and outcome.run.timed_out:
                return {"error": f"it was stopped after {limits.wall_seconds:.0f} s, when this submission's time "
                                 f"budget ran out ({self.budget.summary()})"}
        return outcome.result

    def once(self, key: str, compute: Callable[[], dict]) -> dict:
        """`compute()`'s result, computed once per submission and kept beside the probes' (work a lab does in the
        grader's own process, like lab 08's container run, which its checks share)."""
        if key not in self._probes:
            self._probes[key] = compute()
        return self._probes[key]

    def serve(self, plan: dict, limits: Limits = Limits(wall_seconds=120), label: str = "") -> dict:
        """Start a learner's server in a fresh sandbox (its own loopback-only network), talk to it, stop it.

        `plan` is the live-service probe's plan (see grader/tools/service_probe.py): the command, port, health
        path, contract requests and an optional bounded load test. Returns what the client saw.
        """
        import json

        import numpy as np

        return self.probe("service_probe", {"plan": np.array(json.dumps(plan, sort_keys=True))},
                          args=("--label", label), limits=limits)


class HiddenInputsError(RuntimeError):
    """A visible check asked for a probe over hidden inputs: a bug in the checks, never the learner's fault."""


def judge(checks: Checks, ctx: Context, include_hidden: bool = True) -> list[CheckResult]:
    """Run the checks in declaration order (dependencies come first by construction)."""
    results: dict[str, CheckResult] = {}
    for check in checks:
        if not check.visible and not include_hidden:
            continue
        ctx.running, ctx.figures = check, {}
        try:
            results[check.name] = _run_one(check, ctx, results)
            results[check.name].figures = dict(ctx.figures)
        finally:
            ctx.running, ctx.figures = None, {}
    return list(results.values())


MESSAGE_LIMIT = 2000  # characters of a check's message: learner values quoted in it can be any size


def _run_one(check: Check, ctx: Context, done: dict[str, CheckResult]) -> CheckResult:
    base = dict(name=check.name, description=check.description, max_score=check.points,
                visible=check.visible, hint=check.hint, section=check.section)
    for upstream in check.depends:
        if upstream not in done or done[upstream].status not in ("passed", "partial"):
            return CheckResult(score=0.0, status="skipped", message=f"skipped: it needs {upstream} to pass first "
                               f"(once it does, this checks that {_lower_first(check.description)})", **base)
    try:
        outcome = check.func(ctx)
    except Fail as failure:
        return CheckResult(score=0.0, status="failed", message=clean_text(str(failure), MESSAGE_LIMIT), **base)
    except Unavailable as why:  # cannot run on this machine: its points leave the total
        return CheckResult(score=0.0, status="skipped", message=clean_text(f"skipped: {why}", MESSAGE_LIMIT),
                           **{**base, "max_score": 0.0})
    except GraderTimeout:
        raise  # the machine's problem, not the learner's: the whole submission is regraded
    except Exception:  # a bug in the check or a shape it did not foresee: never crash the batch
        detail = clean_text(traceback.format_exc(limit=3).strip().splitlines()[-1], MESSAGE_LIMIT // 2)
        return CheckResult(score=0.0, status="failed", message=f"the grader could not judge this ({detail}); "
                           "please report it to your instructor", **base)
    if isinstance(outcome, Partial):
        fraction = float(outcome.fraction)
        fraction = min(max(fraction, 0.0), 1.0) if math.isfinite(fraction) else 0.0
        status = "passed" if fraction >= 1 else "partial" if fraction > 0 else "failed"
        return CheckResult(score=round(check.points * fraction, 4), status=status,
                           message=clean_text(str(outcome.message), MESSAGE_LIMIT), **base)
    return CheckResult(score=check.points, status="passed", message="", **base)


def _lower_first(text: str) -> str:
    text = text.rstrip(".")
    return text[:1].lower() + text[1:] if text[:2] != text[:2].upper() else text
