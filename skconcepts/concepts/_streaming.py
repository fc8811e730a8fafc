"""The batch-source protocol, and the ``partial_fit`` driver of streaming fits.

One protocol says what "activations that arrive in batches" means for every
estimator of the package. :func:`as_batch_source` turns ``X`` into a
:class:`BatchSource`, or returns ``None`` when ``X`` is one in-memory matrix:

- an :class:`~skconcepts.ActivationStore` (or any object with a method
  ``iter_batches(batch_size, shuffle=, seed=)``): read with its own
  ``iter_batches``, a shuffled pass visiting the shards and the rows of each
  shard in a random order;
- any iterable of 2-D batches: a list or tuple of arrays or tensors, a
  ``torch.utils.data.DataLoader`` (or any re-iterable) that yields ``X`` or
  ``(X, y)``, or a one-shot iterator (a generator), which can be read once, so
  it allows a single pass;
- an array or a tensor, only when asked (``as_batch_source(X, arrays=True)``,
  for mini-batch training on data in memory); a shuffled pass visits the rows
  in a random order.

``BatchSource.iter_batches(batch_size, *, shuffle=False, seed=None)`` yields
float32 2-D numpy arrays of ``n_features`` columns and ``batch_size`` rows (the
last one may be smaller): the chunks of an iterable are regrouped, and with
``shuffle=True`` the rows of each chunk are shuffled (a stream cannot be
shuffled as a whole). Every batch of an iterable is validated: it must be
numeric, 2-D, as wide as the first, and finite. ``seed`` may be an int, a
sequence of ints, a ``numpy.random.Generator`` or a ``RandomState`` (drawn
from, as the sparse autoencoders do). ``n_rows`` is ``None`` when unknown
(iterators, data loaders); ``one_shot`` is True for an iterator.
``BatchSource.first_batch(batch_size)`` gives the first rows without using up
a one-shot iterator (for a model initialised from the first data it sees).

:class:`StreamingConceptsMixin` gives a concept estimator ``partial_fit`` and
makes ``fit``/``fit_transform`` of a batch source learn batch by batch
(``ConceptMixin`` asks the class attribute ``_streams``, which the mixin sets).
A streaming class writes one hook,

``_partial_fit(X, first)``
    Update the model with one float32 batch ``X`` (numpy); ``first`` is True
    for the first batch of a new model. Leaves the model ready for
    ``_transform`` (``components_`` set).

and may override ``_begin_pass`` (a new pass over the source starts),
``_track_batch`` (statistics of the last pass, by default the reconstruction
error of classes with ``_iterative = True``), ``_finish_stream``,
``_stream_n_passes`` and the class attribute ``_shuffle_stream``.

**Shard-parallel fits.** :func:`map_shards` maps a function of one batch
over the shards of a store with ``joblib.Parallel`` and returns the sums of
its statistics per shard: the estimators whose updates reduce over rows
(``PCAConcepts``, ``KMeansConcepts``, ``NMFConcepts``, ``SemiNMFConcepts``,
``ActivationScaler``) take ``n_jobs`` and, when it is set, fit a store by such
maps (``_fit_shards``). Only the store's path, the row ranges of a run of
consecutive shards (one run per worker) and the small arguments (a
dictionary, centroids) travel to a worker; the worker opens the store and
reads its shards batch by batch. One fit enters one
:class:`ShardPool` around all its passes: the workers start once per fit (under
joblib's ``"ray"`` backend the tasks are Ray tasks, whose worker processes Ray
keeps between fits), and a worker opens the store and verifies a shard's
checksum once per fit.

Shared parameters of the streaming estimators: ``n_passes`` (passes over the
data when ``fit`` learns by mini-batches; the one name for it in the package,
a renamed parameter keeps its old name through
:func:`skconcepts.utils._deprecation.renamed_param`), ``batch_size``,
``progress`` and ``max_bytes`` (the budget of ``transform`` of a source).
"""

from __future__ import annotations

import copy
import functools
import itertools
import os
import uuid
import warnings
from collections.abc import Iterable, Iterator

import numpy as np
import scipy.sparse as sp
import torch
from joblib import Parallel, delayed, effective_n_jobs
from joblib.parallel import LokyBackend, get_active_backend
from sklearn.base import _fit_context
from sklearn.utils import check_random_state

from skconcepts.exceptions import StoreChangedError
from skconcepts.utils._deprecation import user_stacklevel
from skconcepts.utils._progress import progress_bar
from skconcepts.utils._torch import to_numpy
from skconcepts.utils._torch_free import is_store
from skconcepts.utils._validation import check_finite, check_n_concepts

__all__ = [
    "BatchSource",
    "ShardPool",
    "StreamingConceptsMixin",
    "as_batch_source",
    "map_shards",
    "sum_stats",
]


