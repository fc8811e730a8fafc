"""Split points: find a model's blocks, stop its forward pass after one, splice in.

A *split point* cuts a transformer ``f`` into ``f = g ∘ h``: ``h`` runs up to and
including one module (usually a block of the model's block list), ``g`` the rest.
This module resolves split points and scopes the forward hooks that read or
replace the output of ``h``; every hook is removed in a ``finally`` clause.

Public helpers (used by :class:`~skconcepts.SplitPointActivations` and by
:func:`~skconcepts.concept_output_gradient`):

- :func:`list_block_names` -- dotted names of the model's blocks, in order;
- :func:`resolve_split_module` -- an int (negative counts from the end) or a
  dotted path to ``(name, module)``;
- :func:`stop_after` -- run a forward pass only up to a module and capture its
  output;
- :func:`replace_output` -- replace a module's output by ``fn(output)``.
"""

from __future__ import annotations

import contextlib
import threading
from numbers import Integral

import torch

from skconcepts.exceptions import SplitPointError

__all__ = [
    "list_block_names",
    "resolve_split_module",
    "resolve_split_modules",
    "stop_after",
    "stop_after_all",
    "replace_output",
    "CapturedOutput",
]

#: last component of the name of a block list, e.g. ``encoder.layer`` (BERT),
#: ``transformer.h`` (GPT-2), ``model.layers`` (Llama, Qwen2), ``gpt_neox.layers``
_BLOCK_LIST_NAMES = ("layer", "layers", "h", "blocks", "block")


def _find_block_list(model: torch.nn.Module) -> tuple[str, torch.nn.ModuleList]:
    """The outermost ``ModuleList`` of blocks, as ``(dotted name, list)``."""
    candidates = []
    for name, module in model.named_modules():
        if not isinstance(module, torch.nn.ModuleList) or len(module) == 0:
            continue
        if name.rsplit(".", 1)[-1] in _BLOCK_LIST_NAMES:
            candidates.append((name.count("."), name, module))
    if not candidates:
        raise SplitPointError(
            f"Could not find the list of blocks of this {type(model).__name__}: "
            f"no torch.nn.ModuleList named one of {list(_BLOCK_LIST_NAMES)}. "
            "Pass split_point as a dotted module path instead, e.g. one of "
            f"{_top_module_names(model)}."
        )
    # the outermost list wins (an encoder's blocks, not a list inside a block);
    # at equal depth the first one in module order (e.g. a T5 encoder)
    depth = min(c[0] for c in candidates)
    _, name, module = next(c for c in candidates if c[0] == depth)
    return name, module


def _top_module_names(model, limit=12):
    names = [n for n, _ in model.named_modules() if n and n.count(".") < 3]
    return names[:limit] + (["..."] if len(names) > limit else [])


def list_block_names(model: torch.nn.Module) -> list[str]:
    """Dotted names of the model's blocks, in forward order.

    The block list is the outermost ``torch.nn.ModuleList`` whose name ends in
    ``layer``, ``layers``, ``h``, ``blocks`` or ``block``: ``encoder.layer``
    (BERT family), ``h`` (GPT-2), ``layers`` (Llama, Qwen2, GPT-NeoX), each
    with its prefix when the model has a head (``bert.encoder.layer``,
    ``transformer.h``, ``model.layers``, ``gpt_neox.layers``).

    Parameters
    ----------
    model : torch.nn.Module
        A transformers model, with or without a head.

    Returns
    -------
    names : list of str
        The block names, e.g. ``["encoder.layer.0", ..., "encoder.layer.5"]``.

    Raises
    ------
    SplitPointError
        If the model has no recognisable block list.

    Examples
    --------
    >>> from skconcepts.datasets import load_embedded_model
    >>> from skconcepts._split import list_block_names
    >>> model, _ = load_embedded_model()
    >>> list_block_names(model)[:2]
    ['encoder.layer.0', 'encoder.layer.1']
    """
    name, blocks = _find_block_list(model)
    return [f"{name}.{i}" if name else str(i) for i in range(len(blocks))]


