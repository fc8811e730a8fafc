"""Sphinx configuration of the skconcepts documentation.

Build (offline, warnings are errors)::

    python -m sphinx -W -b html docs docs/_build/html

The build executes every ``examples/plot_*.py`` with sphinx-gallery (on the
embedded MiniLM and the demo corpus; an example that raises fails the build)
and prints each one's run time. ``-D plot_gallery=0`` skips running them.
"""

import re
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE / "sphinxext"))  # skc_gallery: gallery order, scraper

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
    "sphinx_gallery.gen_gallery",
    "sphinx_copybutton",
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
    "sphinxext",
    "README_proposed.md",
    "benchmarks.md",
]
source_suffix = {".rst": "restructuredtext"}
root_doc = "index"
language = "en"

# pydata-sphinx-theme, scikit-learn's; custom.css widens the content column so
# that no code block scrolls sideways at a 1 300-pixel window
# (tests/test_docs_render.py checks it in headless Chromium)
html_theme = "pydata_sphinx_theme"
html_static_path = ["_static"]
html_css_files = ["custom.css"]
html_title = f"skconcepts {release}"
html_theme_options = {
    "navbar_align": "left",
    "show_toc_level": 1,
    "navigation_with_keys": False,
    # the page's table of contents on the right, except on the front page
    "secondary_sidebar_items": {"**": ["page-toc"], "index": []},
    "footer_start": ["copyright"],
    "footer_end": ["sphinx-version", "theme-version"],
}
html_sidebars = {"index": [], "auto_examples/index": []}

# sphinx-copybutton: copy code without prompts or output
copybutton_prompt_text = r">>> |\.\.\. |\$ "
copybutton_prompt_is_regexp = True

# sphinx-gallery: examples/plot_*.py are run at build time, their output and
# figures embedded; each API page links the examples that use it
sphinx_gallery_conf = {
    "examples_dirs": "../examples",
    "gallery_dirs": "auto_examples",
    "filename_pattern": r"/plot_",
    "ignore_pattern": r"__init__\.py",
    "within_subsection_order": "skc_gallery.ExampleOrder",
    "image_scrapers": ("matplotlib", "skc_gallery.figure_scraper"),
    "doc_module": ("skconcepts",),
    "backreferences_dir": "generated/backreferences",
    "abort_on_example_error": True,
    "remove_config_comments": True,
    "min_reported_time": 0,
    "show_memory": False,
    "download_all_examples": False,
    "matplotlib_animations": False,
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
