"""The gradebook: SQLAlchemy 2 models and how a database is opened (migrated to the newest schema on open).

SQLite (WAL mode, a busy timeout, one transaction per result) is the default; a PostgreSQL URL lets several
graders write to one gradebook at once. A grade is unique per (learner, lab, content hash, grader version), so a
result written twice (a rerun after `kill -9`, two graders racing) is one row. Scores are never edited by a late
policy or an override: those live in their own tables and are applied at export time; every change of a grade
(first grade, regrade, override, extension, late penalty) is one row of `audit`.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

from sqlalchemy import (
    JSON,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Integer,
    String,
    Text,
    UniqueConstraint,
    create_engine,
    event,
    select,
)
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

MIGRATIONS = Path(__file__).resolve().parent / "migrations"


def now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


def utc(value: dt.datetime | None) -> dt.datetime | None:
    """A timestamp as an aware UTC datetime (SQLite hands back naive ones; they were stored as UTC)."""
    if value is None:
        return None
    return value.replace(tzinfo=dt.timezone.utc) if value.tzinfo is None else value.astimezone(dt.timezone.utc)


class Base(DeclarativeBase):
    pass


class Learner(Base):
    __tablename__ = "learners"
    id: Mapped[str] = mapped_column(String(200), primary_key=True)  # the course's learner id (roster)
    name: Mapped[str] = mapped_column(String(400), default="")
    email: Mapped[str] = mapped_column(String(400), default="")
    sis_id: Mapped[str] = mapped_column(String(200), default="")  # Canvas SIS User ID / Moodle ID number
    login_id: Mapped[str] = mapped_column(String(200), default="")  # Canvas SIS Login ID / Moodle username
    lms_id: Mapped[str] = mapped_column(String(200), default="")  # Canvas user id / Moodle participant id
    section: Mapped[str] = mapped_column(String(200), default="")


class Submission(Base):
    __tablename__ = "submissions"
    __table_args__ = (UniqueConstraint("learner_id", "lab", "content_hash", name="uq_submission"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    learner_id: Mapped[str] = mapped_column(ForeignKey("learners.id"), index=True)
    lab: Mapped[str] = mapped_column(String(100), index=True)
    content_hash: Mapped[str] = mapped_column(String(64))
    path: Mapped[str] = mapped_column(Text)  # where the cohort folder holds it
    original: Mapped[str] = mapped_column(Text, default="")  # its name where it was collected from
    source: Mapped[str] = mapped_column(String(40), default="")  # folder | canvas | moodle | git
    submitted_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    collected_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=now)
    current: Mapped[bool] = mapped_column(Boolean, default=True)  # the learner's latest submission of the lab


class Grade(Base):
    __tablename__ = "grades"
    __table_args__ = (UniqueConstraint("learner_id", "lab", "content_hash", "grader_version", name="uq_grade"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    submission_id: Mapped[int] = mapped_column(ForeignKey("submissions.id"), index=True)
    learner_id: Mapped[str] = mapped_column(ForeignKey("learners.id"), index=True)
    lab: Mapped[str] = mapped_column(String(100), index=True)
    content_hash: Mapped[str] = mapped_column(String(64))
    grader_version: Mapped[str] = mapped_column(String(64))
    score: Mapped[float] = mapped_column(Float)
    max_score: Mapped[float] = mapped_column(Float)
    status: Mapped[str] = mapped_column(String(20))  # graded | rejected | error (error: graded again on the next run)
    result: Mapped[dict] = mapped_column(JSON)  # Result.to_json(reveal_hidden=True): the instructor's full record
    seconds: Mapped[float] = mapped_column(Float, default=0.0)
    graded_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=now)
    graded_by: Mapped[str] = mapped_column(String(200), default="")  # host/backend that graded it


class Override(Base):
    __tablename__ = "overrides"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    learner_id: Mapped[str] = mapped_column(ForeignKey("learners.id"), index=True)
    lab: Mapped[str] = mapped_column(String(100))
    check: Mapped[str] = mapped_column(String(200), default="")  # "" overrides the lab's whole score
    score: Mapped[float] = mapped_column(Float)
    reason: Mapped[str] = mapped_column(Text)
    author: Mapped[str] = mapped_column(String(200), default="")
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=now)


class Extension(Base):
    __tablename__ = "extensions"
    learner_id: Mapped[str] = mapped_column(ForeignKey("learners.id"), primary_key=True)
    lab: Mapped[str] = mapped_column(String(100), primary_key=True)
    hours: Mapped[float] = mapped_column(Float)
    reason: Mapped[str] = mapped_column(Text, default="")


class LabSetting(Base):
    __tablename__ = "labs"
    lab: Mapped[str] = mapped_column(String(100), primary_key=True)
    deadline: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    late_policy: Mapped[str] = mapped_column(String(100), default="none")  # grader.cohort.policy.LatePolicy.parse


class Audit(Base):
    __tablename__ = "audit"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=now)
    learner_id: Mapped[str] = mapped_column(String(200), index=True)
    lab: Mapped[str] = mapped_column(String(100))
    check: Mapped[str] = mapped_column(String(200), default="")
    kind: Mapped[str] = mapped_column(String(20))  # grade | regrade | override | extension | late_penalty | policy
    old: Mapped[float | None] = mapped_column(Float, nullable=True)
    new: Mapped[float | None] = mapped_column(Float, nullable=True)
    detail: Mapped[str] = mapped_column(Text, default="")
    actor: Mapped[str] = mapped_column(String(200), default="")


def sqlite_url(path: Path | str) -> str:
    return f"sqlite:///{Path(path).resolve()}"


def normalise_url(url: str) -> str:
    """A bare path means SQLite; postgres:// and postgresql:// mean psycopg 3."""
    if "://" not in url:
        return sqlite_url(url)
    if url.startswith(("postgres://", "postgresql://")):
        return "postgresql+psycopg://" + url.split("://", 1)[1]
    return url


