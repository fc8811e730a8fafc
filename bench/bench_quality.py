"""Concept quality (issue 14, item 1) and dictionary recovery (issue 14, item 6).

Quality table: MiniLM (embedded), last block, one row per text, 8 concepts, on the
demo corpus (320 texts, 5 topics). Each method is fitted on a stratified 70% of
the texts; a held-out text's strongest concept is mapped to the majority topic
of the training texts it wins, and the table gives how often that names the
text's topic (agreement), the share of concepts active per held-out text (above
5% of the row's strongest) and the held-out reconstruction R².

Recovery table: :func:`skconcepts.datasets.make_concept_activations` and
:func:`skconcepts.metrics.dictionary_recovery`, at the planted size and x2
over-complete, ours against overcomplete's solvers on the same data.
"""

from __future__ import annotations

import time

import numpy as np

from bench._common import row

N_CONCEPTS = 8


# ------------------------------------------------------------------ measures
def topic_agreement(C_train, y_train, C_test, y_test):
    """Share of held-out rows whose strongest concept names their label."""
    winners = C_train.argmax(axis=1)
    values, counts = np.unique(y_train, return_counts=True)
    fallback = values[counts.argmax()]
    names = {}
    for j in range(C_train.shape[1]):
        won = y_train[winners == j]
        if len(won):
            v, c = np.unique(won, return_counts=True)
            names[j] = v[c.argmax()]
        else:
            names[j] = fallback
    predicted = np.array([names[j] for j in C_test.argmax(axis=1)])
    return float((predicted == y_test).mean())


def active_share(C, rel=0.05):
    """Mean share of concepts above ``rel`` of each row's strongest."""
    top = C.max(axis=1, keepdims=True)
    return float(((C > rel * top) & (top > 0)).mean())


def r2(X, X_hat):
    X = np.asarray(X, dtype=np.float64)
    X_hat = np.asarray(X_hat, dtype=np.float64)
    return float(1 - ((X - X_hat) ** 2).sum() / ((X - X.mean(0)) ** 2).sum())


# ------------------------------------------------------------- quality table
def demo_activations():
    """MiniLM last-block activations, one row per demo text, topics, sentiment."""
    from skconcepts import SplitPointActivations
    from skconcepts.datasets import embedded_model_path, load_demo_corpus

    texts, sentiment, topics = load_demo_corpus()
    acts = SplitPointActivations(
        model=embedded_model_path(), split_point=-1, granularity="sample"
    ).fit()
    X = np.asarray(acts.transform(list(texts)), np.float32)
    return X, np.asarray(topics), np.asarray(sentiment)


def quality_methods():
    """(name, factory(seed) -> estimator or pipeline) at the defaults."""
    from sklearn.pipeline import make_pipeline

    from skconcepts import (
        ConvexNMFConcepts,
        ICAConcepts,
        KMeansConcepts,
        NeuronConcepts,
        NMFConcepts,
        NonNegative,
        PCAConcepts,
        SemiNMFConcepts,
    )

    k = N_CONCEPTS
    methods = []
    # the defaults (top_k="auto": 2 active concepts per row) against dense codes
    # and a looser top_k, for the two recommended methods
    for label, top_k in (("default, top_k='auto'", "auto"), ("top_k=None", None)):
        methods.append(
            (
                f"SemiNMFConcepts ({label})",
                lambda s, t=top_k: SemiNMFConcepts(k, random_state=s, top_k=t),
            )
        )
    methods.append(
        (
            "SemiNMFConcepts(top_k=4)",
            lambda s: SemiNMFConcepts(k, random_state=s, top_k=4),
        )
    )
    for label, top_k in (("default, top_k='auto'", "auto"), ("top_k=None", None)):
        methods.append(
            (
                f"NonNegative('relu') + NMFConcepts ({label})",
                lambda s, t=top_k: make_pipeline(
                    NonNegative("relu"), NMFConcepts(k, random_state=s, top_k=t)
                ),
            )
        )
    methods.append(
        (
            "NonNegative('relu') + NMFConcepts(top_k=4)",
            lambda s: make_pipeline(
                NonNegative("relu"), NMFConcepts(k, random_state=s, top_k=4)
            ),
        )
    )
    methods += [
        ("ConvexNMFConcepts (default)", lambda s: ConvexNMFConcepts(k, random_state=s)),
        ("KMeansConcepts (default)", lambda s: KMeansConcepts(k, random_state=s)),
        ("PCAConcepts (default)", lambda s: PCAConcepts(k)),
        ("ICAConcepts (default)", lambda s: ICAConcepts(k, random_state=s)),
        # the baseline every method should beat: the k units of largest variance
        ("NeuronConcepts(units=8) (baseline)", lambda s: NeuronConcepts(units=k)),
    ]
    return methods


