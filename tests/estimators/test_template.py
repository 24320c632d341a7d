"""The bespoke-model template: both ways of taking the inference settings, and the settings declared once.

A user's class either passes ``**inference_params`` on (every setting becomes a parameter),
or names some settings in its signature the scikit-learn way and passes those on. Both
must clone, ``get_params`` / ``set_params``, run in a parameter search and pass
scikit-learn's parameter checks.
"""

from __future__ import annotations

import inspect

import numpy as np
import pymc as pm
import pytest
from sklearn.base import clone
from sklearn.model_selection import GridSearchCV
from sklearn.utils.estimator_checks import (
    check_dont_overwrite_parameters,
    check_get_params_invariance,
    check_parameters_default_constructible,
    check_set_params,
)

from estimators.base import BayesianEstimator, BayesianRegressorMixin
from estimators.settings import PARAMETER_CONSTRAINTS, SETTING_NAMES, InferenceSettings


def _normal_regression(X, y, prior_scale):
    coef = pm.Normal("coef", 0.0, prior_scale, shape=X.get_value().shape[1])
    intercept = pm.Normal("intercept", 0.0, 10.0)
    sigma = pm.HalfNormal("sigma", 1.0)
    pm.Normal("y_obs", intercept + X @ coef, sigma, observed=y, shape=X.shape[0])


class PassingSettingsOn(BayesianRegressorMixin, BayesianEstimator):
    """Every inference setting is a parameter, through ``**inference_params``."""

    def __init__(self, *, prior_scale=1.0, **inference_params):
        super().__init__(**inference_params)
        self.prior_scale = prior_scale

    def build_model(self, X, y):
        _normal_regression(X, y, self.prior_scale)


class NamingSomeSettings(BayesianRegressorMixin, BayesianEstimator):
    """The scikit-learn way: only the settings named here are parameters."""

    def __init__(
        self, *, prior_scale=1.0, inference="advi", n_draws=100, max_iter=3000, random_seed=None, progressbar=False
    ):
        super().__init__(
            inference=inference, n_draws=n_draws, max_iter=max_iter, random_seed=random_seed, progressbar=progressbar
        )
        self.prior_scale = prior_scale

    def build_model(self, X, y):
        _normal_regression(X, y, self.prior_scale)


FAST = {"inference": "advi", "n_draws": 100, "max_iter": 3000, "random_seed": 0, "progressbar": False}
CLASSES = {"passing_settings_on": PassingSettingsOn, "naming_some_settings": NamingSomeSettings}


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(60, 2))
    return X, X @ np.array([1.5, -0.5]) + 0.3 * rng.normal(size=60)


def test_the_parameters_are_the_signature():
    assert set(PassingSettingsOn().get_params()) == {"prior_scale", *SETTING_NAMES}
    assert set(NamingSomeSettings().get_params()) == {
        "prior_scale",
        "inference",
        "n_draws",
        "max_iter",
        "random_seed",
        "progressbar",
    }
    # A class's own default stands; the settings it does not name keep the base's defaults
    # (and are not parameters).
    assert (NamingSomeSettings().inference, PassingSettingsOn().inference) == ("advi", "nuts")
    assert NamingSomeSettings().nuts_sampler == "pymc"


@pytest.mark.parametrize("name", CLASSES)
def test_both_ways_clone_and_set_params(name):
    cls = CLASSES[name]
    estimator = cls(prior_scale=2.0, random_seed=3)
    copy = clone(estimator)
    assert copy.get_params() == estimator.get_params()
    assert copy.set_params(n_draws=50).n_draws == 50
    check_parameters_default_constructible(name, cls())
    check_get_params_invariance(name, cls())
    check_set_params(name, cls())


@pytest.mark.parametrize("name", CLASSES)
def test_both_ways_fit_in_a_parameter_search(name, data):
    X, y = data
    settings = FAST if name == "passing_settings_on" else {"random_seed": 0}
    search = GridSearchCV(CLASSES[name](**settings), {"prior_scale": [0.01, 3.0], "n_draws": [50]}, cv=2).fit(X, y)
    # A prior scale of 0.01 shrinks the slopes (1.5, -0.5) to nothing: the wide prior wins.
    assert search.best_params_ == {"prior_scale": 3.0, "n_draws": 50}
    assert search.best_estimator_.n_posterior_draws_ == 50
    np.testing.assert_allclose(search.best_estimator_.posterior_mean("coef"), [1.5, -0.5], atol=0.2)
    check_dont_overwrite_parameters(name, CLASSES[name](**settings))


def test_unknown_setting_is_refused():
    with pytest.raises(TypeError, match=r"unexpected keyword argument\(s\) \['n_draw'\]"):
        PassingSettingsOn(n_draw=10)


def test_settings_are_declared_once():
    """Signature, constraints and docs all come from the one declaration."""
    signature = inspect.signature(BayesianEstimator)
    defaults = InferenceSettings()
    assert [name for name in signature.parameters] == list(SETTING_NAMES)
    for name in SETTING_NAMES:
        assert signature.parameters[name].default == getattr(defaults, name)
        assert BayesianEstimator._parameter_constraints[name] == PARAMETER_CONSTRAINTS[name]
        assert f"\n    {name} : " in BayesianEstimator.__doc__
    # A subclass passing the settings on shows them in its own signature.
    assert list(inspect.signature(PassingSettingsOn).parameters) == ["prior_scale", *SETTING_NAMES]
