"""GridSearchCV over concept pipelines: reconstruction score, then accuracy."""

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score
from sklearn.model_selection import GridSearchCV, KFold, StratifiedKFold
from sklearn.pipeline import Pipeline

from skconcepts.preprocessing import NonNegative

NMFConcepts = pytest.importorskip("skconcepts.concepts.nmf").NMFConcepts

GRID = {"concepts__n_concepts": [4, 8, 16]}


def _r2(X, X_hat):
    X = np.asarray(X, dtype=np.float64)
    return 1 - ((X - X_hat) ** 2).sum() / ((X - X.mean(axis=0)) ** 2).sum()


def test_grid_search_picks_by_reconstruction(signed_X):
    X = signed_X[np.random.default_rng(0).choice(len(signed_X), 400, replace=False)]
    nmf = NMFConcepts(max_iter=50, random_state=0)
    pipe = Pipeline([("relu", NonNegative("relu")), ("concepts", nmf)])
    search = GridSearchCV(pipe, GRID, cv=KFold(3)).fit(X)  # no scoring argument
    scores = search.cv_results_["mean_test_score"]
    assert search.best_params_ == {"concepts__n_concepts": 16}
    assert np.all(np.diff(scores) > 0)  # more concepts reconstruct better
    # the score is the held-out reconstruction R² of the relu'd activations
    train, test = next(KFold(3).split(X))
    fitted = clone(pipe).set_params(concepts__n_concepts=4).fit(X[train])
    Xr = np.maximum(X[test], 0)
    expected = _r2(
        Xr, fitted.named_steps["concepts"].inverse_transform(fitted.transform(X[test]))
    )
    assert search.cv_results_["split0_test_score"][0] == pytest.approx(expected)


def test_grid_search_with_a_classifier_picks_by_accuracy(
    minilm_token_activations, demo_corpus
):
    X_tok, owner = minilm_token_activations
    n_texts = owner.max() + 1
    X = np.stack([X_tok[owner == i].mean(axis=0) for i in range(n_texts)])  # (200, d)
    y = np.asarray(demo_corpus[1][:n_texts])
    pipe = Pipeline(
        [
            ("relu", NonNegative("relu")),
            ("concepts", NMFConcepts(max_iter=50, random_state=0)),
            ("clf", LogisticRegression(max_iter=2000)),
        ]
    )
    cv = StratifiedKFold(3, shuffle=True, random_state=0)
    search = GridSearchCV(pipe, GRID, cv=cv).fit(X, y)
    best = int(np.argmax(search.cv_results_["mean_test_score"]))
    assert search.best_index_ == best
    # the best candidate's score is its mean held-out accuracy
    candidate = clone(pipe).set_params(**search.best_params_)
    accs = [
        accuracy_score(y[te], clone(candidate).fit(X[tr], y[tr]).predict(X[te]))
        for tr, te in cv.split(X, y)
    ]
    assert search.best_score_ == pytest.approx(np.mean(accs))
    print(search.cv_results_["mean_test_score"])
    assert search.best_score_ > 0.6  # sentiment is linearly readable from concepts
