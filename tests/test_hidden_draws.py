"""Hidden data is drawn from the installation's secret: the public code holds the generators, not the instances.

Lab 06's gate scenarios, lab 04's corrupted CSV and lab 02's probe CSV: the same secret draws the same
instances (a regrade gives the same grade), another secret draws others, and lab 06's answers are the lab's
rules (the public rule and the reference solution's gate agree on every drawn scenario).
"""

from __future__ import annotations

import ast
import hashlib
import json
import math
import random
from pathlib import Path

import pytest

from grader import secret
from grader.checks import lab02, lab04, lab06
from grader.labs import REPO

SECRETS = (b"the first grading installation", b"a second grading installation", b"an instructor's third one")


@pytest.fixture
def use_secret(tmp_path, monkeypatch):
    """use_secret(content): make it the installation's secret for what follows."""
    def use(content: bytes):
        path = tmp_path / hashlib_name(content) / "secret"
        path.parent.mkdir(exist_ok=True)
        path.write_bytes(content)
        path.chmod(0o600)
        monkeypatch.setenv(secret.ENV, str(path))
        monkeypatch.setattr(secret, "_cache", {})
    return use


def hashlib_name(content: bytes) -> str:
    return hashlib.sha256(content).hexdigest()[:8]


def _scenarios(use_secret, content, tmp_path) -> list:
    use_secret(content)
    work = tmp_path / f"work-{hashlib_name(content)}-{random.random()}"
    work.mkdir()
    return lab06.prepare(work)[1]["gate_scenarios"]


def _key(scenarios) -> str:
    return json.dumps(scenarios)  # NaN written as NaN: comparable


def _reference_decide():
    """decide() of the reference solution's promotion_gate.py, as the notebook writes it."""
    solution = json.loads(lab06.LAB.solution_path.read_text(encoding="utf-8"))
    source = next("".join(c["source"]) for c in solution["cells"] if "def decide(" in "".join(c["source"]))
    namespace: dict = {}
    exec(source.split("\n", 1)[1], namespace)  # without the %%writefile line
    return namespace["decide"]


def test_lab06_scenarios_follow_the_secret(use_secret, tmp_path):
    drawn = [_scenarios(use_secret, content, tmp_path) for content in SECRETS]
    assert _key(_scenarios(use_secret, SECRETS[0], tmp_path)) == _key(drawn[0])  # a regrade asks the same
    assert len({_key(d) for d in drawn}) == len(SECRETS)
    for scenarios in drawn:
        answers = [s[4] for s in scenarios]
        assert len(scenarios) == 15 and answers.count(False) == 11 and answers.count(True) == 4
        assert [s[0].split(" ")[:2] for s in scenarios] == [s[0].split(" ")[:2] for s in drawn[0]]  # kinds in order
    # every pair of secrets differs in nearly every scenario's numbers, not just one
    for a, b in ((drawn[0], drawn[1]), (drawn[1], drawn[2])):
        assert sum(json.dumps(x[1:4]) != json.dumps(y[1:4]) for x, y in zip(a, b)) >= 13


def test_every_drawn_answer_is_the_rule_and_the_reference_gate(use_secret, tmp_path):
    decide = _reference_decide()
    seen = set()
    for seed in range(300):
        for description, champion, challenger, behaviour, answer in lab06.draw_scenarios(seed):
            assert answer is lab06._rule(champion, challenger, behaviour), description
            assert decide(champion, challenger, behaviour) is answer, (description, champion, challenger, behaviour)
            assert json.loads(json.dumps([champion, challenger, behaviour])) is not None  # the probe's JSON carries it
            seen.add(json.dumps([champion, challenger, behaviour]))
    assert len(seen) == 300 * len(lab06.SCENARIO_KINDS)  # no instance drawn twice
    # each kind aims at the answer it says, for any secret
    for content in SECRETS:
        for (_, aim), scenario in zip(lab06.SCENARIO_KINDS, _scenarios(use_secret, content, tmp_path)):
            assert scenario[4] is aim, scenario[0]


def _literals(path: Path) -> tuple[list, set]:
    """The literal containers and the float constants of a source file."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    containers, floats = [], set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Dict, ast.Tuple, ast.List)):
            try:
                containers.append(ast.literal_eval(node))
            except ValueError:
                pass
        elif isinstance(node, ast.Constant) and isinstance(node.value, float):
            floats.add(node.value)
    return containers, floats


def _containers(value):
    yield value
    if isinstance(value, (tuple, list)):
        for item in value:
            yield from _containers(item)


def test_no_hidden_scenario_or_answer_is_written_in_the_checks(use_secret, tmp_path):
    files = [REPO / "grader" / "checks" / "lab06.py", REPO / "grader" / "checks" / "lab06_cases.py"]
    found = [_literals(f) for f in files]
    literals = [item for containers, _ in found for c in containers for item in _containers(c)]
    floats = set().union(*(f for _, f in found))
    for content in SECRETS:
        for description, champion, challenger, behaviour, answer in _scenarios(use_secret, content, tmp_path):
            for value in ((description, champion, challenger, behaviour, answer), (champion, challenger, behaviour),
                          (description, champion, challenger, behaviour)):
                assert value not in literals, description
            for metrics in (champion, challenger):
                if metrics:
                    assert metrics not in literals, (description, metrics)
                    precise = [v for v in metrics.values() if math.isfinite(v) and round(v, 3) != v]
                    assert not floats & set(precise), (description, metrics)


def test_lab04_corrupted_columns_follow_the_secret(use_secret, tmp_path):
    drawn = []
    for content in (*SECRETS, SECRETS[0]):
        use_secret(content)
        work = tmp_path / f"lab04-{len(drawn)}"
        work.mkdir()
        params, hidden = lab04.prepare(work)
        drawn.append((hidden["broken_columns"], hidden["corrupted_csv"], (work / params["data_path"]).read_bytes()))
    assert drawn[0][:2] == drawn[3][:2]  # the same secret: the same corruption
    assert len({d[1] for d in drawn}) == len(SECRETS)  # other secrets: other corruptions
    assert len({d[2] for d in drawn}) == 1  # the public CSV learners see stays on the lab's public seed
    assert len({json.dumps(d[0], sort_keys=True) for d in drawn}) >= 2


def test_lab02_probe_csv_follows_the_secret(use_secret, tmp_path):
    drawn = []
    for content in (SECRETS[0], SECRETS[1], SECRETS[0]):
        use_secret(content)
        work = tmp_path / f"lab02-{len(drawn)}"
        work.mkdir()
        _, hidden = lab02.prepare(work)
        drawn.append((hidden["probe_csv"], hidden["split_seed"]))
    assert drawn[0] == drawn[2] and drawn[0][0] != drawn[1][0]


def test_lab04_every_drawn_corruption_is_caught_by_the_reference_validator(use_secret, tmp_path):
    import io

    import pandas as pd

    from mlops_kit.pipeline import DataValidationError, validate

    for index in range(12):  # a dozen installations: whatever the secret, the lab's validator names all three
        use_secret(f"installation number {index} of the course".encode())
        work = tmp_path / f"lab04-validator-{index}"
        work.mkdir()
        hidden = lab04.prepare(work)[1]
        with pytest.raises(DataValidationError) as err:
            validate(pd.read_csv(io.StringIO(hidden["corrupted_csv"])))
        for kind, column in hidden["broken_columns"].items():
            assert f"'{column}'" in str(err.value), (kind, column, str(err.value))
