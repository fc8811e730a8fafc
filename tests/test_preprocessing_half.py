"""ActivationScaler and NonNegative keep half-precision dtypes (issue 12, item 13).

float16 numpy input (and float16/bfloat16 tensors) used to come back as float64
(float32 for tensors), against the documented "same dtype as X".
"""

import warnings

import numpy as np
import pandas as pd
import pytest
import torch

from skconcepts.preprocessing import ActivationScaler, NonNegative

ESTIMATORS = [
    ActivationScaler("norm"),
    ActivationScaler("standard"),
    NonNegative("split"),
    NonNegative("shift"),
    NonNegative("relu"),
]
IDS = [f"{type(e).__name__}-{e.strategy}" for e in ESTIMATORS]


@pytest.fixture
def X():
    return np.random.RandomState(0).randn(30, 5)


@pytest.mark.parametrize("est", ESTIMATORS, ids=IDS)
def test_numpy_float16_keeps_its_dtype(est, X):
    X16 = X.astype(np.float16)
    est.fit(X16)
    Z = est.transform(X16)
    assert Z.dtype == np.float16
    back = est.inverse_transform(Z)
    assert back.dtype == np.float16
    # the same numbers as the float64 path, rounded to float16
    ref = est.transform(X16.astype(np.float64))
    np.testing.assert_array_equal(Z, ref.astype(np.float16))
    np.testing.assert_array_equal(
        back, est.inverse_transform(Z.astype(np.float64)).astype(np.float16)
    )


@pytest.mark.parametrize("est", ESTIMATORS, ids=IDS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_float32_and_float64_unchanged(est, X, dtype):
    Xd = X.astype(dtype)
    Z = est.fit(Xd).transform(Xd)
    assert Z.dtype == dtype and est.inverse_transform(Z).dtype == dtype


@pytest.mark.parametrize("est", ESTIMATORS, ids=IDS)
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_tensors_keep_their_dtype(est, X, dtype):
    T = torch.tensor(X, dtype=dtype)
    est.fit(T)
    Z = est.transform(T)
    assert Z.dtype == dtype
    assert est.inverse_transform(Z).dtype == dtype
    ref = est.transform(T.float())  # computed in float32, then rounded
    torch.testing.assert_close(Z, ref.to(dtype), rtol=0, atol=0)
    for decoder in (est.decoder_torch(), est.decoder_torch(dtype=dtype)):
        assert decoder(Z).dtype == dtype
    assert est.decoder_torch()(Z.float()).dtype == torch.float32


@pytest.mark.parametrize("est", ESTIMATORS[:2], ids=IDS[:2])
def test_pandas_float16(est, X):
    frame = pd.DataFrame(X.astype(np.float16), columns=[f"f{i}" for i in range(5)])
    est.set_output(transform="pandas").fit(frame)
    out = est.transform(frame)
    assert isinstance(out, pd.DataFrame)
    assert (out.dtypes == np.float16).all()
    est.set_output(transform="default")


def test_float16_overflow_warns():
    X = np.array([[0.0, 1.0], [1e-3, 1.0]], dtype=np.float16)
    scaler = ActivationScaler("standard").fit(X)
    with pytest.warns(RuntimeWarning, match=r"^1 values .*overflow float16"):
        Z = scaler.transform(np.array([[60000.0, 1.0]], dtype=np.float16))
    assert np.isinf(Z[0, 0])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        scaler.transform(X)
