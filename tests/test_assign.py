"""Solutions → labs (stubs, ids, determinism) and the restore of locked cells at grading."""

import copy
import json

import pytest

from grader.assign import (
    BEGIN,
    END,
    AuthoringError,
    build_lab,
    checksum,
    dumps,
    keep_solutions,
    restore,
    strip_solutions,
)
from grader.labs import find_lab

LAB = find_lab("03").LAB


def _solution() -> dict:
    return json.loads(LAB.solution_path.read_text(encoding="utf-8"))


# --- strip_solutions / keep_solutions ----------------------------------------------------------


def test_strip_replaces_the_region_with_a_stub_that_repeats_the_hint():
    source = f"x = 1\n# Hint: use the seed\n{BEGIN}\ny = secret()\n{END}\nprint(x)"
    stripped = strip_solutions(source)
    assert stripped == ('x = 1\n# Hint: use the seed\n# YOUR CODE HERE\nraise NotImplementedError("use the seed")'
                        "\nprint(x)")
    assert "secret" not in stripped


def test_strip_keeps_indentation_and_handles_several_regions():
    source = f"def f():\n    {BEGIN}\n    return 1\n    {END}\n\n{BEGIN}\nz = 2\n{END}"
    stripped = strip_solutions(source)
    assert "    # YOUR CODE HERE\n    raise NotImplementedError(\"replace this line with your solution\")" in stripped
    assert stripped.count("raise NotImplementedError") == 2 and "return 1" not in stripped and "z = 2" not in stripped
    compile(stripped, "stub", "exec")


def test_strip_escapes_quotes_in_hints():
    stripped = strip_solutions(f'# Hint: call f("x") \\ then g\n{BEGIN}\npass\n{END}')
    namespace = {}
    with pytest.raises(NotImplementedError, match=r'call f\("x"\) \\ then g'):
        exec(stripped, namespace)


@pytest.mark.parametrize("source, message", [
    (f"{BEGIN}\n{BEGIN}\n{END}", "nested"),
    (f"x = 1\n{END}", "without"),
    (f"{BEGIN}\nx = 1", "never closed"),
])
def test_strip_rejects_malformed_markers(source, message):
    with pytest.raises(AuthoringError, match=message):
        strip_solutions(source, where="lab cell 3")


def test_keep_solutions_drops_only_the_markers():
    assert keep_solutions(f"a\n  {BEGIN}\n  b\n  {END}\nc") == "a\n  b\nc"


# --- build_lab ---------------------------------------------------------------------------------


def test_build_lab_is_byte_identical_across_runs_and_matches_labs_dir():
    first = dumps(build_lab(_solution(), LAB.id))
    second = dumps(build_lab(copy.deepcopy(_solution()), LAB.id))
    assert first == second
    assert first == LAB.lab_path.read_text(encoding="utf-8"), "labs/ is stale: run mlops-grade assign 03"
    assert dumps(build_lab(_solution(), LAB.id, True)) == dumps(build_lab(_solution(), LAB.id, True))


def test_build_lab_ids_kinds_checksums_and_no_solution_text():
    lab = build_lab(_solution(), LAB.id)
    ids = [c["metadata"]["mlops"]["id"] for c in lab["cells"]]
    assert len(ids) == len(set(ids)) and all(c["id"] == c["metadata"]["mlops"]["id"] for c in lab["cells"])
    for index, cell in enumerate(lab["cells"]):
        meta = cell["metadata"]["mlops"]
        assert meta["id"] == f"{meta['kind']}-{index:02d}"
        assert meta["checksum"] == checksum(cell["source"])
        assert BEGIN not in cell["source"] and END not in cell["source"]
        if cell["cell_type"] == "code":
            assert cell["outputs"] == [] and cell["execution_count"] is None
    assert lab["metadata"]["mlops"] == {"lab": LAB.id} and lab["metadata"]["kernelspec"]["name"] == "python3"
    answers = [c for c in lab["cells"] if c["metadata"]["mlops"]["kind"] == "answer"]
    assert answers and all("raise NotImplementedError" in c["source"] for c in answers)
    assert "parameters" in lab["cells"][1]["metadata"]["tags"]


def test_markers_outside_code_cells_are_an_authoring_error():
    solution = {"cells": [{"cell_type": "markdown", "metadata": {}, "source": f"{BEGIN}\nx\n{END}"}]}
    with pytest.raises(AuthoringError, match="only allowed in code cells"):
        build_lab(solution, "99_test")


# --- restore -----------------------------------------------------------------------------------


@pytest.fixture
def template():
    return build_lab(_solution(), LAB.id)


def _ids(nb):
    return [c.get("metadata", {}).get("mlops", {}).get("id") for c in nb["cells"]]


def _by_id(nb, cell_id):
    return next(c for c in nb["cells"] if c.get("metadata", {}).get("mlops", {}).get("id") == cell_id)


