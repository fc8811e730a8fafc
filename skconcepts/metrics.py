"""Quality metrics of concept dictionaries, and sklearn scorers built on them.

Three families:

- reconstruction: :func:`reconstruction_mse`, :func:`fraction_variance_unexplained`,
  :func:`reconstruction_r2` (``X`` against ``inverse_transform(transform(X))``);
- sparsity of the concept activations: :func:`l0_sparsity`, :func:`l1_sparsity`,
  :func:`hoyer_sparsity`, :func:`dead_concept_fraction`;
- the dictionary itself: :func:`dictionary_collinearity` (one fit) and
  :func:`dictionary_stability` (two fits, Hungarian-matched cosine), and
  :func:`dictionary_recovery` (a fit against a known, planted dictionary);
- what the model loses downstream: :func:`downstream_fidelity` reruns the model
  with the split output replaced by its reconstruction (prediction agreement,
  KL divergence, and for a causal LM the cross-entropy loss recovered).

Each metric has a scorer with sklearn's signature ``scorer(estimator, X, y=None)``
that returns a float where higher is better (metrics where lower is better are
negated and named ``neg_*``). :data:`SCORERS` maps names to scorers and
:func:`get_scorer` looks one up. Pass them to model selection as callables, not
as strings (sklearn's own ``scoring="..."`` registry does not know them)::

    from sklearn.model_selection import GridSearchCV
    from skconcepts.metrics import SCORERS, get_scorer

    # one metric
    GridSearchCV(pipe, grid, scoring=get_scorer("reconstruction_r2"))
    # several metrics: refit on the one that picks the model
    GridSearchCV(pipe, grid, scoring=SCORERS, refit="reconstruction_r2")

The scorers accept a concept estimator or a fitted ``Pipeline`` (which is what
``GridSearchCV`` passes when it searches over a pipeline): ``X`` is transformed by
the steps before the last concept estimator of the pipeline (e.g. a
``SplitPointActivations`` and an ``ActivationScaler``), and the metric is computed
in the input space of the concept estimator. The pipeline is taken apart by
:func:`skconcepts._pipeline.split_pipeline`, as everywhere in skconcepts.
"""

from __future__ import annotations

import warnings

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment
from sklearn.base import clone

from skconcepts._pipeline import concept_input, split_pipeline, torch_codec
from skconcepts._rerun import (
    call_output_fn,
    frozen_model,
    model_dtype,
    model_inputs,
    rerun,
    rerun_options,
)
from skconcepts.utils._progress import progress_bar
from skconcepts.utils._stats import r2
from skconcepts.utils._torch import resolve_device, to_numpy
from skconcepts.utils._validation import check_is_fitted, check_texts

__all__ = [
    "reconstruction_mse",
    "fraction_variance_unexplained",
    "reconstruction_r2",
    "l0_sparsity",
    "l1_sparsity",
    "hoyer_sparsity",
    "dead_concept_fraction",
    "dictionary_collinearity",
    "dictionary_stability",
    "dictionary_recovery",
    "SCORERS",
    "get_scorer",
    "make_penalized_r2_scorer",
    "downstream_fidelity",
    "make_fidelity_scorer",
]


# ---------------------------------------------------------------- helpers
def _as_2d(A, name):
    """A float64 2-D numpy array from an array-like or a tensor (any device)."""
    A = to_numpy(A, dtype=np.float64)
    if A.ndim != 2:
        raise ValueError(
            f"{name} must be 2-D (n_rows, n_columns), got an array of shape "
            f"{A.shape}; reshape it, e.g. {name}.reshape(1, -1) for one row."
        )
    return A


def _check_pair(X, X_hat):
    X, X_hat = _as_2d(X, "X"), _as_2d(X_hat, "X_hat")
    if X.shape != X_hat.shape:
        raise ValueError(
            f"X has shape {X.shape} but X_hat has shape {X_hat.shape}; pass the "
            "activations and their reconstruction, e.g. "
            "est.inverse_transform(est.transform(X))."
        )
    return X, X_hat


def _reduce(values, per_row):
    return values if per_row else float(values.mean())


def _unit_rows(D, name):
    D = _as_2d(D, name)
    norms = np.linalg.norm(D, axis=1, keepdims=True)
    if np.any(norms == 0):
        raise ValueError(
            f"{name} has {int(np.sum(norms == 0))} all-zero row(s); the cosine of "
            "a zero concept is undefined. Remove dead concepts first."
        )
    return D / norms


