"""A learner's progress across the course: every self-check recorded in a small local SQLite file, and the view
built from it (terminal, HTML for JupyterLab, JSON) — or, for an instructor, from a cohort gradebook.

Recording never breaks a check: any failure to write becomes a one-line notice. Nothing is recorded while graded
(`MLOPS_GRADING=1`). Time spent on a lab is the sum of the gaps between its consecutive recorded attempts that are
at most `SESSION_GAP` apart: the time before a lab's first check, and breaks longer than that, are not counted.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import sqlite3
from dataclasses import dataclass, field
from pathlib import Path

from grader.labs import REPO

SESSION_GAP = dt.timedelta(minutes=30)  # a longer gap between two attempts is a break, not time spent
LOCK_TIMEOUT = 2.0  # seconds a recording waits for a locked database before giving up with a notice
TIME_RULE = ("time spent = the time between consecutive checks of a lab, gaps over 30 min not counted "
             "(reading before the first check and breaks are not measured)")

SCHEMA = """
CREATE TABLE IF NOT EXISTS attempts (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    lab TEXT NOT NULL,
    at TEXT NOT NULL,              -- ISO 8601, UTC
    score REAL NOT NULL,
    max_score REAL NOT NULL,
    notebook_sha256 TEXT,          -- the checked notebook's content hash (NULL where it is not known)
    source TEXT NOT NULL,          -- check (mlops-grade check) | self_check (from inside a notebook)
    evidence TEXT NOT NULL DEFAULT '{}'  -- JSON: what the grade rests on (grader/evidence.py)
);
CREATE INDEX IF NOT EXISTS attempts_lab ON attempts (lab, at);
CREATE TABLE IF NOT EXISTS checks (
    attempt_id INTEGER NOT NULL REFERENCES attempts (id),
    name TEXT NOT NULL,
    status TEXT NOT NULL,
    score REAL NOT NULL,
    max_score REAL NOT NULL,
    hint TEXT NOT NULL DEFAULT '',     -- failed or partial checks only
    section TEXT NOT NULL DEFAULT '',  -- the lesson section to reread (failed or partial checks only)
    figures TEXT NOT NULL DEFAULT '{}' -- JSON: what the grader measured for this check (CheckResult.figures)
);
CREATE INDEX IF NOT EXISTS checks_attempt ON checks (attempt_id);
"""


def db_path() -> Path:
    """`$MLOPS_PROGRESS_DB`, else `.mlops/progress.sqlite` at the course's root."""
    return Path(os.environ.get("MLOPS_PROGRESS_DB") or REPO / ".mlops" / "progress.sqlite")


ADDED_COLUMNS = {"attempts": {"evidence": "TEXT NOT NULL DEFAULT '{}'"},  # histories written before they existed
                 "checks": {"figures": "TEXT NOT NULL DEFAULT '{}'"}}


def _connect(path: Path) -> sqlite3.Connection:
    con = sqlite3.connect(path, timeout=LOCK_TIMEOUT)
    con.executescript(SCHEMA)
    for table, columns in ADDED_COLUMNS.items():
        have = {row[1] for row in con.execute(f"PRAGMA table_info({table})")}
        for name, decl in columns.items():
            if name not in have:
                con.execute(f"ALTER TABLE {table} ADD COLUMN {name} {decl}")
    return con


def file_sha256(path: Path | str | None) -> str | None:
    try:
        return hashlib.sha256(Path(path).read_bytes()).hexdigest() if path else None
    except OSError:
        return None


