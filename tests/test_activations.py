"""SplitPointActivations on the real (offline) MiniLM model."""

import sys
import types
import warnings

import joblib
import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.base import clone
from sklearn.exceptions import NotFittedError
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import Pipeline
from sklearn.utils.estimator_checks import (
    check_do_not_raise_errors_in_init_or_set_params,
    check_estimator_cloneable,
    check_estimator_repr,
    check_get_params_invariance,
    check_mixin_order,
    check_no_attributes_set_in_init,
    check_set_params,
)

from skconcepts import SplitPointActivations
from skconcepts._granularity import AGGREGATIONS, split_sentences
from skconcepts.exceptions import SplitPointError, TruncationWarning

K = 2  # split point used here
TEXTS = [
    "The soup was delicious and warm.",
    "I hated the match. The referee was awful! We left early.",
    "",
    "Sunny skies all week long",
    "My new phone 🦜 crashed twice today.",
    "Great concert, amazing band.\nWould go again.",
    "Rain.",
    "unbelievably overpriced headphones",
    "The soup was delicious and warm.",  # a duplicate
    "What a boring, predictable film?! Never again.",
    "ok",
]


@pytest.fixture(scope="module")
def model_tok(minilm):
    return minilm


def make(model_tok, **kw):
    model, tokenizer = model_tok
    kw.setdefault("split_point", K)
    return SplitPointActivations(model, tokenizer=tokenizer, **kw)


_HIDDEN = {}


def _hidden(model_tok, text, k):
    """Hidden states of one text (unpadded), memoised across tests."""
    model, tokenizer = model_tok
    if text not in _HIDDEN:
        enc = tokenizer(
            text,
            return_offsets_mapping=True,
            return_special_tokens_mask=True,
            return_tensors="pt",
        )
        special = enc.pop("special_tokens_mask")[0].bool().numpy()
        offsets = enc.pop("offset_mapping")[0].numpy()
        with torch.inference_mode():
            states = model(**enc, output_hidden_states=True).hidden_states
        _HIDDEN[text] = (
            [h[0].numpy() for h in states],
            special,
            offsets,
            enc.word_ids(),
        )
    states, special, offsets, word_ids = _HIDDEN[text]
    return states[k + 1], special, offsets, word_ids


def reference(model_tok, texts, k, granularity, aggregation="mean"):
    """Rows from a full forward pass (output_hidden_states=True), text by text."""
    rows = []
    for text in texts:
        h, special, offsets, word_ids = _hidden(model_tok, text, k)
        real = np.flatnonzero(~special)
        if granularity == "token":
            rows.extend(h[real])
            continue
        if granularity == "sample":
            groups = [real] if len(real) else [np.arange(len(h))]
        elif granularity == "word":
            words = [word_ids[i] for i in real]
            groups = [real[np.array(words) == w] for w in dict.fromkeys(words)]
        else:  # sentence: the sentence that holds the token's first character
            starts = np.array([s for s, _ in split_sentences(text)])
            sid = np.array(
                [np.searchsorted(starts, offsets[i][0], "right") - 1 for i in real]
            )
            groups = [real[sid == s] for s in dict.fromkeys(sid.tolist())]
        for g in groups:
            x = h[g]
            rows.append(
                {
                    "mean": lambda: x.mean(0),
                    "sum": lambda: x.sum(0),
                    "max": lambda: x.max(0),
                    "min": lambda: x.min(0),
                    "signed_max": lambda: x[np.abs(x).argmax(0), np.arange(x.shape[1])],
                    "first": lambda: x[0],
                    "last": lambda: x[-1],
                }[aggregation]()
            )
    return np.stack(rows)


def test_token_rows_equal_hidden_states(model_tok):
    acts = make(model_tok, batch_size=7).fit(TEXTS)
    X = acts.transform(TEXTS)
    ref = reference(model_tok, TEXTS, K, "token")
    assert X.dtype == np.float32 and X.shape == ref.shape == (ref.shape[0], 384)
    np.testing.assert_allclose(X, ref, rtol=0, atol=1e-5)


