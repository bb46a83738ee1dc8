"""`make images`: what week 8 builds on, made once per machine — podman's config and storage, the course's base
image (Debian bookworm minbase + its python3, no registry needed) and the service's wheelhouse.

Installs podman, runc and debootstrap with apt where we are root on Debian; elsewhere says what is missing and
exits 0, so the rest of the course still works (week 8's live checks then say "skipped: no container engine").
Everything lands in mlops_kit.containers.images_dir() (~/.cache/mlops-course/images; $MLOPS_IMAGES_DIR).

`--seed-from DIR` copies the base image from another such folder first (the churn canary keeps a folder of its
own, whose wheelhouse follows its venv's newest versions, without a second debootstrap).
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from mlops_kit.containers import BASE_IMAGE, engine_env, images_dir, serve_lock  # noqa: E402

PACKAGES = {"podman": "podman", "runc": "runc", "debootstrap": "debootstrap"}
CONTAINERS_CONF = """# podman for the course: runc (crun fails on cgroup v1 hybrid hosts) and ulimits runc can set
[engine]
runtime = "runc"
[containers]
default_ulimits = ["nofile=20000:20000", "nproc=32768:32768"]
"""
STORAGE_CONF = """[storage]
driver = "overlay"
graphroot = "{root}/storage"
runroot = "{root}/run"
"""
TRIM = ("var/cache/apt", "var/lib/apt/lists", "usr/share/doc", "usr/share/man", "usr/share/info", "usr/share/locale")


def say(text: str) -> None:
    print(f"images: {text}", flush=True)


def install_tools() -> bool:
    """podman, runc and debootstrap on PATH (apt-get installs them where we are root); whether all are there."""
    missing = [pkg for tool, pkg in PACKAGES.items() if not shutil.which(tool)]
    if missing and os.geteuid() == 0 and shutil.which("apt-get"):
        say(f"installing {' '.join(missing)} with apt")
        quiet = {"stdout": subprocess.DEVNULL, "env": {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}}
        if subprocess.run(["apt-get", "install", "-y", "-qq", *missing], **quiet).returncode != 0:
            subprocess.run(["apt-get", "update", "-qq"], **quiet)
            subprocess.run(["apt-get", "install", "-y", "-qq", *missing], **quiet)
        missing = [pkg for tool, pkg in PACKAGES.items() if not shutil.which(tool)]
    if missing:
        say(f"not available: {', '.join(missing)} (sudo apt-get install {' '.join(missing)}); week 8's live "
            "checks will say 'skipped: no container engine'")
    return not missing


def write_config(folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "containers.conf").write_text(CONTAINERS_CONF)
    (folder / "storage.conf").write_text(STORAGE_CONF.format(root=folder))


def podman(*args: str, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(["podman", *args], env=engine_env(), **kwargs)


def debian_mirror() -> str:
    """The Debian mirror this machine's apt uses (debootstrap needs one)."""
    for path in [Path("/etc/apt/sources.list"), *sorted(Path("/etc/apt/sources.list.d").glob("*.sources")),
                 *sorted(Path("/etc/apt/sources.list.d").glob("*.list"))]:
        try:
            lines = path.read_text().splitlines()
        except OSError:
            continue
        for line in lines:  # "deb URL suite ..." or deb822's "URIs: URL"; never a commented-out line
            found = re.match(r"\s*(?:deb\s+(?:\[[^\]]*\]\s+)?|URIs:\s*)(https?://\S+/debian)/?\s", line + " ")
            if found:
                return found.group(1)
    return "http://deb.debian.org/debian"