def record_attempt(lab_id: str, results, *, notebook: Path | str | None = None, source: str = "check",
                   at: dt.datetime | None = None, path: Path | None = None, score: float | None = None,
                   max_score: float | None = None, evidence: dict | None = None) -> str | None:
    """Record one attempt (CheckResults of one run). Returns None, or a one-line notice where it was not recorded
    for a reason the learner should know (never raises)."""
    if os.environ.get("MLOPS_GRADING") == "1":
        return None
    path = Path(path or db_path())
    try:
        results = list(results)
        when = (at or dt.datetime.now(dt.timezone.utc)).astimezone(dt.timezone.utc).isoformat(timespec="seconds")
        path.parent.mkdir(parents=True, exist_ok=True)
        con = _connect(path)
        try:
            with con:
                cur = con.execute(
                    "INSERT INTO attempts (lab, at, score, max_score, notebook_sha256, source, evidence) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (lab_id, when, float(sum(r.score for r in results) if score is None else score),
                     float(sum(r.max_score for r in results) if max_score is None else max_score),
                     file_sha256(notebook), source, json.dumps(evidence or {})))
                failing = ("failed", "partial")
                con.executemany(
                    "INSERT INTO checks (attempt_id, name, status, score, max_score, hint, section, figures) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    [(cur.lastrowid, r.name, r.status, float(r.score), float(r.max_score),
                      r.hint if r.status in failing else "", r.section if r.status in failing else "",
                      json.dumps(getattr(r, "figures", None) or {}))
                     for r in results])
        finally:
            con.close()
    except Exception as err:  # noqa: BLE001 — a locked, unwritable or corrupt history never breaks a check
        return f"Notice: this attempt was not recorded in your progress history ({path}: {err})."
    return None


# ---- reading ---------------------------------------------------------------------------------------------------


@dataclass
class Attempt:
    lab: str
    at: dt.datetime
    score: float
    max_score: float
    checks: list[dict] = field(default_factory=list)  # name, status, score, max_score, hint, section, figures
    notebook_sha256: str | None = None
    source: str = "check"
    evidence: dict = field(default_factory=dict)  # what the grade rests on (grader/evidence.py)


def read_history(path: Path | None = None) -> list[Attempt]:
    """Every recorded attempt, oldest first (an absent file is an empty history; the file is opened read-only)."""
    path = Path(path or db_path())
    if not path.exists():
        return []
    con = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=LOCK_TIMEOUT)
    try:
        con.row_factory = sqlite3.Row
        attempts, by_id = [], {}
        for row in con.execute("SELECT * FROM attempts ORDER BY at, id"):
            a = Attempt(row["lab"], dt.datetime.fromisoformat(row["at"]), row["score"], row["max_score"],
                        notebook_sha256=row["notebook_sha256"], source=row["source"],
                        evidence=_json(row, "evidence"))
            attempts.append(a)
            by_id[row["id"]] = a
        for row in con.execute("SELECT * FROM checks ORDER BY rowid"):
            if row["attempt_id"] in by_id:
                check = {k: row[k] for k in ("name", "status", "score", "max_score", "hint", "section")}
                by_id[row["attempt_id"]].checks.append({**check, "figures": _json(row, "figures")})
    finally:
        con.close()
    return attempts


def _json(row: sqlite3.Row, column: str) -> dict:
    """A JSON column ({} where a history predates it or the text is not an object)."""
    try:
        value = json.loads(row[column]) if column in row.keys() else {}
    except (TypeError, ValueError):
        return {}
    return value if isinstance(value, dict) else {}


def attempt_of(result: dict, at: dt.datetime, source: str) -> Attempt:
    """An attempt from a result's JSON (`Result.to_json`: `grade --json`, a gradebook's stored result). Hidden
    checks keep their status, never their hint (nor figures, unless the result revealed them)."""
    checks = []
    for t in result.get("tests", []):
        visible = t.get("visibility", "visible") == "visible"
        status = t.get("check_status", t.get("status", ""))
        failing = status in ("failed", "partial") and visible
        checks.append({"name": t.get("name", ""), "status": status, "score": t.get("score", 0.0),
                       "max_score": t.get("max_score", 0.0), "hint": t.get("hint", "") if failing else "",
                       "section": t.get("section", "") if failing else "",
                       "figures": t.get("figures") if isinstance(t.get("figures"), dict) else {}})
    evidence = result.get("evidence") if isinstance(result.get("evidence"), dict) else {}
    evidence = {**evidence, **({"secret_fingerprint": result["secret_fingerprint"]}
                               if result.get("secret_fingerprint") else {}),
                **({"timing": result["timing"]} if isinstance(result.get("timing"), dict) else {}),
                "execution_seconds": result.get("execution_time")}
    return Attempt(result.get("lab", ""), at, float(result.get("score", 0.0)), float(result.get("max_score", 0.0)),
                   checks, evidence.get("notebook_sha256"), source, evidence)


