"""concept_output_gradient: exact rerun, finite differences, shapes, invariances."""

import warnings

import numpy as np
import pytest
import torch
from sklearn.base import clone
from sklearn.pipeline import make_pipeline

from skconcepts import (
    ActivationScaler,
    PCAConcepts,
    SplitPointActivations,
    concept_output_gradient,
)
from skconcepts._pipeline import split_pipeline, torch_codec
from skconcepts._split import replace_output
from skconcepts.activations import pad_encodings
from skconcepts.attribution import _batch_gradients
from skconcepts.utils._testing import make_tiny_model

TEXTS = [
    "A fine day. We won!",
    "The soup was cold.",
    "Rain again",
    "Music makes the long evening feel short and bright.",
]


def _fit(arch, head, *, dtype=torch.float32, scaler=True, k=3, split_point=1):
    model, tokenizer = make_tiny_model(arch, head=head)
    model = model.to(dtype)
    steps = [SplitPointActivations(model, tokenizer=tokenizer, split_point=split_point)]
    if scaler:
        steps.append(ActivationScaler("standard"))
    steps.append(PCAConcepts(n_concepts=k))
    return make_pipeline(*steps).fit(TEXTS)


@pytest.fixture(scope="module")
def cls_pipe():
    """Tiny BERT classifier (2 classes), standard scaling, 3 PCA concepts."""
    return _fit("bert", "seq_cls")


@pytest.fixture(scope="module")
def lm_pipe():
    """Tiny GPT-2 causal LM, 3 PCA concepts."""
    return _fit("gpt2", "causal_lm", scaler=False)


def _codec(pipe):
    acts = pipe[0]
    dtype = next(acts.model_.parameters()).dtype
    return torch_codec(split_pipeline(pipe), acts.device_, dtype)


def _inputs(pipe, texts):
    acts = pipe[0]
    return pad_encodings(acts.tokenizer_, acts.encode(texts), acts.device_)


@pytest.mark.parametrize("which", ["cls", "lm"])
def test_rerun_with_residual_reproduces_outputs(which, cls_pipe, lm_pipe):
    pipe = cls_pipe if which == "cls" else lm_pipe
    acts = pipe[0]
    model = acts.model_
    module = model.get_submodule(acts.split_module_name_)
    inputs = _inputs(pipe, TEXTS)
    encode, decode = _codec(pipe)
    with torch.no_grad():
        logits = model(**inputs).logits
    if which == "lm":
        last = inputs["attention_mask"].sum(1) - 1
        logits = logits[torch.arange(len(TEXTS)), last]
        targets = np.tile([3, 50, 7], (len(TEXTS), 1))
        expected = logits[:, [3, 50, 7]]
    else:
        targets, expected = None, logits
    _, _, rerun = _batch_gradients(model, module, inputs, encode, decode, targets, None)
    torch.testing.assert_close(rerun, expected, atol=1e-4, rtol=0)
    # the residual matters: decoding alone (3 lossy concepts) changes the outputs
    with torch.no_grad(), replace_output(module, lambda h: decode(encode(h))):
        lossy = model(**inputs).logits
    assert not torch.allclose(lossy, model(**inputs).logits, atol=1e-3)


def _finite_differences(pipe, text, targets, eps=1e-6):
    """d Y / d C by central differences, C of every token of ``text`` (float64)."""
    acts = pipe[0]
    model = acts.model_
    module = model.get_submodule(acts.split_module_name_)
    encode, decode = _codec(pipe)
    inputs = _inputs(pipe, [text])
    captured = {}

    def keep(h):
        captured["h"] = h
        return h

    with torch.no_grad(), replace_output(module, keep):
        model(**inputs)
    h = captured["h"][0]  # (L, d)
    codes = encode(h)  # (L, k)
    residual = h - decode(codes)

    def outputs(C):
        with (
            torch.no_grad(),
            replace_output(module, lambda _: (decode(C) + residual)[None]),
        ):
            logits = model(**inputs).logits[0]
        if logits.ndim == 2:  # causal LM: last position
            logits = logits[-1]
        return logits[targets]  # (t,)

    grads = torch.zeros(len(targets), *codes.shape, dtype=torch.float64)
    for tok in range(codes.shape[0]):
        for j in range(codes.shape[1]):
            up, down = codes.clone(), codes.clone()
            up[tok, j] += eps
            down[tok, j] -= eps
            grads[:, tok, j] = (outputs(up) - outputs(down)) / (2 * eps)
    return grads, codes


