"""PyTensor backends side by side: Numba (PyTensor 3's default) against C, cold and warm.

For each backend a fresh compile cache is made, and two processes run one after the other
on it: the first finds it empty (a new user's first fit, a server's first load), the
second finds it filled by the first. Each process times, for a small LinearRegression
(200 rows, 5 features): ADVI fit (1,000 iterations, no early stop), predict on 1,000 rows
(first call: compile; then the median of 5 calls), and a NUTS fit (2 chains, 200 tune,
200 draws), each twice in the process (the second on a new estimator: the graphs are
rebuilt, so only the in-memory and on-disk caches differ). The backend is chosen
process-wide with ``PYTENSOR_FLAGS=linker=numba|cvm`` (``cvm``: the C backend).

Run from the repository root::

    python -m benchmarks.backends            # both backends, prints a table, writes JSON
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

RESULTS = Path(__file__).with_name("backends.json")
LINKERS = {"numba": "numba", "c": "cvm"}


def _measure() -> dict[str, float]:
    """Times (seconds) of one process; the backend comes from ``PYTENSOR_FLAGS``."""
    warnings.filterwarnings("ignore")
    start = time.perf_counter()
    import numpy as np

    from estimators.linear_model import LinearRegression

    times = {"import_s": time.perf_counter() - start}
    rng = np.random.default_rng(0)
    X = rng.normal(size=(200, 5))
    y = X @ rng.normal(size=5) + 0.5 + rng.normal(scale=0.3, size=200)
    X_new = rng.normal(size=(1000, 5))
    advi = {"inference": "advi", "n_draws": 500, "max_iter": 1000, "tol": 1e-12, "random_seed": 0, "progressbar": False}
    nuts = {"inference": "nuts", "n_draws": 200, "n_tune": 200, "n_chains": 2, "random_seed": 0, "progressbar": False}
    for attempt in ("first", "second"):
        start = time.perf_counter()
        model = LinearRegression(**advi).fit(X, y)
        times[f"advi_fit_{attempt}_s"] = time.perf_counter() - start
        times["advi_iterations"] = model.n_iter_
        start = time.perf_counter()
        model.predict(X_new, return_std=True)
        times[f"predict_first_call_{attempt}_s"] = time.perf_counter() - start
        calls = []
        for _ in range(5):
            start = time.perf_counter()
            model.predict(X_new, return_std=True)
            calls.append(time.perf_counter() - start)
        times[f"predict_warm_{attempt}_s"] = float(np.median(calls))
        start = time.perf_counter()
        LinearRegression(**nuts).fit(X, y)
        times[f"nuts_fit_{attempt}_s"] = time.perf_counter() - start
    return times


def _run_process(backend: str, compiledir: str) -> dict[str, float]:
    flags = f"base_compiledir={compiledir},linker={LINKERS[backend]}"
    env = {**os.environ, "PYTENSOR_FLAGS": flags}
    start = time.perf_counter()
    output = subprocess.run(
        [sys.executable, "-m", "benchmarks.backends", "--child"], env=env, check=True, capture_output=True, text=True
    ).stdout
    times = json.loads(output.strip().splitlines()[-1])
    times["process_s"] = time.perf_counter() - start
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--backends", default="numba,c", help="comma-separated: numba, c")
    args = parser.parse_args()
    if args.child:
        print(json.dumps(_measure()))
        return
    results = {}
    for backend in args.backends.split(","):
        with tempfile.TemporaryDirectory() as compiledir:
            results[backend] = {
                "cold_cache": _run_process(backend, compiledir),
                "warm_cache": _run_process(backend, compiledir),
            }
    import pymc
    import pytensor

    report = {
        "python": platform.python_version(),
        "pymc": pymc.__version__,
        "pytensor": pytensor.__version__,
        "cpus": os.cpu_count(),
        "results": results,
    }
    RESULTS.write_text(json.dumps(report, indent=2))
    keys = list(next(iter(results.values()))["cold_cache"])
    columns = [(backend, cache) for backend in results for cache in ("cold_cache", "warm_cache")]
    print(f"{'seconds':<26}" + "".join(f"{b + ' ' + c.split('_')[0]:>14}" for b, c in columns))
    for key in keys:
        print(f"{key:<26}" + "".join(f"{results[b][c][key]:>14.3f}" for b, c in columns))


if __name__ == "__main__":
    main()
