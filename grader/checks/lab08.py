"""Lab 08 — containers and supply chain: the learner's Containerfile is read against policy, linted, built for
real with podman and run hardened; the secrets baseline, the SBOM and the audit are checked against the lock."""

from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
import tempfile
import time
import uuid
from pathlib import Path

from grader import containerfile
from grader.checks import lab07
from grader.checks.common import Checks, Fail, log_tail, solution_file
from grader.labs import Lab
from grader.secret import seed_for

LAB = Lab(
    id="08_containers",
    title="Ship the service as a hardened container image",
    week=8,
    minutes=90,
    objectives=(
        "write a multi-stage Containerfile whose base image is a build argument, running as a non-root user",
        "give the image a working HEALTHCHECK and STOPSIGNAL, and keep secrets out of its layers and config",
        "scan the project for secrets against a reviewed baseline",
        "describe the image's environment with a CycloneDX SBOM and audit it honestly, online or not",
        "build and run the image hardened: read-only root, no capabilities, no network but its own",
    ),
    lesson="curriculum/08_containers.ipynb",
    seed=37,
    timeout=180,
    cell_timeout=120,
    budget=480,
)

CHECKS = Checks()
USES_CONTAINERS = True  # grade_batch's Ctrl-C stops this lab's builds and removes its containers
CONTAINERFILE, IGNORE = "Containerfile", ".dockerignore"
BASELINE, SBOM, AUDIT = ".secrets.baseline", "sbom.json", "audit.json"
PORT = 3000
STOP_GRACE = 10
SIZE_RATIO = 1.10  # the learner's image may be at most this much larger than the reference image
BUILD_SECONDS = 300
MAX_CONTEXT_BYTES = 20 * 2**20  # what the grader copies from output_dir into the build context (wheels aside)
DIRECT = ("alembic", "bentoml", "mlflow-skinny", "mlops-kit", "pandas", "scikit-learn", "skops", "sqlalchemy")
BUILD_INPUTS = ("service.py", "settings.py", "requirements.txt", "wheels/")


# --- what the job starts with --------------------------------------------------------------------------


def prepare(work: Path) -> tuple[dict, dict]:
    """The week-7 reference service (the lab containerizes a service that works) and the lab's parameters."""
    (work / "week7").mkdir()
    (work / "week7" / "service.py").write_text(lab07.reference_source())
    params = {"seed": LAB.seed, "week7_service": "week7/service.py", "registry_dir": "registry",
              "output_dir": "outputs"}
    rng = random.Random(seed_for(LAB.id, "planted"))
    token = "".join(rng.choice("abcdefghijklmnopqrstuvwxyz0123456789") for _ in range(36))
    return params, {"token": f"ghp_{token}", "planted": _planted(rng)}


def _planted(rng: random.Random) -> dict:
    """A secret a careless commit would add: which file, which line (drawn from the installation's secret)."""
    key = "".join(rng.choice("ABCDEFGHIJKLMNOPQRSTUVWXYZ234567") for _ in range(16))
    secret = "".join(rng.choice("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789/+") for _ in range(40))
    choices = [("deploy/settings_prod.py", f'AWS_ACCESS_KEY_ID = "AKIA{key}"\naws_secret_access_key = "{secret}"\n'),
               ("notes/credentials.md", f"The staging key is AKIA{key} (secret: {secret})\n"),
               ("config/registry.yaml", f'registry:\n  password: "{secret}"\n  key_id: AKIA{key}\n')]
    path, text = rng.choice(choices)
    return {"path": path, "text": text}


# --- the Containerfile as data --------------------------------------------------------------------------


def parsed(ctx) -> containerfile.Containerfile:
    path = ctx.output(CONTAINERFILE)
    if not ctx.exists(path):
        raise Fail(f"{path} was not written: run the %%writefile cell{ctx.why_missing()}")
    text = ctx.read_text(path)
    if "NotImplementedError" in text:
        raise Fail(f"{CONTAINERFILE} still holds the exercise's stub: write it in Exercise 1's %%writefile cell")
    if len(text) > 64 * 1024:
        raise Fail(f"{CONTAINERFILE} is {len(text)} characters long; a service's Containerfile fits in a page")
    try:
        return containerfile.parse(text)
    except containerfile.ParseError as err:
        raise Fail(f"{CONTAINERFILE} cannot be read: {err}") from None


def _external(cf: containerfile.Containerfile) -> list[containerfile.Stage]:
    """Stages whose FROM is an image, not an earlier stage."""
    names = set()
    found = []
    for stage in cf.stages:
        if stage.base not in names:
            found.append(stage)
        if stage.name:
            names.add(stage.name)
        names.add(str(stage.index))
    return found


def _installs(item: containerfile.Instruction) -> bool:
    text = item.args.lower()
    return item.keyword == "RUN" and ("pip install" in text or "pip3 install" in text or "uv pip install" in text)


