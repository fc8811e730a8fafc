"""Shard-parallel fits of a store (``n_jobs``): loky, Ray, Dask give the n_jobs=1 model.

Stated tolerance: shard statistics are summed in shard order whatever
``n_jobs``, so ``n_jobs=k`` differs from ``n_jobs=1`` only by the rounding of
per-process numerical kernels: components within ``rtol=1e-5`` (1e-4 for the
NMFs, whose codes come from an iterative solver), ``atol`` scaled to the data.
"""

import os
import shutil
import sys
import warnings

import joblib
import numpy as np
import pytest
from joblib import parallel_backend
from sklearn.cluster import KMeans
from sklearn.decomposition import PCA

from skconcepts.concepts import (
    DictionaryLearningConcepts,
    KMeansConcepts,
    NMFConcepts,
    PCAConcepts,
    SemiNMFConcepts,
    _streaming,
)
from skconcepts.concepts._streaming import ShardPool, as_batch_source, map_shards
from skconcepts.exceptions import StoreCorruptedError
from skconcepts.preprocessing import ActivationScaler
from skconcepts.store import ActivationStore, _reader, write_array_store

N, D, K = 1600, 12, 4


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    centers = rng.normal(size=(K, D)) * 6
    labels = rng.integers(0, K, N)
    X = (centers[labels] + rng.normal(size=(N, D)) + 3).astype(np.float32)
    return X


@pytest.fixture(scope="module")
def stores(data, tmp_path_factory):
    folder = tmp_path_factory.mktemp("stores")
    signed = write_array_store(data, folder / "signed", shard_rows=300)
    positive = write_array_store(np.abs(data), folder / "positive", shard_rows=300)
    assert signed.n_shards == 6
    return {"signed": signed, "positive": positive}


def _estimators():
    common = {"random_state": 0, "batch_size": 200}
    return [
        ("pca", PCAConcepts(K, batch_size=200), "signed"),
        ("kmeans", KMeansConcepts(K, **common), "signed"),
        ("kmeans-soft", KMeansConcepts(K, membership="soft", **common), "signed"),
        ("nmf", NMFConcepts(K, n_passes=4, **common), "positive"),
        ("seminmf", SemiNMFConcepts(K, n_passes=4, **common), "signed"),
    ]


IDS = [name for name, _, _ in _estimators()]


def _fitted(est, store, n_jobs):
    return est.set_params(n_jobs=n_jobs).fit(store)


def _assert_same_model(a, b, name):
    rtol = 1e-4 if "nmf" in name else 1e-5
    scale = float(np.abs(a.components_).max())
    np.testing.assert_allclose(
        b.components_, a.components_, rtol=rtol, atol=rtol * scale
    )
    assert b.n_iter_ == a.n_iter_
    if hasattr(a, "reconstruction_err_"):
        np.testing.assert_allclose(
            b.reconstruction_err_, a.reconstruction_err_, rtol=rtol
        )


@pytest.fixture(scope="module")
def serial(stores):
    return {name: _fitted(est, stores[kind], 1) for name, est, kind in _estimators()}


@pytest.mark.parametrize("index", range(len(IDS)), ids=IDS)
def test_loky_n_jobs_2_equals_n_jobs_1(index, stores, serial):
    name, est, kind = _estimators()[index]
    parallel = _fitted(est, stores[kind], 2)
    _assert_same_model(serial[name], parallel, name)


def test_pca_n_jobs_is_the_exact_pca(data, stores):
    # 3 components: the 3 directions between the 4 blobs (well separated
    # eigenvalues; the 4th lies in the isotropic noise)
    ref = PCA(3).fit(data.astype(np.float64))
    pca = PCAConcepts(3, batch_size=200, n_jobs=1).fit(stores["signed"])
    assert type(pca.estimator_).__name__ == "PCA"
    np.testing.assert_allclose(pca.components_, ref.components_, atol=1e-5)
    np.testing.assert_allclose(pca.estimator_.mean_, ref.mean_, rtol=1e-6)
    np.testing.assert_allclose(
        pca.estimator_.explained_variance_, ref.explained_variance_, rtol=1e-5
    )
    np.testing.assert_allclose(pca.transform(data), ref.transform(data), atol=1e-3)


