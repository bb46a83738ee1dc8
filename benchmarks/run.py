"""Benchmarks, printed as ratios against baselines measured in the same run (no absolute targets in tests).

1. startup: `python -c pass` (baseline) vs `python -c "import mlops_kit"` and `mlops-grade --help`
   (target: each under 0.5 s in absolute terms, as the foundation issue asks);
2. sandbox overhead: grading lab 03's reference with --no-sandbox (baseline) vs in bubblewrap;
3. grading speed: each lab's reference and untouched starter graded by this checkout and by the baseline
   commit (`BASELINE`, checked out into a temporary git worktree), alternately, in the same run; the target
   is ≤ 0.5× the baseline's seconds (issue "Grading you can trust").

`python benchmarks/run.py [--labs 03 04] [--skip-startup] [--repeats N]`
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BIN = Path(sys.executable).parent
REPO = Path(__file__).resolve().parent.parent
REPEATS = 5
BASELINE = "8a4ddfe"  # the last commit before the grading speed-ups (2026-12-01)
TARGET = 0.5

GRADE_ONE = """
import json, os, sys, time
import grader.sandbox
# the venv's editable install points the sandboxed kernel at this checkout's mlops_kit: mount it for both trees
grader.sandbox._library_dirs = lambda: (os.environ["BENCH_LIBRARY"],)
from grader.grade import grade_notebook
from grader.labs import find_lab
module = find_lab(sys.argv[1])
reference = sys.argv[2] == "reference"
start = time.perf_counter()
result = grade_notebook(module, module.LAB.solution_path if reference else module.LAB.lab_path, reference=reference)
print(json.dumps({"seconds": time.perf_counter() - start, "score": result.score, "max": result.max_score,
                  "status": result.status}))
"""


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


def startup_rows() -> list[tuple[str, float, float]]:
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
    return rows


def baseline_tree() -> Path | None:
    """A worktree of the baseline commit, or None (with the reason printed) where it cannot be made."""
    folder = Path(tempfile.mkdtemp(prefix="mlops-bench-baseline-"))
    done = subprocess.run(["git", "-C", str(REPO), "worktree", "add", "--detach", str(folder), BASELINE],
                          capture_output=True, text=True)
    if done.returncode != 0:
        print(f"grading speed vs baseline skipped: commit {BASELINE} is not here ({done.stderr.strip()[:200]})")
        return None
    return folder


def grade_with(tree: Path, lab: str, kind: str) -> dict:
    """Grade one lab's reference or starter with the code in `tree`, in a fresh process."""
    env = {**os.environ, "PYTHONPATH": str(tree), "BENCH_LIBRARY": str(REPO / "mlops_kit")}
    done = subprocess.run([sys.executable, "-c", GRADE_ONE, lab, kind], cwd=tree, env=env, capture_output=True,
                          text=True, timeout=900)
    if done.returncode != 0:
        return {"seconds": float("nan"), "error": done.stderr.strip().splitlines()[-1:]}
    return json.loads(done.stdout.strip().splitlines()[-1])


def speed_rows(labs: list[str], repeats: int) -> list[tuple[str, float, float, float]]:
    tree = baseline_tree()
    if tree is None:
        return []
    rows = []
    try:
        for lab in labs:
            for kind in ("reference", "starter"):
                before, after = [], []
                for _ in range(repeats):  # alternate, so both see the same machine
                    before.append(grade_with(tree, lab, kind)["seconds"])
                    after.append(grade_with(REPO, lab, kind)["seconds"])
                b, a = statistics.median(before), statistics.median(after)
                rows.append((f"lab {lab} {kind}", b, a, a / b if b else float("nan")))
                print(f"  lab {lab} {kind:<9} baseline {b:6.1f} s   now {a:6.1f} s   ×{a / b:4.2f}", flush=True)
    finally:
        subprocess.run(["git", "-C", str(REPO), "worktree", "remove", "--force", str(tree)], capture_output=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--labs", nargs="*", default=["01", "02", "03", "04", "05", "06"])
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--skip-startup", action="store_true")
    args = parser.parse_args()
    slow = []
    if not args.skip_startup:
        rows = startup_rows()
        width = max(len(r[0]) for r in rows)
        for label, seconds, ratio in rows:
            print(f"{label:<{width}}  {seconds:7.3f} s  ×{ratio:5.2f}")
        slow = [label for label, seconds, _ in rows[1:3] if seconds >= 0.5]
    print(f"grading speed, this checkout vs baseline {BASELINE} (target ≤ ×{TARGET}):", flush=True)
    speed = speed_rows(args.labs, args.repeats)
    if speed:
        total_before, total_after = sum(r[1] for r in speed), sum(r[2] for r in speed)
        print(f"all gradings: baseline {total_before:.1f} s, now {total_after:.1f} s: "
              f"×{total_after / total_before:.2f}")
        missed = [r[0] for r in speed if not r[3] <= TARGET]
        print("every lab at or under the target" if not missed else f"over the ×{TARGET} target: {missed}")
    if slow:
        sys.exit(f"over the 0.5 s startup target: {slow}")


if __name__ == "__main__":
    main()
