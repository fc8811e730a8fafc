"""extract_to_store_ray: store extraction in a pool of Ray actors.

The driver plans the texts still to extract as tasks of consecutive texts
(whole multiples of ``batch_size`` texts). Each actor loads the model once,
from its name or folder, and extracts a task in chunks sized as
:func:`extract_to_store` sizes them (about one shard of rows), closing a
shard whenever it holds ``shard_rows`` rows; it writes the shard's files into
the store's folder under temporary (staged) names and returns their sizes and
sha256. The driver holds the writer lock and publishes shards in text order:
it renames a staged shard to its place (``os.replace``) and rewrites the
manifest atomically, so the store on disk is at every moment a valid prefix,
and a rerun resumes after it exactly as a local rerun does. Staged files of
unpublished tasks are strays the next writer removes.

``ray`` is imported only here, and only inside the functions (an optional
dependency: ``pip install skconcepts[ray]``).
"""

from __future__ import annotations

import math
import os
import secrets
import socket
from numbers import Integral
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from sklearn.base import clone
from sklearn.exceptions import NotFittedError

from skconcepts._granularity import units_table
from skconcepts.exceptions import StoreAccessError, StoreMismatchError
from skconcepts.store._format import (
    _STORAGE,
    _check_dtype,
    _check_positive_int,
    _chunk_texts,
    _hash_texts,
    _HashingWriter,
    _resolve_shard_rows,
    _to_storage,
    _units_schema,
    _write_units,
)
from skconcepts.store._reader import ActivationStore
from skconcepts.store._source import _extractor_source, _source_diff
from skconcepts.store._writer import _activations_writer
from skconcepts.utils._progress import progress_bar
from skconcepts.utils._validation import check_is_fitted, check_texts

__all__ = ["extract_to_store_ray"]

_PROBE = ".skconcepts-probe"


def _import_ray():
    try:
        import ray  # deferred: optional dependency (skconcepts[ray])
    except ImportError as exc:
        raise ImportError(
            "Distributed extraction needs Ray, which is not installed; install "
            "the extra with: pip install 'skconcepts[ray]'"
        ) from exc
    return ray


# ------------------------------------------------------------------- worker
def _write_staged(folder: Path, stem: str, ext: str, write) -> dict:
    """Write one staged file (a temporary name that store writers recognise)."""
    name = f".{stem}{ext}.{os.getpid()}-{secrets.token_hex(4)}.tmp"
    with open(folder / name, "wb") as f:
        fp = _HashingWriter(f)
        write(fp)
        f.flush()
        os.fsync(f.fileno())
    return {"name": name, "bytes": fp.n_bytes, "sha256": fp.sha256.hexdigest()}