def _copies_code(item: containerfile.Instruction) -> bool:
    if item.keyword not in ("COPY", "ADD") or "from" in item.flags():
        return False
    sources = item.words()[:-1]
    return any(s in (".", "./", "*", "*.py", "service.py", "./service.py") for s in sources)


@CHECKS.add(points=2, hint="FROM ${BASE_IMAGE} AS builder: build the venv there; FROM ${BASE_IMAGE} again and "
            "COPY --from=builder /opt/venv /opt/venv", section="8.3 A multi-stage Containerfile")
def multi_stage(ctx):
    """Two stages or more: the final one copies the built environment from a builder and leaves the wheels behind."""
    cf = parsed(ctx)
    if len(cf.stages) < 2:
        raise Fail(f"{CONTAINERFILE} has one stage (FROM at line {cf.stages[0].line}): build the environment in a "
                   "builder stage and copy only the result into the final one")
    final, earlier = cf.final, {s.name for s in cf.stages[:-1] if s.name} | {str(s.index) for s in cf.stages[:-1]}
    copies = [i for i in final.all("COPY") if i.flags().get("from") in earlier]
    if not copies:
        raise Fail("the final stage copies nothing from an earlier stage (COPY --from=builder ...): it is not "
                   "built from the builder's result")
    kept = [i for i in final.instructions if i.keyword in ("COPY", "ADD") and "from" not in i.flags()
            and any(w.rstrip("/").endswith("wheels") for w in i.words()[:-1])]
    installs = [i for i in final.instructions if _installs(i)]
    if kept or installs:
        where = (kept or installs)[0]
        raise Fail(f"the final stage {'copies the wheelhouse' if kept else 'installs packages'} (line {where.line}): "
                   "install in the builder and copy the environment, so wheels and pip stay out of the image")


@CHECKS.add(points=2, hint="ARG BASE_IMAGE=python:3.11-slim before the first FROM, then FROM ${BASE_IMAGE} in "
            "every stage", section="8.3 A multi-stage Containerfile")
def base_image_argument(ctx):
    """The base image is the build argument BASE_IMAGE, declared before the first FROM with a pinned default."""
    cf = parsed(ctx)
    if "BASE_IMAGE" not in cf.global_args:
        raise Fail("no `ARG BASE_IMAGE=...` before the first FROM: the grader (and a CI without a registry) "
                   "passes its base image as --build-arg BASE_IMAGE")
    default = cf.global_args["BASE_IMAGE"]
    if not default:
        raise Fail("ARG BASE_IMAGE has no default: give the one you build with elsewhere (python:3.11-slim)")
    if not containerfile.pinned(default):
        raise Fail(f"the default base image {default!r} is not pinned: name a version tag such as "
                   "python:3.11-slim (or a digest), never latest or no tag")
    wrong = [s for s in _external(cf) if containerfile.arg_reference(s.base) != "BASE_IMAGE"]
    if wrong:
        raise Fail(f"FROM {wrong[0].base} (line {wrong[0].line}) does not use the build argument: every stage "
                   "that starts from an image must start from ${BASE_IMAGE}")


def _user_is_root(user: str) -> bool:
    name = user.split(":", 1)[0].strip()
    return name in ("", "root", "0")


@CHECKS.add(points=2, hint="create a user (useradd --uid 1000 app) and switch to it with USER before CMD",
            section="8.5 Running hardened")
def non_root_user(ctx):
    """The final stage switches to a non-root USER before it starts the service."""
    final = parsed(ctx).final
    users = final.all("USER")
    if not users:
        raise Fail("the final stage has no USER: the service would run as root inside the container")
    last = users[-1]
    if _user_is_root(" ".join(last.words())):
        raise Fail(f"USER {last.args} (line {last.line}) is root: switch to an unprivileged user")
    starts = final.last("CMD") or final.last("ENTRYPOINT")
    if starts and starts.line < last.line:
        raise Fail(f"USER comes at line {last.line}, after the command at line {starts.line}: switch users first")


@CHECKS.add(points=2, hint="HEALTHCHECK CMD python3 -c \"import urllib.request; urllib.request.urlopen("
            "'http://127.0.0.1:3000/readyz', timeout=2)\"; STOPSIGNAL SIGTERM", section="8.6 Health and shutdown")
