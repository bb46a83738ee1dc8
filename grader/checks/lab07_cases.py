"""Wrong-answer cases of lab 07: mistakes learners make when they serve a registered model."""

from grader.cases import Case, replace

SERVICE, LOCUST, RUN = "answer-04", "answer-07", "answer-09"
LIVE = ("service_ready", "predict_contract", "rejects_bad_input", "batch_sizes", "metadata", "ready_means_ready",
        "latency_under_load", "clean_shutdown", "golden_predictions")
LOAD = "        self.model, self.info = load_champion(REGISTRY)\n"
SCORE = "    def _score(self, rows: list) -> list:\n"

CASES = [
    Case("class_renamed", "named the service class Classifier, so `service:CancerClassifier` finds nothing",
         edits=(replace(SERVICE, "class CancerClassifier:", "class Classifier:"),),
         expect={"service_defined": "failed", "load_test_ran": "failed", **{name: "skipped" for name in LIVE}},
         says={"service_defined": r"defines no class CancerClassifier \(classes found: \['Classifier'\]\)"},
         fix="Keep the class name the lab gives: the grader serves service:CancerClassifier."),
    Case("loads_through_models_uri", "loaded the model with mlflow.sklearn.load_model('models:/...@champion'), which "
         "writes into the registry: it works at home and fails on the grader's read-only mount",
         edits=(replace(SERVICE, LOAD, "        import mlflow\n\n"
                        "        mlflow.set_tracking_uri(f\"sqlite:///{os.path.abspath(REGISTRY)}/mlflow.db\")\n"
                        "        self.model = mlflow.sklearn.load_model(\"models:/breast-cancer-classifier@champion\")\n"
                        "        self.info = {\"model_name\": \"breast-cancer-classifier\"}\n"),),
         expect={"service_ready": "failed", "load_test_ran": "failed",
                 **{name: "skipped" for name in LIVE if name != "service_ready"}},
         says={"service_ready": r"absolute artifact paths .*read-only.*load_champion",
               "load_test_ran": r"load_stats.csv was not written.*not ready"},
         fix="Open the registry with load_champion(REGISTRY_DIR): it resolves the alias and only reads."),
    Case("lax_contract", "kept pydantic's defaults (NaN and infinity parse as floats) and gave the batch no upper "
         "bound; the locustfile posts the bare row without the features wrapper",
         edits=(replace(SERVICE, 'ConfigDict(extra="forbid", allow_inf_nan=False)', 'ConfigDict(extra="forbid")'),
                replace(SERVICE, "Field(min_length=1, max_length=MAX_BATCH)", "Field(min_length=1)"),
                replace(LOCUST, 'json={"features": random.choice(ROWS)}', "json=random.choice(ROWS)")),
         expect={"rejects_bad_input": "partial", "load_test_ran": "failed"},
         says={"rejects_bad_input": r"3 of 6 .*NaN .*was accepted.*infinity .*(was accepted|crashed the service "
                                    r"\(500\)).*257 rows was accepted",
               "load_test_ran": r"load-test requests failed"},
         fix="allow_inf_nan=False and max_length=MAX_BATCH; a load test's requests must follow the contract."),
    Case("both_class_probabilities", "answered predict_proba's whole row, [p(malignant), p(benign)], as the "
         "probability, and the label as its argmax",
         edits=(replace(SERVICE, "        [probability] = self._score([features])\n        return {\"probability\": probability, "
                        "\"label\": int(probability >= 0.5),",
                        "        proba = self.model.predict_proba(pd.DataFrame([features.model_dump()], "
                        "columns=list(FEATURES)))[0]\n        return {\"probability\": proba.tolist(), "
                        "\"label\": int(proba.argmax()),"),),
         expect={"predict_contract": "failed"}, says={"predict_contract": r"probability is \[.*expected a number"},
         fix="Answer the probability of the positive class: predict_proba(...)[:, 1]."),
    Case("typed_in_metadata", "typed the version seen at home into /metadata and capped batches at 100 rows",
         edits=(replace(SERVICE, "        return dict(self.info)",
                        '        return {"model_name": "breast-cancer-classifier", "model_version": "2", '
                        '"git_sha": self.info["git_sha"]}'),
                replace(SERVICE, "max_length=MAX_BATCH", "max_length=100")),
         expect={"metadata": "failed", "batch_sizes": "failed"},
         says={"metadata": r"model_version is '2', the registry says '[13]'.*not typed in",
               "batch_sizes": r"a batch of 256 row\(s\) answered 400"},
         fix="Answer what load_champion returned; accept batches up to MAX_BATCH."),
    Case("serves_the_version_seen_at_home", "loaded version 2 by number, the champion of the registry built at home",
         edits=(replace(SERVICE, LOAD, '        self.model, self.info = load_champion(REGISTRY, alias="2")\n'),),
         expect={"metadata": "failed", "golden_predictions": "failed"},
         says={"golden_predictions": r"version 2's, not the champion's"},
         fix="Load the alias champion: the version behind it changes; the alias is the contract."),
    Case("lazy_loading", "loaded the model on the first request and kept no __is_ready__, so /readyz says ready at once",
         edits=(replace(SERVICE, "        threading.Thread(target=self._load, daemon=True).start()  # live at once, "
                        "ready once loaded\n", ""),
                replace(SERVICE, "    def __is_ready__(self) -> bool:\n        return self.model is not None\n\n", ""),
                replace(SERVICE, SCORE, SCORE + "        if self.model is None:\n            self._load()\n")),
         expect={"ready_means_ready": "failed"},
         says={"ready_means_ready": r"first /predict took .* loaded on the first request|answered 50\d.*does not wait"},
         fix="Load in __init__ (in a background thread) and say ready only once the model is there."),
    Case("reloads_per_request", "reopened the registry on every request, to always serve the newest champion",
         edits=(replace(SERVICE, SCORE, SCORE + "        self._load()\n"),),
         expect={"ready_means_ready": "failed", "latency_under_load": "failed"},
         says={"latency_under_load": r"requests failed|p95 latency .*x the reference"},
         fix="Load once; pick up a new champion by redeploying (week 9) or a guarded background refresh."),
    Case("drains_forever", "installed a SIGTERM handler that only marks the service as draining, so it never exits",
         edits=(replace(SERVICE, "        threading.Thread(target=self._load, daemon=True).start()",
                        "        import signal\n\n        self.draining = False\n"
                        "        signal.signal(signal.SIGTERM, self._drain)\n"
                        "        threading.Thread(target=self._load, daemon=True).start()"),
                replace(SERVICE, "    def __is_ready__", "    def _drain(self, *_) -> None:\n"
                        "        self.draining = True  # finish the requests in flight... and then?\n\n"
                        "    def __is_ready__")),
         expect={"clean_shutdown": "failed"}, says={"clean_shutdown": r"still running .* after SIGTERM"},
         fix="A SIGTERM handler must end in an exit; BentoML's own handler already drains requests."),
]
