"""PCA/SVD/ICA/SparsePCA/DictionaryLearning concepts against scikit-learn."""

import warnings

import joblib
import numpy as np
import pytest
import torch
from sklearn.base import clone
from sklearn.decomposition import (
    PCA,
    DictionaryLearning,
    FastICA,
    SparsePCA,
    TruncatedSVD,
)
from sklearn.exceptions import ConvergenceWarning, NotFittedError
from sklearn.utils._param_validation import InvalidParameterError

from skconcepts.concepts.linear import (
    DictionaryLearningConcepts,
    ICAConcepts,
    PCAConcepts,
    SparsePCAConcepts,
    SVDConcepts,
)


def _r2(X, X_hat):
    X = np.asarray(X, dtype=np.float64)
    resid = ((X - np.asarray(X_hat, dtype=np.float64)) ** 2).sum()
    return 1 - resid / ((X - X.mean(axis=0)) ** 2).sum()


@pytest.fixture(scope="module")
def rows_600(signed_X):
    rng = np.random.default_rng(0)
    return signed_X[rng.choice(len(signed_X), 600, replace=False)]


@pytest.fixture(scope="module")
def rows_300(signed_X):
    rng = np.random.default_rng(1)
    return signed_X[rng.choice(len(signed_X), 300, replace=False)]


# (ours, the same algorithm through sklearn, which fixture)
CASES = {
    "pca": (PCAConcepts(16, random_state=0), PCA(16, random_state=0), "signed_X"),
    "pca_whiten": (
        PCAConcepts(16, whiten=True, random_state=0),
        PCA(16, whiten=True, random_state=0),
        "signed_X",
    ),
    "svd": (
        SVDConcepts(16, random_state=0),
        TruncatedSVD(16, random_state=0),
        "signed_X",
    ),
    "ica": (
        ICAConcepts(8, max_iter=100, tol=1e-3, random_state=0),
        FastICA(8, max_iter=100, tol=1e-3, random_state=0),
        "rows_600",
    ),
    "sparse_pca": (
        SparsePCAConcepts(6, max_iter=3, method="cd", random_state=0),
        SparsePCA(6, max_iter=3, method="cd", random_state=0),
        "rows_300",
    ),
    "dict_learning": (
        DictionaryLearningConcepts(6, max_iter=5, fit_algorithm="cd", random_state=0),
        DictionaryLearning(6, max_iter=5, fit_algorithm="cd", random_state=0),
        "rows_300",
    ),
}


@pytest.fixture(scope="module", params=sorted(CASES))
def fitted_case(request):
    ours, ref, data = CASES[request.param]
    X = request.getfixturevalue(data)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)  # the small max_iter
        ours = clone(ours).fit(X)
        ref = clone(ref).fit(X)
    return request.param, ours, ref, X


def test_reconstruction_at_least_sklearn(fitted_case):
    name, ours, ref, X = fitted_case
    ref_r2 = _r2(X, ref.inverse_transform(ref.transform(X)))
    assert ours.score(X) >= ref_r2 - 1e-6
    assert ours.score(X) == pytest.approx(
        _r2(X, ours.inverse_transform(ours.transform(X)))
    )
    assert ours.score(X) > 0.2  # real activations: a sizeable share of variance


def test_fitted_contract(fitted_case):
    name, ours, ref, X = fitted_case
    k = ours.n_concepts
    assert ours.components_.shape == (k, X.shape[1])
    assert ours.components_.dtype == np.float32
    C = ours.transform(X)
    assert C.shape == (len(X), k) and C.dtype == np.float32
    small = X[:100]
    refit = clone(ours).set_params(n_concepts=min(k, 4))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        codes = refit.fit_transform(small)
    np.testing.assert_array_equal(codes, refit.transform(small))
    X_hat = ours.inverse_transform(C)
    assert X_hat.shape == X.shape and X_hat.dtype == np.float32
    # the torch decoder is the same affine map
    dec = ours.decoder_torch()(torch.from_numpy(C))
    np.testing.assert_allclose(dec.numpy(), X_hat, rtol=1e-5, atol=1e-4)
    assert list(ours.get_feature_names_out()) == [f"concept{i}" for i in range(k)]
    if name in ("ica", "sparse_pca", "dict_learning"):
        assert ours.n_iter_ >= 1
        assert ours.reconstruction_err_ == pytest.approx(
            np.linalg.norm(X.astype(np.float64) - X_hat), rel=1e-4
        )


def test_pca_reconstruction_equals_sklearn_exactly(signed_X):
    for whiten in (False, True):
        params = dict(whiten=whiten, random_state=0)
        ours = PCAConcepts(16, **params).fit(signed_X)
        ref = PCA(16, **params).fit(signed_X)
        np.testing.assert_array_equal(ours.components_, ref.components_)
        np.testing.assert_array_equal(ours.transform(signed_X), ref.transform(signed_X))
        np.testing.assert_array_equal(
            ours.inverse_transform(ours.transform(signed_X)),
            ref.inverse_transform(ref.transform(signed_X)),
        )


