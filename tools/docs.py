"""The course as a website: `make docs` writes build/docs/ (static HTML, opens from disk or any web server).

- `index.html`, the syllabus: the roadmap's 90-day plan → weeks → lessons → labs → roadmap sections, each read
  from the lesson itself (its first cell's **Roadmap:** and **90-day plan:** lines) and from the lab's spec
  (title, minutes, objectives), so the page cannot drift from the course;
- `lessons/<lesson>.html`: every notebook of `curriculum/` (nbdev's `#|` directives dropped, `#| hide` cells
  left out), and `labs/<lab>.html`: every learner lab as it is handed out;
- `guides/<name>.html`: the README (learners and instructors), the authoring guide (contributors), the
  architecture map, the threat model, the cohort-on-Kubernetes guide.

Links between the course's files become links between pages; a link to any other file of the repository goes to
the repository (`git_url` in settings.ini). Built with nbconvert and markdown-it-py (both in the lock) rather
than nbdev_docs: nbdev_docs needs Quarto, and the quarto-cli package downloads Quarto from GitHub when it is
installed, which an offline machine (and a CI runner without GitHub release access) cannot do.

    python tools/docs.py [--out build/docs]
"""

from __future__ import annotations

import argparse
import configparser
import html
import json
import re
import shutil
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
GUIDES = {  # page name → (source, title, audience)
    "course": ("README.md", "The course: set-up, learners, instructors, CI", "everyone"),
    "authoring": ("docs/authoring.md", "Writing a lab and its checks", "contributors"),
    "architecture": ("docs/architecture.md", "The grader's architecture", "contributors"),
    "threat-model": ("docs/threat-model.md", "The grader's threat model", "instructors and contributors"),
    "cohort-on-kubernetes": ("docs/cohort-on-kubernetes.md", "Cohort grading on Kubernetes", "instructors"),
}
PHASES = (  # the roadmap's "short practical plan (first 90 days)": (first week, last week) → its words
    ((0, 0), "Before week 1: how the course works"),
    ((1, 3), "Weeks 1–3: solidify Python, Git, testing; convert a notebook into a tested script"),
    ((4, 6), "Weeks 4–6: build Project A end to end locally; add MLflow + DVC"),
    ((7, 10), "Weeks 7–10: containerize and deploy to Kubernetes; add CI with GitHub Actions"),
    ((11, 12), "Weeks 11–12: add monitoring (Prometheus/Grafana) and drift detection"),
    ((13, 99), "After the 90 days: Project B, deep-learning deployment"),
)
ROADMAP = re.compile(r"\*\*Roadmap:\*\*(.*?)(?:\*\*90-day plan|\n\n|$)", re.S)
SECTIONS = {  # how a lesson names a roadmap section → the section's title in the roadmap
    "Core programming": "Core programming and software engineering foundations",
    "Machine learning fundamentals": "Machine learning fundamentals",
    "Data engineering": "Data engineering and pipeline design",
    "Containerization": "Containerization, orchestration, and deployment",
    "CI/CD": "CI/CD for ML models",
    "Model serving": "Model serving and scaling strategies",
    "Monitoring": "Monitoring, logging, and observability for ML in production",
    "Model versioning": "Model versioning and governance",
    "Security": "Security, compliance, and best practices",
    "Cloud platforms": "Cloud platforms and managed ML services",
    "Collaboration": "Collaboration, communication, and team workflows",
    "Project A": "Project A — Classic supervised end-to-end",
    "Project B": "Project B — Deep learning deployment",
    "Project C": "Project C — Feature store + online inference",
}
HREF = re.compile(r'(href|src)="([^"#?]*)([#?][^"]*)?"')
STYLE = """
body { font-family: system-ui, sans-serif; margin: 0 auto; max-width: 72rem; padding: 1rem 2rem; color: #1b1f24; }
nav { border-bottom: 1px solid #d0d7de; padding-bottom: .5rem; margin-bottom: 1rem; }
nav a { margin-right: 1rem; }
table { border-collapse: collapse; width: 100%; margin: 1rem 0; }
th, td { border: 1px solid #d0d7de; padding: .35rem .5rem; vertical-align: top; text-align: left; }
th { background: #f6f8fa; }
pre, code { background: #f6f8fa; font-size: .9em; }
pre { padding: .6rem; overflow-x: auto; }
.phase { background: #eef4ff; font-weight: 600; }
.small { color: #57606a; font-size: .9em; }
.anchor-link { visibility: hidden; text-decoration: none; margin-left: .3rem; }
h1:hover .anchor-link, h2:hover .anchor-link, h3:hover .anchor-link { visibility: visible; }
"""


def repo_url() -> str:
    settings = configparser.ConfigParser()
    settings.read(REPO / "settings.ini")
    return settings.get("DEFAULT", "git_url", fallback="https://github.com/mlops-course/mlops-course").rstrip("/")


