"""Lab 04 — a reproducible DVC pipeline with validation: judged on the project, then on a clean copy of it.

The checks read the learner's project files (YAML parsed safely within size, depth and alias limits by
grader.bounded, Git objects inflated, files hashed, never executed) in the grader's process: each stage of
dvc.yaml is judged on its own, against the lab's table. Everything that runs DVC or the learner's stage
commands runs in the `dvc_probe` sandbox, on a copy, with the stages one sandbox further in: pull from the
learner's remote, `dvc repro` from scratch, again with nothing changed, then with one parameter changed. The
hidden check runs a *separate* probe that swaps the grader's corrupted CSV in for the raw data; no visible
check sees that run.
"""

from __future__ import annotations

import hashlib
import io
import os
import re
import shlex
import zlib
from pathlib import Path
from types import SimpleNamespace

from grader import collect
from grader.checks.common import Checks, Fail, Partial, require_keys, require_number
from grader.labs import Lab
from grader.launch import GraderTimeout, starved
from grader.sandbox import Limits
from grader.secret import seed_for

LAB = Lab(
    id="04_data_pipeline",
    title="A reproducible data pipeline with validation and DVC",
    week=4,
    minutes=60,
    objectives=(
        "version a raw dataset with DVC and push it to a remote that restores it",
        "declare a validate → featurize → train → evaluate pipeline in dvc.yaml, with its settings in params.yaml",
        "put data validation first, so that broken data stops the pipeline with a clear message",
        "reproduce the pipeline byte for byte, rerunning only the stages a change affects",
    ),
    lesson="curriculum/04_data_pipeline.ipynb",
    seed=23,
    timeout=240,
    cell_timeout=120,
)

PUBLIC_ROWS = 500  # the grader's raw CSV: a seeded sample, so a CSV written some other way shows
STAGES = ("validate", "featurize", "train", "evaluate")
RAW = "data/raw.csv"
METRICS = "metrics.json"
RUNNER = "python -m mlops_kit.pipeline"
CHANGED_PARAM, CHANGED_VALUE = "featurize.test_size", "0.3"
DOWNSTREAM = ("featurize", "train", "evaluate")  # what changing CHANGED_PARAM must rerun
PARAMS = {"featurize.test_size": 0.25, "featurize.log_features": ["mean_area", "worst_area"],  # exercise 3
          "train.model": "logreg", "evaluate.threshold": 0.5}
TABLE = {  # exercise 4: each stage's command arguments, the files and parameters it reads, what it writes
    "validate": dict(args=("validate", "data/raw.csv", "data/validated.csv"), deps=("data/raw.csv",), params=(),
                     outs=("data/validated.csv",), metrics=()),
    "featurize": dict(args=("featurize", "data/validated.csv", "data/train.csv", "data/test.csv"),
                      deps=("data/validated.csv",), params=("seed", "featurize.test_size", "featurize.log_features"),
                      outs=("data/train.csv", "data/test.csv"), metrics=()),
    "train": dict(args=("train", "data/train.csv", "models/model.skops"), deps=("data/train.csv",),
                  params=("seed", "train.model"), outs=("models/model.skops",), metrics=()),
    "evaluate": dict(args=("evaluate", "models/model.skops", "data/test.csv", METRICS),
                     deps=("models/model.skops", "data/test.csv"), params=("evaluate.threshold",), outs=(),
                     metrics=(METRICS,)),
}
# The probes' deadlines: the reference needs ~35 s (visible: pull, 4 + 3 stages) and ~4 s (hidden) on an idle
# 2-core machine; a stop on a machine too busy to give them their CPU is a GraderTimeout (regrade), not a failure.
VISIBLE_SECONDS, CORRUPTED_SECONDS = 300, 120
CHECKS = Checks()


def prepare(work: Path) -> tuple[dict, dict]:
    """Write the raw CSV into the job's work dir; keep a corrupted version of it (and what is wrong) here."""
    import numpy as np

    from grader.datasets import breast_cancer_frame

    frame = breast_cancer_frame()
    public = frame.sample(n=PUBLIC_ROWS, random_state=LAB.seed).reset_index(drop=True)
    (work / "data").mkdir(parents=True, exist_ok=True)
    data_path = "data/breast_cancer_04.csv"
    public.to_csv(work / data_path, index=False)
    # what is broken, and where, follows from the installation's secret (grader/secret.py), not from a public seed
    rng = np.random.default_rng(seed_for(LAB.id, "corrupted-csv"))
    features = [c for c in public.columns if c != "target"]
    missing, nulls, out_of_range = rng.choice(features, size=3, replace=False)
    corrupted = public.drop(columns=[missing])
    corrupted.loc[rng.choice(len(corrupted), size=3, replace=False), nulls] = np.nan
    corrupted.loc[rng.choice(len(corrupted), size=2, replace=False), out_of_range] = -1.0
    buffer = io.StringIO()
    corrupted.to_csv(buffer, index=False)
    params = {"seed": LAB.seed, "data_path": data_path, "output_dir": "outputs/pipeline"}
    hidden = {"raw_md5": hashlib.md5((work / data_path).read_bytes()).hexdigest(), "corrupted_csv": buffer.getvalue(),
              "broken_columns": {"missing": str(missing), "nulls": str(nulls), "out of range": str(out_of_range)}}
    return params, hidden


