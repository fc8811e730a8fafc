"""Input validation for texts and activation matrices (numpy, torch, stores)."""

from __future__ import annotations

import numbers


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


def check_finite_tensor(X, name="X"):
    """Raise ``ValueError`` if a torch tensor holds NaN or infinity."""
    import torch

    if not bool(torch.isfinite(X).all()):
        raise ValueError(
            f"Input {name} contains NaN or infinity; clean the activations "
            "(e.g. np.nan_to_num) before fitting."
        )
