"""Grade a cohort: what is new or changed (content hash + grader version), locally or on Dask, into the gradebook.

Each result is written by this (the coordinating) process in its own transaction as soon as it arrives, so a
`kill -9` loses only the submissions being graded at that moment; the next run grades exactly those (a grade is
unique per learner, lab, content hash and grader version). A result with status `error` (the grader, not the
learner, failed) is graded again on the next run. `--regrade` grades everything again; a regrade updates the
grade row (audited) and never touches an override.
"""

from __future__ import annotations

import functools
import hashlib
import socket
import threading
import time
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from sqlalchemy import select
from sqlalchemy.orm import Session

from grader.cohort import gradebook as gb
from grader.cohort import intake, private
from grader.cohort.roster import Roster
from grader.evidence import grader_version


@dataclass
class Job:
    submission_id: int
    learner: str
    path: Path
    content_hash: str


@dataclass
class Summary:
    total: int = 0  # current submissions of the lab
    todo: int = 0  # graded in this run
    written: dict = field(default_factory=lambda: {"new": 0, "regraded": 0})
    errors: int = 0  # results with status error (graded again next run)
    seconds: float = 0.0
    problems: list = field(default_factory=list)


def sync(engine, lab_id: str, cohort: Path, roster: Roster | None = None) -> tuple[list[Job], list[str]]:
    """Record the cohort folder's submissions of `lab_id` in the gradebook; the current ones as jobs."""
    cohort = Path(cohort)
    manifest = intake.read_manifest(cohort)
    problems: list[str] = []
    if lab_id not in manifest:  # a folder tree an instructor made by hand: collect it in place
        _, found = intake.collect(cohort, lab_id, cohort, roster=roster)
        problems += [f"{p.where}: {p.message}" for p in found]
        manifest = intake.read_manifest(cohort)
    if roster:
        with Session(engine) as session, session.begin():
            for member in roster:
                gb.ensure_learner(session, member.id, **member.fields())
        for member in roster:
            if member.extension_hours:
                with Session(engine) as session:
                    current = session.get(gb.Extension, (member.id, lab_id))
                if current is None or current.hours != member.extension_hours:
                    gb.set_extension(engine, member.id, lab_id, member.extension_hours, "from the roster")
    jobs = []
    for learner, entry in sorted(manifest.get(lab_id, {}).items()):
        path = cohort / entry["file"]
        try:
            data = path.read_bytes()
        except OSError as err:
            problems.append(f"{learner}: {path} cannot be read ({err.strerror}); not graded")
            continue
        content_hash = hashlib.sha256(data).hexdigest()  # what is graded is what is on disk now
        when = entry.get("submitted_at")
        with Session(engine) as session, session.begin():
            gb.ensure_learner(session, learner, name=entry.get("name", ""), lms_id=entry.get("lms_id", ""))
        sub_id = gb.record_submission(engine, learner, lab_id, content_hash, str(path.resolve()),
                                      original=entry.get("original", ""), source=entry.get("source", ""),
                                      submitted_at=gb.utc(intake_time(when)) if when else None)
        jobs.append(Job(sub_id, learner, path, content_hash))
    return jobs, problems


def intake_time(text: str):
    from grader.cohort.policy import parse_time

    return parse_time(text)


def due(engine, lab_id: str, jobs: list[Job], version: str, regrade: bool) -> list[Job]:
    """The jobs with no final grade for this content and grader version (all of them with `regrade`)."""
    if regrade:
        return list(jobs)
    with Session(engine) as session:
        graded = {(g.learner_id, g.content_hash) for g in session.scalars(select(gb.Grade).where(
            gb.Grade.lab == lab_id, gb.Grade.grader_version == version, gb.Grade.status != "error"))}
    return [j for j in jobs if (j.learner, j.content_hash) not in graded]


def grade_cohort(lab_module, cohort: Path, engine, *, jobs: int = 1, backend: str = "local", scheduler: str | None = None,
                 regrade: bool = False, roster: Roster | None = None, grade_fn: Callable | None = None,
                 isolate: bool = True, progress: bool = True, on_result: Callable | None = None) -> Summary:
    """Grade the cohort's current submissions of the lab that are due; every result is in the gradebook on return."""
    start = time.monotonic()
    lab_id = lab_module.LAB.id
    version = grader_version(lab_module)
    all_jobs, problems = sync(engine, lab_id, cohort, roster)
    todo = due(engine, lab_id, all_jobs, version, regrade)
    summary = Summary(total=len(all_jobs), todo=len(todo), problems=problems)
    where = f"{backend}@{socket.gethostname()}"

    def write(job: Job, result) -> None:
        outcome = gb.record_grade(engine, job.submission_id, version, result, graded_by=where)
        summary.written[outcome] += 1
        summary.errors += result.status == "error"
        if on_result:
            on_result(job, result)

    with _progress(progress, len(todo), lab_id) as advance:
        if backend == "dask":
            if not scheduler:
                raise ValueError("--backend dask needs --scheduler ADDRESS (e.g. tcp://127.0.0.1:8786)")
            _run_dask(lab_module, todo, scheduler, isolate, lambda j, r: (write(j, r), advance(j)))
        elif backend == "local":
            grade_fn = grade_fn or functools.partial(_grade_local, isolate=isolate)
            _run_local(lab_module, todo, max(1, jobs), grade_fn, lambda j, r: (write(j, r), advance(j)))
        else:
            raise ValueError(f"unknown backend {backend!r}: local or dask")
    summary.seconds = time.monotonic() - start
    return summary


