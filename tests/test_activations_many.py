"""Several split points from one forward pass (issue 15 item 5).

``SplitPointActivations.transform_many`` / ``iter_batches_many`` and
``extract_to_store(..., split_points=...)`` against separate single-split runs
(the same batches, so bitwise equal), early exit after the deepest split
module, and the errors for bad split-point lists.
"""

import numpy as np
import pandas as pd
import pytest
import torch

from skconcepts import SplitPointActivations
from skconcepts._split import stop_after_all
from skconcepts.exceptions import SplitPointError
from skconcepts.store import extract_to_store
from skconcepts.utils._testing import make_tiny_model

TEXTS = [
    "The soup was delicious. The bread was stale!",
    "Rain again",
    "",
    "Quick brown foxes jump over lazy dogs near the river bank today.",
    "Is it good? Yes.\nVery good",
]


@pytest.fixture(scope="module")
def minilm():
    from skconcepts.datasets import load_embedded_model

    return load_embedded_model()


def make(model_tok, **kw):
    model, tok = model_tok
    return SplitPointActivations(model, tokenizer=tok, cache=False, batch_size=2, **kw)


@pytest.mark.parametrize("granularity", ["token", "word", "sample", "cls"])
def test_transform_many_equals_single_split_runs(minilm, granularity):
    points = [4, 0, "encoder.layer.2"]
    acts = make(minilm, granularity=granularity).fit()
    out = acts.transform_many(TEXTS, split_points=points)
    assert list(out) == points
    for point in points:
        ref = make(minilm, granularity=granularity, split_point=point).fit()
        np.testing.assert_array_equal(out[point], ref.transform(TEXTS))
    assert out[0].dtype == np.float32


@pytest.mark.parametrize("arch,head", [("gpt2", "causal_lm"), ("llama", None)])
def test_transform_many_tiny_models_and_dtype(arch, head):
    model, tok = make_tiny_model(arch, head)
    acts = make((model, tok), granularity="token", dtype="bfloat16").fit()
    out = acts.transform_many(TEXTS, [2, 0])
    for point in (2, 0):
        ref = make((model, tok), granularity="token", dtype="bfloat16")
        ref = ref.set_params(split_point=point).fit().transform(TEXTS)
        assert out[point].dtype == torch.bfloat16
        assert torch.equal(out[point], ref)


def test_stops_after_the_deepest_split_module(minilm):
    model, _ = minilm
    ran = []
    handles = [
        layer.register_forward_hook(lambda m, a, o, i=i: ran.append(i))
        for i, layer in enumerate(model.encoder.layer)
    ]
    try:
        make(minilm).fit().transform_many(["a short text"], [3, 1])
    finally:
        for h in handles:
            h.remove()
    assert ran == [0, 1, 2, 3]  # block 4 and 5 never ran


def test_stop_after_all_order_and_capture():
    net = torch.nn.Sequential(
        torch.nn.Linear(3, 4), torch.nn.ReLU(), torch.nn.Linear(4, 2)
    )
    with stop_after_all([net[1], net[0]]) as captured:
        net(torch.ones(2, 3))
        raise AssertionError("the pass should have stopped")  # pragma: no cover
    x = torch.ones(2, 3)
    torch.testing.assert_close(captured[1].output, net[0](x))
    torch.testing.assert_close(captured[0].output, net[1](net[0](x)))


def test_iter_batches_many_and_cache(minilm):
    model, tok = minilm
    acts = SplitPointActivations(model, tokenizer=tok, batch_size=2).fit()
    acts.clear_cache()
    chunks = list(acts.iter_batches_many(TEXTS, [1, 3], chunk_size=3))
    assert [c[0].tolist() for c in chunks] == [[0, 1, 2], [3, 4]]
    rows1 = torch.cat([r for c in chunks for r in c[1][1]]).numpy()
    # the cache now holds both split points: single-split runs read it
    np.testing.assert_array_equal(
        rows1, acts.set_params(split_point=1).fit().transform(TEXTS)
    )
    spans = np.concatenate([s for c in chunks for s in c[2]])
    np.testing.assert_array_equal(spans, acts.units(TEXTS)[["start", "end"]])
    acts.clear_cache()


@pytest.mark.parametrize(
    "bad,match",
    [
        ([1, 1], r"names the module 'encoder.layer.1' twice"),
        ([3, -3], r"split_points\[0\]=3 and split_points\[1\]=-3"),
        ([1, 9], r"split_points\[1\]: split_point=9 is out of range"),
        ([0, "encoder.nope"], r"split_points\[1\]: split_point='encoder.nope'"),
        ([], r"split_points=\[\] is empty"),
        ("encoder.layer.1", r"must be a list of split points"),
    ],
)
def test_bad_split_point_lists(minilm, bad, match):
    acts = make(minilm).fit()
    with pytest.raises(SplitPointError, match=match):
        acts.transform_many(TEXTS, bad)
    assert issubclass(SplitPointError, ValueError)


def test_extract_to_store_one_store_per_split_point(minilm, tmp_path):
    acts = make(minilm, granularity="word")
    stores = extract_to_store(
        acts, TEXTS, tmp_path / "many", shard_rows=10, split_points=[2, 0]
    )
    assert list(stores) == [2, 0]
    for point, folder in ((2, "encoder.layer.2"), (0, "encoder.layer.0")):
        assert stores[point].path == (tmp_path / "many" / folder)
        single = extract_to_store(
            make(minilm, granularity="word", split_point=point),
            TEXTS,
            tmp_path / f"single{point}",
            shard_rows=10,
        )
        np.testing.assert_array_equal(stores[point][:], single[:])
        pd.testing.assert_frame_equal(stores[point].units(), single.units())
        assert stores[point].n_shards == single.n_shards >= 2
        assert stores[point].manifest["source"] == single.manifest["source"]
    # a rerun finds both complete and returns them unchanged
    again = extract_to_store(
        acts, TEXTS, tmp_path / "many", shard_rows=10, split_points=[2, 0]
    )
    np.testing.assert_array_equal(again[0][:], stores[0][:])
    with pytest.raises(SplitPointError, match="twice"):
        extract_to_store(acts, TEXTS, tmp_path / "bad", split_points=[0, 0])


def test_extract_to_store_split_points_resumes_each_store(minilm, tmp_path):
    # the store of split point 0 exists already (complete): only 2 is written
    done = extract_to_store(
        make(minilm, split_point=0), TEXTS, tmp_path / "encoder.layer.0", shard_rows=8
    )
    before = done.manifest
    stores = extract_to_store(
        make(minilm), TEXTS, tmp_path, shard_rows=8, split_points=[0, 2]
    )
    assert stores[0].manifest == before
    single = extract_to_store(
        make(minilm, split_point=2), TEXTS, tmp_path / "single", shard_rows=8
    )
    np.testing.assert_array_equal(stores[2][:], single[:])


def test_extract_to_store_with_progress_and_a_model_object(minilm, tmp_path):
    # progress=True made extract_to_store copy the extractor through the
    # pickling protocol, which failed for a model given as an object
    acts = make(minilm, split_point=0, progress=True).fit()
    store = extract_to_store(acts, TEXTS, tmp_path / "s", split_points=None)
    np.testing.assert_allclose(store[:], acts.transform(TEXTS), rtol=0, atol=1e-5)
    assert acts.progress is True
