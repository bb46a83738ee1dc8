"""Every check is proven on wrong answers: each lab's cases (grader/checks/labNN_cases.py) graded for real.

A case is a realistic learner mistake applied to the reference solution; the grader must fail exactly the
checks the case names (with a message naming the cause) and pass every other one.
"""

from __future__ import annotations

import json
import re

import pytest

from grader import assign
from grader.cases import cases_of, failing_coverage
from grader.grade import grade_notebook
from grader.labs import lab_modules

MODULES = lab_modules()
CASES = [(lab_id, case) for lab_id, module in MODULES.items() for case in cases_of(module)]


def _solved(module) -> dict:
    solution = json.loads(module.LAB.solution_path.read_text(encoding="utf-8"))
    return assign.build_lab(solution, module.LAB.id, with_solutions=True)


@pytest.mark.parametrize("lab_id", list(MODULES))
def test_every_check_fails_on_some_wrong_answer(lab_id):
    module = MODULES[lab_id]
    names = {c.name for c in module.CHECKS}
    seen = set()
    for case in cases_of(module):
        case.validate(names)
        case.notebook(_solved(module))  # every edit applies to today's reference
        assert case.name not in seen, f"two cases are named {case.name}"
        seen.add(case.name)
    counts = failing_coverage(module)
    print(f"{lab_id}: {len(seen)} wrong-answer cases; failing cases per check: {counts}")
    uncovered = [name for name, count in counts.items() if count == 0]
    assert not uncovered, f"{lab_id}: no wrong-answer case fails {uncovered}"


@pytest.mark.slow
@pytest.mark.parametrize("lab_id,case", CASES, ids=[f"{lab}-{case.name}" for lab, case in CASES])
def test_wrong_answer_gets_the_verdict_it_deserves(lab_id, case, tmp_path, isolate):
    module = MODULES[lab_id]
    path = tmp_path / f"{case.name}.ipynb"
    path.write_text(assign.dumps(case.notebook(_solved(module))), encoding="utf-8")
    result = grade_notebook(module, path, isolate=isolate)
    assert result.status == "graded", result.output
    got = {t.name: t for t in result.tests}
    only_with = {c.name for c in module.CHECKS if c.runs_only_with}  # "skipped: why" here, with no points at stake
    problems = []
    for name, test in got.items():
        if name in case.varies:
            continue
        want = case.expect.get(name, "passed")
        if name in only_with and name not in case.expect and test.status == "skipped" and test.max_score == 0:
            continue
        if test.status != want:
            problems.append(f"{name}: expected {want}, got {test.status}: {test.message[:400]}")
    for name, pattern in case.says.items():
        if not re.search(pattern, got[name].message):
            problems.append(f"{name}: message does not match {pattern!r}: {got[name].message[:400]}")
    assert not problems, f"case {case.name} ({case.mistake}):\n" + "\n".join(problems) + f"\n{result.output}"
