"""Store extraction on Ray (skconcepts.distributed): equality with the local
store, a worker that dies once, a rerun after a failed run, bad input.

The Ray tests share one local cluster (2 CPUs, no dashboard), shut down after
the module; they are skipped when Ray is not installed. Actors load the
embedded MiniLM from its folder; nothing here pickles weights.
"""

import json
import os
import sys

import numpy as np
import pytest

from skconcepts import SplitPointActivations
from skconcepts.datasets import load_demo_corpus
from skconcepts.distributed import extract_to_store_ray
from skconcepts.exceptions import StoreAccessError
from skconcepts.store import extract_to_store

#: values of a Ray store against the local one: the same chunks of texts, so
#: only the summation order of a different number of BLAS threads differs
ATOL = 1e-4


@pytest.fixture(scope="module")
def ray_cluster():
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    # the subclasses below live in this test module, which the workers cannot
    # import: ship them by value
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
    yield ray
    ray.shutdown()


@pytest.fixture(scope="module")
def texts():
    return load_demo_corpus()[0][:24]


def _acts(cls=SplitPointActivations):
    return cls(split_point=0, batch_size=4)


class DieOnce(SplitPointActivations):
    """Kills its worker process the first time it meets text 8 or later.

    Before dying it records in ``marker`` the inode and mtime of the shard
    already published, so that the test checks it was not rewritten.
    """

    marker = None
    store = None
    trigger = None

    def iter_batches(self, texts, **kwargs):
        if (
            texts
            and texts[0] == type(self).trigger
            and not os.path.exists(type(self).marker)
        ):
            first = os.path.join(type(self).store, "shard-00000.npy")
            st = os.stat(first)
            with open(type(self).marker, "w") as f:
                json.dump({"ino": st.st_ino, "mtime": st.st_mtime_ns}, f)
            os._exit(1)
        return super().iter_batches(texts, **kwargs)


def _same_store(store, local):
    assert store.shape == local.shape
    assert store.units().equals(local.units())
    np.testing.assert_allclose(store[:], local[:], rtol=0, atol=ATOL)
    assert not [p for p in os.listdir(store.path) if p.endswith(".tmp")]


def test_ray_store_equals_the_local_store(
    ray_cluster, texts, tmp_path, capsys, monkeypatch
):
    from skconcepts import activations

    driver_loads = []
    real = activations._load_pretrained
    monkeypatch.setattr(
        activations,
        "_load_pretrained",
        lambda *args, **kw: driver_loads.append(args[0]) or real(*args, **kw),
    )
    acts = _acts()
    store = extract_to_store_ray(
        acts, texts, tmp_path / "ray", num_workers=2, texts_per_task=8, progress=True
    )
    assert "24/24" in capsys.readouterr().err  # the driver's bar counts texts
    assert driver_loads == []  # only the actors load the model
    local = extract_to_store(acts, texts, tmp_path / "local")
    _same_store(store, local)
    # tasks of 8 texts: one shard each, published in text order
    manifest = json.loads((tmp_path / "ray" / "manifest.json").read_text())
    assert [s["texts"] for s in manifest["shards"]] == [[0, 8], [8, 16], [16, 24]]
    assert manifest["complete"]
    assert (
        manifest["source"]
        == json.loads((tmp_path / "local" / "manifest.json").read_text())["source"]
    )
    # the same call again is a no-op on the complete store; engine="ray" too
    again = extract_to_store(acts, texts, tmp_path / "ray", engine="ray")
    assert again.n_shards == store.n_shards


def test_a_worker_that_dies_once_still_gives_the_complete_store(
    ray_cluster, texts, tmp_path
):
    DieOnce.marker = str(tmp_path / "died")
    DieOnce.store = str(tmp_path / "ray")
    # dies in the second chunk of the second task, after the task has staged
    # the shard of its first chunk (shard_rows=1: one shard per chunk)
    DieOnce.trigger = texts[12]
    store = extract_to_store_ray(
        _acts(DieOnce),
        texts,
        tmp_path / "ray",
        num_workers=1,
        texts_per_task=8,
        shard_rows=1,
    )
    assert os.path.exists(DieOnce.marker)  # the worker did die, then was retried
    before = json.loads(open(DieOnce.marker).read())
    st = os.stat(tmp_path / "ray" / "shard-00000.npy")
    assert (st.st_ino, st.st_mtime_ns) == (before["ino"], before["mtime"])
    local = extract_to_store(_acts(), texts, tmp_path / "local", shard_rows=1)
    assert store.n_shards == local.n_shards == 6
    _same_store(store, local)  # and no staged file of the dead attempt is left


