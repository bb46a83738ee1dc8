"""Lab 09 — CI/CD and collaboration: the learner's GitHub Actions workflow is validated against GitHub's schema and
read for its graph, permissions and caching; its `run:` steps are executed on clean checkouts (also with planted
bugs it must catch); the deploy job's push is rendered with Kustomize; the gate is fed unseen pull requests; the
SLOs and the runbook are read."""

from __future__ import annotations

import fnmatch
import hashlib
import json
import random
import re

from grader.checks.common import Checks, Fail, Partial, learner_yaml, log_tail
from grader.labs import Lab
from grader.sandbox import Limits
from grader.secret import seed_for

LAB = Lab(
    id="09_cicd",
    title="Deliver the model with CI/CD and GitOps",
    week=9,
    minutes=90,
    objectives=(
        "write a GitHub Actions workflow that lints, tests, smoke-trains, builds the image and deploys in order",
        "give every job the least privilege it needs, cache dependencies and keep untrusted text out of scripts",
        "deliver with GitOps: bump the image tag in a Kustomize overlay and commit it",
        "gate model changes on their evidence: an MLflow run id, a DVC data version and a filled model card",
        "set objectives for the endpoint and write the runbook that keeps them",
    ),
    lesson="curriculum/09_cicd.ipynb",
    seed=41,
    timeout=150,
    cell_timeout=90,
    budget=360,
)

CHECKS = Checks()
WORKFLOW, TEMPLATE = ".github/workflows/ci.yml", ".github/pull_request_template.md"
GATE, BUMP, SLO, RUNBOOK = "scripts/gate.py", "scripts/bump_image.py", "slo.yaml", "RUNBOOK.md"
STAGES = ("lint", "test", "smoke", "build", "deploy")
JOBS = (*STAGES, "gate")
PROD, DEV = "deploy/overlays/prod", "deploy/overlays/dev"
PROD_FILE = f"{PROD}/kustomization.yaml"
SMOKE_METRICS = "build/smoke/metrics.json"
WRITES_ALLOWED = {"build": {"packages"}, "deploy": {"contents"}}
BRANCH_REFS = {"main", "master", "head", "develop", "dev", "trunk", "latest"}
PROBE_LIMITS = Limits(wall_seconds=200)
TRAIN = "cancer_model/train.py"

# Bugs planted in checkouts: each must make its job fail (the project's own tests and floor catch them).
LINT_BUGS = (("an unused import (import os)", "import argparse\n", "import argparse\nimport os\n"),
             ("an f-string without placeholders", "    print(json.dumps(metrics))\n",
              '    print(f"metrics:")\n    print(json.dumps(metrics))\n'))
TEST_BUGS = (("the positive class's probability swapped for the negative one's", "model.predict_proba(X_test)[:, 1]",
              "model.predict_proba(X_test)[:, 0]"),
             ("the target left among the features", "X, y = frame.drop(columns=TARGET), frame[TARGET]",
              "X, y = frame.copy(), frame[TARGET]"))
SMOKE_BUGS = (("a model trained on shuffled labels (it learns nothing)", ".fit(X_train, y_train)",
               ".fit(X_train, y_train.sample(frac=1, random_state=seed).to_numpy())"),
              ("a model trained on blanked features (it learns nothing)", ".fit(X_train, y_train)",
               ".fit(X_train * 0, y_train)"))


def _sha(purpose: str) -> str:
    return hashlib.sha1(f"{LAB.id}:{purpose}".encode()).hexdigest()


DEPLOY_SHA = _sha("visible deploy")


# --- what the job starts with --------------------------------------------------------------------------


def prepare(work):
    """The project CI/CD guards, as a git repository (the notebook adds the learner's files to it)."""
    from mlops_kit.cicd import project_repo

    project_repo(work / "repo", seed=LAB.seed)
    params = {"seed": LAB.seed, "output_dir": "repo"}
    rng = random.Random(seed_for(LAB.id, "bugs"))
    bugs = {"lint": rng.randrange(len(LINT_BUGS)), "test": rng.randrange(len(TEST_BUGS)),
            "smoke": rng.randrange(len(SMOKE_BUGS))}
    return params, {"bugs": bugs, "gate": hidden_gate_cases(random.Random(seed_for(LAB.id, "gate")))}


# --- pull requests for the gate ------------------------------------------------------------------------

CARD = """# Model card: cancer-classifier

## Intended use
Orders biopsies for a pathologist's review; not a diagnosis.

## Training data
The Wisconsin diagnostic breast cancer data, 569 biopsies, versioned with DVC.

## Metrics
Test ROC AUC {auc} on a stratified 25 % split.

## Limitations
One hospital's data; not checked on other scanners.
"""


def pr_body(ticked: bool, run_id: str | None, data: str | None, box: str = "x") -> str:
    """A description written the way the lab's template asks (fields omitted when None)."""
    lines = ["## What and why", "Retrain with more regularization.", "", "## Model change",
             f"- [{box if ticked else ' '}] This PR changes the model (training code, data, parameters)"]
    if run_id is not None:
        lines.append(f"- MLflow run id: {run_id}")
    if data is not None:
        lines.append(f"- DVC data version: {data}")
    return "\n".join(lines) + "\n"


