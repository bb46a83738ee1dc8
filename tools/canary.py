"""The churn canary: will the course still work with the newest releases of its tools?

`make canary` resolves requirements.in WITHOUT the lock (its own pins, each with its reason, still hold) into a
venv of its own, grades every lab's reference solution and starter there with that venv's grader, and writes a
table lab → reference score, first failing check, starter score, plus the packages whose versions differ from
the lock: build/canary/canary.md (for people; the weekly workflow uploads it) and canary.json (for programs).
Exit 1 when a lab broke (a reference below 100 % or a starter above 10 %) or the resolve failed; 0 otherwise.

    python tools/canary.py [--venv build/canary/venv] [--out build/canary] [--lab 03 --lab 12] [--reuse]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
PROJECT = "mlops-kit"  # this repo, installed editable: not in the lock
STARTER_MAX = 0.10  # a starter above this share of the points means a check passes on nothing
PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)(?:\[[^\]]*\])?==([^\s;#]+)")


def normalise(name: str) -> str:
    """A distribution's name as PEP 503 compares them."""
    return re.sub(r"[-_.]+", "-", name).lower()


def lock_versions(lock: Path) -> dict[str, str]:
    """{name: version} of the pins in a pip-tools lock (requirements.txt)."""
    found = {}
    for line in lock.read_text(encoding="utf-8").splitlines():
        match = PIN.match(line.strip())
        if match:
            found[normalise(match.group(1))] = match.group(2)
    return found


def version_changes(lock: dict[str, str], installed: dict[str, str]) -> list[dict]:
    """The packages whose installed version differs from the lock's, or that only one of them has (a local label
    such as torch's +cpu is not a change: `make lock` strips it)."""
    changes = []
    for name in sorted(set(lock) | set(installed)):
        before, now = lock.get(name), installed.get(name)
        if (before or "").split("+")[0] != (now or "").split("+")[0] and not (before is None and name == PROJECT):
            changes.append({"package": name, "lock": before or "-", "newest": now or "-"})
    return changes


def first_failure(result: dict) -> str:
    """The first check with points at stake that did not pass, as 'name (status): message', or ''."""
    if result.get("status") not in (None, "graded"):
        return f"not graded ({result.get('status')}): {str(result.get('output', ''))[:160]}"
    for test in result.get("tests", []):
        if test.get("check_status", test.get("status")) != "passed" and test.get("max_score", 0) > 0:
            message = " ".join(str(test.get("output", "")).split())[:160]
            return f"{test['name']} ({test.get('check_status', test.get('status'))}): {message}"
    return ""


def lab_row(lab: str, reference: dict | None, starter: dict | None) -> dict:
    """One line of the table, with its verdict."""
    def share(result):
        return result["score"] / result["max_score"] if result and result.get("max_score") else None

    ref_share, starter_share = share(reference), share(starter)
    problems = []
    if ref_share is None or ref_share < 1:
        problems.append("reference below 100 %")
    if starter_share is None or starter_share > STARTER_MAX:
        problems.append(f"starter above {STARTER_MAX:.0%}" if starter_share is not None else "starter not graded")
    return {"lab": lab,
            "reference": f"{reference['score']:g}/{reference['max_score']:g}" if reference else "not graded",
            "first_failing_check": first_failure(reference) if reference else "the grader did not run",
            "starter": f"{starter['score']:g}/{starter['max_score']:g}" if starter else "not graded",
            "ok": not problems, "problems": problems}


def markdown(rows: list[dict], changes: list[dict], meta: dict) -> str:
    """The table for people: what broke, then what changed."""
    broken = [r for r in rows if not r["ok"]]
    lines = [f"# Churn canary, {meta['date']}", "",
             f"requirements.in resolved without the lock in {meta['resolve_seconds']:.0f} s; "
             f"{len(rows)} labs graded in {meta['grade_seconds']:.0f} s: "
             + (f"**{len(broken)} broken**" if broken else "all still work") + ".", ""]
    if meta.get("resolve_error"):
        lines += ["The resolve failed:", "", "```", meta["resolve_error"], "```", ""]
    lines += ["| lab | reference | first failing check | starter | verdict |", "|---|---|---|---|---|"]
    for row in rows:
        cell = row["first_failing_check"].replace("|", "\\|") or "-"
        verdict = "ok" if row["ok"] else "BROKEN: " + ", ".join(row["problems"])
        lines.append(f"| {row['lab']} | {row['reference']} | {cell} | {row['starter']} | {verdict} |")
    lines += ["", f"## Versions that differ from the lock ({len(changes)})", "",
              "| package | lock | newest |", "|---|---|---|"]
    lines += [f"| {c['package']} | {c['lock']} | {c['newest']} |" for c in changes]
    return "\n".join(lines) + "\n"


NOISE = "is ignored: it is neither a file nor a directory"  # pip, once per package, for a machine's extra indexes


