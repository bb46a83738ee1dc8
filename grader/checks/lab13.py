"""Lab 13 — Deep learning: the learner's state_dict is loaded into the lesson's architecture in a probe and scored on
a holdout drawn from the installation's secret; the training is rerun at the run's seed from the learner's config;
TorchScript and onnxruntime are run on the grader's images and compared with the eager model; the ONNX graph is
checked (onnx.checker, names, dynamic batch axis); the BentoML service is served and asked where it runs; the GPU
overlay is rendered by kustomize, validated, and judged against the learner's own kind config. Where a CUDA device
or a GPU cluster is reachable, the live checks run; elsewhere they say why they are skipped."""

from __future__ import annotations

import json

import numpy as np

from grader.checks.common import Checks, Fail, Partial, Unavailable, learner_yaml, log_tail, require_keys
from grader.labs import Lab
from grader.sandbox import Limits
from grader.secret import seed_for

LAB = Lab(
    id="13_deep_learning",
    title="Train, export and serve a CNN, on a CPU or a GPU",
    week=13,
    minutes=80,
    objectives=(
        "train a small PyTorch CNN reproducibly, with early stopping, and save it as a state_dict and a config",
        "export it to TorchScript and to ONNX with named inputs and a dynamic batch axis, and test their parity",
        "serve it with BentoML on CUDA when there is a GPU and on the CPU otherwise, with adaptive batching",
        "write a Kubernetes GPU overlay and a kind cluster with a GPU node whose taints and labels it matches",
    ),
    lesson="curriculum/13_deep_learning.ipynb",
    seed=53,
    timeout=180,
    cell_timeout=120,
    budget=300,
    not_needed=("rfc3987_syntax",),  # this lab needs PyTorch in the notebook
)

CHECKS = Checks()
DATA, HOLDOUT = "data/digits.npz", 360  # the grader keeps 360 of the 1 797 digits; the notebook gets the rest
SAMPLE, BATCH_SIZES = 37, (1, 37)  # the grader's images per parity run, and the batch sizes onnxruntime must take
ACCURACY_FULL, ACCURACY_MIN = 0.93, 0.8  # holdout accuracy for full credit; below the minimum, none
WEIGHT_TOLERANCE = 1e-5  # a retrain at the same seed on one thread gives the same weights, up to float printing
MAX_EPOCHS, MAX_PATIENCE = 40, 5
SERVICE, KIND = "service.py", "kind-gpu.yaml"
REPEATS = 16  # the batch is sent this often: a model serving with dropout on flips some label in one of them
OVERLAY = "k8s/overlays/gpu"
PROBE_LIMITS, RETRAIN_LIMITS, SERVE_LIMITS = Limits(wall_seconds=90), Limits(wall_seconds=90), Limits(wall_seconds=150)


def prepare(work):
    """The digits minus a holdout drawn from the installation's secret: the public rows go to the notebook, the
    holdout stays here."""
    from mlops_kit.dl import digits_arrays, save_digits

    images, labels = digits_arrays()
    order = np.random.default_rng(seed_for(LAB.id, "holdout")).permutation(len(images))
    held, public = np.sort(order[:HOLDOUT]), np.sort(order[HOLDOUT:])
    save_digits(work / DATA, images[public], labels[public])
    params = {"seed": LAB.seed, "data_path": DATA, "output_dir": "outputs"}
    return params, {"public": (images[public], labels[public]), "holdout": (images[held], labels[held])}


def public_data(ctx) -> tuple[np.ndarray, np.ndarray]:
    """The digits the notebook was given: the grader's copy when grading, the learner's file in a self-check."""
    if "public" in ctx.hidden:
        return ctx.hidden["public"]
    from pathlib import Path

    from mlops_kit.dl import load_digits_file

    try:  # a self-check: the learner's own file, on their own machine
        return load_digits_file(Path(ctx.work) / ctx.params["data_path"])
    except (OSError, ValueError, KeyError) as err:
        raise Fail(f"the lab's data {ctx.params.get('data_path')} could not be read: {err}") from None


