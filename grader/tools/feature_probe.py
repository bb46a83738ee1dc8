"""Capstone C's probe: run the learner's Prefect flow on the grader's events, then read their Feast store and call
their inference function, all against real servers this probe starts.

Runs inside the probe sandbox (loopback-only network); must not import the grader. Input `plan` (a JSON string):
{"events": [...], "labels": [...], "key": "hex", "entities": [{"customer", "event_timestamp"}], "online": [tokens],
 "edits": [{"customer", feature: value…}], "emails": [...], "features": [...], "view": "customer_stats",
 "needles": {text: what}, "flow_seconds": 150, "read_seconds": 60}.

1. A PostgreSQL cluster is made here and loaded with the events; it is then stopped and this probe listens on its
   port instead: the flow's first connection is accepted and dropped (a database restarting), and PostgreSQL is
   started on that port at once. A Redis server is started for the online store.
2. The learner's flow runs three times in one process of theirs (inner sandbox, their uid, this probe's inputs and
   output hidden): `build_features(dsn, "feature_repo")` in a copy of their outputs, with Prefect's state in a
   SQLite file of its own. What the feature repository's data folder held after each run is kept.
3. A second process of theirs reads their store with Feast (historical features at the grader's entity/timestamp
   pairs, online features of every customer) and then writes the grader's edits into the online store; a third
   imports their `serve.py` and calls `predict(email)` for the grader's e-mails.
4. This probe reads, as data and never as code, the parquet files, the registry's bytes, every key and value in
   Redis and Prefect's task runs, and loads `model.skops` with the guarded loader to recompute the served
   probabilities. PostgreSQL is stopped before learner code reads the store (it cannot reach the raw events).

result.json: {"runs": [...], "dropped": n, "task_runs": [...], "snapshots": [{file: rows}...], "files": [...],
"pii": [[where, what]...], "feast": {...}, "served": {...},
"model": {...}}. The grader judges; nothing here decides.
"""

import json
import os
import secrets
import shutil
import socket
import sqlite3
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # the harness, beside this file (-I drops it)
from harness import INNER_UID, MEND_PSUTIL, probe_main, run_learner  # noqa: E402

APP_FILES = ("flow.py", "serve.py", "model.skops")
REPO_FILES = ("feature_store.yaml", "features.py")
MAX_ROWS = 200_000  # rows read back from any one parquet file
MAX_REDIS = 20_000  # keys read back from Redis
NOT_NEEDED = ("torch", "rfc3987_syntax", "distributed")
ALLOW = ("dask",)  # Feast's file offline store reads with Dask

RUNNER = MEND_PSUTIL + '''
import json, shutil, sys, time, traceback
from pathlib import Path

marker, mode, argument = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])


def answer(value):
    print()
    print(marker + json.dumps(value, default=str))


def failure(err):
    return f"{type(err).__name__}: {err}"[:1500] + " | " + "".join(traceback.format_exception(err, limit=-2))[-600:]


if mode == "flow":
    runs = []
    try:
        import flow
        build = flow.build_features
    except BaseException as err:  # noqa: BLE001
        answer({"import": failure(err)})
        raise SystemExit(0)
    for number in range(3):
        started = time.monotonic()
        try:
            value = build(argument["dsn"], "feature_repo")
            runs.append({"ok": True, "value": repr(value)[:200]})
        except BaseException as err:  # noqa: BLE001
            runs.append({"ok": False, "error": failure(err)})
        runs[-1]["seconds"] = round(time.monotonic() - started, 2)
        data = Path("feature_repo") / "data"
        snapshot = Path("snapshots") / str(number)
        snapshot.mkdir(parents=True)
        for parquet in sorted(data.rglob("*.parquet")) if data.is_dir() else []:
            target = snapshot / str(parquet.relative_to(data)).replace("/", "__")
            shutil.copyfile(parquet, target)
    answer({"runs": runs})
elif mode == "feast":
    import pandas as pd
    from feast import FeatureStore

    found = {}
    names = [f"{argument['view']}:{name}" for name in argument["features"]]
    try:
        store = FeatureStore(repo_path="feature_repo")
    except BaseException as err:  # noqa: BLE001
        answer({"store": failure(err)})
        raise SystemExit(0)
    try:
        entities = pd.DataFrame(argument["entities"])
        entities["event_timestamp"] = pd.to_datetime(entities["event_timestamp"], utc=True, format="ISO8601")
        entities["row"] = range(len(entities))
        table = store.get_historical_features(entity_df=entities, features=names).to_df()
        table = table.sort_values("row")
        found["historical"] = {"row": table["row"].tolist(), **{n: table[n].tolist() for n in argument["features"]
                                                                 if n in table}}
    except BaseException as err:  # noqa: BLE001
        found["historical_error"] = failure(err)
    try:
        online = store.get_online_features(features=names,
                                           entity_rows=[{"customer": c} for c in argument["online"]]).to_dict()
        found["online"] = {k: list(v) for k, v in online.items()}
    except BaseException as err:  # noqa: BLE001
        found["online_error"] = failure(err)
    try:
        edits = pd.DataFrame(argument["edits"])
        edits["event_timestamp"] = pd.Timestamp.now(tz="UTC")
        store.write_to_online_store(argument["view"], edits)
        found["edited"] = True
    except BaseException as err:  # noqa: BLE001
        found["edit_error"] = failure(err)
    answer(found)
elif mode == "serve":
    served = {}
    try:
        import serve
        predict = serve.predict
    except BaseException as err:  # noqa: BLE001
        answer({"import": failure(err)})
        raise SystemExit(0)
    for email in argument["emails"]:
        try:
            served[email] = {"answer": json.loads(json.dumps(predict(email), default=str))}
        except BaseException as err:  # noqa: BLE001
            served[email] = {"error": failure(err)}
    answer({"served": served})
'''


