"""Batches for skorch: rows of an in-memory matrix, or of a batch source.

An SAE is trained from an array or a tensor (batches of rows by index, the
fastest path: a tensor stays on its device) or from a
:class:`~skconcepts.concepts._streaming.BatchSource` (an activation store, a
list of 2-D arrays or tensors, any iterable or iterator that yields them),
read through the package's one batch-source protocol,
``BatchSource.iter_batches``. ``_SAENet.get_dataset`` passes a source to the
iterator as it is.
"""

from __future__ import annotations

import numpy as np
import torch

from skconcepts.concepts._streaming import BatchSource
from skconcepts.utils._torch import to_numpy
from skconcepts.utils._torch_free import is_tensor
from skconcepts.utils._validation import check_finite, check_value_range


def _first_mean(X):
    """Column mean of the first data seen (initial decoder bias), float32."""
    if is_tensor(X):
        return to_numpy(X.double().mean(0))
    return np.asarray(X, dtype=np.float64).mean(axis=0).astype(np.float32)


def _source_mean(batch):
    """``_first_mean`` of the first float32 numpy batch of a source.

    Through torch, as the stream path always computed it (a float64 torch
    mean, whose summation order is torch's), so streamed fits keep their
    initial decoder bias bit for bit.
    """
    return _first_mean(torch.from_numpy(np.array(batch, dtype=np.float32)))


def _as_tensor(batch, device):
    """A float32 numpy batch of a source as a tensor on ``device``."""
    if not batch.flags.writeable:
        batch = batch.copy()  # torch.from_numpy wants a writable array
    tensor = torch.from_numpy(batch)
    return tensor if device is None else tensor.to(device)


class _BatchIterator:
    """skorch iterator: batches of rows by index (in memory) or of a source.

    Faster than a ``DataLoader`` over single rows, and its shuffling draws
    from a numpy ``RandomState`` (picklable, never the global torch RNG). A
    :class:`BatchSource` is read with ``iter_batches(batch_size, shuffle=,
    seed=random_state)``, which draws from the same ``RandomState``. Batches
    are moved to ``device`` here, once (skorch then finds them there).
    """

    def __init__(
        self, dataset, batch_size, shuffle=False, random_state=None, device=None
    ):
        self.dataset = dataset
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.random_state = random_state
        self.device = device

    def __len__(self):
        if isinstance(self.dataset, BatchSource):
            if self.dataset.n_rows is None:
                raise TypeError("The number of batches of this source is unknown.")
            return int(np.ceil(self.dataset.n_rows / self.batch_size))
        return int(np.ceil(len(self.dataset) / self.batch_size))

    def __iter__(self):
        if isinstance(self.dataset, BatchSource):
            source = self.dataset
            batches = source.iter_batches(
                self.batch_size, shuffle=self.shuffle, seed=self.random_state
            )
            for index, batch in enumerate(batches):
                if source.kind == "store":  # the source checks an iterable's
                    check_finite(batch, f"batch {index} of {source.label}")
                check_value_range(batch, name=f"batch {index} of {source.label}")
                batch = _as_tensor(batch, self.device)
                yield batch, batch
            return
        X = self.dataset.X
        n_rows = len(X)
        if self.shuffle:
            order = self.random_state.permutation(n_rows)
        else:
            order = np.arange(n_rows)
        for start in range(0, n_rows, self.batch_size):
            index = order[start : start + self.batch_size]
            if is_tensor(X):
                batch = X[torch.from_numpy(index).to(X.device)]
            else:
                batch = torch.from_numpy(np.asarray(X[index], dtype=np.float32))
            if self.device is not None:
                batch = batch.to(self.device)
            yield batch, batch
