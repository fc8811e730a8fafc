"""Concept interventions: rerun the model with concept activations edited.

The model is split at the extractor's split point, ``f = g ∘ h``. The split
output of every token is encoded into concepts ``C = t(h)``, edited
(``C' = edit(C)``: set, scale, add, or ablate chosen concepts on chosen units),
decoded back and the reconstruction residual kept, ``h' = t⁻¹(C') + (h −
t⁻¹(C))``, and the forward pass continues: ``g(h')``. With no edit ``h' = h``
and the outputs are the model's own. This is the model rerun of
:func:`~skconcepts.concept_output_gradient`, with the concepts changed instead
of differentiated.

- :func:`concept_intervention` -- the model's outputs before and after edits;
- :func:`concept_ablation_effect` -- the output each concept contributes: the
  outputs minus the outputs with that concept ablated, one rerun per concept
  (the exact counterpart of gradient × input, its first-order approximation).
"""

from __future__ import annotations

from collections.abc import Mapping
from numbers import Integral, Real
from typing import NamedTuple

import numpy as np
import torch

from skconcepts._granularity import unit_index
from skconcepts._pipeline import split_pipeline, torch_codec
from skconcepts._rerun import (
    ConceptSplice,
    check_targets,
    frozen_model,
    model_dtype,
    model_inputs,
    output_matrix,
    rerun,
    rerun_options,
    select_outputs,
)
from skconcepts.utils._progress import progress_bar
from skconcepts.utils._torch import resolve_device
from skconcepts.utils._validation import check_concept_indices, check_texts

__all__ = ["InterventionResult", "concept_intervention", "concept_ablation_effect"]

EDIT_OPS = ("set", "scale", "add", "zero", "mean")
_EDIT_KEYS = ("concepts", "op", "value", "units")


class InterventionResult(NamedTuple):
    """The model's outputs before and after a concept intervention.

    Attributes
    ----------
    before : torch.Tensor of shape (n_texts, n_outputs)
        The outputs of the unedited model (its own forward pass).
    after : torch.Tensor of shape (n_texts, n_outputs)
        The outputs of the rerun with the concepts edited.
    """

    before: torch.Tensor
    after: torch.Tensor

    @property
    def change(self):
        """``after - before``, of shape (n_texts, n_outputs)."""
        return self.after - self.before


