"""Exports from the gradebook: final grades (overrides and the late policy applied here, at export time) as an LMS,
Gradescope, a CI dashboard or a learner reads them.

- canvas     Canvas's gradebook import CSV: Student, ID, SIS User ID, SIS Login ID, Section, "<assignment> (<id>)",
             with the "Points Possible" row Canvas's own export has
- moodle     Moodle's grade import CSV: learners matched by "Email address" (or "ID number"), one grade column and
             its feedback column
- gradescope one results.json per submission (`<out>/<learner>/results.json`), Gradescope's shape: test status only
             passed/failed, visibility fields; hidden checks' details never shown
- junit      one JUnit XML file: a <testsuite> per submission, a <testcase> per check (for instructors' dashboards)
- html       `<out>/learners/<id>.html`, one page per learner holding nothing of anyone else, and `<out>/index.html`,
             the instructor's cohort summary with the score distribution and a per-check pass-rate plot
- csv        one row per learner and lab: raw score, overrides, lateness, penalty, final score
"""

from __future__ import annotations

import base64
import csv
import html
import io
import json
import math
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session

from grader.cohort import gradebook as gb
from grader.cohort import policy as lp

FORMATS = ("canvas", "moodle", "gradescope", "junit", "html", "csv")


@dataclass
class Final:
    """One learner's grade on one lab as exported."""

    learner: gb.Learner
    lab: str
    status: str  # graded | rejected | error | missing (no submission) | pending (submitted, not graded yet)
    raw: float = 0.0  # the grader's score
    max_score: float = 0.0
    adjusted: float = 0.0  # after overrides
    penalty: float = 0.0
    hours_late: float = 0.0
    final: float | None = None  # after the late policy; None where nothing was submitted
    submitted_at: object = None
    tests: list[dict] = field(default_factory=list)  # the stored tests, check overrides applied
    output: str = ""
    overrides: list[str] = field(default_factory=list)  # "check: score (reason)" for the learner's own page
    grader_version: str = ""
    graded_at: object = None

    @property
    def percent(self) -> float | None:
        return None if self.final is None or not self.max_score else 100 * self.final / self.max_score


def finals(engine, lab: str | None = None, learner: str | None = None, record_penalties: bool = True) -> list[Final]:
    """Every (learner, lab) with a submission or on the roster, its final grade computed now."""
    out: list[Final] = []
    with Session(engine) as session:
        learners = {row.id: row for row in session.scalars(select(gb.Learner).order_by(gb.Learner.id))}
        subs = session.scalars(select(gb.Submission).where(gb.Submission.current.is_(True))).all()
        labs = sorted({s.lab for s in subs} | ({lab} if lab else set()))
        if lab:
            labs = [lab]
        settings = {s.lab: s for s in session.scalars(select(gb.LabSetting))}
        extensions = {(e.learner_id, e.lab): e.hours for e in session.scalars(select(gb.Extension))}
        overrides: dict[tuple, gb.Override] = {}
        for row in session.scalars(select(gb.Override).order_by(gb.Override.id)):
            overrides[(row.learner_id, row.lab, row.check)] = row  # the latest one per check wins
        grades: dict[int, gb.Grade] = {}
        for row in session.scalars(select(gb.Grade).order_by(gb.Grade.graded_at, gb.Grade.id)):
            grades[(row.learner_id, row.lab, row.content_hash)] = row  # the latest grade of that content
        for lab_id in labs:
            setting = settings.get(lab_id)
            policy = lp.LatePolicy.parse(setting.late_policy if setting else "none")
            deadline = gb.utc(setting.deadline) if setting else None
            current = {s.learner_id: s for s in subs if s.lab == lab_id}
            for learner_id, person in learners.items():
                if learner and learner_id != learner:
                    continue
                sub = current.get(learner_id)
                if sub is None:
                    out.append(Final(person, lab_id, "missing"))
                    continue
                grade = grades.get((learner_id, lab_id, sub.content_hash))
                if grade is None:
                    out.append(Final(person, lab_id, "pending", submitted_at=gb.utc(sub.submitted_at)))
                    continue
                row = _final(person, lab_id, grade, sub, overrides, policy, deadline, extensions.get((learner_id, lab_id), 0))
                out.append(row)
    if record_penalties:
        _audit_penalties(engine, out)
    return out