def test_a_rerun_after_a_failed_run_resumes_without_rewriting(
    ray_cluster, texts, tmp_path
):
    DieOnce.marker = str(tmp_path / "died")
    DieOnce.store = str(tmp_path / "ray")
    DieOnce.trigger = texts[8]
    with pytest.raises(ray_cluster.exceptions.RayError):
        extract_to_store_ray(
            _acts(DieOnce),
            texts,
            tmp_path / "ray",
            num_workers=1,
            texts_per_task=8,
            max_retries=0,
        )
    manifest = json.loads((tmp_path / "ray" / "manifest.json").read_text())
    assert [s["texts"] for s in manifest["shards"]] == [[0, 8]]
    assert not manifest["complete"]
    st = os.stat(tmp_path / "ray" / "shard-00000.npy")
    # the rerun (the marker exists: no failure now) resumes after shard 0
    store = extract_to_store_ray(
        _acts(DieOnce), texts, tmp_path / "ray", num_workers=1, texts_per_task=8
    )
    st2 = os.stat(tmp_path / "ray" / "shard-00000.npy")
    assert (st.st_ino, st.st_mtime_ns) == (st2.st_ino, st2.st_mtime_ns)
    _same_store(store, extract_to_store(_acts(), texts, tmp_path / "local"))


def test_workers_that_cannot_reach_the_store_are_refused_before_any_work(
    ray_cluster, texts, tmp_path
):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    with pytest.raises(StoreAccessError, match="cannot access the store folder") as e:
        extract_to_store_ray(
            _acts(), texts, tmp_path / "store", num_workers=1, worker_path=elsewhere
        )
    assert str(tmp_path / "store") in str(e.value)
    assert "worker_path" in str(e.value)
    left = sorted(os.listdir(tmp_path / "store"))
    assert not [p for p in left if "shard" in p or "probe" in p]
    assert not os.listdir(elsewhere)
    # an unfitted extractor: the check (and the model's load in the actors)
    # comes before the store is opened; nothing is written
    assert not (tmp_path / "store" / "manifest.json").exists()


def test_without_ray_the_import_error_names_the_extra(monkeypatch, texts, tmp_path):
    monkeypatch.setitem(sys.modules, "ray", None)
    with pytest.raises(ImportError, match=r"skconcepts\[ray\]"):
        extract_to_store_ray(_acts(), texts, tmp_path / "s")
    with pytest.raises(ImportError, match=r"skconcepts\[ray\]"):
        extract_to_store(_acts(), texts, tmp_path / "s", engine="ray")
    assert not (tmp_path / "s").exists()


def test_a_loaded_model_is_refused_with_the_fix(minilm, texts, tmp_path):
    pytest.importorskip("ray")
    model, tokenizer = minilm
    acts = SplitPointActivations(model, tokenizer=tokenizer, split_point=0)
    with pytest.raises(ValueError, match=r"save_pretrained\(folder\)"):
        extract_to_store_ray(acts, texts, tmp_path / "s")
    assert not (tmp_path / "s").exists()


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"num_workers": 0}, "num_workers=0"),
        ({"texts_per_task": -1}, "texts_per_task=-1"),
        ({"cpus_per_worker": -1}, "cpus_per_worker=-1"),
    ],
)
def test_bad_counts_are_refused(kwargs, match, texts, tmp_path):
    pytest.importorskip("ray")
    with pytest.raises(ValueError, match=match):
        extract_to_store_ray(_acts(), texts, tmp_path / "s", **kwargs)


def test_an_unknown_engine_is_refused(texts, tmp_path):
    with pytest.raises(ValueError, match="engine='spark'"):
        extract_to_store(_acts(), texts, tmp_path / "s", engine="spark")
