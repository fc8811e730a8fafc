"""Save and load fitted pipelines without running code from the file.

:func:`save` writes a folder; :func:`load` reads it back. The folder holds

- ``pipeline.skops``: the pipeline in the `skops <https://skops.readthedocs.io>`_
  format, which stores data and the *names* of types, never code. Loading it
  runs no code from the file: :func:`load` first lists the types the file
  names and refuses any that is not a class of skconcepts, scikit-learn,
  numpy, scipy or torch, unless the caller trusts it explicitly;
- the model by reference: a :class:`~skconcepts.SplitPointActivations` given a
  model name or folder stores that name (a local folder as an absolute path;
  the folder must still be there when the pipeline is loaded); a model (or
  tokenizer) given as a loaded object is saved next to the pipeline with
  ``save_pretrained`` (``model-0/``, ``tokenizer-0/``...). Model weights never
  go into ``pipeline.skops``;
- ``manifest.json``: the versions of skconcepts, scikit-learn, torch and
  transformers that saved it, the model references, and the sha256 of every
  file :func:`save` wrote, checked by :func:`load`.

Every file is written to a temporary name in the folder, then renamed, so an
interrupted save never leaves a half-written file.

The sparse autoencoders (:mod:`skconcepts.concepts.sae`) hold a skorch net
(torch modules, tensors, an optimizer) that skops cannot store: while saving,
it is replaced by its state as numpy arrays and builtins (the module's
weights, the optimizer's state, the training history, the state of the
generator that shuffles the rows), and :func:`load` rebuilds the net from it.
A loaded SAE transforms bitwise as the saved one did (on the same device) and
``partial_fit`` continues its training where it stopped, optimizer state
included.
"""

from __future__ import annotations

import hashlib
import importlib
import json
import os
import warnings
from pathlib import Path

import numpy as np
import sklearn
import skops.io as sio  # skops is imported only when skconcepts.io is used
import torch
from sklearn.base import BaseEstimator

from skconcepts import __version__
from skconcepts.activations import SplitPointActivations
from skconcepts.exceptions import PipelineFileError, UntrustedTypesError
from skconcepts.utils._files import write_atomic

__all__ = ["save", "load", "PIPELINE_FILE", "MANIFEST_FILE", "TRUSTED_MODULES"]

#: the pipeline, in skops format
PIPELINE_FILE = "pipeline.skops"
#: versions, model references and checksums
MANIFEST_FILE = "manifest.json"
#: version of the folder layout
FORMAT = "skconcepts.io/1"
#: the modules whose classes :func:`load` trusts (a type must be a class)
TRUSTED_MODULES = ("skconcepts.", "sklearn.", "numpy.", "scipy.", "torch.")
#: the prefix of a model saved in the folder, in a saved extractor's ``model``
_IN_FOLDER = "skconcepts-io:"
#: set on a saved extractor that was fitted: :func:`load` fits it again
_FITTED_FLAG = "_skconcepts_io_fitted"


# -------------------------------------------------------------- helpers
def _sha256(path):
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _write_atomic(path, data):
    """Write bytes to ``path`` through a temporary file in its folder (fsynced)."""

    def write(tmp):
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())

    write_atomic(path, write)


def _estimators(obj, found=None, seen=None):
    """Every estimator reachable from ``obj`` (steps, parameters, attributes).

    An estimator that exports its own state (``_export_state``, the sparse
    autoencoders) is listed, not searched further.
    """
    found = [] if found is None else found
    seen = set() if seen is None else seen
    if id(obj) in seen:
        return found
    seen.add(id(obj))
    if isinstance(obj, BaseEstimator):
        found.append(obj)
        if not _exports_state(obj):
            for value in vars(obj).values():
                _estimators(value, found, seen)
    elif isinstance(obj, (list, tuple)):
        for value in obj:
            _estimators(value, found, seen)
    elif isinstance(obj, dict):
        for value in obj.values():
            _estimators(value, found, seen)
    return found


def _extractors(obj):
    """Every SplitPointActivations reachable from ``obj``."""
    return [e for e in _estimators(obj) if isinstance(e, SplitPointActivations)]


def _exports_state(estimator):
    """Whether ``estimator`` gives the state skops stores (``_export_state``).

    The sparse autoencoders do: their skorch net is replaced by numpy arrays
    and builtins while saving, and rebuilt by ``_import_state`` on loading.
    """
    return callable(getattr(type(estimator), "_export_state", None)) and callable(
        getattr(type(estimator), "_import_state", None)
    )


def _reference(value, kind, folder, saved):
    """The reference stored for a model or tokenizer parameter."""
    if value is None:
        return None
    if isinstance(value, (str, os.PathLike)):
        path = os.fspath(value)
        return os.path.abspath(path) if os.path.isdir(path) else path
    if id(value) not in saved:
        if not hasattr(value, "save_pretrained"):
            raise TypeError(
                f"{kind}={type(value).__name__} has no save_pretrained; pass the "
                f"{kind} as a name or folder to save the pipeline."
            )
        name = f"{kind}-{sum(k == kind for k, _ in saved.values())}"
        value.save_pretrained(folder / name)
        saved[id(value)] = (kind, name)
    return _IN_FOLDER + saved[id(value)][1]


