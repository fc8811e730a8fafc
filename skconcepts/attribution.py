"""Concept-to-output attribution: how much each concept moves a model output.

The model is split at the ``SplitPointActivations`` split point, ``f = g ∘ h``.
With ``t`` the concept encoder (preprocessing, then the concept estimator's
``transform``) and ``t⁻¹`` its differentiable decoder, the model is rerun as
``g(t⁻¹(C) + r)`` where ``r = h(X) − t⁻¹(t(h(X)))`` is the reconstruction
residual, held constant: at ``C = t(h(X))`` the rerun gives exactly the original
outputs, and its gradient with respect to ``C`` says what each concept does.
"""

from __future__ import annotations

import contextlib
import warnings

import numpy as np
import pandas as pd
import torch
from torch.nn.attention import SDPBackend, sdpa_kernel

from skconcepts._granularity import aggregate, unit_index
from skconcepts._pipeline import encode, split_pipeline, torch_codec
from skconcepts._rerun import (
    ConceptSplice,
    check_targets,
    frozen_model,
    head_input,
    last_token_logits,
    model_dtype,
    model_inputs,
    rerun,
    rerun_options,
    select_outputs,
)
from skconcepts._split import replace_output, stop_after
from skconcepts.utils._progress import progress_bar
from skconcepts.utils._torch import resolve_device
from skconcepts.utils._validation import (
    check_concept_indices,
    check_is_fitted,
    check_texts,
)

__all__ = ["concept_output_gradient"]


