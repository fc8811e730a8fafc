"""Tests of skconcepts.pooling.PooledConcepts (texts -> pooled unit concepts)."""

import pickle
import subprocess
import sys

import joblib
import numpy as np
import pandas as pd
import pytest
from sklearn.base import clone
from sklearn.exceptions import NotFittedError
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GridSearchCV, StratifiedKFold
from sklearn.pipeline import Pipeline
from sklearn.utils._param_validation import InvalidParameterError
from sklearn.utils.estimator_checks import (
    check_do_not_raise_errors_in_init_or_set_params,
    check_estimator_cloneable,
    check_estimator_repr,
    check_get_params_invariance,
    check_mixin_order,
    check_no_attributes_set_in_init,
    check_set_params,
)

import skconcepts
from skconcepts import (
    NMFConcepts,
    NonNegative,
    PCAConcepts,
    PooledConcepts,
    SplitPointActivations,
)
from skconcepts import activations as activations_module


@pytest.fixture(scope="module")
def texts(demo_corpus):
    return demo_corpus[0][:24]


@pytest.fixture
def words(minilm):
    """A word-level extractor with its own (empty) cache."""
    model, tokenizer = minilm
    return SplitPointActivations(
        model, tokenizer=tokenizer, split_point=1, granularity="word"
    )


def _reference(words, estimator, texts, pooling):
    """Pool by hand: groupby the text of every unit row."""
    extractor = clone(words).fit()
    X = extractor.transform(texts)
    C = estimator.transform(X)
    sample = extractor.units(texts)["sample"].to_numpy()
    pooled = pd.DataFrame(C).astype(np.float64).groupby(sample).agg(pooling)
    return pooled.reindex(range(len(texts)), fill_value=0.0).to_numpy()


def _model_of(words):
    """The model a fitted clone of ``words`` runs (shared with every clone)."""
    return clone(words).fit().model_


def test_top_level_name():
    assert skconcepts.PooledConcepts is PooledConcepts
    assert PooledConcepts.__module__ == "skconcepts.pooling"


@pytest.mark.parametrize("pooling", ["max", "mean", "sum"])
def test_transform_pools_the_unit_concepts_of_each_text(words, texts, pooling):
    pooled = PooledConcepts(words, PCAConcepts(n_concepts=3), pooling=pooling)
    out = pooled.fit_transform(texts)
    assert out.shape == (len(texts), 3) and out.dtype == np.float32
    # the concepts are fitted on the unit rows of the texts
    X = clone(words).fit().transform(texts)
    assert pooled.estimator_.n_features_in_ == X.shape[1]
    assert pooled.estimator_.components_.shape == (3, X.shape[1])
    expected = _reference(words, pooled.estimator_, texts, pooling)
    np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-5)
    assert pooled.get_feature_names_out().tolist() == [f"concept{i}" for i in range(3)]
    # fit works on a clone of the extractor, which shares the loaded model
    assert pooled.extractor_ is not words and not hasattr(words, "model_")
    assert pooled.extractor_.model_ is _model_of(words)


def test_empty_texts_get_zeros_and_order_is_kept(words, texts):
    pooled = PooledConcepts(words, PCAConcepts(n_concepts=2)).fit(texts)
    batch = [texts[3], "", texts[0], texts[3]]
    out = pooled.transform(batch)
    np.testing.assert_array_equal(out[1], 0)
    np.testing.assert_array_equal(out[0], out[3])
    np.testing.assert_allclose(out[[0, 2]], pooled.transform([texts[3], texts[0]]))


def test_chunks_of_the_corpus_give_the_same_rows(words, texts, monkeypatch):
    pooled = PooledConcepts(words, PCAConcepts(n_concepts=2), pooling="mean")
    whole = pooled.fit(texts).transform(texts)
    monkeypatch.setattr(activations_module, "_CHUNK_TEXTS", 5)  # 5 chunks
    np.testing.assert_allclose(pooled.transform(texts), whole, rtol=1e-6, atol=1e-6)


def test_bfloat16_activations_reach_the_estimator_as_a_tensor(words, texts):
    bf16 = clone(words).set_params(dtype="bfloat16")
    pooled = PooledConcepts(bf16, PCAConcepts(n_concepts=2)).fit(texts[:8])
    out = pooled.transform(texts[:8])
    assert out.dtype == np.float32 and out.shape == (8, 2)
    assert np.isfinite(out).all()


def test_estimator_may_be_a_pipeline_of_preprocessing_and_concepts(words, texts):
    concepts = Pipeline(
        [
            ("nonnegative", NonNegative("split")),
            ("concepts", NMFConcepts(n_concepts=2, max_iter=20, random_state=0)),
        ]
    )
    pooled = PooledConcepts(words, concepts).fit(texts)
    out = pooled.transform(texts)
    assert out.shape == (len(texts), 2) and (out >= 0).all()
    assert pooled.get_feature_names_out().tolist() == ["concept0", "concept1"]
    expected = _reference(words, pooled.estimator_, texts, "max")
    np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-6)


