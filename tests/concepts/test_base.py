"""ConceptMixin's shared pieces: the public re-export, AffineDecoder, devices."""

import pickle
import subprocess
import sys

import numpy as np
import pytest
import torch

from skconcepts.concepts import (
    ConceptMixin,
    DictionaryLearningConcepts,
    ICAConcepts,
    KMeansConcepts,
    NMFConcepts,
    PCAConcepts,
    SparsePCAConcepts,
    SVDConcepts,
)
from skconcepts.concepts._base import AffineDecoder
from skconcepts.utils.discovery import all_estimators

CONCEPTS = dict(all_estimators(type_filter="concept"))


def test_concept_mixin_is_public_and_import_skconcepts_stays_torch_free():
    assert issubclass(PCAConcepts, ConceptMixin)
    import skconcepts.concepts

    assert "ConceptMixin" in dir(skconcepts.concepts)
    code = "import sys, skconcepts, skconcepts.concepts; print('torch' in sys.modules)"
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "False"


@pytest.mark.parametrize("cls", [PCAConcepts, SVDConcepts, KMeansConcepts])
def test_affine_decoder_is_a_real_module_class(cls):
    X = np.random.default_rng(0).normal(size=(40, 5)).astype(np.float32)
    est = cls(2, random_state=0).fit(X)
    decoder = est.decoder_torch()
    assert isinstance(decoder, AffineDecoder)
    assert isinstance(decoder, torch.nn.Module) and AffineDecoder.__module__ == (
        "skconcepts.concepts._base"
    )
    C = torch.from_numpy(est.transform(X))
    np.testing.assert_allclose(
        decoder(C).numpy(), est.inverse_transform(C.numpy()), atol=1e-5
    )
    # a module-level class pickles by reference
    again = pickle.loads(pickle.dumps(decoder))
    assert type(again) is AffineDecoder
    torch.testing.assert_close(again(C), decoder(C))


def test_affine_decoder_call_compatibility():
    w = np.arange(6, dtype=np.float32).reshape(2, 3)
    dec = AffineDecoder(w, None, device="cpu", dtype=torch.float64)
    assert dec.weight.dtype == torch.float64 and dec.bias is None
    dec = AffineDecoder(torch.from_numpy(w), bias=np.ones(3))
    out = dec(torch.ones(4, 2, requires_grad=True))
    assert out.shape == (4, 3) and out.requires_grad
    assert list(dict(dec.named_buffers())) == ["weight", "bias"]
    assert not list(dec.parameters())


def test_every_concept_estimator_has_the_shared_parameters():
    for name, cls in CONCEPTS.items():
        if cls.__module__.startswith("skconcepts.concepts.sae"):
            continue  # the SAEs are wired to the shared parameters after the merge
        params = cls().get_params()
        for shared in ("device", "progress", "max_bytes"):
            assert shared in params, (name, shared)
        assert params["device"] == "cpu" and params["progress"] is None
        assert params["max_bytes"] is None
        if getattr(cls, "_streams", False):
            assert name == "PCAConcepts" or params["n_passes"] == 10


@pytest.mark.parametrize(
    "cls", [ICAConcepts, SparsePCAConcepts, DictionaryLearningConcepts]
)
def test_cpu_only_methods_take_cpu_or_auto_and_refuse_cuda(cls):
    X = np.random.default_rng(0).normal(size=(30, 4)).astype(np.float32)
    kw = {"random_state": 0, "max_iter": 5} if cls is not ICAConcepts else {}
    for device in ("cpu", "auto"):
        cls(2, device=device, **kw).fit(X)
    with pytest.raises(ValueError, match=f"{cls.__name__} runs scikit-learn on the"):
        cls(2, device="cuda", **kw).fit(X)
    with pytest.raises(ValueError, match="device='gpu' is not a device"):
        cls(2, device="gpu", **kw).fit(X)


def test_transform_after_cuda_vanished_falls_back_with_a_warning(monkeypatch):
    X = np.abs(np.random.default_rng(0).normal(size=(30, 4))).astype(np.float32)
    nmf = NMFConcepts(2, random_state=0).fit(X)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    nmf.device = "cuda"  # as if fitted on a GPU and loaded here
    with pytest.warns(RuntimeWarning, match="NMFConcepts was set to device='cuda'"):
        C = nmf.transform(X)
    np.testing.assert_allclose(C, NMFConcepts(2, random_state=0).fit_transform(X))


@pytest.mark.parametrize("cls", [SVDConcepts, ICAConcepts, SparsePCAConcepts])
def test_progress_of_non_streaming_methods_shows_store_reads(cls, tmp_path, capsys):
    from skconcepts.store import write_array_store

    X = np.random.default_rng(0).normal(size=(50, 4)).astype(np.float32)
    store = write_array_store(X, tmp_path, shard_rows=20)
    est = cls(2, random_state=0, progress=True).fit(X)
    est.transform(store)
    assert f"{cls.__name__}.transform" in capsys.readouterr().err