def concept_output_gradient(
    inputs,
    *,
    extractor=None,
    concepts,
    targets=None,
    granularity=None,
    aggregation=None,
    concepts_x_gradients=True,
    normalization=True,
    batch_size=None,
    device=None,
    progress=None,
    output_fn=None,
    activations=None,
):
    """Gradient of model outputs with respect to the concepts, per unit of each text.

    The model of ``extractor`` is rerun from its split point: the forward pass
    reaches the split module, the split output ``h`` of every token position is
    encoded into concepts ``C = t(h)`` with the estimator's public ``transform``
    (no gradient), replaced by ``t⁻¹(C) + r`` with the constant residual
    ``r = h − t⁻¹(t(h))`` (so the outputs are exactly the original ones), and
    the forward pass continues to the outputs. The target outputs are then
    back-propagated to ``C`` with :func:`torch.autograd.grad`, all targets of
    a batch over one forward graph (one forward pass per batch, not per
    target): on the CPU one backward pass per target, on an accelerator one
    backward pass vectorised over the targets.

    Concepts are encoded per token because the estimator was fitted on token
    rows. The token-level values (gradients, or concept activations times
    gradients) are then aggregated to the units of ``granularity`` with
    ``aggregation``, by default a sum: summed gradient × input values keep their
    total over the text, and the summed gradient is the derivative with respect
    to a shift of the concept on every token of the unit.

    Parameters
    ----------
    inputs : list of str
        The texts.
    extractor : SplitPointActivations
        The fitted activation extractor the concepts were learned on: its model
        (``model_``, with the head whose outputs are attributed), tokenizer,
        split point, truncation, special-token rule and (by default) its
        granularity are used.
    concepts : concept estimator or Pipeline
        A fitted concept estimator (e.g. ``PCAConcepts``), or a fitted
        ``Pipeline`` of preprocessing steps (``ActivationScaler``,
        ``NonNegative``...) ending in one. A leading ``SplitPointActivations``
        step is skipped, so the whole fitted pipeline can be passed. The
        decoder is the estimator's ``decoder_torch`` followed by every
        preprocessing step's ``decoder_torch``, in reverse order.
    targets : int, array-like of int or None, default=None
        The outputs to explain. An int or a 1-D sequence applies to every text;
        a 2-D array of shape (n_inputs, t) gives each text its own targets.
        With a sequence-classification head they index the class logits
        (``None``: all classes). With a causal language-model head they are
        token ids of the next-token logits at the last non-padding position
        (``None``: the most likely next token of each text, so ``t = 1``).
        With ``output_fn`` they index its columns (``None``: all).
    granularity : {"token", "all_tokens", "word", "sentence", "sample", "cls"} \
or None, default=None
        Units of the result; ``None`` takes ``extractor.granularity``.
    aggregation : {"sum", "mean", "max", "min", "signed_max", "first", "last"} \
or None, default=None
        How the token values of a unit are combined; ``None`` is ``"sum"``.
    concepts_x_gradients : bool, default=True
        Return concept activation × gradient (per token, before aggregation)
        instead of the gradient alone.
    normalization : bool, default=True
        Divide each (text, target) slice by the sum of its absolute values, so
        that ``|result|`` sums to 1 over (units, concepts); an all-zero slice
        stays zero.
    batch_size : int or None, default=None
        Texts per forward pass; ``None`` takes ``extractor.batch_size``.
    device : str, torch.device or None, default=None
        Where to compute; ``None`` is the device of ``extractor``. Another
        device moves the model there for the call and back afterwards.
    progress : bool or None, default=None
        Show a tqdm progress bar over the batches.
        ``None`` (the default) shows it only when stderr is an interactive
        terminal or a notebook (tqdm's rule); ``True`` always, ``False`` never.
    output_fn : callable or None, default=None
        ``output_fn(model_outputs) -> Tensor of shape (batch, n_outputs)``, for
        heads other than the two above (e.g. a bare encoder:
        ``lambda out: out.last_hidden_state[:, 0]``). It receives the model's
        output object for a right-padded batch.
    activations : SplitPointActivations or None, default=None
        Deprecated spelling of ``extractor`` (``activations=`` names a matrix or
        store of activations elsewhere in skconcepts); it emits a
        ``FutureWarning`` and goes in the next release.

    Returns
    -------
    attributions : list of torch.Tensor
        One CPU tensor per text, of shape (t, g, c): t targets, g units of that
        text (the rows that ``extractor.units`` lists for it at this
        granularity), c concepts. float64 when the model is float64, else
        float32.

    Notes
    -----
    The model's parameters are frozen during the call (``requires_grad`` is
    restored afterwards), it runs in eval mode, and no ``.grad`` is
    accumulated. Padding positions are encoded too (their residual makes the
    rerun exact) but never appear in the result.

    Examples
    --------
    >>> from sklearn.pipeline import make_pipeline
    >>> from skconcepts import SplitPointActivations, PCAConcepts
    >>> from skconcepts import concept_output_gradient
    >>> from skconcepts.utils._testing import make_tiny_model
    >>> model, tokenizer = make_tiny_model("bert", head="seq_cls")
    >>> texts = ["A fine day.", "The soup was cold.", "We lost the match."]
    >>> pipe = make_pipeline(
    ...     SplitPointActivations(model, tokenizer=tokenizer, split_point=1),
    ...     PCAConcepts(n_concepts=3),
    ... ).fit(texts)
    >>> attr = concept_output_gradient(
    ...     texts, extractor=pipe[0], concepts=pipe, granularity="word"
    ... )
    >>> attr[0].shape  # 2 classes, 4 words ("A", "fine", "day", "."), 3 concepts
    torch.Size([2, 4, 3])
    >>> float(attr[0][0].abs().sum())
    1.0
    """
    extractor = _deprecated_extractor(extractor, activations)
    texts = check_texts(inputs, name="inputs")
    check_is_fitted(extractor)
    parts = split_pipeline(concepts)
    granularity, aggregation, batch_size = rerun_options(
        extractor,
        granularity=granularity,
        aggregation=aggregation,
        batch_size=batch_size,
    )
    if output_fn is not None and not callable(output_fn):
        raise TypeError(
            f"output_fn must be a callable (model outputs -> (batch, n_outputs) "
            f"tensor) or None, got {type(output_fn).__name__}."
        )
    targets = check_targets(targets, len(texts))
    model = extractor.model_
    module = model.get_submodule(extractor.split_module_name_)
    device = extractor.device_ if device is None else resolve_device(device)
    encode, decode = torch_codec(parts, device, model_dtype(model))

    results = []
    starts = range(0, len(texts), batch_size)
    with frozen_model(model, device):
        for start in progress_bar(
            starts, progress=progress, desc="concept_output_gradient", unit="batch"
        ):
            chunk = texts[start : start + batch_size]
            encodings, batch_inputs = model_inputs(
                extractor, chunk, device, start=start
            )
            batch_targets = (
                None if targets is None else targets[start : start + len(chunk)]
            )
            grads, codes, _ = _batch_gradients(
                model, module, batch_inputs, encode, decode, batch_targets, output_fn
            )  # grads: (t, B, T, k), codes: (B, T, k)
            for row, (text, enc) in enumerate(zip(chunk, encodings)):
                unit_ids, spans = unit_index(
                    granularity,
                    text,
                    enc.offsets,
                    enc.special_tokens_mask,
                    enc.word_ids,
                    exclude_special_tokens=extractor.exclude_special_tokens,
                )
                length = len(enc.ids)
                values = grads[:, row, :length]  # (t, L, k)
                if concepts_x_gradients:
                    values = values * codes[row, :length]
                results.append(
                    _to_units(values, unit_ids, len(spans), aggregation, normalization)
                )
    return results