class _ExtractWorker:
    """The body of one Ray actor: one model, loaded once, extracting tasks."""

    def __init__(self, cls, params, folder, dtype, shard_rows, threads):
        self.cls, self.params = cls, params
        self.folder, self.dtype, self.shard_rows = Path(folder), dtype, shard_rows
        self.extractor = None
        torch.set_num_threads(threads)

    def probe(self, name, token):
        """Read the driver's marker in the store folder; answer with a file."""
        host = socket.gethostname()
        try:
            seen = (self.folder / name).read_text(encoding="utf-8")
        except OSError as exc:
            return {"host": host, "ok": False, "why": f"{type(exc).__name__}: {exc}"}
        if seen != token:
            return {"host": host, "ok": False, "why": "it holds another marker"}
        reply = f"{name}.{os.getpid()}-{secrets.token_hex(4)}"
        try:
            (self.folder / reply).write_text(token, encoding="utf-8")
        except OSError as exc:
            return {
                "host": host,
                "ok": False,
                "why": f"it can read but not write: {type(exc).__name__}: {exc}",
            }
        return {"host": host, "ok": True, "reply": reply}

    def _extractor(self):
        if self.extractor is None:
            ext = self.cls(**self.params)
            ext.set_params(cache=False, progress=False)
            self.extractor = ext.fit()
        return self.extractor

    def load(self):
        """Load the model; return the source the store would record."""
        return _extractor_source(self._extractor())

    def run(self, task, first, texts):
        """Extract ``texts`` (corpus positions ``first`` on) into staged shards."""
        ext = self._extractor()
        # chunks sized as extract_to_store sizes them (about one shard of rows):
        # the extractor sorts by length within a chunk, so small chunks pad more
        chunk = _chunk_texts(ext, texts, self.shard_rows, self.dtype)
        limit = _resolve_shard_rows(self.shard_rows, None, self.dtype)
        shards, pieces, frames, start, n_rows = [], [], [], first, 0

        def flush(stop):
            units = pd.concat(frames, ignore_index=True)
            schema = _units_schema(units)
            stem = f"shard-{task:06d}{len(shards):04d}"
            rows = sum(len(p) for p in pieces)
            d = pieces[0].shape[1]
            storage = np.dtype(_STORAGE[self.dtype])
            header = {"descr": storage.str, "fortran_order": False, "shape": (rows, d)}

            def write_data(fp):
                np.lib.format.write_array_header_1_0(fp, header)
                for p in pieces:
                    fp.write(np.ascontiguousarray(p, dtype=storage).tobytes())

            files = {"data": _write_staged(self.folder, stem, ".npy", write_data)}
            files["units"] = _write_staged(
                self.folder,
                stem,
                ".units.npy",
                lambda fp: _write_units(units, schema, fp),
            )
            if any(dt == "str" for _, dt in schema):
                files["strings"] = _write_staged(
                    self.folder,
                    stem,
                    ".units.jsonl",
                    lambda fp: _write_units(units, schema, None, fp),
                )
            shards.append(
                {
                    "files": files,
                    "rows": int(rows),
                    "n_features": int(d),
                    "units_columns": schema,
                    "texts": (start, stop),
                    "texts_sha256": _hash_texts(texts[start - first : stop - first]),
                }
            )

        stop = first + len(texts)
        for a in range(first, stop, chunk):
            b = min(a + chunk, stop)
            part = texts[a - first : b - first]
            rows, spans = [], []
            for _, text_rows, text_spans in ext.iter_batches(
                part, use_cache=False, chunk_size=len(part)
            ):
                rows += text_rows
                spans += text_spans
            units = units_table(part, spans, offset=a)
            pieces.append(_to_storage(torch.cat(rows), self.dtype, check=True))
            frames.append(units)
            n_rows += len(units)
            if limit is None:
                limit = _resolve_shard_rows(None, pieces[0].shape[1], self.dtype)
            if n_rows >= limit:
                flush(b)
                pieces, frames, start, n_rows = [], [], b, 0
        if frames:
            flush(stop)
        return shards


# ------------------------------------------------------------------- driver
def _check_count(value, name, minimum):
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (Integral, float)):
        raise TypeError(f"{name}={value!r} must be a number >= {minimum}.")
    if value < minimum:
        raise ValueError(f"{name}={value!r} must be >= {minimum}.")
    return value


def _probe_workers(ray, actors, folder: Path, worker_folder, then):
    """Check that every actor reads the driver's marker and the driver its reply.

    ``then()`` is called once the probes are sent (it queues the model loads
    behind them, so that they overlap the check); its result is returned.
    """
    token = secrets.token_hex(16)
    marker = folder / f"{_PROBE}-{token[:8]}"
    marker.write_text(token, encoding="utf-8")
    replies = []
    try:
        probes = [a.probe.remote(marker.name, token) for a in actors]
        following = then()
        answers = ray.get(probes)
        bad = [a for a in answers if not a["ok"]]
        for a in answers:
            if a["ok"]:
                replies.append(folder / a["reply"])
        unseen = [r for r in replies if not r.exists()]
        if bad or unseen:
            where = (
                f"'{worker_folder}' (worker_path) on the workers"
                if str(worker_folder) != str(folder)
                else "the same path on the workers"
            )
            what = (
                f"a worker on host {bad[0]['host']!r} cannot read the marker "
                f"'{marker.name}' the driver wrote there ({bad[0]['why']})"
                if bad
                else f"the driver does not see the file '{unseen[0].name}' a "
                "worker wrote there"
            )
            raise StoreAccessError(
                f"The Ray workers cannot access the store folder '{folder}' as "
                f"{where}: {what}. Put the store on a filesystem that every Ray "
                "node mounts (NFS, Lustre, a shared volume), and pass "
                "worker_path= if the workers mount it at another path. Nothing "
                "was extracted."
            )
    finally:
        marker.unlink(missing_ok=True)
        for r in replies:
            r.unlink(missing_ok=True)
    return following


