"""Tests of transform_store (skconcepts/store/_transform.py)."""

import json
import threading

import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.decomposition import PCA

from skconcepts.exceptions import StoreMismatchError
from skconcepts.store import ActivationStore, transform_store, write_array_store
from skconcepts.store._writer import _StoreWriter


def test_transform_store_writes_concepts_with_the_same_units(fake_store, tmp_path):
    X = fake_store[:]
    pca = PCA(n_components=3, random_state=0).fit(X)
    concepts = transform_store(pca, fake_store, tmp_path / "c", batch_size=7)
    assert concepts.shape == (len(X), 3)
    assert [s["rows"] for s in concepts.manifest["shards"]] == [
        s["rows"] for s in fake_store.manifest["shards"]
    ]
    np.testing.assert_allclose(concepts[:], pca.transform(X), rtol=1e-5, atol=1e-6)
    pd.testing.assert_frame_equal(concepts.units(), fake_store.units())
    assert concepts.feature_names == ["pca0", "pca1", "pca2"]
    assert concepts.manifest["kind"] == "concepts"
    for role in ("units", "strings"):
        assert (
            concepts.manifest["shards"][1]["files"][role]["sha256"]
            == fake_store.manifest["shards"][1]["files"][role]["sha256"]
        )


def test_transform_store_resumes_and_refuses_another_estimator(
    fake_store, tmp_path, files_of
):
    X = fake_store[:]
    pca = PCA(n_components=3, random_state=0).fit(X)
    done = transform_store(pca, fake_store, tmp_path / "c")
    reference = files_of(done.path)
    manifest = json.loads((done.path / "manifest.json").read_text())
    manifest["complete"] = False
    del manifest["shards"][1:]
    (done.path / "manifest.json").write_text(json.dumps(manifest))
    transform_store(pca, fake_store, done.path)  # resumes at shard 1
    assert files_of(done.path) == reference
    other = PCA(n_components=3, random_state=0).fit(X[:50])
    with pytest.raises(StoreMismatchError, match="estimator.probe_sha256"):
        transform_store(other, fake_store, done.path)


class _TorchScaler(TransformerMixin, BaseEstimator):
    """Returns a float64 torch tensor: the store writes it as float32."""

    def fit(self, X, y=None):
        self.fitted_ = True
        return self

    def transform(self, X):
        return torch.from_numpy(np.asarray(X, dtype=np.float64) * 2)


def test_transform_store_accepts_tensor_outputs(fake_store, tmp_path):
    est = _TorchScaler().fit(fake_store[:])
    out = transform_store(est, fake_store, tmp_path / "t")
    np.testing.assert_array_equal(out[:], fake_store[:] * 2)
    assert out.feature_names is None


def test_transform_store_refuses_to_write_over_its_input(fresh_store):
    pca = PCA(2).fit(fresh_store[:])
    for overwrite in (False, True):
        with pytest.raises(ValueError, match="the folder of the store being"):
            transform_store(pca, fresh_store, fresh_store.path, overwrite=overwrite)
    fresh_store.verify_all()  # untouched


def test_an_incomplete_store_names_the_call_that_finishes_it(tmp_path):
    write_array_store(np.ones((4, 2), np.float32), tmp_path, shard_rows=2)
    file = tmp_path / "manifest.json"
    m = json.loads(file.read_text())
    m["complete"] = False
    file.write_text(json.dumps(m))
    with pytest.raises(ValueError, match="Rerun the same write_array_store call"):
        ActivationStore(tmp_path)


class _FailingPCA(TransformerMixin, BaseEstimator):
    """A fitted PCA's transform that raises at call ``fail_at`` (1 is the probe)."""

    def __init__(self, pca, fail_at=None):
        self.pca = pca
        self.fail_at = fail_at

    def fit(self, X, y=None):
        self.calls_ = 0
        return self

    def transform(self, X):
        self.calls_ += 1
        if self.calls_ == self.fail_at:
            raise RuntimeError("interrupted")
        return self.pca.transform(X)


def test_shards_are_written_in_the_background_and_a_failure_keeps_them(
    fake_store, tmp_path, files_of, monkeypatch
):
    # a shard is written by another thread while the next one is transformed;
    # a failure mid-way leaves the published shards, and a rerun completes the
    # store to the files of an uninterrupted run
    X = fake_store[:]
    assert fake_store.n_shards >= 3
    pca = PCA(n_components=3, random_state=0).fit(X)
    reference = files_of(
        transform_store(_FailingPCA(pca).fit(X), fake_store, tmp_path / "ref").path
    )
    threads = []
    write_shard = _StoreWriter.write_shard

    def spy(self, *args, **kwargs):
        threads.append(threading.get_ident())
        return write_shard(self, *args, **kwargs)

    monkeypatch.setattr(_StoreWriter, "write_shard", spy)
    path = tmp_path / "cut"
    with pytest.raises(RuntimeError, match="interrupted"):
        transform_store(_FailingPCA(pca, fail_at=4).fit(X), fake_store, path)
    assert threads and threading.get_ident() not in threads
    cut = json.loads((path / "manifest.json").read_text())
    assert not cut["complete"] and len(cut["shards"]) == 2  # shards 0 and 1
    done = transform_store(_FailingPCA(pca).fit(X), fake_store, path)
    assert files_of(done.path) == reference
    np.testing.assert_allclose(done[:], pca.transform(X), rtol=1e-5, atol=1e-6)
