"""Endless loops, memory, process and disk bombs, floods, exits and kills: contained, scored, the batch goes on."""

import json
import os

import adversarial_cases as cases
import pytest
from adversarial_helpers import assert_case_and_next, cgroups_work

NAMES = [c.name for c in cases.resource_cases()]


@pytest.fixture(scope="module")
def graded(graded_group):
    return graded_group("resources")


@pytest.mark.slow
@pytest.mark.parametrize("name", NAMES)
def test_contained_and_scored(graded, name):
    assert_case_and_next(graded, name)


@pytest.mark.slow
def test_fork_bomb_hits_the_process_limit(graded):
    if not cgroups_work():
        pytest.skip("without a pids cgroup, RLIMIT_NPROC counts every process of the grader's user")
    found = json.loads((graded.kept["fork_bomb"] / "outputs" / "forks.json").read_text())
    assert 0 < found["forks"] < 256, found
    assert "Resource temporarily unavailable" in found["error"], found


@pytest.mark.slow
def test_no_process_outlives_its_job(graded):
    """The fork bomb's sleepers (`sleep 6001`) are gone once the batch is graded (other graders may be running
    on this machine, so only this marker is looked for)."""
    assert graded.results  # the batch is done
    leftovers = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as handle:
                command = handle.read().replace(b"\0", b" ")
        except OSError:
            continue
        if b"sleep 6001" in command:
            leftovers.append((pid, command[:200]))
    assert not leftovers


@pytest.mark.slow
def test_disk_bomb_was_stopped_near_the_limit(graded):
    junk = graded.kept["disk_bomb"] / "junk"
    total = sum(p.stat().st_size for p in junk.iterdir()) if junk.exists() else 0
    assert total < 600 * 2**20, f"{total / 2**20:.0f} MB written before the job was stopped"


@pytest.mark.slow
def test_the_flood_was_dropped_not_kept(graded):
    """The 100 MB never reach the grader's memory or the kept work dir beyond the output cap."""
    executed = graded.kept["output_100mb"] / ".executed.ipynb"
    assert executed.stat().st_size < 8 * 2**20
    assert graded.results["output_100mb"].execution_time < 150
