"""The ``python_function`` wrapper: a DataFrame in, a DataFrame of posterior summaries out; its signature."""

from __future__ import annotations

import os
from typing import Any

import pandas as pd
from mlflow.exceptions import MlflowException
from mlflow.models import ModelSignature, infer_signature
from mlflow.types.schema import ColSpec, ParamSchema, ParamSpec, Schema
from sklearn.pipeline import Pipeline

from estimators.base import BayesianEstimator
from mlflow_pmlearn.pipelines import final_estimator, with_final_step

#: Environment variable: most rows one ``predict`` call accepts (0: no limit).
MAX_ROWS_VARIABLE = "MLFLOW_PMLEARN_MAX_ROWS"
DEFAULT_MAX_ROWS = 100_000
#: MLflow's parameter type of each Python type a prediction parameter takes.
_PARAM_TYPES = {bool: "boolean", float: "double", int: "long", str: "string"}


def params_schema(estimator: BayesianEstimator) -> ParamSchema | None:
    """The inference-time parameters the wrapper accepts, as the estimator declares them.

    A parameter's type is that of the value that turns its columns on (or of its default,
    e.g. ``draws``'s 0); a list default (``quantiles``) makes an array of doubles.
    """
    if not estimator.prediction_params:
        return None
    specs = []
    for name, default in estimator.prediction_params.items():
        if isinstance(default, list):
            specs.append(ParamSpec(name, "double", default, shape=(-1,)))
        else:
            specs.append(ParamSpec(name, _PARAM_TYPES[type(estimator.all_columns_params.get(name, default))], default))
    return ParamSchema(specs)


def model_signature(model: BayesianEstimator | Pipeline, model_input: Any) -> ModelSignature:
    """The pyfunc signature: inputs from ``model_input``, every output column, the params.

    Parameters
    ----------
    model : BayesianEstimator or Pipeline
        Fitted; a pipeline ends in a pmlearn estimator.
    model_input : DataFrame or ndarray
        A few rows of what the model takes (a pipeline's raw columns).
    """
    estimator = final_estimator(model)[1]
    every_column = PmlearnModelWrapper(model).predict(model_input, params=estimator.all_columns_params)
    signature = infer_signature(model_input, every_column)
    signature.outputs = Schema(
        [
            ColSpec(spec.type, spec.name, required=spec.name not in estimator.optional_columns)
            for spec in signature.outputs.inputs
        ]
    )
    signature.params = params_schema(estimator)
    return signature


class PmlearnModelWrapper:
    """pyfunc face of a fitted estimator: its ``predict_frame``, with a row limit and 4xx errors.

    For a pipeline, the rows go through its preprocessing first: pyfunc takes the raw columns.

    The columns and params are those the estimator's kind declares: for regressors
    ``prediction``, plus ``std`` with ``params={"return_std": True}``, ``lower``/``upper``
    with ``params={"interval_prob": p}`` and ``quantile_0.05``, ... with
    ``params={"quantiles": [0.05, ...]}``; for classifiers ``prediction`` and
    ``proba_<class>``; for both, joint draws ``draw_0`` ... with ``params={"draws": k}``;
    for density models ``prediction``, ``proba_<k>`` and ``log_density``.
    """

    def __init__(self, model: BayesianEstimator | Pipeline):
        self.model = model
        self.estimator = final_estimator(model)[1]
        self.preprocessing = with_final_step(model, "passthrough") if model is not self.estimator else None
        self.max_rows = int(os.environ.get(MAX_ROWS_VARIABLE, DEFAULT_MAX_ROWS))
        # Compile the prediction function now, so that no request pays for it.
        self.estimator.posterior_predictor()

    def get_raw_model(self) -> BayesianEstimator | Pipeline:
        """The wrapped estimator or pipeline."""
        return self.model

    def predict(self, data: Any, params: dict[str, Any] | None = None) -> pd.DataFrame:
        """Posterior predictions for the rows of ``data``.

        Parameters
        ----------
        data : DataFrame or array-like
            Rows with the training columns (a pipeline's raw columns); at most ``MLFLOW_PMLEARN_MAX_ROWS`` (default
            100,000) per call.
        params : dict, optional
            The estimator's ``prediction_params`` (regressors: ``return_std``, a bool,
            ``interval_prob``, a float in (0, 1), and ``quantiles``, a list of levels in
            (0, 1) that adds a ``quantile_<level>`` column per level; regressors and
            classifiers: ``draws``, an int k that adds joint predictive draws ``draw_0`` ...
            ``draw_{k-1}``).
        """
        params = params or {}
        n_rows = len(data)
        if self.max_rows and n_rows > self.max_rows:
            raise MlflowException.invalid_parameter_value(
                f"The request has {n_rows:,} rows; this model takes at most {self.max_rows:,} per "
                f"call. Send smaller batches, or raise the limit with {MAX_ROWS_VARIABLE} (0: none)."
            )
        try:
            rows = data if self.preprocessing is None else self.preprocessing.transform(data)
            return self.estimator.predict_frame(rows, **params)
        except (ValueError, TypeError) as error:
            raise MlflowException.invalid_parameter_value(str(error)) from error
