"""Concept estimators: dictionaries learned from activations.

Every class here follows the contract of :class:`ConceptMixin` (re-exported
here: other modules recognise a concept estimator with
``isinstance(est, ConceptMixin)``). Names resolve lazily, so that importing
one method does not import the others' dependencies and
``import skconcepts.concepts`` imports no torch.
"""

import importlib

_LAZY = {
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
    "ProbeConcepts": "skconcepts.concepts.probes",
    "NeuronConcepts": "skconcepts.concepts.neurons",
}

#: the estimator classes (``skconcepts fit --method`` takes the unsupervised
#: ones; ``ProbeConcepts`` needs labels and ``NeuronConcepts`` is the baseline)
__all__ = sorted(_LAZY)

#: public, not an estimator: resolved lazily too (it imports torch)
_MIXINS = {"ConceptMixin": "skconcepts.concepts._base"}


def __getattr__(name):
    if name in _LAZY or name in _MIXINS:
        module = _LAZY.get(name) or _MIXINS[name]
        value = getattr(importlib.import_module(module), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'skconcepts.concepts' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(__all__) | set(_MIXINS))
