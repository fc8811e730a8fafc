"""Every concept estimator: ``inverse_transform(transform(X))`` has X's shape and dtype.

Parametrized over :func:`skconcepts.utils.discovery.all_estimators` (every
concept estimator, the SAEs included) with the fast parameters of
``tests/test_common.py``; ``X`` is drawn by hypothesis (finite float32 of
moderate range, non-negative where the estimator's tags say ``positive_only``).
"""

import warnings

import numpy as np
import pytest
from hypothesis import example, given
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from sklearn.base import clone
from sklearn.utils import get_tags

from skconcepts.utils.discovery import all_estimators

from ._strategies import prop_settings

#: parameters for every estimator that has them (as tests/test_common.py)
_FAST = {"n_concepts": 2, "max_iter": 20, "n_passes": 2, "top_k": 1}
FAST_PARAMS = {
    "SparsePCAConcepts": {"max_iter": 5},
    "DictionaryLearningConcepts": {"max_iter": 5},
    "NMFConcepts": {"max_iter": 5},
    "SemiNMFConcepts": {"max_iter": 5},
    "ConvexNMFConcepts": {"max_iter": 5},
}

CONCEPTS = all_estimators(type_filter="concept")


def _instance(cls):
    accepted = cls().get_params()
    params = {**_FAST, **FAST_PARAMS.get(cls.__name__, {}), "random_state": 0}
    return cls(**{k: v for k, v in params.items() if k in accepted})


def _params(xfail=None):
    """One pytest param per estimator; ``xfail``: {name: reason} (strict)."""
    xfail = xfail or {}
    out = []
    for name, cls in CONCEPTS:
        marks = []
        if name in xfail:
            marks = [pytest.mark.xfail(strict=True, reason=xfail[name])]
        out.append(pytest.param(cls, id=name, marks=marks))
    return out


@st.composite
def matrices(draw, positive, d, min_rows=6, max_rows=30):
    """A finite float32 matrix of moderate range with at least ``min_rows`` rows."""
    n = draw(st.integers(min_rows, max_rows))
    low = 0.0 if positive else -100.0
    elements = st.floats(low, 100.0, width=32, allow_subnormal=False)
    return draw(arrays(np.float32, (n, d), elements=elements))


def _draw_X(data, est, **kwargs):
    """X for ``est``; for ICA made full rank (degenerate X: the last test)."""
    positive = get_tags(est).input_tags.positive_only
    d = data.draw(st.integers(3, 8), label="n_features")
    X = data.draw(matrices(positive, d, **kwargs), label="X")
    if type(est).__name__ == "ICAConcepts":
        rng = np.random.default_rng(X.shape[0])
        X = X + rng.uniform(0, 1, X.shape).astype(np.float32)
    return X, positive


def _fit(est, X):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # convergence at the small max_iter
        return est.fit(X)


def _check_round_trip(est, X):
    Z = est.transform(X)
    assert Z.shape == (X.shape[0], est.components_.shape[0]), Z.shape
    R = est.inverse_transform(Z)
    assert R.shape == X.shape, (R.shape, X.shape)
    assert R.dtype == np.float32, R.dtype
    assert np.isfinite(R).all()


@pytest.mark.parametrize("cls", _params())
@prop_settings(max_examples=15)
@given(data=st.data())
def test_inverse_transform_of_transform_has_shape_and_dtype(cls, data):
    est = _instance(cls)
    X, positive = _draw_X(data, est)
    _fit(est, X)
    _check_round_trip(est, X)
    # new rows, fewer or more than fitted (one row: the next test)
    new = matrices(positive, X.shape[1], min_rows=2, max_rows=40)
    _check_round_trip(est, data.draw(new, label="X_new"))


@pytest.mark.parametrize(
    "cls",
    _params(),
)
@prop_settings(max_examples=5)
@given(data=st.data())
def test_one_row_round_trips(cls, data):
    est = _instance(cls)
    X, _ = _draw_X(data, est)
    _fit(est, X)
    _check_round_trip(est, X[:1])


_DEGENERATE = {
    "zeros": np.zeros((10, 4), np.float32),
    "constant": np.full((10, 4), 3.0, np.float32),
    "one entry": np.pad(np.ones((1, 1), np.float32), ((0, 9), (0, 3))),
    "rank one": np.outer(np.arange(1, 11), np.ones(4)).astype(np.float32),
}


@pytest.mark.parametrize(
    "cls",
    _params(),
)
@prop_settings(max_examples=len(_DEGENERATE))
@given(name=st.sampled_from(sorted(_DEGENERATE)))
@example(name="zeros")
def test_degenerate_X_round_trips_or_is_refused_clearly(cls, name):
    """Constant or low-rank X: a result of the right shape, or a clear error.

    A clear error names ``X`` (or ``n_concepts``); an error from deep inside
    numpy/scipy (``array must not contain infs or NaNs``) is not one.
    """
    X = _DEGENERATE[name]
    est = _instance(cls)
    try:
        _fit(clone(est), X)
    except ValueError as exc:
        assert "X" in str(exc) or "n_concepts" in str(exc), str(exc)
        return
    _check_round_trip(_fit(clone(est), X), X)
