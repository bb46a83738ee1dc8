"""Lab 10's machinery: quantities, disruption budgets, merged messages, the cost formulas, and rendering a learner's
kustomization as the learner, with no network."""

from __future__ import annotations

import importlib.util
import random
import shutil
from pathlib import Path

import pytest

from grader.checks import lab10
from grader.checks.common import solution_file
from mlops_kit.k8s import CLOUD_PRICES

TOOLS = Path(__file__).resolve().parent.parent / "grader" / "tools"


@pytest.mark.parametrize("text,value", [("250m", 0.25), ("1", 1.0), ("512Mi", 512 * 2**20), ("1Gi", 2**30),
                                        ("2k", 2000.0), ("1e3", 1000.0)])
def test_quantities(text, value):
    assert lab10.quantity(text) == pytest.approx(value)


def test_a_quantity_that_is_not_one_is_refused():
    with pytest.raises(ValueError):
        lab10.quantity("a lot")


@pytest.mark.parametrize("spec,pods,allowed", [({"maxUnavailable": 1}, 3, 1), ({"minAvailable": 1}, 1, 0),
                                               ({"minAvailable": "100%"}, 3, 0), ({"maxUnavailable": "50%"}, 1, 1),
                                               ({"minAvailable": "50%"}, 3, 1), ({}, 3, None)])
def test_disruptions_allowed(spec, pods, allowed):
    assert lab10._disruptions(spec, pods) == allowed


def test_a_problem_of_both_overlays_is_said_once():
    said = lab10.merged(["dev: no limits", "prod: no limits", "prod: one replica", "overall"])
    assert said == "dev and prod: no limits; prod: one replica; overall"


def test_the_solutions_cost_model_agrees_with_the_graders_formulas(tmp_path):
    path = tmp_path / "cost.py"
    path.write_text(solution_file(lab10.LAB, "cost.py"))
    spec = importlib.util.spec_from_file_location("cost", path)
    cost = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(cost)
    for profile in lab10.hidden_profiles(random.Random(7), count=20) + [lab10.EXAMPLE]:
        expected = lab10.reference_costs(profile, CLOUD_PRICES)
        got = cost.monthly_costs(profile, CLOUD_PRICES)
        assert got == pytest.approx(expected)
        assert cost.choose(profile, CLOUD_PRICES) == min(expected, key=expected.get)


@pytest.mark.parametrize("seed", range(5))
def test_hidden_profiles_make_every_option_the_cheapest_once(seed):
    """A model that always answers one option cannot pass."""
    chosen = set()
    for profile in lab10.hidden_profiles(random.Random(seed)):
        costs = lab10.reference_costs(profile, CLOUD_PRICES)
        chosen.add(min(costs, key=costs.get))
    assert chosen == {"managed_endpoint", "serverless", "kubernetes"}


@pytest.mark.skipif(shutil.which("kubectl") is None or shutil.which("bwrap") is None,
                    reason="needs kubectl and bubblewrap")
def test_a_remote_base_is_not_fetched(tmp_path):
    spec = importlib.util.spec_from_file_location("ci_probe_under_test", TOOLS / "ci_probe.py")
    probe = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(probe)
    overlay = tmp_path / "repo" / "overlay"
    overlay.mkdir(parents=True)
    (overlay / "kustomization.yaml").write_text(
        "resources:\n  - https://github.com/kubernetes-sigs/kustomize//examples/helloWorld?ref=v5.0.0\n")
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    result = probe._render(overlay, probe._runner(scratch, []), probe._env(scratch))
    assert "error" in result and "objects" not in result