def _final(person, lab_id, grade, sub, overrides, policy, deadline, extension_hours) -> Final:
    tests = [dict(t) for t in grade.result.get("tests", [])]
    notes = []
    for test in tests:
        found = overrides.get((person.id, lab_id, test["name"]))
        if found is not None:
            score = min(max(found.score, 0.0), float(test["max_score"]))
            notes.append(f"{test['name']}: {test['score']:g} → {score:g} ({found.reason})")
            test.update(score=score, overridden=found.reason,
                        status="passed" if score >= test["max_score"] else "failed")
    adjusted = sum(float(t["score"]) for t in tests) if notes else grade.score
    whole = overrides.get((person.id, lab_id, ""))
    if whole is not None:
        notes.append(f"whole lab: {adjusted:g} → {whole.score:g} ({whole.reason})")
        adjusted = whole.score
    late = lp.apply(policy, adjusted, grade.max_score, gb.utc(sub.submitted_at), deadline, extension_hours)
    return Final(person, lab_id, grade.status, raw=grade.score, max_score=grade.max_score, adjusted=adjusted,
                 penalty=late.penalty, hours_late=late.hours_late, final=late.score, submitted_at=gb.utc(sub.submitted_at),
                 tests=tests, output=grade.result.get("output", ""), overrides=notes, grader_version=grade.grader_version,
                 graded_at=gb.utc(grade.graded_at))


def _audit_penalties(engine, rows: list[Final]) -> None:
    """A late penalty is a grade change: audited when it first applies or changes (export is when it is applied)."""
    with Session(engine) as session, session.begin():
        for row in rows:
            if row.final is None or row.status == "pending":
                continue
            last = session.scalar(select(gb.Audit).where(gb.Audit.learner_id == row.learner.id, gb.Audit.lab == row.lab,
                                                         gb.Audit.kind == "late_penalty").order_by(gb.Audit.id.desc()))
            previous = last.new if last else 0.0
            if not math.isclose(previous or 0.0, row.penalty):
                gb.audit(session, row.learner.id, row.lab, "late_penalty", previous, row.penalty,
                         f"{row.hours_late:.2f} h late; {row.adjusted:g} → {row.final:g}")


# --- the formats ------------------------------------------------------------------------------------


def export(engine, fmt: str, out: Path, lab: str | None = None, title: str | None = None,
           assignment_id: str = "") -> list[Path]:
    """Write `fmt` to `out`; the files written."""
    if fmt not in FORMATS:
        raise ValueError(f"unknown format {fmt!r}: one of {', '.join(FORMATS)}")
    rows = finals(engine, lab)
    out = Path(out)
    return {"canvas": canvas, "moodle": moodle, "gradescope": gradescope, "junit": junit, "html": html_pages,
            "csv": plain_csv}[fmt](rows, out, title=title, assignment_id=assignment_id)


def _title(lab_id: str, title: str | None) -> str:
    if title:
        return title
    try:
        from grader.labs import find_lab

        return f"Lab {lab_id.split('_', 1)[0]}: {find_lab(lab_id).LAB.title}"
    except LookupError:
        return lab_id


def _one_lab(rows: list[Final], fmt: str) -> str:
    labs = sorted({r.lab for r in rows})
    if len(labs) > 1:
        raise ValueError(f"the gradebook holds several labs ({', '.join(labs)}): name one with --lab for {fmt}")
    if not labs:
        raise ValueError("the gradebook holds no grades yet")
    return labs[0]


def _score(value: float | None) -> str:
    return "" if value is None else f"{round(value, 2):g}"


def _write_csv(path: Path, header: list[str], lines: list[list]) -> list[Path]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(lines)
    return [path]


