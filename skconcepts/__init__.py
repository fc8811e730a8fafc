"""Concepts inside transformer language models as scikit-learn estimators.

Public names are resolved lazily (PEP 562) so that ``import skconcepts`` stays
fast: torch, transformers, skorch and overcomplete load only when a name that
needs them is first used.
"""

import importlib

__version__ = "0.1.0"

# public name -> module that defines it
_LAZY = {
    "SplitPointActivations": "skconcepts.activations",
    "ActivationCache": "skconcepts._cache",
    "ActivationStore": "skconcepts.store",
    "extract_to_store": "skconcepts.store",
    "transform_store": "skconcepts.store",
    "write_array_store": "skconcepts.store",
    "ActivationScaler": "skconcepts.preprocessing",
    "NonNegative": "skconcepts.preprocessing",
    "NMFConcepts": "skconcepts.concepts",
    "SemiNMFConcepts": "skconcepts.concepts",
    "ConvexNMFConcepts": "skconcepts.concepts",
    "PCAConcepts": "skconcepts.concepts",
    "SVDConcepts": "skconcepts.concepts",
    "ICAConcepts": "skconcepts.concepts",
    "KMeansConcepts": "skconcepts.concepts",
    "SparsePCAConcepts": "skconcepts.concepts",
    "DictionaryLearningConcepts": "skconcepts.concepts",
    "SAEConcepts": "skconcepts.concepts",
    "TopKSAEConcepts": "skconcepts.concepts",
    "BatchTopKSAEConcepts": "skconcepts.concepts",
    "JumpReLUSAEConcepts": "skconcepts.concepts",
    "MPSAEConcepts": "skconcepts.concepts",
    "ProbeConcepts": "skconcepts.concepts",
    "NeuronConcepts": "skconcepts.concepts",
    "ConceptLabeler": "skconcepts.labels",
    "TopKInputs": "skconcepts.interpret",
    "concept_output_gradient": "skconcepts.attribution",
    "linear_concept_importance": "skconcepts.attribution",
    "input_concept_gradient": "skconcepts.attribution",
    "concept_intervention": "skconcepts.intervention",
    "concept_ablation_effect": "skconcepts.intervention",
    "PooledConcepts": "skconcepts.pooling",
    "extract_to_store_ray": "skconcepts.distributed",
}

_SUBMODULES = {
    "activations",
    "attribution",
    "concepts",
    "datasets",
    "distributed",
    "exceptions",
    "interpret",
    "intervention",
    "io",
    "labels",
    "metrics",
    "pooling",
    "preprocessing",
    "store",
    "utils",
    "viz",
}

__all__ = sorted(_LAZY)


def __getattr__(name):
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    if name in _SUBMODULES:
        return importlib.import_module(f"skconcepts.{name}")
    raise AttributeError(f"module 'skconcepts' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(__all__) | _SUBMODULES)
