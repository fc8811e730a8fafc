"""ActivationStore: read a store lazily, shard by shard.

Opening a store reads only its manifest; a shard is memory-mapped when it is
first needed, its size and sha256 are checked then, and reads stream shard by
shard. See :mod:`skconcepts.store._format` for the files.
"""

from __future__ import annotations

import json
import operator
import os
from numbers import Integral
from pathlib import Path

import numpy as np
import pandas as pd

from skconcepts.exceptions import (
    StoreChangedError,
    StoreCorruptedError,
    StoreMismatchError,
)
from skconcepts.store._format import (
    _MANIFEST,
    _STORAGE,
    _check_positive_int,
    _decode,
    _decode_into,
    _read_manifest,
    _sha256_file,
)
from skconcepts.store._memory import check_memory_budget, streaming_estimator_names
from skconcepts.store._source import _extractor_source, _source_diff

__all__ = ["ActivationStore"]

#: the function that writes each kind of store
_WRITERS = {
    "activations": "extract_to_store",
    "concepts": "transform_store",
    "array": "write_array_store",
}


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
        self._manifest_key = _stat_key(self.path / _MANIFEST)
        self.manifest = _read_manifest(self.path)
        self._watch = True
        if not self.manifest["complete"] and not allow_incomplete:
            m = self.manifest
            done = m["shards"][-1]["texts"][1] if m["shards"] else 0
            writer = _WRITERS.get(m["kind"], "extract_to_store")
            raise ValueError(
                f"The ActivationStore at '{self.path}' is incomplete: its "
                f"extraction stopped after {len(m['shards'])} shards ({done} of "
                f"{m['n_texts']} texts). Rerun the same {writer} call to finish "
                "it, or open it with allow_incomplete=True."
            )
        self._index()

    @classmethod
    def _from_manifest(cls, path, manifest, *, verify=True):
        """A store over an in-memory manifest (used by the writer)."""
        store = cls.__new__(cls)
        store.path, store.verify, store.manifest = Path(path), verify, manifest
        store._watch = False  # the writer holds the lock: nobody else writes
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
    def _check_generation(self):
        """Raise ``StoreChangedError`` if the store was overwritten since opened.

        Every write (or overwrite) of a store records a new random
        ``generation`` in its manifest and shards. A reader checks, after it
        opened a shard file, that the manifest on disk still has the
        generation it read: the file it holds is then one of its store (an
        overwrite removes the manifest before it touches a shard).
        """
        if not self._watch:
            return
        file = self.path / _MANIFEST
        key = _stat_key(file)
        if key is not None and key == self._manifest_key:
            return
        new = None
        if key is not None:
            try:
                new = json.loads(file.read_text(encoding="utf-8")).get("generation")
            except (OSError, ValueError, UnicodeDecodeError, AttributeError):
                new = "<unreadable>"
            else:
                if new == self.manifest.get("generation"):
                    self._manifest_key = key  # rewritten by a resume: same data
                    return
        raise StoreChangedError(
            f"The ActivationStore at '{self.path}' was overwritten or removed while "
            f"it was open (generation {self.manifest.get('generation')!r}, now "
            f"{new!r}): its rows no longer match the manifest read when it was "
            "opened. Open it again (ActivationStore(path)) to read the new store."
        )

    def _file(self, i, role) -> Path:
        """The checked path of file ``role`` of shard ``i``."""
        info = self._shards[i]["files"][role]
        path = self.path / info["name"]
        if not path.is_file():
            self._check_generation()
            raise StoreCorruptedError(
                f"Shard file '{path}' is missing. Rerun the extract_to_store (or "
                "transform_store) call that wrote the store to rewrite it."
            )
        size = path.stat().st_size
        if size != info["bytes"]:
            self._check_generation()
            raise StoreCorruptedError(
                f"Shard file '{path}' has {size} bytes but the manifest records "
                f"{info['bytes']}: it is truncated or was modified. Rerun the call "
                "that wrote the store to rewrite it."
            )
        if self.verify and (i, role) not in self._verified:
            digest = _sha256_file(path)
            if digest != info["sha256"]:
                self._check_generation()
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
            self._check_generation()
            raise StoreCorruptedError(
                f"Shard file '{path}' is not a readable .npy file ({exc})."
            ) from exc
        self._check_generation()
        expected = (self._shards[i]["rows"], self.n_features)
        if mm.shape != expected or mm.dtype != np.dtype(_STORAGE[self.dtype]):
            raise StoreCorruptedError(
                f"Shard file '{path}' holds {mm.dtype} rows of shape {mm.shape}, "
                f"but the manifest expects {np.dtype(_STORAGE[self.dtype])} of "
                f"shape {expected}. Rerun the call that wrote the store to rewrite "
                "it."
            )
        return mm

    def _shard_units(self, i):
        """The units table of shard ``i`` (index: global row numbers)."""
        schema = self.manifest["units_columns"]
        path = self._file(i, "units")
        try:
            arr = np.load(path, allow_pickle=False)
        except (ValueError, OSError) as exc:
            self._check_generation()
            raise StoreCorruptedError(
                f"Shard file '{path}' is not a readable .npy file ({exc}). Rerun the "
                "call that wrote the store to rewrite it."
            ) from exc
        rows = self._shards[i]["rows"]
        if arr.shape != (rows,):
            raise StoreCorruptedError(
                f"Shard file '{self.path / self._shards[i]['files']['units']['name']}'"
                f" holds {arr.shape[0]} units but the shard has {rows} rows."
            )
        strings = [n for n, dt in schema if dt == "str"]
        numeric = [n for n, dt in schema if dt != "str"]
        if list(arr.dtype.names or ()) != numeric:
            raise StoreCorruptedError(
                f"Shard file '{self.path / self._shards[i]['files']['units']['name']}'"
                f" holds the columns {list(arr.dtype.names or ())}, but the manifest "
                f"lists {numeric}. Rerun the call that wrote the store to rewrite it."
            )
        values = []
        if strings:
            path = self._file(i, "strings")
            try:
                with open(path, encoding="utf-8") as f:
                    values = [json.loads(line) for line in f]
            except (ValueError, UnicodeDecodeError) as exc:
                self._check_generation()
                raise StoreCorruptedError(
                    f"Shard file '{path}' is not valid JSON lines ({exc}). Rerun the "
                    "call that wrote the store to rewrite it."
                ) from exc
            bad = next(
                (
                    k
                    for k, v in enumerate(values)
                    if not isinstance(v, list) or len(v) != len(strings)
                ),
                None,
            )
            if bad is not None:
                raise StoreCorruptedError(
                    f"Shard file '{path}' line {bad + 1} holds {values[bad]!r}, not "
                    f"a list of {len(strings)} strings. Rerun the call that wrote "
                    "the store to rewrite it."
                )
            if len(values) != rows:
                raise StoreCorruptedError(
                    f"Shard file '{path}' holds {len(values)} lines but the shard "
                    f"has {rows} rows."
                )
        self._check_generation()
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
        """Rows ``start:stop`` as a new float32 array, across shard boundaries
        (a reader of many batches: :meth:`_iter_rows`)."""
        return self._fill(start, stop, None, self._memmap)

    def _iter_rows(self, start, stop, batch_size, out=None, view=False):
        """Rows ``start:stop`` in float32 batches of ``batch_size`` rows.

        Each shard is opened (and checked) once for all its batches, not once
        per batch. ``out``: a float32 buffer of at least ``batch_size`` rows;
        every batch is then a view of it, valid until the next one.
        ``view=True``: a batch within one shard of a float32 store is a
        read-only view of the shard file, no copy (a reader that only reads
        its rows saves a pass over memory); other batches are copied.
        """
        opened = {}

        def memmap(i):
            if i not in opened:
                opened.clear()  # batches go forward: one shard open at a time
                opened[i] = self._memmap(i)
            return opened[i]

        for lo in range(start, stop, batch_size):
            hi = min(stop, lo + batch_size)
            i = int(np.searchsorted(self._offsets, lo, side="right")) - 1
            first, end = int(self._offsets[i]), int(self._offsets[i + 1])
            if view and self.dtype == "float32" and hi <= end:
                mm = memmap(i)
                if mm.dtype == np.float32:  # native byte order
                    yield mm[lo - first : hi - first]
                    continue
            yield self._fill(lo, hi, None if out is None else out[: hi - lo], memmap)

    def _fill(self, start, stop, out, memmap) -> np.ndarray:
        """Rows ``start:stop`` into ``out`` (or a new array), shard ``i`` from
        ``memmap(i)``."""
        if out is None:
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
                memmap(i)[pos - lo : end - lo],
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
            than ``max_bytes`` (see :func:`~skconcepts.store.check_memory_budget`);
            its message gives the size needed, the budget and the estimators that
            stream the store instead (those with ``partial_fit``).
        """
        n, d = self.shape
        who = estimator or "to_numpy"
        check_memory_budget(
            n * d * 4,
            max_bytes,
            what=(
                f"The ActivationStore at '{self.path}' ({n} rows x {d} float32 "
                f"features) does not fit in memory: {who}"
            ),
            fix=_stream_instead,
        )
        return self._read_rows(0, n)

    def check_source(self, extractor):
        """Check that this store holds activations of ``extractor``.

        Compares the source recorded in the manifest (model identity, split
        point, granularity, aggregation and the other parameters that change
        the values) with ``extractor``'s. Only what both sides know is
        compared: an unfitted extractor given a model by name is compared by
        that name.

        Parameters
        ----------
        extractor : SplitPointActivations
            The extractor the store should come from (fitted or not).

        Returns
        -------
        self : ActivationStore
            The store, unchanged.

        Raises
        ------
        StoreMismatchError
            If the store is not an activation store (a concept store), or was
            written at another split point, granularity, aggregation or with
            another model; the message names every difference.

        Examples
        --------
        >>> import tempfile
        >>> from skconcepts import SplitPointActivations
        >>> from skconcepts.datasets import load_demo_corpus, load_embedded_model
        >>> from skconcepts.exceptions import StoreMismatchError
        >>> from skconcepts.store import extract_to_store
        >>> model, tokenizer = load_embedded_model()
        >>> acts = SplitPointActivations(model, tokenizer=tokenizer, split_point=0)
        >>> folder = tempfile.TemporaryDirectory()
        >>> store = extract_to_store(acts, load_demo_corpus()[0][:3], folder.name)
        >>> store.check_source(acts) is store
        True
        >>> other = SplitPointActivations(model, tokenizer=tokenizer, split_point=1)
        >>> try:
        ...     store.check_source(other.fit())
        ... except StoreMismatchError as exc:
        ...     print("split point" in str(exc))
        True
        >>> folder.cleanup()
        """
        kind = self.manifest["kind"]
        if kind != "activations":
            raise StoreMismatchError(
                f"The ActivationStore at '{self.path}' holds {kind} (written by "
                f"{'transform_store' if kind == 'concepts' else 'write_array_store'}"
                "), not the activations of a SplitPointActivations: it cannot be "
                f"checked against {type(extractor).__name__}. Pass a store written "
                "by extract_to_store (or transform_to_store) of this extractor."
            )
        diffs = _source_diff(self.manifest["source"], _extractor_source(extractor))
        if diffs:
            raise StoreMismatchError(
                f"The ActivationStore at '{self.path}' was not written by this "
                f"{type(extractor).__name__}; it differs in: "
                + "; ".join(diffs)
                + ". Pass the store written by this extractor, or write one with "
                "extract_to_store(extractor, texts, path)."
            )
        return self

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


def _stat_key(file):
    """What changes when a file is replaced: inode, size, modification time."""
    try:
        st = os.stat(file)
    except FileNotFoundError:
        return None
    return (st.st_ino, st.st_size, st.st_mtime_ns)


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


def _stream_instead() -> str:
    """The fix of a store too large to load: the budget, or a streaming estimator."""
    try:
        names = ", ".join(streaming_estimator_names())
    except ImportError:  # an optional dependency of some module is missing
        names = "the concept estimators that have partial_fit"
    return (
        "Raise the budget (pass max_bytes=..., or set the estimator's max_bytes), "
        "or use an estimator whose fit streams the store batch by batch (fit(store) "
        f"or partial_fit): {names}."
    )
