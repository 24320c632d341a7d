"""The example MLprojects run with ``mlflow run`` in a subprocess, against a real sqlite store."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import mlflow
import pytest
from mlflow import MlflowClient

pytestmark = pytest.mark.slow
EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


@pytest.mark.parametrize(
    "project, model_name, metric",
    [("regression", "project-regression", "test_log_predictive_density"), ("classification", "project-classifier", "test_log_loss")],
)
def test_mlflow_run_trains_autologs_and_registers(project, model_name, metric, tmp_path):
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    command = [
        sys.executable, "-m", "mlflow", "run", str(EXAMPLES / project), "--env-manager", "local",
        "-P", "draws=200", "-P", "max_iter=3000", "-P", f"registered_model_name={model_name}",
    ]
    # Only this test's store: no tracking/registry URI, experiment or run left by other tests.
    inherited = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    env = {**inherited, "MLFLOW_TRACKING_URI": uri}
    finished = subprocess.run(command, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert finished.returncode == 0, finished.stdout[-3000:] + finished.stderr[-3000:]

    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    (version,) = client.search_model_versions(f"name='{model_name}'")
    run = client.get_run(version.run_id)
    assert run.info.status == "FINISHED"
    assert metric in run.data.metrics
    assert any(key.startswith("prior.") for key in run.data.params)
    previous = mlflow.get_tracking_uri(), mlflow.get_registry_uri()
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    try:
        served = mlflow.pyfunc.load_model(f"models:/{model_name}/{version.version}")
    finally:
        mlflow.set_tracking_uri(previous[0])
        mlflow.set_registry_uri(previous[1])
    assert "prediction" in served.metadata.get_output_schema().input_names()
