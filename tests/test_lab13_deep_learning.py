"""Lab 13's machinery: the GPU policy rules (tolerations, limits, kind nodes, the HPA) decide as Kubernetes does, the
probe reports what the learner's files do on the grader's images, the holdout stays out of the notebook's data,
and the checks that need a CUDA device or a GPU cluster say "skipped: why" without one and judge right with one."""

from __future__ import annotations

import argparse
import copy
import json

import numpy as np
import pytest
import torch

from grader.checks import lab13
from grader.checks.common import Fail, Unavailable
from mlops_kit import dl

TAINT = {"key": "nvidia.com/gpu", "value": "present", "effect": "NoSchedule"}


@pytest.mark.parametrize("toleration,tolerated", [
    ({"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}, True),
    ({"key": "nvidia.com/gpu", "operator": "Exists"}, True),  # no effect: every effect
    ({"key": "nvidia.com/gpu", "value": "present", "effect": "NoSchedule"}, True),  # Equal is the default
    ({"key": "nvidia.com/gpu", "operator": "Equal", "value": "true", "effect": "NoSchedule"}, False),
    ({"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoExecute"}, False),
    ({"key": "gpu", "operator": "Exists"}, False),
    ({"operator": "Exists"}, True),  # an empty key with Exists tolerates everything
    ({"value": "present"}, False),
])
def test_tolerations_match_taints_as_kubernetes_does(toleration, tolerated):
    assert (dl.untolerated([toleration], [TAINT]) == []) is tolerated


def test_prefer_no_schedule_taints_need_no_toleration():
    assert dl.untolerated([], [{**TAINT, "effect": "PreferNoSchedule"}]) == []


def _kind(worker: dict) -> dict:
    return {"kind": "Cluster", "apiVersion": "kind.x-k8s.io/v1alpha4",
            "nodes": [{"role": "control-plane"}, {"role": "worker", **worker}]}


MOUNT = {"extraMounts": [{"hostPath": "/dev/null", "containerPath": "/var/run/nvidia-container-devices/all"}]}
PATCH = "kind: JoinConfiguration\nnodeRegistration:\n  taints:\n  - {key: nvidia.com/gpu, value: present, effect: NoSchedule}\n"


def test_kind_nodes_read_labels_from_both_places_and_taints_from_the_join_patch():
    config = _kind({"kubeadmConfigPatches": [
        PATCH, "kind: JoinConfiguration\nnodeRegistration:\n  kubeletExtraArgs:\n"
               "    node-labels: nvidia.com/gpu.present=true,pool=a100\n"], **MOUNT})
    nodes = dl.gpu_nodes(config)
    assert [n["labels"] for n in nodes] == [{"nvidia.com/gpu.present": "true", "pool": "a100"}]
    assert nodes[0]["taints"] == [TAINT]
    assert dl.kind_gpu_problems(config) == []


@pytest.mark.parametrize("worker,problem", [
    ({"labels": {"nvidia.com/gpu.present": "true"}, **MOUNT}, "no NoSchedule taint"),
    ({"labels": {"gpu": "yes"}, "kubeadmConfigPatches": [PATCH], **MOUNT}, "no worker labelled"),
    ({"labels": {"nvidia.com/gpu.present": "true"}, "kubeadmConfigPatches": [PATCH]}, "nvidia-container-devices"),
])
def test_kind_configs_without_a_usable_gpu_node_are_named(worker, problem):
    assert any(problem in p for p in dl.kind_gpu_problems(_kind(worker)))


def _deployment(resources: dict, **pod) -> dict:
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "digits-service"},
            "spec": {"template": {"spec": {**pod, "containers": [{"name": "service", "resources": resources}]}}}}


@pytest.mark.parametrize("resources,pod,problem", [
    ({"limits": {"nvidia.com/gpu": 1}}, {"runtimeClassName": "nvidia"}, None),
    ({"limits": {"nvidia.com/gpu": "2"}, "requests": {"nvidia.com/gpu": "2"}}, {"runtimeClassName": "nvidia"}, None),
    ({"requests": {"nvidia.com/gpu": 1}}, {"runtimeClassName": "nvidia"}, "without a limit"),
    ({"limits": {"nvidia.com/gpu": 1}, "requests": {"nvidia.com/gpu": 2}}, {"runtimeClassName": "nvidia"},
     "must be equal"),
    ({"limits": {"nvidia.com/gpu": "500m"}}, {"runtimeClassName": "nvidia"}, "whole devices"),
    ({"limits": {"cpu": "1"}}, {"runtimeClassName": "nvidia"}, "no container has"),
    ({"limits": {"nvidia.com/gpu": 1}}, {}, "runtimeClassName is None"),
])
def test_gpu_limits(resources, pod, problem):
    problems = dl.gpu_limit_problems(_deployment(resources, **pod))
    assert problems == [] if problem is None else any(problem in p for p in problems), problems