def grader_images(ctx) -> np.ndarray:
    """SAMPLE public images chosen at the run's seed, with a little noise: inputs nobody exported on."""
    images, _ = public_data(ctx)
    rng = np.random.default_rng(int(ctx.params["seed"]) + 13)
    chosen = images[rng.choice(len(images), SAMPLE, replace=False)]
    return np.clip(chosen + rng.normal(0, 0.05, chosen.shape), 0, 1).astype(np.float32)


def artifacts(ctx) -> dict:
    """What the probe found in the learner's files on the grader's images (once per submission)."""
    result = ctx.probe("dl_probe", {"images": grader_images(ctx), "batch_sizes": np.array(BATCH_SIZES)},
                       args=("--dir", ctx.params.get("output_dir", "outputs"), "--mode", "artifacts"),
                       limits=PROBE_LIMITS)
    return result


def _model(ctx) -> dict:
    found = artifacts(ctx).get("model", {})
    if "error" in found:
        raise Fail(f"the saved model could not be loaded into the lesson's architecture: {found['error']}"
                   f"{ctx.why_missing() if 'not found' in found['error'] else ''}")
    return found


def _largest_difference(a, b) -> float:
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.shape != b.shape:
        raise Fail(f"the outputs have shape {b.shape}, the eager model's {a.shape} (one row of 10 logits per image)")
    return float(np.abs(a - b).max())


# --- training and the saved model -----------------------------------------------------------------------


@CHECKS.add(points=2, hint="dl.save_model(model, config, output_dir): model.pt holds model.state_dict(), "
            "config.json the config that rebuilds it (channels, dropout, ...)",
            section="13.5 Saving: a state_dict and a config")
def model_saved(ctx):
    """model.pt is a state_dict that loads (strictly, tensors only) into the lesson's architecture built from
    config.json."""
    found = _model(ctx)
    config = require_keys(found["config"], tuple(k for k in ("channels", "dropout", "epochs", "batch_size", "lr",
                                                             "patience", "val_size")), "config.json")
    if not isinstance(config["channels"], list) or len(config["channels"]) != 2:
        raise Fail(f"config.json's channels is {config['channels']!r}: two numbers, one per convolution")


def _history(ctx) -> list:
    path = f"{ctx.params.get('output_dir', 'outputs')}/history.json"
    history = ctx.read_json(path)
    if not isinstance(history, list) or not history or not all(isinstance(h, dict) for h in history):
        raise Fail("history.json must hold the list of per-epoch dicts dl.fit returns")
    return history


def retrained(ctx, config: dict) -> dict:
    """The lesson's `fit` of `config` at the run's seed on the notebook's data, in the grader (once)."""
    def compute() -> dict:
        import torch

        from mlops_kit import dl

        images, labels = public_data(ctx)
        X_train, X_val, y_train, y_val = dl.split_digits(images, labels, float(config["val_size"]),
                                                         int(ctx.params["seed"]))
        model, history = dl.fit(config, X_train, y_train, X_val, y_val, seed=int(ctx.params["seed"]))
        with torch.no_grad():
            weights = {k: v.flatten().double().numpy() for k, v in model.state_dict().items()}
        return {"weights": weights, "epochs": len(history), "best": dl.best_epoch(history)["epoch"]}

    return ctx.once(f"retrain:{json.dumps(config, sort_keys=True)}:{ctx.params['seed']}", compute)


@CHECKS.add(points=3, hint="train with dl.fit(config, ..., seed=seed) on dl.split_digits(images, labels, "
            "config['val_size'], seed): the seed parameter, never a number typed in (the grader passes another)",
            section="13.4 Deterministic training with early stopping", depends=("model_saved",))
