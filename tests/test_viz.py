"""Tests of skconcepts.viz: highlights, the HTML report, the importance plot.

The report is also opened in headless Chromium, and the screenshot's pixels are
checked (not blank, highlight color visible); without Chromium that test skips.
"""

import html
import re
import shutil
import subprocess

import numpy as np
import pandas as pd
import pytest
from sklearn.base import clone
from sklearn.pipeline import make_pipeline

from skconcepts import PCAConcepts, viz
from skconcepts.interpret import concept_labels, word_concept_activations
from skconcepts.viz import (
    NEGATIVE_RGB,
    POSITIVE_RGB,
    ConceptReport,
    highlight_html,
    plot_concept_importance,
    report,
    snippet_html,
)

TAG = re.compile(r"<[^>]+>")


def _alphas(fragment):
    """(token, alpha or 0, rgb or None) of every highlighted span of a fragment."""
    out = []
    pattern = (
        r'<span class="skc-tok"(?: style="background-color: '
        r'rgba\((\d+), (\d+), (\d+), ([\d.]+)\)")? title="[^"]*">(.*?)</span>'
    )
    for r, g, b, a, token in re.findall(pattern, fragment):
        rgb = (int(r), int(g), int(b)) if r else None
        out.append((html.unescape(token), float(a) if a else 0.0, rgb))
    return out


# ---------------------------------------------------------------- highlights
def test_highlight_html_keeps_the_text_and_scales_opacity():
    text = "a <b> & c"
    spans = [(8, 9), (0, 1), (2, 5)]  # unordered on purpose
    fragment = highlight_html(text, spans, [1.0, 4.0, -2.0])
    assert html.unescape(TAG.sub("", fragment)) == text  # gaps and escapes kept
    assert "<b>" not in fragment  # escaped
    tokens = _alphas(fragment)
    assert [(t, rgb) for t, _, rgb in tokens] == [
        ("a", POSITIVE_RGB),
        ("<b>", (31, 119, 180)),  # negative: blue
        ("c", POSITIVE_RGB),
    ]
    # opacity |value| / max |value| (x 0.85), rounded to 2 decimals
    expected = [0.85, 0.85 * 2 / 4, 0.85 * 1 / 4]
    assert [a for _, a, _ in tokens] == pytest.approx(expected, abs=0.006)


def test_highlight_html_vmax_clips_and_overlaps_are_skipped():
    fragment = highlight_html(
        "abcdef", [(0, 3), (2, 4), (4, 6)], [5.0, 1.0, 0.0], vmax=2.0
    )
    tokens = _alphas(fragment)
    # (2, 4) overlaps (0, 3): only its uncovered part "d" is a unit
    assert [t for t, _, _ in tokens] == ["abc", "d", "ef"]
    assert tokens[0][1] == 0.85  # clipped at vmax
    assert tokens[1][1] == pytest.approx(0.85 / 2, abs=0.01)
    assert tokens[2][2] is None  # zero activation: no color


def test_highlight_html_rejects_mismatched_values():
    with pytest.raises(ValueError, match="spans has 2 items but values has 1"):
        highlight_html("ab", [(0, 1), (1, 2)], [1.0])


# -------------------------------------------------------------------- report
@pytest.fixture
def synthetic():
    texts = ["pizza is good", "rain and wind", "pizza in the rain"]
    rows = []
    for i, t in enumerate(texts):
        for m in re.finditer(r"\S+", t):
            rows.append((i, m.start(), m.end(), m.group()))
    units = pd.DataFrame(rows, columns=["sample", "start", "end", "text"])
    food = units["text"].map({"pizza": 3.0, "good": 1.0}).fillna(0.0)
    weather = units["text"].map({"rain": 2.0, "wind": 1.5}).fillna(0.0)
    C = np.column_stack([food, weather])
    return texts, units, C


def test_concept_report_content(synthetic, tmp_path):
    texts, units, C = synthetic
    rep = ConceptReport(
        texts, units, C, k=2, n_examples=2, title="T <1>", metadata={"model": "tiny"}
    )
    assert rep.labels_ == ["pizza, good", "rain, wind"]
    doc = rep.to_html()
    assert doc.startswith("<!DOCTYPE html>") and "T &lt;1&gt;" in doc
    for name in ("concept0", "concept1"):
        assert f'<section class="skc-concept" id="{name}">' in doc
    # examples of concept1: the two texts with "rain", whose tokens are blue-free
    section = doc.split('id="concept1"')[1]
    examples = re.findall(r'<p class="skc-example">(.*?)</p>', section)
    plain = [html.unescape(TAG.sub("", e)) for e in examples]
    assert plain == ["rain and wind", "pizza in the rain"]
    rain = [a for t, a, _ in _alphas(examples[0]) if t == "rain"]
    assert rain == [0.85]  # the concept's maximum has the full color
    # self-contained: no script, no external resource
    assert "<script" not in doc and "http" not in doc
    path = rep.save(tmp_path / "sub" / "r.html")
    assert path.read_text(encoding="utf-8") == doc
    fragment = rep._repr_html_()
    assert "<html" not in fragment and "concept1" in fragment


