"""Cohort throughput against nbgrader: the same lab, the same N generated submissions, graded by both in one run.

Lab 03 (`solutions/03_classifier.ipynb`). N learners' notebooks are generated from the reference (`plan`): mostly
solved, some wrong (one mistake each, from `grader/checks/lab03_cases.py`), some untouched starters, and a few
broken ones (a file that is not JSON, a first cell that raises SystemExit, a first cell that kills its kernel).
Then, one after the other:

1. mlops-grade: `mlops-grade collect TREE --lab 03 --into COHORT`, then, timed,
   `mlops-grade grade 03 --cohort COHORT --db sqlite:///... --jobs J --quiet` (every submission in its own
   sandbox, verdicts from probes outside the kernel);
2. nbgrader 0.9.6, installed into its own venv (`build/bench-cohort/nbgrader-venv`, never the project's), with
   the lab converted by `benchmarks/nbgrader_lab.py` (solution regions are nbgrader's markers already; the
   checks become test cells doing the same computations in the kernel): a course directory,
   `nbgrader generate_assignment`, the students imported, the same notebooks as `submitted/`, then, timed,
   `nbgrader autograde` (its default: one notebook at a time; 120 s per cell, as the lab's cell timeout);
3. bare papermill: the same notebook files executed J at a time in the project venv's kernel, in a work dir
   holding the same public CSV, with the grader's parameters: no sandbox, no restore, no checks (our overhead).

Prints a table (tool, submissions, seconds, submissions/min), the scores each grader gave per kind of
submission, writes `build/bench-cohort/result.json`, and ends with the line
`cohort throughput vs nbgrader: ×N.NN` (mlops-grade's submissions per minute over nbgrader's).

`python benchmarks/bench_cohort.py [-n 40] [--jobs J (default cores + 1)] [--keep]`   (`make bench-cohort`)
"""

from __future__ import annotations

import argparse
import concurrent.futures
import csv
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
OUT = REPO / "build" / "bench-cohort"
NBGRADER_VENV = OUT / "nbgrader-venv"
LAB, ASSIGNMENT, NOTEBOOK = "03_classifier", "ps03", "03_classifier.ipynb"
DATA = "data/breast_cancer.csv"
NBGRADER = "nbgrader==0.9.6"
KERNEL_PACKAGES = ("scikit-learn", "pandas", "numpy", "scipy", "matplotlib", "skops")  # what the lab imports
PIP_NOISE = "is ignored: it is neither a file nor a directory"
CELL_TIMEOUT = 120  # seconds, the lab's own cell_timeout
KINDS = ("solved", "wrong", "starter", "broken")
GOAL = 3.0  # the target, ours / nbgrader's submissions per minute
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

import nbgrader_lab  # noqa: E402

# --- the submissions -------------------------------------------------------------------------------------------


