"""NMFConcepts, SemiNMFConcepts, ConvexNMFConcepts and their torch solvers.

Quality is checked against the reference implementations on real MiniLM
activations (``signed_X``/``positive_X`` from conftest): scikit-learn's NMF and
overcomplete's SemiNMF/ConvexNMF. The solver functions are checked against
scipy/numpy on small problems.
"""

import joblib
import numpy as np
import pytest
import scipy.optimize
import torch
from sklearn.decomposition import NMF
from sklearn.decomposition._nmf import _initialize_nmf
from sklearn.exceptions import NotFittedError
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

from skconcepts.concepts import ConvexNMFConcepts, NMFConcepts, SemiNMFConcepts
from skconcepts.concepts import _solvers as S

ESTIMATORS = [NMFConcepts, SemiNMFConcepts, ConvexNMFConcepts]


def r2(X, X_hat):
    X = np.asarray(X, dtype=np.float64)
    return 1 - np.sum((X - X_hat) ** 2) / np.sum((X - X.mean(axis=0)) ** 2)


@pytest.fixture(scope="module")
def X_for():
    """Real MiniLM activations suited to each class (ReLU for NMF)."""

    def get(cls, signed_X, positive_X):
        return positive_X if cls is NMFConcepts else signed_X

    return get


@pytest.fixture(scope="module")
def fitted(signed_X, positive_X):
    """One fitted estimator per class (k=8, seed 0) on the real activations."""
    out = {}
    for cls in ESTIMATORS:
        X = positive_X if cls is NMFConcepts else signed_X
        out[cls] = (cls(n_concepts=8, random_state=0).fit(X), X)
    return out


# ------------------------------------------------- quality vs the references
@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
@pytest.mark.parametrize("k", [8, 16])
def test_nmf_r2_matches_sklearn(positive_X, k):
    ours = NMFConcepts(n_concepts=k, random_state=0, top_k=None).fit(positive_X)
    ref = NMF(n_components=k, init="nndsvda", solver="cd", max_iter=200, tol=1e-4)
    W = ref.fit_transform(positive_X)
    r2_ref = r2(positive_X, W @ ref.components_)
    r2_ours = r2(positive_X, ours.transform(positive_X) @ ours.components_)
    # same objective, same init; NMF is non-convex, so local optima may differ a bit
    assert r2_ours >= r2_ref - 0.005, (r2_ours, r2_ref)
    assert ours.n_iter_ <= ref.n_iter_


def test_nmf_r2_matches_overcomplete(positive_X):
    from overcomplete.optimization import NMF as OcNMF

    X = positive_X[:1000]  # same settings: k=8, max_iter=200, tol=1e-4
    ours = NMFConcepts(n_concepts=8, random_state=0, top_k=None).fit(X)
    torch.manual_seed(0)
    Z, D = OcNMF(8, solver="hals", tol=1e-4).fit(torch.from_numpy(X), max_iter=200)
    r2_ref = r2(X, (Z @ D).numpy())
    assert ours.score(X) >= r2_ref - 0.005, (ours.score(X), r2_ref)


def test_semi_nmf_r2_matches_overcomplete(signed_X):
    from overcomplete.optimization import SemiNMF

    X = signed_X[:1000]  # same settings: k=8, max_iter=200, tol=1e-4
    ours = SemiNMFConcepts(n_concepts=8, random_state=0, top_k=None).fit(X)
    torch.manual_seed(0)
    Z, D = SemiNMF(8, tol=1e-4).fit(torch.from_numpy(X), max_iter=200)
    r2_ref = r2(X, (Z @ D).numpy())
    assert ours.score(X) >= r2_ref - 0.005, (ours.score(X), r2_ref)


def test_convex_nmf_r2_matches_overcomplete(signed_X):
    from overcomplete.optimization import ConvexNMF

    X = signed_X[:1000]  # same settings: k=8, max_iter=200, tol=1e-4
    ours = ConvexNMFConcepts(n_concepts=8, random_state=0).fit(X)
    torch.manual_seed(0)
    Z, D = ConvexNMF(8, tol=1e-4).fit(torch.from_numpy(X), max_iter=200)
    r2_ref = r2(X, (Z @ D).detach().numpy())
    assert ours.score(X) >= r2_ref - 0.005, (ours.score(X), r2_ref)
    # and it is a real fit, not just better than a diverged reference
    assert ours.score(X) > 0.3