def health_and_stop_signal(ctx):
    """The final stage declares a HEALTHCHECK on /readyz with a tool the image has, a STOPSIGNAL and EXPOSE 3000."""
    final = parsed(ctx).final
    problems = []
    check = final.last("HEALTHCHECK")
    if check is None or check.args.strip().upper().startswith("NONE"):
        problems.append("no HEALTHCHECK in the final stage")
    else:
        text = check.args.lower()
        tool = next((t for t in ("curl", "wget") if t in text.split("cmd", 1)[-1]), None)
        if tool:
            problems.append(f"the HEALTHCHECK calls {tool} (line {check.line}), which the slim base image does not "
                            "have: use python3's urllib, which the image has")
        if "/readyz" not in text:
            problems.append(f"the HEALTHCHECK (line {check.line}) does not ask /readyz: a container is healthy when "
                            "it is ready to answer")
    if final.last("STOPSIGNAL") is None:
        problems.append("no STOPSIGNAL: say which signal stops the service cleanly (SIGTERM)")
    if not any(w.split("/")[0] == str(PORT) for item in final.all("EXPOSE") for w in item.words()):
        problems.append(f"no EXPOSE {PORT}: the image should say which port it serves on")
    if problems:
        raise Fail("; ".join(problems))


@CHECKS.add(points=2, hint="secrets come from the environment at run time (-e, a mounted file), never from ENV, ARG "
            "or a URL fetched with ADD", section="8.7 What goes into the build context")
def no_secrets_in_instructions(ctx):
    """No ADD of a URL, and no ENV or ARG that carries a secret (its value stays in the image's history)."""
    cf = parsed(ctx)
    for item in cf.instructions:
        if item.keyword == "ADD" and any(w.startswith(("http://", "https://")) for w in item.words()):
            raise Fail(f"ADD fetches a URL at line {item.line}: nothing checks what it downloads; copy what you "
                       "vetted with COPY")
        if item.keyword in ("ENV", "ARG"):
            for key, value in containerfile.env_pairs(item):
                if containerfile.SECRET_NAME.search(key) and value and not value.startswith("$"):
                    raise Fail(f"{item.keyword} {key} at line {item.line} puts a secret into the image: anyone who "
                               "pulls it reads it with `podman history` or `inspect`")


@CHECKS.add(points=1, hint="COPY requirements.txt and wheels/, RUN pip install, and only then COPY service.py",
            section="8.4 Layers and the build cache")
def cache_friendly_order(ctx):
    """Dependencies are installed before the service's code is copied, so editing service.py reuses the cache."""
    cf = parsed(ctx)
    for stage in cf.stages:
        installs = [i for i in stage.instructions if _installs(i)]
        if not installs:
            continue
        code = [i for i in stage.instructions if _copies_code(i) and i.line < installs[0].line]
        if code:
            raise Fail(f"line {code[0].line} copies the service's code before the install at line "
                       f"{installs[0].line}: every edit of service.py reinstalls every package")
        return
    raise Fail("no stage installs the requirements (RUN ... pip install -r requirements.txt)")


# --- the build context -----------------------------------------------------------------------------------


def ignore_rules(text: str) -> list[tuple[bool, str]]:
    """(negated, pattern) per line of a .dockerignore, comments and blanks dropped, paths normalised."""
    rules = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        negated = line.startswith("!")
        pattern = os.path.normpath(line.lstrip("!").strip()).lstrip("/")
        rules.append((negated, pattern))
    return rules


def ignored(rules: list[tuple[bool, str]], path: str) -> bool:
    """Whether Docker's rules exclude `path` (the last matching rule wins; a match of a parent excludes it)."""
    import fnmatch

    parts = path.strip("/").split("/")
    verdict = False
    for negated, pattern in rules:
        for depth in range(1, len(parts) + 1):
            prefix = "/".join(parts[:depth])
            if fnmatch.fnmatchcase(prefix, pattern) or (pattern.startswith("**/") and
                                                       fnmatch.fnmatchcase(prefix.split("/")[-1], pattern[3:])):
                verdict = not negated
                break
    return verdict


@CHECKS.add(points=2, hint="list .env, .git, registry/, *.ipynb and the scan reports in .dockerignore; keep "
            "service.py, settings.py, requirements.txt and wheels/", section="8.7 What goes into the build context")
def dockerignore(ctx):
    """.dockerignore keeps .env, .git and the registry out of the build context, and lets the build's inputs in."""
    path = ctx.output(IGNORE)
    if not ctx.exists(path):
        raise Fail(f"{path} was not written: without it `COPY . ` sends .env and everything else into the "
                   f"image{ctx.why_missing()}")
    text = ctx.read_text(path)
    if "NotImplementedError" in text:
        raise Fail(f"{IGNORE} still holds the exercise's stub: write it in Exercise 2's %%writefile cell")
    rules = ignore_rules(text)
    problems = [f"{name} is not excluded" for name in (".env", ".git/config", "registry/mlflow.db")
                if not ignored(rules, name)]
    problems += [f"{name} is excluded, but the build needs it" for name in BUILD_INPUTS
                 if ignored(rules, name.rstrip("/") + ("/x.whl" if name.endswith("/") else ""))]
    if problems:
        raise Fail("; ".join(problems))


