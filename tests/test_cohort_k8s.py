"""The Dask grading workers on Kubernetes (deploy/dask-workers, docs/cohort-on-kubernetes.md), checked offline: no
cluster is reachable here, so `kubectl kustomize` renders the manifests and kubernetes-validate checks each object
against the Kubernetes API schema (strict: an unknown field fails); then what the graders need is asserted on the
rendered objects: workers reach the scheduler through its Service, no nanny, one thread, the grading secret mounted
from a Secret (never rendered into the manifests) and copied to a 0600 file, and the security context bubblewrap
needs (user namespaces allowed, an unmasked /proc in a pod user namespace, no capabilities, no privilege escalation)."""

import os
import shlex
import shutil
import subprocess

import pytest
import yaml

from grader.labs import REPO
from mlops_kit.k8s import KUBERNETES_VERSION, schema_errors

BASE = REPO / "deploy" / "dask-workers"


@pytest.fixture(scope="module")
def objects() -> list[dict]:
    if not shutil.which("kubectl"):
        if os.environ.get("CI") == "true":
            pytest.fail("CI must render the worker manifests: kubectl is not installed")
        pytest.skip("kubectl is not installed (kubectl kustomize renders the manifests)")
    done = subprocess.run(["kubectl", "kustomize", str(BASE)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return [o for o in yaml.safe_load_all(done.stdout) if o]


def one(objects, kind, name):
    found = [o for o in objects if o["kind"] == kind and o["metadata"]["name"] == name]
    assert len(found) == 1, f"{kind}/{name}: {len(found)} rendered"
    return found[0]


def test_every_rendered_object_is_valid_kubernetes(objects):
    assert {(o["kind"], o["metadata"]["name"]) for o in objects} >= {
        ("Deployment", "dask-worker"), ("Deployment", "dask-scheduler"), ("Service", "dask-scheduler")}
    assert schema_errors(objects, KUBERNETES_VERSION, strict=True) == []


def test_the_validation_refuses_a_misspelt_field(objects):
    worker = yaml.safe_load(yaml.safe_dump(one(objects, "Deployment", "dask-worker")))
    worker["spec"]["template"]["spec"]["containers"][0]["securityContext"]["procMout"] = "Unmasked"
    errors = schema_errors([worker], KUBERNETES_VERSION, strict=True)
    assert len(errors) == 1 and "procMout" in errors[0]


def test_workers_reach_the_scheduler_through_its_service(objects):
    service = one(objects, "Service", "dask-scheduler")
    scheduler = one(objects, "Deployment", "dask-scheduler")
    worker = one(objects, "Deployment", "dask-worker")
    pod_labels = scheduler["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= pod_labels.items()
    port = service["spec"]["ports"][0]
    named = {p["name"]: p["containerPort"] for p in scheduler["spec"]["template"]["spec"]["containers"][0]["ports"]}
    assert named[port["targetPort"]] == port["port"] == 8786
    command = worker["spec"]["template"]["spec"]["containers"][0]["command"]
    assert command[:3] == ["dask", "worker", f"tcp://{service['metadata']['name']}:{port['port']}"]
    assert "--no-nanny" in command and command[command.index("--nthreads") + 1] == "1"
    for deployment in (scheduler, worker):
        assert all(c["image"].startswith("ghcr.io/mlops-course/grader-worker:") and not c["image"].endswith(":latest")
                   for c in deployment["spec"]["template"]["spec"]["containers"])
    policy = one(objects, "NetworkPolicy", "dask-worker")
    assert policy["spec"]["podSelector"]["matchLabels"].items() <= worker["spec"]["template"]["metadata"]["labels"].items()


def test_the_grading_secret_comes_from_a_secret_and_reaches_the_grader_as_a_private_file(objects):
    assert not [o for o in objects if o["kind"] == "Secret"]  # created by the instructor, never in git
    pod = one(objects, "Deployment", "dask-worker")["spec"]["template"]["spec"]
    volumes = {v["name"]: v for v in pod["volumes"]}
    source = [v for v in volumes.values() if "secret" in v]
    assert len(source) == 1 and source[0]["secret"]["secretName"] == "mlops-grade-secret"
    env = {e["name"]: e.get("value") for e in pod["containers"][0]["env"]}
    target = env["MLOPS_GRADE_SECRET"]
    mounts = {m["mountPath"]: m["name"] for m in pod["containers"][0]["volumeMounts"]}
    copy_dir = os.path.dirname(target)
    assert copy_dir in mounts and volumes[mounts[copy_dir]]["emptyDir"]["medium"] == "Memory"
    init = pod["initContainers"][0]
    script = shlex.split(init["command"][-1].replace("&&", " && "))
    assert "umask" in script and script[script.index("umask") + 1] == "077"  # the grader refuses group-readable
    copied = script[script.index("cp") + 1:script.index("cp") + 3]
    init_mounts = {m["mountPath"]: m["name"] for m in init["volumeMounts"]}
    assert copied[1] == target and init_mounts[copy_dir] == mounts[copy_dir]
    assert init_mounts[os.path.dirname(copied[0])] == source[0]["name"]


def test_the_worker_pod_lets_bubblewrap_make_its_namespaces_and_nothing_more(objects):
    pod = one(objects, "Deployment", "dask-worker")["spec"]["template"]["spec"]
    assert pod["hostUsers"] is False and pod["automountServiceAccountToken"] is False
    context = pod["securityContext"]
    assert context["runAsNonRoot"] is True and context["runAsUser"] != 0
    assert context["seccompProfile"]["type"] in ("Unconfined", "Localhost")  # RuntimeDefault refuses CLONE_NEWUSER
    assert context["appArmorProfile"]["type"] in ("Unconfined", "Localhost")
    for container in pod["containers"] + pod["initContainers"]:
        sc = container["securityContext"]
        assert sc["allowPrivilegeEscalation"] is False and sc["capabilities"]["drop"] == ["ALL"]
        assert sc["readOnlyRootFilesystem"] is True and "add" not in sc["capabilities"]
        assert not sc.get("privileged")
        assert container["resources"]["limits"]["memory"]
    worker = pod["containers"][0]
    assert worker["securityContext"]["procMount"] == "Unmasked"  # bwrap --proc /proc inside the pod
    namespace = one(objects, "Namespace", "mlops-grading")  # Pod Security would refuse the pods otherwise
    assert namespace["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "privileged"
    assert {o["metadata"].get("namespace") for o in objects if o["kind"] != "Namespace"} == {"mlops-grading"}
    tmp = [m for m in worker["volumeMounts"] if m["mountPath"] == "/tmp"]
    assert tmp and "emptyDir" in {v["name"]: v for v in pod["volumes"]}[tmp[0]["name"]]
