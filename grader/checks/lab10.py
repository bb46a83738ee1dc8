"""Lab 10 — Kubernetes: the learner's Kustomize base and overlays are rendered with `kubectl kustomize`, validated
against the Kubernetes API schemas offline, and judged by policy rules written as Python over the rendered objects;
the kind config is read; the cost model is called on the lab's example and on hidden traffic profiles."""

from __future__ import annotations

import json
import math
import random
import re

from grader.checks.common import Checks, Fail, Partial, learner_yaml
from grader.labs import Lab
from grader.sandbox import Limits
from grader.secret import seed_for

LAB = Lab(
    id="10_kubernetes",
    title="Run the service on Kubernetes",
    week=10,
    minutes=100,
    objectives=(
        "write a Kustomize base for the service: Deployment, Service, ConfigMap, HPA, PDB, NetworkPolicy and RBAC",
        "give the pods probes, requests and limits and a restricted security context",
        "keep secrets out of git: reference a Secret, never commit one",
        "derive dev and prod overlays that differ only where they should",
        "compare what serving costs on a managed endpoint, serverless containers and a Kubernetes node pool",
    ),
    lesson="curriculum/10_kubernetes.ipynb",
    seed=43,
    timeout=120,
    cell_timeout=60,
    budget=240,
)

CHECKS = Checks()
OVERLAYS = ("dev", "prod")
KIND_CONFIG, COST = "kind-config.yaml", "cost.py"
NAME = "cancer-service"
OPTIONS = ("managed_endpoint", "serverless", "kubernetes")
GATEWAY = {"role": "gateway"}
SECRETISH = re.compile(r"pass(word)?|secret|token|api[_-]?key|credential", re.I)
CALL_LIMITS, RENDER_LIMITS = Limits(wall_seconds=120), Limits(wall_seconds=90)
EXAMPLE = {"mean_rps": 5.0, "peak_rps": 30.0, "active_hours_per_day": 12.0, "seconds_per_request": 0.04}


def prepare(work):
    """Nothing to copy: the lab writes its manifests from scratch. The image tag differs from the notebook's."""
    rng = random.Random(seed_for(LAB.id, "tag"))
    params = {"seed": LAB.seed, "image_tag": "".join(rng.choice("0123456789abcdef") for _ in range(40)),
              "output_dir": "outputs"}
    return params, {"profiles": hidden_profiles(random.Random(seed_for(LAB.id, "profiles")))}


def hidden_profiles(rng: random.Random, count: int = 8) -> list[dict]:
    """Traffic profiles from a trickle to a steady stream, with bursts: each option is the cheapest for one of them."""
    profiles = [{"mean_rps": 0.05, "peak_rps": 2.0, "active_hours_per_day": 8.0, "seconds_per_request": 0.05},
                {"mean_rps": 150.0, "peak_rps": 300.0, "active_hours_per_day": 24.0, "seconds_per_request": 0.1},
                {"mean_rps": 25.0, "peak_rps": 38.0, "active_hours_per_day": 24.0, "seconds_per_request": 0.15}]
    while len(profiles) < count:
        mean = round(10 ** rng.uniform(-1.5, 2.3), 3)
        profiles.append({"mean_rps": mean, "peak_rps": round(mean * rng.uniform(1.5, 6.0), 3),
                         "active_hours_per_day": round(rng.uniform(2, 24), 1),
                         "seconds_per_request": round(rng.uniform(0.005, 0.2), 4)})
    rng.shuffle(profiles)
    return profiles


def reference_costs(profile: dict, prices: dict) -> dict:
    """The lab's formulas (Exercise 6), as the grader computes them."""
    hours = prices["hours_per_month"]
    managed, serverless, cluster = prices["managed_endpoint"], prices["serverless"], prices["kubernetes"]
    instances = max(managed["min_instances"],
                    math.ceil(profile["peak_rps"] / managed["requests_per_second_per_instance"]))
    requests = profile["mean_rps"] * 3600 * profile["active_hours_per_day"] * hours / 24
    compute = requests * profile["seconds_per_request"]
    nodes = max(cluster["min_nodes"], math.ceil(profile["peak_rps"] / cluster["requests_per_second_per_node"]))
    return {"managed_endpoint": instances * managed["instance_hour"] * hours,
            "serverless": compute * (serverless["vcpu"] * serverless["vcpu_second"]
                                     + serverless["gib"] * serverless["gib_second"])
            + requests / 1e6 * serverless["per_million_requests"],
            "kubernetes": (nodes * cluster["node_hour"] + cluster["control_plane_hour"]) * hours}


