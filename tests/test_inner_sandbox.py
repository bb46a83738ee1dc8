"""One sandbox further in (learner code run by a probe), /proc is the probe's: a fresh procfs cannot be mounted
there, so a process's own PID names another process, or none, in /proc. Dask calls psutil.Process() when it is
imported, and pandera imports Dask when it validates typed frames: lab 04's pipeline stages crashed at random in
`dvc repro` ("psutil.NoSuchProcess: process PID not found (pid=14)"). Dask is unimportable there; pandera then
validates without it."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "grader" / "tools"))
import harness  # noqa: E402

TYPED = '''
import sys
import pandas as pd
import pandera.pandas as pa
from pandera.typing import DataFrame, Series


class Schema(pa.DataFrameModel):
    a: Series[int]


@pa.check_types
def f(df: DataFrame[Schema]) -> DataFrame[Schema]:
    return df


print(f(pd.DataFrame({"a": [1, 2]})).shape, "dask" in sys.modules)
try:
    import dask  # noqa: F401
except ModuleNotFoundError as err:
    print("blocked:", err)
'''


def test_dask_is_unimportable_one_sandbox_further_in_and_pandera_still_validates(tmp_path, isolate):
    if not harness.inner_sandbox_available():
        pytest.skip("bubblewrap does not nest here")
    script = tmp_path / "typed.py"
    script.write_text(TYPED)
    done = harness.run_learner([sys.executable, str(script)], cwd=str(tmp_path), env={"PATH": "/usr/bin:/bin"},
                               timeout=60, writable=[str(tmp_path)], hidden=[])
    assert done["nested"] and done["exit"] == 0, done["stderr"]
    assert "(2, 1) False" in done["stdout"]  # validated, without importing Dask
    assert "blocked: No module named 'dask' (not needed here)" in done["stdout"]


def test_a_pythonpath_of_the_caller_is_kept_behind_the_blocker(tmp_path, isolate):
    if not harness.inner_sandbox_available():
        pytest.skip("bubblewrap does not nest here")
    (tmp_path / "mine.py").write_text("VALUE = 42\n")
    done = harness.run_learner([sys.executable, "-c", "import mine; print(mine.VALUE)"], cwd=str(tmp_path),
                               env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(tmp_path)}, timeout=60,
                               writable=[str(tmp_path)], hidden=[])
    assert done["exit"] == 0 and done["stdout"].strip() == "42", done["stderr"]


QUIET_CHECK = '''
import colorsys, textwrap
print(colorsys.rgb_to_hsv(1, 0, 0), textwrap.shorten("a text", 40))
import torch
'''


@pytest.mark.parametrize("nested", [True, False])
def test_the_server_sitecustomize_blocks_and_quiets_one_sandbox_further_in_and_without_it(tmp_path, isolate, nested):
    # the service probe's `not_needed` and `quiet`: nested, the inner sandbox's sitecustomize (the only one Python
    # imports) does both; without nesting, a site folder on PYTHONPATH
    quiet = ("colorsys:rgb_to_hsv", "colorsys:NoSuch.render")
    script = tmp_path / "quiet.py"
    script.write_text(QUIET_CHECK)
    argv, env = [sys.executable, str(script)], {"PATH": "/usr/bin:/bin"}
    if nested:
        if not harness.inner_sandbox_available():
            pytest.skip("bubblewrap does not nest here")
        argv = harness.inner_command(argv, [str(tmp_path)], [], not_needed=("torch",), quiet=quiet)
    else:
        site = tmp_path / "site"
        site.mkdir()
        harness.write_site(str(site), ("torch",), quiet)
        env["PYTHONPATH"] = str(site)
    import subprocess

    done = subprocess.run(argv, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)
    assert done.stdout.strip() == "[] a text", done.stderr
    assert "No module named 'torch' (not needed here)" in done.stderr
