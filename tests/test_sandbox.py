"""The sandbox on its own: isolation (network, files, environment) and limits (time, memory, processes,
disk, output). Each test runs a small command, not a notebook."""

import os
import sys
import time
from pathlib import Path

import pytest

from grader.labs import REPO
from grader.sandbox import Limits, Sandbox

PY = [sys.executable, "-I", "-c"]
ZYGOTE = None  # tests/test_entrants.py runs this suite again with every command an entrant of a zygote


def run(code: str, limits: Limits = Limits(wall_seconds=60), isolate: bool = True, **mounts):
    box = Sandbox(limits, isolate=isolate)
    try:
        box.mount("work", writable=True)
        for name, (host, writable) in mounts.items():
            box.mount(name, host, writable)
        result = box.run(PY + [code], cwd="work", zygote=ZYGOTE)
        return result, box.mounts["work"][0], box
    finally:
        box.cleanup()


def _running(marker: str) -> list[str]:
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as handle:
                command = handle.read().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if marker in command and "pytest" not in command:
            found.append(command)
    return found


def test_network_is_unreachable(isolate):
    result, _, _ = run("""
import socket
for target in (("1.1.1.1", 443), ("8.8.8.8", 53)):
    try:
        socket.create_connection(target, timeout=3)
        print("CONNECTED", target)
    except OSError as err:
        print("refused", err)
try:
    socket.getaddrinfo("pypi.org", 443)
    print("RESOLVED")
except OSError as err:
    print("no dns", err)
print(sorted(name for _, name in socket.if_nameindex()))
""")
    assert "CONNECTED" not in result.stdout and "RESOLVED" not in result.stdout, result.stdout
    assert result.stdout.count("Network is unreachable") == 2 and "['lo']" in result.stdout, result.stdout


def test_grader_and_repository_are_invisible(isolate):
    result, _, _ = run(f"""
import os
for path in ({str(REPO / 'grader/checks/lab03.py')!r}, {str(REPO / 'solutions')!r}, {str(REPO / 'README.md')!r},
             "/root/.bashrc", "/sys/fs/cgroup", "/var/log", "/home/root"):
    print(path, os.path.exists(path))
try:
    import grader
    print("IMPORTED grader")
except ImportError:
    print("no grader")
import mlops_kit.data  # the course library is there, read-only
print(sorted(os.listdir({str(REPO)!r})))
""")
    assert "True" not in result.stdout.replace("mlops_kit", ""), result.stdout + result.stderr
    assert "no grader" in result.stdout
    listing = result.stdout.strip().splitlines()[-1]
    assert "grader" not in listing and "solutions" not in listing and "tests" not in listing, listing


@pytest.mark.parametrize("isolated", [True, False])
def test_environment_is_scrubbed(isolated, monkeypatch, request):
    if isolated:
        request.getfixturevalue("isolate")
    monkeypatch.setenv("INSTRUCTOR_TOKEN", "fake-token-4f1d")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "fake-aws-secret")
    result, _, _ = run("import os; print(sorted(os.environ)); print(open('/proc/self/environ', 'rb').read())",
                       isolate=isolated)
    assert "fake-token-4f1d" not in result.stdout and "INSTRUCTOR_TOKEN" not in result.stdout
    assert "AWS_SECRET" not in result.stdout and "'MLOPS_GRADING'" in result.stdout, result.stdout


def test_writes_outside_the_work_dir_fail(isolate, tmp_path):
    readonly = tmp_path / "inputs"
    readonly.mkdir()
    marker = f"/tmp/mlops-sandbox-test-{os.getpid()}"
    result, _work, _ = run(f"""
import os, sys, sysconfig
targets = [os.path.join(sysconfig.get_paths()["purelib"], "zz_evil.pth"), {str(REPO / 'evil.txt')!r},
           "/usr/evil", "/etc/passwd", "/sandbox/inputs/evil", "/evil", "/sandbox/evil"]
for path in targets:
    try:
        open(path, "a").write("x")
        print("WROTE", path)
    except OSError as err:
        print("refused", path, type(err).__name__)
open("mine.txt", "w").write("ok")
open({marker!r}, "w").write("private tmp")
open("/var/tmp/scratch", "w").write("private var/tmp (DVC's site cache lives there)")
open(os.path.expanduser("~/home.txt"), "w").write("private home")
print("done")
""", inputs=(readonly, False))
    # a checkout under /tmp or /home sits in the sandbox's private tmpfs there: a write lands in that tmpfs only
    private = str(REPO).startswith(("/tmp/", "/home/"))
    wrote = [line for line in result.stdout.splitlines() if line.startswith("WROTE")]
    assert wrote == ([f"WROTE {REPO / 'evil.txt'}"] if private else []), result.stdout + result.stderr
    assert result.stdout.count("refused") == 7 - len(wrote), result.stdout + result.stderr
    assert "done" in result.stdout
    assert not Path(marker).exists() and not (REPO / "evil.txt").exists()
    assert list(readonly.iterdir()) == []