# --- reading the project (never executing it) ------------------------------------------------------


def _project(ctx, name: str = "") -> str:
    return ctx.output(f"project/{name}" if name else "project").rstrip("/")


def _bytes(ctx, relative: str, max_bytes: int = 50 * 2**20) -> bytes:
    try:
        return collect.safe_open_bytes(ctx.work, relative, max_bytes)
    except collect.CollectError as err:
        raise Fail(f"{err}{ctx.why_missing()}") from None


def _md5(ctx, relative: str) -> str:
    return hashlib.md5(_bytes(ctx, relative)).hexdigest()


def _yaml(ctx, name: str) -> object:
    """A project YAML file, parsed with limits (size, depth, aliases counted as expanded: bounded.load_yaml)."""
    from grader import bounded

    text = ctx.read_text(_project(ctx, name))
    try:
        return bounded.load_yaml(text, name=_project(ctx, name))
    except bounded.BoundedError as err:
        raise Fail(str(err)) from None


def _stages(ctx) -> dict:
    spec = _yaml(ctx, "dvc.yaml")
    if not isinstance(spec, dict) or not isinstance(spec.get("stages"), dict):
        raise Fail(f"{_project(ctx, 'dvc.yaml')} must hold a mapping `stages:` of stage names to stages")
    return spec["stages"]


def _paths(entries) -> list[str]:
    """The paths in a deps/outs/metrics list (strings, or one-key mappings with options)."""
    paths = []
    for entry in entries if isinstance(entries, list) else [entries] if entries else []:
        if isinstance(entry, str):
            paths.append(os.path.normpath(entry))
        elif isinstance(entry, dict):
            paths.extend(os.path.normpath(k) for k in entry if isinstance(k, str))
    return paths


def _params(stage: dict) -> tuple[list[str], list[str]]:
    """(the params.yaml keys a stage declares, what else it declares: other files, or all of params.yaml)."""
    keys, other = [], []
    entries = stage.get("params") or []
    for entry in entries if isinstance(entries, list) else [entries]:
        if isinstance(entry, str):
            keys.append(entry)
        elif isinstance(entry, dict):
            for file, listed in entry.items():
                if os.path.normpath(str(file)) != "params.yaml":
                    other.append(f"the parameters of {file}")
                elif isinstance(listed, list) and listed:
                    keys.extend(str(k) for k in listed)
                else:
                    other.append("every parameter of params.yaml")
    return keys, other


def _lookup(params: object, key: str):
    for part in key.split("."):
        if not isinstance(params, dict) or part not in params:
            raise KeyError(key)
        params = params[part]
    return params


def _expected_raw_md5(ctx) -> str:
    if "raw_md5" in ctx.hidden:
        return ctx.hidden["raw_md5"]
    return _md5(ctx, ctx.params["data_path"])


def _versioned_md5(ctx) -> str:
    """The md5 that data/raw.csv.dvc records (whatever data the learner versioned)."""
    spec = _yaml(ctx, f"{RAW}.dvc")
    outs = spec.get("outs") if isinstance(spec, dict) else None
    if not isinstance(outs, list) or not outs or not isinstance(outs[0], dict) or not isinstance(outs[0].get("md5"), str):
        raise Fail(f"{_project(ctx, RAW + '.dvc')} records no md5: make it with `dvc add {RAW}` in the project")
    return outs[0]["md5"]


def _lock(ctx) -> dict:
    lock = _yaml(ctx, "dvc.lock")
    if not isinstance(lock, dict) or not isinstance(lock.get("stages"), dict):
        raise Fail(f"{_project(ctx, 'dvc.lock')} holds no `stages:`: run `dvc repro` in the project")
    return lock["stages"]


def _lock_outs(stages: dict) -> dict:
    return {name: {os.path.normpath(str(o.get("path"))): o.get("md5") for o in (spec or {}).get("outs") or []
                   if isinstance(o, dict)}
            for name, spec in stages.items() if isinstance(spec, dict)}


def _uncached(ctx) -> set[str]:
    """The outputs dvc.yaml declares with `cache: false` (Git keeps them; they are never pushed)."""
    try:
        stages = _stages(ctx)
    except Fail:
        return set()
    found = set()
    for stage in stages.values():
        for kind in ("outs", "metrics", "plots"):
            entries = stage.get(kind) if isinstance(stage, dict) else None
            for entry in entries if isinstance(entries, list) else []:
                if isinstance(entry, dict):
                    found |= {os.path.normpath(str(k)) for k, v in entry.items()
                              if isinstance(v, dict) and v.get("cache") is False}
    return found


