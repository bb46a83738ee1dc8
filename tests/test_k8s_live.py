"""Lab 10's live check (grader/k8s_live.py) without a cluster: no Kubernetes API server can run here.

The verdicts are proven here, as the check is exempt from wrong-answer cases (it runs only with a cluster):
- no cluster named, or one that does not answer: Unavailable with the reason, never a pass;
- apply, rollout wait, HPA read-back and cleanup against kmock, a fake API server that stores what it is sent
  (kmock cannot parse the cluster-wide Namespace endpoints, so the test client rewrites /api/v1/namespaces[/NAME]
  to a plural it stores; every other request goes through unchanged);
- what kmock cannot do (pod listing for diagnostics, port-forward) through small functions, with stubs.
"""

from __future__ import annotations

import asyncio
import base64
import re
import socket
import sys
import textwrap

import pytest

from grader import k8s_live
from grader.checks.common import Unavailable

NAME = "cancer-service"
LABELS = {"app.kubernetes.io/name": NAME}
NAMESPACES = re.compile(r"/api/v1/namespaces(/[^/?]+)?(?=\?|$)")
SETTERS: set = set()  # the running become_available tasks, held (a task only weakly referenced may vanish)


def overlay(hpa_target: str = NAME, claim: bool = False) -> list[dict]:
    """A dev overlay as `kubectl kustomize` renders it (namespace cancer-dev), small but of every kind that matters."""
    volumes = [{"name": "tmp", "emptyDir": {}}]
    if claim:
        volumes.append({"name": "registry", "persistentVolumeClaim": {"claimName": "cancer-registry", "readOnly": True}})
    return [
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "cancer-dev"}},
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cancer-service-config", "namespace": "cancer-dev"},
         "data": {"REGISTRY_DIR": "/registry"}},
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": NAME, "namespace": "cancer-dev"}},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
         "metadata": {"name": NAME, "namespace": "cancer-dev"},
         "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": NAME},
         "subjects": [{"kind": "ServiceAccount", "name": NAME, "namespace": "cancer-dev"}]},
        {"apiVersion": "v1", "kind": "Service", "metadata": {"name": NAME, "namespace": "cancer-dev"},
         "spec": {"selector": LABELS, "ports": [{"name": "http", "port": 80, "targetPort": "http"}]}},
        {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": NAME, "namespace": "cancer-dev"},
         "spec": {"replicas": 1, "selector": {"matchLabels": LABELS}, "template": {
             "metadata": {"labels": LABELS},
             "spec": {"serviceAccountName": NAME, "volumes": volumes, "containers": [{
                 "name": "service", "image": "ghcr.io/mlops-course/cancer-service:abc",
                 "envFrom": [{"configMapRef": {"name": "cancer-service-config"}}],
                 "env": [{"name": "MLFLOW_TRACKING_TOKEN",
                          "valueFrom": {"secretKeyRef": {"name": "cancer-service-secrets", "key": "mlflow-token"}}}],
             }]}}}},
        {"apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler",
         "metadata": {"name": NAME, "namespace": "cancer-dev"},
         "spec": {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": hpa_target},
                  "minReplicas": 1, "maxReplicas": 3}},
    ]


# --- no cluster: skipped, with the reason ----------------------------------------------------------------


def test_no_context_named_is_unavailable():
    with pytest.raises(Unavailable, match="no cluster: set MLOPS_KUBE_CONTEXT"):
        k8s_live.live_check(lambda: pytest.fail("nothing is rendered without a cluster"), environ={})
    with pytest.raises(Unavailable, match="no cluster"):
        k8s_live.chosen_context({"MLOPS_KUBE_CONTEXT": "  "})


def kubeconfig(tmp_path, server: str) -> str:
    path = tmp_path / "kubeconfig"
    path.write_text(textwrap.dedent(f"""\
        apiVersion: v1
        kind: Config
        clusters: [{{name: kind-mlops, cluster: {{server: "{server}", insecure-skip-tls-verify: true}}}}]
        users: [{{name: kind-mlops, user: {{token: abc}}}}]
        contexts: [{{name: kind-mlops, context: {{cluster: kind-mlops, user: kind-mlops}}}}]
        current-context: kind-mlops
        """))
    return str(path)


