"""Streaming fits from an on-disk ActivationStore, partial_fit, budgets, concept stores.

The stores hold the real MiniLM token activations of the conftest fixtures,
written in several shards, so every streamed fit crosses shard boundaries.
"""

import re
import warnings

import numpy as np
import pandas as pd
import pytest
import torch
from scipy.optimize import nnls
from sklearn.cluster import MiniBatchKMeans
from sklearn.decomposition import IncrementalPCA, MiniBatchDictionaryLearning
from sklearn.exceptions import ConvergenceWarning

from skconcepts import SplitPointActivations, TopKSAEConcepts
from skconcepts.concepts import (
    ConvexNMFConcepts,
    DictionaryLearningConcepts,
    ICAConcepts,
    KMeansConcepts,
    NMFConcepts,
    PCAConcepts,
    SemiNMFConcepts,
    SparsePCAConcepts,
    SVDConcepts,
)
from skconcepts.exceptions import StoreMismatchError
from skconcepts.store import (
    ActivationStore,
    StoreTooLargeError,
    extract_to_store,
    write_array_store,
)

SHARD_ROWS = 400


# ----------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def signed_store(signed_X, tmp_path_factory):
    store = write_array_store(
        signed_X, tmp_path_factory.mktemp("signed"), shard_rows=SHARD_ROWS
    )
    assert store.n_shards >= 4
    return store


@pytest.fixture(scope="module")
def positive_store(positive_X, tmp_path_factory):
    return write_array_store(
        positive_X, tmp_path_factory.mktemp("positive"), shard_rows=SHARD_ROWS
    )


@pytest.fixture(scope="module")
def small_X(signed_X):
    return signed_X[:300, :12].copy()


@pytest.fixture(scope="module")
def small_store(small_X, tmp_path_factory):
    return write_array_store(small_X, tmp_path_factory.mktemp("small"), shard_rows=70)


@pytest.fixture(scope="module")
def minilm_store(minilm, demo_corpus, tmp_path_factory):
    model, tokenizer = minilm
    acts = SplitPointActivations(
        model, tokenizer=tokenizer, split_point=1, batch_size=4
    )
    texts = demo_corpus[0][:12]
    path = tmp_path_factory.mktemp("minilm")
    return extract_to_store(acts, texts, path, shard_rows=40)


def _chunks(X, n):
    return np.array_split(X, n)


# ------------------------------------------------------- write_array_store
def test_write_array_store_round_trip_and_resume(small_X, tmp_path):
    store = write_array_store(small_X, tmp_path, shard_rows=70)
    assert store.shape == small_X.shape and store.n_shards == 5
    np.testing.assert_array_equal(store[:], small_X)
    np.testing.assert_array_equal(store.units()["sample"], np.arange(len(small_X)))
    # the same call again reopens the complete store; other data is refused
    assert write_array_store(small_X, tmp_path, shard_rows=70).shape == store.shape
    with pytest.raises(StoreMismatchError, match="array.sha256"):
        write_array_store(small_X + 1, tmp_path, shard_rows=70)
    with pytest.raises(ValueError, match="2-D array"):
        write_array_store(small_X[0], tmp_path / "other")


# ------------------------------------------ streamed fit vs in-memory fit
@pytest.mark.parametrize(
    "make, signed",
    [
        (lambda: PCAConcepts(16), True),
        (lambda: KMeansConcepts(16, random_state=0), True),
        (lambda: NMFConcepts(8, random_state=0), False),
        (lambda: SemiNMFConcepts(8, random_state=0), True),
    ],
    ids=["PCA", "KMeans", "NMF", "SemiNMF"],
)
def test_streamed_fit_reaches_the_in_memory_r2(
    make, signed, signed_X, signed_store, positive_X, positive_store
):
    X, store = (signed_X, signed_store) if signed else (positive_X, positive_store)
    in_memory = make().fit(X)
    streamed = make().fit(store)
    r2_memory = in_memory.score(X)
    r2_streamed = streamed.score(X)
    assert r2_streamed > r2_memory - 0.02, (r2_streamed, r2_memory)
    # score of the store streams it: the same value as on the array
    assert streamed.score(store) == pytest.approx(r2_streamed, abs=1e-9)
    if hasattr(streamed, "reconstruction_err_"):  # tracked over the last pass
        exact = np.linalg.norm(X - streamed.inverse_transform(streamed.transform(X)))
        assert streamed.reconstruction_err_ == pytest.approx(exact, rel=0.05)