@pytest.mark.parametrize("cls", ESTIMATORS)
def test_fit_codes_are_transform_codes(cls, fitted):
    est, X = fitted[cls]
    C = est.transform(X)
    np.testing.assert_array_equal(est.fit_transform(X), C)  # same seed: bitwise
    X_hat = est.inverse_transform(C)
    # reconstruction_err_ is the error of transform -> inverse_transform
    err = np.linalg.norm(X.astype(np.float64) - X_hat)
    np.testing.assert_allclose(est.reconstruction_err_, err, rtol=1e-4)
    np.testing.assert_allclose(est.score(X), r2(X, X_hat), rtol=1e-6)
    assert C.dtype == np.float32 and X_hat.dtype == np.float32
    assert C.shape == (X.shape[0], 8) and (C >= 0).all()
    assert 1 <= est.n_iter_ <= est.max_iter


# ------------------------------------------- reproducibility, inputs, pickling
@pytest.mark.parametrize("cls", ESTIMATORS)
def test_bitwise_reproducible_and_tensor_input(cls, fitted, signed_X, positive_X):
    est, X = fitted[cls]
    again = cls(n_concepts=8, random_state=0).fit(X)
    np.testing.assert_array_equal(again.components_, est.components_)
    from_tensor = cls(n_concepts=8, random_state=0).fit(torch.from_numpy(X))
    np.testing.assert_array_equal(from_tensor.components_, est.components_)
    C = from_tensor.transform(torch.from_numpy(X[:50]))
    assert isinstance(C, torch.Tensor) and C.dtype == torch.float32
    np.testing.assert_array_equal(C.numpy(), est.transform(X[:50]))
    # the seed matters (NNDSVD is deterministic: the seed drives init='random')
    kw = {"init": "random", "max_iter": 20} if cls is NMFConcepts else {}
    a = cls(n_concepts=8, random_state=0, **kw).fit(X)
    b = cls(n_concepts=8, random_state=1, **kw).fit(X)
    assert not np.array_equal(a.components_, b.components_)


@pytest.mark.parametrize("cls", ESTIMATORS)
def test_joblib_round_trip(cls, fitted, tmp_path):
    est, X = fitted[cls]
    path = tmp_path / "est.joblib"
    joblib.dump(est, path)
    loaded = joblib.load(path)
    np.testing.assert_array_equal(loaded.transform(X), est.transform(X))


@pytest.mark.parametrize("cls", ESTIMATORS)
def test_float32_kept(cls, fitted):
    est, X = fitted[cls]
    assert est.components_.dtype == np.float32
    assert est.transform(X[:5].astype(np.float64)).dtype == np.float32


# ------------------------------------------------------------------ convex NMF
def test_convex_components_are_convex_combinations(fitted):
    est, X = fitted[ConvexNMFConcepts]
    W = est.weights_
    assert W.shape == (8, X.shape[0]) and W.dtype == np.float32
    assert (W >= 0).all()
    np.testing.assert_allclose(W.sum(axis=1), 1.0, rtol=1e-5)
    np.testing.assert_allclose(
        est.components_, W.astype(np.float64) @ X, atol=1e-4 * np.abs(X).max()
    )


def test_convex_transform_new_data(signed_X):
    train, test = signed_X[:1200], signed_X[1200:]
    est = ConvexNMFConcepts(n_concepts=8, random_state=0).fit(train)
    C = est.transform(test)
    assert C.shape == (test.shape[0], 8) and (C >= 0).all()
    assert est.weights_.shape == (8, train.shape[0])
    assert est.score(test) > 0.25  # generalises: close to the training R2
    assert est.score(test) > est.score(train) - 0.1


class _LargestTensor(TorchDispatchMode):
    """Records the largest tensor created by any torch op."""

    largest = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in tree_flatten(out)[0]:
            if isinstance(t, torch.Tensor):
                self.largest = max(self.largest, t.numel())
        return out


