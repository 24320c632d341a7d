"""The ``python_function`` wrapper: a DataFrame in, a DataFrame of posterior summaries out."""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import pandas as pd
from mlflow.exceptions import MlflowException
from mlflow.types.schema import ParamSchema, ParamSpec
from sklearn.base import is_classifier

from estimators.base import BayesianDensityMixin, BayesianEstimator, check_flag

#: Environment variable: most rows one ``predict`` call accepts (0: no limit).
MAX_ROWS_VARIABLE = "MLFLOW_PMLEARN_MAX_ROWS"
DEFAULT_MAX_ROWS = 100_000


def params_schema(estimator: BayesianEstimator) -> ParamSchema | None:
    """The inference-time parameters the wrapper accepts, for the model signature."""
    if is_classifier(estimator) or isinstance(estimator, BayesianDensityMixin):
        return None
    return ParamSchema(
        [ParamSpec("return_std", "boolean", False), ParamSpec("interval_prob", "double", None)]
    )


class PmlearnModelWrapper:
    """pyfunc face of a fitted estimator.

    Regressors return ``prediction`` (posterior predictive mean), plus ``std`` with
    ``params={"return_std": True}`` and ``lower``/``upper`` with
    ``params={"interval_prob": p}``. Classifiers return ``prediction`` (the label) and one
    ``proba_<class>`` column per class. Density models (mixtures) return ``prediction``
    (the most probable component), one ``proba_<k>`` column per component ``k`` (its
    posterior mean responsibility) and ``log_density`` (the log posterior predictive
    density of the row).
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
            ``return_std`` (bool) and ``interval_prob`` (float in (0, 1)), for regressors.
        """
        params = params or {}
        n_rows = len(data)
        if self.max_rows and n_rows > self.max_rows:
            raise MlflowException.invalid_parameter_value(
                f"The request has {n_rows:,} rows; this model takes at most {self.max_rows:,} per "
                f"call. Send smaller batches, or raise the limit with {MAX_ROWS_VARIABLE} (0: none)."
            )
        try:
            if is_classifier(self.estimator):
                return self._classify(data)
            if isinstance(self.estimator, BayesianDensityMixin):
                return self._describe_density(data)
            return self._regress(data, **params)
        except (ValueError, TypeError) as error:
            raise MlflowException.invalid_parameter_value(str(error)) from error

    def _regress(self, data: Any, return_std: bool = False, interval_prob: float | None = None) -> pd.DataFrame:
        check_flag(return_std, "return_std")
        summary = self.estimator.predict_summary(data, interval_prob=interval_prob)
        frame = pd.DataFrame({"prediction": summary["mean"]})
        if return_std:
            frame["std"] = summary["std"]
        if interval_prob is not None:
            frame["lower"] = summary["lower"]
            frame["upper"] = summary["upper"]
        return frame

    def _classify(self, data: Any) -> pd.DataFrame:
        proba = self.estimator.predict_proba(data)
        classes = self.estimator.classes_
        frame = pd.DataFrame({"prediction": classes[np.argmax(proba, axis=1)]})
        for column, label in enumerate(classes):
            frame[f"proba_{label}"] = proba[:, column]
        return frame

    def _describe_density(self, data: Any) -> pd.DataFrame:
        summary = self.estimator.predict_summary(data)
        proba = summary["proba"]
        frame = pd.DataFrame({"prediction": np.argmax(proba, axis=1)})
        for component in range(proba.shape[1]):
            frame[f"proba_{component}"] = proba[:, component]
        frame["log_density"] = summary["log_density"]
        return frame
