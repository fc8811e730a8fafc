"""ActivationStore: sharded on-disk activations with their units table.

A store is a folder of shards (``shard-00000.npy`` ...), the units table of
every shard and a ``manifest.json`` that lists the shards with their size and
sha256. Every shard holds whole texts, so a shard boundary never splits a text.
A shard file becomes visible only once complete (written under a temporary
name, fsynced, then ``os.replace``-d), and the manifest, rewritten atomically
after each shard, lists it. Interrupting :func:`extract_to_store` therefore
leaves a valid store of the shards written so far, and rerunning the same call
resumes after the last one; the result is bitwise equal to an uninterrupted
run.

:class:`ActivationStore` opens a store lazily (only the manifest is read),
memory-maps a shard when it is first needed, checks its size and sha256 then,
and streams reads shard by shard.

One writer at a time: every function that writes a store holds its writer
lock (``.skconcepts-store.lock``, created with ``O_CREAT | O_EXCL``, holding
the writer's pid and host) until it returns; a second writer is refused with
:class:`~skconcepts.exceptions.StoreLockedError` naming the holder, and a lock
left by a dead process of the same host is taken over with a warning. Each
new write (or overwrite) records a random ``generation`` in the manifest and
its shards; a reader whose store is overwritten under it raises
:class:`~skconcepts.exceptions.StoreChangedError` instead of returning rows
of the new store. Resuming verifies the checksums of the shards it keeps, so
rerunning a call after a ``StoreCorruptedError`` repairs the store.

Where each part lives:

- ``_format.py``: the files, the manifest (and its schema check), the stored
  dtypes and their range checks, atomic writes, hashing and the writer lock;
- ``_source.py``: what identifies the extractor that wrote a store, and
  :meth:`ActivationStore.check_source`'s comparison;
- ``_reader.py``: :class:`ActivationStore`;
- ``_writer.py``: the writer shared by every function that writes a store, and
  :func:`write_array_store`;
- ``_extract.py``: :func:`extract_to_store` (texts to a store);
- ``_transform.py``: :func:`transform_store` (a store to a concept store);
- ``_memory.py``: the one memory-budget check, :func:`check_memory_budget`.
"""

import warnings

from skconcepts.exceptions import StoreTooLargeError
from skconcepts.store._extract import extract_to_store
from skconcepts.store._format import DEFAULT_SHARD_BYTES
from skconcepts.store._memory import (
    MEMORY_FRACTION,
    available_memory,
    check_memory_budget,
    format_bytes,
    memory_budget,
    streaming_estimator_names,
)
from skconcepts.store._reader import ActivationStore
from skconcepts.store._transform import transform_store
from skconcepts.store._writer import write_array_store

__all__ = [
    "ActivationStore",
    "StoreTooLargeError",
    "extract_to_store",
    "transform_store",
    "write_array_store",
    "DEFAULT_SHARD_BYTES",
    "MEMORY_FRACTION",
    "available_memory",
    "check_memory_budget",
    "format_bytes",
    "memory_budget",
    "streaming_estimator_names",
]


def __getattr__(name):
    if name == "STREAMING_ESTIMATORS":
        warnings.warn(
            "skconcepts.store.STREAMING_ESTIMATORS is deprecated and will be removed "
            "in the next release; use skconcepts.store.streaming_estimator_names(), "
            "which derives the list from the estimators.",
            FutureWarning,
            stacklevel=2,
        )
        return tuple(streaming_estimator_names())
    raise AttributeError(f"module 'skconcepts.store' has no attribute {name!r}")