def add_arguments(parser) -> None:
    parser.add_argument("--label", default="")


def probe(args, inputs) -> dict:
    plan = json.loads(str(inputs["plan"][()]))
    outputs = Path(args.work) / plan.get("outputs", "outputs")
    missing = [name for name in ("flow.py", "feature_repo/feature_store.yaml", "feature_repo/features.py")
               if not (outputs / name).is_file()]
    if missing:
        return {"error": f"{', '.join(missing)} not found in the outputs"}
    scratch = Path(tempfile.mkdtemp(prefix="features-"))
    app = _copy_app(outputs, scratch / "app")
    key_file = scratch / "pii.key"
    key_file.write_text(plan["key"])
    prefect = scratch / "prefect"
    for folder in (prefect,):
        folder.mkdir()
    _open_to_learner(scratch)
    (scratch / "runner.py").write_text(RUNNER)

    from mlops_kit.feature_store import load_events, postgres, prefect_env, redis

    result = {}
    with postgres(folder=str(scratch)) as server, redis() as redis_address:
        import pandas as pd

        events, labels = pd.DataFrame(plan["events"]), pd.DataFrame(plan["labels"])
        events["event_timestamp"] = pd.to_datetime(events["event_timestamp"], utc=True, format="ISO8601")
        labels["label_timestamp"] = pd.to_datetime(labels["label_timestamp"], utc=True, format="ISO8601")
        load_events(server.dsn, events, labels)
        server.stop()
        gate = _DropFirst(server)
        env = {**prefect_env(prefect), "REDIS_URL": redis_address, "MLOPS_PII_KEY_FILE": str(key_file),
               "PYTHONPATH": str(app), "HOME": str(scratch / "home"), "LANG": "C.UTF-8",
               "PATH": os.environ.get("PATH", "/usr/bin:/bin"), "PYTHONDONTWRITEBYTECODE": "1"}
        (scratch / "home").mkdir()
        _open_to_learner(scratch / "home")
        hidden = [args.out, args.input, args.work]
        flow = _learner(scratch, app, env, hidden, "flow", {"dsn": server.dsn}, float(plan.get("flow_seconds", 150)))
        gate.close()
        result["flow"] = flow
        result["dropped"] = gate.dropped
        server.stop()  # learner code reads the store with the raw events out of reach
        result["task_runs"] = _task_runs(prefect / "prefect.db")
        result["snapshots"] = _snapshots(app / "snapshots")
        result["files"] = sorted(str(p.relative_to(app / "feature_repo")) for p in (app / "feature_repo").rglob("*")
                                 if p.is_file())
        result["pii"] = _pii_hits(app / "feature_repo", _redis_dump(redis_address), plan.get("needles", {}))
        read = {"view": plan["view"], "features": plan["features"], "entities": plan["entities"],
                "online": plan["online"], "edits": plan["edits"]}
        result["feast"] = _learner(scratch, app, env, hidden, "feast", read, float(plan.get("read_seconds", 60)))
        result["served"] = _learner(scratch, app, env, hidden, "serve", {"emails": plan["emails"]},
                                    float(plan.get("read_seconds", 60)))
    result["model"] = _model(app / "model.skops", result["served"].get("answer", {}).get("served", {}),
                             plan["features"])
    shutil.rmtree(scratch, ignore_errors=True)
    return result


