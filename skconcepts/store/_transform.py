"""transform_store: the concept activations of a store, written to a store.

The activation store is streamed shard by shard through ``estimator.transform``;
each concept shard keeps the units of its activation shard (their files are
copied byte for byte), and an interrupted call resumes when rerun.
"""

from __future__ import annotations

import hashlib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from skconcepts.store._format import (
    _STORAGE,
    _check_dtype,
    _check_positive_int,
    _to_storage,
)
from skconcepts.store._reader import ActivationStore
from skconcepts.store._writer import _StoreWriter
from skconcepts.utils._progress import progress_bar
from skconcepts.utils._torch import to_numpy
from skconcepts.utils._validation import check_is_fitted

__all__ = ["transform_store"]


def _estimator_fingerprint(estimator, probe) -> dict:
    """Class and a hash of the outputs on a few rows (identifies the fit)."""
    C = np.ascontiguousarray(to_numpy(estimator.transform(probe)))
    return {
        "class": type(estimator).__name__,
        "n_features_out": int(C.shape[1]),
        "probe_sha256": hashlib.sha256(C.astype("<f4").tobytes()).hexdigest(),
    }


def transform_store(
    estimator,
    store,
    path,
    *,
    batch_size=None,
    dtype="float32",
    overwrite=False,
    progress=None,
):
    """Write the concept activations of a store to a new store, resumably.

    Streams the store shard by shard through ``estimator.transform`` and
    writes one concept shard per activation shard, with the same units (their
    files are copied); a background thread writes a shard while the next one
    is transformed. Like :func:`extract_to_store`, shards are published
    atomically and rerunning the same call after an interruption resumes it.

    Parameters
    ----------
    estimator : fitted transformer
        A fitted concept estimator (or a Pipeline ending in one).
    store : ActivationStore or str or os.PathLike
        The activations (a complete store).
    path : str or os.PathLike
        Folder of the concept store.
    batch_size : int or None, default=None
        Rows passed to ``transform`` at once; ``None`` passes a whole shard.
    dtype : {"float32", "float16", "bfloat16"}, default="float32"
        Stored dtype of the concept activations.
    overwrite : bool, default=False
        Replace an existing store at ``path`` instead of resuming it.
    progress : bool or None, default=None
        Show a tqdm progress bar over the rows.
        ``None`` (the default) shows it only when stderr is an interactive
        terminal or a notebook (tqdm's rule); ``True`` always, ``False`` never.

    Returns
    -------
    concept_store : ActivationStore
        One row per row of ``store``, ``n_concepts`` columns, the same units.

    Raises
    ------
    StoreMismatchError
        If ``path`` holds a store written from other activations or by another
        estimator.

    Examples
    --------
    >>> import tempfile
    >>> from sklearn.decomposition import PCA
    >>> from skconcepts import SplitPointActivations
    >>> from skconcepts.datasets import load_demo_corpus, load_embedded_model
    >>> from skconcepts.store import extract_to_store, transform_store
    >>> model, tokenizer = load_embedded_model()
    >>> acts = SplitPointActivations(model, tokenizer=tokenizer, split_point=0,
    ...                              batch_size=2)
    >>> texts = load_demo_corpus()[0][:6]
    >>> folder = tempfile.TemporaryDirectory()
    >>> store = extract_to_store(acts, texts, f"{folder.name}/acts", shard_rows=20)
    >>> pca = PCA(n_components=3).fit(store[:])
    >>> concepts = transform_store(pca, store, f"{folder.name}/concepts")
    >>> concepts.shape, concepts.n_shards
    ((59, 3), 2)
    >>> folder.cleanup()
    """
    if not isinstance(store, ActivationStore):
        store = ActivationStore(store)
    if not store.complete:
        raise ValueError(
            f"The ActivationStore at '{store.path}' is incomplete; finish its "
            "extraction before transforming it."
        )
    if Path(path).resolve() == store.path.resolve():
        raise ValueError(
            f"path={str(path)!r} is the folder of the store being transformed; "
            "write the concept store to another folder."
        )
    check_is_fitted(estimator)
    dtype = _check_dtype(dtype)
    if batch_size is not None:
        batch_size = _check_positive_int(batch_size, "batch_size")
    m = store.manifest
    probe = store[: min(len(store), 64)]
    shards_blob = "".join(s["files"]["data"]["sha256"] for s in m["shards"])
    header = {
        "kind": "concepts",
        "source": {
            "activations": m["source"],
            "activations_sha256": hashlib.sha256(shards_blob.encode()).hexdigest(),
            "estimator": _estimator_fingerprint(estimator, probe),
        },
        "dtype": dtype,
        "shard_rows": m["shard_rows"],
        "chunk_texts": m.get("chunk_texts"),
        "n_texts": m["n_texts"],
        "texts_sha256": m["texts_sha256"],
        "units_columns": m["units_columns"],
    }
    try:
        names = estimator.get_feature_names_out()
        header["feature_names"] = [str(n) for n in names]
    except (AttributeError, ValueError, TypeError):
        header["feature_names"] = None
    writer = _StoreWriter(
        path,
        header,
        compare=("kind", "source", "dtype", "n_texts", "texts_sha256"),
        overwrite=overwrite,
    )
    try:
        start = writer.next_shard
        pending = []
        # shards are written by one background thread while the next shard is
        # read and transformed (at most one write waits: memory stays bounded)
        with (
            ThreadPoolExecutor(max_workers=1) as pool,
            progress_bar(
                total=len(store),
                initial=int(store._offsets[start]),
                progress=progress,
                unit="row",
                desc="transform_store",
            ) as bar,
        ):
            for i in range(start, store.n_shards):
                lo, hi = int(store._offsets[i]), int(store._offsets[i + 1])
                X = store._read_rows(lo, hi)
                step = batch_size or max(hi - lo, 1)
                pieces = [
                    _to_storage(
                        to_numpy(estimator.transform(X[a : a + step])),
                        dtype,
                        check=True,
                    )
                    for a in range(0, hi - lo, step)
                ]
                if not pieces:  # an empty shard: zero rows of the concept width
                    width = header["source"]["estimator"]["n_features_out"]
                    pieces = [np.empty((0, width), dtype=_STORAGE[dtype])]
                shard = m["shards"][i]
                while pending:  # the previous shard is published first
                    pending.pop().result()
                pending.append(
                    pool.submit(
                        writer.write_shard,
                        pieces,
                        units_from={
                            r: store._file(i, r) for r in shard["files"] if r != "data"
                        },
                        texts=shard["texts"],
                        texts_sha256=shard["texts_sha256"],
                    )
                )
                bar.update(hi - lo)
            while pending:
                pending.pop().result()
        return writer.finish()
    finally:
        writer.release()