def test_streamed_pca_feeds_the_pca_attributes(signed_X, signed_store):
    pca = PCAConcepts(8, batch_size=500).fit(signed_store)
    ref = IncrementalPCA(8, batch_size=500)
    for X in signed_store.iter_batches(500):
        ref.partial_fit(X)
    assert isinstance(pca.estimator_, IncrementalPCA)
    assert pca.n_iter_ == 1 and pca.estimator_.n_samples_seen_ == len(signed_X)
    np.testing.assert_allclose(pca.components_, ref.components_, atol=1e-6)
    np.testing.assert_allclose(pca.estimator_.mean_, signed_X.mean(axis=0), atol=1e-4)
    # as good a reconstruction as the exact PCA
    exact = PCAConcepts(8).fit(signed_X)
    assert pca.score(signed_X) == pytest.approx(exact.score(signed_X), abs=2e-3)
    # transform, inverse_transform and the torch decoder use mean_ exactly
    X = signed_X[:50]
    C = pca.transform(X)
    np.testing.assert_allclose(
        C, (X - ref.mean_) @ ref.components_.T, rtol=1e-4, atol=1e-3
    )
    X_hat = C @ ref.components_ + ref.mean_
    np.testing.assert_allclose(pca.inverse_transform(C), X_hat, atol=1e-4)
    decoded = pca.decoder_torch()(torch.from_numpy(C))
    np.testing.assert_allclose(decoded.numpy(), X_hat, atol=1e-4)


def test_streamed_whitened_pca_decoder_is_exact(small_X, small_store):
    pca = PCAConcepts(4, whiten=True, batch_size=64).fit(small_store)
    C = pca.transform(small_X)
    np.testing.assert_allclose(C.std(axis=0, ddof=1), 1.0, rtol=0.2)
    X_hat = pca.inverse_transform(C)
    np.testing.assert_allclose(X_hat, pca.estimator_.inverse_transform(C), atol=1e-4)


def test_streamed_kmeans_keeps_membership_semantics(signed_X, signed_store):
    km = KMeansConcepts(6, random_state=0, n_passes=3).fit(signed_store)
    assert isinstance(km.estimator_, MiniBatchKMeans) and km.n_iter_ == 3
    np.testing.assert_array_equal(km.components_, km.estimator_.cluster_centers_)
    X = signed_X[:200]
    C = km.transform(X)
    d2 = ((X[:, None, :] - km.components_[None]) ** 2).sum(-1)
    np.testing.assert_array_equal(C.argmax(axis=1), d2.argmin(axis=1))
    np.testing.assert_array_equal(C.sum(axis=1), 1.0)
    # temperature_: mean squared distance to the nearest centroid, last pass
    assert km.temperature_ == pytest.approx(d2.min(axis=1).mean(), rel=0.3)
    soft = km.set_params(membership="soft").transform(X)
    np.testing.assert_allclose(soft.sum(axis=1), 1.0, rtol=1e-5)
    assert km.reconstruction_err_ > 0


def test_streamed_fit_is_seeded(small_store):
    a = KMeansConcepts(4, random_state=3, n_passes=2, batch_size=64).fit(small_store)
    b = KMeansConcepts(4, random_state=3, n_passes=2, batch_size=64).fit(small_store)
    c = KMeansConcepts(4, random_state=4, n_passes=2, batch_size=64).fit(small_store)
    np.testing.assert_array_equal(a.components_, b.components_)
    assert not np.array_equal(a.components_, c.components_)


# ---------------------------------------------------------------- partial_fit
PARTIAL = [
    (
        lambda: PCAConcepts(3),
        lambda: IncrementalPCA(3),
        "components_",
    ),
    (
        lambda: KMeansConcepts(3, random_state=0),
        lambda: MiniBatchKMeans(3, random_state=0, batch_size=1024),
        "cluster_centers_",
    ),
    (
        lambda: DictionaryLearningConcepts(5, random_state=0),
        lambda: MiniBatchDictionaryLearning(5, random_state=0, batch_size=256),
        "components_",
    ),
]


