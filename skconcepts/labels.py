"""Concept labels written by a local causal language model.

:class:`ConceptLabeler` asks a Hugging Face causal LM that lives on this
machine (a loaded model, or a folder saved with ``save_pretrained``) for a
short label of each concept, from the concept's top units and, when given,
its distinctive words. Nothing is downloaded and no remote API is called:
a folder is read with ``local_files_only=True``.
"""

from __future__ import annotations

import hashlib
import json
import os
import warnings
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import torch

from skconcepts.exceptions import TruncationWarning
from skconcepts.utils._progress import progress_bar

__all__ = ["ConceptLabeler", "DEFAULT_PROMPT"]

#: the prompt of :class:`ConceptLabeler`; ``{units}``: the concept's top units,
#: quoted and comma-separated, best first; ``{words}``: its distinctive words
#: (``"none given"`` without them)
DEFAULT_PROMPT = (
    "The following text fragments most strongly activate one concept inside a "
    "language model: {units}.\n"
    "Distinctive words of the concept: {words}.\n"
    "A short name for this concept, in at most five words:"
)

#: labels already written, by (model fingerprint, prompt text, max_new_tokens);
#: shared by every labeler of the process
_CACHE: dict = {}


class ConceptLabeler:
    """Short concept labels written by a local causal language model.

    For each concept, a fixed prompt (:data:`DEFAULT_PROMPT`, or ``prompt``)
    lists its top units and distinctive words; the model continues it by
    greedy decoding (deterministic) for at most ``max_new_tokens`` tokens,
    and the first line of the continuation, trimmed of spaces and quotes, is
    the label. With a tokenizer that has a chat template (an instruct model),
    the prompt is sent as one user message through the template.

    Parameters
    ----------
    model : str, os.PathLike or transformers.PreTrainedModel
        A causal LM: a loaded model (``AutoModelForCausalLM``), or the folder
        of one saved with ``save_pretrained`` (loaded with
        ``local_files_only=True``: never downloaded).
    tokenizer : transformers.PreTrainedTokenizerBase, default=None
        Its tokenizer; default: loaded from the model's folder.
    max_new_tokens : int, default=12
        Most tokens generated per label.
    prompt : str, default=None
        The prompt template, with the fields ``{units}`` and ``{words}``;
        default :data:`DEFAULT_PROMPT`.
    cache : bool, default=True
        Keep the labels in memory, keyed by (a fingerprint of the model and
        tokenizer, the prompt text, ``max_new_tokens``): the same concept
        asked twice, by this labeler or another one on the same model, is
        generated once.
    n_units : int, default=10
        Most top units listed in a prompt.
    progress : bool or None, default=None
        Show a progress bar over the concepts (``None``: when the output is a
        terminal or notebook).

    Attributes
    ----------
    model_ : transformers.PreTrainedModel
        The loaded model (in evaluation mode).
    tokenizer_ : transformers.PreTrainedTokenizerBase
        Its tokenizer.
    fingerprint_ : str
        The model part of the cache key (hash of the configuration, the
        tokenizer's vocabulary and a sample of every weight tensor).
    prompts_ : list of str
        The prompts of the last :meth:`label` call, one per concept.
    n_generated_ : int
        Labels this labeler generated (cache misses), over all calls.

    See Also
    --------
    skconcepts.TopKInputs : The top units of each concept.
    skconcepts.viz.report : Shows the labels as concept titles.

    Notes
    -----
    The labels are only as good as the model: a small instruct model (e.g. a
    Qwen2.5-0.5B-Instruct or SmolLM2-360M-Instruct folder downloaded once with
    ``huggingface-cli download``) gives usable names on a CPU in a second or
    two per concept. A randomly initialised model gives nonsense, which is
    what the example below uses to stay offline.

    Examples
    --------
    >>> from skconcepts.labels import ConceptLabeler
    >>> from skconcepts.utils._testing import make_tiny_model
    >>> model, tokenizer = make_tiny_model("gpt2", head="causal_lm")
    >>> labeler = ConceptLabeler(
    ...     model, tokenizer, max_new_tokens=4,
    ...     prompt="Fragments: {units}. Words: {words}. Name:")
    >>> top = {0: {"lovely": 2.1, "great": 1.7}, 1: {"rain": 1.2, "cold": 0.9}}
    >>> labels = labeler.label(top, words={0: ["fun"], 1: ["wet"]})
    >>> len(labels), all(isinstance(label, str) for label in labels)
    (2, True)
    >>> labeler.prompts_[0]
    'Fragments: "lovely", "great". Words: fun. Name:'
    >>> labeler.label(top, words={0: ["fun"], 1: ["wet"]}) == labels  # cached
    True
    >>> from skconcepts.labels import DEFAULT_PROMPT
    >>> print(DEFAULT_PROMPT.format(units='"lovely", "great"', words="fun"))
    The following text fragments most strongly activate one concept inside a \
language model: "lovely", "great".
    Distinctive words of the concept: fun.
    A short name for this concept, in at most five words:
    """

    def __init__(
        self,
        model,
        tokenizer=None,
        *,
        max_new_tokens=12,
        prompt=None,
        cache=True,
        n_units=10,
        progress=None,
    ):
        self.model = model
        self.tokenizer = tokenizer
        self.max_new_tokens = max_new_tokens
        self.prompt = prompt
        self.cache = cache
        self.n_units = n_units
        self.progress = progress
        for name in ("max_new_tokens", "n_units"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{name}={value!r} must be an integer >= 1.")
        template = DEFAULT_PROMPT if prompt is None else prompt
        try:
            template.format(units="", words="")
        except (KeyError, IndexError, AttributeError, ValueError) as exc:
            raise ValueError(
                f"prompt={prompt!r} is not a template with the fields {{units}} "
                f"and {{words}} only ({type(exc).__name__}: {exc}); write "
                "literal braces as {{ and }}."
            ) from None
        self.model_, self.tokenizer_ = _load(model, tokenizer)
        self.fingerprint_ = _fingerprint(self.model_, self.tokenizer_)
        self.prompts_ = []
        self.n_generated_ = 0

    # --------------------------------------------------------------- prompt
    def build_prompt(self, units, words=None):
        """The prompt text of one concept.

        Parameters
        ----------
        units : list of str
            The concept's top units, best first (at most ``n_units`` are used).
        words : list of str, default=None
            Its distinctive words.

        Returns
        -------
        prompt : str
            The template filled in (before any chat template).
        """
        template = DEFAULT_PROMPT if self.prompt is None else self.prompt
        shown = ", ".join(_quote(u) for u in list(units)[: self.n_units])
        listed = ", ".join(str(w).strip() for w in (words or []) if str(w).strip())
        return template.format(units=shown or "none", words=listed or "none given")

    # ---------------------------------------------------------------- label
    def label(self, top_inputs, words=None):
        """One label per concept, from its top units (and distinctive words).

        Parameters
        ----------
        top_inputs : dict or pandas.DataFrame
            What :meth:`skconcepts.TopKInputs.interpret` returns: a dict
            ``{concept: {unit text: activation}}``, or its table
            (``as_frame=True``, columns ``concept``, ``text`` and
            ``activation``). Units are listed by decreasing activation.
        words : dict or list of list of str, default=None
            Distinctive words per concept: ``{concept: [word, ...]}``, or one
            list per concept in the order of ``top_inputs``.

        Returns
        -------
        labels : list of str
            One label per concept, in the order of ``top_inputs`` (sorted
            concept numbers for a table). An empty continuation gives the
            concept's three top units, comma-separated.
        """
        concepts = _top_units(top_inputs)
        words = _words_per_concept(words, [c for c, _ in concepts])
        self.prompts_ = [
            self.build_prompt(units, words.get(c)) for c, units in concepts
        ]
        labels = []
        bar = progress_bar(
            list(zip(concepts, self.prompts_)),
            progress=self.progress,
            desc="ConceptLabeler.label",
            unit="concept",
        )
        for (_, units), text in bar:
            labels.append(self._label_one(text) or ", ".join(units[:3]))
        return labels

    def _label_one(self, text):
        key = (self.fingerprint_, text, self.max_new_tokens)
        if self.cache and key in _CACHE:
            return _CACHE[key]
        label = _first_line(self._generate(text))
        self.n_generated_ += 1
        if self.cache:
            _CACHE[key] = label
        return label

    def _generate(self, text):
        tok, model = self.tokenizer_, self.model_
        if getattr(tok, "chat_template", None):
            text = tok.apply_chat_template(
                [{"role": "user", "content": text}],
                tokenize=False,
                add_generation_prompt=True,
            )
        device = next(model.parameters()).device
        enc = tok(text, return_tensors="pt")
        limit = _max_positions(model.config) - self.max_new_tokens
        n_tokens = enc["input_ids"].shape[1]
        if n_tokens > limit:  # keep the end: the instruction the model answers
            warnings.warn(
                f"The prompt has {n_tokens} tokens, more than the {limit} the "
                f"model takes before its {self.max_new_tokens} new tokens; its "
                "first tokens are dropped. Use a model with a longer context, "
                "a shorter prompt, or a smaller n_units.",
                TruncationWarning,
                stacklevel=4,
            )
            enc = {k: v[:, n_tokens - max(limit, 1) :] for k, v in enc.items()}
        enc = {k: v.to(device) for k, v in enc.items()}
        pad = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
        with torch.inference_mode():
            out = model.generate(
                **enc,
                max_new_tokens=self.max_new_tokens,
                do_sample=False,
                num_beams=1,
                pad_token_id=pad,
            )
        new = out[0, enc["input_ids"].shape[1] :]
        return tok.decode(new, skip_special_tokens=True)


# -------------------------------------------------------------------- helpers
def _load(model, tokenizer):
    """The (model, tokenizer) pair, loaded from a folder when given one."""
    # deferred: transformers is a heavy import
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    if isinstance(model, (str, os.PathLike)):
        folder = Path(model)
        if not folder.is_dir():
            raise ValueError(
                f"model={str(model)!r} is not a folder; ConceptLabeler reads a "
                "local model only (never downloads): pass the folder of a causal "
                "LM saved with save_pretrained (e.g. one fetched once with "
                "`huggingface-cli download NAME --local-dir DIR`), or a loaded "
                "model."
            )
        config = AutoConfig.from_pretrained(folder, local_files_only=True)
        _check_causal(config, f"model={str(model)!r}")
        loaded = AutoModelForCausalLM.from_pretrained(folder, local_files_only=True)
        if tokenizer is None:
            tokenizer = AutoTokenizer.from_pretrained(folder, local_files_only=True)
        model = loaded
    else:
        if not isinstance(model, torch.nn.Module) or not hasattr(model, "config"):
            raise ValueError(
                f"model must be a causal LM (a transformers model or its folder), "
                f"got {type(model).__name__}."
            )
        _check_causal(model.config, f"model={type(model).__name__}", model)
        if tokenizer is None:
            source = getattr(model, "name_or_path", "") or ""
            if not source or not Path(source).is_dir():
                raise ValueError(
                    "tokenizer=None, and the model was not loaded from a local "
                    "folder to read one from; pass tokenizer=."
                )
            tokenizer = AutoTokenizer.from_pretrained(source, local_files_only=True)
    if not callable(getattr(tokenizer, "decode", None)):
        raise ValueError(
            f"tokenizer must be a transformers tokenizer, got "
            f"{type(tokenizer).__name__}."
        )
    return model.eval(), tokenizer


#: endings of the class names of causal LMs (``GPT2LMHeadModel``, ``LlamaForCausalLM``)
_CAUSAL_SUFFIXES = ("ForCausalLM", "LMHeadModel")


def _check_causal(config, what, model=None):
    """Refuse a model that is not a decoder-only causal LM."""
    names = [type(model).__name__] if model is not None else []
    names = names or list(getattr(config, "architectures", None) or [])
    causal = any(n.endswith(_CAUSAL_SUFFIXES) for n in names)
    if model is not None:
        causal = causal and bool(getattr(model, "can_generate", lambda: False)())
    if getattr(config, "is_encoder_decoder", False) or (names and not causal):
        shown = ", ".join(names) or config.model_type
        raise ValueError(
            f"{what} is not a causal language model ({shown}); ConceptLabeler "
            "needs a decoder-only LM that generates text (a *ForCausalLM class, "
            "e.g. an instruct model loaded with AutoModelForCausalLM)."
        )


def _max_positions(config):
    """The longest sequence the model takes (a large number when unknown)."""
    for name in ("max_position_embeddings", "n_positions", "n_ctx"):
        value = getattr(config, name, None)
        if isinstance(value, int) and value > 0:
            return value
    return 1 << 30


#: configuration entries that say where or how a model was loaded, not what it is
#: (the class and the weights' dtypes are hashed from the model itself)
_NOT_MODEL = {
    "_name_or_path",
    "transformers_version",
    "_commit_hash",
    "architectures",
    "dtype",
    "torch_dtype",
}


def _fingerprint(model, tokenizer):
    """A hash of the model's configuration, weights (sampled) and vocabulary."""
    h = hashlib.sha256()
    h.update(type(model).__name__.encode())
    config = {
        k: v
        for k, v in model.config.to_dict().items()
        if k not in _NOT_MODEL  # where it was loaded from is not the model
    }
    h.update(json.dumps(config, sort_keys=True, default=str).encode())
    with torch.no_grad():
        for name, p in model.state_dict().items():
            flat = p.detach().reshape(-1)
            sample = flat[:: max(1, flat.numel() // 64)][:64]
            h.update(name.encode())
            h.update(f"{tuple(p.shape)} {p.dtype}".encode())
            h.update(sample.float().cpu().numpy().tobytes())
    vocab = sorted(tokenizer.get_vocab().items())
    h.update(json.dumps(vocab).encode())
    h.update(str(getattr(tokenizer, "chat_template", None)).encode())
    return h.hexdigest()


def _top_units(top_inputs):
    """``[(concept, [unit text, ...]), ...]``, units by decreasing activation."""
    if isinstance(top_inputs, Mapping):
        out = []
        for concept, units in top_inputs.items():
            if not isinstance(units, Mapping):
                raise ValueError(
                    "top_inputs must map each concept to {unit text: activation} "
                    f"(TopKInputs.interpret's dict); concept {concept!r} maps to "
                    f"{type(units).__name__}."
                )
            ranked = sorted(units.items(), key=lambda kv: -float(kv[1]))
            out.append((concept, [str(text) for text, _ in ranked]))
        return out
    columns = getattr(top_inputs, "columns", None)
    if columns is None or not {"concept", "text"} <= set(columns):
        raise ValueError(
            "top_inputs must be TopKInputs.interpret's dict or its table "
            f"(columns concept, text, activation); got {type(top_inputs).__name__}."
        )
    frame = top_inputs
    if "activation" in columns:
        frame = frame.sort_values("activation", ascending=False, kind="stable")
    return [
        (int(c), [str(t) for t in frame.loc[frame["concept"] == c, "text"]])
        for c in np.unique(frame["concept"].to_numpy())
    ]


def _words_per_concept(words, concepts):
    if words is None:
        return {}
    if isinstance(words, Mapping):
        return dict(words)
    words = list(words)
    if len(words) != len(concepts):
        raise ValueError(
            f"words has {len(words)} entries for {len(concepts)} concepts; pass one "
            "list of words per concept, or a dict {concept: words}."
        )
    return dict(zip(concepts, words))


def _quote(unit):
    return '"' + " ".join(str(unit).split()).replace('"', "'") + '"'


def _first_line(text):
    for line in text.splitlines():
        line = line.strip().strip("\"'`*").strip()
        if line:
            return line
    return ""
