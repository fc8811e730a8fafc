"""KMeansConcepts: memberships, reconstruction, the torch path against sklearn."""

import numpy as np
import pytest
import torch
from sklearn.cluster import KMeans
from sklearn.datasets import make_blobs
from sklearn.metrics import adjusted_rand_score
from sklearn.utils._param_validation import InvalidParameterError

from skconcepts.concepts.clustering import KMeansConcepts, _kmeans_torch


@pytest.fixture(scope="module")
def X(signed_X):
    return signed_X[np.random.default_rng(0).choice(len(signed_X), 800, replace=False)]


@pytest.fixture(scope="module")
def hard(X):
    return KMeansConcepts(12, random_state=0).fit(X)


def _r2(X, X_hat):
    X = np.asarray(X, dtype=np.float64)
    return 1 - ((X - X_hat) ** 2).sum() / ((X - X.mean(axis=0)) ** 2).sum()


def test_hard_membership_is_kmeans(X, hard):
    ref = KMeans(12, random_state=0).fit(X)
    np.testing.assert_allclose(hard.components_, ref.cluster_centers_, rtol=1e-6)
    C = hard.transform(X)
    assert C.shape == (len(X), 12) and C.dtype == np.float32
    assert set(np.unique(C)) == {0.0, 1.0} and np.all(C.sum(axis=1) == 1)
    np.testing.assert_array_equal(C.argmax(axis=1), ref.labels_)
    # transform then inverse_transform is the fitted reconstruction: the centroids
    X_hat = hard.inverse_transform(C)
    np.testing.assert_allclose(X_hat, ref.cluster_centers_[ref.labels_], rtol=1e-6)
    ref_r2 = _r2(X, ref.cluster_centers_[ref.predict(X)])
    assert hard.score(X) >= ref_r2 - 1e-6
    assert hard.reconstruction_err_ == pytest.approx(np.sqrt(ref.inertia_), rel=1e-4)
    assert hard.n_iter_ == ref.n_iter_


@pytest.mark.parametrize("membership", ["hard", "soft"])
def test_membership_is_not_a_distance(X, membership):
    """A concept's top rows are rows near its centroid, never the farthest."""
    est = KMeansConcepts(12, membership=membership, random_state=0).fit(X)
    C = est.transform(X)
    d2 = ((X[:, None, :] - est.components_[None]) ** 2).sum(-1)  # (n, k)
    for j in range(12):
        best = int(np.argmax(C[:, j]))
        assert d2[best, j] < np.median(d2[:, j])
        nearest = int(np.argmin(d2[:, j]))
        assert C[nearest, j] > C[int(np.argmax(d2[:, j])), j]


def test_soft_membership(X, hard):
    soft = KMeansConcepts(12, membership="soft", random_state=0).fit(X)
    C = soft.transform(X)
    np.testing.assert_allclose(C.sum(axis=1), 1, rtol=1e-5)
    assert np.all(C >= 0)
    np.testing.assert_array_equal(C.argmax(axis=1), hard.transform(X).argmax(axis=1))
    assert soft.temperature_ == pytest.approx(soft.estimator_.inertia_ / len(X))
    d2 = ((X[:5, None, :] - soft.components_[None]) ** 2).sum(-1)
    expected = np.exp(-(d2 - d2.min(1, keepdims=True)) / soft.temperature_)
    np.testing.assert_allclose(
        C[:5], expected / expected.sum(1, keepdims=True), rtol=1e-4, atol=1e-6
    )
    # a tiny temperature is the hard membership
    cold = KMeansConcepts(12, membership="soft", temperature=1e-6, random_state=0)
    np.testing.assert_allclose(cold.fit(X).transform(X), hard.transform(X), atol=1e-6)
    np.testing.assert_allclose(
        soft.inverse_transform(C), C @ soft.components_, rtol=1e-5, atol=1e-5
    )


