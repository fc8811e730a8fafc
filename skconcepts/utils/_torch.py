"""Torch helpers: tensor/array conversion, device resolution, seeded generators."""

from __future__ import annotations

import numpy as np
import torch
from sklearn.utils import check_random_state

_DTYPES = {
    "float32": torch.float32,
    "float16": torch.float16,
    "bfloat16": torch.bfloat16,
    "float64": torch.float64,
}


def resolve_device(device) -> torch.device:
    """Turn ``"cpu"``, ``"cuda"``, ``"cuda:1"``, ``"auto"`` or a device into a device.

    ``"auto"`` picks CUDA when it is available, else the CPU. Asking for CUDA on a
    machine without it raises a ``ValueError`` that says so.
    """
    if device is None or device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(
            f"device={device!r} but CUDA is not available on this machine; "
            "use device='cpu' or device='auto'."
        )
    return dev


def resolve_dtype(dtype, name="dtype") -> torch.dtype:
    """Turn a dtype name (``"float32"``, ``"bfloat16"``, ...) into a torch dtype."""
    if isinstance(dtype, torch.dtype):
        return dtype
    if dtype is None:
        return torch.float32
    key = str(dtype).replace("torch.", "")
    if key not in _DTYPES:
        raise ValueError(
            f"{name}={dtype!r} is not supported; use one of {sorted(_DTYPES)}."
        )
    return _DTYPES[key]


def to_tensor(x, device=None, dtype=torch.float32) -> torch.Tensor:
    """Convert an array or tensor to a tensor on ``device`` with ``dtype``.

    Tensors already on the device with the dtype are returned as they are (no copy).
    """
    if isinstance(x, torch.Tensor):
        return x.to(device=device or x.device, dtype=dtype)
    return torch.as_tensor(np.asarray(x), dtype=dtype, device=device)


def to_numpy(x, dtype=np.float32) -> np.ndarray:
    """Convert a tensor (any device, any float dtype) or array to a numpy array."""
    if isinstance(x, torch.Tensor):
        x = x.detach()
        if x.dtype in (torch.bfloat16, torch.float16):
            x = x.float()
        x = x.cpu().numpy()
    x = np.asarray(x)
    return x if dtype is None else x.astype(dtype, copy=False)


def torch_generator(random_state, device="cpu") -> torch.Generator:
    """A local ``torch.Generator`` seeded from ``random_state`` (not the global one)."""
    rng = check_random_state(random_state)
    gen = torch.Generator(device=device)
    gen.manual_seed(int(rng.randint(0, 2**31 - 1)))
    return gen
