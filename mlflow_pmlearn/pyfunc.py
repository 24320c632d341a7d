"""The ``python_function`` wrapper: a DataFrame in, a DataFrame of posterior summaries out; its signature."""

from __future__ import annotations

import os
from typing import Any

import pandas as pd
from mlflow.exceptions import MlflowException
from mlflow.models import ModelSignature, infer_signature
from mlflow.types.schema import ColSpec, ParamSchema, ParamSpec, Schema
from sklearn.base import is_classifier
from sklearn.pipeline import Pipeline

from estimators.base import BayesianEstimator
from mlflow_pmlearn.pipelines import split_pipeline

#: Environment variable: most rows one ``predict`` call accepts (0: no limit).
MAX_ROWS_VARIABLE = "MLFLOW_PMLEARN_MAX_ROWS"
DEFAULT_MAX_ROWS = 100_000
#: MLflow's parameter type of each Python type a prediction parameter takes.
_PARAM_TYPES = {bool: "boolean", float: "double", int: "long", str: "string"}
#: The pyfunc parameter that adds a classifier's class probabilities, ``proba_<class>``, to its labels.
PROBA_PARAM = "predict_proba"


def probabilities_by_default(signature: ModelSignature | None) -> bool:
    """Whether a saved classifier's pyfunc answers its class probabilities unasked.

    Yes unless its signature declares :data:`PROBA_PARAM`: models saved before 0.3.0 (whose
    signatures do not) keep the output they had, and a model saved without a signature, which
    MLflow passes no params, answers everything it can.

    Parameters
    ----------
    signature : ModelSignature or None
        The signature in the model's ``MLmodel``.
    """
    params = signature.params.params if signature is not None and signature.params is not None else []
    return PROBA_PARAM not in {spec.name for spec in params}


def _probability_columns(estimator: BayesianEstimator) -> list[str]:
    """A classifier's ``proba_<class>`` columns; none for another kind."""
    return [f"proba_{label}" for label in estimator.classes_] if is_classifier(estimator) else []


def params_schema(estimator: BayesianEstimator, *, probabilities_param: bool = True) -> ParamSchema | None:
    """The inference-time parameters the wrapper accepts, as the estimator declares them.

    A parameter's type is that of the value that turns its columns on (or of its default,
    e.g. ``draws``'s 0); a list default (``quantiles``) makes an array of doubles. A
    classifier also takes :data:`PROBA_PARAM` (default False), unless ``probabilities_param``
    is False: the schema of a model that answers its probabilities unasked.
    """
    specs = [ParamSpec(PROBA_PARAM, "boolean", False)] if probabilities_param and is_classifier(estimator) else []
    for name, default in estimator.prediction_params.items():
        if isinstance(default, list):
            specs.append(ParamSpec(name, "double", default, shape=(-1,)))
        else:
            specs.append(ParamSpec(name, _PARAM_TYPES[type(estimator.all_columns_params.get(name, default))], default))
    return ParamSchema(specs) if specs else None


def model_signature(model: BayesianEstimator | Pipeline, model_input: Any) -> ModelSignature:
    """The pyfunc signature: inputs from ``model_input``, every output column, the params.

    Parameters
    ----------
    model : BayesianEstimator or Pipeline
        Fitted; a pipeline ends in a pmlearn estimator.
    model_input : DataFrame or ndarray
        A few rows of what the model takes (a pipeline's raw columns).
    """
    estimator = split_pipeline(model)[1]
    every_column = PmlearnModelWrapper(model, probabilities_by_default=True).predict(
        model_input, params=estimator.all_columns_params
    )
    signature = infer_signature(model_input, every_column)
    optional = {*estimator.optional_columns, *_probability_columns(estimator)}
    signature.outputs = Schema(
        [ColSpec(spec.type, spec.name, required=spec.name not in optional) for spec in signature.outputs.inputs]
    )
    signature.params = params_schema(estimator)
    return signature


class PmlearnModelWrapper:
    """pyfunc face of a fitted estimator: its ``predict_frame``, with a row limit and 4xx errors.

    For a pipeline, the rows go through its preprocessing first: pyfunc takes the raw columns.

    The columns and params are those the estimator's kind declares: for regressors
    ``prediction``, plus ``std`` with ``params={"return_std": True}``, ``lower``/``upper``
    with ``params={"interval_prob": p}`` and ``quantile_0.05``, ... with
    ``params={"quantiles": [0.05, ...]}``; for classifiers the labels, a Series named
    ``prediction`` (what MLflow's default classifier evaluator reads), and with
    ``params={"predict_proba": True}`` a frame of ``prediction`` and ``proba_<class>``;
    for both, joint draws ``draw_0`` ... with ``params={"draws": k}``; for density models
    ``prediction``, ``proba_<k>`` and ``log_density``.

    Parameters
    ----------
    model : BayesianEstimator or Pipeline
        Fitted; a pipeline ends in a pmlearn estimator.
    probabilities_by_default : bool, default=False
        A classifier answers its ``proba_<class>`` columns unless ``predict_proba=False`` is
        passed: how models saved before 0.3.0 answer (:func:`probabilities_by_default`).
    """

    def __init__(self, model: BayesianEstimator | Pipeline, *, probabilities_by_default: bool = False):
        self.model = model
        self.preprocessing, self.estimator = split_pipeline(model)
        self.probabilities_by_default = probabilities_by_default
        self.max_rows = int(os.environ.get(MAX_ROWS_VARIABLE, DEFAULT_MAX_ROWS))
        # Compile the prediction function now, so that no request pays for it.
        self.estimator.posterior_predictor()

    def get_raw_model(self) -> BayesianEstimator | Pipeline:
        """The wrapped estimator or pipeline."""
        return self.model

    def predict(self, data: Any, params: dict[str, Any] | None = None) -> pd.DataFrame | pd.Series:
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
            ``draw_{k-1}``; classifiers: ``predict_proba``, a bool that adds ``proba_<class>``).

        Returns
        -------
        DataFrame or Series
            The columns asked for; a classifier's labels alone are a Series named ``prediction``.
        """
        params = dict(params or {})
        with_probabilities = params.pop(PROBA_PARAM, self.probabilities_by_default)
        n_rows = len(data)
        if self.max_rows and n_rows > self.max_rows:
            raise MlflowException.invalid_parameter_value(
                f"The request has {n_rows:,} rows; this model takes at most {self.max_rows:,} per "
                f"call. Send smaller batches, or raise the limit with {MAX_ROWS_VARIABLE} (0: none)."
            )
        try:
            rows = data if self.preprocessing is None else self.preprocessing.transform(data)
            frame = self.estimator.predict_frame(rows, **params)
        except (ValueError, TypeError) as error:
            raise MlflowException.invalid_parameter_value(str(error)) from error
        if with_probabilities or not is_classifier(self.estimator):
            return frame
        frame = frame.drop(columns=_probability_columns(self.estimator))
        return frame["prediction"] if len(frame.columns) == 1 else frame
