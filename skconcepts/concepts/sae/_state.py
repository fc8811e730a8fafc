"""The fitted net of an SAE as numpy arrays and builtins, and back.

:mod:`skconcepts.io` saves pipelines with skops, which stores data and the
names of a few trusted types, never code: it cannot store a skorch net, torch
modules, tensors or optimizers. :func:`export_net` turns the fitted ``net_``
into plain data (numpy arrays, str, int, float, bool, None, lists, tuples and
dicts) that holds everything a bitwise-equal ``transform`` and the continued
training need:

- ``module``: the keyword arguments the module was built with;
- ``parameters``: the module's ``state_dict`` (parameters and buffers);
- ``attributes``: the plain tensor attributes overcomplete keeps outside the
  ``state_dict`` (BatchTopK's running threshold, the fused eval dictionary,
  JumpSAE's bandwidth), by ``"<submodule>.<name>"``;
- ``optimizer``: the optimizer's ``state_dict`` (moments, step counts,
  parameter groups), its tensors as numpy arrays;
- ``history``: skorch's history, as a JSON string;
- ``shuffle_state``: the state of the ``RandomState`` that shuffles the rows
  of each pass, so a continued ``partial_fit`` shuffles as it would have;
- ``n_passes`` and ``device``.

:func:`import_net` loads such data into a net freshly built from the same
module arguments.
"""

from __future__ import annotations

import json

import numpy as np
import torch
from skorch.history import History

from skconcepts.utils._torch import to_numpy

#: keys of the exported net state (a loaded state must have exactly these)
NET_STATE_KEYS = frozenset(
    {
        "module",
        "parameters",
        "attributes",
        "optimizer",
        "history",
        "shuffle_state",
        "n_passes",
        "device",
    }
)


def _to_data(value):
    """``value`` with every tensor as a numpy array (recursively)."""
    if isinstance(value, torch.Tensor):
        return np.array(to_numpy(value.detach()))
    if isinstance(value, dict):
        return {key: _to_data(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_to_data(item) for item in value)
    return value


def _to_tensors(value):
    """Inverse of :func:`_to_data`: every numpy array as a CPU tensor."""
    if isinstance(value, np.ndarray):
        return torch.from_numpy(np.array(value))
    if isinstance(value, dict):
        return {key: _to_tensors(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_to_tensors(item) for item in value)
    return value


def _json_default(value):
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def _plain_attributes(module):
    """The tensors a module keeps as plain attributes, by ``"<sub>.<name>"``."""
    found = {}
    for prefix, sub in module.named_modules():
        for name, value in vars(sub).items():
            if isinstance(value, torch.Tensor):
                found[f"{prefix}.{name}"] = value
    return found


def export_net(net):
    """The fitted state of an SAE's skorch ``net`` as numpy arrays and builtins.

    Parameters
    ----------
    net : skconcepts.concepts.sae._net._SAENet
        An initialised (usually trained) net.

    Returns
    -------
    state : dict
        See the module docstring; skops stores it with trusted types only.
    """
    module = net.module_
    shuffle = net.get_params_for("iterator_train").get("random_state")
    return {
        "module": _to_data(net.get_params_for("module")),
        "parameters": _to_data(dict(module.state_dict())),
        "attributes": _to_data(_plain_attributes(module)),
        "optimizer": _to_data(net.optimizer_.state_dict()),
        "history": json.dumps(list(net.history), default=_json_default),
        "shuffle_state": (
            None
            if not isinstance(shuffle, np.random.RandomState)
            else list(shuffle.get_state())
        ),
        "n_passes": int(net.max_epochs),
        "device": str(net.device),
    }


def import_net(net, state):
    """Load ``state`` (from :func:`export_net`) into a freshly built ``net``.

    Parameters
    ----------
    net : skconcepts.concepts.sae._net._SAENet
        A net initialised with the module arguments ``state["module"]``.
    state : dict
        The exported state.

    Returns
    -------
    net : skconcepts.concepts.sae._net._SAENet
        The net, in evaluation mode, as it was when exported.
    """
    module = net.module_
    parameters = _to_tensors(state["parameters"])
    module.load_state_dict(parameters, strict=True)
    module.eval()  # fuses the eval dictionary (and renormalises the weights)
    module.load_state_dict(parameters, strict=True)  # the exact saved weights
    subs = dict(module.named_modules())
    for key, value in _to_tensors(state["attributes"]).items():
        prefix, _, name = key.rpartition(".")
        if prefix not in subs:
            raise ValueError(f"the saved attribute {key!r} names no submodule")
        setattr(subs[prefix], name, value)
    module._sync_device()
    net.optimizer_.load_state_dict(_to_tensors(state["optimizer"]))
    net.history = History(json.loads(state["history"]))
    return net