def base_image(folder: Path) -> None:
    """localhost/mlops-python:3.11 from a debootstrapped bookworm with python3 and venv, caches removed."""
    if podman("image", "exists", BASE_IMAGE).returncode == 0:
        say(f"{BASE_IMAGE} is there")
        return
    say(f"building {BASE_IMAGE} with debootstrap (about a minute)")
    rootfs = Path(tempfile.mkdtemp(prefix="rootfs-", dir=folder))
    try:
        subprocess.run(["debootstrap", "--variant=minbase", "--include=python3,python3-venv", "bookworm", str(rootfs),
                        debian_mirror()], check=True, stdout=subprocess.DEVNULL)
        for relative in TRIM:
            shutil.rmtree(rootfs / relative, ignore_errors=True)
        tar = subprocess.Popen(["tar", "-C", str(rootfs), "-c", "."], stdout=subprocess.PIPE)
        podman("import", "--quiet", "--change", 'CMD ["python3"]', "-", BASE_IMAGE, stdin=tar.stdout, check=True,
               stdout=subprocess.DEVNULL)
        tar.wait()
    finally:
        shutil.rmtree(rootfs, ignore_errors=True)
    say(f"{BASE_IMAGE} built")


def kit_wheel(target: Path) -> None:
    """A wheel of mlops_kit alone (the service imports it), built from this checkout."""
    with tempfile.TemporaryDirectory() as tmp:
        shutil.copytree(REPO / "mlops_kit", Path(tmp) / "mlops_kit", ignore=shutil.ignore_patterns("__pycache__"))
        (Path(tmp) / "pyproject.toml").write_text(
            '[build-system]\nrequires = ["setuptools>=64"]\nbuild-backend = "setuptools.build_meta"\n'
            '[project]\nname = "mlops_kit"\nversion = "0.1.0"\nrequires-python = ">=3.11"\n'
            '[tool.setuptools.packages.find]\ninclude = ["mlops_kit*"]\n')
        subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w",
                        str(target), tmp], check=True, stdout=subprocess.DEVNULL)


def wheelhouse(folder: Path) -> None:
    """wheels/: one wheel per line of the service's lock, from PyPI (or pip's cache), and mlops_kit's own."""
    lock = serve_lock()
    kit = b"".join(p.read_bytes() for p in sorted((REPO / "mlops_kit").glob("*.py")))
    stamp = hashlib.sha256("\n".join(lock).encode() + kit).hexdigest()
    target = folder / "wheels"
    if (target / ".stamp").is_file() and (target / ".stamp").read_text() == stamp:
        say(f"wheelhouse is there ({len(lock)} wheels)")
        return
    say(f"downloading the service's {len(lock)} wheels")
    staging = Path(tempfile.mkdtemp(prefix="wheels-", dir=folder))
    try:
        pinned = [line for line in lock if not line.startswith("mlops-kit==")]
        done = subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--only-binary=:all:",
                               "-d", str(staging), *pinned], capture_output=True, text=True)
        if done.returncode != 0:
            raise SystemExit(f"images: pip download failed: {done.stderr[-3000:]}")
        kit_wheel(staging)
        (staging / ".stamp").write_text(stamp)
        shutil.rmtree(target, ignore_errors=True)
        staging.rename(target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    say(f"wheelhouse ready: {target}")


def seed_base_image(source: Path) -> None:
    """The base image copied from the images folder `source` (podman save | podman load), if it has one."""
    conf, storage = source / "containers.conf", source / "storage.conf"
    if podman("image", "exists", BASE_IMAGE).returncode == 0 or not (conf.is_file() and storage.is_file()):
        return
    theirs = {**os.environ, "CONTAINERS_CONF": str(conf), "CONTAINERS_STORAGE_CONF": str(storage)}
    with tempfile.TemporaryDirectory(prefix="seed-", dir=images_dir()) as tmp:
        archive = str(Path(tmp) / "base.tar")
        if subprocess.run(["podman", "save", "-q", "-o", archive, BASE_IMAGE], env=theirs,
                          capture_output=True).returncode == 0:
            podman("load", "-q", "-i", archive, capture_output=True)
            say(f"{BASE_IMAGE} copied from {source}")


def main(argv: list[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seed-from", type=Path, help="another images folder to copy the base image from")
    args = parser.parse_args(argv)
    folder = images_dir()
    if not install_tools():
        return 0
    write_config(folder)
    if args.seed_from and args.seed_from.resolve() != folder.resolve():
        seed_base_image(args.seed_from)
    base_image(folder)
    wheelhouse(folder)
    return 0


if __name__ == "__main__":
    sys.exit(main())