# ------------------------------------------------------------------ helpers
def _deprecated_extractor(extractor, activations):
    """``extractor``, or the deprecated ``activations=`` with a FutureWarning."""
    if activations is not None:
        if extractor is not None:
            raise TypeError(
                "Pass the SplitPointActivations once, as extractor=; activations= "
                "is its deprecated spelling."
            )
        warnings.warn(
            "concept_output_gradient(activations=...) is deprecated and will be "
            "removed in the next release; pass the SplitPointActivations as "
            "extractor=... instead.",
            FutureWarning,
            stacklevel=3,
        )
        return activations
    if extractor is None:
        raise TypeError(
            "concept_output_gradient() missing the keyword argument 'extractor': "
            "pass the fitted SplitPointActivations, e.g. extractor=pipe[0]."
        )
    return extractor


def _batch_gradients(model, module, inputs, encode, decode, targets, output_fn):
    """One forward pass with the split output rebuilt from concepts; all gradients.

    Returns
    -------
    grads : Tensor of shape (t, B, T, k)
        ``d Y[b, j] / d C[b, tok, :]`` for every target ``j``.
    codes : Tensor of shape (B, T, k)
        The concept activations ``t(h)``.
    outputs : Tensor of shape (B, t)
        The attributed outputs of the rerun.
    """
    splice = ConceptSplice(encode, decode)
    device = next(model.parameters()).device
    with torch.enable_grad(), _batchable_attention(device):
        with head_input(model) as record:
            outputs = rerun(model, module, inputs, splice, use_cache=False)
        last = (
            None
            if output_fn is not None
            else last_token_logits(outputs, inputs, record)
        )  # causal LM: (B, V) through the last positions only
        if last is None:
            Y = select_outputs(outputs, inputs, targets, output_fn)  # (B, t)
        else:
            if targets is None:  # the most likely next token
                targets = last.detach().argmax(dim=1, keepdim=True)
            Y = select_outputs(outputs, inputs, targets, lambda _: last)
        codes = splice.codes
        grads = _grad_per_target(Y, codes)  # (t, B, T, k)
    return grads.detach(), codes.detach(), Y.detach()


def _batchable_attention(device):
    """Scaled-dot-product attention in its plain ``math`` form, where vmapped.

    The fused attention kernels have no batching rule in ``torch.func.vmap``:
    their backward would run once per target. The math form (matmul, softmax,
    matmul) batches, and gives the same values to float rounding. On the CPU
    the targets' backward passes run one by one (:func:`_grad_per_target`), so
    the fused kernels stay.
    """
    if _vmapped(device):
        return sdpa_kernel(SDPBackend.MATH)
    return contextlib.nullcontext()


def _vmapped(device):
    """Whether the targets' backward passes run as one vmapped call on ``device``.

    Not on the CPU: there, one backward pass per target over the shared forward
    graph was faster than the vmapped call (MiniLM, 10 targets, 128 texts: 3.54
    s against 4.0-4.2 s in total; the vmapped backward runs the same products
    in larger batches, and adds its own overhead). On accelerators the vmapped
    call (one graph walk, larger kernels) is kept; it is not measured here.
    """
    return torch.device(device).type != "cpu"


def _grad_per_target(Y, codes):
    """``d Y[:, j] / d codes`` for all ``j`` at once: (t, *codes.shape).

    Rows of a batch are independent, so the gradient of ``Y[:, j].sum()`` gives
    every row's gradient of its own target ``j``. All targets share one forward
    graph. On the CPU they run as ``t`` backward passes over it; elsewhere as
    one call vectorised with :func:`torch.func.vmap` over the one-hot
    ``grad_outputs`` (every backward operation batched over the targets),
    falling back to ``is_grads_batched`` and then to the loop for models with
    an operation that ``vmap`` cannot batch.
    """
    t = Y.shape[1]
    if t == 1:
        return torch.autograd.grad(Y, codes, torch.ones_like(Y))[0][None]
    if _vmapped(codes.device):
        eye = torch.eye(t, dtype=Y.dtype, device=Y.device)  # (t, t)
        grad_outputs = eye[:, None, :].expand(t, *Y.shape)  # (t, B, t)

        def backward(v):  # v: (B, t) -> d <Y, v> / d codes: (B, T, k)
            return torch.autograd.grad(Y, codes, v, retain_graph=True)[0]

        try:
            return torch.func.vmap(backward)(grad_outputs)
        except RuntimeError:
            pass
        try:
            (grads,) = torch.autograd.grad(
                Y,
                codes,
                grad_outputs=grad_outputs.contiguous(),
                is_grads_batched=True,
                retain_graph=True,
            )
            return grads
        except RuntimeError:
            pass
    grads = [
        torch.autograd.grad(Y[:, j].sum(), codes, retain_graph=j < t - 1)[0]
        for j in range(t)
    ]
    return torch.stack(grads)