def test_kmeans_n_jobs_is_lloyd(data, stores):
    init = data[:200][[0, 1, 2, 3]]
    ours = KMeansConcepts(K, init=init, n_passes=50, tol=0, n_jobs=1).fit(
        stores["signed"]
    )
    ref = KMeans(K, init=init, n_init=1, tol=0, max_iter=50).fit(data)
    order = np.argsort(ours.components_[:, 0])
    ref_order = np.argsort(ref.cluster_centers_[:, 0])
    np.testing.assert_allclose(
        ours.components_[order], ref.cluster_centers_[ref_order], atol=1e-4
    )
    np.testing.assert_allclose(ours.estimator_.inertia_, ref.inertia_, rtol=1e-5)
    assert ours.reconstruction_err_ == pytest.approx(np.sqrt(ref.inertia_), rel=1e-5)


@pytest.mark.parametrize("strategy", ["norm", "standard"])
def test_scaler_store_fit_matches_in_memory(strategy, data, stores):
    ref = ActivationScaler(strategy).fit(data)
    one = ActivationScaler(strategy, n_jobs=1).fit(stores["signed"])
    two = ActivationScaler(strategy, n_jobs=2).fit(stores["signed"])
    np.testing.assert_allclose(one.mean_, ref.mean_, rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(one.scale_, ref.scale_, rtol=1e-10)
    np.testing.assert_allclose(two.mean_, one.mean_, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(two.scale_, one.scale_, rtol=1e-10)
    assert one.n_features_in_ == D
    np.testing.assert_allclose(one.transform(data), ref.transform(data), atol=1e-5)


def test_nmf_n_jobs_refuses_negative_values(stores):
    with pytest.raises(ValueError, match="Negative values .* NMFConcepts.fit"):
        NMFConcepts(K, n_jobs=1).fit(stores["signed"])


def test_non_store_source_is_read_in_process_with_a_warning(data, serial):
    batches = [data[i : i + 300] for i in range(0, N, 300)]
    with pytest.warns(UserWarning, match="n_jobs=2 maps the shards of an Activ"):
        pca = PCAConcepts(K, batch_size=200, n_jobs=2).fit(batches)
    np.testing.assert_allclose(pca.components_, serial["pca"].components_, atol=1e-5)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        PCAConcepts(K, batch_size=200, n_jobs=1).fit(batches)
    with pytest.raises(ValueError, match="one-shot iterator can be read once"):
        KMeansConcepts(K, n_jobs=1).fit(iter(batches))


def test_map_shards_sends_paths_not_rows(stores):
    """Each task gets the store's path and a row range; results in shard order."""
    source = as_batch_source(stores["signed"])
    parts = map_shards(_first_row, source, n_jobs=1, batch_size=1000, owner="test")
    assert len(parts) == 6
    store = stores["signed"]
    for i, (first,) in enumerate(parts):
        np.testing.assert_array_equal(first[0], store[300 * i])


@pytest.mark.parametrize("backend", ["loky", "threading"])
def test_map_shards_runs_of_shards_come_back_per_shard_in_order(stores, backend):
    """n_jobs=2: one run of consecutive shards per worker, results per shard."""
    source = as_batch_source(stores["signed"])
    with parallel_backend(backend):
        with ShardPool(2) as pool:
            assert pool.n_workers == 2
            parts = map_shards(
                _first_row, source, n_jobs=2, batch_size=1000, owner="t", parallel=pool
            )
    assert len(parts) == 6
    for i, (first,) in enumerate(parts):
        np.testing.assert_array_equal(first[0], stores["signed"][300 * i])


def test_loky_maps_wait_on_the_executors_futures(stores, monkeypatch):
    """Under loky the tasks go to the executor; Parallel's polling loop is unused."""

    def polling_loop(self, iterable):
        raise AssertionError("Parallel.__call__ ran: its result loop polls every 10 ms")

    source = as_batch_source(stores["signed"])
    with parallel_backend("loky"):
        with ShardPool(2) as pool:
            monkeypatch.setattr(joblib.Parallel, "__call__", polling_loop)
            parts = [
                map_shards(
                    _pid, source, n_jobs=2, batch_size=1000, owner="t", parallel=pool
                )
                for _ in range(2)
            ]
    pids = {int(pid[0]) for part in parts for (pid,) in part}
    assert len(parts[0]) == len(parts[1]) == 6
    assert os.getpid() not in pids and 1 <= len(pids) <= 2


def test_loky_task_errors_keep_their_type_and_the_pool_goes_on(stores):
    source = as_batch_source(stores["signed"])
    kw = {"n_jobs": 2, "batch_size": 1000, "owner": "t"}
    with parallel_backend("loky"):
        with ShardPool(2) as pool:
            with pytest.raises(ValueError, match="a shard task failed on purpose"):
                map_shards(_fail, source, parallel=pool, **kw)
            parts = map_shards(_first_row, source, parallel=pool, **kw)
    for i, (first,) in enumerate(parts):
        np.testing.assert_array_equal(first[0], stores["signed"][300 * i])


@pytest.mark.parametrize(
    "sizes, n_runs, expected",
    [
        ([10] * 8, 2, [4, 4]),
        ([10] * 8, 4, [2, 2, 2, 2]),
        ([10] * 3, 8, [1, 1, 1]),
        ([10] * 6, 4, [1, 2, 1, 2]),
        ([100, 1, 1], 2, [1, 2]),
        ([5], 3, [1]),
    ],
)
def test_runs_cut_shards_into_consecutive_runs_of_equal_rows(sizes, n_runs, expected):
    bounds = np.cumsum([40] + sizes)  # the ranges need not start at 0
    ranges = [(int(a), int(b)) for a, b in zip(bounds[:-1], bounds[1:])]
    runs = _streaming._runs(ranges, n_runs)
    assert [len(run) for run in runs] == expected
    assert [r for run in runs for r in run] == ranges  # consecutive, each once


def test_lloyd_sums_match_a_plain_reference(monkeypatch):
    """Blocked float64 Lloyd statistics equal sklearn's distances + np.add.at."""
    from sklearn.metrics.pairwise import euclidean_distances

    from skconcepts.concepts import clustering

    rng = np.random.default_rng(0)
    X = (rng.normal(size=(1000, 12)) * 3 + 1).astype(np.float32)
    C = X[rng.choice(1000, 5, replace=False)] + 0.1
    monkeypatch.setattr(clustering, "_LLOYD_BLOCK_BYTES", 8 * 12 * 128)  # 8 blocks
    sums, counts, inertia = clustering._lloyd_sums(X, C)
    d2 = euclidean_distances(X, C, squared=True)
    labels = d2.argmin(axis=1)
    ref = np.zeros((5, 12))
    np.add.at(ref, labels, X.astype(np.float64))
    np.testing.assert_array_equal(counts, np.bincount(labels, minlength=5))
    np.testing.assert_allclose(sums, ref, rtol=1e-12, atol=1e-9)
    assert inertia == pytest.approx(float(d2.min(axis=1).sum()), rel=1e-6)
    X[17, 3] = np.nan
    with pytest.raises(ValueError, match="KMeansConcepts: the rows hold NaN"):
        clustering._lloyd_sums(X, C)


def _writable(X):
    return (np.array([X.flags.writeable]),)


def _writable_promised(X):
    return _writable(X)


_writable_promised.reads_rows_only = True


def test_functions_that_only_read_get_views_of_a_float32_store(stores):
    """reads_rows_only: read-only views of the shard files, else a buffer."""
    source = as_batch_source(stores["signed"])
    kw = {"n_jobs": 1, "batch_size": 100, "owner": "t"}
    assert all(w for (w,) in map_shards(_writable, source, **kw))
    assert not any(w for (w,) in map_shards(_writable_promised, source, **kw))


def _first_row(X):
    return (X[:1].copy(),) if len(X) else (np.zeros((0, D)),)


def _pid(X):
    return (np.array([os.getpid()]),)


def _fail(X):
    raise ValueError("a shard task failed on purpose")


@pytest.mark.parametrize(
    "est, kind",
    [
        (KMeansConcepts(K, n_passes=3, tol=0, membership="soft"), "signed"),
        (NMFConcepts(K, n_passes=3), "positive"),
    ],
    ids=["kmeans-soft", "nmf"],
)
def test_one_fit_enters_one_pool_for_all_its_maps(est, kind, stores, monkeypatch):
    """Every pass of an iterative fit maps with the same pool of workers."""
    made, maps = [], []

    class CountingParallel(_streaming.Parallel):
        def __init__(self, *args, **kwargs):
            made.append(kwargs.get("n_jobs"))
            super().__init__(*args, **kwargs)

    real_map = _streaming.map_shards

    def counting_map(*args, **kwargs):
        maps.append(kwargs["parallel"])
        return real_map(*args, **kwargs)

    monkeypatch.setattr(_streaming, "Parallel", CountingParallel)
    monkeypatch.setattr(_streaming, "map_shards", counting_map)
    est.set_params(n_jobs=2, random_state=0, batch_size=200).fit(stores[kind])
    assert made == [2]
    assert len(maps) >= 3  # the passes (and k-means' inertia and soft error)
    assert all(isinstance(pool, ShardPool) and pool is maps[0] for pool in maps)
    assert not _streaming._FIT_STORES  # the fit's readers are dropped at its end


def test_checksums_are_verified_once_per_fit(stores, monkeypatch):
    """Pass 1 verifies every shard; the later passes of the fit do not again."""
    hashed = []
    real = _reader._sha256_file

    def counting(path):
        hashed.append(os.path.basename(path))
        return real(path)

    monkeypatch.setattr(_reader, "_sha256_file", counting)
    store = ActivationStore(stores["positive"].path)
    NMFConcepts(K, n_passes=3, batch_size=200, random_state=0, n_jobs=1).fit(store)
    # each of the 6 shards once, by the tasks of the first pass (3 passes
    # and the first rows verified 19 times before)
    assert sorted(hashed) == sorted(set(hashed)) and len(hashed) == 6
    NMFConcepts(K, n_passes=2, batch_size=200, random_state=0, n_jobs=1).fit(store)
    assert len(hashed) == 12  # a new fit verifies again


def test_a_damaged_first_shard_still_fails_the_fit(stores, tmp_path):
    """The first rows are read unverified; the first map still checks shard 0."""
    folder = tmp_path / "damaged"
    shutil.copytree(stores["positive"].path, folder)
    data = folder / "shard-00000.npy"
    raw = bytearray(data.read_bytes())
    raw[-4:] = np.float32(7.0).tobytes()  # same size, another value
    data.write_bytes(bytes(raw))
    with pytest.raises(StoreCorruptedError, match="fails its checksum"):
        NMFConcepts(K, n_passes=2, batch_size=200, n_jobs=1).fit(
            ActivationStore(folder)
        )


def test_estimators_without_shard_maps_refuse_n_jobs():
    with pytest.raises(ValueError, match="Invalid parameter 'n_jobs'"):
        DictionaryLearningConcepts(K).set_params(n_jobs=2)


def test_n_jobs_none_keeps_the_online_fit(stores):
    pca = PCAConcepts(K, batch_size=200).fit(stores["signed"])
    assert type(pca.estimator_).__name__ == "IncrementalPCA"
    km = KMeansConcepts(K, batch_size=200, random_state=0).fit(stores["signed"])
    assert type(km.estimator_).__name__ == "MiniBatchKMeans"


# ------------------------------------------------------------------------ Ray
@pytest.fixture(scope="module")
def ray_backend():
    ray = pytest.importorskip("ray")
    from ray.util.joblib import register_ray

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    register_ray()
    module = sys.modules[__name__]
    ray.cloudpickle.register_pickle_by_value(module)  # _pid, _fail in workers
    yield
    ray.cloudpickle.unregister_pickle_by_value(module)
    ray.shutdown()


def test_ray_scaler(data, stores, ray_backend):
    one = ActivationScaler("standard", n_jobs=1).fit(stores["signed"])
    with parallel_backend("ray"):
        two = ActivationScaler("standard", n_jobs=2).fit(stores["signed"])
    np.testing.assert_allclose(two.mean_, one.mean_, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(two.scale_, one.scale_, rtol=1e-10)


def test_ray_fits_run_as_tasks_in_workers_that_ray_keeps(
    stores, ray_backend, monkeypatch
):
    """No actor pool per fit: the tasks of later fits reuse the same processes."""
    from ray.util.multiprocessing import pool as ray_pool

    pools = []
    real_init = ray_pool.Pool.__init__

    def counting_init(self, *args, **kwargs):
        pools.append(1)
        real_init(self, *args, **kwargs)

    monkeypatch.setattr(ray_pool.Pool, "__init__", counting_init)
    source = as_batch_source(stores["signed"])

    def pids():
        parts = map_shards(_pid, source, n_jobs=2, batch_size=1000, owner="test")
        assert len(parts) == 6
        return {int(pid[0]) for (pid,) in parts}

    with parallel_backend("ray"):
        first = pids()
        KMeansConcepts(K, n_passes=3, batch_size=200, random_state=0, n_jobs=2).fit(
            stores["signed"]
        )
        second = pids()
    assert pools == []  # joblib's Ray backend would start 2 actors per fit
    assert os.getpid() not in first
    assert len(first) <= 2
    assert second <= first


def test_ray_shard_tasks_use_one_remote_function_per_process(
    stores, ray_backend, monkeypatch
):
    """A new remote function is exported (and fetched by workers) on first use."""
    import ray

    made = []
    real_remote = ray.remote

    def counting_remote(*args, **kwargs):
        made.append(args)
        return real_remote(*args, **kwargs)

    monkeypatch.setattr(_streaming, "_RAY_CALL", None)
    monkeypatch.setattr(ray, "remote", counting_remote)
    est = KMeansConcepts(K, n_passes=2, batch_size=200, random_state=0, n_jobs=2)
    with parallel_backend("ray"):
        first = est.fit(stores["signed"]).components_.copy()
        second = est.fit(stores["signed"]).components_
    assert len(made) == 1
    np.testing.assert_array_equal(first, second)


def test_ray_task_errors_keep_their_type(stores, ray_backend):
    source = as_batch_source(stores["signed"])
    with parallel_backend("ray"):
        with pytest.raises(ValueError, match="a shard task failed on purpose"):
            map_shards(_fail, source, n_jobs=2, batch_size=1000, owner="test")


# ----------------------------------------------------------------------- Dask
@pytest.fixture(scope="module")
def dask_client():
    distributed = pytest.importorskip("distributed")
    with (
        distributed.LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
        ) as cluster,
        distributed.Client(cluster) as client,
    ):
        yield client


@pytest.mark.parametrize("backend", ["ray", "dask"])
@pytest.mark.parametrize("index", range(len(IDS)), ids=IDS)
def test_cluster_n_jobs_2_equals_n_jobs_1(backend, index, stores, serial, request):
    """joblib's "ray" and "dask" backends run the shard maps on their workers."""
    request.getfixturevalue({"ray": "ray_backend", "dask": "dask_client"}[backend])
    name, est, kind = _estimators()[index]
    with parallel_backend(backend):
        parallel = _fitted(est, stores[kind], 2)
    _assert_same_model(serial[name], parallel, name)


def test_dask_shard_tasks_run_in_the_workers(stores, dask_client):
    """The shard tasks run in the Dask worker processes, not in this one."""
    workers = set(dask_client.run(os.getpid).values())
    source = as_batch_source(stores["signed"])
    with parallel_backend("dask"):
        parts = map_shards(_pid, source, n_jobs=2, batch_size=1000, owner="test")
    pids = {int(pid[0]) for (pid,) in parts}  # one batch per shard of 300 rows
    assert len(parts) == 6 and pids <= workers and os.getpid() not in pids