def _hex(rng: random.Random, n: int = 32) -> str:
    return "".join(rng.choice("0123456789abcdef") for _ in range(n))


def hidden_gate_cases(rng: random.Random) -> list[dict]:
    """Pull requests the learner has not seen: (what it is, body, card, changed paths, whether to let it through)."""
    card = CARD.format(auc=f"0.9{rng.randrange(50, 99)}")
    run, data = _hex(rng), _hex(rng)
    cases = [
        ("a model change with its run id, data version and a filled card", pr_body(True, run, data), card,
         [TRAIN], True),
        ("a model change ticked with [X] that changes only README.md, with a placeholder run id",
         pr_body(True, "<run id>", _hex(rng), box="X"), card, ["README.md"], False),
        ("a model change with a placeholder run id and a card saying TODO (two reasons to print)",
         pr_body(True, "<run id>", data), card.replace("Test ROC AUC", "TODO: Test ROC AUC"), [TRAIN], False),
        ("a model change whose run id is a placeholder", pr_body(True, "<run id>", data), card, [TRAIN], False),
        ("a model change whose run id has 31 characters", pr_body(True, run[:31], data), card, [TRAIN], False),
        ("a model change without a DVC data version line", pr_body(True, run, None), card, ["params.yaml"], False),
        ("a model change whose card says TODO under Limitations", pr_body(True, run, data),
         card.replace("One hospital's data; not checked on other scanners.", "TODO"), [TRAIN], False),
        ("a model change whose card has no Metrics section", pr_body(True, run, data),
         re.sub(r"## Metrics\n.*?\n\n", "", card, flags=re.S), [TRAIN], False),
        ("a model change whose card leaves Intended use empty", pr_body(True, run, data),
         card.replace("Orders biopsies for a pathologist's review; not a diagnosis.\n", ""), [TRAIN], False),
        ("a code-only change (README and workflow), box unticked, no evidence", pr_body(False, None, None), card,
         ["README.md", WORKFLOW], True),
        ("an unticked box but params.yaml changed, with no evidence", pr_body(False, "", ""), card,
         ["params.yaml"], False),
        ("an unticked box, dvc.lock changed, with full evidence", pr_body(False, _hex(rng), _hex(rng)), card,
         ["dvc.lock"], True),
        ("an unticked box, docs/data/notes.md changed (not under data/)", pr_body(False, None, None), card,
         ["docs/data/notes.md"], True),
    ]
    rng.shuffle(cases)
    return [{"id": f"hidden-{i}", "what": what, "body": body, "card": c, "changed": changed, "accept": accept,
             "reasons": 2 if "two reasons" in what else 1} for i, (what, body, c, changed, accept) in enumerate(cases)]


VISIBLE_RUN, VISIBLE_DATA = "ab" * 16, "0f" * 16
EXAMPLES = (  # the lab's own examples (Exercise 3), and the template filled in and left blank
    ("example: the lab's good model change", pr_body(True, VISIBLE_RUN, VISIBLE_DATA), [TRAIN], True),
    ("example: the lab's model change with a placeholder run id", "- [x] This PR changes the model\n"
     f"- MLflow run id: <run id>\n- DVC data version: {VISIBLE_DATA}\n", [TRAIN], False),
    ("example: a code-only change", pr_body(False, None, None), ["README.md"], True),
)


def _template_cases(template: str) -> list[tuple[str, str, list[str], bool]]:
    """The learner's own template ticked and filled in (must pass), and ticked but left blank (must not)."""
    ticked = re.sub(r"\[ \]\s*(This PR changes the model)", r"[x] \1", template, count=1)
    filled = re.sub(r"^([\s>*-]*MLflow run id\s*:)[ \t]*$", rf"\1 {VISIBLE_RUN}", ticked, flags=re.M | re.I)
    filled = re.sub(r"^([\s>*-]*DVC data version\s*:)[ \t]*$", rf"\1 {VISIBLE_DATA}", filled, flags=re.M | re.I)
    return [("your template, ticked and filled in", filled, [TRAIN], True),
            ("your template, ticked but left blank", ticked, [TRAIN], False)]


# --- reading the learner's files ------------------------------------------------------------------------


def text_of(ctx, name: str, exercise: str) -> str:
    path = ctx.output(name)
    if not ctx.exists(path):
        raise Fail(f"{name} was not written: run Exercise {exercise}'s %%writefile cell{ctx.why_missing()}")
    text = ctx.read_text(path)
    if "NotImplementedError" in text and "YOUR CODE HERE" in text:
        raise Fail(f"{name} still holds the exercise's stub: write it in Exercise {exercise}'s %%writefile cell")
    return text


def workflow(ctx) -> dict:
    found = learner_yaml(text_of(ctx, WORKFLOW, "1"), WORKFLOW)
    if not isinstance(found, dict) or not isinstance(found.get("jobs"), dict):
        raise Fail(f"{WORKFLOW} holds no workflow (a mapping with on: and jobs:)")
    return found