def concept_intervention(
    pipeline,
    texts,
    edits,
    *,
    targets=None,
    output_fn=None,
    granularity=None,
    concept_means=None,
    batch_size=None,
    device=None,
    progress=None,
):
    """The model's outputs before and after editing concept activations.

    The model is rerun from the split point of the pipeline's extractor: the
    split output of every token is encoded into concepts, the ``edits`` are
    applied, the edited concepts are decoded and the reconstruction residual
    is added back (so that the part of the activations the concepts do not
    explain is kept), and the forward pass continues to the outputs. With no
    edit (``edits=[]``) the rerun reproduces the model's outputs.

    Parameters
    ----------
    pipeline : Pipeline
        A fitted pipeline that starts with a
        :class:`~skconcepts.SplitPointActivations` (the model, split point and
        tokenization), then optional preprocessing steps, then a concept
        estimator whose ``decoder_torch`` decodes the concepts.
    texts : list of str
        The texts.
    edits : dict or list of dict
        The edits, applied in order. Each is a dict with the keys

        - ``"concepts"``: an int or a list of ints, the concepts to edit;
        - ``"op"``: ``"set"`` (to ``value``), ``"scale"`` (multiply by
          ``value``), ``"add"`` (``value``), ``"zero"`` (ablate: set to 0) or
          ``"mean"`` (ablate: set to the concept's mean, see
          ``concept_means``);
        - ``"value"``: a float, for ``"set"``, ``"scale"`` and ``"add"``;
        - ``"units"`` (optional): the indices of the units of each text to edit
          at ``granularity`` (e.g. ``[0]``: the first word); absent or None
          edits every token of the text that the extractor reads (special
          tokens excluded when the extractor excludes them).
    targets : int, array-like of int or None, default=None
        Output columns to return (an int, a 1-D sequence for all texts, or one
        row per text); None returns all: every class logit of a
        sequence-classification head, every next-token logit at the last
        real token of a causal LM, every column of ``output_fn``.
    output_fn : callable or None, default=None
        ``output_fn(model_outputs) -> Tensor of shape (batch, n_outputs)`` for
        other heads, e.g. ``lambda out: out.last_hidden_state[:, 0] @ w`` for
        a bare encoder. It receives the model's output object for a
        right-padded batch.
    granularity : str or None, default=None
        The units that ``"units"`` indexes; None takes the extractor's.
    concept_means : array-like of shape (n_concepts,) or None, default=None
        The values of ``"mean"`` ablations; None takes the mean activation of
        each concept over the tokens of ``texts`` that the extractor reads.
    batch_size : int or None, default=None
        Texts per forward pass; None takes the extractor's.
    device : str, torch.device or None, default=None
        Where to compute; None is the extractor's device.
    progress : bool or None, default=None
        Show a progress bar over the batches (None: only on a terminal or in a
        notebook).

    Returns
    -------
    result : InterventionResult
        ``result.before`` and ``result.after``, CPU tensors of shape
        (n_texts, n_outputs); ``result.change`` is their difference.

    Raises
    ------
    ValueError
        When an edit names a concept that does not exist, an unknown ``op``,
        lacks a ``value`` it needs, or names a unit a text does not have.
    TypeError
        When ``edits`` is not a dict or a list of dicts.

    See Also
    --------
    concept_ablation_effect : the contribution of every concept, by ablation.
    skconcepts.concept_output_gradient : its gradient.

    Examples
    --------
    >>> from sklearn.pipeline import make_pipeline
    >>> from skconcepts import SplitPointActivations, PCAConcepts
    >>> from skconcepts import concept_intervention
    >>> from skconcepts.utils._testing import make_tiny_model
    >>> model, tokenizer = make_tiny_model("bert", head="seq_cls")
    >>> texts = ["A fine day.", "The soup was cold.", "We lost the match."]
    >>> pipe = make_pipeline(
    ...     SplitPointActivations(model, tokenizer=tokenizer, split_point=1),
    ...     PCAConcepts(n_concepts=3),
    ... ).fit(texts)
    >>> res = concept_intervention(pipe, texts, {"concepts": 0, "op": "zero"})
    >>> res.before.shape, res.after.shape  # 3 texts, 2 class logits
    (torch.Size([3, 2]), torch.Size([3, 2]))
    >>> bool((res.after != res.before).any())
    True
    >>> res = concept_intervention(pipe, texts, [])  # no edit: the model itself
    >>> bool(res.change.abs().max() < 1e-4)
    True
    """
    ctx = _Context(pipeline, texts, output_fn, granularity, batch_size, device)
    edits = _check_edits(edits, ctx.n_concepts)
    targets = check_targets(targets, len(ctx.texts))
    needs_means = any(e["op"] == "mean" for e in edits)
    means = _check_means(concept_means, ctx.n_concepts) if needs_means else None
    before, after = [], []
    with frozen_model(ctx.model, ctx.device), torch.no_grad():
        batches = ctx.batches(progress, "concept_intervention")
        if needs_means and means is None:
            batches = list(batches)
            means = _concept_means(ctx, batches)
        for start, encodings, inputs, masks in batches:
            rows = None if targets is None else targets[start : start + len(masks)]
            out = ctx.forward(inputs)
            before.append(_select(out, inputs, rows, output_fn))
            edit = _edit_fn(edits, ctx, encodings, masks, means, start)
            out = ctx.forward(inputs, edit=edit)
            after.append(_select(out, inputs, rows, output_fn))
    return InterventionResult(_cat(before), _cat(after))


