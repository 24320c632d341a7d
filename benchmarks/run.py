"""The benchmark suite: prints a table and writes JSON.

Every comparison is a ratio measured side by side in the same run: the two sides
alternate, each repeated, and the median of each side is kept.

Run from the repository root (after ``pip install -e .``)::

    python -m benchmarks.run                    # everything
    python -m benchmarks.run --only prediction  # one or more sections, comma-separated
    python -m benchmarks.run --quick            # fewer repeats and rows, for a smoke test
    python benchmarks/run.py --quick            # the same, run as a script

Sections: prediction, scaling, fitting, cold_start, served, autolog, gp.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import tracemalloc
import warnings
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from unittest import mock

import numpy as np
import pandas as pd

if not __package__:  # run as a script: the repository root, for ``tests.model_server``
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks import write_results  # noqa: E402 (after the path above)

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

    model = (
        type(estimator)
        .from_fitted_state(estimator.get_params(), estimator.get_fitted_state(), estimator.idata_)
        .pymc_model()
    )
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
        regressor = LinearRegression(inference="advi", random_seed=0, progressbar=False).fit(X, y)
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
        rows.append(
            _row(
                "prediction",
                "LinearRegression pyfunc, 1000 rows x 1000 draws, std + 94% interval",
                ours,
                "NumPy floor",
                floor,
                target="<= 3",
            )
        )
        ours_pm, pymc = side_by_side(
            lambda: served_regressor.predict(X_1k, params=params),
            lambda: pymc_posterior_predictive(regressor, X_1k.to_numpy()),
            max(2, repeats // 3),
        )
        rows.append(
            _row(
                "prediction",
                "LinearRegression pyfunc vs pm.sample_posterior_predictive, 1000 rows",
                ours_pm,
                "pm.sample_posterior_predictive",
                pymc,
                target="<= 1/40",
            )
        )

        ours, floor = side_by_side(
            lambda: served_classifier.predict(X_1k, params={"predict_proba": True}),
            lambda: numpy_classifier_floor(classifier, X_1k.to_numpy()),
            repeats,
        )
        rows.append(
            _row(
                "prediction",
                "LogisticRegression pyfunc, 1000 rows x 1000 draws, probabilities",
                ours,
                "NumPy floor",
                floor,
                target="<= 3",
            )
        )

        one = X.iloc[:1]
        ours, ridge = side_by_side(
            lambda: served_regressor.predict(one), lambda: served_ridge.predict(one), repeats * 5
        )
        rows.append(
            _row(
                "prediction",
                "1-row pyfunc predict (mean)",
                ours,
                "mlflow.sklearn BayesianRidge pyfunc",
                ridge,
                target="<= 2",
            )
        )
        ours, ridge = side_by_side(
            lambda: served_regressor.predict(one, params=params), lambda: served_ridge.predict(one), repeats * 5
        )
        rows.append(
            _row(
                "prediction",
                "1-row pyfunc predict (mean, std, interval)",
                ours,
                "mlflow.sklearn BayesianRidge pyfunc",
                ridge,
            )
        )

        X_100k, *_ = synthetic(100_000, seed=1)
        ours, floor = side_by_side(
            lambda: served_regressor.predict(X_100k, params=params),
            lambda: numpy_regression_floor(regressor, X_100k.to_numpy()),
            max(2, repeats // 3),
        )
        rows.append(
            _row(
                "prediction",
                "LinearRegression pyfunc, 100,000 rows, std + interval",
                ours,
                "NumPy floor (one dense array)",
                floor,
                target="<= 3",
            )
        )


def bench_scaling(quick: bool, rows: list[dict]) -> None:
    from estimators.linear_model import LinearRegression
    from mlflow_pmlearn.pyfunc import MAX_ROWS_VARIABLE

    X, y, *_ = synthetic(10_000)
    regressor = LinearRegression(inference="advi", random_seed=0, progressbar=False).fit(X, y)
    sizes = [1_000, 10_000, 100_000] + ([] if quick else [1_000_000])
    with tempfile.TemporaryDirectory() as directory:
        with mock.patch.dict(os.environ, {MAX_ROWS_VARIABLE: "0"}):  # one call takes all the rows
            served = _pyfunc(regressor, directory)
        params = {"return_std": True, "interval_prob": 0.94}
        for n_rows in sizes:
            X_new, *_ = synthetic(n_rows, seed=2)
            repeats = 3 if n_rows <= 100_000 else 1  # about a minute a call at 1,000,000 rows
            seconds = statistics.median(timed(lambda: served.predict(X_new, params=params)) for _ in range(repeats))
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
    from pymc.variational.callbacks import CheckParametersConvergence

    from estimators.linear_model import LinearRegression

    X, y, _, coef = synthetic(10_000)
    repeats = 1 if quick else 3

    def ours():
        model = LinearRegression(inference="advi", random_seed=0, progressbar=False).fit(X, y)
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
                callbacks=[CheckParametersConvergence(diff="absolute", tolerance=1e-3)],
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
            f"LinearRegression ADVI, 10,000 x 10 (converged={ours.converged}, max coef error {ours.error:.3f})",
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
        lambda: pm.sample(
            draws=500,
            tune=500,
            chains=2,
            random_seed=0,
            progressbar=False,
            model=model,
            compute_convergence_checks=False,
        ),
        repeats,
    )
    rows.append(
        _row(
            "fitting",
            "LinearRegression NUTS (500+500, 2 chains) through the estimator",
            mine,
            "pm.sample on the same model",
            theirs,
            target="<= 1.10",
        )
    )


COLD_START = """
import json, sys, time
start = time.perf_counter()
import mlflow, pandas as pd
imported = time.perf_counter()
model = mlflow.pyfunc.load_model(sys.argv[1])
loaded = time.perf_counter()
model.predict(pd.read_json(sys.argv[2], orient="split"))
print(json.dumps({"import": imported - start, "load": loaded - imported, "predict": time.perf_counter() - loaded}), flush=True)
"""


def _cold_start(model_uri: str, example: str, environment: dict[str, str]) -> dict[str, float]:
    """Seconds from starting a fresh process to its answer (``total``), and the phases it printed.

    The process's exit is not timed: nothing waits for it (PyTensor cleans its compile
    cache up at exit, which takes seconds when the cache is large).
    """
    with tempfile.TemporaryFile("w+") as errors:
        start = time.perf_counter()
        process = subprocess.Popen(
            [sys.executable, "-c", COLD_START, model_uri, example],
            env=environment,
            stdout=subprocess.PIPE,
            stderr=errors,
            text=True,
        )
        answer = next((line for line in process.stdout if line.startswith("{")), "")
        total = time.perf_counter() - start
        process.communicate()
        if process.returncode != 0:
            errors.seek(0)
            raise RuntimeError(f"loading {model_uri} in a fresh process failed:\n{errors.read()[-3000:]}")
    return {"total": total, **json.loads(answer)}


def _cold_starts(environment: dict[str, str], example: str, repeats: int) -> dict[str, list[dict[str, float]]]:
    """``repeats`` cold starts of each registered model, alternately, after one unmeasured round."""
    runs: dict[str, list[dict[str, float]]] = {"bench-pmlearn": [], "bench-sklearn": []}
    for _ in range(repeats + 1):
        for name, model_runs in runs.items():
            model_runs.append(_cold_start(f"models:/{name}/1", example, environment))
    return {name: model_runs[1:] for name, model_runs in runs.items()}


def _median_phase(runs: list[dict[str, float]], phase: str) -> float:
    return statistics.median(run[phase] for run in runs)


def bench_cold_start(quick: bool, rows: list[dict]) -> None:
    """A fresh process loads the model from the registry and answers a 1-row prediction.

    Timed from the start of the process to its answer. Beyond what the sklearn side does,
    ours imports PyMC, PyTensor and ArviZ and compiles the predictor. PyTensor finds the
    compiled C modules in its cache, but on its first compilation in a process it reads the
    key of every module in the cache directory: in a cache shared with test suites and
    other models' fits (thousands of modules) that alone takes seconds. So two rows: a
    compile cache of the server's own (a serving host; the unmeasured first round fills
    it), and this machine's shared cache as it is.
    """
    import mlflow
    import pytensor
    from sklearn.linear_model import BayesianRidge

    import mlflow_pmlearn
    from estimators.linear_model import LinearRegression

    X, y, *_ = synthetic(10_000)
    repeats = 2 if quick else 5
    with tempfile.TemporaryDirectory() as directory:
        uri = f"sqlite:///{directory}/mlflow.db"
        mlflow.set_tracking_uri(uri)
        mlflow.set_experiment(
            experiment_id=mlflow.create_experiment(
                "bench-cold-start", artifact_location=Path(directory, "artifacts").as_uri()
            )
        )
        with mlflow.start_run():
            mlflow_pmlearn.log_model(
                LinearRegression(inference="advi", random_seed=0, progressbar=False).fit(X, y),
                name="m",
                registered_model_name="bench-pmlearn",
            )
            mlflow.sklearn.log_model(
                BayesianRidge().fit(X, y),
                name="m",
                registered_model_name="bench-sklearn",
                serialization_format="skops",
                skops_trusted_types=[],
            )
        example = os.path.join(directory, "row.json")
        X.iloc[:1].to_json(example, orient="split")
        env = {**os.environ, "MLFLOW_TRACKING_URI": uri}
        own_cache = ",".join(filter(None, [os.environ.get("PYTENSOR_FLAGS"), f"base_compiledir={directory}/pytensor"]))
        shared_modules = len(list(Path(pytensor.config.compiledir).glob("*/key.pkl")))
        settings = [
            ("own PyTensor compile cache (serving host)", {**env, "PYTENSOR_FLAGS": own_cache}),
            (f"shared ~/.pytensor cache ({shared_modules:,} modules)", env),
        ]
        for label, environment in settings:
            runs = _cold_starts(environment, example, repeats)
            ours, theirs = (_median_phase(runs[name], "total") for name in ("bench-pmlearn", "bench-sklearn"))
            row = _row(
                "cold_start",
                f"fresh process: registry load + 1-row prediction, {label}",
                ours,
                "mlflow.sklearn BayesianRidge",
                theirs,
                target="<= 1.5",
            )
            row["runs"] = runs
            row["note"] = "median seconds of import mlflow / load_model / first predict: " + "; ".join(
                f"{side} "
                + " / ".join(f"{_median_phase(runs[name], phase):.2f}" for phase in ("import", "load", "predict"))
                for side, name in (("ours", "bench-pmlearn"), ("sklearn", "bench-sklearn"))
            )
            rows.append(row)


def _post_sequentially(port: int, body: bytes, n_requests: int) -> list[float]:
    """Seconds of each of ``n_requests`` requests sent one after another over one keep-alive connection."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    headers = {"Content-Type": "application/json"}
    seconds = []
    try:
        for _ in range(n_requests):
            start = time.perf_counter()
            connection.request("POST", "/invocations", body, headers)
            response = connection.getresponse()
            answer = response.read()
            seconds.append(time.perf_counter() - start)
            if response.status != 200:
                raise RuntimeError(f"/invocations answered {response.status}: {answer[:500]!r}")
    finally:
        connection.close()
    return seconds


