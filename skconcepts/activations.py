"""SplitPointActivations: texts to the activations of a transformer at a layer.

The estimator cuts a Hugging Face model at a *split point* (a block, or any
module named by its dotted path), runs the forward pass only up to that
module (early exit, ``torch.inference_mode``), and returns one activation row
per *unit*: token, word, sentence, whole text (sample) or leading special
token (cls). :meth:`SplitPointActivations.units` says which text and which
span of characters every row covers.
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
import pickle
import warnings
from numbers import Integral
from typing import NamedTuple

import numpy as np
import torch
from sklearn.base import BaseEstimator, TransformerMixin, _fit_context, clone
from sklearn.utils._param_validation import HasMethods, Interval, StrOptions

from skconcepts._cache import (
    ActivationCache,
    folder_signature,
    model_fingerprint,
    tokenizer_fingerprint,
)
from skconcepts._granularity import (
    AGGREGATIONS,
    GRANULARITIES,
    aggregate,
    unit_index,
    units_table,
)
from skconcepts._split import (
    resolve_split_module,
    resolve_split_modules,
    stop_after,
    stop_after_all,
)
from skconcepts.datasets import embedded_model_path
from skconcepts.exceptions import (
    TokenizerMismatchError,
    TruncationWarning,
    UnknownTokensWarning,
)
from skconcepts.utils._progress import progress_bar
from skconcepts.utils._torch import resolve_device, resolve_dtype
from skconcepts.utils._validation import check_is_fitted, check_texts

__all__ = ["SplitPointActivations"]

_STORAGE_DTYPES = ("float32", "float16", "bfloat16")
#: texts per chunk of :meth:`SplitPointActivations.iter_batches`: texts are
#: sorted by length within a chunk, and a chunk's results are yielded at once
_CHUNK_TEXTS = 4096
#: granularities whose rows are single tokens (no aggregation)
_TOKEN_LEVEL = ("all_tokens", "token", "cls")
#: a tokenizer with fewer tokens than this fraction of the model's input
#: embedding rows is not the model's tokenizer (fit refuses it)
_MIN_VOCAB_FRACTION = 0.5
#: warn when more than this fraction of the non-special tokens of a transform
#: call are the unknown token
_MAX_UNKNOWN_FRACTION = 0.5


def pad_encodings(tokenizer, encodings, device, width=None):
    """Right-padded model inputs of a list of ``tokenizers.Encoding``.

    Shared by the extraction and the attribution rerun so that both feed the
    model exactly the same tensors. ``width`` defaults to the longest encoding.
    """
    pad = tokenizer.pad_token_id
    if pad is None:
        pad = tokenizer.eos_token_id if tokenizer.eos_token_id is not None else 0
    n = len(encodings)
    if width is None:
        width = max(len(e.ids) for e in encodings)
    input_ids = torch.full((n, width), pad, dtype=torch.long)  # (B, T)
    attention_mask = torch.zeros((n, width), dtype=torch.long)  # (B, T)
    token_type_ids = torch.zeros((n, width), dtype=torch.long)  # (B, T)
    for row, enc in enumerate(encodings):
        length = len(enc.ids)
        input_ids[row, :length] = torch.as_tensor(enc.ids)
        attention_mask[row, :length] = 1
        token_type_ids[row, :length] = torch.as_tensor(enc.type_ids)
    inputs = {"input_ids": input_ids, "attention_mask": attention_mask}
    if "token_type_ids" in getattr(tokenizer, "model_input_names", ()):
        inputs["token_type_ids"] = token_type_ids
    return {k: v.to(device) for k, v in inputs.items()}


class _TextResult(NamedTuple):
    """Activations of one text: rows, their character spans, truncation flag."""

    rows: torch.Tensor  # (n_units, d), storage dtype, CPU
    spans: np.ndarray  # (n_units, 2) int64
    truncated: bool
    n_unknown: int = 0  # tokens that are the tokenizer's unknown token
    n_tokens: int = 0  # tokens that are not special tokens
    n_overflow: int = 0  # values beyond the float16 range (stored as inf)
    peak: float = 0.0  # largest magnitude among them


#: what fit loads (or defers, with the fit record), dropped by pickling
_LOADED_SLOTS = (
    "_model_obj",
    "_tokenizer_obj",
    "_split_module_obj",
    "_deferred",
    "_fit_record",
)


class _SharedState:
    """What an estimator shares with its clones: loaded models, the cache.

    ``objects`` maps a source (a path, or the id of a model object, with the
    device and dtype) to ``(source object, loaded object)``; ``cache`` maps
    ``(configuration key, text)`` to a :class:`_TextResult`; ``dims`` maps
    ``(model id, split module name)`` to the width of the split output.
    """

    def __init__(self):
        self.objects: dict = {}
        self.cache: dict = {}
        self.dims: dict = {}


class SplitPointActivations(TransformerMixin, BaseEstimator):
    """Activations of a transformer language model at a split point.

    Cuts a Hugging Face ``transformers`` model after one module (by default a
    block of its block list), runs the forward pass of every text only up to
    that module, and returns one row per unit (token, word, sentence, text).
    The model is pretrained: ``fit`` loads and checks it, it learns nothing.

    Parameters
    ----------
    model : transformers.PreTrainedModel, str, os.PathLike or None, default=None
        A loaded model (any head: base model, classification, causal LM), or
        the name or local folder of one, loaded at ``fit`` with
        ``AutoModel.from_pretrained(model, local_files_only=True)`` (never
        downloaded). ``None`` is the MiniLM-L6 encoder embedded in the package
        (:func:`skconcepts.datasets.embedded_model_path`). A loaded model is
        never modified: when ``device`` or ``model_dtype`` differ from its own,
        ``fit`` works on a converted copy (made once and shared by clones).
    tokenizer : transformers.PreTrainedTokenizerFast, str, os.PathLike or None, \
default=None
        A fast tokenizer (offsets and word ids are needed), or a name/folder to
        load one from. Required when ``model`` is a loaded model; with a path,
        ``None`` loads the tokenizer from the same path. ``fit`` refuses
        (:class:`~skconcepts.exceptions.TokenizerMismatchError`) a tokenizer
        with fewer than half as many tokens as the model has input embeddings
        (``len(tokenizer) < 0.5 * model.get_input_embeddings().num_embeddings``:
        e.g. the stub transformers builds for a folder without tokenizer
        files), and ``transform`` a token id beyond those embeddings; it warns
        (:class:`~skconcepts.exceptions.UnknownTokensWarning`) when more than
        half of a call's non-special tokens are the unknown token.
    split_point : int or str, default=-1
        The module whose output is read. An int indexes the model's blocks
        (``encoder.layer``, ``transformer.h``, ``model.layers``,
        ``gpt_neox.layers``...); negative ints count from the end. A str is a
        dotted module path, e.g. ``"encoder.layer.3.attention"``. Activations
        at block ``k`` equal ``hidden_states[k + 1]`` of
        ``output_hidden_states=True``. A wrong value raises
        :class:`~skconcepts.exceptions.SplitPointError` (a ``ValueError``)
        listing the valid choices.
    granularity : {"token", "all_tokens", "word", "sentence", "sample", "cls"}, \