def _to_units(values, unit_ids, n_units, aggregation, normalization):
    """Aggregate (t, L, k) token values to (t, g, k) unit values, on the CPU."""
    t, length, k = values.shape
    flat = values.permute(1, 0, 2).reshape(length, t * k)  # (L, t*k)
    rows = aggregate(flat, unit_ids.to(flat.device), n_units, aggregation)  # (g, t*k)
    out = rows.reshape(n_units, t, k).permute(1, 0, 2)  # (t, g, k)
    if normalization:
        total = out.abs().sum(dim=(1, 2), keepdim=True)  # (t, 1, 1)
        out = torch.where(total > 0, out / total.clamp_min(1e-300), out)
    dtype = torch.float64 if out.dtype == torch.float64 else torch.float32
    return out.to(device="cpu", dtype=dtype).contiguous()


def linear_concept_importance(classifier, C, y=None, *, concept_names=None):
    """Concept importance per class of a linear classifier on concept activations.

    For a linear head ``logit_j = coef_j · c + b_j`` the gradient of the logit
    with respect to the concepts is ``coef_j``, so gradient x input is
    ``coef_j ⊙ c``: exact, with no model rerun. The importance of concept ``i``
    for class ``j`` is its mean over the samples of class ``j`` (all samples when
    ``y`` is None). A binary classifier has one logit ``z`` (class 1); class 0
    gets ``-z``, the log-odds of class 0.

    Parameters
    ----------
    classifier : fitted linear classifier
        With ``coef_`` of shape (n_classes or 1, n_concepts) and ``classes_``,
        e.g. ``LogisticRegression``.
    C : array-like of shape (n_samples, n_concepts)
        Concept activations of the samples (the classifier's input), e.g. the
        output of :class:`~skconcepts.PooledConcepts`.
    y : array-like of shape (n_samples,), default=None
        Labels that group the samples; every label must be one of the
        classifier's ``classes_``. A class with no sample gets zeros.
    concept_names : list of str, default=None
        Column names; default ``concept0 …``.

    Returns
    -------
    importance : pandas.DataFrame of shape (n_classes, n_concepts)
        Index: the classes (as str); columns: the concepts.

    Raises
    ------
    ValueError
        If ``y`` holds labels that are not in ``classifier.classes_``, or its
        length or the width of ``C`` does not match.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn.linear_model import LogisticRegression
    >>> from skconcepts import linear_concept_importance
    >>> C = np.array([[2.0, 0.0], [1.5, 0.1], [0.0, 1.0], [0.2, 2.0]])
    >>> y = np.array(["neg", "neg", "pos", "pos"])
    >>> clf = LogisticRegression().fit(C, y)
    >>> imp = linear_concept_importance(clf, C, y)
    >>> imp.shape, imp.loc["pos", "concept1"] > 0, imp.loc["neg", "concept0"] > 0
    ((2, 2), np.True_, np.True_)
    """
    C = np.asarray(C, dtype=np.float64)
    coef = np.atleast_2d(np.asarray(classifier.coef_, dtype=np.float64))
    classes = np.asarray(classifier.classes_)
    if C.ndim != 2 or C.shape[1] != coef.shape[1]:
        raise ValueError(
            f"C has shape {C.shape}, but the classifier has {coef.shape[1]} "
            "inputs; pass the concept activations it was fitted on, of shape "
            f"(n_samples, {coef.shape[1]})."
        )
    if y is not None:
        y = np.asarray(y)
        if y.shape != (len(C),):
            raise ValueError(
                f"y has shape {y.shape}, but C has {len(C)} rows; pass one label "
                "per row of C."
            )
        known = set(classes.tolist())
        unknown = [label for label in dict.fromkeys(y.tolist()) if label not in known]
        if unknown:
            raise ValueError(
                f"y holds labels {unknown} that are not among the "
                f"classifier's classes_ {classes.tolist()}; pass the labels the "
                "classifier was fitted with (same values and type)."
            )
    if coef.shape[0] == 1 and len(classes) == 2:
        coef = np.vstack([-coef[0], coef[0]])
    attributions = C[:, None, :] * coef[None, :, :]  # (n, n_classes, k)
    rows = []
    for j, label in enumerate(classes):
        mask = np.ones(len(C), bool) if y is None else y == label
        rows.append(attributions[mask, j].mean(axis=0) if mask.any() else coef[j] * 0)
    names = concept_names or [f"concept{i}" for i in range(C.shape[1])]
    return pd.DataFrame(rows, index=[str(c) for c in classes], columns=names)


