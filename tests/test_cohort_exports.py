"""Gradebook exports read back as their consumers read them: Canvas's and Moodle's grade-import CSVs, Gradescope's
results.json (one object per submission, status only passed/failed, visibility), JUnit XML, one HTML page per
learner holding nothing of anyone else, and the instructor's summary page with its two plots."""

import base64
import csv
import datetime as dt
import json
import re
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from grader.cohort import gradebook as gb
from grader.cohort.exports import export, finals
from grader.grade import Result
from grader.judge import CheckResult
from grader.labs import REPO

LAB = "10_kubernetes"
UTC = dt.timezone.utc
DEADLINE = dt.datetime(2026, 3, 1, 23, 59, tzinfo=UTC)
CLI = [str(Path(sys.executable).parent / "mlops-grade")]


def result(learner: str, points: float, status: str = "graded") -> Result:
    tests = [
        CheckResult("renders", "the overlays render", min(points, 2), 2, "passed" if points >= 2 else "failed",
                    f"VISIBLE-{learner}", True, f"HINT-{learner}", "10.2 Overlays"),
        CheckResult("holdout_costs", "hidden costs", max(0.0, points - 2), 2,
                    "passed" if points >= 4 else "partial" if points > 2 else "failed", f"HIDDEN-{learner}", False,
                    "hidden hint", "10.6 Costs"),
        CheckResult("live_cluster", "live", 0, 0, "skipped", "no cluster", True, "", ""),
    ]
    return Result(f"/cohort/{learner}.ipynb", LAB, points, 4, 1.0, f"NOTES-{learner}", tests, status=status)


@pytest.fixture
def engine(tmp_path):
    engine = gb.open_gradebook(str(tmp_path / "gb.db"))
    (tmp_path / "roster.csv").write_text("x")
    people = [("ada", "Ada Lovelace", "ada@uni.edu", "1001", "S1", 4, -2), ("alan", "Alan Turing", "alan@uni.edu", "1002",
                                                                           "S2", 3, 30),
              ("grace", "Grace Hopper", "grace@uni.edu", "1003", "S3", 1, 1)]
    from sqlalchemy.orm import Session

    for who, name, email, lms, sis, points, hours in people:
        with Session(engine) as session, session.begin():
            gb.ensure_learner(session, who, name=name, email=email, lms_id=lms, sis_id=sis, login_id=who)
        sub = gb.record_submission(engine, who, LAB, who.ljust(64, "0"), f"/c/{who}",
                                   submitted_at=DEADLINE + dt.timedelta(hours=hours))
        gb.record_grade(engine, sub, "v1", result(who, points))
    with Session(engine) as session, session.begin():
        gb.ensure_learner(session, "nobody", name="No Submission", email="no@uni.edu", lms_id="1004")
    gb.set_lab(engine, LAB, DEADLINE, "linear:25/day")
    gb.set_extension(engine, "grace", LAB, 24, "illness")
    return engine


def test_canvas_csv_reads_back_as_canvas_imports_it(engine, tmp_path):
    (path,) = export(engine, "canvas", tmp_path / "canvas.csv", assignment_id="4242")
    rows = list(csv.DictReader(path.open(encoding="utf-8")))
    assert list(rows[0])[:5] == ["Student", "ID", "SIS User ID", "SIS Login ID", "Section"]
    column = list(rows[0])[5]
    assert re.fullmatch(r".+ \(4242\)", column)  # Canvas matches "<name> (<assignment id>)" to the assignment
    assert rows[0]["Student"].strip() == "Points Possible" and rows[0][column] == "4"
    grades = {r["ID"]: r[column] for r in rows[1:]}
    assert grades == {"1001": "4", "1002": "1", "1003": "1", "1004": ""}  # alan: 3 - 30 h late (2 days × 25 % of 4)


def test_moodle_csv_maps_learners_by_email(engine, tmp_path):
    (path,) = export(engine, "moodle", tmp_path / "moodle.csv")
    rows = list(csv.DictReader(path.open(encoding="utf-8")))
    grade = next(h for h in rows[0] if h.startswith("Assignment:") and h.endswith("(Real)"))
    assert {"First name", "Last name", "ID number", "Email address"} <= set(rows[0])
    by_mail = {r["Email address"]: r for r in rows}
    assert by_mail["alan@uni.edu"][grade] == "1" and "late by 30.0 h" in next(
        v for k, v in by_mail["alan@uni.edu"].items() if k.endswith("(Feedback)"))


