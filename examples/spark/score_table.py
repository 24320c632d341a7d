"""Score a generated table of a million rows on local Spark and report rows per second.

Needs the Spark extra (``pip install ".[spark]"``) and Java 17. Run from the repository root::

    python examples/spark/score_table.py --rows 1000000

It fits a ``LinearRegression`` on a small sample, logs and registers it (alias
``champion``), then scores the table with ``mlflow.pyfunc.spark_udf`` into a struct of
prediction, std and a 90% interval.
"""

from __future__ import annotations

import argparse
import os
import time

import mlflow
import numpy as np
import pandas as pd
from mlflow import MlflowClient
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

import mlflow_pmlearn
from estimators.linear_model import LinearRegression

N_FEATURES = 10
FEATURES = [f"x{i}" for i in range(N_FEATURES)]
MODEL_NAME = "spark-scoring-example"


def random_table(spark: SparkSession, rows: int, partitions: int) -> DataFrame:
    """``rows`` rows of standard normal ``FEATURES``: the same rows for the same arguments."""
    return spark.range(rows, numPartitions=partitions).select(
        *[F.randn(seed=i).alias(name) for i, name in enumerate(FEATURES)]
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--partitions", type=int, default=os.cpu_count() or 2)
    args = parser.parse_args()
    mlflow.set_tracking_uri(os.environ.get("MLFLOW_TRACKING_URI", "sqlite:///mlflow.db"))

    rng = np.random.default_rng(0)
    X = pd.DataFrame(rng.normal(size=(5_000, N_FEATURES)), columns=FEATURES)
    y = 1.0 + X.to_numpy() @ rng.normal(size=N_FEATURES) + rng.normal(scale=0.5, size=len(X))
    with mlflow.start_run():
        info = mlflow_pmlearn.log_model(
            LinearRegression(random_seed=0).fit(X, y),
            name="model",
            input_example=X.head(3),
            registered_model_name=MODEL_NAME,
        )
    MlflowClient().set_registered_model_alias(MODEL_NAME, "champion", info.registered_model_version)

    spark = SparkSession.builder.master(f"local[{args.partitions}]").config("spark.ui.enabled", "false").getOrCreate()
    table = random_table(spark, args.rows, args.partitions)
    udf = mlflow.pyfunc.spark_udf(
        spark,
        f"models:/{MODEL_NAME}@champion",
        result_type="prediction double, std double, lower double, upper double",
        env_manager="local",
        params={"return_std": True, "interval_prob": 0.9},
    )
    scored = table.withColumn("scores", udf(*FEATURES)).select("scores.*")
    start = time.perf_counter()
    scored.write.format("noop").mode("overwrite").save()
    seconds = time.perf_counter() - start
    print(
        f"scored {args.rows:,} rows in {seconds:.1f} s: {args.rows / seconds:,.0f} rows/s "
        f"({args.partitions} partitions, 1000 posterior draws, mean + std + 90% interval)"
    )
    scored.show(5)
    spark.stop()


if __name__ == "__main__":
    main()
