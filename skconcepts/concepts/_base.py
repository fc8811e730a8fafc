"""ConceptMixin: the contract shared by every concept estimator.

The public verbs (``fit``, ``transform``, ``inverse_transform``, ``score``,
``get_feature_names_out``, ``decoder_torch``) live here; each method writes the
private hooks:

``_fit(X)``
    ``X`` is a float32 numpy array, or a float32 torch tensor when the class sets
    ``_torch_native = True`` and the caller passed a tensor (or asked for a CUDA
    device). Sets ``components_`` (and ``n_iter_``/``reconstruction_err_`` where
    the method iterates). May return the codes of the training rows (used by
    ``fit_transform``), else ``None``.
``_transform(X)``
    Same input types; returns codes (n_rows, n_concepts), array or tensor.
``_decoder_offset()``
    Optional offset added by the decoder (e.g. PCA's mean); ``None`` for none.
``_max_concepts(n_samples, n_features)``
    Optional upper bound on ``n_concepts`` (``None``: unbounded).

``X`` may also be an :class:`~skconcepts.ActivationStore`. ``fit`` streams it
when the class can (``StreamingConceptsMixin`` of
:mod:`skconcepts.concepts._streaming`, which adds ``partial_fit``), else loads
it with ``to_numpy`` within the estimator's ``max_bytes`` budget; ``transform``
and ``score`` read it batch by batch, and ``transform_to_store`` writes the
concept activations of a store to another store.
"""

from __future__ import annotations

import warnings
from numbers import Integral

import numpy as np
from sklearn.base import TransformerMixin, _fit_context
from sklearn.utils._param_validation import Interval
from sklearn.utils.validation import check_array, check_is_fitted, validate_data

from skconcepts.utils._torch_free import is_store, is_tensor
from skconcepts.utils._validation import check_n_concepts

__all__ = ["ConceptMixin", "AffineDecoder", "DEVICE_CONSTRAINT"]


#: constraint for ``device`` parameters (checked in ``resolve_device`` at fit);
#: sklearn wants the bare string "no_validation", not a list
DEVICE_CONSTRAINT = "no_validation"


