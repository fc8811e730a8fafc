"""Exceptions and warnings raised by skconcepts."""

from sklearn.exceptions import NotFittedError as _SklearnNotFittedError

__all__ = [
    "SkconceptsError",
    "NotFittedError",
    "SplitPointError",
    "StoreMismatchError",
    "StoreCorruptedError",
    "TruncationWarning",
    "StoreTooLargeError",
    "TokenizerMismatchError",
    "UnknownTokensWarning",
    "PipelineFileError",
    "UntrustedTypesError",
    "StoreLockedError",
    "StoreChangedError",
    "StoreAccessError",
]


class SkconceptsError(Exception):
    """Base class of every error raised by skconcepts."""


class NotFittedError(SkconceptsError, _SklearnNotFittedError):
    """An estimator is used before ``fit``; also a sklearn ``NotFittedError``."""


class SplitPointError(SkconceptsError, ValueError):
    """A split point does not name a module of the model."""


class StoreMismatchError(SkconceptsError, ValueError):
    """An activation store was written by another model, split point or corpus."""


class StoreCorruptedError(SkconceptsError, OSError):
    """A shard of an activation store is missing, truncated or fails its checksum."""


class TruncationWarning(UserWarning):
    """Some texts were longer than ``max_length`` tokens and were truncated."""


class StoreTooLargeError(SkconceptsError, MemoryError):
    """An array read from an activation store does not fit in its memory budget.

    Raised before anything is allocated; the message gives the bytes needed, the
    budget and what to do instead (stream the store, or raise ``max_bytes``).
    """


class TokenizerMismatchError(SkconceptsError, ValueError):
    """The tokenizer is not the model's: its vocabulary does not fit the model.

    Raised at fit when the tokenizer has far fewer tokens than the model has
    input embeddings (e.g. a model folder without tokenizer files), or when it
    gives a token id beyond the model's embeddings.
    """


class UnknownTokensWarning(UserWarning):
    """Most tokens of the transformed texts are the tokenizer's unknown token."""


class PipelineFileError(SkconceptsError, ValueError):
    """A saved pipeline folder is missing, damaged, changed since it was saved,
    or not a pipeline (:mod:`skconcepts.io`)."""


class UntrustedTypesError(PipelineFileError):
    """A saved pipeline names types that :func:`skconcepts.io.load` does not trust.

    The message lists them; pass them in ``trusted=`` only if you trust the file.
    """


class StoreLockedError(SkconceptsError, RuntimeError):
    """Another process is writing the activation store (its writer lock is held).

    The message names the holder's pid and host and the lock file.
    """


class StoreChangedError(StoreMismatchError):
    """An activation store was overwritten while it was open for reading.

    Raised instead of returning rows of the new store under the old manifest.
    """


class StoreAccessError(SkconceptsError, OSError):
    """The workers of a cluster cannot read and write the activation store's folder.

    Raised by :func:`skconcepts.distributed.extract_to_store_ray` before any
    work; the message names the folder and what the workers saw.
    """
