"""Lab 14 — Capstone C, features in batch served online: the learner's Prefect flow is run by the grader on hidden
events in a PostgreSQL of its own (whose first connection it drops) three times, against a real Redis; their Feast
store is read at hidden entity/timestamp pairs and online, the online store edited, and their `predict` called for
hidden e-mails; every file of the feature repository and every Redis value is searched for the events' PII. The
expected features are recomputed here from the hidden events."""

from __future__ import annotations

import hashlib
import json
import math

import numpy as np
import pandas as pd

from grader.checks.common import Checks, Fail, learner_yaml, log_tail
from grader.labs import Lab
from grader.sandbox import Limits
from grader.secret import seed_for

LAB = Lab(
    id="14_feature_store",
    title="Capstone C: features in batch, served online",
    week=14,
    minutes=120,
    objectives=(
        "build point-in-time features from raw events in PostgreSQL with a Prefect flow that retries and can be rerun",
        "tokenise PII with a keyed hash before any feature is built, and keep it out of the feature store",
        "define a Feast feature repository, materialise it into Redis, and train on historical features",
        "serve a model that fetches its customer's online features on every request",
    ),
    lesson="curriculum/14_feature_store.ipynb",
    seed=59,
    timeout=300,
    cell_timeout=150,
    budget=480,
    not_needed=("torch", "rfc3987_syntax", "distributed"),  # Feast's file store reads with Dask
)

CHECKS = Checks()
FEATURES = ("txn_count_7d", "amount_sum_7d", "amount_mean_30d")
WINDOWS = {"txn_count_7d": ("7D", "count"), "amount_sum_7d": ("7D", "sum"), "amount_mean_30d": ("30D", "mean")}
VIEW, TTL = "customer_stats", pd.Timedelta(days=30)
REPO = "feature_repo"
TOLERANCE = 1e-6  # relative, on sums and means of amounts with two decimals
PROBE_LIMITS = Limits(wall_seconds=300)
HIDDEN_CUSTOMERS, HIDDEN_DAYS = 30, 60


def prepare(work):
    """The hidden events (and labels), a tokenising key, and what the grader asks the store, all drawn from the
    installation's secret; the notebook gets only the lab's seed (it draws its own public events)."""
    import secrets

    from mlops_kit.feature_store import make_events

    seed = seed_for(LAB.id, "events") % 2**32
    events, labels = make_events(seed, n_customers=HIDDEN_CUSTOMERS, days=HIDDEN_DAYS)
    key = secrets.token_hex(24)
    return {"seed": LAB.seed, "output_dir": "outputs"}, {"events": events, "labels": labels, "key": key,
                                                          "draw": seed}


# --- the grader's own answer ----------------------------------------------------------------------------------


def token(email: str, key: str, normalise: bool = True) -> str:
    from mlops_kit.feature_store import normalise_email, tokenize

    return tokenize(normalise_email(email) if normalise else email, key.encode())


def feature_rows(events: pd.DataFrame, key: str, *, dedupe: bool = True, clean: bool = True, normalise: bool = True,
                 whole_history: bool = False) -> pd.DataFrame:
    """One row per customer and event time: the features over the windows that end at that event (inclusive).

    The keyword arguments make the mistakes the grader recognises: duplicates kept, invalid amounts kept, e-mails not
    normalised, and aggregates over the customer's whole history (the future included)."""
    frame = events.copy()
    if dedupe:
        frame = frame.drop_duplicates("event_id")
    if clean:
        frame = frame[frame["amount"].notna() & (frame["amount"] >= 0)]
    frame = frame.assign(customer=[token(e, key, normalise) for e in frame["email"]],
                         event_timestamp=pd.to_datetime(frame["event_timestamp"], utc=True))
    frame = frame.sort_values(["customer", "event_timestamp"], kind="stable")
    if whole_history:
        totals = frame.groupby("customer")["amount"].agg(["count", "sum", "mean"])
        rows = frame[["customer", "event_timestamp"]].drop_duplicates().join(totals, on="customer")
        return rows.rename(columns={"count": "txn_count_7d", "sum": "amount_sum_7d", "mean": "amount_mean_30d"})
    indexed = frame.set_index("event_timestamp")
    by = indexed.groupby("customer")["amount"]
    columns = {name: getattr(by.rolling(window, closed="right"), how)() for name, (window, how) in WINDOWS.items()}
    rows = pd.DataFrame(columns).reset_index()
    return rows.groupby(["customer", "event_timestamp"], as_index=False).last()


