"""Write a store: create or resume it, publish shards and the manifest atomically.

:class:`_StoreWriter` is the one writer behind :func:`extract_to_store`,
:func:`transform_store` and :func:`write_array_store`: it compares a resumed
store with the call that resumes it, drops damaged shards, and publishes each
shard, then the manifest, through :func:`~skconcepts.store._format._write_atomic`.
"""

from __future__ import annotations

import hashlib
import json
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

import skconcepts
from skconcepts.exceptions import StoreCorruptedError, StoreMismatchError
from skconcepts.store._format import (
    _FORMAT,
    _FORMAT_VERSION,
    _MANIFEST,
    _SAMPLE,
    _STORAGE,
    _check_dtype,
    _check_positive_int,
    _copy_file,
    _fsync_dir,
    _hash_texts,
    _is_lock_file,
    _is_store_file,
    _new_generation,
    _read_manifest,
    _resolve_shard_rows,
    _StoreLock,
    _to_storage,
    _units_schema,
    _write_atomic,
    _write_units,
)
from skconcepts.store._reader import ActivationStore
from skconcepts.utils._progress import progress_bar

__all__ = ["write_array_store"]


class _StoreWriter:
    """Creates or resumes a store; publishes shards and the manifest atomically.

    ``header`` holds the fields that identify the call. A resumed store must have
    the same values for the keys of ``compare`` (else ``StoreMismatchError``);
    its shards are verified, and the ones from the first damaged shard on are
    dropped so that they are written again.
    """

    def __init__(self, path, header, *, compare, overwrite, texts=None):
        self.path = Path(path)
        if self.path.exists() and not self.path.is_dir():
            raise ValueError(
                f"path={str(path)!r} is a file; an ActivationStore is a folder."
            )
        if self.path.is_dir() and not (self.path / _MANIFEST).exists():
            foreign = [
                p.name
                for p in self.path.iterdir()
                if not (_is_store_file(p) or _is_lock_file(p))
            ]
            if foreign:
                raise ValueError(
                    f"path={str(path)!r} is a folder that is not an ActivationStore "
                    f"(it holds {sorted(foreign)[:3]}); choose a new or empty folder."
                )
        self.path.mkdir(parents=True, exist_ok=True)
        self._lock = _StoreLock(self.path).acquire()
        try:
            self._open(header, compare, overwrite, texts)
        except BaseException:
            self.release()
            raise

    def _open(self, header, compare, overwrite, texts):
        manifest = None
        if (self.path / _MANIFEST).exists():
            if overwrite:
                self._clear()
            else:
                manifest = _read_manifest(self.path)
        if manifest is None:
            manifest = {
                "format": _FORMAT,
                "format_version": _FORMAT_VERSION,
                "skconcepts_version": skconcepts.__version__,
                "generation": _new_generation(),
                "n_features": None,
                "units_columns": None,
                "feature_names": None,
                **header,
                "n_rows": 0,
                "complete": False,
                "shards": [],
            }
        else:
            _compare_headers(self.path, manifest, header, compare, texts)
            manifest = self._drop_damaged(manifest)
        self.manifest = manifest
        self._remove_strays()
        self._write_manifest()

    def release(self):
        """Release the writer lock (idempotent)."""
        self._lock.release()

    @property
    def next_text(self):
        shards = self.manifest["shards"]
        return shards[-1]["texts"][1] if shards else 0

    @property
    def next_shard(self):
        return len(self.manifest["shards"])

    def _clear(self):
        # the manifest first: a reader of the old store then sees it is gone
        (self.path / _MANIFEST).unlink(missing_ok=True)
        for p in self.path.iterdir():
            if _is_store_file(p):
                p.unlink()

    def _drop_damaged(self, manifest):
        """Drop the shards from the first missing, truncated or corrupted one on.

        Shards are published atomically, so an interruption never damages
        one; this catches files removed, cut or modified afterwards: the size
        and the sha256 of every kept file are checked, so that a rerun after a
        ``StoreCorruptedError`` rewrites the bad shard and the ones after it.
        """
        manifest["shards"] = list(manifest["shards"])
        store = ActivationStore._from_manifest(self.path, manifest, verify=True)
        for i, shard in enumerate(manifest["shards"]):
            try:
                for role in shard["files"]:
                    store._file(i, role)
                store._memmap(i)
            except StoreCorruptedError as exc:
                warnings.warn(
                    f"{exc} Rewriting shards {i} to {len(manifest['shards']) - 1}.",
                    RuntimeWarning,
                    stacklevel=4,
                )
                del manifest["shards"][i:]
                manifest["complete"] = False
                break
        manifest["n_rows"] = sum(s["rows"] for s in manifest["shards"])
        return manifest

    def _remove_strays(self):
        keep = {_MANIFEST}
        for shard in self.manifest["shards"]:
            keep.update(f["name"] for f in shard["files"].values())
        for p in self.path.iterdir():
            if _is_store_file(p) and p.name not in keep:
                p.unlink()

    def _write_manifest(self):
        text = json.dumps(self.manifest, indent=1, ensure_ascii=False) + "\n"
        _write_atomic(self.path / _MANIFEST, lambda fp: fp.write(text.encode()))
        _fsync_dir(self.path)

    def write_shard(self, pieces, *, texts, texts_sha256, units=None, units_from=None):
        """Publish one shard made of the row blocks ``pieces`` (stored dtype).

        The units come from a table (``units``) or are copied from the files of
        another store's shard (``units_from``: ``{role: path}``).
        """
        m = self.manifest
        i = len(m["shards"])
        rows = sum(len(p) for p in pieces)
        d = pieces[0].shape[1] if pieces else m["n_features"]
        if m["n_features"] is None:
            m["n_features"] = int(d)
        storage = np.dtype(_STORAGE[m["dtype"]])
        header = {"descr": storage.str, "fortran_order": False, "shape": (rows, d)}

        def write_data(fp):
            np.lib.format.write_array_header_1_0(fp, header)
            for p in pieces:
                fp.write(np.ascontiguousarray(p, dtype=storage).tobytes())

        name = f"shard-{i:05d}"
        files = {"data": _write_atomic(self.path / f"{name}.npy", write_data)}
        if units_from is not None:
            files["units"] = _write_atomic(
                self.path / f"{name}.units.npy", _copy_file(units_from["units"])
            )
            if "strings" in units_from:
                files["strings"] = _write_atomic(
                    self.path / f"{name}.units.jsonl", _copy_file(units_from["strings"])
                )
        else:
            if m["units_columns"] is None:
                m["units_columns"] = _units_schema(units)
            schema = m["units_columns"]
            files["units"] = _write_atomic(
                self.path / f"{name}.units.npy",
                lambda fp: _write_units(units, schema, fp),
            )
            if any(dt == "str" for _, dt in schema):
                files["strings"] = _write_atomic(
                    self.path / f"{name}.units.jsonl",
                    lambda fp: _write_units(units, schema, None, fp),
                )
        _fsync_dir(self.path)
        m["shards"].append(
            {
                "generation": m.get("generation"),
                "rows": int(rows),
                "texts": [int(texts[0]), int(texts[1])],
                "texts_sha256": texts_sha256,
                "files": files,
            }
        )
        m["n_rows"] = int(m["n_rows"] + rows)
        self._write_manifest()

    def publish_staged(
        self, staged, *, rows, n_features, units_columns, texts, texts_sha256
    ):
        """Publish a shard whose files another process wrote under staged names.

        ``staged`` maps each role (``"data"``, ``"units"``, ``"strings"``) to
        ``{"name", "bytes", "sha256"}`` of a complete, fsynced file in the
        store's folder under a temporary name; each is renamed to the next
        shard's name (``os.replace``, atomic), then the manifest lists it. A
        crash in between leaves files the next writer removes as strays.
        """
        m = self.manifest
        if m["n_features"] is None:
            m["n_features"] = int(n_features)
        if m["units_columns"] is None:
            m["units_columns"] = units_columns
        if int(n_features) != m["n_features"] or units_columns != m["units_columns"]:
            raise StoreCorruptedError(
                f"A worker wrote a shard of {n_features} features with units "
                f"{units_columns}; the store at '{self.path}' has "
                f"{m['n_features']} features and units {m['units_columns']}."
            )
        name = f"shard-{len(m['shards']):05d}"
        suffix = {"data": ".npy", "units": ".units.npy", "strings": ".units.jsonl"}
        files = {}
        for role, info in staged.items():
            final = f"{name}{suffix[role]}"
            (self.path / info["name"]).replace(self.path / final)
            files[role] = {**info, "name": final}
        _fsync_dir(self.path)
        m["shards"].append(
            {
                "generation": m.get("generation"),
                "rows": int(rows),
                "texts": [int(texts[0]), int(texts[1])],
                "texts_sha256": texts_sha256,
                "files": files,
            }
        )
        m["n_rows"] = int(m["n_rows"] + rows)
        self._write_manifest()

    def finish(self):
        self.manifest["complete"] = True
        self._write_manifest()
        return ActivationStore(self.path)


