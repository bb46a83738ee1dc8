"""Probe a learner's DVC project in a fresh sandbox: pull and reproduce it in a clean copy, or feed it a broken CSV.

Runs inside the sandbox: it must not import the grader. The learner's project is read-only under --work;
everything happens in a copy under --out, without the learner's cache, run-cache, local config or outputs,
as a colleague who clones the project would start. Two modes, two separate probe runs:
- `visible`: `dvc pull` from the learner's remote, `dvc repro` from scratch, `dvc repro` again (nothing
  changed), then one parameter changed and `dvc repro` once more;
- `corrupted` (hidden): the grader's broken CSV (input `corrupted.npy`, a 0-d string array) in place of the
  raw data, then `dvc repro --force --single-item STAGE`.

`dvc repro` runs the learner's stage commands, so every DVC step runs in ONE inner process
(`harness.run_learner`: nested sandbox, another uid, the inputs hidden) that imports DVC once: this very
script with `--inner SPEC`. It reports one JSON line per step on a descriptor its children do not inherit;
what the stages print goes to a log file per step. Which stages ran comes from DVC's own log records, not
from what the stages print. A watchdog stops the inner process at its deadline and reports the CPU it got
and the machine's load, so the grader can tell a stage that never ends from a machine too busy to run it.
"""

import hashlib
import json
import os
import re
import shutil
import sys
import time
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # the harness, beside this file (-I drops it)
from harness import make_undumpable, probe_main, run_learner  # noqa: E402

MAX_PROJECT_BYTES = 100 * 2**20
LOG_CHARS = 20_000  # of each step's output kept (its tail)
REMOTE_SECTION = re.compile(r"""^\s*\[\s*'?remote\s+"([^"]+)"'?\s*\]\s*$""")
RAN = ("Running stage '%s':", "Stage '%s' is cached - skipping run, checking out outputs")
SKIPPED = {"cache", "tmp", "config.local"}  # of the learner's .dvc/: a clone has none of them


def add_arguments(parser) -> None:
    parser.add_argument("--project", required=True, help="the project directory, relative to the work dir")
    parser.add_argument("--mode", choices=("visible", "corrupted"), default="visible")
    parser.add_argument("--output-dir", default="", help="the notebook's output_dir (to map absolute remote URLs)")
    parser.add_argument("--param", default="featurize.test_size", help="the parameter to change (visible)")
    parser.add_argument("--value", default="0.3", help="its new value, as YAML (visible)")
    parser.add_argument("--raw", default="data/raw.csv", help="where the broken CSV goes (corrupted)")
    parser.add_argument("--stage", default="validate", help="the stage that must refuse it (corrupted)")
    parser.add_argument("--seconds", type=float, default=200, help="the inner process's deadline")


def md5(path: Path) -> str:
    digest = hashlib.md5()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def inside(root: Path, relative: str) -> Path | None:
    """`root/relative` when that stays inside `root`, else None."""
    if not isinstance(relative, str) or not relative or os.path.isabs(relative):
        return None
    path = Path(os.path.normpath(root / relative))
    return path if path == root or root in path.parents else None


def declared_outputs(stages: dict) -> list[str]:
    paths = []
    for stage in stages.values():
        if not isinstance(stage, dict):
            continue
        for kind in ("outs", "metrics", "plots"):
            for entry in stage.get(kind) or []:
                if isinstance(entry, str):
                    paths.append(entry)
                elif isinstance(entry, dict):
                    paths.extend(k for k in entry if isinstance(k, str))
    return paths


def tracked_data(project: Path) -> dict:
    """{data path relative to the project: md5} for every `.dvc` file (outside .dvc/ and .git/)."""
    import yaml

    found = {}
    for file in sorted(project.rglob("*.dvc")):
        rel = file.relative_to(project)
        if rel.parts[0] in (".dvc", ".git") or not file.is_file() or file.is_symlink():
            continue
        try:
            spec = yaml.safe_load(file.read_text(encoding="utf-8"))
        except (yaml.YAMLError, UnicodeDecodeError):
            continue
        outs = spec.get("outs") if isinstance(spec, dict) else None
        for out in outs if isinstance(outs, list) else []:
            if isinstance(out, dict) and isinstance(out.get("path"), str):
                found[os.path.normpath(str(rel.parent / out["path"]))] = out.get("md5")
    return found


