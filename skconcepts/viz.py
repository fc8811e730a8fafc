"""HTML concept reports (token highlights, top units) and matplotlib plots.

Everything here writes self-contained HTML: inline CSS, images embedded as
``data:`` URIs, no script, no CDN and no external URL, so a report opens offline
and can be mailed as one file. matplotlib is imported only by the functions that
draw, and draws on the Agg canvas (no display needed).
"""

from __future__ import annotations

import base64
import html
import io
from pathlib import Path

import numpy as np

from skconcepts._granularity import unit_index
from skconcepts._pipeline import encode, split_pipeline
from skconcepts.attribution import input_concept_gradient
from skconcepts.interpret import (
    TopKInputs,
    distinctive_labels,
    word_concept_activations,
)
from skconcepts.utils._validation import check_texts

__all__ = [
    "ConceptReport",
    "highlight_html",
    "plot_concept_importance",
    "report",
    "snippet_html",
]

#: characters of context shown around the peak unit of an example
SNIPPET_CHARS = 160
#: longest concept label drawn on the heatmap axes
_AXIS_LABEL_CHARS = 28

#: RGB of the highlight of positive concept activations (matplotlib "tab:orange")
POSITIVE_RGB = (255, 127, 14)
#: RGB of the highlight of negative concept activations (matplotlib "tab:blue")
NEGATIVE_RGB = (31, 119, 180)

_CSS = """
.skc-report {font-family: -apple-system, "Segoe UI", Helvetica, Arial, sans-serif;
  color: #222; max-width: 1100px; line-height: 1.45;}
.skc-report h1 {font-size: 1.6em; margin: 0.2em 0 0.4em 0;}
.skc-report h2 {font-size: 1.2em; margin: 1.2em 0 0.3em 0;
  border-bottom: 1px solid #ddd;}
.skc-report .skc-label {color: #666; font-weight: normal; font-size: 0.85em;}
.skc-report table {border-collapse: collapse; margin: 0.3em 0 0.6em 0;}
.skc-report td, .skc-report th {padding: 1px 10px 1px 0; text-align: left;
  vertical-align: top; font-size: 0.92em;}
.skc-report .skc-bar {display: inline-block; height: 0.8em;
  background: #b4b4b4;}
.skc-report .skc-example {margin: 0.25em 0; padding: 0.3em 0.5em;
  background: #fafafa; border-left: 3px solid #eee;}
.skc-report .skc-tok {border-radius: 2px; padding: 0; margin: 0;}
.skc-report .skc-ellipsis {color: #999;}
.skc-report .skc-importance img {max-width: 100%;}
"""


# ---------------------------------------------------------------- highlights
def highlight_html(text, spans, values, *, vmax=None):
    """Render a text as HTML with its units colored by concept activation.

    Each unit (a span of characters) gets a background whose opacity is
    ``|value| / vmax``: orange for positive values, blue for negative ones.
    Characters outside every span (spaces, special characters) are left plain.
    The activation shows as a tooltip. The text is rebuilt from the character
    spans of the original ``text``: the characters between two units are the
    original ones, so no space appears before punctuation ("good, bad!")
    that the text does not have, and the highlighted units get no padding.

    Parameters
    ----------
    text : str
        The text.
    spans : sequence of (int, int)
        ``(start, end)`` character offsets of the units in ``text``, as in the
        ``start``/``end`` columns of :meth:`SplitPointActivations.units`.
    values : array-like of shape (n_spans,)
        The concept activation of each unit.
    vmax : float, default=None
        Activation that gets the full color; by default the largest ``|value|``.

    Returns
    -------
    html : str
        An HTML fragment (inline ``<span>`` elements, text escaped).

    Examples
    --------
    >>> from skconcepts.viz import highlight_html
    >>> print(highlight_html("good food", [(0, 4), (5, 9)], [0.0, 2.0]))
    <span class="skc-tok" title="0">good</span> <span class="skc-tok"
    style="background-color: rgba(255, 127, 14, 0.85)" title="2">food</span>
    """
    values = np.asarray(values, dtype=float).reshape(-1)
    if len(values) != len(spans):
        raise ValueError(
            f"spans has {len(spans)} items but values has {len(values)}; pass one "
            "value per span."
        )
    if vmax is None:
        vmax = float(np.max(np.abs(values))) if len(values) else 0.0
    vmax = vmax if vmax > 0 else 1.0
    order = sorted(range(len(spans)), key=lambda i: (int(spans[i][0]), i))
    out, pos = [], 0
    for i in order:
        start, end = max(int(spans[i][0]), pos), min(int(spans[i][1]), len(text))
        if end <= start:  # empty or covered by a previous span
            continue
        out.append(html.escape(text[pos:start]))
        out.append(_token_span(text[start:end], values[i], vmax))
        pos = end
    out.append(html.escape(text[pos:]))
    return "".join(out)


