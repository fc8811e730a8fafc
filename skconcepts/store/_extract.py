"""extract_to_store: the activations of texts, written to a store resumably.

The texts are cut into chunks of about one shard of rows (at least
``batch_size`` texts, at most 4096, see ``_chunk_texts``); each chunk is one call
of the public :meth:`SplitPointActivations.iter_batches
<skconcepts.SplitPointActivations.iter_batches>` (no cache), so its rows depend
only on its texts and a resumed run recomputes them bitwise. The manifest
records what identifies the call (model, split point, granularity, texts), so
a rerun with anything else is refused.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pandas as pd
import torch
from sklearn.exceptions import NotFittedError

from skconcepts._granularity import units_table
from skconcepts._split import resolve_split_modules
from skconcepts.store._format import (
    _check_dtype,
    _check_positive_int,
    _chunk_texts,
    _hash_texts,
    _resolve_shard_rows,
    _to_storage,
)
from skconcepts.store._ray import extract_to_store_ray
from skconcepts.store._reader import ActivationStore
from skconcepts.store._source import _extractor_source
from skconcepts.store._writer import _activations_writer
from skconcepts.utils._deprecation import renamed_kwarg
from skconcepts.utils._progress import progress_bar
from skconcepts.utils._validation import check_is_fitted, check_texts

__all__ = ["extract_to_store"]


def _extract_chunk(extractor, texts, offset, dtype):
    """Activations (stored dtype) and units table of consecutive texts.

    ``offset`` is the position of ``texts[0]`` in the whole corpus; the units'
    ``sample`` column counts from it. The chunk is one call of
    ``extractor.iter_batches`` (one length-sorted chunk, no cache), so the
    rows depend only on these texts: a resumed run recomputes them bitwise.
    """
    rows, spans = [], []
    for _, text_rows, text_spans in extractor.iter_batches(
        texts, use_cache=False, chunk_size=len(texts)
    ):
        rows += text_rows
        spans += text_spans
    units = units_table(texts, spans, offset=offset)
    return [_to_storage(torch.cat(rows), dtype, check=True)], units


@renamed_kwarg("activations", "extractor")
def extract_to_store(
    extractor,
    texts,
    path,
    *,
    shard_rows=None,
    dtype="float32",
    overwrite=False,
    progress=None,
    engine="local",
    split_points=None,
):
    """Write the activations of texts to an on-disk store, resumably.

    The texts are processed in chunks of about one shard of rows (at least
    ``extractor.batch_size`` texts, at most 4096; the extractor sorts a
    chunk's texts by length and batches them), and a shard is published once
    it holds at least ``shard_rows`` rows, so memory stays bounded by about one
    shard plus one chunk. Shards are written by a background thread while the
    next chunk is computed. Each shard holds whole
    texts and becomes visible only when complete; the manifest is rewritten
    atomically after each one. After an interruption (even ``SIGKILL``),
    rerunning the same call resumes after the last complete shard and gives a
    store bitwise equal to an uninterrupted run.

    Parameters
    ----------
    extractor : SplitPointActivations
        The extractor; fitted on ``texts`` first if it is not fitted. (Its
        keyword was ``activations=`` before; that spelling still works for one
        release, with a ``FutureWarning``.)
    texts : list of str
        The texts, in order.
    path : str or os.PathLike
        Folder of the store (created if needed).
    shard_rows : int or None, default=None
        Rows after which a shard is closed (a shard may exceed it by one chunk
        of texts). ``None`` aims at ``DEFAULT_SHARD_BYTES`` (64 MiB) per shard.
    dtype : {"float32", "float16", "bfloat16"}, default="float32"
        Stored dtype. bfloat16 is stored as its raw 16 bits and read back as
        float32.
    overwrite : bool, default=False
        Replace an existing store at ``path`` instead of resuming it.
    progress : bool or None, default=None
        Show a tqdm progress bar over the texts.
        ``None`` (the default) shows it only when stderr is an interactive
        terminal or a notebook (tqdm's rule); ``True`` always, ``False`` never.
    engine : {"local", "ray"}, default="local"
        ``"local"``: extract in this process. ``"ray"``: in a pool of Ray
        actors, one per CPU of the Ray cluster, through
        :func:`skconcepts.distributed.extract_to_store_ray` with its defaults
        (call it directly to choose workers, CPUs and GPUs); the store is the
        same.
    split_points : list of int or str or None, default=None
        Several split points read from the same forward passes (see
        :meth:`SplitPointActivations.transform_many
        <skconcepts.SplitPointActivations.transform_many>`): one store per
        split point is written in the subfolder of ``path`` named after its
        module (e.g. ``path/encoder.layer.3``), each equal to the store of a
        separate run at that split point. ``None``: one store at ``path``, at
        the extractor's ``split_point``. Duplicates or unknown split points
        raise :class:`~skconcepts.exceptions.SplitPointError`.

    Returns
    -------
    store : ActivationStore or dict
        The complete store; with ``split_points``, ``{split point: store}`` in
        the order given.

    Raises
    ------
    StoreMismatchError
        If ``path`` holds a store written with another model, split point,
        granularity, aggregation, dtype, shard size or other texts; the message
        names what differs.

    Examples
    --------
    >>> import tempfile
    >>> from skconcepts import SplitPointActivations
    >>> from skconcepts.datasets import load_demo_corpus, load_embedded_model
    >>> from skconcepts.store import extract_to_store
    >>> model, tokenizer = load_embedded_model()
    >>> acts = SplitPointActivations(model, tokenizer=tokenizer, split_point=0,
    ...                              batch_size=2)
    >>> texts = load_demo_corpus()[0][:6]
    >>> folder = tempfile.TemporaryDirectory()
    >>> store = extract_to_store(acts, texts, folder.name, shard_rows=20)
    >>> store.shape, store.n_shards
    ((59, 384), 2)
    >>> store.units().columns.tolist()
    ['sample', 'unit', 'start', 'end', 'text']
    >>> stores = extract_to_store(acts, texts, f"{folder.name}/many",
    ...                           split_points=[0, 2])
    >>> {k: v.shape for k, v in stores.items()}
    {0: (59, 384), 2: (59, 384)}
    >>> folder.cleanup()
    """
    if engine == "ray":
        if split_points is not None:
            raise ValueError(
                "split_points is not supported with engine='ray' yet; run "
                "extract_to_store_ray once per split point, or use engine='local'."
            )
        return extract_to_store_ray(
            extractor,
            texts,
            path,
            shard_rows=shard_rows,
            dtype=dtype,
            overwrite=overwrite,
            progress=progress,
        )
    if engine != "local":
        raise ValueError(f"engine={engine!r} is not supported; use 'local' or 'ray'.")
    texts = check_texts(texts)
    dtype = _check_dtype(dtype)
    if shard_rows is not None:
        shard_rows = _check_positive_int(shard_rows, "shard_rows")
    if not hasattr(extractor, "iter_batches"):
        raise TypeError(
            "extractor must be a SplitPointActivations, got "
            f"{type(extractor).__name__}; to store concept activations use "
            "transform_store(estimator, store, path)."
        )
    try:
        check_is_fitted(extractor)
    except NotFittedError:
        extractor.fit(texts)
    if getattr(extractor, "progress", False):  # one bar here, not one a chunk
        # a shallow copy of the attributes: copy.copy would go through the
        # pickling protocol, which drops (and reloads) the loaded model
        quiet = object.__new__(type(extractor))
        quiet.__dict__.update(extractor.__dict__)
        quiet.progress = False
        extractor = quiet
    if split_points is None:
        targets = [(None, extractor, Path(path))]
    else:
        resolved = resolve_split_modules(extractor.model_, split_points)
        targets = [
            (point, extractor._at(point, resolved=r), Path(path) / r[0])
            for point, r in zip(split_points, resolved)
        ]
    chunk = _chunk_texts(extractor, texts, shard_rows, dtype)
    writers = []
    try:
        for _, view, folder in targets:
            writers.append(
                _activations_writer(
                    folder,
                    _extractor_source(view),
                    dtype,
                    shard_rows,
                    chunk,
                    texts,
                    overwrite,
                )
            )
        _fill_stores(
            extractor,
            texts,
            writers,
            [point for point, _, _ in targets] if split_points is not None else None,
            shard_rows,
            dtype,
            progress,
        )
        stores = [
            ActivationStore(w.path) if w.manifest["complete"] else w.finish()
            for w in writers
        ]
    finally:
        for w in writers:
            w.release()
    if split_points is None:
        return stores[0]
    return {point: store for (point, _, _), store in zip(targets, stores)}


class _ShardBuilder:
    """Rows of one store collected until a shard is full, then published."""

    def __init__(self, writer, texts, shard_rows, dtype, submit):
        self.writer, self.texts, self.dtype = writer, texts, dtype
        # a complete store takes nothing more
        self.start = len(texts) if writer.manifest["complete"] else writer.next_text
        self.first = self.start
        self.limit = _resolve_shard_rows(
            shard_rows, writer.manifest["n_features"], dtype
        )
        self.pieces, self.frames, self.n_rows = [], [], 0
        self.submit = submit

    def add(self, pieces, units, a, b):
        """Add the rows of texts ``[a, b)`` (skipped if already stored)."""
        if a < self.start:
            return
        self.pieces += pieces
        self.frames.append(units)
        self.n_rows += len(units)
        if self.limit is None and self.pieces:
            self.limit = _resolve_shard_rows(None, self.pieces[0].shape[1], self.dtype)
        if self.limit is not None and self.n_rows >= self.limit:
            self.flush(b)

    def flush(self, stop):
        if not self.frames:
            return
        pieces, frames, first = self.pieces, self.frames, self.first
        self.pieces, self.frames, self.first, self.n_rows = [], [], stop, 0
        texts_sha256 = _hash_texts(self.texts[first:stop])

        def write():
            self.writer.write_shard(
                pieces,
                units=pd.concat(frames, ignore_index=True),
                texts=(first, stop),
                texts_sha256=texts_sha256,
            )

        self.submit(write)


def _fill_stores(extractor, texts, writers, points, shard_rows, dtype, progress):
    """Extract the texts once and write them to every (incomplete) writer.

    Shards are written by one background thread while the next chunk is
    computed (at most one write waits, so memory stays bounded).
    """
    chunks = {w.manifest["chunk_texts"] for w in writers}
    if len(chunks) > 1:
        raise ValueError(
            f"The stores at {[str(w.path) for w in writers]} were started with "
            f"different chunk sizes {sorted(chunks)}; pass overwrite=True to "
            "write them again."
        )
    chunk = chunks.pop()
    pending = []
    with ThreadPoolExecutor(max_workers=1) as pool:

        def submit(fn):
            while pending:  # at most one write in flight
                pending.pop(0).result()
            pending.append(pool.submit(fn))

        builders = [_ShardBuilder(w, texts, shard_rows, dtype, submit) for w in writers]
        start = min((b.start for b in builders), default=len(texts))
        with progress_bar(
            total=len(texts),
            initial=start,
            progress=progress,
            unit="text",
            desc="extract_to_store",
        ) as bar:
            for a in range(start, len(texts), chunk):
                b = min(a + chunk, len(texts))
                by_builder, units = _extract_chunk_many(
                    extractor, texts[a:b], a, dtype, points
                )
                for builder, pieces in zip(builders, by_builder):
                    builder.add(pieces, units, a, b)
                bar.update(b - a)
            for builder in builders:
                if builder.start < len(texts):
                    builder.flush(len(texts))
            while pending:
                pending.pop(0).result()


def _extract_chunk_many(extractor, texts, offset, dtype, points):
    """Rows per builder (stored dtype) and the units table of one chunk."""
    if points is None:
        pieces, units = _extract_chunk(extractor, texts, offset, dtype)
        return [pieces], units
    rows = {p: [] for p in points}
    spans = []
    for _, by_point, text_spans in extractor.iter_batches_many(
        texts, points, use_cache=False, chunk_size=len(texts)
    ):
        for p in points:
            rows[p] += by_point[p]
        spans += text_spans
    units = units_table(texts, spans, offset=offset)
    per_point = [[_to_storage(torch.cat(rows[p]), dtype, check=True)] for p in points]
    return per_point, units