@pytest.mark.parametrize("granularity", ["word", "sentence", "sample"])
@pytest.mark.parametrize("aggregation", AGGREGATIONS)
def test_aggregated_rows_equal_numpy_on_hidden_states(
    model_tok, granularity, aggregation
):
    texts = TEXTS[:2] + TEXTS[4:6] + TEXTS[9:]
    acts = make(
        model_tok, granularity=granularity, aggregation=aggregation, cache=False
    )
    X = acts.fit_transform(texts)
    ref = reference(model_tok, texts, K, granularity, aggregation)
    assert X.shape == ref.shape
    np.testing.assert_allclose(X, ref, rtol=0, atol=1e-5)


@pytest.mark.parametrize("granularity", ["token", "word", "sentence", "sample", "cls"])
def test_batch_sizes_1_and_7_agree(model_tok, granularity):
    one = make(model_tok, granularity=granularity, batch_size=1, cache=False)
    seven = make(
        model_tok,
        granularity=granularity,
        batch_size=7,
        cache=False,
        sort_by_length=False,
    )
    budget = make(
        model_tok, granularity=granularity, max_tokens_per_batch=40, cache=False
    )
    X1 = one.fit_transform(TEXTS)
    np.testing.assert_allclose(seven.fit_transform(TEXTS), X1, rtol=0, atol=1e-5)
    np.testing.assert_allclose(budget.fit_transform(TEXTS), X1, rtol=0, atol=1e-5)


def test_token_budget_batches(model_tok):
    lengths = [10, 3, 5, 9, 2, 2, 2, 2, 2, 30]
    acts = make(model_tok, batch_size=4, max_tokens_per_batch=20)
    batches = acts._batches(lengths)
    assert sorted(i for b in batches for i in b) == list(range(10))
    assert batches[0] == [9]  # longest first, alone: over the budget
    for b in batches:
        width = max(lengths[i] for i in b)
        assert len(b) <= 4 and (len(b) == 1 or len(b) * width <= 20)
    assert acts.set_params(sort_by_length=False)._batches([1] * 9) == [
        [0, 1, 2, 3],
        [4, 5, 6, 7],
        [8],
    ]


def test_cls_and_all_tokens(model_tok):
    model, tokenizer = model_tok
    X = make(model_tok, granularity="cls").fit_transform(TEXTS)
    A = make(model_tok, granularity="all_tokens").fit_transform(TEXTS)
    enc = tokenizer(TEXTS, padding=True, return_tensors="pt")
    with torch.inference_mode():
        h = model(**enc, output_hidden_states=True).hidden_states[K + 1]
    np.testing.assert_allclose(X, h[:, 0].numpy(), rtol=0, atol=1e-5)
    mask = enc["attention_mask"].bool()
    assert A.shape == (int(mask.sum()), 384)  # padding never yields rows
    np.testing.assert_allclose(A, h[mask].numpy(), rtol=0, atol=1e-5)


def test_no_block_after_split_point_runs(model_tok):
    model, _ = model_tok
    calls = {}
    handles = []
    for name, module in model.named_modules():
        if name.count(".") <= 2 and name:
            calls[name] = 0

            def hook(mod, args, out, name=name):
                calls[name] += 1

            handles.append(module.register_forward_hook(hook))
    try:
        make(model_tok, batch_size=4, cache=False).fit_transform(TEXTS)
    finally:
        for h in handles:
            h.remove()
    n_batches = 3  # 11 texts, 4 per batch
    assert calls["embeddings"] == n_batches
    for i in range(6):
        assert calls[f"encoder.layer.{i}"] == (n_batches if i <= K else 0)
    assert calls["encoder"] == calls["pooler"] == 0  # stopped inside the encoder


