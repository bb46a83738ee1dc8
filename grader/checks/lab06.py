"""Lab 06 — registry and governance: the registry and the learner's gate are opened only in probes."""

from __future__ import annotations

import json
import math
import random
import re
from pathlib import Path

import numpy as np

from grader.checks.common import Checks, Fail, Partial, require_keys, seeded_split, write_dvc_pointer
from grader.labs import Lab
from grader.secret import seed_for

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
CARD_SHOWN = 20_000  # characters of the card kept as evidence
DATA = "data/breast_cancer.csv"
CARD_SECTIONS = ("Intended use", "Data", "Metrics", "Limitations", "Ethical considerations")
PLACEHOLDERS = re.compile(r"\b(todo|tbd|fixme|lorem|ipsum|xxx|placeholder|fill (this |me )?in|to be (written|"
                          r"completed|filled|done)|coming soon|your (text|answer|sentences?) here)\b|^\s*(\.\.\.|…)\s*$"
                          r"|<[A-Za-z][^<>\n]{0,40}>|\[(insert|your|describe)[^\]\n]*\]",
                          re.IGNORECASE | re.MULTILINE)
CHECKS = Checks()

_PASS = {t: True for t in REQUIRED_TESTS}
# (description, champion metrics, challenger metrics, behaviour results, the only right answer)
VISIBLE_SCENARIOS = (
    ("a better challenger that passes every test", {"roc_auc": 0.95}, {"roc_auc": 0.97}, _PASS, True),
    ("a worse challenger that passes every test", {"roc_auc": 0.97}, {"roc_auc": 0.95}, _PASS, False),
)
# The hidden scenarios are drawn, not listed. Each kind below is one rule of the gate (what it tests and the
# answer it aims at); the metrics, margins, extra metrics and tests, the test that fails and the order of
# keys are drawn from the grading installation's secret (grader/secret.py): fixed for a regrade, unknown to
# anyone who reads this file. The answer graded is always _rule(...) of the drawn instance. The space: each
# instance draws 1-2 roc_auc values (4-6 digits or a full float), 0-3 of 6 extra metrics per run, 0-3 extra
# tests and the key order, so a set of 15 is one of far more than 10^100; the 256-bit seed picks one of ~10^77.
EXTRA_METRICS = ("accuracy", "f1", "precision", "recall", "cv_roc_auc", "log_loss")
EXTRA_TESTS = ("calibration", "fairness", "robustness", "slice_accuracy", "latency")
SCENARIO_DIGITS = (4, 5, 6, None)  # roc_auc values as runs log them: rounded, or a full float


def _roc(metrics):
    value = (metrics or {}).get("roc_auc")
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    return float(value)


def _rule(champion, challenger, behaviour) -> bool:
    """The lab's four rules: every required test present and True, then a strictly higher, finite roc_auc
    (a passing challenger with a finite roc_auc wins when there is no champion)."""
    if not isinstance(behaviour, dict) or any(behaviour.get(t) is not True for t in REQUIRED_TESTS):
        return False
    new = _roc(challenger)
    if new is None:
        return False
    if champion is None:
        return True
    old = _roc(champion)
    return old is not None and new > old


def _auc(rng: random.Random, low: float, high: float) -> float:
    digits = rng.choice(SCENARIO_DIGITS)
    value = rng.uniform(low, high)
    return value if digits is None else round(value, digits)


def _metrics(rng: random.Random, auc: float | None, extras: int | None = None) -> dict:
    """A run's metrics: roc_auc (unless None) among extra metrics, in a random order."""
    count = rng.randint(0, 3) if extras is None else extras
    items = [(k, _auc(rng, 0.05, 0.6) if k == "log_loss" else _auc(rng, 0.6, 0.999))
             for k in rng.sample(EXTRA_METRICS, count)]
    if auc is not None:
        items.insert(rng.randint(0, len(items)), ("roc_auc", auc))
    return dict(items)


