"""Gaussian processes against scikit-learn: the engines' fit time and log score, prediction, sparse scale.

Data: ``y = sin(x0) + 0.5 cos(2 x1) + N(0, 0.2^2)`` on ``[-3, 3]^2``, seeded. Every ratio is
measured side by side in one run: the two sides alternate, each ``REPEATS`` times after a
warm-up, and the medians are kept.

- ``fit``: ``GaussianProcessRegressor`` on 1,000 x 2 with each engine (first fitted once
  on other data of the same shape, so that the timed fit is a retraining job's: compiled
  code cached), against scikit-learn's ``GaussianProcessRegressor`` (``C * RBF +
  WhiteKernel``, ``normalize_y=True``, no optimizer restarts). With each, the held-out mean
  log predictive density on 1,000 new rows: ours ``log_predictive_density(X, y).mean()``
  (the mixture over posterior draws), scikit-learn's plug-in ``norm.logpdf(y, mean, std)``
  (its ``return_std`` includes the fitted white noise). Pathfinder, ADVI and NUTS take minutes at this
  size, so they run only with ``--slow``; without it, their cost is the fit's gradient
  count times one gradient's time, listed as a lower bound.
- ``predict``: ``predict(X, return_std=True)`` on 1,000 new rows with the default engine's
  fit (per-draw parts already built by a first call), against scikit-learn's. The mean takes
  every posterior draw, the latent variance a subset of ``n_variance_draws``: with it, the
  largest Monte Carlo standard error of the standard deviation that ``predict_summary``
  reports, and the largest actual error against every draw's exact predictive distribution
  (``likelihood_parameters``, whose one timed call is the all-draws cost).
- ``sparse``: ``SparseGaussianProcessRegressor`` (50 inducing points, VFE) on 20,000 x 2
  with the default engine: a second fit on new data.

Run from the repository root::

    python -m benchmarks.gp           # prints a table, writes gp.json (about 5 minutes on 2 cores)
    python -m benchmarks.gp --slow    # also fits with pathfinder, ADVI and NUTS at 1,000 rows (tens of minutes)
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
import warnings
from collections.abc import Callable
from datetime import date
from pathlib import Path

import numpy as np

RESULTS = Path(__file__).with_name("gp.json")
N_ROWS, N_SPARSE, REPEATS = 1_000, 20_000, 3
FAST_ENGINES, SLOW_ENGINES = ("laplace",), ("pathfinder", "advi", "nuts")
#: Gradients an engine takes at this size, for the lower bound of the engines not run.
GRADIENTS = {"advi": 1_900, "nuts": 2 * (1_000 + 100) * 3}


def gp_rows(seed: int, n_rows: int) -> tuple[np.ndarray, np.ndarray]:
    """The seeded GP data of the module docstring: ``n_rows`` x 2 features and their targets."""
    rng = np.random.default_rng(seed)
    X = rng.uniform(-3.0, 3.0, size=(n_rows, 2))
    return X, np.sin(X[:, 0]) + 0.5 * np.cos(2.0 * X[:, 1]) + rng.normal(scale=0.2, size=n_rows)


def _timed(function: Callable[[], object]) -> tuple[float, object]:
    start = time.perf_counter()
    result = function()
    return time.perf_counter() - start, result


def _side_by_side(ours: Callable[[], object], theirs: Callable[[], object], repeats: int) -> tuple[float, float]:
    """Median seconds of ``ours`` and ``theirs``, alternately ``repeats`` times each (no warm-up: callers warm up)."""
    times_ours, times_theirs = [], []
    for _ in range(repeats):
        times_ours.append(_timed(ours)[0])
        times_theirs.append(_timed(theirs)[0])
    return float(np.median(times_ours)), float(np.median(times_theirs))


def _sklearn_gp():
    from sklearn.gaussian_process import GaussianProcessRegressor
    from sklearn.gaussian_process.kernels import RBF, ConstantKernel, WhiteKernel

    kernel = ConstantKernel() * RBF() + WhiteKernel()
    return GaussianProcessRegressor(kernel, normalize_y=True, n_restarts_optimizer=0, random_state=0)


def _sklearn_log_scores(model, X: np.ndarray, y: np.ndarray) -> np.ndarray:
    """scikit-learn's plug-in log predictive density of each row."""
    from scipy.stats import norm

    mean, std = model.predict(X, return_std=True)
    return norm.logpdf(y, mean, std)


