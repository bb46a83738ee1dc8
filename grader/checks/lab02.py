"""Lab 02 — a package with a console command, a lock and two quality gates.

The notebook only writes the project (`output_dir/bcdata/`). Everything that runs the learner's code —
ruff, mypy, the offline pip install, the installed `bcdata` command — happens in one probe
(`grader/tools/package_probe.py`) in a fresh sandbox; the lock is judged here from the two text files.
"""

from __future__ import annotations

import io
import json
import math
import random
import re
from pathlib import Path

import numpy as np

from grader.checks.common import Checks, Fail, Partial, require_keys
from grader.labs import Lab
from grader.sandbox import Limits
from grader.secret import seed_for

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

PUBLIC_SEED = 20261202
PROBE_ROWS, MISSING_SHARE = (200, 320), 0.05  # the grader's CSV: a new draw of rows for every submission
PROJECT, PACKAGE, SCRIPT = "bcdata", "bcdata", "bcdata"
NEEDED = ("pandas", "typer")  # what cli.py imports directly
TEST_SIZE = 0.25
OTHER_TEST_SIZE = 0.4  # the split is also run with --test-size: the option must exist and be used
REQUIRES_PYTHON = ">=3.11"
CHECKS = Checks()


def prepare(work: Path) -> tuple[dict, dict]:
    """The notebook's CSV in the work dir; the probe's CSV (other rows, some values missing) stays here."""
    from grader.datasets import breast_cancer_frame

    frame = breast_cancer_frame()
    public = frame.sample(frac=1.0, random_state=PUBLIC_SEED).reset_index(drop=True)
    (work / "data").mkdir(parents=True, exist_ok=True)
    public.to_csv(work / "data" / "breast_cancer.csv", index=False)
    # drawn from the installation's secret (grader/secret.py) and the submission: unknown to learners, the same
    # on a regrade, another for the next submission (feedback quotes the probe CSV's figures: not worth typing in)
    draw = random.Random(seed_for(LAB.id, "probe-csv", per_submission=True))
    probe_seed = draw.randrange(2**31)
    rng = np.random.default_rng(probe_seed)
    probe = frame.sample(n=draw.randint(*PROBE_ROWS), random_state=probe_seed).reset_index(drop=True)
    for column in rng.choice(probe.columns[:-1], size=3, replace=False):
        probe.loc[rng.random(len(probe)) < MISSING_SHARE, column] = np.nan
    params = {"seed": LAB.seed, "data_path": "data/breast_cancer.csv", "output_dir": "outputs"}
    return params, {"probe_csv": probe.to_csv(index=False), "split_seed": draw.randrange(100, 10_000)}


# --- helpers --------------------------------------------------------------------------------------------


def _project(ctx, name: str = "") -> str:
    return ctx.output(f"{PROJECT}/{name}" if name else PROJECT)


def _split_seed(ctx) -> int:
    """The --seed the command is run with: drawn per submission when grading, the notebook's in a self-check."""
    return int(ctx.hidden.get("split_seed", ctx.params["seed"]))


def _probe_csv(ctx) -> str:
    """The CSV the installed command runs on: the grader's own when grading, the notebook's for a self-check."""
    return ctx.hidden.get("probe_csv") or ctx.read_text(ctx.params["data_path"])


def _probe(ctx, needs_cli: bool = False) -> dict:
    from mlops_kit.packaging import MYPY_ARGS, RUFF_ARGS

    cli = _project(ctx, f"src/{PACKAGE}/cli.py")
    if needs_cli and not ctx.exists(cli):
        raise Fail(f"{cli} was not found: the gates judge the code you wrote{ctx.why_missing()}")
    if not any(ctx.exists(_project(ctx, name)) for name in ("pyproject.toml", "setup.py")):
        raise Fail(f"{_project(ctx)} has no pyproject.toml (nor setup.py): there is nothing pip could install"
                   f"{ctx.why_missing()}")
    args = ("--project", _project(ctx), "--package", PACKAGE, "--script", SCRIPT, "--seed",
            str(_split_seed(ctx)), "--test-size", str(OTHER_TEST_SIZE), "--ruff-args", json.dumps(RUFF_ARGS),
            "--mypy-args", json.dumps(MYPY_ARGS))
    return ctx.probe("package_probe", {"csv": np.array(_probe_csv(ctx))}, args=args,
                     limits=Limits(wall_seconds=240, memory_bytes=3 * 2**30))