def test_sklearn_api(words, texts):
    pooled = PooledConcepts(words, PCAConcepts(n_concepts=2), pooling="mean")
    params = pooled.get_params()
    assert params["pooling"] == "mean" and params["estimator__n_concepts"] == 2
    assert params["extractor__granularity"] == "word"
    twin = clone(pooled)
    assert twin.estimator is not pooled.estimator
    assert twin.extractor is not pooled.extractor
    assert twin.extractor._shared_state() is words._shared_state()  # one cache
    twin.set_params(estimator__n_concepts=3)
    assert pooled.estimator.n_concepts == 2
    assert twin.fit(texts).transform(texts).shape == (len(texts), 3)
    assert not hasattr(pooled, "estimator_")  # fit works on twin, not pooled

    frame = pooled.set_output(transform="pandas").fit_transform(texts)
    assert isinstance(frame, pd.DataFrame)
    assert frame.columns.tolist() == ["concept0", "concept1"]
    assert len(frame) == len(texts)

    with pytest.raises(InvalidParameterError, match="pooling"):
        PooledConcepts(words, PCAConcepts(), pooling="median").fit(texts)
    with pytest.raises(InvalidParameterError, match="estimator"):
        PooledConcepts(words, "pca").fit(texts)
    with pytest.raises(NotFittedError):
        PooledConcepts(words, PCAConcepts()).transform(texts)
    with pytest.raises(TypeError, match="list of strings"):
        PooledConcepts(words, PCAConcepts()).fit("one text")


@pytest.mark.parametrize(
    "check",
    [
        check_estimator_cloneable,
        check_estimator_repr,
        check_no_attributes_set_in_init,
        check_get_params_invariance,
        check_set_params,
        check_do_not_raise_errors_in_init_or_set_params,
        check_mixin_order,
    ],
)
def test_data_free_sklearn_checks(words, check):
    check("PooledConcepts", PooledConcepts(words, PCAConcepts(n_concepts=2)))


def test_tags(words):
    tags = PooledConcepts(words, PCAConcepts()).__sklearn_tags__()
    assert tags.input_tags.string and not tags.input_tags.two_d_array
    assert tags.requires_fit and tags.transformer_tags is not None


class _ForwardCounter:
    """Counts the texts that go through the model's embeddings."""

    def __init__(self, model):
        self.n_texts = 0
        self.handle = model.embeddings.register_forward_hook(self)

    def __call__(self, module, args, output):
        self.n_texts += output.shape[0]


def test_grid_search_runs_the_model_once_per_text(minilm, demo_corpus):
    model, _ = minilm
    texts, labels, _ = demo_corpus
    texts = texts[::10] + texts[::20]  # 32 distinct texts, 16 repeated
    labels = labels[::10] + labels[::20]
    words = SplitPointActivations(
        model, tokenizer=minilm[1], split_point=1, granularity="word"
    )
    search = GridSearchCV(
        Pipeline(
            [
                ("concepts", PooledConcepts(words, PCAConcepts(random_state=0))),
                ("clf", LogisticRegression(max_iter=500)),
            ]
        ),
        {"concepts__estimator__n_concepts": [2, 3, 4]},
        cv=StratifiedKFold(n_splits=3, shuffle=True, random_state=0),
    )
    counter = _ForwardCounter(model)
    try:
        search.fit(np.asarray(texts, dtype=object), labels)
        search.predict(texts[:5])
    finally:
        counter.handle.remove()
    assert counter.n_texts == len(set(texts)) == 32
    assert search.best_params_["concepts__estimator__n_concepts"] in (2, 3, 4)
    best = search.best_estimator_["concepts"]
    k = search.best_params_["concepts__estimator__n_concepts"]
    assert best.transform(texts[:3]).shape == (3, k)


_LOAD_AND_TRANSFORM = """
import pickle, sys
import joblib, numpy as np
folder = sys.argv[1]
texts = [line for line in open(folder + "/texts.txt").read().split("\\n") if line]
expected = np.load(folder + "/expected.npy")
with open(folder + "/pooled.pkl", "rb") as f:
    from_pickle = pickle.load(f)
from_joblib = joblib.load(folder + "/pooled.joblib")
for pooled in (from_pickle, from_joblib):
    out = pooled.transform(texts)
    assert out.dtype == np.float32, out.dtype
    np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-6)
print("ok", type(from_joblib).__module__, out.shape)
"""


def test_round_trip_through_pickle_and_joblib_in_a_fresh_process(texts, tmp_path):
    words = SplitPointActivations(split_point=1, granularity="word")  # embedded
    pooled = PooledConcepts(words, PCAConcepts(n_concepts=3), pooling="mean")
    pooled.fit(texts)
    new_texts = texts[:6] + ["A text it never saw."]
    np.save(tmp_path / "expected.npy", pooled.transform(new_texts))
    (tmp_path / "texts.txt").write_text("\n".join(new_texts) + "\n")
    with open(tmp_path / "pooled.pkl", "wb") as f:
        pickle.dump(pooled, f)
    joblib.dump(pooled, tmp_path / "pooled.joblib")
    proc = subprocess.run(
        [sys.executable, "-c", _LOAD_AND_TRANSFORM, str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["ok", "skconcepts.pooling", "(7,", "3)"]
