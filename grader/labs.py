"""Lab specifications and where each lab's notebooks live."""

from __future__ import annotations

import importlib
import pkgutil
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Lab:
    """What a lab is: its identity, its place in the course and its limits."""

    id: str  # e.g. "03_classifier": also the file stem in solutions/, labs/ and curriculum/
    title: str  # shown in headers, tables and feedback
    week: int  # week of the 90-day plan
    minutes: int  # estimated time for a learner
    objectives: tuple[str, ...]  # what the learner can do afterwards
    lesson: str  # the curriculum notebook it follows, e.g. "curriculum/03_classifier.ipynb"
    seed: int = 0  # the grading seed: differs from the notebook's default, so a hard-coded seed shows
    timeout: int = 300  # wall-clock seconds for executing the whole notebook at grading
    budget: int = 420  # wall-clock seconds for the whole submission: the notebook and all its probes
    cell_timeout: int = 120  # wall-clock seconds for one cell
    memory_bytes: int = 3 * 2**30  # memory of the whole execution job
    disk_bytes: int = 2 * 2**30  # what the execution job may write
    # packages the graded notebook cannot import: costly at import and unused by labs 01-12 (PyTorch, which
    # scikit-learn's estimator discovery loads; an IRI grammar jsonschema compiles for a format nobody checks;
    # Dask, which pandera imports when it validates typed frames: the cohort backend's, never a lab's)
    not_needed: tuple[str, ...] = ("torch", "rfc3987_syntax", "dask", "distributed")

    @property
    def number(self) -> str:
        return self.id.split("_", 1)[0]

    @property
    def solution_path(self) -> Path:
        return REPO / "solutions" / f"{self.id}.ipynb"

    @property
    def lab_path(self) -> Path:
        return REPO / "labs" / f"{self.id}.ipynb"


def lab_modules() -> dict[str, object]:
    """Every lab's checks module (`grader.checks.labNN`), keyed by lab id, in course order."""
    import grader.checks as pkg

    found = {}
    for info in sorted(pkgutil.iter_modules(pkg.__path__), key=lambda i: i.name):
        if info.name.startswith("lab") and info.name[3:].isdigit():
            module = importlib.import_module(f"grader.checks.{info.name}")
            found[module.LAB.id] = module
    return found


def find_lab(name: str):
    """The checks module of the lab named by its number ("03", "3") or its id ("03_classifier")."""
    modules = lab_modules()
    for lab_id, module in modules.items():
        number = module.LAB.number
        if name in (lab_id, number) or (name.isdigit() and int(name) == int(number)):
            return module
    known = ", ".join(f"{m.LAB.number} ({i})" for i, m in modules.items())
    raise LookupError(f"no lab named {name!r}; known labs: {known}")


def lesson_headings(lesson: Path) -> list[tuple[str, str]]:
    """(numbered section it sits under, heading text without markup) for every markdown heading of a lesson."""
    import json

    cells = json.loads(Path(lesson).read_text(encoding="utf-8"))["cells"]
    found, current = [], ""
    for cell in cells:
        if cell.get("cell_type") != "markdown":
            continue
        source = "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]
        for line in source.splitlines():
            if line.startswith("#"):
                text = line.lstrip("#").strip().replace("`", "")
                number = text.split(" ", 1)[0]
                if number[:1].isdigit() and "." in number:
                    current = number
                found.append((current, text))
    return found


def resolve_section(section: str) -> list[tuple[Path, str]]:
    """The lesson headings a check's `section` names ("3.7 Save the artifact", "1.3 … (week 1)", "4.7 Sub
    heading"; several joined by "; "). Raises LookupError for one that names no heading."""
    resolved = []
    for part in (p.strip() for p in section.split(";")):
        number, _, title = part.partition(" ")
        title = title.replace("`", "").rsplit(" (week ", 1)[0].strip()
        week = number.split(".", 1)[0]
        lessons = sorted((REPO / "curriculum").glob(f"{int(week):02d}_*.ipynb")) if week.isdigit() else []
        if not lessons:
            raise LookupError(f"section {part!r}: no lesson for week {week}")
        headings = lesson_headings(lessons[0])
        match = [text for under, text in headings
                 if (text.startswith(f"{number} ") and text[len(number) + 1:].startswith(title))
                 or (under == number and text.startswith(title))]
        if not match:
            raise LookupError(f"section {part!r} names no heading of {lessons[0].name}")
        resolved.append((lessons[0], match[0]))
    return resolved