# appended with linear_concept_importance (kept apart from the list above for
# the merge of issue 11)
__all__ += ["linear_concept_importance"]


def classifier_output_fn(classifier, *, pooling="mean", hidden="last_hidden_state"):
    """Turn a scikit-learn linear model on the model's output into an ``output_fn``.

    A bare encoder (``AutoModel``, e.g. the embedded MiniLM) has no logits to
    attribute. Train a scikit-learn classifier on its pooled last hidden state
    (the sentence embedding) and this function rebuilds the classifier's
    ``decision_function`` as a differentiable torch function of the model's
    outputs: pass it as ``output_fn=`` to
    :func:`~skconcepts.concept_output_gradient` to see which concepts of an
    earlier layer drive the classifier's classes.

    The features must be computed the way the function pools:

    - ``pooling="mean"``: the mean of the hidden states over every real token
      (special tokens included, padding excluded, as sentence-transformers
      pools): ``SplitPointActivations(split_point=<last block>,
      granularity="sample", aggregation="mean", exclude_special_tokens=False)``;
    - ``pooling="cls"``: the first token's hidden state:
      ``SplitPointActivations(split_point=<last block>, granularity="cls")``.

    Parameters
    ----------
    classifier : fitted linear model or Pipeline
        A fitted estimator with ``coef_`` and ``intercept_`` (e.g.
        ``LogisticRegression``, ``LinearSVC``, ``RidgeClassifier``, ``Ridge``),
        or a ``Pipeline`` of ``StandardScaler`` steps followed by one (the
        scaling is folded into the linear map).
    pooling : {"mean", "cls"}, default="mean"
        How the hidden states of a text become the classifier's features.
    hidden : str, default="last_hidden_state"
        The attribute of the model's output object that holds the hidden
        states of shape (batch, seq, d).

    Returns
    -------
    output_fn : callable
        ``output_fn(outputs, inputs=None) -> Tensor of shape (batch, n_outputs)``:
        the classifier's decision function, one column per class of a
        multi-class classifier, one column (the logit of ``classes_[1]``) for a
        binary one, on the device and dtype of the hidden states.

    Raises
    ------
    TypeError
        If ``classifier`` is not a fitted linear model (or a Pipeline of
        ``StandardScaler`` steps and one).
    ValueError
        If ``pooling`` is unknown, or when called, if the hidden states do not
        have the classifier's number of features.

    Examples
    --------
    >>> import torch
    >>> from sklearn.linear_model import LogisticRegression
    >>> from skconcepts import SplitPointActivations
    >>> from skconcepts.attribution import classifier_output_fn
    >>> from skconcepts.utils._testing import make_tiny_model
    >>> model, tokenizer = make_tiny_model("bert")
    >>> texts = ["A fine day.", "Cold soup.", "We won.", "We lost the match."]
    >>> embed = SplitPointActivations(
    ...     model, tokenizer=tokenizer, split_point=-1, granularity="sample",
    ...     aggregation="mean", exclude_special_tokens=False,
    ... )
    >>> features = embed.fit_transform(texts)
    >>> clf = LogisticRegression().fit(features, [1, 0, 1, 0])
    >>> fn = classifier_output_fn(clf)
    >>> inputs = tokenizer(texts, padding=True, return_tensors="pt")
    >>> with torch.no_grad():
    ...     logits = fn(model(**inputs), inputs=inputs)
    >>> logits.shape
    torch.Size([4, 1])
    >>> bool(torch.allclose(logits[:, 0], torch.as_tensor(
    ...     clf.decision_function(features), dtype=torch.float32), atol=1e-4))
    True
    """
    if pooling not in ("mean", "cls"):
        raise ValueError(
            f"pooling={pooling!r} is not one of ['mean', 'cls']; pool the hidden "
            "states the way the classifier's features were computed."
        )
    coef, intercept = _linear_map(classifier)
    return _LinearHead(coef, intercept, pooling, hidden)


