"""utils._progress: one tqdm helper; ``progress=None`` follows tqdm's own rule."""

import inspect
import io
import sys

import pytest

from skconcepts import SplitPointActivations, TopKInputs
from skconcepts.utils._progress import (
    progress_bar,
    progress_disabled,
    progress_enabled,
)
from skconcepts.utils.discovery import all_estimators


class _Terminal(io.StringIO):
    """A stderr that says it is an interactive terminal."""

    def isatty(self):
        return True


def test_default_is_hidden_when_stderr_is_not_a_terminal(capsys):
    assert not sys.stderr.isatty()  # pytest captures stderr
    with progress_bar(range(3), desc="quiet") as bar:
        assert bar.disable
        list(bar)
    assert "quiet" not in capsys.readouterr().err
    assert progress_enabled(None) is False


def test_default_is_shown_on_a_terminal(monkeypatch):
    terminal = _Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    with progress_bar(total=2, desc="loud") as bar:
        assert not bar.disable
        bar.update(2)
    assert "loud" in terminal.getvalue()
    assert progress_enabled(None) is True


def test_true_forces_and_false_disables(capsys, monkeypatch):
    with progress_bar(range(2), progress=True, desc="forced") as bar:
        list(bar)
    assert "forced" in capsys.readouterr().err
    monkeypatch.setattr(sys, "stderr", _Terminal())
    with progress_bar(range(2), progress=False) as bar:
        assert bar.disable
    assert progress_enabled(True) and not progress_enabled(False)
    assert (progress_disabled(None), progress_disabled(True)) == (None, False)


def _progress_defaults():
    """``(name, default)`` of every public ``progress`` parameter."""
    classes = [cls for _, cls in all_estimators()] + [SplitPointActivations]
    out = []
    for cls in classes:
        params = inspect.signature(cls.__init__).parameters
        if "progress" in params:
            out.append((cls.__name__, params["progress"].default))
    out.append(("TopKInputs", TopKInputs().progress))
    import skconcepts.attribution
    import skconcepts.store
    import skconcepts.viz

    for fn in (
        skconcepts.attribution.concept_output_gradient,
        skconcepts.store.extract_to_store,
        skconcepts.store.transform_store,
        skconcepts.viz.report,
    ):
        out.append((fn.__name__, inspect.signature(fn).parameters["progress"].default))
    return out


def test_every_long_operation_defaults_to_tqdms_rule():
    defaults = _progress_defaults()
    assert len(defaults) > 10
    assert [name for name, value in defaults if value is not None] == []


@pytest.mark.parametrize("value", [None, True, False])
def test_estimators_accept_none_true_false(value):
    TopKInputs(progress=value).get_params()  # validated at use
    SplitPointActivations(progress=value)._validate_params()
