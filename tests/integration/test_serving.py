"""A real ``mlflow models serve`` process answering over HTTP on 127.0.0.1."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import mlflow
import numpy as np
import pandas as pd
import pytest
import requests
from mlflow import MlflowClient
from model_server import ModelServer

import mlflow_pmlearn
from estimators.linear_model import LinearRegression, LogisticRegression
from tests.conftest import FAST
from tests.references import (
    assert_linear_regression_frame_within_monte_carlo_error,
    linear_regression_draws,
    logistic_regression_proba,
)

pytestmark = pytest.mark.slow
MAX_ROWS = 1000


def _register_champion(model, name: str, example) -> None:
    with mlflow.start_run():
        info = mlflow_pmlearn.log_model(model, name="model", input_example=example, registered_model_name=name)
    MlflowClient().set_registered_model_alias(name, "champion", info.registered_model_version)


@pytest.fixture(scope="module")
def served(tracking_uri, regression_data, binary_data, tmp_path_factory):
    experiment = mlflow.create_experiment(
        "serving", artifact_location=tmp_path_factory.mktemp("serving-artifacts").as_uri()
    )
    mlflow.set_experiment(experiment_id=experiment)
    X, y, _ = regression_data
    Xc, yc, _ = binary_data
    regressor = LinearRegression(**FAST).fit(X, y)
    classifier = LogisticRegression(**FAST).fit(Xc, yc)
    _register_champion(regressor, "served-regressor", X.head(3))
    _register_champion(classifier, "served-classifier", Xc.head(3))
    tmp_path = tmp_path_factory.mktemp("servers")
    env = {"MLFLOW_TRACKING_URI": tracking_uri, "MLFLOW_PMLEARN_MAX_ROWS": str(MAX_ROWS)}
    servers = {
        name: ModelServer(f"models:/served-{name}@champion", tmp_path, env=env) for name in ("regressor", "classifier")
    }
    try:
        for server in servers.values():
            server.wait_until_ready()
        yield {"regressor": (servers["regressor"], regressor, X), "classifier": (servers["classifier"], classifier, Xc)}
    finally:
        for server in servers.values():
            server.stop()


def _frame(response: requests.Response) -> pd.DataFrame:
    assert response.status_code == 200, response.text
    return pd.DataFrame(response.json()["predictions"])


def test_every_documented_input_format_gives_the_posterior_frame(served):
    server, model, X = served["regressor"]
    rows = X.head(4)
    params = {"return_std": True, "interval_prob": 0.9}
    expected = model.predict_summary(rows, interval_prob=0.9)
    bodies = {
        "dataframe_split": {"dataframe_split": rows.to_dict(orient="split"), "params": params},
        "dataframe_records": {"dataframe_records": rows.to_dict(orient="records"), "params": params},
        "instances": {"instances": rows.to_dict(orient="records"), "params": params},
        "inputs": {"inputs": rows.to_dict(orient="list"), "params": params},
    }
    for name, body in bodies.items():
        frame = _frame(server.invoke(body))
        assert list(frame.columns) == ["prediction", "std", "lower", "upper"], name
        np.testing.assert_array_equal(frame["prediction"], expected["mean"], err_msg=name)
        np.testing.assert_array_equal(frame["std"], expected["std"], err_msg=name)
        np.testing.assert_array_equal(
            frame[["lower", "upper"]], np.column_stack([expected["lower"], expected["upper"]])
        )
    # And the served numbers are the posterior predictive's, computed independently from the draws.
    assert_linear_regression_frame_within_monte_carlo_error(frame, model, rows, interval_prob=0.9)
    csv = _frame(server.invoke(rows.to_csv(index=False), content_type="text/csv"))
    assert list(csv.columns) == ["prediction"]
    np.testing.assert_array_equal(csv["prediction"], expected["mean"])


def test_quantiles_chosen_per_request_over_rest(served):
    """``params={"quantiles": [...]}`` adds one ``quantile_<level>`` column per level, the
    estimator's own quantiles; other levels in the next request, and none by default."""
    server, model, X = served["regressor"]
    rows = X.head(4)
    for levels in ([0.05, 0.5, 0.95], [0.1, 0.9]):
        body = {
            "dataframe_split": rows.to_dict(orient="split"),
            "params": {"quantiles": levels, "return_std": True},
        }
        frame = _frame(server.invoke(body))
        columns = [f"quantile_{level:g}" for level in levels]
        assert list(frame.columns) == ["prediction", "std", *columns]
        np.testing.assert_array_equal(frame[columns].to_numpy(), model.predict_quantiles(rows, levels))
    assert list(_frame(server.invoke({"dataframe_split": rows.to_dict(orient="split")})).columns) == ["prediction"]


