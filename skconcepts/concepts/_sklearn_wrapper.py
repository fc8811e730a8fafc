"""Shared contract of concept estimators that wrap a scikit-learn estimator.

A wrapper class names the sklearn class, the parameters it passes under the
same name, and (where the method iterates) that it reports ``n_iter_`` and
``reconstruction_err_``. The sklearn estimator is built and fitted in ``fit``
and kept as ``estimator_``; its parameter constraints are reused, so each
wrapper validates exactly what sklearn would.
"""

from __future__ import annotations

import numpy as np
import torch
from sklearn import config_context

from skconcepts.concepts._base import ConceptMixin
from skconcepts.utils._torch import resolve_device, to_tensor

__all__ = ["SklearnConceptsMixin", "sklearn_constraints"]


def sklearn_constraints(estimator_class, names):
    """The ``_parameter_constraints`` of ``estimator_class`` for ``names``."""
    return {name: estimator_class._parameter_constraints[name] for name in names}


class SklearnConceptsMixin(ConceptMixin):
    """Concepts computed by a scikit-learn estimator built in ``fit``.

    Subclasses set the class attributes below and, where their dictionary or
    offset is not the sklearn estimator's ``components_``/none, override
    ``_read_fitted`` and ``_decoder_offset``.
    """

    #: the wrapped sklearn class
    _estimator_class = None
    #: parameters passed to it under the same name
    _estimator_params: tuple = ()
    #: the sklearn parameter that receives ``n_concepts``
    _n_concepts_param = "n_components"
    #: whether the method iterates (then ``n_iter_`` and ``reconstruction_err_``)
    _iterative = False
    #: streaming classes (with ``StreamingConceptsMixin``): the mini-batch sklearn
    #: class built by the first ``partial_fit``, the parameters passed to it
    #: under the same name, and fixed keyword arguments
    _stream_estimator_class = None
    _stream_estimator_params: tuple = ()
    _stream_estimator_kwargs: dict = {}
    #: the method runs scikit-learn only: ``device`` must be the CPU ("auto" is)
    _cpu_only = False

    def _make_estimator(self):
        params = {name: getattr(self, name) for name in self._estimator_params}
        params[self._n_concepts_param] = self.n_concepts
        return self._estimator_class(**params)

    def _partial_fit(self, X, first):
        """One mini-batch step of ``_stream_estimator_class`` (streaming hook)."""
        if first:
            self._check_cpu_only()
            names = self._stream_estimator_params
            params = {name: getattr(self, name) for name in names}
            params[self._n_concepts_param] = self.n_concepts
            self.estimator_ = self._stream_estimator_class(
                **params, **self._stream_estimator_kwargs
            )
        self.estimator_.partial_fit(X)
        self._read_fitted()

    def _fit(self, X):
        self._check_cpu_only()
        self.estimator_ = self._make_estimator()
        # X passed _check_X (finite, float32): sklearn need not scan it again
        with config_context(assume_finite=True):
            self.estimator_.fit(X)
        self._read_fitted()
        if not self._iterative:
            # no statistic needs the codes: ``fit`` stays as cheap as sklearn's,
            # and ``fit_transform`` computes them through ``_transform``
            return None
        # fit then transform (not fit_transform): the codes of the training rows
        # are then exactly those of ``transform``, whatever the method
        codes = self.estimator_.transform(X).reshape(X.shape[0], -1)
        self._set_iteration_stats(X, codes)
        return codes

    def _read_fitted(self):
        """Copy the dictionary out of ``estimator_``."""
        self.components_ = self.estimator_.components_

    def _set_iteration_stats(self, X, codes):
        if not self._iterative:
            return
        self.n_iter_ = int(np.max(self.estimator_.n_iter_))
        self.reconstruction_err_ = reconstruction_error(
            X, codes, self._decoder_weight(), self._decoder_offset()
        )

    def _transform(self, X):
        codes = self.estimator_.transform(X)
        # sklearn's SparsePCA squeezes a one-row input to (k,)
        return codes.reshape(X.shape[0], -1) if codes.ndim == 1 else codes

    def _check_cpu_only(self):
        """``device`` of a CPU-only method: "cpu" or "auto", else ``ValueError``."""
        if not self._cpu_only or self.device == "auto":
            return
        try:
            kind = torch.device(self.device).type
        except (RuntimeError, TypeError):
            kind = resolve_device(self.device).type  # raises the clear ValueError
        if kind != "cpu":
            raise ValueError(
                f"{type(self).__name__} runs scikit-learn on the CPU only; "
                f"device={self.device!r} is not available for it: use "
                "device='cpu' or device='auto'."
            )

    def _fit_device(self):
        """The torch device of ``fit`` (a clear error for an unknown or absent one)."""
        return resolve_device(self.device)


def reconstruction_error(X, codes, weight, offset=None):
    """Frobenius norm ``||X - (codes @ weight + offset)||`` (array or tensor)."""
    if torch.is_tensor(X) or torch.is_tensor(codes):
        X = to_tensor(X)
        W = to_tensor(weight, device=X.device)
        X_hat = to_tensor(codes, device=X.device) @ W  # (n, k) @ (k, d)
        if offset is not None:
            X_hat = X_hat + to_tensor(offset, device=X.device)
        return float(torch.linalg.vector_norm((X - X_hat).double()))
    X_hat = np.asarray(codes, dtype=np.float64) @ np.asarray(weight, dtype=np.float64)
    if offset is not None:
        X_hat += np.asarray(offset, dtype=np.float64)
    return float(np.linalg.norm(np.asarray(X, dtype=np.float64) - X_hat))