def resolve_split_module(
    model: torch.nn.Module, split_point
) -> tuple[str, torch.nn.Module]:
    """Resolve a split point to ``(dotted name, module)``.

    Parameters
    ----------
    model : torch.nn.Module
        A transformers model, with or without a head.
    split_point : int or str
        An int is an index into the block list (see :func:`list_block_names`);
        negative ints count from the end (``-1`` is the last block). A str is a
        dotted module path such as ``"encoder.layer.3"`` or
        ``"encoder.layer.3.attention"``.

    Returns
    -------
    name : str
        The dotted name of the module.
    module : torch.nn.Module
        The module whose output is the split point.

    Raises
    ------
    SplitPointError
        (a ``ValueError``) if the index is out of range or the path names no
        module; the message lists the valid choices.

    Examples
    --------
    >>> from skconcepts.datasets import load_embedded_model
    >>> from skconcepts._split import resolve_split_module
    >>> model, _ = load_embedded_model()
    >>> resolve_split_module(model, -1)[0]
    'encoder.layer.5'
    """
    if isinstance(split_point, Integral) and not isinstance(split_point, bool):
        names = list_block_names(model)
        n = len(names)
        index = int(split_point)
        if not -n <= index < n:
            raise SplitPointError(
                f"split_point={split_point!r} is out of range: this "
                f"{type(model).__name__} has {n} blocks; use an int in "
                f"[{-n}, {n - 1}] or one of the block names {names}."
            )
        name = names[index % n]
        return name, model.get_submodule(name)
    if isinstance(split_point, str):
        try:
            module = model.get_submodule(split_point) if split_point else None
        except AttributeError:
            module = None
        if not isinstance(module, torch.nn.Module):
            raise SplitPointError(
                f"split_point={split_point!r} names no module of this "
                f"{type(model).__name__}; use a block index (an int) or one of "
                f"the block names {_block_names_or_empty(model)}, or another "
                f"dotted module path such as {_top_module_names(model)}."
            )
        return split_point, module
    raise SplitPointError(
        f"split_point={split_point!r} must be an int (a block index) or a str "
        f"(a dotted module path), got {type(split_point).__name__}; valid block "
        f"names: {_block_names_or_empty(model)}."
    )


def resolve_split_modules(model: torch.nn.Module, split_points) -> list:
    """Resolve several split points to ``[(dotted name, module), ...]``.

    Parameters
    ----------
    model : torch.nn.Module
        A transformers model, with or without a head.
    split_points : list of int or str
        Split points as :func:`resolve_split_module` takes them, at least one,
        each naming a different module (``3`` and ``-3`` of a six-block model,
        or ``3`` and ``"encoder.layer.3"``, are the same module: refused).

    Returns
    -------
    resolved : list of (str, torch.nn.Module)
        One pair per split point, in the order given.

    Raises
    ------
    SplitPointError
        (a ``ValueError``) for an empty list, a wrong element (the message
        names its position and lists the valid choices) or a duplicate.

    Examples
    --------
    >>> from skconcepts.datasets import load_embedded_model
    >>> from skconcepts._split import resolve_split_modules
    >>> model, _ = load_embedded_model()
    >>> [name for name, _ in resolve_split_modules(model, [1, "encoder.layer.3"])]
    ['encoder.layer.1', 'encoder.layer.3']
    """
    if isinstance(split_points, (str, bytes)) or not hasattr(split_points, "__iter__"):
        raise SplitPointError(
            f"split_points={split_points!r} must be a list of split points "
            "(ints or dotted module paths), e.g. split_points=[1, 3, 5]."
        )
    split_points = list(split_points)
    if not split_points:
        raise SplitPointError(
            "split_points=[] is empty; give at least one split point, e.g. "
            "split_points=[1, 3, 5]."
        )
    resolved, seen = [], {}
    for i, point in enumerate(split_points):
        try:
            name, module = resolve_split_module(model, point)
        except SplitPointError as exc:
            raise SplitPointError(f"split_points[{i}]: {exc}") from None
        if name in seen:
            j = seen[name]
            raise SplitPointError(
                f"split_points={split_points!r} names the module {name!r} twice "
                f"(split_points[{j}]={split_points[j]!r} and "
                f"split_points[{i}]={point!r}); give each split point once."
            )
        seen[name] = i
        resolved.append((name, module))
    return resolved