def test_a_context_that_does_not_answer_is_unavailable(tmp_path, monkeypatch):
    silent = socket.socket()  # listens, never accepts: the TLS handshake waits for ever
    silent.bind(("127.0.0.1", 0))
    silent.listen(1)
    try:
        monkeypatch.setenv("KUBECONFIG", kubeconfig(tmp_path, f"https://127.0.0.1:{silent.getsockname()[1]}"))
        with pytest.raises(Unavailable, match=r"kind-mlops.*did not answer within 1 s"):
            k8s_live.connect("kind-mlops", timeout=1)
    finally:
        silent.close()


def test_a_refused_context_and_an_unknown_one_are_unavailable(tmp_path, monkeypatch):
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    port = closed.getsockname()[1]
    closed.close()  # nothing listens there now
    monkeypatch.setenv("KUBECONFIG", kubeconfig(tmp_path, f"https://127.0.0.1:{port}"))
    with pytest.raises(Unavailable, match="did not answer"):
        k8s_live.live_check(lambda: pytest.fail("nothing is rendered without a cluster"),
                            environ={"MLOPS_KUBE_CONTEXT": "kind-mlops"})
    with pytest.raises(Unavailable, match="'kind-other'.*cannot be loaded"):
        k8s_live.connect("kind-other")


def test_the_check_is_registered_as_live_and_skips_without_a_cluster(monkeypatch):
    from grader.checks import lab10

    check = lab10.CHECKS["live_cluster"]
    assert (check.points, check.visible, check.runs_only_with) == (3, True, "a Kubernetes cluster")
    assert list(lab10.CHECKS)[-1] is check
    assert not any("live_cluster" in c.depends for c in lab10.CHECKS)
    monkeypatch.delenv("MLOPS_KUBE_CONTEXT", raising=False)
    with pytest.raises(Unavailable, match="no cluster"):
        check.func(object())  # never reaches the context: nothing is rendered, nothing passes


# --- against a fake API server (kmock) ---------------------------------------------------------------------


@pytest.fixture
def api(kmock):
    """A kubernetes ApiClient talking to kmock (Namespace endpoints rewritten: kmock cannot parse them)."""
    from kubernetes import client

    class Rewriting(client.ApiClient):
        def call_api(self, method, url, *args, **kwargs):
            url = NAMESPACES.sub(lambda m: "/api/v1/clusternamespaces" + (m.group(1) or ""), url)
            return super().call_api(method, url, *args, **kwargs)

    configuration = client.Configuration()
    configuration.host = str(kmock.url).rstrip("/")
    with Rewriting(configuration) as api:
        yield api


def stored(kmock, plural: str, deleted: bool = False) -> dict:
    """(namespace, name) -> the object, of one plural, as kmock holds it (deleted ones when asked, as None)."""
    return {(ns, name): (None if obj.deleted else obj.raw) for (resource, ns, name), obj in kmock.objects.items()
            if resource.plural == plural and obj.deleted == deleted}


async def become_available(kmock, replicas: int = 1) -> None:
    """The Deployment controller's part: once the grader created the Deployment, report it rolled out."""
    while True:
        for (resource, _ns, name), obj in list(kmock.objects.items()):
            if resource.plural == "deployments" and name == NAME and not obj.deleted:
                obj.patch({"status": {"observedGeneration": 1, "replicas": replicas, "updatedReplicas": replicas,
                                      "availableReplicas": replicas}})
                return
        await asyncio.sleep(0.05)


async def run(api, objects, forward=None, **kwargs) -> k8s_live.Result:
    forwards = []

    def answer(context, namespace, service, port):
        forwards.append((context, namespace, service, port))
        return 200, '{"ready": true}'

    try:
        result = await asyncio.wait_for(asyncio.to_thread(k8s_live.run, api, objects, "kind-mlops",
                                                          forward=forward or answer, **kwargs), 60)
    finally:
        for task in SETTERS:
            task.cancel()  # a rollout the run never waited for
        SETTERS.clear()
    result.forwards = forwards
    return result


