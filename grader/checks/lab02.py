"""Lab 02 — a package with a console command, a lock and two quality gates.

The notebook only writes the project (`output_dir/bcdata/`). Everything that runs the learner's code —
ruff, mypy, the offline pip install, the installed `bcdata` command — happens in one probe
(`grader/tools/package_probe.py`) in a fresh sandbox; the lock is judged here from the two text files.
"""

from __future__ import annotations

import io
import json
import math
import tomllib
from pathlib import Path

import numpy as np

from grader.checks.common import Checks, Fail, Partial, require_keys
from grader.labs import Lab
from grader.sandbox import Limits

LAB = Lab(
    id="02_packaging",
    title="Package week 1 as a command, with a lock and two quality gates",
    week=2,
    minutes=60,
    objectives=(
        "lay out a Python package with pyproject.toml and a console entry point",
        "write a Typer command line over tested library code, whose answers a program can read",
        "pin the dependencies in a lock (requirements.txt) that agrees with its requirements.in",
        "keep the code clean under ruff and mypy with fixed settings",
    ),
    lesson="curriculum/02_packaging.ipynb",
    seed=23,
    timeout=240,
    cell_timeout=180,
)

PUBLIC_SEED, PROBE_SEED = 20261202, 20261203
PROBE_ROWS, MISSING_SHARE = 240, 0.05
PROJECT, PACKAGE, SCRIPT = "bcdata", "bcdata", "bcdata"
NEEDED = ("pandas", "typer")  # what cli.py imports directly
TEST_SIZE = 0.25
CHECKS = Checks()


def prepare(work: Path) -> tuple[dict, dict]:
    """The notebook's CSV in the work dir; the probe's CSV (other rows, some values missing) stays here."""
    from mlops_kit.data import breast_cancer_frame

    frame = breast_cancer_frame()
    public = frame.sample(frac=1.0, random_state=PUBLIC_SEED).reset_index(drop=True)
    (work / "data").mkdir(parents=True, exist_ok=True)
    public.to_csv(work / "data" / "breast_cancer.csv", index=False)
    rng = np.random.default_rng(PROBE_SEED)
    probe = frame.sample(n=PROBE_ROWS, random_state=PROBE_SEED).reset_index(drop=True)
    for column in rng.choice(probe.columns[:-1], size=3, replace=False):
        probe.loc[rng.random(len(probe)) < MISSING_SHARE, column] = np.nan
    params = {"seed": LAB.seed, "data_path": "data/breast_cancer.csv", "output_dir": "outputs"}
    return params, {"probe_csv": probe.to_csv(index=False)}


# --- helpers --------------------------------------------------------------------------------------------


def _project(ctx, name: str = "") -> str:
    return ctx.output(f"{PROJECT}/{name}" if name else PROJECT)


def _probe_csv(ctx) -> str:
    """The CSV the installed command runs on: the grader's own when grading, the notebook's for a self-check."""
    return ctx.hidden.get("probe_csv") or ctx.read_text(ctx.params["data_path"])


def _probe(ctx) -> dict:
    from mlops_kit.packaging import MYPY_ARGS, RUFF_ARGS

    args = ("--project", _project(ctx), "--package", PACKAGE, "--script", SCRIPT, "--seed",
            str(int(ctx.params["seed"])), "--ruff-args", json.dumps(RUFF_ARGS), "--mypy-args", json.dumps(MYPY_ARGS))
    result = ctx.probe("package_probe", {"csv": np.array(_probe_csv(ctx))}, args=args,
                       limits=Limits(wall_seconds=240, memory_bytes=3 * 2**30))
    if "error" in result:
        raise Fail(f"{result['error']}{ctx.why_missing() if 'not found' in result['error'] else ''}")
    return result


def _step(result: dict, name: str) -> dict:
    step = result.get(name)
    return step if isinstance(step, dict) else {"returncode": None, "output": "not run"}


def _tail(text: object, limit: int = 1200) -> str:
    text = str(text or "").strip()
    return text if len(text) <= limit else "…" + text[-limit:]


def _run_ok(step: dict, what: str) -> str:
    """The stdout of a command that must have exited 0."""
    if step.get("returncode") != 0:
        raise Fail(f"`{what}` exited with {step.get('returncode')} (expected 0); its output ends with:\n"
                   f"{_tail(step.get('stderr') or step.get('output'))}")
    return str(step.get("stdout", ""))


def _json_output(stdout: str, what: str) -> object:
    try:
        return json.loads(stdout)
    except json.JSONDecodeError:
        shown = stdout.strip()
        raise Fail(f"`{what}` must print one JSON object and nothing else on stdout; it printed:\n"
                   f"{shown[:300]}{' …' if len(shown) > 300 else ''}") from None


