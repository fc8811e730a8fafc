"""Supervised concepts: one direction per class learned from labelled activations.

A probe reads a concept from labels: the direction in activation space that
separates the rows of one class from the others. :class:`ProbeConcepts`
learns it with a scikit-learn estimator (``LogisticRegression``,
``LinearSVC``, ``NearestCentroid``, ``Ridge``) or a difference of class means,
and then behaves as every concept estimator: ``transform`` projects on the
directions, ``inverse_transform`` and ``decoder_torch`` map back (an affine
decoder fitted by least squares), so ``TopKInputs``,
``concept_output_gradient`` and the report work unchanged.
"""

from __future__ import annotations

from numbers import Integral, Real

import numpy as np
from sklearn.base import BaseEstimator, _fit_context
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.neighbors import NearestCentroid
from sklearn.svm import LinearSVC
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.multiclass import type_of_target
from sklearn.utils.validation import column_or_1d

from skconcepts.concepts._base import ConceptMixin
from skconcepts.utils._torch import to_numpy

__all__ = ["ProbeConcepts", "PROBE_METHODS"]

#: the probe methods; all but ``"linear"`` read class labels
PROBE_METHODS = ("mean_diff", "logistic", "svm", "centroid", "linear")
_CLASSIFICATION_TARGETS = ("binary", "multiclass")


def least_squares_decoder(C, X, rcond=1e-5):
    """The affine map ``C @ W + b`` closest to ``X`` in least squares.

    Parameters
    ----------
    C : ndarray of shape (n_samples, n_concepts)
        Concept activations of the training rows.
    X : ndarray of shape (n_samples, n_features)
        The training rows.
    rcond : float, default=1e-5
        Relative cut-off of the singular values of the centred ``C`` (about
        100 times the float32 resolution).

    Returns
    -------
    W : ndarray of shape (n_concepts, n_features), float32
        The minimum-norm least-squares weight (``numpy.linalg.lstsq`` of the
        centred ``C`` and ``X``, in float64). Singular values of ``C`` under
        ``rcond`` times the largest count as zero: ``C`` is float32, and
        concepts that are linear combinations of others (the directions of a
        multinomial logistic regression sum to zero before normalisation)
        would otherwise get weights that amplify its rounding noise.
    b : ndarray of shape (n_features,), float32
        ``mean(X) - mean(C) @ W``.
    """
    C = np.asarray(C, dtype=np.float64)
    X = np.asarray(X, dtype=np.float64)
    c_mean, x_mean = C.mean(axis=0), X.mean(axis=0)
    W = np.linalg.lstsq(C - c_mean, X - x_mean, rcond=rcond)[0]
    b = x_mean - c_mean @ W
    return W.astype(np.float32), b.astype(np.float32)


