"""Batch size and text order never change a text's rows.

Batches are padded on the right, so every real token sees the positions and
context it has alone: the rows of a text must not depend on which texts share
its batch, on ``batch_size``/``max_tokens_per_batch``, or on the order of the
texts. Batched attention sums in another order than unbatched attention, so
rows are compared with a float32 tolerance, not bitwise.
"""

import numpy as np
import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from ._strategies import ARCHS, TEXT, prop_settings

pytestmark = pytest.mark.filterwarnings(
    "ignore::skconcepts.exceptions.TruncationWarning"
)

ATOL = 1e-5
RTOL = 1e-5


def _per_text(acts, texts):
    """The rows of ``transform(texts)``, split per text, and the units table."""
    X = acts.transform(texts)
    units = acts.units(texts)
    assert X.shape[0] == len(units)
    samples = units["sample"].to_numpy()
    return [X[samples == i] for i in range(len(texts))], units


@st.composite
def _texts_and_order(draw):
    texts = draw(st.lists(TEXT, min_size=1, max_size=6))
    order = draw(st.permutations(range(len(texts))))
    return texts, list(order)


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("granularity", ["token", "sample"])
@prop_settings(max_examples=20)
@given(
    case=_texts_and_order(),
    batch_size=st.integers(1, 4),
    budget=st.sampled_from([None, 1, 7, 64]),
)
@example(
    case=(
        ["a b c d e f g h", "x", "", "hello world. again!", "😀" * 30],
        [4, 2, 0, 3, 1],
    ),
    batch_size=2,
    budget=7,
)
def test_rows_of_a_text_do_not_depend_on_its_batch(
    tiny_acts, arch, granularity, case, batch_size, budget
):
    texts, order = case
    # reference: every text alone, in a batch of one
    alone = tiny_acts(arch, granularity=granularity, batch_size=1)
    reference = [alone.transform([t]) for t in texts]
    acts = tiny_acts(
        arch,
        granularity=granularity,
        batch_size=batch_size,
        max_tokens_per_batch=budget,
        sort_by_length=bool(batch_size % 2),
    )
    permuted = [texts[i] for i in order]
    rows, units = _per_text(acts, permuted)
    for position, i in enumerate(order):
        got, want = rows[position], reference[i]
        assert got.shape == want.shape, (texts[i], got.shape, want.shape)
        np.testing.assert_allclose(got, want, atol=ATOL, rtol=RTOL)
        # the units of a text do not move either
        alone_units = alone.units([texts[i]])
        mine = units[units["sample"] == position]
        assert mine[["start", "end", "text"]].values.tolist() == (
            alone_units[["start", "end", "text"]].values.tolist()
        )


@pytest.mark.parametrize("arch", ["bert", "gpt2"])
@prop_settings(max_examples=10)
@given(texts=st.lists(TEXT, min_size=1, max_size=5))
def test_cache_returns_the_rows_it_stored(tiny_acts, arch, texts):
    """With the cache on, a second transform (any order) gives the same rows."""
    acts = tiny_acts(arch, granularity="word", cache=True, batch_size=2)
    acts.clear_cache()
    first, _ = _per_text(acts, texts)
    again, _ = _per_text(acts, texts[::-1])
    for a, b in zip(first, again[::-1]):
        np.testing.assert_array_equal(a, b)
