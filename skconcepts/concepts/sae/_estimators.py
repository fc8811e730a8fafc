"""The five sparse-autoencoder concept estimators and their shared base class.

Each estimator builds, in ``fit``, a skorch net (``_net._SAENet``) around a
``_module._SAEModule`` and keeps it as ``net_``; the dead-concept monitor
(``_callbacks._DeadConceptMonitor``) is always one of its callbacks. A batch
source (an activation store, an iterable of batches) is recognised by the
package's one protocol, :func:`~skconcepts.concepts._streaming.as_batch_source`,
and read by the skorch iterator (``_data._BatchIterator``); ``transform`` and
``score`` of a source are ``ConceptMixin``'s.
"""

from __future__ import annotations

import copy
from numbers import Integral, Real

import numpy as np
import torch
from sklearn.base import BaseEstimator, _fit_context
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import Hidden, Interval, StrOptions
from skorch.callbacks import ProgressBar

from skconcepts.concepts._base import DEVICE_CONSTRAINT, ConceptMixin
from skconcepts.concepts._streaming import as_batch_source
from skconcepts.concepts.sae._callbacks import _DeadConceptMonitor
from skconcepts.concepts.sae._data import _BatchIterator, _first_mean, _source_mean
from skconcepts.concepts.sae._module import _SAEModule
from skconcepts.concepts.sae._net import _SAENet
from skconcepts.concepts.sae._state import NET_STATE_KEYS, export_net, import_net
from skconcepts.utils._deprecation import DEPRECATED, renamed_param
from skconcepts.utils._progress import progress_enabled
from skconcepts.utils._torch import resolve_device, to_numpy, to_tensor
from skconcepts.utils._torch_free import is_tensor

#: the attribute that holds the exported net while skconcepts.io saves an SAE
_SAVED_NET = "_skconcepts_io_net"

_OPTIMIZERS = {
    "adam": torch.optim.Adam,
    "adamw": torch.optim.AdamW,
    "sgd": torch.optim.SGD,
}


