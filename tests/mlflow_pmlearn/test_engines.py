"""Every inference engine behind ``inference`` / ``nuts_sampler``: the same trace layout, known
parameters recovered, reproducible draws, a saved model that predicts the same, autologged
diagnostics, and a clear error when its extra is missing.

Each engine fits the seeded linear data once (module fixture); the recovery check is on the
data-unit coefficients, against the truth the data was drawn from.
"""

from __future__ import annotations

import sys

import mlflow
import numpy as np
import pandas as pd
import pymc as pm
import pytensor.tensor as pt
import pytest
from mlflow.tracking import MlflowClient
from sklearn.base import clone
from sklearn.model_selection import GridSearchCV
from test_flavor import _import_bespoke

import mlflow_pmlearn
from estimators.base import BayesianEstimator, BayesianRegressorMixin
from estimators.linear_model import LinearRegression

pytestmark = pytest.mark.slow

#: What autolog logs for every NUTS sampler (BlackJAX records no step size).
SAMPLER_METRICS = {"divergences", "r_hat_max", "ess_bulk_min", "mean_tree_depth", "draws_per_second"}
#: Each engine as its settings, with the diagnostics group its trace keeps and the metrics
#: autolog logs from it.
ENGINES = {
    "advi": ({"inference": "advi"}, "fit_history", {"elbo_final", "advi_iterations"}),
    "fullrank_advi": ({"inference": "fullrank_advi"}, "fit_history", {"elbo_final", "advi_iterations"}),
    "nuts-pymc": ({"inference": "nuts", "nuts_sampler": "pymc"}, "sample_stats", SAMPLER_METRICS | {"step_size"}),
    "nuts-nutpie": ({"inference": "nuts", "nuts_sampler": "nutpie"}, "sample_stats", SAMPLER_METRICS | {"step_size"}),
    "nuts-numpyro": ({"inference": "nuts", "nuts_sampler": "numpyro"}, "sample_stats", SAMPLER_METRICS | {"step_size"}),
    "nuts-blackjax": ({"inference": "nuts", "nuts_sampler": "blackjax"}, "sample_stats", SAMPLER_METRICS),
    "pathfinder": ({"inference": "pathfinder"}, "fit_diagnostics", {"pareto_k", "elbo", "paths_succeeded"}),
    "laplace": (
        {"inference": "laplace"},
        "fit_diagnostics",
        {"optimizer_success", "gradient_norm", "hessian_condition_number", "log_density_at_mode"},
    ),
}
COMMON = {"n_draws": 300, "n_tune": 300, "n_chains": 2, "max_iter": 5000, "random_seed": 3, "progressbar": False}


@pytest.fixture(scope="module", params=list(ENGINES))
def engine_fit(request, regression_data):
    """(engine name, fitted LinearRegression) for each engine."""
    X, y, _ = regression_data
    settings, _, _ = ENGINES[request.param]
    return request.param, LinearRegression(**settings, **COMMON).fit(X, y)


def test_each_engine_recovers_the_coefficients_in_one_trace_layout(engine_fit, regression_data):
    name, model = engine_fit
    _, _, truth = regression_data
    posterior = model.idata_.posterior
    n_chains = COMMON["n_chains"] if name.startswith("nuts") else 1
    assert dict(posterior.sizes)["chain"] == n_chains and dict(posterior.sizes)["draw"] == COMMON["n_draws"]
    assert {"constant_data", "observed_data", ENGINES[name][1]} <= set(model.idata_.children)
    coef = posterior["coef"].values.reshape(-1, 3)
    # 400 rows, noise 0.5: the coefficients' posterior sd is about 0.025; the truth lies
    # within four of them, and every engine's width is within a factor of two of it.
    np.testing.assert_allclose(coef.mean(axis=0), truth["coef"], atol=4 * 0.025)
    assert np.all((coef.std(axis=0) > 0.0125) & (coef.std(axis=0) < 0.05)), coef.std(axis=0)
    assert abs(model.posterior_mean("sigma") - truth["sigma"]) < 0.1


def test_each_engine_gives_the_same_posterior_for_the_same_seed(engine_fit, regression_data):
    name, model = engine_fit
    X, y, _ = regression_data
    again = clone(model).fit(X, y)
    np.testing.assert_array_equal(again.idata_.posterior["coef"].values, model.idata_.posterior["coef"].values)


def test_each_engine_round_trips_through_the_flavor(engine_fit, regression_data, tmp_path):
    name, model = engine_fit
    X, _, _ = regression_data
    mlflow_pmlearn.save_model(model, tmp_path / name)
    loaded = mlflow.pyfunc.load_model(str(tmp_path / name))
    expected = model.predict_frame(X.head(20))
    pd.testing.assert_frame_equal(loaded.predict(X.head(20)), expected)
    restored = mlflow_pmlearn.load_model(str(tmp_path / name))
    assert restored.inference == model.inference and restored.nuts_sampler == model.nuts_sampler
    assert set(restored.idata_.children) == set(model.idata_.children)


