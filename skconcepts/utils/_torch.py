"""Torch helpers: tensor/array conversion, device resolution, seeded generators."""

from __future__ import annotations

import warnings

import numpy as np
import torch
from sklearn.utils import check_random_state

_DTYPES = {
    "float32": torch.float32,
    "float16": torch.float16,
    "bfloat16": torch.bfloat16,
    "float64": torch.float64,
}


def resolve_device(device, *, cpu_fallback=False, owner=None) -> torch.device:
    """Turn ``"cpu"``, ``"cuda"``, ``"cuda:1"``, ``"auto"`` or a device into a device.

    Parameters
    ----------
    device : str, torch.device or None
        ``"auto"`` (or ``None``) picks CUDA when it is available, else the CPU.
    cpu_fallback : bool, default=False
        What to do when CUDA is asked for and the machine has none: ``False``
        raises a ``ValueError`` that says so (right when fitting), ``True``
        warns (``RuntimeWarning``) and returns the CPU (right when a model
        fitted on a GPU is used on a CPU-only machine).
    owner : str or None, default=None
        Name of the estimator that asks, for the warning.

    Returns
    -------
    device : torch.device
        The resolved device.

    Raises
    ------
    ValueError
        If ``device`` is not a device torch knows, or CUDA is asked for, absent,
        and ``cpu_fallback=False``.

    Examples
    --------
    >>> from skconcepts.utils._torch import resolve_device
    >>> resolve_device("cpu")
    device(type='cpu')
    """
    if device is None or device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise ValueError(
            f"device={device!r} is not a device torch knows ({exc}); use "
            "'cpu', 'cuda', 'cuda:N' or 'auto'."
        ) from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        if cpu_fallback:
            who = f"{owner} was set to" if owner else "Asked for"
            warnings.warn(
                f"{who} device={device!r} but CUDA is not available; computing "
                "on the CPU.",
                RuntimeWarning,
                stacklevel=3,
            )
            return torch.device("cpu")
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
    """Convert a tensor (any device, any float dtype) or array-like to numpy.

    Parameters
    ----------
    x : torch.Tensor or array-like
        The data; a tensor is detached and moved to the CPU (float16/bfloat16
        become float32 first).
    dtype : numpy dtype or None, default=np.float32
        The dtype of the result; ``None`` keeps the dtype of ``x``.

    Returns
    -------
    array : ndarray
        ``x`` as a numpy array (no copy when it already is one of ``dtype``).

    Examples
    --------
    >>> import torch
    >>> from skconcepts.utils._torch import to_numpy
    >>> to_numpy(torch.ones(2, dtype=torch.float64)).dtype
    dtype('float32')
    >>> to_numpy(torch.ones(2, dtype=torch.float64), dtype=None).dtype
    dtype('float64')
    """
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


_BLAS = None


def single_blas_thread():
    """Context manager: numpy's BLAS on one thread, for work between torch calls.

    After each call, OpenBLAS keeps its worker threads spinning for a while
    (about a tenth of a second). When the numpy work is a small product between
    two torch passes (the concept codes of a batch inside a model rerun), those
    threads take the cores torch's own threads need: the blocks after the split
    ran 2x slower in ``concept_output_gradient`` on a 2-core machine. One BLAS
    thread for the small product keeps torch at full speed.

    Examples
    --------
    >>> import numpy as np
    >>> from skconcepts.utils._torch import single_blas_thread
    >>> with single_blas_thread():
    ...     float(np.ones((3, 4)) @ np.ones(4) @ np.ones(3))
    12.0
    """
    global _BLAS
    if _BLAS is None:  # scanned once, on first use: numpy's BLAS is loaded by then
        from threadpoolctl import ThreadpoolController

        _BLAS = ThreadpoolController()
    return _BLAS.limit(limits=1, user_api="blas")