def _condition(spec: dict, **event) -> bool | None:
    """Whether a job's `if:` lets it run for an event (None: it has no `if:`); an unreadable one raises Fail."""
    from mlops_kit.cicd import ExpressionError, evaluate, github_context

    condition = spec.get("if")
    if condition is None:
        return None
    text = str(condition).strip()
    match = re.fullmatch(r"\$\{\{(.*)\}\}", text, re.S)
    try:
        return bool(evaluate(match.group(1) if match else text, github_context(sha=DEPLOY_SHA, **event)))
    except ExpressionError as err:
        raise Fail(f"the condition `if: {condition}` cannot be read: {err}") from None


# --- the workflow, read -----------------------------------------------------------------------------------


@CHECKS.add(points=2, hint="load_workflow() and workflow_errors() in the notebook list each place GitHub would "
            "refuse; on:, jobs:, runs-on: and steps: are required", section="9.3 A workflow, job by job")
def workflow_valid(ctx):
    """ci.yml is YAML that GitHub's workflow schema accepts (check-jsonschema's vendored copy, offline)."""
    from mlops_kit.cicd import workflow_errors

    errors = workflow_errors(workflow(ctx))
    if errors:
        raise Fail(f"GitHub would refuse {WORKFLOW}: {len(errors)} schema error(s): " + "; ".join(errors[:5]))


@CHECKS.add(points=3, hint="needs: makes a job wait; test needs lint, smoke needs test, build needs smoke, deploy "
            "needs build", section="9.4 The needs graph", depends=("workflow_valid",))
def stages_ordered(ctx):
    """The jobs lint, test, smoke, build, deploy and gate exist, and needs: runs the five stages in that order."""
    from mlops_kit.cicd import job_order, jobs, upstream

    found = workflow(ctx)
    missing = [job for job in JOBS if job not in jobs(found)]
    if missing:
        raise Fail(f"the workflow has no job(s) {', '.join(missing)} (it has {', '.join(jobs(found)) or 'none'}): "
                   "name the jobs as the exercise does")
    try:
        job_order(found)
    except ValueError as err:
        raise Fail(str(err)) from None
    problems = [f"{later} does not wait for {earlier}" for earlier, later in zip(STAGES, STAGES[1:])
                if earlier not in upstream(found, later)]
    if problems:
        raise Fail("; ".join(problems) + " — a job without needs: starts at once, in parallel with the others")


@CHECKS.add(points=2, hint="on: push (branches: [main]) and pull_request; deploy: if: github.event_name == 'push' && "
            "github.ref == 'refs/heads/main'; gate: if: github.event_name == 'pull_request'",
            section="9.10 GitOps: the tag bump, rendered", depends=("workflow_valid",))
def triggers(ctx):
    """The workflow runs on pushes to main and on pull requests; deploy only on a push to main, gate only on PRs."""
    found = workflow(ctx)
    on = found.get("on")
    events = {on} if isinstance(on, str) else set(on) if isinstance(on, (list, dict)) else set()
    problems = []
    if "push" not in events:
        problems.append("it does not run on push")
    elif isinstance(on, dict) and isinstance(on.get("push"), dict) and "branches" in on["push"]:
        branches = on["push"]["branches"]
        branches = [branches] if isinstance(branches, str) else branches or []
        if not any(fnmatch.fnmatch("main", str(b)) for b in branches):
            problems.append(f"its push trigger leaves main out (branches: {branches})")
    if "pull_request" not in events:
        problems.append("it does not run on pull_request")
    if "pull_request_target" in events:
        problems.append("it runs on pull_request_target, which gives a fork's code the repository's secrets")
    spec = {job: found["jobs"].get(job) for job in ("deploy", "gate")}
    absent = [job for job, value in spec.items() if not isinstance(value, dict)]
    if absent:
        raise Fail("; ".join(problems + [f"the workflow has no {job} job" for job in absent]))
    deploy = {name: _condition(spec["deploy"], **event) for name, event in (
        ("a push to main", {}), ("a push to another branch", {"ref": "refs/heads/feature"}),
        ("a pull request", {"event": "pull_request", "ref": "refs/pull/7/merge"}))}
    if any(deploy[name] is None for name in deploy) and events & {"pull_request"}:
        problems.append("deploy has no if:, so it runs on pull requests too: a PR would deploy unreviewed code")
    else:
        if deploy["a push to main"] is False:
            problems.append("deploy's if: is false on a push to main: it never deploys")
        problems += [f"deploy's if: is true on {name}" for name in ("a push to another branch", "a pull request")
                     if deploy[name]]
    gate_pr = _condition(spec["gate"], event="pull_request", ref="refs/pull/7/merge")
    gate_push = _condition(spec["gate"])
    if gate_pr is False:
        problems.append("gate's if: is false on a pull request: it never gates")
    if gate_push is None or gate_push:
        problems.append("gate also runs on a push, where there is no pull request to read")
    if problems:
        raise Fail("; ".join(problems))


def _pinned(ref: str) -> bool:
    return bool(re.fullmatch(r"[0-9a-f]{40}", ref) or re.fullmatch(r"v?\d+(\.\d+){0,2}", ref))


@CHECKS.add(points=3, hint="permissions: contents: read at the top; build: packages: write; deploy: contents: write; "
            "uses: owner/action@v4 (a version or a commit SHA)", section="9.7 Least privilege and script injection",
            depends=("workflow_valid",))
