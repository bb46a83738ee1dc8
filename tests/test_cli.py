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


def test_a_rejected_file_states_its_reason_once_without_check_hints(tmp_path):
    from grader.grade import grade_notebook
    from grader.report import write_html_report

    broken = tmp_path / "broken.ipynb"
    broken.write_text("{ not json")
    result = grade_notebook(find_lab("03"), broken)
    assert result.status == "rejected" and result.output.count("not valid notebook JSON") == 1
    assert all(t.message == "not graded (see above)" and not t.hint and not t.section for t in result.tests)
    page = write_html_report([result], tmp_path / "page.html").read_text()
    assert "<strong>rejected</strong>: not run" in page and page.count("not valid notebook JSON") == 1


def test_reveal_hidden_shows_hidden_details_in_the_terminal_too():
    from io import StringIO

    from rich.console import Console

    from grader.grade import Result
    from grader.judge import CheckResult

    hidden = CheckResult(name="holdout_auc", description="d", score=0, max_score=3, status="failed",
                         message="holdout ROC AUC 0.612 is below 0.95", visible=False, hint="h", section="3.2 s")
    result = Result(submission="s.ipynb", lab="03_classifier", score=0, max_score=3, execution_time=1.0, output="",
                    tests=[hidden])
    for reveal, shown in ((False, False), (True, True)):
        buffer = StringIO()
        from grader.report import print_results

        print_results([result], console=Console(file=buffer, width=200), reveal_hidden=reveal)
        assert ("0.612" in buffer.getvalue()) is shown


@pytest.mark.slow
def test_check_takes_the_notebook_as_an_argument_and_grades_a_solution_as_the_reference(isolate):
    out = run("check", "03", "solutions/03_classifier.ipynb")
    assert out.returncode == 0, out.stdout + out.stderr
    assert "graded as the reference solution" in out.stdout
    assert "this is not lab" not in out.stdout
    visible = sum(c.points for c in find_lab("03").CHECKS if c.visible)
    assert f"score {visible:g}/{visible:g}" in out.stdout


@pytest.mark.slow
def test_ctrl_c_stops_a_batch_within_seconds_and_keeps_what_was_graded(tmp_path, isolate):
    import os
    import signal
    import time

    results = tmp_path / "results.json"
    subs = []
    for n in range(4):
        sub = tmp_path / f"sub{n}.ipynb"
        sub.write_bytes((REPO / "labs/03_classifier.ipynb").read_bytes())
        subs.append(str(sub))
    proc = subprocess.Popen(CLI + ["grade", "03", *subs, "--json", str(results), "--jobs", "1"], cwd=REPO,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 240
    while not results.exists() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert results.exists(), "the first submission was never graded"
    time.sleep(1.0)  # the second one is running now
    os.kill(proc.pid, signal.SIGINT)
    start = time.monotonic()
    out, err = proc.communicate(timeout=30)
    assert time.monotonic() - start < 10, "Ctrl-C must stop the batch within seconds"
    assert proc.returncode == 130, err
    graded = json.loads(results.read_text())
    assert 1 <= len(graded) < 4
    assert f"Interrupted: {len(graded)} of 4 submissions were graded" in err
    assert all(r["status"] == "graded" for r in graded)  # nothing cut short was recorded as a grade
    leftover = subprocess.run(["pgrep", "-f", str(tmp_path)], capture_output=True, text=True).stdout.split()
    assert not leftover, f"sandbox processes left running: {leftover}"


def test_jobs_default_to_one_and_for_a_cohort_to_one_more_than_the_cores(tmp_path, monkeypatch):
    """A cohort keeps every core busy by default: one job's waits (its sandbox, its kernel) are another's turn."""
    import os

    from typer.testing import CliRunner

    import grader.cli as cli
    import grader.grade as grade

    seen = {}
    monkeypatch.setattr(cli, "_grade_cohort", lambda module, cohort, **kw: seen.update(cohort=kw["jobs"]))
    monkeypatch.setattr(grade, "grade_batch", lambda module, subs, jobs, **kw: seen.update(files=jobs) or [])
    monkeypatch.setattr(grade, "write_results", lambda *a, **kw: None)
    monkeypatch.setattr("grader.sandbox.probe_bubblewrap", lambda: None)
    runner = CliRunner()
    runner.invoke(cli.app, ["grade", "03", "--cohort", str(tmp_path)])
    assert seen["cohort"] == (os.cpu_count() or 1) + 1
    runner.invoke(cli.app, ["grade", "03", "--cohort", str(tmp_path), "--jobs", "1"])
    assert seen["cohort"] == 1
    notebook = tmp_path / "a.ipynb"
    notebook.write_text("{}")
    runner.invoke(cli.app, ["grade", "03", str(notebook)])
    assert seen["files"] == 1
