"""Probe a learner's Python package in a fresh sandboxed process: lint, type-check, install, run (the harness
writes result.json).

Runs inside the sandbox: it must not import the grader. The work dir is read-only, so the project is first
copied into a private scratch directory. Then, each step recorded whatever happens to the others:
1. `python -m ruff check --isolated <ruff args> .` (the learner's own ruff/mypy settings are ignored:
   everyone is judged by the same rules, passed in by the check);
2. `python -m mypy --config-file <empty> <mypy args> src/<package>`, on a copy of the package from which
   what switches mypy off is taken out (`# type: ignore` and `# mypy:` comments blanked, `.pyi` stubs that
   would be checked instead of the code removed): mypy judges the code itself. What was taken out, and
   project settings that try to relax either tool (`[tool.ruff]`, `[tool.mypy]`, ruff.toml, mypy.ini,
   setup.cfg), are reported (`silenced`, `stubs`, `configs`) for the grader to name;
3. `python -m pip install --no-deps --no-build-isolation --no-index --target SCRATCH/site PROJECT`: an offline
   build with the build backend already installed in the course environment (setuptools);
4. the installed console script, with only SCRATCH/site added to the path: `--help`, `summary CSV`,
   `split CSV --seed N --out DIR` and `split CSV --seed N --test-size F --out DIR` on the grader's CSV (an
   input, given as a 0-d string array).
ruff and mypy only read the code. pip (which runs the project's build backend) and the installed command
are learner code: they run through the harness's `run_learner`, in the inner sandbox (another uid, its own
PID namespace, this probe's inputs and output hidden), with only the scratch directory writable.
Results are raw (exit codes, output tails, the split's CSV text): the grader judges them itself.
"""

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # the harness, beside this file (-I drops it)
from harness import probe_main, run_learner  # noqa: E402

MAX_FILES, MAX_BYTES = 500, 5 * 2**20  # a package is small; refuse to copy anything bigger
TAIL = 4000  # characters of each command's output kept
SILENCERS = re.compile(r"#\s*(type:\s*ignore|mypy:|noqa|ruff:\s*noqa)", re.IGNORECASE)
MYPY_SILENCERS = re.compile(r"#\s*(type:\s*ignore|mypy:)", re.IGNORECASE)
SKIP_DIRS = {"__pycache__", ".mypy_cache", ".ruff_cache", "build", "dist", ".git", ".venv"}


def add_arguments(parser) -> None:
    parser.add_argument("--project", required=True)  # work-relative directory of the project
    parser.add_argument("--package", required=True)  # import name, under src/
    parser.add_argument("--script", required=True)  # console script name from [project.scripts]
    parser.add_argument("--ruff-args", default="[]")  # JSON list
    parser.add_argument("--mypy-args", default="[]")  # JSON list
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--test-size", default="")  # a second split with this --test-size, when given


def run(args, inputs) -> dict:
    source = Path(args.work) / args.project
    if os.path.islink(source) or not source.is_dir():
        return {"error": f"{args.project} was not found (or is not a directory)"}
    out = Path(args.out)
    scratch = Path(tempfile.mkdtemp(prefix="package-"))
    project = scratch / "project"
    problem = copy_project(source, project)
    if problem:
        return {"error": problem}
    result: dict = {"silenced": silencers(project), "stubs": stubs(project), "configs": configs(project)}
    env = clean_env(scratch)
    # the two gates (trusted tools) run beside the learner's install and commands (mypy alone is seconds of CPU;
    # on two CPUs it costs no wall time there), on a copy made before any learner code runs, outside the scratch
    # the learner's processes may write: nothing they do can change what the gates read
    gate_root = Path(tempfile.mkdtemp(prefix="gates-"))
    shutil.copytree(project, gate_root / "project", symlinks=True)
    with ThreadPoolExecutor(max_workers=1) as pool:
        gates = pool.submit(run_gates, args, gate_root / "project", gate_root, out, clean_env(gate_root))
        learner_side(args, inputs, project, scratch, out, env, result)
        result.update(gates.result())
    return result


