"""Private hidden checks (`--checks-dir`): same names override a lab's check in place, new names add, with the same
authoring API; they are always hidden, they never enter labs/, the sandbox or any learner-facing output — a real
grading run proves it: the learner's notebook looks for the private file from inside its sandbox."""

import hashlib
import json
import sys
from pathlib import Path

import pytest

from grader.cohort import private
from grader.labs import REPO, find_lab

LAB = "10_kubernetes"
MARK = "PRIVATE-7f3a"

PRIVATE = f'''
from grader.checks.common import Checks, Fail

CHECKS = Checks()


@CHECKS.add(points=3, hint="{MARK}-hint", section="10.6 Costs", visible=True)
def cost_example(ctx):
    """{MARK}-description"""
    raise Fail("{MARK}-message: the instructor's stricter cost check")


@CHECKS.add(points=1, hint="{MARK}-hint", section="10.6 Costs")
def sandbox_saw_no_private_file(ctx):
    """what the notebook could see of the private checks"""
    seen = ctx.read_text(ctx.output("leak.txt"))
    if seen != "absent":
        raise Fail(f"{MARK}: the notebook saw " + seen)
'''


def write_private(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{LAB}.py"
    path.write_text(PRIVATE)
    return path


def test_same_names_override_in_place_new_names_add_and_all_are_hidden(tmp_path):
    module = find_lab(LAB)
    merged = private.load(module, write_private(tmp_path / "private").parent)
    names = [c.name for c in merged.CHECKS]
    assert names == [c.name for c in module.CHECKS] + ["sandbox_saw_no_private_file"]
    replaced = merged.CHECKS["cost_example"]
    assert replaced.points == 3 and not replaced.visible  # visible=True in a private file still means hidden
    assert module.CHECKS["cost_example"].points == 2 and module.CHECKS["cost_example"].visible  # the lab is untouched
    assert merged.prepare is module.prepare and merged.LAB is module.LAB
    assert private.load(module, tmp_path / "empty") is module  # no file for the lab: the lab itself


def test_a_private_file_without_checks_or_with_unknown_dependencies_is_refused(tmp_path):
    module = find_lab(LAB)
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "lab10.py").write_text("CHECKS = []\n")
    with pytest.raises(ValueError, match="define `CHECKS = Checks"):
        private.load(module, tmp_path / "a")
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "lab10.py").write_text(
        "from grader.checks.common import Checks\nCHECKS = Checks()\nCHECKS.add(points=1, hint='', section='')(lambda c: 0)\n"
        "def other(ctx): pass\nCHECKS._checks['x'] = CHECKS._checks.pop('<lambda>').__class__(name='x', func=other, "
        "points=1, visible=False, hint='', section='', depends=('nope',))\n")
    with pytest.raises(ValueError, match="depends on unknown checks"):
        private.load(module, tmp_path / "b")


@pytest.mark.parametrize("place", [REPO / "labs" / "private", Path(sys.prefix) / "private", REPO / "solutions"])
def test_a_checks_dir_that_learners_or_the_sandbox_can_read_is_refused(place):
    with pytest.raises(ValueError, match="learners or the grading sandbox"):
        private.refuse_public_places(place)


def _labs_digest() -> str:
    digest = hashlib.sha256()
    for path in sorted((REPO / "labs").rglob("*")):
        digest.update(str(path).encode() + (path.read_bytes() if path.is_file() else b""))
    return digest.hexdigest()


def test_private_checks_run_in_the_grader_never_in_the_sandbox_nor_in_learner_output(tmp_path, isolate):
    from grader.cohort import gradebook as gb
    from grader.cohort.exports import export
    from grader.cohort.runner import grade_cohort

    secret_file = write_private(tmp_path / "instructor-only")
    before = _labs_digest()
    notebook = json.loads((REPO / "labs" / f"{LAB}.ipynb").read_text())
    probe = (f"import pathlib\nfound = pathlib.Path({str(secret_file)!r}).exists() or pathlib.Path({str(secret_file.parent)!r})"
             ".exists()\npathlib.Path(output_dir).mkdir(parents=True, exist_ok=True)\n"
             "pathlib.Path(output_dir, 'leak.txt').write_text('present' if found else 'absent')\n")
    notebook["cells"].append({"cell_type": "code", "execution_count": None, "id": "learner-probe", "metadata": {},
                              "outputs": [], "source": probe})
    cohort = tmp_path / "cohort" / "ada"
    cohort.mkdir(parents=True)
    (cohort / f"{LAB}.ipynb").write_text(json.dumps(notebook))
    engine = gb.open_gradebook(str(tmp_path / "gb.db"))
    module = private.load(find_lab(LAB), secret_file.parent)
    grade_cohort(module, tmp_path / "cohort", engine, progress=False)
    (row,) = __import__("grader.cohort.exports", fromlist=["finals"]).finals(engine, LAB)
    tests = {t["name"]: t for t in row.tests}
    assert tests["sandbox_saw_no_private_file"]["check_status"] == "passed", tests["sandbox_saw_no_private_file"]
    assert tests["cost_example"]["max_score"] == 3 and f"{MARK}-message" in tests["cost_example"]["output"]  # instructor
    assert _labs_digest() == before
    learner_facing = export(engine, "gradescope", tmp_path / "gs") + export(engine, "html", tmp_path / "html")
    for path in learner_facing:
        if path.name == "index.html":
            continue  # the instructor's summary
        assert MARK not in path.read_text(), f"{path} shows a private check's details"
    for path in (tmp_path / "cohort").rglob("*"):
        assert path.is_dir() or MARK.encode() not in path.read_bytes()
