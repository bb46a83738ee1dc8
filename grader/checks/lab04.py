"""Lab 04 — a reproducible DVC pipeline with validation: judged on the project, then on a clean copy of it.

The checks read the learner's project files (YAML parsed with safe_load, files hashed, never executed) in
the grader's process; everything that runs DVC or the learner's stage commands runs in the `dvc_probe`
sandbox, on a copy: pull from the learner's remote, `dvc repro` from scratch, one parameter changed, and
(hidden) a corrupted CSV of the grader's swapped in for the raw data.
"""

from __future__ import annotations

import hashlib
import io
import os
import re
from pathlib import Path

from grader import collect
from grader.checks.common import Checks, Fail, Partial, require_keys, require_number
from grader.labs import Lab
from grader.sandbox import Limits

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
CHANGED_PARAM, CHANGED_VALUE = "featurize.test_size", "0.3"
DOWNSTREAM = ("featurize", "train", "evaluate")  # what changing CHANGED_PARAM must rerun
STAGE_PARAMS = {"validate": (), "featurize": ("seed", "featurize"), "train": ("seed", "train"),
                "evaluate": ("evaluate",)}
PROBE_LIMITS = Limits(wall_seconds=180)
CHECKS = Checks()


def prepare(work: Path) -> tuple[dict, dict]:
    """Write the raw CSV into the job's work dir; keep a corrupted version of it (and what is wrong) here."""
    import numpy as np

    from mlops_kit.data import breast_cancer_frame

    frame = breast_cancer_frame()
    public = frame.sample(n=PUBLIC_ROWS, random_state=LAB.seed).reset_index(drop=True)
    (work / "data").mkdir(parents=True, exist_ok=True)
    data_path = "data/breast_cancer_04.csv"
    public.to_csv(work / data_path, index=False)
    rng = np.random.default_rng(LAB.seed)
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
    import yaml

    text = ctx.read_text(_project(ctx, name))
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as err:
        raise Fail(f"{_project(ctx, name)} is not valid YAML: {str(err).splitlines()[0]}") from None


def _stages(ctx) -> dict:
    spec = _yaml(ctx, "dvc.yaml")
    if not isinstance(spec, dict) or not isinstance(spec.get("stages"), dict):
        raise Fail(f"{_project(ctx, 'dvc.yaml')} must hold a mapping `stages:` of stage names to stages")
    return spec["stages"]


def _paths(entries) -> list[str]:
    """The paths in a deps/outs/metrics list (strings, or one-key mappings with options)."""
    paths = []
    for entry in entries or []:
        if isinstance(entry, str):
            paths.append(os.path.normpath(entry))
        elif isinstance(entry, dict):
            paths.extend(os.path.normpath(k) for k in entry if isinstance(k, str))
    return paths


def _params(stage: dict) -> list[str]:
    """The parameter keys a stage declares: `- key` entries, and `- params.yaml: [keys]` entries."""
    keys = []
    for entry in stage.get("params") or []:
        if isinstance(entry, str):
            keys.append(entry)
        elif isinstance(entry, dict):
            for file, listed in entry.items():
                if os.path.normpath(str(file)) == "params.yaml" and isinstance(listed, list):
                    keys.extend(k for k in listed if isinstance(k, str))
    return keys


def _outputs(stage: dict) -> list[str]:
    return _paths(stage.get("outs")) + _paths(stage.get("metrics")) + _paths(stage.get("plots"))


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


def _remote_dir(ctx) -> str:
    """The work-relative directory of the project's default DVC remote (from .dvc/config)."""
    text = ctx.read_text(_project(ctx, ".dvc/config"))
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


def _probe(ctx) -> dict:
    import numpy as np

    inputs = {"corrupted": np.array(ctx.hidden["corrupted_csv"])} if "corrupted_csv" in ctx.hidden else {}
    result = ctx.probe("dvc_probe", inputs, limits=PROBE_LIMITS,
                       args=("--project", _project(ctx), "--output-dir", ctx.params.get("output_dir", ""),
                             "--param", CHANGED_PARAM, "--value", CHANGED_VALUE))
    if "error" in result:
        raise Fail(f"{result['error']}{ctx.why_missing() if 'not found' in result['error'] else ''}")
    return result


