"""Row 5: GridSearchCV over n_concepts on a Pipeline that starts from texts.

The activations step caches per-text activations in an object that ``clone``
shares, so the model runs once per distinct text, not once per candidate and
fold. Baseline: one extraction plus the same grid search on precomputed rows
with the same folds.
"""

from __future__ import annotations

import time

import numpy as np
from sklearn.model_selection import GridSearchCV, KFold
from sklearn.pipeline import Pipeline

from bench._common import PeakTreeRSS, load_texts, row

GRID = {"concepts__n_concepts": [8, 16, 32, 64]}


def run(quick=True):
    from skconcepts import NMFConcepts, NonNegative, SplitPointActivations
    from skconcepts.datasets import load_embedded_model

    model, tokenizer = load_embedded_model()
    texts, source = load_texts(200 if quick else 1000)
    texts = np.asarray(texts, dtype=object)
    folds = list(KFold(3).split(texts))

    def concept_steps():
        return [
            ("relu", NonNegative("relu")),
            ("concepts", NMFConcepts(random_state=0, max_iter=100)),
        ]

    # ours: one Pipeline from texts
    pipe = Pipeline(
        [
            (
                "acts",
                SplitPointActivations(
                    model, tokenizer=tokenizer, split_point=3, cache=True
                ),
            ),
            *concept_steps(),
        ]
    )
    t0 = time.perf_counter()
    GridSearchCV(pipe, GRID, cv=folds).fit(list(texts))
    t_ours = time.perf_counter() - t0

    # reference: one extraction, then the same search on precomputed rows
    t0 = time.perf_counter()
    acts = SplitPointActivations(
        model, tokenizer=tokenizer, split_point=3, cache=False
    ).fit(list(texts))
    X = acts.transform(list(texts))
    owner = acts.units(list(texts))["sample"].to_numpy()
    t_extract = time.perf_counter() - t0
    row_folds = [
        (np.flatnonzero(np.isin(owner, tr)), np.flatnonzero(np.isin(owner, te)))
        for tr, te in folds
    ]
    t0 = time.perf_counter()
    GridSearchCV(Pipeline(concept_steps()), GRID, cv=row_folds).fit(X)
    t_fits = time.perf_counter() - t0
    ref = t_extract + t_fits
    ratio = t_ours / ref
    return [
        row(
            f"5. GridSearchCV n_concepts∈{{8,16,32,64}}, cv=3, from {len(texts)} "
            f"texts ({source})",
            t_ours,
            "one extraction + the same fits",
            ref,
            quality=f"total/reference = {ratio:.2f}× (extraction {t_extract:.1f} s,"
            f" fits {t_fits:.1f} s)",
            target="≤ 1.25×",
            met=ratio <= 1.25,
            note="per-text activation cache shared by clones",
        )
    ]


def run_parallel(quick=True):
    """GridSearchCV(n_jobs=2) with a folder cache vs n_jobs=1 (memory cache).

    Time and peak memory of the process tree (workers included). The model is
    given by its path, so workers load it instead of receiving it pickled. Two
    rows: cold (the workers extract the texts, each loading the model), and
    warmed (one transform of all the texts in this process fills the folder
    first, its time counted; the workers then fit from the folder's fit
    record and read every text, so none of them loads the model).
    """
    import shutil
    import tempfile

    from skconcepts import NMFConcepts, NonNegative, SplitPointActivations

    texts, source = load_texts(100 if quick else 1000)
    folds = list(KFold(3).split(texts))

    def search(n_jobs, cache, warm=False):
        pipe = Pipeline(
            [
                ("acts", SplitPointActivations(split_point=3, cache=cache)),
                ("relu", NonNegative("relu")),
                ("concepts", NMFConcepts(random_state=0, max_iter=100)),
            ]
        )
        with PeakTreeRSS() as mem:
            t0 = time.perf_counter()
            if warm:  # one transform of all the texts fills the folder
                acts = SplitPointActivations(split_point=3, cache=cache).fit()
                for _ in acts.iter_batches(texts):
                    pass
                del acts
            t_warm = time.perf_counter() - t0
            grid = GridSearchCV(pipe, GRID, cv=folds, n_jobs=n_jobs).fit(texts)
            elapsed = time.perf_counter() - t0
        return elapsed, mem.peak_mb, t_warm, grid.best_params_

    folder = tempfile.mkdtemp(prefix="skconcepts-gridcache-")
    try:
        t1, m1, _, best1 = search(1, True)
        t2, m2, _, best2 = search(2, f"{folder}/cold")
        t3, m3, t_warm, best3 = search(2, f"{folder}/warm", warm=True)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    same = best1 == best2 == best3
    rows = []
    for label, t, m, note in [
        (
            "cold folder",
            t2,
            m2,
            "loky workers share the on-disk activation cache; the model runs "
            "once per text across workers, each worker loads it",
        ),
        (
            "folder warmed by one transform in this process",
            t3,
            m3,
            f"the warm-up (fit + transform of all texts, 2 threads) takes "
            f"{t_warm:.1f} s of it; the workers fit from the folder's fit record "
            "and find every text: none loads the model",
        ),
    ]:
        mem_ratio = m / m1
        rows.append(
            row(
                f"5b. GridSearchCV n_jobs=2 ({label}) vs n_jobs=1, {len(texts)} "
                f"texts ({source})",
                t,
                "n_jobs=1, memory cache",
                t1,
                quality=f"peak RSS of the process tree {m:.0f} MB vs {m1:.0f} MB "
                f"({mem_ratio:.2f}×); same best_params_: {same}",
                target="faster, peak memory ≤ 1.5×",
                met=t < t1 and mem_ratio <= 1.5,
                note=note,
            )
        )
    return rows
