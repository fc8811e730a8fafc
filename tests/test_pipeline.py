"""The pipeline seam: split a fitted pipeline, encode and decode through it."""

import numpy as np
import pytest
import torch
from sklearn.exceptions import NotFittedError
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import FunctionTransformer, StandardScaler

from skconcepts import (
    ActivationScaler,
    NonNegative,
    PCAConcepts,
    SemiNMFConcepts,
    SplitPointActivations,
)
from skconcepts._pipeline import (
    PipelineParts,
    concept_input,
    decode,
    encode,
    split_pipeline,
    torch_codec,
)
from skconcepts.utils._testing import make_tiny_model

TEXTS = ["A fine day. We won!", "The soup was cold.", "Rain again and again."]


@pytest.fixture(scope="module")
def X():
    rng = np.random.default_rng(0)
    return (rng.normal(size=(60, 8)) * np.arange(1, 9)).astype(np.float32)


@pytest.fixture(scope="module")
def text_pipe():
    model, tokenizer = make_tiny_model("bert", head="seq_cls")
    return make_pipeline(
        SplitPointActivations(model, tokenizer=tokenizer, split_point=1),
        ActivationScaler("standard"),
        PCAConcepts(n_concepts=3),
    ).fit(TEXTS)


@pytest.fixture(scope="module")
def pipes(X):
    """name -> (fitted pipeline, preprocessing step types, concept step index)."""
    y = (X[:, 0] > 0).astype(int)
    return {
        "bare": (PCAConcepts(n_concepts=4).fit(X), [], None),
        "concepts only": (make_pipeline(PCAConcepts(n_concepts=4)).fit(X), [], 0),
        "scaler": (
            make_pipeline(ActivationScaler("standard"), PCAConcepts(4)).fit(X),
            [ActivationScaler],
            1,
        ),
        "two steps": (
            make_pipeline(
                ActivationScaler("norm"),
                NonNegative("split"),
                SemiNMFConcepts(n_concepts=4, random_state=0),
            ).fit(X),
            [ActivationScaler, NonNegative],
            2,
        ),
        "passthrough, classifier after": (
            Pipeline(
                [
                    ("scale", ActivationScaler()),
                    ("skip", "passthrough"),
                    ("pca", PCAConcepts(4)),
                    ("clf", LogisticRegression()),
                ]
            ).fit(X, y),
            [ActivationScaler],
            2,
        ),
    }


CASES = [
    "bare",
    "concepts only",
    "scaler",
    "two steps",
    "passthrough, classifier after",
]


def _upto(pipe, index):
    """The estimator up to and including its concept step."""
    return pipe if index is None else pipe[: index + 1]


@pytest.mark.parametrize("case", CASES)
def test_split_without_extractor(pipes, case):
    pipe, kinds, index = pipes[case]
    parts = split_pipeline(pipe)
    assert isinstance(parts, PipelineParts)
    assert parts.extractor is None
    assert [type(s) for s in parts.preprocess] == kinds
    assert parts.concepts is (pipe if index is None else pipe[index])


def test_split_with_extractor(text_pipe):
    parts = split_pipeline(text_pipe, require_extractor=True)
    assert parts.extractor is text_pipe[0]
    assert parts.preprocess == [text_pipe[1]]
    assert parts.concepts is text_pipe[2]
    assert split_pipeline(text_pipe) == parts
    # the whole pipeline's input is texts: concept_input runs the extractor too
    np.testing.assert_array_equal(
        concept_input(parts, TEXTS), text_pipe[:-1].transform(TEXTS)
    )
    X = text_pipe[0].transform(TEXTS)
    np.testing.assert_array_equal(encode(parts, X), text_pipe.transform(TEXTS))


def test_last_concept_estimator_wins(X):
    pipe = make_pipeline(PCAConcepts(6), ActivationScaler(), PCAConcepts(2)).fit(X)
    parts = split_pipeline(pipe)
    assert parts.concepts is pipe[2]
    assert [type(s) for s in parts.preprocess] == [PCAConcepts, ActivationScaler]


