"""The benchmark suite: prints a table and writes JSON.

Every comparison is a ratio measured side by side in the same run: the two sides
alternate, each repeated, and the median of each side is kept.

Run from the repository root (after ``pip install -e .``)::

    python -m benchmarks.run                    # everything
    python -m benchmarks.run --only prediction  # one or more sections, comma-separated
    python -m benchmarks.run --quick            # fewer repeats and rows, for a smoke test

Sections: prediction, scaling, fitting, cold_start, autolog.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
import tracemalloc
import warnings
from collections.abc import Callable
from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd

warnings.filterwarnings("ignore")

RESULTS = Path(__file__).with_name("results.json")
N_FEATURES = 10


def timed(function: Callable[[], object]) -> float:
    start = time.perf_counter()
    function()
    return time.perf_counter() - start


def side_by_side(a: Callable[[], object], b: Callable[[], object], repeats: int) -> tuple[float, float]:
    """Median seconds of ``a`` and of ``b``, run alternately ``repeats`` times each after a warm-up."""
    a(), b()
    times_a, times_b = [], []
    for _ in range(repeats):
        times_a.append(timed(a))
        times_b.append(timed(b))
    return statistics.median(times_a), statistics.median(times_b)


def synthetic(n_rows: int, seed: int = 0) -> tuple[pd.DataFrame, np.ndarray, np.ndarray, np.ndarray]:
    """Features, a regression target, a binary target and the true coefficients."""
    rng = np.random.default_rng(seed)
    X = pd.DataFrame(rng.normal(size=(n_rows, N_FEATURES)), columns=[f"x{i}" for i in range(N_FEATURES)])
    coef = rng.normal(size=N_FEATURES)
    y = 1.0 + X.to_numpy() @ coef + rng.normal(scale=0.5, size=n_rows)
    logits = 0.5 + X.to_numpy() @ (coef / 2)
    labels = (rng.uniform(size=n_rows) < 1 / (1 + np.exp(-logits))).astype(int)
    return X, y, labels, coef


def _pyfunc(estimator, directory: str):
    import mlflow

    import mlflow_pmlearn

    path = os.path.join(directory, type(estimator).__name__)
    mlflow_pmlearn.save_model(estimator, path)
    return mlflow.pyfunc.load_model(path)


def _draws(estimator, name: str) -> np.ndarray:
    posterior = estimator.idata_.posterior[name].stack(sample=("chain", "draw"))
    return np.ascontiguousarray(posterior.transpose("sample", ...).values)


def numpy_regression_floor(estimator, X: np.ndarray, prob: float = 0.94) -> dict[str, np.ndarray]:
    """The same arithmetic as the regressor's prediction, written directly in NumPy."""
    from scipy.special import ndtri

    intercept, coef, sigma = (_draws(estimator, n) for n in ("intercept", "coef", "sigma"))
    noise = ndtri(estimator.posterior_predictor().uniforms)
    samples = intercept[:, None] + coef @ X.T + (sigma * noise)[:, None]
    tail = (1 - prob) / 2
    lower, upper = np.quantile(samples, [tail, 1 - tail], axis=0)
    return {"mean": samples.mean(0), "std": samples.std(0), "lower": lower, "upper": upper}


def numpy_classifier_floor(estimator, X: np.ndarray) -> np.ndarray:
    """Posterior mean probabilities of a binary logistic regression, in NumPy."""
    intercept, coef = _draws(estimator, "intercept"), _draws(estimator, "coef")
    p = 1 / (1 + np.exp(-(intercept[:, :1] + coef[:, 0, :] @ X.T)))
    return np.column_stack([1 - p.mean(0), p.mean(0)])


def pymc_posterior_predictive(estimator, X: np.ndarray, prob: float = 0.94) -> dict[str, np.ndarray]:
    """The pymc-learn way: ``pm.sample_posterior_predictive`` with swapped data containers."""
    import pymc as pm

    model = type(estimator).from_fitted_state(
        estimator.get_params(), estimator.get_fitted_state(), estimator.idata_
    ).pymc_model()
    with model:
        pm.set_data({"X": X, "y": np.zeros(len(X), dtype=model["y"].dtype)})
        predictive = pm.sample_posterior_predictive(estimator.idata_, progressbar=False, random_seed=0)
    samples = predictive.posterior_predictive["y_obs"].stack(sample=("chain", "draw")).values.T
    tail = (1 - prob) / 2
    lower, upper = np.quantile(samples, [tail, 1 - tail], axis=0)
    return {"mean": samples.mean(0), "std": samples.std(0), "lower": lower, "upper": upper}


