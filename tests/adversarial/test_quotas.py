"""Quotas on every writable place, and cleanup that cannot fail (issue 9, classes 7 and 8).

Engine-level cases run `Sandbox` directly with small limits (a few seconds each): a flood of empty files
or of bytes in the private /tmp, /var/tmp, /dev/shm, HOME, the work dir and the inner sandbox's /tmp is
stopped at the limit (a tmpfs job dir, where the grader may mount one: exactly; scanned otherwise: within
the stated margin), counting the files that exist when it stops; a 5,000-level tree of locked directories
with odd names is removed without raising. The slow case grades lab 03 submissions that do both, for
their exact score, with nothing left in the temp dir and no process left.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
import time
import types
from pathlib import Path

import pytest

from grader import assign
from grader.checks import lab03
from grader.sandbox import Limits, Sandbox, remove_tree

FILES = 20_000  # the file quota of the engine-level cases
POLLED_MARGIN = 0.15  # a scanned quota may overshoot by this much (scans 0.02-1 s apart); a tmpfs one by 0
MARKER = "sleep 6002"  # a daemon the flooding notebook leaves behind: it must not outlive its job

FLOOD = """
import os, sys, time
place = sys.argv[1]
os.makedirs(place, exist_ok=True)
made = failed = 0
while failed < 20_000 and made < 10 * {files}:  # ignores ENOSPC and goes on, like a careless or hostile job
    try:
        open(os.path.join(place, str(made + failed)), "w").close()
        made += 1
    except OSError:
        failed += 1
