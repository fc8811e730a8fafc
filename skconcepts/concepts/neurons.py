"""The units of a layer as concepts: the identity dictionary, a baseline."""

from __future__ import annotations

from numbers import Integral

import numpy as np
from sklearn.base import BaseEstimator, _fit_context
from sklearn.utils._param_validation import Interval

from skconcepts.concepts._base import ConceptMixin

__all__ = ["NeuronConcepts"]


class NeuronConcepts(ConceptMixin, BaseEstimator):
    """The units (neurons) of the layer themselves as concepts.

    The identity dictionary: concept ``j`` is unit ``units_[j]`` of the
    activations, ``transform`` returns those columns unchanged. It is the
    baseline every learned dictionary should beat (the quality and recovery
    tables of the benchmarks show it as the first row).

    Parameters
    ----------
    units : array-like of int, int or None, default=None
        The units (column indices of ``X``) kept as concepts, in this order;
        an int ``k``: the ``k`` units of largest variance on the training rows,
        most varied first (the baseline with as many concepts as a method
        with ``n_concepts=k``); ``None`` keeps every unit.
    max_bytes : int or None, default=None
        Memory budget, in bytes, to load an
        :class:`~skconcepts.ActivationStore` given as ``X`` and of
        ``transform`` of one (``None``: 25% of the RAM available).

    Attributes
    ----------
    units_ : ndarray of shape (n_concepts,)
        The unit of each concept.
    components_ : ndarray of shape (n_concepts, n_features)
        Rows of the identity matrix: ``components_[j, units_[j]] = 1``.
    mean_ : ndarray of shape (n_features,)
        Mean of each unit over the training rows.
    n_features_in_ : int
        Number of features seen during ``fit``.
    feature_names_in_ : ndarray of shape (`n_features_in_`,)
        Names of the features seen during ``fit``, when ``X`` has string column
        names.

    See Also
    --------
    ProbeConcepts : Supervised directions.
    PCAConcepts : Orthogonal directions of largest variance.

    Notes
    -----
    ``inverse_transform`` puts each concept back in its unit and fills the
    units that are not concepts with their training mean (``mean_``): the
    affine map ``C @ components_ + offset`` where the offset is ``mean_`` on
    the other units and 0 on the chosen ones. With every unit kept, it is the
    exact inverse of ``transform`` (``score`` is 1).

    Examples
    --------
    >>> import numpy as np
    >>> from skconcepts import NeuronConcepts
    >>> X = np.arange(12, dtype=np.float32).reshape(4, 3)
    >>> neurons = NeuronConcepts(units=[2, 0]).fit(X)
    >>> neurons.transform(X[:2])
    array([[2., 0.],
           [5., 3.]], dtype=float32)
    >>> neurons.inverse_transform([[1.0, 2.0]])
    array([[2. , 5.5, 1. ]], dtype=float32)
    >>> NeuronConcepts().fit(X).score(X)
    1.0
    >>> X[:, 1] *= 10  # the most varied unit
    >>> NeuronConcepts(units=1).fit(X).units_
    array([1])
    """

    #: discovery kind: all_estimators(type_filter="baseline") lists it
    _concept_kind = "baseline"
    _parameter_constraints: dict = {
        "units": ["array-like", Interval(Integral, 1, None, closed="left"), None],
        "max_bytes": [Interval(Integral, 0, None, closed="left"), None],
    }

    def __init__(self, units=None, *, max_bytes=None):
        self.units = units
        self.max_bytes = max_bytes

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y=None):
        """Record the chosen units and the mean of every unit.

        Parameters
        ----------
        X : array-like, torch.Tensor or ActivationStore
            Activations of shape (n_samples, n_features) (a store is loaded
            within ``max_bytes``).
        y : Ignored
            Not used, present for API consistency.

        Returns
        -------
        self : object
            The fitted estimator.
        """
        self._fit_source_of(X)  # refuses a stream of batches
        X = self._check_X(X, reset=True)
        self._check_value_range(X)
        n_features = X.shape[1]
        self.units_ = self._check_units(X)
        self.mean_ = np.asarray(X.mean(axis=0), dtype=np.float64).astype(np.float32)
        components = np.zeros((len(self.units_), n_features), dtype=np.float32)
        components[np.arange(len(self.units_)), self.units_] = 1.0
        self.components_ = components
        self._n_features_out = len(self.units_)
        return self

    def fit_transform(self, X, y=None, **fit_params):
        """Fit, then return the chosen units of ``X``.

        Parameters
        ----------
        X : array-like, torch.Tensor or ActivationStore
            Activations of shape (n_samples, n_features).
        y : Ignored
            Not used, present for API consistency.
        **fit_params : dict
            Unused; accepted for API consistency.

        Returns
        -------
        C : ndarray or torch.Tensor of shape (n_samples, n_concepts)
            The chosen units, float32.
        """
        return self.fit(X, y).transform(X)

    def _check_units(self, X):
        n_features = X.shape[1]
        if self.units is None:
            return np.arange(n_features)
        if isinstance(self.units, Integral):
            if self.units > n_features:
                raise ValueError(
                    f"units={self.units} is more than the n_features = "
                    f"{n_features} of X; use units <= {n_features}."
                )
            variance = np.asarray(X, dtype=np.float64).var(axis=0)
            return np.argsort(-variance, kind="stable")[: self.units]
        values = np.asarray(self.units)
        if values.ndim != 1 or values.size == 0:
            raise ValueError(
                f"units={self.units!r} must be a non-empty list of unit indices; "
                "pass e.g. units=[0, 5], or units=None for every unit."
            )
        if values.dtype.kind not in "iu" and not (
            values.dtype.kind == "f" and np.all(values == np.round(values))
        ):
            raise ValueError(
                f"units={self.units!r} must hold integer unit indices; pass the "
                "column numbers of the units to keep."
            )
        values = values.astype(np.int64)
        bad = values[(values < 0) | (values >= n_features)]
        if bad.size:
            raise ValueError(
                f"units={self.units!r} holds {bad.tolist()}, out of range for X "
                f"with n_features = {n_features}; use indices in [0, {n_features - 1}]."
            )
        unique, counts = np.unique(values, return_counts=True)
        if (counts > 1).any():
            raise ValueError(
                f"units={self.units!r} repeats {unique[counts > 1].tolist()}; "
                "name each unit once."
            )
        return values

    def _transform(self, X):
        return X[:, self.units_]

    def _decoder_offset(self):
        offset = self.mean_.copy()
        offset[self.units_] = 0.0
        return offset
