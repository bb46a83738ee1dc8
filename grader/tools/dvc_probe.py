"""Probe a learner's DVC project in a fresh sandboxed process: pull, reproduce, change a parameter, break the data.

Runs inside the sandbox (`python -I dvc_probe.py ...`): it must not import the grader. The learner's project
is read-only under --work; everything happens in a copy under --out, without the learner's cache, run-cache or
outputs, as a colleague who clones the project would start. Writes result.json with what each step did;
the grader judges it. Inputs: optional `corrupted.npy` (a 0-d string array: a broken CSV to swap in).
"""

import argparse
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

MAX_PROJECT_BYTES = 100 * 2**20
STEP_SECONDS = 60
STAGE_LINE = re.compile(r"(?:Running stage|Stage) '([^']+)'(?::| is cached)")
REMOTE_SECTION = re.compile(r"""^\s*\[\s*'?remote\s+"([^"]+)"'?\s*\]\s*$""")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--work", required=True)
    parser.add_argument("--input", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--project", required=True, help="the project directory, relative to the work dir")
    parser.add_argument("--output-dir", default="", help="the notebook's output_dir (to map absolute remote URLs)")
    parser.add_argument("--param", default="featurize.test_size", help="the parameter to change")
    parser.add_argument("--value", default="0.3", help="its new value (YAML)")
    args = parser.parse_args()
    try:
        result = run(args)
    except Exception as err:  # noqa: BLE001 - report any failure, never end without a result
        result = {"error": f"the probe could not examine your project: {type(err).__name__}: {err}"[:500]}
    Path(args.out, "result.json").write_text(json.dumps(result))


def md5(path: Path) -> str:
    digest = hashlib.md5()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def dvc(args: list, cwd: Path) -> dict:
    """Run `dvc ARGS` in `cwd`: its exit status, the stages it ran and the tail of what it printed."""
    env = {**os.environ, "DVC_NO_ANALYTICS": "1", "GIT_TERMINAL_PROMPT": "0",
           "DVC_SITE_CACHE_DIR": str(cwd.parent / ".dvc-site-cache")}  # its default, /var/tmp/dvc, is read-only
    try:
        done = subprocess.run([sys.executable, "-m", "dvc", *map(str, args)], cwd=cwd, env=env, text=True, check=False,
                              stdin=subprocess.DEVNULL, capture_output=True, timeout=STEP_SECONDS)
        output, rc = done.stdout + done.stderr, done.returncode
    except subprocess.TimeoutExpired as err:
        output = "".join(p.decode(errors="replace") if isinstance(p, bytes) else (p or "") for p in (err.stdout, err.stderr))
        output, rc = output + f"\n[probe: `dvc {' '.join(map(str, args))}` took over {STEP_SECONDS} s]", -1
    return {"rc": rc, "ran": STAGE_LINE.findall(output), "output": output[-4000:]}


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
    found = {}
    for file in sorted(project.rglob("*.dvc")):
        rel = file.relative_to(project)
        if rel.parts[0] in (".dvc", ".git") or not file.is_file() or file.is_symlink():
            continue
        import yaml

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


def run(args) -> dict:
    import yaml

    work = Path(os.path.realpath(args.work))
    source = inside(work, args.project)
    if source is None or not (source / "dvc.yaml").is_file() or (source / "dvc.yaml").is_symlink():
        return {"error": f"{args.project}/dvc.yaml was not found"}
    size = sum(f.stat().st_size for f in source.rglob("*") if f.is_file() and not f.is_symlink()
               and ".dvc/cache" not in f.as_posix())
    if size > MAX_PROJECT_BYTES:
        return {"error": f"{args.project} holds {size / 2**20:.0f} MiB outside the cache; the limit is "
                         f"{MAX_PROJECT_BYTES // 2**20} MiB"}
    project = Path(args.out) / "project"
    shutil.copytree(source, project, symlinks=True,
                    ignore=lambda d, names: [n for n in names if Path(d) == source / ".dvc" and n in ("cache", "tmp")])
    stages = (yaml.safe_load((project / "dvc.yaml").read_text(encoding="utf-8")) or {}).get("stages") or {}
    if not isinstance(stages, dict) or not stages:
        return {"error": "dvc.yaml declares no stages"}
    result: dict = {"stages": list(stages)}

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

    # 1. dvc pull restores the versioned data from the remote.
    name, url = remote_url(project)
    pull: dict = {"remote": url, "tracked": sorted(data)}
    where = resolve_remote(url, source, work, args.output_dir) if url else None
    if not data:
        pull["problem"] = "no data file is versioned with `dvc add` (no .dvc file in the project)"
    elif url is None:
        pull["problem"] = "the project has no DVC remote (`dvc remote add -d NAME PATH`)"
    elif where is None:
        pull["problem"] = f"the remote {url!r} is not a directory inside your work directory (use ../remote)"
    else:
        dvc(["remote", "modify", "--local", name, "url", str(where)], project)
        pull.update(dvc(["pull", *[f"{rel}.dvc" for rel in data]], project))
        restored = {rel: (project / rel).is_file() and md5(project / rel) == digest for rel, digest in data.items()}
        pull["restored"] = restored
    result["pull"] = pull
    for rel in data:  # whatever the pull did, the later steps need the data: take the learner's copy
        if not (project / rel).is_file() and (source / rel).is_file() and not (source / rel).is_symlink():
            (project / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(source / rel, project / rel)

    # 2. dvc repro from scratch writes a new dvc.lock: the hashes of every output.
    repro = dvc(["repro"], project)
    lock_file = project / "dvc.lock"
    if lock_file.is_file():
        lock = yaml.safe_load(lock_file.read_text(encoding="utf-8")) or {}
        repro["outs"] = {stage: {o.get("path"): o.get("md5") for o in (spec or {}).get("outs") or []}
                         for stage, spec in (lock.get("stages") or {}).items()}
    result["repro"] = repro

    # 3. one parameter changed: which stages rerun?
    params_file = project / "params.yaml"
    if repro["rc"] == 0 and params_file.is_file():
        params = yaml.safe_load(params_file.read_text(encoding="utf-8")) or {}
        node, keys = params, args.param.split(".")
        for key in keys[:-1]:
            node = node.setdefault(key, {}) if isinstance(node, dict) else {}
        if isinstance(node, dict):
            node[keys[-1]] = yaml.safe_load(args.value)
            params_file.write_text(yaml.safe_dump(params, sort_keys=False), encoding="utf-8")
            result["param_change"] = {"param": args.param, "value": args.value, **dvc(["repro"], project)}

    # 4. a broken CSV in place of the raw data: the first stage must refuse it.
    corrupted = Path(args.input) / "corrupted.npy"
    if corrupted.is_file():
        import numpy as np

        first = next(iter(stages))
        deps = [d for d in (stages[first] or {}).get("deps") or [] if isinstance(d, str)]
        raw = next((d for d in deps if os.path.normpath(d) in data), deps[0] if deps else None)
        target = inside(project, raw) if raw else None
        if target is None:
            result["corrupted"] = {"problem": f"the first stage, {first!r}, reads no data file"}
        else:
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(str(np.load(corrupted, allow_pickle=False)[()]), encoding="utf-8")
            result["corrupted"] = {"stage": first, "raw": raw, **dvc(["repro", first], project)}
    return result


if __name__ == "__main__":
    main()
