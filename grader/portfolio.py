"""A learner's portfolio: a static site built only from graded evidence.

Each milestone (a lab whose best graded attempt scored full marks) gets a page with the figures the grader itself
measured or recomputed while grading (`CheckResult.figures`: a holdout AUC, a p95 latency, an image size, the
mutants the tests caught…), the checks it passed, the score over the attempts, and an evidence bundle (hashes of
the notebook, the lock and the grader, the seeds, the secret's fingerprint, the timings) that anyone can use to
regrade it. Nothing on it is a claim the learner typed: the only learner text shown is a model card whose figures
a check compared with the registry, and it is labelled so. No script runs on the pages.

Sources: the learner's own check history (visible checks only), `mlops-grade grade --json` files (every check,
as graded), or an instructor's gradebook.
"""

from __future__ import annotations

import datetime as dt
import html
import json
import re
from pathlib import Path

from grader.progress import Attempt, LabProgress, build
from grader.report import _safe

STYLE = ("body{font-family:system-ui,sans-serif;max-width:62em;margin:2em auto;padding:0 1em;color:#1f2328}"
         "table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #d0d7de;padding:4px 8px;text-align:left;"
         "vertical-align:top}th{background:#f6f8fa}.card{border:1px solid #d0d7de;border-radius:6px;padding:.5em 1em;"
         "margin:1em 0}.muted{color:#656d76}pre{background:#f6f8fa;padding:1em;overflow:auto;white-space:pre-wrap}"
         "code{background:#f6f8fa;padding:0 .2em}")


def h(text, limit: int = 4000) -> str:
    return html.escape(_safe(text, limit))


def slug(lab_id: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "_", lab_id)


def _format(figure: dict) -> str:
    value, unit = figure.get("value"), figure.get("unit", "")
    if isinstance(value, float):
        value = f"{value:.3g}" if abs(value) < 1e-3 and value else f"{value:.4g}" if abs(value) < 10 else f"{value:,.1f}"
    return f"{value} {unit}".strip() if unit not in ("x",) else f"{value}×"


def verified_figures(attempt: Attempt) -> list[tuple[str, str, dict]]:
    """(check, key, figure) of the checks the attempt passed (or partly passed), in check order; documents last."""
    numbers, documents = [], []
    for check in attempt.checks:
        if check.get("status") not in ("passed", "partial"):
            continue
        for key, figure in (check.get("figures") or {}).items():
            if isinstance(figure, dict) and "value" in figure:
                (documents if figure.get("unit") == "markdown" else numbers).append((check["name"], key, figure))
    return numbers + documents


def evidence_bundle(row: LabProgress) -> dict:
    """What the milestone rests on: enough to regrade the notebook and compare."""
    best = row.best
    return {"lab": row.id, "title": row.title, "graded_at": best.at.isoformat(), "source": best.source,
            "score": best.score, "max_score": best.max_score, "attempts": row.attempts,
            "evidence": best.evidence, "notebook_sha256": best.notebook_sha256,
            "checks": [{k: c.get(k) for k in ("name", "status", "score", "max_score", "figures")} for c in best.checks]}


def score_history_svg(attempts: list[Attempt], width: int = 360, height: int = 120) -> str:
    """The score (% of the maximum) of each attempt, in order: an inline SVG (no script)."""
    points = [(a.score / a.max_score * 100 if a.max_score else 0.0) for a in attempts]
    left, top, inner_w, inner_h = 34, 10, width - 44, height - 30
    step = inner_w / max(len(points) - 1, 1)
    xy = [(left + i * step, top + inner_h * (1 - p / 100)) for i, p in enumerate(points)]
    line = " ".join(f"{x:.1f},{y:.1f}" for x, y in xy)
    dots = "".join(f"<circle cx='{x:.1f}' cy='{y:.1f}' r='3' fill='#0969da'><title>attempt {i + 1}: {p:.0f} %"
                   f"</title></circle>" for i, ((x, y), p) in enumerate(zip(xy, points)))
    grid = "".join(f"<line x1='{left}' x2='{left + inner_w}' y1='{top + inner_h * (1 - v / 100):.1f}' "
                   f"y2='{top + inner_h * (1 - v / 100):.1f}' stroke='#d0d7de'/><text x='{left - 4}' "
                   f"y='{top + inner_h * (1 - v / 100) + 4:.1f}' font-size='10' text-anchor='end'>{v}</text>"
                   for v in (0, 50, 100))
    return (f"<svg xmlns='http://www.w3.org/2000/svg' width='{width}' height='{height}' role='img' "
            f"aria-label='score per attempt'>{grid}<polyline points='{line}' fill='none' stroke='#0969da'/>{dots}"
            f"<text x='{left + inner_w / 2:.0f}' y='{height - 4}' font-size='10' text-anchor='middle'>attempt "
            f"(1–{len(points)}), score in % of the maximum</text></svg>")