def least_privilege(ctx):
    """The token is read-only but where a job must write (build: packages, deploy: contents); actions are pinned."""
    from mlops_kit.cicd import jobs, steps, write_scopes

    found = workflow(ctx)
    problems = []
    top = found.get("permissions")
    if top is None:
        problems.append("no top-level permissions:, so every job gets the repository's default token, which may "
                        "write everything")
    elif top == "write-all" or (isinstance(top, dict) and any(str(v) == "write" for v in top.values())):
        problems.append(f"the top-level permissions grant write ({top}) to every job")
    for job, scopes in write_scopes(found).items():
        extra = sorted(set(scopes) - WRITES_ALLOWED.get(job, set()))
        if extra and top is not None:
            problems.append(f"job {job} may write {', '.join('everything' if s == '*' else s for s in extra)}")
    if "contents" not in write_scopes(found).get("deploy", []) and "*" not in write_scopes(found).get("deploy", []):
        problems.append("deploy cannot push its commit: give it contents: write")
    loose = []
    for job in jobs(found):
        for step in steps(found, job):
            uses = str(step.get("uses", ""))
            if step["kind"] != "uses" or uses.startswith(("./", "docker://")):
                continue
            ref = uses.rpartition("@")[2] if "@" in uses else ""
            if not ref or ref.lower() in BRANCH_REFS or not _pinned(ref):
                loose.append(f"{job}: {uses}")
    if loose:
        problems.append("actions not pinned to a version or a commit SHA: " + ", ".join(sorted(set(loose))[:6]))
    if problems:
        raise Fail("; ".join(problems))


@CHECKS.add(points=2, hint="env: PR_BODY: ${{ github.event.pull_request.body }} on the step, and \"$PR_BODY\" in the "
            "script", section="9.7 Least privilege and script injection", depends=("workflow_valid",))
def no_script_injection(ctx):
    """No run: script pastes text an outsider controls (a PR's body or title, a branch name) into the shell."""
    from mlops_kit.cicd import untrusted_in_run

    found = untrusted_in_run(workflow(ctx))
    if found:
        raise Fail("a pull request's author could run commands in your CI: " + "; ".join(found[:4])
                   + " — GitHub pastes the text into the script before bash reads it")


def _installs(script: str) -> bool:
    return bool(re.search(r"\bpip3?\s+install\b|\buv\s+pip\s+install\b", script))


@CHECKS.add(points=2, hint="actions/setup-python@v5 with cache: pip and cache-dependency-path: requirements-ci.txt",
            section="9.6 Caching dependencies", depends=("workflow_valid",))
def dependency_cache(ctx):
    """Every job that installs Python packages caches them, keyed on requirements-ci.txt."""
    from mlops_kit.cicd import jobs, runs, steps

    found = workflow(ctx)
    problems = []
    installing = [job for job in jobs(found) if _installs(runs(found, job))]
    for job in installs_needed(found, installing):
        problems.append(f"{job} runs tests or training without installing requirements-ci.txt")
    for job in installing:
        cached, why = False, "no cache (setup-python's cache: pip, or actions/cache)"
        for step in steps(found, job):
            uses, given = str(step.get("uses", "")), step.get("with") or {}
            if not isinstance(given, dict):
                continue
            if uses.startswith("actions/setup-python") and str(given.get("cache", "")) != "pip" and not cached:
                why = "setup-python without cache: pip"
            if uses.startswith("actions/setup-python") and str(given.get("cache", "")) == "pip":
                paths = str(given.get("cache-dependency-path", "**/requirements.txt")).split()
                if any(fnmatch.fnmatch("requirements-ci.txt", p.lstrip("./").replace("**/", "")) for p in paths):
                    cached = True
                else:
                    why = (f"setup-python's pip cache is keyed on {' '.join(paths)}, which does not match "
                           "requirements-ci.txt (the job would stop: no file to hash)")
            if uses.startswith("actions/cache") and "hashFiles(" in str(given.get("key", "")) \
                    and "requirements" in str(given.get("key", "")):
                cached = True
        if not cached:
            problems.append(f"{job}: {why}")
    if not installing:
        problems.append("no job installs requirements-ci.txt (python -m pip install -r requirements-ci.txt)")
    if problems:
        raise Fail("; ".join(problems))


def installs_needed(found: dict, installing: list[str]) -> list[str]:
    """The lint, test and smoke jobs that do not install the project's CI requirements."""
    return [job for job in ("lint", "test", "smoke") if job in found["jobs"] and job not in installing]


# --- the workflow, run ----------------------------------------------------------------------------------


def _run(job: str, sha: str = DEPLOY_SHA, **more) -> dict:
    return {"id": more.pop("id", job), "job": job, "sha": sha, "event": "push", "ref": "refs/heads/main", **more}