def canvas(rows, out: Path, title=None, assignment_id="", **_) -> list[Path]:
    lab = _one_lab(rows, "canvas")
    column = f"{_title(lab, title)} ({assignment_id})" if assignment_id else _title(lab, title)
    # the maximum of a graded result: a rejected one counts checks that cannot run here (a cluster, a GPU)
    graded = [r.max_score for r in rows if r.max_score and r.status == "graded"]
    top = max(graded or [r.max_score for r in rows if r.max_score] or [0])
    lines = [["    Points Possible", "", "", "", "", _score(top)]]
    for r in rows:
        person = r.learner
        lines.append([person.name or person.id, person.lms_id, person.sis_id, person.login_id or person.id,
                      person.section, _score(r.final)])
    return _write_csv(out, ["Student", "ID", "SIS User ID", "SIS Login ID", "Section", column], lines)


def moodle(rows, out: Path, title=None, **_) -> list[Path]:
    lab = _one_lab(rows, "moodle")
    name = _title(lab, title)
    lines = []
    for r in rows:
        first, _, last = (r.learner.name or r.learner.id).partition(" ")
        feedback = f"late by {r.hours_late:.1f} h: -{r.penalty:g}" if r.penalty else ""
        lines.append([first, last, r.learner.sis_id, r.learner.email, _score(r.final), feedback])
    return _write_csv(out, ["First name", "Last name", "ID number", "Email address", f"Assignment: {name} (Real)",
                            f"Assignment: {name} (Feedback)"], lines)


def plain_csv(rows, out: Path, **_) -> list[Path]:
    header = ["learner", "name", "email", "lab", "status", "submitted_at", "raw_score", "adjusted_score", "hours_late",
              "late_penalty", "final_score", "max_score", "overrides", "grader_version", "graded_at"]
    lines = [[r.learner.id, r.learner.name, r.learner.email, r.lab, r.status,
              r.submitted_at.isoformat() if r.submitted_at else "", _score(r.raw if r.final is not None else None),
              _score(r.adjusted if r.final is not None else None), f"{r.hours_late:.2f}", _score(r.penalty),
              _score(r.final), _score(r.max_score or None), "; ".join(r.overrides), r.grader_version,
              r.graded_at.isoformat() if r.graded_at else ""] for r in rows]
    return _write_csv(out, header, lines)


def learner_tests(r: Final) -> list[dict]:
    """A learner's tests as they may see them: hidden checks show only their name, points and pass/fail."""
    shown = []
    for t in r.tests:
        visible = t.get("visibility") == "visible"
        status = "passed" if t["status"] == "passed" else "failed"  # Gradescope knows only these two
        shown.append({
            "name": t["name"], "score": float(t["score"]), "max_score": float(t["max_score"]), "status": status,
            "output": (t.get("output", "") if visible else "hidden check: details are shown after grades are published")
            + (f"\n(adjusted by your instructor: {t['overridden']})" if "overridden" in t else ""),
            "visibility": "visible" if visible else "after_published",
            **({"hint": t.get("hint", ""), "section": t.get("section", "")} if visible and status != "passed" else {}),
        })
    return shown


def gradescope(rows, out: Path, **_) -> list[Path]:
    """One results.json per submission, as a Gradescope autograder writes it (score, tests, visibility)."""
    written = []
    for r in rows:
        if r.final is None:
            continue
        notes = [r.output] if r.output else []
        if r.penalty:
            notes.append(f"Late by {r.hours_late:.1f} h: {r.penalty:g} points off ({r.adjusted:g} → {r.final:g}).")
        notes += [f"Adjusted by your instructor: {o}" for o in r.overrides]
        payload = {"score": round(r.final, 4), "execution_time": 0, "output": "\n".join(notes), "output_format": "text",
                   "visibility": "visible", "stdout_visibility": "hidden", "tests": learner_tests(r),
                   "extra_data": {"learner": r.learner.id, "lab": r.lab, "status": r.status, "raw_score": r.raw,
                                  "late_penalty": r.penalty}}
        path = out / _safe_name(r.learner.id) / "results.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(payload, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        written.append(path)
    return written


def _safe_name(text: str) -> str:
    from grader.cohort.roster import safe_id

    return safe_id(text)


