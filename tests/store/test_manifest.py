"""A hand-edited or damaged manifest gives StoreCorruptedError naming the field
and the file, never a bare KeyError (issue 12, item 14)."""

import json

import numpy as np
import pytest

from skconcepts.exceptions import StoreCorruptedError
from skconcepts.store import ActivationStore, extract_to_store, write_array_store


@pytest.fixture
def store_path(tmp_path, fake_activations, fake_texts):
    extract_to_store(fake_activations(), fake_texts, tmp_path, shard_rows=25)
    return tmp_path


def _edit(path, change):
    file = path / "manifest.json"
    m = json.loads(file.read_text())
    change(m)
    file.write_text(json.dumps(m))


def _pop(*keys):
    def change(m):
        obj = m
        for k in keys[:-1]:
            obj = obj[k]
        del obj[keys[-1]]

    return change


def _set(value, *keys):
    def change(m):
        obj = m
        for k in keys[:-1]:
            obj = obj[k]
        obj[keys[-1]] = value

    return change


CASES = [
    (_pop("dtype"), "dtype"),
    (_set("float64", "dtype"), "dtype"),
    (_set("complex", "dtype"), "dtype"),
    (_pop("n_features"), "n_features"),
    (_set("384", "n_features"), "n_features"),
    (_pop("complete"), "complete"),
    (_set("yes", "complete"), "complete"),
    (_pop("shards"), "shards"),
    (_set({}, "shards"), "shards"),
    (_pop("n_texts"), "n_texts"),
    (_pop("units_columns"), "units_columns"),
    (_set([["sample", "object"]], "units_columns"), "units_columns"),
    (_pop("shards", 0, "rows"), r"shards\[0\]\.rows"),
    (_set(-1, "shards", 1, "rows"), r"shards\[1\]\.rows"),
    (_pop("shards", 0, "files"), r"shards\[0\]\.files"),
    (_pop("shards", 0, "files", "data"), r"shards\[0\]\.files"),
    (_pop("shards", 1, "files", "data", "sha256"), r"shards\[1\]\.files\.data\.sha256"),
    (_set("12", "shards", 0, "files", "units", "bytes"), r"files\.units\.bytes"),
    (_set("../../x.npy", "shards", 0, "files", "data", "name"), r"files\.data\.name"),
    (_set([0], "shards", 0, "texts"), r"shards\[0\]\.texts"),
    (_set([5, 9], "shards", 1, "texts"), r"shards\[1\]\.texts"),
    (_set("x", "format_version"), "format_version"),
    (_set(3, "generation"), "generation"),
    (_set(7, "source"), "source"),
]


@pytest.mark.parametrize("change, field", CASES)
def test_an_invalid_manifest_names_the_field(store_path, change, field):
    _edit(store_path, change)
    with pytest.raises(StoreCorruptedError, match=field) as info:
        ActivationStore(store_path)
    assert str(store_path / "manifest.json") in str(info.value)


def test_a_manifest_that_is_not_an_object(store_path):
    (store_path / "manifest.json").write_text("[1, 2]")
    with pytest.raises(StoreCorruptedError, match="JSON list, not an object"):
        ActivationStore(store_path)


def test_a_writer_resuming_an_invalid_manifest_names_the_field(
    store_path, fake_activations, fake_texts
):
    _edit(store_path, _pop("shards", 0, "texts"))
    with pytest.raises(StoreCorruptedError, match=r"shards\[0\]\.texts"):
        extract_to_store(fake_activations(), fake_texts, store_path, shard_rows=25)
    # overwrite=True replaces it, as the message says
    extract_to_store(
        fake_activations(), fake_texts, store_path, shard_rows=25, overwrite=True
    )
    ActivationStore(store_path).verify_all()


def test_a_store_without_generation_still_reads(tmp_path):
    X = np.ones((6, 2), np.float32)
    write_array_store(X, tmp_path, shard_rows=4)

    def drop(m):
        del m["generation"]
        for s in m["shards"]:
            del s["generation"]

    _edit(tmp_path, drop)
    np.testing.assert_array_equal(ActivationStore(tmp_path)[:], X)


def _rows(path):
    return json.loads((path / "manifest.json").read_text())["shards"][0]["rows"]


def _rewrite_unverified(path, name, data):
    (path / name).write_bytes(data)
    # the manifest's size follows, so only the content is wrong (verify=False)
    _edit(
        path,
        lambda m: m["shards"][0]["files"]["strings"].update(bytes=len(data)),
    )


@pytest.mark.parametrize(
    "data, match",
    [(b"not json\n", "not valid JSON lines"), (b'["a", "b"]\n', "line 1 holds")],
)
def test_damaged_units_strings_name_the_file(store_path, data, match):
    data *= _rows(store_path)
    _rewrite_unverified(store_path, "shard-00000.units.jsonl", data)
    store = ActivationStore(store_path, verify=False)
    with pytest.raises(StoreCorruptedError, match=match):
        store.units()


def test_units_with_other_columns_name_the_file(store_path):
    import io

    buf = io.BytesIO()
    np.save(buf, np.zeros(_rows(store_path), dtype=[("x", "<i8")]))
    (store_path / "shard-00000.units.npy").write_bytes(buf.getvalue())
    _edit(
        store_path,
        lambda m: m["shards"][0]["files"]["units"].update(bytes=len(buf.getvalue())),
    )
    store = ActivationStore(store_path, verify=False)
    with pytest.raises(StoreCorruptedError, match="holds the columns"):
        store.units()
