"""`grade LAB --cohort DIR --db URL`: only what is new or changed is graded (content hash + grader version), a
`kill -9` mid-batch loses and duplicates no grade, `--regrade` forces, a grader error is retried, and the rest of
a batch goes on past a bad file. Grading is a fake function here (fast); test_cohort_e2e.py grades for real."""

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from grader.cohort import gradebook as gb
from grader.cohort import runner
from grader.labs import REPO, find_lab

LAB = "10_kubernetes"

FAKE = '''
import json, time
from pathlib import Path
from grader.grade import Result
from grader.judge import CheckResult

def fake_grade(module, path, delay=0.0):
    """Score = the notebook's metadata `points` (0-4); unreadable JSON is rejected; `crash` is a grader error."""
    time.sleep(delay)
    try:
        meta = json.loads(Path(path).read_text())["metadata"]
    except Exception as err:
        return Result(str(path), module.LAB.id, 0.0, 4.0, 0.0, f"Not graded: {err}", [], status="rejected")
    if meta.get("crash"):
        return Result(str(path), module.LAB.id, 0.0, 4.0, 0.0, "grader failed", [], status="error")
    points = float(meta["points"])
    tests = [CheckResult("visible_one", "d", min(points, 2), 2, "passed" if points >= 2 else "failed", "ok", True, "", ""),
             CheckResult("hidden_one", "d", max(0, points - 2), 2, "passed" if points >= 4 else "failed", "secret", False,
                         "", "")]
    return Result(str(path), module.LAB.id, points, 4.0, delay, "", tests)
'''
namespace: dict = {}
exec(FAKE, namespace)
fake_grade = namespace["fake_grade"]


def notebook(points, **extra) -> str:
    return json.dumps({"cells": [], "metadata": {"points": points, **extra}, "nbformat": 4, "nbformat_minor": 5})


def make_cohort(root: Path, count: int) -> Path:
    from grader.cohort.intake import collect

    src = root / "src"
    for i in range(count):
        (src / f"l{i:02d}").mkdir(parents=True)
        (src / f"l{i:02d}" / f"{LAB}.ipynb").write_text(notebook(i % 5))
    collect(src, LAB, root / "cohort")
    return root / "cohort"


def counts(engine) -> tuple[int, int, int]:
    with Session(engine) as session:
        grades = session.scalar(select(func.count()).select_from(gb.Grade))
        first = session.scalar(select(func.count()).select_from(gb.Audit).where(gb.Audit.kind == "grade"))
        again = session.scalar(select(func.count()).select_from(gb.Audit).where(gb.Audit.kind == "regrade"))
    return grades, first, again


def test_only_new_or_changed_submissions_are_graded_and_regrade_forces(tmp_path):
    cohort = make_cohort(tmp_path, 5)
    engine = gb.open_gradebook(str(tmp_path / "gb.db"))
    module = find_lab(LAB)
    first = runner.grade_cohort(module, cohort, engine, jobs=2, grade_fn=fake_grade, progress=False)
    assert (first.total, first.todo, first.written["new"]) == (5, 5, 5)
    assert runner.grade_cohort(module, cohort, engine, grade_fn=fake_grade, progress=False).todo == 0
    (cohort / "l01" / f"{LAB}.ipynb").write_text(notebook(4))  # a changed submission: graded again, alone
    again = runner.grade_cohort(module, cohort, engine, grade_fn=fake_grade, progress=False)
    assert again.todo == 1 and again.written["new"] == 1
    forced = runner.grade_cohort(module, cohort, engine, grade_fn=fake_grade, progress=False, regrade=True)
    assert forced.todo == 5 and forced.written["regraded"] == 5
    assert counts(engine) == (6, 6, 5)  # l01's first grade stays (its old content); each regrade audited


