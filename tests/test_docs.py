"""Fast checks of the Sphinx sources (the full build runs in CI with -W)."""

import importlib.util
import re
from pathlib import Path

import pytest

import skconcepts

DOCS = Path(__file__).resolve().parents[1] / "docs"


@pytest.fixture(scope="module")
def conf():
    spec = importlib.util.spec_from_file_location(
        "skconcepts_docs_conf", DOCS / "conf.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _listed(rst):
    return set(re.findall(r"^   (\w+)$", (DOCS / rst).read_text(), flags=re.M))


def test_api_reference_lists_every_public_name():
    listed = _listed("api.rst")
    missing = sorted(set(skconcepts.__all__) - listed)
    assert not missing, f"add {missing} to docs/api.rst"
    from skconcepts import viz

    assert set(viz.__all__) <= listed


def test_every_user_guide_page_is_in_the_toctree():
    pages = {p.stem for p in (DOCS / "user_guide").glob("*.rst")} - {"index"}
    assert pages == _listed("user_guide/index.rst")


def test_benchmark_table_is_inserted(conf, tmp_path, monkeypatch):
    monkeypatch.setattr(conf, "HERE", tmp_path)
    source = [(DOCS / "benchmarks.rst").read_text()]

    class Env:
        deps = []

        def note_dependency(self, path):
            self.deps.append(path)

    app = type("App", (), {"env": Env()})()
    conf._insert_benchmarks(app, "benchmarks", source)
    assert "has not been generated" in source[0]
    assert conf.BENCHMARK_MARKER not in source[0]

    (tmp_path / "benchmarks.md").write_text("| a | b |\n|---|---|\n| 1 | 2 |\n")
    source = [(DOCS / "benchmarks.rst").read_text()]
    conf._insert_benchmarks(app, "benchmarks", source)
    assert (
        ".. code-block:: text\n\n   | a | b |\n   |---|---|\n   | 1 | 2 |" in source[0]
    )
    assert app.env.deps == [str(tmp_path / "benchmarks.md")] * 2


def test_shape_names_are_quoted(conf):
    lines = ["feature_names_in_ : ndarray of shape (n_features_in_,)"]
    conf._quote_fitted_names_in_shapes(None, "class", "x", None, {}, lines)
    assert lines == ["feature_names_in_ : ndarray of shape (``n_features_in_``,)"]
