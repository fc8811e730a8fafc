"""Training SAEs from batch sources (skconcepts.concepts.sae._data).

The SAEs read an ActivationStore, a list of batches, a DataLoader or an
iterator through the package's one batch-source protocol
(``skconcepts.concepts._streaming``), in every verb.
"""

import re

import numpy as np
import pytest
import torch
from numpy.testing import assert_allclose, assert_array_equal
from skorch.callbacks import Callback

from skconcepts.concepts import (
    BatchTopKSAEConcepts,
    JumpReLUSAEConcepts,
    MPSAEConcepts,
    SAEConcepts,
    TopKSAEConcepts,
)
from skconcepts.store import StoreTooLargeError, write_array_store


def test_fit_from_list_of_batches(signed_X, make):
    X = signed_X[:768]
    chunks = np.array_split(X, 6)
    streamed = make(TopKSAEConcepts, n_passes=3).fit(chunks)
    in_memory = make(TopKSAEConcepts, n_passes=3).fit(X)
    assert streamed.n_iter_ == 3
    assert streamed.n_features_in_ == X.shape[1]
    assert streamed.score(X) >= 0.95 * in_memory.score(X)
    rows = streamed.net_.history[-1, "batches", :, "train_batch_size"]
    assert sum(rows) == len(X) and max(rows) == 64


def test_fit_from_one_shot_iterator_warns_and_trains_one_epoch(small_X, make):
    batches = (small_X[i : i + 50] for i in range(0, len(small_X), 50))
    with pytest.warns(UserWarning, match="one-shot iterator.*n_passes=2"):
        sae = make(TopKSAEConcepts).fit(batches)
    assert sae.n_iter_ == 1
    assert sum(sae.net_.history[-1, "batches", :, "train_batch_size"]) == 256


class DuckStore:
    """An object with ``iter_batches(batch_size, shuffle, seed)`` and
    ``n_features`` is a store (the batch-source protocol)."""

    def __init__(self, X):
        self.X = X
        self.n_features = X.shape[1]
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
    sae = make(TopKSAEConcepts, n_passes=3).fit(store)
    assert sae.n_iter_ == 3
    # one unshuffled peek for the width and the decoder bias, then one
    # shuffled pass per epoch with a fresh seed
    assert store.calls[0] == (64, False, None)
    epochs = store.calls[1:]
    assert len(epochs) == 3 and all(c[:2] == (64, True) for c in epochs)
    assert len({c[2] for c in epochs}) == 3
    again = DuckStore(small_X)
    make(TopKSAEConcepts, n_passes=3).fit(again)
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
        make(TopKSAEConcepts).fit_transform(c for c in [small_X[:50]])
    with pytest.raises(ValueError, match="X has 10 features, but TopKSAEConcepts"):
        make(TopKSAEConcepts).fit(small_X).partial_fit([small_X[:50, :10]])


# ------------------------------------------- the package's batch-source protocol
ALL = [
    SAEConcepts,
    TopKSAEConcepts,
    BatchTopKSAEConcepts,
    JumpReLUSAEConcepts,
    MPSAEConcepts,
]


@pytest.fixture(scope="module")
def array_store(signed_X, tmp_path_factory):
    """256 MiniLM rows written as a store of 4 shards (70 rows each)."""
    X = signed_X[:256]
    store = write_array_store(X, tmp_path_factory.mktemp("sae"), shard_rows=70)
    assert store.n_shards == 4
    return store


@pytest.mark.parametrize("cls", ALL)
def test_every_verb_reads_an_activation_store(cls, array_store, make):
    X = array_store[:]
    n, d = X.shape
    # fit: n_passes shuffled passes over every row of the store, seeded
    sae = make(cls).fit(array_store)
    assert sae.n_features_in_ == d and sae.n_iter_ == 2
    assert sae.components_.shape == (16, d)
    rows = sae.net_.history[-1, "batches", :, "train_batch_size"]
    assert sum(rows) == n and max(rows) == 64
    assert_array_equal(make(cls).fit(array_store).components_, sae.components_)
    # transform and score: ConceptMixin's reading of a source, equal to the
    # in-memory result
    C = sae.transform(array_store)
    assert C.shape == (n, 16) and C.dtype == np.float32
    assert_array_equal(C, sae.transform(X))
    assert sae.score(array_store) == pytest.approx(sae.score(X), abs=1e-6)
    # fit_transform: the same model, then transform of the store
    C_fit = make(cls).fit_transform(array_store)
    assert_array_equal(C_fit, C)
    # partial_fit: one pass per call, continuing; two calls make fit's two
    # passes (the same batches; equal up to float32 rounding)
    part = make(cls).partial_fit(array_store)
    assert part.n_iter_ == 1 and part.n_features_in_ == d
    part.partial_fit(array_store)
    assert part.n_iter_ == 2
    assert_allclose(part.components_, sae.components_, rtol=0, atol=1e-6)
    assert_array_equal(part.transform(array_store), part.transform(X))


