"""A Bayesian regression behind scikit-learn preprocessing: logged, registered and served whole.

Raw rows with a numeric column that has gaps and two string columns go through a
``ColumnTransformer`` (imputation and scaling, one-hot encoding) into a pmlearn
``LinearRegression``. autolog logs the whole pipeline (its preprocessing saved with skops,
no pickle) and registers it; the registered model then predicts from the raw columns.

Run from the repository root after ``pip install .``::

    python examples/pipeline/main.py [--rows 600] [--draws 500]

It uses MLflow's tracking URI from ``MLFLOW_TRACKING_URI``, or ``sqlite:///mlflow.db`` in
the current directory. The data are generated (seeded): nothing is downloaded.
"""

from __future__ import annotations

import argparse
import os

import mlflow
import numpy as np
import pandas as pd
from mlflow import MlflowClient
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.model_selection import train_test_split
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

import mlflow_pmlearn
from estimators.linear_model import LinearRegression

MODEL_NAME = "flat-rents-pipeline"
CITY_EFFECT = {"Lyon": 0.0, "Paris": 6.0, "Nantes": -1.5}
FLOOR_EFFECT = {"ground": -0.5, "middle": 0.0, "top": 1.0}


def flat_rents(rows: int, seed: int = 0) -> tuple[pd.DataFrame, pd.Series]:
    """Monthly rents (hundreds of euros) of flats: their size (some unknown), city and floor."""
    rng = np.random.default_rng(seed)
    size = rng.uniform(20, 120, rows)
    city = rng.choice(list(CITY_EFFECT), rows)
    floor = rng.choice(list(FLOOR_EFFECT), rows)
    rent = 2.0 + 0.12 * size + pd.Series(city).map(CITY_EFFECT) + pd.Series(floor).map(FLOOR_EFFECT)
    rent += rng.normal(scale=1.0, size=rows)
    size[rng.uniform(size=rows) < 0.1] = np.nan  # unknown sizes, imputed by the pipeline
    return pd.DataFrame({"size_m2": size, "city": city, "floor": floor}), pd.Series(rent, name="rent")


def pipeline(draws: int) -> Pipeline:
    preprocessing = ColumnTransformer(
        [
            ("num", make_pipeline(SimpleImputer(strategy="median"), StandardScaler()), ["size_m2"]),
            ("cat", OneHotEncoder(handle_unknown="ignore", sparse_output=False), ["city", "floor"]),
        ]
    ).set_output(transform="pandas")  # the Bayesian step sees, and autolog logs, the feature names
    model = LinearRegression(inference="advi", n_draws=draws, random_seed=0, progressbar=False)
    return Pipeline([("prep", preprocessing), ("reg", model)])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=600)
    parser.add_argument("--draws", type=int, default=500)
    args = parser.parse_args()
    mlflow.set_tracking_uri(os.environ.get("MLFLOW_TRACKING_URI", "sqlite:///mlflow.db"))
    mlflow.set_experiment("pmlearn-pipeline")

    X, y = flat_rents(args.rows)
    X_train, X_test, y_train, y_test = train_test_split(X, y, random_state=0)
    mlflow_pmlearn.autolog(registered_model_name=MODEL_NAME, log_plots=False)
    with mlflow.start_run() as run:
        fitted = pipeline(args.draws).fit(X_train, y_train)
        mlflow.log_metric("test_r2", fitted.score(X_test, y_test))
    client = MlflowClient()
    (registered,) = client.search_model_versions(f"name='{MODEL_NAME}' and run_id='{run.info.run_id}'")
    client.set_registered_model_alias(MODEL_NAME, "champion", registered.version)
    print(f"run {run.info.run_id}: registered {MODEL_NAME} version {registered.version} (alias 'champion')")

    served = mlflow.pyfunc.load_model(f"models:/{MODEL_NAME}@champion")
    rows = X_test.head(5)
    predictions = served.predict(rows, params={"return_std": True, "interval_prob": 0.9})
    print("Raw rows, and posterior predictions (mean, std, 90% interval) from the registered pipeline:")
    print(pd.concat([rows.reset_index(drop=True), predictions.round(2)], axis=1).to_string(index=False))


if __name__ == "__main__":
    main()
