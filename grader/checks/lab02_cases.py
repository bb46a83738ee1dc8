"""Lab 02's wrong-answer cases: mistakes learners make packaging week 1, and the verdict each must get."""

from grader.cases import Case, add_cell, answer, replace

CASES = [
    Case(
        "no_build_system",
        "pyproject.toml leaves out [build-system] (pip still falls back to setuptools, but nothing declares it)",
        edits=(replace("answer-04", '[build-system]\nrequires = ["setuptools>=64"]\nbuild-backend = "setuptools.build_meta"\n\n',
                       ""),),
        expect={"package_layout": "failed"},
        says={"package_layout": r"\[build-system\]"},
        fix='Declare the backend: [build-system] requires = ["setuptools>=64"], build-backend = "setuptools.build_meta".',
    ),
    Case(
        "pyproject_half_done",
        "pyproject.toml lacks requires-python and the src-layout section that exercise 1 asks for",
        edits=(replace("answer-04", 'requires-python = ">=3.11"\n', ""),
               replace("answer-04", '\n[tool.setuptools.packages.find]\nwhere = ["src"]\n', "")),
        expect={"project_metadata": "partial"},
        says={"project_metadata": r"requires-python is None.*where should be \[\"src\"\]"},
        fix='requires-python = ">=3.11" and [tool.setuptools.packages.find] where = ["src"].',
    ),
    Case(
        "pyproject_read_from_the_lesson",
        "pyproject.toml's text read from the lesson's bcinfo project, which is not in the lab's folder: the "
        "project gets no pyproject.toml (the lock, judged from its own files, still passes)",
        edits=(answer("answer-04", 'pyproject_toml = Path("bcinfo/pyproject.toml").read_text()\n'),),
        expect={"package_layout": "failed", "project_metadata": "failed", "lint_clean": "failed",
                "types_clean": "failed", "installs_and_helps": "failed", "summary_command": "skipped",
                "split_command": "skipped", "split_test_size_option": "skipped",
                "requirements_in_matches_project": "failed"},
        says={"installs_and_helps": r"has no pyproject\.toml \(nor setup\.py\): there is nothing pip could install"},
        fix="Write the text itself into pyproject_toml (start from § 2.1's bcinfo file and change what differs).",
    ),
    Case(
        "unused_import",
        "cli.py keeps an import it does not use",
        edits=(replace("answer-07", "import json\nfrom pathlib", "import json\nimport os\nfrom pathlib"),),
        expect={"lint_clean": "failed"},
        says={"lint_clean": r"F401"},
        fix="check_quality(project, 'bcdata', fix=True) removes it; copy the fixed file back into cli_source.",
    ),
    Case(
        "unannotated_function",
        "a command has no return annotation, so mypy (disallow-untyped-defs) rejects it",
        edits=(replace("answer-07", "def summary(csv: Path) -> None:", "def summary(csv: Path):"),),
        expect={"types_clean": "failed"},
        says={"types_clean": r"no-untyped-def|return type annotation"},
        fix="Annotate every function: def summary(csv: Path) -> None.",
    ),
    Case(
        "hard_coded_rows",
        "summary prints the row count of the course CSV (569) instead of counting the CSV it is given",
        edits=(replace("answer-07", '{"rows": len(frame), "columns": columns}', '{"rows": 569, "columns": columns}'),),
        expect={"summary_command": "failed"},
        says={"summary_command": r"rows = 569; the grader.s CSV has \d+ rows"},
        fix="Count the rows of the frame you read: len(frame).",
    ),
    Case(
        "fixed_seed",
        "split ignores --seed and always splits with seed 0",
        edits=(replace("answer-07", "stratified_split(X, y, test_size=test_size, seed=seed)",
                       "stratified_split(X, y, test_size=test_size, seed=0)"),),
        expect={"split_command": "failed", "split_test_size_option": "failed"},
        says={"split_command": r"not the rows of stratified_split.*--seed"},
        fix="Pass the option on: seed=seed.",
    ),
    Case(
        "test_size_ignored",
        "split declares --test-size but always splits 25 %",
        edits=(replace("answer-07", "stratified_split(X, y, test_size=test_size, seed=seed)",
                       "stratified_split(X, y, test_size=0.25, seed=seed)"),),
        expect={"split_test_size_option": "failed"},
        says={"split_test_size_option": r"test_size 0.4"},
        fix="Use the option's value: test_size=test_size.",
    ),
    Case(
        "rows_sorted",
        "split sorts the rows by index before writing them, so they are no longer in the split's order",
        edits=(replace("answer-07", 'X_train.assign(target=y_train).to_csv(out / "train.csv", index=False)',
                       'X_train.assign(target=y_train).sort_index().to_csv(out / "train.csv", index=False)'),),
        expect={"split_command": "partial", "split_test_size_option": "partial"},
        says={"split_command": r"train.csv hold the right rows, but not in the split's order"},
        fix="Write X_train and X_test as stratified_split returns them.",
    ),
    Case(
        "upper_bound_without_reason",
        "requirements.in caps pandas below 3 without saying why",
        edits=(replace("answer-11", "pandas<3            # the course's tools are not tested on pandas 3 yet", "pandas<3"),),
        expect={"requirements_in_matches_project": "failed"},
        says={"requirements_in_matches_project": r"'pandas<3' has an upper bound \(<3\) without its reason"},
        fix="Say why on the line: pandas<3  # the course is not tested on pandas 3 yet.",
    ),
    Case(
        "bounds_differ",
        "pyproject.toml asks for any typer while requirements.in asks for typer>=0.9",
        edits=(replace("answer-04", '"typer>=0.9"]', '"typer"]'),),
        expect={"requirements_in_matches_project": "failed"},
        says={"requirements_in_matches_project": r"typer: pyproject.toml says 'any version'.*'>=0.9'"},
        fix="Give each dependency the same bounds in both files.",
    ),
    Case(
        "requirements_in_lists_more",
        "requirements.in adds numpy, which pyproject.toml does not depend on",
        edits=(replace("answer-11", "typer>=0.9          # Annotated options\n",
                       "typer>=0.9          # Annotated options\nnumpy>=1.24         # arrays\n"),),
        expect={"requirements_in_matches_project": "failed"},
        says={"requirements_in_matches_project": r"only requirements.in has \['numpy'\]"},
        fix="List the same direct dependencies in both files.",
    ),
    Case(
        "lock_not_sorted",
        "lock_lines returns the pins in the order it found them, not sorted by name",
        edits=(replace("answer-13", 'return [f"{name}=={pins[name]}" for name in sorted(pins)]',
                       'return [f"{name}=={pins[name]}" for name in pins]'),),
        expect={"lock_agrees_with_in": "partial"},
        says={"lock_agrees_with_in": r"not sorted by name"},
        fix="sorted(pins): one line per package, sorted by name.",
    ),
    Case(
        "lock_without_transitive_pins",
        "lock_lines pins only the direct requirements, not what they need",
        edits=(replace("answer-13", "                todo.append(needed.name)\n", "                pass\n"),),
        expect={"lock_pins_environment": "partial"},
        says={"lock_pins_environment": r"lacks \d+ package\(s\) that the direct requirements need"},
        fix="Walk distribution(name).requires recursively (markers that hold only).",
    ),
]

