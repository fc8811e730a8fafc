"""Fixtures of the property tests (hypothesis): tiny models, built once.

The models are tiny (hidden size 32, randomly initialised), so one example
costs milliseconds: the properties are about bookkeeping (units, spans, rows,
batching), which a random model exercises as well as a trained one.
"""

import pytest
import torch

from skconcepts import SplitPointActivations
from skconcepts.utils._testing import make_tiny_model

from ._strategies import MAX_LENGTH


@pytest.fixture(scope="package", autouse=True)
def _one_thread():
    """One torch thread while the property tests run (restored afterwards).

    The tensors are tiny: several threads only contend (a forward pass of the
    tiny model takes ~20x longer on a busy 2-core machine).
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def tiny_models():
    """``tiny_models(arch)``: the (model, tokenizer) of ``arch``, built once."""
    built = {}

    def get(arch):
        if arch not in built:
            built[arch] = make_tiny_model(arch, n_layers=2)
        return built[arch]

    return get


@pytest.fixture(scope="session")
def tiny_acts(tiny_models):
    """``tiny_acts(arch, **params)``: a fitted SplitPointActivations (no cache)."""

    def make(arch, **params):
        model, tokenizer = tiny_models(arch)
        params = {"split_point": 0, "cache": False, "max_length": MAX_LENGTH, **params}
        return SplitPointActivations(model, tokenizer=tokenizer, **params).fit()

    return make
