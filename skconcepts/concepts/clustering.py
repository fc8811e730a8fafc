"""KMeansConcepts: concepts as k-means centroids, with memberships as activations.

A concept is a centroid (``components_ = cluster_centers_``). The concept
activation of a row is a *membership*, higher meaning more of the concept:
one-hot of the nearest centroid (``membership="hard"``) or a softmax of negative
squared distances (``membership="soft"``). It is never a raw distance, which
would rank the farthest rows as a concept's best examples.

Numpy input on the CPU runs ``sklearn.cluster.KMeans``; a tensor, or
``device="cuda"``, runs the torch Lloyd implementation below (k-means++ init,
same tolerance rule and empty-cluster relocation as scikit-learn).
``partial_fit``, and ``fit`` of a batch source (an activation store or an
iterable of batches, see :mod:`skconcepts.concepts._streaming`), run
``sklearn.cluster.MiniBatchKMeans``.
"""

from __future__ import annotations

import math
import warnings
from numbers import Integral, Real

import numpy as np
import torch
from scipy import sparse
from scipy.special import softmax
from sklearn.base import BaseEstimator
from sklearn.cluster import KMeans, MiniBatchKMeans, kmeans_plusplus
from sklearn.metrics.pairwise import euclidean_distances
from sklearn.utils import check_random_state
from sklearn.utils._openmp_helpers import _openmp_effective_n_threads
from sklearn.utils._param_validation import Interval, StrOptions

from skconcepts.concepts._base import DEVICE_CONSTRAINT, ConceptMixin
from skconcepts.concepts._sklearn_wrapper import (
    SklearnConceptsMixin,
    reconstruction_error,
    sklearn_constraints,
)
from skconcepts.concepts._streaming import StreamingConceptsMixin, sum_stats
from skconcepts.utils._progress import progress_bar
from skconcepts.utils._torch import to_numpy, to_tensor, torch_generator
from skconcepts.utils._validation import check_is_fitted

__all__ = ["KMeansConcepts"]

#: rows per chunk of the (rows, k) distance matrix on torch
_CHUNK_ELEMENTS = 2**24


# ---------------------------------------------------------------- torch numerics
def _sq_distances(X, x_sq, centers):
    """Squared distances (n, k) of rows X (n, d) to centers (k, d), clamped at 0."""
    c_sq = (centers**2).sum(dim=1)  # (k,)
    d2 = x_sq[:, None] - 2 * (X @ centers.T) + c_sq[None, :]  # (n, k)
    return d2.clamp_min_(0)


