"""Probe a learner's Python package in a fresh sandboxed process: lint, type-check, install, run; write result.json.

Runs inside the sandbox (`python -I package_probe.py ...`): it must not import the grader.
The work dir is read-only, so the project is first copied into the writable out dir. Then, each step
recorded whatever happens to the others:
1. `python -m ruff check --isolated <ruff args> .` (the learner's own ruff/mypy settings are ignored:
   everyone is judged by the same rules, passed in by the check);
2. `python -m mypy --config-file <empty> <mypy args> src/<package>`;
3. `python -m pip install --no-deps --no-build-isolation --no-index --target OUT/site PROJECT`: an offline
   build with the build backend already installed in the course environment (setuptools);
4. the installed console script, with only OUT/site added to the path: `--help`, `summary CSV`,
   `split CSV --seed N --out DIR` on the grader's CSV (an input, given as a 0-d string array).
Results are raw (exit codes, output tails, the split's CSV text): the grader judges them itself.
ruff and mypy run before any learner code does (pip runs the build backend, then the command); before
writing result.json the probe kills whatever the learner's code left running in the sandbox.
"""

import argparse
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

MAX_FILES, MAX_BYTES = 500, 5 * 2**20  # a package is small; refuse to copy anything bigger
TAIL = 4000  # characters of each command's output kept
SILENCERS = re.compile(r"#\s*(type:\s*ignore|mypy:|noqa|ruff:\s*noqa)", re.IGNORECASE)
SKIP_DIRS = {"__pycache__", ".mypy_cache", ".ruff_cache", "build", "dist", ".git", ".venv"}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--work", required=True)
    parser.add_argument("--input", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--project", required=True)  # work-relative directory of the project
    parser.add_argument("--package", required=True)  # import name, under src/
    parser.add_argument("--script", required=True)  # console script name from [project.scripts]
    parser.add_argument("--ruff-args", default="[]")  # JSON list
    parser.add_argument("--mypy-args", default="[]")  # JSON list
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    out = Path(args.out)
    try:
        result = run(args, out)
    except Exception as err:  # never leave the grader without an answer
        result = {"error": f"the package probe failed: {type(err).__name__}: {err}"[:500]}
    stop_strays()
    partial = out / "result.json.tmp"
    partial.write_text(json.dumps(result))
    partial.replace(out / "result.json")


def stop_strays() -> None:
    """Kill every process the learner's code left behind, so none can rewrite result.json after us.

    Only inside the sandbox's own PID namespace (pid 1 is bubblewrap); outside it, /proc lists the
    user's other processes, which are none of our business.
    """
    try:
        if Path("/proc/1/comm").read_text().strip() != "bwrap":
            return
    except OSError:
        return
    keep, pid = {os.getpid()}, os.getpid()
    while pid > 1:  # our ancestors: bubblewrap's init and the launcher
        try:
            pid = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            break
        keep.add(pid)
    for entry in os.listdir("/proc"):
        if entry.isdigit() and int(entry) not in keep:
            try:
                os.kill(int(entry), signal.SIGKILL)
            except OSError:
                pass


def run(args, out: Path) -> dict:
    source = Path(args.work) / args.project
    if os.path.islink(source) or not source.is_dir():
        return {"error": f"{args.project} was not found (or is not a directory)"}
    project = out / "project"
    problem = copy_project(source, project)
    if problem:
        return {"error": problem}
    result: dict = {"silenced": silencers(project)}
    env = clean_env(out)
    result["ruff"] = command([sys.executable, "-m", "ruff", "check", "--isolated", "--no-fix",
                              "--cache-dir", str(out / ".ruff_cache"), *json.loads(args.ruff_args), "."],
                             cwd=project, env=env, timeout=60)
    empty = out / "mypy.ini"
    empty.write_text("[mypy]\n")
    target = project / "src" / args.package
    if target.is_dir():
        result["mypy"] = command([sys.executable, "-m", "mypy", "--config-file", str(empty), "--cache-dir",
                                  str(out / ".mypy_cache"), *json.loads(args.mypy_args), f"src/{args.package}"],
                                 cwd=project, env=env, timeout=120)
    else:
        result["mypy"] = {"returncode": None, "output": f"src/{args.package} is not a directory"}
    site = out / "site"
    result["install"] = command([sys.executable, "-m", "pip", "install", "--no-deps", "--no-build-isolation",
                                 "--no-index", "--no-cache-dir", "--disable-pip-version-check", "--no-input",
                                 "--target", str(site), str(project)], cwd=out, env=env, timeout=120)
    script = site / "bin" / args.script
    result["script_installed"] = script.is_file()
    result["entry_points"] = entry_points(site)
    if not script.is_file():
        return result
    run_env = dict(env, PYTHONPATH=str(site))
    scratch = out / "run"
    scratch.mkdir()
    csv = scratch / "grader.csv"
    import numpy as np

    csv.write_text(str(np.load(Path(args.input) / "csv.npy", allow_pickle=False)))
    result["help"] = command([str(script), "--help"], cwd=scratch, env=run_env, timeout=60)
    result["summary"] = command([str(script), "summary", str(csv)], cwd=scratch, env=run_env, timeout=60)
    split_dir = scratch / "split"
    result["split"] = command([str(script), "split", str(csv), "--seed", str(args.seed), "--out", str(split_dir)],
                              cwd=scratch, env=run_env, timeout=60)
    result["split"]["files"] = {name: read_capped(split_dir / name) for name in ("train.csv", "test.csv")}
    return result


def copy_project(source: Path, dest: Path) -> str | None:
    """Copy regular files and directories only (no links), within size limits; a message when refused."""
    count, size = 0, 0
    for root, dirs, files in os.walk(source):
        dirs[:] = [d for d in dirs if d not in SKIP_DIRS and not os.path.islink(os.path.join(root, d))]
        rel = Path(root).relative_to(source)
        (dest / rel).mkdir(parents=True, exist_ok=True)
        for name in files:
            path = Path(root) / name
            if path.is_symlink() or not path.is_file():
                continue
            count, size = count + 1, size + path.stat().st_size
            if count > MAX_FILES or size > MAX_BYTES:
                return f"the project holds over {MAX_FILES} files or {MAX_BYTES // 2**20} MiB: keep only the package"
            shutil.copyfile(path, dest / rel / name)
    return None


def silencers(project: Path) -> list[str]:
    """Comments that switch a checker off (`# type: ignore`, `# mypy: ...`, `# noqa`), as file:line: text."""
    found = []
    for path in sorted(project.rglob("*.py")):
        for number, line in enumerate(path.read_text(errors="replace").splitlines(), start=1):
            if SILENCERS.search(line):
                found.append(f"{path.relative_to(project)}:{number}: {line.strip()[:120]}")
    return found[:50]


def entry_points(site: Path) -> str:
    """The entry_points.txt pip installed (what [project.scripts] declared), if any."""
    for path in site.glob("*.dist-info/entry_points.txt"):
        return path.read_text(errors="replace")[:TAIL]
    return ""


def clean_env(out: Path) -> dict[str, str]:
    keep = ("PATH", "HOME", "LANG", "LC_ALL", "TZ", "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")
    env = {k: os.environ[k] for k in keep if k in os.environ}
    env.update(PYTHONDONTWRITEBYTECODE="1", PIP_NO_INPUT="1", PIP_DISABLE_PIP_VERSION_CHECK="1",
               TMPDIR=str(out / "tmp"), NO_COLOR="1", TERM="dumb", COLUMNS="120")
    (out / "tmp").mkdir(exist_ok=True)
    return env


def command(argv: list[str], cwd: Path, env: dict[str, str], timeout: float) -> dict:
    """Run one command; its exit code and the tails of its stdout and stderr."""
    start = time.monotonic()
    try:
        done = subprocess.run(argv, check=False, cwd=cwd, env=env, capture_output=True, timeout=timeout,
                              stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        return {"returncode": None, "output": f"timed out after {timeout:.0f} s", "stdout": "", "stderr": ""}
    except OSError as err:
        return {"returncode": None, "output": f"could not start: {err}", "stdout": "", "stderr": ""}
    stdout = done.stdout.decode("utf-8", errors="replace")
    stderr = done.stderr.decode("utf-8", errors="replace")
    return {"returncode": done.returncode, "stdout": stdout[:100_000], "stderr": stderr[-TAIL:],
            "output": (stdout + stderr)[-TAIL:], "seconds": round(time.monotonic() - start, 2)}


def read_capped(path: Path, limit: int = 2**20) -> str | None:
    if path.is_symlink() or not path.is_file():
        return None
    with open(path, encoding="utf-8", errors="replace") as handle:
        return handle.read(limit)


if __name__ == "__main__":
    sys.exit(main())