def run(command: list[str], log, timeout: float, env: dict | None = None) -> subprocess.CompletedProcess:
    """`command` in the repo, its output (less pip's noise) appended to the log."""
    log.write(f"$ {' '.join(command)}\n")
    done = subprocess.run(command, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                          timeout=timeout, env=env)
    log.write("".join(line for line in done.stdout.splitlines(keepends=True) if NOISE not in line))
    log.flush()
    return done


def make_venv(venv: Path, log) -> str:
    """The canary's venv from requirements.in (newest releases, the file's own pins kept); '' or the error."""
    python = venv / "bin" / "python"
    if not python.exists():
        done = run([sys.executable, "-m", "venv", str(venv)], log, 300)
        if done.returncode:
            return "python -m venv failed"
    for command in ([str(python), "-m", "pip", "install", "-q", "-U", "pip"],
                    [str(python), "-m", "pip", "install", "-q", "-U", "-r", "requirements.in"],
                    [str(python), "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation", "-e", "."]):
        done = run(command, log, 3600)
        if done.returncode:
            return f"{' '.join(command[3:])} failed (exit {done.returncode}): see canary.log"
    return ""


def canary_images(venv: Path, out: Path, log) -> dict:
    """The environment the canary grades in: week 8's images folder of its own (out/images), its base image copied
    from the course's folder and its wheelhouse downloaded at the canary venv's versions. With the course's
    wheelhouse (the lock's versions) every image build would fail on the first package that moved."""
    from mlops_kit.containers import IMAGES_ENV, images_dir

    env = {**os.environ, IMAGES_ENV: str(out / "images")}
    run([str(venv / "bin" / "python"), str(REPO / "tools" / "images.py"), "--seed-from", str(images_dir())], log,
        1800, env=env)
    return env


def installed_versions(venv: Path) -> dict[str, str]:
    done = subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "list", "--format", "json"],
                          capture_output=True, text=True, timeout=300)
    return {normalise(p["name"]): p["version"] for p in json.loads(done.stdout or "[]")}


def grade_lab(venv: Path, lab_id: str, out: Path, log, jobs: int,
              env: dict | None = None) -> tuple[dict | None, dict | None]:
    """The reference and the starter of one lab, graded by the canary venv's grader."""
    from grader.labs import find_lab

    lab = find_lab(lab_id).LAB
    target = out / f"{lab.id}.json"
    target.unlink(missing_ok=True)
    run([str(venv / "bin" / "mlops-grade"), "grade", lab.id, str(lab.solution_path), str(lab.lab_path),
         "--reveal-hidden", "--jobs", str(jobs), "--json", str(target)], log, 3600, env=env)
    if not target.exists():
        return None, None
    results = {(REPO / r["submission"]).resolve(): r for r in json.loads(target.read_text())}
    return results.get((REPO / lab.solution_path).resolve()), results.get((REPO / lab.lab_path).resolve())


def write_report(out: Path, rows: list[dict], changes: list[dict], meta: dict) -> str:
    """canary.md and canary.json for the labs graded so far; the markdown."""
    report = markdown(rows, changes, meta)
    (out / "canary.md").write_text(report, encoding="utf-8")
    (out / "canary.json").write_text(json.dumps({**meta, "labs": rows, "changes": changes}, indent=1), encoding="utf-8")
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--venv", type=Path, default=REPO / "build" / "canary" / "venv")
    parser.add_argument("--out", type=Path, default=REPO / "build" / "canary")
    parser.add_argument("--lab", action="append", default=[], help="only these labs (default: all)")
    parser.add_argument("--reuse", action="store_true", help="keep an existing canary venv as it is (no resolve)")
    parser.add_argument("--jobs", type=int, default=2)
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    sys.path.insert(0, str(REPO))
    from grader.labs import find_lab, lab_modules

    labs = [find_lab(lab).LAB.id for lab in args.lab] or list(lab_modules())
    meta = {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "resolve_error": ""}
    with open(args.out / "canary.log", "w", encoding="utf-8") as log:
        start = time.time()
        if not (args.reuse and (args.venv / "bin" / "mlops-grade").exists()):
            meta["resolve_error"] = make_venv(args.venv, log)
        meta["resolve_seconds"] = time.time() - start
        changes = version_changes(lock_versions(REPO / "requirements.txt"), installed_versions(args.venv))
        start, rows = time.time(), []
        meta["grade_seconds"] = 0.0
        report = write_report(args.out, rows, changes, meta)
        if not meta["resolve_error"]:
            env = canary_images(args.venv, args.out, log)
            for lab in labs:
                print(f"canary: grading {lab} ...", flush=True)
                rows.append(lab_row(lab, *grade_lab(args.venv, lab, args.out, log, args.jobs, env)))
                meta["grade_seconds"] = time.time() - start
                report = write_report(args.out, rows, changes, meta)  # a run stopped half-way still has its table
    print(report)
    return 1 if meta["resolve_error"] or any(not r["ok"] for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
