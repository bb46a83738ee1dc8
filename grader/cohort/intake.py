"""`mlops-grade collect`: gather one lab's submissions into a cohort folder, `<into>/<learner>/<lab>.ipynb`, and a
manifest (`<into>/cohort.json`) recording each learner's id, submission time, content hash and where it came from.

Sources, told apart by what SOURCE is:
- a folder tree `<learner>/<lab>.ipynb` or `<learner>/<anything>.ipynb` (time: the file's modification time);
- a Canvas submissions zip, `<name>[_LATE]_<userid>_<submissionid>_<file>` (time: the zip entry's time);
- a Moodle submissions zip, `<Full Name>_<participantid>_assignsubmission_file_[/]<file>` (time: the entry's time);
- learners' git repositories: a folder of clones and/or `*.bundle` files (`--git`, or found by their shape); the
  notebook at the last commit before `--deadline` (time: that commit's committer date).
Nothing is extracted blindly: each member is read with a size cap and written under a name the grader chooses.
Bad input (an unreadable member, a learner with no notebook) is reported and the rest goes on.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import re
import subprocess
import tempfile
import zipfile
from dataclasses import asdict, dataclass
from pathlib import Path

from grader.cohort.roster import Roster, safe_id
from grader.notebook import MAX_NOTEBOOK_BYTES

MANIFEST = "cohort.json"
CANVAS = re.compile(r"^(?P<name>[^_/]+?)(?:_LATE)?_(?P<uid>\d+)_(?P<sid>\d+)_(?P<file>[^/]+)$")
MOODLE = re.compile(r"^(?P<name>[^/]+?)_(?P<pid>\d+)_assignsubmission_(?:file|onlinetext)_/?(?P<file>[^/]*)$")


@dataclass
class Collected:
    learner: str
    lab: str
    file: str  # relative to the cohort folder
    original: str  # where it came from
    source: str  # folder | canvas | moodle | git
    submitted_at: str | None  # ISO 8601, UTC
    sha256: str
    name: str = ""
    lms_id: str = ""
    on_roster: bool = True


@dataclass
class Problem:
    where: str
    message: str


@dataclass
class Candidate:
    key: str  # what the source calls the learner
    original: str
    data: bytes
    submitted_at: dt.datetime | None
    source: str
    name: str = ""
    lms_id: str = ""
    order: tuple = ()  # ties between resubmissions: a later order wins


def collect(source: Path, lab_id: str, into: Path, *, roster: Roster | None = None, deadline: dt.datetime | None = None,
            git: bool | None = None) -> tuple[list[Collected], list[Problem]]:
    """Collect `lab_id`'s submissions from `source` into `into`; what was collected, and what could not be."""
    source, into = Path(source), Path(into)
    problems: list[Problem] = []
    if not source.exists():
        raise FileNotFoundError(f"{source} does not exist")
    if source.is_file() and zipfile.is_zipfile(source):
        candidates = _from_zip(source, problems)
    elif source.is_dir() and (git or (git is None and _looks_like_git(source))):
        candidates = _from_git(source, lab_id, deadline, problems)
    elif source.is_dir():
        candidates = _from_tree(source, lab_id, problems)
    else:
        raise ValueError(f"{source} is neither a folder nor a zip file")
    chosen: dict[str, Candidate] = {}
    names: dict[str, tuple[str, str, bool]] = {}
    for cand in candidates:
        member = roster.resolve(cand.lms_id, cand.key, cand.name) if roster else None
        if roster and member is None:
            problems.append(Problem(cand.original, f"{cand.key!r} is not on the roster: collected under that id"))
        try:
            learner = member.id if member else safe_id(cand.key)
        except ValueError as err:
            problems.append(Problem(cand.original, str(err)))
            continue
        previous = chosen.get(learner)
        if previous is None or _later(cand, previous):
            chosen[learner] = cand
            names[learner] = (cand.name or (member.name if member else ""), cand.lms_id, member is not None or not roster)
    manifest = read_manifest(into)
    entries = manifest.setdefault(lab_id, {})
    collected = []
    for learner, cand in sorted(chosen.items()):
        target = into / learner / f"{lab_id}.ipynb"
        target.parent.mkdir(parents=True, exist_ok=True)
        _write_atomic(target, cand.data)
        when = cand.submitted_at.astimezone(dt.timezone.utc).isoformat() if cand.submitted_at else None
        name, lms_id, on_roster = names[learner]
        item = Collected(learner=learner, lab=lab_id, file=str(target.relative_to(into)), original=cand.original,
                         source=cand.source, submitted_at=when, sha256=hashlib.sha256(cand.data).hexdigest(), name=name,
                         lms_id=lms_id, on_roster=on_roster)
        entries[learner] = asdict(item)
        collected.append(item)
    write_manifest(into, manifest)
    return collected, problems