def _remotes(ctx, name: str = ".dvc/config") -> tuple[dict, str | None]:
    """({remote name: url}, the default remote's name) in the project's DVC config file `name`."""
    text = ctx.read_text(_project(ctx, name))
    remotes, default, section = {}, None, ""
    for line in text.splitlines():
        stripped = line.strip()
        if stripped.startswith("["):
            match = re.match(r"""^\[\s*'?remote\s+"([^"]+)"'?\s*\]$""", stripped)
            section = f"remote:{match.group(1)}" if match else stripped
            continue
        key, _, value = stripped.partition("=")
        if section == "[core]" and key.strip() == "remote":
            default = value.strip()
        elif section.startswith("remote:") and key.strip() == "url":
            remotes[section[7:]] = value.strip()
    return remotes, default


def _remote_dir(ctx) -> str:
    """The work-relative directory of the project's default DVC remote (any remote, wherever it points)."""
    remotes, default = _remotes(ctx)
    name = default if default in remotes else next(iter(remotes), None)
    if name is None:
        raise Fail(f"{_project(ctx, '.dvc/config')} names no remote: `dvc remote add -d storage ../remote` "
                   "in the project (exercise 2)")
    url = remotes[name]
    if os.path.isabs(url):
        marker = f"/{ctx.output('').strip('/')}/"
        at = url.find(marker)
        if at < 0:
            raise Fail(f"the remote {name!r} points to {url}, outside your output_dir: use the relative path ../remote")
        return os.path.normpath(ctx.output(url[at + len(marker):]))
    return os.path.normpath(os.path.join(_project(ctx, ".dvc"), url))


def _remote_holds(ctx, remote: str, digest: str) -> bool:
    return ctx.exists(f"{remote}/files/md5/{digest[:2]}/{digest[2:]}")


# --- Git, read from its objects (never by running git on the learner's repository) ------------------


def _git_bytes(ctx, relative: str, max_bytes: int = 8 * 2**20) -> bytes | None:
    try:
        return collect.safe_open_bytes(ctx.work, _project(ctx, f".git/{relative}"), max_bytes)
    except collect.CollectError:
        return None


def _git_object(ctx, sha: str, limit: int = 64 * 2**20) -> tuple[str, bytes]:
    raw = _git_bytes(ctx, f"objects/{sha[:2]}/{sha[2:]}") if re.fullmatch(r"[0-9a-f]{40}", sha) else None
    if raw is None:
        raise Fail(f"the grader could not read Git object {sha[:12]} of the project (a packed repository? "
                   "run no `git gc` in it)")
    try:
        data = zlib.decompressobj().decompress(raw, limit)
    except zlib.error:
        raise Fail(f"Git object {sha[:12]} of the project is corrupt") from None
    header, _, body = data.partition(b"\0")
    return header.split(b" ")[0].decode("ascii", "replace"), body


def _git_head(ctx) -> str | None:
    """The sha of the project's HEAD commit, or None when it has none."""
    head = (_git_bytes(ctx, "HEAD", 4096) or b"").decode("utf-8", "replace").strip()
    if not head.startswith("ref: "):
        return head if re.fullmatch(r"[0-9a-f]{40}", head) else None
    ref = head[5:].strip()
    loose = _git_bytes(ctx, ref, 4096) if re.fullmatch(r"refs/[\w./-]+", ref) and ".." not in ref else None
    if loose is not None:
        return loose.decode("utf-8", "replace").strip() or None
    for line in (_git_bytes(ctx, "packed-refs", 2**20) or b"").decode("utf-8", "replace").splitlines():
        sha, _, name = line.partition(" ")
        if name.strip() == ref:
            return sha
    return None


def _git_files(ctx, tree: str, prefix: str = "", budget: list | None = None) -> dict[str, str]:
    """{path: blob sha} of every file in Git tree `tree` (at most 10,000 objects read)."""
    budget = [10_000] if budget is None else budget
    kind, body = _git_object(ctx, tree)
    files = {}
    while body and budget[0] > 0:
        budget[0] -= 1
        mode, _, body = body.partition(b" ")
        name, _, body = body.partition(b"\0")
        sha, body = body[:20].hex(), body[20:]
        path = prefix + name.decode("utf-8", "replace")
        if mode == b"40000":
            files.update(_git_files(ctx, sha, path + "/", budget))
        else:
            files[path] = sha
    return files


def _git_user(ctx) -> set[str]:
    """Which of user.name and user.email the project's .git/config sets."""
    found, section = set(), ""
    for line in (_git_bytes(ctx, "config", 2**20) or b"").decode("utf-8", "replace").splitlines():
        stripped = line.strip()
        if stripped.startswith("["):
            section = stripped.strip("[]").strip().lower()
            continue
        key, _, value = stripped.partition("=")
        if section == "user" and key.strip().lower() in ("name", "email") and value.strip():
            found.add(f"user.{key.strip().lower()}")
    return found


# --- running it: the probes ---------------------------------------------------------------------------


def _visible(ctx) -> dict:
    """Pull, repro from scratch, repro again, one parameter changed: no hidden input goes in."""
    return ctx.probe("dvc_probe", {}, limits=Limits(wall_seconds=VISIBLE_SECONDS + 90),
                     needs=(_project(ctx, "dvc.yaml"),),
                     args=("--project", _project(ctx), "--mode", "visible",
                           "--output-dir", ctx.params.get("output_dir", ""), "--param", CHANGED_PARAM,
                           "--value", CHANGED_VALUE, "--seconds", str(VISIBLE_SECONDS)))


