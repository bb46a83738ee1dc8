"""`mlops-grade`: assign labs, self-check, grade submissions, grade the reference solutions."""

from __future__ import annotations

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
    result = grade_notebook(module, notebook or module.LAB.lab_path, include_hidden=False, isolate=isolate)
    print_results([result])


@app.command()
def grade(lab: str = typer.Argument(..., help="Lab number or id, e.g. 03."),
          submissions: List[Path] = typer.Argument(..., help="Notebook files to grade."),
          json_out: Optional[Path] = typer.Option(None, "--json", help="Write results (Gradescope shape) here."),
          html_out: Optional[Path] = typer.Option(None, "--html", help="Write an HTML feedback page here."),
          jobs: int = typer.Option(1, "--jobs", "-j", help="Sandboxes run at once."),
          no_sandbox: bool = typer.Option(False, "--no-sandbox", help="Grade WITHOUT isolation (trusted code only)."),
          reveal_hidden: bool = typer.Option(False, "--reveal-hidden", help="Show hidden checks' details (instructors).")):
    """Grade submissions fully (visible and hidden checks); every submission gets a result."""
    from grader.grade import Interrupted, grade_batch, write_results
    from grader.labs import find_lab
    from grader.report import print_results, write_html_report
    from grader.sandbox import probe_bubblewrap

    module = find_lab(lab)
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
    summary_table([(r.lab, find_lab(r.lab).LAB.title, r.score, r.max_score, r.execution_time) for r in results])
    typer.echo(f"report: {page}")
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


def main() -> None:
    app()


if __name__ == "__main__":
    main()
