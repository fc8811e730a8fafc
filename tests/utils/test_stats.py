"""utils._stats: the one reconstruction R², in one go and batch by batch."""

import numpy as np
import pytest
import torch

from skconcepts.utils._stats import R2Accumulator, r2


def test_r2_is_one_minus_the_fraction_of_variance_unexplained():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(50, 4))
    X_hat = X + rng.normal(scale=0.3, size=X.shape)
    fvu = np.sum((X - X_hat) ** 2) / np.sum((X - X.mean(axis=0)) ** 2)
    assert r2(X, X_hat) == pytest.approx(1 - fvu)
    assert r2(torch.from_numpy(X), torch.from_numpy(X_hat)) == pytest.approx(1 - fvu)
    assert r2(np.ones((3, 2)), np.ones((3, 2))) == 1.0
    assert r2(np.ones((3, 2)), np.zeros((3, 2))) == 0.0


def test_accumulator_equals_r2_of_the_concatenation():
    rng = np.random.default_rng(1)
    X = rng.normal(loc=3.0, size=(101, 5)).astype(np.float32)
    X_hat = (X + rng.normal(scale=0.5, size=X.shape)).astype(np.float32)
    acc = R2Accumulator()
    for a, b in [(0, 7), (7, 50), (50, 51), (51, 101)]:
        acc.update(X[a:b], X_hat[a:b])
    assert acc.n_rows == 101
    assert acc.result() == pytest.approx(r2(X, X_hat), abs=1e-12)
    with pytest.raises(ValueError, match="No rows"):
        R2Accumulator().result()


def test_score_and_score_of_a_store_use_the_same_r2(signed_X, tmp_path):
    from skconcepts.concepts import PCAConcepts
    from skconcepts.store import write_array_store

    X = signed_X[:300]
    pca = PCAConcepts(4).fit(X)
    expected = r2(X, pca.inverse_transform(pca.transform(X)))
    assert pca.score(X) == expected
    store = write_array_store(X, tmp_path, shard_rows=70)
    assert pca.score(store) == pytest.approx(expected, abs=1e-9)
