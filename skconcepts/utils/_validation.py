"""Input validation for texts and activation matrices (numpy, torch, stores)."""

from __future__ import annotations

import numbers

import numpy as np
import torch
from sklearn.exceptions import NotFittedError as SklearnNotFittedError
from sklearn.utils import validation as sklearn_validation

from skconcepts.exceptions import NotFittedError


def check_is_fitted(estimator, attributes=None):
    """sklearn's ``check_is_fitted``, raising skconcepts' ``NotFittedError``.

    :class:`skconcepts.exceptions.NotFittedError` subclasses both
    ``SkconceptsError`` and sklearn's ``NotFittedError``, so callers may catch
    either. The message is sklearn's (it names the estimator and says to call
    ``fit``).

    Parameters
    ----------
    estimator : estimator instance
        The estimator to check.
    attributes : str, list of str or None, default=None
        Fitted attributes to look for (sklearn's default: any attribute ending
        in ``_``, or ``__sklearn_is_fitted__``).
    """
    try:
        sklearn_validation.check_is_fitted(estimator, attributes)
    except NotFittedError:
        raise
    except SklearnNotFittedError as exc:
        raise NotFittedError(str(exc)) from None


def check_texts(texts, name="texts"):
    """Validate a list of texts and return it as a list of str.

    Raises
    ------
    TypeError
        If ``texts`` is a bare string, ``None``, not iterable, or holds non-strings.
    ValueError
        If ``texts`` is empty.
    """
    if texts is None:
        raise TypeError(f"{name} must be a list of strings, got None.")
    if isinstance(texts, (str, bytes)):
        raise TypeError(
            f"{name} must be a list of strings, got a single {type(texts).__name__}; "
            f"wrap it in a list: [{texts[:30]!r}]."
        )
    if hasattr(texts, "tolist") and not isinstance(texts, list):
        texts = texts.tolist()  # numpy array, pandas Series
    try:
        texts = list(texts)
    except TypeError:
        raise TypeError(
            f"{name} must be a list of strings, got {type(texts).__name__}."
        ) from None
    if len(texts) == 0:
        raise ValueError(f"{name} is empty; pass at least one text.")
    for i, t in enumerate(texts):
        if not isinstance(t, str):
            raise TypeError(
                f"{name}[{i}] is {type(t).__name__} ({t!r:.40}); every item of "
                f"{name} must be a str."
            )
    return texts


def check_n_concepts(n_concepts, upper, name="n_concepts", why=""):
    """Check ``1 <= n_concepts <= upper`` with a message that names the fix."""
    if not isinstance(n_concepts, numbers.Integral) or n_concepts < 1:
        raise ValueError(f"{name}={n_concepts!r} must be an integer >= 1.")
    if upper is not None and n_concepts > upper:
        raise ValueError(
            f"{name}={n_concepts!r} is larger than this method allows ({upper}"
            f"{', ' + why if why else ''}); use {name} <= {upper}."
        )


#: the largest float32: the concept estimators compute in float32
FLOAT32_MAX = float(np.finfo(np.float32).max)


def _sum_squares(X, chunk=4096):
    """``sum(X**2)`` in float64, a block of rows at a time (no full copy)."""
    total = 0.0
    for start in range(0, X.shape[0], chunk):
        block = X[start : start + chunk]
        if isinstance(block, torch.Tensor):
            total += float(torch.sum(block.double() ** 2))
        else:
            total += float(np.sum(np.asarray(block, dtype=np.float64) ** 2))
    return total


def check_value_range(X, *, max_norm=FLOAT32_MAX**0.5, name="X", owner=None):
    """Refuse activations too large for float32 arithmetic.

    The concept estimators compute in float32, whose largest value is about
    3.4e38: sums of squares of values above about 1e18 overflow to infinity,
    and the fits then fail deep inside a solver or return NaN. This check
    refuses ``X`` when its Frobenius norm ``sqrt(sum(X**2))`` reaches
    ``max_norm`` (by default the square root of the largest float32, so that
    ``sum(X**2)`` is finite in float32), with a message that names the largest
    ``|value|`` and the fix. ``X`` must be finite (checked before).

    Parameters
    ----------
    X : ndarray or torch.Tensor of shape (n_rows, n_features)
        Finite activations.
    max_norm : float, default=FLOAT32_MAX ** 0.5
        Largest accepted Frobenius norm (a method whose arithmetic squares
        sums of squares passes ``FLOAT32_MAX ** 0.25``).
    name : str, default="X"
        Name of the input in the message.
    owner : str or None, default=None
        Name of the estimator, for the message.

    Raises
    ------
    ValueError
        If the norm of ``X`` is ``max_norm`` or more.

    Examples
    --------
    >>> import numpy as np
    >>> from skconcepts.utils._validation import check_value_range
    >>> check_value_range(np.ones((3, 2), dtype=np.float32))
    >>> check_value_range(np.full((3, 2), 1e20, dtype=np.float32))
    Traceback (most recent call last):
    ...
    ValueError: X is too large to fit: its largest |value| is 1e+20 and ...
    """
    if X.shape[0] == 0 or X.shape[1] == 0:
        return
    if isinstance(X, torch.Tensor):
        largest = float(torch.max(torch.abs(X.detach())))
    else:
        largest = float(max(np.max(X), -np.min(X)))
    # quick pass: sum(X**2) <= largest**2 * size; else compute the sum
    if largest * np.sqrt(float(X.shape[0]) * X.shape[1]) < max_norm:
        return
    norm = float(np.sqrt(_sum_squares(X)))
    if norm < max_norm:
        return
    who = f"{owner} computes" if owner else "the fit computes"
    raise ValueError(
        f"{name} is too large to fit: its largest |value| is {largest:.3g} and "
        f"its norm (square root of the sum of squares) is {norm:.3g}, but {who} "
        f"in float32 and overflows at a norm of {max_norm:.3g} or more. Scale "
        "the activations first, e.g. with "
        "skconcepts.preprocessing.ActivationScaler() in the pipeline, or divide "
        "them by their largest |value|."
    )


