"""Reading concepts: the inputs that activate each concept most (``TopKInputs``)."""

from __future__ import annotations

import re
from numbers import Integral, Real

import numpy as np
import pandas as pd
import torch
from sklearn.base import clone
from sklearn.utils._param_validation import Interval, validate_parameter_constraints

from skconcepts._granularity import aggregate, units_table
from skconcepts._pipeline import preprocess, split_pipeline
from skconcepts._rerun import frozen_model
from skconcepts._split import stop_after
from skconcepts.utils._progress import PROGRESS_CONSTRAINT, progress_bar
from skconcepts.utils._torch import to_numpy
from skconcepts.utils._torch_free import is_store, is_tensor
from skconcepts.utils._validation import check_texts

__all__ = [
    "TopKInputs",
    "concept_labels",
    "distinctive_labels",
    "vocabulary_tokens",
    "word_concept_activations",
]

#: columns of the table returned by ``TopKInputs.interpret(..., as_frame=True)``
FRAME_COLUMNS = ["concept", "rank", "sample", "start", "end", "text", "activation"]
_UNIT_COLUMNS = ["sample", "start", "end", "text"]
#: rows read from an ActivationStore per text of ``batch_size``
_STORE_ROWS = 64
#: texts per batch of TopKInputs and the word-level helpers: the extractor
#: sorts a batch's texts by length before its own model batches, so a small
#: batch pads every model batch (1000 rt_polarity texts, MiniLM: 0.44 times the
#: speed of one ``transform`` at 32 texts, 0.87 at 512, about 1 at 1024)
TEXT_BATCH = 1024
#: single-token sequences per forward pass of the vocabulary mode
VOCABULARY_BATCH = 1024
#: placeholder tokens of tokenizers, left out of the vocabulary by default
_PLACEHOLDER = re.compile(r"^(\[unused\d+\]|<unused\d+>|<extra_id_\d+>)$")