def run_gates(args, project: Path, scratch: Path, out: Path, env: dict[str, str]) -> dict:
    """ruff on the project and mypy on its package (what silences mypy taken out first), with fixed settings;
    `scratch` is the gates' own folder."""
    gates = {"ruff": command([sys.executable, "-m", "ruff", "check", "--isolated", "--no-fix",
                              "--cache-dir", str(out / ".ruff_cache"), *json.loads(args.ruff_args), "."],
                             cwd=project, env=env, timeout=60)}
    empty = out / "mypy.ini"
    empty.write_text("[mypy]\n")
    target = project / "src" / args.package
    if target.is_dir():
        typed = scratch / "typecheck"  # the package without what switches mypy off
        shutil.copytree(target, typed / "src" / args.package)
        unsilence(typed / "src" / args.package)
        gates["mypy"] = command([sys.executable, "-m", "mypy", "--config-file", str(empty), "--cache-dir",
                                 str(out / ".mypy_cache"), *json.loads(args.mypy_args), f"src/{args.package}"],
                                cwd=typed, env=env, timeout=120)
    else:
        gates["mypy"] = {"returncode": None, "output": f"src/{args.package} is not a directory"}
    return gates


def learner_side(args, inputs, project: Path, scratch: Path, out: Path, env: dict[str, str], result: dict) -> None:
    """Install the project offline and run its console script (--help, summary, split) in the inner sandbox."""
    hidden = [str(out.resolve()), str(Path(args.input).resolve())]
    site = scratch / "site"
    result["install"] = learner([sys.executable, "-m", "pip", "install", "--no-deps", "--no-build-isolation",
                                 "--no-index", "--no-cache-dir", "--disable-pip-version-check", "--no-input",
                                 "--target", str(site), str(project)], scratch, env, 120, hidden)
    script = site / "bin" / args.script
    result["script_installed"] = script.is_file() and not script.is_symlink()
    result["entry_points"] = entry_points(site)
    if not result["script_installed"]:
        return
    run_env = dict(env, PYTHONPATH=str(site))
    runs = scratch / "run"
    runs.mkdir()
    csv = runs / "grader.csv"
    csv.write_text(str(inputs["csv"]))
    result["help"] = learner([str(script), "--help"], runs, run_env, 60, hidden)
    result["summary"] = learner([str(script), "summary", str(csv)], runs, run_env, 60, hidden)
    split_dir = runs / "split"
    result["split"] = learner([str(script), "split", str(csv), "--seed", str(args.seed), "--out", str(split_dir)],
                              runs, run_env, 60, hidden)
    result["split"]["files"] = {name: read_capped(split_dir / name) for name in ("train.csv", "test.csv")}
    if args.test_size:
        sized = runs / "split_sized"
        result["split_sized"] = learner([str(script), "split", str(csv), "--seed", str(args.seed), "--test-size",
                                         args.test_size, "--out", str(sized)], runs, run_env, 60, hidden)
        result["split_sized"]["files"] = {name: read_capped(sized / name) for name in ("train.csv", "test.csv")}


def learner(argv: list[str], cwd: Path, env: dict[str, str], timeout: float, hidden: list[str]) -> dict:
    """Run the learner's command in the inner sandbox, where only the scratch directory (the parent of the
    project, the site and the runs) is writable; stdout goes through a file (it may be longer than a tail)."""
    scratch = Path(env["HOME"])
    stdout = Path(tempfile.mkstemp(dir=scratch, prefix=".stdout-")[1])
    wrapped = ["/bin/sh", "-c", 'out="$1"; shift; exec "$@" >"$out"', "sh", str(stdout), *argv]
    start = time.monotonic()
    done = run_learner(wrapped, cwd=str(cwd), env=env, timeout=timeout, writable=[str(scratch)], hidden=hidden)
    text = read_capped(stdout, 100_000) or ""
    stdout.unlink(missing_ok=True)
    if done["timed_out"]:
        return {"returncode": None, "output": f"timed out after {timeout:.0f} s", "stdout": text[:100_000],
                "stderr": done["stderr"][-TAIL:]}
    return {"returncode": done["exit"], "stdout": text, "stderr": done["stderr"][-TAIL:],
            "output": (text + done["stderr"])[-TAIL:], "seconds": round(time.monotonic() - start, 2),
            "nested": done["nested"]}


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


