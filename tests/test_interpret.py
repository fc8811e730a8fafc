"""TopKInputs: planted words on MiniLM, streaming = full matrix, every estimator."""

import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.base import clone
from sklearn.pipeline import make_pipeline

import skconcepts.concepts
from skconcepts import NonNegative, PCAConcepts, SplitPointActivations, TopKInputs
from skconcepts.interpret import (
    FRAME_COLUMNS,
    TEXT_BATCH,
    _running_topk,
    _topk_candidates,
    _topk_sorted,
)

N_TEXTS = 24
PLANTED = list(range(0, N_TEXTS, 4))  # texts that get the word "zebra"


@pytest.fixture(scope="module")
def texts(demo_corpus):
    texts = list(demo_corpus[0][:N_TEXTS])
    for i in PLANTED:
        texts[i] = texts[i].rstrip(".") + " zebra."
    return texts


@pytest.fixture(scope="module")
def reader(minilm, texts):
    model, tokenizer = minilm
    return SplitPointActivations(model, tokenizer=tokenizer, split_point=3).fit(texts)


@pytest.fixture(scope="module")
def X(reader, texts):
    return reader.transform(texts)


@pytest.fixture(scope="module")
def pca_pipe(reader, texts):
    return make_pipeline(clone(reader), PCAConcepts(n_concepts=4)).fit(texts)


def reference_topk(C, units, k, unique, concepts=None, T=None):
    """Top-k per concept from the full concept matrix (sort, dedupe, head).

    ``T``: the estimator's tie-break scores (``typicality``), higher first.
    """
    concepts = range(C.shape[1]) if concepts is None else concepts
    frames = []
    for j in concepts:
        tie = np.zeros(len(C)) if T is None else -T[:, j]
        order = np.lexsort((np.arange(len(C)), tie, -C[:, j]))  # value, tie, row
        df = units.iloc[order][["sample", "start", "end", "text"]].copy()
        df["activation"] = C[order, j]
        if unique:
            df = df.drop_duplicates("text", keep="first")
        df = df.head(k)
        df.insert(0, "rank", np.arange(len(df)))
        df.insert(0, "concept", j)
        frames.append(df)
    return pd.concat(frames, ignore_index=True)[FRAME_COLUMNS]


def assert_same_table(got, expected):
    pd.testing.assert_frame_equal(
        got.reset_index(drop=True).astype({"activation": "float64"}),
        expected.reset_index(drop=True).astype({"activation": "float64"}),
        check_dtype=False,
    )


def test_planted_word_is_on_top(pca_pipe, texts):
    top = TopKInputs(k=3).interpret(pca_pipe, texts)
    zebra = [c for c, units in top.items() if next(iter(units)) == "zebra"]
    assert len(zebra) == 1
    frame = TopKInputs(k=5, unique=False, concepts=zebra).interpret(
        pca_pipe, texts, as_frame=True
    )
    assert frame["text"].tolist() == ["zebra"] * 5
    assert set(frame["sample"]) <= set(PLANTED)
    for row in frame.itertuples():
        assert texts[row.sample][row.start : row.end] == "zebra"


@pytest.mark.parametrize("unique", [True, False])
def test_streaming_equals_full_matrix(pca_pipe, texts, unique):
    C = pca_pipe.transform(texts)
    units = pca_pipe[0].units(texts)
    expected = reference_topk(C, units, k=4, unique=unique)
    for batch_size in (1, 5, N_TEXTS):
        got = TopKInputs(k=4, unique=unique, batch_size=batch_size).interpret(
            pca_pipe, texts, as_frame=True
        )
        assert_same_table(got, expected)


def test_precomputed_activations_do_not_rerun_model(pca_pipe, texts, X, monkeypatch):
    expected = TopKInputs(k=3).interpret(pca_pipe, texts, as_frame=True)

    def boom(*args, **kwargs):
        raise AssertionError("the model ran")

    monkeypatch.setattr(pca_pipe[0], "transform", boom)
    monkeypatch.setattr(pca_pipe[0], "_forward", boom)
    for acts in (X, torch.from_numpy(X)):
        got = TopKInputs(k=3, batch_size=7).interpret(
            pca_pipe, texts, activations=acts, as_frame=True
        )
        assert_same_table(got, expected)


def test_activation_store_is_streamed(pca_pipe, texts, tmp_path):
    expected = TopKInputs(k=3, unique=False).interpret(pca_pipe, texts, as_frame=True)
    store = pca_pipe[0].transform_to_store(texts, tmp_path / "store", shard_rows=50)
    assert store.shape[0] > 64  # several batches of 64 rows with batch_size=1
    got = TopKInputs(k=3, unique=False, batch_size=1).interpret(
        pca_pipe, None, activations=store, as_frame=True
    )
    assert_same_table(got, expected)


