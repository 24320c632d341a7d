"""Predictions and posteriors against independent references, never against our own predictor.

The linear models' predictive mean, std, interval and class probabilities are compared
with NumPy computations from the same posterior draws (tests/references.py), on data
where parameter uncertainty is a large part of the answer: few training rows and new rows
far outside the training range. There, a predictor that used the posterior-mean
parameters (the noise alone, or plug-in probabilities) misses the reference by many times
the tolerance; each test checks that too, so that the data keep their power. A NUTS
posterior is compared with the closed form of a conjugate model.
"""

from __future__ import annotations

import arviz_base
import arviz_stats
import numpy as np
import pymc as pm
import pytensor.tensor as pt
import pytest
from scipy.special import ndtri
from scipy.stats import norm

from estimators.base import BayesianEstimator, BayesianRegressorMixin
from estimators.linear_model import LinearRegression, LogisticRegression
from tests.conftest import FAST
from tests.references import (
    assert_within_monte_carlo_error,
    linear_regression_draws,
    logistic_regression_proba,
    normal_mixture_cdf,
    normal_mixture_quantile,
    normal_mixture_summary,
    one_draw_each_standard_errors,
    posterior_draws,
    quantile_standard_errors,
    softmax_class_probabilities,
)

#: Posterior draws of the ADVI fits: the Monte Carlo error of one predictive draw per
#: posterior draw shrinks with their square root, and drawing them costs nothing.
N_DRAWS = 1000
#: Tolerance of a predictive summary, in its Monte Carlo standard errors (see
#: references.one_draw_each_standard_errors: an upper bound for our stratified draws).
N_ERRORS = 4.0
INTERVAL_PROB = 0.9

#: New rows 2 to 5 units outside the training box [-1, 1]^2: parameter uncertainty there
#: makes the predictive std of the 12-row fit 1.8 to 4.4 times the noise's.
FAR_ROWS = np.array([[3.0, 0.0], [0.0, -3.0], [4.0, 4.0], [-5.0, 3.0], [6.0, -6.0], [-3.0, -3.0]])


@pytest.fixture(scope="module")
def few_rows_regressor():
    """LinearRegression fitted on 12 rows, y = 1 + 2 x0 - x1 + N(0, 0.5)."""
    rng = np.random.default_rng(3)
    X = rng.uniform(-1, 1, size=(12, 2))
    y = 1.0 + X @ [2.0, -1.0] + rng.normal(scale=0.5, size=12)
    return LinearRegression(**{**FAST, "n_draws": N_DRAWS}).fit(X, y)


@pytest.fixture(scope="module", params=["binary", "multiclass"])
def few_rows_classifier(request):
    """LogisticRegression fitted on 20 (binary) or 45 (three classes) rows: wide posteriors."""
    rng = np.random.default_rng(3)
    n_rows, intercept, coef = {
        "binary": (20, [0.3], [[1.5, -1.0]]),
        "multiclass": (45, [0.5, -0.5], [[1.5, -1.0], [-1.0, 2.0]]),
    }[request.param]
    X = rng.normal(size=(n_rows, 2))
    proba = softmax_class_probabilities(np.array([intercept]), np.array([coef]), X)[0]
    y = (rng.uniform(size=(n_rows, 1)) > proba.cumsum(axis=1)).sum(axis=1)
    return LogisticRegression(**{**FAST, "n_draws": N_DRAWS}).fit(X, np.array(["a", "b", "c"])[y])


def _noise_only(mu, sigma):
    """The (wrong) predictive of the posterior-mean parameters: one Normal, the noise alone."""
    return normal_mixture_summary(mu.mean(axis=0, keepdims=True), sigma.mean(axis=0, keepdims=True), INTERVAL_PROB)


# -- the reference itself ----------------------------------------------------------------