default="token"
        What one row stands for. ``"token"``: every token; ``"all_tokens"``:
        every real token, special tokens included; ``"word"``: the fast
        tokenizer's words (punctuation is a word); ``"sentence"``: sentences
        of a simple splitter (a sentence ends after ``.``, ``!`` or ``?``
        followed by white space, and at line breaks); ``"sample"``: one row per
        text; ``"cls"``: the first token, which must be a special token
        ([CLS], BOS), else ``fit`` raises a ``ValueError``. Padding never
        yields rows.
    aggregation : {"mean", "sum", "max", "min", "signed_max", "first", \
"last"}, default="mean"
        How the token rows of a word, sentence or sample are combined.
        ``"signed_max"`` keeps, per dimension, the value of largest magnitude.
        Ignored at token level.
    exclude_special_tokens : bool, default=True
        Leave special tokens ([CLS], [SEP], BOS, EOS) out at ``token``,
        ``word``, ``sentence`` and ``sample`` level. [UNK] is a real token and
        is kept.
    max_length : int or None, default=None
        Truncate texts to this many tokens (special tokens included); ``None``
        uses the tokenizer's ``model_max_length`` (or, if it sets none, the
        model's ``max_position_embeddings``). A length beyond the model's
        positions (``max_position_embeddings``, less the ``padding_idx + 1``
        that RoBERTa-like embeddings reserve) is capped to them with a
        warning; a length that leaves no room for text after the tokenizer's
        special tokens is refused. ``transform`` emits one
        :class:`~skconcepts.exceptions.TruncationWarning` that counts the
        truncated texts.
    batch_size : int, default=128
        Most texts per forward pass (also the texts per chunk of
        :func:`~skconcepts.store.extract_to_store`).
    max_tokens_per_batch : int or None, default=1024
        Also cap a batch at this many tokens, padding included (a token
        budget: many short texts or few long ones per batch). A single text
        longer than the budget is a batch of its own; ``None``: no budget.
        On a CPU, batches of about a thousand tokens are the fastest: the
        matrix products already run at the machine's rate, and the
        element-wise work between them (layer norms, GELU, attention
        softmax) stays in cache, which it does not at 8192 tokens (measured
        in ``bench``, row 1e). On a GPU, raise it (e.g. 8192) to keep the
        device busy; lower both limits to bound the memory of a large model.
        Rows do not depend on the batch beyond float rounding (about 1e-5).
    sort_by_length : bool, default=True
        Batch texts of similar length together (less padding); results come
        back in the input order.
    device : {"cpu", "cuda", "auto"} or torch.device, default="cpu"
        Where the forward pass runs. ``"auto"`` takes CUDA when available.
        Results are returned on the CPU.
    dtype : {"float32", "float16", "bfloat16"}, default="float32"
        Storage dtype of the returned activations. ``"float32"`` and
        ``"float16"`` give numpy arrays; numpy has no bfloat16, so
        ``"bfloat16"`` gives a CPU ``torch.Tensor`` (which the concept
        estimators accept, but ``set_output(transform="pandas")`` does not).
        Values beyond the float16 range (65504) become inf with a
        ``RuntimeWarning`` that counts them.
    model_dtype : {"float32", "float16", "bfloat16"} or None, default=None
        Precision of the forward pass; ``None`` keeps the model's own.
        ``"bfloat16"`` is several times faster on CPUs with AMX and on GPUs.
        Token rows are aggregated in float32 whatever this is.
    cache : bool, str, os.PathLike or ActivationCache, default=True
        Keep the activations of every text seen, in memory, in an object
        that :func:`~sklearn.base.clone` shares, so that
        ``GridSearchCV`` over later steps of a ``Pipeline`` runs the model
        once per distinct text, not once per candidate and fold. Entries are
        keyed on the text and on everything that changes its rows (model,
        split point, granularity, aggregation, special tokens, max_length,
        dtypes, device). The cache assumes the model's weights do not change;
        see :meth:`clear_cache`. The memory cache is not pickled, and worker
        processes (``n_jobs > 1``) do not share it: for them, pass a folder
        (a path, or an :class:`~skconcepts.ActivationCache` for a size limit).
        Activations are then also kept on disk, one safetensors file per
        text, keyed by the same settings with the model and tokenizer
        identified by their content (a sha256 of the config, the parameter
        shapes and 1024 sampled values of every parameter tensor, so every
        process that loads the same model shares the entries), and every
        process that uses the folder (``GridSearchCV(n_jobs=2)`` workers, Ray
        or Dask workers on a shared filesystem) reads them instead of running
        the model: it runs once per text across processes. Files are written
        atomically and a text is claimed before it is computed, so concurrent
        writers are safe.
        ``False`` keeps nothing.
    progress : bool or None, default=None
        Show a tqdm progress bar over the texts.
        ``None`` (the default) shows it only when stderr is an interactive
        terminal or a notebook (tqdm's rule); ``True`` always, ``False`` never.

    Attributes
    ----------
    model_ : transformers.PreTrainedModel
        The model the forward passes use (on ``device_``, in ``model_dtype``).
    tokenizer_ : transformers.PreTrainedTokenizerFast
        Its tokenizer.
    split_module_name_ : str
        Dotted name of the split module, e.g. ``"encoder.layer.3"``.
    device_ : torch.device
        The resolved device.
    max_length_ : int or None
        The truncation length in use: ``max_length``, else the tokenizer's
        ``model_max_length``, else the model's ``max_position_embeddings``;
        never more than the model's positions.

    See Also
    --------
    skconcepts.concepts.NMFConcepts : Concepts learned from these activations.

    Notes
    -----
    **Early exit.** A forward hook on the split module stores its output
    (element 0 of a tuple) and ends the pass, so no later module runs; no
    ``output_hidden_states`` is requested.

    **Batching.** Batches are padded on the right whatever the tokenizer's
    ``padding_side``: each real token then sees exactly the positions and
    context it has alone, so rows do not depend on the batch (no position
    shift of rotary or learned positions under left padding).

    **Empty texts.** An empty string yields no row at ``token``, ``word`` and
    ``sentence`` level. At ``sample`` level it yields one row, the aggregate
    of its special tokens (e.g. [CLS] and [SEP]), or zeros if the tokenizer
    adds none; at ``cls`` level the row of its leading special token.

    **Clone and pickle.** ``clone`` shares the ``model`` and ``tokenizer``
    objects (no copy of weights per ``GridSearchCV`` candidate), the loaded
    model and the cache. Pickling drops the cache and the loaded model: a
    model given as a name or path is reloaded from it when the estimator is
    unpickled; a model object is pickled with the estimator (it is the
    ``model`` parameter) and prepared again on unpickling. A fitted estimator
    unpickled on a machine without CUDA falls back to the CPU with a warning.

    Examples
    --------
    >>> from skconcepts import SplitPointActivations
    >>> acts = SplitPointActivations(split_point=3, granularity="word")
    >>> X = acts.fit_transform(["I loved it.", "Awful!"])
    >>> X.shape
    (6, 384)
    >>> acts.units(["I loved it.", "Awful!"])["text"].tolist()
    ['I', 'loved', 'it', '.', 'Awful', '!']
    """

    _parameter_constraints: dict = {
        "model": [None, str, os.PathLike, torch.nn.Module],
        "tokenizer": [None, str, os.PathLike, HasMethods(["__call__"])],
        "split_point": [Integral, str],
        "granularity": [StrOptions(set(GRANULARITIES))],
        "aggregation": [StrOptions(set(AGGREGATIONS))],
        "exclude_special_tokens": ["boolean"],
        "max_length": [Interval(Integral, 1, None, closed="left"), None],
        "batch_size": [Interval(Integral, 1, None, closed="left")],
        "max_tokens_per_batch": [Interval(Integral, 1, None, closed="left"), None],
        "sort_by_length": ["boolean"],
        "device": [str, torch.device],  # resolved in fit
        "dtype": [StrOptions(set(_STORAGE_DTYPES))],
        "model_dtype": [StrOptions(set(_STORAGE_DTYPES)), None],
        "cache": ["boolean", str, os.PathLike, ActivationCache],
        "progress": ["boolean", None],
    }

    def __init__(
        self,
        model=None,
        *,
        tokenizer=None,
        split_point=-1,
        granularity="token",
        aggregation="mean",
        exclude_special_tokens=True,
        max_length=None,
        batch_size=128,
        max_tokens_per_batch=1024,
        sort_by_length=True,
        device="cpu",
        dtype="float32",
        model_dtype=None,
        cache=True,
        progress=None,
    ):
        self.model = model
        self.tokenizer = tokenizer
        self.split_point = split_point
        self.granularity = granularity
        self.aggregation = aggregation
        self.exclude_special_tokens = exclude_special_tokens
        self.max_length = max_length
        self.batch_size = batch_size
        self.max_tokens_per_batch = max_tokens_per_batch
        self.sort_by_length = sort_by_length
        self.device = device
        self.dtype = dtype
        self.model_dtype = model_dtype
        self.cache = cache
        self.progress = progress

    # ------------------------------------------------------------ public API
    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X=None, y=None):
        """Load the model and tokenizer and resolve the split point.

        Nothing is learned: the model is pretrained.

        Parameters
        ----------
        X : list of str or None, default=None
            Texts; only validated.
        y : Ignored
            Not used, present for API consistency.

        Returns
        -------
        self : object
            The fitted estimator.
        """
        if X is not None:
            check_texts(X, name="X")
        self._prepare()
        return self

    def transform(self, X):
        """Activations of the texts at the split point, one row per unit.

        Parameters
        ----------
        X : list of str
            The texts: a list, a 1-D array or a pandas ``Series`` of str, or a
            ``DataFrame`` with one column (read as that column; several
            columns are refused: pass ``df["text"]``).

        Returns
        -------
        X_out : ndarray of shape (n_rows, n_features) or torch.Tensor
            A float32 (or float16) numpy array; a bfloat16 CPU tensor when
            ``dtype="bfloat16"``. Rows follow the texts, then the units within
            a text, as in :meth:`units`.
        """
        check_is_fitted(self)
        texts = check_texts(X, name="X")
        rows = []
        for _, text_rows, _ in self.iter_batches(texts):
            rows.extend(text_rows)
        out = torch.cat(rows) if rows else torch.zeros(0, self._feature_dim())
        if self.dtype == "bfloat16":
            return out.to(torch.bfloat16)
        return out.numpy().astype(self.dtype, copy=False)

    def units(self, X):
        """The table of units: which text and characters every row covers.

        Needs only the tokenizer (or the cache): the model does not run.

        Parameters
        ----------
        X : list of str
            The texts, as given to :meth:`transform`.

        Returns
        -------
        units : pandas.DataFrame
            One row per row of ``transform(X)``, in the same order, with
            columns ``sample`` (position of the text in ``X``, 0-based, also
            for a pandas ``Series`` with another index), ``unit`` (index of
            the unit within its text), ``start`` and ``end`` (character offsets,
            white space trimmed; ``(0, 0)`` for special tokens) and ``text``
            (``X[sample][start:end]``).

        Examples
        --------
        >>> from skconcepts import SplitPointActivations
        >>> acts = SplitPointActivations(split_point=0).fit()
        >>> acts.units(["Hi there"])
           sample  unit  start  end   text
        0       0     0      0    2     Hi
        1       0     1      3    8  there
        """
        check_is_fitted(self)
        texts = check_texts(X, name="X")
        cache = self._shared_state().cache if self.cache else None
        key = self._config_key()
        spans = {}
        todo = []
        for text in dict.fromkeys(texts):
            hit = cache.get((key, text)) if cache is not None else None
            if hit is not None:
                spans[text] = hit.spans
            else:
                todo.append(text)
        for start in range(0, len(todo), _CHUNK_TEXTS):
            chunk = todo[start : start + _CHUNK_TEXTS]
            for text, enc in zip(chunk, self.encode(chunk)):
                spans[text] = self._unit_index(text, enc)[1]
        return units_table(texts, [spans[t] for t in texts])

    def get_feature_names_out(self, input_features=None):
        """Names of the output columns: ``hidden0 … hidden{d-1}``.

        Parameters
        ----------
        input_features : array-like of str or None, default=None
            Ignored; present for API consistency.

        Returns
        -------
        feature_names_out : ndarray of str objects
            One name per dimension of the split module's output.
        """
        check_is_fitted(self)
        d = self._feature_dim()
        return np.asarray([f"hidden{i}" for i in range(d)], dtype=object)

    def transform_to_store(self, X, path, **kwargs):
        """Write the activations of ``X`` to an on-disk activation store.

        Delegates to :func:`skconcepts.store.extract_to_store`, which streams
        the batches (see ``iter_batches``) so that the activations never
        need to fit in memory. An unfitted estimator is fitted first (it only
        loads the model). Rerunning the same call after an interruption resumes
        after the last complete shard.

        Parameters
        ----------
        X : list of str
            The texts.
        path : str or os.PathLike
            Folder of the store.
        **kwargs : dict
            Passed on to :func:`skconcepts.store.extract_to_store`.

        Returns
        -------
        store : ActivationStore
            The store, as returned by ``extract_to_store``.
        """
        # deferred: the store package is loaded only by the users of stores
        from skconcepts.store import extract_to_store

        return extract_to_store(self, X, path, **kwargs)

    def transform_many(self, X, split_points):
        """Activations at several split points, from one forward pass per batch.

        Every batch runs the model once, up to the deepest of the split points
        (nothing after it runs), and reads each split module's output on the
        way. Each array equals ``transform(X)`` of this estimator with
        ``split_point`` set to that split point (all other parameters kept).

        Parameters
        ----------
        X : list of str
            The texts, as for :meth:`transform`.
        split_points : list of int or str
            The split points (block indices or dotted module paths, as
            ``split_point`` takes them); each must name a different module.
            ``split_point`` itself is ignored.

        Returns
        -------
        activations : dict
            ``{split point: array}``, keyed by the split points as given, in
            their order; each array is what :meth:`transform` returns at that
            split point. The units (:meth:`units`) are the same for all.

        Raises
        ------
        SplitPointError
            (a ``ValueError``) for an empty list, an unknown split point
            (naming its position) or two naming the same module.

        Examples
        --------
        >>> from skconcepts import SplitPointActivations
        >>> acts = SplitPointActivations(granularity="sample").fit()
        >>> out = acts.transform_many(["a good film", "dull"], split_points=[1, 3])
        >>> {k: v.shape for k, v in out.items()}
        {1: (2, 384), 3: (2, 384)}
        """
        check_is_fitted(self)
        texts = check_texts(X, name="X")
        rows: dict = {}
        for _, by_point, _ in self.iter_batches_many(texts, split_points):
            for point, text_rows in by_point.items():
                rows.setdefault(point, []).extend(text_rows)
        out = {}
        for point in split_points:
            got = rows.get(point) or [torch.zeros(0, self._at(point)._feature_dim())]
            cat = torch.cat(got)
            if self.dtype == "bfloat16":
                out[point] = cat.to(torch.bfloat16)
            else:
                out[point] = cat.numpy().astype(self.dtype, copy=False)
        return out

    def clear_cache(self):
        """Empty the activation cache shared with clones.

        Call it after changing the model's weights in place, or to free
        memory. With ``cache`` a folder, its entries are removed too (those of
        every model and configuration in the folder).

        Returns
        -------
        self : object
            The estimator.
        """
        shared = self._shared_state()
        shared.cache.clear()
        disk = self._disk_cache()
        if disk is not None:
            disk.clear()
        return self

    # ----------------------------------------------------- clone and pickle
    def __sklearn_clone__(self):
        params = self.get_params(deep=False)
        shared = {name: params.pop(name) for name in ("model", "tokenizer")}
        new = type(self)(
            **shared, **{k: clone(v, safe=False) for k, v in params.items()}
        )
        new._shared = self._shared_state()
        return new

    def __getstate__(self):
        state = dict(super().__getstate__())
        state.pop("_shared", None)
        if isinstance(state.get("model"), torch.nn.Module):
            state["model"] = _ModelPickle(state["model"])
        if "split_module_name_" in state:  # fitted: loaded again on unpickling
            for name in _LOADED_SLOTS:
                state.pop(name, None)
            state["_reload"] = True
        return state

    def __setstate__(self, state):
        reload = state.pop("_reload", False)
        super().__setstate__(state)
        if reload:
            self._prepare(cpu_fallback=True)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.two_d_array = False
        tags.input_tags.string = True
        tags.transformer_tags.preserves_dtype = []
        tags.requires_fit = True
        return tags

    # ------------------------------------------------------------- loading
    # model_, tokenizer_ and the split module are loaded by fit, or, when a fit
    # record of the cache folder told fit what it needed (_prepare), on first use
    @property
    def model_(self):
        return self._loaded("_model_obj", "model_")

    @model_.setter
    def model_(self, value):
        self.__dict__["_model_obj"] = value

    @property
    def tokenizer_(self):
        return self._loaded("_tokenizer_obj", "tokenizer_")

    @tokenizer_.setter
    def tokenizer_(self, value):
        self.__dict__["_tokenizer_obj"] = value

    @property
    def _split_module(self):
        return self._loaded("_split_module_obj", "_split_module")

    @_split_module.setter
    def _split_module(self, value):
        self.__dict__["_split_module_obj"] = value

    def _loaded(self, slot, name):
        state = self.__dict__
        if slot not in state and "_deferred" in state:
            model_dtype = state.pop("_deferred")
            self.model_ = self._load_model(self.device_, model_dtype)
            self.tokenizer_ = self._load_tokenizer()
            _, self._split_module = resolve_split_module(self.model_, self.split_point)
        try:
            return state[slot]
        except KeyError:
            raise AttributeError(
                f"{type(self).__name__!r} object has no attribute {name!r}"
            ) from None

    def _fit_record_key(self, model_dtype):
        """Key of this fit's record in the cache folder, or None (no record).

        Only for a folder cache, and a model and a tokenizer given as folders
        (``None``: the embedded model): their files, the parameters ``fit``
        resolves from them and the library versions make the key.
        """
        disk = self._disk_cache()
        if disk is None or self.granularity == "cls":
            return None
        model = self.model
        if not (model is None or isinstance(model, (str, os.PathLike))):
            return None
        model_path = self._model_path()
        tokenizer = model_path if self.tokenizer is None else self.tokenizer
        if not isinstance(tokenizer, (str, os.PathLike)):
            return None
        if not (os.path.isdir(model_path) and os.path.isdir(tokenizer)):
            return None
        from importlib.metadata import PackageNotFoundError, version

        from skconcepts import __version__

        try:
            transformers_version = version("transformers")
        except PackageNotFoundError:  # fit says what is missing
            return None
        spec = [
            folder_signature(model_path),
            folder_signature(tokenizer),
            repr(self.split_point),
            str(model_dtype),
            self.max_length,
            transformers_version,
            torch.__version__,
            __version__,
        ]
        return hashlib.sha256(json.dumps(spec).encode()).hexdigest()[:32]

    def _shared_state(self) -> _SharedState:
        shared = getattr(self, "_shared", None)
        if shared is None:
            shared = self._shared = _SharedState()
        return shared

    def _prepare(self, cpu_fallback=False):
        """Load model and tokenizer, resolve device and split point (fit)."""
        device = self.device
        if cpu_fallback and str(device).startswith("cuda"):
            if not torch.cuda.is_available():
                warnings.warn(
                    f"SplitPointActivations was fitted with device={device!r} "
                    "but CUDA is not available here; using the CPU.",
                    RuntimeWarning,
                    stacklevel=3,
                )
                device = "cpu"
        self.device_ = resolve_device(device)
        model_dtype = (
            None
            if self.model_dtype is None
            else resolve_dtype(self.model_dtype, "model_dtype")
        )
        for name in _LOADED_SLOTS:
            self.__dict__.pop(name, None)
        record_key = self._fit_record_key(model_dtype)
        record = record_key and self._disk_cache().read_fit(record_key)
        if record:  # fitted before from the same files: load on first use
            self.split_module_name_ = record["split_module_name"]
            self.max_length_ = record["max_length"]
            self.__dict__["_fit_record"] = record
            self.__dict__["_deferred"] = model_dtype
            return
        self.model_ = self._load_model(self.device_, model_dtype)
        self.tokenizer_ = self._load_tokenizer()
        self.split_module_name_, self._split_module = resolve_split_module(
            self.model_, self.split_point
        )
        self._check_tokenizer_vocab()
        # a reload (unpickling) does not repeat the warning given at fit
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            self.max_length_ = self._resolve_max_length(warn=not cpu_fallback)
        for w in caught:  # given again, as they came
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
        if record_key and not caught and not cpu_fallback:  # a fit, no warning
            params = next(self.model_.parameters(), None)
            record = {
                "split_module_name": self.split_module_name_,
                "max_length": self.max_length_,
                "fingerprints": list(self._fingerprints()),
                "params_dtype": None if params is None else str(params.dtype),
            }
            self._disk_cache().write_fit(record_key, record)
            self.__dict__["_fit_record"] = record
        if self.granularity == "cls":
            enc = self.encode(["a"])[0]
            if not enc.special_tokens_mask or not enc.special_tokens_mask[0]:
                name = type(self.tokenizer_).__name__
                raise ValueError(
                    "granularity='cls' needs a tokenizer that adds a leading "
                    f"special token ([CLS] or BOS), but {name} adds none; use "
                    "granularity='sample' (e.g. with "
                    "aggregation='last' for a causal model) instead."
                )

    def _check_tokenizer_vocab(self):
        """Refuse a tokenizer far smaller than the model's vocabulary.

        Rule: ``len(tokenizer) < 0.5 * model.get_input_embeddings().num_embeddings``
        means the tokenizer is not the model's (e.g. a model folder without
        tokenizer files, for which transformers builds a tokenizer of a few
        special tokens that maps every word to its unknown token). Embedding
        matrices padded beyond the vocabulary (to a multiple of 64 or 128) stay
        well above the bound.
        """
        n_rows = _embedding_rows(self.model_)
        if n_rows is None:
            return
        n_vocab = len(self.tokenizer_)
        if n_vocab < _MIN_VOCAB_FRACTION * n_rows:
            from_path = self.model is None or isinstance(self.model, (str, os.PathLike))
            source = (
                f"at {self._model_path()!r}"
                if from_path
                else f"(a loaded {type(self.model).__name__})"
            )
            copy_files = (
                " or copy the tokenizer files (tokenizer.json, tokenizer_config.json"
                "...) into the model folder"
                if from_path and self.tokenizer is None
                else ""
            )
            raise TokenizerMismatchError(
                f"The tokenizer ({type(self.tokenizer_).__name__}) has {n_vocab} "
                f"tokens but the model {source} has {n_rows} input embeddings: it "
                "is not this model's tokenizer, and most words would become its "
                "unknown token. A model folder without tokenizer files gives "
                "such a tokenizer. Pass the model's own tokenizer, e.g. "
                "tokenizer='<name or folder of the model's tokenizer>' or "
                f"tokenizer=AutoTokenizer.from_pretrained(...){copy_files}."
            )

    def _resolve_max_length(self, warn=True):
        """Truncation length: max_length or the tokenizer's, capped (fit)."""
        tokenizer = self.tokenizer_
        limit = getattr(tokenizer, "model_max_length", None)
        positions = _position_limit(self.model_)
        if self.max_length is not None:
            length, what = int(self.max_length), f"max_length={self.max_length!r}"
        elif isinstance(limit, Integral) and limit < 1_000_000:
            length = int(limit)
            what = f"the tokenizer's model_max_length={length}"
        elif positions is not None:  # tokenizer without a limit
            return positions
        else:
            return None
        if positions is not None and length > positions:
            if warn:
                warnings.warn(
                    f"{what} exceeds the {positions} positions of the model "
                    f"({type(self.model_).__name__}); texts are truncated at "
                    f"{positions} tokens instead. Pass max_length<={positions} to "
                    "silence this warning.",
                    UserWarning,
                    stacklevel=5,
                )
            length = positions
        n_special = _num_special_tokens(tokenizer)
        if length < n_special + 1:
            raise ValueError(
                f"{what} leaves no room for text: the tokenizer adds "
                f"{n_special} special tokens to every text; use "
                f"max_length>={n_special + 1} (or None for the model's limit)."
            )
        return length

    def _model_path(self):
        if self.model is None:
            return embedded_model_path()
        return os.fspath(self.model)

    def _load_model(self, device, model_dtype):
        model = self.model
        objects = self._shared_state().objects
        if model is None or isinstance(model, (str, os.PathLike)):
            path = self._model_path()
            key = ("model", path, str(device), str(model_dtype))
            if key not in objects:
                objects[key] = (path, _load_pretrained("AutoModel", path, model_dtype))
                objects[key][1].to(device)
            return objects[key][1]
        key = ("model", id(model), str(device), str(model_dtype))
        entry = objects.get(key)
        if entry is None or entry[0] is not model:
            params = next(model.parameters(), None)
            same = params is None or (
                params.device == device
                and (model_dtype is None or params.dtype == model_dtype)
            )
            prepared = model
            if not same:  # never modify the caller's model: convert a copy
                prepared = copy.deepcopy(model).to(device=device, dtype=model_dtype)
                prepared.eval()
            entry = objects[key] = (model, prepared)
        return entry[1]

    def _load_tokenizer(self):
        tokenizer = self.tokenizer
        if tokenizer is None:
            if not (self.model is None or isinstance(self.model, (str, os.PathLike))):
                raise ValueError(
                    "tokenizer=None but model is a loaded "
                    f"{type(self.model).__name__}; pass its tokenizer, e.g. "
                    "tokenizer=AutoTokenizer.from_pretrained(<model folder>)."
                )
            tokenizer = self._model_path()
        if isinstance(tokenizer, (str, os.PathLike)):
            path = os.fspath(tokenizer)
            objects = self._shared_state().objects
            key = ("tokenizer", path)
            if key not in objects:
                objects[key] = (path, _load_pretrained("AutoTokenizer", path))
            tokenizer = objects[key][1]
        # keep the tokenizer alive while its id is part of cache keys
        self._shared_state().objects[("tokenizer", id(tokenizer))] = (
            tokenizer,
            tokenizer,
        )
        if not getattr(tokenizer, "is_fast", False):
            raise ValueError(
                f"tokenizer must be a fast tokenizer (it gives the offsets and "
                f"word ids), got {type(tokenizer).__name__}; load it with "
                "AutoTokenizer.from_pretrained(..., use_fast=True)."
            )
        return tokenizer

    # ----------------------------------------------------------- computing
    def _config_key(self):
        """Everything except the text that changes a text's activation rows."""
        if "_fit_record" in self.__dict__:  # by content (no model loaded)
            return ("disk", self._disk_key(), str(self.device_))
        params = next(self.model_.parameters(), None)
        return (
            id(self.model_),
            id(self.tokenizer_),
            self.split_module_name_,
            self.granularity,
            self.aggregation,
            bool(self.exclude_special_tokens),
            self.max_length_,
            None if params is None else str(params.dtype),
            self.dtype,
            str(self.device_),
        )

    def encode(self, texts):
        """Tokenize texts as :meth:`transform` does (no padding, truncated).

        The tokenization step of extraction, public for the consumers that
        rerun the model from the same inputs (attribution, intervention).

        Parameters
        ----------
        texts : list of str
            The texts.

        Returns
        -------
        encodings : list of tokenizers.Encoding
            One encoding per text, with offsets and the special-tokens mask,
            truncated at ``max_length`` and not padded.

        Examples
        --------
        >>> from skconcepts import SplitPointActivations
        >>> acts = SplitPointActivations(split_point=1).fit()
        >>> enc = acts.encode(["a good film"])[0]
        >>> enc.tokens[0], enc.tokens[-1]
        ('[CLS]', '[SEP]')
        """
        check_is_fitted(self)
        texts = check_texts(texts, name="texts")
        truncate = self.max_length_ is not None
        batch = self.tokenizer_(
            texts,
            add_special_tokens=True,
            truncation=truncate,
            max_length=self.max_length_ if truncate else None,
            padding=False,
            return_offsets_mapping=True,
            return_special_tokens_mask=True,
        )
        self._check_token_ids(batch.encodings)
        return batch.encodings

    def _check_token_ids(self, encodings):
        """Refuse a token id beyond the model's input embeddings.

        A tokenizer larger than the model's vocabulary would otherwise fail
        inside torch with an index error (or a device assert on CUDA).
        """
        n_rows = _embedding_rows(self.model_)
        top = max((max(e.ids) for e in encodings if e.ids), default=-1)
        if n_rows is not None and top >= n_rows:
            raise TokenizerMismatchError(
                f"The tokenizer gave token id {top} "
                f"({self.tokenizer_.convert_ids_to_tokens(top)!r}) but the model "
                f"has only {n_rows} input embeddings: the tokenizer "
                f"({len(self.tokenizer_)} tokens) is not this model's. Pass the "
                "model's own tokenizer (tokenizer=...)."
            )

    def _unit_index(self, text, enc):
        return unit_index(
            self.granularity,
            text,
            enc.offsets,
            enc.special_tokens_mask,
            enc.word_ids,
            exclude_special_tokens=self.exclude_special_tokens,
        )

    def iter_batches(self, texts, *, use_cache=None, chunk_size=None):
        """Stream the activations of ``texts``, chunk by chunk, in input order.

        The streaming primitive behind :meth:`transform`, for consumers that
        must not hold every activation at once (the store writer,
        ``TopKInputs``). Texts are taken in chunks of consecutive texts; within
        a chunk they are sorted by length and batched, and the chunk's results
        are yielded in the input order. The truncation warning comes after the
        last chunk.

        Parameters
        ----------
        texts : list of str
            The texts.
        use_cache : bool or None, default=None
            Read and fill the shared cache; ``None`` follows ``self.cache``.
            Pass ``False`` to stream a large corpus without keeping it.
        chunk_size : int or None, default=None
            Texts per chunk (default 4096).

        Yields
        ------
        indices : ndarray of shape (n_chunk,), dtype int64
            Positions of the chunk's texts in ``texts`` (consecutive).
        rows : list of torch.Tensor
            Per text, its activation rows ``(n_units_i, d)`` on the CPU, in the
            storage dtype (``dtype``). Treat them as read-only: they may be the
            cache's own tensors.
        spans : list of ndarray
            Per text, the ``(n_units_i, 2)`` character spans of its rows (see
            :meth:`units`).

        Examples
        --------
        >>> from skconcepts import SplitPointActivations
        >>> acts = SplitPointActivations(split_point=1, granularity="sample").fit()
        >>> for idx, rows, spans in acts.iter_batches(["a good film", "dull"]):
        ...     print(idx.tolist(), [tuple(r.shape) for r in rows])
        [0, 1] [(1, 384), (1, 384)]
        """
        check_is_fitted(self)
        texts = check_texts(texts, name="texts")
        use_cache = self.cache if use_cache is None else use_cache
        cache = self._shared_state().cache if use_cache else None
        key = self._config_key()
        chunk_size = chunk_size or _CHUNK_TEXTS
        n_truncated = n_unknown = n_tokens = n_overflow = 0
        peak = 0.0
        bar = progress_bar(
            total=len(texts),
            progress=self.progress,
            desc="SplitPointActivations",
            unit="text",
        )
        try:
            for start in range(0, len(texts), chunk_size):
                chunk = texts[start : start + chunk_size]
                results = {}
                if cache is not None:
                    for text in chunk:
                        hit = cache.get((key, text))
                        if hit is not None:
                            results[text] = hit
                todo = [t for t in dict.fromkeys(chunk) if t not in results]
                bar.update(len(chunk) - len(todo))
                computed = self._compute_or_read(todo, bar, use_cache)
                if cache is not None:
                    cache.update(((key, t), r) for t, r in computed.items())
                results.update(computed)
                per_text = [results[t] for t in chunk]
                n_truncated += sum(r.truncated for r in per_text)
                n_unknown += sum(r.n_unknown for r in per_text)
                n_tokens += sum(r.n_tokens for r in per_text)
                n_overflow += sum(r.n_overflow for r in per_text)
                peak = max([peak, *(r.peak for r in per_text)])
                yield (
                    np.arange(start, start + len(chunk)),
                    [r.rows for r in per_text],
                    [r.spans for r in per_text],
                )
        finally:
            bar.close()
        self._warn_stats(len(texts), n_truncated, n_unknown, n_tokens, n_overflow, peak)

    def iter_batches_many(
        self, texts, split_points, *, use_cache=None, chunk_size=None
    ):
        """Stream the activations of ``texts`` at several split points.

        :meth:`iter_batches` for several split points read from one forward
        pass per batch (stopping after the deepest); see
        :meth:`transform_many`.

        Parameters
        ----------
        texts : list of str
            The texts.
        split_points : list of int or str
            Distinct split points, as :meth:`transform_many` takes them.
        use_cache : bool or None, default=None
            Read and fill the shared cache (one entry per text and split
            point); ``None`` follows ``self.cache``.
        chunk_size : int or None, default=None
            Texts per chunk (default 4096).

        Yields
        ------
        indices : ndarray of shape (n_chunk,), dtype int64
            Positions of the chunk's texts in ``texts`` (consecutive).
        rows : dict
            ``{split point: list of torch.Tensor}``: per split point, per text,
            its rows (read-only, as in :meth:`iter_batches`).
        spans : list of ndarray
            Per text, the character spans of its rows (the same at every
            split point).

        Examples
        --------
        >>> from skconcepts import SplitPointActivations
        >>> acts = SplitPointActivations(granularity="sample").fit()
        >>> for idx, rows, spans in acts.iter_batches_many(["dull"], [0, 2]):
        ...     print(idx.tolist(), {k: tuple(v[0].shape) for k, v in rows.items()})
        [0] {0: (1, 384), 2: (1, 384)}
        """
        check_is_fitted(self)
        texts = check_texts(texts, name="texts")
        resolved = resolve_split_modules(self.model_, split_points)
        points = list(split_points)
        views = [self._at(p, resolved=r) for p, r in zip(points, resolved)]
        use_cache = self.cache if use_cache is None else use_cache
        cache = self._shared_state().cache if use_cache else None
        keys = [v._config_key() for v in views]
        chunk_size = chunk_size or _CHUNK_TEXTS
        n_truncated = n_unknown = n_tokens = n_overflow = 0
        peak = 0.0
        bar = progress_bar(
            total=len(texts),
            progress=self.progress,
            desc="SplitPointActivations",
            unit="text",
        )
        try:
            for start in range(0, len(texts), chunk_size):
                chunk = texts[start : start + chunk_size]
                results = [{} for _ in views]
                todo = []
                for text in dict.fromkeys(chunk):
                    hits = (
                        [cache.get((k, text)) for k in keys]
                        if cache is not None
                        else [None]
                    )
                    if all(h is not None for h in hits):
                        for res, hit in zip(results, hits):
                            res[text] = hit
                    else:
                        todo.append(text)
                pending = set(todo)
                bar.update(sum(1 for t in chunk if t not in pending))
                computed = self._compute_many(views, todo, bar)
                for key, res, comp in zip(keys, results, computed):
                    if cache is not None:
                        cache.update(((key, t), r) for t, r in comp.items())
                    res.update(comp)
                first = [results[0][t] for t in chunk]
                n_truncated += sum(r.truncated for r in first)
                n_unknown += sum(r.n_unknown for r in first)
                n_tokens += sum(r.n_tokens for r in first)
                by_point = {}
                for point, res in zip(points, results):
                    per_text = [res[t] for t in chunk]
                    n_overflow += sum(r.n_overflow for r in per_text)
                    peak = max([peak, *(r.peak for r in per_text)])
                    by_point[point] = [r.rows for r in per_text]
                yield (
                    np.arange(start, start + len(chunk)),
                    by_point,
                    [r.spans for r in first],
                )
        finally:
            bar.close()
        self._warn_stats(len(texts), n_truncated, n_unknown, n_tokens, n_overflow, peak)

    def _at(self, split_point, resolved=None):
        """A view of this fitted estimator at another split point.

        Shares the loaded model, tokenizer and cache; only the split point
        (and the split module) differ.
        """
        self.model_  # noqa: B018  (loaded now: the view shares it)
        view = object.__new__(type(self))  # not copy.copy: it would pickle
        view.__dict__.update(self.__dict__)
        view.split_point = split_point
        if resolved is None:
            resolved = resolve_split_module(self.model_, split_point)
        view.split_module_name_, view._split_module = resolved
        view._shared = self._shared_state()
        return view

    def _compute_many(self, views, texts, bar=None):
        """Run the model once per batch for several split points (views)."""
        if not texts:
            return [{} for _ in views]
        encodings = self.encode(texts)
        lengths = [len(e.ids) for e in encodings]
        results = [{} for _ in views]
        modules = [v._split_module for v in views]
        for batch in self._batches(lengths):
            batch_texts = [texts[i] for i in batch]
            batch_encs = [encodings[i] for i in batch]
            meta = self._batch_meta(batch_texts, batch_encs)
            if meta[1] == 0:
                per_view = [v._empty_results(meta) for v in views]
            else:
                hiddens = self._forward_many(batch_encs, meta[1], views, modules)
                per_view = [
                    v._results_from_hidden(h, meta) for v, h in zip(views, hiddens)
                ]
            for res, view_results in zip(results, per_view):
                res.update(zip(batch_texts, view_results))
            if bar is not None:
                bar.update(len(batch))
        return results

    def _forward_many(self, encodings, width, views, modules):
        """One right-padded forward pass stopped after the deepest module."""
        model = self.model_
        inputs = pad_encodings(self.tokenizer_, encodings, self.device_, width=width)
        with torch.inference_mode(), _eval_mode(model):
            with stop_after_all(modules) as captured:
                model(**inputs, use_cache=False)
        return [
            view._check_hidden(c.output, len(encodings), width)
            for view, c in zip(views, captured)
        ]

    def _warn_stats(self, n_texts, n_truncated, n_unknown, n_tokens, n_overflow, peak):
        """The warnings of one streaming call (truncation, overflow, unknown)."""
        if n_truncated:
            warnings.warn(
                f"{n_truncated} of {n_texts} texts were longer than "
                f"max_length={self.max_length_} tokens and were truncated; their "
                "rows cover only the first tokens. Raise max_length (up to the "
                "model's limit) to keep more.",
                TruncationWarning,
                stacklevel=4,
            )
        if n_overflow:
            warnings.warn(
                f"{n_overflow} activation values (largest magnitude {peak:.6g}) "
                "exceed the float16 range (65504) and became inf; use "
                "dtype='bfloat16' or 'float32' to keep them.",
                RuntimeWarning,
                stacklevel=4,
            )
        if n_unknown > _MAX_UNKNOWN_FRACTION * n_tokens:
            warnings.warn(
                f"{n_unknown} of the {n_tokens} tokens of these texts (special "
                f"tokens aside) are the unknown token "
                f"{self.tokenizer_.unk_token!r}: their activations say nothing "
                "about the text. Check that the tokenizer is the model's own "
                "(tokenizer=...) and that the texts are in a language and script "
                "it covers.",
                UnknownTokensWarning,
                stacklevel=4,
            )

    def _batches(self, lengths):
        """Split text positions into batches (sorted by length if asked)."""
        order = range(len(lengths))
        if self.sort_by_length:
            order = sorted(order, key=lambda i: -lengths[i])
        budget = self.max_tokens_per_batch
        batches, batch, width = [], [], 0
        for i in order:
            new_width = max(width, lengths[i])
            full = len(batch) >= self.batch_size or (
                budget is not None and (len(batch) + 1) * new_width > budget
            )
            if batch and full:
                batches.append(batch)
                batch, new_width = [], lengths[i]
            batch.append(i)
            width = new_width
        if batch:
            batches.append(batch)
        return batches

    def _compute_or_read(self, texts, bar, use_cache):
        """``_compute``, through the on-disk cache when ``cache`` is a folder."""
        disk = self._disk_cache() if use_cache else None
        if disk is None or not texts:
            return self._compute(texts, bar)
        results, n_read = disk.fetch(
            self._disk_key(), texts, lambda todo: self._compute(todo, bar), _TextResult
        )
        bar.update(n_read)
        return results

    def _disk_cache(self):
        """The :class:`ActivationCache` of ``cache``, or None (memory only)."""
        if isinstance(self.cache, ActivationCache):
            return self.cache
        if isinstance(self.cache, (str, os.PathLike)):
            return ActivationCache(self.cache)
        return None

    def _disk_key(self):
        """The configuration hash of on-disk entries: ``_config_key`` by content."""
        record = self.__dict__.get("_fit_record")
        if record is not None:  # the fit record (no model loaded)
            fingerprints, params_dtype = record["fingerprints"], record["params_dtype"]
        else:
            params = next(self.model_.parameters(), None)
            fingerprints = self._fingerprints()
            params_dtype = None if params is None else str(params.dtype)
        config = [
            *fingerprints,
            self.split_module_name_,
            self.granularity,
            self.aggregation,
            bool(self.exclude_special_tokens),
            self.max_length_,
            params_dtype,
            self.dtype,
            self.device_.type,
        ]
        return hashlib.sha256(json.dumps(config).encode()).hexdigest()[:32]

    def _fingerprints(self):
        """Fingerprints of the loaded model and tokenizer (once per model)."""
        objects = self._shared_state().objects
        key = ("fingerprints", id(self.model_), id(self.tokenizer_))
        if key not in objects:  # computed once per loaded model
            fingerprints = (
                model_fingerprint(self.model_),
                tokenizer_fingerprint(self.tokenizer_),
            )
            objects[key] = (self.model_, fingerprints)
        return objects[key][1]

    def _compute(self, texts, bar=None):
        """Run the model on distinct texts: ``{text: _TextResult}``."""
        if not texts:
            return {}
        encodings = self.encode(texts)
        lengths = [len(e.ids) for e in encodings]
        results = {}
        for batch in self._batches(lengths):
            batch_texts = [texts[i] for i in batch]
            batch_encs = [encodings[i] for i in batch]
            for text, res in zip(batch_texts, self._run_batch(batch_texts, batch_encs)):
                results[text] = res
            if bar is not None:
                bar.update(len(batch))
        return results

    def _run_batch(self, texts, encodings):
        """Forward one batch up to the split point; rows per text."""
        meta = self._batch_meta(texts, encodings)
        if meta[1] == 0:  # only texts without tokens: nothing to run
            return self._empty_results(meta)
        hidden = self._forward(encodings, meta[1])  # (B, T, d) float32
        return self._results_from_hidden(hidden, meta)

    def _batch_meta(self, texts, encodings):
        """``(units, width, truncated, counts)`` of a batch (no model run)."""
        units = [self._unit_index(t, e) for t, e in zip(texts, encodings)]
        width = max(len(e.ids) for e in encodings)
        truncated = [len(e.overflowing) > 0 for e in encodings]
        counts = [self._count_unknown(e) for e in encodings]
        return units, width, truncated, counts

    def _empty_results(self, meta):
        units, _, truncated, counts = meta
        d = self._feature_dim()
        return [
            _TextResult(torch.zeros(len(s), d, dtype=self._storage_dtype()), s, tr, *c)
            for (_, s), tr, c in zip(units, truncated, counts)
        ]

    def _results_from_hidden(self, hidden, meta):
        """Rows per text of a batch from the split output ``(B, T, d)``."""
        units, _, truncated, counts = meta
        # unit id of every position of the batch, numbered across the batch
        unit_ids = torch.full(hidden.shape[:2], -1, dtype=torch.long)  # (B, T)
        offset = 0
        for row, (ids, spans) in enumerate(units):
            ids = ids.clone()
            ids[ids >= 0] += offset
            unit_ids[row, : len(ids)] = ids
            offset += len(spans)
        unit_ids = unit_ids.reshape(-1).to(hidden.device)  # (B*T,)
        flat = hidden.reshape(-1, hidden.shape[-1])  # (B*T, d)
        if self.granularity in _TOKEN_LEVEL:
            rows = flat[unit_ids >= 0]  # ids ascend with position
        else:
            rows = aggregate(flat, unit_ids, offset, self.aggregation)
        sizes = [len(s) for _, s in units]
        overflow = [(0, 0.0)] * len(units)
        if self._storage_dtype() == torch.float16:  # count what becomes inf
            big = torch.isfinite(rows) & (rows.abs() > torch.finfo(torch.float16).max)
            if bool(big.any()):
                overflow = [
                    (int(b.sum()), float(r.abs()[b].max()) if b.any() else 0.0)
                    for b, r in zip(torch.split(big, sizes), torch.split(rows, sizes))
                ]
        rows = rows.to(self._storage_dtype()).cpu()  # (n_units, d)
        pieces = torch.split(rows, sizes)
        return [
            _TextResult(piece, spans, tr, *c, *o)
            for piece, (_, spans), tr, c, o in zip(
                pieces, units, truncated, counts, overflow
            )
        ]

    def _count_unknown(self, encoding):
        """``(unknown tokens, non-special tokens)`` of one encoding."""
        ids, special = encoding.ids, encoding.special_tokens_mask
        unk = self.tokenizer_.unk_token_id
        n_tokens = len(ids) - sum(special)
        if unk is None:
            return 0, n_tokens
        n_unknown = sum(1 for i, s in zip(ids, special) if i == unk and not s)
        return n_unknown, n_tokens

    def _forward(self, encodings, width):
        """Right-padded forward pass stopped after the split module."""
        tokenizer, model = self.tokenizer_, self.model_
        n = len(encodings)
        inputs = pad_encodings(tokenizer, encodings, self.device_, width=width)
        with torch.inference_mode(), _eval_mode(model):
            with stop_after(self._split_module) as captured:
                model(**inputs, use_cache=False)
        return self._check_hidden(captured.output, n, width)

    def _check_hidden(self, hidden, n, width):
        """The split output as a float32 ``(B, T, d)`` tensor, checked."""
        model = self.model_
        if hidden is None:
            raise RuntimeError(
                f"The split module {self.split_module_name_!r} did not run during "
                f"the forward pass of this {type(model).__name__}; choose a module "
                "on the path from the inputs to the outputs."
            )
        if not isinstance(hidden, torch.Tensor) or hidden.shape[:2] != (n, width):
            shape = getattr(hidden, "shape", type(hidden).__name__)
            raise ValueError(
                f"The output of split module {self.split_module_name_!r} has shape "
                f"{shape}, not (batch, sequence, d) = ({n}, {width}, d); choose a "
                "module that outputs one vector per token, e.g. a block."
            )
        if hidden.ndim == 2:
            hidden = hidden[..., None]
        hidden = hidden.float()  # (B, T, d)
        self._shared_state().dims[self._dim_key()] = hidden.shape[-1]
        return hidden

    def _dim_key(self):
        return (id(self.model_), self.split_module_name_)

    def _feature_dim(self):
        """Width of the split output (one tiny forward pass the first time)."""
        dims = self._shared_state().dims
        if self._dim_key() not in dims:
            encodings = self.encode(["a"])
            self._forward(encodings, len(encodings[0].ids))
        return dims[self._dim_key()]

    def _storage_dtype(self):
        return resolve_dtype(self.dtype)


