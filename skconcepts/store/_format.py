"""The on-disk format of an ActivationStore: files, manifest, dtypes, hashing.

A store is a folder::

    manifest.json             what wrote it, dtype, dims, the list of shards
    shard-00000.npy           activations (rows, n_features): float32, float16,
                              or bfloat16 kept as its raw uint16 bits
    shard-00000.units.npy     the units' numeric columns (a structured array)
    shard-00000.units.jsonl   the units' string columns, one JSON list a line
    shard-00001.npy ...

Every file is written under a temporary name, fsynced, then ``os.replace``-d
(:func:`_write_atomic`), and the manifest records its size and sha256. This
module holds everything that decides the bytes on disk; the reader, the writer,
extraction and transform only call it.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import secrets
import socket
import time
import warnings
from numbers import Integral
from pathlib import Path

import numpy as np
import torch
from sklearn.exceptions import NotFittedError

from skconcepts.exceptions import StoreCorruptedError, StoreLockedError

__all__ = ["DEFAULT_SHARD_BYTES"]

#: target size of one shard of activations when ``shard_rows=None``
DEFAULT_SHARD_BYTES = 64 * 2**20

_FORMAT = "skconcepts.ActivationStore"
_FORMAT_VERSION = 1
_MANIFEST = "manifest.json"
#: on-disk dtype of each stored dtype (bfloat16 as its raw bits)
_STORAGE = {"float32": "<f4", "float16": "<f2", "bfloat16": "<u2"}
_LOCK = ".skconcepts-store.lock"
#: suffix of a temporary file: unique per writer (pid and a random token)
_TMP = r"(\.\d+-[0-9a-f]+)?\.tmp"
_SHARD_FILE = re.compile(rf"^\.?shard-\d+\.(npy|units\.npy|units\.jsonl)({_TMP})?$")
#: a published shard file (a name in the manifest: no folder, no temporary)
_SHARD_NAME = re.compile(r"shard-\d+\.(npy|units\.npy|units\.jsonl)")
_MANIFEST_TMP = re.compile(rf"^\.manifest\.json{_TMP}$")
_HASH_CHUNK = 1 << 20
_MISSING = object()
#: name of the units column that holds the index of the text
_SAMPLE = "sample"


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
    tmp = path.with_name(f".{path.name}.{os.getpid()}-{secrets.token_hex(4)}.tmp")
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
    """sha256 of a file, read into one reused buffer of ``_HASH_CHUNK`` bytes.

    A fresh ``bytes`` per chunk costs the kernel a page fault per 4 KiB page of
    it, and those contend when several worker processes verify shards at once.
    """
    h = hashlib.sha256()
    buf = bytearray(_HASH_CHUNK)
    view = memoryview(buf)
    with open(path, "rb") as f:
        while n := f.readinto(buf):
            h.update(view[:n])
    return h.hexdigest()


def _hash_texts(texts) -> str:
    """sha256 of an ordered list of texts (length-prefixed UTF-8)."""
    h = hashlib.sha256()
    for t in texts:
        b = t.encode("utf-8")
        h.update(len(b).to_bytes(8, "little"))
        h.update(b)
    return h.hexdigest()


def _copy_file(src: Path):
    """A ``write(fp)`` callback that copies the file ``src`` chunk by chunk."""

    def write(fp):
        with open(src, "rb") as f:
            while chunk := f.read(_HASH_CHUNK):
                fp.write(chunk)

    return write


def _is_store_file(p: Path) -> bool:
    """A file a store writer may remove: the manifest, shards, temporary files.

    The lock file is not one (see :func:`_is_lock_file`).
    """
    return (
        p.name == _MANIFEST
        or bool(_MANIFEST_TMP.match(p.name))
        or bool(_SHARD_FILE.match(p.name))
    )


def _is_lock_file(p: Path) -> bool:
    return p.name == _LOCK or p.name.startswith(f"{_LOCK}.")


def _new_generation() -> str:
    """A random token that names one write (or overwrite) of a store."""
    return secrets.token_hex(8)


# ------------------------------------------------------------------ lock
def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # pragma: no cover - another user's live process
        return True
    except OSError:  # pragma: no cover - e.g. Windows: cannot tell, assume alive
        return True
    return True


def _read_lock(file: Path):
    """The holder recorded in a lock file, ``None`` if unreadable."""
    for _ in range(20):  # the holder writes it right after creating it
        try:
            holder = json.loads(file.read_text(encoding="utf-8"))
            if isinstance(holder, dict) and "pid" in holder and "host" in holder:
                return holder
        except FileNotFoundError:
            raise
        except (OSError, ValueError, UnicodeDecodeError):
            pass
        time.sleep(0.05)
    return None


class _StoreLock:
    """The writer lock of a store: a file created with ``O_CREAT | O_EXCL``.

    It holds the pid and host of the writer. A lock whose holder is a dead
    process of this host is stale: it is taken over with a warning. A live
    holder makes :meth:`acquire` raise :class:`StoreLockedError`.
    """

    def __init__(self, path: Path):
        self.file = Path(path) / _LOCK
        self.record = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "token": secrets.token_hex(8),
            "since": time.time(),
        }
        self.held = False

    def acquire(self):
        for _ in range(10):
            try:
                fd = os.open(self.file, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                try:
                    holder = _read_lock(self.file)
                except FileNotFoundError:
                    continue  # released meanwhile: try again
                self._take_over_if_stale(holder)
                continue
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                json.dump(self.record, f)
                f.flush()
                os.fsync(f.fileno())
            self.held = True
            return self
        raise StoreLockedError(  # pragma: no cover - a lock that keeps changing
            f"Could not take the writer lock '{self.file}' of the store at "
            f"'{self.file.parent}': other writers keep taking it."
        )

    def _take_over_if_stale(self, holder):
        here = socket.gethostname()
        if holder is None:
            reason = "it is unreadable"
        elif holder["host"] == here and not _pid_alive(int(holder["pid"])):
            reason = f"its holder (pid {holder['pid']} on {here}) is not running"
        else:
            raise StoreLockedError(
                f"The ActivationStore at '{self.file.parent}' is being written by "
                f"another process (pid {holder['pid']} on host {holder['host']!r}, "
                f"lock file '{self.file}'). Wait for it to finish, or write to "
                "another folder; if that process is gone, delete the lock file."
            )
        # move the stale lock aside under a unique name, so that two writers
        # taking it over at once cannot both succeed
        aside = self.file.with_name(f"{_LOCK}.{os.getpid()}-{secrets.token_hex(4)}")
        try:
            os.replace(self.file, aside)
        except FileNotFoundError:
            return
        if _read_lock(aside) != holder:  # someone else's fresh lock: put it back
            try:
                os.link(aside, self.file)
            except FileExistsError:  # pragma: no cover
                pass
        else:
            warnings.warn(
                f"Taking over the stale writer lock '{self.file}' ({reason}).",
                RuntimeWarning,
                stacklevel=5,
            )
        aside.unlink(missing_ok=True)

    def release(self):
        if not self.held:
            return
        self.held = False
        try:
            if _read_lock(self.file) == self.record:
                self.file.unlink()
        except FileNotFoundError:
            pass


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
    if not isinstance(manifest, dict):
        raise StoreCorruptedError(
            f"The manifest '{file}' holds a JSON {type(manifest).__name__}, not an "
            "object: it is not the manifest of an ActivationStore."
        )
    if manifest.get("format") != _FORMAT:
        raise StoreCorruptedError(
            f"'{file}' is not the manifest of an ActivationStore (format="
            f"{manifest.get('format')!r})."
        )
    if not _is_int(manifest.get("format_version", 0)):
        raise StoreCorruptedError(
            f"The manifest '{file}' is invalid: format_version="
            f"{manifest['format_version']!r} (wrong value; expected an integer)."
        )
    if manifest.get("format_version", 0) > _FORMAT_VERSION:
        raise StoreCorruptedError(
            f"The store at '{path}' has format version {manifest['format_version']};"
            f" this skconcepts reads up to {_FORMAT_VERSION}: upgrade skconcepts."
        )
    _validate_manifest(manifest, file)
    return manifest


def _is_int(v, minimum=0):
    return isinstance(v, int) and not isinstance(v, bool) and v >= minimum


def _is_sha(v):
    return isinstance(v, str) and re.fullmatch(r"[0-9a-f]{64}", v) is not None


def _validate_manifest(m: dict, file: Path):
    """Check every field a reader or writer uses; ``StoreCorruptedError`` if not.

    The one place the manifest's schema is checked, so that a hand-edited or
    damaged manifest gives an error naming the field and the file, never a
    bare ``KeyError`` or ``TypeError`` later.
    """

    def bad(field, value, expected):
        raise StoreCorruptedError(
            f"The manifest '{file}' is invalid: {field}={value!r} "
            f"({'missing' if value is _MISSING else 'wrong value'}; expected "
            f"{expected}). The file was edited or damaged: restore it, or rewrite "
            "the store (the call that wrote it, with overwrite=True)."
        )

    def field(obj, key, name, ok, expected):
        value = obj.get(key, _MISSING) if isinstance(obj, dict) else _MISSING
        if value is _MISSING or not ok(value):
            bad(name, value, expected)
        return value

    field(m, "format_version", "format_version", _is_int, "an integer")
    field(m, "dtype", "dtype", lambda v: v in _STORAGE, f"one of {sorted(_STORAGE)}")
    n_features = field(
        m,
        "n_features",
        "n_features",
        lambda v: v is None or _is_int(v, 1),
        "an integer >= 1 (or null before the first shard)",
    )
    field(m, "n_rows", "n_rows", _is_int, "an integer >= 0")
    field(m, "complete", "complete", lambda v: isinstance(v, bool), "true or false")
    field(m, "n_texts", "n_texts", _is_int, "an integer >= 0")
    field(m, "kind", "kind", lambda v: isinstance(v, str), "a string")
    field(m, "source", "source", lambda v: isinstance(v, dict), "an object")
    for key in ("shard_rows", "chunk_texts"):
        field(m, key, key, lambda v: v is None or _is_int(v, 1), "null or an int >= 1")
    field(
        m,
        "texts_sha256",
        "texts_sha256",
        lambda v: v is None or _is_sha(v),
        "null or a sha256",
    )
    if "generation" in m:  # absent from stores written before it existed
        field(m, "generation", "generation", lambda v: isinstance(v, str), "a string")
    field(
        m,
        "feature_names",
        "feature_names",
        lambda v: (
            v is None or (isinstance(v, list) and all(isinstance(n, str) for n in v))
        ),
        "null or a list of strings",
    )

    def column(c):
        if not (isinstance(c, list) and len(c) == 2 and isinstance(c[0], str)):
            return False
        if c[1] == "str":
            return True
        try:
            return np.dtype(c[1]).kind in "iubf"
        except (TypeError, ValueError):
            return False

    columns = field(
        m,
        "units_columns",
        "units_columns",
        lambda v: v is None or (isinstance(v, list) and all(column(c) for c in v)),
        "null or a list of [name, dtype] pairs (dtype 'str' or a numeric dtype)",
    )
    shards = field(m, "shards", "shards", lambda v: isinstance(v, list), "a list")
    if shards and (n_features is None or columns is None):
        bad("n_features" if n_features is None else "units_columns", None, "a value")
    end = 0
    for i, shard in enumerate(shards):
        at = f"shards[{i}]"
        field({at: shard}, at, at, lambda v: isinstance(v, dict), "an object")
        field(shard, "rows", f"{at}.rows", _is_int, "an integer >= 0")
        texts = field(
            shard,
            "texts",
            f"{at}.texts",
            lambda v: isinstance(v, list) and len(v) == 2 and all(map(_is_int, v)),
            "[first, stop] integers",
        )
        if texts[0] != end or texts[1] < texts[0]:
            bad(f"{at}.texts", texts, f"[{end}, stop >= {end}] (the previous stop)")
        end = texts[1]
        field(
            shard,
            "texts_sha256",
            f"{at}.texts_sha256",
            lambda v: v is None or _is_sha(v),
            "null or a sha256",
        )
        files = field(
            shard,
            "files",
            f"{at}.files",
            lambda v: isinstance(v, dict) and "data" in v and "units" in v,
            "an object with 'data' and 'units'",
        )
        for role, info in files.items():
            name = f"{at}.files.{role}"
            field({name: info}, name, name, lambda v: isinstance(v, dict), "an object")
            field(
                info,
                "name",
                f"{name}.name",
                lambda v: isinstance(v, str) and _SHARD_NAME.fullmatch(v) is not None,
                "a shard file name in the store's folder (shard-NNNNN...)",
            )
            field(info, "bytes", f"{name}.bytes", _is_int, "an integer >= 0")
            field(info, "sha256", f"{name}.sha256", _is_sha, "a sha256 hex digest")
    if m["complete"] and end != m["n_texts"]:
        bad("n_texts", m["n_texts"], f"{end}, where the last shard stops")


# ------------------------------------------------------------- dtype helpers
def _check_dtype(dtype) -> str:
    key = str(dtype).replace("torch.", "")
    if key not in _STORAGE:
        raise ValueError(
            f"dtype={dtype!r} is not supported by ActivationStore; use one of "
            f"{sorted(_STORAGE)}."
        )
    return key


def _check_positive_int(value, name):
    if not isinstance(value, Integral) or isinstance(value, bool) or value < 1:
        raise ValueError(f"{name}={value!r} must be an integer >= 1.")
    return int(value)


def _resolve_shard_rows(shard_rows, n_features, dtype):
    """Rows per shard: ``shard_rows``, or ``DEFAULT_SHARD_BYTES`` worth of rows."""
    if shard_rows is not None:
        return shard_rows
    if n_features is None:
        return None
    itemsize = np.dtype(_STORAGE[dtype]).itemsize
    return max(1, DEFAULT_SHARD_BYTES // (int(n_features) * itemsize))


#: texts per chunk at most, as in ``SplitPointActivations.transform``: the
#: chunk is the window within which the extractor sorts texts by length
_MAX_CHUNK_TEXTS = 4096
#: characters per token assumed to size the chunks (English BPE/WordPiece)
_CHARS_PER_TOKEN = 4


def _chunk_texts(extractor, texts, shard_rows, dtype):
    """Texts per chunk of a new store: about one shard of rows.

    The extractor sorts the texts of a chunk by length and batches them, so a
    chunk of few texts pads every batch to the longest of few random lengths
    (chunks of 128 rt_polarity texts ran 1.87 times the tokens of one sorted
    window, and took 2.6 times one ``transform``). A chunk holds about the
    rows of one shard (``shard_rows``, or ``DEFAULT_SHARD_BYTES``), estimated
    from the mean length of the texts, at least ``batch_size`` texts and at
    most 4096 (``transform``'s window). Memory stays about one shard plus one
    chunk; the number is recorded in the manifest, so a resumed run cuts the
    same chunks.
    """
    batch = int(getattr(extractor, "batch_size", None) or 32)
    try:
        n_features = len(extractor.get_feature_names_out())
    except (AttributeError, TypeError, ValueError, NotFittedError):
        return batch  # an extractor that does not say its width
    limit = _resolve_shard_rows(shard_rows, n_features, dtype)
    sample = texts[:_MAX_CHUNK_TEXTS]
    if getattr(extractor, "granularity", None) in ("sample", "cls"):
        rows_per_text = 1.0
    else:  # tokens of the text and its special tokens: an upper estimate
        mean_chars = sum(map(len, sample)) / max(len(sample), 1)
        rows_per_text = 2.0 + mean_chars / _CHARS_PER_TOKEN
    return int(min(_MAX_CHUNK_TEXTS, max(batch, limit // rows_per_text)))


def _to_storage(x, dtype: str, *, check=False) -> np.ndarray:
    """Rows (numpy array or torch tensor) in the on-disk dtype, C-contiguous.

    With ``check=True`` (what the writers pass), values too large for a 16-bit
    ``dtype`` raise ``ValueError`` instead of being stored as ``inf``, and NaN
    or inf among the rows themselves give a ``RuntimeWarning``.
    """
    out = _convert(x, dtype)
    if check:
        _check_finite(x, out, dtype)
    return out


def _convert(x, dtype: str) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        x = x.detach()
        if dtype == "bfloat16":
            bits = x.to(torch.bfloat16).contiguous().view(torch.int16)
            return bits.cpu().numpy().view("<u2")
        target = torch.float16 if dtype == "float16" else torch.float32
        return np.ascontiguousarray(x.to(target).cpu().numpy(), _STORAGE[dtype])
    x = np.asarray(x)
    if dtype == "bfloat16":
        t = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))
        return t.to(torch.bfloat16).view(torch.int16).numpy().view("<u2")
    with np.errstate(over="ignore"):  # an overflow is reported by _check_finite
        return np.ascontiguousarray(x, dtype=_STORAGE[dtype])


def _n_nonfinite_stored(out: np.ndarray, dtype: str) -> int:
    if dtype == "bfloat16":  # exponent bits all ones: inf or NaN
        return int(np.count_nonzero((out & 0x7F80) == 0x7F80))
    return int(out.size - np.count_nonzero(np.isfinite(out)))


def _check_finite(x, out: np.ndarray, dtype: str):
    """Refuse an overflow of the stored dtype; warn of NaN/inf in the input."""
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu()
        x = (x.float() if x.dtype == torch.bfloat16 else x).numpy()
    x = np.asarray(x)
    finite = np.isfinite(x) if x.dtype.kind in "fc" else np.ones(x.shape, bool)
    n_in = int(x.size - np.count_nonzero(finite))
    n_out = _n_nonfinite_stored(out, dtype)
    if n_out > n_in:
        big = float(np.abs(x[finite]).max())
        limit = float(torch.finfo(getattr(torch, dtype)).max)
        raise ValueError(
            f"dtype={dtype!r} cannot store {n_out - n_in} of these activations: "
            f"their largest magnitude is {big:.6g}, above the dtype's maximum "
            f"{limit:.6g}, so they would be stored as inf. Use dtype='bfloat16' "
            "(float32's range) or dtype='float32' (pass overwrite=True to replace "
            "a store already begun at this path), or scale the activations down."
        )
    if n_in:
        n_nan = int(np.count_nonzero(np.isnan(x)))
        warnings.warn(
            f"{n_in} of the activations written to the store are not finite "
            f"({n_nan} NaN, {n_in - n_nan} inf); they are stored as they are, and "
            "estimators fitted on the store will fail or return NaN. Check the "
            "model and its inputs.",
            RuntimeWarning,
            stacklevel=4,
        )


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
