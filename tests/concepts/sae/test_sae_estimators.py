"""The five sparse-autoencoder estimators (skconcepts.concepts.sae)."""

import io
import os
import pickle
import subprocess
import sys
import warnings
from pathlib import Path

import joblib
import numpy as np
import pytest
import torch
from numpy.testing import assert_allclose, assert_array_equal
from sklearn.base import clone
from sklearn.model_selection import GridSearchCV
from sklearn.utils._param_validation import InvalidParameterError

from skconcepts.concepts import (
    BatchTopKSAEConcepts,
    JumpReLUSAEConcepts,
    MPSAEConcepts,
    SAEConcepts,
    TopKSAEConcepts,
)

ROOT = Path(__file__).resolve().parents[3]
ALL = [
    SAEConcepts,
    TopKSAEConcepts,
    BatchTopKSAEConcepts,
    JumpReLUSAEConcepts,
    MPSAEConcepts,
]


def test_topk_minilm_r2_and_at_most_k_nonzeros(signed_X):
    k = 16
    sae = TopKSAEConcepts(
        256, top_k=k, lr=3e-3, n_passes=4, batch_size=128, random_state=0
    ).fit(signed_X)
    assert sae.score(signed_X) >= 0.8
    C = sae.transform(signed_X)
    assert C.shape == (signed_X.shape[0], 256)
    assert (C != 0).sum(axis=1).max() <= k
    assert (C >= 0).all()


def test_vanilla_sae_l0_falls_as_l1_rises(signed_X):
    l0 = []
    for l1_coef in [1e-4, 1e-3, 1e-2]:
        sae = SAEConcepts(
            128, l1_coef=l1_coef, lr=3e-3, n_passes=4, batch_size=128, random_state=0
        ).fit(signed_X)
        l0.append((sae.transform(signed_X) != 0).sum(axis=1).mean())
    assert l0[0] > l0[1] > l0[2]


def test_partial_fit_over_chunks_close_to_fit(signed_X):
    params = dict(top_k=8, lr=3e-3, batch_size=64, random_state=0)
    epochs = 4
    full = TopKSAEConcepts(128, n_passes=epochs, **params).fit(signed_X)
    part = TopKSAEConcepts(128, **params)
    for _ in range(epochs):
        for chunk in np.array_split(signed_X, 10):
            part.partial_fit(chunk)
    assert part.n_iter_ == 10 * epochs
    assert part.score(signed_X) >= 0.95 * full.score(signed_X)


@pytest.mark.parametrize("cls", ALL)
def test_fit_is_bitwise_reproducible_and_leaves_global_rng(cls, small_X, make):
    state = torch.get_rng_state()
    a = make(cls).fit(small_X)
    b = make(cls).fit(small_X)
    assert torch.equal(torch.get_rng_state(), state)
    assert_array_equal(a.components_, b.components_)
    assert_array_equal(a.transform(small_X), b.transform(small_X))
    c = make(cls, random_state=1).fit(small_X)
    assert not np.array_equal(a.components_, c.components_)


def test_gridsearch_over_n_concepts_and_top_k(signed_X):
    grid = {"n_concepts": [16, 32], "top_k": [2, 4]}
    search = GridSearchCV(
        TopKSAEConcepts(n_passes=2, batch_size=64, random_state=0), grid, cv=2
    ).fit(signed_X[:512])
    assert len(search.cv_results_["params"]) == 4
    assert np.isfinite(search.cv_results_["mean_test_score"]).all()
    assert search.best_params_["n_concepts"] in grid["n_concepts"]
    assert (
        search.best_estimator_.components_.shape[0]
        == (search.best_params_["n_concepts"])
    )


@pytest.mark.parametrize("cls", ALL)
def test_clone_and_joblib_round_trip(cls, small_X, make):
    sae = make(cls).fit(small_X)
    buffer = io.BytesIO()
    joblib.dump(sae, buffer)
    buffer.seek(0)
    loaded = joblib.load(buffer)
    assert_array_equal(loaded.transform(small_X), sae.transform(small_X))
    assert_array_equal(loaded.components_, sae.components_)
    refit = clone(sae).fit(small_X)
    assert_array_equal(refit.transform(small_X), sae.transform(small_X))


def test_unpickles_in_a_fresh_process(small_X, tmp_path, make):
    sae = make(TopKSAEConcepts, dead_concepts="resample").fit(small_X)
    joblib.dump(sae, tmp_path / "sae.pkl")
    np.save(tmp_path / "X.npy", small_X)
    code = (
        "import joblib, numpy as np;"
        f"sae = joblib.load({str(tmp_path / 'sae.pkl')!r});"
        f"np.save({str(tmp_path / 'C.npy')!r}, "
        f"sae.transform(np.load({str(tmp_path / 'X.npy')!r})))"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)
    assert_array_equal(np.load(tmp_path / "C.npy"), sae.transform(small_X))