def visible_plan(ctx) -> dict:
    """The jobs on clean checkouts, the deploy's push rendered, the gate job on two PRs, the gate on examples."""
    runs = [_run("lint"), _run("test"), _run("smoke", collect=[SMOKE_METRICS]),
            _run("deploy", inspect_origin=True, render=[PROD, DEV]),
            _run("gate", id="gate-accepts", event="pull_request", ref="refs/pull/7/merge",
                 pr_body=EXAMPLES[0][1]),
            _run("gate", id="gate-refuses", event="pull_request", ref="refs/pull/7/merge",
                 pr_body=EXAMPLES[1][1])]
    cases = [{"id": what, "body": body, "card": CARD.format(auc="0.991"), "changed": changed}
             for what, body, changed, _ in EXAMPLES]
    if ctx.exists(ctx.output(TEMPLATE)):
        cases += [{"id": what, "body": body, "card": CARD.format(auc="0.991"), "changed": changed}
                  for what, body, changed, _ in _template_cases(ctx.read_text(ctx.output(TEMPLATE)))]
    return {"runs": runs if ctx.exists(ctx.output(WORKFLOW)) else [], "gate": cases}


def probe(ctx, plan: dict, secret: bool = False) -> dict:
    import numpy as np

    return ctx.probe("ci_probe", {"plan": np.array(json.dumps(plan, sort_keys=True))},
                     args=("--repo", ctx.params.get("output_dir", "repo")), limits=PROBE_LIMITS, secret=secret)


def run_of(result: dict, run_id: str) -> dict:
    if result.get("runs_error"):
        raise Fail(f"the workflow could not be run: {result['runs_error']}")
    for run in result.get("runs", []):
        if run.get("id") == run_id:
            return run
    raise Fail(f"the {run_id} job was not run")


def describe(run: dict) -> str:
    """Why a job run failed: its first failed step, the exit code and the tail of what it printed."""
    if not run.get("ran"):
        return f"it did not run: {run.get('why')}"
    for step in run.get("steps", []):
        if step.get("status") == "failed":
            what = "timed out" if step.get("timed_out") else f"exit {step.get('exit')}"
            return f"step {step['index'] + 1} ({step['name']}) failed, {what}: {log_tail(step.get('output', ''), 4)}"
    return run.get("why") or "a step failed"


def not_run(run: dict) -> str:
    actions = [s["name"] for s in run.get("steps", []) if s.get("status") == "not run"]
    return f" (not run here: {', '.join(actions)})" if actions else ""


@CHECKS.add(points=4, hint="run the jobs in the notebook with checkout() and run_job(); every run: step must pass "
            "with this machine's python, ruff and pytest and no network", section="9.5 Running the steps here",
            depends=("workflow_valid",))
def ci_jobs_pass(ctx):
    """The run: steps of lint, test and smoke pass on a clean checkout of the repository, as on a runner."""
    result = probe(ctx, visible_plan(ctx))
    failed = []
    for job in ("lint", "test", "smoke"):
        run = run_of(result, job)
        if not (run.get("ran") and run.get("ok")):
            failed.append(f"{job}: {describe(run)}{not_run(run)}")
    if failed:
        ok = 3 - len(failed)
        message = "; ".join(failed)
        if ok:
            return Partial(ok / 3, message)
        raise Fail(message)


@CHECKS.add(points=2, hint="python -m cancer_model.train --data data/sample.csv --out build/smoke --min-auc 0.9",
            section="9.8 Smoke training on a sample", depends=("ci_jobs_pass",))
def smoke_trains_sample(ctx):
    """The smoke job trains on the sample (data/sample.csv) and writes build/smoke/metrics.json."""
    from mlops_kit.cicd import SAMPLE_ROWS, runs

    run = run_of(probe(ctx, visible_plan(ctx)), "smoke")
    text = (run.get("files") or {}).get(SMOKE_METRICS)
    script = runs(workflow(ctx), "smoke")
    if text is None:
        raise Fail(f"after the smoke job, the checkout holds no {SMOKE_METRICS}: train with --out build/smoke "
                   "(the job's steps were: " + "; ".join(s["name"] for s in run.get("steps", [])) + ")")
    try:
        metrics = json.loads(text)
    except ValueError:
        raise Fail(f"{SMOKE_METRICS} is not JSON") from None
    if not isinstance(metrics, dict) or metrics.get("rows") != SAMPLE_ROWS:
        raise Fail(f"the smoke job trained on {metrics.get('rows') if isinstance(metrics, dict) else '?'} rows, not "
                   f"on the {SAMPLE_ROWS}-row sample data/sample.csv")
    if not re.search(r"--min-auc[= ]+0?\.\d|--min-auc[= ]+\$", script):
        raise Fail("the smoke job trains without a floor (--min-auc 0.9): a model that learned nothing passes it")


@CHECKS.add(points=4, hint="a job fails when a step exits non-zero: no `|| true`, no --exit-zero, no "
            "continue-on-error, and run the whole test suite", section="9.5 Running the steps here", visible=False,
            depends=("ci_jobs_pass",))