def _later(a: Candidate, b: Candidate) -> bool:
    """Whether `a` is a later submission than `b` (a resubmission replaces the earlier one)."""
    ta = a.submitted_at.timestamp() if a.submitted_at else 0
    tb = b.submitted_at.timestamp() if b.submitted_at else 0
    return (ta, a.order) > (tb, b.order)


def read_manifest(into: Path) -> dict:
    path = Path(into) / MANIFEST
    if not path.exists():
        return {}
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise ValueError(f"{path} is not a readable cohort manifest: {err}") from None


def write_manifest(into: Path, manifest: dict) -> None:
    Path(into).mkdir(parents=True, exist_ok=True)
    _write_atomic(Path(into) / MANIFEST, (json.dumps(manifest, indent=2, sort_keys=True) + "\n").encode())


def _write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def _pick(names: list[str], lab_id: str) -> str | None:
    """Which of a learner's notebooks is the lab's: the one named like the lab, else the only one."""
    notebooks = [n for n in names if n.lower().endswith(".ipynb") and ".ipynb_checkpoints" not in n]
    if not notebooks:
        return None
    number = lab_id.split("_", 1)[0]
    for test in (lambda n: Path(n).stem == lab_id, lambda n: lab_id in Path(n).name,
                 lambda n: re.search(rf"(?<!\d){number}(?!\d)", Path(n).name)):
        named = [n for n in notebooks if test(n)]
        if len(named) == 1:
            return named[0]
    return notebooks[0] if len(notebooks) == 1 else None


# --- folder tree ---------------------------------------------------------------------------------


def _from_tree(root: Path, lab_id: str, problems: list[Problem]) -> list[Candidate]:
    found = []
    for folder in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        files = [str(p.relative_to(folder)) for p in folder.rglob("*.ipynb") if p.is_file() and not p.is_symlink()]
        chosen = _pick(files, lab_id)
        if chosen is None:
            problems.append(Problem(str(folder), "no notebook for this lab" if not files else
                                    f"several notebooks and none named for lab {lab_id}: {', '.join(sorted(files))}"))
            continue
        path = folder / chosen
        size = path.stat().st_size
        if size > MAX_NOTEBOOK_BYTES:
            problems.append(Problem(str(path), f"{size} bytes: larger than the {MAX_NOTEBOOK_BYTES}-byte limit"))
            continue
        when = dt.datetime.fromtimestamp(path.stat().st_mtime, dt.timezone.utc)
        found.append(Candidate(key=folder.name, original=str(path), data=path.read_bytes(), submitted_at=when,
                               source="folder"))
    return found


# --- LMS zips --------------------------------------------------------------------------------------


def _from_zip(path: Path, problems: list[Problem]) -> list[Candidate]:
    found = []
    try:
        archive = zipfile.ZipFile(path)
    except zipfile.BadZipFile as err:
        raise ValueError(f"{path} is not a readable zip: {err}") from None
    with archive:
        for info in archive.infolist():
            name = info.filename
            if info.is_dir() or not name.lower().endswith(".ipynb") or "__MACOSX" in name:
                continue
            if info.file_size > MAX_NOTEBOOK_BYTES:
                problems.append(Problem(name, f"{info.file_size} bytes: larger than the {MAX_NOTEBOOK_BYTES}-byte limit"))
                continue
            when = _zip_time(info)
            moodle, canvas = MOODLE.match(name), CANVAS.match(Path(name).name)
            try:
                data = archive.read(info)
            except Exception as err:  # noqa: BLE001 — a damaged member: report it, keep the rest
                problems.append(Problem(name, f"could not be read from the zip: {err}"))
                continue
            if moodle:
                found.append(Candidate(key=moodle["name"], original=name, data=data, submitted_at=when, source="moodle",
                                       name=moodle["name"], lms_id=moodle["pid"], order=(info.date_time,)))
            elif canvas and "/" not in name:
                found.append(Candidate(key=canvas["uid"], original=name, data=data, submitted_at=when, source="canvas",
                                       name=canvas["name"], lms_id=canvas["uid"], order=(int(canvas["sid"]),)))
            else:
                problems.append(Problem(name, "named neither as Canvas (<name>_<userid>_<submissionid>_<file>) nor as "
                                        "Moodle (<Full Name>_<id>_assignsubmission_file_/<file>) names submissions"))
    return found


