"""What wrote a store: the identity of the extractor, and its comparison.

The manifest of an activation store records its ``source``: the model
(name, class, a hash of its config and a fingerprint of its weights), the
split point and module, the granularity, the aggregation and the other
parameters that change the values. :func:`_extractor_source` computes it;
:func:`_source_diff` says how two sources differ.
"""

from __future__ import annotations

import hashlib
import json

import numpy as np
import torch

#: parameters of the activations extractor that do not change the values
_RUNTIME_PARAMS = frozenset(
    {
        "batch_size",
        "max_tokens_per_batch",
        "sort_by_length",
        "cache",
        "device",
        "progress",
        "verbose",
        "n_jobs",
    }
)


def _jsonable(value):
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if type(value).__module__ == "torch" and type(value).__name__ == "dtype":
        return str(value).replace("torch.", "")
    if isinstance(value, np.generic):
        return value.item()
    return f"<{type(value).__name__}>"


def _model_identity(extractor) -> dict:
    """Name, class, config hash and a weight fingerprint of the loaded model."""
    params = extractor.get_params(deep=False)
    given = params.get("model")
    model = getattr(extractor, "model_", None)
    if model is None:
        model = given
    info = {"name": given if isinstance(given, str) else None}
    if model is None or isinstance(model, str):
        return info
    info["name"] = info["name"] or getattr(model, "name_or_path", None) or None
    info["class"] = type(model).__name__
    config = getattr(model, "config", None)
    if config is not None:
        conf = {
            k: v
            for k, v in config.to_dict().items()
            if k
            not in ("_name_or_path", "transformers_version", "dtype", "torch_dtype")
        }
        blob = json.dumps(conf, sort_keys=True, default=str).encode()
        info["config_sha256"] = hashlib.sha256(blob).hexdigest()
    named = getattr(model, "named_parameters", None)
    if named is not None:
        h = hashlib.sha256()
        with torch.no_grad():
            for name, p in named():
                h.update(name.encode())
                h.update(str(tuple(p.shape)).encode())
                sample = p.detach().reshape(-1)[:64].to("cpu", torch.float32)
                h.update(sample.numpy().tobytes())
        info["weights_fingerprint"] = h.hexdigest()
    return info


def _extractor_source(extractor) -> dict:
    params = extractor.get_params(deep=False)
    named = ("model", "tokenizer", "split_point", "granularity", "aggregation")
    return {
        "model": _model_identity(extractor),
        "split_point": _jsonable(params.get("split_point")),
        "split_module": getattr(extractor, "split_module_name_", None),
        "granularity": _jsonable(params.get("granularity")),
        "aggregation": _jsonable(params.get("aggregation")),
        "params": {
            k: _jsonable(v)
            for k, v in sorted(params.items())
            if k not in named and k not in _RUNTIME_PARAMS
        },
    }


def _source_diff(stored: dict, current: dict) -> list:
    """What differs between a store's source and an extractor's, as phrases.

    Only what both record is compared: a model known by name on one side and
    by its weights on the other is compared by what they share.
    """
    diffs = []

    def differ(name, a, b):
        if a is not None and b is not None and a != b:
            diffs.append(f"{name} (store: {a!r}, extractor: {b!r})")

    a, b = stored.get("model") or {}, current.get("model") or {}
    for key in ("class", "config_sha256", "weights_fingerprint"):
        differ(f"model {key}", a.get(key), b.get(key))
    if not (a.get("weights_fingerprint") and b.get("weights_fingerprint")):
        differ("model", a.get("name"), b.get("name"))
    if stored.get("split_module") and current.get("split_module"):
        differ("split point", stored["split_module"], current["split_module"])
    else:
        differ("split_point", stored.get("split_point"), current.get("split_point"))
    for key in ("granularity", "aggregation"):
        differ(key, stored.get(key), current.get(key))
    pa, pb = stored.get("params") or {}, current.get("params") or {}
    for key in sorted(set(pa) & set(pb)):
        differ(key, pa[key], pb[key])
    return diffs
