"""Units and aggregation (skconcepts._granularity), checked against numpy."""

import numpy as np
import pytest
import torch

from skconcepts._granularity import (
    AGGREGATIONS,
    aggregate,
    split_sentences,
    unit_index,
    units_table,
)


def _np_aggregate(h, groups, how):
    out = []
    for g in groups:
        x = h[g]
        if how == "mean":
            out.append(x.mean(0))
        elif how == "sum":
            out.append(x.sum(0))
        elif how == "max":
            out.append(x.max(0))
        elif how == "min":
            out.append(x.min(0))
        elif how == "signed_max":
            out.append(x[np.abs(x).argmax(0), np.arange(x.shape[1])])
        elif how == "first":
            out.append(x[0])
        else:
            out.append(x[-1])
    return np.stack(out)


@pytest.mark.parametrize("how", AGGREGATIONS)
def test_aggregate_matches_numpy(how):
    rng = np.random.default_rng(0)
    h = rng.standard_normal((12, 5)).astype(np.float32)
    ids = np.array([0, 0, -1, 1, 2, 2, 2, -1, 1, 3, 3, 0])
    groups = [np.flatnonzero(ids == u) for u in range(4)]
    got = aggregate(torch.from_numpy(h), torch.from_numpy(ids), 4, how)
    np.testing.assert_allclose(got.numpy(), _np_aggregate(h, groups, how), atol=1e-6)


def test_aggregate_signed_max_keeps_sign():
    h = torch.tensor([[1.0, -5.0, 2.0], [-3.0, 4.0, -2.0]])
    got = aggregate(h, torch.tensor([0, 0]), 1, "signed_max")
    assert got.tolist() == [[-3.0, -5.0, 2.0]]


def test_aggregate_empty_unit_is_zero_and_bad_name():
    h = torch.ones(2, 3)
    got = aggregate(h, torch.tensor([0, 0]), 2, "max")
    assert got[1].tolist() == [0.0, 0.0, 0.0]
    with pytest.raises(ValueError, match="aggregation='median' is not one of"):
        aggregate(h, torch.tensor([0, 0]), 1, "median")


@pytest.mark.parametrize(
    "text, expected",
    [
        (
            "It rained. Did it?  Yes!\nThe end",
            ["It rained.", "Did it?", "Yes!", "The end"],
        ),
        ('He said "stop." Then left...  ok', ['He said "stop."', "Then left...", "ok"]),
        ("no end mark", ["no end mark"]),
        ("3.5 is a number. Right", ["3.5 is a number.", "Right"]),
        ("  \n ", []),
        ("", []),
    ],
)
def test_split_sentences(text, expected):
    assert [text[s:e] for s, e in split_sentences(text)] == expected


# "[CLS] big dogs . run ! [SEP]" with offsets into the text below
TEXT = "Big dogs. Run!"
OFFSETS = [(0, 0), (0, 3), (4, 8), (8, 9), (10, 13), (13, 14), (0, 0)]
SPECIAL = [1, 0, 0, 0, 0, 0, 1]
WORDS = [None, 0, 1, 2, 3, 4, None]


@pytest.mark.parametrize(
    "granularity, ids, texts",
    [
        ("all_tokens", [0, 1, 2, 3, 4, 5, 6], ["", "Big", "dogs", ".", "Run", "!", ""]),
        ("token", [-1, 0, 1, 2, 3, 4, -1], ["Big", "dogs", ".", "Run", "!"]),
        ("word", [-1, 0, 1, 2, 3, 4, -1], ["Big", "dogs", ".", "Run", "!"]),
        ("sentence", [-1, 0, 0, 0, 1, 1, -1], ["Big dogs.", "Run!"]),
        ("sample", [-1, 0, 0, 0, 0, 0, -1], [TEXT]),
        ("cls", [0, -1, -1, -1, -1, -1, -1], [TEXT]),
    ],
)
def test_unit_index(granularity, ids, texts):
    got, spans = unit_index(granularity, TEXT, OFFSETS, SPECIAL, WORDS)
    assert got.dtype == torch.long and got.tolist() == ids
    assert [TEXT[s:e] for s, e in spans] == texts


def test_unit_index_subword_words_and_kept_specials():
    text = "unhappy cat"
    offsets = [(0, 0), (0, 2), (2, 7), (8, 11), (0, 0)]
    special = [1, 0, 0, 0, 1]
    words = [None, 0, 0, 1, None]
    ids, spans = unit_index("word", text, offsets, special, words)
    assert ids.tolist() == [-1, 0, 0, 1, -1]
    assert [text[s:e] for s, e in spans] == ["unhappy", "cat"]
    ids, spans = unit_index(
        "word", text, offsets, special, words, exclude_special_tokens=False
    )
    assert ids.tolist() == [0, 1, 1, 2, 3]
    assert spans.tolist() == [[0, 0], [0, 7], [8, 11], [0, 0]]
    ids, _ = unit_index("token", text, offsets, special, exclude_special_tokens=False)
    assert ids.tolist() == [0, 1, 2, 3, 4]


def test_unit_index_strips_leading_space_of_byte_level_tokens():
    text = "a dog"
    ids, spans = unit_index("token", text, [(0, 1), (1, 5)], [0, 0])
    assert [text[s:e] for s, e in spans] == ["a", "dog"]


def test_unit_index_empty_text():
    # [CLS] [SEP] only: no token rows, one sample row made of the specials
    for granularity in ("token", "word", "sentence"):
        ids, spans = unit_index(granularity, "", [(0, 0), (0, 0)], [1, 1], [None, None])
        assert ids.tolist() == [-1, -1] and spans.shape == (0, 2)
    ids, spans = unit_index("sample", "", [(0, 0), (0, 0)], [1, 1])
    assert ids.tolist() == [0, 0] and spans.tolist() == [[0, 0]]
    ids, spans = unit_index("sample", "", [], [])  # no token at all
    assert ids.tolist() == [] and spans.tolist() == [[0, 0]]


def test_unit_index_errors():
    with pytest.raises(ValueError, match="leading special token"):
        unit_index("cls", "a b", [(0, 1), (2, 3)], [0, 0])
    with pytest.raises(ValueError, match="word_ids=encoding.word_ids"):
        unit_index("word", "a b", [(0, 1), (2, 3)], [0, 0])
    with pytest.raises(ValueError, match="granularity='char' is not one of"):
        unit_index("char", "a b", [(0, 1), (2, 3)], [0, 0])
    with pytest.raises(ValueError, match="special_mask has 1 entries"):
        unit_index("token", "a b", [(0, 1), (2, 3)], [0])


def test_units_table_counts_texts_from_the_offset():
    texts = ["ab cd", "", "efg"]
    spans = [
        np.array([[0, 2], [3, 5]], dtype=np.int64),
        np.zeros((0, 2), dtype=np.int64),  # a text without units
        np.array([[0, 3]], dtype=np.int64),
    ]
    units = units_table(texts, spans, offset=7)
    assert units.columns.tolist() == ["sample", "unit", "start", "end", "text"]
    assert units["sample"].tolist() == [7, 7, 9]
    assert units["unit"].tolist() == [0, 1, 0]
    assert units["text"].tolist() == ["ab", "cd", "efg"]
    assert all(units[c].dtype == np.int64 for c in ("sample", "unit", "start", "end"))
    empty = units_table([], [])
    assert len(empty) == 0 and empty.columns.tolist() == units.columns.tolist()
