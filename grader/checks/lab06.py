"""Lab 06 — registry and governance: the registry and the learner's gate are opened only in probes."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import numpy as np

from grader.checks.common import Checks, Fail, Partial, require_keys, seeded_split, write_dvc_pointer
from grader.labs import Lab

LAB = Lab(
    id="06_registry",
    title="Register, gate and document a model",
    week=6,
    minutes=60,
    objectives=(
        "register a sweep's models as numbered versions of one registered model",
        "point the aliases champion and challenger at versions (MLflow 3 aliases, not stages)",
        "write a promotion gate as a module that promotes only a better challenger that passes its behavioural tests",
        "generate a model card whose numbers come from the registry",
    ),
    lesson="curriculum/06_registry.ipynb",
    seed=29,
    timeout=240,
    cell_timeout=150,
)

MODEL_NAME = "breast-cancer-classifier"
EXPERIMENT = "breast-cancer-registry"
TEST_SIZE = 0.25
REQUIRED_TESTS = ("minimum_functionality", "invariance", "directional")
GATE, PROMOTION, CARD = "promotion_gate.py", "promotion.json", "model_card.md"
DATA = "data/breast_cancer.csv"
CARD_SECTIONS = ("Intended use", "Data", "Metrics", "Limitations", "Ethical considerations")
PLACEHOLDERS = re.compile(r"\b(todo|tbd|fixme|lorem|ipsum|xxx|fill (this )?in)\b|^\s*(\.\.\.|…)\s*$",
                          re.IGNORECASE | re.MULTILINE)
CHECKS = Checks()

_PASS = {t: True for t in REQUIRED_TESTS}
# (description, champion metrics, challenger metrics, behaviour results, the only right answer)
VISIBLE_SCENARIOS = (
    ("a better challenger that passes every test", {"roc_auc": 0.95}, {"roc_auc": 0.97}, _PASS, True),
    ("a worse challenger that passes every test", {"roc_auc": 0.97}, {"roc_auc": 0.95}, _PASS, False),
)
HIDDEN_BLOCK = (
    ("a much worse challenger", {"roc_auc": 0.991, "accuracy": 0.96}, {"roc_auc": 0.802, "accuracy": 0.75}, _PASS),
    ("a tie on roc_auc", {"roc_auc": 0.9812}, {"roc_auc": 0.9812}, _PASS),
    ("a better challenger failing invariance", {"roc_auc": 0.93}, {"roc_auc": 0.99}, {**_PASS, "invariance": False}),
    ("a better challenger failing the directional test", {"roc_auc": 0.93}, {"roc_auc": 0.99},
     {**_PASS, "directional": False}),
    ("a better challenger failing minimum functionality", {"roc_auc": 0.93}, {"roc_auc": 0.99},
     {**_PASS, "minimum_functionality": False}),
    ("a better challenger whose directional result is missing", {"roc_auc": 0.93}, {"roc_auc": 0.99},
     {"minimum_functionality": True, "invariance": True}),
    ("a better challenger with no behavioural results at all", {"roc_auc": 0.93}, {"roc_auc": 0.99}, {}),
    ("a challenger whose roc_auc is NaN", {"roc_auc": 0.93}, {"roc_auc": float("nan")}, _PASS),
    ("no champion, but a challenger failing a test", None, {"roc_auc": 0.99}, {**_PASS, "directional": False}),
)
HIDDEN_PROMOTE = (
    ("a clearly better challenger that passes", {"roc_auc": 0.90, "accuracy": 0.88}, {"roc_auc": 0.97}, _PASS),
    ("a challenger better by 0.0001 that passes", {"roc_auc": 0.9900}, {"roc_auc": 0.9901}, _PASS),
    ("no champion yet, a passing challenger", None, {"roc_auc": 0.95}, _PASS),
    ("a better challenger passing extra tests too", {"roc_auc": 0.95}, {"roc_auc": 0.96},
     {**_PASS, "calibration": True}),
)


def prepare(work: Path) -> tuple[dict, dict]:
    """Public CSV with a DVC-style .dvc file beside it, so the card's data version is a real md5."""
    from mlops_kit.data import breast_cancer_frame

    frame = breast_cancer_frame()
    csv = work / DATA
    csv.parent.mkdir(parents=True, exist_ok=True)
    frame.to_csv(csv, index=False)
    md5 = write_dvc_pointer(csv)
    params = {"seed": LAB.seed, "data_path": DATA, "output_dir": "outputs"}
    return params, {"public": frame, "md5": md5}