def test_wall_timeout_kills_the_whole_tree(isolate):
    start = time.monotonic()
    result, _, _ = run("""
import os, subprocess
subprocess.Popen(["sleep", "3011"])
subprocess.Popen(["setsid", "sleep", "3011"])  # leaves the process group
if os.fork() == 0:
    os.setsid()
    os.execv("/bin/sleep", ["sleep", "3011"])
os.execv("/bin/sleep", ["sleep", "3011"])
""", Limits(wall_seconds=3))
    assert result.timed_out and time.monotonic() - start < 30
    time.sleep(0.5)
    assert _running("sleep 3011") == []


def test_wall_timeout_kills_the_tree_without_bubblewrap():
    result, _, _ = run("import subprocess; subprocess.Popen(['sleep', '3012']); import time; time.sleep(300)",
                       Limits(wall_seconds=2), isolate=False)
    assert result.timed_out
    time.sleep(0.5)
    assert _running("sleep 3012") == []


def test_memory_limit(isolate):
    result, _, _ = run("""
hoard = []
while True:
    hoard.append(b"x" * 2**24)
""", Limits(wall_seconds=60, memory_bytes=256 * 2**20))
    assert result.returncode != 0
    assert result.out_of_memory or "MemoryError" in result.stderr, result.stderr[-500:]


def test_process_limit(isolate):
    result, _, _ = run("""
import os, time
children = 0
try:
    while True:
        if os.fork() == 0:
            time.sleep(30)
            os._exit(0)
        children += 1
except OSError as err:
    print("stopped after", children, type(err).__name__)
""", Limits(wall_seconds=30, pids=24))
    if any("no cgroup" in note for note in result.notes):
        pytest.skip("without a pids cgroup, RLIMIT_NPROC counts every process of this user on the machine")
    assert "stopped after" in result.stdout, result.stderr[-500:]
    assert int(result.stdout.split()[2]) < 24


def test_output_cap_keeps_head_and_tail(isolate):
    result, _, _ = run("""
import sys
for _ in range(200):
    sys.stdout.write("x" * 50_000 + "\\n")
print("LAST LINE")
""", Limits(wall_seconds=30, output_bytes=64 * 1024))
    assert result.output_truncated and result.returncode == 0
    assert len(result.stdout) < 64 * 1024 + 70 * 1024
    assert result.stdout.rstrip().endswith("LAST LINE")


def test_disk_limit_stops_the_job(isolate):
    start = time.monotonic()
    result, _, _ = run("""
import os
for number in range(1000):
    with open(f"junk{number}", "wb") as handle:
        handle.write(b"\\1" * 2**22)
""", Limits(wall_seconds=60, disk_bytes=32 * 2**20))
    assert result.disk_exceeded and not result.timed_out and result.returncode != 0
    assert time.monotonic() - start < 30


def test_file_size_limit(isolate):
    result, _, _ = run("""
try:
    open("big", "wb").write(b"x" * 3 * 2**20)
    print("WROTE")
except OSError as err:
    print("refused", err)
""", Limits(wall_seconds=30, file_bytes=2**20))
    assert "WROTE" not in result.stdout


def test_uid_and_capabilities(isolate):
    result, _, _ = run("import os; print(os.getuid(), open('/proc/self/status').read().split('CapEff:')[1].split()[0])")
    assert result.stdout.split() == ["1000", "0000000000000000"]


def test_cleanup_removes_locked_directories_and_never_follows_links(isolate, tmp_path):
    host_dir = tmp_path / "host"
    host_dir.mkdir(mode=0o755)
    (host_dir / "keep.txt").write_text("host file")
    result, _, box = run(f"""
import os
os.makedirs("locked/deeper")
open("locked/deeper/f", "w").write("x")
os.chmod("locked/deeper", 0o000)
os.chmod("locked", 0o500)
os.symlink({str(host_dir)!r}, "link_to_host")
os.symlink({str(host_dir / 'keep.txt')!r}, "locked_link")
print("ok")
""")
    assert "ok" in result.stdout, result.stderr
    assert not box.root.exists()
    assert (host_dir / "keep.txt").read_text() == "host file" and (host_dir.stat().st_mode & 0o777) == 0o755


def test_cleanup_removes_a_deep_unwritable_tree_without_raising(tmp_path):
    import os

    from grader.sandbox import Sandbox

    box = Sandbox(isolate=False, root=tmp_path / "job")
    path = box.mount("work", writable=True)
    for _ in range(1500):  # deeper than Python's recursion limit
        path = path / "d"
        os.mkdir(path)
    (path / "f").write_text("x")
    os.chmod(path, 0o500)
    os.chmod(tmp_path / "job" / "work", 0)
    box.cleanup()
    assert not (tmp_path / "job").exists()