def test_reference_mixture_of_one_normal_is_that_normal():
    mu, sigma = np.array([[1.0, -2.0]]), np.array([[0.5, 3.0]])
    summary = normal_mixture_summary(mu, sigma, INTERVAL_PROB)
    np.testing.assert_allclose(summary["std"], sigma[0])
    np.testing.assert_allclose(summary["upper"], norm.ppf(0.95, mu[0], sigma[0]), rtol=1e-12)
    np.testing.assert_allclose(summary["lower"], norm.ppf(0.05, mu[0], sigma[0]), rtol=1e-12)


def test_reference_mixture_quantile_inverts_its_cdf():
    rng = np.random.default_rng(0)
    mu, sigma = rng.normal(size=(50, 3)) * [1.0, 5.0, 0.1], rng.uniform(0.1, 2.0, size=(50, 1))
    for prob in (0.01, 0.3, 0.95):
        np.testing.assert_allclose(normal_mixture_cdf(normal_mixture_quantile(mu, sigma, prob), mu, sigma), prob)


# -- the linear regression's predictive ------------------------------------------------


def test_each_predictive_draw_is_its_posterior_draws_normal_quantile(few_rows_regressor):
    """Draw s at row x is mu_s(x) + sigma_s * Phi^-1(u_s): the right draw's mean and noise."""
    mu, sigma = linear_regression_draws(few_rows_regressor, FAR_ROWS)
    uniforms = few_rows_regressor.posterior_predictor().uniforms[:, None]
    samples = few_rows_regressor.sample_posterior_predictive(FAR_ROWS)
    # Equal up to rounding: our graph works on standardised features, the reference on raw ones.
    np.testing.assert_allclose(samples, mu + sigma * ndtri(uniforms), rtol=1e-9, atol=1e-9)


def test_predictive_mean_matches_the_reference(few_rows_regressor):
    mu, sigma = linear_regression_draws(few_rows_regressor, FAR_ROWS)
    mean = few_rows_regressor.predict(FAR_ROWS)
    assert_within_monte_carlo_error({"mean": mean}, mu, sigma, n_errors=N_ERRORS)


def test_predictive_std_is_noise_plus_parameter_uncertainty(few_rows_regressor):
    mu, sigma = linear_regression_draws(few_rows_regressor, FAR_ROWS)
    _, std = few_rows_regressor.predict(FAR_ROWS, return_std=True)
    reference, tolerance = assert_within_monte_carlo_error({"std": std}, mu, sigma, n_errors=N_ERRORS)
    # The noise alone (the posterior-mean parameters) is more than two tolerances away on every row.
    assert np.all(np.abs(_noise_only(mu, sigma)["std"] - reference["std"]) > 2 * tolerance["std"])


def test_predictive_interval_is_the_posterior_mixtures_quantiles(few_rows_regressor):
    mu, sigma = linear_regression_draws(few_rows_regressor, FAR_ROWS)
    lower, upper = few_rows_regressor.predict_interval(FAR_ROWS, prob=INTERVAL_PROB).T
    reference, tolerance = assert_within_monte_carlo_error(
        {"lower": lower, "upper": upper}, mu, sigma, interval_prob=INTERVAL_PROB, n_errors=N_ERRORS
    )
    # The interval of the noise alone is more than two tolerances away on every row.
    noise_only = _noise_only(mu, sigma)
    for bound in ("lower", "upper"):
        assert np.all(np.abs(noise_only[bound] - reference[bound]) > 2 * tolerance[bound])


