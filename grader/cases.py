"""Wrong-answer cases: a realistic learner mistake, written as an edit of a lab's reference solution, and
the verdict each check must give it.

A lab's cases live beside its checks (`grader/checks/labNN_cases.py`, a list `CASES`). One parametrised
test (`tests/test_wrong_answers.py`) grades every case and asserts:
- each check named in `expect` ends with that status (`failed`, `partial`, `skipped`, or `passed`);
- every check *not* named passes, so a case proves that one mistake costs only its own points;
- a check named in `varies` may end either way: its verdict depends on what the installation secret drew
  (e.g. a typed-in 300 ms caught by the learner's own tests only where the graded threshold is below it);
- each regular expression in `says` matches that check's message (the cause the grader observed).
A second test fails when a check of a lab has no case in which it fails (or is partial) while the
reference passes it. The cases also feed each lesson's "common mistakes" section.

Edits address cells by their lab id (`answer-04`, `locked-02`), as `assign.build_lab` numbers them, and
must match the reference text exactly once, so a case cannot go stale silently when a solution changes.
"""

from __future__ import annotations

import copy
import textwrap
from dataclasses import dataclass, field

STATUSES = ("passed", "partial", "failed", "skipped")


class CaseError(ValueError):
    """A case does not apply to the reference solution (a stale edit, an unknown cell or check)."""


@dataclass(frozen=True)
class Edit:
    """One change to a cell of the solved lab: `old` → `new`, or the whole cell when `old` is None."""

    cell: str  # the lab cell id, e.g. "answer-04"
    old: str | None  # text that occurs exactly once in the cell; None: replace the whole source
    new: str
    insert_after: bool = False  # True: `new` is a new code cell placed after `cell` (old is ignored)

    def apply(self, nb: dict) -> None:
        index = _index(nb, self.cell)
        if self.insert_after:
            nb["cells"].insert(index + 1, {"cell_type": "code", "execution_count": None, "metadata": {},
                                           "outputs": [], "source": _dedent(self.new)})
            return
        cell = nb["cells"][index]
        source = cell["source"]
        if self.old is None:
            cell["source"] = _dedent(self.new)
            return
        count = source.count(self.old)
        if count != 1:
            raise CaseError(f"cell {self.cell}: {self.old!r} occurs {count} times in the reference, expected once")
        cell["source"] = source.replace(self.old, self.new)


def replace(cell: str, old: str, new: str) -> Edit:
    """Change the text `old` (exactly once in the reference cell) into `new`."""
    return Edit(cell, old, new)


def answer(cell: str, source: str) -> Edit:
    """The whole answer cell written as `source` (dedented)."""
    return Edit(cell, None, source)


def add_cell(after: str, source: str) -> Edit:
    """A code cell the learner added right after lab cell `after`."""
    return Edit(after, None, source, insert_after=True)


@dataclass(frozen=True)
class Case:
    """A learner's mistake and what the grader must say about it."""

    name: str  # short, unique within the lab: a test id
    mistake: str  # what the learner did, in the words a teacher would use
    edits: tuple[Edit, ...]
    expect: dict[str, str]  # check name → its status; every other check must pass
    says: dict[str, str] = field(default_factory=dict)  # check name → regex its message must match (re.search)
    fix: str = ""  # what the learner should do instead (for the lesson's "common mistakes")
    varies: dict[str, str] = field(default_factory=dict)  # check name → why its verdict depends on the secret

    def notebook(self, solved: dict) -> dict:
        """The solved lab with this case's edits applied."""
        nb = copy.deepcopy(solved)
        for edit in self.edits:
            edit.apply(nb)
        return nb

    def validate(self, check_names: set[str]) -> None:
        unknown = sorted((set(self.expect) | set(self.says) | set(self.varies)) - check_names)
        if unknown:
            raise CaseError(f"case {self.name}: no check named {', '.join(unknown)}")
        bad = {k: v for k, v in self.expect.items() if v not in STATUSES}
        if bad:
            raise CaseError(f"case {self.name}: unknown status in {bad}; use one of {STATUSES}")
        both = sorted(set(self.expect) & set(self.varies))
        if both:
            raise CaseError(f"case {self.name}: {', '.join(both)} both expected and varying")
        if not any(v in ("failed", "partial") for v in self.expect.values()):
            raise CaseError(f"case {self.name}: a wrong answer must fail (or be partial on) at least one check")


def cases_of(lab_module) -> list[Case]:
    """The wrong-answer cases of a lab's checks module (`grader.checks.labNN_cases.CASES`), or []."""
    import importlib

    name = f"{lab_module.__name__}_cases"
    try:
        module = importlib.import_module(name)
    except ModuleNotFoundError as err:
        if err.name != name:
            raise
        return []
    return list(module.CASES)


def failing_coverage(lab_module) -> dict[str, int]:
    """Check name → how many of the lab's cases make it fail (or be partial)."""
    counts = {c.name: 0 for c in lab_module.CHECKS if not c.runs_only_with}  # those are proven by their own tests
    for case in cases_of(lab_module):
        for check, status in case.expect.items():
            if status in ("failed", "partial") and check in counts:
                counts[check] += 1
    return counts


def _index(nb: dict, cell_id: str) -> int:
    for index, cell in enumerate(nb["cells"]):
        if cell.get("metadata", {}).get("mlops", {}).get("id") == cell_id:
            return index
    raise CaseError(f"no cell {cell_id} in the lab")


def _dedent(source: str) -> str:
    return textwrap.dedent(source).strip("\n")
