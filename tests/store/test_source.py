"""A store is checked against the pipeline's extractor before it is read as its
activations (issue 12, item 7): ActivationStore.check_source, TopKInputs."""

import copy

import numpy as np
import pytest
import torch
from sklearn.base import clone
from sklearn.pipeline import make_pipeline

from skconcepts import PCAConcepts, SplitPointActivations, TopKInputs
from skconcepts.exceptions import StoreMismatchError
from skconcepts.store import transform_store, write_array_store


@pytest.fixture(scope="module")
def pipe(acts, texts):
    """A pipeline whose extractor is the one that wrote minilm_store."""
    return make_pipeline(clone(acts), PCAConcepts(n_concepts=3)).fit(texts)


def _pipe_with(pipe, extractor, texts):
    return make_pipeline(extractor, clone(pipe[-1])).fit(texts)


def test_the_store_of_the_pipelines_extractor_is_accepted(pipe, minilm_store, texts):
    assert minilm_store.check_source(pipe[0]) is minilm_store
    got = TopKInputs(k=2).interpret(pipe, None, activations=minilm_store)
    expected = TopKInputs(k=2).interpret(pipe, texts)
    assert {c: list(top) for c, top in got.items()} == {
        c: list(top) for c, top in expected.items()
    }


@pytest.mark.parametrize(
    "change, named",
    [
        ({"split_point": 2}, "split point"),
        ({"granularity": "word"}, "granularity"),
        ({"granularity": "sample", "aggregation": "max"}, "granularity"),
    ],
)
def test_a_store_of_another_split_point_or_granularity_is_refused(
    pipe, minilm_store, texts, change, named
):
    other = _pipe_with(pipe, clone(pipe[0]).set_params(**change), texts)
    with pytest.raises(StoreMismatchError, match=named) as info:
        TopKInputs(k=2).interpret(other, None, activations=minilm_store)
    assert str(minilm_store.path) in str(info.value)


def test_a_store_of_another_model_is_refused(pipe, minilm, minilm_store, texts):
    model, tokenizer = minilm
    changed = copy.deepcopy(model)
    with torch.no_grad():
        next(changed.parameters()).view(-1)[0] += 1.0
    extractor = SplitPointActivations(changed, tokenizer=tokenizer, split_point=1)
    other = _pipe_with(pipe, extractor.set_params(batch_size=4), texts)
    with pytest.raises(StoreMismatchError, match="model weights_fingerprint"):
        TopKInputs(k=2).interpret(other, None, activations=minilm_store)


def test_runtime_parameters_do_not_matter(pipe, minilm_store):
    other = clone(pipe[0]).set_params(batch_size=1, progress=True).fit()
    minilm_store.check_source(other)


def test_a_concept_or_array_store_is_refused(pipe, minilm_store, tmp_path):
    concepts = transform_store(pipe[-1], minilm_store, tmp_path / "c")
    with pytest.raises(StoreMismatchError, match="holds concepts"):
        concepts.check_source(pipe[0])
    array = write_array_store(np.zeros((3, 384), np.float32), tmp_path / "a")
    with pytest.raises(StoreMismatchError, match="holds array"):
        TopKInputs(k=1).interpret(pipe, None, activations=array)
