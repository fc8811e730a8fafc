"""SplitPointActivations on tiny random GPT-2, Llama, Qwen2, GPT-NeoX and BERT models.

Every row is checked against a full forward pass with
``output_hidden_states=True`` on each text alone (no padding), whatever the
tokenizer's padding side.
"""

import numpy as np
import pytest
import torch

from skconcepts import SplitPointActivations
from skconcepts._granularity import split_sentences
from skconcepts.exceptions import TruncationWarning
from skconcepts.utils._testing import make_tiny_model

K = 1  # split point (of 3 blocks)
TEXTS = [
    "The soup was delicious. The bread was stale!",
    "Rain again",
    "",
    "Quick brown foxes jump over lazy dogs near the river bank today.",
    "Rain again",
    "Is it good? Yes.\nVery good",
]
MODELS = [
    ("gpt2", "causal_lm"),
    ("llama", "causal_lm"),
    ("qwen2", None),
    ("gpt_neox", "seq_cls"),
    ("bert", "seq_cls"),
]

_MODELS = {}
_HIDDEN = {}


def tiny(arch, head, padding_side):
    key = arch, head, padding_side
    if key not in _MODELS:
        _MODELS[key] = make_tiny_model(arch, head, padding_side=padding_side)
    return _MODELS[key]


def _first_char(text, start, end):
    piece = text[start:end]
    return start + len(piece) - len(piece.lstrip()) if piece.strip() else start


def reference(model, tokenizer, texts, granularity, aggregation):
    rows = []
    for text in texts:
        enc = tokenizer(
            text,
            return_offsets_mapping=True,
            return_special_tokens_mask=True,
            return_tensors="pt",
        )
        special = enc.pop("special_tokens_mask")[0].bool().numpy()
        offsets = enc.pop("offset_mapping")[0].tolist()
        word_ids = enc.word_ids()
        if enc["input_ids"].shape[1] == 0:  # no token at all
            if granularity == "sample":
                rows.append(np.zeros(model.config.hidden_size, np.float32))
            continue
        if (id(model), text) not in _HIDDEN:
            with torch.inference_mode():
                out = model(**enc, output_hidden_states=True)
            _HIDDEN[id(model), text] = out.hidden_states[K + 1][0].numpy()
        h = _HIDDEN[id(model), text]
        real = np.flatnonzero(~special)
        if granularity == "cls":
            rows.append(h[0])
            continue
        if granularity == "token":
            rows.extend(h[real])
            continue
        if granularity == "sample":
            groups = [real] if len(real) else [np.arange(len(h))]
        elif granularity == "word":
            words = np.array([word_ids[i] for i in real])
            groups = [real[words == w] for w in dict.fromkeys(words.tolist())]
        else:
            starts = [s for s, _ in split_sentences(text)]
            sid = np.array(
                [
                    np.searchsorted(starts, _first_char(text, *offsets[i]), "right") - 1
                    for i in real
                ]
            ).clip(min=0)
            groups = [real[sid == s] for s in dict.fromkeys(sid.tolist())]
        for g in groups:
            x = h[g]
            rows.append(x.mean(0) if aggregation == "mean" else x.max(0))
    return np.stack(rows) if rows else np.zeros((0, model.config.hidden_size))


@pytest.mark.parametrize("padding_side", ["right", "left"])
@pytest.mark.parametrize("arch, head", MODELS)
def test_rows_equal_unpadded_hidden_states(arch, head, padding_side):
    model, tokenizer = tiny(arch, head, padding_side)
    granularities = ["token", "word", "sentence", "sample"]
    if arch in ("bert", "llama"):  # a leading [CLS] / BOS
        granularities.append("cls")
    for granularity in granularities:
        aggregation = "max" if granularity == "word" else "mean"
        ref = reference(model, tokenizer, TEXTS, granularity, aggregation)
        for batch_size in (1, 7) if granularity == "token" else (7,):
            acts = SplitPointActivations(
                model,
                tokenizer=tokenizer,
                split_point=K,
                granularity=granularity,
                aggregation=aggregation,
                batch_size=batch_size,
                cache=False,
            )
            X = acts.fit_transform(TEXTS)
            assert X.shape == ref.shape, (granularity, batch_size)
            np.testing.assert_allclose(X, ref, rtol=0, atol=1e-5)
            units = acts.units(TEXTS)
            assert len(units) == len(X)
            assert all(
                TEXTS[r.sample][r.start : r.end] == r.text for r in units.itertuples()
            )
    assert tokenizer.padding_side == padding_side  # left as it was


