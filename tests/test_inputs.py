"""Texts in every container a user may hold them in (issue 12, item 1).

One validator (``utils._validation.check_texts``) reads the texts of every entry
point: a one-column DataFrame is that column; containers whose iteration is not
the texts (several columns, a dict, a set, a 2-D array) are refused with the fix.
"""

import numpy as np
import pandas as pd
import pytest
from sklearn.pipeline import make_pipeline

from skconcepts import (
    PooledConcepts,
    SplitPointActivations,
    TopKInputs,
    concept_output_gradient,
)
from skconcepts.concepts import PCAConcepts
from skconcepts.store import extract_to_store
from skconcepts.utils._validation import check_texts

TEXTS = ["a good film", "a dull plot", "great acting here"]


@pytest.fixture(scope="module")
def acts():
    return SplitPointActivations(split_point=0, granularity="word").fit()


@pytest.mark.parametrize(
    "texts",
    [
        pd.DataFrame({"text": TEXTS}),
        pd.DataFrame({"text": TEXTS}, index=[10, 5, 7]),
        pd.Series(TEXTS, index=[10, 5, 7]),
        pd.Series(TEXTS, dtype="string"),
        pd.Index(TEXTS),
        np.array(TEXTS),
        np.array(TEXTS, dtype=object)[:, None],
        tuple(TEXTS),
        (t for t in TEXTS),
    ],
    ids=[
        "df-1col",
        "df-1col-index",
        "series-index",
        "series-string",
        "index",
        "array",
        "array-n1",
        "tuple",
        "generator",
    ],
)
def test_check_texts_reads_the_texts_by_position(texts):
    out = check_texts(texts, name="X")
    assert out == TEXTS and all(type(t) is str for t in out)


@pytest.mark.parametrize(
    "texts, match",
    [
        (
            pd.DataFrame({"text": TEXTS, "label": [0, 1, 0]}),
            r"X is a DataFrame with 2 columns \['text', 'label'\]; pass the column "
            r"of texts, e.g. X=df\['text'\]",
        ),
        (pd.DataFrame(index=[0, 1]), "DataFrame with 0 columns"),
        ({"a": "a good film"}, r"X is a dict, whose items are its keys.*list\(d"),
        (set(TEXTS), r"X is a set, which has no order.*sorted"),
        (np.array([TEXTS, TEXTS]), r"X is an array of shape \(2, 3\); pass a 1-D"),
        (np.array("a film"), r"X is an array of shape \(\); pass a 1-D"),
        (["ok", None], r"X\[1\] is NoneType \(None\); a missing text.*fillna"),
        (pd.Series(["ok", np.nan]), r"X\[1\] is float \(nan\); a missing text"),
        (pd.Series(["ok", None], dtype="string"), r"X\[1\] is NAType.*missing"),
        ([b"ok"], r"X\[0\] is bytes \(b'ok'\); decode it first"),
        (["ok", 3], r"X\[1\] is int \(3\); every item of X must be a str"),
        (b"a film", "got a single bytes; wrap it in a list"),
    ],
    ids=[
        "df-2cols",
        "df-0cols",
        "dict",
        "set",
        "array-2d",
        "array-0d",
        "None-item",
        "nan-item",
        "NA-item",
        "bytes-item",
        "int-item",
        "bytes",
    ],
)
def test_check_texts_refuses_what_would_not_be_the_texts(texts, match):
    with pytest.raises(TypeError, match=match):
        check_texts(texts, name="X")


def test_check_texts_empty_dataframe():
    with pytest.raises(ValueError, match="X is empty"):
        check_texts(pd.DataFrame({"text": []}), name="X")


def test_extractor_reads_a_one_column_dataframe_as_its_column(acts):
    df = pd.DataFrame({"text": TEXTS}, index=[3, 1, 2])
    expected = acts.transform(TEXTS)
    np.testing.assert_array_equal(acts.transform(df), expected)
    pd.testing.assert_frame_equal(acts.units(df), acts.units(TEXTS))
    assert acts.units(df)["sample"].tolist() == acts.units(TEXTS)["sample"].tolist()
    (idx, rows, _), *_ = acts.iter_batches(df)
    assert idx.tolist() == [0, 1, 2] and sum(len(r) for r in rows) == len(expected)
    assert [e.ids for e in acts.encode(df)] == [e.ids for e in acts.encode(TEXTS)]
    token = SplitPointActivations(split_point=0).fit(df)
    assert token.transform(df).shape == token.transform(TEXTS).shape


TWO_COLS = pd.DataFrame({"text": TEXTS, "label": [0, 1, 0]})
MATCH = r"DataFrame with 2 columns.*df\['text'\]"


def test_extractor_refuses_a_dataframe_of_several_columns(acts):
    for method in (acts.transform, acts.units, acts.encode, acts.fit):
        with pytest.raises(TypeError, match=MATCH):
            method(TWO_COLS)
    with pytest.raises(TypeError, match=MATCH):
        next(acts.iter_batches(TWO_COLS))


def test_encode_refuses_a_bare_string(acts):
    # before: the tokenizer read list("a film") as six texts
    with pytest.raises(TypeError, match="got a single str"):
        acts.encode("a film")


def test_every_text_entry_point_reads_dataframes(acts, tmp_path):
    df = pd.DataFrame({"text": TEXTS})
    pipe = make_pipeline(acts, PCAConcepts(n_concepts=2)).fit(df)
    np.testing.assert_array_equal(pipe.transform(df), pipe.transform(TEXTS))
    pooled = PooledConcepts(acts, PCAConcepts(n_concepts=2)).fit(df)
    np.testing.assert_array_equal(pooled.transform(df), pooled.transform(TEXTS))
    top = TopKInputs(k=2)
    assert top.interpret(pipe, df) == top.interpret(pipe, TEXTS)
    store = extract_to_store(acts, df, tmp_path / "s")
    assert store.shape == (len(acts.units(TEXTS)), 384)
    with pytest.raises(TypeError, match=MATCH):
        pooled.transform(TWO_COLS)
    with pytest.raises(TypeError, match=MATCH):
        top.interpret(pipe, TWO_COLS)
    with pytest.raises(TypeError, match=r"inputs is a DataFrame with 2 columns"):
        concept_output_gradient(TWO_COLS, extractor=acts, concepts=pipe)
    with pytest.raises(TypeError, match=MATCH):
        extract_to_store(acts, TWO_COLS, tmp_path / "t")
    assert not (tmp_path / "t").exists()
