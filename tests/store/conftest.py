"""Fixtures of the store tests: a model-free extractor, and stores written once."""

import hashlib
import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from sklearn.base import BaseEstimator

from skconcepts import SplitPointActivations
from skconcepts.store import extract_to_store


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


def _without_generation(manifest_bytes):
    """A manifest with its random ``generation`` tokens removed."""
    m = json.loads(manifest_bytes)
    m.pop("generation", None)
    for shard in m["shards"]:
        shard.pop("generation", None)
    return json.dumps(m, sort_keys=True).encode()


def _files(path):
    """``{name: bytes}`` of a store's files (lock file aside); the manifest
    without its generation tokens, which are random per write."""
    files = {
        p.name: p.read_bytes()
        for p in sorted(Path(path).iterdir())
        if not p.name.startswith(".skconcepts-store.lock")
    }
    if "manifest.json" in files:
        files["manifest.json"] = _without_generation(files["manifest.json"])
    return files


@pytest.fixture(scope="session")
def fake_activations():
    """The model-free extractor class (call it for an instance)."""
    return FakeActivations


@pytest.fixture(scope="session")
def fake_texts():
    """40 texts of 1 to 7 words."""
    return FAKE_TEXTS


@pytest.fixture(scope="session")
def files_of():
    """``files_of(path)``: ``{name: bytes}`` of every file of a folder."""
    return _files


@pytest.fixture(scope="module")
def fake_store(tmp_path_factory):
    path = tmp_path_factory.mktemp("fake")
    return extract_to_store(FakeActivations(), FAKE_TEXTS, path, shard_rows=25)


@pytest.fixture
def fresh_store(tmp_path):
    return extract_to_store(FakeActivations(), FAKE_TEXTS, tmp_path, shard_rows=25)


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