def _pyproject(ctx) -> dict:
    """pyproject.toml as a dict with a [project] table (Fail otherwise: package_layout says more)."""
    from grader import bounded

    try:
        meta = bounded.load_toml(ctx.read_text(_project(ctx, "pyproject.toml")), name="pyproject.toml")
    except bounded.BoundedError as err:
        raise Fail(f"{err}: see package_layout") from None
    if not isinstance(meta.get("project"), dict):
        raise Fail("pyproject.toml has no [project] table: see package_layout")
    return meta


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
    from grader.bounded import BoundedError, InvalidData, load_json

    try:
        return load_json(stdout, name=f"what `{what}` printed")
    except InvalidData:  # not JSON at all: show what it printed
        shown = stdout.strip()
        raise Fail(f"`{what}` must print one JSON object and nothing else on stdout; it printed:\n"
                   f"{shown[:300]}{' …' if len(shown) > 300 else ''}") from None
    except BoundedError as err:  # too big or too deep: said as such
        raise Fail(str(err)) from None


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
    from grader.bounded import BoundedError, load_toml, quote

    text = ctx.read_text(_project(ctx, "pyproject.toml"))
    try:
        meta = load_toml(text, name=_project(ctx, "pyproject.toml"))
    except BoundedError as err:
        raise Fail(str(err)) from None
    build = meta.get("build-system")
    if not isinstance(build, dict) or not build.get("build-backend") or not build.get("requires"):
        raise Fail("pyproject.toml needs [build-system] with `requires` and `build-backend` "
                   '(requires = ["setuptools>=64"], build-backend = "setuptools.build_meta"); found '
                   f"{quote(build)}")
    project = require_keys(meta.get("project"), ("name", "version"), "pyproject.toml's [project]")
    if str(project["name"]).lower().replace("_", "-") != PROJECT:
        raise Fail(f"[project] name is {quote(project['name'])}; expected {PROJECT!r}")
    scripts = project.get("scripts")
    entry = scripts.get(SCRIPT) if isinstance(scripts, dict) else None
    if not isinstance(entry, str) or not entry.startswith(f"{PACKAGE}.cli:"):
        raise Fail(f'[project.scripts] must declare {SCRIPT} = "{PACKAGE}.cli:app"; found scripts = {quote(scripts)}')
    for name in ("__init__.py", "cli.py"):
        if not ctx.exists(_project(ctx, f"src/{PACKAGE}/{name}")):
            raise Fail(f"{_project(ctx, f'src/{PACKAGE}/{name}')} was not found: the package lives in "
                       f"src/{PACKAGE}/ (the src layout){ctx.why_missing()}")


@CHECKS.add(points=1, section="2.1 A package is a folder with a contract",
            hint='version = "0.1.0" (a quoted string), requires-python = ">=3.11", bcdata = "bcdata.cli:app", and '
                 '[tool.setuptools.packages.find] where = ["src"].')
