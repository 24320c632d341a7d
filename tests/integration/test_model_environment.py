"""A saved model runs in an environment built from its own files (``--env-manager uv``).

mlflow-pmlearn is not installed there beforehand: ``requirements.txt`` pins the libraries a
model needs and the release that saved it (``mlflow-pmlearn==<version>``), which uv installs
from a find-links folder holding this tree's wheel, as from a user's private index (0.1.0
models carry a copy of their release in ``code/``).
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import subprocess
import sys
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest

import mlflow_pmlearn
from estimators.linear_model import LinearRegression
from tests.conftest import FAST

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
SAVED_0_1_0 = REPO / "tests" / "fixtures" / "models_0_1_0"


def _uv_folder() -> str:
    """The folder of the ``uv`` binary that the test extras install; the test fails without it."""
    try:
        from uv import find_uv_bin
    except ImportError:
        pytest.fail("uv is missing: it is in the test extras (pip install -e '.[test]')")
    return os.path.dirname(find_uv_bin())


@pytest.fixture(scope="module")
def release_wheels(tmp_path_factory) -> Path:
    """A find-links folder with this tree's wheel, built as a release would be."""
    folder = tmp_path_factory.mktemp("wheels")
    built = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-w", str(folder), str(REPO)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert built.returncode == 0, built.stderr[-3000:]
    return folder


def _predict_in_uv_environment(
    model_path, rows: pd.DataFrame, params: dict, work_dir, python_version: str, find_links: Path | None = None
) -> pd.DataFrame:
    """``mlflow models predict --env-manager uv``: the model's own environment, built from its files."""
    request = work_dir / "request.json"
    request.write_text(json.dumps({"dataframe_split": json.loads(rows.to_json(orient="split")), "params": params}))
    output = work_dir / "predictions.json"
    env = {**os.environ, "MLFLOW_ENV_ROOT": str(work_dir / "envs")}
    # MLflow runs `uv` from PATH, which need not hold this interpreter's scripts folder.
    env["PATH"] = os.pathsep.join([_uv_folder(), env["PATH"]])
    # uv finds the model's Python through pyenv where pyenv has it (else it downloads one).
    env["PYENV_VERSION"] = ":".join(filter(None, [env.get("PYENV_VERSION"), python_version]))
    env.pop("PYTHONPATH", None)
    if find_links is not None:
        env["UV_FIND_LINKS"] = str(find_links)
    finished = subprocess.run(
        [
            sys.executable,
            "-m",
            "mlflow",
            "models",
            "predict",
            "-m",
            str(model_path),
            "-i",
            str(request),
            "-t",
            "json",
            "-o",
            str(output),
            "--env-manager",
            "uv",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert finished.returncode == 0, finished.stderr[-4000:]
    return pd.DataFrame(json.loads(output.read_text())["predictions"])


def test_mlflow_models_predict_in_a_fresh_uv_environment(regression_data, tmp_path, release_wheels):
    """The environment installs the pinned release that saved the model, from the find-links folder."""
    X, y, _ = regression_data
    model = LinearRegression(**FAST).fit(X, y)
    path = tmp_path / "model"
    mlflow_pmlearn.save_model(model, path)
    rows = X.head(4)
    frame = _predict_in_uv_environment(
        path, rows, {"interval_prob": 0.9}, tmp_path, platform.python_version(), find_links=release_wheels
    )
    expected = mlflow.pyfunc.load_model(str(path)).predict(rows, params={"interval_prob": 0.9})
    np.testing.assert_allclose(
        frame[["prediction", "lower", "upper"]], expected[["prediction", "lower", "upper"]], rtol=1e-9
    )


def test_model_saved_by_0_1_0_predicts_as_saved_in_its_own_uv_environment(tmp_path):
    """A 0.1.0 model served from its own requirements (Python 3.11, PyMC 5) runs the copy of
    0.1.0 it carries in ``code/`` and gives the predictions 0.1.0 stored for it. (A copy of
    the fixture: Python writes bytecode beside the code it imports.)"""
    fixture = SAVED_0_1_0 / "LinearRegression"
    path = shutil.copytree(fixture / "model", tmp_path / "model")
    stored = json.loads((fixture / "predictions.json").read_text())
    rows = json.loads((fixture / "input.json").read_text())
    python_version = json.loads((SAVED_0_1_0 / "versions.json").read_text())["python"]
    frame = _predict_in_uv_environment(
        path, pd.DataFrame(rows["data"], columns=rows["columns"]), stored["params"], tmp_path, python_version
    )
    assert list(frame.columns) == stored["predictions"]["columns"]
    # The same pins, compiled afresh by PyTensor's C backend here (flags and BLAS may differ
    # from the machine that stored them): equal up to rounding, measured 1e-10 relative.
    np.testing.assert_allclose(frame.to_numpy(), stored["predictions"]["data"], rtol=1e-9, atol=0)
