"""``mlflow.models.evaluate`` with MLflow's default evaluator on pmlearn regressors, classifiers and pipelines."""

from __future__ import annotations

import mlflow
import numpy as np
import pandas as pd
import pytest
from sklearn import metrics
from sklearn.compose import ColumnTransformer
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

import mlflow_pmlearn
from estimators.linear_model import LinearRegression, LogisticRegression
from tests.conftest import FAST

pytestmark = pytest.mark.slow


def _evaluate(model, data: pd.DataFrame, target: str, model_type: str):
    with mlflow.start_run():
        info = mlflow_pmlearn.log_model(model, name="model", input_example=data.drop(columns=target).head(3))
        return mlflow.models.evaluate(info.model_uri, data, targets=target, model_type=model_type)


def test_regressor(mlflow_experiment, regression_data):
    X, y, _ = regression_data
    model = LinearRegression(**FAST).fit(X, y)
    result = _evaluate(model, X.assign(target=y), "target", "regressor")
    assert result.metrics["r2_score"] == pytest.approx(metrics.r2_score(y, model.predict(X)), rel=1e-9)
    assert result.metrics["root_mean_squared_error"] == pytest.approx(
        metrics.root_mean_squared_error(y, model.predict(X)), rel=1e-9
    )


def test_classifier_gets_accuracy_log_loss_and_roc_auc_from_the_probabilities(mlflow_experiment, binary_data):
    X, y, _ = binary_data
    model = LogisticRegression(**FAST).fit(X, y)
    result = _evaluate(model, X.assign(label=y), "label", "classifier")
    proba = model.predict_proba(X)
    assert result.metrics["accuracy_score"] == pytest.approx(metrics.accuracy_score(y, model.predict(X)))
    assert result.metrics["log_loss"] == pytest.approx(metrics.log_loss(y, proba, labels=model.classes_), rel=1e-9)
    assert result.metrics["roc_auc"] == pytest.approx(
        metrics.roc_auc_score(y == model.classes_[1], proba[:, 1]), rel=1e-9
    )
    # The pyfunc frame is as documented: the evaluator reads it, it is not changed.
    frame = mlflow.pyfunc.load_model(mlflow.last_logged_model().model_uri).predict(X.head(2))
    assert list(frame.columns) == ["prediction", *[f"proba_{c}" for c in model.classes_]]


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
    assert "roc_auc" in result.metrics and "accuracy_score" in result.metrics
    target = 2.0 * X["x"] + rng.normal(scale=0.5, size=200)
    regressor = Pipeline([("prep", prep), ("reg", LinearRegression(**FAST))]).fit(X, target)
    result = _evaluate(regressor, X.assign(target=target), "target", "regressor")
    assert result.metrics["r2_score"] == pytest.approx(metrics.r2_score(target, regressor.predict(X)), rel=1e-9)
