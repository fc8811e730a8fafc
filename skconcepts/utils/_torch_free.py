"""Type tests that never import torch (``import skconcepts`` must stay fast)."""

import sys


def is_tensor(x) -> bool:
    """Whether ``x`` is a torch tensor; False without importing torch if unused."""
    torch_mod = sys.modules.get("torch")
    return torch_mod is not None and isinstance(x, torch_mod.Tensor)


def is_store(x) -> bool:
    """Whether ``x`` is an :class:`skconcepts.ActivationStore`."""
    store_mod = sys.modules.get("skconcepts.store")
    return store_mod is not None and isinstance(x, store_mod.ActivationStore)