@pytest.mark.parametrize(
    "make, make_ref, attr", PARTIAL, ids=["PCA", "KMeans", "DictionaryLearning"]
)
def test_partial_fit_over_chunks_equals_the_sklearn_mini_batch_estimator(
    make, make_ref, attr, small_X
):
    est, ref = make(), make_ref()
    for i, chunk in enumerate(_chunks(small_X, 4)):
        assert est.partial_fit(chunk) is est
        ref.partial_fit(chunk)
        assert est.n_iter_ == i + 1
    np.testing.assert_allclose(est.components_, getattr(ref, attr), atol=1e-6)
    assert est.components_.dtype == np.float32
    assert est.n_features_in_ == small_X.shape[1]
    if isinstance(ref, MiniBatchKMeans):  # hard membership: one-hot labels
        expected = np.eye(3)[ref.predict(small_X)]
    else:
        expected = ref.transform(small_X)
    np.testing.assert_allclose(est.transform(small_X), expected, atol=1e-4)
    if hasattr(est, "reconstruction_err_"):  # on the last chunk, after its update
        last = _chunks(small_X, 4)[-1]
        X_hat = est.inverse_transform(est.transform(last))
        assert est.reconstruction_err_ == pytest.approx(
            np.linalg.norm(last - X_hat), rel=1e-4
        )


@pytest.mark.parametrize(
    "est",
    [
        PCAConcepts(2),
        KMeansConcepts(2, random_state=0),
        DictionaryLearningConcepts(2, random_state=0),
        NMFConcepts(2, random_state=0),
        SemiNMFConcepts(2, random_state=0),
    ],
    ids=["PCA", "KMeans", "DictionaryLearning", "NMF", "SemiNMF"],
)
def test_partial_fit_checks_the_number_of_features(est, small_X):
    X = np.abs(small_X)  # fits NMF too
    est.partial_fit(X)
    name = type(est).__name__
    with pytest.raises(
        ValueError, match=f"X has 5 features, but {name} is expecting 12 features"
    ):
        est.partial_fit(X[:, :5])


def test_online_semi_nmf_updates_match_a_reference(small_X):
    """Each chunk adds the statistics of its NNLS codes (scipy, reference) with the
    dictionary before it, and the dictionary is the least-squares fit to them."""
    est = SemiNMFConcepts(3, random_state=0, top_k=None)
    for i, chunk in enumerate(_chunks(small_X, 4)):
        if i:
            D = est.components_.astype(np.float64)
            A, B = (s.copy() for s in est._stream_stats)
        est.partial_fit(chunk)
        if i:
            Z = np.array([nnls(D.T, x.astype(np.float64))[0] for x in chunk])
            A_new, B_new = est._stream_stats
            np.testing.assert_allclose(A_new - A, Z.T @ Z, rtol=1e-3, atol=1e-2)
            np.testing.assert_allclose(B_new - B, Z.T @ chunk, rtol=1e-3, atol=1e-2)
            np.testing.assert_allclose(
                est.components_, np.linalg.solve(A_new, B_new), rtol=1e-3, atol=1e-3
            )
    assert est.n_iter_ == 4


def test_online_nmf_over_chunks(positive_X):
    X = positive_X[:1200]
    online = NMFConcepts(6, random_state=0)
    for chunk in _chunks(X, 6):
        online.partial_fit(chunk)
    assert online.n_iter_ == 6 and online.components_.dtype == np.float32
    assert (online.components_ >= 0).all() and (online.transform(X) >= 0).all()
    in_memory = NMFConcepts(6, random_state=0).fit(X)
    assert online.score(X) > in_memory.score(X) - 0.05
    with pytest.raises(ValueError, match="SemiNMFConcepts.*NonNegative"):
        online.partial_fit(X - 1)


