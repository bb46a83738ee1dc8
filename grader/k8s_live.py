"""Lab 10's manifests applied for real, from the grader's process, to a cluster the person grading names.

Only a cluster named by `MLOPS_KUBE_CONTEXT` (a kubeconfig context such as `kind-mlops`) is used; without it, or
when its API server does not answer within seconds, the check is `Unavailable` ("skipped: ..."), never passed.
Everything happens in a fresh namespace `mlops-grade-<random>`, labelled `mlops-grade.job=<job>` and restricted by
Pod Security admission, deleted in a `finally:` whatever happened (with the PersistentVolumes borrowed for it):

1. the Secrets and PersistentVolumeClaims the Deployment uses but the manifests rightly do not hold are provided:
   Secrets copied from `MLOPS_KUBE_NAMESPACE` (default `cancer-dev`, where lesson 10.13 creates them; dummy values
   when it has none), claims bound read-only to the volume of the claim of the same name there;
2. the rendered dev overlay is applied (create, or merge-patch when it exists), namespaces overridden;
3. the Deployment's rollout is awaited with a deadline; pod problems are named (image not loaded into kind,
   CrashLoopBackOff, unschedulable, refused by admission);
4. the HPA exists in the cluster and targets the Deployment;
5. one GET /readyz through `kubectl port-forward` to the Service.

The official `kubernetes` client talks to the API server (its REST calls, so any kind applies the same way); the
port-forward is kubectl's, as a learner would run it. Each step is a small function with the API client passed in,
so that tests drive it against a fake API server (kmock) and the port-forward against a stub command.
"""

from __future__ import annotations

import json
import os
import queue
import re
import secrets
import subprocess
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field

from grader.checks.common import Unavailable

LABEL = "mlops-grade.job"
CONTEXT_ENV, SOURCE_ENV = "MLOPS_KUBE_CONTEXT", "MLOPS_KUBE_NAMESPACE"
SOURCE_NAMESPACE = "cancer-dev"  # where lesson 10.13's commands create the Secret and the registry's claim
CONNECT_SECONDS = 5.0  # an API server that has not answered by then is not there
ROLLOUT_SECONDS = 240.0  # the model loads for up to a minute; images may need pulling
REQUEST_SECONDS = 30.0  # port-forward up and one answer
NO_CLUSTER = f"no cluster: set {CONTEXT_ENV} to a kind cluster's context to run it (e.g. {CONTEXT_ENV}=kind-mlops)"
CLUSTER_SCOPED = {"Namespace", "Node", "PersistentVolume", "ClusterRole", "ClusterRoleBinding", "StorageClass",
                  "CustomResourceDefinition", "PriorityClass", "IngressClass", "RuntimeClass", "CSIDriver",
                  "APIService", "ValidatingWebhookConfiguration", "MutatingWebhookConfiguration"}
PLURALS = {"Endpoints": "endpoints", "NetworkPolicy": "networkpolicies", "Ingress": "ingresses",
           "PodSecurityPolicy": "podsecuritypolicies", "PriorityClass": "priorityclasses",
           "StorageClass": "storageclasses", "IngressClass": "ingressclasses", "RuntimeClass": "runtimeclasses"}
FORWARDING = re.compile(r"Forwarding from 127\.0\.0\.1:(\d+) ->")


class Problem(Exception):
    """A step found something wrong with the learner's manifests as the cluster runs them."""


@dataclass
class Result:
    """What the live check found: `problems` empty means it applied, rolled out, autoscales and answered."""

    context: str
    namespace: str = ""
    applied: list[str] = field(default_factory=list)  # "Kind/name" in the order they were applied
    problems: list[str] = field(default_factory=list)
    cleanup: list[str] = field(default_factory=list)  # what could not be deleted afterwards (normally empty)

    @property
    def ok(self) -> bool:
        return bool(self.applied) and not self.problems


# --- the cluster --------------------------------------------------------------------------------------------


def chosen_context(environ=None) -> str:
    """The kube context to grade against: `MLOPS_KUBE_CONTEXT`, else Unavailable (a cluster is never guessed)."""
    context = (os.environ if environ is None else environ).get(CONTEXT_ENV, "").strip()
    if not context:
        raise Unavailable(NO_CLUSTER)
    return context


