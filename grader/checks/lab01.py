"""Lab 01 — a pytest module for `mlops_kit.data`, graded by mutation testing.

The learner's `test_data.py` runs in a sandboxed probe (`grader/tools/mutation_tests.py`) against the
reference `mlops_kit/data.py` (twice) and against mutants: copies of it with one small planted bug each.
A test suite is as good as the bugs it catches: a mutant is killed when at least one test fails on it.
The mutants are text patches applied here, in the grader; the probe only sees opaque variant names
in a random order, so a test cannot tell the reference from a mutant except by testing behaviour.
Among the visible variants are also behaviour-preserving rewrites of the reference (`equivalent`): a test
that fails on one of them reads the code's text (a fingerprint of the file, its layout, its line numbers)
instead of testing what it does, and the mutation checks fail, naming it.
"""

from __future__ import annotations

import ast
import random
import re
import threading
from pathlib import Path

import numpy as np

from grader.checks.common import Checks, Fail, Partial
from grader.labs import Lab
from grader.sandbox import Limits

LAB = Lab(
    id="01_tested_code",
    title="Tests that catch bugs: a pytest suite for mlops_kit.data",
    week=1,
    minutes=60,
    objectives=(
        "write pytest tests with fixtures (tmp_path) and parametrize for small data functions",
        "pin down a function's contract: shapes, columns, errors, determinism, stratification",
        "judge a test suite by the planted bugs (mutants) it catches, not by how many tests it has",
    ),
    lesson="curriculum/01_tested_code.ipynb",
    seed=11,
    timeout=240,
    cell_timeout=120,
)

TESTS = "test_data.py"
MIN_TESTS = 5
RUN_TIMEOUT = 20  # seconds of wall clock for one pytest run (one variant)
REFERENCE_CPU_SECONDS = 6  # the most CPU one run on the reference may use: the suite runs once per variant
RUNS_BUDGET = 150  # seconds of wall clock for all runs of one submission
REFERENCE_RUNS = 2  # the reference runs twice, at random places among the mutants
# Behaviour-preserving rewrites of the reference, run among the visible mutants: a test that fails on one of
# them tests the code's text (a fingerprint of its source, its layout, its line numbers), not its behaviour.
# One rewrite that does all of it costs one extra run of the suite (two separate ones cost twice that).
EQUIVALENTS = ("reformatted, its functions in reverse order, their locals renamed, each result bound to a name "
               "before it is returned, a private helper and comments added",)
CHECKS = Checks()
EQUIVALENT = "equivalent:"

# One planted bug per mutant: (what the bug is, [(text in mlops_kit/data.py, replacement), ...]).
# Every `old` must occur exactly once in the reference source (prepare() refuses otherwise).
MUTANTS = (
    ("stratified_split ignores its seed", [("random_state=seed)", "random_state=0)")]),
    ("stratified_split's test split is one row too large",
     [("test_size=test_size, stratify=y", "test_size=int(test_size * len(y)) + 2, stratify=y")]),
    ("stratified_split does not stratify", [("stratify=y, random_state", "stratify=None, random_state")]),
    ("load_csv leaves the target among the features",
     [("return frame.drop(columns=[target]), frame[target]", "return frame, frame[target]")]),
    ("load_csv returns empty labels instead of raising on a missing target column",
     [('raise KeyError(f"{path}: no column named {target!r}; columns are {list(frame.columns)[:5]}...")',
       'return frame, pd.Series(index=frame.index, dtype="float64", name=target)')]),
    ("schema_summary counts present values as missing", [("frame.isna().sum()", "frame.notna().sum()")]),
    ("write_breast_cancer_csv writes the index as a column", [("to_csv(path, index=False)", "to_csv(path, index=True)")]),
    ("write_breast_cancer_csv ignores rows", [("frame = frame.iloc[list(rows)]", "frame = frame.iloc[:]")]),
    ("breast_cancer_frame keeps spaces in column names", [('.replace(" ", "_")', "")]),
    ("stratified_split's labels lose their alignment with the features (a fresh index)",
     [("return train_test_split(", "parts = train_test_split("),
      ("random_state=seed)\n", "random_state=seed)\n    return parts[0], parts[1], parts[2].reset_index(drop=True), "
       "parts[3].reset_index(drop=True)\n")]),
)
HIDDEN_MUTANTS = (
    ("stratified_split is not reproducible", [("random_state=seed)", "random_state=None)")]),
    ("stratified_split swaps y_train and y_test",
     [("return train_test_split(", "parts = train_test_split("),
      ("random_state=seed)\n", "random_state=seed)\n    return parts[0], parts[1], parts[3], parts[2]\n")]),
    ("load_csv raises ValueError instead of KeyError", [("raise KeyError(", "raise ValueError(")]),
    ("schema_summary reports 1 for any number of missing values",
     [("frame.isna().sum()", "frame.isna().any().astype(int)")]),
    ("schema_summary reports the maximum as min", [('"min": numeric.min()', '"min": numeric.max()')]),
    ("schema_summary reports the mean as max", [('"max": numeric.max()', '"max": numeric.mean()')]),
    ("stratified_split drops one training row",
     [("return train_test_split(", "parts = train_test_split("),
      ("random_state=seed)\n", "random_state=seed)\n    return parts[0].iloc[1:], parts[1], parts[2].iloc[1:], parts[3]\n")]),
)

