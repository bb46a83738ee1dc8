"""Lab 04's wrong-answer cases: mistakes learners make with a DVC pipeline, and the verdict each deserves.

Cells: answer-04 (git + dvc init, dvc add), answer-07 (the remote, push), answer-10 (params.yaml),
answer-13 (dvc.yaml), answer-16 (repro, push, commit). See grader/cases.py.
"""

from grader.cases import Case, add_cell, answer, replace

RUN = 'f"{run} '
FEATURIZE = ('    "featurize": {"cmd": f"{run} featurize data/validated.csv data/train.csv data/test.csv",\n'
             '                  "deps": ["data/validated.csv"], "params": ["seed", "featurize"],\n'
             '                  "outs": ["data/train.csv", "data/test.csv"]},\n')

CASES = [
    Case("three_slips_in_dvc_yaml",
         "featurize declares no outs, train also declares the featurize parameters, evaluate lists params.yaml "
         "as a file dependency: three independent slips in one dvc.yaml",
         edits=(replace("answer-13", '"params": ["seed", "featurize"],\n                  "outs": ["data/train.csv", '
                        '"data/test.csv"]},', '"params": ["seed", "featurize"]},'),
                replace("answer-13", '"params": ["seed", "train"]', '"params": ["seed", "train", "featurize"]'),
                replace("answer-13", '"deps": ["models/model.skops", "data/test.csv"]',
                        '"deps": ["models/model.skops", "data/test.csv", "params.yaml"]')),
         expect={"stage_featurize": "failed", "stage_train": "failed", "stage_evaluate": "failed",
                 "repro_runs": "partial"},
         says={"stage_featurize": r"does not declare them under outs",
               "stage_train": r"declares featurize under params, which `python -m mlops_kit\.pipeline train` does not read",
               "stage_evaluate": r"params\.yaml under deps",
               "repro_runs": r"did not run featurize: it declares no outs"},
         fix="Copy each stage's row of the table: every file it writes under outs, exactly the parameters it "
             "reads under params, the keys (not params.yaml) under params."),
    Case("hard_coded_seed", "params.yaml has the default seed typed in instead of the notebook's `seed` variable",
         edits=(replace("answer-10", '{"seed": seed, "featurize": {"test_size"', '{"seed": 0, "featurize": {"test_size"'),),
         expect={"params_written": "failed"}, says={"params_written": r"seed is 0, but the notebook ran with seed=23"},
         fix='params = {"seed": seed, ...}: the grader runs the notebook with another seed.'),
    Case("own_settings", "params.yaml trains gradient boosting at threshold 0.4 instead of exercise 3's settings",
         edits=(replace("answer-10", '"train": {"model": "logreg"}, "evaluate": {"threshold": 0.5}',
                        '"train": {"model": "hgb"}, "evaluate": {"threshold": 0.4}'),),
         expect={"params_written": "failed"},
         says={"params_written": r"train\.model is 'hgb'.*evaluate\.threshold is 0\.4"},
         fix="Write exactly the settings exercise 3 lists."),
    Case("regenerated_raw_data", "data/raw.csv written from the full course dataset instead of copied from data_path",
         edits=(replace("answer-04", 'shutil.copy(data_path, project / "data" / "raw.csv")',
                        'write_breast_cancer_csv(project / "data" / "raw.csv")'),),
         expect={"data_versioned": "failed"}, says={"data_versioned": r"copy data_path itself"},
         fix="shutil.copy(data_path, project / 'data' / 'raw.csv'): the grader gives you its own CSV."),
    Case("absolute_remote", "the remote added as an absolute path, so a copy of the project elsewhere has no remote",
         edits=(replace("answer-07", '"storage", "../remote"]', '"storage", str(remote.resolve())]'),),
         expect={"remote_configured": "failed"}, says={"remote_configured": r"absolute location .*\.\./remote"},
         fix="dvc remote add -d storage ../remote"),
    Case("remote_not_default", "the remote added without -d, every push naming it with -r",
         edits=(replace("answer-07", '["dvc", "remote", "add", "-d", "storage", "../remote"]',
                        '["dvc", "remote", "add", "storage", "../remote"]'),
                replace("answer-07", '["dvc", "push"]', '["dvc", "push", "-r", "storage"]'),
                replace("answer-16", '["dvc", "push"]', '["dvc", "push", "-r", "storage"]')),
         expect={"remote_configured": "failed"}, says={"remote_configured": r"no default remote"},
         fix="dvc remote add -d storage ../remote: -d makes it the default."),
    Case("never_pushed", "`dvc push` left out of exercises 2 and 5: the remote was configured but holds nothing",
         edits=(replace("answer-07", 'print(sh(["dvc", "push"], project))', 'print(sh(["dvc", "remote", "list"], project))'),
                replace("answer-16", 'print(sh(["dvc", "push"], project))\n', "")),
         expect={"pull_restores": "failed", "outputs_pushed": "failed"},
         says={"pull_restores": r"does not hold the raw data .*run `dvc push`"},
         fix="dvc push after dvc add (exercise 2) and after dvc repro (exercise 5)."),
    Case("no_push_no_commit", "half-done exercise 5: `dvc repro`, but no `dvc push` and no Git commit",
         edits=(answer("answer-16", """
             repro_output = sh(["dvc", "repro"], project)
             print(repro_output)
             """),),
         expect={"outputs_pushed": "failed", "project_committed": "failed"},
         says={"outputs_pushed": r"lacks the output\(s\) data/test\.csv, data/train\.csv, models/model\.skops",
               "project_committed": r"no commit"},
         fix="dvc push, then git add -A and git commit: what a colleague needs to reproduce your run."),
    Case("commit_before_repro", "the project committed to Git before `dvc repro`, so the commit lacks dvc.lock",
         edits=(answer("answer-16", """
             sh(["git", "add", "-A"], project)
             sh(["git", "commit", "-q", "-m", "Week 4: validated DVC pipeline"], project)
             repro_output = sh(["dvc", "repro"], project)
             print(repro_output)
             print(sh(["dvc", "push"], project))
             """),),
         expect={"project_committed": "failed"}, says={"project_committed": r"last commit lacks dvc\.lock"},
         fix="Commit after `dvc repro` and `dvc push`."),
    Case("exercise_5_skipped", "half-done lab: exercises 1-4 done, exercise 5 (repro, push, commit) left as the stub",
         edits=(answer("answer-16", 'raise NotImplementedError("exercise 5")'),),
         expect={"pipeline_ran": "failed", "outputs_pushed": "failed", "project_committed": "failed",
                 "repro_identical": "failed"},
         says={"pipeline_ran": r"dvc\.lock was not found", "repro_identical": r"dvc\.lock was not found",
               "project_committed": r"no commit"},
         fix="Run `dvc repro`, `dvc push`, and commit the project."),
    Case("evaluate_on_train", "evaluate scores the model on the training CSV while declaring the test CSV",
         edits=(replace("answer-13", "evaluate models/model.skops data/test.csv metrics.json",
                        "evaluate models/model.skops data/train.csv metrics.json"),),
         expect={"stage_evaluate": "failed"},
         says={"stage_evaluate": r"cmd must be `python -m mlops_kit\.pipeline evaluate models/model\.skops "
                                 r"data/test\.csv metrics\.json`"},
         fix="Evaluate on data/test.csv, the rows the model never saw."),
    Case("validate_is_a_copy", "the validate stage copies the raw CSV instead of validating it",
         edits=(replace("answer-13", RUN + 'validate data/raw.csv data/validated.csv"',
                        '"cp data/raw.csv data/validated.csv"'),),
         expect={"stage_validate": "failed", "validation_rejects_corrupt": "failed"},
         says={"stage_validate": r"cmd must be .*found `cp data/raw\.csv data/validated\.csv`",
               "validation_rejects_corrupt": r"accepted the corrupted CSV; expected"},
         fix="validate: python -m mlops_kit.pipeline validate data/raw.csv data/validated.csv"),
    Case("featurize_without_params", "featurize declares no params, so changing the split does not rerun it",
         edits=(replace("answer-13", '"deps": ["data/validated.csv"], "params": ["seed", "featurize"],',
                        '"deps": ["data/validated.csv"],'),),
         expect={"stage_featurize": "failed", "param_change_reruns_downstream": "failed"},
         says={"stage_featurize": r"reads the parameter\(s\) seed, featurize\.test_size, featurize\.log_features",
               "param_change_reruns_downstream": r"reran nothing.*Not rerun: featurize, train, evaluate"},
         fix="params: [seed, featurize] on the featurize stage."),
    Case("validate_depends_on_params_file", "validate lists params.yaml as a file dependency, so every parameter "
         "change reruns validation",
         edits=(replace("answer-13", '"deps": ["data/raw.csv"]', '"deps": ["data/raw.csv", "params.yaml"]'),),
         expect={"stage_validate": "failed", "param_change_reruns_downstream": "failed"},
         says={"stage_validate": r"params\.yaml under deps",
               "param_change_reruns_downstream": r"Rerun for nothing: validate"},
         fix="validate reads no parameter: deps [data/raw.csv] only."),
    Case("own_train_script", "train runs the learner's own script, which saves the model with plain skops "
         "(memory addresses in the file), so a rerun writes other bytes",
         edits=(replace("answer-13", 'run = "python -m mlops_kit.pipeline"\n', '''run = "python -m mlops_kit.pipeline"
(project / "train.py").write_text("""import sys
import pandas as pd
from mlops_kit.classifier import save_model
from mlops_kit.pipeline import load_params, train
params = load_params()
save_model(train(pd.read_csv(sys.argv[1]), params["train"]["model"], params["seed"]), sys.argv[2])
""")
'''),
                replace("answer-13", RUN + 'train data/train.csv models/model.skops",\n              "deps": ["data/train.csv"]',
                        '"python train.py data/train.csv models/model.skops",\n'
                        '              "deps": ["train.py", "data/train.csv"]')),
         expect={"stage_train": "failed", "repro_identical": "failed"},
         says={"stage_train": r"cmd must be .*train\.py", "repro_identical": r"models/model\.skops \(stage train\)"},
         fix="Use the lesson's stage runner: save_reproducible writes the same bytes for the same model."),
    Case("metrics_edited_by_hand", "metrics.json rounded by hand after `dvc repro`",
         edits=(add_cell("answer-16", """
             import json
             scores = json.loads((project / "metrics.json").read_text())
             (project / "metrics.json").write_text(json.dumps({k: round(v, 3) for k, v in scores.items()}))
             """),),
         expect={"pipeline_ran": "failed"}, says={"pipeline_ran": r"metrics\.json differs from the md5 that dvc\.lock"},
         fix="Never edit outputs: change the code or the parameters and `dvc repro`."),
    Case("stages_out_of_order", "dvc.yaml lists train before featurize",
         edits=(replace("answer-13", FEATURIZE, ""), replace("answer-13", '    "evaluate": {', FEATURIZE + '    "evaluate": {')),
         expect={"stages_declared": "failed"},
         says={"stages_declared": r"in this order; found validate, train, featurize, evaluate"},
         fix="Declare the stages in the order they run: validate, featurize, train, evaluate."),
]
