"""TopKInputs on any subset is consistent with TopKInputs on the whole.

- the running top-``k`` over batches equals a brute-force top-``k`` of all the
  rows (ties broken by row order, ``unique`` keeping each string once with its
  highest activation);
- ``batch_size`` does not change the result;
- for every concept, the whole corpus' top-1 activation is at least that of
  any subset of its texts, and when the subset holds the whole's top unit their
  top-1 agree (same unit, same activation).
"""

import numpy as np
import pandas as pd
import pytest
from hypothesis import assume, example, given
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from sklearn.pipeline import make_pipeline

from skconcepts import PCAConcepts, TopKInputs
from skconcepts.datasets import load_demo_corpus

from ._strategies import TEXT, prop_settings

pytestmark = pytest.mark.filterwarnings(
    "ignore::skconcepts.exceptions.TruncationWarning"
)

ATOL = 1e-5  # batched forward passes and matmuls differ in the last bits
N_CONCEPTS = 3


def brute_force_topk(C, units, k, unique, concepts):
    """``{concept: [(row, activation), ...]}``: the top ``k`` rows of each concept."""
    out = {}
    texts = units["text"].to_numpy()
    for j in concepts:
        order = np.argsort(-C[:, j], kind="stable")  # ties: earlier row first
        picked, seen = [], set()
        for row in order:
            if unique:
                if texts[row] in seen:
                    continue
                seen.add(texts[row])
            picked.append((int(row), float(C[row, j])))
            if len(picked) == k:
                break
        out[int(j)] = picked
    return out


@st.composite
def _concepts_and_units(draw):
    n = draw(st.integers(1, 30))
    m = draw(st.integers(1, 4))
    # few distinct values, so ties and repeated strings are frequent
    values = st.sampled_from([-2.0, -0.5, 0.0, 0.5, 1.0, 3.0]) | st.floats(
        -1e3, 1e3, width=32
    )
    C = draw(arrays(np.float32, (n, m), elements=values))
    strings = draw(
        st.lists(st.sampled_from(["a", "b", "the", "😀", ""]), min_size=n, max_size=n)
    )
    sample = np.sort(draw(arrays(np.int64, n, elements=st.integers(0, 5))))
    units = pd.DataFrame(
        {
            "sample": sample,
            "start": np.arange(n),
            "end": np.arange(n) + 1,
            "text": strings,
        }
    )
    return C, units


@prop_settings(max_examples=60)
@given(
    case=_concepts_and_units(),
    k=st.integers(1, 6),
    unique=st.booleans(),
    pick=st.data(),
)
def test_interpret_concepts_equals_brute_force(case, k, unique, pick):
    C, units = case
    concepts = pick.draw(
        st.none() | st.lists(st.integers(0, C.shape[1] - 1), min_size=1, unique=True),
        label="concepts",
    )
    table = TopKInputs(k=k, unique=unique, concepts=concepts).interpret_concepts(
        C, units, as_frame=True
    )
    wanted = concepts if concepts is not None else range(C.shape[1])
    want = brute_force_topk(C, units, k, unique, wanted)
    assert sorted(table["concept"].unique()) == sorted(j for j in want if want[j])
    for j, picked in want.items():
        got = table[table["concept"] == j].sort_values("rank")
        assert got["rank"].tolist() == list(range(len(picked)))
        rows = [r for r, _ in picked]
        assert got["start"].tolist() == units["start"].to_numpy()[rows].tolist()
        assert got["sample"].tolist() == units["sample"].to_numpy()[rows].tolist()
        assert got["text"].tolist() == units["text"].to_numpy()[rows].tolist()
        np.testing.assert_array_equal(
            got["activation"].to_numpy(), [a for _, a in picked]
        )


# ------------------------------------------------------------ with a pipeline
@pytest.fixture(scope="module", params=["token", "word", "sample"])
def pipe(request, tiny_acts):
    acts = tiny_acts("bert", granularity=request.param, batch_size=4)
    corpus = load_demo_corpus()[0][:30]
    return make_pipeline(acts, PCAConcepts(n_concepts=N_CONCEPTS)).fit(corpus)


def _with_units(pipe, texts):
    """The texts with at least one unit (see test_topk_skips_a_text_without_units)."""
    has = np.isin(np.arange(len(texts)), pipe[0].units(texts)["sample"].to_numpy())
    return [t for t, h in zip(texts, has) if h]


