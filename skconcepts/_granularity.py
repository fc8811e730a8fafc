"""Granular units: map tokens to words, sentences or samples, and aggregate.

A *unit* is what one activation row stands for: a token, a word, a sentence,
a whole text (sample) or its leading special token (cls). For one text,
:func:`unit_index` gives every token the id of its unit (``-1`` for tokens that
belong to none: special tokens when they are excluded) and the character span
of every unit; :func:`aggregate` turns the token activations into one row per
unit, and :func:`units_table` turns the spans of many texts into the table that
says which text and characters every row covers.

Granularities
-------------
``all_tokens``
    every real (non-padding) token, special tokens included.
``token``
    every token; special tokens are excluded unless
    ``exclude_special_tokens=False``.
``word``
    tokens grouped by the fast tokenizer's word ids (the pre-tokenizer's
    words, so punctuation is a word of its own).
``sentence``
    tokens grouped by the sentence (see :func:`split_sentences`) that holds
    their first non-blank character.
``sample``
    all tokens of the text. A text without any non-special token (the empty
    string) falls back to its special tokens; a text without any token at all
    gets a row of zeros.
``cls``
    the first token only, which must be a special token ([CLS], BOS); its
    span is that of the text it summarises (as for ``sample``).

Excluded special tokens never join a unit. When they are not excluded
(``exclude_special_tokens=False``), each one is a unit of its own at ``word``
and ``sentence`` level, and part of the sample at ``sample`` level.
"""

from __future__ import annotations

import bisect
import re

import numpy as np
import pandas as pd
import torch

__all__ = [
    "GRANULARITIES",
    "AGGREGATIONS",
    "split_sentences",
    "unit_index",
    "aggregate",
    "units_table",
]

GRANULARITIES = ("all_tokens", "token", "word", "sentence", "sample", "cls")
AGGREGATIONS = ("mean", "sum", "max", "min", "signed_max", "first", "last")

# A sentence ends after a run of . ! ? (and any closing quotes or brackets)
# followed by white space, or at a line break.
_SENTENCE_END = re.compile(r"[.!?]+[\"'\u201d\u2019)\]]*(?=\s)|\n")


def _strip(text: str, start: int, end: int) -> tuple[int, int]:
    """Shrink ``[start, end)`` to exclude white space at both ends (kept if blank)."""
    s, e = start, end
    while s < e and text[s].isspace():
        s += 1
    while e > s and text[e - 1].isspace():
        e -= 1
    return (s, e) if s < e else (start, end)


def split_sentences(text: str) -> list[tuple[int, int]]:
    """Character spans of the sentences of ``text``.

    A simple, deterministic splitter (no model, no NLTK data): a sentence ends
    after a run of ``.``, ``!`` or ``?`` (with any closing quotes or brackets)
    that is followed by white space, and at every line break. Spans exclude the
    white space around sentences; blank pieces are dropped. Abbreviations such
    as "Dr. Smith" are split (a known limitation).

    Parameters
    ----------
    text : str
        The text.

    Returns
    -------
    spans : list of (int, int)
        ``(start, end)`` character offsets, in order; ``text[start:end]`` is the
        sentence.

    Examples
    --------
    >>> from skconcepts._granularity import split_sentences
    >>> text = "It rained. Did it?  Yes!\\nThe end"
    >>> [text[s:e] for s, e in split_sentences(text)]
    ['It rained.', 'Did it?', 'Yes!', 'The end']
    """
    spans = []
    start = 0
    ends = [m.end() for m in _SENTENCE_END.finditer(text)] + [len(text)]
    for end in ends:
        s, e = _strip(text, start, end)
        if s < e and not text[s:e].isspace():
            spans.append((s, e))
        start = end
    return spans


