"""Invertible preprocessing of activations: scaling and non-negativity.

Both transformers sit in a ``Pipeline`` before a concept estimator, so the
normalisation is saved with the pipeline instead of hidden inside an estimator.
Each has an exact ``inverse_transform`` where one exists and, like the concept
estimators, a ``decoder_torch`` (the differentiable inverse as a
``torch.nn.Module``) that attribution composes after a concept decoder.
Numpy input keeps its float dtype; a torch tensor gives a tensor on its device.
"""

from __future__ import annotations

import warnings
from numbers import Integral

import numpy as np
import torch
from sklearn.base import (
    BaseEstimator,
    OneToOneFeatureMixin,
    TransformerMixin,
    _fit_context,
)
from sklearn.utils._param_validation import StrOptions
from sklearn.utils.validation import (
    _check_feature_names_in,
    check_array,
    check_is_fitted,
    validate_data,
)

from skconcepts.concepts._streaming import as_batch_source, map_shards, sum_stats
from skconcepts.utils._torch import to_numpy
from skconcepts.utils._torch_free import is_tensor
from skconcepts.utils._validation import check_tensor

__all__ = ["ActivationScaler", "NonNegative"]


class _TensorAwareTransformer(TransformerMixin, BaseEstimator):
    """Validation for numpy arrays and torch tensors; ``fit``/``transform`` verbs.

    Subclasses write ``_fit(X)``, ``_transform(X)``, ``_inverse(X)`` (numpy or
    torch, same code where the operators agree), ``_decoder(device, dtype)``
    (the torch module of ``decoder_torch``) and ``_n_out()``.
    """

    def _validate(self, X, *, reset):
        if not is_tensor(X):
            return validate_data(self, X, reset=reset, dtype=[np.float64, np.float32])
        X = check_tensor(
            X,
            n_features=None if reset else self.n_features_in_,
            owner=type(self).__name__,
            dtype=None,
            detach=False,
        )
        if reset:
            self.n_features_in_ = X.shape[1]
            if hasattr(self, "feature_names_in_"):
                del self.feature_names_in_
        return X

    def _validate_out(self, X):
        """Check an input of ``inverse_transform`` (shape of the output space)."""
        n_out = self._n_out()
        if not is_tensor(X):
            X = check_array(X, dtype=[np.float64, np.float32], input_name="X")
        elif X.ndim != 2:
            raise ValueError(
                f"Expected 2D input, got a tensor of shape {tuple(X.shape)}."
            )
        if X.shape[1] != n_out:
            raise ValueError(
                f"X has {X.shape[1]} columns, but the output of "
                f"{type(self).__name__}.transform has {n_out}; pass transformed data."
            )
        return X

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y=None):
        """Learn the transformation from activations.

        Parameters
        ----------
        X : array-like or torch.Tensor of shape (n_samples, n_features)
            Activations.
        y : Ignored
            Not used, present for API consistency.

        Returns
        -------
        self : object
            The fitted transformer.
        """
        self._fit(self._validate(X, reset=True))
        return self

    def transform(self, X):
        """Transform activations.

        Parameters
        ----------
        X : array-like or torch.Tensor of shape (n_samples, n_features)
            Activations.

        Returns
        -------
        X_out : ndarray or torch.Tensor
            Transformed activations, same dtype as ``X`` (float32, float64, or
            float16/bfloat16, computed in float32 or float64 and rounded back,
            with a warning if a value overflows it); a tensor for a tensor
            input.
        """
        check_is_fitted(self)
        half = _half_dtype(X)
        return _to_half(self._transform(self._validate(X, reset=False)), half)

    def inverse_transform(self, X):
        """Map transformed activations back to the input space.

        Parameters
        ----------
        X : array-like or torch.Tensor of shape (n_samples, n_features_out)
            Transformed activations.

        Returns
        -------
        X_original : ndarray or torch.Tensor of shape (n_samples, n_features_in_)
            Activations in the input space, same dtype as ``X`` (as for
            :meth:`transform`).
        """
        check_is_fitted(self)
        half = _half_dtype(X)
        X = self._validate_out(X)
        if is_tensor(X):
            X = X.detach()
            if half is not None:
                X = X.float()
        return _to_half(self._inverse(X), half)

    def decoder_torch(self, device=None, dtype=None):
        """The differentiable ``inverse_transform``, as a torch module.

        Parameters
        ----------
        device : str or torch.device, default=None
            Device of the module's buffers (default: CPU).
        dtype : torch.dtype, default=None
            Dtype of the buffers (default: float32); give the dtype of the
            tensors it will map back.

        Returns
        -------
        decoder : torch.nn.Module
            A module whose ``forward(X)`` maps transformed activations of shape
            (..., n_features_out) to the input space (..., n_features_in_);
            gradients flow through. Attribution composes it after a concept
            estimator's ``decoder_torch``. A float16/bfloat16 ``X`` gives an
            output of its dtype (computed in at least float32).
        """
        check_is_fitted(self)
        return self._decoder(device, dtype or torch.float32)

    def inverse_transform_torch(self, X):
        """Differentiable ``inverse_transform`` of a tensor (deprecated).

        .. deprecated::
            Use ``decoder_torch(device=X.device, dtype=X.dtype)(X)``; this alias
            goes in the next release.

        Parameters
        ----------
        X : torch.Tensor of shape (..., n_features_out)
            Transformed activations, e.g. a concept decoder's output; any device
            and float dtype. Gradients flow through.

        Returns
        -------
        X_original : torch.Tensor of shape (..., n_features_in_)
            Activations in the input space, same device and dtype.
        """
        warnings.warn(
            f"{type(self).__name__}.inverse_transform_torch is deprecated and will "
            "be removed in the next release; use decoder_torch(device, dtype)(X).",
            FutureWarning,
            stacklevel=2,
        )
        check_is_fitted(self)
        if not is_tensor(X):
            raise TypeError(
                f"inverse_transform_torch expects a torch.Tensor, got "
                f"{type(X).__name__}; use inverse_transform for arrays."
            )
        if X.shape[-1] != self._n_out():
            raise ValueError(
                f"X has {X.shape[-1]} features in its last dimension, but the output "
                f"of {type(self).__name__}.transform has {self._n_out()}."
            )
        return self._inverse(X)

    def _n_out(self):
        return self.n_features_in_

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.transformer_tags.preserves_dtype = ["float64", "float32", "float16"]
        return tags