def remote_url(project: Path) -> tuple[str | None, str | None]:
    """(name, url) of the default remote in .dvc/config (the first remote when none is the default)."""
    config = project / ".dvc" / "config"
    if not config.is_file():
        return None, None
    remotes, default, section = {}, None, None
    for line in config.read_text(encoding="utf-8", errors="replace").splitlines():
        if line.strip().startswith("["):
            match = REMOTE_SECTION.match(line)
            section = match.group(1) if match else line.strip()
            continue
        key, _, value = line.partition("=")
        key, value = key.strip(), value.strip()
        if section == "[core]" and key == "remote":
            default = value
        elif section and not section.startswith("[") and key == "url":
            remotes[section] = value
    name = default if default in remotes else next(iter(remotes), None)
    return name, remotes.get(name) if name else None


def resolve_remote(url: str, source: Path, work: Path, output_dir: str) -> Path | None:
    """Where the learner's remote is in this sandbox: a directory inside the work dir, or None."""
    if "://" in url:
        return None
    if os.path.isabs(url):
        path = Path(os.path.normpath(url))
        if not path.exists() and output_dir:
            marker = f"/{output_dir.strip('/')}/"
            at = url.find(marker)
            if at >= 0:
                path = Path(os.path.normpath(work / output_dir.strip("/") / url[at + len(marker):]))
    else:
        path = Path(os.path.normpath(source / ".dvc" / url))
    real = Path(os.path.realpath(path))
    work = Path(os.path.realpath(work))
    return real if real.is_dir() and (real == work or work in real.parents) else None


def tail(path: Path) -> str:
    """The last LOG_CHARS characters of a log the stages wrote (never following a link they left there)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    except OSError:
        return ""
    with os.fdopen(fd, "rb") as handle:
        handle.seek(max(0, os.fstat(fd).st_size - 4 * LOG_CHARS))
        return handle.read().decode("utf-8", "replace")[-LOG_CHARS:]


def copy_project(source: Path, project: Path) -> dict:
    """Copy the learner's project (no cache, tmp or local config); {} or {"error": why}."""
    size = sum(f.stat().st_size for f in source.rglob("*") if f.is_file() and not f.is_symlink()
               and ".dvc/cache" not in f.as_posix())
    if size > MAX_PROJECT_BYTES:
        return {"error": f"the project holds {size / 2**20:.0f} MiB outside the cache; the limit is "
                         f"{MAX_PROJECT_BYTES // 2**20} MiB"}
    shutil.copytree(source, project, symlinks=True,
                    ignore=lambda d, names: [n for n in names if Path(d) == source / ".dvc" and n in SKIPPED])
    return {}


