"""Concept estimators and on-disk activation stores: streaming fits and reads.

:class:`StreamingConceptsMixin` gives a concept estimator ``partial_fit`` and
makes ``fit`` stream an :class:`~skconcepts.ActivationStore` batch by batch
instead of loading it. A streaming class writes one hook,

``_partial_fit(X, first)``
    Update the model with one float32 batch ``X`` (numpy); ``first`` is True
    for the first batch of a new model. Leaves the model ready for
    ``_transform`` (``components_`` set).

and may override ``_begin_pass`` (a new pass over a store starts),
``_track_batch`` (statistics of the last pass, by default the reconstruction
error of classes with ``_iterative = True``), ``_finish_stream``,
``_stream_n_passes`` and the class attribute ``_shuffle_stream``.
``ConceptMixin.fit`` calls ``_fit_store`` when given a store and the class has
it; classes without it load the store with ``ActivationStore.to_numpy`` within
their ``max_bytes`` budget.

:func:`transform_store_to_array` and :func:`score_store` stream a store through
a fitted estimator's ``transform`` (into an array within the budget) and
``score`` (R² from running sums); ``ConceptMixin`` uses them for every estimator.
"""

from __future__ import annotations

import numpy as np
from sklearn.base import _fit_context
from sklearn.utils import check_random_state
from tqdm.auto import tqdm

from skconcepts.concepts._base import _as_numpy
from skconcepts.utils._torch_free import is_store, is_tensor
from skconcepts.utils._validation import check_n_concepts

__all__ = [
    "stream_docs",
    "StreamingConceptsMixin",
    "score_store",
    "transform_store_to_array",
]

#: rows per batch of ``transform``/``score`` of a store for estimators without
#: a ``batch_size`` parameter
DEFAULT_READ_BATCH = 4096

_BATCH_SIZE_DOC = """batch_size : int, default=%d
        Rows per mini-batch when ``fit`` streams an
        :class:`~skconcepts.ActivationStore` (and when ``partial_fit`` is given
        one; at least ``n_concepts`` rows), and per read when ``transform`` or
        ``score`` reads a store. Unused for in-memory data."""
_N_PASSES_DOC = """n_passes : int, default=%d
        Passes over an :class:`~skconcepts.ActivationStore` when ``fit``
        streams it, each in a new random order seeded by ``random_state``.
        Unused for in-memory data."""
#: shared parameter documentation, for ``Substitution(**stream_docs(...))``
_DOCS = {
    "max_bytes_stream": """max_bytes : int or None, default=None
        Memory budget, in bytes, of ``transform`` of an
        :class:`~skconcepts.ActivationStore`: its output array must fit in it
        (``None``: 25% of the RAM available), else a ``StoreTooLargeError``
        says to write the concepts to disk with ``transform_to_store``.
        ``fit`` streams a store and needs no budget.""",
    "max_bytes_load": """max_bytes : int or None, default=None
        Memory budget, in bytes, for loading an
        :class:`~skconcepts.ActivationStore` passed to ``fit`` (this method
        cannot stream it) and for the output of ``transform`` of a store.
        ``None`` allows 25% of the RAM available. Over the budget a
        ``StoreTooLargeError`` (a ``MemoryError``) gives the bytes needed and
        the estimators that stream a store instead.""",
    "progress_stream": """progress : bool, default=False
        Show a tqdm progress bar over the rows when ``fit`` streams an
        :class:`~skconcepts.ActivationStore`, and when ``transform`` or
        ``score`` reads one.""",
    "stream_attributes": """n_iter_ : int
        After ``partial_fit`` or a ``fit`` that streamed a store: the passes
        over the store, each ``partial_fit`` call counting one.""",
    "store_notes": """``X`` may be an :class:`~skconcepts.ActivationStore`
    (activations on disk, see :func:`~skconcepts.store.extract_to_store`).
    ``fit`` then streams it through ``partial_fit`` in mini-batches of
    ``batch_size`` rows, so memory stays bounded by one shard of the store plus
    one batch; ``transform`` and ``score`` of a store read it batch by batch
    (``transform`` returns one array, within ``max_bytes``;
    ``transform_to_store`` writes the concept activations to another store
    instead).""",
}


