"""Tiny random Hugging Face models for tests (offline, built from configs).

:func:`make_tiny_model` builds a randomly initialised model with hidden size 32
and a few blocks, with a fast tokenizer, for the architectures that
skconcepts resolves split points for. Nothing is downloaded: BERT-like models
reuse the tokenizer of the embedded MiniLM, the others get a tiny BPE
tokenizer trained on the demo corpus. Weights are seeded from a local RNG
state (the global torch seed is restored afterwards).
"""

from __future__ import annotations

import functools
import os

import torch

__all__ = [
    "ARCHITECTURES",
    "HEADS",
    "FileForwardCounter",
    "make_tiny_model",
    "make_tiny_tokenizer",
]

#: architectures :func:`make_tiny_model` builds
ARCHITECTURES = ("bert", "gpt2", "llama", "qwen2", "gpt_neox")
#: heads :func:`make_tiny_model` can put on top of the base model
HEADS = (None, "seq_cls", "causal_lm")

_SPECIALS = {
    # arch: (bos, eos, pad, unk, adds a leading BOS)
    "gpt2": ("<|endoftext|>", "<|endoftext|>", None, None, False),
    "gpt_neox": ("<|endoftext|>", "<|endoftext|>", "<|padding|>", None, False),
    "qwen2": (None, "<|endoftext|>", "<|endoftext|>", None, False),
    "llama": ("<s>", "</s>", None, "<unk>", True),
}


