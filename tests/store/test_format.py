"""The bytes a store writes (skconcepts/store/_format.py) do not change.

The digests below were computed with the single-module ``store.py`` before
it became a package: a change of the file format shows up here first.
"""

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest

import skconcepts
from skconcepts.store import extract_to_store, write_array_store

#: sha256 over (name, bytes) of every file of the store, in name order
DIGESTS = {
    "extract-float32": (
        "db56d5496735d0e0bd3e3e8f9679ae0f4d083afce748d944134b2235710913f0"
    ),
    "extract-float16": (
        "0ba5ed2976dbef1d45ca5c0dee613c433bd1f99dc5498fe66610b1c2bbe71953"
    ),
    "extract-bfloat16": (
        "83761d5341a6420abddbe57250709f1d072cefceb46458ad579b635e36f174e3"
    ),
    "array-float32": (
        "c1b5be5fdfa5591998d2b38cce633f154c5ecc9eed19ef2e9c7d9338c5990da8"
    ),
    "array-bfloat16": (
        "216ad113b32df8369e8c071c7b9a264679dbc44fc07f9e55022b736bb258eabd"
    ),
}


def _digest(path):
    """The digest of a store's files; the manifest without its ``generation``
    tokens (random per write, added after these digests were computed)."""
    h = hashlib.sha256()
    for p in sorted(Path(path).iterdir()):
        data = p.read_bytes()
        if p.name == "manifest.json":
            m = json.loads(data)
            assert isinstance(m.pop("generation"), str)
            for shard in m["shards"]:
                assert shard.pop("generation") is not None
            data = (json.dumps(m, indent=1, ensure_ascii=False) + "\n").encode()
        h.update(p.name.encode())
        h.update(data)
    return h.hexdigest()


@pytest.fixture(autouse=True)
def _version(monkeypatch):
    # the manifest records the version that wrote it: pin the one of the digests
    monkeypatch.setattr(skconcepts, "__version__", "0.1.0")


@pytest.mark.parametrize("dtype", ["float32", "float16", "bfloat16"])
def test_extracted_store_bytes_are_unchanged(
    tmp_path, fake_activations, fake_texts, dtype
):
    store = extract_to_store(
        fake_activations(), fake_texts, tmp_path, shard_rows=25, dtype=dtype
    )
    assert _digest(store.path) == DIGESTS[f"extract-{dtype}"]


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_array_store_bytes_are_unchanged(tmp_path, dtype):
    X = np.random.default_rng(0).normal(size=(50, 4)).astype(np.float32)
    store = write_array_store(X, tmp_path, shard_rows=20, dtype=dtype)
    assert _digest(store.path) == DIGESTS[f"array-{dtype}"]
