"""The compiled prediction path agrees with PyMC's own posterior predictive sampling."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pymc as pm
import pytest

from estimators import predictive
from estimators.linear_model import LinearRegression, LogisticRegression
from tests.conftest import FAST


@pytest.fixture(scope="module")
def regressor(regression_data):
    X, y, _ = regression_data
    return LinearRegression(**{**FAST, "n_draws": 500}).fit(X, y)


@pytest.fixture(scope="module")
def classifier(binary_data):
    X, y, _ = binary_data
    return LogisticRegression(**{**FAST, "n_draws": 500}).fit(X, y)


def _pymc_predictive(estimator, X, var_name="y_obs"):
    """``pm.sample_posterior_predictive`` at new rows, on a freshly rebuilt model."""
    fresh = type(estimator).from_fitted_state(
        estimator.get_params(), estimator.get_fitted_state(), estimator.idata_
    )
    model = fresh.pymc_model()
    with model:
        pm.set_data({"X": np.asarray(X), "y": np.zeros(len(X), dtype=model["y"].dtype)})
        draws = pm.sample_posterior_predictive(estimator.idata_, progressbar=False, random_seed=1)
    return draws.posterior_predictive[var_name].stack(sample=("chain", "draw")).values.T


def test_regression_summaries_match_pymc_within_monte_carlo_error(regressor, regression_data):
    X, _, _ = regression_data
    X_new = X.iloc[:40] * 1.5
    reference = _pymc_predictive(regressor, X_new)
    summary = regressor.predict_summary(X_new, interval_prob=0.9)
    n_draws = reference.shape[0]
    # Standard error of PyMC's sample mean; ours (stratified) is far smaller.
    mean_error = reference.std(axis=0) / np.sqrt(n_draws)
    assert np.all(np.abs(summary["mean"] - reference.mean(axis=0)) < 4 * mean_error)
    np.testing.assert_allclose(summary["std"], reference.std(axis=0), rtol=0.12)
    lower, upper = np.quantile(reference, [0.05, 0.95], axis=0)
    scale = reference.std(axis=0)
    assert np.all(np.abs(summary["lower"] - lower) < 0.25 * scale)
    assert np.all(np.abs(summary["upper"] - upper) < 0.25 * scale)


def test_class_probabilities_match_pymc_label_frequencies(classifier, binary_data):
    X, _, _ = binary_data
    X_new = X.iloc[:40]
    labels = _pymc_predictive(classifier, X_new)
    frequency = labels.mean(axis=0)  # share of class index 1
    proba = classifier.predict_proba(X_new)[:, 1]
    tolerance = 4 * np.sqrt(proba * (1 - proba) / labels.shape[0]) + 1e-3
    assert np.all(np.abs(proba - frequency) < tolerance)


def test_sampled_labels_follow_the_probabilities(classifier, binary_data):
    X, _, _ = binary_data
    X_new = X.iloc[:40]
    labels = classifier.sample_posterior_predictive(X_new)
    assert labels.shape == (classifier.n_posterior_draws_, 40)
    assert set(np.unique(labels)) <= set(classifier.classes_)
    share = (labels == classifier.classes_[1]).mean(axis=0)
    proba = classifier.predict_proba(X_new)[:, 1]
    assert np.all(np.abs(share - proba) < 4 * np.sqrt(proba * (1 - proba) / labels.shape[0]) + 1e-3)


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
