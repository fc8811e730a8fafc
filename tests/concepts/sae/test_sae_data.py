"""Training SAEs from streams of batches (skconcepts.concepts.sae._data)."""

import numpy as np
import pytest

from skconcepts.concepts import TopKSAEConcepts


def test_fit_from_list_of_batches(signed_X, make):
    X = signed_X[:768]
    chunks = np.array_split(X, 6)
    streamed = make(TopKSAEConcepts, max_epochs=3).fit(chunks)
    in_memory = make(TopKSAEConcepts, max_epochs=3).fit(X)
    assert streamed.n_iter_ == 3
    assert streamed.n_features_in_ == X.shape[1]
    assert streamed.score(X) >= 0.95 * in_memory.score(X)
    rows = streamed.net_.history[-1, "batches", :, "train_batch_size"]
    assert sum(rows) == len(X) and max(rows) == 64


def test_fit_from_one_shot_iterator_warns_and_trains_one_epoch(small_X, make):
    batches = (small_X[i : i + 50] for i in range(0, len(small_X), 50))
    with pytest.warns(UserWarning, match="one-shot iterator.*max_epochs=2"):
        sae = make(TopKSAEConcepts).fit(batches)
    assert sae.n_iter_ == 1
    assert sum(sae.net_.history[-1, "batches", :, "train_batch_size"]) == 256


class DuckStore:
    """Any object with ``iter_batches(batch_size, shuffle, seed)`` is a store."""

    def __init__(self, X):
        self.X = X
        self.calls = []

    def iter_batches(self, batch_size, shuffle=False, seed=None):
        self.calls.append((batch_size, shuffle, seed))
        order = (
            np.random.default_rng(seed).permutation(len(self.X))
            if shuffle
            else np.arange(len(self.X))
        )
        for start in range(0, len(self.X), batch_size):
            yield self.X[order[start : start + batch_size]]


def test_fit_from_activation_store(small_X, make):
    store = DuckStore(small_X)
    sae = make(TopKSAEConcepts, max_epochs=3).fit(store)
    assert sae.n_iter_ == 3
    # one unshuffled peek for the width and the decoder bias, then one
    # shuffled pass per epoch with a fresh seed
    assert store.calls[0] == (64, False, None)
    epochs = store.calls[1:]
    assert len(epochs) == 3 and all(c[:2] == (64, True) for c in epochs)
    assert len({c[2] for c in epochs}) == 3
    again = DuckStore(small_X)
    make(TopKSAEConcepts, max_epochs=3).fit(again)
    assert again.calls == store.calls
    sae.partial_fit(DuckStore(small_X))
    assert sae.n_iter_ == 4


def test_real_activation_store_streams(tmp_path, demo_corpus, make):
    activations = pytest.importorskip("skconcepts.activations")
    acts = activations.SplitPointActivations(split_point=1, batch_size=8).fit()
    if not hasattr(acts, "transform_to_store"):
        pytest.skip("SplitPointActivations cannot write an ActivationStore yet")
    store = acts.transform_to_store(
        demo_corpus[0][:12], tmp_path / "store", shard_rows=40
    )
    sae = make(TopKSAEConcepts, batch_size=32).fit(store)
    assert sae.n_features_in_ == store.n_features and sae.n_iter_ == 2
    rows = sae.net_.history[-1, "batches", :, "train_batch_size"]
    assert sum(rows) == store.shape[0]
    assert sae.transform(store).shape == (store.shape[0], 16)


def test_stream_errors(small_X, make):
    with pytest.raises(ValueError, match="empty source of batches"):
        make(TopKSAEConcepts).fit(iter([]))
    bad = [small_X[:50], small_X[:50, :10]]
    with pytest.raises(ValueError, match=r"Batch 1 of X has shape \(50, 10\)"):
        make(TopKSAEConcepts).fit(bad)
    nan = small_X[:50].copy()
    nan[3, 3] = np.nan
    with pytest.raises(ValueError, match="batch 1 of X contains NaN"):
        make(TopKSAEConcepts).fit([small_X[:50], nan])
    with pytest.raises(TypeError, match="call fit\\(X\\) and then transform"):
        make(TopKSAEConcepts).fit_transform([small_X[:50]])
