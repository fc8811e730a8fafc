"""TopKInputs on a default (hard) KMeansConcepts: the units nearest each centroid.

With hard membership every member of a cluster has activation 1.0; the ties are
broken by ``KMeansConcepts.typicality`` (minus the squared distance to the
centroid), so the top-k of a concept are its most typical members, not the
first rows of the corpus that fall in the cluster.
"""

import numpy as np
import pytest
from sklearn.pipeline import Pipeline, make_pipeline

from skconcepts import SplitPointActivations, TopKInputs
from skconcepts.concepts import KMeansConcepts, PCAConcepts


def _blobs(n_per=30, d=8, seed=0):
    rng = np.random.default_rng(seed)
    centers = rng.normal(scale=20.0, size=(3, d))
    X = np.concatenate([c + rng.normal(size=(n_per, d)) for c in centers])
    perm = rng.permutation(len(X))  # members scattered through the corpus
    return X[perm].astype(np.float32)


def _nearest_members(X, km, k):
    """Brute force: per concept, the ``k`` members nearest its centroid."""
    d2 = ((X[:, None, :] - km.components_[None]) ** 2).sum(axis=2)  # (n, m)
    labels = d2.argmin(axis=1)
    out = {}
    for j in range(km.components_.shape[0]):
        members = np.flatnonzero(labels == j)
        out[j] = members[np.argsort(d2[members, j], kind="stable")[:k]].tolist()
    return out, d2


@pytest.fixture(scope="module")
def extractor():
    return SplitPointActivations(split_point=1, granularity="sample").fit()


@pytest.mark.parametrize("batch_size", [32, 7])
def test_planted_topk_are_nearest_members(extractor, batch_size):
    X = _blobs()
    texts = [f"unit {i}" for i in range(len(X))]
    km = KMeansConcepts(3, random_state=0).fit(X)
    assert set(np.unique(km.transform(X))) == {0.0, 1.0}  # all members tie
    pipe = Pipeline([("act", extractor), ("km", km)])
    top = TopKInputs(k=5, batch_size=batch_size).interpret(
        pipe, texts, activations=X, as_frame=True
    )
    expected, _ = _nearest_members(X, km, 5)
    for j in range(3):
        rows = top[top["concept"] == j]
        assert rows["activation"].tolist() == [1.0] * 5
        assert rows["sample"].tolist() == expected[j]
        # not the first rows of the corpus that fall in the cluster
        first = np.flatnonzero(km.transform(X)[:, j] == 1)[:5].tolist()
        assert first != expected[j]


def test_typicality_is_minus_squared_distance():
    X = _blobs()
    km = KMeansConcepts(3, random_state=0).fit(X)
    _, d2 = _nearest_members(X, km, 5)
    np.testing.assert_allclose(km.typicality(X), -d2, rtol=1e-4, atol=1e-2)
    torch = pytest.importorskip("torch")
    np.testing.assert_allclose(
        km.typicality(torch.from_numpy(X)), -d2, rtol=1e-4, atol=1e-2
    )


def test_real_text_topk_ordered_by_distance(demo_corpus):
    texts = list(demo_corpus[0][:40])
    pipe = make_pipeline(
        SplitPointActivations(split_point=1, granularity="sample"),
        KMeansConcepts(3, random_state=0),
    ).fit(texts)
    X = np.asarray(pipe[0].transform(texts), dtype=np.float64)
    km = pipe[-1]
    top = TopKInputs(k=5, unique=False).interpret(pipe, texts, as_frame=True)
    _, d2 = _nearest_members(X, km, 5)
    labels = km.transform(X.astype(np.float32)).argmax(axis=1)
    for j in range(3):
        rows = top[top["concept"] == j]
        members = np.flatnonzero(labels == j)
        n_top = min(5, len(members))
        hard = rows[rows["activation"] == 1.0]
        assert len(hard) == n_top
        dist = d2[hard["sample"].to_numpy(), j]
        assert np.all(np.diff(dist) >= -1e-3 * dist.max())  # nearest first
        nearest = np.sort(d2[members, j])[:n_top]
        np.testing.assert_allclose(dist, nearest, rtol=1e-4)


def test_estimators_without_typicality_keep_row_order(extractor):
    # PCA codes of duplicated rows tie: the earlier row wins, as before
    X = np.repeat(_blobs(n_per=4), 2, axis=0)
    texts = [f"unit {i}" for i in range(len(X))]
    pca = PCAConcepts(2).fit(X)
    assert not hasattr(pca, "typicality")
    pipe = Pipeline([("act", extractor), ("pca", pca)])
    top = TopKInputs(k=4).interpret(pipe, texts, activations=X, as_frame=True)
    C = pca.transform(X)
    for j in range(2):
        expected = np.argsort(-C[:, j], kind="stable")[:4].tolist()
        assert top[top["concept"] == j]["sample"].tolist() == expected


def _reference_topk(C, T, units, k):
    """Top-k per concept, unique strings: activation desc, typicality desc, row."""
    rows = []
    for j in range(C.shape[1]):
        order = np.lexsort((np.arange(len(C)), -T[:, j], -C[:, j]))
        seen = set()
        for i in order:
            text = units["text"].iloc[i]
            if text in seen:
                continue
            seen.add(text)
            rows.append((j, int(units["sample"].iloc[i]), text, float(C[i, j])))
            if len(seen) == k:
                break
    return rows


def test_token_level_streamed_equals_reference(demo_corpus):
    """The KMeans case of test_interpret's every-estimator check, with ties."""
    texts = list(demo_corpus[0][:24])
    pipe = make_pipeline(
        SplitPointActivations(split_point=3),
        KMeansConcepts(3, random_state=0, max_iter=20),
    ).fit(texts)
    X = pipe[0].transform(texts)
    km = pipe[-1]
    expected = _reference_topk(
        km.transform(X), km.typicality(X), pipe[0].units(texts), k=3
    )
    for activations in (X, None):
        got = TopKInputs(k=3, batch_size=9).interpret(
            pipe, texts, activations=activations, as_frame=True
        )
        as_rows = list(
            zip(got["concept"], got["sample"], got["text"], got["activation"])
        )
        assert [(int(c), int(s), t, float(a)) for c, s, t, a in as_rows] == expected