def _tail(text: object, lines: int = 6) -> str:
    kept = [l for l in str(text or "").strip().splitlines() if l.strip()][-lines:]
    return " | ".join(kept)[-600:]


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


@CHECKS.add(points=1, hint="seed: the notebook's seed variable; featurize/train/evaluate as listed in exercise 3.",
            section="4.6 A stage runner: one command per stage, settings from params.yaml")
def params_written(ctx):
    """params.yaml holds the notebook's seed and the featurize, train and evaluate settings of exercise 3."""
    params = require_keys(_yaml(ctx, "params.yaml"), ("seed", "featurize", "train", "evaluate"), "params.yaml")
    if params["seed"] != ctx.params["seed"]:
        raise Fail(f"params.yaml has seed {params['seed']!r}, but the notebook ran with seed={ctx.params['seed']}: "
                   "write the `seed` variable, not a number")
    featurize = require_keys(params["featurize"], ("test_size", "log_features"), "params.yaml: featurize")
    require_number(featurize["test_size"], "params.yaml: featurize.test_size", 0.25, 0.25)
    if not isinstance(featurize["log_features"], list) or not all(isinstance(c, str) for c in featurize["log_features"]):
        raise Fail(f"params.yaml: featurize.log_features must be a list of column names, found "
                   f"{featurize['log_features']!r}")
    model = require_keys(params["train"], ("model",), "params.yaml: train")["model"]
    if model not in ("logreg", "hgb"):
        raise Fail(f"params.yaml: train.model must be 'logreg' or 'hgb', found {model!r}")
    threshold = require_keys(params["evaluate"], ("threshold",), "params.yaml: evaluate")["threshold"]
    require_number(threshold, "params.yaml: evaluate.threshold", 0.0, 1.0)


@CHECKS.add(points=1, hint="Four stages named validate, featurize, train, evaluate, in this order; validate reads data/raw.csv.",
            section="4.7 DVC: version the data, declare the stages, reproduce")
def stages_declared(ctx):
    """dvc.yaml declares validate → featurize → train → evaluate, each with a cmd and outs, validation first."""
    stages = _stages(ctx)
    names = list(stages)
    if names[:4] != list(STAGES):
        raise Fail(f"dvc.yaml must declare the stages {', '.join(STAGES)} in this order; found {', '.join(names)}")
    for name in STAGES:
        stage = stages[name]
        if not isinstance(stage, dict) or not isinstance(stage.get("cmd"), (str, list)):
            raise Fail(f"dvc.yaml: stage {name!r} needs a `cmd`")
        if not _outputs(stage):
            raise Fail(f"dvc.yaml: stage {name!r} declares no outs (or metrics)")
    raw = os.path.normpath(RAW)
    readers = [n for n, s in stages.items() if isinstance(s, dict) and raw in _paths(s.get("deps"))]
    if readers[:1] != ["validate"]:
        raise Fail(f"dvc.yaml: validate must read {RAW} (under deps); found it read by: {', '.join(readers) or 'no stage'}")
    if readers != ["validate"]:
        raise Fail(f"dvc.yaml: only validate may read the raw data; {', '.join(readers[1:])} read {RAW} too: read "
                   "validate's output instead, so unvalidated data never reaches them")


@CHECKS.add(points=2, depends=("stages_declared",),
            hint="Each stage lists every file it reads (deps) and every parameter it reads (params), and no more.",
            section="4.7 DVC: version the data, declare the stages, reproduce")