# ----------------------------------------------------------- reconstruction
def reconstruction_mse(X, X_hat):
    """Mean squared reconstruction error over all entries.

    Parameters
    ----------
    X : array-like or torch.Tensor of shape (n_rows, n_features)
        Activations.
    X_hat : array-like or torch.Tensor of shape (n_rows, n_features)
        Their reconstruction, e.g. ``est.inverse_transform(est.transform(X))``.

    Returns
    -------
    mse : float
        ``mean((X - X_hat) ** 2)``.

    Examples
    --------
    >>> from skconcepts.metrics import reconstruction_mse
    >>> reconstruction_mse([[1.0, 2.0]], [[1.0, 0.0]])
    2.0
    """
    X, X_hat = _check_pair(X, X_hat)
    return float(np.mean((X - X_hat) ** 2))


def fraction_variance_unexplained(X, X_hat):
    """Fraction of the variance of ``X`` that the reconstruction misses (FVU).

    The variance is pooled over features around the per-feature mean, as in
    :meth:`ConceptMixin.score <skconcepts.concepts._base.ConceptMixin.score>`.

    Parameters
    ----------
    X : array-like or torch.Tensor of shape (n_rows, n_features)
        Activations.
    X_hat : array-like or torch.Tensor of shape (n_rows, n_features)
        Their reconstruction.

    Returns
    -------
    fvu : float
        ``||X - X_hat||² / ||X - mean(X, axis=0)||²``; 0 for a perfect
        reconstruction, 1 for the per-feature mean. When ``X`` is constant the
        value is 0 if the reconstruction is exact, else 1.

    Examples
    --------
    >>> from skconcepts.metrics import fraction_variance_unexplained
    >>> fraction_variance_unexplained([[0.0], [2.0]], [[0.0], [1.0]])
    0.5
    """
    X, X_hat = _check_pair(X, X_hat)
    resid = np.sum((X - X_hat) ** 2)
    total = np.sum((X - X.mean(axis=0)) ** 2)
    if total == 0:
        return 0.0 if resid == 0 else 1.0
    return float(resid / total)


def reconstruction_r2(X, X_hat):
    """Reconstruction R², i.e. ``1 - fraction_variance_unexplained(X, X_hat)``.

    Parameters
    ----------
    X : array-like or torch.Tensor of shape (n_rows, n_features)
        Activations.
    X_hat : array-like or torch.Tensor of shape (n_rows, n_features)
        Their reconstruction.

    Returns
    -------
    r2 : float
        1 for a perfect reconstruction; can be negative.

    Examples
    --------
    >>> from skconcepts.metrics import reconstruction_r2
    >>> reconstruction_r2([[0.0], [2.0]], [[0.0], [1.0]])
    0.5
    """
    return r2(*_check_pair(X, X_hat))


# ----------------------------------------------------------------- sparsity
def l0_sparsity(C, *, tol=0.0, per_row=False):
    """Number of active concepts per row (L0 "norm"), averaged over rows.

    Parameters
    ----------
    C : array-like or torch.Tensor of shape (n_rows, n_concepts)
        Concept activations, e.g. ``est.transform(X)``.
    tol : float, default=0.0
        A concept is active in a row when ``|C| > tol``.
    per_row : bool, default=False
        Return the count of every row instead of the mean.

    Returns
    -------
    l0 : float or ndarray of shape (n_rows,)
        Mean (or per-row) number of active concepts.

    Examples
    --------
    >>> from skconcepts.metrics import l0_sparsity
    >>> l0_sparsity([[1.0, 0.0, 2.0], [0.0, 0.0, 3.0]])
    1.5
    """
    C = _as_2d(C, "C")
    return _reduce(np.sum(np.abs(C) > tol, axis=1).astype(np.float64), per_row)


def l1_sparsity(C, *, per_row=False):
    """L1 norm of the concept activations of each row, averaged over rows.

    Parameters
    ----------
    C : array-like or torch.Tensor of shape (n_rows, n_concepts)
        Concept activations.
    per_row : bool, default=False
        Return the norm of every row instead of the mean.

    Returns
    -------
    l1 : float or ndarray of shape (n_rows,)
        Mean (or per-row) ``sum(|C|, axis=1)``.

    Examples
    --------
    >>> from skconcepts.metrics import l1_sparsity
    >>> l1_sparsity([[1.0, -1.0], [0.0, 2.0]])
    2.0
    """
    C = _as_2d(C, "C")
    return _reduce(np.sum(np.abs(C), axis=1), per_row)


def hoyer_sparsity(C, *, per_row=False):
    """Hoyer sparsity of each row, averaged over rows (1: one active concept).

    ``(sqrt(k) - ||c||_1 / ||c||_2) / (sqrt(k) - 1)`` for a row ``c`` of ``k``
    concepts: 1 when one concept is active, 0 when all are equally active. A row
    with no active concept counts as 1.

    Parameters
    ----------
    C : array-like or torch.Tensor of shape (n_rows, n_concepts)
        Concept activations, with ``n_concepts >= 2``.
    per_row : bool, default=False
        Return the score of every row instead of the mean.

    Returns
    -------
    hoyer : float or ndarray of shape (n_rows,)
        Mean (or per-row) Hoyer sparsity, in [0, 1].

    Examples
    --------
    >>> from skconcepts.metrics import hoyer_sparsity
    >>> hoyer_sparsity([[0.0, 3.0], [1.0, 1.0]])
    0.5
    """
    C = _as_2d(C, "C")
    k = C.shape[1]
    if k < 2:
        raise ValueError(
            f"hoyer_sparsity needs at least 2 concepts, got C with {k} column; "
            "use l0_sparsity for a single concept."
        )
    l1 = np.sum(np.abs(C), axis=1)
    l2 = np.linalg.norm(C, axis=1)
    ratio = np.divide(l1, l2, out=np.ones_like(l1), where=l2 > 0)
    return _reduce((np.sqrt(k) - ratio) / (np.sqrt(k) - 1), per_row)