def _stopped(result: dict, what: str) -> None:
    """Raise for a probe whose inner process was stopped at its deadline: the machine's fault, or the stages'."""
    stopped = (result.get("inner") or {}).get("stopped")
    if not stopped:
        error = (result.get("inner") or {}).get("error")
        raise Fail(f"the grader could not run {what} in a clean copy of your project"
                   + (f": {error}" if error else ""))
    cpu, load, seconds = stopped.get("cpu"), float(stopped.get("load") or 0), float(stopped.get("seconds") or 0)
    if starved(SimpleNamespace(cpu_seconds=cpu or 0.0, load=load), seconds):
        raise GraderTimeout(f"the grader's DVC steps ({what}) ran out of their {seconds:.0f} s while the machine was "
                            f"busy (they got {cpu or 0:.1f} s of CPU; load {load:.1f})")
    raise Fail(f"{what} in a clean copy was stopped after {seconds:.0f} s, the grader's limit (it used "
               f"{cpu or 0:.1f} s of CPU; the reference needs under a minute): does a stage loop or wait forever?")


def _tail(text: object, lines: int = 6) -> str:
    kept = [l for l in str(text or "").strip().splitlines() if l.strip()][-lines:]
    return " | ".join(kept)[-600:]


def _stage_problems(stage: object, name: str) -> list[str]:
    """What stage `name` of dvc.yaml gets wrong against exercise 4's table (every problem, not the first)."""
    want = TABLE[name]
    if stage is None:
        return [f"dvc.yaml declares no stage named {name!r}"]
    if not isinstance(stage, dict):
        return [f"stage {name!r} must be a mapping with cmd, deps and outs, found {type(stage).__name__}"]
    problems = []
    expected = f"{RUNNER} {' '.join(want['args'])}"
    cmd = stage.get("cmd")
    cmd = cmd[0] if isinstance(cmd, list) and len(cmd) == 1 else cmd
    try:
        tokens = shlex.split(cmd) if isinstance(cmd, str) else []
    except ValueError:
        tokens = []
    args = tokens[3:-2] if tokens[-2:] == ["--params", "params.yaml"] else tokens[3:]
    if not (tokens and re.fullmatch(r"(\S*/)?python(3(\.\d+)?)?", tokens[0]) and tokens[1:3] == ["-m", "mlops_kit.pipeline"]
            and args[:1] == [name] and [os.path.normpath(a) for a in args[1:]] == list(want["args"][1:])):
        problems.append(f"its cmd must be `{expected}`, found {'`' + cmd + '`' if isinstance(cmd, str) else repr(cmd)}")
    deps = _paths(stage.get("deps"))
    if "params.yaml" in deps:
        problems.append("it lists params.yaml under deps: then every change to any parameter reruns it; list the "
                        "keys it reads under `params:` instead")
    missing = [d for d in want["deps"] if d not in deps]
    if missing:
        problems.append(f"it reads {', '.join(missing)} but does not list {'it' if len(missing) == 1 else 'them'} under "
                        "deps: a change there would not rerun it")
    extra = [d for d in deps if d not in want["deps"] and d != "params.yaml"]
    if RAW in extra:
        problems.append(f"it lists {RAW} under deps: only validate may read the raw data, so that unvalidated data "
                        "never reaches the later stages")
    extra = [d for d in extra if d != RAW]
    if extra:
        problems.append(f"it lists {', '.join(extra)} under deps, which `{RUNNER} {name}` does not read: a change "
                        "there would rerun it for nothing")
    keys, other = _params(stage)
    unread = [k for k in keys if not any(r == k or r.startswith(f"{k}.") for r in want["params"])] + other
    undeclared = [r for r in want["params"] if not any(r == k or r.startswith(f"{k}.") for k in keys)]
    if undeclared:
        problems.append(f"it reads the parameter(s) {', '.join(undeclared)} but does not declare them under params: "
                        "changing them would not rerun it")
    if unread:
        problems.append(f"it declares {', '.join(unread)} under params, which `{RUNNER} {name}` does not read: "
                        f"changing {'it' if len(unread) == 1 else 'them'} would rerun it for nothing")
    outs, metrics = _paths(stage.get("outs")), _paths(stage.get("metrics"))
    missing = [o for o in want["outs"] if o not in outs]
    if missing:
        problems.append(f"it writes {', '.join(missing)} but does not declare {'it' if len(missing) == 1 else 'them'} "
                        "under outs: DVC would neither cache nor restore it, nor know which stage makes it")
    for path in want["metrics"]:
        if path in outs:
            problems.append(f"declare {path} under `metrics:` (with cache: false), not under outs")
        elif path not in metrics:
            problems.append(f"it writes {path} but does not declare it under `metrics:` (with cache: false)")
        elif not any(isinstance(e, dict) and isinstance(e.get(path), dict) and e[path].get("cache") is False
                     for e in stage.get("metrics") or [] if isinstance(e, dict)):
            problems.append(f"declare {path} with `cache: false`, so that Git keeps it and a clone shows the metrics")
    extra = [o for o in outs + metrics + _paths(stage.get("plots")) if o not in want["outs"] + want["metrics"]]
    if extra:
        problems.append(f"it declares {', '.join(extra)} as output(s), which `{RUNNER} {name}` does not write")
    return problems