# --- the rendered overlays -------------------------------------------------------------------------------


def rendered(ctx, overlay: str) -> list[dict]:
    """The objects `kubectl kustomize` builds from an overlay, rendered in a probe (as the learner, no network: a
    kustomization may name remote bases or files), once per submission for both overlays."""
    import numpy as np

    relative = f"k8s/overlays/{overlay}"
    if not ctx.exists(ctx.output(f"{relative}/kustomization.yaml")):
        raise Fail(f"{relative}/kustomization.yaml was not written{ctx.why_missing()}")
    plan = {"renders": [f"k8s/overlays/{name}" for name in OVERLAYS]}
    result = ctx.probe("ci_probe", {"plan": np.array(json.dumps(plan))}, args=("--repo", ctx.output("").rstrip("/")),
                       limits=RENDER_LIMITS)
    entry = (result.get("renders") or {}).get(relative, {"error": "it was not rendered"})
    if "skipped" in entry:
        raise Fail(f"skipped: {entry['skipped']} (kubectl kustomize renders the overlays; nothing else can judge them)")
    if "error" in entry:
        raise Fail(f"the {overlay} overlay does not build: {entry['error']}")
    return entry["objects"]


def both(ctx) -> dict[str, list[dict]]:
    return {overlay: rendered(ctx, overlay) for overlay in OVERLAYS}


def one(objects: list[dict], kind: str, overlay: str) -> dict:
    from mlops_kit.k8s import find

    found = find(objects, kind)
    if len(found) != 1:
        raise Fail(f"the {overlay} overlay renders {len(found)} {kind} object(s), expected one")
    return found[0]


def quantity(value) -> float:
    """A Kubernetes quantity ("250m", "1", "512Mi", "1Gi", "1e3") as a number."""
    units = {"m": 1e-3, "k": 1e3, "M": 1e6, "G": 1e9, "T": 1e12, "Ki": 2**10, "Mi": 2**20, "Gi": 2**30,
             "Ti": 2**40}
    match = re.fullmatch(r"\s*([0-9.]+(?:[eE][0-9]+)?)\s*(m|k|M|G|T|Ki|Mi|Gi|Ti)?\s*", str(value))
    if not match:
        raise ValueError(f"{value!r} is not a quantity")
    return float(match.group(1)) * units.get(match.group(2) or "", 1)


def merged(problems: list[str], limit: int = 8) -> str:
    """Problems as one message: the same problem in dev and prod said once ("dev and prod: ..."), in order."""
    seen: dict[str, list[str]] = {}
    for problem in problems:
        overlay, _, text = problem.partition(": ") if problem.startswith(("dev: ", "prod: ")) else ("", "", problem)
        where = seen.setdefault(text, [])
        if overlay not in where:
            where.append(overlay)
    said = [f"{' and '.join(where)}: {text}" if any(where) else text for text, where in seen.items()]
    return "; ".join(said[:limit]) + (f"; and {len(said) - limit} more" if len(said) > limit else "")


# --- checks ---------------------------------------------------------------------------------------------


@CHECKS.add(points=2, hint="kubectl kustomize OUTPUT/k8s/overlays/dev (and prod) must print the manifests; each "
            "overlay lists ../../base under resources:", section="10.12 Overlays: dev and prod")
def overlays_build(ctx):
    """`kubectl kustomize` builds the dev and the prod overlay."""
    problems = []
    for overlay in OVERLAYS:
        try:
            rendered(ctx, overlay)
        except Fail as failure:
            problems.append(str(failure))
    if problems:
        raise Fail(merged(problems))


@CHECKS.add(points=2, hint="schema_errors(render(overlay)) in the notebook names each field Kubernetes would refuse",
            section="10.3 Validating manifests offline", depends=("overlays_build",))
def schema_valid(ctx):
    """Every rendered object is valid against the Kubernetes 1.32 API schemas (strict: no unknown fields)."""
    from mlops_kit.k8s import KUBERNETES_VERSION, schema_errors

    errors = [f"{overlay}: {error}" for overlay, objects in both(ctx).items() for error in schema_errors(objects)]
    if errors:
        raise Fail(f"Kubernetes {KUBERNETES_VERSION} would refuse {len(errors)} thing(s): " + "; ".join(errors[:5]))