def _behaviour(rng: random.Random, changed: dict | None = None, drop: tuple = (), extras: int | None = None) -> dict:
    """Behavioural results: the required tests True unless changed or dropped, maybe extra passing tests."""
    results = {t: True for t in REQUIRED_TESTS if t not in drop} | (changed or {})
    count = (rng.randint(1, 2) if rng.random() < 0.3 else 0) if extras is None else extras
    items = list(results.items()) + [(t, True) for t in rng.sample(EXTRA_TESTS, count)]
    rng.shuffle(items)
    return dict(items)


def _pair(rng: random.Random, gain_low: float, gain_high: float, low: float = 0.8, high: float = 0.97):
    """Champion and challenger metrics, the challenger's roc_auc higher by a drawn margin."""
    old = _auc(rng, low, high)
    new = old + rng.uniform(gain_low, min(gain_high, 0.999 - old))  # below 1: a real run's roc_auc
    return _metrics(rng, old), _metrics(rng, new if rng.random() < 0.5 else round(new, 4))


def _named(test: str) -> str:
    return test.replace("_", " ")


def _much_worse(rng):
    old = _auc(rng, 0.9, 0.995)
    return "a much worse challenger", _metrics(rng, old), _metrics(rng, old - rng.uniform(0.05, 0.25)), \
        _behaviour(rng)


def _tie(rng):
    auc = _auc(rng, 0.75, 0.995)
    return "a tie on roc_auc", _metrics(rng, auc), _metrics(rng, auc), _behaviour(rng)


def _failing(test):
    def draw(rng):
        return (f"a better challenger failing the {_named(test)} test", *_pair(rng, 0.005, 0.05),
                _behaviour(rng, {test: False}))
    return draw


def _missing(rng):
    test = rng.choice(REQUIRED_TESTS)
    return (f"a better challenger whose {_named(test)} result is missing", *_pair(rng, 0.005, 0.05),
            _behaviour(rng, drop=(test,)))


def _no_results(rng):
    return "a better challenger with no behavioural results at all", *_pair(rng, 0.005, 0.05), {}


def _nan(rng):
    return ("a challenger whose roc_auc is NaN", _metrics(rng, _auc(rng, 0.7, 0.99)),
            _metrics(rng, float("nan")), _behaviour(rng))


def _none_result(rng):
    test = rng.choice(REQUIRED_TESTS)
    return (f"a better challenger whose {_named(test)} result is None", *_pair(rng, 0.005, 0.05),
            _behaviour(rng, {test: None}))


def _no_roc_auc(rng):
    return ("a challenger that logged no roc_auc", _metrics(rng, _auc(rng, 0.7, 0.95)),
            _metrics(rng, None, extras=rng.randint(1, 3)), _behaviour(rng))


def _no_champion_failing(rng):
    test = rng.choice(REQUIRED_TESTS)
    return (f"no champion, but a challenger failing the {_named(test)} test", None,
            _metrics(rng, _auc(rng, 0.85, 0.999)), _behaviour(rng, {test: False}))


def _clearly_better(rng):
    return "a clearly better challenger that passes", *_pair(rng, 0.02, 0.15, 0.75, 0.9), _behaviour(rng)


def _tiny_margin(rng):
    old = _auc(rng, 0.9, 0.99)
    new = old + 10 ** rng.uniform(-6, -3.5)
    return "a challenger better by a tiny margin that passes", _metrics(rng, old), _metrics(rng, new), _behaviour(rng)


def _first_champion(rng):
    return "no champion yet, a passing challenger", None, _metrics(rng, _auc(rng, 0.6, 0.999)), _behaviour(rng)


def _extra_tests(rng):
    return ("a better challenger passing extra tests too", *_pair(rng, 0.005, 0.05),
            _behaviour(rng, extras=rng.randint(1, 3)))