# --- checks -----------------------------------------------------------------------------------------


@CHECKS.add(points=2, hint="git init, dvc init, then copy data_path to data/raw.csv and `dvc add data/raw.csv`.",
            section="4.7 DVC: version the data, declare the stages, reproduce")
def data_versioned(ctx):
    """The project is a DVC project and data/raw.csv.dvc versions the exact CSV given at data_path."""
    if not ctx.exists(_project(ctx, ".dvc/config")):
        raise Fail(f"{_project(ctx, '.dvc/config')} was not found: run `dvc init` in {_project(ctx)} "
                   f"(exercise 1){ctx.why_missing()}")
    versioned = _versioned_md5(ctx)
    expected = _expected_raw_md5(ctx)
    if versioned != expected:
        raise Fail(f"{RAW}.dvc records md5 {versioned}, but the CSV at data_path ({ctx.params['data_path']}) "
                   f"has md5 {expected}: copy data_path itself (the grader gives you its own CSV), then `dvc add`")
    if _md5(ctx, _project(ctx, RAW)) != expected:
        raise Fail(f"{_project(ctx, RAW)} differs from what {RAW}.dvc records: the workspace copy was changed "
                   "after `dvc add`")


@CHECKS.add(points=1, hint="`dvc remote add -d storage ../remote` in the project: -d makes it the default, and the "
            "path is relative.", section="4.7 The remote restores the data")
def remote_configured(ctx):
    """.dvc/config makes output_dir/remote the project's default remote, given as the relative path ../remote."""
    remotes, default = _remotes(ctx)
    local = _remotes(ctx, ".dvc/config.local")[0] if ctx.exists(_project(ctx, ".dvc/config.local")) else {}
    if not remotes:
        raise Fail(f"{_project(ctx, '.dvc/config')} names no remote" + (
            " (.dvc/config.local does, but Git ignores that file: a clone of the project would have no remote); "
            if local else ": ") + "`dvc remote add -d storage ../remote` in the project (exercise 2)")
    problems = []
    if default not in remotes:
        problems.append(f"no default remote ({'core.remote names ' + repr(default) if default else 'no core.remote'}"
                        f"): add it with `dvc remote add -d`, so that `dvc push` and `dvc pull` need no -r")
    name = default if default in remotes else next(iter(remotes))
    url = remotes[name]
    if os.path.isabs(url) or "://" in url:
        problems.append(f"remote {name!r} is the absolute location {url}: a copy of the project on another machine "
                        "would look for it there; give DVC the relative path ../remote")
    else:
        where = os.path.normpath(os.path.join(_project(ctx, ".dvc"), url))
        if where != os.path.normpath(ctx.output("remote")):
            problems.append(f"remote {name!r} resolves to {where}, not {ctx.output('remote')} (`remote` in the notebook)"
                            f": DVC stores a relative URL relative to .dvc/, so give `../remote` on the command line")
    if problems:
        raise Fail(f"{_project(ctx, '.dvc/config')}: " + "; ".join(problems))


@CHECKS.add(points=2, hint="Push after `dvc add` (`dvc push` in the project), to a remote the project names.",
            section="4.7 The remote restores the data")
def pull_restores(ctx):
    """Your remote holds the raw data, and `dvc pull` in a clean copy restores data/raw.csv from it, byte for byte."""
    digest = _versioned_md5(ctx)
    remote = _remote_dir(ctx)
    if not _remote_holds(ctx, remote, digest):
        raise Fail(f"the remote {remote} does not hold the raw data (expected {remote}/files/md5/{digest[:2]}/"
                   f"{digest[2:]}): run `dvc push` in the project after `dvc add`")
    pull = _visible(ctx).get("pull", {})
    if pull.get("problem"):
        raise Fail(pull["problem"])
    if "rc" not in pull:
        _stopped(_visible(ctx), "`dvc pull`")
    restored = pull.get("restored") or {}
    if pull.get("rc") != 0 or not restored or not all(restored.values()):
        raise Fail(f"`dvc pull` in a clean copy did not restore {', '.join(k for k, v in restored.items() if not v) or RAW}"
                   f" (exit status {pull.get('rc')}): {_tail(pull.get('output'))}")


@CHECKS.add(points=1, hint="seed: the notebook's seed variable; featurize/train/evaluate exactly as listed in exercise 3.",
            section="4.6 A stage runner: one command per stage, settings from params.yaml")
