"""Tests of the on-disk ActivationStore, extract_to_store and transform_store."""

import hashlib
import json
import os
import re
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.base import BaseEstimator, clone
from sklearn.decomposition import PCA

from skconcepts import SplitPointActivations
from skconcepts.concepts._base import ConceptMixin
from skconcepts.exceptions import StoreCorruptedError, StoreMismatchError
from skconcepts.store import (
    ActivationStore,
    StoreTooLargeError,
    extract_to_store,
    transform_store,
)

REPO = Path(__file__).resolve().parents[1]


# ----------------------------------------------------------------- fixtures
class FakeActivations(BaseEstimator):
    """A model-free extractor: one random row per word, seeded by the text."""

    def __init__(self, d=5, split_point=0, batch_size=3):
        self.d = d
        self.split_point = split_point
        self.batch_size = batch_size

    def fit(self, X=None, y=None):
        self.model_ = "fake"
        return self

    def rows(self, text):
        seed = int(hashlib.sha256(text.encode()).hexdigest()[:8], 16)
        n = len(text.split())
        return np.random.default_rng(seed).standard_normal((n, self.d), np.float32)

    def spans(self, text):
        spans = [m.span() for m in re.finditer(r"\S+", text)]
        return np.asarray(spans, dtype=np.int64).reshape(-1, 2)

    def iter_batches(self, texts, *, use_cache=None, chunk_size=None):
        chunk_size = chunk_size or 4096
        for a in range(0, len(texts), chunk_size):
            chunk = texts[a : a + chunk_size]
            yield (
                np.arange(a, a + len(chunk)),
                [torch.from_numpy(self.rows(t)) for t in chunk],
                [self.spans(t) for t in chunk],
            )

    def transform(self, texts):
        return np.concatenate([self.rows(t) for t in texts])


FAKE_TEXTS = [" ".join(f"w{i}x{j}" for j in range(1 + i % 7)) for i in range(40)]


@pytest.fixture(scope="module")
def fake_store(tmp_path_factory):
    path = tmp_path_factory.mktemp("fake")
    return extract_to_store(FakeActivations(), FAKE_TEXTS, path, shard_rows=25)


@pytest.fixture(scope="module")
def texts(demo_corpus):
    return demo_corpus[0][:24]


@pytest.fixture(scope="module")
def acts(minilm):
    model, tokenizer = minilm
    return SplitPointActivations(
        model, tokenizer=tokenizer, split_point=1, batch_size=4
    ).fit()


@pytest.fixture(scope="module")
def minilm_store(acts, texts, tmp_path_factory):
    path = tmp_path_factory.mktemp("minilm")
    return extract_to_store(acts, texts, path, shard_rows=60)


def _files(path):
    return {p.name: p.read_bytes() for p in sorted(Path(path).iterdir())}


# ------------------------------------------------------------- round trip
def test_round_trip_equals_transform_and_units(acts, texts, minilm_store):
    store = minilm_store
    assert store.n_shards >= 3
    full = acts.transform(texts)
    assert store.shape == full.shape == (len(store), 384)
    # rows are computed in chunks of batch_size texts: bitwise equal to
    # transform of the same chunks, equal up to rounding to a whole transform
    nocache = clone(acts).set_params(cache=False).fit()
    chunked = np.concatenate(
        [nocache.transform(texts[a : a + 4]) for a in range(0, len(texts), 4)]
    )
    np.testing.assert_array_equal(store[:], chunked)
    np.testing.assert_allclose(store.to_numpy(), full, rtol=0, atol=1e-5)
    pd.testing.assert_frame_equal(store.units(), acts.units(texts))
    # a shard boundary never splits a text
    for units, shard in zip(store.iter_units(), store.manifest["shards"]):
        a, b = shard["texts"]
        assert units["sample"].min() == a and units["sample"].max() == b - 1


def test_manifest_records_the_source(minilm_store, texts):
    m = minilm_store.manifest
    assert m["source"]["split_point"] == 1
    assert m["source"]["split_module"] == "encoder.layer.1"
    assert m["source"]["granularity"] == "token"
    assert m["source"]["aggregation"] == "mean"
    assert m["source"]["model"]["class"] == "BertModel"
    assert m["dtype"] == "float32" and m["n_features"] == 384
    assert m["n_texts"] == len(texts) and m["complete"]
    assert sum(s["rows"] for s in m["shards"]) == m["n_rows"] == len(minilm_store)
    for shard in m["shards"]:
        for info in shard["files"].values():
            file = minilm_store.path / info["name"]
            assert hashlib.sha256(file.read_bytes()).hexdigest() == info["sha256"]
    assert not [p for p in minilm_store.path.iterdir() if p.name.startswith(".")]


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
def test_slicing_matches_numpy(fake_store, key):
    full = np.concatenate([FakeActivations().rows(t) for t in FAKE_TEXTS])
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