_HALF_TORCH = (torch.float16, torch.bfloat16)


def _half_dtype(X):
    """The half float dtype of ``X`` (numpy float16, torch float16/bfloat16).

    Validation computes such input in float32 or float64; the result is
    rounded back to this dtype (``None`` for any other input: no change).
    """
    if is_tensor(X):
        return X.dtype if X.dtype in _HALF_TORCH else None
    dtypes = getattr(X, "dtypes", None)  # a DataFrame: every column float16
    if dtypes is not None and not isinstance(X, np.ndarray):
        kinds = set(np.atleast_1d(np.asarray(dtypes, dtype=object)).tolist())
        return np.dtype(np.float16) if kinds == {np.dtype(np.float16)} else None
    dtype = getattr(X, "dtype", None)
    return np.dtype(np.float16) if dtype == np.float16 else None


def _to_half(out, dtype):
    """``out`` rounded to the half dtype ``dtype``; warns if values overflow."""
    if dtype is None:
        return out
    if is_tensor(out):
        half = out.to(dtype)
        n_over = int((torch.isinf(half) & torch.isfinite(out)).sum())
        top = float(out.abs().max()) if n_over else 0.0
    else:
        with np.errstate(over="ignore"):
            half = out.astype(dtype)
        n_over = int((np.isinf(half) & np.isfinite(out)).sum())
        top = float(np.abs(out).max()) if n_over else 0.0
    if n_over:
        warnings.warn(
            f"{n_over} values (largest magnitude {top:.4g}) overflow {dtype} "
            "and became infinite; pass float32 input to keep them.",
            RuntimeWarning,
            stacklevel=3,
        )
    return half


def _like(values, X):
    """``values`` (numpy) as an array/tensor of ``X``'s kind, dtype and device."""
    if is_tensor(X):
        return torch.as_tensor(values, dtype=X.dtype, device=X.device)
    return np.asarray(values, dtype=X.dtype)