def as_of(rows: pd.DataFrame, entities: pd.DataFrame, ttl: pd.Timedelta | None = TTL) -> list[dict]:
    """For each entity (customer, timestamp): the latest row at or before it, within `ttl`; None where there is none."""
    found = []
    grouped = {c: g.sort_values("event_timestamp") for c, g in rows.groupby("customer")}
    for entity in entities.itertuples():
        group = grouped.get(entity.customer)
        at = pd.Timestamp(entity.event_timestamp)
        hit = None
        if group is not None:
            before = group[group["event_timestamp"] <= at]
            if len(before) and (ttl is None or at - before["event_timestamp"].iloc[-1] <= ttl):
                hit = before.iloc[-1]
        found.append({n: (None if hit is None else float(hit[n])) for n in FEATURES})
    return found


def hidden_entities(ctx) -> pd.DataFrame:
    """The pairs the grader asks the offline store for: at an event, a second before one, between events, long after
    the last one (past the TTL) and before the first, for customers drawn from the secret."""
    rows = feature_rows(ctx.hidden["events"], ctx.hidden["key"])
    rng = np.random.default_rng(ctx.hidden["draw"] + 1)
    pairs = []
    for customer, group in rows.groupby("customer"):
        times = group["event_timestamp"].sort_values().tolist()
        if len(times) < 3:
            continue
        i = int(rng.integers(1, len(times)))
        gap = times[i] - times[i - 1]
        pairs += [(customer, times[i], "at an event"), (customer, times[i] - pd.Timedelta(seconds=1),
                                                        "a second before an event"),
                  (customer, times[i - 1] + gap / 2, "between two events"),
                  (customer, times[-1] + pd.Timedelta(days=45), "45 days after the last event"),
                  (customer, times[0] - pd.Timedelta(hours=1), "before the first event")]
    frame = pd.DataFrame(pairs, columns=["customer", "event_timestamp", "kind"])
    return frame.sample(n=min(80, len(frame)), random_state=ctx.hidden["draw"] % 2**31).reset_index(drop=True)


def edits(ctx) -> list[dict]:
    """New online values the grader writes for three customers before it calls `predict`."""
    rows = feature_rows(ctx.hidden["events"], ctx.hidden["key"])
    customers = sorted(rows["customer"].unique())[:3]
    return [{"customer": c, "txn_count_7d": 70 + i, "amount_sum_7d": 4321.5 + i, "amount_mean_30d": 432.25 + i}
            for i, c in enumerate(customers)]


def served_emails(ctx) -> dict[str, str | None]:
    """E-mail → the customer it must resolve to: the edited customers (one typed with capitals and spaces), two
    others, and one the store has never seen (None)."""
    events, key = ctx.hidden["events"], ctx.hidden["key"]
    by_token = {}
    for email in events["email"]:
        by_token.setdefault(token(email, key), email.strip().lower())
    edited = [e["customer"] for e in edits(ctx)]
    others = [t for t in sorted(by_token) if t not in edited][:2]
    chosen = {by_token[t]: t for t in edited + others}
    first = next(iter(chosen))
    chosen[f"  {first.upper()} "] = chosen.pop(first)
    chosen["nobody.here@example.com"] = None
    return chosen


