"""The on-disk activation cache shared by processes (``SplitPointActivations``).

``SplitPointActivations(cache="folder")`` keeps the activations of every text
it computes in a folder, so that other processes (the workers of
``GridSearchCV(n_jobs=...)``, Ray or Dask workers on a shared filesystem)
read them instead of running the model again.

Layout: ``<folder>/<configuration>/<t[:2]>/<t>.safetensors``, where
``<configuration>`` is a hash of everything that changes a text's rows (model
and tokenizer fingerprints, split module, granularity, aggregation, special
tokens, ``max_length``, dtypes, device type) and ``<t>`` the sha256 of the
text. One file holds the rows, their character spans and the flags of one text
(safetensors; never pickle) and the text itself, checked on read.

Concurrency: a file is written under a temporary name and renamed
(:func:`skconcepts.utils._files.write_atomic`), so a reader sees a whole entry
or none. Before computing a text, a process claims it with a lock file
created with ``O_CREAT | O_EXCL``; a process that finds a text claimed waits
for its entry (and computes it after all if the claim's process died or the
claim is older than ``_CLAIM_TIMEOUT``). The model thus runs once per text
across the processes that share the folder.

Size: with ``max_bytes``, when the folder grows past it the oldest entries
(by modification time; a hit refreshes it) are removed until it fits.

Fit records: ``<folder>/fits/<key>.json`` keeps what ``fit`` resolved for a
model and a tokenizer given as folders (the split module, the truncation
length, the fingerprints), keyed by the folders' files (names, sizes,
modification times), the fit parameters and the library versions. A process
that finds its record fits without loading the model: the model and the
tokenizer are loaded on the first text that is not in the cache, so worker
processes whose texts are all cached never load them.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import socket
import time
from pathlib import Path

import numpy as np
import torch

from skconcepts.utils._files import write_atomic

__all__ = [
    "ActivationCache",
    "folder_signature",
    "model_fingerprint",
    "tokenizer_fingerprint",
]

_SUFFIX = ".safetensors"
_CLAIM = ".claim"
#: a claim older than this (seconds) is taken over
_CLAIM_TIMEOUT = 600.0
#: seconds between two looks at a text another process computes
_POLL = 0.02
#: values sampled from each parameter tensor by :func:`model_fingerprint`
_SAMPLES_PER_TENSOR = 1024
#: files that mark a folder as an activation cache
_MARKER = "SKCONCEPTS_ACTIVATION_CACHE"
#: sub-folder of the fit records
_FITS = "fits"


def _sha(text):
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def model_fingerprint(model):
    """A stable identity of a model's weights and configuration (hex str).

    The sha256 of the model's class, its config (``config.to_json_string()``
    without ``_name_or_path``), the name, shape and dtype of every parameter
    and buffer, and at most 1024 evenly spaced values of each. Two processes
    that load the same model get the same fingerprint; a fine-tuned copy (any
    change of more than a few isolated weights) gets another. Costs one strided
    read per tensor, not a pass over all the weights.

    Parameters
    ----------
    model : torch.nn.Module
        The model.

    Returns
    -------
    fingerprint : str
        64 hex digits.

    Examples
    --------
    >>> from skconcepts._cache import model_fingerprint
    >>> from skconcepts.utils._testing import make_tiny_model
    >>> a, _ = make_tiny_model("bert", seed=0)
    >>> b, _ = make_tiny_model("bert", seed=1)
    >>> model_fingerprint(a) == model_fingerprint(make_tiny_model("bert", seed=0)[0])
    True
    >>> model_fingerprint(a) == model_fingerprint(b)
    False
    """
    h = hashlib.sha256(type(model).__name__.encode())
    config = getattr(model, "config", None)
    if config is not None and hasattr(config, "to_dict"):
        conf = {k: v for k, v in config.to_dict().items() if k != "_name_or_path"}
        h.update(json.dumps(conf, sort_keys=True, default=str).encode())
    with torch.no_grad():
        tensors = list(model.named_parameters()) + list(model.named_buffers())
        for name, tensor in tensors:
            h.update(f"{name}:{tuple(tensor.shape)}:{tensor.dtype}".encode())
            flat = tensor.detach().reshape(-1)
            step = max(1, flat.numel() // _SAMPLES_PER_TENSOR)
            sample = flat[::step][:_SAMPLES_PER_TENSOR].to("cpu", torch.float64)
            h.update(sample.numpy().tobytes())
    return h.hexdigest()


def tokenizer_fingerprint(tokenizer):
    """A stable identity of a fast tokenizer (hex str): its JSON.

    The JSON of the backend tokenizer (vocabulary, normaliser, pre-tokeniser,
    post-processor...) without the truncation and padding state of its last
    call.

    Parameters
    ----------
    tokenizer : transformers.PreTrainedTokenizerFast
        The tokenizer.

    Returns
    -------
    fingerprint : str
        64 hex digits.
    """
    h = hashlib.sha256(type(tokenizer).__name__.encode())
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is not None:
        spec = json.loads(backend.to_str())
        # the truncation and padding of the last call, not the tokenizer
        spec.pop("truncation", None)
        spec.pop("padding", None)
        h.update(json.dumps(spec, sort_keys=True).encode("utf-8"))
    else:  # not a fast tokenizer: its vocabulary
        h.update(json.dumps(sorted(tokenizer.get_vocab().items())).encode())
    return h.hexdigest()


def folder_signature(path):
    """What identifies the files of a model folder, cheaply (no read).

    Parameters
    ----------
    path : str or os.PathLike
        A folder.

    Returns
    -------
    signature : list
        The folder's absolute path and ``[name, size, mtime_ns]`` of each
        regular file directly in it, sorted by name.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> from skconcepts._cache import folder_signature
    >>> folder = pathlib.Path(tempfile.mkdtemp())
    >>> _ = (folder / "config.json").write_text("{}")
    >>> [name for name, _, _ in folder_signature(folder)[1]]
    ['config.json']
    """
    root = os.path.abspath(os.fspath(path))
    files = []
    for entry in os.scandir(root):
        if entry.is_file():
            st = entry.stat()
            files.append([entry.name, st.st_size, st.st_mtime_ns])
    return [root, sorted(files)]


class ActivationCache:
    """An on-disk cache of per-text activations, shared by processes.

    Pass it (or just the folder) as ``SplitPointActivations(cache=...)``:
    activations are then kept in ``folder``, keyed by the model's identity
    (:func:`model_fingerprint`), the tokenizer, the split point, the
    granularity settings and the text, and every process that uses the same
    folder (``GridSearchCV(n_jobs=...)`` workers, Ray or Dask workers on a
    shared filesystem) reads them instead of running the model again.

    Parameters
    ----------
    folder : str or os.PathLike
        The folder (created if needed). It must be writable by every process
        that uses it; on a cluster, a path of a shared filesystem.
    max_bytes : int or None, default=None
        Size limit of the folder: when a write makes it larger, the entries
        least recently written or read are removed until it fits. ``None``:
        no limit.

    Notes
    -----
    Entries are safetensors files written atomically (temporary file, then
    rename): concurrent writers of the same text leave one whole entry, and a
    reader never sees half of one. A text is claimed (a lock file) before it is
    computed, so the model runs once per text across processes. The cache
    assumes the files are not edited by hand; a damaged or unreadable entry is
    treated as missing and rewritten. The size check scans the folder after
    every ``max_bytes / 16`` bytes written by a process, so the folder can
    exceed the limit by that much per process in between.

    Examples
    --------
    >>> import tempfile
    >>> from skconcepts import ActivationCache, SplitPointActivations
    >>> folder = tempfile.mkdtemp()
    >>> acts = SplitPointActivations(split_point=1, cache=ActivationCache(folder))
    >>> acts.fit_transform(["a good film", "dull"]).shape
    (4, 384)
    >>> acts.cache.n_entries()
    2
    >>> acts.clear_cache().cache.n_entries()
    0
    """

    def __init__(self, folder, *, max_bytes=None):
        self.folder = folder
        self.max_bytes = max_bytes
        self._written = 0

    def __repr__(self):
        limit = "" if self.max_bytes is None else f", max_bytes={self.max_bytes}"
        return f"ActivationCache({os.fspath(self.folder)!r}{limit})"

    def __eq__(self, other):
        return (
            isinstance(other, ActivationCache)
            and os.fspath(self.folder) == os.fspath(other.folder)
            and self.max_bytes == other.max_bytes
        )

    def __hash__(self):
        return hash((os.fspath(self.folder), self.max_bytes))

    def __getstate__(self):
        return {"folder": self.folder, "max_bytes": self.max_bytes}

    def __setstate__(self, state):
        self.__init__(state["folder"], max_bytes=state["max_bytes"])

    # ------------------------------------------------------------ the folder
    @property
    def path(self):
        """The folder as an absolute :class:`~pathlib.Path`."""
        return Path(os.path.abspath(os.fspath(self.folder)))

    def _root(self):
        root = self.path
        if root.exists() and not root.is_dir():
            raise ValueError(
                f"cache={os.fspath(self.folder)!r} is a file; pass a folder for "
                "the activation cache."
            )
        root.mkdir(parents=True, exist_ok=True)
        marker = root / _MARKER
        if not marker.exists():
            marker.write_text(
                "Activation cache of skconcepts (SplitPointActivations(cache=...)).\n"
            )
        return root

    def _entries(self):
        """``(path, size, mtime)`` of every entry file."""
        out = []
        root = self.path
        if not root.is_dir():
            return out
        for config in os.scandir(root):
            if not config.is_dir():
                continue
            for sub in os.scandir(config.path):
                if not sub.is_dir():
                    continue
                for entry in os.scandir(sub.path):
                    if entry.name.endswith(_SUFFIX) and not entry.name.startswith("."):
                        try:
                            st = entry.stat()
                        except FileNotFoundError:
                            continue
                        out.append((entry.path, st.st_size, st.st_mtime))
        return out

    def n_entries(self):
        """Number of texts cached (all configurations).

        Returns
        -------
        n : int
            Entries in the folder.
        """
        return len(self._entries())

    def size_bytes(self):
        """Bytes of the cached entries.

        Returns
        -------
        size : int
            Their total size.
        """
        return sum(size for _, size, _ in self._entries())

    def clear(self):
        """Remove every entry (all configurations) and every claim.

        Only folders written by the cache are removed: other files in the
        folder are kept.

        Returns
        -------
        self : ActivationCache
            The cache.
        """
        root = self.path
        if not (root / _MARKER).exists():
            return self
        for config in os.scandir(root):
            if config.is_dir() and (len(config.name) == 32 or config.name == _FITS):
                shutil.rmtree(config.path, ignore_errors=True)
        self._written = 0
        return self

    # ----------------------------------------------------------- fit records
    def read_fit(self, key):
        """The fit record ``key`` (a dict), or None (missing or unreadable).

        Parameters
        ----------
        key : str
            The record's key (hex digits).

        Returns
        -------
        record : dict or None
            What :meth:`write_fit` wrote.
        """
        try:
            record = json.loads((self.path / _FITS / f"{key}.json").read_text())
        except (OSError, ValueError, UnicodeDecodeError):
            return None
        return record if isinstance(record, dict) else None

    def write_fit(self, key, record):
        """Keep a fit record (atomically: readers see all of it or nothing).

        Parameters
        ----------
        key : str
            The record's key (hex digits).
        record : dict
            JSON-serialisable values.
        """
        folder = self._root() / _FITS
        folder.mkdir(exist_ok=True)
        text = json.dumps(record, sort_keys=True)
        write_atomic(
            folder / f"{key}.json",
            lambda tmp: Path(tmp).write_text(text, encoding="utf-8"),
        )

    def _evict(self):
        """Remove the oldest entries until the folder fits in ``max_bytes``."""
        entries = self._entries()
        total = sum(size for _, size, _ in entries)
        if total <= self.max_bytes:
            return
        for path, size, _ in sorted(entries, key=lambda e: e[2]):
            try:
                os.unlink(path)
            except FileNotFoundError:
                continue
            total -= size
            if total <= self.max_bytes:
                break

    # ----------------------------------------------------------- one entry
    def _file(self, config, text):
        t = _sha(text)
        return self.path / config / t[:2] / (t + _SUFFIX)

    def _read(self, file, text, make):
        """The entry of ``text`` at ``file``, or None (missing or damaged)."""
        from safetensors.torch import load_file  # deferred: only disk caches

        try:
            tensors = load_file(os.fspath(file))
            meta = _read_meta(file)
        except FileNotFoundError:
            return None
        except Exception:  # a damaged entry is a miss, rewritten after compute
            return None
        if meta is None or meta.get("text") != text:
            return None
        try:
            os.utime(file)  # recently used: evicted last
        except OSError:
            pass
        return make(
            rows=tensors["rows"],
            spans=tensors["spans"].numpy().astype(np.int64),
            truncated=bool(int(meta["truncated"])),
            n_unknown=int(meta["n_unknown"]),
            n_tokens=int(meta["n_tokens"]),
            n_overflow=int(meta["n_overflow"]),
            peak=float(meta["peak"]),
        )

    def _write(self, file, text, result):
        from safetensors.torch import save_file  # deferred: only disk caches

        file.parent.mkdir(parents=True, exist_ok=True)
        tensors = {
            "rows": result.rows.contiguous(),
            "spans": torch.as_tensor(np.asarray(result.spans, dtype=np.int64)),
        }
        meta = {
            "text": text,
            "truncated": str(int(result.truncated)),
            "n_unknown": str(int(result.n_unknown)),
            "n_tokens": str(int(result.n_tokens)),
            "n_overflow": str(int(result.n_overflow)),
            "peak": repr(float(result.peak)),
        }
        write_atomic(file, lambda tmp: save_file(tensors, tmp, metadata=meta))
        if self.max_bytes is not None:
            self._written += file.stat().st_size
            if self._written * 16 >= self.max_bytes:
                self._written = 0
                self._evict()

    # --------------------------------------------------------- claims
    def _claim(self, file):
        """Claim a text (True), or False if another live process holds it."""
        claim = file.with_name(file.name + _CLAIM)
        claim.parent.mkdir(parents=True, exist_ok=True)
        owner = f"{socket.gethostname()} {os.getpid()}"
        for _ in range(2):
            try:
                fd = os.open(claim, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666)
            except FileExistsError:
                if not _stale(claim):
                    return False
                try:
                    os.unlink(claim)  # the holder died: take over
                except FileNotFoundError:
                    pass
                continue
            with os.fdopen(fd, "w") as f:
                f.write(owner)
            return True
        return False

    @staticmethod
    def _release(file):
        try:
            os.unlink(file.with_name(file.name + _CLAIM))
        except FileNotFoundError:
            pass

    # ----------------------------------------------------- the one entry point
    def fetch(self, config, texts, compute, make):
        """The results of distinct ``texts``, read or computed (and written).

        Parameters
        ----------
        config : str
            The configuration hash (32 hex digits).
        texts : list of str
            Distinct texts.
        compute : callable
            ``compute(texts) -> {text: result}`` runs the model.
        make : callable
            Builds a result from its fields (the ``_TextResult`` class).

        Returns
        -------
        results : dict
            ``{text: result}`` for every text.
        n_read : int
            How many were read from the folder.
        """
        self._root()
        results, n_read = {}, 0
        files = {t: self._file(config, t) for t in texts}
        pending = list(texts)
        while pending:
            mine, others = [], []
            for text in pending:
                hit = self._read(files[text], text, make)
                if hit is not None:
                    results[text] = hit
                    n_read += 1
                elif self._claim(files[text]):
                    mine.append(text)
                else:
                    others.append(text)
            if mine:
                try:
                    computed = compute(mine)
                    for text, result in computed.items():
                        self._write(files[text], text, result)
                    results.update(computed)
                finally:
                    for text in mine:
                        self._release(files[text])
            if others and not mine:
                time.sleep(_POLL)  # another process computes them
            pending = others
        return results, n_read


def _read_meta(file):
    """The metadata of a safetensors file (its JSON header)."""
    with open(file, "rb") as f:
        n = int.from_bytes(f.read(8), "little")
        header = json.loads(f.read(n))
    return header.get("__metadata__")


def _stale(claim):
    """Whether a claim's process is gone (same host) or the claim is too old."""
    try:
        owner = claim.read_text().split()
        age = time.time() - claim.stat().st_mtime
    except (FileNotFoundError, OSError):
        return False  # just released, or being written: look again
    if age > _CLAIM_TIMEOUT:
        return True
    if len(owner) == 2 and owner[0] == socket.gethostname():
        try:
            os.kill(int(owner[1]), 0)
        except ProcessLookupError:
            return True
        except (PermissionError, ValueError):
            return False
    return False