def _compare_headers(path, manifest, header, compare, texts):
    diffs = []
    for key in compare:
        old, new = manifest.get(key), header.get(key)
        if key == "texts_sha256":
            if old != new:
                diffs.append(_texts_diff(manifest, header, texts))
        elif key == "n_texts":
            continue  # reported with the texts
        elif isinstance(old, dict) and isinstance(new, dict):
            diffs += _dict_diff(old, new, prefix=key)
        elif old != new:
            diffs.append(f"{key} (store: {old!r}, this call: {new!r})")
    if diffs:
        raise StoreMismatchError(
            f"The ActivationStore at '{path}' was written by a different call; "
            "it differs in: " + "; ".join(diffs) + ". Write to another folder, or "
            "pass overwrite=True to replace the store."
        )


def _dict_diff(old, new, prefix):
    diffs = []
    for key in sorted(set(old) | set(new)):
        a, b = old.get(key), new.get(key)
        name = key if prefix in ("source",) else f"{prefix}.{key}"
        if isinstance(a, dict) and isinstance(b, dict):
            diffs += _dict_diff(a, b, name)
        elif a != b and (a is not None or b is not None):
            diffs.append(f"{name} (store: {a!r}, this call: {b!r})")
    return diffs


def _texts_diff(manifest, header, texts):
    msg = (
        f"texts (store: {manifest.get('n_texts')} texts, sha256 "
        f"{str(manifest.get('texts_sha256'))[:12]}…; this call: "
        f"{header.get('n_texts')} texts, sha256 {str(header.get('texts_sha256'))[:12]}…"
    )
    if texts is not None:
        for j, shard in enumerate(manifest["shards"]):
            a, b = shard["texts"]
            if b > len(texts) or _hash_texts(texts[a:b]) != shard["texts_sha256"]:
                msg += f"; first differing shard: shard-{j:05d} (texts {a} to {b - 1})"
                break
    return msg + ")"