def _assign(X, x_sq, centers):
    """Nearest center of every row, chunked: labels (n,), squared distance (n,)."""
    step = max(1, _CHUNK_ELEMENTS // centers.shape[0])
    labels, dists = [], []
    for start in range(0, X.shape[0], step):
        d2 = _sq_distances(X[start : start + step], x_sq[start : start + step], centers)
        dist, lab = d2.min(dim=1)
        labels.append(lab)
        dists.append(dist)
    return torch.cat(labels), torch.cat(dists)


def _kmeans_plusplus_torch(X, x_sq, k, generator):
    """Greedy k-means++ seeding (scikit-learn's rule: 2 + log(k) local trials)."""
    n = X.shape[0]
    n_local_trials = 2 + int(math.log(k))
    centers = torch.empty((k, X.shape[1]), dtype=X.dtype, device=X.device)
    first = torch.randint(n, (1,), generator=generator, device=X.device)
    centers[0] = X[first[0]]
    closest = _sq_distances(X, x_sq, centers[:1])[:, 0]  # (n,)
    potential = closest.sum()
    for c in range(1, k):
        rand = torch.rand(
            n_local_trials, generator=generator, device=X.device, dtype=torch.float64
        )
        cumulative = torch.cumsum(closest.double(), dim=0)  # (n,)
        candidates = torch.searchsorted(cumulative, rand * potential.double())
        candidates = candidates.clamp_max_(n - 1)  # (t,)
        to_candidates = _sq_distances(X, x_sq, X[candidates]).T  # (t, n)
        to_candidates = torch.minimum(closest[None, :], to_candidates)
        potentials = to_candidates.sum(dim=1)  # (t,)
        best = int(torch.argmin(potentials))
        potential, closest = potentials[best], to_candidates[best]
        centers[c] = X[candidates[best]]
    return centers


def _lloyd_step(X, labels, dists, centers):
    """New centers from the assignment; empty clusters take the farthest rows."""
    k = centers.shape[0]
    sums = torch.zeros_like(centers).index_add_(0, labels, X)  # (k, d)
    counts = torch.bincount(labels, minlength=k).to(X.dtype)  # (k,)
    empty = torch.nonzero(counts == 0).flatten()
    if len(empty) and float(dists.max()) > 0:
        far = torch.topk(dists, len(empty)).indices
        for cluster, row in zip(empty.tolist(), far.tolist()):
            old = int(labels[row])
            sums[old] -= X[row]
            counts[old] -= 1
            sums[cluster] = X[row]
            counts[cluster] = 1
    new = centers.clone()
    filled = counts > 0
    new[filled] = sums[filled] / counts[filled, None]
    return new


def _kmeans_torch(X, k, *, init, n_init, max_iter, tol, generator, progress=None):
    """Lloyd k-means of a float32 tensor X (n, d), best of ``n_init`` runs.

    Returns centers (k, d), labels (n,), inertia and the iterations of the best
    run, as scikit-learn's ``KMeans`` does (data centred first; ``tol`` relative
    to the mean feature variance; final E-step unless labels converged).
    """
    X_mean = X.mean(dim=0)  # (d,)
    Xc = X - X_mean  # (n, d)
    x_sq = (Xc**2).sum(dim=1)  # (n,)
    tol_abs = float(tol * Xc.var(dim=0, unbiased=False).mean()) if tol else 0.0
    best = None
    with progress_bar(progress=progress, desc="KMeansConcepts", unit="iter") as bar:
        for _ in range(n_init):
            if isinstance(init, str) and init == "k-means++":
                centers = _kmeans_plusplus_torch(Xc, x_sq, k, generator)
            elif isinstance(init, str):  # "random"
                rows = torch.randperm(Xc.shape[0], generator=generator, device=X.device)
                centers = Xc[rows[:k]].clone()
            else:
                centers = to_tensor(init, device=X.device) - X_mean
            labels_old, strict = None, False
            for n_iter in range(1, max_iter + 1):
                labels, dists = _assign(Xc, x_sq, centers)
                new = _lloyd_step(Xc, labels, dists, centers)
                shift = float(((new - centers) ** 2).sum())
                centers = new
                bar.update(1)
                if labels_old is not None and torch.equal(labels, labels_old):
                    strict = True
                    break
                if shift <= tol_abs:
                    break
                labels_old = labels
            if not strict:
                labels, dists = _assign(Xc, x_sq, centers)
            inertia = float(dists.double().sum())
            if best is None or inertia < best[2]:
                best = (centers + X_mean, labels, inertia, n_iter)
    return best


# ------------------------------------------------------- shard-parallel Lloyd
#: bytes of a Lloyd block's float64 copy (2048 rows at d = 256): bounds that
#: copy whatever the batch_size. Measured on a 200 000x256 store (k = 16, one
#: thread): blocks of 512 / 1024 / 2048 / 4096 rows fit in 0.79 / 0.73 /
#: 0.71 / 0.71 s, and in 0.45 s on 2 workers at every size
_LLOYD_BLOCK_BYTES = 4 * 2**20


def _lloyd_sums(X, centers):
    """One batch of a Lloyd pass: per-cluster sums (k, d), counts (k,), inertia.

    In float64, as sklearn's distances of float32 rows: a block of
    ``_LLOYD_BLOCK_BYTES`` at a time is copied to float64 once, and its
    squared distances ``||x||² - 2 x·c + ||c||²`` (clipped at 0), labels
    (the nearest centroid, the first of ties) and per-cluster sums are
    taken from that copy.
    """
    k, d = centers.shape
    C = centers.astype(np.float64)
    CT, c_sq = np.ascontiguousarray(C.T), np.einsum("ij,ij->i", C, C)
    sums, counts, inertia = np.zeros((k, d)), np.zeros(k), 0.0
    m = len(X)
    b = max(1, min(m, _LLOYD_BLOCK_BYTES // (8 * d)))
    block = np.empty((b, d))
    for start in range(0, m, b):
        x = block[: min(b, m - start)]
        x[...] = X[start : start + len(x)]
        d2 = x @ CT  # (b, k)
        d2 *= -2
        d2 += c_sq
        d2 += np.einsum("ij,ij->i", x, x)[:, None]
        labels = d2.argmin(axis=1)
        rows = np.arange(len(x))
        best = np.maximum(d2[rows, labels], 0)
        # each cluster's rows summed (in row order) by the (k, b) one-hot
        # label matrix, built as CSR directly: row j lists cluster j's rows
        n_in = np.bincount(labels, minlength=k)
        members = np.argsort(labels, kind="stable")
        onehot = sparse.csr_matrix(
            (np.ones(len(x)), members, np.r_[0, n_in.cumsum()]), shape=(k, len(x))
        )
        sums += onehot @ x
        counts += n_in
        inertia += float(best.sum())
    if not math.isfinite(inertia):
        raise ValueError(
            "KMeansConcepts: the rows hold NaN or infinite values (their "
            "distances to the centroids are not finite); remove or replace "
            "them before fitting."
        )
    return sums, counts, inertia


_lloyd_sums.reads_rows_only = True  # map_shards: views of a float32 store


def _soft_sse(X, estimator):
    """Squared reconstruction error of one batch under soft membership."""
    codes = estimator._transform(X).astype(np.float64)  # (m, k)
    X_hat = codes @ estimator.components_.astype(np.float64)
    return (float(np.sum((X.astype(np.float64) - X_hat) ** 2)),)


# ---------------------------------------------------------------------- class
class KMeansConcepts(StreamingConceptsMixin, SklearnConceptsMixin, BaseEstimator):
    """Concepts as k-means centroids (``sklearn.cluster.KMeans``).

    ``components_`` are the centroids. ``transform`` returns a *membership*
    (higher means more of the concept), never a distance:

    - ``membership="hard"`` (default): one-hot of the nearest centroid, so
      ``inverse_transform(transform(X))`` is each row's centroid, exactly the
      k-means reconstruction.
    - ``membership="soft"``: ``softmax(-||x - c_j||² / temperature)`` over the
      centroids; rows sum to 1 and rank the rows of a concept by how clearly
      they belong to it, which suits top-k example search.

    ``inverse_transform(C) = C @ components_`` maps either back to (a mixture
    of) centroids.

    With hard membership every member of a cluster has activation 1.0, so the
    activation alone cannot say which members are typical. :meth:`typicality`
    (minus the squared distance to each centroid) breaks those ties:
    :class:`~skconcepts.TopKInputs` ranks by activation, then by typicality, so
    a concept's top units are the members nearest its centroid.

    ``partial_fit``, and ``fit`` of an :class:`~skconcepts.ActivationStore` or
    an iterable of batches, run ``sklearn.cluster.MiniBatchKMeans`` (its
    centroids become
    ``components_``, with the same membership semantics).

    Parameters
    ----------
    n_concepts : int, default=8
        Number of concepts (rows of the dictionary) to learn. At most ``n_samples``.
    membership : {"hard", "soft"}, default="hard"
        Concept activation: one-hot nearest centroid, or a softmax of negative
        squared distances.
    temperature : float or "auto", default="auto"
        Temperature of the soft membership. ``"auto"`` uses the mean squared
        distance of the training rows to their centroid (``inertia / n_samples``),
        so the softness does not depend on the scale of the activations (over
        the last pass, or the last ``partial_fit`` chunk, when streamed). Stored
        in ``temperature_``.
    init : {"k-means++", "random"} or array-like of shape (n_concepts, n_features), \
default="k-means++"
        Initialisation, as in scikit-learn (on torch, greedy k-means++ seeded
        from ``random_state``).
    n_init : "auto" or int, default="auto"
        Number of runs with different seeds; the lowest inertia wins. ``"auto"``
        is 1 for ``"k-means++"`` or an array, 10 for ``"random"``.
    max_iter : int, default=300
        Maximum Lloyd iterations per run.
    tol : float, default=1e-4
        Convergence when the squared centroid shift is below ``tol`` times the
        mean feature variance.
    random_state : int, RandomState instance or None, default=None
        Seed of the initialisation. An int makes ``fit`` reproducible (bitwise
        on the CPU). It seeds a local generator; the global torch seed is never
        touched.
    device : {"cpu", "cuda", "auto"} or torch.device, default="cpu"
        Where the computation runs. ``"auto"`` takes CUDA when available.
        Fitted attributes are always stored as CPU numpy arrays, so a model
        fitted on a GPU loads on a CPU-only machine.
        Numpy input on the CPU runs scikit-learn; a tensor or ``"cuda"``/
        ``"auto"`` runs the torch implementation (Lloyd iterations, k-means++
        init), whose results match scikit-learn within float32 tolerance for the
        same ``init`` array.
    progress : bool or None, default=None
        Show a tqdm progress bar over the rows when ``fit`` streams a batch
        source (an :class:`~skconcepts.ActivationStore` or an iterable of
        batches) and when ``transform`` or ``score`` read one; and over the
        Lloyd iterations of the torch implementation.
        ``None`` (the default) shows it only when stderr is an interactive
        terminal or a notebook (tqdm's rule); ``True`` always, ``False`` never.
    batch_size : int, default=1024
        Rows per mini-batch when ``fit`` or ``partial_fit`` streams a batch
        source (an :class:`~skconcepts.ActivationStore` or an iterable of 2-D
        batches, whose chunks are regrouped; at least ``n_concepts`` rows), and
        per read when ``transform`` or ``score`` reads one. Unused for
        in-memory data.
    n_passes : int, default=10
        Passes over the data when ``fit`` streams a batch source: an
        :class:`~skconcepts.ActivationStore` is read in a new random order in
        each pass (seeded by ``random_state``), an iterable in its own order
        with the rows of each chunk shuffled; a one-shot iterator allows one
        pass (a warning says so). ``partial_fit`` makes one pass over what it
        is given. Unused for in-memory data.
    max_bytes : int or None, default=None
        Memory budget, in bytes, of ``transform`` of an
        :class:`~skconcepts.ActivationStore` or an iterable of batches: its
        output array must fit in it (``None``: 25% of the RAM available), else
        a ``StoreTooLargeError`` says to write the concepts to disk with
        ``transform_to_store``. ``fit`` streams a batch source and needs no
        budget.
    n_jobs : int or None, default=None
        Shard-parallel ``fit`` of an :class:`~skconcepts.ActivationStore`.
        ``None``: the mini-batch k-means above. An int: Lloyd's k-means over
        the whole store, one pass per iteration (at most ``n_passes``; it
        stops when the squared centroid shift falls below ``tol`` times the
        mean feature variance of the first batch). Each pass maps the shards
        with ``joblib.Parallel(n_jobs=n_jobs)`` under the active joblib
        backend (local processes by default, ``parallel_backend("ray")`` or
        ``("dask")`` on a cluster): a task assigns the rows of its shard to
        the nearest centroid and returns the per-cluster sums and counts
        (float64), from which the new centroids are computed; an empty
        cluster keeps its centroid. One run, initialised (``init``) from the
        first ``batch_size`` rows; ``n_init`` is not used. A last pass
        computes the inertia. ``n_jobs=1`` runs the same passes in this
        process and every ``n_jobs`` gives the same model (shard sums added in
        shard order; tested to ``rtol=1e-5``). Another source (an iterable of
        batches) is read in this process. ``partial_fit`` and in-memory
        ``fit`` ignore it.

    Attributes
    ----------
    components_ : ndarray of shape (n_concepts, n_features)
        The dictionary (float32): one concept per row. ``inverse_transform(C)`` is
        ``C @ components_`` (plus the offset of the method, if any).
    n_features_in_ : int
        Number of features seen during ``fit``.
    feature_names_in_ : ndarray of shape (`n_features_in_`,)
        Names of the features seen during ``fit``, when ``X`` has string column
        names.
    n_iter_ : int
        Lloyd iterations of the best run; passes over the data after
        ``partial_fit`` or a streamed ``fit`` (each ``partial_fit`` call
        counting one).
    reconstruction_err_ : float
        Frobenius norm of ``X - inverse_transform(transform(X))`` on the
        training data (``sqrt(inertia)`` for hard membership); after
        ``partial_fit`` or a streamed ``fit``, on the rows of the last call or
        pass, each taken just after its update.
    temperature_ : float
        The temperature used by the soft membership.
    estimator_ : sklearn.cluster.KMeans or MiniBatchKMeans
        The fitted scikit-learn estimator (``labels_``, ``inertia_``, ...); on
        the torch path it holds the torch results; a ``MiniBatchKMeans`` after
        ``partial_fit`` or a streamed ``fit``.

    See Also
    --------
    PCAConcepts : Directions rather than prototypes.

    Notes
    -----
    ``X`` may be a batch source: an :class:`~skconcepts.ActivationStore`
    (activations on disk, see :func:`~skconcepts.store.extract_to_store`), or
    an iterable of 2-D arrays or tensors (a list, a ``DataLoader`` yielding
    ``X`` or ``(X, y)``, a generator). ``fit`` then streams it through
    ``partial_fit`` in mini-batches of ``batch_size`` rows, so memory stays
    bounded by one shard of the store (or one chunk) plus one batch;
    ``transform`` and ``score`` of a store or a re-readable iterable read it
    batch by batch (``transform`` returns one array, within ``max_bytes``;
    ``transform_to_store`` writes the concept activations to another store
    instead).

    Examples
    --------
    >>> import numpy as np
    >>> from skconcepts.concepts import KMeansConcepts
    >>> X = np.random.default_rng(0).normal(size=(40, 5)).astype(np.float32)
    >>> km = KMeansConcepts(3, random_state=0).fit(X)
    >>> C = km.transform(X[:2])
    >>> C.sum(axis=1), km.inverse_transform(C).shape
    (array([1., 1.], dtype=float32), (2, 5))
    >>> online = KMeansConcepts(3, random_state=0)
    >>> for chunk in np.array_split(X, 4):
    ...     online = online.partial_fit(chunk)
    >>> online.n_iter_, online.transform(X[:2]).sum(axis=1)
    (4, array([1., 1.], dtype=float32))
    >>> km.typicality(X[:2]).shape
    (2, 3)
    """

    _estimator_class = KMeans
    _estimator_params = ("init", "n_init", "max_iter", "tol", "random_state")
    _n_concepts_param = "n_clusters"
    _stream_estimator_class = MiniBatchKMeans
    _stream_estimator_params = ("init", "n_init", "random_state", "batch_size")
    _stream_estimator_kwargs = {"compute_labels": False}
    _parameter_constraints: dict = {
        **ConceptMixin._parameter_constraints,
        **sklearn_constraints(KMeans, _estimator_params),
        "init": [StrOptions({"k-means++", "random"}), "array-like"],
        "membership": [StrOptions({"hard", "soft"})],
        "temperature": [
            StrOptions({"auto"}),
            Interval(Real, 0, None, closed="neither"),
        ],
        "device": DEVICE_CONSTRAINT,
        "progress": ["boolean", None],
        "batch_size": [Interval(Integral, 1, None, closed="left")],
        "n_passes": [Interval(Integral, 1, None, closed="left")],
        "max_bytes": [Interval(Integral, 0, None, closed="left"), None],
        "n_jobs": [Integral, None],
    }
    _torch_native = True
    _iterative = True

    def __init__(
        self,
        n_concepts=8,
        *,
        membership="hard",
        temperature="auto",
        init="k-means++",
        n_init="auto",
        max_iter=300,
        tol=1e-4,
        random_state=None,
        device="cpu",
        progress=None,
        batch_size=1024,
        n_passes=10,
        max_bytes=None,
        n_jobs=None,
    ):
        self.n_concepts = n_concepts
        self.membership = membership
        self.temperature = temperature
        self.init = init
        self.n_init = n_init
        self.max_iter = max_iter
        self.tol = tol
        self.random_state = random_state
        self.device = device
        self.progress = progress
        self.batch_size = batch_size
        self.n_passes = n_passes
        self.max_bytes = max_bytes
        self.n_jobs = n_jobs

    def _max_concepts(self, n_samples, n_features):
        return n_samples

    def _fit(self, X):
        device = self._fit_device()
        self.estimator_ = self._make_estimator()
        if torch.is_tensor(X):
            X = X.to(device)
            self._fit_torch(X)
        else:
            self.estimator_.fit(X)
        self._read_fitted()
        self.n_iter_ = int(self.estimator_.n_iter_)
        self._set_temperature(float(self.estimator_.inertia_), X.shape[0])
        if self.membership == "hard" and not torch.is_tensor(X):
            # one-hot codes reconstruct each row by its centroid: the error is
            # sqrt(inertia_), with no second pass over X
            self.reconstruction_err_ = float(np.sqrt(self.estimator_.inertia_))
            return None
        codes = self._transform(X)
        self.reconstruction_err_ = reconstruction_error(X, codes, self.components_)
        return codes

    def _read_fitted(self):
        self.components_ = self.estimator_.cluster_centers_

    def _set_temperature(self, inertia, n_samples):
        if self.temperature == "auto":
            self.temperature_ = inertia / n_samples if inertia > 0 else 1.0
        else:
            self.temperature_ = float(self.temperature)

    def _track_batch(self, X, stats):
        # the temperature first: soft codes of the batch depend on it
        d2 = euclidean_distances(X, self.estimator_.cluster_centers_, squared=True)
        stats["inertia"] = stats.get("inertia", 0.0) + float(d2.min(axis=1).sum())
        stats["rows"] = stats.get("rows", 0) + len(X)
        self._set_temperature(stats["inertia"], stats["rows"])
        super()._track_batch(X, stats)

    def _fit_shards(self, source):
        """Lloyd's k-means of a batch source by shard maps (``n_jobs``)."""
        X0 = self._shard_start(source)
        k, d = self.n_concepts, X0.shape[1]
        rng = check_random_state(self.random_state)
        init = self.init
        if isinstance(init, str) and init == "k-means++":
            # on a float64 copy: sklearn's distances of float32 rows upcast
            # them chunk by chunk in every one of its k steps (17 ms against
            # 9.5 ms for 4096x256 rows, k = 16, here; the same seeds), time
            # this process spends alone before the first map
            centers, _ = kmeans_plusplus(X0.astype(np.float64), k, random_state=rng)
        elif isinstance(init, str):  # "random"
            centers = X0[rng.choice(len(X0), k, replace=False)]
        else:
            centers = np.asarray(init, dtype=np.float32)
            if centers.shape != (k, d):
                raise ValueError(
                    f"init has shape {centers.shape}, but KMeansConcepts expects "
                    f"(n_concepts, n_features) = ({k}, {d})."
                )
        centers = np.asarray(centers, dtype=np.float64)
        tol_abs = float(self.tol * X0.var(axis=0, dtype=np.float64).mean())
        n_iter = 0
        with self._shard_pool() as parallel:  # one pool of workers for all passes
            for n_iter in range(1, self.n_passes + 1):
                sums, counts, _ = sum_stats(
                    self._map_shards(
                        _lloyd_sums, source, (centers.astype(np.float32),), parallel
                    )
                )
                new = centers.copy()
                filled = counts > 0
                new[filled] = sums[filled] / counts[filled, None]
                shift = float(((new - centers) ** 2).sum())
                centers = new
                if shift <= tol_abs:
                    break
            centers = centers.astype(np.float32)
            _, counts, inertia = sum_stats(
                self._map_shards(_lloyd_sums, source, (centers,), parallel)
            )
            self._set_temperature(float(inertia), int(counts.sum()))
            self.components_ = np.ascontiguousarray(centers)
            sse = None
            if self.membership == "soft":
                est = self._make_estimator()
                est.cluster_centers_ = centers
                self.estimator_ = est
                (sse,) = sum_stats(
                    self._map_shards(_soft_sse, source, (self,), parallel)
                )
        n = int(counts.sum())
        est = self._make_estimator()
        est.cluster_centers_ = centers
        est.inertia_ = float(inertia)
        est.n_iter_ = n_iter
        est.n_features_in_ = d
        est._n_features_out = k
        est._n_threads = _openmp_effective_n_threads()
        self.estimator_ = est
        self._read_fitted()
        self.n_iter_ = n_iter
        self._set_temperature(float(inertia), n)
        if sse is None:  # hard membership: each row reconstructed by its centroid
            sse = max(float(inertia), 0.0)
        self.reconstruction_err_ = float(np.sqrt(sse))
        self._finish_stream({})

    def _fit_torch(self, X):
        init = self.init
        if not isinstance(init, str):
            init = np.asarray(init, dtype=np.float32)
            if init.shape != (self.n_concepts, X.shape[1]):
                raise ValueError(
                    f"init has shape {init.shape}, but KMeansConcepts expects "
                    f"(n_concepts, n_features) = ({self.n_concepts}, {X.shape[1]})."
                )
        n_init = self.n_init
        if n_init == "auto":
            n_init = 10 if isinstance(init, str) and init == "random" else 1
        if not isinstance(init, str) and n_init != 1:
            warnings.warn(
                f"Explicit initial centers given: running one k-means, not "
                f"n_init={n_init}.",
                RuntimeWarning,
                stacklevel=4,
            )
            n_init = 1
        centers, labels, inertia, n_iter = _kmeans_torch(
            X,
            self.n_concepts,
            init=init,
            n_init=n_init,
            max_iter=self.max_iter,
            tol=self.tol,
            generator=torch_generator(self.random_state, device=X.device),
            progress=self.progress,
        )
        est = self.estimator_
        est.cluster_centers_ = to_numpy(centers)
        est.labels_ = to_numpy(labels, dtype=np.int32)
        est.inertia_ = inertia
        est.n_iter_ = n_iter
        est.n_features_in_ = X.shape[1]
        est._n_features_out = self.n_concepts
        est._n_threads = _openmp_effective_n_threads()

    def _transform(self, X):
        centers = self.estimator_.cluster_centers_
        if torch.is_tensor(X):
            X = X.to(self._runtime_device())
            C = to_tensor(centers, device=X.device)
            d2 = _sq_distances(X, (X**2).sum(dim=1), C)  # (n, k)
            if self.membership == "soft":
                return torch.softmax(-d2 / self.temperature_, dim=1)
            labels = d2.argmin(dim=1)
            return torch.nn.functional.one_hot(labels, len(centers)).to(X.dtype)
        d2 = euclidean_distances(X, centers, squared=True)  # (n, k)
        if self.membership == "soft":
            return softmax(-d2 / self.temperature_, axis=1).astype(np.float32)
        codes = np.zeros(d2.shape, dtype=np.float32)
        codes[np.arange(len(d2)), d2.argmin(axis=1)] = 1
        return codes

    def typicality(self, X):
        """How typical each row is of each concept: minus its squared distance.

        The secondary ranking score of the rows of a concept, used by
        :class:`~skconcepts.TopKInputs` to order rows of equal activation (with
        ``membership="hard"`` every member of a cluster has activation 1.0):
        the members nearest the centroid come first.

        Parameters
        ----------
        X : array-like or torch.Tensor of shape (n_samples, n_features)
            Activations, as ``transform`` takes them (in memory).

        Returns
        -------
        T : ndarray of shape (n_samples, n_concepts)
            ``-||x - c_j||²`` for every row ``x`` and centroid ``c_j``
            (float32, higher means nearer).

        Examples
        --------
        >>> import numpy as np
        >>> from skconcepts.concepts import KMeansConcepts
        >>> X = np.array([[0.0], [2.0], [3.0], [10.0], [12.0]], dtype=np.float32)
        >>> km = KMeansConcepts(2, init=[[1.0], [11.0]]).fit(X)
        >>> km.transform(X)[:, 0]  # the first three rows tie at 1.0
        array([1., 1., 1., 0., 0.], dtype=float32)
        >>> T = km.typicality(X)  # minus the squared distances to 5/3 and 11
        >>> T.shape, int(T[:3, 0].argmax())  # row 1 (2.0) is nearest 5/3
        ((5, 2), 1)
        """
        check_is_fitted(self)
        X = self._check_X(X, reset=False)
        centers = self.estimator_.cluster_centers_
        if torch.is_tensor(X):
            C = to_tensor(centers, device=X.device)
            d2 = _sq_distances(X, (X**2).sum(dim=1), C)
            return to_numpy(-d2)
        d2 = euclidean_distances(X, centers, squared=True)
        return (-d2).astype(np.float32)