@CHECKS.add(points=2, hint="in each overlay: images: - name: ghcr.io/mlops-course/cancer-service, newTag: "
            "image_tag (the parameter, never typed in)", section="10.12 Overlays: dev and prod",
            depends=("overlays_build",))
def image_pinned(ctx):
    """Both overlays run the week-8 image at the tag the lab's `image_tag` parameter gives, never `latest`."""
    from mlops_kit.k8s import IMAGE, containers

    expected = f"{IMAGE}:{ctx.params['image_tag']}"
    problems = []
    for overlay, objects in both(ctx).items():
        images = [c.get("image") for obj in objects for c in containers(obj)]
        if not images:
            problems.append(f"{overlay}: no container at all")
        wrong = sorted({str(i) for i in images if i != expected})
        if wrong:
            problems.append(f"{overlay} runs {', '.join(wrong)}, not {expected}")
    if problems:
        raise Fail("; ".join(problems) + (" — the tag must come from the image_tag parameter (the grader passes "
                                          "another one)" if any(":latest" not in p for p in problems) else ""))


def _deployment(ctx, overlay: str = "prod") -> dict:
    return one(both(ctx)[overlay], "Deployment", overlay)


def _probe_target(probe: dict, container: dict) -> tuple[str | None, object]:
    get = (probe or {}).get("httpGet") or {}
    port = get.get("port")
    if isinstance(port, str) and not port.isdigit():
        named = {p.get("name"): p.get("containerPort") for p in container.get("ports") or []}
        port = named.get(port, port)
    return get.get("path"), int(port) if isinstance(port, (int, str)) and str(port).isdigit() else port


@CHECKS.add(points=3, hint="readinessProbe httpGet /readyz, livenessProbe httpGet /healthz, both on port 3000; a "
            "startupProbe gives the model time to load", section="10.4 Probes: readiness, liveness, startup",
            depends=("overlays_build",))
def probes(ctx):
    """The service container is ready on /readyz and alive on /healthz (port 3000); liveness never asks /readyz."""
    from mlops_kit.k8s import PORT, containers

    container = next(iter(containers(_deployment(ctx))), {})
    problems = []
    for kind, path in (("readinessProbe", "/readyz"), ("livenessProbe", "/healthz")):
        probe = container.get(kind)
        if not probe:
            problems.append(f"no {kind}")
            continue
        got = _probe_target(probe, container)
        if got != (path, PORT):
            problems.append(f"the {kind} asks {got[0]} on port {got[1]}, not {path} on {PORT}")
    liveness = _probe_target(container.get("livenessProbe") or {}, container)
    if liveness[0] == "/readyz":
        problems.append("the livenessProbe asks /readyz: a pod still loading its model would be killed and "
                        "restarted for ever")
    if problems:
        raise Fail("; ".join(problems))


@CHECKS.add(points=2, hint="resources: requests: {cpu: 250m, memory: 512Mi}, limits: {cpu: \"1\", memory: 1Gi}",
            section="10.5 Requests, limits and QoS", depends=("overlays_build",))
def resources(ctx):
    """Every container in both overlays requests and limits CPU and memory, limits at least the requests."""
    from mlops_kit.k8s import WORKLOADS, containers

    problems = []
    for overlay, objects in both(ctx).items():
        for obj in (o for o in objects if o.get("kind") in WORKLOADS):
            for container in containers(obj):
                given = container.get("resources") or {}
                where = f"{overlay}: {obj['kind']}/{obj['metadata'].get('name')} container {container.get('name')}"
                missing = [f"{kind}.{what}" for kind in ("requests", "limits") for what in ("cpu", "memory")
                           if (given.get(kind) or {}).get(what) is None]
                if missing:
                    problems.append(f"{where} sets no {', '.join(missing)}")
                    continue
                for what in ("cpu", "memory"):
                    try:
                        low, high = quantity(given["requests"][what]), quantity(given["limits"][what])
                    except ValueError as err:
                        problems.append(f"{where}: {err}")
                        continue
                    if high < low:
                        problems.append(f"{where}: the {what} limit {given['limits'][what]} is below its request "
                                        f"{given['requests'][what]}")
    if problems:
        raise Fail(merged(problems))