def connect(context: str, timeout: float = CONNECT_SECONDS):
    """An API client for `context` whose server answered GET /version within `timeout` seconds, else Unavailable."""
    from kubernetes import client, config
    from kubernetes.config.config_exception import ConfigException

    configuration = client.Configuration()
    try:
        config.load_kube_config(config_file=os.environ.get("KUBECONFIG") or None, context=context,
                                client_configuration=configuration)
    except (ConfigException, OSError, ValueError) as err:
        raise Unavailable(f"no cluster: the kube context {context!r} ({CONTEXT_ENV}) cannot be loaded: "
                          f"{str(err).splitlines()[0] if str(err) else type(err).__name__}") from None
    configuration.retries = False  # one try: a cluster that is not there must not cost minutes
    api = client.ApiClient(configuration)
    try:
        client.VersionApi(api).get_code(_request_timeout=timeout)
    except Exception as err:  # noqa: BLE001 — refused, timed out, TLS, 401: all mean no cluster to grade on
        api.close()
        raise Unavailable(f"no cluster: the API server of context {context!r} ({configuration.host}) did not answer "
                          f"within {timeout:g} s: {_short(err)}") from None
    return api


def _short(err: Exception) -> str:
    text = str(getattr(err, "reason", "") or err) or type(err).__name__
    return text.splitlines()[0][:200]


def kind_cluster(context: str) -> str:
    """The kind cluster's name in a context `kind-NAME` (kind's convention), the context itself otherwise."""
    return context[len("kind-"):] if context.startswith("kind-") else context


# --- REST: any kind the same way ----------------------------------------------------------------------------


def plural(kind: str) -> str:
    if kind in PLURALS:
        return PLURALS[kind]
    lower = kind.lower()
    return lower[:-1] + "ies" if lower.endswith("y") else lower + ("es" if lower.endswith("s") else "s")


def path_of(api_version: str, kind: str, namespace: str | None, name: str | None = None) -> str:
    root = f"/api/{api_version}" if "/" not in api_version else f"/apis/{api_version}"
    where = f"/namespaces/{namespace}" if namespace and kind not in CLUSTER_SCOPED else ""
    return f"{root}{where}/{plural(kind)}" + (f"/{name}" if name else "")


def call(api, method: str, path: str, body=None, content_type: str = "application/json", query=None):
    """One REST call with the API client; the answer as a dict (ApiException on an error status)."""
    request = api.param_serialize(method, path, query_params=list((query or {}).items()), body=body,
                                  header_params={"Accept": "application/json", "Content-Type": content_type},
                                  auth_settings=["BearerToken"])
    return api._call_with_legacy_options(request, {"2XX": "object"}, None, True, 30, True)


def status_of(err) -> int:
    return int(getattr(err, "status", 0) or 0)


def api_message(err) -> str:
    """The API server's own message from an ApiException (its JSON Status), else the exception's text."""
    try:
        return str(json.loads(err.body).get("message"))[:300]
    except Exception:  # noqa: BLE001
        return _short(err)


def fetch(api, api_version: str, kind: str, namespace: str | None, name: str) -> dict | None:
    from kubernetes.client.exceptions import ApiException

    try:
        return call(api, "GET", path_of(api_version, kind, namespace, name))
    except ApiException as err:
        if status_of(err) == 404:
            return None
        raise


def apply(api, obj: dict, namespace: str) -> dict:
    """Create `obj` in `namespace`, or merge-patch it when it exists (kubectl apply's effect for a fresh object)."""
    from kubernetes.client.exceptions import ApiException

    kind, name = obj["kind"], obj["metadata"]["name"]
    try:
        return call(api, "POST", path_of(obj["apiVersion"], kind, namespace), body=obj)
    except ApiException as err:
        if status_of(err) != 409:
            raise Problem(f"the cluster refused {kind}/{name}: {api_message(err)}") from None
    try:
        return call(api, "PATCH", path_of(obj["apiVersion"], kind, namespace, name), body=obj,
                    content_type="application/merge-patch+json")
    except ApiException as err:
        raise Problem(f"the cluster refused the update of {kind}/{name}: {api_message(err)}") from None


