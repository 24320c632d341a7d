"""The formula gallery example (``examples/formula/store_visits.py``) runs end to end on a sqlite store."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from mlflow import MlflowClient

from tests.conftest import isolated_environment

pytest.importorskip("bambi", reason='pip install "mlflow-pmlearn[bambi]"')

pytestmark = pytest.mark.slow
EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "formula" / "store_visits.py"


def test_store_visits_example_recovers_the_truth_registers_and_widens_a_new_store(tmp_path):
    finished = subprocess.run(
        [sys.executable, str(EXAMPLE)],
        cwd=tmp_path,
        env=isolated_environment(),
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert finished.returncode == 0, finished.stderr[-3000:]
    lines = finished.stdout.strip().splitlines()
    # The seeded truth: log mean 2 + 0.03 temperature (+ weekend, store effects of sd 0.4 over 10 stores).
    posterior = ast.literal_eval(next(line for line in lines if line.startswith("{'Intercept'")))
    assert abs(posterior["temperature"] - 0.03) < 0.01
    assert abs(posterior["Intercept"] - 2.0) < 0.4 and 0.15 < posterior["1|store_sigma"] < 0.9
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    assert client.get_model_version("store-visits", "1").status == "READY"
    header, known, new = lines[-3:]
    assert header.split() == ["prediction", "std", "lower", "upper"]
    known, new = (np.array(row.split()[1:], dtype=float) for row in (known, new))
    # The store opened after training gets its effect from the fitted spread of the stores: a wider prediction.
    assert new[1] > 1.5 * known[1] and new[3] - new[2] > known[3] - known[2]
    assert known[2] <= known[0] <= known[3]
