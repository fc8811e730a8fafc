"""
Concepts of sentiment and topics in five minutes
================================================

The whole method on the demo corpus: read the word activations of block 3 of
the embedded MiniLM-L6, learn 8 concepts with Semi-NMF, say what each concept
means with :class:`~skconcepts.TopKInputs`, and write the HTML report.
"""

# %%
# The corpus and the pipeline
# ---------------------------
# :func:`~skconcepts.datasets.load_demo_corpus` returns 320 sentences, their
# sentiment (1 positive, 0 negative) and their topic. The pipeline's first step
# runs the model up to the split point (block 3 of 6) and returns one row of
# 384 activations per word; the second learns the concepts.
import tempfile
from collections import Counter
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
from sklearn.pipeline import make_pipeline

from skconcepts import SemiNMFConcepts, SplitPointActivations, TopKInputs
from skconcepts.datasets import load_demo_corpus
from skconcepts.viz import report

texts, labels, topics = load_demo_corpus()
print(len(texts), "texts, e.g.", repr(texts[0]))
print(Counter(topics))

pipe = make_pipeline(
    SplitPointActivations(split_point=3, granularity="word"),
    SemiNMFConcepts(n_concepts=8, random_state=0),
)
pipe.fit(texts)
C = pipe.transform(texts)  # concept activations, one row per word
print("concept activations:", C.shape)

# %%
# What each concept means
# -----------------------
# The words of the corpus that activate each concept most. The extractor
# caches the activations of the texts it has seen, so the model does not run
# again.
top = TopKInputs(k=6).interpret(pipe, texts)
for concept, words in top.items():
    print(f"concept {concept}: {', '.join(words)}")

# %%
# Concepts per topic and sentiment
# --------------------------------
# Each text is represented by the maximum of every concept over its words; the
# mean of that per topic (and per sentiment) shows which concepts carry which.
units = pipe[0].units(texts)
per_text = np.zeros((len(texts), C.shape[1]))
np.maximum.at(per_text, units["sample"].to_numpy(), C)

groups = sorted(set(topics)) + ["negative", "positive"]
masks = [np.array(topics) == t for t in sorted(set(topics))]
masks += [np.array(labels) == 0, np.array(labels) == 1]
table = np.array([per_text[m].mean(axis=0) for m in masks])
table /= table.max(axis=0, keepdims=True)  # each concept relative to its maximum

fig, ax = plt.subplots(figsize=(8, 4))
image = ax.imshow(table, cmap="viridis", aspect="auto")
ax.set_xticks(range(C.shape[1]), [", ".join(list(w)[:2]) for w in top.values()])
ax.tick_params(axis="x", rotation=45)
ax.set_yticks(range(len(groups)), groups)
ax.set_title("Mean concept activation per group (relative to the concept's maximum)")
fig.colorbar(image, ax=ax)
fig.tight_layout()

# %%
# The HTML report
# ---------------
# :func:`~skconcepts.viz.report` gives, per concept, its top units and example
# texts whose words are colored by the concept's activation. It renders inline
# in Jupyter and saves to one self-contained file (here in a temporary folder).
rep = report(pipe, texts[::8], k=6, n_examples=2)
path = rep.save(Path(tempfile.mkdtemp()) / "report.html")
print("report written to", path)
