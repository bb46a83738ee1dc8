"""Execute a (restored) lab notebook with papermill and its kernel together inside one sandbox."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field

from grader.launch import GraderTimeout, launch, starved
from grader.sandbox import Limits, RunResult, Sandbox

STATUS = "MLOPS-RUNNER-STATUS "
SUBMISSION_NAME = "submission.ipynb"
EXECUTED_NAME = ".executed.ipynb"


class SandboxStartError(RuntimeError):
    """The sandbox could not start the runner: a grader or machine problem, never the learner's."""


@dataclass
class Execution:
    """How the notebook's run went, in words a learner can act on."""

    ok: bool
    seconds: float
    error: str | None = None  # e.g. "cell answer-05 raised NotImplementedError: build the pipeline"
    timed_out: bool = False
    out_of_memory: bool = False
    notes: list[str] = field(default_factory=list)
    stopped: bool = True  # it ended early (time, memory, dead kernel); False: a cell raised, the rest ran
    run: RunResult | None = field(default=None, repr=False)  # the sandbox's figures (time, CPU, load)


def execute(notebook: dict, sandbox: Sandbox, parameters: dict, cell_timeout: int,
            max_output_bytes: int = 2 * 2**20, not_needed: tuple[str, ...] = ()) -> Execution:
    """Run `notebook` in `sandbox` (whose "work" mount already holds the lab's inputs)."""
    work = sandbox.mounts["work"][0]
    (work / SUBMISSION_NAME).write_text(json.dumps(notebook), encoding="utf-8")
    argv = ["--input", f"{sandbox.path('work')}/{SUBMISSION_NAME}",
            "--output", f"{sandbox.path('work')}/{EXECUTED_NAME}",
            "--cwd", sandbox.path("work"), "--parameters", json.dumps(parameters),
            "--cell-timeout", str(cell_timeout), "--max-output-bytes", str(max_output_bytes),
            "--block-imports", ",".join(not_needed)]
    run = launch(sandbox, "run_notebook", argv, cwd="work")
    execution = interpret(run, notebook, sandbox.limits)
    execution.run = run
    return execution


def interpret(run: RunResult, notebook: dict, limits: Limits) -> Execution:
    """Turn the sandbox's outcome and the runner's status line into an `Execution`.

    The status line comes from inside the sandbox, so it only shapes messages, never points.
    """
    notes = list(run.notes)
    status = _status_line(run.stdout)
    if run.output_truncated:
        notes.append("the notebook's process printed too much; its output was truncated")
    if status and status.get("output_dropped"):
        notes.append("the notebook's cell outputs exceeded the size limit; the rest were dropped")
    if run.timed_out and starved(run, limits.wall_seconds):
        raise GraderTimeout(f"the notebook ran out of its {limits.wall_seconds:.0f} s while the machine was busy "
                            f"(it got {run.cpu_seconds:.1f} s of CPU; load {run.load:.1f})")
    if run.timed_out:
        return Execution(False, run.seconds, f"the notebook ran out of time ({limits.wall_seconds:.0f} s for the "
                         "whole lab): look for an endless loop or a slow cell", timed_out=True, notes=notes)
    if run.disk_exceeded:
        return Execution(False, run.seconds, f"the notebook wrote too much to disk (limit "
                         f"{limits.disk_bytes / 2**20:.0f} MB, {limits.disk_files} files) and was stopped",
                         notes=notes)
    if status is not None and status.get("ok"):
        if run.out_of_memory:
            notes.append("a process of the notebook was killed for using too much memory")
        return Execution(True, run.seconds, notes=notes, stopped=False)
    if run.out_of_memory:
        return Execution(False, run.seconds, f"the notebook ran out of memory (limit "
                         f"{limits.memory_bytes / 2**30:.1f} GiB)", out_of_memory=True, notes=notes)
    if status is None and (run.stderr.startswith("bwrap: ") or run.returncode in (97, 126, 127)):
        # the sandbox itself did not start (bubblewrap, prlimit or the cgroup join failed): the grader's fault
        raise SandboxStartError(f"the sandbox did not start: {run.stderr.strip()[:300] or run.returncode}")
    if status is None:
        how = (f"killed by signal {run.signal}" if run.signal else f"exit status {run.returncode}")
        return Execution(False, run.seconds, "the notebook's run was killed before it could finish "
                         f"({how}): did the notebook kill its own processes?", notes=notes)
    return Execution(False, run.seconds, _describe_error(status, notebook), notes=notes,
                     stopped=status.get("stopped", True) is not False)


def _status_line(stdout: str) -> dict | None:
    for line in reversed(stdout.splitlines()):
        if line.startswith(STATUS):
            try:
                value = json.loads(line[len(STATUS):])
                return value if isinstance(value, dict) else None
            except json.JSONDecodeError:
                return None
    return None


def _describe_error(status: dict, notebook: dict) -> str:
    ename, evalue = clean_text(str(status.get("ename", "Error"))), clean_text(str(status.get("evalue", "")))
    if ename == "DeadKernelError" or "Kernel died" in evalue:
        return "the kernel died (the notebook exited, was killed, or exhausted a limit)"
    if ename == "CellTimeoutError" or "timed out" in evalue.lower():
        return f"a cell ran out of time: {evalue[:200]}"
    cell, after = status.get("cell_id"), status.get("after")
    message = f"{ename}: {evalue}".strip().rstrip(":")[:500]
    if isinstance(cell, str):
        return f"cell {clean_text(cell)} raised {message}"
    if status.get("stopped") is False:
        where = f"after {clean_text(after)}" if isinstance(after, str) else "at the top"
        return f"a cell you added ({where}) raised {message}"
    return f"the notebook stopped: {message}"


# characters that are never shown as themselves: C0/C1 controls (but \n and \t), format characters (bidi
# overrides and isolates, marks, zero-width characters, BOM), line/paragraph separators, lone surrogates
_HIDDEN_CATEGORIES = frozenset(("Cc", "Cf", "Cs", "Zl", "Zp"))
_NOT_PLAIN = re.compile(r"[^\t\n\x20-\x7e]+")


def _visible(match: re.Match) -> str:
    import unicodedata

    return "".join((f"\\u{ord(ch):04x}" if ord(ch) <= 0xFFFF else f"\\U{ord(ch):08x}")
                   if unicodedata.category(ch) in _HIDDEN_CATEGORIES else ch for ch in match.group())


def clean_text(text: str, limit: int | None = None) -> str:
    """Learner-controlled text made safe to store and show: every control, format (bidi, zero-width) and
    line-separator character and every lone surrogate written visibly as an escape (`\\u202e`), so nothing
    reorders, hides or fakes a line of what is shown; `\\n` and `\\t` stay. With `limit`, at most that many
    characters, then "… (N more characters)"."""
    text = str(text)
    extra = 0
    if limit is not None and len(text) > limit:  # cut before escaping: a huge text is never walked
        extra, text = len(text) - limit, text[:limit]
    text = _NOT_PLAIN.sub(_visible, text)
    if limit is not None and len(text) > limit:  # escapes made it longer
        extra, text = extra + len(text) - limit, text[:limit]
    return f"{text}… ({extra} more characters)" if extra else text