def test_restore_of_the_untouched_lab_is_the_lab(template):
    restored = restore(copy.deepcopy(template), template)
    assert restored.notebook == template and restored.notices == [] and restored.answers_changed == 0


def test_restore_keeps_answers_and_counts_changes(template):
    solved = build_lab(_solution(), LAB.id, with_solutions=True)
    restored = restore(solved, template)
    assert restored.answers_changed == len([i for i in _ids(template) if i.startswith("answer")])
    assert _by_id(restored.notebook, "answer-04")["source"] == _by_id(solved, "answer-04")["source"]
    assert restored.notices == []


def test_restore_puts_back_edited_locked_cells(template):
    sub = copy.deepcopy(template)
    _by_id(sub, "locked-01")["source"] = "seed = 0  # my own seed"
    _by_id(sub, "locked-05")["cell_type"] = "markdown"
    restored = restore(sub, template)
    assert _by_id(restored.notebook, "locked-01")["source"] == _by_id(template, "locked-01")["source"]
    assert _by_id(restored.notebook, "locked-05") == _by_id(template, "locked-05")
    assert restored.notices == ["restored 2 locked cell(s) you edited: locked-01, locked-05"]


def test_restore_puts_back_deleted_cells_and_reports_missing_answers(template):
    sub = copy.deepcopy(template)
    sub["cells"] = [c for c in sub["cells"] if _ids({"cells": [c]})[0] not in ("locked-02", "answer-07")]
    restored = restore(sub, template)
    assert _ids(restored.notebook) == _ids(template)
    assert restored.notices == ["restored 1 locked cell(s) you deleted: locked-02",
                                "answer cell(s) missing, graded as not attempted: answer-07"]
    assert "raise NotImplementedError" in _by_id(restored.notebook, "answer-07")["source"]


def test_restore_treats_duplicates_as_extra_cells_in_place(template):
    sub = copy.deepcopy(template)
    first = copy.deepcopy(_by_id(sub, "answer-04"))
    first["source"] = "X, y = 1, 2"
    duplicate = copy.deepcopy(_by_id(sub, "locked-01"))
    duplicate["source"] = "seed = 0"
    position = _ids(sub).index("answer-04")
    sub["cells"][position:position] = [first]  # the first copy of answer-04 wins; the stub becomes extra
    sub["cells"].insert(_ids(sub).index("locked-05"), duplicate)
    for cell in sub["cells"]:
        cell["id"] = "same"
    restored = restore(sub, template)
    cells = restored.notebook["cells"]
    assert _by_id(restored.notebook, "answer-04")["source"] == "X, y = 1, 2"
    at = _ids(restored.notebook).index("answer-04")
    extra_stub, extra_seed = cells[at + 1], cells[at + 2]
    assert "raise NotImplementedError" in extra_stub["source"] and extra_stub["metadata"] == {}
    assert extra_seed["source"] == "seed = 0" and extra_seed["metadata"] == {}
    assert _by_id(restored.notebook, "locked-01")["source"] == _by_id(template, "locked-01")["source"]
    ids = [c["id"] for c in cells]
    assert len(ids) == len(set(ids)), "every cell gets a unique nbformat id"
    assert restored.notices == []


def test_restore_keeps_extra_cells_without_outputs_or_parameter_tags(template):
    sub = copy.deepcopy(template)
    extra = {"cell_type": "code", "execution_count": 3, "id": "mine",
             "metadata": {"tags": ["parameters", "injected-parameters", "keep", 5]},
             "outputs": [{"output_type": "stream", "name": "stdout", "text": "All tests passed"}],
             "source": "seed = 0"}
    top = {"cell_type": "markdown", "metadata": {"mlops": {"id": "locked-99"}}, "source": "# my notes"}
    sub["cells"].insert(2, extra)
    sub["cells"].insert(0, top)
    restored = restore(sub, template)
    cells = restored.notebook["cells"]
    assert cells[0]["source"] == "# my notes" and cells[0]["cell_type"] == "markdown"
    at = _ids(restored.notebook).index("locked-01")
    assert cells[at + 1] == {"cell_type": "code", "metadata": {"tags": ["keep"]}, "source": "seed = 0",
                             "execution_count": None, "outputs": [], "id": f"extra-{at + 1:03d}"}
    assert restored.notebook["metadata"] == template["metadata"]


def test_restore_turns_an_answer_of_another_type_into_code(template):
    sub = copy.deepcopy(template)
    _by_id(sub, "answer-04")["cell_type"] = "raw"
    _by_id(sub, "answer-04")["source"] = "X = 1"
    restored = restore(sub, template)
    cell = _by_id(restored.notebook, "answer-04")
    assert cell["cell_type"] == "code" and cell["source"] == "X = 1"