@pytest.mark.parametrize(
    "arch, head, targets, scaler",
    [("bert", "seq_cls", [0, 1], True), ("gpt2", "causal_lm", [4, 11, 30], False)],
)
def test_gradients_match_finite_differences(arch, head, targets, scaler):
    pipe = _fit(arch, head, dtype=torch.float64, scaler=scaler)
    text = TEXTS[0]
    expected, codes = _finite_differences(pipe, text, targets)
    kwargs = dict(
        extractor=pipe[0],
        concepts=pipe,
        targets=targets,
        granularity="all_tokens",
        normalization=False,
    )
    (grad,) = concept_output_gradient([text], concepts_x_gradients=False, **kwargs)
    assert grad.dtype == torch.float64
    assert grad.shape == expected.shape
    rel = torch.linalg.norm(grad - expected) / torch.linalg.norm(expected)
    assert rel < 1e-3
    # gradient x input multiplies by the concept activations of each token
    (gxi,) = concept_output_gradient([text], concepts_x_gradients=True, **kwargs)
    torch.testing.assert_close(gxi, grad * codes)


GRANULARITIES = ["token", "all_tokens", "word", "sentence", "sample", "cls"]


@pytest.mark.parametrize("granularity", GRANULARITIES)
def test_shapes_follow_units(granularity, cls_pipe):
    acts = clone(cls_pipe[0]).set_params(granularity=granularity).fit()
    units = acts.units(TEXTS)
    attr = concept_output_gradient(
        TEXTS, extractor=acts, concepts=cls_pipe, progress=True
    )
    assert len(attr) == len(TEXTS)
    for i, a in enumerate(attr):
        assert a.shape == (2, int((units["sample"] == i).sum()), 3)
        assert a.dtype == torch.float32
    if granularity in ("sample", "cls"):
        assert all(a.shape[1] == 1 for a in attr)


def test_granularity_overrides_activations_and_sums_tokens(cls_pipe):
    kw = dict(extractor=cls_pipe[0], concepts=cls_pipe, normalization=False)
    tokens = concept_output_gradient(TEXTS, granularity="token", **kw)
    words = concept_output_gradient(TEXTS, granularity="word", **kw)
    sample = concept_output_gradient(TEXTS, granularity="sample", **kw)
    for t, w, s in zip(tokens, words, sample):
        torch.testing.assert_close(w.sum(1), t.sum(1), atol=1e-6, rtol=1e-5)
        torch.testing.assert_close(s[:, 0], t.sum(1), atol=1e-6, rtol=1e-5)
    means = concept_output_gradient(
        TEXTS, granularity="sample", aggregation="mean", **kw
    )
    for t, m in zip(tokens, means):
        torch.testing.assert_close(m[:, 0], t.mean(1), atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("x_input", [True, False])
def test_normalization_sums_to_one(x_input, lm_pipe):
    attr = concept_output_gradient(
        TEXTS,
        extractor=lm_pipe[0],
        concepts=lm_pipe[-1],
        targets=[1, 2, 3, 4],
        concepts_x_gradients=x_input,
    )
    for a in attr:
        assert a.shape[0] == 4
        torch.testing.assert_close(
            a.abs().sum(dim=(1, 2)), torch.ones(4), atol=1e-5, rtol=0
        )
    raw = concept_output_gradient(
        TEXTS,
        extractor=lm_pipe[0],
        concepts=lm_pipe[-1],
        targets=[1, 2, 3, 4],
        concepts_x_gradients=x_input,
        normalization=False,
    )
    for a, r in zip(attr, raw):
        scale = r.abs().sum(dim=(1, 2), keepdim=True)
        torch.testing.assert_close(a, r / scale)


@pytest.mark.parametrize("which", ["cls", "lm"])
def test_batch_size_does_not_change_results(which, cls_pipe, lm_pipe):
    pipe = cls_pipe if which == "cls" else lm_pipe
    kw = dict(extractor=pipe[0], concepts=pipe, targets=[0, 1], normalization=False)
    one = concept_output_gradient(TEXTS, batch_size=1, **kw)
    many = concept_output_gradient(TEXTS, batch_size=3, **kw)
    for a, b in zip(one, many):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4)


