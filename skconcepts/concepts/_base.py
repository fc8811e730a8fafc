"""ConceptMixin: the contract shared by every concept estimator.

The public verbs (``fit``, ``fit_transform``, ``transform``,
``inverse_transform``, ``score``, ``get_feature_names_out``, ``decoder_torch``,
``transform_to_store``) live here; each method writes the private hooks:

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

``X`` may also be a source of batches (an :class:`~skconcepts.ActivationStore`
or an iterable of 2-D batches, see :mod:`skconcepts.concepts._streaming`).
``fit`` streams it when the class sets ``_streams = True`` (the
``StreamingConceptsMixin``, which adds ``partial_fit`` and ``_fit_source``);
the other classes load a store with ``ActivationStore.to_numpy`` within their
``max_bytes`` budget and refuse other iterables. ``transform`` and ``score``
read any re-readable source batch by batch (``transform`` into one array
within ``max_bytes``), and ``transform_to_store`` writes the concept
activations of a store to another store.
"""

from __future__ import annotations

import warnings
from numbers import Integral

import numpy as np
import torch
from sklearn.base import TransformerMixin, _fit_context
from sklearn.exceptions import UndefinedMetricWarning
from sklearn.utils._param_validation import Interval
from sklearn.utils.validation import check_array, validate_data

from skconcepts.concepts._streaming import as_batch_source
from skconcepts.store import check_memory_budget, memory_budget, transform_store
from skconcepts.utils._progress import progress_bar
from skconcepts.utils._stats import R2Accumulator, r2
from skconcepts.utils._torch import resolve_device, to_numpy, to_tensor
from skconcepts.utils._torch_free import is_store
from skconcepts.utils._validation import (
    FLOAT32_MAX,
    check_is_fitted,
    check_n_concepts,
    check_tensor,
    check_value_range,
)

__all__ = ["ConceptMixin", "AffineDecoder", "DEVICE_CONSTRAINT"]


#: constraint for ``device`` parameters (checked in ``resolve_device`` at fit);
#: sklearn wants the bare string "no_validation", not a list
DEVICE_CONSTRAINT = "no_validation"

#: rows per batch of ``transform``/``score`` of a batch source for estimators
#: without a ``batch_size`` parameter
DEFAULT_READ_BATCH = 4096


class AffineDecoder(torch.nn.Module):
    """The decoder of a concept estimator: ``forward(C) = C @ weight + bias``.

    ``ConceptMixin.decoder_torch`` returns one; it maps concept activations
    back to activation space, differentiably (gradients flow to ``C``). The
    weight and bias are buffers, not parameters: the decoder is not trained.

    Parameters
    ----------
    weight : array-like or torch.Tensor of shape (n_concepts, n_features)
        The dictionary (``components_``, or its scaled version).
    bias : array-like or torch.Tensor of shape (n_features,) or None, \
default=None
        The offset added after the product (e.g. PCA's mean).
    device : str or torch.device, default=None
        Device of the buffers (default: CPU).
    dtype : torch.dtype, default=None
        Dtype of the buffers (default: float32).

    Attributes
    ----------
    weight : torch.Tensor of shape (n_concepts, n_features)
        The weight buffer.
    bias : torch.Tensor of shape (n_features,) or None
        The bias buffer.

    Examples
    --------
    >>> import torch
    >>> from skconcepts.concepts._base import AffineDecoder
    >>> decoder = AffineDecoder([[1.0, 0.0], [0.0, 2.0]], bias=[0.5, 0.5])
    >>> decoder(torch.tensor([[1.0, 1.0]]))
    tensor([[1.5000, 2.5000]])
    """

    def __init__(self, weight, bias=None, device=None, dtype=None):
        super().__init__()
        dtype = dtype or torch.float32
        self.register_buffer("weight", _as_buffer(weight, device, dtype))
        self.register_buffer(
            "bias", None if bias is None else _as_buffer(bias, device, dtype)
        )

    def forward(self, C):  # C: (..., k) -> (..., d)
        """Decode concept activations ``C`` of shape (..., n_concepts)."""
        out = C @ self.weight
        if self.bias is not None:
            out = out + self.bias
        return out


