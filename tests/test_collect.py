"""Safe reads of sandbox outputs: no links followed, no oversize reads, existence without reading."""

import os

import pytest

from grader import collect


@pytest.fixture
def work(tmp_path):
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "metrics.json").write_text('{"auc": 0.9}')
    (tmp_path / "out" / "big.bin").write_bytes(b"x" * 4096)
    os.symlink("/etc/passwd", tmp_path / "out" / "link.json")
    os.symlink(tmp_path / "out", tmp_path / "via")
    os.mkfifo(tmp_path / "out" / "fifo")
    return tmp_path


def test_reads_a_regular_file(work):
    assert collect.read_json(work, "out/metrics.json") == {"auc": 0.9}


@pytest.mark.parametrize("relative, message", [
    ("out/link.json", "symbolic link"), ("via/metrics.json", "symbolic link"), ("out/fifo", "not a regular file"),
    ("out/missing.json", "not found"), ("../etc/passwd", "not a path inside"), ("/etc/passwd", "not a path inside"),
])
def test_refuses_what_is_not_a_plain_file_inside(work, relative, message):
    with pytest.raises(collect.CollectError, match=message):
        collect.read_json(work, relative)
    assert not collect.exists(work, relative)


def test_size_cap_and_existence_without_reading(work):
    with pytest.raises(collect.CollectError, match="over the 100-byte limit"):
        collect.safe_open_bytes(work, "out/big.bin", 100)
    assert collect.exists(work, "out/big.bin")


def test_json_constants_are_refused(work):
    (work / "out" / "nan.json").write_text('{"auc": NaN}')
    with pytest.raises(collect.CollectError, match="not valid JSON"):
        collect.read_json(work, "out/nan.json")