@CHECKS.add(points=3, hint="pod: runAsNonRoot, seccompProfile RuntimeDefault; container: allowPrivilegeEscalation: "
            "false, readOnlyRootFilesystem: true, capabilities drop ALL; an emptyDir at /tmp",
            section="10.6 A restricted security context", depends=("overlays_build",))
def restricted_security(ctx):
    """Every workload meets the restricted Pod Security Standard with a read-only root, and has a writable /tmp."""
    from mlops_kit.k8s import WORKLOADS, containers, pod_spec, restricted_violations

    problems = []
    for overlay, objects in both(ctx).items():
        for obj in (o for o in objects if o.get("kind") in WORKLOADS):
            problems += [f"{overlay}: {v}" for v in restricted_violations(obj)]
            volumes = {v.get("name"): v for v in (pod_spec(obj) or {}).get("volumes") or []}
            for container in containers(obj):
                tmp = [m for m in container.get("volumeMounts") or [] if m.get("mountPath") == "/tmp"]
                if not tmp or "emptyDir" not in volumes.get(tmp[0].get("name"), {}):
                    problems.append(f"{overlay}: container {container.get('name')} has no emptyDir at /tmp: with a "
                                    "read-only root, BentoML cannot write its home")
    if problems:
        raise Fail(merged(problems))


@CHECKS.add(points=2, hint="envFrom: configMapRef to the ConfigMap; env: valueFrom: secretKeyRef for the token; no "
            "kind: Secret in git", section="10.7 Configuration and secrets", depends=("overlays_build",))
def config_and_secret(ctx):
    """The Deployment reads its settings from the rendered ConfigMap and its token from a Secret it only references;
    no Secret and no secret-looking literal is in the manifests."""
    from mlops_kit.k8s import containers, find

    problems = []
    for overlay, objects in both(ctx).items():
        deployment = one(objects, "Deployment", overlay)
        maps = {o["metadata"].get("name") for o in find(objects, "ConfigMap")}
        refs = [(e.get("configMapRef") or {}).get("name") for c in containers(deployment)
                for e in c.get("envFrom") or []] + [
               ((e.get("valueFrom") or {}).get("configMapKeyRef") or {}).get("name") for c in containers(deployment)
               for e in c.get("env") or []]
        if not maps & set(refs):
            problems.append(f"{overlay}: the Deployment reads no ConfigMap of the overlay (envFrom: configMapRef)")
        secret_refs = [e for c in containers(deployment) for e in c.get("env") or []
                       if (e.get("valueFrom") or {}).get("secretKeyRef")] + [
                      e for c in containers(deployment) for e in c.get("envFrom") or [] if e.get("secretRef")]
        if not secret_refs:
            problems.append(f"{overlay}: the Deployment references no Secret (secretKeyRef or secretRef)")
        if find(objects, "Secret"):
            problems.append(f"{overlay}: a Secret is in the manifests, so its value is in git (base64 is not "
                            "encryption)")
        literal = [e.get("name") for c in containers(deployment) for e in c.get("env") or []
                   if "value" in e and SECRETISH.search(str(e.get("name")))]
        literal += [k for m in find(objects, "ConfigMap") for k in (m.get("data") or {}) if SECRETISH.search(k)]
        if literal:
            problems.append(f"{overlay}: secret-looking values written in plain text: {', '.join(sorted(set(literal)))}")
    if problems:
        raise Fail(merged(problems))


@CHECKS.add(points=2, hint="the Service's selector: the pod template's labels; targetPort: the container port (3000 "
            "or its name)", section="10.8 Labels, selectors and Services", depends=("overlays_build",))
def service_routes(ctx):
    """The Service selects the Deployment's pods (and only by a non-empty selector) and targets its container port."""
    from mlops_kit.k8s import pod_labels, selects, target_port_ok

    problems = []
    for overlay, objects in both(ctx).items():
        deployment, service = one(objects, "Deployment", overlay), one(objects, "Service", overlay)
        selector = (service.get("spec") or {}).get("selector") or {}
        if not selector:
            problems.append(f"{overlay}: the Service has no selector: it routes to no pod")
        elif not selects({"matchLabels": selector}, pod_labels(deployment)):
            problems.append(f"{overlay}: the Service selects {selector}, the pods are labelled "
                            f"{pod_labels(deployment)}: it routes to no pod")
        for port in (service.get("spec") or {}).get("ports") or []:
            if not target_port_ok(port, deployment):
                problems.append(f"{overlay}: the Service's port {port.get('port')} targets "
                                f"{port.get('targetPort', port.get('port'))}, which no container port is")
    if problems:
        raise Fail(merged(problems))


