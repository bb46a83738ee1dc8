"""The repository stays consistent: library = export of the lessons, notebooks clean, labs = assign(solutions)."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from grader.assign import build_lab, dumps
from grader.labs import REPO, lab_modules

BIN = Path(sys.executable).parent


@pytest.fixture(scope="module")
def exported(tmp_path_factory) -> Path:
    """A copy of the lessons, exported and cleaned by nbdev in a temporary directory."""
    tmp = tmp_path_factory.mktemp("nbdev")
    shutil.copy(REPO / "settings.ini", tmp / "settings.ini")
    shutil.copytree(REPO / "curriculum", tmp / "curriculum")
    (tmp / "mlops_kit").mkdir()
    subprocess.run([BIN / "nbdev_export"], cwd=tmp, check=True, capture_output=True)
    subprocess.run([BIN / "nbdev_clean"], cwd=tmp, check=True, capture_output=True)
    return tmp


def test_library_is_the_export_of_the_lessons(exported):
    fresh = {p.name: p.read_text() for p in (exported / "mlops_kit").glob("*.py")}
    ours = {p.name: p.read_text() for p in (REPO / "mlops_kit").glob("*.py")}
    assert sorted(fresh) == sorted(ours), "mlops_kit/ has modules no lesson exports (or misses some): make export"
    stale = [name for name in fresh if fresh[name] != ours[name]]
    assert not stale, f"mlops_kit/{stale} differ from the lessons' export: edit the notebook, then `make export`"


def test_lessons_are_clean(exported):
    dirty = [p.name for p in (REPO / "curriculum").glob("*.ipynb")
             if p.read_bytes() != (exported / "curriculum" / p.name).read_bytes()]
    assert not dirty, f"run `make export` (nbdev_clean) on {dirty}"


@pytest.mark.parametrize("lab_id", list(lab_modules()))
def test_lab_is_generated_from_its_solution(lab_id):
    lab = lab_modules()[lab_id].LAB
    expected = dumps(build_lab(json.loads(lab.solution_path.read_text()), lab.id))
    assert lab.lab_path.read_text() == expected, f"labs/{lab.id}.ipynb is stale: run `make labs`"


@pytest.mark.parametrize("lab_id", list(lab_modules()))
def test_lab_spine(lab_id):
    """Header with title, week and time; a parameters cell; answer cells; a final self-check."""
    module = lab_modules()[lab_id]
    lab = module.LAB
    cells = json.loads(lab.solution_path.read_text())["cells"]
    header = build_lab(json.loads(lab.solution_path.read_text()), lab.id)["cells"][0]["source"]
    assert header.startswith(f"# Lab {lab.number} — {lab.title}\n"), "the header is written from the lab's spec"
    assert f"Week {lab.week}" in header and f"{lab.minutes} minutes" in header
    assert all(objective in header for objective in lab.objectives)
    assert any("parameters" in c.get("metadata", {}).get("tags", []) for c in cells), "no papermill parameters cell"
    sources = ["".join(c["source"]) for c in cells]
    assert any("### BEGIN SOLUTION" in s for s in sources), "no exercise"
    assert any("self_check(" in s for s in sources), "no self-check cell"
    assert all(not c.get("outputs") for c in cells if c["cell_type"] == "code"), "commit solutions without outputs"
    assert Path(REPO / lab.lesson).exists(), f"{lab.lesson} does not exist"
    assert len(module.CHECKS) and all(c.hint and c.section for c in module.CHECKS)


def test_no_solution_text_in_labs():
    for lab_id, module in lab_modules().items():
        text = module.LAB.lab_path.read_text()
        assert "### BEGIN SOLUTION" not in text and "### END SOLUTION" not in text, lab_id
