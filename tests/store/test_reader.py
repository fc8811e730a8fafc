"""Tests of ActivationStore (skconcepts/store/_reader.py): reads, checks, budget."""

import json

import numpy as np
import pandas as pd
import pytest
from sklearn.base import BaseEstimator

import skconcepts.store._reader as reader
from skconcepts.concepts._base import ConceptMixin
from skconcepts.exceptions import StoreCorruptedError
from skconcepts.store import ActivationStore, StoreTooLargeError
from skconcepts.utils.discovery import all_estimators


# ------------------------------------------------------------------ reads
@pytest.mark.parametrize(
    "key",
    [
        slice(20, 61),  # across two shard boundaries
        slice(None),
        slice(-30, None),
        slice(3, 90, 7),
        slice(80, 10, -3),
        slice(50, 40),  # empty
        [70, 0, 33, 33, -1],
        np.arange(0, 100, 9),
        (slice(10, 40), [0, 3]),
        (slice(10, 40), 2),
    ],
)
def test_slicing_matches_numpy(fake_store, fake_activations, fake_texts, key):
    full = np.concatenate([fake_activations().rows(t) for t in fake_texts])
    out = fake_store[key]
    assert out.dtype == np.float32
    np.testing.assert_array_equal(out, full[key])


def test_integer_and_mask_indexing(fake_store):
    full = fake_store.to_numpy()
    mask = np.arange(len(full)) % 3 == 0
    np.testing.assert_array_equal(fake_store[mask], full[mask])
    np.testing.assert_array_equal(fake_store[-1], full[-1])
    np.testing.assert_array_equal(fake_store[np.int64(25)], full[25])
    with pytest.raises(IndexError, match=f"row {len(full)} is out of range"):
        fake_store[len(full)]
    with pytest.raises(IndexError, match=r"must lie in"):
        fake_store[[0, 10_000]]
    with pytest.raises(TypeError, match="cannot index an ActivationStore"):
        fake_store[np.array([0.5])]


