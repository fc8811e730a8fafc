"""
Reading concepts: vocabulary, labels and snippets
=================================================

Three ways to read the concepts of a fitted pipeline, from the least to the
most context:

* the **vocabulary mode** of :class:`~skconcepts.TopKInputs` runs every token
  of the tokenizer's vocabulary alone through the model and ranks them for
  every concept: what a concept responds to without any corpus;
* :func:`~skconcepts.interpret.concept_labels` gives every concept a short
  label of the words that activate it far more than their frequency predicts;
* :func:`skconcepts.viz.report` shows highlighted snippets of the texts where
  each concept is strongest, the words that carry it colored.
"""

# %%
# A pipeline on the demo corpus
# -----------------------------
# Word units at block 1 of the embedded MiniLM, made non-negative, and five
# NMF concepts.
from sklearn.pipeline import make_pipeline

from skconcepts import NMFConcepts, NonNegative, SplitPointActivations, TopKInputs
from skconcepts.datasets import load_demo_corpus
from skconcepts.interpret import concept_labels
from skconcepts.viz import report

texts = list(load_demo_corpus()[0][:120])
pipe = make_pipeline(
    SplitPointActivations(split_point=1, granularity="word"),
    NonNegative("relu"),
    NMFConcepts(n_concepts=5, random_state=0),
).fit(texts)

# %%
# Short labels of distinctive words
# ---------------------------------
# The activations of the words are already computed (the extractor caches
# them), so the labels cost no model run.
labels = concept_labels(pipe, texts)
for j, label in enumerate(labels):
    print(f"concept{j}: {label}")

# %%
# The top tokens of the vocabulary
# --------------------------------
# 29 523 tokens (the special tokens and the ``[unused…]`` placeholders are left
# out), each in the template ``[CLS] token [SEP]``, 1 024 per forward pass.
vocabulary = TopKInputs(k=6).interpret_vocabulary(pipe)
for j, tokens in vocabulary.items():
    print(f"concept{j} ({labels[j]}): {', '.join(tokens)}")

# %%
# The same concepts in the texts
# ------------------------------
# The report titles every concept by its label and shows, for the texts that
# activate it most, a snippet around the word that carries it.
rep = report(pipe, texts, k=6, n_examples=2, title="Concepts of the demo corpus")
rep
