"""A learner's progress: attempts recorded by `mlops-grade check` and `self_check()`, and the view built from them."""

import datetime as dt
import hashlib
import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

from grader import progress as pg
from grader.judge import CheckResult
from grader.labs import REPO, Lab, find_lab

CLI = str(Path(sys.executable).parent / "mlops-grade")
T0 = dt.datetime(2026, 3, 2, 9, 0, tzinfo=dt.timezone.utc)


def cli(*args, db: Path, **env):
    return subprocess.run([CLI, *args], capture_output=True, text=True, cwd=REPO, timeout=300,
                          env={**os.environ, "MLOPS_PROGRESS_DB": str(db), "COLUMNS": "200", **env})


def rows(db: Path, sql: str):
    con = sqlite3.connect(db)
    try:
        return con.execute(sql).fetchall()
    finally:
        con.close()


def result(name, status, score, top, hint="", section=""):
    return CheckResult(name=name, description="", score=score, max_score=top, status=status, message="",
                       visible=True, hint=hint, section=section)


LABS = [Lab(id=f"0{i}_lab{i}", title=f"Lab {i}", week=i, minutes=60, objectives=(), lesson="") for i in (1, 2, 3)]


def attempt(lab, minutes, score, top=10, checks=()):
    return pg.Attempt(lab, T0 + dt.timedelta(minutes=minutes), score, top, list(checks))


# ---- recorded by the real CLI ------------------------------------------------------------------------------------

def test_check_records_an_attempt_and_progress_shows_what_to_do_next(tmp_path):
    db, notebook = tmp_path / "progress.sqlite", REPO / "labs" / "10_kubernetes.ipynb"
    out = cli("check", "10", str(notebook), db=db)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "not recorded" not in out.stderr
    module = find_lab("10")
    visible = [c for c in module.CHECKS if c.visible]
    [(lab, at, score, top, sha, source)] = rows(db, "SELECT lab, at, score, max_score, notebook_sha256, source "
                                                    "FROM attempts")
    assert (lab, source) == ("10_kubernetes", "check")
    assert sha == hashlib.sha256(notebook.read_bytes()).hexdigest()
    assert f"score {score:g}/{top:g}" in out.stdout and score < top
    assert abs(dt.datetime.fromisoformat(at) - dt.datetime.now(dt.timezone.utc)) < dt.timedelta(minutes=5)
    checks = rows(db, "SELECT name, status, score, max_score, hint, section FROM checks")
    assert [c[0] for c in checks] == [c.name for c in visible], "every visible check, and no hidden one"
    failed = [c for c in checks if c[1] in ("failed", "partial")]
    assert failed, "the starter fails checks"
    by_name = {c.name: c for c in visible}
    for name, _status, _score, _top, hint, section in failed:
        assert (hint, section) == (by_name[name].hint, by_name[name].section) and hint and section
    assert all(c[4] == "" for c in checks if c[1] not in ("failed", "partial")), "hints only for what failed"

    view = cli("progress", "--html", str(tmp_path / "progress.html"), db=db)
    assert view.returncode == 0, view.stderr
    lines = view.stdout.splitlines()
    assert any("10_kubernetes" in line and "started" in line and f"{score:g}/{top:g}" in line for line in lines)
    assert any("01_tested_code" in line and "not started" in line for line in lines)
    name, _s, _sc, _t, hint, section = failed[0]
    text = " ".join(view.stdout.split())
    assert name in text and " ".join(hint.split()) in text and f"reread {section}" in text
    assert "Next lab: 01_tested_code" in text
    assert "gaps over 30 min not counted" in text
    page = (tmp_path / "progress.html").read_text()
    assert "10_kubernetes" in page and "Next lab: 01_tested_code" in page and name in page