# ================================================================= protocol
def _stream_kind(X):
    """``"store"``, ``"iterable"`` or ``None`` (one array-like), cheaply."""
    if isinstance(X, BatchSource):
        return "source"
    if is_store(X) or (hasattr(X, "iter_batches") and hasattr(X, "n_features")):
        return "store"
    if torch.is_tensor(X) or isinstance(X, np.ndarray) or hasattr(X, "__array__"):
        return None
    if sp.issparse(X):
        return None
    if isinstance(X, Iterator):
        return "iterable"
    if isinstance(X, (list, tuple)):
        if len(X) > 0 and all(getattr(item, "ndim", None) == 2 for item in X):
            return "iterable"
        return None
    if isinstance(X, Iterable) and not isinstance(X, (str, bytes, dict)):
        return "iterable"
    return None


def as_batch_source(X, *, arrays=False):
    """``X`` as a :class:`BatchSource`, or ``None`` for one in-memory matrix.

    Parameters
    ----------
    X : object
        An :class:`~skconcepts.ActivationStore` (or an object with
        ``iter_batches(batch_size, shuffle=, seed=)``), an iterable of 2-D
        arrays or tensors (list, ``DataLoader`` yielding ``X`` or ``(X, y)``,
        iterator), a :class:`BatchSource` (returned as it is), or an
        array-like.
    arrays : bool, default=False
        Whether an array or a tensor becomes a source of its row batches
        (else ``None`` is returned for it).

    Returns
    -------
    source : BatchSource or None
        The source; ``None`` when ``X`` is an array-like and ``arrays=False``.

    Raises
    ------
    ValueError
        If an iterable yields no batch, or its first batch is not a numeric
        2-D array.

    Examples
    --------
    >>> import numpy as np
    >>> from skconcepts.concepts._streaming import as_batch_source
    >>> X = np.arange(12, dtype=np.float32).reshape(6, 2)
    >>> as_batch_source(X) is None
    True
    >>> source = as_batch_source([X[:4], X[4:]])
    >>> source.n_features, source.n_rows, source.one_shot
    (2, 6, False)
    >>> [len(b) for b in source.iter_batches(3)]
    [3, 3]
    >>> gen = as_batch_source(b for b in [X[:4], X[4:]])
    >>> gen.n_rows is None, gen.one_shot
    (True, True)
    """
    kind = _stream_kind(X)
    if kind == "source":
        return X
    if kind is not None:
        return BatchSource(X, kind=kind)
    if arrays:
        return BatchSource(X, kind="array")
    return None


def _as_batch(chunk, n_features, index):
    """Validate one batch of an iterable; a float32 numpy array (n, d)."""
    if (
        isinstance(chunk, (tuple, list))
        and chunk
        and (torch.is_tensor(chunk[0]) or isinstance(chunk[0], np.ndarray))
    ):
        chunk = chunk[0]  # (X,) or (X, y) from a DataLoader
    if torch.is_tensor(chunk):
        batch = to_numpy(chunk)
    else:
        try:
            batch = np.asarray(chunk, dtype=np.float32)
        except (TypeError, ValueError) as exc:
            raise ValueError(
                f"Batch {index} of X is a {type(chunk).__name__}, not a numeric "
                "array; an iterable X must yield 2-D arrays or tensors."
            ) from exc
    if batch.ndim != 2 or (n_features is not None and batch.shape[1] != n_features):
        want = "d" if n_features is None else str(n_features)
        raise ValueError(
            f"Batch {index} of X has shape {tuple(batch.shape)}; every batch must "
            f"have shape (n_rows, {want})."
        )
    check_finite(batch, f"batch {index} of X")
    return batch


def _rng(seed):
    """A numpy generator (or the ``RandomState``/``Generator`` passed)."""
    if isinstance(seed, (np.random.RandomState, np.random.Generator)):
        return seed
    return np.random.default_rng(seed)