# Tests that read the implementation instead of calling it could tell the reference from a mutant.
# Honest tests of this module never need any of these names (checked on the test file's text).
SOURCE_READING = re.compile(
    r"\binspect\b|getsource|__code__|co_code|__file__|__spec__|__loader__|__globals__|__dict__|__builtins__|"
    r"__import__|__getattribute__|\bgetattr\(|\bvars\(|\bglobals\(|attrgetter|\bexec\(|\beval\(|\bcompile\(|"
    r"_getframe|f_code|f_globals|__traceback__|\.traceback\b|extract_tb|extract_stack|linecache|\bdis\b|marshal|"
    r"\bimportlib\b|spec_from_file|sys\.modules|(?<!\w)data\.py|mlops_kit/|/sandbox|\bimport ast\b|\bast\.")


def reference_source() -> str:
    import mlops_kit.data

    return Path(mlops_kit.data.__file__).read_text(encoding="utf-8")


def mutate(source: str, patches) -> str:
    """Apply one mutant's text patches to the reference source."""
    for old, new in patches:
        count = source.count(old)
        if count != 1:
            raise ValueError(f"mutant patch {old!r} matches {count} times in mlops_kit/data.py; update lab01's "
                             "MUTANTS to the lesson's current code")
        source = source.replace(old, new)
    compile(source, "data.py", "exec")
    return source


class _Renamer(ast.NodeTransformer):
    """Rename one function's local variables and function-level import aliases (never its parameters)."""

    def __init__(self, names: dict[str, str]) -> None:
        self.names = names

    def visit_Name(self, node: ast.Name) -> ast.Name:
        node.id = self.names.get(node.id, node.id)
        return node

    def visit_alias(self, node: ast.alias) -> ast.alias:
        bound = node.asname or node.name
        if "." not in bound and bound in self.names:
            node.asname = self.names[bound]
        return node


def _locals(function: ast.FunctionDef) -> set[str]:
    params = {a.arg for a in (*function.args.posonlyargs, *function.args.args, *function.args.kwonlyargs,
                              function.args.vararg, function.args.kwarg) if a is not None}
    found = set()
    for node in ast.walk(function):
        if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            found.add(node.id)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            found.update(a.asname or a.name for a in node.names if "." not in (a.asname or a.name))
        elif isinstance(node, (ast.Global, ast.Nonlocal)):
            return set()  # never in the reference; renaming would be unsafe
    return found - params


def equivalent(source: str, how: int = 0) -> str:
    """A behaviour-preserving rewrite of `source` (EQUIVALENTS[how]); compiled to make sure it is valid.

    Rewrite 0 does all of: reformatted (ast.unparse drops comments, normalises quotes and wrapping), top-level
    functions in reverse order, locals and function-level import aliases renamed (never parameters), each
    returned expression bound to a name first, a private helper and comments added."""
    if how != 0:
        raise ValueError(f"no equivalent rewrite {how}")
    tree = ast.parse(source)
    functions = [i for i, node in enumerate(tree.body) if isinstance(node, ast.FunctionDef)]
    defs = [tree.body[i] for i in functions]
    for i, node in zip(functions, reversed(defs)):
        tree.body[i] = node
    for node in defs:
        _Renamer({name: f"_{name}_v" for name in _locals(node)}).visit(node)
        for stmt in list(ast.walk(node)):
            for field in ("body", "orelse", "finalbody"):
                block = getattr(stmt, field, None)
                if not isinstance(block, list):
                    continue
                for j in reversed(range(len(block))):
                    inner = block[j]
                    if isinstance(inner, ast.Return) and inner.value is not None \
                            and not isinstance(inner.value, ast.Name):
                        block[j:j + 1] = [ast.Assign(targets=[ast.Name("_returned_v", ast.Store())],
                                                     value=inner.value, lineno=0),
                                          ast.Return(ast.Name("_returned_v", ast.Load()))]
    tree.body.append(ast.parse('def _unused_helper_v(value):\n    """Not part of the API."""\n'
                               '    return value\n').body[0])
    text = "# an equivalent rewrite of mlops_kit.data\n\n" + ast.unparse(ast.fix_missing_locations(tree)) \
        + "\n\n# end of the module\n"
    compile(text, "data.py", "exec")
    return text


