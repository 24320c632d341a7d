"""The bespoke gallery (``examples/bespoke/``): each model recovers a known truth, and saves, loads and serves.

Every model is fitted once, on the first 300 rows of its module's seeded data, with the
ADVI (named: the estimators' default is now NUTS) and 1,000 posterior draws, and judged on the next 400 rows, whose true
conditional mean (or class probabilities) the module's ``make_data`` returns.
"""

from __future__ import annotations

import importlib.util
import sys
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

import mlflow
import numpy as np
import pandas as pd
import pytest
from model_server import ModelServer
from scipy import stats
from sklearn.base import is_classifier, is_regressor
from sklearn.linear_model import LogisticRegression

import mlflow_pmlearn
from estimators.base import BayesianEstimator
from tests.references import assert_within_standard_errors, draws_mean_standard_errors, posterior_draws

pytestmark = pytest.mark.slow

GALLERY = Path(__file__).resolve().parents[2] / "examples" / "bespoke"
#: The gallery module the models import, shipped beside each model's own file.
SHARED_CODE = GALLERY / "_linear_predictor.py"
N_TRAIN, N_HELD_OUT = 300, 400
#: Seed of the data. Observed coverage of 400 rows is binomial, with a standard deviation
#: of 0.015 around its expectation; the 85-95% band is about three of them either side of 0.9.
DATA_SEED = 2
SETTINGS = {"inference": "advi", "random_seed": 0, "progressbar": False}
INTERVAL_PROB = 0.9
QUANTILES = [0.05, 0.5, 0.95]
#: Rows that the round trips and the servers predict.
N_COMPARED = 30


@dataclass(frozen=True)
class Case:
    """A gallery model, its hyper-parameters, and how far its predictive mean may be from the truth."""

    module: str
    estimator: str
    params: dict
    #: Bound on the mean absolute error of the predictive mean against the true mean,
    #: relative to the true mean when ``relative``, else in the target's units.
    tolerance: float | None = None
    relative: bool = True


# Tolerances: the fitted mean at a row has, on the link scale, a standard error of about
# s * sqrt(p / n), with p = 3 parameters, n = 300 rows and s the noise's standard deviation
# on that scale; its mean absolute error is sqrt(2 / pi) = 0.8 times that. Each bound is three
# times this (the Monte Carlo error of 1,000 draws adds less than a third of it):
# - Poisson, means about 8 to 50 (typically 20): s = 1 / sqrt(20) = 0.22, 0.018 relative -> 0.05;
# - negative binomial, alpha = 5: s = sqrt(1 / 20 + 1 / 5) = 0.5, 0.04 relative -> 0.12;
# - zero-inflated Poisson: the Poisson's 0.018, and psi's standard error, sqrt(0.04 * 0.96 / 300)
#   = 0.011, which shifts every row alike (so is not averaged down): 0.022 relative -> 0.07;
# - Gamma, shape 4: s = 1 / sqrt(4) = 0.5, 0.04 relative -> 0.12;
# - Beta, phi = 20, means near 0.5: s = 1 / sqrt(0.25 * 21) = 0.44 on the logit scale, an
#   absolute error of 0.25 * 0.44 * 0.1 * 0.8 = 0.009 -> 0.025;
# - censored Normal, sigma = 0.5: 0.5 * 0.1 * 0.8 = 0.04 in the target's units (less where censored) -> 0.12.
CASES = {
    "poisson": Case("poisson_regression", "PoissonRegression", {}, 0.05),
    "negative_binomial": Case("negative_binomial_regression", "NegativeBinomialRegression", {}, 0.12),
    "zero_inflated_poisson": Case("zero_inflated_poisson", "ZeroInflatedPoissonRegression", {}, 0.07),
    "gamma": Case("gamma_regression", "GammaRegression", {}, 0.12),
    "beta": Case("beta_regression", "BetaRegression", {}, 0.025, relative=False),
    "censored": Case("censored_regression", "CensoredRegression", {"upper": 2.0}, 0.12, relative=False),
    "ordinal": Case("ordinal_regression", "OrderedLogisticClassifier", {}),
}
REGRESSORS = [name for name, case in CASES.items() if case.tolerance is not None]


def _import_example(name: str) -> ModuleType:
    """A gallery module, imported from its file under its own name (as its demo imports it)."""
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, GALLERY / f"{name}.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


@dataclass(frozen=True)
class Fitted:
    """A gallery model fitted on the training rows, and the held-out rows with their truth."""

    model: BayesianEstimator
    X: pd.DataFrame
    y: np.ndarray
    truth: np.ndarray
    X_train: pd.DataFrame
    y_train: pd.Series


