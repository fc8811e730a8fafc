"""Sparse-autoencoder concepts: ``overcomplete.sae`` modules trained through skorch.

Five estimators share one implementation (:class:`_BaseSAEConcepts`):

======================  ================================  =====================
estimator               overcomplete module               sparsity knob
======================  ================================  =====================
``SAEConcepts``         ``SAE`` (linear encoder + ReLU)   ``l1_coef``
``TopKSAEConcepts``     ``TopKSAE``                       ``top_k`` (per row)
``BatchTopKSAEConcepts`` ``BatchTopKSAE``                 ``top_k`` (row mean)
``JumpReLUSAEConcepts`` ``JumpSAE``                       ``l0_coef``
``MPSAEConcepts``       ``MpSAE`` (matching pursuit)      ``top_k`` (steps)
======================  ================================  =====================

The overcomplete module is wrapped in :class:`_SAEModule`, which adds the
decoder bias ``b_dec`` (subtracted before encoding, added after decoding) and
returns, next to ``(pre_codes, codes, x_hat)``, the method's sparsity and
dead-concept penalty. Training is a ``skorch.NeuralNet`` built in ``fit`` and
kept as ``net_``; the criterion is ``MSE(x_hat, x) + penalty``. The decoder is
affine, ``x_hat = codes @ components_ + decoder_bias_``, so the inherited
``inverse_transform`` and ``decoder_torch`` are exact.

skorch and overcomplete are imported inside the functions that need them.
"""

from __future__ import annotations

import copy
import itertools
import warnings
from collections.abc import Iterable, Iterator
from numbers import Integral, Real

import numpy as np
import torch
from sklearn.base import BaseEstimator, _fit_context
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import Interval, StrOptions

from skconcepts.concepts._base import DEVICE_CONSTRAINT, ConceptMixin
from skconcepts.concepts._docstrings import Substitution
from skconcepts.utils._torch import resolve_device, to_numpy, to_tensor
from skconcepts.utils._torch_free import is_tensor
from skconcepts.utils._validation import check_finite_tensor

__all__ = [
    "SAEConcepts",
    "TopKSAEConcepts",
    "BatchTopKSAEConcepts",
    "JumpReLUSAEConcepts",
    "MPSAEConcepts",
    "EXPECTED_FAILED_CHECKS",
]

#: ``sklearn.utils.estimator_checks`` checks the SAE estimators are expected to
#: fail, with the reason (for ``parametrize_with_checks(expected_failed_checks=)``).
#: Stochastic training is made deterministic by ``random_state`` (local
#: generators, bitwise on the CPU), so no check needs to be skipped.
EXPECTED_FAILED_CHECKS: dict[str, dict[str, str]] = {
    "SAEConcepts": {},
    "TopKSAEConcepts": {},
    "BatchTopKSAEConcepts": {},
    "JumpReLUSAEConcepts": {},
    "MPSAEConcepts": {},
}

_OPTIMIZERS = {
    "adam": torch.optim.Adam,
    "adamw": torch.optim.AdamW,
    "sgd": torch.optim.SGD,
}

#: initial value of JumpSAE's log-thresholds (as in overcomplete)
_JUMP_LOG_THRESHOLD_INIT = -3.0


# =====================================================================
# torch side: the module wrapper, the criterion, the batch iterator
# =====================================================================
def _build_overcomplete(
    method, n_features, n_concepts, top_k, threshold_momentum, kernel, bandwidth
):
    """Instantiate the overcomplete SAE of ``method`` on the CPU."""
    from overcomplete.sae import SAE, BatchTopKSAE, JumpSAE, MpSAE, TopKSAE

    if method == "relu":
        return SAE(n_features, n_concepts)
    if method == "topk":
        return TopKSAE(n_features, n_concepts, top_k=top_k)
    if method == "batchtopk":
        return BatchTopKSAE(
            n_features, n_concepts, top_k=top_k, threshold_momentum=threshold_momentum
        )
    if method == "jumprelu":
        return JumpSAE(n_features, n_concepts, kernel=kernel, bandwidth=bandwidth)
    if method == "mp":
        return MpSAE(n_features, n_concepts, k=top_k)
    raise ValueError(f"Unknown SAE method {method!r}.")


def _encoder_linear(sae):
    """The encoder's ``nn.Linear`` (None for matching pursuit, which has none)."""
    block = getattr(getattr(sae, "encoder", None), "final_block", None)
    return None if block is None else block[0]


