"""
A corpus larger than memory
===========================

When the activations of a corpus do not fit in memory, write them to an
on-disk :class:`~skconcepts.ActivationStore` with
:func:`~skconcepts.extract_to_store`, fit a streaming concept estimator from
the store (it makes passes over shuffled batches, never loading the store),
and find the top inputs of every concept with :class:`~skconcepts.TopKInputs`,
which keeps a running top-k over the store. The demo corpus is small, but the
memory each step needs is measured, and does not grow with the store.
"""

# %%
# Writing the store
# -----------------
# One row per token at block 3, in shards of at most 1 000 rows. Rerunning the
# same call after an interruption resumes after the last complete shard.
import tempfile
import tracemalloc
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
from sklearn.pipeline import make_pipeline

from skconcepts import (
    KMeansConcepts,
    SemiNMFConcepts,
    SplitPointActivations,
    TopKInputs,
    extract_to_store,
    write_array_store,
)
from skconcepts.datasets import load_demo_corpus
from skconcepts.store import format_bytes

texts, labels, topics = load_demo_corpus()
folder = Path(tempfile.mkdtemp())
extractor = SplitPointActivations(split_point=3, granularity="token")
store = extract_to_store(extractor, texts, folder / "tokens", shard_rows=1000)
on_disk = sum(f.stat().st_size for f in (folder / "tokens").rglob("*.npy"))
print(f"{store.shape[0]} rows x {store.shape[1]} features, {format_bytes(on_disk)}")

# %%
# A streaming fit and the top inputs
# ----------------------------------
# ``SemiNMFConcepts`` fitted on a store streams it: ``n_passes`` passes of
# shuffled batches of ``batch_size`` rows. ``TopKInputs`` reads the store
# (``activations=store``) with its own table of units, so the model does not
# run again.
concepts = SemiNMFConcepts(n_concepts=8, batch_size=512, n_passes=5, random_state=0)
concepts.fit(store)
pipe = make_pipeline(extractor, concepts)
top = TopKInputs(k=6).interpret(pipe, None, activations=store)
for concept, tokens in top.items():
    print(f"concept {concept}: {', '.join(tokens)}")

# %%
# Memory against the size of the store
# ------------------------------------
# Larger stores are made by repeating the rows
# (:func:`~skconcepts.write_array_store`). For each, the peak memory that
# Python allocates (``tracemalloc``) while fitting ``KMeansConcepts`` from the
# store (mini-batch k-means: passes of batches of 1 024 rows), against loading
# the store into memory first and fitting on the array.
X = store.to_numpy()


def peak_bytes(function):
    tracemalloc.start()
    function()
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return peak


sizes, streamed, in_memory = [], [], []
for repeat in (1, 2, 4, 8):
    big = write_array_store(
        np.tile(X, (repeat, 1)), folder / f"x{repeat}", shard_rows=2000
    )
    sizes.append(big.shape[0] * big.shape[1] * 4)
    streamed.append(
        peak_bytes(lambda: KMeansConcepts(n_concepts=8, random_state=0).fit(big))
    )
    in_memory.append(
        peak_bytes(
            lambda: KMeansConcepts(n_concepts=8, random_state=0).fit(big.to_numpy())
        )
    )
    print(
        f"store {format_bytes(sizes[-1])}: streaming peak "
        f"{format_bytes(streamed[-1])}, in memory {format_bytes(in_memory[-1])}"
    )

mib = 2**20
fig, ax = plt.subplots(figsize=(6, 4))
ax.plot(
    np.divide(sizes, mib),
    np.divide(in_memory, mib),
    "o-",
    label="load the store, then fit",
)
ax.plot(
    np.divide(sizes, mib),
    np.divide(streamed, mib),
    "s-",
    label="streaming fit from the store",
)
ax.set_xlabel("store size (MiB)")
ax.set_ylabel("peak memory allocated (MiB)")
ax.set_title("Streaming memory does not grow with the store")
ax.legend()
fig.tight_layout()
