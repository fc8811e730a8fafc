"""The one model rerun from the split point with the split output replaced.

The model is split at a module as ``f = g ∘ h``. :func:`rerun` runs the model
with the output of that module replaced by ``replace_fn(h)`` (the hook is
removed when the forward pass ends, whatever happens) and returns the model's
outputs. :class:`ConceptSplice` is the ``replace_fn`` that rebuilds ``h`` from
its concepts, ``t⁻¹(edit(C)) + r`` with ``C = t(h)`` a fresh leaf tensor and the
residual ``r = h − t⁻¹(C)`` held constant, so that with no edit the rerun gives
exactly the original outputs. The same rerun serves gradients to concepts
(attribution), edited concepts (intervention) and the reconstruction spliced in
without its residual (fidelity metrics).

Helpers shared by the callers: :func:`frozen_model` (eval mode, frozen
parameters, on a device, all restored), :func:`model_dtype`,
:func:`model_inputs` (texts to padded model inputs through the extractor),
:func:`check_targets` and :func:`select_outputs` (which outputs are explained).
"""

from __future__ import annotations

import contextlib
import inspect
from collections.abc import Mapping

import numpy as np
import torch

from skconcepts._granularity import AGGREGATIONS, GRANULARITIES
from skconcepts._split import replace_output
from skconcepts.activations import pad_encodings

__all__ = [
    "rerun",
    "ConceptSplice",
    "frozen_model",
    "model_dtype",
    "model_inputs",
    "check_targets",
    "select_outputs",
    "call_output_fn",
    "rerun_options",
    "output_matrix",
    "head_input",
    "last_token_logits",
]


def rerun(model, module, inputs, replace_fn, **model_kwargs):
    """Run ``model`` with the output of ``module`` replaced by ``replace_fn(output)``.

    The forward hook is installed for this call only and removed in a
    ``finally`` clause, also when the forward pass raises. Gradient mode is the
    caller's: wrap the call in ``torch.enable_grad()`` to differentiate the
    outputs, in ``torch.no_grad()`` not to.

    Parameters
    ----------
    model : torch.nn.Module
        The whole model (e.g. a ``transformers`` model with its head).
    module : torch.nn.Module
        The split module, a submodule of ``model``. When it returns a tuple,
        only element 0 (the hidden states) is replaced.
    inputs : mapping or torch.Tensor
        The model inputs: a mapping is passed as keyword arguments
        (``model(**inputs)``, e.g. ``input_ids`` and ``attention_mask``), anything
        else as the one positional argument.
    replace_fn : callable
        Maps the split output tensor (e.g. ``(batch, seq, d)``) to the tensor
        used in its place, of the same shape.
    **model_kwargs
        More keyword arguments of the forward call, e.g. ``use_cache=False``.

    Returns
    -------
    outputs : object
        What the model returns for the rerun.

    Raises
    ------
    RuntimeError
        When ``module`` did not run during the forward pass (it is not on the
        path from the inputs to the outputs).

    Examples
    --------
    >>> import torch
    >>> from skconcepts._rerun import rerun
    >>> net = torch.nn.Sequential(torch.nn.Identity(), torch.nn.ReLU())
    >>> rerun(net, net[0], torch.ones(1, 2), lambda h: h - 2)
    tensor([[0., 0.]])
    >>> rerun(net, net[0], torch.ones(1, 2), lambda h: h)  # identity: unchanged
    tensor([[1., 1.]])
    """
    calls = []

    def replace(h):
        calls.append(1)
        return replace_fn(h)

    with replace_output(module, replace):
        if isinstance(inputs, Mapping):
            outputs = model(**inputs, **model_kwargs)
        else:
            outputs = model(inputs, **model_kwargs)
    if not calls:
        raise RuntimeError(
            "The split module did not run during the forward pass; choose a "
            "split point on the path from the inputs to the outputs."
        )
    return outputs


