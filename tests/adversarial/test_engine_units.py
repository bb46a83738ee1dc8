"""Fast unit tests of the engine's defences (no notebook runs): the runner's status, safe reads of outputs,
escaping in reports, and a batch that survives a failing callback."""

import io
import json
import math
import os
from pathlib import Path

import pytest

from grader import collect
from grader.execute import STATUS, clean_text, interpret
from grader.judge import CheckResult
from grader.sandbox import Limits, RunResult


def _run(stdout="", **kw):
    return RunResult(returncode=kw.pop("returncode", 0), stdout=stdout, stderr=kw.pop("stderr", ""), seconds=1.0, **kw)


def _status(**fields):
    return "\n" + STATUS + json.dumps(fields) + "\n"


LIMITS = Limits(wall_seconds=60, memory_bytes=2**30, disk_bytes=200 * 2**20)


def test_the_last_status_line_wins_over_forged_earlier_ones():
    forged = _status(ok=True) * 3
    real = _status(ok=False, stopped=False, cell_id="answer-04", ename="NotImplementedError", evalue="do it")
    execution = interpret(_run(forged + "noise\n" + real), {}, LIMITS)
    assert not execution.ok and not execution.stopped
    assert execution.error == "cell answer-04 raised NotImplementedError: do it"


def test_added_cells_are_named_by_their_position():
    status = _status(ok=False, stopped=False, cell_id=None, after="locked-02", ename="SystemExit", evalue="3")
    assert interpret(_run(status), {}, LIMITS).error == "a cell you added (after locked-02) raised SystemExit: 3"
    status = _status(ok=False, stopped=False, cell_id=None, after=None, ename="ValueError", evalue="x")
    assert interpret(_run(status), {}, LIMITS).error == "a cell you added (at the top) raised ValueError: x"


def test_no_status_means_killed_and_never_echoes_stderr():
    execution = interpret(_run("", returncode=-9, stderr="All tests passed! 12/12\n"), {}, LIMITS)
    assert execution.stopped and not execution.ok
    assert execution.error == ("the notebook's run was killed before it could finish (killed by signal 9): "
                               "did the notebook kill its own processes?")


@pytest.mark.parametrize("flags, expected", [
    ({"timed_out": True}, "the notebook ran out of time (60 s for the whole lab)"),
    ({"disk_exceeded": True}, "the notebook wrote too much to disk (limit 200 MB, 100000 files)"),
    ({"out_of_memory": True}, "the notebook ran out of memory (limit 1.0 GiB)"),
])
def test_limits_take_precedence_over_a_forged_ok(flags, expected):
    stdout = _status(ok=True) if "out_of_memory" not in flags else _status(ok=False, stopped=True,
                                                                          ename="DeadKernelError", evalue="")
    execution = interpret(_run(stdout, **flags), {}, LIMITS)
    assert not execution.ok and execution.stopped and execution.error.startswith(expected)


def test_a_killed_helper_process_does_not_fail_a_finished_run():
    execution = interpret(_run(_status(ok=True, output_dropped=True), out_of_memory=True), {}, LIMITS)
    assert execution.ok
    assert execution.notes == ["the notebook's cell outputs exceeded the size limit; the rest were dropped",
                               "a process of the notebook was killed for using too much memory"]


def test_clean_text_shows_controls_and_surrogates_as_escapes_but_keeps_text():
    assert clean_text("a\x1b[2Jb\ud800c\x9bd\te\nf é ✓ \u202eg") == "a\\u001b[2Jb\\ud800c\\u009bd\te\nf é ✓ \\u202eg"


# --- safe reads --------------------------------------------------------------------------------


def test_collect_refuses_links_anywhere_in_the_path(tmp_path):
    (tmp_path / "real").mkdir()
    (tmp_path / "real" / "m.json").write_text("{}")
    (tmp_path / "linked").symlink_to(tmp_path / "real")
    (tmp_path / "m.json").symlink_to("/etc/passwd")
    for relative in ("linked/m.json", "m.json"):
        with pytest.raises(collect.CollectError, match="symbolic link"):
            collect.read_json(tmp_path, relative)
    assert collect.read_json(tmp_path, "real/m.json") == {}
    for relative in ("../etc/passwd", "/etc/passwd", ""):
        with pytest.raises(collect.CollectError):
            collect.read_text(tmp_path, relative)


