"""TopKInputs.interpret_vocabulary: a planted token on a tiny random BERT."""

import numpy as np
import pytest
import torch
from sklearn.pipeline import make_pipeline

from skconcepts import PCAConcepts, SplitPointActivations, TopKInputs
from skconcepts.interpret import FRAME_COLUMNS, vocabulary_tokens
from skconcepts.utils._testing import make_tiny_model

PLANTED = "zebra"
TEXTS = [
    "the zebra ran across the plain",
    "a film about a zebra and a horse",
    "rain fell on the town all night",
    "the music was loud and the crowd sang",
    "a zebra is a striped animal",
    "good food and a warm room",
    "the team won the match at home",
    "she read the book in one evening",
]


@pytest.fixture(scope="module")
def planted():
    """A tiny BERT whose embedding row of "zebra" is huge along one direction."""
    model, tokenizer = make_tiny_model("bert")
    token_id = tokenizer.convert_tokens_to_ids(PLANTED)
    emb = model.get_input_embeddings().weight
    d = emb.shape[1]
    direction = torch.zeros(d)
    direction[0], direction[1:] = 1.0, -1.0 / (d - 1)  # mean 0: survives LayerNorm
    with torch.no_grad():
        emb[token_id] = 50.0 * direction
    return model, tokenizer, token_id


@pytest.fixture(scope="module")
def pipe(planted):
    model, tokenizer, _ = planted
    return make_pipeline(
        SplitPointActivations(model, tokenizer=tokenizer, split_point=0, max_length=64),
        PCAConcepts(n_concepts=3),
    ).fit(TEXTS)


def _text_row(pipe, token):
    """The concept activations of the text made of ``token`` (the text path)."""
    C = pipe.transform([token])
    assert C.shape[0] == 1  # one token, one row
    return C[0]


def test_planted_token_ranks_first_for_its_concept(pipe, planted):
    _, tokenizer, token_id = planted
    a = _text_row(pipe, PLANTED)
    j = int(np.argmax(a))
    assert a[j] > 0
    frame = TopKInputs(k=5).interpret_vocabulary(pipe, batch_size=4096, as_frame=True)
    assert sorted(frame["concept"].unique()) == [0, 1, 2]
    top = frame[frame["concept"] == j]
    assert top["text"].iloc[0] == PLANTED
    # the same number as the text path (same template, same model, same codes)
    np.testing.assert_allclose(top["activation"].iloc[0], a[j], rtol=1e-4, atol=1e-5)
    # the dict form of the same ranking
    as_dict = TopKInputs(k=2).interpret_vocabulary(pipe, tokens=[PLANTED, "film"])
    assert list(as_dict[j]) == [PLANTED, "film"]
    assert list(frame.columns) == FRAME_COLUMNS
    special = r"^\[(unused\d+|PAD|CLS|SEP|MASK|UNK)\]$"
    assert not frame["text"].str.match(special).any()
    first = frame[(frame["concept"] == j) & (frame["rank"] == 0)].iloc[0]
    assert (first["sample"], first["text"], first["start"], first["end"]) == (
        token_id,
        PLANTED,
        0,
        len(PLANTED),
    )


@pytest.mark.parametrize("split_point", [0, -1])
def test_vocabulary_rows_equal_the_text_path(planted, split_point):
    model, tokenizer, _ = planted
    words = ["film", "rain", "music", "town", "horse", "night"]
    p = make_pipeline(
        SplitPointActivations(
            model, tokenizer=tokenizer, split_point=split_point, max_length=64
        ),
        PCAConcepts(n_concepts=2),
    ).fit(TEXTS)
    frame = TopKInputs(k=len(words)).interpret_vocabulary(
        p, tokens=words, batch_size=4, as_frame=True
    )
    assert len(frame) == 2 * len(words)
    for _, row in frame.iterrows():
        ref = _text_row(p, row["text"])[row["concept"]]
        np.testing.assert_allclose(row["activation"], ref, rtol=1e-4, atol=1e-5)


def test_streaming_batches_do_not_change_the_result(pipe):
    reader = TopKInputs(k=4, unique=False)
    ids = list(range(2000, 2120))
    one = reader.interpret_vocabulary(pipe, tokens=ids, batch_size=120, as_frame=True)
    many = reader.interpret_vocabulary(pipe, tokens=ids, batch_size=13, as_frame=True)
    assert one.equals(many)


def test_special_and_unused_tokens_are_left_out(planted):
    _, tokenizer, _ = planted
    ids, tokens = vocabulary_tokens(tokenizer)
    assert len(ids) == len(tokens) == 30522 - 5 - 994  # 5 specials, 994 [unusedN]
    assert not {"[PAD]", "[CLS]", "[SEP]", "[MASK]", "[UNK]"} & set(tokens)
    assert not any(t.startswith("[unused") for t in tokens)
    all_ids, all_tokens = vocabulary_tokens(tokenizer, include_special=True)
    assert len(all_ids) == 30522 and "[PAD]" in all_tokens
    small, _ = vocabulary_tokens(tokenizer, n_embeddings=1100)
    assert 0 < len(small) and small.max() < 1100


def test_bad_tokens_are_refused(pipe):
    reader = TopKInputs(k=2)
    with pytest.raises(ValueError, match="not tokens of the vocabulary"):
        reader.interpret_vocabulary(pipe, tokens=["film", "notatokenxyz"])
    with pytest.raises(ValueError, match="outside"):
        reader.interpret_vocabulary(pipe, tokens=[5, 10**6])
    with pytest.raises(ValueError, match="not a mix"):
        reader.interpret_vocabulary(pipe, tokens=[5, "film"])
    with pytest.raises(ValueError, match="batch_size=0"):
        reader.interpret_vocabulary(pipe, tokens=[5], batch_size=0)


@pytest.mark.parametrize("arch", ["gpt2", "llama"])
def test_other_templates(arch):
    """GPT-2 (bare token) and Llama (<s> token): still the text path's rows."""
    model, tokenizer = make_tiny_model(arch)
    texts = ["the film was good", "rain all night", "a long day at home"]
    p = make_pipeline(
        SplitPointActivations(model, tokenizer=tokenizer, split_point=-1),
        PCAConcepts(n_concepts=2),
    ).fit(texts)
    ids, tokens = vocabulary_tokens(tokenizer)
    # tokens whose decoded text tokenizes back to exactly that token
    text_of = {}
    for i, t in zip(ids.tolist(), tokens):
        text = tokenizer.decode([i]).strip()
        if text.isalpha() and tokenizer(text, add_special_tokens=False)[
            "input_ids"
        ] == [i]:
            text_of[t] = text
        if len(text_of) == 5:
            break
    assert len(text_of) == 5
    frame = TopKInputs(k=5).interpret_vocabulary(p, tokens=list(text_of), as_frame=True)
    assert len(frame) == 10
    for _, row in frame.iterrows():
        ref = _text_row(p, text_of[row["text"]])[row["concept"]]
        np.testing.assert_allclose(row["activation"], ref, rtol=1e-4, atol=1e-5)
    whole = TopKInputs(k=3).interpret_vocabulary(p)
    assert all(len(v) == 3 for v in whole.values())