def ci_catches_bugs(ctx):
    """On checkouts with a planted bug (a lint error, a broken model), the lint, test and smoke jobs fail."""
    bugs = ctx.hidden["bugs"]
    chosen = {"lint": LINT_BUGS[bugs["lint"]], "test": TEST_BUGS[bugs["test"]], "smoke": SMOKE_BUGS[bugs["smoke"]]}
    plan = {"runs": [_run(job, id=f"{job}-bug", plant=[{"path": TRAIN, "find": find, "replace": replace}])
                     for job, (_, find, replace) in chosen.items()], "gate": []}
    result, clean = probe(ctx, plan, secret=True), probe(ctx, visible_plan(ctx))
    missed = []
    for job, (what, _, _) in chosen.items():
        run, before = run_of(result, f"{job}-bug"), run_of(clean, job)
        if not (before.get("ran") and before.get("ok")):
            missed.append(f"the {job} job fails on the clean checkout too, so its failure proves nothing")
        elif run.get("missed"):
            missed.append(f"{job}: the grader could not plant {what}: {TRAIN} is not the project's (leave the "
                          "project's code as it is)")
        elif run.get("ran") and run.get("ok"):
            missed.append(f"the {job} job passed on a checkout with {what}")
        elif not run.get("ran"):
            missed.append(f"the {job} job did not run: {run.get('why')}")
    if missed:
        caught = 3 - len(missed)
        message = "; ".join(missed) + " — CI that stays green on broken code protects nothing"
        if caught:
            return Partial(caught / 3, message)
        raise Fail(message)


@CHECKS.add(points=2, hint='docker build -f Containerfile -t "$IMAGE:$GITHUB_SHA" .; push with if: '
            "github.event_name == 'push'", section="9.9 Building the image in CI", depends=("workflow_valid",))
def image_build_step(ctx):
    """The build job builds the Containerfile, tags it with the commit SHA (never latest) and pushes only on a push."""
    from mlops_kit.cicd import steps

    found = workflow(ctx)
    if "build" not in found["jobs"]:
        raise Fail("the workflow has no build job")
    problems, builds, pushes = [], [], []
    for step in steps(found, "build"):
        text = str(step.get("run", "")) if step["kind"] == "run" else json.dumps(step.get("with") or {})
        uses = str(step.get("uses", ""))
        if re.search(r"\b(docker|podman|buildah)\s+(image\s+)?(build|buildx\s+build|bud)\b", text) \
                or uses.startswith("docker/build-push-action"):
            builds.append((step, text))
        if re.search(r"\b(docker|podman|buildah)\s+(image\s+)?push\b", text) or (
                uses.startswith("docker/build-push-action") and str((step.get("with") or {}).get("push")) != "false"):
            pushes.append(step)
    if not builds:
        problems.append("the build job builds no image (docker build, podman build or docker/build-push-action)")
    for step, text in builds:
        issues = []
        if "Containerfile" not in text:
            issues.append("does not build the Containerfile (-f Containerfile)")
        if not re.search(r"github\.sha|GITHUB_SHA", text):
            issues.append("does not tag the image with the commit (${{ github.sha }})")
        if re.search(r":latest\b", text):
            issues.append("tags :latest, which names no particular build")
        if issues:
            problems.append(f"the step '{step['name']}' " + ", ".join(issues))
    for step in pushes:
        condition = step.get("if")
        with_push = str((step.get("with") or {}).get("push", ""))
        guarded = (condition is not None and "push" in str(condition)) or "event_name" in with_push
        if not guarded:
            problems.append(f"the step '{step['name']}' pushes on pull requests too (no if: on the event)")
    if problems:
        raise Fail("; ".join(problems))


@CHECKS.add(points=4, hint="python scripts/bump_image.py deploy/overlays/prod \"$IMAGE\" \"$GITHUB_SHA\"; git add, "
            "git commit, git push origin HEAD:main", section="9.10 GitOps: the tag bump, rendered",
            depends=("workflow_valid",))
def gitops_bump(ctx):
    """The deploy job pushes one commit that changes only the prod overlay's image tag to the commit's SHA, and the
    rendered prod manifests differ from before in exactly that image (dev unchanged)."""
    from mlops_kit.cicd import IMAGE

    run = run_of(probe(ctx, visible_plan(ctx)), "deploy")
    if not (run.get("ran") and run.get("ok")):
        raise Fail(f"the deploy job failed on a push to main: {describe(run)}{not_run(run)}")
    pushed = run.get("origin") or {}
    if pushed.get("error"):
        raise Fail(f"after the deploy job, {pushed['error']}")
    problems = []
    if pushed.get("commits") != 1:
        problems.append(f"the deploy job pushed {pushed.get('commits', 0)} commit(s) to origin's main, not one "
                        "(git commit, then git push origin HEAD:main)")
    if pushed.get("commits"):
        changed = pushed.get("changed", [])
        if changed != [PROD_FILE]:
            problems.append(f"the pushed commit changes {', '.join(changed) or 'nothing'}, not only {PROD_FILE}")
        if not any("github-actions" in m for m in pushed.get("messages", [])):
            problems.append("the commit's author is not github-actions[bot] (git config user.name)")
        renders = pushed.get("renders", {})
        prod, dev = renders.get(PROD, {}), renders.get(DEV, {})
        for name, entry in ((PROD, prod), (DEV, dev)):
            for side in ("before", "after"):
                if entry.get(side, {}).get("skipped"):  # as lab 08 without podman: never a pass, never half
                    raise Fail(f"skipped: {entry[side]['skipped']} (the push was made; its rendering could not be "
                               "checked)")
                if entry.get(side, {}).get("error"):
                    problems.append(f"kubectl kustomize {name} fails {side} the deploy: {entry[side]['error']}")
        expected = f"{IMAGE}:{DEPLOY_SHA}"
        changes = prod.get("changes")
        if changes is not None:
            if len(changes) != 1 or not changes[0].endswith(f"-> '{expected}'") or ".image:" not in changes[0]:
                shown = "; ".join(changes[:4]) or "nothing"
                problems.append(f"the prod rendering should change in exactly the image, to {expected}; it changes: "
                                f"{shown}")
        if dev.get("changes"):
            problems.append(f"the dev rendering changed too: {'; '.join(dev['changes'][:3])}")
    if problems:
        raise Fail("; ".join(problems))