def _topk_auxiliary(residual, pre_codes, codes, dictionary):
    """AuxK term of overcomplete's ``top_k_auxiliary_loss`` (without the MSE).

    The residual is predicted from the top half of the concepts that were not
    chosen (Gao et al., 2024), which gives dead concepts a gradient.
    """
    pre = torch.relu(pre_codes) - codes  # (n, k): drop the chosen concepts
    aux = torch.topk(pre, k=pre.shape[1] // 2, dim=1)
    pre = torch.zeros_like(codes).scatter(-1, aux.indices, aux.values)
    return (residual - pre @ dictionary).square().mean()


class _SAEModule(torch.nn.Module):
    """An overcomplete SAE with a decoder bias and its own training penalty.

    ``forward(x)`` returns ``(pre_codes, codes, x_hat, penalty)`` where
    ``x_hat = decode(codes) = codes @ D + b_dec`` and ``penalty`` is the
    method's sparsity term plus the optional auxiliary dead-concept term.
    Construction never touches the global torch RNG: overcomplete's own
    initialisation runs inside ``torch.random.fork_rng`` and is then replaced
    by a draw from a local generator seeded with ``seed``.
    """

    def __init__(
        self,
        method,
        n_features,
        n_concepts,
        *,
        top_k=None,
        threshold_momentum=0.9,
        kernel="silverman",
        bandwidth=1e-3,
        sparsity_coef=0.0,
        dead_concepts=None,
        aux_coef=0.0,
        bias_init=None,
        decoder_bias=True,
        seed=0,
    ):
        super().__init__()
        self.method = method
        self.top_k = top_k
        self.sparsity_coef = float(sparsity_coef)
        self.dead_concepts = dead_concepts
        self.aux_coef = float(aux_coef)
        with torch.random.fork_rng(devices=[]):
            self.sae = _build_overcomplete(
                method,
                n_features,
                n_concepts,
                top_k,
                threshold_momentum,
                kernel,
                bandwidth,
            )
        if decoder_bias:
            init = (
                torch.zeros(n_features)
                if bias_init is None
                else torch.as_tensor(np.asarray(bias_init), dtype=torch.float32)
            )
            self.b_dec = torch.nn.Parameter(init.clone())
        else:
            self.register_buffer("b_dec", None)
        self._init_weights(seed)

    def _init_weights(self, seed):
        gen = torch.Generator().manual_seed(int(seed))
        weights = self.sae.dictionary._weights  # (k, d)
        with torch.no_grad():
            atoms = torch.randn(weights.shape, generator=gen)
            atoms /= atoms.norm(dim=1, keepdim=True).clamp_min(1e-12)
            weights.copy_(atoms)
            linear = _encoder_linear(self.sae)
            if linear is not None:  # tied initialisation (Gao et al., 2024)
                linear.weight.copy_(atoms)
                linear.bias.zero_()

    # ----------------------------------------------------------- the model
    def encode(self, x):  # x: (n, d) -> pre_codes, codes: (n, k)
        if self.b_dec is not None:
            x = x - self.b_dec
        if self.method == "batchtopk" and self.training:
            # our top_k is a mean per row; overcomplete's counts the batch
            self.sae.top_k = min(
                self.top_k * x.shape[0], x.shape[0] * self.sae.nb_concepts
            )
        return self.sae.encode(x)

    def decode(self, codes):  # codes: (n, k) -> (n, d)
        x_hat = self.sae.decode(codes)
        if self.b_dec is not None:
            x_hat = x_hat + self.b_dec
        return x_hat

    def forward(self, x):
        pre_codes, codes = self.encode(x)
        x_hat = self.decode(codes)
        return pre_codes, codes, x_hat, self.penalty(x, pre_codes, codes, x_hat)

    def penalty(self, x, pre_codes, codes, x_hat):
        """Sparsity term of the method plus the auxiliary dead-concept term."""
        from overcomplete.metrics import l1
        from overcomplete.sae import heaviside
        from overcomplete.sae.losses import reanimation_regularizer

        penalty = x_hat.new_zeros(())
        if self.method == "relu" and self.sparsity_coef:
            penalty = penalty + self.sparsity_coef * l1(codes, dims=-1).mean()
        elif self.method == "jumprelu" and self.sparsity_coef:
            sae = self.sae
            l0 = heaviside(
                torch.relu(pre_codes),
                torch.exp(sae.thresholds),
                sae.kernel_fn,
                sae.bandwidth,
            )  # (n, k), pseudo-grad
            penalty = penalty + self.sparsity_coef * l0.sum(-1).mean()
        if self.dead_concepts == "auxiliary" and self.aux_coef:
            dictionary = self.sae.get_dictionary()
            if self.method in ("topk", "batchtopk"):
                aux = _topk_auxiliary(x - x_hat, pre_codes, codes, dictionary)
                penalty = penalty + self.aux_coef * aux
            else:
                penalty = penalty + reanimation_regularizer(
                    x, x_hat, pre_codes, codes, dictionary, penalty=self.aux_coef
                )
        return penalty

    # ------------------------------------------------ state and devices
    def train(self, mode=True):
        super().train(mode)
        dictionary = self.sae.dictionary
        if dictionary._fused_dictionary is not None:
            # overcomplete fuses the eval dictionary with autograd history;
            # a non-leaf tensor would not pickle
            dictionary._fused_dictionary = dictionary._fused_dictionary.detach()
        return self

    def to(self, *args, **kwargs):
        out = super().to(*args, **kwargs)
        self._sync_device()
        return out

    def __setstate__(self, state):
        super().__setstate__(state)
        self._sync_device()

    def _sync_device(self):
        """Move plain tensor attributes and ``device`` strings with the weights.

        overcomplete keeps some tensors as plain attributes (BatchTopK's running
        threshold, JumpSAE's bandwidth, the fused eval dictionary) and MpSAE
        allocates its codes on ``self.device``.
        """
        device = self.sae.dictionary._weights.device
        for module in self.modules():
            for name, value in list(vars(module).items()):
                if isinstance(value, torch.Tensor):
                    setattr(module, name, value.to(device))
            if module is not self and isinstance(
                getattr(module, "device", None), (str, torch.device)
            ):
                module.device = device


class _SAELoss(torch.nn.Module):
    """skorch criterion: ``mean((x_hat - x)**2) + penalty``."""

    def forward(self, y_pred, y_true):
        _, _, x_hat, penalty = y_pred
        return (x_hat - y_true).square().mean() + penalty


def _as_batch(chunk, n_features, index):
    """Validate one streamed batch and return it as a float32 tensor (n, d)."""
    if (
        isinstance(chunk, (tuple, list))
        and chunk
        and (is_tensor(chunk[0]) or isinstance(chunk[0], np.ndarray))
    ):
        chunk = chunk[0]  # (X,) or (X, y) from a DataLoader
    if is_tensor(chunk):
        batch = chunk.detach().to(dtype=torch.float32)
    else:
        try:
            array = np.asarray(chunk, dtype=np.float32)
        except (TypeError, ValueError) as exc:
            raise ValueError(
                f"Batch {index} of X is a {type(chunk).__name__}, not a numeric "
                "array; an iterable X must yield 2-D arrays or tensors."
            ) from exc
        batch = torch.from_numpy(np.array(array, copy=True))
    if batch.ndim != 2 or (n_features is not None and batch.shape[1] != n_features):
        want = "d" if n_features is None else str(n_features)
        raise ValueError(
            f"Batch {index} of X has shape {tuple(batch.shape)}; every batch must "
            f"have shape (n_rows, {want})."
        )
    check_finite_tensor(batch, f"batch {index} of X")
    return batch


class _BatchSource(torch.utils.data.Dataset):
    """A stream of activation batches as a skorch "dataset".

    ``source`` is an object with ``iter_batches(batch_size, shuffle, seed)`` (an
    activation store), a re-iterable (list of arrays, DataLoader) or a one-shot
    iterator. Rows are regrouped into batches of exactly ``batch_size`` (the
    last one may be smaller) and shuffled inside each incoming chunk.
    """

    def __init__(self, source, n_features):
        self.source = source
        self.n_features = n_features

    def __getitem__(self, index):
        raise TypeError("A streamed X is read by batches, not by rows.")

    def batches(self, batch_size, shuffle, random_state):
        if hasattr(self.source, "iter_batches"):
            seed = (
                None if random_state is None else int(random_state.randint(2**31 - 1))
            )
            chunks = self.source.iter_batches(batch_size, shuffle=shuffle, seed=seed)
            shuffle = False  # the store shuffles
        else:
            chunks = iter(self.source)
        pending = None
        for index, chunk in enumerate(chunks):
            batch = _as_batch(chunk, self.n_features, index)
            if shuffle and random_state is not None and len(batch) > 1:
                order = torch.from_numpy(random_state.permutation(len(batch)))
                batch = batch[order.to(batch.device)]
            pending = batch if pending is None else torch.cat([pending, batch])
            while len(pending) >= batch_size:
                yield pending[:batch_size]
                pending = pending[batch_size:]
        if pending is not None and len(pending):
            yield pending


class _BatchIterator:
    """skorch iterator: batches of rows by index (in memory) or from a stream.

    Faster than a ``DataLoader`` over single rows, and its shuffling draws
    from a numpy ``RandomState`` (picklable, never the global torch RNG).
    """

    def __init__(self, dataset, batch_size, shuffle=False, random_state=None):
        self.dataset = dataset
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.random_state = random_state

    def __len__(self):
        return int(np.ceil(len(self.dataset) / self.batch_size))

    def __iter__(self):
        if isinstance(self.dataset, _BatchSource):
            for batch in self.dataset.batches(
                self.batch_size, self.shuffle, self.random_state
            ):
                yield batch, batch
            return
        X = self.dataset.X
        n_rows = len(X)
        if self.shuffle:
            order = self.random_state.permutation(n_rows)
        else:
            order = np.arange(n_rows)
        for start in range(0, n_rows, self.batch_size):
            index = order[start : start + self.batch_size]
            if is_tensor(X):
                batch = X[torch.from_numpy(index).to(X.device)]
            else:
                batch = torch.from_numpy(np.asarray(X[index], dtype=np.float32))
            yield batch, batch


def _reset_optimizer_rows(optimizer, params, index):
    """Zero the optimizer state (moments, momentum) of rows ``index``."""
    for param in params:
        for value in optimizer.state.get(param, {}).values():
            if (
                isinstance(value, torch.Tensor)
                and value.ndim >= 1
                and (value.shape[0] == param.shape[0])
            ):
                value[index] = 0


def _resample_dead(module, optimizer, dead, directions):
    """Re-initialise dead concepts along the worst-reconstructed directions.

    Parameters
    ----------
    module : _SAEModule
        The module being trained (changed in place).
    optimizer : torch.optim.Optimizer or None
        Its optimizer; the state rows of the resampled concepts are zeroed.
    dead : torch.Tensor of shape (n_concepts,), bool
        Concepts that did not fire during the epoch.
    directions : torch.Tensor of shape (m, n_features)
        Residuals of the worst-reconstructed rows, worst first (m >= 1).

    Returns
    -------
    n_resampled : int
    """
    index = dead.nonzero().squeeze(1)  # (n_dead,)
    if len(index) == 0 or len(directions) == 0:
        return 0
    pick = torch.arange(len(index), device=directions.device) % len(directions)
    atoms = directions[pick]
    atoms = atoms / atoms.norm(dim=1, keepdim=True).clamp_min(1e-12)  # (n_dead, d)
    sae = module.sae
    weights = sae.dictionary._weights
    touched = [weights]
    with torch.no_grad():
        weights[index] = atoms.to(weights)
        linear = _encoder_linear(sae)
        if linear is not None:
            alive = ~dead
            scale = (
                linear.weight[alive].norm(dim=1).mean() * 0.2
                if alive.any()
                else torch.tensor(1.0)
            )
            linear.weight[index] = atoms.to(linear.weight) * scale
            linear.bias[index] = 0
            touched += [linear.weight, linear.bias]
        if hasattr(sae, "thresholds"):
            sae.thresholds[index] = _JUMP_LOG_THRESHOLD_INIT
            touched.append(sae.thresholds)
        if optimizer is not None:
            _reset_optimizer_rows(optimizer, touched, index)
    return len(index)


def _dead_concept_monitor_class():
    """Build (once) the skorch callback class; skorch is imported lazily."""
    cls = globals().get("_DeadConceptMonitor")
    if cls is not None:
        return cls
    from skorch.callbacks import Callback

    class _DeadConceptMonitor(Callback):
        """Record ``dead_fraction``, ``l0`` and ``train_sse`` per epoch.

        A concept is dead in an epoch when it never fired on a training row of
        that epoch. With ``resample=True`` dead concepts are re-initialised at
        the end of the epoch along the residuals of the worst-reconstructed
        rows (and ``n_resampled`` is recorded).
        """

        def __init__(self, resample=False):
            self.resample = resample

        def initialize(self):
            self._reset()
            return self

        def _reset(self):
            self.fired_ = None
            self.sse_ = None
            self.nnz_ = None
            self.rows_ = 0
            self.worst_ = None  # residuals, (m, d)
            self.worst_err_ = None  # their squared norms, (m,)

        def on_epoch_begin(self, net, **kwargs):
            self._reset()

        def on_batch_end(self, net, batch=None, training=None, y_pred=None, **kwargs):
            if not training or y_pred is None:
                return
            _, codes, x_hat, _ = y_pred
            with torch.no_grad():
                x = to_tensor(batch[0], device=x_hat.device)
                active = codes != 0  # (n, k)
                fired = active.sum(0)
                nnz = active.sum()
                residual = (x - x_hat).detach()  # (n, d)
                err = residual.square().sum(1)  # (n,)
                if self.fired_ is None:
                    self.fired_, self.nnz_, self.sse_ = fired, nnz, err.sum()
                else:
                    self.fired_ = self.fired_ + fired
                    self.nnz_ = self.nnz_ + nnz
                    self.sse_ = self.sse_ + err.sum()
                self.rows_ += len(x)
                if self.resample:
                    if self.worst_ is not None:
                        residual = torch.cat([self.worst_, residual])
                        err = torch.cat([self.worst_err_, err])
                    keep = torch.topk(err, min(len(err), codes.shape[1])).indices
                    self.worst_, self.worst_err_ = residual[keep], err[keep]

        def on_epoch_end(self, net, **kwargs):
            if self.fired_ is None:
                return
            dead = self.fired_ == 0
            history = net.history
            history.record("dead_fraction", float(dead.float().mean()))
            history.record("l0", float(self.nnz_) / max(self.rows_, 1))
            history.record("train_sse", float(self.sse_))
            if self.resample:
                n_resampled = _resample_dead(
                    net.module_, getattr(net, "optimizer_", None), dead, self.worst_
                )
                history.record("n_resampled", n_resampled)

    _DeadConceptMonitor.__module__ = __name__
    _DeadConceptMonitor.__qualname__ = "_DeadConceptMonitor"
    globals()["_DeadConceptMonitor"] = _DeadConceptMonitor
    return _DeadConceptMonitor


def __getattr__(name):
    # lets pickle find the lazily built callback class in a fresh process
    if name == "_DeadConceptMonitor":
        return _dead_concept_monitor_class()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _is_stream(X):
    """Whether ``X`` is a source of batches rather than one array-like."""
    if hasattr(X, "iter_batches"):
        return True
    if is_tensor(X) or isinstance(X, np.ndarray) or hasattr(X, "__array__"):
        return False
    try:
        import scipy.sparse as sp

        if sp.issparse(X):
            return False
    except ImportError:  # pragma: no cover - scipy is a dependency
        pass
    if isinstance(X, Iterator):
        return True
    if isinstance(X, (list, tuple)):
        return len(X) > 0 and all(getattr(item, "ndim", None) == 2 for item in X)
    return isinstance(X, Iterable) and not isinstance(X, (str, bytes, dict))


# =====================================================================
# the estimators
# =====================================================================
_SAE_PARAMS = """max_epochs : int, default=10
        Passes over the data in ``fit``. ``partial_fit`` makes one pass over
        the data it is given.
    lr : float, default=1e-3
        Learning rate of the optimizer.
    batch_size : int, default=256
        Rows per gradient step (and per batch in ``transform``).
    optimizer : {"adam", "adamw", "sgd"} or torch optimizer class, default="adam"
        Optimizer of the autoencoder's parameters.
    dead_concepts : {"resample", "auxiliary"} or None, default=None
        Dead-concept handling. ``"resample"``: at the end of every epoch, the
        concepts that never fired in it are re-initialised along the residuals
        of the worst-reconstructed rows (their optimizer state is reset).
        ``"auxiliary"``: an auxiliary loss weighted by ``aux_coef`` (AuxK of
        Gao et al. for the top-k SAEs, overcomplete's reanimation term for
        the ReLU and JumpReLU SAEs; not available for ``MPSAEConcepts``).
        The fraction of dead concepts is recorded in ``net_.history`` in
        every case.
    aux_coef : float, default=1/32
        Weight of the auxiliary dead-concept loss.
    decoder_bias : bool, default=True
        Learn a decoder bias ``b_dec`` (initialised to the mean of the first
        data seen), subtracted before encoding and added after decoding.
    %(device)s
    %(random_state)s
        It also drives the shuffling of the batches.
    callbacks : list of skorch callbacks or None, default=None
        Extra ``skorch`` callbacks (instances, or ``(name, callback)`` pairs)
        added to the net. They are deep-copied in ``fit``.
    progress : bool, default=False
        Show a tqdm progress bar per epoch (skorch's ``ProgressBar``)."""

_SAE_ATTRS = """%(concept_attributes)s
    decoder_bias_ : ndarray of shape (n_features,) or None
        Decoder bias ``b_dec``: ``inverse_transform(C) = C @ components_ +
        decoder_bias_``. None when ``decoder_bias=False``.
    n_iter_ : int
        Number of epochs run (each ``partial_fit`` call counts one).
    reconstruction_err_ : float
        Frobenius norm of ``X - X_hat`` accumulated over the last epoch while
        training (the model moves during the epoch; ``score`` is exact).
    dead_fraction_ : float
        Fraction of concepts that never fired during the last epoch.
    net_ : skorch.NeuralNet
        The trained net; ``net_.module_`` is the torch module and
        ``net_.history`` holds, per epoch, ``train_loss``, ``dead_fraction``,
        ``l0`` (mean active concepts per row), ``train_sse`` and, with
        ``dead_concepts="resample"``, ``n_resampled``."""

_SAE_NOTES = """Fitting accepts, besides an array or a tensor, an object with an
    ``iter_batches(batch_size, shuffle, seed)`` method (an activation store), a
    list of 2-D arrays or tensors, or any iterable (e.g. a ``DataLoader``) or
    iterator that yields them, so activations that do not fit in memory can be
    used. A one-shot iterator allows a single epoch. ``partial_fit`` trains one
    pass on each chunk it is given.

    With a fixed ``random_state`` training on the CPU is bitwise reproducible:
    the initialisation and the shuffling use local generators and the global
    torch random state is left untouched. A model fitted on a GPU unpickles on
    a CPU-only machine."""

_sae_docs = Substitution(
    sae_params=_SAE_PARAMS % Substitution().params,
    sae_attrs=_SAE_ATTRS % Substitution().params,
    sae_notes=_SAE_NOTES,
)


class _BaseSAEConcepts(ConceptMixin, BaseEstimator):
    """Shared implementation of the sparse-autoencoder concept estimators."""

    _method: str = ""
    _torch_native = True

    _parameter_constraints: dict = {
        **ConceptMixin._parameter_constraints,
        "max_epochs": [Interval(Integral, 1, None, closed="left")],
        "lr": [Interval(Real, 0, None, closed="neither")],
        "batch_size": [Interval(Integral, 1, None, closed="left")],
        "optimizer": [StrOptions(set(_OPTIMIZERS)), callable],
        "dead_concepts": [StrOptions({"resample", "auxiliary"}), None],
        "aux_coef": [Interval(Real, 0, None, closed="left")],
        "decoder_bias": ["boolean"],
        "device": DEVICE_CONSTRAINT,
        "random_state": ["random_state"],
        "callbacks": [list, None],
        "progress": ["boolean"],
    }

    def __init__(
        self,
        n_concepts=8,
        *,
        max_epochs=10,
        lr=1e-3,
        batch_size=256,
        optimizer="adam",
        dead_concepts=None,
        aux_coef=1 / 32,
        decoder_bias=True,
        device="cpu",
        random_state=None,
        callbacks=None,
        progress=False,
    ):
        self.n_concepts = n_concepts
        self.max_epochs = max_epochs
        self.lr = lr
        self.batch_size = batch_size
        self.optimizer = optimizer
        self.dead_concepts = dead_concepts
        self.aux_coef = aux_coef
        self.decoder_bias = decoder_bias
        self.device = device
        self.random_state = random_state
        self.callbacks = callbacks
        self.progress = progress

    # ------------------------------------------------------ method hooks
    def _module_params(self):
        """Method-specific keyword arguments of :class:`_SAEModule`."""
        return {}

    def _check_method_params(self):
        top_k = getattr(self, "top_k", None)
        if top_k is not None and top_k > self.n_concepts:
            raise ValueError(
                f"top_k={top_k!r} must be <= n_concepts={self.n_concepts!r}; "
                "lower top_k or raise n_concepts."
            )

    # -------------------------------------------------------- public API
    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y=None):
        """Train the sparse autoencoder on activations.

        Parameters
        ----------
        X : array-like, torch.Tensor, activation store or iterable of batches
            Activations of shape (n_samples, n_features), or a source of
            batches of that width (see Notes of the class).
        y : Ignored
            Not used, present for API consistency.

        Returns
        -------
        self : object
            The fitted estimator.
        """
        if _is_stream(X):
            self._fit_stream(X, epochs=self.max_epochs, reset=True)
        else:
            self._fit_full(X)
        return self

    @_fit_context(prefer_skip_nested_validation=True)
    def fit_transform(self, X, y=None, **fit_params):
        """Train the autoencoder and return the concept activations of ``X``.

        Parameters
        ----------
        X : array-like or torch.Tensor of shape (n_samples, n_features)
            Activations (not a stream: use ``fit`` then ``transform``).
        y : Ignored
            Not used, present for API consistency.
        **fit_params : dict
            Unused; accepted for API consistency.

        Returns
        -------
        C : ndarray or torch.Tensor of shape (n_samples, n_concepts)
            Concept activations, float32.
        """
        if _is_stream(X):
            raise TypeError(
                f"{type(self).__name__}.fit_transform needs X in memory; for a "
                "stream of batches call fit(X) and then transform each batch."
            )
        was_tensor = is_tensor(X)
        X, _ = self._fit_full(X)
        return self._format_output(self._transform(X), was_tensor, X)

    @_fit_context(prefer_skip_nested_validation=True)
    def partial_fit(self, X, y=None):
        """Train one pass on a chunk of activations (continues earlier fits).

        Parameters
        ----------
        X : array-like, torch.Tensor or iterable of batches
            A chunk of activations of shape (n_samples, n_features), or a
            source of batches (one pass over it).
        y : Ignored
            Not used, present for API consistency.

        Returns
        -------
        self : object
            The updated estimator.
        """
        first = not hasattr(self, "net_")
        if _is_stream(X):
            self._fit_stream(X, epochs=1, reset=first)
            return self
        X = self._check_X(X, reset=first)
        if first:
            self._start(X.shape[1], _first_mean(X))
        self.net_.partial_fit(X, X, epochs=1)
        self._finish()
        return self

    # ------------------------------------------------------------ fitting
    def _fit(self, X):
        self._start(X.shape[1], _first_mean(X))
        self.net_.partial_fit(X, X, epochs=self.max_epochs)
        self._finish()
        return None

    def _fit_stream(self, source, *, epochs, reset):
        is_store = hasattr(source, "iter_batches")
        if is_store:
            first = next(
                iter(source.iter_batches(self.batch_size, shuffle=False, seed=None)),
                None,
            )
        elif isinstance(source, Iterator):
            first = next(source, None)
            if first is not None:
                source = itertools.chain([first], source)
            if epochs > 1 and first is not None:
                warnings.warn(
                    f"X is a one-shot iterator, so {type(self).__name__} trains "
                    f"a single epoch instead of max_epochs={epochs}; pass a list "
                    "of batches, a re-iterable or an activation store for more.",
                    UserWarning,
                    stacklevel=3,
                )
                epochs = 1
        else:
            first = next(iter(source), None)
        if first is None:
            raise ValueError(
                "X is an empty source of batches; it must yield at least one "
                "2-D array of activations."
            )
        n_features = None if reset else self.n_features_in_
        first = _as_batch(first, n_features, 0)
        if reset:
            self.n_features_in_ = first.shape[1]
            if hasattr(self, "feature_names_in_"):
                del self.feature_names_in_
            self._start(first.shape[1], _first_mean(first))
        self.net_.partial_fit(
            _BatchSource(source, self.n_features_in_), None, epochs=epochs
        )
        self._finish()

    def _start(self, n_features, bias_init):
        """Validate, then build and initialise ``net_``."""
        from skorch import NeuralNet
        from skorch.callbacks import ProgressBar

        self._check_method_params()
        if self.dead_concepts == "auxiliary" and self._method == "mp":
            raise ValueError(
                "dead_concepts='auxiliary' is not available for MPSAEConcepts "
                "(matching pursuit has no encoder to revive); use "
                "dead_concepts='resample'."
            )
        device = resolve_device(self.device)
        rng = check_random_state(self.random_state)
        seed = int(rng.randint(0, 2**31 - 1))
        shuffle_rng = np.random.RandomState(rng.randint(0, 2**31 - 1))
        optimizer = (
            _OPTIMIZERS[self.optimizer]
            if isinstance(self.optimizer, str)
            else self.optimizer
        )
        monitor = _dead_concept_monitor_class()(
            resample=self.dead_concepts == "resample"
        )
        callbacks = [("dead_concepts", monitor)]
        if self.progress:
            callbacks.append(("progress", ProgressBar(batches_per_epoch="count")))
        callbacks += copy.deepcopy(list(self.callbacks or []))
        module_params = {
            "method": self._method,
            "n_features": n_features,
            "n_concepts": self.n_concepts,
            "dead_concepts": self.dead_concepts,
            "aux_coef": self.aux_coef,
            "bias_init": bias_init,
            "decoder_bias": self.decoder_bias,
            "seed": seed,
            **self._module_params(),
        }
        net = NeuralNet(
            module=_SAEModule,
            criterion=_SAELoss,
            optimizer=optimizer,
            lr=self.lr,
            max_epochs=self.max_epochs,
            batch_size=self.batch_size,
            iterator_train=_BatchIterator,
            iterator_train__shuffle=True,
            iterator_train__random_state=shuffle_rng,
            iterator_valid=_BatchIterator,
            train_split=None,
            callbacks=callbacks,
            device=str(device),
            verbose=0,
            **{f"module__{key}": value for key, value in module_params.items()},
        )
        self.net_ = net.initialize()

    def _finish(self):
        module = self.net_.module_
        module.eval()
        with torch.no_grad():
            self.components_ = to_numpy(module.sae.get_dictionary())
            self.decoder_bias_ = (
                None if module.b_dec is None else to_numpy(module.b_dec)
            )
        self._n_features_out = self.components_.shape[0]
        history = self.net_.history
        self.n_iter_ = len(history)
        last = history[-1] if len(history) else {}
        self.reconstruction_err_ = float(np.sqrt(last.get("train_sse", np.nan)))
        self.dead_fraction_ = float(last.get("dead_fraction", np.nan))

    # ---------------------------------------------------------- inference
    def _transform(self, X):
        module = self.net_.module_
        if module.training:
            module.eval()
        device = module.sae.dictionary._weights.device
        out = []
        with torch.no_grad():
            for start in range(0, X.shape[0], self.batch_size):
                batch = to_tensor(X[start : start + self.batch_size], device=device)
                _, codes = module.encode(batch)  # (n, k)
                out.append(codes if is_tensor(X) else to_numpy(codes))
        if is_tensor(X):
            return torch.cat(out).to(X.device)
        return np.concatenate(out)

    def _decoder_offset(self):
        return self.decoder_bias_

    def _wants_torch(self, X):
        # numpy stays numpy (skorch moves each batch to the device), so a model
        # fitted on a GPU also transforms numpy input on a CPU-only machine
        return is_tensor(X)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.non_deterministic = str(self.device) != "cpu"
        return tags