def test_units_line_up_with_rows(model_tok):
    for granularity in ["all_tokens", "token", "word", "sentence", "sample", "cls"]:
        acts = make(model_tok, granularity=granularity).fit()
        X = acts.transform(TEXTS)
        units = acts.units(TEXTS)
        assert list(units.columns) == ["sample", "unit", "start", "end", "text"]
        assert len(units) == len(X)
        for row in units.itertuples():
            assert TEXTS[row.sample][row.start : row.end] == row.text
        counts = units.groupby("sample").size()
        assert (
            units["unit"].to_numpy()
            == np.concatenate([np.arange(counts.get(i, 0)) for i in range(len(TEXTS))])
        ).all()
    token_units = make(model_tok).fit().units(TEXTS[:2])
    assert token_units["text"].tolist()[:3] == ["The", "soup", "was"]
    sentences = make(model_tok, granularity="sentence").fit().units(TEXTS[1:2])
    assert sentences["text"].tolist() == [
        "I hated the match.",
        "The referee was awful!",
        "We left early.",
    ]


def test_units_without_running_the_model(model_tok):
    model, _ = model_tok
    acts = make(model_tok, granularity="word", cache=False).fit()
    hits = []
    handle = model.embeddings.register_forward_hook(lambda *a: hits.append(1))
    try:
        units = acts.units(TEXTS)
    finally:
        handle.remove()
    assert not hits and len(units) > len(TEXTS)


def test_unk_is_kept_and_specials_excluded(model_tok):
    _, tokenizer = model_tok
    acts = make(model_tok).fit()
    units = acts.units(["a 🦜 b"])
    assert tokenizer.tokenize("a 🦜 b") == ["a", "[UNK]", "b"]
    assert units["text"].tolist() == ["a", "🦜", "b"]
    kept = make(model_tok, exclude_special_tokens=False).fit()
    assert kept.units(["a 🦜 b"])["text"].tolist() == ["", "a", "🦜", "b", ""]


def test_empty_string(model_tok):
    for granularity in ["token", "word", "sentence"]:
        acts = make(model_tok, granularity=granularity)
        assert acts.fit_transform([""]).shape == (0, 384)
        assert len(acts.units([""])) == 0
    # sample: one row, the mean of [CLS] and [SEP]; cls: the [CLS] row
    model, tokenizer = model_tok
    with torch.inference_mode():
        h = model(
            **tokenizer([""], return_tensors="pt"), output_hidden_states=True
        ).hidden_states[K + 1][0]
    sample = make(model_tok, granularity="sample").fit_transform(["", "x"])
    cls = make(model_tok, granularity="cls").fit_transform(["", "x"])
    np.testing.assert_allclose(sample[0], h.mean(0).numpy(), atol=1e-5)
    np.testing.assert_allclose(cls[0], h[0].numpy(), atol=1e-5)


def test_truncation_warns_once_with_count(model_tok):
    acts = make(model_tok, max_length=6, granularity="sample")
    texts = ["one two three four five six seven", "short", "a b c d e f g h"]
    with pytest.warns(TruncationWarning, match=r"^2 of 3 texts .*max_length=6") as rec:
        X = acts.fit_transform(texts)
    assert len([w for w in rec if w.category is TruncationWarning]) == 1
    ref = reference(model_tok, ["one two three four", "short", "a b c d"], K, "sample")
    np.testing.assert_allclose(X, ref, atol=1e-5)
    units = acts.units(texts)
    assert units["text"].tolist() == ["one two three four", "short", "a b c d"]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        acts.transform(["short"])