CASES.append(Case(
    "packages_looked_for_in_the_wrong_folder",
    'setuptools is told to find the packages in "source", a folder that does not exist, so pip cannot build it',
    edits=(replace("answer-04", 'where = ["src"]', 'where = ["source"]'),),
    expect={"project_metadata": "partial", "installs_and_helps": "failed", "summary_command": "skipped",
            "split_command": "skipped", "split_test_size_option": "skipped"},
    says={"installs_and_helps": r"'source' does not exist", "project_metadata": r"where should be"},
    fix='where = ["src"]: the package lives in src/bcdata.',
))

# Quality gates switched off from inside the project: the grader runs ruff and mypy with the course's rules on
# the code itself, so none of these helps, and each is named (issue 9, item 14).
STUB = '''
(project / "src" / "bcdata" / "cli.pyi").write_text(\'\'\'\\
from pathlib import Path

import typer

app: typer.Typer


def summary(csv: Path) -> None: ...


def split(csv: Path, seed: int = ..., out: Path = ..., test_size: float = ...) -> None: ...
\'\'\')
'''
CASES += [
    Case(
        "config_relaxes_the_gates",
        "silenced the failing rules in pyproject.toml ([tool.ruff] ignores F401, [tool.mypy] ignore_errors) instead "
        "of fixing the code",
        edits=(replace("answer-04", '[tool.setuptools.packages.find]\nwhere = ["src"]\n',
                       '[tool.setuptools.packages.find]\nwhere = ["src"]\n\n[tool.ruff.lint]\nignore = ["F401"]\n\n'
                       '[tool.mypy]\nignore_errors = true\ndisallow_untyped_defs = false\n'),
               replace("answer-07", "import json\nfrom pathlib", "import json\nimport os\nfrom pathlib"),
               replace("answer-07", "def summary(csv: Path) -> None:", "def summary(csv: Path):")),
        expect={"lint_clean": "failed", "types_clean": "failed"},
        says={"lint_clean": r"settings are not used.*\[tool\.ruff\]",
              "types_clean": r"settings are not used.*\[tool\.mypy\].*ignore_errors"},
        fix="Fix what ruff and mypy report: the grader runs them with the course's rules, never the project's.",
    ),
    Case(
        "mypy_ignore_errors_header",
        "put `# mypy: ignore-errors` at the top of cli.py so that mypy stops complaining",
        edits=(replace("answer-07", '"""The bcdata command:', '# mypy: ignore-errors\n"""The bcdata command:'),
               replace("answer-07", "def summary(csv: Path) -> None:", "def summary(csv: Path):")),
        expect={"types_clean": "failed"},
        says={"types_clean": r"took out what switches it off \(src/bcdata/cli\.py:1: # mypy: ignore-errors\)"},
        fix="Annotate the function; a comment that switches mypy off hides the error, it does not fix it.",
    ),
    Case(
        "stub_shadows_module",
        "wrote a typed cli.pyi stub beside an unannotated cli.py, so mypy reads the stub instead of the code",
        edits=(replace("answer-07", "def summary(csv: Path) -> None:", "def summary(csv: Path):"),
               add_cell("locked-09", STUB)),
        expect={"types_clean": "failed"},
        says={"types_clean": r"src/bcdata/cli\.pyi: a stub, which mypy checks instead of cli\.py"},
        fix="Annotate cli.py itself: mypy must check the code that runs, not a stub beside it.",
    ),
]