def _first_mean(X):
    """Column mean of the first data seen (initial decoder bias), float32."""
    if is_tensor(X):
        return to_numpy(X.double().mean(0))
    return np.asarray(X, dtype=np.float64).mean(axis=0).astype(np.float32)


@_sae_docs
class SAEConcepts(_BaseSAEConcepts):
    """Concepts of a vanilla sparse autoencoder (ReLU codes, L1 penalty).

    ``codes = relu(W_enc (x - b_dec) + b_enc)`` and ``x_hat = codes @ D + b_dec``
    with unit-norm dictionary rows (overcomplete's ``SAE``). The training loss
    is ``mean((x - x_hat)**2) + l1_coef * mean_rows(sum_j |codes_j|)``.

    Parameters
    ----------
    %(n_concepts)s
    l1_coef : float, default=1e-3
        Weight of the L1 sparsity penalty: a larger value gives fewer active
        concepts per row.
    %(sae_params)s

    Attributes
    ----------
    %(sae_attrs)s

    See Also
    --------
    TopKSAEConcepts : Exactly ``top_k`` active concepts per row.
    JumpReLUSAEConcepts : Learned thresholds and an L0 penalty.

    Notes
    -----
    %(sae_notes)s

    Examples
    --------
    >>> import numpy as np
    >>> from skconcepts.concepts import SAEConcepts
    >>> X = np.random.RandomState(0).randn(64, 6).astype("float32")
    >>> sae = SAEConcepts(n_concepts=12, l1_coef=1e-2, max_epochs=2,
    ...                   random_state=0).fit(X)
    >>> sae.transform(X).shape, sae.components_.shape
    ((64, 12), (12, 6))
    """

    _method = "relu"
    _parameter_constraints: dict = {
        **_BaseSAEConcepts._parameter_constraints,
        "l1_coef": [Interval(Real, 0, None, closed="left")],
    }

    def __init__(
        self,
        n_concepts=8,
        *,
        l1_coef=1e-3,
        max_epochs=10,
        lr=1e-3,
        batch_size=256,
        optimizer="adam",
        dead_concepts=None,
        aux_coef=1 / 32,
        decoder_bias=True,
        device="cpu",
        random_state=None,
        callbacks=None,
        progress=False,
    ):
        super().__init__(
            n_concepts,
            max_epochs=max_epochs,
            lr=lr,
            batch_size=batch_size,
            optimizer=optimizer,
            dead_concepts=dead_concepts,
            aux_coef=aux_coef,
            decoder_bias=decoder_bias,
            device=device,
            random_state=random_state,
            callbacks=callbacks,
            progress=progress,
        )
        self.l1_coef = l1_coef

    def _module_params(self):
        return {"sparsity_coef": self.l1_coef}