def test_torch_matches_sklearn_with_same_init(X):
    init = X[:12]
    ref = KMeansConcepts(12, init=init).fit(X)
    ours = KMeansConcepts(12, init=init).fit(torch.from_numpy(X))
    np.testing.assert_allclose(ours.components_, ref.components_, atol=1e-4)
    np.testing.assert_array_equal(ours.estimator_.labels_, ref.estimator_.labels_)
    assert ours.n_iter_ == ref.n_iter_
    assert ours.estimator_.inertia_ == pytest.approx(ref.estimator_.inertia_, rel=1e-4)
    C = ours.transform(torch.from_numpy(X))
    assert isinstance(C, torch.Tensor) and C.dtype == torch.float32
    np.testing.assert_array_equal(C.numpy(), ref.transform(X))
    # the torch-fitted sklearn estimator predicts like sklearn
    np.testing.assert_array_equal(ours.estimator_.predict(X), ref.estimator_.labels_)


def test_torch_kmeans_plusplus_recovers_blobs():
    Xb, y = make_blobs(600, n_features=16, centers=6, cluster_std=0.5, random_state=0)
    Xt = torch.from_numpy(Xb.astype(np.float32))
    a = KMeansConcepts(6, random_state=0).fit(Xt)
    assert adjusted_rand_score(y, a.estimator_.labels_) == 1.0
    b = KMeansConcepts(6, random_state=0).fit(Xt)
    np.testing.assert_array_equal(a.components_, b.components_)  # reproducible
    rand = KMeansConcepts(6, init="random", n_init=3, random_state=0).fit(Xt)
    assert rand.estimator_.inertia_ == pytest.approx(a.estimator_.inertia_, rel=1e-3)


def test_torch_empty_cluster_is_relocated():
    Xb, _ = make_blobs(200, n_features=4, centers=3, random_state=0)
    Xt = torch.from_numpy(Xb.astype(np.float32))
    far = torch.full((1, 4), 1e3)  # no row is nearest to it
    init = torch.cat([Xt[:2], far])
    centers, labels, _, _ = _kmeans_torch(
        Xt,
        3,
        init=init,
        n_init=1,
        max_iter=50,
        tol=1e-4,
        generator=torch.Generator().manual_seed(0),
    )
    assert torch.bincount(labels, minlength=3).min() > 0
    assert float(centers.abs().max()) < 100


def test_progress_bar(X, capsys):
    KMeansConcepts(3, max_iter=5, progress=True, random_state=0).fit(
        torch.from_numpy(X[:100])
    )
    assert "KMeansConcepts" in capsys.readouterr().err


def test_bad_input(X):
    with pytest.raises(ValueError, match=r"n_concepts=11 is larger .*\(10, n_samples"):
        KMeansConcepts(11).fit(X[:10])
    with pytest.raises(InvalidParameterError, match="membership"):
        KMeansConcepts(2, membership="distance").fit(X)
    with pytest.raises(InvalidParameterError, match="temperature"):
        KMeansConcepts(2, temperature=0.0).fit(X)
    with pytest.raises(ValueError, match=r"init has shape \(2, 384\).*\(3, 384\)"):
        KMeansConcepts(3, init=X[:2]).fit(torch.from_numpy(X))
    with pytest.raises(ValueError, match="NaN"):
        KMeansConcepts(2).fit(torch.full((5, 3), float("nan")))


@pytest.mark.gpu
def test_cuda_matches_sklearn(X):
    init = X[:12]
    ref = KMeansConcepts(12, init=init).fit(X)
    ours = KMeansConcepts(12, init=init, device="cuda").fit(X)
    np.testing.assert_allclose(ours.components_, ref.components_, atol=1e-4)
    np.testing.assert_array_equal(ours.estimator_.labels_, ref.estimator_.labels_)
    C = ours.transform(torch.from_numpy(X).cuda())
    assert C.device.type == "cuda"
    np.testing.assert_array_equal(C.cpu().numpy(), ref.transform(X))