def snippet_html(text, spans, values, *, width=SNIPPET_CHARS, vmax=None):
    """A highlighted snippet of a text around the unit that activates most.

    The window of about ``width`` characters centred on the unit with the
    highest value, widened or narrowed to whole words, with ``…`` where text
    is cut; its units are highlighted by :func:`highlight_html` (same colors,
    spacing of the original text). A text no longer than ``width`` is shown
    whole.

    Parameters
    ----------
    text : str
        The text.
    spans : sequence of (int, int)
        ``(start, end)`` character offsets of the units in ``text``.
    values : array-like of shape (n_spans,)
        The concept activation of each unit.
    width : int, default=160
        Characters of the window (the peak unit is always whole).
    vmax : float, default=None
        Activation that gets the full color; by default the largest ``|value|``.

    Returns
    -------
    html : str
        An HTML fragment.

    Examples
    --------
    >>> import re
    >>> from skconcepts.viz import snippet_html
    >>> text = "one two three four five six seven eight nine ten"
    >>> spans = [m.span() for m in re.finditer(r"\\w+", text)]
    >>> values = [0.0] * 5 + [1.0] + [0.0] * 4  # "six"
    >>> re.sub("<[^>]+>", "", snippet_html(text, spans, values, width=24))
    '… four five six seven …'
    """
    values = np.asarray(values, dtype=float).reshape(-1)
    if len(values) != len(spans):
        raise ValueError(
            f"spans has {len(spans)} items but values has {len(values)}; pass one "
            "value per span."
        )
    if vmax is None:  # the color scale of the whole text, not of the window
        vmax = float(np.max(np.abs(values))) if len(values) else 0.0
    if len(text) <= width or not len(values):
        return highlight_html(text, spans, values, vmax=vmax)
    peak = int(np.argmax(values))
    start, end = int(spans[peak][0]), int(spans[peak][1])
    room = max(width - (end - start), 0)
    lo, hi = start - room // 2, end + room - room // 2
    if lo < 0:  # give the unused room to the other side
        lo, hi = 0, min(len(text), hi - lo)
    elif hi > len(text):
        lo, hi = max(0, lo - (hi - len(text))), len(text)
    if lo > 0 and not text[lo - 1].isspace():  # whole words: move in to a space
        cut = text.find(" ", lo, start)
        lo = cut + 1 if cut >= 0 else start
    if hi < len(text) and not text[hi].isspace():
        cut = text.rfind(" ", end, hi)
        hi = cut if cut >= 0 else end
    keep = [i for i, (a, b) in enumerate(spans) if a >= lo and b <= hi]
    fragment = highlight_html(
        text[lo:hi],
        [(int(spans[i][0]) - lo, int(spans[i][1]) - lo) for i in keep],
        values[keep],
        vmax=vmax,
    )
    before = '<span class="skc-ellipsis">… </span>' if lo > 0 else ""
    after = '<span class="skc-ellipsis"> …</span>' if hi < len(text) else ""
    return before + fragment.strip() + after


