"""Run a learner's CI/CD as a GitHub runner would, in a fresh sandbox: jobs' `run:` steps on clean checkouts, the
deploy job's push rendered with Kustomize, the pull-request gate on given descriptions.

Runs inside the sandbox: it must not import the grader. The learner's repository is read-only under --work.
The plan (input `plan.npy`, a 0-d JSON string) lists:
- `runs`: each a job run on its own clean checkout (`mlops_kit.cicd.checkout`: the repository's files as a fresh
  clone would hold them, committed on `main`, with a bare `origin` to push to), optionally with a planted bug
  (`plant`: find/replace edits of files), under a given event and commit SHA; afterwards the files named in
  `collect` are read back, and for `inspect_origin` what the job pushed: the new commits, the paths they change,
  and the Kustomize renderings (`render`) before and after, compared field by field;
- `gate`: pull requests (description, model card, changed paths) given to `scripts/gate.py`;
- `renders`: Kustomize overlays of the repository rendered as they are (lab 10's manifests).
Every command of the learner's — each `run:` step, the gate, and git and kubectl over what the learner wrote —
runs through the harness's `run_learner` (inner sandbox, another uid, no network). What a job pushed is read
from a fresh bare repository holding only the pushed objects and refs, never with the learner's git config.
"""

import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # the harness, beside this file (-I drops it)
from harness import probe_main, run_learner  # noqa: E402

MAX_FILES, MAX_BYTES = 2000, 50 * 2**20  # a small project; refuse to copy anything bigger
COLLECT_CHARS = 20_000
MAX_RENDER_BYTES = 2 * 2**20
CLEAN_GIT = {"GIT_CONFIG_NOSYSTEM": "1", "GIT_CONFIG_GLOBAL": os.devnull, "GIT_TERMINAL_PROMPT": "0"}


def add_arguments(parser) -> None:
    parser.add_argument("--repo", required=True, help="the learner's repository, relative to the work dir")


def _env(home: Path) -> dict:
    """What a step sees: this course's Python and tools first on PATH, no index for pip, a home of its own."""
    return {"PATH": f"{Path(sys.executable).parent}:/usr/local/bin:/usr/bin:/bin", "HOME": str(home),
            "LANG": "C.UTF-8", "PIP_NO_INDEX": "1", "PIP_DISABLE_PIP_VERSION_CHECK": "1",
            "PIP_CACHE_DIR": str(home / ".cache" / "pip"), "PYTHONDONTWRITEBYTECODE": "1", "DO_NOT_TRACK": "1",
            "MLFLOW_DISABLE_TELEMETRY": "true", "BENTOML_DO_NOT_TRACK": "true", "DVC_NO_ANALYTICS": "1",
            **CLEAN_GIT}


def _runner(scratch: Path, hidden: list[str]):
    def run(argv, *, cwd, env, timeout):
        return run_learner(list(argv), cwd=cwd, env=env, timeout=timeout, writable=[str(scratch)], hidden=hidden,
                           share_net=False)
    return run


def _plant(work: Path, edits: list[dict]) -> list[str]:
    """Apply the grader's find/replace edits to a checkout; what could not be applied (the learner changed the
    file) is reported, not hidden."""
    missed = []
    for edit in edits:
        path = work / edit["path"]
        text = path.read_text() if path.is_file() else None
        if text is None or edit["find"] not in text:
            missed.append(edit["path"])
            continue
        path.write_text(text.replace(edit["find"], edit["replace"], 1))
    return missed


def _collect(work: Path, names: list[str]) -> dict:
    found = {}
    for name in names:
        path = work / name
        found[name] = path.read_text(errors="replace")[:COLLECT_CHARS] if path.is_file() and not path.is_symlink() \
            else None
    return found


def _git(cwd: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["git", "--no-pager", *args], cwd=cwd, env={**os.environ, **CLEAN_GIT},
                          capture_output=True, text=True, timeout=60)


