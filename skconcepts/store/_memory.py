"""The one memory-budget check: does an array fit before it is allocated?

Loading a store with :meth:`ActivationStore.to_numpy` and collecting the
concept activations of a store into one array both allocate an array whose
size is known in advance. :func:`check_memory_budget` compares that size with
the caller's ``max_bytes`` (or ``MEMORY_FRACTION`` of the RAM available now)
and raises :class:`~skconcepts.exceptions.StoreTooLargeError` naming the bytes
needed, the budget and the fix, before anything is allocated.
"""

from __future__ import annotations

import os

from skconcepts.exceptions import StoreTooLargeError

__all__ = [
    "MEMORY_FRACTION",
    "available_memory",
    "check_memory_budget",
    "format_bytes",
    "memory_budget",
    "streaming_estimator_names",
]

#: fraction of the available RAM that an array loaded from a store may fill
#: when no ``max_bytes`` is given
MEMORY_FRACTION = 0.25


def available_memory() -> int:
    """Bytes of RAM available now.

    Returns
    -------
    n_bytes : int
        ``MemAvailable`` of ``/proc/meminfo``, else the available physical
        pages, else 4 GiB when neither can be read.

    Examples
    --------
    >>> from skconcepts.store import available_memory
    >>> available_memory() > 0
    True
    """
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (AttributeError, ValueError, OSError):  # pragma: no cover
        return 4 * 2**30


def format_bytes(n) -> str:
    """A byte count in binary units, for messages.

    Parameters
    ----------
    n : int or float
        Number of bytes.

    Returns
    -------
    text : str
        ``"512 B"``, ``"1.5 KiB"``, ... up to TiB.

    Examples
    --------
    >>> from skconcepts.store import format_bytes
    >>> format_bytes(512), format_bytes(3 * 2**20 // 2)
    ('512 B', '1.5 MiB')
    """
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return f"{n:.1f} {unit}" if unit != "B" else f"{n} B"
        n /= 1024
    return ""  # pragma: no cover


def memory_budget(max_bytes=None) -> tuple[int, str]:
    """The memory budget in bytes, and where it comes from.

    Parameters
    ----------
    max_bytes : int or None, default=None
        A budget given by the caller; ``None`` allows ``MEMORY_FRACTION``
        (25%) of the RAM available now.

    Returns
    -------
    budget : int
        Bytes that may be allocated.
    origin : str
        ``"max_bytes=..."`` or ``"25% of the available RAM"``, for messages.

    Examples
    --------
    >>> from skconcepts.store import memory_budget
    >>> memory_budget(1000)
    (1000, 'max_bytes=1000')
    """
    if max_bytes is None:
        return (
            int(MEMORY_FRACTION * available_memory()),
            f"{MEMORY_FRACTION:.0%} of the available RAM",
        )
    return int(max_bytes), f"max_bytes={max_bytes!r}"


def check_memory_budget(needed_bytes, max_bytes=None, *, what, fix, budget=None):
    """Raise ``StoreTooLargeError`` when an array would exceed the memory budget.

    Call it before allocating: nothing is allocated here.

    Parameters
    ----------
    needed_bytes : int
        Size of the array about to be allocated.
    max_bytes : int or None, default=None
        The caller's budget; ``None`` allows ``MEMORY_FRACTION`` (25%) of the
        RAM available now.
    what : str
        Who needs the memory, the subject of the message (it is followed by
        ``" needs <n> bytes"``), e.g. ``"PCAConcepts"`` or
        ``"PCAConcepts.transform of the ActivationStore at 'acts' (300 rows x
        3 concepts)"``.
    fix : str or callable
        What to do instead, appended to the message; a callable is called
        (without arguments) only when the error is raised, so an expensive
        message costs nothing when the array fits.
    budget : tuple of (int, str) or None, default=None
        A ``(budget, origin)`` pair from :func:`memory_budget`, used instead of
        ``max_bytes``: checking a growing size batch after batch against one
        reading of the available RAM. Give ``max_bytes`` or ``budget``, not
        both.

    Returns
    -------
    budget : int
        The budget in bytes (at least ``needed_bytes``).

    Raises
    ------
    StoreTooLargeError
        A ``MemoryError`` whose message gives the bytes needed, the budget and
        where it comes from, then ``fix``.

    Examples
    --------
    >>> from skconcepts.store import check_memory_budget, memory_budget
    >>> check_memory_budget(800, 1000, what="to_numpy", fix="Raise max_bytes.")
    1000
    >>> once = memory_budget(1000)  # several checks against one budget
    >>> check_memory_budget(900, budget=once, what="transform", fix="Stream it.")
    1000
    >>> check_memory_budget(4000, 1000, what="to_numpy", fix="Raise max_bytes.")
    Traceback (most recent call last):
    ...
    skconcepts.exceptions.StoreTooLargeError: to_numpy needs 4000 bytes (3.9 KiB), but
    the budget is 1000 bytes (1000 B, max_bytes=1000). Raise max_bytes.
    """
    needed = int(needed_bytes)
    if budget is None:
        budget, origin = memory_budget(max_bytes)
    elif max_bytes is not None:
        raise ValueError(
            f"pass max_bytes={max_bytes!r} or budget={budget!r}, not both: budget "
            "is the (bytes, origin) pair that memory_budget(max_bytes) returns."
        )
    else:
        budget, origin = budget
    if needed > budget:
        advice = fix() if callable(fix) else fix
        raise StoreTooLargeError(
            f"{what} needs {needed} bytes ({format_bytes(needed)}), but the budget "
            f"is {budget} bytes ({format_bytes(budget)}, {origin}). {advice}"
        )
    return budget


def streaming_estimator_names() -> list[str]:
    """Names of the concept estimators that can learn from a store batch by batch.

    Derived from the estimators themselves: every concept estimator of
    skconcepts that has ``partial_fit``. Computing the list imports every public
    module of the package, so call it when a message needs it, not at import.

    Returns
    -------
    names : list of str
        Class names, sorted.

    Examples
    --------
    >>> from skconcepts.store import streaming_estimator_names
    >>> names = streaming_estimator_names()
    >>> "PCAConcepts" in names, "ICAConcepts" in names
    (True, False)
    """
    # deferred: discovery imports every estimator module, and the concept
    # modules import the store (a module-level import here would be a circle)
    from skconcepts.utils.discovery import all_estimators

    return [
        name
        for name, cls in all_estimators(type_filter="concept")
        if hasattr(cls, "partial_fit")
    ]