def quality_rows(quick):
    from sklearn.model_selection import train_test_split

    X, topics, sentiment = demo_activations()
    splits = 1 if quick else 6
    rows = []
    for name, make in quality_methods():
        scores, t_fit = [], 0.0
        for seed in range(splits):
            Xtr, Xte, ytr, yte, str_, ste = train_test_split(
                X, topics, sentiment, test_size=0.3, random_state=seed, stratify=topics
            )
            est = make(seed)
            t0 = time.perf_counter()
            Ctr = np.asarray(est.fit_transform(Xtr))
            t_fit += time.perf_counter() - t0
            Cte = np.asarray(est.transform(Xte))
            scores.append(
                (
                    topic_agreement(Ctr, ytr, Cte, yte),
                    active_share(Cte),
                    r2(Xte, est.inverse_transform(Cte)),
                    topic_agreement(Ctr, str_, Cte, ste),
                )
            )
        agree, active, q, senti = np.mean(scores, axis=0)
        worst = float(np.min(np.asarray(scores)[:, 0]))
        rows.append(
            row(
                f"Q. {name}: demo topics, {len(X)} texts, k={N_CONCEPTS}",
                t_fit / splits,
                "",
                None,
                quality=f"agreement {agree:.0%}, active {active:.0%}, "
                f"held-out R² {q:.3f}",
                target="agreement ≥ 75%, active ≤ 50%",
                met=bool(agree >= 0.75 and active <= 0.5),
                note=f"mean of {splits} stratified 70/30 split(s) (worst split "
                f"{worst:.0%}); the same mapping names the sentiment for "
                f"{senti:.0%}; time: one fit"
                + ("; recommended default" if "top_k='auto'" in name else ""),
            )
        )
    return rows


# ------------------------------------------------------------ recovery table
def _oc_dictionary(cls_name, X, k, seed, **kw):
    import overcomplete.optimization as oc
    import torch

    torch.manual_seed(seed)
    model = getattr(oc, cls_name)(nb_concepts=k, **kw)
    _, D = model.fit(torch.from_numpy(X), max_iter=200)
    return D.detach().numpy()


def recovery_rows(quick):
    from skconcepts import (
        BatchTopKSAEConcepts,
        NeuronConcepts,
        NMFConcepts,
        SemiNMFConcepts,
        TopKSAEConcepts,
    )
    from skconcepts.datasets import make_concept_activations
    from skconcepts.metrics import dictionary_recovery

    n_samples = 2000 if quick else 5000
    planted = 16
    X, _, D_true = make_concept_activations(
        n_samples=n_samples, n_features=64, n_concepts=planted, random_state=0
    )
    try:
        import overcomplete.optimization  # noqa: F401  (deferred: heavy)

        have_oc = True
    except ImportError:  # pragma: no cover - optional
        have_oc = False
    rows = []
    for k in (planted, 2 * planted):
        pairs = []
        for cls, oc_name in ((NMFConcepts, "NMF"), (SemiNMFConcepts, "SemiNMF")):
            for label, top_k in (("default, top_k='auto'", "auto"), ("", None)):
                name = (
                    f"{cls.__name__} ({label})"
                    if label
                    else (f"{cls.__name__}(top_k=None)")
                )
                pairs.append(
                    (
                        name,
                        lambda cls=cls, t=top_k: cls(k, random_state=0, top_k=t),
                        oc_name,
                        {},
                    )
                )
        # the SAEs match the generator (sparse non-negative codes, about
        # 0.1 * 16 = 1.6 active concepts per row, so top_k=2); measured: at the
        # defaults (lr=1e-3, no dead-concept handling) a top-k SAE stays near
        # 0.7, lr=1e-2 with resampling of dead concepts is what recovers. Batch
        # top-k (2 per row on average) matches the varying number of active
        # concepts; per-row top-k plateaus near 0.90 at the planted size (its
        # decoder bias takes the part that the coherent atoms share)
        sae_kw = dict(top_k=2, lr=1e-2, dead_concepts="resample")
        for sae_cls in (TopKSAEConcepts, BatchTopKSAEConcepts):
            pairs.append(
                (
                    f"{sae_cls.__name__}(top_k=2, lr=1e-2, dead_concepts='resample')",
                    lambda sae_cls=sae_cls: sae_cls(
                        k, n_passes=30 if quick else 60, random_state=0, **sae_kw
                    ),
                    None,
                    {},
                )
            )
        # the baseline: the k units of largest variance as the dictionary
        pairs.append(("NeuronConcepts (baseline)", lambda: NeuronConcepts(k), None, {}))
        for name, make, oc_name, kw in pairs:
            t0 = time.perf_counter()
            ours = dictionary_recovery(D_true, make().fit(X).components_)
            t_ours = time.perf_counter() - t0
            if oc_name is None:
                t_ref, quality = None, f"recovery {ours:.3f}"
            elif have_oc:
                t0 = time.perf_counter()
                ref = dictionary_recovery(
                    D_true, _oc_dictionary(oc_name, X, k, 0, **kw)
                )
                t_ref = time.perf_counter() - t0
                quality = f"recovery {ours:.3f} / {ref:.3f}"
            else:
                t_ref, quality = None, f"recovery {ours:.3f} / overcomplete absent"
            rows.append(
                row(
                    f"R. {name} k={k} on {planted} planted concepts "
                    f"({n_samples}×64, non-negative codes)",
                    t_ours,
                    f"overcomplete {oc_name}" if oc_name else "",
                    t_ref,
                    quality=quality,
                    target="recovery ≥ 0.9",
                    met=bool(ours >= 0.9),
                    note="mean |cosine| of Hungarian-matched dictionary rows",
                )
            )
    return rows


def run(quick=True):
    return quality_rows(quick) + recovery_rows(quick)
