"""Sparse-autoencoder concepts (skconcepts.concepts.sae)."""

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
from skconcepts.concepts.sae import (
    EXPECTED_FAILED_CHECKS,
    _resample_dead,
    _SAEModule,
)

ROOT = Path(__file__).resolve().parents[2]
ALL = [
    SAEConcepts,
    TopKSAEConcepts,
    BatchTopKSAEConcepts,
    JumpReLUSAEConcepts,
    MPSAEConcepts,
]
TOPK_LIKE = {TopKSAEConcepts, BatchTopKSAEConcepts, MPSAEConcepts}


def make(cls, n_concepts=16, **params):
    """A fast estimator of ``cls`` (top_k=4 where the class has one)."""
    params = {
        "max_epochs": 2,
        "batch_size": 64,
        "lr": 3e-3,
        "random_state": 0,
        **params,
    }
    if cls in TOPK_LIKE:
        params.setdefault("top_k", 4)
    return cls(n_concepts, **params)


@pytest.fixture(scope="module")
def small_X(signed_X):
    return signed_X[:256]


# ------------------------------------------------------------------ must show
def test_topk_minilm_r2_and_at_most_k_nonzeros(signed_X):
    k = 16
    sae = TopKSAEConcepts(
        256, top_k=k, lr=3e-3, max_epochs=4, batch_size=128, random_state=0
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
            128, l1_coef=l1_coef, lr=3e-3, max_epochs=4, batch_size=128, random_state=0
        ).fit(signed_X)
        l0.append((sae.transform(signed_X) != 0).sum(axis=1).mean())
    assert l0[0] > l0[1] > l0[2]


def test_partial_fit_over_chunks_close_to_fit(signed_X):
    params = dict(top_k=8, lr=3e-3, batch_size=64, random_state=0)
    epochs = 4
    full = TopKSAEConcepts(128, max_epochs=epochs, **params).fit(signed_X)
    part = TopKSAEConcepts(128, **params)
    for _ in range(epochs):
        for chunk in np.array_split(signed_X, 10):
            part.partial_fit(chunk)
    assert part.n_iter_ == 10 * epochs
    assert part.score(signed_X) >= 0.95 * full.score(signed_X)


@pytest.mark.parametrize("cls", ALL)
def test_fit_is_bitwise_reproducible_and_leaves_global_rng(cls, small_X):
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
        TopKSAEConcepts(max_epochs=2, batch_size=64, random_state=0), grid, cv=2
    ).fit(signed_X[:512])
    assert len(search.cv_results_["params"]) == 4
    assert np.isfinite(search.cv_results_["mean_test_score"]).all()
    assert search.best_params_["n_concepts"] in grid["n_concepts"]
    assert (
        search.best_estimator_.components_.shape[0]
        == (search.best_params_["n_concepts"])
    )


@pytest.mark.parametrize("cls", ALL)
def test_clone_and_joblib_round_trip(cls, small_X):
    sae = make(cls).fit(small_X)
    buffer = io.BytesIO()
    joblib.dump(sae, buffer)
    buffer.seek(0)
    loaded = joblib.load(buffer)
    assert_array_equal(loaded.transform(small_X), sae.transform(small_X))
    assert_array_equal(loaded.components_, sae.components_)
    refit = clone(sae).fit(small_X)
    assert_array_equal(refit.transform(small_X), sae.transform(small_X))


# ------------------------------------------------------------ the contract
def test_unpickles_in_a_fresh_process(small_X, tmp_path):
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


@pytest.mark.parametrize("cls", ALL)
def test_inverse_transform_is_the_module_reconstruction(cls, small_X):
    sae = make(cls).fit(small_X)
    C = sae.transform(small_X)
    module = sae.net_.module_
    with torch.no_grad():
        pre_codes, codes, x_hat, _ = module(torch.from_numpy(small_X))
    assert_allclose(C, codes.numpy(), rtol=1e-6, atol=1e-6)
    assert_allclose(sae.inverse_transform(C), x_hat.numpy(), rtol=1e-5, atol=1e-5)
    decoder = sae.decoder_torch()
    assert_allclose(
        decoder(torch.from_numpy(C)).numpy(), x_hat.numpy(), rtol=1e-5, atol=1e-5
    )
    assert sae.components_.shape == (16, small_X.shape[1])
    assert sae.components_.dtype == np.float32
    assert_allclose(np.linalg.norm(sae.components_, axis=1), 1.0, rtol=1e-5)
    assert_array_equal(sae.decoder_bias_, module.b_dec.detach().numpy())