class _ModelPickle:
    """Pickle a model without transformers' output-capturing hooks.

    transformers (>= 5) installs forward hooks made of local functions the
    first time a model is asked for ``output_hidden_states``; they cannot be
    pickled. They are set aside while the model is pickled (and put back at
    once); the unpickled model installs them again when needed.
    """

    def __init__(self, module):
        self.module = module

    def __reduce__(self):
        removed, flags = [], []
        for mod in self.module.modules():
            if getattr(mod, "_output_capturing_hooks_installed", False):
                flags.append(mod)
                mod._output_capturing_hooks_installed = False
            for key, hook in list(mod._forward_hooks.items()):
                if "output_capturing_hook" in getattr(hook, "__qualname__", ""):
                    removed.append((mod, key, hook))
                    del mod._forward_hooks[key]
        try:
            payload = pickle.dumps(self.module, protocol=pickle.HIGHEST_PROTOCOL)
        finally:
            for mod, key, hook in removed:
                mod._forward_hooks[key] = hook
            for mod in flags:
                mod._output_capturing_hooks_installed = True
        return (pickle.loads, (payload,))


class _eval_mode:  # noqa: N801 - used like a function
    """Put a model in eval mode and restore every module's training flag."""

    def __init__(self, model):
        self.model = model

    def __enter__(self):
        self.flags = [(m, m.training) for m in self.model.modules()]
        if self.model.training:
            self.model.eval()
        return self.model

    def __exit__(self, *exc):
        for module, flag in self.flags:
            module.training = flag
        return False


