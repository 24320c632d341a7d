"""SkproRegressor: our regressors in skpro, with each row's exact posterior predictive mixture."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pymc as pm
import pytest
from scipy import stats
from scipy.special import logsumexp

from estimators.base import BayesianEstimator, BayesianRegressorMixin
from estimators.linear_model import LinearRegression
from tests.references import linear_regression_draws, normal_mixture_cdf, posterior_draws

skpro = pytest.importorskip("skpro")
from skpro.benchmarking.evaluate import evaluate  # noqa: E402
from skpro.metrics import CRPS  # noqa: E402
from skpro.utils.estimator_checks import check_estimator  # noqa: E402

from estimators.skpro import SkproRegressor  # noqa: E402

FAST = {"inference": "advi", "n_draws": 200, "max_iter": 3000, "random_seed": 0, "progressbar": False}
LEVELS = [0.05, 0.25, 0.5, 0.9]


class StudentTRegression(BayesianRegressorMixin, BayesianEstimator):
    """A bespoke regressor with Student-t noise: its mixture goes through the compiled log density and CDF."""

    def build_model(self, X, y):
        coef = pm.Normal("coef", 0.0, 2.0, shape=X.get_value().shape[1])
        intercept = pm.Normal("intercept", 0.0, 5.0)
        pm.StudentT("y_obs", nu=4.0, mu=intercept + X @ coef, sigma=pm.HalfNormal("sigma", 2.0), observed=y)


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(5)
    X = pd.DataFrame(rng.normal(size=(160, 2)), columns=["a", "b"])
    y = pd.Series(1.0 + X.to_numpy() @ np.array([1.5, -0.5]) + 0.7 * rng.standard_t(4.0, size=160), name="y")
    return X.iloc[:120], y.iloc[:120], X.iloc[120:], y.iloc[120:]


@pytest.fixture(scope="module", params=["normal", "student_t"])
def fitted(request, data):
    X, y, _, _ = data
    estimator = LinearRegression(**FAST) if request.param == "normal" else StudentTRegression(**FAST)
    return request.param, SkproRegressor(estimator).fit(X, y.to_frame())


def _mixture_reference(family: str, regressor, X_new):
    """Each draw's distribution at the new rows, from the posterior draws with SciPy."""
    if family == "normal":
        mu, sigma = linear_regression_draws(regressor.estimator_, X_new)
        return stats.norm(mu, sigma)
    estimator = regressor.estimator_
    mu = posterior_draws(estimator, "intercept")[:, None] + posterior_draws(estimator, "coef") @ X_new.to_numpy().T
    return stats.t(4.0, mu, posterior_draws(estimator, "sigma")[:, None])


def test_the_distribution_is_the_exact_posterior_predictive_mixture(fitted, data):
    family, regressor = fitted
    _, _, X_new, y_new = data
    distribution = regressor.predict_proba(X_new)
    assert list(distribution.index) == list(X_new.index)
    components = _mixture_reference(family, regressor, X_new)
    target = y_new.to_frame()
    # log_pdf is our pointwise log predictive density, and SciPy's mixture.
    log_pdf = distribution.log_pdf(target).iloc[:, 0].to_numpy()
    np.testing.assert_allclose(log_pdf, regressor.estimator_.log_predictive_density(X_new, y_new), rtol=1e-12)
    reference = logsumexp(components.logpdf(y_new.to_numpy()), axis=0) - np.log(FAST["n_draws"])
    np.testing.assert_allclose(log_pdf, reference, rtol=1e-9)
    cdf = components.cdf(y_new.to_numpy()).mean(axis=0)
    np.testing.assert_allclose(distribution.cdf(target).iloc[:, 0], cdf, rtol=1e-6)
    # ppf inverts the mixture's CDF.
    for level in LEVELS:
        quantile = distribution.ppf(np.full((len(X_new), 1), level)).iloc[:, 0].to_numpy()
        np.testing.assert_allclose(components.cdf(quantile).mean(axis=0), level, atol=1e-7)
    if family == "normal":  # mean and variance in closed form: the law of total variance
        mu, sigma = linear_regression_draws(regressor.estimator_, X_new)
        np.testing.assert_allclose(distribution.mean().iloc[:, 0], mu.mean(axis=0), rtol=1e-12)
        np.testing.assert_allclose(distribution.var().iloc[:, 0], (sigma**2).mean(axis=0) + mu.var(axis=0), rtol=1e-12)


def test_quantiles_and_intervals_are_ours_in_skpro_s_format(fitted, data):
    _, regressor = fitted
    _, _, X_new, _ = data
    ours = regressor.estimator_.predict_quantiles(X_new, LEVELS)
    quantiles = regressor.predict_quantiles(X_new, alpha=LEVELS)
    assert list(quantiles.columns) == [("y", level) for level in LEVELS]
    np.testing.assert_array_equal(quantiles.to_numpy(), ours)
    interval = regressor.predict_interval(X_new, coverage=[0.9])
    assert list(interval.columns) == [("y", 0.9, "lower"), ("y", 0.9, "upper")]
    # skpro asks for the levels 0.5 -+ 0.45, which differ from 0.05 and 0.95 in their last bit.
    ours = regressor.estimator_.predict_quantiles(X_new, [0.05, 0.95])
    np.testing.assert_allclose(interval.to_numpy(), ours, rtol=1e-12)


