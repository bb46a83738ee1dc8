"""Probe for lab 08's static supply-chain checks: hadolint over the Containerfile, and detect-secrets over the
project with the settings of the learner's own baseline.

Inputs: `output_dir` (work-relative) and, for the hidden check only, `planted` ({"path", "text"}: a file a
careless commit would add). The baseline's settings are learner data: only detect-secrets' own plugins (by
name) and filters (by their module path) are kept, so nothing a baseline names is imported or run. Inline
`# hadolint ignore` comments and hadolint config files are not honoured: a rule is fixed, not silenced.
"""

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import probe_main  # noqa: E402

BASELINE = ".secrets.baseline"
MAX_FILES, MAX_BYTES = 2000, 2 * 2**20
UNSAFE_FILTERS = ("wordlist", "gibberish")  # they load files a baseline names


def run(args, inputs) -> dict:
    project = Path(args.work) / str(inputs["output_dir"][()])
    result = {}
    result.update(lint(project / "Containerfile"))
    planted = json.loads(str(inputs["planted"][()])) if "planted" in inputs else None
    result.update(secrets(project, planted))
    return result


def lint(path: Path) -> dict:
    if not path.is_file() or path.is_symlink():
        return {"hadolint": None, "hadolint_error": "no Containerfile"}
    binary = Path(sys.executable).with_name("hadolint")
    binary = str(binary) if binary.exists() else (shutil.which("hadolint") or "hadolint")
    with tempfile.TemporaryDirectory() as tmp:
        text = path.read_text(encoding="utf-8", errors="replace")[:64 * 1024]
        text = re.sub(r"(?im)^\s*#\s*hadolint\s+(ignore|global)\b.*$", "#", text)
        (Path(tmp) / "Containerfile").write_text(text)
        (Path(tmp) / "config.yaml").write_text("{}\n")
        env = {"PATH": os.environ.get("PATH", ""), "HOME": tmp, "XDG_CONFIG_HOME": tmp}
        try:
            done = subprocess.run([binary, "--no-fail", "--config", str(Path(tmp) / "config.yaml"), "--format",
                                   "json", "Containerfile"], capture_output=True, text=True, cwd=tmp, env=env,
                                  timeout=60)
            findings = json.loads(done.stdout or "[]")
        except (OSError, ValueError, subprocess.TimeoutExpired) as err:
            return {"hadolint": None, "hadolint_error": f"{type(err).__name__}: {err}"[:300]}
    return {"hadolint": [{k: f.get(k) for k in ("code", "level", "line", "message")} for f in findings[:50]]}


def _settings(baseline: dict) -> dict:
    """The baseline's plugins and filters, kept only where they are detect-secrets' own."""
    plugins = [p for p in baseline.get("plugins_used", []) if isinstance(p, dict) and isinstance(p.get("name"), str)
               and "path" not in p]
    filters = []
    for item in baseline.get("filters_used", []):
        path = item.get("path", "") if isinstance(item, dict) else ""
        if path.startswith("detect_secrets.filters.") and not any(u in path for u in UNSAFE_FILTERS):
            filters.append(item)
    return {"plugins_used": plugins, "filters_used": filters}


def _scan(root: Path, settings: dict) -> list[dict]:
    from detect_secrets import SecretsCollection
    from detect_secrets.core.scan import get_files_to_scan
    from detect_secrets.settings import transient_settings

    here = os.getcwd()
    os.chdir(root)
    try:
        with transient_settings(settings):
            files = [f for f in get_files_to_scan(".", should_scan_all_files=True, root=".")
                     if os.path.normpath(f) != BASELINE and os.path.getsize(f) <= MAX_BYTES][:MAX_FILES]
            collection = SecretsCollection(root="")
            collection.scan_files(*files, num_processors=1)
            return [{"filename": os.path.normpath(name), "type": secret.type, "hashed_secret": secret.secret_hash,
                     "line_number": secret.line_number} for name, secret in collection]
    finally:
        os.chdir(here)


def secrets(project: Path, planted: dict | None) -> dict:
    path = project / BASELINE
    if not path.is_file() or path.is_symlink():
        return {"baseline_error": f"{BASELINE} was not written"}
    try:
        baseline = json.loads(path.read_text(encoding="utf-8")[:4 * 2**20])
    except ValueError as err:
        return {"baseline_error": f"{BASELINE} is not JSON: {err}"[:300]}
    if not isinstance(baseline, dict) or not isinstance(baseline.get("results"), dict) \
            or not isinstance(baseline.get("plugins_used"), list):
        return {"baseline_error": f"{BASELINE} is not a detect-secrets baseline (no results and plugins_used)"}
    if not baseline["plugins_used"]:
        return {"baseline_error": f"{BASELINE} uses no plugin: a scan with it can find nothing"}
    entries = [e for items in baseline["results"].values() if isinstance(items, list) for e in items
               if isinstance(e, dict)]
    known = {(os.path.normpath(str(e.get("filename"))), e.get("hashed_secret")) for e in entries}
    settings = _settings(baseline)
    with tempfile.TemporaryDirectory() as tmp:  # a copy: the work dir is read-only here, and planting writes
        copy = Path(tmp) / "project"
        shutil.copytree(project, copy, symlinks=True, ignore=shutil.ignore_patterns("wheels"))
        found = _scan(copy, settings)
        result = {"new": [f for f in found if (f["filename"], f["hashed_secret"]) not in known][:20],
                  "unreviewed": [{k: e.get(k) for k in ("filename", "line_number", "type")} for e in entries
                                 if e.get("is_secret") is not False][:20],
                  "dotenv_in_baseline": any(os.path.normpath(str(e.get("filename"))) == ".env" for e in entries)}
        if planted:
            target = copy / planted["path"]
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(planted["text"])
            again = _scan(copy, settings)
            result = {"planted_found": any(f["filename"] == os.path.normpath(planted["path"]) for f in again)}
    return result


if __name__ == "__main__":
    probe_main(run)
