"""Pipelines with preprocessing, saved pickle-free (skops), loaded, served through pyfunc and autologged whole."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
import skops.io
import xarray as xr
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import FunctionTransformer, OneHotEncoder, StandardScaler

import mlflow_pmlearn
from estimators.linear_model import LinearRegression
from mlflow_pmlearn.pipelines import PIPELINE_FILE, PREPROCESSING_FILE, TRUSTED_TYPES_VARIABLE, with_final_step
from mlflow_pmlearn.serialization import sha256_of
from tests.conftest import FAST


def _raw_rows(n: int = 120, seed: int = 0) -> tuple[pd.DataFrame, np.ndarray]:
    """A numeric column with gaps and a string column; y depends on both."""
    rng = np.random.default_rng(seed)
    X = pd.DataFrame({"size": rng.normal(size=n), "city": rng.choice(["lyon", "paris", "nantes"], n)})
    y = 2.0 * X["size"] + X["city"].map({"lyon": 0.0, "paris": 1.5, "nantes": -1.0}) + rng.normal(scale=0.3, size=n)
    X.loc[::7, "size"] = np.nan
    return X, y.to_numpy()


def _preprocessing(**encoder) -> ColumnTransformer:
    return ColumnTransformer(
        [
            ("num", make_pipeline(SimpleImputer(), StandardScaler()), ["size"]),
            ("cat", OneHotEncoder(handle_unknown="ignore", sparse_output=False, **encoder), ["city"]),
        ]
    )


@pytest.fixture(scope="module")
def fitted():
    X, y = _raw_rows()
    return Pipeline([("prep", _preprocessing()), ("reg", LinearRegression(**FAST))]).fit(X, y), X, y


def test_round_trip_predicts_the_same_from_raw_columns_without_pickle(fitted, tmp_path):
    pipeline, X, _ = fitted
    path = tmp_path / "model"
    mlflow_pmlearn.save_model(pipeline, path, input_example=X.head(3))
    files = [p.relative_to(path).as_posix() for p in path.rglob("*") if p.is_file()]
    assert f"pipeline/{PREPROCESSING_FILE}" in files
    assert not [name for name in files if name.endswith((".pkl", ".pickle", ".joblib"))]
    conf = mlflow.models.Model.load(str(path)).flavors[mlflow_pmlearn.FLAVOR_NAME]
    assert conf["model_kind"] == "pipeline" and conf["final_step"] == "reg" and conf["data"] == "pipeline"
    assert any(line.startswith("skops==") for line in (path / "requirements.txt").read_text().splitlines())

    loaded = mlflow_pmlearn.load_model(str(path))
    assert isinstance(loaded, Pipeline)
    np.testing.assert_array_equal(loaded.predict(X), pipeline.predict(X))

    served = mlflow.pyfunc.load_model(str(path))
    rows = X.head(8)  # strings, and NaN where the pipeline imputes
    frame = served.predict(rows, params={"return_std": True, "interval_prob": 0.9, "quantiles": [0.5]})
    assert list(frame.columns) == ["prediction", "std", "lower", "upper", "quantile_0.5"]
    expected = pipeline[-1].predict_frame(
        pipeline[:-1].transform(rows), return_std=True, interval_prob=0.9, quantiles=[0.5]
    )
    pd.testing.assert_frame_equal(frame, expected)
    inputs = {spec.name: spec.type.name for spec in served.metadata.get_input_schema().inputs}
    assert inputs == {"size": "double", "city": "string"}


def test_autolog_names_the_posterior_after_numpy_preprocessing_output(mlflow_experiment):
    """Preprocessing that outputs arrays (scikit-learn's default) still labels the posterior by
    ``get_feature_names_out``, in the summary, the trace and the posterior plot; the fitted
    step itself keeps scikit-learn's names."""
    X, y = _raw_rows(80)
    pipeline = Pipeline([("prep", _preprocessing()), ("reg", LinearRegression(**FAST))])
    mlflow_pmlearn.autolog(log_models=False)
    try:
        with mlflow.start_run() as run:
            pipeline.fit(X, y)
    finally:
        mlflow_pmlearn.autolog(disable=True)
    names = ["num__size", "cat__city_lyon", "cat__city_nantes", "cat__city_paris"]
    assert list(pipeline[:-1].get_feature_names_out()) == names
    assert not hasattr(pipeline[-1], "feature_names_in_")
    assert list(pipeline[-1].idata_.posterior["coef"].coords["feature"].values) == ["x0", "x1", "x2", "x3"]
    artifacts = Path(mlflow.artifacts.download_artifacts(run_id=run.info.run_id))
    labels = pd.read_csv(artifacts / "trace" / "summary.csv", index_col=0).index
    assert [label for label in labels if label.startswith("coef[")] == [f"coef[{name}]" for name in names]
    with xr.open_datatree(artifacts / "trace" / "trace.nc") as trace:
        assert list(trace.posterior["coef"].coords["feature"].values) == names
    assert (artifacts / "plots" / "posterior.png").stat().st_size > 0


def test_nested_pipeline_round_trip(tmp_path):
    X, y = _raw_rows(80)
    inner = Pipeline(
        [("scale", FunctionTransformer(lambda v: v, feature_names_out="one-to-one")), ("reg", LinearRegression(**FAST))]
    )
    outer = Pipeline([("prep", _preprocessing()), ("model", inner)])
    # A lambda is not a trusted type: saving refuses it by name, before writing anything.
    with pytest.raises(MlflowException, match=f"not trusted.*{TRUSTED_TYPES_VARIABLE}"):
        mlflow_pmlearn.save_model(outer.fit(X, y), tmp_path / "refused", input_example=X.head(2))
    assert not (tmp_path / "refused").exists()
    inner.steps[0] = ("scale", StandardScaler())
    outer.fit(X, y)
    mlflow_pmlearn.save_model(outer, tmp_path / "nested", input_example=X.head(2))
    np.testing.assert_array_equal(mlflow_pmlearn.load_model(str(tmp_path / "nested")).predict(X), outer.predict(X))


def test_an_untrusted_type_in_the_file_is_refused_when_loading(fitted, tmp_path, monkeypatch):
    """A type outside the allow-list is refused by name, and loads once named in the variable."""
    pipeline, X, _ = fitted
    path = tmp_path / "model"
    mlflow_pmlearn.save_model(pipeline, path, input_example=X.head(2))
    # Rewrite the preprocessing with a type skops does not trust (and fix the recorded checksum).
    hostile = with_final_step(pipeline, "passthrough")
    hostile.steps.insert(0, ("spy", FunctionTransformer(_Marker()).fit(X)))
    skops_file = path / "pipeline" / PREPROCESSING_FILE
    skops.io.dump(hostile, skops_file)
    config = json.loads((path / "pipeline" / PIPELINE_FILE).read_text())
    config["preprocessing_sha256"] = sha256_of(skops_file)
    (path / "pipeline" / PIPELINE_FILE).write_text(json.dumps(config))
    name = f"{_Marker.__module__}._Marker"
    with pytest.raises(MlflowException, match=f"not trusted: {name}.*{TRUSTED_TYPES_VARIABLE}"):
        mlflow_pmlearn.load_model(str(path))
    with pytest.raises(MlflowException, match="not trusted"):
        mlflow.pyfunc.load_model(str(path))
    monkeypatch.setenv(TRUSTED_TYPES_VARIABLE, name)
    assert isinstance(mlflow_pmlearn.load_model(str(path)), Pipeline)


class _Marker:
    """A callable of this test module: a type skops does not trust."""

    def __call__(self, rows):
        return rows


def test_a_changed_preprocessing_file_is_refused(fitted, tmp_path):
    pipeline, X, _ = fitted
    path = tmp_path / "model"
    mlflow_pmlearn.save_model(pipeline, path, input_example=X.head(2))
    with open(path / "pipeline" / PREPROCESSING_FILE, "ab") as file:
        file.write(b"\0")
    with pytest.raises(MlflowException, match="SHA-256"):
        mlflow_pmlearn.load_model(str(path))


def test_a_pipeline_needs_an_input_example_or_a_signature(fitted, tmp_path):
    pipeline, _, _ = fitted
    with pytest.raises(MlflowException, match="input_example"):
        mlflow_pmlearn.save_model(pipeline, tmp_path / "model")
    mlflow_pmlearn.save_model(pipeline, tmp_path / "unsigned", signature=False)


def test_autolog_logs_and_registers_the_whole_pipeline(mlflow_experiment):
    X, y = _raw_rows()
    prep = _preprocessing().set_output(transform="pandas")
    pipeline = Pipeline([("prep", prep), ("reg", LinearRegression(**FAST))])
    name = f"autolog-pipeline-{uuid.uuid4().hex[:8]}"
    mlflow_pmlearn.autolog(registered_model_name=name, log_plots=False)
    try:
        with mlflow.start_run() as run:
            pipeline.fit(X, y)
    finally:
        mlflow_pmlearn.autolog(disable=True)
    client = MlflowClient()
    (version,) = client.search_model_versions(f"name = '{name}'")
    assert version.run_id == run.info.run_id
    registered = mlflow.pyfunc.load_model(f"models:/{name}/{version.version}")
    np.testing.assert_array_equal(registered.predict(X.head(5))["prediction"], pipeline.predict(X.head(5)))
    assert isinstance(mlflow_pmlearn.load_model(f"models:/{name}/{version.version}"), Pipeline)
    params = client.get_run(run.info.run_id).data.params
    assert params["prior.coef_std"].startswith("Normal(") and params["training.rows"] == str(len(X))
    # The posterior is labelled by the transformed features' names.
    summary = Path(mlflow.artifacts.download_artifacts(run_id=run.info.run_id, artifact_path="trace/summary.csv"))
    labels = pd.read_csv(summary, index_col=0).index
    for feature in pipeline[:-1].get_feature_names_out():
        assert any(feature in label for label in labels), feature