def _split(ctx):
    return seeded_split(ctx, TEST_SIZE)


def _registry(ctx) -> dict:
    _, X_test, _, y_test = _split(ctx)
    inputs = {"X_test": X_test.to_numpy(), "y_test": y_test.to_numpy(), "columns": np.array(list(X_test.columns))}
    result = ctx.probe("mlflow_probe", inputs, args=("--mode", "registry", "--output-dir",
                                                     str(ctx.params.get("output_dir", "outputs")),
                                                     "--model-name", MODEL_NAME, "--experiment", EXPERIMENT))
    if "error" in result:
        raise Fail(f"{result['error']}{ctx.why_missing() if 'not found' in result['error'] else ''}")
    return result


def _versions(ctx) -> dict:
    """Registered versions whose source run logged cv_roc_auc and roc_auc."""
    return {v: r for v, r in _registry(ctx)["versions"].items()
            if {"cv_roc_auc", "roc_auc"} <= set(r.get("run", {}).get("metrics", {}))}


def _expected(ctx) -> dict:
    """The state the lab's procedure leads to: incumbent, candidate, and whether the gate must promote."""
    registry, versions = _registry(ctx), _versions(ctx)
    children = [r for r in registry.get("runs", []) if r.get("parent") and "cv_roc_auc" in r["metrics"]]
    if not children:
        raise Fail(f"the experiment {EXPERIMENT!r} holds no child runs with cv_roc_auc: keep the setup cell as given")
    worst = min(children, key=lambda r: r["metrics"]["cv_roc_auc"])
    best = max(children, key=lambda r: r["metrics"]["cv_roc_auc"])
    chosen = {}
    for role, run in (("incumbent", worst), ("candidate", best)):
        mine = [v for v in versions if versions[v]["run_id"] == run["run_id"]]
        if not mine:
            raise Fail(f"no version of {MODEL_NAME} comes from the {role} run {run['name']} (cv_roc_auc "
                       f"{run['metrics']['cv_roc_auc']:.4f}, the {'lowest' if role == 'incumbent' else 'highest'} "
                       f"of the sweep); registered runs: {sorted({versions[v]['run']['name'] for v in versions})}")
        chosen[role] = max(mine, key=int)  # the latest registration of that run
    low, high = chosen["incumbent"], chosen["candidate"]
    behaviour = registry["behaviour"].get(high, {})
    if "error" in behaviour:
        raise Fail(f"the challenger (version {high}) could not be tested: {behaviour['error']}")
    passes = all(behaviour.get("tests", {}).get(t) is True for t in REQUIRED_TESTS)
    better = versions[high]["run"]["metrics"]["roc_auc"] > versions[low]["run"]["metrics"]["roc_auc"]
    return {"before": low, "challenger": high, "promote": passes and better,
            "behaviour": behaviour.get("tests", {}), "champion": high if passes and better else low}


def _gate(ctx, scenarios) -> list[dict]:
    payload = [{"champion": c, "challenger": n, "behaviour": b} for _, c, n, b, *_ in scenarios]
    result = ctx.probe("mlflow_probe", {"scenarios": np.array(json.dumps(payload))},
                       args=("--mode", "gate", "--output-dir", str(ctx.params.get("output_dir", "outputs")),
                             "--gate-file", GATE, "--label", scenarios[0][0]))
    if "error" in result:
        raise Fail(f"{result['error']}{ctx.why_missing() if 'not found' in result['error'] else ''}")
    answers = result.get("answers")
    if not isinstance(answers, list) or len(answers) != len(scenarios):
        raise Fail("your gate module did not answer every scenario")
    return answers


def _wrong(answers, scenarios, want: bool) -> list[str]:
    wrong = []
    for answer, scenario in zip(answers, scenarios):
        if answer.get("type") != "bool":
            wrong.append(f"{scenario[0]} (returned a {answer.get('type')}"
                         f"{': ' + answer['error'] if answer.get('error') else ''}, not a bool)")
        elif answer.get("value") is not want:
            wrong.append(f"{scenario[0]} (returned {answer.get('value')})")
    return wrong


