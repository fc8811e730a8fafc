"""The on-disk activation cache: SplitPointActivations(cache=<folder>)."""

import os
import pickle
import subprocess
import sys

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import Pipeline

from skconcepts import ActivationCache, SplitPointActivations
from skconcepts._cache import model_fingerprint, tokenizer_fingerprint
from skconcepts.utils._testing import FileForwardCounter, make_tiny_model

TEXTS = [
    "A good film.",
    "Dull and long. Nothing happens!",
    "I loved every minute of it",
    "",
    "The plot makes no sense at all.",
    "Great acting, weak script.",
]


@pytest.fixture
def tiny(tmp_path):
    """A tiny BERT whose embeddings count the texts in a file."""
    model, tokenizer = make_tiny_model("bert", seed=0)
    counter = FileForwardCounter(tmp_path / "forward.txt")
    handle = model.embeddings.register_forward_hook(counter)
    yield model, tokenizer, counter
    handle.remove()


def make(model, tokenizer, cache, **kw):
    return SplitPointActivations(
        model, tokenizer=tokenizer, split_point=1, cache=cache, max_length=64, **kw
    ).fit()


def test_folder_cache_is_reused_by_a_new_estimator(tiny, tmp_path):
    model, tokenizer, counter = tiny
    folder = tmp_path / "cache"
    X = make(model, tokenizer, os.fspath(folder)).transform(TEXTS)
    assert counter.total() == len(TEXTS)
    assert ActivationCache(folder).n_entries() == len(TEXTS)
    # a new estimator (fresh memory cache) reads the folder: no forward pass
    again = make(model, tokenizer, folder)
    np.testing.assert_array_equal(again.transform(TEXTS), X)
    assert counter.total() == len(TEXTS)
    # same rows, units and warnings as without a cache
    plain = make(model, tokenizer, False)
    np.testing.assert_allclose(plain.transform(TEXTS), X, rtol=0, atol=1e-6)
    assert again.units(TEXTS).equals(plain.units(TEXTS))


def test_other_split_point_granularity_or_model_does_not_hit(tiny, tmp_path):
    model, tokenizer, counter = tiny
    folder = tmp_path / "cache"
    make(model, tokenizer, folder).transform(TEXTS)
    n = len(TEXTS)
    assert counter.total() == n
    make(model, tokenizer, folder, granularity="sample").transform(TEXTS)
    assert counter.total() == 2 * n
    SplitPointActivations(
        model, tokenizer=tokenizer, split_point=2, cache=folder, max_length=64
    ).fit().transform(TEXTS)
    assert counter.total() == 3 * n
    make(model, tokenizer, folder, aggregation="max", granularity="word").transform(
        TEXTS
    )
    assert counter.total() == 4 * n
    other, _ = make_tiny_model("bert", seed=1)  # same config, other weights
    assert model_fingerprint(other) != model_fingerprint(model)
    X_other = make(other, tokenizer, folder).transform(TEXTS)
    X_ref = make(other, tokenizer, False).transform(TEXTS)
    np.testing.assert_allclose(X_other, X_ref, rtol=0, atol=1e-6)
    assert ActivationCache(folder).n_entries() == 5 * n


def test_fingerprint_is_stable_across_copies():
    a, tok = make_tiny_model("bert", seed=0)
    b, tok_b = make_tiny_model("bert", seed=0)
    assert model_fingerprint(a) == model_fingerprint(b)
    assert tokenizer_fingerprint(tok) == tokenizer_fingerprint(tok_b)
    _, gpt_tok = make_tiny_model("gpt2")
    assert tokenizer_fingerprint(gpt_tok) != tokenizer_fingerprint(tok)
    b.embeddings.word_embeddings.weight.data[::7] += 1.0  # a fine-tuned copy
    assert model_fingerprint(a) != model_fingerprint(b)


def test_clear_cache_empties_the_folder(tiny, tmp_path):
    model, tokenizer, counter = tiny
    folder = tmp_path / "cache"
    (folder / "notes.txt").parent.mkdir()
    (folder / "notes.txt").write_text("kept")
    acts = make(model, tokenizer, folder)
    acts.transform(TEXTS)
    assert ActivationCache(folder).n_entries() == len(TEXTS)
    acts.clear_cache()
    assert ActivationCache(folder).n_entries() == 0
    assert (folder / "notes.txt").read_text() == "kept"
    acts.transform(TEXTS)
    assert counter.total() == 2 * len(TEXTS)


