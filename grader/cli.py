"""`mlops-grade`: assign labs, self-check, grade submissions, grade the reference solutions."""

from __future__ import annotations

import os
from pathlib import Path
from typing import List, Optional

import typer

app = typer.Typer(help="The course autograder: learner code runs sandboxed; verdicts are judged outside it.",
                  no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False)


@app.command()
def assign(labs: Optional[List[str]] = typer.Argument(None, help="Lab numbers or ids; default: all labs."),
           check: bool = typer.Option(False, "--check", help="Only verify labs/ is up to date (exit 1 if not).")):
    """Regenerate labs/ from solutions/ (solution regions become stubs)."""
    import json

    from grader.assign import build_lab, dumps
    from grader.labs import find_lab, lab_modules

    modules = [find_lab(n) for n in labs] if labs else list(lab_modules().values())
    stale = []
    for module in modules:
        lab = module.LAB
        text = dumps(build_lab(json.loads(lab.solution_path.read_text(encoding="utf-8")), lab.id))
        current = lab.lab_path.read_text(encoding="utf-8") if lab.lab_path.exists() else None
        if current != text:
            stale.append(lab.id)
            if not check:
                lab.lab_path.parent.mkdir(parents=True, exist_ok=True)
                lab.lab_path.write_text(text, encoding="utf-8")
        typer.echo(f"{lab.id}: {'stale' if current != text and check else 'written' if current != text else 'up to date'}")
    if check and stale:
        typer.echo(f"labs/ is out of date for {', '.join(stale)}: run `make labs`", err=True)
        raise typer.Exit(1)


@app.command()
def check(lab: str = typer.Argument(..., help="Lab number or id, e.g. 03."),
          path: Optional[Path] = typer.Argument(None, help="Notebook to check; default labs/<lab>.ipynb."),
          notebook: Optional[Path] = typer.Option(None, help="Notebook to check (same as the argument)."),
          no_sandbox: bool = typer.Option(False, "--no-sandbox", help="Run without bubblewrap.")):
    """Self-check: run your lab notebook (sandboxed) and show its visible checks."""
    notebook = path or notebook
    from grader.grade import grade_notebook
    from grader.labs import find_lab
    from grader.report import print_results
    from grader.sandbox import probe_bubblewrap

    module = find_lab(lab)
    isolate = not no_sandbox
    if isolate and (reason := probe_bubblewrap()):
        typer.echo(f"Notice: {reason}. Running your notebook without the sandbox.", err=True)
        isolate = False
    checked = notebook or module.LAB.lab_path
    result = grade_notebook(module, checked, include_hidden=False, isolate=isolate)
    print_results([result])
    from grader.grade import _is_solution

    # a grader failure is not the learner's attempt, nor is the lab's reference solution
    if result.status != "error" and not _is_solution(module.LAB, Path(checked)):
        from grader.progress import record_attempt

        if notice := record_attempt(module.LAB.id, result.tests, notebook=checked, source="check",
                                    score=result.score, max_score=result.max_score, evidence=result.evidence):
            typer.echo(notice, err=True)


@app.command()
def progress(learner: Optional[str] = typer.Option(None, "--learner", help="A learner in an instructor's gradebook "
                                                   "(needs --db); default: your own check history."),
             db: Optional[str] = typer.Option(None, "--db", envvar="MLOPS_GRADEBOOK",
                                              help="With --learner: the gradebook URL or SQLite path (read-only)."),
             html_out: Optional[Path] = typer.Option(None, "--html", help="Also write the view as an HTML page here.")):
    """Where you stand: each lab done / started / not started, scores and dates, what failing checks ask next,
    the next lab, time spent vs the estimate (from your `mlops-grade check` and `self_check()` history)."""
    from grader.progress import load, render, write_html

    try:
        view = load(learner, db)
    except Exception as err:  # noqa: BLE001 — an unreadable history or gradebook: say so plainly
        typer.echo(f"cannot read progress: {err}", err=True)
        raise typer.Exit(2) from None
    render(view)
    if html_out:
        typer.echo(f"html: {write_html(view, html_out)}")