def _token_span(token, value, vmax):
    alpha = min(abs(value) / vmax, 1.0) * 0.85
    style = ""
    if alpha >= 0.02:
        r, g, b = POSITIVE_RGB if value >= 0 else NEGATIVE_RGB
        style = f' style="background-color: rgba({r}, {g}, {b}, {alpha:.2f})"'
    return (
        f'<span class="skc-tok"{style} title="{value:.3g}">{html.escape(token)}</span>'
    )


# ------------------------------------------------------------------ plotting
def plot_concept_importance(importance, *, class_names=None, concept_names=None):
    """Heatmap of concept importance (attributions) per class.

    Parameters
    ----------
    importance : array-like or pandas.DataFrame of shape (n_classes, n_concepts)
        Importance of every concept for every class, e.g. the mean gradient x
        input of each class's output. A DataFrame gives the names (index:
        classes, columns: concepts).
    class_names : list of str, default=None
        Row names; default the DataFrame index or ``0 … n_classes-1``.
    concept_names : list of str, default=None
        Column names; default the DataFrame columns or ``concept0 …``.

    Returns
    -------
    fig : matplotlib.figure.Figure
        The figure, on an Agg canvas (``fig.savefig`` works without a display).

    Examples
    --------
    >>> from skconcepts.viz import plot_concept_importance
    >>> fig = plot_concept_importance([[0.5, -0.1], [-0.2, 0.7]],
    ...                               class_names=["neg", "pos"])
    >>> [t.get_text() for t in fig.axes[0].get_yticklabels()]
    ['neg', 'pos']
    """
    # deferred: matplotlib is heavy and only drawing needs it
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    values, class_names, concept_names = _importance_table(
        importance, class_names, concept_names
    )
    n_classes, n_concepts = values.shape
    longest = max(len(name) for name in concept_names)  # rotated x labels
    fig = Figure(
        figsize=(1.5 + 0.75 * n_concepts, 1.2 + 0.45 * n_classes + 0.055 * longest)
    )
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    vmax = float(np.max(np.abs(values))) or 1.0
    image = ax.imshow(values, cmap="RdBu_r", vmin=-vmax, vmax=vmax, aspect="auto")
    ax.set_xticks(range(n_concepts), concept_names, rotation=45, ha="right")
    ax.set_yticks(range(n_classes), class_names)
    for (i, j), v in np.ndenumerate(values):
        color = "white" if abs(v) > 0.6 * vmax else "black"
        ax.text(j, i, f"{v:.2g}", ha="center", va="center", fontsize=8, color=color)
    ax.set_title("Concept importance per class")
    fig.colorbar(image, ax=ax, fraction=0.04, pad=0.02)
    fig.tight_layout()
    return fig


def _importance_table(importance, class_names, concept_names):
    if hasattr(importance, "to_numpy") and hasattr(importance, "columns"):
        class_names = class_names or [str(c) for c in importance.index]
        concept_names = concept_names or [str(c) for c in importance.columns]
        importance = importance.to_numpy()
    values = np.asarray(importance, dtype=float)
    if values.ndim == 1:
        values = values[None, :]
    if values.ndim != 2:
        raise ValueError(
            f"importance must be 2-D (n_classes, n_concepts), got shape {values.shape}."
        )
    n_classes, n_concepts = values.shape
    class_names = [str(c) for c in (class_names or range(n_classes))]
    concept_names = [
        str(c) for c in (concept_names or [f"concept{j}" for j in range(n_concepts)])
    ]
    if len(class_names) != n_classes or len(concept_names) != n_concepts:
        raise ValueError(
            f"importance has shape {values.shape} but {len(class_names)} class "
            f"names and {len(concept_names)} concept names were given."
        )
    return values, class_names, concept_names


def _figure_png_base64(fig, dpi=100):
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi)
    return base64.b64encode(buffer.getvalue()).decode("ascii")


