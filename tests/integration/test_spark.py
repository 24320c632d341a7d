"""``mlflow.pyfunc.spark_udf`` on local Spark scores like pyfunc on the same rows; the Spark example runs."""

from __future__ import annotations

import importlib.util
import re
import subprocess
import sys
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
from mlflow import MlflowClient
from scipy.stats import norm

import mlflow_pmlearn
from estimators.linear_model import LinearRegression, LogisticRegression
from tests.conftest import FAST, isolated_environment
from tests.references import assert_linear_regression_frame_within_monte_carlo_error, logistic_regression_proba

pytest.importorskip("pyspark", reason="pip install mlflow-pmlearn[spark]")
pytestmark = pytest.mark.slow
SCORE_TABLE = Path(__file__).resolve().parents[2] / "examples" / "spark" / "score_table.py"


def _champion(model, name: str, example) -> str:
    with mlflow.start_run():
        info = mlflow_pmlearn.log_model(model, name="model", input_example=example, registered_model_name=name)
    MlflowClient().set_registered_model_alias(name, "champion", info.registered_model_version)
    return f"models:/{name}@champion"


def _regressor_scores(spark, uri: str, X: pd.DataFrame, params: dict) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The rows of ``X`` scored by ``spark_udf`` (in 3 partitions), and pyfunc's frame for the same rows."""
    udf = mlflow.pyfunc.spark_udf(
        spark,
        uri,
        result_type="prediction double, std double, lower double, upper double",
        env_manager="local",
        params=params,
    )
    table = spark.createDataFrame(X).repartition(3)
    scored = table.withColumn("scores", udf(*X.columns)).select(*X.columns, "scores.*").toPandas()
    return scored, mlflow.pyfunc.load_model(uri).predict(scored[X.columns], params=params)


def test_regressor_struct_result_equals_pyfunc(spark, mlflow_experiment, regression_data):
    X, y, _ = regression_data
    model = LinearRegression(**FAST).fit(X, y)
    uri = _champion(model, "spark-regressor", X.head(3))
    params = {"return_std": True, "interval_prob": 0.9}
    scored, expected = _regressor_scores(spark, uri, X, params)
    assert len(scored) == len(X)
    for column in ("prediction", "std", "lower", "upper"):
        np.testing.assert_allclose(scored[column], expected[column], rtol=1e-9, err_msg=column)
    # Independently of our code: the posterior predictive of the model's own draws.
    assert_linear_regression_frame_within_monte_carlo_error(scored, model, scored[X.columns], interval_prob=0.9)


def test_classifier_labels_and_probabilities_equal_pyfunc(spark, mlflow_experiment, binary_data):
    X, y, _ = binary_data
    model = LogisticRegression(**FAST).fit(X, y)
    uri = _champion(model, "spark-classifier", X.head(3))
    # By default the labels, one string column; the probabilities with predict_proba.
    labels = mlflow.pyfunc.spark_udf(spark, uri, result_type="string", env_manager="local")
    result_type = "prediction string, " + ", ".join(f"proba_{c} double" for c in model.classes_)
    udf = mlflow.pyfunc.spark_udf(
        spark, uri, result_type=result_type, env_manager="local", params={"predict_proba": True}
    )
    table = spark.createDataFrame(X).repartition(3)
    scored = (
        table.withColumn("scores", udf(*X.columns))
        .withColumn("label", labels(*X.columns))
        .select(*X.columns, "label", "scores.*")
        .toPandas()
    )
    expected = mlflow.pyfunc.load_model(uri).predict(scored[X.columns], params={"predict_proba": True})
    assert list(scored["prediction"]) == list(expected["prediction"]) == list(scored["label"])
    assert list(scored["label"]) == list(model.predict(scored[X.columns]))
    probabilities = [f"proba_{c}" for c in model.classes_]
    np.testing.assert_allclose(scored[probabilities], expected[probabilities], rtol=1e-9)
    np.testing.assert_allclose(scored[probabilities], logistic_regression_proba(model, scored[X.columns]), atol=1e-9)


