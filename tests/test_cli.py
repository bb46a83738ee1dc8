"""The CLI's shapes (assign, check, grade, demo) as instructors' scripts use them."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from grader.labs import REPO, find_lab

CLI = [str(Path(sys.executable).parent / "mlops-grade")]


def run(*args, cwd=REPO):
    return subprocess.run(CLI + list(args), capture_output=True, text=True, cwd=cwd, timeout=600)


def test_help_lists_the_commands():
    out = run("--help")
    assert out.returncode == 0
    for command in ("assign", "check", "grade", "demo"):
        assert command in out.stdout


def test_lab_is_named_by_number_or_id():
    assert find_lab("03").LAB.id == find_lab("03_classifier").LAB.id == find_lab("3").LAB.id
    with pytest.raises(LookupError, match="known labs"):
        find_lab("99")


def test_assign_check_reports_up_to_date():
    out = run("assign", "--check")
    assert out.returncode == 0, out.stdout + out.stderr
    assert "03_classifier: up to date" in out.stdout


@pytest.mark.slow
def test_grade_writes_gradescope_json_for_every_submission(tmp_path, isolate):
    broken = tmp_path / "broken.ipynb"
    broken.write_text("{ not json")
    results = tmp_path / "results.json"
    out = run("grade", "03", str(REPO / "labs/03_classifier.ipynb"), str(broken), "--json", str(results),
              "--html", str(tmp_path / "feedback.html"), "--jobs", "2")
    assert out.returncode == 0, out.stderr
    records = json.loads(results.read_text())
    assert [Path(r["submission"]).name for r in records] == ["03_classifier.ipynb", "broken.ipynb"]
    for record in records:
        assert set(record) >= {"score", "max_score", "execution_time", "tests", "output"}
        assert record["score"] == 0
        for test in record["tests"]:
            assert set(test) >= {"name", "score", "max_score", "status", "output"}
    assert records[1]["status"] == "rejected" and "not valid notebook JSON" in records[1]["output"]
    hidden = [t for t in records[0]["tests"] if t["visibility"] != "visible"]
    assert hidden and all(t["output"].startswith("hidden check:") and "hint" not in t for t in hidden)
    assert "<table>" in (tmp_path / "feedback.html").read_text()


def test_grade_refuses_without_a_sandbox(tmp_path, monkeypatch):
    """With no bubblewrap on PATH, grading others' code refuses unless --no-sandbox is explicit."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("sh", "prlimit", "env"):
        (bin_dir / tool).symlink_to(f"/usr/bin/{tool}" if Path(f"/usr/bin/{tool}").exists() else f"/bin/{tool}")
    out = subprocess.run(CLI + ["grade", "03", str(REPO / "labs/03_classifier.ipynb")], capture_output=True,
                         text=True, cwd=REPO, env={"PATH": str(bin_dir)}, timeout=120)
    assert out.returncode == 2
    assert "Refusing to grade without a sandbox" in out.stderr