def test_iter_batches_rejects_bad_batch_size(fake_store):
    with pytest.raises(ValueError, match="batch_size=0 must be an integer >= 1"):
        next(fake_store.iter_batches(0))


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_half_precision_dtypes(tmp_path, dtype):
    store = extract_to_store(
        FakeActivations(), FAKE_TEXTS, tmp_path, shard_rows=25, dtype=dtype
    )
    full = torch.from_numpy(FakeActivations().transform(FAKE_TEXTS))
    expected = full.to(getattr(torch, dtype)).float().numpy()
    np.testing.assert_array_equal(store[:], expected)
    np.testing.assert_array_equal(np.concatenate(list(store.iter_batches(9))), expected)
    on_disk = np.load(tmp_path / "shard-00000.npy")
    assert on_disk.dtype == (np.uint16 if dtype == "bfloat16" else np.float16)
    assert store.dtype == dtype


def test_store_of_a_bfloat16_extractor(acts, texts, tmp_path):
    bf16 = SplitPointActivations(
        acts.model,
        tokenizer=acts.tokenizer,
        split_point=1,
        batch_size=4,
        dtype="bfloat16",
    ).fit()
    store = extract_to_store(bf16, texts[:8], tmp_path, dtype="bfloat16")
    bf16.set_params(cache=False)
    chunked = torch.cat([bf16.transform(texts[a : a + 4]) for a in (0, 4)])
    np.testing.assert_array_equal(store[:], chunked.float().numpy())


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


# ------------------------------------------------------------- corruption
@pytest.fixture
def fresh_store(tmp_path):
    return extract_to_store(FakeActivations(), FAKE_TEXTS, tmp_path, shard_rows=25)


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


def test_rerun_rewrites_damaged_shards(fresh_store):
    original = _files(fresh_store.path)
    path = fresh_store.path / "shard-00001.units.npy"
    path.write_bytes(path.read_bytes()[:-8])
    with pytest.warns(RuntimeWarning, match="shard-00001.units.npy"):
        extract_to_store(FakeActivations(), FAKE_TEXTS, fresh_store.path, shard_rows=25)
    assert _files(fresh_store.path) == original


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


# ------------------------------------------------------------- mismatches
def test_mismatching_rerun_is_refused(acts, texts, minilm_store, minilm):
    path = minilm_store.path
    model, tokenizer = minilm
    other = SplitPointActivations(
        model, tokenizer=tokenizer, split_point=2, batch_size=4
    )
    with pytest.raises(
        StoreMismatchError, match=r"split_point \(store: 1, this call: 2\)"
    ):
        extract_to_store(other, texts, path, shard_rows=60)
    changed = list(texts)
    changed[-1] = changed[-1] + " (edited)"
    last = len(minilm_store.manifest["shards"]) - 1
    with pytest.raises(
        StoreMismatchError, match=rf"texts .*first differing shard: shard-0000{last}"
    ):
        extract_to_store(acts, changed, path, shard_rows=60)
    with pytest.raises(StoreMismatchError, match="texts .*24 texts.*23 texts"):
        extract_to_store(acts, texts[:-1], path, shard_rows=60)
    with pytest.raises(StoreMismatchError, match="dtype .*'float32'.*'float16'"):
        extract_to_store(acts, texts, path, shard_rows=60, dtype="float16")
    sample = SplitPointActivations(
        model, tokenizer=tokenizer, split_point=1, batch_size=4, granularity="sample"
    )
    with pytest.raises(StoreMismatchError, match="granularity"):
        extract_to_store(sample, texts, path, shard_rows=60)
    # the same call is not refused: the store is complete, nothing to do
    assert (
        extract_to_store(acts, texts, path, shard_rows=60).shape == minilm_store.shape
    )


def test_overwrite_replaces_a_store(fresh_store):
    store = extract_to_store(
        FakeActivations(d=3), FAKE_TEXTS[:5], fresh_store.path, overwrite=True
    )
    assert store.shape == (sum(1 + i % 7 for i in range(5)), 3)
    assert sorted(p.name for p in fresh_store.path.iterdir()) == [
        "manifest.json",
        "shard-00000.npy",
        "shard-00000.units.jsonl",
        "shard-00000.units.npy",
    ]


