"""The work of ``skconcepts fit`` and ``skconcepts interpret``, with plain arguments.

:mod:`skconcepts.cli` parses and checks the arguments, then calls
:func:`fit_command` or :func:`interpret_command`. Concept methods are looked up
in the one estimator registry, :func:`skconcepts.utils.discovery.concept_methods`.
"""

from __future__ import annotations

import json
from pathlib import Path

import joblib
import numpy as np
import pandas as pd
from sklearn.base import clone
from sklearn.frozen import FrozenEstimator
from sklearn.pipeline import Pipeline
from sklearn.utils import get_tags

from skconcepts._pipeline import encode, split_pipeline
from skconcepts.activations import SplitPointActivations
from skconcepts.interpret import TopKInputs
from skconcepts.pooling import PooledConcepts
from skconcepts.preprocessing import NonNegative
from skconcepts.utils.discovery import concept_methods, method_name
from skconcepts.viz import ConceptReport, report

__all__ = [
    "method_class",
    "build_pipeline",
    "fit_command",
    "load_pipeline",
    "interpret_command",
]

#: aggregation of the tokens of a word, sentence or sample unit
AGGREGATION = "mean"


def method_class(name):
    """The concept estimator class of a method name (case, ``-`` and ``_`` ignored).

    Parameters
    ----------
    name : str
        ``"seminmf"``, ``"semi-nmf"``, ``"SemiNMFConcepts"``, ``"pca"``, ...

    Returns
    -------
    cls : type
        The estimator class, from
        :func:`~skconcepts.utils.discovery.concept_methods`.

    Raises
    ------
    ValueError
        If no concept estimator has this method name; the message lists them.

    Examples
    --------
    >>> from skconcepts._commands import method_class
    >>> method_class("pca").__name__
    'PCAConcepts'
    """
    methods = concept_methods()
    key = method_name(name)
    if key not in methods:
        raise ValueError(
            f"--method {name!r} is not a known method; choose one of {sorted(methods)}."
        )
    return methods[key]


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
    cls = method_class(method)
    params = {"n_concepts": n_concepts}
    if "random_state" in cls().get_params():
        params["random_state"] = random_state
    estimator = cls(**params)
    extractor = SplitPointActivations(
        model,
        tokenizer=tokenizer,
        split_point=layer,
        granularity=granularity,
        aggregation=AGGREGATION,
        batch_size=batch_size,
        device=device,
        progress=progress,
    )
    steps = [("activations", extractor)]
    if get_tags(estimator).input_tags.positive_only:
        steps.append(("nonnegative", NonNegative("split")))
    steps.append(("concepts", estimator))
    return Pipeline(steps)


