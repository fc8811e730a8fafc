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

from skconcepts import io
from skconcepts._pipeline import encode, split_pipeline
from skconcepts.activations import SplitPointActivations
from skconcepts.exceptions import PipelineFileError
from skconcepts.interpret import TopKInputs, concept_labels
from skconcepts.labels import ConceptLabeler
from skconcepts.pooling import PooledConcepts
from skconcepts.preprocessing import NonNegative
from skconcepts.utils._files import check_out_folder, write_atomic
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
    progress : bool or None, default=True
        Progress bar while activations are computed (``None``: tqdm's rule, a
        bar when stderr is an interactive terminal). The saved pipeline keeps
        ``progress=None`` whatever this is.

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


def load_labeler(folder, *, progress=False):
    """The :class:`~skconcepts.labels.ConceptLabeler` of ``--labeler DIR``."""
    return ConceptLabeler(folder, progress=progress)


def concept_labels_of(labeler, top, n_concepts):
    """One label per concept by ``labeler`` from the top-units table ``top``.

    Every concept gets a label, in order, also one without top units.
    """
    units = {j: {} for j in range(n_concepts)}
    for concept, text, value in zip(top["concept"], top["text"], top["activation"]):
        units[int(concept)].setdefault(str(text), float(value))
    return labeler.label(units)