@contextlib.contextmanager
def stop_after_all(modules):
    """Capture the outputs of several modules; stop once all have run.

    The several-module version of :func:`stop_after`: each module's first
    output (element 0 of a tuple) is stored, and the forward pass ends right
    after the last of them to run (the deepest), so no later module runs.

    Parameters
    ----------
    modules : list of torch.nn.Module
        Distinct modules of one model.

    Yields
    ------
    captured : list of CapturedOutput
        One holder per module, in the order given; read after the block.

    Examples
    --------
    >>> import torch
    >>> from skconcepts._split import stop_after_all
    >>> net = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.ReLU(),
    ...                           torch.nn.Linear(4, 2))
    >>> with stop_after_all([net[1], net[0]]) as captured:
    ...     net(torch.ones(2, 3))
    >>> [tuple(c.output.shape) for c in captured]
    [(2, 4), (2, 4)]
    """
    captured = [CapturedOutput() for _ in modules]
    thread = threading.get_ident()
    remaining = [len(captured)]

    def make_hook(holder):
        def hook(mod, args, output):
            if threading.get_ident() != thread or holder.output is not None:
                return None
            holder.output = _first(output)
            remaining[0] -= 1
            if remaining[0] == 0:
                raise _StopForward
            return None

        return hook

    handles = [m.register_forward_hook(make_hook(c)) for m, c in zip(modules, captured)]
    try:
        yield captured
    except _StopForward:
        pass
    finally:
        for handle in handles:
            handle.remove()


def _block_names_or_empty(model):
    try:
        return list_block_names(model)
    except SplitPointError:
        return []


def _first(output):
    """Element 0 of a tuple output (hidden states), else the output itself."""
    return output[0] if isinstance(output, (tuple, list)) else output


class _StopForward(Exception):
    """Raised by the hook of :func:`stop_after` to end the forward pass early."""


class CapturedOutput:
    """Holder of the output captured by :func:`stop_after`.

    Attributes
    ----------
    output : torch.Tensor or None
        The module's output (element 0 when it returns a tuple), or ``None``
        while the module has not run.
    """

    def __init__(self):
        self.output = None


@contextlib.contextmanager
def stop_after(module: torch.nn.Module):
    """Stop forward passes right after ``module`` and capture its output.

    Inside the ``with`` block, the first call of ``module`` stores its output
    (element 0 when it returns a tuple) and ends the forward pass of the
    enclosing model: nothing after ``module`` runs. Only forward passes of
    the thread that entered the block are affected. The ``with`` statement
    swallows that early exit, so code placed after the model call inside the
    block does not run; read the capture after the block. The hook is removed
    when the block ends, whatever happens.

    Parameters
    ----------
    module : torch.nn.Module
        The split module, e.g. from :func:`resolve_split_module`.

    Yields
    ------
    captured : CapturedOutput
        ``captured.output`` holds the output once the block has ended; it is
        ``None`` if ``module`` never ran.

    Examples
    --------
    >>> import torch
    >>> from skconcepts._split import stop_after
    >>> net = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.ReLU())
    >>> with stop_after(net[0]) as captured:
    ...     net(torch.ones(2, 3))
    >>> captured.output.shape
    torch.Size([2, 4])
    """
    captured = CapturedOutput()
    thread = threading.get_ident()

    def hook(mod, args, output):
        if threading.get_ident() != thread:  # another thread's forward pass
            return None
        captured.output = _first(output)
        raise _StopForward

    handle = module.register_forward_hook(hook)
    try:
        yield captured
    except _StopForward:
        pass
    finally:
        handle.remove()


@contextlib.contextmanager
def replace_output(module: torch.nn.Module, fn):
    """Replace the output of ``module`` by ``fn(output)`` inside the block.

    When ``module`` returns a tuple, only element 0 (the hidden states) goes
    through ``fn``; the other elements are kept. Only forward passes of the
    thread that entered the block are affected. The hook is removed when the
    block ends, whatever happens.

    Parameters
    ----------
    module : torch.nn.Module
        The split module.
    fn : callable
        Maps the output tensor (e.g. ``(batch, seq, d)``) to the tensor used in
        its place, with the same shape (e.g. a decoder output plus a
        residual).

    Yields
    ------
    module : torch.nn.Module
        The module, with the hook in place.

    Examples
    --------
    >>> import torch
    >>> from skconcepts._split import replace_output
    >>> net = torch.nn.Sequential(torch.nn.Identity(), torch.nn.ReLU())
    >>> with replace_output(net[0], lambda h: h - 1):
    ...     out = net(torch.ones(1, 2))
    >>> out
    tensor([[0., 0.]])
    """

    thread = threading.get_ident()

    def hook(mod, args, output):
        if threading.get_ident() != thread:  # another thread's forward pass
            return None
        if isinstance(output, tuple):
            return (fn(output[0]), *output[1:])
        if isinstance(output, list):
            return [fn(output[0]), *output[1:]]
        return fn(output)

    handle = module.register_forward_hook(hook)
    try:
        yield module
    finally:
        handle.remove()
