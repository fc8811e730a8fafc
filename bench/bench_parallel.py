"""Section "parallel": shard-parallel fits of a store (``n_jobs``), Ray and loky.

A synthetic store (``make_concept_activations``: planted non-negative
dictionary, sparse codes) of >= 200 000 rows (``--full``; 30 000 in
``--quick``, with one Ray row) is fitted by PCA, KMeans, NMF and SemiNMF
with ``n_jobs=2`` under joblib's Ray backend (a local Ray cluster of 2
CPUs: 2 workers of 1 CPU each) and under loky (2 local processes of 1
thread each), against ``n_jobs=1``: the same shard maps in this process
(1 worker of 1 CPU). Every process runs 1 thread: this one (the reference,
and the driver of the parallel fits, which computes the initialisation and
the dictionary updates between the maps) and each worker. A fit shorter than
2 s (PCA, k-means here) is timed best of 3 on each side. Every model of a
row equals its reference within the tolerance the tests state; the quality
column gives the largest difference of the components.

Under joblib's ``"ray"`` backend the shard tasks are Ray tasks
(``skconcepts.concepts._streaming.ShardPool``), which run in the worker
processes Ray keeps between tasks: a cluster's first fit pays the workers'
import of torch and skconcepts (once, given in the note: the warm-up fit),
every later fit starts at once. The rows time fits after that warm-up, as
for loky (whose worker processes are also kept between fits).
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


#: fits shorter than this (seconds, n_jobs=1) are timed best of SHORT_REPEAT on
#: both sides: a fit of half a second varies by 10% from run to run here
SHORT_FIT, SHORT_REPEAT = 2.0, 3


def _timed_fit(est, store, n_jobs, repeat=1):
    """Best wall time of ``repeat`` fits and the components of the last."""
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        est.set_params(n_jobs=n_jobs).fit(store)
        best = min(best, time.perf_counter() - t0)
    return best, est.components_.copy()


def _row(name, backend, what, t_par, comp, t_cold, reference, repeat):
    t_ref, comp_ref = reference
    diff = float(np.abs(comp - comp_ref).max())
    note = f"best of {repeat} fits on each side; " if repeat > 1 else ""
    note += (
        f"indicative under load; the {backend} workers were started by a "
        f"warm-up PCA fit ({t_cold:.2f} s; "
    )
    if backend == "ray":
        note += (
            "Ray tasks in the worker processes Ray keeps between fits, no "
            "actor pool per fit)"
        )
    else:
        note += "loky keeps its worker processes between fits)"
    return row(
        f"parallel: {name}.fit(store, n_jobs=2), {backend} (2 workers × 1 CPU), {what}",
        t_par,
        "n_jobs=1 (1 worker × 1 CPU)",
        t_ref,
        quality=f"max |Δ components| = {diff:.1e}",
        target="≥ 1.7×",
        met=t_ref / t_par >= 1.7,
        note=note,
    )


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
        backends = ["loky"]
        try:
            import ray
            from ray.util.joblib import register_ray

            ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
            register_ray()
            backends.append("ray")
        except ImportError:
            ray = None
        restore = _one_thread()  # this process too: 1 thread per process
        try:
            cold = {}
            for backend in backends:
                with parallel_backend(backend):
                    # warm-up: the workers start and import (loky and Ray
                    # keep them for the later fits)
                    cold[backend], _ = _timed_fit(_estimators(quick)[0][1], store, 2)
            for name, est in _estimators(quick):
                # side by side: the reference, then each backend
                reference = _timed_fit(est, store, 1)
                repeat = SHORT_REPEAT if reference[0] < SHORT_FIT else 1
                if repeat > 1:
                    reference = _timed_fit(est, store, 1, repeat)
                for backend in backends:
                    if quick and backend == "ray" and name != "PCA":
                        continue  # --quick: one Ray row
                    with parallel_backend(backend):
                        t_par, comp = _timed_fit(est, store, 2, repeat)
                    rows.append(
                        _row(
                            name,
                            backend,
                            what,
                            t_par,
                            comp,
                            cold[backend],
                            reference,
                            repeat,
                        )
                    )
        finally:
            restore()
            if ray is not None:
                ray.shutdown()
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    from bench.bench_gridsearch import run_parallel

    rows.extend(run_parallel(quick))
    return rows
