"""Metrics against direct numpy computations; scorers on estimators and pipelines."""

import numpy as np
import pytest
import torch
from sklearn.base import BaseEstimator
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from skconcepts import NMFConcepts, PCAConcepts, metrics
from skconcepts.concepts._base import ConceptMixin
from skconcepts.datasets import make_concept_activations


class TruncatedSVDish(ConceptMixin, BaseEstimator):
    """Tiny ConceptMixin: top right-singular vectors, codes = X @ V.T."""

    def __init__(self, n_concepts=2, *, random_state=None):
        self.n_concepts = n_concepts
        self.random_state = random_state

    def _fit(self, X):
        _, _, vt = np.linalg.svd(X, full_matrices=False)
        rng = np.random.default_rng(self.random_state)
        sign = rng.choice([-1.0, 1.0], size=(self.n_concepts, 1))
        self.components_ = (vt[: self.n_concepts] * sign).astype(np.float32)

    def _transform(self, X):
        return X @ self.components_.T


@pytest.fixture
def rng():
    return np.random.default_rng(0)


@pytest.fixture
def X(rng):
    return rng.normal(size=(30, 6))


@pytest.fixture
def C(rng):
    C = rng.normal(size=(20, 5))
    C[np.abs(C) < 0.7] = 0.0
    C[:, 3] = 0.0  # a dead concept
    C[0] = 0.0  # an all-zero row
    return C


def test_reconstruction_metrics_match_numpy(X, rng):
    X_hat = X + 0.3 * rng.normal(size=X.shape)
    mse = np.mean((X - X_hat) ** 2)
    fvu = ((X - X_hat) ** 2).sum() / ((X - X.mean(0)) ** 2).sum()
    assert metrics.reconstruction_mse(X, X_hat) == pytest.approx(mse, rel=1e-12)
    assert metrics.fraction_variance_unexplained(X, X_hat) == pytest.approx(fvu)
    assert metrics.reconstruction_r2(X, X_hat) == pytest.approx(1 - fvu)
    # tensors (float32) give the same values
    got = metrics.reconstruction_mse(torch.tensor(X), torch.tensor(X_hat))
    assert got == pytest.approx(mse)


def test_reconstruction_r2_matches_concept_score(X):
    est = TruncatedSVDish(3).fit(X)
    X_hat = est.inverse_transform(est.transform(X))
    assert metrics.reconstruction_r2(X, X_hat) == pytest.approx(est.score(X), abs=1e-6)


def test_fvu_of_constant_X():
    X = np.ones((4, 2))
    assert metrics.fraction_variance_unexplained(X, X) == 0.0
    assert metrics.fraction_variance_unexplained(X, X + 1) == 1.0


def test_sparsity_metrics_match_numpy(C):
    k = C.shape[1]
    l0 = np.count_nonzero(C, axis=1)
    l1 = np.abs(C).sum(1)
    hoyer = []
    for row in C:
        n2 = np.sqrt((row**2).sum())
        r = 1.0 if n2 == 0 else np.abs(row).sum() / n2
        hoyer.append((np.sqrt(k) - r) / (np.sqrt(k) - 1))
    np.testing.assert_array_equal(metrics.l0_sparsity(C, per_row=True), l0)
    assert metrics.l0_sparsity(C) == pytest.approx(l0.mean())
    assert metrics.l0_sparsity(C, tol=1.5) == pytest.approx(
        (np.abs(C) > 1.5).sum(1).mean()
    )
    np.testing.assert_allclose(metrics.l1_sparsity(C, per_row=True), l1)
    assert metrics.l1_sparsity(C) == pytest.approx(l1.mean())
    np.testing.assert_allclose(metrics.hoyer_sparsity(C, per_row=True), hoyer)
    assert metrics.hoyer_sparsity(C) == pytest.approx(np.mean(hoyer))
    assert metrics.dead_concept_fraction(C) == pytest.approx(1 / 5)
    assert metrics.dead_concept_fraction(C, tol=10.0) == 1.0


def test_hoyer_extremes():
    one_hot = np.eye(4)
    dense = np.ones((3, 4))
    np.testing.assert_allclose(metrics.hoyer_sparsity(one_hot, per_row=True), 1.0)
    np.testing.assert_allclose(metrics.hoyer_sparsity(dense, per_row=True), 0.0)