def needles(ctx) -> dict[str, str]:
    """Strings that must not appear in the feature store, and what each is: names, e-mails, local parts, and unkeyed
    hashes of the e-mails (reversible with a list of addresses)."""
    events = ctx.hidden["events"]
    found = {}
    for name in events["name"].dropna().unique():
        found[name] = "a customer's name"
    for email in events["email"].unique():
        clean = email.strip().lower()
        found[clean] = "a customer's e-mail"
        found[clean.split("@")[0]] = "the name part of a customer's e-mail"
        found[hashlib.sha256(clean.encode()).hexdigest()[:16]] = "an unkeyed SHA-256 of a customer's e-mail"
        found[hashlib.md5(clean.encode()).hexdigest()[:16]] = "an unkeyed MD5 of a customer's e-mail"  # noqa: S324
    return found


def run(ctx) -> dict:
    """The probe: the flow three times, the store read and edited, predict called (cached for the submission)."""
    events, labels = ctx.hidden["events"], ctx.hidden["labels"]
    entities = hidden_entities(ctx)
    plan = {"outputs": ctx.params["output_dir"], "key": ctx.hidden["key"], "view": VIEW, "features": list(FEATURES),
            "events": json.loads(events.to_json(orient="records", date_format="iso")),
            "labels": json.loads(labels.to_json(orient="records", date_format="iso")),
            "entities": [{"customer": e.customer, "event_timestamp": e.event_timestamp.isoformat()}
                         for e in entities.itertuples()],
            "online": sorted(feature_rows(events, ctx.hidden["key"])["customer"].unique()),
            "edits": edits(ctx), "emails": list(served_emails(ctx)), "needles": needles(ctx)}
    return ctx.probe("feature_probe", {"plan": np.array(json.dumps(plan, sort_keys=True))}, limits=PROBE_LIMITS,
                     needs=(ctx.output("flow.py"),), secret=True)


def flow_answer(ctx) -> dict:
    found = run(ctx)["flow"]
    if "error" in found:
        raise Fail(f"the flow's process {found['error']}: {log_tail(found.get('log', ''))}")
    if "import" in found["answer"]:
        raise Fail(f"flow.py could not be imported: {found['answer']['import']}")
    return found["answer"]


def last_rows(ctx) -> pd.DataFrame:
    """The feature rows the last successful run left in the repository's data folder (every parquet file)."""
    found = run(ctx)
    runs = flow_answer(ctx)["runs"]
    ok = [i for i, r in enumerate(runs) if r["ok"]]
    if not ok:
        raise Fail("no run of the flow succeeded")
    return snapshot_frame(found["snapshots"][ok[-1]])


def snapshot_frame(files: dict) -> pd.DataFrame:
    frames = []
    for name, content in files.items():
        if "error" in content:
            raise Fail(f"feature_repo/data/{name.replace('__', '/')} is not a parquet file Feast can read: "
                       f"{content['error']}")
        frames.append(pd.DataFrame(content["rows"], columns=content["columns"]))
    if not frames:
        raise Fail("the flow wrote no parquet file into feature_repo/data")
    frame = pd.concat(frames, ignore_index=True)
    missing = [c for c in ("customer", "event_timestamp", *FEATURES) if c not in frame.columns]
    if missing:
        raise Fail(f"the feature file has no column {missing} (it has {list(frame.columns)[:10]})")
    return frame.assign(event_timestamp=pd.to_datetime(frame["event_timestamp"], utc=True))


def close(a, b) -> bool:
    if a is None or b is None or (isinstance(a, float) and math.isnan(a)) or (isinstance(b, float) and math.isnan(b)):
        return (a is None or (isinstance(a, float) and math.isnan(a))) == (b is None or (isinstance(b, float)
                                                                                         and math.isnan(b)))
    try:
        return abs(float(a) - float(b)) <= TOLERANCE * max(1.0, abs(float(b)))
    except (TypeError, ValueError):
        return False


