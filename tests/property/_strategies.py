"""Strategies, constants and settings shared by the property tests."""

import os

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

#: tiny architectures: WordPiece with [CLS]/[SEP] (the MiniLM tokenizer), a
#: byte-level BPE without BOS (GPT-2-like) and a Metaspace BPE that adds <s>
ARCHS = ("bert", "gpt2", "llama")
#: the granularities a user picks (all_tokens is token plus the specials)
GRANULARITIES = ("token", "word", "sentence", "sample", "cls")
#: the model's position limit (make_tiny_model builds 128 positions)
MAX_LENGTH = 128

#: settings shared by the property tests: no deadline (the first example of a
#: test loads things), and the autouse seed fixture of tests/conftest.py is
#: function-scoped but harmless to reuse across examples. Derandomized: every
#: run (CI's included) draws the same examples, so a run fails only when the
#: code changed. To search new examples, set SKCONCEPTS_HYPOTHESIS_EXPLORE=1
#: (random draws, and hypothesis' example database replays past failures);
#: turn what it finds into a fixed test (as test_estimators_property's
#: degenerate inputs).
EXPLORE = bool(os.environ.get("SKCONCEPTS_HYPOTHESIS_EXPLORE"))
PROPERTY_SETTINGS = dict(
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
    derandomize=not EXPLORE,
)


def prop_settings(max_examples):
    """``hypothesis.settings`` of one property test."""
    return settings(max_examples=max_examples, **PROPERTY_SETTINGS)


# ------------------------------------------------------------ text strategies
_WORDS = st.sampled_from(
    [
        "the", "cat", "sat", "Dr.", "U.S.A.", "don't", "naïve", "Straße", "日本語",
        "中文", "العربية", "עברית", "😀", "👍🏽", "👨‍👩‍👧", "🏳️‍🌈", "e\u0301", "ﬁ",
        "...", "?!", "(x)", '"quoted"', "3.14", "1,000", "a-b", "@user", "#tag",
        "http://x.y/z?q=1", "[CLS]", "[SEP]", "<s>", "</s>", "<|endoftext|>",
        "[UNK]", "\u200b", "\ufeff", "\x00", "\x7f", "\u2028",
    ]
)  # fmt: skip
_SPACE = st.sampled_from([" ", "  ", "\t", "\n", "\r\n", "\u00a0", "\u3000", ". "])


@st.composite
def _word_text(draw):
    words = draw(st.lists(_WORDS, max_size=12))
    seps = draw(st.lists(_SPACE, min_size=len(words), max_size=len(words)))
    return "".join(w + s for w, s in zip(words, seps))


#: one text: arbitrary unicode (control characters included), white space only,
#: words mixed with emoji, scripts, punctuation and special-token strings
TEXT = st.one_of(
    st.text(max_size=60),
    st.text(alphabet=" \t\n\r\x0b\x0c\u00a0\u2003\u3000\u2028\x1c", max_size=8),
    _word_text(),
)
#: a few texts
TEXTS = st.lists(TEXT, min_size=1, max_size=4)