def training_reproducible(ctx):
    """Retraining the saved config at the run's seed on the lab's data gives the saved weights and the saved
    history's length (seeded training, early stopping)."""
    config = _model(ctx)["config"]
    try:
        epochs, patience = int(config["epochs"]), int(config["patience"])
        lr, val_size, batch_size = float(config["lr"]), float(config["val_size"]), int(config["batch_size"])
        channels, dropout = [int(c) for c in config["channels"]], float(config["dropout"])
    except (TypeError, ValueError) as err:
        raise Fail(f"config.json holds a value fit cannot use: {err}") from None
    if not (0 < lr <= 1 and 0.05 <= val_size <= 0.5 and 8 <= batch_size <= 512 and all(1 <= c <= 64 for c in channels)
            and 0 <= dropout < 1):
        raise Fail(f"config.json is outside what the lab trains (lr in (0, 1], val_size in [0.05, 0.5], batch_size "
                   f"8-512, 1-64 channels per convolution, dropout in [0, 1)): {config}")
    # the grader's own process retrains: only the checked numbers reach fit
    config = {"channels": channels, "dropout": dropout, "epochs": epochs, "batch_size": batch_size, "lr": lr,
              "patience": patience, "val_size": val_size}
    if not 1 <= epochs <= MAX_EPOCHS or not 1 <= patience <= MAX_PATIENCE:
        raise Fail(f"config.json asks for {epochs} epochs with patience {patience}: at most {MAX_EPOCHS} epochs and "
                   f"a patience of 1 to {MAX_PATIENCE} (early stopping decides the rest)")
    history = _history(ctx)
    expected = retrained(ctx, config)
    saved = _model(ctx)["weights"]
    if set(saved) != set(expected["weights"]):
        raise Fail(f"model.pt holds {sorted(saved)}, the retrained model {sorted(expected['weights'])}")
    worst = max(float(np.abs(np.asarray(saved[k]) - expected["weights"][k]).max()) for k in saved)
    if worst > WEIGHT_TOLERANCE:
        raise Fail(f"retraining your config at this run's seed ({ctx.params['seed']}) gives other weights (largest "
                   f"difference {worst:.3g}): train with seed=seed, on the split dl.split_digits makes at that seed")
    if len(history) != expected["epochs"]:
        raise Fail(f"history.json has {len(history)} epochs; the retrain stopped early after {expected['epochs']} "
                   "(save the history fit returned with the model)")


@CHECKS.add(points=3, hint="the lesson's settings reach about 0.97; a model left untrained, or trained on a few "
            "epochs, does not", section="13.4 Deterministic training with early stopping", visible=False,
            depends=("model_saved",))
def holdout_accuracy(ctx):
    """The saved model classifies digits it never saw (a holdout the grader kept) at least 93 % right."""
    images, labels = ctx.hidden["holdout"]
    result = ctx.probe("dl_probe", {"images": images, "batch_sizes": np.array(BATCH_SIZES)},
                       args=("--dir", ctx.params.get("output_dir", "outputs"), "--mode", "holdout"),
                       limits=PROBE_LIMITS, secret=True)
    found = result.get("model", {})
    if "error" in found:
        raise Fail(f"the saved model could not be loaded: {found['error']}")
    predictions = np.asarray(found.get("predictions", []))
    if predictions.shape != labels.shape:
        raise Fail(f"{predictions.size} predictions for {labels.size} holdout images")
    score = float((predictions == labels).mean())
    ctx.figure("holdout_accuracy", score, "accuracy on digits the grader kept back", f"of {len(labels)} images")
    message = f"holdout accuracy {score:.3f} on {len(labels)} unseen digits (full credit from {ACCURACY_FULL})"
    if score >= ACCURACY_FULL:
        return None
    if score < ACCURACY_MIN:
        raise Fail(message + f"; below {ACCURACY_MIN} earns none")
    return Partial((score - ACCURACY_MIN) / (ACCURACY_FULL - ACCURACY_MIN), message)


# --- the exports ---------------------------------------------------------------------------------------------


@CHECKS.add(points=3, hint="model.eval() before torch.jit.trace: a module traced in train mode keeps its dropout, "
            "and answers differently each call", section="13.7 Parity: eager, TorchScript, onnxruntime",
            depends=("model_saved",))