# --- tools run in a probe over the learner's files --------------------------------------------------------


def scan(ctx, planted: dict | None = None) -> dict:
    """The supply-chain probe: hadolint's findings and a detect-secrets scan with the baseline's own settings."""
    import numpy as np

    inputs = {"output_dir": np.array(ctx.params.get("output_dir", "outputs"))}
    if planted:
        inputs["planted"] = np.array(json.dumps(planted))
    return ctx.probe("supply_chain_probe", inputs, secret=bool(planted))


@CHECKS.add(points=2, hint="run hadolint(Containerfile) in the notebook and fix each error it names",
            section="8.11 Linting the Containerfile")
def hadolint_clean(ctx):
    """hadolint reports no error for the Containerfile (warnings are shown, not counted)."""
    parsed(ctx)
    result = scan(ctx)
    findings = result.get("hadolint")
    if findings is None:
        raise Fail(f"hadolint could not run: {result.get('hadolint_error', 'no result')}")
    errors = [f for f in findings if f.get("level") == "error"]
    if errors:
        shown = "; ".join(f"line {f.get('line')}: {f.get('code')} {f.get('message')}" for f in errors[:5])
        raise Fail(f"hadolint reports {len(errors)} error(s): {shown}")


@CHECKS.add(points=3, hint="scan_secrets(output_dir, exclude_files=...) excluding only .env (and wheels/); mark the "
            "documented example as reviewed (is_secret: False); write the result to .secrets.baseline",
            section="8.8 Secrets: scan, baseline, audit")
def secrets_baseline(ctx):
    """.secrets.baseline is detect-secrets' own, every entry in it is reviewed, .env's token is not in it, and a
    scan of the project with its settings finds nothing outside it."""
    path = ctx.output(BASELINE)
    if not ctx.exists(path):
        raise Fail(f"{path} was not written{ctx.why_missing()}")
    result = scan(ctx)
    if "baseline_error" in result:
        raise Fail(result["baseline_error"])
    problems = []
    if result.get("dotenv_in_baseline"):
        problems.append(".env's token is in the baseline: a baseline lists reviewed false positives; a real "
                        "credential is kept out of the scan (and of git and the image), never accepted")
    unreviewed = [f"{e['filename']}:{e['line_number']} ({e['type']})" for e in result.get("unreviewed", [])]
    if unreviewed:
        problems.append(f"{len(unreviewed)} finding(s) in the baseline were never reviewed (no is_secret: false): "
                        + ", ".join(unreviewed[:5]))
    new = [f"{e['filename']}:{e['line_number']} ({e['type']})" for e in result.get("new", [])]
    if new:
        problems.append(f"a scan with the baseline's settings finds {len(new)} secret(s) it does not list: "
                        + ", ".join(new[:5]))
    if problems:
        raise Fail("; ".join(problems))


@CHECKS.add(points=3, hint="exclude only what must not be scanned (.env, wheels/): a regex like '.*' or a disabled "
            "plugin hides tomorrow's leak too", section="8.8 Secrets: scan, baseline, audit", visible=False)
def secrets_caught(ctx):
    """A secret committed later, in a file the lab did not have, is found by a scan with the baseline's settings."""
    if not ctx.exists(ctx.output(BASELINE)):
        raise Fail(f"{ctx.output(BASELINE)} was not written{ctx.why_missing()}")
    result = scan(ctx, planted=ctx.hidden["planted"])
    if "baseline_error" in result:
        raise Fail(result["baseline_error"])
    if not result.get("planted_found"):
        raise Fail("a key pasted into a new file was not found by a scan with your baseline's settings: its "
                   "exclude pattern or its plugin list is too broad")


def lock_versions() -> dict:
    from mlops_kit.containers import serve_lock

    return {line.split("==")[0]: line.split("==")[1] for line in serve_lock()}


@CHECKS.add(points=2, hint="write_sbom(f'{output_dir}/requirements.txt', f'{output_dir}/sbom.json'): the SBOM of "
            "what the image installs, not of your notebook's environment", section="8.9 A software bill of materials")
