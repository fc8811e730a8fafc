"""Discover the estimators of skconcepts (used by ``tests/test_common.py``)."""

from __future__ import annotations

import importlib
import inspect
import pkgutil

__all__ = ["all_estimators"]

_TYPES = ("concept", "transformer")


def all_estimators(type_filter=None):
    """List the public estimator classes of skconcepts.

    Walks the public modules of the package (imports them, so optional heavy
    dependencies load) and collects the classes derived from
    ``sklearn.base.BaseEstimator``.

    Parameters
    ----------
    type_filter : {"concept", "transformer"}, list of those or None, default=None
        ``"concept"``: the concept estimators (subclasses of
        :class:`~skconcepts.concepts._base.ConceptMixin`). ``"transformer"``:
        every transformer (concept estimators, preprocessing,
        activations). ``None``: every estimator.

    Returns
    -------
    estimators : list of (str, type)
        ``(name, class)`` pairs sorted by name.

    Examples
    --------
    >>> from skconcepts.utils.discovery import all_estimators
    >>> names = [name for name, _ in all_estimators(type_filter="concept")]
    >>> "PCAConcepts" in names and "KMeansConcepts" in names
    True
    """
    from sklearn.base import BaseEstimator, TransformerMixin

    import skconcepts
    from skconcepts.concepts._base import ConceptMixin

    if type_filter is None:
        filters = []
    elif isinstance(type_filter, str):
        filters = [type_filter]
    else:
        filters = list(type_filter)
    unknown = sorted(set(filters) - set(_TYPES))
    if unknown:
        raise ValueError(
            f"type_filter={type_filter!r} holds unknown types {unknown}; use "
            f"None or some of {list(_TYPES)}."
        )
    bases = {"concept": ConceptMixin, "transformer": TransformerMixin}

    found = {}
    for info in pkgutil.walk_packages(skconcepts.__path__, prefix="skconcepts."):
        parts = info.name.split(".")
        if any(part.startswith("_") for part in parts) or "tests" in parts:
            continue
        module = importlib.import_module(info.name)
        for name, cls in vars(module).items():  # not dir(): lazy modules
            if (
                not inspect.isclass(cls)
                or name.startswith("_")
                or cls.__module__ != module.__name__
                or not issubclass(cls, BaseEstimator)
                or inspect.isabstract(cls)
            ):
                continue
            if filters and not any(issubclass(cls, bases[f]) for f in filters):
                continue
            found[name] = cls
    return sorted(found.items())
