"""
Editing concepts inside the model
=================================

Fit concepts at one layer of the embedded MiniLM, then rerun the model with
concept activations edited: ablate a concept, steer one up, and compare what
each concept contributes by ablation with its gradient × input.
"""

# %%
# Concepts at block 3, and an output to watch
# -------------------------------------------
# MiniLM is a bare encoder: its output here is a sentiment logit, a logistic
# regression on the final [CLS] state fitted on the demo corpus.
import matplotlib.pyplot as plt
import numpy as np
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline

from skconcepts import (
    PCAConcepts,
    SplitPointActivations,
    concept_ablation_effect,
    concept_intervention,
    concept_output_gradient,
)
from skconcepts.datasets import embedded_model_path, load_demo_corpus

texts, labels, _ = load_demo_corpus()
texts, labels = texts[:64], np.asarray(labels[:64])
pipe = make_pipeline(
    SplitPointActivations(embedded_model_path(), split_point=3),
    PCAConcepts(n_concepts=8),
).fit(texts)

cls_states = SplitPointActivations(
    embedded_model_path(), split_point=-1, granularity="cls"
).fit_transform(texts)
clf = LogisticRegression(max_iter=1000).fit(cls_states, labels)
w = torch.as_tensor(clf.coef_[0], dtype=torch.float32)
b = float(clf.intercept_[0])


def sentiment(out):
    """The positive-sentiment logit of each text: (batch, 1)."""
    return (out.last_hidden_state[:, 0] @ w + b)[:, None]


# %%
# Ablate one concept
# ------------------
# With no edit the rerun is the model itself; zeroing a concept on every token
# moves each text's logit.
same = concept_intervention(pipe, texts, [], output_fn=sentiment)
print("no edit, largest change:", float(same.change.abs().max()))
res = concept_intervention(
    pipe, texts, {"concepts": 5, "op": "zero"}, output_fn=sentiment
)
print("concept 5 ablated, mean change:", float(res.change.mean()))

# %%
# Steer a concept
# ---------------
scales = [-1.0, 0.0, 1.0, 2.0, 3.0]
means = []
for value in scales:
    res = concept_intervention(
        pipe,
        texts[:16],
        {"concepts": 5, "op": "scale", "value": value},
        output_fn=sentiment,
    )
    means.append(float(res.after.mean()))
fig, ax = plt.subplots(figsize=(4, 3))
ax.plot(scales, means, marker="o")
ax.set_xlabel("scale of concept 5")
ax.set_ylabel("mean sentiment logit")
fig.tight_layout()

# %%
# Ablation next to gradient × input
# ---------------------------------
# The ablation effect (``outputs - outputs with the concept ablated``) is exact;
# gradient × input summed over the text is its first-order approximation.
ablation = concept_ablation_effect(pipe, texts[:24], output_fn=sentiment)
gxi = concept_output_gradient(
    texts[:24],
    extractor=pipe[0],
    concepts=pipe,
    output_fn=sentiment,
    granularity="sample",
    normalization=False,
)
abl = torch.stack([a[0] for a in ablation]).mean(0).numpy()
grad = torch.stack([g[0, 0] for g in gxi]).mean(0).numpy()
x = np.arange(len(abl))
fig, ax = plt.subplots(figsize=(5, 3))
ax.bar(x - 0.2, abl, width=0.4, label="ablation")
ax.bar(x + 0.2, grad, width=0.4, label="gradient x input")
ax.set_xlabel("concept")
ax.set_ylabel("contribution to the logit")
ax.legend()
fig.tight_layout()
print("correlation:", float(np.corrcoef(abl, grad)[0, 1]))