class _BaseSAEConcepts(ConceptMixin, BaseEstimator):
    """Shared implementation of the sparse-autoencoder concept estimators."""

    _method: str = ""
    _torch_native = True
    #: ``ConceptMixin.fit`` streams a batch source through ``_fit_source``
    _streams = True

    _parameter_constraints: dict = {
        **ConceptMixin._parameter_constraints,
        "n_passes": [Interval(Integral, 1, None, closed="left")],
        "lr": [Interval(Real, 0, None, closed="neither")],
        "batch_size": [Interval(Integral, 1, None, closed="left")],
        "optimizer": [StrOptions(set(_OPTIMIZERS)), callable],
        "dead_concepts": [StrOptions({"resample", "auxiliary"}), None],
        "aux_coef": [Interval(Real, 0, None, closed="left")],
        "decoder_bias": ["boolean"],
        "device": DEVICE_CONSTRAINT,
        "random_state": ["random_state"],
        "callbacks": [list, None],
        "progress": ["boolean", None],
        "max_bytes": [Interval(Integral, 0, None, closed="left"), None],
        "max_epochs": [
            Interval(Integral, 1, None, closed="left"),
            Hidden(StrOptions({DEPRECATED})),
        ],
    }

    def __init__(
        self,
        n_concepts=8,
        *,
        n_passes=10,
        lr=1e-3,
        batch_size=256,
        optimizer="adam",
        dead_concepts=None,
        aux_coef=1 / 32,
        decoder_bias=True,
        device="cpu",
        random_state=None,
        callbacks=None,
        progress=None,
        max_bytes=None,
        max_epochs=DEPRECATED,
    ):
        self.n_concepts = n_concepts
        self.n_passes = n_passes
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
        self.max_bytes = max_bytes
        self.max_epochs = max_epochs

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
    def partial_fit(self, X, y=None):
        """Train one pass on a chunk of activations (continues earlier fits).

        The model fitted so far (by ``fit`` or earlier calls) is trained
        further; the first call on an unfitted estimator starts a new one. An
        array or a tensor is one pass over its rows; an
        :class:`~skconcepts.ActivationStore` or an iterable of batches is read
        in one pass, batch by batch.

        Parameters
        ----------
        X : array-like, torch.Tensor, ActivationStore or iterable of batches
            A chunk of activations of shape (n_samples, n_features), or a
            source of batches of that width (one pass over it).
        y : Ignored
            Not used, present for API consistency.

        Returns
        -------
        self : object
            The updated estimator.
        """
        first = not hasattr(self, "net_")
        source = as_batch_source(X)
        if source is not None:
            self._fit_stream(source, n_passes=1, reset=first)
            return self
        X = self._check_X(X, reset=first)
        self._check_value_range(X)
        if first:
            self._start(X.shape[1], _first_mean(X))
        self.net_.partial_fit(X, X, epochs=1)
        self._finish()
        return self

    # ------------------------------------------------------------ fitting
    def _n_passes(self):
        """``n_passes``, or the deprecated ``max_epochs`` (with a warning)."""
        return renamed_param(self, "max_epochs", "n_passes")

    def _fit(self, X):
        self._start(X.shape[1], _first_mean(X))
        self.net_.partial_fit(X, X, epochs=self.net_.max_epochs)
        self._finish()
        return None

    def _fit_source(self, source):
        """``fit`` of a batch source: ``n_passes`` passes over it."""
        self._fit_stream(source, n_passes=None, reset=True)

    def _fit_stream(self, source, *, n_passes, reset):
        """Train ``n_passes`` passes (None: the net's ``max_epochs``) on ``source``.

        ``reset`` starts a new model, its decoder bias initialised to the mean
        of the source's first batch (``BatchSource.first_batch``: the first
        chunk of an iterable, the first ``batch_size`` rows of a store).
        """
        name = type(self).__name__
        if reset:
            first = source.first_batch(self.batch_size)
            if first is None or len(first) == 0:
                label = source.label[:1].upper() + source.label[1:]
                raise ValueError(
                    f"{label} has no rows; {name} needs at least one to fit."
                )
            self.n_features_in_ = source.n_features
            if hasattr(self, "feature_names_in_"):
                del self.feature_names_in_
            self._start(source.n_features, _source_mean(first))
        elif source.n_features != self.n_features_in_:
            raise ValueError(
                f"X has {source.n_features} features, but {name} is expecting "
                f"{self.n_features_in_} features as input."
            )
        if n_passes is None:
            n_passes = self.net_.max_epochs
        n_passes = source.passes(n_passes, owner=name)
        self.net_.partial_fit(source, None, epochs=n_passes)
        self._finish()

    def _start(self, n_features, bias_init):
        """Validate, then build and initialise ``net_``.

        The net's ``max_epochs`` is ``n_passes`` (read once per new model, so
        the deprecated ``max_epochs`` warns once).
        """
        self._check_method_params()
        if self.dead_concepts == "auxiliary" and self._method == "mp":
            raise ValueError(
                "dead_concepts='auxiliary' is not available for MPSAEConcepts "
                "(matching pursuit has no encoder to revive); use "
                "dead_concepts='resample'."
            )
        n_passes = self._n_passes()
        device = resolve_device(self.device)
        rng = check_random_state(self.random_state)
        seed = int(rng.randint(0, 2**31 - 1))
        shuffle_rng = np.random.RandomState(rng.randint(0, 2**31 - 1))
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
        self.net_ = self._build_net(
            module_params, n_passes=n_passes, shuffle_rng=shuffle_rng, device=device
        )

    def _build_net(self, module_params, *, n_passes, shuffle_rng, device):
        """The initialised skorch net of ``module_params`` (used by ``_start``
        and by :meth:`_import_state`, which rebuilds a saved net)."""
        optimizer = (
            _OPTIMIZERS[self.optimizer]
            if isinstance(self.optimizer, str)
            else self.optimizer
        )
        monitor = _DeadConceptMonitor(resample=self.dead_concepts == "resample")
        callbacks = [("dead_concepts", monitor)]
        if progress_enabled(self.progress):
            callbacks.append(("progress", ProgressBar(batches_per_epoch="count")))
        callbacks += copy.deepcopy(list(self.callbacks or []))
        net = _SAENet(
            module=_SAEModule,
            optimizer=optimizer,
            lr=self.lr,
            max_epochs=n_passes,
            batch_size=self.batch_size,
            iterator_train=_BatchIterator,
            iterator_train__shuffle=True,
            iterator_train__random_state=shuffle_rng,
            iterator_train__device=str(device),
            iterator_valid=_BatchIterator,
            train_split=None,
            callbacks=callbacks,
            # no epoch table: verbose=0 silences it only while builtins.print
            # is the original (Ray's driver replaces it)
            callbacks__print_log=None,
            device=str(device),
            verbose=0,
            **{f"module__{key}": value for key, value in module_params.items()},
        )
        return net.initialize()

    def _finish(self):
        module = self.net_.module_
        module.eval()
        with torch.no_grad():
            self.components_ = to_numpy(module.sae.get_dictionary())
            self.decoder_bias_ = (
                None if module.b_dec is None else to_numpy(module.b_dec)
            )
        self._check_fitted_dictionary()  # no NaN dictionary (streamed input too)
        self._n_features_out = self.components_.shape[0]
        history = self.net_.history
        self.n_iter_ = len(history)
        last = history[-1] if len(history) else {}
        self.reconstruction_err_ = float(np.sqrt(last.get("train_sse", np.nan)))
        self.dead_fraction_ = float(last.get("dead_fraction", np.nan))

    # ---------------------------------------------- saving (skconcepts.io)
    def _export_state(self):
        """The attributes :func:`skconcepts.io.save` stores in place of ``vars(self)``.

        skops cannot store the skorch net ``net_`` (torch modules, tensors, an
        optimizer): it is replaced by its state as numpy arrays and builtins
        (``_state.export_net``: the module's weights, the optimizer's moments
        and step counts, the history, the shuffling generator), which
        :meth:`_import_state` loads into a rebuilt net. A ``torch.device``
        parameter is stored as its string.

        Returns
        -------
        state : dict
            A new dict; the estimator itself is not changed.
        """
        state = dict(vars(self))
        if isinstance(state.get("device"), torch.device):
            state["device"] = str(state["device"])
        net = state.pop("net_", None)
        if net is not None:
            state[_SAVED_NET] = export_net(net)
        return state

    def _import_state(self):
        """Rebuild ``net_`` from the state :meth:`_export_state` stored.

        Called by :func:`skconcepts.io.load` on the loaded estimator. The net
        is built as ``fit`` builds it (the estimator's parameters and the saved
        module arguments) on the saved device (the CPU, with a warning, when
        the saved CUDA device is absent), then the saved weights, optimizer
        state, history and shuffling state are loaded: ``transform`` is
        bitwise the saved estimator's and ``partial_fit`` continues its
        training. An estimator saved unfitted has nothing to rebuild.

        Raises
        ------
        ValueError
            If the stored state is not one :meth:`_export_state` writes.
        """
        state = vars(self).pop(_SAVED_NET, None)
        if state is None:
            return
        if not isinstance(state, dict) or set(state) != NET_STATE_KEYS:
            raise ValueError(
                f"the saved net of {type(self).__name__} is not a state written "
                "by skconcepts.io.save; save the pipeline again."
            )
        device = resolve_device(
            state["device"], cpu_fallback=True, owner=type(self).__name__
        )
        shuffle_rng = np.random.RandomState()
        if state["shuffle_state"] is not None:
            shuffle_rng.set_state(tuple(state["shuffle_state"]))
        net = self._build_net(
            dict(state["module"]),
            n_passes=state["n_passes"],
            shuffle_rng=shuffle_rng,
            device=device,
        )
        self.net_ = import_net(net, state)

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