@app.command()
def portfolio(out: Path = typer.Option(Path("site"), "--out", help="Folder for the static site."),
              results: Optional[List[Path]] = typer.Option(None, "--results", help="`mlops-grade grade --json` files "
                                                           "to build from (every check, as graded); repeatable."),
              learner: Optional[str] = typer.Option(None, "--learner", help="A learner in an instructor's gradebook "
                                                    "(needs --db)."),
              db: Optional[str] = typer.Option(None, "--db", envvar="MLOPS_GRADEBOOK", help="With --learner: the "
                                               "gradebook URL or SQLite path (read-only)."),
              repo_url: str = typer.Option("", "--repo-url", help="Your repository's web address: each milestone links "
                                           "its notebook there."),
              branch: str = typer.Option("main", "--branch", help="With --repo-url: the branch to link."),
              title: str = typer.Option("MLOps portfolio", "--title", help="The site's title.")):
    """A static portfolio site built only from graded evidence: each passed lab with the figures the grader
    measured, its score history, its evidence bundle; a README badge. Default source: your check history."""
    from grader.portfolio import build_site
    from grader.progress import db_path, read_gradebook, read_history, read_results

    try:
        if results:
            attempts, source = read_results(results), "graded results " + ", ".join(p.name for p in results)
        elif learner:
            if not db:
                raise ValueError("--learner reads an instructor's gradebook: give it with --db URL")
            attempts, source = read_gradebook(db, learner), f"gradebook {db}, learner {learner}"
        else:
            attempts = read_history()
            source = f"your check history ({db_path()}; visible checks only: hidden checks' figures come with a grade)"
    except Exception as err:  # noqa: BLE001 — an unreadable source: say so plainly
        typer.echo(f"cannot read graded results: {err}", err=True)
        raise typer.Exit(2) from None
    index = build_site(attempts, out, title=title, source=source, repo_url=repo_url, branch=branch)
    typer.echo(f"portfolio: {index} (badge: {out / 'badge.md'})")