def concept_ablation_effect(
    pipeline,
    texts,
    *,
    concepts=None,
    ablation="zero",
    targets=None,
    output_fn=None,
    concept_means=None,
    batch_size=None,
    device=None,
    progress=None,
):
    """What each concept contributes to the outputs, by ablation.

    For every concept ``i``, the model is rerun with concept ``i`` ablated
    (set to zero, or to its mean) on every token of the text that the
    extractor reads, the residual kept, as in :func:`concept_intervention`;
    the effect is the outputs minus the ablated outputs. It is the exact
    counterpart of gradient × input summed over the text
    (``concept_output_gradient(..., granularity="sample",
    normalization=False)``), which is its first-order approximation for zero
    ablation: both are positive when the concept pushes the output up.

    Parameters
    ----------
    pipeline : Pipeline
        A fitted pipeline starting with a
        :class:`~skconcepts.SplitPointActivations` and ending in a concept
        estimator (see :func:`concept_intervention`).
    texts : list of str
        The texts.
    concepts : int, list of int or None, default=None
        The concepts to ablate, one rerun each; None: all.
    ablation : {"zero", "mean"}, default="zero"
        Set the concept to zero, or to its mean (``concept_means``).
    targets : int, array-like of int or None, default=None
        The outputs explained, as in
        :func:`~skconcepts.concept_output_gradient`: class logits (None: all),
        next-token logits of a causal LM at the last real token (None: the
        most likely next token of each text), or columns of ``output_fn``
        (None: all).
    output_fn : callable or None, default=None
        ``output_fn(model_outputs) -> Tensor of shape (batch, n_outputs)`` for
        other heads.
    concept_means : array-like of shape (n_concepts,) or None, default=None
        The values of ``"mean"`` ablation; None takes the mean of each concept
        over the tokens of ``texts`` that the extractor reads.
    batch_size : int or None, default=None
        Texts per forward pass; None takes the extractor's.
    device : str, torch.device or None, default=None
        Where to compute; None is the extractor's device.
    progress : bool or None, default=None
        Show a progress bar over the batches.

    Returns
    -------
    effects : list of torch.Tensor
        One CPU tensor per text of shape (t, c): t outputs, c ablated concepts;
        ``effects[n][j, i] = Y_j(text n) − Y_j(text n, concept i ablated)``.

    Raises
    ------
    ValueError
        When ``concepts`` names a concept that does not exist, or
        ``ablation`` is unknown.

    Examples
    --------
    >>> from sklearn.pipeline import make_pipeline
    >>> from skconcepts import SplitPointActivations, PCAConcepts
    >>> from skconcepts import concept_ablation_effect
    >>> from skconcepts.utils._testing import make_tiny_model
    >>> model, tokenizer = make_tiny_model("bert", head="seq_cls")
    >>> texts = ["A fine day.", "The soup was cold.", "We lost the match."]
    >>> pipe = make_pipeline(
    ...     SplitPointActivations(model, tokenizer=tokenizer, split_point=1),
    ...     PCAConcepts(n_concepts=3),
    ... ).fit(texts)
    >>> effects = concept_ablation_effect(pipe, texts)
    >>> effects[0].shape  # 2 class logits, 3 concepts
    torch.Size([2, 3])
    """
    if ablation not in ("zero", "mean"):
        raise ValueError(
            f"ablation={ablation!r} is not one of ['zero', 'mean']: set the "
            "concept to zero or to its mean."
        )
    ctx = _Context(pipeline, texts, output_fn, None, batch_size, device)
    chosen = check_concept_indices(concepts, ctx.n_concepts, "concepts")
    targets = check_targets(targets, len(ctx.texts))
    means = None
    if ablation == "mean":
        means = _check_means(concept_means, ctx.n_concepts)
    results = []
    with frozen_model(ctx.model, ctx.device), torch.no_grad():
        batches = ctx.batches(progress, "concept_ablation_effect")
        if ablation == "mean" and means is None:
            batches = list(batches)
            means = _concept_means(ctx, batches)
        for start, encodings, inputs, masks in batches:
            rows = None if targets is None else targets[start : start + len(masks)]
            out = ctx.forward(inputs)
            base = select_outputs(out, inputs, rows, output_fn)  # (B, t)
            if rows is None:  # keep the default targets (e.g. argmax) fixed
                rows = _default_targets(out, inputs, output_fn, base)
            effects = []
            for i in chosen:
                edit = _edit_fn(
                    [{"concepts": [i], "op": ablation, "value": None, "units": None}],
                    ctx,
                    encodings,
                    masks,
                    means,
                    start,
                )
                out = ctx.forward(inputs, edit=edit)
                effects.append(base - select_outputs(out, inputs, rows, output_fn))
            stacked = torch.stack(effects, dim=-1)  # (B, t, c)
            results.extend(_cpu(stacked[b]) for b in range(stacked.shape[0]))
    return results


