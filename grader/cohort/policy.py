"""Late policies: applied at export time to the recorded submission time, never by editing a score.

A policy is written as text (stored per lab in the gradebook):
- `none`                       lateness costs nothing
- `linear:10/hour`, `linear:25/day`   that many percent of the lab's points per started hour/day late, down to 0
- `zero`, `zero:grace=2`       zero once late, after an optional grace period in hours
`grace=H` works with `linear` too (`linear:10/day,grace=1`): lateness is counted after the grace period.
A learner's extension (hours) moves their deadline.
"""

from __future__ import annotations

import datetime as dt
import math
import re
from dataclasses import dataclass


@dataclass(frozen=True)
class LatePolicy:
    kind: str = "none"  # none | linear | zero
    percent: float = 0.0  # linear: percent of the points lost per unit
    unit_hours: float = 1.0  # linear: 1 (hour) or 24 (day)
    grace_hours: float = 0.0

    @classmethod
    def parse(cls, text: str) -> "LatePolicy":
        spec = (text or "none").strip().lower()
        kind, _, rest = spec.partition(":")
        options = [part.strip() for part in rest.split(",") if part.strip()]
        grace, rate = 0.0, None
        for option in options:
            if option.startswith("grace="):
                grace = _number(option[6:], text)
            elif rate is None:
                rate = option
            else:
                raise ValueError(f"late policy {text!r}: unexpected {option!r}")
        if kind == "none" and not options:
            return cls()
        if kind == "zero" and rate is None:
            return cls("zero", grace_hours=grace)
        if kind == "linear" and rate:
            match = re.fullmatch(r"([0-9.]+)%?/(hour|h|day|d)", rate)
            if not match:
                raise ValueError(f"late policy {text!r}: write the rate as PERCENT/hour or PERCENT/day, e.g. linear:10/day")
            percent = _number(match.group(1), text)
            if not 0 <= percent <= 100:
                raise ValueError(f"late policy {text!r}: the percent per unit must lie in [0, 100]")
            return cls("linear", percent, 24.0 if match.group(2).startswith("d") else 1.0, grace)
        raise ValueError(f"unknown late policy {text!r}: use none, linear:P/hour, linear:P/day or zero[:grace=H]")

    def __str__(self) -> str:
        grace = f"grace={self.grace_hours:g}" if self.grace_hours else ""
        if self.kind == "linear":
            unit = "day" if self.unit_hours == 24 else "hour"
            return f"linear:{self.percent:g}/{unit}" + (f",{grace}" if grace else "")
        if self.kind == "zero":
            return "zero" + (f":{grace}" if grace else "")
        return "none"


def _number(text: str, spec: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"late policy {spec!r}: {text!r} is not a number") from None
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"late policy {spec!r}: {text!r} must be a non-negative number")
    return value


@dataclass(frozen=True)
class Lateness:
    hours_late: float  # after the deadline (extension included), before the grace period; 0 when on time
    penalty: float  # points taken off
    score: float  # the score after the penalty


def apply(policy: LatePolicy, score: float, max_score: float, submitted_at: dt.datetime | None,
          deadline: dt.datetime | None, extension_hours: float = 0.0) -> Lateness:
    """The late penalty on `score` for a submission made at `submitted_at`."""
    if deadline is None or submitted_at is None:
        return Lateness(0.0, 0.0, score)
    due = deadline + dt.timedelta(hours=extension_hours)
    late = max(0.0, (submitted_at - due).total_seconds() / 3600)
    counted = late - policy.grace_hours
    if late <= 0 or policy.kind == "none" or counted <= 0:
        return Lateness(late, 0.0, score)
    if policy.kind == "zero":
        return Lateness(late, score, 0.0)
    units = math.ceil(counted / policy.unit_hours - 1e-9)  # a started hour/day counts
    penalty = min(score, max_score * policy.percent / 100 * units)
    return Lateness(late, penalty, score - penalty)


def parse_time(text: str) -> dt.datetime:
    """An ISO 8601 time; one without a zone is read as UTC."""
    try:
        value = dt.datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(f"{text!r} is not an ISO 8601 time (e.g. 2026-03-01T23:59:00+01:00)") from None
    return value.replace(tzinfo=dt.timezone.utc) if value.tzinfo is None else value