def torchscript_parity(ctx):
    """model.ts gives the saved model's logits on the grader's images (within PARITY_ATOL), the same twice, and
    takes a batch of one."""
    from mlops_kit.dl import PARITY_ATOL

    eager = _model(ctx)["logits"]
    found = artifacts(ctx).get("torchscript", {})
    if "error" in found:
        raise Fail(f"model.ts could not be loaded or run with torch.jit.load: {found['error']}"
                   f"{ctx.why_missing() if 'not found' in found['error'] else ''}")
    flicker = _largest_difference(found["logits"], found["again"])
    if flicker > 0:
        raise Fail(f"model.ts answers the same images differently on two calls (by up to {flicker:.3g}): it was traced "
                   "in train mode, with dropout on — call model.eval() before tracing")
    worst = _largest_difference(eager, found["logits"])
    ctx.figure("torchscript_max_diff", worst, "largest |eager − TorchScript| logit difference, recomputed")
    if worst > PARITY_ATOL:
        raise Fail(f"model.ts's logits differ from the saved state_dict's by up to {worst:.3g} (tolerance "
                   f"{PARITY_ATOL:g}): export the model you saved, after load_state_dict and eval()")
    single = _largest_difference(np.asarray(eager)[:1], found["single"])
    if single > PARITY_ATOL:
        raise Fail(f"on a batch of one image model.ts differs from the eager model by {single:.3g}")


@CHECKS.add(points=2, hint="torch.onnx.export(..., input_names=['images'], output_names=['logits'], "
            "dynamic_axes={'images': {0: 'batch'}, 'logits': {0: 'batch'}})",
            section="13.6 Exporting: TorchScript and ONNX")
def onnx_contract(ctx):
    """model.onnx passes onnx.checker (full check) and declares one input `images` (batch, 1, 8, 8) and one output
    `logits` (batch, 10), with a symbolic batch axis."""
    from mlops_kit.dl import contract_problems

    found = artifacts(ctx).get("onnx", {})
    if "error" in found and "contract" not in found:
        raise Fail(f"model.onnx is not a valid ONNX model: {found['error']}"
                   f"{ctx.why_missing() if 'not found' in found['error'] else ''}")
    problems = contract_problems(found["contract"])
    if problems:
        raise Fail("; ".join(problems))


@CHECKS.add(points=3, hint="export the model you saved, in eval mode, with a dynamic batch axis: onnxruntime must "
            "take 1 image and 37", section="13.7 Parity: eager, TorchScript, onnxruntime", depends=("model_saved",))
def onnx_parity(ctx):
    """onnxruntime (CPU) gives the saved model's logits on the grader's images within PARITY_ATOL, at batch sizes
    1 and 37."""
    from mlops_kit.dl import PARITY_ATOL

    eager = np.asarray(_model(ctx)["logits"])
    found = artifacts(ctx).get("onnx", {})
    if "contract" not in found:
        raise Fail(f"model.onnx could not be loaded: {found.get('error', 'no result')}"
                   f"{ctx.why_missing() if 'not found' in str(found.get('error')) else ''}")
    if "session_error" in found:
        raise Fail(f"onnxruntime could not load model.onnx: {found['session_error']}")
    problems = []
    for size in BATCH_SIZES:
        run = found.get("runs", {}).get(str(size), {"error": "it was not run"})
        if isinstance(run, dict):
            error = " ".join(str(run.get("error")).split())[:300]
            hint = " — the batch axis is fixed: declare it in dynamic_axes" if "dimensions" in error else ""
            problems.append(f"a batch of {size} failed in onnxruntime: {error}{hint}")
            continue
        worst = _largest_difference(eager[:size], run)
        ctx.figure(f"onnx_max_diff_batch_{size}", worst,
                   f"largest |eager − onnxruntime| logit difference at batch size {size}, recomputed")
        if worst > PARITY_ATOL:
            problems.append(f"at batch size {size} onnxruntime's logits differ from the eager model's by up to "
                            f"{worst:.3g} (tolerance {PARITY_ATOL:g})")
    if problems:
        raise Fail("; ".join(problems))