def _top1(table):
    """``{concept: (sample, start, end, activation)}`` of the rank-0 rows."""
    top = table[table["rank"] == 0]
    return {
        int(c): (int(s), int(a), int(b), float(v))
        for c, s, a, b, v in zip(
            top["concept"], top["sample"], top["start"], top["end"], top["activation"]
        )
    }


def _check_against_reference(table, C, units, k, unique):
    """Each row's activation is its unit's; the values are the top-k values."""
    key = (
        units.reset_index(drop=True).reset_index().set_index(["sample", "start", "end"])
    )
    want = brute_force_topk(
        C, units.reset_index(drop=True), k, unique, range(C.shape[1])
    )
    for j, picked in want.items():
        got = table[table["concept"] == j].sort_values("rank")
        assert len(got) == len(picked)
        np.testing.assert_allclose(
            got["activation"].to_numpy(), [a for _, a in picked], atol=ATOL, rtol=ATOL
        )
        for s, a, b, v in zip(
            got["sample"], got["start"], got["end"], got["activation"]
        ):
            rows = np.atleast_1d(key.loc[(s, a, b), "index"])
            assert np.isclose(C[rows, j], v, atol=ATOL, rtol=ATOL).any()


@prop_settings(max_examples=15)
@given(
    texts=st.lists(TEXT, min_size=1, max_size=8),
    k=st.integers(1, 4),
    unique=st.booleans(),
    batch_size=st.integers(1, 5),
)
@example(
    texts=["the cat sat", "the dog", "a cat", "the end."],
    k=2,
    unique=True,
    batch_size=1,
)
def test_topk_is_the_top_of_all_rows_whatever_the_batch_size(
    pipe, texts, k, unique, batch_size
):
    texts = _with_units(pipe, texts)
    assume(texts)
    C = pipe.transform(texts)
    units = pipe[0].units(texts)
    reader = TopKInputs(k=k, unique=unique, batch_size=batch_size)
    from_texts = reader.interpret(pipe, texts, as_frame=True)
    _check_against_reference(from_texts, C, units, k, unique)
    X = pipe[0].transform(texts)
    from_acts = reader.interpret(pipe, texts, activations=X, as_frame=True)
    _check_against_reference(from_acts, C, units, k, unique)


@prop_settings(max_examples=15)
@given(
    texts=st.lists(TEXT, min_size=2, max_size=8),
    data=st.data(),
    batch_size=st.integers(1, 4),
)
def test_topk_of_a_subset_is_consistent_with_the_whole(pipe, texts, data, batch_size):
    texts = _with_units(pipe, texts)
    assume(len(texts) >= 2)
    keep = data.draw(
        st.lists(st.sampled_from(range(len(texts))), min_size=1, unique=True),
        label="subset",
    )
    subset = [texts[i] for i in keep]
    reader = TopKInputs(k=2, unique=False, batch_size=batch_size)
    whole_table = reader.interpret(pipe, texts, as_frame=True)
    whole = _top1(whole_table)
    part = _top1(reader.interpret(pipe, subset, as_frame=True))
    runner_up = whole_table[whole_table["rank"] == 1].set_index("concept")["activation"]
    assert set(part) == set(whole)
    for c, (s, a, b, v) in part.items():
        ws, wa, wb, wv = whole[c]
        tol = ATOL * max(1.0, abs(wv))
        assert wv >= v - tol, (c, whole[c], part[c])
        if ws in keep:  # the subset holds the whole's top unit
            assert abs(wv - v) <= tol, (c, whole[c], part[c])
            clear_winner = c not in runner_up or runner_up[c] < wv - 100 * tol
            if clear_winner:  # no near-tie: the very same unit
                assert (keep[s], a, b) == (ws, wa, wb), (c, whole[c], part[c])


@pytest.mark.parametrize(
    "texts",
    [["hello", "", "world"], ["hello", "   ", "world"], ["hello", "\x00", "world"]],
    ids=["empty", "blank", "control"],
)
def test_topk_skips_a_text_without_units(tiny_acts, texts):
    acts = tiny_acts("bert", granularity="token", batch_size=4)
    corpus = load_demo_corpus()[0][:30]
    pipe = make_pipeline(acts, PCAConcepts(n_concepts=2)).fit(corpus)
    got = TopKInputs(k=2, batch_size=1).interpret(pipe, texts)
    want = TopKInputs(k=2, batch_size=1).interpret(pipe, [texts[0], texts[2]])
    assert got.keys() == want.keys()
    for c in want:
        assert list(got[c]) == list(want[c])