def junit(rows, out: Path, **_) -> list[Path]:
    """JUnit XML: <testsuites> → a <testsuite> per submission → a <testcase> per check; a failed or partial check
    has a <failure>, a skipped one <skipped>, an ungradable submission one <error> testcase."""
    from grader.execute import clean_text

    root = ET.Element("testsuites", name="mlops-grade cohort")
    totals = {"tests": 0, "failures": 0, "errors": 0, "skipped": 0}
    for r in rows:
        if r.final is None:
            continue
        suite = ET.SubElement(root, "testsuite", name=f"{r.lab}.{r.learner.id}",
                              timestamp=(r.graded_at.isoformat(timespec="seconds") if r.graded_at else ""))
        props = ET.SubElement(suite, "properties")
        for key, value in (("score", r.final), ("max_score", r.max_score), ("raw_score", r.raw),
                           ("late_penalty", r.penalty), ("status", r.status)):
            ET.SubElement(props, "property", name=key, value=str(value))
        counts = {"tests": 0, "failures": 0, "errors": 0, "skipped": 0}
        if r.status in ("rejected", "error"):
            case = ET.SubElement(suite, "testcase", classname=f"{r.lab}.{r.learner.id}", name="submission", time="0")
            ET.SubElement(case, "error", message=r.status, type=r.status).text = clean_text(r.output, 4000)
            counts["tests"] += 1
            counts["errors"] += 1
        for t in r.tests:
            case = ET.SubElement(suite, "testcase", classname=f"{r.lab}.{r.learner.id}", name=t["name"], time="0")
            counts["tests"] += 1
            rich = t.get("check_status", t["status"])
            if rich == "skipped":
                ET.SubElement(case, "skipped", message=clean_text(t.get("output", ""), 1000))
                counts["skipped"] += 1
            elif float(t["score"]) < float(t["max_score"]):
                ET.SubElement(case, "failure", message=f"{t['score']:g}/{t['max_score']:g}",
                              type=rich).text = clean_text(t.get("output", ""), 4000)
                counts["failures"] += 1
        for key, value in counts.items():
            suite.set(key, str(value))
            totals[key] += value
        suite.set("time", "0")
    for key, value in totals.items():
        root.set(key, str(value))
    out.parent.mkdir(parents=True, exist_ok=True)
    ET.ElementTree(root).write(out, encoding="utf-8", xml_declaration=True)
    return [out]


# --- HTML ------------------------------------------------------------------------------------------------


def html_pages(rows, out: Path, title=None, **_) -> list[Path]:
    """`out/learners/<id>.html` per learner (their own grades only) and `out/index.html` (the instructor's summary)."""
    from grader.report import checks_html

    out.mkdir(parents=True, exist_ok=True)
    (out / "learners").mkdir(exist_ok=True)
    written = []
    by_learner: dict[str, list[Final]] = {}
    for r in rows:
        by_learner.setdefault(r.learner.id, []).append(r)
    for learner_id, own in by_learner.items():
        parts = []
        for r in own:
            if r.final is None:
                parts.append(f"<h2>{html.escape(_title(r.lab, title))}</h2><p>{html.escape(r.status)}: no grade yet</p>")
                continue
            notes = [r.output] if r.output else []
            if r.penalty:
                notes.append(f"Late by {r.hours_late:.1f} h: {r.penalty:g} points off ({r.adjusted:g} → {r.final:g}).")
            notes += [f"Adjusted by your instructor: {o}" for o in r.overrides]
            parts.append(f"<h2>{html.escape(_title(r.lab, title))}: {r.final:g}/{r.max_score:g}</h2>"
                         + checks_html(r.lab, [_check(t) for t in learner_tests(r)], "\n".join(notes)))
        page = _page(f"Feedback for {learner_id}", "".join(parts))
        path = out / "learners" / f"{_safe_name(learner_id)}.html"
        path.write_text(page, encoding="utf-8", errors="replace")
        written.append(path)
    written.append(summary_page(rows, out / "index.html", title))
    return written