def _pushed(origin: Path, scratch: Path) -> dict:
    """What reached `origin`: commits on main after the first, paths they change, the pushed files' texts —
    read from a fresh bare repository holding copies of origin's objects and refs (no learner config or hooks)."""
    fresh = Path(tempfile.mkdtemp(prefix="pushed-", dir=scratch))
    _git(fresh, "init", "-q", "--bare", "-b", "main", ".")
    for part in ("objects", "refs", "packed-refs"):
        source = origin / part
        if source.is_symlink():
            continue
        if source.is_dir():
            shutil.rmtree(fresh / part, ignore_errors=True)
            shutil.copytree(source, fresh / part, symlinks=True)
        elif source.is_file():
            shutil.copy2(source, fresh / part)
    for path in list(fresh.rglob("*")):  # objects and refs are plain files; a link could point anywhere
        if path.is_symlink():
            path.unlink()
    log = _git(fresh, "rev-list", "--first-parent", "main")
    if log.returncode:
        return {"error": f"origin has no readable main branch: {log.stderr.strip()[-300:]}"}
    commits = log.stdout.split()
    if len(commits) < 2:
        return {"commits": 0, "changed": [], "messages": []}
    first, last = commits[-1], commits[0]
    changed = _git(fresh, "diff", "--no-ext-diff", "--no-textconv", "--name-only", first, last).stdout.split("\n")
    messages = _git(fresh, "log", "--format=%an <%ae>: %s", f"{first}..{last}").stdout.splitlines()
    tree = scratch / "pushed-tree"
    archive = subprocess.run(["git", "--git-dir", str(fresh), "archive", "--format=tar", last], capture_output=True,
                             env={**os.environ, **CLEAN_GIT}, timeout=60)
    tree.mkdir()
    if archive.returncode == 0:
        with tarfile.open(fileobj=io.BytesIO(archive.stdout)) as bundle:
            bundle.extractall(tree, filter="data")  # no absolute paths, no .., no links out of the tree
    return {"commits": len(commits) - 1, "changed": [c for c in changed if c], "messages": messages[:20],
            "tree": str(tree)}


def _render(overlay: Path, runner, env: dict) -> dict:
    """`kubectl kustomize overlay` (learner files: run as the learner), parsed into objects."""
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        return {"skipped": "kubectl is not installed here"}
    if not overlay.is_dir() or overlay.is_symlink():
        return {"error": f"{overlay.name} is not a directory"}
    out = Path(env["HOME"]) / f"rendered-{os.urandom(6).hex()}.yaml"  # the whole rendering: stdout is cut short
    done = runner([kubectl, "kustomize", str(overlay), "--output", str(out)], cwd=str(overlay.parent), env=env,
                  timeout=60)
    if done["exit"] != 0:
        return {"error": (done["stderr"] or done["stdout"]).strip()[-600:]}
    from ruamel.yaml import YAML

    try:
        if out.is_symlink() or not out.is_file() or out.stat().st_size > MAX_RENDER_BYTES:
            return {"error": "the rendering is missing or larger than 2 MB"}
        return {"objects": [d for d in YAML(typ="safe", pure=True).load_all(out.read_text()) if d]}
    except Exception as err:  # noqa: BLE001 — kubectl printed something that is not YAML
        return {"error": f"the rendering is not YAML: {err}"}


def run_one(spec: dict, repo: Path, workflow: dict, scratch: Path, hidden: list[str]) -> dict:
    from mlops_kit.cicd import checkout, github_context, manifest_changes, run_job

    started = time.monotonic()
    place = Path(tempfile.mkdtemp(prefix=f"run-{spec['id']}-", dir=scratch))
    work = checkout(repo, place)
    missed = _plant(work, spec.get("plant") or [])
    runner = _runner(scratch, hidden)
    env = _env(place)
    context = github_context(sha=spec["sha"], event=spec.get("event", "push"), ref=spec.get("ref", "refs/heads/main"),
                             pr_body=spec.get("pr_body", ""), workspace=str(work))
    if spec.get("event") == "pull_request":  # HEAD is the PR's merge commit, its first parent origin/main
        _git(work, "-c", "user.name=GitHub", "-c", "user.email=noreply@github.com", "commit", "-q", "--allow-empty",
             "-m", "Merge the pull request into main")
        context["github.event.pull_request.base.sha"] = _git(work, "rev-parse", "HEAD~1").stdout.strip()
        context["github.event.pull_request.head.sha"] = _git(work, "rev-parse", "HEAD").stdout.strip()
    result = run_job(workflow, spec["job"], work, context=context, runner=runner, timeout=spec.get("timeout", 120),
                     base_env=env)
    result.update(id=spec["id"], missed=missed, files=_collect(work, spec.get("collect") or []))
    if spec.get("inspect_origin"):
        pushed = _pushed(place / "origin.git", place)
        if "tree" in pushed:
            tree = Path(pushed.pop("tree"))
            renders = {}
            for overlay in spec.get("render") or []:
                before = _render(_base(place, repo) / overlay, runner, env)
                after = _render(tree / overlay, runner, env)
                entry = {"before": {k: v for k, v in before.items() if k != "objects"},
                         "after": {k: v for k, v in after.items() if k != "objects"}}
                if "objects" in before and "objects" in after:
                    entry["changes"] = manifest_changes(before["objects"], after["objects"])
                    entry["images_after"] = _images(after["objects"])
                renders[overlay] = entry
            pushed["renders"] = renders
        result["origin"] = pushed
    result["seconds"] = round(time.monotonic() - started, 2)
    return result