def test_size_limit_evicts_the_oldest(tiny, tmp_path):
    model, tokenizer, _ = tiny
    folder = tmp_path / "cache"
    make(model, tokenizer, folder).transform(TEXTS[:1])
    one = ActivationCache(folder).size_bytes()
    limit = 3 * one + one // 2
    cache = ActivationCache(folder, max_bytes=limit)
    acts = make(model, tokenizer, cache)
    acts.transform(TEXTS)
    assert cache.size_bytes() <= limit
    assert 1 <= cache.n_entries() < len(TEXTS)
    # the newest entries stay: the last text is a hit
    counter_before = tiny[2].total()
    make(model, tokenizer, cache).transform(TEXTS[-1:])
    assert tiny[2].total() == counter_before


def test_cache_argument_checks(tiny, tmp_path):
    model, tokenizer, _ = tiny
    file = tmp_path / "a_file"
    file.write_text("x")
    with pytest.raises(ValueError, match="is a file; pass a folder"):
        make(model, tokenizer, file).transform(TEXTS[:1])
    acts = make(model, tokenizer, ActivationCache(tmp_path / "c", max_bytes=10**6))
    copy = clone(acts)
    assert copy.cache == acts.cache


_WRITER = """
import sys
import numpy as np
from skconcepts import SplitPointActivations
from skconcepts.utils._testing import make_tiny_model
folder, seed, out = sys.argv[1], int(sys.argv[2]), sys.argv[3]
texts = {texts!r}
model, tokenizer = make_tiny_model("bert", seed=0)
acts = SplitPointActivations(
    model, tokenizer=tokenizer, split_point=1, cache=folder, max_length=64
).fit()
rng = np.random.default_rng(seed)
for _ in range(3):
    acts._shared_state().cache.clear()  # memory only: read or write the folder
    acts.transform([texts[i] for i in rng.permutation(len(texts))])
np.save(out, acts.transform(texts))
""".format(texts=TEXTS)


def test_concurrent_writers_leave_a_consistent_cache(tmp_path):
    folder = os.fspath(tmp_path / "cache")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _WRITER, folder, str(s), tmp_path / f"{s}.npy"],
            env=env,
        )
        for s in range(2)
    ]
    for p in procs:
        assert p.wait(timeout=300) == 0
    model, tokenizer = make_tiny_model("bert", seed=0)
    ref = make(model, tokenizer, False).transform(TEXTS)
    for s in range(2):
        np.testing.assert_allclose(np.load(tmp_path / f"{s}.npy"), ref, atol=1e-6)
    cache = ActivationCache(folder)
    assert cache.n_entries() == len(TEXTS)
    leftovers = [
        name
        for _, _, files in os.walk(folder)
        for name in files
        if name.endswith((".tmp", ".claim"))
    ]
    assert leftovers == []
    cached = make(model, tokenizer, folder).transform(TEXTS)
    np.testing.assert_allclose(cached, ref, atol=1e-6)


def test_grid_search_n_jobs_2_runs_the_model_once_per_text(tiny, tmp_path):
    model, tokenizer, counter = tiny
    texts = [f"text number {i} is {'good' if i % 2 else 'bad'}." for i in range(24)]
    labels = [i % 2 for i in range(24)]
    pipe = Pipeline(
        [
            (
                "acts",
                SplitPointActivations(
                    model,
                    tokenizer=tokenizer,
                    split_point=1,
                    granularity="sample",
                    max_length=64,
                    cache=tmp_path / "cache",
                ),
            ),
            ("clf", LogisticRegression(max_iter=200)),
        ]
    )
    grid = GridSearchCV(pipe, {"clf__C": [0.1, 1.0, 10.0]}, cv=3, n_jobs=2)
    grid.fit(texts, labels)
    grid.predict(texts)
    assert counter.total() == len(texts)