@CHECKS.add(points=3, hint="autoscaling/v2, scaleTargetRef: {apiVersion: apps/v1, kind: Deployment, name: ...}, a "
            "Resource cpu Utilization metric; prod minReplicas ≥ 2", section="10.9 Autoscaling and disruption budgets",
            depends=("overlays_build",))
def autoscaling(ctx):
    """An autoscaling/v2 HPA scales the Deployment on CPU utilization, within sane bounds (prod keeps two or more)."""
    problems = []
    for overlay, objects in both(ctx).items():
        hpa, deployment = one(objects, "HorizontalPodAutoscaler", overlay), one(objects, "Deployment", overlay)
        spec = hpa.get("spec") or {}
        target = spec.get("scaleTargetRef") or {}
        if hpa.get("apiVersion") != "autoscaling/v2":
            problems.append(f"{overlay}: the HPA is {hpa.get('apiVersion')}, not autoscaling/v2")
        if (target.get("kind"), target.get("name")) != ("Deployment", deployment["metadata"].get("name")):
            problems.append(f"{overlay}: the HPA scales {target.get('kind')}/{target.get('name')}, not the "
                            f"Deployment {deployment['metadata'].get('name')}")
        metrics = [m for m in spec.get("metrics") or [] if m.get("type") == "Resource"
                   and (m.get("resource") or {}).get("name") == "cpu"
                   and ((m.get("resource") or {}).get("target") or {}).get("type") == "Utilization"]
        if not metrics:
            problems.append(f"{overlay}: the HPA has no CPU utilization target")
        low, high = spec.get("minReplicas", 1), spec.get("maxReplicas", 0)
        if not (isinstance(low, int) and isinstance(high, int) and 1 <= low <= high):
            problems.append(f"{overlay}: minReplicas {low} and maxReplicas {high} are not 1 ≤ min ≤ max")
        elif overlay == "prod" and low < 2:
            problems.append("prod: minReplicas is 1: one pod is a single point of failure")
    if problems:
        raise Fail(merged(problems))


@CHECKS.add(points=2, hint="policy/v1 PodDisruptionBudget with the pods' labels and maxUnavailable: 1",
            section="10.9 Autoscaling and disruption budgets", depends=("overlays_build",))
def disruption_budget(ctx):
    """A PodDisruptionBudget covers the pods and still lets one be evicted at the HPA's minimum (drains can finish)."""
    from mlops_kit.k8s import pod_labels, selects

    problems = []
    for overlay, objects in both(ctx).items():
        pdb, deployment = one(objects, "PodDisruptionBudget", overlay), one(objects, "Deployment", overlay)
        spec = pdb.get("spec") or {}
        if not spec.get("selector") or not selects(spec.get("selector"), pod_labels(deployment)):
            problems.append(f"{overlay}: the PodDisruptionBudget does not select the Deployment's pods")
        hpa = next(iter(o for o in objects if o.get("kind") == "HorizontalPodAutoscaler"), {})
        pods = (hpa.get("spec") or {}).get("minReplicas") or (deployment.get("spec") or {}).get("replicas", 1)
        allowed = _disruptions(spec, int(pods))
        if allowed is None:
            problems.append(f"{overlay}: the PodDisruptionBudget sets neither minAvailable nor maxUnavailable")
        elif allowed < 1:
            problems.append(f"{overlay}: with {pods} pod(s) the budget allows no eviction: a node drain would hang")
    if problems:
        raise Fail(merged(problems))


def _disruptions(spec: dict, pods: int) -> int | None:
    def count(value, round_up: bool) -> int:
        if isinstance(value, str) and value.endswith("%"):
            share = float(value[:-1]) / 100 * pods
            return math.ceil(share) if round_up else math.floor(share)
        return int(value)

    if "maxUnavailable" in spec:
        return count(spec["maxUnavailable"], round_up=True)
    if "minAvailable" in spec:
        return pods - count(spec["minAvailable"], round_up=True)
    return None