def placed(obj: dict, namespace: str) -> dict:
    """A copy of a rendered object for `namespace`: its own namespace (and its RoleBindings' subjects') overridden,
    server-owned fields dropped."""
    obj = json.loads(json.dumps(obj))
    meta = obj.setdefault("metadata", {})
    for key in ("resourceVersion", "uid", "creationTimestamp", "generation", "managedFields"):
        meta.pop(key, None)
    obj.pop("status", None)
    meta["namespace"] = namespace
    if obj.get("kind") == "RoleBinding":
        for subject in obj.get("subjects") or []:
            if isinstance(subject, dict) and subject.get("kind") == "ServiceAccount":
                subject["namespace"] = namespace
    return obj


# --- what the Deployment needs that the manifests rightly do not hold ------------------------------------------


def referenced(deployment: dict) -> tuple[dict[str, set[str]], list[str]]:
    """The Secrets (name -> keys) and the PersistentVolumeClaims (names) the Deployment's pods use."""
    from mlops_kit.k8s import containers, pod_spec

    spec = pod_spec(deployment) or {}
    found: dict[str, set[str]] = {}
    for container in containers(deployment):
        for entry in container.get("env") or []:
            ref = ((entry or {}).get("valueFrom") or {}).get("secretKeyRef") or {}
            if ref.get("name") and not ref.get("optional"):
                found.setdefault(ref["name"], set()).add(str(ref.get("key")))
        for entry in container.get("envFrom") or []:
            ref = (entry or {}).get("secretRef") or {}
            if ref.get("name") and not ref.get("optional"):
                found.setdefault(ref["name"], set())
    claims = []
    for volume in spec.get("volumes") or []:
        secret = (volume or {}).get("secret") or {}
        if secret.get("secretName") and not secret.get("optional"):
            found.setdefault(secret["secretName"], set())
        claim = ((volume or {}).get("persistentVolumeClaim") or {}).get("claimName")
        if claim:
            claims.append(claim)
    return found, claims


def provide_secrets(api, wanted: dict[str, set[str]], namespace: str, source: str, job: str) -> None:
    """Each Secret the pods reference, in `namespace`: copied from `source` where it exists there, else with
    placeholder values for the referenced keys (the service starts; nothing real is needed to answer /readyz)."""
    import base64

    for name, keys in wanted.items():
        original = fetch(api, "v1", "Secret", source, name) or {}
        data = dict(original.get("data") or {})
        for key in keys:
            data.setdefault(key, base64.b64encode(b"mlops-grade-placeholder").decode())
        apply(api, {"apiVersion": "v1", "kind": "Secret", "type": original.get("type", "Opaque"),
                    "metadata": {"name": name, "labels": {LABEL: job}}, "data": data}, namespace)


def borrow_claims(api, claims: list[str], namespace: str, source: str, job: str, borrowed: list[str]) -> None:
    """Each claim the pods mount, in `namespace`, bound read-only to the volume behind the claim of the same name
    in `source` (the model registry lesson 10.13 fills): a new PersistentVolume with the same volume source,
    labelled with the job, added to `borrowed` (for deletion) as soon as it exists. A claim `source` lacks is a
    Problem that says what to do."""
    for claim in claims:
        original = fetch(api, "v1", "PersistentVolumeClaim", source, claim)
        volume_name = ((original or {}).get("spec") or {}).get("volumeName")
        volume = fetch(api, "v1", "PersistentVolume", None, volume_name) if volume_name else None
        if not volume:
            raise Problem(f"the pods mount the PersistentVolumeClaim {claim}, which the manifests do not hold and "
                          f"namespace {source} has no bound claim of that name for the grader to borrow: create "
                          f"and fill it there as lesson 10.13 says (or name another namespace in {SOURCE_ENV})")
        spec = {k: v for k, v in (volume.get("spec") or {}).items() if k not in ("claimRef",)}
        name = f"{namespace}-{claim}"[:63]
        spec.update(accessModes=["ReadOnlyMany"], persistentVolumeReclaimPolicy="Retain",
                    claimRef={"namespace": namespace, "name": claim})
        spec.pop("storageClassName", None)
        call(api, "POST", "/api/v1/persistentvolumes",
             body={"apiVersion": "v1", "kind": "PersistentVolume", "metadata": {"name": name, "labels": {LABEL: job}},
                   "spec": spec})
        borrowed.append(name)
        size = ((original.get("spec") or {}).get("resources") or {}).get("requests") or {"storage": "1Gi"}
        apply(api, {"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": claim},
                    "spec": {"accessModes": ["ReadOnlyMany"], "storageClassName": "", "volumeName": name,
                             "resources": {"requests": size}}}, namespace)