def test_argument_errors(tmp_path):
    fake = FakeActivations()
    with pytest.raises(ValueError, match="dtype='int8' is not supported"):
        extract_to_store(fake, FAKE_TEXTS, tmp_path / "a", dtype="int8")
    with pytest.raises(ValueError, match="shard_rows=0 must be an integer >= 1"):
        extract_to_store(fake, FAKE_TEXTS, tmp_path / "a", shard_rows=0)
    with pytest.raises(TypeError, match="wrap it in a list"):
        extract_to_store(fake, "one text", tmp_path / "a")
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "notes.txt").write_text("mine")
    with pytest.raises(ValueError, match="is a folder that is not an ActivationStore"):
        extract_to_store(fake, FAKE_TEXTS, tmp_path / "b")


# ------------------------------------------------------------- transform_store
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


def test_transform_store_resumes_and_refuses_another_estimator(fake_store, tmp_path):
    X = fake_store[:]
    pca = PCA(n_components=3, random_state=0).fit(X)
    done = transform_store(pca, fake_store, tmp_path / "c")
    reference = _files(done.path)
    manifest = json.loads((done.path / "manifest.json").read_text())
    manifest["complete"] = False
    del manifest["shards"][1:]
    (done.path / "manifest.json").write_text(json.dumps(manifest))
    transform_store(pca, fake_store, done.path)  # resumes at shard 1
    assert _files(done.path) == reference
    other = PCA(n_components=3, random_state=0).fit(X[:50])
    with pytest.raises(StoreMismatchError, match="estimator.probe_sha256"):
        transform_store(other, fake_store, done.path)


# ------------------------------------------------------------- kill + resume
_SCRIPT = textwrap.dedent(
    """
    import os, sys, time
    from skconcepts import SplitPointActivations
    from skconcepts.datasets import load_demo_corpus, load_embedded_model
    from skconcepts.store import extract_to_store

    model, tokenizer = load_embedded_model()
    acts = SplitPointActivations(model, tokenizer=tokenizer, split_point=2,
                                 batch_size=4).fit()
    delay = float(os.environ.get("STORE_TEST_DELAY", "0"))
    if delay:  # slow each chunk down so that the kill lands mid-way
        inner = acts.iter_batches
        def slow(*args, **kwargs):
            time.sleep(delay)
            yield from inner(*args, **kwargs)
        acts.iter_batches = slow
    texts = load_demo_corpus()[0][:60]
    for path in sys.argv[1:]:
        extract_to_store(acts, texts, path, shard_rows=50)
    """
)


def _extract_in_subprocess(*paths, delay=0.0):
    # one thread: fast on a busy machine, and the same arithmetic in every run
    env = {
        **os.environ,
        "STORE_TEST_DELAY": str(delay),
        "PYTHONPATH": str(REPO),
        "OMP_NUM_THREADS": "1",
    }
    return subprocess.Popen(
        [sys.executable, "-c", _SCRIPT, *map(str, paths)],
        env=env,
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


def _n_shards(path):
    try:
        return len(json.loads((path / "manifest.json").read_text())["shards"])
    except (OSError, ValueError):
        return 0


def test_sigkill_then_rerun_gives_the_uninterrupted_store(tmp_path):
    reference, killed = tmp_path / "reference", tmp_path / "killed"
    proc = _extract_in_subprocess(killed, delay=0.3)
    deadline = time.monotonic() + 120
    while _n_shards(killed) < 1:
        assert proc.poll() is None, proc.communicate()[1].decode()[-2000:]
        assert time.monotonic() < deadline, "no shard was written in 120 s"
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.communicate()
    assert proc.returncode == -signal.SIGKILL
    interrupted = json.loads((killed / "manifest.json").read_text())
    first = (killed / "shard-00000.npy").stat()

    # a fresh process resumes the killed store, then writes a store uninterrupted
    rerun = _extract_in_subprocess(killed, reference)
    _, err = rerun.communicate(timeout=300)
    assert rerun.returncode == 0, err.decode()[-2000:]
    full = json.loads((reference / "manifest.json").read_text())
    again = (killed / "shard-00000.npy").stat()
    assert (again.st_ino, again.st_mtime_ns) == (first.st_ino, first.st_mtime_ns)
    assert not interrupted["complete"]
    assert 1 <= len(interrupted["shards"]) < len(full["shards"])
    assert _files(killed) == _files(reference)  # every shard file and the manifest
    a, b = ActivationStore(killed), ActivationStore(reference)
    np.testing.assert_array_equal(a.to_numpy(), b.to_numpy())
    pd.testing.assert_frame_equal(a.units(), b.units())
