"""Store extraction on Ray (section "distributed") against local extraction.

Three runs write the same store of MiniLM token activations (all six blocks,
``split_point=-1``, float32) of the benchmark texts, each from an unfitted
extractor given by its folder (the embedded model), so that every timing is
"from a model folder to a complete store" and includes loading the model:

- local, 1 torch thread (``torch.set_num_threads(1)``);
- local, 2 torch threads;
- Ray, 2 actors of 1 CPU each (``extract_to_store_ray(num_workers=2,
  cpus_per_worker=1)``) on a local Ray cluster of 2 CPUs started beforehand
  (``ray.init`` is not timed: a cluster exists before a job). Its time
  includes starting the two actor processes and loading the model in each
  (the driver loads none: the model's identity for the manifest comes from
  the actors); that startup is also timed alone (a run on 8 texts) and
  reported.

Rows: Ray vs local 1 thread (target >= 1.7x) and Ray vs local 2 threads at
equal cores (overhead <= 15 %, i.e. speed-up >= 0.87). Quality: the largest
absolute difference between the Ray and the local store, and equal units.
Figures taken on a loaded machine are indicative only (the load average at the
start is in the note).

Run ``python -m bench --quick --only distributed``.
"""

from __future__ import annotations

import os
import tempfile
import time

import numpy as np

from bench._common import load_texts, row

N_TEXTS = {True: 600, False: 4000}
SPLIT_POINT = -1
BATCH_SIZE = 32


def _acts():
    from skconcepts import SplitPointActivations

    return SplitPointActivations(
        split_point=SPLIT_POINT, batch_size=BATCH_SIZE, cache=False
    )


def _local(texts, path, threads):
    import torch

    from skconcepts.store import extract_to_store

    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        t0 = time.perf_counter()
        store = extract_to_store(_acts(), texts, path)
        return time.perf_counter() - t0, store
    finally:
        torch.set_num_threads(before)


def _ray(texts, path):
    from skconcepts.distributed import extract_to_store_ray

    t0 = time.perf_counter()
    store = extract_to_store_ray(
        _acts(), texts, path, num_workers=2, cpus_per_worker=1, progress=False
    )
    return time.perf_counter() - t0, store


def run(quick=True):
    try:
        import ray
    except ImportError:
        return [
            {
                "benchmark": "distributed: Ray extraction",
                "note": "skipped: Ray is not installed (pip install 'skconcepts[ray]')",
            }
        ]
    texts, source = load_texts(N_TEXTS[quick])
    load = os.getloadavg()[0]
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            startup, _ = _ray(texts[:8], f"{tmp}/startup")
            ray_s, ray_store = _ray(texts, f"{tmp}/ray")
            one_s, one = _local(texts, f"{tmp}/local1", 1)
            two_s, two = _local(texts, f"{tmp}/local2", 2)
            same = ray_store.units().equals(one.units())
            diff = float(np.abs(ray_store[:] - one[:]).max())
            rows = len(ray_store)
    finally:
        ray.shutdown()
    quality = f"max |ray - local| = {diff:.1e}; units equal: {same}"
    note = (
        f"{len(texts)} texts ({source}), {rows} token rows, MiniLM all 6 blocks; "
        f"Ray time includes {startup:.1f} s of actor startup + model load in "
        "the actors (the driver loads no model); "
        f"{rows / ray_s:.0f} rows/s Ray, {rows / one_s:.0f} rows/s local 1 thread, "
        f"{rows / two_s:.0f} rows/s local 2 threads; without the startup Ray is "
        f"{one_s / max(ray_s - startup, 1e-9):.2f}x local 1 thread and "
        f"{two_s / max(ray_s - startup, 1e-9):.2f}x local 2 threads; load average "
        f"{load:.1f} at start"
    )
    r1 = row(
        "distributed: Ray extraction, 2 actors x 1 CPU vs local 1 thread",
        ray_s,
        "extract_to_store, 1 thread",
        one_s,
        quality=quality,
        target=">= 1.7x",
        note=note,
    )
    r1["met"] = bool(r1["speed-up"] >= 1.7 and same)
    r2 = row(
        "distributed: Ray extraction, 2 actors x 1 CPU vs local 2 threads "
        "(equal cores)",
        ray_s,
        "extract_to_store, 2 threads",
        two_s,
        quality=quality,
        target="overhead <= 15% (speed-up >= 0.87)",
        note=note,
    )
    r2["met"] = bool(r2["speed-up"] >= 1 / 1.15 and same)
    return [r1, r2]


if __name__ == "__main__":
    import sys

    from bench._common import markdown_table

    print(markdown_table(run(quick="--full" not in sys.argv)))