def sbom_matches_lock(ctx):
    """sbom.json is a CycloneDX SBOM listing every package of the lock at its version (the direct dependencies
    first among them), and nothing the image does not install."""
    import re

    path = ctx.output(SBOM)
    if not ctx.exists(path):
        raise Fail(f"{path} was not written{ctx.why_missing()}")
    bom = ctx.read_json(path)
    if not isinstance(bom, dict) or bom.get("bomFormat") != "CycloneDX" or not isinstance(bom.get("components"), list):
        raise Fail("sbom.json is not a CycloneDX JSON document (bomFormat 'CycloneDX' with a components list)")
    listed = {}
    for component in bom["components"]:
        if isinstance(component, dict) and isinstance(component.get("name"), str):
            listed[re.sub(r"[-_.]+", "-", component["name"]).lower()] = str(component.get("version") or "")
    lock = lock_versions()
    problems = []
    for name in DIRECT:
        if name not in listed:
            problems.append(f"{name} is missing")
        elif listed[name] != lock[name]:
            problems.append(f"{name} is {listed[name] or 'without a version'}, the lock says {lock[name]}")
    transitive = sorted(name for name in set(lock) - set(listed) - set(DIRECT))
    if transitive:
        problems.append(f"{len(transitive)} package(s) the image installs are not listed ({', '.join(transitive[:5])}): "
                        "an SBOM lists everything in the image, what your dependencies pulled in too")
    wrong = sorted(name for name in set(lock) & set(listed) - set(DIRECT) if listed[name] != lock[name])
    if wrong:
        problems.append(f"{len(wrong)} version(s) differ from the lock ({', '.join(wrong[:5])})")
    extra = sorted(set(listed) - set(lock))
    if extra:
        problems.append(f"{len(extra)} component(s) the image does not install ({', '.join(extra[:5])}): this is the "
                        "SBOM of another environment")
    if problems:
        raise Fail("; ".join(problems[:8]))


@CHECKS.add(points=2, hint="write audit(...)'s answer as it is: offline it says 'unavailable' and why",
            section="8.10 Auditing dependencies")
def audit_honest(ctx):
    """audit.json reports the audit as it went: in the graded run (no network) 'unavailable' with the reason."""
    path = ctx.output(AUDIT)
    if not ctx.exists(path):
        raise Fail(f"{path} was not written{ctx.why_missing()}")
    report = ctx.read_json(path)
    if not isinstance(report, dict) or "status" not in report:
        raise Fail('audit.json has no "status": write the dict audit(...) returns')
    if report.get("status") != "unavailable":
        raise Fail(f"audit.json says status {report.get('status')!r}, but the graded notebook has no network: "
                   "pip-audit cannot have reached its database. A failed audit reported as clean hides every "
                   "vulnerability — report 'unavailable' with the reason")
    if not str(report.get("reason", "")).strip():
        raise Fail("audit.json says 'unavailable' without a reason: keep the tool's error")


# --- live: build, run hardened, talk to it, stop it ---------------------------------------------------------


def engine_missing() -> str:
    from grader import containers

    return containers.unavailable()


def _context(ctx, job: str) -> Path:
    """The build context: output_dir's files (wheels aside), the grader's wheelhouse, and a .env holding a hidden
    token in place of the learner's."""
    from mlops_kit.containers import images_dir

    source = ctx.work / ctx.params.get("output_dir", "outputs")
    root = images_dir() / "contexts"
    root.mkdir(parents=True, exist_ok=True)
    target = Path(tempfile.mkdtemp(prefix=f"{job}-", dir=root))
    total = 0
    for folder, dirs, files in os.walk(source):
        relative = os.path.relpath(folder, source)
        dirs[:] = [d for d in dirs if not os.path.islink(os.path.join(folder, d)) and
                   not (relative == "." and d == "wheels")]
        for name in files:
            path = os.path.join(folder, name)
            if os.path.islink(path) or not os.path.isfile(path):
                continue
            total += os.path.getsize(path)
            if total > MAX_CONTEXT_BYTES:
                raise Fail(f"output_dir holds more than {MAX_CONTEXT_BYTES // 2**20} MB besides wheels/: the build "
                           "context is the project, not your data")
            destination = target / relative / name
            destination.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, destination)
    wheels = target / "wheels"
    wheels.mkdir(exist_ok=True)
    for wheel in (images_dir() / "wheels").glob("*.whl"):
        try:
            os.link(wheel, wheels / wheel.name)
        except OSError:
            shutil.copyfile(wheel, wheels / wheel.name)
    (target / ".env").write_text(f"REGISTRY_TOKEN={ctx.hidden['token']}\n")
    return target


def _solution_file(name: str) -> str:
    return solution_file(LAB, name)


_REFERENCE: dict = {}  # digest -> (image size, builder tag): built once per grader installation and process


