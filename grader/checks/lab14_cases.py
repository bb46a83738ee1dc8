"""Wrong-answer cases of lab 14: mistakes learners make on their first feature pipeline and feature store."""

from grader.cases import Case, replace

YAML, DEFINITIONS, FLOW, TRAIN, SERVE = "answer-04", "answer-05", "answer-07", "answer-10", "answer-12"

CASES = [
    Case("sqlite_online_store", "kept the online store of Feast's template (SQLite) instead of Redis",
         edits=(replace(YAML, "    type: redis\n    connection_string: ${REDIS_URL}",
                        "    type: sqlite\n    path: data/online_store.db"),),
         expect={"feature_repository": "failed"},
         says={"feature_repository": r"the online store is 'sqlite', not redis"},
         fix="online_store: type redis, connection_string ${REDIS_URL}: the lab serves from a real Redis."),
    Case("ignored_the_dsn", "connected to a PostgreSQL address written into flow.py instead of the `dsn` argument",
         edits=(replace(FLOW, "    with psycopg.connect(dsn, connect_timeout=5) as conn:",
                        '    dsn = os.environ.get("DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres")\n'
                        "    with psycopg.connect(dsn, connect_timeout=5) as conn:"),
                replace(FLOW, "import sys\n", "import os\nimport sys\n")),
         expect={"flow_runs": "failed",
                 **{name: "skipped" for name in ("flow_retries", "flow_idempotent", "no_pii_in_store", "cleans_events",
                                                 "point_in_time", "online_matches_offline", "serves_online_features",
                                                 "serves_its_model")}},
         says={"flow_runs": r"never connected to the grader's PostgreSQL at the DSN build_features was given"},
         fix="Read from the `dsn` the flow is given: the grader's database, like production's, is not yours."),
    Case("no_retries", "read PostgreSQL in a task without retries (it worked in the notebook, where the database was "
         "already up)",
         edits=(replace(FLOW, "@task(retries=3, retry_delay_seconds=2)", "@task"),),
         expect={"flow_retries": "failed"},
         says={"flow_retries": r"dropped the flow's first connection.*the flow failed instead of retrying"},
         fix="@task(retries=3, retry_delay_seconds=2) on the task that connects: databases restart."),
    Case("appends_each_run", "added each run's rows to the feature file instead of replacing it",
         edits=(replace(FLOW, "    features.to_parquet(partial, index=False)\n",
                        "    if target.exists():\n"
                        "        features = pd.concat([pd.read_parquet(target), features], ignore_index=True)\n"
                        "    features.to_parquet(partial, index=False)\n"),),
         expect={"flow_idempotent": "failed"},
         says={"flow_idempotent": r"the rerun appended instead of replacing"},
         fix="Write the whole file each run (a temporary file, then rename): a rerun must leave the same rows."),
    Case("kept_the_email", "tokenised the e-mail into `customer` but kept the e-mail column beside it",
         edits=(replace(FLOW, 'return events.drop(columns=["email"]).assign(customer=customers)',
                        "return events.assign(customer=customers)"),
                replace(FLOW, 'return features.astype({"txn_count_7d": "int64"})[["customer", "event_timestamp", '
                        '*FEATURES]]',
                        'emails = events.reset_index().groupby("customer")["email"].first()\n'
                        '    features = features.join(emails, on="customer")\n'
                        '    return features.astype({"txn_count_7d": "int64"})[["customer", "event_timestamp", '
                        '*FEATURES, "email"]]')),
         expect={"no_pii_in_store": "failed"},
         says={"no_pii_in_store": r"personal data reached the feature store: a customer's e-mail in "
                                  r"feature_repo/data/customer_stats\.parquet"},
         fix="Drop the e-mail (and the name) once the token is made: no feature needs them."),
    Case("no_dedupe", "trusted the source: counted every delivered event, the ones delivered twice included",
         edits=(replace(FLOW, '    events = events.drop_duplicates("event_id")\n', ""),),
         expect={"cleans_events": "failed", "point_in_time": "failed"},
         varies={"online_matches_offline": "fails only where the grader's events repeat a customer's last purchases"},
         says={"cleans_events": r"events delivered twice \(the same event_id\) were counted twice",
               "point_in_time": r"they match features that count duplicated events twice"},
         fix="drop_duplicates('event_id') before anything is counted: sources deliver at least once."),
    Case("whole_history", "computed each customer's statistics over all their events and stamped them on every row",
         edits=(replace(FLOW, '''    features = pd.DataFrame({
        "txn_count_7d": by.rolling("7D", closed="right").count(),
        "amount_sum_7d": by.rolling("7D", closed="right").sum(),
        "amount_mean_30d": by.rolling("30D", closed="right").mean(),
    }).reset_index()''', '''    features = pd.DataFrame({
        "customer": events["customer"], "txn_count_7d": by.transform("count"),
        "amount_sum_7d": by.transform("sum"), "amount_mean_30d": by.transform("mean"),
    }).reset_index()'''),),
         expect={"point_in_time": "failed", "online_matches_offline": "failed"},
         says={"point_in_time": r"whole history, later events included: future leakage"},
         fix="Each row's windows end at its own event and look back only: groupby().rolling('7D', closed='right')."),
    Case("ttl_one_day", "copied Feast's template and kept its one-day TTL",
         edits=(replace(DEFINITIONS, "entities=[customer], ttl=timedelta(days=30)",
                        "entities=[customer], ttl=timedelta(days=1)"),),
         expect={"point_in_time": "failed"},
         says={"point_in_time": r"the feature view's ttl is shorter than 30 days"},
         fix="ttl=timedelta(days=30): how old a feature row may be and still describe the customer."),
    Case("serves_from_the_file", "served the latest row of the parquet file instead of asking the online store",
         edits=(replace(SERVE, '''    online = STORE.get_online_features(features=[f"customer_stats:{name}" for name in FEATURES],
                                       entity_rows=[{"customer": customer}]).to_dict()
    features = {name: online[name][0] for name in FEATURES}''',
                        '''    table = pd.read_parquet(HERE / "feature_repo" / "data" / "customer_stats.parquet")
    mine = table[table["customer"] == customer].sort_values("event_timestamp")
    features = {name: (mine[name].iloc[-1].item() if len(mine) else None) for name in FEATURES}'''),),
         expect={"serves_online_features": "failed", "serves_its_model": "skipped"},
         says={"serves_online_features": r"answered the features the store held before the grader changed them"},
         fix="Call get_online_features inside predict: the online store is what serving reads, per request."),
    Case("served_the_label", "answered the predicted class (0 or 1) as the churn probability",
         edits=(replace(SERVE, '"churn_probability": float(MODEL.predict_proba(row[list(FEATURES)])[0, 1])',
                        '"churn_probability": float(MODEL.predict(row[list(FEATURES)])[0])'),),
         expect={"serves_its_model": "failed"},
         says={"serves_its_model": r"the served probability is not model\.skops's"},
         fix="predict_proba(row)[0, 1]: a probability, which a threshold turns into a decision later."),
]