# --- checks ---------------------------------------------------------------------------------------------------


@CHECKS.add(points=2, hint="feature_store.yaml: provider local, online_store type redis with connection_string "
            "${REDIS_URL}, offline_store type file, a registry under data/; features.py beside it",
            section="14.6 Feast: entities, sources, feature views")
def feature_repository(ctx):
    """feature_repo/ is a Feast repository for this machine's stores: Redis online (its address from $REDIS_URL),
    files offline, a local registry."""
    text = ctx.read_text(ctx.output(f"{REPO}/feature_store.yaml"))
    config = learner_yaml(text, "feature_store.yaml")
    if not isinstance(config, dict):
        raise Fail("feature_store.yaml is not a mapping")
    problems = []
    if config.get("provider") != "local":
        problems.append(f"provider is {config.get('provider')!r}, not 'local'")
    online = config.get("online_store") or {}
    if not isinstance(online, dict) or online.get("type") != "redis":
        problems.append(f"the online store is {online.get('type') if isinstance(online, dict) else online!r}, not "
                        "redis (the lab serves from Redis)")
    elif "${REDIS_URL}" not in str(online.get("connection_string", "")):
        problems.append(f"the Redis address is {online.get('connection_string')!r}: read it from ${{REDIS_URL}} "
                        "(the grader's Redis listens on a port of its own)")
    offline = config.get("offline_store", {"type": "file"})
    if not isinstance(offline, dict) or offline.get("type", "file") not in ("file", "dask"):
        problems.append(f"the offline store is {offline!r}, not type file (parquet files in the repository)")
    registry = config.get("registry")
    registry = registry.get("path") if isinstance(registry, dict) else registry
    if not isinstance(registry, str) or registry.startswith(("/", "~")) or ".." in registry or "://" in registry:
        problems.append(f"the registry is {registry!r}: a path relative to the repository, like data/registry.db")
    if not ctx.exists(ctx.output(f"{REPO}/features.py")):
        problems.append("feature_repo/features.py (the entity, source and feature view) is missing")
    if problems:
        raise Fail("; ".join(problems))


@CHECKS.add(points=3, hint="build_features(dsn, repo) reads raw_events from the DSN it is given, writes the "
            "features into repo/data, applies the definitions and materialises them; run it twice in the notebook",
            section="14.5 A batch flow with Prefect: tasks, retries, idempotence", visible=False)
def flow_runs(ctx):
    """The flow builds the features from the grader's events in the grader's PostgreSQL (a run after the database is
    up)."""
    runs = flow_answer(ctx)["runs"]
    if not runs[1]["ok"]:
        if run(ctx)["dropped"] == 0:
            raise Fail("the flow never connected to the grader's PostgreSQL at the DSN build_features was given "
                       f"(it must read raw_events from `dsn`): {runs[1]['error'][:600]}")
        raise Fail(f"with the database up, the flow failed: {runs[1]['error'][:900]}")
    last_rows(ctx)


@CHECKS.add(points=2, hint="@task(retries=3, retry_delay_seconds=2) on the task that connects to PostgreSQL",
            section="14.5 A batch flow with Prefect: tasks, retries, idempotence", visible=False,
            depends=("flow_runs",))
def flow_retries(ctx):
    """When the database drops the flow's first connection (as one does while it restarts), the flow retries the
    task and succeeds, and Prefect's state records the retry."""
    found = run(ctx)
    runs = flow_answer(ctx)["runs"]
    if found["dropped"] == 0:
        raise Fail("the flow never connected to the PostgreSQL at the DSN it was given (build_features(dsn, repo) "
                   "must read raw_events from that DSN)")
    if not runs[0]["ok"]:
        raise Fail("the grader's database dropped the flow's first connection, as a database does while it "
                   f"restarts, and the flow failed instead of retrying: {runs[0]['error'][:500]}")
    retried = [t["name"] for t in found["task_runs"] if isinstance(t.get("run_count"), int) and
               (t["run_count"] > 1 or "Retrying" in t.get("states", []) or "AwaitingRetry" in t.get("states", []))]
    if not retried:
        raise Fail("the flow survived the dropped connection, but Prefect recorded no retried task: it was caught "
                   "inside the task (a loop or a try) where Prefect cannot see or report it; let the task fail and "
                   "give it retries")