# (draw, the answer it aims at), in the order the hidden checks report them
SCENARIO_KINDS = (
    (_much_worse, False), (_tie, False), *((_failing(t), False) for t in ("invariance", "directional",
                                                                          "minimum_functionality")),
    (_missing, False), (_no_results, False), (_nan, False), (_none_result, False), (_no_roc_auc, False),
    (_no_champion_failing, False),
    (_clearly_better, True), (_tiny_margin, True), (_first_champion, True), (_extra_tests, True),
)


def draw_scenarios(seed: int) -> list[tuple]:
    """One instance of every kind: (description, champion, challenger, behaviour, the rule's answer)."""
    rng = random.Random(seed)
    visible = [s[1:4] for s in VISIBLE_SCENARIOS]
    drawn = []
    for draw, aim in SCENARIO_KINDS:
        for _ in range(100):
            description, champion, challenger, behaviour = draw(rng)
            if _rule(champion, challenger, behaviour) is aim and [champion, challenger, behaviour] not in visible:
                break
        else:  # pragma: no cover - a kind whose draws miss its aim is a bug in the kind
            raise RuntimeError(f"the scenario kind {description!r} drew no instance with the answer {aim}")
        drawn.append((description, champion, challenger, behaviour, _rule(champion, challenger, behaviour)))
    return drawn


# words that say nothing about *this* model: filler if a section holds little else
STOPWORDS = frozenset("""a about above after all also an and any are as at be been being but by can could do does for
from has have here if in into is it its may might more most must no not of on or our such than that the their them
then there these this those to under was we were what when which while who will with would you your model models
section sections describes description information details text write written here use used using""".split())


def prepare(work: Path) -> tuple[dict, dict]:
    """Public CSV with a DVC-style .dvc file beside it, so the card's data version is a real md5."""
    from grader.datasets import breast_cancer_frame

    frame = breast_cancer_frame()
    csv = work / DATA
    csv.parent.mkdir(parents=True, exist_ok=True)
    frame.to_csv(csv, index=False)
    md5 = write_dvc_pointer(csv)
    params = {"seed": LAB.seed, "data_path": DATA, "output_dir": "outputs"}
    scenarios = draw_scenarios(seed_for(LAB.id, "gate-scenarios"))
    return params, {"public": frame, "md5": md5, "gate_scenarios": scenarios}


def _split(ctx):
    return seeded_split(ctx, TEST_SIZE)


def _registry(ctx) -> dict:
    def inputs() -> dict:
        _, X_test, _, y_test = _split(ctx)
        return {"X_test": X_test.to_numpy(), "y_test": y_test.to_numpy(), "columns": np.array(list(X_test.columns))}

    return ctx.probe("mlflow_probe", inputs, args=("--mode", "registry", "--output-dir",
                                                   str(ctx.params.get("output_dir", "outputs")),
                                                   "--model-name", MODEL_NAME, "--experiment", EXPERIMENT),
                     needs=(ctx.output("mlflow.db"),))


def _versions(ctx) -> dict:
    """Registered versions whose source run logged cv_roc_auc and roc_auc."""
    return {v: r for v, r in _registry(ctx)["versions"].items()
            if {"cv_roc_auc", "roc_auc"} <= set(r.get("run", {}).get("metrics", {}))}


def _roles(ctx) -> dict:
    """The versions of the sweep's lowest-cv run (the incumbent) and highest-cv run (the candidate)."""
    registry, versions = _registry(ctx), _versions(ctx)
    children = [r for r in registry.get("runs", []) if r.get("parent") and isinstance(r["metrics"].get("cv_roc_auc"),
                                                                                      float)]
    if not children:
        raise Fail(f"the experiment {EXPERIMENT!r} holds no child runs with cv_roc_auc: keep the setup cell as given")
    chosen = {}
    for role, run in (("incumbent", min(children, key=lambda r: r["metrics"]["cv_roc_auc"])),
                      ("candidate", max(children, key=lambda r: r["metrics"]["cv_roc_auc"]))):
        mine = [v for v in versions if versions[v]["run_id"] == run["run_id"]]
        if not mine:
            raise Fail(f"no version of {MODEL_NAME} comes from the {role} run {run['name']} (cv_roc_auc "
                       f"{run['metrics']['cv_roc_auc']:.4f}, the {'lowest' if role == 'incumbent' else 'highest'} "
                       f"of the sweep); registered runs: {sorted({versions[v]['run']['name'] for v in versions})}")
        chosen[role] = max(mine, key=int)  # the latest registration of that run
    return chosen