def test_nmf_forget_factor_scales_the_statistics_between_passes(small_X, tmp_path):
    store = write_array_store(np.abs(small_X), tmp_path, shard_rows=70)
    nmf = NMFConcepts(3, random_state=0, forget_factor=0.5, batch_size=1000)
    nmf.partial_fit(store)  # one batch of 300 rows
    A = nmf._stream_stats[0].copy()
    Z = nmf.transform(np.abs(small_X))  # codes of the next pass (same dictionary)
    nmf.partial_fit(store)
    np.testing.assert_allclose(
        nmf._stream_stats[0], 0.5 * A + Z.T.astype(np.float64) @ Z, rtol=1e-4
    )


def test_partial_fit_of_a_store_is_one_pass_and_continues(small_X, small_store):
    km = KMeansConcepts(3, random_state=0, batch_size=64)
    km.partial_fit(small_store)
    assert km.n_iter_ == 1 and km.estimator_.n_steps_ == 5  # 300 rows / 64
    km.partial_fit(small_X[:40])
    assert km.n_iter_ == 2 and km.estimator_.n_steps_ == 6


def test_partial_fit_after_an_in_memory_fit_starts_a_new_model(small_X):
    pca = PCAConcepts(3).fit(small_X)
    pca.partial_fit(small_X[:100])
    assert isinstance(pca.estimator_, IncrementalPCA)
    assert pca.estimator_.n_samples_seen_ == 100 and pca.n_iter_ == 1
    # and a fit on an array replaces the streamed model
    pca.fit(small_X)
    assert not isinstance(pca.estimator_, IncrementalPCA)


def test_batches_hold_at_least_n_concepts_rows(signed_X, tmp_path):
    X = signed_X[:300, :60]
    store = write_array_store(X, tmp_path / "a", shard_rows=70)
    # batch_size=16 < n_concepts=50: IncrementalPCA's first batch needs 50 rows
    pca = PCAConcepts(50, batch_size=16).fit(store)
    assert pca.estimator_.n_samples_seen_ == 300
    assert pca.score(X) > 0.9
    tiny = write_array_store(X[:3], tmp_path / "b")
    with pytest.raises(ValueError, match=r"n_concepts=4 is larger .*n_samples = 3"):
        PCAConcepts(4).fit(tiny)


def test_fit_transform_of_a_store(small_X, small_store):
    a = KMeansConcepts(3, random_state=0, batch_size=64)
    C = a.fit_transform(small_store)
    b = KMeansConcepts(3, random_state=0, batch_size=64).fit(small_store)
    np.testing.assert_array_equal(C, b.transform(small_X))


def test_streamed_fit_shows_a_progress_bar(small_store, capsys):
    KMeansConcepts(2, random_state=0, n_passes=2, progress=True).fit(small_store)
    err = capsys.readouterr().err
    assert "KMeansConcepts.fit" in err and "600/600" in err


def test_dictionary_learning_streams_a_store(small_X, small_store):
    dico = DictionaryLearningConcepts(6, random_state=0, batch_size=64, n_passes=2)
    dico.fit(small_store)
    assert isinstance(dico.estimator_, MiniBatchDictionaryLearning)
    assert dico.n_iter_ == 2 and dico.estimator_.n_steps_ == 2 * 5
    assert dico.score(small_X) > 0.2
    assert np.isfinite(dico.reconstruction_err_)


# --------------------------------------------- non-streaming: memory budget
NON_STREAMING = [
    lambda **kw: SVDConcepts(3, random_state=0, **kw),
    lambda **kw: ICAConcepts(3, random_state=0, **kw),
    lambda **kw: SparsePCAConcepts(2, max_iter=5, random_state=0, **kw),
    lambda **kw: ConvexNMFConcepts(2, max_iter=20, random_state=0, **kw),
]


