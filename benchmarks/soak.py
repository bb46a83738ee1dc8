"""Soak: one cohort run of N generated submissions of lab 10 (issue 13, item 7).

Builds a cohort folder tree of N learners (the solved notebook, the untouched starter and a few broken files:
invalid JSON, an empty object, a notebook whose first cell exits), collects it with `mlops-grade collect`, grades
it with `mlops-grade grade 10 --cohort DIR --jobs 2 --quiet`, and meanwhile samples the grader process's RSS
(and its whole process tree's) once a second. Before and after it counts the grader's leftovers: processes still
alive that were ever in the grader's process tree (or carry this run's marker in their environment), sandbox job
directories (`mlops-grade-*`), other temp dirs and tmpfs mounts in the run's own TMPDIR. Prints a short report
and exits 1 when memory grew (slope over the run above --max-growth-mb) or anything leaked or a grade is missing.

`python benchmarks/soak.py [-n 500] [--jobs 2] [--keep]`   (`make soak N=40`)
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

import psutil

REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
LAB = "10_kubernetes"
sys.path.insert(0, str(REPO))


def build_cohort(root: Path, n: int) -> dict[str, str]:
    """N learners' folders; returns learner -> kind (solved / starter / broken-*)."""
    from grader.assign import build_lab
    from grader.labs import find_lab

    lab = find_lab(LAB).LAB
    solved = build_lab(json.loads(lab.solution_path.read_text()), LAB, with_solutions=True)
    starter = json.loads(lab.lab_path.read_text())
    exits = json.loads(json.dumps(solved))
    exits["cells"].insert(0, {"cell_type": "code", "metadata": {}, "execution_count": None, "outputs": [],
                              "source": "raise SystemExit(3)"})
    kinds = {}
    for i in range(n):
        who = f"s{i:04d}"
        (root / who).mkdir(parents=True)
        path = root / who / f"{LAB}.ipynb"
        if i % 25 == 7:
            kind = ("broken-json", "broken-empty", "broken-exits")[(i // 25) % 3]
            data = {"broken-json": b"{ not a notebook", "broken-empty": b"{}"}.get(kind)
            if data is None:
                data = _tagged(exits, who)
        else:
            kind = "solved" if i % 2 == 0 else "starter"
            data = _tagged(solved if kind == "solved" else starter, who)
        path.write_bytes(data)
        kinds[who] = kind
    return kinds


def _tagged(notebook: dict, who: str) -> bytes:
    copy = json.loads(json.dumps(notebook))
    copy["metadata"]["soak_learner"] = who  # a distinct content hash per learner
    return json.dumps(copy).encode()


def leftovers(tmp: Path) -> dict[str, list[str]]:
    """What the grader leaves in its own TMPDIR: sandbox job dirs, other temp dirs/files, tmpfs mounts."""
    entries = sorted(p.name for p in tmp.iterdir()) if tmp.exists() else []
    mounts = [line.split()[1] for line in Path("/proc/mounts").read_text().splitlines()
              if len(line.split()) > 1 and line.split()[1].startswith(str(tmp))]
    return {"sandboxes": [e for e in entries if e.startswith("mlops-grade-")],
            "temp": [e for e in entries if not e.startswith("mlops-grade-")],
            "mounts": mounts}


def marked_processes(marker: str) -> list[psutil.Process]:
    found = []
    for proc in psutil.process_iter():
        try:
            if proc.environ().get("SOAK_MARKER") == marker:
                found.append(proc)
        except (psutil.Error, OSError):
            continue
    return found


class Sampler(threading.Thread):
    """Once a second: the grader's RSS, its tree's RSS, and every process of its tree (pid, start time)."""

    def __init__(self, pid: int):
        super().__init__(daemon=True)
        self.proc = psutil.Process(pid)
        self.samples: list[tuple[float, int, int, int]] = []  # (t, grader rss, tree rss, tree size)
        self.seen: dict[tuple[int, float], str] = {}
        self.stop = threading.Event()

    def run(self) -> None:
        start = time.monotonic()
        while not self.stop.is_set():
            try:
                rss = self.proc.memory_info().rss
                children = self.proc.children(recursive=True)
            except psutil.Error:
                break
            tree = rss
            for child in children:
                try:
                    tree += child.memory_info().rss
                    self.seen[(child.pid, child.create_time())] = child.name()
                except psutil.Error:
                    continue
            self.samples.append((time.monotonic() - start, rss, tree, len(children)))
            self.stop.wait(1.0)


def slope(points: list[tuple[float, float]]) -> float:
    """Least-squares slope (y per x)."""
    if len(points) < 2:
        return 0.0
    mx = statistics.fmean(x for x, _ in points)
    my = statistics.fmean(y for _, y in points)
    den = sum((x - mx) ** 2 for x, _ in points)
    return sum((x - mx) * (y - my) for x, y in points) / den if den else 0.0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=500, help="submissions (default 500)")
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--max-growth-mb", type=float, default=30.0,
                        help="fail when the grader's RSS trend grows more than this over the graded part of the run")
    parser.add_argument("--keep", action="store_true", help="keep the work folder")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="mlops-soak-"))
    tmp = work / "tmp"  # the grader's own TMPDIR: whatever it leaves behind is its
    tmp.mkdir()
    marker = uuid.uuid4().hex
    env = {**os.environ, "TMPDIR": str(tmp), "SOAK_MARKER": marker, "PYTHONDONTWRITEBYTECODE": "1"}
    failures: list[str] = []
    try:
        kinds = build_cohort(work / "tree", args.n)
        cohort = work / "cohort"
        out = subprocess.run([str(BIN / "mlops-grade"), "collect", str(work / "tree"), "--lab", "10", "--into",
                              str(cohort)], capture_output=True, text=True, env=env, cwd=REPO)
        if out.returncode != 0:
            print(out.stdout, out.stderr, sep="\n")
            return 1
        print(out.stdout.strip().splitlines()[-1] if out.stdout.strip() else "collected")
        before = leftovers(tmp)
        start = time.monotonic()
        grader = subprocess.Popen([str(BIN / "mlops-grade"), "grade", "10", "--cohort", str(cohort), "--jobs",
                                   str(args.jobs), "--quiet"], env=env, cwd=REPO, stdout=subprocess.PIPE,
                                  stderr=subprocess.STDOUT, text=True)
        sampler = Sampler(grader.pid)
        sampler.start()
        output, _ = grader.communicate()
        seconds = time.monotonic() - start
        sampler.stop.set()
        sampler.join(5)
        time.sleep(1.0)  # let killed sandboxes finish dying before we count them
        alive = []
        for (pid, created), name in sampler.seen.items():
            try:
                proc = psutil.Process(pid)
                if proc.create_time() == created and proc.status() != psutil.STATUS_ZOMBIE:
                    alive.append(f"{pid} {name}")
            except psutil.Error:
                continue
        alive += [f"{p.pid} {p.name()} (marker)" for p in marked_processes(marker)
                  if f"{p.pid} {p.name()}" not in alive and p.pid != os.getpid()]
        after = leftovers(tmp)

        from sqlalchemy import create_engine, text

        engine = create_engine(f"sqlite:///{cohort / 'gradebook.db'}")
        with engine.connect() as conn:
            grades = dict(conn.execute(text("SELECT status, count(*) FROM grades GROUP BY status")).all())
        engine.dispose()
        graded = sum(grades.values())

        # --- the report --------------------------------------------------------------------------------------
        mb = 1024 * 1024
        sampler.samples = [s for s in sampler.samples if s[1] > 20 * mb]  # not the exec of the interpreter
        rss = [s[1] / mb for s in sampler.samples]
        tree = [s[2] / mb for s in sampler.samples]
        warm = [s for s in sampler.samples if s[0] >= min(30.0, seconds / 5)]  # after imports and the first jobs
        per_min = slope([(s[0], s[1] / mb) for s in warm]) * 60
        growth = per_min * (warm[-1][0] - warm[0][0]) / 60 if len(warm) > 1 else 0.0
        quarter = max(1, len(warm) // 4)
        first_q = statistics.median(s[1] / mb for s in warm[:quarter]) if warm else 0.0
        last_q = statistics.median(s[1] / mb for s in warm[-quarter:]) if warm else 0.0
        counts = {k: sum(1 for v in kinds.values() if v.startswith(k)) for k in ("solved", "starter", "broken")}
        print(f"soak: {args.n} submissions of lab 10 ({counts['solved']} solved, {counts['starter']} starter, "
              f"{counts['broken']} broken), --jobs {args.jobs}, exit {grader.returncode}")
        print(f"  time      {seconds:.0f} s, {args.n / seconds * 60:.1f} submissions/min")
        print(f"  grades    {graded} in the gradebook {grades}")
        if rss:
            print(f"  RSS       grader min {min(rss):.0f} / median {statistics.median(rss):.0f} / max {max(rss):.0f} MB "
                  f"({len(rss)} samples); after warm-up slope {per_min:+.2f} MB/min ({growth:+.1f} MB over the run), "
                  f"first-quarter median {first_q:.0f} MB, last-quarter median {last_q:.0f} MB")
            print(f"  tree RSS  min {min(tree):.0f} / median {statistics.median(tree):.0f} / max {max(tree):.0f} MB; "
                  f"processes in the tree max {max(s[3] for s in sampler.samples)}; "
                  f"{len(sampler.seen)} seen over the run")
        print(f"  leaks     processes {len(alive)}, sandboxes {len(after['sandboxes']) - len(before['sandboxes'])}, "
              f"temp dirs {len(after['temp']) - len(before['temp'])}, tmpfs mounts "
              f"{len(after['mounts']) - len(before['mounts'])}")
        if grader.returncode != 0:
            failures.append(f"the grader exited {grader.returncode}:\n{output[-3000:]}")
        if graded != args.n:
            failures.append(f"{graded} grades for {args.n} submissions")
        if growth > args.max_growth_mb:
            failures.append(f"the grader's memory grew {growth:.1f} MB over the run (limit {args.max_growth_mb})")
        if alive:
            failures.append(f"leaked processes: {alive[:10]}")
        for kind in ("sandboxes", "temp", "mounts"):
            extra = sorted(set(after[kind]) - set(before[kind]))
            if extra:
                failures.append(f"leaked {kind}: {extra[:10]}{' …' if len(extra) > 10 else ''}")
    finally:
        if not args.keep:
            for line in Path("/proc/mounts").read_text().splitlines():  # never rm -r through a leaked mount
                if len(line.split()) > 1 and line.split()[1].startswith(str(work)):
                    subprocess.run(["umount", "-l", line.split()[1]], check=False)
            shutil.rmtree(work, ignore_errors=True)
        else:
            print(f"  kept      {work}")
    for failure in failures:
        print(f"FAIL: {failure}")
    print("soak: " + ("FAILED" if failures else "passed: flat memory, no leaks, every submission graded once"))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