def reference_size(ctx) -> int:
    """The reference solution's image size, built here with the same base image (kept tagged: its layers are the
    build cache a learner following the lesson reuses)."""
    from grader import containers
    from mlops_kit.containers import BASE_IMAGE, images_dir

    sources = {name: _solution_file(name) for name in (CONTAINERFILE, IGNORE)}
    digest = hashlib.sha256(json.dumps({**sources, "cache": 2}, sort_keys=True).encode()).hexdigest()[:16]
    if digest in _REFERENCE:
        return _REFERENCE[digest]
    tag = f"localhost/mlops-grade-lab08-reference:{digest}"
    if not containers.image_exists(tag):
        with tempfile.TemporaryDirectory(dir=images_dir()) as tmp:
            context = Path(tmp)
            for name, text in sources.items():
                (context / name).write_text(text)
            service = lab07.reference_source()
            (context / "service.py").write_text(service)
            from mlops_kit.containers import SETTINGS

            (context / "settings.py").write_text(SETTINGS)
            (context / "requirements.txt").write_text("\n".join(f"{k}=={v}" for k, v in lock_versions().items()) + "\n")
            (context / "wheels").mkdir()
            for wheel in (images_dir() / "wheels").glob("*.whl"):
                os.link(wheel, context / "wheels" / wheel.name)
            for target in ("builder", None):  # the builder stage tagged too: its layers stay as the cache
                built = containers.build(context, f"{tag}-builder" if target else tag, "reference", BASE_IMAGE,
                                         BUILD_SECONDS, target=target)
                if not built.ok:
                    raise RuntimeError(f"the reference image does not build: {built.log[-1500:]}")
    size = containers.inspect_image(tag).get("size") or 0
    _REFERENCE[digest] = size
    return size


def live(ctx) -> dict:
    """Build the learner's image, run it hardened, probe it, stop it, look inside it; cached for the lab's checks."""
    why = engine_missing()
    return ctx.once("container", lambda: {"skipped": why} if why else _live(ctx))


def host_requests(cf: containerfile.Containerfile) -> str:
    """Why the grader will not build this file ("" if it will): RUN flags that reach for the host's network,
    privileges or files (a cache mount is fine)."""
    for item in cf.instructions:
        flags = item.flags() if item.keyword == "RUN" else {}
        for name, value in flags.items():
            if name in ("network", "security") or (name == "mount" and "type=cache" not in value):
                return f"RUN --{name}={value} at line {item.line} asks for the host's resources"
    return ""


def _live(ctx) -> dict:
    from grader import containers
    from mlops_kit.containers import BASE_IMAGE

    refused = host_requests(parsed(ctx))
    if refused:
        return {"build": {"ok": False, "seconds": 0, "timed_out": False,
                          "log": f"not built: {refused}; the grader builds with no network and no host access"}}

    if not containers.image_exists(BASE_IMAGE):
        return {"skipped": f"the base image {BASE_IMAGE} is missing: run `make images`"}
    containers.sweep_stale()
    job = f"lab08-{uuid.uuid4().hex[:10]}"
    tag, name = f"localhost/{job}:graded", job
    started = time.monotonic()
    result: dict = {"job": job}
    wall = BUILD_SECONDS + 150.0
    cut = False
    if ctx.budget is not None:
        from grader.budget import BudgetSpent

        try:
            wall, cut = ctx.budget.allow("container", wall)
        except BudgetSpent as spent:
            return {"skipped": str(spent)}
    context = None
    steps = result["steps"] = {}

    def step(name: str, since: float) -> float:
        now = time.monotonic()
        steps[name] = round(now - since, 1)
        return now

    try:
        mark = time.monotonic()
        context = _context(ctx, job)
        built = containers.build(context, tag, job, BASE_IMAGE, min(BUILD_SECONDS, wall))
        mark = step("build", mark)
        result["build"] = {"ok": built.ok, "seconds": built.seconds, "log": built.log, "timed_out": built.timed_out}
        if not built.ok:
            return result
        result["image"] = containers.inspect_image(tag)
        registry = lab07.graded_registry() / "registry"
        # no REGISTRY_DIR: the image must default to /registry, where deployments mount the registry
        ok, error = containers.run(tag, name, job, registry, {"MLOPS_LOAD_DELAY_SECONDS": "2"})
        if not ok:
            result["run"] = {"started": False, "error": error}
            return result
        row = lab07.example_row()
        plan = {"port": PORT, "health": "/readyz", "ready_seconds": 60, "requests": _requests(row)}
        seen = containers.client(name, plan, timeout=120)
        state = containers.state(name)
        result["run"] = {"started": True, **seen, "uid": containers.uid_of(state.get("pid") or 0), "state": state}
        mark = step("run", mark)
        if seen.get("ready"):
            result["health"] = containers.healthcheck(name)
        result["stop"] = containers.stop(name, STOP_GRACE)
        result["logs"] = containers.logs(name)
        mark = step("health and stop", mark)
        needles = [ctx.hidden["token"].encode()]
        inside = containers.look_inside(tag, needles)
        result["secret_in_files"], result["bulk"] = inside["found"], inside["bulk"]
        image = result["image"]
        result["secret_in_config"] = [line[:120] for line in image.get("env", []) + image.get("history", [])
                                      if ctx.hidden["token"] in line]
        mark = step("look inside", mark)
        result["reference_size"] = reference_size(ctx)
        step("reference", mark)
    finally:
        containers.cleanup(job)
        if context is not None:
            shutil.rmtree(context, ignore_errors=True)
        if ctx.budget is not None:
            seconds = time.monotonic() - started
            ctx.budget.record("container", seconds, seconds >= wall, cut)
    return result