def prepare(work: Path) -> tuple[dict, dict]:
    """Write the CSV the notebook looks at; the hidden mutants stay here (the tests make their own data)."""
    reference = reference_source()
    for _, patches in MUTANTS + HIDDEN_MUTANTS:
        mutate(reference, patches)  # fail fast (an authoring error) if the lesson's code moved
    for how in range(len(EQUIVALENTS)):
        equivalent(reference, how)
    from grader.datasets import breast_cancer_frame

    (work / "data").mkdir(parents=True, exist_ok=True)  # the CSV for the warm-up cell; tests make their own
    breast_cancer_frame().to_csv(work / "data" / "breast_cancer.csv", index=False)
    params = {"seed": LAB.seed, "data_path": "data/breast_cancer.csv", "output_dir": "outputs"}
    return params, {"hidden_mutants": HIDDEN_MUTANTS}


# --- the probes: one run per variant, cached per judging context ------------------------------------
# Two probes, each in its own sandbox with a worker of its own: the visible one (the reference twice and the
# visible mutants) feeds every visible check; the hidden one (the reference twice and the hidden mutants)
# only the hidden check, which reports counts. Learner code run on hidden mutants never writes a visible
# message, and each probe grades its mutants by the tests that pass on its own reference runs.

_RESULTS: dict[tuple[int, str], tuple[object, object]] = {}
_LOCK = threading.Lock()


def _mutation_run(ctx, kind: str = "visible") -> dict:
    """{"reference": [run, ...], "good": {tests passing on every reference run}, "mutants": [(label, killed?)]}
    for the `kind` ("visible" or "hidden") of mutants; raises Fail when the tests could not be run."""
    with _LOCK:
        cached = _RESULTS.get((id(ctx), kind))
    if cached and cached[0] is ctx:
        if isinstance(cached[1], Fail):
            raise cached[1]
        return cached[1]
    try:
        result = _run_probe(ctx, MUTANTS if kind == "visible" else ctx.hidden["hidden_mutants"], secret=kind != "visible")
    except Fail as failure:
        result = failure
    with _LOCK:
        if len(_RESULTS) > 32:
            _RESULTS.clear()
        _RESULTS[(id(ctx), kind)] = (ctx, result)
    if isinstance(result, Fail):
        raise result
    return result


def _run_probe(ctx, mutants, secret: bool = False) -> dict:
    reference = reference_source()
    variants: list[tuple[str, str]] = [("reference", reference)] * REFERENCE_RUNS
    variants += [(label, mutate(reference, patches)) for label, patches in mutants]
    if mutants is MUTANTS:  # the visible probe: the equivalent rewrites too (the hidden one re-uses its verdict)
        variants += [(f"{EQUIVALENT}{i}", equivalent(reference, i)) for i in range(len(EQUIVALENTS))]
    rng = random.SystemRandom()
    rng.shuffle(variants)
    # a token of its own per variant: no variant is byte-identical to the library's file or to another one
    inputs = {f"v{i:02d}": np.array(f"# variant {rng.getrandbits(64):016x}\n{source}\n") for i, (_, source)
              in enumerate(variants)}
    result = ctx.probe("mutation_tests", inputs, args=("--tests", ctx.output(TESTS), "--timeout", str(RUN_TIMEOUT),
                                                        "--budget", str(RUNS_BUDGET)),
                       limits=Limits(wall_seconds=RUNS_BUDGET + 60), needs=(ctx.output(TESTS),), secret=secret)
    runs = result.get("runs")
    if not isinstance(runs, dict) or not all(isinstance(runs.get(f"v{i:02d}"), dict) for i in range(len(variants))):
        raise Fail("the test probe skipped a run; please report it to your instructor")
    picked = [(label, runs[f"v{i:02d}"]) for i, (label, _) in enumerate(variants)]
    _starved(run for _, run in picked)
    references = [run for label, run in picked if label == "reference"]
    good = _passed(references[0])
    for run in references[1:]:
        good &= _passed(run)
    slowest = max(_seconds(run, "cpu_seconds") for run in references)
    equivalents = {label[len(EQUIVALENT):]: run for label, run in picked if label.startswith(EQUIVALENT)}
    wrong = {how: sorted(good - _passed(run)) or ["the run"] for how, run in equivalents.items()
             if _killed(run, slowest, good)}
    return {"reference": references, "good": good, "text_tests": wrong,
            "mutants": [(label, _killed(run, slowest, good)) for label, run in picked
                        if label != "reference" and not label.startswith(EQUIVALENT)]}


