"""Benchmarks, printed as ratios against baselines measured in the same run (no absolute targets in tests).

1. startup: `python -c pass` (baseline) vs `python -c "import mlops_kit"` and `mlops-grade --help`
   (target: each under 0.5 s in absolute terms, as the foundation issue asks);
2. sandbox overhead: grading lab 03's reference with --no-sandbox (baseline) vs in bubblewrap.
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import time
from pathlib import Path

BIN = Path(sys.executable).parent
REPEATS = 5


def timed(command: list[str], repeats: int = REPEATS) -> float:
    """Median wall-clock seconds of `command` over `repeats` runs (after one warm-up)."""
    subprocess.run(command, check=True, capture_output=True)
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        subprocess.run(command, check=True, capture_output=True)
        samples.append(time.perf_counter() - start)
    return statistics.median(samples)


def grading_seconds(no_sandbox: bool) -> float:
    from grader.grade import grade_notebook
    from grader.labs import find_lab

    module = find_lab("03")
    start = time.perf_counter()
    result = grade_notebook(module, module.LAB.solution_path, reference=True, isolate=not no_sandbox)
    assert result.score == result.max_score, result.output
    return time.perf_counter() - start


def main() -> None:
    base = timed([sys.executable, "-c", "pass"])
    rows = [("python -c pass (baseline)", base, 1.0)]
    for label, command in (("import mlops_kit", [sys.executable, "-c", "import mlops_kit"]),
                           ("mlops-grade --help", [str(BIN / "mlops-grade"), "--help"])):
        seconds = timed(command)
        rows.append((label, seconds, seconds / base))
    from grader.sandbox import probe_bubblewrap

    plain = grading_seconds(no_sandbox=True)
    rows.append(("grade lab 03 reference, no sandbox (baseline)", plain, 1.0))
    if probe_bubblewrap() is None:
        boxed = grading_seconds(no_sandbox=False)
        rows.append(("grade lab 03 reference, sandboxed", boxed, boxed / plain))
    else:
        print(f"sandboxed grading skipped: {probe_bubblewrap()}")
    width = max(len(r[0]) for r in rows)
    for label, seconds, ratio in rows:
        print(f"{label:<{width}}  {seconds:7.3f} s  ×{ratio:5.2f}")
    slow = [label for label, seconds, _ in rows[1:3] if seconds >= 0.5]
    if slow:
        sys.exit(f"over the 0.5 s startup target: {slow}")


if __name__ == "__main__":
    main()