def dependencies_complete(ctx):
    """Each stage declares the outputs it reads from upstream and exactly the parameters it reads; metrics declared."""
    stages = _stages(ctx)
    problems = []
    for name in STAGES:
        if "params.yaml" in _paths(stages[name].get("deps")):
            problems.append(f"{name} lists params.yaml as a file dependency: then every change reruns it; "
                            "list the keys it reads under `params:` instead")
    outs = {n: set(_outputs(stages[n])) for n in STAGES}
    needs = [("featurize", "validate"), ("train", "featurize"), ("evaluate", "train"), ("evaluate", "featurize")]
    for reader, writer in needs:
        if not set(_paths(stages[reader].get("deps"))) & outs[writer]:
            problems.append(f"{reader} depends on no output of {writer} ({', '.join(sorted(outs[writer])) or 'none'})")
    for name, wanted in STAGE_PARAMS.items():
        declared = _params(stages[name])
        for key in wanted:
            if not any(p == key or p.startswith(f"{key}.") for p in declared):
                problems.append(f"{name} reads the parameter(s) `{key}` but does not declare them under params:")
        if not wanted and declared:
            problems.append(f"{name} declares params {declared} it does not read")
    if os.path.normpath(METRICS) not in _paths(stages["evaluate"].get("metrics")):
        problems.append(f"evaluate must declare {METRICS} under `metrics:` (with cache: false)")
    if problems:
        raise Fail("dvc.yaml: " + "; ".join(problems))


@CHECKS.add(points=2, depends=("stages_declared",),
            hint="Run `dvc repro` in the project after writing params.yaml and dvc.yaml (exercise 5).",
            section="4.7 DVC: version the data, declare the stages, reproduce")
def pipeline_ran(ctx):
    """dvc.lock records every stage, its outputs match the files in the project, and metrics.json is sound."""
    lock = _lock(ctx)
    missing = [s for s in STAGES if s not in lock]
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
    metrics = require_keys(ctx.read_json(_project(ctx, METRICS)), ("roc_auc", "accuracy"), METRICS)
    for key in ("roc_auc", "accuracy"):
        require_number(metrics[key], f"{METRICS}: {key}", 0.0, 1.0)
    if metrics["roc_auc"] < 0.9:
        raise Fail(f"{METRICS} reports roc_auc {metrics['roc_auc']}: below 0.9, the pipeline did not train as asked")
    ran_with = (lock["featurize"].get("params") or {}).get("params.yaml", {}).get("seed")
    if ran_with != ctx.params["seed"]:
        return Partial(0.5, f"dvc.lock says featurize ran with seed {ran_with!r}, but the notebook's seed is "
                       f"{ctx.params['seed']}: write the `seed` variable into params.yaml")


@CHECKS.add(points=1, hint="`dvc remote add -d storage ../remote`, then `dvc push`.",
            section="4.7 DVC: version the data, declare the stages, reproduce")
def data_pushed(ctx):
    """The project's default remote is a directory in output_dir holding the versioned raw data's content."""
    digest = _versioned_md5(ctx)
    remote = _remote_dir(ctx)
    entry = f"{remote}/files/md5/{digest[:2]}/{digest[2:]}"
    if not ctx.exists(entry):
        raise Fail(f"the remote {remote} does not hold the raw data (expected {entry}): run `dvc push` in the "
                   "project after `dvc add`")


@CHECKS.add(points=1, depends=("data_pushed",), hint="Push after `dvc add`; keep the remote a relative path.",
            section="4.7 The remote restores the data")
def pull_restores(ctx):
    """In a copy without cache or data, `dvc pull` restores data/raw.csv from your remote, byte for byte."""
    pull = _probe(ctx).get("pull", {})
    if pull.get("problem"):
        raise Fail(pull["problem"])
    restored = pull.get("restored") or {}
    if pull.get("rc") != 0 or not restored or not all(restored.values()):
        raise Fail(f"`dvc pull` in a clean copy did not restore {', '.join(k for k, v in restored.items() if not v) or RAW}"
                   f" (exit status {pull.get('rc')}): {_tail(pull.get('output'))}")


@CHECKS.add(points=3, depends=("pipeline_ran",),
            hint="Every stage must write the same bytes from the same inputs: use the mlops_kit.pipeline commands.",
            section="4.4 Train, and save the model byte-reproducibly; 4.7 Reproducible means: same inputs, same bytes")