def test_hoyer_matches_overcomplete(C):
    from overcomplete.metrics import hoyer

    nz = C[np.abs(C).sum(1) > 0]
    ref = hoyer(torch.tensor(nz)).numpy()
    np.testing.assert_allclose(metrics.hoyer_sparsity(nz, per_row=True), ref, atol=1e-5)


def test_collinearity_matches_numpy(rng):
    D = rng.normal(size=(5, 8))
    U = D / np.linalg.norm(D, axis=1, keepdims=True)
    cos = U @ U.T
    off = ~np.eye(5, dtype=bool)
    assert metrics.dictionary_collinearity(D) == pytest.approx(np.abs(cos[off]).max())
    assert metrics.dictionary_collinearity(D, absolute=False) == pytest.approx(
        cos[off].max()
    )


def test_stability_matches_brute_force(rng):
    import itertools

    D1 = rng.normal(size=(4, 6))
    D2 = rng.normal(size=(4, 6))
    U1 = D1 / np.linalg.norm(D1, axis=1, keepdims=True)
    U2 = D2 / np.linalg.norm(D2, axis=1, keepdims=True)
    cos = np.abs(U1 @ U2.T)
    best = max(
        np.mean([cos[i, p[i]] for i in range(4)])
        for p in itertools.permutations(range(4))
    )
    value, rows, cols = metrics.dictionary_stability(D1, D2, return_matching=True)
    assert value == pytest.approx(best)
    assert sorted(cols.tolist()) == [0, 1, 2, 3]
    # a permuted, rescaled, sign-flipped copy is perfectly stable
    perm = rng.permutation(4)
    D3 = -3.0 * D1[perm]
    assert metrics.dictionary_stability(D1, D3) == pytest.approx(1.0)
    assert metrics.dictionary_stability(D1, -D3, absolute=False) == pytest.approx(1)
    assert metrics.dictionary_stability(D1, D3, absolute=False) < 0.9
    # unequal numbers of concepts: min(k1, k2) pairs
    assert metrics.dictionary_stability(D1[:2], D3) == pytest.approx(1.0)


