"""The same data, hyper-parameters and ``random_seed`` give bit-identical posteriors and
predictions in two separate Python processes, with ADVI and with NUTS (its chains run in
turn, and in processes of their own), the first on an empty
compile cache and the second on the cache the first filled; and the predictions are those of
the posterior draws.

Each process fits both, and writes every posterior variable, the predictive summaries of
new rows and the per-draw mean and noise scale of those rows (computed with NumPy from the
posterior draws, see ``tests/references.py``) to ``.npy`` files; the processes get different
``PYTHONHASHSEED`` values, no ``MLFLOW_*`` variables, and a compile cache of their own
(PyTensor's ``base_compiledir``, which holds Numba's cache): empty when the first starts, so
that it compiles everything afresh, and warm when the second starts, so that it compiles
nothing it can load (the test checks both). With Numba's fast-math flags, the two differed
(see ``estimators/compilation.py``).

They run twice: with the suite's build (one BLAS/OpenMP thread, see ``tests/conftest.py``)
and, marked ``user_build``, with the build users run: as many BLAS/OpenMP threads as the
libraries choose. Both compile with PyTensor 3's default backend, Numba (checked), with its
default settings: the suite sets no compiler flags, since it compiles no C code.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import THREAD_COUNT_VARIABLES, isolated_environment
from tests.references import assert_within_monte_carlo_error

REPO = Path(__file__).resolve().parents[2]
METHODS = {
    "advi": {"inference": "advi", "n_draws": 100, "max_iter": 2000},
    "nuts": {"inference": "nuts", "n_draws": 100, "n_tune": 150, "n_chains": 2},
    # The same NUTS fit with its chains in two processes of their own (PyMC's workers).
    "nuts_in_parallel": {"inference": "nuts", "n_draws": 100, "n_tune": 150, "n_chains": 2, "n_jobs": 2},
}
INTERVAL_PROB = 0.9

FIT_AND_WRITE = """
import json, sys, warnings
from pathlib import Path
warnings.filterwarnings("ignore")
import numpy as np, pandas as pd, pytensor
from estimators.linear_model import LinearRegression
from tests.references import linear_regression_draws

methods, interval_prob, out = json.loads(sys.argv[1]), float(sys.argv[2]), Path(sys.argv[3])
rng = np.random.default_rng(11)
X = pd.DataFrame(rng.normal(size=(120, 3)), columns=["x0", "x1", "x2"])
y = 1.0 + X.to_numpy() @ [2.0, -1.0, 0.5] + rng.normal(scale=0.5, size=120)
# Far outside the training rows: parameter uncertainty is most of the predictive spread there.
X_new = pd.DataFrame(rng.normal(scale=10.0, size=(20, 3)), columns=["x0", "x1", "x2"])
(out / "linker.txt").write_text(type(pytensor.compile.mode.get_default_mode().linker).__name__)
(out / "compiledir.txt").write_text(str(pytensor.config.base_compiledir))
for method, settings in methods.items():
    model = LinearRegression(random_seed=1234, progressbar=False, **settings).fit(X, y)
    folder = out / method
    folder.mkdir(parents=True)
    for name, values in model.idata_.posterior.data_vars.items():
        np.save(folder / f"posterior_{name}.npy", values.values)
    for name, values in model.predict_summary(X_new, interval_prob=interval_prob).items():
        np.save(folder / f"predict_{name}.npy", values)
    for name, values in zip(("mu", "sigma"), linear_regression_draws(model, X_new)):
        np.save(folder / f"reference_{name}.npy", values)
"""


def _environment(build: str) -> dict[str, str]:
    """A child process's environment with the suite's build, or with the build users run."""
    environment = isolated_environment()
    if build == "user_build":
        for variable in THREAD_COUNT_VARIABLES:
            environment.pop(variable, None)
    return environment


@pytest.fixture(scope="module", params=["test_build", pytest.param("user_build", marks=pytest.mark.user_build)])
def two_processes(request, tmp_path_factory) -> list[Path]:
    """Output folders of two fresh processes that fit the same models, with the ``request.param``
    build: the first on an empty compile cache, the second on the cache the first filled."""
    compile_cache = tmp_path_factory.mktemp(f"{request.param}-compile-cache")
    environment = _environment(request.param)
    flags = ",".join(filter(None, [environment.get("PYTENSOR_FLAGS"), f"base_compiledir={compile_cache}"]))
    outputs, cached = [], []
    for hash_seed in ("1", "2"):
        out = tmp_path_factory.mktemp(f"{request.param}-process-{hash_seed}")
        result = subprocess.run(
            [sys.executable, "-c", FIT_AND_WRITE, json.dumps(METHODS), str(INTERVAL_PROB), str(out)],
            cwd=REPO,
            env={**environment, "PYTHONHASHSEED": hash_seed, "PYTENSOR_FLAGS": flags},
            capture_output=True,
            text=True,
            timeout=600,
        )
        assert result.returncode == 0, result.stderr[-3000:]
        assert (out / "compiledir.txt").read_text() == str(compile_cache)
        assert (out / "linker.txt").read_text() == "NumbaLinker", "the build is not PyTensor's default, Numba"
        cached.append(sorted(path.name for path in (compile_cache / "numba").iterdir()))
        outputs.append(out)
    assert cached[0], "the first process cached no compiled function"
    assert cached[1] == cached[0], "the second process compiled functions the first had cached"
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


def test_chains_in_processes_of_their_own_give_the_draws_of_chains_run_in_turn(two_processes):
    """PyMC's workers compile the pickled sampler afresh: without fast-math, as the process
    that made it (``estimators.compilation.STRICT_NUMBA``), on an empty cache and a warm one."""
    for out in two_processes:
        names = sorted(path.name for path in (out / "nuts").glob("*.npy"))
        for name in names:
            assert np.array_equal(np.load(out / "nuts" / name), np.load(out / "nuts_in_parallel" / name)), name


@pytest.mark.parametrize("method", list(METHODS))
def test_predictions_are_the_normal_mixture_of_the_posterior_draws(two_processes, method):
    """Predictive mean, std and interval of the new rows within Monte Carlo error of the
    Normal mixture ``N(mu_s, sigma_s)`` of the posterior draws, computed with NumPy.

    The new rows lie far from the training rows, so a std of the noise alone (the
    posterior-mean parameters) misses by several tolerances.
    """
    folder = two_processes[0] / method
    summary = {key: np.load(folder / f"predict_{key}.npy") for key in ("mean", "std", "lower", "upper")}
    mu, sigma = np.load(folder / "reference_mu.npy"), np.load(folder / "reference_sigma.npy")
    assert_within_monte_carlo_error(summary, mu, sigma, interval_prob=INTERVAL_PROB)
