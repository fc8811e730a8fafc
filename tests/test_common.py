"""scikit-learn conformance of every discovered estimator, and joblib round trips.

The estimators come from :func:`skconcepts.utils.discovery.all_estimators`: every
concept estimator (a subclass of ``ConceptMixin``) and the preprocessing
transformers. ``FAST_PARAMS`` keeps the checks quick; ``EXPECTED_FAILED_CHECKS``
lists, with the reason, any check that cannot hold for an estimator.
"""

import warnings

import joblib
import numpy as np
import pytest
import torch
from sklearn.base import clone
from sklearn.exceptions import ConvergenceWarning, UndefinedMetricWarning
from sklearn.utils import get_tags
from sklearn.utils.estimator_checks import parametrize_with_checks

from skconcepts.utils.discovery import all_estimators

#: the concept estimators the package promises (DESIGN.md)
PROMISED = {
    "NMFConcepts",
    "SemiNMFConcepts",
    "ConvexNMFConcepts",
    "PCAConcepts",
    "SVDConcepts",
    "ICAConcepts",
    "KMeansConcepts",
    "SparsePCAConcepts",
    "DictionaryLearningConcepts",
}

#: parameters for every estimator that has them (filtered by get_params)
_FAST = {"n_concepts": 2, "max_iter": 20, "n_passes": 2, "top_k": 1}
#: per-estimator overrides
FAST_PARAMS = {
    "SVDConcepts": {"n_concepts": 1},  # must be < n_features (2 in some checks)
    "SparsePCAConcepts": {"max_iter": 5},
    "DictionaryLearningConcepts": {"max_iter": 5},
    "NMFConcepts": {"max_iter": 5},
    "SemiNMFConcepts": {"max_iter": 5},
    "ConvexNMFConcepts": {"max_iter": 5},
}
#: {estimator name: {check name: reason}}
EXPECTED_FAILED_CHECKS: dict = {}


def _instance(cls, **params):
    accepted = cls().get_params()
    fast = {**_FAST, **FAST_PARAMS.get(cls.__name__, {})}
    return cls(**{k: v for k, v in fast.items() if k in accepted}, **params)


CONCEPTS = all_estimators(type_filter="concept")
#: the supervised concept estimators (fit needs y) and the fixed baselines
SUPERVISED = all_estimators(type_filter="supervised")
BASELINES = all_estimators(type_filter="baseline")
PREPROCESSING = [
    (name, cls)
    for name, cls in all_estimators(type_filter="transformer")
    if cls.__module__ == "skconcepts.preprocessing"
]
_CLASSES = dict(CONCEPTS + SUPERVISED + BASELINES + PREPROCESSING)
# the default of each class, plus the variants whose code paths differ
ESTIMATORS = [_instance(cls) for cls in _CLASSES.values()] + [
    _instance(_CLASSES[name], **params)
    for name, params in [
        ("PCAConcepts", {"whiten": True}),
        ("KMeansConcepts", {"membership": "soft"}),
        ("NonNegative", {"strategy": "relu"}),
        ("NonNegative", {"strategy": "shift"}),
        ("ActivationScaler", {"strategy": "standard"}),
        ("ProbeConcepts", {"method": "mean_diff"}),
        ("ProbeConcepts", {"method": "svm"}),
        ("ProbeConcepts", {"method": "centroid"}),
        ("ProbeConcepts", {"method": "linear"}),
        ("NeuronConcepts", {"units": [1, 0]}),
        ("NeuronConcepts", {"units": 1}),
    ]
    if name in _CLASSES
]


def _y(estimator, n_rows):
    """Labels for an estimator whose fit needs them (two classes), else None."""
    if not get_tags(estimator).target_tags.required:
        return None
    return np.arange(n_rows) % 2


def expected_failed_checks(estimator):
    """``{check name: reason}`` of the checks ``estimator`` cannot pass."""
    return EXPECTED_FAILED_CHECKS.get(type(estimator).__name__, {})


def test_discovery_finds_every_promised_estimator():
    names = {name for name, _ in CONCEPTS}
    assert PROMISED <= names, f"not discovered: {sorted(PROMISED - names)}"
    assert {"NonNegative", "ActivationScaler"} <= {name for name, _ in PREPROCESSING}
    assert [name for name, _ in SUPERVISED] == ["ProbeConcepts"]
    assert [name for name, _ in BASELINES] == ["NeuronConcepts"]


@parametrize_with_checks(ESTIMATORS, expected_failed_checks=expected_failed_checks)
def test_sklearn_compatible(estimator, check):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)  # the small max_iter
        check(estimator)


@pytest.mark.parametrize("estimator", ESTIMATORS, ids=repr)
def test_joblib_round_trip(estimator, tmp_path):
    rng = np.random.default_rng(0)
    X = np.abs(rng.normal(size=(60, 8))).astype(np.float32)  # fits NMF too
    est = clone(estimator).set_params(
        **({"random_state": 0} if "random_state" in estimator.get_params() else {})
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        est.fit(X, _y(est, len(X)))
    joblib.dump(est, tmp_path / "est.joblib")
    loaded = joblib.load(tmp_path / "est.joblib")
    np.testing.assert_array_equal(loaded.transform(X), est.transform(X))
    if hasattr(est, "components_"):
        np.testing.assert_array_equal(loaded.components_, est.components_)


@pytest.mark.parametrize("estimator", ESTIMATORS, ids=repr)
def test_one_row_gives_one_row(estimator):
    """One-row input: 2-D one-row outputs everywhere (SparsePCA squeezed to (k,))."""
    rng = np.random.default_rng(0)
    X = np.abs(rng.normal(size=(60, 8))).astype(np.float32)
    est = clone(estimator)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        est.fit(X, _y(est, len(X)))
    C = est.transform(X[:1])
    k = C.shape[1]
    assert C.shape == (1, k) and C.dtype == np.float32
    np.testing.assert_allclose(C, est.transform(X[:3])[:1], rtol=1e-4, atol=1e-5)
    C_t = est.transform(torch.from_numpy(X[:1]))
    assert tuple(C_t.shape) == (1, k)
    if hasattr(est, "inverse_transform"):
        assert est.inverse_transform(C).shape == (1, 8)
        assert tuple(est.inverse_transform(C_t).shape) == (1, 8)
    if hasattr(est, "score"):
        with pytest.warns(UndefinedMetricWarning, match="R² of one row"):
            assert np.isfinite(est.score(X[:1]))
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            C_fit = clone(estimator).fit_transform(X[:1], _y(estimator, 1))
    except ValueError as exc:  # a method that cannot learn from one row says so
        supervised = _y(estimator, 1) is not None  # one row holds one class
        assert ("needs at least two classes" if supervised else "n_samples = 1") in (
            str(exc)
        )
    else:
        assert C_fit.shape == (1, C_fit.shape[1])
