"""SplitPointActivations checks the tokenizer and max_length against the model.

Issue 12, items 5 (a tokenizer that is not the model's: every word [UNK]) and 9
(max_length beyond the model's positions, or below the special-token count).
"""

import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from skconcepts import SplitPointActivations
from skconcepts.datasets import embedded_model_path
from skconcepts.exceptions import (
    TokenizerMismatchError,
    TruncationWarning,
    UnknownTokensWarning,
)
from skconcepts.utils._testing import make_tiny_model, make_tiny_tokenizer

LONG = "word " * 600


@pytest.fixture(scope="module")
def weights_only(tmp_path_factory):
    """The embedded MiniLM's config and weights, without its tokenizer files."""
    folder = tmp_path_factory.mktemp("weights_only")
    for name in ("config.json", "model.safetensors"):
        shutil.copy(Path(embedded_model_path()) / name, folder / name)
    return folder


# ------------------------------------------------------------ item 5: tokenizer
def test_folder_without_tokenizer_files_is_refused(weights_only):
    acts = SplitPointActivations(weights_only, split_point=1)
    with pytest.raises(TokenizerMismatchError) as info:
        acts.fit()
    message = str(info.value)
    assert "has 5 tokens" in message and "30522 input embeddings" in message
    assert str(weights_only) in message and "tokenizer=" in message


def test_folder_without_tokenizer_files_works_with_its_tokenizer(weights_only):
    acts = SplitPointActivations(
        weights_only, tokenizer=embedded_model_path(), split_point=1
    ).fit()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert acts.transform(["a good film"]).shape == (3, 384)


def test_tokenizer_far_smaller_than_the_model_is_refused():
    model, _ = make_tiny_model("bert")  # 30522 embeddings (MiniLM's vocabulary)
    acts = SplitPointActivations(
        model, tokenizer=make_tiny_tokenizer("gpt2"), split_point=1
    )
    with pytest.raises(TokenizerMismatchError, match=r"has 400 tokens.*30522"):
        acts.fit()


def test_token_id_beyond_the_embeddings_is_refused():
    model, _ = make_tiny_model("gpt2")  # 400 embeddings
    _, bert_tokenizer = make_tiny_model("bert")  # 30522 tokens
    acts = SplitPointActivations(model, tokenizer=bert_tokenizer, split_point=1)
    with pytest.warns(UserWarning, match="exceeds the 128 positions"):
        acts.fit()  # the size check passes: the tokenizer is larger
    with pytest.raises(TokenizerMismatchError, match=r"token id \d+ .*only 400"):
        acts.transform(["a good film"])


def test_mostly_unknown_tokens_warn_once(minilm):
    model, tokenizer = minilm
    acts = SplitPointActivations(model, tokenizer=tokenizer, split_point=1).fit()
    with pytest.warns(UnknownTokensWarning, match=r"^3 of the 4 tokens .*\[UNK\]"):
        acts.transform(["🦜 🦜", "🦜 a"])
    with warnings.catch_warnings():  # one unknown token of three: no warning
        warnings.simplefilter("error")
        acts.transform(["a 🦜 b"])


def test_matching_tiny_models_do_not_warn():
    for arch in ("gpt2", "llama"):
        model, tokenizer = make_tiny_model(arch)
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            acts = SplitPointActivations(model, tokenizer=tokenizer).fit()
            acts.transform(["a good film", "dull"])


# ------------------------------------------------------------ item 9: max_length
def test_tokenizer_limit_beyond_model_positions_is_capped():
    model, tokenizer = make_tiny_model("bert")  # tokenizer 512, model 128
    assert tokenizer.model_max_length == 512
    acts = SplitPointActivations(model, tokenizer=tokenizer, split_point=1)
    with pytest.warns(UserWarning, match=r"model_max_length=512 exceeds the 128"):
        acts.fit()
    assert acts.max_length_ == 128
    with pytest.warns(TruncationWarning, match="max_length=128"):
        X = acts.transform([LONG])
    assert X.shape == (126, 32)


@pytest.mark.parametrize("granularity", ["token", "sample"])
def test_max_length_beyond_minilm_positions_is_capped(minilm, granularity):
    model, tokenizer = minilm
    acts = SplitPointActivations(
        model,
        tokenizer=tokenizer,
        split_point=1,
        max_length=1000,
        granularity=granularity,
    )
    with pytest.warns(UserWarning, match=r"max_length=1000 exceeds the 512"):
        acts.fit()
    assert acts.max_length_ == 512
    with pytest.warns(TruncationWarning):
        X = acts.transform([LONG])
    assert X.shape == ((510, 384) if granularity == "token" else (1, 384))


