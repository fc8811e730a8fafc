"""The torch module of the SAEs (skconcepts.concepts.sae._module)."""

import numpy as np
import pytest
import torch
from numpy.testing import assert_allclose, assert_array_equal

from skconcepts.concepts import (
    BatchTopKSAEConcepts,
    JumpReLUSAEConcepts,
    MPSAEConcepts,
    SAEConcepts,
    TopKSAEConcepts,
)

ALL = [
    SAEConcepts,
    TopKSAEConcepts,
    BatchTopKSAEConcepts,
    JumpReLUSAEConcepts,
    MPSAEConcepts,
]


@pytest.mark.parametrize("cls", ALL)
def test_inverse_transform_is_the_module_reconstruction(cls, small_X, make):
    sae = make(cls).fit(small_X)
    C = sae.transform(small_X)
    module = sae.net_.module_
    with torch.no_grad():
        pre_codes, codes, x_hat = module(torch.from_numpy(small_X))
    assert_allclose(C, codes.numpy(), rtol=1e-6, atol=1e-6)
    assert_allclose(sae.inverse_transform(C), x_hat.numpy(), rtol=1e-5, atol=1e-5)
    decoder = sae.decoder_torch()
    assert_allclose(
        decoder(torch.from_numpy(C)).numpy(), x_hat.numpy(), rtol=1e-5, atol=1e-5
    )
    assert sae.components_.shape == (16, small_X.shape[1])
    assert sae.components_.dtype == np.float32
    assert_allclose(np.linalg.norm(sae.components_, axis=1), 1.0, rtol=1e-5)
    assert_array_equal(sae.decoder_bias_, module.b_dec.detach().numpy())


def test_jumprelu_l0_penalty_counts_active_concepts(small_X, make):
    sae = make(JumpReLUSAEConcepts, l0_coef=0.01).fit(small_X)
    module = sae.net_.module_
    x = torch.from_numpy(small_X)
    with torch.no_grad():
        pre_codes, codes, x_hat = module(x)
        penalty = module.penalty(x, pre_codes, codes, x_hat)
        thresholds = torch.exp(module.sae.thresholds)
    active = (torch.relu(pre_codes) > thresholds).sum(1).double().mean()
    assert_allclose(penalty.item(), 0.01 * active.item(), rtol=1e-6)
    assert_array_equal(
        codes.numpy() != 0, (torch.relu(pre_codes) >= thresholds).numpy()
    )
