"""The portfolio: a static site built only from graded evidence, checked in real headless Chromium."""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
import sitecheck
from browser import Chromium

from grader import assign
from grader.cases import cases_of
from grader.labs import REPO, lab_modules
from grader.portfolio import build_site
from grader.progress import attempt_of, read_history

REPO_URL = "https://github.com/learner/mlops-course"
CLI = str(Path(sys.executable).parent / "mlops-grade")


def assert_links_resolve(site: Path) -> int:
    """Every link of every page resolves: a file of the site, or the learner's repository. Returns the count."""
    counts = sitecheck.assert_links_resolve(site, lambda link: link.startswith(REPO_URL + "/"))
    return counts["internal"] + counts["external"]


def result(name, status, score, top, figures=None, visible=True):
    return {"name": name, "status": "passed" if status == "passed" else "failed", "check_status": status,
            "score": score, "max_score": top, "visibility": "visible" if visible else "after_published",
            **({"figures": figures} if figures else {})}


def graded(lab, tests, minutes, evidence=None):
    at = dt.datetime(2026, 11, 2, 9, tzinfo=dt.timezone.utc) + dt.timedelta(minutes=minutes)
    data = {"lab": lab, "status": "graded", "score": sum(t["score"] for t in tests),
            "max_score": sum(t["max_score"] for t in tests), "tests": tests, "secret_fingerprint": "abc123def456",
            "evidence": evidence or {"grader_version": "v1", "lock_sha256": "l" * 64, "notebook_sha256": "n" * 64,
                                     "lab_seed": 17}}
    return attempt_of(data, at, "results")


AUC = {"holdout_auc": {"value": 0.9871, "label": "ROC AUC on the grader's hidden holdout", "unit": ""}}
CARD = {"model_card": {"value": "# Card\n<script>alert(1)</script>", "label": "model card", "unit": "markdown"}}


def test_only_passed_labs_become_milestones_with_the_figures_their_passed_checks_recorded(tmp_path):
    attempts = [
        graded("03_classifier", [result("holdout_auc", "failed", 0, 3, {"holdout_auc": {**AUC["holdout_auc"],
                                                                                          "value": 0.61}})], 0),
        graded("03_classifier", [result("holdout_auc", "passed", 3, 3, AUC)], 20),
        graded("06_registry", [result("card_matches_registry", "passed", 2, 2, CARD)], 30),
        # failed checks' figures are no evidence of a milestone; a lab not passed in full is no milestone
        graded("07_serving", [result("latency_under_load", "failed", 0, 2, {"p95_ms": {"value": 900.0,
                                                                                      "label": "p95", "unit": "ms"}}),
                              result("service_ready", "passed", 1, 1)], 40),
    ]
    index = build_site(attempts, tmp_path / "site", repo_url=REPO_URL, source="test results")
    site = index.parent
    assert sorted(p.name for p in (site / "labs").iterdir()) == ["03_classifier.html", "06_registry.html"]
    page = (site / "labs" / "03_classifier.html").read_text()
    assert "0.9871" in page and "0.61" not in page and "after 2 attempt(s)" in page
    assert f"{REPO_URL}/blob/main/labs/03_classifier.ipynb" in page
    assert "900" not in index.read_text() and "07_serving" in index.read_text()  # listed as not yet passed
    card = (site / "labs" / "06_registry.html").read_text()
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in card and "<script>" not in card
    bundle = json.loads((site / "evidence" / "03_classifier.json").read_text())
    assert bundle["evidence"]["grader_version"] == "v1" and bundle["evidence"]["secret_fingerprint"] == "abc123def456"
    assert bundle["score"] == 3 and bundle["checks"][0]["figures"] == AUC
    assert "2/13 milestones" in (site / "badge.svg").read_text().replace(f"/{len(lab_modules())}", "/13")
    assert "badge.svg" in (site / "badge.md").read_text()
    assert assert_links_resolve(site) > 5


def test_hidden_checks_figures_reach_the_portfolio_only_where_the_result_revealed_them(tmp_path):
    from grader.grade import Result
    from grader.judge import CheckResult

    tests = [CheckResult("holdout_auc", "d", 3, 3, "passed", "", False, "", "", figures=AUC),
             CheckResult("model_learned", "d", 1, 1, "passed", "", True, "", "")]
    r = Result("s.ipynb", "03_classifier", 4, 4, 1.0, "", tests, evidence={"grader_version": "x"})
    at = dt.datetime(2026, 11, 2, tzinfo=dt.timezone.utc)
    for revealed in (False, True):
        build_site([attempt_of(r.to_json(reveal_hidden=revealed), at, "results")], tmp_path / str(revealed))
        page = (tmp_path / str(revealed) / "labs" / "03_classifier.html").read_text()
        assert ("0.9871" in page) is revealed


def test_a_graded_result_carries_its_figures_and_evidence_into_the_json(tmp_path):
    from grader.grade import Result
    from grader.judge import CheckResult

    test = CheckResult("holdout_auc", "d", 3, 3, "passed", "", False, "", "", figures=AUC)
    r = Result("s.ipynb", "03_classifier", 3, 3, 1.0, "", [test], evidence={"grader_version": "x"})
    assert "figures" not in r.to_json()["tests"][0]  # a hidden check's figures are published with its details
    assert r.to_json(reveal_hidden=True)["tests"][0]["figures"] == AUC
    assert r.to_json()["evidence"] == {"grader_version": "x"}