def test_no_decoder_bias(small_X):
    sae = make(TopKSAEConcepts, decoder_bias=False).fit(small_X)
    assert sae.decoder_bias_ is None
    C = sae.transform(small_X)
    assert_allclose(sae.inverse_transform(C), C @ sae.components_, rtol=1e-5, atol=1e-6)


def test_max_k_nonzeros_for_matching_pursuit(small_X):
    C = make(MPSAEConcepts, top_k=3).fit(small_X).transform(small_X)
    assert (C != 0).sum(axis=1).max() <= 3


def test_feature_names_and_pandas_output(small_X):
    sae = make(TopKSAEConcepts).set_output(transform="pandas").fit(small_X)
    frame = sae.transform(small_X)
    assert list(frame.columns) == [f"concept{i}" for i in range(16)]
    assert list(sae.get_feature_names_out()) == list(frame.columns)


def test_tensor_in_tensor_out(small_X):
    X = torch.from_numpy(small_X)
    sae = make(TopKSAEConcepts).fit(X)
    C = sae.transform(X)
    assert isinstance(C, torch.Tensor) and C.shape == (256, 16)
    assert_array_equal(C.numpy(), sae.transform(small_X))
    ref = make(TopKSAEConcepts).fit(small_X)
    assert_array_equal(sae.components_, ref.components_)


# ------------------------------------------------------------ the losses
def test_l1_loss_matches_formula(small_X):
    sae = make(SAEConcepts, l1_coef=0.05).fit(small_X)
    x = torch.from_numpy(small_X)
    with torch.no_grad():
        y_pred = sae.net_.module_(x)
        loss = sae.net_.get_loss(y_pred, x)
    C = sae.transform(small_X).astype(np.float64)
    X_hat = sae.inverse_transform(C).astype(np.float64)
    expected = ((small_X - X_hat) ** 2).mean() + 0.05 * np.abs(C).sum(1).mean()
    assert_allclose(loss.item(), expected, rtol=1e-5)


def test_topk_auxiliary_loss_matches_overcomplete(small_X):
    from overcomplete.sae.losses import top_k_auxiliary_loss

    sae = make(TopKSAEConcepts, dead_concepts="auxiliary", aux_coef=0.3)
    sae.fit(small_X)
    module = sae.net_.module_
    x = torch.from_numpy(small_X)
    with torch.no_grad():
        y_pred = module(x)
        loss = sae.net_.get_loss(y_pred, x)
        pre_codes, codes, x_hat, _ = y_pred
        expected = top_k_auxiliary_loss(
            x, x_hat, pre_codes, codes, module.sae.get_dictionary(), penalty=0.3
        )
    assert_allclose(loss.item(), expected.item(), rtol=1e-5)


def test_jumprelu_l0_penalty_counts_active_concepts(small_X):
    sae = make(JumpReLUSAEConcepts, l0_coef=0.01).fit(small_X)
    module = sae.net_.module_
    x = torch.from_numpy(small_X)
    with torch.no_grad():
        pre_codes, codes, x_hat, penalty = module(x)
        thresholds = torch.exp(module.sae.thresholds)
    active = (torch.relu(pre_codes) > thresholds).sum(1).double().mean()
    assert_allclose(penalty.item(), 0.01 * active.item(), rtol=1e-6)
    assert_array_equal(
        codes.numpy() != 0, (torch.relu(pre_codes) >= thresholds).numpy()
    )


# ------------------------------------------------------- dead concepts
def test_dead_fraction_recorded_each_epoch(small_X):
    sae = make(TopKSAEConcepts, n_concepts=64, max_epochs=3).fit(small_X)
    dead = sae.net_.history[:, "dead_fraction"]
    assert len(dead) == 3
    assert all(0.0 <= d <= 1.0 for d in dead)
    assert sae.dead_fraction_ == dead[-1]
    assert sae.n_iter_ == 3
    l0 = sae.net_.history[:, "l0"]
    assert all(0 < v <= 4 for v in l0)


