"""Non-negative factorisations as concept estimators.

:class:`NMFConcepts` (``X >= 0``), :class:`SemiNMFConcepts` (signed ``X``, codes
``>= 0``) and :class:`ConvexNMFConcepts` (signed ``X``, concepts are convex
combinations of training rows). The default solvers are the torch solvers of
:mod:`skconcepts.concepts._solvers`; ``solver="oc-..."`` runs the corresponding
optimiser of ``overcomplete.optimization`` instead (imported lazily).

:class:`NMFConcepts` and :class:`SemiNMFConcepts` also learn online
(``partial_fit``, ``fit`` of an activation store or of an iterable of
batches): each mini-batch gets its
codes from the current dictionary, adds ``Z^T Z`` and ``Z^T X`` to running
statistics, and the dictionary is updated from them (HALS sweeps for NMF, the
exact least-squares step for semi-NMF), as in Mairal et al. (2010).
"""

from __future__ import annotations

import warnings
from numbers import Integral, Real

import numpy as np
import torch
from sklearn.base import BaseEstimator
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import Interval, StrOptions

from skconcepts.concepts import _solvers
from skconcepts.concepts._base import DEVICE_CONSTRAINT, ConceptMixin
from skconcepts.concepts._streaming import StreamingConceptsMixin, sum_stats
from skconcepts.utils._torch import to_numpy, torch_generator

__all__ = ["NMFConcepts", "SemiNMFConcepts", "ConvexNMFConcepts"]

#: rows above which overcomplete's convex ``mu`` solver (an n x n Gram) is refused
_OC_CONVEX_MU_MAX_ROWS = 16384

#: ``top_k="auto"``: active concepts per row, chosen from the concept-quality
#: table (bench/bench_quality.py): 2 names the most topics with 25% active
_AUTO_TOP_K = 2


def _as_tensor(X, device):
    """Float32 tensor on ``device``; a CPU numpy array is shared, not copied."""
    if isinstance(X, torch.Tensor):
        X = X.to(device=device, dtype=torch.float32)
    else:
        with warnings.catch_warnings():  # read-only arrays: X is never written
            warnings.simplefilter("ignore", UserWarning)
            X = torch.as_tensor(np.asarray(X), dtype=torch.float32, device=device)
    return X if X.is_contiguous() else X.contiguous()


class _BaseNMFConcepts(ConceptMixin, BaseEstimator):
    """Shared fit/transform of the three factorisations (codes ``>= 0``)."""

    _torch_native = True

    def __init__(
        self,
        n_concepts=8,
        *,
        solver=None,
        init=None,
        max_iter=200,
        tol=1e-4,
        random_state=None,
        device="cpu",
        progress=None,
        max_bytes=None,
    ):
        self.n_concepts = n_concepts
        self.solver = solver
        self.init = init
        self.max_iter = max_iter
        self.tol = tol
        self.random_state = random_state
        self.device = device
        self.progress = progress
        self.max_bytes = max_bytes

    # ------------------------------------------------------------------ hooks
    def _fit(self, X):
        device = self._runtime_device()
        X = _as_tensor(X, device)
        self._check_input_values(X, "fit")
        # tiny activations are fitted scaled up by a power of two (exact), so
        # that their products do not underflow in float32; the dictionary and
        # the error are scaled back, the codes do not change
        X, e = _solvers.tiny_scaled_up(X)
        rng = check_random_state(self.random_state)
        generator = torch_generator(rng)  # CPU stream: same init on every device
        if self.solver.startswith("oc-"):
            seed = int(rng.randint(0, 2**31 - 1))
            # overcomplete draws from the global RNG: seed it, scoped and restored
            with torch.random.fork_rng(devices=_cuda_devices(device)):
                torch.manual_seed(seed)
                result = self._fit_overcomplete(X, generator)
        else:
            result = self._fit_torch(X, generator)
        top_k = self._top_k()
        components = result.components
        if top_k is not None and top_k < self.n_concepts:
            components = _solvers.top_k_refine(
                X, components, top_k, self._refine_step, n_iter=self._refine_iter
            )
        components = np.ascontiguousarray(to_numpy(components))
        # the codes of the training rows are exactly what transform returns
        D = torch.as_tensor(components, device=device)
        codes, sq_error = _solvers.codes_and_error(
            X, D, progress=self.progress, top_k=top_k
        )
        self.components_ = np.ldexp(components, e) if e else components
        self.n_iter_ = int(result.n_iter)
        self.reconstruction_err_ = float(np.ldexp(np.sqrt(max(sq_error, 0.0)), e))
        return codes

    def _transform(self, X):
        device = self._runtime_device()
        X = _as_tensor(X, device)
        self._check_input_values(X, "transform")
        D = torch.as_tensor(np.ascontiguousarray(self.components_), device=device)
        return _solvers.top_k_codes(X, D, self._top_k(), progress=self.progress)

    def _check_input_values(self, X, method):
        """Hook: NMF rejects negative values."""

    #: alternations of sparse codes and dictionary after the dense fit (top_k)
    _refine_iter = 20

    def _top_k(self):
        """``top_k`` checked against ``n_concepts`` (``None``: dense codes)."""
        top_k = getattr(self, "top_k", None)
        if top_k == "auto":
            return min(_AUTO_TOP_K, self.n_concepts)
        if top_k is not None and top_k > self.n_concepts:
            raise ValueError(
                f"top_k={top_k} is larger than n_concepts={self.n_concepts}: a row "
                f"cannot have more active concepts than there are concepts. Use "
                f"top_k <= {self.n_concepts}, or top_k=None for dense codes."
            )
        return top_k

    def _refine_step(self, M, N, D):
        """Dictionary step of the sparse refinement (``M = Z^T X``, ``N = Z^T Z``)."""
        return _solvers.least_squares_dictionary(M, N)


