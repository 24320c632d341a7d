"""A bambi formula model logged, registered, served by ``mlflow models serve`` and scored on Spark."""

from __future__ import annotations

import json

import mlflow
import numpy as np
import pandas as pd
import pytest

pytest.importorskip("bambi", reason='pip install "mlflow-pmlearn[bambi]"')

from model_server import ModelServer

from estimators.formula import BambiRegressor
from tests.conftest import FAST
from tests.estimators.test_formula import poisson_data

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
    return {"dataframe_split": json.loads(rows.to_json(orient="split")), **extra}


def test_served_model_answers_like_the_estimator_and_names_bad_rows(champion, tracking_uri, tmp_path):
    model, uri, rows = champion
    server = ModelServer(uri, tmp_path, env={"MLFLOW_TRACKING_URI": tracking_uri})
    try:
        server.wait_until_ready()
        response = server.invoke(_split(rows, params={"return_std": True, "interval_prob": 0.9}))
        assert response.status_code == 200, response.text
        frame = pd.DataFrame(response.json()["predictions"])
        expected = model.predict_frame(rows, return_std=True, interval_prob=0.9)
        pd.testing.assert_frame_equal(frame, expected, check_dtype=False, rtol=1e-12)
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
