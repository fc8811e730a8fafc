"""Dense NMF and semi-NMF (``top_k=None``) against the references' own solvers.

Every estimator here is built with ``top_k=None`` and an explicit ``init``, so
the checks hold whatever the class defaults are. Quality is the training R²
(1 - FVU) of the codes each fit returns, on the real MiniLM activations of the
conftest (``signed_X``; ``positive_X`` is its ReLU).
"""

import numpy as np
import pytest
import torch
from sklearn.decomposition import NMF

from skconcepts.concepts import NMFConcepts, SemiNMFConcepts


def r2(X, X_hat):
    X = np.asarray(X, dtype=np.float64)
    X_hat = np.asarray(X_hat, dtype=np.float64)
    return 1 - np.sum((X - X_hat) ** 2) / np.sum((X - X.mean(axis=0)) ** 2)


def rank_bound(X, k):
    """R² of the best rank-``k`` approximation (no mean): no ``Z @ D`` beats it."""
    X64 = np.asarray(X, dtype=np.float64)
    evals = np.linalg.eigvalsh(X64.T @ X64)[::-1]
    return 1 - evals[k:].sum() / np.sum((X64 - X64.mean(axis=0)) ** 2)


def fit_r2(est, X):
    codes = est.fit_transform(X)
    return r2(X, codes @ est.components_)


# --------------------------------------------------------------- semi-NMF
def _interpreto_semi_nmf(X, k):
    """interpreto 0.5.2's SemiNMF concept model with its defaults, seed 0.

    ``interpreto.concepts.SemiNMFConcepts.fit`` calls exactly this model's
    ``fit`` (500 multiplicative updates at most, tol 1e-4); overcomplete ships
    the same file, used when interpreto is absent.
    """
    try:
        from interpreto._vendor.overcomplete.optimization import SemiNMF
    except ImportError:
        SemiNMF = pytest.importorskip("overcomplete.optimization").SemiNMF
    torch.manual_seed(0)
    Z, D = SemiNMF(nb_concepts=k, device="cpu").fit(torch.from_numpy(X))
    return r2(X, (Z @ D).numpy())


@pytest.mark.parametrize("init", ["kmeans", "random"])
@pytest.mark.parametrize("k", [8, 20])
def test_semi_nmf_r2_at_least_interpretos(signed_X, k, init):
    """Ours reaches at least interpreto's R² on the same rows (its own solver)."""
    X = signed_X
    est = SemiNMFConcepts(n_concepts=k, random_state=0, top_k=None, init=init)
    ours = fit_r2(est, X)
    ref = _interpreto_semi_nmf(X, k)
    assert ours >= ref - 1e-4, (ours, ref)
    # a real fit: within 0.5 points of the best any k-concept factorisation does
    bound = rank_bound(X, k)
    assert bound - 0.005 <= ours <= bound + 1e-6, (ours, bound)


def test_semi_nmf_rank_bound_is_below_pca_with_mean(signed_X):
    """PCA's R² counts its mean as an extra direction: above the rank-k bound.

    This is why a k-concept semi-NMF cannot match PCA's R² at the same k.
    """
    from sklearn.decomposition import PCA

    X, k = signed_X, 20
    pca = PCA(n_components=k).fit(X)
    r2_pca = r2(X, pca.inverse_transform(pca.transform(X)))
    bound = rank_bound(X, k)
    est = SemiNMFConcepts(n_concepts=k, random_state=0, top_k=None, init="kmeans")
    assert fit_r2(est, X) <= bound + 1e-6 < r2_pca


# -------------------------------------------------------------------- NMF
@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_nmf_r2_matches_sklearns_in_fewer_iterations(positive_X):
    """Same init (nndsvda), same stopping rule, k in {8, 16, 20}.

    NMF is non-convex: from the same start the two solvers may settle in
    different local optima (here ours is 0.002 lower at k=8 and 0.0007 higher at
    k=16), so each k gets a tolerance and the mean gap a tight one.
    """
    X = positive_X
    gaps = []
    for k in (8, 16, 20):
        est = NMFConcepts(n_concepts=k, random_state=0, top_k=None, init="nndsvda")
        ours = fit_r2(est, X)
        ref = NMF(n_components=k, init="nndsvda", solver="cd", random_state=0)
        ref.set_params(max_iter=500, tol=1e-4)
        r2_ref = r2(X, ref.fit_transform(X) @ ref.components_)
        assert ours >= r2_ref - 0.005, (k, ours, r2_ref)
        assert est.n_iter_ < ref.n_iter_, (k, est.n_iter_, ref.n_iter_)
        gaps.append(ours - r2_ref)
    assert np.mean(gaps) >= -1e-3, gaps


def test_nmf_r2_at_least_overcompletes_hals(positive_X):
    """Fixed seed, overcomplete's HALS from its own nndsvda start (k=8).

    At k=8 on these rows ours settles in a local optimum 0.0023 below theirs
    (sklearn's too, see above): 0.005 is the tolerance of the older checks.
    """
    from overcomplete.optimization import NMF as OcNMF

    X = positive_X
    est = NMFConcepts(n_concepts=8, random_state=0, top_k=None, init="nndsvda")
    ours = fit_r2(est, X)
    torch.manual_seed(0)
    Z, D = OcNMF(8, solver="hals", tol=1e-4).fit(torch.from_numpy(X), max_iter=500)
    assert ours >= r2(X, (Z @ D).numpy()) - 0.005


# ----------------------------------------------------------------- solvers
def test_gram_matches_float64_product(signed_X):
    """The numpy (syrk) Gram of the CPU path equals X^T X to float32 accuracy."""
    from skconcepts.concepts import _solvers as S

    X = torch.from_numpy(signed_X)
    G = S._gram(X)
    ref = signed_X.astype(np.float64).T @ signed_X.astype(np.float64)
    assert G.shape == (384, 384) and G.dtype == torch.float32
    assert np.abs(G.numpy() - ref).max() <= 1e-5 * np.abs(ref).max()
    # a strided view (every other row) gives the Gram of those rows
    np.testing.assert_allclose(
        S._gram(X[::2]).numpy(), (X[::2].T @ X[::2]).numpy(), rtol=1e-4, atol=1e-2
    )
