"""Work past one machine: store extraction on a Ray cluster.

The store is the meeting point: a folder on a filesystem every node mounts.
:func:`extract_to_store_ray` fills it from a pool of Ray actors, each holding
the model; the fits then stream it (``fit(store, n_jobs=k)`` maps per-shard
work with joblib, on Ray under ``joblib.parallel_backend("ray")``).

Ray is optional: ``pip install 'skconcepts[ray]'``. Importing this module does
not import Ray; calling :func:`extract_to_store_ray` without it raises an
``ImportError`` that names the extra.
"""

from skconcepts.store._ray import extract_to_store_ray

__all__ = ["extract_to_store_ray"]