def read_results(paths) -> list[Attempt]:
    """Attempts from `mlops-grade grade --json` files (a list of results, or one); graded results only, dated
    by the file's modification time."""
    attempts = []
    for path in paths:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
        at = dt.datetime.fromtimestamp(Path(path).stat().st_mtime, dt.timezone.utc).replace(microsecond=0)
        for result in data if isinstance(data, list) else [data]:
            if isinstance(result, dict) and result.get("status", "graded") == "graded":
                attempts.append(attempt_of(result, at, "results"))
    return attempts


def read_gradebook(url: str, learner: str) -> list[Attempt]:
    """A learner's graded submissions in an instructor's gradebook, as attempts (read-only: no migration, no
    writes). Hidden checks keep their status but never their hint."""
    from sqlalchemy import create_engine, select
    from sqlalchemy.orm import Session

    from grader.cohort import gradebook as gb

    url = gb.normalise_url(url)
    if url.startswith("sqlite:///"):
        file = url[len("sqlite:///"):]
        if not Path(file).exists():
            raise FileNotFoundError(f"no gradebook at {file}")
        url = f"sqlite:///file:{file}?mode=ro&uri=true"
    engine = create_engine(url)
    try:
        with Session(engine) as session:
            rows = session.scalars(select(gb.Grade).where(gb.Grade.learner_id == learner, gb.Grade.status == "graded")
                                   .order_by(gb.Grade.graded_at, gb.Grade.id)).all()
            out = []
            for g in rows:
                a = attempt_of({**(g.result or {}), "lab": g.lab, "score": g.score, "max_score": g.max_score},
                               gb.utc(g.graded_at), "gradebook")
                a.notebook_sha256 = g.content_hash
                a.evidence.setdefault("grader_version", g.grader_version)
                out.append(a)
            return out
    finally:
        engine.dispose()


# ---- the view --------------------------------------------------------------------------------------------------


def time_spent(times: list[dt.datetime], gap: dt.timedelta = SESSION_GAP) -> dt.timedelta:
    """The sum of the gaps between consecutive times that are at most `gap` apart."""
    times = sorted(times)
    return sum((b - a for a, b in zip(times, times[1:]) if b - a <= gap), dt.timedelta())


@dataclass
class LabProgress:
    id: str
    title: str
    week: int
    minutes: int
    status: str  # done | started | not started
    attempts: int = 0
    best: Attempt | None = None
    latest: Attempt | None = None
    spent: dt.timedelta = dt.timedelta()
    failing: list[dict] = field(default_factory=list)  # the latest attempt's failed/partial checks
    blocked: int = 0  # the latest attempt's checks with points that were skipped (they wait on a failing one)

    def to_json(self) -> dict:
        def att(a):
            return None if a is None else {"score": a.score, "max_score": a.max_score, "at": a.at.isoformat()}

        return {"lab": self.id, "title": self.title, "week": self.week, "estimate_minutes": self.minutes,
                "status": self.status, "attempts": self.attempts, "best": att(self.best), "latest": att(self.latest),
                "spent_minutes": round(self.spent.total_seconds() / 60, 1), "failing": self.failing,
                "blocked": self.blocked}


@dataclass
class Progress:
    labs: list[LabProgress]
    next_lab: str | None
    source: str  # where the attempts came from

    def to_json(self) -> dict:
        return {"source": self.source, "next_lab": self.next_lab, "time_rule": TIME_RULE,
                "labs": [lab.to_json() for lab in self.labs]}


