"""Probe a learner's deep-learning artifacts in a fresh sandboxed process (lab 13; the harness writes result.json).

Runs inside the sandbox: it must not import the grader. It loads `model.pt` (tensors only) into the lesson's
architecture built from `config.json`, runs the learner's TorchScript file and ONNX graph (onnxruntime, CPU) on the
grader's images, and returns what each gave — the grader judges. Inputs are .npy files; labels never come here.

Modes: `artifacts` — the state_dict's weights and logits, TorchScript's logits twice (a dropout left on shows as
two answers), the ONNX contract (onnx.checker, names, axes) and onnxruntime's logits at the batch sizes given;
`holdout` — only the saved model's predicted labels for the images.
"""

import json
import os
import sys
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # the harness, beside this file (-I drops it)
from harness import probe_main  # noqa: E402

MAX_BYTES = {"config.json": 64 * 2**10, "model.pt": 16 * 2**20, "model.ts": 32 * 2**20, "model.onnx": 32 * 2**20}


def add_arguments(parser) -> None:
    parser.add_argument("--dir", required=True)  # the learner's output dir, relative to the work dir
    parser.add_argument("--mode", choices=("artifacts", "holdout"), default="artifacts")


def _file(folder: Path, name: str) -> Path:
    path = folder / name
    if os.path.islink(path) or not path.is_file():
        raise FileNotFoundError(f"{name} was not found (or is not a regular file)")
    if path.stat().st_size > MAX_BYTES[name]:
        raise ValueError(f"{name} is {path.stat().st_size} bytes, more than {MAX_BYTES[name]} allowed")
    return path


def _error(err: Exception) -> str:
    return f"{type(err).__name__}: {err}"[:600]


def _rounded(array) -> list:
    import numpy as np

    return np.asarray(array, dtype=np.float64).round(7).tolist()


def saved_model(folder: Path):
    """(model in eval mode, config): the lesson's architecture for config.json, filled from model.pt."""
    import torch

    from mlops_kit import dl

    config = json.loads(_file(folder, "config.json").read_text())
    if not isinstance(config, dict):
        raise ValueError("config.json does not hold a JSON object")
    model = dl.build_model(config)
    state = torch.load(_file(folder, "model.pt"), map_location="cpu", weights_only=True)
    if not isinstance(state, dict):
        raise ValueError(f"model.pt holds a {type(state).__name__}, not a state_dict (a dict of tensors)")
    model.load_state_dict(state)
    return model.eval(), config


def run(args, inputs) -> dict:
    import numpy as np
    import torch

    from mlops_kit import dl

    torch.set_num_threads(1)
    folder = Path(args.work) / args.dir
    images = np.asarray(inputs["images"], dtype=np.float32)
    result = {}
    try:
        model, config = saved_model(folder)
        logits = dl.logits_of(model, images)
    except Exception as err:  # noqa: BLE001 — the learner's files: any failure is theirs to read
        result["model"] = {"error": _error(err)}
        if args.mode == "holdout":
            return result
    else:
        if args.mode == "holdout":
            return {"model": {"predictions": logits.argmax(axis=1).tolist()}}
        result["model"] = {"config": config, "logits": _rounded(logits),
                           "weights": {k: _rounded(v.flatten()) for k, v in model.state_dict().items()}}
    sizes = [int(s) for s in inputs["batch_sizes"]]
    try:
        scripted = torch.jit.load(str(_file(folder, "model.ts")), map_location="cpu")
        with torch.no_grad():
            first, second = (scripted(torch.from_numpy(images)).numpy() for _ in range(2))
            single = scripted(torch.from_numpy(images[:1])).numpy()
        result["torchscript"] = {"logits": _rounded(first), "again": _rounded(second), "single": _rounded(single)}
    except Exception as err:  # noqa: BLE001
        result["torchscript"] = {"error": _error(err)}
    try:
        path = _file(folder, "model.onnx")
        result["onnx"] = {"contract": dl.onnx_contract(path)}
    except Exception as err:  # noqa: BLE001 — onnx.checker's complaint included
        result["onnx"] = {"error": _error(err)}
        return result
    import onnxruntime as ort

    runs = {}
    try:
        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        name = session.get_inputs()[0].name
        for size in sizes:
            try:
                runs[str(size)] = _rounded(session.run(None, {name: images[:size]})[0])
            except Exception as err:  # noqa: BLE001 — a fixed batch axis fails here
                runs[str(size)] = {"error": _error(err)}
    except Exception as err:  # noqa: BLE001
        result["onnx"]["session_error"] = _error(err)
    result["onnx"]["runs"] = runs
    return result


if __name__ == "__main__":
    probe_main(run, add_arguments, not_needed=("rfc3987_syntax",))