def run(args, inputs) -> dict:
    import yaml

    work = Path(os.path.realpath(args.work))
    source = inside(work, args.project)
    if source is None or not (source / "dvc.yaml").is_file() or (source / "dvc.yaml").is_symlink():
        return {"error": f"{args.project}/dvc.yaml was not found"}
    job = Path(args.out) / "job"  # all the inner process may write: the copy, its logs, a HOME
    project = job / "project"
    (job / "logs").mkdir(parents=True)
    (job / "home").mkdir()
    problem = copy_project(source, project)
    if problem:
        return problem
    try:
        stages = (yaml.safe_load((project / "dvc.yaml").read_text(encoding="utf-8")) or {}).get("stages") or {}
    except (yaml.YAMLError, UnicodeDecodeError, AttributeError):
        stages = {}  # DVC itself will say what is wrong with it
    stages = stages if isinstance(stages, dict) else {}
    spec: dict = {"mode": args.mode, "project": str(project), "logs": str(job / "logs"), "seconds": args.seconds}
    result: dict = {"stages": list(stages)}

    if args.mode == "corrupted":
        target = inside(project, args.raw)
        if "corrupted" not in inputs or target is None:
            return {"error": "the probe was given no corrupted CSV"}
        target.parent.mkdir(parents=True, exist_ok=True)
        target.unlink(missing_ok=True)
        target.write_text(str(inputs["corrupted"][()]), encoding="utf-8")
        spec["stage"] = args.stage
    else:
        # A clean copy: no outputs, no data in the workspace, no cache.
        for rel in declared_outputs(stages):
            path = inside(project, rel)
            if path is not None and path != project:
                shutil.rmtree(path, ignore_errors=True) if path.is_dir() and not path.is_symlink() else \
                    path.unlink(missing_ok=True)
        data = tracked_data(project)
        for rel in data:
            path = inside(project, rel)
            if path is not None and path != project and path.is_file():
                path.unlink()
        name, url = remote_url(project)
        pull: dict = {"remote": url, "tracked": sorted(data)}
        where = resolve_remote(url, source, work, args.output_dir) if url else None
        if not data:
            pull["problem"] = "no data file is versioned with `dvc add` (no .dvc file in the project)"
        elif url is None:
            pull["problem"] = "the project has no DVC remote (`dvc remote add -d NAME PATH`)"
        elif where is None:
            pull["problem"] = f"the remote {url!r} is not a directory inside your work directory (use ../remote)"
        elif not re.fullmatch(r"[\w.-]+", name):
            pull["problem"] = f"the remote's name {name!r} is not a plain name (letters, digits, _ . -)"
        else:  # where the remote is in this sandbox, as a colleague's local config would say
            (project / ".dvc" / "config.local").write_text(f"['remote \"{name}\"']\n    url = {where}\n",
                                                           encoding="utf-8")
            spec["pull"] = {"remote": name, "targets": [f"{rel}.dvc" for rel in data]}
        result["pull"] = pull
        spec["data"] = {rel: digest for rel, digest in data.items()}
        spec["source"] = str(source)
        spec["param"], spec["value"] = args.param, yaml.safe_load(args.value)
    (job / "spec.json").write_text(json.dumps(spec), encoding="utf-8")

    env = {**os.environ, "HOME": str(job / "home"), "XDG_CACHE_HOME": str(job / "home" / ".cache"),
           "XDG_CONFIG_HOME": str(job / "home" / ".config"), "DVC_NO_ANALYTICS": "1", "GIT_TERMINAL_PROMPT": "0",
           "DVC_SITE_CACHE_DIR": str(job / "dvc-site-cache"),  # its default, /var/tmp/dvc, is read-only
           "PATH": os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "/usr/bin:/bin")])}
    started = time.monotonic()
    done = run_learner([sys.executable, "-I", os.path.abspath(__file__), "--inner", str(job / "spec.json")],
                       cwd=str(project), env=env, timeout=args.seconds + 30, writable=[str(job)],
                       hidden=[args.input])
    steps, stopped = {}, None
    for line in done["stdout"].splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if isinstance(record, dict) and "timed_out" in record:
            stopped = record
        elif isinstance(record, dict) and isinstance(record.get("step"), str):
            steps[record["step"]] = record
    for step in steps.values():
        step["output"] = tail(job / "logs" / f"{step['step']}.log")
    if stopped is None and done["timed_out"]:  # even the watchdog could not report: a starved machine
        stopped = {"timed_out": "unknown", "cpu": None, "load": os.getloadavg()[0],
                   "seconds": time.monotonic() - started}
    result["inner"] = {"nested": done["nested"], "exit": done["exit"], "stopped": stopped,
                       "error": (steps.get("driver") or {}).get("error"), "stderr": done["stderr"][-1000:]}
    if args.mode == "corrupted":
        result["corrupted"] = steps.get("corrupted") or {}
        return result
    result["pull"].update(steps.get("pull") or {})
    result["repro"] = steps.get("repro") or {}
    lock_file = job / "logs" / "repro.lock"
    if result["repro"].get("rc") is not None and lock_file.is_file() and not lock_file.is_symlink():
        try:
            lock = yaml.safe_load(lock_file.read_text(encoding="utf-8")) or {}
            result["repro"]["outs"] = {
                stage: {os.path.normpath(str(o.get("path"))): o.get("md5") for o in entry.get("outs") or []
                        if isinstance(o, dict)}
                for stage, entry in (lock.get("stages") or {}).items() if isinstance(entry, dict)}
        except (yaml.YAMLError, UnicodeDecodeError, AttributeError):
            pass
    for name in ("unchanged", "param_change"):
        if name in steps:
            result[name] = steps[name]
    return result


# --- the inner process: DVC imported once, every step in it ----------------------------------------------


def _cpu_now(start: float) -> float:
    """CPU seconds this process and all its descendants used so far (finished or alive)."""
    import resource

    own, reaped = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    total = own.ru_utime + own.ru_stime + reaped.ru_utime + reaped.ru_stime
    tick = os.sysconf("SC_CLK_TCK")
    todo, seen = ["self"], set()
    while todo:
        pid = todo.pop()
        try:
            for task in os.listdir(f"/proc/{pid}/task"):
                with open(f"/proc/{pid}/task/{task}/children") as handle:
                    todo += [c for c in handle.read().split() if c not in seen]
        except OSError:
            continue
        if pid != "self":
            seen.add(pid)
            try:
                with open(f"/proc/{pid}/stat") as handle:
                    fields = handle.read().rsplit(")", 1)[1].split()
                total += sum(int(v) for v in fields[11:15]) / tick
            except (OSError, ValueError, IndexError):
                pass
    return total - start