def test_concept_report_importance_and_top_inputs(synthetic):
    texts, units, C = synthetic
    top = pd.DataFrame(
        {
            "concept": ["concept1", "concept0"],
            "text": ["wind", "good"],
            "activation": [1.5, 1.0],
        }
    )
    imp = pd.DataFrame(
        [[0.5, -0.25], [-0.1, 0.75]],
        index=["food", "weather"],
        columns=["concept0", "concept1"],
    )
    rep = ConceptReport(texts, units, C, top_inputs=top, importance=imp)
    assert rep.labels_ == ["good", "wind"]  # the given table wins
    doc = rep.to_html()
    assert doc.count('src="data:image/png;base64,') == 1
    assert "Importance: food: -0.25, weather: +0.75" in doc
    assert rep.figure_ is not None


def test_concept_report_validates(synthetic):
    texts, units, C = synthetic
    with pytest.raises(ValueError, match="one row of concept activations per unit"):
        ConceptReport(texts, units, C[:-1])
    with pytest.raises(ValueError, match=r"lacks the columns \['start'\]"):
        ConceptReport(texts, units.drop(columns="start"), C)
    with pytest.raises(ValueError, match="not one of"):
        ConceptReport(
            texts,
            units,
            C,
            top_inputs=pd.DataFrame(
                {"concept": ["nope"], "text": ["a"], "activation": [1.0]}
            ),
        )


# ---------------------------------------------------------------------- plot
def test_plot_concept_importance_draws_the_values():
    values = np.array([[0.5, -0.1, 0.0], [-0.2, 0.7, 0.3]])
    fig = plot_concept_importance(values, class_names=["neg", "pos"])
    ax = fig.axes[0]
    np.testing.assert_array_equal(ax.images[0].get_array(), values)
    assert [t.get_text() for t in ax.get_xticklabels()] == [
        "concept0",
        "concept1",
        "concept2",
    ]
    assert ax.images[0].get_clim() == (-0.7, 0.7)  # symmetric color scale
    assert sorted(t.get_text() for t in ax.texts) == sorted(
        f"{v:.2g}" for v in values.ravel()
    )
    frame = pd.DataFrame(values, index=["a", "b"], columns=["x", "y", "z"])
    ax = plot_concept_importance(frame).axes[0]
    assert [t.get_text() for t in ax.get_yticklabels()] == ["a", "b"]


def test_plot_concept_importance_validates():
    with pytest.raises(ValueError, match="must be 2-D"):
        plot_concept_importance(np.zeros((2, 2, 2)))
    with pytest.raises(ValueError, match="but 3 class names"):
        plot_concept_importance(np.zeros((2, 2)), class_names=["a", "b", "c"])


# ----------------------------------------------------------- from a pipeline
@pytest.fixture(scope="module")
def fitted(minilm, demo_corpus):
    from sklearn.pipeline import make_pipeline

    from skconcepts import PCAConcepts, SplitPointActivations

    model, tokenizer = minilm
    texts = demo_corpus[0][:16]
    pipe = make_pipeline(
        SplitPointActivations(
            model, tokenizer=tokenizer, split_point=2, granularity="word"
        ),
        PCAConcepts(n_concepts=3),
    ).fit(texts)
    return pipe, texts


def test_report_from_pipeline(fitted):
    from skconcepts import TopKInputs

    pipe, texts = fitted
    rep = report(pipe, texts, k=4, n_examples=2)
    X = pipe[0].transform(texts)
    np.testing.assert_allclose(
        rep.concept_activations, pipe.transform(texts), rtol=1e-5, atol=1e-5
    )
    top = TopKInputs(k=4).interpret(pipe, texts, activations=X)
    assert rep.top_inputs["text"].tolist() == [t for j in range(3) for t in top[j]]
    # titles: the distinctive words, not the top units
    assert rep.labels_ == concept_labels(pipe, texts)
    assert len(rep.units) == X.shape[0]
    doc = rep.to_html()
    assert doc.count('class="skc-example"') == 3 * 2
    for label in rep.labels_:
        assert f'<span class="skc-label">{html.escape(label)}</span>' in doc
    given = report(pipe, texts, k=4, n_examples=1, labels=["x", "y", "z"])
    assert given.labels_ == ["x", "y", "z"]
    assert '<span class="skc-label">y</span>' in given.to_html()


