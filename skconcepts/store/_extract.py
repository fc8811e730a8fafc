"""extract_to_store: the activations of texts, written to a store resumably.

The texts are cut into chunks of ``batch_size`` texts; each chunk is one call
of the public :meth:`SplitPointActivations.iter_batches
<skconcepts.SplitPointActivations.iter_batches>` (no cache), so its rows depend
only on its texts and a resumed run recomputes them bitwise. The manifest
records what identifies the call (model, split point, granularity, texts), so
a rerun with anything else is refused.
"""

from __future__ import annotations

import copy

import pandas as pd
import torch
from sklearn.exceptions import NotFittedError

from skconcepts._granularity import units_table
from skconcepts.store._format import (
    _check_dtype,
    _check_positive_int,
    _hash_texts,
    _resolve_shard_rows,
    _to_storage,
)
from skconcepts.store._ray import extract_to_store_ray
from skconcepts.store._reader import ActivationStore
from skconcepts.store._source import _extractor_source
from skconcepts.store._writer import _StoreWriter
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
):
    """Write the activations of texts to an on-disk store, resumably.

    The texts are processed in chunks of ``extractor.batch_size`` texts, and a
    shard is published once it holds at least ``shard_rows`` rows, so memory
    stays bounded by about one shard plus one batch. Each shard holds whole
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

    Returns
    -------
    store : ActivationStore
        The complete store.

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
    >>> folder.cleanup()
    """
    if engine == "ray":
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
        extractor = copy.copy(extractor)
        extractor.progress = False
    chunk = int(getattr(extractor, "batch_size", None) or 32)
    header = {
        "kind": "activations",
        "source": _extractor_source(extractor),
        "dtype": dtype,
        "shard_rows": shard_rows,
        "chunk_texts": chunk,
        "n_texts": len(texts),
        "texts_sha256": _hash_texts(texts),
    }
    writer = _StoreWriter(
        path,
        header,
        compare=("kind", "source", "dtype", "shard_rows", "n_texts", "texts_sha256"),
        overwrite=overwrite,
        texts=texts,
    )
    try:
        chunk = writer.manifest["chunk_texts"]  # a resumed store keeps its chunks
        start = writer.next_text
        if writer.manifest["complete"]:
            return ActivationStore(writer.path)

        pieces, frames, first, n_rows = [], [], start, 0
        limit = _resolve_shard_rows(shard_rows, writer.manifest["n_features"], dtype)

        def flush(stop):
            units = pd.concat(frames, ignore_index=True)
            writer.write_shard(
                pieces,
                units=units,
                texts=(first, stop),
                texts_sha256=_hash_texts(texts[first:stop]),
            )

        with progress_bar(
            total=len(texts),
            initial=start,
            progress=progress,
            unit="text",
            desc="extract_to_store",
        ) as bar:
            for a in range(start, len(texts), chunk):
                b = min(a + chunk, len(texts))
                chunk_pieces, units = _extract_chunk(extractor, texts[a:b], a, dtype)
                pieces += chunk_pieces
                frames.append(units)
                n_rows += len(units)
                if limit is None and pieces:
                    limit = _resolve_shard_rows(None, pieces[0].shape[1], dtype)
                if limit is not None and n_rows >= limit:
                    flush(b)
                    pieces, frames, first, n_rows = [], [], b, 0
                bar.update(b - a)
            if frames:
                flush(len(texts))
        return writer.finish()
    finally:
        writer.release()