class _OnlineNMFMixin(StreamingConceptsMixin):
    """Online learning (``partial_fit``, streamed ``fit``) of NMF and semi-NMF.

    Subclasses say how the first batch initialises the dictionary
    (``_stream_init``) and how the dictionary is updated from the running
    statistics ``A = sum C^T C`` (k, k) and ``B = sum C^T X`` (k, d)
    (``_dict_step``).
    """

    #: track reconstruction_err_ over the last pass
    _iterative = True

    def _partial_fit(self, X, first):
        device = self._runtime_device()
        X = _as_tensor(X, device)  # (m, d)
        self._check_input_values(X, "partial_fit")
        if first:
            generator = torch_generator(check_random_state(self.random_state))
            D = self._stream_init(X, generator)  # (k, d)
            k, d = D.shape
            self._stream_stats = (np.zeros((k, k)), np.zeros((k, d)))
        else:
            D = torch.as_tensor(self.components_, device=device)
        Z = _solvers.top_k_codes(X, D, self._top_k())  # (m, k), as transform
        A, B = self._stream_stats
        A += to_numpy(Z.T @ Z, dtype=np.float64)
        B += to_numpy(Z.T @ X, dtype=np.float64)
        A32 = torch.as_tensor(A, dtype=torch.float32, device=device)
        B32 = torch.as_tensor(B, dtype=torch.float32, device=device)
        self.components_ = np.ascontiguousarray(to_numpy(self._dict_step(D, A32, B32)))

    def _begin_pass(self):
        A, B = self._stream_stats
        A *= self.forget_factor
        B *= self.forget_factor

    def _fit_shards(self, source):
        """Alternating fit of a batch source by shard maps (``n_jobs``).

        Each of the ``n_passes`` passes maps the shards: with the dictionary
        fixed, a task computes the codes of its rows (as ``transform``) and
        returns ``Z^T Z``, ``Z^T X`` and the squared error; the dictionary is
        then updated once from the summed statistics (``_dict_step``).
        """
        device = self._runtime_device()
        X0 = _as_tensor(self._shard_start(source), device)
        self._check_input_values(X0, "fit")
        generator = torch_generator(check_random_state(self.random_state))
        D = self._stream_init(X0, generator)  # (k, d)
        sse = 0.0
        with self._shard_pool() as parallel:  # one pool of workers for all passes
            for _ in range(self.n_passes):
                D_np = np.ascontiguousarray(to_numpy(D), dtype=np.float32)
                A, B, sse = sum_stats(
                    self._map_shards(_nmf_pass_stats, source, (D_np, self), parallel)
                )
                A32 = torch.as_tensor(A, dtype=torch.float32, device=device)
                B32 = torch.as_tensor(B, dtype=torch.float32, device=device)
                D = self._dict_step(D, A32, B32)
        self.__dict__.pop("_stream_stats", None)
        self.components_ = np.ascontiguousarray(to_numpy(D), dtype=np.float32)
        self.n_iter_ = self.n_passes
        self._finish_stream({"sse": max(float(sse), 0.0)})


def _nmf_pass_stats(X, D, estimator):
    """One batch of a shard-parallel pass: ``(Z^T Z, Z^T X, ||X - Z D||^2)``.

    ``Z`` are the codes of the rows ``X`` (m, d) for the dictionary ``D``
    (k, d), as ``transform`` computes them, on the CPU, in float64 sums.
    """
    Xt = torch.from_numpy(np.ascontiguousarray(X, dtype=np.float32))
    estimator._check_input_values(Xt, "fit")
    Dt = torch.from_numpy(D)
    Z = _solvers.top_k_codes(Xt, Dt, estimator._top_k())  # (m, k), as transform
    Z64, X64 = to_numpy(Z, dtype=np.float64), Xt.double().numpy()
    R = X64 - Z64 @ D.astype(np.float64)  # (m, d)
    return Z64.T @ Z64, Z64.T @ X64, float(np.sum(R * R))


def _constraints(solvers, inits, streaming=False, top_k=False):
    """``_parameter_constraints`` of a subclass with its solver and init names."""
    constraints = {
        **ConceptMixin._parameter_constraints,
        "solver": [StrOptions(set(solvers))],
        "init": [StrOptions(set(inits)), None],
        "max_iter": [Interval(Integral, 1, None, closed="left")],
        "tol": [Interval(Real, 0, None, closed="left")],
        "random_state": ["random_state"],
        "device": DEVICE_CONSTRAINT,
        "progress": ["boolean", None],
        "max_bytes": [Interval(Integral, 0, None, closed="left"), None],
    }
    if top_k:
        constraints["top_k"] = [
            Interval(Integral, 1, None, closed="left"),
            StrOptions({"auto"}),
            None,
        ]
    if streaming:
        constraints.update(
            batch_size=[Interval(Integral, 1, None, closed="left")],
            n_passes=[Interval(Integral, 1, None, closed="left")],
            forget_factor=[Interval(Real, 0, 1, closed="both")],
            n_jobs=[Integral, None],
        )
    return constraints