def test_no_decoder_bias(small_X, make):
    sae = make(TopKSAEConcepts, decoder_bias=False).fit(small_X)
    assert sae.decoder_bias_ is None
    C = sae.transform(small_X)
    assert_allclose(sae.inverse_transform(C), C @ sae.components_, rtol=1e-5, atol=1e-6)


def test_max_k_nonzeros_for_matching_pursuit(small_X, make):
    C = make(MPSAEConcepts, top_k=3).fit(small_X).transform(small_X)
    assert (C != 0).sum(axis=1).max() <= 3


def test_feature_names_and_pandas_output(small_X, make):
    sae = make(TopKSAEConcepts).set_output(transform="pandas").fit(small_X)
    frame = sae.transform(small_X)
    assert list(frame.columns) == [f"concept{i}" for i in range(16)]
    assert list(sae.get_feature_names_out()) == list(frame.columns)


def test_tensor_in_tensor_out(small_X, make):
    X = torch.from_numpy(small_X)
    sae = make(TopKSAEConcepts).fit(X)
    C = sae.transform(X)
    assert isinstance(C, torch.Tensor) and C.shape == (256, 16)
    assert_array_equal(C.numpy(), sae.transform(small_X))
    ref = make(TopKSAEConcepts).fit(small_X)
    assert_array_equal(sae.components_, ref.components_)


def test_top_k_larger_than_n_concepts_raises(small_X):
    with pytest.raises(ValueError, match=r"top_k=9 must be <= n_concepts=8"):
        TopKSAEConcepts(8, top_k=9).fit(small_X)


def test_matching_pursuit_rejects_auxiliary(small_X, make):
    with pytest.raises(ValueError, match="dead_concepts='resample'"):
        make(MPSAEConcepts, dead_concepts="auxiliary").fit(small_X)


def test_invalid_optimizer_raises(small_X, make):
    with pytest.raises(InvalidParameterError, match="optimizer"):
        make(TopKSAEConcepts, optimizer="lbfgs").fit(small_X)


def test_custom_optimizer_class(small_X, make):
    sae = make(TopKSAEConcepts, optimizer=torch.optim.SGD).fit(small_X)
    assert isinstance(sae.net_.optimizer_, torch.optim.SGD)


def test_partial_fit_checks_width(small_X, make):
    sae = make(TopKSAEConcepts).partial_fit(small_X)
    with pytest.raises(ValueError, match="384 features"):
        sae.partial_fit(small_X[:, :10])


@pytest.mark.gpu
def test_cuda_fit_unpickles_on_cpu(small_X, tmp_path, make):
    sae = make(MPSAEConcepts, device="cuda").fit(small_X)
    C_gpu = sae.transform(small_X)
    C_tensor = sae.transform(torch.from_numpy(small_X).cuda())
    assert C_tensor.is_cuda
    assert_allclose(C_tensor.cpu().numpy(), C_gpu, rtol=1e-5, atol=1e-5)
    path = tmp_path / "sae.pkl"
    joblib.dump(sae, path)
    np.save(tmp_path / "X.npy", small_X)
    code = (
        "import warnings, joblib, numpy as np, sys; warnings.simplefilter('ignore');"
        f"sae = joblib.load({str(path)!r});"
        f"C = sae.transform(np.load({str(tmp_path / 'X.npy')!r}));"
        f"np.save({str(tmp_path / 'C.npy')!r}, C);"
        "print(next(sae.net_.module_.parameters()).device)"
    )
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": ""}
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env=env,
        check=True,
        cwd=ROOT,
    )
    assert out.stdout.strip() == "cpu"
    assert_allclose(np.load(tmp_path / "C.npy"), C_gpu, rtol=1e-4, atol=1e-4)


def test_pickle_keeps_no_autograd_graph(small_X, make):
    sae = make(SAEConcepts).fit(small_X)
    fused = sae.net_.module_.sae.dictionary._fused_dictionary
    assert fused.grad_fn is None
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        restored = pickle.loads(pickle.dumps(sae))
    assert_array_equal(restored.transform(small_X), sae.transform(small_X))