def test_pipeline_on_raw_string_columns_scores_like_pyfunc(spark, mlflow_experiment):
    """A pipeline (imputation, scaling, one-hot encoding of strings) scores the raw columns."""
    from sklearn.compose import ColumnTransformer
    from sklearn.impute import SimpleImputer
    from sklearn.pipeline import Pipeline, make_pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    rng = np.random.default_rng(5)
    X = pd.DataFrame({"size": rng.normal(size=150), "city": rng.choice(["a", "b", "c"], 150)})
    y = 2.0 * X["size"] + X["city"].map({"a": 0.0, "b": 1.0, "c": -1.0}) + rng.normal(scale=0.3, size=150)
    X.loc[::9, "size"] = np.nan
    prep = ColumnTransformer(
        [
            ("num", make_pipeline(SimpleImputer(), StandardScaler()), ["size"]),
            ("cat", OneHotEncoder(sparse_output=False), ["city"]),
        ]
    )
    model = Pipeline([("prep", prep), ("reg", LinearRegression(**FAST))]).fit(X, y)
    uri = _champion(model, "spark-pipeline", X.head(3))
    params = {"return_std": True, "interval_prob": 0.9}
    scored, expected = _regressor_scores(spark, uri, X, params)
    for column in ("prediction", "std", "lower", "upper"):
        np.testing.assert_allclose(scored[column], expected[column], rtol=1e-9, err_msg=column)
    np.testing.assert_allclose(scored["prediction"], model.predict(scored[X.columns]), rtol=1e-9)


def _import_script(path: Path):
    """The module of a script that is not in a package (its ``main`` does not run)."""
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _shown_table(output: str) -> pd.DataFrame:
    """The numbers of the table that ``DataFrame.show`` printed (a cell over 20 characters ends in "...")."""
    lines = [line for line in output.splitlines() if line.startswith("|")]
    header, *rows = [[cell.strip() for cell in line.strip("|").split("|")] for line in lines]
    return pd.DataFrame([[float(cell.removesuffix("...")) for cell in row] for row in rows], columns=header)


def test_score_table_example_registers_its_champion_and_scores_like_pyfunc(spark, tmp_path):
    """``examples/spark/score_table.py`` as a user runs it, on a sqlite store of the test's own."""
    rows, partitions = 300, 1
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    # Only this test's store: no tracking/registry URI, experiment or run left by other tests.
    env = isolated_environment(uri)
    command = [sys.executable, str(SCORE_TABLE), "--rows", str(rows), "--partitions", str(partitions)]
    finished = subprocess.run(command, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert finished.returncode == 0, finished.stdout[-3000:] + finished.stderr[-3000:]

    rate = re.search(rf"scored {rows} rows in ([\d.]+) s: ([\d,]+) rows/s \({partitions} partitions", finished.stdout)
    assert rate is not None, finished.stdout
    seconds, per_second = float(rate[1]), float(rate[2].replace(",", ""))
    # Within the rounding of the printed seconds (0.1) and rows per second (1).
    assert rows / (seconds + 0.05) - 0.5 <= per_second <= rows / (seconds - 0.05) + 0.5

    script = _import_script(SCORE_TABLE)
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    champion = client.get_model_version_by_alias(script.MODEL_NAME, "champion")
    assert int(champion.version) == 1
    assert client.get_run(champion.run_id).info.status == "FINISHED"

    # The rows the script printed are its table's first rows, scored by Spark: pyfunc on the
    # same rows (rebuilt by the script's own seeded generator) must give the same numbers.
    shown = _shown_table(finished.stdout)
    assert list(shown.columns) == ["prediction", "std", "lower", "upper"] and len(shown) == 5
    features = script.random_table(spark, rows, partitions).limit(len(shown)).toPandas()
    (model_output,) = client.get_run(champion.run_id).outputs.model_outputs
    model = mlflow.pyfunc.load_model(client.get_logged_model(model_output.model_id).artifact_location)
    expected = model.predict(features, params={"return_std": True, "interval_prob": 0.9})
    for column in shown.columns:
        np.testing.assert_allclose(shown[column], expected[column], rtol=1e-9, err_msg=column)
    # Independently: the script's data have noise sd 0.5 (5,000 rows, so the parameters add
    # little), and a near-normal predictive's central 90% interval is 2 * 1.645 sd wide.
    np.testing.assert_allclose(shown["std"], 0.5, rtol=0.03)
    np.testing.assert_allclose(shown["upper"] - shown["lower"], 2 * norm.ppf(0.95) * shown["std"], rtol=0.03)
