"""Pointwise log-likelihood, PSIS-LOO in autolog, and compare() by LOO, on a real sqlite store."""

from __future__ import annotations

import mlflow
import numpy as np
import pandas as pd
import pytest
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException
from scipy.special import logsumexp
from scipy.stats import norm

import mlflow_pmlearn
from estimators.gaussian_process import GaussianProcessRegressor
from estimators.linear_model import LinearRegression, LogisticRegression
from estimators.mixture import GaussianMixture
from estimators.neural_network import MLPClassifier
from mlflow_pmlearn.autologging import loo
from mlflow_pmlearn.autologging.loo import LOO_WARNING_TAG, loo_warnings, psis_loo
from mlflow_pmlearn.evaluation import COMPARISON_FILE
from tests.conftest import FAST
from tests.mlflow_pmlearn.test_autolog import autolog_warnings  # noqa: F401 (a fixture)

LOO_METRICS = {"elpd_loo", "elpd_loo_se", "p_loo", "pareto_k_bad"}
#: Enough draws for steady Pareto k estimates (with 200, a right model has a row or two near 0.7).
LOO_SETTINGS = {**FAST, "n_draws": 1000}


@pytest.fixture(scope="module")
def truth():
    """Seeded rows where y depends on both columns: y = 1 + 2 a - 1.5 b + N(0, 0.5)."""
    rng = np.random.default_rng(3)
    X = pd.DataFrame(rng.normal(size=(120, 2)), columns=["a", "b"])
    y = pd.Series(1.0 + 2.0 * X["a"] - 1.5 * X["b"] + rng.normal(scale=0.5, size=len(X)), name="y")
    return X, y


@pytest.fixture(scope="module")
def full_and_partial(truth):
    """The right model, and one missing the real term ``b``."""
    X, y = truth
    return LinearRegression(**LOO_SETTINGS).fit(X, y), LinearRegression(**LOO_SETTINGS).fit(X[["a"]], y)


def _draws(estimator, name):
    stacked = estimator.idata_.posterior[name].to_dataset().stack(sample=("chain", "draw"))[name]
    return stacked.transpose("sample", ...).values


def test_pointwise_log_likelihood_is_the_normal_log_density_under_each_draw(full_and_partial, truth):
    full, _ = full_and_partial
    X, y = truth
    mu = _draws(full, "intercept")[:, None] + _draws(full, "coef") @ X.to_numpy().T
    expected = norm.logpdf(y.to_numpy(), mu, _draws(full, "sigma")[:, None])
    pointwise = full.pointwise_log_likelihood(X, y)
    assert pointwise.shape == (full.n_posterior_draws_, len(X))
    np.testing.assert_allclose(pointwise, expected, rtol=1e-6, atol=1e-8)
    # The training rows kept in the trace give the same values, with the posterior's chain and draw.
    training = full.training_log_likelihood()
    assert training.dims == ("chain", "draw", "row") and training.name == "y_obs"
    np.testing.assert_allclose(training.values.reshape(-1, len(X)), expected, rtol=1e-6, atol=1e-8)
    # log_predictive_density is its log mean over the draws (the same compiled function).
    np.testing.assert_allclose(
        full.log_predictive_density(X, y), logsumexp(expected, axis=0) - np.log(len(expected)), rtol=1e-6
    )


def test_classifier_and_density_log_likelihoods_agree_with_their_predictions(binary_data):
    X, y, _ = binary_data
    X, y = X.iloc[:80], y.iloc[:80]
    classifier = LogisticRegression(**FAST).fit(X, y)
    pointwise = classifier.pointwise_log_likelihood(X, y)
    proba = classifier.predict_proba(X)
    observed = proba[np.arange(len(y)), np.searchsorted(classifier.classes_, y.to_numpy())]
    np.testing.assert_allclose(np.exp(pointwise).mean(axis=0), observed, rtol=1e-6)
    assert classifier.training_log_likelihood().shape == (1, classifier.n_posterior_draws_, len(X))
    with pytest.raises(ValueError, match="y has the label 'maybe' at row 0, not one of the classes seen in fit"):
        classifier.pointwise_log_likelihood(X.iloc[:2], ["maybe", "yes"])

    rows = np.random.default_rng(0).normal(size=(40, 2))
    mixture = GaussianMixture(n_components=2, **FAST).fit(rows)
    pointwise = mixture.pointwise_log_likelihood(rows)
    np.testing.assert_allclose(
        logsumexp(pointwise, axis=0) - np.log(len(pointwise)), mixture.score_samples(rows), rtol=1e-6
    )
    np.testing.assert_allclose(mixture.training_log_likelihood().values.reshape(len(pointwise), -1), pointwise)


def test_a_model_whose_prediction_conditions_on_its_targets_has_no_training_log_likelihood():
    rng = np.random.default_rng(0)
    X = rng.uniform(size=(15, 1))
    gp = GaussianProcessRegressor(**{**FAST, "n_draws": 20, "max_iter": 200}).fit(X, np.sin(6 * X[:, 0]))
    with pytest.raises(ValueError, match="conditions on the training targets"):
        gp.training_log_likelihood()
    assert gp.pointwise_log_likelihood(X[:3], np.zeros(3)).shape == (20, 3)  # held-out rows: fine


