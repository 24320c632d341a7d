"""One model per group on local Spark: each group's posterior, the child runs, the grouped model served."""

from __future__ import annotations

from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException
from model_server import ModelServer

import mlflow_pmlearn
from estimators.linear_model import LinearRegression
from mlflow_pmlearn.autologging.runs import FIT_ERROR_TAG
from mlflow_pmlearn.spark_groups import GROUP_TAG, fit_groups, log_grouped_model

pytest.importorskip("pyspark", reason="pip install mlflow-pmlearn[spark]")

pytestmark = pytest.mark.slow
SETTINGS = {"inference": "advi", "n_draws": 100, "max_iter": 2000, "random_seed": 0, "progressbar": False}
#: Each group's seeded slope of x and intercept (z's coefficient, 0.5, is shared); sd 0.3.
TRUTH = {"north": (2.0, 1.0), "south": (-1.0, 0.0), "west": (0.5, -2.0)}
NOISE, ROWS = 0.3, 150
NAME = "spark-groups"


def _table() -> pd.DataFrame:
    rng = np.random.default_rng(3)
    frames = []
    for store, (slope, intercept) in TRUTH.items():
        x, z = rng.normal(size=(2, ROWS))
        y = intercept + slope * x + 0.5 * z + rng.normal(scale=NOISE, size=ROWS)
        frames.append(pd.DataFrame({"store": store, "x": x, "z": z, "y": y}))
    # A group whose features hold a NaN: its fit fails, and only its own.
    broken = frames[0].head(20).assign(store="broken")
    broken.loc[5, "x"] = np.nan
    return pd.concat([*frames, broken], ignore_index=True)


@pytest.fixture(scope="module")
def grouped(spark, tracking_uri, tmp_path_factory):
    """The groups fitted on Spark under one parent run, and the grouped model registered."""
    artifacts = tmp_path_factory.mktemp("spark-groups-artifacts")
    experiment_id = mlflow.create_experiment(f"spark-groups-{artifacts.name}", artifact_location=artifacts.as_uri())
    table = spark.createDataFrame(_table()).repartition(2)
    with mlflow.start_run(experiment_id=experiment_id) as parent:
        fits = fit_groups(table, "store", LinearRegression(**SETTINGS), ["x", "z"], "y")
        info = log_grouped_model(fits, "store", registered_model_name=NAME)
    return parent.info, fits.set_index("store"), info


def _rows(n: int = 12) -> pd.DataFrame:
    """Rows of every fitted group, interleaved."""
    rng = np.random.default_rng(11)
    stores = np.array(list(TRUTH))[np.arange(n) % len(TRUTH)]
    return pd.DataFrame({"store": stores, "x": rng.normal(size=n), "z": rng.normal(size=n)}, index=np.arange(n)[::-1])


def test_each_group_recovers_its_own_slope(grouped):
    _, fits, _ = grouped
    for store, (slope, intercept) in TRUTH.items():
        model = mlflow_pmlearn.load_model(fits.loc[store, "model_uri"])
        coef = model.idata_.posterior["coef"].mean(("chain", "draw")).values
        # The slopes differ by >= 1.5 between groups; the standard error is about 0.025.
        np.testing.assert_allclose(coef, [slope, 0.5], atol=0.1, err_msg=store)
        assert float(model.idata_.posterior["intercept"].mean()) == pytest.approx(intercept, abs=0.1)
        # R^2 near the seeded one: the explained variance over the total, slope^2 + 0.25 + sd^2.
        assert fits.loc[store, "n_rows"] == ROWS
        explained = slope**2 + 0.25
        assert fits.loc[store, "training_score"] == pytest.approx(explained / (explained + NOISE**2), abs=0.04)


def test_a_failed_group_is_reported_and_the_others_are_not(grouped):
    _, fits, _ = grouped
    assert pd.isna(fits.loc["broken", "model_uri"])
    # (Spark keeps no row order within a group: the row number is not checked.)
    assert fits.loc["broken", "error"].startswith("ValueError: Input X contains NaN in column 'x', row ")
    assert fits.loc[list(TRUTH), "error"].isna().all()
    assert MlflowClient().get_run(fits.loc["broken", "run_id"]).data.tags[FIT_ERROR_TAG]