def _requests(row: dict) -> list[dict]:
    requests = [{"name": "predict", "method": "POST", "path": "/predict", "json": {"features": row}, "timeout": 30},
                {"name": "batch", "method": "POST", "path": "/predict_batch", "json": {"rows": [row] * 8}},
                {"name": "metadata", "method": "POST", "path": "/metadata", "json": {}}]
    for kind, _, path, body, _ in lab07.bad_inputs(row):
        requests.append({"name": f"bad_{kind}", "method": "POST", "path": path, "json": body})
    return requests


def _built(ctx) -> dict:
    parsed(ctx)  # a Containerfile that is missing or unreadable is not built
    result = live(ctx)
    if "skipped" in result:
        raise Fail(f"skipped: {result['skipped']}")
    return result


def _running(ctx) -> dict:
    result = _built(ctx)
    run = result.get("run") or {}
    if not run.get("ready"):
        raise Fail("skipped: the container never became ready")
    return result


def _log_tail(result: dict, lines: int = 6) -> str:
    return log_tail(result.get("logs", ""), lines, width=200)


@CHECKS.add(points=3, hint="build it yourself: build_image(output_dir, 'lab08:dev') and read the log; the grader "
            "builds with --network none and --build-arg BASE_IMAGE=localhost/mlops-python:3.11",
            section="8.3 A multi-stage Containerfile")
def image_builds(ctx):
    """The image builds with podman, offline, from the course's base image passed as BASE_IMAGE."""
    result = _built(ctx)
    build = result.get("build") or {}
    if build.get("ok"):
        return
    if build.get("timed_out"):
        raise Fail(f"the build did not finish within {BUILD_SECONDS} s")
    log = build.get("log", "")
    cause = ""
    if "image not known" in log or "pull" in log.lower() and "never" in log.lower():
        cause = " A stage starts from an image that is not here and cannot be pulled: start every stage from ${BASE_IMAGE}."
    elif "Could not find a version" in log or "No matching distribution" in log:
        cause = " pip looked for a package the wheelhouse does not have: install with --no-index --find-links from wheels/."
    elif "no such file or directory" in log.lower() or "checking context" in log.lower():
        cause = " A COPY source is not in the build context: is it excluded by .dockerignore?"
    tail = log_tail(log, 6, width=200)
    raise Fail(f"the build failed.{cause} Its log ends: {tail}")


@CHECKS.add(points=3, hint="run it yourself with run_hardened(...): with a read-only root the service may write "
            "only under /tmp (BENTOML_HOME=/tmp/bentoml)", section="8.5 Running hardened", depends=("image_builds",))
def runs_hardened(ctx):
    """The container starts read-only, without capabilities or network, and /readyz answers 200 within 60 s."""
    result = _built(ctx)
    run = result.get("run") or {}
    if not run.get("started"):
        raise Fail(f"podman could not start the container: {run.get('error', '')[-500:]}")
    if run.get("ready"):
        return
    log = str(result.get("logs", ""))
    cause = ""
    if "Read-only file system" in log:
        cause = " It tried to write outside /tmp on the read-only root: point BENTOML_HOME (and anything else) at /tmp."
    elif "Permission denied" in log:
        cause = " The non-root user cannot read or write something it needs: check the owner of what you COPY."
    elif "no registry at" in log:
        cause = " The service found no registry: the image must set REGISTRY_DIR=/registry, where it is mounted."
    elif "No module named" in log or "not found" in log:
        cause = " A module or command is missing from the final image: does it copy the builder's environment " \
                "and put /opt/venv/bin on PATH?"
    raise Fail(f"the container did not become ready: {run.get('startup')}.{cause} Its log ends: {_log_tail(result)}")


@CHECKS.add(points=3, hint="CMD serves service:CancerClassifier on 0.0.0.0:3000 from the folder holding service.py "
            "and settings.py", section="8.5 Running hardened", depends=("runs_hardened",))
def contract_in_container(ctx):
    """In the container, the week-7 contract holds: predictions, batches, metadata of the mounted registry's
    champion, and a 4xx for each kind of bad input."""
    result = _running(ctx)
    responses = result["run"].get("responses", {})
    problems = []
    predict = responses.get("predict") or {}
    if predict.get("status") != 200 or not isinstance((predict.get("json") or {}).get("probability"), (int, float)):
        problems.append(f"/predict answered {lab07._said(predict)}")
    batch = responses.get("batch") or {}
    if batch.get("status") != 200 or len((batch.get("json") or {}).get("probabilities") or []) != 8:
        problems.append(f"/predict_batch with 8 rows answered {lab07._said(batch)}")
    metadata = (responses.get("metadata") or {}).get("json") or {}
    expected = str(lab07.graded_champion())
    if str(metadata.get("model_version")) != expected:
        problems.append(f"/metadata names version {metadata.get('model_version')!r}, the mounted registry's champion "
                        f"is {expected!r}: read the registry from REGISTRY_DIR (/registry), not a copy in the image")
    accepted = [kind for kind, *_ in lab07.bad_inputs(lab07.example_row())
                if not 400 <= int((responses.get(f"bad_{kind}") or {}).get("status") or 0) < 500]
    if accepted:
        problems.append(f"bad input not refused with a 4xx: {', '.join(accepted)}")
    if problems:
        raise Fail("; ".join(problems))


