"""A bounded load on a real ``mlflow models serve`` process: prints a table and writes JSON.

Serves a LinearRegression (10 features, default inference settings: 1,000 posterior draws)
with ``--workers`` uvicorn workers on 127.0.0.1, and sends ``--requests`` requests (1 to 5
rows each, a tenth of them bad) from ``--concurrency`` client threads, stopping at
``--time-limit`` seconds. Counts answers by status, compares every good answer with the
single-threaded pyfunc answer, and samples the server's resident memory (its whole process
tree). ``tests/integration/test_load.py`` runs the same load, smaller, as a test.

Run from the repository root (after ``pip install -e ".[test]"``)::

    python -m benchmarks.load_test                    # 5,000 requests, 8 threads, 2 workers
    python -m benchmarks.load_test --requests 20000
"""

from __future__ import annotations

import argparse
import tempfile
import warnings
from pathlib import Path

from benchmarks import write_results

warnings.filterwarnings("ignore")

RESULTS = Path(__file__).with_name("load_test.json")


def _print_table(summary: dict) -> None:
    latency, rss = summary["latency_ms"], summary["rss_mib"]
    statuses = ", ".join(f"{status}: {count:,}" for status, count in summary["statuses"].items())
    lines = [
        ("requests answered", f"{summary['requests']:,} in {summary['seconds']} s"),
        ("client threads / server workers", f"{summary['concurrency']} / {summary['workers']}"),
        ("throughput", f"{summary['requests_per_second']} requests/s"),
        ("answers by status", statuses),
        ("5xx answers", str(sum(count for status, count in summary["statuses"].items() if int(status) >= 500))),
        ("failed connections", str(sum(summary["failures"].values()))),
        ("good answers differing from pyfunc", str(summary["wrong_answers"])),
        ("latency p50 / p99 / max", f"{latency['p50']} / {latency['p99']} / {latency['max']} ms"),
        ("server RSS first / last sample", f"{rss['first_sample']} / {rss['last_sample']} MiB"),
        ("server RSS 1st / last quarter mean", f"{rss['first_quarter_mean']} / {rss['last_quarter_mean']} MiB"),
    ]
    width = max(len(name) for name, _ in lines)
    for name, value in lines:
        print(f"{name:<{width}}  {value}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=5000)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--time-limit", type=float, default=300.0, help="seconds after which no request is sent")
    parser.add_argument("--output", default=str(RESULTS), help="where to write the JSON results")
    args = parser.parse_args()

    import pytensor

    import mlflow_pmlearn
    from benchmarks.run import synthetic
    from estimators.linear_model import LinearRegression
    from tests.model_server import load_test

    X, y, _, _ = synthetic(2000)
    model = LinearRegression(inference="advi", random_seed=0, progressbar=False).fit(X, y)
    with tempfile.TemporaryDirectory() as directory:
        mlflow_pmlearn.save_model(model, Path(directory) / "model")
        report = load_test(
            Path(directory) / "model",
            directory,
            n_requests=args.requests,
            concurrency=args.concurrency,
            workers=args.workers,
            time_limit=args.time_limit,
        )
    summary = {**report.summary(), "workers": args.workers}
    _print_table(summary)
    write_results(
        args.output,
        pytensor_blas_ldflags=pytensor.config.blas__ldflags,
        model=f"LinearRegression, 10 features, {model.n_posterior_draws_} posterior draws",
        requests_sent=args.requests,
        time_limit_s=args.time_limit,
        **summary,
    )


if __name__ == "__main__":
    main()
