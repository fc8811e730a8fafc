"""Truncation limits are honoured, and preprocessing keeps the input dtype.

- ``max_length`` is honoured: a text never has more token rows than
  ``max_length`` allows, and the default never exceeds the model's positions;
- ``NonNegative`` and ``ActivationScaler`` return the dtype they are given
  (float16, float32, float64), as their docstrings promise.
"""

import warnings

import numpy as np
import pytest
from hypothesis import example, given
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from skconcepts import SplitPointActivations
from skconcepts.preprocessing import ActivationScaler, NonNegative

from ._strategies import TEXTS, prop_settings

pytestmark = pytest.mark.filterwarnings(
    "ignore::skconcepts.exceptions.TruncationWarning"
)

#: special tokens the tiny BERT adds ([CLS] ... [SEP])
N_SPECIAL = 2


@pytest.mark.parametrize("arch", ["bert", "gpt2"])
@prop_settings(max_examples=15)
@given(texts=TEXTS, max_length=st.integers(N_SPECIAL + 1, 40))
@example(texts=["word " * 60, "x"], max_length=N_SPECIAL + 1)
def test_token_rows_never_exceed_max_length(tiny_acts, arch, texts, max_length):
    acts = tiny_acts(arch, granularity="token", max_length=max_length)
    units = acts.units(texts)
    assert acts.transform(texts).shape[0] == len(units)
    counts = np.bincount(units["sample"].to_numpy(), minlength=len(texts))
    assert counts.max(initial=0) <= max_length, (counts, max_length)


def test_max_length_one_is_capped_or_refused(tiny_acts):
    text = "hello world foo bar"
    try:
        acts = tiny_acts("bert", granularity="token", max_length=1)
        n_rows = acts.transform([text]).shape[0]
    except ValueError:
        return  # refused
    assert n_rows <= 1, f"max_length=1 gave {n_rows} token rows"


def test_default_max_length_fits_the_model(tiny_models):
    model, tokenizer = tiny_models("bert")  # tokenizer 512, model 128 positions
    acts = SplitPointActivations(model, tokenizer=tokenizer, split_point=0).fit()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the cap may warn
        X = acts.transform(["word " * 400])
    assert 0 < X.shape[0] <= 128


def _dtype_params():
    for cls in (NonNegative, ActivationScaler):
        for dtype in ("float16", "float32", "float64"):
            yield pytest.param(cls, dtype, id=f"{cls.__name__}-{dtype}")


@pytest.mark.parametrize("cls, dtype", list(_dtype_params()))
@prop_settings(max_examples=10)
@given(data=st.data())
def test_preprocessing_keeps_the_input_dtype(cls, dtype, data):
    shape = data.draw(st.tuples(st.integers(2, 20), st.integers(1, 6)), label="shape")
    elements = st.floats(-100, 100, width=16 if dtype == "float16" else 32)
    X = data.draw(arrays(np.dtype(dtype), shape, elements=elements), label="X")
    est = cls().fit(X)
    for out in (est.transform(X), cls().fit_transform(X)):
        assert out.dtype == X.dtype, (out.dtype, X.dtype)
        assert out.shape[0] == X.shape[0]  # NonNegative "split" doubles columns
