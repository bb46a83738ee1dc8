"""Wrong-answer cases of lab 05: mistakes learners make with a tracked sweep, and the verdict each deserves."""

import textwrap

from grader.cases import Case, answer, replace

SWEEP = "answer-10"


def _sweep(fit: str = "pipeline.fit(X_train, y_train)", test: str = "evaluate(pipeline, X_test, y_test)",
           log: str = "log_sklearn_model(pipeline, X_train)") -> str:
    """The sweep written out by hand (what log_candidate does), with one line of it changed."""
    return textwrap.dedent(f'''
        from mlops_kit.classifier import cross_validate_auc, evaluate

        grid = [("logreg", {{"C": c}}) for c in (0.01, 0.1, 1.0, 10.0)] + [("hgb", {{"max_depth": d}}) for d in (2, 3)]
        with mlflow.start_run(run_name="sweep") as parent:
            for kind, params in grid:
                with mlflow.start_run(run_name=f"{{kind}}-{{params}}", nested=True):
                    pipeline = build_pipeline(kind, seed=seed)
                    pipeline.set_params(**{{f"model__{{k}}": v for k, v in params.items()}})
                    cv = cross_validate_auc(pipeline, X_train, y_train, folds=3, seed=seed)
                    {fit}
                    mlflow.log_params(params)
                    mlflow.log_metrics({{"cv_roc_auc": cv["mean"], **{test}}})
                    mlflow.set_tags(tags)
                    {log}
        parent_run_id = parent.info.run_id
        ''')