def unit_index(
    granularity: str,
    text: str,
    offsets,
    special_mask,
    word_ids=None,
    *,
    exclude_special_tokens: bool = True,
) -> tuple[torch.Tensor, np.ndarray]:
    """Map the tokens of one text to granular units.

    Parameters
    ----------
    granularity : {"all_tokens", "token", "word", "sentence", "sample", "cls"}
        The unit (see the module documentation).
    text : str
        The text that was tokenized.
    offsets : sequence of (int, int)
        Character span of every real (non-padding) token, as a fast tokenizer
        returns with ``return_offsets_mapping=True``.
    special_mask : sequence of int or bool
        1 for special tokens ([CLS], [SEP], BOS, EOS), as returned with
        ``return_special_tokens_mask=True``. [UNK] is not special.
    word_ids : sequence of int or None, default=None
        The tokenizer's word id of every token (``encoding.word_ids()``);
        needed for ``"word"``.
    exclude_special_tokens : bool, default=True
        Give special tokens the id ``-1`` (no unit) at ``token``, ``word``,
        ``sentence`` and ``sample`` level.

    Returns
    -------
    unit_ids : torch.LongTensor of shape (n_tokens,)
        Unit of every token, numbered ``0 .. n_units - 1`` in order of first
        appearance; ``-1`` for tokens in no unit.
    spans : ndarray of shape (n_units, 2), dtype int64
        ``(start, end)`` character offsets of every unit, trimmed of white
        space at both ends. Special tokens span ``(0, 0)``.

    Raises
    ------
    ValueError
        For an unknown granularity, for ``"cls"`` when the first token is not
        special, and for ``"word"`` without ``word_ids``.

    Examples
    --------
    >>> from skconcepts._granularity import unit_index
    >>> text = "Hi there"
    >>> offsets = [(0, 0), (0, 2), (3, 8), (0, 0)]      # [CLS] hi there [SEP]
    >>> ids, spans = unit_index("sample", text, offsets, [1, 0, 0, 1])
    >>> ids.tolist(), spans.tolist()
    ([-1, 0, 0, -1], [[0, 8]])
    """
    offsets = np.asarray(offsets, dtype=np.int64).reshape(-1, 2)
    special = np.asarray(special_mask, dtype=bool).reshape(-1)
    n = len(offsets)
    if len(special) != n:
        raise ValueError(
            f"special_mask has {len(special)} entries but offsets has {n}; pass "
            "both for the same tokens."
        )
    excluded = special if exclude_special_tokens else np.zeros(n, dtype=bool)
    ids = np.full(n, -1, dtype=np.int64)
    spans: list[tuple[int, int]] = []

    if granularity in ("all_tokens", "token"):
        keep = np.ones(n, bool) if granularity == "all_tokens" else ~excluded
        ids[keep] = np.arange(int(keep.sum()))
        spans = [_strip(text, *offsets[i]) for i in np.flatnonzero(keep)]
    elif granularity == "cls":
        if n == 0 or not special[0]:
            raise ValueError(
                "granularity='cls' needs a leading special token ([CLS] or BOS), "
                "but this tokenizer does not add one; use granularity='sample' "
                "(e.g. with aggregation='last' for a causal model) instead."
            )
        ids[0] = 0
        spans = [_cover(text, offsets, special)]
    elif granularity == "sample":
        keep = ~excluded
        if not keep.any():  # e.g. the empty string: fall back to its specials
            keep = np.ones(n, bool)
        ids[keep] = 0
        spans = [_cover(text, offsets[keep], special[keep])]
    elif granularity in ("word", "sentence"):
        if granularity == "word":
            if word_ids is None:
                raise ValueError(
                    "granularity='word' needs the word ids of the tokens; pass "
                    "word_ids=encoding.word_ids() from a fast tokenizer."
                )
            keys = [None if w is None else ("word", w) for w in word_ids]
        else:
            keys = _sentence_keys(text, offsets)
        members: dict = {}
        tokens: list[list[int]] = []
        for i in range(n):
            if excluded[i]:
                continue
            key = ("tok", i) if special[i] or keys[i] is None else keys[i]
            if key not in members:
                members[key] = len(members)
                tokens.append([])
            ids[i] = members[key]
            tokens[ids[i]].append(i)
        spans = [_cover(text, offsets[t], special[t]) for t in tokens]
    else:
        raise ValueError(
            f"granularity={granularity!r} is not one of {list(GRANULARITIES)}."
        )
    spans_arr = np.asarray(spans, dtype=np.int64).reshape(-1, 2)
    return torch.from_numpy(ids), spans_arr


def _cover(text, offsets, special):
    """Smallest span covering the non-special tokens, trimmed; (0, 0) if none."""
    real = offsets[~special] if (~special).any() else offsets
    real = real[real[:, 1] > real[:, 0]]
    if len(real) == 0:
        return (0, 0)
    return _strip(text, int(real[:, 0].min()), int(real[:, 1].max()))


def _sentence_keys(text, offsets):
    """Sentence of every token: the one that holds its first non-blank char."""
    sentences = split_sentences(text) or [(0, len(text))]
    starts = [s for s, _ in sentences]
    keys = []
    for start, end in offsets:
        pos = _strip(text, int(start), int(end))[0] if end > start else int(start)
        keys.append(("sentence", max(bisect.bisect_right(starts, pos) - 1, 0)))
    return keys