def test_decoders_follow_the_method(rows_600):
    pca = PCAConcepts(4, whiten=True).fit(rows_600)
    dec = pca.decoder_torch()
    sqrt_ev = np.sqrt(pca.estimator_.explained_variance_)[:, None]
    np.testing.assert_allclose(dec.weight.numpy(), sqrt_ev * pca.components_, rtol=1e-6)
    np.testing.assert_allclose(dec.bias.numpy(), pca.estimator_.mean_)

    ica = ICAConcepts(4, tol=1e-2, random_state=0).fit(rows_600)
    np.testing.assert_allclose(ica.components_, ica.estimator_.mixing_.T, rtol=1e-6)
    C = ica.transform(rows_600)
    np.testing.assert_allclose(
        ica.inverse_transform(C),
        ica.estimator_.inverse_transform(C),
        rtol=1e-5,
        atol=1e-5,
    )
    svd = SVDConcepts(4, random_state=0).fit(rows_600)
    assert svd.decoder_torch().bias is None


# ---------------------------------------------------------------- torch paths
@pytest.mark.parametrize(
    "svd_solver, whiten",
    [("full", False), ("full", True), ("covariance_eigh", False)],
)
def test_pca_torch_matches_sklearn(rows_600, svd_solver, whiten):
    signed_X = rows_600
    ref = PCAConcepts(8, svd_solver=svd_solver, whiten=whiten).fit(signed_X)
    ours = PCAConcepts(8, svd_solver=svd_solver, whiten=whiten).fit(
        torch.from_numpy(signed_X)
    )
    # same signs as svd_flip: compared without abs()
    np.testing.assert_allclose(ours.components_, ref.components_, atol=2e-4)
    for attr in (
        "mean_",
        "explained_variance_",
        "explained_variance_ratio_",
        "singular_values_",
    ):
        np.testing.assert_allclose(
            getattr(ours.estimator_, attr),
            getattr(ref.estimator_, attr),
            rtol=2e-4,
            atol=1e-5,
        )
    assert ours.estimator_.noise_variance_ == pytest.approx(
        ref.estimator_.noise_variance_, rel=1e-3
    )
    C = ours.transform(torch.from_numpy(signed_X))
    assert isinstance(C, torch.Tensor) and C.dtype == torch.float32
    scale = np.abs(ref.transform(signed_X)).max()
    np.testing.assert_allclose(C.numpy(), ref.transform(signed_X), atol=1e-3 * scale)
    assert ours.score(signed_X) == pytest.approx(ref.score(signed_X), abs=1e-5)
    # the torch-fitted sklearn estimator works as a sklearn estimator
    np.testing.assert_allclose(
        ours.estimator_.transform(signed_X), C.numpy(), atol=1e-3 * scale
    )


def test_pca_torch_randomized_close_to_exact(rows_600):
    signed_X = rows_600
    exact = PCAConcepts(8, svd_solver="full").fit(signed_X)
    rand = PCAConcepts(8, svd_solver="randomized", random_state=0).fit(
        torch.from_numpy(signed_X)
    )
    assert rand.score(signed_X) == pytest.approx(exact.score(signed_X), abs=1e-4)
    cos = np.abs(np.sum(rand.components_[:4] * exact.components_[:4], axis=1))
    np.testing.assert_allclose(cos, 1, atol=1e-3)
    again = PCAConcepts(8, svd_solver="randomized", random_state=0).fit(
        torch.from_numpy(signed_X)
    )
    np.testing.assert_array_equal(again.components_, rand.components_)


@pytest.mark.parametrize("algorithm", ["arpack", "randomized"])
def test_svd_torch_matches_sklearn(rows_600, algorithm):
    signed_X = rows_600
    ref = SVDConcepts(8, algorithm=algorithm, random_state=0).fit(signed_X)
    ours = SVDConcepts(8, algorithm=algorithm, random_state=0).fit(
        torch.from_numpy(signed_X)
    )
    atol = 2e-4 if algorithm == "arpack" else 5e-3
    np.testing.assert_allclose(ours.components_[:6], ref.components_[:6], atol=atol)
    np.testing.assert_allclose(
        ours.estimator_.singular_values_, ref.estimator_.singular_values_, rtol=1e-4
    )
    np.testing.assert_allclose(
        ours.estimator_.explained_variance_ratio_[:6],
        ref.estimator_.explained_variance_ratio_[:6],
        rtol=1e-3,
    )
    assert ours.score(signed_X) == pytest.approx(ref.score(signed_X), abs=1e-4)


