"""The grading pipeline for one submission, and for a batch: every submission gets a result."""

from __future__ import annotations

import json
import shutil
import threading
import time
import traceback
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Iterable

from grader import assign, entrants, evidence, secret
from grader.budget import Budget
from grader.execute import clean_text, execute
from grader.judge import MESSAGE_LIMIT, CheckResult, Context, judge
from grader.launch import GraderTimeout
from grader.notebook import NotebookError, lab_id_of, read_submission
from grader.sandbox import Limits, Sandbox

NAME_LIMIT = 1000  # characters of a submission's file name as shown
OUTPUT_LIMIT = 10_000  # characters of a result's notes as shown


@dataclass
class Result:
    """One submission's grade: the Gradescope results.json shape plus the fields our reports need."""

    submission: str
    lab: str
    score: float
    max_score: float
    execution_time: float
    output: str  # why the submission got what it got, beyond the checks
    tests: list[CheckResult] = field(default_factory=list)
    status: str = "graded"  # graded | rejected (not gradable as this lab) | error (the grader failed)
    timing: dict | None = None  # how the submission's time budget was spent (grader/budget.py)
    secret: str = ""  # the fingerprint of the installation secret its hidden data was drawn from (never the secret)
    evidence: dict | None = None  # what the grade rests on (grader/evidence.py): versions, hashes, seeds

    def to_json(self, reveal_hidden: bool = False) -> dict:
        tests = []
        for t in self.tests:
            shown = t.visible or reveal_hidden
            tests.append({  # Gradescope's `status` is only passed/failed; ours (partial, skipped) is `check_status`
                "name": t.name, "score": t.score, "max_score": t.max_score,
                "status": "passed" if t.status == "passed" else "failed", "check_status": t.status,
                "output": clean_text(_test_output(t), 2 * MESSAGE_LIMIT) if shown else f"hidden check: {t.status}",
                "visibility": "visible" if t.visible else "after_published",
                **({"hint": t.hint, "section": t.section, "description": t.description} if shown else {}),
                **({"figures": t.figures} if shown and t.figures else {}),
            })
        # learner text (file names, notes, messages) is cleaned and capped here too: it is shown as it is stored
        return {"submission": clean_text(self.submission, NAME_LIMIT), "lab": self.lab, "status": self.status,
                "score": round(self.score, 4), "max_score": self.max_score,
                "execution_time": round(self.execution_time, 2), "output": clean_text(self.output, OUTPUT_LIMIT),
                "tests": tests,
                **({"timing": self.timing} if self.timing else {}),
                **({"secret_fingerprint": self.secret} if self.secret else {}),
                **({"evidence": self.evidence} if self.evidence else {})}


def _test_output(t: CheckResult) -> str:
    if t.status == "passed":
        return t.message or "passed"
    return t.message


