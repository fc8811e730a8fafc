"""Dead-concept monitoring, resampling and user callbacks (sae._callbacks)."""

import pickle

import pytest
import torch
from numpy.testing import assert_array_equal

from skconcepts.concepts import TopKSAEConcepts
from skconcepts.concepts.sae._callbacks import _DeadConceptMonitor, _resample_dead
from skconcepts.concepts.sae._module import _SAEModule


def test_dead_fraction_recorded_each_epoch(small_X, make):
    sae = make(TopKSAEConcepts, n_concepts=64, n_passes=3).fit(small_X)
    dead = sae.net_.history[:, "dead_fraction"]
    assert len(dead) == 3
    assert all(0.0 <= d <= 1.0 for d in dead)
    assert sae.dead_fraction_ == dead[-1]
    assert sae.n_iter_ == 3
    l0 = sae.net_.history[:, "l0"]
    assert all(0 < v <= 4 for v in l0)


@pytest.mark.parametrize("dead_concepts", ["resample", "auxiliary"])
def test_dead_concept_handling_lowers_dead_fraction(signed_X, dead_concepts):
    X = signed_X[:512]
    params = dict(top_k=2, lr=3e-3, n_passes=6, batch_size=64, random_state=0)
    plain = TopKSAEConcepts(256, **params).fit(X)
    handled = TopKSAEConcepts(256, dead_concepts=dead_concepts, **params).fit(X)
    assert plain.dead_fraction_ > 0.3
    assert handled.dead_fraction_ < plain.dead_fraction_ - 0.03
    if dead_concepts == "resample":
        assert sum(handled.net_.history[:, "n_resampled"]) > 0


def test_resample_dead_rewrites_rows_and_optimizer_state():
    module = _SAEModule("topk", 5, 6, top_k=2, seed=0)
    optimizer = torch.optim.Adam(module.parameters(), lr=1e-2)
    x = torch.randn(32, 5, generator=torch.Generator().manual_seed(0))
    loss = (module(x)[2] - x).square().mean()
    loss.backward()
    optimizer.step()
    before = module.sae.dictionary._weights.detach().clone()
    dead = torch.tensor([False, True, False, False, True, False])
    directions = torch.tensor([[3.0, 0, 0, 0, 0], [0, 0, 2.0, 0, 0]])
    assert _resample_dead(module, optimizer, dead, directions) == 2
    weights = module.sae.dictionary._weights.detach()
    assert_array_equal(weights[1].numpy(), [1, 0, 0, 0, 0])
    assert_array_equal(weights[4].numpy(), [0, 0, 1, 0, 0])
    assert_array_equal(weights[~dead].numpy(), before[~dead].numpy())
    linear = module.sae.encoder.final_block[0]
    assert linear.bias[1].item() == 0 and linear.bias[4].item() == 0
    state = optimizer.state[module.sae.dictionary._weights]
    assert not state["exp_avg"][dead].any() and state["exp_avg"][~dead].any()


def test_user_callbacks_run_and_are_not_mutated(small_X, make):
    from skorch.callbacks import Callback

    class CountEpochs(Callback):
        def __init__(self):
            self.epochs = 0

        def on_epoch_end(self, net, **kwargs):
            self.epochs += 1

    counter = CountEpochs()
    sae = make(TopKSAEConcepts, n_passes=3, callbacks=[counter]).fit(small_X)
    assert counter.epochs == 0
    used = dict(sae.net_.callbacks_)["CountEpochs"]
    assert used.epochs == 3


def test_progress_bar(small_X, capsys, make):
    make(TopKSAEConcepts, progress=False).fit(small_X)
    assert capsys.readouterr().err == ""
    make(TopKSAEConcepts, progress=True).fit(small_X)
    assert "it/s" in capsys.readouterr().err


def test_monitor_is_a_plain_module_level_callback():
    from skorch.callbacks import Callback

    import skconcepts.concepts.sae._callbacks as callbacks_module

    assert issubclass(_DeadConceptMonitor, Callback)
    assert _DeadConceptMonitor.__module__ == callbacks_module.__name__
    assert callbacks_module._DeadConceptMonitor is _DeadConceptMonitor
    assert pickle.loads(pickle.dumps(_DeadConceptMonitor)) is _DeadConceptMonitor
    assert not hasattr(callbacks_module, "__getattr__")
    monitor = pickle.loads(pickle.dumps(_DeadConceptMonitor(resample=True)))
    assert type(monitor) is _DeadConceptMonitor and monitor.resample