def dead_concept_fraction(C, *, tol=0.0):
    """Fraction of concepts that are never active on ``C``'s rows.

    Parameters
    ----------
    C : array-like or torch.Tensor of shape (n_rows, n_concepts)
        Concept activations.
    tol : float, default=0.0
        A concept is active in a row when ``|C| > tol``.

    Returns
    -------
    fraction : float
        Number of columns with ``|C| <= tol`` on every row, over ``n_concepts``.

    Examples
    --------
    >>> from skconcepts.metrics import dead_concept_fraction
    >>> dead_concept_fraction([[1.0, 0.0, 0.0, 0.0], [2.0, 0.5, 0.0, 0.0]])
    0.5
    """
    C = _as_2d(C, "C")
    return float(np.mean(np.all(np.abs(C) <= tol, axis=0)))


# --------------------------------------------------------------- dictionary
def dictionary_collinearity(D, *, absolute=True):
    """Largest cosine between two different concepts of a dictionary.

    Parameters
    ----------
    D : array-like or torch.Tensor of shape (n_concepts, n_features)
        The dictionary, e.g. ``est.components_``; ``n_concepts >= 2``.
    absolute : bool, default=True
        Take ``|cos|``, so that opposite directions also count as collinear.

    Returns
    -------
    collinearity : float
        Maximum off-diagonal (absolute) cosine; 0 for orthogonal concepts, 1 when
        two concepts are parallel.

    Examples
    --------
    >>> from skconcepts.metrics import dictionary_collinearity
    >>> round(dictionary_collinearity([[1.0, 0.0], [1.0, 1.0], [0.0, -1.0]]), 4)
    0.7071
    """
    U = _unit_rows(D, "D")
    if U.shape[0] < 2:
        raise ValueError(
            f"dictionary_collinearity needs at least 2 concepts, got D with "
            f"{U.shape[0]} row."
        )
    cos = U @ U.T
    if absolute:
        cos = np.abs(cos)
    np.fill_diagonal(cos, -np.inf)
    return float(cos.max())


def dictionary_stability(D1, D2, *, absolute=True, return_matching=False):
    """Mean cosine of two dictionaries' concepts after the best one-to-one matching.

    Concepts of ``D1`` and ``D2`` (e.g. two fits with different seeds or on two
    halves of the data) are paired by the Hungarian algorithm
    (:func:`scipy.optimize.linear_sum_assignment`) to maximise the summed cosine.

    Parameters
    ----------
    D1 : array-like or torch.Tensor of shape (n_concepts_1, n_features)
        First dictionary.
    D2 : array-like or torch.Tensor of shape (n_concepts_2, n_features)
        Second dictionary; the number of concepts may differ, then
        ``min(n_concepts_1, n_concepts_2)`` pairs are matched.
    absolute : bool, default=True
        Match on ``|cos|``: methods such as PCA or ICA fix a concept only up to
        its sign.
    return_matching : bool, default=False
        Also return the matched indices.

    Returns
    -------
    stability : float
        Mean matched (absolute) cosine, 1 when the dictionaries agree up to a
        permutation (and signs).
    rows, cols : ndarray of int
        Only with ``return_matching=True``: concept ``rows[i]`` of ``D1`` is
        matched with concept ``cols[i]`` of ``D2``.

    Examples
    --------
    >>> from skconcepts.metrics import dictionary_stability
    >>> dictionary_stability([[1.0, 0.0], [0.0, 1.0]], [[0.0, -2.0], [3.0, 0.0]])
    1.0
    """
    matched, rows, cols = _matched_cosines(D1, D2, "D1", "D2", absolute)
    value = float(matched.mean())
    return (value, rows, cols) if return_matching else value


def _matched_cosines(D1, D2, name1, name2, absolute):
    """Hungarian matching of the rows of two dictionaries by (absolute) cosine.

    Returns the matched cosines and the matched row indices of each dictionary
    (``min(n_rows_1, n_rows_2)`` pairs).
    """
    U1, U2 = _unit_rows(D1, name1), _unit_rows(D2, name2)
    if U1.shape[1] != U2.shape[1]:
        raise ValueError(
            f"{name1} has {U1.shape[1]} features but {name2} has {U2.shape[1]}; "
            "compare dictionaries fitted on the same activations."
        )
    cos = U1 @ U2.T
    if absolute:
        cos = np.abs(cos)
    rows, cols = linear_sum_assignment(cos, maximize=True)
    return cos[rows, cols], rows, cols