@pytest.mark.parametrize(
    "arch, head",
    [("gpt2", "causal_lm"), ("llama", "causal_lm"), ("gpt_neox", "seq_cls")],
)
def test_nothing_after_the_split_runs(arch, head):
    model, tokenizer = tiny(arch, head, "left")
    blocks = [m for n, m in model.named_modules() if n.endswith(("h", "layers"))][0]
    calls = [0] * len(blocks)
    handles = [
        b.register_forward_hook(lambda m, a, o, i=i: calls.__setitem__(i, calls[i] + 1))
        for i, b in enumerate(blocks)
    ]
    top = [0]
    head_module = model.get_output_embeddings() or model.score
    handles.append(
        head_module.register_forward_hook(lambda *a: top.__setitem__(0, top[0] + 1))
    )
    try:
        SplitPointActivations(
            model, tokenizer=tokenizer, split_point=0, batch_size=2, cache=False
        ).fit_transform(TEXTS[:4])
    finally:
        for h in handles:
            h.remove()
    assert calls == [2, 0, 0] and top == [0]


def test_gpt_neox_resolution_and_negative_split():
    model, tokenizer = tiny("gpt_neox", "seq_cls", "right")
    acts = SplitPointActivations(model, tokenizer=tokenizer, split_point=-2).fit()
    assert acts.split_module_name_ == "gpt_neox.layers.1"


def test_cls_without_leading_special_token_raises():
    model, tokenizer = tiny("gpt2", None, "right")
    acts = SplitPointActivations(model, tokenizer=tokenizer, granularity="cls")
    with pytest.raises(
        ValueError, match="granularity='cls' needs a tokenizer that adds"
    ):
        acts.fit()


def test_gpt2_empty_texts_only():
    model, tokenizer = tiny("gpt2", None, "right")
    assert tokenizer.pad_token is None and tokenizer("")["input_ids"] == []
    sample = SplitPointActivations(model, tokenizer=tokenizer, granularity="sample")
    X = sample.fit_transform(["", ""])
    assert X.shape == (2, 32) and not X.any()
    token = SplitPointActivations(model, tokenizer=tokenizer)
    assert token.fit_transform([""]).shape == (0, 32)
    assert list(token.get_feature_names_out()[:1]) == ["hidden0"]


def test_model_on_other_dtype_is_copied_not_modified():
    model, tokenizer = make_tiny_model("llama")
    acts = SplitPointActivations(model, tokenizer=tokenizer, model_dtype="bfloat16")
    X = acts.fit_transform(TEXTS)
    assert acts.model_ is not model and acts.model_.dtype == torch.bfloat16
    assert model.dtype == torch.float32
    ref = SplitPointActivations(model, tokenizer=tokenizer).fit_transform(TEXTS)
    np.testing.assert_allclose(X, ref, atol=0.1 * np.abs(ref).max())


def test_train_mode_is_restored():
    model, tokenizer = make_tiny_model("gpt2")
    model.train()
    acts = SplitPointActivations(model, tokenizer=tokenizer, granularity="sample")
    X1 = acts.fit_transform(TEXTS[:2])
    X2 = acts.set_params(cache=False).fit_transform(TEXTS[:2])
    np.testing.assert_array_equal(X1, X2)  # dropout off during the pass
    assert model.training and all(m.training for m in model.modules())


def test_max_length_falls_back_to_model_positions():
    model, tokenizer = make_tiny_model("gpt2")
    tokenizer.model_max_length = int(1e30)  # "no limit", as some tokenizers say
    acts = SplitPointActivations(model, tokenizer=tokenizer, granularity="sample")
    with pytest.warns(TruncationWarning, match="1 of 2 texts.*max_length=128"):
        X = acts.fit_transform(["word " * 300, "short"])
    assert acts.max_length_ == model.config.max_position_embeddings == 128
    assert X.shape == (2, 32) and np.isfinite(X).all()
