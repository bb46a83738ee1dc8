"""Reading a submission defensively: every broken file becomes a clear NotebookError, nothing hangs or crashes."""

import json
import os

import pytest

from grader.notebook import NotebookError, check_structure, lab_id_of, read_submission


def _nb(**extra):
    nb = {"nbformat": 4, "nbformat_minor": 5, "metadata": {"mlops": {"lab": "03_classifier"}},
          "cells": [{"cell_type": "code", "metadata": {}, "source": ["print(1)\n", "print(2)"], "outputs": []}]}
    nb.update(extra)
    return nb


def _write(tmp_path, data, name="sub.ipynb"):
    path = tmp_path / name
    path.write_bytes(data if isinstance(data, bytes) else json.dumps(data).encode())
    return path


def test_a_valid_notebook_reads_and_joins_sources(tmp_path):
    nb = read_submission(_write(tmp_path, _nb()))
    assert nb["cells"][0]["source"] == "print(1)\nprint(2)"
    assert lab_id_of(nb) == "03_classifier"


def test_a_byte_order_mark_is_accepted(tmp_path):
    assert read_submission(_write(tmp_path, b"\xef\xbb\xbf" + json.dumps(_nb()).encode()))["nbformat"] == 4


@pytest.mark.parametrize("data, message", [
    (b"", "the file is empty"),
    (b'{"cells": [', "not valid notebook JSON: Expecting value at line 1, column 12"),
    (b"import os\nprint(os.getcwd())\n", "it looks like Python source renamed to .ipynb"),
    (b'"""A module."""\nimport os\n', "it looks like Python source renamed to .ipynb"),
    (b'{"a": "caf\xe9"}', "not UTF-8 text (bad byte at offset 10)"),
    (b"[" * 100_000 + b"]" * 100_000, "nested far too deeply"),
    (b'{"nbformat": ' + b"7" * 5000 + b"}", "not valid notebook JSON"),
    (b"[1, 2]", "JSON but not a notebook"),
    (b"null", "JSON but not a notebook"),
    (json.dumps(_nb(nbformat=3)).encode(), "nbformat 3 notebooks are not supported"),
    (json.dumps(_nb(nbformat="4")).encode(), "not an nbformat 4 notebook (nbformat = '4')"),
    (json.dumps(_nb(nbformat=True)).encode(), "not an nbformat 4 notebook (nbformat = True)"),
    (json.dumps(_nb(nbformat=5)).encode(), "not an nbformat 4 notebook (nbformat = 5)"),
    (json.dumps(_nb(cells={"0": {}})).encode(), "no list of cells"),
    (json.dumps(_nb(cells=[{"cell_type": "python", "source": ""}])).encode(), "cell 0 is not a valid notebook cell"),
    (json.dumps(_nb(cells=["print(1)"])).encode(), "cell 0 is not a valid notebook cell"),
    (json.dumps(_nb(cells=[{"cell_type": "code", "source": 5}])).encode(), "neither text nor a list of lines"),
    (json.dumps(_nb(cells=[{"cell_type": "code", "source": ["a", 1]}])).encode(), "neither text nor a list"),
    (json.dumps(_nb(cells=[{"cell_type": "code", "source": "", "metadata": []}])).encode(), "invalid metadata"),
    (json.dumps(_nb(metadata="lab 03")).encode(), "the notebook has invalid metadata"),
])
def test_broken_files_are_rejected_with_a_reason(tmp_path, data, message):
    with pytest.raises(NotebookError) as caught:
        read_submission(_write(tmp_path, data))
    assert message in str(caught.value)


def test_size_limit_is_checked_before_reading(tmp_path):
    path = _write(tmp_path, _nb(padding="x" * 5000))
    with pytest.raises(NotebookError, match=r"over the 0 MB limit: clear the outputs"):
        read_submission(path, max_bytes=1000)


def test_links_fifos_directories_and_missing_files_are_refused(tmp_path):
    target = _write(tmp_path, _nb(), "real.ipynb")
    (tmp_path / "link.ipynb").symlink_to(target)
    os.mkfifo(tmp_path / "fifo.ipynb")  # opening it for reading would block: it must never be opened
    (tmp_path / "dir.ipynb").mkdir()
    with pytest.raises(NotebookError, match="symbolic link"):
        read_submission(tmp_path / "link.ipynb")
    with pytest.raises(NotebookError, match="not a regular file"):
        read_submission(tmp_path / "fifo.ipynb")
    with pytest.raises(NotebookError, match="not a regular file"):
        read_submission(tmp_path / "dir.ipynb")
    with pytest.raises(NotebookError, match="file not found"):
        read_submission(tmp_path / "missing.ipynb")


@pytest.mark.parametrize("metadata, expected", [
    ({"mlops": {"lab": "03_classifier"}}, "03_classifier"),
    ({}, None),
    ({"mlops": "03_classifier"}, None),
    ({"mlops": {"lab": 3}}, None),
])
def test_lab_id_of(metadata, expected):
    assert lab_id_of(check_structure(_nb(metadata=metadata))) == expected