@CHECKS.add(points=2, hint="register_run(run_id, experiment_id, MODEL_NAME) for the incumbent, then the candidate.",
            section="6.1 Register a run's model: names and versions")
def model_registered(ctx):
    """breast-cancer-classifier has at least two versions, each from a logged model of a tracked run."""
    registry = _registry(ctx)
    versions = registry["versions"]
    if len(versions) < 2:
        raise Fail(f"{MODEL_NAME} has {len(versions)} version(s); register the incumbent and the candidate (2)")
    broken = [v for v, r in versions.items() if "run" not in r or not str(r.get("source", "")).startswith("models:/m-")]
    if broken:
        raise Fail(f"version(s) {', '.join(broken)} do not point at a logged model of a run in this store: "
                   "register runs' models (models:/m-…), not copied files")
    if len(_versions(ctx)) < 2:
        raise Fail("fewer than two versions come from runs that logged cv_roc_auc and roc_auc")


@CHECKS.add(points=2, depends=("model_registered",), hint="challenger = the highest cv_roc_auc; champion moves to "
            "it only if the gate says yes.", section="6.2 Aliases, not stages")
def aliases_set(ctx):
    """challenger points at the best-cv version; champion at it only if it is better and behaves, else the incumbent."""
    aliases = _registry(ctx)["aliases"]
    missing = [a for a in ("champion", "challenger") if a not in aliases]
    if missing:
        raise Fail(f"alias(es) {', '.join(missing)} are not set on {MODEL_NAME}; found {aliases or 'none'}")
    expected = _expected(ctx)
    if aliases["challenger"] != expected["challenger"]:
        raise Fail(f"challenger points at version {aliases['challenger']}; the version with the highest cv_roc_auc "
                   f"is {expected['challenger']}")
    if aliases["champion"] != expected["champion"]:
        why = ("it is better and passes every behavioural test, so the gate should have promoted it"
               if expected["promote"] else f"it must not be promoted (behaviour {expected['behaviour']})")
        raise Fail(f"champion points at version {aliases['champion']}, expected {expected['champion']}: the "
                   f"challenger is version {expected['challenger']} and {why}")


@CHECKS.add(points=1, depends=("aliases_set",), hint="Write champion_before, challenger, behaviour and promoted "
            "after the gate ran.", section="6.4 The promotion gate")
def promotion_recorded(ctx):
    """promotion.json records the versions, the behavioural results and the decision that the registry shows."""
    record = require_keys(ctx.read_json(ctx.output(PROMOTION)), ("champion_before", "challenger", "behaviour",
                                                                 "promoted"), PROMOTION)
    expected = _expected(ctx)
    for key, want in (("champion_before", expected["before"]), ("challenger", expected["challenger"])):
        if str(record[key]) != want:
            raise Fail(f"{PROMOTION}: {key} is {record[key]!r}, the registry says version {want}")
    if record["promoted"] is not expected["promote"]:
        raise Fail(f"{PROMOTION}: promoted is {record['promoted']!r}, but the champion alias shows "
                   f"{'a promotion' if expected['promote'] else 'no promotion'}")
    found = record["behaviour"] if isinstance(record["behaviour"], dict) else {}
    differ = [t for t in REQUIRED_TESTS if found.get(t) is not expected["behaviour"].get(t)]
    if differ:
        raise Fail(f"{PROMOTION}: behaviour {found} differs from a re-run of the tests on the challenger "
                   f"({expected['behaviour']}) for {', '.join(differ)}")


@CHECKS.add(points=1, hint="Complete the %%writefile cell: a module defining decide(...) that returns a bool.",
            section="6.4 The promotion gate")
def gate_imports(ctx):
    """promotion_gate.py imports on its own and decides the two examples of the lab correctly."""
    wrong = []
    for answer, scenario in zip(_gate(ctx, VISIBLE_SCENARIOS), VISIBLE_SCENARIOS):
        wrong += _wrong([answer], [scenario], scenario[4])
    if wrong:
        raise Fail("your gate decides wrongly: " + "; ".join(wrong))


