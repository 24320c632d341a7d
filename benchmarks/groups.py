"""Many models on Spark: groups fitted and logged per second on local Spark, by partitions and group size.

Each cell fits ``--groups`` LinearRegressions (ADVI, 2 features, the fast settings below) with
``mlflow_pmlearn.spark_groups.fit_groups`` on ``local[--cores]``, each group in a child run of
one parent, logging to a sqlite store in a temporary directory. A cell's time is the wall time
of ``fit_groups`` (shuffle, fits, metrics, each model's logging, collecting the result);
``fit share`` is the groups' own fit time (their ``fit_time_s`` metric) over the cores' time
in the cell, so ``1 - fit share`` is what the rest costs. ``CPU s/group`` and ``cores busy``
count the CPU time of this process and its descendants (the JVM and its Python workers,
from ``/proc``, so Linux only): on a busy machine the wall times say how much of the cores
the cell got, and ``cores busy`` says whether the partitions ran at once. "partitions" is ``fit_groups``'s
``partitions``: how many tasks the groups are spread over (by their value's hash).
Before the grid one warm-up cell (excluded) lets the Python workers compile the model.

Run from the repository root (after ``pip install -e ".[spark]"``, with Java 17)::

    python -m benchmarks.groups              # prints a table, writes benchmarks/groups.json
    python -m benchmarks.groups --quick      # one small cell, for a smoke test
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

from benchmarks import write_results

warnings.filterwarnings("ignore")
# One BLAS thread per Python worker: the workers are the parallelism (as in the test suite).
for _variable in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_variable, "1")

RESULTS = Path(__file__).with_name("groups.json")
SETTINGS = {"inference": "advi", "n_draws": 100, "max_iter": 2000, "random_seed": 0, "progressbar": False}
FEATURES = ["x0", "x1"]


def grouped_table(n_groups: int, rows_per_group: int, seed: int = 0) -> pd.DataFrame:
    """``n_groups`` groups of ``rows_per_group`` rows, each with its own coefficients."""
    rng = np.random.default_rng(seed)
    frames = []
    for group in range(n_groups):
        X = rng.normal(size=(rows_per_group, len(FEATURES)))
        y = rng.normal() + X @ rng.normal(size=len(FEATURES)) + rng.normal(scale=0.5, size=rows_per_group)
        frames.append(pd.DataFrame(X, columns=FEATURES).assign(group=group, y=y))
    return pd.concat(frames, ignore_index=True)


def _cpu_seconds() -> float:
    """CPU time (user + system) of this process and all its descendants: the JVM, the Python workers."""
    stats = {}
    for entry in Path("/proc").iterdir():
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split() if entry.name.isdigit() else None
        except OSError:  # the process ended while we looked
            continue
        if fields:
            stats[int(entry.name)] = (int(fields[1]), int(fields[11]) + int(fields[12]))
    ticks, pending = 0, [os.getpid()]
    while pending:
        pid = pending.pop()
        ticks += stats.get(pid, (0, 0))[1]
        pending.extend(child for child, (parent, _) in stats.items() if parent == pid)
    return ticks / os.sysconf("SC_CLK_TCK")


def run_cell(spark, n_groups: int, rows_per_group: int, partitions: int, cores: int) -> dict:
    """Fit the groups once under a new parent run; the cell's figures."""
    import mlflow

    from estimators.linear_model import LinearRegression
    from mlflow_pmlearn.spark_groups import fit_groups

    table = spark.createDataFrame(grouped_table(n_groups, rows_per_group)).cache()
    table.count()  # the table is in memory before the clock starts
    with mlflow.start_run() as parent:
        start, cpu_start = time.perf_counter(), _cpu_seconds()
        fits = fit_groups(table, "group", LinearRegression(**SETTINGS), FEATURES, "y", partitions=partitions)
        seconds, cpu_seconds = time.perf_counter() - start, _cpu_seconds() - cpu_start
    table.unpersist()
    failed = fits["error"].notna().sum()
    if failed:
        raise RuntimeError(f"{failed} groups failed: {fits['error'].dropna().iloc[0]}")
    children = mlflow.search_runs(filter_string=f"tags.mlflow.parentRunId = '{parent.info.run_id}'")
    fit_seconds = float(children["metrics.fit_time_s"].sum())
    return {
        "groups": n_groups,
        "rows_per_group": rows_per_group,
        "partitions": partitions,
        "seconds": seconds,
        "groups_per_second": n_groups / seconds,
        "mean_fit_seconds": fit_seconds / n_groups,
        "fit_share": fit_seconds / (seconds * min(cores, partitions)),
        "cpu_seconds_per_group": cpu_seconds / n_groups,
        "cores_busy": cpu_seconds / seconds,
    }


