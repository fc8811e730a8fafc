"""NonNegative and ActivationScaler: exact inverses, torch, pandas, pipelines."""

import joblib
import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.exceptions import NotFittedError
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils._param_validation import InvalidParameterError

from skconcepts.concepts.linear import PCAConcepts
from skconcepts.preprocessing import ActivationScaler, NonNegative


@pytest.fixture(scope="module")
def X():
    rng = np.random.default_rng(0)
    return (rng.normal(size=(40, 6)) * [1, 2, 3, 4, 5, 6] + 1).astype(np.float32)


# ------------------------------------------------------------------ NonNegative
def test_split(X):
    nn = NonNegative("split").fit(X)
    Z = nn.transform(X)
    assert Z.shape == (40, 12) and Z.dtype == np.float32 and Z.min() >= 0
    np.testing.assert_array_equal(Z[:, :6], np.maximum(X, 0))
    np.testing.assert_array_equal(Z[:, 6:], np.maximum(-X, 0))
    np.testing.assert_array_equal(nn.inverse_transform(Z), X)  # exact
    assert list(nn.get_feature_names_out(["a", "b", "c", "d", "e", "f"]))[5:8] == [
        "f_pos",
        "a_neg",
        "b_neg",
    ]


def test_relu_inverse_is_identity(X):
    nn = NonNegative("relu").fit(X)
    Z = nn.transform(X)
    np.testing.assert_array_equal(Z, np.maximum(X, 0))
    np.testing.assert_array_equal(nn.inverse_transform(Z), Z)
    assert list(nn.get_feature_names_out()) == [f"x{i}" for i in range(6)]


def test_shift(X):
    nn = NonNegative("shift").fit(X)
    np.testing.assert_allclose(nn.shift_, np.maximum(-X.min(axis=0), 0))
    Z = nn.transform(X)
    np.testing.assert_allclose(Z.min(axis=0), np.maximum(X.min(axis=0), 0), atol=1e-6)
    np.testing.assert_allclose(nn.inverse_transform(Z), X, atol=1e-5)
    # new data below the training minimum is clipped at 0, never negative
    low = X[:2] - 100
    assert nn.transform(low).min() == 0


def test_nonnegative_torch_and_gradients(X):
    nn = NonNegative("split").fit(torch.from_numpy(X))
    Z = nn.transform(torch.from_numpy(X))
    assert isinstance(Z, torch.Tensor) and Z.shape == (40, 12)
    np.testing.assert_array_equal(Z.numpy(), nn.transform(X))
    Zg = Z.double().requires_grad_()
    w = torch.randn(40, 6, dtype=torch.float64)
    decoder = nn.decoder_torch(dtype=torch.float64)
    assert isinstance(decoder, torch.nn.Module)
    (decoder(Zg) * w).sum().backward()
    np.testing.assert_allclose(Zg.grad.numpy(), torch.cat([w, -w], 1).numpy())
    # inverse_transform of a tensor: a tensor, detached
    out = nn.inverse_transform(Zg)
    assert isinstance(out, torch.Tensor) and not out.requires_grad
    for strategy in ("relu", "shift"):
        est = NonNegative(strategy).fit(X)
        torch.autograd.gradcheck(
            est.decoder_torch(dtype=torch.float64),
            (torch.rand(3, 6, dtype=torch.float64, requires_grad=True),),
        )


@pytest.mark.parametrize(
    "est",
    [
        NonNegative("split"),
        NonNegative("shift"),
        NonNegative("relu"),
        ActivationScaler("standard"),
        ActivationScaler("norm"),
    ],
    ids=["split", "shift", "relu", "standard", "norm"],
)
def test_decoder_torch_equals_inverse_transform(X, est):
    est.fit(X)
    Z = est.transform(X)
    decoder = est.decoder_torch()
    assert isinstance(decoder, torch.nn.Module)
    got = decoder(torch.from_numpy(Z))
    assert got.dtype == torch.float32 and got.shape == X.shape
    np.testing.assert_array_equal(got.numpy(), est.inverse_transform(Z))
    # (..., d) inputs, float64 buffers, the deprecated alias gives the same bits
    Z3 = torch.from_numpy(Z).double().reshape(4, 10, -1)
    got64 = est.decoder_torch(dtype=torch.float64)(Z3)
    with pytest.warns(FutureWarning, match="use decoder_torch"):
        old = est.inverse_transform_torch(Z3)
    assert torch.equal(got64, old)
    with pytest.raises(ValueError, match="features in its last dimension"):
        decoder(torch.from_numpy(X[:, :5]))
    with pytest.raises(NotFittedError):
        type(est)(est.strategy).decoder_torch()


