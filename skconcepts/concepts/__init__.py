"""Concept estimators: dictionaries learned from activations.

Every class here follows the contract of :class:`ConceptMixin` (re-exported
here: other modules recognise a concept estimator with
``isinstance(est, ConceptMixin)``). Names resolve lazily, so that importing
one method does not import the others' dependencies and
``import skconcepts.concepts`` imports no torch.
"""

import importlib

_LAZY = {
    "ConceptMixin": "skconcepts.concepts._base",
    "NMFConcepts": "skconcepts.concepts.nmf",
    "SemiNMFConcepts": "skconcepts.concepts.nmf",
    "ConvexNMFConcepts": "skconcepts.concepts.nmf",
    "PCAConcepts": "skconcepts.concepts.linear",
    "SVDConcepts": "skconcepts.concepts.linear",
    "ICAConcepts": "skconcepts.concepts.linear",
    "SparsePCAConcepts": "skconcepts.concepts.linear",
    "DictionaryLearningConcepts": "skconcepts.concepts.linear",
    "KMeansConcepts": "skconcepts.concepts.clustering",
    "SAEConcepts": "skconcepts.concepts.sae",
    "TopKSAEConcepts": "skconcepts.concepts.sae",
    "BatchTopKSAEConcepts": "skconcepts.concepts.sae",
    "JumpReLUSAEConcepts": "skconcepts.concepts.sae",
    "MPSAEConcepts": "skconcepts.concepts.sae",
}

__all__ = sorted(_LAZY)


def __getattr__(name):
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'skconcepts.concepts' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(__all__))
