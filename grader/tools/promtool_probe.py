"""Run promtool on a learner's Prometheus files: `check config`, `check rules`, `test rules` (theirs and the
grader's hidden tests).

Runs inside the probe sandbox. promtool is the grader's own binary and the learner's files are data to it, so it
runs here (not one level further in); it reads only the copies this probe makes in a scratch folder, and the
scratch folder's paths are what it prints. Input `plan` (a JSON string):

    {"files": {"name in scratch": "work-relative path"}, "texts": {"name in scratch": "content"},
     "runs": [{"name": "config", "args": ["check", "config", "prometheus.yml"]}, ...]}

result.json: {"missing": [names whose file was not found], "runs": {name: {"exit", "output"}}}; "skipped" when
promtool is not installed.
"""

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # the harness, beside this file (-I drops it)
from harness import probe_main  # noqa: E402

FILE_BYTES = 1_000_000
OUTPUT_CHARS = 4000


def run(args, inputs) -> dict:
    plan = json.loads(str(inputs["plan"][()]))
    tool = shutil.which("promtool") or ("/usr/bin/promtool" if Path("/usr/bin/promtool").exists() else None)
    if tool is None:
        return {"skipped": "promtool is not installed here", "runs": {}, "missing": []}
    scratch = Path(tempfile.mkdtemp(prefix="promtool-"))
    missing = []
    for name, relative in plan.get("files", {}).items():
        source = Path(args.work) / relative
        if source.is_symlink() or not source.is_file() or source.stat().st_size > FILE_BYTES:
            missing.append(name)
            continue
        shutil.copyfile(source, scratch / os.path.basename(name))
    for name, text in plan.get("texts", {}).items():
        (scratch / os.path.basename(name)).write_text(str(text), encoding="utf-8")
    runs = {}
    for item in plan.get("runs", []):
        try:
            done = subprocess.run([tool, *[str(a) for a in item["args"]]], cwd=scratch, capture_output=True,
                                  text=True, timeout=float(item.get("timeout", 60)), stdin=subprocess.DEVNULL)
            output = (done.stdout + done.stderr).replace(str(scratch) + "/", "")
            runs[item["name"]] = {"exit": done.returncode, "output": output[-OUTPUT_CHARS:]}
        except subprocess.TimeoutExpired:
            runs[item["name"]] = {"exit": None, "output": f"promtool did not finish in {item.get('timeout', 60)} s"}
    shutil.rmtree(scratch, ignore_errors=True)
    return {"runs": runs, "missing": missing}


if __name__ == "__main__":
    probe_main(run)