def _copy_app(outputs: Path, app: Path) -> Path:
    """The learner's files, copied (no links followed) into a folder their processes may write: a fresh repository
    holding only their definitions, so the flow must make every data file itself."""
    (app / "feature_repo").mkdir(parents=True)
    for name in APP_FILES:
        source = outputs / name
        if source.is_file() and not source.is_symlink():
            shutil.copyfile(source, app / name)
    for name in REPO_FILES:
        source = outputs / "feature_repo" / name
        if source.is_file() and not source.is_symlink():
            shutil.copyfile(source, app / "feature_repo" / name)
    return app


def _open_to_learner(folder: Path) -> None:
    """Readable and writable by the inner uid (it is not this probe's)."""
    for path in [folder, *folder.rglob("*")]:
        os.chmod(path, 0o777 if path.is_dir() else 0o666)
    try:
        os.chown(folder, INNER_UID, INNER_UID)
    except OSError:
        pass


def _learner(scratch: Path, app: Path, env: dict, hidden: list, mode: str, argument: dict, seconds: float) -> dict:
    """One process of the learner's, in the inner sandbox: the runner in `mode`; its answer or what went wrong."""
    _open_to_learner(app)
    marker = f"@@features-{secrets.token_hex(8)}@@"
    started = time.monotonic()
    done = run_learner([sys.executable, str(scratch / "runner.py"), marker, mode, json.dumps(argument)],
                       cwd=str(app), env=env, timeout=seconds, writable=[str(scratch)],
                       hidden=hidden, not_needed=NOT_NEEDED, allow=ALLOW)
    took = round(time.monotonic() - started, 2)
    lines = [line[len(marker):] for line in done["stdout"].splitlines() if line.startswith(marker)]
    log = (done["stdout"] + "\n" + done["stderr"]).strip()
    log = "\n".join(line for line in log.splitlines() if marker not in line)[-3000:]
    if done["timed_out"]:
        return {"error": f"it did not finish within {seconds:.0f} s", "log": log, "seconds": took}
    if not lines:
        return {"error": f"it exited ({done['exit']}) before answering", "log": log, "seconds": took}
    try:
        return {"answer": json.loads(lines[-1]), "log": log, "seconds": took}
    except ValueError:
        return {"error": "its answer was not JSON", "log": log, "seconds": took}


class _DropFirst:
    """Listen on the database's port; accept the first connection and drop it, then start the database there."""

    def __init__(self, server):
        self.server, self.dropped = server, 0
        self.listener = socket.socket()
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind(("127.0.0.1", server.port))
        self.listener.listen(8)
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        try:
            client, _ = self.listener.accept()
        except OSError:
            return
        self.dropped += 1
        client.close()
        self.listener.close()
        self.server.start()

    def close(self) -> None:
        """Nothing connected (the flow never reached the database): start it anyway, for what follows."""
        if self.dropped == 0:
            self.listener.close()
            self.thread.join(2)
            try:
                self.server.start()
            except Exception:  # noqa: BLE001 - already started by the thread
                pass
        self.thread.join(5)


def _task_runs(database: Path) -> list[dict]:
    """Prefect's record of the task runs: name, how many attempts, final state, and the states they went through."""
    if not database.is_file():
        return []
    try:
        with sqlite3.connect(f"file:{database}?mode=ro", uri=True) as conn:
            runs = conn.execute("SELECT id, name, run_count, state_type, state_name FROM task_run").fetchall()
            states = conn.execute("SELECT task_run_id, name FROM task_run_state ORDER BY timestamp").fetchall()
    except sqlite3.Error as err:
        return [{"error": str(err)}]
    history: dict[str, list] = {}
    for run_id, name in states:
        history.setdefault(run_id, []).append(name)
    return [{"name": name, "run_count": count, "state_type": kind, "state_name": state,
             "states": history.get(run_id, [])} for run_id, name, count, kind, state in runs]