def build(attempts: list[Attempt], labs=None, source: str = "") -> Progress:
    """Per lab in course order: done (an attempt scored full marks) / started / not started, best and latest
    attempt, the latest attempt's failing checks, time spent; the next lab is the first in course order not done."""
    if labs is None:
        from grader.labs import lab_modules

        labs = [m.LAB for m in lab_modules().values()]
    rows = []
    for lab in labs:
        mine = sorted((a for a in attempts if a.lab == lab.id), key=lambda a: a.at)
        row = LabProgress(lab.id, lab.title, lab.week, lab.minutes, "not started")
        if mine:
            row.attempts = len(mine)
            row.latest = mine[-1]
            row.best = max(mine, key=lambda a: (a.score / a.max_score if a.max_score else 0.0, a.at))
            row.status = "done" if row.best.max_score > 0 and row.best.score >= row.best.max_score else "started"
            row.spent = time_spent([a.at for a in mine])
            if row.status != "done":
                row.failing = [c for c in row.latest.checks if c["status"] in ("failed", "partial")]
                row.blocked = sum(1 for c in row.latest.checks if c["status"] == "skipped" and c["max_score"] > 0)
        rows.append(row)
    next_lab = next((r.id for r in rows if r.status != "done"), None)
    return Progress(rows, next_lab, source)


def load(learner: str | None = None, db: str | None = None, path: Path | None = None) -> Progress:
    if learner:
        if not db:
            raise ValueError("--learner reads an instructor's gradebook: give it with --db URL (or $MLOPS_GRADEBOOK)")
        return build(read_gradebook(db, learner), source=f"gradebook {db}, learner {learner}")
    path = Path(path or db_path())
    return build(read_history(path), source=f"your check history ({path})")


def _score(a: Attempt | None, fmt: str = "%Y-%m-%d %H:%M") -> str:
    return "—" if a is None else f"{a.score:g}/{a.max_score:g} ({a.at.astimezone().strftime(fmt)})"


def _spent(row: LabProgress) -> str:
    if row.attempts == 0:
        return f"— / ~{row.minutes} min"
    return f"{row.spent.total_seconds() / 60:.0f} / ~{row.minutes} min"


def render(progress: Progress, console=None) -> None:
    """The rich terminal view (learner text is never markup)."""
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    from grader.report import _safe

    if console is None:
        console = Console()
        if not console.is_terminal:
            console = Console(width=170)
    mark = {"done": "[green]✔ done[/green]", "started": "[yellow]◐ started[/yellow]", "not started": "[dim]· not started[/dim]"}
    table = Table(title=f"Course progress — from {_safe(progress.source, 400)}", title_justify="left")
    table.add_column("lab", no_wrap=True)
    table.add_column("title", overflow="ellipsis", no_wrap=True, max_width=32)
    table.add_column("week", justify="right")
    table.add_column("status", no_wrap=True)
    table.add_column("best", no_wrap=True)
    table.add_column("latest", no_wrap=True)
    table.add_column("tries", justify="right")
    table.add_column("time spent / estimate", no_wrap=True)
    for row in progress.labs:
        table.add_row(row.id, Text(row.title), str(row.week), mark[row.status], _score(row.best, "%Y-%m-%d"),
                      _score(row.latest), str(row.attempts), _spent(row))
    console.print(table)
    for row in progress.labs:
        if row.failing:
            console.print(Text(f"{row.id}: still failing in your latest attempt", style="bold"))
            for c in row.failing:
                line = f"  ✘ {_safe(c['name'], 200)} ({c['score']:g}/{c['max_score']:g})"
                if c.get("hint"):
                    line += f": {_safe(c['hint'])}"
                if c.get("section"):
                    line += f" — reread {_safe(c['section'], 400)}"
                console.print(Text(line))
            if row.blocked:
                console.print(Text(f"  … and {row.blocked} more checks were skipped: they run once these pass"))
    if progress.next_lab:
        row = next(r for r in progress.labs if r.id == progress.next_lab)
        console.print(Text(f"Next lab: {row.id} — {row.title} (week {row.week}, ~{row.minutes} min): "
                           f"mlops-grade check {row.id.split('_', 1)[0]}", style="bold"))
    else:
        console.print(Text("Every lab is done.", style="bold green"))
    console.print(Text(f"Note: {TIME_RULE}; 'done' means every visible check passed.", style="dim"))