@_sae_docs
class TopKSAEConcepts(_BaseSAEConcepts):
    """Concepts of a top-k sparse autoencoder (Gao et al., 2024).

    Each row keeps its ``top_k`` largest ReLU codes, so ``transform`` returns at
    most ``top_k`` non-zeros per row (overcomplete's ``TopKSAE``). The loss is
    the reconstruction MSE (plus AuxK with ``dead_concepts="auxiliary"``).

    Parameters
    ----------
    %(n_concepts)s
    top_k : int, default=4
        Active concepts per row; at most ``n_concepts``.
    %(sae_params)s

    Attributes
    ----------
    %(sae_attrs)s

    See Also
    --------
    BatchTopKSAEConcepts : ``top_k`` active concepts per row on average.
    SAEConcepts : ReLU codes with an L1 penalty.

    Notes
    -----
    %(sae_notes)s

    Examples
    --------
    >>> import numpy as np
    >>> from skconcepts.concepts import TopKSAEConcepts
    >>> X = np.random.RandomState(0).randn(64, 6).astype("float32")
    >>> sae = TopKSAEConcepts(n_concepts=12, top_k=3, max_epochs=2,
    ...                       random_state=0).fit(X)
    >>> C = sae.transform(X)
    >>> C.shape, int((C != 0).sum(axis=1).max()) <= 3
    ((64, 12), True)
    """

    _method = "topk"
    _parameter_constraints: dict = {
        **_BaseSAEConcepts._parameter_constraints,
        "top_k": [Interval(Integral, 1, None, closed="left")],
    }

    def __init__(
        self,
        n_concepts=8,
        *,
        top_k=4,
        max_epochs=10,
        lr=1e-3,
        batch_size=256,
        optimizer="adam",
        dead_concepts=None,
        aux_coef=1 / 32,
        decoder_bias=True,
        device="cpu",
        random_state=None,
        callbacks=None,
        progress=False,
    ):
        super().__init__(
            n_concepts,
            max_epochs=max_epochs,
            lr=lr,
            batch_size=batch_size,
            optimizer=optimizer,
            dead_concepts=dead_concepts,
            aux_coef=aux_coef,
            decoder_bias=decoder_bias,
            device=device,
            random_state=random_state,
            callbacks=callbacks,
            progress=progress,
        )
        self.top_k = top_k

    def _module_params(self):
        return {"top_k": self.top_k}