def _zip_time(info: zipfile.ZipInfo) -> dt.datetime | None:
    try:
        return dt.datetime(*info.date_time, tzinfo=dt.timezone.utc)
    except ValueError:
        return None


# --- git repositories ---------------------------------------------------------------------------


def _looks_like_git(root: Path) -> bool:
    return any(p.suffix == ".bundle" or (p / ".git").exists() or (p / "HEAD").is_file() for p in root.iterdir())


def _git(*args: str, cwd: Path | None = None, timeout: int = 60) -> str:
    """git with no user or system config, no hooks, no pager, no prompt: learners' repositories are data."""
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": "/nonexistent", "GIT_CONFIG_NOSYSTEM": "1",
           "GIT_CONFIG_GLOBAL": "/dev/null", "GIT_TERMINAL_PROMPT": "0", "LC_ALL": "C"}
    out = subprocess.run(["git", "-c", "core.hooksPath=/dev/null", "-c", "protocol.file.allow=always", *args], cwd=cwd,
                         env=env, capture_output=True, timeout=timeout)
    if out.returncode != 0:
        raise RuntimeError(out.stderr.decode(errors="replace").strip().splitlines()[-1] if out.stderr else "git failed")
    return out.stdout.decode(errors="replace")


def _from_git(root: Path, lab_id: str, deadline: dt.datetime | None, problems: list[Problem]) -> list[Candidate]:
    found = []
    sources = sorted(p for p in root.iterdir() if p.suffix == ".bundle" or (p / ".git").exists() or (p / "HEAD").is_file())
    for src in sources:
        key = src.stem if src.suffix == ".bundle" else src.name
        try:
            with tempfile.TemporaryDirectory(prefix="mlops-collect-") as tmp:
                clone = Path(tmp) / "repo.git"
                # a bare copy of our own: the learner's config, hooks and attributes are never consulted
                _git("clone", "--quiet", "--bare", "--no-local", str(src.resolve()), str(clone))
                log = ["log", "-1", "--format=%H%x00%cI", "HEAD"]
                if deadline:
                    log.insert(2, f"--before={int(deadline.timestamp())}")
                line = _git(*log, cwd=clone).strip()
                if not line:
                    problems.append(Problem(str(src), "no commit before the deadline" if deadline else "no commit"))
                    continue
                commit, when = line.split("\0")
                files = _git("ls-tree", "-r", "--name-only", "-z", commit, cwd=clone).split("\0")
                chosen = _pick([f for f in files if f], lab_id)
                if chosen is None:
                    problems.append(Problem(f"{src}@{commit[:10]}", "no notebook for this lab at that commit"))
                    continue
                size = int(_git("cat-file", "-s", f"{commit}:{chosen}", cwd=clone).strip())
                if size > MAX_NOTEBOOK_BYTES:
                    problems.append(Problem(f"{src}:{chosen}", f"{size} bytes: larger than the limit"))
                    continue
                data = subprocess.run(["git", "cat-file", "blob", f"{commit}:{chosen}"], cwd=clone, capture_output=True,
                                      timeout=60, env={"PATH": os.environ.get("PATH", ""), "HOME": "/nonexistent",
                                                       "GIT_CONFIG_NOSYSTEM": "1"}).stdout
                found.append(Candidate(key=key, original=f"{src.name}@{commit[:12]}:{chosen}", data=data,
                                       submitted_at=dt.datetime.fromisoformat(when), source="git"))
        except (RuntimeError, subprocess.TimeoutExpired, ValueError) as err:
            problems.append(Problem(str(src), f"not a readable git repository or bundle: {err}"))
    return found