def test_inverse_transform_torch_is_deprecated(X):
    sc = ActivationScaler("standard").fit(X)
    Zg = torch.zeros(2, 6, dtype=torch.float64, requires_grad=True)
    with pytest.warns(FutureWarning, match="inverse_transform_torch is deprecated"):
        sc.inverse_transform_torch(Zg).sum().backward()
    np.testing.assert_allclose(Zg.grad[0].numpy(), sc.scale_)
    with (
        pytest.warns(FutureWarning),
        pytest.raises(TypeError, match="expects a torch.Tensor"),
    ):
        sc.inverse_transform_torch(X)


# --------------------------------------------------------------- ActivationScaler
def test_scaler_norm(X):
    sc = ActivationScaler("norm").fit(X)
    Z = sc.transform(X)
    assert Z.dtype == np.float32
    assert (Z.astype(np.float64) ** 2).sum(axis=1).mean() == pytest.approx(1, rel=1e-5)
    # one scale for all features: directions are kept
    np.testing.assert_allclose(
        Z * np.linalg.norm(X, axis=1).mean(),
        X * np.linalg.norm(Z, axis=1).mean(),
        rtol=1e-4,
    )
    np.testing.assert_allclose(sc.inverse_transform(Z), X, rtol=1e-6, atol=1e-5)


def test_scaler_standard_matches_sklearn(X):
    sc = ActivationScaler("standard").fit(X)
    ref = StandardScaler().fit(X)
    np.testing.assert_allclose(sc.transform(X), ref.transform(X), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(sc.scale_, ref.scale_, rtol=1e-6)
    Xc = X.copy()
    Xc[:, 0] = 3.0  # a constant feature is centred, not divided by 0
    np.testing.assert_array_equal(
        ActivationScaler("standard").fit_transform(Xc)[:, 0], 0
    )


def test_scaler_torch_differentiable(X):
    sc = ActivationScaler("standard").fit(torch.from_numpy(X))
    np.testing.assert_allclose(sc.mean_, X.mean(axis=0), rtol=1e-5)
    Z = sc.transform(torch.from_numpy(X))
    assert isinstance(Z, torch.Tensor) and Z.dtype == torch.float32
    np.testing.assert_allclose(sc.inverse_transform(Z).numpy(), X, rtol=1e-5, atol=1e-5)
    Zg = torch.zeros(2, 6, dtype=torch.float64, requires_grad=True)
    sc.decoder_torch(dtype=torch.float64)(Zg).sum().backward()
    np.testing.assert_allclose(Zg.grad[0].numpy(), sc.scale_)  # d(z*s+m)/dz = s
    decoder = sc.decoder_torch(device="cpu", dtype=torch.float64)
    assert decoder.scale.dtype == torch.float64 and decoder.scale.device.type == "cpu"


# --------------------------------------------------------------------- shared
@pytest.mark.parametrize(
    "est", [NonNegative("split"), NonNegative("shift"), ActivationScaler("standard")]
)
def test_pandas_output_and_joblib(X, est, tmp_path):
    df = pd.DataFrame(X, columns=[f"h{i}" for i in range(6)])
    out = est.set_output(transform="pandas").fit_transform(df)
    assert isinstance(out, pd.DataFrame)
    assert list(out.columns) == list(est.get_feature_names_out())
    assert out.columns[0].startswith("h0")
    est.set_output(transform="default")
    joblib.dump(est, tmp_path / "est.joblib")
    np.testing.assert_array_equal(
        joblib.load(tmp_path / "est.joblib").transform(df), est.transform(df)
    )


def test_pipeline_inverse_through_scaler(X):
    pipe = make_pipeline(ActivationScaler("standard"), PCAConcepts(6)).fit(X)
    np.testing.assert_allclose(
        pipe.inverse_transform(pipe.transform(X)), X, rtol=1e-4, atol=1e-4
    )


def test_bad_input(X):
    with pytest.raises(NotFittedError):
        NonNegative().transform(X)
    with pytest.raises(InvalidParameterError, match="strategy"):
        NonNegative("abs").fit(X)
    nn = NonNegative("split").fit(X)
    with pytest.raises(
        ValueError, match="X has 5 features, but NonNegative is expecting 6"
    ):
        nn.transform(X[:, :5])
    with pytest.raises(ValueError, match="X has 6 columns.*has 12"):
        nn.inverse_transform(X)
    with pytest.raises(ValueError, match="NaN"):
        ActivationScaler().fit(torch.tensor([[float("nan"), 1.0]]))
    with pytest.raises(ValueError, match="Expected 2D"):
        ActivationScaler().fit(torch.ones(3))
    with pytest.raises(ValueError, match="infinity"):
        ActivationScaler().fit(np.array([[np.inf, 1.0]]))