@pytest.mark.parametrize("case", CASES)
def test_encode_decode_match_the_pipeline(X, pipes, case):
    pipe, _, index = pipes[case]
    parts = split_pipeline(pipe)
    upto = _upto(pipe, index)
    C = encode(parts, X)
    assert C.dtype == np.float32 and C.shape == (60, 4)
    np.testing.assert_array_equal(C, upto.transform(X))
    before = X if not index else upto[:-1].transform(X)
    np.testing.assert_array_equal(concept_input(parts, X), before)
    # decode = the pipeline's own inverse_transform up to the concepts
    np.testing.assert_array_equal(decode(parts, C), upto.inverse_transform(C))


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_torch_codec_matches_numpy_and_is_differentiable(X, pipes, case, dtype):
    parts = split_pipeline(pipes[case][0])
    encode_fn, decoder = torch_codec(parts, "cpu", dtype)
    assert isinstance(decoder, torch.nn.Module)
    h = torch.from_numpy(X).to(dtype).reshape(6, 10, 8)  # (..., d) works
    C = encode_fn(h)
    assert C.shape == (6, 10, 4) and C.dtype == dtype and not C.requires_grad
    np.testing.assert_array_equal(
        C.reshape(60, 4).numpy(), encode(parts, X).astype(C.numpy().dtype)
    )
    C = C.detach().requires_grad_(True)
    X_hat = decoder(C)
    assert X_hat.shape == (6, 10, 8) and X_hat.dtype == dtype
    np.testing.assert_allclose(
        X_hat.detach().reshape(60, 8).numpy(),
        decode(parts, encode(parts, X)),
        rtol=1e-4,
        atol=1e-4,
    )
    w = torch.randn(6, 10, 8, dtype=dtype)
    (X_hat * w).sum().backward()
    assert C.grad is not None and C.grad.abs().sum() > 0
    if dtype == torch.float64:
        torch.autograd.gradcheck(decoder, (C[:1, :2].detach().requires_grad_(),))


def test_bare_estimator_is_no_reader_pipeline(X):
    est = PCAConcepts(2).fit(X)
    assert split_pipeline(est) == (None, [], est)
    with pytest.raises(TypeError, match="pipeline must be a fitted sklearn Pipeline"):
        split_pipeline(est, require_extractor=True)
    with pytest.raises(TypeError, match="first step of the pipeline must be a Split"):
        split_pipeline(make_pipeline(PCAConcepts(2)).fit(X), require_extractor=True)


def test_errors(X):
    with pytest.raises(TypeError, match="Expected a concept estimator.*StandardScaler"):
        split_pipeline(StandardScaler().fit(X))
    with pytest.raises(TypeError, match=r"steps \['standardscaler'\] has no concept"):
        split_pipeline(make_pipeline(StandardScaler()).fit(X))
    with pytest.raises(NotFittedError):
        split_pipeline(PCAConcepts(2))
    with pytest.raises(NotFittedError):
        split_pipeline(make_pipeline(ActivationScaler(), PCAConcepts(2)))
    # steps that cannot be inverted: encoding works, decoding says which step
    pipe = make_pipeline(FunctionTransformer(np.tanh), PCAConcepts(2)).fit(X)
    parts = split_pipeline(pipe)
    C = encode(parts, X)
    with pytest.raises(TypeError, match="FunctionTransformer has no decoder_torch"):
        torch_codec(parts)
    pipe = make_pipeline(StandardScaler(), PCAConcepts(2)).fit(X)
    parts = split_pipeline(pipe)
    np.testing.assert_allclose(
        decode(parts, C), pipe.inverse_transform(C), rtol=1e-5, atol=1e-5
    )
    with pytest.raises(TypeError, match="StandardScaler has no decoder_torch"):
        torch_codec(parts)


def test_decode_names_a_step_without_inverse(X):
    class Forward:  # a transformer with no inverse
        def fit(self, X, y=None):
            return self

        def transform(self, X):
            return X

    pipe = make_pipeline(Forward(), PCAConcepts(2)).fit(X)
    parts = split_pipeline(pipe)
    with pytest.raises(TypeError, match="Forward has no inverse_transform"):
        decode(parts, encode(parts, X))
