"""Predictive draws from likelihoods without a closed-form inverse CDF, against the NumPy floor.

A Poisson regression (log link, 2 features) is fitted once on 500 seeded rows (ADVI,
1,000 posterior draws). Then, side by side on the same 10,000 new rows, each timed as the
median of 5 warm calls:

- ``numpy_floor``: the arithmetic floor, hand-written NumPy: ``exp(a + X @ b)`` for every
  draw and row, then one ``Generator.poisson`` call (no summaries);
- ``pmlearn_predict``: ``predict_summary(X, interval_prob=0.9)``: the numerically
  inverted CDF (estimators/likelihood_draws.py) at each draw's uniform, then mean, std
  and interval;
- ``pmlearn_samples``: ``sample_posterior_predictive(X)``: the draws alone;
- ``pymc_sample_posterior_predictive``: PyMC's own ``pm.sample_posterior_predictive`` on
  the same posterior, with the rows (and a placeholder target) set through ``pm.set_data``.

The same is run for a zero-inflated Poisson likelihood (a mixture: its CDF is inverted
the same way) and for a Normal likelihood (closed-form inverse CDF), for scale.

Run from the repository root::

    python -m benchmarks.likelihoods          # prints a table, writes likelihoods.json
"""

from __future__ import annotations

import json
import platform
import time
import warnings
from pathlib import Path

import numpy as np
import pymc as pm
import pytensor.tensor as pt

from estimators.base import TARGET, BayesianEstimator, BayesianRegressorMixin

RESULTS = Path(__file__).with_name("likelihoods.json")
N_TRAIN, N_NEW, N_DRAWS, REPEATS = 500, 10_000, 1_000, 5


class _CountRegression(BayesianRegressorMixin, BayesianEstimator):
    """A log-link regression with the likelihood named by ``family``."""

    def __init__(self, *, family: str = "poisson", **inference_params):
        super().__init__(**inference_params)
        self.family = family

    def build_model(self, X, y):
        coef = pm.Normal("coef", 0.0, 1.0, shape=2)
        intercept = pm.Normal("intercept", 0.0, 2.0)
        eta = intercept + X @ coef
        if self.family == "poisson":
            pm.Poisson("y_obs", pt.exp(eta), observed=y)
        elif self.family == "zero_inflated_poisson":
            pm.ZeroInflatedPoisson("y_obs", psi=pm.Beta("psi", 2.0, 2.0), mu=pt.exp(eta), observed=y)
        else:
            pm.Normal("y_obs", eta, pm.HalfNormal("sigma", 1.0), observed=y)


def _median_seconds(function) -> float:
    function()
    times = []
    for _ in range(REPEATS):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def _measure(family: str) -> dict[str, float]:
    rng = np.random.default_rng(0)
    X = rng.normal(size=(N_TRAIN + N_NEW, 2))
    mean = np.exp(1.0 + X @ [0.5, -0.3])
    y = rng.poisson(mean) if family != "normal" else np.log(mean) + 0.3 * rng.normal(size=len(X))
    if family == "zero_inflated_poisson":
        y = np.where(rng.uniform(size=len(X)) < 0.3, 0, y)
    X_train, y_train, X_new = X[:N_TRAIN], y[:N_TRAIN], X[N_TRAIN:]
    model = _CountRegression(family=family, inference="advi", n_draws=N_DRAWS, random_seed=0, progressbar=False).fit(
        X_train, y_train
    )
    posterior = model.idata_.posterior.to_dataset().stack(sample=("chain", "draw"))
    coef, intercept = posterior["coef"].values, posterior["intercept"].values

    def numpy_floor():
        mean = np.exp(intercept[:, None] + (X_new @ coef).T)
        return rng.poisson(mean) if family != "normal" else rng.normal(np.log(mean), 0.3)

    pymc_model = model.pymc_model()
    idata = model.idata_.copy()

    def pymc_ppc():
        with pymc_model:
            pm.set_data({"X": X_new, TARGET: np.zeros(N_NEW, dtype=y_train.dtype)})
            return pm.sample_posterior_predictive(idata, var_names=["y_obs"], progressbar=False, random_seed=0)

    times = {
        "method": type(model.posterior_predictor()).__name__,
        "numpy_floor_s": _median_seconds(numpy_floor),
        "pmlearn_predict_s": _median_seconds(lambda: model.predict_summary(X_new, interval_prob=0.9)),
        "pmlearn_samples_s": _median_seconds(lambda: model.sample_posterior_predictive(X_new)),
    }
    try:
        times["pymc_sample_posterior_predictive_s"] = _median_seconds(pymc_ppc)
    except Exception as error:  # PyMC cannot resize every model's observed variable
        times["pymc_sample_posterior_predictive_s"] = float("nan")
        times["pymc_error"] = f"{type(error).__name__}: {error}"[:200]
    times["predict_over_floor"] = times["pmlearn_predict_s"] / times["numpy_floor_s"]
    times["samples_over_floor"] = times["pmlearn_samples_s"] / times["numpy_floor_s"]
    return times


def main() -> None:
    warnings.filterwarnings("ignore")
    results = {family: _measure(family) for family in ("poisson", "zero_inflated_poisson", "normal")}
    header = f"{'likelihood':24s} {'method':22s} {'NumPy floor':>11s} {'predict':>9s} {'samples':>9s} {'PyMC ppc':>9s} {'samples/floor':>14s}"
    print(f"{N_NEW:,} rows x {N_DRAWS:,} posterior draws; median of {REPEATS} warm calls, seconds")
    print(header)
    for family, row in results.items():
        print(
            f"{family:24s} {row['method']:22s} {row['numpy_floor_s']:11.3f} {row['pmlearn_predict_s']:9.3f} "
            f"{row['pmlearn_samples_s']:9.3f} {row['pymc_sample_posterior_predictive_s']:9.3f} {row['samples_over_floor']:14.1f}x"
        )
    RESULTS.write_text(json.dumps({"machine": platform.platform(), "results": results}, indent=2) + "\n")
    print(f"written {RESULTS}")


if __name__ == "__main__":
    main()
