"""The ``python_function`` wrapper: a DataFrame in, a DataFrame of posterior summaries out."""

from __future__ import annotations

import os
from typing import Any

import pandas as pd
from mlflow.exceptions import MlflowException
from mlflow.types.schema import ParamSchema, ParamSpec

from estimators.base import BayesianEstimator

#: Environment variable: most rows one ``predict`` call accepts (0: no limit).
MAX_ROWS_VARIABLE = "MLFLOW_PMLEARN_MAX_ROWS"
DEFAULT_MAX_ROWS = 100_000
#: MLflow's parameter type of each Python type a prediction parameter takes.
_PARAM_TYPES = {bool: "boolean", float: "double", int: "long", str: "string"}


def params_schema(estimator: BayesianEstimator) -> ParamSchema | None:
    """The inference-time parameters the wrapper accepts, as the estimator declares them.

    A parameter's type is that of the value that turns its columns on (or of its default);
    a list default (``quantiles``) makes an array of doubles.
    """
    if not estimator.prediction_params:
        return None
    specs = []
    for name, default in estimator.prediction_params.items():
        if isinstance(default, list):
            specs.append(ParamSpec(name, "double", default, shape=(-1,)))
        else:
            specs.append(ParamSpec(name, _PARAM_TYPES[type(estimator.all_columns_params[name])], default))
    return ParamSchema(specs)


class PmlearnModelWrapper:
    """pyfunc face of a fitted estimator: its ``predict_frame``, with a row limit and 4xx errors.

    The columns and params are those the estimator's kind declares: for regressors
    ``prediction``, plus ``std`` with ``params={"return_std": True}``, ``lower``/``upper``
    with ``params={"interval_prob": p}`` and ``quantile_0.05``, ... with
    ``params={"quantiles": [0.05, ...]}``; for classifiers ``prediction`` and
    ``proba_<class>``; for density models ``prediction``, ``proba_<k>`` and ``log_density``.
    """

    def __init__(self, estimator: BayesianEstimator):
        self.estimator = estimator
        self.max_rows = int(os.environ.get(MAX_ROWS_VARIABLE, DEFAULT_MAX_ROWS))
        # Compile the prediction function now, so that no request pays for it.
        estimator.posterior_predictor()

    def get_raw_model(self) -> BayesianEstimator:
        """The wrapped estimator."""
        return self.estimator

    def predict(self, data: Any, params: dict[str, Any] | None = None) -> pd.DataFrame:
        """Posterior predictions for the rows of ``data``.

        Parameters
        ----------
        data : DataFrame or array-like
            Rows with the training columns; at most ``MLFLOW_PMLEARN_MAX_ROWS`` (default
            100,000) per call.
        params : dict, optional
            The estimator's ``prediction_params`` (regressors: ``return_std``, a bool,
            ``interval_prob``, a float in (0, 1), and ``quantiles``, a list of levels in
            (0, 1) that adds a ``quantile_<level>`` column per level).
        """
        params = params or {}
        n_rows = len(data)
        if self.max_rows and n_rows > self.max_rows:
            raise MlflowException.invalid_parameter_value(
                f"The request has {n_rows:,} rows; this model takes at most {self.max_rows:,} per "
                f"call. Send smaller batches, or raise the limit with {MAX_ROWS_VARIABLE} (0: none)."
            )
        try:
            return self.estimator.predict_frame(data, **params)
        except (ValueError, TypeError) as error:
            raise MlflowException.invalid_parameter_value(str(error)) from error