@pytest.mark.parametrize("dead_concepts", ["resample", "auxiliary"])
def test_dead_concept_handling_lowers_dead_fraction(signed_X, dead_concepts):
    X = signed_X[:512]
    params = dict(top_k=2, lr=3e-3, max_epochs=6, batch_size=64, random_state=0)
    plain = TopKSAEConcepts(256, **params).fit(X)
    handled = TopKSAEConcepts(256, dead_concepts=dead_concepts, **params).fit(X)
    assert plain.dead_fraction_ > 0.3
    assert handled.dead_fraction_ < plain.dead_fraction_ - 0.03
    if dead_concepts == "resample":
        assert sum(handled.net_.history[:, "n_resampled"]) > 0


def test_resample_dead_rewrites_rows_and_optimizer_state():
    module = _SAEModule("topk", 5, 6, top_k=2, seed=0)
    optimizer = torch.optim.Adam(module.parameters(), lr=1e-2)
    x = torch.randn(32, 5, generator=torch.Generator().manual_seed(0))
    loss = (module(x)[2] - x).square().mean()
    loss.backward()
    optimizer.step()
    before = module.sae.dictionary._weights.detach().clone()
    dead = torch.tensor([False, True, False, False, True, False])
    directions = torch.tensor([[3.0, 0, 0, 0, 0], [0, 0, 2.0, 0, 0]])
    assert _resample_dead(module, optimizer, dead, directions) == 2
    weights = module.sae.dictionary._weights.detach()
    assert_array_equal(weights[1].numpy(), [1, 0, 0, 0, 0])
    assert_array_equal(weights[4].numpy(), [0, 0, 1, 0, 0])
    assert_array_equal(weights[~dead].numpy(), before[~dead].numpy())
    linear = module.sae.encoder.final_block[0]
    assert linear.bias[1].item() == 0 and linear.bias[4].item() == 0
    state = optimizer.state[module.sae.dictionary._weights]
    assert not state["exp_avg"][dead].any() and state["exp_avg"][~dead].any()


# ---------------------------------------------------------------- streams
def test_fit_from_list_of_batches(signed_X):
    X = signed_X[:768]
    chunks = np.array_split(X, 6)
    streamed = make(TopKSAEConcepts, max_epochs=3).fit(chunks)
    in_memory = make(TopKSAEConcepts, max_epochs=3).fit(X)
    assert streamed.n_iter_ == 3
    assert streamed.n_features_in_ == X.shape[1]
    assert streamed.score(X) >= 0.95 * in_memory.score(X)
    rows = streamed.net_.history[-1, "batches", :, "train_batch_size"]
    assert sum(rows) == len(X) and max(rows) == 64


def test_fit_from_one_shot_iterator_warns_and_trains_one_epoch(small_X):
    batches = (small_X[i : i + 50] for i in range(0, len(small_X), 50))
    with pytest.warns(UserWarning, match="one-shot iterator.*max_epochs=2"):
        sae = make(TopKSAEConcepts).fit(batches)
    assert sae.n_iter_ == 1
    assert sum(sae.net_.history[-1, "batches", :, "train_batch_size"]) == 256


class DuckStore:
    """Any object with ``iter_batches(batch_size, shuffle, seed)`` is a store."""

    def __init__(self, X):
        self.X = X
        self.calls = []

    def iter_batches(self, batch_size, shuffle=False, seed=None):
        self.calls.append((batch_size, shuffle, seed))
        order = (
            np.random.default_rng(seed).permutation(len(self.X))
            if shuffle
            else np.arange(len(self.X))
        )
        for start in range(0, len(self.X), batch_size):
            yield self.X[order[start : start + batch_size]]


def test_fit_from_activation_store(small_X):
    store = DuckStore(small_X)
    sae = make(TopKSAEConcepts, max_epochs=3).fit(store)
    assert sae.n_iter_ == 3
    # one unshuffled peek for the width and the decoder bias, then one
    # shuffled pass per epoch with a fresh seed
    assert store.calls[0] == (64, False, None)
    epochs = store.calls[1:]
    assert len(epochs) == 3 and all(c[:2] == (64, True) for c in epochs)
    assert len({c[2] for c in epochs}) == 3
    again = DuckStore(small_X)
    make(TopKSAEConcepts, max_epochs=3).fit(again)
    assert again.calls == store.calls
    sae.partial_fit(DuckStore(small_X))
    assert sae.n_iter_ == 4