def test_gradescope_one_results_json_per_submission_as_gradescope_requires(engine, tmp_path):
    written = export(engine, "gradescope", tmp_path / "gs")
    assert sorted(p.parent.name for p in written) == ["ada", "alan", "grace"]  # nobody submitted nothing
    for path in written:
        payload = json.loads(path.read_text())
        assert isinstance(payload, dict)
        assert isinstance(payload["score"], (int, float)) and payload["visibility"] in ("visible", "hidden",
                                                                                         "after_due_date",
                                                                                         "after_published")
        for test in payload["tests"]:
            assert test["status"] in ("passed", "failed")
            assert test["visibility"] in ("visible", "hidden", "after_due_date", "after_published")
            assert {"name", "score", "max_score", "output"} <= set(test)
        text = path.read_text()
        assert "HIDDEN-" not in text and "hidden hint" not in text  # hidden checks' details never reach learners
    alan = json.loads((tmp_path / "gs/alan/results.json").read_text())
    assert alan["score"] == 1 and "Late by 30.0 h" in alan["output"]
    assert [t["status"] for t in alan["tests"]] == ["passed", "failed", "failed"]  # partial and skipped → failed


def test_junit_xml_parses_and_has_the_schemas_shape(engine, tmp_path):
    (path,) = export(engine, "junit", tmp_path / "junit.xml")
    root = ET.parse(path).getroot()
    assert root.tag == "testsuites"
    suites = root.findall("testsuite")
    assert [s.get("name") for s in suites] == [f"{LAB}.ada", f"{LAB}.alan", f"{LAB}.grace"]
    for suite in suites:
        cases = suite.findall("testcase")
        assert int(suite.get("tests")) == len(cases)
        assert int(suite.get("failures")) == sum(c.find("failure") is not None for c in cases)
        assert int(suite.get("skipped")) == sum(c.find("skipped") is not None for c in cases)
        for case in cases:
            assert set(case.attrib) >= {"name", "classname", "time"}
            assert all(child.tag in ("failure", "error", "skipped", "system-out", "system-err") for child in case)
    assert int(root.get("tests")) == sum(int(s.get("tests")) for s in suites)
    grace = suites[2]
    assert grace.find("testcase[@name='renders']/failure").get("message") == "1/2"


def test_one_html_page_per_learner_with_nothing_of_others_and_a_summary_with_plots(engine, tmp_path):
    written = export(engine, "html", tmp_path / "html")
    pages = {p.stem: p.read_text() for p in written if p.parent.name == "learners"}
    assert set(pages) == {"ada", "alan", "grace", "nobody"}
    others = {"ada": ["alan", "grace", "Turing", "Hopper"], "alan": ["ada", "grace", "Lovelace", "Hopper"],
              "grace": ["ada", "alan", "Lovelace", "Turing"]}
    for who, names in others.items():
        page = pages[who]
        assert f"VISIBLE-{who}" in page and "HIDDEN-" not in page
        for other in names:
            assert other not in page, f"{who}'s page mentions {other}"
    summary = (tmp_path / "html/index.html").read_text()
    images = re.findall(r"src='data:image/png;base64,([^']+)'", summary)
    assert len(images) == 2 and all(base64.b64decode(i).startswith(b"\x89PNG") for i in images)
    assert "score distribution" in summary and "pass rate per check" in summary


def test_csv_has_raw_penalty_and_final_and_overrides_show(engine, tmp_path):
    gb.add_override(engine, "grace", LAB, 2, "renders was right: checked by hand", check="renders")
    (path,) = export(engine, "csv", tmp_path / "g.csv")
    rows = {r["learner"]: r for r in csv.DictReader(path.open())}
    assert (rows["alan"]["raw_score"], rows["alan"]["late_penalty"], rows["alan"]["final_score"]) == ("3", "2", "1")
    assert rows["grace"]["final_score"] == "2" and "checked by hand" in rows["grace"]["overrides"]
    assert rows["nobody"]["status"] == "missing" and rows["nobody"]["final_score"] == ""


def test_gradebook_cli_override_show_and_export(engine, tmp_path):
    db = str(tmp_path / "gb.db")
    out = subprocess.run(CLI + ["gradebook", "override", "ada", "10", "renders", "--score", "1", "--reason", "copied",
                                "--db", db], capture_output=True, text=True, cwd=REPO, timeout=120)
    assert out.returncode == 0, out.stderr
    out = subprocess.run(CLI + ["gradebook", "show", "--db", db, "--learner", "ada"], capture_output=True, text=True,
                         cwd=REPO, timeout=120)
    assert out.returncode == 0 and "override" in out.stdout and "copied" in out.stdout and "alan" not in out.stdout
    out = subprocess.run(CLI + ["gradebook", "export", "--db", db, "--format", "pdf", "--out", str(tmp_path / "x")],
                         capture_output=True, text=True, cwd=REPO, timeout=120)
    assert out.returncode == 2 and "unknown format 'pdf'" in out.stderr
    (row,) = [r for r in finals(engine, LAB) if r.learner.id == "ada"]
    assert row.final == 3  # 4 - the check's 2 points + 1