def _relu(X):
    return X.clamp_min(0) if is_tensor(X) else np.maximum(X, 0)


def _buffer(values, device, dtype):
    return torch.as_tensor(np.asarray(values), dtype=dtype, device=device)


class _Decoder(torch.nn.Module):
    """Base of the torch inverses: checks the width of the last dimension."""

    def __init__(self, n_in, name):
        super().__init__()
        self.n_in = n_in
        self.name = name

    def _check(self, X):
        if X.shape[-1] != self.n_in:
            raise ValueError(
                f"X has {X.shape[-1]} features in its last dimension, but the output "
                f"of {self.name}.transform has {self.n_in}."
            )

    @staticmethod
    def _keep_half(X, out):
        """A float16/bfloat16 ``X`` gives an output of its dtype."""
        if X.dtype in _HALF_TORCH and out.dtype != X.dtype:
            return out.to(X.dtype)
        return out


class _ScalerDecoder(_Decoder):
    """``forward(X) = X * scale + mean``: the inverse of ``ActivationScaler``."""

    def __init__(self, mean, scale, device, dtype):
        super().__init__(len(scale), "ActivationScaler")
        self.register_buffer("scale", _buffer(scale, device, dtype))
        self.register_buffer("mean", _buffer(mean, device, dtype))

    def forward(self, X):  # X: (..., d) -> (..., d)
        self._check(X)
        return self._keep_half(X, X * self.scale + self.mean)


class _NonNegativeDecoder(_Decoder):
    """The inverse of ``NonNegative``: identity, ``X - shift`` or ``pos - neg``."""

    def __init__(self, strategy, n_features, shift, device, dtype):
        n_in = n_features * (2 if strategy == "split" else 1)
        super().__init__(n_in, "NonNegative")
        self.strategy = strategy
        self.n_features = n_features
        if shift is not None:
            shift = _buffer(shift, device, dtype)
        self.register_buffer("shift", shift)

    def forward(self, X):  # X: (..., d) or (..., 2d) for "split" -> (..., d)
        self._check(X)
        if self.strategy == "relu":
            return X
        if self.strategy == "shift":
            return self._keep_half(X, X - self.shift)
        d = self.n_features
        return X[..., :d] - X[..., d:]


#: rows per batch of the shard-parallel fit of ActivationScaler
_SCALER_BATCH = 8192


def _scaler_moments(X, shift):
    """Moments of one batch: ``(n, sum, sum of squares)`` of ``X - shift``, and
    the sum of the squared row norms of ``X``, in float64."""
    X64 = X.astype(np.float64)
    Xs = X64 - shift  # (m, d)
    return len(X), Xs.sum(axis=0), (Xs * Xs).sum(axis=0), float(np.sum(X64 * X64))


_scaler_moments.reads_rows_only = True  # map_shards: views of a float32 store