def _expected(ctx) -> dict:
    """The state the lab's procedure leads to: incumbent, candidate, and whether the gate must promote."""
    registry, versions, roles = _registry(ctx), _versions(ctx), _roles(ctx)
    low, high = roles["incumbent"], roles["candidate"]
    behaviour = registry["behaviour"].get(high, {})
    if "error" in behaviour:
        raise Fail(f"the challenger (version {high}) could not be tested: {behaviour['error']}")
    passes = all(behaviour.get("tests", {}).get(t) is True for t in REQUIRED_TESTS)
    new, old = versions[high]["run"]["metrics"]["roc_auc"], versions[low]["run"]["metrics"]["roc_auc"]
    better = isinstance(new, float) and isinstance(old, float) and new > old
    return {"before": low, "challenger": high, "promote": passes and better, "passes": passes, "better": better,
            "new": new, "old": old, "behaviour": behaviour.get("tests", {}),
            "champion": high if passes and better else low}


def _decoys(rng: random.Random, count: int) -> list[tuple]:
    """Scenarios whose answers are not graded: the gate cannot tell the graded ones by their place or number."""
    found = []
    for _ in range(count):
        def metrics():
            return {"roc_auc": round(rng.uniform(0.6, 1.0), 4), **({"accuracy": round(rng.uniform(0.6, 1.0), 3)}
                                                                   if rng.random() < 0.5 else {})}
        behaviour = {t: rng.random() < 0.8 for t in REQUIRED_TESTS if rng.random() < 0.9}
        found.append(("decoy", None if rng.random() < 0.2 else metrics(), metrics(), behaviour, None))
    return found


def _gate(ctx, scenarios, decoys: int, secret: bool = False) -> list[dict]:
    """The gate's answer to each scenario, each asked in its own fresh process, shuffled among decoys."""
    rng = random.Random(f"{ctx.work}:{len(scenarios)}")  # unpredictable per job, stable within it (one probe)
    asked = [(i, s) for i, s in enumerate(scenarios)] + [(None, d) for d in _decoys(rng, decoys)]
    rng.shuffle(asked)
    payload = [{"champion": c, "challenger": n, "behaviour": b} for _, (_, c, n, b, *_) in asked]
    result = ctx.probe("mlflow_probe", {"scenarios": np.array(json.dumps(payload))},
                       args=("--mode", "gate", "--output-dir", str(ctx.params.get("output_dir", "outputs")),
                             "--gate-file", GATE), needs=(ctx.output(GATE),), secret=secret)
    answers = result.get("answers")
    if not isinstance(answers, list) or len(answers) != len(asked):
        raise Fail("your gate module did not answer every scenario")
    found = [None] * len(scenarios)
    for (index, _), answer in zip(asked, answers):
        if index is not None:
            found[index] = answer if isinstance(answer, dict) else {"error": "garbled answer"}
    return found


def _wrong(answers, scenarios, want=None) -> list[str]:
    """The scenarios the gate got wrong, each with what it did."""
    wrong = []
    for answer, scenario in zip(answers, scenarios):
        right = scenario[4] if want is None else want
        if answer.get("error"):
            stage = "importing it failed: " if answer.get("stage") == "import" else "it raised "
            wrong.append(f"{scenario[0]} ({stage}{answer['error']})")
        elif answer.get("type") != "bool":
            wrong.append(f"{scenario[0]} (returned a {answer.get('type')}, not a bool)")
        elif answer.get("value") is not right:
            wrong.append(f"{scenario[0]} (returned {answer.get('value')})")
    return wrong