def aggregate(
    hidden: torch.Tensor, unit_ids: torch.Tensor, n_units: int, aggregation: str
) -> torch.Tensor:
    """Aggregate token rows into one row per unit.

    Parameters
    ----------
    hidden : torch.Tensor of shape (n_tokens, d)
        Token activations.
    unit_ids : torch.LongTensor of shape (n_tokens,)
        Unit of every token in ``0 .. n_units - 1``; ``-1`` drops the token.
    n_units : int
        Number of units (rows of the result).
    aggregation : {"mean", "sum", "max", "min", "signed_max", "first", "last"}
        ``signed_max`` takes, per dimension, the value of largest magnitude
        (the positive one on a tie). ``first``/``last`` take the unit's first or
        last token in token order.

    Returns
    -------
    rows : torch.Tensor of shape (n_units, d)
        Same dtype and device as ``hidden``. A unit without tokens gets zeros.

    Examples
    --------
    >>> import torch
    >>> from skconcepts._granularity import aggregate
    >>> h = torch.tensor([[1.0, -4.0], [3.0, 2.0], [5.0, 5.0]])
    >>> aggregate(h, torch.tensor([0, 0, -1]), 1, "signed_max")
    tensor([[ 3., -4.]])
    """
    if aggregation not in AGGREGATIONS:
        raise ValueError(
            f"aggregation={aggregation!r} is not one of {list(AGGREGATIONS)}."
        )
    keep = unit_ids >= 0
    h = hidden[keep]  # (n_kept, d)
    u = unit_ids[keep].to(hidden.device)  # (n_kept,)
    d = hidden.shape[-1]
    out = hidden.new_zeros((n_units, d))
    if aggregation in ("mean", "sum"):
        out.index_add_(0, u, h)
        if aggregation == "mean":
            counts = torch.bincount(u, minlength=n_units).clamp(min=1)
            out /= counts.to(out.dtype)[:, None]
        return out
    if aggregation in ("first", "last"):
        pos = torch.arange(len(u), device=u.device)
        fill = len(u) if aggregation == "first" else -1
        reduce = "amin" if aggregation == "first" else "amax"
        pick = torch.full((n_units,), fill, dtype=torch.long, device=u.device)
        pick.scatter_reduce_(0, u, pos, reduce=reduce, include_self=True)
        present = (pick >= 0) & (pick < len(u))
        out[present] = h[pick[present]]
        return out
    index = u[:, None].expand_as(h)
    if aggregation in ("max", "signed_max"):
        hi = out.clone().scatter_reduce_(0, index, h, "amax", include_self=False)
        if aggregation == "max":
            return hi
    lo = out.clone().scatter_reduce_(0, index, h, "amin", include_self=False)
    if aggregation == "min":
        return lo
    return torch.where(hi.abs() >= lo.abs(), hi, lo)


def units_table(texts, spans, *, offset=0):
    """The units table of consecutive texts: which text and span every row covers.

    The one place that builds this table: ``SplitPointActivations.units`` and
    the shards of an activation store both use it.

    Parameters
    ----------
    texts : list of str
        The texts, in order.
    spans : list of ndarray of shape (n_units_i, 2)
        Per text, the ``(start, end)`` character span of each of its units (as
        :func:`unit_index` returns).
    offset : int, default=0
        Index of ``texts[0]`` in the whole corpus; the ``sample`` column counts
        from it.

    Returns
    -------
    units : pandas.DataFrame
        One row per unit, columns ``sample`` (index of the text, plus
        ``offset``), ``unit`` (index of the unit within its text), ``start``
        and ``end`` (int64 character offsets) and ``text``
        (``texts[i][start:end]``).

    Examples
    --------
    >>> import numpy as np
    >>> from skconcepts._granularity import units_table
    >>> units_table(["Hi there", "Yes"], [np.array([[0, 2], [3, 8]]),
    ...                                   np.array([[0, 3]])], offset=10)
       sample  unit  start  end   text
    0      10     0      0    2     Hi
    1      10     1      3    8  there
    2      11     0      0    3    Yes
    """
    counts = np.array([len(s) for s in spans], dtype=np.int64)
    if len(spans):
        flat = np.concatenate(spans).reshape(-1, 2).astype(np.int64, copy=False)
        unit = np.concatenate([np.arange(c) for c in counts])
    else:
        flat = np.zeros((0, 2), dtype=np.int64)
        unit = np.zeros(0, dtype=np.int64)
    local = np.repeat(np.arange(len(texts)), counts)
    return pd.DataFrame(
        {
            "sample": local + offset,
            "unit": unit,
            "start": flat[:, 0],
            "end": flat[:, 1],
            "text": [texts[i][s:e] for i, (s, e) in zip(local, flat)],
        }
    )