def test_child_runs_are_nested_under_the_parent(grouped):
    parent, fits, _ = grouped
    children = MlflowClient().search_runs(
        [parent.experiment_id], filter_string=f"tags.mlflow.parentRunId = '{parent.run_id}'"
    )
    by_group = {run.data.tags[GROUP_TAG]: run for run in children}
    assert sorted(by_group) == sorted([*TRUTH, "broken"])
    for store, run in by_group.items():
        assert run.info.run_id == fits.loc[store, "run_id"]
        assert run.info.run_name == f"store={store}"
        assert run.info.status == ("FAILED" if store == "broken" else "FINISHED")
    for store in TRUTH:
        run = by_group[store]
        assert run.data.metrics["training_score"] == pytest.approx(fits.loc[store, "training_score"])
        (output,) = run.outputs.model_outputs
        assert fits.loc[store, "model_uri"] == f"models:/{output.model_id}"


def test_registered_model_routes_each_row_to_its_group(grouped):
    parent, fits, info = grouped
    version = MlflowClient().get_model_version(NAME, info.registered_model_version)
    assert version.run_id == parent.run_id
    model = mlflow.pyfunc.load_model(f"models:/{NAME}/{version.version}")
    # A model from code: nothing pickled in it, at any depth.
    files = Path(mlflow.artifacts.download_artifacts(f"models:/{NAME}/{version.version}")).rglob("*")
    assert not [path.name for path in files if path.suffix in (".pkl", ".pickle", ".cloudpickle")]
    rows = _rows()
    params = {"return_std": True, "interval_prob": 0.9}
    scored = model.predict(rows, params=params)
    assert list(scored.index) == list(rows.index)
    for store in TRUTH:
        mine = (rows["store"] == store).to_numpy()
        own = mlflow.pyfunc.load_model(fits.loc[store, "model_uri"]).predict(rows.loc[mine, ["x", "z"]], params=params)
        pd.testing.assert_frame_equal(scored[mine].reset_index(drop=True), own.reset_index(drop=True))
    # Independently of the models: each row near its own group's line.
    slope, intercept = (rows["store"].map({s: t[i] for s, t in TRUTH.items()}) for i in (0, 1))
    np.testing.assert_allclose(scored["prediction"], intercept + slope * rows["x"] + 0.5 * rows["z"], atol=0.25)
    with pytest.raises(MlflowException, match=r"No model for store \['broken', 'east'\]"):
        model.predict(pd.DataFrame({"store": ["north", "east", "broken"], "x": 0.0, "z": 0.0}))


def test_spark_udf_scores_a_mixed_table_like_pyfunc(grouped, spark):
    _, _, info = grouped
    uri = f"models:/{NAME}/{info.registered_model_version}"
    rows = _rows(40)
    udf = mlflow.pyfunc.spark_udf(
        spark, uri, result_type="prediction double, std double", env_manager="local", params={"return_std": True}
    )
    scored = (
        spark.createDataFrame(rows)
        .repartition(3)
        .withColumn("scores", udf("store", "x", "z"))
        .select("store", "x", "z", "scores.*")
        .toPandas()
    )
    expected = mlflow.pyfunc.load_model(uri).predict(scored[["store", "x", "z"]], params={"return_std": True})
    np.testing.assert_allclose(scored[["prediction", "std"]], expected[["prediction", "std"]], rtol=1e-9)


def test_served_model_answers_each_group_and_refuses_an_unknown_one(grouped, tracking_uri, tmp_path):
    _, fits, info = grouped
    uri = f"models:/{NAME}/{info.registered_model_version}"
    server = ModelServer(uri, tmp_path, env={"MLFLOW_TRACKING_URI": tracking_uri})
    try:
        server.wait_until_ready()
        rows = _rows(6).reset_index(drop=True)
        answer = server.invoke({"dataframe_records": rows.to_dict(orient="records"), "params": {"return_std": True}})
        assert answer.status_code == 200, answer.text
        served = pd.DataFrame(answer.json()["predictions"])
        for store in TRUTH:
            mine = (rows["store"] == store).to_numpy()
            own = mlflow.pyfunc.load_model(fits.loc[store, "model_uri"]).predict(
                rows.loc[mine, ["x", "z"]], params={"return_std": True}
            )
            np.testing.assert_allclose(served.loc[mine, ["prediction", "std"]], own[["prediction", "std"]], rtol=1e-9)
        refused = server.invoke({"dataframe_records": [{"store": "east", "x": 0.0, "z": 0.0}]})
        assert refused.status_code == 400 and "No model for store ['east']" in refused.text
    finally:
        server.stop()
