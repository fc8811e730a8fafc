"""The model rerun seam: exact identity rerun, hooks always removed, splicing."""

import numpy as np
import pytest
import torch
from sklearn.pipeline import make_pipeline

from skconcepts import ActivationScaler, PCAConcepts, SplitPointActivations
from skconcepts._pipeline import split_pipeline, torch_codec
from skconcepts._rerun import (
    ConceptSplice,
    check_targets,
    frozen_model,
    model_dtype,
    model_inputs,
    rerun,
    select_outputs,
)
from skconcepts.utils._testing import make_tiny_model

TEXTS = ["A fine day. We won!", "The soup was cold.", "Rain again"]


def _setup(arch, head):
    model, tokenizer = make_tiny_model(arch, head=head)
    pipe = make_pipeline(
        SplitPointActivations(model, tokenizer=tokenizer, split_point=1),
        ActivationScaler("standard"),
        PCAConcepts(n_concepts=3),
    ).fit(TEXTS)
    extractor = pipe[0]
    module = model.get_submodule(extractor.split_module_name_)
    _, inputs = model_inputs(extractor, TEXTS, torch.device("cpu"))
    return pipe, model.eval(), module, inputs


@pytest.fixture(scope="module", params=[("bert", "seq_cls"), ("gpt2", "causal_lm")])
def setup(request):
    return _setup(*request.param)


def _no_hooks(module):
    return len(module._forward_hooks) == 0


def test_identity_rerun_reproduces_outputs_exactly(setup):
    _, model, module, inputs = setup
    with torch.no_grad():
        expected = model(**inputs, use_cache=False).logits
        got = rerun(model, module, inputs, lambda h: h, use_cache=False).logits
    assert torch.equal(got, expected)
    assert _no_hooks(module)


def test_replacement_changes_outputs_and_is_scoped(setup):
    _, model, module, inputs = setup
    seen = []

    def shift(h):
        seen.append(h.shape)
        return h + 1.0

    with torch.no_grad():
        shifted = rerun(model, module, inputs, shift).logits
        plain = model(**inputs).logits
    assert len(seen) == 1 and seen[0][:2] == inputs["input_ids"].shape
    assert not torch.allclose(shifted, plain)
    assert _no_hooks(module)


def test_hook_removed_when_forward_raises(setup):
    _, model, module, inputs = setup

    def boom(h):
        raise KeyError("replacement failed")

    with pytest.raises(KeyError, match="replacement failed"):
        rerun(model, module, inputs, boom)
    assert _no_hooks(module)
    # an error of the model itself, downstream of the replaced output
    with pytest.raises(RuntimeError):
        rerun(model, module, inputs, lambda h: h[..., :-1])
    assert _no_hooks(module)
    with torch.no_grad():  # the model still runs normally afterwards
        assert torch.equal(
            rerun(model, module, inputs, lambda h: h).logits, model(**inputs).logits
        )


def test_module_off_the_path_raises():
    net = torch.nn.Module()
    net.used = torch.nn.Linear(2, 2)
    net.unused = torch.nn.Linear(2, 2)
    net.forward = lambda x: net.used(x)
    with pytest.raises(RuntimeError, match="split module did not run"):
        rerun(net, net.unused, torch.ones(1, 2), lambda h: h)
    assert _no_hooks(net.unused)


def test_concept_splice(setup):
    pipe, model, module, inputs = setup
    encode, decode = torch_codec(split_pipeline(pipe), "cpu", model_dtype(model))
    with torch.no_grad():
        expected = model(**inputs).logits
    splice = ConceptSplice(encode, decode)
    assert splice.codes is None
    with torch.enable_grad():
        out = rerun(model, module, inputs, splice).logits
    torch.testing.assert_close(out, expected, atol=1e-4, rtol=0)
    codes = splice.codes  # (B, T, k): a leaf that the outputs depend on
    assert codes.is_leaf and codes.requires_grad and codes.shape[-1] == 3
    (grad,) = torch.autograd.grad(out.sum(), codes)
    assert grad.abs().sum() > 0
    # without residual: the bare reconstruction is spliced in
    bare = ConceptSplice(encode, decode, residual=False)
    with torch.no_grad():
        lossy = rerun(model, module, inputs, bare).logits
        by_hand = rerun(model, module, inputs, lambda h: decode(encode(h))).logits
    assert bare.residual_ is None
    torch.testing.assert_close(lossy, by_hand)
    assert not torch.allclose(lossy, expected, atol=1e-3)
    # an edit of the concepts: decode(edit(C)) + residual
    edit = ConceptSplice(encode, decode, edit=lambda c: c * 0)
    with torch.no_grad():
        edited = rerun(model, module, inputs, edit).logits
        zero = decode(torch.zeros_like(edit.codes))
        by_hand = rerun(model, module, inputs, lambda h: zero + edit.residual_).logits
    torch.testing.assert_close(edited, by_hand)


def test_frozen_model_restores_state_even_on_error():
    net = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.Dropout())
    net.train()
    net[0].bias.requires_grad_(False)
    with pytest.raises(ValueError):
        with frozen_model(net, torch.device("cpu")):
            assert not net.training and not net[1].training
            assert not any(p.requires_grad for p in net.parameters())
            raise ValueError
    assert net.training and net[1].training
    assert net[0].weight.requires_grad and not net[0].bias.requires_grad
    assert model_dtype(net) == torch.float32
    assert model_dtype(torch.nn.ReLU()) == torch.float32
    assert model_dtype(net.double()) == torch.float64


def test_model_inputs_rejects_an_empty_text():
    model, tokenizer = make_tiny_model("gpt2")
    extractor = SplitPointActivations(model, tokenizer=tokenizer, split_point=1).fit()
    encodings, inputs = model_inputs(extractor, TEXTS, torch.device("cpu"))
    assert len(encodings) == 3
    assert inputs["input_ids"].shape == (3, max(len(e.ids) for e in encodings))
    with pytest.raises(ValueError, match=r"inputs\[6\] = '' has no tokens"):
        model_inputs(extractor, ["Hi", ""], torch.device("cpu"), start=5)


def test_check_targets_and_select_outputs():
    assert check_targets(None, 3) is None
    np.testing.assert_array_equal(check_targets(2, 2), [[2], [2]])
    np.testing.assert_array_equal(check_targets([[1, 0], [0, 1]], 2), [[1, 0], [0, 1]])
    with pytest.raises(ValueError, match="must be an int"):
        check_targets([0.5], 2)
    with pytest.raises(ValueError, match="targets has 1 rows but there are 2"):
        check_targets([[0]], 2)

    class Out:
        logits = torch.arange(6.0).reshape(2, 3)

    torch.testing.assert_close(select_outputs(Out(), {}), Out.logits)
    picked = select_outputs(Out(), {}, targets=np.array([[2], [0]]))
    torch.testing.assert_close(picked, torch.tensor([[2.0], [3.0]]))
    with pytest.raises(ValueError, match=r"targets hold \[5\]"):
        select_outputs(Out(), {}, targets=np.array([[5], [5]]))
    with pytest.raises(ValueError, match="pass output_fn"):
        select_outputs(object(), {})
