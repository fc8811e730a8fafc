"""
Extracting activations on a Ray cluster
=======================================

:func:`skconcepts.distributed.extract_to_store_ray` writes the same
:class:`~skconcepts.ActivationStore` as :func:`~skconcepts.extract_to_store`,
but the forward passes run in a pool of Ray actors, each holding the model
(loaded once, from its folder). The actors write shards straight into the
store's folder; the driver publishes them in text order and commits the
manifest. Here the "cluster" is a local Ray instance of two CPUs; on a real
one the store's folder must be on a filesystem every node mounts.

Ray is optional: ``pip install 'skconcepts[ray]'``. Without it this example
prints a message and stops.
"""

# %%
# A local Ray cluster
# -------------------
import tempfile

import matplotlib.pyplot as plt
import numpy as np

from skconcepts import KMeansConcepts, SplitPointActivations, extract_to_store
from skconcepts.datasets import load_demo_corpus

try:
    import ray

    from skconcepts.distributed import extract_to_store_ray
except ImportError:
    ray = None
    print("Ray is not installed: pip install 'skconcepts[ray]'. Example skipped.")

texts = load_demo_corpus()[0][:48]
folder = tempfile.TemporaryDirectory()
if ray is not None:
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)

# %%
# Extraction by two actors
# ------------------------
# The texts are cut into tasks of 16 consecutive texts; each of the two actors
# takes a task when it is free. ``acts`` gives the model by its folder (here
# the embedded MiniLM, ``model=None``): the actors load it themselves.
acts = SplitPointActivations(split_point=3, batch_size=8)
if ray is not None:
    store = extract_to_store_ray(
        acts,
        texts,
        folder.name + "/ray-store",
        num_workers=2,
        cpus_per_worker=1,
        texts_per_task=16,
        progress=False,
    )
    print(store)
    print([shard["texts"] for shard in store.manifest["shards"]])

# %%
# The same store as a local extraction
# ------------------------------------
# Same rows, same units; values equal up to the summation order of a
# different number of threads.
if ray is not None:
    local = extract_to_store(acts, texts, folder.name + "/local-store")
    print("units equal:", store.units().equals(local.units()))
    print("largest difference:", float(np.abs(store[:] - local[:]).max()))

# %%
# Fitting from the store
# ----------------------
# Any concept estimator streams the store; on a cluster the store's folder is
# where the fits meet the extraction.
if ray is not None:
    ray.shutdown()
    km = KMeansConcepts(n_concepts=4, random_state=0).fit(store)
    sizes = np.bincount(km.transform(store[:]).argmax(axis=1), minlength=4)
    fig, ax = plt.subplots(figsize=(5, 3))
    ax.bar(range(4), sizes)
    ax.set_xlabel("concept")
    ax.set_ylabel("tokens")
    ax.set_title("Tokens per k-means concept, fitted from the Ray store")
    fig.tight_layout()
    plt.show()
folder.cleanup()
