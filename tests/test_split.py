"""Split-point resolution and the scoped hooks of skconcepts._split."""

import pytest
import torch

from skconcepts._split import (
    list_block_names,
    replace_output,
    resolve_split_module,
    stop_after,
)
from skconcepts.exceptions import SplitPointError
from skconcepts.utils._testing import make_tiny_model

# (arch, head) -> prefix of the block list
BLOCK_LISTS = {
    ("bert", None): "encoder.layer",
    ("bert", "seq_cls"): "bert.encoder.layer",
    ("gpt2", None): "h",
    ("gpt2", "seq_cls"): "transformer.h",
    ("gpt2", "causal_lm"): "transformer.h",
    ("llama", None): "layers",
    ("llama", "causal_lm"): "model.layers",
    ("qwen2", "seq_cls"): "model.layers",
    ("gpt_neox", None): "layers",
    ("gpt_neox", "causal_lm"): "gpt_neox.layers",
}


@pytest.fixture(scope="module")
def tiny_models():
    cache = {}

    def get(arch, head=None):
        if (arch, head) not in cache:
            cache[arch, head] = make_tiny_model(arch, head)
        return cache[arch, head]

    return get


@pytest.mark.parametrize("arch, head", list(BLOCK_LISTS))
def test_list_block_names(tiny_models, arch, head):
    model, _ = tiny_models(arch, head)
    prefix = BLOCK_LISTS[arch, head]
    assert list_block_names(model) == [f"{prefix}.{i}" for i in range(3)]


def test_list_block_names_minilm(minilm):
    model, _ = minilm
    assert list_block_names(model) == [f"encoder.layer.{i}" for i in range(6)]


@pytest.mark.parametrize("split_point, expected", [(0, 0), (2, 2), (-1, 2), (-3, 0)])
def test_resolve_int_and_negative(tiny_models, split_point, expected):
    model, _ = tiny_models("gpt2", "causal_lm")
    name, module = resolve_split_module(model, split_point)
    assert name == f"transformer.h.{expected}"
    assert module is model.transformer.h[expected]


def test_resolve_dotted_path(tiny_models):
    model, _ = tiny_models("bert", "seq_cls")
    name, module = resolve_split_module(model, "bert.encoder.layer.1.attention")
    assert name == "bert.encoder.layer.1.attention"
    assert module is model.bert.encoder.layer[1].attention


@pytest.mark.parametrize("split_point", [3, -4, 100])
def test_resolve_out_of_range_lists_choices(tiny_models, split_point):
    model, _ = tiny_models("llama")
    with pytest.raises(SplitPointError, match=r"\[-3, 2\].*'layers\.0', 'layers\.1'"):
        resolve_split_module(model, split_point)


def test_resolve_unknown_path_lists_blocks(tiny_models):
    model, _ = tiny_models("gpt_neox", "causal_lm")
    with pytest.raises(ValueError, match=r"'gpt_neox\.layerz\.1'.*gpt_neox\.layers\.0"):
        resolve_split_module(model, "gpt_neox.layerz.1")


@pytest.mark.parametrize("split_point", [True, 1.0, None, [1]])
def test_resolve_wrong_type(tiny_models, split_point):
    model, _ = tiny_models("gpt2")
    with pytest.raises(SplitPointError, match="must be an int"):
        resolve_split_module(model, split_point)


def test_model_without_block_list():
    model = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.ReLU())
    with pytest.raises(SplitPointError, match="dotted module path.*'0', '1'"):
        list_block_names(model)
    assert resolve_split_module(model, "1")[1] is model[1]


def _count_calls(model):
    counts = {}
    handles = []
    for name, module in model.named_modules():
        if name:
            counts[name] = 0

            def hook(mod, args, out, name=name):
                counts[name] += 1

            handles.append(module.register_forward_hook(hook))
    return counts, handles


def test_stop_after_runs_nothing_after_the_split(tiny_models):
    model, tokenizer = tiny_models("gpt2", "causal_lm")
    inputs = tokenizer(["a short text"], return_tensors="pt")
    with torch.inference_mode():
        full = model(**inputs, output_hidden_states=True).hidden_states[2]
    counts, handles = _count_calls(model)
    try:
        with torch.inference_mode(), stop_after(model.transformer.h[1]) as captured:
            model(**inputs)
            pytest.fail("the forward pass was not stopped")  # pragma: no cover
    finally:
        for h in handles:
            h.remove()
    torch.testing.assert_close(captured.output, full, rtol=0, atol=1e-6)
    assert counts["transformer.h.0"] == counts["transformer.h.1"] == 1
    assert counts["transformer.h.2"] == counts["transformer.ln_f"] == 0
    assert counts["lm_head"] == 0


def test_stop_after_takes_element_0_and_removes_hook():
    class TupleOut(torch.nn.Module):
        def forward(self, x):
            return x * 2, "extra"

    net = torch.nn.Sequential(TupleOut())
    with stop_after(net[0]) as captured:
        net(torch.ones(1, 2))
    assert torch.equal(captured.output, torch.full((1, 2), 2.0))
    assert not net[0]._forward_hooks


def test_stop_after_removes_hook_on_error():
    lin = torch.nn.Linear(2, 2)
    with pytest.raises(RuntimeError, match="boom"):
        with stop_after(lin):
            raise RuntimeError("boom")
    assert not lin._forward_hooks


def test_stop_after_module_not_run():
    a, b = torch.nn.Linear(2, 2), torch.nn.Linear(2, 2)
    with stop_after(b) as captured:
        a(torch.ones(1, 2))
    assert captured.output is None


def test_replace_output_keeps_tuple_tail_and_changes_result(tiny_models):
    model, tokenizer = tiny_models("llama", "causal_lm")
    inputs = tokenizer(["a short text"], return_tensors="pt")
    block = model.model.layers[1]
    with torch.inference_mode():
        base = model(**inputs).logits
        with replace_output(block, lambda h: h):
            same = model(**inputs).logits
        with replace_output(block, lambda h: h + 1.0):
            changed = model(**inputs).logits
    torch.testing.assert_close(same, base)
    assert not torch.allclose(changed, base)
    assert not block._forward_hooks

    class TupleOut(torch.nn.Module):
        def forward(self, x):
            return x, "extra"

    mod = TupleOut()
    with replace_output(mod, lambda h: h * 3):
        out = mod(torch.ones(2))
    assert torch.equal(out[0], torch.full((2,), 3.0)) and out[1] == "extra"
    assert not mod._forward_hooks


def test_replace_output_gradient_flows(tiny_models):
    model, tokenizer = tiny_models("bert", "seq_cls")
    inputs = tokenizer(["a short text"], return_tensors="pt")
    block = model.bert.encoder.layer[0]
    delta = torch.zeros(1, inputs["input_ids"].shape[1], 32, requires_grad=True)
    with replace_output(block, lambda h: h + delta):
        logit = model(**inputs).logits[0, 1]
    (grad,) = torch.autograd.grad(logit, delta)
    assert grad.shape == delta.shape and grad.abs().sum() > 0


def test_hooks_ignore_other_threads():
    import threading

    lin = torch.nn.Linear(2, 2)
    results = {}

    def other():
        results["out"] = lin(torch.ones(1, 2))

    with replace_output(lin, lambda h: h * 0), stop_after(lin) as captured:
        thread = threading.Thread(target=other)
        thread.start()
        thread.join()
    assert captured.output is None  # the other thread's pass was not captured
    assert results["out"].abs().sum() > 0  # nor replaced