# --- the service ---------------------------------------------------------------------------------------------


def expected_device() -> str:
    """What the service must say here: cuda where the grader's PyTorch sees a CUDA device, else cpu."""
    try:
        import torch

        return "cuda" if torch.cuda.is_available() else "cpu"
    except ImportError:
        return "cpu"


def served(ctx, env: dict | None = None, label: str = "digits") -> dict:
    """Serve service.py from output_dir and ask it: a batch of 37, one image, /metadata, /schema.json, and 24
    concurrent single-image requests (what adaptive batching gathers)."""
    from grader.checks.lab07 import service_command

    if not ctx.exists(ctx.output(SERVICE)):
        raise Fail(f"{SERVICE} was not written{ctx.why_missing()}")
    images = grader_images(ctx)
    requests = [{"name": f"batch_{i}", "method": "POST", "path": "/predict", "json": {"images": images.tolist()},
                 "timeout": 60} for i in range(REPEATS)]
    requests += [{"name": "single", "method": "POST", "path": "/predict", "json": {"images": images[:1].tolist()},
                 "timeout": 60},
                {"name": "metadata", "method": "POST", "path": "/metadata", "json": {}},
                {"name": "schema", "method": "GET", "path": "/schema.json"}]
    plan = {"command": service_command("service:DigitsClassifier", "."), "cwd": ctx.params.get("output_dir", "outputs"),
            "env": {"BENTOML_DO_NOT_TRACK": "true", **(env or {})}, "port": 8080, "health": "/readyz",
            "ready_seconds": 90, "requests": requests, "stop_grace": 5, "not_needed": ["rfc3987_syntax"],
            "load": {"method": "POST", "path": "/predict", "json": {"images": images[1:2].tolist()},
                     "requests": 24, "concurrency": 8, "seconds": 20, "timeout": 20}}
    result = ctx.serve(plan, limits=SERVE_LIMITS, label=label)
    if not result.get("ready"):
        raise Fail(f"the service never became ready: {result.get('startup')}; its log: "
                   f"{log_tail(result.get('stderr_tail', ''), 6)}")
    return result


def _labels(answer: dict, count: int, what: str) -> list:
    if answer.get("status") != 200:
        raise Fail(f"{what} was answered {answer.get('status', answer.get('error'))}: {str(answer.get('text', ''))[:200]}")
    got = answer.get("json")
    if not isinstance(got, list) or len(got) != count or not all(isinstance(v, int) for v in got):
        raise Fail(f"{what} was answered {str(got)[:120]}, not a list of {count} integer labels")
    return got


@CHECKS.add(points=3, hint="predict(self, images: np.ndarray) -> np.ndarray of labels: model(batch).argmax(1)."
            "cpu().numpy(); the model is model.ts, loaded from the service's own folder",
            section="13.9 Serving with BentoML: adaptive batching", depends=("model_saved",))
def service_answers(ctx):
    """The served service labels a batch of 37 of the grader's images (sent 16 times) and a single one as the saved
    model does, the same every time."""
    result = served(ctx)
    responses = result["responses"]
    batches = [_labels(responses.get(f"batch_{i}", {}), SAMPLE, "POST /predict with 37 images") for i in range(REPEATS)]
    single = _labels(responses.get("single", {}), 1, "POST /predict with one image")
    expected = np.asarray(_model(ctx)["logits"]).argmax(axis=1).tolist()
    wrong = sum(a != b for batch in batches for a, b in zip(batch, expected))
    if any(batch != batches[0] for batch in batches):
        raise Fail(f"the same 37 images sent {REPEATS} times got different labels ({wrong} of {REPEATS * SAMPLE} answers "
                   "differ from the saved model's): the served model runs with dropout on — trace it after eval()")
    if wrong or single != expected[:1]:
        raise Fail(f"the service's labels differ from the saved model's on {wrong // REPEATS} of {SAMPLE} images"
                   f"{'' if single == expected[:1] else ' and on the single one'}: serve the model you exported")