@CHECKS.add(points=3, visible=False, depends=("gate_imports",), hint="Promote only when all three tests are True "
            "and roc_auc is strictly higher; missing or NaN evidence means no.", section="6.4 The promotion gate")
def gate_never_promotes_bad(ctx):
    """Your gate never promotes a worse, tied, failing or untested challenger (hidden scenarios)."""
    wrong = _wrong(_gate(ctx, HIDDEN_BLOCK), HIDDEN_BLOCK, False)
    if wrong:
        raise Fail(f"your gate promoted (or failed to reject) {len(wrong)} of {len(HIDDEN_BLOCK)} challengers "
                   "that must stay out: " + "; ".join(wrong[:4]))


@CHECKS.add(points=1, visible=False, depends=("gate_imports",), hint="With no champion (None), a passing challenger "
            "is promoted; any strict gain counts.", section="6.4 The promotion gate")
def gate_promotes_good(ctx):
    """Your gate promotes a better challenger that passes every test, and a passing one when there is no champion."""
    wrong = _wrong(_gate(ctx, HIDDEN_PROMOTE), HIDDEN_PROMOTE, True)
    if wrong:
        share = 1 - len(wrong) / len(HIDDEN_PROMOTE)
        message = "your gate rejected challengers it should promote: " + "; ".join(wrong)
        if share <= 0:
            raise Fail(message)
        return Partial(share, message)


def _sections(card: str) -> dict[str, str]:
    found, current = {}, None
    for line in card.splitlines():
        header = re.match(r"^##\s+(.+?)\s*#*\s*$", line)
        if header and not line.startswith("###"):
            current = header.group(1).strip().lower()
            found[current] = ""
        elif current is not None:
            found[current] += line + "\n"
    return found


@CHECKS.add(points=2, hint="Pass real sentences to model_card(...) for each judgement section.",
            section="6.5 A model card generated from the registry")
def card_sections(ctx):
    """model_card.md has every section (intended use, data, metrics, limitations, ethics) filled with real text."""
    sections = _sections(ctx.read_text(ctx.output(CARD)))
    problems = []
    for name in CARD_SECTIONS:
        body = next((b for title, b in sections.items() if title.startswith(name.lower())), None)
        if body is None:
            problems.append(f"no '## {name}' section")
        elif len(body.strip()) < 40:
            problems.append(f"'## {name}' holds {len(body.strip())} characters (at least 40 expected)")
        elif PLACEHOLDERS.search(body):
            problems.append(f"'## {name}' still holds a placeholder ({PLACEHOLDERS.search(body).group(0)!r})")
    if problems:
        raise Fail(f"{CARD}: " + "; ".join(problems))


@CHECKS.add(points=2, depends=("aliases_set", "card_sections"), hint="Generate the card after the gate, from the "
            "champion alias: model_card(MODEL_NAME, 'champion', ...).", section="6.5 A model card generated from the registry")
def card_matches_registry(ctx):
    """The card names the champion's version and run, and its metrics and data version are the registry's."""
    card = ctx.read_text(ctx.output(CARD))
    registry = _registry(ctx)
    version = registry["aliases"]["champion"]
    record = registry["versions"][version]
    run = record["run"]
    problems = []
    if MODEL_NAME not in card:
        problems.append(f"the model name {MODEL_NAME} is missing")
    if not re.search(rf"\bversion\W+{re.escape(version)}\b", card, re.IGNORECASE):
        problems.append(f"it does not name the champion's version ({version})")
    if run["run_id"] not in card:
        problems.append(f"it does not name the champion's source run ({run['run_id']})")
    metrics_text = next((b for t, b in _sections(card).items() if t.startswith("metrics")), "")
    for key in ("roc_auc", "cv_roc_auc"):
        value = run["metrics"][key]
        if not any(f"{value:.{d}f}" in metrics_text for d in (3, 4)) or not math.isfinite(value):
            problems.append(f"its Metrics section lacks {key} = {value:.4f} of the champion's run")
    data_version = run["tags"].get("data_version", "unknown")
    if data_version != "unknown" and data_version not in card:
        problems.append(f"it does not give the champion's data version ({data_version})")
    if problems:
        raise Fail(f"{CARD} does not match the registry: " + "; ".join(problems))
