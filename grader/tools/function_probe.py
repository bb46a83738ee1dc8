"""Call a function of a learner's Python file on given arguments, each call in a fresh inner process.

Runs inside the sandbox: it must not import the grader. The plan (input `plan.npy`, a 0-d JSON string) names the
file (work-relative), and lists calls `{"id", "function", "kwargs"}` whose arguments and results are plain JSON.
Each call runs through the harness's `run_learner` (inner sandbox, another uid, no network, this probe's inputs
hidden) in a process of its own that sees only its own arguments, so learner code never sees the other calls
(hidden scenarios stay one per process). The learner's answer comes back on a descriptor-free channel: the last
stdout line, after a marker only this probe's runner prints. Results are raw; the grader judges them.
"""

import json
import os
import secrets
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # the harness, beside this file (-I drops it)
from harness import probe_main, run_learner, sibling_limit  # noqa: E402

MAX_SOURCE_BYTES = 256 * 1024
RUNNER = """
import importlib.util, json, sys
spec = importlib.util.spec_from_file_location("learner_module", sys.argv[1])
module = importlib.util.module_from_spec(spec)
sys.modules["learner_module"] = module
spec.loader.exec_module(module)
call = json.loads(open(sys.argv[2]).read())
function = getattr(module, call["function"], None)
if not callable(function):
    raise SystemExit(f"{call['function']}() is not defined in the file")
answer = function(**call["kwargs"])
print()
print(sys.argv[3] + json.dumps(answer, default=repr))
"""


def add_arguments(parser) -> None:
    parser.add_argument("--seconds", type=float, default=20, help="the limit of one call")


def probe(args, inputs) -> dict:
    plan = json.loads(str(inputs["plan"]))
    source = Path(args.work) / plan["file"]
    if source.is_symlink() or not source.is_file():
        return {"error": f"{plan['file']} was not found"}
    if source.stat().st_size > MAX_SOURCE_BYTES:
        return {"error": f"{plan['file']} is larger than {MAX_SOURCE_BYTES // 1024} KB"}
    scratch = Path(tempfile.mkdtemp(prefix="calls-"))
    env = {"PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin", "HOME": str(scratch), "LANG": "C.UTF-8",
           "PYTHONDONTWRITEBYTECODE": "1"}
    results, took = [], []
    for call in plan["calls"]:
        folder = Path(tempfile.mkdtemp(prefix="call-", dir=scratch))  # all the inner process sees of the probe
        module, runner = folder / "learner_module.py", folder / "runner.py"
        shutil.copyfile(source, module)
        runner.write_text(RUNNER)
        (folder / "call.json").write_text(json.dumps(call))
        marker = f"@@answer-{secrets.token_hex(8)}@@"
        started = time.monotonic()
        done = run_learner([sys.executable, "-I", str(runner), str(module), str(folder / "call.json"), marker],
                           cwd=str(folder), env=env, timeout=sibling_limit(took, args.seconds),
                           writable=[str(folder)], hidden=[args.input, args.out], share_net=False)
        took.append(time.monotonic() - started)
        shutil.rmtree(folder, ignore_errors=True)
        record = {"id": call["id"]}
        answers = [line[len(marker):] for line in done["stdout"].splitlines() if line.startswith(marker)]
        if done["timed_out"]:
            record["error"] = f"it did not return within {sibling_limit(took[:-1], args.seconds):.0f} s"
        elif done["exit"] != 0 or not answers:
            tail = [line for line in (done["stderr"] or done["stdout"]).splitlines() if line.strip()][-3:]
            record["error"] = " | ".join(tail)[-600:] or f"exit {done['exit']}"
        else:
            try:
                record["result"] = json.loads(answers[-1])
            except ValueError:
                record["error"] = "its answer is not JSON"
        results.append(record)
    return {"calls": results}


if __name__ == "__main__":
    probe_main(probe, add_arguments)