@CHECKS.add(points=2, hint="choose the device when the service starts: 'cuda' if torch.cuda.is_available() else "
            "'cpu'; load the model there and return it as metadata()['device']",
            section="13.8 Choosing the device", depends=("service_answers",))
def service_device(ctx):
    """/metadata says which device the model runs on, and it is the right one for this machine (cpu without CUDA)."""
    answer = served(ctx)["responses"].get("metadata", {})
    if answer.get("status") != 200 or not isinstance(answer.get("json"), dict):
        raise Fail(f"POST /metadata was answered {answer.get('status', answer.get('error'))}, not a JSON object")
    device = answer["json"].get("device")
    want = expected_device()
    if device != want:
        raise Fail(f"/metadata says device {device!r}; on this machine (CUDA {'available' if want == 'cuda' else 'absent'})"
                   f" the model must run on {want!r} — decide from torch.cuda.is_available(), and report the device "
                   "the model was loaded on")


@CHECKS.add(points=1, hint="@bentoml.api(batchable=True, batch_dim=0, max_batch_size=..., max_latency_ms=10_000): "
            "a cap of a few ms refuses requests with 503 'process is overloaded'",
            section="13.9 Serving with BentoML: adaptive batching", depends=("service_answers",))
def adaptive_batching(ctx):
    """/schema.json shows predict as batchable, and 24 concurrent single-image requests are all answered."""
    result = served(ctx)
    answer = result["responses"].get("schema", {})
    routes = (answer.get("json") or {}).get("routes") if isinstance(answer.get("json"), dict) else None
    predict = [r for r in routes or [] if isinstance(r, dict) and r.get("route") == "/predict"]
    if not predict or predict[0].get("batchable") is not True:
        raise Fail("BentoML's /schema.json does not show /predict as batchable: declare it with "
                   "@bentoml.api(batchable=True, ...)")
    load = result.get("load") or {}
    if load.get("ok") != load.get("sent") or not load.get("sent"):
        raise Fail(f"of {load.get('sent', 0)} concurrent single-image requests {load.get('ok', 0)} were answered 200 "
                   f"(statuses {load.get('statuses')}): a too-short max_latency_ms makes the batcher refuse them")


@CHECKS.add(points=3, hint="on a machine with an NVIDIA GPU: /metadata must say 'cuda' — a service that hard-codes "
            "'cpu' passes on a laptop and wastes the GPU node it was scheduled on",
            section="13.8 Choosing the device", depends=("service_answers",), runs_only_with="a CUDA device")
def service_on_cuda(ctx):
    """Where the grader sees a CUDA device, the served service runs on it and says "cuda" in /metadata."""
    if expected_device() != "cuda":
        raise Unavailable("no CUDA device: PyTorch here sees none (torch.cuda.is_available() is False)")
    answer = served(ctx)["responses"].get("metadata", {})
    device = (answer.get("json") or {}).get("device") if isinstance(answer.get("json"), dict) else None
    if device != "cuda":
        raise Fail(f"with a CUDA device present, /metadata says device {device!r}, not 'cuda'")


# --- Kubernetes: the GPU overlay and the kind cluster -------------------------------------------------------------


def rendered(ctx) -> list[dict]:
    """The objects `kubectl kustomize` builds from the gpu overlay, rendered in a probe as the learner."""
    relative = OVERLAY
    if not ctx.exists(ctx.output(f"{relative}/kustomization.yaml")):
        raise Fail(f"{relative}/kustomization.yaml was not written{ctx.why_missing()}")
    plan = {"renders": [relative]}
    result = ctx.probe("ci_probe", {"plan": np.array(json.dumps(plan))}, args=("--repo", ctx.output("").rstrip("/")),
                       limits=Limits(wall_seconds=90))
    entry = (result.get("renders") or {}).get(relative, {"error": "it was not rendered"})
    if "skipped" in entry:
        raise Fail(f"skipped: {entry['skipped']} (kubectl kustomize renders the overlay; nothing else can judge it)")
    if "error" in entry:
        raise Fail(f"the gpu overlay does not build: {entry['error']}")
    return entry["objects"]


