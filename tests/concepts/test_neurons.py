"""NeuronConcepts: the identity dictionary, a chosen subset, the mean fill."""

import numpy as np
import pytest
import torch

from skconcepts import NeuronConcepts
from skconcepts.utils.discovery import all_estimators


def _X():
    return np.random.default_rng(0).normal(size=(40, 6)).astype(np.float32)


def test_every_unit_is_the_identity():
    X = _X()
    est = NeuronConcepts().fit(X)
    np.testing.assert_array_equal(est.components_, np.eye(6, dtype=np.float32))
    np.testing.assert_array_equal(est.transform(X), X)
    np.testing.assert_array_equal(est.inverse_transform(X), X)
    assert est.score(X) == 1.0
    np.testing.assert_array_equal(est.units_, np.arange(6))


def test_subset_in_order_and_mean_fill():
    X = _X()
    est = NeuronConcepts(units=[4, 1]).fit(X)
    C = est.transform(X)
    np.testing.assert_array_equal(C, X[:, [4, 1]])
    X_hat = est.inverse_transform(C)
    expected = np.tile(X.mean(0), (len(X), 1))
    expected[:, [4, 1]] = X[:, [4, 1]]
    np.testing.assert_allclose(X_hat, expected, rtol=1e-6, atol=1e-6)
    decoded = est.decoder_torch()(torch.from_numpy(C)).numpy()
    np.testing.assert_allclose(decoded, X_hat, atol=1e-6)
    assert est.get_feature_names_out().tolist() == ["concept0", "concept1"]


def test_int_units_are_the_most_varied():
    X = _X() * np.array([1, 5, 1, 3, 0.5, 2], dtype=np.float32)
    est = NeuronConcepts(units=3).fit(X)
    expected = np.argsort(-X.astype(np.float64).var(0))[:3]
    np.testing.assert_array_equal(est.units_, expected)
    assert est.units_.tolist() == [1, 3, 5]
    np.testing.assert_array_equal(est.transform(X), X[:, [1, 3, 5]])
    with pytest.raises(ValueError, match="units=7 is more than the n_features = 6"):
        NeuronConcepts(units=7).fit(X)


@pytest.mark.parametrize(
    "units, match",
    [
        ([0, 6], r"units=\[0, 6\] holds \[6\], out of range .*n_features = 6"),
        ([1, 1], r"units=\[1, 1\] repeats \[1\]; name each unit once"),
        ([], r"units=\[\] must be a non-empty list"),
        ([0.5], r"must hold integer unit indices"),
    ],
)
def test_bad_units_are_clear_errors(units, match):
    with pytest.raises(ValueError, match=match):
        NeuronConcepts(units=units).fit(_X())


def test_registered_as_the_baseline():
    baselines = all_estimators(type_filter="baseline")
    assert baselines == [("NeuronConcepts", NeuronConcepts)]
    names = [name for name, _ in all_estimators(type_filter="concept")]
    assert "NeuronConcepts" not in names and "ProbeConcepts" not in names


def test_skops_round_trip_and_store_input(tmp_path):
    from skconcepts import io
    from skconcepts.store import write_array_store

    X = _X()
    est = NeuronConcepts(units=[5, 0, 2]).fit(X)
    io.save(est, tmp_path / "saved")
    loaded = io.load(tmp_path / "saved")
    np.testing.assert_array_equal(loaded.inverse_transform(X[:, :3]),
                                  est.inverse_transform(X[:, :3]))  # fmt: skip
    store = write_array_store(X, tmp_path / "store", shard_rows=15)
    np.testing.assert_array_equal(NeuronConcepts(units=[5, 0, 2]).fit(store).mean_,
                                  est.mean_)  # fmt: skip
    np.testing.assert_array_equal(est.transform(store), X[:, [5, 0, 2]])
