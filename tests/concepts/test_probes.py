"""ProbeConcepts: directions equal sklearn's probes; decoder, errors, pipelines."""

import numpy as np
import pytest
import torch
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.model_selection import GridSearchCV
from sklearn.neighbors import NearestCentroid
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.svm import LinearSVC
from sklearn.utils._param_validation import InvalidParameterError

from skconcepts import (
    ActivationScaler,
    PooledConcepts,
    ProbeConcepts,
    SplitPointActivations,
    TopKInputs,
    concept_output_gradient,
)
from skconcepts.utils._testing import make_tiny_model


def _data(n_classes, n=90, d=6, seed=0):
    rng = np.random.default_rng(seed)
    y = np.arange(n) % n_classes
    means = rng.normal(scale=2.0, size=(n_classes, d))
    X = (means[y] + rng.normal(size=(n, d))).astype(np.float32)
    return X, y


def _unit(rows):
    rows = np.atleast_2d(np.asarray(rows, dtype=np.float64))
    return rows / np.linalg.norm(rows, axis=1, keepdims=True)


@pytest.mark.parametrize("n_classes", [2, 3])
@pytest.mark.parametrize("C", [0.05, 1.0])
def test_logistic_directions_are_sklearn_coef(n_classes, C):
    X, y = _data(n_classes)
    probe = ProbeConcepts("logistic", C=C).fit(X, y)
    ref = LogisticRegression(C=C, max_iter=1000).fit(X, y)
    assert probe.components_.shape == (1 if n_classes == 2 else n_classes, 6)
    np.testing.assert_allclose(probe.components_, _unit(ref.coef_), atol=1e-5)
    np.testing.assert_array_equal(probe.classes_, ref.classes_)
    assert probe.estimator_.C == C


@pytest.mark.parametrize("n_classes", [2, 3])
def test_svm_directions_are_linear_svc_coef(n_classes):
    X, y = _data(n_classes)
    probe = ProbeConcepts("svm", C=0.3).fit(X, y)
    ref = LinearSVC(C=0.3, max_iter=1000).fit(X, y)
    np.testing.assert_allclose(probe.components_, _unit(ref.coef_), atol=1e-5)


def test_mean_diff_and_centroid_directions():
    X, y = _data(3)
    X64 = X.astype(np.float64)
    expected = [X64[y == c].mean(0) - X64[y != c].mean(0) for c in range(3)]
    probe = ProbeConcepts("mean_diff").fit(X, y)
    np.testing.assert_allclose(probe.components_, _unit(expected), atol=1e-6)
    assert probe.estimator_ is None
    centroids = NearestCentroid().fit(X64, y).centroids_
    probe = ProbeConcepts("centroid").fit(X, y)
    np.testing.assert_allclose(
        probe.components_, _unit(centroids - X64.mean(0)), atol=1e-6
    )
    # two classes: one direction, from class 0 to class 1, for both methods
    X, y = _data(2)
    X64 = X.astype(np.float64)
    expected = _unit(X64[y == 1].mean(0) - X64[y == 0].mean(0))
    for method in ("mean_diff", "centroid"):
        probe = ProbeConcepts(method).fit(X, np.where(y == 1, "pos", "neg"))
        np.testing.assert_allclose(probe.components_, expected, atol=1e-6)
        assert probe.classes_.tolist() == ["neg", "pos"]


@pytest.mark.parametrize("n_targets", [1, 2])
def test_linear_directions_are_ridge_coef(n_targets):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(80, 5)).astype(np.float32)
    y = X @ rng.normal(size=(5, n_targets)) + 0.1 * rng.normal(size=(80, n_targets))
    y = y.ravel() if n_targets == 1 else y
    probe = ProbeConcepts("linear", C=2.0).fit(X, y)
    ref = Ridge(alpha=0.5).fit(X, y)
    np.testing.assert_allclose(probe.components_, _unit(ref.coef_), atol=1e-5)
    assert probe.classes_ is None


def _lstsq_reconstruction(C, X):
    """Independent reference: least squares of X on [C, 1], in float64."""
    design = np.hstack([C.astype(np.float64), np.ones((len(X), 1))])
    sol = np.linalg.lstsq(design, X.astype(np.float64), rcond=None)[0]
    return design @ sol, sol


def test_transform_is_the_projection_and_decoder_is_least_squares():
    X, y = _data(3)
    probe = ProbeConcepts("svm").fit(X, y)
    C = probe.transform(X)
    np.testing.assert_allclose(C, X @ probe.components_.T, rtol=1e-5, atol=1e-5)
    X_hat, sol = _lstsq_reconstruction(C, X)
    np.testing.assert_allclose(probe.inverse_transform(C), X_hat, atol=1e-4)
    np.testing.assert_allclose(probe.decoder_weight_, sol[:-1], atol=1e-4)
    decoder = probe.decoder_torch()
    np.testing.assert_allclose(
        decoder(torch.from_numpy(C)).numpy(), probe.inverse_transform(C), atol=1e-5
    )
    # the decoder is the best affine reconstruction: R² at least that of a
    # decoder made of the directions themselves
    naive = C @ probe.components_ + X.mean(0) - C.mean(0) @ probe.components_
    resid = ((X - probe.inverse_transform(C)) ** 2).sum()
    assert resid <= ((X - naive) ** 2).sum() + 1e-3
    assert 0 < probe.score(X) <= 1


def test_dependent_directions_get_a_stable_decoder():
    """Multinomial directions are linearly dependent (the coef_ rows sum to 0):
    the decoder reconstructs as well as least squares on two of them."""
    X, y = _data(3)
    probe = ProbeConcepts("logistic").fit(X, y)
    C = probe.transform(X)
    X_hat, _ = _lstsq_reconstruction(C[:, :2], X)
    np.testing.assert_allclose(probe.inverse_transform(C), X_hat, atol=1e-3)
    assert np.abs(probe.decoder_weight_).max() < 10


