"""The fitted state of an SAE as numpy arrays and builtins (for skconcepts.io)."""

import pytest
import skops.io as sio
import torch
from numpy.testing import assert_array_equal
from sklearn.base import clone

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


def _through_skops(sae):
    """A copy of ``sae`` saved and loaded as skconcepts.io does (no io module)."""
    state = sae._export_state()
    data = sio.dumps(state)
    assert sio.get_untrusted_types(data=data) == []  # numpy and builtins only
    copy = clone(sae)
    vars(copy).clear()
    vars(copy).update(sio.loads(data, trusted=[]))
    copy._import_state()
    return copy


@pytest.mark.parametrize("cls", ALL)
def test_export_import_is_bitwise(cls, make, small_X):
    sae = make(cls, dead_concepts="resample").fit(small_X)
    copy = _through_skops(sae)
    assert "_skconcepts_io_net" not in vars(copy)
    assert_array_equal(copy.transform(small_X), sae.transform(small_X))
    assert_array_equal(copy.components_, sae.components_)
    assert (
        copy.net_.history[-1, "dead_fraction"] == sae.net_.history[-1]["dead_fraction"]
    )
    copy.partial_fit(small_X[:100])
    sae.partial_fit(small_X[:100])
    assert_array_equal(copy.transform(small_X), sae.transform(small_X))


def test_batchtopk_keeps_its_running_threshold(make, small_X):
    sae = make(BatchTopKSAEConcepts).fit(small_X)
    copy = _through_skops(sae)
    assert torch.equal(
        copy.net_.module_.sae.running_threshold, sae.net_.module_.sae.running_threshold
    )


def test_export_leaves_the_estimator_unchanged(make, small_X):
    sae = make(TopKSAEConcepts).fit(small_X)
    net = sae.net_
    state = sae._export_state()
    assert sae.net_ is net and "net_" not in state
    unfitted = TopKSAEConcepts(device=torch.device("cpu"))._export_state()
    assert unfitted["device"] == "cpu" and "_skconcepts_io_net" not in unfitted


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a CPU-only machine")
def test_a_state_saved_on_a_gpu_loads_on_the_cpu_with_a_warning(make, small_X):
    sae = make(TopKSAEConcepts).fit(small_X)
    state = sae._export_state()
    state["_skconcepts_io_net"]["device"] = "cuda"
    copy = clone(sae)
    vars(copy).update(state)
    with pytest.warns(RuntimeWarning, match="(?i)cuda"):
        copy._import_state()
    assert copy.net_.device == "cpu"
    assert_array_equal(copy.transform(small_X), sae.transform(small_X))


def test_a_foreign_state_is_refused(make, small_X):
    sae = make(TopKSAEConcepts)
    vars(sae)["_skconcepts_io_net"] = {"module": {}}
    with pytest.raises(ValueError, match="not a state written by skconcepts.io"):
        sae._import_state()
    assert not hasattr(sae, "net_")


def test_an_unfitted_estimator_imports_nothing():
    sae = TopKSAEConcepts()
    sae._import_state()
    assert not hasattr(sae, "net_")