def open_gradebook(url: str) -> Engine:
    """An engine on the gradebook at `url`, its schema migrated to the newest revision (alembic, in-process)."""
    url = normalise_url(url)
    if url.startswith("sqlite:"):
        engine = create_engine(url, connect_args={"timeout": 60})

        @event.listens_for(engine, "connect")
        def _pragmas(dbapi_connection, _record):  # WAL: readers never block the writer; a crash loses nothing committed
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.execute("PRAGMA busy_timeout=60000")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.close()
    else:
        engine = create_engine(url, pool_pre_ping=True)
    migrate(engine)
    return engine


def migrate(engine: Engine) -> None:
    from alembic import command
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    with engine.begin() as connection:
        if engine.dialect.name == "postgresql":  # two graders opening a fresh gradebook at once migrate it once
            from sqlalchemy import text

            connection.execute(text("SELECT pg_advisory_xact_lock(7413)"))
        config.attributes["connection"] = connection
        command.upgrade(config, "head")


# --- writes: each its own transaction ------------------------------------------------------------


def audit(session: Session, learner: str, lab: str, kind: str, old, new, detail: str = "", check: str = "",
          actor: str = "") -> None:
    session.add(Audit(learner_id=learner, lab=lab, check=check, kind=kind, old=old, new=new, detail=detail[:4000],
                      actor=actor or _actor()))


def _actor() -> str:
    import getpass
    import socket

    try:
        return f"{getpass.getuser()}@{socket.gethostname()}"
    except Exception:  # noqa: BLE001
        return "unknown"


def ensure_learner(session: Session, learner_id: str, **fields) -> Learner:
    found = session.get(Learner, learner_id)
    if found is None:
        found = Learner(id=learner_id, **{k: v or "" for k, v in fields.items()})
        session.add(found)
        session.flush()
    else:
        for key, value in fields.items():
            if value:
                setattr(found, key, value)
    return found


def record_submission(engine: Engine, learner_id: str, lab: str, content_hash: str, path: str, *, original: str = "",
                      source: str = "", submitted_at: dt.datetime | None = None) -> int:
    """Make this the learner's current submission of `lab` (the same content twice is one row); its id."""
    with Session(engine) as session, session.begin():
        ensure_learner(session, learner_id)
        rows = session.scalars(select(Submission).where(Submission.learner_id == learner_id, Submission.lab == lab)).all()
        found = next((r for r in rows if r.content_hash == content_hash), None)
        for row in rows:
            row.current = row is found
        if found is None:
            found = Submission(learner_id=learner_id, lab=lab, content_hash=content_hash, path=path, original=original,
                               source=source, submitted_at=submitted_at, current=True)
            session.add(found)
        else:
            found.path, found.submitted_at = path, submitted_at or found.submitted_at
            found.original, found.source = original or found.original, source or found.source
        session.flush()
        return found.id