def _starved(runs) -> None:
    """A run that ran out of its wall time with little CPU while the machine was overloaded was starved by the
    grader's machine, not slow by itself: GraderTimeout (the submission is graded again), never a verdict."""
    import os

    from grader.launch import GraderTimeout

    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    for run in runs:
        if run.get("timed_out") and _seconds(run, "cpu_seconds") < 0.5 * _seconds(run) \
                and os.getloadavg()[0] > cores + 0.5:
            raise GraderTimeout(f"a run of the tests ran out of its {RUN_TIMEOUT} s with "
                                f"{_seconds(run, 'cpu_seconds'):.1f} s of CPU while the machine was busy "
                                f"(load {os.getloadavg()[0]:.1f})")


def _passed(run: dict) -> set[str]:
    tests = run.get("passed_tests")
    return {str(t) for t in tests} if isinstance(tests, list) else set()


def _seconds(run: dict, key: str = "seconds") -> float:
    value = run.get(key, 0.0)
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else 0.0


def _killed(run: dict, reference_cpu: float, good: set[str]) -> bool:
    """A mutant is killed when a test that passes on the reference fails or errors on it, the run crashes,
    or it hangs where the reference ran quickly; a run never started (time budget spent) kills nothing.
    Tests that fail on the reference are wrong tests: they kill nothing (tests_pass_on_reference reports them)."""
    if run.get("not_run"):
        return False
    if run.get("timed_out"):
        return reference_cpu < RUN_TIMEOUT / 4
    if run.get("worker_died"):
        return True
    return bool(good - _passed(run))


def _count(run: dict, key: str) -> int:
    value = run.get(key, 0)
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def _results(ctx, kind: str = "visible") -> dict:
    source = ctx.read_text(ctx.output(TESTS))  # Fail with a pointer when the file is missing
    if not source.strip():
        raise Fail(f"{ctx.output(TESTS)} is empty: the notebook should write your tests there")
    try:
        return _mutation_run(ctx, kind)
    except Fail as failure:
        raise Fail(f"running your tests failed: {failure}") from None


def _tail(run: dict) -> str:
    text = str(run.get("tail", "")).strip()
    return f"\npytest said:\n{text[-1200:]}" if text else ""


# --- checks -------------------------------------------------------------------------------------------


@CHECKS.add(points=1, hint="Define test functions named test_… in the exercise strings; run the cell that writes "
            "test_data.py and look at its pytest output.", section="1.5 From test_eq to pytest")
def tests_collected(ctx):
    """test_data.py exists and pytest collects at least 5 tests from it."""
    run = _results(ctx)["reference"][0]
    collected, errors = _count(run, "collected"), _count(run, "errors")
    if run.get("timed_out"):
        raise Fail(f"pytest on {TESTS} ran over {RUN_TIMEOUT} s: keep the tests small (no loops over big data)")
    if errors and not collected:
        raise Fail(f"pytest could not collect {TESTS} (a syntax error or an import that fails?){_tail(run)}")
    if collected < MIN_TESTS:
        raise Fail(f"pytest collected {collected} test(s) from {TESTS}; expected at least {MIN_TESTS} functions "
                   f"named test_…{_tail(run)}")
    ctx.figure("tests_collected", collected, "tests pytest collected")
    source = ctx.read_text(ctx.output(TESTS))
    ctx.figure("test_lines", sum(1 for line in source.splitlines() if line.strip() and not line.strip().startswith("#")),
               "lines of tests (without blank lines and comments)")


@CHECKS.add(points=1, depends=("tests_collected",),
            hint="Every test must pass on the lesson's mlops_kit.data; make your own data in the test (tmp_path, "
            "write_breast_cancer_csv), never rely on files of the notebook.",
            section="1.5 From test_eq to pytest")