def test_grid_search_over_method_and_C():
    X, y = _data(2, n=120)
    pipe = Pipeline(
        [("probe", ProbeConcepts()), ("clf", LogisticRegression(max_iter=1000))]
    )
    grid = {"probe__method": ["mean_diff", "logistic", "svm"], "probe__C": [0.01, 1]}
    search = GridSearchCV(pipe, grid, cv=3).fit(X, y)
    assert len(search.cv_results_["params"]) == 6
    assert search.best_score_ > 0.9
    best = search.best_estimator_["probe"]
    assert best.method == search.best_params_["probe__method"]
    if best.method != "mean_diff":
        assert best.estimator_.C == search.best_params_["probe__C"]


# ----------------------------------------------------------------- bad input
def test_label_count_must_match_rows():
    X, y = _data(2)
    with pytest.raises(ValueError, match=r"y has 89 labels but X has 90 rows.*"
                       r"PooledConcepts"):  # fmt: skip
        ProbeConcepts().fit(X, y[:-1])
    with pytest.raises(ValueError, match="requires y to be passed.*one label per"):
        ProbeConcepts().fit(X)


@pytest.mark.parametrize("method", ["mean_diff", "logistic", "svm", "centroid"])
def test_one_class_is_a_clear_error(method):
    X, _ = _data(2)
    with pytest.raises(
        ValueError,
        match=rf"method='{method}' needs at least two classes in y, got one \('a'\)",
    ):
        ProbeConcepts(method).fit(X, ["a"] * len(X))


def test_unknown_method_and_continuous_labels():
    X, y = _data(2)
    with pytest.raises(InvalidParameterError, match=r"'method' parameter.*'lda'"):
        ProbeConcepts("lda").fit(X, y)
    with pytest.raises(ValueError, match="y is 'continuous'.*method='linear'"):
        ProbeConcepts("logistic").fit(X, X[:, 0])
    with pytest.raises(TypeError, match="cannot learn from a stream of batches"):
        ProbeConcepts().fit([X[:40], X[40:]], y)


# ------------------------------------------------------- on a language model
TEXTS = [
    "a lovely warm film",
    "what a bore, so dull",
    "lovely music and a great cast",
    "dull, long and cold",
    "great fun, lovely",
    "a cold dull evening",
]
LABELS = np.array([1, 0, 1, 0, 1, 0])


def test_pooled_probe_learns_from_per_text_labels():
    words = SplitPointActivations(split_point=1, granularity="word")
    inner = make_pipeline(ActivationScaler(), ProbeConcepts("mean_diff"))
    pooled = PooledConcepts(words, inner).fit(TEXTS, LABELS)
    # reference: the unit rows, each with the label of its text
    acts = words.fit()
    A = acts.transform(TEXTS)
    y_units = LABELS[acts.units(TEXTS)["sample"].to_numpy()]
    ref = make_pipeline(ActivationScaler(), ProbeConcepts("mean_diff")).fit(A, y_units)
    np.testing.assert_allclose(
        pooled.estimator_[-1].components_, ref[-1].components_, atol=1e-6
    )
    assert pooled.transform(TEXTS).shape == (6, 1)
    clf = Pipeline([("concepts", pooled), ("clf", LogisticRegression())])
    assert clf.fit(TEXTS, LABELS).score(TEXTS, LABELS) == 1.0
    with pytest.raises(ValueError, match="y has 5 labels but X has 6 texts"):
        PooledConcepts(words, ProbeConcepts()).fit(TEXTS, LABELS[:5])
    with pytest.raises(ValueError, match="ProbeConcepts learns from labels, but y"):
        PooledConcepts(words, ProbeConcepts()).fit(TEXTS)


def test_probe_at_sample_level_works_with_top_inputs_and_gradients():
    model, tokenizer = make_tiny_model("bert", head="seq_cls")
    acts = SplitPointActivations(
        model, tokenizer=tokenizer, split_point=1, granularity="sample", max_length=64
    )
    pipe = make_pipeline(acts, ProbeConcepts("logistic")).fit(TEXTS, LABELS)
    top = TopKInputs(k=2).interpret(pipe, TEXTS)
    assert list(top) == [0] and len(top[0]) == 2
    C = pipe.transform(TEXTS)
    assert top[0] == pytest.approx(
        {TEXTS[i]: float(C[i, 0]) for i in np.argsort(-C[:, 0])[:2]}, rel=1e-5
    )
    attr = concept_output_gradient(TEXTS[:2], extractor=acts, concepts=pipe)
    assert [tuple(a.shape) for a in attr] == [(2, 1, 1), (2, 1, 1)]
    assert all(torch.isfinite(a).all() for a in attr)


@pytest.mark.parametrize("method", ["logistic", "svm", "centroid", "mean_diff"])
def test_skops_round_trip_and_store_input(method, tmp_path):
    from skconcepts import io
    from skconcepts.store import write_array_store

    X, y = _data(3)
    probe = ProbeConcepts(method).fit(X, y)
    io.save(probe, tmp_path / "saved")
    loaded = io.load(tmp_path / "saved")
    np.testing.assert_array_equal(loaded.transform(X), probe.transform(X))
    store = write_array_store(X, tmp_path / "store", shard_rows=40)
    from_store = ProbeConcepts(method).fit(store, y)
    np.testing.assert_allclose(from_store.components_, probe.components_, atol=1e-6)
    np.testing.assert_allclose(from_store.transform(store), probe.transform(X))
