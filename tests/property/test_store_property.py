"""Store round trips are bitwise for every stored dtype.

``write_array_store(X, ...)[:]`` is, bit for bit, ``X`` cast to the stored
dtype (float32, float16 within its range, bfloat16) and read back as float32,
whatever the shard size; rerunning the same call resumes to the same store; and
``extract_to_store`` of texts holds exactly the rows and units of
``transform``/``units`` of those texts.

Hypothesis reuses function-scoped fixtures across examples, so every example
writes into its own ``tempfile.TemporaryDirectory``.
"""

import tempfile
import warnings

import numpy as np
import pandas as pd
import pytest
import torch
from hypothesis import example, given
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from skconcepts.store import ActivationStore, extract_to_store, write_array_store

from ._strategies import TEXT, prop_settings

pytestmark = pytest.mark.filterwarnings(
    "ignore::skconcepts.exceptions.TruncationWarning"
)

FLOAT32_MAX = float(np.finfo(np.float32).max)
FLOAT16_MAX = float(np.finfo(np.float16).max)  # 65504
#: the largest finite float32 that bfloat16 does not round up to inf
BFLOAT16_MAX = float(torch.finfo(torch.bfloat16).max)


def _expected(X, dtype):
    """``X`` cast to ``dtype`` and back to float32 (what a store must return)."""
    if dtype == "float32":
        return X.astype(np.float32)
    if dtype == "float16":
        return X.astype(np.float16).astype(np.float32)
    return torch.from_numpy(X).to(torch.bfloat16).to(torch.float32).numpy()


def _bits(a):
    return np.ascontiguousarray(a, dtype=np.float32).view(np.uint32)


@st.composite
def _arrays(draw, dtype):
    bounds = {"float32": FLOAT32_MAX, "float16": FLOAT16_MAX, "bfloat16": BFLOAT16_MAX}
    bound = bounds[dtype]
    n = draw(st.integers(1, 40))
    d = draw(st.integers(1, 6))
    elements = st.floats(-bound, bound, width=32)  # subnormals and -0.0 included
    return draw(arrays(np.float32, (n, d), elements=elements))


@pytest.mark.parametrize("dtype", ["float32", "float16", "bfloat16"])
@prop_settings(max_examples=15)
@given(data=st.data())
def test_write_array_store_round_trip_is_bitwise(dtype, data):
    X = data.draw(_arrays(dtype), label="X")
    # at most 8 shards (each is fsynced), boundaries anywhere
    n = X.shape[0]
    shard_rows = data.draw(st.integers(-(-n // 8), n + 3), label="shard_rows")
    with tempfile.TemporaryDirectory() as folder:
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # an in-range array warns of nothing
            store = write_array_store(X, folder, shard_rows=shard_rows, dtype=dtype)
        want = _expected(X, dtype)
        assert store.shape == X.shape
        assert store.n_shards == -(-X.shape[0] // shard_rows)
        got = store[:]
        assert got.dtype == np.float32
        np.testing.assert_array_equal(_bits(got), _bits(want))
        # reopened from disk, row by row and streamed: the same bits
        reopened = ActivationStore(folder)
        np.testing.assert_array_equal(_bits(reopened.to_numpy()), _bits(want))
        idx = data.draw(
            st.lists(st.integers(-X.shape[0], X.shape[0] - 1), max_size=10),
            label="idx",
        )
        np.testing.assert_array_equal(_bits(reopened[idx]), _bits(want[idx]))
        streamed = np.concatenate(
            [np.asarray(b) for b in reopened.iter_batches(batch_size=7)]
        )
        np.testing.assert_array_equal(_bits(streamed), _bits(want))
        # the same call again resumes (nothing to do) to the same store
        again = write_array_store(X, folder, shard_rows=shard_rows, dtype=dtype)
        np.testing.assert_array_equal(_bits(again[:]), _bits(want))


@prop_settings(max_examples=10)
@given(
    X=arrays(
        np.float32,
        st.tuples(st.integers(1, 10), st.integers(1, 4)),
        elements=st.floats(-FLOAT32_MAX, FLOAT32_MAX, width=32),
    ),
    as_tensor=st.booleans(),
)
@example(X=np.array([[1e5, 1.0]], np.float32), as_tensor=False)
@example(X=np.array([[1e5, 1.0]], np.float32), as_tensor=True)
def test_float16_store_never_holds_inf_silently(X, as_tensor):
    """Out of float16's range: skconcepts warns or refuses, never a silent inf."""
    with tempfile.TemporaryDirectory() as folder:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                store = write_array_store(
                    torch.from_numpy(X) if as_tensor else X, folder, dtype="float16"
                )
            except (ValueError, OverflowError):
                return  # refused
            overflow = bool(np.isinf(store[:]).any())
        # numpy's own "overflow encountered in cast" does not count
        own = [w for w in caught if "encountered in cast" not in str(w.message)]
        assert not overflow or own, f"inf stored without a warning: {caught}"


@pytest.mark.parametrize("dtype", ["float32", "float16", "bfloat16"])
@pytest.mark.parametrize("granularity", ["token", "sentence", "sample"])
@prop_settings(max_examples=8)
@given(
    texts=st.lists(TEXT, min_size=1, max_size=6),
    shard_rows=st.integers(4, 40),
    batch_size=st.integers(1, 3),
)
def test_extract_to_store_holds_the_rows_and_units_of_transform(
    tiny_acts, dtype, granularity, texts, shard_rows, batch_size
):
    acts = tiny_acts("bert", granularity=granularity, batch_size=batch_size)
    X = acts.transform(texts)
    units = acts.units(texts)
    with tempfile.TemporaryDirectory() as folder:
        store = extract_to_store(
            acts, texts, folder, shard_rows=shard_rows, dtype=dtype
        )
        assert store.shape == X.shape
        got = store[:]
        want = _expected(X, dtype)
        # the same forward passes may batch differently: float32 tolerance,
        # then the stored cast of each (close) value
        np.testing.assert_allclose(got, want, atol=1e-5, rtol=1e-2)
        pd.testing.assert_frame_equal(
            store.units().reset_index(drop=True),
            units.reset_index(drop=True),
            check_dtype=False,
        )
