"""Solutions → learner labs (solution regions become stubs), and, at grading, locked cells restored.

Authoring format (nbgrader-compatible markers):

    # Hint: one line that the stub's error message repeats      (optional, kept in the lab)
    ### BEGIN SOLUTION
    ...reference code...
    ### END SOLUTION

Every cell of a generated lab gets a stable id (`answer-NN` for cells with a solution region,
`locked-NN` for all others) and `metadata.mlops` = {id, kind, checksum}. Locked cells are restored
from the lab at grading; answer cells are what the learner writes.
"""

from __future__ import annotations

import copy
import hashlib
import json
import re
from dataclasses import dataclass, field

BEGIN = "### BEGIN SOLUTION"
END = "### END SOLUTION"
_HINT = re.compile(r"^\s*#\s*Hint:\s*(.+?)\s*$", re.IGNORECASE | re.MULTILINE)
KERNELSPEC = {"display_name": "Python 3 (ipykernel)", "language": "python", "name": "python3"}


class AuthoringError(ValueError):
    """A solution notebook breaks the authoring format."""


def checksum(source: str) -> str:
    return hashlib.sha256(source.encode("utf-8")).hexdigest()[:16]


def strip_solutions(source: str, where: str = "cell") -> str:
    """Replace every solution region in `source` by a stub that raises NotImplementedError."""
    hint = _HINT.search(source)
    message = hint.group(1) if hint else "replace this line with your solution"
    out, inside, indent = [], False, ""
    for number, line in enumerate(source.splitlines(), start=1):
        marker = line.strip()
        if marker == BEGIN:
            if inside:
                raise AuthoringError(f"{where}, line {number}: nested {BEGIN}")
            inside, indent = True, line[: len(line) - len(line.lstrip())]
            out.append(f"{indent}# YOUR CODE HERE")
            out.append(f"{indent}raise NotImplementedError({json.dumps(message, ensure_ascii=False)})")
        elif marker == END:
            if not inside:
                raise AuthoringError(f"{where}, line {number}: {END} without {BEGIN}")
            inside = False
        elif not inside:
            out.append(line)
    if inside:
        raise AuthoringError(f"{where}: {BEGIN} is never closed")
    return "\n".join(out)


def keep_solutions(source: str) -> str:
    """The reference version of an answer cell: the markers go, the code stays."""
    return "\n".join(l for l in source.splitlines() if l.strip() not in (BEGIN, END))


HEADER_MARK = "<!-- header:"


def lab_header(spec) -> str:
    """The lab's header, written from its spec: title, week, time, the lesson it follows, objectives."""
    objectives = [f"- {o};" for o in spec.objectives]
    if objectives:
        objectives[-1] = objectives[-1][:-1] + "."
    return "\n".join([f"# Lab {spec.number} — {spec.title}", "",
                      f"**Week {spec.week}** · estimated time **{spec.minutes} minutes** · follows the lesson "
                      f"`{spec.lesson}`", "", "**Objectives** — by the end you can:", *objectives])


def _with_header(source: str, lab_id: str) -> str:
    """`source` with its header marker line replaced by the header from the lab's spec."""
    first, _, rest = source.partition("\n")
    if not first.startswith(HEADER_MARK):
        return source
    from grader.labs import find_lab

    try:
        spec = find_lab(lab_id).LAB
    except LookupError:
        raise AuthoringError(f"{lab_id}: a header marker, but no lab spec named {lab_id}") from None
    return lab_header(spec) + "\n" + rest


def build_lab(solution: dict, lab_id: str, with_solutions: bool = False) -> dict:
    """The learner notebook for `solution` (or, with `with_solutions`, the same notebook solved).

    A first markdown cell that starts with the header marker gets the header written from the lab's spec.
    """
    cells = []
    for index, cell in enumerate(solution["cells"]):
        source = "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]
        where = f"{lab_id} cell {index}"
        if index == 0 and cell["cell_type"] == "markdown":
            source = _with_header(source, lab_id)
        is_answer = cell["cell_type"] == "code" and BEGIN in source
        if not is_answer and (BEGIN in source or END in source):
            raise AuthoringError(f"{where}: solution markers are only allowed in code cells")
        if is_answer:
            source = keep_solutions(source) if with_solutions else strip_solutions(source, where)
        cell_id = f"{'answer' if is_answer else 'locked'}-{index:02d}"
        metadata = {"mlops": {"id": cell_id, "kind": "answer" if is_answer else "locked",
                              "checksum": checksum(source)}}
        tags = cell.get("metadata", {}).get("tags")
        if tags:
            metadata["tags"] = list(tags)
        new = {"cell_type": cell["cell_type"], "id": cell_id, "metadata": metadata, "source": source}
        if cell["cell_type"] == "code":
            new.update(execution_count=None, outputs=[])
        cells.append(new)
    return {
        "cells": cells,
        "metadata": {
            "kernelspec": dict(KERNELSPEC),
            "language_info": {"name": "python"},
            "mlops": {"lab": lab_id},
        },
        "nbformat": 4,
        "nbformat_minor": 5,
    }