def test_classifier_endpoint_returns_labels_and_probabilities(served):
    server, model, X = served["classifier"]
    rows = X.head(5)
    frame = _frame(server.invoke({"dataframe_split": rows.to_dict(orient="split")}))
    assert list(frame.columns) == ["prediction", *[f"proba_{c}" for c in model.classes_]]
    np.testing.assert_array_equal(frame.iloc[:, 1:].to_numpy(), model.predict_proba(rows))
    np.testing.assert_allclose(frame.iloc[:, 1:].to_numpy(), logistic_regression_proba(model, rows), atol=1e-9)
    assert list(frame["prediction"]) == list(model.predict(rows))


def _split(rows: pd.DataFrame, **params) -> dict:
    return {"dataframe_split": rows.to_dict(orient="split"), "params": params}


def test_joint_draws_over_rest_add_up_to_draws_of_the_total(served):
    """``params={"draws": k}``: column ``j`` of every row from the same posterior draw, each
    row's noise its own, so sums over rows are draws of the total. With 50 like rows far
    from the data's centre, parameter uncertainty is most of the total's variance: rows
    each at posterior draws of their own would give a quarter of it, rows sharing their
    noise ten times as much."""
    server, model, X = served["regressor"]
    signature = mlflow.models.get_model_info("models:/served-regressor@champion").signature
    assert signature.params.to_dict()[-1] == {"name": "draws", "type": "long", "default": 0, "shape": None}
    rows = pd.DataFrame(2.0 + 0.1 * np.random.default_rng(3).normal(size=(50, 3)), columns=X.columns)
    k = model.n_posterior_draws_
    frame = _frame(server.invoke(_split(rows, draws=k, return_std=True)))
    columns = [f"draw_{j}" for j in range(k)]
    assert list(frame.columns) == ["prediction", "std", *columns]
    draws = frame[columns].to_numpy().T
    # Seeded: the same request gives the same draws, those of the model in this process.
    pd.testing.assert_frame_equal(_frame(server.invoke(_split(rows, draws=k, return_std=True))), frame)
    np.testing.assert_array_equal(draws, model.joint_predictive_draws(rows, k))
    mu, sigma = linear_regression_draws(model, rows)
    total_variance = mu.sum(axis=1).var(ddof=1) + (len(rows) * sigma[:, 0] ** 2).mean()
    assert 0.75 < draws.sum(axis=1).var(ddof=1) / total_variance < 1.33
    # Fewer draws are the first columns of more: draw j is the same posterior draw whatever k.
    first = _frame(server.invoke(_split(rows.head(1), draws=3)))
    np.testing.assert_array_equal(first[["draw_0", "draw_1", "draw_2"]].to_numpy()[0], draws[:3, 0])


def test_classifier_joint_draws_are_sampled_labels(served):
    server, model, X = served["classifier"]
    rows = pd.concat([X.head(10)] * 2, ignore_index=True)  # each row twice
    k = model.n_posterior_draws_
    frame = _frame(server.invoke(_split(rows, draws=k)))
    labels = frame[[f"draw_{j}" for j in range(k)]].to_numpy()
    np.testing.assert_array_equal(labels, model.joint_predictive_draws(rows, k).T)
    assert set(labels.ravel()) <= set(model.classes_)
    # A row's share of a label is its probability, within Monte Carlo error (4 standard errors).
    share = (labels == model.classes_[1]).mean(axis=1)
    np.testing.assert_allclose(share, frame[f"proba_{model.classes_[1]}"], atol=4 * np.sqrt(0.25 / k))
    # The same row twice: each copy has its own noise, so their labels often differ.
    proba = frame[f"proba_{model.classes_[1]}"].to_numpy()[:10]
    disagreement = (labels[:10] != labels[10:]).mean(axis=1)
    np.testing.assert_allclose(disagreement.mean(), (2 * proba * (1 - proba)).mean(), atol=0.06)


