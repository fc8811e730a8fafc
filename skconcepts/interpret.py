"""Reading concepts: the inputs that activate each concept most (``TopKInputs``)."""

from __future__ import annotations

from numbers import Integral

import numpy as np
import pandas as pd
import torch
from sklearn.utils._param_validation import Interval, validate_parameter_constraints
from tqdm.auto import tqdm

from skconcepts._granularity import units_table
from skconcepts._pipeline import preprocess, split_pipeline
from skconcepts.utils._torch import to_numpy
from skconcepts.utils._torch_free import is_store, is_tensor
from skconcepts.utils._validation import check_texts

__all__ = ["TopKInputs"]

#: columns of the table returned by ``TopKInputs.interpret(..., as_frame=True)``
FRAME_COLUMNS = ["concept", "rank", "sample", "start", "end", "text", "activation"]
_UNIT_COLUMNS = ["sample", "start", "end", "text"]
#: rows read from an ActivationStore per text of ``batch_size``
_STORE_ROWS = 64


class TopKInputs:
    """The ``k`` units (tokens, words, sentences, texts) most activating each concept.

    For every concept of a fitted pipeline ``SplitPointActivations -> [preprocessing]
    -> <Method>Concepts``, the units of a list of texts with the highest concept
    activation, with their activations ("max-activating examples"). Units follow the
    ``granularity`` of the pipeline's ``SplitPointActivations``: tokens, words,
    sentences or whole texts. Concept activations come from the estimator's public
    ``transform``, so every concept estimator works.

    Texts are processed ``batch_size`` at a time and only a running top-``k`` is
    kept, so no more than one batch of activations is in memory.

    Parameters
    ----------
    k : int, default=5
        Number of units kept per concept.
    unique : bool, default=True
        Count the same unit string once per concept, with its highest activation
        (e.g. the token "the" from many texts appears once).
    concepts : array-like of int or None, default=None
        Indices of the concepts to read; ``None`` reads them all.
    batch_size : int, default=32
        Number of texts encoded and transformed at a time.
    progress : bool, default=False
        Show a tqdm progress bar over the batches.

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
        "progress": ["boolean"],
    }

    def __init__(
        self, k=5, *, unique=True, concepts=None, batch_size=32, progress=False
    ):
        self.k = k
        self.unique = unique
        self.concepts = concepts
        self.batch_size = batch_size
        self.progress = progress

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
            ``text`` (the unit string) and ``activation``.
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
        batches = tqdm(
            batches,
            total=n_batches,
            desc="TopKInputs",
            unit="batch",
            disable=not self.progress,
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
    selected positions.
    """
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