def params_written(ctx):
    """params.yaml holds the notebook's seed and exactly the featurize, train and evaluate settings of exercise 3."""
    params = _yaml(ctx, "params.yaml")
    if not isinstance(params, dict):
        raise Fail(f"params.yaml must hold a mapping of settings, found {type(params).__name__}")
    problems = []
    if "seed" not in params:
        problems.append("it has no seed")
    elif params["seed"] != ctx.params["seed"] or isinstance(params["seed"], bool):
        problems.append(f"seed is {params['seed']!r}, but the notebook ran with seed={ctx.params['seed']}: write the "
                        "`seed` variable, not a number")
    for key, value in PARAMS.items():
        try:
            found = _lookup(params, key)
        except KeyError:
            problems.append(f"it has no {key} (exercise 3 asks for {value!r})")
            continue
        if found != value or isinstance(found, bool):
            problems.append(f"{key} is {found!r}; exercise 3 asks for {value!r}")
    if problems:
        raise Fail("params.yaml: " + "; ".join(problems))


@CHECKS.add(points=1, hint="Four stages named validate, featurize, train, evaluate, in this order, and no other.",
            section="4.7 DVC: version the data, declare the stages, reproduce")
def stages_declared(ctx):
    """dvc.yaml declares exactly the four stages validate, featurize, train and evaluate, in this order."""
    names = list(_stages(ctx))
    if names != list(STAGES):
        missing, extra = [s for s in STAGES if s not in names], [s for s in names if s not in STAGES]
        raise Fail(f"dvc.yaml must declare the stages {', '.join(STAGES)} in this order; found "
                   f"{', '.join(map(str, names)) or 'none'}" + (f" (missing: {', '.join(missing)})" if missing else "")
                   + (f" (not in the lab: {', '.join(map(str, extra))})" if extra else ""))


def _stage_check(name: str):
    want = TABLE[name]
    writes = ", ".join(want["outs"] + want["metrics"])

    def check(ctx):
        problems = _stage_problems(_stages(ctx).get(name), name)
        if problems:
            raise Fail(f"dvc.yaml, stage {name}: " + "; ".join(problems))

    check.__name__ = f"stage_{name}"
    check.__doc__ = (f"Stage {name} runs `{RUNNER} {' '.join(want['args'])}` and declares exactly what it reads "
                     f"({', '.join(want['deps'] + want['params'])}) and writes ({writes}).")
    return check


for _name in STAGES:
    CHECKS.add(points=1, hint=f"Copy stage {_name}'s row of exercise 4's table: its command, every file it reads "
               "under deps, every parameter it reads under params, what it writes under outs — and nothing more.",
               section="4.7 DVC: version the data, declare the stages, reproduce")(_stage_check(_name))


@CHECKS.add(points=2, hint="Run `dvc repro` in the project after writing params.yaml and dvc.yaml (exercise 5), "
            "and change nothing after it.", section="4.7 DVC: version the data, declare the stages, reproduce")
def pipeline_ran(ctx):
    """dvc.lock records every stage with today's params.yaml, its outputs match the files, and metrics.json is sound."""
    lock = _lock(ctx)
    missing = [s for s in STAGES if not isinstance(lock.get(s), dict)]
    if missing:
        raise Fail(f"dvc.lock lacks the stage(s) {', '.join(missing)}: run `dvc repro` after writing dvc.yaml")
    for name, outs in _lock_outs(lock).items():
        for path, digest in outs.items():
            relative = f"{_project(ctx)}/{path}"
            if ctx.exists(relative) and _md5(ctx, relative) != digest:
                raise Fail(f"{path} differs from the md5 that dvc.lock records for stage {name}: the file was "
                           "changed after `dvc repro`; rerun it rather than editing outputs")
            if not ctx.exists(relative) and not str(digest).endswith(".dir"):
                raise Fail(f"dvc.lock lists {path} (stage {name}), but the project has no such file")
    raw_deps = {os.path.normpath(str(d.get("path"))): d.get("md5") for d in lock["validate"].get("deps") or []
                if isinstance(d, dict)}
    if raw_deps.get(os.path.normpath(RAW)) != _versioned_md5(ctx):
        raise Fail(f"dvc.lock says validate read {RAW} with md5 {raw_deps.get(os.path.normpath(RAW))}, not the "
                   "versioned data: run `dvc repro` again on the data you added")
    params = _yaml(ctx, "params.yaml")
    for name in STAGES:
        recorded = (lock[name].get("params") or {}).get("params.yaml") or {}
        for key, value in recorded.items() if isinstance(recorded, dict) else ():
            try:
                now = _lookup(params, str(key))
            except KeyError:
                now = "nothing"
            if now != value:
                raise Fail(f"dvc.lock says stage {name} ran with {key} = {value!r}, but params.yaml now holds "
                           f"{now!r}: params.yaml changed after `dvc repro`; rerun it")
    metrics = require_keys(ctx.read_json(_project(ctx, METRICS)), ("roc_auc", "accuracy"), METRICS)
    for key in ("roc_auc", "accuracy"):
        require_number(metrics[key], f"{METRICS}: {key}", 0.0, 1.0)
    if metrics["roc_auc"] < 0.9:
        raise Fail(f"{METRICS} reports roc_auc {metrics['roc_auc']}: below 0.9, the pipeline did not train as asked")


@CHECKS.add(points=1, hint="`dvc push` after `dvc repro` (exercise 5): a colleague pulls the outputs instead of "
            "recomputing them.", section="4.7 The remote restores the data")