class ConceptMixin(TransformerMixin):
    """Mixin with the shared contract of concept estimators.

    Put it left of ``BaseEstimator``::

        class MyConcepts(ConceptMixin, BaseEstimator): ...

    Subclasses define ``_fit`` and ``_transform`` (see the module docstring).
    """

    _parameter_constraints: dict = {
        "n_concepts": [Interval(Integral, 1, None, closed="left")],
    }
    #: whether ``_fit``/``_transform`` accept torch tensors directly
    _torch_native = False

    # ------------------------------------------------------------------ input
    def _wants_torch(self, X):
        if not self._torch_native:
            return False
        if is_tensor(X):
            return True
        device = getattr(self, "device", "cpu")
        return str(device).startswith("cuda") or device == "auto"

    def _check_X(self, X, *, reset, name="X"):
        """Validate ``X`` and return a float32 array or tensor (never float64)."""
        if is_store(X):
            X = X.to_numpy(
                max_bytes=getattr(self, "max_bytes", None),
                estimator=type(self).__name__,
            )
        if is_tensor(X):
            return self._check_tensor(X, reset=reset, name=name)
        X = validate_data(
            self,
            X,
            reset=reset,
            dtype=[np.float32, np.float64],
            ensure_min_samples=1,
        )
        X = X.astype(np.float32, copy=False)
        if self._wants_torch(X):
            from skconcepts.utils._torch import resolve_device, to_tensor

            # fit: a missing CUDA is an error; after loading a CUDA-fitted model
            # on a CPU-only machine, transform falls back to the CPU with a warning
            device = resolve_device(self.device) if reset else self._runtime_device()
            X = to_tensor(X, device=device)
        return X

    def _check_tensor(self, X, *, reset, name="X"):
        import torch

        from skconcepts.utils._validation import check_finite_tensor

        if X.ndim != 2:
            raise ValueError(
                f"Expected 2D input, got a tensor of shape {tuple(X.shape)}; "
                "reshape it to (n_rows, n_features)."
            )
        if X.shape[0] < 1:
            raise ValueError(f"Found array with 0 sample(s) (shape={tuple(X.shape)}).")
        if not torch.is_floating_point(X):
            X = X.float()
        X = X.detach().to(torch.float32)
        check_finite_tensor(X, name)
        n_features = X.shape[1]
        if reset:
            self.n_features_in_ = n_features
            if hasattr(self, "feature_names_in_"):
                del self.feature_names_in_
        elif n_features != self.n_features_in_:
            raise ValueError(
                f"X has {n_features} features, but {type(self).__name__} is "
                f"expecting {self.n_features_in_} features as input."
            )
        if not self._torch_native:
            from skconcepts.utils._torch import to_numpy

            return to_numpy(X)
        return X

    def _check_codes(self, C):
        k = self.components_.shape[0]
        if is_tensor(C):
            if C.ndim != 2 or C.shape[1] != k:
                raise ValueError(
                    f"Expected concept activations of shape (n_rows, {k}), got "
                    f"{tuple(C.shape)}."
                )
            return C
        C = check_array(C, dtype=[np.float32, np.float64], input_name="C")
        if C.shape[1] != k:
            raise ValueError(
                f"C has {C.shape[1]} columns, but {type(self).__name__} has "
                f"{k} concepts; pass the output of transform."
            )
        return C.astype(np.float32, copy=False)

    # ------------------------------------------------------------- public API
    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y=None):
        """Learn the concept dictionary from activations.

        Parameters
        ----------
        X : array-like, torch.Tensor or ActivationStore of shape \
(n_samples, n_features)
            Activations, one row per unit. A store is streamed by the
            estimators that have ``partial_fit``; the others load it if it fits
            in their ``max_bytes`` budget.
        y : Ignored
            Not used, present for API consistency.

        Returns
        -------
        self : object
            The fitted estimator.
        """
        if is_store(X) and hasattr(self, "_fit_store"):
            self._fit_store(X)
        else:
            self._fit_full(X)
        return self

    @_fit_context(prefer_skip_nested_validation=True)
    def fit_transform(self, X, y=None, **fit_params):
        """Fit the dictionary and return the concept activations of ``X``.

        Parameters
        ----------
        X : array-like, torch.Tensor or ActivationStore of shape \
(n_samples, n_features)
            Activations, one row per unit (a store as in ``fit``).
        y : Ignored
            Not used, present for API consistency.
        **fit_params : dict
            Unused; accepted for API consistency.

        Returns
        -------
        C : ndarray or torch.Tensor of shape (n_samples, n_concepts)
            Concept activations, float32.
        """
        if is_store(X) and hasattr(self, "_fit_store"):
            self._fit_store(X)
            return self.transform(X)
        was_tensor = is_tensor(X)
        X, codes = self._fit_full(X)
        if codes is None:
            codes = self._transform(X)
        return self._format_output(codes, was_tensor, X)

    def _fit_full(self, X):
        X = self._check_X(X, reset=True)
        n_samples, n_features = X.shape
        check_n_concepts(
            self.n_concepts,
            self._max_concepts(n_samples, n_features),
            why=f"n_samples = {n_samples}, n_features = {n_features}",
        )
        codes = self._fit(X)
        self.components_ = np.ascontiguousarray(
            _as_numpy(self.components_), dtype=np.float32
        )
        self._n_features_out = self.components_.shape[0]
        return X, codes

    def transform(self, X):
        """Concept activations of ``X`` (the dictionary is not refitted).

        Parameters
        ----------
        X : array-like, torch.Tensor or ActivationStore of shape \
(n_samples, n_features)
            Activations. A store is read batch by batch into one array, which
            must fit in the ``max_bytes`` budget; use ``transform_to_store``
            to write the concepts of a larger store to disk.

        Returns
        -------
        C : ndarray or torch.Tensor of shape (n_samples, n_concepts)
            Concept activations, float32. A tensor input gives a tensor.
        """
        check_is_fitted(self)
        if is_store(X):
            from skconcepts.concepts._streaming import transform_store_to_array

            return transform_store_to_array(self, X)
        was_tensor = is_tensor(X)
        X = self._check_X(X, reset=False)
        return self._format_output(self._transform(X), was_tensor, X)

    def inverse_transform(self, C):
        """Map concept activations back to activation space.

        Parameters
        ----------
        C : array-like or torch.Tensor of shape (n_samples, n_concepts)
            Concept activations, e.g. the output of ``transform``.

        Returns
        -------
        X_hat : ndarray or torch.Tensor of shape (n_samples, n_features)
            ``C @ components_`` plus the method's offset, float32.
        """
        check_is_fitted(self)
        C = self._check_codes(C)
        if is_tensor(C):
            return self.decoder_torch(device=C.device)(C.float())
        X_hat = C @ self._decoder_weight()
        offset = self._decoder_offset()
        if offset is not None:
            X_hat += offset
        return X_hat.astype(np.float32, copy=False)

    def score(self, X, y=None):
        """Reconstruction R² (1 - fraction of variance unexplained), higher is better.

        Parameters
        ----------
        X : array-like, torch.Tensor or ActivationStore of shape \
(n_samples, n_features)
            Activations (a store is read batch by batch).
        y : Ignored
            Not used, present for API consistency.

        Returns
        -------
        score : float
            ``1 - ||X - X_hat||² / ||X - mean(X)||²``.
        """
        check_is_fitted(self)
        if is_store(X):
            from skconcepts.concepts._streaming import score_store

            return score_store(self, X)
        from skconcepts.utils._torch_free import is_tensor as _is_t

        X_checked = self._check_X(X, reset=False)
        codes = self._transform(X_checked)
        X_hat = self.inverse_transform(codes)
        if _is_t(X_checked) or _is_t(X_hat):
            from skconcepts.utils._torch import to_numpy

            X_checked, X_hat = to_numpy(X_checked), to_numpy(X_hat)
        return _r2(X_checked, X_hat)

    def transform_to_store(self, store, path, **kwargs):
        """Write the concept activations of a store to a new store on disk.

        Delegates to :func:`skconcepts.store.transform_store`: the store is
        read one shard at a time and each concept shard keeps the units of its
        activation shard; an interrupted call resumes when rerun.

        Parameters
        ----------
        store : ActivationStore or str or os.PathLike
            The activations (a complete store).
        path : str or os.PathLike
            Folder of the concept store.
        **kwargs : dict
            ``batch_size``, ``dtype``, ``overwrite`` and ``progress`` of
            :func:`~skconcepts.store.transform_store`.

        Returns
        -------
        concept_store : ActivationStore
            One row per row of ``store`` and ``n_concepts`` columns named
            ``concept0 …``; ``concept_store[:]`` equals ``transform(store[:])``.
        """
        from skconcepts.store import transform_store

        check_is_fitted(self)
        return transform_store(self, store, path, **kwargs)

    def get_feature_names_out(self, input_features=None):
        """Get output feature names: ``concept0 … concept{k-1}``.

        Parameters
        ----------
        input_features : array-like of str or None, default=None
            Ignored; present for API consistency.

        Returns
        -------
        feature_names_out : ndarray of str objects
            The concept names.
        """
        check_is_fitted(self, "components_")
        return np.asarray(
            [f"concept{i}" for i in range(self.components_.shape[0])], dtype=object
        )

    def decoder_torch(self, device=None, dtype=None):
        """The differentiable decoder ``C -> C @ components_ + offset``.

        Parameters
        ----------
        device : str or torch.device, default=None
            Device of the decoder's buffers (default: CPU).
        dtype : torch.dtype, default=None
            Dtype of the buffers (default: float32).

        Returns
        -------
        decoder : torch.nn.Module
            A module whose ``forward(C)`` maps (..., n_concepts) to
            (..., n_features); gradients flow to ``C``.
        """
        check_is_fitted(self)
        return AffineDecoder(
            self._decoder_weight(), self._decoder_offset(), device=device, dtype=dtype
        )

    # --------------------------------------------------------- private hooks
    def _decoder_weight(self):
        return self.components_

    def _decoder_offset(self):
        return None

    def _max_concepts(self, n_samples, n_features):
        return None

    def _format_output(self, codes, was_tensor, X):
        if was_tensor:
            import torch

            from skconcepts.utils._torch import to_tensor

            device = X.device if isinstance(X, torch.Tensor) else None
            return to_tensor(codes, device=device)
        return np.ascontiguousarray(_as_numpy(codes), dtype=np.float32)

    def _runtime_device(self):
        """The device to compute on now; CPU with a warning if CUDA vanished."""
        import torch

        from skconcepts.utils._torch import resolve_device

        device = getattr(self, "device", "cpu")
        if str(device).startswith("cuda") and not torch.cuda.is_available():
            warnings.warn(
                f"{type(self).__name__} was set to device={device!r} but CUDA is "
                "not available; computing on the CPU.",
                RuntimeWarning,
                stacklevel=3,
            )
            return torch.device("cpu")
        return resolve_device(device)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.transformer_tags.preserves_dtype = ["float32"]
        return tags


