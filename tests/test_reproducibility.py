"""The same data, hyper-parameters and ``random_seed`` give bit-identical posteriors and
predictions in two separate Python processes, with ADVI and with NUTS.

Each process fits both, and writes every posterior variable and the predictive summaries
of new rows to ``.npy`` files; the processes get different ``PYTHONHASHSEED`` values and
no ``MLFLOW_*`` variables.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
METHODS = {
    "advi": {"inference": "advi", "n_draws": 100, "max_iter": 2000},
    "nuts": {"inference": "nuts", "n_draws": 100, "n_tune": 150, "n_chains": 2},
}

FIT_AND_WRITE = """
import json, sys, warnings
from pathlib import Path
warnings.filterwarnings("ignore")
import numpy as np, pandas as pd
from estimators.linear_model import LinearRegression

methods, out = json.loads(sys.argv[1]), Path(sys.argv[2])
rng = np.random.default_rng(11)
X = pd.DataFrame(rng.normal(size=(120, 3)), columns=["x0", "x1", "x2"])
y = 1.0 + X.to_numpy() @ [2.0, -1.0, 0.5] + rng.normal(scale=0.5, size=120)
X_new = pd.DataFrame(rng.normal(size=(20, 3)), columns=["x0", "x1", "x2"])
for method, settings in methods.items():
    model = LinearRegression(random_seed=1234, progressbar=False, **settings).fit(X, y)
    folder = out / method
    folder.mkdir(parents=True)
    for name, values in model.idata_.posterior.data_vars.items():
        np.save(folder / f"posterior_{name}.npy", values.values)
    for name, values in model.predict_summary(X_new, interval_prob=0.9).items():
        np.save(folder / f"predict_{name}.npy", values)
"""


@pytest.fixture(scope="module")
def two_processes(tmp_path_factory) -> list[Path]:
    """Output folders of two fresh processes that fit the same models."""
    outputs = []
    for hash_seed in ("1", "2"):
        out = tmp_path_factory.mktemp(f"process-{hash_seed}")
        env = {key: value for key, value in os.environ.items() if not key.startswith("MLFLOW_")}
        env["PYTHONHASHSEED"] = hash_seed
        result = subprocess.run(
            [sys.executable, "-c", FIT_AND_WRITE, json.dumps(METHODS), str(out)],
            cwd=REPO, env=env, capture_output=True, text=True, timeout=600,
        )
        assert result.returncode == 0, result.stderr[-3000:]
        outputs.append(out)
    return outputs


@pytest.mark.parametrize("method", list(METHODS))
def test_two_processes_give_bit_identical_posteriors_and_predictions(two_processes, method):
    first, second = (out / method for out in two_processes)
    names = sorted(path.name for path in first.glob("*.npy"))
    assert names == sorted(path.name for path in second.glob("*.npy"))
    assert {"posterior_coef_std.npy", "posterior_noise_std.npy", "predict_mean.npy", "predict_upper.npy"} <= set(names)
    for name in names:
        a, b = np.load(first / name), np.load(second / name)
        assert a.dtype == b.dtype and a.shape == b.shape, name
        assert np.array_equal(a, b), f"{method}: {name} differs between the two processes"
    # Not trivially equal: the draws vary.
    assert np.load(first / "posterior_coef_std.npy").std() > 0
