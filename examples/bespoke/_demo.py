"""The gallery's demo: fit a bespoke model, log it to MLflow with its code, load it back through pyfunc."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import pandas as pd

import mlflow_pmlearn

#: The gallery module every model imports, shipped with each model beside its own file.
SHARED_CODE = Path(__file__).with_name("_linear_predictor.py")


def run_demo(
    model: Any, X: pd.DataFrame, y: pd.Series, model_file: str, variables: list[str], params: dict | None = None
) -> None:
    """Fit ``model``, print its posterior means, log it and print the reloaded model's predictions.

    It logs to ``MLFLOW_TRACKING_URI``, or to ``sqlite:///mlflow.db`` when that is unset,
    in the experiment ``pmlearn-bespoke-<module>``. The model's module must be imported by
    its own name, not run as ``__main__``: the saved model then names
    ``<module>.<Class>``, which the shipped copy of ``model_file`` provides wherever the
    model is loaded.

    Parameters
    ----------
    model : estimator
        The unfitted bespoke model.
    X, y : DataFrame, Series
        Training data.
    model_file : str
        The file that defines the model's class (``__file__`` there).
    variables : list of str
        Model variables whose posterior means are printed.
    params : dict, optional
        Prediction params of the reloaded model; by default the 90% interval and the
        5%, 50% and 95% quantiles.
    """
    mlflow.set_tracking_uri(os.environ.get("MLFLOW_TRACKING_URI", "sqlite:///mlflow.db"))
    mlflow.set_experiment(f"pmlearn-bespoke-{Path(model_file).stem.replace('_', '-')}")
    model.fit(X, y)
    for name in variables:
        print(f"{name} = {np.round(model.posterior_mean(name), 3)}")
    with mlflow.start_run():
        mlflow.log_params({k: v for k, v in model.get_params().items() if v is not None})
        info = mlflow_pmlearn.log_model(
            model, name="model", code_paths=[model_file, str(SHARED_CODE)], input_example=X.head(3)
        )
    print(f"logged {info.model_uri}")
    served = mlflow.pyfunc.load_model(info.model_uri)
    params = {"interval_prob": 0.9, "quantiles": [0.05, 0.5, 0.95]} if params is None else params
    new_rows = X.head(5).reset_index(drop=True)
    frame = served.predict(new_rows, params=params)
    print(pd.concat([new_rows, frame], axis=1).round(3).to_string(index=False))
