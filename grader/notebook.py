"""Read a submitted notebook defensively: every way it can be broken becomes a clear `NotebookError`."""

from __future__ import annotations

import json
import os
import re
import stat
from pathlib import Path

MAX_NOTEBOOK_BYTES = 25 * 1024 * 1024  # a lab notebook with its outputs is far smaller


class NotebookError(Exception):
    """The submission cannot be graded as a notebook; the message tells the learner why and what to do."""


def read_submission(path: Path, max_bytes: int = MAX_NOTEBOOK_BYTES) -> dict:
    """Parse `path` as an nbformat-4 notebook (a plain dict), or raise `NotebookError`."""
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        raise NotebookError(f"file not found: {path}") from None
    if stat.S_ISLNK(info.st_mode):
        raise NotebookError("the submission is a symbolic link; submit the notebook file itself")
    if not stat.S_ISREG(info.st_mode):
        raise NotebookError("the submission is not a regular file")
    if info.st_size == 0:
        raise NotebookError("the file is empty: save the notebook in JupyterLab (Ctrl+S) and submit it again")
    if info.st_size > max_bytes:
        raise NotebookError(
            f"the notebook is {info.st_size / 2**20:.1f} MB, over the {max_bytes / 2**20:.0f} MB limit: "
            "clear the outputs (Edit → Clear Outputs of All Cells), save and submit again"
        )
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    with os.fdopen(fd, "rb") as handle:
        raw = handle.read(max_bytes + 1)
    if len(raw) > max_bytes:  # it grew after the size check
        raise NotebookError(f"the notebook is over the {max_bytes / 2**20:.0f} MB limit")
    try:
        text = raw.decode("utf-8-sig")  # a byte-order mark (some Windows editors add one) is not an error
    except UnicodeDecodeError as err:
        raise NotebookError(f"the file is not UTF-8 text (bad byte at offset {err.start}); is it a notebook?") from None
    try:
        nb = json.loads(text)
    except json.JSONDecodeError as err:
        hint = " (it looks like Python source renamed to .ipynb)" if _looks_like_python(text) else ""
        raise NotebookError(
            f"the file is not valid notebook JSON{hint}: {err.msg} at line {err.lineno}, column {err.colno}"
        ) from None
    except RecursionError:
        raise NotebookError("the file is not a notebook: its JSON is nested far too deeply") from None
    except ValueError as err:  # e.g. an integer with more digits than Python converts
        raise NotebookError(f"the file is not valid notebook JSON: {err}"[:300]) from None
    return check_structure(nb)


def check_structure(nb: object) -> dict:
    """The parsed JSON must look like an nbformat-4 notebook with a list of cells."""
    if not isinstance(nb, dict):
        raise NotebookError("the file is JSON but not a notebook (expected an object with 'cells')")
    major = nb.get("nbformat")
    if isinstance(major, bool) or major != 4:
        if isinstance(major, int) and not isinstance(major, bool) and major < 4:
            raise NotebookError(
                f"nbformat {major} notebooks are not supported: open it in JupyterLab and save it (nbformat 4)"
            )
        raise NotebookError(f"not an nbformat 4 notebook (nbformat = {major!r})")
    cells = nb.get("cells")
    if not isinstance(cells, list):
        raise NotebookError("the notebook has no list of cells")
    for index, cell in enumerate(cells):
        if not isinstance(cell, dict) or cell.get("cell_type") not in ("code", "markdown", "raw"):
            raise NotebookError(f"cell {index} is not a valid notebook cell")
        source = cell.get("source", "")
        if isinstance(source, list) and all(isinstance(s, str) for s in source):
            cell["source"] = "".join(source)
        elif not isinstance(source, str):
            raise NotebookError(f"cell {index} has a source that is neither text nor a list of lines")
        if not isinstance(cell.get("metadata", {}), dict):
            raise NotebookError(f"cell {index} has invalid metadata")
    if not isinstance(nb.get("metadata", {}), dict):
        raise NotebookError("the notebook has invalid metadata")
    return nb


def lab_id_of(nb: dict) -> str | None:
    """The lab id that `mlops-grade assign` stamped into the notebook's metadata, if any."""
    meta = nb.get("metadata", {}).get("mlops", {})
    lab = meta.get("lab") if isinstance(meta, dict) else None
    return lab if isinstance(lab, str) else None


_PYTHON_LINE = re.compile(r"^(import \w|from [\w.]+ import |def \w|class \w|print\(|#|\"\"\"|\'\'\'|@\w)",
                          re.MULTILINE)


def _looks_like_python(text: str) -> bool:
    """Python source (a script, `jupyter nbconvert --to script` output) rather than broken JSON."""
    return bool(_PYTHON_LINE.search(text[:2000]))