@_sae_docs
class BatchTopKSAEConcepts(_BaseSAEConcepts):
    """Concepts of a batch top-k sparse autoencoder (Bussmann et al., 2024).

    While training, the ``top_k * batch_size`` largest codes of a batch are kept
    (so rows share a budget of ``top_k`` per row on average); ``transform`` uses
    the running threshold learned in training, so rows are encoded
    independently (overcomplete's ``BatchTopKSAE``).

    Parameters
    ----------
    %(n_concepts)s
    top_k : int, default=4
        Mean number of active concepts per row; at most ``n_concepts``.
    threshold_momentum : float, default=0.9
        Momentum of the running threshold used at inference.
    %(sae_params)s

    Attributes
    ----------
    %(sae_attrs)s

    See Also
    --------
    TopKSAEConcepts : Exactly ``top_k`` active concepts per row.

    Notes
    -----
    %(sae_notes)s

    Examples
    --------
    >>> import numpy as np
    >>> from skconcepts.concepts import BatchTopKSAEConcepts
    >>> X = np.random.RandomState(0).randn(64, 6).astype("float32")
    >>> sae = BatchTopKSAEConcepts(n_concepts=12, top_k=3, max_epochs=2,
    ...                            random_state=0).fit(X)
    >>> sae.transform(X).shape
    (64, 12)
    """

    _method = "batchtopk"
    _parameter_constraints: dict = {
        **_BaseSAEConcepts._parameter_constraints,
        "top_k": [Interval(Integral, 1, None, closed="left")],
        "threshold_momentum": [Interval(Real, 0, 1, closed="both")],
    }

    def __init__(
        self,
        n_concepts=8,
        *,
        top_k=4,
        threshold_momentum=0.9,
        max_epochs=10,
        lr=1e-3,
        batch_size=256,
        optimizer="adam",
        dead_concepts=None,
        aux_coef=1 / 32,
        decoder_bias=True,
        device="cpu",
        random_state=None,
        callbacks=None,
        progress=False,
    ):
        super().__init__(
            n_concepts,
            max_epochs=max_epochs,
            lr=lr,
            batch_size=batch_size,
            optimizer=optimizer,
            dead_concepts=dead_concepts,
            aux_coef=aux_coef,
            decoder_bias=decoder_bias,
            device=device,
            random_state=random_state,
            callbacks=callbacks,
            progress=progress,
        )
        self.top_k = top_k
        self.threshold_momentum = threshold_momentum

    def _module_params(self):
        return {"top_k": self.top_k, "threshold_momentum": self.threshold_momentum}


