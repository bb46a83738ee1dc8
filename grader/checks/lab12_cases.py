"""Wrong-answer cases of lab 12: mistakes learners make when they first build a drift detector."""

from grader.cases import Case, answer, replace

DRIFT, REPORT, MEMBERSHIP, SERVICE = "answer-04", "answer-07", "answer-10", "answer-13"
DECISION = "    return bool(min(scores.values()) < ALPHA / len(scores)), scores"
HIDDEN = ("detects_drift", "no_false_alarms")

CASES = [
    Case("always_drift", "returned True whatever the windows (a detector tested only on a drifted example)",
         edits=(replace(DRIFT, DECISION, "    return True, scores"),),
         expect={"service_raises_the_flag": "failed", "no_false_alarms": "failed", "metric_flips": "failed"},
         says={"no_false_alarms": r"precision 0\.71.*none \(.*small_sample \(",
               "metric_flips": r"is 1 on a quiet window and 1 on the lab's drifted window"},
         fix="Decide from the p-values: drift when one is below alpha / number of columns."),
    Case("never_drift", "returned False whatever the windows (a detector tuned until it stopped paging anyone)",
         edits=(replace(DRIFT, DECISION, "    return False, scores"),),
         expect={"service_raises_the_flag": "failed", "detects_drift": "failed", "metric_flips": "failed"},
         says={"detects_drift": r"recall 0\.00: 5 of 5 drifted windows missed",
               "metric_flips": r"is 0 on a quiet window and 0 on the lab's drifted window"},
         fix="A quiet detector is a blind one: flag a window when a corrected p-value says so."),
    Case("inputs_only", "decided on the inputs alone, leaving the model's prediction out of the decision",
         edits=(replace(DRIFT, DECISION, '    inputs = {c: p for c, p in scores.items() if c != "prediction"}\n'
                                         "    return bool(min(inputs.values()) < ALPHA / len(inputs)), scores"),),
         expect={"detects_drift": "partial"},
         says={"detects_drift": r"recall 0\.80: 1 of 5 drifted windows missed — prediction \(a release swapped"},
         fix="Watch the prediction column too: a release that swaps the classes changes nothing else."),
    Case("uncorrected_tests", "flagged drift when any of the 31 columns had p < 0.05, with no correction for "
         "testing 31 columns",
         edits=(replace(DRIFT, DECISION, "    return bool(min(scores.values()) < 0.05), scores"),),
         expect={"service_raises_the_flag": "failed", "no_false_alarms": "partial"},
         says={"no_false_alarms": r"precision 0\.83: 1 false alarm\(s\).*small_sample \(a quiet night"},
         fix="Compare each p-value with alpha / 31 (Bonferroni), so that a quiet window raises no alarm."),
    Case("half_the_columns", "kept Evidently's dataset rule: drift only when at least half the columns drift",
         edits=(replace(DRIFT, DECISION, "    share = sum(p < 0.05 for p in scores.values()) / len(scores)\n"
                                         "    return bool(share >= 0.5), scores"),),
         expect={"service_raises_the_flag": "failed", "detects_drift": "failed", "metric_flips": "failed"},
         says={"detects_drift": r"one_feature \(.*not flagged.*prediction \(",
               "metric_flips": r"is 0 on a quiet window and 0 on the lab's drifted window"},
         fix="One drifted column in 31 is a drift: decide per column, with a corrected threshold."),
    Case("numpy_bool", "returned NumPy's bool (np.min(...) < threshold), which is not a Python bool",
         edits=(replace(DRIFT, DECISION, "    import numpy as np\n"
                                         "    return np.min(list(scores.values())) < ALPHA / len(scores), scores"),),
         expect={"detector_contract": "failed", **{name: "skipped" for name in HIDDEN}},
         says={"detector_contract": r"the decision is 'np\.True_', not a bool"},
         fix="return bool(decision), {column: float(score)}: the answer must be plain JSON."),
    Case("metric_as_counter", "exposed the decision as a Counter, incremented on every drifted window",
         edits=(replace(DRIFT, "from prometheus_client import CollectorRegistry, Gauge, generate_latest",
                        "from prometheus_client import CollectorRegistry, Counter, Gauge, generate_latest"),
                replace(DRIFT, 'Gauge("cancer_drift_detected", "1 while the inputs or predictions have drifted", '
                        'registry=registry).set(\n        int(decision))',
                        'Counter("cancer_drift_detected", "windows that drifted", registry=registry).inc(int(decision))')),
         expect={"metric_flips": "failed"},
         says={"metric_flips": r"no unlabelled gauge cancer_drift_detected"},
         fix="A Gauge, set to 1 or 0: the question is whether the window drifted now."),
    Case("report_by_hand", "wrote the scores as a pandas HTML table and a JSON dict instead of saving Evidently's "
         "report",
         edits=(answer(REPORT, """
                scores = drift.detect_drift(reference, current)[1]
                pd.DataFrame({"p_value": scores}).to_html(Path(output_dir) / "drift_report.html")
                (Path(output_dir) / "drift_report.json").write_text(json.dumps(scores))
                """),),
         expect={"report_is_evidently": "failed"},
         says={"report_is_evidently": r"drift_report\.json: not an Evidently snapshot"},
         fix="snapshot = Report([DataDriftPreset()]).run(current, reference); save_html and save_json."),
    Case("report_against_training_data", "compared the window with the whole data set the model was trained "
         "from instead of the reference window",
         edits=(replace(REPORT, "definition = DataDefinition(numerical_columns=list(reference.columns))",
                        'reference = breast_cancer_frame().drop(columns="target")\n'
                        "definition = DataDefinition(numerical_columns=list(reference.columns))"),
                replace(REPORT, "    Dataset.from_pandas(current, data_definition=definition)",
                        "    Dataset.from_pandas(current[list(reference.columns)], data_definition=definition)")),
         expect={"report_is_evidently": "failed"},
         says={"report_is_evidently": r"drift_report\.json scores the columns .*not the window's 31 columns"},
         fix="The reference is the reference window: the same columns as the current one, from data the model "
             "did not train on."),
    Case("typed_membership", "typed in the membership figures the notebook printed at seed 0",
         edits=(answer(MEMBERSHIP, """
                membership = {"logreg": {"auc": 0.5169, "advantage": 0.0672}, "hgb": {"auc": 0.5246, "advantage": 0.1420}}
                (Path(output_dir) / "membership.json").write_text(json.dumps(membership, indent=2))
                """),),
         expect={"membership_measured": "failed"},
         says={"membership_measured": r"not what the attack gives at this run's seed.*logreg auc = 0\.5169"},
         fix="Compute them from the models the notebook trains at `seed`."),
    Case("members_swapped", "scored the test rows as members and the training rows as non-members",
         edits=(replace(MEMBERSHIP, "member = np.concatenate([np.ones(len(y_train)), np.zeros(len(y_test))])",
                        "member = np.concatenate([np.zeros(len(y_train)), np.ones(len(y_test))])"),),
         expect={"membership_measured": "failed"},
         says={"membership_measured": r"hgb auc = 0\.\d+, recomputed 0\.\d+"},
         fix="Members are the rows the model was trained on: a small loss should say 'member'."),
    Case("watch_evaluated_once", "evaluated the window once, when it first filled, and never again",
         edits=(replace(SERVICE, "if len(self.window) == WINDOW and self.seen % EVERY == 0:",
                        "if self.seen == WINDOW:"),),
         expect={"service_raises_the_flag": "failed"},
         says={"service_raises_the_flag": r"after 100 rows with worst_area grown by half the gauge reads 0, expected 1"},
         fix="Re-evaluate the window every EVERY rows: drift starts after the service has been up for a while."),
    Case("gauge_per_process", "created the drift gauge without a multiprocess mode",
         edits=(replace(SERVICE, 'DRIFTED = Gauge(DRIFT, "1 while the last rows drifted from the training data", '
                        'multiprocess_mode="max")',
                        'DRIFTED = Gauge(DRIFT, "1 while the last rows drifted from the training data")'),),
         expect={"service_raises_the_flag": "failed"},
         says={"service_raises_the_flag": r"no unlabelled gauge cancer_drift_detected"},
         fix="Gauge(..., multiprocess_mode='max'): BentoML's workers share one value."),
]
