"""Sphinx-gallery helpers of the skconcepts docs (referenced by name in conf.py).

Names, not objects, go into ``sphinx_gallery_conf`` so that the configuration
pickles and Sphinx's environment cache works.
"""

from pathlib import PurePosixPath

#: the base examples, in reading order; any other ``examples/plot_*.py``
#: (vocabulary, interventions, probes, Ray...) follows, alphabetically
EXAMPLE_ORDER = [
    "plot_concepts_in_five_minutes.py",
    "plot_choosing_n_concepts.py",
    "plot_concept_features.py",
    "plot_classifier_attribution.py",
    "plot_compare_methods.py",
    "plot_larger_than_memory.py",
]


class ExampleOrder:
    """``within_subsection_order`` key: :data:`EXAMPLE_ORDER` first, then by name."""

    def __init__(self, src_dir):
        self.src_dir = src_dir

    def __call__(self, filename):
        if filename in EXAMPLE_ORDER:
            return (0, EXAMPLE_ORDER.index(filename), filename)
        return (1, 0, filename)

    def __repr__(self):
        return f"<{self.__class__.__name__}>"


def figure_scraper(block, block_vars, gallery_conf, **kwargs):
    """Scrape the matplotlib figures that skconcepts returns without pyplot.

    :func:`skconcepts.viz.plot_concept_importance` and friends return a
    ``Figure`` on its own Agg canvas (so they work without a display and do not
    leak pyplot state); sphinx-gallery's matplotlib scraper only sees pyplot's
    figures. This one saves every ``Figure`` bound to a global name of the
    example that it has not shown yet.
    """
    from matplotlib.figure import Figure
    from sphinx_gallery.scrapers import figure_rst

    seen = block_vars.setdefault("skc_shown_figures", set())
    figures = [
        value
        for value in block_vars["example_globals"].values()
        if isinstance(value, Figure)
        and value.canvas.manager is None  # pyplot figures: the default scraper
        and id(value) not in seen
    ]
    paths = []
    for fig, path in zip(figures, block_vars["image_path_iterator"]):
        seen.add(id(fig))
        path = PurePosixPath(path)
        fig.savefig(path, dpi=100)
        paths.append(path)
    return figure_rst(paths, gallery_conf["src_dir"])