class ConceptSplice:
    """``replace_fn`` for :func:`rerun` that rebuilds the split output from concepts.

    Called on the split output ``h``, it encodes ``C = encode(h)`` and the
    residual ``r = h - decode(C)`` without gradient, makes ``C`` a fresh leaf
    tensor that requires grad (kept as :attr:`codes`), and returns
    ``decode(edit(C)) + r``. With ``edit=None`` and ``residual=True`` the rerun
    reproduces the original outputs exactly, and the gradient of the outputs
    with respect to :attr:`codes` says what each concept does.

    Parameters
    ----------
    encode : callable
        ``encode(h)``: tensor (..., d) to concept activations (..., k) on the
        same device and dtype, e.g. the ``encode_fn`` of
        :func:`skconcepts._pipeline.torch_codec`.
    decode : callable
        Differentiable ``decode(C)``: (..., k) to (..., d), e.g. the decoder of
        :func:`skconcepts._pipeline.torch_codec`.
    edit : callable or None, default=None
        ``edit(C) -> C'`` applied to the leaf concepts before decoding (e.g. set
        one concept to zero); None keeps them.
    residual : bool, default=True
        Add the constant residual ``r``; ``False`` splices in the bare
        reconstruction ``decode(edit(C))``.

    Attributes
    ----------
    codes : torch.Tensor of shape (..., k) or None
        The leaf concept activations of the last call (None before any call).
    residual_ : torch.Tensor of shape (..., d) or None
        The residual of the last call (None before any call or with
        ``residual=False``).

    Examples
    --------
    >>> import torch
    >>> from skconcepts._rerun import ConceptSplice, rerun
    >>> net = torch.nn.Sequential(torch.nn.Linear(3, 3), torch.nn.Linear(3, 1))
    >>> splice = ConceptSplice(lambda h: h[..., :2], lambda c: c @ torch.eye(2, 3))
    >>> x = torch.randn(4, 3)
    >>> torch.allclose(rerun(net, net[0], x, splice), net(x))
    True
    >>> splice.codes.shape
    torch.Size([4, 2])
    """

    def __init__(self, encode, decode, *, edit=None, residual=True):
        self.encode = encode
        self.decode = decode
        self.edit = edit
        self.residual = residual
        self.codes = None
        self.residual_ = None

    def __call__(self, h):  # h: (..., d)
        with torch.no_grad():
            codes = self.encode(h)  # (..., k)
            residual = h - self.decode(codes) if self.residual else None  # (..., d)
        codes = codes.detach().requires_grad_(True)
        self.codes, self.residual_ = codes, residual
        edited = codes if self.edit is None else self.edit(codes)
        out = self.decode(edited)
        return out if residual is None else out + residual


def model_dtype(model):
    """The dtype of ``model``'s first parameter (float32 for a model without any)."""
    param = next(model.parameters(), None)
    return torch.float32 if param is None else param.dtype


@contextlib.contextmanager
def frozen_model(model, device):
    """Eval mode, frozen parameters, model on ``device``; everything restored.

    Parameters
    ----------
    model : torch.nn.Module
        The model to rerun.
    device : torch.device
        Where to run it; the model moves there for the block and back after.

    Yields
    ------
    model : torch.nn.Module
        The same model, in eval mode with ``requires_grad=False`` parameters.

    Examples
    --------
    >>> import torch
    >>> from skconcepts._rerun import frozen_model
    >>> net = torch.nn.Linear(2, 2).train()
    >>> with frozen_model(net, torch.device("cpu")):
    ...     print(net.training, net.weight.requires_grad)
    False False
    >>> net.training, net.weight.requires_grad
    (True, True)
    """
    flags = [(p, p.requires_grad) for p in model.parameters()]
    modes = [(m, m.training) for m in model.modules()]
    param = next(model.parameters(), None)
    home = None if param is None else param.device
    try:
        for p, _ in flags:
            p.requires_grad_(False)
        model.eval()
        if home is not None and home != device:
            model.to(device)
        yield model
    finally:
        if home is not None and home != device:
            model.to(home)
        for m, training in modes:
            m.training = training
        for p, flag in flags:
            p.requires_grad_(flag)