@pytest.mark.parametrize(
    "make", NON_STREAMING, ids=["SVD", "ICA", "SparsePCA", "ConvexNMF"]
)
def test_non_streaming_estimators_load_a_store_within_the_budget(
    make, small_X, small_store
):
    needed = small_X.size * 4
    name = type(make()).__name__
    with pytest.raises(StoreTooLargeError) as info:
        make(max_bytes=needed - 1).fit(small_store)
    message = str(info.value)
    assert f"{name} needs {needed} bytes" in message
    assert f"max_bytes={needed - 1}" in message
    for streaming in (
        "PCAConcepts",
        "KMeansConcepts",
        "DictionaryLearningConcepts",
        "NMFConcepts",
        "SAEConcepts",
    ):
        assert streaming in message
    assert isinstance(info.value, MemoryError)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        from_store = make(max_bytes=needed).fit(small_store)
        from_array = make().fit(small_X)
    np.testing.assert_array_equal(from_store.components_, from_array.components_)
    np.testing.assert_array_equal(
        from_store.transform(small_store), from_array.transform(small_X)
    )


# ------------------------------------------------ transform of a store
def test_transform_of_a_store_streams_into_one_array(small_X, small_store):
    pca = PCAConcepts(3).fit(small_X)
    np.testing.assert_array_equal(pca.transform(small_store), pca.transform(small_X))
    assert pca.score(small_store) == pytest.approx(pca.score(small_X), abs=1e-9)
    pca.set_params(max_bytes=len(small_X) * 3 * 4 - 1)
    with pytest.raises(
        StoreTooLargeError,
        match=re.escape("(300 rows x 3 float32 concepts) needs 3600 bytes")
        + ".*transform_to_store",
    ):
        pca.transform(small_store)
    with pytest.raises(
        ValueError, match="X has 12 features, but PCAConcepts is expecting 5 features"
    ):
        PCAConcepts(2).fit(small_X[:, :5]).transform(small_store)


@pytest.mark.parametrize(
    "make",
    [
        lambda: PCAConcepts(4),
        lambda: KMeansConcepts(4, membership="soft", random_state=0),
        lambda: SVDConcepts(3, random_state=0),
    ],
    ids=["PCA", "KMeans", "SVD"],
)
def test_transform_to_store_equals_transform(make, minilm_store, tmp_path):
    X = minilm_store[:]
    est = make().fit(X)
    concepts = est.transform_to_store(minilm_store, tmp_path / "concepts")
    assert isinstance(concepts, ActivationStore)
    assert concepts.shape == (len(X), est.components_.shape[0])
    assert concepts.n_shards == minilm_store.n_shards > 1
    np.testing.assert_allclose(concepts[:], est.transform(X), rtol=1e-6, atol=1e-6)
    assert concepts.feature_names == list(est.get_feature_names_out())
    pd.testing.assert_frame_equal(concepts.units(), minilm_store.units())


# ------------------------------------------------ the batch-source protocol
STREAMING = {
    "NMF": lambda **kw: NMFConcepts(3, random_state=0, **kw),
    "SemiNMF": lambda **kw: SemiNMFConcepts(3, random_state=0, **kw),
    "PCA": lambda **kw: PCAConcepts(3, **kw),
    "KMeans": lambda **kw: KMeansConcepts(3, random_state=0, **kw),
    "DictionaryLearning": lambda **kw: DictionaryLearningConcepts(
        3, random_state=0, **kw
    ),
}


def _data_for(name, small_X):
    return np.abs(small_X) if name == "NMF" else small_X


class _Loader:
    """A re-iterable that yields ``(X, y)`` tensor pairs, like a DataLoader."""

    def __init__(self, chunks):
        self.chunks = chunks

    def __iter__(self):
        for chunk in self.chunks:
            yield torch.from_numpy(chunk), torch.zeros(len(chunk))