def test_dtypes(model_tok):
    model, _ = model_tok
    ref = make(model_tok).fit_transform(TEXTS[:4])
    half = make(model_tok, dtype="float16").fit_transform(TEXTS[:4])
    assert half.dtype == np.float16
    np.testing.assert_allclose(half, ref, rtol=1e-2, atol=1e-2)
    bf = make(model_tok, dtype="bfloat16").fit_transform(TEXTS[:4])
    assert isinstance(bf, torch.Tensor) and bf.dtype == torch.bfloat16
    np.testing.assert_allclose(bf.float().numpy(), ref, rtol=1e-2, atol=5e-2)

    acts = make(model_tok, model_dtype="bfloat16").fit()
    low = acts.transform(TEXTS[:4])
    assert acts.model_.dtype == torch.bfloat16 and low.dtype == np.float32
    assert model.dtype == torch.float32  # the caller's model is not modified
    cos = (low * ref).sum(1) / np.linalg.norm(low, axis=1) / np.linalg.norm(ref, axis=1)
    assert cos.min() > 0.98


def test_set_output_pandas(model_tok):
    acts = make(model_tok, granularity="sample").set_output(transform="pandas")
    df = acts.fit_transform(TEXTS[:3])
    assert isinstance(df, pd.DataFrame) and df.shape == (3, 384)
    assert list(df.columns[:2]) == ["hidden0", "hidden1"]
    names = make(model_tok).fit().get_feature_names_out()
    assert names.shape == (384,) and names[-1] == "hidden383"


def test_pipeline_clone_and_joblib(model_tok, demo_corpus, tmp_path):
    texts, labels, _ = demo_corpus
    texts, labels = texts[::10], labels[::10]
    pipe = Pipeline(
        [
            ("acts", make(model_tok, granularity="sample")),
            ("clf", LogisticRegression(max_iter=500)),
        ]
    )
    pipe.fit(texts, labels)
    pred = pipe.predict(texts)
    assert pred.shape == (32,) and (pred == labels).mean() > 0.7
    proba = pipe.predict_proba(texts)

    cloned = clone(pipe)
    assert cloned["acts"].model is pipe["acts"].model  # shared, not copied
    assert not hasattr(cloned["acts"], "model_")
    np.testing.assert_allclose(cloned.fit(texts, labels).predict_proba(texts), proba)

    joblib.dump(pipe, tmp_path / "pipe.joblib")
    loaded = joblib.load(tmp_path / "pipe.joblib")
    assert loaded["acts"].model_ is not pipe["acts"].model_  # pickled with it
    np.testing.assert_allclose(loaded.predict_proba(texts), proba, atol=1e-5)


def test_path_model_is_reloaded_on_unpickle(tmp_path):
    from skconcepts.datasets import embedded_model_path

    acts = SplitPointActivations(embedded_model_path(), split_point=0).fit()
    X = acts.transform(["a tiny text"])
    joblib.dump(acts, tmp_path / "acts.joblib")
    assert (tmp_path / "acts.joblib").stat().st_size < 100_000  # no weights
    loaded = joblib.load(tmp_path / "acts.joblib")
    np.testing.assert_array_equal(loaded.transform(["a tiny text"]), X)


def test_pickle_model_that_returned_hidden_states(tmp_path):
    from skconcepts.utils._testing import make_tiny_model

    model, tokenizer = make_tiny_model("bert", "seq_cls")
    inputs = tokenizer(["some text"], return_tensors="pt")
    with torch.inference_mode():  # transformers installs unpicklable hooks here
        before = model(**inputs, output_hidden_states=True).hidden_states[2]
    acts = SplitPointActivations(model, tokenizer=tokenizer, split_point=1).fit()
    joblib.dump(acts, tmp_path / "acts.joblib")
    loaded = joblib.load(tmp_path / "acts.joblib")
    with torch.inference_mode():
        again = model(**inputs, output_hidden_states=True).hidden_states[2]
        other = loaded.model(**inputs, output_hidden_states=True).hidden_states[2]
    torch.testing.assert_close(again, before)
    torch.testing.assert_close(other, before)
    np.testing.assert_allclose(
        loaded.transform(["some text"]), before[0, 1:-1].numpy(), atol=1e-5
    )