def test_transform_of_a_store_keeps_the_budget_and_writes_stores(
    array_store, make, tmp_path
):
    sae = make(TopKSAEConcepts, max_bytes=100 * 16 * 4).fit(array_store)
    with pytest.raises(StoreTooLargeError, match="TopKSAEConcepts.transform of the"):
        sae.transform(array_store)
    with pytest.raises(
        StoreTooLargeError,
        match=re.escape("(at least 128 rows x 16 float32 concepts) needs"),
    ):
        sae.transform(iter(np.array_split(array_store[:], 2)))
    sae.set_params(max_bytes=None)
    # shard by shard: other batches than transform's, so float32 rounding
    concepts = sae.transform_to_store(array_store, tmp_path / "concepts")
    assert_allclose(concepts[:], sae.transform(array_store), rtol=1e-5, atol=1e-5)


def test_a_store_of_another_width_or_with_nan_is_refused(
    array_store, signed_X, make, tmp_path
):
    sae = make(TopKSAEConcepts).fit(array_store)
    narrow = write_array_store(signed_X[:50, :10], tmp_path / "narrow")
    for verb in (sae.transform, sae.score, sae.partial_fit):
        with pytest.raises(ValueError, match="X has 10 features, but TopKSAE"):
            verb(narrow)
    X = signed_X[:100].copy()
    X[77, 3] = np.nan
    nan = write_array_store(X, tmp_path / "nan", shard_rows=40)
    with pytest.raises(ValueError, match="batch 1 of the ActivationStore at .* NaN"):
        make(TopKSAEConcepts, n_passes=1, batch_size=64).fit(nan)


def test_an_empty_store_is_refused(signed_X, make, tmp_path):
    empty = write_array_store(signed_X[:0], tmp_path / "empty")
    with pytest.raises(ValueError, match="has no rows; TopKSAEConcepts needs"):
        make(TopKSAEConcepts).fit(empty)


@pytest.mark.parametrize("cls", ALL)
def test_streamed_fits_are_identical_whatever_the_container(cls, small_X, make):
    chunks = np.array_split(small_X, 5)  # uneven chunks, regrouped into 64 rows
    from_list = make(cls, n_passes=1).fit(chunks)
    for data in (
        (c for c in chunks),
        [torch.from_numpy(c) for c in chunks],
        Loader(chunks),
    ):
        other = make(cls, n_passes=1).fit(data)
        assert_array_equal(other.components_, from_list.components_)
    # a list of batches is re-readable: fit_transform reads it twice
    C = make(cls, n_passes=1).fit_transform(chunks)
    assert_array_equal(C, from_list.transform(small_X))


class Loader:
    """A re-iterable that yields ``(X, y)`` tensor pairs, like a DataLoader."""

    def __init__(self, chunks):
        self.chunks = chunks

    def __iter__(self):
        for chunk in self.chunks:
            yield torch.from_numpy(chunk), torch.zeros(len(chunk))


class BiasAtStart(Callback):
    """Records the decoder bias when training begins."""

    def on_train_begin(self, net, **kwargs):
        self.bias_ = net.module_.b_dec.detach().clone().numpy()


def test_decoder_bias_starts_at_the_first_chunk_of_an_iterable(small_X, make):
    chunks = [small_X[:100], small_X[100:]]  # not batch_size (64) rows
    sae = make(TopKSAEConcepts, callbacks=[BiasAtStart()]).fit(chunks)
    expected = torch.from_numpy(small_X[:100]).double().mean(0).float().numpy()
    assert_array_equal(dict(sae.net_.callbacks_)["BiasAtStart"].bias_, expected)
    # a one-shot iterator: the first chunk is read ahead, and still trained on
    gen = make(TopKSAEConcepts, callbacks=[BiasAtStart()])
    with pytest.warns(UserWarning, match="single pass instead of n_passes=2"):
        gen.fit(c for c in chunks)
    assert_array_equal(dict(gen.net_.callbacks_)["BiasAtStart"].bias_, expected)
    assert sum(gen.net_.history[-1, "batches", :, "train_batch_size"]) == 256


def test_the_saes_use_the_package_batch_source_protocol():
    from skconcepts.concepts import ConceptMixin
    from skconcepts.concepts.sae import _data, _estimators

    for name in ("_is_stream", "_as_batch", "_BatchSource"):
        assert not hasattr(_data, name)
    for cls in ALL:
        assert cls._streams and hasattr(cls, "partial_fit")
        # fit, fit_transform, transform and score are the shared ones
        for verb in ("fit", "fit_transform", "transform", "score"):
            assert getattr(cls, verb) is getattr(ConceptMixin, verb), verb
    assert _estimators.as_batch_source.__module__ == "skconcepts.concepts._streaming"