# -------------------------------------------------------------------- report
class ConceptReport:
    """A self-contained HTML report of fitted concepts.

    For every concept: its top units with their activations and a few example
    texts whose units are colored by that concept's activation. With
    ``importance``, a heatmap of concept importance per class. It renders in
    Jupyter (``_repr_html_``) and saves to one offline HTML file (``save``).
    :func:`report` builds it from a fitted pipeline; build it directly from
    arrays to use precomputed activations.

    Parameters
    ----------
    texts : list of str
        The texts the units come from.
    units : pandas.DataFrame
        One row per activation row, with columns ``sample`` (index into
        ``texts``), ``start``, ``end`` (character span) and ``text`` (the unit),
        as returned by :meth:`SplitPointActivations.units`.
    concept_activations : array-like of shape (n_units, n_concepts)
        Concept activation of every unit (the concept estimator's ``transform``).
    top_inputs : pandas.DataFrame, default=None
        Top units per concept with columns ``concept``, ``text`` and
        ``activation`` (``TopKInputs.interpret(..., as_frame=True)``). By
        default the ``k`` units with the highest activation, distinct texts.
    importance : array-like or pandas.DataFrame of shape (n_classes, n_concepts), \
default=None
        Concept importance per class, shown as a heatmap and per concept.
    class_names : list of str, default=None
        Names of the rows of ``importance``.
    concept_names : list of str, default=None
        Concept names; default ``concept0 …``.
    k : int, default=8
        Number of top units listed per concept (when ``top_inputs`` is None).
    n_examples : int, default=3
        Number of highlighted example texts per concept: the texts that hold the
        highest activations of the concept.
    title : str, default="skconcepts report"
        Title of the page.
    metadata : dict, default=None
        Key/value pairs shown under the title (model, layer, method, scores).
    labels : list of str, default=None
        One short label per concept (e.g. from
        :func:`skconcepts.interpret.concept_labels` or a
        ``skconcepts.labels.ConceptLabeler``), shown as the concept's title
        and on the heatmap axes; by default the three top units.
    highlights : tuple of (pandas.DataFrame, array-like), default=None
        ``(units, concept_activations)`` of finer units of the same texts
        (e.g. words, from :func:`skconcepts.interpret.word_concept_activations`)
        used to highlight the examples: the words that carry the concept are
        colored, not the whole text. By default the report's own units.
    snippet_chars : int, default=160
        Characters of each example snippet, around the unit of the text that
        activates the concept most (see :func:`snippet_html`).

    Attributes
    ----------
    labels_ : list of str
        The short label of each concept: ``labels``, else its three top units.
    figure_ : matplotlib.figure.Figure or None
        The importance heatmap, or None without ``importance``.

    See Also
    --------
    report : Build the report from a fitted pipeline and texts.

    Examples
    --------
    >>> import numpy as np, pandas as pd
    >>> from skconcepts.viz import ConceptReport
    >>> texts = ["good food", "bad rain"]
    >>> units = pd.DataFrame({"sample": [0, 0, 1, 1], "start": [0, 5, 0, 4],
    ...                       "end": [4, 9, 3, 8],
    ...                       "text": ["good", "food", "bad", "rain"]})
    >>> C = np.array([[0.1, 0.0], [0.9, 0.0], [0.0, 0.3], [0.0, 0.8]])
    >>> rep = ConceptReport(texts, units, C, k=2, n_examples=1)
    >>> rep.labels_
    ['food, good', 'rain, bad']
    >>> "concept1" in rep._repr_html_()
    True
    """

    def __init__(
        self,
        texts,
        units,
        concept_activations,
        *,
        top_inputs=None,
        importance=None,
        class_names=None,
        concept_names=None,
        k=8,
        n_examples=3,
        title="skconcepts report",
        metadata=None,
        labels=None,
        highlights=None,
        snippet_chars=SNIPPET_CHARS,
    ):
        C = np.asarray(concept_activations, dtype=float)
        if C.ndim != 2 or C.shape[0] != len(units):
            raise ValueError(
                f"concept_activations has shape {C.shape} but units has "
                f"{len(units)} rows; pass one row of concept activations per unit."
            )
        missing = {"sample", "start", "end", "text"} - set(units.columns)
        if missing:
            raise ValueError(
                f"units lacks the columns {sorted(missing)}; pass the table of "
                "SplitPointActivations.units(texts)."
            )
        self.texts = list(texts)
        self.units = units.reset_index(drop=True)
        self.concept_activations = C
        self.concept_names = list(
            concept_names or [f"concept{j}" for j in range(C.shape[1])]
        )
        if len(self.concept_names) != C.shape[1]:
            raise ValueError(
                f"{len(self.concept_names)} concept names for {C.shape[1]} concepts."
            )
        self.k = k
        self.n_examples = n_examples
        self.title = title
        self.metadata = dict(metadata or {})
        self.top_inputs = _top_units_table(
            top_inputs, self.units, C, self.concept_names, k
        )
        self.snippet_chars = snippet_chars
        self.highlights = _check_highlights(highlights, units, C)
        if labels is None:
            self.labels_ = [
                ", ".join(self._top(j)["text"].astype(str).head(3))
                for j in range(C.shape[1])
            ]
        else:
            self.labels_ = [str(label) for label in labels]
            if len(self.labels_) != C.shape[1]:
                raise ValueError(
                    f"labels has {len(self.labels_)} items for {C.shape[1]} "
                    "concepts; pass one short label per concept."
                )
        self.importance = None
        self.figure_ = None
        if importance is not None:
            values, classes, _ = _importance_table(
                importance, class_names, self.concept_names
            )
            self.importance = (values, classes)
            self.figure_ = plot_concept_importance(
                values,
                class_names=classes,
                concept_names=_axis_names(self.concept_names, self.labels_),
            )

    def _top(self, j):
        return self.top_inputs[self.top_inputs["concept"] == j]

    # ------------------------------------------------------------- rendering
    def to_html(self, *, full=True):
        """The report as HTML.

        Parameters
        ----------
        full : bool, default=True
            A complete HTML document; ``False`` gives the fragment that
            ``_repr_html_`` shows in Jupyter.

        Returns
        -------
        html : str
            Self-contained HTML (inline CSS, embedded images, no script).
        """
        parts = [f"<style>{_CSS}</style>", '<div class="skc-report">']
        parts.append(f"<h1>{html.escape(self.title)}</h1>")
        if self.metadata:
            rows = "".join(
                f"<tr><th>{html.escape(str(key))}</th>"
                f"<td>{html.escape(str(value))}</td></tr>"
                for key, value in self.metadata.items()
            )
            parts.append(f'<table class="skc-meta">{rows}</table>')
        if self.figure_ is not None:
            png = _figure_png_base64(self.figure_)
            parts.append(
                '<div class="skc-importance"><img alt="concept importance per '
                f'class" src="data:image/png;base64,{png}"></div>'
            )
        for j in range(len(self.concept_names)):
            parts.append(self._concept_html(j))
        parts.append("</div>")
        body = "\n".join(parts)
        if not full:
            return body
        return (
            '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
            f"<title>{html.escape(self.title)}</title>\n</head>\n<body>\n{body}\n"
            "</body>\n</html>\n"
        )

    def _concept_html(self, j):
        name = html.escape(self.concept_names[j])
        out = [
            f'<section class="skc-concept" id="{name}">',
            f'<h2>{name} <span class="skc-label">{html.escape(self.labels_[j])}'
            "</span></h2>",
        ]
        if self.importance is not None:
            values, classes = self.importance
            cells = ", ".join(
                f"{html.escape(c)}: {v:+.3g}" for c, v in zip(classes, values[:, j])
            )
            out.append(f'<p class="skc-class-importance">Importance: {cells}</p>')
        top = self._top(j)
        vmax = float(np.max(np.abs(self.concept_activations[:, j]))) or 1.0
        rows = "".join(
            f"<tr><td>{html.escape(str(t))}</td><td>{a:.3g}</td>"
            f'<td><span class="skc-bar" style="width: '
            f'{100 * min(max(a, 0) / vmax, 1):.0f}px"></span></td></tr>'
            for t, a in zip(top["text"], top["activation"])
        )
        out.append(
            '<table class="skc-top"><tr><th>top unit</th><th>activation</th>'
            f"<th></th></tr>{rows}</table>"
        )
        units, C = self.highlights
        word_vmax = float(np.max(np.abs(C[:, j]))) if len(C) else 0.0
        for sample in self._examples(j):
            rows = units.index[units["sample"] == sample]
            spans = list(zip(units.loc[rows, "start"], units.loc[rows, "end"]))
            fragment = snippet_html(
                self.texts[sample],
                spans,
                C[rows, j],
                width=self.snippet_chars,
                vmax=word_vmax or 1.0,
            )
            out.append(f'<p class="skc-example">{fragment}</p>')
        out.append("</section>")
        return "\n".join(out)

    def _examples(self, j):
        """Indices of the texts with the highest activation of concept ``j``."""
        peak = (
            self.units[["sample"]]
            .assign(a=self.concept_activations[:, j])
            .groupby("sample")["a"]
            .max()
        )
        return [int(s) for s in peak.nlargest(self.n_examples).index]

    def _repr_html_(self):
        return self.to_html(full=False)

    def save(self, path):
        """Write the report to one self-contained HTML file.

        Parameters
        ----------
        path : str or path-like
            The file to write (``.html``); its folder is created if needed.

        Returns
        -------
        path : pathlib.Path
            The written file.
        """
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(self.to_html(), encoding="utf-8")
        return path

    def __repr__(self):
        return (
            f"ConceptReport(n_concepts={len(self.concept_names)}, "
            f"n_texts={len(self.texts)}, n_units={len(self.units)})"
        )