def _frame(csv_text: str):
    import pandas as pd

    return pd.read_csv(io.StringIO(csv_text))


def _missing(value: object) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def _same(a: object, b: object) -> bool:
    """Two summary values agree: equal, both missing, or floats within 1e-9 (relative)."""
    if _missing(a) or _missing(b):
        return _missing(a) and _missing(b)
    if isinstance(a, (int, float)) and isinstance(b, (int, float)) and not isinstance(a, bool):
        return math.isclose(float(a), float(b), rel_tol=1e-9, abs_tol=1e-12)
    return a == b


# --- checks ---------------------------------------------------------------------------------------------


@CHECKS.add(points=1, hint="Write pyproject.toml with [build-system], [project] (name bcdata) and "
            '[project.scripts] bcdata = "bcdata.cli:app"; keep src/bcdata/cli.py.',
            section="2.1 A package is a folder with a contract")
def package_layout(ctx):
    """bcdata/pyproject.toml declares a build backend, the project and the console script; src/bcdata holds cli.py."""
    text = ctx.read_text(_project(ctx, "pyproject.toml"))
    try:
        meta = tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise Fail(f"{_project(ctx, 'pyproject.toml')} is not valid TOML: {err}") from None
    build = meta.get("build-system")
    if not isinstance(build, dict) or not build.get("build-backend") or not build.get("requires"):
        raise Fail("pyproject.toml needs [build-system] with `requires` and `build-backend` "
                   '(requires = ["setuptools>=64"], build-backend = "setuptools.build_meta"); found '
                   f"{build!r}")
    project = require_keys(meta.get("project"), ("name", "version"), "pyproject.toml's [project]")
    if str(project["name"]).lower().replace("_", "-") != PROJECT:
        raise Fail(f"[project] name is {project['name']!r}; expected {PROJECT!r}")
    scripts = project.get("scripts")
    entry = scripts.get(SCRIPT) if isinstance(scripts, dict) else None
    if not isinstance(entry, str) or not entry.startswith(f"{PACKAGE}.cli:"):
        raise Fail(f'[project.scripts] must declare {SCRIPT} = "{PACKAGE}.cli:app"; found scripts = {scripts!r}')
    for name in ("__init__.py", "cli.py"):
        if not ctx.exists(_project(ctx, f"src/{PACKAGE}/{name}")):
            raise Fail(f"{_project(ctx, f'src/{PACKAGE}/{name}')} was not found: the package lives in "
                       f"src/{PACKAGE}/ (the src layout){ctx.why_missing()}")


@CHECKS.add(points=1, depends=("package_layout",), section="2.5 Two quality gates: ruff and mypy",
            hint="Run check_quality(project, 'bcdata', fix=True) and fix what remains; noqa comments are ignored.")
def lint_clean(ctx):
    """ruff finds nothing in the project with the course's settings (RUFF_ARGS; project config ignored)."""
    ruff = _step(_probe(ctx), "ruff")
    if ruff.get("returncode") != 0:
        raise Fail(f"ruff check (course settings) reported problems, expected none:\n{_tail(ruff.get('output'))}")


@CHECKS.add(points=1, depends=("package_layout",), section="2.5 Two quality gates: ruff and mypy",
            hint="Annotate every function (parameters and return) and make the types agree; do not silence mypy.")
def types_clean(ctx):
    """mypy finds no error in src/bcdata with the course's settings (MYPY_ARGS), without silencing comments."""
    result = _probe(ctx)
    mypy = _step(result, "mypy")
    if mypy.get("returncode") != 0:
        raise Fail(f"mypy (course settings) reported errors in src/{PACKAGE}, expected none:\n"
                   f"{_tail(mypy.get('output'))}")
    silenced = [s for s in result.get("silenced", []) if "type" in s.lower() or "mypy" in s.lower()]
    if silenced:
        return Partial(0.5, "mypy passes, but only with comments that switch it off; fix the types instead: "
                       + "; ".join(silenced[:3]))


@CHECKS.add(points=1, depends=("package_layout",), section="2.3 Build, install and run it — offline",
            hint="install_offline(project, target) and run_script(target, 'bcdata', '--help') show the same.")
def installs_and_helps(ctx):
    """pip builds and installs the project offline, and the installed `bcdata --help` lists summary and split."""
    result = _probe(ctx)
    install = _step(result, "install")
    if install.get("returncode") != 0:
        raise Fail("pip install --no-deps --no-build-isolation --no-index failed on your project; its output "
                   f"ends with:\n{_tail(install.get('output'))}")
    if not result.get("script_installed"):
        raise Fail(f"pip installed the project but no console script named {SCRIPT}; the entry points it "
                   f"installed are: {_tail(result.get('entry_points'), 300) or 'none'} — check [project.scripts]")
    stdout = _run_ok(_step(result, "help"), f"{SCRIPT} --help")
    missing = [c for c in ("summary", "split") if c not in stdout]
    if missing:
        raise Fail(f"`{SCRIPT} --help` should list the commands summary and split; it lacks {missing}:\n"
                   f"{_tail(stdout, 600)}")


