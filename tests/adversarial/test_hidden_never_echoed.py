"""Nothing learner code saw or printed on hidden inputs reaches feedback (issue 9, class 2).

Lab 04 feeds a hidden corrupted CSV to the learner's validate stage. This submission's validate stage
prints everything it can find out about a CSV that is not the public one (its header, its broken rows),
tagged, before validating as asked. The tag may appear in no check's message (visible or hidden, even with
hidden checks revealed), nor in the result's notes; the hidden check still grades the stage's verdict.
"""

from __future__ import annotations

import json

import pytest
from adversarial_helpers import grade_alone

from grader import assign
from grader.cases import replace
from grader.checks import lab04
from grader.grade import write_results

TAG = "SPY-6005"
# in the validate stage's cmd: on any CSV without all the public columns, print the header and the rows (the
# tag is put together when it runs, so the command itself, which visible feedback may quote, does not hold it)
SPY = ("python -c \\\"import csv,sys; rows=list(csv.reader(open('data/raw.csv'))); "
       f"print('{TAG[:3]}' + '{TAG[3:]}', rows[0], rows[1:4], file=sys.stderr) if len(rows[0]) < 31 else None\\\" ; ")


def _spying_lab() -> dict:
    solved = assign.build_lab(json.loads(lab04.LAB.solution_path.read_text(encoding="utf-8")), lab04.LAB.id,
                              with_solutions=True)
    replace("answer-13", 'f"{run} validate data/raw.csv data/validated.csv"',
            f'f"{SPY}{{run}} validate data/raw.csv data/validated.csv"').apply(solved)
    return solved


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    folder = tmp_path_factory.mktemp("spy04")
    result, _ = grade_alone(lab04, _spying_lab(), folder, "spy")
    return result, folder


@pytest.mark.slow
def test_what_the_stage_printed_on_hidden_data_is_never_shown(graded):
    result, folder = graded
    assert result.status == "graded", result.output
    out = folder / "results.json"
    write_results([result], out, reveal_hidden=True)
    text = out.read_text(encoding="utf-8")
    assert TAG not in text
    assert all(TAG not in t.message for t in result.tests)
    assert out.stat().st_size < 100_000
    assert not list((folder / "jobs").iterdir())  # no job dir left


@pytest.mark.slow
def test_the_hidden_check_still_grades_the_verdict(graded):
    result, _ = graded
    by_name = {t.name: t for t in result.tests}
    # the stage's command is not the lab's (stage_validate says so, quoting the public command only), but it
    # still validates: on the corrupted CSV it fails naming the broken columns, which earns the hidden points
    assert by_name["stage_validate"].status == "failed"
    assert by_name["validation_rejects_corrupt"].status == "passed", by_name["validation_rejects_corrupt"].message
    assert result.score == pytest.approx(lab04.CHECKS.max_score - by_name["stage_validate"].max_score)