def _check_highlights(highlights, units, C):
    """``(units, C)`` used to color the examples (default: the report's own)."""
    if highlights is None:
        return units.reset_index(drop=True), C
    h_units, h_C = highlights
    h_C = np.asarray(h_C, dtype=float)
    missing = {"sample", "start", "end"} - set(h_units.columns)
    if missing or h_C.ndim != 2 or h_C.shape != (len(h_units), C.shape[1]):
        raise ValueError(
            f"highlights must be (units, concept_activations) with the columns "
            f"sample, start, end and one row of {C.shape[1]} concept activations "
            f"per unit; got {len(h_units)} units, activations of shape "
            f"{h_C.shape}. Pass word_concept_activations(pipeline, texts) in "
            "reverse order: (units, C)."
        )
    return h_units.reset_index(drop=True), h_C


def _axis_names(concept_names, labels):
    """``name: label`` (the label shortened) for the heatmap axes."""
    names = []
    for name, label in zip(concept_names, labels):
        if len(label) > _AXIS_LABEL_CHARS:
            label = label[: _AXIS_LABEL_CHARS - 1].rstrip(", ") + "…"
        names.append(f"{name}: {label}" if label else name)
    return names


def _top_units_table(top_inputs, units, C, concept_names, k):
    """Top units per concept as a frame with integer ``concept`` positions."""
    if top_inputs is None:
        return TopKInputs(k=k).interpret_concepts(C, units, as_frame=True)
    top_inputs = top_inputs.copy()
    positions = {name: j for j, name in enumerate(concept_names)}

    def position(concept):
        if isinstance(concept, str) and concept in positions:
            return positions[concept]
        try:
            return int(concept)
        except (TypeError, ValueError):
            raise ValueError(
                f"top_inputs names the concept {concept!r}, which is not one of "
                f"{concept_names[:5]}...; pass the same concept names."
            ) from None

    top_inputs["concept"] = top_inputs["concept"].map(position)
    return top_inputs