def dumps(nb: dict) -> str:
    """Deterministic notebook JSON (the way Jupyter writes it: indent 1, sorted keys)."""
    return json.dumps(nb, indent=1, sort_keys=True, ensure_ascii=False) + "\n"


@dataclass
class Restored:
    """A submission rebuilt on its lab's template, and what had to be repaired."""

    notebook: dict
    notices: list[str] = field(default_factory=list)
    answers_changed: int = 0  # answer cells that differ from the stub


_DROPPED_TAGS = {"parameters", "injected-parameters"}


def restore(submission: dict, template: dict) -> Restored:
    """Rebuild `submission` on `template`: locked cells from the template, answers and extras from the learner."""
    known = {c["metadata"]["mlops"]["id"]: c for c in template["cells"]}
    answers: dict[str, dict] = {}
    seen: set[str] = set()
    extras: dict[str, list[dict]] = {"": []}
    anchor = ""
    for cell in submission["cells"]:
        cell_id = _mlops_id(cell)
        if cell_id in known and cell_id not in seen:
            seen.add(cell_id)
            anchor = cell_id
            if known[cell_id]["metadata"]["mlops"]["kind"] == "answer":
                answers[cell_id] = cell
            elif cell.get("source", "") != known[cell_id]["source"] or cell["cell_type"] != known[cell_id]["cell_type"]:
                extras.setdefault("!edited", []).append({"id": cell_id})
            continue
        extras.setdefault(anchor, []).append(_extra_cell(cell))
    cells, notices, changed = [], [], 0
    edited = [e["id"] for e in extras.pop("!edited", [])]
    deleted = [i for i, c in known.items() if c["metadata"]["mlops"]["kind"] == "locked" and i not in seen]
    cells.extend(extras.get("", []))
    for cell_id, cell in known.items():
        new = copy.deepcopy(cell)
        if cell_id in answers:
            new["source"] = answers[cell_id].get("source", "")
            if new["source"] != cell["source"]:
                changed += 1
        cells.append(new)
        cells.extend(extras.get(cell_id, []))
    missing = [i for i, c in known.items() if c["metadata"]["mlops"]["kind"] == "answer" and i not in answers]
    if edited:
        notices.append(f"restored {len(edited)} locked cell(s) you edited: {', '.join(edited)}")
    if deleted:
        notices.append(f"restored {len(deleted)} locked cell(s) you deleted: {', '.join(deleted)}")
    if missing:
        notices.append(f"answer cell(s) missing, graded as not attempted: {', '.join(missing)}")
    for number, cell in enumerate(cells):
        cell["id"] = cell.get("id") if _mlops_id(cell) else f"extra-{number:03d}"
    nb = copy.deepcopy(template)
    nb["cells"] = cells
    return Restored(notebook=nb, notices=notices, answers_changed=changed)


def _mlops_id(cell: dict) -> str | None:
    meta = cell.get("metadata", {}).get("mlops")
    value = meta.get("id") if isinstance(meta, dict) else None
    return value if isinstance(value, str) else None


def _extra_cell(cell: dict) -> dict:
    """A cell the learner added: kept in place, without outputs, ids or papermill tags."""
    kind = cell.get("cell_type", "code")
    tags = cell.get("metadata", {}).get("tags")
    tags = [t for t in tags if isinstance(t, str) and t not in _DROPPED_TAGS] if isinstance(tags, list) else []
    new = {"cell_type": kind, "metadata": {"tags": tags} if tags else {}, "source": cell.get("source", "")}
    if kind == "code":
        new.update(execution_count=None, outputs=[])
    return new
