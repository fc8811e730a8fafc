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

# autosummary writes one page per object under api/generated (not committed)
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
    "_generated",
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


def _benchmark_page():
    """Write _generated/benchmarks.rst from benchmarks.md (or say it is absent).

    The benchmark script writes docs/benchmarks.md (Markdown). The docs are
    reStructuredText only, so the table is shown verbatim as a literal block.
    """
    source = HERE / "benchmarks.md"
    target = HERE / "_generated" / "benchmarks.rst"
    target.parent.mkdir(exist_ok=True)
    if source.is_file():
        text = source.read_text(encoding="utf-8").rstrip()
        body = (
            "The table below is ``docs/benchmarks.md``, as written by the last "
            "run of ``python -m bench``.\n\n"
            ".. code-block:: text\n\n"
            + "\n".join(("   " + line) if line else "" for line in text.splitlines())
            + "\n"
        )
    else:
        body = (
            "``docs/benchmarks.md`` has not been generated in this checkout; "
            "run ``python -m bench`` to write it.\n"
        )
    if not target.is_file() or target.read_text(encoding="utf-8") != body:
        target.write_text(body, encoding="utf-8")


_benchmark_page()


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
