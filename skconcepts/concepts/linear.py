"""Linear concept methods on scikit-learn: PCA, SVD, ICA, sparse PCA, dictionaries.

Each class builds the scikit-learn estimator of the same name in ``fit`` and keeps
it as ``estimator_``; the shared contract lives in
:class:`~skconcepts.concepts._sklearn_wrapper.SklearnConceptsMixin`. PCA and SVD
also run on torch (tensor input, or ``device="cuda"``), with results that match
the scikit-learn path within float32 tolerance (same sign convention as
``sklearn.utils.extmath.svd_flip``).
"""

from __future__ import annotations

from numbers import Integral

import numpy as np
import torch
from sklearn.base import BaseEstimator
from sklearn.decomposition import (
    PCA,
    DictionaryLearning,
    FastICA,
    IncrementalPCA,
    MiniBatchDictionaryLearning,
    SparsePCA,
    TruncatedSVD,
)
from sklearn.utils._param_validation import Interval, StrOptions

from skconcepts.concepts._base import DEVICE_CONSTRAINT, ConceptMixin
from skconcepts.concepts._sklearn_wrapper import (
    SklearnConceptsMixin,
    sklearn_constraints,
)
from skconcepts.concepts._streaming import StreamingConceptsMixin, sum_stats
from skconcepts.utils._torch import to_numpy, to_tensor, torch_generator
from skconcepts.utils._validation import check_n_concepts

__all__ = [
    "PCAConcepts",
    "SVDConcepts",
    "ICAConcepts",
    "SparsePCAConcepts",
    "DictionaryLearningConcepts",
]

#: constraints of the store-related parameters
_MAX_BYTES = {"max_bytes": [Interval(Integral, 0, None, closed="left"), None]}
_STREAM = {
    "batch_size": [Interval(Integral, 1, None, closed="left")],
    "n_passes": [Interval(Integral, 1, None, closed="left")],
    "progress": ["boolean", None],
}


# ---------------------------------------------------------------- torch numerics
def _svd_flip_rows(Vt):
    """Sign of each row of ``Vt`` so its largest-magnitude entry is positive.

    The torch twin of ``svd_flip(None, Vt, u_based_decision=False)``.
    """
    rows = torch.arange(Vt.shape[0], device=Vt.device)
    signs = torch.sign(Vt[rows, Vt.abs().argmax(dim=1)])  # (k,)
    signs[signs == 0] = 1
    return Vt * signs[:, None]


#: rows per block of the float64 moments (a whole batch of the default 4096)
_MOMENT_BLOCK = 4096


def _pca_moments(X, shift):
    """Moments of one batch for the shard-parallel PCA: ``(n, sum, X^T X)``.

    Of the rows shifted by ``shift``, in float64, a block of
    ``_MOMENT_BLOCK`` rows at a time in two buffers allocated once per call
    (no fresh float64 copy of the batch: see :func:`_shard_task`).
    """
    n, d = X.shape
    b = max(1, min(n, _MOMENT_BLOCK))
    block, gram = np.empty((b, d)), np.empty((d, d))
    s, S = np.zeros(d), np.zeros((d, d))
    for start in range(0, n, b):
        Xs = block[: min(b, n - start)]
        np.subtract(X[start : start + len(Xs)], shift, out=Xs)
        s += Xs.sum(axis=0)
        S += np.matmul(Xs.T, Xs, out=gram)
    return n, s, S


_pca_moments.reads_rows_only = True  # map_shards: views of a float32 store


def _randomized_svd_torch(X, k, *, n_oversamples, n_iter, generator):
    """Top-``k`` SVD of ``X`` (n, d) by a QR-normalised randomized range finder."""
    n, d = X.shape
    q = min(k + n_oversamples, n, d)
    G = torch.randn(d, q, generator=generator, device=X.device, dtype=X.dtype)
    Q, _ = torch.linalg.qr(X @ G)  # (n, q)
    for _ in range(n_iter):
        Q, _ = torch.linalg.qr(X.T @ Q)  # (d, q)
        Q, _ = torch.linalg.qr(X @ Q)  # (n, q)
    _, S, Vt = torch.linalg.svd(Q.T @ X, full_matrices=False)  # of (q, d)
    return S[:k], Vt[:k]


def _resolve_pca_solver(svd_solver, n_samples, n_features, k):
    """sklearn's ``svd_solver="auto"`` rule; ``"arpack"`` maps to exact ``"full"``."""
    if svd_solver == "auto":
        if n_features <= 1_000 and n_samples >= 10 * n_features:
            return "covariance_eigh"
        if max(n_samples, n_features) <= 500 or k >= 0.8 * min(n_samples, n_features):
            return "full"
        return "randomized"
    return "full" if svd_solver == "arpack" else svd_solver


def _iterated_power(iterated_power, k, n_samples, n_features):
    if iterated_power == "auto":
        return 7 if k < 0.1 * min(n_samples, n_features) else 4
    return iterated_power


