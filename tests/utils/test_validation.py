"""utils._validation: the one tensor validator; finite checks."""

import numpy as np
import pytest
import torch
from sklearn.exceptions import NotFittedError as SklearnNotFittedError

import skconcepts
from skconcepts import SplitPointActivations
from skconcepts.exceptions import NotFittedError, SkconceptsError
from skconcepts.utils._validation import check_finite, check_tensor


def test_check_tensor_returns_float32_detached_on_its_device():
    X = torch.ones(3, 2, dtype=torch.float64, requires_grad=True)
    out = check_tensor(X)
    assert out.dtype == torch.float32 and not out.requires_grad
    assert out.device == X.device
    assert check_tensor(torch.ones(2, 2, dtype=torch.int64)).dtype == torch.float32
    same = torch.zeros(2, 2)
    assert check_tensor(same).data_ptr() == same.data_ptr()  # no copy


@pytest.mark.parametrize(
    "X, kwargs, match",
    [
        (torch.ones(3), {}, r"Expected 2D input, got a tensor of shape \(3,\)"),
        (torch.ones(0, 2), {}, r"Found array with 0 sample\(s\)"),
        (torch.tensor([[float("nan")]]), {"name": "C"}, "Input C contains NaN"),
        (
            torch.ones(2, 3),
            {"n_features": 4, "owner": "PCAConcepts"},
            "X has 3 features, but PCAConcepts is expecting 4 features as input",
        ),
    ],
    ids=["1-D", "empty", "nan", "width"],
)
def test_check_tensor_errors(X, kwargs, match):
    with pytest.raises(ValueError, match=match):
        check_tensor(X, **kwargs)


def test_check_finite_arrays_and_tensors():
    check_finite(np.ones((2, 2)))
    check_finite(torch.ones(2, 2))
    for bad in (np.array([[np.inf]]), torch.tensor([[float("nan")]])):
        with pytest.raises(ValueError, match="Input batch 3 of X contains NaN"):
            check_finite(bad, "batch 3 of X")


def test_the_concept_estimators_use_check_tensor():
    from skconcepts.concepts import ICAConcepts, PCAConcepts

    X = torch.randn(20, 4, generator=torch.Generator().manual_seed(0))
    with pytest.raises(ValueError, match="Expected 2D input"):
        PCAConcepts(2).fit(X[0])
    ica = ICAConcepts(2, random_state=0).fit(X)  # not torch-native: numpy inside
    with pytest.raises(ValueError, match="X has 3 features, but ICAConcepts"):
        ica.transform(X[:, :3])


@pytest.mark.parametrize("name", ["PCAConcepts", "SemiNMFConcepts", "TopKSAEConcepts"])
def test_unfitted_estimators_raise_the_package_not_fitted_error(name):
    est = getattr(skconcepts, name)(n_concepts=2)
    with pytest.raises(NotFittedError, match=f"This {name} instance is not fitted"):
        est.transform(np.ones((3, 4), dtype=np.float32))
    # one error, catchable as skconcepts' and as sklearn's
    assert issubclass(NotFittedError, SkconceptsError)
    assert issubclass(NotFittedError, SklearnNotFittedError)


def test_unfitted_extractor_raises_the_package_not_fitted_error():
    with pytest.raises(NotFittedError, match="SplitPointActivations"):
        SplitPointActivations(split_point=1).encode(["a text"])
