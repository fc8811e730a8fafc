"""ActivationStore: sharded on-disk activations with their units table.

A store is a folder::

    manifest.json             what wrote it, dtype, dims, the list of shards
    shard-00000.npy           activations (rows, n_features): float32, float16,
                              or bfloat16 kept as its raw uint16 bits
    shard-00000.units.npy     the units' numeric columns (a structured array)
    shard-00000.units.jsonl   the units' string columns, one JSON list a line
    shard-00001.npy ...

Every shard holds whole texts, so a shard boundary never splits a text. A shard
file becomes visible only once complete (written under a temporary name,
fsynced, then ``os.replace``-d), and the manifest, rewritten atomically after
each shard, lists it with its size and sha256. Interrupting
:func:`extract_to_store` therefore leaves a valid store of the shards written
so far, and rerunning the same call resumes after the last one; the result is
bitwise equal to an uninterrupted run.

:class:`ActivationStore` opens a store lazily (only the manifest is read),
memory-maps a shard when it is first needed, checks its size and sha256 then,
and streams reads shard by shard.
"""

from __future__ import annotations

import copy
import hashlib
import json
import operator
import os
import re
import warnings
from numbers import Integral
from pathlib import Path

import numpy as np

from skconcepts.exceptions import (
    SkconceptsError,
    StoreCorruptedError,
    StoreMismatchError,
)

__all__ = [
    "ActivationStore",
    "StoreTooLargeError",
    "extract_to_store",
    "transform_store",
    "write_array_store",
    "DEFAULT_SHARD_BYTES",
    "MEMORY_FRACTION",
]

#: target size of one shard of activations when ``shard_rows=None``
DEFAULT_SHARD_BYTES = 64 * 2**20
#: fraction of the available RAM that ``ActivationStore.to_numpy`` may fill
MEMORY_FRACTION = 0.25
#: concept estimators that can learn from a store batch by batch
STREAMING_ESTIMATORS = (
    "PCAConcepts (IncrementalPCA)",
    "KMeansConcepts (MiniBatchKMeans)",
    "NMFConcepts (online HALS)",
    "SemiNMFConcepts (online least squares)",
    "DictionaryLearningConcepts (MiniBatchDictionaryLearning)",
    "the SAE concepts (SAEConcepts, TopKSAEConcepts, BatchTopKSAEConcepts, "
    "JumpReLUSAEConcepts, MPSAEConcepts)",
)

_FORMAT = "skconcepts.ActivationStore"
_FORMAT_VERSION = 1
_MANIFEST = "manifest.json"
#: on-disk dtype of each stored dtype (bfloat16 as its raw bits)
_STORAGE = {"float32": "<f4", "float16": "<f2", "bfloat16": "<u2"}
_SHARD_FILE = re.compile(r"^\.?shard-\d+\.(npy|units\.npy|units\.jsonl)(\.tmp)?$")
_HASH_CHUNK = 1 << 22
#: parameters of the activations extractor that do not change the values
_RUNTIME_PARAMS = frozenset(
    {
        "batch_size",
        "max_tokens_per_batch",
        "sort_by_length",
        "cache",
        "device",
        "progress",
        "verbose",
        "n_jobs",
    }
)
#: name of the units column that holds the index of the text
_SAMPLE = "sample"


class StoreTooLargeError(SkconceptsError, MemoryError):
    """An :class:`ActivationStore` does not fit in the memory budget of a load."""


# ---------------------------------------------------------------- file helpers
class _HashingWriter:
    """File-like wrapper that hashes and counts what is written through it."""

    def __init__(self, f):
        self._f = f
        self.sha256 = hashlib.sha256()
        self.n_bytes = 0

    def write(self, data):
        self._f.write(data)
        self.sha256.update(data)
        self.n_bytes += len(memoryview(data).cast("B"))


def _write_atomic(path: Path, write) -> dict:
    """Write ``path`` through ``write(fp)`` under a temporary name, then publish it.

    Returns ``{"name", "bytes", "sha256"}`` of the file.
    """
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "wb") as f:
        fp = _HashingWriter(f)
        write(fp)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    return {"name": path.name, "bytes": fp.n_bytes, "sha256": fp.sha256.hexdigest()}


def _fsync_dir(path: Path):
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:  # pragma: no cover - e.g. Windows
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover
        pass
    finally:
        os.close(fd)


def _sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_HASH_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def _hash_texts(texts) -> str:
    """sha256 of an ordered list of texts (length-prefixed UTF-8)."""
    h = hashlib.sha256()
    for t in texts:
        b = t.encode("utf-8")
        h.update(len(b).to_bytes(8, "little"))
        h.update(b)
    return h.hexdigest()


