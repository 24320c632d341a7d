"""A saved model runs in an environment built from its own files (``--env-manager uv``).

mlflow-pmlearn is not installed there: its code travels in the model's ``code/`` directory
and ``requirements.txt`` pins the libraries it needs.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import mlflow
import numpy as np
import pandas as pd
import pytest

import mlflow_pmlearn
from estimators.linear_model import LinearRegression
from tests.conftest import FAST

pytestmark = pytest.mark.slow


def _uv_folder() -> str:
    """The folder of the ``uv`` binary that the test extras install; the test fails without it."""
    try:
        from uv import find_uv_bin
    except ImportError:
        pytest.fail("uv is missing: it is in the test extras (pip install -e '.[test]')")
    return os.path.dirname(find_uv_bin())


def test_mlflow_models_predict_in_a_fresh_uv_environment(regression_data, tmp_path):
    X, y, _ = regression_data
    model = LinearRegression(**FAST).fit(X, y)
    path = tmp_path / "model"
    mlflow_pmlearn.save_model(model, path)
    rows = X.head(4)
    request = tmp_path / "request.json"
    request.write_text(json.dumps({"dataframe_split": json.loads(rows.to_json(orient="split")), "params": {"interval_prob": 0.9}}))
    output = tmp_path / "predictions.json"
    env = {**os.environ, "MLFLOW_ENV_ROOT": str(tmp_path / "envs")}
    # MLflow runs `uv` from PATH, which need not hold this interpreter's scripts folder.
    env["PATH"] = os.pathsep.join([_uv_folder(), env["PATH"]])
    env.pop("PYTHONPATH", None)
    finished = subprocess.run(
        [sys.executable, "-m", "mlflow", "models", "predict", "-m", str(path), "-i", str(request),
         "-t", "json", "-o", str(output), "--env-manager", "uv"],
        env=env, capture_output=True, text=True, timeout=900,
    )
    assert finished.returncode == 0, finished.stderr[-4000:]
    frame = pd.DataFrame(json.loads(output.read_text())["predictions"])
    expected = mlflow.pyfunc.load_model(str(path)).predict(rows, params={"interval_prob": 0.9})
    np.testing.assert_allclose(frame[["prediction", "lower", "upper"]], expected[["prediction", "lower", "upper"]], rtol=1e-9)