# --- rollout, pods, HPA --------------------------------------------------------------------------------------


def rolled_out(deployment: dict) -> bool:
    """`kubectl rollout status`'s test: the controller saw the current generation, and every replica the spec asks
    for is updated and available."""
    meta, spec, status = deployment.get("metadata") or {}, deployment.get("spec") or {}, deployment.get("status") or {}
    wanted = spec.get("replicas", 1)
    return (status.get("observedGeneration", 0) >= meta.get("generation", 1)
            and status.get("updatedReplicas", 0) == wanted and status.get("availableReplicas", 0) == wanted
            and status.get("replicas", wanted) == wanted)


def deployment_problems(deployment: dict) -> list[str]:
    """What the Deployment's own conditions say went wrong (a ReplicaSet refused by admission, a stuck rollout)."""
    found = []
    for condition in (deployment.get("status") or {}).get("conditions") or []:
        if condition.get("type") == "ReplicaFailure" and condition.get("status") == "True":
            found.append(f"pods cannot be created: {condition.get('message')}")
        elif condition.get("type") == "Progressing" and condition.get("reason") == "ProgressDeadlineExceeded":
            found.append(f"the rollout stopped progressing: {condition.get('message')}")
    return found


def pod_problems(pods: list[dict], cluster: str) -> list[str]:
    """Why pods are not ready, in words a learner can act on; [] when nothing is visibly wrong."""
    found = []
    for pod in pods:
        name = (pod.get("metadata") or {}).get("name", "?")
        status = pod.get("status") or {}
        for condition in status.get("conditions") or []:
            if condition.get("type") == "PodScheduled" and condition.get("status") == "False":
                found.append(f"pod {name} cannot be scheduled: {condition.get('message') or condition.get('reason')}")
        images = {c.get("name"): c.get("image") for c in (pod.get("spec") or {}).get("containers") or []}
        for container in (status.get("initContainerStatuses") or []) + (status.get("containerStatuses") or []):
            waiting = (container.get("state") or {}).get("waiting") or {}
            reason, who = waiting.get("reason"), container.get("name")
            image = container.get("image") or images.get(who) or "?"
            if reason in ("ImagePullBackOff", "ErrImagePull", "ErrImageNeverPull"):
                found.append(f"pod {name}: the image {image} cannot be pulled ({reason}): a kind cluster has only the "
                             f"images loaded into it: kind load docker-image {image} --name {cluster}")
            elif reason == "CrashLoopBackOff":
                found.append(f"pod {name}: container {who} keeps crashing (CrashLoopBackOff, "
                             f"{container.get('restartCount', 0)} restarts): read kubectl logs --previous")
            elif reason in ("CreateContainerConfigError", "CreateContainerError", "InvalidImageName"):
                found.append(f"pod {name}: container {who} cannot start ({reason}): {waiting.get('message', '')}")
            terminated = (container.get("lastState") or {}).get("terminated") or {}
            if terminated.get("reason") == "OOMKilled":
                found.append(f"pod {name}: container {who} was OOMKilled: its memory limit is below what it uses")
    return list(dict.fromkeys(found))


def pods_of(api, deployment: dict, namespace: str) -> list[dict]:
    """The Deployment's pods, by its selector (best effort: [] when they cannot be listed)."""
    labels = ((deployment.get("spec") or {}).get("selector") or {}).get("matchLabels") or {}
    try:
        answer = call(api, "GET", f"/api/v1/namespaces/{namespace}/pods",
                      query={"labelSelector": ",".join(f"{k}={v}" for k, v in labels.items())})
        return [p for p in answer.get("items") or [] if isinstance(p, dict)]
    except Exception:  # noqa: BLE001 — diagnostics only
        return []