# ------------------------------------------------------------------ helpers
class _Context:
    """The parts of one call: model, split module, codec, batching."""

    def __init__(self, pipeline, texts, output_fn, granularity, batch_size, device):
        self.texts = check_texts(texts, name="texts")
        parts = split_pipeline(pipeline, require_extractor=True)
        self.extractor = extractor = parts.extractor
        self.granularity, _, self.batch_size = rerun_options(
            extractor, granularity=granularity, batch_size=batch_size
        )
        if output_fn is not None and not callable(output_fn):
            raise TypeError(
                "output_fn must be a callable (model outputs -> (batch, n_outputs) "
                f"tensor) or None, got {type(output_fn).__name__}."
            )
        self.model = extractor.model_
        self.module = self.model.get_submodule(extractor.split_module_name_)
        self.device = extractor.device_ if device is None else resolve_device(device)
        self.encode, self.decode = torch_codec(
            parts, self.device, model_dtype(self.model)
        )
        self.n_concepts = _n_concepts(parts.concepts)

    def batches(self, progress, desc):
        """``(start, encodings, inputs, masks)`` per batch; masks: read tokens."""
        starts = range(0, len(self.texts), self.batch_size)
        for start in progress_bar(starts, progress=progress, desc=desc, unit="batch"):
            chunk = self.texts[start : start + self.batch_size]
            encodings, inputs = model_inputs(
                self.extractor, chunk, self.device, start=start
            )
            masks = [
                self._read_tokens(text, enc) for text, enc in zip(chunk, encodings)
            ]
            yield start, encodings, inputs, masks

    def _read_tokens(self, text, enc):
        ids, _ = unit_index(
            "token",
            text,
            enc.offsets,
            enc.special_tokens_mask,
            enc.word_ids,
            exclude_special_tokens=self.extractor.exclude_special_tokens,
        )
        return ids >= 0  # (L,) bool

    def units(self, text, enc):
        return unit_index(
            self.granularity,
            text,
            enc.offsets,
            enc.special_tokens_mask,
            enc.word_ids,
            exclude_special_tokens=self.extractor.exclude_special_tokens,
        )[0]

    def forward(self, inputs, edit=None):
        """The model's outputs; with ``edit``, the concept-edited rerun."""
        if edit is None:
            return self.model(**inputs, use_cache=False)
        splice = ConceptSplice(self.encode, self.decode, edit=edit)
        return rerun(self.model, self.module, inputs, splice, use_cache=False)

    def codes(self, inputs):
        """Concept activations of every token of the batch: (B, T, k)."""
        captured = {}

        def keep(h):
            captured["h"] = h
            return h

        rerun(self.model, self.module, inputs, keep, use_cache=False)
        return self.encode(captured["h"])


def _n_concepts(estimator):
    return int(np.asarray(estimator.components_).shape[0])


def _check_edits(edits, n_concepts):
    if isinstance(edits, Mapping):
        edits = [edits]
    if not isinstance(edits, (list, tuple)) or not all(
        isinstance(e, Mapping) for e in edits
    ):
        raise TypeError(
            f"edits must be a dict or a list of dicts such as "
            f"{{'concepts': 0, 'op': 'zero'}}, got {type(edits).__name__}."
        )
    checked = []
    for n, edit in enumerate(edits):
        where = f"edits[{n}]"
        unknown = sorted(set(edit) - set(_EDIT_KEYS))
        if unknown:
            raise ValueError(
                f"{where} has unknown keys {unknown}; the keys are {list(_EDIT_KEYS)}."
            )
        if "concepts" not in edit:
            raise ValueError(f"{where} has no 'concepts': name the concepts to edit.")
        concepts = check_concept_indices(
            edit["concepts"], n_concepts, f"{where}['concepts']"
        )
        op = edit.get("op")
        if op not in EDIT_OPS:
            raise ValueError(f"{where}['op']={op!r} is not one of {list(EDIT_OPS)}.")
        value = edit.get("value")
        if op in ("set", "scale", "add"):
            if not isinstance(value, Real) or isinstance(value, bool):
                raise ValueError(
                    f"{where} with op={op!r} needs a number as 'value', got {value!r}."
                )
        elif value is not None:
            raise ValueError(
                f"{where} with op={op!r} takes no 'value' (got {value!r}); use "
                "op='set' to set a value."
            )
        units = edit.get("units")
        if units is not None:
            units = [units] if np.ndim(units) == 0 else list(np.asarray(units))
            if not units or not all(
                isinstance(u, (Integral, np.integer)) and int(u) >= 0 for u in units
            ):
                raise ValueError(
                    f"{where}['units']={edit['units']!r} must be None or a "
                    "non-empty list of unit indices >= 0."
                )
            units = [int(u) for u in units]
        checked.append({"concepts": concepts, "op": op, "value": value, "units": units})
    return checked