def _as_numpy(x):
    if is_tensor(x):
        from skconcepts.utils._torch import to_numpy

        return to_numpy(x)
    return np.asarray(x)


def _r2(X, X_hat):
    X = np.asarray(X, dtype=np.float64)
    resid = np.sum((X - np.asarray(X_hat, dtype=np.float64)) ** 2)
    total = np.sum((X - X.mean(axis=0)) ** 2)
    if total == 0:
        return 1.0 if resid == 0 else 0.0
    return float(1.0 - resid / total)


def _make_affine_decoder_class():
    import torch

    class AffineDecoder(torch.nn.Module):
        """``forward(C) = C @ weight + bias``: a concept estimator's decoder."""

        def __init__(self, weight, bias=None, device=None, dtype=None):
            super().__init__()
            dtype = dtype or torch.float32
            self.register_buffer(
                "weight",
                torch.as_tensor(np.asarray(weight), dtype=dtype, device=device),
            )
            if bias is not None:
                bias = torch.as_tensor(np.asarray(bias), dtype=dtype, device=device)
            self.register_buffer("bias", bias)

        def forward(self, C):  # C: (..., k) -> (..., d)
            out = C @ self.weight
            if self.bias is not None:
                out = out + self.bias
            return out

    return AffineDecoder


def AffineDecoder(weight, bias=None, device=None, dtype=None):  # noqa: N802
    """Build the affine decoder module (see ``ConceptMixin.decoder_torch``)."""
    cls = globals().get("_AffineDecoderClass")
    if cls is None:
        cls = _make_affine_decoder_class()
        globals()["_AffineDecoderClass"] = cls
    return cls(weight, bias, device=device, dtype=dtype)