def _position_limit(model):
    """Tokens the model can take: ``config.max_position_embeddings``, or None.

    RoBERTa-like embeddings (an ``embeddings`` module with ``padding_idx`` and
    ``position_embeddings``) number positions from ``padding_idx + 1``, so
    they reserve ``padding_idx + 1`` of them (514 positions give 512 tokens).
    """
    positions = getattr(getattr(model, "config", None), "max_position_embeddings", None)
    if not isinstance(positions, Integral) or isinstance(positions, bool):
        return None
    base = getattr(model, "base_model", model)
    embeddings = getattr(base, "embeddings", None)
    pad = getattr(embeddings, "padding_idx", None)
    if isinstance(pad, Integral) and hasattr(embeddings, "position_embeddings"):
        positions -= pad + 1
    return int(positions) if positions > 0 else None


def _embedding_rows(model):
    """Rows of the model's input embedding matrix (its vocabulary), or None."""
    try:
        rows = getattr(model.get_input_embeddings(), "num_embeddings", None)
    except (AttributeError, NotImplementedError):
        return None
    return int(rows) if isinstance(rows, Integral) else None


def _num_special_tokens(tokenizer):
    """Special tokens the tokenizer adds to one text (0 if it cannot say)."""
    try:
        return int(tokenizer.num_special_tokens_to_add())
    except (AttributeError, NotImplementedError, TypeError):
        return 0


def _load_pretrained(kind, path, dtype=None):
    """``Auto*.from_pretrained(path, local_files_only=True)``, quietly."""
    import transformers
    from transformers.utils import logging as hf_logging

    cls = getattr(transformers, kind)
    kwargs = {"local_files_only": True}
    if dtype is not None:
        kwargs["dtype"] = dtype
    verbosity = hf_logging.get_verbosity()
    bars = hf_logging.is_progress_bar_enabled()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        obj = cls.from_pretrained(path, **kwargs)
    except OSError as exc:
        raise OSError(
            f"Could not load {path!r} with {kind}.from_pretrained offline "
            "(local_files_only=True; skconcepts never downloads). Pass a local "
            "folder that holds the model, or a loaded model and its tokenizer."
        ) from exc
    finally:
        hf_logging.set_verbosity(verbosity)
        if bars:
            hf_logging.enable_progress_bar()
    return obj.eval() if hasattr(obj, "eval") else obj