def _base(place: Path, repo: Path) -> Path:
    """A second clean checkout, untouched by the job: what the overlays render to before it."""
    from mlops_kit.cicd import checkout

    base = place / "before"
    if not base.exists():
        checkout(repo, base)
    return base / "work"


def _images(objects: list) -> list[str]:
    found = []
    for obj in objects:
        spec = ((obj.get("spec") or {}).get("template") or {}).get("spec") or {}
        found.extend(str(c.get("image")) for c in spec.get("containers") or [] if isinstance(c, dict))
    return found


def gate_cases(cases: list[dict], repo: Path, scratch: Path, hidden: list[str]) -> list[dict]:
    """Each pull request given to `python scripts/gate.py --body B --card C --changed X` on a clean checkout."""
    from mlops_kit.cicd import checkout

    work = checkout(repo, Path(tempfile.mkdtemp(prefix="gate-", dir=scratch)))
    runner, env, results = _runner(scratch, hidden), _env(work.parent), []
    if not (work / "scripts" / "gate.py").is_file():
        return [{"id": c["id"], "error": "scripts/gate.py is not in the repository"} for c in cases]
    for case in cases:
        folder = Path(tempfile.mkdtemp(prefix="pr-", dir=scratch))
        (folder / "body.md").write_text(case["body"])
        (folder / "card.md").write_text(case["card"])
        (folder / "changed.txt").write_text("".join(f"{p}\n" for p in case["changed"]))
        done = runner([sys.executable, "scripts/gate.py", "--body", str(folder / "body.md"), "--card",
                       str(folder / "card.md"), "--changed", str(folder / "changed.txt")], cwd=str(work), env=env,
                      timeout=30)
        results.append({"id": case["id"], "exit": done["exit"], "timed_out": done["timed_out"],
                        "output": (done["stdout"] + done["stderr"])[-1500:]})
    return results


def probe(args, inputs) -> dict:
    from mlops_kit.cicd import load_workflow, tracked_files

    plan = json.loads(str(inputs["plan"]))
    repo = Path(args.work) / args.repo
    if repo.is_symlink() or not repo.is_dir():
        return {"error": f"{args.repo} was not found (or is not a directory)"}
    files = tracked_files(repo)
    size = sum((repo / f).stat().st_size for f in files if (repo / f).is_file())
    if len(files) > MAX_FILES or size > MAX_BYTES:
        return {"error": f"the repository holds {len(files)} files, {size / 2**20:.0f} MB (at most {MAX_FILES} "
                         f"files, {MAX_BYTES // 2**20} MB): commit sources, not outputs (.gitignore)"}
    scratch = Path(tempfile.mkdtemp(prefix="ci-"))
    hidden = [args.input, args.out]
    result = {"runs": [], "gate": []}
    workflow_path = repo / plan.get("workflow", ".github/workflows/ci.yml")
    if plan.get("runs"):
        try:
            workflow = load_workflow(workflow_path)
        except Exception as err:  # noqa: BLE001 — the learner's file: any failure to read it is theirs
            result["runs_error"] = f"{plan.get('workflow', '.github/workflows/ci.yml')} cannot be read: {err}"
        else:
            for spec in plan["runs"]:
                result["runs"].append(run_one(spec, repo, workflow, scratch, hidden))
    if plan.get("gate"):
        result["gate"] = gate_cases(plan["gate"], repo, scratch, hidden)
    if plan.get("renders"):
        runner, env = _runner(scratch, hidden), _env(scratch)
        result["renders"] = {overlay: _render(repo / overlay, runner, env) for overlay in plan["renders"]}
    return result


if __name__ == "__main__":
    probe_main(probe, add_arguments)