def report(
    pipeline,
    texts,
    *,
    activations=None,
    importance=None,
    class_names=None,
    k=8,
    n_examples=3,
    title="skconcepts report",
    metadata=None,
    progress=None,
    labels=None,
    snippet_chars=SNIPPET_CHARS,
):
    """Build the :class:`ConceptReport` of a fitted pipeline on texts.

    Every concept is titled by its short label of distinctive words
    (:func:`skconcepts.interpret.concept_labels`), and its examples are
    snippets of the texts that activate it most, with the words that carry
    the concept highlighted (the texts encoded at word level with the same
    dictionary, also when the pipeline's units are sentences or texts). That
    is one more pass of the model over ``texts`` at word level, unless the
    pipeline's granularity is ``"word"`` and ``activations`` are given.

    Parameters
    ----------
    pipeline : sklearn.pipeline.Pipeline
        A fitted pipeline whose first step is a
        :class:`~skconcepts.SplitPointActivations` and that holds a concept
        estimator (steps between them, e.g. ``NonNegative``, are applied; steps
        after it, e.g. a classifier, are ignored). A token, word or sentence
        granularity gives per-unit highlights; ``sample`` colors whole texts.
    texts : list of str
        Texts to show.
    activations : array-like of shape (n_units, n_features), default=None
        The first step's ``transform(texts)``, when already computed.
    importance : array-like or pandas.DataFrame of shape (n_classes, n_concepts), \
default=None
        Concept importance per class (e.g. attributions), drawn as a heatmap.
    class_names : list of str, default=None
        Names of the rows of ``importance``.
    k : int, default=8
        Top units listed per concept.
    n_examples : int, default=3
        Highlighted example texts per concept.
    title : str, default="skconcepts report"
        Page title.
    metadata : dict, default=None
        Key/value pairs shown under the title.
    progress : bool or None, default=None
        Progress bars while activations are computed (``None``: when stderr is
        an interactive terminal or a notebook; ``True`` always; ``False``
        never).
    labels : list of str, default=None
        One short title per concept; by default the distinctive words of
        :func:`skconcepts.interpret.concept_labels` on ``texts``.
    snippet_chars : int, default=160
        Characters of each example snippet.

    Returns
    -------
    report : ConceptReport
        Shows in Jupyter; ``report.save("report.html")`` writes the file.

    Examples
    --------
    >>> from sklearn.pipeline import make_pipeline
    >>> from skconcepts import SplitPointActivations, PCAConcepts
    >>> from skconcepts.datasets import load_demo_corpus
    >>> from skconcepts.viz import report
    >>> texts = load_demo_corpus()[0][:8]
    >>> pipe = make_pipeline(
    ...     SplitPointActivations(split_point=1, granularity="word"),
    ...     PCAConcepts(n_concepts=2)).fit(texts)
    >>> rep = report(pipe, texts, k=3, n_examples=1)
    >>> len(rep.labels_), rep.units.shape[0] == pipe.transform(texts).shape[0]
    (2, True)
    >>> rep.save("report.html")  # doctest: +SKIP
    """
    texts = check_texts(texts)
    parts = split_pipeline(pipeline, require_extractor=True)
    extractor, estimator = parts.extractor, parts.concepts
    if activations is None:
        activations = _transform_with_progress(extractor, texts, progress)
    concepts = encode(parts, activations)
    top = TopKInputs(k=k, progress=progress).interpret(
        pipeline, texts, activations=activations, as_frame=True
    )
    # words of the same texts, encoded with the same dictionary: titles and
    # highlights (no model run when the pipeline is at word level)
    word_C, word_units = word_concept_activations(
        pipeline, texts, progress=progress, activations=activations
    )
    if labels is None:
        labels = distinctive_labels(word_C, word_units["text"])
    return ConceptReport(
        texts,
        extractor.units(texts),
        concepts,
        top_inputs=top,
        importance=importance,
        class_names=class_names,
        concept_names=[str(n) for n in estimator.get_feature_names_out()],
        k=k,
        n_examples=n_examples,
        title=title,
        metadata=metadata,
        labels=labels,
        highlights=(word_units, word_C),
        snippet_chars=snippet_chars,
    )