@CHECKS.add(points=2, hint="write the whole feature file each run (a temporary file, then rename): never append",
            section="14.5 A batch flow with Prefect: tasks, retries, idempotence", visible=False,
            depends=("flow_runs",))
def flow_idempotent(ctx):
    """Run again on the same events, the flow leaves the same feature rows: no duplicates, no extra files."""
    found = run(ctx)
    runs = flow_answer(ctx)["runs"]
    if not runs[2]["ok"]:
        raise Fail(f"run a second time on the same events, the flow failed: {runs[2]['error'][:600]}")
    before, after = found["snapshots"][1], found["snapshots"][2]
    if sorted(before) != sorted(after):
        raise Fail(f"the second run left other files in feature_repo/data: {sorted(before)} then {sorted(after)} "
                   "(each run adds a file: Feast reads them all, and every row twice)")
    first, second = snapshot_frame(before), snapshot_frame(after)
    keys = ["customer", "event_timestamp"]
    doubled = int(second.duplicated(keys).sum())
    if len(second) != len(first) or doubled:
        raise Fail(f"the second run left {len(second)} rows where the first left {len(first)} ({doubled} duplicated "
                   "customer/timestamp rows): the rerun appended instead of replacing")


@CHECKS.add(points=3, hint="drop name and e-mail after tokenising with mlops_kit.feature_store.tokenize (HMAC under "
            "the key in $MLOPS_PII_KEY_FILE); a plain hash is not anonymisation",
            section="14.3 PII: tokenise before anything is built", visible=False, depends=("flow_runs",))
def no_pii_in_store(ctx):
    """No name, e-mail or unkeyed hash of an e-mail is in any file of the feature repository or in Redis; the
    customers are keyed tokens."""
    found = run(ctx)
    hits = found.get("pii", [])
    if hits:
        shown = sorted({f"{what} in {where}" for where, what in hits})
        raise Fail(f"personal data reached the feature store: {'; '.join(shown[:6])}")
    rows = last_rows(ctx)
    events, key = ctx.hidden["events"], ctx.hidden["key"]
    keyed = set(feature_rows(events, key, normalise=False)["customer"]) | set(feature_rows(events, key)["customer"])
    customers = set(rows["customer"].astype(str))
    if not customers & keyed:
        raise Fail(f"the customers in the features ({sorted(customers)[:2]}…) are not tokenize(e-mail, key) under the "
                   "key in $MLOPS_PII_KEY_FILE: use the course's keyed token, so serving can find the same customer")


@CHECKS.add(points=2, hint="drop repeated event_ids and missing or negative amounts; normalise_email before "
            "tokenising", section="14.2 Raw events in PostgreSQL", visible=False, depends=("flow_runs",))
