"""Batches for skorch: rows of an in-memory matrix, or a stream of batches.

An SAE is trained from an array or tensor (batches of rows by index) or from a
source of batches: an object with ``iter_batches(batch_size, shuffle, seed)``
(an activation store), a list of 2-D arrays or tensors, or any iterable or
iterator that yields them.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import numpy as np
import scipy.sparse as sp
import torch

from skconcepts.utils._torch import to_numpy
from skconcepts.utils._torch_free import is_tensor
from skconcepts.utils._validation import check_finite_tensor


def _is_stream(X):
    """Whether ``X`` is a source of batches rather than one array-like."""
    if hasattr(X, "iter_batches"):
        return True
    if is_tensor(X) or isinstance(X, np.ndarray) or hasattr(X, "__array__"):
        return False
    if sp.issparse(X):
        return False
    if isinstance(X, Iterator):
        return True
    if isinstance(X, (list, tuple)):
        return len(X) > 0 and all(getattr(item, "ndim", None) == 2 for item in X)
    return isinstance(X, Iterable) and not isinstance(X, (str, bytes, dict))


def _first_mean(X):
    """Column mean of the first data seen (initial decoder bias), float32."""
    if is_tensor(X):
        return to_numpy(X.double().mean(0))
    return np.asarray(X, dtype=np.float64).mean(axis=0).astype(np.float32)


def _as_batch(chunk, n_features, index):
    """Validate one streamed batch and return it as a float32 tensor (n, d)."""
    if (
        isinstance(chunk, (tuple, list))
        and chunk
        and (is_tensor(chunk[0]) or isinstance(chunk[0], np.ndarray))
    ):
        chunk = chunk[0]  # (X,) or (X, y) from a DataLoader
    if is_tensor(chunk):
        batch = chunk.detach().to(dtype=torch.float32)
    else:
        try:
            array = np.asarray(chunk, dtype=np.float32)
        except (TypeError, ValueError) as exc:
            raise ValueError(
                f"Batch {index} of X is a {type(chunk).__name__}, not a numeric "
                "array; an iterable X must yield 2-D arrays or tensors."
            ) from exc
        batch = torch.from_numpy(np.array(array, copy=True))
    if batch.ndim != 2 or (n_features is not None and batch.shape[1] != n_features):
        want = "d" if n_features is None else str(n_features)
        raise ValueError(
            f"Batch {index} of X has shape {tuple(batch.shape)}; every batch must "
            f"have shape (n_rows, {want})."
        )
    check_finite_tensor(batch, f"batch {index} of X")
    return batch


class _BatchSource(torch.utils.data.Dataset):
    """A stream of activation batches as a skorch "dataset".

    ``source`` is an object with ``iter_batches(batch_size, shuffle, seed)`` (an
    activation store), a re-iterable (list of arrays, DataLoader) or a one-shot
    iterator. Rows are regrouped into batches of exactly ``batch_size`` (the
    last one may be smaller) and shuffled inside each incoming chunk.
    """

    def __init__(self, source, n_features):
        self.source = source
        self.n_features = n_features

    def __getitem__(self, index):
        raise TypeError("A streamed X is read by batches, not by rows.")

    def batches(self, batch_size, shuffle, random_state):
        if hasattr(self.source, "iter_batches"):
            seed = (
                None if random_state is None else int(random_state.randint(2**31 - 1))
            )
            chunks = self.source.iter_batches(batch_size, shuffle=shuffle, seed=seed)
            shuffle = False  # the store shuffles
        else:
            chunks = iter(self.source)
        pending = None
        for index, chunk in enumerate(chunks):
            batch = _as_batch(chunk, self.n_features, index)
            if shuffle and random_state is not None and len(batch) > 1:
                order = torch.from_numpy(random_state.permutation(len(batch)))
                batch = batch[order.to(batch.device)]
            pending = batch if pending is None else torch.cat([pending, batch])
            while len(pending) >= batch_size:
                yield pending[:batch_size]
                pending = pending[batch_size:]
        if pending is not None and len(pending):
            yield pending


class _BatchIterator:
    """skorch iterator: batches of rows by index (in memory) or from a stream.

    Faster than a ``DataLoader`` over single rows, and its shuffling draws
    from a numpy ``RandomState`` (picklable, never the global torch RNG).
    """

    def __init__(self, dataset, batch_size, shuffle=False, random_state=None):
        self.dataset = dataset
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.random_state = random_state

    def __len__(self):
        return int(np.ceil(len(self.dataset) / self.batch_size))

    def __iter__(self):
        if isinstance(self.dataset, _BatchSource):
            for batch in self.dataset.batches(
                self.batch_size, self.shuffle, self.random_state
            ):
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
            yield batch, batch
