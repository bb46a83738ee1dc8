"""The cohort gradebook: its schema comes from the alembic migration, a grade is written once per content and grader
version, a regrade is audited and never replaces an override, late policies are computed from recorded times, and
the same gradebook works on a real PostgreSQL the test starts."""

import datetime as dt
import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import pytest
from sqlalchemy import func, inspect, select, text
from sqlalchemy.orm import Session

from grader.cohort import gradebook as gb
from grader.cohort import policy as lp
from grader.grade import Result
from grader.judge import CheckResult

UTC = dt.timezone.utc


def result(score: float, status: str = "graded") -> Result:
    tests = [CheckResult("v1", "first", min(score, 2), 2, "passed" if score >= 2 else "failed", "m", True, "h", "1.1 s"),
             CheckResult("v2", "second", max(0.0, score - 2), 2, "partial" if 2 < score < 4 else
                         ("passed" if score >= 4 else "failed"), "m2", True, "h2", "1.2 s")]
    return Result(submission="x.ipynb", lab="10_kubernetes", score=score, max_score=4, execution_time=0.1, output="",
                  tests=tests, status=status)


def test_the_schema_is_the_migrations_and_opening_twice_is_idempotent(tmp_path):
    db = tmp_path / "gb.db"
    engine = gb.open_gradebook(str(db))
    gb.open_gradebook(str(db))
    names = set(inspect(engine).get_table_names())
    assert names >= {"alembic_version", "learners", "submissions", "grades", "overrides", "extensions", "labs", "audit"}
    with engine.connect() as conn:
        assert conn.execute(text("select version_num from alembic_version")).scalar() == "0001"
        assert conn.execute(text("PRAGMA journal_mode")).scalar() == "wal"
    # the models and the migration agree: every mapped column exists in the migrated table
    for table in gb.Base.metadata.sorted_tables:
        assert {c.name for c in table.columns} == {c["name"] for c in inspect(engine).get_columns(table.name)}


def test_a_grade_is_written_once_a_regrade_is_audited_and_never_replaces_an_override(tmp_path):
    from grader.cohort.exports import finals

    engine = gb.open_gradebook(str(tmp_path / "gb.db"))
    sub = gb.record_submission(engine, "ada", "10_kubernetes", "a" * 64, "/c/ada.ipynb")
    assert gb.record_grade(engine, sub, "v1", result(1)) == "new"
    gb.add_override(engine, "ada", "10_kubernetes", 3.5, "graded by hand: the cluster was down")
    assert gb.record_grade(engine, sub, "v1", result(2)) == "regraded"  # the same content and version: one row
    with Session(engine) as session:
        assert session.scalar(select(func.count()).select_from(gb.Grade)) == 1
        kinds = [a.kind for a in session.scalars(select(gb.Audit).order_by(gb.Audit.id))]
    assert kinds == ["grade", "override", "regrade"]
    (row,) = finals(engine, "10_kubernetes")
    assert row.raw == 2 and row.final == 3.5 and "graded by hand" in row.overrides[0]
    # a check override changes that check only; the whole-lab override still wins over it
    gb.add_override(engine, "ada", "10_kubernetes", 2, "v2 was right", check="v2")
    (row,) = finals(engine, "10_kubernetes")
    assert row.final == 3.5 and next(t for t in row.tests if t["name"] == "v2")["score"] == 2
    with pytest.raises(ValueError, match="reason"):
        gb.add_override(engine, "ada", "10_kubernetes", 1, "  ")
    with pytest.raises(LookupError, match="no learner"):
        gb.add_override(engine, "nobody", "10_kubernetes", 1, "x")


def test_a_new_submission_becomes_current_and_the_same_content_twice_is_one_row(tmp_path):
    engine = gb.open_gradebook(str(tmp_path / "gb.db"))
    first = gb.record_submission(engine, "ada", "10_kubernetes", "a" * 64, "/p1")
    second = gb.record_submission(engine, "ada", "10_kubernetes", "b" * 64, "/p2")
    again = gb.record_submission(engine, "ada", "10_kubernetes", "b" * 64, "/p2")
    assert second == again != first
    with Session(engine) as session:
        rows = session.scalars(select(gb.Submission)).all()
    assert len(rows) == 2 and [r.current for r in sorted(rows, key=lambda r: r.id)] == [False, True]