def _grade_local(lab_module, path: Path, isolate: bool = True):
    from grader.grade import grade_notebook

    return grade_notebook(lab_module, path, isolate=isolate)


def _run_local(lab_module, todo: list[Job], jobs: int, grade_fn: Callable, done: Callable) -> None:
    """`jobs` submissions at a time in threads (each grading in its own sandbox); results written here, one by one."""
    from grader.sandbox import stop_all

    stopping = threading.Event()

    def one(job: Job):
        if stopping.is_set():
            return None
        return grade_fn(lab_module, job.path)

    pool = ThreadPoolExecutor(max_workers=jobs)
    pending = {pool.submit(one, job): job for job in todo}
    try:
        while pending:
            finished, _ = wait(pending, timeout=0.5, return_when=FIRST_COMPLETED)
            for future in finished:
                job = pending.pop(future)
                result = future.result()
                if result is not None and not stopping.is_set():
                    done(job, result)
    except KeyboardInterrupt:
        stopping.set()
        for future in pending:
            future.cancel()
        stop_all()  # the running sandboxes: their submissions are not recorded, and graded on the next run
        pool.shutdown(wait=True, cancel_futures=True)
        raise
    pool.shutdown(wait=True)


# --- Dask ----------------------------------------------------------------------------------------------


def grade_remote(lab_id: str, name: str, data: bytes, private_sources: dict, isolate: bool = True):
    """Runs on a Dask worker: grade one notebook (sent as bytes) in the worker's own sandbox; the Result comes back."""
    import tempfile

    from grader.grade import grade_notebook
    from grader.labs import find_lab

    module = private.load(find_lab(lab_id), None, private_sources)
    with tempfile.TemporaryDirectory(prefix="mlops-dask-") as tmp:
        path = Path(tmp) / name
        path.write_bytes(data)
        result = grade_notebook(module, path, isolate=isolate)
    result.secret = result.secret or ""
    return result


def _run_dask(lab_module, todo: list[Job], scheduler: str, isolate: bool, done: Callable) -> None:
    """Each submission is one Dask task (retried on another worker if its worker dies); results are written here, by
    the coordinator, so a task that ran twice is still one grade."""
    from distributed import Client, as_completed

    sources = private.sources_of(lab_module)
    with Client(scheduler, timeout=60) as client:
        futures = {}
        for job in todo:
            future = client.submit(grade_remote, lab_module.LAB.id, f"{job.learner}.ipynb", job.path.read_bytes(),
                                   sources, isolate, pure=False, retries=2,
                                   key=f"grade-{lab_module.LAB.id}-{job.learner}-{job.content_hash[:12]}-{time.time_ns()}")
            futures[future] = job
        for future in as_completed(list(futures)):
            job = futures[future]
            try:
                result = future.result()
            except Exception as err:  # noqa: BLE001 — a task that failed everywhere: recorded as a grader error
                result = _error_result(lab_module, job, f"the Dask task failed: {type(err).__name__}: {err}")
            done(job, result)


def _error_result(lab_module, job: Job, message: str):
    from grader.grade import Result, _all_failed

    return Result(submission=str(job.path), lab=lab_module.LAB.id, score=0.0, max_score=lab_module.CHECKS.max_score,
                  execution_time=0.0, output=f"The grader failed on this submission; it will be regraded. {message}",
                  tests=_all_failed(lab_module.CHECKS, True, "grader error"), status="error")


class _progress:
    """A rich progress bar with an ETA on stderr (or nothing)."""

    def __init__(self, enabled: bool, total: int, lab_id: str):
        self.enabled, self.total, self.lab_id = enabled and total > 0, total, lab_id

    def __enter__(self):
        if not self.enabled:
            return lambda job: None
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

        self.bar = Progress(TextColumn("grading {task.description}"), BarColumn(), MofNCompleteColumn(),
                            TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(),
                            TextColumn("{task.fields[last]}"), console=Console(stderr=True))
        self.bar.__enter__()
        task = self.bar.add_task(self.lab_id, total=self.total, last="")
        return lambda job: self.bar.update(task, advance=1, last=job.learner)

    def __exit__(self, *exc):
        if self.enabled:
            self.bar.__exit__(*exc)
        return False
