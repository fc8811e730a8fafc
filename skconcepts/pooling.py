"""Unit-level concepts pooled into one row per text, for tabular models."""

from __future__ import annotations

import numpy as np
import torch
from sklearn.base import BaseEstimator, TransformerMixin, _fit_context, clone
from sklearn.utils import get_tags
from sklearn.utils._param_validation import HasMethods, StrOptions

from skconcepts.utils._torch import to_numpy
from skconcepts.utils._validation import check_is_fitted, check_texts

__all__ = ["PooledConcepts"]

POOLINGS = ("max", "mean", "sum")


class PooledConcepts(TransformerMixin, BaseEstimator):
    """Texts -> each text's unit-level concept activations pooled into one row.

    A meta-transformer: ``extractor`` turns texts into activation rows of units
    (tokens, words, sentences), ``estimator`` learns concepts on the unit rows
    of the training texts, and :meth:`transform` pools every concept over the
    units of each text (maximum, mean or sum). The output, one row per text, is
    the input of any tabular model: ``PooledConcepts`` followed by
    ``LogisticRegression`` is a concept bottleneck classifier.

    In a ``GridSearchCV`` over ``estimator__n_concepts`` (or any parameter of
    ``estimator``), every candidate and fold refits the concepts, while the
    extractor's cache, shared by its clones, runs the model once per distinct
    text.

    Parameters
    ----------
    extractor : SplitPointActivations
        Turns texts into unit rows (use a unit granularity such as ``"word"``
        or ``"token"``; at ``"sample"`` level pooling changes nothing).
        ``fit`` works on a clone, which shares the loaded model and the
        activation cache with ``extractor``; its ``progress`` setting is kept.
    estimator : estimator
        A concept estimator, or a ``Pipeline`` of preprocessing steps and a
        concept estimator (as ``skconcepts fit`` saves it after its
        ``"activations"`` step), fitted on the unit rows. ``fit`` fits a clone.
    pooling : {"max", "mean", "sum"}, default="max"
        How the unit rows of a text are combined, concept by concept. A text
        without units (e.g. an empty string at word level) gets zeros.

    Attributes
    ----------
    extractor_ : SplitPointActivations
        The fitted clone of ``extractor``.
    estimator_ : estimator
        The fitted clone of ``estimator``.

    See Also
    --------
    skconcepts.SplitPointActivations : The unit rows of the texts.
    skconcepts.linear_concept_importance : Importance of the pooled concepts
        for a linear classifier fitted on them.

    Examples
    --------
    >>> from sklearn.linear_model import LogisticRegression
    >>> from sklearn.pipeline import Pipeline
    >>> from skconcepts import PCAConcepts, PooledConcepts, SplitPointActivations
    >>> words = SplitPointActivations(split_point=1, granularity="word")
    >>> pooled = PooledConcepts(words, PCAConcepts(n_concepts=2))
    >>> texts = ["a lovely film", "what a bore", "lovely music", "dull and long"]
    >>> pooled.fit_transform(texts).shape
    (4, 2)
    >>> pooled.get_feature_names_out().tolist()
    ['concept0', 'concept1']
    >>> clf = Pipeline([("concepts", pooled), ("clf", LogisticRegression())])
    >>> clf.fit(texts, [1, 0, 1, 0]).predict(["lovely"]).shape
    (1,)
    """

    _parameter_constraints: dict = {
        "extractor": [HasMethods(["fit", "iter_batches"])],
        "estimator": [HasMethods(["fit", "transform"])],
        "pooling": [StrOptions(set(POOLINGS))],
    }

    def __init__(self, extractor, estimator, *, pooling="max"):
        self.extractor = extractor
        self.estimator = estimator
        self.pooling = pooling

    @_fit_context(prefer_skip_nested_validation=False)
    def fit(self, X, y=None):
        """Fit ``estimator`` on the unit rows of the texts.

        Parameters
        ----------
        X : list of str
            The texts.
        y : array-like of shape (n_texts,) or None, default=None
            One label per text. A supervised ``estimator`` (one whose fit
            needs ``y``, such as :class:`~skconcepts.ProbeConcepts`) learns
            from the unit rows, each with the label of its text; an
            unsupervised one ignores ``y`` (a ``Pipeline`` passes it on to
            a later step, e.g. the classifier).

        Returns
        -------
        self : object
            The fitted transformer.
        """
        texts = check_texts(X, name="X")
        estimator = clone(self.estimator)
        supervised = _needs_y(estimator)
        if supervised:
            y = _check_text_labels(y, len(texts), estimator)
        self.extractor_ = clone(self.extractor).fit()
        A = self.extractor_.transform(texts)  # unit rows; y is per text
        y_units = None
        if supervised:  # each unit row gets the label of its text
            y_units = y[self.extractor_.units(texts)["sample"].to_numpy()]
        self.estimator_ = estimator.fit(A, y_units)
        return self

    def transform(self, X):
        """Pool every concept over the units of each text.

        Parameters
        ----------
        X : list of str
            The texts.

        Returns
        -------
        X_out : ndarray of shape (n_texts, n_concepts), dtype float32
            Row ``i``: the ``pooling`` of the concept activations of the units
            of ``X[i]`` (zeros if it has none).
        """
        check_is_fitted(self)
        texts = check_texts(X, name="X")
        n_concepts = len(self.get_feature_names_out())
        out = np.zeros((len(texts), n_concepts), dtype=np.float32)
        # chunk by chunk: the activations of the whole corpus are never held
        for indices, rows, _ in self.extractor_.iter_batches(texts):
            counts = np.array([len(r) for r in rows], dtype=np.int64)
            if counts.sum() == 0:
                continue
            block = torch.cat(rows)
            if getattr(self.extractor_, "dtype", None) != "bfloat16":  # as transform
                block = block.numpy()
            C = to_numpy(self.estimator_.transform(block), dtype=None)
            out[indices] = _pool_rows(C, counts, self.pooling)
        return out

    def get_feature_names_out(self, input_features=None):
        """Names of the output columns: the concept names of ``estimator_``.

        Parameters
        ----------
        input_features : array-like of str or None, default=None
            Ignored; present for API consistency.

        Returns
        -------
        feature_names_out : ndarray of str objects
            E.g. ``concept0 … concept{k-1}``.
        """
        check_is_fitted(self)
        return np.asarray(self.estimator_.get_feature_names_out(), dtype=object)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.two_d_array = False
        tags.input_tags.string = True
        tags.requires_fit = True
        return tags


