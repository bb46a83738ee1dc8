"""Learner images built and run for real with podman, from the grader's process (an engine needs the host).

Isolation comes from the engine: builds run with no network; containers run with no network at all (only
their own loopback), a read-only root, no capabilities, no privilege gain, bounded memory and processes, and
the registry mounted read-only. The trusted client (tools/container_client.py) joins the container's network
namespace with nsenter, so no port is ever published on the host and no NAT rule is written. Everything the
grader creates carries the label `mlops-grade.job=<job>`; `cleanup(job)` removes it, whatever happened.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import stat
import subprocess
import sys
import time
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from mlops_kit.containers import engine_env

LABEL = "mlops-grade.job"
CLIENT = Path(__file__).with_name("tools") / "container_client.py"
RACE = re.compile(r"identifier is not an? (image|container)|layer not known")  # storage shared with other builds
STALE_SECONDS = 3600  # a job's containers and images older than this belong to a grader that died: removed
_BUILDS: dict = {}  # job -> the podman build process running for it, for stop_all()
_JOBS: set = set()  # jobs with containers or images now, for stop_all()


@lru_cache(maxsize=1)
def unavailable() -> str:
    """Why the grader cannot build and run images here ("" when it can): podman as root, with nsenter."""
    if not shutil.which("podman"):
        return "no container engine (podman is not installed: `make images` installs it as root)"
    if os.geteuid() != 0:
        return "podman needs root here (the grader joins the container's network namespace with nsenter)"
    if not shutil.which("nsenter"):
        return "nsenter (util-linux) is not installed"
    done = podman("info", "--format", "{{.Host.OCIRuntime.Name}}", timeout=60)
    if done.returncode != 0:
        return f"podman does not work here: {done.stderr.strip()[-300:]}"
    return ""


def podman(*args: str, timeout: float = 120, **kwargs) -> subprocess.CompletedProcess:
    try:
        return subprocess.run(["podman", *args], capture_output=True, text=True, env=engine_env(), timeout=timeout,
                              **kwargs)
    except subprocess.TimeoutExpired as err:
        return subprocess.CompletedProcess(err.cmd, 124, "", f"timed out after {timeout:.0f} s")


def image_exists(tag: str) -> bool:
    return podman("image", "exists", tag, timeout=60).returncode == 0


@dataclass
class Build:
    ok: bool
    seconds: float
    log: str  # the build's output, tail
    timed_out: bool = False


def build(context: Path, tag: str, job: str, base_image: str, timeout: float, target: str | None = None) -> Build:
    """`podman build` of context/Containerfile with no network and no pulls, the base image as BASE_IMAGE
    (`target`: only up to that stage)."""
    # no --label: a job's images are found by their tag, and the build stays the same as the reference's, whose
    # layers are the cache that makes a learner's rebuild fast
    command = ["podman", "build", "--format", "docker", "--network", "none", "--pull=never", "--memory", "3g",
               "--build-arg", f"BASE_IMAGE={base_image}", "--layers", "-t", tag, "-f", str(context / "Containerfile"),
               str(context)]
    if target:
        command[2:2] = ["--target", target]
    start = time.monotonic()
    _JOBS.add(job)
    for attempt in (1, 2):  # a build that lost a race with another build over a cached layer runs once more
        proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                env=engine_env(), start_new_session=True)
        _BUILDS[job] = proc
        try:
            out, _ = proc.communicate(timeout=max(1.0, timeout - (time.monotonic() - start)))
            timed_out = False
        except subprocess.TimeoutExpired:
            out = _stop_build(proc)
            timed_out = True
        finally:
            _BUILDS.pop(job, None)
        if proc.returncode == 0 or timed_out or attempt == 2 or not RACE.search(out or ""):
            break
    lines = [line for line in (out or "").splitlines() if "level=warning" not in line or "HEALTHCHECK" in line]
    # podman can tag the image and then fail to delete a build container another build touched: the image is built
    tagged = proc.returncode != 0 and not timed_out and f"Successfully tagged {tag}" in (out or "") \
        and image_exists(tag)
    return Build((proc.returncode == 0 or tagged) and not timed_out, round(time.monotonic() - start, 1),
                 "\n".join(lines)[-4000:], timed_out)


def _descendants(pid: int) -> list[int]:
    """Every process below `pid` (from /proc's parent links)."""
    children: dict = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as handle:
                    parent = int(handle.read().rsplit(")", 1)[1].split()[1])
            except (OSError, ValueError, IndexError):
                continue
            children.setdefault(parent, []).append(int(entry))
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def _stop_build(proc: subprocess.Popen) -> str:
    """Kill what the build's current step runs, so podman fails the step and removes its working container
    itself; SIGTERM and then SIGKILL to podman only if it does not exit. Its output."""
    for pid in _descendants(proc.pid):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    try:
        out, _ = proc.communicate(timeout=20)
        return out or ""
    except subprocess.TimeoutExpired:
        pass
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        out, _ = proc.communicate(timeout=20)
    except (subprocess.TimeoutExpired, ProcessLookupError):
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        out, _ = proc.communicate()
    return out or ""


def inspect_image(tag: str) -> dict:
    """The image's config (User, Healthcheck, StopSignal, Env, Labels), size and the commands of its history."""
    done = podman("image", "inspect", tag, "--format", "json", timeout=60)
    if done.returncode != 0:
        return {}
    image = json.loads(done.stdout)[0]
    history = podman("image", "history", "--no-trunc", "--format", "{{.CreatedBy}}", tag, timeout=60)
    config = image.get("Config") or {}
    return {"user": config.get("User", ""), "healthcheck": config.get("Healthcheck") or image.get("Healthcheck"),
            "stop_signal": config.get("StopSignal", ""), "env": config.get("Env") or [],
            "size": int(image.get("Size") or 0), "history": history.stdout.splitlines()}


def run(tag: str, name: str, job: str, registry: Path, env: dict, memory: str = "1500m") -> tuple[bool, str]:
    """Start `tag` detached and hardened; (started, podman's error)."""
    command = ["run", "-d", "--name", name, "--label", f"{LABEL}={job}", "--network", "none", "--read-only",
               "--cap-drop", "ALL", "--security-opt", "no-new-privileges", "--memory", memory, "--pids-limit", "256",
               "-v", f"{registry}:/registry:ro"]
    for key, value in env.items():
        command += ["-e", f"{key}={value}"]
    done = podman(*command, tag, timeout=120)
    return done.returncode == 0, (done.stderr or done.stdout).strip()[-1500:]


def state(name: str) -> dict:
    """Status, exit code, main PID (host view) and when it finished."""
    done = podman("inspect", name, "--format", "json", timeout=60)
    if done.returncode != 0:
        return {"status": "missing"}
    info = json.loads(done.stdout)[0].get("State") or {}
    return {"status": info.get("Status", ""), "exit_code": info.get("ExitCode"), "pid": info.get("Pid") or 0,
            "oom_killed": info.get("OOMKilled", False)}


def uid_of(pid: int) -> int | None:
    """The effective uid of a host process (the container's main process: no user namespace is used)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("Uid:"):
                return int(line.split()[2])
    except (OSError, ValueError, IndexError):
        return None
    return None


def client(name: str, plan: dict, timeout: float) -> dict:
    """Run the trusted client in the container's network namespace; what it saw."""
    pid = state(name).get("pid")
    if not pid:
        return {"ready": False, "startup": "the container is not running", "responses": {}}
    plan = {**plan, "pid": pid}
    try:
        done = subprocess.run(["nsenter", f"--net=/proc/{pid}/ns/net", "--", sys.executable, "-I", str(CLIENT)],
                              input=json.dumps(plan), capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"ready": False, "startup": f"the client got no answer within {timeout:.0f} s", "responses": {}}
    try:
        return json.loads(done.stdout)
    except ValueError:
        return {"ready": False, "startup": f"the client failed: {done.stderr.strip()[-500:]}", "responses": {}}


def healthcheck(name: str) -> tuple[int, str]:
    """`podman healthcheck run` once: (exit status, output); 0 is healthy."""
    done = podman("healthcheck", "run", name, timeout=60)
    return done.returncode, (done.stdout + done.stderr).strip()[-500:]


def logs(name: str, chars: int = 3000) -> str:
    done = podman("logs", name, timeout=60)
    return (done.stdout + done.stderr)[-chars:]


def stop(name: str, grace: int) -> dict:
    """`podman stop -t grace`: how long it took, the exit code, whether it had to be killed."""
    start = time.monotonic()
    podman("stop", "-t", str(grace), name, timeout=grace + 60)
    seconds = round(time.monotonic() - start, 1)
    after = state(name)
    return {"seconds": seconds, "exit_code": after.get("exit_code"), "status": after.get("status"),
            "killed": after.get("exit_code") == 137 or seconds >= grace}


def _layers(tag: str) -> list[str]:
    """The folders of the image's layers, base first (overlay storage), or [] where the driver keeps none."""
    done = podman("image", "inspect", tag, "--format", "json", timeout=60)
    try:
        driver = json.loads(done.stdout)[0].get("GraphDriver") or {}
    except (ValueError, IndexError):
        return []
    data = driver.get("Data") or {}
    lower = [p for p in str(data.get("LowerDir", "")).split(":") if p]
    upper = [str(data["UpperDir"])] if data.get("UpperDir") else []
    return list(reversed(lower)) + upper


def look_inside(tag: str, needles: list[bytes], max_files: int = 100000, max_bytes: int = 2**20) -> dict:
    """What the image's layers hold — every layer, so a file a later `RUN rm` hid still counts, as it still ships:
    `found`, paths of files holding any of `needles` (files over `max_bytes` and links are not read; the walk stops
    after `max_files` files), and `bulk`, bytes of what a service image should not carry (wheel files by folder,
    pip's cache; Debian's ensurepip wheels aside)."""
    roots, mounted = _layers(tag), False
    if not roots:  # not overlay: the merged file system is what can be read
        done = podman("image", "mount", tag, timeout=120)
        if done.returncode != 0:
            raise RuntimeError(f"podman image mount failed: {done.stderr.strip()[-300:]}")
        roots, mounted = [done.stdout.strip()], True
    found, bulk, seen = [], {}, 0
    try:
        for root in roots:
            for folder, dirs, files in os.walk(root):
                dirs[:] = [d for d in dirs if not os.path.islink(os.path.join(folder, d))]
                where = "/" + os.path.relpath(folder, root).lstrip(".")
                for file in files:
                    seen += 1
                    if seen > max_files:
                        return {"found": found, "bulk": bulk}
                    path = os.path.join(folder, file)
                    try:
                        info = os.lstat(path)
                        if stat.S_ISREG(info.st_mode) and ((file.endswith(".whl") and where !=
                                                            "/usr/share/python-wheels") or "/.cache/pip" in where):
                            key = f"{where.rstrip('/')}/*.whl" if file.endswith(".whl") else "pip's cache (~/.cache/pip)"
                            bulk[key] = bulk.get(key, 0) + info.st_size
                        if not stat.S_ISREG(info.st_mode) or info.st_size > max_bytes:
                            continue  # links, devices (/dev/console blocks on open), whiteouts, fifos, big files
                        with open(path, "rb", opener=lambda p, f: os.open(p, f | os.O_NONBLOCK | os.O_NOFOLLOW)) as handle:
                            data = handle.read(max_bytes)
                    except OSError:
                        continue
                    if any(needle in data for needle in needles):
                        shown = "/" + os.path.relpath(path, root)
                        if shown not in found:
                            found.append(shown)
    finally:
        if mounted:
            podman("image", "unmount", tag, timeout=60)
    return {"found": found, "bulk": bulk}


def cleanup(job: str) -> None:
    """Remove every container and image this job created (by label)."""
    _JOBS.discard(job)
    listed = podman("ps", "-a", "-q", "--filter", f"label={LABEL}={job}", timeout=60).stdout.split()
    if listed:
        podman("rm", "-f", "-t", "0", *listed, timeout=120)
    images = _images_of(job)
    if images:
        podman("rmi", "-f", *images, timeout=120)


def _images_of(job: str) -> list[str]:
    """The tags of `job`'s images (localhost/<job>:...)."""
    done = podman("images", "--format", "{{.Repository}}:{{.Tag}}", "--filter", f"reference=localhost/{job}",
                  timeout=60)
    return sorted({line for line in done.stdout.split() if line.startswith(f"localhost/{job}:")})


def leftovers(job: str) -> list[str]:
    """Containers and images of `job` still there (a test's proof that cleanup worked)."""
    containers = podman("ps", "-a", "-q", "--filter", f"label={LABEL}={job}", timeout=60).stdout.split()
    return [f"container {c}" for c in containers] + [f"image {i}" for i in _images_of(job)]


def stop_all() -> int:
    """Stop every build and remove every container and image of the jobs running in this process (Ctrl-C)."""
    jobs = set(_JOBS) | set(_BUILDS)
    for proc in list(_BUILDS.values()):
        _stop_build(proc)
    for job in jobs:
        cleanup(job)
    return len(jobs)


def sweep_stale(max_age: float = STALE_SECONDS, prefix: str = "lab") -> int:
    """Remove containers and images of grading jobs (`prefix`...) older than `max_age`, which a grader killed
    mid-job leaves, and build-cache layers nothing has used for that long. The reference images stay: they are
    the cache a learner following the lesson reuses."""
    now, removed = time.time(), 0
    done = podman("ps", "-a", "--filter", f"label={LABEL}", "--format", "json", timeout=60)
    try:
        items = json.loads(done.stdout or "[]")
    except ValueError:
        items = []
    old = [item.get("Id") for item in items if now - float(item.get("Created") or now) > max_age
           and str((item.get("Labels") or {}).get(LABEL, "")).startswith(prefix) and item.get("Id")]
    if old:
        podman("rm", "-f", "-t", "0", *old, timeout=120)
        removed += len(old)
    done = podman("images", "--format", "json", "--filter", f"reference=localhost/{prefix}*", timeout=60)
    try:
        items = json.loads(done.stdout or "[]")
    except ValueError:
        items = []
    old = [name for item in items if now - float(item.get("Created") or now) > max_age
           for name in item.get("Names") or [] if name.startswith(f"localhost/{prefix}")]
    if old:
        podman("rmi", "-f", *old, timeout=120)
        removed += len(old)
    if max_age > 0:
        podman("image", "prune", "-f", "--filter", f"until={int(max_age)}s", timeout=300)
    return removed
