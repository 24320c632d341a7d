"""The estimator contract beyond its data: hyper-parameter constraints, ``NotFittedError``, the docstring examples.

Bad data (features, targets, the group column), at fit and predict as at the pyfunc and
the endpoint, is tested in ``test_bad_input.py``.
"""

from __future__ import annotations

import doctest
import importlib

import numpy as np
import pandas as pd
import pytest
from sklearn.exceptions import NotFittedError

from estimators.linear_model import HierarchicalLogisticRegression, LinearRegression, LogisticRegression

#: The fits here are refused or never made: the smallest settings.
TINY = {"n_draws": 20, "max_iter": 200, "random_seed": 0, "progressbar": False}


@pytest.fixture(scope="module")
def frame():
    rng = np.random.default_rng(0)
    X = pd.DataFrame(rng.normal(size=(60, 3)), columns=["x0", "x1", "x2"])
    y = pd.Series(X.to_numpy() @ [1.0, -1.0, 0.5] + rng.normal(scale=0.3, size=60), name="y")
    return X, y


# -- hyper-parameters ---------------------------------------------------------------------


def test_unknown_inference_method(frame):
    X, y = frame
    with pytest.raises(
        ValueError, match=r"'inference' parameter of LinearRegression must be a str among .*'nuts'.*\. Got 'mcmc'"
    ):
        LinearRegression(inference="mcmc").fit(X, y)


@pytest.mark.parametrize("name", ["prior_scale_coef", "prior_scale_intercept", "prior_scale_noise"])
def test_negative_prior_scale(frame, name):
    X, y = frame
    with pytest.raises(
        ValueError, match=rf"'{name}' parameter of LinearRegression must be a float in the range \(0.0, inf\)\. Got -1"
    ):
        LinearRegression(**{name: -1.0}).fit(X, y)


# -- not fitted ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "estimator",
    [LinearRegression(**TINY), LogisticRegression(**TINY), HierarchicalLogisticRegression(group_col=0, **TINY)],
    ids=lambda estimator: type(estimator).__name__,
)
def test_not_fitted_error_before_fit(estimator, frame):
    X, _ = frame
    methods = ["predict", "sample_posterior_predictive"]
    methods += ["predict_interval"] if hasattr(estimator, "predict_interval") else ["predict_proba"]
    for method in methods:
        with pytest.raises(NotFittedError):
            getattr(estimator, method)(X)
    with pytest.raises(NotFittedError):
        estimator.posterior_mean("intercept")
    if hasattr(type(estimator), "coef_"):
        with pytest.raises(NotFittedError):
            estimator.coef_  # noqa: B018


def test_a_failed_fit_leaves_the_estimator_unfitted(frame):
    X, y = frame
    model = LinearRegression(**TINY)
    with pytest.raises(ValueError, match="NaN"):
        model.fit(X, y.where(y.index != 3))  # X passed validation, y did not
    assert hasattr(model, "n_features_in_")
    with pytest.raises(NotFittedError):
        model.predict(X)


# -- docstring examples -------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize(
    "module",
    [
        "estimators.linear_model._linear",
        "estimators.linear_model._hierarchical",
        "estimators.neural_network._multilayer_perceptron",
        "estimators.naive_bayes._gaussian",
        "estimators.mixture._gaussian_mixture",
        "estimators.gaussian_process._gpr",
        "estimators.gaussian_process._sparse",
    ],
)
def test_docstring_examples_run(module):
    result = doctest.testmod(
        importlib.import_module(module), optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE
    )
    assert result.attempted > 0
    assert result.failed == 0
