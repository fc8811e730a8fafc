"""
Comparing methods side by side
==============================

Every concept estimator has the same contract, so methods compare on the same
activations with the same metrics. Per method, on the last block's activations,
one row per text (the mean of its tokens) of the demo corpus, 5 concepts:

* **R²**: held-out reconstruction R² (``score``);
* **active share**: the share of concepts above 5% of a text's strongest one
  (lower is sparser, easier to read);
* **stability**: :func:`~skconcepts.metrics.dictionary_stability` of two fits
  with different seeds (1: the same concepts);
* **topic agreement**: each concept is named by the majority topic of the
  training texts where it is the strongest; how often does a held-out text's
  strongest concept name its topic?
"""

# %%
# Activations and methods
# -----------------------
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from sklearn.base import clone
from sklearn.model_selection import train_test_split
from sklearn.pipeline import make_pipeline

from skconcepts import (
    KMeansConcepts,
    NMFConcepts,
    NonNegative,
    PCAConcepts,
    SemiNMFConcepts,
    SplitPointActivations,
)
from skconcepts.datasets import load_demo_corpus
from skconcepts.metrics import dictionary_stability

texts, labels, topics = load_demo_corpus()
X = SplitPointActivations(split_point=-1, granularity="sample").fit_transform(texts)
X_train, X_test, t_train, t_test = train_test_split(
    X, np.array(topics), test_size=0.3, stratify=topics, random_state=0
)
methods = {
    "PCA": PCAConcepts(n_concepts=5),
    "SemiNMF": SemiNMFConcepts(n_concepts=5, random_state=0),
    "NMF (relu)": make_pipeline(
        NonNegative("relu"), NMFConcepts(n_concepts=5, random_state=0)
    ),
    "KMeans": KMeansConcepts(n_concepts=5, random_state=0),
}


def concepts_of(estimator):
    """The concept estimator of a pipeline, or the estimator itself."""
    return estimator[-1] if hasattr(estimator, "steps") else estimator


def reseeded(estimator):
    """A clone with another seed (PCA has none: it is deterministic)."""
    other = clone(estimator)
    key = "nmfconcepts__random_state" if hasattr(other, "steps") else "random_state"
    if key in other.get_params():
        other.set_params(**{key: 1})
    return other


# %%
# The measurements
# ----------------
rows = []
for name, estimator in methods.items():
    fitted = clone(estimator).fit(X_train)
    C_train, C_test = fitted.transform(X_train), fitted.transform(X_test)
    strongest = C_test.max(axis=1, keepdims=True)
    active = (C_test > 0.05 * np.abs(strongest)).mean()
    other = reseeded(estimator).fit(X_train)
    stability = dictionary_stability(
        concepts_of(fitted).components_, concepts_of(other).components_
    )
    # name each concept by the majority topic of the texts it wins
    winner_train = C_train.argmax(axis=1)
    names = {
        c: pd.Series(t_train[winner_train == c]).mode().iloc[0]
        for c in np.unique(winner_train)
    }
    predicted = [names.get(c, "none") for c in C_test.argmax(axis=1)]
    rows.append(
        {
            "method": name,
            "R²": fitted.score(X_test),
            "active share": active,
            "stability": stability,
            "topic agreement": np.mean(np.array(predicted) == t_test),
        }
    )
table = pd.DataFrame(rows).set_index("method")
print(table.round(3).to_string())

# %%
# The same as a plot
# ------------------
fig, axes = plt.subplots(1, 4, figsize=(11, 3), sharey=True)
for ax, column in zip(axes, table.columns):
    ax.barh(table.index, table[column], color="tab:blue")
    ax.set_title(column)
    ax.set_xlim(0, 1)
axes[0].invert_yaxis()
fig.suptitle("5 concepts on the 320 demo texts (last block, one row per text)")
fig.tight_layout()