class BatchSource:
    """Activations that arrive in batches (see the module docstring).

    Build one with :func:`as_batch_source`.

    Attributes
    ----------
    kind : {"store", "iterable", "array"}
        What the source reads.
    n_features : int
        Columns of every batch.
    n_rows : int or None
        Rows of one pass, ``None`` when unknown (iterators, data loaders).
    one_shot : bool
        Whether the source can be read only once (an iterator).
    label : str
        How messages name it (``"the ActivationStore at '...'"`` or ``"X"``).

    Examples
    --------
    >>> import numpy as np
    >>> from skconcepts.concepts._streaming import as_batch_source
    >>> X = np.arange(10, dtype=np.float32).reshape(5, 2)
    >>> source = as_batch_source(X, arrays=True)
    >>> [b.shape for b in source.iter_batches(2, shuffle=True, seed=0)]
    [(2, 2), (2, 2), (1, 2)]
    """

    def __init__(self, data, *, kind):
        self.kind = kind
        self.one_shot = False
        self._data = data
        self._read = False
        if kind == "store":
            self.n_features = int(data.n_features)
            self.n_rows = len(data) if hasattr(data, "__len__") else None
            path = getattr(data, "path", None)
            self.label = f"the ActivationStore at '{path}'" if path is not None else "X"
        elif kind == "array":
            if data.ndim != 2:
                raise ValueError(
                    f"Expected a 2-D array of activations, got shape "
                    f"{tuple(data.shape)}."
                )
            self.n_rows, self.n_features = (int(n) for n in data.shape)
            self.label = "X"
        else:
            self.label = "X"
            self.one_shot = isinstance(data, Iterator)
            first = next(data if self.one_shot else iter(data), None)
            if first is None:
                raise ValueError(
                    "X is an empty source of batches; it must yield at least one "
                    "2-D array of activations."
                )
            self._first = _as_batch(first, None, 0)
            self.n_features = int(self._first.shape[1])
            if self.one_shot:
                self._data = itertools.chain([first], data)
            self.n_rows = (
                sum(int(b.shape[0]) for b in data)
                if isinstance(data, (list, tuple))
                else None
            )

    def __repr__(self):
        return (
            f"BatchSource(kind={self.kind!r}, n_features={self.n_features}, "
            f"n_rows={self.n_rows}, one_shot={self.one_shot})"
        )

    def iter_batches(self, batch_size, *, shuffle=False, seed=None):
        """Yield the rows in float32 batches of ``batch_size`` rows.

        Parameters
        ----------
        batch_size : int
            Rows per batch; the last one may be smaller.
        shuffle : bool, default=False
            Visit the rows in a random order: all of them for a store or an
            array, within each chunk for an iterable.
        seed : int, sequence of int, numpy Generator, RandomState or None, \
default=None
            Seed of the shuffle; the same seed gives the same batches.

        Yields
        ------
        X : ndarray of shape (n_rows, n_features), dtype float32
            A batch of activations.
        """
        batch_size = int(batch_size)
        if self.kind == "store":
            if isinstance(seed, np.random.RandomState):
                seed = int(seed.randint(2**31 - 1))
            batches = self._data.iter_batches(batch_size, shuffle=shuffle, seed=seed)
            if is_store(self._data):
                yield from batches
                return
            yield from self._regroup(batches, batch_size, None)
        elif self.kind == "array":
            n = self.n_rows
            order = _rng(seed).permutation(n) if shuffle else None
            for start in range(0, n, batch_size):
                index = (
                    slice(start, start + batch_size)
                    if order is None
                    else order[start : start + batch_size]
                )
                if torch.is_tensor(self._data) and order is not None:
                    index = torch.from_numpy(index).to(self._data.device)
                yield to_numpy(self._data[index])
        else:
            if self.one_shot:
                if self._read:
                    raise ValueError(
                        "X is a one-shot iterator that was already read; pass a "
                        "list of batches, a re-iterable or an activation store to "
                        "read it more than once."
                    )
                self._read = True
            chunks = self._data if self.one_shot else iter(self._data)
            yield from self._regroup(
                chunks, batch_size, _rng(seed) if shuffle else None
            )

    def passes(self, n_passes, *, owner):
        """The passes that can be made over this source: ``n_passes``, or 1.

        A one-shot iterator can be read once: asking it for more passes warns
        (naming ``owner``, the estimator) and gives 1.

        Parameters
        ----------
        n_passes : int
            The passes asked for.
        owner : str
            Name of the estimator, for the warning.

        Returns
        -------
        n_passes : int
            ``n_passes``, or 1 for a one-shot iterator.
        """
        if not self.one_shot or n_passes <= 1:
            return n_passes
        warnings.warn(
            f"X is a one-shot iterator, so {owner} makes a single pass instead "
            f"of n_passes={n_passes}; pass a list of batches, a re-iterable or "
            "an activation store for more.",
            UserWarning,
            stacklevel=user_stacklevel(),
        )
        return 1

    def first_batch(self, batch_size):
        """The first rows of the source, without using up a one-shot iterator.

        For a model initialised from the first data it sees (the sparse
        autoencoders take the mean of these rows as their initial decoder
        bias). An iterable gives its first chunk as it came (validated,
        float32; read when the source was built); a store or an array gives
        its first ``batch_size`` rows, unshuffled.

        Parameters
        ----------
        batch_size : int
            Rows read from a store or an array (unused for an iterable).

        Returns
        -------
        X : ndarray of shape (n_rows, n_features), dtype float32, or None
            The first rows; ``None`` when the source has no rows.

        Examples
        --------
        >>> import numpy as np
        >>> from skconcepts.concepts._streaming import as_batch_source
        >>> X = np.arange(12, dtype=np.float32).reshape(6, 2)
        >>> as_batch_source([X[:4], X[4:]]).first_batch(2).shape
        (4, 2)
        >>> as_batch_source(X, arrays=True).first_batch(2).shape
        (2, 2)
        """
        if self.kind == "iterable":
            return self._first
        return next(iter(self.iter_batches(batch_size)), None)

    def _regroup(self, chunks, batch_size, rng):
        pending = None
        for index, chunk in enumerate(chunks):
            batch = _as_batch(chunk, self.n_features, index)
            if rng is not None and len(batch) > 1:
                batch = batch[rng.permutation(len(batch))]
            pending = batch if pending is None else np.concatenate([pending, batch])
            while len(pending) >= batch_size:
                yield pending[:batch_size]
                pending = pending[batch_size:]
        if pending is not None and len(pending):
            yield pending