def test_collect_refuses_fifos_and_oversize_files_without_blocking(tmp_path):
    os.mkfifo(tmp_path / "fifo.json")
    with pytest.raises(collect.CollectError, match="not a regular file"):
        collect.read_json(tmp_path, "fifo.json")
    (tmp_path / "big.json").write_text("[" + "1," * 1000 + "1]")
    with pytest.raises(collect.CollectError, match="over the 100-byte limit"):
        collect.read_json(tmp_path, "big.json", max_bytes=100)
    assert not collect.exists(tmp_path, "fifo.json")


@pytest.mark.parametrize("text", ['{"roc_auc": NaN}', '{"roc_auc": Infinity}', "\xff", '{"a": '])
def test_collect_refuses_non_json(tmp_path, text):
    (tmp_path / "m.json").write_bytes(text.encode("latin-1"))
    with pytest.raises(collect.CollectError, match="not valid JSON"):
        collect.read_json(tmp_path, "m.json")


def test_npy_outputs_are_never_unpickled(tmp_path):
    import numpy as np

    np.save(tmp_path / "a.npy", np.array([{"evil": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(collect.CollectError, match="not a plain .npy array"):
        collect.read_npy(tmp_path, "a.npy")


# --- checks and reports ------------------------------------------------------------------------


def test_partial_with_nan_scores_zero():
    from grader.checks import lab03
    from grader.checks.common import Checks, Partial
    from grader.judge import Context, judge

    checks = Checks()

    @checks.add(points=2, hint="h", section="s")
    def wobbly(ctx):
        """Returns a NaN fraction."""
        return Partial(math.nan, "nan")

    [result] = judge(checks, Context(lab=lab03.LAB, work=Path("."), params={}))
    assert result.score == 0.0 and result.status == "failed"


def _result(message):
    return CheckResult(name="n", description="d", score=0, max_score=1, status="failed", message=message,
                       visible=True, hint="<b>hint</b>", section="s")


def test_reports_escape_html_and_never_interpret_markup(tmp_path):
    from rich.console import Console

    from grader.grade import Result, write_results
    from grader.report import checks_html, print_results

    message = "<script>alert(1)</script> [/bold] [link=http://x]y[/link] \x1b[2J \ud800"
    page = checks_html("t <i>", [_result(message)], notice="<b>n</b>")
    assert "<script>" not in page and "&lt;script&gt;" in page and "&lt;b&gt;hint&lt;/b&gt;" in page
    result = Result(submission="[/x] <a>.ipynb", lab="03", score=0, max_score=1, execution_time=1,
                    output="\x1b[31m[/red]", tests=[_result(message)])
    buffer = io.StringIO()
    print_results([result], console=Console(file=buffer, width=300, color_system=None))
    assert "[/bold] [link=http://x]y[/link]" in buffer.getvalue() and "\x1b" not in buffer.getvalue()
    write_results([result], tmp_path / "r.json")  # a lone surrogate must not break the batch's results file
    assert json.loads((tmp_path / "r.json").read_text())[0]["tests"][0]["output"].endswith("\\ud800")


def test_a_failing_callback_does_not_stop_the_batch(tmp_path):
    import types

    from grader.checks import lab03
    from grader.grade import grade_batch

    (tmp_path / "a.ipynb").write_text("{")
    (tmp_path / "b.ipynb").write_text("")
    seen = []

    def explode(result):
        seen.append(result.submission)
        raise RuntimeError("disk full")

    module = types.SimpleNamespace(LAB=lab03.LAB, CHECKS=lab03.CHECKS, prepare=lab03.prepare)
    results = grade_batch(module, [tmp_path / "a.ipynb", tmp_path / "b.ipynb"], jobs=2, on_result=explode)
    assert [r.status for r in results] == ["rejected", "rejected"] and len(seen) == 2


@pytest.mark.parametrize("stderr, returncode", [
    ("bwrap: execvp /x/.venv/bin/python: No such file or directory\n", 1),
    ("", 97),  # the cgroup join in the launcher failed
    ("sh: 1: prlimit: not found\n", 127),
])
def test_a_sandbox_that_never_started_is_the_graders_failure(stderr, returncode):
    from grader.execute import SandboxStartError

    with pytest.raises(SandboxStartError, match="the sandbox did not start"):
        interpret(_run("", returncode=returncode, stderr=stderr), {}, LIMITS)