def _pca_torch(X, k, *, svd_solver, iterated_power, n_oversamples, generator):
    """PCA of a float32 tensor X (n, d); returns a dict of numpy fitted arrays."""
    n, d = X.shape
    mean = X.mean(dim=0)  # (d,)
    Xc = X - mean  # (n, d)
    solver = _resolve_pca_solver(svd_solver, n, d, k)
    if solver == "covariance_eigh":
        C = (Xc.T @ Xc).double() / (n - 1)  # (d, d), eigh in float64
        evals, evecs = torch.linalg.eigh(C)
        ev_all = evals.flip(0).clamp_min(0)
        Vt = evecs.flip(1).T.to(X.dtype)
        S = torch.sqrt(ev_all * (n - 1))
    elif solver == "full":
        _, S, Vt = torch.linalg.svd(Xc, full_matrices=False)
        S = S.double()
        ev_all = S**2 / (n - 1)
    else:
        power = _iterated_power(iterated_power, k, n, d)
        S, Vt = _randomized_svd_torch(
            Xc, k, n_oversamples=n_oversamples, n_iter=power, generator=generator
        )
        S = S.double()
        ev_all = S**2 / (n - 1)
    Vt = _svd_flip_rows(Vt[:k])
    total_var = (Xc.double() ** 2).sum() / (n - 1)
    ev = ev_all[:k]
    if k < min(n, d):
        if solver == "randomized":
            noise = (total_var - ev.sum()) / (min(n, d) - k)
        else:
            noise = ev_all[k:].mean()
    else:
        noise = torch.zeros((), dtype=torch.float64)
    return {
        "mean_": to_numpy(mean),
        "components_": to_numpy(Vt),
        "explained_variance_": to_numpy(ev),
        "explained_variance_ratio_": to_numpy(ev / total_var),
        "singular_values_": to_numpy(S[:k]),
        "noise_variance_": float(noise),
        "n_components_": k,
        "n_samples_": n,
        "_fit_svd_solver": solver,
    }


def _truncated_svd_torch(X, k, *, algorithm, n_iter, n_oversamples, generator):
    """TruncatedSVD of a float32 tensor X (n, d); returns numpy fitted arrays."""
    if algorithm == "arpack":
        _, S, Vt = torch.linalg.svd(X, full_matrices=False)
        S, Vt = S[:k], Vt[:k]
    else:
        S, Vt = _randomized_svd_torch(
            X, k, n_oversamples=n_oversamples, n_iter=n_iter, generator=generator
        )
    Vt = _svd_flip_rows(Vt)
    X_new = X @ Vt.T  # (n, k)
    exp_var = X_new.double().var(dim=0, unbiased=False)
    full_var = X.double().var(dim=0, unbiased=False).sum()
    return {
        "components_": to_numpy(Vt),
        "explained_variance_": to_numpy(exp_var),
        "explained_variance_ratio_": to_numpy(exp_var / full_var),
        "singular_values_": to_numpy(S),
    }, X_new


class _TorchLinearMixin(SklearnConceptsMixin):
    """Dispatch to a torch fit when ``X`` is a tensor (see ``ConceptMixin``)."""

    _torch_native = True

    def _fit(self, X):
        device = self._fit_device()
        if not torch.is_tensor(X):
            return super()._fit(X)
        X = X.to(device)
        self.estimator_ = self._make_estimator()
        fitted = self._fit_torch(X)
        for name, value in fitted.items():
            setattr(self.estimator_, name, value)
        self.estimator_.n_features_in_ = X.shape[1]
        self._read_fitted()
        return None  # fit_transform then goes through _transform

    def _transform(self, X):
        if not torch.is_tensor(X):
            return self.estimator_.transform(X)
        X = X.to(self._runtime_device())
        W = to_tensor(self.estimator_.components_, device=X.device)  # (k, d)
        codes = X @ W.T  # (n, k)
        mean = getattr(self.estimator_, "mean_", None)
        if mean is not None:
            codes = codes - to_tensor(mean, device=X.device)[None, :] @ W.T
        return self._scale_codes_torch(codes)

    def _scale_codes_torch(self, codes):
        return codes


