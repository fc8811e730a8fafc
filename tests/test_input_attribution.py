"""input_concept_gradient: finite differences, integrated gradients, shapes, errors."""

import pytest
import torch
from sklearn.base import clone
from sklearn.pipeline import make_pipeline

from skconcepts import (
    ActivationScaler,
    KMeansConcepts,
    PCAConcepts,
    SplitPointActivations,
    input_concept_gradient,
)
from skconcepts._pipeline import encode, split_pipeline
from skconcepts._split import replace_output, stop_after
from skconcepts.activations import pad_encodings
from skconcepts.utils._testing import make_tiny_model

TEXTS = [
    "A fine day. We won!",
    "The soup was cold.",
    "Rain again",
    "Music makes the long evening feel short and bright.",
]


def _fit(arch="bert", dtype=torch.float32, estimator=None, scaler=True):
    model, tokenizer = make_tiny_model(arch, n_layers=3)
    model = model.to(dtype)
    steps = [SplitPointActivations(model, tokenizer=tokenizer, split_point=1)]
    if scaler:
        steps.append(ActivationScaler("standard"))
    steps.append(estimator or PCAConcepts(n_concepts=3))
    return make_pipeline(*steps).fit(TEXTS)


@pytest.fixture(scope="module")
def pipe64():
    return _fit(dtype=torch.float64)


def _activation(pipe, text, emb):
    """A_i: concept activations summed over the read tokens, at embeddings emb."""
    acts = pipe[0]
    model = acts.model_
    module = model.get_submodule(acts.split_module_name_)
    (enc,) = acts.encode([text])
    inputs = pad_encodings(acts.tokenizer_, [enc], acts.device_)
    read = torch.tensor([not s for s in enc.special_tokens_mask])
    with (
        torch.no_grad(),
        replace_output(model.get_input_embeddings(), lambda _: emb[None]),
        stop_after(module) as captured,
    ):
        model(**inputs)
    C = encode(split_pipeline(pipe), captured.output[0])  # (L, k) float32 numpy
    return torch.as_tensor(C, dtype=torch.float64)[read].sum(0)  # (k,)


def _embeddings(pipe, text):
    acts = pipe[0]
    (enc,) = acts.encode([text])
    ids = torch.tensor(enc.ids)
    with torch.no_grad():
        return acts.model_.get_input_embeddings()(ids)  # (L, e)


def test_gradient_x_input_matches_finite_differences(pipe64):
    text = TEXTS[1]
    emb = _embeddings(pipe64, text)
    (got,) = input_concept_gradient(pipe64, [text], granularity="all_tokens")
    assert got.dtype == torch.float64
    assert got.shape == (3, emb.shape[0])
    # the encoder (float32 transforms) is linear: finite differences of its
    # composition with the float64 model, direction = each token's embedding
    eps = 1e-3
    expected = torch.zeros(3, emb.shape[0], dtype=torch.float64)
    for tok in range(emb.shape[0]):
        up, down = emb.clone(), emb.clone()
        up[tok] *= 1 + eps
        down[tok] *= 1 - eps
        # d/ds A(E with E[tok] scaled by s) at s=1 is grad . E[tok]
        expected[:, tok] = (
            _activation(pipe64, text, up) - _activation(pipe64, text, down)
        ) / (2 * eps)
    rel = torch.linalg.norm(got - expected) / torch.linalg.norm(expected)
    assert rel < 1e-2


def test_integrated_gradients_sum_to_the_activation_difference(pipe64):
    text = TEXTS[0]
    emb = _embeddings(pipe64, text)
    (ig,) = input_concept_gradient(pipe64, [text], granularity="all_tokens", n_steps=64)
    total = _activation(pipe64, text, emb) - _activation(
        pipe64, text, torch.zeros_like(emb)
    )
    torch.testing.assert_close(ig.sum(1), total, rtol=2e-2, atol=1e-3)
    # one step is gradient x input at half the embeddings
    (one,) = input_concept_gradient(pipe64, [text], granularity="all_tokens", n_steps=1)
    (gxi,) = input_concept_gradient(pipe64, [text], granularity="all_tokens")
    assert not torch.allclose(one, gxi)


@pytest.mark.parametrize(
    "granularity", ["token", "all_tokens", "word", "sentence", "sample"]
)
def test_shapes_follow_units_and_sum(granularity, pipe64):
    acts = clone(pipe64[0]).set_params(granularity=granularity).fit()
    units = acts.units(TEXTS)
    attr = input_concept_gradient(
        pipe64, TEXTS, granularity=granularity, concepts=[2, 0]
    )
    tokens = input_concept_gradient(pipe64, TEXTS, granularity="token", concepts=[2, 0])
    for n, a in enumerate(attr):
        assert a.shape == (2, int((units["sample"] == n).sum()))
        if granularity != "all_tokens":  # units cover the same read tokens
            torch.testing.assert_close(a.sum(1), tokens[n].sum(1))


def test_batch_size_and_concept_subset_do_not_change_results(pipe64):
    full = input_concept_gradient(pipe64, TEXTS, batch_size=4)
    parts = input_concept_gradient(pipe64, TEXTS, batch_size=1, concepts=1)
    for a, b in zip(full, parts):
        torch.testing.assert_close(a[[1]], b)


def test_normalization(pipe64):
    attr = input_concept_gradient(pipe64, TEXTS[:2], normalization=True)
    for a in attr:
        torch.testing.assert_close(a.abs().sum(1), torch.ones(3, dtype=a.dtype))


def test_causal_lm_works():
    pipe = _fit("gpt2", scaler=False)
    attr = input_concept_gradient(pipe, TEXTS, granularity="word", n_steps=2)
    acts = clone(pipe[0]).set_params(granularity="word").fit()
    units = acts.units(TEXTS)
    assert [tuple(a.shape) for a in attr] == [
        (3, int((units["sample"] == n).sum())) for n in range(len(TEXTS))
    ]
    assert all(bool(torch.isfinite(a).all()) for a in attr)


def test_errors(pipe64):
    with pytest.raises(
        ValueError, match="concepts names concept 5, but the pipeline has 3"
    ):
        input_concept_gradient(pipe64, TEXTS, concepts=[0, 5])
    with pytest.raises(ValueError, match="n_steps=0"):
        input_concept_gradient(pipe64, TEXTS, n_steps=0)
    with pytest.raises(ValueError, match="granularity='page'"):
        input_concept_gradient(pipe64, TEXTS, granularity="page")
    kmeans = _fit(estimator=KMeansConcepts(n_concepts=2, random_state=0))
    with pytest.raises(ValueError, match="affine function of the activations"):
        input_concept_gradient(kmeans, TEXTS)


def test_viz_highlights_the_units(pipe64):
    from skconcepts.viz import input_attribution_html

    attr = input_concept_gradient(pipe64, TEXTS[:2], granularity="word")
    page = input_attribution_html(pipe64, TEXTS[:2], 1, attributions=attr)
    assert page.count('<div class="skc-line">') == 2
    # the largest |value| of each text gets the full color
    assert page.count("rgba(") >= 2 and "0.85)" in page
    assert page == input_attribution_html(pipe64, TEXTS[:2], 1)
    with pytest.raises(ValueError, match="attributions has 1 items but there are 2"):
        input_attribution_html(pipe64, TEXTS[:2], 1, attributions=attr[:1])