# --- the gate ---------------------------------------------------------------------------------------------


def gate_verdicts(result: dict, cases) -> list[str]:
    """What the gate got wrong on `cases` ((what, expected accept[, reasons it must print]) tuples), in words."""
    by_id = {r["id"]: r for r in result.get("gate", [])}
    wrong = []
    for what, accept, *more in cases:
        reasons = more[0] if more else 1
        got = by_id.get(what, {"error": "not run"})
        if got.get("error"):
            wrong.append(f"{what}: {got['error']}")
        elif got.get("timed_out"):
            wrong.append(f"{what}: the gate did not answer within 30 s")
        elif got.get("exit") not in (0, 1):
            wrong.append(f"{what}: the gate crashed (exit {got.get('exit')}): {log_tail(got.get('output', ''), 3)}")
        elif (got["exit"] == 0) != accept:
            wrong.append(f"{what}: {'refused' if accept else 'accepted'}, should be "
                         f"{'accepted' if accept else 'refused'}" + (f" (it said: {log_tail(got['output'], 2)})"
                                                                     if got["exit"] else ""))
        elif not accept and not got.get("output", "").strip():
            wrong.append(f"{what}: refused without saying why")
        elif not accept and len([line for line in got["output"].splitlines() if line.strip()]) < reasons:
            wrong.append(f"{what}: refused, but it printed only one reason (print every reason, one per line)")
    return wrong


@CHECKS.add(points=2, hint="a '- [ ] This PR changes the model' box, and 'MLflow run id:' and 'DVC data version:' "
            "lines with nothing after the colon", section="9.11 Gating model changes")
def pr_template(ctx):
    """The PR template carries the model-change box and the two evidence fields, and your gate refuses it ticked but
    blank and accepts it filled in."""
    text = text_of(ctx, TEMPLATE, "3")
    problems = []
    if not re.search(r"^\s*[-*]\s*\[ \]\s*This PR changes the model", text, re.M):
        problems.append("no unticked '- [ ] This PR changes the model' box")
    for label in ("MLflow run id", "DVC data version"):
        if not re.search(rf"^[\s>*-]*{label}\s*:[ \t]*$", text, re.M | re.I):
            problems.append(f"no empty '{label}:' line for the author to fill in")
    if problems:
        raise Fail("; ".join(problems))
    wrong = gate_verdicts(probe(ctx, visible_plan(ctx)), [(w, a) for w, _, _, a in _template_cases(text)])
    if wrong:
        raise Fail("your gate and your template disagree: " + "; ".join(wrong))


@CHECKS.add(points=2, hint="python scripts/gate.py --body B --card C --changed X: exit 0 to accept, 1 to refuse with "
            "every reason printed", section="9.11 Gating model changes")
def gate_examples(ctx):
    """The gate decides the lab's three example pull requests right."""
    text_of(ctx, GATE, "3")
    wrong = gate_verdicts(probe(ctx, visible_plan(ctx)), [(w, a) for w, _, _, a in EXAMPLES])
    if wrong:
        raise Fail("; ".join(wrong))


@CHECKS.add(points=5, hint="reread the gate's rules in Exercise 3: when a PR is a model change, what counts as a run "
            "id and a data version, what a filled card is", section="9.11 Gating model changes", visible=False,
            depends=("gate_examples",))
def gate_decisions(ctx):
    """The gate accepts and refuses pull requests it has not seen as the rules say."""
    cases = ctx.hidden["gate"]
    result = probe(ctx, {"runs": [], "gate": [{k: c[k] for k in ("id", "body", "card", "changed")}
                                              for c in cases]}, secret=True)
    by_id = {r["id"]: r for r in result.get("gate", [])}
    wrong = gate_verdicts({"gate": [{**by_id.get(c["id"], {"error": "not run"}), "id": c["what"]} for c in cases]},
                          [(c["what"], c["accept"], c["reasons"]) for c in cases])
    if wrong:
        right = len(cases) - len(wrong)
        message = f"{len(wrong)} of {len(cases)} pull requests decided wrong: " + "; ".join(wrong)
        if right >= len(cases) // 2:
            return Partial(right / len(cases), message)
        raise Fail(message)


@CHECKS.add(points=2, hint="gate: if: github.event_name == 'pull_request'; env: PR_BODY: ${{ "
            "github.event.pull_request.body }}; write \"$PR_BODY\" to a file and pass it to scripts/gate.py",
            section="9.11 Gating model changes", depends=("workflow_valid", "gate_examples"))