# ------------------------------------------------------------------------ PCA
class PCAConcepts(StreamingConceptsMixin, _TorchLinearMixin, BaseEstimator):
    """Concepts as principal components (``sklearn.decomposition.PCA``).

    The concepts are the orthonormal directions of largest variance; a concept
    activation is the (signed) projection of the centred activation on it.
    Activations only need to be centred, not non-negative.

    ``partial_fit``, and ``fit`` of an :class:`~skconcepts.ActivationStore` or
    an iterable of batches, run ``sklearn.decomposition.IncrementalPCA`` (one
    pass, in order) instead; its ``components_``, ``mean_``,
    ``explained_variance_``... feed the same attributes, decoder and
    ``transform``.

    Parameters
    ----------
    n_concepts : int, default=8
        Number of concepts (rows of the dictionary) to learn.
    whiten : bool, default=False
        Scale the concept activations to unit variance. The decoder folds the
        scaling into its weight (``sqrt(explained_variance_)[:, None] *
        components_``), so ``inverse_transform`` stays exact.
    svd_solver : {"auto", "full", "covariance_eigh", "arpack", "randomized"}, \
default="auto"
        As in scikit-learn. On torch, ``"arpack"`` runs the exact ``"full"``
        SVD and ``"auto"`` follows scikit-learn's rule.
    tol : float, default=0.0
        Tolerance of the ``"arpack"`` solver (scikit-learn path).
    iterated_power : int or "auto", default="auto"
        Power iterations of the ``"randomized"`` solver.
    n_oversamples : int, default=10
        Extra random vectors of the ``"randomized"`` solver.
    random_state : int, RandomState instance or None, default=None
        Seed of the initialisation. An int makes ``fit`` reproducible (bitwise
        on the CPU). It seeds a local generator; the global torch seed is never
        touched.
    device : {"cpu", "cuda", "auto"} or torch.device, default="cpu"
        Where the computation runs. ``"auto"`` takes CUDA when available.
        Fitted attributes are always stored as CPU numpy arrays, so a model
        fitted on a GPU loads on a CPU-only machine.
        The torch implementation runs when ``X`` is a tensor or ``device``
        is ``"cuda"``/``"auto"`` (a tensor is moved to ``device``); numpy input
        on the CPU runs scikit-learn. Both give the same ``components_`` (signs
        fixed as by ``svd_flip``) within float32 tolerance, and ``estimator_``
        holds the results either way.
    batch_size : int, default=1024
        Rows per mini-batch when ``fit`` or ``partial_fit`` streams a batch
        source (an :class:`~skconcepts.ActivationStore` or an iterable of 2-D
        batches, whose chunks are regrouped; at least ``n_concepts`` rows), and
        per read when ``transform`` or ``score`` reads one. Unused for
        in-memory data.
        The incremental SVD takes one pass: a store or an iterable is read
        once, in order (its result is close to the exact PCA's, the closer the
        larger the batches).
    max_bytes : int or None, default=None
        Memory budget, in bytes, of ``transform`` of an
        :class:`~skconcepts.ActivationStore` or an iterable of batches: its
        output array must fit in it (``None``: 25% of the RAM available), else
        a ``StoreTooLargeError`` says to write the concepts to disk with
        ``transform_to_store``. ``fit`` streams a batch source and needs no
        budget.
    progress : bool or None, default=None
        Show a tqdm progress bar over the rows when ``fit`` streams a batch
        source (an :class:`~skconcepts.ActivationStore` or an iterable of
        batches) and when ``transform`` or ``score`` read one.
        ``None`` (the default) shows it only when stderr is an interactive
        terminal or a notebook (tqdm's rule); ``True`` always, ``False`` never.
    n_jobs : int or None, default=None
        Shard-parallel ``fit`` of an :class:`~skconcepts.ActivationStore`.
        ``None``: the incremental SVD above. An int: one map over the shards,
        each task summing the moments of its shard (row count, sum and
        ``X^T X`` of the rows, in float64, shifted by the mean of the first
        batch), run by ``joblib.Parallel(n_jobs=n_jobs)`` under the active
        joblib backend (local processes by default, ``parallel_backend("ray")``
        or ``("dask")`` on a cluster); the components are then the top
        eigenvectors of the covariance, i.e. the exact PCA of the store (up to
        float64 rounding). ``n_jobs=1`` runs the same map in this process and
        every ``n_jobs`` gives the same model: the shard sums are added in
        shard order (tested to ``rtol=1e-5``). Needs ``n_features^2`` float64
        per worker. Another source (an iterable of batches) is read in this
        process. ``partial_fit`` and in-memory ``fit`` ignore it.

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
    estimator_ : sklearn.decomposition.PCA or IncrementalPCA
        The fitted scikit-learn estimator (``mean_``, ``explained_variance_``,
        ``explained_variance_ratio_``, ``singular_values_``, ...);
        an ``IncrementalPCA`` after ``partial_fit`` or a streamed ``fit``
        (a ``PCA`` holding the results of a shard-parallel ``fit``).
    n_iter_ : int
        After ``partial_fit`` or a ``fit`` that streamed a batch source: the
        passes over the data, each ``partial_fit`` call counting one.

    See Also
    --------
    SVDConcepts : Uncentred truncated SVD.
    ICAConcepts : Independent rather than uncorrelated concepts.

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
    >>> from skconcepts.concepts import PCAConcepts
    >>> X = np.random.default_rng(0).normal(size=(50, 6)).astype(np.float32)
    >>> pca = PCAConcepts(3).fit(X)
    >>> pca.components_.shape, pca.transform(X).dtype
    ((3, 6), dtype('float32'))
    >>> pca.get_feature_names_out()
    array(['concept0', 'concept1', 'concept2'], dtype=object)
    >>> streamed = PCAConcepts(3).partial_fit(X[:25]).partial_fit(X[25:])
    >>> int(streamed.estimator_.n_samples_seen_), streamed.n_iter_
    (50, 2)
    """

    _estimator_class = PCA
    _stream_estimator_class = IncrementalPCA
    _stream_estimator_params = ("whiten", "batch_size")
    _shuffle_stream = False
    _estimator_params = (
        "whiten",
        "svd_solver",
        "tol",
        "iterated_power",
        "n_oversamples",
        "random_state",
    )
    _parameter_constraints: dict = {
        **ConceptMixin._parameter_constraints,
        **sklearn_constraints(PCA, _estimator_params),
        "device": DEVICE_CONSTRAINT,
        "batch_size": _STREAM["batch_size"],
        "progress": _STREAM["progress"],
        **_MAX_BYTES,
        "n_jobs": [Integral, None],
    }

    def __init__(
        self,
        n_concepts=8,
        *,
        whiten=False,
        svd_solver="auto",
        tol=0.0,
        iterated_power="auto",
        n_oversamples=10,
        random_state=None,
        device="cpu",
        batch_size=1024,
        max_bytes=None,
        progress=None,
        n_jobs=None,
    ):
        self.n_concepts = n_concepts
        self.whiten = whiten
        self.svd_solver = svd_solver
        self.tol = tol
        self.iterated_power = iterated_power
        self.n_oversamples = n_oversamples
        self.random_state = random_state
        self.device = device
        self.batch_size = batch_size
        self.max_bytes = max_bytes
        self.progress = progress
        self.n_jobs = n_jobs

    def _max_concepts(self, n_samples, n_features):
        if n_samples < 2:
            raise ValueError(
                f"PCAConcepts needs at least 2 samples to estimate a variance, got "
                f"n_samples = {n_samples}; pass more rows."
            )
        if self.svd_solver == "arpack":
            return min(n_samples, n_features) - 1
        return min(n_samples, n_features)

    def _stream_n_passes(self):
        return 1  # the incremental SVD takes one pass

    def _fit_shards(self, source):
        """Exact PCA of a batch source from per-shard moments (``n_jobs``)."""
        X0 = self._shard_start(source)
        shift = X0.mean(axis=0, dtype=np.float64)  # (d,): keeps the sums small
        n, s, S = sum_stats(self._map_shards(_pca_moments, source, (shift,)))
        if n < 2:
            self._max_concepts(n, X0.shape[1])  # raises the clear error
        k, d = self.n_concepts, X0.shape[1]
        check_n_concepts(
            k, self._max_concepts(n, d), why=f"n_samples = {n}, n_features = {d}"
        )
        m = s / n  # (d,)
        cov = (S - n * np.outer(m, m)) / (n - 1)  # (d, d)
        cov = (cov + cov.T) / 2
        evals, evecs = np.linalg.eigh(cov)  # ascending
        evals = np.clip(evals[::-1], 0, None)
        top = np.ascontiguousarray(evecs[:, ::-1][:, :k].T)  # (k, d)
        components = to_numpy(_svd_flip_rows(torch.from_numpy(top)))
        est = self._make_estimator()
        f32 = np.float32  # as sklearn's PCA fitted on float32 rows
        est.components_ = np.ascontiguousarray(components, dtype=f32)
        est.mean_ = (shift + m).astype(f32)
        est.n_components_ = k
        est.n_samples_ = int(n)
        est.n_features_in_ = d
        est.explained_variance_ = evals[:k].astype(f32)
        total = float(evals.sum())
        ratio = evals[:k] / total if total > 0 else evals[:k]
        est.explained_variance_ratio_ = ratio.astype(f32)
        est.singular_values_ = np.sqrt(evals[:k] * (n - 1)).astype(f32)
        est.noise_variance_ = f32(evals[k:].mean() if k < d else 0.0)
        self.estimator_ = est
        self._read_fitted()
        self.n_iter_ = 1
        self._finish_stream({})

    def _fit_torch(self, X):
        return _pca_torch(
            X,
            self.n_concepts,
            svd_solver=self.svd_solver,
            iterated_power=self.iterated_power,
            n_oversamples=self.n_oversamples,
            generator=torch_generator(self.random_state, device=X.device),
        )

    def _scale_codes_torch(self, codes):
        if not self.whiten:
            return codes
        scale = to_tensor(self._whiten_scale(), device=codes.device)
        return codes / scale

    def _whiten_scale(self):
        scale = np.sqrt(self.estimator_.explained_variance_)
        return np.maximum(scale, np.finfo(scale.dtype).eps)

    def _decoder_weight(self):
        if self.whiten:
            ev = self.estimator_.explained_variance_
            return (np.sqrt(ev[:, np.newaxis]) * self.components_).astype(np.float32)
        return self.components_

    def _decoder_offset(self):
        return self.estimator_.mean_


