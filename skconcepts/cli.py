"""The ``skconcepts`` command line (also ``python -m skconcepts``).

Three commands::

    skconcepts demo [--out DIR]
    skconcepts fit --texts FILE --layer N --method NAME --n-concepts K --out DIR
    skconcepts interpret DIR --texts FILE [--out DIR]

This module only parses and checks the arguments and dispatches: the demo is
:func:`skconcepts._demo.run_demo`, the work of ``fit`` and ``interpret`` is in
:mod:`skconcepts._commands`. Bad input (a missing file, an unknown method, a
layer out of range, an empty corpus, an unwritable ``--out``, a damaged or
untrusted pipeline file) prints one line on stderr and exits with status 2.
Output piped into a reader that stops early (``| head``) ends quietly. The
command modules (torch, transformers) are imported only when a command runs,
so ``--help`` is instant.
"""

from __future__ import annotations

import argparse
import importlib
import sys
import warnings
from pathlib import Path

#: exit status of bad input (as argparse uses for usage errors)
EXIT_BAD_INPUT = 2

#: names served lazily (module attribute access, PEP 562): the command modules
#: import torch, so ``skconcepts --help`` must not import them
_LAZY = {
    "run_demo": ("skconcepts._demo", "run_demo"),
    "build_pipeline": ("skconcepts._commands", "build_pipeline"),
}
__all__ = ["main", "build_parser", *_LAZY]

#: deprecated name -> (module, name, what to use instead)
_DEPRECATED = {
    "read_texts": (
        "skconcepts.datasets", "read_texts", "skconcepts.datasets.read_texts"
    ),
    "linear_concept_importance": (
        "skconcepts.attribution", "linear_concept_importance",
        "skconcepts.linear_concept_importance",
    ),
    "method_class": (
        "skconcepts._commands", "method_class",
        "skconcepts.utils.discovery.concept_methods()[method_name(name)]",
    ),
    "method_names": (
        "skconcepts.cli", "_method_names",
        "skconcepts.utils.discovery.concept_methods()",
    ),
}  # fmt: skip


def __getattr__(name):
    if name in _LAZY:
        module, attr = _LAZY[name]
        return getattr(importlib.import_module(module), attr)
    if name in _DEPRECATED:
        module, attr, new = _DEPRECATED[name]
        warnings.warn(
            f"skconcepts.cli.{name} is deprecated and will be removed in the next "
            f"release; use {new} instead.",
            FutureWarning,
            stacklevel=2,
        )
        return getattr(importlib.import_module(module), attr)
    raise AttributeError(f"module 'skconcepts.cli' has no attribute {name!r}")


def _method_names():
    """Method name -> class name (the deprecated ``method_names``)."""
    from skconcepts.utils.discovery import concept_methods  # deferred: imports torch

    return {name: cls.__name__ for name, cls in concept_methods().items()}


class CommandError(Exception):
    """Bad user input: reported as one line on stderr, exit status 2."""


class _Parser(argparse.ArgumentParser):
    """An ArgumentParser whose usage errors are one line (no usage dump)."""

    def error(self, message):
        raise CommandError(f"{message} (see '{self.prog} --help')")


# ------------------------------------------------------------- the arguments
def _read_texts(args):
    """The texts of ``--texts``/``--column``; errors name the option."""
    from skconcepts.datasets import read_texts

    try:
        return read_texts(args.texts, args.column)
    except (FileNotFoundError, ValueError) as exc:
        raise CommandError(f"--texts {exc}") from None


def _parse_layer(value):
    """``--layer``: a block index (int) or a dotted module path."""
    value = value.strip()
    if value.lstrip("-").isdigit():
        return int(value)
    return value


def _model_argument(model):
    """``--model``: (model for the pipeline, name for the report, short name)."""
    from skconcepts.datasets import embedded_model_path

    if model is None:
        return None, f"MiniLM-L6 (embedded, {embedded_model_path()})", "MiniLM-L6"
    if Path(model).is_dir():
        path = str(Path(model).resolve())
        return path, path, Path(path).name
    raise CommandError(
        f"--model {model!r}: no such folder; pass a folder saved with "
        "save_pretrained (omit --model for the embedded MiniLM)."
    )