def page(title: str, body: str, depth: int) -> str:
    """A page of the site with its navigation; `depth`: folders below the site's root."""
    up = "../" * depth
    nav = (f'<nav><a href="{up}index.html">Syllabus</a>' +
           "".join(f'<a href="{up}guides/{name}.html">{html.escape(GUIDES[name][1].split(":")[0])}</a>'
                   for name in ("course", "authoring", "architecture")) + "</nav>")
    return (f'<!doctype html>\n<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">'
            f'<link rel="stylesheet" href="{up}style.css"></head><body>{nav}{body}</body></html>\n')


# --- reading the course --------------------------------------------------------------------------------------


def cell_text(cell: dict) -> str:
    source = cell.get("source", "")
    return "".join(source) if isinstance(source, list) else source


def lesson_facts(path: Path) -> dict:
    """A lesson's week, title and roadmap sections, from its first cell."""
    notebook = json.loads(path.read_text(encoding="utf-8"))
    first = cell_text(notebook["cells"][0]) if notebook["cells"] else ""
    title = next((line.lstrip("# ").strip() for line in first.splitlines() if line.strip()), path.stem)
    return {"stem": path.stem, "week": int(path.stem.split("_", 1)[0]), "title": title,
            "roadmap": roadmap_sections(first)}


def roadmap_sections(text: str) -> list[str]:
    """The roadmap sections a lesson's **Roadmap:** paragraph names (its quotations left out), in its order."""
    match = ROADMAP.search(text)
    if not match:
        return []
    paragraph = " ".join(re.sub(r'"[^"]*"|\([^)]*\)', " ", match.group(1)).split())
    found = [(paragraph.find(key), title) for key, title in SECTIONS.items() if key in paragraph]
    return [title for _, title in sorted(found)]


def phase_of(week: int) -> str:
    return next(words for (first, last), words in PHASES if first <= week <= last)


def syllabus_rows() -> list[dict]:
    """One row per lesson, in course order, with its lab (if any)."""
    sys.path.insert(0, str(REPO))
    from grader.labs import lab_modules

    labs = {module.LAB.lesson: module.LAB for module in lab_modules().values()}
    rows = []
    for path in sorted((REPO / "curriculum").glob("[0-9][0-9]_*.ipynb")):
        facts = lesson_facts(path)
        lab = labs.get(f"curriculum/{path.name}")
        facts["lab"] = None if lab is None else {"id": lab.id, "title": lab.title, "minutes": lab.minutes,
                                                 "objectives": list(lab.objectives), "week": lab.week}
        rows.append(facts)
    return rows


# --- writing pages --------------------------------------------------------------------------------------------


def notebook_html(path: Path) -> str:
    """The notebook as an HTML body: nbdev directives dropped, hidden cells left out, no outputs executed here."""
    import nbformat
    from nbconvert import HTMLExporter

    notebook = nbformat.read(str(path), as_version=4)
    kept = []
    for cell in notebook.cells:
        if cell.cell_type == "code":
            lines = cell.source.splitlines()
            if any(re.match(r"#\|\s*hide\b", line) for line in lines):
                continue
            cell.source = "\n".join(line for line in lines if not line.startswith("#|")).strip("\n")
            drawn = diagram_svg(cell.source)
            if drawn:
                cell.outputs = [nbformat.v4.new_output("display_data", data={"image/svg+xml": drawn})]
        kept.append(cell)
    notebook.cells = kept
    exporter = HTMLExporter(template_name="basic")  # the body only: the site's own page and style around it
    body, _ = exporter.from_notebook_node(notebook)
    return body


def diagram_svg(source: str) -> str | None:
    """The SVG of a cell that calls `diagram("...")` (the lessons' Graphviz drawings), drawn here; else None."""
    import ast

    try:
        tree = ast.parse(source)
    except SyntaxError:
        return None
    for node in ast.walk(tree):
        if (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "diagram"
                and node.args and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str)):
            from mlops_kit.course import Diagram

            return Diagram(node.args[0].value).svg()
    return None


def markdown_html(path: Path) -> str:
    from markdown_it import MarkdownIt

    return MarkdownIt("commonmark").enable("table").render(path.read_text(encoding="utf-8"))


def rewrite_links(body: str, source: Path, targets: dict[Path, str], depth: int, remote: str) -> str:
    """Relative links of `source` that name a course file with a page go to that page; others to the repository."""
    up = "../" * depth

    def replace(match: re.Match) -> str:
        attribute, link, rest = match.group(1), match.group(2), match.group(3) or ""
        if not link or re.match(r"^[a-z][a-z0-9+.-]*:", link) or link.startswith(("/", "data:")):
            return match.group(0)
        target = (source.parent / link).resolve()
        if target in targets:
            return f'{attribute}="{up}{targets[target]}{rest}"'
        try:
            relative = target.relative_to(REPO)
        except ValueError:
            return match.group(0)
        kind = "tree" if target.is_dir() or link.endswith("/") else "blob"
        return f'{attribute}="{remote}/{kind}/main/{relative.as_posix()}{rest}"'

    return HREF.sub(replace, body)