def _gradient_seconds(model) -> float:
    """Seconds of one log-density gradient of a fitted estimator's model (median of 5)."""
    pymc_model = model.pymc_model()
    gradient = pymc_model.compile_dlogp()
    point = pymc_model.initial_point()
    gradient(point)
    return float(np.median([_timed(lambda: gradient(point))[0] for _ in range(5)]))


def bench_fit(engines: tuple[str, ...]) -> tuple[list[dict], object]:
    """One row per engine; returns also the default engine's fitted estimator (for ``predict``)."""
    from estimators.gaussian_process import GaussianProcessRegressor

    X_first, y_first = gp_rows(0, N_ROWS)
    X_train, y_train = gp_rows(1, N_ROWS)
    X_test, y_test = gp_rows(2, N_ROWS)
    sklearn_model = _sklearn_gp().fit(X_train, y_train)
    sklearn_scores = _sklearn_log_scores(sklearn_model, X_test, y_test)
    sklearn_lpd = float(sklearn_scores.mean())
    rows, default_fit, gradient_s = [], None, None
    for engine in (*engines, *(e for e in SLOW_ENGINES if e not in engines)):

        def estimator():
            return GaussianProcessRegressor(inference=engine, random_seed=0, progressbar=False)

        if engine not in engines:  # too slow to run by default: a lower bound from one gradient's time
            steps = GRADIENTS.get(engine)
            rows.append(
                {
                    "engine": engine,
                    "ours_s": steps * gradient_s if steps else None,
                    "sklearn_s": None,
                    "ratio": None,
                    "ours_lpd": None,
                    "sklearn_lpd": sklearn_lpd,
                    "first_fit_s": None,
                    "note": (
                        f"not run: >= {steps:,} gradients x {gradient_s:.3f} s (lower bound; run with --slow)"
                        if steps
                        else "not run: minutes per fit at this size (56 s at 300 rows in benchmarks/engines.py); run with --slow"
                    ),
                }
            )
            continue
        first_s, _ = _timed(lambda: estimator().fit(X_first, y_first))
        repeats = REPEATS if engine in FAST_ENGINES else 1
        fitted = []
        ours_s, theirs_s = _side_by_side(
            lambda: fitted.append(estimator().fit(X_train, y_train)),
            lambda: _sklearn_gp().fit(X_train, y_train),
            repeats,
        )
        model = fitted[-1]
        if gradient_s is None:
            gradient_s = _gradient_seconds(model)
        if engine == GaussianProcessRegressor().inference:
            default_fit = model
        ours_scores = model.log_predictive_density(X_test, y_test)
        difference = ours_scores - sklearn_scores
        rows.append(
            {
                "engine": engine,
                "ours_s": ours_s,
                "sklearn_s": theirs_s,
                "ratio": ours_s / theirs_s,
                "ours_lpd": float(ours_scores.mean()),
                "sklearn_lpd": sklearn_lpd,
                # The paired standard error of the difference in mean log score.
                "lpd_difference_se": float(difference.std(ddof=1) / np.sqrt(len(difference))),
                "first_fit_s": first_s,
            }
        )
        print(json.dumps(rows[-1]), flush=True)
    return rows, default_fit


def bench_predict(model) -> dict:
    X_train, y_train = gp_rows(1, N_ROWS)
    X_new, _ = gp_rows(3, N_ROWS)
    sklearn_model = _sklearn_gp().fit(X_train, y_train)
    build_s, _ = _timed(lambda: model.predict(X_new[:1], return_std=True))  # builds the per-draw parts
    ours_s, theirs_s = _side_by_side(
        lambda: model.predict(X_new, return_std=True), lambda: sklearn_model.predict(X_new, return_std=True), REPEATS
    )
    summary = model.predict_summary(X_new)
    model.likelihood_parameters(X_new[:1])  # compiles the exact per-draw function
    exact_s, (_, (mu, sigma)) = _timed(lambda: model.likelihood_parameters(X_new))
    exact_std = np.sqrt(np.mean(sigma**2, axis=0) + mu.var(axis=0))
    return {
        "ours_s": ours_s,
        "sklearn_s": theirs_s,
        "ratio": ours_s / theirs_s,
        "n_draws": model.n_draws,
        "n_variance_draws": model.n_variance_draws,
        "first_call_s": build_s,
        "max_mean_error": float(np.max(np.abs(summary["mean"] - mu.mean(axis=0)) / exact_std)),
        "max_std_error": float(np.max(np.abs(summary["std"] / exact_std - 1.0))),
        "max_reported_std_error": float(np.max(summary["std_error"] / exact_std)),
        "all_draws_exact_s": exact_s,
    }


