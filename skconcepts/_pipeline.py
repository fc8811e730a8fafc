"""The one place that takes a fitted concept pipeline apart, and codes through it.

A concept pipeline is ``[extractor] -> [preprocessing steps] -> concept estimator
-> [anything after]``: an optional leading
:class:`~skconcepts.SplitPointActivations` (the *extractor*, texts to
activations), fitted preprocessing steps (e.g.
:class:`~skconcepts.ActivationScaler`, :class:`~skconcepts.NonNegative`), and the
concept estimator (its last step that is a ``ConceptMixin``); steps after the
concept estimator (e.g. a classifier) are ignored. A bare concept estimator is a
pipeline of one step.

- :func:`split_pipeline` -- the parts ``(extractor, preprocess, concepts)``;
- :func:`concept_input` -- the input of the whole estimator to the input of the
  concept estimator (what metrics score);
- :func:`preprocess` -- activations through the preprocessing steps;
- :func:`encode` / :func:`decode` -- activations to concepts and back (numpy);
- :func:`torch_codec` -- the same in torch, the decoder differentiable (what the
  model rerun of attribution splices in).

Metrics, interpretation, attribution and reports all read a pipeline through
these functions only.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from sklearn.pipeline import Pipeline

from skconcepts.activations import SplitPointActivations
from skconcepts.concepts import ConceptMixin
from skconcepts.utils._torch import single_blas_thread, to_numpy
from skconcepts.utils._validation import check_is_fitted

__all__ = [
    "PipelineParts",
    "split_pipeline",
    "concept_input",
    "preprocess",
    "encode",
    "decode",
    "torch_codec",
]

_FIX_STEPS = (
    "use skconcepts.preprocessing steps (ActivationScaler, NonNegative) in front "
    "of the concept estimator."
)


class PipelineParts(NamedTuple):
    """The parts of a fitted concept pipeline (see :func:`split_pipeline`).

    Attributes
    ----------
    extractor : SplitPointActivations or None
        The leading activation extractor, or None when the pipeline starts on
        activations (or is a bare concept estimator).
    preprocess : list of estimators
        The fitted steps between the extractor and the concept estimator, in
        order (``"passthrough"`` steps left out); empty when there are none.
    concepts : concept estimator
        The concept estimator (a ``ConceptMixin``, e.g. ``PCAConcepts``).
    """

    extractor: SplitPointActivations | None
    preprocess: list
    concepts: ConceptMixin


def _is_concept_estimator(step):
    return isinstance(step, ConceptMixin)


def _is_skipped(step):
    return step is None or (isinstance(step, str) and step == "passthrough")


def split_pipeline(estimator, *, require_extractor=False):
    """Split a fitted pipeline (or a bare concept estimator) into its parts.

    Parameters
    ----------
    estimator : concept estimator or Pipeline
        A fitted concept estimator (e.g. ``PCAConcepts``), or a fitted
        ``Pipeline`` that contains one. The concept estimator is the pipeline's
        last ``ConceptMixin`` step; a leading ``SplitPointActivations`` is the
        extractor; the steps between them are the preprocessing steps; steps
        after the concept estimator are ignored.
    require_extractor : bool, default=False
        Require a ``Pipeline`` whose first step is a ``SplitPointActivations``
        (readers that need the units table of texts, e.g. ``TopKInputs``).

    Returns
    -------
    parts : PipelineParts
        ``(extractor, preprocess, concepts)``; a bare concept estimator gives
        ``(None, [], estimator)``.

    Raises
    ------
    TypeError
        When ``estimator`` is neither a concept estimator nor a ``Pipeline``
        holding one, or (with ``require_extractor``) not a ``Pipeline`` that
        starts with a ``SplitPointActivations``.
    sklearn.exceptions.NotFittedError
        When the concept estimator or the extractor is not fitted.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn.pipeline import make_pipeline
    >>> from skconcepts import ActivationScaler, PCAConcepts
    >>> from skconcepts._pipeline import split_pipeline
    >>> X = np.random.default_rng(0).normal(size=(20, 5)).astype(np.float32)
    >>> pipe = make_pipeline(ActivationScaler(), PCAConcepts(n_concepts=2)).fit(X)
    >>> parts = split_pipeline(pipe)
    >>> parts.extractor, parts.preprocess, parts.concepts
    (None, [ActivationScaler()], PCAConcepts(n_concepts=2))
    >>> split_pipeline(pipe[-1]).preprocess
    []
    """
    if not isinstance(estimator, Pipeline):
        if require_extractor:
            raise TypeError(
                f"pipeline must be a fitted sklearn Pipeline (SplitPointActivations, "
                f"[preprocessing], concept estimator), got "
                f"{type(estimator).__name__}; build it with "
                "make_pipeline(SplitPointActivations(...), PCAConcepts(...))."
            )
        if not _is_concept_estimator(estimator):
            raise TypeError(
                f"Expected a concept estimator (e.g. PCAConcepts) or a Pipeline "
                f"ending in one, got {type(estimator).__name__}."
            )
        check_is_fitted(estimator)
        return PipelineParts(None, [], estimator)

    steps = [step for _, step in estimator.steps]
    position = next(
        (i for i in range(len(steps) - 1, -1, -1) if _is_concept_estimator(steps[i])),
        None,
    )
    if position is None:
        names = [name for name, _ in estimator.steps]
        raise TypeError(
            f"The Pipeline with steps {names} has no concept estimator (a "
            "ConceptMixin step, e.g. PCAConcepts); add one."
        )
    before = steps[:position]
    extractor = None
    if before and isinstance(before[0], SplitPointActivations):
        extractor, before = before[0], before[1:]
    elif require_extractor:
        raise TypeError(
            f"The first step of the pipeline must be a SplitPointActivations (it "
            f"gives the units table), got {type(steps[0]).__name__}; put "
            "SplitPointActivations(...) first."
        )
    if extractor is not None:
        check_is_fitted(extractor)
    concepts = steps[position]
    check_is_fitted(concepts)
    preprocess = [step for step in before if not _is_skipped(step)]
    return PipelineParts(extractor, preprocess, concepts)


def preprocess(parts, X):
    """Activations ``X`` through every preprocessing step's public ``transform``.

    Parameters
    ----------
    parts : PipelineParts
        From :func:`split_pipeline`.
    X : array-like or torch.Tensor of shape (n_rows, n_features)
        Activations: the output of the extractor (not texts).

    Returns
    -------
    X_concepts : ndarray or torch.Tensor
        The input of the concept estimator (``X`` itself without steps).
    """
    for step in parts.preprocess:
        X = step.transform(X)
    return X


def concept_input(parts, X):
    """The input of the concept estimator for an input ``X`` of the whole pipeline.

    Parameters
    ----------
    parts : PipelineParts
        From :func:`split_pipeline`.
    X : list of str, array-like or torch.Tensor
        What the split pipeline takes: texts when ``parts.extractor`` is set
        (they go through ``extractor.transform``), else activations.

    Returns
    -------
    X_concepts : ndarray or torch.Tensor of shape (n_rows, n_features)
        ``X`` after the extractor and every preprocessing step's public
        ``transform``.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn.pipeline import make_pipeline
    >>> from skconcepts import ActivationScaler, PCAConcepts
    >>> from skconcepts._pipeline import concept_input, split_pipeline
    >>> X = np.random.default_rng(0).normal(size=(20, 5)).astype(np.float32)
    >>> pipe = make_pipeline(ActivationScaler(), PCAConcepts(n_concepts=2)).fit(X)
    >>> np.array_equal(concept_input(split_pipeline(pipe), X), pipe[0].transform(X))
    True
    """
    if parts.extractor is not None:
        X = parts.extractor.transform(X)
    return preprocess(parts, X)


def encode(parts, X):
    """Concept activations of activations ``X``, through the public ``transform``.

    Parameters
    ----------
    parts : PipelineParts
        From :func:`split_pipeline`.
    X : array-like or torch.Tensor of shape (n_rows, n_features)
        Activations: the output of the extractor (not texts).

    Returns
    -------
    C : ndarray of shape (n_rows, n_concepts), dtype float32
        ``X`` through every preprocessing step's ``transform``, then the concept
        estimator's ``transform``.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn.pipeline import make_pipeline
    >>> from skconcepts import ActivationScaler, PCAConcepts
    >>> from skconcepts._pipeline import encode, split_pipeline
    >>> X = np.random.default_rng(0).normal(size=(20, 5)).astype(np.float32)
    >>> pipe = make_pipeline(ActivationScaler(), PCAConcepts(n_concepts=2)).fit(X)
    >>> np.array_equal(encode(split_pipeline(pipe), X), pipe.transform(X))
    True
    """
    return to_numpy(parts.concepts.transform(preprocess(parts, X)))


def decode(parts, C):
    """Activations rebuilt from concept activations ``C`` (numpy, no gradient).

    Parameters
    ----------
    parts : PipelineParts
        From :func:`split_pipeline`.
    C : array-like or torch.Tensor of shape (n_rows, n_concepts)
        Concept activations, e.g. from :func:`encode`.

    Returns
    -------
    X_hat : ndarray or torch.Tensor of shape (n_rows, n_features)
        The concept estimator's ``inverse_transform``, then every preprocessing
        step's ``inverse_transform`` in reverse order: activations in the space
        of the extractor's output.

    Raises
    ------
    TypeError
        When a preprocessing step has no ``inverse_transform``.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn.pipeline import make_pipeline
    >>> from skconcepts import ActivationScaler, PCAConcepts
    >>> from skconcepts._pipeline import decode, encode, split_pipeline
    >>> X = np.random.default_rng(0).normal(size=(20, 5)).astype(np.float32)
    >>> pipe = make_pipeline(ActivationScaler(), PCAConcepts(n_concepts=5)).fit(X)
    >>> parts = split_pipeline(pipe)
    >>> np.allclose(decode(parts, encode(parts, X)), X, atol=1e-5)
    True
    """
    for step in parts.preprocess:
        if not hasattr(step, "inverse_transform"):
            raise TypeError(
                f"The preprocessing step {type(step).__name__} has no "
                "inverse_transform, so concepts cannot be mapped back through it; "
                + _FIX_STEPS
            )
    X = parts.concepts.inverse_transform(C)
    for step in reversed(parts.preprocess):
        X = step.inverse_transform(X)
    return X


def torch_codec(parts, device=None, dtype=None):
    """Torch encoder (no gradient) and differentiable decoder of the concepts.

    Parameters
    ----------
    parts : PipelineParts
        From :func:`split_pipeline`.
    device : str, torch.device or None, default=None
        Device of the decoder's buffers (default: CPU).
    dtype : torch.dtype or None, default=None
        Dtype of the decoder's buffers (default: float32); give the dtype of the
        tensors it will decode.

    Returns
    -------
    encode_fn : callable
        ``encode_fn(h)`` maps a tensor of shape (..., n_features) to concept
        activations of shape (..., n_concepts) with :func:`encode` (float32
        numpy rows through the public ``transform`` methods, no gradient),
        returned on ``h``'s device in ``h``'s dtype.
    decoder : torch.nn.Sequential
        ``decoder(C)`` maps (..., n_concepts) to (..., n_features): the concept
        estimator's ``decoder_torch`` followed by every preprocessing step's
        ``decoder_torch`` in reverse order; gradients flow to ``C``.

    Raises
    ------
    TypeError
        When a preprocessing step has no ``decoder_torch``.

    Examples
    --------
    >>> import numpy as np, torch
    >>> from sklearn.pipeline import make_pipeline
    >>> from skconcepts import ActivationScaler, PCAConcepts
    >>> from skconcepts._pipeline import split_pipeline, torch_codec
    >>> X = np.random.default_rng(0).normal(size=(20, 5)).astype(np.float32)
    >>> pipe = make_pipeline(ActivationScaler(), PCAConcepts(n_concepts=2)).fit(X)
    >>> encode_fn, decoder = torch_codec(split_pipeline(pipe))
    >>> C = encode_fn(torch.from_numpy(X)).requires_grad_()
    >>> decoder(C).sum().backward()
    >>> C.grad.shape
    torch.Size([20, 2])
    """
    for step in parts.preprocess:
        if not hasattr(step, "decoder_torch"):
            raise TypeError(
                f"The preprocessing step {type(step).__name__} has no "
                "decoder_torch, so the concept decoder cannot map back through "
                "it; " + _FIX_STEPS
            )
    modules = [parts.concepts.decoder_torch(device=device, dtype=dtype)]
    modules += [
        step.decoder_torch(device=device, dtype=dtype)
        for step in reversed(parts.preprocess)
    ]
    decoder = torch.nn.Sequential(*modules)

    def encode_fn(h):  # h: (..., d) -> C: (..., k)
        # one BLAS thread: its spinning threads would slow the torch work after
        with single_blas_thread():
            C = encode(parts, to_numpy(h.reshape(-1, h.shape[-1])))  # (n, k)
        C = torch.as_tensor(C, device=h.device, dtype=h.dtype)
        return C.reshape(*h.shape[:-1], C.shape[-1])

    return encode_fn, decoder