@pytest.mark.parametrize("spec, late_hours, extension, expected", [
    ("none", 100, 0, 10),
    ("linear:10/hour", 0, 0, 10),  # on time
    ("linear:10/hour", 0.5, 0, 9),  # a started hour counts
    ("linear:10/hour", 3, 0, 7),
    ("linear:10/hour", 30, 0, 0),  # never below zero
    ("linear:20/day", 25, 0, 6),  # two started days
    ("linear:20/day", 25, 24, 8),  # an extension moves the deadline
    ("linear:10/day,grace=2", 1.5, 0, 10),  # within the grace period
    ("linear:10/day,grace=2", 3, 0, 9),
    ("zero", 0.01, 0, 0),
    ("zero:grace=2", 1.9, 0, 10),
    ("zero:grace=2", 2.1, 0, 0),
    ("zero:grace=2", 2.1, 5, 10),
])
def test_late_policies(spec, late_hours, extension, expected):
    deadline = dt.datetime(2026, 3, 1, 23, 59, tzinfo=UTC)
    out = lp.apply(lp.LatePolicy.parse(spec), 10, 10, deadline + dt.timedelta(hours=late_hours), deadline, extension)
    assert out.score == pytest.approx(expected)
    assert lp.LatePolicy.parse(str(lp.LatePolicy.parse(spec))) == lp.LatePolicy.parse(spec)


@pytest.mark.parametrize("bad", ["linear", "linear:10", "linear:200/day", "zero:10/day", "weekly", "linear:x/day"])
def test_an_unreadable_late_policy_is_refused_with_the_forms_that_work(bad):
    with pytest.raises(ValueError, match="late policy|PERCENT"):
        lp.LatePolicy.parse(bad)


def test_late_penalty_is_applied_at_export_audited_and_stored_scores_are_untouched(tmp_path):
    from grader.cohort.exports import finals

    engine = gb.open_gradebook(str(tmp_path / "gb.db"))
    deadline = dt.datetime(2026, 3, 1, tzinfo=UTC)
    gb.set_lab(engine, "10_kubernetes", deadline, "linear:25/day")
    for who, hours in (("early", -1), ("late", 30), ("extended", 30)):
        sub = gb.record_submission(engine, who, "10_kubernetes", who.ljust(64, "0"), f"/{who}",
                                   submitted_at=deadline + dt.timedelta(hours=hours))
        gb.record_grade(engine, sub, "v1", result(4))
    gb.set_extension(engine, "extended", "10_kubernetes", 48, "illness")
    rows = {r.learner.id: r for r in finals(engine, "10_kubernetes")}
    assert (rows["early"].final, rows["late"].final, rows["extended"].final) == (4, 2, 4)
    finals(engine, "10_kubernetes")  # exporting again records no new penalty
    with Session(engine) as session:
        assert {g.score for g in session.scalars(select(gb.Grade))} == {4}  # never edited
        penalties = session.scalars(select(gb.Audit).where(gb.Audit.kind == "late_penalty")).all()
    assert [(a.learner_id, a.new) for a in penalties] == [("late", 2)]


def test_grade_json_test_status_follows_gradescope_and_keeps_ours_apart():
    payload = result(3).to_json()
    assert [(t["status"], t["check_status"]) for t in payload["tests"]] == [("passed", "passed"), ("failed", "partial")]
    skipped = Result("s", "10_kubernetes", 0, 0, 0, "", [CheckResult("live", "d", 0, 0, "skipped", "no cluster", True, "",
                                                                      "")])
    assert skipped.to_json()["tests"][0]["status"] == "failed" and skipped.to_json()["tests"][0]["check_status"] == "skipped"


