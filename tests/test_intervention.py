"""concept_intervention / concept_ablation_effect: exact reruns, edits, errors."""

import pytest
import torch
from sklearn.pipeline import make_pipeline

from skconcepts import (
    PCAConcepts,
    SplitPointActivations,
    concept_ablation_effect,
    concept_intervention,
    concept_output_gradient,
)
from skconcepts._pipeline import split_pipeline, torch_codec
from skconcepts._split import replace_output
from skconcepts.activations import pad_encodings
from skconcepts.utils._testing import make_tiny_model

TEXTS = [
    "A fine day. We won!",
    "The soup was cold.",
    "Rain again",
    "Music makes the long evening feel short and bright.",
]


def _fit(arch, head, dtype=torch.float32, k=3):
    model, tokenizer = make_tiny_model(arch, head=head)
    model = model.to(dtype)
    acts = SplitPointActivations(model, tokenizer=tokenizer, split_point=1)
    return make_pipeline(acts, PCAConcepts(n_concepts=k)).fit(TEXTS)


@pytest.fixture(scope="module")
def cls_pipe():
    return _fit("bert", "seq_cls")


@pytest.fixture(scope="module")
def lm_pipe():
    return _fit("gpt2", "causal_lm")


def _inputs(pipe, texts):
    acts = pipe[0]
    return pad_encodings(acts.tokenizer_, acts.encode(texts), acts.device_)


def _plain_outputs(pipe, texts):
    """The model's own outputs (class logits / last real token's logits)."""
    inputs = _inputs(pipe, texts)
    with torch.no_grad():
        logits = pipe[0].model_(**inputs).logits
    if logits.ndim == 3:
        last = inputs["attention_mask"].sum(1) - 1
        logits = logits[torch.arange(len(texts)), last]
    return logits


def _manual_edit(pipe, texts, edit_codes):
    """Reference rerun written with replace_output and the public codec only."""
    acts = pipe[0]
    model = acts.model_
    module = model.get_submodule(acts.split_module_name_)
    encode, decode = torch_codec(split_pipeline(pipe), acts.device_, torch.float32)
    inputs = _inputs(pipe, texts)

    def fn(h):
        C = encode(h)
        return decode(edit_codes(C)) + (h - decode(C))

    with torch.no_grad(), replace_output(module, fn):
        logits = model(**inputs).logits
    if logits.ndim == 3:
        last = inputs["attention_mask"].sum(1) - 1
        logits = logits[torch.arange(len(texts)), last]
    return logits, inputs


@pytest.mark.parametrize("which", ["cls", "lm"])
def test_no_edit_gives_the_models_own_outputs(which, cls_pipe, lm_pipe):
    pipe = cls_pipe if which == "cls" else lm_pipe
    res = concept_intervention(pipe, TEXTS, [], batch_size=3)
    expected = _plain_outputs(pipe, TEXTS)
    assert res.before.shape == res.after.shape == expected.shape
    torch.testing.assert_close(res.before, expected, atol=1e-5, rtol=0)
    torch.testing.assert_close(res.after, expected, atol=1e-4, rtol=0)
    # an identity edit (scale by 1) also reproduces them
    res = concept_intervention(
        pipe, TEXTS, {"concepts": [0, 1], "op": "scale", "value": 1.0}
    )
    torch.testing.assert_close(res.after, expected, atol=1e-4, rtol=0)


def test_no_edit_float64_is_exact():
    pipe = _fit("gpt2", "causal_lm", dtype=torch.float64)
    res = concept_intervention(pipe, TEXTS, [])
    torch.testing.assert_close(
        res.after, _plain_outputs(pipe, TEXTS), atol=1e-10, rtol=0
    )


@pytest.mark.parametrize(
    "edit, fn",
    [
        ({"concepts": 1, "op": "zero"}, lambda C: C * torch.tensor([1.0, 0, 1])),
        (
            {"concepts": [0, 2], "op": "scale", "value": 3.0},
            lambda C: C * torch.tensor([3.0, 1, 3]),
        ),
        (
            {"concepts": 2, "op": "add", "value": -1.5},
            lambda C: C + torch.tensor([0, 0, -1.5]),
        ),
        (
            {"concepts": 0, "op": "set", "value": 2.0},
            lambda C: torch.cat([torch.full_like(C[..., :1], 2.0), C[..., 1:]], -1),
        ),
    ],
)
def test_edits_match_a_manual_rerun_on_every_token(edit, fn, lm_pipe):
    # the extractor of a causal LM reads every token (no special tokens here),
    # so an edit without units touches every real token like the manual one
    expected, _ = _manual_edit(lm_pipe, TEXTS, fn)
    res = concept_intervention(lm_pipe, TEXTS, edit)
    torch.testing.assert_close(res.after, expected, atol=1e-5, rtol=0)
    assert not torch.allclose(res.after, res.before, atol=1e-4)


def test_units_edit_only_the_chosen_words(lm_pipe):
    text = ["Rain again today"]
    acts = lm_pipe[0]
    (enc,) = acts.encode(text)
    first_word = torch.tensor([w == 0 for w in enc.word_ids])

    def fn(C):
        C = C.clone()
        C[0, : len(first_word)][first_word, 1] = 0.0
        return C

    expected, _ = _manual_edit(lm_pipe, text, fn)
    res = concept_intervention(
        lm_pipe, text, {"concepts": 1, "op": "zero", "units": [0]}, granularity="word"
    )
    torch.testing.assert_close(res.after, expected, atol=1e-5, rtol=0)
    with pytest.raises(
        ValueError, match=r"edits\[0\]\['units'\] names unit 9.*3 units"
    ):
        concept_intervention(
            lm_pipe,
            text,
            {"concepts": 1, "op": "zero", "units": [9]},
            granularity="word",
        )