def test_targets_forms(lm_pipe):
    kw = dict(extractor=lm_pipe[0], concepts=lm_pipe, normalization=False)
    shared = concept_output_gradient(TEXTS, targets=[5, 9], **kw)
    per_input = concept_output_gradient(
        TEXTS, targets=np.array([[5, 9], [9, 5], [5, 9], [5, 9]]), **kw
    )
    torch.testing.assert_close(per_input[0], shared[0])
    torch.testing.assert_close(per_input[1], shared[1].flip(0))
    single = concept_output_gradient(TEXTS, targets=9, **kw)
    torch.testing.assert_close(single[2], shared[2][1:])
    # default for a causal LM: the most likely next token of each text
    acts = lm_pipe[0]
    inputs = _inputs(lm_pipe, TEXTS)
    with torch.no_grad():
        logits = acts.model_(**inputs).logits
    last = inputs["attention_mask"].sum(1) - 1
    top = logits[torch.arange(len(TEXTS)), last].argmax(1)
    default = concept_output_gradient(TEXTS, **kw)
    explicit = concept_output_gradient(TEXTS, targets=top[:, None].numpy(), **kw)
    for a, b in zip(default, explicit):
        assert a.shape[0] == 1
        torch.testing.assert_close(a, b)


def test_output_fn_for_bare_encoder():
    pipe = _fit("bert", None, scaler=False)
    kw = dict(extractor=pipe[0], concepts=pipe, granularity="word")
    with pytest.raises(ValueError, match="have no logits.*pass output_fn"):
        concept_output_gradient(TEXTS, **kw)
    attr = concept_output_gradient(
        TEXTS, output_fn=lambda out: out.last_hidden_state[:, 0, :5], **kw
    )
    assert attr[1].shape == (5, 5, 3)  # "The soup was cold." has 5 words, "." included
    picked = concept_output_gradient(
        TEXTS, output_fn=lambda out: out.last_hidden_state[:, 0, :5], targets=[4], **kw
    )
    torch.testing.assert_close(picked[1], attr[1][4:])


def test_model_state_is_restored(cls_pipe):
    model = cls_pipe[0].model_
    model.train()
    model.classifier.weight.requires_grad_(False)
    before = {n: p.requires_grad for n, p in model.named_parameters()}
    try:
        concept_output_gradient(TEXTS[:2], extractor=cls_pipe[0], concepts=cls_pipe)
        assert model.training and all(m.training for m in model.modules())
        assert {n: p.requires_grad for n, p in model.named_parameters()} == before
        assert all(p.grad is None for p in model.parameters())
    finally:
        model.eval()
        model.classifier.weight.requires_grad_(True)


def test_cpu_runs_one_backward_per_target_on_one_forward(cls_pipe, monkeypatch):
    """On the CPU: one forward per batch, then one backward pass per target."""
    calls, forwards = [], []
    grad = torch.autograd.grad

    def spy(outputs, inputs, grad_outputs=None, **kwargs):
        calls.append((tuple(outputs.shape), kwargs.get("retain_graph")))
        return grad(outputs, inputs, grad_outputs, **kwargs)

    monkeypatch.setattr(torch.autograd, "grad", spy)
    model = cls_pipe[0].model_
    handle = model.register_forward_hook(lambda *a: forwards.append(1))
    try:
        attr = concept_output_gradient(
            TEXTS, extractor=cls_pipe[0], concepts=cls_pipe, batch_size=4
        )
    finally:
        handle.remove()
    # 4 texts in one batch, 2 targets: the graph is kept for the second
    assert forwards == [1] and calls == [((), True), ((), False)]
    monkeypatch.setattr(torch.autograd, "grad", grad)
    monkeypatch.setattr("skconcepts.attribution._vmapped", lambda device: True)
    vmapped = concept_output_gradient(
        TEXTS, extractor=cls_pipe[0], concepts=cls_pipe, batch_size=4
    )
    for a, b in zip(attr, vmapped):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def test_uses_vectorised_backward(cls_pipe, monkeypatch):
    """Where vmapped (accelerators; forced here): one backward call for all."""
    monkeypatch.setattr("skconcepts.attribution._vmapped", lambda device: True)
    calls = []
    grad = torch.autograd.grad

    def spy(outputs, inputs, grad_outputs=None, **kwargs):
        calls.append(tuple(grad_outputs.shape))
        return grad(outputs, inputs, grad_outputs, **kwargs)

    monkeypatch.setattr(torch.autograd, "grad", spy)
    concept_output_gradient(
        TEXTS, extractor=cls_pipe[0], concepts=cls_pipe, batch_size=4
    )
    # one backward call for both targets and all texts, traced once by vmap
    # (inside vmap the one-hot grad_outputs of one target show as (B, t))
    assert calls == [(4, 2)]