def repro_identical(ctx):
    """`dvc repro` in a clean copy of your project runs every stage and reproduces the hashes in your dvc.lock."""
    repro = _probe(ctx).get("repro", {})
    if repro.get("rc") != 0:
        raise Fail(f"`dvc repro` failed in a clean copy of your project (exit status {repro.get('rc')}): "
                   f"{_tail(repro.get('output'))}")
    missing = [s for s in STAGES if s not in repro.get("ran", [])]
    if missing:
        raise Fail(f"`dvc repro` in a clean copy did not run {', '.join(missing)}; it ran "
                   f"{', '.join(repro.get('ran', [])) or 'nothing'}")
    yours, fresh = _lock_outs(_lock(ctx)), repro.get("outs") or {}
    differ = []
    for stage in STAGES:
        for path, digest in yours.get(stage, {}).items():
            again = (fresh.get(stage) or {}).get(path)
            if again != digest:
                differ.append(f"{path} (stage {stage}): your dvc.lock says {digest}, a clean rerun gives {again}")
    if differ:
        raise Fail("a clean rerun does not reproduce your outputs: " + "; ".join(differ) + ". Outputs must depend "
                   "only on declared inputs and be written deterministically")


@CHECKS.add(points=2, depends=("pipeline_ran",),
            hint="Declare each stage's params (not params.yaml as a file) and each file it reads under deps.",
            section="4.7 Nothing changed, nothing runs")
def param_change_reruns_downstream(ctx):
    """Changing featurize.test_size in params.yaml reruns featurize, train and evaluate, and not validate."""
    result = _probe(ctx)
    change = result.get("param_change")
    if not change:
        repro = result.get("repro", {})
        if repro.get("rc") != 0:
            raise Fail(f"`dvc repro` failed in a clean copy of your project, so no parameter could be changed: "
                       f"{_tail(repro.get('output'))}")
        raise Fail(f"the grader could not change {CHANGED_PARAM} in params.yaml")
    if change.get("rc") != 0:
        raise Fail(f"after changing {CHANGED_PARAM} to {CHANGED_VALUE}, `dvc repro` failed: {_tail(change.get('output'))}")
    ran = set(change.get("ran", []))
    extra, missed = sorted(ran - set(DOWNSTREAM)), [s for s in DOWNSTREAM if s not in ran]
    if missed or extra:
        raise Fail(f"changing {CHANGED_PARAM} to {CHANGED_VALUE} reran {', '.join(sorted(ran)) or 'nothing'}; expected "
                   f"exactly {', '.join(DOWNSTREAM)}" + (f". Not rerun: {', '.join(missed)} (a missing params or deps "
                   "entry)" if missed else "") + (f". Rerun for nothing: {', '.join(extra)}" if extra else ""))



@CHECKS.add(points=3, visible=False, depends=("stages_declared",),
            hint="The first stage must run `python -m mlops_kit.pipeline validate` on the raw data.",
            section="4.2 Validate the raw data at the door")
def validation_rejects_corrupt(ctx):
    """The validate stage rejects the grader's corrupted CSV, naming the missing, null and out-of-range columns."""
    if "corrupted_csv" not in ctx.hidden:
        raise Fail("the corrupted CSV is only available at grading")
    outcome = _probe(ctx).get("corrupted")
    if not outcome:
        raise Fail("the grader could not swap its corrupted CSV into your project")
    if outcome.get("problem"):
        raise Fail(outcome["problem"])
    if outcome.get("rc") == 0:
        raise Fail(f"stage {outcome.get('stage')!r} accepted a CSV with a missing column, nulls and out-of-range "
                   "values: it must fail on broken data")
    if outcome.get("stage") not in outcome.get("ran", []):
        raise Fail(f"`dvc repro {outcome.get('stage')}` failed before running the stage: {_tail(outcome.get('output'))}")
    text = str(outcome.get("output", ""))
    named = [kind for kind, column in ctx.hidden["broken_columns"].items() if column in text]
    if len(named) < 3:
        unnamed = [k for k in ctx.hidden["broken_columns"] if k not in named]
        message = (f"the validation stage failed on broken data, but its message names {len(named)} of the 3 broken "
                   f"columns (not named: the {', '.join(unnamed)} one)")
        return Partial(0.5, message) if named else Partial(0.25, message)
