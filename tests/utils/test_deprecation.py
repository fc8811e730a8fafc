"""utils._deprecation: renamed parameters keep their old name for one release."""

import warnings

import pytest
from sklearn.base import BaseEstimator

from skconcepts.utils._deprecation import DEPRECATED, renamed_param


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