@pytest.mark.parametrize(
    "case, body, content_type, message",
    [
        (
            "missing column",
            lambda X: {"dataframe_records": X.drop(columns=["x1"]).head(2).to_dict(orient="records")},
            "application/json",
            "x1",
        ),
        (
            "string in numeric column",
            lambda X: {"dataframe_records": [{"x0": "abc", "x1": 0.0, "x2": 0.0}]},
            "application/json",
            "x0",
        ),
        (
            "NaN",
            lambda X: '{"dataframe_split": {"columns": ["x0", "x1", "x2"], "data": [[NaN, 0.0, 0.0]]}}',
            "application/json",
            "NaN",
        ),
        (
            "interval_prob out of range",
            lambda X: {"dataframe_records": X.head(1).to_dict(orient="records"), "params": {"interval_prob": 2.0}},
            "application/json",
            "interval probability must be a number strictly between 0 and 1; got 2.0",
        ),
        (
            "quantile level out of range",
            lambda X: {"dataframe_records": X.head(1).to_dict(orient="records"), "params": {"quantiles": [0.5, 1.5]}},
            "application/json",
            "quantiles[1] is 1.5; each quantile level must be a number strictly between 0 and 1",
        ),
        (
            "quantiles not a list of numbers",
            lambda X: {"dataframe_records": X.head(1).to_dict(orient="records"), "params": {"quantiles": ["low"]}},
            "application/json",
            "quantiles",
        ),
        (
            "wrong param type",
            lambda X: {"dataframe_records": X.head(1).to_dict(orient="records"), "params": {"return_std": "maybe"}},
            "application/json",
            "return_std",
        ),
        (
            "draws above the posterior draws",
            lambda X: {"dataframe_records": X.head(1).to_dict(orient="records"), "params": {"draws": 10**6}},
            "application/json",
            "draws must be a whole number from 1 to 200",
        ),
        (
            "negative draws",
            lambda X: {"dataframe_records": X.head(1).to_dict(orient="records"), "params": {"draws": -1}},
            "application/json",
            "draws must be a whole number from 1 to 200",
        ),
        (
            "draws not a whole number",
            lambda X: {"dataframe_records": X.head(1).to_dict(orient="records"), "params": {"draws": 2.5}},
            "application/json",
            "draws",
        ),
        ("malformed JSON", lambda X: '{"dataframe_records": [', "application/json", "valid JSON"),
        (
            "too many rows",
            lambda X: {"dataframe_split": json.loads(pd.concat([X] * 3).to_json(orient="split"))},
            "application/json",
            f"at most {MAX_ROWS:,}",
        ),
    ],
)
def test_bad_requests_get_400_and_the_server_keeps_answering(served, case, body, content_type, message):
    server, model, X = served["regressor"]
    response = server.invoke(body(X), content_type)
    assert response.status_code == 400, (case, response.status_code, response.text)
    # The message itself names the problem (the answer's stack_trace field, if any, does not count).
    assert message.lower() in response.json()["message"].lower(), (case, response.text)
    good = _frame(server.invoke({"dataframe_records": X.head(2).to_dict(orient="records")}))
    np.testing.assert_array_equal(good["prediction"], model.predict(X.head(2)))


def test_mlflow_models_predict_gives_the_same_answers(served, tracking_uri, tmp_path):
    _, model, X = served["regressor"]
    rows = X.head(5)
    input_path, output_path = tmp_path / "input.json", tmp_path / "output.json"
    input_path.write_text(json.dumps({"dataframe_split": rows.to_dict(orient="split"), "params": {"return_std": True}}))
    subprocess.run(
        [
            sys.executable,
            "-m",
            "mlflow",
            "models",
            "predict",
            "-m",
            "models:/served-regressor@champion",
            "-i",
            str(input_path),
            "-o",
            str(output_path),
            "--env-manager",
            "local",
        ],
        env={**os.environ, "MLFLOW_TRACKING_URI": tracking_uri},
        check=True,
        capture_output=True,
        timeout=300,
    )
    frame = pd.DataFrame(json.loads(output_path.read_text())["predictions"])
    mean, std = model.predict(rows, return_std=True)
    np.testing.assert_array_equal(frame["prediction"], mean)
    np.testing.assert_array_equal(frame["std"], std)