print("made", made, "failed", failed, flush=True)
time.sleep(60)
"""


def _count(path: Path) -> int:
    """Files and directories under `path` (as the quota counts them), without following links."""
    count, stack = 0, [str(path)]
    while stack:
        with os.scandir(stack.pop()) as entries:
            for entry in entries:
                count += 1
                if entry.is_dir(follow_symlinks=False):
                    stack.append(entry.path)
    return count


def _allowed(box: Sandbox, limit: int) -> int:
    return limit if box.quota == "tmpfs" else int(limit * (1 + POLLED_MARGIN))


@pytest.mark.parametrize("place", ["/tmp", "/var/tmp", "/dev/shm", "/home/learner", "/sandbox/work"])
def test_a_file_flood_is_stopped_at_the_limit(isolate, place):
    box = Sandbox(Limits(wall_seconds=60, disk_files=FILES, disk_bytes=64 * 2**20))
    try:
        box.mount("work", writable=True)
        target = f"{place}/flood"
        start = time.monotonic()
        run = box.run([sys.executable, "-I", "-c", FLOOD.format(files=FILES), target], cwd="work")
        took = time.monotonic() - start
        host = (box.mounts["work"][0] if place == "/sandbox/work" else box.home if place == "/home/learner"
                else box.scratch[place]) / "flood"
        found = _count(host) + 1  # the flood's files and its directory
        assert run.disk_exceeded and not run.timed_out, (run.notes, run.stdout, run.stderr[-500:])
        assert FILES * 0.9 <= found <= _allowed(box, FILES), (box.quota, found)
        assert run.disk_quota == box.quota and run.disk_files_used is not None
        assert abs(run.disk_files_used - found) <= 50, (run.disk_files_used, found)  # the result says how many
        assert any(f"{FILES} files and was stopped" in note for note in run.notes), run.notes
        assert took < 45
    finally:
        assert box.cleanup()
    assert not box.root.exists()


def test_a_byte_flood_in_shared_memory_is_stopped_at_the_limit(isolate):
    box = Sandbox(Limits(wall_seconds=60, disk_bytes=32 * 2**20))
    try:
        box.mount("work", writable=True)
        code = textwrap.dedent("""
            import os, time
            with open("/dev/shm/blob", "wb") as handle:
                for _ in range(200):
                    try:
                        handle.write(b"x" * 2**20); handle.flush()
                    except OSError:
                        pass
            time.sleep(60)
        """)
        run = box.run([sys.executable, "-I", "-c", code], cwd="work")
        size = (box.scratch["/dev/shm"] / "blob").stat().st_size
        assert run.disk_exceeded and not run.timed_out, run.notes
        limit = 32 * 2**20
        assert size <= (limit if box.quota == "tmpfs" else limit * (1 + POLLED_MARGIN) + 2**20), size
    finally:
        assert box.cleanup()


def test_a_scanned_quota_stops_a_flood_within_its_margin(isolate):
    """Where no tmpfs can be mounted (not root) the quota is a scan; forced here so every host measures it."""
    box = Sandbox(Limits(wall_seconds=60, disk_files=FILES), quota="polled")
    try:
        work = box.mount("work", writable=True)
        run = box.run([sys.executable, "-I", "-c", FLOOD.format(files=FILES), "/sandbox/work/flood"], cwd="work")
        found = _count(work / "flood") + 1
        assert run.disk_exceeded and run.disk_quota == "polled", run.notes
        assert found <= FILES * (1 + POLLED_MARGIN), found
        assert any("found by a scan of the writable places" in note for note in run.notes), run.notes
    finally:
        assert box.cleanup()


def test_learner_code_in_the_inner_sandbox_is_under_the_same_quota(isolate):
    """A probe's inner sandbox (harness.inner_command) gets a /tmp and /dev/shm inside the job's quota."""
    box = Sandbox(Limits(wall_seconds=60, disk_files=FILES))
    try:
        tools = box.mount("tools")
        shutil.copy(Path(__file__).parents[2] / "grader" / "tools" / "harness.py", tools / "harness.py")
        box.mount("work", writable=True)
        (box.mounts["work"][0] / "flood.py").write_text(FLOOD.format(files=FILES))
        code = textwrap.dedent("""
            import subprocess, sys
            sys.path.insert(0, "/sandbox/tools")
            import harness
            if not harness.inner_sandbox_available():
                print("NO-NESTING"); sys.exit(0)
            argv = [sys.executable, "-I", "/sandbox/work/flood.py", "/tmp/flood"]
            subprocess.run(harness.inner_command(argv, [], ["/sandbox/tools"]))
        """)
        run = box.run([sys.executable, "-I", "-c", code], cwd="work")
        if "NO-NESTING" in run.stdout:
            pytest.skip("bubblewrap does not nest here")
        inner = [p for p in box.scratch["/tmp"].iterdir() if p.name.startswith("inner-tmp-")]
        found = sum(_count(p) for p in inner)
        assert run.disk_exceeded, (run.notes, run.stdout[-300:], run.stderr[-500:])
        assert FILES * 0.9 <= found <= _allowed(box, FILES), (box.quota, found)
    finally:
        assert box.cleanup()


DEEP_TREE = """
import os, stat
start = os.getcwd()
for top in ("/sandbox/work/deep", "/tmp/deep"):
    os.makedirs(top)
    os.chdir(top)
    for level in range({levels}):
        os.mkdir("d")
        if level % 500 == 0:
            for odd in ("new\\nline", "\\u202eevil", "bad-\\udcff-bytes", " ", "-rf"):
                open(odd, "w").close()
            os.mkfifo("fifo")
            os.symlink("/etc/passwd", "link")
        os.chdir("d")
    os.chmod(".", 0)  # the deepest level: no access at all
    os.chdir(top)
    os.chmod("d", 0o500)  # near the top: not writable
