"""
Concept features for a tabular model
====================================

:class:`~skconcepts.PooledConcepts` turns each text into one row of concept
features: concepts learned on the words of the training texts, each concept's
maximum over the words of a text. Any scikit-learn model takes them; here a
:class:`~sklearn.linear_model.LogisticRegression` predicts the sentiment from
8 concepts, compared with the same classifier on the 384 raw activations, and
:func:`~skconcepts.linear_concept_importance` says which concepts it uses.
"""

# %%
# A concept bottleneck classifier
# -------------------------------
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import train_test_split
from sklearn.pipeline import Pipeline

from skconcepts import (
    PooledConcepts,
    SemiNMFConcepts,
    SplitPointActivations,
    TopKInputs,
    linear_concept_importance,
)
from skconcepts.datasets import load_demo_corpus
from skconcepts.viz import plot_concept_importance

texts, labels, topics = load_demo_corpus()
train, test, y_train, y_test = train_test_split(
    texts, labels, test_size=0.3, stratify=labels, random_state=0
)
words = SplitPointActivations(split_point=3, granularity="word")
bottleneck = Pipeline(
    [
        (
            "concepts",
            PooledConcepts(words, SemiNMFConcepts(n_concepts=8, random_state=0)),
        ),
        ("classifier", LogisticRegression(max_iter=2000)),
    ]
)
bottleneck.fit(train, y_train)
print(f"8 concepts:      held-out accuracy {bottleneck.score(test, y_test):.3f}")

# %%
# The same classifier on raw activations
# --------------------------------------
# The mean of the word activations of each text, 384 features.
raw = Pipeline(
    [
        ("activations", SplitPointActivations(split_point=3, granularity="sample")),
        ("classifier", LogisticRegression(max_iter=2000)),
    ]
)
raw.fit(train, y_train)
print(f"384 activations: held-out accuracy {raw.score(test, y_test):.3f}")

# %%
# Which concepts the classifier uses
# ----------------------------------
# For a linear head, gradient x input is exactly ``coef ⊙ c``;
# :func:`~skconcepts.linear_concept_importance` averages it over the held-out
# texts of each class. The concepts are named by their top words.
pooled = bottleneck["concepts"]
C_test = pooled.transform(test)
top = TopKInputs(k=3).interpret(
    Pipeline([("words", pooled.extractor_), ("concepts", pooled.estimator_)]), train
)
names = [", ".join(list(top[c])[:2]) for c in range(C_test.shape[1])]
importance = linear_concept_importance(
    bottleneck["classifier"], C_test, y_test, concept_names=names
)
importance.index = ["negative", "positive"]
print(importance.round(2).T.to_string())
fig = plot_concept_importance(importance)
fig.set_size_inches(8, 3.5)  # room for the concept names
fig.tight_layout()