def tests_pass_on_reference(ctx):
    """Every test passes on the reference mlops_kit.data (run twice, in a fresh process each time)."""
    result = _results(ctx)
    for run in result["reference"]:
        if run.get("timed_out") or run.get("not_run"):
            raise Fail(f"pytest on {TESTS} did not finish within {RUN_TIMEOUT} s on the reference implementation")
        if _seconds(run, "cpu_seconds") > REFERENCE_CPU_SECONDS:
            raise Fail(f"one pytest run of {TESTS} used {_seconds(run, 'cpu_seconds'):.1f} s of CPU; the grader runs "
                       f"your suite once per mutant, so keep one run under {REFERENCE_CPU_SECONDS} s (fewer seeds, "
                       "smaller data)")
    first, good = result["reference"][0], result["good"]
    collected = max(_count(first, "collected") - _count(first, "skipped"), len(good))
    failures = sorted({str(f) for run in result["reference"] for f in run.get("failures", [])})
    flaky = sorted(set().union(*(_passed(run) for run in result["reference"])) - good)
    if len(good) == collected and not failures and all(run.get("exit") == 0 for run in result["reference"]):
        return None
    names = ", ".join((failures + [f"{t} (passed in one run only: it is not reproducible)" for t in flaky])[:6])
    message = (f"on the reference implementation {len(good)} of {collected} test(s) passed; "
               f"{collected - len(good) or 'the run'} failed ({names or 'see below'}). A test that fails on correct "
               "code is a wrong test: fix its expectation. It catches no mutant either: the mutants are graded "
               f"by the tests that pass here{_tail(first)}")
    if not good or not collected:
        raise Fail(message)
    return Partial(len(good) / collected, message)


def _score_mutants(ctx, kind: str, what: str):
    source = ctx.read_text(ctx.output(TESTS))
    found = SOURCE_READING.search(source)
    if found:
        raise Fail(f"{TESTS} inspects the implementation itself (found {found.group(0)!r}); mutation testing "
                   "scores tests that call the functions and check their behaviour (results, errors), so "
                   "remove the source/module introspection")
    text_tests = _results(ctx, "visible").get("text_tests") or {}
    if text_tests:
        how, failed = next(iter(text_tests.items()))
        raise Fail(f"your tests fail on a correct variant of the code ({EQUIVALENTS[int(how)]}; failing: "
                   f"{', '.join(failed[:3])}): they test its text, not its behaviour. Call the functions and "
                   "assert on what they return or raise")
    result = _results(ctx, kind)
    if not result["good"]:
        raise Fail(f"none of your tests passes on the reference implementation, so none can catch a {what[:-1]}: "
                   "see tests_pass_on_reference")
    outcomes = result["mutants"]
    killed = sum(1 for _, dead in outcomes if dead)
    ctx.figure(f"{kind}_mutants_killed", killed, f"{what} caught by the tests, run by the grader",
               f"of {len(outcomes)}")
    broken = _count(result["reference"][0], "collected") - len(result["good"])
    counted = f"the {len(result['good'])} test(s) that pass on the reference" if broken > 0 else "your tests"
    message = (f"{counted} caught {killed} of {len(outcomes)} {what} (copies of mlops_kit/data.py with one "
               "planted bug each)")
    if killed == len(outcomes):
        return Partial(1.0, message)
    if killed == 0:
        raise Fail(f"{message}: every test passed on every mutant, so the tests check too little. Assert on "
                   "exact sizes, columns, errors, determinism and class shares")
    return Partial(killed / len(outcomes), f"{message}; the others pass all your tests. For each function ask: "
                   "what could a careless edit break that no assertion of mine would notice?")


@CHECKS.add(points=6, depends=("tests_collected",),
            hint="Test every promise of each function's docstring and of the exercises: what it returns (exact "
            "shapes, columns, values), what it raises, and what each argument changes.",
            section="1.6 Mutation testing: who tests the tests?")
def mutants_killed(ctx):
    """Share of the planted bugs (mutants of mlops_kit/data.py) that make at least one of your tests fail."""
    return _score_mutants(ctx, "visible", "mutants")


@CHECKS.add(points=2, visible=False, depends=("tests_collected",),
            hint="Check every value you can compute by hand, and every argument and error type, not only a few "
            "shapes.", section="1.6 Mutation testing: who tests the tests?")
def hidden_mutants_killed(ctx):
    """Share of a second, hidden set of mutants that your tests catch."""
    if "hidden_mutants" not in ctx.hidden:
        raise Fail("the hidden mutants are only run at grading")
    return _score_mutants(ctx, "hidden", "hidden mutants")