@pytest.mark.parametrize("cls", ESTIMATORS)
def test_memory_linear_in_rows(cls):
    n = 3000
    X = np.abs(np.random.RandomState(0).randn(n, 6)).astype(np.float32)
    with _LargestTensor() as mode:
        cls(n_concepts=3, max_iter=3, random_state=0).fit(X).transform(X)
    assert mode.largest <= 3 * n * 6  # an n x n matrix would have 9e6 entries


# -------------------------------------------------------------------- errors
def test_nmf_negative_input_names_the_fix(signed_X):
    with pytest.raises(ValueError, match="Negative values in data") as exc:
        NMFConcepts(n_concepts=4).fit(signed_X)
    assert "SemiNMFConcepts" in str(exc.value) and "NonNegative" in str(exc.value)
    with pytest.raises(ValueError, match="SemiNMFConcepts"):
        NMFConcepts(n_concepts=4).fit(torch.from_numpy(signed_X))


@pytest.mark.parametrize("cls", ESTIMATORS)
def test_bad_input(cls):
    X = np.abs(np.random.RandomState(0).randn(40, 5)).astype(np.float32)
    est = cls(n_concepts=2, max_iter=5)
    with pytest.raises(NotFittedError):
        est.transform(X)
    bad = X.copy()
    bad[3, 2] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        cls(n_concepts=2).fit(bad)
    with pytest.raises(ValueError, match="NaN or infinity"):
        cls(n_concepts=2).fit(torch.from_numpy(bad))
    with pytest.raises(ValueError, match="2D"):
        cls(n_concepts=2).fit(X[:, 0])
    with pytest.raises(ValueError, match="n_concepts"):
        cls(n_concepts=0).fit(X)
    with pytest.raises(ValueError, match="solver"):
        cls(n_concepts=2, solver="nope").fit(X)
    est.fit(X)
    with pytest.raises(ValueError, match="5 features"):
        est.transform(X[:, :4])


def test_nndsvd_needs_enough_rows():
    X = np.abs(np.random.RandomState(0).randn(3, 5)).astype(np.float32)
    with pytest.raises(ValueError, match="init='nndsvda' needs n_concepts"):
        NMFConcepts(n_concepts=4, init="nndsvda").fit(X)
    assert NMFConcepts(n_concepts=4, max_iter=5).fit(X).components_.shape == (4, 5)


def test_oc_convex_mu_refuses_large_n():
    X = np.zeros((16385, 2), dtype=np.float32)
    with pytest.raises(ValueError, match="solver='pg'"):
        ConvexNMFConcepts(n_concepts=2, solver="oc-mu").fit(X)


# ---------------------------------------------------------- overcomplete path
def test_oc_solver_is_overcomplete(positive_X):
    """solver='oc-hals' runs overcomplete's HALS from the estimator's init."""
    from overcomplete.optimization.nmf import hierarchical_als

    X = positive_X[:400]
    est = NMFConcepts(
        n_concepts=5, solver="oc-hals", init="nndsvda", max_iter=7, top_k=None
    )
    est.fit(X)
    Zt, D = S.init_nndsvd(torch.from_numpy(X), 5, "nndsvda")
    _, D_ref = hierarchical_als(torch.from_numpy(X), Zt.T.contiguous(), D, max_iter=7)
    np.testing.assert_allclose(est.components_, D_ref.numpy(), rtol=1e-5, atol=1e-6)
    assert est.n_iter_ == 7


@pytest.mark.parametrize(
    "cls, solver",
    [
        (NMFConcepts, "oc-mu"),
        (NMFConcepts, "oc-pgd"),
        (NMFConcepts, "oc-anls"),
        (SemiNMFConcepts, "oc-mu"),
        (SemiNMFConcepts, "oc-pgd"),
        (ConvexNMFConcepts, "oc-mu"),
        (ConvexNMFConcepts, "oc-pgd"),
    ],
)
def test_oc_solvers_run_and_are_seeded(cls, solver, signed_X, positive_X):
    X = (positive_X if cls is NMFConcepts else signed_X)[:300]
    a = cls(n_concepts=4, solver=solver, max_iter=10, random_state=0).fit(X)
    b = cls(n_concepts=4, solver=solver, max_iter=10, random_state=0).fit(X)
    assert a.components_.shape == (4, X.shape[1])
    assert np.isfinite(a.components_).all()
    np.testing.assert_array_equal(a.components_, b.components_)
    if cls is ConvexNMFConcepts:
        np.testing.assert_allclose(a.weights_.sum(axis=1), 1.0, rtol=1e-5)


