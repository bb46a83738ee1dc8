"""One launcher for every trusted script that runs inside a sandbox: the notebook runner and the probes.

`launch()` copies the tool and the shared harness into a read-only `tools` mount, runs it with the
sandbox's interpreter in isolated mode, and returns the sandbox's outcome. `run_probe()` adds the
probe protocol: inputs as `.npy` files (never pickles), the work dir read-only, a private `out` dir,
and `result.json` read back as untrusted, size-capped JSON.

A run that ran out of wall time while the machine was too busy for it to get its share of the CPU is
the grader's problem, not the learner's: `starved()` tells, and callers report it as a grader timeout
(status `error`: regrade it), with the figures.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

from grader import collect, entrants
from grader.sandbox import RunResult, Sandbox

TOOLS = Path(__file__).parent / "tools"
HARNESS = "harness.py"
COMPANIONS = {"monitor_probe": ("service_probe.py",), "mutation_tests": ("forkserver.py",),
              "function_probe": ("forkserver.py",)}  # tools a probe builds on, copied beside it


class GraderTimeout(RuntimeError):
    """The grader's own limits, not the learner's code, ran a job out of time: regrade it."""


@dataclass
class ProbeOutcome:
    """What a probe run gave: its result (or an error in words) and the sandbox's figures."""

    result: dict
    run: RunResult


def launch(sandbox: Sandbox, tool: str, args: list[str], cwd: str) -> RunResult:
    """Run `grader/tools/<tool>.py` (with the harness beside it) inside `sandbox`."""
    tools = sandbox.mount("tools")
    for name in (f"{tool}.py", HARNESS, "skops_guard.py", *COMPANIONS.get(tool, ())):  # the guard: how probes load skops
        shutil.copy(TOOLS / name, tools / name)
    argv = [sys.executable, "-I", f"{sandbox.path('tools')}/{tool}.py", *args]
    return sandbox.run(argv, cwd=cwd, zygote=entrants.zygote_for(tool))


def inputs_key(tool: str, args: tuple[str, ...], inputs: dict) -> str:
    """A hash of everything a probe's result depends on besides the (read-only) work dir."""
    import numpy as np

    digest = hashlib.sha256(tool.encode())
    for arg in args:
        digest.update(b"\0arg\0" + str(arg).encode())
    for name in sorted(inputs):
        array = np.asarray(inputs[name])
        digest.update(f"\0in\0{name}\0{array.dtype.str}\0{array.shape}\0".encode())
        digest.update(np.ascontiguousarray(array).tobytes() if array.dtype != object else repr(array).encode())
    return digest.hexdigest()


def run_probe(sandbox: Sandbox, tool: str, work: Path, inputs: dict, args: tuple[str, ...]) -> ProbeOutcome:
    """Run probe `tool` over `work` (read-only) with `inputs`; its result.json, or {"error": ...}."""
    import numpy as np

    sandbox.mount("work", work)
    data = sandbox.mount("input")
    for name, array in inputs.items():
        np.save(data / f"{name}.npy", np.asarray(array), allow_pickle=False)
    out = sandbox.mount("out", writable=True)
    argv = ["--work", sandbox.path("work"), "--input", sandbox.path("input"), "--out", sandbox.path("out"), *args]
    run = launch(sandbox, tool, argv, cwd="out")
    limits = sandbox.limits
    if run.timed_out:
        if starved(run, limits.wall_seconds):
            raise GraderTimeout(f"the probe {tool} ran out of its {limits.wall_seconds:.0f} s while the machine was "
                                f"busy (it got {run.cpu_seconds:.1f} s of CPU; load {run.load:.1f})")
        return ProbeOutcome({"error": f"it took over {limits.wall_seconds:.0f} s (the grader's limit) and was "
                             "stopped"}, run)
    if run.out_of_memory:
        return ProbeOutcome({"error": f"it ran out of memory (limit {limits.memory_bytes / 2**30:.1f} GiB)"}, run)
    try:
        result = collect.read_json(out, "result.json")
    except collect.CollectError:
        tail = (run.stderr.strip().splitlines() or ["no output"])[-1][:300]
        return ProbeOutcome({"error": f"the fresh process that loads your work failed: {tail}"}, run)
    if not isinstance(result, dict):
        result = {"error": "the probe returned no result"}
    return ProbeOutcome(result, run)


def starved(run: RunResult, wall_seconds: float) -> bool:
    """Whether a timed-out run was starved of CPU by a busy machine rather than slow by itself.

    It was, when it used under half its wall time in CPU while the machine's load was above its cores:
    a learner's endless loop uses its CPU; a learner's `sleep` on an idle machine leaves the load low.
    """
    if run.cpu_seconds is None:
        return False
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return run.cpu_seconds < 0.5 * wall_seconds and run.load > cores + 0.5