def project_metadata(ctx):
    """pyproject.toml holds what exercise 1 asks: a version string, requires-python, the script's target, the src layout."""
    from packaging.specifiers import InvalidSpecifier, SpecifierSet
    from packaging.version import InvalidVersion, Version

    meta = _pyproject(ctx)
    project = meta["project"]
    problems = []
    version = project.get("version")
    if not isinstance(version, str):
        problems.append(f"version is {version!r}, a TOML {type(version).__name__}: a version is a string "
                        '(version = "0.1.0"), or 0.10 and 0.1 would be the same number')
    else:
        try:
            Version(version)
        except InvalidVersion:
            problems.append(f"version {version!r} is not a PEP 440 version (e.g. \"0.1.0\")")
    python = project.get("requires-python")
    try:
        allowed = SpecifierSet(python) if isinstance(python, str) else None
    except InvalidSpecifier:
        allowed = None
    if allowed is None or not all(allowed.contains(v) for v in ("3.11", "3.12", "3.13")) or allowed.contains("3.10"):
        problems.append(f"requires-python is {python!r}; expected {REQUIRES_PYTHON!r} (the course's Python and newer)")
    entry = project.get("scripts", {}).get(SCRIPT) if isinstance(project.get("scripts"), dict) else None
    if isinstance(entry, str) and entry.replace(" ", "") != f"{PACKAGE}.cli:app":
        problems.append(f'the console script points to {entry!r}; it should call the Typer app: "{PACKAGE}.cli:app"')
    find = meta.get("tool", {}).get("setuptools", {}).get("packages", {})
    where = find.get("find", {}).get("where") if isinstance(find, dict) and isinstance(find.get("find"), dict) else None
    if where != ["src"]:
        problems.append(f'[tool.setuptools.packages.find] where should be ["src"] (the src layout); found {where!r}')
    if problems:
        share = max(0.0, 1 - len(problems) / 4)
        message = "pyproject.toml: " + "; ".join(problems)
        if share == 0:
            raise Fail(message)
        return Partial(share, message)
    return None


@CHECKS.add(points=1, section="2.5 Two quality gates: ruff and mypy",
            hint="Run check_quality(project, 'bcdata', fix=True) and fix what remains; noqa comments are ignored.")
def lint_clean(ctx):
    """ruff finds nothing in the project with the course's settings (RUFF_ARGS; project config ignored)."""
    result = _probe(ctx, needs_cli=True)
    ruff = _step(result, "ruff")
    if ruff.get("returncode") != 0:
        raise Fail(f"ruff check (course settings) reported problems, expected none{_relaxed(result, 'ruff')}:\n"
                   f"{_tail(ruff.get('output'))}")


@CHECKS.add(points=1, section="2.5 Two quality gates: ruff and mypy",
            hint="Annotate every function (parameters and return) and make the types agree; do not silence mypy.")
def types_clean(ctx):
    """mypy finds no error in src/bcdata with the course's settings (MYPY_ARGS), without silencing comments."""
    result = _probe(ctx, needs_cli=True)
    mypy = _step(result, "mypy")
    silenced = [s for s in result.get("silenced", []) if re.search(r"#\s*(type:\s*ignore|mypy:)", s, re.I)]
    switched = [*silenced, *result.get("stubs", [])]
    taken = (" once the grader took out what switches it off (" + "; ".join(switched[:3]) + ")") if switched else ""
    if mypy.get("returncode") != 0:
        raise Fail(f"mypy (course settings) reported errors in src/{PACKAGE}{taken}, expected none"
                   f"{_relaxed(result, 'mypy')}:\n{_tail(mypy.get('output'))}")
    if switched:
        raise Fail("your code switches mypy off where the lab asks for it to pass: " + "; ".join(switched[:4])
                   + ": remove these (the grader checks the code without them) and fix the types instead")


def _relaxed(result: dict, tool: str) -> str:
    """A note naming the project's own settings for `tool`, which the grader does not use."""
    mine = [c for c in result.get("configs", []) if tool in c.lower() or (tool == "ruff" and "flake8" in c)]
    return f" (your project's {tool} settings are not used, the course's rules apply: {'; '.join(mine[:2])})" \
        if mine else ""


@CHECKS.add(points=1, section="2.3 Build, install and run it — offline",
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
                 "target, index=False, rows in the split's order.")
def split_command(ctx):
    """`bcdata split CSV --seed N --out DIR` writes the seeded, stratified train/test split and prints the counts."""
    seed = _split_seed(ctx)
    return _judge_split(ctx, "split", f"{SCRIPT} split CSV --seed {seed} --out DIR", TEST_SIZE)


@CHECKS.add(points=1, depends=("installs_and_helps",), section="2.2 A command line with Typer",
            hint="Declare test_size: Annotated[float, typer.Option(help=...)] = 0.25 and pass it on to "
                 "stratified_split(X, y, test_size=test_size, seed=seed).")