CASES = [
    Case("typed_git_sha", "typed the commit SHA they saw in their own terminal into the tags",
         edits=(replace("answer-07", '\ntags = {"git_sha": git_sha("."),',
                        '\ntags = {"git_sha": "3f9c2a71e5b04d8c9a6e1f2b7d3c4e5a6b7c8d9e",'),),
         expect={"lineage_tags": "partial"}, says={"lineage_tags": r"typed in.*git_sha\('\.'\)"},
         fix="Compute the tags when the notebook runs: git_sha('.') and data_version(data_path)."),
    Case("data_version_of_wrong_path", "asked for the data version of the .dvc file instead of the data file",
         edits=(replace("answer-07", '\ntags = {"git_sha": git_sha("."), "data_version": data_version(data_path)}',
                        '\ntags = {"git_sha": git_sha("."), "data_version": data_version(data_path + ".dvc")}'),),
         expect={"lineage_tags": "partial"}, says={"lineage_tags": r"data_version is 'unknown'.*data_path itself"},
         fix="data_version(data_path) finds the .dvc file beside the data itself."),
    Case("one_model_six_runs", "fitted one pipeline once and logged it in six runs under six claimed values of C",
         edits=(answer(SWEEP, '''
                from mlops_kit.classifier import cross_validate_auc, evaluate

                pipeline = build_pipeline("logreg", seed=seed)
                cv = cross_validate_auc(pipeline, X_train, y_train, folds=3, seed=seed)
                pipeline.fit(X_train, y_train)
                with mlflow.start_run(run_name="sweep") as parent:
                    for C in (0.01, 0.1, 1.0, 10.0, 100.0, 1000.0):
                        with mlflow.start_run(run_name=f"logreg-C={C}", nested=True):
                            mlflow.log_params({"C": C})
                            mlflow.log_metrics({"cv_roc_auc": cv["mean"], **evaluate(pipeline, X_test, y_test)})
                            mlflow.set_tags(tags)
                            log_sklearn_model(pipeline, X_train)
                parent_run_id = parent.info.run_id
                '''),),
         expect={"sweep_logged": "failed", "params_match_model": "partial"},
         says={"sweep_logged": r"only 1 different model", "params_match_model": r"5 of 6 .*C logged"},
         fix="Build, fit and log a new pipeline with each candidate's own hyperparameters."),
    Case("relabelled_one_model", "fitted one pipeline once, then set each candidate's C on it (without refitting) "
         "and logged it six times, with an honest CV of each setting",
         edits=(answer(SWEEP, '''
                from mlops_kit.classifier import cross_validate_auc, evaluate

                pipeline = build_pipeline("logreg", seed=seed).fit(X_train, y_train)
                with mlflow.start_run(run_name="sweep") as parent:
                    for C in (0.01, 0.1, 1.0, 10.0, 100.0, 1000.0):
                        with mlflow.start_run(run_name=f"logreg-C={C}", nested=True):
                            pipeline.set_params(model__C=C)
                            cv = cross_validate_auc(pipeline, X_train, y_train, folds=3, seed=seed)
                            mlflow.log_params({"C": C})
                            mlflow.log_metrics({"cv_roc_auc": cv["mean"], **evaluate(pipeline, X_test, y_test)})
                            mlflow.set_tags(tags)
                            log_sklearn_model(pipeline, X_train)
                parent_run_id = parent.info.run_id
                '''),),
         expect={"sweep_logged": "failed", "fitted_on_train": "partial"},
         says={"sweep_logged": r"only 1 different model.*share one model \(the same predictions on every test row\)",
               "fitted_on_train": r"5 of 6 .*predicts differently"},
         fix="Fit each candidate after setting its hyperparameters: a model relabelled after fitting is the same model."),
    Case("nan_run_logged", "caught a failing candidate and logged it anyway, with NaN metrics, beside the good ones",
         edits=(replace(SWEEP, '''    for kind, params in grid:
        log_candidate(build_pipeline(kind, seed=seed), params, X_train, y_train, X_test, y_test, tags,
                      seed=seed, folds=3, run_name=f"{kind}-{params}")''',
                        '''    for kind, params in grid + [("hgb", {"learning_rate": -1.0})]:
        try:
            log_candidate(build_pipeline(kind, seed=seed), params, X_train, y_train, X_test, y_test, tags,
                          seed=seed, folds=3, run_name=f"{kind}-{params}")
        except Exception:
            with mlflow.start_run(run_name=f"{kind}-{params}-failed", nested=True):
                mlflow.log_params(params)
                mlflow.log_metrics({"cv_roc_auc": float("nan"), "roc_auc": float("nan")})
                mlflow.set_tags(tags)'''),),
         expect={"sweep_logged": "partial"}, says={"sweep_logged": r"cv_roc_auc is nan.*the other 6 are graded"},
         fix="Leave a failed candidate out of the sweep (or fix it); never log NaN as its score."),
    Case("refit_on_all_rows", "refitted each candidate on all rows (train + test) before logging it",
         edits=(answer(SWEEP, _sweep(fit="pipeline.fit(X, y)")),),
         expect={"fitted_on_train": "failed"}, says={"fitted_on_train": r"fitted on train \+ test"},
         fix="Fit on X_train only: the test rows must stay unseen for roc_auc to be a test score."),
    Case("test_metric_on_train", "logged roc_auc measured on the training rows",
         edits=(answer(SWEEP, _sweep(test="evaluate(pipeline, X_train, y_train)")),),
         expect={"metric_reproduces": "failed"}, says={"metric_reproduces": r"6 of 6 .*its model gives"},
         fix="evaluate(pipeline, X_test, y_test): the test split the model never saw."),
    Case("hard_coded_cv_seed", "passed seed=0 to the cross-validation instead of the notebook's seed",
         edits=(replace(SWEEP, "seed=seed, folds=3,", "seed=0, folds=3,"),),
         expect={"cv_reproduces": "failed"}, says={"cv_reproduces": r"seed 23.*recomputed"},
         fix="Use the seed variable: the grader runs the notebook with another seed."),
    Case("no_signature", "logged the models by hand with skops but without a signature or an input example",
         edits=(answer(SWEEP, "import mlflow.sklearn\nfrom mlops_kit.tracking import skops_trusted_types\n" + _sweep(
             log='mlflow.sklearn.log_model(pipeline, name="model", serialization_format="skops", '
                 'skops_trusted_types=skops_trusted_types(pipeline), pip_requirements=["scikit-learn", "skops"])')),),
         expect={"model_reloads": "partial"}, says={"model_reloads": r"without a signature and an input example"},
         fix="log_sklearn_model(pipeline, X_train) logs the signature and a 5-row input example."),
    Case("best_by_test_score", "chose the best run by its test roc_auc",
         edits=(replace("answer-13", "\nbest = best_run(experiment_id, parent_run_id)",
                        '\nbest = best_run(experiment_id, parent_run_id, metric="roc_auc")'),),
         expect={"best_by_cv": "failed"}, says={"best_by_cv": r"highest test roc_auc"},
         fix="Choose by cv_roc_auc; the test split only reports the chosen model's score."),
    Case("best_run_rounded", "wrote rounded metrics into best_run.json and left out model_uri",
         edits=(replace("answer-13", '''report = {"run_id": best["run_id"], "model_uri": best["model_uri"],
          "cv_roc_auc": metrics["cv_roc_auc"], "roc_auc": metrics["roc_auc"]}''',
                        '''report = {"run_id": best["run_id"], "cv_roc_auc": round(metrics["cv_roc_auc"], 3),
          "roc_auc": round(metrics["roc_auc"], 3)}'''),),
         expect={"best_run_copied": "failed"}, says={"best_run_copied": r"no model_uri.*copy the logged value"},
         fix="Copy the run's model_uri and its metrics as logged."),
    Case("best_is_the_parent", "wrote the sweep's parent run into best_run.json instead of the chosen child",
         edits=(replace("answer-13", 'report = {"run_id": best["run_id"],', 'report = {"run_id": parent_run_id,'),),
         expect={"best_run_named": "failed", "best_run_copied": "skipped", "best_by_cv": "skipped",
                 "holdout_confirms": "skipped"}, says={"best_run_named": r"not a child run of the sweep"},
         fix="best_run_json names the chosen child run: best['run_id']."),
    Case("parent_nested", "wrapped the sweep in an outer run, so the sweep's parent is itself nested",
         edits=(replace(SWEEP, '\nwith mlflow.start_run(run_name="sweep") as parent:',
                        '\nwith mlflow.start_run(run_name="lab05"), mlflow.start_run(run_name="sweep", nested=True) as '
                        'parent:'),),
         expect={"parent_run": "failed"}, says={"parent_run": r"itself nested"},
         fix="The sweep's parent is a top-level run: start it with mlflow.start_run()."),
    Case("two_features", "swept models that see only two hand-picked features, to keep it simple",
         edits=(replace(SWEEP, "grid = [", '''from sklearn.compose import ColumnTransformer


def two_features(kind, seed):
    pipeline = build_pipeline(kind, seed=seed)
    pipeline.steps.insert(0, ("pick", ColumnTransformer([("keep", "passthrough", ["mean_texture", "mean_symmetry"])])))
    return pipeline


grid = ['''), replace(SWEEP, "log_candidate(build_pipeline(kind, seed=seed)", "log_candidate(two_features(kind, seed)")),
         expect={"holdout_confirms": "failed"}, says={"holdout_confirms": r"below 0\.95"},
         fix="Give the candidates every feature: the sweep tunes hyperparameters, not the data."),
    Case("artifacts_beside_store", "opened the store by hand, with the artifacts in output_dir/mlruns",
         edits=(answer("answer-04", '''
                mlflow.set_tracking_uri(f"sqlite:///{(Path(output_dir) / 'mlflow.db').resolve()}")
                experiment_id = mlflow.create_experiment(EXPERIMENT,
                                                         artifact_location=(Path(output_dir) / "mlruns").resolve().as_uri())
                mlflow.set_experiment(experiment_id=experiment_id)
                '''),),
         expect={"store_opens": "partial"}, says={"store_opens": r"mlruns, not in outputs/artifacts"},
         fix="use_local_store(output_dir, EXPERIMENT) keeps the artifacts in output_dir/artifacts."),
]