# -------------------------------------------------------------------- progress
@pytest.mark.parametrize(
    "cls, desc",
    [(NMFConcepts, "NMF"), (SemiNMFConcepts, "semi"), (ConvexNMFConcepts, "convex")],
)
def test_progress_bar(cls, desc, capsys):
    X = np.abs(np.random.RandomState(0).randn(60, 5)).astype(np.float32)
    cls(n_concepts=2, max_iter=5).fit(X)
    assert capsys.readouterr().err == ""
    cls(n_concepts=2, max_iter=5, progress=True).fit(X).transform(X)
    err = capsys.readouterr().err
    assert desc in err and "transform" in err


# ------------------------------------------------------------------- solvers
def test_nnls_codes_match_scipy():
    rng = np.random.RandomState(0)
    D = rng.randn(5, 12).astype(np.float32)  # signed dictionary (semi-NMF case)
    X = rng.randn(30, 12).astype(np.float32)
    Z = S.nnls_codes(
        torch.from_numpy(X), torch.from_numpy(D), tol=1e-7, max_sweeps=2000
    )
    ref = np.stack([scipy.optimize.nnls(D.T.astype(np.float64), x)[0] for x in X])
    np.testing.assert_allclose(Z.numpy(), ref, atol=2e-4)


def test_nnls_codes_row_independent():
    rng = np.random.RandomState(1)
    D = torch.from_numpy(np.abs(rng.randn(4, 3)).astype(np.float32))
    X = torch.from_numpy(rng.rand(20, 3).astype(np.float32))
    full = S.nnls_codes(X, D, batch_size=7)
    rows = torch.cat([S.nnls_codes(X[i : i + 1], D) for i in range(20)])
    torch.testing.assert_close(full, rows, rtol=0, atol=1e-7)


@pytest.mark.parametrize("k", [6, 80])  # 80 > 64 goes through the blocked sweeps
def test_hals_sweeps_reach_nnls_optimum(k):
    rng = np.random.RandomState(k)
    D = torch.from_numpy(np.abs(rng.randn(k, 100)).astype(np.float32))
    X = torch.from_numpy(np.abs(rng.randn(50, 100)).astype(np.float32))
    Zt = torch.zeros(k, 50)
    S.hals_sweeps_(Zt, D @ X.T, D @ D.T, 300)
    ref = np.stack(
        [scipy.optimize.nnls(D.double().numpy().T, x)[0] for x in X.double().numpy()]
    )
    obj = float(torch.sum((X - Zt.T @ D).double() ** 2))
    obj_ref = float(np.sum((X.double().numpy() - ref @ D.double().numpy()) ** 2))
    assert obj <= obj_ref * (1 + 1e-4)


def test_blocked_sweeps_equal_plain_sweeps():
    rng = np.random.RandomState(0)
    k, m = 70, 40
    Zt0 = torch.from_numpy(np.abs(rng.randn(k, m)).astype(np.float32))
    Ct = torch.from_numpy(rng.randn(k, m).astype(np.float32))
    A = torch.from_numpy(rng.randn(k, 90).astype(np.float32))
    B = A @ A.T
    blocked = S.hals_sweeps_(Zt0.clone(), Ct, B, 2)  # k > 64: blocked
    plain = Zt0.clone()
    inv = 1 / torch.diagonal(B)
    for _ in range(2):
        for j in range(k):
            plain[j] = torch.clamp(plain[j] + (Ct[j] - B[j] @ plain) * inv[j], min=0)
    torch.testing.assert_close(blocked, plain, rtol=1e-4, atol=1e-5)


def test_largest_eigenvalue_gram_matches_numpy():
    X = np.random.RandomState(0).randn(300, 20).astype(np.float32)
    ref = np.linalg.norm(X.astype(np.float64), ord=2) ** 2
    lam = S.largest_eigenvalue_gram(torch.from_numpy(X), n_iter=300)
    np.testing.assert_allclose(float(lam), ref, rtol=1e-4)