def bench_sparse() -> dict:
    from estimators.gaussian_process import SparseGaussianProcessRegressor

    X_first, y_first = gp_rows(4, N_SPARSE)
    X_train, y_train = gp_rows(5, N_SPARSE)
    first_s, _ = _timed(lambda: SparseGaussianProcessRegressor(random_seed=0, progressbar=False).fit(X_first, y_first))
    fit_s, model = _timed(
        lambda: SparseGaussianProcessRegressor(random_seed=0, progressbar=False).fit(X_train, y_train)
    )
    return {"engine": model.inference, "fit_s": fit_s, "first_fit_s": first_s, "target_s": 30.0}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--slow", action="store_true", help="also fit with pathfinder, ADVI and NUTS at 1,000 rows")
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    start = time.perf_counter()
    fit_rows, default_fit = bench_fit((*FAST_ENGINES, *SLOW_ENGINES) if args.slow else FAST_ENGINES)
    predict_row = bench_predict(default_fit)
    print(json.dumps(predict_row), flush=True)
    sparse_row = bench_sparse()

    print(
        f"GaussianProcessRegressor {N_ROWS:,} x 2, second fit (retraining), median of {REPEATS} side by side; load {os.getloadavg()[0]:.1f}"
    )
    print(
        f"{'engine':12s} {'ours s':>8s} {'sklearn s':>10s} {'ratio':>7s} {'ours LPD':>9s} {'sklearn LPD':>12s} {'first fit s':>12s}  LPD difference (paired se)"
    )
    for row in fit_rows:
        if row["ratio"] is None:
            seconds = f"{row['ours_s']:8.1f}" if row["ours_s"] is not None else f"{'':>8s}"
            print(
                f"{row['engine']:12s} {seconds} {'':>10s} {'':>7s} {'':>9s} {row['sklearn_lpd']:12.3f} {'':>12s}  {row['note']}"
            )
            continue
        print(
            f"{row['engine']:12s} {row['ours_s']:8.2f} {row['sklearn_s']:10.2f} {row['ratio']:6.1f}x "
            f"{row['ours_lpd']:9.3f} {row['sklearn_lpd']:12.3f} {row['first_fit_s']:12.1f}  "
            f"{row['ours_lpd'] - row['sklearn_lpd']:+.4f} ({row['lpd_difference_se']:.4f})"
        )
    print(
        f"predict(return_std=True), {N_ROWS:,} rows, {predict_row['n_draws']} draws (latent variance at "
        f"{predict_row['n_variance_draws']}): {predict_row['ours_s']:.3f} s vs sklearn {predict_row['sklearn_s']:.3f} s "
        f"= {predict_row['ratio']:.1f}x (target <= 10x; first call, building the per-draw parts: "
        f"{predict_row['first_call_s']:.1f} s; every draw's exact variance: {predict_row['all_draws_exact_s']:.1f} s)"
    )
    print(
        f"  against every draw exactly: mean {predict_row['max_mean_error']:.1e}, std {predict_row['max_std_error']:.2%} "
        f"at most (reported standard error at most {predict_row['max_reported_std_error']:.2%} of the std)"
    )
    print(
        f"SparseGaussianProcessRegressor {N_SPARSE:,} x 2 ({sparse_row['engine']}): {sparse_row['fit_s']:.1f} s (target <= 30 s; first fit {sparse_row['first_fit_s']:.1f} s)"
    )
    RESULTS.write_text(
        json.dumps(
            {
                "date": date.today().isoformat(),
                "machine": platform.platform(),
                "cpus": os.cpu_count(),
                "load_average": os.getloadavg()[0],
                "seconds": time.perf_counter() - start,
                "fit": fit_rows,
                "predict": predict_row,
                "sparse": sparse_row,
            },
            indent=2,
        )
        + "\n"
    )
    print(f"written {RESULTS}")


if __name__ == "__main__":
    main()