@app.command()
def grade(lab: str = typer.Argument(..., help="Lab number or id, e.g. 03."),
          submissions: Optional[List[Path]] = typer.Argument(None, help="Notebook files to grade (not with --cohort)."),
          json_out: Optional[Path] = typer.Option(None, "--json", help="Write results (Gradescope shape) here."),
          html_out: Optional[Path] = typer.Option(None, "--html", help="Write an HTML feedback page here."),
          jobs: int = typer.Option(0, "--jobs", "-j", help="Sandboxes run at once (default 1; with --cohort, one more "
                                   "than the cores: one job's waits for its kernel and sandbox are another's turn)."),
          no_sandbox: bool = typer.Option(False, "--no-sandbox", help="Grade WITHOUT isolation (trusted code only)."),
          reveal_hidden: bool = typer.Option(False, "--reveal-hidden", help="Show hidden checks' details (instructors)."),
          cohort: Optional[Path] = typer.Option(None, "--cohort", help="A cohort folder (`mlops-grade collect`): grade "
                                                "what is new or changed into the gradebook."),
          db: Optional[str] = typer.Option(None, "--db", envvar="MLOPS_GRADEBOOK",
                                           help="Gradebook URL or SQLite path; default <cohort>/gradebook.db."),
          roster: Optional[Path] = typer.Option(None, "--roster", help="Roster CSV (id, name, email, lms_id, ...)."),
          backend: str = typer.Option("local", "--backend", help="local (threads here) or dask (--scheduler)."),
          scheduler: Optional[str] = typer.Option(None, "--scheduler", help="Dask scheduler address, tcp://HOST:PORT."),
          checks_dir: Optional[Path] = typer.Option(None, "--checks-dir", help="Private checks that override or extend "
                                                    "the lab's (<lab id>.py or labNN.py in that folder)."),
          regrade: bool = typer.Option(False, "--regrade", help="With --cohort: grade every submission again."),
          quiet: bool = typer.Option(False, "--quiet", help="With --cohort: no progress bar.")):
    """Grade submissions fully (visible and hidden checks); every submission gets a result."""
    from grader.grade import Interrupted, grade_batch, write_results
    from grader.labs import find_lab
    from grader.report import print_results, write_html_report
    from grader.sandbox import probe_bubblewrap

    module = find_lab(lab)
    if jobs < 1:
        jobs = (os.cpu_count() or 1) + 1 if cohort is not None else 1
    if checks_dir is not None:
        from grader.cohort import private

        try:
            private.refuse_public_places(checks_dir, *([cohort] if cohort else []))
            module = private.load(module, checks_dir)
        except (OSError, ValueError, SyntaxError) as err:
            typer.echo(f"--checks-dir: {err}", err=True)
            raise typer.Exit(2) from None
    if cohort is not None:
        if submissions:
            typer.echo("Give notebook FILES or --cohort DIR, not both.", err=True)
            raise typer.Exit(2)
        if json_out or html_out:
            typer.echo("With --cohort, results go to the gradebook: write them with `mlops-grade gradebook export "
                       "--format gradescope|html|...`.", err=True)
            raise typer.Exit(2)
        _grade_cohort(module, cohort, db=db, roster=roster, jobs=jobs, backend=backend, scheduler=scheduler,
                      regrade=regrade, isolate=not no_sandbox, progress=not quiet)
        return
    if not submissions:
        typer.echo("Name the notebook FILES to grade, or a cohort folder with --cohort DIR.", err=True)
        raise typer.Exit(2)
    if not no_sandbox and (reason := probe_bubblewrap()):
        typer.echo(f"Refusing to grade without a sandbox: {reason}.\nInstall bubblewrap, or pass --no-sandbox "
                   "if you trust every submission.", err=True)
        raise typer.Exit(2)
    done: list = []

    def record(result) -> None:
        done.append(result)
        if json_out:
            write_results(done, json_out, reveal_hidden)

    try:
        results = grade_batch(module, submissions, jobs=jobs, on_result=record, isolate=not no_sandbox)
    except Interrupted as stop:
        kept = f"; {json_out} holds them" if json_out and stop.results else ""
        typer.echo(f"\nInterrupted: {len(stop.results)} of {stop.total} submissions were graded{kept}. "
                   "Run the same command again for the rest.", err=True)
        if json_out and stop.results:
            write_results(stop.results, json_out, reveal_hidden)
        if html_out and stop.results:
            write_html_report(stop.results, html_out, f"Lab {module.LAB.id} (interrupted)", reveal_hidden)
        raise typer.Exit(130) from None
    if json_out:
        write_results(results, json_out, reveal_hidden)
    if html_out:
        write_html_report(results, html_out, f"Lab {module.LAB.id}", reveal_hidden)
    print_results(results, reveal_hidden=reveal_hidden)


@app.command()
def demo(report: Path = typer.Option(Path("build/report"), help="Directory for index.html and results.json."),
         labs: Optional[List[str]] = typer.Option(None, "--lab", help="Only these labs."),
         no_sandbox: bool = typer.Option(False, "--no-sandbox", help="Run without bubblewrap.")):
    """Execute and grade every lab's reference solution; print lab → score; write an HTML report."""
    from grader.grade import grade_notebook, write_results
    from grader.labs import find_lab, lab_modules
    from grader.report import print_results, summary_table, write_html_report
    from grader.sandbox import probe_bubblewrap

    isolate = not no_sandbox
    if isolate and (reason := probe_bubblewrap()):
        typer.echo(f"Notice: {reason}. Grading the reference solutions without the sandbox.", err=True)
        isolate = False
    modules = [find_lab(n) for n in labs] if labs else list(lab_modules().values())
    results = []
    for module in modules:
        result = grade_notebook(module, module.LAB.solution_path, reference=True, isolate=isolate)
        results.append(result)
        if result.score < result.max_score:
            print_results([result])
    write_results(results, report / "results.json", reveal_hidden=True)
    page = write_html_report(results, report / "index.html", "Reference solutions", reveal_hidden=True)
    from grader.portfolio import build_site
    from grader.progress import read_results

    site = build_site(read_results([report / "results.json"]), report / "portfolio",
                      title="Portfolio of the reference solutions", source="the reference solutions, graded here")
    summary_table([(r.lab, find_lab(r.lab).LAB.title, r.score, r.max_score, r.execution_time) for r in results])
    typer.echo(f"report: {page}\nportfolio: {site}")
    if any(r.score < r.max_score for r in results):
        raise typer.Exit(1)