def test_streams_one_batch_of_texts_at_a_time(pca_pipe, texts, monkeypatch):
    sizes = []
    iter_batches = pca_pipe[0].iter_batches

    def spy(batch, **kwargs):  # one model pass per chunk of batch_size texts
        for chunk in iter_batches(batch, **kwargs):
            sizes.append(len(chunk[0]))
            yield chunk

    monkeypatch.setattr(pca_pipe[0], "iter_batches", spy)
    TopKInputs(k=2, batch_size=10, progress=True).interpret(pca_pipe, texts)
    assert sizes == [10, 10, 4]


def test_default_batch_runs_the_texts_in_one_chunk(pca_pipe, texts, monkeypatch):
    # the extractor sorts a chunk's texts by length: the default chunk is large
    # (1024 texts), so a small corpus is one chunk, as in one transform
    C = pca_pipe.transform(texts)
    sizes = []
    iter_batches = pca_pipe[0].iter_batches

    def spy(batch, **kwargs):
        sizes.append(kwargs["chunk_size"])
        yield from iter_batches(batch, **kwargs)

    monkeypatch.setattr(pca_pipe[0], "iter_batches", spy)
    got = TopKInputs(k=3).interpret(pca_pipe, texts, as_frame=True)
    assert TopKInputs().batch_size == TEXT_BATCH == 1024
    assert sizes == [1024]
    assert_same_table(got, reference_topk(C, pca_pipe[0].units(texts), 3, True))


@pytest.mark.parametrize("unique", [True, False])
@pytest.mark.parametrize("tie_break", [False, True])
def test_vectorised_topk_candidates_equal_the_full_sort(unique, tie_break):
    # partition + one lexsort over all columns gives the same rows, in the same
    # order, as a full stable sort per column: ties, duplicate codes that need
    # deeper rounds, dead columns, NaN
    rng = np.random.default_rng(1)
    for trial in range(60):
        n, m, k = int(rng.integers(1, 400)), int(rng.integers(1, 9)), 1 + trial % 9
        if trial % 3 == 0:  # few distinct values: ties everywhere
            C = rng.integers(0, 3, (n, m)).astype(np.float32)
        else:
            C = rng.standard_normal((n, m)).astype(np.float32)
        C[:, 0] = 0.0  # a dead concept
        if trial % 10 == 9:
            C[rng.integers(0, n), -1] = np.nan
        T = rng.integers(0, 4, (n, m)).astype(np.float32) if tie_break else None
        codes = rng.integers(0, 1 + trial % 12, n)  # many repeated strings
        got = _topk_candidates(C, codes, k, unique, T)
        expected = _topk_sorted(C, codes, k, unique, T)
        np.testing.assert_array_equal(got[0], expected[0])
        np.testing.assert_array_equal(got[1], expected[1])


def test_dict_and_frame_agree(pca_pipe, texts):
    top = TopKInputs(k=4, concepts=[3, 1]).interpret(pca_pipe, texts)
    frame = TopKInputs(k=4, concepts=[3, 1]).interpret(pca_pipe, texts, as_frame=True)
    assert list(top) == [3, 1]
    assert list(frame.columns) == FRAME_COLUMNS
    for concept, units in top.items():
        rows = frame[frame["concept"] == concept]
        assert rows["rank"].tolist() == [0, 1, 2, 3]
        assert list(units) == rows["text"].tolist()
        np.testing.assert_allclose(list(units.values()), rows["activation"])
        assert list(units.values()) == sorted(units.values(), reverse=True)


def _make(name):
    cls = getattr(skconcepts.concepts, name)
    est = cls(n_concepts=3)
    fast = {"random_state": 0, "max_iter": 20, "n_iter": 2, "transform_max_iter": 50}
    params = est.get_params()
    return est.set_params(**{k: v for k, v in fast.items() if k in params})


NINE = [
    "NMFConcepts",
    "SemiNMFConcepts",
    "ConvexNMFConcepts",
    "PCAConcepts",
    "SVDConcepts",
    "ICAConcepts",
    "KMeansConcepts",
    "SparsePCAConcepts",
    "DictionaryLearningConcepts",
]


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
@pytest.mark.parametrize("name", NINE)
def test_every_estimator(name, reader, texts, X):
    est = _make(name)
    steps = [clone(reader), est]
    if name == "NMFConcepts":
        steps.insert(1, NonNegative("relu"))
    pipe = make_pipeline(*steps).fit(texts)
    C = pipe[1:].transform(X)
    units = reader.units(texts)
    # KMeans breaks its ties (hard membership) by closeness to the centroid
    T = est.typicality(X) if hasattr(est, "typicality") else None
    expected = reference_topk(C, units, k=3, unique=True, T=T)
    got = TopKInputs(k=3, batch_size=9).interpret(
        pipe, texts, activations=X, as_frame=True
    )
    assert_same_table(got, expected)
    streamed = TopKInputs(k=3, batch_size=9).interpret(pipe, texts, as_frame=True)
    assert_same_table(streamed, expected)