def test_mean_ablation_uses_the_mean_of_the_read_tokens(cls_pipe):
    acts = cls_pipe[0]
    # the mean over the rows the extractor reads (special tokens excluded)
    X = acts.transform(TEXTS)
    means = cls_pipe[-1].transform(X).mean(axis=0)
    auto = concept_intervention(cls_pipe, TEXTS, {"concepts": 0, "op": "mean"})
    given = concept_intervention(
        cls_pipe, TEXTS, {"concepts": 0, "op": "mean"}, concept_means=means
    )
    torch.testing.assert_close(auto.after, given.after, atol=1e-4, rtol=0)
    other = concept_intervention(
        cls_pipe, TEXTS, {"concepts": 0, "op": "mean"}, concept_means=means + 50
    )
    assert not torch.allclose(other.after, given.after, atol=1e-5)


def test_targets_and_output_fn(cls_pipe):
    full = concept_intervention(cls_pipe, TEXTS, {"concepts": 0, "op": "zero"})
    one = concept_intervention(
        cls_pipe, TEXTS, {"concepts": 0, "op": "zero"}, targets=[1]
    )
    torch.testing.assert_close(one.after, full.after[:, [1]])
    fn = concept_intervention(
        cls_pipe,
        TEXTS,
        {"concepts": 0, "op": "zero"},
        output_fn=lambda out: out.logits[:, :1] * 2,
    )
    torch.testing.assert_close(fn.after, full.after[:, :1] * 2)
    torch.testing.assert_close(full.change, full.after - full.before)


def test_ablation_effect_equals_one_intervention_per_concept(cls_pipe, lm_pipe):
    effects = concept_ablation_effect(cls_pipe, TEXTS, batch_size=3)
    assert len(effects) == len(TEXTS)
    assert all(e.shape == (2, 3) for e in effects)
    for i in range(3):
        res = concept_intervention(cls_pipe, TEXTS, {"concepts": i, "op": "zero"})
        expected = res.before - res.after  # (n, 2)
        got = torch.stack([e[:, i] for e in effects])
        torch.testing.assert_close(got, expected, atol=1e-5, rtol=0)
    # causal LM: by default the most likely next token, t = 1
    lm = concept_ablation_effect(lm_pipe, TEXTS, concepts=[2, 0])
    assert all(e.shape == (1, 2) for e in lm)


def test_ablation_effect_is_close_to_gradient_x_input_for_small_concepts():
    """Zero ablation ~ first order: the summed gradient x input (float64)."""
    pipe = _fit("bert", "seq_cls", dtype=torch.float64)
    acts = pipe[0]
    effects = concept_ablation_effect(pipe, TEXTS[:2])
    gxi = concept_output_gradient(
        TEXTS[:2],
        extractor=acts,
        concepts=pipe,
        granularity="sample",
        normalization=False,
    )
    for e, g in zip(effects, gxi):
        g = g[:, 0]  # (t, k): one sample unit
        assert e.shape == g.shape
        # random tiny model: nearly linear around the activations
        assert torch.corrcoef(torch.stack([e.flatten(), g.flatten()]))[0, 1] > 0.9


@pytest.mark.parametrize(
    "edits, error, match",
    [
        (
            {"concepts": 7, "op": "zero"},
            ValueError,
            r"edits\[0\]\['concepts'\] names concept 7, but the pipeline has 3",
        ),
        (
            [{"concepts": 0, "op": "zero"}, {"concepts": [1, -1], "op": "zero"}],
            ValueError,
            r"edits\[1\]\['concepts'\] names concept -1",
        ),
        (
            {"concepts": 0, "op": "double"},
            ValueError,
            r"edits\[0\]\['op'\]='double' is not one of",
        ),
        ({"concepts": 0, "op": "scale"}, ValueError, "needs a number as 'value'"),
        ({"concepts": 0, "op": "zero", "value": 1}, ValueError, "takes no 'value'"),
        ({"concept": 0, "op": "zero"}, ValueError, r"unknown keys \['concept'\]"),
        ({"op": "zero"}, ValueError, "has no 'concepts'"),
        ("zero", TypeError, "edits must be a dict or a list of dicts"),
    ],
)
def test_bad_edits(edits, error, match, cls_pipe):
    with pytest.raises(error, match=match):
        concept_intervention(cls_pipe, TEXTS, edits)


def test_bad_arguments(cls_pipe):
    with pytest.raises(
        ValueError, match="concepts names concept 3, but the pipeline has 3"
    ):
        concept_ablation_effect(cls_pipe, TEXTS, concepts=[0, 3])
    with pytest.raises(ValueError, match="ablation='half'"):
        concept_ablation_effect(cls_pipe, TEXTS, ablation="half")
    with pytest.raises(ValueError, match="concept_means has shape"):
        concept_intervention(
            cls_pipe, TEXTS, {"concepts": 0, "op": "mean"}, concept_means=[1.0]
        )
    with pytest.raises(TypeError, match="SplitPointActivations|extractor"):
        concept_intervention(cls_pipe[-1], TEXTS, [])


def test_model_state_is_restored(cls_pipe):
    model = cls_pipe[0].model_
    model.train()
    try:
        concept_ablation_effect(cls_pipe, TEXTS[:1], concepts=0)
        assert model.training
        assert all(p.requires_grad for p in model.parameters())
    finally:
        model.eval()
