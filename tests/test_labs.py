"""Every lab: the reference solution scores 100 %, the untouched starter at most 10 %."""

import pytest

from grader.grade import grade_notebook
from grader.labs import lab_modules

LABS = list(lab_modules())
# what the portfolio shows: check → the figures it records when it passes (grader/evidence.py)
FIGURES = {
    "01_tested_code": {"tests_collected": {"tests_collected", "test_lines"}, "mutants_killed": {"visible_mutants_killed"},
                       "hidden_mutants_killed": {"hidden_mutants_killed"}},
    "03_classifier": {"holdout_auc": {"holdout_auc"}},
    "05_tracking": {"holdout_confirms": {"holdout_auc"}},
    "06_registry": {"card_matches_registry": {"champion_version", "champion_roc_auc", "model_card"}},
    "07_serving": {"latency_under_load": {"p95_ms", "p95_vs_reference"}},
    "08_containers": {"image_size": {"image_mb", "image_vs_reference"}},
    "12_drift": {"detects_drift": {"drift_recall"}, "no_false_alarms": {"drift_precision"}},
    "13_deep_learning": {"holdout_accuracy": {"holdout_accuracy"}, "torchscript_parity": {"torchscript_max_diff"},
                         "onnx_parity": {"onnx_max_diff_batch_1", "onnx_max_diff_batch_37"}},
    "14_feature_store": {"point_in_time": {"point_in_time_share"}},
}


def _explain(result) -> str:
    lines = [result.output] + [f"{t.name}: {t.status} {t.message}" for t in result.tests if t.status != "passed"]
    return "\n".join(lines)


@pytest.mark.slow
@pytest.mark.parametrize("lab_id", LABS)
def test_reference_solution_scores_full_marks(lab_id, isolate):
    module = lab_modules()[lab_id]
    result = grade_notebook(module, module.LAB.solution_path, reference=True, isolate=isolate)
    assert result.status == "graded", result.output
    assert result.score == result.max_score, _explain(result)
    recorded = {t.name: set(t.figures) for t in result.tests if t.status == "passed"}
    for check, keys in FIGURES.get(lab_id, {}).items():
        if check in recorded:  # a check that cannot run here (no podman) records nothing
            assert recorded[check] == keys, f"{check} recorded {recorded[check]}, the portfolio expects {keys}"


@pytest.mark.slow
@pytest.mark.parametrize("lab_id", LABS)
def test_untouched_starter_scores_at_most_ten_percent(lab_id, isolate):
    module = lab_modules()[lab_id]
    result = grade_notebook(module, module.LAB.lab_path, isolate=isolate)
    assert result.status == "graded", result.output
    assert result.score <= 0.1 * result.max_score, _explain(result)
    failed = [t for t in result.tests if t.status == "failed"]
    assert failed, "a starter must fail at least one check with a message"
    assert all(t.message for t in failed), "every failed check needs a message"
