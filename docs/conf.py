"""Sphinx configuration of the skconcepts documentation.

Build (offline, warnings are errors)::

    python -m sphinx -W -b html docs docs/_build/html
"""

import re
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

import skconcepts  # noqa: E402

project = "skconcepts"
author = "skconcepts developers"
copyright = "skconcepts developers"
release = skconcepts.__version__
version = ".".join(release.split(".")[:2])

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "numpydoc",
]

# autosummary writes one page per object under docs/generated (not committed)
autosummary_generate = True
autosummary_imported_members = False
autodoc_default_options = {"members": True, "inherited-members": False}
autodoc_typehints = "none"

# numpydoc: the member tables of classes would point to pages that do not exist
numpydoc_show_class_members = False
numpydoc_show_inherited_class_members = False
numpydoc_class_members_toctree = False
numpydoc_xref_param_type = False

templates_path = ["_templates"]
exclude_patterns = [
    "_build",
    "README_proposed.md",
    "benchmarks.md",
]
source_suffix = {".rst": "restructuredtext"}
root_doc = "index"
language = "en"

html_theme = "alabaster"
html_static_path = ["_static"]
html_title = f"skconcepts {release}"
html_theme_options = {
    "description": "Concepts inside transformer language models, "
    "as scikit-learn estimators.",
    "fixed_sidebar": True,
}

# no network during the build: nothing is fetched (no intersphinx)
intersphinx_mapping = {}


#: line of benchmarks.rst replaced by the table of docs/benchmarks.md
BENCHMARK_MARKER = ".. the table of docs/benchmarks.md is inserted here by conf.py"


def _benchmark_block():
    """docs/benchmarks.md as a literal block, or a note that it is absent.

    The benchmark script writes Markdown and the docs are reStructuredText
    only (no myst), so the table is shown verbatim.
    """
    source = HERE / "benchmarks.md"
    if not source.is_file():
        return (
            "``docs/benchmarks.md`` has not been generated in this checkout; "
            "run ``python -m bench`` to write it."
        )
    lines = source.read_text(encoding="utf-8").rstrip().splitlines()
    return ".. code-block:: text\n\n" + "\n".join(
        ("   " + line) if line.strip() else "" for line in lines
    )


def _insert_benchmarks(app, docname, source):
    if docname == "benchmarks":
        app.env.note_dependency(str(HERE / "benchmarks.md"))
        source[0] = source[0].replace(BENCHMARK_MARKER, _benchmark_block())


_SHAPE_NAME = re.compile(r"\((\w+_),\)")


def _quote_fitted_names_in_shapes(app, what, name, obj, options, lines):
    """Render ``shape (n_features_in_,)`` literally.

    In reST a word ending in ``_`` is a link; in a numpydoc type it is not
    quoted, so ``(n_features_in_,)`` would be an unknown link target (sklearn
    writes ``(`n_features_in_`,)``).
    """
    lines[:] = [_SHAPE_NAME.sub(r"(``\1``,)", line) for line in lines]


def setup(app):
    app.connect("autodoc-process-docstring", _quote_fitted_names_in_shapes)
    app.connect("source-read", _insert_benchmarks)