def dictionary_recovery(true, learned, *, absolute=True):
    """How well a learned dictionary recovers a known (planted) one.

    Each concept of ``true`` is matched to a distinct concept of ``learned`` by
    the Hungarian algorithm (:func:`scipy.optimize.linear_sum_assignment`) on
    their cosines, as in :func:`dictionary_stability`; the score is the mean
    matched cosine over the rows of ``true`` (the mean correlation coefficient,
    MCC, of the dictionary-learning literature). ``learned`` may have more
    concepts (an over-complete fit): its extra concepts are ignored. If it has
    fewer, the unmatched true concepts count as 0, so the score cannot reach 1.

    Parameters
    ----------
    true : array-like or torch.Tensor of shape (n_true_concepts, n_features)
        The planted dictionary, e.g. the third output of
        :func:`skconcepts.datasets.make_concept_activations`.
    learned : array-like or torch.Tensor of shape (n_concepts, n_features)
        The fitted dictionary, e.g. ``est.components_``.
    absolute : bool, default=True
        Match on ``|cos|``: methods such as PCA or ICA fix a concept only up to
        its sign.

    Returns
    -------
    recovery : float
        Mean matched (absolute) cosine over the true concepts, in ``[0, 1]``
        with ``absolute=True``; 1 when every true concept is found exactly (up
        to scale, and sign with ``absolute=True``).

    See Also
    --------
    dictionary_stability : The same matching between two fits.
    skconcepts.datasets.make_concept_activations : Data with a planted dictionary.

    Examples
    --------
    >>> from skconcepts.metrics import dictionary_recovery
    >>> true = [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]
    >>> learned = [[0.0, 0.0, 1.0], [0.0, 2.0, 0.0], [3.0, 0.0, 0.0]]
    >>> dictionary_recovery(true, learned)
    1.0
    >>> dictionary_recovery(true, [[0.0, 1.0, 0.0]])
    0.5
    """
    matched, _, _ = _matched_cosines(true, learned, "true", "learned", absolute)
    n_true = _as_2d(true, "true").shape[0]
    return float(matched.sum() / n_true)


# ------------------------------------------------------------------ scorers
def _concept_input(estimator, X):
    """(concept estimator, X transformed by the steps before it)."""
    parts = split_pipeline(estimator)
    return parts.concepts, concept_input(parts, X)


def _reconstruct(estimator, X):
    est, Xc = _concept_input(estimator, X)
    C = est.transform(Xc)
    return est, Xc, C, est.inverse_transform(C)


class _ConceptScorer:
    """``scorer(estimator, X, y=None) -> float``, higher is better."""

    def __init__(self, name, metric, sign, needs):
        self.name = name
        self._metric = metric
        self._sign = sign
        self._needs = needs

    def __call__(self, estimator, X, y=None):
        if self._needs == "reconstruction":
            _, Xc, _, X_hat = _reconstruct(estimator, X)
            value = self._metric(Xc, X_hat)
        elif self._needs == "codes":
            est, Xc = _concept_input(estimator, X)
            value = self._metric(est.transform(Xc))
        elif self._needs == "dictionary":
            est = split_pipeline(estimator).concepts
            value = self._metric(est.components_)
        else:  # "refit"
            est, Xc = _concept_input(estimator, X)
            value = self._metric(est, Xc)
        return self._sign * value

    def __repr__(self):
        return f"skconcepts.metrics.get_scorer({self.name!r})"


def _refit_stability(est, X):
    """Stability of ``est`` against a clone refitted on ``X`` with another seed."""
    other = clone(est)
    if "random_state" in other.get_params():
        seed = est.get_params()["random_state"]
        seed = 0 if seed is None or not isinstance(seed, (int, np.integer)) else seed
        other.set_params(random_state=int(seed) + 1)
    other.fit(X)
    return dictionary_stability(est.components_, other.components_)


class _PenalizedR2:
    """Held-out R² minus ``min_gain`` per concept (see make_penalized_r2_scorer)."""

    def __init__(self, min_gain):
        self.min_gain = min_gain

    def __call__(self, estimator, X, y=None):
        est, Xc, _, X_hat = _reconstruct(estimator, X)
        n_concepts = np.asarray(est.components_).shape[0]
        return reconstruction_r2(Xc, X_hat) - self.min_gain * n_concepts

    def __repr__(self):
        name = "skconcepts.metrics.make_penalized_r2_scorer"
        return f"{name}(min_gain={self.min_gain!r})"