def test_predictive_quantiles_are_the_posterior_mixtures_quantiles(few_rows_regressor):
    """Each quantile level is the posterior predictive mixture's quantile, within 4 Monte
    Carlo errors; the tails are more than two tolerances from the noise-only quantiles."""
    levels = [0.05, 0.25, 0.5, 0.75, 0.95]
    mu, sigma = linear_regression_draws(few_rows_regressor, FAR_ROWS)
    got = few_rows_regressor.predict_quantiles(FAR_ROWS, levels)
    assert got.shape == (len(FAR_ROWS), len(levels))
    assert np.all(np.diff(got, axis=1) > 0)
    for column, level in enumerate(levels):
        reference = normal_mixture_quantile(mu, sigma, level)
        tolerance = N_ERRORS * quantile_standard_errors(reference, mu, sigma)
        deviation = np.abs(got[:, column] - reference)
        assert np.all(deviation < tolerance), (level, deviation, tolerance)
        if level in (0.05, 0.95):
            noise_only = normal_mixture_quantile(
                mu.mean(axis=0, keepdims=True), sigma.mean(axis=0, keepdims=True), level
            )
            assert np.all(np.abs(noise_only - reference) > 2 * tolerance)
    # The same computation as the interval's bounds (0.9's tails are 0.05 up to rounding).
    np.testing.assert_allclose(got[:, [0, 4]], few_rows_regressor.predict_interval(FAR_ROWS, prob=0.9), rtol=1e-12)


# -- the logistic regression's class probabilities -----------------------------------------


def test_class_probabilities_average_over_the_posterior_draws(few_rows_classifier):
    rows = np.vstack([[[0.0, 0.0], [1.0, 1.0]], FAR_ROWS])
    proba = few_rows_classifier.predict_proba(rows)
    reference = logistic_regression_proba(few_rows_classifier, rows)
    # No Monte Carlo enters predict_proba: the same draws give the same mean up to
    # rounding (our graph works on standardised features, the reference on raw ones).
    np.testing.assert_allclose(proba, reference, rtol=0, atol=1e-9)
    # The probabilities of the posterior-mean coefficients (plug-in) differ by far more.
    plug_in = softmax_class_probabilities(
        posterior_draws(few_rows_classifier, "intercept").mean(axis=0, keepdims=True),
        posterior_draws(few_rows_classifier, "coef").mean(axis=0, keepdims=True),
        rows,
    )[0]
    assert np.abs(plug_in - reference).max() > 0.05


# -- NUTS against a conjugate closed form ------------------------------------------------


class KnownNoiseRegression(BayesianRegressorMixin, BayesianEstimator):
    """Linear regression with known noise and Normal priors on raw features: a conjugate model.

    Parameters
    ----------
    noise_sigma : float
        The known standard deviation of the Normal noise.
    prior_scale : float
        Standard deviation of the Normal(0, prior_scale) priors on the intercept and coefficients.
    **inference_params
        Inference settings of :class:`~estimators.base.BayesianEstimator`.
    """

    def __init__(self, *, noise_sigma: float = 1.0, prior_scale: float = 1.0, **inference_params):
        super().__init__(**inference_params)
        self.noise_sigma = noise_sigma
        self.prior_scale = prior_scale

    def build_model(self, X, y):
        intercept = pm.Normal("intercept", 0.0, self.prior_scale)
        coef = pm.Normal("coef", 0.0, self.prior_scale, shape=X.get_value().shape[1])
        pm.Normal("y_obs", intercept + pt.dot(X, coef), self.noise_sigma, observed=y, shape=X.shape[0])


def _conjugate_posterior(X, y, noise_sigma, prior_scale):
    """Exact posterior mean and covariance of (intercept, coef...) of :class:`KnownNoiseRegression`."""
    design = np.column_stack([np.ones(len(X)), X])
    precision = design.T @ design / noise_sigma**2 + np.eye(design.shape[1]) / prior_scale**2
    covariance = np.linalg.inv(precision)
    return covariance @ design.T @ y / noise_sigma**2, covariance


@pytest.fixture(scope="module")
def conjugate_fit():
    """A NUTS fit of :class:`KnownNoiseRegression` on 12 rows, and its exact posterior."""
    rng = np.random.default_rng(4)
    X = rng.normal(size=(12, 2))
    y = 1.0 + X @ [2.0, -1.0] + rng.normal(scale=0.5, size=12)
    model = KnownNoiseRegression(
        noise_sigma=0.5,
        prior_scale=1.0,
        inference="nuts",
        n_draws=1000,
        n_tune=500,
        n_chains=2,
        random_seed=0,
        progressbar=False,
    ).fit(X, y)
    return model, *_conjugate_posterior(X, y, model.noise_sigma, model.prior_scale)


