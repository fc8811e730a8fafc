"""Tests of skconcepts.io: pipelines saved with skops, loaded without running code."""

import json
import os
import pickle
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import skops.io as sio
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.pipeline import make_pipeline

from skconcepts import PCAConcepts, SplitPointActivations, TopKSAEConcepts, io
from skconcepts.datasets import embedded_model_path
from skconcepts.exceptions import PipelineFileError, UntrustedTypesError

TEXTS = ["I loved it.", "Awful!", "The cat sat on the mat.", "Dogs bark at night."]
NEW = ["A dog slept.", "Great film!"]


class Custom(TransformerMixin, BaseEstimator):
    """A transformer of this test module: not a trusted type."""

    def fit(self, X, y=None):
        return self

    def transform(self, X):
        return X


class Crafted:
    """Unpickling it creates a file (the attack a pickle allows)."""

    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return (open, (self.path, "w"))


def _pipe(model=None, tokenizer=None):
    extractor = SplitPointActivations(model, tokenizer=tokenizer, split_point=1)
    return make_pipeline(extractor, PCAConcepts(2)).fit(TEXTS)


@pytest.fixture(scope="module")
def fitted():
    return _pipe()


def _manifest(folder):
    return json.loads((Path(folder) / io.MANIFEST_FILE).read_text())