def make_penalized_r2_scorer(min_gain=0.01):
    """A scorer that makes each concept earn its place: R² − ``min_gain`` × k.

    The reconstruction R² on held-out rows grows with the number of concepts
    ``k`` (a larger dictionary never reconstructs worse), so a grid search on
    R² alone always picks the largest ``n_concepts`` of the grid. This scorer
    subtracts ``min_gain`` per concept: a concept is worth keeping only when it
    explains at least ``min_gain`` of the held-out variance. With R² concave in
    ``k`` (the usual case: each new concept explains less than the previous
    one) the score has one maximum, at the ``k`` where the last concept's gain
    falls to ``min_gain``, so ``GridSearchCV`` picks an interior value of a grid
    that brackets it. On a planted dictionary (see
    :func:`skconcepts.datasets.make_concept_activations`) it picks the planted
    size; on real activations the choice follows ``min_gain``: a larger value
    gives fewer, broader concepts.

    Parameters
    ----------
    min_gain : float, default=0.01
        The share of the held-out variance (in R² units, in [0, 1)) a concept
        must explain to be worth keeping. ``0.01`` (1 % per concept) is the
        default; ``1 / n_features`` is Kaiser's rule (keep a concept that
        explains more than an average feature direction), which keeps more.

    Returns
    -------
    scorer : callable
        ``scorer(estimator, X, y=None) -> float``, higher is better: the
        reconstruction R² of ``X`` through the concept estimator (or the
        concept estimator of a ``Pipeline``, on ``X`` transformed by the steps
        before it) minus ``min_gain * n_concepts``, with ``n_concepts`` the
        number of rows of ``components_``.

    See Also
    --------
    get_scorer : ``get_scorer("penalized_r2")`` is this scorer with the default
        ``min_gain``.

    Examples
    --------
    >>> from sklearn.model_selection import GridSearchCV
    >>> from skconcepts import NMFConcepts
    >>> from skconcepts.datasets import make_concept_activations
    >>> from skconcepts.metrics import make_penalized_r2_scorer
    >>> X, _, _ = make_concept_activations(400, 32, 5, sparsity=0.3, random_state=0)
    >>> search = GridSearchCV(
    ...     NMFConcepts(random_state=0),
    ...     {"n_concepts": [2, 5, 10, 20]},
    ...     scoring=make_penalized_r2_scorer(min_gain=0.01),
    ...     cv=3,
    ... ).fit(X)
    >>> search.best_params_
    {'n_concepts': 5}
    """
    if (
        isinstance(min_gain, bool)
        or not isinstance(min_gain, (int, float, np.integer, np.floating))
        or not 0 <= float(min_gain) < 1
    ):
        raise ValueError(
            f"min_gain={min_gain!r} must be a float in [0, 1): the share of the "
            "held-out variance a concept must explain, e.g. min_gain=0.01."
        )
    return _PenalizedR2(float(min_gain))


#: name -> scorer ``(estimator, X, y=None) -> float`` (higher is better)
SCORERS = {
    "reconstruction_r2": _ConceptScorer(
        "reconstruction_r2", reconstruction_r2, 1.0, "reconstruction"
    ),
    "neg_reconstruction_mse": _ConceptScorer(
        "neg_reconstruction_mse", reconstruction_mse, -1.0, "reconstruction"
    ),
    "neg_fraction_variance_unexplained": _ConceptScorer(
        "neg_fraction_variance_unexplained",
        fraction_variance_unexplained,
        -1.0,
        "reconstruction",
    ),
    "neg_l0_sparsity": _ConceptScorer("neg_l0_sparsity", l0_sparsity, -1.0, "codes"),
    "neg_l1_sparsity": _ConceptScorer("neg_l1_sparsity", l1_sparsity, -1.0, "codes"),
    "hoyer_sparsity": _ConceptScorer("hoyer_sparsity", hoyer_sparsity, 1.0, "codes"),
    "neg_dead_concept_fraction": _ConceptScorer(
        "neg_dead_concept_fraction", dead_concept_fraction, -1.0, "codes"
    ),
    "neg_dictionary_collinearity": _ConceptScorer(
        "neg_dictionary_collinearity", dictionary_collinearity, -1.0, "dictionary"
    ),
    "dictionary_stability": _ConceptScorer(
        "dictionary_stability", _refit_stability, 1.0, "refit"
    ),
    "penalized_r2": make_penalized_r2_scorer(),
}
SCORERS["dictionary_stability"].__doc__ = (
    "Refits a clone of the concept estimator on the scored X with random_state + 1 "
    "and returns dictionary_stability of the two dictionaries (one extra fit)."
)


