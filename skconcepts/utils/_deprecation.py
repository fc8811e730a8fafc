"""Deprecated aliases of renamed parameters (kept for one release)."""

from __future__ import annotations

import functools
import inspect
import os
import sys
import warnings

import sklearn

import skconcepts

__all__ = ["DEPRECATED", "renamed_kwarg", "renamed_param", "user_stacklevel"]

#: default of a deprecated parameter alias in ``__init__`` (sklearn's idiom)
DEPRECATED = "deprecated"


def renamed_param(estimator, old, new):
    """The value of parameter ``new``, or of its deprecated alias ``old``.

    A renamed estimator parameter keeps its old name in ``__init__`` for one
    release, with the default :data:`DEPRECATED`; ``fit`` reads the value
    through this function, which warns with a ``FutureWarning`` naming the new
    parameter when the old one was set.

    Parameters
    ----------
    estimator : object
        The estimator whose parameters are read.
    old : str
        The deprecated name.
    new : str
        The name that replaces it.

    Returns
    -------
    value : object
        ``getattr(estimator, old)`` when it was set, else
        ``getattr(estimator, new)``.

    Examples
    --------
    >>> import warnings
    >>> from skconcepts.utils._deprecation import renamed_param
    >>> class Est:
    ...     def __init__(self, n_passes=10, max_epochs="deprecated"):
    ...         self.n_passes, self.max_epochs = n_passes, max_epochs
    >>> renamed_param(Est(), "max_epochs", "n_passes")
    10
    >>> with warnings.catch_warnings(record=True) as caught:
    ...     warnings.simplefilter("always")
    ...     value = renamed_param(Est(max_epochs=3), "max_epochs", "n_passes")
    >>> value, caught[0].category.__name__
    (3, 'FutureWarning')
    """
    value = getattr(estimator, old, DEPRECATED)
    if isinstance(value, str) and value == DEPRECATED:
        return getattr(estimator, new)
    name = type(estimator).__name__
    warnings.warn(
        f"{name}({old}=...) is deprecated and will be removed in the next "
        f"release; use {name}({new}=...) instead.",
        FutureWarning,
        stacklevel=user_stacklevel(),
    )
    return value


def user_stacklevel():
    """``stacklevel`` that points a warning at the first frame outside the library.

    For warnings raised deep inside ``fit`` (through skconcepts' and
    scikit-learn's own frames, at a depth that differs between code paths),
    e.g. when a deprecated parameter is read: the warning should name the
    user's line that called ``fit``.
    """
    library = tuple(
        os.path.dirname(module.__file__) + os.sep for module in (skconcepts, sklearn)
    )
    frame, level = sys._getframe(1), 1  # level 1: the caller of warnings.warn
    while frame is not None and frame.f_code.co_filename.startswith(library):
        frame, level = frame.f_back, level + 1
    return level


def renamed_kwarg(old, new):
    """Decorator: a function's keyword ``old`` was renamed ``new``.

    Calls that still pass ``old=`` keep working for one release, with a
    ``FutureWarning`` naming the new keyword; passing both is a ``TypeError``.

    Parameters
    ----------
    old : str
        The deprecated keyword.
    new : str
        The keyword that replaces it (a parameter of the decorated function).

    Returns
    -------
    decorator : callable
        Wraps a function (keeps its name, docstring and signature).

    Examples
    --------
    >>> import warnings
    >>> from skconcepts.utils._deprecation import renamed_kwarg
    >>> @renamed_kwarg("activations", "extractor")
    ... def run(extractor, texts):
    ...     return extractor
    >>> with warnings.catch_warnings(record=True) as caught:
    ...     warnings.simplefilter("always")
    ...     value = run(activations="acts", texts=[])
    >>> value, caught[0].category.__name__
    ('acts', 'FutureWarning')
    """

    def decorator(func):
        names = list(inspect.signature(func).parameters)
        position = names.index(new)  # a positional ``new`` fills args[position]

        @functools.wraps(func)
        def wrapper(*args, **kwargs):
            if old in kwargs:
                if new in kwargs or len(args) > position:
                    raise TypeError(
                        f"{func.__name__}() got both {new}= and its deprecated "
                        f"spelling {old}=; pass {new}= only."
                    )
                warnings.warn(
                    f"{func.__name__}({old}=...) is deprecated and will be removed "
                    f"in the next release; use {func.__name__}({new}=...) instead.",
                    FutureWarning,
                    stacklevel=2,
                )
                kwargs[new] = kwargs.pop(old)
            return func(*args, **kwargs)

        return wrapper

    return decorator