def test_clone_shares_model_and_cache(model_tok):
    acts = make(model_tok).fit(TEXTS)
    copy = clone(acts)
    assert copy.model is acts.model and copy.tokenizer is acts.tokenizer
    assert copy._shared is acts._shared
    copy.fit()
    assert copy.model_ is acts.model_
    acts_default = SplitPointActivations(split_point=0).fit()
    assert clone(acts_default).fit().model_ is acts_default.model_  # not reloaded


class _ForwardCounter:
    """Counts the texts that go through the model's embeddings."""

    def __init__(self, model):
        self.n_texts = 0
        self.handle = model.embeddings.register_forward_hook(self)

    def __call__(self, module, args, output):
        self.n_texts += output.shape[0]


def test_cache_runs_each_distinct_text_once_in_grid_search(model_tok, demo_corpus):
    model, _ = model_tok
    texts, labels, _ = demo_corpus
    texts = texts[::8] + texts[::16]  # 40 distinct texts, 20 repeated
    labels = labels[::8] + labels[::16]
    pipe = Pipeline(
        [
            ("acts", make(model_tok, granularity="sample")),
            ("clf", LogisticRegression(max_iter=300)),
        ]
    )
    grid = GridSearchCV(pipe, {"clf__C": [0.1, 1.0, 10.0]}, cv=3)
    counter = _ForwardCounter(model)
    try:
        grid.fit(texts, labels)
        grid.predict(texts)
    finally:
        counter.handle.remove()
    assert counter.n_texts == len(set(texts)) == 40

    uncached = GridSearchCV(
        Pipeline(
            [
                ("acts", make(model_tok, granularity="sample", cache=False)),
                ("clf", LogisticRegression(max_iter=300)),
            ]
        ),
        {"clf__C": [0.1, 1.0]},
        cv=2,
    )
    counter = _ForwardCounter(model)
    try:
        uncached.fit(texts, labels)
    finally:
        counter.handle.remove()
    assert counter.n_texts > 40
    np.testing.assert_allclose(
        grid.best_estimator_["acts"].transform(texts[:3]),
        uncached.best_estimator_["acts"].transform(texts[:3]),
        rtol=0,
        atol=1e-5,
    )


def test_cache_keys_on_configuration_and_clear(model_tok):
    model, _ = model_tok
    acts = make(model_tok).fit()
    X = acts.transform(TEXTS[:3])
    other = clone(acts).set_params(granularity="sample").fit()
    assert other.transform(TEXTS[:3]).shape == (3, 384)  # not the token rows
    counter = _ForwardCounter(model)
    try:
        np.testing.assert_array_equal(acts.transform(TEXTS[:3]), X)
        assert counter.n_texts == 0
        acts.clear_cache()
        np.testing.assert_array_equal(acts.transform(TEXTS[:3]), X)
        assert counter.n_texts == 3
    finally:
        counter.handle.remove()


def test_iter_batches_streams_in_input_order(model_tok):
    acts = make(model_tok, granularity="word").fit()
    X = acts.transform(TEXTS)
    units = acts.units(TEXTS)
    chunks = list(acts.iter_batches(TEXTS, use_cache=False, chunk_size=4))
    assert [c[0].tolist() for c in chunks] == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9, 10]]
    rows = [r for _, per_text, _ in chunks for r in per_text]
    spans = [s for _, _, per_text in chunks for s in per_text]
    assert len(rows) == len(TEXTS) and all(isinstance(r, torch.Tensor) for r in rows)
    np.testing.assert_allclose(torch.cat(rows).numpy(), X, rtol=0, atol=1e-5)
    np.testing.assert_array_equal(np.concatenate(spans), units[["start", "end"]])


def test_progress_bar(model_tok, capsys):
    make(model_tok, progress=True, cache=False).fit_transform(TEXTS)
    err = capsys.readouterr().err
    assert "SplitPointActivations" in err and "11/11" in err