# ------------------------------------------------------------------------ SVD
class SVDConcepts(_TorchLinearMixin, BaseEstimator):
    """Concepts as truncated SVD directions (``sklearn.decomposition.TruncatedSVD``).

    Like :class:`PCAConcepts` without centring: the concepts are the top right
    singular vectors of ``X`` and ``inverse_transform(C) = C @ components_``.

    Parameters
    ----------
    n_concepts : int, default=8
        Number of concepts (rows of the dictionary) to learn: at most
        ``min(n_samples, n_features)`` (smaller than that with
        ``algorithm="arpack"``).
    algorithm : {"arpack", "randomized"}, default="randomized"
        SVD solver. On torch, ``"arpack"`` runs the exact SVD.
    n_iter : int, default=5
        Power iterations of the randomized solver.
    n_oversamples : int, default=10
        Extra random vectors of the randomized solver.
    power_iteration_normalizer : {"auto", "QR", "LU", "none"}, default="auto"
        Normaliser of the power iterations (scikit-learn path; torch uses QR).
    tol : float, default=0.0
        Tolerance of the ``"arpack"`` solver (scikit-learn path).
    random_state : int, RandomState instance or None, default=None
        Seed of the initialisation. An int makes ``fit`` reproducible (bitwise
        on the CPU). It seeds a local generator; the global torch seed is never
        touched.
    device : {"cpu", "cuda", "auto"} or torch.device, default="cpu"
        Where the computation runs. ``"auto"`` takes CUDA when available.
        Fitted attributes are always stored as CPU numpy arrays, so a model
        fitted on a GPU loads on a CPU-only machine.
        The torch implementation runs when ``X`` is a tensor or ``device``
        is ``"cuda"``/``"auto"`` (a tensor is moved to ``device``); numpy input
        on the CPU runs scikit-learn. Both give the same ``components_`` (signs
        fixed as by ``svd_flip``) within float32 tolerance, and ``estimator_``
        holds the results either way.
    max_bytes : int or None, default=None
        Memory budget, in bytes, for loading an
        :class:`~skconcepts.ActivationStore` passed to ``fit`` (this method
        cannot stream it) and for the output of ``transform`` of a store or an
        iterable of batches. ``None`` allows 25% of the RAM available. Over the
        budget a ``StoreTooLargeError`` (a ``MemoryError``) gives the bytes
        needed and the estimators that stream a store instead.
    progress : bool or None, default=None
        Show a tqdm progress bar over the rows when ``transform`` or ``score``
        read a batch source (an :class:`~skconcepts.ActivationStore` or an
        iterable of batches); this method's ``fit`` does not stream.
        ``None`` (the default) shows it only when stderr is an interactive
        terminal or a notebook (tqdm's rule); ``True`` always, ``False`` never.

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
    estimator_ : sklearn.decomposition.TruncatedSVD
        The fitted scikit-learn estimator (``explained_variance_``,
        ``singular_values_``, ...).

    See Also
    --------
    PCAConcepts : The centred version.

    Examples
    --------
    >>> import numpy as np
    >>> from skconcepts.concepts import SVDConcepts
    >>> X = np.random.default_rng(0).normal(size=(50, 6)).astype(np.float32)
    >>> svd = SVDConcepts(2, random_state=0).fit(X)
    >>> svd.inverse_transform(svd.transform(X)).shape
    (50, 6)
    """

    _estimator_class = TruncatedSVD
    _estimator_params = (
        "algorithm",
        "n_iter",
        "n_oversamples",
        "power_iteration_normalizer",
        "tol",
        "random_state",
    )
    _parameter_constraints: dict = {
        **ConceptMixin._parameter_constraints,
        **sklearn_constraints(TruncatedSVD, _estimator_params),
        "device": DEVICE_CONSTRAINT,
        "progress": ["boolean", None],
        **_MAX_BYTES,
    }

    def __init__(
        self,
        n_concepts=8,
        *,
        algorithm="randomized",
        n_iter=5,
        n_oversamples=10,
        power_iteration_normalizer="auto",
        tol=0.0,
        random_state=None,
        device="cpu",
        max_bytes=None,
        progress=None,
    ):
        self.n_concepts = n_concepts
        self.algorithm = algorithm
        self.n_iter = n_iter
        self.n_oversamples = n_oversamples
        self.power_iteration_normalizer = power_iteration_normalizer
        self.tol = tol
        self.random_state = random_state
        self.device = device
        self.max_bytes = max_bytes
        self.progress = progress

    def _max_concepts(self, n_samples, n_features):
        # the rank of X bounds the number of singular directions: the randomized
        # solver would silently return min(n_samples, n_features) of them; arpack
        # (as in TruncatedSVD) needs one fewer
        if self.algorithm == "arpack":
            if min(n_samples, n_features) < 2:
                raise ValueError(
                    f"SVDConcepts(algorithm='arpack') needs at least 2 samples and "
                    f"2 features, got n_samples = {n_samples}, n_features = "
                    f"{n_features}; pass more rows or use algorithm='randomized'."
                )
            return min(n_samples, n_features) - 1
        return min(n_samples, n_features)

    def _fit_torch(self, X):
        fitted, _ = _truncated_svd_torch(
            X,
            self.n_concepts,
            algorithm=self.algorithm,
            n_iter=self.n_iter,
            n_oversamples=self.n_oversamples,
            generator=torch_generator(self.random_state, device=X.device),
        )
        return fitted


