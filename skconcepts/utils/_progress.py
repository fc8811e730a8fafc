"""The one progress bar of skconcepts: tqdm, shown by tqdm's own rule by default.

Every long operation (extraction, fitting, streaming, attribution,
interpretation, stores) takes ``progress=None`` and calls :func:`progress_bar`:

- ``None`` (the default): tqdm decides -- a bar when stderr is an interactive
  terminal or in a notebook (``tqdm.auto``), none otherwise (a pipe, a log
  file, pytest's captured output, a CI job);
- ``True``: always a bar;
- ``False``: never a bar.
"""

from __future__ import annotations

import sys

from tqdm.auto import tqdm

__all__ = [
    "PROGRESS_CONSTRAINT",
    "progress_bar",
    "progress_disabled",
    "progress_enabled",
]

#: ``_parameter_constraints`` entry of a ``progress`` parameter
PROGRESS_CONSTRAINT = ["boolean", None]


def progress_disabled(progress):
    """tqdm's ``disable`` for a ``progress`` value (``None`` lets tqdm decide).

    Parameters
    ----------
    progress : bool or None
        ``None``: a bar only when stderr is an interactive terminal (tqdm's
        ``disable=None``); ``True``: always; ``False``: never.

    Returns
    -------
    disable : bool or None
        What to pass as tqdm's ``disable``.

    Examples
    --------
    >>> from skconcepts.utils._progress import progress_disabled
    >>> progress_disabled(None), progress_disabled(True), progress_disabled(False)
    (None, False, True)
    """
    return None if progress is None else not progress


def progress_enabled(progress):
    """Whether a bar shows, for code that drives another library's bar (skorch).

    Parameters
    ----------
    progress : bool or None
        ``None``: tqdm's rule, ``True`` in a notebook or when stderr is an
        interactive terminal; ``True``/``False``: as given.

    Returns
    -------
    enabled : bool

    Examples
    --------
    >>> from skconcepts.utils._progress import progress_enabled
    >>> progress_enabled(True), progress_enabled(False)
    (True, False)
    """
    if progress is not None:
        return bool(progress)
    if "notebook" in getattr(tqdm, "__module__", ""):  # tqdm.auto in Jupyter
        return True
    isatty = getattr(sys.stderr, "isatty", None)
    return bool(isatty and isatty())


def progress_bar(
    iterable=None, *, total=None, progress=None, desc=None, unit="it", **kwargs
):
    """A tqdm bar over ``iterable`` (or a manual one of ``total`` steps).

    Parameters
    ----------
    iterable : iterable or None, default=None
        What to iterate over; ``None`` gives a bar to ``update`` by hand.
    total : int or None, default=None
        Number of steps (default ``len(iterable)`` when it has one).
    progress : bool or None, default=None
        ``None``: a bar when stderr is an interactive terminal or in a
        notebook, hidden otherwise (tqdm's own rule); ``True``: always;
        ``False``: never.
    desc : str or None, default=None
        Text before the bar.
    unit : str, default="it"
        Name of one step.
    **kwargs
        Other ``tqdm`` arguments (e.g. ``leave=False``).

    Returns
    -------
    bar : tqdm.auto.tqdm
        Iterate over it, or call ``update``; close it (or use ``with``).

    Examples
    --------
    >>> from skconcepts.utils._progress import progress_bar
    >>> sum(progress_bar(range(4), progress=False))
    6
    >>> with progress_bar(total=3, progress=False) as bar:
    ...     bar.update(3)
    ...     bar.disable
    True
    """
    return tqdm(
        iterable,
        total=total,
        desc=desc,
        unit=unit,
        disable=progress_disabled(progress),
        **kwargs,
    )