def cleans_events(ctx):
    """The features count each event once, only events with a valid amount, and one customer per address."""
    rows = last_rows(ctx)
    events, key = ctx.hidden["events"], ctx.hidden["key"]
    expected = feature_rows(events, key)
    problems = []
    raw_tokens = set(feature_rows(events, key, normalise=False)["customer"]) - set(expected["customer"])
    split = raw_tokens & set(rows["customer"].astype(str))
    if split:
        problems.append(f"{len(split)} customers appear under a second token: their e-mails were tokenised as typed "
                        "(capitals, spaces); normalise_email first")
    merged = rows.merge(expected, on=["customer", "event_timestamp"], how="inner", suffixes=("", "_expected"))
    for variant, why in ((dict(dedupe=False), "events delivered twice (the same event_id) were counted twice"),
                         (dict(clean=False), "events with a missing or negative amount were kept")):
        other = feature_rows(events, key, **variant)
        extra = other.merge(rows, on=["customer", "event_timestamp"], suffixes=("_other", ""))
        differs = extra[[not close(a, b) for a, b in zip(extra["txn_count_7d"], extra["txn_count_7d_other"])]]
        if len(extra) and len(differs) == 0 and not _same(other, expected):
            problems.append(why)
    timestamps = set(zip(rows["customer"], rows["event_timestamp"]))
    invalid = feature_rows(events, key, clean=False)
    stray = set(zip(invalid["customer"], invalid["event_timestamp"])) - set(zip(expected["customer"],
                                                                               expected["event_timestamp"]))
    if stray & timestamps and "events with a missing or negative amount were kept" not in problems:
        problems.append(f"{len(stray & timestamps)} feature rows sit at the time of an event whose amount is missing "
                        "or negative (it was kept)")
    wrong = [n for n in FEATURES if not all(close(a, b) for a, b in zip(merged[n], merged[f"{n}_expected"]))]
    if not problems and (len(merged) < len(expected) or wrong):
        return None  # the values themselves are point_in_time's business
    if problems:
        raise Fail("; ".join(problems))


def _same(a: pd.DataFrame, b: pd.DataFrame) -> bool:
    if len(a) != len(b):
        return False
    merged = a.merge(b, on=["customer", "event_timestamp"], suffixes=("_a", "_b"))
    return len(merged) == len(a) and all(close(x, y) for x, y in zip(merged["txn_count_7d_a"], merged["txn_count_7d_b"]))


@CHECKS.add(points=4, hint="each row's windows end at its own event and look back only: groupby('customer')"
            ".rolling('7D', closed='right'); the feature view's ttl is 30 days and its timestamp field event_timestamp",
            section="14.4 Point-in-time correctness", visible=False, depends=("flow_runs",))
def point_in_time(ctx):
    """Feast's historical features at the grader's entity/timestamp pairs are the features as known at that time:
    nothing from a later event, nothing older than the TTL."""
    feast = run(ctx)["feast"]
    if "error" in feast:
        raise Fail(f"reading the store with Feast {feast['error']}: {log_tail(feast.get('log', ''))}")
    answer = feast["answer"]
    if "store" in answer:
        raise Fail(f"FeatureStore('feature_repo') failed: {answer['store']}")
    if "historical_error" in answer:
        raise Fail(f"get_historical_features(…, ['{VIEW}:…']) failed: {answer['historical_error']}")
    got = answer["historical"]
    missing = [n for n in FEATURES if n not in got]
    if missing:
        raise Fail(f"the feature view {VIEW} has no {missing}")
    entities = hidden_entities(ctx)
    events, key = ctx.hidden["events"], ctx.hidden["key"]
    expected = as_of(feature_rows(events, key), entities)
    rows = {int(r): i for i, r in enumerate(got["row"])}
    wrong = []
    for index, entity in enumerate(entities.itertuples()):
        at = rows.get(index)
        values = {n: (None if at is None else got[n][at]) for n in FEATURES}
        if not all(close(values[n], expected[index][n]) for n in FEATURES):
            wrong.append((index, entity.kind, values, expected[index]))
    ctx.figure("point_in_time_share", 1 - len(wrong) / len(entities), "point-in-time pairs right",
               f"of {len(entities)}")
    if not wrong:
        return None
    raise Fail(f"{len(wrong)} of {len(entities)} hidden entity/timestamp pairs differ: {_diagnose(ctx, entities, got)}"
               f"; e.g. {_example(wrong[0])}")


def _example(wrong) -> str:
    _, kind, values, expected = wrong
    shown = ", ".join(f"{n} {values[n]!r} (expected {expected[n]!r})" for n in FEATURES
                      if not close(values[n], expected[n]))
    return f"{kind}: {shown}"


