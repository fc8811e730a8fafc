"""Ground truth: make_concept_activations and dictionary_recovery (issue 14, item 6)."""

import numpy as np
import pytest

from skconcepts import BatchTopKSAEConcepts, NMFConcepts, SemiNMFConcepts
from skconcepts.datasets import make_concept_activations
from skconcepts.metrics import dictionary_recovery, dictionary_stability


def test_shapes_dtypes_and_unit_rows():
    X, codes, D = make_concept_activations(
        n_samples=50, n_features=12, n_concepts=5, random_state=0
    )
    assert X.shape == (50, 12) and codes.shape == (50, 5) and D.shape == (5, 12)
    assert X.dtype == codes.dtype == D.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(D, axis=1), 1.0, rtol=1e-6)
    np.testing.assert_allclose(X, codes @ D, rtol=1e-5, atol=1e-6)


def test_return_dictionary_false_returns_only_X():
    X = make_concept_activations(n_samples=10, random_state=0, return_dictionary=False)
    assert isinstance(X, np.ndarray) and X.shape == (10, 64)


def test_determinism_with_random_state():
    a = make_concept_activations(n_samples=30, random_state=3)
    b = make_concept_activations(n_samples=30, random_state=3)
    c = make_concept_activations(n_samples=30, random_state=4)
    for u, v in zip(a, b):
        np.testing.assert_array_equal(u, v)
    assert not np.array_equal(a[0], c[0])


def test_non_negative_by_default():
    X, codes, D = make_concept_activations(n_samples=200, random_state=0)
    assert (X >= 0).all() and (codes >= 0).all() and (D >= 0).all()


def test_signed_codes_and_noise():
    X, codes, D = make_concept_activations(
        n_samples=500, signed_codes=True, noise=0.1, random_state=0
    )
    assert (codes < 0).any() and (codes > 0).any() and (D < 0).any()
    residual = X - codes @ D
    assert 0.08 < residual.std() < 0.12


@pytest.mark.parametrize("sparsity", [0.05, 0.1, 0.3])
def test_sparsity_as_asked(sparsity):
    _, codes, _ = make_concept_activations(
        n_samples=4000, n_concepts=20, sparsity=sparsity, random_state=0
    )
    active = codes != 0
    assert active.any(axis=1).all()  # every row has a concept
    # Bernoulli(sparsity) per entry, plus one forced concept in empty rows
    expected = sparsity + (1 - sparsity) ** 20 / 20
    assert abs(active.mean() - expected) < 0.01
    assert np.abs(codes[active]).min() >= 0.5


def test_nmf_recovers_the_planted_dictionary():
    X, _, D = make_concept_activations(
        n_samples=2000, n_features=64, n_concepts=8, random_state=0
    )
    est = NMFConcepts(n_concepts=8, random_state=0).fit(X)
    # measured 0.99908 (default solver "hals", sparsity=0.1)
    assert dictionary_recovery(D, est.components_) >= 0.99


@pytest.mark.parametrize("top_k", ["auto", None])
def test_semi_nmf_default_recovers_where_dense_does_not(top_k):
    X, _, D = make_concept_activations(
        n_samples=5000, n_features=64, n_concepts=16, random_state=0
    )
    est = SemiNMFConcepts(n_concepts=16, top_k=top_k, random_state=0).fit(X)
    score = dictionary_recovery(D, est.components_)
    # the default sparse codes (top_k="auto": 2) identify the planted atoms;
    # dense semi-NMF codes do not (any signed mix of the atoms fits as well)
    if top_k == "auto":
        assert score >= 0.9, score
    else:
        assert score < 0.7, score


def test_batch_top_k_sae_recovers_the_planted_dictionary():
    # the bench's recovery problem (bench/bench_quality.py), measured 0.937
    X, _, D = make_concept_activations(
        n_samples=5000, n_features=64, n_concepts=16, random_state=0
    )
    sae = BatchTopKSAEConcepts(
        n_concepts=16,
        top_k=2,
        lr=1e-2,
        dead_concepts="resample",
        n_passes=60,
        random_state=0,
    ).fit(X)
    assert dictionary_recovery(D, sae.components_) >= 0.9


def test_recovery_of_itself_is_one_and_of_random_is_low():
    _, _, D = make_concept_activations(n_features=64, n_concepts=8, random_state=0)
    assert dictionary_recovery(D, D) == pytest.approx(1.0)
    assert dictionary_recovery(D, D[::-1] * 3.0) == pytest.approx(1.0)
    R = np.random.RandomState(1).standard_normal((8, 64))
    assert dictionary_recovery(D, R) < 0.5


def test_recovery_over_and_under_complete():
    _, _, D = make_concept_activations(n_features=32, n_concepts=4, random_state=0)
    R = np.random.RandomState(0).standard_normal((6, 32))
    over = np.vstack([R[:3], D, R[3:]])
    assert dictionary_recovery(D, over) == pytest.approx(1.0)
    # two of four true concepts found, the other two count as 0
    assert dictionary_recovery(D, D[:2]) == pytest.approx(0.5)


def test_recovery_matches_stability_when_square():
    _, _, D = make_concept_activations(n_features=16, n_concepts=4, random_state=0)
    L = D + 0.1 * np.random.RandomState(0).standard_normal(D.shape)
    assert dictionary_recovery(D, L) == pytest.approx(dictionary_stability(D, L))


def test_recovery_absolute_false_sees_signs():
    D = np.array([[1.0, 1.0, 0.0]])
    assert dictionary_recovery(D, -D) == pytest.approx(1.0)
    assert dictionary_recovery(D, -D, absolute=False) == pytest.approx(-1.0)


def test_recovery_errors():
    with pytest.raises(ValueError, match="true has 3 features but learned has 4"):
        dictionary_recovery(np.eye(3), np.eye(4))
    with pytest.raises(ValueError, match="learned has 1 all-zero row"):
        dictionary_recovery(np.eye(3), np.vstack([np.eye(3), np.zeros(3)]))
    with pytest.raises(ValueError, match="true must be 2-D"):
        dictionary_recovery(np.ones(3), np.eye(3))


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"n_samples": 0}, "n_samples=0"),
        ({"n_features": 2.5}, "n_features=2.5"),
        ({"n_concepts": True}, "n_concepts=True"),
        ({"sparsity": 0}, "sparsity=0"),
        ({"sparsity": 1.5}, "sparsity=1.5"),
        ({"sparsity": "dense"}, "sparsity='dense'"),
        ({"noise": -1.0}, "noise=-1.0"),
        ({"noise": float("nan")}, "noise=nan"),
    ],
)
def test_generator_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        make_concept_activations(**kwargs)