def _linear_map(classifier):
    """(coef (n_out, d), intercept (n_out,)) of a linear model, scalers folded in."""
    steps = getattr(classifier, "steps", None)
    if steps is not None:
        *scalers, (_, final) = steps
    else:
        scalers, final = [], classifier
    coef = getattr(final, "coef_", None)
    intercept = getattr(final, "intercept_", None)
    if coef is None or intercept is None:
        raise TypeError(
            f"classifier must be a fitted linear model with coef_ and intercept_ "
            f"(e.g. LogisticRegression fitted on the pooled hidden states), or a "
            f"Pipeline ending in one; got {type(final).__name__}, which has "
            f"{'no coef_' if coef is None else 'no intercept_'} (is it fitted?)."
        )
    coef = np.atleast_2d(np.asarray(coef, dtype=np.float64))
    intercept = np.broadcast_to(
        np.atleast_1d(np.asarray(intercept, dtype=np.float64)), coef.shape[:1]
    ).copy()
    # fold the scalers, last first: (x - mean) / scale -> coef' = coef / scale
    for name, scaler in reversed(scalers):
        if not (hasattr(scaler, "mean_") and hasattr(scaler, "scale_")):
            raise TypeError(
                f"Pipeline step {name!r} ({type(scaler).__name__}) is not a fitted "
                "StandardScaler; only StandardScaler steps may come before the "
                "linear model in classifier."
            )
        scale = np.ones(coef.shape[1]) if scaler.scale_ is None else scaler.scale_
        mean = np.zeros(coef.shape[1]) if scaler.mean_ is None else scaler.mean_
        coef = coef / np.asarray(scale, dtype=np.float64)
        intercept = intercept - coef @ np.asarray(mean, dtype=np.float64)
    return coef, intercept


class _LinearHead:
    """``output_fn`` of :func:`classifier_output_fn`: pooled hidden states @ coef."""

    def __init__(self, coef, intercept, pooling, hidden):
        self.coef = torch.as_tensor(coef)  # (n_out, d), float64
        self.intercept = torch.as_tensor(intercept)  # (n_out,)
        self.pooling = pooling
        self.hidden = hidden

    def __call__(self, outputs, inputs=None):
        H = getattr(outputs, self.hidden, None)
        if H is None:
            H = outputs[0] if isinstance(outputs, (tuple, list)) else None
        if not isinstance(H, torch.Tensor) or H.ndim != 3:
            raise ValueError(
                f"The model outputs ({type(outputs).__name__}) have no "
                f"{self.hidden!r} of shape (batch, seq, d); pass hidden= the "
                "attribute that holds the hidden states."
            )
        if H.shape[-1] != self.coef.shape[1]:
            raise ValueError(
                f"The hidden states have {H.shape[-1]} features but the classifier "
                f"has {self.coef.shape[1]}; fit it on the pooled hidden states of "
                "this model."
            )
        if self.pooling == "cls":
            features = H[:, 0]  # (B, d)
        else:
            if inputs is None or "attention_mask" not in inputs:
                raise ValueError(
                    "pooling='mean' needs the batch's attention_mask: call "
                    "output_fn(outputs, inputs=inputs)."
                )
            mask = inputs["attention_mask"].to(H.dtype).unsqueeze(-1)  # (B, T, 1)
            features = (H * mask).sum(dim=1) / mask.sum(dim=1).clamp_min(1)
        coef = self.coef.to(device=H.device, dtype=H.dtype)
        intercept = self.intercept.to(device=H.device, dtype=H.dtype)
        return features @ coef.T + intercept  # (B, n_out)

    def __repr__(self):
        return (
            f"classifier_output_fn(<{self.coef.shape[0]} outputs x "
            f"{self.coef.shape[1]} features>, pooling={self.pooling!r})"
        )


__all__ += ["classifier_output_fn"]


