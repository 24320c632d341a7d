"""Scoring pmlearn models: proper scores, the ``pmlearn`` evaluator, and :func:`compare` by PSIS-LOO.

The evaluator is registered under MLflow's ``mlflow.model_evaluator`` entry point, so::

    mlflow.models.evaluate(model_uri, data, targets="y", model_type="regressor", evaluators=["pmlearn"])

logs the proper scores that the model's kind computes (its ``proper_scores``): for
regressors, ``crps``, ``log_score`` (the mean log predictive density, higher is better),
``coverage_50``, ``coverage_90`` and ``coverage_95`` (the share of targets inside the
central posterior predictive interval), with a PIT histogram and a calibration plot; for
classifiers ``log_loss``, ``brier_score``, ``accuracy`` and ``ece`` (expected calibration
error of the most probable class, in :data:`estimators.scoring.ECE_BINS` equal-width
confidence bins), with a reliability diagram
(:func:`mlflow_pmlearn.scoring.held_out_scores`).
"""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from pathlib import Path

import arviz_stats
import mlflow
import numpy as np
import pandas as pd
from arviz_stats.utils import ELPDData
from mlflow.exceptions import MlflowException
from mlflow.models.evaluation import EvaluationResult, ModelEvaluator
from mlflow.tracking import MlflowClient

from estimators.base import BayesianEstimator
from mlflow_pmlearn import load_model
from mlflow_pmlearn.autologging.loo import psis_loo
from mlflow_pmlearn.scoring import SCORED_KINDS, bayesian_step, held_out_scores

#: Artifact folder of the evaluator's plots.
PLOTS_PATH = "pmlearn_evaluation"
#: Artifact file of :func:`compare`'s table, logged inside an active run.
COMPARISON_FILE = "loo_compare.csv"


class PmlearnEvaluator(ModelEvaluator):
    """The ``pmlearn`` evaluator: proper scores and calibration of a pmlearn model's predictive distribution."""

    @classmethod
    def can_evaluate(cls, *, model_type, evaluator_config, **kwargs) -> bool:
        return model_type in SCORED_KINDS

    def evaluate(self, *, model_type, dataset, run_id, evaluator_config, model=None, **kwargs) -> EvaluationResult:
        """Score the model on ``dataset``; log the metrics and plots to the run ``run_id``."""
        from mlflow.models.evaluation.artifacts import ImageEvaluationArtifact  # imports pyplot: only here

        raw = model.get_raw_model() if model is not None and hasattr(model, "get_raw_model") else None
        if raw is None:
            raise MlflowException.invalid_parameter_value(
                "The pmlearn evaluator scores a pmlearn model's predictive distribution; pass the model "
                "(a pmlearn model URI or its loaded pyfunc), not predictions."
            )
        estimator, X = bayesian_step(raw, dataset.features_data)
        kind = estimator.__sklearn_tags__().estimator_type
        if kind != model_type:
            raise MlflowException.invalid_parameter_value(
                f"model_type={model_type!r}, but {type(estimator).__name__} is a {kind}."
            )
        metrics, plots = held_out_scores(estimator, X, np.asarray(dataset.labels_data), plots=True)
        mlflow.log_metrics(metrics, run_id=run_id, model_id=kwargs.get("model_id"))
        artifacts = {}
        with tempfile.TemporaryDirectory() as directory:
            for name, content in plots.items():
                (Path(directory) / name).write_bytes(content)
            MlflowClient().log_artifacts(run_id, directory, PLOTS_PATH)
        artifact_uri = mlflow.get_run(run_id).info.artifact_uri
        for name in plots:
            artifacts[Path(name).stem] = ImageEvaluationArtifact(uri=f"{artifact_uri}/{PLOTS_PATH}/{name}")
        return EvaluationResult(metrics, artifacts, run_id=run_id)


def loo_comparison(estimators: dict[str, BayesianEstimator], loos: dict[str, ELPDData] | None = None) -> pd.DataFrame:
    """ArviZ's comparison by PSIS-LOO of fitted estimators, indexed by their keys.

    Parameters
    ----------
    estimators : dict
        Name to fitted estimator.
    loos : dict, optional
        Name to the estimator's :func:`~mlflow_pmlearn.autologging.loo.psis_loo`, where
        already computed.

    Returns
    -------
    DataFrame
        Best first: ``rank``, ``elpd_loo``, ``p``, ``elpd_diff`` (to the best), ``dse`` (its
        standard error), ``weight`` (stacking), ``se``, ``p_worse``, ``diag_diff``, ``diag_elpd``.

    Raises
    ------
    MlflowException
        For fewer than two estimators, or estimators fitted on different observations (their
        LOO estimates are not comparable).
    """
    if len(estimators) < 2:
        raise MlflowException.invalid_parameter_value(f"Comparing takes at least two models; got {len(estimators)}.")
    (first, reference), *others = estimators.items()
    observed = reference.idata_.observed_data.to_dataset().to_array().values
    for key, estimator in others:
        values = estimator.idata_.observed_data.to_dataset().to_array().values
        if values.shape != observed.shape or not np.array_equal(values, observed):
            raise MlflowException.invalid_parameter_value(
                f"{key} and {first} were fitted on different observations; PSIS-LOO compares models "
                "fitted on the same data. Score them on the same held-out data instead."
            )
    loos = loos or {key: psis_loo(estimator) for key, estimator in estimators.items()}
    table = arviz_stats.compare(loos, round_to="none")
    return table.rename(columns={"elpd": "elpd_loo"})


def compare(model_uris: Sequence[str]) -> pd.DataFrame:
    """Compare logged or registered pmlearn models by PSIS-LOO on their (shared) training data.

    Inside an active run, the table is also logged as the artifact :data:`COMPARISON_FILE`.

    Parameters
    ----------
    model_uris : sequence of str
        At least two model URIs (``runs:/<id>/model``, ``models:/<name>/<version>``, ...) of
        models fitted on the same rows.

    Returns
    -------
    DataFrame
        ArviZ's comparison table (``arviz_stats.compare``), indexed by model URI, best first:
        ``elpd_loo``, ``elpd_diff`` (to the best model), ``dse`` (the standard error of that
        difference), ``weight`` (stacking weights), and ``rank``, ``p``, ``se``, ``p_worse``,
        ``diag_diff``, ``diag_elpd``.

    Examples
    --------
    >>> table = mlflow_pmlearn.compare(["models:/sales/1", "models:/sales/2"])  # doctest: +SKIP
    >>> table.loc[:, ["elpd_loo", "elpd_diff", "dse", "weight"]]  # doctest: +SKIP
    """
    estimators = {uri: bayesian_step(load_model(uri))[0] for uri in model_uris}
    table = loo_comparison(estimators)
    table.index.name = "model_uri"
    if mlflow.active_run() is not None:
        mlflow.log_text(table.to_csv(), COMPARISON_FILE)
    return table