def overview_svg(rows: list[LabProgress], width: int = 720) -> str:
    """Best score per lab (% of the maximum), milestones in green: an inline SVG."""
    bar, gap, label_w = 16, 6, 190
    height = len(rows) * (bar + gap) + 20
    bars = []
    for i, row in enumerate(rows):
        y = 10 + i * (bar + gap)
        share = (row.best.score / row.best.max_score) if row.best and row.best.max_score else 0.0
        colour = "#1a7f37" if row.status == "done" else "#9a6700" if row.best else "#d0d7de"
        bars.append(f"<text x='{label_w - 6}' y='{y + 12}' font-size='11' text-anchor='end'>{h(row.id)}</text>"
                    f"<rect x='{label_w}' y='{y}' width='{max(share, 0.005) * (width - label_w - 60):.1f}' "
                    f"height='{bar}' fill='{colour}'/><text x='{label_w + share * (width - label_w - 60) + 4:.1f}' "
                    f"y='{y + 12}' font-size='11'>{share * 100:.0f} %</text>")
    return (f"<svg xmlns='http://www.w3.org/2000/svg' width='{width}' height='{height}' role='img' "
            f"aria-label='best score per lab'>{''.join(bars)}</svg>")


def badge_svg(done: int, total: int) -> str:
    """A README badge: milestones passed of the course's labs."""
    left, right = "MLOps course", f"{done}/{total} milestones"
    lw, rw = 8 + 7 * len(left), 8 + 7 * len(right)
    colour = "#1a7f37" if done == total else "#0969da"
    return (f"<svg xmlns='http://www.w3.org/2000/svg' width='{lw + rw}' height='20' role='img' aria-label='{left}: "
            f"{right}'><rect width='{lw}' height='20' fill='#555'/><rect x='{lw}' width='{rw}' height='20' "
            f"fill='{colour}'/><g fill='#fff' font-family='Verdana,sans-serif' font-size='11'>"
            f"<text x='{lw / 2}' y='14' text-anchor='middle'>{left}</text>"
            f"<text x='{lw + rw / 2}' y='14' text-anchor='middle'>{right}</text></g></svg>")


def _page(title: str, body: str, root: str = "") -> str:
    return (f"<!doctype html><html lang='en'><head><meta charset='utf-8'><title>{h(title)}</title>"
            f"<meta name='viewport' content='width=device-width,initial-scale=1'><style>{STYLE}</style></head><body>"
            f"<p class='muted'><a href='{root}index.html'>Portfolio</a></p>{body}</body></html>")


def _figures_table(figures: list[tuple[str, str, dict]]) -> str:
    rows = "".join(f"<tr><td>{h(f.get('label', key))}</td><td><strong>{h(_format(f))}</strong></td>"
                   f"<td><code>{h(check)}</code></td></tr>" for check, key, f in figures if f.get("unit") != "markdown")
    return ("<table><thead><tr><th>measured by the grader</th><th>value</th><th>check</th></tr></thead>"
            f"<tbody>{rows}</tbody></table>") if rows else "<p class='muted'>This lab's checks record no figures.</p>"


def lab_page(row: LabProgress, attempts: list[Attempt], lab, repo_url: str = "", branch: str = "main") -> str:
    best = row.best
    figures = verified_figures(best)
    passed = [c for c in best.checks if c.get("status") == "passed"]
    objectives = "".join(f"<li>{h(o)}</li>" for o in lab.objectives)
    documents = "".join(f"<h3>{h(f.get('label', key))}</h3><pre>{h(f.get('value', ''), 20_000)}</pre>"
                        for _, key, f in figures if f.get("unit") == "markdown")
    source = (f"<p>Source: <a href='{h(repo_url.rstrip('/'))}/blob/{h(branch)}/labs/{h(lab.id)}.ipynb'>"
              f"labs/{h(lab.id)}.ipynb</a></p>" if repo_url else "")
    evidence = best.evidence or {}
    facts = "".join(f"<tr><th>{h(k)}</th><td><code>{h(v)}</code></td></tr>" for k, v in (
        ("graded", best.at.isoformat()), ("from", best.source), ("notebook sha256", best.notebook_sha256 or "—"),
        ("grader version", evidence.get("grader_version", "—")), ("lock sha256", evidence.get("lock_sha256", "—")),
        ("grading seed", evidence.get("lab_seed", "—")), ("secret fingerprint", evidence.get("secret_fingerprint", "—")),
        ("regrade with", evidence.get("regrade", f"mlops-grade grade {lab.number} <notebook> --json result.json"))))
    body = (f"<h1>{h(lab.title)}</h1><p class='muted'>Lab {h(row.id)} · week {lab.week} · best score "
            f"{best.score:g}/{best.max_score:g} ({h(best.at.strftime('%Y-%m-%d'))}) after {row.attempts} attempt(s)</p>"
            f"{source}<h2>What this shows</h2><ul>{objectives}</ul>"
            f"<h2>Verified figures</h2>{_figures_table(figures)}"
            f"<h2>Score over the attempts</h2>{score_history_svg(attempts)}"
            f"<h2>Checks passed ({len(passed)} of {len(best.checks)})</h2><ul>"
            + "".join(f"<li><code>{h(c['name'])}</code> {c['score']:g}/{c['max_score']:g}</li>" for c in passed)
            + f"</ul>{documents}<h2>Evidence</h2><table>{facts}</table>"
            f"<p><a href='../evidence/{slug(row.id)}.json'>evidence bundle (JSON)</a></p>")
    return _page(f"{lab.title} — portfolio", body, root="../")