@functools.lru_cache(maxsize=None)
def _tokenizer_json(arch: str) -> str:
    """Train (once) a tiny BPE tokenizer on the demo corpus; return its JSON."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors
    from tokenizers.trainers import BpeTrainer

    from skconcepts.datasets import load_demo_corpus

    bos, eos, pad, unk, adds_bos = _SPECIALS[arch]
    specials = [t for t in dict.fromkeys([bos, eos, pad, unk]) if t is not None]
    if arch == "llama":  # sentencepiece-like: Metaspace words, BOS added
        tok = Tokenizer(models.BPE(unk_token=unk, byte_fallback=False))
        tok.pre_tokenizer = pre_tokenizers.Metaspace()
        tok.decoder = decoders.Metaspace()
        alphabet = []
    else:  # GPT-2-like byte-level BPE, no BOS added
        tok = Tokenizer(models.BPE())
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        tok.decoder = decoders.ByteLevel()
        alphabet = pre_tokenizers.ByteLevel.alphabet()
    trainer = BpeTrainer(
        vocab_size=400,
        special_tokens=specials,
        initial_alphabet=alphabet,
        show_progress=False,
    )
    tok.train_from_iterator(load_demo_corpus()[0], trainer=trainer)
    if adds_bos:
        tok.post_processor = processors.TemplateProcessing(
            single=f"{bos} $A",
            pair=f"{bos} $A {bos} $B",
            special_tokens=[(bos, tok.token_to_id(bos))],
        )
    else:
        tok.post_processor = processors.ByteLevel(trim_offsets=True)
    return tok.to_str()


def make_tiny_tokenizer(arch: str = "gpt2", padding_side: str = "right"):
    """A fast tokenizer for a tiny model of ``arch`` (a new object every call).

    Parameters
    ----------
    arch : {"bert", "gpt2", "llama", "qwen2", "gpt_neox"}, default="gpt2"
        ``"bert"`` loads the MiniLM WordPiece tokenizer ([CLS] ... [SEP]);
        ``"llama"`` a Metaspace BPE that adds ``<s>``; the others a byte-level
        BPE without BOS (``"gpt2"`` has no pad token, like the real GPT-2).
    padding_side : {"right", "left"}, default="right"
        The tokenizer's ``padding_side``.

    Returns
    -------
    tokenizer : transformers.PreTrainedTokenizerFast
        The tokenizer, with ``model_max_length=128`` (512 for ``"bert"``).
    """
    if arch == "bert":
        from transformers import AutoTokenizer

        from skconcepts.datasets import embedded_model_path

        tokenizer = AutoTokenizer.from_pretrained(
            embedded_model_path(), local_files_only=True
        )
    elif arch in _SPECIALS:
        from tokenizers import Tokenizer
        from transformers import PreTrainedTokenizerFast

        bos, eos, pad, unk, _ = _SPECIALS[arch]
        tokenizer = PreTrainedTokenizerFast(
            tokenizer_object=Tokenizer.from_str(_tokenizer_json(arch)),
            bos_token=bos,
            eos_token=eos,
            pad_token=pad,
            unk_token=unk,
            model_max_length=128,
        )
    else:
        raise ValueError(f"arch={arch!r} is not one of {list(ARCHITECTURES)}.")
    tokenizer.padding_side = padding_side
    return tokenizer


def _config(arch, tokenizer, n_layers, hidden_size, head):
    import transformers as tf

    vocab = len(tokenizer)
    heads = 2
    pad = tokenizer.pad_token_id
    if pad is None:
        pad = tokenizer.eos_token_id
    common = dict(pad_token_id=pad, num_labels=2)
    if arch == "bert":
        return tf.BertConfig(
            vocab_size=vocab,
            hidden_size=hidden_size,
            num_hidden_layers=n_layers,
            num_attention_heads=heads,
            intermediate_size=2 * hidden_size,
            max_position_embeddings=128,
            **common,
        )
    ids = dict(bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id)
    if arch == "gpt2":
        return tf.GPT2Config(
            vocab_size=vocab,
            n_embd=hidden_size,
            n_layer=n_layers,
            n_head=heads,
            n_positions=128,
            **ids,
            **common,
        )
    if arch == "gpt_neox":
        return tf.GPTNeoXConfig(
            vocab_size=vocab,
            hidden_size=hidden_size,
            num_hidden_layers=n_layers,
            num_attention_heads=heads,
            intermediate_size=2 * hidden_size,
            max_position_embeddings=128,
            **ids,
            **common,
        )
    cls = tf.LlamaConfig if arch == "llama" else tf.Qwen2Config
    return cls(
        vocab_size=vocab,
        hidden_size=hidden_size,
        num_hidden_layers=n_layers,
        num_attention_heads=heads,
        num_key_value_heads=heads,
        intermediate_size=2 * hidden_size,
        max_position_embeddings=128,
        tie_word_embeddings=head == "causal_lm",
        **ids,
        **common,
    )


def make_tiny_model(
    arch: str = "gpt2",
    head: str | None = None,
    padding_side: str = "right",
    *,
    n_layers: int = 3,
    hidden_size: int = 32,
    seed: int = 0,
):
    """A tiny randomly initialised transformers model and its fast tokenizer.

    Parameters
    ----------
    arch : {"bert", "gpt2", "llama", "qwen2", "gpt_neox"}, default="gpt2"
        Architecture, built from its config class.
    head : {None, "seq_cls", "causal_lm"}, default=None
        ``None`` for the base model (``AutoModel``), ``"seq_cls"`` for
        ``AutoModelForSequenceClassification`` (2 labels), ``"causal_lm"`` for
        ``AutoModelForCausalLM``.
    padding_side : {"right", "left"}, default="right"
        The tokenizer's padding side.
    n_layers : int, default=3
        Number of blocks.
    hidden_size : int, default=32
        Width of the residual stream.
    seed : int, default=0
        Seed of the weights (a local RNG state; the global seed is restored).

    Returns
    -------
    model : transformers.PreTrainedModel
        The model in eval mode, float32, on the CPU.
    tokenizer : transformers.PreTrainedTokenizerFast
        Its tokenizer.

    Examples
    --------
    >>> from skconcepts.utils._testing import make_tiny_model
    >>> model, tokenizer = make_tiny_model("llama", head="causal_lm")
    >>> type(model).__name__, model.config.hidden_size
    ('LlamaForCausalLM', 32)
    """
    if head not in HEADS:
        raise ValueError(f"head={head!r} is not one of {list(HEADS)}.")
    import transformers as tf
    from transformers.utils import logging as hf_logging

    tokenizer = make_tiny_tokenizer(arch, padding_side=padding_side)
    config = _config(arch, tokenizer, n_layers, hidden_size, head)
    auto = {
        None: tf.AutoModel,
        "seq_cls": tf.AutoModelForSequenceClassification,
        "causal_lm": tf.AutoModelForCausalLM,
    }[head]
    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    try:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model = auto.from_config(config)
    finally:
        hf_logging.set_verbosity(verbosity)
    return model.eval(), tokenizer


class FileForwardCounter:
    """A forward hook that appends the batch size of every call to a file.

    Picklable (a module-level class holding a path), so a model that carries it
    counts its forward passes in every process it is sent to (the workers of
    ``GridSearchCV(n_jobs=...)``): register it on the embeddings module, and
    :meth:`total` sums the lines, i.e. the texts that went through the model.

    Parameters
    ----------
    path : str or os.PathLike
        The file (appended to; created if needed).

    Examples
    --------
    >>> import tempfile, os
    >>> from skconcepts.utils._testing import FileForwardCounter, make_tiny_model
    >>> model, tok = make_tiny_model("bert")
    >>> counter = FileForwardCounter(os.path.join(tempfile.mkdtemp(), "n.txt"))
    >>> handle = model.embeddings.register_forward_hook(counter)
    >>> _ = model(**tok(["a", "b c"], return_tensors="pt", padding=True))
    >>> counter.total()
    2
    >>> handle.remove()
    """

    def __init__(self, path):
        self.path = os.fspath(path)

    def __call__(self, module, args, output):
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o666)
        try:
            os.write(fd, f"{int(output.shape[0])}\n".encode())
        finally:
            os.close(fd)

    def total(self):
        """Texts counted so far, in all processes (0 if none)."""
        if not os.path.exists(self.path):
            return 0
        with open(self.path, encoding="utf-8") as f:
            return sum(int(line) for line in f if line.strip())
