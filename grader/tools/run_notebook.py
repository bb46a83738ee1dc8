"""Execute a notebook with papermill inside the sandbox, capping its output; print one status line.

Every cell runs even after an error (allow_errors), so later exercises still produce their outputs;
the first error is what the status line reports.

Runs inside the sandbox (`python -I run_notebook.py ...`): it must not import the grader.
The status line is informational only: every point is earned from outputs the grader checks itself.
"""

import argparse
import json
import sys

STATUS = "MLOPS-RUNNER-STATUS "


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
                state["noted"] = True
                outs.append(nbformat.v4.new_output(
                    "stream", name="stderr",
                    text=f"\n[mlops-grade: output beyond {max_bytes // 1024} KB was dropped]\n"))
            return None
        state["left"] -= size
        return original(self, outs, msg, display_id, cell_index)

    nbclient.client.NotebookClient.output = output


def first_error_cell(path: str):
    """(cell id, error name, error value) of the first cell with an error output in the executed notebook."""
    try:
        with open(path, encoding="utf-8") as handle:
            cells = json.load(handle)["cells"]
    except (OSError, ValueError, KeyError):
        return None
    for cell in cells:
        for out in cell.get("outputs", []):
            if out.get("output_type") == "error" and not (out.get("ename") == "SystemExit" and out.get("evalue") in ("", "0")):
                meta = cell.get("metadata", {}).get("mlops", {})
                return (meta.get("id") if isinstance(meta, dict) else None), out.get("ename"), out.get("evalue")
    return None


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--input", required=True)
    parser.add_argument("--output", required=True)
    parser.add_argument("--cwd", required=True)
    parser.add_argument("--parameters", default="{}")
    parser.add_argument("--cell-timeout", type=int, default=120)
    parser.add_argument("--max-output-bytes", type=int, default=2 * 2**20)
    args = parser.parse_args()
    cap_outputs(args.max_output_bytes)
    import papermill

    status = {"ok": True}
    try:
        papermill.execute_notebook(
            args.input, args.output, parameters=json.loads(args.parameters), cwd=args.cwd,
            kernel_name="python3", execution_timeout=args.cell_timeout, progress_bar=False,
            log_output=False, report_mode=False, allow_errors=True,
        )
    except papermill.PapermillExecutionError as err:
        cell_id, ename, evalue = first_error_cell(args.output) or (None, err.ename, err.evalue)
        status = {"ok": False, "cell_id": cell_id, "ename": ename, "evalue": str(evalue)[:2000]}
    except BaseException as err:  # kernel died, cell timeout, bad notebook: report, never hang
        status = {"ok": False, "ename": type(err).__name__, "evalue": str(err)[:2000]}
    sys.stdout.write("\n" + STATUS + json.dumps(status) + "\n")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
