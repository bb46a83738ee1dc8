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
import ctypes
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




class ForkedKernel:
    """A Popen-like handle (what jupyter_client's LocalProvisioner uses) on the kernel process forked by
    `fork_kernel()`."""

    stdin = stdout = stderr = None

    def __init__(self, pid: int):
        self.pid, self.returncode = pid, None

    def poll(self):
        if self.returncode is None:
            try:
                pid, status = os.waitpid(self.pid, os.WNOHANG)
            except ChildProcessError:
                pid, status = self.pid, 0
            if pid:
                self.returncode = os.waitstatus_to_exitcode(status)
        return self.returncode

    def wait(self, timeout=None):
        import subprocess
        import time

        deadline = None if timeout is None else time.monotonic() + timeout
        while self.poll() is None:
            if deadline is not None and time.monotonic() > deadline:
                raise subprocess.TimeoutExpired("kernel", timeout)
            time.sleep(0.02)
        return self.returncode

    def send_signal(self, signum):
        if self.poll() is None:
            os.kill(self.pid, signum)

    def kill(self):
        import signal

        self.send_signal(signal.SIGKILL)

    def terminate(self):
        import signal

        self.send_signal(signal.SIGTERM)


def fork_kernel():
    """Fork, now, the process that becomes the notebook's kernel when papermill starts one, so that it starts with
    what this process imported: the modules the notebook zygote (grader/entrants.py) imported once for every job.

    Only where this runner is such an entrant: the zygote runs without -I, so the kernel is an ordinary Python
    as `python -m ipykernel_launcher` is (the current folder on sys.path; -I would pass on to the processes it
    starts). The child waits on a pipe for jupyter_client's launch (command, environment, folder); it holds no
    descriptor of this runner's. Returns an `install()` that makes jupyter_client use it, or None."""
    if sys.flags.isolated or not hasattr(os, "fork"):
        return None
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.setsid()  # at once: jupyter_client reads the kernel's process group as soon as "launch" returns
        os.close(write_end)
        try:
            become_kernel(read_end)
        except BaseException:  # noqa: BLE001 — a kernel that cannot start is reported by papermill
            import traceback

            traceback.print_exc()
        finally:
            os._exit(1)
    os.close(read_end)
    state = {"used": False}

    def install() -> None:
        import jupyter_client.provisioning.local_provisioner as local

        original = local.launch_kernel

        def launch_kernel(cmd, **kwargs):
            if state["used"] or len(cmd) < 3 or cmd[1:3] != ["-m", "ipykernel_launcher"]:
                return original(cmd, **kwargs)  # a restart, or another kernel: a fresh process
            state["used"] = True
            env = dict(kwargs.get("env") or os.environ)
            env["JPY_PARENT_PID"] = str(os.getpid())
            request = {"argv": cmd[3:], "env": env, "cwd": str(kwargs.get("cwd") or os.getcwd())}
            with os.fdopen(write_end, "wb") as pipe:
                pipe.write(json.dumps(request).encode())
            return ForkedKernel(pid)

        local.launch_kernel = launch_kernel

    return install


def become_kernel(read_end: int) -> None:
    """In the forked child: wait for the launch, then be `python -m ipykernel_launcher ARGS` in its folder."""
    with os.fdopen(read_end, "rb") as pipe:
        data = pipe.read()
    if not data:  # the runner never started a kernel
        os._exit(0)
    request = json.loads(data)
    from harness import retitle  # (before the runner's modules go)
    stdin, keep_open = os.pipe()  # stdin a pipe nobody writes to, as jupyter_client's PIPE (stdout: /dev/null)
    os.dup2(stdin, 0)
    os.dup2(keep_open, 3)
    os.closerange(4, os.sysconf("SC_OPEN_MAX"))
    ctypes.CDLL(None, use_errno=True).prctl(4, 1, 0, 0, 0)  # dumpable again, as a freshly executed kernel is
    os.chdir(request["cwd"])
    os.environ.clear()
    os.environ.update(request["env"])
    tools = os.path.dirname(os.path.abspath(__file__))
    for name, module in list(sys.modules.items()):  # the runner's own modules are not the kernel's
        if str(getattr(module, "__file__", "") or "").startswith(tools + os.sep):
            del sys.modules[name]
    sys.path[:] = [entry for entry in sys.path if entry != tools]
    import importlib.util
    import types

    launcher = importlib.util.find_spec("ipykernel_launcher").origin
    main = types.ModuleType("__main__")  # as under `python -m ipykernel_launcher`
    main.__file__ = launcher
    sys.modules["__main__"] = main
    sys.argv = [launcher, *request["argv"]]
    retitle([sys.executable, "-m", "ipykernel_launcher", *request["argv"]], request["env"])  # what /proc shows
    from ipykernel import kernelapp

    kernelapp.launch_new_instance()
    os._exit(0)


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
    install_forked_kernel = fork_kernel()
    # jsonschema (under nbformat) compiles an IRI grammar at import when rfc3987_syntax is installed: 3 s of CPU
    # per notebook, for a format check nbformat never uses; without it, jsonschema skips that format
    from harness import block_imports

    block_imports(("rfc3987_syntax",))
    cap_outputs(args.max_output_bytes)
    if install_forked_kernel:
        install_forked_kernel()
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