def test_every_sae_pickles_with_its_callbacks_in_a_fresh_process(
    small_X, tmp_path, make
):
    """pickle and joblib, callbacks included; training goes on after loading."""
    X = small_X[:128]
    np.save(tmp_path / "X.npy", X)
    fitted = {}
    for cls in ALL:
        sae = fitted[cls] = make(cls, dead_concepts="resample", progress=True).fit(X)
        joblib.dump(sae, tmp_path / f"{cls.__name__}.joblib")
        with open(tmp_path / f"{cls.__name__}.pkl", "wb") as file:
            pickle.dump(sae, file)
    code = f"""
import pickle, joblib, numpy as np
X = np.load({str(tmp_path / "X.npy")!r})
for name in {[cls.__name__ for cls in ALL]!r}:
    with open({str(tmp_path)!r} + "/" + name + ".pkl", "rb") as file:
        by_pickle = pickle.load(file)
    sae = joblib.load({str(tmp_path)!r} + "/" + name + ".joblib")
    assert type(sae).__module__ == "skconcepts.concepts.sae", type(sae).__module__
    assert type(sae.net_).__name__ == "_SAENet"
    monitor = dict(sae.net_.callbacks_)["dead_concepts"]
    assert type(monitor).__name__ == "_DeadConceptMonitor" and monitor.resample
    np.save({str(tmp_path)!r} + "/" + name + ".npy", sae.transform(X))
    np.save({str(tmp_path)!r} + "/" + name + "_pickle.npy", by_pickle.transform(X))
    sae.partial_fit(X)  # the unpickled callbacks run again
    assert sae.n_iter_ == 3 and len(sae.net_.history[-1, "batches"]) == 2
    assert {{"dead_fraction", "n_resampled"}} <= set(sae.net_.history[-1])
"""
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)
    for cls in ALL:
        C = fitted[cls].transform(X)
        assert_array_equal(np.load(tmp_path / f"{cls.__name__}.npy"), C)
        assert_array_equal(np.load(tmp_path / f"{cls.__name__}_pickle.npy"), C)


def test_import_keeps_skorch_and_overcomplete_out_of_the_package_import():
    code = (
        "import sys, skconcepts, skconcepts.concepts; "
        "print(any(m in sys.modules for m in ('skorch', 'overcomplete'))); "
        "skconcepts.TopKSAEConcepts; import skconcepts.concepts.sae; "
        "print('skorch' in sys.modules, 'overcomplete' in sys.modules)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        cwd=ROOT,
    )
    # skorch is imported with the SAE package (its subclasses are defined at
    # class level); overcomplete only when a model is built
    assert out.stdout.split() == ["False", "True", "False"]


def test_public_home_and_discovery():
    import skconcepts
    import skconcepts.concepts.sae as sae_package
    from skconcepts.utils.discovery import all_estimators

    assert sorted(sae_package.__all__) == sorted(cls.__name__ for cls in ALL)
    found = dict(all_estimators(type_filter="concept"))
    for cls in ALL:
        assert cls.__module__ == "skconcepts.concepts.sae"
        assert getattr(sae_package, cls.__name__) is cls
        assert getattr(skconcepts, cls.__name__) is cls
        assert found[cls.__name__] is cls
    assert not hasattr(sae_package, "EXPECTED_FAILED_CHECKS")


@pytest.mark.parametrize("cls", ALL)
def test_docstrings_are_written_out(cls):
    doc = cls.__doc__
    assert "%(" not in doc and ">>>" in doc
    for section in ["Parameters", "Attributes", "See Also", "Notes", "Examples"]:
        assert f"\n    {section}\n    {'-' * len(section)}\n" in doc
    for name in cls().get_params():
        assert f"\n    {name} : " in doc, name


@pytest.mark.parametrize("cls", ALL)
def test_max_epochs_is_a_deprecated_alias_of_n_passes(cls, small_X, make):
    new = make(cls, n_passes=3)
    with warnings.catch_warnings():
        warnings.simplefilter("error", FutureWarning)  # the default never warns
        new.fit(small_X)
    assert new.get_params()["max_epochs"] == "deprecated" and new.n_iter_ == 3
    old = make(cls, max_epochs=3)  # make's n_passes=2 is overridden by the alias
    match = rf"{cls.__name__}\(max_epochs=\.\.\.\) is deprecated .*\(n_passes=\.\.\.\)"
    with pytest.warns(FutureWarning, match=match) as record:
        old.fit(small_X)
    assert len(record) == 1
    assert old.n_iter_ == 3 and old.net_.max_epochs == 3
    assert_array_equal(old.components_, new.components_)
    assert_array_equal(old.transform(small_X), new.transform(small_X))
    # a stream too, and the value is validated like n_passes
    chunks = np.array_split(small_X, 3)
    with pytest.warns(FutureWarning, match=match):
        streamed = make(cls, max_epochs=3).fit(chunks)
    assert_array_equal(
        streamed.components_, make(cls, n_passes=3).fit(chunks).components_
    )
    with pytest.raises(InvalidParameterError, match="'max_epochs' parameter"):
        make(cls, max_epochs=0).fit(small_X)
