"""Lab 12's machinery: the drift scenarios are clear instances of their kind for any seed (so a regrade with another
secret gives the same verdicts), the wrong detectors of the cases fail the same scenarios for every seed, answers
are judged by shape, and saved reports are read as Evidently's data or refused."""

from __future__ import annotations

import importlib.util
import json

import numpy as np
import pytest
from scipy.stats import ks_2samp

from grader.checks import lab12
from grader.checks.common import solution_file
from mlops_kit.drift import (
    ALPHA,
    DRIFT_SCENARIOS,
    PREDICTION,
    SMALL,
    dashboard_scores,
    drift_decision,
    drift_exposition,
    drift_scenario,
    gauge_value,
    html_dashboard,
    snapshot_scores,
)

SEEDS = range(8)


def pvalues(kind: str, seed: int) -> dict:
    reference, current = drift_scenario(kind, seed)
    return {c: ks_2samp(reference[c], current[c]).pvalue for c in reference.columns}


@pytest.fixture(scope="module")
def draws() -> dict:
    return {(kind, seed): pvalues(kind, seed) for kind in DRIFT_SCENARIOS for seed in SEEDS}


def test_every_scenario_is_decided_right_by_the_reference_rule(draws):
    for (kind, seed), p in draws.items():
        assert drift_decision(p) == DRIFT_SCENARIOS[kind][0], (kind, seed)


def test_the_wrong_detectors_of_the_cases_fail_the_same_scenarios_for_every_seed(draws):
    """inputs_only, uncorrected_tests and half_the_columns get one verdict per kind, whatever the secret."""
    for (kind, seed), p in draws.items():
        inputs = {c: v for c, v in p.items() if c != PREDICTION}
        assert drift_decision(inputs) == (DRIFT_SCENARIOS[kind][0] and kind != "prediction"), (kind, seed)
        assert (min(p.values()) < 0.05) == (kind != "none"), (kind, seed)  # the trap fires, the quiet week not
        if kind in ("one_feature", "gradual", "prediction", "none", "small_sample"):
            assert np.mean([v < 0.05 for v in p.values()]) < 0.5, (kind, seed)


def test_the_one_feature_scenario_names_its_column():
    reference, current = drift_scenario("one_feature", 5)
    column = current.attrs["column"]
    p = {c: ks_2samp(reference[c], current[c]).pvalue for c in reference.columns}
    assert min(p, key=p.get) == column
    assert len(drift_scenario("small_sample", 5)[1]) == SMALL


def test_hidden_scenarios_are_one_of_each_kind_as_plain_json(tmp_path):
    params, hidden = lab12.prepare(tmp_path)
    assert params["seed"] == lab12.LAB.seed != 0
    kinds = [s["kind"] for s in hidden["scenarios"]]
    assert kinds == list(DRIFT_SCENARIOS)
    for scenario in hidden["scenarios"]:
        assert scenario["drift"] == DRIFT_SCENARIOS[scenario["kind"]][0]
        assert list(scenario["reference"]) == list(scenario["current"])
        json.dumps(scenario)
    assert [p.name for p in tmp_path.iterdir()] == ["registry"], "only the service's registry is in the work dir"
    written = b"".join(p.read_bytes() for p in tmp_path.rglob("*") if p.is_file())
    for scenario in hidden["scenarios"]:  # nothing of the hidden scenarios is written into the work dir
        assert repr(scenario["current"][scenario["column"] or PREDICTION][0]).encode() not in written


COLUMNS = ["a", PREDICTION]


@pytest.mark.parametrize("call,says", [
    ({"error": "Traceback | ValueError: no"}, "detect_drift failed"),
    ({"result": [True]}, "not a \\(decision, scores\\) pair"),
    ({"result": ["np.True_", {"a": 0.1, PREDICTION: 0.2}]}, "not a bool"),
    ({"result": [True, [0.1, 0.2]]}, "not a dict"),
    ({"result": [True, {"a": 0.1}]}, "missing \\['prediction'\\]"),
    ({"result": [False, {"a": 0.1, PREDICTION: "NaN"}]}, "not finite numbers"),
])
def test_answers_of_the_wrong_shape_are_named(call, says):
    import re

    assert re.search(says, lab12.answer_problem(call, COLUMNS))


def test_a_right_answer_has_no_problem():
    assert lab12.answer_problem({"result": [False, {"a": 0.5, PREDICTION: 1.0}]}, COLUMNS) is None


def test_reports_that_are_not_evidentlys_are_refused():
    with pytest.raises(ValueError, match="not an Evidently snapshot"):
        snapshot_scores({"mean_radius": 0.1})
    with pytest.raises(ValueError, match="not an Evidently data-drift snapshot"):
        snapshot_scores({"metrics": [{"config": {"type": "evidently:metric_v2:ValueDrift", "column": "a"},
                                      "value": 0.1}]})
    with pytest.raises(ValueError, match="not an Evidently HTML report"):
        html_dashboard("<html><script>var metric_ab12 = {\"widgets\": []};</script></html>")  # never drawn
    assert dashboard_scores({"widgets": [{"column_name": "a", "drift_score": 0.5, "stattest_name": "K-S"}]}) == \
        {"a": 0.5}


def test_the_gauge_is_read_only_as_an_unlabelled_gauge():
    assert gauge_value(drift_exposition(True, {"a": 0.001})) == 1.0
    assert gauge_value(drift_exposition(False, {})) == 0.0
    assert gauge_value("# TYPE cancer_drift_detected counter\ncancer_drift_detected_total 1.0\n") is None
    assert gauge_value('# TYPE cancer_drift_detected gauge\ncancer_drift_detected{column="a"} 1.0\n') is None


@pytest.mark.slow
def test_the_solutions_detector_agrees_with_the_reference_rule(tmp_path):
    """The solution's drift.py (Evidently) decides every scenario as the grader's rule does, with the same p-values."""
    path = tmp_path / "drift.py"
    path.write_text(solution_file(lab12.LAB, "drift.py"))
    spec = importlib.util.spec_from_file_location("drift_solution", path)
    drift = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(drift)
    assert drift.ALPHA == ALPHA
    for kind in DRIFT_SCENARIOS:
        reference, current = drift_scenario(kind, 11)
        decision, scores = drift.detect_drift(lab12._columns(reference), lab12._columns(current))
        expected = lab12.expected_pvalues(reference, current)
        assert decision is DRIFT_SCENARIOS[kind][0], kind
        assert max(abs(scores[c] - expected[c]) for c in expected) < 1e-12
    assert gauge_value(drift.drift_metrics(*drift_scenario("one_feature", 11))) == 1.0


def test_the_secret_draws_the_scenarios(tmp_path, monkeypatch):
    """The same secret draws the same hidden windows (a regrade gives the same grade); another secret others."""
    from grader import secret

    def draw(content: bytes, name: str) -> str:
        path = tmp_path / name / "secret"
        path.parent.mkdir(exist_ok=True)
        path.write_bytes(content)
        path.chmod(0o600)
        monkeypatch.setenv(secret.ENV, str(path))
        monkeypatch.setattr(secret, "_cache", {})
        work = tmp_path / f"work-{name}"
        work.mkdir()
        return json.dumps(lab12.prepare(work)[1]["scenarios"])

    first = draw(b"the first grading installation", "a")
    assert draw(b"the first grading installation", "b") == first
    assert draw(b"a second grading installation", "c") != first