def test_autolog_logs_loo_metrics_a_pareto_k_plot_and_no_warning_for_a_good_fit(mlflow_experiment, truth):
    X, y = truth
    mlflow_pmlearn.autolog(log_loo=True, log_models=False, log_traces=False)
    try:
        estimator = LinearRegression(**LOO_SETTINGS).fit(X, y)
    finally:
        mlflow_pmlearn.autolog(disable=True)
    (run,) = mlflow.search_runs(experiment_ids=[mlflow_experiment], output_format="list")
    assert LOO_METRICS <= set(run.data.metrics)
    expected = psis_loo(estimator)
    assert run.data.metrics["elpd_loo"] == pytest.approx(expected.elpd)
    assert run.data.metrics["elpd_loo_se"] == pytest.approx(expected.se)
    assert run.data.metrics["p_loo"] == pytest.approx(expected.p)
    assert run.data.metrics["pareto_k_bad"] == pytest.approx(float(np.mean(expected.pareto_k.values > 0.7)))
    assert 2 < run.data.metrics["p_loo"] < 6  # intercept, two slopes, noise
    assert LOO_WARNING_TAG not in run.data.tags
    assert "plots/pareto_k.png" in {a.path for a in MlflowClient().list_artifacts(run.info.run_id, "plots")}


@pytest.mark.parametrize("budget, logged", [(None, True), (1_000, False)])
def test_autolog_logs_loo_by_default_only_where_it_is_cheap(mlflow_experiment, truth, monkeypatch, budget, logged):
    """The default budget admits this fit's rows x draws; a budget below them leaves LOO out."""
    X, y = truth
    if budget is not None:
        monkeypatch.setattr(loo, "DEFAULT_LOO_MAX_VALUES", budget)
    mlflow_pmlearn.autolog(log_models=False, log_traces=False, log_plots=False)
    try:
        LinearRegression(**FAST).fit(X, y)
    finally:
        mlflow_pmlearn.autolog(disable=True)
    (run,) = mlflow.search_runs(experiment_ids=[mlflow_experiment], output_format="list")
    assert (LOO_METRICS <= set(run.data.metrics)) == logged and "training_score" in run.data.metrics
    assert logged or not LOO_METRICS & set(run.data.metrics)


def test_a_minibatch_fit_is_tagged_and_warned_as_unreliable(mlflow_experiment, binary_data, autolog_warnings):
    X, y, _ = binary_data
    mlflow_pmlearn.autolog(log_loo=True, log_models=False, log_traces=False, log_plots=False)
    try:
        MLPClassifier(hidden_layer_sizes=(4,), batch_size=32, **{**FAST, "max_iter": 500}).fit(
            X.iloc[:100], y.iloc[:100]
        )
    finally:
        mlflow_pmlearn.autolog(disable=True)
    (run,) = mlflow.search_runs(experiment_ids=[mlflow_experiment], output_format="list")
    assert "fitted on minibatches" in run.data.tags[LOO_WARNING_TAG]
    assert any("PSIS-LOO is unreliable" in record.getMessage() for record in autolog_warnings)
    assert LOO_METRICS <= set(run.data.metrics)


def test_many_high_pareto_k_make_loo_unreliable(full_and_partial):
    full, _ = full_and_partial
    elpd = psis_loo(full)
    assert loo_warnings(full, elpd) == []
    elpd.pareto_k[:5] = 0.9  # 5 of 120 rows: over 1%
    (reason,) = loo_warnings(full, elpd)
    assert reason.startswith("4.2% of the training rows have Pareto k > 0.7")


def test_compare_ranks_the_model_missing_a_real_term_last_and_logs_the_table(mlflow_experiment, full_and_partial):
    full, partial = full_and_partial
    with mlflow.start_run():
        uris = [
            mlflow_pmlearn.log_model(model, name=name).model_uri
            for model, name in ((partial, "partial"), (full, "full"))
        ]
    with mlflow.start_run() as run:
        table = mlflow_pmlearn.compare(uris)
    assert table.index.name == "model_uri" and list(table.index) == [uris[1], uris[0]]
    assert {"elpd_loo", "elpd_diff", "dse", "weight"} <= set(table.columns)
    assert table.loc[uris[1], "elpd_diff"] == 0.0
    assert table.loc[uris[0], "elpd_diff"] < -4 * table.loc[uris[0], "dse"]  # clearly worse
    assert table.loc[uris[1], "weight"] > 0.9
    np.testing.assert_allclose(table.loc[uris[1], "elpd_loo"], psis_loo(full).elpd)
    logged = mlflow.artifacts.load_text(f"{run.info.artifact_uri}/{COMPARISON_FILE}")
    assert pd.read_csv(pd.io.common.StringIO(logged), index_col="model_uri").index.tolist() == table.index.tolist()


def test_compare_refuses_models_fitted_on_different_rows(mlflow_experiment, full_and_partial, truth):
    full, _ = full_and_partial
    X, y = truth
    other = LinearRegression(**LOO_SETTINGS).fit(X.iloc[:60], y.iloc[:60])
    with mlflow.start_run():
        uris = [
            mlflow_pmlearn.log_model(model, name=name).model_uri for model, name in ((full, "full"), (other, "other"))
        ]
    with pytest.raises(MlflowException, match="fitted on different observations"):
        mlflow_pmlearn.compare(uris)
    with pytest.raises(MlflowException, match="at least two models"):
        mlflow_pmlearn.compare(uris[:1])