def _diagnose(ctx, entities: pd.DataFrame, got: dict) -> str:
    """Which mistake explains the answers best, from the alternatives the grader can compute."""
    events, key = ctx.hidden["events"], ctx.hidden["key"]
    rows = {int(r): i for i, r in enumerate(got["row"])}
    candidates = {
        "they match aggregates over each customer's whole history, later events included: future leakage": as_of(
            feature_rows(events, key, whole_history=True), entities),
        "they match features with no TTL: the feature view's ttl is not 30 days": as_of(feature_rows(events, key),
                                                                                         entities, ttl=None),
        "they match features that count duplicated events twice": as_of(feature_rows(events, key, dedupe=False),
                                                                        entities),
        "they match features that keep events with missing or negative amounts": as_of(
            feature_rows(events, key, clean=False), entities),
    }
    best, share = "", 0.0
    for why, values in candidates.items():
        hits = sum(all(close(None if rows.get(i) is None else got[n][rows[i]], values[i][n]) for n in FEATURES)
                   for i in range(len(entities)))
        if hits / len(entities) > share:
            best, share = why, hits / len(entities)
    if share >= 0.9:
        return best
    answered = [i for i in range(len(entities)) if rows.get(i) is not None and
                any(got[n][rows[i]] is not None and not (isinstance(got[n][rows[i]], float) and
                                                         math.isnan(got[n][rows[i]])) for n in FEATURES)]
    if not answered:
        return ("Feast returned no features for any of the grader's customers: the store's customer keys are not "
                "tokenize(normalise_email(email), key) under the key in $MLOPS_PII_KEY_FILE")
    expected = as_of(feature_rows(events, key), entities)
    lost = [i for i in range(len(entities)) if i not in answered and expected[i]["txn_count_7d"] is not None]
    if lost and all(as_of(feature_rows(events, key), entities.iloc[[i]], ttl=pd.Timedelta(days=1))[0]["txn_count_7d"]
                    is None for i in lost):
        return (f"{len(lost)} pairs whose customer had an event within 30 days got no features: the feature view's "
                "ttl is shorter than 30 days")
    kinds = {}
    for i, entity in enumerate(entities.itertuples()):
        values = {n: (None if rows.get(i) is None else got[n][rows[i]]) for n in FEATURES}
        if not all(close(values[n], expected[i][n]) for n in FEATURES):
            kinds[entity.kind] = kinds.get(entity.kind, 0) + 1
    return "wrong at " + ", ".join(f"{count} × {kind}" for kind, count in sorted(kinds.items()))


@CHECKS.add(points=2, hint="materialise the whole span of your feature rows (start: the first, end: after the last): "
            "materialize_incremental starts at now − ttl, which misses synthetic 2026 data",
            section="14.6 Feast: entities, sources, feature views", visible=False, depends=("flow_runs",))
def online_matches_offline(ctx):
    """The online store holds, for every customer, the latest offline row: what training saw is what serving sees."""
    answer = run(ctx)["feast"].get("answer", {})
    if "online_error" in answer or "online" not in answer:
        raise Fail(f"get_online_features failed: {answer.get('online_error', answer.get('store', 'no answer'))}")
    online = answer["online"]
    events, key = ctx.hidden["events"], ctx.hidden["key"]
    latest = feature_rows(events, key).groupby("customer").last()
    keys = list(online.get("customer", []))
    wrong, empty = [], 0
    for i, customer in enumerate(keys):
        values = {n: online.get(n, [None] * len(keys))[i] for n in FEATURES}
        if all(v is None for v in values.values()):
            empty += 1
        elif customer in latest.index and not all(close(values[n], float(latest.loc[customer, n])) for n in FEATURES):
            wrong.append(customer)
    if empty:
        raise Fail(f"{empty} of {len(keys)} customers have no online features: the materialised span missed them")
    if wrong:
        raise Fail(f"{len(wrong)} of {len(keys)} customers have online values other than their latest offline row")