@CHECKS.add(points=2, depends=("installs_and_helps",), section="2.2 A command line with Typer",
            hint="Print json.dumps({'rows': len(frame), 'columns': json.loads(schema_summary(frame).to_json("
                 "orient='index'))}) and nothing else.")
def summary_command(ctx):
    """`bcdata summary CSV` prints the rows and the schema summary of the grader's CSV, as JSON."""
    from mlops_kit.data import schema_summary

    what = f"{SCRIPT} summary CSV"
    printed = require_keys(_json_output(_run_ok(_step(_probe(ctx), "summary"), what), what), ("rows", "columns"),
                           f"the JSON printed by `{what}`")
    frame = _frame(_probe_csv(ctx))
    expected = json.loads(schema_summary(frame).to_json(orient="index"))
    if printed["rows"] != len(frame):
        raise Fail(f"`{what}` reports rows = {printed['rows']!r}; the grader's CSV has {len(frame)} rows: count "
                   "the rows of the CSV you are given, do not hard-code them")
    columns = printed["columns"]
    if not isinstance(columns, dict) or sorted(columns) != sorted(expected):
        found = sorted(columns) if isinstance(columns, dict) else type(columns).__name__
        raise Fail(f"`{what}`: columns should have one entry per column of the CSV ({len(expected)}: "
                   f"{', '.join(list(expected)[:4])}, …); found {str(found)[:300]}")
    wrong = []
    for column, stats in expected.items():
        got = columns[column] if isinstance(columns[column], dict) else {}
        for key, value in stats.items():
            if not _same(got.get(key), value):
                wrong.append(f"{column}.{key}: expected {value!r}, found {got.get(key)!r}")
    if wrong:
        raise Fail(f"`{what}` disagrees with schema_summary of the grader's CSV in {len(wrong)} value(s), e.g. "
                   + "; ".join(wrong[:4]))


@CHECKS.add(points=2, depends=("installs_and_helps",), section="1.3 A deterministic, stratified split (week 1)",
            hint="stratified_split(X, y, test_size=test_size, seed=seed) with the --seed option; write features + "
                 "target, index=False.")
def split_command(ctx):
    """`bcdata split CSV --seed N --out DIR` writes the seeded, stratified train/test split and prints the counts."""
    from mlops_kit.data import stratified_split

    seed = int(ctx.params["seed"])
    what = f"{SCRIPT} split CSV --seed {seed} --out DIR"
    step = _step(_probe(ctx), "split")
    counts = require_keys(_json_output(_run_ok(step, what), what), ("train", "test"), f"the JSON printed by `{what}`")
    frame = _frame(_probe_csv(ctx))
    X_train, X_test, y_train, y_test = stratified_split(frame.drop(columns="target"), frame["target"],
                                                        test_size=TEST_SIZE, seed=seed)
    if (counts["train"], counts["test"]) != (len(X_train), len(X_test)):
        raise Fail(f"`{what}` printed train={counts['train']!r}, test={counts['test']!r}; the grader's CSV "
                   f"({len(frame)} rows, test_size 0.25) gives train={len(X_train)}, test={len(X_test)}")
    files = step.get("files") if isinstance(step.get("files"), dict) else {}
    for name, X, y in (("test.csv", X_test, y_test), ("train.csv", X_train, y_train)):
        if not isinstance(files.get(name), str):
            raise Fail(f"`{what}` did not write DIR/{name} (DIR is the --out option)")
        try:
            written = _frame(files[name])
        except Exception as err:
            raise Fail(f"DIR/{name} written by `{what}` is not a readable CSV: {err}") from None
        expected = X.assign(target=y)
        if sorted(written.columns) != sorted(expected.columns):
            extra = sorted(set(written.columns) - set(expected.columns))
            raise Fail(f"DIR/{name} should hold the {expected.shape[1]} columns of the CSV (features and target); "
                       f"found {written.shape[1]}" + (f", with extra {extra[:3]} (write index=False)" if extra else ""))
        if not _same_rows(written[list(expected.columns)], expected):
            raise Fail(f"DIR/{name} holds {len(written)} rows, but not the rows of stratified_split(X, y, "
                       f"test_size=0.25, seed={seed}) on the grader's CSV: use the --seed option, not a fixed seed")