@pytest.mark.asyncio
async def test_applies_into_a_fresh_namespace_waits_and_cleans_up(kmock, api):
    SETTERS.add(asyncio.create_task(become_available(kmock)))
    result = await run(api, overlay(), rollout_seconds=20)
    assert result.problems == [] and result.ok and result.cleanup == []
    namespace = result.namespace
    assert re.fullmatch(r"mlops-grade-[0-9a-f]{8}", namespace)
    assert result.applied == ["ConfigMap/cancer-service-config", f"ServiceAccount/{NAME}", f"RoleBinding/{NAME}",
                              f"Service/{NAME}", f"Deployment/{NAME}", f"HorizontalPodAutoscaler/{NAME}"]
    for plural in ("configmaps", "serviceaccounts", "rolebindings", "services", "deployments",
                   "horizontalpodautoscalers"):
        assert list(stored(kmock, plural)) == [(namespace, NAME if plural != "configmaps" else
                                                "cancer-service-config")], plural
        assert stored(kmock, plural)[next(iter(stored(kmock, plural)))]["metadata"]["namespace"] == namespace
    binding = stored(kmock, "rolebindings")[(namespace, NAME)]
    assert binding["subjects"][0]["namespace"] == namespace  # the ServiceAccount of the fresh namespace
    secret = stored(kmock, "secrets")[(namespace, "cancer-service-secrets")]  # referenced, not in git: provided
    assert base64.b64decode(secret["data"]["mlflow-token"]) and secret["metadata"]["labels"][k8s_live.LABEL]
    assert not stored(kmock, "namespaces")  # the learner's own Namespace object is not applied
    # the fresh namespace was created labelled and restricted, then deleted
    [(_, created)] = [(k, o) for k, o in kmock.objects.items() if k[0].plural == "clusternamespaces"]
    assert created.deleted
    first = created.history[0]
    assert first["metadata"]["name"] == namespace
    assert first["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"
    assert first["metadata"]["labels"][k8s_live.LABEL] == namespace.removeprefix("mlops-grade-")
    assert result.forwards == [("kind-mlops", namespace, NAME, 80)]


@pytest.mark.asyncio
async def test_an_object_that_exists_is_merge_patched(kmock, api):
    deployment = k8s_live.placed(overlay()[-2], "ns")
    again = {**deployment, "spec": {**deployment["spec"], "replicas": 2}}
    await asyncio.to_thread(k8s_live.apply, api, deployment, "ns")
    await asyncio.to_thread(k8s_live.apply, api, again, "ns")
    assert stored(kmock, "deployments")[("ns", NAME)]["spec"]["replicas"] == 2
    assert len(kmock["post"]) == 2 and len(kmock["patch"]) == 1  # created, refused as existing (409), patched


@pytest.mark.asyncio
async def test_a_deployment_that_never_becomes_available_fails_at_the_deadline(kmock, api):
    result = await run(api, overlay(), rollout_seconds=1)
    assert len(result.problems) == 1
    assert re.match(rf"the Deployment {NAME} did not roll out within 1 s \(0 of 1 replicas available\)",
                    result.problems[0])
    assert not result.ok and result.forwards == []  # no request once the rollout failed
    assert not stored(kmock, "clusternamespaces")  # deleted also on failure
    assert list(stored(kmock, "clusternamespaces", deleted=True)) == [(None, result.namespace)]


@pytest.mark.asyncio
async def test_an_hpa_that_targets_another_deployment_is_caught(kmock, api):
    SETTERS.add(asyncio.create_task(become_available(kmock)))
    result = await run(api, overlay(hpa_target="other-service"), rollout_seconds=20)
    assert result.problems == [f"the HorizontalPodAutoscaler {NAME} scales Deployment/other-service, not the "
                               f"Deployment {NAME}"]
    assert not result.ok and not stored(kmock, "clusternamespaces")


@pytest.mark.asyncio
async def test_an_object_the_cluster_refuses_is_a_problem_and_still_cleans_up(kmock, api):
    import kmock as kmock_lib

    kmock["post", kmock_lib.resource("v1/services")] << kmock_lib.KubernetesError(
        status=422, reason="Invalid", message="Service is invalid: spec.ports[0].targetPort: Invalid value")
    result = await run(api, overlay(), rollout_seconds=20)
    assert result.problems == [f"the cluster refused Service/{NAME}: Service is invalid: spec.ports[0].targetPort: "
                               "Invalid value"]
    assert f"Deployment/{NAME}" not in result.applied and not stored(kmock, "clusternamespaces")


@pytest.mark.asyncio
async def test_a_crashing_forward_is_a_problem_and_still_cleans_up(kmock, api):
    def broken(*args):
        raise RuntimeError("kubectl vanished")

    SETTERS.add(asyncio.create_task(become_available(kmock)))
    result = await run(api, overlay(), forward=broken, rollout_seconds=20)
    assert result.problems == ["the live check failed: RuntimeError: kubectl vanished"]
    assert not stored(kmock, "clusternamespaces")


@pytest.mark.asyncio
async def test_the_registry_claim_is_borrowed_from_the_source_namespace_and_its_volume_deleted(kmock, api):
    def prepare():  # what lesson 10.13 leaves in cancer-dev: a claim bound to a volume on the node
        k8s_live.call(api, "POST", "/api/v1/persistentvolumes", body={
            "apiVersion": "v1", "kind": "PersistentVolume", "metadata": {"name": "pvc-123"},
            "spec": {"hostPath": {"path": "/var/local-path-provisioner/pvc-123"}, "storageClassName": "standard",
                     "claimRef": {"namespace": "cancer-dev", "name": "cancer-registry"}}})
        k8s_live.apply(api, {"apiVersion": "v1", "kind": "PersistentVolumeClaim",
                             "metadata": {"name": "cancer-registry"},
                             "spec": {"volumeName": "pvc-123", "resources": {"requests": {"storage": "2Gi"}}}},
                       "cancer-dev")

    await asyncio.to_thread(prepare)
    SETTERS.add(asyncio.create_task(become_available(kmock)))
    result = await run(api, overlay(claim=True), rollout_seconds=20)
    assert result.problems == []
    namespace = result.namespace
    claim = stored(kmock, "persistentvolumeclaims")[(namespace, "cancer-registry")]
    assert claim["spec"]["volumeName"] == f"{namespace}-cancer-registry"
    assert claim["spec"]["resources"]["requests"] == {"storage": "2Gi"}
    borrowed = [o for k, o in kmock.objects.items() if k[0].plural == "persistentvolumes" and k[2] != "pvc-123"]
    assert len(borrowed) == 1 and borrowed[0].deleted  # deleted afterwards
    volume = borrowed[0].history[0]
    assert volume["spec"]["hostPath"]["path"] == "/var/local-path-provisioner/pvc-123"
    assert volume["spec"]["claimRef"] == {"namespace": namespace, "name": "cancer-registry"}
    assert volume["spec"]["accessModes"] == ["ReadOnlyMany"] and "storageClassName" not in volume["spec"]
    assert (None, "pvc-123") in stored(kmock, "persistentvolumes")  # the learner's own volume is untouched


@pytest.mark.asyncio
async def test_a_claim_the_source_namespace_lacks_says_what_to_do(kmock, api):
    result = await run(api, overlay(claim=True), rollout_seconds=20)
    assert len(result.problems) == 1 and "PersistentVolumeClaim cancer-registry" in result.problems[0]
    assert "namespace cancer-dev has no bound claim" in result.problems[0]
    assert result.applied == [] and not stored(kmock, "clusternamespaces")


def test_cluster_wide_objects_are_refused_before_anything_is_applied():
    objects = overlay() + [{"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
                            "metadata": {"name": "everything"}}]
    result = k8s_live.run(None, objects, "kind-mlops")  # no API call at all: None would fail on the first
    assert result.problems == ["the dev overlay renders cluster-wide objects (ClusterRole/everything): the service "
                               "needs none, and the grader applies only objects of the namespace"]
    assert not result.ok


# --- what kmock cannot do: small functions with stubs --------------------------------------------------------


def test_rollout_needs_the_current_generation_and_every_replica():
    done = {"metadata": {"generation": 2}, "spec": {"replicas": 2},
            "status": {"observedGeneration": 2, "replicas": 2, "updatedReplicas": 2, "availableReplicas": 2}}
    assert k8s_live.rolled_out(done)
    assert not k8s_live.rolled_out({**done, "status": {**done["status"], "observedGeneration": 1}})
    assert not k8s_live.rolled_out({**done, "status": {**done["status"], "availableReplicas": 1}})
    assert not k8s_live.rolled_out({**done, "status": {**done["status"], "replicas": 3}})  # old pods still there
    assert not k8s_live.rolled_out({"spec": {"replicas": 1}})


def test_pod_and_deployment_problems_are_named():
    pods = [
        {"metadata": {"name": "a"}, "spec": {"containers": [{"name": "service", "image": "img:1"}]},
         "status": {"containerStatuses": [{"name": "service", "state": {"waiting": {"reason": "ImagePullBackOff"}}}]}},
        {"metadata": {"name": "b"}, "status": {"containerStatuses": [
            {"name": "service", "image": "img:1", "restartCount": 4, "state": {"waiting": {"reason": "CrashLoopBackOff"}},
             "lastState": {"terminated": {"reason": "OOMKilled"}}}]}},
        {"metadata": {"name": "c"}, "status": {"conditions": [
            {"type": "PodScheduled", "status": "False", "reason": "Unschedulable",
             "message": "0/2 nodes are available: 2 Insufficient memory."}]}},
        {"metadata": {"name": "d"}, "status": {"phase": "Running"}},
    ]
    found = k8s_live.pod_problems(pods, k8s_live.kind_cluster("kind-mlops"))
    assert found == [
        "pod a: the image img:1 cannot be pulled (ImagePullBackOff): a kind cluster has only the images loaded into "
        "it: kind load docker-image img:1 --name mlops",
        "pod b: container service keeps crashing (CrashLoopBackOff, 4 restarts): read kubectl logs --previous",
        "pod b: container service was OOMKilled: its memory limit is below what it uses",
        "pod c cannot be scheduled: 0/2 nodes are available: 2 Insufficient memory.",
    ]
    refused = {"status": {"conditions": [{"type": "ReplicaFailure", "status": "True", "message": 'pods "x" is '
                                          'forbidden: violates PodSecurity "restricted:latest"'}]}}
    assert k8s_live.deployment_problems(refused) == ['pods cannot be created: pods "x" is forbidden: violates '
                                                     'PodSecurity "restricted:latest"']


def test_the_deadline_message_carries_the_pod_problems(monkeypatch):
    deployment = {"metadata": {"name": NAME}, "spec": {"replicas": 1}, "status": {}}
    monkeypatch.setattr(k8s_live, "fetch", lambda *args: deployment)
    monkeypatch.setattr(k8s_live, "pods_of", lambda *args: [
        {"metadata": {"name": "p"}, "status": {"containerStatuses": [
            {"name": "service", "image": "img:2", "state": {"waiting": {"reason": "ErrImagePull"}}}]}}])
    ticks = iter(range(100))
    with pytest.raises(k8s_live.Problem, match=r"within 3 s \(0 of 1 replicas available\): pod p: the image img:2 "
                                               r"cannot be pulled .* --name mlops"):
        k8s_live.wait_rollout(None, NAME, "ns", "mlops", deadline=3, clock=lambda: next(ticks), sleep=lambda s: None)


def test_hpa_problems():
    assert k8s_live.hpa_problems([], NAME) == ["the cluster has no HorizontalPodAutoscaler for the Deployment"]
    ok = {"metadata": {"name": "h"}, "spec": {"scaleTargetRef": {"kind": "Deployment", "name": NAME}}}
    assert k8s_live.hpa_problems([ok], NAME) == []


STUB = """\
import http.server, sys, threading, pathlib
pathlib.Path(sys.argv[1]).write_text(" ".join(sys.argv[2:]))
class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200 if self.path == "/readyz" else 404); self.end_headers(); self.wfile.write(b"ready")
    def log_message(self, *args): pass
server = http.server.HTTPServer(("127.0.0.1", 0), Handler)
print("Forwarding from 127.0.0.1:%d -> 3000" % server.server_address[1], flush=True)
server.serve_forever()
"""


def test_request_through_a_port_forward_with_a_stub_kubectl(tmp_path):
    stub, argv = tmp_path / "kubectl.py", tmp_path / "argv"
    stub.write_text(STUB)
    code, body = k8s_live.request_through_port_forward("kind-mlops", "mlops-grade-1", NAME, 80, timeout=20,
                                                       kubectl=(sys.executable, str(stub), str(argv)))
    assert (code, body) == (200, "ready")
    assert argv.read_text() == (f"--context kind-mlops -n mlops-grade-1 port-forward --address 127.0.0.1 "
                                f"svc/{NAME} :80")


def test_a_port_forward_that_ends_or_hangs_is_a_problem(tmp_path):
    failing = tmp_path / "failing.py"
    failing.write_text("print('error: services \"cancer-service\" not found'); raise SystemExit(1)\n")
    with pytest.raises(k8s_live.Problem, match='ended: error: services "cancer-service" not found'):
        k8s_live.request_through_port_forward("c", "ns", NAME, 80, timeout=20, kubectl=(sys.executable, str(failing)))
    silent = tmp_path / "silent.py"
    silent.write_text("import time; time.sleep(60)\n")
    with pytest.raises(k8s_live.Problem, match="did not come up in 1 s"):
        k8s_live.request_through_port_forward("c", "ns", NAME, 80, timeout=1, kubectl=(sys.executable, str(silent)))
