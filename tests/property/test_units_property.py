"""Units and rows line up for any text, at every granularity.

For any list of texts (arbitrary unicode, control characters, emoji, white
space only, empty, longer than the model's positions): ``transform(texts)`` has
exactly ``len(units(texts))`` rows; the units table lists the texts in order
with units numbered ``0..n-1``; every span lies within its text, is trimmed of
white space, and ``text[start:end]`` is the unit's string.
"""

import numpy as np
import pytest
from hypothesis import example, given

from ._strategies import ARCHS, GRANULARITIES, TEXTS, prop_settings

# long texts are truncated to the 128 positions, with a warning
pytestmark = pytest.mark.filterwarnings(
    "ignore::skconcepts.exceptions.TruncationWarning"
)

#: explicit cases every run checks, whatever hypothesis draws
LONG = "word " * 400  # far beyond the 128 positions: truncated
EXAMPLES = [
    [""],
    ["", "", ""],
    [" ", "\t\n", "\u3000\u00a0"],
    ["😀👍🏽👨‍👩‍👧", "🏳️‍🌈 flag"],
    ["\x00\x01\x1f\x7f", "a\x00b"],
    ["e\u0301 ﬁ naïve Straße 日本語 العربية"],
    ["[CLS] [SEP] <s> </s> <|endoftext|> [UNK]"],
    [LONG, "short", ""],
    ["x" * 3000],
    ["It rained. Did it?  Yes!\nThe end", "Dr. Smith went to the U.S.A. today."],
]


def _cases():
    for arch in ARCHS:
        for granularity in GRANULARITIES:
            if arch == "gpt2" and granularity == "cls":
                continue  # no leading special token: fit refuses (tested below)
            yield pytest.param(arch, granularity, id=f"{arch}-{granularity}")


def check_units_line_up(acts, texts):
    """Assert the invariants of ``units``/``transform`` on ``texts``."""
    X = acts.transform(texts)
    units = acts.units(texts)
    assert X.ndim == 2 and X.dtype == np.float32
    assert X.shape[0] == len(units), (X.shape, len(units))
    assert np.isfinite(X).all()
    assert list(units.columns) == ["sample", "unit", "start", "end", "text"]
    samples = units["sample"].to_numpy()
    assert (np.diff(samples) >= 0).all(), "units out of text order"
    counts = np.bincount(samples, minlength=len(texts)) if len(samples) else None
    if counts is None:
        counts = np.zeros(len(texts), dtype=int)
    assert len(counts) == len(texts), "a unit names a text that does not exist"
    granularity = acts.granularity
    for i, text in enumerate(texts):
        rows = units[units["sample"] == i]
        assert rows["unit"].tolist() == list(range(len(rows)))
        if granularity in ("sample", "cls"):
            assert len(rows) == 1, f"{granularity}: {len(rows)} rows for {text!r}"
        elif text == "":
            assert len(rows) == 0, f"{len(rows)} units for the empty text"
        elif text.isspace():
            # WordPiece drops white space; byte-level BPE keeps it as tokens,
            # whose units are blank
            assert all(not u or u.isspace() for u in rows["text"]), rows
        for start, end, unit in zip(rows["start"], rows["end"], rows["text"]):
            assert 0 <= start <= end <= len(text), (start, end, len(text))
            assert text[start:end] == unit
            # trimmed of white space, unless the whole unit is blank
            assert unit == unit.strip() or unit.isspace(), repr(unit)


@pytest.mark.parametrize("arch, granularity", list(_cases()))
@prop_settings(max_examples=30)
@given(texts=TEXTS)
@example(texts=EXAMPLES[0])
@example(texts=EXAMPLES[1])
@example(texts=EXAMPLES[2])
@example(texts=EXAMPLES[3])
@example(texts=EXAMPLES[4])
@example(texts=EXAMPLES[5])
@example(texts=EXAMPLES[6])
@example(texts=EXAMPLES[7])
@example(texts=EXAMPLES[8])
@example(texts=EXAMPLES[9])
def test_units_and_rows_line_up(tiny_acts, arch, granularity, texts):
    acts = tiny_acts(arch, granularity=granularity)
    check_units_line_up(acts, texts)


@pytest.mark.parametrize("arch", ARCHS)
@prop_settings(max_examples=15)
@given(texts=TEXTS)
@example(texts=EXAMPLES[7])
def test_all_tokens_rows_are_tokens_plus_specials(tiny_acts, arch, texts):
    """``all_tokens`` has the rows of ``token`` plus the special tokens."""
    token = tiny_acts(arch, granularity="token")
    every = tiny_acts(arch, granularity="all_tokens")
    units = every.units(texts)
    assert every.transform(texts).shape[0] == len(units)
    special = (units["start"] == 0) & (units["end"] == 0)
    tokens = token.units(texts)
    assert len(units) >= len(tokens)
    for i, text in enumerate(texts):
        rows = units[units["sample"] == i]
        for start, end, unit in zip(rows["start"], rows["end"], rows["text"]):
            assert 0 <= start <= end <= len(text)
            assert text[start:end] == unit
    # every non-special all_tokens unit is a token unit, in the same order
    kept = units[~special][["sample", "start", "end"]].to_numpy()
    plain = tokens[["sample", "start", "end"]].to_numpy()
    blank_tokens = (tokens["start"] == 0) & (tokens["end"] == 0)
    assert len(kept) == len(plain) - int(blank_tokens.sum())


def test_cls_without_leading_special_token_is_refused(tiny_acts):
    with pytest.raises(ValueError, match="granularity='cls'"):
        tiny_acts("gpt2", granularity="cls")


def _spans(units, i):
    """Spans of the non-blank units of text ``i`` (blank ones: white space tokens)."""
    rows = units[units["sample"] == i]
    return [
        (a, b)
        for a, b, unit in zip(rows["start"], rows["end"], rows["text"])
        if unit.strip()
    ]


@pytest.mark.parametrize("arch", ARCHS)
@prop_settings(max_examples=20)
@given(texts=TEXTS)
@example(texts=EXAMPLES[9])
@example(texts=EXAMPLES[3])
def test_units_nest_token_word_sentence_sample(tiny_acts, arch, texts):
    """Every token lies in a word and in a sentence, all in the sample.

    Words and sentences do not overlap one another, and come in text order.
    Blank units (white space tokens of byte-level BPEs) are left out: sentences
    exclude the white space between them.
    """
    levels = ("token", "word", "sentence", "sample")
    units = {g: tiny_acts(arch, granularity=g).units(texts) for g in levels}
    for i in range(len(texts)):
        spans = {g: _spans(units[g], i) for g in levels}
        # (a tokenizer's word may cross a line break, i.e. a sentence end)
        pairs = [
            ("token", "word"),
            ("token", "sentence"),
            ("word", "sample"),
            ("sentence", "sample"),
        ]
        for inner, outer in pairs:
            for a, b in spans[inner]:
                assert any(s <= a and b <= e for s, e in spans[outer]), (
                    f"{inner} {texts[i][a:b]!r} ({a}, {b}) is in no {outer}: "
                    f"{spans[outer]}"
                )
        for g in ("word", "sentence"):
            for (a, b), (c, d) in zip(spans[g], spans[g][1:]):
                assert b <= c, f"{g}s overlap or are out of order: {spans[g]}"
