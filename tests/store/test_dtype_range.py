"""Stored dtypes never turn values into inf silently (issue 12, item 4)."""

import warnings

import numpy as np
import pytest
import torch
from sklearn.decomposition import PCA

from skconcepts.store import extract_to_store, transform_store, write_array_store


def test_float16_refuses_values_beyond_its_range(tmp_path):
    X = np.ones((10, 3), np.float32)
    X[2, 1], X[7, 0] = 70000.0, -1e6
    with pytest.raises(ValueError, match=r"cannot store 2 .*1e\+06.*65504.*bfloat16"):
        write_array_store(X, tmp_path / "a", dtype="float16")


def test_float16_keeps_values_within_its_range(tmp_path):
    X = np.full((4, 2), 65504.0, np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        store = write_array_store(X, tmp_path, dtype="float16")
    np.testing.assert_array_equal(store[:], X)


def test_bfloat16_holds_float32_range(tmp_path):
    X = np.full((4, 2), 1e30, np.float32)
    store = write_array_store(X, tmp_path, dtype="bfloat16")
    assert np.isfinite(store[:]).all()
    np.testing.assert_allclose(store[:], X, rtol=1e-2)


def test_bfloat16_refuses_its_tiny_overflow(tmp_path):
    X = np.full((2, 2), np.finfo(np.float32).max, np.float32)
    with pytest.raises(ValueError, match="dtype='bfloat16' cannot store 4"):
        write_array_store(X, tmp_path, dtype="bfloat16")


@pytest.mark.parametrize("dtype", ["float32", "float16", "bfloat16"])
def test_nan_and_inf_in_the_activations_warn(tmp_path, dtype):
    X = np.zeros((5, 2), np.float32)
    X[0, 0], X[1, 1], X[2, 0] = np.nan, np.inf, -np.inf
    with pytest.warns(RuntimeWarning, match=r"3 of the activations .*\(1 NaN, 2 inf\)"):
        store = write_array_store(X, tmp_path, dtype=dtype)
    np.testing.assert_array_equal(store[:], X)  # stored as they are


def test_extract_to_store_refuses_a_float16_overflow(
    tmp_path, fake_activations, fake_texts
):
    class Loud(fake_activations):
        def rows(self, text):
            return super().rows(text) * 1e5

    with pytest.raises(ValueError, match="dtype='float16' cannot store"):
        extract_to_store(Loud(), fake_texts, tmp_path, dtype="float16")
    # float32 stores them; bfloat16 too
    extract_to_store(Loud(), fake_texts, tmp_path, dtype="float32", overwrite=True)


def test_transform_store_refuses_a_float16_overflow(tmp_path):
    X = np.random.default_rng(0).normal(size=(30, 4)).astype(np.float32) * 1e5
    store = write_array_store(X, tmp_path / "acts")
    pca = PCA(2).fit(X)
    with pytest.raises(ValueError, match="dtype='float16' cannot store"):
        transform_store(pca, store, tmp_path / "c", dtype="float16")


def test_a_tensor_with_bfloat16_values_is_checked(tmp_path):
    from skconcepts.store._format import _to_storage

    t = torch.full((2, 2), 1e6, dtype=torch.bfloat16)
    with pytest.raises(ValueError, match="float16"):
        _to_storage(t, "float16", check=True)


def test_float32_refuses_float64_values_beyond_its_range(tmp_path):
    X = np.ones((3, 2))
    X[1, 1] = 1e300
    with pytest.raises(ValueError, match="dtype='float32' cannot store 1 .*1e\\+300"):
        write_array_store(X, tmp_path)
