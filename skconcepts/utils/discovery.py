"""Discover the estimators of skconcepts: the one estimator registry.

:func:`all_estimators` lists the public estimator classes (``tests/test_common.py``
checks them all); :func:`concept_methods` names the concept estimators as the
command line does (``seminmf``, ``topksae``, ...).
"""

from __future__ import annotations

import importlib
import inspect
import pkgutil

from sklearn.base import BaseEstimator, TransformerMixin

import skconcepts
from skconcepts.concepts import ConceptMixin

__all__ = ["all_estimators", "concept_methods", "method_name"]

_TYPES = ("concept", "supervised", "baseline", "transformer")
# a ConceptMixin subclass states its kind in ``_concept_kind`` ("concept" by
# default; "supervised" or "baseline")


def all_estimators(type_filter=None):
    """List the public estimator classes of skconcepts.

    Walks the public modules of the package (imports them, so optional heavy
    dependencies load) and collects the classes derived from
    ``sklearn.base.BaseEstimator``.

    Parameters
    ----------
    type_filter : {"concept", "supervised", "baseline", "transformer"}, list \
of those or None, default=None
        ``"concept"``: the unsupervised concept estimators that learn
        ``n_concepts`` concepts (subclasses of
        :class:`~skconcepts.concepts.ConceptMixin`; the methods of
        ``skconcepts fit --method``). ``"supervised"``: the concept
        estimators that learn from labels (:class:`~skconcepts.ProbeConcepts`).
        ``"baseline"``: the fixed dictionaries that learn nothing
        (:class:`~skconcepts.NeuronConcepts`, the baseline row of the
        benchmarks). ``"transformer"``: every transformer (concept
        estimators, preprocessing, activations). ``None``: every estimator.

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
    >>> [name for name, _ in all_estimators(type_filter="baseline")]
    ['NeuronConcepts']
    """
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

    def matches(cls, kind):
        if kind == "transformer":
            return issubclass(cls, TransformerMixin)
        return issubclass(cls, ConceptMixin) and (
            getattr(cls, "_concept_kind", "concept") == kind
        )

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
            if filters and not any(matches(cls, f) for f in filters):
                continue
            found[name] = cls
    return sorted(found.items())


def method_name(name):
    """The method name of a concept estimator: lower case, no suffix, no ``-``/``_``.

    Parameters
    ----------
    name : str or type
        A class or class name (``"SemiNMFConcepts"``, ``TopKSAEConcepts``) or a
        spelling of the method (``"Semi-NMF"``, ``"topk_sae"``).

    Returns
    -------
    method : str
        E.g. ``"seminmf"`` or ``"topksae"``.

    Examples
    --------
    >>> from skconcepts.utils.discovery import method_name
    >>> method_name("SemiNMFConcepts"), method_name("topk_sae"), method_name("PCA")
    ('seminmf', 'topksae', 'pca')
    """
    if inspect.isclass(name):
        name = name.__name__
    key = str(name).lower().replace("-", "").replace("_", "")
    return key[: -len("concepts")] if key.endswith("concepts") else key


def concept_methods():
    """Every concept estimator class by its method name.

    Derived from :func:`all_estimators` with ``type_filter="concept"``: the
    method name of ``SemiNMFConcepts`` is ``"seminmf"`` (see
    :func:`method_name`). The ``skconcepts fit --method`` option takes these
    names.

    Returns
    -------
    methods : dict of str to type
        Method name -> concept estimator class, sorted by name.

    Examples
    --------
    >>> from skconcepts.utils.discovery import concept_methods
    >>> methods = concept_methods()
    >>> methods["pca"].__name__, methods["topksae"].__name__
    ('PCAConcepts', 'TopKSAEConcepts')
    """
    found = all_estimators(type_filter="concept")
    return dict(sorted((method_name(cls), cls) for _, cls in found))
