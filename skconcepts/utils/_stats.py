"""Reconstruction statistics shared by the estimators and the metrics.

:func:`r2` is the one reconstruction R² of the package (``ConceptMixin.score``,
``metrics.reconstruction_r2``); :class:`R2Accumulator` computes the same value
batch by batch, for activations streamed from a store.
"""

from __future__ import annotations

import numpy as np

from skconcepts.utils._torch import to_numpy

__all__ = ["r2", "R2Accumulator"]


def _r2_from(resid, total):
    if total == 0:
        return 1.0 if resid == 0 else 0.0
    return float(1.0 - resid / total)


def r2(X, X_hat):
    """Reconstruction R²: ``1 - ||X - X_hat||² / ||X - mean(X)||²``.

    The mean is taken per feature (column), so this is one minus the fraction
    of variance unexplained, summed over the features. Computed in float64.

    Parameters
    ----------
    X : array-like or torch.Tensor of shape (n_samples, n_features)
        The activations.
    X_hat : array-like or torch.Tensor of shape (n_samples, n_features)
        Their reconstruction.

    Returns
    -------
    score : float
        The R² (at most 1). When ``X`` has no variance: 1.0 for an exact
        reconstruction, else 0.0.

    Examples
    --------
    >>> from skconcepts.utils._stats import r2
    >>> r2([[0.0], [2.0]], [[0.0], [1.0]])
    0.5
    """
    X = to_numpy(X, dtype=np.float64)
    resid = np.sum((X - to_numpy(X_hat, dtype=np.float64)) ** 2)
    total = np.sum((X - X.mean(axis=0)) ** 2)
    return _r2_from(resid, total)


class R2Accumulator:
    """:func:`r2` of row batches, merged without holding them.

    The total variance is merged batch by batch (Chan et al.'s parallel
    update), so the result equals ``r2`` of the concatenated batches up to
    float64 rounding.

    Examples
    --------
    >>> import numpy as np
    >>> from skconcepts.utils._stats import R2Accumulator, r2
    >>> X = np.arange(12.0).reshape(6, 2)
    >>> X_hat = X + 0.5
    >>> acc = R2Accumulator()
    >>> for a, b in [(0, 2), (2, 6)]:
    ...     acc.update(X[a:b], X_hat[a:b])
    >>> bool(np.isclose(acc.result(), r2(X, X_hat)))
    True
    """

    def __init__(self):
        self.n_rows = 0
        self._mean = 0.0
        self._m2 = 0.0
        self._resid = 0.0

    def update(self, X, X_hat):
        """Add a batch of rows and their reconstruction."""
        X = to_numpy(X, dtype=np.float64)
        X_hat = to_numpy(X_hat, dtype=np.float64)
        self._resid += float(np.sum((X - X_hat) ** 2))
        n, n_b = self.n_rows, len(X)
        mean_b = X.mean(axis=0)
        m2_b = ((X - mean_b) ** 2).sum(axis=0)
        delta = mean_b - self._mean
        total = n + n_b
        self._mean = self._mean + delta * (n_b / total)
        self._m2 = self._m2 + m2_b + delta**2 * (n * n_b / total)
        self.n_rows = total

    def result(self):
        """The R² of the rows added so far (``ValueError`` if none)."""
        if self.n_rows == 0:
            raise ValueError("No rows were added; the R² is undefined.")
        return _r2_from(self._resid, float(np.sum(self._m2)))
