"""
Supervised concepts: probes against units and PCA
=================================================

A probe reads a known concept from labelled activations: here the topic of a
text. :class:`~skconcepts.ProbeConcepts` learns one direction per topic in
the activations of block 3 of the embedded MiniLM, compared with the units
themselves (:class:`~skconcepts.NeuronConcepts`, the baseline) and with as
many PCA directions. Runs offline in well under a minute.
"""

# %%
# One row per text
# ----------------
# The activations are computed once; the three dictionaries are fitted on them.
import matplotlib.pyplot as plt
import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import cross_val_score
from sklearn.pipeline import make_pipeline

from skconcepts import (
    NeuronConcepts,
    PCAConcepts,
    ProbeConcepts,
    SplitPointActivations,
)
from skconcepts.datasets import load_demo_corpus

texts, sentiment, topics = load_demo_corpus()
texts, topics = texts[:150], np.asarray(topics[:150])
X = SplitPointActivations(split_point=3, granularity="sample").fit_transform(texts)
print(X.shape)

# %%
# A direction per topic
# ---------------------
# With ``method="mean_diff"`` a topic's direction is the mean of its texts
# minus the mean of the others; ``transform`` projects on the directions.
probe = ProbeConcepts(method="mean_diff").fit(X, topics)
C = probe.transform(X)
fig, ax = plt.subplots(figsize=(7, 3.5))
for j, topic in enumerate(probe.classes_):
    mine = topics == topic
    ax.scatter(np.full(mine.sum(), j - 0.15), C[mine, j], s=10)
    ax.scatter(np.full((~mine).sum(), j + 0.15), C[~mine, j], s=6, color="lightgray")
ax.set_xticks(np.arange(len(probe.classes_)), probe.classes_)
ax.set_ylabel("projection on the topic's direction")
ax.set_title("Each topic's texts (color) against the others (gray)")
fig.tight_layout()

# %%
# How much of the topic each dictionary keeps
# -------------------------------------------
# A classifier on five concept activations: five probe directions (fitted
# inside each fold), five PCA directions, five units chosen at random.
n = len(probe.classes_)


def accuracy(concepts):
    model = make_pipeline(concepts, LogisticRegression(max_iter=2000))
    return cross_val_score(model, X, topics, cv=3).mean()


units = np.random.default_rng(0).choice(X.shape[1], size=n, replace=False)
rows = {
    "ProbeConcepts(mean_diff)": accuracy(ProbeConcepts(method="mean_diff")),
    "ProbeConcepts(logistic)": accuracy(ProbeConcepts(method="logistic")),
    f"PCAConcepts({n})": accuracy(PCAConcepts(n_concepts=n)),
    f"NeuronConcepts({n} units)": accuracy(NeuronConcepts(units=units)),
}
for name, value in rows.items():
    print(f"{name:28s} topic accuracy {value:.2f}")