def split_test_size_option(ctx):
    """`bcdata split CSV --seed N --test-size 0.4 --out DIR` splits off that share of the rows as the test part."""
    seed = _split_seed(ctx)
    return _judge_split(ctx, "split_sized", f"{SCRIPT} split CSV --seed {seed} --test-size {OTHER_TEST_SIZE} "
                        "--out DIR", OTHER_TEST_SIZE)


def _judge_split(ctx, step_name: str, what: str, test_size: float):
    from mlops_kit.data import stratified_split

    seed = _split_seed(ctx)
    step = _step(_probe(ctx), step_name)
    counts = require_keys(_json_output(_run_ok(step, what), what), ("train", "test"), f"the JSON printed by `{what}`")
    frame = _frame(_probe_csv(ctx))
    X_train, X_test, y_train, y_test = stratified_split(frame.drop(columns="target"), frame["target"],
                                                        test_size=test_size, seed=seed)
    if (counts["train"], counts["test"]) != (len(X_train), len(X_test)):
        raise Fail(f"`{what}` printed train={counts['train']!r}, test={counts['test']!r}; the grader's CSV "
                   f"({len(frame)} rows, test_size {test_size}) gives train={len(X_train)}, test={len(X_test)}")
    files = step.get("files") if isinstance(step.get("files"), dict) else {}
    reordered = []
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
        ordered = written[list(expected.columns)]
        if not _same_rows(ordered, expected):
            raise Fail(f"DIR/{name} holds {len(written)} rows, but not the rows of stratified_split(X, y, "
                       f"test_size={test_size}, seed={seed}) on the grader's CSV: use the options (--seed, "
                       "--test-size), not fixed values")
        if not _same_rows(ordered, expected, ordered=True):
            reordered.append(name)
    if reordered:
        return Partial(0.5, f"{' and '.join(reordered)} hold the right rows, but not in the split's order (they were "
                       "sorted or shuffled): write X_train/X_test as stratified_split returns them")
    return None


def _same_rows(a, b, ordered: bool = False) -> bool:
    """The same multiset of rows (values within 1e-9, missing where missing), in any order unless `ordered`."""
    if a.shape != b.shape:
        return False
    left = np.asarray(a, dtype=float)
    right = np.asarray(b, dtype=float)
    if not ordered:
        left = left[np.lexsort(np.nan_to_num(left, nan=-1e300).T[::-1])]
        right = right[np.lexsort(np.nan_to_num(right, nan=-1e300).T[::-1])]
    return bool(np.allclose(left, right, rtol=1e-9, atol=1e-12, equal_nan=True))


@CHECKS.add(points=1, section="2.4 What you need, and what you run",
            hint="requirements.in lists exactly pyproject.toml's dependencies, with the same bounds, and each upper "
                 "bound (<, <=, ~=, ==) says why on its line: pandas<3  # not tested on pandas 3 yet.")
def requirements_in_matches_project(ctx):
    """requirements.in names pyproject.toml's dependencies with the same bounds, and every upper bound says why."""
    from packaging.requirements import InvalidRequirement, Requirement
    from packaging.utils import canonicalize_name

    from mlops_kit.packaging import parse_requirements

    in_text = ctx.read_text(_project(ctx, "requirements.in"))
    try:
        direct = {r.name: Requirement(r.text).specifier for r in parse_requirements(in_text)}
    except (ValueError, InvalidRequirement) as err:
        raise Fail(f"requirements.in, {err}") from None
    declared = _pyproject(ctx)["project"].get("dependencies", [])
    try:
        if not isinstance(declared, list):
            raise InvalidRequirement(f"dependencies is {type(declared).__name__}, not a list")
        project = {canonicalize_name(r.name): r.specifier for r in map(Requirement, map(str, declared))}
    except InvalidRequirement as err:
        raise Fail(f"pyproject.toml's dependencies do not parse: {err}") from None
    problems = []
    if sorted(project) != sorted(direct):
        only_project, only_in = sorted(set(project) - set(direct)), sorted(set(direct) - set(project))
        problems.append("pyproject.toml and requirements.in should name the same direct dependencies"
                        + (f"; only pyproject.toml has {only_project}" if only_project else "")
                        + (f"; only requirements.in has {only_in}" if only_in else ""))
    for name in sorted(set(project) & set(direct)):
        if project[name] != direct[name]:
            problems.append(f"{name}: pyproject.toml says {str(project[name]) or 'any version'!r}, requirements.in "
                            f"says {str(direct[name]) or 'any version'!r}; the bounds should be the same")
    problems += _unexplained_upper_bounds(in_text)
    if problems:
        raise Fail(f"{len(problems)} problem(s): " + "; ".join(problems[:5]))