@_sae_docs
class JumpReLUSAEConcepts(_BaseSAEConcepts):
    """Concepts of a JumpReLU sparse autoencoder (Rajamanoharan et al., 2024).

    A code is kept when its ReLU pre-activation exceeds a learned per-concept
    threshold (overcomplete's ``JumpSAE``). The loss is the reconstruction MSE
    plus ``l0_coef`` times the number of active concepts per row, whose
    gradient reaches the thresholds through a kernel pseudo-derivative.
    overcomplete recommends standardised inputs (e.g. ``ActivationScaler``).
    With Adam the log-thresholds move by about ``lr`` per step whatever
    ``l0_coef`` is, so the sparsity settles only after enough steps.

    Parameters
    ----------
    %(n_concepts)s
    l0_coef : float, default=1e-3
        Weight of the L0 sparsity penalty (mean active concepts per row).
    kernel : {"silverman", "rectangle", "gaussian", "triangular", "cosine", \
"epanechnikov", "quartic", "cauchy"}, default="silverman"
        Kernel of the threshold pseudo-gradient.
    bandwidth : float, default=1e-3
        Bandwidth of that kernel.
    %(sae_params)s

    Attributes
    ----------
    %(sae_attrs)s

    See Also
    --------
    SAEConcepts : ReLU codes with an L1 penalty.

    Notes
    -----
    %(sae_notes)s

    Examples
    --------
    >>> import numpy as np
    >>> from skconcepts.concepts import JumpReLUSAEConcepts
    >>> X = np.random.RandomState(0).randn(64, 6).astype("float32")
    >>> sae = JumpReLUSAEConcepts(n_concepts=12, max_epochs=2,
    ...                           random_state=0).fit(X)
    >>> sae.transform(X).shape
    (64, 12)
    """

    _method = "jumprelu"
    _parameter_constraints: dict = {
        **_BaseSAEConcepts._parameter_constraints,
        "l0_coef": [Interval(Real, 0, None, closed="left")],
        "kernel": [
            StrOptions(
                {
                    "silverman",
                    "rectangle",
                    "gaussian",
                    "triangular",
                    "cosine",
                    "epanechnikov",
                    "quartic",
                    "cauchy",
                }
            )
        ],
        "bandwidth": [Interval(Real, 0, None, closed="neither")],
    }

    def __init__(
        self,
        n_concepts=8,
        *,
        l0_coef=1e-3,
        kernel="silverman",
        bandwidth=1e-3,
        max_epochs=10,
        lr=1e-3,
        batch_size=256,
        optimizer="adam",
        dead_concepts=None,
        aux_coef=1 / 32,
        decoder_bias=True,
        device="cpu",
        random_state=None,
        callbacks=None,
        progress=False,
    ):
        super().__init__(
            n_concepts,
            max_epochs=max_epochs,
            lr=lr,
            batch_size=batch_size,
            optimizer=optimizer,
            dead_concepts=dead_concepts,
            aux_coef=aux_coef,
            decoder_bias=decoder_bias,
            device=device,
            random_state=random_state,
            callbacks=callbacks,
            progress=progress,
        )
        self.l0_coef = l0_coef
        self.kernel = kernel
        self.bandwidth = bandwidth

    def _module_params(self):
        return {
            "sparsity_coef": self.l0_coef,
            "kernel": self.kernel,
            "bandwidth": self.bandwidth,
        }