def write_array_store(
    X, path, *, shard_rows=None, dtype="float32", overwrite=False, progress=None
):
    """Write an array of activations to an on-disk store, resumably.

    The rows are written in shards of ``shard_rows`` rows, read from ``X`` one
    shard at a time, so ``X`` may be a ``numpy.memmap`` larger than memory.
    Each row is its own unit (``units()`` has one column, ``sample``, the row
    number). Shards are published atomically, and rerunning the same call
    after an interruption resumes it, as for :func:`extract_to_store`.

    Parameters
    ----------
    X : ndarray or torch.Tensor of shape (n_rows, n_features)
        The activations.
    path : str or os.PathLike
        Folder of the store (created if needed).
    shard_rows : int or None, default=None
        Rows per shard (the last one may be shorter). ``None`` aims at
        ``DEFAULT_SHARD_BYTES`` (64 MiB) per shard.
    dtype : {"float32", "float16", "bfloat16"}, default="float32"
        Stored dtype.
    overwrite : bool, default=False
        Replace an existing store at ``path`` instead of resuming it.
    progress : bool or None, default=None
        Show a tqdm progress bar over the rows.
        ``None`` (the default) shows it only when stderr is an interactive
        terminal or a notebook (tqdm's rule); ``True`` always, ``False`` never.

    Returns
    -------
    store : ActivationStore
        The complete store, ``store[:]`` equal to ``X`` (in ``dtype``).

    Raises
    ------
    StoreMismatchError
        If ``path`` holds a store written from other data or with another
        dtype or shard size.

    Examples
    --------
    >>> import tempfile
    >>> import numpy as np
    >>> from skconcepts.store import write_array_store
    >>> X = np.random.default_rng(0).normal(size=(50, 4)).astype(np.float32)
    >>> folder = tempfile.TemporaryDirectory()
    >>> store = write_array_store(X, folder.name, shard_rows=20)
    >>> store.shape, store.n_shards, bool((store[:] == X).all())
    ((50, 4), 3, True)
    >>> folder.cleanup()
    """
    if getattr(X, "ndim", None) != 2:
        raise ValueError(
            f"X must be a 2-D array of shape (n_rows, n_features), got "
            f"{type(X).__name__} of shape {getattr(X, 'shape', None)}."
        )
    dtype = _check_dtype(dtype)
    if shard_rows is not None:
        shard_rows = _check_positive_int(shard_rows, "shard_rows")
    n, d = (int(v) for v in X.shape)
    limit = _resolve_shard_rows(shard_rows, d, dtype)
    digest = hashlib.sha256()
    for a in range(0, n, limit):
        digest.update(_to_storage(X[a : a + limit], "float32").tobytes())
    header = {
        "kind": "array",
        "source": {"array": {"shape": [n, d], "sha256": digest.hexdigest()}},
        "dtype": dtype,
        "shard_rows": shard_rows,
        "chunk_texts": None,
        "n_texts": n,
        "texts_sha256": None,
    }
    writer = _StoreWriter(
        path,
        header,
        compare=("kind", "source", "dtype", "shard_rows"),
        overwrite=overwrite,
    )
    try:
        if writer.manifest["n_features"] is None:
            writer.manifest["n_features"] = d
        start = writer.next_text
        with progress_bar(
            total=n,
            initial=start,
            progress=progress,
            unit="row",
            desc="write_array_store",
        ) as bar:
            for a in range(start, n, limit):
                b = min(a + limit, n)
                writer.write_shard(
                    [_to_storage(X[a:b], dtype, check=True)],
                    units=pd.DataFrame({_SAMPLE: np.arange(a, b, dtype=np.int64)}),
                    texts=(a, b),
                    texts_sha256=None,
                )
                bar.update(b - a)
        return writer.finish()
    finally:
        writer.release()


def _activations_writer(folder, source, dtype, shard_rows, chunk, texts, overwrite):
    """The writer of an activation store of ``texts`` (local or Ray extraction).

    One header for both engines, and the fields a rerun must match to resume
    (the chunk size is not one of them: a resumed store keeps its own).
    """
    header = {
        "kind": "activations",
        "source": source,
        "dtype": dtype,
        "shard_rows": shard_rows,
        "chunk_texts": chunk,
        "n_texts": len(texts),
        "texts_sha256": _hash_texts(texts),
    }
    return _StoreWriter(
        folder,
        header,
        compare=("kind", "source", "dtype", "shard_rows", "n_texts", "texts_sha256"),
        overwrite=overwrite,
        texts=texts,
    )