@CHECKS.add(points=3, hint="in predict: tokenize(normalise_email(email)), store.get_online_features(...) on every "
            "call; an unknown customer gets features None, not an exception",
            section="14.7 Online inference: features per request", visible=False, depends=("flow_runs",))
def serves_online_features(ctx):
    """predict(email) resolves the customer, fetches the online store's values at request time (the grader changes
    some first), and answers a probability; an unknown customer gets an answer too."""
    found = run(ctx)
    feast = found["feast"].get("answer", {})
    if not feast.get("edited"):
        raise Fail(f"the grader could not write into your online store: {feast.get('edit_error', 'no answer')}")
    served = found["served"]
    if "error" in served:
        raise Fail(f"calling predict {served['error']}: {log_tail(served.get('log', ''))}")
    if "import" in served["answer"]:
        raise Fail(f"serve.py could not be imported: {served['answer']['import']}")
    calls = served["answer"]["served"]
    changed = {e["customer"]: e for e in edits(ctx)}
    latest = feature_rows(ctx.hidden["events"], ctx.hidden["key"]).groupby("customer").last()
    problems = []
    for email, customer in served_emails(ctx).items():
        call = calls.get(email, {"error": "not called"})
        if "error" in call:
            problems.append(f"predict({email!r}) failed: {call['error'][:300]}")
            continue
        got = call["answer"]
        if not isinstance(got, dict) or not {"customer", "features", "churn_probability"} <= set(got):
            problems.append(f"predict({email!r}) returned {str(got)[:150]}, not "
                            "{'customer', 'features', 'churn_probability'}")
            continue
        values = got["features"] if isinstance(got["features"], dict) else {}
        if customer is None:
            if any(values.get(n) is not None for n in FEATURES):
                problems.append(f"for an e-mail the store has never seen, predict answered features {values}")
            continue
        if got["customer"] != customer:
            problems.append(f"predict({email!r}) looked up customer {str(got['customer'])[:40]}, not the token of "
                            "the normalised e-mail")
            continue
        want = changed.get(customer)
        if want and all(close(values.get(n), float(latest.loc[customer, n])) for n in FEATURES):
            problems.append(f"predict({email!r}) answered the features the store held before the grader changed "
                            "them: it does not fetch online features per request (a cache, or the parquet file)")
        elif want and not all(close(values.get(n), want[n]) for n in FEATURES):
            problems.append(f"predict({email!r}) answered features {values}, not the online store's {want}")
        probability = got["churn_probability"]
        if isinstance(probability, bool) or not isinstance(probability, (int, float)) or not 0 <= probability <= 1:
            problems.append(f"predict({email!r}) gave churn_probability {probability!r}, not a number in [0, 1]")
    if problems:
        raise Fail("; ".join(problems[:5]))


@CHECKS.add(points=2, hint="save the trained pipeline with skops (model.skops) and serve its predict_proba[:, 1] "
            "on the features in FEATURES order", section="14.7 Online inference: features per request",
            visible=False, depends=("serves_online_features",))
def serves_its_model(ctx):
    """The probability predict answers is model.skops's, on the features it fetched."""
    found = run(ctx)
    model = found.get("model", {})
    if "error" in model:
        raise Fail(model["error"])
    calls = found["served"]["answer"]["served"]
    wrong = []
    for email, again in model.get("probabilities", {}).items():
        said = calls[email]["answer"]["churn_probability"]
        if isinstance(again, str) or not close(said, again):
            wrong.append(f"{email}: served {said!r}, the model gives {again!r}")
    if not model.get("probabilities"):
        raise Fail("no served answer had all three features to recompute the model's probability on")
    if wrong:
        raise Fail(f"the served probability is not model.skops's: {'; '.join(wrong[:3])}")
