"""The skorch net of the SAEs: reconstruction loss plus the module's penalty."""

from __future__ import annotations

import torch
from skorch import NeuralNet

from skconcepts.concepts._streaming import BatchSource
from skconcepts.utils._torch import to_tensor


class _SAENet(NeuralNet):
    """A ``skorch.NeuralNet`` whose loss is ``MSE(x_hat, x) + penalty``.

    The module (:class:`~._module._SAEModule`) returns ``(pre_codes, codes,
    x_hat)``; following skorch's idiom for a loss that needs more than the
    prediction, :meth:`get_loss` adds the module's sparsity and dead-concept
    penalty to the criterion (``torch.nn.MSELoss``) of the reconstruction. The
    target of an autoencoder is its input, so ``y_true`` is the batch ``x``.
    A :class:`~skconcepts.concepts._streaming.BatchSource` is its own dataset:
    the iterator (``_data._BatchIterator``) reads it batch by batch.
    """

    def __init__(self, module, *args, criterion=torch.nn.MSELoss, **kwargs):
        super().__init__(module, *args, criterion=criterion, **kwargs)

    def get_dataset(self, X, y=None):
        """The dataset the iterator reads: a batch source as it is.

        Parameters
        ----------
        X : BatchSource, array-like or torch.Tensor
            A source of batches, or in-memory activations (wrapped by skorch).
        y : array-like, torch.Tensor or None, default=None
            The target (the activations themselves), or None for a source.

        Returns
        -------
        dataset : BatchSource or torch.utils.data.Dataset
            ``X`` itself when it is a batch source, else skorch's dataset.
        """
        if isinstance(X, BatchSource):
            return X
        return super().get_dataset(X, y)

    def get_loss(self, y_pred, y_true, X=None, training=False):
        """``criterion_(x_hat, x) + module_.penalty(x, pre_codes, codes, x_hat)``.

        Parameters
        ----------
        y_pred : tuple of torch.Tensor
            ``(pre_codes, codes, x_hat)`` as returned by the module.
        y_true : torch.Tensor or array-like of shape (n_samples, n_features)
            The batch (the autoencoder's target is its input).
        X : object, default=None
            The input batch (unused: it equals ``y_true``).
        training : bool, default=False
            Whether the loss is computed for a training step.

        Returns
        -------
        loss : torch.Tensor
            Scalar loss.
        """
        pre_codes, codes, x_hat = y_pred
        x = to_tensor(y_true, device=self.device)
        reconstruction = self.criterion_(x_hat, x)
        return reconstruction + self.module_.penalty(x, pre_codes, codes, x_hat)
