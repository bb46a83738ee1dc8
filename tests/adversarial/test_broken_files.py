"""Files that are not gradable lab 03 notebooks: rejected with a reason; the batch goes on."""

import adversarial_cases as cases
import pytest
from adversarial_helpers import assert_case_and_next

NAMES = [c.name for c in cases.broken_cases()]


@pytest.fixture(scope="module")
def graded(graded_group):
    return graded_group("broken")


@pytest.mark.slow
@pytest.mark.parametrize("name", NAMES)
def test_rejected_with_a_reason(graded, name):
    assert_case_and_next(graded, name)
    result = graded.results[name]
    assert result.output.startswith("Not graded: ")  # the reason, once
    assert all(t.score == 0 and t.status == "failed" and t.message == "not graded (see above)" and not t.hint
               for t in result.tests)


def test_at_least_25_submissions_in_the_suite():
    count = len(cases.broken_cases()) + len(cases.resource_cases()) + len(cases.cheat_cases(cases.REPO / "x"))
    assert count >= 25