@pytest.mark.parametrize("name", list(STREAMING))
def test_every_streaming_estimator_fits_every_batch_source(name, small_X, tmp_path):
    X = _data_for(name, small_X)
    chunks = np.array_split(X, 7)  # uneven chunks, regrouped into batch_size
    make = STREAMING[name]
    kw = {"batch_size": 64}
    if name != "PCA":
        kw["n_passes"] = 1  # a generator allows one pass
    from_list = make(**kw).fit(chunks)
    # the same rows in the same order: identical models, whatever the container
    for data in (
        (c for c in chunks),
        [torch.from_numpy(c) for c in chunks],
        _Loader(chunks),
    ):
        other = make(**kw).fit(data)
        np.testing.assert_array_equal(other.components_, from_list.components_)
    assert from_list.n_iter_ == 1 and from_list.n_features_in_ == X.shape[1]
    # a store of the concatenated rows; and the in-memory fit of the array
    store = write_array_store(X, tmp_path, shard_rows=70)
    from_store = make(**kw).fit(store)
    in_memory = make().fit(X)
    if name == "PCA":  # not shuffled, and exact: the same batches, the same model
        np.testing.assert_array_equal(from_store.components_, from_list.components_)
    # against the in-memory fit of the array: a stated tolerance on the R²
    # (IncrementalPCA keeps n_concepts directions per batch; the others are
    # online methods whose result depends on the order)
    tol = 0.02 if name == "PCA" else 0.1
    for streamed in (from_list, from_store):
        assert streamed.score(X) > in_memory.score(X) - tol, name


@pytest.mark.parametrize("name", list(STREAMING))
def test_fit_transform_of_a_store_or_a_list_for_every_streaming_class(
    name, small_X, tmp_path
):
    X = _data_for(name, small_X)
    store = write_array_store(X, tmp_path, shard_rows=70)
    make = STREAMING[name]
    C = make(batch_size=64).fit_transform(store)
    fitted = make(batch_size=64).fit(store)
    assert C.shape == (len(X), 3) and C.dtype == np.float32
    np.testing.assert_array_equal(C, fitted.transform(store))
    np.testing.assert_allclose(C, fitted.transform(X), rtol=1e-5, atol=1e-5)
    chunks = np.array_split(X, 4)
    C_list = make(batch_size=64).fit_transform(chunks)
    assert C_list.shape == (len(X), 3)


def test_a_one_shot_iterator_allows_one_pass(small_X):
    chunks = np.array_split(small_X, 3)
    km = KMeansConcepts(3, random_state=0, n_passes=4)
    with pytest.warns(UserWarning, match="one-shot iterator.*n_passes=4"):
        km.fit(c for c in chunks)
    assert km.n_iter_ == 1
    twice = KMeansConcepts(3, random_state=0, n_passes=4).fit(chunks)
    assert twice.n_iter_ == 4
    with pytest.raises(TypeError, match="one-shot iterator can be read once"):
        KMeansConcepts(3, random_state=0).fit_transform(c for c in chunks)


def test_partial_fit_of_an_iterable_is_one_pass_and_continues(small_X):
    chunks = np.array_split(small_X, 5)
    km = KMeansConcepts(3, random_state=0, batch_size=64)
    km.partial_fit(chunks)
    assert km.n_iter_ == 1 and km.estimator_.n_steps_ == 5  # 300 rows / 64
    km.partial_fit(small_X[:40])
    assert km.n_iter_ == 2 and km.estimator_.n_steps_ == 6
    with pytest.raises(ValueError, match="X has 5 features, but KMeansConcepts"):
        km.partial_fit([c[:, :5] for c in chunks])


@pytest.mark.parametrize(
    "data, match",
    [
        (lambda X: (c for c in []), "empty source of batches"),
        (lambda X: [X[:10], X[10:20, :5]], r"Batch 1 of X has shape \(10, 5\)"),
        (lambda X: iter([X[:10], ["a", "b"]]), "Batch 1 of X is a list, not a num"),
        (lambda X: [X[:10], np.full((3, X.shape[1]), np.nan)], "batch 1 of X con"),
        (lambda X: iter([X[0]]), r"Batch 0 of X has shape \(12,\)"),
    ],
    ids=["empty", "width", "non-numeric", "nan", "1-D"],
)
def test_bad_batch_sources_raise_clear_errors(data, match, small_X):
    with pytest.raises(ValueError, match=match):
        PCAConcepts(2).fit(data(small_X))


def test_non_streaming_estimators_refuse_an_iterable_but_read_one(small_X):
    chunks = np.array_split(small_X, 4)
    with pytest.raises(TypeError, match="SVDConcepts cannot learn from a stream"):
        SVDConcepts(3, random_state=0).fit(chunks)
    svd = SVDConcepts(3, random_state=0).fit(small_X)
    np.testing.assert_allclose(svd.transform(chunks), svd.transform(small_X), atol=1e-6)
    assert svd.score(iter(chunks)) == pytest.approx(svd.score(small_X), abs=1e-9)
    # the output budget holds when the number of rows is unknown too
    svd.set_params(max_bytes=100 * 3 * 4)
    with pytest.raises(
        StoreTooLargeError,
        match=re.escape("(at least 300 rows x 3 float32 concepts) needs"),
    ):
        svd.transform(c for c in chunks)