def record_grade(engine: Engine, submission_id: int, grader_version: str, result, *, graded_by: str = "") -> str:
    """Write one result in one transaction: "new", or "regraded" where a grade for this content and grader version
    exists (`--regrade`, a grader error graded again, or another grader that got there first): that row is updated
    and the change audited, so there is never a second row. Overrides live in their own table: never touched."""
    payload = result.to_json(reveal_hidden=True)
    payload["submission"] = ""  # the sandbox-side path means nothing later; the submission row says where it is
    for attempt in range(3):
        try:
            with Session(engine) as session, session.begin():
                sub = session.get(Submission, submission_id)
                existing = session.scalar(select(Grade).where(
                    Grade.learner_id == sub.learner_id, Grade.lab == sub.lab, Grade.content_hash == sub.content_hash,
                    Grade.grader_version == grader_version))
                if existing is None:
                    session.add(Grade(submission_id=sub.id, learner_id=sub.learner_id, lab=sub.lab,
                                      content_hash=sub.content_hash, grader_version=grader_version, score=result.score,
                                      max_score=result.max_score, status=result.status, result=payload,
                                      seconds=result.execution_time, graded_by=graded_by))
                    audit(session, sub.learner_id, sub.lab, "grade", None, result.score,
                          f"{result.status}; content {sub.content_hash[:12]}; grader {grader_version}")
                    return "new"
                old = existing.score
                existing.score, existing.max_score, existing.status = result.score, result.max_score, result.status
                existing.result, existing.seconds, existing.graded_at = payload, result.execution_time, now()
                existing.graded_by = graded_by
                audit(session, sub.learner_id, sub.lab, "regrade", old, result.score,
                      f"{result.status}; content {sub.content_hash[:12]}; grader {grader_version}")
                return "regraded"
        except IntegrityError:  # another writer inserted the same grade between our read and our insert
            if attempt == 2:
                raise
    raise RuntimeError("unreachable")


def add_override(engine: Engine, learner: str, lab: str, score: float, reason: str, check: str = "",
                 author: str = "") -> None:
    if not reason.strip():
        raise ValueError("an override needs a reason (--reason)")
    with Session(engine) as session, session.begin():
        if session.get(Learner, learner) is None:
            raise LookupError(f"no learner {learner!r} in this gradebook")
        previous = session.scalar(select(Override).where(Override.learner_id == learner, Override.lab == lab,
                                                         Override.check == check).order_by(Override.id.desc()))
        session.add(Override(learner_id=learner, lab=lab, check=check, score=score, reason=reason,
                             author=author or _actor()))
        audit(session, learner, lab, "override", previous.score if previous else None, score, reason, check=check,
              actor=author)


def set_extension(engine: Engine, learner: str, lab: str, hours: float, reason: str = "") -> None:
    with Session(engine) as session, session.begin():
        ensure_learner(session, learner)
        found = session.get(Extension, (learner, lab))
        old = found.hours if found else None
        if found is None:
            session.add(Extension(learner_id=learner, lab=lab, hours=hours, reason=reason))
        else:
            found.hours, found.reason = hours, reason
        audit(session, learner, lab, "extension", old, hours, reason or "extension (hours)")


def set_lab(engine: Engine, lab: str, deadline: dt.datetime | None = None, late_policy: str | None = None) -> None:
    from grader.cohort.policy import LatePolicy

    if late_policy is not None:
        LatePolicy.parse(late_policy)  # refuse a policy that cannot be read, before storing it
    with Session(engine) as session, session.begin():
        found = session.get(LabSetting, lab)
        if found is None:
            found = LabSetting(lab=lab, late_policy="none")
            session.add(found)
        if deadline is not None:
            found.deadline = deadline
        if late_policy is not None:
            found.late_policy = late_policy
        audit(session, "*", lab, "policy", None, None,
              json.dumps({"deadline": str(found.deadline), "late_policy": found.late_policy}))