class TopKInputs:
    """The ``k`` units (tokens, words, sentences, texts) most activating each concept.

    For every concept of a fitted pipeline ``SplitPointActivations -> [preprocessing]
    -> <Method>Concepts``, the units of a list of texts with the highest concept
    activation, with their activations ("max-activating examples"). Units follow the
    ``granularity`` of the pipeline's ``SplitPointActivations``: tokens, words,
    sentences or whole texts. Concept activations come from the estimator's public
    ``transform``, so every concept estimator works.

    Texts are processed ``batch_size`` at a time and only a running top-``k`` is
    kept, so no more than one batch of activations is in memory. The
    extractor sorts the texts of a batch by length and runs its own model
    batches (``SplitPointActivations(batch_size, max_tokens_per_batch)``) on
    them, so large batches pad little.

    Parameters
    ----------
    k : int, default=5
        Number of units kept per concept.
    unique : bool, default=True
        Count the same unit string once per concept, with its highest activation
        (e.g. the token "the" from many texts appears once).
    concepts : array-like of int or None, default=None
        Indices of the concepts to read; ``None`` reads them all.
    batch_size : int, default=1024
        Number of texts encoded and transformed at a time (the window within
        which texts are sorted by length; memory holds one such batch of
        activations). The default was 32 before: on 1000 new rt_polarity
        texts with MiniLM that ran at 0.44 times the speed of one
        ``pipeline.transform``, 1024 at about the same speed.
    progress : bool or None, default=None
        A tqdm progress bar over the batches: ``None`` shows it when stderr is
        an interactive terminal or a notebook (tqdm's rule), ``True`` always,
        ``False`` never.
    labels : bool, default=False
        With ``as_frame=True``, add a ``label`` column: the concept's short
        label of distinctive words (:func:`concept_labels` on the same texts;
        one more pass of the model at word level unless the pipeline's
        granularity is ``"word"`` and ``activations`` are given).

    See Also
    --------
    skconcepts.concept_output_gradient : What each concept does to the model output.

    Notes
    -----
    Units with a zero activation can appear in the top ``k`` of a concept that is
    rarely active; their ``activation`` column shows it.

    Ties of activation are broken by the concept estimator's ``typicality(X)``
    when it has one (units more typical of the concept first), then by the order
    of the units in the texts. ``KMeansConcepts`` has one (minus the squared
    distance to the centroid): with its default hard membership every member of
    a cluster has activation 1.0, and its top units are the members nearest the
    centroid. Estimators without it (continuous activations) keep the order of
    the texts. :meth:`interpret_concepts` sees only the activations, so it
    breaks ties by the order of the rows.

    Examples
    --------
    >>> from sklearn.pipeline import make_pipeline
    >>> from skconcepts import SplitPointActivations, PCAConcepts, TopKInputs
    >>> from skconcepts.datasets import load_demo_corpus
    >>> texts = load_demo_corpus()[0][:12]
    >>> pipe = make_pipeline(
    ...     SplitPointActivations(split_point=3),  # the embedded MiniLM
    ...     PCAConcepts(n_concepts=2),
    ... ).fit(texts)
    >>> top = TopKInputs(k=3).interpret(pipe, texts)
    >>> sorted(top), len(top[0])
    ([0, 1], 3)
    >>> TopKInputs(k=3).interpret(pipe, texts, as_frame=True).shape
    (6, 7)
    """

    _parameter_constraints: dict = {
        "k": [Interval(Integral, 1, None, closed="left")],
        "unique": ["boolean"],
        "concepts": [None, "array-like"],
        "batch_size": [Interval(Integral, 1, None, closed="left")],
        "progress": PROGRESS_CONSTRAINT,
        "labels": ["boolean"],
    }

    def __init__(
        self,
        k=5,
        *,
        unique=True,
        concepts=None,
        batch_size=TEXT_BATCH,
        progress=None,
        labels=False,
    ):
        self.k = k
        self.unique = unique
        self.concepts = concepts
        self.batch_size = batch_size
        self.progress = progress
        self.labels = labels

    def get_params(self, deep=True):
        """The parameters of this reader, as a dict.

        Parameters
        ----------
        deep : bool, default=True
            Ignored; present for API consistency.

        Returns
        -------
        params : dict
            Parameter names mapped to their values.
        """
        return {name: getattr(self, name) for name in self._parameter_constraints}

    def __repr__(self):
        params = ", ".join(f"{k}={v!r}" for k, v in self.get_params().items())
        return f"{type(self).__name__}({params})"

    def interpret(self, pipeline, texts, activations=None, as_frame=False):
        """Find the top-``k`` units of every concept in ``texts``.

        Parameters
        ----------
        pipeline : Pipeline
            A fitted pipeline whose first step is a ``SplitPointActivations`` and
            that contains a concept estimator (its last ``ConceptMixin`` step);
            the steps between them (e.g. ``ActivationScaler``, ``NonNegative``)
            are applied, the steps after it are ignored.
        texts : list of str or None
            The texts to search; ``None`` only with an ``ActivationStore``.
            A text without units (an empty or whitespace-only text at
            ``token``, ``word`` or ``sentence`` level) contributes no unit;
            if no text has one, every concept gets an empty result. At
            ``sample`` level every text is a unit (an empty text's row is the
            aggregate of its special tokens, see ``SplitPointActivations``).
        activations : array-like, torch.Tensor or ActivationStore, default=None
            Activations computed before, so the model is not rerun: the
            ``SplitPointActivations`` output (n_rows, n_features) for ``texts``
            (the units table is rebuilt from the texts), or an
            :class:`~skconcepts.ActivationStore` written by it, streamed in
            batches of ``64 * batch_size`` rows with its own units table
            (``texts`` is then ignored). ``None`` runs the model on ``texts``,
            ``batch_size`` texts at a time.
        as_frame : bool, default=False
            Return a tidy ``pandas.DataFrame`` instead of the dict.

        Returns
        -------
        top : dict or pandas.DataFrame
            ``{concept_index: {unit_text: activation}}``, units by decreasing
            activation (with ``unique=False`` a repeated string appears once in
            the dict, with its highest activation; use ``as_frame=True`` to see
            every row). With ``as_frame=True``, one row per (concept, rank) with
            columns ``concept``, ``rank`` (0 is the highest), ``sample`` (index
            of the text), ``start``, ``end`` (character span in the text),
            ``text`` (the unit string) and ``activation`` (and ``label`` after
            ``concept`` with ``labels=True``).
        """
        validate_parameter_constraints(
            self._parameter_constraints,
            self.get_params(),
            caller_name=type(self).__name__,
        )
        parts = split_pipeline(pipeline, require_extractor=True)
        concepts = _check_concepts(self.concepts, parts.concepts.components_.shape[0])

        if is_store(activations):
            activations.check_source(parts.extractor)  # same model and split point
            batches, n_batches = _batches_from_store(
                parts, activations, _STORE_ROWS * self.batch_size
            )
        elif activations is None:
            texts = check_texts(texts)
            batches = _batches_from_texts(parts, texts, self.batch_size)
            n_batches = -(-len(texts) // self.batch_size)
        else:
            texts = check_texts(texts)
            batches, n_batches = _batches_from_activations(
                parts, texts, activations, self.batch_size
            )
        batches = progress_bar(
            batches,
            total=n_batches,
            progress=self.progress,
            desc="TopKInputs",
            unit="batch",
        )
        table = _running_topk(batches, k=self.k, unique=self.unique, concepts=concepts)
        if not as_frame:
            return _as_dict(table, concepts)
        if self.labels:
            if is_store(activations):
                raise ValueError(
                    "labels=True needs the texts of the store's rows; pass "
                    "activations=None with the texts, or labels=False."
                )
            names = concept_labels(
                pipeline,
                texts,
                batch_size=self.batch_size,
                progress=self.progress,
                activations=activations,
            )
            table.insert(1, "label", [names[int(c)] for c in table["concept"]])
        return table

    def interpret_vocabulary(
        self,
        pipeline,
        *,
        tokens=None,
        include_special=False,
        batch_size=VOCABULARY_BATCH,
        as_frame=False,
    ):
        """Find the top-``k`` tokens of the vocabulary for every concept, no corpus.

        Every token of the tokenizer's vocabulary is run alone through the
        model, up to the split point, in the template the tokenizer puts around
        any text (e.g. ``[CLS] token [SEP]`` for BERT, ``<s> token`` for Llama,
        the bare token for GPT-2), then encoded by the pipeline's
        preprocessing steps and concept estimator, and ranked (interpreto
        calls this ``use_vocab``). The row of a token is the one the pipeline's
        ``SplitPointActivations`` would give the text made of that one token:
        the token's own position at ``token``, ``all_tokens``, ``word`` and
        ``sentence`` level (and at ``sample`` level with special tokens
        excluded), the aggregate of the template at ``sample`` level with
        special tokens included, the leading special token at ``cls`` level.

        All sequences have the same length, so they are batched without
        padding, ``batch_size`` at a time; only the running top-``k`` is kept.

        Parameters
        ----------
        pipeline : Pipeline
            A fitted pipeline whose first step is a ``SplitPointActivations``
            and that holds a concept estimator, as for :meth:`interpret`.
        tokens : array-like of int or str, default=None
            The token ids or token strings to rank; ``None`` takes the whole
            vocabulary (see :func:`vocabulary_tokens`). Unknown strings and
            ids beyond the model's input embeddings raise a ``ValueError``.
        include_special : bool, default=False
            With ``tokens=None``, keep the special tokens ([CLS], [PAD],
            added special tokens) and placeholders (``[unused12]``,
            ``<extra_id_0>``), left out by default.
        batch_size : int, default=1024
            Single-token sequences per forward pass.
        as_frame : bool, default=False
            Return a tidy ``pandas.DataFrame`` instead of the dict.

        Returns
        -------
        top : dict or pandas.DataFrame
            ``{concept_index: {token: activation}}`` (tokens as the tokenizer
            writes them, e.g. ``"##ing"`` or ``"Ġthe"``), tokens by decreasing
            activation. With ``as_frame=True``, the columns of
            :meth:`interpret`, where ``sample`` is the token id, ``start`` is 0,
            ``end`` the length of the token string and ``text`` the token.

        See Also
        --------
        vocabulary_tokens : The token ids and strings ranked by default.

        Examples
        --------
        >>> from sklearn.pipeline import make_pipeline
        >>> from skconcepts import SplitPointActivations, PCAConcepts, TopKInputs
        >>> from skconcepts.datasets import load_demo_corpus
        >>> texts = load_demo_corpus()[0][:12]
        >>> pipe = make_pipeline(
        ...     SplitPointActivations(split_point=1),  # the embedded MiniLM
        ...     PCAConcepts(n_concepts=2),
        ... ).fit(texts)
        >>> reader = TopKInputs(k=3)
        >>> top = reader.interpret_vocabulary(pipe, tokens=["film", "movie", "rain"])
        >>> sorted(top), len(top[0])
        ([0, 1], 3)
        """
        validate_parameter_constraints(
            self._parameter_constraints,
            self.get_params(),
            caller_name=type(self).__name__,
        )
        if not (isinstance(batch_size, Integral) and batch_size >= 1):
            raise ValueError(
                f"batch_size={batch_size!r} must be a positive int (sequences "
                "per forward pass), e.g. 1024."
            )
        parts = split_pipeline(pipeline, require_extractor=True)
        concepts = _check_concepts(self.concepts, parts.concepts.components_.shape[0])
        extractor = parts.extractor
        if tokens is None:
            ids, strings = vocabulary_tokens(
                extractor.tokenizer_,
                include_special=include_special,
                n_embeddings=_n_embeddings(extractor.model_),
            )
        else:
            ids, strings = _check_tokens(extractor, tokens)
        n_batches = -(-len(ids) // batch_size)
        batches = progress_bar(
            _batches_from_vocabulary(parts, ids, strings, batch_size),
            total=n_batches,
            progress=self.progress,
            desc="TopKInputs (vocabulary)",
            unit="batch",
        )
        table = _running_topk(batches, k=self.k, unique=self.unique, concepts=concepts)
        return table if as_frame else _as_dict(table, concepts)

    def interpret_concepts(self, concept_activations, units, as_frame=False):
        """Find the top-``k`` units of every concept from concept activations.

        The same search as :meth:`interpret` when the concept activations and
        the units table are already computed (e.g. ``pipe.transform(texts)``
        and ``pipe[0].units(texts)``), so no pipeline is needed.

        Parameters
        ----------
        concept_activations : array-like or torch.Tensor of shape \
(n_units, n_concepts)
            Concept activations, one row per unit.
        units : pandas.DataFrame of shape (n_units, ...)
            The units table of the same rows, with the columns ``sample``,
            ``start``, ``end`` and ``text`` (as ``SplitPointActivations.units``
            returns it).
        as_frame : bool, default=False
            Return a tidy ``pandas.DataFrame`` instead of the dict.

        Returns
        -------
        top : dict or pandas.DataFrame
            As :meth:`interpret` returns it.

        Examples
        --------
        >>> import numpy as np, pandas as pd
        >>> from skconcepts import TopKInputs
        >>> units = pd.DataFrame({"sample": [0, 0, 1], "start": [0, 4, 0],
        ...                       "end": [3, 8, 4], "text": ["big", "dogs", "cats"]})
        >>> C = np.array([[0.1, 2.0], [0.9, 0.0], [0.5, 1.0]])
        >>> TopKInputs(k=2).interpret_concepts(C, units)
        {0: {'dogs': 0.9, 'cats': 0.5}, 1: {'big': 2.0, 'cats': 1.0}}
        """
        validate_parameter_constraints(
            self._parameter_constraints,
            self.get_params(),
            caller_name=type(self).__name__,
        )
        C = to_numpy(concept_activations, dtype=None)
        if C.ndim != 2:
            raise ValueError(
                f"concept_activations must be 2-D (n_units, n_concepts), got shape "
                f"{C.shape}."
            )
        _check_units(units, C.shape[0], "concept_activations")
        concepts = _check_concepts(self.concepts, C.shape[1])
        table = _running_topk(
            [(C, units)], k=self.k, unique=self.unique, concepts=concepts
        )
        return table if as_frame else _as_dict(table, concepts)


# ------------------------------------------------------------------ helpers
def _check_concepts(concepts, n_concepts):
    if concepts is None:
        return np.arange(n_concepts)
    idx = np.asarray(concepts).ravel()
    if idx.size == 0 or not np.issubdtype(idx.dtype, np.integer):
        raise ValueError(
            f"concepts={concepts!r} must be a non-empty list of concept indices "
            "(integers), or None for all concepts."
        )
    bad = idx[(idx < 0) | (idx >= n_concepts)]
    if bad.size:
        raise ValueError(
            f"concepts={concepts!r} holds {bad.tolist()}, but the estimator has "
            f"{n_concepts} concepts; use indices in [0, {n_concepts - 1}]."
        )
    return pd.unique(idx)


def _check_units(units, n_rows, where):
    missing = [c for c in _UNIT_COLUMNS if c not in units.columns]
    if missing:
        raise ValueError(f"The units table lacks the columns {missing}.")
    if len(units) != n_rows:
        raise ValueError(
            f"{where} has {n_rows} rows but the units table of the texts has "
            f"{len(units)}; pass the activations that the pipeline's "
            "SplitPointActivations computed for these same texts."
        )


# ------------------------------------------------------------------- labels
def word_concept_activations(
    pipeline, texts, *, batch_size=TEXT_BATCH, progress=None, activations=None
):
    """Concept activations of every word of ``texts``, with the same dictionary.

    The pipeline's ``SplitPointActivations`` is cloned at ``granularity="word"``
    (the same model, split point, aggregation of a word's tokens and cache),
    and its word rows are encoded by the pipeline's preprocessing steps and
    concept estimator: the words that carry each concept inside a text, also
    when the pipeline's own units are sentences or whole texts.

    Parameters
    ----------
    pipeline : Pipeline
        A fitted pipeline whose first step is a ``SplitPointActivations`` and
        that holds a concept estimator.
    texts : list of str
        The texts.
    batch_size : int, default=1024
        Texts per batch (only one batch of activations is in memory at once;
        the extractor sorts a batch's texts by length, so large batches pad
        little). The default was 32 before.
    progress : bool or None, default=None
        A tqdm progress bar over the batches (``None``: when stderr is an
        interactive terminal or a notebook).
    activations : array-like, default=None
        The pipeline's ``SplitPointActivations`` output for ``texts``, used
        (no model run) when its granularity is already ``"word"``; ignored
        otherwise.

    Returns
    -------
    concept_activations : ndarray of shape (n_words, n_concepts)
        The concept activations of every word.
    units : pandas.DataFrame of shape (n_words, 4)
        Columns ``sample`` (index of the text), ``start``, ``end`` (character
        span) and ``text`` (the word).

    Examples
    --------
    >>> from sklearn.pipeline import make_pipeline
    >>> from skconcepts import SplitPointActivations, PCAConcepts
    >>> from skconcepts.interpret import word_concept_activations
    >>> texts = ["A good film.", "Rain all night.", "The music was loud."]
    >>> pipe = make_pipeline(
    ...     SplitPointActivations(split_point=1, granularity="sample"),
    ...     PCAConcepts(n_concepts=2),
    ... ).fit(texts)
    >>> C, units = word_concept_activations(pipe, texts)
    >>> C.shape, units["text"].tolist()[:4]
    ((13, 2), ['A', 'good', 'film', '.'])
    """
    texts = check_texts(texts)
    parts = split_pipeline(pipeline, require_extractor=True)
    extractor = parts.extractor
    if extractor.granularity == "word" and activations is not None:
        batches = _batches_from_activations(parts, texts, activations, batch_size)[0]
    else:
        if extractor.granularity != "word":
            words = clone(extractor).set_params(granularity="word").fit()
            parts = parts._replace(extractor=words)
        batches = _batches_from_texts(parts, texts, batch_size)
    Cs, frames = [], []
    for C, _, units in progress_bar(
        batches,
        total=-(-len(texts) // batch_size),
        progress=progress,
        desc="word concepts",
        unit="batch",
    ):
        Cs.append(C)
        frames.append(units)
    n_concepts = parts.concepts.components_.shape[0]
    if not Cs:
        return np.zeros((0, n_concepts), np.float32), pd.DataFrame(
            {c: [] for c in _UNIT_COLUMNS}
        )
    return np.concatenate(Cs), pd.concat(frames, ignore_index=True)


def concept_labels(
    pipeline,
    texts,
    *,
    n_words=3,
    min_count=1,
    smoothing=2.0,
    batch_size=TEXT_BATCH,
    progress=None,
    activations=None,
):
    """A short label of every concept: its most distinctive words.

    A word is distinctive of a concept when its occurrences activate the
    concept far more than its frequency in ``texts`` predicts: the score of
    word ``w`` for concept ``j`` is the lift

    ``(S_wj + smoothing * m_j) / ((n_w + smoothing) * m_j)``

    where ``n_w`` is the number of occurrences of ``w`` (case folded),
    ``S_wj`` the sum of their activations of ``j`` (negative activations count
    as 0), and ``m_j`` the mean activation of ``j`` over all words. A lift of
    1 is what the frequency predicts; ``smoothing`` pulls the lift of rare
    words towards 1, so that one lucky occurrence does not win. Words are the
    rows of :func:`word_concept_activations` (every text encoded at word level
    with the pipeline's own dictionary); words without a letter or digit
    (punctuation) are left out.

    Parameters
    ----------
    pipeline : Pipeline
        A fitted pipeline whose first step is a ``SplitPointActivations`` and
        that holds a concept estimator.
    texts : list of str
        The corpus the words and their frequencies come from.
    n_words : int, default=3
        Words per label.
    min_count : int, default=1
        Words seen fewer times are left out.
    smoothing : float, default=2.0
        Pseudo-occurrences at the mean activation added to every word.
    batch_size : int, default=1024
        Texts per batch (see :func:`word_concept_activations`).
    progress : bool or None, default=None
        A tqdm progress bar (``None``: when stderr is an interactive terminal
        or a notebook).
    activations : array-like, default=None
        The pipeline's ``SplitPointActivations`` output for ``texts``, reused
        when its granularity is ``"word"`` (no model run).

    Returns
    -------
    labels : list of str
        One label per concept of the estimator: up to ``n_words`` words by
        decreasing lift, joined by ``", "``; only words with a lift above 1
        are listed, so a concept that no word activates more than its
        frequency predicts (e.g. one never active) gets ``""``.

    See Also
    --------
    TopKInputs : The top units of every concept.
    skconcepts.viz.report : The HTML report, titled by these labels.

    Examples
    --------
    >>> from sklearn.pipeline import make_pipeline
    >>> from skconcepts import SplitPointActivations, PCAConcepts
    >>> from skconcepts.datasets import load_demo_corpus
    >>> from skconcepts.interpret import concept_labels
    >>> texts = load_demo_corpus()[0][:16]
    >>> pipe = make_pipeline(
    ...     SplitPointActivations(split_point=3, granularity="word"),
    ...     PCAConcepts(n_concepts=2),
    ... ).fit(texts)
    >>> labels = concept_labels(pipe, texts)
    >>> len(labels), all(1 <= len(label.split(", ")) <= 3 for label in labels)
    (2, True)
    """
    _check_label_params(n_words, min_count, smoothing)
    C, units = word_concept_activations(
        pipeline,
        texts,
        batch_size=batch_size,
        progress=progress,
        activations=activations,
    )
    return distinctive_labels(
        C, units["text"], n_words=n_words, min_count=min_count, smoothing=smoothing
    )


def _check_label_params(n_words, min_count, smoothing):
    if not (isinstance(n_words, Integral) and n_words >= 1):
        raise ValueError(f"n_words={n_words!r} must be an int >= 1, e.g. 3.")
    if not (isinstance(min_count, Integral) and min_count >= 1):
        raise ValueError(f"min_count={min_count!r} must be an int >= 1, e.g. 1.")
    if not (isinstance(smoothing, Real) and smoothing >= 0):
        raise ValueError(f"smoothing={smoothing!r} must be a number >= 0, e.g. 2.")


def distinctive_labels(
    concept_activations, words, *, n_words=3, min_count=1, smoothing=2.0
):
    """Labels of distinctive words from word-level concept activations.

    The computation of :func:`concept_labels` on activations already
    computed: one row per word occurrence.

    Parameters
    ----------
    concept_activations : array-like of shape (n_words, n_concepts)
        Concept activations of the word occurrences.
    words : array-like of str of shape (n_words,)
        The word of every row.
    n_words, min_count, smoothing
        As in :func:`concept_labels`.

    Returns
    -------
    labels : list of str
        One label per column of ``concept_activations``.

    Examples
    --------
    >>> import numpy as np
    >>> from skconcepts.interpret import distinctive_labels
    >>> words = ["the", "zebra", "the", "cat", "the", "zebra"]
    >>> C = np.array([[0.1, 1.0], [3.0, 0.0], [0.1, 1.0], [0.2, 0.0],
    ...               [0.1, 1.0], [2.5, 0.0]])
    >>> distinctive_labels(C, words, n_words=2)
    ['zebra', 'the']
    """
    _check_label_params(n_words, min_count, smoothing)
    C = np.maximum(to_numpy(concept_activations, dtype=None).astype(float), 0.0)
    words = pd.Series(np.asarray(words, dtype=object)).astype(str).str.lower()
    if C.ndim != 2 or C.shape[0] != len(words):
        raise ValueError(
            f"concept_activations has shape {C.shape} but there are {len(words)} "
            "words; pass one row per word."
        )
    keep = words.str.contains(r"[^\W_]", regex=True).to_numpy()
    C, words = C[keep], words[keep]
    if len(words) == 0:
        return [""] * C.shape[1]
    codes, vocab = pd.factorize(words)
    counts = np.bincount(codes, minlength=len(vocab)).astype(float)  # (n_vocab,)
    sums = np.zeros((len(vocab), C.shape[1]))
    np.add.at(sums, codes, C)  # (n_vocab, n_concepts)
    mean = C.mean(axis=0)  # (n_concepts,)
    labels = []
    for j in range(C.shape[1]):
        if mean[j] <= 0:
            labels.append("")
            continue
        lift = (sums[:, j] + smoothing * mean[j]) / ((counts + smoothing) * mean[j])
        lift[counts < min_count] = 0.0
        order = np.lexsort((np.arange(len(vocab)), -lift))
        best = [vocab[i] for i in order[:n_words] if lift[i] > 1.0]
        labels.append(", ".join(best))
    return labels


# --------------------------------------------------------------- vocabulary
def vocabulary_tokens(tokenizer, *, include_special=False, n_embeddings=None):
    """The token ids and strings of a tokenizer's vocabulary, in id order.

    Parameters
    ----------
    tokenizer : transformers tokenizer
        The tokenizer (``len(tokenizer)`` ids, added tokens included).
    include_special : bool, default=False
        Keep the special tokens (``tokenizer.all_special_ids`` and added
        tokens marked special, e.g. [CLS], [SEP], [PAD], [MASK], [UNK]) and
        placeholders (``[unused12]``, ``<unused3>``, ``<extra_id_0>``).
    n_embeddings : int or None, default=None
        Leave out ids at or beyond this many input embeddings of the model.

    Returns
    -------
    ids : ndarray of shape (n_tokens,), dtype int64
        The token ids.
    tokens : list of str
        The token strings (``tokenizer.convert_ids_to_tokens``).

    Examples
    --------
    >>> from transformers import AutoTokenizer
    >>> from skconcepts.datasets import embedded_model_path
    >>> from skconcepts.interpret import vocabulary_tokens
    >>> tok = AutoTokenizer.from_pretrained(embedded_model_path())
    >>> ids, tokens = vocabulary_tokens(tok)
    >>> len(tok), len(ids), "[PAD]" in tokens, "[unused0]" in tokens
    (30522, 29523, False, False)
    """
    n = len(tokenizer)
    if n_embeddings is not None:
        n = min(n, int(n_embeddings))
    ids = np.arange(n, dtype=np.int64)
    tokens = tokenizer.convert_ids_to_tokens(ids.tolist())
    keep = np.array([t is not None and t != "" for t in tokens], dtype=bool)
    if not include_special:
        special = set(tokenizer.all_special_ids)
        added = getattr(tokenizer, "added_tokens_decoder", {}) or {}
        special.update(i for i, t in added.items() if getattr(t, "special", False))
        for i, token in enumerate(tokens):
            if i in special or (token is not None and _PLACEHOLDER.match(token)):
                keep[i] = False
    return ids[keep], [t for t, k in zip(tokens, keep) if k]


def _n_embeddings(model):
    embeddings = model.get_input_embeddings() if model is not None else None
    return getattr(embeddings, "num_embeddings", None)


def _check_tokens(extractor, tokens):
    """Ids and strings of user-given tokens (ids or strings, not mixed)."""
    tokenizer = extractor.tokenizer_
    values = list(np.asarray(tokens, dtype=object).ravel())
    if not values:
        raise ValueError("tokens=[] is empty; pass token ids or strings, or None.")
    n = len(tokenizer)
    n_rows = _n_embeddings(extractor.model_)
    if n_rows is not None:
        n = min(n, n_rows)
    if all(isinstance(v, str) for v in values):
        ids = tokenizer.convert_tokens_to_ids(values)
        unk = tokenizer.unk_token_id
        bad = [
            v
            for v, i in zip(values, ids)
            if i is None or (i == unk and v != tokenizer.unk_token)
        ]
        if bad:
            raise ValueError(
                f"tokens holds {bad[:5]}, which are not tokens of the vocabulary "
                "(write them as the tokenizer does, e.g. '##ing'; see "
                "tokenizer.convert_ids_to_tokens)."
            )
    elif all(isinstance(v, Integral) for v in values):
        ids = [int(v) for v in values]
    else:
        raise ValueError(
            f"tokens={tokens!r} must be token ids (ints) or token strings, not "
            "a mix of both."
        )
    ids = np.asarray(ids, dtype=np.int64)
    bad = ids[(ids < 0) | (ids >= n)]
    if bad.size:
        raise ValueError(
            f"tokens holds the ids {bad[:5].tolist()}, outside [0, {n - 1}] (the "
            "model's input embeddings); pass ids of the vocabulary."
        )
    ids = pd.unique(ids)
    return ids, tokenizer.convert_ids_to_tokens(ids.tolist())


def _template(extractor):
    """``(prefix ids, suffix ids, prefix type ids, suffix type ids)`` of a text."""
    enc = extractor.encode(["a"])[0]
    special = np.asarray(enc.special_tokens_mask, dtype=bool)
    real = np.flatnonzero(~special)
    first, last = (real[0], real[-1]) if real.size else (len(special), len(special))
    ids, types = list(enc.ids), list(enc.type_ids)
    return ids[:first], ids[last + 1 :], types[:first], types[last + 1 :]


def _batches_from_vocabulary(parts, ids, tokens, batch_size):
    """Yield ``(C, T, units)`` per batch of single-token sequences."""
    extractor = parts.extractor
    model = extractor.model_
    device = extractor.device_
    prefix, suffix, prefix_types, suffix_types = _template(extractor)
    position = len(prefix)  # of the token in the template
    width = len(prefix) + 1 + len(suffix)
    granularity = extractor.granularity
    if granularity == "cls" and not prefix:
        raise ValueError(
            "granularity='cls' reads a leading special token, but this "
            "tokenizer adds none; use another granularity."
        )
    whole = granularity == "sample" and not extractor.exclude_special_tokens
    module = model.get_submodule(extractor.split_module_name_)
    storage = {"float16": torch.float16, "bfloat16": torch.bfloat16}.get(
        extractor.dtype
    )
    wants_types = "token_type_ids" in getattr(
        extractor.tokenizer_, "model_input_names", ()
    )
    types_row = torch.as_tensor([*prefix_types, 0, *suffix_types], dtype=torch.long)
    lengths = np.array([len(t) for t in tokens])
    with frozen_model(model, device):
        for lo in range(0, len(ids), batch_size):
            chunk = torch.as_tensor(ids[lo : lo + batch_size])
            n = len(chunk)
            input_ids = torch.empty((n, width), dtype=torch.long)  # (B, T)
            input_ids[:, :position] = torch.as_tensor(prefix, dtype=torch.long)
            input_ids[:, position] = chunk
            input_ids[:, position + 1 :] = torch.as_tensor(suffix, dtype=torch.long)
            inputs = {
                "input_ids": input_ids,
                "attention_mask": torch.ones((n, width), dtype=torch.long),
            }
            if wants_types:
                inputs["token_type_ids"] = types_row.expand(n, width)
            inputs = {key: value.to(device) for key, value in inputs.items()}
            with torch.inference_mode(), stop_after(module) as captured:
                model(**inputs, use_cache=False)
            hidden = captured.output  # (B, T, d)
            if hidden is None or tuple(hidden.shape[:2]) != (n, width):
                raise ValueError(
                    f"The split module {extractor.split_module_name_!r} gave no "
                    "(batch, sequence, d) output on the vocabulary sequences."
                )
            hidden = hidden.float()
            if whole:  # the aggregate of the template, as for the text
                unit_ids = torch.arange(n, device=hidden.device).repeat_interleave(
                    width
                )
                rows = aggregate(
                    hidden.reshape(n * width, -1), unit_ids, n, extractor.aggregation
                )
            else:
                rows = hidden[:, 0 if granularity == "cls" else position]  # (B, d)
            if storage is not None:  # the extractor's storage precision
                rows = rows.to(storage).float()
            X = rows.cpu().numpy()
            units = pd.DataFrame(
                {
                    "sample": ids[lo : lo + n],
                    "start": np.zeros(n, dtype=np.int64),
                    "end": lengths[lo : lo + n],
                    "text": tokens[lo : lo + n],
                }
            )
            yield (*_encode(parts, X), units)


def _batches_from_texts(parts, texts, batch_size):
    """Yield ``(C, T, units)`` per batch of texts, running the model in chunks.

    Each chunk of ``batch_size`` texts is one ``iter_batches`` chunk: one
    tokenisation, the extractor's own length-sorted batches, and the units
    from the same pass (no second encoding); the concept estimator runs once
    per chunk. Texts without units yield nothing, as on the ``activations=``
    path.
    """
    extractor = parts.extractor
    for idx, rows, spans in extractor.iter_batches(texts, chunk_size=batch_size):
        start, n = int(idx[0]), len(spans)
        if not any(len(s) for s in spans):
            continue
        X = torch.cat(rows)
        if extractor.dtype != "bfloat16":
            X = X.numpy().astype(extractor.dtype, copy=False)
        C, T = _encode(parts, X)
        units = units_table(texts[start : start + n], spans, offset=start)
        units = units[_UNIT_COLUMNS]
        yield C, T, units.reset_index(drop=True)


def _batches_from_activations(parts, texts, activations, batch_size):
    """``(generator of (C, units), n_batches)`` over precomputed activations."""
    if is_tensor(activations):
        if activations.ndim != 2:
            raise ValueError(
                f"activations must be 2-D (n_rows, n_features), got shape "
                f"{tuple(activations.shape)}."
            )
    else:
        activations = np.asarray(activations)
        if activations.ndim != 2:
            raise ValueError(
                f"activations must be 2-D (n_rows, n_features), got shape "
                f"{activations.shape}; pass pipeline[0].transform(texts)."
            )
    units = parts.extractor.units(texts)
    _check_units(units, activations.shape[0], "activations")
    units = units[_UNIT_COLUMNS].reset_index(drop=True)
    # row boundaries of consecutive groups of ``batch_size`` texts
    edges = np.searchsorted(
        units["sample"].to_numpy(), np.arange(0, len(texts), batch_size), side="left"
    )
    edges = np.append(edges, len(units))

    def batches():
        for lo, hi in zip(edges[:-1], edges[1:]):
            if hi <= lo:
                continue
            X = activations[lo:hi]
            X = to_numpy(X)
            yield (*_encode(parts, X), units.iloc[lo:hi])

    return batches(), len(edges) - 1


def _batches_from_store(parts, store, rows):
    """``(generator of (C, units), n_batches)`` over an ActivationStore."""
    n_batches = -(-store.shape[0] // rows)
    pairs = zip(store.iter_batches(rows), store.iter_units(rows))
    return ((*_encode(parts, X), units) for X, units in pairs), n_batches


def _encode(parts, X):
    """Concept activations ``C`` of activations ``X`` and their tie-break scores.

    The scores are the concept estimator's ``typicality`` of the same rows when
    it has one (e.g. ``KMeansConcepts``), else ``None``.
    """
    X = preprocess(parts, X)
    C = to_numpy(parts.concepts.transform(X))
    typicality = getattr(parts.concepts, "typicality", None)
    return C, (None if typicality is None else to_numpy(typicality(X)))


def _topk_candidates(C, codes, k, unique, T=None):
    """Per column, row positions of the top ``k``.

    Ties of ``C`` go to the higher tie-break score ``T`` (same shape, or None),
    then to the earlier row. Returns ``(rows, cols)``: flat arrays of the
    selected positions, column by column, best first.

    Vectorised over the columns: ``np.partition`` finds each column's
    ``depth``-th largest value, and only the rows at or above it (ties at the
    boundary included, so the order is exact) are ranked, all columns in one
    ``lexsort``. With ``unique``, a column whose candidates hold fewer than
    ``k`` distinct codes is ranked again deeper (4 times, up to every row).
    """
    n, m = C.shape
    if n == 0 or m == 0:
        empty = np.zeros(0, dtype=np.intp)
        return empty, empty
    if np.isnan(C).any() or (T is not None and np.isnan(T).any()):
        return _topk_sorted(C, codes, k, unique, T)  # NaN: the full sort's order
    rows, cols = [], []
    todo = np.arange(m)
    depth = k
    while todo.size:
        sub = C[:, todo] if todo.size < m else C
        if depth < n:
            kth = np.partition(sub, n - depth, axis=0)[n - depth]  # (len(todo),)
            col, row = np.nonzero((sub >= kth).T)  # by column, then row
        else:
            col = np.repeat(np.arange(todo.size), n)
            row = np.tile(np.arange(n), todo.size)
        value = sub[row, col]
        if T is None:
            order = np.lexsort((-value, col))  # stable: ties keep the row order
        else:
            order = np.lexsort((-T[row, todo[col]], -value, col))
        col, row = col[order], row[order]
        if unique:  # the first (best) row of every (column, code)
            key = col.astype(np.int64) * (int(codes.max()) + 1) + codes[row]
            first = np.sort(np.unique(key, return_index=True)[1])
            col, row = col[first], row[first]
        starts = np.searchsorted(col, np.arange(todo.size))
        rank = np.arange(col.size) - starts[col]
        keep = rank < k
        found = np.bincount(col[keep], minlength=todo.size)
        done = (found >= k) | (depth >= n) if unique else np.ones(todo.size, bool)
        pick = keep & done[col]
        rows.append(row[pick])
        cols.append(todo[col[pick]])
        todo, depth = todo[~done], depth * 4
    rows, cols = np.concatenate(rows), np.concatenate(cols)
    order = np.argsort(cols, kind="stable")  # column by column, best first
    return rows[order], cols[order]


def _topk_sorted(C, codes, k, unique, T=None):
    """``_topk_candidates`` by a full sort of every column (the reference)."""
    n, m = C.shape
    if T is None:
        order = np.argsort(-C, axis=0, kind="stable")  # (n, m), descending
    else:  # lexsort is stable: the last key is the primary one
        order = np.lexsort((-T, -C), axis=0)
    if not unique:
        top = order[:k]  # (min(n, k), m)
        cols = np.broadcast_to(np.arange(m), top.shape)
        return top.T.ravel(), cols.T.ravel()
    rows, cols = [], []
    for j in range(m):
        ranked_codes = codes[order[:, j]]
        _, first = np.unique(ranked_codes, return_index=True)
        keep = order[np.sort(first)[:k], j]
        rows.append(keep)
        cols.append(np.full(keep.shape, j))
    return np.concatenate(rows), np.concatenate(cols)


def _running_topk(batches, *, k, unique, concepts):
    """Top-``k`` units per concept from a stream of ``(C_batch, units_batch)``.

    Parameters
    ----------
    batches : iterable of (C, T, units) or (C, units)
        Concept activations ``C`` (n_rows, n_concepts) of a batch of units (all
        concepts of the estimator), optional tie-break scores ``T`` of the same
        shape (or None; higher wins among equal activations) and the units
        table of the same rows (columns ``sample``, ``start``, ``end``,
        ``text``). Only the current batch and the running top-``k`` are held,
        so a store that yields batches can feed it.
    k : int
        Units kept per concept.
    unique : bool
        Keep each unit string once per concept (its highest activation).
    concepts : array of int
        Indices of the columns of ``C_batch`` to read.

    Returns
    -------
    table : DataFrame
        Columns ``FRAME_COLUMNS``, sorted by concept then rank.
    """
    concepts = np.asarray(concepts)
    pool = None
    offset = 0  # global row number, for deterministic tie-breaking
    for batch in batches:
        C, T, units = batch if len(batch) == 3 else (batch[0], None, batch[1])
        C = np.asarray(C)[:, concepts]
        T = None if T is None else np.asarray(T)[:, concepts]
        n = C.shape[0]
        if n == 0:
            continue
        texts = units["text"].to_numpy()
        codes = pd.factorize(texts)[0] if unique else None
        rows, cols = _topk_candidates(C, codes, k, unique, T)
        cand = pd.DataFrame(
            {
                "concept": concepts[cols],
                "row": rows + offset,
                "sample": units["sample"].to_numpy()[rows],
                "start": units["start"].to_numpy()[rows],
                "end": units["end"].to_numpy()[rows],
                "text": texts[rows],
                "activation": C[rows, cols],
                "tie_break": 0.0 if T is None else T[rows, cols],
            }
        )
        pool = cand if pool is None else pd.concat([pool, cand], ignore_index=True)
        pool = _select(pool, k, unique)
        offset += n
    if pool is None:
        return pd.DataFrame({c: [] for c in FRAME_COLUMNS})
    pool = pool.reset_index(drop=True)
    pool.insert(1, "rank", pool.groupby("concept").cumcount())
    return pool[FRAME_COLUMNS]


def _select(pool, k, unique):
    pool = pool.sort_values(
        ["concept", "activation", "tie_break", "row"],
        ascending=[True, False, False, True],
        kind="stable",
    )
    if unique:
        pool = pool.drop_duplicates(["concept", "text"], keep="first")
    return pool.groupby("concept", sort=False).head(k)


def _as_dict(table, concepts):
    out = {int(c): {} for c in concepts}
    for concept, text, value in zip(
        table["concept"].to_numpy(), table["text"], table["activation"].to_numpy()
    ):
        out[int(concept)].setdefault(text, float(value))
    return out