def test_a_grader_error_is_retried_and_a_bad_file_does_not_stop_the_batch(tmp_path):
    cohort = make_cohort(tmp_path, 3)
    (cohort / "l00" / f"{LAB}.ipynb").write_text("{ not json")
    (cohort / "l01" / f"{LAB}.ipynb").write_text(notebook(1, crash=True))
    (cohort / "l02" / f"{LAB}.ipynb").unlink()  # collected, then lost: reported, not graded
    engine = gb.open_gradebook(str(tmp_path / "gb.db"))
    module = find_lab(LAB)
    summary = runner.grade_cohort(module, cohort, engine, grade_fn=fake_grade, progress=False)
    assert summary.todo == 2 and summary.errors == 1 and any("l02" in p and "cannot be read" in p for p in summary.problems)
    (cohort / "l01" / f"{LAB}.ipynb").write_text(notebook(1, crash=True))
    assert runner.grade_cohort(module, cohort, engine, grade_fn=fake_grade, progress=False).todo == 1  # the error again


def test_the_grader_version_covers_the_labs_checks_and_private_checks(tmp_path):
    from grader.cohort import private

    module = find_lab(LAB)
    (tmp_path / f"{LAB}.py").write_text("from grader.checks.common import Checks\nCHECKS = Checks()\n")
    merged = private.load(module, tmp_path)
    assert runner.grader_version(module) == runner.grader_version(find_lab("10"))
    assert runner.grader_version(merged) != runner.grader_version(module)


SCRIPT = '''
import sys
sys.path.insert(0, {repo!r})
{fake}
from grader.cohort import gradebook, runner
from grader.labs import find_lab
engine = gradebook.open_gradebook({db!r})
runner.grade_cohort(find_lab("10"), __import__("pathlib").Path({cohort!r}), engine, jobs=2, progress=False,
                    grade_fn=lambda m, p: fake_grade(m, p, delay=0.25))
print("done")
'''


def test_kill_9_mid_batch_then_rerun_loses_and_duplicates_no_grade(tmp_path):
    count = 16
    cohort = make_cohort(tmp_path, count)
    db = str(tmp_path / "gb.db")
    script = tmp_path / "grade.py"
    script.write_text(SCRIPT.format(repo=str(REPO), fake=textwrap.dedent(FAKE), db=db, cohort=str(cohort)))
    engine = gb.open_gradebook(db)
    proc = subprocess.Popen([sys.executable, str(script)], cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 60
        while counts(engine)[0] < 4 and time.monotonic() < deadline:
            time.sleep(0.05)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    killed_at = counts(engine)[0]
    assert 4 <= killed_at < count, "the kill must land mid-batch"
    out = subprocess.run([sys.executable, str(script)], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and "done" in out.stdout, out.stderr
    grades, first, again = counts(engine)
    assert (grades, first, again) == (count, count, 0)  # every learner once; nothing graded twice
    with Session(engine) as session:
        per = dict(session.execute(select(gb.Grade.learner_id, gb.Grade.score)).all())
    assert per == {f"l{i:02d}": float(i % 5) for i in range(count)}


def test_the_grade_command_with_a_cohort_shows_progress_with_an_eta_and_refuses_mixed_shapes(tmp_path):
    cli = [str(Path(sys.executable).parent / "mlops-grade")]
    for who, text in (("ada", "{ not json"), ("bob", "{}")):  # rejected before any sandbox starts: fast
        (tmp_path / "c" / who).mkdir(parents=True)
        (tmp_path / "c" / who / f"{LAB}.ipynb").write_text(text)
    db = str(tmp_path / "gb.db")
    out = subprocess.run(cli + ["grade", "10", "--cohort", str(tmp_path / "c"), "--db", db], capture_output=True,
                         text=True, cwd=REPO, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "ETA" in out.stderr and "2/2" in out.stderr and "graded 2 now (2 new" in out.stdout
    engine = gb.open_gradebook(db)
    with Session(engine) as session:
        assert {g.status for g in session.scalars(select(gb.Grade))} == {"rejected"}
    for args, message in ((["x.ipynb", "--cohort", str(tmp_path / "c")], "not both"), ([], "Name the notebook FILES"),
                          (["--cohort", str(tmp_path / "c"), "--json", "r.json"], "gradebook export")):
        out = subprocess.run(cli + ["grade", "10", *args], capture_output=True, text=True, cwd=REPO, timeout=120)
        assert out.returncode == 2 and message in out.stderr
