"""The pipeline example runs end to end; its registered pipeline answers over REST as pyfunc does."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
from mlflow import MlflowClient
from model_server import ModelServer

from tests.conftest import isolated_environment

pytestmark = pytest.mark.slow
MAIN = Path(__file__).resolve().parents[2] / "examples" / "pipeline" / "main.py"


def test_example_registers_a_pipeline_served_over_rest_like_pyfunc(tmp_path):
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    env = isolated_environment(uri)
    command = [sys.executable, str(MAIN), "--rows", "300", "--draws", "200"]
    finished = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert finished.returncode == 0, finished.stderr[-3000:]
    assert "registered flat-rents-pipeline version 1" in finished.stdout
    header = finished.stdout.split("from the registered pipeline:")[1].split()[:7]
    assert header == ["size_m2", "city", "floor", "prediction", "std", "lower", "upper"]

    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    champion = client.get_model_version_by_alias("flat-rents-pipeline", "champion")
    model_uri = client.get_model_version_download_uri("flat-rents-pipeline", champion.version)
    local = Path(mlflow.artifacts.download_artifacts(model_uri, dst_path=str(tmp_path / "model")))
    assert (local / "pipeline" / "preprocessing.skops").is_file()
    assert not [p for p in local.rglob("*") if p.suffix in {".pkl", ".pickle", ".joblib"}]

    rows = pd.DataFrame(
        {"size_m2": [55.0, np.nan, 90.0], "city": ["Paris", "Lyon", "Nantes"], "floor": ["top", "ground", "middle"]}
    )
    params = {"return_std": True, "interval_prob": 0.9}
    expected = mlflow.pyfunc.load_model(str(local)).predict(rows, params=params)
    server = ModelServer(str(local), tmp_path, env=env)
    try:
        server.wait_until_ready()
        body = {"dataframe_split": json.loads(rows.to_json(orient="split")), "params": params}
        response = server.invoke(body)
    finally:
        server.stop()
    assert response.status_code == 200, response.text
    served = pd.DataFrame(response.json()["predictions"])
    pd.testing.assert_frame_equal(served, expected, check_exact=True)