# --- PostgreSQL, started by the test ------------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def postgres():
    """A real PostgreSQL on a free port under a temporary folder; stopped by its PID in `finally`."""
    import glob

    bins = sorted(glob.glob("/usr/lib/postgresql/*/bin"))  # Debian's, off PATH
    path = os.pathsep.join([*bins[-1:], os.environ.get("PATH", "")])
    missing = [tool for tool in ("initdb", "pg_ctl", "postgres", "runuser") if not shutil.which(tool, path=path)]
    if missing:
        message = f"PostgreSQL is not installed here: {', '.join(missing)} not found (make services installs it)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    initdb, pg_ctl = shutil.which("initdb", path=path), shutil.which("pg_ctl", path=path)
    try:
        import pwd

        pwd.getpwnam("postgres")
    except KeyError:
        pytest.skip("no `postgres` user to run initdb as (initdb refuses root)")
    root = Path(tempfile.mkdtemp(prefix="mlops-pg-", dir="/tmp"))
    os.chmod(root, 0o755)
    shutil.chown(root, "postgres", "postgres")
    data, port = root / "data", _free_port()
    pid = None
    start = time.monotonic()
    try:
        subprocess.run(["runuser", "-u", "postgres", "--", initdb, "-D", str(data), "-U", "postgres", "-A", "trust",
                        "--no-sync"], check=True, capture_output=True, timeout=120)
        subprocess.run(["runuser", "-u", "postgres", "--", pg_ctl, "-D", str(data), "-l", str(root / "log"), "-w",
                        "-o", f"-p {port} -k {root} -c listen_addresses=127.0.0.1 -c fsync=off", "start"],
                       check=True, capture_output=True, timeout=120)
        pid = int((data / "postmaster.pid").read_text().splitlines()[0])
        started = time.monotonic() - start
        yield f"postgresql://postgres@127.0.0.1:{port}/postgres", started
    finally:
        if pid is None and (data / "postmaster.pid").exists():
            pid = int((data / "postmaster.pid").read_text().splitlines()[0])
        if pid:
            os.kill(pid, signal.SIGINT)  # fast shutdown
            for _ in range(100):
                try:
                    os.kill(pid, 0)
                except ProcessLookupError:
                    break
                time.sleep(0.1)
            else:
                os.kill(pid, signal.SIGKILL)
        shutil.rmtree(root, ignore_errors=True)


def test_the_gradebook_on_a_real_postgres_with_two_graders_writing_at_once(postgres, tmp_path):
    from grader.cohort.exports import finals

    url, started = postgres
    print(f"postgres started in {started:.1f} s")
    engines = []
    errors = []

    def open_it():
        try:
            engines.append(gb.open_gradebook(url))
        except Exception as err:  # noqa: BLE001
            errors.append(err)

    threads = [threading.Thread(target=open_it) for _ in range(2)]  # two graders migrating a fresh gradebook at once
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and len(engines) == 2
    subs = [gb.record_submission(engines[0], f"l{i}", "10_kubernetes", f"{i}".ljust(64, "0"), f"/l{i}") for i in range(6)]

    def grader(engine, score):
        for sub in subs:
            gb.record_grade(engine, sub, "v1", result(score))

    threads = [threading.Thread(target=grader, args=(engine, s)) for engine, s in zip(engines, (1, 3))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    with Session(engines[0]) as session:
        assert session.scalar(select(func.count()).select_from(gb.Grade)) == 6  # one per submission, never two
        assert session.scalar(select(func.count()).select_from(gb.Audit).where(gb.Audit.kind == "grade")) == 6
    gb.add_override(engines[1], "l0", "10_kubernetes", 4, "checked by hand")
    rows = {r.learner.id: r for r in finals(engines[0], "10_kubernetes")}
    assert rows["l0"].final == 4 and {rows[f"l{i}"].raw for i in range(1, 6)} <= {1, 3}
    assert json.dumps([r.final for r in rows.values()])