def _monte_carlo_standard_errors(draws: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Standard errors of the mean and the sd of each column of NUTS draws (chain, draw, k).

    ArviZ's formulas (its ``mcse(method="sd")`` itself fails under NumPy 2 with numba): the
    variance of the estimate over the effective sample size of the draws (of their squared
    deviations for the sd, by the delta method).
    """
    squares = (draws - draws.mean(axis=(0, 1))) ** 2

    def ess(values):
        return arviz_stats.ess(arviz_base.convert_to_dataset({"x": values}), method="mean")["x"].values

    variance = squares.mean(axis=(0, 1))
    return np.sqrt(variance / ess(draws)), np.sqrt(squares.var(axis=(0, 1)) / ess(squares)) / (2 * np.sqrt(variance))


def test_nuts_posterior_matches_the_conjugate_closed_form(conjugate_fit):
    model, mean, covariance = conjugate_fit
    posterior = model.idata_.posterior
    draws = np.concatenate([posterior["intercept"].values[..., None], posterior["coef"].values], axis=-1)
    mcse_mean, mcse_sd = _monte_carlo_standard_errors(draws)
    sd = np.sqrt(np.diag(covariance))
    estimate_mean, estimate_sd = draws.mean(axis=(0, 1)), draws.std(axis=(0, 1))
    assert np.all(np.abs(estimate_mean - mean) < 4 * mcse_mean), (estimate_mean, mean, mcse_mean)
    assert np.all(np.abs(estimate_sd - sd) < 4 * mcse_sd), (estimate_sd, sd, mcse_sd)
    # The sd tolerance is under a tenth of the sd: a posterior 20% too narrow or wide fails.
    assert np.all(4 * mcse_sd < 0.1 * sd), mcse_sd / sd
    # The correlations too (the features are not orthogonal): within 0.1.
    flat = draws.reshape(-1, draws.shape[-1])
    np.testing.assert_allclose(np.corrcoef(flat.T), covariance / np.outer(sd, sd), atol=0.1)


def test_nuts_predictive_std_matches_the_closed_form(conjugate_fit):
    """Predictive variance x' Sigma x + sigma^2: parameter uncertainty plus the known noise."""
    model, _, covariance = conjugate_fit
    design = np.column_stack([np.ones(len(FAR_ROWS)), FAR_ROWS])
    exact_std = np.sqrt(np.einsum("ni,ij,nj->n", design, covariance, design) + model.noise_sigma**2)
    _, std = model.predict(FAR_ROWS, return_std=True)
    # The estimate's error: that of the sd of the NUTS draws of mu(x), plus that of the one
    # predictive draw per posterior draw (references.one_draw_each_standard_errors).
    posterior = model.idata_.posterior
    mu = posterior["intercept"].values[..., None] + posterior["coef"].values @ FAR_ROWS.T  # (chain, draw, row)
    _, mcse_mu_sd = _monte_carlo_standard_errors(mu)
    mu, sigma = mu.reshape(-1, len(FAR_ROWS)), np.full((1, 1), model.noise_sigma)
    error_of_draws = one_draw_each_standard_errors(mu, sigma, normal_mixture_summary(mu, sigma))["std"]
    tolerance = 4 * np.hypot(mcse_mu_sd * mu.std(axis=0) / std, error_of_draws)
    assert np.all(np.abs(std - exact_std) < tolerance), (std, exact_std, tolerance)
    # The noise alone is more than two tolerances away on every row.
    assert np.all(exact_std - model.noise_sigma > 2 * tolerance), (exact_std - model.noise_sigma) / tolerance
