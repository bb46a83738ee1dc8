"""Call a function of a learner's Python file on given arguments, each call in a fresh process of its own.

Runs inside the sandbox: it must not import the grader. The plan (input `plan.npy`, a 0-d JSON string) names the
file (work-relative), lists calls `{"id", "function", "kwargs"}` whose arguments and results are plain JSON, and
may name trusted modules to `preload` (e.g. Evidently: 3 s of CPU per fresh Python) and renderers to keep `quiet`
("module:Class.method", replaced by one that draws nothing: Evidently draws a plotly figure per column, ~80 % of a
drift call, which no check reads). The calls run in the
forkserver's worker (inner sandbox, another uid, no network, this probe's inputs hidden), which imports only the
preloaded modules and forks a child per call: the child imports the learner's file and makes its one call, so
learner code never sees another call (hidden scenarios stay one per process) and nothing of one call reaches the
next. The learner's answer comes back on a descriptor-free channel: the last output line after a marker only
this probe's runner prints. Results are raw; the grader judges them.
"""

import importlib
import importlib.util
import json
import os
import secrets
import shutil
import sys
import tempfile
import traceback
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # the harness, beside this file (-I drops it)
from forkserver import ForkWorker, serve, start_child, wipe  # noqa: E402
from harness import probe_main, quieter_source, sibling_limit  # noqa: E402

MAX_SOURCE_BYTES = 256 * 1024
LOG_TAIL = 20_000  # bytes of a call's output read back


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
    preload = ",".join(str(m) for m in plan.get("preload", []))
    quiet = ",".join(str(m) for m in plan.get("quiet", []))
    worker = ForkWorker([sys.executable, "-I", os.path.abspath(__file__), "--worker", "--preload", preload,
                         "--quiet", quiet], scratch,
                        [args.input, args.out], env={"LANG": "C.UTF-8"}, share_net=False)
    results, took = [], []
    try:
        for call in plan["calls"]:
            wipe(scratch)  # all the call sees of the probe: its own folder, alone in the scratch
            folder = scratch / "call"
            folder.mkdir()
            shutil.copyfile(source, folder / "learner_module.py")
            (folder / "call.json").write_text(json.dumps(call))
            marker = f"@@answer-{secrets.token_hex(8)}@@"
            limit = sibling_limit(took, args.seconds)
            done = worker.run({"folder": str(folder), "marker": marker}, limit)
            took.append(done["seconds"])
            output = _tail(folder / "output.log")
            results.append({"id": call["id"], **_answer(done, output, marker, limit)})
    finally:
        worker.close()
        shutil.rmtree(scratch, ignore_errors=True)
    return {"calls": results}


def _tail(log: Path) -> str:
    try:
        with open(log, "rb") as handle:
            handle.seek(max(0, log.stat().st_size - LOG_TAIL))
            return handle.read().decode("utf-8", "replace")
    except OSError:
        return ""


def _answer(done: dict, output: str, marker: str, limit: float) -> dict:
    answers = [line[len(marker):] for line in output.splitlines() if line.startswith(marker)]
    if done["timed_out"]:
        return {"error": f"it did not return within {limit:.0f} s"}
    if done["exit"] != 0 or not answers:
        tail = [line for line in output.splitlines() if line.strip() and not line.startswith(marker)][-3:]
        return {"error": " | ".join(tail)[-600:] or f"exit {done['exit']}"}
    try:
        return {"result": json.loads(answers[-1])}
    except ValueError:
        return {"error": "its answer is not JSON"}


# --- the worker (in the inner sandbox) --------------------------------------------------------------------------


def _listed(flag: str) -> list[str]:
    return [m for m in sys.argv[sys.argv.index(flag) + 1].split(",") if m] if flag in sys.argv else []


def worker_main() -> None:
    modules, quiet = _listed("--preload"), _listed("--quiet")

    def preload() -> None:
        if quiet:
            exec(quieter_source(quiet), {})  # noqa: S102 - the grader's own text: renderers quiet once imported
        for module in modules:
            importlib.import_module(module)

    serve(preload, call_in_child)


def call_in_child(request: dict) -> None:
    """In the forked child: import the learner's file, make the one call, print the answer after the marker."""
    folder = Path(request["folder"])
    code = 1
    try:
        start_child(folder, folder / "output.log")
        sys.path.insert(0, str(folder))
        spec = importlib.util.spec_from_file_location("learner_module", folder / "learner_module.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules["learner_module"] = module
        spec.loader.exec_module(module)
        call = json.loads((folder / "call.json").read_text())
        function = getattr(module, call["function"], None)
        if not callable(function):
            print(f"{call['function']}() is not defined in the file")
        else:
            answer = function(**call["kwargs"])
            print()
            print(request["marker"] + json.dumps(answer, default=repr))
            code = 0
    except BaseException:  # noqa: BLE001 - whatever the learner's code raises ends this child only
        traceback.print_exc(limit=-3)
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


if __name__ == "__main__":
    if sys.argv[1:2] == ["--worker"]:
        worker_main()
    else:
        probe_main(probe, add_arguments)