def inner_main(spec_path: str) -> None:
    import logging
    import threading

    make_undumpable()  # the stages run as this uid: keep them out of this process's memory and descriptors
    spec = json.loads(Path(spec_path).read_text(encoding="utf-8"))
    report = os.dup(1)  # the probe reads this; children get a log file as their stdout instead
    logs, project = Path(spec["logs"]), Path(spec["project"])
    started, cpu0 = time.monotonic(), _cpu_now(0.0)
    state = {"step": "start", "load": os.getloadavg()[0]}
    lock = threading.Lock()

    def say(record: dict) -> None:
        with lock:
            os.write(report, (json.dumps(record, default=str) + "\n").encode())

    def watchdog() -> None:
        while True:
            time.sleep(1)
            state["load"] = max(state["load"], os.getloadavg()[0])
            if time.monotonic() - started > spec["seconds"]:
                say({"timed_out": state["step"], "cpu": round(_cpu_now(cpu0), 2), "load": state["load"],
                     "seconds": round(time.monotonic() - started, 1), "limit": spec["seconds"]})
                os._exit(3)  # the inner sandbox's PID namespace, and every stage in it, ends with us

    threading.Thread(target=watchdog, daemon=True).start()
    ran: list = []

    class Stages(logging.Handler):
        def emit(self, record):
            if record.msg in RAN and record.args:
                ran.append(str(record.args[0]))

    logging.getLogger("dvc").addHandler(Stages(logging.INFO))
    from dvc.cli import main as dvc_main

    def dvc(name: str, argv: list) -> dict:
        state["step"] = name
        ran.clear()
        tick = time.monotonic()
        sys.stdout.flush()
        sys.stderr.flush()
        saved = os.dup(1), os.dup(2)
        log = os.open(logs / f"{name}.log", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        os.dup2(log, 1)
        os.dup2(log, 2)
        os.close(log)
        try:
            os.chdir(project)
            rc = dvc_main(argv)
        except BaseException as err:  # noqa: BLE001 — a step's failure is a result
            print(f"[probe: dvc {' '.join(argv)} raised {type(err).__name__}: {err}]")
            rc = -2
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            os.close(saved[0])
            os.close(saved[1])
        record = {"step": name, "rc": rc, "ran": list(ran), "seconds": round(time.monotonic() - tick, 2)}
        say(record)
        return record

    try:
        if spec["mode"] == "corrupted":
            dvc("corrupted", ["repro", "--force", "--single-item", spec["stage"]])
            return
        data = spec["data"]
        if spec.get("pull"):
            pulled = dvc("pull", ["pull", "-r", spec["pull"]["remote"], *spec["pull"]["targets"]])
            restored = {rel: (project / rel).is_file() and md5(project / rel) == digest for rel, digest in data.items()}
            say({**pulled, "restored": restored})
        source = Path(spec["source"])
        for rel in data:  # whatever the pull did, the later steps need the data: take the learner's copy
            here, there = project / rel, source / rel
            if not here.is_file() and there.is_file() and not there.is_symlink():
                here.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy(there, here)
        repro = dvc("repro", ["repro", "--no-run-cache"])  # run every stage, even one whose outputs the pull cached
        if (project / "dvc.lock").is_file():  # the hashes of the clean run, before the parameter changes
            shutil.copy(project / "dvc.lock", logs / "repro.lock")
        if repro["rc"] != 0:
            return
        dvc("unchanged", ["repro"])
        import yaml

        params_file = project / "params.yaml"
        try:
            params = yaml.safe_load(params_file.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, yaml.YAMLError):
            params = None
        node, keys = params, spec["param"].split(".")
        for key in keys[:-1]:
            node = node.get(key) if isinstance(node, dict) else None
        if not isinstance(node, dict) or keys[-1] not in node:
            say({"step": "param_change", "rc": None, "ran": [], "problem": f"params.yaml has no {spec['param']}"})
            return
        node[keys[-1]] = spec["value"]
        params_file.write_text(yaml.safe_dump(params, sort_keys=False), encoding="utf-8")
        dvc("param_change", ["repro", "--no-run-cache"])
    except BaseException as err:  # noqa: BLE001
        say({"step": "driver", "error": f"{type(err).__name__}: {err}"[:500]})
    finally:
        sys.stdout.flush()
        os._exit(0)  # no interpreter teardown: DVC's threads and atexit hooks cost time and say nothing


if __name__ == "__main__":
    if sys.argv[1:2] == ["--inner"]:
        inner_main(sys.argv[2])
    else:
        probe_main(run, add_arguments)