def grade_notebook(lab_module, path: Path, *, include_hidden: bool = True, isolate: bool = True,
                   reference: bool = False, keep_dir: Path | None = None) -> Result:
    """Grade one notebook file as `lab_module`'s lab. Never raises: failures become the result."""
    lab, checks = lab_module.LAB, lab_module.CHECKS
    max_score = sum(c.points for c in checks if c.visible or include_hidden)
    start = time.monotonic()
    base = dict(submission=str(path), lab=lab.id, max_score=max_score)
    try:
        template = assign.build_lab(_load_solution(lab), lab.id)
        if not reference and _is_solution(lab, Path(path)):
            reference = True  # an instructor's solutions/ notebook: graded as the reference it is
            notes_before = ["graded as the reference solution (this is the lab's solutions/ notebook)"]
        else:
            notes_before = []
        if reference:
            submission = assign.build_lab(_load_solution(lab), lab.id, with_solutions=True)
        else:
            submission = read_submission(Path(path))
            found = lab_id_of(submission)
            if found != lab.id:
                raise NotebookError(
                    f"this is not lab {lab.id}'s notebook (its metadata says {found or 'nothing'}); "
                    f"start from labs/{lab.id}.ipynb" if found is None else
                    f"this is the notebook of lab {found}, not of lab {lab.id}: submit labs/{lab.id}.ipynb"
                )
        restored = assign.restore(submission, template)
        budget = Budget(lab.budget)
        limits = Limits(wall_seconds=min(lab.timeout, lab.budget), memory_bytes=lab.memory_bytes,
                        disk_bytes=lab.disk_bytes)
        sandbox = Sandbox(limits, isolate=isolate)
        if isolate:
            entrants.prestart(lab_module)
        try:
            work = sandbox.mount("work", writable=True)
            digest = _digest(restored.notebook)
            with secret.submission(digest):
                params, hidden = lab_module.prepare(work)
            budget.started = time.monotonic()  # preparing the inputs is the grader's work, not the submission's
            execution = execute(restored.notebook, sandbox, params, cell_timeout=lab.cell_timeout,
                                not_needed=lab.not_needed)
            if execution.run is not None:
                budget.spend("the notebook", execution.run, cut=lab.budget < lab.timeout)
            ctx = Context(lab=lab, work=work, params=params, hidden=hidden, execution=execution,
                          new_sandbox=lambda lim: Sandbox(lim, isolate=isolate), budget=budget)
            tests = judge(checks, ctx, include_hidden=include_hidden)
            if keep_dir:
                try:
                    _keep(work, keep_dir)
                except (OSError, shutil.Error, RecursionError) as err:  # a convenience: never costs a grade
                    execution.notes.append(f"the work directory could not be kept: {str(err)[:200]}")
        finally:
            sandbox.cleanup()
        notes = notes_before + restored.notices + execution.notes
        if not execution.ok and execution.stopped:
            notes.insert(0, f"The notebook did not run to the end: {execution.error}")
        elif not execution.ok:
            notes.insert(0, f"A cell raised an error (the cells after it still ran): {execution.error}")
        if budget.ran_out:
            notes.append(f"Some checks were cut short: {budget.summary()}.")
        if not isolate:
            notes.append("graded WITHOUT the sandbox (--no-sandbox)")
        base["max_score"] = sum(t.max_score for t in tests)  # a check that cannot run here leaves the total
        return Result(score=sum(t.score for t in tests), execution_time=time.monotonic() - start,
                      output="\n".join(notes), tests=tests, timing=budget.to_json(), secret=_fingerprint(),
                      evidence=evidence.bundle(lab_module, path, digest), **base)
    except NotebookError as err:
        return Result(score=0.0, execution_time=time.monotonic() - start, output=f"Not graded: {err}",
                      tests=_all_failed(checks, include_hidden, "not graded (see above)", hints=False),
                      status="rejected", **base)
    except GraderTimeout as err:  # the machine, not the learner, was too slow: regrade this one
        return Result(score=0.0, execution_time=time.monotonic() - start,
                      output=f"Not graded: the grader ran out of time, not your code ({err}); it will be regraded.",
                      tests=_all_failed(checks, include_hidden, "grader timeout: to be regraded"), status="error",
                      **base)
    except Exception:  # the grader's own failure: record it, keep the batch going
        detail = traceback.format_exc(limit=4)
        return Result(score=0.0, execution_time=time.monotonic() - start,
                      output=f"The grader failed on this submission; tell your instructor.\n{detail}",
                      tests=_all_failed(checks, include_hidden, "grader error"), status="error", **base)


class Interrupted(Exception):
    """A batch stopped by Ctrl-C: `results` holds what was graded before it."""

    def __init__(self, results: list[Result], total: int):
        super().__init__(f"interrupted: {len(results)} of {total} submissions graded")
        self.results, self.total = results, total


