"""What the safe-loading checks cost: loading a saved model, with the checks' own share.

A built-in estimator (10 features, 1,000 training rows, 4 x 1,000 posterior draws) and a
pipeline ending in one are saved once; then each is loaded repeatedly with
``mlflow_pmlearn.load_model`` and with ``mlflow.pyfunc.load_model`` (plus a 1-row
prediction), alternating, and the median of each is kept. Beside them, the checks alone:
the trace walk (``scan_trace``) and the preprocessing archive's bounded re-packing.

Run from the repository root (after ``pip install -e ".[test]"``)::

    python -m benchmarks.loading
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import mlflow.pyfunc
import numpy as np
import pandas as pd
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

import mlflow_pmlearn
from benchmarks import write_results
from estimators.linear_model import LinearRegression
from mlflow_pmlearn.pipelines import _checked_preprocessing, _read_pipeline_config
from mlflow_pmlearn.safety import scan_trace

warnings.filterwarnings("ignore")

RESULTS = Path(__file__).with_name("loading.json")


def _median_seconds(action: Callable[[], object], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        action()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    repeats = parser.parse_args().repeats
    rng = np.random.default_rng(0)
    X = pd.DataFrame(rng.normal(size=(1_000, 10)), columns=[f"x{i}" for i in range(10)])
    y = X.to_numpy() @ rng.normal(size=10) + rng.normal(size=1_000)
    settings = {"inference": "advi", "n_draws": 1_000, "random_seed": 0, "progressbar": False}
    estimator = LinearRegression(**settings).fit(X, y)
    pipeline = make_pipeline(StandardScaler(), LinearRegression(**settings)).fit(X, y)
    rows = []
    with tempfile.TemporaryDirectory() as directory:
        paths = {"estimator": Path(directory, "estimator"), "pipeline": Path(directory, "pipeline")}
        mlflow_pmlearn.save_model(estimator, paths["estimator"])
        mlflow_pmlearn.save_model(pipeline, paths["pipeline"], input_example=X.head(3))
        for kind, path in paths.items():
            flavor = _median_seconds(lambda: mlflow_pmlearn.load_model(str(path)), repeats)
            pyfunc = _median_seconds(lambda: mlflow.pyfunc.load_model(str(path)).predict(X.head(1)), repeats)
            data = path / ("estimator" if kind == "estimator" else "pipeline/final_step")
            walk = _median_seconds(lambda: scan_trace(data / "trace.nc"), repeats)
            archive = 0.0
            if kind == "pipeline":
                config = _read_pipeline_config(path / "pipeline")
                archive = _median_seconds(lambda: _checked_preprocessing(path / "pipeline", config), repeats)
            rows.append(
                {
                    "model": kind,
                    "load_model_s": flavor,
                    "pyfunc_load_and_predict_s": pyfunc,
                    "trace_walk_s": walk,
                    "archive_repack_s": archive,
                    "checks_share_of_load_model": (walk + archive) / flavor,
                }
            )
    print(
        f"{'model':<10} {'load_model s':>13} {'pyfunc+1 row s':>15} {'trace walk s':>13} {'archive s':>10} {'checks':>7}"
    )
    for row in rows:
        print(
            f"{row['model']:<10} {row['load_model_s']:>13.3f} {row['pyfunc_load_and_predict_s']:>15.3f} "
            f"{row['trace_walk_s']:>13.4f} {row['archive_repack_s']:>10.4f} {row['checks_share_of_load_model']:>7.1%}"
        )
    write_results(RESULTS, repeats=repeats, rows=rows)


if __name__ == "__main__":
    main()