def test_least_squares_dictionary_matches_lstsq():
    rng = np.random.RandomState(0)
    Z = np.abs(rng.randn(50, 4))
    X = rng.randn(50, 7)
    Zt = torch.tensor(Z.T, dtype=torch.float32)
    Xt = torch.tensor(X, dtype=torch.float32)
    D = S.least_squares_dictionary(Zt @ Xt, Zt @ Zt.T)
    ref = np.linalg.lstsq(Z, X, rcond=None)[0]
    np.testing.assert_allclose(D.numpy(), ref, rtol=1e-4, atol=1e-5)


def test_squared_error_matches_direct():
    rng = np.random.RandomState(0)
    X = torch.from_numpy(rng.randn(60, 9).astype(np.float32))
    Z = torch.from_numpy(np.abs(rng.randn(60, 3)).astype(np.float32))
    D = torch.from_numpy(rng.randn(3, 9).astype(np.float32))
    err = S.squared_error(S.sum_squares(X), Z.T @ X, Z.T @ Z, D)
    direct = np.sum((X.double().numpy() - Z.double().numpy() @ D.double().numpy()) ** 2)
    np.testing.assert_allclose(float(err), direct, rtol=1e-5)


@pytest.mark.parametrize("d", [30, 1100])  # Gram path, randomized path
def test_top_singular_matches_numpy(d):
    rng = np.random.RandomState(0)
    scales = np.linspace(10, 1, 8)
    X = (rng.randn(200, 8) * scales) @ rng.randn(8, d) + 0.01 * rng.randn(200, d)
    X = X.astype(np.float32)
    U, s, Vt = S.top_singular(torch.from_numpy(X), 4, torch.Generator().manual_seed(0))
    s_ref = np.linalg.svd(X.astype(np.float64), compute_uv=False)[:4]
    np.testing.assert_allclose(s.numpy(), s_ref, rtol=1e-3)
    recon = (U * s) @ Vt
    _, _, vt_ref = np.linalg.svd(X.astype(np.float64), full_matrices=False)
    proj = X.astype(np.float64) @ vt_ref[:4].T @ vt_ref[:4]
    np.testing.assert_allclose(recon.numpy(), proj, atol=1e-3 * np.abs(proj).max())


def test_init_nndsvd_matches_sklearn(positive_X):
    X = positive_X[:500]
    W_ref, H_ref = _initialize_nmf(
        X.astype(np.float64), 6, init="nndsvd", random_state=0
    )
    Zt, D = S.init_nndsvd(torch.from_numpy(X), 6, "nndsvd")
    # sklearn's randomized SVD vs our exact one: equal up to SVD accuracy
    np.testing.assert_allclose(D.numpy(), H_ref, atol=2e-3 * np.abs(H_ref).max())
    np.testing.assert_allclose(Zt.T.numpy(), W_ref, atol=2e-3 * np.abs(W_ref).max())
    # nndsvda: the same, with the zeros filled with the mean of X
    Zt_a, D_a = S.init_nndsvd(torch.from_numpy(X), 6, "nndsvda")
    torch.testing.assert_close(D_a, torch.where(D == 0, X.mean(), D))
    torch.testing.assert_close(Zt_a, torch.where(Zt == 0, X.mean(), Zt))


def test_init_kmeans_weights_are_memberships(signed_X):
    X = torch.from_numpy(signed_X)
    W, D = S.init_kmeans(X, 5, torch.Generator().manual_seed(0))
    assert W.shape == (5, X.shape[0])
    torch.testing.assert_close(W.sum(dim=1), torch.ones(5))
    assert torch.equal((W > 0).sum(dim=0), torch.ones(X.shape[0], dtype=torch.long))
    torch.testing.assert_close(D, W @ X)


# ----------------------------------------------------------------------- GPU
@pytest.mark.gpu
@pytest.mark.parametrize("cls", ESTIMATORS)
def test_cuda_tensor_stays_on_device(cls, signed_X, positive_X):
    X = torch.from_numpy(positive_X if cls is NMFConcepts else signed_X).cuda()
    est = cls(n_concepts=8, random_state=0, device="cuda").fit(X)
    C = est.transform(X)
    assert C.is_cuda and C.dtype == torch.float32
    cpu = cls(n_concepts=8, random_state=0).fit(X.cpu())
    assert abs(est.score(X) - cpu.score(X.cpu())) < 0.02
