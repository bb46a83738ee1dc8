"""Every lab: the reference solution scores 100 %, the untouched starter at most 10 %."""

import pytest

from grader.grade import grade_notebook
from grader.labs import lab_modules

LABS = list(lab_modules())


def _explain(result) -> str:
    lines = [result.output] + [f"{t.name}: {t.status} {t.message}" for t in result.tests if t.status != "passed"]
    return "\n".join(lines)


@pytest.mark.slow
@pytest.mark.parametrize("lab_id", LABS)
def test_reference_solution_scores_full_marks(lab_id, isolate):
    module = lab_modules()[lab_id]
    result = grade_notebook(module, module.LAB.solution_path, reference=True, isolate=isolate)
    assert result.status == "graded", result.output
    assert result.score == result.max_score, _explain(result)


@pytest.mark.slow
@pytest.mark.parametrize("lab_id", LABS)
def test_untouched_starter_scores_at_most_ten_percent(lab_id, isolate):
    module = lab_modules()[lab_id]
    result = grade_notebook(module, module.LAB.lab_path, isolate=isolate)
    assert result.status == "graded", result.output
    assert result.score <= 0.1 * result.max_score, _explain(result)
    failed = [t for t in result.tests if t.status == "failed"]
    assert failed, "a starter must fail at least one check with a message"
    assert all(t.message for t in failed), "every failed check needs a message"