def test_scheduling_needs_a_selector_the_node_satisfies_and_a_toleration_for_its_taint():
    node = {"role": "worker", "labels": {"nvidia.com/gpu.present": "true"}, "taints": [TAINT]}
    good = _deployment({}, nodeSelector={"nvidia.com/gpu.present": "true"},
                       tolerations=[{"key": "nvidia.com/gpu", "operator": "Exists"}])
    assert dl.scheduling_problems(good, [node]) == []
    wrong_label = copy.deepcopy(good)
    wrong_label["spec"]["template"]["spec"]["nodeSelector"] = {"accelerator": "h100"}
    assert "is not among the GPU node's labels" in dl.scheduling_problems(wrong_label, [node])[0]
    no_toleration = _deployment({}, nodeSelector={"nvidia.com/gpu.present": "true"})
    assert "no toleration matches" in dl.scheduling_problems(no_toleration, [node])[0]
    assert dl.scheduling_problems(good, []) == ["the kind config has no GPU worker to schedule on"]


def test_hpa_rules():
    deployment = _deployment({})
    hpa = {"apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler", "metadata": {"name": "h"},
           "spec": {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "digits-service"},
                    "minReplicas": 1, "maxReplicas": 3, "metrics": [{"type": "Resource"}]}}
    assert dl.hpa_problems([deployment, hpa], deployment) == []
    inverted = copy.deepcopy(hpa)
    inverted["spec"].update(minReplicas=4, maxReplicas=2)
    assert "bounds" in dl.hpa_problems([deployment, inverted], deployment)[0]
    assert dl.hpa_problems([deployment], deployment) == ["0 HorizontalPodAutoscaler(s) rendered, expected one"]


def test_contract_problems():
    good = {"inputs": {"images": ["batch", 1, 8, 8]}, "outputs": {"logits": ["batch", 10]}}
    assert dl.contract_problems(good) == []
    fixed = {"inputs": {"images": [2, 1, 8, 8]}, "outputs": {"logits": [2, 10]}}
    assert [p.split("'")[0] for p in dl.contract_problems(fixed)] == ["images", "logits"]
    renamed = {"inputs": {"input.1": ["batch", 1, 8, 8]}, "outputs": {"logits": ["batch", 10]}}
    assert "expected ['images']" in dl.contract_problems(renamed)[0]


def test_the_holdout_never_reaches_the_notebook(tmp_path):
    params, hidden = lab13.prepare(tmp_path)
    public_images, public_labels = dl.load_digits_file(tmp_path / params["data_path"])
    held_images, _ = hidden["holdout"]
    assert len(public_images) + len(held_images) == 1797 and len(held_images) == lab13.HOLDOUT
    public_rows = {row.tobytes() for row in public_images}
    overlap = sum(row.tobytes() in public_rows for row in held_images)
    assert overlap <= 5  # the digits hold a few duplicate images; the rows themselves are disjoint
    again, hidden_again = lab13.prepare(tmp_path / "again")
    assert (hidden_again["holdout"][1] == hidden["holdout"][1]).all()  # the same secret, the same holdout


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """A briefly trained model saved and exported as the lab asks, plus a copy whose ONNX batch axis is fixed."""
    folder = tmp_path_factory.mktemp("dl")
    images, labels = dl.digits_arrays()
    config = dict(dl.CONFIG, epochs=2)
    X_train, X_val, y_train, y_val = dl.split_digits(images, labels, 0.2, 0)
    model, _ = dl.fit(config, X_train, y_train, X_val, y_val, seed=0)
    dl.save_model(model, config, folder)
    dl.export_torchscript(model, folder / dl.TORCHSCRIPT)
    dl.export_onnx(model, folder / dl.ONNX)
    fixed = tmp_path_factory.mktemp("fixed")
    dl.save_model(model, config, fixed)
    dl.export_torchscript(model, fixed / dl.TORCHSCRIPT)
    torch.onnx.export(model, (torch.zeros(2, 1, 8, 8),), str(fixed / dl.ONNX), dynamo=False,
                      input_names=["images"], output_names=["logits"])
    return folder, fixed, model, images[:37]


