"""Points without the work: patched libraries, silenced errors, fake outputs and statuses, edited
locked cells, duplicated ids, links to host files, and markup injected into feedback."""

import io
import json
import re

import adversarial_cases as cases
import pytest
from adversarial_helpers import assert_case_and_next

from grader.grade import write_results
from grader.report import print_results, write_html_report

ESCAPES = {"read_hidden_checks", "read_other_submission", "write_outside", "network", "read_environment"}
NAMES = [c.name for c in cases.cheat_cases(cases.REPO / "x") if c.name not in ESCAPES]


@pytest.fixture(scope="module")
def graded(graded_group):
    return graded_group("cheats")


@pytest.mark.slow
@pytest.mark.parametrize("name", NAMES)
def test_cheat_scores_exactly(graded, name):
    assert_case_and_next(graded, name)


@pytest.mark.slow
def test_fake_results_files_change_nothing(graded):
    """A results.json written by the notebook stays in its own work dir; the grader's verdict ignores it."""
    kept = graded.kept["fake_outputs"]
    assert json.loads((kept / "results.json").read_text())["score"] == 12  # it was written, inside the job
    assert graded.results["fake_outputs"].score == 1.0
    assert not (cases.REPO / "results.json").exists()


@pytest.mark.slow
def test_links_are_kept_as_links_and_never_followed(graded):
    outputs = graded.kept["symlink_grader"] / "outputs"
    assert (outputs / "model.skops").is_symlink() and (outputs / "root").is_symlink()
    messages = " ".join(t.message for t in graded.results["symlink_grader"].tests)
    assert "CHECKS" not in messages and "BEGIN SOLUTION" not in messages and "root:" not in messages


@pytest.mark.slow
def test_feedback_escapes_learner_strings(graded, tmp_path):
    result = graded.results["html_injection"]
    page = write_html_report([result], tmp_path / "report.html", reveal_hidden=True).read_text()
    assert "<script>alert" not in page and "<img src=x" not in page
    assert "&lt;script&gt;alert" in page and "&lt;img src=x onerror=alert(1)&gt;" in page
    assert "\x1b" not in page


@pytest.mark.slow
def test_reports_survive_markup_control_codes_and_surrogates(graded, tmp_path):
    from rich.console import Console

    results = [graded.results["html_injection"], graded.results["zz_sentinel"]]
    write_results(results, tmp_path / "results.json")
    payload = json.loads((tmp_path / "results.json").read_text(encoding="utf-8"))
    assert payload[0]["score"] == 0 and payload[1]["score"] == cases.FULL
    buffer = io.StringIO()
    print_results(results, console=Console(file=buffer, width=200, color_system=None))
    text = buffer.getvalue()
    assert "[/bold][link=http://evil]x" in text and "<script>alert" in text  # shown literally, not as markup
    assert "\x1b" not in text and not re.search(r"[\ud800-\udfff]", text)


@pytest.mark.slow
def test_fifo_outputs_neither_block_nor_get_copied(graded):
    kept = graded.kept["fifo_metrics"] / "outputs"
    assert (kept / "model.skops").is_file() and not (kept / "metrics.json").exists()
    assert graded.results["fifo_metrics"].execution_time < 150
