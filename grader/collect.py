"""Read what a sandboxed job left behind, safely: no links followed out, sizes capped, no pickle."""

from __future__ import annotations

import io
import os
import stat
from pathlib import Path

MAX_JSON_BYTES = 5 * 2**20
MAX_JSON_DEPTH = 100


class CollectError(Exception):
    """An expected output is missing or unsafe; the message says which and why."""


def safe_open_bytes(root: Path, relative: str, max_bytes: int, read: bool = True) -> bytes:
    """The bytes of the regular file `root/relative`, refusing links, non-files and oversize files.

    With `read=False` it only verifies that such a file is there (any size) and returns b"".
    """
    parts = Path(relative).parts
    if not parts or Path(relative).is_absolute() or ".." in parts:
        raise CollectError(f"{relative}: not a path inside the work directory")
    fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
    try:
        for index, part in enumerate(parts):
            last = index == len(parts) - 1
            try:
                info = os.stat(part, dir_fd=fd, follow_symlinks=False)
            except FileNotFoundError:
                raise CollectError(f"{relative} was not found") from None
            if stat.S_ISLNK(info.st_mode):
                raise CollectError(f"{relative} is (or passes through) a symbolic link; write a real file")
            if not last:
                if not stat.S_ISDIR(info.st_mode):
                    raise CollectError(f"{relative}: {part} is not a directory")
                new = os.open(part, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=fd)
                os.close(fd)
                fd = new
                continue
            if not stat.S_ISREG(info.st_mode):
                raise CollectError(f"{relative} is not a regular file")
            if not read:
                return b""
            if info.st_size > max_bytes:
                raise CollectError(f"{relative} is {info.st_size} bytes, over the {max_bytes}-byte limit")
            file_fd = os.open(part, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK, dir_fd=fd)
            with os.fdopen(file_fd, "rb") as handle:
                return handle.read(max_bytes + 1)[:max_bytes]
    finally:
        os.close(fd)
    raise CollectError(f"{relative}: empty path")  # pragma: no cover, unreachable


def exists(root: Path, relative: str) -> bool:
    """Whether `root/relative` is a regular file reached without links (it is not read)."""
    try:
        safe_open_bytes(root, relative, 0, read=False)
        return True
    except CollectError:
        return False


def read_json(root: Path, relative: str, max_bytes: int = MAX_JSON_BYTES) -> object:
    from grader.bounded import BoundedError, load_json

    data = safe_open_bytes(root, relative, max_bytes)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as err:
        raise CollectError(f"{relative} is not valid JSON: {err}") from None
    try:  # nesting depth bounded too: the values are compared, walked and quoted in this process
        return load_json(text, name=relative, max_bytes=max_bytes, max_depth=MAX_JSON_DEPTH,
                         parse_constant=_reject_constant)
    except BoundedError as err:
        raise CollectError(str(err)) from None


def read_text(root: Path, relative: str, max_bytes: int = MAX_JSON_BYTES) -> str:
    return safe_open_bytes(root, relative, max_bytes).decode("utf-8", errors="replace")


def read_csv(root: Path, relative: str, max_bytes: int = 50 * 2**20):
    """A CSV output as a pandas DataFrame."""
    import pandas as pd

    data = safe_open_bytes(root, relative, max_bytes)
    try:
        return pd.read_csv(io.BytesIO(data))
    except Exception as err:  # pandas raises many kinds
        raise CollectError(f"{relative} is not a readable CSV: {err}") from None


def read_npy(root: Path, relative: str, max_bytes: int = 200 * 2**20):
    """A .npy output, never unpickled."""
    import numpy as np

    data = safe_open_bytes(root, relative, max_bytes)
    try:
        return np.load(io.BytesIO(data), allow_pickle=False)
    except Exception as err:
        raise CollectError(f"{relative} is not a plain .npy array: {err}") from None


def _reject_constant(name: str):
    raise ValueError(f"{name} is not valid JSON")