@app.command()
def doctor():
    """Which isolation features this host gives the grader (bubblewrap, namespaces, cgroups, quotas)."""
    from grader.doctor import features

    found = features()
    for feature in found:
        typer.echo(feature.line())
    missing = [f.name for f in found if not f.ok]
    typer.echo(f"{len(found) - len(missing)} of {len(found)} features available"
               + (f"; missing: {', '.join(missing)}" if missing else ""))


def _grade_cohort(module, cohort: Path, *, db, roster, jobs, backend, scheduler, regrade, isolate, progress) -> None:
    from grader.cohort import gradebook
    from grader.cohort.roster import Roster
    from grader.cohort.runner import grade_cohort
    from grader.sandbox import probe_bubblewrap

    if not cohort.is_dir():
        typer.echo(f"--cohort {cohort}: no such folder (collect submissions with `mlops-grade collect`)", err=True)
        raise typer.Exit(2)
    if backend == "local" and isolate and (reason := probe_bubblewrap()):
        typer.echo(f"Refusing to grade without a sandbox: {reason}.", err=True)
        raise typer.Exit(2)
    try:
        members = Roster.read(roster) if roster else None
        engine = gradebook.open_gradebook(db or str(cohort / "gradebook.db"))
    except (OSError, ValueError) as err:
        typer.echo(str(err), err=True)
        raise typer.Exit(2) from None
    written = []
    try:
        summary = grade_cohort(module, cohort, engine, jobs=jobs, backend=backend, scheduler=scheduler, regrade=regrade,
                               roster=members, isolate=isolate, progress=progress,
                               on_result=lambda job, result: written.append(job.learner))
    except KeyboardInterrupt:
        typer.echo(f"\nInterrupted: {len(written)} submissions were graded and are in the gradebook. "
                   "Run the same command again for the rest.", err=True)
        raise typer.Exit(130) from None
    except ValueError as err:
        typer.echo(str(err), err=True)
        raise typer.Exit(2) from None
    for problem in summary.problems:
        typer.echo(f"not graded: {problem}", err=True)
    typer.echo(f"{module.LAB.id}: {summary.total} current submissions; graded {summary.todo} now "
               f"({summary.written['new']} new, {summary.written['regraded']} regraded, {summary.errors} grader errors "
               f"to retry) in {summary.seconds:.1f} s; {summary.total - summary.todo} were up to date")