# ------------------------------------------------------------------------ ICA
class ICAConcepts(SklearnConceptsMixin, BaseEstimator):
    """Concepts as independent components (``sklearn.decomposition.FastICA``).

    The concepts are the columns of the mixing matrix: ``components_ =
    estimator_.mixing_.T`` and ``inverse_transform(C) = C @ components_ +
    estimator_.mean_``, exactly FastICA's ``inverse_transform``. The unmixing
    matrix (the encoder) stays in ``estimator_.components_``.

    Parameters
    ----------
    n_concepts : int, default=8
        Number of concepts (rows of the dictionary) to learn. At most
        ``min(n_samples, n_features)``.
    algorithm : {"parallel", "deflation"}, default="parallel"
        FastICA algorithm.
    whiten : {"unit-variance", "arbitrary-variance"}, default="unit-variance"
        Whitening strategy (``whiten=False`` is not offered: it ignores
        ``n_concepts``).
    fun : {"logcosh", "exp", "cube"} or callable, default="logcosh"
        Contrast function.
    fun_args : dict, default=None
        Arguments of ``fun``.
    max_iter : int, default=200
        Maximum number of iterations.
    tol : float, default=1e-4
        Tolerance on the update of the unmixing matrix.
    whiten_solver : {"svd", "eigh"}, default="svd"
        Solver of the whitening step.
    random_state : int, RandomState instance or None, default=None
        Seed of the initialisation. An int makes ``fit`` reproducible (bitwise
        on the CPU). It seeds a local generator; the global torch seed is never
        touched.
    device : {"cpu", "auto"}, default="cpu"
        Where the computation runs. This method runs scikit-learn on the CPU
        only: ``"auto"`` means the CPU and a CUDA device raises a
        ``ValueError`` at ``fit`` (the parameter is here so that every concept
        estimator takes it).
    max_bytes : int or None, default=None
        Memory budget, in bytes, for loading an
        :class:`~skconcepts.ActivationStore` passed to ``fit`` (this method
        cannot stream it) and for the output of ``transform`` of a store or an
        iterable of batches. ``None`` allows 25% of the RAM available. Over the
        budget a ``StoreTooLargeError`` (a ``MemoryError``) gives the bytes
        needed and the estimators that stream a store instead.
    progress : bool or None, default=None
        Show a tqdm progress bar over the rows when ``transform`` or ``score``
        read a batch source (an :class:`~skconcepts.ActivationStore` or an
        iterable of batches); this method's ``fit`` does not stream.
        ``None`` (the default) shows it only when stderr is an interactive
        terminal or a notebook (tqdm's rule); ``True`` always, ``False`` never.

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
        Iterations run by FastICA.
    reconstruction_err_ : float
        Frobenius norm of ``X - inverse_transform(transform(X))`` on the
        training data.
    estimator_ : sklearn.decomposition.FastICA
        The fitted scikit-learn estimator (``mixing_``, ``mean_``, ...).

    See Also
    --------
    PCAConcepts : Uncorrelated, ordered components.

    Examples
    --------
    >>> import numpy as np
    >>> from skconcepts.concepts import ICAConcepts
    >>> X = np.random.default_rng(0).laplace(size=(60, 5)).astype(np.float32)
    >>> ica = ICAConcepts(3, random_state=0).fit(X)
    >>> ica.components_.shape, ica.n_iter_ > 0
    ((3, 5), True)
    """

    _estimator_class = FastICA
    _estimator_params = (
        "algorithm",
        "whiten",
        "fun",
        "fun_args",
        "max_iter",
        "tol",
        "whiten_solver",
        "random_state",
    )
    _parameter_constraints: dict = {
        **ConceptMixin._parameter_constraints,
        **sklearn_constraints(FastICA, _estimator_params),
        "whiten": [StrOptions({"unit-variance", "arbitrary-variance"})],
        "device": DEVICE_CONSTRAINT,
        "progress": ["boolean", None],
        **_MAX_BYTES,
    }
    _iterative = True
    _cpu_only = True

    def __init__(
        self,
        n_concepts=8,
        *,
        algorithm="parallel",
        whiten="unit-variance",
        fun="logcosh",
        fun_args=None,
        max_iter=200,
        tol=1e-4,
        whiten_solver="svd",
        random_state=None,
        device="cpu",
        max_bytes=None,
        progress=None,
    ):
        self.n_concepts = n_concepts
        self.algorithm = algorithm
        self.whiten = whiten
        self.fun = fun
        self.fun_args = fun_args
        self.max_iter = max_iter
        self.tol = tol
        self.whiten_solver = whiten_solver
        self.random_state = random_state
        self.device = device
        self.max_bytes = max_bytes
        self.progress = progress

    def _max_concepts(self, n_samples, n_features):
        return min(n_samples, n_features)

    def _fit(self, X):
        # whitening divides by the singular values of the centred X: a zero one
        # (constant X, or fewer varying directions than n_concepts) gave a bare
        # "array must not contain infs or NaNs" from inside FastICA
        if not np.any(X.max(axis=0) > X.min(axis=0)):
            raise ValueError(
                "ICAConcepts cannot fit X: it has zero variance (every row is "
                "the same), so there is no independent component to find; pass "
                "activations that vary across rows."
            )
        try:
            return super()._fit(X)
        except (ValueError, np.linalg.LinAlgError) as exc:
            if "inf" not in str(exc) and "NaN" not in str(exc):
                raise
            raise ValueError(
                f"ICAConcepts could not whiten X: its centred activations vary "
                f"in fewer than n_concepts={self.n_concepts} directions (a "
                "singular value is zero), so whitening divides by zero; lower "
                "n_concepts to the rank of the centred X, or use "
                "whiten_solver='eigh'."
            ) from exc

    def _read_fitted(self):
        self.components_ = self.estimator_.mixing_.T

    def _decoder_offset(self):
        return self.estimator_.mean_