def build_site(attempts: list[Attempt], out: Path, *, title: str = "MLOps portfolio", source: str = "",
               repo_url: str = "", branch: str = "main", labs=None) -> Path:
    """Write the site under `out` (index.html, labs/, evidence/, badge.svg, badge.md); returns index.html."""
    if labs is None:
        from grader.labs import lab_modules

        labs = [m.LAB for m in lab_modules().values()]
    by_id = {lab.id: lab for lab in labs}
    progress = build(attempts, labs, source)
    out = Path(out)
    for folder in ("labs", "evidence"):
        (out / folder).mkdir(parents=True, exist_ok=True)
        for stale in (out / folder).iterdir():
            if stale.is_file():
                stale.unlink()
    done = [r for r in progress.labs if r.status == "done"]
    cards = []
    for row in done:
        mine = sorted((a for a in attempts if a.lab == row.id), key=lambda a: a.at)
        (out / "labs" / f"{slug(row.id)}.html").write_text(lab_page(row, mine, by_id[row.id], repo_url, branch),
                                                           encoding="utf-8")
        (out / "evidence" / f"{slug(row.id)}.json").write_text(json.dumps(evidence_bundle(row), indent=2, default=str),
                                                              encoding="utf-8")
        top = [f for f in verified_figures(row.best) if f[2].get("unit") != "markdown"][:3]
        shown = "; ".join(f"{h(f.get('label', key))}: <strong>{h(_format(f))}</strong>" for _, key, f in top)
        cards.append(f"<div class='card'><h3><a href='labs/{slug(row.id)}.html'>{h(row.title)}</a></h3>"
                     f"<p class='muted'>week {row.week} · {row.best.score:g}/{row.best.max_score:g}</p>"
                     f"<p>{shown or 'passed every check'}</p></div>")
    open_rows = "".join(f"<tr><td>{h(r.id)}</td><td>{h(r.title)}</td><td>{h(r.status)}</td><td>"
                        + (f"{r.best.score:g}/{r.best.max_score:g}" if r.best else "—") + "</td></tr>"
                        for r in progress.labs if r.status != "done")
    badge = badge_svg(len(done), len(progress.labs))
    (out / "badge.svg").write_text(badge, encoding="utf-8")
    (out / "badge.md").write_text(f"[![MLOps course: {len(done)}/{len(progress.labs)} milestones](badge.svg)]"
                                  "(index.html)\n", encoding="utf-8")
    generated = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    body = (f"<h1>{h(title, 200)}</h1><p><img src='badge.svg' alt='{len(done)} of {len(progress.labs)} milestones'></p>"
            f"<p class='muted'>Built {generated} from {h(source or progress.source)}. Every figure here was measured "
            "or recomputed by the course's grader while grading; each milestone links its evidence bundle.</p>"
            f"<h2>Milestones passed ({len(done)} of {len(progress.labs)})</h2>"
            + ("".join(cards) or "<p>No lab has passed every check yet.</p>")
            + f"<h2>Best score per lab</h2>{overview_svg(progress.labs)}"
            + (f"<h2>Not yet passed</h2><table><thead><tr><th>lab</th><th>title</th><th>status</th><th>best</th></tr>"
               f"</thead><tbody>{open_rows}</tbody></table>" if open_rows else ""))
    index = out / "index.html"
    index.write_text(_page(title, body), encoding="utf-8")
    return index