class ActivationScaler(OneToOneFeatureMixin, _TensorAwareTransformer):
    """Scale activations, invertibly, before a concept estimator.

    Parameters
    ----------
    strategy : {"norm", "standard"}, default="norm"
        ``"norm"`` divides every row by one number so that the mean squared row
        norm is 1 (directions and signs are kept; useful before SAEs and NMF).
        ``"standard"`` standardises each feature to zero mean and unit variance
        (features of zero variance are only centred).
    n_jobs : int or None, default=None
        Jobs of the shard-parallel ``fit`` of an
        :class:`~skconcepts.ActivationStore`: the moments of the rows (count,
        sum, sum of squares, in float64, shifted by the mean of the first
        rows) are summed shard by shard with ``joblib.Parallel(n_jobs=n_jobs)``
        under the active joblib backend (local processes by default,
        ``parallel_backend("ray")`` or ``("dask")`` on a cluster; ``None`` is
        joblib's default, one job outside a ``parallel_backend`` block). Every
        ``n_jobs`` gives the same ``mean_`` and ``scale_`` (shard sums added
        in shard order; tested to ``rtol=1e-10``), equal to the in-memory fit
        within float64 rounding. Another source (a list of batches) is read
        in this process; in-memory ``fit`` ignores it.

    Attributes
    ----------
    mean_ : ndarray of shape (n_features,), dtype float64
        Subtracted per feature (zeros for ``"norm"``).
    scale_ : ndarray of shape (n_features,), dtype float64
        Divisor per feature (one repeated value for ``"norm"``).
    n_features_in_ : int
        Number of features seen during ``fit``.
    feature_names_in_ : ndarray of shape (`n_features_in_`,)
        Names of the features seen during ``fit``, when ``X`` has string column
        names.

    See Also
    --------
    NonNegative : Make activations non-negative for NMF.

    Examples
    --------
    >>> import numpy as np
    >>> from skconcepts.preprocessing import ActivationScaler
    >>> X = np.array([[3.0, 4.0], [0.0, 10.0]], dtype=np.float32)
    >>> scaler = ActivationScaler().fit(X)
    >>> Z = scaler.transform(X)
    >>> float((Z**2).sum(axis=1).mean()), Z.dtype
    (1.0, dtype('float32'))
    >>> np.allclose(scaler.inverse_transform(Z), X)
    True
    """

    _parameter_constraints: dict = {
        "strategy": [StrOptions({"norm", "standard"})],
        "n_jobs": [Integral, None],
    }

    def __init__(self, strategy="norm", *, n_jobs=None):
        self.strategy = strategy
        self.n_jobs = n_jobs

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y=None):
        """Learn the mean and scale from activations.

        Parameters
        ----------
        X : array-like, torch.Tensor, ActivationStore or iterable of batches
            Activations of shape (n_samples, n_features), in memory, or a
            source of batches (an :class:`~skconcepts.ActivationStore`, a list
            of 2-D arrays...), whose moments are summed shard by shard (see
            ``n_jobs``).
        y : Ignored
            Not used, present for API consistency.

        Returns
        -------
        self : object
            The fitted transformer.
        """
        source = as_batch_source(X)
        if source is None:
            self._fit(self._validate(X, reset=True))
        else:
            self._fit_source(source)
        return self

    def _fit_source(self, source):
        """Moments of a batch source, summed per shard (float64, shifted)."""
        first = source.first_batch(_SCALER_BATCH)
        if first is None or len(first) == 0:
            raise ValueError(
                f"{source.label[:1].upper() + source.label[1:]} has no rows; "
                "ActivationScaler needs at least one to fit."
            )
        first = self._validate(first, reset=True)
        shift = np.asarray(to_numpy(first), dtype=np.float64).mean(axis=0)  # (d,)
        parts = map_shards(
            _scaler_moments,
            source,
            (shift,),
            n_jobs=self.n_jobs,
            batch_size=_SCALER_BATCH,
            owner="ActivationScaler",
        )
        n, s, s2, norm2 = sum_stats(parts)
        d = len(shift)
        if self.strategy == "norm":
            norm2 = norm2 / n
            self.mean_ = np.zeros(d)
            self.scale_ = np.full(d, np.sqrt(norm2) if norm2 > 0 else 1.0)
        else:
            m = s / n
            std = np.sqrt(np.maximum(s2 / n - m * m, 0.0))
            std[std < 10 * np.finfo(np.float64).eps] = 1.0
            self.mean_, self.scale_ = shift + m, std

    def _fit(self, X):
        d = X.shape[1]
        if is_tensor(X):
            X64 = X.double()
            if self.strategy == "norm":
                norm2 = float((X64**2).sum(dim=1).mean())
            else:
                mean = to_numpy(X64.mean(dim=0), dtype=np.float64)
                std = to_numpy(X64.std(dim=0, unbiased=False), dtype=np.float64)
        elif self.strategy == "norm":
            norm2 = float(np.square(X, dtype=np.float64).sum(axis=1).mean())
        else:
            mean = X.mean(axis=0, dtype=np.float64)
            std = X.std(axis=0, dtype=np.float64)
        if self.strategy == "norm":
            self.mean_ = np.zeros(d)
            self.scale_ = np.full(d, np.sqrt(norm2) if norm2 > 0 else 1.0)
        else:
            std[std < 10 * np.finfo(np.float64).eps] = 1.0
            self.mean_, self.scale_ = mean, std

    def _transform(self, X):
        return (X - _like(self.mean_, X)) / _like(self.scale_, X)

    def _inverse(self, X):
        return X * _like(self.scale_, X) + _like(self.mean_, X)

    def _decoder(self, device, dtype):
        return _ScalerDecoder(self.mean_, self.scale_, device, dtype)