def wait_rollout(api, name: str, namespace: str, cluster: str, deadline: float = ROLLOUT_SECONDS,
                 interval: float = 2.0, clock=time.monotonic, sleep=time.sleep) -> None:
    """Poll the Deployment until it is rolled out; past `deadline` seconds a Problem that says why it is not."""
    end = clock() + deadline
    while True:
        deployment = fetch(api, "apps/v1", "Deployment", namespace, name)
        if deployment is None:
            raise Problem(f"the Deployment {name} is gone from the cluster")
        if rolled_out(deployment):
            return
        if clock() >= end:
            status = deployment.get("status") or {}
            why = deployment_problems(deployment) + pod_problems(pods_of(api, deployment, namespace), cluster)
            raise Problem(f"the Deployment {name} did not roll out within {deadline:g} s "
                          f"({status.get('availableReplicas', 0)} of {(deployment.get('spec') or {}).get('replicas', 1)}"
                          f" replicas available)" + (": " + "; ".join(why[:4]) if why else ""))
        sleep(interval)


def hpa_problems(hpas: list[dict], deployment: str) -> list[str]:
    """The HPAs as the cluster holds them: at least one, and each scales the Deployment."""
    if not hpas:
        return ["the cluster has no HorizontalPodAutoscaler for the Deployment"]
    found = []
    for hpa in hpas:
        target = (hpa.get("spec") or {}).get("scaleTargetRef") or {}
        if (target.get("kind"), target.get("name")) != ("Deployment", deployment):
            found.append(f"the HorizontalPodAutoscaler {(hpa.get('metadata') or {}).get('name')} scales "
                         f"{target.get('kind')}/{target.get('name')}, not the Deployment {deployment}")
    return found


# --- one request through a port-forward ------------------------------------------------------------------------


def request_through_port_forward(context: str, namespace: str, service: str, port: int, path: str = "/readyz",
                                 timeout: float = REQUEST_SECONDS, kubectl=("kubectl",),
                                 body: bytes | None = None) -> tuple[int, str]:
    """`kubectl port-forward svc/SERVICE :PORT` on 127.0.0.1, one GET `path` (a JSON POST of `body` when one is
    given): (status, start of the body). The forward is stopped in `finally:`. A Problem when it does not come up
    or the request fails."""
    command = [*kubectl, "--context", context, "-n", namespace, "port-forward", "--address", "127.0.0.1",
               f"svc/{service}", f":{port}"]
    forward = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines: queue.Queue = queue.Queue()
    threading.Thread(target=_read_lines, args=(forward.stdout, lines), daemon=True).start()
    try:
        end, said, local = time.monotonic() + timeout, [], None
        while local is None:
            try:
                line = lines.get(timeout=max(end - time.monotonic(), 0.01))
            except queue.Empty:
                raise Problem(f"kubectl port-forward to svc/{service}:{port} did not come up in {timeout:g} s") from None
            if not line:
                raise Problem(f"kubectl port-forward to svc/{service}:{port} ended: {' | '.join(said)[-300:]}")
            said.append(line.strip())
            match = FORWARDING.search(line)
            local = int(match.group(1)) if match else None
        url = f"http://127.0.0.1:{local}{path}"
        method = "GET" if body is None else "POST"
        request = urllib.request.Request(url, data=body, method=method,
                                         headers={} if body is None else {"Content-Type": "application/json"})
        try:
            opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # never through a proxy
            with opener.open(request, timeout=max(end - time.monotonic(), 5)) as answer:
                return answer.status, answer.read(300).decode("utf-8", "replace")
        except urllib.error.HTTPError as err:
            return err.code, err.read(300).decode("utf-8", "replace")
        except (urllib.error.URLError, OSError) as err:
            raise Problem(f"{method} {path} through the port-forward to svc/{service}:{port} failed: {_short(err)}") \
                from None
    finally:
        forward.terminate()
        try:
            forward.wait(timeout=5)
        except subprocess.TimeoutExpired:
            forward.kill()
            forward.wait()


def _read_lines(stream, into: queue.Queue) -> None:
    """Every line of `stream` into `into`, then "" at its end (the reader closes it)."""
    try:
        for line in stream:
            into.put(line)
    except (OSError, ValueError):
        pass
    finally:
        into.put("")
        stream.close()


# --- the whole run ------------------------------------------------------------------------------------------