def plan(n: int, kinds: list[str] | None = None) -> list[str]:
    """Learner i's kind of submission: about 3 in 4 solved or wrong, 1 in 8 starter, 1 in 13 broken
    (`kinds`, when given, cycled instead: a smoke run of some kinds only)."""
    if kinds:
        return [kinds[i % len(kinds)] for i in range(n)]
    broken = ("broken-json", "broken-raises", "broken-dies")
    out = []
    for i in range(n):
        if i % 13 == 6:
            out.append(broken[(i // 13) % len(broken)])
        elif i % 8 == 3:
            out.append("starter")
        elif i % 4 == 1:
            out.append("wrong")
        else:
            out.append("solved")
    return out


def submissions(n: int, kinds: list[str] | None = None) -> dict[str, tuple[str, bytes, dict | None]]:
    """learner -> (kind, the file's bytes, the notebook or None): the generated cohort."""
    from grader import assign
    from grader.checks.lab03_cases import CASES
    from grader.labs import find_lab

    lab = find_lab(LAB).LAB
    solved = assign.build_lab(json.loads(lab.solution_path.read_text()), LAB, with_solutions=True)
    starter = json.loads(lab.lab_path.read_text())
    out, wrong = {}, 0
    for i, kind in enumerate(plan(n, kinds)):
        who = f"s{i:04d}"
        if kind == "broken-json":
            out[who] = (kind, b"{ not a notebook", None)
            continue
        if kind == "wrong":
            case = CASES[wrong % len(CASES)]
            wrong += 1
            nb, kind = case.notebook(solved), f"wrong-{case.name}"
        elif kind in ("broken-raises", "broken-dies"):
            nb = json.loads(json.dumps(solved))
            first = "raise SystemExit(3)" if kind == "broken-raises" else "import os\nos._exit(3)"
            nb["cells"].insert(0, {"cell_type": "code", "metadata": {}, "execution_count": None, "outputs": [],
                                   "source": first})
        else:
            nb = json.loads(json.dumps(solved if kind == "solved" else starter))
        nb["metadata"]["bench_learner"] = who  # a distinct content hash per learner
        out[who] = (kind, assign.dumps(nb).encode(), nb)
    return out


def family(kind: str) -> str:
    """solved / wrong / starter / broken."""
    return kind.split("-", 1)[0]


def public_data(folder: Path) -> tuple[Path, Path]:
    """The lab's public CSV (what the grader gives a notebook) and its hidden holdout, written into `folder`."""
    from grader.checks.common import write_public_and_holdout
    from grader.checks.lab03 import HOLDOUT_SEED, HOLDOUT_SHARE

    _, holdout = write_public_and_holdout(folder, DATA, HOLDOUT_SHARE, HOLDOUT_SEED)
    holdout_csv = folder / "holdout.csv"
    holdout.to_csv(holdout_csv, index=False)
    return folder / DATA, holdout_csv


def quiet_env(**extra: str) -> dict[str, str]:
    """This process's environment; notebooks run as graded (self_check stays quiet), no figures shown."""
    return {**os.environ, "MLOPS_GRADING": "1", "MPLBACKEND": "Agg", "PYTHONDONTWRITEBYTECODE": "1", **extra}


# --- mlops-grade -----------------------------------------------------------------------------------------------


def run_ours(work: Path, subs: dict, jobs: int, entrants: bool = True) -> dict:
    """Collect the tree and grade the cohort; seconds (the grade command only) and each learner's score.
    `entrants=False`: every sandboxed tool a fresh Python (MLOPS_GRADE_ENTRANTS=0), the path before entrants."""
    work = work / ("ours" if entrants else "ours-classic")
    tree, cohort = work / "tree", work / "cohort"
    for who, (_, data, _) in subs.items():
        (tree / who).mkdir(parents=True)
        (tree / who / NOTEBOOK).write_bytes(data)
    db = f"sqlite:///{work / 'gradebook.db'}"
    collect = subprocess.run([str(BIN / "mlops-grade"), "collect", str(tree), "--lab", "03", "--into", str(cohort)],
                             capture_output=True, text=True, cwd=REPO)
    if collect.returncode != 0:
        raise RuntimeError(f"mlops-grade collect failed:\n{collect.stdout}\n{collect.stderr}")
    start = time.monotonic()
    done = subprocess.run([str(BIN / "mlops-grade"), "grade", "03", "--cohort", str(cohort), "--db", db, "--jobs",
                           str(jobs), "--quiet"], capture_output=True, text=True, cwd=REPO,
                          env={**os.environ, "MLOPS_GRADE_ENTRANTS": "1" if entrants else "0"})
    seconds = time.monotonic() - start
    (OUT / f"mlops-grade{'' if entrants else '-classic'}.log").write_text(done.stdout + done.stderr)
    return {"seconds": seconds, "exit": done.returncode, "output": (done.stdout + done.stderr)[-3000:],
            "scores": our_scores(db)}


def our_scores(db: str) -> dict[str, dict]:
    """learner -> {score, max, status} from the gradebook."""
    from sqlalchemy import create_engine, text

    engine = create_engine(db)
    with engine.connect() as conn:
        rows = conn.execute(text("SELECT learner_id, score, max_score, status FROM grades")).all()
    engine.dispose()
    return {who: {"score": score, "max": top, "status": status} for who, score, top, status in rows}


# --- nbgrader --------------------------------------------------------------------------------------------------


def pinned(packages: tuple[str, ...]) -> list[str]:
    """`name==version` for each package as requirements.txt locks it (the same versions as the grader's kernel)."""
    locked = {}
    for line in (REPO / "requirements.txt").read_text().splitlines():
        name, sep, version = line.split("#")[0].strip().partition("==")
        if sep:
            locked[name.lower()] = version.strip()
    return [f"{p}=={locked[p]}" if p in locked else p for p in packages]


def nbgrader_venv() -> Path:
    """build/bench-cohort/nbgrader-venv with nbgrader and the lab's imports; mlops_kit from this checkout (.pth)."""
    python = NBGRADER_VENV / "bin" / "python"
    wanted = " ".join([NBGRADER, *pinned(KERNEL_PACKAGES)])
    stamp = NBGRADER_VENV / ".installed"
    if stamp.exists() and stamp.read_text() == wanted:
        return python
    print(f"installing {wanted} into {NBGRADER_VENV} …", flush=True)
    if not python.exists():
        subprocess.run([sys.executable, "-m", "venv", str(NBGRADER_VENV)], check=True)
    done = subprocess.run([str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check", *wanted.split()],
                          capture_output=True, text=True)
    noise = [line for line in (done.stdout + done.stderr).splitlines() if PIP_NOISE not in line]
    if done.returncode != 0:
        raise RuntimeError("pip could not install nbgrader:\n" + "\n".join(noise[-40:]))
    site = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          capture_output=True, text=True, check=True).stdout.strip()
    Path(site, "mlops_course.pth").write_text(f"{REPO}\n")  # mlops_kit importable, as `pip install -e` would do
    subprocess.run([str(python), "-c", "import nbgrader, sklearn, skops, mlops_kit.classifier"], check=True)
    stamp.write_text(wanted)
    return python


CONFIG = """c = get_config()
c.CourseDirectory.root = {root!r}
c.CourseDirectory.course_id = "mlops-bench"
c.CourseDirectory.db_url = {db!r}
c.Execute.timeout = {timeout}
c.Execute.interrupt_on_timeout = True
"""


def nbgrader_course(course: Path, subs: dict, python: Path, public_csv: Path, holdout_csv: Path) -> None:
    """source/ (the converted lab and its CSV), release/ by generate_assignment, students, submitted/."""
    from grader import assign
    from grader.labs import find_lab

    lab = find_lab(LAB).LAB
    solution = json.loads(lab.solution_path.read_text())
    header = assign.build_lab(solution, LAB)["cells"][0]["source"]
    source = course / "source" / ASSIGNMENT
    (source / "data").mkdir(parents=True)
    shutil.copy(public_csv, source / DATA)
    hgb = nbgrader_lab.reference_hgb(public_csv, seed=0)
    (source / NOTEBOOK).write_text(nbgrader_lab.dumps(
        nbgrader_lab.source_notebook(solution, str(holdout_csv), hgb, header=header)))
    (course / "nbgrader_config.py").write_text(CONFIG.format(root=str(course), db=f"sqlite:///{course}/gradebook.db",
                                                             timeout=CELL_TIMEOUT))
    with open(course / "students.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["id", "first_name", "last_name", "email"])
        writer.writerows([who, who, "bench", ""] for who in subs)
    for command in (["generate_assignment", ASSIGNMENT, "--force"], ["db", "student", "import", "students.csv"]):
        nbgrader(python, course, command, check=True)
    release = json.loads((course / "release" / ASSIGNMENT / NOTEBOOK).read_text())
    for who, (_, data, nb) in subs.items():
        folder = course / "submitted" / who / ASSIGNMENT
        folder.mkdir(parents=True)
        (folder / NOTEBOOK).write_bytes(data if nb is None else
                                        nbgrader_lab.dumps(nbgrader_lab.submission(nb, release)).encode())
        (folder / "timestamp.txt").write_text("2027-03-01 12:00:00.000000 UTC")


def nbgrader(python: Path, course: Path, args: list[str], check: bool = False) -> subprocess.CompletedProcess:
    path = f"{python.parent}{os.pathsep}{os.environ.get('PATH', '')}"  # nbgrader runs `alembic`: its own
    done = subprocess.run([str(python), "-m", "nbgrader", *args], cwd=course, capture_output=True, text=True,
                          env=quiet_env(PATH=path))
    if check and done.returncode != 0:
        raise RuntimeError(f"nbgrader {' '.join(args)} failed:\n{(done.stdout + done.stderr)[-4000:]}")
    return done


SCORES = """
import json, sys
from nbgrader.api import Gradebook, MissingEntry
out = {}
with Gradebook(sys.argv[1]) as gb:
    for student in gb.students:
        try:
            sub = gb.find_submission(sys.argv[2], student.id)
            out[student.id] = {"score": sub.score, "max": sub.max_score, "status": "graded"}
        except MissingEntry:
            out[student.id] = {"score": 0.0, "max": None, "status": "not graded"}
print(json.dumps(out))
"""


def run_nbgrader(work: Path, subs: dict, public_csv: Path, holdout_csv: Path) -> dict:
    """Set up the course, then time `nbgrader autograde`; each student's score from nbgrader's gradebook."""
    python = nbgrader_venv()
    course = work / "nbgrader"
    nbgrader_course(course, subs, python, public_csv, holdout_csv)
    start = time.monotonic()
    done = nbgrader(python, course, ["autograde", ASSIGNMENT])
    seconds = time.monotonic() - start
    scores = subprocess.run([str(python), "-c", SCORES, f"sqlite:///{course}/gradebook.db", ASSIGNMENT],
                            capture_output=True, text=True, check=True)
    log = done.stdout + done.stderr
    (OUT / "nbgrader-autograde.log").write_text(log)
    graded = json.loads(scores.stdout)
    failed = failed_students(log)
    for who in failed:
        graded.setdefault(who, {"score": 0.0, "max": None})["status"] = "error"
    return {"seconds": seconds, "exit": done.returncode, "output": log[-3000:], "failed": failed, "scores": graded}


def failed_students(log: str) -> list[str]:
    """Students whose notebook nbgrader could not grade (it logs an error; its gradebook keeps a score of 0)."""
    return sorted(set(FAILED.findall(log)))


FAILED = re.compile(r"There was an error processing assignment '[^']+' for student '([^']+)'")


# --- bare papermill --------------------------------------------------------------------------------------------


THREADS = {name: "1" for name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")}  # as the sandbox


def run_papermill(work: Path, subs: dict, jobs: int, public_csv: Path) -> dict:
    """Execute every notebook file with papermill, `jobs` at a time, each in a work dir with the public CSV."""
    from grader.checks.lab03 import LAB as SPEC

    def one(who: str) -> tuple[str, int]:
        job = work / "papermill" / who
        (job / "data").mkdir(parents=True)
        shutil.copy(public_csv, job / DATA)
        (job / NOTEBOOK).write_bytes(subs[who][1])
        done = subprocess.run([str(BIN / "papermill"), NOTEBOOK, "executed.ipynb", "--cwd", str(job), "-k", "python3",
                               "-p", "seed", str(SPEC.seed), "-p", "data_path", DATA, "-p", "output_dir", "outputs",
                               "--execution-timeout", str(CELL_TIMEOUT), "--no-progress-bar", "--log-level", "ERROR"],
                              cwd=job, capture_output=True, text=True, env=quiet_env(**THREADS))
        return who, done.returncode

    start = time.monotonic()
    with concurrent.futures.ThreadPoolExecutor(jobs) as pool:
        codes = dict(pool.map(one, subs))
    return {"seconds": time.monotonic() - start, "exits": codes}


# --- the report ------------------------------------------------------------------------------------------------


def by_kind(subs: dict, scores: dict) -> dict[str, str]:
    """kind family -> 'median score/max [min..max] (n graded of m)'."""
    out = {}
    for kind in KINDS:
        learners = [who for who, (k, _, _) in subs.items() if family(k) == kind]
        if not learners:
            continue
        got = [scores[who] for who in learners if who in scores and scores[who].get("status") == "graded"]
        tops = {g["max"] for g in got if g.get("max")}
        if not got:
            out[kind] = f"none graded of {len(learners)}"
            continue
        values = [g["score"] for g in got]
        out[kind] = (f"median {statistics.median(values):g}/{'/'.join(f'{t:g}' for t in tops)} "
                     f"[{min(values):g}..{max(values):g}] ({len(got)} graded of {len(learners)})")
    return out


def per_minute(n: int, seconds: float) -> float:
    return n / seconds * 60 if seconds > 0 else 0.0


def report(n: int, jobs: int, subs: dict, ours: dict, theirs: dict, bare: dict, classic: dict | None = None) -> dict:
    """Print the table and the scores; return what result.json holds."""
    rows = [(f"mlops-grade (--jobs {jobs})", ours["seconds"]),
            *([(f"  without entrants (--jobs {jobs})", classic["seconds"])] if classic else []),
            ("nbgrader autograde", theirs["seconds"]), (f"papermill only ({jobs} at once)", bare["seconds"])]
    counts = {k: sum(1 for kind, _, _ in subs.values() if family(kind) == k) for k in KINDS}
    print(f"\nbench-cohort: lab 03, {n} submissions ({', '.join(f'{v} {k}' for k, v in counts.items())}), "
          f"{os.cpu_count()} cores")
    print(f"  {'tool':<30} {'submissions':>11} {'seconds':>9} {'per min':>9}")
    for name, seconds in rows:
        print(f"  {name:<30} {n:>11} {seconds:>9.1f} {per_minute(n, seconds):>9.2f}")
    print(f"  overhead over bare papermill: ×{ours['seconds'] / bare['seconds']:.2f} the seconds")
    if classic:
        print(f"  entrants: ×{ours['seconds'] / classic['seconds']:.2f} the seconds of grading without them "
              f"(scores {'the same' if ours['scores'] == classic['scores'] else 'DIFFERENT'})")
    ours_kind, theirs_kind = by_kind(subs, ours["scores"]), by_kind(subs, theirs["scores"])
    for kind in ours_kind:
        print(f"  {kind:<8} mlops-grade {ours_kind[kind]:<34} nbgrader {theirs_kind.get(kind, '-')}")
    both = [who for who in subs if ours["scores"].get(who, {}).get("status") == "graded"
            and theirs["scores"].get(who, {}).get("status") == "graded"]
    same = [who for who in both if ours["scores"][who]["score"] == theirs["scores"][who]["score"]]
    print(f"  the same score from both graders: {len(same)} of the {len(both)} submissions both graded")
    for who in sorted(set(both) - set(same)):
        print(f"    {who} {subs[who][0]}: mlops-grade {ours['scores'][who]['score']:g}, "
              f"nbgrader {theirs['scores'][who]['score']:g}")
    for who, (kind, _, _) in subs.items():
        if family(kind) == "broken":
            mine, other = ours["scores"].get(who, {}), theirs["scores"].get(who, {})
            print(f"  {who} {kind:<14} mlops-grade {mine.get('status', 'missing')} {mine.get('score', '-')}; "
                  f"nbgrader {other.get('status', 'missing')} {other.get('score', '-')}"
                  f"{' (logged an error, 0 in its gradebook)' if who in theirs.get('failed', []) else ''}; "
                  f"papermill exit {bare['exits'].get(who)}")
    if ours["exit"]:
        print(f"  mlops-grade exited {ours['exit']}: {ours['output'][-600:]}")
    if theirs["exit"]:
        print(f"  nbgrader autograde exited {theirs['exit']} (students with errors: {', '.join(theirs['failed'])})")
    ratio = per_minute(n, ours["seconds"]) / per_minute(n, theirs["seconds"])
    print(f"  goal ×{GOAL:.2f} nbgrader's throughput on 2 cores: {'met' if ratio >= GOAL else 'not met'} "
          f"(here {os.cpu_count()} cores)")
    return {"lab": LAB, "submissions": n, "jobs": jobs, "cores": os.cpu_count(), "kinds": counts,
            "tools": {name: {"seconds": round(s, 2), "per_minute": round(per_minute(n, s), 3)} for name, s in rows},
            "same_score": f"{len(same)} of {len(both)}", "ratio_vs_nbgrader": round(ratio, 3),
            "overhead_over_papermill": round(ours["seconds"] / bare["seconds"], 3),
            "scores_by_kind": {"mlops-grade": ours_kind, "nbgrader": theirs_kind},
            "learners": {who: {"kind": kind, "mlops-grade": ours["scores"].get(who),
                               "nbgrader": theirs["scores"].get(who), "papermill_exit": bare["exits"].get(who)}
                         for who, (kind, _, _) in subs.items()},
            "exits": {"mlops-grade": ours["exit"], "nbgrader": theirs["exit"]}}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=40, help="submissions (default 40)")
    parser.add_argument("--jobs", type=int, default=(os.cpu_count() or 1) + 1,
                        help="mlops-grade's sandboxes and papermill's runs at once (default: one more than the cores, "
                        "as `grade --cohort`)")
    parser.add_argument("--keep", action="store_true", help="keep the work folder")
    parser.add_argument("--kinds", help="comma-separated kinds to cycle instead of the mix (solved, wrong, starter, "
                        "broken-json, broken-raises, broken-dies): smoke runs")
    args = parser.parse_args()

    OUT.mkdir(parents=True, exist_ok=True)
    nbgrader_venv()  # before anything is timed
    work = Path(tempfile.mkdtemp(prefix="mlops-bench-cohort-"))
    try:
        subs = submissions(args.n, args.kinds.split(",") if args.kinds else None)
        public_csv, holdout_csv = public_data(work / "data")
        print(f"mlops-grade: grading {args.n} submissions …", flush=True)
        ours = run_ours(work, subs, args.jobs)
        print(f"  {ours['seconds']:.1f} s; mlops-grade without entrants …", flush=True)
        classic = run_ours(work, subs, args.jobs, entrants=False)
        print(f"  {classic['seconds']:.1f} s; nbgrader: autograding …", flush=True)
        theirs = run_nbgrader(work, subs, public_csv, holdout_csv)
        print(f"  {theirs['seconds']:.1f} s; papermill: executing …", flush=True)
        bare = run_papermill(work, subs, args.jobs, public_csv)
        print(f"  {bare['seconds']:.1f} s", flush=True)
        result = report(args.n, args.jobs, subs, ours, theirs, bare, classic)
        (OUT / "result.json").write_text(json.dumps(result, indent=1) + "\n")
    finally:
        if args.keep:
            print(f"  kept      {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    print(f"cohort throughput vs nbgrader: ×{result['ratio_vs_nbgrader']:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
