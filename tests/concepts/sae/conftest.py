"""Fixtures of the sparse-autoencoder tests."""

import pytest

from skconcepts.concepts import (
    BatchTopKSAEConcepts,
    MPSAEConcepts,
    TopKSAEConcepts,
)

TOPK_LIKE = {TopKSAEConcepts, BatchTopKSAEConcepts, MPSAEConcepts}


@pytest.fixture(scope="session")
def small_X(signed_X):
    return signed_X[:256]


@pytest.fixture(scope="session")
def make():
    """``make(cls, n_concepts=16, **params)``: a fast estimator of ``cls``."""

    def make(cls, n_concepts=16, **params):
        params = {
            "n_passes": 2,
            "batch_size": 64,
            "lr": 3e-3,
            "random_state": 0,
            **params,
        }
        if cls in TOPK_LIKE:
            params.setdefault("top_k", 4)
        return cls(n_concepts, **params)

    return make