def deployment(ctx) -> dict:
    from mlops_kit.k8s import find

    found = find(rendered(ctx), "Deployment")
    if len(found) != 1:
        raise Fail(f"the gpu overlay renders {len(found)} Deployment(s), expected one")
    return found[0]


def kind_config(ctx) -> dict:
    path = ctx.output(KIND)
    if not ctx.exists(path):
        raise Fail(f"{KIND} was not written{ctx.why_missing()}")
    config = learner_yaml(ctx.read_text(path), KIND)
    if not isinstance(config, dict):
        raise Fail(f"{KIND} does not hold a mapping")
    return config


def _patch_loader(text):
    return learner_yaml(str(text), f"a kubeadmConfigPatch of {KIND}")


@CHECKS.add(points=2, hint="kubectl kustomize OUTPUT/k8s/overlays/gpu must print the manifests, valid for "
            "Kubernetes 1.32 (the overlay lists ../../base under resources:)",
            section="13.11 GPUs on Kubernetes: limits, a runtime class, taints")
def gpu_overlay_builds(ctx):
    """`kubectl kustomize` builds the gpu overlay and every object is valid against the Kubernetes API schemas."""
    from mlops_kit.k8s import KUBERNETES_VERSION, schema_errors

    errors = schema_errors(rendered(ctx))
    if errors:
        raise Fail(f"Kubernetes {KUBERNETES_VERSION} would refuse {len(errors)} thing(s): " + "; ".join(errors[:5]))


@CHECKS.add(points=3, hint="the container: resources: limits: {nvidia.com/gpu: 1} (a request, if any, equal to it); "
            "the pod: runtimeClassName: nvidia", section="13.11 GPUs on Kubernetes: limits, a runtime class, taints",
            depends=("gpu_overlay_builds",))
def gpu_resources(ctx):
    """The gpu overlay's container limits nvidia.com/gpu to whole devices and its pod uses the nvidia runtime
    class."""
    from mlops_kit.dl import gpu_limit_problems

    problems = gpu_limit_problems(deployment(ctx))
    if problems:
        raise Fail("; ".join(problems))


@CHECKS.add(points=2, hint="a worker with labels {nvidia.com/gpu.present: 'true'}, extraMounts /dev/null → "
            "/var/run/nvidia-container-devices/all, and a JoinConfiguration patch with nodeRegistration.taints",
            section="13.12 A kind cluster with a GPU")
def kind_gpu_node(ctx):
    """kind-gpu.yaml describes a kind cluster with a control-plane and a GPU worker: labelled, tainted NoSchedule,
    and given the GPU by the container toolkit's volume-mount trick."""
    from mlops_kit.dl import kind_gpu_problems

    problems = kind_gpu_problems(kind_config(ctx), load=_patch_loader)
    if problems:
        raise Fail(f"{KIND}: " + "; ".join(problems))


@CHECKS.add(points=3, hint="tolerations: [{key: nvidia.com/gpu, operator: Exists, effect: NoSchedule}] (or Equal with "
            "the taint's value); nodeSelector: a label your GPU node carries",
            section="13.11 GPUs on Kubernetes: limits, a runtime class, taints",
            depends=("gpu_overlay_builds", "kind_gpu_node"))
def gpu_scheduling(ctx):
    """The gpu overlay's pods tolerate every NoSchedule taint of kind-gpu.yaml's GPU worker and select it by its
    labels."""
    from mlops_kit.dl import gpu_nodes, scheduling_problems

    problems = scheduling_problems(deployment(ctx), gpu_nodes(kind_config(ctx), load=_patch_loader))
    if problems:
        raise Fail("; ".join(problems))