# ================================================== shard-parallel map
def sum_stats(parts):
    """Sum tuples of statistics elementwise, in their order.

    Parameters
    ----------
    parts : iterable of tuple
        Tuples of the same length of numbers or arrays (one per shard).

    Returns
    -------
    total : tuple
        Their elementwise sums; ``None`` when ``parts`` is empty.

    Examples
    --------
    >>> import numpy as np
    >>> from skconcepts.concepts._streaming import sum_stats
    >>> sum_stats([(1, np.ones(2)), (2, np.ones(2))])
    (3, array([2., 2.]))
    """
    total = None
    for part in parts:
        if total is None:
            total = tuple(
                np.array(v, copy=True) if isinstance(v, np.ndarray) else v for v in part
            )
        else:
            total = tuple(a + b for a, b in zip(total, part))
    return total


#: stores opened by the shard tasks of the current fit in this process
#: (worker or parent), keyed by (fit token, class, path, generation, verify):
#: the passes of one fit reuse one reader, so each shard's checksum is
#: verified once per fit and process, not once per pass
_FIT_STORES: dict = {}


def _fit_store(store_cls, path, generation, verify, token):
    """The store of a shard task, opened once per fit (``token``) and process."""
    key = (token, store_cls, path, generation, verify)
    store = _FIT_STORES.get(key) if token is not None else None
    if store is None:
        store = store_cls(path, verify=verify)
        if store.manifest.get("generation") != generation:
            raise StoreChangedError(
                f"The ActivationStore at '{path}' was overwritten while it was "
                f"being fitted (generation {generation!r}, now "
                f"{store.manifest.get('generation')!r}); fit it again."
            )
        if token is not None:
            for old in [k for k in _FIT_STORES if k[0] != token]:
                _FIT_STORES.pop(old, None)  # an earlier fit's readers
            _FIT_STORES[key] = store
    return store


def _shard_task(
    store_cls, path, generation, verify, ranges, func, args, batch_size, token=None
):
    """Worker side of :func:`map_shards`: per shard of a run of shards, the
    sum of ``func`` over its batches (a list, one tuple per ``(lo, hi)`` of
    ``ranges``)."""
    store = _fit_store(store_cls, path, generation, verify, token)
    # a function that only reads its rows gets views of a float32 store's
    # files: one pass less over memory (k-means on 2 workers: 7-10% faster)
    view = getattr(func, "reads_rows_only", False)
    buf = None
    if not (view and store.dtype == "float32"):
        # one buffer for every batch of the task: fresh pages per batch
        # contended in the kernel when two workers ran at once
        rows = min(batch_size, max(hi - lo for lo, hi in ranges))
        buf = np.empty((rows, store.n_features), dtype=np.float32)
    parts = []
    for lo, hi in ranges:
        total = None
        for X in store._iter_rows(lo, hi, batch_size, out=buf, view=view):
            out = func(X, *args)
            total = out if total is None else tuple(a + b for a, b in zip(total, out))
        parts.append(total)
    return parts


