"""The density kind: the log posterior predictive density of rows, and their mixture components."""

from __future__ import annotations

from abc import abstractmethod
from typing import Any

import numpy as np
import pandas as pd
import pymc as pm
import pytensor.tensor as pt
from sklearn.base import DensityMixin

from estimators.base import BayesianEstimator, probability_frame
from estimators.log_likelihood import log_mean_exp_over_draws
from estimators.predictive import PosteriorPredictor


class BayesianDensityEstimator(DensityMixin, BayesianEstimator):
    """Base of the Bayesian density estimators: components, responsibilities, log density.

    Subclasses take ``n_components``, observe ``X`` itself in
    :meth:`~estimators.base.BayesianEstimator.build_model` (``build_model(self, X)``, no
    ``y``) and implement :meth:`component_log_density`.

    :meth:`predict_frame` gives ``prediction`` (the most probable component),
    ``proba_<k>`` per component ``k`` (its posterior mean responsibility) and
    ``log_density`` (the log posterior predictive density of the row).
    """

    prediction_params = {}
    all_columns_params = {}
    optional_columns = ()
    target_type = None

    def _target(self, y: Any) -> tuple[None, dict[str, Any]]:
        return None, {}  # unsupervised: y is ignored, as in scikit-learn

    def _observed_target(self, y: Any) -> None:
        return None  # X is what the model observes

    def _training_target(self) -> None:
        return None

    @abstractmethod
    def component_log_density(self, model: pm.Model, inputs: dict) -> pt.TensorVariable:
        """``log weight_k + log p(x | component k)`` of each new row under one posterior draw.

        Parameters
        ----------
        model : pm.Model
            The fitted model.
        inputs : dict
            Each input container mapped to the symbolic new rows.

        Returns
        -------
        TensorVariable of shape (n_samples, n_components)
        """

    def _compile_predictor(self, model, posterior, seed):
        def log_density_and_responsibilities(inputs):
            joint = self.component_log_density(model, inputs)
            log_density = pt.logsumexp(joint, axis=-1)
            return [log_density, pt.exp(joint - log_density[..., None])]

        return self._outputs_predictor(model, posterior, seed, log_density_and_responsibilities)

    def _log_likelihood_predictor(self) -> tuple[PosteriorPredictor, int]:
        return self.posterior_predictor(), self.n_components

    def predict_summary(self, X: Any) -> dict[str, np.ndarray]:
        """Log posterior predictive density and posterior mean responsibilities of each row.

        Parameters
        ----------
        X : array-like or DataFrame of shape (n_samples, n_features)

        Returns
        -------
        dict
            ``log_density`` of shape (n_samples,): the log of the density averaged over the
            posterior draws; ``proba`` of shape (n_samples, n_components).
        """
        inputs = self._inputs(X)

        def summarize(outputs: list[np.ndarray]) -> dict[str, np.ndarray]:
            log_density, responsibilities = outputs
            return {
                "log_density": log_mean_exp_over_draws(log_density),
                "proba": responsibilities.mean(axis=0),
            }

        return self.posterior_predictor().map_rows(inputs, summarize, width=self.n_components)

    def score_samples(self, X: Any) -> np.ndarray:
        """Log posterior predictive density of each row.

        Parameters
        ----------
        X : array-like or DataFrame of shape (n_samples, n_features)

        Returns
        -------
        ndarray of shape (n_samples,)
        """
        return self.predict_summary(X)["log_density"]

    def score(self, X: Any, y: Any = None) -> float:
        """Mean log posterior predictive density per row, as scikit-learn's mixtures report.

        Parameters
        ----------
        X : array-like or DataFrame of shape (n_samples, n_features)
        y : ignored

        Returns
        -------
        float
        """
        return float(self.score_samples(X).mean())

    def predict_proba(self, X: Any) -> np.ndarray:
        """Posterior mean probability that each row belongs to each component.

        Parameters
        ----------
        X : array-like or DataFrame of shape (n_samples, n_features)

        Returns
        -------
        ndarray of shape (n_samples, n_components)
        """
        return self.predict_summary(X)["proba"]

    def predict_frame(self, X: Any) -> pd.DataFrame:
        summary = self.predict_summary(X)
        frame = probability_frame(np.arange(self.n_components), summary["proba"])
        frame["log_density"] = summary["log_density"]
        return frame

    def predict(self, X: Any) -> np.ndarray:
        """Most probable component of each row.

        Parameters
        ----------
        X : array-like or DataFrame of shape (n_samples, n_features)

        Returns
        -------
        ndarray of shape (n_samples,)
        """
        return np.argmax(self.predict_proba(X), axis=1)

    # -- what the MLflow flavor logs ---------------------------------------------------

    def proper_scores(self, X: Any, y: Any = None) -> dict[str, float]:
        """The log score of held-out rows: ``log_score``, their mean log posterior predictive density.

        Parameters
        ----------
        X : array-like or DataFrame of shape (n_samples, n_features)
        y : ignored
        """
        return {"log_score": self.score(X)}

    def predictive_check(
        self, X: Any, y: Any = None, *, shown_rows: np.ndarray, n_shown_draws: int, coverage_prob: float
    ) -> dict[str, Any]:
        """The posterior predictive against observed rows: ``score``, their mean log density
        (``y`` and the other parameters are unused: there is no target to draw)."""
        return {"score": self.score(X)}