# ---------------------------------------------- fit records: no model to load
@pytest.fixture
def tiny_folder(tmp_path):
    """The tiny BERT and its tokenizer saved in a folder (a model by path)."""
    model, tokenizer = make_tiny_model("bert", seed=0)
    folder = tmp_path / "model"
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture
def loads(monkeypatch):
    """The ``from_pretrained`` calls of SplitPointActivations, by kind."""
    from skconcepts import activations

    calls = []
    real = activations._load_pretrained

    def counting(kind, path, dtype=None):
        calls.append(kind)
        return real(kind, path, dtype)

    monkeypatch.setattr(activations, "_load_pretrained", counting)
    return calls


def by_path(folder, cache, **kw):
    return SplitPointActivations(
        os.fspath(folder), split_point=1, cache=cache, max_length=64, **kw
    )


def test_a_fit_recorded_in_the_folder_loads_the_model_only_on_a_miss(
    tiny_folder, tmp_path, loads
):
    cache = tmp_path / "cache"
    first = by_path(tiny_folder, cache).fit()
    X = first.transform(TEXTS)
    assert loads == ["AutoModel", "AutoTokenizer"]
    # a new estimator (a worker process) fits from the record: nothing loaded
    lazy = by_path(tiny_folder, cache).fit()
    assert (lazy.split_module_name_, lazy.max_length_) == (
        first.split_module_name_,
        first.max_length_,
    )
    np.testing.assert_array_equal(lazy.transform(TEXTS), X)
    assert lazy.units(TEXTS).equals(first.units(TEXTS))
    assert loads == ["AutoModel", "AutoTokenizer"]
    # cloning and pickling do not see it; the copy loads nothing either
    assert clone(lazy).get_params() == first.get_params()
    assert not hasattr(clone(lazy), "model_")
    again = pickle.loads(pickle.dumps(lazy))
    np.testing.assert_array_equal(again.transform(TEXTS), X)
    assert loads == ["AutoModel", "AutoTokenizer"]
    # a text that is not cached loads the model (once), with its rows right
    new = lazy.transform(["a text never seen"])
    assert loads == ["AutoModel", "AutoTokenizer"] * 2
    np.testing.assert_allclose(
        new, first.transform(["a text never seen"]), rtol=0, atol=1e-6
    )
    assert lazy.model_ is not None and lazy.tokenizer_ is not None
    assert loads == ["AutoModel", "AutoTokenizer"] * 2


def test_a_changed_model_folder_or_clear_cache_forgets_the_record(
    tiny_folder, tmp_path, loads
):
    cache = tmp_path / "cache"
    by_path(tiny_folder, cache).fit()
    by_path(tiny_folder, cache).fit()
    assert len(loads) == 2  # the second fit used the record
    config = tiny_folder / "config.json"
    st = config.stat()
    os.utime(config, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    by_path(tiny_folder, cache).fit()
    assert len(loads) == 4  # the folder's files changed: loaded, checked again
    by_path(tiny_folder, cache, granularity="word").fit()  # same fit record
    assert len(loads) == 4
    by_path(tiny_folder, cache).clear_cache()
    assert not (cache / "fits").exists()
    by_path(tiny_folder, cache).fit()
    assert len(loads) == 6


def test_a_pipeline_fitted_from_the_record_saves_and_loads(
    tiny_folder, tmp_path, loads
):
    from sklearn.pipeline import make_pipeline

    from skconcepts import PCAConcepts, io

    cache = os.fspath(tmp_path / "cache")  # a str: skops trusts it
    by_path(tiny_folder, cache).fit().transform(TEXTS)  # the folder and record
    pipe = make_pipeline(by_path(tiny_folder, cache), PCAConcepts(2)).fit(TEXTS)
    assert len(loads) == 2  # the pipeline's fit loaded nothing
    saved = io.save(pipe, tmp_path / "saved")  # asks for model_: loads it
    n_loads = len(loads)
    loaded = io.load(saved)
    assert loaded[0].get_params() == pipe[0].get_params()
    np.testing.assert_allclose(
        loaded.transform(TEXTS), pipe.transform(TEXTS), rtol=0, atol=1e-5
    )
    assert len(loads) == n_loads  # loading, then transforming cached texts: none
