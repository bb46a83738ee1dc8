"""The function probe: each call of a learner's function in a fresh process forked from one pre-imported worker.

The learner module below tries every way a `detect_drift` on hidden scenarios could remember earlier calls or see
later ones: a module-level counter, files in /tmp, /dev/shm, HOME, its working directory and its own folder, an
environment variable, a daemon that outlives its call, and a search for other calls' files. Every call must see
nothing of the others, and nothing may be left running on the host. Calls that raise, hang or kill the worker
cost only themselves.
"""

from __future__ import annotations

import json
import os
import time
import uuid
from pathlib import Path

import numpy as np
import pytest

from grader.judge import Context
from grader.labs import find_lab
from grader.sandbox import Limits, Sandbox

LEARNER = '''
import glob, os, signal, sys, tempfile, time

MARK = {mark!r}
CALLS = []


def remember(scenario):
    """How many earlier calls this process can find a trace of; then leave traces of this one."""
    places = [tempfile.gettempdir(), "/dev/shm", os.path.expanduser("~"), os.getcwd(),
              os.path.dirname(os.path.abspath(__file__))]
    seen = len(CALLS) + int(os.environ.get("SEEN", "0"))
    for place in places:
        seen += len(glob.glob(os.path.join(place, ".seen-*")))
    for place in places:
        try:
            open(os.path.join(place, f".seen-{{scenario}}"), "w").close()
        except OSError:
            pass
    os.environ["SEEN"] = str(seen + 1)
    CALLS.append(scenario)
    others = [p for p in glob.glob("/tmp/**/call.json", recursive=True) + glob.glob("/sandbox/**/*.npy", recursive=True)
              if open(p, "rb").read().find(b"scenario") >= 0 and str(scenario).encode() not in open(p, "rb").read()]
    if os.fork() == 0:  # a daemon that outlives the call
        os.setsid()
        while True:
            time.sleep(0.2)
    return {{"scenario": scenario, "seen": seen, "others": len(others), "pid": os.getpid()}}


def boom(scenario):
    raise ValueError(f"scenario {{scenario}} is not my kind")


def hang(scenario):
    while True:
        pass


def wrapped(text):
    import textwrap
    return textwrap.shorten(text, 40)


def kill_the_worker(scenario):
    os.kill(os.getppid(), signal.SIGKILL)
    time.sleep(5)
'''


def _probe(tmp_path: Path, calls: list[dict], isolate: bool, preload=(), quiet=()) -> tuple[dict, str]:
    mark = f"mlops-function-test-{uuid.uuid4().hex}"
    work = tmp_path / "work"
    work.mkdir()
    (work / "learner.py").write_text(LEARNER.format(mark=mark))
    ctx = Context(lab=find_lab("12").LAB, work=work, params={},
                  new_sandbox=lambda limits: Sandbox(limits, isolate=isolate))
    plan = {"file": "learner.py", "calls": calls, "preload": list(preload), "quiet": list(quiet)}
    result = ctx.probe("function_probe", {"plan": np.array(json.dumps(plan))}, args=("--seconds", "4"),
                       limits=Limits(wall_seconds=90))
    return {c["id"]: c for c in result["calls"]}, mark


def _left_running(mark: str) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                if mark.encode() in Path(f"/proc/{entry}/cmdline").read_bytes():
                    found.append(int(entry))
            except OSError:
                continue
    return found


def test_every_call_sees_only_itself_and_leaves_nothing(tmp_path, isolate):
    calls = [{"id": f"s{i}", "function": "remember", "kwargs": {"scenario": f"scenario-{i}"}} for i in range(6)]
    answers, mark = _probe(tmp_path, calls, isolate, preload=("pandas",))
    for i in range(6):
        answer = answers[f"s{i}"]
        assert "result" in answer, answer
        assert answer["result"]["scenario"] == f"scenario-{i}"
        assert answer["result"]["seen"] == 0, answer  # no trace of an earlier call anywhere
        assert answer["result"]["others"] == 0, answer  # no other scenario in sight
    assert len({answers[f"s{i}"]["result"]["pid"] for i in range(6)}) == 6  # a process per call
    time.sleep(0.5)
    assert not _left_running(mark)
    assert not list(Path("/tmp").glob(".seen-*")) and not list(Path("/dev/shm").glob(".seen-*"))


def test_a_failing_hanging_or_killing_call_costs_only_itself(tmp_path, isolate):
    calls = [{"id": "ok1", "function": "remember", "kwargs": {"scenario": "a"}},
             {"id": "raises", "function": "boom", "kwargs": {"scenario": "b"}},
             {"id": "hangs", "function": "hang", "kwargs": {"scenario": "c"}},
             {"id": "kills", "function": "kill_the_worker", "kwargs": {"scenario": "d"}},
             {"id": "missing", "function": "no_such_function", "kwargs": {}},
             {"id": "ok2", "function": "remember", "kwargs": {"scenario": "e"}}]
    answers, mark = _probe(tmp_path, calls, isolate)
    assert answers["ok1"]["result"]["seen"] == 0 and answers["ok2"]["result"]["seen"] == 0
    assert "ValueError: scenario b is not my kind" in answers["raises"]["error"]
    assert "did not return within 4 s" in answers["hangs"]["error"]
    assert "error" in answers["kills"] and "result" not in answers["kills"]
    assert "no_such_function() is not defined" in answers["missing"]["error"]
    time.sleep(0.5)
    assert not _left_running(mark)


@pytest.mark.parametrize("preload", [("json",), ()])
def test_preloading_changes_nothing_but_time(tmp_path, isolate, preload):
    answers, _ = _probe(tmp_path, [{"id": "x", "function": "remember", "kwargs": {"scenario": 7}}], isolate, preload)
    assert answers["x"]["result"]["scenario"] == 7 and answers["x"]["result"]["seen"] == 0


def test_quiet_renderers_draw_nothing_and_a_missing_one_is_left_alone(tmp_path, isolate):
    # the stand-in renderer: textwrap.shorten, replaced in the worker before the calls fork from it
    calls = [{"id": "w", "function": "wrapped", "kwargs": {"text": "a text"}}]
    answers, _ = _probe(tmp_path, calls, isolate, preload=("textwrap",),
                        quiet=("textwrap:shorten", "textwrap:NoSuchRenderer.render", "no_such_module:draw"))
    assert answers["w"] == {"id": "w", "result": []}
    (tmp_path / "work").rename(tmp_path / "first")
    answers, _ = _probe(tmp_path, calls, isolate, preload=("textwrap",))
    assert answers["w"] == {"id": "w", "result": "a text"}