@pytest.fixture(scope="module")
def fitted() -> dict[str, Fitted]:
    _import_example(SHARED_CODE.stem)
    out = {}
    for name, case in CASES.items():
        module = _import_example(case.module)
        X, y, truth = module.make_data(N_TRAIN + N_HELD_OUT, seed=DATA_SEED)
        model = getattr(module, case.estimator)(**case.params, **SETTINGS).fit(X[:N_TRAIN], y[:N_TRAIN])
        out[name] = Fitted(model, X[N_TRAIN:], y[N_TRAIN:].to_numpy(), truth[N_TRAIN:], X[:N_TRAIN], y[:N_TRAIN])
    return out


def _params(model: BayesianEstimator) -> dict:
    """The summary params: interval, quantiles and std for regressors, none for classifiers (draws: test_serving)."""
    return {"return_std": True, "interval_prob": INTERVAL_PROB, "quantiles": QUANTILES} if is_regressor(model) else {}


def _pyfunc_params(model: BayesianEstimator) -> dict:
    """:func:`_params` as the pyfunc takes them: a classifier asked for the probabilities ``predict_frame`` gives."""
    return {**_params(model), "predict_proba": True} if is_classifier(model) else _params(model)


@pytest.fixture(scope="module")
def saved(fitted, tmp_path_factory) -> dict[str, Path]:
    """Each model saved with its module and the shared module as its code."""
    root = tmp_path_factory.mktemp("gallery")
    paths = {}
    for name, case in CASES.items():
        paths[name] = root / name
        mlflow_pmlearn.save_model(
            fitted[name].model,
            paths[name],
            code_paths=[str(GALLERY / f"{case.module}.py"), str(SHARED_CODE)],
            input_example=fitted[name].X.head(3),
        )
    return paths


@pytest.mark.parametrize("name", REGRESSORS)
def test_predictive_mean_is_near_the_true_mean(fitted, name):
    case, fit = CASES[name], fitted[name]
    error = np.abs(fit.model.predict(fit.X) - fit.truth)
    mean_error = np.mean(error / fit.truth) if case.relative else np.mean(error)
    assert mean_error < case.tolerance, (name, mean_error)


@pytest.mark.parametrize("name", REGRESSORS)
def test_90_percent_interval_covers_85_to_95_percent_of_held_out_rows(fitted, name):
    # A discrete or censored target puts mass on the interval's end points, which a central
    # interval includes: it covers more than 90% by about the probability of those points. At
    # the counts' means (about 8 to 50) that is 0.1 / sqrt(mean) per end, so the data keep
    # means that large; the expected coverage at the fitted bounds, computed from the true
    # distributions, was 0.93 (Poisson), 0.92 (negative binomial, censored), 0.91 (zero-inflated
    # Poisson, Gamma, Beta). The zero-inflated data have 4% structural zeros, less
    # than the 5% lower tail: with more, every lower bound would be 0 and the interval would
    # cover 95% or more.
    fit = fitted[name]
    lower, upper = fit.model.predict_interval(fit.X, prob=INTERVAL_PROB).T
    coverage = np.mean((fit.y >= lower) & (fit.y <= upper))
    assert 0.85 <= coverage <= 0.95, (name, coverage)


def test_censored_draws_and_bounds_never_pass_the_limit(fitted):
    fit = fitted["censored"]
    limit = fit.model.upper
    assert (fit.model.sample_posterior_predictive(fit.X) <= limit).all()
    frame = fit.model.predict_frame(fit.X, interval_prob=INTERVAL_PROB, quantiles=[0.5, 0.99])
    assert (frame <= limit).all().all()
    # The limit is reached: rows likely above it have their upper bound at it.
    assert (frame["upper"] == limit).mean() > 0.2


def test_zero_inflated_draws_have_the_structural_zeros(fitted):
    fit = fitted["zero_inflated_poisson"]
    assert abs(fit.model.posterior_mean("psi") - 0.96) < 0.03
    # Poisson zeros at these means have probability below 0.0004; the rest are structural.
    share_of_zeros = np.mean(fit.model.sample_posterior_predictive(fit.X) == 0)
    assert abs(share_of_zeros - (1.0 - fit.model.posterior_mean("psi"))) < 0.01