def check_finite_tensor(X, name="X"):
    """Raise ``ValueError`` if a torch tensor holds NaN or infinity."""
    if not bool(torch.isfinite(X).all()):
        raise ValueError(
            f"Input {name} contains NaN or infinity; clean the activations "
            "(e.g. np.nan_to_num) before fitting."
        )


def check_finite(X, name="X"):
    """Raise ``ValueError`` if an array or a tensor holds NaN or infinity.

    Examples
    --------
    >>> import numpy as np
    >>> from skconcepts.utils._validation import check_finite
    >>> check_finite(np.ones((2, 2)))
    >>> check_finite(np.array([[np.nan]]), "batch 0 of X")
    Traceback (most recent call last):
    ...
    ValueError: Input batch 0 of X contains NaN or infinity; ...
    """
    if isinstance(X, torch.Tensor):
        check_finite_tensor(X, name)
    elif not np.isfinite(X).all():
        raise ValueError(
            f"Input {name} contains NaN or infinity; clean the activations "
            "(e.g. np.nan_to_num) before fitting."
        )


def check_tensor(
    X, *, name="X", n_features=None, owner=None, dtype=torch.float32, detach=True
):
    """Validate a 2-D tensor of activations and return it as float32.

    The one tensor validator of the package (the twin of scikit-learn's
    ``check_array`` for torch input): the tensor must be 2-D with at least one
    row, finite, and, when ``n_features`` is given, that wide. It is detached,
    and cast to float32 (integer and boolean tensors too); it stays on its
    device.

    Parameters
    ----------
    X : torch.Tensor
        Activations of shape (n_rows, n_features).
    name : str, default="X"
        Name of the input in the messages.
    n_features : int or None, default=None
        Expected number of columns (``None``: any).
    owner : str or None, default=None
        Name of the estimator that expects ``n_features``, for the message.
    dtype : torch.dtype or None, default=torch.float32
        The dtype of the result; ``None`` keeps float32 and float64 tensors as
        they are and casts the others to float32 (for dtype-preserving
        transformers).
    detach : bool, default=True
        Detach the tensor from the autograd graph; ``False`` keeps it (for
        differentiable transforms).

    Returns
    -------
    X : torch.Tensor of shape (n_rows, n_features)
        The validated tensor (no copy when it already was float32 and
        detached).

    Raises
    ------
    ValueError
        If ``X`` is not 2-D, has no row, holds NaN or infinity, or has another
        number of columns than ``n_features``.

    Examples
    --------
    >>> import torch
    >>> from skconcepts.utils._validation import check_tensor
    >>> check_tensor(torch.ones(3, 2, dtype=torch.int64)).dtype
    torch.float32
    >>> check_tensor(torch.ones(3), name="X")
    Traceback (most recent call last):
    ...
    ValueError: Expected 2D input, got a tensor of shape (3,); reshape it to ...
    """
    if X.ndim != 2:
        raise ValueError(
            f"Expected 2D input, got a tensor of shape {tuple(X.shape)}; "
            "reshape it to (n_rows, n_features)."
        )
    if X.shape[0] < 1:
        raise ValueError(f"Found array with 0 sample(s) (shape={tuple(X.shape)}).")
    if detach:
        X = X.detach()
    if dtype is not None:
        X = X.to(dtype)
    elif X.dtype not in (torch.float32, torch.float64):
        X = X.float()
    check_finite_tensor(X, name)
    if n_features is not None and X.shape[1] != n_features:
        who = f"{owner} is" if owner else "the estimator is"
        raise ValueError(
            f"{name} has {X.shape[1]} features, but {who} expecting "
            f"{n_features} features as input."
        )
    return X