def _saved_state(extractor, folder, saved):
    """The attributes a saved extractor keeps: its parameters, models by reference."""
    state = extractor.get_params(deep=False)
    state["model"] = _reference(state["model"], "model", folder, saved)
    state["tokenizer"] = _reference(state["tokenizer"], "tokenizer", folder, saved)
    state["device"] = str(state["device"])
    # fit always sets split_module_name_; asking for model_ would load a model
    # that a fit from the cache folder's record has not loaded yet
    state[_FITTED_FLAG] = "split_module_name_" in vars(extractor)
    return state


def _versions():
    import transformers  # deferred: heavy, only for the version

    return {
        "skconcepts": __version__,
        "sklearn": sklearn.__version__,
        "numpy": np.__version__,
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "skops": importlib.import_module("skops").__version__,
    }


# ----------------------------------------------------------------- save
def save(pipeline, folder):
    """Save a (fitted) pipeline in ``folder``, in a format that loads without code.

    Parameters
    ----------
    pipeline : estimator
        A scikit-learn estimator, usually a :class:`~sklearn.pipeline.Pipeline`
        whose first step is a :class:`~skconcepts.SplitPointActivations`.
    folder : str or path-like
        The folder (created). ``pipeline.skops`` and ``manifest.json`` in it
        are replaced.

    Returns
    -------
    folder : pathlib.Path
        The folder.

    Raises
    ------
    TypeError
        If the pipeline holds objects skops cannot store (a torch object or a
        skorch callback given as a parameter).

    Examples
    --------
    >>> import tempfile
    >>> from sklearn.pipeline import make_pipeline
    >>> from skconcepts import PCAConcepts, SplitPointActivations, io
    >>> pipe = make_pipeline(SplitPointActivations(split_point=2), PCAConcepts(2))
    >>> pipe = pipe.fit(["I loved it.", "Awful!", "A cat."])
    >>> folder = io.save(pipe, tempfile.mkdtemp())
    >>> sorted(p.name for p in folder.iterdir())
    ['manifest.json', 'pipeline.skops']
    >>> io.load(folder).transform(["A dog."]).shape
    (3, 2)
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    saved = {}  # id of a model/tokenizer object -> (kind, folder name)
    originals = []
    try:
        for estimator in _estimators(pipeline):
            if isinstance(estimator, SplitPointActivations):
                state = _saved_state(estimator, folder, saved)
            elif _exports_state(estimator):
                state = estimator._export_state()
            else:
                continue
            originals.append((estimator, dict(vars(estimator))))
            vars(estimator).clear()
            vars(estimator).update(state)
        try:
            data = sio.dumps(pipeline)
        except Exception as exc:  # skops raises various types on unknown state
            raise TypeError(
                f"pipeline={type(pipeline).__name__}: skops cannot store it "
                f"({type(exc).__name__}: {exc}); skconcepts.io stores the "
                "estimators of skconcepts and scikit-learn and objects of numpy "
                "and builtins; remove the object it names (e.g. a callback or "
                "a torch object in a parameter) or use joblib.dump and load only "
                "files you made."
            ) from exc
    finally:
        for estimator, attributes in originals:
            vars(estimator).clear()
            vars(estimator).update(attributes)
    _write_atomic(folder / PIPELINE_FILE, data)
    files = [PIPELINE_FILE]
    for _, name in saved.values():
        files += sorted(
            p.relative_to(folder).as_posix()
            for p in (folder / name).rglob("*")
            if p.is_file()
        )
    manifest = {
        "format": FORMAT,
        "versions": _versions(),
        "models": {name: kind for kind, name in saved.values()},
        "sha256": {name: _sha256(folder / name) for name in files},
    }
    _write_atomic(
        folder / MANIFEST_FILE, (json.dumps(manifest, indent=2) + "\n").encode()
    )
    return folder


# ----------------------------------------------------------------- load
def _is_trusted_class(name):
    """Whether ``name`` is a class of a trusted module (imports the module)."""
    if not name.startswith(TRUSTED_MODULES):
        return False
    module, _, attr = name.rpartition(".")
    try:
        obj = getattr(importlib.import_module(module), attr)
    except (ImportError, AttributeError):
        return False
    return isinstance(obj, type)


def _read_manifest(folder):
    path = folder / MANIFEST_FILE
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
            raise ValueError(f"format is not {FORMAT!r}")
        checksums = manifest["sha256"]
        if not isinstance(checksums, dict) or PIPELINE_FILE not in checksums:
            raise ValueError(f"sha256 does not list {PIPELINE_FILE}")
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise PipelineFileError(
            f"{str(path)!r} is not a manifest written by skconcepts.io.save "
            f"({type(exc).__name__}: {exc}); save the pipeline again."
        ) from None
    return manifest


def _check_files(folder, manifest):
    for name, digest in manifest["sha256"].items():
        path = folder / name
        if Path(name).is_absolute() or ".." in Path(name).parts:
            raise PipelineFileError(
                f"manifest.json names a file outside the folder: {name!r}."
            )
        if not path.is_file():
            raise PipelineFileError(
                f"{str(path)!r} is missing (listed in manifest.json); the folder "
                "is incomplete: save the pipeline again."
            )
        if _sha256(path) != digest:
            raise PipelineFileError(
                f"{str(path)!r} does not match its sha256 in manifest.json: it was "
                "changed or damaged after it was saved; save the pipeline again."
            )


def _check_versions(manifest):
    saved = manifest.get("versions", {})
    if not isinstance(saved, dict):
        return
    here = {"skconcepts": __version__, "sklearn": sklearn.__version__}
    differ = [
        f"{k} {saved.get(k, 'unknown')} (here {v})"
        for k, v in here.items()
        if saved.get(k) != v
    ]
    if differ:
        warnings.warn(
            "the pipeline was saved with " + ", ".join(differ) + "; results may "
            "differ: refit it with the installed versions if they do.",
            UserWarning,
            stacklevel=3,
        )


def _resolve(value, folder, kind):
    if isinstance(value, str) and value.startswith(_IN_FOLDER):
        return os.fspath(folder / value[len(_IN_FOLDER) :])
    if isinstance(value, str) and os.path.isabs(value) and not os.path.isdir(value):
        raise PipelineFileError(
            f"the pipeline's {kind} folder {value!r} does not exist (moved or "
            "deleted since the pipeline was saved); put it back, or fit the "
            "pipeline again."
        )
    return value


def load(folder, trusted=None):
    """Load a pipeline saved by :func:`save`; runs no code from the files.

    Parameters
    ----------
    folder : str or path-like
        A folder written by :func:`save`.
    trusted : list of str, default=None
        Types to trust besides the classes of skconcepts, scikit-learn, numpy,
        scipy and torch (:data:`TRUSTED_MODULES`), e.g.
        ``["mypackage.MyTransformer"]``. Pass only types of a file you trust.

    Returns
    -------
    pipeline : estimator
        The pipeline, fitted as it was saved: its extractors have loaded
        their model again.

    Raises
    ------
    PipelineFileError
        If the folder holds no saved pipeline, a file is missing or changed
        since it was saved (sha256), or a referenced model folder is gone.
    UntrustedTypesError
        If the file names a type that is not trusted; the message lists them.

    Examples
    --------
    >>> import tempfile
    >>> from skconcepts import io
    >>> from skconcepts.exceptions import PipelineFileError
    >>> try:
    ...     io.load(tempfile.mkdtemp())
    ... except PipelineFileError as exc:
    ...     print("holds no pipeline.skops" in str(exc))
    True
    """
    folder = Path(folder)
    if not (folder / PIPELINE_FILE).is_file():
        old = (
            " (it holds an old pipeline.joblib: see --trust-pickle)"
            if (folder / "pipeline.joblib").is_file()
            else ""
        )
        raise PipelineFileError(
            f"{str(folder)!r} holds no {PIPELINE_FILE}{old}; pass a folder written "
            "by skconcepts.io.save (or 'skconcepts fit')."
        )
    manifest = _read_manifest(folder)
    _check_files(folder, manifest)
    _check_versions(manifest)
    path = folder / PIPELINE_FILE
    try:
        names = sio.get_untrusted_types(file=path)
    except Exception as exc:  # a file that is not skops: zip, json, key errors
        raise PipelineFileError(
            f"{str(path)!r} is not a skops file ({type(exc).__name__}: {exc}); "
            "save the pipeline again."
        ) from None
    extra = [str(t) for t in (trusted or [])]
    allowed = [t for t in names if _is_trusted_class(t) or t in extra]
    refused = sorted(set(names) - set(allowed))
    if refused:
        raise UntrustedTypesError(
            f"{str(path)!r} names types that are not trusted: {refused}; if you "
            "trust this file, pass them in trusted=."
        )
    try:
        pipeline = sio.load(path, trusted=allowed)
    except Exception as exc:
        raise PipelineFileError(
            f"{str(path)!r} cannot be loaded ({type(exc).__name__}: {exc}); save "
            "the pipeline again."
        ) from None
    if not isinstance(pipeline, BaseEstimator):
        raise PipelineFileError(
            f"{str(path)!r} holds a {type(pipeline).__name__}, not an estimator."
        )
    for estimator in _estimators(pipeline):
        if _exports_state(estimator):
            try:
                estimator._import_state()
            except Exception as exc:  # a damaged state: shapes, keys, types
                raise PipelineFileError(
                    f"the saved state of {type(estimator).__name__} in "
                    f"{str(path)!r} cannot be loaded ({type(exc).__name__}: "
                    f"{exc}); save the pipeline again."
                ) from None
    for extractor in _extractors(pipeline):
        fitted = vars(extractor).pop(_FITTED_FLAG, False)
        extractor.model = _resolve(extractor.model, folder, "model")
        extractor.tokenizer = _resolve(extractor.tokenizer, folder, "tokenizer")
        if fitted:
            try:
                extractor.fit()
            except OSError as exc:
                raise PipelineFileError(
                    f"the pipeline's model cannot be loaded: {exc}"
                ) from None
    return pipeline