def bench_prediction(quick: bool, rows: list[dict]) -> None:
    import mlflow
    from sklearn.linear_model import BayesianRidge

    from estimators.linear_model import LinearRegression, LogisticRegression

    repeats = 3 if quick else 9
    X, y, labels, _ = synthetic(10_000)
    params = {"return_std": True, "interval_prob": 0.94}
    with tempfile.TemporaryDirectory() as directory:
        regressor = LinearRegression(random_seed=0, progressbar=False).fit(X, y)
        classifier = LogisticRegression(random_seed=0, progressbar=False).fit(X, labels)
        served_regressor = _pyfunc(regressor, directory)
        served_classifier = _pyfunc(classifier, directory)
        ridge_path = os.path.join(directory, "ridge")
        mlflow.sklearn.save_model(BayesianRidge().fit(X, y), ridge_path, serialization_format="skops")
        served_ridge = mlflow.pyfunc.load_model(ridge_path)

        X_1k = X.iloc[:1000]
        ours, floor = side_by_side(
            lambda: served_regressor.predict(X_1k, params=params),
            lambda: numpy_regression_floor(regressor, X_1k.to_numpy()),
            repeats,
        )
        rows.append(_row("prediction", "LinearRegression pyfunc, 1000 rows x 1000 draws, std + 94% interval", ours, "NumPy floor", floor, target="<= 3"))
        ours_pm, pymc = side_by_side(
            lambda: served_regressor.predict(X_1k, params=params),
            lambda: pymc_posterior_predictive(regressor, X_1k.to_numpy()),
            max(2, repeats // 3),
        )
        rows.append(_row("prediction", "LinearRegression pyfunc vs pm.sample_posterior_predictive, 1000 rows", ours_pm, "pm.sample_posterior_predictive", pymc, target="<= 1/40"))

        ours, floor = side_by_side(
            lambda: served_classifier.predict(X_1k),
            lambda: numpy_classifier_floor(classifier, X_1k.to_numpy()),
            repeats,
        )
        rows.append(_row("prediction", "LogisticRegression pyfunc, 1000 rows x 1000 draws, probabilities", ours, "NumPy floor", floor, target="<= 3"))

        one = X.iloc[:1]
        ours, ridge = side_by_side(lambda: served_regressor.predict(one), lambda: served_ridge.predict(one), repeats * 5)
        rows.append(_row("prediction", "1-row pyfunc predict (mean)", ours, "mlflow.sklearn BayesianRidge pyfunc", ridge, target="<= 2"))
        ours, ridge = side_by_side(lambda: served_regressor.predict(one, params=params), lambda: served_ridge.predict(one), repeats * 5)
        rows.append(_row("prediction", "1-row pyfunc predict (mean, std, interval)", ours, "mlflow.sklearn BayesianRidge pyfunc", ridge))

        X_100k, *_ = synthetic(100_000, seed=1)
        ours, floor = side_by_side(
            lambda: served_regressor.predict(X_100k, params=params),
            lambda: numpy_regression_floor(regressor, X_100k.to_numpy()),
            max(2, repeats // 3),
        )
        rows.append(_row("prediction", "LinearRegression pyfunc, 100,000 rows, std + interval", ours, "NumPy floor (one dense array)", floor, target="<= 3"))


def bench_scaling(quick: bool, rows: list[dict]) -> None:
    from estimators.linear_model import LinearRegression

    X, y, *_ = synthetic(10_000)
    regressor = LinearRegression(random_seed=0, progressbar=False).fit(X, y)
    sizes = [1_000, 10_000, 100_000] + ([] if quick else [1_000_000])
    with tempfile.TemporaryDirectory() as directory:
        served = _pyfunc(regressor, directory)
        params = {"return_std": True, "interval_prob": 0.94}
        for n_rows in sizes:
            X_new, *_ = synthetic(n_rows, seed=2)
            seconds = statistics.median(timed(lambda: served.predict(X_new, params=params)) for _ in range(3))
            tracemalloc.start()
            served.predict(X_new, params=params)
            peak = tracemalloc.get_traced_memory()[1]
            tracemalloc.stop()
            rows.append(
                {
                    "section": "scaling",
                    "case": f"{n_rows:,} rows x 1000 draws, std + interval",
                    "seconds": seconds,
                    "us_per_row": 1e6 * seconds / n_rows,
                    "peak_mib": peak / 2**20,
                    "target": "us/row flat; peak < 1024 MiB at 1,000,000 rows",
                }
            )


def bench_fitting(quick: bool, rows: list[dict]) -> None:
    import pymc as pm

    from estimators.linear_model import LinearRegression

    X, y, _, coef = synthetic(10_000)
    repeats = 1 if quick else 3

    def ours():
        model = LinearRegression(random_seed=0, progressbar=False).fit(X, y)
        ours.error = float(np.abs(model.coef_ - coef).max())
        ours.converged = bool(model.idata_.fit_history.attrs["converged"])

    def hand_written():
        with pm.Model():
            intercept = pm.Normal("intercept", 0, 10)
            weights = pm.Normal("coef", 0, 10, shape=N_FEATURES)
            sigma = pm.HalfNormal("sigma", 1)
            pm.Normal("y", intercept + X.to_numpy() @ weights, sigma, observed=y)
            approx = pm.fit(
                n=50_000,
                callbacks=[pm.callbacks.CheckParametersConvergence(diff="absolute", tolerance=1e-3)],
                progressbar=False,
                random_seed=0,
            )
            idata = approx.sample(1000, random_seed=0)
        hand_written.error = float(np.abs(idata.posterior["coef"].mean(("chain", "draw")).values - coef).max())
        hand_written.iterations = len(approx.hist)

    mine, theirs = side_by_side(ours, hand_written, repeats)
    rows.append(
        _row(
            "fitting",
            f"LinearRegression default ADVI, 10,000 x 10 (converged={ours.converged}, max coef error {ours.error:.3f})",
            mine,
            f"hand-written pm.fit + CheckParametersConvergence ({hand_written.iterations} it, error {hand_written.error:.3f})",
            theirs,
            target="<= 2, error <= 0.05",
        )
    )

    nuts = {"inference": "nuts", "n_draws": 500, "n_tune": 500, "n_chains": 2, "random_seed": 0, "progressbar": False}
    fitted = LinearRegression(**nuts).fit(X, y)
    model = fitted.pymc_model()
    mine, theirs = side_by_side(
        lambda: LinearRegression(**nuts).fit(X, y),
        lambda: pm.sample(draws=500, tune=500, chains=2, random_seed=0, progressbar=False, model=model, compute_convergence_checks=False),
        repeats,
    )
    rows.append(_row("fitting", "LinearRegression NUTS (500+500, 2 chains) through the estimator", mine, "pm.sample on the same model", theirs, target="<= 1.10"))


COLD_START = """
import sys, time
start = time.perf_counter()
import mlflow, pandas as pd
model = mlflow.pyfunc.load_model(sys.argv[1])
model.predict(pd.read_json(sys.argv[2], orient="split"))
print(time.perf_counter() - start)
"""


def bench_cold_start(quick: bool, rows: list[dict]) -> None:
    import mlflow
    from sklearn.linear_model import BayesianRidge

    import mlflow_pmlearn
    from estimators.linear_model import LinearRegression

    X, y, *_ = synthetic(10_000)
    repeats = 2 if quick else 5
    with tempfile.TemporaryDirectory() as directory:
        uri = f"sqlite:///{directory}/mlflow.db"
        mlflow.set_tracking_uri(uri)
        with mlflow.start_run():
            mlflow_pmlearn.log_model(LinearRegression(random_seed=0, progressbar=False).fit(X, y), name="m", registered_model_name="bench-pmlearn")
            mlflow.sklearn.log_model(BayesianRidge().fit(X, y), name="m", registered_model_name="bench-sklearn", serialization_format="skops", skops_trusted_types=[])
        example = os.path.join(directory, "row.json")
        X.iloc[:1].to_json(example, orient="split")
        env = {**os.environ, "MLFLOW_TRACKING_URI": uri}

        def cold(name: str) -> Callable[[], object]:
            return lambda: subprocess.run([sys.executable, "-c", COLD_START, f"models:/{name}/1", example], env=env, check=True, capture_output=True)

        ours, theirs = side_by_side(cold("bench-pmlearn"), cold("bench-sklearn"), repeats)
        rows.append(_row("cold_start", "fresh process: load from registry + first 1-row prediction", ours, "mlflow.sklearn BayesianRidge", theirs, target="<= 1.5"))


def bench_autolog(quick: bool, rows: list[dict]) -> None:
    """What ``mlflow_pmlearn.autolog()`` adds to a fit: everything it logs, into a sqlite store."""
    import mlflow

    import mlflow_pmlearn
    from estimators.linear_model import LinearRegression

    X, y, *_ = synthetic(10_000)
    repeats = 1 if quick else 3

    def fit():
        LinearRegression(random_seed=0, progressbar=False).fit(X, y)

    def autologged(**settings) -> Callable[[], object]:
        def run():
            mlflow_pmlearn.autolog(silent=True, **settings)
            try:
                fit()
            finally:
                mlflow_pmlearn.autolog(disable=True)

        return run

    with tempfile.TemporaryDirectory() as directory:
        mlflow.set_tracking_uri(f"sqlite:///{directory}/mlflow.db")
        mlflow.set_experiment(experiment_id=mlflow.create_experiment("bench-autolog", artifact_location=Path(directory, "artifacts").as_uri()))
        ours, plain = side_by_side(autologged(), fit, repeats)
        rows.append(_row("autolog", "LinearRegression ADVI fit, 10,000 x 10, autolog (params, metrics, trace, plots, dataset, model)", ours, "the same fit without autolog", plain, target="<= 1.5"))
        ours, plain = side_by_side(autologged(log_models=False), fit, repeats)
        rows.append(_row("autolog", "the same, autolog(log_models=False)", ours, "the same fit without autolog", plain))


def _row(section: str, case: str, seconds: float, baseline: str, baseline_seconds: float, target: str = "") -> dict:
    return {
        "section": section,
        "case": case,
        "seconds": seconds,
        "baseline": baseline,
        "baseline_seconds": baseline_seconds,
        "ratio": seconds / baseline_seconds,
        "target": target,
    }


SECTIONS = {
    "prediction": bench_prediction,
    "scaling": bench_scaling,
    "fitting": bench_fitting,
    "cold_start": bench_cold_start,
    "autolog": bench_autolog,
}


def _print_table(rows: list[dict]) -> None:
    header = f"{'section':<11} {'case':<92} {'ours':>10} {'baseline':>10} {'ratio':>8}  target"
    print(header)
    print("-" * len(header))
    for row in rows:
        if "ratio" in row:
            print(
                f"{row['section']:<11} {row['case'][:92]:<92} {row['seconds'] * 1e3:>8.2f}ms "
                f"{row['baseline_seconds'] * 1e3:>8.2f}ms {row['ratio']:>8.3f}  {row['target']}"
            )
            print(f"{'':<11}   vs {row['baseline']}")
        else:
            print(
                f"{row['section']:<11} {row['case'][:92]:<92} {row['seconds'] * 1e3:>8.1f}ms "
                f"{row['us_per_row']:>8.2f}us/row peak {row['peak_mib']:.0f} MiB  {row['target']}"
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", default=",".join(SECTIONS), help="comma-separated sections")
    parser.add_argument("--quick", action="store_true", help="fewer repeats and rows")
    parser.add_argument("--output", default=str(RESULTS), help="where to write the JSON results")
    args = parser.parse_args()
    rows: list[dict] = []
    for name in args.only.split(","):
        SECTIONS[name](args.quick, rows)
    _print_table(rows)
    import pytensor

    result = {
        "date": date.today().isoformat(),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}",
        "pytensor_blas_ldflags": pytensor.config.blas__ldflags,
        "quick": args.quick,
        "rows": rows,
    }
    Path(args.output).write_text(json.dumps(result, indent=2))
    print(f"\nwrote {args.output}")


if __name__ == "__main__":
    main()