# ------------------------------------------------------------------ commands
# deferred imports below: the command modules import torch; --help stays instant
def _cmd_demo(args):
    from skconcepts._demo import run_demo

    run_demo(args.out, max_texts=args.max_texts, progress=not args.quiet)
    return 0


def _labeler(args):
    """The ConceptLabeler of ``--labeler DIR``, or None (loaded before the work)."""
    if getattr(args, "labeler", None) is None:
        return None
    from skconcepts._commands import load_labeler

    try:
        return load_labeler(args.labeler, progress=not args.quiet)
    except (ValueError, OSError) as exc:
        raise CommandError(f"--labeler {args.labeler}: {exc}") from None


def _cmd_fit(args):
    from skconcepts._commands import build_pipeline, fit_command, method_class
    from skconcepts.exceptions import SplitPointError

    texts = _read_texts(args)
    method_class(args.method)  # fail fast, before loading the model
    labeler = _labeler(args)
    model, model_name, short_name = _model_argument(args.model)
    pipeline = build_pipeline(
        model,
        layer=_parse_layer(args.layer),
        method=args.method,
        n_concepts=args.n_concepts,
        granularity=args.granularity,
        batch_size=args.batch_size,
        device=args.device,
        random_state=args.random_state,
        progress=not args.quiet,
    )
    try:
        fit_command(
            pipeline,
            texts,
            args.out,
            model_name=model_name,
            short_name=short_name,
            layer=args.layer,
            labeler=labeler,
        )
    except SplitPointError as exc:
        raise CommandError(f"--layer {args.layer}: {exc}") from None
    return 0


def _cmd_interpret(args):
    from skconcepts._commands import interpret_command, load_pipeline
    from skconcepts.utils._files import check_out_folder

    texts = _read_texts(args)
    if args.out is not None:
        check_out_folder(args.out)  # before the work
    pipeline = load_pipeline(args.dir, trust_pickle=args.trust_pickle)
    interpret_command(
        pipeline, texts, k=args.k, show=args.show, out=args.out,
        progress=not args.quiet, labeler=_labeler(args),
    )  # fmt: skip
    return 0