def _cuda_devices(device):
    """CUDA devices whose RNG ``torch.manual_seed`` touches (all of them)."""
    return list(range(torch.cuda.device_count())) if device.type == "cuda" else []


def _oc_sq_error(X, Z, D):
    """``||X - Z D||^2`` in float64, by chunks of rows (for overcomplete's results)."""
    total = 0.0
    for start in range(0, X.shape[0], 8192):
        R = X[start : start + 8192] - Z[start : start + 8192] @ D
        total += float(torch.linalg.vector_norm(R, dtype=torch.float64) ** 2)
    return total


# ===================================================================== NMF
class NMFConcepts(_OnlineNMFMixin, _BaseNMFConcepts):
    """Concepts from non-negative matrix factorisation: ``X ~ C @ components_``.

    Both the concept activations ``C`` and the dictionary ``components_`` are
    non-negative, which makes concepts additive parts of the activations. ``X``
    must be non-negative: for signed activations use :class:`SemiNMFConcepts`, or
    make them non-negative first with :class:`~skconcepts.NonNegative`.

    Parameters
    ----------
    n_concepts : int, default=8
        Number of concepts (rows of the dictionary) to learn.

    solver : {"hals", "oc-hals", "oc-mu", "oc-pgd", "oc-anls"}, default="hals"
        ``"hals"``: accelerated hierarchical alternating least squares in torch
        (several HALS sweeps per product with the data, extrapolation with
        restarts; two ``n x d x k`` products per iteration). ``"oc-<name>"`` runs
        ``overcomplete.optimization.NMF(solver=<name>)``'s optimiser from the same
        initialisation (``hals``, multiplicative updates ``mu``, projected
        gradient ``pgd`` or alternating NNLS ``anls``).

    init : {"nndsvd", "nndsvda", "nndsvdar", "random"}, default=None
        Initialisation, as in :class:`sklearn.decomposition.NMF`. ``None`` takes
        ``"nndsvda"`` when ``n_concepts <= min(n_samples, n_features)``, else
        ``"random"``. The SVD behind NNDSVD goes through the ``d x d`` Gram
        matrix (a randomized range finder when ``d > 1024``).

    max_iter : int, default=200
        Maximum number of iterations of the solver (also the number of
        iterations handed to overcomplete's solvers).

    tol : float, default=1e-4
        Tolerance of the stopping rule. The torch solvers use scikit-learn's NMF
        rule: every 10 iterations, stop when the Frobenius error decreased by less
        than ``tol`` times the error at initialisation. Overcomplete's solvers use
        their own rule (relative change of the codes).

    random_state : int, RandomState instance or None, default=None
        Seed of the initialisation. An int makes ``fit`` reproducible (bitwise
        on the CPU). It seeds a local generator; the global torch seed is never
        touched.

    device : {"cpu", "cuda", "auto"} or torch.device, default="cpu"
        Where the computation runs. ``"auto"`` takes CUDA when available.
        Fitted attributes are always stored as CPU numpy arrays, so a model
        fitted on a GPU loads on a CPU-only machine.

    progress : bool or None, default=None
        Show a tqdm progress bar over the rows when ``fit`` streams a batch
        source (an :class:`~skconcepts.ActivationStore` or an iterable of
        batches) and when ``transform`` or ``score`` read one; for in-memory
        data, over the iterations of ``fit`` and the row batches of
        ``transform``.
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

    forget_factor : float, default=0.1
        When ``fit`` streams a batch source: weight kept by the running
        statistics of the earlier passes when a new pass begins (0 forgets
        them, 1 keeps them all). Successive ``partial_fit`` calls on arrays
        count as one pass and forget nothing.

    max_bytes : int or None, default=None
        Memory budget, in bytes, of ``transform`` of an
        :class:`~skconcepts.ActivationStore` or an iterable of batches: its
        output array must fit in it (``None``: 25% of the RAM available), else
        a ``StoreTooLargeError`` says to write the concepts to disk with
        ``transform_to_store``. ``fit`` streams a batch source and needs no
        budget.

    n_jobs : int or None, default=None
        Shard-parallel ``fit`` of an :class:`~skconcepts.ActivationStore`.
        ``None``: the online learning below. An int: ``n_passes`` alternating
        passes over the whole store, each a map over its shards with
        ``joblib.Parallel(n_jobs=n_jobs)`` under the active joblib backend
        (local processes by default, ``parallel_backend("ray")`` or
        ``("dask")`` on a cluster): with the dictionary fixed, a task codes the
        rows of its shard (as ``transform``, on the worker's CPU) and returns
        ``C^T C``, ``C^T X`` (float64) and its squared error; the dictionary
        is then updated once from the sums, as in the online update, and
        ``forget_factor`` is not used. The first ``batch_size`` rows
        initialise the dictionary. ``reconstruction_err_`` is that of the
        last pass (the dictionary before its last update). ``n_jobs=1`` runs
        the same passes in this process and every ``n_jobs`` gives the same
        model (shard sums added in shard order; tested to ``rtol=1e-4``).
        Another source (an iterable of batches) is read in this process.
        ``partial_fit`` and in-memory ``fit`` ignore it.
    top_k : int, "auto" or None, default="auto"
        Sparsity control: at most ``top_k`` concepts are active (non-zero) in each
        row's codes. ``"auto"`` (the default) is 2, or ``n_concepts`` when that is
        smaller. ``None`` keeps the dense non-negative least squares codes (the
        fastest fit, and the default before wave 2). With an int, ``fit`` first
        runs the dense fit, then
        alternates sparse codes and dictionary updates (20 rounds) so that the
        dictionary suits codes with ``top_k`` active concepts; ``transform``
        keeps each row's ``top_k`` largest dense codes and re-solves the least
        squares problem on them. Must be at most ``n_concepts``.
        The default comes from the concept-quality table of
        ``docs/benchmarks.md`` (``bench/bench_quality.py``: MiniLM sentence
        activations of the demo corpus, 8 concepts, held-out texts): with
        ``top_k=2`` a text's strongest concept names its topic for about 3 texts
        in 4 with 25% of the concepts active, against 40% (semi-NMF) and 57% (NMF
        after ReLU) of texts with dense codes, at a held-out R² 0.04 lower
        (semi-NMF) or unchanged (NMF after ReLU); ``top_k=4`` names fewer topics.
        Planted dictionaries are recovered too (``make_concept_activations``:
        mean matched cosine >= 0.97 for both). The sparse fit costs about 20
        extra rounds of codes; pass ``top_k=None`` when only reconstruction
        matters. See the user guide's "Sparse codes" section.

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
        Number of iterations run. Overcomplete's solvers do not report it: for
        ``solver="oc-..."`` it is ``max_iter``.
    reconstruction_err_ : float
        Frobenius norm of ``X - codes @ components_`` on the training data.

    See Also
    --------
    SemiNMFConcepts : Codes ``>= 0`` but a signed dictionary, for signed ``X``.
    ConvexNMFConcepts : Concepts that are convex combinations of training rows.
    sklearn.decomposition.NMF : The scikit-learn estimator (numpy, float64 maths).

    Notes
    -----
    Fitting costs ``O(n_samples * n_features * n_concepts)`` time per iteration
    and memory linear in ``n_samples``; the objective is tracked through Gram
    matrices, never by reconstructing ``X``. Everything runs in float32 on
    ``device``; tensors are not moved back to the CPU during the iterations.

    ``transform`` solves the non-negative least squares problem
    ``min_{C >= 0} ||X - C @ components_||`` row by row with the dictionary fixed
    (HALS sweeps from the clipped least-squares solution, batched, memory
    ``O(batch * n_concepts)``), whatever the solver used in ``fit``; a row's codes
    do not depend on the other rows. ``fit`` ends with this step on the training
    rows, so ``fit_transform(X)`` equals ``fit(X).transform(X)`` and
    ``reconstruction_err_`` is the error of ``inverse_transform(transform(X))``.

    ``partial_fit``, and ``fit`` of a batch source, learn online
    (Mairal et al., 2010): the codes of each mini-batch are
    computed with the current dictionary (as by ``transform``), ``C^T C`` and
    ``C^T X`` are added to running statistics, and the dictionary is updated
    from the statistics alone, so memory does not grow with the number of rows.
    The first batch initialises the dictionary. ``n_iter_`` then counts the
    passes (each ``partial_fit`` call counting one) and ``reconstruction_err_``
    is measured on the rows of the last pass or call, each just after its
    update. The dictionary update is HALS sweeps on the statistics.

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
    >>> from skconcepts.concepts import NMFConcepts
    >>> X = np.abs(np.random.RandomState(0).randn(200, 16)).astype(np.float32)
    >>> nmf = NMFConcepts(n_concepts=4, random_state=0).fit(X)
    >>> nmf.components_.shape, nmf.transform(X[:3]).shape
    ((4, 16), (3, 4))
    >>> bool((nmf.transform(X) >= 0).all())
    True
    >>> online = NMFConcepts(n_concepts=4, random_state=0)
    >>> for chunk in np.array_split(X, 4):
    ...     online = online.partial_fit(chunk)
    >>> online.n_iter_, bool((online.components_ >= 0).all())
    (4, True)
    """

    _parameter_constraints = _constraints(
        solvers=("hals", "oc-hals", "oc-mu", "oc-pgd", "oc-anls"),
        inits=("nndsvd", "nndsvda", "nndsvdar", "random"),
        streaming=True,
        top_k=True,
    )

    def __init__(
        self,
        n_concepts=8,
        *,
        solver="hals",
        init=None,
        max_iter=200,
        tol=1e-4,
        random_state=None,
        device="cpu",
        progress=None,
        batch_size=1024,
        n_passes=10,
        forget_factor=0.1,
        max_bytes=None,
        n_jobs=None,
        top_k="auto",
    ):
        super().__init__(
            n_concepts,
            solver=solver,
            init=init,
            max_iter=max_iter,
            tol=tol,
            random_state=random_state,
            device=device,
            progress=progress,
            max_bytes=max_bytes,
        )
        self.batch_size = batch_size
        self.n_passes = n_passes
        self.forget_factor = forget_factor
        self.n_jobs = n_jobs
        self.top_k = top_k

    def _check_input_values(self, X, method):
        low = float(X.amin()) if X.numel() else 0.0
        if low < 0:
            raise ValueError(
                f"Negative values in data passed to NMFConcepts.{method} (min "
                f"{low:.4g}): NMF needs X >= 0. For signed activations use "
                "SemiNMFConcepts (or ConvexNMFConcepts), or make them non-negative "
                "first with skconcepts.NonNegative (e.g. "
                "make_pipeline(NonNegative(), NMFConcepts()))."
            )

    def _initialize(self, X, generator):
        n, d = X.shape
        init = self.init
        if init is None:
            init = "nndsvda" if self.n_concepts <= min(n, d) else "random"
        if init == "random":
            return _solvers.init_random(X, self.n_concepts, generator)
        if self.n_concepts > min(n, d):
            raise ValueError(
                f"init={init!r} needs n_concepts <= min(n_samples, n_features) = "
                f"{min(n, d)}, got n_concepts={self.n_concepts}; use init='random' "
                "or init=None."
            )
        return _solvers.init_nndsvd(X, self.n_concepts, init, generator)

    def _stream_init(self, X, generator):
        return self._initialize(X, generator)[1]

    def _dict_step(self, D, A, B):
        k, d = D.shape
        sweeps = 2 * _solvers.inner_sweeps(k, d)  # as in a step of nmf_hals
        return _solvers.hals_sweeps_(D.clone(), B, A, sweeps)

    def _refine_step(self, M, N, D):
        return self._dict_step(D, N, M)

    def _fit_torch(self, X, generator):
        Zt, D = self._initialize(X, generator)
        return _solvers.nmf_hals(
            X, Zt, D, max_iter=self.max_iter, tol=self.tol, progress=self.progress
        )

    def _fit_overcomplete(self, X, generator):
        # deferred: overcomplete is heavy (imports torchvision, matplotlib)
        from overcomplete.optimization import NMF

        Zt, D = self._initialize(X, generator)
        model = NMF(
            self.n_concepts,
            device=X.device,
            solver=self.solver[3:],
            tol=self.tol,
            verbose=bool(self.progress),
        )
        Z, D = model.solver_fn(
            X,
            Zt.T.contiguous(),
            D,
            max_iter=self.max_iter,
            tol=self.tol,
            verbose=bool(self.progress),
        )
        Z, D = Z.float(), D.float()
        return _solvers.FitResult(Z, D, self.max_iter, _oc_sq_error(X, Z, D))

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.positive_only = True
        return tags