_FILLER = re.compile(r"\b(todo|fixme|tbd|xxx|reason|why|upper bound|because)\b[\s.!?:]*$", re.IGNORECASE)


def _unexplained_upper_bounds(in_text: str) -> list[str]:
    """Lines of requirements.in with an upper bound (<, <=, ~=, ==) whose comment does not say why."""
    from packaging.requirements import InvalidRequirement, Requirement

    problems, before = [], ""
    for number, raw in enumerate(in_text.splitlines(), start=1):
        line = raw.strip()
        if line.startswith("#"):
            before = line.lstrip("#").strip()
            continue
        code, _, comment = line.partition("#")
        comment, above, before = comment.strip(), before, ""
        if not code.strip() or code.strip().startswith("-"):
            continue
        try:
            requirement = Requirement(code.strip())
        except InvalidRequirement:
            continue  # parse_requirements has reported it
        upper = [str(s) for s in requirement.specifier if s.operator in ("<", "<=", "~=", "==", "===")]
        if not upper:
            continue
        # its own line's comment, or a comment line right above that names it (not a header for the whole file)
        reason = comment or (above if requirement.name.lower() in above.lower() else "")
        words = re.findall(r"[A-Za-z]{2,}", reason)
        if len(words) < 3 or _FILLER.fullmatch(reason) or re.search(r"\b(todo|fixme|tbd)\b", reason, re.I):
            shown = f" (its comment: {reason!r})" if reason else ""
            problems.append(f"line {number}: {line.split('#')[0].strip()!r} has an upper bound ({', '.join(upper)}) "
                            f"without its reason{shown}; say why on its line, e.g. # not tested on pandas 3 yet")
    return problems


@CHECKS.add(points=2, section="2.4 What you need, and what you run",
            hint="Pin every package with ==, including each direct requirement, within the .in's bounds, one line "
                 "per package sorted by name; lock_agrees(in_text, txt_text) must return [].")
def lock_agrees_with_in(ctx):
    """requirements.in names the package's direct dependencies and requirements.txt pins them (lock_agrees)."""
    from mlops_kit.packaging import lock_agrees, parse_requirements

    in_text = ctx.read_text(_project(ctx, "requirements.in"))
    txt_text = ctx.read_text(_project(ctx, "requirements.txt"))
    try:
        direct = {r.name for r in parse_requirements(in_text)}
        locked = [r.name for r in parse_requirements(txt_text)]
    except ValueError as err:
        raise Fail(f"requirements.in or .txt, {err}") from None
    missing = [n for n in NEEDED if n not in direct]
    if missing:
        raise Fail(f"requirements.in should name the packages cli.py imports ({', '.join(NEEDED)}); it lacks "
                   f"{', '.join(missing)}")
    problems = lock_agrees(in_text, txt_text)
    if problems:
        raise Fail(f"requirements.txt does not agree with requirements.in ({len(problems)} problem(s)):\n- "
                   + "\n- ".join(problems[:5]))
    twice = sorted({n for n in locked if locked.count(n) > 1})
    if twice or locked != sorted(locked):
        where = f"{', '.join(twice[:4])} appear(s) more than once" if twice else (
            f"the lines are not sorted by name (first out of place: {_first_unsorted(locked)})")
        return Partial(0.5, f"requirements.txt agrees with requirements.in, but a lock has one line per package, "
                       f"sorted by name: {where}")
    return None


def _first_unsorted(names: list[str]) -> str:
    for a, b in zip(names, names[1:]):
        if b < a:
            return f"{b} after {a}"
    return "?"


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
