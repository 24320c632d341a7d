"""The README's main job runs end to end on MLflow's default sqlite store."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from mlflow import MlflowClient

from tests.conftest import isolated_environment

pytestmark = pytest.mark.slow
MAIN = Path(__file__).resolve().parents[2] / "examples" / "quickstart" / "main.py"


def test_main_job_trains_registers_and_predicts_from_the_registry(tmp_path):
    env = isolated_environment()
    finished = subprocess.run(
        [sys.executable, str(MAIN)], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600
    )
    assert finished.returncode == 0, finished.stderr[-3000:]
    assert "registered diabetes-bayesian-regression version 1" in finished.stdout
    table = finished.stdout.split("from the registered model:")[1].split()
    assert table[:5] == ["actual", "prediction", "std", "lower", "upper"]
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    assert (tmp_path / "mlflow.db").exists()
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    champion = client.get_model_version_by_alias("diabetes-bayesian-regression", "champion")
    run = client.get_run(champion.run_id)
    assert any(key.startswith("prior.") for key in run.data.params)
    # The default engine, NUTS, and its sampler's diagnostics: no divergence, chains that agree.
    assert run.data.params["inference"] == "nuts" and "test_r2" in run.data.metrics
    assert run.data.metrics["divergences"] == 0 and run.data.metrics["r_hat_max"] < 1.01