# ================================================================ semi-NMF
class SemiNMFConcepts(_OnlineNMFMixin, _BaseNMFConcepts):
    """Concepts from semi-non-negative matrix factorisation: ``X ~ C @ components_``.

    The concept activations ``C`` are non-negative, the dictionary is signed, so
    ``X`` may be signed (Ding, Li & Jordan, 2010): the natural choice for raw
    transformer activations.

    Parameters
    ----------
    n_concepts : int, default=8
        Number of concepts (rows of the dictionary) to learn.

    solver : {"als", "oc-mu", "oc-pgd"}, default="als"
        ``"als"``: alternating least squares in torch; the dictionary step is
        exact (``components_ = (C^T C)^{-1} C^T X``), the codes step is HALS
        sweeps, with extrapolation and restarts. ``"oc-mu"`` / ``"oc-pgd"`` run
        ``overcomplete.optimization.SemiNMF``'s multiplicative updates or
        projected gradient (Adam) from the same initialisation.

    init : {"kmeans", "random"}, default=None
        ``"kmeans"``: the initialisation of Ding et al., cluster indicators of
        k-means (k-means++ seeding, 10 Lloyd iterations) plus 0.2. ``"random"``:
        scaled ``|N(0, 1)|`` codes, as overcomplete does. The dictionary starts
        as their least-squares fit. ``None`` takes ``"random"`` when the codes are
        sparse (``top_k`` below ``n_concepts``, the default) and ``"kmeans"`` for
        dense codes (``top_k=None``): measured in ``bench/bench_quality.py``, the
        k-means start locks sparse codes onto the clusters of the dense fit
        (planted dictionary recovered at 0.68 against 0.97 from a random start;
        demo topics named for 55% of texts against 77%).

    max_iter : int, default=200
        Maximum number of iterations of the solver (also the number of
        iterations handed to overcomplete's solvers).

    tol : float, default=1e-4
        Tolerance of the stopping rule. The torch solvers use scikit-learn's NMF
        rule: every 10 iterations, stop when the Frobenius error decreased by less
        than ``tol`` times the error at initialisation. Overcomplete's solvers use
        their own rule (relative change of the codes).

    random_state : int, RandomState instance or None, default=None
        Seed of the initialisation. An int makes ``fit`` reproducible (bitwise
        on the CPU). It seeds a local generator; the global torch seed is never
        touched.

    device : {"cpu", "cuda", "auto"} or torch.device, default="cpu"
        Where the computation runs. ``"auto"`` takes CUDA when available.
        Fitted attributes are always stored as CPU numpy arrays, so a model
        fitted on a GPU loads on a CPU-only machine.

    progress : bool or None, default=None
        Show a tqdm progress bar over the rows when ``fit`` streams a batch
        source (an :class:`~skconcepts.ActivationStore` or an iterable of
        batches) and when ``transform`` or ``score`` read one; for in-memory
        data, over the iterations of ``fit`` and the row batches of
        ``transform``.
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

    forget_factor : float, default=0.1
        When ``fit`` streams a batch source: weight kept by the running
        statistics of the earlier passes when a new pass begins (0 forgets
        them, 1 keeps them all). Successive ``partial_fit`` calls on arrays
        count as one pass and forget nothing.

    max_bytes : int or None, default=None
        Memory budget, in bytes, of ``transform`` of an
        :class:`~skconcepts.ActivationStore` or an iterable of batches: its
        output array must fit in it (``None``: 25% of the RAM available), else
        a ``StoreTooLargeError`` says to write the concepts to disk with
        ``transform_to_store``. ``fit`` streams a batch source and needs no
        budget.

    n_jobs : int or None, default=None
        Shard-parallel ``fit`` of an :class:`~skconcepts.ActivationStore`.
        ``None``: the online learning below. An int: ``n_passes`` alternating
        passes over the whole store, each a map over its shards with
        ``joblib.Parallel(n_jobs=n_jobs)`` under the active joblib backend
        (local processes by default, ``parallel_backend("ray")`` or
        ``("dask")`` on a cluster): with the dictionary fixed, a task codes the
        rows of its shard (as ``transform``, on the worker's CPU) and returns
        ``C^T C``, ``C^T X`` (float64) and its squared error; the dictionary
        is then updated once from the sums, as in the online update, and
        ``forget_factor`` is not used. The first ``batch_size`` rows
        initialise the dictionary. ``reconstruction_err_`` is that of the
        last pass (the dictionary before its last update). ``n_jobs=1`` runs
        the same passes in this process and every ``n_jobs`` gives the same
        model (shard sums added in shard order; tested to ``rtol=1e-4``).
        Another source (an iterable of batches) is read in this process.
        ``partial_fit`` and in-memory ``fit`` ignore it.
    top_k : int, "auto" or None, default="auto"
        Sparsity control: at most ``top_k`` concepts are active (non-zero) in each
        row's codes. ``"auto"`` (the default) is 2, or ``n_concepts`` when that is
        smaller. ``None`` keeps the dense non-negative least squares codes (the
        fastest fit, and the default before wave 2). With an int, ``fit`` first
        runs the dense fit, then
        alternates sparse codes and dictionary updates (20 rounds) so that the
        dictionary suits codes with ``top_k`` active concepts; ``transform``
        keeps each row's ``top_k`` largest dense codes and re-solves the least
        squares problem on them. Must be at most ``n_concepts``.
        The default comes from the concept-quality table of
        ``docs/benchmarks.md`` (``bench/bench_quality.py``: MiniLM sentence
        activations of the demo corpus, 8 concepts, held-out texts): with
        ``top_k=2`` a text's strongest concept names its topic for about 3 texts
        in 4 with 25% of the concepts active, against 40% (semi-NMF) and 57% (NMF
        after ReLU) of texts with dense codes, at a held-out R² 0.04 lower
        (semi-NMF) or unchanged (NMF after ReLU); ``top_k=4`` names fewer topics.
        Planted dictionaries are recovered too (``make_concept_activations``:
        mean matched cosine >= 0.97 for both). The sparse fit costs about 20
        extra rounds of codes; pass ``top_k=None`` when only reconstruction
        matters. See the user guide's "Sparse codes" section.

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
        Number of iterations run. Overcomplete's solvers do not report it: for
        ``solver="oc-..."`` it is ``max_iter``.
    reconstruction_err_ : float
        Frobenius norm of ``X - codes @ components_`` on the training data.

    See Also
    --------
    NMFConcepts : Non-negative dictionary, for non-negative ``X``.
    ConvexNMFConcepts : Concepts that are convex combinations of training rows.

    Notes
    -----
    Fitting costs ``O(n_samples * n_features * n_concepts)`` time per iteration
    and memory linear in ``n_samples``, all in float32 on ``device``.

    ``transform`` solves the non-negative least squares problem
    ``min_{C >= 0} ||X - C @ components_||`` row by row with the dictionary fixed
    (HALS sweeps from the clipped least-squares solution, batched, memory
    ``O(batch * n_concepts)``), whatever the solver used in ``fit``; a row's codes
    do not depend on the other rows. ``fit`` ends with this step on the training
    rows, so ``fit_transform(X)`` equals ``fit(X).transform(X)`` and
    ``reconstruction_err_`` is the error of ``inverse_transform(transform(X))``.

    ``partial_fit``, and ``fit`` of a batch source, learn online
    (Mairal et al., 2010): the codes of each mini-batch are
    computed with the current dictionary (as by ``transform``), ``C^T C`` and
    ``C^T X`` are added to running statistics, and the dictionary is updated
    from the statistics alone, so memory does not grow with the number of rows.
    The first batch initialises the dictionary. ``n_iter_`` then counts the
    passes (each ``partial_fit`` call counting one) and ``reconstruction_err_``
    is measured on the rows of the last pass or call, each just after its
    update. The dictionary update is the exact least-squares step
    ``components_ = A^{-1} B``; the first batch initialises it as ``fit``
    does (``init``).

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
    >>> from skconcepts.concepts import SemiNMFConcepts
    >>> X = np.random.RandomState(0).randn(200, 16).astype(np.float32)
    >>> snmf = SemiNMFConcepts(n_concepts=4, random_state=0).fit(X)
    >>> C = snmf.transform(X)
    >>> C.shape, bool((C >= 0).all()), bool((snmf.components_ < 0).any())
    ((200, 4), True, True)
    """

    _parameter_constraints = _constraints(
        solvers=("als", "oc-mu", "oc-pgd"),
        inits=("kmeans", "random"),
        streaming=True,
        top_k=True,
    )

    def __init__(
        self,
        n_concepts=8,
        *,
        solver="als",
        init=None,
        max_iter=200,
        tol=1e-4,
        random_state=None,
        device="cpu",
        progress=None,
        batch_size=1024,
        n_passes=10,
        forget_factor=0.1,
        max_bytes=None,
        n_jobs=None,
        top_k="auto",
    ):
        super().__init__(
            n_concepts,
            solver=solver,
            init=init,
            max_iter=max_iter,
            tol=tol,
            random_state=random_state,
            device=device,
            progress=progress,
            max_bytes=max_bytes,
        )
        self.batch_size = batch_size
        self.n_passes = n_passes
        self.forget_factor = forget_factor
        self.n_jobs = n_jobs
        self.top_k = top_k

    def _initialize(self, X, generator):
        """Initial codes ``Zt`` (k, n)."""
        init = self.init
        if init is None:
            # measured (bench/bench_quality.py): with sparse codes a random start
            # names more topics and recovers planted dictionaries (0.97 against
            # 0.68 from k-means); dense codes keep Ding et al.'s k-means start
            top_k = self._top_k()
            init = (
                "random" if top_k is not None and top_k < self.n_concepts else "kmeans"
            )
        if init == "kmeans":
            W, _ = _solvers.init_kmeans(X, self.n_concepts, generator)
            return (W > 0).to(X.dtype) + 0.2  # (k, n): Ding et al.'s init
        n = X.shape[0]
        scale = float(torch.sqrt(X.abs().mean() / self.n_concepts))
        Zt = torch.randn(self.n_concepts, n, generator=generator).abs_().mul_(scale)
        return Zt.to(X.device)

    def _stream_init(self, X, generator):
        Zt = self._initialize(X, generator)  # (k, m)
        return _solvers.least_squares_dictionary(Zt @ X, Zt @ Zt.T)

    def _dict_step(self, D, A, B):
        return _solvers.least_squares_dictionary(B, A)

    def _fit_torch(self, X, generator):
        Zt = self._initialize(X, generator)
        return _solvers.semi_nmf_als(
            X, Zt, max_iter=self.max_iter, tol=self.tol, progress=self.progress
        )

    def _fit_overcomplete(self, X, generator):
        # deferred: overcomplete is heavy (imports torchvision, matplotlib)
        from overcomplete.optimization import SemiNMF

        Zt = self._initialize(X, generator)
        model = SemiNMF(
            self.n_concepts,
            solver=self.solver[3:],
            device=X.device,
            tol=self.tol,
            verbose=bool(self.progress),
        )
        Z = Zt.T.contiguous()
        D = model.init_random_d(X, Z)
        Z, D = model.solver_fn(
            X, Z, D, max_iter=self.max_iter, tol=self.tol, verbose=bool(self.progress)
        )
        Z, D = Z.detach().float(), D.detach().float()
        return _solvers.FitResult(Z, D, self.max_iter, _oc_sq_error(X, Z, D))


