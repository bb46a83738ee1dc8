"""`make gpu-check`: week 13's GPU half in one go, on a machine with an NVIDIA GPU.

With a CUDA device: a few epochs of training on CUDA; TorchScript parity on CUDA and ONNX parity on onnxruntime's
CUDA provider (where the installed onnxruntime has it; said when not); the lab's reference service served on CUDA
and asked for /predict and /metadata; and GPU vs CPU latency and throughput at batch sizes 1, 32 and 256, printed
as a table. Exits 1 when a GPU step fails.

Without one: prints what it skipped and why, and exits 0 (a laptop or a CI runner is not a failure).
`--rehearse-on-cpu` runs every step on the CPU instead (the script's own test where there is no GPU).
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
STEPS = ("training on CUDA", "TorchScript parity on CUDA", "ONNX parity on onnxruntime's CUDA provider",
         "serving on CUDA (/metadata says cuda)", "GPU vs CPU latency and throughput at batch sizes 1, 32, 256")
BATCH_SIZES = (1, 32, 256)


def skip(reason: str) -> int:
    print(f"gpu-check: skipped — {reason}")
    for step in STEPS:
        print(f"  skipped: {step}")
    return 0


def table(rows: list[dict]) -> str:
    columns = list(rows[0])
    widths = [max(len(str(c)), *(len(str(r[c])) for r in rows)) for c in columns]
    lines = ["  ".join(str(c).rjust(w) for c, w in zip(columns, widths))]
    lines += ["  ".join(str(r[c]).rjust(w) for c, w in zip(columns, widths)) for r in rows]
    return "\n".join(lines)


def post(url: str, body: dict) -> object:
    request = urllib.request.Request(url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=60) as answer:
        return json.loads(answer.read())


def main(device: str = "cuda") -> int:
    try:
        import torch
    except ImportError as err:  # pragma: no cover, the course's venv has PyTorch
        return skip(f"PyTorch is not installed ({err})")
    if device == "cuda" and not torch.cuda.is_available():
        import shutil

        if shutil.which("nvidia-smi") and not torch.version.cuda:  # a GPU, but the lock's CPU-only PyTorch
            return skip(f"this machine has an NVIDIA GPU (nvidia-smi), but PyTorch {torch.__version__} is the lock's "
                        f"CPU-only build: `.venv/bin/pip install torch=={torch.__version__.split('+')[0]} --index-url "
                        "https://download.pytorch.org/whl/cu126` (or the CUDA version your driver supports), then "
                        "run make gpu-check again")
        return skip(f"no CUDA device: torch.cuda.is_available() is False (PyTorch {torch.__version__}, built for "
                    f"CUDA {torch.version.cuda or 'none: a CPU-only build'})")
    import numpy as np

    from mlops_kit import dl

    failures, notes = [], []
    name = torch.cuda.get_device_name(0) if device == "cuda" else "the CPU (a rehearsal: --rehearse-on-cpu)"
    print(f"gpu-check on {name} (PyTorch {torch.__version__}, CUDA {torch.version.cuda})")
    images, labels = dl.digits_arrays()
    X_train, X_val, y_train, y_val = dl.split_digits(images, labels, 0.2, 0)

    start = time.perf_counter()
    model, history = dl.fit(dict(dl.CONFIG, epochs=3), X_train, y_train, X_val, y_val, seed=0, device=device)
    seconds = time.perf_counter() - start
    accuracy = dl.accuracy(model, X_val, y_val, device=device)
    print(f"1. trained {len(history)} epochs on {device} in {seconds:.1f} s: validation accuracy {accuracy:.3f}")
    if next(model.parameters()).device.type != device:
        failures.append(f"the model did not train on {device}")

    work = Path(tempfile.mkdtemp(prefix="gpu-check-"))
    cpu_model = dl.load_model(dl.save_model(model, dl.CONFIG | {"epochs": 3}, work)["config"].parent)
    dl.export_torchscript(cpu_model, work / dl.TORCHSCRIPT)
    dl.export_onnx(cpu_model, work / dl.ONNX)
    sample = X_val[:256]
    eager = dl.logits_of(model, sample, device=device)
    scripted = torch.jit.load(str(work / dl.TORCHSCRIPT), map_location=device).eval()
    ts_gap = float(np.abs(dl.logits_of(scripted, sample, device=device) - eager).max())
    print(f"2. TorchScript on {device} vs eager on {device}: largest logit difference {ts_gap:.2e} (tolerance {dl.PARITY_ATOL})")
    if ts_gap > dl.PARITY_ATOL:
        failures.append(f"TorchScript parity on {device}: {ts_gap:.2e}")
    import onnxruntime as ort

    providers = ort.get_available_providers()
    provider = "CUDAExecutionProvider" if "CUDAExecutionProvider" in providers else "CPUExecutionProvider"
    if provider != "CUDAExecutionProvider":
        notes.append(f"onnxruntime {ort.__version__} has no CUDA provider ({providers}): ONNX parity ran on the CPU "
                     "(install onnxruntime-gpu for the CUDA provider)")
    session = ort.InferenceSession(str(work / dl.ONNX), providers=[provider])
    onnx_gap = float(np.abs(session.run([dl.OUTPUT_NAME], {dl.INPUT_NAME: sample})[0] - eager).max())
    print(f"3. onnxruntime ({provider}) vs eager on {device}: largest logit difference {onnx_gap:.2e}")
    if onnx_gap > dl.PARITY_ATOL:
        failures.append(f"ONNX parity on {provider}: {onnx_gap:.2e}")

    from grader.checks import lab13
    from grader.checks.common import solution_file
    from mlops_kit.serving import free_port, start_service, stop_service

    (work / "service.py").write_text(solution_file(lab13.LAB, "service.py"))
    port = free_port()
    proc = start_service(work, "service:DigitsClassifier", port, timeout=180)
    try:
        served = post(f"http://127.0.0.1:{port}/predict", {"images": sample[:37].tolist()})
        metadata = post(f"http://127.0.0.1:{port}/metadata", {})
    finally:
        stop_service(proc)
    right = served == eager[:37].argmax(axis=1).tolist()
    print(f"4. the lab's service on {metadata.get('device')}: /metadata {metadata}; labels as eager: {right}")
    if metadata.get("device") != device or not right:
        failures.append(f"serving on {device}: device {metadata.get('device')!r}, labels right: {right}")

    rows = []
    for where, runner in (("cpu", cpu_model), (device, model)) if device == "cuda" else (("cpu", cpu_model),):
        def predict(batch, runner=runner, where=where):
            with torch.inference_mode():
                out = runner(torch.as_tensor(batch, device=where)).argmax(1)
                if where == "cuda":
                    torch.cuda.synchronize()
                return out

        for row in dl.batch_benchmark(predict, X_val, BATCH_SIZES, seconds=0.5, threads=None):
            rows.append({"device": where, **row})
    print("5. latency and throughput (eager, inference mode, median of each batch size):")
    print(table(rows))
    for note in notes:
        print(f"note: {note}")
    if failures:
        print("gpu-check FAILED: " + "; ".join(failures))
        return 1
    print(f"gpu-check: all steps passed on {device}")
    return 0


if __name__ == "__main__":
    sys.exit(main("cpu" if "--rehearse-on-cpu" in sys.argv[1:] else "cuda"))