def outputs_pushed(ctx):
    """Your remote holds every cached output that dvc.lock records (`dvc push` after `dvc repro`)."""
    lock, remote, uncached = _lock(ctx), _remote_dir(ctx), _uncached(ctx)
    missing = sorted({path for outs in _lock_outs(lock).values() for path, digest in outs.items()
                      if path not in uncached and isinstance(digest, str) and re.fullmatch(r"[0-9a-f]{32}(\.dir)?", digest)
                      and not _remote_holds(ctx, remote, digest)})
    if missing:
        raise Fail(f"the remote {remote} lacks the output(s) {', '.join(missing)} that dvc.lock records: "
                   "run `dvc push` after `dvc repro`")


@CHECKS.add(points=1, hint="`git config user.name/user.email` in the project (exercise 1); after `dvc repro` and "
            "`dvc push`: `git add -A` and `git commit` (exercise 5).",
            section="4.7 DVC: version the data, declare the stages, reproduce")
def project_committed(ctx):
    """The last Git commit holds dvc.yaml, dvc.lock, params.yaml and data/raw.csv.dvc as they are, and no DVC data."""
    if not ctx.exists(_project(ctx, ".git/HEAD")):
        raise Fail(f"{_project(ctx)} is not a Git repository: `git init` in it (exercise 1){ctx.why_missing()}")
    problems = []
    user = {"user.name", "user.email"} - _git_user(ctx)
    if user:
        problems.append(f"its .git/config sets no {' and no '.join(sorted(user))}: `git config` them in the project")
    head = _git_head(ctx)
    if head is None:
        problems.append("it has no commit: `git add -A` and `git commit` after `dvc repro` and `dvc push`")
        raise Fail(f"{_project(ctx)}: " + "; ".join(problems))
    kind, body = _git_object(ctx, head)
    tree = re.match(rb"tree ([0-9a-f]{40})", body) if kind == "commit" else None
    if tree is None:
        raise Fail(f"{_project(ctx)}: HEAD is not a commit")
    files = _git_files(ctx, tree.group(1).decode())
    absent, stale = [], []
    for name in ("dvc.yaml", "dvc.lock", "params.yaml", f"{RAW}.dvc"):
        if name not in files:
            absent.append(name)
        elif ctx.exists(_project(ctx, name)):
            data = _bytes(ctx, _project(ctx, name))
            if hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest() != files[name]:
                stale.append(name)
    if absent:
        problems.append(f"its last commit lacks {', '.join(absent)}: commit after `dvc repro` (`git add -A`)")
    if stale:
        problems.append(f"{', '.join(stale)} changed after the last commit: commit after `dvc repro`")
    try:
        tracked = {RAW} | {p for outs in _lock_outs(_lock(ctx)).values() for p in outs} - _uncached(ctx)
    except Fail:
        tracked = {RAW}
    in_git = sorted(p for p in tracked if p in files)
    if in_git:
        problems.append(f"Git holds {', '.join(in_git)}, which DVC versions: commit only the .dvc and lock files "
                        "(DVC's .gitignore keeps the data out)")
    if problems:
        raise Fail(f"{_project(ctx)}: " + "; ".join(problems))


@CHECKS.add(points=1, hint="Every stage's command must run in a fresh clone: read only files inside the project "
            "that DVC restores (the versioned data, other stages' outputs).",
            section="4.7 Reproducible means: same inputs, same bytes")
def repro_runs(ctx):
    """`dvc repro` in a clean copy of your project (data pulled, no cache, no outputs) runs every stage, without error."""
    result = _visible(ctx)
    repro = result.get("repro") or {}
    if repro.get("rc") is None:
        _stopped(result, "`dvc repro`")
    if repro["rc"] != 0:
        raise Fail(f"`dvc repro` failed in a clean copy of your project (exit status {repro['rc']}): "
                   f"{_tail(repro.get('output'))}")
    missing = [s for s in STAGES if s not in repro.get("ran", [])]
    if missing:  # it ran without error: what depends on it can still be judged
        try:
            stages = _stages(ctx)
        except Fail:
            stages = {}
        why = [f"did not run {s}: it declares no outs, so DVC found it up to date with the files it writes left in "
               "place (a Git clone would have them too)" if isinstance(stages.get(s), dict) and not
               _paths(stages[s].get("outs")) + _paths(stages[s].get("metrics")) else f"did not run {s}"
               for s in missing]
        return Partial(0.5, f"`dvc repro` in a clean copy {'; '.join(why)}; it ran "
                       f"{', '.join(repro.get('ran', [])) or 'nothing'}")


@CHECKS.add(points=2, depends=("repro_runs",),
            hint="Every stage must write the same bytes from the same inputs: use the mlops_kit.pipeline commands.",
            section="4.4 Train, and save the model byte-reproducibly; 4.7 Reproducible means: same inputs, same bytes")
