"""The course as a website (`make docs`, tools/docs.py): every lesson, lab and guide is a page, the syllabus maps
the 90-day plan to weeks, lessons, labs and roadmap sections, every link resolves, and the pages render in
Chromium without errors."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import sitecheck
from browser import Chromium

from grader.labs import REPO, lab_modules

sys.path.insert(0, str(REPO / "tools"))
import docs  # noqa: E402


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("docs") / "site"
    done = subprocess.run([sys.executable, str(REPO / "tools" / "docs.py"), "--out", str(out)], capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return out


def test_the_syllabus_reads_each_lesson_and_lab_from_the_course():
    rows = docs.syllabus_rows()
    lessons = sorted(p.stem for p in (REPO / "curriculum").glob("[0-9][0-9]_*.ipynb"))
    assert [r["stem"] for r in rows] == lessons
    labs = {module.LAB.id: module.LAB for module in lab_modules().values()}
    assert {r["lab"]["id"] for r in rows if r["lab"]} == set(labs)
    for row in rows[1:]:  # every weekly lesson names its roadmap sections in its first cell
        assert row["roadmap"] and set(row["roadmap"]) <= set(docs.SECTIONS.values()), row
    named = {r["stem"]: r["roadmap"] for r in rows}
    assert named["12_drift"] == ["Monitoring, logging, and observability for ML in production",
                                 "Security, compliance, and best practices"]
    assert "Model versioning and governance" in named["04_data_pipeline"]  # named across a line break
    assert docs.phase_of(5).startswith("Weeks 4–6") and docs.phase_of(13).startswith("After the 90 days")


@pytest.mark.slow
def test_every_page_is_there_and_every_link_resolves(site):
    lessons = sorted((REPO / "curriculum").glob("[0-9][0-9]_*.ipynb"))
    assert sorted(p.stem for p in (site / "lessons").glob("*.html")) == [p.stem for p in lessons]
    assert len(list((site / "labs").glob("*.html"))) == len(lab_modules())
    remote = docs.repo_url()
    allowed = (remote + "/", "https://", "http://")  # external addresses are not fetched offline: counted
    counts = sitecheck.assert_links_resolve(site, lambda link: link.startswith(allowed))
    assert counts["internal"] > 100, counts
    assert counts["embedded"] >= 13, counts  # every weekly lesson's diagram, drawn as an image in its page
    index = (site / "index.html").read_text()
    for stem in (p.stem for p in lessons):
        assert f'href="lessons/{stem}.html"' in index
    for lab_id in lab_modules():
        assert f'href="labs/{lab_id}.html"' in index
    for _, words in docs.PHASES:
        assert words in index
    # a link between course files became a link between pages: README → the architecture guide
    assert 'href="../guides/architecture.html"' in (site / "guides" / "course.html").read_text()
    # nbdev's directives are not shown; the lessons' code is
    lesson = (site / "lessons" / "01_tested_code.html").read_text()
    assert "#| export" not in lesson and "default_exp" not in lesson
    assert re.search(r'class="k">def</span>(<span class="w"> </span>)?<span class="nf">load_csv<', lesson)  # highlighted


@pytest.mark.slow
def test_the_pages_render_in_chromium_without_errors(site, tmp_path):
    browser = Chromium(tmp_path / "profile")
    try:
        for page in [site / "index.html", site / "lessons" / "12_drift.html", site / "labs" / "03_classifier.html",
                     site / "guides" / "course.html"]:
            browser.errors.clear()
            browser.open(page.as_uri())
            png = browser.screenshot(tmp_path / f"{page.stem}.png")
            assert len(png) > 10_000
            assert browser.js("document.querySelectorAll('nav a').length") >= 4
            assert not browser.errors, (page.name, browser.errors)
        browser.open((site / "index.html").as_uri())
        rows = browser.js("document.querySelectorAll('table:first-of-type tbody tr:not(.phase)').length")
        assert rows == len(docs.syllabus_rows())
    finally:
        browser.close()


def test_a_lessons_diagram_is_drawn_on_its_page():
    cell = 'from mlops_kit.course import diagram\n\ndiagram("""digraph { "data.csv" -> "model.skops" }""")'
    if shutil.which("dot") is None:
        pytest.skip("skipped: Graphviz's dot is not installed (make graphviz)")
    drawn = docs.diagram_svg(cell)
    assert drawn.startswith("<svg") and "model.skops" in drawn
    assert docs.diagram_svg("print('no drawing here')") is None
    assert docs.diagram_svg("diagram(source_from_elsewhere)") is None  # only a literal source is drawn