os.chdir(start)
print("built")
"""


@pytest.mark.parametrize("quota", ["auto", "polled"])
def test_a_deep_locked_tree_is_removed_without_raising(isolate, quota):
    box = Sandbox(Limits(wall_seconds=120), quota=None if quota == "auto" else quota)
    box.mount("work", writable=True)
    run = box.run([sys.executable, "-I", "-c", DEEP_TREE.format(levels=5000)], cwd="work")
    assert "built" in run.stdout, run.stderr[-500:]
    start = time.monotonic()
    assert box.cleanup() is True
    took = time.monotonic() - start
    assert not box.root.exists()
    assert took < 30, f"cleanup took {took:.1f} s"
    assert Path("/etc/passwd").exists()


def test_remove_tree_as_an_ordinary_user_unlocks_what_it_owns():
    """Without root, mode-000 and read-only directories stop a naive rmtree; remove_tree opens them up."""
    if os.geteuid() == 0 and not shutil.which("setpriv"):
        pytest.skip("needs setpriv to drop root")
    outer = Path(tempfile.mkdtemp(prefix="mlops-quota-test-", dir="/tmp"))
    os.chmod(outer, 0o755)  # reachable by the ordinary user
    root = outer / "tree"
    root.mkdir()
    code = textwrap.dedent(f"""
        import os, sys
        sys.path.insert(0, {str(Path(__file__).parents[2])!r})
        from grader.sandbox import remove_tree
        os.chdir({str(root)!r})
        for level in range(3000):
            os.mkdir("d"); open("f", "w").close(); os.chdir("d")
        os.chmod(".", 0)
        os.chdir({str(root)!r}); os.chmod("d", 0); os.chmod(".", 0o500)
        print(remove_tree({str(root)!r}), os.path.exists({str(root)!r}))
    """)
    argv = [sys.executable, "-I", "-c", code]
    if os.geteuid() == 0:
        os.chown(outer, 65534, 65534)
        os.chown(root, 65534, 65534)
        argv = ["setpriv", "--reuid", "65534", "--regid", "65534", "--clear-groups", *argv]
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=120)
    finally:
        assert remove_tree(outer)
    assert done.stdout.split() == ["True", "False"], done.stderr[-800:]


# --- end to end: graded submissions --------------------------------------------------------------------------


def _fast_lab03():
    """Lab 03 with short limits (like tests/adversarial/conftest.py's fast_lab03)."""
    module = types.ModuleType("lab03_quota")
    module.__dict__.update({k: v for k, v in vars(lab03).items() if not k.startswith("__")})
    module.LAB = dataclasses.replace(lab03.LAB, timeout=150, cell_timeout=40, disk_bytes=200 * 2**20)
    return module


def _submission(after: str | None, source: str) -> bytes:
    solution = json.loads(lab03.LAB.solution_path.read_text(encoding="utf-8"))
    nb = assign.build_lab(solution, lab03.LAB.id, with_solutions=True)
    if after:
        nb = copy.deepcopy(nb)
        where = [c.get("metadata", {}).get("mlops", {}).get("id") for c in nb["cells"]].index(after)
        nb["cells"].insert(where + 1, {"cell_type": "code", "execution_count": None, "metadata": {}, "outputs": [],
                                       "source": textwrap.dedent(source).strip("\n")})
    return assign.dumps(nb).encode("utf-8")


FLOOD_CELL = f"""
import os, subprocess
subprocess.Popen(["sh", "-c", "exec {MARKER}"], start_new_session=True)  # a daemon left behind
for place in ("/tmp/a", "/dev/shm/b", os.path.expanduser("~/c")):
    os.makedirs(place, exist_ok=True)
    for number in range(150_000):  # past the 100,000-file quota; errors are ignored
        try:
            open(os.path.join(place, str(number)), "w").close()
        except OSError:
            pass
"""

DEEP_CELL = DEEP_TREE.format(levels=3000)


@pytest.mark.slow
def test_floods_and_deep_trees_in_graded_submissions(isolate, tmp_path, monkeypatch):
    jobs = tmp_path / "jobs"
    jobs.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(jobs))  # every job dir of this batch goes here
    folder = tmp_path / "submissions"
    folder.mkdir()
    cases = {"flood_private_mounts": _submission("locked-02", FLOOD_CELL),
             "deep_locked_tree": _submission("answer-10", DEEP_CELL),
             "zz_sentinel": _submission(None, "")}
    paths = []
    for name, data in cases.items():
        paths.append(folder / f"{name}.ipynb")
        paths[-1].write_bytes(data)
    from grader.grade import grade_batch

    start = time.monotonic()
    results = {Path(r.submission).stem: r for r in grade_batch(_fast_lab03(), paths, jobs=2, isolate=True,
                                                                keep_dir=tmp_path / "kept")}
    took = time.monotonic() - start
    full = lab03.CHECKS.max_score
    flood = results["flood_private_mounts"]
    assert (flood.status, flood.score) == ("graded", 0.0), flood.output
    assert flood.output.startswith("The notebook did not run to the end: the notebook wrote too much to disk "
                                   "(limit 200 MB, 100000 files) and was stopped"), flood.output
    deep = results["deep_locked_tree"]
    assert (deep.status, deep.score) == ("graded", full), deep.output
    assert (results["zz_sentinel"].status, results["zz_sentinel"].score) == ("graded", full)
    assert list(jobs.iterdir()) == [], "a job dir was left behind"
    leftovers = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            command = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ")
        except OSError:
            continue
        if MARKER.encode() in command:
            leftovers.append(pid)
    assert not leftovers
    assert remove_tree(tmp_path / "kept")
    assert took < 240
