"""What a fit prints: one line while a cold cache compiles, and progress that ends at done.

The compile notice is checked as a new user meets it, in fresh processes over an empty
PyTensor compile cache (``base_compiledir``, which holds Numba's on-disk cache; PyTensor's
``compiledir`` alone leaves that cache where it was) and then over the same, now warm,
cache. The other checks run in this process, where a fit is made to compile by a new
Numba function compiled inside it (PyTensor's own functions may already be in Numba's
memory from an earlier test of the same process).
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import textwrap

import numba
import numpy as np
import pymc as pm
import pytest
from conftest import FAST

from estimators import inference
from estimators.base import BayesianEstimator, BayesianRegressorMixin
from estimators.inference import COMPILE_NOTICE, _shared, final_loss

#: Two fits of one model in one process, progress shown: any compile notice goes to stderr.
TWO_FITS = textwrap.dedent(
    """
    import numpy as np
    from estimators.linear_model import LinearRegression

    rng = np.random.default_rng(0)
    for _ in range(2):
        X = rng.normal(size=(50, 2))
        y = X @ [1.0, -1.0] + rng.normal(size=50)
        LinearRegression(n_draws=20, max_iter=300, random_seed=0, progressbar=True).fit(X, y)
    """
)


def _two_fits(compile_cache) -> str:
    """The stderr of a process that runs ``TWO_FITS`` with ``compile_cache`` as PyTensor's base_compiledir."""
    flags = ",".join(filter(None, [os.environ.get("PYTENSOR_FLAGS"), f"base_compiledir={compile_cache}"]))
    finished = subprocess.run(
        [sys.executable, "-c", TWO_FITS],
        check=False,
        env={**os.environ, "PYTENSOR_FLAGS": flags},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert finished.returncode == 0, finished.stderr
    return finished.stderr


def test_a_cold_cache_says_once_that_it_compiles_and_a_warm_one_says_nothing(tmp_path):
    # Measured: the first process compiles for about 20 s (on 2 busy cores), the second for 0.1 s.
    assert _two_fits(tmp_path).count(COMPILE_NOTICE) == 1
    assert COMPILE_NOTICE not in _two_fits(tmp_path)


class Mean(BayesianRegressorMixin, BayesianEstimator):
    """``y ~ Normal(mu, 1)``; ``X`` is not used."""

    def __init__(self, **inference_params):
        super().__init__(**inference_params)

    def build_model(self, X, y):
        mu = pm.Normal("mu", 0.0, 100.0)
        pm.Normal("y_obs", mu, 1.0, observed=y, shape=X.shape[0])


@pytest.fixture(scope="module")
def mean_five():
    """100 rows whose target averages 5."""
    y = np.random.default_rng(0).normal(size=100)
    return np.zeros((100, 1)), y - y.mean() + 5.0


@pytest.mark.parametrize("progressbar, notices", [(True, 1), (False, 0)])
def test_the_notice_is_part_of_the_progress_display(mean_five, caplog, monkeypatch, progressbar, notices):
    """A fit that compiles says so when it shows progress, and only then (the threshold is
    lowered to zero: compiling a small function takes well under the one second)."""
    monkeypatch.setattr(_shared, "COMPILE_NOTICE_AFTER", 0.0)
    fit_advi = inference.ENGINES["advi"]

    def compiling_fit_advi(*args, **kwargs):
        numba.njit(lambda x: x + 1.0)(1.0)  # a new function: Numba compiles it, in the fit's thread
        return fit_advi(*args, **kwargs)

    monkeypatch.setitem(inference.ENGINES, "advi", compiling_fit_advi)
    with caplog.at_level(logging.INFO, logger="pymc"):
        Mean(**{**FAST, "progressbar": progressbar}).fit(*mean_five)
    assert [record.getMessage() for record in caplog.records].count(COMPILE_NOTICE) == notices


@pytest.mark.parametrize("max_iter", [5000, 300])
def test_the_progress_bar_ends_at_done(mean_five, capsys, max_iter):
    """A converged fit (measured: 899 of 5,000 iterations) and one stopped by max_iter both
    end their bar full, with the loss of the closing line; PyMC's bar stopped at 18%."""
    X, y = mean_five
    model = Mean(**{**FAST, "max_iter": max_iter, "progressbar": True}).fit(X, y)
    loss = model.idata_.fit_history["loss"].values
    assert len(loss) < max_iter if max_iter == 5000 else len(loss) == max_iter
    bar = [line for line in capsys.readouterr().out.splitlines() if line.startswith("Fitting:")][-1]
    assert " 100% " in bar and bar.endswith(f"Average Loss = {final_loss(loss):,.6g}"), bar


def test_no_bar_without_progress(mean_five, capsys):
    Mean(**FAST).fit(*mean_five)
    assert "Fitting:" not in capsys.readouterr().out
