"""downstream_fidelity: the model rerun with the split output replaced by its
reconstruction, against hand-computed reruns with plain forward hooks."""

import numpy as np
import pytest
import torch
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import make_pipeline

from skconcepts import PCAConcepts, SplitPointActivations
from skconcepts.metrics import downstream_fidelity, make_fidelity_scorer
from skconcepts.utils._testing import make_tiny_model

TEXTS = [
    "the cat sat on the mat and looked at the dog in the garden",
    "a dog ran in the park after the ball",
    "we won the match in the last minute",
    "rain again today, and tomorrow too",
    "what a lovely film that was",
]


@pytest.fixture(scope="module")
def gpt2():
    return make_tiny_model("gpt2", head="causal_lm", n_layers=3)


@pytest.fixture(scope="module")
def bert_cls():
    return make_tiny_model("bert", head="seq_cls", n_layers=3)


def _pipe(model, tokenizer, n_concepts, **kw):
    return make_pipeline(
        SplitPointActivations(
            model, tokenizer=tokenizer, split_point=1, max_length=64, **kw
        ),
        PCAConcepts(n_concepts=n_concepts),
    ).fit(TEXTS)


def _hooked_logits(model, module, ids, replace):
    """Logits of one unpadded text with the split output replaced by ``replace``."""

    def hook(mod, args, output):
        h = output[0] if isinstance(output, tuple) else output
        new = replace(h)
        return (new, *output[1:]) if isinstance(output, tuple) else new

    handle = module.register_forward_hook(hook)
    try:
        with torch.no_grad():
            return model(input_ids=ids[None]).logits[0].double()
    finally:
        handle.remove()


def test_ce_loss_recovered_equals_a_hand_computation(gpt2):
    model, tokenizer = gpt2
    pipe = _pipe(model, tokenizer, 4, exclude_special_tokens=False)
    module = model.get_submodule(pipe[0].split_module_name_)
    est = pipe[-1]

    def recon(h):
        X = h[0].numpy()
        return torch.from_numpy(est.inverse_transform(est.transform(X)))[None]

    ce = np.zeros(3)
    count = agree = 0
    kl = 0.0
    for text in TEXTS:
        ids = torch.tensor(tokenizer(text)["input_ids"])
        runs = [
            _hooked_logits(model, module, ids, fn)
            for fn in (lambda h: h, recon, torch.zeros_like)
        ]
        for j, logits in enumerate(runs):
            ce[j] += torch.nn.functional.cross_entropy(
                logits[:-1], ids[1:], reduction="sum"
            ).item()
        p, q = (torch.log_softmax(x[:-1], -1) for x in runs[:2])
        kl += (p.exp() * (p - q)).sum().item()
        agree += (runs[0][:-1].argmax(-1) == runs[1][:-1].argmax(-1)).sum().item()
        count += len(ids) - 1
    ce /= count
    expected = (ce[2] - ce[1]) / (ce[2] - ce[0])

    fid = downstream_fidelity(pipe, TEXTS, batch_size=2, exclude_special_tokens=False)
    assert fid["n_predictions"] == count and fid["n_texts"] == len(TEXTS)
    np.testing.assert_allclose(
        [fid["ce_original"], fid["ce_reconstruction"], fid["ce_zero_ablation"]],
        ce,
        rtol=1e-5,
    )
    assert fid["ce_loss_recovered"] == pytest.approx(expected, rel=1e-4)
    assert fid["kl_divergence"] == pytest.approx(kl / count, rel=1e-3, abs=1e-7)
    assert fid["agreement"] == pytest.approx(agree / count)
    # 4 of 32 directions change the outputs (a random model: in either direction)
    assert abs(fid["ce_loss_recovered"] - 1) > 1e-3


def test_a_full_rank_dictionary_loses_nothing(bert_cls):
    model, tokenizer = bert_cls
    exact = downstream_fidelity(_pipe(model, tokenizer, 32, granularity="token"), TEXTS)
    assert exact["agreement"] == 1.0
    assert exact["kl_divergence"] == pytest.approx(0.0, abs=1e-8)
    assert set(exact) == {"agreement", "kl_divergence", "n_texts", "n_predictions"}
    # one concept, [CLS] replaced too (the head reads it): the outputs move
    lossy = downstream_fidelity(
        _pipe(model, tokenizer, 1, granularity="token"),
        TEXTS,
        exclude_special_tokens=False,
    )
    assert lossy["kl_divergence"] > 1e-6


def test_output_fn_with_one_logit(bert_cls):
    model, tokenizer = bert_cls
    pipe = _pipe(model, tokenizer, 32)
    fid = downstream_fidelity(
        pipe, TEXTS, output_fn=lambda out: out.logits[:, :1] - out.logits[:, 1:]
    )
    assert fid["agreement"] == 1.0 and fid["kl_divergence"] < 1e-8


def test_fidelity_scorer_in_a_grid_search(gpt2):
    model, tokenizer = gpt2
    pipe = make_pipeline(
        SplitPointActivations(model, tokenizer=tokenizer, split_point=1, max_length=64),
        PCAConcepts(),
    )
    search = GridSearchCV(
        pipe,
        {"pcaconcepts__n_concepts": [1, 16]},
        scoring=make_fidelity_scorer("ce_loss_recovered"),
        cv=[(np.arange(5), np.arange(5))],
    ).fit(TEXTS)
    scores = search.cv_results_["mean_test_score"]
    assert scores[1] > scores[0]
    assert search.best_params_ == {"pcaconcepts__n_concepts": 16}


def test_bad_input_is_named(gpt2, bert_cls):
    model, tokenizer = bert_cls
    pipe = _pipe(model, tokenizer, 4)
    with pytest.raises(TypeError, match="must start with a fitted SplitPointAct"):
        downstream_fidelity(pipe[-1], TEXTS)
    with pytest.raises(ValueError, match="needs a causal language-model head"):
        make_fidelity_scorer("ce_loss_recovered")(pipe, TEXTS)
    with pytest.raises(ValueError, match="metric='r2' is not one of"):
        make_fidelity_scorer("r2")
    with pytest.raises(ValueError, match="batch_size=0 must be an int"):
        downstream_fidelity(pipe, TEXTS, batch_size=0)
    with pytest.warns(UserWarning, match="encodes every token position"):
        downstream_fidelity(_pipe(model, tokenizer, 4, granularity="sample"), TEXTS)
    bare, tok = make_tiny_model("bert", n_layers=2)
    with pytest.raises(ValueError, match="have no logits.*pass output_fn"):
        downstream_fidelity(_pipe(bare, tok, 4), TEXTS)