@CHECKS.add(points=2, hint="USER 1000 (or a named user created in the final stage) before CMD",
            section="8.5 Running hardened", depends=("runs_hardened",))
def runs_as_non_root(ctx):
    """The container's main process runs as a non-root uid (the image's USER, not one the grader imposed)."""
    uid = _running(ctx)["run"].get("uid")
    if uid is None:
        raise Fail("the container's main process could not be inspected")
    if uid == 0:
        raise Fail("the service runs as uid 0 (root) in the container")


@CHECKS.add(points=2, hint="the HEALTHCHECK command must exist in the image (python3 does, curl does not) and exit "
            "0 once /readyz answers", section="8.6 Health and shutdown", depends=("runs_hardened",))
def healthcheck_works(ctx):
    """Once the service is ready, the image's HEALTHCHECK reports healthy (podman healthcheck run)."""
    result = _running(ctx)
    if not (result.get("image") or {}).get("healthcheck"):
        raise Fail("the image has no HEALTHCHECK (podman keeps it only in docker format; the grader builds so)")
    status, output = result.get("health") or (1, "not run")
    if status != 0:
        test = " ".join(str(part) for part in ((result.get("image") or {}).get("healthcheck") or {}).get("Test") or [])
        tool = next((t for t in ("curl", "wget") if t in test), None)
        cause = f": it runs {tool}, which is not in the image" if tool else f": {output[-300:]}"
        raise Fail(f"the HEALTHCHECK failed on a ready service (exit {status}){cause}")


@CHECKS.add(points=2, hint="STOPSIGNAL SIGTERM and a CMD in exec (JSON) form, so the signal reaches the server "
            "and not a shell", section="8.6 Health and shutdown", depends=("runs_hardened",))
def stops_cleanly(ctx):
    """`podman stop` ends the container with its STOPSIGNAL within 10 s, without SIGKILL."""
    stop = _running(ctx).get("stop") or {}
    if stop.get("killed"):
        raise Fail(f"the container was still running {STOP_GRACE} s after its stop signal and was killed (exit "
                   f"{stop.get('exit_code')}): the signal does not reach the server (a shell-form CMD runs it under "
                   "/bin/sh, which ignores SIGTERM) or the server ignores it")


@CHECKS.add(points=2, hint="multi-stage, --no-cache-dir, no wheelhouse or build tools in the final stage",
            section="8.3 A multi-stage Containerfile", depends=("image_builds",))
def image_size(ctx):
    """The image is at most 10 % larger than the reference image built here from the same base."""
    result = _built(ctx)
    size, reference = (result.get("image") or {}).get("size") or 0, result.get("reference_size") or 0
    if not reference:
        raise Fail("skipped: the reference image could not be measured")
    ctx.figure("image_mb", size / 2**20, "image size, measured by podman", "MB")
    ctx.figure("image_vs_reference", size / reference, "size over the reference image's", "x")
    if size > SIZE_RATIO * reference:
        bulk = sorted((result.get("bulk") or {}).items(), key=lambda item: -item[1])
        seen = "; in it: " + ", ".join(f"{where} ({size_ / 2**20:.0f} MB)" for where, size_ in bulk[:3]) if bulk \
            else ": something the service does not need is in its layers (the wheelhouse, pip's cache, build tools)"
        raise Fail(f"the image is {size / 2**20:.0f} MB, {size / reference:.2f}x the reference's "
                   f"{reference / 2**20:.0f} MB (at most {SIZE_RATIO:.2f}x){seen}")


@CHECKS.add(points=2, hint="COPY only what the service needs, and list .env in .dockerignore",
            section="8.7 What goes into the build context", depends=("image_builds",))
def no_secret_in_image(ctx):
    """The build context's .env (the grader put a token of its own in it) reaches no layer, ENV or history entry."""
    result = _built(ctx)
    files, config = result.get("secret_in_files") or [], result.get("secret_in_config") or []
    if files:
        raise Fail(f"the token in the build context's .env is inside the image's layers, in {', '.join(files[:3])}: "
                   "anyone who pulls the image can read it (a later `RUN rm` hides a file; its layer still ships it)")
    if config:
        raise Fail("the token in .env is in the image's configuration or history")