def gate_in_workflow(ctx):
    """On a pull request, the gate job runs scripts/gate.py on the PR's description: green for a model change with
    its evidence, red for one with a placeholder run id."""
    from mlops_kit.cicd import runs

    found = workflow(ctx)
    if "scripts/gate.py" not in runs(found, "gate"):
        raise Fail("the gate job does not run scripts/gate.py")
    result = probe(ctx, visible_plan(ctx))
    accepts, refuses = run_of(result, "gate-accepts"), run_of(result, "gate-refuses")
    problems = []
    if not (accepts.get("ran") and accepts.get("ok")):
        problems.append(f"on a PR with its evidence the gate job failed: {describe(accepts)}")
    if not refuses.get("ran") or refuses.get("ok"):
        problems.append("on a PR whose run id is a placeholder the gate job passed: " + (
            refuses.get("why") or "is the description passed to the gate?"))
    if problems:
        raise Fail("; ".join(problems))


# --- objectives and runbook -------------------------------------------------------------------------------


def slo(ctx):
    return learner_yaml(text_of(ctx, SLO, "4"), SLO)


def _service_name(ctx) -> str | None:
    try:
        doc = learner_yaml(ctx.read_text(ctx.output("deploy/base/service.yaml")), "deploy/base/service.yaml")
    except Fail:  # the project's own file, changed by the learner: slo_file then says nothing about the name
        return None
    return (doc.get("metadata") or {}).get("name") if isinstance(doc, dict) else None


@CHECKS.add(points=3, hint="service: cancer-service, window_days: 28, latency: {percentile: 95, threshold_ms: 300}, "
            "error_rate: {max_ratio: 0.001}", section="9.12 SLOs, error budgets and runbooks")
def slo_file(ctx):
    """slo.yaml names the project's Service and holds plausible latency and error-rate objectives."""
    from mlops_kit.cicd import slo_problems

    found = slo(ctx)
    problems = slo_problems(found)
    service = _service_name(ctx)
    if isinstance(found, dict) and service and isinstance(found.get("service"), str) and found["service"] != service:
        problems.append(f"service is {found['service']!r}, but the project's Service is {service!r}")
    if problems:
        raise Fail(f"{SLO}: " + "; ".join(problems))


def _sections(text: str) -> dict[str, str]:
    found, current = {}, None
    for line in text.splitlines():
        heading = re.match(r"^##\s+(.+?)\s*#*\s*$", line)
        if heading:
            current = heading.group(1).strip().lower()
            found[current] = ""
        elif current is not None:
            found[current] += line + "\n"
    return found


def _mentions(text: str, value: float, percent: bool = False) -> bool:
    numbers = [float(n) for n in re.findall(r"(?<![\w.])\d+(?:\.\d+)?", text)]
    candidates = [value, value * 100] if percent else [value]
    return any(abs(n - c) <= 1e-9 * max(1, abs(c)) for n in numbers for c in candidates)


@CHECKS.add(points=2, hint="## Deploy, ## Rollback with a ```bash block (git revert of the deploy commit), ## On-call "
            "quoting slo.yaml's numbers", section="9.12 SLOs, error budgets and runbooks")
def runbook(ctx):
    """RUNBOOK.md says how to deploy, how to roll back through git (commands included) and when to page, quoting the
    SLO numbers."""
    text = text_of(ctx, RUNBOOK, "4")
    sections = _sections(text)
    problems = []
    for name in ("deploy", "rollback", "on-call"):
        body = next((v for k, v in sections.items() if k.replace(" ", "-").startswith(name)), None)
        if body is None:
            problems.append(f"no '## {name.capitalize()}' section")
        elif len(body.split()) < 12:
            problems.append(f"the {name} section says almost nothing ({len(body.split())} words)")
    if re.search(r"\bTODO\b|\bTBD\b", text):
        problems.append("it still says TODO")
    rollback = next((v for k, v in sections.items() if k.startswith("rollback")), "")
    blocks = "\n".join(re.findall(r"```[^\n]*\n(.*?)```", rollback, re.S))
    if rollback and not blocks.strip():
        problems.append("the rollback section has no commands in a fenced code block")
    elif rollback and not re.search(r"\bgit\s+revert\b|bump_image\.py", blocks):
        problems.append("the rollback does not go through git (git revert of the deploy commit, or bump_image.py "
                        "with the previous tag): ArgoCD or Flux would undo a kubectl rollout undo at the next sync")
    oncall = next((v for k, v in sections.items() if k.replace(" ", "-").startswith("on-call")), "")
    try:
        found = slo(ctx)
    except Fail:  # slo_file reports it; the runbook is judged on its own
        found = None
    if oncall and isinstance(found, dict):
        latency, errors = found.get("latency"), found.get("error_rate")
        threshold = latency.get("threshold_ms") if isinstance(latency, dict) else None
        ratio = errors.get("max_ratio") if isinstance(errors, dict) else None
        if isinstance(threshold, (int, float)) and not _mentions(oncall, threshold):
            problems.append(f"the on-call section does not quote the latency objective ({threshold} ms)")
        if isinstance(ratio, (int, float)) and not _mentions(oncall, ratio, percent=True):
            problems.append(f"the on-call section does not quote the error-rate objective ({ratio}, or as a %)")
    if problems:
        raise Fail(f"{RUNBOOK}: " + "; ".join(problems))