def test_zero_inflated_log_density_and_mean_are_scipys_at_each_posterior_draw(fitted):
    """Each row's log-likelihood under each posterior draw (LOO's input) is SciPy's, with that
    draw's own ``psi``; the predictive mean is ``psi * mu`` averaged over the draws, within four
    Monte Carlo standard errors."""
    fit = fitted["zero_inflated_poisson"]
    eta = posterior_draws(fit.model, "intercept")[:, None] + posterior_draws(fit.model, "coef") @ fit.X.to_numpy().T
    psi, mu = posterior_draws(fit.model, "psi")[:, None], np.exp(eta)
    reference = np.log(np.where(fit.y == 0, 1 - psi, 0.0) + psi * stats.poisson.pmf(fit.y, mu))
    np.testing.assert_allclose(fit.model.pointwise_log_likelihood(fit.X, fit.y), reference, rtol=1e-9, atol=1e-9)
    variance = psi * mu * (1 + (1 - psi) * mu)
    mean_error = draws_mean_standard_errors(variance)
    assert_within_standard_errors(fit.model.predict(fit.X), (psi * mu).mean(axis=0), mean_error, "mean")


def test_ordinal_classifier_is_as_accurate_as_logistic_regression_and_calibrated(fitted):
    fit = fitted["ordinal"]
    proba = fit.model.predict_proba(fit.X)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, rtol=1e-12)
    assert list(fit.model.classes_) == [1, 2, 3, 4]
    # The ordinal model is the true one (5 parameters), scikit-learn's multinomial model 9:
    # scored on the same rows, the ordinal one may trail it by no more than 0.025, the standard
    # deviation of an accuracy on 400 rows (it was 0.487 against 0.485; the true probabilities
    # score 0.515).
    reference = LogisticRegression().fit(fit.X_train, fit.y_train).score(fit.X, fit.y)
    assert np.mean(fit.model.predict(fit.X) == fit.y) > reference - 0.025
    # Probabilities against the true ones: the mean absolute error was 0.020 to 0.031 over data
    # seeds 1 to 4 (scikit-learn's: 0.038); uniform probabilities give 0.15, classes taken in
    # reverse order 0.26.
    assert np.mean(np.abs(proba - fit.truth)) < 0.05


@pytest.mark.parametrize("name", list(CASES))
def test_save_load_and_pyfunc_give_identical_predictions(fitted, saved, name):
    fit, rows = fitted[name], fitted[name].X.head(N_COMPARED)
    params = _params(fit.model)
    expected = fit.model.predict_frame(rows, **params)
    loaded = mlflow_pmlearn.load_model(str(saved[name]))
    assert type(loaded).__name__ == CASES[name].estimator
    pd.testing.assert_frame_equal(loaded.predict_frame(rows, **params), expected, check_exact=True)
    pyfunc = mlflow.pyfunc.load_model(str(saved[name]))
    pd.testing.assert_frame_equal(pyfunc.predict(rows, params=_pyfunc_params(fit.model)), expected, check_exact=True)


def test_every_gallery_model_is_served_over_rest_with_params(fitted, saved, tmp_path):
    # One server per model, all started at once, so that they load side by side.
    servers = {name: ModelServer(str(path), tmp_path) for name, path in saved.items()}
    try:
        for server in servers.values():
            server.wait_until_ready()
        for name, server in servers.items():
            rows = fitted[name].X.head(N_COMPARED)
            params = _pyfunc_params(fitted[name].model)
            # json writes each float's repr, which reads back as the same float: the rows arrive
            # as they are here (pandas' to_json rounds them, and forward draws are keyed by a row's bytes).
            split = {"columns": list(rows.columns), "data": rows.to_numpy().tolist()}
            response = server.invoke({"dataframe_split": split, **({"params": params} if params else {})})
            assert response.status_code == 200, (name, response.text)
            served = pd.DataFrame(response.json()["predictions"])
            expected = fitted[name].model.predict_frame(rows, **_params(fitted[name].model))
            # The server compiles its own functions, with the same floats whatever its compile
            # cache holds (estimators/compilation.py). Almost always the same answer to the last
            # bit; one clean-clone run of the suite found the Gamma model's means 1 unit in the
            # last place apart in 5 of 30 rows, from a cause not yet found (issue #34), so a few units are allowed.
            assert list(served.columns) == list(expected.columns), name
            for column in expected:
                if pd.api.types.is_numeric_dtype(expected[column]):
                    np.testing.assert_array_max_ulp(served[column].to_numpy(float), expected[column], maxulp=4)
                else:
                    assert served[column].tolist() == expected[column].tolist(), (name, column)
    finally:
        for server in servers.values():
            server.stop()
