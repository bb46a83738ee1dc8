"""Every check's `section` names a real heading of a lesson, so "reread 3.7" always leads somewhere."""

import pytest

from grader.labs import lab_modules, resolve_section

MODULES = lab_modules()


@pytest.mark.parametrize("lab_id", list(MODULES))
def test_every_section_names_a_lesson_heading(lab_id):
    unresolved = []
    for check in MODULES[lab_id].CHECKS:
        try:
            resolve_section(check.section)
        except LookupError as err:
            unresolved.append(f"{check.name}: {err}")
    assert not unresolved, "\n".join(unresolved)


def test_a_wrong_section_is_refused():
    with pytest.raises(LookupError):
        resolve_section("3.9 A section that does not exist")
    with pytest.raises(LookupError):
        resolve_section("3.7 Save the model unsafely")
