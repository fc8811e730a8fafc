"""The skorch net of the SAEs (skconcepts.concepts.sae._net)."""

import numpy as np
import pytest
import torch
from numpy.testing import assert_allclose
from skorch import NeuralNet

from skconcepts.concepts import (
    BatchTopKSAEConcepts,
    JumpReLUSAEConcepts,
    MPSAEConcepts,
    SAEConcepts,
    TopKSAEConcepts,
)
from skconcepts.concepts.sae._net import _SAENet

ALL = [
    SAEConcepts,
    TopKSAEConcepts,
    BatchTopKSAEConcepts,
    JumpReLUSAEConcepts,
    MPSAEConcepts,
]


def _loss_of(sae, x):
    module = sae.net_.module_
    with torch.no_grad():
        y_pred = module(x)
        return y_pred, sae.net_.get_loss(y_pred, x)


@pytest.mark.parametrize(
    ("cls", "dead_concepts"),
    [(cls, None) for cls in ALL]
    + [(cls, "auxiliary") for cls in ALL if cls is not MPSAEConcepts],
)
def test_net_is_a_neuralnet_whose_loss_is_the_old_four_tuple_loss(
    cls, dead_concepts, small_X, make
):
    coef = {"l1_coef": 0.05} if cls is SAEConcepts else {}
    coef = {"l0_coef": 0.05} if cls is JumpReLUSAEConcepts else coef
    sae = make(cls, dead_concepts=dead_concepts, aux_coef=0.3, **coef).fit(small_X)
    net = sae.net_
    assert isinstance(net, NeuralNet) and type(net) is _SAENet
    assert type(net).get_loss is not NeuralNet.get_loss
    assert isinstance(net.criterion_, torch.nn.MSELoss)
    x = torch.from_numpy(small_X[:100])
    (pre_codes, codes, x_hat), loss = _loss_of(sae, x)
    # what the former criterion computed from the module's 4-tuple
    with torch.no_grad():
        penalty = net.module_.penalty(x, pre_codes, codes, x_hat)
    old = (x_hat - x).square().mean() + penalty
    assert loss.shape == () and torch.equal(loss, old)
    # and by hand, in float64: reconstruction + the method's sparsity term
    C = codes.double().numpy()
    X = small_X[:100].astype(np.float64)
    expected = ((X - x_hat.double().numpy()) ** 2).mean()
    if cls is SAEConcepts:
        expected += 0.05 * np.abs(C).sum(1).mean()
    elif cls is JumpReLUSAEConcepts:
        expected += 0.05 * (C != 0).sum(1).mean()
    if dead_concepts is None:  # the auxiliary terms: see the AuxK test below
        assert_allclose(loss.item(), expected, rtol=1e-5)


def test_get_loss_accepts_numpy_target(small_X, make):
    sae = make(TopKSAEConcepts).fit(small_X)
    x = torch.from_numpy(small_X)
    y_pred, loss = _loss_of(sae, x)
    with torch.no_grad():
        assert torch.equal(sae.net_.get_loss(y_pred, small_X), loss)


def test_l1_loss_matches_formula(small_X, make):
    sae = make(SAEConcepts, l1_coef=0.05).fit(small_X)
    x = torch.from_numpy(small_X)
    with torch.no_grad():
        y_pred = sae.net_.module_(x)
        loss = sae.net_.get_loss(y_pred, x)
    C = sae.transform(small_X).astype(np.float64)
    X_hat = sae.inverse_transform(C).astype(np.float64)
    expected = ((small_X - X_hat) ** 2).mean() + 0.05 * np.abs(C).sum(1).mean()
    assert_allclose(loss.item(), expected, rtol=1e-5)


def test_topk_auxiliary_loss_matches_overcomplete(small_X, make):
    from overcomplete.sae.losses import top_k_auxiliary_loss

    sae = make(TopKSAEConcepts, dead_concepts="auxiliary", aux_coef=0.3)
    sae.fit(small_X)
    module = sae.net_.module_
    x = torch.from_numpy(small_X)
    with torch.no_grad():
        y_pred = module(x)
        loss = sae.net_.get_loss(y_pred, x)
        pre_codes, codes, x_hat = y_pred
        expected = top_k_auxiliary_loss(
            x, x_hat, pre_codes, codes, module.sae.get_dictionary(), penalty=0.3
        )
    assert_allclose(loss.item(), expected.item(), rtol=1e-5)


def _synthetic():
    rng = np.random.RandomState(0)
    D = rng.randn(40, 24)
    codes = np.maximum(rng.randn(600, 40) - 1.0, 0)
    return (codes @ D + 0.5 + 0.1 * rng.randn(600, 24)).astype(np.float32)


#: per-epoch train_loss of the code before sae.py became a package (it had a
#: criterion module unpacking a 4-tuple): the refactor changed no number
BEFORE = {
    (SAEConcepts, None): [2.289955286979675, 1.2544703165690103, 0.9624898242950439],
    (SAEConcepts, "auxiliary"): [2.2899553378423, 1.2544703801473, 0.9624898560842],
    (TopKSAEConcepts, None): [1.802782656351725, 1.627122767766317, 1.51034341017405],
    (TopKSAEConcepts, "auxiliary"): [1.8637327893575, 1.6667484458288, 1.5409098227819],
    (BatchTopKSAEConcepts, None): [1.96807194868724, 1.60677320162455, 1.4465276718140],
    (BatchTopKSAEConcepts, "auxiliary"): [2.0285628557205, 1.6362940168381, 1.46409528],
    (JumpReLUSAEConcepts, None): [2.24155910174052, 1.23123361746470, 0.9514005597432],
    (JumpReLUSAEConcepts, "auxiliary"): [2.2415590890249, 1.2312336301804, 0.95140052],
    (MPSAEConcepts, None): [1.549286643664042, 1.409348011016846, 1.290310789744059],
}


@pytest.mark.parametrize(("cls", "dead_concepts"), list(BEFORE))
def test_training_loss_unchanged_by_the_net_subclass(cls, dead_concepts):
    params = dict(n_passes=3, batch_size=64, lr=3e-3, random_state=0)
    if cls in (TopKSAEConcepts, BatchTopKSAEConcepts, MPSAEConcepts):
        params["top_k"] = 3
    if cls is SAEConcepts:
        params["l1_coef"] = 1e-2
    if cls is JumpReLUSAEConcepts:
        params["l0_coef"] = 1e-2
    sae = cls(48, dead_concepts=dead_concepts, **params).fit(_synthetic())
    loss = sae.net_.history[:, "train_loss"]
    assert_allclose(loss, BEFORE[cls, dead_concepts], rtol=1e-5)