def _load_round(port: int, body: bytes, n_sequential: int, n_clients: int, n_per_client: int) -> dict[str, float]:
    """One round against one server: sequential latencies, then ``n_clients`` concurrent clients."""
    sequential = _post_sequentially(port, body, n_sequential)
    with ThreadPoolExecutor(n_clients) as pool:
        start = time.perf_counter()
        clients = list(pool.map(_post_sequentially, [port] * n_clients, [body] * n_clients, [n_per_client] * n_clients))
        wall = time.perf_counter() - start
    concurrent = [seconds for client in clients for seconds in client]
    return {
        "p50": float(np.percentile(sequential, 50)),
        "p99": float(np.percentile(sequential, 99)),
        "concurrent_p50": float(np.percentile(concurrent, 50)),
        "concurrent_p99": float(np.percentile(concurrent, 99)),
        "seconds_per_request": wall / len(concurrent),
    }


def bench_served(quick: bool, rows: list[dict]) -> None:
    """``mlflow models serve`` (one uvicorn worker each, ``--env-manager local``) on 127.0.0.1.

    1-row JSON ``dataframe_split`` requests over keep-alive connections: one client
    (p50 and p99 latency), then four concurrent clients (p50, p99, requests per second).
    The two servers run side by side and are measured in alternating rounds; each figure is
    the median over the rounds. Both models carry a signature, so both servers check the
    input schema. The servers get no ``MLFLOW_*`` variables from this process.
    """
    import mlflow
    from mlflow.models import infer_signature
    from sklearn.linear_model import BayesianRidge

    import mlflow_pmlearn
    from estimators.linear_model import LinearRegression
    from tests.model_server import ModelServer

    n_clients = 4
    rounds, n_sequential, n_per_client = (3, 100, 50) if quick else (7, 300, 150)
    X, y, *_ = synthetic(10_000)
    one_row = json.loads(X.iloc[:1].to_json(orient="split"))
    body = json.dumps({"dataframe_split": one_row}).encode()
    body_with_params = json.dumps(
        {"dataframe_split": one_row, "params": {"return_std": True, "interval_prob": 0.94}}
    ).encode()
    with tempfile.TemporaryDirectory() as directory:
        ours_path, ridge_path = os.path.join(directory, "pmlearn"), os.path.join(directory, "ridge")
        mlflow_pmlearn.save_model(
            LinearRegression(inference="advi", random_seed=0, progressbar=False).fit(X, y), ours_path
        )
        ridge = BayesianRidge().fit(X, y)
        mlflow.sklearn.save_model(
            ridge, ridge_path, serialization_format="skops", signature=infer_signature(X, ridge.predict(X))
        )
        servers: dict[str, ModelServer] = {}
        try:
            with mock.patch.dict(os.environ):  # restored on leaving
                for variable in [name for name in os.environ if name.startswith("MLFLOW_")]:
                    del os.environ[variable]
                for name, path in (("ours", ours_path), ("ridge", ridge_path)):
                    servers[name] = ModelServer(path, directory)
            for server in servers.values():
                server.wait_until_ready()
            for server in servers.values():  # warm-up, and a check that both answer
                _post_sequentially(server.port, body, 20)
            _post_sequentially(servers["ours"].port, body_with_params, 20)
            results: dict[str, list[dict[str, float]]] = {"ours": [], "ridge": [], "ours_params": []}
            for _ in range(rounds):
                for name, server in servers.items():
                    results[name].append(_load_round(server.port, body, n_sequential, n_clients, n_per_client))
                results["ours_params"].append(
                    {
                        "p50": float(
                            np.percentile(_post_sequentially(servers["ours"].port, body_with_params, n_sequential), 50)
                        )
                    }
                )
        finally:
            for server in servers.values():
                server.stop()

    def median(name: str, key: str) -> float:
        return statistics.median(result[key] for result in results[name])

    def served_row(case: str, key: str, target: str = "", ours: str = "ours") -> dict:
        return _row(
            "served",
            case,
            median(ours, key),
            f"served mlflow.sklearn BayesianRidge, {key}",
            median("ridge", key),
            target,
        )

    rows.append(served_row("1-row /invocations, sequential: p50 latency", "p50", "<= 1.5"))
    rows.append(served_row("1-row /invocations, sequential: p99 latency", "p99"))
    rows.append(
        served_row("1-row /invocations with return_std + 94% interval, sequential: p50", "p50", ours="ours_params")
    )
    rows.append(served_row(f"1-row /invocations, {n_clients} concurrent clients: p50 latency", "concurrent_p50"))
    rows.append(served_row(f"1-row /invocations, {n_clients} concurrent clients: p99 latency", "concurrent_p99"))
    ours_rps, ridge_rps = 1 / median("ours", "seconds_per_request"), 1 / median("ridge", "seconds_per_request")
    rows.append(
        served_row(
            f"{n_clients} concurrent clients: seconds per request ({ours_rps:.0f} vs {ridge_rps:.0f} requests/s)",
            "seconds_per_request",
            "<= 1.5 (requests/s >= 0.67x)",
        )
    )