# ------------------------------------------------------------------ SparsePCA
class SparsePCAConcepts(SklearnConceptsMixin, BaseEstimator):
    """Concepts as sparse principal components (``sklearn.decomposition.SparsePCA``).

    Each concept loads on few features (L1 penalty ``alpha``). Concept
    activations are ridge-regression codes of the centred activations;
    ``inverse_transform(C) = C @ components_ + estimator_.mean_``.

    Parameters
    ----------
    n_concepts : int, default=8
        Number of concepts (rows of the dictionary) to learn.
    alpha : float, default=1
        Sparsity of the components; higher is sparser.
    ridge_alpha : float, default=0.01
        Ridge shrinkage of ``transform``.
    max_iter : int, default=1000
        Maximum number of iterations.
    tol : float, default=1e-8
        Tolerance of the stopping condition.
    method : {"lars", "cd"}, default="lars"
        Lasso solver (``"cd"`` is faster for sparse components).
    random_state : int, RandomState instance or None, default=None
        Seed of the initialisation. An int makes ``fit`` reproducible (bitwise
        on the CPU). It seeds a local generator; the global torch seed is never
        touched.
    device : {"cpu", "auto"}, default="cpu"
        Where the computation runs. This method runs scikit-learn on the CPU
        only: ``"auto"`` means the CPU and a CUDA device raises a
        ``ValueError`` at ``fit`` (the parameter is here so that every concept
        estimator takes it).
    max_bytes : int or None, default=None
        Memory budget, in bytes, for loading an
        :class:`~skconcepts.ActivationStore` passed to ``fit`` (this method
        cannot stream it) and for the output of ``transform`` of a store or an
        iterable of batches. ``None`` allows 25% of the RAM available. Over the
        budget a ``StoreTooLargeError`` (a ``MemoryError``) gives the bytes
        needed and the estimators that stream a store instead.
    progress : bool or None, default=None
        Show a tqdm progress bar over the rows when ``transform`` or ``score``
        read a batch source (an :class:`~skconcepts.ActivationStore` or an
        iterable of batches); this method's ``fit`` does not stream.
        ``None`` (the default) shows it only when stderr is an interactive
        terminal or a notebook (tqdm's rule); ``True`` always, ``False`` never.

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
        Iterations run.
    reconstruction_err_ : float
        Frobenius norm of ``X - inverse_transform(transform(X))`` on the
        training data.
    estimator_ : sklearn.decomposition.SparsePCA
        The fitted scikit-learn estimator (``mean_``, ...).

    See Also
    --------
    DictionaryLearningConcepts : Sparse codes instead of sparse components.

    Examples
    --------
    >>> import numpy as np
    >>> from skconcepts.concepts import SparsePCAConcepts
    >>> X = np.random.default_rng(0).normal(size=(30, 6)).astype(np.float32)
    >>> spca = SparsePCAConcepts(2, max_iter=5, random_state=0).fit(X)
    >>> spca.transform(X).shape
    (30, 2)
    """

    _estimator_class = SparsePCA
    _estimator_params = (
        "alpha",
        "ridge_alpha",
        "max_iter",
        "tol",
        "method",
        "random_state",
    )
    _parameter_constraints: dict = {
        **ConceptMixin._parameter_constraints,
        **sklearn_constraints(SparsePCA, _estimator_params),
        "device": DEVICE_CONSTRAINT,
        "progress": ["boolean", None],
        **_MAX_BYTES,
    }
    _iterative = True
    _cpu_only = True

    def __init__(
        self,
        n_concepts=8,
        *,
        alpha=1,
        ridge_alpha=0.01,
        max_iter=1000,
        tol=1e-8,
        method="lars",
        random_state=None,
        device="cpu",
        max_bytes=None,
        progress=None,
    ):
        self.n_concepts = n_concepts
        self.alpha = alpha
        self.ridge_alpha = ridge_alpha
        self.max_iter = max_iter
        self.tol = tol
        self.method = method
        self.random_state = random_state
        self.device = device
        self.max_bytes = max_bytes
        self.progress = progress

    def _decoder_offset(self):
        return self.estimator_.mean_