def _probe(folder, images, mode="artifacts") -> dict:
    from grader.tools import dl_probe

    args = argparse.Namespace(work=str(folder.parent), dir=folder.name, mode=mode)
    return dl_probe.run(args, {"images": images, "batch_sizes": np.array(lab13.BATCH_SIZES)})


def test_the_probe_reports_what_the_files_do(exported):
    folder, _, model, images = exported
    found = _probe(folder, images)
    eager = dl.logits_of(model, images)
    assert np.abs(np.asarray(found["model"]["logits"]) - eager).max() < 1e-6
    assert np.abs(np.asarray(found["torchscript"]["logits"]) - eager).max() < dl.PARITY_ATOL
    assert found["torchscript"]["logits"] == found["torchscript"]["again"]
    assert found["onnx"]["contract"]["inputs"] == {"images": ["batch", 1, 8, 8]}
    for size in lab13.BATCH_SIZES:
        assert np.abs(np.asarray(found["onnx"]["runs"][str(size)]) - eager[:size]).max() < dl.PARITY_ATOL
    held = _probe(folder, images, mode="holdout")
    assert held == {"model": {"predictions": eager.argmax(axis=1).tolist()}}


def test_the_probe_shows_a_fixed_batch_axis_failing(exported):
    _, fixed, _, images = exported
    runs = _probe(fixed, images)["onnx"]["runs"]
    assert all("error" in runs[str(size)] for size in lab13.BATCH_SIZES)  # exported at 2: neither 1 nor 37 runs


def test_the_probe_refuses_a_pickled_module(exported, tmp_path):
    folder, _, model, images = exported
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / dl.CONFIG_FILE).write_text((folder / dl.CONFIG_FILE).read_text())
    torch.save(model, bad / dl.STATE)
    assert "Weights only load failed" in _probe(bad, images)["model"]["error"]


# --- the checks that need a CUDA device or a cluster --------------------------------------------------------------


def test_without_cuda_the_cuda_check_says_why(monkeypatch):
    monkeypatch.setattr(lab13, "expected_device", lambda: "cpu")
    with pytest.raises(Unavailable, match="no CUDA device"):
        lab13.service_on_cuda(None)


@pytest.mark.parametrize("device,passes", [("cuda", True), ("cpu", False), (None, False)])
def test_with_cuda_the_service_must_say_cuda(monkeypatch, device, passes):
    monkeypatch.setattr(lab13, "expected_device", lambda: "cuda")
    answer = {"status": 200, "json": {} if device is None else {"device": device}}
    monkeypatch.setattr(lab13, "served", lambda ctx, **kw: {"responses": {"metadata": answer}})
    if passes:
        assert lab13.service_on_cuda(None) is None
    else:
        with pytest.raises(Fail, match="not 'cuda'"):
            lab13.service_on_cuda(None)


def test_on_a_cpu_machine_the_service_must_say_cpu(monkeypatch):
    assert lab13.expected_device() == ("cuda" if torch.cuda.is_available() else "cpu")
    monkeypatch.setattr(lab13, "expected_device", lambda: "cpu")
    monkeypatch.setattr(lab13, "served", lambda ctx, **kw: {"responses": {"metadata": {
        "status": 200, "json": {"device": "cuda"}}}})
    with pytest.raises(Fail, match="must run on 'cpu'"):
        lab13.service_device(None)


def test_without_a_cluster_the_live_gpu_check_says_why(monkeypatch):
    monkeypatch.delenv("MLOPS_KUBE_CONTEXT", raising=False)
    with pytest.raises(Unavailable, match="no cluster"):
        lab13.gpu_cluster_live(None)


def _node(name, labels=None, allocatable=None):
    return {"metadata": {"name": name, "labels": labels or {}}, "status": {"allocatable": allocatable or {}}}