def _snapshots(folder: Path) -> list[dict]:
    """Each run's parquet files, read as data: {file: {"columns": [...], "rows": [[...]...]}}."""
    import pyarrow.parquet as pq

    found = []
    for number in range(3):
        snapshot, files = folder / str(number), {}
        for path in sorted(snapshot.glob("*")) if snapshot.is_dir() else []:
            try:
                table = pq.read_table(path)
                frame = table.slice(0, MAX_ROWS).to_pandas()
                files[path.name] = {"columns": [str(c) for c in frame.columns], "count": table.num_rows,
                                    "rows": json.loads(frame.to_json(orient="values", date_format="iso"))}
            except Exception as err:  # noqa: BLE001 - not parquet: say so, the grader judges
                files[path.name] = {"error": f"{type(err).__name__}: {err}"[:300]}
        found.append(files)
    return found


def _pii_hits(repo: Path, dump: list, needles: dict) -> list:
    """[where, what] for each needle (a name, an e-mail, an unkeyed hash…) found in a file of the feature repository
    other than the learner's definitions (data files, the registry, parquet, as bytes and as parquet text) or in a
    Redis key or value."""
    import pyarrow.parquet as pq

    wanted = [(needle.lower().encode(), what) for needle, what in needles.items() if len(needle) >= 4]
    hits = []

    def search(blob: bytes, where: str) -> None:
        blob = blob.lower()
        for needle, what in wanted:
            if needle in blob:
                hits.append([where, what])

    for path in sorted(p for p in repo.rglob("*") if p.is_file() and not p.is_symlink()):
        relative = str(path.relative_to(repo))
        if relative in REPO_FILES or path.stat().st_size > 50 * 2**20:
            continue
        search(path.read_bytes(), f"feature_repo/{relative}")
        if path.suffix == ".parquet":
            try:  # compressed pages hide strings from a byte search: read the table too
                search(pq.read_table(path).to_pandas().to_csv().encode(), f"feature_repo/{relative}")
            except Exception:  # noqa: BLE001 - not parquet: the bytes were searched
                pass
    search(b"\n".join(bytes.fromhex(k) + b" " + bytes.fromhex(f) + b" " + bytes.fromhex(v) for k, f, v in dump),
           "the online store (Redis)")
    return [list(h) for h in sorted({tuple(h) for h in hits})]


def _redis_dump(address: str) -> list:
    """Every key of the online store with its fields and values, as hex (the grader looks for PII in them)."""
    import redis

    host, port = address.rsplit(":", 1)
    client = redis.Redis(host=host, port=int(port))
    dump = []
    for key in client.scan_iter(count=500):
        if len(dump) >= MAX_REDIS:
            break
        kind = client.type(key)
        if kind == b"hash":
            for field, value in client.hgetall(key).items():
                dump.append([key.hex(), field.hex(), value.hex()])
        elif kind == b"string":
            dump.append([key.hex(), "", (client.get(key) or b"").hex()])
        else:
            dump.append([key.hex(), kind.decode(), ""])
    return dump


def _model(path: Path, served: dict, features: list) -> dict:
    """The saved model loaded with the guarded loader; its probability for each served customer's features."""
    if not path.is_file():
        return {"error": "model.skops not found"}
    import skops.io as sio
    from skops_guard import Refused, load

    try:
        model = load(path, sio)
    except Refused as err:
        return {"error": f"model.skops was refused: {err}"}
    except Exception as err:  # noqa: BLE001
        return {"error": f"model.skops could not be loaded: {type(err).__name__}: {err}"[:400]}
    import pandas as pd

    again = {}
    for email, call in served.items():
        got = call.get("answer")
        values = got.get("features") if isinstance(got, dict) else None
        if not isinstance(values, dict) or any(values.get(n) is None for n in features):
            continue
        try:
            row = pd.DataFrame([{n: float(values[n]) for n in features}])
            again[email] = float(model.predict_proba(row)[0, 1])
        except Exception as err:  # noqa: BLE001
            again[email] = f"error: {type(err).__name__}: {err}"[:300]
    return {"class": f"{type(model).__module__}.{type(model).__qualname__}", "probabilities": again}


if __name__ == "__main__":
    probe_main(probe, add_arguments, not_needed=("torch", "rfc3987_syntax", "distributed"))
