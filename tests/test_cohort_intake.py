"""`mlops-grade collect`: folder trees, Canvas and Moodle submission zips and git repositories become one cohort
folder with a manifest (learner id, submission time, content hash); bad input is reported and the rest goes on."""

import datetime as dt
import hashlib
import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from grader.cohort.intake import collect, read_manifest
from grader.cohort.roster import Roster
from grader.labs import REPO

LAB = "10_kubernetes"
CLI = [str(Path(sys.executable).parent / "mlops-grade")]
UTC = dt.timezone.utc


def notebook(tag: str) -> bytes:
    return json.dumps({"cells": [], "metadata": {"tag": tag}, "nbformat": 4, "nbformat_minor": 5}).encode()


def roster(tmp_path) -> Roster:
    path = tmp_path / "roster.csv"
    path.write_text("id,name,email,lms_id,git,extension_hours\n"
                    "ada,Ada Lovelace,ada@uni.edu,1001,ada-lab,\n"
                    "alan,Alan Turing,alan@uni.edu,1002,alan-lab,24\n"
                    "grace,Grace Hopper,grace@uni.edu,1003,,\n")
    return Roster.read(path)


def test_a_folder_tree_names_the_notebook_by_lab_or_takes_the_only_one(tmp_path):
    src = tmp_path / "src"
    for learner, name in (("ada", f"{LAB}.ipynb"), ("alan", "my work.ipynb"), ("grace", "notes.txt")):
        (src / learner).mkdir(parents=True)
        (src / learner / name).write_bytes(notebook(learner))
    (src / "alan" / "lab10_final.ipynb").write_bytes(notebook("alan-final"))  # two: the one named for lab 10 wins
    os.utime(src / "ada" / f"{LAB}.ipynb", (1_700_000_000, 1_700_000_000))
    found, problems = collect(src, LAB, tmp_path / "cohort")
    by = {f.learner: f for f in found}
    assert set(by) == {"ada", "alan"}
    assert (tmp_path / "cohort/alan" / f"{LAB}.ipynb").read_bytes() == notebook("alan-final")
    assert by["ada"].submitted_at == "2023-11-14T22:13:20+00:00"
    assert by["ada"].sha256 == hashlib.sha256(notebook("ada")).hexdigest()
    assert [p.where.endswith("grace") and "no notebook" in p.message for p in problems] == [True]
    assert read_manifest(tmp_path / "cohort")[LAB]["ada"]["file"] == f"ada/{LAB}.ipynb"


def _zip(path: Path, members: list[tuple[str, bytes, tuple]]) -> Path:
    with zipfile.ZipFile(path, "w") as archive:
        for name, data, when in members:
            archive.writestr(zipfile.ZipInfo(name, date_time=when), data)
    return path


def test_a_canvas_zip_keeps_each_learners_latest_resubmission_and_maps_ids_through_the_roster(tmp_path):
    source = _zip(tmp_path / "submissions.zip", [
        ("lovelaceada_1001_5001_10_kubernetes.ipynb", notebook("ada-1"), (2026, 3, 1, 10, 0, 0)),
        ("lovelaceada_LATE_1001_5002_10_kubernetes-1.ipynb", notebook("ada-2"), (2026, 3, 2, 9, 30, 0)),
        ("turingalan_1002_5003_lab.ipynb", notebook("alan"), (2026, 3, 1, 8, 0, 0)),
        ("stranger_1999_5004_lab.ipynb", notebook("stranger"), (2026, 3, 1, 8, 0, 0)),
        ("readme.ipynb", notebook("?"), (2026, 3, 1, 8, 0, 0)),
    ])
    found, problems = collect(source, LAB, tmp_path / "cohort", roster=roster(tmp_path))
    by = {f.learner: f for f in found}
    assert by["ada"].sha256 == hashlib.sha256(notebook("ada-2")).hexdigest()  # the resubmission wins
    assert by["ada"].submitted_at == "2026-03-02T09:30:00+00:00" and by["ada"].source == "canvas"
    assert by["alan"].lms_id == "1002" and by["alan"].on_roster
    assert not by["1999"].on_roster  # kept under its Canvas id, and said so
    messages = " | ".join(f"{p.where}: {p.message}" for p in problems)
    assert "'1999' is not on the roster" in messages and "readme.ipynb: named neither" in messages