def _check_means(concept_means, n_concepts):
    if concept_means is None:
        return None
    means = np.asarray(concept_means, dtype=np.float64).reshape(-1)
    if means.shape != (n_concepts,) or not np.all(np.isfinite(means)):
        raise ValueError(
            f"concept_means has shape {np.shape(concept_means)}; pass {n_concepts} "
            "finite values, one per concept, or None."
        )
    return means


def _concept_means(ctx, batches):
    """Mean activation of each concept over the read tokens of all texts."""
    total, count = None, 0
    for _, _, inputs, masks in batches:
        codes = ctx.codes(inputs)  # (B, T, k)
        for b, mask in enumerate(masks):
            rows = codes[b, : len(mask)][mask.to(codes.device)]  # (n, k)
            part = rows.double().sum(dim=0)
            total = part if total is None else total + part
            count += rows.shape[0]
    if not count:
        raise ValueError(
            "The texts have no token the extractor reads, so the concept means "
            "are undefined; pass concept_means."
        )
    return (total / count).cpu().numpy()


def _edit_fn(edits, ctx, encodings, masks, means, start):
    """``edit(C)`` for one batch: the edits applied in order to (B, T, k)."""
    plans = []
    for n, edit in enumerate(edits):
        width = max(len(m) for m in masks)
        tokens = torch.zeros(len(masks), width, dtype=torch.bool)  # (B, T)
        for b, (mask, enc) in enumerate(zip(masks, encodings)):
            if edit["units"] is None:
                tokens[b, : len(mask)] = mask
                continue
            text = ctx.texts[start + b]
            ids = ctx.units(text, enc)  # (L,)
            n_units = int(ids.max()) + 1 if len(ids) else 0
            missing = [u for u in edit["units"] if u >= n_units]
            if missing:
                raise ValueError(
                    f"edits[{n}]['units'] names unit {missing[0]}, but "
                    f"texts[{start + b}] has {n_units} units at granularity="
                    f"{ctx.granularity!r}; use indices in [0, {n_units - 1}]."
                )
            tokens[b, : len(ids)] = torch.isin(ids, torch.tensor(edit["units"]))
        plans.append((edit, tokens))

    def edit_codes(C):  # C: (B, T, k) -> edited copy
        out = C.clone()
        for edit, tokens in plans:
            idx = torch.tensor(edit["concepts"], device=C.device)
            sel = out[..., idx]  # (B, T, m)
            op, value = edit["op"], edit["value"]
            if op == "set":
                new = torch.full_like(sel, value)
            elif op == "scale":
                new = sel * value
            elif op == "add":
                new = sel + value
            elif op == "zero":
                new = torch.zeros_like(sel)
            else:  # mean
                mu = torch.as_tensor(means[edit["concepts"]], dtype=C.dtype)
                new = mu.to(C.device).expand_as(sel)
            where = tokens.to(C.device)[..., None]  # (B, T, 1)
            out[..., idx] = torch.where(where, new, sel)
        return out

    return edit_codes


def _select(outputs, inputs, rows, output_fn):
    if rows is None:
        return output_matrix(outputs, inputs, output_fn)
    return select_outputs(outputs, inputs, rows, output_fn)


def _default_targets(outputs, inputs, output_fn, base):
    """The column indices ``select_outputs`` chose for ``base``: (B, t)."""
    full = output_matrix(outputs, inputs, output_fn)  # (B, n)
    if full.shape[1] == base.shape[1] and torch.equal(full, base):
        return np.broadcast_to(np.arange(full.shape[1]), base.shape).copy()
    return full.argmax(dim=1, keepdim=True).cpu().numpy()  # causal LM default


def _cpu(x):
    dtype = torch.float64 if x.dtype == torch.float64 else torch.float32
    return x.detach().to(device="cpu", dtype=dtype).contiguous()


def _cat(parts):
    return _cpu(torch.cat(parts)) if parts else torch.zeros(0, 0)
