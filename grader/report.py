"""Feedback: terminal tables, HTML pages (every learner string escaped), and the course report."""

from __future__ import annotations

import html
from pathlib import Path

_STATUS_MARK = {"passed": "✔", "partial": "◐", "failed": "✘", "skipped": "–"}
_STATUS_COLOUR = {"passed": "#1a7f37", "partial": "#9a6700", "failed": "#cf222e", "skipped": "#6e7781"}


MESSAGE_LIMIT = 4000  # characters of one check's details as shown (judge already caps messages at 2,000)
NOTES_LIMIT = 10_000  # characters of a submission's notes (Result.output) as shown
NAME_LIMIT = 1000  # characters of a file name or a title as shown


def _safe(text: object, limit: int = MESSAGE_LIMIT) -> str:
    """Learner-controlled text as shown: controls and bidi/format characters escaped visibly, length capped."""
    from grader.execute import clean_text

    return clean_text(str(text), limit)


def _h(text: object, limit: int = MESSAGE_LIMIT) -> str:
    """`_safe` text, HTML-escaped (html.escape alone keeps control characters)."""
    return html.escape(_safe(text, limit))


_STATE = {"graded": "ran and graded", "rejected": "<strong>rejected</strong>: not run",
          "error": "<strong>grader error</strong>: regrade"}


def _message(result, reveal_hidden: bool = False) -> str:
    if not result.visible and not reveal_hidden:
        return "hidden check: details are shown after grades are published"
    if result.status == "passed":
        return result.message or result.description
    failed = result.status in ("failed", "partial")
    extra = f" Hint: {result.hint} (reread: {result.section})" if failed and result.hint else ""
    return f"{result.message}{extra}"


def checks_text(title: str, results, notice: str = "") -> str:
    """A plain-text table of check results."""
    lines = [_safe(title, NAME_LIMIT)]
    if notice:
        lines.append(_safe(notice, NOTES_LIMIT))
    for r in results:
        lines.append(f"  {_STATUS_MARK.get(r.status, '?')} {_safe(r.name, NAME_LIMIT):<28} {r.score:>4g}/{r.max_score:<4g} "
                     f"{_safe(_message(r))}")
    total, top = sum(r.score for r in results), sum(r.max_score for r in results)
    lines.append(f"  total {total:g}/{top:g}")
    return "\n".join(lines)


def checks_html(title: str, results, notice: str = "", reveal_hidden: bool = False) -> str:
    """An HTML table of check results; all text is escaped."""
    rows = []
    for r in results:
        colour = _STATUS_COLOUR.get(r.status, "#000")
        name = _h(r.name, NAME_LIMIT) + ("" if r.visible else " <em>(hidden)</em>")
        rows.append(
            f"<tr><td style='color:{colour}'>{_STATUS_MARK.get(r.status, '?')} {_h(r.status, NAME_LIMIT)}</td>"
            f"<td><code>{name}</code><br><small>{_h(r.description) if r.visible or reveal_hidden else ''}"
            f"</small></td><td>{r.score:g}/{r.max_score:g}</td>"
            f"<td>{_h(_message(r, reveal_hidden))}</td></tr>"
        )
    total, top = sum(r.score for r in results), sum(r.max_score for r in results)
    notice_html = f"<p><strong>{_h(notice, NOTES_LIMIT)}</strong></p>" if notice else ""
    return (f"<div><h3>{_h(title, NAME_LIMIT)} — {total:g}/{top:g}</h3>{notice_html}"
            "<table><thead><tr><th>status</th><th>check</th><th>points</th><th>details</th></tr></thead>"
            f"<tbody>{''.join(rows)}</tbody></table></div>")


def _plain(text: str, limit: int = MESSAGE_LIMIT):
    """Learner-controlled text for the terminal: no rich markup, no escape sequences, no bidi or format
    characters, no lone surrogates, and at most `limit` characters."""
    from rich.text import Text

    return Text(_safe(text, limit))


def print_results(results, console=None, reveal_hidden: bool = False) -> None:
    """A rich table: one row per submission, then the checks of each (learner text is never markup)."""
    from rich.console import Console
    from rich.table import Table

    console = console or Console()
    for res in results:
        table = Table(title=_plain(f"{res.lab} — {res.submission}", NAME_LIMIT), title_justify="left")
        for column in ("check", "status", "points", "details"):
            table.add_column(column, overflow="fold")
        for t in res.tests:
            table.add_row(_plain(t.name + ("" if t.visible else " (hidden)")), _plain(t.status),
                          f"{t.score:g}/{t.max_score:g}", _plain(_message(t, reveal_hidden)))
        console.print(table)
        if res.output:
            console.print(_plain(res.output, NOTES_LIMIT), markup=False, highlight=False)
        how = {"rejected": " — not graded: the file was rejected", "error": " — the grader failed: regrade it"}
        console.print(f"[bold]score {res.score:g}/{res.max_score:g}[/bold]{how.get(res.status, '')} "
                      f"({res.execution_time:.1f} s)")


def summary_table(rows: list[tuple[str, str, float, float, float]], console=None) -> None:
    """lab → score table for `make demo`."""
    from rich.console import Console
    from rich.table import Table

    table = Table(title="Reference solutions, graded")
    for column in ("lab", "title", "score", "percent", "seconds"):
        table.add_column(column)
    for lab_id, title, score, top, seconds in rows:
        table.add_row(lab_id, title, f"{score:g}/{top:g}", f"{100 * score / top:.0f} %" if top else "-",
                      f"{seconds:.1f}")
    (console or Console()).print(table)


def write_html_report(results, path: Path, title: str = "mlops-course report", reveal_hidden: bool = False) -> Path:
    """One HTML page: a summary table, then each submission's checks."""
    summary = "".join(
        f"<tr><td><a href='#r{i}'>{_h(r.lab, NAME_LIMIT)}</a></td><td>{_h(r.submission, NAME_LIMIT)}</td>"
        f"<td>{_STATE.get(r.status, _h(r.status, NAME_LIMIT))}</td>"
        f"<td>{r.score:g}/{r.max_score:g}</td><td>{(100 * r.score / r.max_score if r.max_score else 0):.0f} %</td>"
        f"<td>{r.execution_time:.1f} s</td></tr>" for i, r in enumerate(results)
    )
    sections = "".join(
        f"<section id='r{i}'>{checks_html(f'{r.lab}: {_safe(r.submission, NAME_LIMIT)}', r.tests, r.output, reveal_hidden)}"
        "</section>"
        for i, r in enumerate(results)
    )
    page = (
        "<!doctype html><html><head><meta charset='utf-8'>"
        f"<title>{html.escape(title)}</title><style>body{{font-family:sans-serif;max-width:70em;margin:2em auto}}"
        "table{border-collapse:collapse}td,th{border:1px solid #ddd;padding:4px 8px;vertical-align:top}"
        f"</style></head><body><h1>{html.escape(title)}</h1><table><thead><tr><th>lab</th><th>submission</th>"
        f"<th>state</th><th>score</th><th>percent</th><th>time</th></tr></thead><tbody>{summary}</tbody></table>{sections}"
        "</body></html>"
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(page, encoding="utf-8", errors="replace")
    return path