def input_concept_gradient(
    pipeline,
    texts,
    *,
    concepts=None,
    granularity=None,
    aggregation=None,
    n_steps=None,
    normalization=False,
    batch_size=None,
    device=None,
    progress=None,
):
    """Which input tokens make each concept fire: attribution to the inputs.

    For every text, the activation of concept ``i`` over the text,
    ``A_i = Σ_tok C[tok, i]`` (summed over the tokens the extractor reads:
    special tokens are left out when it excludes them), is attributed to the
    input tokens through the model up to the split point, on the input
    embeddings ``E`` (the output of ``model.get_input_embeddings()``):

    - gradient × input (``n_steps=None``): ``(∂A_i / ∂E[tok]) · E[tok]``;
    - integrated gradients (``n_steps=m``): ``E[tok] · mean_s ∂A_i/∂E[tok]``
      at ``α_s E`` for the ``m`` midpoints ``α_s = (s + 1/2) / m`` of the
      path from the zero embedding, whose sum over the tokens tends to
      ``A_i(E) − A_i(0)`` as ``m`` grows.

    The token values are then aggregated to the units of ``granularity``.
    Only the forward pass up to the split module runs (it stops there), and
    all concepts are differentiated over that one forward graph (one backward
    pass per concept on the CPU, one vectorised pass on an accelerator).

    The concepts must be an affine function of the activations (e.g.
    :class:`~skconcepts.PCAConcepts` or :class:`~skconcepts.ICAConcepts`,
    with :class:`~skconcepts.ActivationScaler` in front): the encoder is read
    off the pipeline's public ``transform`` and checked on every batch, so a
    non-affine encoder (clustering, NMF, a sparse autoencoder) raises instead
    of giving a silently wrong gradient.

    Parameters
    ----------
    pipeline : Pipeline
        A fitted pipeline starting with a
        :class:`~skconcepts.SplitPointActivations` and ending in an affine
        concept estimator.
    texts : list of str
        The texts.
    concepts : int, list of int or None, default=None
        The concepts to explain; None: all.
    granularity : {"token", "all_tokens", "word", "sentence", "sample", \
"cls"} or None, default=None
        Units of the input side of the result; None takes the extractor's.
    aggregation : {"sum", "mean", "max", "min", "signed_max", "first", \
"last"} or None, default=None
        How the token values of a unit are combined; None is ``"sum"``.
    n_steps : int or None, default=None
        None for gradient × input; an int ``>= 1`` for integrated gradients
        with that many steps (``n_steps`` backward passes per batch).
    normalization : bool, default=False
        Divide each (text, concept) slice by the sum of its absolute values.
    batch_size : int or None, default=None
        Texts per forward pass; None takes the extractor's.
    device : str, torch.device or None, default=None
        Where to compute; None is the extractor's device.
    progress : bool or None, default=None
        Show a progress bar over the batches.

    Returns
    -------
    attributions : list of torch.Tensor
        One CPU tensor per text, of shape (c, g): c concepts, g input units of
        that text at ``granularity`` (the rows ``extractor.units`` lists for
        it). float64 when the model is float64, else float32.

    Raises
    ------
    ValueError
        For a concept index that does not exist, ``n_steps < 1``, or concepts
        that are not an affine function of the activations.

    See Also
    --------
    concept_output_gradient : from the concepts to the model's outputs.
    skconcepts.viz.input_attribution_html : the result as highlighted text.

    Examples
    --------
    >>> from sklearn.pipeline import make_pipeline
    >>> from skconcepts import SplitPointActivations, PCAConcepts
    >>> from skconcepts import input_concept_gradient
    >>> from skconcepts.utils._testing import make_tiny_model
    >>> model, tokenizer = make_tiny_model("bert")
    >>> texts = ["A fine day.", "The soup was cold.", "We lost the match."]
    >>> pipe = make_pipeline(
    ...     SplitPointActivations(model, tokenizer=tokenizer, split_point=1),
    ...     PCAConcepts(n_concepts=3),
    ... ).fit(texts)
    >>> attr = input_concept_gradient(pipe, texts, granularity="word")
    >>> attr[0].shape  # 3 concepts, 4 words ("A", "fine", "day", ".")
    torch.Size([3, 4])
    """
    texts = check_texts(texts, name="texts")
    parts = split_pipeline(pipeline, require_extractor=True)
    extractor = parts.extractor
    granularity, aggregation, batch_size = rerun_options(
        extractor,
        granularity=granularity,
        aggregation=aggregation,
        batch_size=batch_size,
    )
    if n_steps is not None and (
        not isinstance(n_steps, (int, np.integer)) or n_steps < 1
    ):
        raise ValueError(
            f"n_steps={n_steps!r} must be None (gradient x input) or an int >= 1 "
            "(integrated gradients)."
        )
    model = extractor.model_
    module = model.get_submodule(extractor.split_module_name_)
    embeddings = model.get_input_embeddings()
    device = extractor.device_ if device is None else resolve_device(device)
    dtype = model_dtype(model)
    n_concepts = int(np.asarray(parts.concepts.components_).shape[0])
    affine = _AffineEncoder(parts, check_concept_indices(concepts, n_concepts))
    alphas = [1.0] if n_steps is None else [(s + 0.5) / n_steps for s in range(n_steps)]

    results = []
    starts = range(0, len(texts), batch_size)
    with frozen_model(model, device):
        for start in progress_bar(
            starts, progress=progress, desc="input_concept_gradient", unit="batch"
        ):
            chunk = texts[start : start + batch_size]
            encodings, inputs = model_inputs(extractor, chunk, device, start=start)
            read = torch.zeros(inputs["input_ids"].shape, dtype=dtype, device=device)
            for row, (text, enc) in enumerate(zip(chunk, encodings)):
                ids, _ = unit_index(
                    "token",
                    text,
                    enc.offsets,
                    enc.special_tokens_mask,
                    enc.word_ids,
                    exclude_special_tokens=extractor.exclude_special_tokens,
                )
                read[row, : len(ids)] = (ids >= 0).to(dtype)
            with torch.no_grad():
                emb = embeddings(inputs["input_ids"])  # (B, T, e)
            grads = 0
            for alpha in alphas:
                grads = grads + _concept_input_grads(
                    model, module, embeddings, inputs, alpha * emb, read, affine
                )  # (c, B, T, e)
            values = (grads / len(alphas) * emb).sum(-1)  # (c, B, T)
            for row, (text, enc) in enumerate(zip(chunk, encodings)):
                unit_ids, spans = unit_index(
                    granularity,
                    text,
                    enc.offsets,
                    enc.special_tokens_mask,
                    enc.word_ids,
                    exclude_special_tokens=extractor.exclude_special_tokens,
                )
                token_values = values[:, row, : len(enc.ids), None]  # (c, L, 1)
                out = _to_units(
                    token_values, unit_ids, len(spans), aggregation, normalization
                )
                results.append(out[..., 0].contiguous())  # (c, g)
    return results