def stream_docs(*, batch_size=1024, n_passes=10):
    """Shared docs of the streaming parameters, with the class's defaults."""
    return {
        **_DOCS,
        "batch_size_stream": _BATCH_SIZE_DOC % batch_size,
        "n_passes": _N_PASSES_DOC % n_passes,
    }


class StreamingConceptsMixin:
    """``partial_fit`` and streaming ``fit`` from an activation store.

    Put it left of the estimator's other bases. See the module docstring for
    the hooks a subclass writes.
    """

    #: whether ``fit`` visits the rows of a store in a random order
    _shuffle_stream = True

    # ----------------------------------------------------------- public API
    @_fit_context(prefer_skip_nested_validation=True)
    def partial_fit(self, X, y=None):
        """Update the concepts with one chunk of activations.

        The first call (or the first after ``fit`` on in-memory data) starts a
        new model; later calls continue it, and must have the same number of
        features. An :class:`~skconcepts.ActivationStore` is streamed in one
        pass, batch by batch.

        Parameters
        ----------
        X : array-like, torch.Tensor or ActivationStore of shape \
(n_samples, n_features)
            A chunk of activations (one mini-batch step), or a store.
        y : Ignored
            Not used, present for API consistency.

        Returns
        -------
        self : object
            The updated estimator.
        """
        if is_store(X):
            self._stream_passes(X, n_passes=1, reset=not self._stream_started())
        else:
            first = not self._stream_started()
            stats = {}
            self._stream_step(X, first=first, stats=stats, track=True)
            self.n_iter_ = getattr(self, "n_iter_", 0) + 1 if not first else 1
            self._finish_stream(stats)
        return self

    # ------------------------------------------------------------- internals
    def _fit_store(self, store):
        """``fit`` from a store: ``n_passes`` shuffled passes of ``partial_fit``."""
        self._stream_passes(store, n_passes=self._stream_n_passes(), reset=True)

    def _fit_full(self, X):
        # an in-memory fit replaces any streaming state
        self.__dict__.pop("_stream_batches", None)
        return super()._fit_full(X)

    def _stream_started(self):
        return hasattr(self, "_stream_batches")

    def _stream_n_passes(self):
        return self.n_passes

    def _stream_batch_size(self):
        # the first batch initialises the model: at least n_concepts rows
        return max(int(self.batch_size), int(self.n_concepts))

    def _stream_passes(self, store, *, n_passes, reset):
        if reset:
            self.__dict__.pop("_stream_batches", None)
            self.n_iter_ = 0
        batch_size = self._stream_batch_size()
        base_seed = int(
            check_random_state(getattr(self, "random_state", None)).randint(2**31 - 1)
        )
        stats = {}
        first = not self._stream_started()
        with tqdm(
            total=n_passes * len(store),
            disable=not getattr(self, "progress", False),
            unit="row",
            desc=f"{type(self).__name__}.fit",
        ) as bar:
            for p in range(n_passes):
                last = p == n_passes - 1
                if not first:
                    self._begin_pass()
                batches = store.iter_batches(
                    batch_size,
                    shuffle=self._shuffle_stream,
                    seed=[base_seed, self.n_iter_],
                )
                for X in batches:
                    self._stream_step(X, first=first, stats=stats, track=last)
                    first = False
                    bar.update(len(X))
                self.n_iter_ += 1
        if first:
            raise ValueError(
                f"The ActivationStore at '{store.path}' has no rows; "
                f"{type(self).__name__} needs at least one to fit."
            )
        self._finish_stream(stats)

    def _stream_step(self, X, *, first, stats, track):
        X = self._check_X(X, reset=first)
        if is_tensor(X):
            from skconcepts.utils._torch import to_numpy

            X = to_numpy(X)
        if first:
            n_samples, n_features = X.shape
            check_n_concepts(
                self.n_concepts,
                self._max_concepts(n_samples, n_features),
                why=f"first batch: n_samples = {n_samples}, n_features = {n_features}",
            )
        self._partial_fit(X, first=first)
        self._stream_batches = getattr(self, "_stream_batches", 0) + 1
        if track and getattr(self, "_iterative", False):
            self._track_batch(X, stats)

    def _begin_pass(self):
        """Hook: a new pass over a store starts (not called before the first)."""

    def _track_batch(self, X, stats):
        """Accumulate the squared reconstruction error of a batch (last pass)."""
        codes = _as_numpy(self._transform(X)).astype(np.float64)
        X_hat = codes @ np.asarray(self._decoder_weight(), dtype=np.float64)
        offset = self._decoder_offset()
        if offset is not None:
            X_hat += np.asarray(offset, dtype=np.float64)
        stats["sse"] = stats.get("sse", 0.0) + float(
            np.sum((np.asarray(X, dtype=np.float64) - X_hat) ** 2)
        )

    def _finish_stream(self, stats):
        self.components_ = np.ascontiguousarray(self.components_, dtype=np.float32)
        self._n_features_out = self.components_.shape[0]
        if "sse" in stats:
            self.reconstruction_err_ = float(np.sqrt(stats["sse"]))