def get_scorer(name):
    """Return the skconcepts scorer called ``name``.

    Parameters
    ----------
    name : str
        One of the keys of :data:`SCORERS`: ``"reconstruction_r2"``,
        ``"neg_reconstruction_mse"``, ``"neg_fraction_variance_unexplained"``,
        ``"neg_l0_sparsity"``, ``"neg_l1_sparsity"``, ``"hoyer_sparsity"``,
        ``"neg_dead_concept_fraction"``, ``"neg_dictionary_collinearity"``,
        ``"dictionary_stability"`` (refits a clone with ``random_state + 1``
        on the scored data and compares the dictionaries), ``"penalized_r2"``
        (R² minus 0.01 per concept, see :func:`make_penalized_r2_scorer`: the
        one to choose ``n_concepts`` with, since R² alone always prefers the
        largest).

    Returns
    -------
    scorer : callable
        ``scorer(estimator, X, y=None) -> float``, higher is better; pass it as
        ``scoring=`` to ``GridSearchCV`` or ``cross_validate``. ``estimator`` may
        be a concept estimator or a ``Pipeline`` that contains one.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn.base import BaseEstimator
    >>> from skconcepts.concepts._base import ConceptMixin
    >>> from skconcepts.metrics import get_scorer
    >>> class Identity(ConceptMixin, BaseEstimator):
    ...     def __init__(self, n_concepts=2):
    ...         self.n_concepts = n_concepts
    ...     def _fit(self, X):
    ...         self.components_ = np.eye(X.shape[1], dtype=np.float32)
    ...     def _transform(self, X):
    ...         return X
    >>> X = np.array([[1.0, 0.0], [0.0, 2.0]])
    >>> get_scorer("reconstruction_r2")(Identity().fit(X), X)
    1.0
    >>> get_scorer("neg_l0_sparsity")(Identity().fit(X), X)
    -1.0
    """
    try:
        return SCORERS[name]
    except (KeyError, TypeError):
        raise ValueError(
            f"{name!r} is not a skconcepts scorer; use one of {sorted(SCORERS)}."
        ) from None