@CHECKS.add(points=3, hint="podSelector: the pods' labels; policyTypes: [Ingress, Egress]; ingress from pods labelled "
            "role: gateway on TCP 3000; egress to port 53 only", section="10.10 NetworkPolicy: only the traffic needed",
            depends=("overlays_build",))
def network_policy(ctx):
    """A NetworkPolicy selects the pods, denies by default, admits only the gateway on 3000 and lets out only DNS."""
    from mlops_kit.k8s import PORT, find, pod_labels, selects

    problems = []
    for overlay, objects in both(ctx).items():
        deployment = one(objects, "Deployment", overlay)
        policies = [p for p in find(objects, "NetworkPolicy")
                    if selects((p.get("spec") or {}).get("podSelector"), pod_labels(deployment))]
        if not policies:
            problems.append(f"{overlay}: no NetworkPolicy selects the service's pods")
            continue
        for policy in policies:
            spec = policy.get("spec") or {}
            types = set(spec.get("policyTypes") or ["Ingress"])
            if types != {"Ingress", "Egress"}:
                problems.append(f"{overlay}: policyTypes is {sorted(types)}: list Ingress and Egress, or the "
                                "missing one stays open")
            for rule in spec.get("ingress") or []:
                sources = rule.get("from") or []
                if not sources or any(not s.get("podSelector", {}).get("matchLabels") and not s.get("namespaceSelector")
                                      and not s.get("ipBlock") for s in sources):
                    problems.append(f"{overlay}: an ingress rule admits every pod (from: missing or an empty "
                                    "selector): admit only the gateway")
                elif not any(selects(s.get("podSelector"), GATEWAY) for s in sources):
                    problems.append(f"{overlay}: no ingress rule admits the gateway (pods labelled role: gateway)")
                ports = [p.get("port") for p in rule.get("ports") or []]
                if ports != [PORT] and ports != ["http"]:
                    problems.append(f"{overlay}: an ingress rule opens ports {ports or 'all'}, not only {PORT}")
            if not spec.get("ingress"):
                problems.append(f"{overlay}: no ingress rule: even the gateway cannot reach the service")
            for rule in spec.get("egress") or []:
                ports = [p.get("port") for p in rule.get("ports") or []]
                if not ports or any(p != 53 for p in ports):
                    problems.append(f"{overlay}: an egress rule lets out ports {ports or 'all'}: the service needs "
                                    "only DNS (53)")
    if problems:
        raise Fail(merged(problems))


@CHECKS.add(points=2, hint="a ServiceAccount with automountServiceAccountToken: false used by the pods; a Role that "
            "gets one ConfigMap; a RoleBinding of that Role to that ServiceAccount",
            section="10.11 RBAC: a ServiceAccount that can do almost nothing", depends=("overlays_build",))
def rbac_minimal(ctx):
    """The pods run as their own ServiceAccount without a mounted token, bound to a Role that can only read."""
    from mlops_kit.k8s import find, pod_spec, rbac_problems

    problems = []
    for overlay, objects in both(ctx).items():
        deployment = one(objects, "Deployment", overlay)
        spec = pod_spec(deployment) or {}
        name = spec.get("serviceAccountName") or spec.get("serviceAccount")
        accounts = {a["metadata"].get("name"): a for a in find(objects, "ServiceAccount")}
        if not name or name == "default" or name not in accounts:
            problems.append(f"{overlay}: the pods run as {name or 'the default ServiceAccount'}, not one of the overlay's")
            continue
        mounted = spec.get("automountServiceAccountToken", accounts[name].get("automountServiceAccountToken", True))
        if mounted is not False:
            problems.append(f"{overlay}: the API token is mounted into the pods (automountServiceAccountToken: false)")
        for role in find(objects, "Role") + find(objects, "ClusterRole"):
            problems += [f"{overlay}: {role['kind']}/{role['metadata'].get('name')}: {p}" for p in rbac_problems(role)]
        bound = [b for b in find(objects, "RoleBinding") + find(objects, "ClusterRoleBinding")
                 if any(s.get("kind") == "ServiceAccount" and s.get("name") == name for s in b.get("subjects") or [])]
        if not bound:
            problems.append(f"{overlay}: no RoleBinding binds a Role to the ServiceAccount {name}")
        for binding in bound:
            ref = binding.get("roleRef") or {}
            if binding["kind"] == "ClusterRoleBinding" or ref.get("kind") != "Role" or not find(objects, "Role",
                                                                                                 ref.get("name")):
                problems.append(f"{overlay}: {binding['kind']}/{binding['metadata'].get('name')} binds "
                                f"{ref.get('kind')}/{ref.get('name')}, not a Role of the overlay")
    if problems:
        raise Fail(merged(problems))