# ----------------------------------------------------------------- reading
def _read_batch_size(estimator):
    return int(getattr(estimator, "batch_size", None) or DEFAULT_READ_BATCH)


def transform_store_to_array(estimator, store):
    """Concept activations of every row of ``store``, streamed into one array.

    The output ``(n_rows, n_concepts)`` float32 array must fit in the
    estimator's ``max_bytes`` budget (see ``ActivationStore.to_numpy``); the
    store itself is read one batch at a time.
    """
    from skconcepts.store import (
        MEMORY_FRACTION,
        StoreTooLargeError,
        _available_memory,
        _fmt_bytes,
    )

    n = len(store)
    k = int(estimator.components_.shape[0])
    needed = n * k * 4
    max_bytes = getattr(estimator, "max_bytes", None)
    if max_bytes is None:
        budget = int(MEMORY_FRACTION * _available_memory())
        origin = f"{MEMORY_FRACTION:.0%} of the available RAM"
    else:
        budget, origin = int(max_bytes), f"max_bytes={max_bytes!r}"
    name = type(estimator).__name__
    if needed > budget:
        raise StoreTooLargeError(
            f"{name}.transform of the ActivationStore at '{store.path}' returns "
            f"{n} rows x {k} concepts: {needed} bytes ({_fmt_bytes(needed)}) of "
            f"float32, but the budget is {budget} bytes ({_fmt_bytes(budget)}, "
            f"{origin}). Write the concept activations to disk with "
            f"{name}.transform_to_store(store, path), or raise max_bytes."
        )
    out = np.empty((n, k), dtype=np.float32)
    pos = 0
    for X in _iter_rows(estimator, store, "transform"):
        out[pos : pos + len(X)] = _as_numpy(estimator.transform(X))
        pos += len(X)
    return out


def score_store(estimator, store):
    """Reconstruction R² of ``estimator`` on a store, from running sums.

    Equal (up to float64 rounding) to ``estimator.score(store[:])``: the total
    variance is merged batch by batch (Chan et al.'s parallel update).
    """
    n, mean, m2, resid = 0, 0.0, 0.0, 0.0
    for X in _iter_rows(estimator, store, "score"):
        X_hat = _as_numpy(estimator.inverse_transform(estimator.transform(X)))
        X = X.astype(np.float64)
        resid += float(np.sum((X - X_hat) ** 2))
        n_b = len(X)
        mean_b = X.mean(axis=0)
        m2_b = ((X - mean_b) ** 2).sum(axis=0)
        delta = mean_b - mean
        total = n + n_b
        mean = mean + delta * (n_b / total)
        m2 = m2 + m2_b + delta**2 * (n * n_b / total)
        n = total
    if n == 0:
        raise ValueError(f"The ActivationStore at '{store.path}' has no rows.")
    var = float(np.sum(m2))
    if var == 0:
        return 1.0 if resid == 0 else 0.0
    return float(1.0 - resid / var)


def _iter_rows(estimator, store, verb):
    if store.n_features != estimator.n_features_in_:
        raise ValueError(
            f"X has {store.n_features} features, but {type(estimator).__name__} "
            f"is expecting {estimator.n_features_in_} features as input."
        )
    with tqdm(
        total=len(store),
        disable=not getattr(estimator, "progress", False),
        unit="row",
        desc=f"{type(estimator).__name__}.{verb}",
    ) as bar:
        for X in store.iter_batches(_read_batch_size(estimator)):
            yield X
            bar.update(len(X))
