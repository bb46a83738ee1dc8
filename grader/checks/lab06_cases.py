"""Wrong-answer cases of lab 06: mistakes learners make with the registry, the promotion gate and the model card."""

from grader.cases import Case, answer, replace

GATE, RUN, CARD = "answer-07", "answer-10", "answer-13"
PASSES = "    if not isinstance(behaviour_results, dict) or any(behaviour_results.get(t) is not True for t in REQUIRED):"

INCUMBENT = 'champion_version = str(register_run(ranked.iloc[0]["run_id"], experiment_id, MODEL_NAME).version)'
CANDIDATE = 'challenger_version = str(register_run(ranked.iloc[-1]["run_id"], experiment_id, MODEL_NAME).version)'

CASES = [
    Case("gate_promotes_ties", "compared with >= so a challenger that only ties the champion is promoted",
         edits=(replace(GATE, "return old is not None and new > old", "return old is not None and new >= old"),),
         expect={"gate_never_promotes_bad": "failed"}, says={"gate_never_promotes_bad": r"a tie on roc_auc"},
         fix="A tie keeps the champion: promote only when the challenger is strictly better."),
    Case("gate_without_comparison", "promoted every challenger that passes its tests, without comparing metrics",
         edits=(replace(GATE, "    new = _score(challenger_metrics)\n",
                        "    return True\n    new = _score(challenger_metrics)\n"),),
         expect={"gate_examples": "failed", "gate_never_promotes_bad": "failed"},
         says={"gate_examples": r"a worse challenger that passes every test \(returned True\)",
               "gate_never_promotes_bad": r"a much worse challenger"},
         fix="Compare roc_auc: passing the tests is necessary, not sufficient."),
    Case("gate_trusts_what_is_there", "checked all(behaviour_results.values()), so missing results count as passes",
         edits=(replace(GATE, PASSES, "    if not all(behaviour_results.values()):"),),
         expect={"gate_never_promotes_bad": "failed"},
         says={"gate_never_promotes_bad": r"no behavioural results at all \(returned True\)"},
         fix="Look up each required test by name: a missing result is a failure."),
    Case("gate_raises_on_missing_metric", "indexed challenger_metrics['roc_auc'], which raises when it was not logged",
         edits=(replace(GATE, "    new = _score(challenger_metrics)\n",
                        "    new = challenger_metrics['roc_auc']\n    new = _score(challenger_metrics)\n"),),
         expect={"gate_never_promotes_bad": "failed"}, says={"gate_never_promotes_bad": r"raised KeyError"},
         fix="Never raise: missing or NaN evidence means False."),
    Case("gate_rejects_first_champion", "returned False when there is no champion yet",
         edits=(replace(GATE, "    if champion_metrics is None:\n        return True",
                        "    if champion_metrics is None:\n        return False"),),
         expect={"gate_promotes_good": "partial"}, says={"gate_promotes_good": r"no champion yet"},
         fix="With no champion, a challenger that passes every test is promoted."),
    Case("gate_uses_numpy", "used numpy.isfinite in the gate, so it needs numpy wherever it runs",
         edits=(replace(GATE, "import math\n", "import math\n\nimport numpy as np\n"),
                replace(GATE, "not math.isfinite(value)", "not np.isfinite(value)")),
         expect={"gate_imports": "partial"}, says={"gate_imports": r"imports numpy, outside the standard library"},
         fix="math.isfinite does the same with the standard library only."),
    Case("gate_arguments_swapped", "called the gate with the challenger's metrics first and the champion's second",
         edits=(replace(RUN, 'gate.decide(version_metrics(MODEL_NAME, "champion"), version_metrics(MODEL_NAME, '
                             '"challenger"), behaviour)',
                        'gate.decide(version_metrics(MODEL_NAME, "challenger"), version_metrics(MODEL_NAME, '
                        '"champion"), behaviour)'),),
         expect={"aliases_set": "failed"}, says={"aliases_set": r"so the gate should have promoted it"},
         fix="decide(champion_metrics, challenger_metrics, behaviour_results): the champion comes first."),
    Case("versions_as_numbers", "wrote the version numbers into promotion.json as integers",
         edits=(replace(RUN, 'record = {"champion_before": champion_version, "challenger": challenger_version,',
                        'record = {"champion_before": int(champion_version), "challenger": int(challenger_version),'),),
         expect={"promotion_recorded": "failed"}, says={"promotion_recorded": r"write the version as a string"},
         fix="Registry versions are strings: write them as strings."),
    Case("candidate_registered_first", "registered the candidate before the incumbent",
         edits=(replace("answer-04", INCUMBENT + "\n" + CANDIDATE, CANDIDATE + "\n" + INCUMBENT),),
         expect={"model_registered": "partial"}, says={"model_registered": r"the candidate was registered first"},
         fix="Register the incumbent first, then the candidate."),
    Case("card_todo_left", "left a TODO in the limitations of the model card",
         edits=(replace(CARD, 'limitations="Few samples, one source',
                        'limitations="TODO: write the limitations once the evaluation is finished." or "Few samples'),),
         expect={"card_sections": "failed"}, says={"card_sections": r"Limitations' still holds a placeholder \('TODO'\)"},
         fix="Write the limitations of this model: where it was not tested, what its threshold ignores."),
    Case("card_filler", "passed the same generic sentence for every judgement section of the card",
         edits=(answer(CARD, '''
                filler = "This section describes the model and how it is used."
                card = model_card(MODEL_NAME, "champion", intended_use=filler, data=filler, limitations=filler,
                                  ethical_considerations=filler)
                (Path(output_dir) / "model_card.md").write_text(card)
                '''),),
         expect={"card_sections": "failed"}, says={"card_sections": r"says almost nothing beyond its heading"},
         fix="Each section states something true of this model: its use, its data, its limits, its risks."),
    Case("card_by_hand", "wrote the card by hand with the champion's metrics rounded to two digits and no run id",
         edits=(replace(CARD, '(Path(output_dir) / "model_card.md").write_text(card)',
                        '''m = version_metrics(MODEL_NAME, "champion")
card = card.split("## Metrics")[0] + f"""## Metrics
The champion scores roc_auc {m['roc_auc']:.2f} on the test split, cv_roc_auc {m['cv_roc_auc']:.2f} in cross-validation.

## Limitations""" + card.split("## Limitations")[1]
card = "\\n".join(line for line in card.splitlines() if "Source run" not in line and "Data version" not in line)
(Path(output_dir) / "model_card.md").write_text(card)'''),),
         expect={"card_matches_registry": "failed"},
         says={"card_matches_registry": r"source run.*lacks roc_auc.*data version"},
         fix="Let model_card(...) write the numbers from the registry."),
]