def test_max_length_within_positions_is_kept(minilm):
    model, tokenizer = minilm
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        acts = SplitPointActivations(
            model, tokenizer=tokenizer, split_point=1, max_length=512
        ).fit()
        assert acts.max_length_ == 512
        assert (
            SplitPointActivations(model, tokenizer=tokenizer).fit().max_length_ == 512
        )


@pytest.mark.parametrize("max_length", [1, 2])
def test_max_length_below_special_tokens_is_refused(minilm, max_length):
    model, tokenizer = minilm
    assert tokenizer.num_special_tokens_to_add() == 2
    acts = SplitPointActivations(model, tokenizer=tokenizer, max_length=max_length)
    with pytest.raises(ValueError, match=rf"max_length={max_length} .*max_length>=3"):
        acts.fit()


def test_max_length_one_is_fine_without_special_tokens():
    model, tokenizer = make_tiny_model("gpt2")  # adds no special token
    acts = SplitPointActivations(model, tokenizer=tokenizer, max_length=1).fit()
    with pytest.warns(TruncationWarning):
        assert acts.transform(["a good film"]).shape == (1, 32)


def test_roberta_padding_offset_is_reserved():
    import transformers as tf

    tokenizer = make_tiny_tokenizer("gpt2")
    config = tf.RobertaConfig(
        vocab_size=len(tokenizer),
        hidden_size=16,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=32,
        max_position_embeddings=20,
        pad_token_id=1,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = tf.RobertaModel(config).eval()
    acts = SplitPointActivations(model, tokenizer=tokenizer, split_point=0)
    with pytest.warns(UserWarning, match=r"exceeds the 18 positions"):
        acts.fit()  # tokenizer limit 128; 20 positions less padding_idx + 1
    assert acts.max_length_ == 18
    with pytest.warns(TruncationWarning):
        assert acts.transform([LONG]).shape == (18, 16)


def test_capped_max_length_survives_pickle_without_a_new_warning():
    import pickle

    model, tokenizer = make_tiny_model("bert")
    with pytest.warns(UserWarning, match="exceeds the 128"):
        acts = SplitPointActivations(model, tokenizer=tokenizer, split_point=1).fit()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        again = pickle.loads(pickle.dumps(acts))
    assert again.max_length_ == 128


def test_token_id_beyond_the_embeddings_is_refused_on_rerun_paths():
    model, _ = make_tiny_model("gpt2")  # 400 embeddings
    _, bert_tokenizer = make_tiny_model("bert")
    acts = SplitPointActivations(
        model, tokenizer=bert_tokenizer, split_point=1, max_length=64
    ).fit()
    with pytest.raises(TokenizerMismatchError, match="only 400 input embeddings"):
        acts.encode(["a good film"])  # what attribution and intervention rerun


def test_cli_fit_on_a_folder_without_tokenizer_files(weights_only, tmp_path, capsys):
    from skconcepts.cli import main

    texts = tmp_path / "texts.txt"
    texts.write_text("a good film\nbad food today\nnice weather\nmore words\n")
    argv = ["fit", "-q", "--texts", str(texts), "--model", str(weights_only)]
    argv += ["--layer", "1", "--method", "pca", "--n-concepts", "2"]
    assert main([*argv, "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert "has 5 tokens" in err and "copy the tokenizer files" in err
    assert not (tmp_path / "out" / "pipeline.joblib").exists()


# ------------------------------------------- same class: float16 output overflow
def test_float16_activations_beyond_its_range_warn():
    model, tokenizer = make_tiny_model("gpt2", seed=1)
    with torch.no_grad():
        model.wte.weight.mul_(1e8)  # the embedding output is far beyond 65504
    kw = dict(tokenizer=tokenizer, split_point="wte", cache=False)
    ref = SplitPointActivations(model, **kw).fit().transform(["a good film"])
    half = SplitPointActivations(model, dtype="float16", **kw).fit()
    n_big = int((np.abs(ref) > 65504).sum())
    assert n_big > 0
    with pytest.warns(RuntimeWarning, match=rf"^{n_big} activation values .*inf"):
        X = half.transform(["a good film"])
    assert int(np.isinf(X).sum()) == n_big
    bf = SplitPointActivations(model, dtype="bfloat16", **kw).fit()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert torch.isfinite(bf.transform(["a good film"])).all()