class NonNegative(_TensorAwareTransformer):
    """Make activations non-negative (for NMF), with an inverse where one exists.

    Parameters
    ----------
    strategy : {"relu", "shift", "split"}, default="split"
        - ``"relu"``: ``max(X, 0)``. Not invertible: ``inverse_transform``
          returns its input unchanged (the identity, the best right-inverse, as
          ``relu(X_hat) = X_hat`` for any non-negative ``X_hat``).
        - ``"shift"``: ``X + shift_`` with ``shift_`` the per-feature amount that
          makes the training minimum 0; values of new data below the training
          minimum are clipped at 0. ``inverse_transform`` subtracts ``shift_``
          (exact for unclipped values).
        - ``"split"``: ``[max(X, 0), max(-X, 0)]``, twice the features
          (``x0_pos``..., then ``x0_neg``...). Exact inverse ``pos - neg``.

    Attributes
    ----------
    shift_ : ndarray of shape (n_features,), dtype float64
        Added per feature (only with ``strategy="shift"``).
    n_features_in_ : int
        Number of features seen during ``fit``.
    feature_names_in_ : ndarray of shape (`n_features_in_`,)
        Names of the features seen during ``fit``, when ``X`` has string column
        names.

    See Also
    --------
    ActivationScaler : Invertible scaling.

    Examples
    --------
    >>> import numpy as np
    >>> from skconcepts.preprocessing import NonNegative
    >>> X = np.array([[1.0, -2.0], [-3.0, 4.0]])
    >>> split = NonNegative("split").fit(X)
    >>> split.transform(X)
    array([[1., 0., 0., 2.],
           [0., 4., 3., 0.]])
    >>> split.get_feature_names_out()
    array(['x0_pos', 'x1_pos', 'x0_neg', 'x1_neg'], dtype=object)
    >>> np.array_equal(split.inverse_transform(split.transform(X)), X)
    True
    """

    _parameter_constraints: dict = {
        "strategy": [StrOptions({"relu", "shift", "split"})]
    }

    def __init__(self, strategy="split"):
        self.strategy = strategy

    def _fit(self, X):
        if self.strategy == "shift":
            if is_tensor(X):
                low = to_numpy(X.min(dim=0).values, dtype=np.float64)
            else:
                low = X.min(axis=0).astype(np.float64)
            self.shift_ = np.maximum(-low, 0.0)

    def _transform(self, X):
        if self.strategy == "relu":
            return _relu(X)
        if self.strategy == "shift":
            return _relu(X + _like(self.shift_, X))
        if is_tensor(X):
            return torch.cat([_relu(X), _relu(-X)], dim=-1)
        return np.hstack([_relu(X), _relu(-X)])

    def _inverse(self, X):
        if self.strategy == "relu":
            return X
        if self.strategy == "shift":
            return X - _like(self.shift_, X)
        d = self.n_features_in_
        return X[..., :d] - X[..., d:]

    def _decoder(self, device, dtype):
        shift = self.shift_ if self.strategy == "shift" else None
        return _NonNegativeDecoder(
            self.strategy, self.n_features_in_, shift, device, dtype
        )

    def _n_out(self):
        return self.n_features_in_ * (2 if self.strategy == "split" else 1)

    def get_feature_names_out(self, input_features=None):
        """Get output feature names for transformation.

        Parameters
        ----------
        input_features : array-like of str or None, default=None
            Input feature names; default ``feature_names_in_`` or ``x0…``.

        Returns
        -------
        feature_names_out : ndarray of str objects
            The input names, or for ``"split"`` the names suffixed ``_pos`` then
            ``_neg``.
        """
        check_is_fitted(self, "n_features_in_")
        names = _check_feature_names_in(self, input_features)
        if self.strategy != "split":
            return names
        return np.asarray(
            [f"{n}_pos" for n in names] + [f"{n}_neg" for n in names], dtype=object
        )
