"""The example MLprojects run with ``mlflow run`` in a subprocess, against a real sqlite store."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
import xarray as xr
from mlflow import MlflowClient
from sklearn.datasets import load_iris

from tests.conftest import isolated_environment

pytestmark = pytest.mark.slow
EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def _mlflow_run(project: str, parameters: dict, tmp_path: Path) -> MlflowClient:
    """Run ``mlflow run examples/<project>`` with ``parameters`` on a sqlite store in ``tmp_path``.

    Returns a client of that store (tracking and registry).
    """
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    command = [sys.executable, "-m", "mlflow", "run", str(EXAMPLES / project), "--env-manager", "local"]
    for name, value in parameters.items():
        command += ["-P", f"{name}={value}"]
    # Only this test's store: no tracking/registry URI, experiment or run left by other tests.
    env = isolated_environment(uri)
    finished = subprocess.run(command, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert finished.returncode == 0, finished.stdout[-3000:] + finished.stderr[-3000:]
    return MlflowClient(tracking_uri=uri, registry_uri=uri)


def _registered_run(client: MlflowClient, model_name: str):
    """The one version registered under ``model_name`` and the run that logged it."""
    (version,) = client.search_model_versions(f"name='{model_name}'")
    return version, client.get_run(version.run_id)


def _logged_trace(client: MlflowClient, run_id: str, tmp_path: Path) -> xr.DataTree:
    """The posterior that autolog logged as ``trace/trace.nc``."""
    return xr.load_datatree(client.download_artifacts(run_id, "trace/trace.nc", str(tmp_path)), engine="h5netcdf")


def _dataset_columns(run) -> list[str]:
    """Column names of the run's (one) training dataset input."""
    (dataset_input,) = run.inputs.dataset_inputs
    return [column["name"] for column in json.loads(dataset_input.dataset.schema)["mlflow_colspec"]]


@pytest.mark.parametrize(
    "project, model_name, metric",
    [
        ("regression", "project-regression", "test_log_predictive_density"),
        ("classification", "project-classifier", "test_log_loss"),
    ],
)
def test_mlflow_run_trains_autologs_and_registers(project, model_name, metric, tmp_path):
    client = _mlflow_run(project, {"draws": 200, "max_iter": 3000, "registered_model_name": model_name}, tmp_path)
    version, run = _registered_run(client, model_name)
    assert run.info.status == "FINISHED"
    assert metric in run.data.metrics
    assert any(key.startswith("prior.") for key in run.data.params)
    uri = client.tracking_uri
    previous = mlflow.get_tracking_uri(), mlflow.get_registry_uri()
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    try:
        served = mlflow.pyfunc.load_model(f"models:/{model_name}/{version.version}")
    finally:
        mlflow.set_tracking_uri(previous[0])
        mlflow.set_registry_uri(previous[1])
    assert "prediction" in served.metadata.get_output_schema().input_names()


def test_mlflow_run_regression_fits_a_csv_with_nuts_and_every_given_setting(tmp_path):
    """NUTS on a CSV file with a named target: each non-default parameter reaches the fit.

    The checks read what the fit itself logged (autolog's hyper-parameters, priors read from
    the PyMC graph, the trace), never the MLproject parameters that ``mlflow run`` logs.
    """
    rng = np.random.default_rng(11)
    features = pd.DataFrame(rng.normal(size=(120, 2)), columns=["size", "age"])
    coef = np.array([1.5, -2.0])
    price = 3.0 + features.to_numpy() @ coef + rng.normal(scale=0.3, size=len(features))
    csv = tmp_path / "houses.csv"
    # The target between the features, so that neither the first nor the last column is it by chance.
    features.insert(1, "price", price)
    features.to_csv(csv, index=False)
    parameters = {
        "inference": "nuts",
        "draws": 40,
        "tune": 60,
        "chains": 3,
        "prior_scale": 0.5,
        "seed": 7,
        "dataset": csv,
        "target": "price",
        "registered_model_name": "houses",
    }
    client = _mlflow_run("regression", parameters, tmp_path)

    _, run = _registered_run(client, "houses")
    trace = _logged_trace(client, run.info.run_id, tmp_path)
    assert "sample_stats" in trace.children, "not sampled with NUTS"
    assert (trace.posterior.sizes["chain"], trace.posterior.sizes["draw"]) == (3, 40)
    assert (trace.posterior.attrs["tuning_steps"], trace.posterior.attrs["pmlearn_seed"]) == (60, 7)
    logged = run.data.params
    assert logged["model.estimator_class"].endswith(".LinearRegression")
    assert logged["prior.coef_std"] == "Normal(loc=0.0, scale=0.5)"
    # The CSV's 120 rows, less the held-out quarter, and its two feature columns.
    assert (logged["training.rows"], logged["training.columns"]) == ("90", "2")
    assert _dataset_columns(run) == ["size", "age", "target"]
    # Fitted to the CSV's `price` on its features: the seeded coefficients come back.
    np.testing.assert_allclose(trace.posterior["coef"].mean(("chain", "draw")), coef, atol=0.15)
    # Last: a hyper-parameter named like an MLproject parameter (inference, max_iter,
    # prior_scale) is logged only with the same value, or autolog loses all of them.
    assert (logged["n_draws"], logged["n_tune"], logged["n_chains"], logged["random_seed"]) == ("40", "60", "3", "7")


def test_mlflow_run_classification_fits_another_estimator_and_dataset_with_given_settings(tmp_path):
    """MLPClassifier on iris with ADVI: the estimator, dataset, draws, max_iter, prior scale and seed reach the fit."""
    parameters = {
        "estimator": "MLPClassifier",
        "dataset": "iris",
        "draws": 50,
        "max_iter": 300,
        "prior_scale": 1.5,
        "seed": 5,
        "registered_model_name": "iris-mlp",
    }
    client = _mlflow_run("classification", parameters, tmp_path)

    _, run = _registered_run(client, "iris-mlp")
    # Unconverged at 300 iterations (the default max_iter would run on to about 1,100).
    assert run.data.metrics["advi_iterations"] <= 300
    trace = _logged_trace(client, run.info.run_id, tmp_path)
    assert (trace.posterior.sizes["draw"], trace.posterior.attrs["pmlearn_seed"]) == (50, 5)
    logged = run.data.params
    assert logged["model.estimator_class"].endswith(".MLPClassifier")
    # Read from the PyMC graph: biases have sd prior_scale, first-layer weights prior_scale / sqrt(4 features).
    assert (logged["prior.b_1"], logged["prior.w_1"]) == ("Normal(loc=0.0, scale=1.5)", "Normal(loc=0.0, scale=0.75)")
    assert (logged["training.rows"], logged["training.columns"]) == ("112", "4")
    assert _dataset_columns(run) == [*load_iris().feature_names, "target"]
    # Last: a hyper-parameter named like an MLproject parameter (inference, max_iter,
    # prior_scale) is logged only with the same value, or autolog loses all of them.
    assert (logged["n_draws"], logged["random_seed"]) == ("50", "5")

    (model_output,) = run.outputs.model_outputs
    model = mlflow.models.Model.load(client.get_logged_model(model_output.model_id).artifact_location)
    # Iris's three classes (the default dataset, breast cancer, has two).
    assert model.signature.outputs.input_names() == ["prediction", "proba_0", "proba_1", "proba_2"]
