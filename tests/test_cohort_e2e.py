"""The issue's cohort, end to end with real grading (lab 10, sandboxed): 12 learners on a roster, a folder tree and
a Canvas zip, two late, one with an extension, one broken notebook, one duplicate resubmission; graded with the
CLI at --jobs 2, `kill -9`ed mid-run, resumed: exactly one current grade per learner; the Canvas CSV, Gradescope
JSON and JUnit XML parse; each learner's HTML page holds nothing of the others."""

import csv
import datetime as dt
import json
import os
import signal
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
import zipfile
from pathlib import Path

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from grader.assign import build_lab
from grader.cohort import gradebook as gb
from grader.labs import REPO, find_lab

LAB = "10_kubernetes"
CLI = [str(Path(sys.executable).parent / "mlops-grade")]
UTC = dt.timezone.utc
DEADLINE = dt.datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def run(*args, **kw):
    return subprocess.run(CLI + [str(a) for a in args], capture_output=True, text=True, cwd=REPO, timeout=600, **kw)


def variant(notebook: dict, tag: str) -> bytes:
    copy = json.loads(json.dumps(notebook))
    copy["metadata"]["submitted_by"] = tag  # every learner's file differs (content hashes are per learner)
    return json.dumps(copy).encode()


@pytest.mark.slow
def test_a_cohort_of_twelve_collected_graded_killed_resumed_and_exported(tmp_path, isolate):
    lab = find_lab(LAB).LAB
    correct = build_lab(json.loads(lab.solution_path.read_text()), LAB, with_solutions=True)
    starter = json.loads(lab.lab_path.read_text())
    learners = [f"l{i:02d}" for i in range(1, 13)]
    roster = tmp_path / "roster.csv"
    roster.write_text("id,name,email,lms_id,extension_hours\n" + "".join(
        f"{who},Learner {who.upper()},{who}@uni.edu,{2000 + i},{48 if who == 'l05' else ''}\n"
        for i, who in enumerate(learners, start=1)))
    # l01-l08 hand in a folder tree (time: the file's mtime); l09-l12 through Canvas (time: the zip entry's)
    tree = tmp_path / "tree"
    times = {who: DEADLINE - dt.timedelta(hours=2) for who in learners}
    times.update(l03=DEADLINE + dt.timedelta(hours=30), l05=DEADLINE + dt.timedelta(hours=30),
                 l10=DEADLINE + dt.timedelta(hours=3))  # l03 and l10 late; l05 late but extended by 48 h
    for who in learners[:8]:
        (tree / who).mkdir(parents=True)
        path = tree / who / ("work.ipynb" if who == "l02" else f"{LAB}.ipynb")
        path.write_bytes(b"{ not json" if who == "l04" else variant(starter if who == "l06" else correct, who))
        os.utime(path, (times[who].timestamp(),) * 2)
    canvas = tmp_path / "submissions.zip"
    with zipfile.ZipFile(canvas, "w") as archive:
        for i, who in enumerate(learners[8:], start=9):
            when = times[who].timetuple()[:6]
            archive.writestr(zipfile.ZipInfo(f"learner{who}_{2000 + i}_{9000 + i}_{LAB}.ipynb", date_time=when),
                             variant(correct, who))
        early = (DEADLINE - dt.timedelta(hours=20)).timetuple()[:6]  # l11's first try, replaced by the later one
        archive.writestr(zipfile.ZipInfo(f"learnerl11_2011_8011_{LAB}.ipynb", date_time=early), variant(starter, "l11"))
    cohort, db = tmp_path / "cohort", tmp_path / "gradebook.db"
    for source in (tree, canvas):
        out = run("collect", source, "--lab", "10", "--into", cohort, "--roster", roster)
        assert out.returncode == 0, out.stderr
    assert "collected 4 submissions" in out.stdout
    out = run("gradebook", "policy", "10", "--db", db, "--deadline", DEADLINE.isoformat(), "--late", "linear:10/day")
    assert out.returncode == 0, out.stderr

    # grade, kill -9 once a few grades are in, grade again
    engine = gb.open_gradebook(str(db))

    def graded() -> int:
        with Session(engine) as session:
            return session.scalar(select(func.count()).select_from(gb.Grade))

    start = time.monotonic()
    proc = subprocess.Popen(CLI + ["grade", "10", "--cohort", str(cohort), "--db", str(db), "--roster", str(roster),
                                   "--jobs", "2", "--quiet"], cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            start_new_session=True)
    try:
        while graded() < 3 and time.monotonic() - start < 240 and proc.poll() is None:
            time.sleep(0.1)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.communicate(timeout=60)
    at_kill = graded()
    assert 3 <= at_kill < 12, f"the kill must land mid-run ({at_kill} graded)"
    time.sleep(1.0)
    leftover = subprocess.run(["pgrep", "-s", str(proc.pid)], capture_output=True, text=True).stdout.split()
    assert not leftover, f"processes of the killed grader still running: {leftover}"
    out = run("grade", "10", "--cohort", cohort, "--db", db, "--roster", roster, "--jobs", "2", "--quiet")
    assert out.returncode == 0, out.stderr
    assert f"graded {12 - at_kill} now" in out.stdout, out.stdout
    print(f"12 submissions: killed after {at_kill}; total {time.monotonic() - start:.1f} s")

    with Session(engine) as session:
        grades = session.execute(select(gb.Grade.learner_id, gb.Grade.status, gb.Grade.score)).all()
        first = session.scalar(select(func.count()).select_from(gb.Audit).where(gb.Audit.kind == "grade"))
        again = session.scalar(select(func.count()).select_from(gb.Audit).where(gb.Audit.kind == "regrade"))
    assert sorted(g.learner_id for g in grades) == learners and (first, again) == (12, 0)
    status = {g.learner_id: (g.status, g.score) for g in grades}
    assert status["l04"] == ("rejected", 0) and status["l06"] == ("graded", 0)
    assert all(status[w] == ("graded", 37) for w in learners if w not in ("l04", "l06"))

    # exports
    assert run("gradebook", "export", "--db", db, "--format", "canvas", "--out", tmp_path / "canvas.csv").returncode == 0
    rows = list(csv.DictReader((tmp_path / "canvas.csv").open()))
    column = list(rows[0])[5]
    final = {r["ID"]: float(r[column]) for r in rows[1:]}
    expected = {2000 + i: 37.0 for i in range(1, 13)}
    expected.update({2004: 0, 2006: 0, 2003: 37 - 2 * 3.7, 2010: 37 - 3.7})  # l03: 2 days late, l10: 1; l05 extended
    assert final == pytest.approx({str(k): v for k, v in expected.items()})
    assert run("gradebook", "export", "--db", db, "--format", "gradescope", "--out", tmp_path / "gs").returncode == 0
    for who in learners:
        payload = json.loads((tmp_path / "gs" / who / "results.json").read_text())
        assert isinstance(payload, dict) and {t["status"] for t in payload["tests"]} <= {"passed", "failed"}
    assert run("gradebook", "export", "--db", db, "--format", "junit", "--out", tmp_path / "j.xml").returncode == 0
    suites = ET.parse(tmp_path / "j.xml").getroot().findall("testsuite")
    assert len(suites) == 12
    assert run("gradebook", "export", "--db", db, "--format", "html", "--out", tmp_path / "html").returncode == 0
    for who in learners:
        page = (tmp_path / "html" / "learners" / f"{who}.html").read_text()
        assert all(other not in page and other.upper() not in page for other in learners if other != who)