def bench_autolog(quick: bool, rows: list[dict]) -> None:
    """What ``mlflow_pmlearn.autolog()`` adds to a fit: everything it logs, into a sqlite store.

    Rows: the whole of autolog (its default: the prior checks and LOO are skipped at 10,000
    rows x 1,000 draws, beyond their budget of 2,000,000); the same with the prior checks and
    LOO forced on; and the live progress alone (the ``progress/*`` metrics, logged at most once
    a second while the engine runs), on ADVI at 10,000 x 10 and on NUTS (PyMC's sampler).
    """
    import mlflow

    import mlflow_pmlearn
    from estimators.inference.progress import watching
    from estimators.linear_model import LinearRegression
    from mlflow_pmlearn.autologging.runs import run_progress

    X, y, *_ = synthetic(10_000)
    X_nuts, y_nuts, *_ = synthetic(1_000)
    repeats = 1 if quick else 3

    def fit():
        LinearRegression(inference="advi", random_seed=0, progressbar=False).fit(X, y)

    def fit_nuts():
        LinearRegression(inference="nuts", random_seed=0, progressbar=False).fit(X_nuts, y_nuts)

    def autologged(**settings) -> Callable[[], object]:
        def run():
            mlflow_pmlearn.autolog(silent=True, **settings)
            try:
                fit()
            finally:
                mlflow_pmlearn.autolog(disable=True)

        return run

    def watched(inference: str, data: tuple) -> Callable[[], object]:
        """The fit with only the live progress logged, into a run of its own."""

        def run():
            estimator = LinearRegression(inference=inference, random_seed=0, progressbar=False)
            with mlflow.start_run():
                progress = run_progress(estimator, None, data[0])
                with watching(progress):
                    estimator.fit(*data)
                progress.wait()

        return run

    with tempfile.TemporaryDirectory() as directory:
        mlflow.set_tracking_uri(f"sqlite:///{directory}/mlflow.db")
        mlflow.set_experiment(
            experiment_id=mlflow.create_experiment(
                "bench-autolog", artifact_location=Path(directory, "artifacts").as_uri()
            )
        )
        ours, plain = side_by_side(autologged(), fit, repeats)
        case = (
            "LinearRegression ADVI fit, 10,000 x 10, autolog (params, progress, metrics, trace, plots, dataset, model)"
        )
        row = _row("autolog", case, ours, "the same fit without autolog", plain, target="<= 1.2")
        row["parts_s"] = _autolog_parts(autologged())
        row["note"] = "seconds per part of one more autologged fit: " + ", ".join(
            f"{part} {s:.2f}" for part, s in row["parts_s"].items()
        )
        rows.append(row)
        ours, plain = side_by_side(autologged(log_models=False), fit, repeats)
        rows.append(_row("autolog", "the same, autolog(log_models=False)", ours, "the same fit without autolog", plain))
        ours, plain = side_by_side(autologged(log_prior_checks=True, log_loo=True), fit, repeats)
        case = "the same, autolog(log_prior_checks=True, log_loo=True): beyond their default budget"
        row = _row("autolog", case, ours, "the same fit without autolog", plain)
        row["parts_s"] = _autolog_parts(autologged(log_prior_checks=True, log_loo=True))
        row["note"] = "seconds per part: " + ", ".join(f"{part} {s:.2f}" for part, s in row["parts_s"].items())
        rows.append(row)
        ours, plain = side_by_side(watched("advi", (X, y)), fit, repeats)
        case = "live progress only (progress/* while fitting): the ADVI fit, 10,000 x 10"
        rows.append(_row("autolog", case, ours, "the same fit, unwatched", plain, target="<= 1.05"))
        ours, plain = side_by_side(watched("nuts", (X_nuts, y_nuts)), fit_nuts, repeats)
        case = "live progress only: NUTS (PyMC's sampler), 1,000 x 10, 2 x (1,000 + 1,000) draws"
        rows.append(_row("autolog", case, ours, "the same fit, unwatched", plain, target="<= 1.05"))