# ------------------------------------------------------- downstream fidelity
def downstream_fidelity(
    pipeline,
    texts,
    *,
    output_fn=None,
    exclude_special_tokens=None,
    batch_size=None,
    device=None,
    progress=None,
):
    """What the model loses when the split output is replaced by its reconstruction.

    The model of the pipeline's ``SplitPointActivations`` is run three ways on
    every batch of texts: as it is; with the output ``h`` of the split module
    replaced by its reconstruction ``t⁻¹(t(h))`` through the fitted concepts,
    *without* the residual (unlike attribution, which keeps it); and with ``h``
    replaced by zeros (zero ablation). The outputs are then compared:

    - a classification head (logits of shape (batch, n_classes)), or an
      ``output_fn``: the share of texts whose predicted class is unchanged
      (``agreement``) and the mean KL divergence of the class distributions,
      ``KL(p_original || p_reconstruction)`` (``kl_divergence``);
    - a causal language model (logits of shape (batch, seq, vocab)): the
      next-token cross-entropy of the texts' own tokens under the three runs
      and the **cross-entropy loss recovered**, as SAELens and SAEBench define
      it, ``(CE_zero − CE_reconstruction) / (CE_zero − CE_original)`` (1: the
      reconstruction loses nothing; 0: it is as bad as zeros), plus the
      agreement and KL divergence of the next-token distributions, per token.

    Parameters
    ----------
    pipeline : Pipeline
        A fitted pipeline that starts with a ``SplitPointActivations`` (whose
        ``model_`` has the head whose outputs are compared) and contains a
        concept estimator, with optional preprocessing steps between them.
    texts : list of str
        The texts to evaluate on.
    output_fn : callable or None, default=None
        ``output_fn(outputs) -> Tensor of shape (batch, n_outputs)`` treated as
        logits, for heads other than the two above (e.g.
        :func:`skconcepts.attribution.classifier_output_fn` for a bare encoder).
        One output column is the logit of a binary classifier.
    exclude_special_tokens : bool or None, default=None
        Keep the original ``h`` at special-token positions ([CLS], [SEP], BOS),
        which the dictionary was not fitted on, in both the reconstruction and
        the zero-ablation runs; ``None`` follows the extractor's
        ``exclude_special_tokens``. Padding positions always keep ``h``.
    batch_size : int or None, default=None
        Texts per forward pass; ``None`` takes the extractor's ``batch_size``.
    device : str, torch.device or None, default=None
        Where to run; ``None`` is the extractor's device.
    progress : bool or None, default=None
        Show a tqdm bar over the batches; ``None`` shows it only on an
        interactive terminal or notebook.

    Returns
    -------
    fidelity : dict of str to float
        ``agreement`` and ``kl_divergence`` always; with a causal LM head also
        ``ce_original``, ``ce_reconstruction``, ``ce_zero_ablation`` (mean
        next-token cross-entropy in nats over the texts' tokens) and
        ``ce_loss_recovered``; ``n_texts`` and ``n_predictions`` (texts, or
        predicted tokens of a causal LM).

    Raises
    ------
    TypeError
        If the pipeline does not start with a ``SplitPointActivations``.
    ValueError
        If the model's outputs have no logits and no ``output_fn`` is given.

    Warns
    -----
    UserWarning
        When the extractor's granularity is ``"sample"`` or ``"cls"``: the
        dictionary was fitted on one row per text but the rerun encodes every
        token position, so the figures describe a use it was not fitted for.

    Notes
    -----
    The splice encodes every token position through the estimator's public
    ``transform``; dictionaries fitted at ``token`` (or ``word``) granularity
    are the ones this measures meaningfully.

    Examples
    --------
    >>> from sklearn.pipeline import make_pipeline
    >>> from skconcepts import PCAConcepts, SplitPointActivations
    >>> from skconcepts.metrics import downstream_fidelity
    >>> from skconcepts.utils._testing import make_tiny_model
    >>> model, tokenizer = make_tiny_model("gpt2", head="causal_lm")
    >>> texts = ["the cat sat on the mat and looked at the dog in the garden",
    ...          "a dog ran in the park after the ball and then came home",
    ...          "we won the match in the last minute of the second half"]
    >>> pipe = make_pipeline(
    ...     SplitPointActivations(model, tokenizer=tokenizer, split_point=1),
    ...     PCAConcepts(n_concepts=32),   # all 32 directions: exact
    ... ).fit(texts)
    >>> fid = downstream_fidelity(pipe, texts)
    >>> round(fid["ce_loss_recovered"], 3), fid["agreement"]
    (1.0, 1.0)
    """
    texts = check_texts(texts, name="texts")
    parts = split_pipeline(pipeline)
    extractor = parts.extractor
    if extractor is None:
        raise TypeError(
            "pipeline must start with a fitted SplitPointActivations (its model "
            "is rerun); pass the whole fitted pipeline, e.g. make_pipeline("
            "SplitPointActivations(...), SemiNMFConcepts(...)).fit(texts)."
        )
    check_is_fitted(extractor)
    if extractor.granularity in ("sample", "cls"):
        warnings.warn(
            f"The dictionary was fitted on granularity={extractor.granularity!r} "
            "rows (one per text) but downstream_fidelity encodes every token "
            "position; fit it at token or word granularity to measure fidelity.",
            UserWarning,
            stacklevel=2,
        )
    if output_fn is not None and not callable(output_fn):
        raise TypeError(
            f"output_fn must be a callable or None, got {type(output_fn).__name__}."
        )
    _, _, batch_size = rerun_options(extractor, batch_size=batch_size)
    exclude = (
        extractor.exclude_special_tokens
        if exclude_special_tokens is None
        else bool(exclude_special_tokens)
    )
    model = extractor.model_
    module = model.get_submodule(extractor.split_module_name_)
    device = extractor.device_ if device is None else resolve_device(device)
    encode, decode = torch_codec(parts, device, model_dtype(model))

    totals = _FidelityTotals()
    starts = range(0, len(texts), batch_size)
    bar = progress_bar(
        starts, progress=progress, desc="downstream_fidelity", unit="batch"
    )
    with frozen_model(model, device), torch.no_grad():
        for start in bar:
            chunk = texts[start : start + batch_size]
            encodings, inputs = model_inputs(extractor, chunk, device, start=start)
            keep = inputs["attention_mask"] == 0  # (B, T): padding keeps h
            if exclude:
                special = torch.zeros_like(keep)
                for row, enc in enumerate(encodings):
                    mask = torch.as_tensor(enc.special_tokens_mask, dtype=torch.bool)
                    special[row, : len(mask)] = mask
                keep = keep | special
            keep = keep[..., None]  # (B, T, 1)

            def reconstruct(h, keep=keep):
                return torch.where(keep, h, decode(encode(h)).to(h.dtype))

            def zero(h, keep=keep):
                return torch.where(keep, h, torch.zeros_like(h))

            runs = [
                _logits(
                    rerun(model, module, inputs, fn, use_cache=False), inputs, output_fn
                )
                for fn in (lambda h: h, reconstruct, zero)
            ]
            totals.add(*runs, inputs)
    return totals.result(len(texts))


def _logits(outputs, inputs, output_fn):
    """(batch, n) logits of a classifier / output_fn, or (batch, seq, vocab)."""
    if output_fn is not None:
        logits = call_output_fn(output_fn, outputs, inputs)
        if not isinstance(logits, torch.Tensor) or logits.ndim != 2:
            raise ValueError(
                "output_fn must return a tensor of shape (batch, n_outputs), got "
                f"{getattr(logits, 'shape', type(logits).__name__)}."
            )
    else:
        logits = getattr(outputs, "logits", None)
        if logits is None:
            raise ValueError(
                f"The outputs of this model ({type(outputs).__name__}) have no "
                "logits, e.g. a bare encoder; pass output_fn, e.g. "
                "skconcepts.attribution.classifier_output_fn(classifier)."
            )
    logits = logits.double()
    if logits.ndim == 2 and logits.shape[1] == 1:  # one binary logit
        logits = torch.cat([torch.zeros_like(logits), logits], dim=1)
    return logits


