"""The compiled prediction path agrees with PyMC's own posterior predictive sampling."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pymc as pm
import pytensor.tensor as pt
import pytest
from pytensor.graph.traversal import ancestors

from estimators import predictive
from estimators.linear_model import LinearRegression, LogisticRegression
from tests.conftest import FAST
from tests.references import (
    linear_regression_draws,
    normal_mixture_summary,
    one_draw_each_standard_errors,
    posterior_draws,
    softmax_class_probabilities,
)

#: Posterior draws of the fits. PyMC draws one predictive value per posterior draw, so the
#: Monte Carlo error of its summaries shrinks with their square root; ADVI draws cost nothing.
N_DRAWS = 2000


@pytest.fixture(scope="module")
def regressor(regression_data):
    X, y, _ = regression_data
    return LinearRegression(**{**FAST, "n_draws": N_DRAWS}).fit(X, y)


@pytest.fixture(scope="module")
def classifier(binary_data):
    X, y, _ = binary_data
    return LogisticRegression(**{**FAST, "n_draws": N_DRAWS}).fit(X, y)


def _pymc_predictive(estimator, X, var_name="y_obs"):
    """``pm.sample_posterior_predictive`` at new rows, on a freshly rebuilt model."""
    fresh = type(estimator).from_fitted_state(estimator.get_params(), estimator.get_fitted_state(), estimator.idata_)
    model = fresh.pymc_model()
    with model:
        pm.set_data({"X": np.asarray(X), "y": np.zeros(len(X), dtype=model["y"].dtype)})
        draws = pm.sample_posterior_predictive(estimator.idata_, progressbar=False, random_seed=1)
    return draws.posterior_predictive[var_name].stack(sample=("chain", "draw")).values.T


def test_regression_summaries_match_pymc_within_monte_carlo_error(regressor, regression_data):
    X, _, _ = regression_data
    # Rows 20 training standard deviations from the centre: parameter uncertainty there is
    # half the predictive variance or more, not the few percent it is at the training rows.
    rows = X.iloc[:40].to_numpy()
    X_new = 20 * rows / np.linalg.norm(rows, axis=1, keepdims=True)
    pymc_draws = _pymc_predictive(regressor, X_new)
    pymc_summary = {
        "mean": pymc_draws.mean(axis=0),
        "std": pymc_draws.std(axis=0),
        "lower": np.quantile(pymc_draws, 0.05, axis=0),
        "upper": np.quantile(pymc_draws, 0.95, axis=0),
    }
    summary = regressor.predict_summary(X_new, interval_prob=0.9)
    # PyMC and we each draw one predictive value per posterior draw of the same posterior:
    # each misses the exact Normal mixture by at most these standard errors (given the
    # draws; references.one_draw_each_standard_errors), so the two differ by at most
    # sqrt(2) times as much. Four such errors: about 7% of the std for the std, a quarter of
    # the std for an interval bound; the noise alone is more than 30% off.
    mu, sigma = linear_regression_draws(regressor, X_new)
    reference = normal_mixture_summary(mu, sigma, 0.9)
    errors = one_draw_each_standard_errors(mu, sigma, reference)
    for key, expected in pymc_summary.items():
        tolerance = 4 * np.sqrt(2) * errors[key]
        assert np.all(np.abs(summary[key] - expected) < tolerance), (key, summary[key], expected, tolerance)
    # The noise alone (posterior-mean parameters) would miss PyMC's std by over two tolerances.
    assert np.all(pymc_summary["std"] - sigma.mean() > 2 * 4 * np.sqrt(2) * errors["std"])


def test_predictive_mean_is_the_likelihoods_closed_form_mean_averaged_over_draws(
    regressor, regression_data, monkeypatch
):
    X, _, _ = regression_data
    monkeypatch.setattr(regressor, "closed_form_mean", True)
    mu, _ = linear_regression_draws(regressor, X.iloc[:40])
    # Exact given the posterior draws (PyMC's mean of the Normal likelihood), where a mean of
    # one predictive draw per posterior draw would miss it by Monte Carlo error.
    np.testing.assert_allclose(regressor.predict(X.iloc[:40]), mu.mean(axis=0), rtol=1e-10, atol=1e-12)
    summary = regressor.predict_summary(X.iloc[:40], interval_prob=0.9)
    np.testing.assert_array_equal(summary["mean"], regressor.predict(X.iloc[:40]))
    draws = regressor.sample_posterior_predictive(X.iloc[:40])
    assert not np.allclose(draws.mean(axis=0), summary["mean"], rtol=1e-6)


def test_class_probabilities_match_pymc_label_frequencies(classifier, binary_data):
    X, _, _ = binary_data
    X_new = X.iloc[:40]
    labels = _pymc_predictive(classifier, X_new)
    frequency = labels.mean(axis=0)  # share of class index 1
    proba = classifier.predict_proba(X_new)[:, 1]
    # Four binomial standard errors of PyMC's label frequency: 0.045 at p = 0.5.
    tolerance = 4 * np.sqrt(proba * (1 - proba) / labels.shape[0]) + 1e-3
    assert np.all(np.abs(proba - frequency) < tolerance)


def test_sampled_labels_are_the_inverse_cdf_of_each_draws_probabilities(classifier, binary_data):
    X, _, _ = binary_data
    X_new = X.iloc[:40]
    labels = classifier.sample_posterior_predictive(X_new)
    assert labels.shape == (classifier.n_posterior_draws_, 40)
    # Draw s is labelled class 1 exactly when its uniform exceeds its probability of class 0,
    # computed in NumPy from the draw's coefficients.
    per_draw = softmax_class_probabilities(
        posterior_draws(classifier, "intercept"), posterior_draws(classifier, "coef"), X_new
    )
    uniforms = classifier.posterior_predictor().uniforms[:, None]
    expected = np.where(uniforms > per_draw[..., 0], classifier.classes_[1], classifier.classes_[0])
    np.testing.assert_array_equal(labels, expected)


def test_chunked_prediction_equals_one_chunk(regressor, regression_data, monkeypatch):
    X, _, _ = regression_data
    whole = regressor.predict_summary(X, interval_prob=0.8)
    monkeypatch.setattr(predictive, "MAX_ELEMENTS_PER_CHUNK", 7 * regressor.n_posterior_draws_)
    chunked = regressor.predict_summary(X, interval_prob=0.8)
    for key in whole:
        # Equal up to BLAS blocking of the matrix product (last-bit differences).
        np.testing.assert_allclose(whole[key], chunked[key], rtol=1e-12, atol=1e-12)


def test_concurrent_predictions_from_many_threads_are_correct(regressor, regression_data):
    X, _, _ = regression_data
    slices = [X.iloc[i : i + 25] for i in range(0, 400, 25)]
    expected = [regressor.predict(s) for s in slices]
    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(regressor.predict, slices * 4))
    for got, want in zip(results, expected * 4):
        np.testing.assert_array_equal(got, want)


def test_prediction_function_is_compiled_once(regressor, regression_data):
    X, _, _ = regression_data
    first = regressor.posterior_predictor()
    regressor.predict(X.iloc[:3])
    regressor.predict_interval(X.iloc[:5])
    assert regressor.posterior_predictor() is first


def test_replacing_inputs_keeps_the_random_variables_they_do_not_reach():
    """The mixture weights stay the model's own when the inputs are replaced: a copy would
    draw from its prior, not take the posterior draws. Plain ``graph_replace`` copies them
    here, since both random variables take ``size=None`` (the same ``NoneConst``)."""
    x, new_x = pt.vector("x"), pt.vector("new_x")
    weights = pt.random.dirichlet(np.ones(2))
    noise = pt.random.normal(x, 1.0)
    (replaced,) = predictive.replace_keeping_random_variables([pt.log(weights).sum() + noise], {x: new_x})
    assert weights in ancestors([replaced])
    assert new_x in ancestors([replaced]) and x not in ancestors([replaced]) and noise not in ancestors([replaced])