def fit_command(pipeline, texts, out, *, model_name, short_name, layer, labeler=None):
    """Fit ``pipeline`` on the texts; save it, its report and a summary in ``out``.

    The model runs once: the activations are computed, then the later steps
    are fitted on them. Writes the pipeline with :func:`skconcepts.io.save`
    (``pipeline.skops`` and ``manifest.json``, for every method; no pickle),
    ``report.html``, ``top_inputs.csv``
    and ``summary.json``, each written to a temporary file then renamed, and
    prints a summary. ``out`` is checked to be writable before the work.

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
    labeler : ConceptLabeler, default=None
        Writes the concept labels of the report and summary (``--labeler``).
    """
    out = check_out_folder(out)
    try:
        X = pipeline[0].fit_transform(texts)
    except OSError as exc:  # a model folder transformers cannot load
        raise ValueError(f"--model: {exc}") from None
    pipeline[1:].fit(X)
    saved = _save_pipeline(pipeline, out)
    estimator = pipeline["concepts"]
    granularity = pipeline[0].granularity
    n_concepts = estimator.n_concepts
    r2 = pipeline[1:].score(X)  # reconstruction R² of the activations
    labels = None
    if labeler is not None:
        top = TopKInputs(k=8).interpret(pipeline, texts, activations=X, as_frame=True)
        n_out = len(split_pipeline(pipeline).concepts.get_feature_names_out())
        labels = concept_labels_of(labeler, top, n_out)
    rep = report(
        pipeline,
        texts,
        activations=X,
        labels=labels,
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
    write_atomic(out / "report.html", rep.save)
    write_atomic(
        out / "top_inputs.csv", lambda p: rep.top_inputs.to_csv(p, index=False)
    )
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
    if labels is not None:
        summary["labels"] = list(labels)
    write_atomic(
        out / "summary.json",
        lambda p: Path(p).write_text(json.dumps(summary, indent=2) + "\n"),
    )
    print(
        f"fitted {summary['method']}(n_concepts={n_concepts}) on "
        f"{len(texts)} texts ({X.shape[0]} {granularity} units), "
        f"reconstruction R² {r2:.3f}"
    )
    for j, label in enumerate(rep.labels_):
        print(f"  concept{j}: {label}")
    print(f"saved {saved} and {out / 'report.html'}")


def _save_pipeline(pipeline, out):
    """Save with :func:`skconcepts.io.save` (every method, the SAEs included).

    Every step is saved with ``progress=None`` (tqdm's own rule), so that the
    bars the command line turns on do not stay forced on when the pipeline is
    loaded in Python (e.g. in a notebook or a batch job).
    """
    forced = [
        (step, step.get_params()["progress"])
        for _, step in pipeline.steps
        if hasattr(step, "get_params") and "progress" in step.get_params(deep=False)
    ]
    try:
        for step, _ in forced:
            step.set_params(progress=None)
        io.save(pipeline, out)
    finally:
        for step, value in forced:
            step.set_params(progress=value)
    (out / "pipeline.joblib").unlink(missing_ok=True)  # an older fit's pickle
    return out / io.PIPELINE_FILE


def load_pipeline(folder, trust_pickle=False):
    """The pipeline saved by ``skconcepts fit`` in ``folder``.

    Reads ``pipeline.skops`` with :func:`skconcepts.io.load` (no code runs);
    an old ``pipeline.joblib`` only when ``trust_pickle`` (unpickling runs code
    from the file).

    Raises
    ------
    FileNotFoundError
        If ``folder`` holds no saved pipeline.
    PipelineFileError
        If the file is damaged, not a pipeline of ``skconcepts fit``, or a
        pickle and ``trust_pickle`` is False.
    """
    folder = Path(folder)
    old = folder / "pipeline.joblib"
    if (folder / io.PIPELINE_FILE).is_file():
        pipeline = io.load(folder)
    elif old.is_file():
        if not trust_pickle:
            raise PipelineFileError(
                f"{str(old)!r} is a pickle: loading it runs code from the file; "
                "pass --trust-pickle only if you made it (or fit again to write "
                "the safe format)."
            )
        try:
            pipeline = joblib.load(old)
        except Exception as exc:  # any damage: EOF, unpickling, missing model
            raise PipelineFileError(
                f"{str(old)!r} cannot be loaded ({type(exc).__name__}: {exc}); "
                "fit the pipeline again."
            ) from None
    else:
        raise FileNotFoundError(
            f"{str(folder)!r} holds no {io.PIPELINE_FILE} (nor pipeline.joblib); "
            "pass the --out folder of 'skconcepts fit'."
        )
    if not (
        isinstance(pipeline, Pipeline)
        and len(pipeline) > 1
        and isinstance(pipeline[0], SplitPointActivations)
        and hasattr(pipeline[0], "model_")
    ):
        raise PipelineFileError(
            f"{str(folder)!r} holds a {type(pipeline).__name__}, not a fitted "
            "pipeline of 'skconcepts fit' (SplitPointActivations, then concepts)."
        )
    return pipeline


def interpret_command(
    pipeline, texts, *, k, show, out=None, progress=False, labeler=None
):
    """Apply a fitted pipeline to new texts; print (and with ``out``, write) results.

    Prints the ``k`` top units of every concept and the strongest concept of
    each of the first ``show`` texts (the maximum over its units, by
    :class:`~skconcepts.PooledConcepts`). With ``out``, writes
    ``top_inputs.csv``, ``concept_activations.csv`` (one row per unit),
    ``text_concepts.csv`` (one row per text) and ``report.html``. With a
    ``labeler`` (``--labeler``), each concept's label, written by a local
    language model, is printed and titles it in the report.
    """
    if out is not None:
        out = check_out_folder(out)
    parts = split_pipeline(pipeline, require_extractor=True)
    extractor, concepts = parts.extractor, pipeline[1:]
    extractor.set_params(progress=progress)
    X = extractor.transform(texts)  # fills the extractor's cache
    C = encode(parts, X)  # (n_units, n_concepts)
    units = extractor.units(texts)
    names = [str(n) for n in parts.concepts.get_feature_names_out()]
    top = TopKInputs(k=k).interpret(pipeline, texts, activations=X, as_frame=True)
    labels = concept_labels(pipeline, texts, activations=X, progress=progress)
    quiet = clone(extractor).set_params(progress=False)  # cached: no second bar
    pooled = PooledConcepts(quiet, FrozenEstimator(concepts)).fit(texts)
    per_text = pd.DataFrame(pooled.transform(texts), columns=names)

    if labeler is not None:  # a local language model's labels replace the words
        labels = concept_labels_of(labeler, top, len(names))
    print(f"top {k} units per concept in {len(texts)} texts:")
    for j, name in enumerate(names):
        rows = top[top["concept"] == j]
        cells = ", ".join(
            f"{t} ({a:.2f})" for t, a in zip(rows["text"], rows["activation"])
        )
        title = f"{name} ({labels[j]})" if labels[j] else name
        print(f"  {title}: {cells}")
    print("strongest concept of each text (max over its units):")
    for i, row in per_text.head(show).iterrows():
        j = int(np.argmax(row.to_numpy()))
        text = texts[i] if len(texts[i]) <= 60 else texts[i][:57] + "..."
        print(f"  {i:>4}  {names[j]} ({row.iloc[j]:.2f})  {text}")
    if len(texts) > show:
        print(f"  ... {len(texts) - show} more (use --out to write all)")

    if out is not None:
        write_atomic(out / "top_inputs.csv", lambda p: top.to_csv(p, index=False))
        activations = pd.concat(
            [units.reset_index(drop=True), pd.DataFrame(C, columns=names)], axis=1
        )
        write_atomic(
            out / "concept_activations.csv",
            lambda p: activations.to_csv(p, index=False),
        )
        per_text.insert(0, "text", texts)
        write_atomic(
            out / "text_concepts.csv",
            lambda p: per_text.to_csv(p, index_label="sample"),
        )
        rep = ConceptReport(
            texts,
            units,
            C,
            top_inputs=top,
            concept_names=names,
            k=k,
            labels=labels,
        )
        write_atomic(out / "report.html", rep.save)
        print(
            f"wrote top_inputs.csv, concept_activations.csv, text_concepts.csv "
            f"and report.html to {out}"
        )