def _concept_input_grads(model, module, embeddings, inputs, emb, read, affine):
    """``∂A_i / ∂E`` for every chosen concept ``i`` at embeddings ``emb``.

    Returns a tensor of shape (c, B, T, e).
    """
    leaf = emb.detach().clone().requires_grad_(True)
    with torch.enable_grad(), _batchable_attention(leaf.device):
        with (
            replace_output(embeddings, lambda _: leaf),
            stop_after(module) as captured,
        ):
            model(**inputs, use_cache=False)
        h = captured.output  # (B, T, d)
        if h is None:
            raise RuntimeError(
                "The split module did not run during the forward pass; choose a "
                "split point on the path from the inputs to the outputs."
            )
        weight, bias = affine(h, read)  # (d, c), (c,)
        codes = h @ weight + bias  # (B, T, c)
        act = (codes * read[..., None]).sum(dim=1)  # (B, c)
        grads = _grad_per_target(act, leaf)
    return grads.detach()


class _AffineEncoder:
    """``(W, b)`` with ``encode(X) = X W + b``, read off the public transforms.

    Built on the first batch (when the width ``d`` of the activations is
    known) from ``1 + d`` probe rows, and checked on the rows of every batch:
    a transform that is not affine raises instead of giving a wrong gradient.
    """

    def __init__(self, parts, chosen):
        self.parts, self.chosen = parts, chosen
        self.weight = self.bias = None

    def __call__(self, h, read):
        rows = h.detach()[read > 0][:64]  # (n, d), the rows the extractor reads
        if self.weight is None:
            d = h.shape[-1]
            probe = np.vstack([np.zeros((1, d)), np.eye(d)]).astype(np.float32)
            C = encode(self.parts, probe).astype(np.float64)  # (1 + d, k)
            self.weight = torch.as_tensor(C[1:] - C[0], dtype=h.dtype, device=h.device)
            self.bias = torch.as_tensor(C[0], dtype=h.dtype, device=h.device)
        if rows.shape[0]:
            expected = torch.as_tensor(
                encode(self.parts, rows), dtype=h.dtype, device=h.device
            )
            got = rows @ self.weight + self.bias
            scale = float(expected.abs().max()) + 1e-6
            err = float((got - expected).abs().max())
            if err > 1e-3 * scale + 1e-5:
                name = type(self.parts.concepts).__name__
                raise ValueError(
                    "input_concept_gradient needs concepts that are an affine "
                    f"function of the activations, but the pipeline's transform "
                    f"({name} and its preprocessing) differs from its affine fit "
                    f"by {err:.3g} (largest activation {scale:.3g}); use an affine "
                    "concept estimator such as PCAConcepts or ICAConcepts (with "
                    "ActivationScaler in front), or concept_output_gradient for "
                    "the concepts' effect on the outputs."
                )
        return self.weight[:, self.chosen], self.bias[self.chosen]


__all__ += ["input_concept_gradient"]
