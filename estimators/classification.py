"""The classifier kind: posterior mean class probabilities, labels and jointly drawn labels."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pytensor.tensor as pt
from sklearn.base import ClassifierMixin
from sklearn.utils.validation import column_or_1d

from estimators.base import BayesianEstimator, feature_rows, observed_target, probability_frame, with_draw_columns
from estimators.predictive import select_rows
from estimators.scoring import probability_scores
from estimators.validation import check_draw_count, check_finite_predictions, class_labels


def sampled_classes(proba: np.ndarray, uniforms: np.ndarray) -> np.ndarray:
    """Class indices drawn by inverting each row's CDF (``proba``: draws x rows x classes) at
    ``uniforms`` (draws x rows, or draws x 1)."""
    index = (np.cumsum(proba, axis=-1) < uniforms[..., None]).sum(axis=-1)
    return np.minimum(index, proba.shape[-1] - 1)


class BayesianClassifier(ClassifierMixin, BayesianEstimator):
    """Base of the Bayesian classifiers: posterior mean class probabilities.

    Subclass it, store the hyper-parameters in ``__init__`` and write
    :meth:`~estimators.base.BayesianEstimator.build_model`, whose likelihood must be
    ``pm.Bernoulli`` (two classes) or ``pm.Categorical`` over the class indices ``0..K-1``
    that ``y`` holds. The model's coordinates (:meth:`model_coords`) add ``"class"``: the
    labels.

    :meth:`predict_frame` gives ``prediction`` (the label) and ``proba_<class>`` per class,
    and ``draw_0`` ... ``draw_{k-1}`` with ``draws=k``: labels sampled jointly
    (:meth:`joint_predictive_draws`).
    """

    fitted_state_attributes = ("n_features_in_", "feature_names_in_", "classes_")
    prediction_params = {"draws": 0}
    all_columns_params = {}
    optional_columns = ()
    target_type = "categorical"

    def _target(self, y: Any) -> tuple[np.ndarray, dict[str, Any]]:
        classes, codes = class_labels(self, y)
        return codes, {"classes_": classes}

    def _observed_target(self, y: Any) -> np.ndarray:
        """Labels as indices into ``classes_``; a label not seen in fit is an error naming its row."""
        if y is None:
            raise ValueError(f"{type(self).__name__} requires y to be passed, but the target y is None.")
        labels = column_or_1d(y, warn=True)
        codes = pd.Index(self.classes_).get_indexer(labels)
        if (unseen := np.flatnonzero(codes < 0)).size:
            raise ValueError(
                f"y has the label {labels[unseen[:1]].tolist()[0]!r} at row {int(unseen[0])}, not one of the classes "
                f"seen in fit: {self.classes_.tolist()}."
            )
        return codes.astype(np.int64)

    def _training_target(self) -> np.ndarray:
        return observed_target(self.idata_)

    def decode_target(self, values: np.ndarray) -> np.ndarray:
        """Targets as the model observes them (class indices), in the user's terms: the labels."""
        return self.classes_[np.asarray(values)]

    def model_coords(self) -> dict[str, list]:
        return {**super().model_coords(), "class": self.classes_.tolist()}

    def _compile_predictor(self, model, posterior, seed):
        return self._outputs_predictor(model, posterior, seed, lambda inputs: self._class_probabilities(model, inputs))

    def _class_probabilities(self, model, inputs) -> list[pt.TensorVariable]:
        """Each new row's class probabilities under one posterior draw (rows x classes)."""
        distribution = self.predictive_distribution(model, inputs)
        op_name = distribution.owner.op.name
        (p,) = distribution.owner.op.dist_params(distribution.owner)
        if op_name == "bernoulli":
            return [pt.stack([1.0 - p, p], axis=-1)]
        if op_name == "categorical":
            return [p]
        raise TypeError(
            f"A classifier's likelihood must be Bernoulli or Categorical; {type(self).__name__} uses {op_name}."
        )

    def predict_proba(self, X: Any) -> np.ndarray:
        """Posterior mean class probabilities.

        Parameters
        ----------
        X : array-like or DataFrame of shape (n_samples, n_features)

        Returns
        -------
        ndarray of shape (n_samples, n_classes)
            Columns in the order of ``classes_``.
        """
        inputs = self._inputs(X)
        summary = self.posterior_predictor().map_rows(
            inputs, lambda outputs: {"proba": outputs[0].mean(axis=0)}, width=len(self.classes_)
        )
        check_finite_predictions(summary, inputs)
        return summary["proba"]

    def predict_frame(self, X: Any, *, draws: int = 0) -> pd.DataFrame:
        joint = self.joint_predictive_draws(X, draws) if draws != 0 else None
        frame = probability_frame(self.classes_, self.predict_proba(X))
        return frame if joint is None else with_draw_columns(frame, joint)

    def joint_predictive_draws(self, X: Any, n_draws: int) -> np.ndarray:
        """Labels drawn jointly: draw ``j`` of every row from the same posterior draw.

        As for regressors: the posterior draws are the first ``n_draws`` of a seeded
        shuffle, each row's label is drawn independently of the other rows', and the same
        rows give the same labels at every call, so counts over rows are draws of the count.

        Parameters
        ----------
        X : array-like or DataFrame of shape (n_samples, n_features)
        n_draws : int
            How many joint draws, from 1 to :attr:`n_posterior_draws_`.

        Returns
        -------
        ndarray of shape (n_draws, n_samples)
            Class labels.
        """
        check_draw_count(n_draws, self.n_posterior_draws_)
        inputs = self._inputs(X)
        predictor = self.posterior_predictor()
        n_rows = len(next(iter(inputs.values())))
        draws, uniforms = predictor.joint_draw_indices(n_draws), predictor.joint_uniforms(n_rows, n_draws)
        codes = []
        for rows in predictor.row_chunks(n_rows, width=len(self.classes_), n_draws=n_draws):
            (proba,) = predictor.evaluate(select_rows(inputs, rows), draws=draws)
            codes.append(sampled_classes(proba, uniforms[:, rows]))
        return self.classes_[np.concatenate(codes, axis=1)]

    def predict(self, X: Any) -> np.ndarray:
        """Most probable class under the posterior mean probabilities.

        Parameters
        ----------
        X : array-like or DataFrame of shape (n_samples, n_features)

        Returns
        -------
        ndarray of shape (n_samples,)
        """
        proba = self.predict_proba(X)  # first: before fit, it raises NotFittedError
        return self.classes_[np.argmax(proba, axis=1)]

    def sample_posterior_predictive(self, X: Any) -> np.ndarray:
        """One label drawn from the likelihood per posterior draw and row.

        Parameters
        ----------
        X : array-like or DataFrame of shape (n_samples, n_features)

        Returns
        -------
        ndarray of shape (n_draws, n_samples)
            Class labels.
        """
        inputs = self._inputs(X)
        predictor = self.posterior_predictor()
        (proba,) = predictor(inputs)
        return self.classes_[sampled_classes(proba, predictor.uniforms[:, None])]

    # -- what the MLflow flavor logs ---------------------------------------------------

    def proper_scores(self, X: Any, y: Any) -> dict[str, float]:
        """Proper scores of the posterior mean class probabilities on held-out rows.

        Parameters
        ----------
        X : array-like or DataFrame of shape (n_samples, n_features)
        y : array-like of shape (n_samples,)
            Class labels.

        Returns
        -------
        dict
            ``log_loss``, ``brier_score``, ``ece`` (lower is better) and ``accuracy``:
            :func:`estimators.scoring.probability_scores`.
        """
        return probability_scores(self.classes_, self.predict_proba(X), y)

    def predictive_check(
        self, X: Any, y: Any, *, shown_rows: np.ndarray, n_shown_draws: int, coverage_prob: float
    ) -> dict[str, Any]:
        """The posterior predictive against observed rows (the training data).

        Parameters are those of :meth:`BayesianRegressor.predictive_check
        <estimators.regression.BayesianRegressor.predictive_check>` (``coverage_prob`` is
        unused: labels have no intervals).

        Returns
        -------
        dict
            ``score`` (the accuracy), ``observed`` (the shown rows' labels) and ``draws``
            (``n_shown_draws`` x shown rows of labels drawn from the posterior predictive).
        """
        target = np.asarray(y).ravel()
        draws = self.sample_posterior_predictive(feature_rows(X, shown_rows))[:n_shown_draws]
        return {"score": float(self.score(X, y)), "observed": target[shown_rows], "draws": draws}