def test_streaming_is_a_class_attribute_not_a_hasattr_probe():
    import ast
    import inspect

    from skconcepts.concepts import ConceptMixin, _base, _streaming

    for cls in (NMFConcepts, SemiNMFConcepts, PCAConcepts, KMeansConcepts):
        assert cls._streams and hasattr(cls, "partial_fit")
    for cls in (SVDConcepts, ICAConcepts, SparsePCAConcepts, ConvexNMFConcepts):
        assert not cls._streams and not hasattr(cls, "partial_fit")
    assert DictionaryLearningConcepts._streams
    assert "_fit_store" not in inspect.getsource(ConceptMixin)
    # one direction only: _base uses _streaming, never the reverse
    tree = ast.parse(inspect.getsource(_streaming))
    imported = {
        node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)
    }
    assert "skconcepts.concepts._base" not in imported
    assert "skconcepts.concepts._streaming" in {
        node.module
        for node in ast.walk(ast.parse(inspect.getsource(_base)))
        if isinstance(node, ast.ImportFrom)
    }


def test_batch_source_shuffles_reproducibly(small_X):
    from skconcepts.concepts._streaming import as_batch_source

    source = as_batch_source(small_X, arrays=True)
    assert (source.kind, source.n_rows, source.n_features) == ("array", 300, 12)
    a = np.concatenate(list(source.iter_batches(64, shuffle=True, seed=1)))
    b = np.concatenate(list(source.iter_batches(64, shuffle=True, seed=1)))
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, small_X)
    np.testing.assert_array_equal(np.sort(a, axis=0), np.sort(small_X, axis=0))
    # an iterable is shuffled within each chunk; a RandomState is drawn from
    chunks = as_batch_source(np.array_split(small_X, 3))
    rs = np.random.RandomState(0)
    first = next(chunks.iter_batches(100, shuffle=True, seed=rs))
    assert sorted(map(tuple, first)) == sorted(map(tuple, small_X[:100]))
    assert as_batch_source(small_X) is None
    assert as_batch_source(small_X.tolist()) is None  # a list of rows is one matrix


def test_first_batch_reads_ahead_without_using_up_the_source(small_X, small_store):
    from skconcepts.concepts._streaming import as_batch_source

    chunks = [small_X[:100], small_X[100:]]
    # an iterable: its first chunk as it came, whatever batch_size
    for data in (chunks, (c for c in chunks), [torch.from_numpy(c) for c in chunks]):
        source = as_batch_source(data)
        first = source.first_batch(64)
        assert first.dtype == np.float32
        np.testing.assert_array_equal(first, small_X[:100])
        # the source still yields every row (a one-shot iterator included)
        np.testing.assert_array_equal(
            np.concatenate(list(source.iter_batches(64))), small_X
        )
    # a store or an array: the first batch_size rows, unshuffled
    for data in (small_store, as_batch_source(small_X, arrays=True)):
        np.testing.assert_array_equal(
            as_batch_source(data).first_batch(64), small_X[:64]
        )


@pytest.mark.parametrize("make", [lambda: SemiNMFConcepts(2, n_passes=3), "sae"])
def test_one_shot_warning_is_written_once_and_names_the_users_line(make, small_X):
    est = (
        TopKSAEConcepts(4, top_k=2, n_passes=3, batch_size=32, random_state=0)
        if make == "sae"
        else make()
    )
    batches = (small_X[i : i + 50] for i in range(0, 200, 50))
    with pytest.warns(UserWarning, match="one-shot iterator") as caught:
        est.fit(batches)  # the warning names this line, whatever the estimator
    one_shot = [w for w in caught if "one-shot" in str(w.message)]
    assert [w.filename for w in one_shot] == [__file__]