class ProbeConcepts(ConceptMixin, BaseEstimator):
    """Supervised concepts: one direction per class (one for two classes).

    ``fit(X, y)`` learns, from activation rows ``X`` and one label per row, a
    direction per class: the direction of that class against the others. With
    two classes there is one direction, pointing to ``classes_[1]``. With
    ``method="linear"`` and a continuous ``y`` there is one direction per
    target column. Each direction is scaled to unit length (``components_``)
    and a concept activation is the projection ``X @ components_.T`` (no
    offset), so it grows with the evidence for the class.

    Labels may come at any granularity with one label per row (a word's label,
    a text's label at ``granularity="sample"``); with per-text labels on unit
    rows (tokens, words), put the probe in a :class:`~skconcepts.PooledConcepts`,
    which gives each unit the label of its text.

    Parameters
    ----------
    method : {"logistic", "mean_diff", "svm", "centroid", "linear"}, \
default="logistic"
        How a direction is learned:

        - ``"logistic"``: ``sklearn.linear_model.LogisticRegression(C=C)``;
          the directions are its ``coef_`` rows (multinomial for more than
          two classes).
        - ``"svm"``: ``sklearn.svm.LinearSVC(C=C)``; its ``coef_`` rows (one
          against the rest for more than two classes).
        - ``"mean_diff"``: the mean of the rows of the class minus the mean of
          the other rows (two classes: ``mean(classes_[1]) -
          mean(classes_[0])``). ``C`` is unused.
        - ``"centroid"``: ``sklearn.neighbors.NearestCentroid``; a class's
          direction is its centroid minus the mean of all rows (two classes:
          centroid 1 minus centroid 0, the direction of ``"mean_diff"``).
          ``C`` is unused.
        - ``"linear"``: regression of a continuous ``y`` (one or several
          columns) with ``sklearn.linear_model.Ridge(alpha=1 / C)``; the
          directions are its ``coef_`` rows.
    C : float, default=1.0
        Inverse regularisation strength of ``"logistic"``, ``"svm"`` and
        ``"linear"`` (``alpha = 1 / C``): larger is less regularised. Tune it
        with ``GridSearchCV`` together with ``method``.
    max_iter : int, default=1000
        Iterations of the ``"logistic"`` and ``"svm"`` solvers.
    max_bytes : int or None, default=None
        Memory budget, in bytes, to load an
        :class:`~skconcepts.ActivationStore` given as ``X`` and of
        ``transform`` of one (``None``: 25% of the RAM available).

    Attributes
    ----------
    components_ : ndarray of shape (n_concepts, n_features)
        The unit-length directions (float32), one per row.
    classes_ : ndarray of shape (n_classes,) or None
        The class labels (``None`` for ``"linear"``). Concept ``j`` is the
        direction of ``classes_[j]``, or of ``classes_[1]`` for two classes.
    estimator_ : estimator or None
        The fitted scikit-learn estimator (``None`` for ``"mean_diff"``).
    n_iter_ : int
        Iterations of the ``"logistic"`` or ``"svm"`` solver (the largest over
        the classes); 1 for the closed forms.
    decoder_weight_ : ndarray of shape (n_concepts, n_features)
        Weight of the affine decoder: ``inverse_transform(C)`` is
        ``C @ decoder_weight_ + decoder_bias_``, the least-squares
        reconstruction of the training rows from their concept activations.
    decoder_bias_ : ndarray of shape (n_features,)
        Offset of the affine decoder.
    n_features_in_ : int
        Number of features seen during ``fit``.
    feature_names_in_ : ndarray of shape (`n_features_in_`,)
        Names of the features seen during ``fit``, when ``X`` has string column
        names.

    See Also
    --------
    NeuronConcepts : The units themselves as concepts (a baseline).
    skconcepts.PooledConcepts : Per-text labels on unit rows.

    Notes
    -----
    The decoder is not the transpose of the directions: the directions need
    not be orthogonal, so ``inverse_transform`` uses the affine map fitted by
    least squares on the training rows (``decoder_weight_``,
    ``decoder_bias_``). With fewer concepts than features it keeps only what
    the concepts say of a row; ``score`` (reconstruction R²) measures how
    much. ``decoder_torch`` returns the same map, differentiable.

    Examples
    --------
    >>> import numpy as np
    >>> from skconcepts import ProbeConcepts
    >>> rng = np.random.default_rng(0)
    >>> X = rng.normal(size=(60, 5)).astype(np.float32)
    >>> y = (X[:, 0] + 0.1 * rng.normal(size=60) > 0).astype(int)
    >>> probe = ProbeConcepts(method="mean_diff").fit(X, y)
    >>> probe.components_.shape, probe.classes_.tolist()
    ((1, 5), [0, 1])
    >>> int(np.argmax(np.abs(probe.components_[0])))
    0
    >>> ProbeConcepts().fit(X, np.arange(60) % 3).transform(X).shape
    (60, 3)
    """

    #: discovery kind: all_estimators(type_filter="supervised") lists it
    _concept_kind = "supervised"
    _parameter_constraints: dict = {
        "method": [StrOptions(set(PROBE_METHODS))],
        "C": [Interval(Real, 0, None, closed="neither")],
        "max_iter": [Interval(Integral, 1, None, closed="left")],
        "max_bytes": [Interval(Integral, 0, None, closed="left"), None],
    }

    def __init__(self, method="logistic", *, C=1.0, max_iter=1000, max_bytes=None):
        self.method = method
        self.C = C
        self.max_iter = max_iter
        self.max_bytes = max_bytes

    # ------------------------------------------------------------------ fit
    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y=None):
        """Learn one direction per class from activations and labels.

        Parameters
        ----------
        X : array-like, torch.Tensor or ActivationStore
            Activations of shape (n_samples, n_features), one row per unit
            (a store is loaded within ``max_bytes``).
        y : array-like of shape (n_samples,) or (n_samples, n_targets)
            One label per row of ``X`` (class labels; continuous targets for
            ``method="linear"``).

        Returns
        -------
        self : object
            The fitted estimator.
        """
        self._fit_source_of(X)  # refuses a stream of batches
        X = self._check_X(X, reset=True)
        self._check_value_range(X)
        X = to_numpy(X, dtype=None)
        y = self._check_y(y, X.shape[0])
        directions = self._fit_directions(X, y)
        norms = np.linalg.norm(directions, axis=1, keepdims=True)
        directions = directions / np.where(norms > 0, norms, 1.0)
        if not np.isfinite(directions).all():
            raise ValueError(
                f"ProbeConcepts(method={self.method!r}) learned non-finite "
                "directions: the activations are too large or badly scaled. "
                "Scale them first, e.g. with "
                "skconcepts.preprocessing.ActivationScaler() in the pipeline."
            )
        self.components_ = np.ascontiguousarray(directions, dtype=np.float32)
        n_iter = getattr(self.estimator_, "n_iter_", None)
        self.n_iter_ = 1 if n_iter is None else int(np.max(n_iter))  # closed: 1
        self._n_features_out = self.components_.shape[0]
        self.decoder_weight_, self.decoder_bias_ = least_squares_decoder(
            self._transform(X), X
        )
        return self

    def fit_transform(self, X, y=None, **fit_params):
        """Fit the directions and return the concept activations of ``X``.

        Parameters
        ----------
        X : array-like, torch.Tensor or ActivationStore
            Activations of shape (n_samples, n_features).
        y : array-like of shape (n_samples,) or (n_samples, n_targets)
            One label per row of ``X``.
        **fit_params : dict
            Unused; accepted for API consistency.

        Returns
        -------
        C : ndarray or torch.Tensor of shape (n_samples, n_concepts)
            Concept activations, float32.
        """
        return self.fit(X, y).transform(X)

    def _check_y(self, y, n_rows):
        name = type(self).__name__
        if y is None:
            raise ValueError(
                f"{name} requires y to be passed, but the target y is None; pass "
                "y with one label per "
                "row of X (for per-text labels on token or word rows, wrap the "
                "probe in skconcepts.PooledConcepts)."
            )
        y = np.asarray(y)
        if y.ndim == 0 or y.shape[0] != n_rows:
            count = 1 if y.ndim == 0 else y.shape[0]
            raise ValueError(
                f"y has {count} labels but X has {n_rows} rows; {name} needs one "
                "label per row of X. For per-text labels on unit rows (tokens, "
                "words, sentences), put the probe in skconcepts.PooledConcepts, "
                "which gives each unit the label of its text; or use "
                "granularity='sample' (one row per text)."
            )
        if self.method == "linear":
            y = np.asarray(y, dtype=np.float64)
            if y.ndim > 2 or not np.isfinite(y).all():
                raise ValueError(
                    f"y of method='linear' must be finite numbers of shape "
                    f"(n_samples,) or (n_samples, n_targets), got shape {y.shape}."
                )
            return y
        y = column_or_1d(y, warn=True)
        kind = type_of_target(y, input_name="y")
        if kind == "unknown":
            raise ValueError(
                f"Unknown label type of y (dtype {y.dtype}): method="
                f"{self.method!r} needs class labels (ints or strings); pass "
                "them, or use method='linear' for continuous numbers."
            )
        if kind not in _CLASSIFICATION_TARGETS:
            raise ValueError(
                f"method={self.method!r} needs class labels, but y is {kind!r}; "
                "pass class labels, or use method='linear' for a continuous y."
            )
        if n_rows < 2:
            raise ValueError(
                f"method={self.method!r} needs at least two classes in y, so at "
                f"least 2 rows, got n_samples = {n_rows}; pass more rows."
            )
        classes = np.unique(y)
        if len(classes) < 2:
            raise ValueError(
                f"method={self.method!r} needs at least two classes in y, got "
                f"one ({classes[0].item()!r}); pass rows of at least two classes "
                "(a direction separates a class from the others)."
            )
        return y

    def _fit_directions(self, X, y):
        """The directions (n_concepts, n_features), before normalisation."""
        method = self.method
        if method == "linear":
            self.classes_ = None
            self.estimator_ = Ridge(alpha=1.0 / self.C).fit(X, y)
            return np.atleast_2d(self.estimator_.coef_)
        self.classes_ = classes = np.unique(y)
        binary = len(classes) == 2
        if method == "logistic":
            self.estimator_ = LogisticRegression(C=self.C, max_iter=self.max_iter)
            return self.estimator_.fit(X, y).coef_
        if method == "svm":
            self.estimator_ = LinearSVC(C=self.C, max_iter=self.max_iter)
            return self.estimator_.fit(X, y).coef_
        X64 = X.astype(np.float64)
        if method == "centroid":
            self.estimator_ = NearestCentroid().fit(X64, y)
            centroids = self.estimator_.centroids_
            if binary:
                return centroids[1:] - centroids[:1]
            return centroids - X64.mean(axis=0)
        # mean_diff
        self.estimator_ = None
        masks = [y == c for c in classes]
        if binary:
            return (X64[masks[1]].mean(axis=0) - X64[masks[0]].mean(axis=0))[None]
        return np.stack([X64[m].mean(axis=0) - X64[~m].mean(axis=0) for m in masks])

    # ------------------------------------------------------------- concepts
    def _transform(self, X):
        return X @ self.components_.T

    def _decoder_weight(self):
        return self.decoder_weight_

    def _decoder_offset(self):
        return self.decoder_bias_

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.required = True
        return tags
