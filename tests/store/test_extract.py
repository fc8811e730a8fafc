"""Tests of extract_to_store (skconcepts/store/_extract.py): values, resume."""

import hashlib
import json
import os
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

from skconcepts import SplitPointActivations
from skconcepts.exceptions import StoreMismatchError
from skconcepts.store import ActivationStore, extract_to_store
from skconcepts.store import _extract as extract_module
from skconcepts.store._extract import _chunk_texts

REPO = Path(__file__).resolve().parents[2]


# ------------------------------------------------------------- round trip
def test_round_trip_equals_transform_and_units(acts, texts, minilm_store):
    store = minilm_store
    assert store.n_shards >= 3
    full = acts.transform(texts)
    assert store.shape == full.shape == (len(store), 384)
    # rows are computed in chunks of texts (about a shard of rows, at least
    # batch_size texts): bitwise equal to transform of the same chunks, equal up
    # to rounding to a whole transform
    step = store.manifest["chunk_texts"]
    assert 4 <= step < len(texts)  # several chunks: shard_rows=60 is small
    nocache = clone(acts).set_params(cache=False).fit()
    chunked = np.concatenate(
        [nocache.transform(texts[a : a + step]) for a in range(0, len(texts), step)]
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


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_half_precision_dtypes(tmp_path, fake_activations, fake_texts, dtype):
    store = extract_to_store(
        fake_activations(), fake_texts, tmp_path, shard_rows=25, dtype=dtype
    )
    full = torch.from_numpy(fake_activations().transform(fake_texts))
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
    store = extract_to_store(bf16, texts[:8], tmp_path / "one", dtype="bfloat16")
    bf16.set_params(cache=False)
    assert store.manifest["chunk_texts"] >= 8  # one chunk: one transform
    np.testing.assert_array_equal(store[:], bf16.transform(texts[:8]).float().numpy())
    store = extract_to_store(
        bf16, texts[:8], tmp_path / "two", dtype="bfloat16", shard_rows=1
    )
    assert store.manifest["chunk_texts"] == 4  # batch_size texts at the least
    chunked = torch.cat([bf16.transform(texts[a : a + 4]) for a in (0, 4)])
    np.testing.assert_array_equal(store[:], chunked.float().numpy())


def test_chunks_hold_about_one_shard_of_rows(acts, texts, tmp_path, fake_activations):
    # the extractor sorts a chunk's texts by length: chunks of batch_size texts
    # padded every model batch (2.6 times one transform on rt_polarity), so a
    # chunk holds about one shard of rows, estimated from the texts' length
    rows_per_text = 2 + np.mean([len(t) for t in texts]) / 4
    for shard_rows in (1, 60, 200, 10**9, None):
        expected = (10**9 if shard_rows is None else shard_rows) // rows_per_text
        expected = int(min(4096, max(4, expected)))
        if shard_rows is None:  # 64 MiB of 384 float32: 43 690 rows
            expected = int(
                min(4096, max(4, (64 * 2**20 // (384 * 4)) // rows_per_text))
            )
        assert _chunk_texts(acts, texts, shard_rows, "float32") == expected
    assert _chunk_texts(acts, texts, None, "float32") > len(texts)
    assert _chunk_texts(acts, texts, 10**9, "float32") == 4096
    sample = clone(acts).set_params(granularity="sample").fit()
    assert _chunk_texts(sample, texts, 60, "float32") == 60  # one row per text
    # an extractor that does not say its width keeps batch_size texts
    assert _chunk_texts(fake_activations(batch_size=3), texts, 60, "float32") == 3
    # the default store of a small corpus is one chunk: bitwise one transform
    nocache = clone(acts).set_params(cache=False).fit()
    store = extract_to_store(nocache, texts, tmp_path)
    assert store.manifest["chunk_texts"] > len(texts)
    np.testing.assert_array_equal(store[:], nocache.transform(texts))
    pd.testing.assert_frame_equal(store.units(), acts.units(texts))


def test_a_resumed_store_keeps_the_chunks_of_its_manifest(
    acts, texts, tmp_path, monkeypatch
):
    # a store begun with other chunks (e.g. batch_size texts, as before chunks
    # were sized by rows) is resumed with its own: bitwise the same rows
    nocache = clone(acts).set_params(cache=False).fit()
    with monkeypatch.context() as patch:
        patch.setattr(extract_module, "_chunk_texts", lambda *args: 4)
        ref = extract_to_store(nocache, texts, tmp_path / "ref", shard_rows=150)
        calls = []
        inner = nocache.iter_batches

        def interrupt(*args, **kwargs):
            calls.append(1)
            if len(calls) == 5:  # after the first shard (4 chunks)
                raise RuntimeError("interrupted")
            yield from inner(*args, **kwargs)

        patch.setattr(nocache, "iter_batches", interrupt)
        with pytest.raises(RuntimeError, match="interrupted"):
            extract_to_store(nocache, texts, tmp_path / "cut", shard_rows=150)
    cut = json.loads((tmp_path / "cut" / "manifest.json").read_text())
    assert cut["chunk_texts"] == 4 and not cut["complete"] and cut["shards"]
    assert len(cut["shards"]) == 1
    assert extract_module._chunk_texts(nocache, texts, 150, "float32") > 4
    resumed = extract_to_store(nocache, texts, tmp_path / "cut", shard_rows=150)
    assert resumed.manifest["chunk_texts"] == 4
    np.testing.assert_array_equal(resumed[:], ref[:])


class _NoBatches(BaseEstimator):
    """An extractor without the public ``iter_batches``."""

    def fit(self, X=None, y=None):
        self.model_ = "fake"
        return self

    def _iter_batches(self, texts, **kwargs):  # pragma: no cover - never called
        raise AssertionError("extract_to_store called a private method")


def test_extraction_needs_the_public_iter_batches(tmp_path, fake_texts):
    with pytest.raises(TypeError, match="must be a SplitPointActivations"):
        extract_to_store(_NoBatches(), fake_texts, tmp_path / "a")


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


def test_argument_errors(tmp_path, fake_activations, fake_texts):
    fake = fake_activations()
    with pytest.raises(ValueError, match="dtype='int8' is not supported"):
        extract_to_store(fake, fake_texts, tmp_path / "a", dtype="int8")
    with pytest.raises(ValueError, match="shard_rows=0 must be an integer >= 1"):
        extract_to_store(fake, fake_texts, tmp_path / "a", shard_rows=0)
    with pytest.raises(TypeError, match="wrap it in a list"):
        extract_to_store(fake, "one text", tmp_path / "a")
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "notes.txt").write_text("mine")
    with pytest.raises(ValueError, match="is a folder that is not an ActivationStore"):
        extract_to_store(fake, fake_texts, tmp_path / "b")


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


def test_sigkill_then_rerun_gives_the_uninterrupted_store(tmp_path, files_of):
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
    assert files_of(killed) == files_of(reference)  # every shard file and manifest
    a, b = ActivationStore(killed), ActivationStore(reference)
    np.testing.assert_array_equal(a.to_numpy(), b.to_numpy())
    pd.testing.assert_frame_equal(a.units(), b.units())


def test_the_extractor_keyword_and_its_deprecated_spelling(
    tmp_path, fake_activations, fake_texts
):
    fake = fake_activations()
    new = extract_to_store(extractor=fake, texts=fake_texts, path=tmp_path / "new")
    with pytest.warns(FutureWarning, match=r"use extract_to_store\(extractor=\.\.\.\)"):
        old = extract_to_store(
            activations=fake, texts=fake_texts, path=tmp_path / "old"
        )
    np.testing.assert_array_equal(old[:], new[:])
    with pytest.raises(TypeError, match="both extractor= and its deprecated"):
        extract_to_store(
            fake,
            fake_texts,
            tmp_path / "both",
            activations=fake,
        )