def syllabus_html(rows: list[dict]) -> str:
    """The syllabus table, grouped by the 90-day plan's phases."""
    parts = ["<h1>MLOps, in 90 days: the syllabus</h1>",
             "<p>Every week has a <b>lesson</b>, which teaches a topic and adds tested code to the course's library, "
             "and a <b>lab</b>, which you complete and the autograder grades. The plan follows the roadmap's "
             "first 90 days; each lesson names the roadmap sections it covers. Start with "
             '<a href="guides/course.html">the course guide</a>.</p>',
             "<table><thead><tr><th>week</th><th>lesson</th><th>roadmap</th><th>lab</th><th>minutes</th>"
             "<th>you will</th></tr></thead><tbody>"]
    phase = None
    for row in rows:
        if phase_of(row["week"]) != phase:
            phase = phase_of(row["week"])
            parts.append(f'<tr class="phase"><td colspan="6">{html.escape(phase)}</td></tr>')
        lab = row["lab"]
        lab_cell = (f'<a href="labs/{lab["id"]}.html">{html.escape(lab["title"])}</a>' if lab else "-")
        objectives = "<ul>" + "".join(f"<li>{html.escape(o)}</li>" for o in lab["objectives"]) + "</ul>" if lab else ""
        parts.append(f'<tr><td>{row["week"]}</td><td><a href="lessons/{row["stem"]}.html">{html.escape(row["title"])}</a>'
                     f'</td><td>{"<br>".join(html.escape(r) for r in row["roadmap"])}</td><td>{lab_cell}</td>'
                     f'<td>{lab["minutes"] if lab else ""}</td><td>{objectives}</td></tr>')
    parts.append("</tbody></table><h2>The roadmap, section by section</h2>"
                 "<table><thead><tr><th>roadmap section</th><th>taught in</th></tr></thead><tbody>")
    for title in SECTIONS.values():
        where = [row for row in rows if title in row["roadmap"]]
        cell = ", ".join(f'<a href="lessons/{row["stem"]}.html">week {row["week"]}</a>' for row in where)
        parts.append(f"<tr><td>{html.escape(title)}</td><td>{cell or 'not yet'}</td></tr>")
    parts.append("</tbody></table><h2>Guides</h2><ul>")
    parts += [f'<li><a href="guides/{name}.html">{html.escape(title)}</a> <span class="small">for {audience}</span>'
              "</li>" for name, (_, title, audience) in GUIDES.items()]
    parts.append("</ul>")
    return "\n".join(parts)


def build(out: Path) -> dict:
    """Write the whole site into `out` (replaced); what was written."""
    if out.exists():
        shutil.rmtree(out)
    for folder in ("lessons", "labs", "guides"):
        (out / folder).mkdir(parents=True)
    from pygments.formatters import HtmlFormatter

    (out / "style.css").write_text(STYLE.lstrip() + HtmlFormatter().get_style_defs(".highlight"), encoding="utf-8")
    remote, rows = repo_url(), syllabus_rows()
    lessons = sorted((REPO / "curriculum").glob("[0-9][0-9]_*.ipynb"))
    labs = sorted((REPO / "labs").glob("[0-9][0-9]_*.ipynb"))
    targets = {path.resolve(): f"lessons/{path.stem}.html" for path in lessons}
    targets |= {path.resolve(): f"labs/{path.stem}.html" for path in labs}
    targets |= {(REPO / source).resolve(): f"guides/{name}.html" for name, (source, _, _) in GUIDES.items()}
    targets[(REPO / "curriculum").resolve()] = "index.html"
    for path in lessons + labs:
        folder = "lessons" if path.parent.name == "curriculum" else "labs"
        body = rewrite_links(notebook_html(path), path, targets, 1, remote)
        title = lesson_facts(path)["title"]
        (out / folder / f"{path.stem}.html").write_text(page(title, body, 1), encoding="utf-8")
    for name, (source, title, _) in GUIDES.items():
        body = rewrite_links(markdown_html(REPO / source), REPO / source, targets, 1, remote)
        (out / "guides" / f"{name}.html").write_text(page(title, body, 1), encoding="utf-8")
    (out / "index.html").write_text(page("Syllabus", syllabus_html(rows), 0), encoding="utf-8")
    return {"lessons": len(lessons), "labs": len(labs), "guides": len(GUIDES), "out": str(out)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=REPO / "build" / "docs")
    args = parser.parse_args(argv)
    written = build(args.out)
    print(f"docs: {written['lessons']} lessons, {written['labs']} labs, {written['guides']} guides → "
          f"{args.out / 'index.html'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