def test_a_locked_history_never_breaks_a_check(tmp_path):
    db = tmp_path / "progress.sqlite"
    assert pg.record_attempt("10_kubernetes", [result("a", "passed", 1, 1)], path=db) is None
    holder = sqlite3.connect(db, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    try:
        out = cli("check", "10", "labs/10_kubernetes.ipynb", db=db)
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert out.returncode == 0, out.stdout + out.stderr
    assert "score " in out.stdout and "overlays_build" in out.stdout, "the check's results still show"
    notice = [line for line in out.stderr.splitlines() if "not recorded" in line]
    assert len(notice) == 1 and "locked" in notice[0]
    assert rows(db, "SELECT count(*) FROM attempts") == [(1,)]


def test_an_unwritable_history_is_a_notice_not_an_error(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    notice = pg.record_attempt("10_kubernetes", [result("a", "failed", 0, 1)], path=blocker / "progress.sqlite")
    assert notice.startswith("Notice: this attempt was not recorded") and "\n" not in notice


def test_nothing_is_recorded_while_graded(tmp_path, monkeypatch):
    db = tmp_path / "progress.sqlite"
    monkeypatch.setenv("MLOPS_GRADING", "1")
    assert pg.record_attempt("10_kubernetes", [result("a", "failed", 0, 1)], path=db) is None
    assert not db.exists()
    monkeypatch.delenv("MLOPS_GRADING")
    assert pg.record_attempt("10_kubernetes", [result("a", "failed", 0, 1)], path=db) is None
    assert rows(db, "SELECT count(*) FROM attempts") == [(1,)]


def test_a_notebook_self_check_records_with_the_notebook_hash_jupyter_names(tmp_path):
    db, notebook = tmp_path / "progress.sqlite", REPO / "labs" / "10_kubernetes.ipynb"
    env = {**os.environ, "MLOPS_PROGRESS_DB": str(db), "JPY_SESSION_NAME": str(notebook)}
    out = subprocess.run([sys.executable, "-m", "grader.selfcheck", "10", "--work", str(tmp_path)],
                         capture_output=True, text=True, env=env, timeout=300)
    assert out.returncode == 0, out.stderr
    answer = json.loads(out.stdout)
    [(lab, score, top, sha, source)] = rows(db, "SELECT lab, score, max_score, notebook_sha256, source FROM attempts")
    assert (lab, source, score, top) == ("10_kubernetes", "self_check", answer["score"], answer["max_score"])
    assert sha == hashlib.sha256(notebook.read_bytes()).hexdigest()
    graded = subprocess.run([sys.executable, "-m", "grader.selfcheck", "10", "--work", str(tmp_path)],
                            capture_output=True, text=True, env={**env, "MLOPS_GRADING": "1"}, timeout=300)
    assert graded.returncode == 0 and rows(db, "SELECT count(*) FROM attempts") == [(1,)]


# ---- the view's rules --------------------------------------------------------------------------------------------

def test_time_spent_counts_gaps_of_at_most_30_minutes():
    times = [T0 + dt.timedelta(minutes=m) for m in (0, 10, 25, 140, 145, 175.5)]
    # 10 + 15 counted; 115 (a break) not; 5 counted; 30.5 not
    assert pg.time_spent(times) == dt.timedelta(minutes=30)
    assert pg.time_spent([T0]) == dt.timedelta()
    assert pg.time_spent([T0, T0 + dt.timedelta(minutes=30)]) == dt.timedelta(minutes=30)
    view = pg.build([attempt("01_lab1", m, 1) for m in (175.5, 0, 145, 10, 140, 25)], LABS)
    assert view.labs[0].spent == dt.timedelta(minutes=30) and view.labs[0].attempts == 6


def test_next_lab_is_the_first_not_done_in_course_order():
    assert pg.build([], LABS).next_lab == "01_lab1"
    done1 = attempt("01_lab1", 0, 10)
    view = pg.build([done1, attempt("02_lab2", 5, 4), attempt("03_lab3", 9, 10)], LABS)
    assert [r.status for r in view.labs] == ["done", "started", "done"] and view.next_lab == "02_lab2"
    # done once stays done, even after a worse attempt; best and latest differ then
    view = pg.build([done1, attempt("01_lab1", 20, 3), attempt("03_lab3", 9, 10)], LABS)
    row = view.labs[0]
    assert row.status == "done" and row.best.score == 10 and row.latest.score == 3 and view.next_lab == "02_lab2"
    everything = [attempt(lab.id, 0, 10) for lab in LABS]
    assert pg.build(everything, LABS).next_lab is None
    assert "Every lab is done" in pg.text(pg.build(everything, LABS))


def test_failing_checks_come_from_the_latest_attempt_with_their_hint_and_section():
    first = attempt("02_lab2", 0, 2, checks=[
        {"name": "old_problem", "status": "failed", "score": 0, "max_score": 3, "hint": "fix the old", "section": "2.1 A"},
        {"name": "split", "status": "passed", "score": 2, "max_score": 2, "hint": "", "section": ""}])
    latest = attempt("02_lab2", 12, 7, checks=[
        {"name": "old_problem", "status": "passed", "score": 3, "max_score": 3, "hint": "", "section": ""},
        {"name": "metrics", "status": "partial", "score": 1, "max_score": 2, "hint": "write <b>metrics</b>.json",
         "section": "2.4 Metrics"},
        {"name": "later", "status": "skipped", "score": 0, "max_score": 2, "hint": "", "section": ""}])
    view = pg.build([latest, first], LABS)
    row = view.labs[1]
    assert [c["name"] for c in row.failing] == ["metrics"] and row.blocked == 1
    shown = pg.text(view)
    assert "metrics (1/2): write <b>metrics</b>.json — reread 2.4 Metrics" in shown and "old_problem" not in shown
    assert "1 more checks were skipped" in shown
    page = pg.to_html(view)
    assert "write &lt;b&gt;metrics&lt;/b&gt;.json" in page and "<b>metrics" not in page, "learner-facing text escaped"
    assert json.loads(json.dumps(view.to_json()))["labs"][1]["failing"][0]["section"] == "2.4 Metrics"


# ---- an instructor's gradebook, and the notebook view ------------------------------------------------------------

def test_progress_of_a_learner_from_the_gradebook_is_read_only(tmp_path):
    from sqlalchemy.orm import Session

    from grader.cohort import gradebook as gb

    path = tmp_path / "gradebook.db"
    engine = gb.open_gradebook(str(path))
    tests = [{"name": "split", "score": 0, "max_score": 2, "status": "failed", "check_status": "failed",
              "visibility": "visible", "hint": "split with the seed", "section": "3.2 Split"},
             {"name": "secret_case", "score": 0, "max_score": 2, "status": "failed", "check_status": "failed",
              "visibility": "after_published", "output": "hidden check: failed"}]
    with Session(engine) as session:
        session.add(gb.Learner(id="ada"))
        session.add(gb.Learner(id="bob"))
        session.flush()
        sub = gb.Submission(learner_id="ada", lab="03_classifier", content_hash="h1", path="x")
        session.add(sub)
        session.flush()
        session.add(gb.Grade(submission_id=sub.id, learner_id="ada", lab="03_classifier", content_hash="h1",
                             grader_version="t", score=6, max_score=10, status="graded",
                             result={"tests": tests}, graded_at=T0))
        session.commit()
    engine.dispose()
    before = hashlib.sha256(path.read_bytes()).hexdigest()
    out = cli("progress", "--learner", "ada", "--db", str(path), db=tmp_path / "unused.sqlite")
    assert out.returncode == 0, out.stderr
    text = " ".join(out.stdout.split())
    assert "learner ada" in text and "6/10" in text and "split with the seed — reread 3.2 Split" in text
    assert "secret_case (0/2)" in text and "secret_case (0/2):" not in text, "a hidden check's hint stays hidden"
    assert "Next lab: 01_tested_code" in text
    assert hashlib.sha256(path.read_bytes()).hexdigest() == before and not (tmp_path / "unused.sqlite").exists()
    missing = cli("progress", "--learner", "ada", db=tmp_path / "unused.sqlite", MLOPS_GRADEBOOK="")
    assert missing.returncode == 2 and "--db" in missing.stderr


def test_the_library_shows_the_same_view_in_a_notebook(tmp_path, monkeypatch):
    db = tmp_path / "progress.sqlite"
    pg.record_attempt("03_classifier", [result("split_as_asked", "failed", 0, 2, "use the seed", "3.2 Split")],
                      path=db, at=T0)
    monkeypatch.setenv("MLOPS_PROGRESS_DB", str(db))
    from mlops_kit.course import progress

    view = progress()
    page = view._repr_html_()
    assert page == pg.to_html(pg.load(path=db)), "the notebook shows the terminal view's data"
    assert "<table>" in page and "split_as_asked" in page and "use the seed" in page
    assert view.next_lab == "01_tested_code" and view.data["labs"][2]["status"] == "started"
    assert "Next lab: 01_tested_code" in repr(view)