def to_html(progress: Progress) -> str:
    """The same view as HTML (every string escaped): renders inside JupyterLab and as a page of its own."""
    def h(text) -> str:
        from grader.report import _h

        return _h(text)

    colour = {"done": "#1a7f37", "started": "#9a6700", "not started": "#6e7781"}
    rows = "".join(
        f"<tr><td><code>{h(r.id)}</code> {h(r.title)}</td><td>{r.week}</td>"
        f"<td style='color:{colour[r.status]}'>{h(r.status)}</td><td>{h(_score(r.best))}</td>"
        f"<td>{h(_score(r.latest))}</td><td>{r.attempts}</td><td>{h(_spent(r))}</td></tr>" for r in progress.labs)
    todo = ""
    for r in progress.labs:
        if r.failing:
            items = "".join(
                f"<li><code>{h(c['name'])}</code> ({c['score']:g}/{c['max_score']:g})"
                + (f": {h(c['hint'])}" if c.get("hint") else "")
                + (f" — reread <em>{h(c['section'])}</em>" if c.get("section") else "") + "</li>" for c in r.failing)
            more = (f"<li>… and {r.blocked} more checks were skipped: they run once these pass</li>"
                    if r.blocked else "")
            todo += f"<h4>{h(r.id)}: still failing in your latest attempt</h4><ul>{items}{more}</ul>"
    if progress.next_lab:
        n = next(r for r in progress.labs if r.id == progress.next_lab)
        nxt = f"<p><strong>Next lab: {h(n.id)} — {h(n.title)}</strong> (week {n.week}, ~{n.minutes} min)</p>"
    else:
        nxt = "<p><strong>Every lab is done.</strong></p>"
    return (f"<div class='mlops-progress'><h3>Course progress</h3><p><small>from {h(progress.source)}</small></p>"
            "<table><thead><tr><th>lab</th><th>week</th><th>status</th><th>best</th><th>latest</th><th>attempts</th>"
            f"<th>time spent / estimate</th></tr></thead><tbody>{rows}</tbody></table>{todo}{nxt}"
            f"<p><small>{h(TIME_RULE)}; 'done' means every visible check passed.</small></p></div>")


def write_html(progress: Progress, out: Path) -> Path:
    page = ("<!doctype html><html><head><meta charset='utf-8'><title>Course progress</title><style>"
            "body{font-family:sans-serif;max-width:70em;margin:2em auto}table{border-collapse:collapse}"
            "td,th{border:1px solid #ddd;padding:4px 8px;vertical-align:top}</style></head><body>"
            f"{to_html(progress)}</body></html>")
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(page, encoding="utf-8", errors="replace")
    return out


def text(progress: Progress) -> str:
    from rich.console import Console

    console = Console(width=170, record=True, file=open(os.devnull, "w"), color_system=None)  # noqa: SIM115
    render(progress, console)
    console.file.close()
    return console.export_text()


def main(argv: list[str] | None = None) -> None:
    """`python -m grader.progress [--learner ID --db URL]`: the view as JSON (html, text, data) for notebooks."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m grader.progress")
    parser.add_argument("--learner", default=None)
    parser.add_argument("--db", default=os.environ.get("MLOPS_GRADEBOOK"))
    args = parser.parse_args(argv)
    progress = load(args.learner, args.db)
    print(json.dumps({"html": to_html(progress), "text": text(progress), **progress.to_json()}))


if __name__ == "__main__":
    main()