# --------------------------------------------------------- DictionaryLearning
class DictionaryLearningConcepts(
    StreamingConceptsMixin, SklearnConceptsMixin, BaseEstimator
):
    """Concepts as a sparse-coding dictionary (``DictionaryLearning``).

    Learns atoms ``components_`` such that each activation is a sparse
    combination of few atoms; ``transform`` is the sparse code (by
    ``transform_algorithm``) and ``inverse_transform(C) = C @ components_``. The
    dictionary may be overcomplete (``n_concepts > n_features``).

    ``partial_fit``, and ``fit`` of an :class:`~skconcepts.ActivationStore` or
    an iterable of batches, run
    ``sklearn.decomposition.MiniBatchDictionaryLearning`` (online updates from
    running sufficient statistics) with the same parameters.

    Parameters
    ----------
    n_concepts : int, default=8
        Number of concepts (rows of the dictionary) to learn.
    alpha : float, default=1.0
        Sparsity of the codes during fitting.
    max_iter : int, default=1000
        Maximum number of iterations.
    tol : float, default=1e-8
        Tolerance of the stopping condition.
    fit_algorithm : {"lars", "cd"}, default="lars"
        Solver of the sparse coding step during fitting.
    transform_algorithm : {"lasso_lars", "lasso_cd", "lars", "omp", "threshold"}, \
default="omp"
        Sparse coding algorithm of ``transform``.
    transform_n_nonzero_coefs : int, default=None
        Non-zero codes per row for ``"lars"``/``"omp"`` (default: 10% of
        ``n_features``).
    transform_alpha : float, default=None
        Penalty of the lasso/threshold transforms (default: ``alpha``).
    transform_max_iter : int, default=1000
        Iterations of the ``"lasso_cd"``/``"lasso_lars"`` transforms.
    positive_code : bool, default=False
        Force non-negative codes.
    positive_dict : bool, default=False
        Force a non-negative dictionary.
    random_state : int, RandomState instance or None, default=None
        Seed of the initialisation. An int makes ``fit`` reproducible (bitwise
        on the CPU). It seeds a local generator; the global torch seed is never
        touched.
    device : {"cpu", "auto"}, default="cpu"
        Where the computation runs. This method runs scikit-learn on the CPU
        only: ``"auto"`` means the CPU and a CUDA device raises a
        ``ValueError`` at ``fit`` (the parameter is here so that every concept
        estimator takes it).
    batch_size : int, default=256
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
    progress : bool or None, default=None
        Show a tqdm progress bar over the rows when ``fit`` streams a batch
        source (an :class:`~skconcepts.ActivationStore` or an iterable of
        batches) and when ``transform`` or ``score`` read one.
        ``None`` (the default) shows it only when stderr is an interactive
        terminal or a notebook (tqdm's rule); ``True`` always, ``False`` never.

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
        Iterations run; passes over the data after ``partial_fit`` or a
        ``fit`` of a store (each ``partial_fit`` call counting one).
    reconstruction_err_ : float
        Frobenius norm of ``X - inverse_transform(transform(X))`` on the
        training data; after ``partial_fit`` or a streamed ``fit``, on the
        rows of the last call or pass, each taken just after its update.
    estimator_ : sklearn.decomposition.DictionaryLearning or \
MiniBatchDictionaryLearning
        The fitted scikit-learn estimator (``error_``, ...); a
        ``MiniBatchDictionaryLearning`` after ``partial_fit`` or a ``fit`` of a
        store.

    See Also
    --------
    SparsePCAConcepts : Sparse components instead of sparse codes.

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
    >>> from skconcepts.concepts import DictionaryLearningConcepts
    >>> X = np.random.default_rng(0).normal(size=(30, 6)).astype(np.float32)
    >>> dico = DictionaryLearningConcepts(4, max_iter=5, random_state=0).fit(X)
    >>> dico.components_.shape
    (4, 6)
    >>> online = DictionaryLearningConcepts(4, random_state=0).partial_fit(X)
    >>> online.partial_fit(X).n_iter_
    2
    """

    _estimator_class = DictionaryLearning
    _stream_estimator_class = MiniBatchDictionaryLearning
    _stream_estimator_params = (
        "alpha",
        "fit_algorithm",
        "transform_algorithm",
        "transform_n_nonzero_coefs",
        "transform_alpha",
        "transform_max_iter",
        "positive_code",
        "positive_dict",
        "random_state",
        "batch_size",
    )
    _estimator_params = (
        "alpha",
        "max_iter",
        "tol",
        "fit_algorithm",
        "transform_algorithm",
        "transform_n_nonzero_coefs",
        "transform_alpha",
        "transform_max_iter",
        "positive_code",
        "positive_dict",
        "random_state",
    )
    _parameter_constraints: dict = {
        **ConceptMixin._parameter_constraints,
        **sklearn_constraints(DictionaryLearning, _estimator_params),
        **_STREAM,
        "device": DEVICE_CONSTRAINT,
        **_MAX_BYTES,
    }
    _iterative = True
    _cpu_only = True

    def __init__(
        self,
        n_concepts=8,
        *,
        alpha=1.0,
        max_iter=1000,
        tol=1e-8,
        fit_algorithm="lars",
        transform_algorithm="omp",
        transform_n_nonzero_coefs=None,
        transform_alpha=None,
        transform_max_iter=1000,
        positive_code=False,
        positive_dict=False,
        random_state=None,
        device="cpu",
        batch_size=256,
        n_passes=10,
        max_bytes=None,
        progress=None,
    ):
        self.n_concepts = n_concepts
        self.alpha = alpha
        self.max_iter = max_iter
        self.tol = tol
        self.fit_algorithm = fit_algorithm
        self.transform_algorithm = transform_algorithm
        self.transform_n_nonzero_coefs = transform_n_nonzero_coefs
        self.transform_alpha = transform_alpha
        self.transform_max_iter = transform_max_iter
        self.positive_code = positive_code
        self.positive_dict = positive_dict
        self.random_state = random_state
        self.device = device
        self.batch_size = batch_size
        self.n_passes = n_passes
        self.max_bytes = max_bytes
        self.progress = progress
