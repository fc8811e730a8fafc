"""Input bounds shared by every concept estimator (issue 12, items 2, 10, 11).

* ``n_concepts`` over what the method allows is one clear error naming the bound
  (``check_n_concepts`` and each class's ``_max_concepts`` hook); at the bound the
  fit learns exactly ``n_concepts`` concepts, never fewer.
"""

import warnings

import numpy as np
import pytest
import torch

from skconcepts.utils.discovery import all_estimators

CONCEPTS = all_estimators(type_filter="concept")

#: parameters that keep the fits quick (filtered by get_params)
_FAST = {"max_iter": 20, "n_passes": 2, "top_k": 1, "random_state": 0}


def _instance(cls, **params):
    accepted = cls().get_params()
    return cls(**{k: v for k, v in _FAST.items() if k in accepted}, **params)


def _fit(est, X):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # convergence warnings of short fits
        return est.fit(X)


#: the true bound of ``n_concepts`` for (n_samples, n_features), as in sklearn;
#: ``None``: no bound (overcomplete dictionaries are allowed)
TRUE_BOUND = {
    "PCAConcepts": lambda n, d: min(n, d),  # PCA: n_components <= min(n, d)
    "SVDConcepts": lambda n, d: min(n, d),  # TruncatedSVD randomized: rank of X
    "ICAConcepts": lambda n, d: min(n, d),  # FastICA whitening: rank of X
    "KMeansConcepts": lambda n, d: n,  # KMeans: n_clusters <= n_samples
    "NMFConcepts": None,
    "SemiNMFConcepts": None,
    "ConvexNMFConcepts": None,
    "SparsePCAConcepts": None,
    "DictionaryLearningConcepts": None,
    "SAEConcepts": None,
    "TopKSAEConcepts": None,
    "BatchTopKSAEConcepts": None,
    "JumpReLUSAEConcepts": None,
    "MPSAEConcepts": None,
}

#: shapes (n_samples, n_features): fewer rows than columns, and the reverse
SHAPES = [(5, 8), (12, 4)]


def _X(shape):
    return np.abs(np.random.default_rng(0).normal(size=shape)).astype(np.float32)


def test_every_estimator_has_a_known_bound():
    assert {name for name, _ in CONCEPTS} == set(TRUE_BOUND)


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("name, cls", CONCEPTS)
def test_hook_states_the_true_bound(name, cls, shape):
    n, d = shape
    truth = TRUE_BOUND[name]
    expected = None if truth is None else truth(n, d)
    assert _instance(cls)._max_concepts(n, d) == expected


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("name, cls", CONCEPTS)
def test_n_concepts_over_the_bound_is_one_clear_error(name, cls, shape):
    n, d = shape
    truth = TRUE_BOUND[name]
    if truth is None:
        pytest.skip(f"{name} has no bound (see test_fits_at_the_bound)")
    upper = truth(n, d)
    match = (
        rf"n_concepts={upper + 1} is larger than this method allows \({upper}, "
        rf"n_samples = {n}, n_features = {d}\); use n_concepts <= {upper}"
    )
    with pytest.raises(ValueError, match=match):
        _fit(_instance(cls, n_concepts=upper + 1), _X(shape))


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("name, cls", CONCEPTS)
def test_fits_at_the_bound(name, cls, shape):
    n, d = shape
    truth = TRUE_BOUND[name]
    # unbounded methods: an overcomplete dictionary, more concepts than n and d
    k = n + d if truth is None else truth(n, d)
    X = _X(shape)
    est = _fit(_instance(cls, n_concepts=k), X)
    assert est.components_.shape == (k, d)  # never silently fewer concepts
    assert est.transform(X).shape == (n, k)


def test_svd_issue_case():
    """SVDConcepts(10).fit(X[:5]) silently fitted 5 concepts (issue 12, item 2)."""
    from skconcepts.concepts import SVDConcepts

    X = _X((20, 16))
    with pytest.raises(ValueError, match=r"allows \(5, .*use n_concepts <= 5"):
        SVDConcepts(n_concepts=10).fit(X[:5])
    with pytest.raises(ValueError, match=r"allows \(4, .*use n_concepts <= 4"):
        SVDConcepts(n_concepts=10, algorithm="arpack").fit(X[:5])
    # n_components == n_features, as TruncatedSVD's randomized solver allows
    assert SVDConcepts(n_concepts=16).fit(X).components_.shape == (16, 16)
    with pytest.raises(ValueError, match="algorithm='randomized'"):
        SVDConcepts(n_concepts=1, algorithm="arpack").fit(X[:, :1])


# ------------------------------------------- item 10: values too large for float32
def _rows(shape=(30, 6)):
    return np.abs(np.random.default_rng(0).normal(size=shape))


HUGE = r"X is too large to fit: its largest \|value\| is [0-9.e+]+ .*ActivationScaler"


@pytest.mark.parametrize("scale", [1e20, 1e30])
@pytest.mark.parametrize("name, cls", CONCEPTS)
def test_huge_values_are_refused_at_fit(name, cls, scale):
    """Values of 1e19-1e30 failed deep in eigh / sampling, or gave NaN codes."""
    X = (_rows() * scale).astype(np.float32)
    est = _instance(cls, n_concepts=3)
    with pytest.raises(ValueError, match=HUGE):
        _fit(est, X)
    assert not hasattr(est, "components_")