def fit_command(pipeline, texts, out, *, model_name, short_name, layer):
    """Fit ``pipeline`` on the texts; save it, its report and a summary in ``out``.

    The model runs once: the activations are computed, then the later steps
    are fitted on them. Writes ``pipeline.joblib``, ``report.html``,
    ``top_inputs.csv`` and ``summary.json``, and prints a summary.

    Parameters
    ----------
    pipeline : sklearn.pipeline.Pipeline
        From :func:`build_pipeline`.
    texts : list of str
        The corpus.
    out : str or path-like
        The output folder (created).
    model_name, short_name : str
        The model, in the report and summary and in the report's title.
    layer : str
        The split point as the user gave it.
    """
    X = pipeline[0].fit_transform(texts)
    pipeline[1:].fit(X)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    joblib.dump(pipeline, out / "pipeline.joblib")
    estimator = pipeline["concepts"]
    granularity = pipeline[0].granularity
    n_concepts = estimator.n_concepts
    r2 = pipeline[1:].score(X)  # reconstruction R² of the activations
    rep = report(
        pipeline,
        texts,
        activations=X,
        k=8,
        title=f"skconcepts: {type(estimator).__name__} on {short_name}",
        metadata={
            "model": model_name,
            "split point": layer,
            "granularity": granularity,
            "texts": len(texts),
            "units": X.shape[0],
            "method": f"{type(estimator).__name__}(n_concepts={n_concepts})",
            "reconstruction R²": f"{r2:.3f}",
        },
    )
    rep.save(out / "report.html")
    rep.top_inputs.to_csv(out / "top_inputs.csv", index=False)
    summary = {
        "model": model_name,
        "layer": layer,
        "granularity": granularity,
        "method": type(estimator).__name__,
        "n_concepts": n_concepts,
        "n_texts": len(texts),
        "n_units": int(X.shape[0]),
        "reconstruction_r2": float(r2),
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(
        f"fitted {summary['method']}(n_concepts={n_concepts}) on "
        f"{len(texts)} texts ({X.shape[0]} {granularity} units), "
        f"reconstruction R² {r2:.3f}"
    )
    for j, label in enumerate(rep.labels_):
        print(f"  concept{j}: {label}")
    print(f"saved {out / 'pipeline.joblib'} and {out / 'report.html'}")


def load_pipeline(folder):
    """The pipeline saved by ``skconcepts fit`` in ``folder``.

    Raises
    ------
    FileNotFoundError
        If ``folder`` holds no ``pipeline.joblib``.
    """
    path = Path(folder) / "pipeline.joblib"
    if not path.is_file():
        raise FileNotFoundError(
            f"{str(folder)!r} holds no pipeline.joblib; pass the --out folder of "
            "'skconcepts fit'."
        )
    return joblib.load(path)


def interpret_command(pipeline, texts, *, k, show, out=None, progress=False):
    """Apply a fitted pipeline to new texts; print (and with ``out``, write) results.

    Prints the ``k`` top units of every concept and the strongest concept of
    each of the first ``show`` texts (the maximum over its units, by
    :class:`~skconcepts.PooledConcepts`). With ``out``, writes
    ``top_inputs.csv``, ``concept_activations.csv`` (one row per unit),
    ``text_concepts.csv`` (one row per text) and ``report.html``.
    """
    parts = split_pipeline(pipeline, require_extractor=True)
    extractor, concepts = parts.extractor, pipeline[1:]
    extractor.set_params(progress=progress)
    X = extractor.transform(texts)  # fills the extractor's cache
    C = encode(parts, X)  # (n_units, n_concepts)
    units = extractor.units(texts)
    names = [str(n) for n in parts.concepts.get_feature_names_out()]
    top = TopKInputs(k=k).interpret(pipeline, texts, activations=X, as_frame=True)
    quiet = clone(extractor).set_params(progress=False)  # cached: no second bar
    pooled = PooledConcepts(quiet, FrozenEstimator(concepts)).fit(texts)
    per_text = pd.DataFrame(pooled.transform(texts), columns=names)

    print(f"top {k} units per concept in {len(texts)} texts:")
    for j, name in enumerate(names):
        rows = top[top["concept"] == j]
        cells = ", ".join(
            f"{t} ({a:.2f})" for t, a in zip(rows["text"], rows["activation"])
        )
        print(f"  {name}: {cells}")
    print("strongest concept of each text (max over its units):")
    for i, row in per_text.head(show).iterrows():
        j = int(np.argmax(row.to_numpy()))
        text = texts[i] if len(texts[i]) <= 60 else texts[i][:57] + "..."
        print(f"  {i:>4}  {names[j]} ({row.iloc[j]:.2f})  {text}")
    if len(texts) > show:
        print(f"  ... {len(texts) - show} more (use --out to write all)")

    if out is not None:
        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        top.to_csv(out / "top_inputs.csv", index=False)
        activations = pd.concat(
            [units.reset_index(drop=True), pd.DataFrame(C, columns=names)], axis=1
        )
        activations.to_csv(out / "concept_activations.csv", index=False)
        per_text.insert(0, "text", texts)
        per_text.to_csv(out / "text_concepts.csv", index_label="sample")
        ConceptReport(texts, units, C, top_inputs=top, concept_names=names, k=k).save(
            out / "report.html"
        )
        print(
            f"wrote top_inputs.csv, concept_activations.csv, text_concepts.csv "
            f"and report.html to {out}"
        )