def test_autolog_logs_each_engines_own_diagnostics(engine_fit, regression_data, mlflow_experiment):
    name, model = engine_fit
    X, y, _ = regression_data
    mlflow_pmlearn.autolog(log_models=False, log_traces=False, log_plots=False, log_datasets=False)
    try:
        clone(model).fit(X, y)
    finally:
        mlflow_pmlearn.autolog(disable=True)
    (run,) = MlflowClient().search_runs([mlflow_experiment])
    metrics = run.data.metrics
    missing = ENGINES[name][2] - set(metrics)
    assert not missing, f"{name} did not log {missing}; it logged {sorted(metrics)}"
    assert run.data.params["inference"] == model.inference
    assert ("nuts_sampler" in run.data.params) == (model.inference == "nuts")
    if name == "pathfinder":
        assert 0 < metrics["paths_succeeded"] and metrics["pareto_k"] < 0.7  # a Gaussian posterior: reliable
    if name == "laplace":
        assert metrics["optimizer_success"] == 1 and metrics["gradient_norm"] < 1e-2


@pytest.mark.parametrize("engine", ["fullrank_advi", "nuts-nutpie", "pathfinder", "laplace"])
def test_a_bespoke_model_fits_with_each_engine(engine):
    """The robust (Student-t) regression of the gallery, written with the template only."""
    module = _import_bespoke()
    rng = np.random.default_rng(5)
    X = pd.DataFrame(rng.normal(size=(200, 2)), columns=["x0", "x1"])
    y = 0.5 + X.to_numpy() @ np.array([1.5, -2.0]) + rng.standard_t(4, size=200) * 0.3
    settings = ENGINES[engine][0]
    model = module.RobustRegression(**settings, **COMMON).fit(X, y)
    np.testing.assert_allclose(model.posterior_mean("coef"), [1.5, -2.0], atol=0.1)


def test_grid_search_and_clone_carry_the_engine(regression_data):
    X, y, _ = regression_data
    estimator = LinearRegression(nuts_sampler="nutpie", **COMMON)
    assert clone(estimator).get_params()["nuts_sampler"] == "nutpie"
    search = GridSearchCV(estimator, {"inference": ["laplace", "nuts"]}, cv=2, scoring="neg_mean_squared_error").fit(
        X, y
    )
    assert sorted(search.cv_results_["param_inference"]) == ["laplace", "nuts"]
    assert search.best_estimator_.inference in {"laplace", "nuts"}
    assert search.best_estimator_.idata_.posterior.sizes["chain"] == (
        2 if search.best_estimator_.inference == "nuts" else 1
    )


def test_the_default_is_pymcs_nuts():
    estimator = LinearRegression()
    assert (estimator.inference, estimator.nuts_sampler) == ("nuts", "pymc")


@pytest.mark.parametrize(
    "sampler, module, extra",
    [("numpyro", "numpyro", "jax"), ("blackjax", "blackjax", "jax"), ("nutpie", "nutpie", "nutpie")],
)
def test_a_missing_extra_is_named(regression_data, monkeypatch, sampler, module, extra):
    X, y, _ = regression_data
    monkeypatch.setitem(sys.modules, module, None)  # import fails, as when it is not installed
    with pytest.raises(ImportError, match=rf'pip install "mlflow-pmlearn\[{extra}\]"'):
        LinearRegression(inference="nuts", nuts_sampler=sampler, **COMMON).fit(X, y)


@pytest.mark.parametrize("inference", ["nuts", "pathfinder", "laplace"])
def test_minibatches_are_refused_by_exact_engines(regression_data, inference):
    X, y, _ = regression_data
    estimator = _import_bespoke().RobustRegression(inference=inference, **COMMON)
    estimator.minibatch_size = lambda: 50
    with pytest.raises(ValueError, match="batch_size=50 applies to ADVI only"):
        estimator.fit(X, y)


class _LogNormalScale(BayesianRegressorMixin, BayesianEstimator):
    """``theta ~ LogNormal(0, 1)``, ``y ~ LogNormal(log theta, 1)``: ``log theta``'s posterior is Normal."""

    def build_model(self, X, y):
        theta = pm.LogNormal("theta", 0.0, 1.0)
        pm.LogNormal("y_obs", pt.log(theta), 1.0, observed=y, shape=X.shape[0])


def test_laplace_is_exact_where_the_unconstrained_posterior_is_gaussian():
    """Closed form: with ``n`` rows, ``log theta ~ Normal(sum(log y) / (1 + n), 1 / sqrt(1 + n))``.

    Its Gaussian sits at the mode of the unconstrained density, Jacobian included. Without
    the Jacobian (pymc-extras' ``fit_laplace``), the mode is that of theta's own density,
    ``1 / (1 + n)`` lower: 0.41 sd here.
    """
    rng = np.random.default_rng(3)
    y = np.exp(rng.normal(0.7, 1.0, size=5))
    precision = 1 + len(y)
    mean, sd = np.log(y).sum() / precision, precision**-0.5
    model = _LogNormalScale(inference="laplace", n_draws=4000, random_seed=0, progressbar=False)
    log_theta = np.log(model.fit(np.zeros((len(y), 1)), y).idata_.posterior["theta"].values.ravel())
    assert abs(log_theta.mean() - mean) < 0.1 * sd  # Monte Carlo se: 0.016 sd
    assert log_theta.std() == pytest.approx(sd, rel=0.05)