@CHECKS.add(points=2, hint="register_run(run_id, experiment_id, MODEL_NAME) for the incumbent, then the candidate.",
            section="6.1 Register a run's model: names and versions")
def model_registered(ctx):
    """breast-cancer-classifier has at least two versions from logged models of tracked runs, the incumbent first."""
    versions = _registry(ctx)["versions"]
    if len(versions) < 2:
        raise Fail(f"{MODEL_NAME} has {len(versions)} version(s); register the incumbent and the candidate (2)")
    broken = [v for v, r in versions.items() if "run" not in r or not str(r.get("source", "")).startswith("models:/m-")]
    if broken:
        raise Fail(f"version(s) {', '.join(broken)} do not point at a logged model of a run in this store: "
                   "register runs' models (models:/m-…), not copied files")
    if len(_versions(ctx)) < 2:
        raise Fail("fewer than two versions come from runs that logged cv_roc_auc and roc_auc")
    roles = _roles(ctx)
    if int(roles["incumbent"]) > int(roles["candidate"]):
        return Partial(0.5, f"the candidate was registered first (version {roles['candidate']}), the incumbent after "
                            f"it (version {roles['incumbent']}): register the model in production first, so the "
                            "version numbers tell the history")


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
        if expected["promote"]:
            why = (f"its roc_auc {expected['new']:.4f} beats the incumbent's {expected['old']:.4f} and it passes "
                   "every behavioural test, so the gate should have promoted it")
        elif not expected["passes"]:
            why = f"it fails a behavioural test when the grader re-runs them ({expected['behaviour']}), so it must stay out"
        else:
            why = (f"its roc_auc {expected['new']:.4f} does not beat the incumbent's {expected['old']:.4f}, so it must "
                   "stay out")
        raise Fail(f"champion points at version {aliases['champion']}, expected {expected['champion']}: the "
                   f"challenger is version {expected['challenger']} and {why}")


@CHECKS.add(points=1, depends=("model_registered",), hint="Write champion_before and challenger (strings), behaviour "
            "and promoted (a bool) after the gate ran.", section="6.4 The promotion gate")
def promotion_recorded(ctx):
    """promotion.json records the versions (as strings), the behavioural results and the decision the registry shows."""
    record = require_keys(ctx.read_json(ctx.output(PROMOTION)), ("champion_before", "challenger", "behaviour",
                                                                 "promoted"), PROMOTION)
    roles, registry = _roles(ctx), _registry(ctx)
    problems = []
    for key, want in (("champion_before", roles["incumbent"]), ("challenger", roles["candidate"])):
        if str(record[key]) != want:
            problems.append(f"{key} is {record[key]!r}, the registry says version {want}")
        elif not isinstance(record[key], str):
            problems.append(f"{key} is the {type(record[key]).__name__} {record[key]!r}: write the version as a "
                            f"string ({want!r})")
    champion = registry["aliases"].get("champion")
    shown = champion == roles["candidate"] and champion != roles["incumbent"]
    if not isinstance(record["promoted"], bool):
        problems.append(f"promoted is {record['promoted']!r}, not a bool")
    elif record["promoted"] is not shown:
        problems.append(f"promoted is {record['promoted']}, but the champion alias points at version {champion}, "
                        f"which shows {'a promotion' if shown else 'no promotion'}")
    behaviour = registry["behaviour"].get(roles["candidate"], {})
    if "tests" in behaviour:
        found = record["behaviour"] if isinstance(record["behaviour"], dict) else {}
        differ = [t for t in REQUIRED_TESTS if found.get(t) is not behaviour["tests"].get(t)]
        if differ:
            problems.append(f"behaviour {found} differs from a re-run of the tests on the challenger "
                            f"({behaviour['tests']}) for {', '.join(differ)}")
    if problems:
        raise Fail(f"{PROMOTION}: " + "; ".join(problems))