def _runs(ranges, n_runs):
    """Cut shard ``ranges`` into at most ``n_runs`` runs of consecutive shards
    of nearly equal rows (a shard joins the run its middle row falls in)."""
    start, total = ranges[0][0], ranges[-1][1] - ranges[0][0]
    runs = {}
    for lo, hi in ranges:
        j = min(n_runs - 1, int((lo + hi - 2 * start) * n_runs // (2 * total)))
        runs.setdefault(j, []).append((lo, hi))
    return [runs[j] for j in sorted(runs)]


#: tasks per worker of a shard map (a run of consecutive shards each). Every
#: task costs a round trip (measured here: a Ray task's start 2-6 ms; loky's
#: was joblib's result polling, up to 10 ms, before ShardPool waited on the
#: executor's futures); one run per worker pays it once per pass: a
#: k-means fit of 8 shards on 2 Ray workers went from 1.42-1.48x to
#: 1.61-1.62x (loky, whose tasks are all queued at once, 1.58-1.63x either
#: way); 2 runs per worker (some balancing) measured 1.51-1.61x on Ray
TASKS_PER_WORKER = 1


def _call(func, args, kwargs):
    """Run one joblib task ``(func, args, kwargs)`` (the body of a Ray task)."""
    return func(*args, **kwargs)


#: ``ray.remote(_call)``, made once per process: a new remote function is
#: exported to the cluster (and fetched by each worker) on its first call, which
#: delayed the first map of every fit by about 20 ms on this machine
_RAY_CALL = None


def _ray_call(ray):
    """The Ray remote function of the shard tasks (``_call``), made once."""
    global _RAY_CALL
    if _RAY_CALL is None:
        _RAY_CALL = ray.remote(_call)
    return _RAY_CALL


def _results(futures):
    """The results of ``concurrent.futures`` futures, in order, each waited for."""
    try:
        for future in futures:
            yield future.result()
    finally:  # an error (or an abandoned map): drop the tasks not started
        for future in futures:
            future.cancel()


def _is_ray_backend(backend):
    """Whether ``backend`` (joblib's active backend) is ``ray.util.joblib``'s."""
    return type(backend).__module__.split(".")[0] == "ray"


class ShardPool:
    """The workers of one shard-parallel fit: entered once, mapped many times.

    An iterative fit enters one pool around all its passes (``with
    ShardPool(n_jobs) as pool:``) and gives it to every :func:`map_shards`,
    so the workers are started once per fit, not once per pass, and each
    worker opens the store (and verifies a shard's checksum) once per fit.
    The active joblib backend decides where the tasks run:

    - ``loky`` (the default), ``threading``, ``multiprocessing``, ``dask``:
      one ``joblib.Parallel(n_jobs=n_jobs)`` context (loky reuses its
      worker processes between fits). Under loky the tasks go straight to
      the backend's executor (``backend.submit``) and each result is waited
      for on its future: ``Parallel``'s own result loop polls every 10 ms,
      which a trace here showed cost 5-8 ms at the end of every map of a
      k-means pass of about 100 ms;
    - ``"ray"`` (``ray.util.joblib.register_ray()``): the tasks are Ray
      tasks, at most ``n_jobs`` at a time (``-1``: the cluster's CPUs), with
      the backend's ``ray_remote_args`` (default one CPU each). joblib's own
      Ray backend would start a new pool of actors, new processes that import
      torch and skconcepts (seconds each), for every fit; Ray keeps its task
      workers between tasks, so a worker imports them once per cluster and
      every later fit starts at once.

    ``n_jobs=1`` (or ``None``) runs the tasks in this process.

    Parameters
    ----------
    n_jobs : int or None
        Tasks run at once (joblib's meaning: ``-1`` all CPUs of the backend).

    Attributes
    ----------
    token : str
        Names the fit: the store readers of its tasks are kept per token.
    verified : set of tuple
        ``(path, generation)`` of the stores whose every shard a completed
        map of this pool read with its checksum verified; later maps of the
        fit do not verify them again.
    backend : str
        ``"ray"`` for Ray tasks, else ``"joblib"``.
    n_workers : int
        Workers that run tasks at once (set on entering): a map makes
        ``TASKS_PER_WORKER`` tasks per worker.

    Examples
    --------
    >>> import numpy as np
    >>> from skconcepts.concepts._streaming import (
    ...     ShardPool, as_batch_source, map_shards)
    >>> def count(X):
    ...     return (len(X),)
    >>> source = as_batch_source([np.ones((5, 2), dtype=np.float32)])
    >>> with ShardPool(1) as pool:
    ...     [map_shards(count, source, n_jobs=1, batch_size=2, owner="demo",
    ...                 parallel=pool) for _ in range(2)]
    [[(5,)], [(5,)]]
    """

    def __init__(self, n_jobs):
        self.n_jobs = n_jobs
        self.token = uuid.uuid4().hex
        self.verified = set()
        backend, _ = get_active_backend()
        ray_backend = _is_ray_backend(backend) and n_jobs not in (None, 1)
        self.backend = "ray" if ray_backend else "joblib"
        self._remote_args = dict(getattr(backend, "ray_remote_args", None) or {})
        self._parallel = None
        self._loky = None
        self._remote = None

    def __enter__(self):
        if self.backend == "ray":
            import ray  # deferred: optional and heavy; the "ray" backend has it

            if not ray.is_initialized():
                ray.init()  # as joblib's Ray backend: a local cluster
            n_jobs = int(self.n_jobs)
            cpus = int(ray.cluster_resources().get("CPU", 1))
            if n_jobs < 0:
                n_jobs = max(cpus + 1 + n_jobs, 1)
            # n_jobs at a time; when that is the whole cluster, Ray's scheduler
            # keeps the count and hands a freed worker its next task at once
            self._n_running = None if n_jobs >= cpus else n_jobs
            per_task = float(self._remote_args.get("num_cpus", 1) or 1)
            self.n_workers = max(1, min(n_jobs, int(cpus // per_task)))
            self._remote = _ray_call(ray)
            if self._remote_args:
                self._remote = self._remote.options(**self._remote_args)
            self._ray = ray
        else:
            # every task queued at once: a worker takes its next task from
            # the queue, not after a round trip to this process
            try:  # results as they come, for the progress bar
                parallel = Parallel(
                    n_jobs=self.n_jobs, return_as="generator", pre_dispatch="all"
                )
            except ValueError:  # a backend without generators: at once
                parallel = Parallel(n_jobs=self.n_jobs, pre_dispatch="all")
            self._parallel = parallel.__enter__()
            self.n_workers = max(1, int(effective_n_jobs(self.n_jobs)))
            backend = getattr(self._parallel, "_backend", None)
            if isinstance(backend, LokyBackend):  # not its sequential fallback
                self._loky = backend
        return self

    def __exit__(self, *exc):
        for key in [k for k in _FIT_STORES if k[0] == self.token]:
            _FIT_STORES.pop(key, None)  # this process's readers of the fit
        if self._parallel is not None:
            self._parallel.__exit__(*exc)
            self._parallel = None
        self._loky = self._remote = None
        return False

    def __call__(self, tasks):
        """Run joblib ``delayed`` tasks; their results, in the tasks' order."""
        if self._remote is None and self._parallel is None:
            raise RuntimeError("Enter the ShardPool (with ShardPool(n) as pool:).")
        if self._loky is not None:  # all submitted now, waited for in order
            futures = [
                self._loky.submit(functools.partial(_call, func, args, kwargs))
                for func, args, kwargs in tasks
            ]
            return _results(futures)
        if self._parallel is not None:
            return self._parallel(tasks)
        ray = self._ray
        refs, running = [], []
        for func, args, kwargs in tasks:
            if self._n_running is not None and len(running) >= self._n_running:
                _, running = ray.wait(running, num_returns=1)
            ref = self._remote.remote(func, args, kwargs)
            refs.append(ref)
            running.append(ref)
        return (ray.get(ref) for ref in refs)


def map_shards(
    func,
    source,
    args=(),
    *,
    n_jobs,
    batch_size,
    owner,
    parallel=None,
    progress=False,
    desc=None,
):
    """Per-shard sums of ``func(X_batch, *args)`` over a batch source.

    The map of the shard-parallel fits. For an
    :class:`~skconcepts.ActivationStore`, the tasks run in a
    :class:`ShardPool` of ``n_jobs`` (``joblib.Parallel``, or Ray tasks
    under joblib's ``"ray"`` backend), so the active joblib backend decides
    where (local processes by default; ``parallel_backend("ray")`` or
    ``("dask")`` on a cluster). The non-empty shards are cut into
    ``TASKS_PER_WORKER`` runs of consecutive shards per worker, of nearly
    equal rows (in this process: one task per shard). A task receives the
    store's path, its generation, its shards' row ranges, ``func`` and
    ``args``, never the rows: the worker opens the store, reads each shard in
    batches of ``batch_size`` rows and sums ``func``'s tuples over them,
    shard by shard. The results come back per shard and in shard order
    whatever ``n_jobs``, so the caller sums them in the same order.
    Any other source (an iterable of batches, an array) is read in this
    process (``n_jobs > 1`` warns that only a store's shards are mapped).

    Parameters
    ----------
    func : callable
        ``func(X, *args) -> tuple`` of numbers or numpy arrays, for a float32
        batch ``X`` of shape (n_rows, n_features); a module-level function
        (workers import it by name). A function with the attribute
        ``reads_rows_only = True`` promises not to write to ``X`` (nor hand
        it to ``torch.from_numpy``): it then reads a float32 store's rows in
        place, read-only views of the shard files.
    source : BatchSource
        The data, from :func:`as_batch_source`.
    args : tuple, default=()
        Further arguments of ``func`` (small: they are sent to every task).
    n_jobs : int
        Jobs of ``joblib.Parallel`` (``-1``: all CPUs of the backend).
    batch_size : int
        Rows per call of ``func``.
    owner : str
        Name of the estimator, for messages.
    parallel : ShardPool, joblib.Parallel or None, default=None
        The pool to run the tasks with, entered by the caller (``with
        ShardPool(n_jobs) as pool:``) so that several maps (the passes of an
        iterative fit) share one pool of workers and each worker's store
        reader (a shard's checksum is verified once per fit). ``None``: a
        new :class:`ShardPool` for this map.
    progress : bool, default=False
        Show a tqdm bar over the shards.
    desc : str or None, default=None
        Label of the bar.

    Returns
    -------
    parts : list of tuple
        One tuple per shard (one in all for a source that is not a store), in
        shard order.

    Examples
    --------
    >>> import numpy as np
    >>> from skconcepts.concepts._streaming import as_batch_source, map_shards
    >>> def count(X):
    ...     return (len(X), X.sum(axis=0, dtype=np.float64))
    >>> X = np.ones((10, 2), dtype=np.float32)
    >>> source = as_batch_source([X[:6], X[6:]])
    >>> map_shards(count, source, n_jobs=1, batch_size=4, owner="demo")
    [(10, array([10., 10.]))]
    """
    batch_size = int(batch_size)
    data = source._data if source.kind == "store" else None
    if data is None or not is_store(data):
        if n_jobs not in (None, 1):
            warnings.warn(
                f"{owner}: n_jobs={n_jobs} maps the shards of an ActivationStore; "
                "X is not one, so it is read in this process. Write it to a "
                "store (skconcepts.store.write_array_store) to fit it in "
                "parallel.",
                UserWarning,
                stacklevel=user_stacklevel(),
            )
        total = sum_stats(
            func(X, *args) for X in source.iter_batches(batch_size, shuffle=False)
        )
        return [] if total is None else [total]
    if parallel is None:
        with ShardPool(n_jobs) as pool:
            return map_shards(
                func,
                source,
                args,
                n_jobs=n_jobs,
                batch_size=batch_size,
                owner=owner,
                parallel=pool,
                progress=progress,
                desc=desc,
            )
    token = getattr(parallel, "token", None)
    path = os.path.abspath(os.fspath(data.path))
    generation = data.manifest.get("generation")
    verified = getattr(parallel, "verified", set())
    # checksums once per fit: a completed map of this pool verified every shard
    verify = bool(data.verify) and (path, generation) not in verified
    bounds = np.cumsum([0] + [int(s["rows"]) for s in data.manifest["shards"]])
    ranges = [(int(a), int(b)) for a, b in zip(bounds[:-1], bounds[1:]) if b > a]
    if not ranges:
        return []
    n_workers = getattr(parallel, "n_workers", 1)
    runs = (
        [[r] for r in ranges]
        if n_workers <= 1
        else _runs(ranges, n_workers * TASKS_PER_WORKER)
    )
    tasks = [
        delayed(_shard_task)(
            type(data), path, generation, verify, run, func, args, batch_size, token
        )
        for run in runs
    ]
    parts = []
    with progress_bar(
        total=len(ranges),
        progress=progress,
        unit="shard",
        desc=desc or f"{owner}.fit",
    ) as bar:
        for run_parts in parallel(tasks):
            parts.extend(run_parts)
            bar.update(len(run_parts))
    if verify and token is not None:
        verified.add((path, generation))
    return parts


# ==================================================== partial_fit driver
class StreamingConceptsMixin:
    """``partial_fit``, and streaming ``fit`` of a batch source.

    Put it left of the estimator's other bases. See the module docstring for
    the hooks a subclass writes.
    """

    #: ``ConceptMixin.fit`` streams batch sources through ``_fit_source``
    _streams = True
    #: whether ``fit`` visits the rows of a source in a random order
    _shuffle_stream = True

    # ----------------------------------------------------------- public API
    @_fit_context(prefer_skip_nested_validation=True)
    def partial_fit(self, X, y=None):
        """Update the concepts with one chunk of activations.

        The first call (or the first after ``fit`` on in-memory data) starts a
        new model; later calls continue it, and must have the same number of
        features. An array or a tensor is one mini-batch step; an
        :class:`~skconcepts.ActivationStore` or an iterable of batches is read
        in one pass, batch by batch.

        Parameters
        ----------
        X : array-like, torch.Tensor, ActivationStore or iterable of batches
            A chunk of activations of shape (n_samples, n_features) (one
            mini-batch step), or a source of batches of that width.
        y : Ignored
            Not used, present for API consistency.

        Returns
        -------
        self : object
            The updated estimator.
        """
        source = as_batch_source(X)
        if source is not None:
            self._stream_passes(source, n_passes=1, reset=not self._stream_started())
        else:
            first = not self._stream_started()
            stats = {}
            self._stream_step(X, first=first, stats=stats, track=True)
            self.n_iter_ = getattr(self, "n_iter_", 0) + 1 if not first else 1
            self._finish_stream(stats)
        return self

    # ------------------------------------------------------------- internals
    def _fit_source(self, source):
        """``fit`` of a batch source: ``n_passes`` passes of ``partial_fit``.

        With ``n_jobs`` set (the classes that have it), the shard-parallel fit
        ``_fit_shards`` instead.
        """
        if getattr(self, "n_jobs", None) is not None and hasattr(self, "_fit_shards"):
            self.__dict__.pop("_stream_batches", None)
            self._fit_shards(source)
            return
        self._stream_passes(source, n_passes=self._stream_n_passes(), reset=True)

    def _shard_start(self, source):
        """First rows of a shard-parallel fit, validated (sets ``n_features_in_``).

        Returns the first ``_stream_batch_size()`` rows of ``source`` (in
        order, unshuffled) as a float32 array, the rows a shard-parallel fit
        initialises from.
        """
        name = type(self).__name__
        if source.one_shot:
            raise ValueError(
                f"{name} with n_jobs={self.n_jobs} reads X several times, and a "
                "one-shot iterator can be read once; pass an ActivationStore (or "
                "a list of batches), or n_jobs=None for the online fit."
            )
        first = source
        if source.kind == "store" and is_store(source._data) and source._data.verify:
            # the first map verifies every shard (in the workers), and a damaged
            # shard fails the fit there: the driver reads its first rows without
            # hashing shard 0 on the fit's critical path
            unverified = copy.copy(source._data)
            unverified.verify = False
            first = BatchSource(unverified, kind="store")
        X = first.first_batch(self._stream_batch_size())
        if X is None or len(X) == 0:
            label = source.label[:1].upper() + source.label[1:]
            raise ValueError(f"{label} has no rows; {name} needs at least one to fit.")
        X = to_numpy(self._check_X(X, reset=True))
        self._check_value_range(X, name="a batch of X")
        n_samples = source.n_rows if source.n_rows is not None else len(X)
        check_n_concepts(
            self.n_concepts,
            self._max_concepts(max(n_samples, len(X)), X.shape[1]),
            why=f"n_samples = {n_samples}, n_features = {X.shape[1]}",
        )
        return np.asarray(X, dtype=np.float32)

    def _shard_pool(self):
        """A :class:`ShardPool` of ``n_jobs``, to enter around all the passes."""
        return ShardPool(self.n_jobs)

    def _map_shards(self, func, source, args=(), parallel=None, desc=None):
        """:func:`map_shards` with this estimator's ``n_jobs`` and ``batch_size``."""
        return map_shards(
            func,
            source,
            args,
            n_jobs=self.n_jobs,
            batch_size=self._stream_batch_size(),
            owner=type(self).__name__,
            parallel=parallel,
            progress=getattr(self, "progress", False),
            desc=desc,
        )

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

    def _stream_passes(self, source, *, n_passes, reset):
        name = type(self).__name__
        n_passes = source.passes(n_passes, owner=name)
        if reset:
            self.__dict__.pop("_stream_batches", None)
            self.n_iter_ = 0
        batch_size = self._stream_batch_size()
        base_seed = int(
            check_random_state(getattr(self, "random_state", None)).randint(2**31 - 1)
        )
        stats = {}
        first = not self._stream_started()
        total = None if source.n_rows is None else n_passes * source.n_rows
        with progress_bar(
            total=total,
            progress=getattr(self, "progress", None),
            unit="row",
            desc=f"{name}.fit",
        ) as bar:
            for p in range(n_passes):
                last = p == n_passes - 1
                if not first:
                    self._begin_pass()
                batches = source.iter_batches(
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
            label = source.label[:1].upper() + source.label[1:]
            raise ValueError(f"{label} has no rows; {name} needs at least one to fit.")
        self._finish_stream(stats)

    def _stream_step(self, X, *, first, stats, track):
        X = to_numpy(self._check_X(X, reset=first))
        self._check_value_range(X, name="a batch of X")
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
        """Hook: a new pass over a source starts (not called before the first)."""

    def _track_batch(self, X, stats):
        """Accumulate the squared reconstruction error of a batch (last pass)."""
        codes = to_numpy(self._transform(X), dtype=np.float64)
        X_hat = codes @ np.asarray(self._decoder_weight(), dtype=np.float64)
        offset = self._decoder_offset()
        if offset is not None:
            X_hat += np.asarray(offset, dtype=np.float64)
        stats["sse"] = stats.get("sse", 0.0) + float(
            np.sum((np.asarray(X, dtype=np.float64) - X_hat) ** 2)
        )

    def _finish_stream(self, stats):
        self.components_ = np.ascontiguousarray(self.components_, dtype=np.float32)
        self._check_fitted_dictionary()
        self._n_features_out = self.components_.shape[0]
        if "sse" in stats:
            self.reconstruction_err_ = float(np.sqrt(stats["sse"]))