@pytest.mark.gpu
@pytest.mark.parametrize("cls", [PCAConcepts, SVDConcepts])
def test_cuda_matches_sklearn(signed_X, cls):
    ref = cls(8, random_state=0, **_exact(cls)).fit(signed_X)
    ours = cls(8, random_state=0, device="cuda", **_exact(cls)).fit(signed_X)
    np.testing.assert_allclose(ours.components_, ref.components_, atol=5e-4)
    X_gpu = torch.from_numpy(signed_X).cuda()
    C = ours.transform(X_gpu)
    assert C.device.type == "cuda"
    np.testing.assert_allclose(
        C.cpu().numpy(), ref.transform(signed_X), atol=1e-3 * np.abs(C.cpu()).max()
    )
    assert isinstance(ours.transform(signed_X), np.ndarray)


def _exact(cls):
    return {"svd_solver": "full"} if cls is PCAConcepts else {"algorithm": "arpack"}


# ------------------------------------------------------------------ dtypes, io
@pytest.mark.parametrize("cls", [PCAConcepts, SVDConcepts, ICAConcepts])
def test_no_float64_upcast(rows_300, cls):
    est = cls(4, random_state=0).set_params(
        **({"max_iter": 20} if cls is ICAConcepts else {})
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        est.fit(rows_300)
    assert est.estimator_.components_.dtype == np.float32  # sklearn ran in float32
    assert est.transform(rows_300.astype(np.float64)).dtype == np.float32
    assert est.inverse_transform(est.transform(rows_300)).dtype == np.float32


def test_tensor_in_tensor_out_for_sklearn_only_methods(rows_300):
    est = ICAConcepts(3, max_iter=50, tol=1e-2, random_state=0)
    est.fit(torch.from_numpy(rows_300))
    C = est.transform(torch.from_numpy(rows_300))
    assert isinstance(C, torch.Tensor) and C.shape == (300, 3)
    np.testing.assert_allclose(C.numpy(), est.transform(rows_300), rtol=1e-6)
    X_hat = est.inverse_transform(C)
    assert isinstance(X_hat, torch.Tensor) and X_hat.shape == (300, 384)


def test_joblib_round_trip(tmp_path, rows_600):
    est = PCAConcepts(4, whiten=True).fit(torch.from_numpy(rows_600))
    joblib.dump(est, tmp_path / "pca.joblib")
    loaded = joblib.load(tmp_path / "pca.joblib")
    np.testing.assert_array_equal(loaded.transform(rows_600), est.transform(rows_600))


# ------------------------------------------------------------------ bad input
@pytest.mark.parametrize(
    "est, shape, n_concepts, upper",
    [
        (PCAConcepts, (10, 20), 11, 10),  # min(n_samples, n_features)
        (SVDConcepts, (10, 5), 6, 5),  # min(n_samples, n_features) (randomized)
        (ICAConcepts, (10, 5), 6, 5),  # min(n_samples, n_features)
    ],
)
def test_too_many_concepts(est, shape, n_concepts, upper):
    X = np.random.default_rng(0).normal(size=shape).astype(np.float32)
    match = (
        rf"n_concepts={n_concepts} is larger than this method allows \({upper}.*"
        rf"use n_concepts <= {upper}"
    )
    with pytest.raises(ValueError, match=match):
        est(n_concepts).fit(X)
    est(upper).fit(X)  # the bound itself is fine


def test_bad_input():
    X = np.random.default_rng(0).normal(size=(20, 5)).astype(np.float32)
    with pytest.raises(InvalidParameterError, match="n_concepts"):
        PCAConcepts(0).fit(X)
    with pytest.raises(NotFittedError):
        PCAConcepts(2).transform(X)
    bad = X.copy()
    bad[0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        PCAConcepts(2).fit(bad)
    with pytest.raises(ValueError, match="NaN"):
        PCAConcepts(2).fit(torch.from_numpy(bad))
    with pytest.raises(ValueError, match="Expected 2D"):
        PCAConcepts(2).fit(X[:, 0])
    with pytest.raises(ValueError, match="Expected 2D"):
        PCAConcepts(2).fit(torch.from_numpy(X[:, 0]))
    est = PCAConcepts(2).fit(X)
    with pytest.raises(
        ValueError, match="X has 4 features, but PCAConcepts is expecting 5"
    ):
        est.transform(X[:, :4])
    with pytest.raises(ValueError, match="X has 4 features"):
        est.transform(torch.from_numpy(X[:, :4]))
    with pytest.raises(ValueError, match="C has 3 columns.*2 concepts"):
        est.inverse_transform(np.zeros((2, 3)))
    with pytest.raises(ValueError, match="n_samples = 1"):
        PCAConcepts(1).fit(X[:1])
    with pytest.raises(ValueError, match="device='gpu' is not a device"):
        PCAConcepts(2, device="gpu").fit(X)
    with pytest.raises(InvalidParameterError, match="whiten"):
        ICAConcepts(2, whiten=False).fit(X)


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
@pytest.mark.parametrize("as_tensor", [False, True])
def test_cuda_requested_without_cuda(as_tensor):
    X = np.random.default_rng(0).normal(size=(20, 5)).astype(np.float32)
    data = torch.from_numpy(X) if as_tensor else X
    with pytest.raises(ValueError, match="CUDA is not available"):
        PCAConcepts(2, device="cuda").fit(data)
