"""Shared parameter documentation for concept estimators (written once)."""

_SHARED = {
    "n_concepts": """n_concepts : int, default=8
        Number of concepts (rows of the dictionary) to learn.""",
    "random_state": """random_state : int, RandomState instance or None, default=None
        Seed of the initialisation. An int makes ``fit`` reproducible (bitwise
        on the CPU). It seeds a local generator; the global torch seed is never
        touched.""",
    "device": """device : {"cpu", "cuda", "auto"} or torch.device, default="cpu"
        Where the computation runs. ``"auto"`` takes CUDA when available.
        Fitted attributes are always stored as CPU numpy arrays, so a model
        fitted on a GPU loads on a CPU-only machine.""",
    "max_iter": """max_iter : int, default=200
        Maximum number of iterations of the solver.""",
    "tol": """tol : float, default=1e-4
        Relative decrease of the objective under which the solver stops.""",
    "concept_attributes": """components_ : ndarray of shape (n_concepts, n_features)
        The dictionary (float32): one concept per row. ``inverse_transform(C)`` is
        ``C @ components_`` (plus the offset of the method, if any).
    n_features_in_ : int
        Number of features seen during ``fit``.
    feature_names_in_ : ndarray of shape (`n_features_in_`,)
        Names of the features seen during ``fit``, when ``X`` has string column
        names.""",
}


class Substitution:
    """Fill ``%(name)s`` placeholders of a docstring with the shared texts.

    Examples
    --------
    >>> from skconcepts.concepts._docstrings import Substitution
    >>> @Substitution(extra="x : int")
    ... def f():
    ...     '''%(extra)s'''
    >>> f.__doc__
    'x : int'
    """

    def __init__(self, **extra):
        self.params = {**_SHARED, **extra}

    def __call__(self, obj):
        if obj.__doc__:
            obj.__doc__ = obj.__doc__ % self.params
        return obj


_shared_docs = Substitution()