def _autolog_parts(autologged_fit: Callable[[], object]) -> dict[str, float]:
    """Seconds of each part autolog logs (each runs through ``_attempt``), in one autologged fit."""
    from mlflow_pmlearn.autologging import runs

    seconds: dict[str, float] = {}
    attempt = runs._attempt

    def timed_attempt(what: str, action: Callable[[], object]) -> object:
        start = time.perf_counter()
        try:
            return attempt(what, action)
        finally:
            seconds[what] = seconds.get(what, 0.0) + time.perf_counter() - start

    with mock.patch.object(runs, "_attempt", timed_attempt):
        autologged_fit()
    seconds["all of log_fit"] = seconds.pop("the fit")  # the whole logging, of which the rest are parts
    return seconds


def bench_gp(quick: bool, rows: list[dict]) -> None:
    """Gaussian processes: fit times at 1,000 and 20,000 rows, and prediction.

    Fits are long, so each is timed once (graph compilation included). The exact GP is not
    fitted at 20,000 rows: each ADVI step would factorise and invert a 20,000 x 20,000
    matrix (3.2 GB each, about 8e12 flops); the sparse GP is the model for that size.
    """
    from sklearn.gaussian_process import GaussianProcessRegressor as SklearnGaussianProcessRegressor
    from sklearn.gaussian_process.kernels import RBF, ConstantKernel, WhiteKernel

    from estimators.gaussian_process import GaussianProcessRegressor, SparseGaussianProcessRegressor

    def smooth(n_rows: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
        rng = np.random.default_rng(seed)
        X = rng.uniform(-3.0, 3.0, size=(n_rows, 2))
        return X, np.sin(X[:, 0]) + 0.5 * np.cos(2.0 * X[:, 1]) + rng.normal(scale=0.2, size=n_rows)

    small, large = (300, 2_000) if quick else (1_000, 20_000)
    X_small, y_small = smooth(small)
    X_large, y_large = smooth(large)
    X_new, _ = smooth(1_000, seed=1)
    fitted: dict[str, object] = {}

    def fit(key: str, estimator, X: np.ndarray, y: np.ndarray) -> float:
        seconds = timed(lambda: fitted.__setitem__(key, estimator.fit(X, y)))
        fitted[key + "_steps"] = fitted[key].n_iter_
        return seconds

    def sklearn_fit():
        kernel = ConstantKernel() * RBF() + WhiteKernel()
        fitted["sklearn"] = SklearnGaussianProcessRegressor(kernel, normalize_y=True, random_state=0).fit(
            X_small, y_small
        )

    settings = {"inference": "advi", "random_seed": 0, "progressbar": False}
    exact = fit("exact", GaussianProcessRegressor(**settings), X_small, y_small)
    sklearn_seconds = statistics.median(timed(sklearn_fit) for _ in range(3))
    rows.append(
        _row(
            "gp",
            f"GaussianProcessRegressor ADVI fit, {small:,} x 2 ({fitted['exact_steps']} steps, 100 draws)",
            exact,
            "sklearn GaussianProcessRegressor (max. marginal likelihood)",
            sklearn_seconds,
        )
    )
    sparse_small = fit("sparse_small", SparseGaussianProcessRegressor(**settings), X_small, y_small)
    rows.append(
        _row(
            "gp",
            f"SparseGaussianProcessRegressor ADVI fit, {small:,} x 2 (50 inducing, VFE, {fitted['sparse_small_steps']} steps)",
            sparse_small,
            f"GaussianProcessRegressor fit, {small:,} rows",
            exact,
        )
    )
    sparse_large = fit("sparse_large", SparseGaussianProcessRegressor(**settings), X_large, y_large)
    rows.append(
        _row(
            "gp",
            f"SparseGaussianProcessRegressor ADVI fit, {large:,} x 2 (50 inducing, VFE, {fitted['sparse_large_steps']} steps)",
            sparse_large,
            f"the same at {small:,} rows",
            sparse_small,
            target=f"<= {large // small} (O(n m^2) per step)",
        )
    )

    repeats = 3 if quick else 9
    params = {"return_std": True, "interval_prob": 0.94}
    with tempfile.TemporaryDirectory() as directory:
        served = {}
        for key in ("exact", "sparse_small", "sparse_large", "again"):
            os.makedirs(os.path.join(directory, key))
        for key in ("exact", "sparse_small", "sparse_large"):
            served[key] = _pyfunc(fitted[key], os.path.join(directory, key))
        ours, theirs = side_by_side(
            lambda: served["exact"].predict(X_new, params=params),
            lambda: fitted["sklearn"].predict(X_new, return_std=True),
            max(2, repeats // 3),
        )
        rows.append(
            _row(
                "gp",
                f"GaussianProcessRegressor pyfunc ({small:,} training rows), 1,000 rows, std + interval",
                ours,
                "sklearn predict(return_std=True)",
                theirs,
            )
        )
        one = X_new[:1]
        ours, theirs = side_by_side(
            lambda: served["sparse_large"].predict(one, params=params),
            lambda: served["sparse_small"].predict(one, params=params),
            repeats * 5,
        )
        rows.append(
            _row(
                "gp",
                f"Sparse pyfunc 1-row predict, {large:,} training rows",
                ours,
                f"the same model fitted on {small:,} rows",
                theirs,
                target="~1 (per-draw factors precomputed)",
            )
        )
        ours, theirs = side_by_side(
            lambda: served["sparse_large"].predict(X_new, params=params),
            lambda: served["sparse_small"].predict(X_new, params=params),
            repeats,
        )
        rows.append(
            _row(
                "gp",
                f"Sparse pyfunc 1,000-row predict, {large:,} training rows",
                ours,
                f"the same model fitted on {small:,} rows",
                theirs,
                target="~1",
            )
        )
        load = timed(lambda: _pyfunc(fitted["sparse_large"], os.path.join(directory, "again")))
        later = statistics.median(
            timed(lambda: served["sparse_large"].predict(one, params=params)) for _ in range(repeats)
        )
        rows.append(
            _row(
                "gp",
                f"Sparse save + pyfunc load ({large:,} rows: compile, factors of 200 draws)",
                load,
                "a 1-row prediction afterwards",
                later,
            )
        )


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
    "served": bench_served,
    "autolog": bench_autolog,
    "gp": bench_gp,
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
            if "note" in row:
                print(f"{'':<11}   {row['note']}")
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
    sections = args.only.split(",")
    for name in sections:
        SECTIONS[name](args.quick, rows)
    _print_table(rows)
    import pytensor

    if Path(args.output).exists():  # keep the rows of the sections not run, with the date they were measured
        earlier = json.loads(Path(args.output).read_text())
        kept = [
            {"measured": earlier.get("date"), **row}
            for row in earlier.get("rows", [])
            if row["section"] not in sections
        ]
        rows = sorted(kept + rows, key=lambda row: list(SECTIONS).index(row["section"]))
    write_results(args.output, pytensor_blas_ldflags=pytensor.config.blas__ldflags, quick=args.quick, rows=rows)


if __name__ == "__main__":
    main()