# ============================================================== convex NMF
class ConvexNMFConcepts(_BaseNMFConcepts):
    """Concepts that are convex combinations of training rows: ``X ~ C @ W @ X``.

    Convex NMF (Ding, Li & Jordan, 2010): ``components_ = weights_ @ X_train``
    with ``weights_ >= 0`` whose rows sum to one, and concept activations
    ``C >= 0``. Every concept is a weighted average of actual activations, which
    keeps it inside the data and easy to inspect through its heaviest rows. ``X``
    may be signed.

    Parameters
    ----------
    n_concepts : int, default=8
        Number of concepts (rows of the dictionary) to learn.

    solver : {"pg", "oc-mu", "oc-pgd"}, default="pg"
        ``"pg"``: HALS sweeps on the codes and a projected-gradient step with
        exact line search on the weights, in torch. Memory is linear in
        ``n_samples``: the ``n x n`` Gram matrix ``X X^T`` is never formed.
        ``"oc-mu"`` / ``"oc-pgd"`` run ``overcomplete.optimization.ConvexNMF``'s
        multiplicative updates or projected gradient (Adam) from the same
        initialisation; ``"oc-mu"`` builds the ``n x n`` Gram matrix and is
        refused above 16384 rows.

    init : {"kmeans", "random"}, default=None
        ``"kmeans"`` (the default when ``None``): k-means++ seeding and 10 Lloyd
        iterations; the weights start as the normalised cluster memberships, so
        the first concepts are the centroids. ``"random"``: the k-means++
        seeds only (``n_concepts`` training rows drawn at random, spread out).

    max_iter : int, default=200
        Maximum number of iterations of the solver (also the number of
        iterations handed to overcomplete's solvers).

    tol : float, default=1e-4
        Tolerance of the stopping rule. The torch solvers use scikit-learn's NMF
        rule: every 10 iterations, stop when the Frobenius error decreased by less
        than ``tol`` times the error at initialisation. Overcomplete's solvers use
        their own rule (relative change of the codes).

    random_state : int, RandomState instance or None, default=None
        Seed of the initialisation. An int makes ``fit`` reproducible (bitwise
        on the CPU). It seeds a local generator; the global torch seed is never
        touched.

    device : {"cpu", "cuda", "auto"} or torch.device, default="cpu"
        Where the computation runs. ``"auto"`` takes CUDA when available.
        Fitted attributes are always stored as CPU numpy arrays, so a model
        fitted on a GPU loads on a CPU-only machine.

    progress : bool or None, default=None
        Show a tqdm progress bar over the rows when ``transform`` or ``score``
        read a batch source (an :class:`~skconcepts.ActivationStore` or an
        iterable of batches; this method's ``fit`` does not stream), and over
        the iterations of ``fit`` and the row batches of ``transform``.
        ``None`` (the default) shows it only when stderr is an interactive
        terminal or a notebook (tqdm's rule); ``True`` always, ``False`` never.

    max_bytes : int or None, default=None
        Memory budget, in bytes, for loading an
        :class:`~skconcepts.ActivationStore` passed to ``fit`` (this method
        cannot stream it) and for the output of ``transform`` of a store or an
        iterable of batches. ``None`` allows 25% of the RAM available. Over the
        budget a ``StoreTooLargeError`` (a ``MemoryError``) gives the bytes
        needed and the estimators that stream a store instead.

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
    weights_ : ndarray of shape (n_concepts, n_samples_fit), dtype float32
        Convex weights: ``weights_ >= 0``, each row sums to one, and
        ``components_ == weights_ @ X_train`` (up to float32 rounding). Its size
        grows linearly with the number of training rows.
    n_iter_ : int
        Number of iterations run. Overcomplete's solvers do not report it: for
        ``solver="oc-..."`` it is ``max_iter``.
    reconstruction_err_ : float
        Frobenius norm of ``X - codes @ components_`` on the training data.

    See Also
    --------
    SemiNMFConcepts : The same codes with an unconstrained dictionary.
    NMFConcepts : Non-negative dictionary, for non-negative ``X``.

    Notes
    -----
    One iteration costs four ``n x d x k`` products; memory is
    ``O(n_samples * (n_features + n_concepts))``, linear in the number of rows
    (50 000 rows of 384 features take well under a gigabyte).

    ``transform`` solves the non-negative least squares problem
    ``min_{C >= 0} ||X - C @ components_||`` row by row with the dictionary fixed
    (HALS sweeps from the clipped least-squares solution, batched, memory
    ``O(batch * n_concepts)``), whatever the solver used in ``fit``; a row's codes
    do not depend on the other rows. ``fit`` ends with this step on the training
    rows, so ``fit_transform(X)`` equals ``fit(X).transform(X)`` and
    ``reconstruction_err_`` is the error of ``inverse_transform(transform(X))``.

    Examples
    --------
    >>> import numpy as np
    >>> from skconcepts.concepts import ConvexNMFConcepts
    >>> X = np.random.RandomState(0).randn(200, 16).astype(np.float32)
    >>> cnmf = ConvexNMFConcepts(n_concepts=4, random_state=0).fit(X)
    >>> cnmf.weights_.shape, np.allclose(cnmf.weights_.sum(axis=1), 1)
    ((4, 200), True)
    >>> np.allclose(cnmf.components_, cnmf.weights_ @ X, atol=1e-5)
    True
    """

    #: the weights step multiplies Gram-sized products of Gram-sized products
    #: (fourth powers of X): they must stay finite in float32
    _max_input_norm = float(np.finfo(np.float32).max) ** 0.25
    _parameter_constraints = _constraints(
        solvers=("pg", "oc-mu", "oc-pgd"),
        inits=("kmeans", "random"),
    )

    def __init__(
        self,
        n_concepts=8,
        *,
        solver="pg",
        init=None,
        max_iter=200,
        tol=1e-4,
        random_state=None,
        device="cpu",
        progress=None,
        max_bytes=None,
    ):
        super().__init__(
            n_concepts,
            solver=solver,
            init=init,
            max_iter=max_iter,
            tol=tol,
            random_state=random_state,
            device=device,
            progress=progress,
            max_bytes=max_bytes,
        )

    def _initialize(self, X, generator):
        """Initial weights ``W`` (k, n), rows summing to one."""
        n_iter = 0 if self.init == "random" else 10
        W, _ = _solvers.init_kmeans(X, self.n_concepts, generator, n_iter=n_iter)
        return W

    def _fit_torch(self, X, generator):
        W = self._initialize(X, generator)
        result = _solvers.convex_nmf_pg(
            X, W, max_iter=self.max_iter, tol=self.tol, progress=self.progress
        )
        self.weights_ = to_numpy(result.weights)
        return result

    def _fit_overcomplete(self, X, generator):
        # deferred: overcomplete is heavy (imports torchvision, matplotlib)
        from overcomplete.optimization import ConvexNMF

        n = X.shape[0]
        if self.solver == "oc-mu" and n > _OC_CONVEX_MU_MAX_ROWS:
            gib = 4 * 4 * n * n / 2**30
            raise ValueError(
                f"solver='oc-mu' builds overcomplete's n x n Gram matrices (about "
                f"{gib:.0f} GiB for {n} rows); use solver='pg' (linear memory) or "
                f"at most {_OC_CONVEX_MU_MAX_ROWS} rows."
            )
        W = self._initialize(X, generator)
        D = W @ X
        Ct, B = D @ X.T, D @ D.T
        Z = (
            (torch.linalg.pinv(B.double()).to(X.dtype) @ Ct)
            .clamp_(min=0)
            .T.contiguous()
        )
        model = ConvexNMF(
            self.n_concepts,
            device=X.device,
            tol=self.tol,
            strict_convex=False,
            solver=self.solver[3:],
            verbose=bool(self.progress),
        )
        Z, W = model.solver_fn(
            X,
            Z,
            W,
            update_Z=True,
            update_W=True,
            strict_convex=False,
            max_iter=self.max_iter,
            tol=self.tol,
            verbose=bool(self.progress),
        )
        Z, W = Z.detach().float(), W.detach().float().clamp(min=0)
        s = torch.clamp(W.sum(dim=1), min=1e-30)  # (k,): rows of W sum to one,
        W, Z = W / s[:, None], Z * s  # the codes absorb the scale
        D = W @ X
        self.weights_ = to_numpy(W)
        return _solvers.FitResult(Z, D, self.max_iter, _oc_sq_error(X, Z, D), W)
