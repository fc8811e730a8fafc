"""
Which concepts drive a classifier
=================================

:func:`~skconcepts.concept_output_gradient` reruns the model from a split point
and back-propagates an output to the concepts learned there. The embedded
MiniLM is a bare encoder, with no classification head, so we give it one: a
scikit-learn :class:`~sklearn.linear_model.LogisticRegression` of the
sentiment on the model's last layer (the [CLS] vector), passed as an explicit
``output_fn``. The gradient then says which concepts of block 3, in which
words, push a text towards "positive".
"""

# %%
# A sentiment head on the last layer
# ----------------------------------
import matplotlib.pyplot as plt
import numpy as np
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import train_test_split
from sklearn.pipeline import make_pipeline

from skconcepts import (
    SemiNMFConcepts,
    SplitPointActivations,
    TopKInputs,
    concept_output_gradient,
)
from skconcepts.datasets import load_demo_corpus, load_embedded_model

texts, labels, topics = load_demo_corpus()
train, test, y_train, y_test = train_test_split(
    texts, labels, test_size=0.25, stratify=labels, random_state=0
)
model, tokenizer = load_embedded_model()

# the [CLS] row of the last block is ``last_hidden_state[:, 0]`` of the model
last = SplitPointActivations(
    model, tokenizer=tokenizer, split_point=-1, granularity="cls"
)
head = LogisticRegression(max_iter=2000).fit(last.fit_transform(train), y_train)
print(f"held-out accuracy of the head: {head.score(last.transform(test), y_test):.3f}")

# the head as a differentiable function of the model's outputs:
# the log-odds of "positive", shape (batch, 1)
coef = torch.tensor(head.coef_, dtype=torch.float32)
intercept = torch.tensor(head.intercept_, dtype=torch.float32)


def positive_log_odds(outputs):
    return outputs.last_hidden_state[:, 0] @ coef.T + intercept


# %%
# Concepts at block 3
# -------------------
pipe = make_pipeline(
    SplitPointActivations(
        model, tokenizer=tokenizer, split_point=3, granularity="word"
    ),
    SemiNMFConcepts(n_concepts=8, random_state=0),
).fit(train)
top = TopKInputs(k=4).interpret(pipe, train)
names = [", ".join(list(top[c])[:3]) for c in range(8)]
for c, name in enumerate(names):
    print(f"concept {c}: {name}")

# %%
# Attribution of the head's output to the concepts
# ------------------------------------------------
# Gradient x input per word and concept, not normalized, so the values of a
# text add up to (about) the change of its log-odds that the concepts carry.
attributions = concept_output_gradient(
    test,
    extractor=pipe[0],
    concepts=pipe,
    output_fn=positive_log_odds,
    granularity="word",
    concepts_x_gradients=True,
    normalization=False,
)
# one tensor per text: (1 output, words of the text, 8 concepts)
attributions = [a.numpy() for a in attributions]
print(attributions[0].shape)

per_text = np.array([a[0].sum(axis=0) for a in attributions])  # (texts, concepts)
y_test = np.array(y_test)
fig, ax = plt.subplots(figsize=(8, 3.5))
width = 0.4
x = np.arange(8)
ax.bar(x - width / 2, per_text[y_test == 0].mean(axis=0), width, label="negative texts")
ax.bar(x + width / 2, per_text[y_test == 1].mean(axis=0), width, label="positive texts")
ax.axhline(0, color="black", linewidth=0.8)
ax.set_xticks(x, names, rotation=30, ha="right")
ax.set_ylabel("contribution to the log-odds")
ax.set_title("Concepts of block 3 that move the sentiment head")
ax.legend()
fig.tight_layout()

# %%
# Per word
# --------
# The contribution of every word (summed over the concepts) in four held-out
# texts: orange pushes towards positive, blue towards negative.
units = pipe[0].units(test)
fig, ax = plt.subplots(figsize=(9, 2.6))
ax.set_axis_off()
picked = [i for i in range(len(test)) if y_test[i] == 1][:2]
picked += [i for i in range(len(test)) if y_test[i] == 0][:2]
vmax = max(np.abs(attributions[i][0].sum(axis=1)).max() for i in picked)
renderer = fig.canvas.get_renderer()
for row, i in enumerate(picked):
    words = units[units["sample"] == i]["text"].tolist()
    values = attributions[i][0].sum(axis=1)  # one value per word
    xpos = 0.01
    ypos = 1 - (row + 0.5) / len(picked)
    for word, value in zip(words, values):
        color = plt.cm.RdBu_r(0.5 + 0.5 * value / vmax)
        label = ax.text(
            xpos,
            ypos,
            word,
            fontsize=11,
            va="center",
            transform=ax.transAxes,
            bbox=dict(facecolor=color, edgecolor="none", pad=2),
        )
        box = label.get_window_extent(renderer).transformed(ax.transAxes.inverted())
        xpos = box.x1 + 0.006
ax.set_title("Contribution of each word to the positive log-odds")
