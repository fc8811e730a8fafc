"""Section "parallel": shard-parallel fits of a store (``n_jobs``), Ray and loky.

A synthetic store (``make_concept_activations``: planted non-negative
dictionary, sparse codes) of >= 200 000 rows (``--full``; 30 000 in
``--quick``, with one Ray row) is fitted by PCA, KMeans, NMF and SemiNMF
with ``n_jobs=2`` under joblib's Ray backend (a local Ray cluster of 2
CPUs: 2 workers of 1 CPU each) and under loky (2 local processes of 1
thread each), against ``n_jobs=1``: the same shard maps in this process,
limited to 1 thread (1 worker of 1 CPU). Every model of a row equals its
reference within the tolerance the tests state; the quality column gives
the largest difference of the components. The Ray time includes starting
the pool's 2 actors: joblib's Ray backend starts them for each ``Parallel``
context, i.e. once per fit (every pass of an iterative fit shares them),
and each imports torch and skconcepts.
"""

from __future__ import annotations

import shutil
import tempfile
import time

import numpy as np

from bench._common import row


def _one_thread():
    """Limit this process to 1 thread (BLAS, OpenMP, torch); returns a restore."""
    import torch
    from threadpoolctl import threadpool_limits

    n = torch.get_num_threads()
    limits = threadpool_limits(1)
    torch.set_num_threads(1)

    def restore():
        limits.restore_original_limits()
        torch.set_num_threads(n)

    return restore


def _estimators(quick):
    from skconcepts.concepts import (
        KMeansConcepts,
        NMFConcepts,
        PCAConcepts,
        SemiNMFConcepts,
    )

    passes = 3 if quick else 5
    common = {"random_state": 0, "batch_size": 4096}
    return [
        ("PCA", PCAConcepts(16, batch_size=4096)),
        ("KMeans", KMeansConcepts(16, n_passes=passes, tol=0, **common)),
        ("NMF", NMFConcepts(16, n_passes=passes, **common)),
        ("SemiNMF", SemiNMFConcepts(16, n_passes=passes, **common)),
    ]


def _timed_fit(est, store, n_jobs):
    t0 = time.perf_counter()
    est.set_params(n_jobs=n_jobs).fit(store)
    return time.perf_counter() - t0, est.components_.copy()


def run(quick=True):
    from joblib import parallel_backend

    from skconcepts.datasets import make_concept_activations
    from skconcepts.store import write_array_store

    n_rows = 30_000 if quick else 200_000
    X, _, _ = make_concept_activations(
        n_rows, 256, 32, sparsity=0.1, noise=0.0, random_state=0
    )
    folder = tempfile.mkdtemp(prefix="skconcepts-bench-parallel-")
    rows = []
    try:
        store = write_array_store(
            X.astype(np.float32), f"{folder}/store", shard_rows=n_rows // 8
        )
        del X
        what = f"{len(store)}×{store.n_features} store, {store.n_shards} shards"
        references = {}
        restore = _one_thread()
        try:
            for name, est in _estimators(quick):
                references[name] = _timed_fit(est, store, 1)
        finally:
            restore()
        backends = ["loky"]
        try:
            import ray
            from ray.util.joblib import register_ray

            ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
            register_ray()
            backends.append("ray")
        except ImportError:
            ray = None
        try:
            for backend in backends:
                with parallel_backend(backend):
                    ests = _estimators(quick)
                    _timed_fit(ests[0][1], store, 2)  # warm-up: workers import
                    for name, est in _estimators(quick):
                        if quick and backend == "ray" and name != "PCA":
                            continue  # --quick: one Ray row (actors start per fit)
                        t_par, comp = _timed_fit(est, store, 2)
                        t_ref, comp_ref = references[name]
                        speedup = t_ref / t_par
                        diff = float(np.abs(comp - comp_ref).max())
                        rows.append(
                            row(
                                f"parallel: {name}.fit(store, n_jobs=2), {backend} "
                                f"(2 workers × 1 CPU), {what}",
                                t_par,
                                "n_jobs=1 (1 worker × 1 CPU)",
                                t_ref,
                                quality=f"max |Δ components| = {diff:.1e}",
                                target="≥ 1.7×",
                                met=speedup >= 1.7,
                                note="indicative under load; ray includes "
                                "starting 2 actors per fit"
                                if backend == "ray"
                                else "indicative under load",
                            )
                        )
        finally:
            if ray is not None:
                ray.shutdown()
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    from bench.bench_gridsearch import run_parallel

    rows.extend(run_parallel(quick))
    return rows