def _print_table(rows: list[dict]) -> None:
    print(
        f"{'partitions':>10} {'rows/group':>10} {'groups':>6} {'seconds':>8} {'groups/s':>9} {'fit s/group':>11} "
        f"{'fit share':>9} {'CPU s/group':>11} {'cores busy':>10}"
    )
    for row in rows:
        print(
            f"{row['partitions']:>10} {row['rows_per_group']:>10,} {row['groups']:>6} {row['seconds']:>8.1f} "
            f"{row['groups_per_second']:>9.2f} {row['mean_fit_seconds']:>11.2f} {row['fit_share']:>9.0%} "
            f"{row['cpu_seconds_per_group']:>11.2f} {row['cores_busy']:>10.2f}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cores", type=int, default=2, help="Spark's local[N]")
    parser.add_argument("--groups", type=int, default=8, help="groups per cell")
    parser.add_argument("--partitions", default="1,2,4", help="comma-separated partition counts")
    parser.add_argument("--rows", default="200,2000", help="comma-separated rows per group")
    parser.add_argument("--quick", action="store_true", help="one cell of 4 groups of 200 rows on 2 partitions")
    parser.add_argument("--output", default=str(RESULTS), help="where to write the JSON results")
    args = parser.parse_args()
    partitions = [2] if args.quick else [int(p) for p in args.partitions.split(",")]
    sizes = [200] if args.quick else [int(r) for r in args.rows.split(",")]
    n_groups = 4 if args.quick else args.groups

    import mlflow
    import pymc
    import pytensor
    from pyspark.sql import SparkSession

    load_before = os.getloadavg()[0]
    spark = (
        SparkSession.builder.master(f"local[{args.cores}]")
        .appName("pmlearn-groups-benchmark")
        .config("spark.ui.enabled", "false")
        .config("spark.driver.host", "127.0.0.1")
        .config("spark.driver.bindAddress", "127.0.0.1")
        .getOrCreate()
    )
    spark.sparkContext.setLogLevel("ERROR")
    with tempfile.TemporaryDirectory() as directory:
        mlflow.set_tracking_uri(f"sqlite:///{directory}/mlflow.db")
        artifacts = Path(directory, "artifacts").as_uri()
        mlflow.set_experiment(experiment_id=mlflow.create_experiment("groups-benchmark", artifact_location=artifacts))
        warm_up = run_cell(spark, 2 * args.cores, sizes[0], args.cores, args.cores)
        print(f"warm-up (excluded): {warm_up['groups']} groups in {warm_up['seconds']:.1f} s\n")
        rows = [run_cell(spark, n_groups, size, p, args.cores) for size in sizes for p in partitions]
    spark.stop()
    _print_table(rows)
    write_results(
        args.output,
        spark=f"local[{args.cores}], pyspark {spark.version}",
        pymc=pymc.__version__,
        pytensor=pytensor.__version__,
        settings=SETTINGS,
        quick=args.quick,
        # Other processes' share of the cores: the figures are for an idle machine only at ~0.
        load_average_before_after=[round(load_before, 2), round(os.getloadavg()[0], 2)],
        warm_up=warm_up,
        rows=rows,
    )


if __name__ == "__main__":
    main()
