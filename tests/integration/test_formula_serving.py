"""A bambi formula model autologged, logged, registered, served by ``mlflow models serve``, and fitted on Spark."""

from __future__ import annotations

import json

import mlflow
import numpy as np
import pandas as pd
import pytest
from model_server import ModelServer

import mlflow_pmlearn
from estimators.formula import BambiRegressor
from tests.conftest import FAST
from tests.estimators.test_formula import poisson_data

bmb = pytest.importorskip("bambi", reason='pip install "mlflow-pmlearn[bambi]"')

pytestmark = pytest.mark.slow
FORMULA = "count ~ x + c + (1|g)"


@pytest.fixture(scope="module")
def champion(tracking_uri, tmp_path_factory):
    """The fitted Poisson formula model, registered as ``formula-poisson@champion``."""
    from tests.integration.test_spark import _champion

    experiment = mlflow.create_experiment(
        "formula-serving",
        artifact_location=tmp_path_factory.mktemp("formula-artifacts").as_uri(),
    )
    mlflow.set_experiment(experiment_id=experiment)
    X, y = poisson_data()
    model = BambiRegressor(FORMULA, family="poisson", noncentered=False, **FAST).fit(X, y)
    uri = _champion(model, "formula-poisson", X.head(3))
    rows = X.head(6).assign(g=["a", "b", "never seen", "c", "d", "never seen"])
    return model, uri, rows


def _split(rows: pd.DataFrame, **extra) -> dict:
    # 15 digits, not pandas' default 10: the predictive mean is exact, so it moves with the inputs' last digits.
    return {"dataframe_split": json.loads(rows.to_json(orient="split", double_precision=15)), **extra}


def _served_like_the_estimator(server: ModelServer, model, rows: pd.DataFrame) -> pd.DataFrame:
    """The served answer with std and a 90% interval, checked equal to the estimator's ``predict_frame``."""
    response = server.invoke(_split(rows, params={"return_std": True, "interval_prob": 0.9}))
    assert response.status_code == 200, response.text
    frame = pd.DataFrame(response.json()["predictions"])
    expected = model.predict_frame(rows, return_std=True, interval_prob=0.9)
    pd.testing.assert_frame_equal(frame, expected, check_dtype=False, rtol=1e-12)
    return frame


def test_served_model_answers_like_the_estimator_and_names_bad_rows(champion, tracking_uri, tmp_path):
    model, uri, rows = champion
    server = ModelServer(uri, tmp_path, env={"MLFLOW_TRACKING_URI": tracking_uri})
    try:
        server.wait_until_ready()
        _served_like_the_estimator(server, model, rows)
        bad = server.invoke(_split(rows.assign(c=["u", "v", "w", "zz", "u", "v"])))
        assert bad.status_code == 400, bad.text
        assert "zz" in bad.json()["message"] and "'c'" in bad.json()["message"]
        again = server.invoke(_split(rows))
        assert again.status_code == 200
        np.testing.assert_allclose(
            pd.DataFrame(again.json()["predictions"])["prediction"],
            model.predict(rows),
            rtol=1e-12,
        )
    finally:
        server.stop()


def test_served_binomial_model_takes_each_rows_trials_from_the_request(tmp_path):
    from tests.estimators.test_formula import binomial_data

    X, y = binomial_data()
    model = BambiRegressor("p(k, n) ~ x + (1|g)", family="binomial", **FAST).fit(X, y)
    mlflow_pmlearn.save_model(model, tmp_path / "model", input_example=X.head(3))
    rows = X.head(4).assign(n=[1, 10, 10, 100], g=["a", "b", "never seen", "c"])
    server = ModelServer(str(tmp_path / "model"), tmp_path)
    try:
        server.wait_until_ready()
        frame = _served_like_the_estimator(server, model, rows)
        assert np.all(frame["upper"] <= rows["n"].to_numpy())
        bad = server.invoke(_split(rows.assign(n=[1, -2, 3, 4])))
        assert bad.status_code == 400, bad.text
        assert "'n'" in bad.json()["message"] and "row 1" in bad.json()["message"]
    finally:
        server.stop()


def test_spark_udf_scores_like_pyfunc(champion, spark):
    pytest.importorskip("pyspark")
    from tests.integration.test_spark import _regressor_scores

    model, uri, rows = champion
    X = pd.concat([rows] * 5, ignore_index=True)
    scored, expected = _regressor_scores(spark, uri, X, {"return_std": True, "interval_prob": 0.9})
    assert len(scored) == len(X)
    for column in ("prediction", "std", "lower", "upper"):
        np.testing.assert_allclose(scored[column], expected[column], rtol=1e-9, err_msg=column)
    np.testing.assert_allclose(scored["prediction"], model.predict(scored[X.columns]), rtol=1e-9)


def test_autolog_logs_the_formula_the_priors_bambi_chose_and_a_loadable_model(tracking_uri, tmp_path):
    experiment_id = mlflow.create_experiment("formula-autolog", artifact_location=(tmp_path / "a").as_uri())
    X, y = poisson_data()
    mlflow_pmlearn.autolog()
    try:
        with mlflow.start_run(experiment_id=experiment_id) as run:
            model = BambiRegressor(FORMULA, family="poisson", noncentered=False, **FAST).fit(X, y)
    finally:
        mlflow_pmlearn.autolog(disable=True)
    params = mlflow.get_run(run.info.run_id).data.params
    assert params["formula"] == FORMULA
    # bambi's default prior of x depends on the data: the one it chose, read from the fitted graph.
    chosen = bmb.Model(FORMULA, X.assign(count=y), family="poisson").parameters["mu"].common_terms["x"].prior
    assert params["prior.x"].startswith("Normal(") and repr(float(chosen.args["sigma"])) in params["prior.x"]
    assert "prior.1:g_sigma" in params
    (logged,) = mlflow.search_logged_models(experiment_ids=[experiment_id], output_format="list")
    rows = X.head(5)
    np.testing.assert_array_equal(
        mlflow.pyfunc.load_model(logged.model_uri).predict(rows)["prediction"], model.predict(rows)
    )


def test_spark_fit_groups_fits_one_formula_model_per_group(spark, tracking_uri, tmp_path):
    pytest.importorskip("pyspark")
    from mlflow_pmlearn.spark_groups import fit_groups

    X, y = poisson_data()
    table = X.assign(count=y, region=np.where(np.arange(len(X)) % 2 == 0, "north", "south"))
    experiment_id = mlflow.create_experiment("formula-groups", artifact_location=(tmp_path / "g").as_uri())
    with mlflow.start_run(experiment_id=experiment_id):
        fits = fit_groups(
            spark.createDataFrame(table).repartition(2),
            "region",
            BambiRegressor(FORMULA, family="poisson", noncentered=False, **FAST),
            ["x", "c", "g"],
            "count",
        )
    fits = fits.set_index("region")
    assert fits["error"].isna().all(), fits["error"].tolist()
    for region in ("north", "south"):
        loaded = mlflow_pmlearn.load_model(fits.loc[region, "model_uri"])
        assert float(loaded.idata_.posterior["x"].mean()) == pytest.approx(0.3, abs=0.15)
