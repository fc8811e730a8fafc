"""Tests of the estimator registry, skconcepts.utils.discovery."""

import pytest

from skconcepts import concepts
from skconcepts.utils.discovery import all_estimators, concept_methods, method_name

#: every --method name that skconcepts fit accepted before the registry moved
CLI_METHODS = [
    "nmf", "seminmf", "convexnmf", "pca", "svd", "ica", "sparsepca",
    "dictionarylearning", "kmeans", "sae", "topksae", "batchtopksae",
    "jumprelusae", "mpsae",
]  # fmt: skip


def test_concept_methods_cover_every_concept_class():
    methods = concept_methods()
    others = {"ProbeConcepts", "NeuronConcepts"}  # supervised, baseline: no --method
    assert sorted(cls.__name__ for cls in methods.values()) == sorted(
        set(concepts.__all__) - others
    )
    assert sorted(methods) == sorted(CLI_METHODS)
    assert list(methods) == sorted(methods)
    for name, cls in methods.items():
        assert cls is getattr(concepts, cls.__name__)
        assert method_name(cls) == name
    assert dict(all_estimators(type_filter="concept")) == {
        cls.__name__: cls for cls in methods.values()
    }


@pytest.mark.parametrize(
    "spelling, method",
    [
        ("SemiNMFConcepts", "seminmf"),
        ("Semi-NMF", "seminmf"),
        ("semi_nmf", "seminmf"),
        ("topk_sae", "topksae"),
        ("TopKSAE", "topksae"),
        ("pca", "pca"),
        ("Dictionary-Learning-Concepts", "dictionarylearning"),
    ],
)
def test_method_name_normalises_spellings(spelling, method):
    assert method_name(spelling) == method


def test_supervised_and_baseline_kinds():
    assert [n for n, _ in all_estimators(type_filter="supervised")] == ["ProbeConcepts"]
    assert [n for n, _ in all_estimators(type_filter="baseline")] == ["NeuronConcepts"]
    both = all_estimators(type_filter=["supervised", "baseline"])
    assert [n for n, _ in both] == ["NeuronConcepts", "ProbeConcepts"]


def test_all_estimators_rejects_unknown_types():
    with pytest.raises(ValueError, match=r"unknown types \['probe'\]"):
        all_estimators(type_filter=["concept", "probe"])
