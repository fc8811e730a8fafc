"""utils._torch: the one device resolver and the one ``to_numpy``."""

import warnings

import numpy as np
import pytest
import torch

from skconcepts.utils._torch import resolve_device, to_numpy


@pytest.fixture
def no_cuda(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)


def test_cuda_without_cuda_falls_back_to_the_cpu_with_a_warning(no_cuda):
    with pytest.warns(
        RuntimeWarning,
        match=r"^NMFConcepts was set to device='cuda' but CUDA is not available; "
        "computing on the CPU.$",
    ):
        device = resolve_device("cuda", cpu_fallback=True, owner="NMFConcepts")
    assert device == torch.device("cpu")
    with pytest.warns(RuntimeWarning, match="device='cuda:1' but CUDA"):
        assert resolve_device("cuda:1", cpu_fallback=True).type == "cpu"


def test_cuda_without_cuda_is_an_error_without_the_fallback(no_cuda):
    with pytest.raises(ValueError, match="CUDA is not available on this machine"):
        resolve_device("cuda")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert resolve_device("auto") == torch.device("cpu")
        assert resolve_device(None) == torch.device("cpu")
        assert resolve_device(torch.device("cpu"), cpu_fallback=True).type == "cpu"


def test_unknown_device_is_a_value_error():
    with pytest.raises(ValueError, match="device='gpu' is not a device torch knows"):
        resolve_device("gpu", cpu_fallback=True)


def test_to_numpy_dtype():
    t = torch.arange(4, dtype=torch.float64)
    assert to_numpy(t).dtype == np.float32
    assert to_numpy(t, dtype=None).dtype == np.float64
    assert to_numpy(torch.ones(2, dtype=torch.bfloat16)).dtype == np.float32
    x = np.ones(3, dtype=np.float32)
    assert to_numpy(x) is x
    assert to_numpy([1, 2], dtype=None).dtype.kind == "i"
