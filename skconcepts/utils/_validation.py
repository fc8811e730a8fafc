"""Input validation for texts and activation matrices (numpy, torch, stores)."""

from __future__ import annotations

import numbers
from collections.abc import Mapping
from numbers import Integral

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
    """Validate a sequence of texts and return it as a list of str.

    The one text validator of the package: every entry point that takes texts
    (``SplitPointActivations.fit``/``transform``/``units``/``iter_batches``/
    ``encode``, ``PooledConcepts``, ``TopKInputs.interpret``,
    ``concept_output_gradient``, ``extract_to_store``) reads its texts here.

    Accepted: a list, tuple or other ordered iterable of ``str``; a 1-D numpy
    array or a pandas ``Series``/``Index`` of ``str`` (read by position: the
    ``sample`` of a unit is the position of its text, ``0 … n-1``, not the
    label of a ``Series`` index); a pandas ``DataFrame`` with exactly one
    column, or a 2-D array with one column, read as that column (as a
    ``ColumnTransformer`` passes one column).

    Refused, because iterating them would give something else than the texts:
    a bare string or bytes (its characters), a ``DataFrame`` with several
    columns (its column names), a ``dict`` (its keys), a ``set`` (no order),
    an array of another shape; and items that are not ``str`` (``None``,
    ``NaN``, ``bytes``, numbers).

    Parameters
    ----------
    texts : sequence of str
        The texts.
    name : str, default="texts"
        Name of the argument in the messages.

    Returns
    -------
    texts : list of str
        The texts, in order.

    Raises
    ------
    TypeError
        If ``texts`` is not one of the accepted containers or holds non-strings.
    ValueError
        If ``texts`` is empty.

    Examples
    --------
    >>> import pandas as pd
    >>> from skconcepts.utils._validation import check_texts
    >>> check_texts(pd.DataFrame({"text": ["a good film", "dull"]}))
    ['a good film', 'dull']
    >>> check_texts(pd.DataFrame({"text": ["a"], "label": [1]}), name="X")
    Traceback (most recent call last):
    ...
    TypeError: X is a DataFrame with 2 columns ['text', 'label']; pass the column \
of texts, e.g. X=df['text'].
    """
    texts = _texts_container(texts, name)
    if len(texts) == 0:
        raise ValueError(f"{name} is empty; pass at least one text.")
    for i, t in enumerate(texts):
        if not isinstance(t, str):
            raise TypeError(_bad_text_item(name, i, t))
    return texts


def _texts_container(texts, name):
    """``texts`` as a list, or ``TypeError`` for a container that is no list."""
    kind = type(texts).__name__
    if texts is None:
        raise TypeError(f"{name} must be a list of strings, got None.")
    if isinstance(texts, (str, bytes)):
        raise TypeError(
            f"{name} must be a list of strings, got a single {kind}; "
            f"wrap it in a list: [{texts[:30]!r}]."
        )
    if isinstance(texts, Mapping):
        raise TypeError(
            f"{name} is a {kind}, whose items are its keys; pass the texts as a "
            f"list, e.g. {name}=list(d.values()) or {name}=list(d)."
        )
    if isinstance(texts, (set, frozenset)):
        raise TypeError(
            f"{name} is a {kind}, which has no order (the rows would not follow "
            f"your texts); pass a list, e.g. {name}=sorted(texts)."
        )
    columns = getattr(texts, "columns", None)
    if columns is not None and getattr(texts, "ndim", None) == 2:  # a DataFrame
        if len(columns) != 1:
            raise TypeError(
                f"{name} is a DataFrame with {len(columns)} columns "
                f"{list(columns)[:5]!r}; pass the column of texts, e.g. "
                f"{name}=df[{_first(columns)!r}]."
            )
        return texts.iloc[:, 0].tolist()
    if isinstance(texts, np.ndarray):
        if texts.ndim == 2 and texts.shape[1] == 1:
            return texts[:, 0].tolist()
        if texts.ndim != 1:
            raise TypeError(
                f"{name} is an array of shape {texts.shape}; pass a 1-D array "
                f"or list of strings (one text per item), e.g. {name}=arr[:, 0]."
            )
        return texts.tolist()
    if hasattr(texts, "tolist") and not isinstance(texts, list):
        return texts.tolist()  # pandas Series or Index: by position
    try:
        return list(texts)
    except TypeError:
        raise TypeError(f"{name} must be a list of strings, got {kind}.") from None


def _first(columns):
    return columns[0] if len(columns) else "text"


def _bad_text_item(name, i, t):
    """The message for ``name[i] = t``, which is not a str."""
    where = f"{name}[{i}] is {type(t).__name__} ({t!r:.40})"
    if isinstance(t, (bytes, bytearray)):
        fix = f"decode it first, e.g. {name}=[b.decode('utf-8') for b in {name}]"
    elif t is None or (isinstance(t, float) and t != t) or _is_pd_missing(t):
        fix = (
            "a missing text; drop the missing texts or fill them, e.g. "
            "df['text'].fillna('') (an empty text has no unit)"
        )
    else:
        fix = f"every item of {name} must be a str"
    return f"{where}; {fix}."


def _is_pd_missing(t):
    return type(t).__name__ in ("NAType", "NaTType")


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
        # quick pass: sum(X**2) <= largest**2 * size; else compute the sum
        if largest * np.sqrt(float(X.shape[0]) * X.shape[1]) < max_norm:
            return
    else:
        # quick pass: one BLAS dot in X's own dtype (infinite when it
        # overflows); clearly below the limit means accepted
        flat = X.reshape(-1)
        if float(np.dot(flat, flat)) < 0.99 * float(max_norm) ** 2:
            return
        largest = float(max(np.max(X), -np.min(X)))
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


def check_concept_indices(concepts, n_concepts, name="concepts"):
    """Concept indices as a list of ints; ``None`` means every concept.

    Parameters
    ----------
    concepts : int, sequence of int or None
        Indices of concepts in ``[0, n_concepts)``.
    n_concepts : int
        Number of concepts of the fitted estimator.
    name : str, default="concepts"
        The argument's name in error messages.

    Returns
    -------
    indices : list of int

    Raises
    ------
    ValueError
        For an empty list, a non-integer, or an index out of range; the message
        names the argument, the value and the valid range.

    Examples
    --------
    >>> from skconcepts.utils._validation import check_concept_indices
    >>> check_concept_indices(None, 3), check_concept_indices(2, 3)
    ([0, 1, 2], [2])
    """
    if concepts is None:
        return list(range(n_concepts))
    values = [concepts] if np.ndim(concepts) == 0 else list(np.asarray(concepts))
    if not values or not all(
        isinstance(c, (Integral, np.integer)) and not isinstance(c, bool)
        for c in values
    ):
        raise ValueError(
            f"{name}={concepts!r} must be an int or a non-empty list of ints "
            f"(concept indices in [0, {n_concepts - 1}]), or None."
        )
    bad = [int(c) for c in values if not 0 <= int(c) < n_concepts]
    if bad:
        raise ValueError(
            f"{name} names concept {bad[0]}, but the pipeline has {n_concepts} "
            f"concepts; use indices in [0, {n_concepts - 1}]."
        )
    return [int(c) for c in values]