def test_real_activation_store_streams(tmp_path, demo_corpus):
    activations = pytest.importorskip("skconcepts.activations")
    acts = activations.SplitPointActivations(split_point=1, batch_size=8).fit()
    if not hasattr(acts, "transform_to_store"):
        pytest.skip("SplitPointActivations cannot write an ActivationStore yet")
    store = acts.transform_to_store(
        demo_corpus[0][:12], tmp_path / "store", shard_rows=40
    )
    sae = make(TopKSAEConcepts, batch_size=32).fit(store)
    assert sae.n_features_in_ == store.n_features and sae.n_iter_ == 2
    rows = sae.net_.history[-1, "batches", :, "train_batch_size"]
    assert sum(rows) == store.shape[0]
    assert sae.transform(store).shape == (store.shape[0], 16)


# ------------------------------------------------------------- errors
def test_top_k_larger_than_n_concepts_raises(small_X):
    with pytest.raises(ValueError, match=r"top_k=9 must be <= n_concepts=8"):
        TopKSAEConcepts(8, top_k=9).fit(small_X)


def test_matching_pursuit_rejects_auxiliary(small_X):
    with pytest.raises(ValueError, match="dead_concepts='resample'"):
        make(MPSAEConcepts, dead_concepts="auxiliary").fit(small_X)


def test_invalid_optimizer_raises(small_X):
    with pytest.raises(InvalidParameterError, match="optimizer"):
        make(TopKSAEConcepts, optimizer="lbfgs").fit(small_X)


def test_custom_optimizer_class(small_X):
    sae = make(TopKSAEConcepts, optimizer=torch.optim.SGD).fit(small_X)
    assert isinstance(sae.net_.optimizer_, torch.optim.SGD)


def test_stream_errors(small_X):
    with pytest.raises(ValueError, match="empty source of batches"):
        make(TopKSAEConcepts).fit(iter([]))
    bad = [small_X[:50], small_X[:50, :10]]
    with pytest.raises(ValueError, match=r"Batch 1 of X has shape \(50, 10\)"):
        make(TopKSAEConcepts).fit(bad)
    nan = small_X[:50].copy()
    nan[3, 3] = np.nan
    with pytest.raises(ValueError, match="batch 1 of X contains NaN"):
        make(TopKSAEConcepts).fit([small_X[:50], nan])
    with pytest.raises(TypeError, match="call fit\\(X\\) and then transform"):
        make(TopKSAEConcepts).fit_transform([small_X[:50]])


def test_partial_fit_checks_width(small_X):
    sae = make(TopKSAEConcepts).partial_fit(small_X)
    with pytest.raises(ValueError, match="384 features"):
        sae.partial_fit(small_X[:, :10])


# ------------------------------------------------------------- skorch parts
def test_user_callbacks_run_and_are_not_mutated(small_X):
    from skorch.callbacks import Callback

    class CountEpochs(Callback):
        def __init__(self):
            self.epochs = 0

        def on_epoch_end(self, net, **kwargs):
            self.epochs += 1

    counter = CountEpochs()
    sae = make(TopKSAEConcepts, max_epochs=3, callbacks=[counter]).fit(small_X)
    assert counter.epochs == 0
    used = dict(sae.net_.callbacks_)["CountEpochs"]
    assert used.epochs == 3


def test_progress_bar(small_X, capsys):
    make(TopKSAEConcepts, progress=False).fit(small_X)
    assert capsys.readouterr().err == ""
    make(TopKSAEConcepts, progress=True).fit(small_X)
    assert "it/s" in capsys.readouterr().err


def test_expected_failed_checks_lists_every_class():
    assert set(EXPECTED_FAILED_CHECKS) == {cls.__name__ for cls in ALL}
    for checks in EXPECTED_FAILED_CHECKS.values():
        assert all(isinstance(reason, str) and reason for reason in checks.values())


def test_import_is_lazy():
    code = (
        "import sys, skconcepts.concepts.sae; "
        "print(any(m in sys.modules for m in ('skorch', 'overcomplete')))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        cwd=ROOT,
    )
    assert out.stdout.strip() == "False"


@pytest.mark.gpu
def test_cuda_fit_unpickles_on_cpu(small_X, tmp_path):
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


def test_pickle_keeps_no_autograd_graph(small_X):
    sae = make(SAEConcepts).fit(small_X)
    fused = sae.net_.module_.sae.dictionary._fused_dictionary
    assert fused.grad_fn is None
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        restored = pickle.loads(pickle.dumps(sae))
    assert_array_equal(restored.transform(small_X), sae.transform(small_X))
