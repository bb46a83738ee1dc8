"""Execute a notebook with papermill inside the sandbox, capping its output; print one status line.

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
            log_output=False, report_mode=False,
        )
    except papermill.PapermillExecutionError as err:
        status = {"ok": False, "cell_index": err.cell_index, "ename": err.ename,
                  "evalue": str(err.evalue)[:2000]}
    except BaseException as err:  # kernel died, cell timeout, bad notebook: report, never hang
        status = {"ok": False, "ename": type(err).__name__, "evalue": str(err)[:2000]}
    sys.stdout.write("\n" + STATUS + json.dumps(status) + "\n")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
