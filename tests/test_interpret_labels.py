"""concept_labels / distinctive_labels: short labels of distinctive words."""

import numpy as np
import pytest
import torch
from sklearn.pipeline import make_pipeline

from skconcepts import PCAConcepts, SplitPointActivations, TopKInputs
from skconcepts.interpret import (
    FRAME_COLUMNS,
    concept_labels,
    distinctive_labels,
    word_concept_activations,
)
from skconcepts.utils._testing import make_tiny_model

PLANTED = "zebra"
TEXTS = [
    "The zebra ran across the plain.",
    "A film about a zebra, and a horse!",
    "Rain fell on the town all night.",
    "The music was loud; the crowd sang.",
    "A zebra is a striped animal.",
    "Good food and a warm room.",
    "The team won the match at home.",
    "She read the book in one evening.",
]


@pytest.fixture(scope="module")
def tiny():
    """A tiny BERT whose embedding row of "zebra" is huge along one direction."""
    model, tokenizer = make_tiny_model("bert")
    emb = model.get_input_embeddings().weight
    d = emb.shape[1]
    direction = torch.zeros(d)
    direction[0], direction[1:] = 1.0, -1.0 / (d - 1)  # mean 0: survives LayerNorm
    with torch.no_grad():
        emb[tokenizer.convert_tokens_to_ids(PLANTED)] = 50.0 * direction
    return model, tokenizer


def _pipe(tiny, granularity):
    model, tokenizer = tiny
    return make_pipeline(
        SplitPointActivations(
            model,
            tokenizer=tokenizer,
            split_point=0,
            granularity=granularity,
            max_length=64,
        ),
        PCAConcepts(n_concepts=3),
    ).fit(TEXTS)


def test_distinctive_labels_find_a_planted_word():
    rng = np.random.default_rng(0)
    common = ["the", "a", "of", "film", "rain", "good", "music", "day"]
    words = list(rng.choice(common, size=400)) + [PLANTED] * 6 + [","] * 20
    rng.shuffle(words)
    words = np.array(words)
    C = rng.uniform(0, 1, size=(len(words), 2))
    C[words == PLANTED, 0] = 6.0  # concept 0 fires on the planted word
    C[words == ",", 0] = 9.0  # punctuation is never a label word
    C[words == "rain", 1] += 2.0  # concept 1 on "rain"
    C[words == "the", 1] = -5.0  # negative activations count as 0
    labels = distinctive_labels(C, words, n_words=2)
    assert labels[0].split(", ")[0] == PLANTED
    assert labels[1].split(", ")[0] == "rain"
    assert all(len(label.split(", ")) <= 2 for label in labels)


def test_rare_lucky_words_are_smoothed_and_frequency_matters():
    words = ["the"] * 50 + ["zebra"] * 5 + ["once"] + ["cat"] * 44
    C = np.full((100, 1), 0.1)
    C[:50, 0] = 1.0  # "the": 10x the others, but half of the corpus
    C[50:55, 0] = 4.0  # "zebra": 40x, five times
    C[55, 0] = 6.0  # "once": 60x, one time only
    # lift: zebra (20+2m)/(7m) ~ 4.8 > once (6+2m)/(3m) ~ 3.4 > the ~ 1.5
    assert distinctive_labels(C, words, n_words=3) == ["zebra, once, the"]
    assert distinctive_labels(C, words, n_words=3, smoothing=0) == ["once, zebra, the"]
    assert distinctive_labels(C, words, n_words=3, min_count=2) == ["zebra, the"]
    # words seen no more than their frequency predicts are not listed
    assert distinctive_labels(np.ones((4, 1)), ["a", "b", "a", "c"]) == [""]
    assert distinctive_labels(np.zeros((2, 1)), ["a", "b"]) == [""]


@pytest.mark.parametrize("granularity", ["word", "sample", "token"])
def test_concept_labels_find_the_planted_word(tiny, granularity):
    pipe = _pipe(tiny, granularity)
    a = pipe.transform([PLANTED])[0]  # the planted word alone
    j = int(np.argmax(a))
    labels = concept_labels(pipe, TEXTS)
    assert len(labels) == 3
    assert labels[j].split(", ")[0] == PLANTED
    assert all(len(label.split(", ")) <= 3 for label in labels)


def test_word_concept_activations_equal_a_word_pipeline(tiny):
    sample = _pipe(tiny, "sample")
    C, units = word_concept_activations(sample, TEXTS, batch_size=3)
    words = sample[0].__class__(**{**sample[0].get_params(), "granularity": "word"})
    X = words.fit().transform(TEXTS)
    np.testing.assert_allclose(C, sample[-1].transform(X), rtol=1e-5, atol=1e-6)
    assert units["text"].tolist() == words.units(TEXTS)["text"].tolist()
    assert units["sample"].max() == len(TEXTS) - 1
    # a word pipeline reuses the given activations (no model run)
    word = _pipe(tiny, "word")
    Xw = word[0].transform(TEXTS)
    C2, _ = word_concept_activations(word, TEXTS, activations=Xw)
    np.testing.assert_allclose(C2, word[-1].transform(Xw), rtol=1e-5, atol=1e-6)


def test_topk_frame_gets_a_label_column(tiny):
    pipe = _pipe(tiny, "word")
    labels = concept_labels(pipe, TEXTS)
    frame = TopKInputs(k=2, labels=True).interpret(pipe, TEXTS, as_frame=True)
    assert list(frame.columns) == ["concept", "label", *FRAME_COLUMNS[1:]]
    assert [labels[c] for c in frame["concept"]] == frame["label"].tolist()
    plain = TopKInputs(k=2).interpret(pipe, TEXTS, as_frame=True)
    assert list(plain.columns) == FRAME_COLUMNS
    assert plain.equals(frame.drop(columns="label"))


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"n_words": 0}, "n_words=0"),
        ({"min_count": 0}, "min_count=0"),
        ({"smoothing": -1}, "smoothing=-1"),
    ],
)
def test_bad_label_parameters(kwargs, match):
    with pytest.raises(ValueError, match=match):
        distinctive_labels(np.ones((2, 1)), ["a", "b"], **kwargs)


def test_mismatched_words():
    with pytest.raises(ValueError, match="one row per word"):
        distinctive_labels(np.ones((3, 1)), ["a", "b"])