ALLOWED_DIFFERENCES = re.compile(r"^(spec\.replicas|spec\.minReplicas|spec\.maxReplicas|subjects\[\d+\]\.namespace|"
                                 r"spec\.template\.spec\.(init)?[cC]ontainers\[\d+\]\.resources\.[a-z]+\.[a-z-]+)$")


@CHECKS.add(points=2, hint="the prod overlay patches replicas, resources and the HPA's bounds, and nothing else",
            section="10.12 Overlays: dev and prod", depends=("overlays_build",))
def overlays_differ_rightly(ctx):
    """Prod differs from dev only in replicas, resources and the HPA's bounds (namespaces aside), and scales higher."""
    from mlops_kit.cicd import manifest_changes

    def normalized(objects):
        out = []
        for obj in objects:
            obj = json.loads(json.dumps(obj))
            (obj.get("metadata") or {}).pop("namespace", None)
            out.append(obj)
        return out

    rendered_ = both(ctx)
    changes = manifest_changes(normalized(rendered_["dev"]), normalized(rendered_["prod"]))
    wrong = []
    for change in changes:
        head, _, rest = change.partition(" ")
        path = rest.split(":", 1)[0]
        if not ALLOWED_DIFFERENCES.match(path):
            change = change.replace("//", "/", 1)  # no namespace: it was set aside
            wrong.append(change if len(change) < 160 else change[:160] + "…")
    problems = [f"prod differs from dev beyond replicas, resources and HPA bounds: {'; '.join(wrong[:4])}"] if wrong \
        else []
    if not any(".minReplicas" in c or "spec.replicas" in c for c in changes):
        problems.append("prod runs as many replicas as dev")
    if problems:
        raise Fail("; ".join(problems))


@CHECKS.add(points=1, hint="kind: Cluster, apiVersion: kind.x-k8s.io/v1alpha4, nodes: a control-plane and a worker",
            section="10.13 kind: a cluster on your laptop")
def kind_config(ctx):
    """kind-config.yaml describes a kind cluster with a control-plane node and at least one worker."""
    path = ctx.output(KIND_CONFIG)
    if not ctx.exists(path):
        raise Fail(f"{KIND_CONFIG} was not written{ctx.why_missing()}")
    config = learner_yaml(ctx.read_text(path), KIND_CONFIG)
    if not isinstance(config, dict) or config.get("kind") != "Cluster" or \
            config.get("apiVersion") != "kind.x-k8s.io/v1alpha4":
        raise Fail(f"{KIND_CONFIG} is not a kind Cluster config (kind: Cluster, apiVersion: kind.x-k8s.io/v1alpha4)")
    roles = [n.get("role") for n in config.get("nodes") or [] if isinstance(n, dict)]
    if "control-plane" not in roles or "worker" not in roles:
        raise Fail(f"{KIND_CONFIG} has the nodes {roles or 'none'}: give it a control-plane and at least one worker "
                   "(a PodDisruptionBudget and a drain only mean something with a node to drain)")


# --- the cost model ----------------------------------------------------------------------------------------


def costs_of(ctx, profiles: list[dict], secret: bool) -> list[dict]:
    import numpy as np

    from mlops_kit.k8s import CLOUD_PRICES

    calls = []
    for index, profile in enumerate(profiles):
        for function in ("monthly_costs", "choose"):
            calls.append({"id": f"{index}:{function}", "function": function,
                          "kwargs": {"profile": profile, "prices": CLOUD_PRICES}})
    plan = {"file": ctx.output(COST), "calls": calls}
    result = ctx.probe("function_probe", {"plan": np.array(json.dumps(plan, sort_keys=True))}, limits=CALL_LIMITS,
                       needs=(ctx.output(COST),), secret=secret)
    return result["calls"]


