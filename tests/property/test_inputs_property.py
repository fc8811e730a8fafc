"""Every list-like of texts gives the rows and units of the same list.

A tuple, a numpy array (str or object dtype) and a pandas Series (any index)
of texts are read as the list of their texts; a one-column DataFrame is read
as that column or refused, never iterated (which yields its column names).
"""

import numpy as np
import pandas as pd
import pytest
from hypothesis import given
from hypothesis import strategies as st

from ._strategies import TEXT, prop_settings

pytestmark = pytest.mark.filterwarnings(
    "ignore::skconcepts.exceptions.TruncationWarning"
)

CONTAINERS = {
    "tuple": tuple,
    "str-array": lambda t: np.array(t, dtype=str),
    "object-array": lambda t: np.array(t, dtype=object),
    "series": pd.Series,
    "series-shuffled-index": lambda t: pd.Series(t, index=np.arange(len(t))[::-1] + 7),
}


def _same_rows(acts, texts, container):
    want_X, want_units = acts.transform(texts), acts.units(texts)
    got_X, got_units = acts.transform(container), acts.units(container)
    np.testing.assert_array_equal(got_X, want_X)
    pd.testing.assert_frame_equal(got_units, want_units)


@pytest.mark.parametrize("kind", sorted(CONTAINERS))
@prop_settings(max_examples=8)
@given(texts=st.lists(TEXT, min_size=1, max_size=4))
def test_list_likes_of_texts_are_read_as_lists(tiny_acts, kind, texts):
    acts = tiny_acts("bert", granularity="word")
    container = CONTAINERS[kind](texts)
    if kind == "str-array":
        # numpy's str dtype drops trailing NULs: compare with what it holds
        texts = container.tolist()
    _same_rows(acts, texts, container)


@prop_settings(max_examples=5)
@given(texts=st.lists(TEXT, min_size=2, max_size=4))
def test_one_column_dataframe_is_its_column_or_refused(tiny_acts, texts):
    acts = tiny_acts("bert", granularity="sample")
    frame = pd.DataFrame({"text": texts})
    try:
        X = acts.transform(frame)
    except (TypeError, ValueError):
        return  # refused
    assert X.shape[0] == len(texts), f"{X.shape[0]} rows for {len(texts)} texts"
    _same_rows(acts, texts, frame)
