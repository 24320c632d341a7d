"""``mlflow.models.evaluate`` on pmlearn regressors, classifiers, density models and pipelines, through the pyfunc.

MLflow's default evaluator reads a pyfunc's default answer: a regressor's ``prediction``
column, a classifier's labels. Class probabilities (log loss, Brier score) come from the
``pmlearn`` evaluator; SHAP is switched off the public way (``log_model_explainability``).
"""

from __future__ import annotations

import mlflow
import numpy as np
import pandas as pd
import pytest
from mlflow.metrics import MetricValue, make_metric
from sklearn import metrics
from sklearn.compose import ColumnTransformer
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

import mlflow_pmlearn
from estimators.linear_model import LinearRegression, LogisticRegression
from estimators.mixture import GaussianMixture
from tests.conftest import FAST

pytestmark = pytest.mark.slow
#: The default evaluator's settings here: no SHAP (it re-predicts perturbed rows many times over).
NO_SHAP = {"log_model_explainability": False}


def _log(model, example: pd.DataFrame) -> str:
    return mlflow_pmlearn.log_model(model, name="model", input_example=example.head(3)).model_uri


def _evaluate(model, data: pd.DataFrame, target: str, model_type: str):
    """Log ``model``; evaluate it with MLflow's default evaluator and the ``pmlearn`` one."""
    with mlflow.start_run():
        uri = _log(model, data.drop(columns=target))
        return mlflow.models.evaluate(
            uri,
            data,
            targets=target,
            model_type=model_type,
            evaluators=["default", "pmlearn"],
            evaluator_config={"default": NO_SHAP},
        )


def test_regressor(mlflow_experiment, regression_data):
    X, y, _ = regression_data
    model = LinearRegression(**FAST).fit(X, y)
    result = _evaluate(model, X.assign(target=y), "target", "regressor")
    assert result.metrics["r2_score"] == pytest.approx(metrics.r2_score(y, model.predict(X)), rel=1e-9)
    assert result.metrics["root_mean_squared_error"] == pytest.approx(
        metrics.root_mean_squared_error(y, model.predict(X)), rel=1e-9
    )
    assert "crps" in result.metrics and "log_score" in result.metrics  # the pmlearn evaluator's


def test_classifier_gets_accuracy_from_the_labels_and_log_loss_from_the_pmlearn_evaluator(
    mlflow_experiment, binary_data
):
    X, y, _ = binary_data
    model = LogisticRegression(**FAST).fit(X, y)
    result = _evaluate(model, X.assign(label=y), "label", "classifier")
    assert result.metrics["accuracy_score"] == pytest.approx(metrics.accuracy_score(y, model.predict(X)))
    assert result.metrics["f1_score"] == pytest.approx(metrics.f1_score(y, model.predict(X), pos_label="yes"))
    proba = model.predict_proba(X)
    assert result.metrics["log_loss"] == pytest.approx(metrics.log_loss(y, proba, labels=model.classes_), rel=1e-9)
    assert "brier_score" in result.metrics
    # The pyfunc answers the labels; the class probabilities behind predict_proba.
    pyfunc = mlflow.pyfunc.load_model(mlflow.last_logged_model().model_uri)
    labels = pyfunc.predict(X.head(4))
    assert isinstance(labels, pd.Series) and labels.name == "prediction"
    assert list(labels) == list(model.predict(X.head(4)))
    frame = pyfunc.predict(X.head(4), params={"predict_proba": True})
    assert list(frame.columns) == ["prediction", *[f"proba_{c}" for c in model.classes_]]
    np.testing.assert_allclose(frame.iloc[:, 1:].to_numpy(), proba[:4], rtol=1e-9)


def test_density_model_with_a_metric_of_its_log_density(mlflow_experiment):
    """A density model has no target: MLflow's default evaluator takes ``model_type=None``, the
    output column to score and a metric of it; here the mean log density, ``score`` of the model."""
    rng = np.random.default_rng(0)
    X = pd.DataFrame(np.concatenate([rng.normal(-2, 0.5, (60, 2)), rng.normal(2, 0.5, (60, 2))]), columns=["x", "z"])
    model = GaussianMixture(n_components=2, **FAST).fit(X)

    def mean_log_density(predictions):
        return MetricValue(aggregate_results={"mean": float(np.mean(predictions))})

    metric = make_metric(eval_fn=mean_log_density, greater_is_better=True, name="log_density")
    with mlflow.start_run():
        uri = _log(model, X)
        result = mlflow.models.evaluate(
            uri, X, model_type=None, predictions="log_density", extra_metrics=[metric], evaluator_config=NO_SHAP
        )
    assert result.metrics["log_density/mean"] == pytest.approx(model.score(X), rel=1e-9)


def test_pipeline_on_raw_string_columns(mlflow_experiment):
    rng = np.random.default_rng(3)
    X = pd.DataFrame({"x": rng.normal(size=200), "city": rng.choice(["a", "b", "c"], 200)})
    logits = 1.5 * X["x"] + X["city"].map({"a": -1.0, "b": 0.0, "c": 1.0})
    y = np.where(rng.uniform(size=200) < 1 / (1 + np.exp(-logits)), "yes", "no")
    prep = ColumnTransformer([("num", StandardScaler(), ["x"]), ("cat", OneHotEncoder(sparse_output=False), ["city"])])
    classifier = Pipeline([("prep", prep), ("clf", LogisticRegression(**FAST))]).fit(X, y)
    result = _evaluate(classifier, X.assign(label=y), "label", "classifier")
    proba = classifier.predict_proba(X)
    assert result.metrics["log_loss"] == pytest.approx(metrics.log_loss(y, proba, labels=classifier.classes_), rel=1e-9)
    assert result.metrics["accuracy_score"] == pytest.approx(metrics.accuracy_score(y, classifier.predict(X)))
    target = 2.0 * X["x"] + rng.normal(scale=0.5, size=200)
    regressor = Pipeline([("prep", prep), ("reg", LinearRegression(**FAST))]).fit(X, target)
    result = _evaluate(regressor, X.assign(target=target), "target", "regressor")
    assert result.metrics["r2_score"] == pytest.approx(metrics.r2_score(target, regressor.predict(X)), rel=1e-9)