def test_vectorised_backward_has_no_per_target_fallback(lm_pipe, monkeypatch):
    """Every backward op of the rerun batches over the targets in vmap."""
    monkeypatch.setattr("skconcepts.attribution._vmapped", lambda device: True)
    torch._C._debug_only_display_vmap_fallback_warnings(True)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            concept_output_gradient(
                TEXTS, extractor=lm_pipe[0], concepts=lm_pipe, targets=[1, 2, 3]
            )
    finally:
        torch._C._debug_only_display_vmap_fallback_warnings(False)
    slow = [str(w.message) for w in caught if "performance drop" in str(w.message)]
    assert slow == []


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        ({"targets": [0, 7]}, ValueError, r"targets hold \[0, 7\].*\[0, 1\]"),
        ({"targets": [[0], [1]]}, ValueError, "targets has 2 rows but there are 4"),
        ({"targets": [0.5]}, ValueError, "must be an int"),
        ({"granularity": "paragraph"}, ValueError, "granularity='paragraph'"),
        ({"aggregation": "median"}, ValueError, "aggregation='median'"),
        ({"batch_size": 0}, ValueError, "batch_size=0"),
        ({"output_fn": 3}, TypeError, "output_fn must be a callable"),
    ],
)
def test_errors(kwargs, error, match, cls_pipe):
    with pytest.raises(error, match=match):
        concept_output_gradient(
            TEXTS, extractor=cls_pipe[0], concepts=cls_pipe, **kwargs
        )


def test_rejects_steps_without_torch_inverse(cls_pipe):
    from sklearn.preprocessing import StandardScaler

    X = cls_pipe[0].transform(TEXTS)
    pipe = make_pipeline(StandardScaler(), PCAConcepts(n_concepts=2)).fit(X)
    with pytest.raises(TypeError, match="StandardScaler has no decoder_torch"):
        concept_output_gradient(TEXTS, extractor=cls_pipe[0], concepts=pipe)
    with pytest.raises(TypeError, match="Expected a concept estimator"):
        concept_output_gradient(
            TEXTS, extractor=cls_pipe[0], concepts=StandardScaler().fit(X)
        )


@pytest.mark.gpu
def test_cuda_matches_cpu_and_model_goes_back(cls_pipe):
    kw = dict(extractor=cls_pipe[0], concepts=cls_pipe, normalization=False)
    cpu = concept_output_gradient(TEXTS, **kw)
    gpu = concept_output_gradient(TEXTS, device="cuda", **kw)
    for a, b in zip(cpu, gpu):
        assert b.device.type == "cpu"
        torch.testing.assert_close(a, b, atol=1e-4, rtol=1e-3)
    assert next(cls_pipe[0].model_.parameters()).device.type == "cpu"


def test_activations_keyword_is_a_deprecated_alias_of_extractor(cls_pipe):
    kw = dict(concepts=cls_pipe, granularity="word", normalization=False)
    new = concept_output_gradient(TEXTS[:2], extractor=cls_pipe[0], **kw)
    with pytest.warns(FutureWarning, match=r"activations=.*extractor="):
        old = concept_output_gradient(TEXTS[:2], activations=cls_pipe[0], **kw)
    for a, b in zip(new, old):
        assert torch.equal(a, b)
    with pytest.raises(TypeError, match="once, as extractor="):
        concept_output_gradient(
            TEXTS[:2], extractor=cls_pipe[0], activations=cls_pipe[0], **kw
        )
    with pytest.raises(TypeError, match="missing the keyword argument 'extractor'"):
        concept_output_gradient(TEXTS[:2], **kw)


def test_causal_lm_logits_from_the_last_positions_only(lm_pipe, monkeypatch):
    """The LM head runs on the last real token only in the backward graph."""
    import skconcepts.attribution as attribution

    kw = dict(
        extractor=lm_pipe[0],
        concepts=lm_pipe,
        targets=[3, 50, 7],
        normalization=False,
        concepts_x_gradients=False,
        batch_size=3,
    )
    used = []
    real = attribution.last_token_logits

    def spy(*args):
        out = real(*args)
        used.append(out is not None)
        return out

    monkeypatch.setattr(attribution, "last_token_logits", spy)
    short = concept_output_gradient(TEXTS, **kw)
    default = concept_output_gradient(TEXTS, **{**kw, "targets": None})
    assert used and all(used)
    monkeypatch.setattr(attribution, "last_token_logits", lambda *a: None)
    full = concept_output_gradient(TEXTS, **kw)
    full_default = concept_output_gradient(TEXTS, **{**kw, "targets": None})
    for a, b in zip(short + default, full + full_default):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-5)
