"""One time budget per submission: the notebook and every probe draw on it, and the result says who spent it.

A submission gets `Lab.budget` seconds of wall time in all. The notebook runs first with at most its own
`Lab.timeout`; each probe then runs with the smaller of its own limit and what is left. A probe that would
start with almost nothing left is not started: its checks fail saying the budget ran out, and where.
So a submission that stalls (a gate that ignores alarms, tests that sleep) holds a grading slot for at most
the budget, not for the sum of every probe's limit.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field

MIN_PROBE_SECONDS = 5.0  # a probe needs this much left to start at all (a fresh interpreter, imports)


@dataclass
class Budget:
    """Wall time left to one submission, and how it was spent."""

    seconds: float
    started: float = field(default_factory=time.monotonic)
    parts: list[tuple[str, float, bool]] = field(default_factory=list)  # (part, seconds, cut off by the budget)
    cpu_seconds: float = 0.0  # CPU the parts used, where a cgroup measured it
    cpu_known: bool = True
    load: float = 0.0  # the highest load any part saw
    ran_out: str = ""  # the first part the budget cut off or refused

    def remaining(self) -> float:
        return self.seconds - (time.monotonic() - self.started)

    def allow(self, part: str, wall_seconds: float) -> tuple[float, bool]:
        """The wall time `part` may use (its own limit, or what is left) and whether the budget is the bound.

        Raises `BudgetSpent` when too little is left to start it."""
        left = self.remaining()
        if left < MIN_PROBE_SECONDS:
            self.ran_out = self.ran_out or part
            raise BudgetSpent(self, part)
        return (wall_seconds, False) if wall_seconds <= left else (left, True)

    def spend(self, part: str, run, cut: bool) -> None:
        """Record a finished part from its sandbox `RunResult`; a part the budget timed out is where it ran out."""
        timed_out_here = cut and run.timed_out
        self.parts.append((part, run.seconds, timed_out_here))
        if timed_out_here:
            self.ran_out = self.ran_out or part
        if run.cpu_seconds is None:
            self.cpu_known = False
        else:
            self.cpu_seconds += run.cpu_seconds
        self.load = max(self.load, run.load)

    def record(self, part: str, seconds: float, timed_out: bool, cut: bool) -> None:
        """Record a part that ran outside a sandbox (no cgroup measured its CPU), e.g. a container build."""
        self.parts.append((part, seconds, cut and timed_out))
        if cut and timed_out:
            self.ran_out = self.ran_out or part
        self.cpu_known = False
        self.load = max(self.load, os.getloadavg()[0])

    def starved(self) -> bool:
        """Whether the budget ran out because the machine was too busy (see `launch.starved`): regrade it."""
        if not self.cpu_known:
            return False
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
        spent = time.monotonic() - self.started
        return self.cpu_seconds < 0.5 * spent and self.load > cores + 0.5

    def summary(self) -> str:
        """Where the time went, e.g. 'time budget 420 s: notebook 230 s, dvc_probe 120 s (cut off)'."""
        shown = ", ".join(f"{part} {seconds:.0f} s{' (cut off)' if cut else ''}" for part, seconds, cut in self.parts)
        where = f"; it ran out during {self.ran_out}" if self.ran_out else ""
        return f"time budget {self.seconds:.0f} s for the notebook and all its checks: {shown or 'nothing ran'}{where}"

    def to_json(self) -> dict:
        return {"seconds": self.seconds, "ran_out": self.ran_out,
                "parts": [{"part": p, "seconds": round(s, 2), "cut_off": c} for p, s, c in self.parts]}


class BudgetSpent(Exception):
    """Too little of the submission's time budget is left to start a part."""

    def __init__(self, budget: Budget, part: str):
        super().__init__(f"not run: this submission's time budget was used up before {part} could start "
                         f"({budget.summary()})")
        self.budget, self.part = budget, part