def model_inputs(extractor, texts, device, *, start=0):
    """Tokenize ``texts`` as ``extractor`` does and pad them into model inputs.

    Parameters
    ----------
    extractor : SplitPointActivations
        The fitted extractor (tokenizer, truncation and special-token rule).
    texts : list of str
        One batch of texts.
    device : torch.device
        Where the input tensors go.
    start : int, default=0
        Position of ``texts[0]`` in the caller's ``inputs``, for error messages.

    Returns
    -------
    encodings : list of tokenizers.Encoding
        One per text, from ``extractor.encode``.
    inputs : dict of str to torch.Tensor
        Right-padded ``input_ids``, ``attention_mask`` (and ``token_type_ids``
        where the tokenizer uses them), each of shape (batch, max_len).

    Raises
    ------
    ValueError
        When a text has no tokens (the model cannot run on it).
    """
    encodings = extractor.encode(texts)
    for i, enc in enumerate(encodings):
        if len(enc.ids) == 0:
            raise ValueError(
                f"inputs[{start + i}] = {texts[i]!r} has no tokens; the "
                "model cannot run on it. Remove it from inputs."
            )
    return encodings, pad_encodings(extractor.tokenizer_, encodings, device)


def check_targets(targets, n_inputs):
    """``None`` or an int64 array of shape (n_inputs, t).

    Parameters
    ----------
    targets : int, array-like of int or None
        An int or a 1-D sequence (the same targets for every input), or a 2-D
        array of shape (n_inputs, t).
    n_inputs : int
        Number of inputs.

    Returns
    -------
    targets : ndarray of shape (n_inputs, t), dtype int64, or None
        ``None`` when ``targets`` is None.

    Examples
    --------
    >>> from skconcepts._rerun import check_targets
    >>> check_targets([3, 5], 2)
    array([[3, 5],
           [3, 5]])
    """
    if targets is None:
        return None
    arr = np.asarray(targets)
    if arr.size == 0 or not np.issubdtype(arr.dtype, np.integer) or arr.ndim > 2:
        raise ValueError(
            f"targets={targets!r} must be an int, a 1-D sequence of ints (shared by "
            "all inputs) or a 2-D array of shape (n_inputs, t), or None."
        )
    if arr.ndim < 2:
        arr = np.broadcast_to(arr.reshape(1, -1), (n_inputs, arr.size))
    elif arr.shape[0] != n_inputs:
        raise ValueError(
            f"targets has {arr.shape[0]} rows but there are {n_inputs} inputs; "
            "give one row of targets per input, or a 1-D sequence for all."
        )
    return arr.astype(np.int64)


def select_outputs(outputs, inputs, targets=None, output_fn=None):
    """The explained outputs ``Y`` of shape (batch, t) of a model's outputs.

    Parameters
    ----------
    outputs : object
        The model's outputs for a right-padded batch.
    inputs : dict of str to torch.Tensor
        The batch's model inputs (its ``attention_mask`` locates the last real
        token of each row for causal language models).
    targets : array-like of int of shape (batch, t) or None, default=None
        Indices of the outputs: class logits of a sequence-classification head
        (``None``: all), token ids of the next-token logits at the last real
        position of a causal LM head (``None``: the most likely next token), or
        columns of ``output_fn``'s result (``None``: all).
    output_fn : callable or None, default=None
        ``output_fn(outputs) -> Tensor of shape (batch, n_outputs)`` for heads
        other than those two; called as ``output_fn(outputs, inputs=inputs)``
        when it has a parameter named ``inputs`` (see :func:`call_output_fn`).

    Returns
    -------
    Y : torch.Tensor of shape (batch, t)
        The selected outputs, differentiable when ``outputs`` is.
    """
    full = output_matrix(outputs, inputs, output_fn)  # (B, n_outputs)
    default = None
    if output_fn is None and getattr(outputs, "logits", None) is not None:
        if outputs.logits.ndim == 3:  # causal LM: the most likely next token
            default = full.detach().argmax(dim=1, keepdim=True)  # (B, 1)
    if targets is None:
        if default is None:
            return full
        targets = default
    else:
        targets = torch.as_tensor(targets, device=full.device)
    n_out = full.shape[1]
    if bool((targets < 0).any()) or bool((targets >= n_out).any()):
        raise ValueError(
            f"targets hold {sorted(set(targets.flatten().tolist()))} but the model "
            f"output has {n_out} entries; use targets in [0, {n_out - 1}]."
        )
    return full.gather(1, targets)  # (B, t)