def _same_rows(a, b) -> bool:
    """The same multiset of rows (values within 1e-9, missing where missing), in any order."""
    if a.shape != b.shape:
        return False
    left = np.asarray(a, dtype=float)
    right = np.asarray(b, dtype=float)
    left = left[np.lexsort(np.nan_to_num(left, nan=-1e300).T[::-1])]
    right = right[np.lexsort(np.nan_to_num(right, nan=-1e300).T[::-1])]
    return bool(np.allclose(left, right, rtol=1e-9, atol=1e-12, equal_nan=True))


@CHECKS.add(points=2, section="2.4 What you need, and what you run",
            hint="Pin every package with ==, including each direct requirement, within the .in's bounds; "
                 "lock_agrees(in_text, txt_text) must return [].")
def lock_agrees_with_in(ctx):
    """requirements.in names the package's direct dependencies and requirements.txt pins them (lock_agrees)."""
    from mlops_kit.packaging import lock_agrees, parse_requirements

    in_text = ctx.read_text(_project(ctx, "requirements.in"))
    txt_text = ctx.read_text(_project(ctx, "requirements.txt"))
    try:
        direct = {r.name for r in parse_requirements(in_text)}
    except ValueError as err:
        raise Fail(f"requirements.in, {err}") from None
    missing = [n for n in NEEDED if n not in direct]
    if missing:
        raise Fail(f"requirements.in should name the packages cli.py imports ({', '.join(NEEDED)}); it lacks "
                   f"{', '.join(missing)}")
    try:  # a broken or missing pyproject.toml is package_layout's failure; only compare when it reads
        meta = tomllib.loads(ctx.read_text(_project(ctx, "pyproject.toml")))
        declared = meta.get("project", {}).get("dependencies", [])
        declared_names = {r.name for r in parse_requirements("\n".join(map(str, declared)))}
    except (Fail, tomllib.TOMLDecodeError, ValueError, AttributeError):
        declared_names = set()
    if declared_names - direct:
        raise Fail(f"pyproject.toml depends on {sorted(declared_names - direct)}, which requirements.in does not "
                   "list: the two should name the same direct dependencies")
    problems = lock_agrees(in_text, txt_text)
    if problems:
        raise Fail(f"requirements.txt does not agree with requirements.in ({len(problems)} problem(s)):\n- "
                   + "\n- ".join(problems[:5]))


@CHECKS.add(points=2, visible=False, depends=("lock_agrees_with_in",), section="2.4 What you need, and what you run",
            hint="Pin the installed versions (importlib.metadata.version) of the direct requirements and, "
                 "recursively, of what they need.")
def lock_pins_environment(ctx):
    """requirements.txt pins the versions installed in the course environment, transitive dependencies included."""
    from importlib.metadata import PackageNotFoundError, version

    from mlops_kit.packaging import parse_requirements

    locked = parse_requirements(ctx.read_text(_project(ctx, "requirements.txt")))
    pins = {r.name: r.specifier.lstrip("=") for r in locked}
    direct = [r.text for r in parse_requirements(ctx.read_text(_project(ctx, "requirements.in")))]
    wrong, unknown = [], []
    for name, pinned in pins.items():
        try:
            installed = version(name)
        except PackageNotFoundError:
            unknown.append(name)
            continue
        if not _same_version(pinned, installed):
            wrong.append(f"{name}=={pinned} (installed: {installed})")
    if wrong:
        raise Fail(f"the lock pins {len(wrong)} version(s) other than the ones you ran with: {', '.join(wrong[:5])}")
    missing = sorted(_closure(direct) - set(pins))
    notes = []
    if missing:
        notes.append(f"it lacks {len(missing)} package(s) that the direct requirements need: {', '.join(missing[:6])}")
    if unknown:
        notes.append(f"it pins {len(unknown)} package(s) that are not installed here: {', '.join(unknown[:4])}")
    if notes:
        return Partial(0.5 if len(notes) == 1 else 0.25, "; ".join(notes))


def _same_version(a: str, b: str) -> bool:
    from packaging.version import InvalidVersion, Version

    try:
        return Version(a) == Version(b)
    except InvalidVersion:
        return a == b


def _closure(requirements: list[str]) -> set[str]:
    """Canonical names of the requirements and, recursively, of everything they need here (extras aside)."""
    from importlib.metadata import PackageNotFoundError, distribution

    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    seen: set[str] = set()
    todo = [Requirement(r).name for r in requirements]
    while todo:
        name = canonicalize_name(todo.pop())
        if name in seen:
            continue
        seen.add(name)
        try:
            needs = distribution(name).requires or []
        except PackageNotFoundError:
            continue
        for text in needs:
            req = Requirement(text)
            if req.marker is None or req.marker.evaluate({"extra": ""}):
                todo.append(req.name)
    return seen
