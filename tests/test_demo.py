"""Tests of skconcepts._demo (``skconcepts demo``, in named steps).

``test_cli.py::test_demo_on_a_reduced_corpus`` runs the command end to end and
checks the files it writes.
"""

import io
from collections import Counter

import numpy as np
import pandas as pd

from skconcepts import PooledConcepts, _demo, cli


def test_load_corpus_keeps_topics_and_labels_balanced():
    full = _demo.load_corpus()
    assert len(full.texts) == 320 and full.n_topics == 5
    subset = _demo.load_corpus(max_texts=40)
    assert len(subset.texts) == 40 and subset.n_topics == 5
    assert Counter(subset.y) == {"negative": 20, "positive": 20}
    assert set(subset.texts) <= set(full.texts)
    assert _demo.load_corpus(max_texts=40).texts == subset.texts  # seeded


def test_split_train_test_is_stratified():
    y = np.array(["negative", "positive"] * 20)
    idx_train, idx_test = _demo.split_train_test(y)
    assert len(idx_test) == 10 and sorted([*idx_train, *idx_test]) == list(range(40))
    assert Counter(y[idx_test]) == {"negative": 5, "positive": 5}


def test_run_demo_returns_results(tmp_path):
    stream = io.StringIO()
    results = cli.run_demo(
        tmp_path, max_texts=40, n_concepts_grid=(2, 3), progress=False, stream=stream
    )
    assert set(results["accuracy"]) == {"SemiNMFConcepts", "KMeansConcepts"}
    assert results["n_concepts"]["SemiNMFConcepts"] in (2, 3)
    k = results["n_concepts"]["SemiNMFConcepts"]
    assert len(results["top_words"]["SemiNMFConcepts"]) == k
    assert results["report"] == tmp_path / "report.html"
    assert results["importance"].shape == (2, k)
    # which concepts drive a classifier of the sentence embedding: the
    # gradient x input of one logit, negated for class 0 (its log-odds)
    driven = results["classifier_importance"]
    assert driven.shape == (2, k)
    assert list(driven.index) == ["negative", "positive"]
    assert np.isfinite(driven.to_numpy()).all()
    saved = pd.read_csv(tmp_path / "classifier_importance.csv", index_col=0)
    np.testing.assert_allclose(saved.to_numpy(), driven.to_numpy(), rtol=1e-6)
    # ... and shown in the main report, the strongest concept of each class
    doc = (tmp_path / "report.html").read_text()
    assert "concepts that drive a classifier of the sentence embedding" in doc
    top = driven.loc["positive"].idxmax()
    assert f"positive: {top} ({driven.loc['positive', top]:+.2f})" in doc
    printed = stream.getvalue()
    assert "[6/6] report:" in printed
    steps = [line[:5] for line in printed.splitlines() if line.startswith("[")]
    assert steps == ["[1/6]", "[2/6]", "[3/6]", "[4/6]", "[5/6]", "[6/6]"]


def test_bottlenecks_are_pooled_concepts(minilm):
    texts = _demo.load_corpus(max_texts=24).texts
    y = _demo.load_corpus(max_texts=24).y
    words, X = _demo.word_activations(*minilm, texts, layer=1, progress=False)
    idx_train, idx_test = _demo.split_train_test(y)
    lines = []
    searches, accuracy, n_concepts = _demo.fit_bottlenecks(
        words, texts, y, idx_train, idx_test, n_concepts_grid=(2,), say=lines.append
    )
    assert set(searches) == set(_demo.demo_methods()) == set(accuracy)
    for name, search in searches.items():
        concepts = search.best_estimator_["concepts"]
        assert isinstance(concepts, PooledConcepts) and concepts.pooling == "max"
        assert concepts.extractor.progress is False  # the cached reruns are quiet
        assert n_concepts[name] == 2
    assert len(lines) == 2 and "best n_concepts=2" in lines[0]
    pipes = _demo.concept_pipelines(words, searches)
    assert [step for step, _ in pipes["KMeansConcepts"].steps] == [
        "activations", "concepts",
    ]  # fmt: skip
    assert pipes["KMeansConcepts"].transform(texts[:2]).shape[1] == 2