def test_report_highlights_words_of_sample_level_texts(fitted):
    """Sample-level units: examples colored word by word, not as one block."""
    word_pipe, texts = fitted
    pipe = make_pipeline(
        clone(word_pipe[0]).set_params(granularity="sample"),
        PCAConcepts(n_concepts=2),
    ).fit(texts)
    rep = report(pipe, texts, k=2, n_examples=1, snippet_chars=60)
    C, units = word_concept_activations(pipe, texts)
    for j in range(2):
        section = rep._concept_html(j)
        example = re.search(r'<p class="skc-example">(.*?)</p>', section).group(1)
        sample = rep._examples(j)[0]
        words = units[units["sample"] == sample]
        colored = re.findall(r'title="[^"]+">([^<]+)</span>', example)
        # one span per word of the snippet, the strongest word among them
        assert len(colored) > 1
        peak = words["text"].to_numpy()[np.argmax(C[words.index, j])]
        assert peak in colored
        text = re.sub("<[^>]+>", "", example)
        assert len(text) <= 60 + 4 or text == texts[sample]
        assert text.strip(" …") in texts[sample]


def test_snippet_is_a_window_around_the_peak_word():
    words = [f"w{i}" for i in range(60)]
    text = " ".join(words) + "."
    spans = [(m.start(), m.end()) for m in re.finditer(r"\w+|\.", text)]
    values = np.zeros(len(spans))
    values[30] = 3.0
    values[31] = -1.0
    fragment = snippet_html(text, spans, values, width=40)
    plain = re.sub("<[^>]+>", "", fragment)
    assert plain.startswith("… ") and plain.endswith(" …")
    inner = plain[2:-2]
    assert inner in text and "w30" in inner and len(inner) <= 40
    assert inner.split()[0] in words and inner.split()[-1] in words  # whole words
    # colors of the whole text's scale: w30 full orange, w31 blue
    tokens = {t: (a, rgb) for t, a, rgb in _alphas(fragment)}
    assert tokens["w30"][1] == POSITIVE_RGB and tokens["w31"][1] == NEGATIVE_RGB
    # a short text is shown whole
    assert re.sub("<[^>]+>", "", snippet_html("a b", [(0, 1), (2, 3)], [1, 0])) == (
        "a b"
    )


def test_highlights_keep_the_spacing_of_punctuation():
    text = 'He said: "no," (twice) -- it\'s done; fine! Right? Yes.'
    spans = [m.span() for m in re.finditer(r"\w+|[^\w\s]", text)]
    values = np.linspace(-1, 1, len(spans))
    fragment = highlight_html(text, spans, values)
    assert html.unescape(re.sub("<[^>]+>", "", fragment)) == text
    for mark in [",", ";", "!", "?", ".", ")", ":"]:
        assert f" {mark}" not in html.unescape(re.sub("<[^>]+>", "", fragment))
    # no padding or margin around the highlighted units: nothing that reads as a
    # space before punctuation
    rule = re.search(r"\.skc-tok \{([^}]*)\}", viz._CSS).group(1)
    assert "padding: 0;" in rule and "margin: 0;" in rule


def test_report_rejects_a_bare_estimator(fitted):
    pipe, texts = fitted
    with pytest.raises(TypeError, match="must be a fitted sklearn Pipeline"):
        report(pipe[-1], texts)


# ------------------------------------------------------------------ chromium
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def screenshot(html_path, png_path, tmp_path, size=(1200, 1600)):
    """Render ``html_path`` with headless Chromium into ``png_path``."""
    cmd = [
        CHROMIUM,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--hide-scrollbars",
        f"--user-data-dir={tmp_path / 'chromium-profile'}",
        f"--screenshot={png_path}",
        f"--window-size={size[0]},{size[1]}",
        html_path.resolve().as_uri(),
    ]
    subprocess.run(cmd, check=True, capture_output=True, timeout=90)


@pytest.mark.skipif(
    CHROMIUM is None, reason="Chromium not installed (apt-get install -y chromium)"
)
def test_report_renders_in_chromium(fitted, tmp_path):
    from PIL import Image

    pipe, texts = fitted
    imp = np.array([[0.4, -0.2, 0.1], [-0.3, 0.5, 0.0]])
    path = report(
        pipe, texts, importance=imp, class_names=["neg", "pos"], n_examples=2
    ).save(tmp_path / "report.html")
    png = tmp_path / "shot.png"
    screenshot(path, png, tmp_path)
    pixels = np.asarray(Image.open(png).convert("RGB")).astype(int)
    assert pixels.shape == (1600, 1200, 3)
    non_white = (pixels.min(axis=2) < 235).mean()
    assert non_white > 0.01, f"page looks blank ({non_white:.4f} non-white)"
    # the highlight color (255, 127, 14) blended on white at opacity a is
    # (255, 255 - 128 a, 255 - 241 a): R saturated, (255 - G) / (255 - B) = 0.53.
    # Nothing else on the page has that hue (bars are gray, the heatmap RdBu).
    r, g, b = pixels[..., 0], pixels[..., 1], pixels[..., 2]
    fade_b = 255 - b
    ratio = (255 - g) / np.maximum(fade_b, 1)
    orange = (r >= 250) & (fade_b > 40) & (np.abs(ratio - 128 / 241) < 0.06)
    assert orange.sum() > 2000, f"no visible highlight ({orange.sum()} pixels)"