def call_output_fn(output_fn, outputs, inputs):
    """``output_fn(outputs)``, or ``output_fn(outputs, inputs=inputs)``.

    An ``output_fn`` that needs the batch's model inputs (e.g. the
    ``attention_mask`` to mean-pool the hidden states over the real tokens)
    declares a parameter named ``inputs``; it then receives the padded model
    inputs of the batch as that keyword.

    Examples
    --------
    >>> from skconcepts._rerun import call_output_fn
    >>> call_output_fn(lambda out: out + 1, 1, {"attention_mask": 0})
    2
    >>> def masked(out, inputs):
    ...     return inputs["attention_mask"]
    >>> call_output_fn(masked, 1, {"attention_mask": 0})
    0
    """
    try:
        parameters = inspect.signature(output_fn).parameters
    except (TypeError, ValueError):  # builtins without a signature
        parameters = {}
    if "inputs" in parameters:
        return output_fn(outputs, inputs=inputs)
    return output_fn(outputs)


def output_matrix(outputs, inputs, output_fn=None):
    """All explained outputs of a model's outputs, one row per text: (batch, n).

    Parameters
    ----------
    outputs : object
        The model's outputs for a right-padded batch.
    inputs : dict of str to torch.Tensor
        The batch's model inputs (its ``attention_mask`` locates the last real
        token of each row for causal language models).
    output_fn : callable or None, default=None
        ``output_fn(outputs) -> Tensor of shape (batch, n_outputs)`` (given
        ``inputs=`` too when it has that parameter, see :func:`call_output_fn`);
        None reads the logits: the class logits of a sequence-classification
        head, or the next-token logits at the last real position of a causal LM
        head.

    Returns
    -------
    outputs : torch.Tensor of shape (batch, n_outputs)
        Differentiable when ``outputs`` is.

    Raises
    ------
    ValueError
        When ``output_fn`` returns something else than a 2-D tensor, or the
        outputs have no logits and no ``output_fn`` is given.

    Examples
    --------
    >>> import torch
    >>> from types import SimpleNamespace
    >>> from skconcepts._rerun import output_matrix
    >>> out = SimpleNamespace(logits=torch.arange(12.0).reshape(1, 3, 4))
    >>> mask = torch.tensor([[1, 1, 0]])  # last real token: position 1
    >>> output_matrix(out, {"attention_mask": mask})
    tensor([[4., 5., 6., 7.]])
    """
    if output_fn is not None:
        full = call_output_fn(output_fn, outputs, inputs)
        if not isinstance(full, torch.Tensor) or full.ndim != 2:
            raise ValueError(
                "output_fn must return a tensor of shape (batch, n_outputs), got "
                f"{getattr(full, 'shape', type(full).__name__)}."
            )
        return full
    logits = getattr(outputs, "logits", None)
    if logits is None:
        raise ValueError(
            f"The outputs of this model ({type(outputs).__name__}) have no "
            "logits, e.g. a bare encoder; pass output_fn, e.g. "
            "output_fn=lambda out: out.last_hidden_state[:, 0]."
        )
    if logits.ndim == 3:  # per-position logits (causal LM): last real token
        last = inputs["attention_mask"].sum(dim=1) - 1  # (B,)
        return logits[torch.arange(logits.shape[0], device=logits.device), last]
    return logits  # (B, n_classes)