class SAEConcepts(_BaseSAEConcepts):
    """Concepts of a vanilla sparse autoencoder (ReLU codes, L1 penalty).

    ``codes = relu(W_enc (x - b_dec) + b_enc)`` and ``x_hat = codes @ D + b_dec``
    with unit-norm dictionary rows (overcomplete's ``SAE``). The training loss
    is ``mean((x - x_hat)**2) + l1_coef * mean_rows(sum_j |codes_j|)``.

    Parameters
    ----------
    n_concepts : int, default=8
        Number of concepts (rows of the dictionary) to learn.
    l1_coef : float, default=1e-3
        Weight of the L1 sparsity penalty: a larger value gives fewer active
        concepts per row.
    n_passes : int, default=10
        Passes over the data in ``fit`` and ``fit_transform`` (skorch's
        epochs): over the rows of an array or a tensor, shuffled in each pass,
        or over a batch source: an :class:`~skconcepts.ActivationStore` is
        read in a new random order in each pass (seeded by ``random_state``),
        an iterable in its own order with the rows of each chunk shuffled; a
        one-shot iterator allows one pass (a warning says so).
        ``partial_fit`` makes one pass over the data it is given. The package's
        one name for passes over the data (formerly ``max_epochs``).
    lr : float, default=1e-3
        Learning rate of the optimizer.
    batch_size : int, default=256
        Rows per gradient step (the chunks of an iterable of batches are
        regrouped into batches of this size), and per batch in ``transform``
        and ``score`` (and per read of a batch source).
    optimizer : {"adam", "adamw", "sgd"} or torch optimizer class, default="adam"
        Optimizer of the autoencoder's parameters.
    dead_concepts : {"resample", "auxiliary"} or None, default=None
        Dead-concept handling. ``"resample"``: at the end of every pass, the
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
    device : {"cpu", "cuda", "auto"} or torch.device, default="cpu"
        Where the computation runs. ``"auto"`` takes CUDA when available.
        Fitted attributes are always stored as CPU numpy arrays, so a model
        fitted on a GPU loads on a CPU-only machine.
    random_state : int, RandomState instance or None, default=None
        Seed of the initialisation. An int makes ``fit`` reproducible (bitwise
        on the CPU). It seeds a local generator; the global torch seed is never
        touched.
        It also drives the shuffling of the batches.
    callbacks : list of skorch callbacks or None, default=None
        Extra ``skorch`` callbacks (instances, or ``(name, callback)`` pairs)
        added to the net. They are deep-copied in ``fit``.
    progress : bool or None, default=None
        Show a tqdm progress bar per pass of ``fit`` (skorch's
        ``ProgressBar``), and over the rows when ``transform`` or ``score``
        read a batch source.
        ``None`` (the default) shows it only when stderr is an interactive
        terminal or a notebook (tqdm's rule); ``True`` always, ``False`` never.
    max_bytes : int or None, default=None
        Memory budget, in bytes, of ``transform`` of an
        :class:`~skconcepts.ActivationStore` or an iterable of batches: its
        output array must fit in it (``None``: 25% of the RAM available), else
        a ``StoreTooLargeError`` says to write the concepts to disk with
        ``transform_to_store``. ``fit`` streams a batch source and needs no
        budget.
    max_epochs : int, default="deprecated"
        Deprecated alias of ``n_passes``, removed in the next release: when
        set, ``fit`` uses its value and warns with a ``FutureWarning``.

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
    decoder_bias_ : ndarray of shape (n_features,) or None
        Decoder bias ``b_dec``: ``inverse_transform(C) = C @ components_ +
        decoder_bias_``. None when ``decoder_bias=False``.
    n_iter_ : int
        Number of passes run (each ``partial_fit`` call counts one).
    reconstruction_err_ : float
        Frobenius norm of ``X - X_hat`` accumulated over the last pass while
        training (the model moves during the pass; ``score`` is exact).
    dead_fraction_ : float
        Fraction of concepts that never fired during the last pass.
    net_ : skorch.NeuralNet
        The trained net; ``net_.module_`` is the torch module and
        ``net_.history`` holds, per pass (skorch's epoch), ``train_loss``,
        ``dead_fraction``, ``l0`` (mean active concepts per row), ``train_sse``
        and, with ``dead_concepts="resample"``, ``n_resampled``.

    See Also
    --------
    TopKSAEConcepts : Exactly ``top_k`` active concepts per row.
    JumpReLUSAEConcepts : Learned thresholds and an L0 penalty.

    Notes
    -----
    ``X`` may be a batch source, so activations that do not fit in memory can
    be used: an :class:`~skconcepts.ActivationStore` (activations on disk, see
    :func:`~skconcepts.store.extract_to_store`), or an iterable of 2-D arrays
    or tensors (a list, a ``DataLoader`` yielding ``X`` or ``(X, y)``, a
    generator). ``fit`` and ``fit_transform`` then train ``n_passes`` passes
    over it in batches of ``batch_size`` rows (a one-shot iterator allows one
    pass, and no ``fit_transform``, which reads ``X`` twice), and
    ``partial_fit`` one pass on each chunk or source it is given; memory
    stays bounded by one shard of the store (or one chunk) plus one batch.
    The decoder bias starts at the mean of the first data seen: the first
    chunk of an iterable, the first ``batch_size`` rows of a store.
    ``transform`` and ``score`` of a store or a re-readable iterable read it
    batch by batch (``transform`` returns one array, within ``max_bytes``;
    ``transform_to_store`` writes the concept activations to another store
    instead).

    With a fixed ``random_state`` training on the CPU is bitwise reproducible:
    the initialisation and the shuffling use local generators and the global
    torch random state is left untouched. A model fitted on a GPU unpickles on
    a CPU-only machine.

    Examples
    --------
    >>> import numpy as np
    >>> from skconcepts.concepts import SAEConcepts
    >>> X = np.random.RandomState(0).randn(64, 6).astype("float32")
    >>> sae = SAEConcepts(n_concepts=12, l1_coef=1e-2, n_passes=2,
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
        n_passes=10,
        lr=1e-3,
        batch_size=256,
        optimizer="adam",
        dead_concepts=None,
        aux_coef=1 / 32,
        decoder_bias=True,
        device="cpu",
        random_state=None,
        callbacks=None,
        progress=None,
        max_bytes=None,
        max_epochs=DEPRECATED,
    ):
        super().__init__(
            n_concepts,
            n_passes=n_passes,
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
            max_bytes=max_bytes,
            max_epochs=max_epochs,
        )
        self.l1_coef = l1_coef

    def _module_params(self):
        return {"sparsity_coef": self.l1_coef}


class TopKSAEConcepts(_BaseSAEConcepts):
    """Concepts of a top-k sparse autoencoder (Gao et al., 2024).

    Each row keeps its ``top_k`` largest ReLU codes, so ``transform`` returns at
    most ``top_k`` non-zeros per row (overcomplete's ``TopKSAE``). The loss is
    the reconstruction MSE (plus AuxK with ``dead_concepts="auxiliary"``).

    Parameters
    ----------
    n_concepts : int, default=8
        Number of concepts (rows of the dictionary) to learn.
    top_k : int, default=4
        Active concepts per row; at most ``n_concepts``.
    n_passes : int, default=10
        Passes over the data in ``fit`` and ``fit_transform`` (skorch's
        epochs): over the rows of an array or a tensor, shuffled in each pass,
        or over a batch source: an :class:`~skconcepts.ActivationStore` is
        read in a new random order in each pass (seeded by ``random_state``),
        an iterable in its own order with the rows of each chunk shuffled; a
        one-shot iterator allows one pass (a warning says so).
        ``partial_fit`` makes one pass over the data it is given. The package's
        one name for passes over the data (formerly ``max_epochs``).
    lr : float, default=1e-3
        Learning rate of the optimizer.
    batch_size : int, default=256
        Rows per gradient step (the chunks of an iterable of batches are
        regrouped into batches of this size), and per batch in ``transform``
        and ``score`` (and per read of a batch source).
    optimizer : {"adam", "adamw", "sgd"} or torch optimizer class, default="adam"
        Optimizer of the autoencoder's parameters.
    dead_concepts : {"resample", "auxiliary"} or None, default=None
        Dead-concept handling. ``"resample"``: at the end of every pass, the
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
    device : {"cpu", "cuda", "auto"} or torch.device, default="cpu"
        Where the computation runs. ``"auto"`` takes CUDA when available.
        Fitted attributes are always stored as CPU numpy arrays, so a model
        fitted on a GPU loads on a CPU-only machine.
    random_state : int, RandomState instance or None, default=None
        Seed of the initialisation. An int makes ``fit`` reproducible (bitwise
        on the CPU). It seeds a local generator; the global torch seed is never
        touched.
        It also drives the shuffling of the batches.
    callbacks : list of skorch callbacks or None, default=None
        Extra ``skorch`` callbacks (instances, or ``(name, callback)`` pairs)
        added to the net. They are deep-copied in ``fit``.
    progress : bool or None, default=None
        Show a tqdm progress bar per pass of ``fit`` (skorch's
        ``ProgressBar``), and over the rows when ``transform`` or ``score``
        read a batch source.
        ``None`` (the default) shows it only when stderr is an interactive
        terminal or a notebook (tqdm's rule); ``True`` always, ``False`` never.
    max_bytes : int or None, default=None
        Memory budget, in bytes, of ``transform`` of an
        :class:`~skconcepts.ActivationStore` or an iterable of batches: its
        output array must fit in it (``None``: 25% of the RAM available), else
        a ``StoreTooLargeError`` says to write the concepts to disk with
        ``transform_to_store``. ``fit`` streams a batch source and needs no
        budget.
    max_epochs : int, default="deprecated"
        Deprecated alias of ``n_passes``, removed in the next release: when
        set, ``fit`` uses its value and warns with a ``FutureWarning``.

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
    decoder_bias_ : ndarray of shape (n_features,) or None
        Decoder bias ``b_dec``: ``inverse_transform(C) = C @ components_ +
        decoder_bias_``. None when ``decoder_bias=False``.
    n_iter_ : int
        Number of passes run (each ``partial_fit`` call counts one).
    reconstruction_err_ : float
        Frobenius norm of ``X - X_hat`` accumulated over the last pass while
        training (the model moves during the pass; ``score`` is exact).
    dead_fraction_ : float
        Fraction of concepts that never fired during the last pass.
    net_ : skorch.NeuralNet
        The trained net; ``net_.module_`` is the torch module and
        ``net_.history`` holds, per pass (skorch's epoch), ``train_loss``,
        ``dead_fraction``, ``l0`` (mean active concepts per row), ``train_sse``
        and, with ``dead_concepts="resample"``, ``n_resampled``.

    See Also
    --------
    BatchTopKSAEConcepts : ``top_k`` active concepts per row on average.
    SAEConcepts : ReLU codes with an L1 penalty.

    Notes
    -----
    ``X`` may be a batch source, so activations that do not fit in memory can
    be used: an :class:`~skconcepts.ActivationStore` (activations on disk, see
    :func:`~skconcepts.store.extract_to_store`), or an iterable of 2-D arrays
    or tensors (a list, a ``DataLoader`` yielding ``X`` or ``(X, y)``, a
    generator). ``fit`` and ``fit_transform`` then train ``n_passes`` passes
    over it in batches of ``batch_size`` rows (a one-shot iterator allows one
    pass, and no ``fit_transform``, which reads ``X`` twice), and
    ``partial_fit`` one pass on each chunk or source it is given; memory
    stays bounded by one shard of the store (or one chunk) plus one batch.
    The decoder bias starts at the mean of the first data seen: the first
    chunk of an iterable, the first ``batch_size`` rows of a store.
    ``transform`` and ``score`` of a store or a re-readable iterable read it
    batch by batch (``transform`` returns one array, within ``max_bytes``;
    ``transform_to_store`` writes the concept activations to another store
    instead).

    With a fixed ``random_state`` training on the CPU is bitwise reproducible:
    the initialisation and the shuffling use local generators and the global
    torch random state is left untouched. A model fitted on a GPU unpickles on
    a CPU-only machine.

    Examples
    --------
    >>> import numpy as np
    >>> from skconcepts.concepts import TopKSAEConcepts
    >>> X = np.random.RandomState(0).randn(64, 6).astype("float32")
    >>> sae = TopKSAEConcepts(n_concepts=12, top_k=3, n_passes=2,
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
        n_passes=10,
        lr=1e-3,
        batch_size=256,
        optimizer="adam",
        dead_concepts=None,
        aux_coef=1 / 32,
        decoder_bias=True,
        device="cpu",
        random_state=None,
        callbacks=None,
        progress=None,
        max_bytes=None,
        max_epochs=DEPRECATED,
    ):
        super().__init__(
            n_concepts,
            n_passes=n_passes,
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
            max_bytes=max_bytes,
            max_epochs=max_epochs,
        )
        self.top_k = top_k

    def _module_params(self):
        return {"top_k": self.top_k}


class BatchTopKSAEConcepts(_BaseSAEConcepts):
    """Concepts of a batch top-k sparse autoencoder (Bussmann et al., 2024).

    While training, the ``top_k * batch_size`` largest codes of a batch are kept
    (so rows share a budget of ``top_k`` per row on average); ``transform`` uses
    the running threshold learned in training, so rows are encoded
    independently (overcomplete's ``BatchTopKSAE``).

    Parameters
    ----------
    n_concepts : int, default=8
        Number of concepts (rows of the dictionary) to learn.
    top_k : int, default=4
        Mean number of active concepts per row; at most ``n_concepts``.
    threshold_momentum : float, default=0.9
        Momentum of the running threshold used at inference.
    n_passes : int, default=10
        Passes over the data in ``fit`` and ``fit_transform`` (skorch's
        epochs): over the rows of an array or a tensor, shuffled in each pass,
        or over a batch source: an :class:`~skconcepts.ActivationStore` is
        read in a new random order in each pass (seeded by ``random_state``),
        an iterable in its own order with the rows of each chunk shuffled; a
        one-shot iterator allows one pass (a warning says so).
        ``partial_fit`` makes one pass over the data it is given. The package's
        one name for passes over the data (formerly ``max_epochs``).
    lr : float, default=1e-3
        Learning rate of the optimizer.
    batch_size : int, default=256
        Rows per gradient step (the chunks of an iterable of batches are
        regrouped into batches of this size), and per batch in ``transform``
        and ``score`` (and per read of a batch source).
    optimizer : {"adam", "adamw", "sgd"} or torch optimizer class, default="adam"
        Optimizer of the autoencoder's parameters.
    dead_concepts : {"resample", "auxiliary"} or None, default=None
        Dead-concept handling. ``"resample"``: at the end of every pass, the
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
    device : {"cpu", "cuda", "auto"} or torch.device, default="cpu"
        Where the computation runs. ``"auto"`` takes CUDA when available.
        Fitted attributes are always stored as CPU numpy arrays, so a model
        fitted on a GPU loads on a CPU-only machine.
    random_state : int, RandomState instance or None, default=None
        Seed of the initialisation. An int makes ``fit`` reproducible (bitwise
        on the CPU). It seeds a local generator; the global torch seed is never
        touched.
        It also drives the shuffling of the batches.
    callbacks : list of skorch callbacks or None, default=None
        Extra ``skorch`` callbacks (instances, or ``(name, callback)`` pairs)
        added to the net. They are deep-copied in ``fit``.
    progress : bool or None, default=None
        Show a tqdm progress bar per pass of ``fit`` (skorch's
        ``ProgressBar``), and over the rows when ``transform`` or ``score``
        read a batch source.
        ``None`` (the default) shows it only when stderr is an interactive
        terminal or a notebook (tqdm's rule); ``True`` always, ``False`` never.
    max_bytes : int or None, default=None
        Memory budget, in bytes, of ``transform`` of an
        :class:`~skconcepts.ActivationStore` or an iterable of batches: its
        output array must fit in it (``None``: 25% of the RAM available), else
        a ``StoreTooLargeError`` says to write the concepts to disk with
        ``transform_to_store``. ``fit`` streams a batch source and needs no
        budget.
    max_epochs : int, default="deprecated"
        Deprecated alias of ``n_passes``, removed in the next release: when
        set, ``fit`` uses its value and warns with a ``FutureWarning``.

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
    decoder_bias_ : ndarray of shape (n_features,) or None
        Decoder bias ``b_dec``: ``inverse_transform(C) = C @ components_ +
        decoder_bias_``. None when ``decoder_bias=False``.
    n_iter_ : int
        Number of passes run (each ``partial_fit`` call counts one).
    reconstruction_err_ : float
        Frobenius norm of ``X - X_hat`` accumulated over the last pass while
        training (the model moves during the pass; ``score`` is exact).
    dead_fraction_ : float
        Fraction of concepts that never fired during the last pass.
    net_ : skorch.NeuralNet
        The trained net; ``net_.module_`` is the torch module and
        ``net_.history`` holds, per pass (skorch's epoch), ``train_loss``,
        ``dead_fraction``, ``l0`` (mean active concepts per row), ``train_sse``
        and, with ``dead_concepts="resample"``, ``n_resampled``.

    See Also
    --------
    TopKSAEConcepts : Exactly ``top_k`` active concepts per row.

    Notes
    -----
    ``X`` may be a batch source, so activations that do not fit in memory can
    be used: an :class:`~skconcepts.ActivationStore` (activations on disk, see
    :func:`~skconcepts.store.extract_to_store`), or an iterable of 2-D arrays
    or tensors (a list, a ``DataLoader`` yielding ``X`` or ``(X, y)``, a
    generator). ``fit`` and ``fit_transform`` then train ``n_passes`` passes
    over it in batches of ``batch_size`` rows (a one-shot iterator allows one
    pass, and no ``fit_transform``, which reads ``X`` twice), and
    ``partial_fit`` one pass on each chunk or source it is given; memory
    stays bounded by one shard of the store (or one chunk) plus one batch.
    The decoder bias starts at the mean of the first data seen: the first
    chunk of an iterable, the first ``batch_size`` rows of a store.
    ``transform`` and ``score`` of a store or a re-readable iterable read it
    batch by batch (``transform`` returns one array, within ``max_bytes``;
    ``transform_to_store`` writes the concept activations to another store
    instead).

    With a fixed ``random_state`` training on the CPU is bitwise reproducible:
    the initialisation and the shuffling use local generators and the global
    torch random state is left untouched. A model fitted on a GPU unpickles on
    a CPU-only machine.

    Examples
    --------
    >>> import numpy as np
    >>> from skconcepts.concepts import BatchTopKSAEConcepts
    >>> X = np.random.RandomState(0).randn(64, 6).astype("float32")
    >>> sae = BatchTopKSAEConcepts(n_concepts=12, top_k=3, n_passes=2,
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
        n_passes=10,
        lr=1e-3,
        batch_size=256,
        optimizer="adam",
        dead_concepts=None,
        aux_coef=1 / 32,
        decoder_bias=True,
        device="cpu",
        random_state=None,
        callbacks=None,
        progress=None,
        max_bytes=None,
        max_epochs=DEPRECATED,
    ):
        super().__init__(
            n_concepts,
            n_passes=n_passes,
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
            max_bytes=max_bytes,
            max_epochs=max_epochs,
        )
        self.top_k = top_k
        self.threshold_momentum = threshold_momentum

    def _module_params(self):
        return {"top_k": self.top_k, "threshold_momentum": self.threshold_momentum}


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
    n_concepts : int, default=8
        Number of concepts (rows of the dictionary) to learn.
    l0_coef : float, default=1e-3
        Weight of the L0 sparsity penalty (mean active concepts per row).
    kernel : {"silverman", "rectangle", "gaussian", "triangular", "cosine", \
"epanechnikov", "quartic", "cauchy"}, default="silverman"
        Kernel of the threshold pseudo-gradient.
    bandwidth : float, default=1e-3
        Bandwidth of that kernel.
    n_passes : int, default=10
        Passes over the data in ``fit`` and ``fit_transform`` (skorch's
        epochs): over the rows of an array or a tensor, shuffled in each pass,
        or over a batch source: an :class:`~skconcepts.ActivationStore` is
        read in a new random order in each pass (seeded by ``random_state``),
        an iterable in its own order with the rows of each chunk shuffled; a
        one-shot iterator allows one pass (a warning says so).
        ``partial_fit`` makes one pass over the data it is given. The package's
        one name for passes over the data (formerly ``max_epochs``).
    lr : float, default=1e-3
        Learning rate of the optimizer.
    batch_size : int, default=256
        Rows per gradient step (the chunks of an iterable of batches are
        regrouped into batches of this size), and per batch in ``transform``
        and ``score`` (and per read of a batch source).
    optimizer : {"adam", "adamw", "sgd"} or torch optimizer class, default="adam"
        Optimizer of the autoencoder's parameters.
    dead_concepts : {"resample", "auxiliary"} or None, default=None
        Dead-concept handling. ``"resample"``: at the end of every pass, the
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
    device : {"cpu", "cuda", "auto"} or torch.device, default="cpu"
        Where the computation runs. ``"auto"`` takes CUDA when available.
        Fitted attributes are always stored as CPU numpy arrays, so a model
        fitted on a GPU loads on a CPU-only machine.
    random_state : int, RandomState instance or None, default=None
        Seed of the initialisation. An int makes ``fit`` reproducible (bitwise
        on the CPU). It seeds a local generator; the global torch seed is never
        touched.
        It also drives the shuffling of the batches.
    callbacks : list of skorch callbacks or None, default=None
        Extra ``skorch`` callbacks (instances, or ``(name, callback)`` pairs)
        added to the net. They are deep-copied in ``fit``.
    progress : bool or None, default=None
        Show a tqdm progress bar per pass of ``fit`` (skorch's
        ``ProgressBar``), and over the rows when ``transform`` or ``score``
        read a batch source.
        ``None`` (the default) shows it only when stderr is an interactive
        terminal or a notebook (tqdm's rule); ``True`` always, ``False`` never.
    max_bytes : int or None, default=None
        Memory budget, in bytes, of ``transform`` of an
        :class:`~skconcepts.ActivationStore` or an iterable of batches: its
        output array must fit in it (``None``: 25% of the RAM available), else
        a ``StoreTooLargeError`` says to write the concepts to disk with
        ``transform_to_store``. ``fit`` streams a batch source and needs no
        budget.
    max_epochs : int, default="deprecated"
        Deprecated alias of ``n_passes``, removed in the next release: when
        set, ``fit`` uses its value and warns with a ``FutureWarning``.

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
    decoder_bias_ : ndarray of shape (n_features,) or None
        Decoder bias ``b_dec``: ``inverse_transform(C) = C @ components_ +
        decoder_bias_``. None when ``decoder_bias=False``.
    n_iter_ : int
        Number of passes run (each ``partial_fit`` call counts one).
    reconstruction_err_ : float
        Frobenius norm of ``X - X_hat`` accumulated over the last pass while
        training (the model moves during the pass; ``score`` is exact).
    dead_fraction_ : float
        Fraction of concepts that never fired during the last pass.
    net_ : skorch.NeuralNet
        The trained net; ``net_.module_`` is the torch module and
        ``net_.history`` holds, per pass (skorch's epoch), ``train_loss``,
        ``dead_fraction``, ``l0`` (mean active concepts per row), ``train_sse``
        and, with ``dead_concepts="resample"``, ``n_resampled``.

    See Also
    --------
    SAEConcepts : ReLU codes with an L1 penalty.

    Notes
    -----
    ``X`` may be a batch source, so activations that do not fit in memory can
    be used: an :class:`~skconcepts.ActivationStore` (activations on disk, see
    :func:`~skconcepts.store.extract_to_store`), or an iterable of 2-D arrays
    or tensors (a list, a ``DataLoader`` yielding ``X`` or ``(X, y)``, a
    generator). ``fit`` and ``fit_transform`` then train ``n_passes`` passes
    over it in batches of ``batch_size`` rows (a one-shot iterator allows one
    pass, and no ``fit_transform``, which reads ``X`` twice), and
    ``partial_fit`` one pass on each chunk or source it is given; memory
    stays bounded by one shard of the store (or one chunk) plus one batch.
    The decoder bias starts at the mean of the first data seen: the first
    chunk of an iterable, the first ``batch_size`` rows of a store.
    ``transform`` and ``score`` of a store or a re-readable iterable read it
    batch by batch (``transform`` returns one array, within ``max_bytes``;
    ``transform_to_store`` writes the concept activations to another store
    instead).

    With a fixed ``random_state`` training on the CPU is bitwise reproducible:
    the initialisation and the shuffling use local generators and the global
    torch random state is left untouched. A model fitted on a GPU unpickles on
    a CPU-only machine.

    Examples
    --------
    >>> import numpy as np
    >>> from skconcepts.concepts import JumpReLUSAEConcepts
    >>> X = np.random.RandomState(0).randn(64, 6).astype("float32")
    >>> sae = JumpReLUSAEConcepts(n_concepts=12, n_passes=2,
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
        n_passes=10,
        lr=1e-3,
        batch_size=256,
        optimizer="adam",
        dead_concepts=None,
        aux_coef=1 / 32,
        decoder_bias=True,
        device="cpu",
        random_state=None,
        callbacks=None,
        progress=None,
        max_bytes=None,
        max_epochs=DEPRECATED,
    ):
        super().__init__(
            n_concepts,
            n_passes=n_passes,
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
            max_bytes=max_bytes,
            max_epochs=max_epochs,
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


class MPSAEConcepts(_BaseSAEConcepts):
    """Concepts of a matching-pursuit sparse autoencoder (overcomplete's ``MpSAE``).

    The encoder is ``top_k`` greedy matching-pursuit steps over the learned
    dictionary: each step picks the atom most correlated with the residual, so a
    row has at most ``top_k`` non-zero codes (codes may be negative). Only the
    dictionary (and ``b_dec``) is learned, by the reconstruction MSE.

    Parameters
    ----------
    n_concepts : int, default=8
        Number of concepts (rows of the dictionary) to learn.
    top_k : int, default=4
        Matching-pursuit steps per row; at most ``n_concepts``.
    n_passes : int, default=10
        Passes over the data in ``fit`` and ``fit_transform`` (skorch's
        epochs): over the rows of an array or a tensor, shuffled in each pass,
        or over a batch source: an :class:`~skconcepts.ActivationStore` is
        read in a new random order in each pass (seeded by ``random_state``),
        an iterable in its own order with the rows of each chunk shuffled; a
        one-shot iterator allows one pass (a warning says so).
        ``partial_fit`` makes one pass over the data it is given. The package's
        one name for passes over the data (formerly ``max_epochs``).
    lr : float, default=1e-3
        Learning rate of the optimizer.
    batch_size : int, default=256
        Rows per gradient step (the chunks of an iterable of batches are
        regrouped into batches of this size), and per batch in ``transform``
        and ``score`` (and per read of a batch source).
    optimizer : {"adam", "adamw", "sgd"} or torch optimizer class, default="adam"
        Optimizer of the autoencoder's parameters.
    dead_concepts : {"resample", "auxiliary"} or None, default=None
        Dead-concept handling. ``"resample"``: at the end of every pass, the
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
    device : {"cpu", "cuda", "auto"} or torch.device, default="cpu"
        Where the computation runs. ``"auto"`` takes CUDA when available.
        Fitted attributes are always stored as CPU numpy arrays, so a model
        fitted on a GPU loads on a CPU-only machine.
    random_state : int, RandomState instance or None, default=None
        Seed of the initialisation. An int makes ``fit`` reproducible (bitwise
        on the CPU). It seeds a local generator; the global torch seed is never
        touched.
        It also drives the shuffling of the batches.
    callbacks : list of skorch callbacks or None, default=None
        Extra ``skorch`` callbacks (instances, or ``(name, callback)`` pairs)
        added to the net. They are deep-copied in ``fit``.
    progress : bool or None, default=None
        Show a tqdm progress bar per pass of ``fit`` (skorch's
        ``ProgressBar``), and over the rows when ``transform`` or ``score``
        read a batch source.
        ``None`` (the default) shows it only when stderr is an interactive
        terminal or a notebook (tqdm's rule); ``True`` always, ``False`` never.
    max_bytes : int or None, default=None
        Memory budget, in bytes, of ``transform`` of an
        :class:`~skconcepts.ActivationStore` or an iterable of batches: its
        output array must fit in it (``None``: 25% of the RAM available), else
        a ``StoreTooLargeError`` says to write the concepts to disk with
        ``transform_to_store``. ``fit`` streams a batch source and needs no
        budget.
    max_epochs : int, default="deprecated"
        Deprecated alias of ``n_passes``, removed in the next release: when
        set, ``fit`` uses its value and warns with a ``FutureWarning``.

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
    decoder_bias_ : ndarray of shape (n_features,) or None
        Decoder bias ``b_dec``: ``inverse_transform(C) = C @ components_ +
        decoder_bias_``. None when ``decoder_bias=False``.
    n_iter_ : int
        Number of passes run (each ``partial_fit`` call counts one).
    reconstruction_err_ : float
        Frobenius norm of ``X - X_hat`` accumulated over the last pass while
        training (the model moves during the pass; ``score`` is exact).
    dead_fraction_ : float
        Fraction of concepts that never fired during the last pass.
    net_ : skorch.NeuralNet
        The trained net; ``net_.module_`` is the torch module and
        ``net_.history`` holds, per pass (skorch's epoch), ``train_loss``,
        ``dead_fraction``, ``l0`` (mean active concepts per row), ``train_sse``
        and, with ``dead_concepts="resample"``, ``n_resampled``.

    See Also
    --------
    TopKSAEConcepts : A learned linear encoder with top-k selection.

    Notes
    -----
    ``X`` may be a batch source, so activations that do not fit in memory can
    be used: an :class:`~skconcepts.ActivationStore` (activations on disk, see
    :func:`~skconcepts.store.extract_to_store`), or an iterable of 2-D arrays
    or tensors (a list, a ``DataLoader`` yielding ``X`` or ``(X, y)``, a
    generator). ``fit`` and ``fit_transform`` then train ``n_passes`` passes
    over it in batches of ``batch_size`` rows (a one-shot iterator allows one
    pass, and no ``fit_transform``, which reads ``X`` twice), and
    ``partial_fit`` one pass on each chunk or source it is given; memory
    stays bounded by one shard of the store (or one chunk) plus one batch.
    The decoder bias starts at the mean of the first data seen: the first
    chunk of an iterable, the first ``batch_size`` rows of a store.
    ``transform`` and ``score`` of a store or a re-readable iterable read it
    batch by batch (``transform`` returns one array, within ``max_bytes``;
    ``transform_to_store`` writes the concept activations to another store
    instead).

    With a fixed ``random_state`` training on the CPU is bitwise reproducible:
    the initialisation and the shuffling use local generators and the global
    torch random state is left untouched. A model fitted on a GPU unpickles on
    a CPU-only machine.

    Examples
    --------
    >>> import numpy as np
    >>> from skconcepts.concepts import MPSAEConcepts
    >>> X = np.random.RandomState(0).randn(64, 6).astype("float32")
    >>> sae = MPSAEConcepts(n_concepts=12, top_k=2, n_passes=2,
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
        n_passes=10,
        lr=1e-3,
        batch_size=256,
        optimizer="adam",
        dead_concepts=None,
        aux_coef=1 / 32,
        decoder_bias=True,
        device="cpu",
        random_state=None,
        callbacks=None,
        progress=None,
        max_bytes=None,
        max_epochs=DEPRECATED,
    ):
        super().__init__(
            n_concepts,
            n_passes=n_passes,
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
            max_bytes=max_bytes,
            max_epochs=max_epochs,
        )
        self.top_k = top_k

    def _module_params(self):
        return {"top_k": self.top_k}