def run(api, objects: list[dict], context: str, source: str = SOURCE_NAMESPACE, rollout_seconds: float = ROLLOUT_SECONDS,
        forward=request_through_port_forward, job: str | None = None) -> Result:
    """Apply `objects` (the rendered dev overlay) into a fresh namespace of the cluster `api` talks to, wait for the
    rollout, read back the HPA, send one request through a port-forward; delete the namespace (and the volumes
    borrowed for it) afterwards, also when a step fails. Problems are collected in the Result, never raised."""
    from mlops_kit.k8s import find

    job = job or secrets.token_hex(4)
    result = Result(context=context, namespace=f"mlops-grade-{job}")
    namespace, borrowed = result.namespace, []
    deployments = find(objects, "Deployment")
    if len(deployments) != 1:
        result.problems.append(f"the dev overlay renders {len(deployments)} Deployments, expected one")
        return result
    scoped = sorted({f"{o.get('kind')}/{(o.get('metadata') or {}).get('name')}" for o in objects
                     if o.get("kind") in CLUSTER_SCOPED - {"Namespace"}})
    if scoped:
        result.problems.append(f"the dev overlay renders cluster-wide objects ({', '.join(scoped)}): the service "
                               "needs none, and the grader applies only objects of the namespace")
        return result
    deployment, cluster = deployments[0], kind_cluster(context)
    try:
        call(api, "POST", "/api/v1/namespaces", body={
            "apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace, "labels": {
                LABEL: job, "pod-security.kubernetes.io/enforce": "restricted"}}})
        try:
            wanted, claims = referenced(deployment)
            rendered = {(o.get("kind"), (o.get("metadata") or {}).get("name")) for o in objects}
            provide_secrets(api, {n: k for n, k in wanted.items() if ("Secret", n) not in rendered}, namespace,
                            source, job)
            borrow_claims(api, [c for c in claims if ("PersistentVolumeClaim", c) not in rendered], namespace,
                          source, job, borrowed)
            for obj in objects:
                if obj.get("kind") == "Namespace":
                    continue  # the fresh namespace stands in for it
                apply(api, placed(obj, namespace), namespace)
                result.applied.append(f"{obj['kind']}/{obj['metadata']['name']}")
            name = deployment["metadata"]["name"]
            wait_rollout(api, name, namespace, cluster, deadline=rollout_seconds)
            hpas = [fetch(api, o.get("apiVersion", "autoscaling/v2"), "HorizontalPodAutoscaler", namespace,
                          o["metadata"]["name"]) for o in find(objects, "HorizontalPodAutoscaler")]
            result.problems += hpa_problems([h for h in hpas if h], name)
            services = find(objects, "Service")
            if not services:
                raise Problem("the dev overlay renders no Service to send a request through")
            service = services[0]
            port = ((service.get("spec") or {}).get("ports") or [{}])[0].get("port")
            code, body = forward(context, namespace, service["metadata"]["name"], int(port))
            if code != 200:
                result.problems.append(f"GET /readyz through the Service answered {code}: {body[:200]}")
        except Problem as problem:
            result.problems.append(str(problem))
    except Exception as err:  # noqa: BLE001 — the cluster's own errors, said as such
        from kubernetes.client.exceptions import ApiException

        result.problems.append(f"the cluster failed a request: {api_message(err)}" if isinstance(err, ApiException)
                               else f"the live check failed: {type(err).__name__}: {_short(err)}")
    finally:
        result.cleanup = cleanup(api, namespace, borrowed)
    return result


def cleanup(api, namespace: str, volumes: list[str]) -> list[str]:
    """Delete the namespace (with everything in it) and the borrowed volumes; what could not be deleted."""
    from kubernetes.client.exceptions import ApiException

    left = []
    for path in [f"/api/v1/namespaces/{namespace}"] + [f"/api/v1/persistentvolumes/{v}" for v in volumes]:
        try:
            call(api, "DELETE", path)
        except ApiException as err:
            if status_of(err) != 404:
                left.append(f"{path}: {api_message(err)}")
        except Exception as err:  # noqa: BLE001
            left.append(f"{path}: {_short(err)}")
    return left


def live_check(objects, environ=None) -> Result:
    """The live check as lab 10 runs it: the named cluster (else Unavailable), then `run` on `objects` (the rendered
    dev overlay, or a function giving them, called only once a cluster answered: no cluster, no rendering)."""
    environ = os.environ if environ is None else environ
    context = chosen_context(environ)
    api = connect(context)
    try:
        objects = objects() if callable(objects) else objects
        return run(api, objects, context, source=environ.get(SOURCE_ENV, "").strip() or SOURCE_NAMESPACE)
    finally:
        api.close()
