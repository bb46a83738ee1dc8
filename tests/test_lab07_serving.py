"""Lab 07's live service, probed directly: what a BentoML service that will not stop leaves behind (nothing), and
what the graded registry holds."""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

import pytest

from grader.checks import lab07
from grader.checks.lab07_cases import CASES, SERVICE
from grader.judge import Context
from grader.sandbox import Sandbox


def _context(work: Path, service: str) -> Context:
    params, hidden = lab07.prepare(work)
    (work / params["output_dir"]).mkdir()
    (work / params["output_dir"] / lab07.SERVICE).write_text(service, encoding="utf-8")
    return Context(lab=lab07.LAB, work=work, params=params, hidden=hidden,
                   new_sandbox=lambda limits: Sandbox(limits, isolate=True))


def _processes_under(folder: Path) -> list[str]:
    """Host processes whose working directory or command line lies under `folder`."""
    found, marker = [], str(folder.resolve())
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            cwd = os.readlink(f"/proc/{entry}/cwd")
            cmdline = Path(f"/proc/{entry}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if cwd.startswith(marker) or marker in cmdline:
            found.append(f"{entry}: {cmdline[:120]}")
    return found


def _hot_reload_service() -> str:
    """The reference service with the case 'hot_reload_thread' applied: a non-daemon thread loops forever."""
    case = next(c for c in CASES if c.name == "drains_forever")
    source = lab07.reference_source()
    for edit in case.edits:
        assert edit.cell == SERVICE
        assert source.count(edit.old) == 1, edit.old
        source = source.replace(edit.old, edit.new)
    return source


@pytest.mark.slow
def test_what_a_service_leaves_running_is_reported_and_killed(tmp_path):
    work = tmp_path / "work"
    work.mkdir()
    ctx = _context(work, _hot_reload_service())
    result = lab07.served(ctx)
    assert result["ready"], result.get("startup")
    assert result["stop"]["ignored_sigterm"] is True, result["stop"]
    assert _processes_under(tmp_path) == []
    with pytest.raises(Exception, match="still running .* after SIGTERM"):
        lab07.clean_shutdown(ctx)


def test_the_graded_registry_hides_its_champion_from_the_public_one(tmp_path):
    work = tmp_path / "work"
    work.mkdir()
    params, hidden = lab07.prepare(work)
    db = sqlite3.connect(work / params["registry_dir"] / "mlflow.db")
    versions = {row[0] for row in db.execute("select version from model_versions")}
    champion = db.execute("select version from registered_model_aliases where alias = 'champion'").fetchone()[0]
    assert versions == {1, 2, 3}
    assert champion != lab07.PUBLIC_CHAMPION and str(champion) == hidden["info"]["champion"]
    assert len(hidden["golden_rows"]) == lab07.GOLDEN_ROWS
    # the golden predictions tell the versions apart, so serving the wrong one cannot pass
    expected = hidden["expected"]
    assert len({tuple(round(p, 6) for p in values) for values in expected.values()}) == 3
