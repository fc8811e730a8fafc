"""SAE training throughput (rows/s) on MiniLM activations, next to NMF.

A top-k SAE (``TopKSAEConcepts``) is trained on MiniLM-L6 token activations of
split point 3 (width 384) on the CPU and, when one is available, on a GPU. The
baseline is NMF with the same number of concepts on the same rows, relu'd
(``NMFConcepts``, or ``sklearn.decomposition.NMF`` when it is missing). Quality
is the reconstruction R² of each model on its training rows.

``run(quick=True)`` returns the table rows (used by ``python -m bench``);
``python bench/bench_sae.py [--full]`` prints them.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make ``bench`` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from bench._common import load_texts, markdown_table, row, timed  # noqa: E402

SPLIT = 3
#: (texts, n_concepts, top_k, epochs, GPU rows) for quick and full runs
SIZES = {True: (300, 128, 16, 5, 200_000), False: (2000, 256, 32, 5, 1_000_000)}


def minilm_activations(n_texts):
    """Token activations (no special tokens, no padding) of MiniLM block 3."""
    from skconcepts.datasets import load_embedded_model

    model, tokenizer = load_embedded_model()
    texts, source = load_texts(n_texts)
    rows = []
    with torch.inference_mode():
        for i in range(0, len(texts), 64):
            enc = tokenizer(
                texts[i : i + 64],
                padding=True,
                truncation=True,
                return_tensors="pt",
                return_special_tokens_mask=True,
            )
            special = enc.pop("special_tokens_mask").bool()
            hidden = model(**enc, output_hidden_states=True).hidden_states[SPLIT + 1]
            rows.append(hidden[enc["attention_mask"].bool() & ~special])
    return torch.cat(rows).numpy().astype(np.float32), source


def _sae(n_concepts, top_k, epochs, device):
    from skconcepts.concepts import TopKSAEConcepts

    return TopKSAEConcepts(
        n_concepts,
        top_k=top_k,
        n_passes=epochs,
        batch_size=256,
        lr=3e-3,
        device=device,
        random_state=0,
    )


def _fit_score(est, X):
    est.fit(X)
    return est.score(X)


def _nmf(X_pos, n_concepts):
    try:
        from skconcepts.concepts import NMFConcepts

        est, name = NMFConcepts(n_concepts=n_concepts, random_state=0), "NMFConcepts"
    except (ImportError, AttributeError):
        from sklearn.decomposition import NMF

        est, name = NMF(n_components=n_concepts, random_state=0), "sklearn NMF"
    t0 = time.perf_counter()
    codes = est.fit_transform(X_pos)
    seconds = time.perf_counter() - t0
    X_hat = est.inverse_transform(codes)
    resid = ((X_pos.astype(np.float64) - X_hat) ** 2).sum()
    total = ((X_pos - X_pos.mean(0)) ** 2).sum()
    return seconds, 1 - resid / total, name


def run(quick=True):
    """Benchmark rows: SAE rows/s on the CPU (and a GPU), NMF time as baseline.

    Parameters
    ----------
    quick : bool, default=True
        Small sizes (about a minute on 2 cores) instead of the full ones.

    Returns
    -------
    rows : list of dict
        Table rows in the format of ``bench._common.row``.
    """
    n_texts, n_concepts, top_k, epochs, gpu_rows = SIZES[bool(quick)]
    X, source = minilm_activations(n_texts)
    n, d = X.shape
    _fit_score(_sae(n_concepts, top_k, 1, "cpu"), X[:512])  # imports, warm-up
    t_cpu, r2_cpu = timed(_fit_score, _sae(n_concepts, top_k, epochs, "cpu"), X)
    t_nmf, r2_nmf, nmf_name = _nmf(np.maximum(X, 0), n_concepts)
    rate_cpu = n * epochs / t_cpu
    rows = [
        row(
            f"SAE top-k={top_k}, {n_concepts} concepts, {epochs} epochs, "
            f"{n}×{d} MiniLM ({source}), CPU",
            t_cpu,
            f"{nmf_name} k={n_concepts} on relu'd rows",
            t_nmf,
            quality=f"R² {r2_cpu:.3f} / {r2_nmf:.3f}",
            note=f"SAE {rate_cpu:,.0f} rows/s; {torch.get_num_threads()} threads",
        )
    ]
    if torch.cuda.is_available():
        reps = max(1, gpu_rows // n)
        X_big = np.tile(X, (reps, 1))
        _fit_score(_sae(n_concepts, top_k, 1, "cuda"), X[:4096])  # warm-up
        t_gpu, r2_gpu = timed(
            _fit_score, _sae(n_concepts, top_k, epochs, "cuda"), X_big
        )
        rate_gpu = len(X_big) * epochs / t_gpu
        rows.append(
            row(
                f"SAE top-k={top_k}, {n_concepts} concepts, {epochs} epochs, "
                f"{len(X_big)}×{d} (MiniLM rows tiled), GPU "
                f"{torch.cuda.get_device_name()}",
                t_gpu,
                "same SAE on the CPU, scaled to these rows",
                len(X_big) * epochs / rate_cpu,
                quality=f"R² {r2_gpu:.3f}",
                note=f"SAE {rate_gpu:,.0f} rows/s",
            )
        )
    return rows


if __name__ == "__main__":
    print(markdown_table(run(quick="--full" not in sys.argv[1:])))