def test_crps_in_skpro_evaluate_is_the_mixture_s_crps(data):
    """skpro's CRPS (its energy form, closed form for a Normal mixture) against the integral of
    the squared difference of the mixture's CDF and the observation's step."""
    from sklearn.model_selection import KFold

    X, y, _, _ = data
    regressor = SkproRegressor(LinearRegression(**FAST))
    results = evaluate(regressor, KFold(n_splits=2), X, y.to_frame(), scoring=CRPS(), return_data=True)
    assert np.isfinite(results["test_CRPS"]).all()
    first = results.iloc[0]
    y_test, distribution = first["y_test"].iloc[:, 0], first["y_pred_proba"]
    mu, sigma = linear_regression_draws(distribution.estimator, distribution.X)
    grid = np.linspace(y_test.min() - 10, y_test.max() + 10, 40001)
    crps = [
        np.trapezoid((normal_mixture_cdf(grid, mu[:, [row]], sigma) - (grid >= value)) ** 2, grid)
        for row, value in enumerate(y_test)
    ]
    np.testing.assert_allclose(results["test_CRPS"].iloc[0], np.mean(crps), rtol=1e-4)


@pytest.mark.slow
def test_passes_skpro_s_check_estimator():
    check_estimator(SkproRegressor, raise_exceptions=True, verbose=False)


class PoissonRegression(BayesianRegressorMixin, BayesianEstimator):
    """A bespoke count regressor: its mixture has a probability mass function."""

    def build_model(self, X, y):
        coef = pm.Normal("coef", 0.0, 1.0, shape=X.get_value().shape[1])
        pm.Poisson("y_obs", pm.math.exp(pm.Normal("intercept", 0.0, 2.0) + X @ coef), observed=y)


def test_a_count_likelihood_s_mixture_has_its_pmf_cdf_and_quantiles(data):
    X, _, X_new, _ = data
    counts = np.random.default_rng(2).poisson(np.exp(1.0 + X.to_numpy() @ np.array([0.5, -0.3])))
    regressor = SkproRegressor(PoissonRegression(**FAST)).fit(X, pd.DataFrame({"y": counts}))
    distribution = regressor.predict_proba(X_new)
    estimator = regressor.estimator_
    eta = posterior_draws(estimator, "intercept")[:, None] + posterior_draws(estimator, "coef") @ X_new.to_numpy().T
    mu = np.exp(eta)
    values = np.arange(len(X_new)) % 6
    target = pd.DataFrame({"y": values.astype(float)}, index=X_new.index)
    pmf, cdf = stats.poisson.pmf(values, mu).mean(axis=0), stats.poisson.cdf(values, mu).mean(axis=0)
    np.testing.assert_allclose(distribution.pmf(target).iloc[:, 0], pmf, rtol=1e-9)
    np.testing.assert_allclose(distribution.cdf(target).iloc[:, 0], cdf, rtol=1e-6)
    for level in LEVELS:  # the smallest count whose CDF reaches the level
        quantile = distribution.ppf(np.full((len(X_new), 1), level)).iloc[:, 0].to_numpy()
        assert (stats.poisson.cdf(quantile, mu).mean(axis=0) >= level).all()
        assert (stats.poisson.cdf(quantile - 1, mu).mean(axis=0) < level).all()


def test_a_formula_regressor_wraps_with_its_own_log_density_and_quantiles():
    """A bambi formula model (a DataFrame in, its own column names) in skpro: the mixture's
    log_pdf is its pointwise log predictive density, its quantiles are its own."""
    pytest.importorskip("bambi")
    from estimators.formula import BambiRegressor

    rng = np.random.default_rng(11)
    X = pd.DataFrame({"x": rng.normal(size=90), "g": rng.choice(["a", "b", "c"], 90)})
    y = pd.Series(
        0.5 + 1.2 * X["x"] + X["g"].map({"a": -0.4, "b": 0.0, "c": 0.4}) + rng.normal(scale=0.5, size=90), name="y"
    )
    regressor = SkproRegressor(BambiRegressor("y ~ x + (1|g)", **FAST)).fit(X.iloc[:70], y.iloc[:70].to_frame())
    X_new, y_new = X.iloc[70:], y.iloc[70:]
    log_pdf = regressor.predict_proba(X_new).log_pdf(y_new.to_frame()).iloc[:, 0].to_numpy()
    np.testing.assert_allclose(log_pdf, regressor.estimator_.log_predictive_density(X_new, y_new), rtol=1e-12)
    np.testing.assert_array_equal(
        regressor.predict_quantiles(X_new, alpha=LEVELS).to_numpy(),
        regressor.estimator_.predict_quantiles(X_new, LEVELS),
    )
