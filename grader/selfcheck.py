"""A learner's self-check from inside JupyterLab: the visible checks on the outputs just written."""

from __future__ import annotations

import os
from pathlib import Path

from grader.judge import Context, judge
from grader.labs import find_lab
from grader.report import checks_html, checks_text
from grader.sandbox import Sandbox, probe_bubblewrap


class SelfCheckReport:
    """Displays as an HTML table in Jupyter and as text elsewhere."""

    def __init__(self, lab, results, notice: str = ""):
        self.lab, self.results, self.notice = lab, results, notice

    @property
    def score(self) -> float:
        return sum(r.score for r in self.results)

    @property
    def max_score(self) -> float:
        return sum(r.max_score for r in self.results)

    def _repr_html_(self) -> str:
        return checks_html(f"Lab {self.lab.id}: visible checks", self.results, self.notice)

    def __repr__(self) -> str:
        return checks_text(f"Lab {self.lab.id}: visible checks", self.results, self.notice)


def show_self_check(lab_name: str, params: dict, work: Path | None = None) -> SelfCheckReport:
    """Judge the outputs under `work` (default: the current directory) with `lab_name`'s visible checks."""
    module = find_lab(lab_name)
    reason = probe_bubblewrap()
    notice = "" if reason is None else f"Notice: no sandbox here ({reason}); your artifacts load unsandboxed."
    ctx = Context(lab=module.LAB, work=Path(work or Path.cwd()), params=dict(params),
                  new_sandbox=lambda limits: Sandbox(limits, isolate=reason is None))
    return SelfCheckReport(module.LAB, judge(module.CHECKS, ctx, include_hidden=False), notice)


def main(argv: list[str] | None = None) -> None:
    """`python -m grader.selfcheck LAB --params JSON [--work DIR]`: the report as JSON (html, text, scores)."""
    import argparse
    import json

    parser = argparse.ArgumentParser(prog="python -m grader.selfcheck")
    parser.add_argument("lab")
    parser.add_argument("--params", default="{}")
    parser.add_argument("--work", default=None)
    args = parser.parse_args(argv)
    report = show_self_check(args.lab, json.loads(args.params), Path(args.work) if args.work else None)
    from grader.progress import record_attempt

    # JupyterLab tells a kernel (and so this process) which notebook it runs; its hash goes with the attempt
    session = os.environ.get("JPY_SESSION_NAME")
    notebook = next((p for p in (Path(session), Path.cwd() / Path(session).name) if p.is_file()), None) if session else None
    if notice := record_attempt(report.lab.id, report.results, notebook=notebook, source="self_check"):
        report.notice = f"{report.notice} {notice}".strip()
    print(json.dumps({"html": report._repr_html_(), "text": repr(report), "score": report.score,
                      "max_score": report.max_score}))


if __name__ == "__main__":
    main()