@contextlib.contextmanager
def head_input(model):
    """Record the input and output of the model's LM head during the block.

    The head is ``model.get_output_embeddings()`` when it is a
    ``torch.nn.Linear``; otherwise nothing is recorded. Used with
    :func:`last_token_logits` to take the next-token logits of a causal LM
    from the head's input at the last real token only, so that a backward
    pass does not run through the logits of every position.

    Parameters
    ----------
    model : torch.nn.Module
        The whole model.

    Yields
    ------
    record : dict
        ``record["input"]`` and ``record["output"]`` of the head's last call
        (empty when the model has no linear head or it did not run).
    """
    get = getattr(model, "get_output_embeddings", None)
    head = get() if callable(get) else None
    record = {}
    if not isinstance(head, torch.nn.Linear):
        yield record
        return

    def hook(mod, args, output):
        record["head"], record["input"], record["output"] = mod, args[0], output

    handle = head.register_forward_hook(hook)
    try:
        yield record
    finally:
        handle.remove()


def last_token_logits(outputs, inputs, record):
    """Next-token logits at the last real token, from the LM head's input.

    Returns ``head(x[b, last_b])`` of shape (batch, vocab) when the model's
    ``logits`` are exactly the recorded head output (the same tensor: no
    post-processing such as soft-capping) of shape (batch, seq, vocab);
    otherwise None. Equal to ``output_matrix(outputs, inputs)`` to float
    rounding, with a graph that only goes through the last positions.

    Parameters
    ----------
    outputs : object
        The model's outputs.
    inputs : dict of str to torch.Tensor
        The batch's right-padded model inputs.
    record : dict
        From :func:`head_input`.

    Returns
    -------
    logits : torch.Tensor of shape (batch, vocab) or None
    """
    logits = getattr(outputs, "logits", None)
    x = record.get("input")
    if (
        logits is None
        or x is None
        or logits.ndim != 3
        or record.get("output") is not logits
        or tuple(x.shape[:2]) != tuple(logits.shape[:2])
    ):
        return None
    head = record["head"]
    last = inputs["attention_mask"].sum(dim=1) - 1  # (B,)
    rows = x[torch.arange(x.shape[0], device=x.device), last]  # (B, d)
    return torch.nn.functional.linear(rows, head.weight, head.bias)


def rerun_options(extractor, *, granularity=None, aggregation=None, batch_size=None):
    """The units and batching of a rerun, with the extractor's defaults, checked.

    Parameters
    ----------
    extractor : SplitPointActivations
        The fitted extractor: ``None`` takes its ``granularity`` and
        ``batch_size``.
    granularity : str or None, default=None
        Units of the result, one of ``GRANULARITIES``.
    aggregation : str or None, default=None
        How token values of a unit combine, one of ``AGGREGATIONS``; ``None``
        is ``"sum"``.
    batch_size : int or None, default=None
        Texts per forward pass.

    Returns
    -------
    granularity, aggregation, batch_size : str, str, int

    Raises
    ------
    ValueError
        Naming the argument, its value and what it may be.

    Examples
    --------
    >>> from types import SimpleNamespace
    >>> from skconcepts._rerun import rerun_options
    >>> rerun_options(SimpleNamespace(granularity="word", batch_size=8))
    ('word', 'sum', 8)
    """
    granularity = extractor.granularity if granularity is None else granularity
    if granularity not in GRANULARITIES:
        raise ValueError(
            f"granularity={granularity!r} is not one of {list(GRANULARITIES)}; "
            "or pass None to use the granularity of the extractor."
        )
    aggregation = "sum" if aggregation is None else aggregation
    if aggregation not in AGGREGATIONS:
        raise ValueError(
            f"aggregation={aggregation!r} is not one of {list(AGGREGATIONS)}."
        )
    batch_size = extractor.batch_size if batch_size is None else batch_size
    if (
        isinstance(batch_size, bool)
        or not isinstance(batch_size, (int, np.integer))
        or batch_size < 1
    ):
        raise ValueError(f"batch_size={batch_size!r} must be an int >= 1 or None.")
    return granularity, aggregation, int(batch_size)