class _FidelityTotals:
    """Running sums of agreement, KL and cross-entropies over batches."""

    def __init__(self):
        self.n = 0
        self.agree = 0.0
        self.kl = 0.0
        self.ce = None  # [original, reconstruction, zero] sums of token CE

    def add(self, original, recon, zero, inputs):
        if original.ndim == 3:  # causal LM: predict token i+1 at position i
            mask = inputs["attention_mask"]
            valid = (mask[:, 1:] * mask[:, :-1]).bool()  # (B, T-1)
            targets = inputs["input_ids"][:, 1:][valid]  # (N,)
            original, recon, zero = (x[:, :-1][valid] for x in (original, recon, zero))
            ce = [
                torch.nn.functional.cross_entropy(x, targets, reduction="sum").item()
                for x in (original, recon, zero)
            ]
            self.ce = ce if self.ce is None else [a + b for a, b in zip(self.ce, ce)]
        log_p = torch.log_softmax(original, dim=-1)
        log_q = torch.log_softmax(recon, dim=-1)
        self.kl += (log_p.exp() * (log_p - log_q)).sum(dim=-1).sum().item()
        self.agree += (original.argmax(-1) == recon.argmax(-1)).sum().item()
        self.n += original.shape[0]

    def result(self, n_texts):
        n = max(self.n, 1)
        out = {
            "agreement": self.agree / n,
            "kl_divergence": self.kl / n,
            "n_texts": n_texts,
            "n_predictions": self.n,
        }
        if self.ce is not None:
            ce_orig, ce_recon, ce_zero = (c / n for c in self.ce)
            gap = ce_zero - ce_orig
            out.update(
                ce_original=ce_orig,
                ce_reconstruction=ce_recon,
                ce_zero_ablation=ce_zero,
                ce_loss_recovered=(ce_zero - ce_recon) / gap if gap != 0 else np.nan,
            )
        return out


_FIDELITY_METRICS = {
    "ce_loss_recovered": 1.0,
    "agreement": 1.0,
    "neg_kl_divergence": -1.0,
}


class _FidelityScorer:
    def __init__(self, metric, kwargs):
        self.metric = metric
        self.kwargs = kwargs

    def __call__(self, estimator, X, y=None):
        key = self.metric.removeprefix("neg_")
        value = downstream_fidelity(estimator, X, **self.kwargs)
        if key not in value:
            raise ValueError(
                f"metric={self.metric!r} needs a causal language-model head; this "
                f"model gives {sorted(value)}; use 'agreement' or "
                "'neg_kl_divergence'."
            )
        return _FIDELITY_METRICS[self.metric] * value[key]

    def __repr__(self):
        return f"skconcepts.metrics.make_fidelity_scorer({self.metric!r})"


def make_fidelity_scorer(metric="agreement", **kwargs):
    """A scorer of :func:`downstream_fidelity` for ``GridSearchCV``.

    Parameters
    ----------
    metric : {"agreement", "neg_kl_divergence", "ce_loss_recovered"}, \
default="agreement"
        What to score, higher is better (the KL divergence is negated).
        ``"ce_loss_recovered"`` needs a causal language-model head.
    **kwargs
        Passed to :func:`downstream_fidelity` (``output_fn``, ``batch_size``,
        ``exclude_special_tokens``, ``device``, ``progress``).

    Returns
    -------
    scorer : callable
        ``scorer(pipeline, texts, y=None) -> float``, for a search over a
        pipeline that starts from texts with a ``SplitPointActivations``.

    Examples
    --------
    >>> from sklearn.pipeline import make_pipeline
    >>> from skconcepts import PCAConcepts, SplitPointActivations
    >>> from skconcepts.metrics import make_fidelity_scorer
    >>> from skconcepts.utils._testing import make_tiny_model
    >>> model, tokenizer = make_tiny_model("gpt2", head="causal_lm")
    >>> texts = ["the cat sat on the mat and looked at the dog in the garden",
    ...          "a dog ran in the park after the ball and then came home",
    ...          "we won the match in the last minute of the second half"]
    >>> pipe = make_pipeline(
    ...     SplitPointActivations(model, tokenizer=tokenizer, split_point=1),
    ...     PCAConcepts(n_concepts=32),
    ... ).fit(texts)
    >>> scorer = make_fidelity_scorer("ce_loss_recovered")
    >>> round(scorer(pipe, texts), 3)
    1.0
    """
    if metric not in _FIDELITY_METRICS:
        raise ValueError(
            f"metric={metric!r} is not one of {sorted(_FIDELITY_METRICS)}."
        )
    return _FidelityScorer(metric, kwargs)