@CHECKS.add(points=1, hint="Complete the %%writefile cell: a module defining decide(...), standard library only.",
            section="6.4 The promotion gate")
def gate_imports(ctx):
    """promotion_gate.py imports on its own, defines decide(...) and uses the standard library only."""
    answers = _gate(ctx, VISIBLE_SCENARIOS, decoys=2)
    failed = [a for a in answers if a.get("stage") == "import"]
    if failed:
        raise Fail(f"{GATE}: {failed[0].get('error')}")
    foreign = sorted({m for a in answers for m in a.get("imports", [])})
    if foreign:
        return Partial(0.5, f"{GATE} imports {', '.join(foreign)}, outside the standard library: keep the gate "
                            "self-contained (math.isfinite, not numpy.isfinite), so it runs wherever it is deployed")


@CHECKS.add(points=1, depends=("gate_imports",), hint="Return True or False (a real bool) by the lab's four rules.",
            section="6.4 The promotion gate")
def gate_examples(ctx):
    """The gate decides the lab's two examples correctly and returns a real bool."""
    wrong = _wrong(_gate(ctx, VISIBLE_SCENARIOS, decoys=2), VISIBLE_SCENARIOS)
    if wrong:
        raise Fail("your gate decides wrongly: " + "; ".join(wrong))


def _hidden_answers(ctx) -> tuple[list, list]:
    scenarios = ctx.hidden.get("gate_scenarios")
    if not scenarios:
        raise Fail("the hidden scenarios are only available at grading")
    return _gate(ctx, scenarios, decoys=4, secret=True), scenarios


@CHECKS.add(points=3, visible=False, depends=("gate_imports",), hint="Promote only when all three tests are True "
            "and roc_auc is strictly higher; missing or NaN evidence means no.", section="6.4 The promotion gate")
def gate_never_promotes_bad(ctx):
    """Your gate never promotes a worse, tied, failing or untested challenger (hidden scenarios)."""
    answers, scenarios = _hidden_answers(ctx)
    block = [(a, s) for a, s in zip(answers, scenarios) if s[4] is False]
    wrong = _wrong([a for a, _ in block], [s for _, s in block])
    if wrong:
        raise Fail(f"your gate promoted (or failed to reject) {len(wrong)} of {len(block)} challengers "
                   "that must stay out: " + "; ".join(wrong[:4]))


@CHECKS.add(points=1, visible=False, depends=("gate_imports",), hint="With no champion (None), a passing challenger "
            "is promoted; any strict gain counts.", section="6.4 The promotion gate")
def gate_promotes_good(ctx):
    """Your gate promotes a better challenger that passes every test, and a passing one when there is no champion."""
    answers, scenarios = _hidden_answers(ctx)
    promote = [(a, s) for a, s in zip(answers, scenarios) if s[4] is True]
    wrong = _wrong([a for a, _ in promote], [s for _, s in promote])
    if wrong:
        share = 1 - len(wrong) / len(promote)
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


def _sentences(text: str) -> set[str]:
    return {" ".join(s.lower().split()) for s in re.split(r"(?<=[.!?])\s+", text) if len(s.split()) >= 4}


def _filler(name: str, body: str, others: dict[str, str]) -> str | None:
    """Why a judgement section's text says nothing about this model (None when it is real prose)."""
    words = re.findall(r"[a-z][a-z'-]*|\d+(?:\.\d+)?", body.lower())
    if len(words) < 8:
        return f"'## {name}' holds {len(words)} word(s): write at least a real sentence"
    title = set(name.lower().split())
    content = {w for w in words if w not in STOPWORDS and w not in title}
    if len(content) < 5:
        return (f"'## {name}' says almost nothing beyond its heading ({' '.join(words[:12])}…): say what is true "
                "of this model")
    if len(words) >= 15 and len(set(words)) / len(words) < 0.4:
        return f"'## {name}' repeats the same words ({len(set(words))} different in {len(words)}): filler"
    for other, text in others.items():
        shared = _sentences(body) & _sentences(text)
        if shared:
            return f"'## {name}' repeats text of '## {other}' ({next(iter(shared))[:60]!r}): each section needs its own"
    return None


