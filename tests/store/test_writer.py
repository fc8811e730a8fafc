"""Tests of the store writer (skconcepts/store/_writer.py) and write_array_store."""

import json

import numpy as np
import pytest

from skconcepts.exceptions import StoreMismatchError
from skconcepts.store import extract_to_store, write_array_store


def test_rerun_rewrites_damaged_shards(
    fresh_store, fake_activations, fake_texts, files_of
):
    original = files_of(fresh_store.path)
    path = fresh_store.path / "shard-00001.units.npy"
    path.write_bytes(path.read_bytes()[:-8])
    with pytest.warns(RuntimeWarning, match="shard-00001.units.npy"):
        extract_to_store(
            fake_activations(), fake_texts, fresh_store.path, shard_rows=25
        )
    assert files_of(fresh_store.path) == original


def test_overwrite_replaces_a_store(fresh_store, fake_activations, fake_texts):
    store = extract_to_store(
        fake_activations(d=3), fake_texts[:5], fresh_store.path, overwrite=True
    )
    assert store.shape == (sum(1 + i % 7 for i in range(5)), 3)
    assert sorted(p.name for p in fresh_store.path.iterdir()) == [
        "manifest.json",
        "shard-00000.npy",
        "shard-00000.units.jsonl",
        "shard-00000.units.npy",
    ]


def test_write_array_store_resumes_and_refuses_other_data(tmp_path, files_of):
    X = np.random.default_rng(0).normal(size=(50, 4)).astype(np.float32)
    done = write_array_store(X, tmp_path / "a", shard_rows=20)
    np.testing.assert_array_equal(done[:], X)
    assert done.units()["sample"].tolist() == list(range(50))
    reference = files_of(done.path)
    manifest = json.loads((done.path / "manifest.json").read_text())
    manifest["complete"] = False
    del manifest["shards"][1:]
    (done.path / "manifest.json").write_text(json.dumps(manifest))
    write_array_store(X, done.path, shard_rows=20)  # resumes at shard 1
    assert files_of(done.path) == reference
    with pytest.raises(StoreMismatchError, match="array"):
        write_array_store(X + 1, done.path, shard_rows=20)
    with pytest.raises(ValueError, match="must be a 2-D array"):
        write_array_store(X[0], tmp_path / "b")
