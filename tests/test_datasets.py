"""The grader's cached course dataset is exactly what the library and sklearn give, cold, warm and after damage."""

import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
from sklearn.model_selection import train_test_split

from grader import datasets
from mlops_kit.data import breast_cancer_frame


@pytest.fixture
def fresh_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("MLOPS_GRADE_CACHE", str(tmp_path / "cache"))
    datasets._frame_arrays.cache_clear()
    datasets._split_rows.cache_clear()
    yield tmp_path / "cache"
    datasets._frame_arrays.cache_clear()
    datasets._split_rows.cache_clear()


def _forget():
    datasets._frame_arrays.cache_clear()
    datasets._split_rows.cache_clear()


def test_the_cached_frame_is_the_librarys_frame_cold_and_warm(fresh_cache):
    expected = breast_cancer_frame()
    cold = datasets.breast_cancer_frame()
    assert list(fresh_cache.glob("breast_cancer-*.npz")), "the first call stores the frame"
    _forget()
    warm = datasets.breast_cancer_frame()
    for got in (cold, warm):
        pd.testing.assert_frame_equal(got, expected, check_exact=True)
        assert got.to_csv(index=False) == expected.to_csv(index=False)  # what the notebooks read, byte for byte
    warm.iloc[0, 0] = -1.0  # a caller changing its copy changes nothing for the next one
    assert datasets.breast_cancer_frame().iloc[0, 0] == expected.iloc[0, 0]


@pytest.mark.parametrize("share, seed", [(0.2, 7), (0.25, 42)])
def test_the_cached_split_is_sklearns(fresh_cache, share, seed):
    frame = breast_cancer_frame()
    public, holdout = train_test_split(frame, test_size=share, stratify=frame.target, random_state=seed)
    for _ in range(2):  # computed, then read back
        first, second = datasets.stratified_rows(share, seed)
        assert np.array_equal(first, public.index.to_numpy()) and np.array_equal(second, holdout.index.to_numpy())
        _forget()


def test_a_damaged_or_unwritable_cache_is_recomputed_not_trusted(fresh_cache, tmp_path, monkeypatch):
    datasets.breast_cancer_frame()
    (stored,) = fresh_cache.glob("breast_cancer-*.npz")
    stored.write_bytes(b"not an npz")
    _forget()
    pd.testing.assert_frame_equal(datasets.breast_cancer_frame(), breast_cancer_frame(), check_exact=True)
    blocked = tmp_path / "file"
    blocked.write_text("a file where the cache directory would be")
    monkeypatch.setenv("MLOPS_GRADE_CACHE", str(blocked / "cache"))
    _forget()
    pd.testing.assert_frame_equal(datasets.breast_cancer_frame(), breast_cancer_frame(), check_exact=True)


def test_a_warm_grader_prepares_without_importing_sklearn(fresh_cache, tmp_path):
    datasets.breast_cancer_frame()
    datasets.stratified_rows(0.2, 7)
    probe = ("import sys; from grader.checks.common import write_public_and_holdout; "
             "from grader.datasets import breast_cancer_frame; breast_cancer_frame(); "
             f"write_public_and_holdout(__import__('pathlib').Path({str(tmp_path)!r}), 'd.csv', 0.2, 7); "
             "print('sklearn' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True,
                         env={"MLOPS_GRADE_CACHE": str(fresh_cache), "PATH": "/usr/bin:/bin"})
    assert out.stdout.strip() == "False", out.stderr