@pytest.mark.parametrize("name, cls", CONCEPTS)
def test_values_under_the_limit_fit(name, cls):
    """Half the accepted norm still fits, with finite concepts and codes."""
    for shape in [(30, 6), (200, 12)]:
        X = _rows(shape)
        X = (X / np.linalg.norm(X) * cls._max_input_norm * 0.5).astype(np.float32)
        est = _fit(_instance(cls, n_concepts=3), X)
        assert np.isfinite(est.components_).all()
        assert np.isfinite(est.transform(X)).all()


@pytest.mark.parametrize(
    "name, cls", [(n, c) for n, c in CONCEPTS if hasattr(c, "partial_fit")]
)
def test_huge_streamed_batches_are_refused(name, cls):
    X = (_rows() * 1e20).astype(np.float32)
    with pytest.raises(ValueError, match=r"too large to fit.*ActivationScaler"):
        _fit(_instance(cls, n_concepts=3), [X[:15], X[15:]])


def test_nan_dictionary_is_never_returned(monkeypatch):
    from skconcepts.concepts import PCAConcepts

    X = _rows().astype(np.float32)
    est = PCAConcepts(2)

    def nan_fit(X):
        est.components_ = np.full((2, X.shape[1]), np.nan, dtype=np.float32)

    monkeypatch.setattr(est, "_fit", nan_fit)
    with pytest.raises(ValueError, match="non-finite concepts.*ActivationScaler"):
        est.fit(X)
    assert not hasattr(est, "components_")


def test_non_finite_codes_are_never_returned():
    from skconcepts.concepts import SVDConcepts

    est = SVDConcepts(2, random_state=0).fit(_rows().astype(np.float32))
    X = np.full((2, 6), np.finfo(np.float32).max / 2, dtype=np.float32)
    with pytest.raises(ValueError, match="not finite.*ActivationScaler"):
        est.transform(X)


def test_check_value_range():
    from skconcepts.utils._validation import check_value_range

    check_value_range(np.full((4, 4), 1e18, dtype=np.float32))  # norm 4e18
    with pytest.raises(ValueError, match=r"largest \|value\| is 1e\+19 .* 4e\+19"):
        check_value_range(np.full((4, 4), 1e19, dtype=np.float32), owner="Est")
    with pytest.raises(ValueError, match="batch 3 is too large"):
        check_value_range(torch.full((2, 2), 1e5), max_norm=1e5, name="batch 3")


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("layout", ["C", "F", "strided"])
def test_check_value_range_at_the_limit(dtype, layout):
    """Norms just below the limit pass, just above fail, whatever the layout.

    The quick pass is one dot product in X's dtype; within 1 % of the limit the
    exact float64 sum decides.
    """
    from skconcepts.utils._validation import check_value_range

    X = np.full((50, 8), 1.0, dtype=dtype)  # norm 20
    X = {"C": X, "F": np.asfortranarray(X), "strided": np.repeat(X, 2, axis=1)[:, ::2]}[
        layout
    ]
    check_value_range(X, max_norm=20.001)  # inside the 1 % band: exact sum
    check_value_range(X, max_norm=25.0)  # the quick pass
    with pytest.raises(ValueError, match="norm .* is 20"):
        check_value_range(X, max_norm=19.999)


# ----------------------------------------------- item 11: zero-variance input
@pytest.mark.parametrize("value", [0.0, 3.0])
@pytest.mark.parametrize("name, cls", CONCEPTS)
def test_constant_X_fits_something_valid_or_says_why(name, cls, value):
    """Constant or all-zero X: a finite fit, or one ValueError naming the problem.

    ``ICAConcepts`` raised a numpy inf/NaN error from inside FastICA.
    """
    X = np.full((30, 6), value, dtype=np.float32)
    est = _instance(cls, n_concepts=2)
    if name == "ICAConcepts":  # whitening divides by the (zero) variance
        with pytest.raises(ValueError, match="zero variance.*activations that vary"):
            _fit(est, X)
        return
    _fit(est, X)
    assert np.isfinite(est.components_).all()
    C = est.transform(X)
    assert C.shape == (30, 2) and np.isfinite(C).all()
    assert np.isfinite(est.inverse_transform(C)).all()
    assert np.isfinite(est.score(X))


def test_ica_rank_below_n_concepts_says_why():
    from skconcepts.concepts import ICAConcepts

    # two distinct rows: the centred X varies in one direction only
    X = np.tile(np.array([[1, 2, 3, 4], [2, 4, 6, 8.5]], np.float32), (15, 1))
    with pytest.raises(ValueError, match=r"fewer than n_concepts=3 .*whiten_solver"):
        ICAConcepts(3, random_state=0).fit(X)
    assert np.isfinite(ICAConcepts(1, random_state=0).fit(X).components_).all()


@pytest.mark.parametrize(
    "name, cls", [(n, c) for n, c in CONCEPTS if hasattr(c, "partial_fit")]
)
def test_huge_partial_fit_is_refused(name, cls):
    """SAEs' partial_fit of an array trained on 1e20 values without a word."""
    X = _rows().astype(np.float32)
    with pytest.raises(ValueError, match=r"too large to fit.*ActivationScaler"):
        _instance(cls, n_concepts=3).partial_fit(X * np.float32(1e20))
    est = _instance(cls, n_concepts=3)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        est.partial_fit(X)
        with pytest.raises(ValueError, match=r"too large to fit.*ActivationScaler"):
            est.partial_fit(X * np.float32(1e20))
