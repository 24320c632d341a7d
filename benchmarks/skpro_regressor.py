"""SkproRegressor's predictive distribution against the NumPy floor and skpro's own PyMC regressor.

A linear regression (5 features, Normal noise) is fitted once on 500 seeded rows (ADVI,
1,000 posterior draws). Then, side by side on the same 1,000 new rows, each timed as the
median of 5 warm calls of ``predict_proba(X)`` followed by ``log_pdf(y)``:

- ``numpy_floor``: the arithmetic floor, hand-written NumPy on the same posterior draws:
  ``a + X @ b`` for every draw and row, the Normal log density, a log-mean-exp over draws;
- ``pmlearn_skpro``: :class:`estimators.skpro.SkproRegressor` (the exact mixture over the
  draws, its per-draw parameters from the compiled predictor);
- ``skpro_bayesian_linear``: skpro's ``BayesianLinearRegressor`` (PyMC through
  pymc-marketing; it re-samples the posterior predictive on each call and returns an
  ``Empirical`` sample), timed where it runs, its error recorded where it does not (with
  pymc-marketing 1.3 installed it fails on ``import pymc_marketing.prior``, a module that
  release no longer has; checked 2026-12-07 in a separate environment).

Run from the repository root::

    python -m benchmarks.skpro_regressor      # prints a table, writes skpro_regressor.json
"""

from __future__ import annotations

import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats
from scipy.special import logsumexp

from benchmarks import write_results
from estimators.linear_model import LinearRegression
from estimators.skpro import SkproRegressor

RESULTS = Path(__file__).with_name("skpro_regressor.json")
N_TRAIN, N_NEW, N_DRAWS, REPEATS = 500, 1_000, 1_000, 5


def _data() -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    rng = np.random.default_rng(0)
    X = pd.DataFrame(rng.normal(size=(N_TRAIN + N_NEW, 5)), columns=[f"x{i}" for i in range(5)])
    y = 1.0 + X.to_numpy() @ np.array([2.0, -1.0, 0.5, 0.0, 1.5]) + rng.normal(scale=0.7, size=len(X))
    y = pd.DataFrame({"y": y})
    return X.iloc[:N_TRAIN], y.iloc[:N_TRAIN], X.iloc[N_TRAIN:], y.iloc[N_TRAIN:]


def _median_seconds(call) -> float:
    call()  # warm: compilation and caches
    times = []
    for _ in range(REPEATS):
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def _numpy_floor(estimator, X: pd.DataFrame, y: pd.DataFrame) -> np.ndarray:
    posterior = estimator.idata_.posterior
    intercept = posterior["intercept"].values.reshape(-1)
    coef = posterior["coef"].values.reshape(-1, X.shape[1])
    sigma = posterior["sigma"].values.reshape(-1)
    mu = intercept[:, None] + coef @ X.to_numpy().T
    log_density = stats.norm.logpdf(y.to_numpy()[:, 0], mu, sigma[:, None])
    return logsumexp(log_density, axis=0) - np.log(len(mu))


def _skpro_bayesian_linear(X, y, X_new, y_new) -> dict:
    """skpro's own PyMC regressor: its time, or why it does not run here."""
    try:
        from skpro.regression.bayesian import BayesianLinearRegressor

        regressor = BayesianLinearRegressor().fit(X, y)
        seconds = _median_seconds(lambda: regressor.predict_proba(X_new).log_pdf(y_new))
    except Exception as error:  # noqa: BLE001 -- the benchmark reports whatever stops it
        return {"runs": False, "error": f"{type(error).__name__}: {error}"[:300]}
    return {"runs": True, "seconds": seconds}


def main() -> None:
    X, y, X_new, y_new = _data()
    settings = {"inference": "advi", "n_draws": N_DRAWS, "random_seed": 0, "progressbar": False}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        regressor = SkproRegressor(LinearRegression(**settings)).fit(X, y)
    ours = regressor.predict_proba(X_new).log_pdf(y_new).iloc[:, 0].to_numpy()
    floor = _numpy_floor(regressor.estimator_, X_new, y_new)
    max_difference = float(np.abs(ours - floor).max())
    timings = {
        "numpy_floor": _median_seconds(lambda: _numpy_floor(regressor.estimator_, X_new, y_new)),
        "pmlearn_skpro": _median_seconds(lambda: regressor.predict_proba(X_new).log_pdf(y_new)),
    }
    skpro_own = _skpro_bayesian_linear(X, y, X_new, y_new)
    if skpro_own["runs"]:
        timings["skpro_bayesian_linear"] = skpro_own["seconds"]
    floor_seconds = timings["numpy_floor"]
    print(f"predict_proba + log_pdf on {N_NEW:,} rows, {N_DRAWS:,} posterior draws (median of {REPEATS})")
    print(f"{'method':<24}{'ms':>10}{'x floor':>10}")
    for name, seconds in timings.items():
        print(f"{name:<24}{seconds * 1000:>10.1f}{seconds / floor_seconds:>10.1f}")
    if not skpro_own["runs"]:
        print(f"{'skpro_bayesian_linear':<24}  does not run: {skpro_own['error']}")
    print(f"largest |log_pdf - floor's|: {max_difference:.2e}")
    write_results(
        RESULTS,
        rows=N_NEW,
        posterior_draws=N_DRAWS,
        repeats=REPEATS,
        seconds=timings,
        ratio_to_numpy_floor={name: seconds / floor_seconds for name, seconds in timings.items()},
        skpro_bayesian_linear=skpro_own,
        max_abs_log_pdf_difference_to_floor=max_difference,
    )


if __name__ == "__main__":
    main()
