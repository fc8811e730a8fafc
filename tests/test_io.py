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
import torch
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.pipeline import make_pipeline

from skconcepts import PCAConcepts, SplitPointActivations, io
from skconcepts.concepts.sae import (
    BatchTopKSAEConcepts,
    JumpReLUSAEConcepts,
    MPSAEConcepts,
    SAEConcepts,
    TopKSAEConcepts,
)
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
    # control: unpickling the same bytes does create the file
    pickle.loads(payload).close()
    assert target.exists()


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


SAES = [
    (SAEConcepts, {}),
    (TopKSAEConcepts, {"top_k": 2}),
    (BatchTopKSAEConcepts, {"top_k": 2}),
    (JumpReLUSAEConcepts, {}),
    (MPSAEConcepts, {"top_k": 2}),
]
SAE_IDS = [cls.__name__ for cls, _ in SAES]


def _acts(seed, n=48):
    return np.random.default_rng(seed).normal(size=(n, 6)).astype("float32")


def _sae(cls, kwargs, **extra):
    params = {"n_passes": 2, "batch_size": 16, "random_state": 0, **kwargs, **extra}
    return cls(8, **params).fit(_acts(0))


def test_every_sae_round_trips_in_a_fresh_process(tmp_path):
    # one process loads them all (each new process pays the imports)
    folders, expected = [], []
    for cls, kwargs in SAES:
        pipe = make_pipeline(_sae(cls, kwargs))
        folders.append(str(io.save(pipe, tmp_path / cls.__name__)))
        expected.append(pipe.transform(_acts(1)))
    np.save(tmp_path / "X.npy", _acts(1))
    code = (
        "import sys, numpy as np\n"
        "from skconcepts import io\n"
        "X = np.load(sys.argv[1])\n"
        "for i, folder in enumerate(sys.argv[2:]):\n"
        "    np.save(f'{folder}.npy', io.load(folder).transform(X))\n"
    )
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).parents[1]))
    proc = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path / "X.npy"), *folders],
        capture_output=True, text=True, timeout=300, env=env,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    for folder, want in zip(folders, expected):
        np.testing.assert_array_equal(np.load(f"{folder}.npy"), want)  # bitwise


@pytest.mark.parametrize("cls, kwargs", SAES, ids=SAE_IDS)
@pytest.mark.parametrize("dead_concepts", [None, "resample"])
def test_partial_fit_after_load_continues_the_training(
    cls, kwargs, dead_concepts, tmp_path
):
    sae = _sae(cls, kwargs, dead_concepts=dead_concepts)
    loaded = io.load(io.save(make_pipeline(sae), tmp_path))[0]
    assert loaded.n_iter_ == sae.n_iter_ == 2
    assert len(loaded.net_.history) == 2
    # the optimizer state (Adam's moments and step) came back
    state = loaded.net_.optimizer_.state_dict()["state"]
    saved = sae.net_.optimizer_.state_dict()["state"]
    assert state.keys() == saved.keys() and state
    for key in saved:
        for name, value in saved[key].items():
            assert torch.equal(state[key][name], value), name
    # one more pass on new data: bitwise the pass of the model never saved
    loaded.partial_fit(_acts(2))
    sae.partial_fit(_acts(2))
    assert loaded.n_iter_ == sae.n_iter_ == 3
    np.testing.assert_array_equal(loaded.components_, sae.components_)
    np.testing.assert_array_equal(loaded.transform(_acts(1)), sae.transform(_acts(1)))
    assert loaded.net_.history[-1, "train_loss"] == sae.net_.history[-1, "train_loss"]


def test_an_sae_is_saved_as_numpy_arrays_and_builtins(tmp_path):
    sae = _sae(TopKSAEConcepts, {"top_k": 2})
    pipe = make_pipeline(sae)
    net = sae.net_
    before = sae.transform(_acts(1))
    io.save(pipe, tmp_path)
    assert sae.net_ is net  # the estimator is left as it was
    np.testing.assert_array_equal(sae.transform(_acts(1)), before)
    names = sio.get_untrusted_types(file=tmp_path / io.PIPELINE_FILE)
    assert names == ["skconcepts.concepts.sae.TopKSAEConcepts"]  # no torch, skorch


def test_an_unfitted_sae_stays_unfitted(tmp_path):
    pipe = make_pipeline(TopKSAEConcepts(8, top_k=2))
    loaded = io.load(io.save(pipe, tmp_path))
    assert not hasattr(loaded[0], "net_")
    assert loaded[0].get_params() == pipe[0].get_params()
    loaded.fit(_acts(0))  # and fits as a new one


def test_a_damaged_sae_state_is_a_pipeline_file_error(tmp_path):
    sae = _sae(TopKSAEConcepts, {"top_k": 2})
    state = sae._export_state()
    net = state["_skconcepts_io_net"]
    key = next(iter(net["parameters"]))
    net["parameters"][key] = np.zeros((1, 1), dtype="float32")  # wrong shape
    vars(sae).clear()
    vars(sae).update(state)
    folder = _with_manifest(tmp_path / "damaged", sio.dumps(make_pipeline(sae)))
    with pytest.raises(PipelineFileError, match="saved state of TopKSAEConcepts"):
        io.load(folder)


def test_sae_parameters_skops_cannot_trust_are_named(tmp_path):
    from skorch.callbacks import LRScheduler

    sae = TopKSAEConcepts(8, top_k=2, n_passes=1, callbacks=[LRScheduler()])
    io.save(make_pipeline(sae.fit(_acts(0))), tmp_path)
    with pytest.raises(UntrustedTypesError, match="LRScheduler"):
        io.load(tmp_path)


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