def grade_batch(lab_module, paths: Iterable[Path], jobs: int = 1, on_result: Callable[[Result], None] | None = None,
                **options) -> list[Result]:
    """Grade many submissions, `jobs` sandboxes at a time; results come back in input order.

    With `keep_dir`, each submission's work directory is kept in its own `keep_dir/NNN-<file stem>`.
    Ctrl-C kills the running sandboxes within a second and raises `Interrupted` with the results so far
    (the submissions cut short are not recorded: they would read as the learner's failure).
    """
    from concurrent.futures import FIRST_COMPLETED, wait

    from grader.sandbox import stop_all

    paths = list(paths)
    results: list[Result | None] = [None] * len(paths)
    keep_root = options.pop("keep_dir", None)
    lock = threading.Lock()
    stopping = threading.Event()

    def one(index: int) -> None:
        if stopping.is_set():
            return
        keep = Path(keep_root) / f"{index:03d}-{Path(paths[index]).stem}" if keep_root else None
        result = grade_notebook(lab_module, paths[index], keep_dir=keep, **options)
        if stopping.is_set():
            return  # cut short by Ctrl-C: not a grade
        results[index] = result
        if on_result:
            with lock:  # callbacks (e.g. rewriting results.json) never run concurrently
                try:
                    on_result(result)
                except Exception:  # a reporting failure must not stop the batch
                    traceback.print_exc()

    pool = ThreadPoolExecutor(max_workers=max(1, jobs))
    pending = {pool.submit(one, i) for i in range(len(paths))}
    try:
        while pending:
            done, pending = wait(pending, timeout=0.5, return_when=FIRST_COMPLETED)
            for future in done:
                future.result()
    except KeyboardInterrupt:
        stopping.set()
        for future in pending:
            future.cancel()
        stop_all()
        if getattr(lab_module, "USES_CONTAINERS", False):
            from grader import containers

            containers.stop_all()  # builds stopped, containers and images removed
        pool.shutdown(wait=True, cancel_futures=True)
        raise Interrupted([r for r in results if r is not None], len(paths)) from None
    pool.shutdown(wait=True)
    return [r for r in results if r is not None]


def write_results(results: list[Result], path: Path, reveal_hidden: bool = False) -> None:
    """Write results atomically (a crash mid-batch leaves the previous complete file)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    payload = [r.to_json(reveal_hidden) for r in results]
    text = json.dumps(payload, indent=2, ensure_ascii=False) + "\n"
    tmp.write_text(text, encoding="utf-8", errors="replace")  # a lone surrogate must not lose the batch
    tmp.replace(path)


def _digest(notebook: dict) -> str:
    """A hash of what a submission runs (its code cells), for hidden draws that differ per submission."""
    import hashlib

    sources = ["".join(c["source"]) if isinstance(c.get("source"), list) else str(c.get("source", ""))
               for c in notebook.get("cells", []) if c.get("cell_type") == "code"]
    return hashlib.sha256(json.dumps(sources).encode("utf-8", errors="replace")).hexdigest()


def _fingerprint() -> str:
    """The installation secret's fingerprint, or "" where there is none yet (a lab that draws nothing hidden)."""
    try:
        return secret.fingerprint() if secret.location().exists() else ""
    except Exception:  # noqa: BLE001 - evidence is a convenience; it never costs a grade
        return ""


def _is_solution(lab, path: Path) -> bool:
    """Whether `path` is the lab's solution notebook (the file itself, or a byte-identical copy)."""
    try:
        if path.resolve() == lab.solution_path.resolve():
            return True
        return path.stat().st_size == lab.solution_path.stat().st_size and path.read_bytes() == \
            lab.solution_path.read_bytes()
    except OSError:
        return False


def _load_solution(lab) -> dict:
    return json.loads(lab.solution_path.read_text(encoding="utf-8"))


def _all_failed(checks, include_hidden: bool, message: str, hints: bool = True) -> list[CheckResult]:
    """Every check failed with one `message` (a submission that was not, or could not be, graded); without
    `hints`, no check's hint is attached: they answer a failure of that check, not a rejected file."""
    return [CheckResult(name=c.name, description=c.description, score=0.0, max_score=c.points, status="failed",
                        message=message, visible=c.visible, hint=c.hint if hints else "",
                        section=c.section if hints else "")
            for c in checks if c.visible or include_hidden]


def _keep(work: Path, dest: Path) -> None:
    """Copy the work dir for inspection: regular files, directories, and links as links (never followed);
    FIFOs, sockets and devices are skipped (opening a FIFO would block the grader)."""
    import os
    import shutil
    import stat

    def special(directory: str, names: list[str]) -> set[str]:
        skipped = set()
        for name in names:
            try:
                mode = os.lstat(os.path.join(directory, name)).st_mode
            except OSError:
                skipped.add(name)
                continue
            if not (stat.S_ISREG(mode) or stat.S_ISDIR(mode) or stat.S_ISLNK(mode)):
                skipped.add(name)
        return skipped

    from grader.sandbox import remove_tree

    remove_tree(dest)  # iterative: a kept tree thousands of levels deep is fine
    shutil.copytree(work, dest, symlinks=True, ignore=special)


__all__ = ["Interrupted", "Result", "grade_notebook", "grade_batch", "write_results", "asdict"]
