"""MLflow's default classifier evaluator on pmlearn models: labels and class probabilities from the pyfunc frame.

``mlflow.models.evaluate(..., model_type="classifier")`` calls a pyfunc's ``predict`` and
takes its result as the predicted labels, one per row; it asks for class probabilities
(``predict_proba``, which log loss, ROC AUC and the curves need) only of the raw model of
the ``mlflow.sklearn``, ``mlflow.xgboost`` and ``mlflow.catboost`` flavors. A pmlearn
pyfunc answers with a frame, ``prediction`` and a ``proba_<class>`` column per class (the
order of ``classes_``, sorted as the evaluator sorts its labels): taken whole as labels,
it made the evaluator fail ("all the input arrays must have same number of dimensions").

:func:`support_default_evaluator` hands the evaluator, for pmlearn models only, the
``prediction`` column as the labels and the ``proba_*`` columns as the probabilities; the
frame itself, and every other model's evaluation, are unchanged. Regressors need nothing:
their default frame is the one ``prediction`` column.

It also skips MLflow's SHAP explainability step for pmlearn models: it re-predicts
perturbed rows many times over (each prediction runs over every posterior draw), and with
pandas 3 it fails on a string column before it checks whether SHAP is installed
("Cannot interpret '<StringDtype...>' as a data type"), which made a pipeline taking raw
string columns fail to evaluate.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd

from mlflow_pmlearn.versions import FLAVOR_NAME

_LOADER_MODULE = "mlflow_pmlearn"
_logger = logging.getLogger(__name__)


def _is_pmlearn(model: Any) -> bool:
    metadata = getattr(model, "metadata", None)
    flavors = getattr(metadata, "flavors", None) or {}
    return FLAVOR_NAME in flavors or flavors.get("python_function", {}).get("loader_module") == _LOADER_MODULE


def _labels_and_probabilities(model: Any) -> tuple[Callable[[Any], pd.Series], Callable[[Any], np.ndarray | None]]:
    """The evaluator's ``predict_fn`` and ``predict_proba_fn`` for a pmlearn pyfunc (each one ``predict``)."""

    def labels(data: Any) -> pd.Series:
        return model.predict(data)["prediction"]

    def probabilities(data: Any) -> np.ndarray | None:
        frame = model.predict(data)
        columns = [column for column in frame.columns if str(column).startswith("proba_")]
        return frame[columns].to_numpy() if columns else None

    return labels, probabilities


def support_default_evaluator() -> None:
    """Let MLflow's default evaluator read pmlearn pyfuncs' frames (idempotent).

    Wraps the classifier evaluator's ``_extract_predict_fn_and_predict_proba_fn`` (pmlearn
    models get :func:`_labels_and_probabilities`) and the SHAP evaluator's ``_evaluate``
    (skipped for pmlearn models); every other model gets what MLflow gives it.
    """
    try:  # private MLflow functions: a release without them must not stop the model from loading
        from mlflow.models.evaluation.evaluators import classifier, shap

        original = classifier._extract_predict_fn_and_predict_proba_fn
        explain = shap.ShapEvaluator._evaluate
    except (ImportError, AttributeError) as error:
        _logger.warning(
            "This MLflow release changed the default evaluator's internals (%s): mlflow.models.evaluate "
            "of a pmlearn classifier will not get class probabilities.",
            error,
        )
        return
    if getattr(original, "_reads_pmlearn_frames", False):
        return

    @functools.wraps(original)
    def extract(model: Any):
        return _labels_and_probabilities(model) if _is_pmlearn(model) else original(model)

    @functools.wraps(explain)
    def explain_others(self, model: Any, *args, **kwargs):
        if _is_pmlearn(model):
            _logger.info("Skipping model explainability (SHAP) for a pmlearn model.")
            return None
        return explain(self, model, *args, **kwargs)

    extract._reads_pmlearn_frames = True
    classifier._extract_predict_fn_and_predict_proba_fn = extract
    shap.ShapEvaluator._evaluate = explain_others