@CHECKS.add(points=2, hint="autoscaling/v2 HPA with scaleTargetRef {apiVersion: apps/v1, kind: Deployment, name: "
            "digits-service}, 1 <= minReplicas <= maxReplicas, a metric", section="13.13 Autoscaling GPUs",
            depends=("gpu_overlay_builds",))
def gpu_autoscaling(ctx):
    """The gpu overlay renders one autoscaling/v2 HPA that scales its Deployment between sane bounds on a metric."""
    from mlops_kit.dl import hpa_problems

    problems = hpa_problems(rendered(ctx), deployment(ctx))
    if problems:
        raise Fail("; ".join(problems))


def asks_for_cuda(context: str, namespace: str, service: str, port: int) -> tuple[int, str]:
    """Through a port-forward to the applied Service: GET /readyz, then POST /metadata, which must say "cuda" (a
    k8s_live.Problem when it does not). What `k8s_live.run` calls as its `forward`."""
    from grader import k8s_live

    code, text = k8s_live.request_through_port_forward(context, namespace, service, port)
    if code != 200:
        return code, text
    code, text = k8s_live.request_through_port_forward(context, namespace, service, port, path="/metadata", body=b"{}")
    if code != 200:
        raise k8s_live.Problem(f"POST /metadata through the Service answered {code}: {text[:200]}")
    try:
        device = json.loads(text).get("device")
    except (ValueError, AttributeError):
        device = None
    if device != "cuda":
        raise k8s_live.Problem(f"on the GPU node /metadata says device {device!r}, not 'cuda': the pod holds a GPU it "
                               "cannot see (runtimeClassName nvidia, the container toolkit in the kind node)")
    return code, text


@CHECKS.add(points=3, hint="kind create cluster --config kind-gpu.yaml, the toolkit, RuntimeClass and device plugin "
            "as 13.12 shows, the image loaded into kind; then grade with MLOPS_KUBE_CONTEXT=kind-gpu",
            section="13.12 A kind cluster with a GPU", depends=("gpu_resources", "gpu_scheduling"),
            runs_only_with="a Kubernetes cluster with a GPU node")
def gpu_cluster_live(ctx):
    """On the cluster MLOPS_KUBE_CONTEXT names, a node advertises nvidia.com/gpu (the device plugin runs), and the gpu
    overlay applied in a fresh namespace rolls out there, answers /readyz through a port-forward, and its /metadata
    says it runs on cuda."""
    from grader import k8s_live
    from mlops_kit.dl import GPU, GPU_LABEL

    context = k8s_live.chosen_context()  # Unavailable: no cluster named
    api = k8s_live.connect(context)  # Unavailable: the named cluster does not answer
    try:
        nodes = (k8s_live.call(api, "GET", "/api/v1/nodes") or {}).get("items") or []
        advertising = [n["metadata"]["name"] for n in nodes
                       if str(((n.get("status") or {}).get("allocatable") or {}).get(GPU, "0")) not in ("0", "")]
        labelled = [n["metadata"]["name"] for n in nodes
                    if ((n.get("metadata") or {}).get("labels") or {}).get(GPU_LABEL[0]) == GPU_LABEL[1]]
        if not advertising and not labelled:
            raise Unavailable(f"no GPU node: no node of the cluster of context {context} advertises {GPU} or carries "
                              f"the label {GPU_LABEL[0]}")
        if not advertising:
            raise Fail(f"the node(s) {labelled} are labelled as GPU nodes but advertise no {GPU}: the NVIDIA device "
                       "plugin is not running (or does not tolerate the node's taint)")
        result = k8s_live.run(api, rendered(ctx), context, forward=asks_for_cuda)
    finally:
        api.close()
    problems = list(result.problems) or ([] if result.applied else ["nothing was applied to the cluster"])
    if problems or not result.ok:
        raise Fail(f"on the cluster of context {result.context} (namespace {result.namespace}): " + "; ".join(problems))