def _check_has_rows(X, owner):
    """A clear error for activations without rows (e.g. of empty texts only)."""
    shape = getattr(X, "shape", None)
    if shape is None or len(shape) != 2 or shape[0] != 0:
        return  # validated (with sklearn's messages) by _check_X
    raise ValueError(
        f"X has no rows (shape {tuple(shape)}); {owner} needs at least one. "
        "Activations of texts that are all empty or whitespace-only have no rows "
        "at granularity 'token', 'word' or 'sentence' (such a text has no unit): "
        "drop those texts, or use granularity='sample' (one row per text). "
        "TopKInputs.interpret and PooledConcepts skip them."
    )


def _as_rows(codes, n_rows):
    """``codes`` as (n_rows, n_concepts): a method that drops the row axis of a
    one-row input (sklearn's ``SparsePCA``) gets it back."""
    if codes.ndim == 1:
        return codes.reshape(n_rows, -1)
    return codes


def _as_buffer(x, device, dtype):
    if torch.is_tensor(x):
        return x.detach().to(device=device, dtype=dtype)
    return torch.as_tensor(np.asarray(x), dtype=dtype, device=device)


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
    #: whether ``fit`` streams a batch source (``StreamingConceptsMixin``)
    _streams = False
    #: largest norm ``sqrt(sum(X**2))`` of the activations ``fit`` accepts:
    #: ``sum(X**2)`` must be finite in float32 (see ``check_value_range``)
    _max_input_norm = FLOAT32_MAX**0.5

    # ------------------------------------------------------------------ input
    def _wants_torch(self, X):
        if not self._torch_native:
            return False
        if torch.is_tensor(X):
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
        _check_has_rows(X, type(self).__name__)
        if torch.is_tensor(X):
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
            # fit: a missing CUDA is an error; after loading a CUDA-fitted model
            # on a CPU-only machine, transform falls back to the CPU with a warning
            device = resolve_device(self.device) if reset else self._runtime_device()
            X = to_tensor(X, device=device)
        return X

    def _check_tensor(self, X, *, reset, name="X"):
        X = check_tensor(
            X,
            name=name,
            n_features=None if reset else self.n_features_in_,
            owner=type(self).__name__,
        )
        if reset:
            self.n_features_in_ = X.shape[1]
            if hasattr(self, "feature_names_in_"):
                del self.feature_names_in_
        if not self._torch_native:
            return to_numpy(X)
        return X

    def _check_codes(self, C):
        k = self.components_.shape[0]
        if torch.is_tensor(C):
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
        X : array-like, torch.Tensor, ActivationStore or iterable of batches
            Activations of shape (n_samples, n_features), one row per unit.
            The estimators that have ``partial_fit`` stream a store or an
            iterable of 2-D batches (list of arrays or tensors, ``DataLoader``,
            iterator) in mini-batches; the others load a store if it fits in
            their ``max_bytes`` budget.
        y : Ignored
            Not used, present for API consistency.

        Returns
        -------
        self : object
            The fitted estimator.
        """
        source = self._fit_source_of(X)
        if source is not None:
            self._fit_source(source)
        else:
            self._fit_full(X)
        return self

    @_fit_context(prefer_skip_nested_validation=True)
    def fit_transform(self, X, y=None, **fit_params):
        """Fit the dictionary and return the concept activations of ``X``.

        Parameters
        ----------
        X : array-like, torch.Tensor, ActivationStore or iterable of batches
            Activations of shape (n_samples, n_features), one row per unit (a
            source of batches as in ``fit``; it is read again by
            ``transform``, so a one-shot iterator is refused).
        y : Ignored
            Not used, present for API consistency.
        **fit_params : dict
            Unused; accepted for API consistency.

        Returns
        -------
        C : ndarray or torch.Tensor of shape (n_samples, n_concepts)
            Concept activations, float32.
        """
        source = self._fit_source_of(X)
        if source is not None:
            if source.one_shot:
                raise TypeError(
                    f"{type(self).__name__}.fit_transform reads X twice, and a "
                    "one-shot iterator can be read once; call fit(X) and then "
                    "transform each batch, or pass a list of batches or an "
                    "activation store."
                )
            self._fit_source(source)
            return self._transform_source(source)
        was_tensor = torch.is_tensor(X)
        X, codes = self._fit_full(X)
        if codes is None:
            codes = self._transform(X)
        return self._format_output(codes, was_tensor, X)

    def _fit_source_of(self, X):
        """The batch source ``fit`` streams, or None to fit ``X`` in memory."""
        source = as_batch_source(X)
        if source is None or self._streams:
            return source
        if source.kind == "store":
            return None  # loaded by _check_X within max_bytes
        raise TypeError(
            f"{type(self).__name__} cannot learn from a stream of batches; pass "
            "one array, or an ActivationStore (loaded within max_bytes), or use "
            "an estimator that has partial_fit."
        )

    def _check_value_range(self, X, name="X"):
        """Refuse activations whose float32 arithmetic would overflow."""
        check_value_range(
            X, max_norm=self._max_input_norm, name=name, owner=type(self).__name__
        )

    def _fit_full(self, X):
        X = self._check_X(X, reset=True)
        self._check_value_range(X)
        n_samples, n_features = X.shape
        check_n_concepts(
            self.n_concepts,
            self._max_concepts(n_samples, n_features),
            why=f"n_samples = {n_samples}, n_features = {n_features}",
        )
        codes = self._fit(X)
        self.components_ = np.ascontiguousarray(
            to_numpy(self.components_, dtype=None), dtype=np.float32
        )
        self._check_fitted_dictionary()
        self._n_features_out = self.components_.shape[0]
        return X, codes

    def _check_fitted_dictionary(self):
        """Refuse a non-finite dictionary, or one with fewer than ``n_concepts`` rows.

        Neither may pass silently: NaN concepts would give NaN codes.
        """
        name = type(self).__name__
        if not np.isfinite(self.components_).all():
            del self.components_  # leave the estimator unfitted
            raise ValueError(
                f"{name} learned non-finite concepts (NaN or infinity): the "
                "activations are too large or badly scaled for its float32 "
                "arithmetic. Scale them first, e.g. with "
                "skconcepts.preprocessing.ActivationScaler() in the pipeline."
            )
        k = self.components_.shape[0]
        if k != self.n_concepts:
            raise RuntimeError(
                f"{type(self).__name__} learned {k} concepts instead of "
                f"n_concepts={self.n_concepts!r}; lower n_concepts to {k} (and "
                "report this: the method's bound should have refused it)."
            )

    def transform(self, X):
        """Concept activations of ``X`` (the dictionary is not refitted).

        Parameters
        ----------
        X : array-like, torch.Tensor, ActivationStore or iterable of batches
            Activations of shape (n_samples, n_features). A store or an
            iterable of batches is read batch by batch into one array, which
            must fit in the ``max_bytes`` budget; use ``transform_to_store``
            to write the concepts of a larger store to disk.

        Returns
        -------
        C : ndarray or torch.Tensor of shape (n_samples, n_concepts)
            Concept activations, float32. A tensor input gives a tensor.
        """
        check_is_fitted(self)
        source = as_batch_source(X)
        if source is not None:
            return self._transform_source(source)
        was_tensor = torch.is_tensor(X)
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
        if torch.is_tensor(C):
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
            ``1 - ||X - X_hat||² / ||X - mean(X)||²``. One row has no
            variance: 1.0 for an exact reconstruction, else 0.0, with an
            ``UndefinedMetricWarning``.
        """
        check_is_fitted(self)
        source = as_batch_source(X)
        if source is not None:
            return self._score_source(source)
        X_checked = self._check_X(X, reset=False)
        codes = _as_rows(self._transform(X_checked), X_checked.shape[0])
        if X_checked.shape[0] < 2:
            warnings.warn(
                "The R² of one row is not well defined (one row has no "
                "variance): score returns 1.0 for an exact reconstruction, else "
                "0.0; score at least two rows.",
                UndefinedMetricWarning,
                stacklevel=2,
            )
        return r2(X_checked, self.inverse_transform(codes))

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
        codes = _as_rows(codes, X.shape[0])
        finite = (
            bool(torch.isfinite(codes).all())
            if torch.is_tensor(codes)
            else bool(np.isfinite(codes).all())
        )
        if not finite:
            raise ValueError(
                f"The concept activations of {type(self).__name__} are not finite "
                "(NaN or infinity): the float32 arithmetic of the dictionary "
                "overflowed or underflowed, because X is far larger (or far "
                "smaller) than the activations it was fitted on. Scale the "
                "activations as at fit, e.g. with "
                "skconcepts.preprocessing.ActivationScaler() in the pipeline."
            )
        if was_tensor:
            device = X.device if torch.is_tensor(X) else None
            return to_tensor(codes, device=device)
        return np.ascontiguousarray(to_numpy(codes, dtype=None), dtype=np.float32)

    def _runtime_device(self):
        """The device to compute on now; CPU with a warning if CUDA vanished."""
        return resolve_device(
            getattr(self, "device", "cpu"),
            cpu_fallback=True,
            owner=type(self).__name__,
        )

    # ------------------------------------------------- reading a batch source
    def _read_batches(self, source, verb):
        """The batches of ``source`` with a progress bar over the rows."""
        if source.n_features != self.n_features_in_:
            raise ValueError(
                f"X has {source.n_features} features, but {type(self).__name__} "
                f"is expecting {self.n_features_in_} features as input."
            )
        batch_size = int(getattr(self, "batch_size", None) or DEFAULT_READ_BATCH)
        with progress_bar(
            total=source.n_rows,
            progress=getattr(self, "progress", None),
            unit="row",
            desc=f"{type(self).__name__}.{verb}",
        ) as bar:
            for X in source.iter_batches(batch_size):
                yield X
                bar.update(len(X))

    def _check_output_size(self, source, n_rows, k, budget, at_least=False):
        name, more = type(self).__name__, ("at least " if at_least else "")
        check_memory_budget(
            n_rows * k * 4,
            budget=budget,
            what=f"{name}.transform of {source.label} ({more}{n_rows} rows x {k} "
            "float32 concepts)",
            fix=f"Write the concept activations to disk with "
            f"{name}.transform_to_store(store, path), or raise max_bytes.",
        )

    def _transform_source(self, source):
        """Concept activations of every row of ``source``, in one array.

        The ``(n_rows, n_concepts)`` float32 output must fit in the
        ``max_bytes`` budget; the source itself is read one batch at a time.
        """
        k = int(self.components_.shape[0])
        budget = memory_budget(getattr(self, "max_bytes", None))  # read RAM once
        if source.n_rows is not None:
            self._check_output_size(source, source.n_rows, k, budget)
            out = np.empty((source.n_rows, k), dtype=np.float32)
            pos = 0
            for X in self._read_batches(source, "transform"):
                out[pos : pos + len(X)] = to_numpy(self.transform(X), dtype=None)
                pos += len(X)
            return out
        parts, n_rows = [], 0
        for X in self._read_batches(source, "transform"):
            n_rows += len(X)
            self._check_output_size(source, n_rows, k, budget, at_least=True)
            parts.append(to_numpy(self.transform(X)))
        return np.concatenate(parts) if parts else np.empty((0, k), np.float32)

    def _score_source(self, source):
        """Reconstruction R² on ``source``, from running sums.

        Equal (up to float64 rounding) to ``score`` of the concatenated rows.
        """
        acc = R2Accumulator()
        for X in self._read_batches(source, "score"):
            acc.update(X, to_numpy(self.inverse_transform(self.transform(X))))
        if acc.n_rows == 0:
            label = source.label[:1].upper() + source.label[1:]
            raise ValueError(f"{label} has no rows.")
        return acc.result()

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.transformer_tags.preserves_dtype = ["float32"]
        return tags