# ------------------------------------------------------------------- parser
def build_parser():
    """The argument parser of ``skconcepts``.

    Returns
    -------
    parser : argparse.ArgumentParser
        With the sub-commands ``demo``, ``fit`` and ``interpret``.
    """
    from skconcepts import __version__

    parser = _Parser(
        prog="skconcepts",
        description="Concepts inside transformer language models, as "
        "scikit-learn estimators.",
    )
    parser.add_argument(
        "--version", action="version", version=f"skconcepts {__version__}"
    )
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    texts = argparse.ArgumentParser(add_help=False)
    texts.add_argument(
        "--texts",
        required=True,
        metavar="FILE",
        help=".txt (one text per line), .csv, .tsv or .jsonl file",
    )
    texts.add_argument(
        "--column",
        metavar="NAME",
        help="column of the texts in a .csv/.tsv/.jsonl file (default: text)",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    sub._parser_class = _Parser

    demo = sub.add_parser(
        "demo",
        parents=[common],
        help="run the whole method on the embedded MiniLM and demo corpus",
        description="Fit concepts of the embedded MiniLM-L6 on the demo corpus, "
        "train a concept-bottleneck classifier with GridSearchCV, compute "
        "concept attributions and write an HTML report.",
    )
    demo.add_argument(
        "--out", default="skconcepts-demo", metavar="DIR", help="output folder"
    )
    demo.add_argument("--max-texts", type=int, default=None, help=argparse.SUPPRESS)
    demo.set_defaults(func=_cmd_demo)

    fit = sub.add_parser(
        "fit",
        parents=[common, texts],
        help="fit concepts on your texts; save the pipeline and a report",
        description="Extract activations at a layer, fit a concept method and "
        "save the fitted pipeline (pipeline.skops, see skconcepts.io) and "
        "report.html.",
    )
    fit.add_argument(
        "--model",
        metavar="PATH",
        help="folder of a transformers model (default: the embedded MiniLM-L6)",
    )
    fit.add_argument(
        "--layer", required=True, metavar="N", help="block index (or module path)"
    )
    fit.add_argument(
        "--method",
        required=True,
        metavar="NAME",
        help="concept method, e.g. seminmf, nmf, pca, ica, kmeans, topksae",
    )
    fit.add_argument(
        "--n-concepts", type=int, required=True, metavar="K", help="number of concepts"
    )
    fit.add_argument(
        "--granularity",
        default="token",
        choices=["token", "all_tokens", "word", "sentence", "sample", "cls"],
        help="units of the activations (default: token)",
    )
    fit.add_argument("--batch-size", type=int, default=32, help=argparse.SUPPRESS)
    fit.add_argument("--device", default="cpu", help="cpu, cuda or auto")
    fit.add_argument("--random-state", type=int, default=0, help=argparse.SUPPRESS)
    fit.add_argument("--out", required=True, metavar="DIR", help="output folder")
    fit.add_argument(
        "--labeler", metavar="DIR", help="folder of a local causal LM that labels "
        "the concepts (see skconcepts.labels.ConceptLabeler)",
    )  # fmt: skip
    fit.set_defaults(func=_cmd_fit)

    interpret = sub.add_parser(
        "interpret",
        parents=[common, texts],
        help="top inputs and concept activations of new texts",
        description="Apply a pipeline saved by 'skconcepts fit' to new texts: "
        "print each concept's top units and each text's strongest concept.",
    )
    interpret.add_argument("dir", metavar="DIR", help="the --out folder of 'fit'")
    interpret.add_argument(
        "-k", type=int, default=5, help="top units per concept (default: 5)"
    )
    interpret.add_argument("--show", type=int, default=20, help=argparse.SUPPRESS)
    interpret.add_argument(
        "--trust-pickle",
        action="store_true",
        help="also read an old pipeline.joblib (a pickle): loading it RUNS CODE "
        "from the file; use only for files you made",
    )
    interpret.add_argument(
        "--out",
        metavar="DIR",
        help="also write CSV files (top inputs, activations) and report.html here",
    )
    interpret.add_argument(
        "--labeler", metavar="DIR", help="folder of a local causal LM that labels "
        "the concepts (see skconcepts.labels.ConceptLabeler)",
    )  # fmt: skip
    interpret.set_defaults(func=_cmd_interpret)
    return parser


def _check_numbers(args):
    for option in ("n_concepts", "max_texts", "k", "batch_size"):
        value = getattr(args, option, None)
        if value is not None and value < 1:
            flag = "-k" if option == "k" else "--" + option.replace("_", "-")
            raise CommandError(f"{flag} {value} must be an integer >= 1.")


def main(argv=None):
    """Run the ``skconcepts`` command line.

    Parameters
    ----------
    argv : list of str, default=None
        The arguments (default ``sys.argv[1:]``).

    Returns
    -------
    status : int
        0 on success, 2 on bad input (one line on stderr).

    Examples
    --------
    >>> from skconcepts.cli import main
    >>> main(["interpret", "no-such-folder", "--texts", "no-such-file.txt"])
    2
    """
    from skconcepts.exceptions import SkconceptsError

    try:
        args = build_parser().parse_args(argv)
        _check_numbers(args)
        return args.func(args)
    except (CommandError, SkconceptsError, ValueError, FileNotFoundError) as exc:
        message = " ".join(str(exc).split()) or type(exc).__name__
        print(f"skconcepts: error: {message}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        print("skconcepts: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # stdout closed early (`| head`): end quietly
        import os  # the Python docs' recipe (signal.html, note on SIGPIPE)

        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())  # no second error at exit flush
        return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