def stubs(project: Path) -> list[str]:
    """Type stubs in the project's src/ (mypy checks a `.pyi` instead of the `.py` beside it), `*-stubs`
    packages, and a `py.typed` that declares the package a partial stub package."""
    found = []
    src = project / "src"
    for path in sorted(src.rglob("*")) if src.is_dir() else []:
        rel = path.relative_to(project)
        if path.suffix == ".pyi":
            twin = path.with_suffix(".py")
            found.append(f"{rel}: a stub, which mypy checks instead of {twin.name}" if twin.exists()
                         else f"{rel}: a stub file (mypy reads it, not code)")
        elif path.is_dir() and path.name.endswith("-stubs"):
            found.append(f"{rel}: a stub package")
        elif path.name == "py.typed" and "partial" in path.read_text(errors="replace")[:200]:
            found.append(f"{rel}: declares a partial stub package")
    return found[:20]


def configs(project: Path) -> list[str]:
    """Project settings that try to relax ruff or mypy (the grader runs both with its own settings)."""
    import tomllib

    found = []
    pyproject = project / "pyproject.toml"
    if pyproject.is_file():
        try:
            tool = tomllib.loads(pyproject.read_text(errors="replace")).get("tool", {})
        except (tomllib.TOMLDecodeError, RecursionError):
            tool = {}
        for name in ("ruff", "mypy"):
            section = tool.get(name) if isinstance(tool, dict) else None
            if section:
                found.append(f"pyproject.toml [tool.{name}]: {_short(section)}")
    for name in ("ruff.toml", ".ruff.toml", "mypy.ini", ".mypy.ini"):
        path = project / name
        if path.is_file():
            found.append(f"{name}: {path.read_text(errors='replace')[:150].strip()!r}")
    for name in ("setup.cfg", "tox.ini"):
        path = project / name
        text = path.read_text(errors="replace") if path.is_file() else ""
        sections = re.findall(r"^\[(mypy[^\]]*|flake8|ruff[^\]]*)\]", text, re.MULTILINE)
        if sections:
            found.append(f"{name}: [{'], ['.join(sections[:3])}]")
    return found[:10]


def _short(value) -> str:
    text = json.dumps(value, default=str, sort_keys=True)
    return text if len(text) <= 150 else text[:150] + " …"


def unsilence(package: Path) -> None:
    """Blank every `# type: ignore` / `# mypy:` comment (tokens, never strings) and remove `.pyi` stubs."""
    import io
    import tokenize

    for path in list(package.rglob("*")):
        if path.suffix == ".pyi" or (path.is_file() and path.name == "py.typed"):
            path.unlink()
        elif path.suffix == ".py" and path.is_file():
            source = path.read_text(errors="replace")
            lines = source.splitlines(keepends=True)
            try:
                comments = [t for t in tokenize.generate_tokens(io.StringIO(source).readline)
                            if t.type == tokenize.COMMENT and MYPY_SILENCERS.search(t.string)]
            except (tokenize.TokenError, SyntaxError):
                continue  # mypy reports the syntax error itself
            for token in reversed(comments):
                row, col = token.start
                line = lines[row - 1]
                lines[row - 1] = line[:col] + "#" + line[col + len(token.string):]
            if comments:
                path.write_text("".join(lines))


def entry_points(site: Path) -> str:
    """The entry_points.txt pip installed (what [project.scripts] declared), if any."""
    for path in site.glob("*.dist-info/entry_points.txt"):
        return read_capped(path, TAIL) or ""
    return ""


def clean_env(out: Path) -> dict[str, str]:
    keep = ("PATH", "LANG", "LC_ALL", "TZ", "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")
    env = {k: os.environ[k] for k in keep if k in os.environ}
    env.update(PYTHONDONTWRITEBYTECODE="1", PIP_NO_INPUT="1", PIP_DISABLE_PIP_VERSION_CHECK="1",
               TMPDIR=str(out / "tmp"), HOME=str(out), NO_COLOR="1", TERM="dumb", COLUMNS="120")
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
    probe_main(run, add_arguments)