@_sae_docs
class MPSAEConcepts(_BaseSAEConcepts):
    """Concepts of a matching-pursuit sparse autoencoder (overcomplete's ``MpSAE``).

    The encoder is ``top_k`` greedy matching-pursuit steps over the learned
    dictionary: each step picks the atom most correlated with the residual, so a
    row has at most ``top_k`` non-zero codes (codes may be negative). Only the
    dictionary (and ``b_dec``) is learned, by the reconstruction MSE.

    Parameters
    ----------
    %(n_concepts)s
    top_k : int, default=4
        Matching-pursuit steps per row; at most ``n_concepts``.
    %(sae_params)s

    Attributes
    ----------
    %(sae_attrs)s

    See Also
    --------
    TopKSAEConcepts : A learned linear encoder with top-k selection.

    Notes
    -----
    %(sae_notes)s

    Examples
    --------
    >>> import numpy as np
    >>> from skconcepts.concepts import MPSAEConcepts
    >>> X = np.random.RandomState(0).randn(64, 6).astype("float32")
    >>> sae = MPSAEConcepts(n_concepts=12, top_k=2, max_epochs=2,
    ...                     random_state=0).fit(X)
    >>> C = sae.transform(X)
    >>> C.shape, int((C != 0).sum(axis=1).max()) <= 2
    ((64, 12), True)
    """

    _method = "mp"
    _parameter_constraints: dict = {
        **_BaseSAEConcepts._parameter_constraints,
        "top_k": [Interval(Integral, 1, None, closed="left")],
    }

    def __init__(
        self,
        n_concepts=8,
        *,
        top_k=4,
        max_epochs=10,
        lr=1e-3,
        batch_size=256,
        optimizer="adam",
        dead_concepts=None,
        aux_coef=1 / 32,
        decoder_bias=True,
        device="cpu",
        random_state=None,
        callbacks=None,
        progress=False,
    ):
        super().__init__(
            n_concepts,
            max_epochs=max_epochs,
            lr=lr,
            batch_size=batch_size,
            optimizer=optimizer,
            dead_concepts=dead_concepts,
            aux_coef=aux_coef,
            decoder_bias=decoder_bias,
            device=device,
            random_state=random_state,
            callbacks=callbacks,
            progress=progress,
        )
        self.top_k = top_k

    def _module_params(self):
        return {"top_k": self.top_k}