def test_round_trip_in_a_fresh_process(fitted, tmp_path):
    folder = io.save(fitted, tmp_path / "saved")
    expected = fitted.transform(NEW)
    code = (
        "import sys, numpy as np\n"
        "from skconcepts import io\n"
        "pipe = io.load(sys.argv[1])\n"
        "np.save(sys.argv[2], pipe.transform(sys.argv[3:]))\n"
    )
    out = tmp_path / "out.npy"
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).parents[1]))
    proc = subprocess.run(
        [sys.executable, "-c", code, str(folder), str(out), *NEW],
        capture_output=True, text=True, timeout=300, env=env,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    np.testing.assert_array_equal(np.load(out), expected)
    manifest = _manifest(folder)
    assert set(manifest["versions"]) >= {"skconcepts", "sklearn", "torch",
                                         "transformers"}  # fmt: skip
    assert list(manifest["sha256"]) == [io.PIPELINE_FILE]


def test_save_leaves_the_pipeline_unchanged(fitted, tmp_path):
    before = fitted.transform(NEW)
    io.save(fitted, tmp_path)
    assert hasattr(fitted[0], "model_")
    np.testing.assert_array_equal(fitted.transform(NEW), before)


def test_model_weights_never_go_into_the_skops_file(fitted, tmp_path):
    io.save(fitted, tmp_path)
    assert (tmp_path / io.PIPELINE_FILE).stat().st_size < 200_000


def test_a_loaded_model_is_saved_with_save_pretrained(tmp_path):
    from transformers import AutoModel, AutoTokenizer

    path = embedded_model_path()
    pipe = _pipe(AutoModel.from_pretrained(path), AutoTokenizer.from_pretrained(path))
    folder = io.save(pipe, tmp_path / "saved")
    files = _manifest(folder)["sha256"]
    assert any(name.startswith("model-0/") for name in files)
    assert any(name.startswith("tokenizer-0/") for name in files)
    moved = shutil.move(folder, tmp_path / "moved")  # the folder is self-contained
    np.testing.assert_allclose(
        io.load(moved).transform(NEW), pipe.transform(NEW), rtol=1e-5, atol=1e-5
    )


def test_a_changed_file_fails_its_checksum(fitted, tmp_path):
    io.save(fitted, tmp_path)
    data = bytearray((tmp_path / io.PIPELINE_FILE).read_bytes())
    data[len(data) // 2] ^= 0xFF
    (tmp_path / io.PIPELINE_FILE).write_bytes(bytes(data))
    with pytest.raises(PipelineFileError, match="sha256"):
        io.load(tmp_path)


def test_a_missing_or_bad_manifest_is_refused(fitted, tmp_path):
    io.save(fitted, tmp_path)
    (tmp_path / io.MANIFEST_FILE).write_text("{not json")
    with pytest.raises(PipelineFileError, match="manifest"):
        io.load(tmp_path)
    (tmp_path / io.MANIFEST_FILE).unlink()
    with pytest.raises(PipelineFileError, match="manifest"):
        io.load(tmp_path)


def _with_manifest(folder, data):
    """A pipeline.skops holding ``data`` with a matching manifest."""
    folder.mkdir(exist_ok=True)
    (folder / io.PIPELINE_FILE).write_bytes(data)
    import hashlib

    import sklearn

    import skconcepts

    manifest = {
        "format": io.FORMAT,
        "versions": {
            "skconcepts": skconcepts.__version__,
            "sklearn": sklearn.__version__,
        },
        "sha256": {io.PIPELINE_FILE: hashlib.sha256(data).hexdigest()},
    }
    (folder / io.MANIFEST_FILE).write_text(json.dumps(manifest))
    return folder


def test_an_untrusted_type_is_refused_unless_trusted(tmp_path):
    pipe = make_pipeline(Custom(), PCAConcepts(2)).fit(np.eye(4, 5))
    io.save(pipe, tmp_path)
    name = f"{Custom.__module__}.Custom"
    with pytest.raises(UntrustedTypesError, match=name):
        io.load(tmp_path)
    loaded = io.load(tmp_path, trusted=[name])
    assert type(loaded[0]).__name__ == "Custom"


def test_a_function_reference_is_refused(tmp_path):
    folder = _with_manifest(tmp_path / "f", sio.dumps(os.system))
    with pytest.raises(UntrustedTypesError, match="system"):
        io.load(folder)


@pytest.mark.parametrize("name", [io.PIPELINE_FILE, "pipeline.joblib"])
def test_a_crafted_pickle_never_runs(name, tmp_path):
    target = tmp_path / "created-by-the-file"
    payload = pickle.dumps(Crafted(str(target)))
    folder = _with_manifest(tmp_path / "crafted", payload)
    if name != io.PIPELINE_FILE:
        (folder / io.PIPELINE_FILE).unlink()
        (folder / name).write_bytes(payload)
    with pytest.raises(PipelineFileError):
        io.load(folder)
    assert not target.exists()


def test_a_model_folder_moved_after_save(tmp_path):
    model = shutil.copytree(embedded_model_path(), tmp_path / "model")
    pipe = _pipe(str(model))
    io.save(pipe, tmp_path / "saved")
    shutil.move(model, tmp_path / "elsewhere")
    with pytest.raises(PipelineFileError, match="does not exist"):
        io.load(tmp_path / "saved")


def test_an_unfitted_pipeline_stays_unfitted(tmp_path):
    pipe = make_pipeline(SplitPointActivations(split_point=1), PCAConcepts(2))
    loaded = io.load(io.save(pipe, tmp_path))
    assert not hasattr(loaded[0], "model_")
    assert loaded[0].get_params() == pipe[0].get_params()


def test_sparse_autoencoders_are_refused_with_a_clear_error(tmp_path):
    pipe = make_pipeline(TopKSAEConcepts(8, top_k=2, n_passes=1)).fit(
        np.random.default_rng(0).normal(size=(16, 6)).astype("float32")
    )
    with pytest.raises(TypeError, match="cannot be saved by skconcepts.io"):
        io.save(pipe, tmp_path)
    assert not (tmp_path / io.PIPELINE_FILE).exists()


def test_an_interrupted_save_keeps_the_previous_file(fitted, tmp_path, monkeypatch):
    io.save(fitted, tmp_path)
    before = (tmp_path / io.PIPELINE_FILE).read_bytes()

    def interrupt(*args):
        raise KeyboardInterrupt

    monkeypatch.setattr(os, "replace", interrupt)
    with pytest.raises(KeyboardInterrupt):
        io.save(fitted, tmp_path)
    assert (tmp_path / io.PIPELINE_FILE).read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        io.MANIFEST_FILE, io.PIPELINE_FILE,
    ]  # fmt: skip
