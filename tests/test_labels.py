"""ConceptLabeler: the plumbing on a tiny random GPT-2 (the labels are nonsense)."""

import warnings

import pandas as pd
import pytest
import torch

from skconcepts.exceptions import TruncationWarning
from skconcepts.labels import DEFAULT_PROMPT, ConceptLabeler
from skconcepts.utils._testing import make_tiny_model

SHORT = "Fragments: {units}. Words: {words}. Name:"
TOP = {
    0: {"great": 1.5, "lovely": 2.0, "fun": 0.5},
    3: {"rain": 0.7, "cold": 1.1},
}


@pytest.fixture(scope="module")
def lm_folder(tmp_path_factory):
    model, tokenizer = make_tiny_model("gpt2", head="causal_lm")
    folder = tmp_path_factory.mktemp("tiny-gpt2")
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def lm():
    return make_tiny_model("gpt2", head="causal_lm")


def _reference_label(model, tokenizer, prompt, max_new_tokens):
    """Greedy decoding written out with a manual argmax loop (no generate)."""
    ids = tokenizer(prompt, return_tensors="pt")["input_ids"]
    new = []
    with torch.no_grad():
        for _ in range(max_new_tokens):
            logits = model(input_ids=ids).logits[0, -1]
            nxt = int(logits.argmax())
            if nxt == tokenizer.eos_token_id:
                break
            new.append(nxt)
            ids = torch.cat([ids, torch.tensor([[nxt]])], dim=1)
    text = tokenizer.decode(new, skip_special_tokens=True)
    lines = [ln.strip().strip("\"'`*").strip() for ln in text.splitlines()]
    return next((ln for ln in lines if ln), "")


def test_prompt_contents_are_exact(lm):
    labeler = ConceptLabeler(*lm, max_new_tokens=3, prompt=SHORT, n_units=2)
    labels = labeler.label(TOP, words={0: ["joy", " "], 3: []})
    assert len(labels) == 2
    # units by decreasing activation, at most n_units, quoted; empty words dropped
    assert labeler.prompts_ == [
        'Fragments: "lovely", "great". Words: joy. Name:',
        'Fragments: "cold", "rain". Words: none given. Name:',
    ]
    default = ConceptLabeler(*lm).build_prompt(['say "hi"\n now'], ["w1", "w2"])
    assert default == DEFAULT_PROMPT.format(units="\"say 'hi' now\"", words="w1, w2")


def test_labels_are_greedy_decoding_of_the_prompt(lm):
    model, tokenizer = lm
    labeler = ConceptLabeler(
        model, tokenizer, max_new_tokens=5, prompt=SHORT, cache=False
    )
    labels = labeler.label(TOP)
    for label, prompt, units in zip(
        labels, labeler.prompts_, [["lovely", "great", "fun"], ["cold", "rain"]]
    ):
        expected = _reference_label(model, tokenizer, prompt, 5)
        assert label == (expected or ", ".join(units))
    # deterministic: a second labeler, no cache, the same labels
    again = ConceptLabeler(
        model, tokenizer, max_new_tokens=5, prompt=SHORT, cache=False
    )
    assert again.label(TOP) == labels
    assert again.n_generated_ == 2


def test_table_and_dict_give_the_same_labels(lm):
    frame = pd.DataFrame(
        {
            "concept": [3, 0, 0, 3, 0],
            "text": ["rain", "great", "lovely", "cold", "fun"],
            "activation": [0.7, 1.5, 2.0, 1.1, 0.5],
        }
    )
    labeler = ConceptLabeler(*lm, max_new_tokens=3, prompt=SHORT)
    from_dict = labeler.label(TOP, words=[["a"], ["b"]])
    prompts = labeler.prompts_
    assert labeler.label(frame, words=[["a"], ["b"]]) == from_dict
    assert labeler.prompts_ == prompts


def test_cache_hit_across_labelers_and_miss_for_other_weights(lm, lm_folder):
    labeler = ConceptLabeler(*lm, max_new_tokens=4, prompt=SHORT)
    first = labeler.label(TOP, words={0: ["cache-test"]})
    n = labeler.n_generated_
    assert labeler.label(TOP, words={0: ["cache-test"]}) == first
    assert labeler.n_generated_ == n  # every label from the cache
    # the same weights loaded from the folder: same fingerprint, cache hits
    loaded = ConceptLabeler(lm_folder, max_new_tokens=4, prompt=SHORT)
    assert loaded.fingerprint_ == labeler.fingerprint_
    assert loaded.label(TOP, words={0: ["cache-test"]}) == first
    assert loaded.n_generated_ == 0
    # other weights: another fingerprint, generated again
    other = make_tiny_model("gpt2", head="causal_lm", seed=1)
    other_labeler = ConceptLabeler(*other, max_new_tokens=4, prompt=SHORT)
    assert other_labeler.fingerprint_ != labeler.fingerprint_
    other_labeler.label(TOP, words={0: ["cache-test"]})
    assert other_labeler.n_generated_ == 2
    # a different token limit is a different key
    longer = ConceptLabeler(*lm, max_new_tokens=5, prompt=SHORT)
    longer.label(TOP, words={0: ["cache-test"]})
    assert longer.n_generated_ == 2


def test_long_prompt_keeps_its_end_with_a_warning(lm):
    labeler = ConceptLabeler(*lm, max_new_tokens=3, cache=False)  # 128 positions
    units = {0: {f"fragment number {i}": float(-i) for i in range(10)}}
    with pytest.warns(TruncationWarning, match="first tokens are dropped"):
        assert len(labeler.label(units)) == 1


# ----------------------------------------------------------------- bad input
def test_not_a_causal_lm_is_refused(tmp_path):
    model, tokenizer = make_tiny_model("bert", head="seq_cls")
    with pytest.raises(ValueError, match="model=BertForSequenceClassification is "
                       "not a causal language model"):  # fmt: skip
        ConceptLabeler(model, tokenizer)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model.save_pretrained(tmp_path)
    with pytest.raises(ValueError, match=r"is not a causal language model \(Bert"):
        ConceptLabeler(tmp_path, tokenizer)
    with pytest.raises(ValueError, match="model must be a causal LM"):
        ConceptLabeler("not a model".split(), tokenizer)


def test_no_download_and_other_bad_input(lm):
    with pytest.raises(ValueError, match="model='gpt2' is not a folder.*never"):
        ConceptLabeler("gpt2")
    with pytest.raises(ValueError, match="tokenizer=None"):
        ConceptLabeler(lm[0])
    with pytest.raises(ValueError, match="max_new_tokens=0 must be an integer"):
        ConceptLabeler(*lm, max_new_tokens=0)
    with pytest.raises(ValueError, match=r"prompt='\{concept\}' is not a template"):
        ConceptLabeler(*lm, prompt="{concept}")
    labeler = ConceptLabeler(*lm, prompt=SHORT)
    with pytest.raises(ValueError, match="words has 1 entries for 2 concepts"):
        labeler.label(TOP, words=[["a"]])
    with pytest.raises(ValueError, match="top_inputs must be TopKInputs"):
        labeler.label(["lovely"])