@pytest.mark.parametrize(
    "granularity", ["token", "all_tokens", "word", "sentence", "sample", "cls"]
)
def test_each_granularity(granularity, reader, texts):
    acts = clone(reader).set_params(granularity=granularity)
    pipe = make_pipeline(acts, PCAConcepts(n_concepts=2)).fit(texts)
    units = acts.units(texts)
    expected = reference_topk(pipe.transform(texts), units, k=3, unique=False)
    got = TopKInputs(k=3, unique=False, batch_size=10).interpret(
        pipe, texts, as_frame=True
    )
    assert_same_table(got, expected)
    if granularity == "sample":  # units are whole texts
        assert all(texts[s] == t for s, t in zip(got["sample"], got["text"]))


def test_running_topk_core_with_ties():
    rng = np.random.default_rng(0)
    n, k = 200, 6
    C = np.maximum(rng.normal(size=(n, 4)), 0).astype(np.float32)  # many ties at 0
    C[:, 3] = 0.0  # a dead concept: all ties
    units = pd.DataFrame(
        {
            "sample": np.arange(n) // 10,
            "start": np.arange(n) % 10,
            "end": np.arange(n) % 10 + 1,
            "text": rng.choice(list("abcdefghij"), size=n),
        }
    )
    for unique in (True, False):
        expected = reference_topk(C, units, k=k, unique=unique, concepts=[3, 0, 2])
        for size in (1, 7, 64, n):
            batches = (
                (C[i : i + size], units.iloc[i : i + size]) for i in range(0, n, size)
            )
            got = _running_topk(
                batches, k=k, unique=unique, concepts=np.array([3, 0, 2])
            )
            expected = expected.sort_values(["concept", "rank"], kind="stable")
            assert_same_table(got, expected)


def test_fewer_units_than_k(pca_pipe):
    got = TopKInputs(k=50, unique=True).interpret(pca_pipe, ["Hi there"], as_frame=True)
    assert got.groupby("concept").size().tolist() == [2, 2, 2, 2]


def test_errors(pca_pipe, texts, X, reader):
    with pytest.raises(ValueError, match=r"concepts=\[0, 9\] holds \[9\].*4 concepts"):
        TopKInputs(concepts=[0, 9]).interpret(pca_pipe, texts)
    with pytest.raises(ValueError, match="must be a non-empty list"):
        TopKInputs(concepts=[]).interpret(pca_pipe, texts)
    with pytest.raises(ValueError, match="activations has 10 rows but the units"):
        TopKInputs().interpret(pca_pipe, texts, activations=X[:10])
    with pytest.raises(ValueError, match="activations must be 2-D"):
        TopKInputs().interpret(pca_pipe, texts, activations=X[0])
    with pytest.raises(TypeError, match="pipeline must be a fitted sklearn Pipeline"):
        TopKInputs().interpret(pca_pipe[-1], texts)
    no_reader = make_pipeline(PCAConcepts(n_concepts=2)).fit(X)
    with pytest.raises(TypeError, match="first step of the pipeline must be a Split"):
        TopKInputs().interpret(no_reader, texts, activations=X)
    with pytest.raises(TypeError, match="wrap it in a list"):
        TopKInputs().interpret(pca_pipe, "one text")
    from sklearn.utils._param_validation import InvalidParameterError

    with pytest.raises(InvalidParameterError, match="'k' parameter"):
        TopKInputs(k=0).interpret(pca_pipe, texts)


@pytest.mark.parametrize("unique", [True, False])
def test_interpret_concepts_equals_interpret(pca_pipe, texts, X, unique):
    reader = TopKInputs(k=4, unique=unique, concepts=[2, 0])
    expected = reader.interpret(pca_pipe, texts, activations=X, as_frame=True)
    C = pca_pipe[-1].transform(X)
    units = pca_pipe[0].units(texts)
    got = reader.interpret_concepts(C, units, as_frame=True)
    assert_same_table(got, expected)
    assert reader.interpret_concepts(torch.from_numpy(C), units) == reader.interpret(
        pca_pipe, texts, activations=X
    )
    with pytest.raises(ValueError, match="concept_activations has 10 rows"):
        reader.interpret_concepts(C[:10], units)
    with pytest.raises(ValueError, match="must be 2-D"):
        reader.interpret_concepts(C[:, 0], units)
    with pytest.raises(ValueError, match=r"holds \[7\]"):
        TopKInputs(concepts=[7]).interpret_concepts(C, units)
