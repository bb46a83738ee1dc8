"""The grading installation's secret: hidden scenarios are drawn from it; evidence records only its fingerprint.

The public repository holds the generators of hidden data (lab 06's gate scenarios, lab 04's corrupted
columns, lab 02's probe CSV), never the drawn instances: those follow from a secret that only the grading
installation holds, outside the repository. It stays fixed, so a regrade draws the same instances and gives
the same grade; copy the file to grade identically on another machine.

Where it lives: `$MLOPS_GRADE_SECRET` (a file path) if set, else `$XDG_CONFIG_HOME/mlops-grade/secret`
(`~/.config/mlops-grade/secret`). On first use it is created with 32 random bytes (as 64 hex digits), mode
0600, atomically: written to a private temporary file, then hard-linked into place, which fails if another
grader got there first, so two graders starting at once read the same secret. A path inside the
repository, or inside the Python installation every sandbox mounts, is refused. Nothing here prints or
returns the secret itself: `seed_for` gives HMAC-SHA256 seeds, `fingerprint` the first 12 hex digits of its
SHA-256.
"""

from __future__ import annotations

import contextlib
import contextvars
import hashlib
import hmac
import os
import secrets
import stat
import sys
import time
from pathlib import Path

from grader.labs import REPO

ENV = "MLOPS_GRADE_SECRET"
SIZE = 32  # random bytes of a generated secret
MIN_BYTES, MAX_BYTES = 16, 4096  # what a secret file may hold (an instructor's own file too)

_cache: dict[Path, bytes] = {}


class SecretError(RuntimeError):
    """The secret cannot be used (its message names the file, never its content)."""


def location() -> Path:
    """Where this installation's secret lives (absolute; refused inside the repository or the Python install)."""
    given = os.environ.get(ENV, "").strip()
    if given:
        path = Path(given).expanduser()
    else:
        config = os.environ.get("XDG_CONFIG_HOME", "").strip()
        base = Path(config) if config and Path(config).is_absolute() else Path.home() / ".config"
        path = base / "mlops-grade" / "secret"
    path = Path(os.path.abspath(path))
    resolved = path.parent.resolve() / path.name  # where it really is, through links in its folders
    for name, root in (("the repository", REPO), ("the Python installation", Path(sys.prefix)),
                       ("the Python installation", Path(sys.base_prefix))):
        root = root.resolve()
        if resolved == root or resolved.is_relative_to(root) or path.is_relative_to(root):
            raise SecretError(f"the grading secret {path} lies inside {name} ({root}), which learners or sandboxes "
                              f"can read: set {ENV} to a file outside it")
    return path


def _read(path: Path) -> bytes | None:
    """The secret in `path`, None if there is no file yet."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except FileNotFoundError:
        return None
    except OSError as err:
        raise SecretError(f"the grading secret {path} cannot be opened ({err.strerror}); it must be a regular "
                          "file, not a link") from None
    with os.fdopen(fd, "rb") as handle:
        info = os.fstat(handle.fileno())
        if not stat.S_ISREG(info.st_mode):
            raise SecretError(f"the grading secret {path} is not a regular file")
        if info.st_mode & 0o077:
            raise SecretError(f"the grading secret {path} is readable or writable by others "
                              f"(mode {stat.S_IMODE(info.st_mode):04o}): chmod 600 it")
        data = handle.read(MAX_BYTES + 1).strip()
    if len(data) > MAX_BYTES:
        raise SecretError(f"the grading secret {path} is larger than {MAX_BYTES} bytes")
    return data


def _create(path: Path) -> None:
    """Publish a new secret at `path` unless one is there already (the first of concurrent graders wins)."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(8)}.tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(secrets.token_bytes(SIZE).hex().encode() + b"\n")
            handle.flush()
            os.fsync(handle.fileno())
        try:
            os.link(temporary, path)  # atomic and never replaces: a grader that lost the race reads the winner's
        except FileExistsError:
            pass
        except OSError:  # a filesystem without hard links: the final name is claimed with O_EXCL instead
            try:
                final = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
            except FileExistsError:
                return
            with os.fdopen(final, "wb") as handle:
                handle.write(temporary.read_bytes())
                handle.flush()
                os.fsync(handle.fileno())
    finally:
        temporary.unlink(missing_ok=True)


def _secret() -> bytes:
    path = location()
    if path not in _cache:
        data = _read(path)
        if data is None:
            _create(path)
            data = _read(path)
        deadline = time.monotonic() + 2
        while data is not None and len(data) < MIN_BYTES and time.monotonic() < deadline:
            time.sleep(0.05)  # only on the no-hard-link path: another grader is still writing it
            data = _read(path)
        if data is None or len(data) < MIN_BYTES:
            raise SecretError(f"the grading secret {path} holds fewer than {MIN_BYTES} bytes: delete it to have a "
                              "new one generated, or put a longer secret there")
        _cache[path] = data
    return _cache[path]


_SUBMISSION: contextvars.ContextVar[str] = contextvars.ContextVar("mlops_grade_submission", default="")


@contextlib.contextmanager
def submission(digest: str):
    """Within this block, `seed_for(..., per_submission=True)` also depends on the submission (`digest`: a hash
    of what it runs), so a draw whose numbers feedback shows differs from one submission to the next, and a
    regrade of the same submission draws the same."""
    token = _SUBMISSION.set(digest)
    try:
        yield
    finally:
        _SUBMISSION.reset(token)


def seed_for(lab_id: str, purpose: str, per_submission: bool = False) -> int:
    """A 256-bit seed for one lab's hidden draw: HMAC-SHA256 of the secret over the lab id and the purpose
    (and, with `per_submission`, the digest of the submission being graded; see `submission`).

    `random.Random` and `numpy.random.default_rng` take it whole; reduce it (`% 2**32`) for a pandas
    `random_state`."""
    if per_submission:
        purpose = f"{purpose}\0{_SUBMISSION.get()}"
    message = f"mlops-grade\0{lab_id}\0{purpose}".encode()
    return int.from_bytes(hmac.new(_secret(), message, hashlib.sha256).digest(), "big")


def fingerprint() -> str:
    """What evidence may record of the secret: the first 12 hex digits of its SHA-256."""
    return hashlib.sha256(_secret()).hexdigest()[:12]