def _probe_and_load(ray, actors, folder, worker_folder):
    """Check the actors' access to the store, load the model in each: sources."""
    loads = _probe_workers(
        ray, actors, folder, worker_folder, lambda: [a.load.remote() for a in actors]
    )
    return ray.get(loads)


def _check_sources(expected, sources):
    """Refuse actors that loaded another model than ``expected`` describes."""
    for source in sources:
        diffs = _source_diff(expected, source)
        if diffs:
            raise StoreMismatchError(
                "The Ray workers do not all load the model the store records: "
                + "; ".join(diffs)
                + ". Make the model's folder the same on every node."
            )


def extract_to_store_ray(
    extractor,
    texts,
    path,
    *,
    num_workers=None,
    cpus_per_worker=1,
    gpus_per_worker=0,
    texts_per_task=None,
    worker_path=None,
    max_retries=3,
    shard_rows=None,
    dtype="float32",
    overwrite=False,
    progress=None,
    ray_remote_args=None,
):
    """Write the activations of texts to a store, extracted by a pool of Ray actors.

    The distributed twin of :func:`~skconcepts.store.extract_to_store`: the
    same store format, header and resume rules. The texts still to extract
    are cut into tasks of ``texts_per_task`` consecutive texts; ``num_workers``
    Ray actors, each holding the model (loaded once, from its name or folder),
    take tasks as they become free. An actor extracts a task chunk by chunk
    (chunks of about one shard of rows, as locally), closes a shard whenever it
    holds ``shard_rows`` rows and writes its files straight into the store's
    folder under temporary names. The driver alone holds the writer lock: it
    publishes the shards in text order (an atomic rename) and rewrites the
    manifest atomically after each one.

    The result equals the store :func:`extract_to_store` writes: the same
    rows, units and texts; values equal up to floating-point summation order
    (actors may use another number of threads). Shard boundaries may differ (a
    shard never spans two tasks).

    Every Ray node must see the store's folder (a shared filesystem): before
    any work, each actor reads a marker the driver writes there and writes one
    back; if that fails, :class:`~skconcepts.exceptions.StoreAccessError`.

    When an actor dies (a node lost, out of memory), Ray restarts it and runs
    its task again, up to ``max_retries`` times; the task's staged files are
    written afresh and nothing published is rewritten. If the run fails
    anyway, or the driver is interrupted, rerunning the same call resumes
    after the last published shard (locally with ``extract_to_store`` or
    here, with any number of workers).

    Parameters
    ----------
    extractor : SplitPointActivations
        The extractor. Its ``model`` must be a name or folder that every worker
        can load (or ``None``, the embedded model): actors load the model
        themselves; weights are never sent. If not fitted, the driver loads no
        model: the manifest records the model's identity as the actors report
        it (they must all agree); a fitted extractor's own identity is checked
        against theirs.
    texts : list of str
        The texts, in order.
    path : str or os.PathLike
        Folder of the store, on a filesystem every Ray node mounts. A relative
        path is taken relative to the driver's working directory.
    num_workers : int or None, default=None
        Number of actors. ``None`` fills the cluster: its CPUs divided by
        ``cpus_per_worker`` (its GPUs divided by ``gpus_per_worker`` when that
        is positive). Never more actors than tasks.
    cpus_per_worker : float, default=1
        CPUs Ray reserves for each actor; also its torch threads (at least 1).
    gpus_per_worker : float, default=0
        GPUs Ray reserves for each actor. Use it with
        ``SplitPointActivations(device="cuda")`` or ``device="auto"``.
    texts_per_task : int or None, default=None
        Texts per task, rounded up to whole chunks of ``extractor.batch_size``.
        ``None`` aims at 4 tasks per worker, at most 64 chunks a task. Smaller
        tasks balance the load better and lose less work to a dead worker.
    worker_path : str or os.PathLike or None, default=None
        The store's folder as the workers see it, when they mount the shared
        filesystem at another path than the driver. ``None``: the same path.
    max_retries : int, default=3
        Restarts of a dead actor and retries of its task before the run fails.
    shard_rows : int or None, default=None
        Rows after which a shard is closed, as in ``extract_to_store``.
    dtype : {"float32", "float16", "bfloat16"}, default="float32"
        Stored dtype.
    overwrite : bool, default=False
        Replace an existing store at ``path`` instead of resuming it.
    progress : bool or None, default=None
        A tqdm bar on the driver over the texts done. ``None``: shown on a
        terminal or notebook only.
    ray_remote_args : dict or None, default=None
        More options for the actors (``ray.remote(...).options``), e.g.
        ``{"resources": {"big_memory": 1}}`` or a ``runtime_env``.

    Returns
    -------
    store : ActivationStore
        The complete store.

    Raises
    ------
    ImportError
        If Ray is not installed (``pip install 'skconcepts[ray]'``).
    StoreAccessError
        If a worker cannot read and write the store's folder; nothing is
        extracted.
    StoreMismatchError
        If ``path`` holds a store written by another call, or a worker loads a
        model that differs from the driver's.

    See Also
    --------
    skconcepts.store.extract_to_store : The same on one process;
        ``engine="ray"`` calls this function with its defaults.

    Examples
    --------
    >>> import tempfile
    >>> import ray
    >>> from skconcepts import SplitPointActivations
    >>> from skconcepts.datasets import load_demo_corpus
    >>> from skconcepts.distributed import extract_to_store_ray
    >>> from skconcepts.store import extract_to_store
    >>> _ = ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    >>> acts = SplitPointActivations(split_point=0, batch_size=4)
    >>> texts = load_demo_corpus()[0][:16]
    >>> folder = tempfile.TemporaryDirectory()
    >>> store = extract_to_store_ray(acts, texts, folder.name + "/ray",
    ...                              num_workers=2, texts_per_task=8,
    ...                              progress=False)
    >>> local = extract_to_store(acts, texts, folder.name + "/local")
    >>> store.shape == local.shape, store.n_shards
    (True, 2)
    >>> bool(abs(store[:] - local[:]).max() < 1e-4)
    True
    >>> ray.shutdown()
    >>> folder.cleanup()
    """
    ray = _import_ray()
    texts = check_texts(texts)
    dtype = _check_dtype(dtype)
    if shard_rows is not None:
        shard_rows = _check_positive_int(shard_rows, "shard_rows")
    if texts_per_task is not None:
        texts_per_task = _check_positive_int(texts_per_task, "texts_per_task")
    if num_workers is not None:
        num_workers = _check_positive_int(num_workers, "num_workers")
    max_retries = int(_check_count(max_retries, "max_retries", 0))
    cpus = _check_count(cpus_per_worker, "cpus_per_worker", 0)
    gpus = _check_count(gpus_per_worker, "gpus_per_worker", 0)
    if not hasattr(extractor, "iter_batches"):
        raise TypeError(
            "extractor must be a SplitPointActivations, got "
            f"{type(extractor).__name__}."
        )
    params = extractor.get_params(deep=False)
    for key in ("model", "tokenizer"):
        value = params.get(key)
        if not (value is None or isinstance(value, (str, os.PathLike))):
            raise ValueError(
                f"extract_to_store_ray needs the extractor's {key} as a name or "
                f"folder that the Ray workers load, got a loaded "
                f"{type(value).__name__}; save it with "
                f"{key}.save_pretrained(folder) and pass "
                f"SplitPointActivations({key}=folder, ...)."
            )
    folder = Path(path).resolve()
    worker_folder = folder if worker_path is None else Path(worker_path)
    chunk = int(getattr(extractor, "batch_size", None) or 32)
    if not ray.is_initialized():  # Ray's own default: start or join a cluster
        ray.init()
    if num_workers is None:
        res = ray.cluster_resources()
        num_workers = (
            int(res.get("GPU", 0) // gpus)
            if gpus
            else int(res.get("CPU", 1) // max(cpus, 1e-9))
        )
        num_workers = max(1, num_workers)
    # the actors' processes start now, while the driver plans; they do nothing
    # with the store before the access check
    remote = ray.remote(_ExtractWorker).options(
        num_cpus=cpus,
        num_gpus=gpus,
        max_restarts=max_retries,
        max_task_retries=max_retries,
        **(ray_remote_args or {}),
    )
    worker_params = {**params, "cache": False, "progress": False}
    started = [
        remote.remote(
            type(extractor),
            worker_params,
            str(worker_folder),
            dtype,
            shard_rows,
            max(1, int(cpus)),
        )
        for _ in range(min(num_workers, math.ceil(len(texts) / chunk)))
    ]
    writer = None
    try:
        try:
            check_is_fitted(extractor)
            source = _extractor_source(extractor)
        except NotFittedError:
            source = None
        loaded = source is None and not folder.is_file()
        if loaded:
            # the model's identity from the actors, which load it anyway: the
            # driver loads no model (on a small machine it would compete with
            # the actors' start for the same cores)
            folder.mkdir(parents=True, exist_ok=True)
            sources = _probe_and_load(ray, started, folder, worker_folder)
            source = sources[0]
            _check_sources(source, sources)
        elif source is None:  # a file at path: the writer says so
            source = _extractor_source(
                clone(extractor).set_params(device="cpu", cache=False).fit()
            )
        writer = _activations_writer(
            folder, source, dtype, shard_rows, chunk, texts, overwrite
        )
        if writer.manifest["complete"]:
            return ActivationStore(writer.path)
        chunk = writer.manifest["chunk_texts"]  # a resumed store keeps its chunks
        start = writer.next_text
        n_chunks = math.ceil((len(texts) - start) / chunk)
        if texts_per_task is None:
            per_task = chunk * min(64, max(1, math.ceil(n_chunks / (4 * num_workers))))
        else:
            per_task = chunk * math.ceil(texts_per_task / chunk)
        tasks = [
            (a, min(a + per_task, len(texts)))
            for a in range(start, len(texts), per_task)
        ]
        actors = started[: len(tasks)]
        for extra in started[len(tasks) :]:
            ray.kill(extra)
        if not loaded:
            sources = _probe_and_load(ray, actors, folder, worker_folder)
            _check_sources(source, sources)
        _run_tasks(ray, actors, tasks, texts, writer, progress, start)
        # every task has returned: staged files left by a worker that died
        # (and whose task ran again) are strays now
        writer._remove_strays()
        return writer.finish()
    finally:
        for a in started:
            ray.kill(a)
        if writer is not None:
            writer.release()


def _run_tasks(ray, actors, tasks, texts, writer, progress, start):
    """Hand tasks to free actors; publish finished ones in text order."""
    free, pending, done = list(actors), {}, {}
    todo = list(enumerate(tasks))[::-1]
    next_task = 0
    with progress_bar(
        total=len(texts),
        initial=start,
        progress=progress,
        unit="text",
        desc="extract_to_store_ray",
    ) as bar:
        while todo or pending:
            while free and todo:
                i, (a, b) = todo.pop()
                actor = free.pop()
                pending[actor.run.remote(i, a, texts[a:b])] = (actor, i)
            [ref], _ = ray.wait(list(pending), num_returns=1)
            actor, i = pending.pop(ref)
            done[i] = ray.get(ref)  # a failure after the retries raises here
            free.append(actor)
            bar.update(tasks[i][1] - tasks[i][0])
            while next_task in done:
                for shard in done.pop(next_task):
                    writer.publish_staged(
                        shard["files"],
                        rows=shard["rows"],
                        n_features=shard["n_features"],
                        units_columns=shard["units_columns"],
                        texts=shard["texts"],
                        texts_sha256=shard["texts_sha256"],
                    )
                next_task += 1
