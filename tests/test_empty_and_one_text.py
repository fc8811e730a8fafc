"""One text and empty texts through pipelines and TopKInputs (issue 12, 3 and 12).

A one-text input gives 2-D one-row outputs (sklearn's SparsePCA squeezed them to
1-D); an empty text contributes no unit, on the model path of
``TopKInputs.interpret`` as on its ``activations=`` path, and a pipeline given
only texts without units says so instead of failing inside sklearn.
"""

import numpy as np
import pytest
import torch
from sklearn.pipeline import make_pipeline

from skconcepts import PooledConcepts, SplitPointActivations, TopKInputs
from skconcepts.concepts import PCAConcepts, SparsePCAConcepts

TEXTS = ["a good film", "a dull plot", "great acting here", "bad"]


def _pipe(granularity, estimator):
    extractor = SplitPointActivations(split_point=0, granularity=granularity)
    return make_pipeline(extractor, estimator).fit(TEXTS)


@pytest.fixture(scope="module")
def spca_sample():
    return _pipe("sample", SparsePCAConcepts(n_concepts=2, max_iter=5, random_state=0))


@pytest.fixture(scope="module")
def spca_word():
    return _pipe("word", SparsePCAConcepts(n_concepts=2, max_iter=5, random_state=0))


@pytest.fixture(scope="module")
def pca_word():
    return _pipe("word", PCAConcepts(n_concepts=2))


def test_one_text_sample_level_pipeline_is_2d(spca_sample):
    C = spca_sample.transform(["a good film"])
    assert C.shape == (1, 2)
    np.testing.assert_allclose(C, spca_sample.transform(TEXTS)[:1], atol=1e-5)
    X = spca_sample[0].transform(["a good film"])
    assert spca_sample[-1].inverse_transform(C).shape == X.shape
    with pytest.warns(UserWarning, match="R² of one row"):
        assert np.isfinite(spca_sample[-1].score(X))
    Ct = spca_sample[-1].transform(torch.from_numpy(X))
    assert tuple(Ct.shape) == (1, 2)


@pytest.mark.parametrize("fixture", ["spca_sample", "spca_word"])
def test_topk_batch_size_one(fixture, request):
    pipe = request.getfixturevalue(fixture)
    top = TopKInputs(k=2, batch_size=1).interpret(pipe, TEXTS, as_frame=True)
    ref = TopKInputs(k=2, batch_size=len(TEXTS)).interpret(pipe, TEXTS, as_frame=True)
    assert top[["concept", "rank", "sample", "text"]].equals(
        ref[["concept", "rank", "sample", "text"]]
    )
    np.testing.assert_allclose(top["activation"], ref["activation"], atol=1e-5)


@pytest.mark.parametrize("batch_size", [1, 2, 8])
@pytest.mark.parametrize(
    "texts",
    [["a good film", ""], ["", "a good film", "  "], ["", ""], [" "]],
    ids=["last", "first", "only-empty", "whitespace"],
)
def test_empty_texts_agree_on_both_paths(pca_word, texts, batch_size):
    top = TopKInputs(k=2, batch_size=batch_size)
    from_model = top.interpret(pca_word, texts, as_frame=True)
    acts = pca_word[0].transform(texts)
    from_acts = top.interpret(pca_word, texts, activations=acts, as_frame=True)
    assert from_model[["concept", "rank", "sample", "text"]].equals(
        from_acts[["concept", "rank", "sample", "text"]]
    )
    assert "" not in set(from_model["text"])  # an empty text has no unit
    if not any(t.strip() for t in texts):
        assert len(from_model) == 0
        assert top.interpret(pca_word, texts) == {0: {}, 1: {}}


def test_unit_level_pipeline_on_empty_texts_only_says_why(pca_word):
    assert pca_word.transform(["", "a good film"]).shape == (3, 2)
    for X in ([""], ["", "  "]):
        with pytest.raises(
            ValueError,
            match=r"X has no rows \(shape \(0, 384\)\).*"
            r"empty or whitespace-only.*granularity='sample'",
        ):
            pca_word.transform(X)
    with pytest.raises(ValueError, match="X has no rows"):
        pca_word[-1].score(np.zeros((0, 384), np.float32))
    with pytest.raises(ValueError, match="X has no rows"):
        pca_word[-1].transform(torch.zeros(0, 384))


def test_sample_level_empty_text_is_a_defined_row():
    pipe = _pipe("sample", PCAConcepts(n_concepts=2))
    C = pipe.transform([""])
    assert C.shape == (1, 2) and np.isfinite(C).all()
    np.testing.assert_allclose(pipe.transform(["a good film", ""])[1:], C, atol=1e-5)
    top = TopKInputs(k=5).interpret(pipe, ["", "a good film"], as_frame=True)
    acts = pipe[0].transform(["", "a good film"])
    ref = TopKInputs(k=5).interpret(
        pipe, ["", "a good film"], activations=acts, as_frame=True
    )
    assert top[["concept", "sample", "text"]].equals(ref[["concept", "sample", "text"]])
    assert "" in set(top["text"])


def test_pooled_concepts_give_zeros_for_empty_texts(pca_word):
    pooled = PooledConcepts(pca_word[0], PCAConcepts(n_concepts=2)).fit(TEXTS)
    out = pooled.transform(["", "a good film"])
    assert out.shape == (2, 2) and not out[0].any() and out[1].any()


def test_fit_on_empty_texts_only_says_why():
    extractor = SplitPointActivations(split_point=0, granularity="word")
    pipe = make_pipeline(extractor, PCAConcepts(n_concepts=2))
    with pytest.raises(ValueError, match=r"X has no rows.*empty or whitespace-only"):
        pipe.fit(["", " "])
    with pytest.raises(ValueError, match=r"X has no rows.*empty or whitespace-only"):
        PooledConcepts(extractor, PCAConcepts(n_concepts=2)).fit(["", " "])