def _check(t: dict):
    from grader.judge import CheckResult

    return CheckResult(name=t["name"], description="", score=t["score"], max_score=t["max_score"], status=t["status"],
                       message=t["output"], visible=t["visibility"] == "visible", hint=t.get("hint", ""),
                       section=t.get("section", ""))


def _page(title: str, body: str) -> str:
    return ("<!doctype html><html><head><meta charset='utf-8'>"
            f"<title>{html.escape(title)}</title><style>body{{font-family:sans-serif;max-width:70em;margin:2em auto}}"
            "table{border-collapse:collapse}td,th{border:1px solid #ddd;padding:4px 8px;vertical-align:top}</style>"
            f"</head><body><h1>{html.escape(title)}</h1>{body}</body></html>")


def summary_page(rows, path: Path, title=None) -> Path:
    """The instructor's page: per-lab score distribution and per-check pass rates (PNG plots embedded), a table."""
    body = []
    for lab in sorted({r.lab for r in rows}):
        mine = [r for r in rows if r.lab == lab]
        graded = [r for r in mine if r.final is not None]
        percents = [r.percent for r in graded if r.percent is not None]
        rates = pass_rates(graded)
        counts = {s: sum(r.status == s for r in mine) for s in ("graded", "rejected", "error", "pending", "missing")}
        body.append(f"<h2>{html.escape(_title(lab, title))}</h2><p>"
                    + ", ".join(f"{n} {s}" for s, n in counts.items() if n)
                    + (f"; mean {sum(percents) / len(percents):.1f} %" if percents else "") + "</p>")
        if graded:
            body.append(f"<img alt='score distribution' src='data:image/png;base64,{_png(_histogram, percents)}'>")
            body.append(f"<img alt='pass rate per check' src='data:image/png;base64,{_png(_pass_rates, rates)}'>")
        table = "".join(
            f"<tr><td>{html.escape(r.learner.id)}</td><td>{html.escape(r.learner.name)}</td><td>{html.escape(r.status)}</td>"
            f"<td>{_score(r.raw if r.final is not None else None)}</td><td>{_score(r.penalty) if r.penalty else ''}</td>"
            f"<td>{_score(r.final)}/{_score(r.max_score or None)}</td><td>{html.escape('; '.join(r.overrides))}</td></tr>"
            for r in mine)
        body.append("<table><thead><tr><th>learner</th><th>name</th><th>status</th><th>raw</th><th>late</th>"
                    f"<th>final</th><th>overrides</th></tr></thead><tbody>{table}</tbody></table>")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(_page("Cohort summary", "".join(body)), encoding="utf-8", errors="replace")
    return path


def pass_rates(graded: list[Final]) -> dict[str, float]:
    """Per check, the share of graded submissions that passed it (full points)."""
    seen: dict[str, list[bool]] = {}
    for r in graded:
        for t in r.tests:
            if t.get("check_status") == "skipped":
                continue
            seen.setdefault(t["name"], []).append(float(t["score"]) >= float(t["max_score"]) > 0)
    return {name: sum(v) / len(v) for name, v in seen.items() if v}


def _png(draw, data) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig = draw(plt, data)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=80, bbox_inches="tight")
    plt.close(fig)
    return base64.b64encode(buffer.getvalue()).decode()


def _histogram(plt, percents):
    fig, ax = plt.subplots(figsize=(6, 3))
    ax.hist(percents, bins=[0, 10, 20, 30, 40, 50, 60, 70, 80, 90, 100.001], color="#4c72b0", edgecolor="white")
    ax.set_xlabel("final score (%)")
    ax.set_ylabel("learners")
    ax.set_title("score distribution")
    return fig


def _pass_rates(plt, rates):
    names = list(rates)
    fig, ax = plt.subplots(figsize=(6, max(2.0, 0.3 * len(names) + 1)))
    ax.barh(names, [100 * rates[n] for n in names], color="#55a868")
    ax.invert_yaxis()
    ax.set_xlim(0, 100)
    ax.set_xlabel("passed (%)")
    ax.set_title("pass rate per check")
    return fig