def _available_memory() -> int:
    """Bytes of RAM available now (``MemAvailable``; 4 GiB if unknown)."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (AttributeError, ValueError, OSError):  # pragma: no cover
        return 4 * 2**30


def _fmt_bytes(n) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return f"{n:.1f} {unit}" if unit != "B" else f"{n} B"
        n /= 1024
    return ""  # pragma: no cover


# ------------------------------------------------------------- dtype helpers
def _check_dtype(dtype) -> str:
    key = str(dtype).replace("torch.", "")
    if key not in _STORAGE:
        raise ValueError(
            f"dtype={dtype!r} is not supported by ActivationStore; use one of "
            f"{sorted(_STORAGE)}."
        )
    return key


def _to_storage(x, dtype: str) -> np.ndarray:
    """Rows (numpy array or torch tensor) in the on-disk dtype, C-contiguous."""
    if type(x).__module__.startswith("torch"):
        import torch

        x = x.detach()
        if dtype == "bfloat16":
            bits = x.to(torch.bfloat16).contiguous().view(torch.int16)
            return bits.cpu().numpy().view("<u2")
        target = torch.float16 if dtype == "float16" else torch.float32
        return np.ascontiguousarray(x.to(target).cpu().numpy(), _STORAGE[dtype])
    x = np.asarray(x)
    if dtype == "bfloat16":
        import torch

        t = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))
        return t.to(torch.bfloat16).view(torch.int16).numpy().view("<u2")
    return np.ascontiguousarray(x, dtype=_STORAGE[dtype])


def _decode_into(out: np.ndarray, raw: np.ndarray, dtype: str):
    """Write stored rows ``raw`` into the float32 array ``out``."""
    if dtype == "bfloat16":
        out[...] = (raw.astype(np.uint32) << 16).view(np.float32)
    else:
        out[...] = raw


def _decode(raw: np.ndarray, dtype: str) -> np.ndarray:
    out = np.empty(raw.shape, dtype=np.float32)
    _decode_into(out, raw, dtype)
    return out


# ---------------------------------------------------------------- units I/O
def _units_schema(units) -> list:
    """``[[name, dtype]]`` of a units table; ``"str"`` for text columns."""
    schema = []
    for name in units.columns:
        dt = units[name].dtype
        if dt.kind in "iub":
            schema.append([str(name), np.dtype(dt).newbyteorder("<").str])
        elif dt.kind == "f":
            schema.append([str(name), "<f8"])
        else:
            schema.append([str(name), "str"])
    return schema


def _write_units(units, schema, fp_numeric, fp_strings=None):
    """Write a units table: numeric columns to a .npy, strings to JSON lines."""
    numeric = [(n, dt) for n, dt in schema if dt != "str"]
    strings = [n for n, dt in schema if dt == "str"]
    arr = np.empty(len(units), dtype=np.dtype([(n, dt) for n, dt in numeric]))
    for n, _ in numeric:
        arr[n] = units[n].to_numpy()
    if fp_numeric is not None:
        np.lib.format.write_array(fp_numeric, arr, allow_pickle=False)
    if fp_strings is not None:
        cols = [units[n].tolist() for n in strings]
        lines = [json.dumps(list(row), ensure_ascii=False) for row in zip(*cols)]
        if lines:
            fp_strings.write(("\n".join(lines) + "\n").encode("utf-8"))


def _copy_file(src: Path):
    def write(fp):
        with open(src, "rb") as f:
            while chunk := f.read(_HASH_CHUNK):
                fp.write(chunk)

    return write


# ------------------------------------------------------------------ reading
class ActivationStore:
    """Activations stored on disk in shards, read lazily and streamed.

    A store is written by :func:`extract_to_store` (activations of a
    :class:`~skconcepts.SplitPointActivations`) or :func:`transform_store`
    (concept activations of a fitted estimator). Opening it reads only the
    manifest; a shard is memory-mapped when first needed, and its size and
    sha256 are checked then (once per shard). Every read returns float32.

    Concept estimators accept a store as ``X``. Those with ``partial_fit``
    stream it in ``fit``; the others load it with :meth:`to_numpy`, which
    refuses when it does not fit in their memory budget and names the
    estimators that stream it instead. ``transform`` and ``score`` of a store
    read it batch by batch, and ``transform_to_store`` writes the concept
    activations to another store. :func:`write_array_store` makes a store of
    an in-memory (or memory-mapped) array.

    Parameters
    ----------
    path : str or os.PathLike
        The folder of the store.
    verify : bool, default=True
        Check the sha256 of each shard file on its first read. The cheap size and
        shape checks are always made.
    allow_incomplete : bool, default=False
        Open a store whose extraction was interrupted, with the shards written
        so far. By default such a store is refused, since it lacks texts.

    Attributes
    ----------
    path : pathlib.Path
        The folder of the store.
    manifest : dict
        The parsed ``manifest.json``: source (model, split point, granularity,
        aggregation), dtype, dims and the shard list with checksums.
    n_features : int
        Number of columns (``d_model``, or ``n_concepts`` for a concept store).
    n_shards : int
        Number of shards.
    shape : tuple of int
        ``(n_rows, n_features)``.
    dtype : str
        Stored dtype: ``"float32"``, ``"float16"`` or ``"bfloat16"``.

    See Also
    --------
    extract_to_store : Write the activations of texts into a store.
    transform_store : Write the concept activations of a store into a store.

    Examples
    --------
    >>> import tempfile
    >>> from skconcepts import SplitPointActivations
    >>> from skconcepts.datasets import load_demo_corpus
    >>> acts = SplitPointActivations(split_point=1, batch_size=4).fit()
    >>> texts = load_demo_corpus()[0][:8]
    >>> folder = tempfile.TemporaryDirectory()
    >>> store = acts.transform_to_store(texts, folder.name, shard_rows=30)
    >>> store.shape, store.n_shards > 1
    ((79, 384), True)
    >>> [X.shape for X in store.iter_batches(32)]
    [(32, 384), (32, 384), (15, 384)]
    >>> store[30:40].dtype
    dtype('float32')
    >>> folder.cleanup()
    """

    def __init__(self, path, *, verify=True, allow_incomplete=False):
        self.path = Path(path)
        self.verify = verify
        self.manifest = _read_manifest(self.path)
        if not self.manifest["complete"] and not allow_incomplete:
            m = self.manifest
            done = m["shards"][-1]["texts"][1] if m["shards"] else 0
            raise ValueError(
                f"The ActivationStore at '{self.path}' is incomplete: its "
                f"extraction stopped after {len(m['shards'])} shards ({done} of "
                f"{m['n_texts']} texts). Rerun the same extract_to_store call to "
                "finish it, or open it with allow_incomplete=True."
            )
        self._index()

    @classmethod
    def _from_manifest(cls, path, manifest, *, verify=True):
        """A store over an in-memory manifest (used by the writer)."""
        store = cls.__new__(cls)
        store.path, store.verify, store.manifest = Path(path), verify, manifest
        store._index()
        return store

    def _index(self):
        self._shards = self.manifest["shards"]
        self._offsets = np.cumsum([0] + [s["rows"] for s in self._shards])
        self._verified = set()

    # ---------------------------------------------------------- properties
    @property
    def n_features(self):
        return self.manifest["n_features"]

    @property
    def n_shards(self):
        return len(self._shards)

    @property
    def shape(self):
        return (len(self), self.n_features)

    @property
    def dtype(self):
        return self.manifest["dtype"]

    @property
    def complete(self):
        """Whether the extraction that wrote the store finished."""
        return self.manifest["complete"]

    @property
    def feature_names(self):
        """Names of the columns (concept stores), or ``None``."""
        return self.manifest.get("feature_names")

    def __len__(self):
        return int(self._offsets[-1])

    def __repr__(self):
        n, d = self.shape
        return (
            f"ActivationStore('{self.path}', rows={n}, n_features={d}, "
            f"dtype={self.dtype!r}, shards={self.n_shards})"
        )

    # -------------------------------------------------------- shard access
    def _file(self, i, role) -> Path:
        """The checked path of file ``role`` of shard ``i``."""
        info = self._shards[i]["files"][role]
        path = self.path / info["name"]
        if not path.is_file():
            raise StoreCorruptedError(
                f"Shard file '{path}' is missing. Rerun the extract_to_store (or "
                "transform_store) call that wrote the store to rewrite it."
            )
        size = path.stat().st_size
        if size != info["bytes"]:
            raise StoreCorruptedError(
                f"Shard file '{path}' has {size} bytes but the manifest records "
                f"{info['bytes']}: it is truncated or was modified. Rerun the call "
                "that wrote the store to rewrite it."
            )
        if self.verify and (i, role) not in self._verified:
            digest = _sha256_file(path)
            if digest != info["sha256"]:
                raise StoreCorruptedError(
                    f"Shard file '{path}' fails its checksum (sha256 {digest[:12]}…, "
                    f"manifest {info['sha256'][:12]}…): it is corrupted. Rerun "
                    "the call that wrote the store to rewrite it."
                )
            self._verified.add((i, role))
        return path

    def _memmap(self, i) -> np.ndarray:
        """Shard ``i`` as a read-only memmap in its stored dtype."""
        path = self._file(i, "data")
        try:
            mm = np.load(path, mmap_mode="r", allow_pickle=False)
        except (ValueError, OSError) as exc:
            raise StoreCorruptedError(
                f"Shard file '{path}' is not a readable .npy file ({exc})."
            ) from exc
        expected = (self._shards[i]["rows"], self.n_features)
        if mm.shape != expected or mm.dtype != np.dtype(_STORAGE[self.dtype]):
            raise StoreCorruptedError(
                f"Shard file '{path}' holds {mm.dtype} rows of shape {mm.shape}, "
                f"but the manifest expects {np.dtype(_STORAGE[self.dtype])} of "
                f"shape {expected}."
            )
        return mm

    def _shard_units(self, i):
        """The units table of shard ``i`` (index: global row numbers)."""
        import pandas as pd

        schema = self.manifest["units_columns"]
        arr = np.load(self._file(i, "units"), allow_pickle=False)
        rows = self._shards[i]["rows"]
        if arr.shape != (rows,):
            raise StoreCorruptedError(
                f"Shard file '{self.path / self._shards[i]['files']['units']['name']}'"
                f" holds {arr.shape[0]} units but the shard has {rows} rows."
            )
        strings = [n for n, dt in schema if dt == "str"]
        values = []
        if strings:
            path = self._file(i, "strings")
            with open(path, encoding="utf-8") as f:
                values = [json.loads(line) for line in f]
            if len(values) != rows:
                raise StoreCorruptedError(
                    f"Shard file '{path}' holds {len(values)} lines but the shard "
                    f"has {rows} rows."
                )
        cols = {}
        for n, dt in schema:
            if dt == "str":
                j = strings.index(n)
                cols[n] = [v[j] for v in values]
            else:
                cols[n] = arr[n].astype(np.dtype(dt).newbyteorder("="), copy=False)
        start = int(self._offsets[i])
        return pd.DataFrame(cols, index=pd.RangeIndex(start, start + rows))

    def _read_rows(self, start, stop) -> np.ndarray:
        """Rows ``start:stop`` as float32, across shard boundaries."""
        out = np.empty((stop - start, self.n_features), dtype=np.float32)
        first = int(np.searchsorted(self._offsets, start, side="right")) - 1
        pos = start
        for i in range(max(first, 0), self.n_shards):
            if pos >= stop:
                break
            lo, hi = int(self._offsets[i]), int(self._offsets[i + 1])
            if hi <= pos:
                continue
            end = min(stop, hi)
            _decode_into(
                out[pos - start : end - start],
                self._memmap(i)[pos - lo : end - lo],
                self.dtype,
            )
            pos = end
        return out

    def _take(self, idx) -> np.ndarray:
        """Rows at the integer positions ``idx`` (any order) as float32."""
        out = np.empty((len(idx), self.n_features), dtype=np.float32)
        owner = np.searchsorted(self._offsets, idx, side="right") - 1
        for i in np.unique(owner):
            mask = owner == i
            local = idx[mask] - self._offsets[i]
            out[mask] = _decode(self._memmap(int(i))[local], self.dtype)
        return out

    # --------------------------------------------------------------- reads
    def __getitem__(self, key):
        """Rows as a float32 array: ``store[i]``, ``store[a:b]``, ``store[idx]``.

        Slices and index arrays may cross shard boundaries; a tuple key indexes
        the rows first, then the columns (``store[a:b, :10]``).
        """
        if isinstance(key, tuple):
            rows, *cols = key
            return self[rows][(slice(None), *cols)]
        n = len(self)
        if isinstance(key, Integral) and not isinstance(key, bool):
            i = operator.index(key)
            if not -n <= i < n:
                raise IndexError(f"row {key} is out of range for a store of {n} rows.")
            i %= n
            return self._read_rows(i, i + 1)[0]
        if isinstance(key, slice):
            start, stop, step = key.indices(n)
            if step == 1:
                return self._read_rows(start, max(start, stop))
            return self._take(np.arange(start, stop, step))
        idx = np.asarray(key)
        if idx.dtype == bool:
            if idx.shape != (n,):
                raise IndexError(
                    f"boolean index of shape {idx.shape} does not match the "
                    f"store's {n} rows."
                )
            idx = np.flatnonzero(idx)
        elif idx.dtype.kind not in "iu" and idx.size:
            raise TypeError(
                f"cannot index an ActivationStore with {type(key).__name__} of "
                f"dtype {idx.dtype}; use an int, a slice, or an integer or "
                "boolean array."
            )
        idx = idx.astype(np.int64).reshape(-1)
        if idx.size and (idx.min() < -n or idx.max() >= n):
            raise IndexError(
                f"row indices must lie in [-{n}, {n}) for a store of {n} rows."
            )
        return self._take(np.where(idx < 0, idx + n, idx))

    def __array__(self, dtype=None, copy=None):
        X = self.to_numpy()
        return X if dtype is None else X.astype(dtype, copy=False)

    def iter_batches(self, batch_size=1024, *, shuffle=False, seed=None):
        """Stream the rows in float32 batches, shard by shard.

        Parameters
        ----------
        batch_size : int, default=1024
            Rows per batch; the last batch may be smaller. Batches span shard
            boundaries.
        shuffle : bool, default=False
            Visit the shards in a random order and the rows of each shard in a
            random order. Memory stays bounded by one shard.
        seed : int, numpy.random.Generator or None, default=None
            Seed of the shuffle; the same seed gives the same batches.

        Yields
        ------
        X : ndarray of shape (n_rows, n_features), dtype float32
            A batch of activations (a fresh array the caller may modify).
        """
        batch_size = _check_positive_int(batch_size, "batch_size")
        rng = np.random.default_rng(seed) if shuffle else None
        order = rng.permutation(self.n_shards) if shuffle else range(self.n_shards)

        def readers():
            for i in order:
                i = int(i)
                rows = self._shards[i]["rows"]
                if rows == 0:
                    continue
                if shuffle:
                    X = self._read_rows(
                        int(self._offsets[i]), int(self._offsets[i + 1])
                    )
                    perm = rng.permutation(rows)
                    yield rows, lambda a, b, X=X, p=perm: X[p[a:b]]
                else:
                    mm = self._memmap(i)
                    yield rows, lambda a, b, mm=mm: _decode(mm[a:b], self.dtype)

        yield from _rebatch(readers(), batch_size, np.concatenate)

    def iter_units(self, batch_size=None):
        """Stream the units table, per shard or in batches of rows.

        Parameters
        ----------
        batch_size : int or None, default=None
            ``None`` yields one table per shard; an int yields the same row
            batches as ``iter_batches(batch_size)`` (without shuffling).

        Yields
        ------
        units : pandas.DataFrame
            Which text and span each row comes from; the index holds the
            global row numbers.
        """
        import pandas as pd

        if batch_size is None:
            for i in range(self.n_shards):
                yield self._shard_units(i)
            return
        batch_size = _check_positive_int(batch_size, "batch_size")

        def readers():
            for i in range(self.n_shards):
                units = self._shard_units(i)
                yield len(units), lambda a, b, u=units: u.iloc[a:b]

        yield from _rebatch(readers(), batch_size, pd.concat)

    def units(self):
        """The whole units table, one row per activation row.

        Returns
        -------
        units : pandas.DataFrame
            Same table as ``SplitPointActivations.units(texts)`` of the texts the
            store was extracted from.
        """
        import pandas as pd

        frames = list(self.iter_units())
        if not frames:
            return pd.DataFrame(
                {n: [] for n, _ in self.manifest.get("units_columns") or []}
            )
        return pd.concat(frames).reset_index(drop=True)

    def to_numpy(self, max_bytes=None, estimator=None):
        """Load every row into one float32 array, if it fits the memory budget.

        Parameters
        ----------
        max_bytes : int or None, default=None
            Largest array (in bytes) to allocate. ``None`` allows
            ``MEMORY_FRACTION`` (25%) of the RAM available now.
        estimator : str or None, default=None
            Name of the estimator that asks, for the error message.

        Returns
        -------
        X : ndarray of shape (n_rows, n_features), dtype float32
            All activations.

        Raises
        ------
        StoreTooLargeError
            A ``MemoryError`` raised before allocating when the array needs more
            than ``max_bytes``; its message gives the size needed and the
            estimators that stream the store instead.
        """
        n, d = self.shape
        needed = n * d * 4
        if max_bytes is None:
            budget = int(MEMORY_FRACTION * _available_memory())
            origin = f"{MEMORY_FRACTION:.0%} of the available RAM"
        else:
            budget = int(max_bytes)
            origin = f"max_bytes={max_bytes!r}"
        if needed > budget:
            who = f"{estimator} needs" if estimator else "to_numpy needs"
            raise StoreTooLargeError(
                f"The ActivationStore at '{self.path}' ({n} rows x {d} features) "
                f"does not fit in memory: {who} {needed} bytes "
                f"({_fmt_bytes(needed)}) of float32 but the budget is {budget} "
                f"bytes ({_fmt_bytes(budget)}, {origin}). Raise the budget (pass "
                "max_bytes=..., or set the estimator's max_bytes), or use an "
                "estimator whose fit streams the store batch by batch (fit(store) "
                "or partial_fit): " + ", ".join(STREAMING_ESTIMATORS) + "."
            )
        return self._read_rows(0, n)

    def verify_all(self):
        """Check the size and sha256 of every file of every shard now.

        Raises
        ------
        StoreCorruptedError
            Naming the first shard file that is missing, truncated or corrupted.
        """
        for i, shard in enumerate(self._shards):
            for role in shard["files"]:
                self._file(i, role)
            self._memmap(i)


def _rebatch(readers, batch_size, concat):
    """Cut a stream of ``(length, get(a, b))`` readers into equal batches."""
    buf, n = [], 0
    for length, get in readers:
        pos = 0
        while pos < length:
            take = min(batch_size - n, length - pos)
            buf.append(get(pos, pos + take))
            n += take
            pos += take
            if n == batch_size:
                yield buf[0] if len(buf) == 1 else concat(buf)
                buf, n = [], 0
    if n:
        yield buf[0] if len(buf) == 1 else concat(buf)


def _check_positive_int(value, name):
    if not isinstance(value, Integral) or isinstance(value, bool) or value < 1:
        raise ValueError(f"{name}={value!r} must be an integer >= 1.")
    return int(value)


def _read_manifest(path: Path) -> dict:
    file = path / _MANIFEST
    if not file.is_file():
        raise FileNotFoundError(
            f"No ActivationStore at '{path}': '{_MANIFEST}' is missing. Write one "
            "with extract_to_store (or SplitPointActivations.transform_to_store)."
        )
    try:
        manifest = json.loads(file.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as exc:
        raise StoreCorruptedError(f"The manifest '{file}' is not valid JSON: {exc}")
    if manifest.get("format") != _FORMAT:
        raise StoreCorruptedError(
            f"'{file}' is not the manifest of an ActivationStore (format="
            f"{manifest.get('format')!r})."
        )
    if manifest.get("format_version", 0) > _FORMAT_VERSION:
        raise StoreCorruptedError(
            f"The store at '{path}' has format version {manifest['format_version']};"
            f" this skconcepts reads up to {_FORMAT_VERSION}: upgrade skconcepts."
        )
    return manifest


# ------------------------------------------------------------------ writing
class _StoreWriter:
    """Creates or resumes a store; publishes shards and the manifest atomically.

    ``header`` holds the fields that identify the call. A resumed store must have
    the same values for the keys of ``compare`` (else ``StoreMismatchError``);
    its shards are verified, and the ones from the first damaged shard on are
    dropped so that they are written again.
    """

    def __init__(self, path, header, *, compare, overwrite, texts=None):
        from skconcepts import __version__

        self.path = Path(path)
        if self.path.exists() and not self.path.is_dir():
            raise ValueError(
                f"path={str(path)!r} is a file; an ActivationStore is a folder."
            )
        manifest = None
        if (self.path / _MANIFEST).exists():
            if overwrite:
                self._clear()
            else:
                manifest = _read_manifest(self.path)
        elif self.path.is_dir():
            foreign = [p.name for p in self.path.iterdir() if not _is_store_file(p)]
            if foreign:
                raise ValueError(
                    f"path={str(path)!r} is a folder that is not an ActivationStore "
                    f"(it holds {sorted(foreign)[:3]}); choose a new or empty folder."
                )
        self.path.mkdir(parents=True, exist_ok=True)
        if manifest is None:
            manifest = {
                "format": _FORMAT,
                "format_version": _FORMAT_VERSION,
                "skconcepts_version": __version__,
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

    @property
    def next_text(self):
        shards = self.manifest["shards"]
        return shards[-1]["texts"][1] if shards else 0

    @property
    def next_shard(self):
        return len(self.manifest["shards"])

    def _clear(self):
        for p in self.path.iterdir():
            if _is_store_file(p):
                p.unlink()

    def _drop_damaged(self, manifest):
        """Drop the shards from the first missing or truncated one on.

        Shards are published atomically, so an interruption never damages
        one; this catches files removed or cut afterwards, cheaply (sizes
        only; checksums are verified when the shards are read).
        """
        manifest["shards"] = list(manifest["shards"])
        store = ActivationStore._from_manifest(self.path, manifest, verify=False)
        for i, shard in enumerate(manifest["shards"]):
            try:
                for role in shard["files"]:
                    store._file(i, role)
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


def _is_store_file(p: Path) -> bool:
    return p.name in (_MANIFEST, f".{_MANIFEST}.tmp") or bool(_SHARD_FILE.match(p.name))


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


# ------------------------------------------------------------- extraction
def _jsonable(value):
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if type(value).__module__ == "torch" and type(value).__name__ == "dtype":
        return str(value).replace("torch.", "")
    if isinstance(value, np.generic):
        return value.item()
    return f"<{type(value).__name__}>"


def _model_identity(activations) -> dict:
    """Name, class, config hash and a weight fingerprint of the loaded model."""
    params = activations.get_params(deep=False)
    given = params.get("model")
    model = getattr(activations, "model_", None)
    if model is None:
        model = given
    info = {"name": given if isinstance(given, str) else None}
    if model is None or isinstance(model, str):
        return info
    info["name"] = info["name"] or getattr(model, "name_or_path", None) or None
    info["class"] = type(model).__name__
    config = getattr(model, "config", None)
    if config is not None:
        conf = {
            k: v
            for k, v in config.to_dict().items()
            if k
            not in ("_name_or_path", "transformers_version", "dtype", "torch_dtype")
        }
        blob = json.dumps(conf, sort_keys=True, default=str).encode()
        info["config_sha256"] = hashlib.sha256(blob).hexdigest()
    named = getattr(model, "named_parameters", None)
    if named is not None:
        import torch

        h = hashlib.sha256()
        with torch.no_grad():
            for name, p in named():
                h.update(name.encode())
                h.update(str(tuple(p.shape)).encode())
                sample = p.detach().reshape(-1)[:64].to("cpu", torch.float32)
                h.update(sample.numpy().tobytes())
        info["weights_fingerprint"] = h.hexdigest()
    return info


def _activations_source(activations) -> dict:
    params = activations.get_params(deep=False)
    named = ("model", "tokenizer", "split_point", "granularity", "aggregation")
    return {
        "model": _model_identity(activations),
        "split_point": _jsonable(params.get("split_point")),
        "split_module": getattr(activations, "split_module_name_", None),
        "granularity": _jsonable(params.get("granularity")),
        "aggregation": _jsonable(params.get("aggregation")),
        "params": {
            k: _jsonable(v)
            for k, v in sorted(params.items())
            if k not in named and k not in _RUNTIME_PARAMS
        },
    }


def _extract_chunk(activations, texts, offset, dtype):
    """Activations (stored dtype) and units table of consecutive texts.

    ``offset`` is the position of ``texts[0]`` in the whole corpus; the units'
    ``sample`` column counts from it. The chunk is one call of
    ``activations.iter_batches`` (one length-sorted chunk, no cache), so the
    rows depend only on these texts: a resumed run recomputes them bitwise.
    """
    import pandas as pd

    rows, spans = [], []
    for _, text_rows, text_spans in activations.iter_batches(
        texts, use_cache=False, chunk_size=len(texts)
    ):
        rows += text_rows
        spans += text_spans
    counts = np.array([len(s) for s in spans], dtype=np.int64)
    flat = np.concatenate(spans).reshape(-1, 2).astype(np.int64, copy=False)
    local = np.repeat(np.arange(len(texts)), counts)
    units = pd.DataFrame(
        {
            _SAMPLE: local + offset,
            "unit": np.concatenate([np.arange(c) for c in counts]),
            "start": flat[:, 0],
            "end": flat[:, 1],
            "text": [texts[i][s:e] for i, (s, e) in zip(local, flat)],
        }
    )
    import torch

    return [_to_storage(torch.cat(rows), dtype)], units


def extract_to_store(
    activations,
    texts,
    path,
    *,
    shard_rows=None,
    dtype="float32",
    overwrite=False,
    progress=False,
):
    """Write the activations of texts to an on-disk store, resumably.

    The texts are processed in chunks of ``activations.batch_size`` texts, and a
    shard is published once it holds at least ``shard_rows`` rows, so memory
    stays bounded by about one shard plus one batch. Each shard holds whole
    texts and becomes visible only when complete; the manifest is rewritten
    atomically after each one. After an interruption (even ``SIGKILL``),
    rerunning the same call resumes after the last complete shard and gives a
    store bitwise equal to an uninterrupted run.

    Parameters
    ----------
    activations : SplitPointActivations
        The extractor; fitted on ``texts`` first if it is not fitted.
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
    progress : bool, default=False
        Show a tqdm progress bar over the texts.

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
    from sklearn.exceptions import NotFittedError
    from sklearn.utils.validation import check_is_fitted
    from tqdm.auto import tqdm

    from skconcepts.utils._validation import check_texts

    texts = check_texts(texts)
    dtype = _check_dtype(dtype)
    if shard_rows is not None:
        shard_rows = _check_positive_int(shard_rows, "shard_rows")
    if not hasattr(activations, "iter_batches"):
        raise TypeError(
            "activations must be a SplitPointActivations, got "
            f"{type(activations).__name__}; to store concept activations use "
            "transform_store(estimator, store, path)."
        )
    try:
        check_is_fitted(activations)
    except NotFittedError:
        activations.fit(texts)
    if getattr(activations, "progress", False):  # one bar here, not one a chunk
        activations = copy.copy(activations)
        activations.progress = False
    chunk = int(getattr(activations, "batch_size", None) or 32)
    header = {
        "kind": "activations",
        "source": _activations_source(activations),
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
    chunk = writer.manifest["chunk_texts"]  # a resumed store keeps its chunks
    start = writer.next_text
    if writer.manifest["complete"]:
        return ActivationStore(writer.path)

    pieces, frames, first, n_rows = [], [], start, 0
    limit = _resolve_shard_rows(shard_rows, writer.manifest["n_features"], dtype)

    def flush(stop):
        import pandas as pd

        units = pd.concat(frames, ignore_index=True)
        writer.write_shard(
            pieces,
            units=units,
            texts=(first, stop),
            texts_sha256=_hash_texts(texts[first:stop]),
        )

    with tqdm(
        total=len(texts),
        initial=start,
        disable=not progress,
        unit="text",
        desc="extract_to_store",
    ) as bar:
        for a in range(start, len(texts), chunk):
            b = min(a + chunk, len(texts))
            chunk_pieces, units = _extract_chunk(activations, texts[a:b], a, dtype)
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


def write_array_store(
    X, path, *, shard_rows=None, dtype="float32", overwrite=False, progress=False
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
    progress : bool, default=False
        Show a tqdm progress bar over the rows.

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
    import pandas as pd
    from tqdm.auto import tqdm

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
    if writer.manifest["n_features"] is None:
        writer.manifest["n_features"] = d
    start = writer.next_text
    with tqdm(
        total=n,
        initial=start,
        disable=not progress,
        unit="row",
        desc="write_array_store",
    ) as bar:
        for a in range(start, n, limit):
            b = min(a + limit, n)
            writer.write_shard(
                [_to_storage(X[a:b], dtype)],
                units=pd.DataFrame({_SAMPLE: np.arange(a, b, dtype=np.int64)}),
                texts=(a, b),
                texts_sha256=None,
            )
            bar.update(b - a)
    return writer.finish()


def _resolve_shard_rows(shard_rows, n_features, dtype):
    if shard_rows is not None:
        return shard_rows
    if n_features is None:
        return None
    itemsize = np.dtype(_STORAGE[dtype]).itemsize
    return max(1, DEFAULT_SHARD_BYTES // (int(n_features) * itemsize))


# -------------------------------------------------------------- transform
def _estimator_fingerprint(estimator, probe) -> dict:
    """Class and a hash of the outputs on a few rows (identifies the fit)."""
    C = np.ascontiguousarray(np.asarray(_as_numpy(estimator.transform(probe))))
    return {
        "class": type(estimator).__name__,
        "n_features_out": int(C.shape[1]),
        "probe_sha256": hashlib.sha256(C.astype("<f4").tobytes()).hexdigest(),
    }


def _as_numpy(x):
    if type(x).__module__.startswith("torch"):
        from skconcepts.utils._torch import to_numpy

        return to_numpy(x)
    return np.asarray(x, dtype=np.float32)


def transform_store(
    estimator,
    store,
    path,
    *,
    batch_size=None,
    dtype="float32",
    overwrite=False,
    progress=False,
):
    """Write the concept activations of a store to a new store, resumably.

    Streams the store shard by shard through ``estimator.transform`` and
    writes one concept shard per activation shard, with the same units (their
    files are copied). Like :func:`extract_to_store`, shards are published
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
    progress : bool, default=False
        Show a tqdm progress bar over the rows.

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
    from sklearn.utils.validation import check_is_fitted
    from tqdm.auto import tqdm

    if not isinstance(store, ActivationStore):
        store = ActivationStore(store)
    if not store.complete:
        raise ValueError(
            f"The ActivationStore at '{store.path}' is incomplete; finish its "
            "extraction before transforming it."
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
    start = writer.next_shard
    with tqdm(
        total=len(store),
        initial=int(store._offsets[start]),
        disable=not progress,
        unit="row",
        desc="transform_store",
    ) as bar:
        for i in range(start, store.n_shards):
            lo, hi = int(store._offsets[i]), int(store._offsets[i + 1])
            X = store._read_rows(lo, hi)
            step = batch_size or max(hi - lo, 1)
            pieces = [
                _to_storage(_as_numpy(estimator.transform(X[a : a + step])), dtype)
                for a in range(0, hi - lo, step)
            ]
            if not pieces:  # an empty shard: zero rows of the concept width
                width = header["source"]["estimator"]["n_features_out"]
                pieces = [np.empty((0, width), dtype=_STORAGE[dtype])]
            shard = m["shards"][i]
            writer.write_shard(
                pieces,
                units_from={
                    r: store._file(i, r) for r in shard["files"] if r != "data"
                },
                texts=shard["texts"],
                texts_sha256=shard["texts_sha256"],
            )
            bar.update(hi - lo)
    return writer.finish()