@app.command()
def collect(source: Path = typer.Argument(..., help="A folder tree, a Canvas or Moodle submissions zip, or a folder of "
                                          "learners' git repositories / bundles."),
            lab: str = typer.Option(..., "--lab", help="Lab number or id."),
            into: Path = typer.Option(..., "--into", help="The cohort folder to collect into."),
            roster: Optional[Path] = typer.Option(None, "--roster", help="Roster CSV: maps LMS ids and names to learners."),
            deadline: Optional[str] = typer.Option(None, "--deadline", help="Git: the last commit before this ISO time."),
            git: Optional[bool] = typer.Option(None, "--git/--no-git", help="Read SOURCE as git repositories (default: "
                                               "guessed).")):
    """Collect one lab's submissions into a cohort folder: learner id, submission time and content hash."""
    from grader.cohort.intake import collect as collect_into
    from grader.cohort.policy import parse_time
    from grader.cohort.roster import Roster
    from grader.labs import find_lab

    lab_id = find_lab(lab).LAB.id
    try:
        members = Roster.read(roster) if roster else None
        found, problems = collect_into(source, lab_id, into, roster=members,
                                       deadline=parse_time(deadline) if deadline else None, git=git)
    except (OSError, ValueError) as err:
        typer.echo(str(err), err=True)
        raise typer.Exit(2) from None
    for item in found:
        typer.echo(f"{item.learner:<24} {item.submitted_at or '(no time)':<32} {item.sha256[:12]}  {item.source}: "
                   f"{item.original}")
    for problem in problems:
        typer.echo(f"skipped: {problem.where}: {problem.message}", err=True)
    missing = [m.id for m in members if m.id not in {f.learner for f in found}] if members else []
    typer.echo(f"collected {len(found)} submissions of {lab_id} into {into}"
               + (f"; no submission from {len(missing)}: {', '.join(missing)}" if missing else ""))


gradebook_app = typer.Typer(help="The cohort gradebook: exports, overrides, late policy, extensions.", no_args_is_help=True)
app.add_typer(gradebook_app, name="gradebook")
DB_OPTION = typer.Option(..., "--db", envvar="MLOPS_GRADEBOOK", help="Gradebook URL or SQLite path.")


def _open(db: str):
    from grader.cohort.gradebook import open_gradebook

    try:
        return open_gradebook(db)
    except Exception as err:  # noqa: BLE001 — an unreachable or unreadable gradebook: say so plainly
        typer.echo(f"cannot open the gradebook {db}: {err}", err=True)
        raise typer.Exit(2) from None


def _lab_id(lab: str) -> str:
    from grader.labs import find_lab

    try:
        return find_lab(lab).LAB.id
    except LookupError:
        return lab


@gradebook_app.command("export")
def gradebook_export(db: str = DB_OPTION,
                     fmt: str = typer.Option(..., "--format", help="canvas|moodle|gradescope|junit|html|csv"),
                     out: Path = typer.Option(..., "--out", help="File (canvas, moodle, junit, csv) or folder "
                                              "(gradescope, html)."),
                     lab: Optional[str] = typer.Option(None, "--lab", help="Only this lab (needed where several are)."),
                     title: Optional[str] = typer.Option(None, "--title", help="The assignment's name in the LMS."),
                     assignment_id: str = typer.Option("", "--assignment-id", help="Canvas assignment id.")):
    """Export final grades (overrides and late policy applied now) for an LMS, Gradescope, CI or learners."""
    from grader.cohort.exports import export

    engine = _open(db)
    try:
        written = export(engine, fmt, out, lab=_lab_id(lab) if lab else None, title=title, assignment_id=assignment_id)
    except ValueError as err:
        typer.echo(str(err), err=True)
        raise typer.Exit(2) from None
    typer.echo(f"{fmt}: wrote {len(written)} file(s) under {out}")


@gradebook_app.command("override")
def gradebook_override(learner: str = typer.Argument(...), lab: str = typer.Argument(...),
                       check: Optional[str] = typer.Argument(None, help="One check; default: the whole lab's score."),
                       score: float = typer.Option(..., "--score"), reason: str = typer.Option(..., "--reason"),
                       db: str = DB_OPTION):
    """Override a learner's score (a check's or the lab's); a regrade never replaces it; audited."""
    from grader.cohort.gradebook import add_override

    engine = _open(db)
    try:
        add_override(engine, learner, _lab_id(lab), score, reason, check=check or "")
    except (LookupError, ValueError) as err:
        typer.echo(str(err), err=True)
        raise typer.Exit(2) from None
    typer.echo(f"override: {learner} {_lab_id(lab)} {check or '(whole lab)'} = {score:g}")


