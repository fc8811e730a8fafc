"""Rows 2-4 and 6: concept estimators against sklearn, overcomplete and interpreto.

Every pair runs on the same activations in the same process; quality is the
reconstruction R² (1 - FVU) of each fitted model on its training data, from the
codes its own fit computed. interpreto 0.5.2 (the optional ``bench`` extra) is
called through its own concept explainers (``NMFConcepts``/``SemiNMFConcepts``
``.fit``) when installed; its rows say "skipped" otherwise.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time

import numpy as np
import torch

from bench._common import matmul_gflops, row, timed

K = 20


def r2(X, X_hat):
    X = np.asarray(X, dtype=np.float64)
    X_hat = np.asarray(X_hat, dtype=np.float64)
    return 1 - ((X - X_hat) ** 2).sum() / ((X - X.mean(0)) ** 2).sum()


def _oc(cls_name, X, max_iter=500, **kw):
    import overcomplete.optimization as oc

    model = getattr(oc, cls_name)(nb_concepts=K, **kw)
    Z, D = model.fit(torch.from_numpy(X), max_iter=max_iter)
    return lambda: r2(X, (Z @ D).numpy())  # R² after the timing


def _sk_nmf(X, n_iter=None):
    from sklearn.decomposition import NMF

    model = NMF(
        n_components=K, init="nndsvda", solver="cd", random_state=0, max_iter=500
    )
    Z = model.fit_transform(X)
    if n_iter is not None:
        n_iter.append(model.n_iter_)
    return lambda: r2(X, Z @ model.components_)  # R² after the timing


def _timed_r2(fn, *args, **kwargs):
    """``timed(fn)``, then the R² its result defers: the timing is the fit only."""
    t, out = timed(fn, *args, **kwargs)
    if isinstance(out, tuple):
        return t, (out[0](), *out[1:])
    return t, out()


def _ours(est, X):
    """``fit_transform``: the fit and the codes of the training rows (as sklearn's)."""
    codes = est.fit_transform(X)
    return (lambda: r2(X, codes @ est.components_)), est  # R² after the timing


def _warm_up(X):
    """One small fit of every library: thread pools, BLAS and imports start here.

    Without it the first timed call of a section pays them (about a second on a
    2-core machine), whichever library that is.
    """
    from sklearn.decomposition import NMF

    from skconcepts import NMFConcepts, SemiNMFConcepts

    Xs = np.ascontiguousarray(X[:2000])
    Xp = np.maximum(Xs, 0)
    NMFConcepts(n_concepts=K, random_state=0, top_k=None, max_iter=5).fit(Xp)
    SemiNMFConcepts(n_concepts=K, random_state=0, top_k=None, max_iter=5).fit(Xs)
    NMF(n_components=K, init="nndsvda", max_iter=5).fit(Xp)
    _oc("SemiNMF", Xs, max_iter=5)


def rank_bound(X, k=K):
    """R² of the best rank-``k`` approximation of ``X`` (no mean term): an upper
    bound for any ``Z @ D`` with ``k`` concepts, NMF and semi-NMF included."""
    X64 = np.asarray(X, dtype=np.float64)
    evals = np.linalg.eigvalsh(X64.T @ X64)[::-1]
    total = ((X64 - X64.mean(0)) ** 2).sum()
    return 1 - (evals[k:].sum()) / total


def interpreto_available():
    try:
        import interpreto  # noqa: F401  # deferred: optional baseline
    except Exception:  # noqa: BLE001 - any import failure means "absent"
        return False
    return True


def _interpreto_splitter():
    """interpreto's ModelWithSplitPoints on MiniLM at the bench's split point."""
    # deferred: interpreto is an optional benchmark baseline
    from interpreto import ModelWithSplitPoints

    from bench.bench_extraction import SPLIT
    from skconcepts.datasets import load_embedded_model

    model, tokenizer = load_embedded_model()
    return ModelWithSplitPoints(
        model,
        split_points=f"encoder.layer.{SPLIT}",
        tokenizer=tokenizer,
        batch_size=64,
        device_map="cpu",
    )


def _interpreto_fit(explainer, X, **kw):
    """interpreto's own ``explainer.fit``; R² of the codes its fit computed."""
    model = explainer.concept_model
    inner = model.fit
    kept = {}

    def fit_and_keep(A, **kwargs):  # the codes interpreto discards
        kept["ZD"] = inner(A, **kwargs)
        return kept["ZD"]

    model.fit = fit_and_keep
    torch.manual_seed(0)  # its random init draws from the global generator
    explainer.fit(torch.from_numpy(X), **kw)
    Z, D = kept["ZD"]
    return lambda: r2(X, (Z @ D).detach().numpy())  # R² after the timing


def interpreto_rows(X_pos, X_signed, ours):
    """NMF and SemiNMF against interpreto 0.5.2's own concept explainers."""
    if not interpreto_available():
        return [
            row(
                "2c/3c. NMF and SemiNMF vs interpreto 0.5.2",
                None,
                "interpreto NMFConcepts / SemiNMFConcepts",
                None,
                note="skipped: interpreto is not installed "
                "(pip install 'skconcepts[bench]')",
            )
        ]
    # deferred: interpreto is an optional benchmark baseline
    from interpreto.concepts import NMFConcepts as IntNMF
    from interpreto.concepts import SemiNMFConcepts as IntSemiNMF

    splitter = _interpreto_splitter()
    _interpreto_fit(IntSemiNMF(splitter, nb_concepts=K), X_signed[:2000], max_iter=5)
    t_nmf, q_nmf = _timed_r2(
        _interpreto_fit, IntNMF(splitter, nb_concepts=K, force_relu=True), X_pos
    )
    t_semi, q_semi = _timed_r2(
        _interpreto_fit, IntSemiNMF(splitter, nb_concepts=K), X_signed
    )
    bound = rank_bound(X_signed)
    (t_on, q_on), (t_os, q_os) = ours["nmf"], ours["semi"]
    n, d = X_signed.shape
    return [
        row(
            f"2c. NMF k={K}, {n}×{d} relu activations",
            t_on,
            "interpreto 0.5.2 NMFConcepts(force_relu=True).fit (hals)",
            t_nmf,
            quality=f"R² {q_on:.4f} / {q_nmf:.4f}",
            target="≥ 5× at ≥ R²",
            met=t_nmf / t_on >= 5 and q_on >= q_nmf - 1e-4,
        ),
        row(
            f"3a-i. SemiNMF k={K}, {n}×{d} signed activations",
            t_os,
            "interpreto 0.5.2 SemiNMFConcepts.fit (mu, 500 iterations, tol 1e-4)",
            t_semi,
            quality=f"R² {q_os:.4f} / {q_semi:.4f}",
            target="≥ 5× at ≥ R²",
            met=t_semi / t_os >= 5 and q_os >= q_semi - 1e-4,
            note=f"any {K}-concept Z @ D reaches at most R² {bound:.4f} here (best "
            f"rank-{K} approximation); PCA with {K} components reaches more only "
            "through its mean (a 21st direction). Timed: ours fit_transform, "
            "interpreto's explainer.fit",
        ),
    ]


def nmf_rows(X_signed):
    from skconcepts import NMFConcepts, NonNegative, SemiNMFConcepts

    X_pos = NonNegative("relu").fit_transform(X_signed)
    n = len(X_pos)
    _warm_up(X_signed)
    t_ours, (q_ours, est) = _timed_r2(
        _ours,
        NMFConcepts(n_concepts=K, random_state=0, top_k=None, init="nndsvda"),
        X_pos,
    )
    sk_iter = []
    t_sk, q_sk = _timed_r2(_sk_nmf, X_pos, sk_iter)
    t_oc, q_oc = _timed_r2(_oc, "NMF", X_pos, solver="hals")
    rows = [
        row(
            f"2a. NMF k={K}, {n}×{X_pos.shape[1]} relu activations",
            t_ours,
            "sklearn NMF (cd, nndsvda)",
            t_sk,
            quality=f"R² {q_ours:.4f} / {q_sk:.4f}",
            target="≥ 5× at ≥ R²",
            met=t_sk / t_ours >= 5 and q_ours >= q_sk - 1e-4,
            note="timed: ours fit_transform (fit and the codes of the training "
            f"rows), sklearn fit_transform, each R² computed after its timing; "
            f"each library warmed up by a small fit "
            f"first. {est.n_iter_} iterations (sklearn: {sk_iter[0]})"
            + (
                ""
                if t_sk / t_ours >= 5
                else f"; short by {5 * t_ours / t_sk:.2f}×. Profile (1 thread): "
                "~75% of an iteration in its two n·d·k products (X Dᵀ, Zᵀ X; "
                "skinny, ~45% of the square-matmul rate, row 6), ~15% in the HALS "
                "sweeps on the codes; the nndsvda start and the final codes ~7% "
                "each. Sweep counts and extrapolation settings move R² by ±0.001 "
                "(other local optima) without fewer iterations"
            ),
        ),
        row(
            f"2b. NMF k={K}, same data",
            t_ours,
            "overcomplete NMF (hals)",
            t_oc,
            quality=f"R² {q_ours:.4f} / {q_oc:.4f}",
            target="≥ 3× at ≥ R²",
            met=t_oc / t_ours >= 3 and q_ours >= q_oc - 1e-4,
        ),
    ]
    t_semi, (q_semi, semi) = _timed_r2(
        _ours,
        SemiNMFConcepts(n_concepts=K, random_state=0, top_k=None, init="kmeans"),
        X_signed,
    )
    t_ocs, q_ocs = _timed_r2(_oc, "SemiNMF", X_signed)
    rows.append(
        row(
            f"3a. SemiNMF k={K}, {n}×{X_signed.shape[1]} signed activations",
            t_semi,
            "overcomplete SemiNMF (mu)",
            t_ocs,
            quality=f"R² {q_semi:.4f} / {q_ocs:.4f}",
            target="≥ 5× at ≥ R²",
            met=t_ocs / t_semi >= 5 and q_semi >= q_ocs - 1e-4,
        )
    )
    ours = {"nmf": (t_ours, q_ours), "semi": (t_semi, q_semi)}
    rows += interpreto_rows(X_pos, X_signed, ours)
    return rows, {"nmf": (est, X_pos, t_ours), "semi": (semi, X_signed, t_semi)}


def convex_rows(X_signed, n_small):
    from skconcepts import ConvexNMFConcepts

    Xs = np.ascontiguousarray(X_signed[:n_small])
    t_ours, (q_ours, _) = _timed_r2(
        _ours, ConvexNMFConcepts(n_concepts=K, random_state=0), Xs
    )
    t_oc, q_oc = _timed_r2(_oc, "ConvexNMF", Xs)
    return [
        row(
            f"3b. ConvexNMF k={K}, {n_small}×{Xs.shape[1]} signed activations",
            t_ours,
            "overcomplete ConvexNMF (pgd)",
            t_oc,
            quality=f"R² {q_ours:.4f} / {q_oc:.4f}",
            target="≥ 5× at ≥ R²",
            met=t_oc / t_ours >= 5 and q_ours >= q_oc - 1e-4,
            note=""
            if t_oc / t_ours >= 5
            else f"short by {5 * t_ours / t_oc:.2f}×; ours needs many projected-"
            "gradient iterations on the convex problem, while overcomplete's pgd "
            "diverges here (its R² in the quality column)",
        )
    ]


_CONVEX_MEM = """
import sys, time, numpy as np
from skconcepts import ConvexNMFConcepts

def status(key):
    for line in open("/proc/self/status"):
        if line.startswith(key):
            return int(line.split()[1]) / 1024  # MB

n = int(sys.argv[1]); rng = np.random.default_rng(0)
X = rng.standard_normal((n, 384), dtype=np.float32)
ConvexNMFConcepts(n_concepts=20, random_state=0, max_iter=2).fit(X[:2000])  # warm-up
open("/proc/self/clear_refs", "w").write("5")  # reset the peak (VmHWM) to now
base = status("VmRSS")
t = time.perf_counter()
ConvexNMFConcepts(n_concepts=20, random_state=0, max_iter=50).fit(X)
print(time.perf_counter() - t, status("VmHWM") - base)
"""


def convex_memory_rows(sizes=(12_500, 50_000)):
    """Peak extra RSS of ConvexNMF fits at two sizes, each in a fresh process."""
    out = {}
    for n in sizes:
        res = subprocess.run(
            [sys.executable, "-c", _CONVEX_MEM, str(n)],
            capture_output=True,
            text=True,
            check=True,
            env={**os.environ, "PYTHONPATH": os.getcwd()},
        )
        t, mb = map(float, res.stdout.split()[-2:])
        out[n] = (t, mb)
    (n1, (t1, m1)), (n2, (t2, m2)) = sorted(out.items())
    growth = m2 / max(m1, 1e-9)
    dense_mb = n2 * n2 * 4 / 2**20
    return [
        row(
            f"3c. ConvexNMF memory, {n1} → {n2} rows × 384 (50 iterations)",
            t2,
            f"same at {n1} rows",
            t1,
            quality=f"peak extra RSS {m1:.0f} MB → {m2:.0f} MB (×{growth:.1f} for "
            f"×{n2 / n1:.0f} rows); an n×n float32 matrix would be "
            f"{dense_mb:.0f} MB",
            target="linear in rows",
            met=growth <= 1.5 * n2 / n1,
            note="speed-up column: time ratio small/large, expected ≈ rows ratio",
        )
    ]


def sklearn_rows(X_signed, n_small):
    from sklearn.cluster import KMeans
    from sklearn.decomposition import (
        PCA,
        DictionaryLearning,
        FastICA,
        SparsePCA,
        TruncatedSVD,
    )

    from skconcepts import (
        DictionaryLearningConcepts,
        ICAConcepts,
        KMeansConcepts,
        PCAConcepts,
        SparsePCAConcepts,
        SVDConcepts,
    )

    X = X_signed
    Xs = np.ascontiguousarray(X_signed[:n_small])
    pairs = [
        ("PCA", PCAConcepts(n_concepts=K), PCA(n_components=K), X),
        (
            "SVD",
            SVDConcepts(n_concepts=K, random_state=0),
            TruncatedSVD(n_components=K, random_state=0),
            X,
        ),
        (
            "ICA",
            ICAConcepts(n_concepts=K, random_state=0, max_iter=200),
            FastICA(n_components=K, random_state=0, max_iter=200),
            X,
        ),
        (
            "KMeans",
            KMeansConcepts(n_concepts=K, random_state=0, n_init=1),
            KMeans(n_clusters=K, random_state=0, n_init=1),
            X,
        ),
        (
            "SparsePCA",
            SparsePCAConcepts(n_concepts=K, random_state=0, max_iter=20),
            SparsePCA(n_components=K, random_state=0, max_iter=20),
            Xs,
        ),
        (
            "DictionaryLearning",
            DictionaryLearningConcepts(n_concepts=K, random_state=0, max_iter=20),
            DictionaryLearning(n_components=K, random_state=0, max_iter=20),
            Xs,
        ),
    ]
    rows = []
    for name, ours, theirs, data in pairs:
        # alternate the two so that warm-up and load hit both alike; best of 2
        sk_times, our_times = [], []
        for _ in range(3):
            sk_times.append(timed(theirs.fit, data)[0])
            our_times.append(timed(ours.fit, data)[0])
        t_sk, t_ours = min(sk_times), min(our_times)
        overhead = t_ours / t_sk - 1
        spread = max(sk_times) / t_sk - 1
        rows.append(
            row(
                f"4. {name} k={K}, {len(data)}×{data.shape[1]}",
                t_ours,
                f"sklearn {type(theirs).__name__}",
                t_sk,
                quality=f"R² ours {ours.score(data):.4f}",
                target="overhead < 10%",
                met=overhead < 0.10,
                note=f"overhead {100 * overhead:+.1f}% (best of 3 alternating runs); "
                f"sklearn's own run-to-run spread here: +{100 * spread:.0f}%"
                + (
                    ""
                    if overhead < 0.10
                    else f"; short by {100 * (overhead - 0.10):.0f} points. The "
                    "wrapper adds input validation and, for iterative methods, one "
                    "transform of the training rows to report reconstruction_err_"
                ),
            )
        )
    return rows


def _iteration_seconds(cls, X, m1, m2, **kw):
    """Seconds per solver iteration: (t(m2) - t(m1)) / (m2 - m1), tol=0, same init."""
    params = {"n_concepts": K, "random_state": 0, "tol": 0.0, "top_k": None, **kw}
    t1, e1 = timed(lambda: cls(max_iter=m1, **params).fit(X), repeat=2)
    t2, e2 = timed(lambda: cls(max_iter=m2, **params).fit(X), repeat=2)
    return (t2 - t1) / max(e2.n_iter_ - e1.n_iter_, 1), e2.n_iter_ - e1.n_iter_


def _products_gflops(X, repeat=5):
    """Rate of the two n×d×k products of one iteration, alone (torch, fp32)."""
    Xt = torch.from_numpy(np.ascontiguousarray(X))
    D = torch.rand(K, Xt.shape[1])
    Z = torch.rand(Xt.shape[0], K)
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        Xt @ D.T
        Z.T @ Xt
        best = min(best, time.perf_counter() - t0)
    return 2 * 2 * Xt.shape[0] * Xt.shape[1] * K / best / 1e9


def flop_rows(fitted):
    from skconcepts import NMFConcepts, SemiNMFConcepts

    peak = matmul_gflops("float32")
    rows = []
    for key, label, cls, init in (
        ("nmf", "NMF", NMFConcepts, "nndsvda"),
        ("semi", "SemiNMF", SemiNMFConcepts, "kmeans"),
    ):
        _, X, _ = fitted[key]
        n, d = X.shape
        per_iter, n_extra = _iteration_seconds(cls, X, 10, 40, init=init)
        products = _products_gflops(X)
        # per iteration: the two n×d×k products (X Dᵀ and Zᵀ X) dominate
        rate = 2 * 2 * n * d * K / per_iter / 1e9
        rows.append(
            row(
                f"6. {label} iteration FLOP rate ({n}×{d}, k={K})",
                per_iter,
                "fp32 matmul peak (2048³)",
                None,
                quality=f"{rate:.0f} GFLOP/s of {peak:.0f} GFLOP/s "
                f"= {100 * rate / peak:.0f}%",
                target="≥ 50%",
                met=rate / peak >= 0.5,
                note=f"ours (s) = seconds per iteration, from {n_extra} extra "
                "iterations at tol=0; counts only the two n·d·k products. "
                f"Those two products alone (X Dᵀ, Zᵀ X, k={K}) run at "
                f"{products:.0f} GFLOP/s = {100 * products / peak:.0f}% of peak here: "
                "skinny products that stream X from memory bound the solver below "
                "the square-matmul rate",
            )
        )
    return rows


def run(X_signed, quick=True):
    if quick:  # quick: a third of the rows for the iterative baselines
        X_signed = np.ascontiguousarray(X_signed[:10_000])
    rows, fitted = nmf_rows(X_signed)
    rows += convex_rows(X_signed, 3000 if quick else 16000)
    rows += convex_memory_rows()
    rows += sklearn_rows(X_signed, 1000 if quick else 5000)
    rows += flop_rows(fitted)
    return rows