def repro_identical(ctx):
    """`dvc repro` in a clean copy of your project reproduces the hashes of every output in your dvc.lock."""
    yours, fresh = _lock_outs(_lock(ctx)), _visible(ctx)["repro"].get("outs") or {}
    differ = []
    for stage in STAGES:
        for path, digest in yours.get(stage, {}).items():
            again = (fresh.get(stage) or {}).get(path)
            if again != digest:
                differ.append(f"{path} (stage {stage}): your dvc.lock says {digest}, a clean rerun gives {again}")
    if differ:
        raise Fail("a clean rerun does not reproduce your outputs: " + "; ".join(differ) + ". Outputs must depend "
                   "only on declared inputs and be written deterministically")


@CHECKS.add(points=2, depends=("repro_runs",),
            hint="Declare each stage's params (not params.yaml as a file) and each file it reads under deps.",
            section="4.7 Nothing changed, nothing runs")
def param_change_reruns_downstream(ctx):
    """Unchanged, `dvc repro` runs nothing; with featurize.test_size changed it reruns featurize, train, evaluate only."""
    result = _visible(ctx)
    unchanged, change = result.get("unchanged"), result.get("param_change")
    if unchanged is None or change is None:
        _stopped(result, "`dvc repro` with a parameter changed")
    if change.get("problem"):
        raise Fail(f"the grader could not change {CHANGED_PARAM}: {change['problem']}")
    problems = []
    if unchanged.get("rc") != 0:
        problems.append(f"a second `dvc repro` with nothing changed failed: {_tail(unchanged.get('output'))}")
    elif unchanged.get("ran"):
        problems.append(f"a second `dvc repro` with nothing changed reran {', '.join(unchanged['ran'])}: nothing may "
                        "run when nothing changed (does a stage write a file it depends on, or set always_changed?)")
    if change.get("rc") != 0:
        problems.append(f"after changing {CHANGED_PARAM} to {CHANGED_VALUE}, `dvc repro` failed: "
                        f"{_tail(change.get('output'))}")
    else:
        ran = set(change.get("ran", []))
        extra, missed = sorted(ran - set(DOWNSTREAM)), [s for s in DOWNSTREAM if s not in ran]
        if missed or extra:
            problems.append(f"changing {CHANGED_PARAM} to {CHANGED_VALUE} reran {', '.join(sorted(ran)) or 'nothing'}; "
                            f"expected exactly {', '.join(DOWNSTREAM)}" + (
                                f". Not rerun: {', '.join(missed)} (a missing params or deps entry)" if missed else "")
                            + (f". Rerun for nothing: {', '.join(extra)}" if extra else ""))
    if problems:
        raise Fail("; ".join(problems))


@CHECKS.add(points=3, visible=False,
            hint="The first stage must run `python -m mlops_kit.pipeline validate` on the raw data.",
            section="4.2 Validate the raw data at the door")
def validation_rejects_corrupt(ctx):
    """The validate stage rejects the grader's corrupted CSV, naming the missing, null and out-of-range columns."""
    import numpy as np

    expected = ("expected: `dvc repro validate` runs the validate stage, which exits with an error naming each broken "
                "column (one missing, one with nulls, one out of range)")
    if "corrupted_csv" not in ctx.hidden:
        raise Fail("the corrupted CSV is only available at grading")
    # A probe of its own: the learner's code runs on the hidden CSV here only, and its output is never quoted.
    result = ctx.probe("dvc_probe", {"corrupted": np.array(ctx.hidden["corrupted_csv"])}, raw=True, secret=True,
                       limits=Limits(wall_seconds=CORRUPTED_SECONDS + 60), needs=(_project(ctx, "dvc.yaml"),),
                       args=("--project", _project(ctx), "--mode", "corrupted", "--raw", RAW, "--stage", "validate",
                             "--seconds", str(CORRUPTED_SECONDS)))
    if "error" in result:
        raise Fail(f"the grader could not feed its corrupted CSV to your project; {expected}")
    outcome = result.get("corrupted") or {}
    if outcome.get("rc") is None:
        stopped = (result.get("inner") or {}).get("stopped") or {}
        if stopped and starved(SimpleNamespace(cpu_seconds=stopped.get("cpu") or 0.0,
                                               load=float(stopped.get("load") or 0)), float(stopped.get("seconds") or 0)):
            raise GraderTimeout(f"the grader's corrupted-CSV run ran out of its {CORRUPTED_SECONDS} s while the "
                                f"machine was busy (load {float(stopped.get('load') or 0):.1f})")
        raise Fail(f"the validate stage did not finish on the corrupted CSV; {expected}")
    if outcome["rc"] == 0:
        raise Fail(f"the validate stage accepted the corrupted CSV; {expected}")
    if "validate" not in outcome.get("ran", []):
        raise Fail(f"`dvc repro validate` failed before the validate stage ran; {expected}")
    text = str(outcome.get("output", ""))
    named = [c for c in ctx.hidden["broken_columns"].values() if re.search(rf"(?<![\w]){re.escape(c)}(?![\w])", text)]
    if not named:
        return Partial(1 / 3, f"the validate stage failed on the corrupted CSV but named none of the broken columns; "
                       f"{expected}")
    if len(named) < 3:
        return Partial(2 / 3, f"the validate stage failed on the corrupted CSV but did not name every broken column; "
                       f"{expected}")
