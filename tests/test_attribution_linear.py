"""Tests of skconcepts.attribution.linear_concept_importance (the exact gradient x
input of a linear classifier on concept activations)."""

import numpy as np
import pytest
import torch
from sklearn.linear_model import LogisticRegression

import skconcepts
from skconcepts.attribution import linear_concept_importance


def test_top_level_name():
    assert skconcepts.linear_concept_importance is linear_concept_importance
    assert "linear_concept_importance" in skconcepts.attribution.__all__


@pytest.mark.parametrize("n_classes", [2, 3])
def test_linear_concept_importance_is_gradient_x_input(n_classes):
    rng = np.random.default_rng(0)
    C = rng.random((60, 4))
    y = rng.integers(0, n_classes, 60)
    clf = LogisticRegression().fit(C, y)
    imp = linear_concept_importance(clf, C, y)
    assert imp.shape == (n_classes, 4)
    assert list(imp.index) == [str(c) for c in range(n_classes)]

    # reference: autograd of each class's log-odds w.r.t. the concepts
    Ct = torch.tensor(C, requires_grad=True)
    W = torch.tensor(clf.coef_)
    b = torch.tensor(clf.intercept_)
    z = Ct @ W.T + b  # (n, 1) binary, (n, n_classes) multiclass
    logits = torch.cat([-z, z], dim=1) if n_classes == 2 else z
    for j in range(n_classes):
        (grad,) = torch.autograd.grad(logits[:, j].sum(), Ct, retain_graph=True)
        expected = (grad * Ct).detach().numpy()[y == j].mean(axis=0)
        np.testing.assert_allclose(imp.iloc[j].to_numpy(), expected, rtol=1e-10)


def test_without_y_every_sample_counts_and_names_are_kept():
    rng = np.random.default_rng(1)
    C = rng.random((30, 3))
    y = np.array(["a", "b", "c"] * 10)
    clf = LogisticRegression().fit(C, y)
    imp = linear_concept_importance(clf, C, concept_names=["x", "y", "z"])
    assert list(imp.columns) == ["x", "y", "z"]
    np.testing.assert_allclose(imp.to_numpy(), (C[:, None, :] * clf.coef_).mean(0))
    # a class without samples in y gets zeros
    imp = linear_concept_importance(clf, C[:10], np.array(["a"] * 10))
    assert (imp.loc[["b", "c"]].to_numpy() == 0).all()
    assert (imp.loc["a"].to_numpy() != 0).all()


@pytest.mark.parametrize(
    "fit_labels, y, bad, classes",
    [
        (["neg", "pos"], ["neg", "pos", "neutral", "neg"], "['neutral']",
         "['neg', 'pos']"),
        ([0, 1], ["0", "1", "0", "1"], "['0', '1']", "[0, 1]"),  # str vs int
        ([0, 1], [1, 2, 2, 1], "[2]", "[0, 1]"),
    ],
)  # fmt: skip
def test_labels_that_are_not_classes_raise(fit_labels, y, bad, classes):
    C = np.random.default_rng(2).random((20, 2))
    clf = LogisticRegression().fit(C, fit_labels * 10)
    with pytest.raises(ValueError) as info:
        linear_concept_importance(clf, C[:4], np.array(y))
    message = str(info.value)
    assert message.startswith(f"y holds labels {bad} that are not among")
    assert f"the classifier's classes_ {classes}" in message


def test_shapes_are_checked():
    C = np.random.default_rng(3).random((10, 3))
    clf = LogisticRegression().fit(C, [0, 1] * 5)
    with pytest.raises(ValueError, match=r"C has shape \(10, 2\), but the classifier"):
        linear_concept_importance(clf, C[:, :2])
    with pytest.raises(ValueError, match=r"y has shape \(9,\), but C has 10 rows"):
        linear_concept_importance(clf, C, [0, 1, 0, 1, 0, 1, 0, 1, 0])
