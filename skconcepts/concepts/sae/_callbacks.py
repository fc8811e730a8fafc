"""Dead-concept monitoring and resampling, as a skorch callback."""

from __future__ import annotations

import torch
from skorch.callbacks import Callback

from skconcepts.concepts.sae._module import _JUMP_LOG_THRESHOLD_INIT, _encoder_linear
from skconcepts.utils._torch import to_tensor


def _reset_optimizer_rows(optimizer, params, index):
    """Zero the optimizer state (moments, momentum) of rows ``index``."""
    for param in params:
        for value in optimizer.state.get(param, {}).values():
            if (
                isinstance(value, torch.Tensor)
                and value.ndim >= 1
                and (value.shape[0] == param.shape[0])
            ):
                value[index] = 0


def _resample_dead(module, optimizer, dead, directions):
    """Re-initialise dead concepts along the worst-reconstructed directions.

    Parameters
    ----------
    module : _SAEModule
        The module being trained (changed in place).
    optimizer : torch.optim.Optimizer or None
        Its optimizer; the state rows of the resampled concepts are zeroed.
    dead : torch.Tensor of shape (n_concepts,), bool
        Concepts that did not fire during the epoch.
    directions : torch.Tensor of shape (m, n_features)
        Residuals of the worst-reconstructed rows, worst first (m >= 1).

    Returns
    -------
    n_resampled : int
    """
    index = dead.nonzero().squeeze(1)  # (n_dead,)
    if len(index) == 0 or len(directions) == 0:
        return 0
    pick = torch.arange(len(index), device=directions.device) % len(directions)
    atoms = directions[pick]
    atoms = atoms / atoms.norm(dim=1, keepdim=True).clamp_min(1e-12)  # (n_dead, d)
    sae = module.sae
    weights = sae.dictionary._weights
    touched = [weights]
    with torch.no_grad():
        weights[index] = atoms.to(weights)
        linear = _encoder_linear(sae)
        if linear is not None:
            alive = ~dead
            scale = (
                linear.weight[alive].norm(dim=1).mean() * 0.2
                if alive.any()
                else torch.tensor(1.0)
            )
            linear.weight[index] = atoms.to(linear.weight) * scale
            linear.bias[index] = 0
            touched += [linear.weight, linear.bias]
        if hasattr(sae, "thresholds"):
            sae.thresholds[index] = _JUMP_LOG_THRESHOLD_INIT
            touched.append(sae.thresholds)
        if optimizer is not None:
            _reset_optimizer_rows(optimizer, touched, index)
    return len(index)


class _DeadConceptMonitor(Callback):
    """Record ``dead_fraction``, ``l0`` and ``train_sse`` per epoch.

    A concept is dead in an epoch when it never fired on a training row of
    that epoch. With ``resample=True`` dead concepts are re-initialised at
    the end of the epoch along the residuals of the worst-reconstructed
    rows (and ``n_resampled`` is recorded).

    Parameters
    ----------
    resample : bool, default=False
        Re-initialise the dead concepts at the end of every epoch.
    """

    def __init__(self, resample=False):
        self.resample = resample

    def initialize(self):
        self._reset()
        return self

    def _reset(self):
        self.fired_ = None
        self.sse_ = None
        self.nnz_ = None
        self.rows_ = 0
        self.worst_ = None  # residuals, (m, d)
        self.worst_err_ = None  # their squared norms, (m,)

    def on_epoch_begin(self, net, **kwargs):
        self._reset()

    def on_batch_end(self, net, batch=None, training=None, y_pred=None, **kwargs):
        if not training or y_pred is None:
            return
        _, codes, x_hat = y_pred
        with torch.no_grad():
            x = to_tensor(batch[0], device=x_hat.device)
            active = codes != 0  # (n, k)
            fired = active.sum(0)
            nnz = active.sum()
            residual = (x - x_hat).detach()  # (n, d)
            err = residual.square().sum(1)  # (n,)
            if self.fired_ is None:
                self.fired_, self.nnz_, self.sse_ = fired, nnz, err.sum()
            else:
                self.fired_ = self.fired_ + fired
                self.nnz_ = self.nnz_ + nnz
                self.sse_ = self.sse_ + err.sum()
            self.rows_ += len(x)
            if self.resample:
                if self.worst_ is not None:
                    residual = torch.cat([self.worst_, residual])
                    err = torch.cat([self.worst_err_, err])
                keep = torch.topk(err, min(len(err), codes.shape[1])).indices
                self.worst_, self.worst_err_ = residual[keep], err[keep]

    def on_epoch_end(self, net, **kwargs):
        if self.fired_ is None:
            return
        dead = self.fired_ == 0
        history = net.history
        history.record("dead_fraction", float(dead.float().mean()))
        history.record("l0", float(self.nnz_) / max(self.rows_, 1))
        history.record("train_sse", float(self.sse_))
        if self.resample:
            n_resampled = _resample_dead(
                net.module_, getattr(net, "optimizer_", None), dead, self.worst_
            )
            history.record("n_resampled", n_resampled)
