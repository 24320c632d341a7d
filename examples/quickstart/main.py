"""The main job: fit a Bayesian regression under autolog, register it, predict from the registry.

Run from the repository root after ``pip install .``::

    python examples/quickstart/main.py

It uses MLflow's tracking URI from ``MLFLOW_TRACKING_URI``, or the embedded default store
``sqlite:///mlflow.db`` in the current directory; ``mlflow ui --backend-store-uri
sqlite:///mlflow.db`` shows the run and the registered model afterwards.
"""

from __future__ import annotations

import os

import mlflow
from mlflow import MlflowClient
from sklearn.datasets import load_diabetes
from sklearn.model_selection import train_test_split

import mlflow_pmlearn
from estimators.linear_model import LinearRegression

MODEL_NAME = "diabetes-bayesian-regression"


def main() -> None:
    mlflow.set_tracking_uri(os.environ.get("MLFLOW_TRACKING_URI", "sqlite:///mlflow.db"))
    mlflow.set_experiment("pmlearn-quickstart")

    X, y = load_diabetes(return_X_y=True, as_frame=True)
    X_train, X_test, y_train, y_test = train_test_split(X, y, random_state=0)

    # autolog logs priors, the ELBO curve, the trace, plots, the data and the model, and
    # registers the model; the held-out score goes into the same run.
    mlflow_pmlearn.autolog(registered_model_name=MODEL_NAME)
    with mlflow.start_run() as run:
        # n_jobs=-1: the two NUTS chains at once where two CPUs are free (the same draws as in turn).
        model = LinearRegression(random_seed=0, n_jobs=-1).fit(X_train, y_train)
        mlflow.log_metric("test_r2", model.score(X_test, y_test))
    client = MlflowClient()
    (registered,) = client.search_model_versions(f"name='{MODEL_NAME}' and run_id='{run.info.run_id}'")
    version = registered.version
    client.set_registered_model_alias(MODEL_NAME, "champion", version)
    print(f"run {run.info.run_id}: registered {MODEL_NAME} version {version} (alias 'champion')")

    served = mlflow.pyfunc.load_model(f"models:/{MODEL_NAME}/{version}")
    predictions = served.predict(X_test.head(5), params={"return_std": True, "interval_prob": 0.94})
    predictions.insert(0, "actual", y_test.head(5).to_numpy())
    print("Posterior predictions (mean, std, 94% interval) from the registered model:")
    print(predictions.round(1).to_string(index=False))


if __name__ == "__main__":
    main()