@CHECKS.add(points=2, hint="Pass real sentences to model_card(...) for each judgement section: no placeholders, "
            "no text copied between sections.", section="6.5 A model card generated from the registry")
def card_sections(ctx):
    """model_card.md has every section (intended use, data, metrics, limitations, ethics), each with its own real text."""
    sections = _sections(ctx.read_text(ctx.output(CARD)))
    bodies = {name: next((b for title, b in sections.items() if title.startswith(name.lower())), None)
              for name in CARD_SECTIONS}
    problems = []
    for name, body in bodies.items():
        if body is None:
            problems.append(f"no '## {name}' section")
        elif PLACEHOLDERS.search(body):
            problems.append(f"'## {name}' still holds a placeholder ({PLACEHOLDERS.search(body).group(0).strip()!r})")
        elif name == "Metrics":
            if len(body.strip()) < 40:
                problems.append(f"'## {name}' holds {len(body.strip())} characters: keep the generated table")
        else:
            others = {n: b for n, b in bodies.items() if n not in (name, "Metrics") and b}
            problem = _filler(name, body.split("\n- **Data version")[0], others)
            if problem:
                problems.append(problem)
    if problems:
        raise Fail(f"{CARD}: " + "; ".join(problems))


@CHECKS.add(points=2, depends=("model_registered",), hint="Generate the card after the gate, from the champion "
            "alias: model_card(MODEL_NAME, 'champion', ...).", section="6.5 A model card generated from the registry")
def card_matches_registry(ctx):
    """The card names the champion's version and run, and its metrics and data version are the registry's."""
    card = ctx.read_text(ctx.output(CARD))
    registry = _registry(ctx)
    version = registry["aliases"].get("champion")
    if version not in registry["versions"]:
        raise Fail(f"{MODEL_NAME} has no champion alias (aliases: {registry['aliases'] or 'none'}), so the card "
                   "cannot be compared with it")
    run = registry["versions"][version].get("run") or {"run_id": "?", "metrics": {}, "tags": {}}
    problems = []
    if MODEL_NAME not in card:
        problems.append(f"the model name {MODEL_NAME} is missing")
    named = re.findall(r"\bversion\W+(\d+)\b", card, re.IGNORECASE)
    if version not in named:
        stale = f" (it names version {named[0]}: generated before the gate moved the alias?)" if named else ""
        problems.append(f"it does not name the champion's version ({version}){stale}")
    if run["run_id"] not in card:
        problems.append(f"it does not name the champion's source run ({run['run_id']})")
    metrics_text = next((b for t, b in _sections(card).items() if t.startswith("metrics")), "")
    for key in ("roc_auc", "cv_roc_auc"):
        value = run["metrics"].get(key)
        if not isinstance(value, float) or not math.isfinite(value):
            problems.append(f"the champion's run has no finite {key}")
        elif not any(f"{value:.{d}f}" in metrics_text for d in (3, 4)):
            problems.append(f"its Metrics section lacks {key} = {value:.4f} of the champion's run")
    data_version = run["tags"].get("data_version", "unknown")
    if data_version != "unknown" and data_version not in card:
        problems.append(f"it does not give the champion's data version ({data_version})")
    if problems:
        raise Fail(f"{CARD} does not match the registry: " + "; ".join(problems))
    ctx.figure("champion_version", version, f"the registered champion of {MODEL_NAME}, read from the registry")
    ctx.figure("champion_roc_auc", run["metrics"]["roc_auc"], "the champion run's logged ROC AUC, as the registry has it")
    ctx.figure("model_card", card[:CARD_SHOWN], "model card (its version, run, metrics and data version checked "
               "against the registry)", "markdown")