def test_histories_written_before_figures_existed_still_read_and_record(tmp_path):
    db = tmp_path / "old.sqlite"
    con = sqlite3.connect(db)
    con.executescript("""CREATE TABLE attempts (id INTEGER PRIMARY KEY AUTOINCREMENT, lab TEXT NOT NULL, at TEXT NOT NULL,
        score REAL NOT NULL, max_score REAL NOT NULL, notebook_sha256 TEXT, source TEXT NOT NULL);
        CREATE TABLE checks (attempt_id INTEGER NOT NULL, name TEXT NOT NULL, status TEXT NOT NULL, score REAL NOT NULL,
        max_score REAL NOT NULL, hint TEXT NOT NULL DEFAULT '', section TEXT NOT NULL DEFAULT '');
        INSERT INTO attempts VALUES (1, '03_classifier', '2026-11-01T10:00:00+00:00', 1, 2, NULL, 'check');
        INSERT INTO checks VALUES (1, 'a', 'passed', 1, 1, '', '');""")
    con.commit()
    con.close()
    assert read_history(db)[0].checks[0]["figures"] == {} and read_history(db)[0].evidence == {}
    from grader.judge import CheckResult
    from grader.progress import record_attempt

    check = CheckResult("a", "d", 1, 1, "passed", "", True, "", "", figures=AUC)
    assert record_attempt("03_classifier", [check], path=db, evidence={"grader_version": "v2"}) is None
    latest = read_history(db)[-1]
    assert latest.checks[0]["figures"] == AUC and latest.evidence == {"grader_version": "v2"}


# ---- a learner's journey, graded for real --------------------------------------------------------------------

JOURNEY = (("01", "import_error_at_module_level"), ("03", "typed_in_seed"), ("06", "card_todo_left"))


def _solved(module) -> dict:
    solution = json.loads(module.LAB.solution_path.read_text(encoding="utf-8"))
    return assign.build_lab(solution, module.LAB.id, with_solutions=True)


def _check(number: str, notebook: Path, env: dict) -> subprocess.CompletedProcess:
    return subprocess.run([CLI, "check", number, str(notebook)], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=600)


@pytest.mark.slow
def test_a_learner_through_three_labs_sees_exactly_what_was_graded(tmp_path):
    """Three labs, each with one realistic wrong attempt then a right one, checked with `mlops-grade check`;
    progress and the portfolio show exactly what the history recorded; the site renders in Chromium."""
    env = {**os.environ, "MLOPS_PROGRESS_DB": str(tmp_path / "progress.sqlite")}
    env.pop("MLOPS_GRADING", None)
    modules = lab_modules()
    by_number = {m.LAB.number: m for m in modules.values()}
    for number, case_name in JOURNEY:
        module = by_number[number]
        case = next(c for c in cases_of(module) if c.name == case_name)
        for label, nb in (("wrong", case.notebook(_solved(module))), ("right", _solved(module))):
            path = tmp_path / f"{module.LAB.id}-{label}.ipynb"
            path.write_text(assign.dumps(nb), encoding="utf-8")
            out = _check(number, path, env)  # without a sandbox here, check says so and runs without
            assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    history = read_history(tmp_path / "progress.sqlite")
    assert [a.lab for a in history] == [by_number[n].LAB.id for n, _ in JOURNEY for _ in range(2)]
    for wrong, right in zip(history[::2], history[1::2]):
        assert wrong.score < wrong.max_score and right.score == right.max_score
        assert right.evidence.get("grader_version") and right.evidence.get("notebook_sha256") == right.notebook_sha256

    view = subprocess.run([sys.executable, "-m", "grader.progress"], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=120)
    rows = {r["lab"]: r for r in json.loads(view.stdout)["labs"]}
    for number, _ in JOURNEY:
        row = rows[by_number[number].LAB.id]
        assert row["status"] == "done" and row["attempts"] == 2
    assert json.loads(view.stdout)["next_lab"] == by_number["02"].LAB.id

    site = tmp_path / "site"
    out = subprocess.run([CLI, "portfolio", "--out", str(site), "--repo-url", REPO_URL],
                         cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert sorted(p.stem for p in (site / "labs").glob("*.html")) == sorted(by_number[n].LAB.id for n, _ in JOURNEY)
    for right in history[1::2]:  # every figure recorded for a passed check is on the lab's page, and nothing else
        page = (site / "labs" / f"{right.lab}.html").read_text()
        recorded = [(c["name"], f) for c in right.checks if c["status"] == "passed" for f in c["figures"].values()]
        shown = re.findall(r"<td><strong>(.*?)</strong></td><td><code>(.*?)</code>", page)
        assert len(shown) == sum(1 for _, f in recorded if f["unit"] != "markdown")
        for name, figure in recorded:
            if figure["unit"] == "markdown":
                assert "## Limitations" in page
            else:
                assert any(check == name for _, check in shown), (name, figure)
    lab01 = (site / "labs" / f"{by_number['01'].LAB.id}.html").read_text()
    assert re.search(r"mutants caught by the tests, run by the grader</td><td><strong>\d+ of \d+", lab01)
    assert assert_links_resolve(site) > 10

    browser = Chromium(tmp_path / "profile")
    try:
        for page in [site / "index.html", *sorted((site / "labs").glob("*.html"))]:
            browser.errors.clear()
            browser.open(page.as_uri())
            png = browser.screenshot(tmp_path / f"{page.stem}.png")
            assert png.startswith(b"\x89PNG") and len(png) > 5000
            assert browser.js("document.querySelectorAll('svg').length") >= 1
            assert browser.js("[...document.images].every(i => i.complete && i.naturalWidth > 0)")
            assert not browser.errors, (page.name, browser.errors)
        browser.open((site / "index.html").as_uri())
        text = browser.js("document.body.innerText")
        assert f"Milestones passed (3 of {len(modules)})" in text, text[:500]
    finally:
        browser.close()