def _transform_with_progress(extractor, texts, progress):
    if progress is not None and "progress" in extractor.get_params():
        previous = extractor.get_params()["progress"]
        extractor.set_params(progress=progress)
        try:
            return extractor.transform(texts)
        finally:
            extractor.set_params(progress=previous)
    return extractor.transform(texts)


# ------------------------------------------------ input attribution highlights
# (appended by the rerun helper; the rest of this module is the reading helper's)
def input_attribution_html(
    pipeline,
    texts,
    concept,
    *,
    granularity="word",
    n_steps=None,
    attributions=None,
    progress=None,
):
    """Texts with the units that make a concept fire highlighted.

    Each unit of each text is colored by its attribution to the activation of
    ``concept`` (from :func:`skconcepts.input_concept_gradient`): orange when
    the unit raises the concept's activation, blue when it lowers it; the
    value shows as a tooltip. One line per text, every line scaled to its own
    largest ``|value|``.

    Parameters
    ----------
    pipeline : Pipeline
        A fitted pipeline starting with a
        :class:`~skconcepts.SplitPointActivations` and ending in an affine
        concept estimator (see :func:`~skconcepts.input_concept_gradient`).
    texts : list of str
        The texts.
    concept : int
        The concept whose input attribution is shown.
    granularity : {"token", "word", "sentence", "sample"}, default="word"
        The highlighted units.
    n_steps : int or None, default=None
        None for gradient × input, an int for integrated gradients.
    attributions : list of torch.Tensor or None, default=None
        Precomputed ``input_concept_gradient(pipeline, texts,
        granularity=granularity)`` (all concepts); None computes them for
        ``concept``.
    progress : bool or None, default=None
        Show a progress bar while computing.

    Returns
    -------
    html : str
        An HTML fragment: one ``<div>`` per text.

    Examples
    --------
    >>> from sklearn.pipeline import make_pipeline
    >>> from skconcepts import SplitPointActivations, PCAConcepts
    >>> from skconcepts.viz import input_attribution_html
    >>> from skconcepts.utils._testing import make_tiny_model
    >>> model, tokenizer = make_tiny_model("bert")
    >>> texts = ["A fine day.", "The soup was cold."]
    >>> pipe = make_pipeline(
    ...     SplitPointActivations(model, tokenizer=tokenizer, split_point=1),
    ...     PCAConcepts(n_concepts=2),
    ... ).fit(texts)
    >>> page = input_attribution_html(pipe, texts, concept=0)
    >>> page.count("<div"), "soup" in page
    (2, True)
    """
    texts = check_texts(texts, name="texts")
    extractor = split_pipeline(pipeline, require_extractor=True).extractor
    if attributions is None:
        attributions = input_concept_gradient(
            pipeline,
            texts,
            concepts=[concept],
            granularity=granularity,
            n_steps=n_steps,
            progress=progress,
        )
        rows = [a[0] for a in attributions]
    else:
        if len(attributions) != len(texts):
            raise ValueError(
                f"attributions has {len(attributions)} items but there are "
                f"{len(texts)} texts; pass input_concept_gradient(pipeline, texts, "
                "granularity=granularity)."
            )
        rows = [a[concept] for a in attributions]
    lines = []
    for text, enc, values in zip(texts, extractor.encode(texts), rows):
        _, spans = unit_index(
            granularity,
            text,
            enc.offsets,
            enc.special_tokens_mask,
            enc.word_ids,
            exclude_special_tokens=extractor.exclude_special_tokens,
        )
        values = np.asarray(values, dtype=float).reshape(-1)
        if len(values) != len(spans):
            raise ValueError(
                f"attributions hold {len(values)} units for {text!r} but it has "
                f"{len(spans)} units at granularity={granularity!r}; compute them "
                "at the same granularity."
            )
        lines.append(
            f'<div class="skc-line">{highlight_html(text, spans, values)}</div>'
        )
    return "\n".join(lines)


__all__ += ["input_attribution_html"]
