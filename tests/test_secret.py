"""The grading installation's secret (grader/secret.py): where it lives, how it is made, what it gives away."""

from __future__ import annotations

import hashlib
import os
import stat
import subprocess
import sys

import pytest

from grader import secret
from grader.labs import REPO

PRINT = "from grader import secret; print(secret.fingerprint(), secret.seed_for('06_registry', 'gate-scenarios'))"


@pytest.fixture
def where(tmp_path, monkeypatch):
    path = tmp_path / "config" / "secret"
    monkeypatch.setenv(secret.ENV, str(path))
    monkeypatch.setattr(secret, "_cache", {})
    return path


def _fresh_read():
    secret._cache.clear()
    return secret.fingerprint(), secret.seed_for("06_registry", "gate-scenarios")


def _child(env_path, count=1):
    env = {**os.environ, secret.ENV: str(env_path)}
    return [subprocess.Popen([sys.executable, "-c", PRINT], env=env, cwd=REPO, stdout=subprocess.PIPE, text=True)
            for _ in range(count)]


def test_created_on_first_use_private_and_stable(where):
    assert not where.exists()
    first = secret.seed_for("06_registry", "gate-scenarios")
    assert stat.S_IMODE(where.stat().st_mode) == 0o600
    content = where.read_bytes().strip()
    assert len(content) == 2 * secret.SIZE and int(content, 16) >= 0  # 32 random bytes, as hex
    assert _fresh_read()[1] == first  # read again from the file: the same
    (child,) = _child(where)
    out, _ = child.communicate(timeout=60)
    assert out.split() == [secret.fingerprint(), str(first)]  # and in another process
    assert [p.name for p in where.parent.iterdir()] == ["secret"]  # no temporary file left


def test_concurrent_first_use_agrees(where):
    children = _child(where, count=6)
    outputs = {child.communicate(timeout=120)[0] for child in children}
    assert all(child.returncode == 0 for child in children)
    assert len(outputs) == 1, outputs
    assert outputs.pop().split()[0] == _fresh_read()[0]
    assert [p.name for p in where.parent.iterdir()] == ["secret"]


def test_refused_inside_the_repository(tmp_path, monkeypatch):
    monkeypatch.setattr(secret, "_cache", {})
    for inside in (REPO / "grader" / "secret.txt", REPO / ".secret"):
        monkeypatch.setenv(secret.ENV, str(inside))
        with pytest.raises(secret.SecretError, match="inside the repository"):
            secret.seed_for("06_registry", "x")
        assert not inside.exists()
    (tmp_path / "link").symlink_to(REPO)  # a path that only looks outside
    monkeypatch.setenv(secret.ENV, str(tmp_path / "link" / "secret"))
    with pytest.raises(secret.SecretError, match="inside the repository"):
        secret.fingerprint()
    monkeypatch.setenv(secret.ENV, str(tmp_path / "link" / ".." / "outside" / "secret"))
    assert secret.location() == tmp_path / "outside" / "secret"


def test_default_location_respects_xdg(tmp_path, monkeypatch):
    monkeypatch.delenv(secret.ENV, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv("XDG_CONFIG_HOME", raising=False)
    assert secret.location() == tmp_path / "home" / ".config" / "mlops-grade" / "secret"
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    assert secret.location() == tmp_path / "xdg" / "mlops-grade" / "secret"
    monkeypatch.setenv("XDG_CONFIG_HOME", "relative/dir")  # the spec says: ignore a relative one
    assert secret.location() == tmp_path / "home" / ".config" / "mlops-grade" / "secret"


def test_fingerprint_is_not_the_secret(where):
    found = secret.fingerprint()
    content = where.read_bytes().strip()
    assert len(found) == 12 and int(found, 16) >= 0
    assert found.encode() not in content and found == hashlib.sha256(content).hexdigest()[:12]
    assert str(secret.seed_for("06_registry", "gate-scenarios")) not in content.decode()


def test_different_labs_purposes_and_secrets_give_different_seeds(where, tmp_path, monkeypatch):
    seeds = {secret.seed_for(lab, purpose) for lab in ("02_packaging", "04_data_pipeline", "06_registry")
             for purpose in ("probe-csv", "corrupted-csv", "gate-scenarios")}
    assert len(seeds) == 9 and all(0 <= s < 2**256 for s in seeds)
    monkeypatch.setenv(secret.ENV, str(tmp_path / "other" / "secret"))
    assert secret.seed_for("06_registry", "gate-scenarios") not in seeds
    assert secret.fingerprint() != _fresh_read_from(where)


def _fresh_read_from(path):
    return hashlib.sha256(path.read_bytes().strip()).hexdigest()[:12]


def test_an_instructors_own_file_is_used_as_it_is(where):
    where.parent.mkdir(parents=True)
    where.write_bytes(b"an instructor's long enough secret phrase\n")
    where.chmod(0o600)
    assert secret.fingerprint() == hashlib.sha256(b"an instructor's long enough secret phrase").hexdigest()[:12]
    assert where.read_bytes() == b"an instructor's long enough secret phrase\n"  # never rewritten


@pytest.mark.parametrize("problem", ["readable by others", "a link", "too short"])
def test_unusable_files_are_refused_without_showing_them(where, tmp_path, problem):
    where.parent.mkdir(parents=True)
    real = tmp_path / "real"
    real.write_bytes(b"short" if problem == "too short" else b"0123456789abcdef0123456789abcdef")
    real.chmod(0o644 if problem == "readable by others" else 0o600)
    if problem == "a link":
        where.symlink_to(real)
    else:
        real.rename(where)
    with pytest.raises(secret.SecretError) as err:
        secret.seed_for("06_registry", "x")
    assert "0123456789abcdef" not in str(err.value) and "short" not in str(err.value).replace("shorter", "")
    assert str(where) in str(err.value)
