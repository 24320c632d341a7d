"""``mlflow.pyfunc.spark_udf`` on local Spark scores like pyfunc on the same rows."""

from __future__ import annotations

import mlflow
import numpy as np
import pytest
from mlflow import MlflowClient

import mlflow_pmlearn
from estimators.linear_model import LinearRegression, LogisticRegression
from tests.conftest import FAST

pytest.importorskip("pyspark", reason="pip install mlflow-pmlearn[spark]")
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def spark():
    from pyspark.sql import SparkSession

    session = (
        SparkSession.builder.master("local[2]")
        .appName("pmlearn-tests")
        .config("spark.driver.host", "127.0.0.1")
        .config("spark.driver.bindAddress", "127.0.0.1")
        .config("spark.ui.enabled", "false")
        .config("spark.sql.shuffle.partitions", "2")
        .getOrCreate()
    )
    yield session
    session.stop()


def _champion(model, name: str, example) -> str:
    with mlflow.start_run():
        info = mlflow_pmlearn.log_model(model, name="model", input_example=example, registered_model_name=name)
    MlflowClient().set_registered_model_alias(name, "champion", info.registered_model_version)
    return f"models:/{name}@champion"


def test_regressor_struct_result_equals_pyfunc(spark, mlflow_experiment, regression_data):
    X, y, _ = regression_data
    uri = _champion(LinearRegression(**FAST).fit(X, y), "spark-regressor", X.head(3))
    params = {"return_std": True, "interval_prob": 0.9}
    udf = mlflow.pyfunc.spark_udf(
        spark, uri, result_type="prediction double, std double, lower double, upper double",
        env_manager="local", params=params,
    )
    table = spark.createDataFrame(X).repartition(3)
    scored = table.withColumn("scores", udf(*X.columns)).select(*X.columns, "scores.*").toPandas()
    expected = mlflow.pyfunc.load_model(uri).predict(scored[X.columns], params=params)
    assert len(scored) == len(X)
    for column in ("prediction", "std", "lower", "upper"):
        np.testing.assert_allclose(scored[column], expected[column], rtol=1e-9, err_msg=column)


def test_classifier_labels_and_probabilities_equal_pyfunc(spark, mlflow_experiment, binary_data):
    X, y, _ = binary_data
    model = LogisticRegression(**FAST).fit(X, y)
    uri = _champion(model, "spark-classifier", X.head(3))
    result_type = "prediction string, " + ", ".join(f"proba_{c} double" for c in model.classes_)
    udf = mlflow.pyfunc.spark_udf(spark, uri, result_type=result_type, env_manager="local")
    table = spark.createDataFrame(X).repartition(3)
    scored = table.withColumn("scores", udf(*X.columns)).select(*X.columns, "scores.*").toPandas()
    expected = mlflow.pyfunc.load_model(uri).predict(scored[X.columns])
    assert list(scored["prediction"]) == list(expected["prediction"])
    probabilities = [f"proba_{c}" for c in model.classes_]
    np.testing.assert_allclose(scored[probabilities], expected[probabilities], rtol=1e-9)
