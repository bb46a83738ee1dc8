"""Execute a notebook with papermill inside the sandbox, capping its output; print one status line.

Every cell runs even after an error (allow_errors), so later exercises still produce their outputs;
the first error is what the status line reports.

Runs inside the sandbox (`python -I run_notebook.py ...`): it must not import the grader.
The status line is informational only: every point is earned from outputs the grader checks itself.
It goes to a private copy of stdout; the kernel's own stdout is /dev/null, so a notebook that floods
or forges the process output cannot bury or replace it (it could still try through /proc; the runner
makes itself non-dumpable to close that door too, where prctl is available).
"""

import argparse
import json
import os
import sys

STATUS = "MLOPS-RUNNER-STATUS "
STATE = {"dropped": False}


def cap_outputs(max_bytes: int) -> None:
    """Drop cell outputs beyond `max_bytes` for the whole notebook, leaving one notice."""
    import nbclient.client
    import nbformat

    original = nbclient.client.NotebookClient.output
    state = {"left": max_bytes, "noted": False}

    def output(self, outs, msg, display_id, cell_index):
        size = len(json.dumps(msg.get("content", {}), default=str))
        if size > state["left"]:
            if not state["noted"]:
                state["noted"] = STATE["dropped"] = True
                outs.append(nbformat.v4.new_output(
                    "stream", name="stderr",
                    text=f"\n[mlops-grade: output beyond {max_bytes // 1024} KB was dropped]\n"))
            return None
        state["left"] -= size
        return original(self, outs, msg, display_id, cell_index)

    nbclient.client.NotebookClient.output = output


def _mlops_id(cell) -> str | None:
    meta = cell.get("metadata", {}).get("mlops", {}) if isinstance(cell, dict) else None
    value = meta.get("id") if isinstance(meta, dict) else None
    return value if isinstance(value, str) else None


def first_error_cell(path: str):
    """Where the first error output of the executed notebook is, and what it says (None if none).

    {"cell_id": the lab cell's id, or None for a cell the learner added, "after": the id of the lab cell
    before an added one, "ename", "evalue"}. `SystemExit` with status 0 or none is not an error.
    """
    try:
        with open(path, encoding="utf-8") as handle:
            cells = json.load(handle)["cells"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    after = None
    for cell in cells if isinstance(cells, list) else []:
        cell_id = _mlops_id(cell)
        for out in cell.get("outputs", []) if isinstance(cell, dict) else []:
            clean_exit = out.get("ename") == "SystemExit" and out.get("evalue") in ("", "0", "None")
            if out.get("output_type") == "error" and not clean_exit:
                return {"cell_id": cell_id, "after": after, "ename": str(out.get("ename")),
                        "evalue": str(out.get("evalue"))[:2000]}
        if cell_id:
            after = cell_id
    return None


def private_status_stream():
    """A private copy of stdout for the status line; fd 1 becomes /dev/null for the kernel we start."""
    status = os.fdopen(os.dup(1), "w", encoding="utf-8")  # os.dup: not inherited by the kernel
    sys.stdout.flush()
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)
    os.close(devnull)
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(4, 0, 0, 0, 0)  # PR_SET_DUMPABLE = 0: /proc/<pid>/fd closed
    except (OSError, AttributeError):
        pass
    return status




def block_in_kernel(modules: list) -> None:
    """An IPython startup file in the kernel's profile that makes `modules` unimportable there, and a
    sitecustomize on the kernel's PYTHONPATH that does the same in the Python processes it starts (a server)."""
    from harness import BLOCKER

    blocker = BLOCKER.format(blocked=tuple(m.strip() for m in modules if m.strip()))
    ipython = os.environ.get("IPYTHONDIR", os.path.expanduser("~/.ipython"))
    site = os.path.join(ipython, "not-needed-site")
    folder = os.path.join(ipython, "profile_default", "startup")
    for path in (site, folder):
        os.makedirs(path, exist_ok=True)
    with open(os.path.join(site, "sitecustomize.py"), "w", encoding="utf-8") as handle:
        handle.write(blocker)
    with open(os.path.join(folder, "00-mlops-grade-not-needed.py"), "w", encoding="utf-8") as handle:
        handle.write(blocker + f"\nimport os as _os\n_os.environ['PYTHONPATH'] = _os.pathsep.join(p for p in ({site!r}, "
                     "_os.environ.get('PYTHONPATH', '')) if p)\ndel _os\n")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--input", required=True)
    parser.add_argument("--output", required=True)
    parser.add_argument("--cwd", required=True)
    parser.add_argument("--parameters", default="{}")
    parser.add_argument("--cell-timeout", type=int, default=120)
    parser.add_argument("--max-output-bytes", type=int, default=2 * 2**20)
    parser.add_argument("--block-imports", default="", help="comma-separated modules the lab does not need")
    args = parser.parse_args()
    status_stream = private_status_stream()
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # the harness, beside this file (-I drops it)
    if args.block_imports:
        block_in_kernel(args.block_imports.split(","))
    # jsonschema (under nbformat) compiles an IRI grammar at import when rfc3987_syntax is installed: 3 s of CPU
    # per notebook, for a format check nbformat never uses; without it, jsonschema skips that format
    from harness import block_imports

    block_imports(("rfc3987_syntax",))
    cap_outputs(args.max_output_bytes)
    import papermill

    status = {"ok": True}
    try:
        papermill.execute_notebook(
            args.input, args.output, parameters=json.loads(args.parameters), cwd=args.cwd,
            kernel_name="python3", execution_timeout=args.cell_timeout, progress_bar=False,
            log_output=False, report_mode=False, allow_errors=True,
            request_save_on_cell_execute=False,  # papermill rewrote the whole notebook at every cell start and end
            iopub_timeout=30,  # nbclient waits 4 s for a cell's last output by default: too short under load
        )
    except papermill.PapermillExecutionError as err:
        found = first_error_cell(args.output)
        if found:
            status = {"ok": False, "stopped": False, **found}
        elif err.ename != "SystemExit":  # SystemExit(0) alone is a clean exit of the cell, not an error
            status = {"ok": False, "stopped": False, "cell_id": None, "after": None, "ename": str(err.ename),
                      "evalue": str(err.evalue)[:2000]}
    except BaseException as err:  # kernel died, cell timeout, bad notebook: report, never hang
        status = {"ok": False, "stopped": True, "ename": type(err).__name__, "evalue": str(err)[:2000]}
    status["output_dropped"] = STATE["dropped"]
    status_stream.write("\n" + STATUS + json.dumps(status) + "\n")
    status_stream.flush()


if __name__ == "__main__":
    main()