def test_iter_batches_streams_in_order(fake_store):
    full = fake_store.to_numpy()
    batches = list(fake_store.iter_batches(17))
    assert [len(b) for b in batches] == [17] * (len(full) // 17) + [len(full) % 17]
    np.testing.assert_array_equal(np.concatenate(batches), full)
    units = list(fake_store.iter_units(17))
    assert [len(u) for u in units] == [len(b) for b in batches]
    pd.testing.assert_frame_equal(
        pd.concat(units), fake_store.units(), check_index_type=False
    )


def test_shuffled_iteration_covers_rows_once_and_is_seeded(fake_store):
    full = fake_store.to_numpy()

    def run(seed):
        return np.concatenate(list(fake_store.iter_batches(8, shuffle=True, seed=seed)))

    first, again, other = run(0), run(0), run(1)
    np.testing.assert_array_equal(first, again)
    assert not np.array_equal(first, full) and not np.array_equal(first, other)
    order = np.lexsort(first.T[::-1])
    np.testing.assert_array_equal(first[order], full[np.lexsort(full.T[::-1])])
    assert len(np.unique(first, axis=0)) == len(full)


def test_iter_rows_reads_each_shard_once_into_one_buffer(fake_store, monkeypatch):
    """The shard maps' reader: batches across shard boundaries, one open per shard."""
    full = fake_store.to_numpy()
    opened = []
    real = ActivationStore._memmap

    def counting(self, i):
        opened.append(i)
        return real(self, i)

    monkeypatch.setattr(ActivationStore, "_memmap", counting)
    lo, hi = 7, len(full) - 3
    buf = np.empty((10, fake_store.n_features), dtype=np.float32)
    batches = [b.copy() for b in fake_store._iter_rows(lo, hi, 10, out=buf)]
    assert [len(b) for b in batches] == [10] * ((hi - lo) // 10) + [(hi - lo) % 10]
    np.testing.assert_array_equal(np.concatenate(batches), full[lo:hi])
    shards = sorted(
        {
            int(np.searchsorted(fake_store._offsets, r, "right")) - 1
            for r in range(lo, hi)
        }
    )
    assert len(shards) >= 3 and opened == shards  # each shard opened once, in order
    one = next(fake_store._iter_rows(lo, hi, 10, out=buf))
    assert np.shares_memory(one, buf)  # batches are views of the one buffer
    np.testing.assert_array_equal(
        np.concatenate(list(fake_store._iter_rows(0, len(full), 1000))), full
    )


def test_iter_rows_views_are_read_only_and_copy_across_shards(fake_store):
    full = fake_store.to_numpy()
    n = len(full)
    batches = list(fake_store._iter_rows(0, n, 10, view=True))
    np.testing.assert_array_equal(np.concatenate(batches), full)
    ends = set(fake_store._offsets.tolist())
    for k, b in enumerate(batches):
        lo, hi = 10 * k, 10 * k + len(b)
        inside = not any(lo < e < hi for e in ends)  # within one shard
        assert b.flags.writeable is not inside
        if inside:
            with pytest.raises(ValueError, match="read-only"):
                b[0, 0] = 1.0
    assert any(not b.flags.writeable for b in batches)
    assert any(b.flags.writeable for b in batches)  # a batch across a boundary


def test_iter_batches_rejects_bad_batch_size(fake_store):
    with pytest.raises(ValueError, match="batch_size=0 must be an integer >= 1"):
        next(fake_store.iter_batches(0))


# ------------------------------------------------------------- to_numpy
class _MeanConcepts(ConceptMixin, BaseEstimator):
    """A one-concept estimator (the mean row) to drive ConceptMixin._check_X."""

    def __init__(self, n_concepts=1, *, max_bytes=None):
        self.n_concepts = n_concepts
        self.max_bytes = max_bytes

    def _fit(self, X):
        self.components_ = X.mean(axis=0, keepdims=True)

    def _transform(self, X):
        return X @ self.components_.T


def test_to_numpy_refuses_over_budget(fake_store):
    n, d = fake_store.shape
    needed = n * d * 4
    with pytest.raises(StoreTooLargeError, match=f"to_numpy needs {needed} bytes"):
        fake_store.to_numpy(max_bytes=needed - 1)
    with pytest.raises(MemoryError, match="KMeansConcepts.*PCAConcepts"):
        fake_store.to_numpy(max_bytes=100)
    np.testing.assert_array_equal(fake_store.to_numpy(max_bytes=needed), fake_store[:])


def test_concept_estimator_fits_a_store_within_budget(fake_store):
    n, d = fake_store.shape
    with pytest.raises(
        StoreTooLargeError, match=r"_MeanConcepts needs 3100 bytes.*SAEConcepts"
    ):
        _MeanConcepts(max_bytes=1000).fit(fake_store)
    est = _MeanConcepts().fit(fake_store)
    np.testing.assert_allclose(
        est.components_[0], fake_store[:].mean(axis=0), rtol=1e-6
    )
    np.testing.assert_allclose(est.transform(fake_store), est.transform(fake_store[:]))


def test_to_numpy_names_only_the_estimators_that_stream(fake_store):
    with pytest.raises(StoreTooLargeError) as info:
        fake_store.to_numpy(max_bytes=100)
    listed = str(info.value).rsplit("partial_fit): ", 1)[1]
    names = set(listed.rstrip(".").split(", "))
    concepts = dict(all_estimators(type_filter="concept"))
    assert names == {n for n, c in concepts.items() if hasattr(c, "partial_fit")}
    assert "ICAConcepts" not in names and "ConvexNMFConcepts" not in names
    assert "max_bytes=100" in str(info.value) and "3100 bytes" in str(info.value)


# ------------------------------------------------------------- corruption
def test_corrupted_shard_is_detected_on_read(fresh_store):
    path = fresh_store.path / "shard-00001.npy"
    data = bytearray(path.read_bytes())
    data[-3] ^= 0xFF
    path.write_bytes(bytes(data))
    store = ActivationStore(fresh_store.path)
    rows0 = store.manifest["shards"][0]["rows"]
    store[:rows0]  # shard 0 is fine and read lazily
    with pytest.raises(
        StoreCorruptedError, match="shard-00001.npy' fails its checksum"
    ):
        store[: rows0 + 1]
    with pytest.raises(StoreCorruptedError, match="shard-00001.npy"):
        list(store.iter_batches(10))
    with pytest.raises(StoreCorruptedError, match="shard-00001.npy"):
        store.verify_all()
    # without checksums the change goes unnoticed: the check is what catches it
    assert (
        ActivationStore(fresh_store.path, verify=False)[: rows0 + 1].shape[0]
        == rows0 + 1
    )


def test_truncated_and_missing_shards_are_detected(fresh_store):
    path = fresh_store.path / "shard-00002.npy"
    path.write_bytes(path.read_bytes()[:-40])
    store = ActivationStore(fresh_store.path, verify=False)
    with pytest.raises(StoreCorruptedError, match="shard-00002.npy' has .* truncated"):
        store.to_numpy()
    (fresh_store.path / "shard-00003.units.jsonl").unlink()
    with pytest.raises(
        StoreCorruptedError, match="shard-00003.units.jsonl' is missing"
    ):
        store.units()


def test_incomplete_and_missing_stores(fresh_store, tmp_path):
    manifest = json.loads((fresh_store.path / "manifest.json").read_text())
    manifest["complete"] = False
    del manifest["shards"][2:]
    (fresh_store.path / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ValueError, match="incomplete: .* after 2 shards"):
        ActivationStore(fresh_store.path)
    partial = ActivationStore(fresh_store.path, allow_incomplete=True)
    assert partial.n_shards == 2
    with pytest.raises(FileNotFoundError, match="No ActivationStore at"):
        ActivationStore(tmp_path / "nowhere")


def test_budget_error_survives_a_failing_estimator_list(fake_store, monkeypatch):
    def broken():
        raise ImportError("no optional dependency")

    monkeypatch.setattr(reader, "streaming_estimator_names", broken)
    with pytest.raises(StoreTooLargeError, match="estimators that have partial_fit"):
        fake_store.to_numpy(max_bytes=100)