@gradebook_app.command("policy")
def gradebook_policy(lab: str = typer.Argument(...), db: str = DB_OPTION,
                     deadline: Optional[str] = typer.Option(None, "--deadline", help="ISO 8601, e.g. 2026-03-01T23:59+01:00"),
                     late: Optional[str] = typer.Option(None, "--late", help="none | linear:10/hour | linear:20/day | "
                                                        "zero[:grace=2]")):
    """Set a lab's deadline and late policy (applied at export time, never to stored scores)."""
    from grader.cohort.gradebook import set_lab
    from grader.cohort.policy import parse_time

    engine = _open(db)
    try:
        set_lab(engine, _lab_id(lab), parse_time(deadline) if deadline else None, late)
    except ValueError as err:
        typer.echo(str(err), err=True)
        raise typer.Exit(2) from None
    typer.echo(f"{_lab_id(lab)}: deadline {deadline or '(unchanged)'}, late policy {late or '(unchanged)'}")


@gradebook_app.command("extend")
def gradebook_extend(learner: str = typer.Argument(...), lab: str = typer.Argument(...),
                     hours: float = typer.Option(..., "--hours"), reason: str = typer.Option("", "--reason"),
                     db: str = DB_OPTION):
    """Give a learner extra hours on a lab's deadline."""
    from grader.cohort.gradebook import set_extension

    set_extension(_open(db), learner, _lab_id(lab), hours, reason)
    typer.echo(f"extension: {learner} {_lab_id(lab)} +{hours:g} h")


@gradebook_app.command("show")
def gradebook_show(db: str = DB_OPTION, learner: Optional[str] = typer.Option(None, "--learner"),
                   lab: Optional[str] = typer.Option(None, "--lab")):
    """Final grades (one row per learner and lab); with --learner, their checks and audit trail too."""
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text
    from sqlalchemy import select
    from sqlalchemy.orm import Session

    from grader.cohort import gradebook
    from grader.cohort.exports import finals

    engine = _open(db)
    rows = finals(engine, _lab_id(lab) if lab else None, learner, record_penalties=False)
    console = Console(width=160)
    table = Table(title="gradebook")
    for column in ("learner", "lab", "status", "submitted", "raw", "late", "final", "overrides"):
        table.add_column(column, overflow="fold")
    for r in rows:
        table.add_row(Text(r.learner.id), r.lab, r.status, r.submitted_at.isoformat(timespec="minutes") if r.submitted_at
                      else "", f"{r.raw:g}" if r.final is not None else "",
                      f"-{r.penalty:g} ({r.hours_late:.1f} h)" if r.penalty else "",
                      f"{r.final:g}/{r.max_score:g}" if r.final is not None else "", Text("; ".join(r.overrides)))
    console.print(table)
    if learner:
        for r in rows:
            checks = Table(title=f"{r.lab}: checks")
            for column in ("check", "status", "points", "details"):
                checks.add_column(column, overflow="fold")
            for t in r.tests:
                checks.add_row(Text(t["name"]), t.get("check_status", t["status"]), f"{t['score']:g}/{t['max_score']:g}",
                               Text(str(t.get("output", ""))[:300]))
            if r.tests:
                console.print(checks)
        with Session(engine) as session:
            trail = session.scalars(select(gradebook.Audit).where(gradebook.Audit.learner_id == learner)
                                    .order_by(gradebook.Audit.id)).all()
        audit = Table(title="audit trail")
        for column in ("when", "lab", "check", "kind", "old", "new", "detail", "by"):
            audit.add_column(column, overflow="fold")
        for a in trail:
            audit.add_row(gradebook.utc(a.at).isoformat(timespec="seconds"), a.lab, Text(a.check), a.kind,
                          "" if a.old is None else f"{a.old:g}", "" if a.new is None else f"{a.new:g}", Text(a.detail),
                          Text(a.actor))
        console.print(audit)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
