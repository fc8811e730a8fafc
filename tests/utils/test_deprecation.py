"""utils._deprecation: renamed parameters keep their old name for one release."""

import warnings

import numpy as np
import pytest
from sklearn.base import BaseEstimator

from skconcepts import TopKSAEConcepts
from skconcepts.utils._deprecation import DEPRECATED, renamed_kwarg, renamed_param


class _Est(BaseEstimator):
    def __init__(self, n_passes=10, max_epochs=DEPRECATED):
        self.n_passes = n_passes
        self.max_epochs = max_epochs

    def fit(self, X=None):
        self.n_passes_ = renamed_param(self, "max_epochs", "n_passes")
        return self


def test_the_old_name_warns_and_wins():
    with pytest.warns(
        FutureWarning,
        match=r"_Est\(max_epochs=...\) is deprecated .* use _Est\(n_passes=...\)",
    ):
        assert _Est(max_epochs=3).fit().n_passes_ == 3


def test_the_new_name_is_silent():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert _Est(n_passes=4).fit().n_passes_ == 4
        assert _Est().get_params()["max_epochs"] == DEPRECATED


def test_renamed_kwarg_maps_warns_and_refuses_both():
    @renamed_kwarg("activations", "extractor")
    def run(extractor, texts, *, k=1):
        """Doc."""
        return extractor, texts, k

    assert run("e", "t") == ("e", "t", 1)
    with pytest.warns(
        FutureWarning, match=r"run\(activations=\.\.\.\).*run\(extractor"
    ):
        assert run(activations="e", texts="t", k=2) == ("e", "t", 2)
    for call in (
        lambda: run("e", "t", activations="e"),
        lambda: run(extractor="e", texts="t", activations="e"),
    ):
        with pytest.raises(TypeError, match="both extractor= and its deprecated"):
            call()
    assert run.__name__ == "run" and run.__doc__ == "Doc."


def test_a_deprecated_parameter_warns_at_the_users_line():
    X = np.random.default_rng(0).normal(size=(64, 8)).astype(np.float32)
    sae = TopKSAEConcepts(4, max_epochs=1, top_k=2, batch_size=32, random_state=0)
    with pytest.warns(FutureWarning, match="max_epochs") as caught:
        sae.fit(X)  # read deep inside fit; the warning names this line
    assert [w.filename for w in caught if "max_epochs" in str(w.message)] == [__file__]
