"""The ``pmlearn`` evaluator through MLflow's own ``mlflow.models.evaluate``, on a real sqlite store."""

from __future__ import annotations

import mlflow
import numpy as np
import pytest
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException
from properscoring_reference import crps_gaussian_reference
from scipy.special import logsumexp
from scipy.stats import norm
from sklearn.metrics import log_loss

import mlflow_pmlearn
from estimators.linear_model import LinearRegression, LogisticRegression
from mlflow_pmlearn.evaluation import PLOTS_PATH
from tests.conftest import FAST

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _evaluate(model, X, y, model_type: str):
    """Log ``model``, then evaluate it on ``X, y`` with the pmlearn evaluator alone: (result, run)."""
    with mlflow.start_run() as run:
        uri = mlflow_pmlearn.log_model(model, name="model").model_uri
        frame = X.assign(target=np.asarray(y))
        result = mlflow.models.evaluate(uri, frame, targets="target", model_type=model_type, evaluators=["pmlearn"])
    return result, mlflow.get_run(run.info.run_id)


def _fit_and_evaluate(estimator, data, n_train: int, n_test: int, model_type: str):
    """Fit on the first ``n_train`` rows of ``data``, evaluate on the next ``n_test``:
    (fitted, held-out X, held-out y as an array, evaluation result, run)."""
    X, y, _ = data
    estimator.fit(X.iloc[:n_train], y.iloc[:n_train])
    X_test, y_test = X.iloc[n_train : n_train + n_test], y.iloc[n_train : n_train + n_test].to_numpy()
    return estimator, X_test, y_test, *_evaluate(estimator, X_test, y_test, model_type)


def _plots(run) -> set[str]:
    return {artifact.path for artifact in MlflowClient().list_artifacts(run.info.run_id, PLOTS_PATH)}


def _draws(estimator, name):
    stacked = estimator.idata_.posterior[name].to_dataset().stack(sample=("chain", "draw"))[name]
    return stacked.transpose("sample", ...).values


def test_regressor_scores_and_plots(mlflow_experiment, regression_data):
    model, X_test, y_test, result, run = _fit_and_evaluate(
        LinearRegression(**FAST), regression_data, 200, 60, "regressor"
    )
    metrics = run.data.metrics
    assert {"crps", "log_score", "coverage_50", "coverage_90", "coverage_95"} <= set(metrics)
    assert result.metrics["crps"] == metrics["crps"]

    # The log score from the posterior draws, by scipy: log mean_s N(y | mu_s, sigma_s).
    mu = _draws(model, "intercept")[:, None] + _draws(model, "coef") @ X_test.to_numpy().T
    log_density = norm.logpdf(y_test, mu, _draws(model, "sigma")[:, None])
    assert metrics["log_score"] == pytest.approx(np.mean(logsumexp(log_density, axis=0) - np.log(len(mu))), rel=1e-6)
    # CRPS: the predictive is close to a Normal with the posterior predictive mean and std.
    mean, std = model.predict(X_test, return_std=True)
    reference = np.mean([crps_gaussian_reference(t, m, s) for t, m, s in zip(y_test, mean, std)])
    assert metrics["crps"] == pytest.approx(reference, rel=0.03)
    # Coverage: the share of targets inside the model's own central intervals.
    for prob in (0.5, 0.9, 0.95):
        lower, upper = model.predict_interval(X_test, prob=prob).T
        assert metrics[f"coverage_{round(100 * prob)}"] == pytest.approx(np.mean((lower <= y_test) & (y_test <= upper)))
    assert 0.8 <= metrics["coverage_90"] <= 1.0  # a well-specified model

    assert _plots(run) == {f"{PLOTS_PATH}/pit_histogram.png", f"{PLOTS_PATH}/calibration.png"}
    assert set(result.artifacts) >= {"pit_histogram", "calibration"}
    assert open(result.artifacts["pit_histogram"].uri.removeprefix("file://"), "rb").read().startswith(PNG_SIGNATURE)


def test_classifier_scores_and_reliability_diagram(mlflow_experiment, binary_data):
    model, X_test, y_test, _, run = _fit_and_evaluate(LogisticRegression(**FAST), binary_data, 300, 120, "classifier")
    metrics = run.data.metrics
    proba = model.predict_proba(X_test)
    assert metrics["log_loss"] == pytest.approx(log_loss(y_test, proba, labels=model.classes_))
    is_yes = (y_test == "yes").astype(float)
    # Two classes: the multi-class Brier score is twice the binary one.
    assert metrics["brier_score"] == pytest.approx(2 * np.mean((proba[:, 1] - is_yes) ** 2))
    confidence, predicted = proba.max(axis=1), model.classes_[proba.argmax(axis=1)]
    ece = 0.0
    for low in np.arange(10) / 10:  # ten equal-width bins of the predicted class's probability
        inside = (confidence >= low) & ((confidence < low + 0.1) | (low == 0.9))
        if inside.any():
            ece += inside.mean() * abs(np.mean(predicted[inside] == y_test[inside]) - confidence[inside].mean())
    assert metrics["ece"] == pytest.approx(ece)
    assert _plots(run) == {f"{PLOTS_PATH}/reliability_diagram.png"}


def test_a_model_type_that_is_not_the_estimators_kind_is_refused(mlflow_experiment, regression_data):
    with pytest.raises(MlflowException, match="model_type='classifier', but LinearRegression is a regressor"):
        _fit_and_evaluate(LinearRegression(**FAST), regression_data, 100, 20, "classifier")