def test_transform_to_store_delegates(model_tok, monkeypatch, tmp_path):
    calls = []
    fake = types.ModuleType("skconcepts.store")
    fake.extract_to_store = lambda est, texts, path, **kw: (
        calls.append((est, texts, path, kw)) or "store"
    )
    monkeypatch.setitem(sys.modules, "skconcepts.store", fake)
    acts = make(model_tok).fit()
    assert acts.transform_to_store(["a"], tmp_path, shard_rows=5) == "store"
    assert calls == [(acts, ["a"], tmp_path, {"shard_rows": 5})]


def test_dotted_split_point(model_tok):
    model, tokenizer = model_tok
    name = "encoder.layer.1.attention"
    acts = make(model_tok, split_point=name).fit()
    assert acts.split_module_name_ == name
    captured = []
    handle = model.get_submodule(name).register_forward_hook(
        lambda m, a, o: captured.append(o[0] if isinstance(o, tuple) else o)
    )
    try:
        with torch.inference_mode():
            model(**tokenizer(["Hello there"], return_tensors="pt"))
    finally:
        handle.remove()
    np.testing.assert_allclose(
        acts.transform(["Hello there"]), captured[0][0, 1:-1].numpy(), atol=1e-5
    )
    assert acts.get_feature_names_out().shape == (384,)


@pytest.mark.parametrize(
    "X, error, match",
    [
        ("a bare string", TypeError, "X must be a list of strings, got a single str"),
        ([], ValueError, "X is empty"),
        (["ok", 3], TypeError, r"X\[1\] is int"),
        (None, TypeError, "X must be a list of strings, got None"),
    ],
)
def test_bad_texts(model_tok, X, error, match):
    acts = make(model_tok).fit()
    with pytest.raises(error, match=match):
        acts.transform(X)
    with pytest.raises(error, match=match):
        acts.units(X)
    if X is not None:
        with pytest.raises(error, match=match):
            make(model_tok).fit(X)


def test_bad_parameters(model_tok):
    model, tokenizer = model_tok
    with pytest.raises(SplitPointError, match=r"\[-6, 5\].*'encoder\.layer\.0'"):
        make(model_tok, split_point=6).fit()
    with pytest.raises(ValueError, match="split_point='decoder.layer.1' names no"):
        make(model_tok, split_point="decoder.layer.1").fit()
    with pytest.raises(ValueError, match="'granularity' parameter .* Got 'chars'"):
        make(model_tok, granularity="chars").fit()
    with pytest.raises(ValueError, match="tokenizer=None but model is a loaded"):
        SplitPointActivations(model).fit()
    with pytest.raises(OSError, match="offline"):
        SplitPointActivations("/nonexistent/model-folder").fit()
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA is not available"):
            make(model_tok, device="cuda").fit()


def test_not_fitted_and_fit_returns_self(model_tok):
    acts = make(model_tok)
    for method in (acts.transform, acts.units):
        with pytest.raises(NotFittedError):
            method(["a"])
    assert acts.fit(["a"]) is acts
    assert acts.fit() is acts


def test_tags():
    tags = SplitPointActivations().__sklearn_tags__()
    assert tags.input_tags.string and not tags.input_tags.two_d_array
    assert tags.requires_fit


@pytest.mark.parametrize(
    "check",
    [
        check_estimator_cloneable,
        check_estimator_repr,
        check_no_attributes_set_in_init,
        check_get_params_invariance,
        check_set_params,
        check_do_not_raise_errors_in_init_or_set_params,
        check_mixin_order,
    ],
)
def test_data_free_sklearn_checks(model_tok, check):
    check("SplitPointActivations", SplitPointActivations())
    check("SplitPointActivations", make(model_tok, granularity="word"))


@pytest.mark.gpu
def test_cuda_matches_cpu(model_tok):
    cpu = make(model_tok).fit_transform(TEXTS)
    gpu = make(model_tok, device="cuda").fit_transform(TEXTS)
    np.testing.assert_allclose(gpu, cpu, atol=1e-4)