@pytest.mark.parametrize("nodes,outcome", [
    ([_node("cpu-only")], Unavailable),
    ([_node("gpu-worker", {"nvidia.com/gpu.present": "true"})], Fail),  # labelled, no device plugin
    ([_node("gpu-worker", {"nvidia.com/gpu.present": "true"}, {"nvidia.com/gpu": "1"})], None),
])
def test_the_live_gpu_check_needs_the_device_plugin(monkeypatch, nodes, outcome):
    from grader import k8s_live

    class Api:
        closed = False

        def close(self):
            Api.closed = True

    applied = []
    monkeypatch.setattr(k8s_live, "chosen_context", lambda: "kind-gpu")
    monkeypatch.setattr(k8s_live, "connect", lambda context: Api())
    monkeypatch.setattr(k8s_live, "call", lambda api, method, path: {"items": nodes})
    monkeypatch.setattr(lab13, "rendered", lambda ctx: ["objects"])
    monkeypatch.setattr(k8s_live, "run", lambda api, objects, context, forward: applied.append(objects) or k8s_live.Result(
        context=context, namespace="mlops-grade-x", applied=["Deployment/digits-service"]))
    if outcome is None:
        assert lab13.gpu_cluster_live(None) is None
        assert applied == [["objects"]]
    else:
        with pytest.raises(outcome, match="no GPU node" if outcome is Unavailable else "device\\s+plugin"):
            lab13.gpu_cluster_live(None)
        assert applied == []
    assert Api.closed


@pytest.mark.parametrize("metadata,problem", [
    ('{"device": "cuda"}', None),
    ('{"device": "cpu"}', "says device 'cpu', not 'cuda'"),
    ("not json", "says device None"),
])
def test_on_the_cluster_the_service_must_say_cuda(monkeypatch, metadata, problem):
    from grader import k8s_live

    asked = []

    def forward(context, namespace, service, port, path="/readyz", body=None):
        asked.append((path, body))
        return 200, "ok" if path == "/readyz" else metadata

    monkeypatch.setattr(k8s_live, "request_through_port_forward", forward)
    if problem is None:
        assert lab13.asks_for_cuda("kind-gpu", "ns", "digits-service", 80)[0] == 200
    else:
        with pytest.raises(k8s_live.Problem, match=problem):
            lab13.asks_for_cuda("kind-gpu", "ns", "digits-service", 80)
    assert asked == [("/readyz", None), ("/metadata", b"{}")]


def test_a_port_forward_can_post(tmp_path):
    """k8s_live's port-forward sends a JSON POST when given a body (GET otherwise), through a stub kubectl."""
    import sys
    import textwrap

    from grader import k8s_live

    stub = tmp_path / "kubectl.py"
    stub.write_text(textwrap.dedent("""
        import http.server, json, sys, threading

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"]))
                self.send_response(200)
                self.end_headers()
                self.wfile.write(json.dumps({"method": "POST", "body": body.decode(),
                                             "type": self.headers["Content-Type"]}).encode())

            def log_message(self, *args):
                pass

        server = http.server.HTTPServer(("127.0.0.1", 0), Handler)
        print(f"Forwarding from 127.0.0.1:{server.server_port} -> 3000", flush=True)
        server.serve_forever()
    """))
    code, text = k8s_live.request_through_port_forward("c", "ns", "digits-service", 80, path="/metadata", timeout=20,
                                                       kubectl=(sys.executable, str(stub)), body=b"{}")
    assert code == 200
    assert json.loads(text) == {"method": "POST", "body": "{}", "type": "application/json"}


# --- make gpu-check -----------------------------------------------------------------------------------------------


@pytest.mark.skipif(torch.cuda.is_available(), reason="a CUDA device is here: gpu-check runs for real")
def test_gpu_check_says_what_it_skipped_and_exits_0_without_a_gpu():
    import subprocess
    import sys

    from grader.labs import REPO

    done = subprocess.run([sys.executable, str(REPO / "tools" / "gpu_check.py")], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    assert "skipped — no CUDA device" in done.stdout
    assert done.stdout.count("  skipped: ") == 5


@pytest.mark.slow
def test_gpu_check_rehearsed_on_the_cpu_runs_every_step():
    import subprocess
    import sys

    from grader.labs import REPO

    done = subprocess.run([sys.executable, str(REPO / "tools" / "gpu_check.py"), "--rehearse-on-cpu"],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert "labels as eager: True" in done.stdout and "all steps passed on cpu" in done.stdout
    assert [line.split()[1] for line in done.stdout.splitlines() if line.strip().startswith("cpu ")] == \
        ["1", "32", "256"]