@pytest.mark.parametrize(
    "call, match",
    [
        (
            lambda: metrics.reconstruction_mse(np.ones((2, 3)), np.ones((2, 2))),
            r"X has shape \(2, 3\) but X_hat has shape \(2, 2\)",
        ),
        (lambda: metrics.l0_sparsity(np.ones(3)), r"C must be 2-D .*shape \(3,\)"),
        (lambda: metrics.hoyer_sparsity(np.ones((3, 1))), "at least 2 concepts"),
        (lambda: metrics.dictionary_collinearity(np.zeros((2, 3))), "all-zero row"),
        (
            lambda: metrics.dictionary_stability(np.ones((2, 3)), np.ones((2, 4))),
            "D1 has 3 features but D2 has 4",
        ),
        (lambda: metrics.get_scorer("r2"), "'r2' is not a skconcepts scorer"),
    ],
)
def test_errors(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def test_scorers_on_estimator_and_pipeline(X):
    scaler = StandardScaler().fit(X)
    Xs = scaler.transform(X)
    est = TruncatedSVDish(3).fit(Xs)
    pipe = make_pipeline(StandardScaler(), TruncatedSVDish(3)).fit(X)
    C = est.transform(Xs)
    X_hat = est.inverse_transform(C)
    expected = {
        "reconstruction_r2": metrics.reconstruction_r2(Xs, X_hat),
        "neg_reconstruction_mse": -metrics.reconstruction_mse(Xs, X_hat),
        "neg_fraction_variance_unexplained": -metrics.fraction_variance_unexplained(
            Xs, X_hat
        ),
        "neg_l0_sparsity": -metrics.l0_sparsity(C),
        "neg_l1_sparsity": -metrics.l1_sparsity(C),
        "hoyer_sparsity": metrics.hoyer_sparsity(C),
        "neg_dead_concept_fraction": -metrics.dead_concept_fraction(C),
        "neg_dictionary_collinearity": -metrics.dictionary_collinearity(
            est.components_
        ),
        # SVD is unique up to sign: another seed flips signs only
        "dictionary_stability": 1.0,
        "penalized_r2": metrics.reconstruction_r2(Xs, X_hat)
        - 0.01 * est.components_.shape[0],
    }
    assert set(expected) == set(metrics.SCORERS)
    for name, value in expected.items():
        scorer = metrics.get_scorer(name)
        assert scorer(est, Xs) == pytest.approx(value, abs=1e-5), name
        assert scorer(pipe, X) == pytest.approx(value, abs=1e-5), name


def test_scorer_rejects_pipeline_without_concepts(X):
    pipe = make_pipeline(StandardScaler()).fit(X)
    with pytest.raises(TypeError, match="has no concept estimator"):
        metrics.get_scorer("reconstruction_r2")(pipe, X)
    with pytest.raises(TypeError, match="Expected a concept estimator"):
        metrics.get_scorer("reconstruction_r2")(StandardScaler().fit(X), X)


def test_scorers_in_grid_search(X):
    pipe = make_pipeline(StandardScaler(), TruncatedSVDish())
    grid = {"truncatedsvdish__n_concepts": [1, 2, 4]}
    search = GridSearchCV(
        pipe,
        grid,
        cv=2,
        scoring={
            "r2": metrics.get_scorer("reconstruction_r2"),
            "l0": metrics.get_scorer("neg_l0_sparsity"),
        },
        refit="r2",
    ).fit(X)
    # more concepts reconstruct better and are less sparse
    assert search.best_params_ == {"truncatedsvdish__n_concepts": 4}
    l0 = search.cv_results_["mean_test_l0"]
    np.testing.assert_allclose(l0, [-1.0, -2.0, -4.0])
    single = GridSearchCV(
        pipe, grid, cv=2, scoring=metrics.get_scorer("neg_l0_sparsity")
    ).fit(X)
    assert single.best_params_ == {"truncatedsvdish__n_concepts": 1}


# ------------------------------------------------- penalized R²: a search that chooses
PLANTED_GRID = {"n_concepts": [2, 3, 6, 12, 24]}


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize(
    "make, signed, noise",
    [
        (lambda: NMFConcepts(random_state=0), False, 0.0),
        (lambda: PCAConcepts(), True, 0.05),
    ],
    ids=["nmf", "pca-noisy"],
)
def test_penalized_r2_picks_the_planted_number_of_concepts(make, signed, noise, seed):
    X, _, _ = make_concept_activations(
        400, 32, 6, sparsity=0.3, signed_codes=signed, noise=noise, random_state=seed
    )
    scoring = {
        "penalized": metrics.get_scorer("penalized_r2"),
        "r2": metrics.get_scorer("reconstruction_r2"),
    }
    search = GridSearchCV(
        make(), PLANTED_GRID, scoring=scoring, refit="penalized", cv=3
    ).fit(X)
    # 6 is interior to the grid: the planted size wins ...
    assert search.best_params_ == {"n_concepts": 6}
    # ... while R² alone never falls: it does not prefer 6 over 24
    r2 = search.cv_results_["mean_test_r2"]
    assert np.all(np.diff(r2) > -1e-3)
    assert r2[-1] >= r2[2] - 1e-4


def test_penalized_r2_min_gain_trades_concepts_for_variance():
    X, _, _ = make_concept_activations(400, 32, 6, sparsity=0.3, random_state=0)
    est = NMFConcepts(6, random_state=0).fit(X)
    r2 = metrics.get_scorer("reconstruction_r2")(est, X)
    for gain in [0.0, 0.01, 0.2]:
        scorer = metrics.make_penalized_r2_scorer(min_gain=gain)
        assert scorer(est, X) == pytest.approx(r2 - 6 * gain, abs=1e-6)
    # a large min_gain asks for few, broad concepts
    search = GridSearchCV(
        NMFConcepts(random_state=0),
        PLANTED_GRID,
        scoring=metrics.make_penalized_r2_scorer(min_gain=0.2),
        cv=3,
    ).fit(X)
    assert search.best_params_["n_concepts"] < 6
    assert "min_gain=0.2" in repr(metrics.make_penalized_r2_scorer(min_gain=0.2))


@pytest.mark.parametrize("bad", [-0.1, 1.0, "0.01", True, None])
def test_penalized_r2_rejects_bad_min_gain(bad):
    with pytest.raises(ValueError, match=r"min_gain=.* must be a float in \[0, 1\)"):
        metrics.make_penalized_r2_scorer(min_gain=bad)