def judge_costs(calls: list[dict], profiles: list[dict], describe) -> list[str]:
    from mlops_kit.k8s import CLOUD_PRICES

    by_id = {c["id"]: c for c in calls}
    wrong = []
    for index, profile in enumerate(profiles):
        expected = reference_costs(profile, CLOUD_PRICES)
        got, choice = by_id.get(f"{index}:monthly_costs", {}), by_id.get(f"{index}:choose", {})
        name = describe(index, profile)
        if "error" in got:
            wrong.append(f"{name}: monthly_costs failed: {got['error']}")
            continue
        costs = got.get("result")
        if not isinstance(costs, dict) or set(costs) != set(OPTIONS):
            wrong.append(f"{name}: monthly_costs returned {str(costs)[:120]}, not a dict of {', '.join(OPTIONS)}")
            continue
        for option in OPTIONS:
            value = costs[option]
            if isinstance(value, bool) or not isinstance(value, (int, float)) or \
                    abs(value - expected[option]) > max(0.01 * expected[option], 0.05):
                wrong.append(f"{name}: {option} costs {value!r}, expected {expected[option]:.2f}")
        best = min(expected, key=expected.get)
        if "error" in choice:
            wrong.append(f"{name}: choose failed: {choice['error']}")
        elif choice.get("result") != best:
            wrong.append(f"{name}: choose said {choice.get('result')!r}, the cheapest is {best!r}")
    return wrong


@CHECKS.add(points=2, hint="monthly_costs(profile, prices) → {managed_endpoint, serverless, kubernetes} in USD a "
            "month, by Exercise 6's formulas; choose() → the cheapest", section="10.14 Cloud or cluster? Counting the cost")
def cost_example(ctx):
    """cost.py prices the lab's example profile right and chooses the cheapest option."""
    wrong = judge_costs(costs_of(ctx, [EXAMPLE], secret=False), [EXAMPLE], lambda i, p: "the lab's example")
    if wrong:
        raise Fail("; ".join(wrong))


@CHECKS.add(points=4, hint="check each formula against Exercise 6: instances and nodes from the PEAK rate (rounded "
            "up, at least the minimum), requests from the MEAN rate over the active hours, the control-plane fee",
            section="10.14 Cloud or cluster? Counting the cost", visible=False, depends=("cost_example",))
def cost_model(ctx):
    """cost.py prices hidden traffic profiles right (within 1 %) and chooses the cheapest option for each."""
    profiles = ctx.hidden["profiles"]
    wrong = judge_costs(costs_of(ctx, profiles, secret=True), profiles,
                        lambda i, p: f"profile {i + 1} ({p['mean_rps']} req/s mean, {p['peak_rps']} peak, "
                                     f"{p['active_hours_per_day']} h/day, {p['seconds_per_request']} s/request)")
    if wrong:
        bad = len({w.split(":")[0] for w in wrong})
        message = f"{bad} of {len(profiles)} profiles priced or chosen wrong: " + "; ".join(wrong[:6])
        if bad < len(profiles):
            return Partial((len(profiles) - bad) / len(profiles), message)
        raise Fail(message)


# --- live, where a cluster is named ------------------------------------------------------------------------


@CHECKS.add(points=3, hint="kind create cluster --config kind-config.yaml; kind load docker-image IMAGE --name mlops; "
            "the Secret and the filled cancer-registry claim in cancer-dev as 10.13 shows; then grade with "
            "MLOPS_KUBE_CONTEXT=kind-mlops", section="10.13 kind: a cluster on your laptop",
            runs_only_with="a Kubernetes cluster")
def live_cluster(ctx):
    """The dev overlay applied to a real cluster rolls out, is autoscaled by its HPA and answers /readyz."""
    from grader import k8s_live

    # Unavailable without a named, answering cluster; a Fail when the overlay does not build
    result = k8s_live.live_check(lambda: rendered(ctx, "dev"))
    problems = list(result.problems) or ([] if result.applied else ["nothing was applied to the cluster"])
    where = f"on the cluster of context {result.context} (namespace {result.namespace})"
    left = f"the grader could not delete {', '.join(result.cleanup)}: delete it by hand" if result.cleanup else ""
    if problems or not result.ok:
        raise Fail(f"{where}: " + "; ".join(problems + ([left] if left else [])))
    if left:  # applied, rolled out, answered: the learner's work passed; the leftovers are the grader's to say
        return Partial(1.0, f"passed {where}; but {left}")
    return None