def _needs_y(estimator):
    """Whether ``estimator`` (or a step of a ``Pipeline``) needs ``y`` to fit."""
    steps = getattr(estimator, "steps", None)
    if steps is not None:
        return any(
            _needs_y(step) for _, step in steps if step not in (None, "passthrough")
        )
    return bool(get_tags(estimator).target_tags.required)


def _check_text_labels(y, n_texts, estimator):
    """``y`` as an array of one label per text, for a supervised ``estimator``."""
    name = type(estimator).__name__
    if y is None:
        raise ValueError(
            f"PooledConcepts: the estimator {name} learns from labels, but y is "
            "None; pass y with one label per text to fit."
        )
    y = np.asarray(y)
    if y.ndim == 0 or y.shape[0] != n_texts:
        count = 1 if y.ndim == 0 else y.shape[0]
        raise ValueError(
            f"PooledConcepts: y has {count} labels but X has {n_texts} texts; pass "
            "one label per text (each unit row of a text gets its label)."
        )
    return y


def _pool_rows(C, counts, pooling):
    """Pool consecutive row groups of ``C`` (``counts[i]`` rows each) into one row.

    Groups of 0 rows get zeros; sums and means are accumulated in float64. The
    result is float32, of shape ``(len(counts), C.shape[1])``.
    """
    C = np.asarray(C)
    counts = np.asarray(counts, dtype=np.int64)
    pooled = np.zeros((len(counts), C.shape[1]), dtype=np.float64)
    full = counts > 0
    if full.any():
        starts = (np.cumsum(counts) - counts)[full]
        if pooling == "max":
            pooled[full] = np.maximum.reduceat(C, starts, axis=0)
        else:
            pooled[full] = np.add.reduceat(C.astype(np.float64), starts, axis=0)
            if pooling == "mean":
                pooled[full] /= counts[full, None]
    return pooled.astype(np.float32)