def test_a_moodle_zip_reads_the_participant_folders(tmp_path):
    source = _zip(tmp_path / "moodle.zip", [
        ("Ada Lovelace_1001_assignsubmission_file_/lab10.ipynb", notebook("ada"), (2026, 3, 1, 10, 0, 0)),
        ("Grace Hopper_77_assignsubmission_file_/10_kubernetes.ipynb", notebook("grace"), (2026, 3, 3, 10, 0, 0)),
    ])
    found, problems = collect(source, LAB, tmp_path / "cohort", roster=roster(tmp_path))
    assert {f.learner: f.source for f in found} == {"ada": "moodle", "grace": "moodle"}  # grace matched by name
    assert not problems


def test_a_broken_zip_member_is_reported_and_a_non_zip_is_refused(tmp_path):
    bad = tmp_path / "bad.zip"
    bad.write_bytes(b"not a zip")
    with pytest.raises(ValueError, match="neither a folder nor a zip"):
        collect(bad, LAB, tmp_path / "cohort")


def _git(*args, cwd, when=None):
    env = {**os.environ, "GIT_AUTHOR_NAME": "l", "GIT_AUTHOR_EMAIL": "l@x", "GIT_COMMITTER_NAME": "l",
           "GIT_COMMITTER_EMAIL": "l@x", "HOME": str(cwd)}
    if when:
        env["GIT_COMMITTER_DATE"] = env["GIT_AUTHOR_DATE"] = when
    subprocess.run(["git", *args], cwd=cwd, env=env, check=True, capture_output=True)


def test_git_repositories_and_bundles_at_the_last_commit_before_the_deadline(tmp_path):
    repos = tmp_path / "repos"
    for learner in ("ada-lab", "alan-lab"):
        repo = repos / learner
        repo.mkdir(parents=True)
        _git("init", "-q", "-b", "main", cwd=repo)
        (repo / f"{LAB}.ipynb").write_bytes(notebook(f"{learner}-before"))
        _git("add", ".", cwd=repo)
        _git("commit", "-q", "-m", "before", cwd=repo, when="2026-03-01T12:00:00+00:00")
        (repo / f"{LAB}.ipynb").write_bytes(notebook(f"{learner}-after"))
        _git("commit", "-q", "-am", "after the deadline", cwd=repo, when="2026-03-05T12:00:00+00:00")
    _git("bundle", "create", str(repos / "grace.bundle"), "--all", cwd=repos / "alan-lab")
    subprocess.run(["rm", "-rf", str(repos / "alan-lab")], check=True)
    (repos / "empty.bundle").write_bytes(b"# v2 git bundle\n")
    deadline = dt.datetime(2026, 3, 2, tzinfo=UTC)
    found, problems = collect(repos, LAB, tmp_path / "cohort", roster=roster(tmp_path), deadline=deadline)
    by = {f.learner: f for f in found}
    assert set(by) == {"ada", "grace"}  # ada by her roster `git` name, grace's bundle by her id
    assert (tmp_path / "cohort/ada" / f"{LAB}.ipynb").read_bytes() == notebook("ada-lab-before")
    assert by["grace"].submitted_at == "2026-03-01T12:00:00+00:00" and by["grace"].source == "git"
    assert any("empty.bundle" in p.where and "not a readable git" in p.message for p in problems)


def test_the_collect_command_prints_what_it_collected_and_who_is_missing(tmp_path):
    src = tmp_path / "src"
    (src / "ada").mkdir(parents=True)
    (src / "ada" / f"{LAB}.ipynb").write_bytes(notebook("ada"))
    (tmp_path / "roster.csv").write_text("id,name\nada,Ada\nalan,Alan\n")
    out = subprocess.run(CLI + ["collect", str(src), "--lab", "10", "--into", str(tmp_path / "c"), "--roster",
                                str(tmp_path / "roster.csv")], capture_output=True, text=True, cwd=REPO, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "collected 1 submissions of 10_kubernetes" in out.stdout and "no submission from 1: alan" in out.stdout


def test_a_roster_without_ids_or_with_a_learner_twice_is_refused(tmp_path):
    bad = tmp_path / "r.csv"
    bad.write_text("name,email\nAda,a@x\n")
    with pytest.raises(ValueError, match="needs an `id` column"):
        Roster.read(bad)
    bad.write_text("id\nada\nada\n")
    with pytest.raises(ValueError, match="listed twice"):
        Roster.read(bad)
