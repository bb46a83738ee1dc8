"""Execute a (restored) lab notebook with papermill and its kernel together inside one sandbox."""

from __future__ import annotations

import json
import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path

from grader.sandbox import Limits, RunResult, Sandbox

TOOLS = Path(__file__).parent / "tools"
STATUS = "MLOPS-RUNNER-STATUS "
SUBMISSION_NAME = "submission.ipynb"
EXECUTED_NAME = ".executed.ipynb"


@dataclass
class Execution:
    """How the notebook's run went, in words a learner can act on."""

    ok: bool
    seconds: float
    error: str | None = None  # e.g. "answer-05 raised NotImplementedError: build the pipeline"
    timed_out: bool = False
    out_of_memory: bool = False
    notes: list[str] = field(default_factory=list)


def execute(notebook: dict, sandbox: Sandbox, parameters: dict, cell_timeout: int,
            max_output_bytes: int = 2 * 2**20) -> Execution:
    """Run `notebook` in `sandbox` (whose "work" mount already holds the lab's inputs)."""
    work = sandbox.mounts["work"][0]
    (work / SUBMISSION_NAME).write_text(json.dumps(notebook), encoding="utf-8")
    tools = sandbox.mount("tools")
    shutil.copy(TOOLS / "run_notebook.py", tools / "run_notebook.py")
    argv = [sys.executable, "-I", f"{sandbox.path('tools')}/run_notebook.py",
            "--input", f"{sandbox.path('work')}/{SUBMISSION_NAME}",
            "--output", f"{sandbox.path('work')}/{EXECUTED_NAME}",
            "--cwd", sandbox.path("work"), "--parameters", json.dumps(parameters),
            "--cell-timeout", str(cell_timeout), "--max-output-bytes", str(max_output_bytes)]
    run = sandbox.run(argv, cwd="work")
    return interpret(run, notebook, sandbox.limits)


def interpret(run: RunResult, notebook: dict, limits: Limits) -> Execution:
    """Turn the sandbox's outcome and the runner's status line into an `Execution`."""
    notes = list(run.notes)
    if run.output_truncated:
        notes.append("the notebook's process output was truncated")
    if run.timed_out:
        return Execution(False, run.seconds, f"the notebook ran out of time ({limits.wall_seconds:.0f} s for the "
                         "whole lab): look for an endless loop or a slow cell", timed_out=True, notes=notes)
    status = _status_line(run.stdout)
    if run.out_of_memory:
        return Execution(False, run.seconds, f"the notebook ran out of memory (limit "
                         f"{limits.memory_bytes / 2**30:.1f} GiB)", out_of_memory=True, notes=notes)
    if status is None:
        detail = run.stderr.strip().splitlines()[-1:] or [f"exit status {run.returncode}"]
        return Execution(False, run.seconds, f"the notebook's run ended abnormally ({detail[0][:300]})", notes=notes)
    if status.get("ok"):
        return Execution(True, run.seconds, notes=notes)
    return Execution(False, run.seconds, _describe_error(status, notebook), notes=notes)


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
    ename, evalue = str(status.get("ename", "Error")), str(status.get("evalue", ""))
    if ename == "DeadKernelError" or "Kernel died" in evalue:
        return "the kernel died (the notebook exited, was killed, or exhausted a limit)"
    if ename == "CellTimeoutError" or "timed out" in evalue.lower():
        return f"a cell ran out of time: {evalue[:200]}"
    cell = status.get("cell_id")
    message = f"{ename}: {evalue}".strip().rstrip(":")
    return f"cell {cell} raised {message[:500]}" if isinstance(cell, str) else f"the notebook stopped: {message[:500]}"

