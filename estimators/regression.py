"""The regressor kind: posterior predictive mean, spread, intervals, quantiles and joint draws of numbers."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
import pymc as pm
import pytensor.tensor as pt
from pytensor.tensor.random.op import RandomVariable
from sklearn.base import RegressorMixin
from sklearn.metrics import r2_score

from estimators.base import (
    DEFAULT_INTERVAL_PROB,
    BayesianEstimator,
    feature_rows,
    observed_target,
    quantile_column,
    with_draw_columns,
)
from estimators.likelihood_draws import likelihood_draw_predictor, predictive_mean_predictor
from estimators.log_likelihood import log_mean_exp_over_draws, map_log_likelihood
from estimators.scoring import inside_central_interval, regression_scores
from estimators.validation import (
    check_draw_count,
    check_finite_predictions,
    check_flag,
    check_probability,
    quantile_levels,
    regression_target,
)

#: Posterior predictive values held in memory at once by :meth:`BayesianRegressor.predictive_check`.
CHECK_CHUNK_VALUES = 4_000_000


class BayesianRegressor(RegressorMixin, BayesianEstimator):
    """Base of the Bayesian regressors: the posterior predictive of a numeric target.

    Subclass it, store the hyper-parameters in ``__init__`` and write
    :meth:`~estimators.base.BayesianEstimator.build_model` with any PyMC likelihood over
    ``y`` (continuous, discrete, censored, a mixture, ...).

    The predictive distribution at each row is represented by one draw per posterior
    draw (the likelihood's inverse CDF at a fixed stratified uniform), so a row's
    prediction does not depend on the other rows it is predicted with.

    With :attr:`closed_form_mean` True, the mean draws nothing where PyMC knows the
    likelihood's mean in closed form (Normal, Poisson, Binomial, Gamma, ...): it is that
    mean averaged over the posterior draws, exact given them. It is off by default, so
    that a model saved by an earlier release predicts exactly the mean it predicted then
    (the draws' mean, which differs by Monte Carlo error); formula models turn it on.

    :meth:`predict_frame` gives ``prediction`` (the posterior predictive mean), plus
    ``std`` with ``return_std=True``, ``lower``, ``upper`` with ``interval_prob=p``,
    one column per level with ``quantiles=[...]``, named by :func:`quantile_column`
    (``quantile_0.05``, ``quantile_0.5``, ...), and ``draw_0`` ... ``draw_{k-1}`` with
    ``draws=k``: joint predictive draws (:meth:`joint_predictive_draws`).
    """

    prediction_params = {"return_std": False, "interval_prob": None, "quantiles": [], "draws": 0}
    all_columns_params = {"return_std": True, "interval_prob": DEFAULT_INTERVAL_PROB}
    optional_columns = ("std", "lower", "upper")
    target_type = "continuous"
    #: Predict the mean from the likelihood's closed-form mean, drawing nothing (see above).
    closed_form_mean = False

    def _target(self, y: Any) -> tuple[np.ndarray, dict[str, Any]]:
        return regression_target(self, y), {}

    def _observed_target(self, y: Any) -> np.ndarray:
        return regression_target(self, y)

    def _training_target(self) -> np.ndarray:
        return observed_target(self.idata_)

    def decode_target(self, values: np.ndarray) -> np.ndarray:
        """Targets as the model observes them, in the user's terms: for a regressor, the same numbers."""
        return values

    def _compile_predictor(self, model, posterior, seed, build=likelihood_draw_predictor):
        """The predictor ``build`` makes of :meth:`predictive_distribution` (by default its draws)."""
        return build(
            model,
            posterior,
            list(self.input_names),
            lambda inputs: self.predictive_distribution(model, inputs),
            seed=seed,
        )

    def _exact_means(self, inputs: dict[str, np.ndarray]) -> np.ndarray | None:
        """The posterior predictive mean of each row from the likelihood's mean in closed form
        (:func:`~estimators.likelihood_draws.predictive_mean_predictor`); None where PyMC has none
        or :attr:`closed_form_mean` is off."""
        if not self.closed_form_mean:
            return None
        predictor = self._cached_predictor(
            "mean",
            lambda model, posterior, seed: self._compile_predictor(model, posterior, seed, predictive_mean_predictor),
        )
        if predictor is None:
            return None
        summary = predictor.map_rows(inputs, lambda outputs: {"mean": outputs[0].mean(axis=0)})
        check_finite_predictions(summary, inputs)
        return summary["mean"]

    def sample_posterior_predictive(self, X: Any) -> np.ndarray:
        """One posterior predictive draw per posterior draw and row.

        Parameters
        ----------
        X : array-like or DataFrame of shape (n_samples, n_features)

        Returns
        -------
        ndarray of shape (n_draws, n_samples)
        """
        inputs = self._inputs(X)
        (samples,) = self.posterior_predictor()(inputs)
        return samples

    def pointwise_log_cdf(self, X: Any, y: Any) -> np.ndarray:
        """Log CDF of each row's target under each posterior draw: ``log P(Y_i <= y_i | x_i, draw s)``.

        Parameters
        ----------
        X : array-like or DataFrame of shape (n_samples, n_features)
        y : array-like of shape (n_samples,)

        Returns
        -------
        ndarray of shape (n_draws, n_samples)
        """
        predictor = self._cached_predictor(
            "log_cdf", lambda model, posterior, seed: self._compile_log_likelihood(model, posterior, seed, pm.logcdf)
        )
        return map_log_likelihood(predictor, self._observations(X, y), np.transpose).T

    def likelihood_parameters(self, X: Any) -> tuple[str, list[np.ndarray]] | None:
        """The predictive distribution's name and parameters at each posterior draw and row.

        Parameters
        ----------
        X : array-like or DataFrame of shape (n_samples, n_features)

        Returns
        -------
        tuple or None
            The name PyMC gives the distribution (``"normal"``, ``"studentt"``, ...) and its
            parameters in PyMC's order, each of shape (n_draws, n_samples); None where the
            predictive distribution is not a plain PyMC distribution (a mixture, a censored
            or custom one).
        """
        model = self.pymc_model()
        probe = self.predictive_distribution(model, {model[name]: model[name].type() for name in self.input_names})
        if not isinstance(probe.owner.op, RandomVariable):
            return None

        def compile_parameters(model, posterior, seed):
            def parameters(inputs):
                distribution = self.predictive_distribution(model, inputs)
                params = distribution.owner.op.dist_params(distribution.owner)
                return [pt.broadcast_to(param, distribution.shape) for param in params]

            return self._outputs_predictor(model, posterior, seed, parameters)

        predictor = self._cached_predictor("likelihood_parameters", compile_parameters)
        return probe.owner.op.name, predictor(self._inputs(X))

    def log_predictive_density(self, X: Any, y: Any) -> np.ndarray:
        """Log posterior predictive density of each observed target: ``log mean_s p(y | x, draw s)``.

        The log score, a proper scoring rule: higher is better.

        Parameters
        ----------
        X : array-like or DataFrame of shape (n_samples, n_features)
        y : array-like of shape (n_samples,)

        Returns
        -------
        ndarray of shape (n_samples,)
        """
        return self._map_log_likelihood(self._observations(X, y), log_mean_exp_over_draws)

    def predict_summary(
        self, X: Any, *, interval_prob: float | None = None, quantiles: Sequence[float] = ()
    ) -> dict[str, np.ndarray]:
        """Posterior predictive mean, standard deviation and (optionally) interval and quantiles.

        Parameters
        ----------
        X : array-like or DataFrame of shape (n_samples, n_features)
        interval_prob : float, optional
            Probability mass of the central credible interval, in (0, 1).
        quantiles : sequence of float, optional
            Levels of predictive quantiles, each in (0, 1).

        Returns
        -------
        dict
            ``mean`` and ``std`` of shape (n_samples,); ``lower`` and ``upper`` when
            ``interval_prob`` is given; ``quantiles`` of shape (n_samples, n_levels) when
            levels are. Computed in row chunks, so memory stays bounded.
        """
        if interval_prob is not None:
            check_probability(interval_prob)
        levels = quantile_levels(quantiles)
        inputs = self._inputs(X)

        def summarize(outputs: list[np.ndarray]) -> dict[str, np.ndarray]:
            (samples,) = outputs
            summary = {"mean": samples.mean(axis=0), "std": samples.std(axis=0)}
            if interval_prob is not None:
                tail = (1.0 - interval_prob) / 2.0
                summary["lower"], summary["upper"] = np.quantile(samples, [tail, 1.0 - tail], axis=0)
            if levels:
                summary["quantiles"] = np.quantile(samples, levels, axis=0).T
            return summary

        summary = self.posterior_predictor().map_rows(inputs, summarize)
        check_finite_predictions(summary, inputs)
        if (means := self._exact_means(inputs)) is not None:
            summary["mean"] = means
        return summary

    def predict(self, X: Any, return_std: bool = False):
        """Posterior predictive mean (and standard deviation).

        Parameters
        ----------
        X : array-like or DataFrame of shape (n_samples, n_features)
        return_std : bool, default=False
            Also return the posterior predictive standard deviation.

        Returns
        -------
        y_mean : ndarray of shape (n_samples,)
        y_std : ndarray of shape (n_samples,)
            Only when ``return_std`` is True.
        """
        check_flag(return_std, "return_std")
        if not return_std and (means := self._exact_means(self._inputs(X))) is not None:
            return means  # no predictive draws needed
        summary = self.predict_summary(X)
        return (summary["mean"], summary["std"]) if return_std else summary["mean"]

    def predict_frame(
        self,
        X: Any,
        *,
        return_std: bool = False,
        interval_prob: float | None = None,
        quantiles: Sequence[float] = (),
        draws: int = 0,
    ) -> pd.DataFrame:
        check_flag(return_std, "return_std")
        joint = self.joint_predictive_draws(X, draws) if draws != 0 else None
        summary = self.predict_summary(X, interval_prob=interval_prob, quantiles=quantiles)
        frame = pd.DataFrame({"prediction": summary["mean"]})
        if return_std:
            frame["std"] = summary["std"]
        if interval_prob is not None:
            frame["lower"] = summary["lower"]
            frame["upper"] = summary["upper"]
        for column, level in enumerate(quantiles):  # levels checked by predict_summary
            frame[quantile_column(level)] = summary["quantiles"][:, column]
        return frame if joint is None else with_draw_columns(frame, joint)

    def joint_predictive_draws(self, X: Any, n_draws: int) -> np.ndarray:
        """Joint posterior predictive draws of the rows: sums over rows are draws of the total.

        Draw ``j`` of every row comes from the same posterior draw (the first ``n_draws`` of
        a shuffle seeded by the fit's seed), and each row's noise is drawn independently of
        the other rows'. The same rows give the same draws at every call (a row's draws
        depend on its position among the rows, not on the rows after it).

        Parameters
        ----------
        X : array-like or DataFrame of shape (n_samples, n_features)
        n_draws : int
            How many joint draws, from 1 to :attr:`n_posterior_draws_`.

        Returns
        -------
        ndarray of shape (n_draws, n_samples)

        Raises
        ------
        ValueError
            For ``n_draws`` out of range, or a model that gives no joint draws (``draws``
            is not among its :attr:`prediction_params`: a Gaussian process, whose
            predictive distribution treats each row alone).
        """
        check_draw_count(n_draws, self.n_posterior_draws_)
        if "draws" not in self.prediction_params:
            raise ValueError(
                f"{type(self).__name__} gives no joint draws: its predictive distribution is each row's alone "
                "(rows are not independent given a posterior draw), so sums over rows would be too narrow."
            )
        inputs = self._inputs(X)
        return self.posterior_predictor().joint_draws(inputs, n_draws)

    def predict_quantiles(self, X: Any, quantiles: Sequence[float]) -> np.ndarray:
        """Posterior predictive quantiles of each row.

        Parameters
        ----------
        X : array-like or DataFrame of shape (n_samples, n_features)
        quantiles : sequence of float
            Levels, each strictly between 0 and 1, e.g. ``[0.05, 0.5, 0.95]``.

        Returns
        -------
        ndarray of shape (n_samples, n_levels)
            Column ``j`` is the quantile at ``quantiles[j]``.
        """
        if not quantile_levels(quantiles):
            raise ValueError("quantiles is empty; give at least one level, e.g. [0.05, 0.5, 0.95].")
        return self.predict_summary(X, quantiles=quantiles)["quantiles"]

    def predict_interval(self, X: Any, prob: float = DEFAULT_INTERVAL_PROB) -> np.ndarray:
        """Central credible interval of the posterior predictive.

        Parameters
        ----------
        X : array-like or DataFrame of shape (n_samples, n_features)
        prob : float, default=0.94
            (:data:`DEFAULT_INTERVAL_PROB`)
            Probability mass inside the interval, in (0, 1).

        Returns
        -------
        ndarray of shape (n_samples, 2)
            Lower and upper bounds.
        """
        summary = self.predict_summary(X, interval_prob=prob)
        return np.column_stack([summary["lower"], summary["upper"]])

    # -- what the MLflow flavor logs ---------------------------------------------------

    def proper_scores(self, X: Any, y: Any) -> dict[str, float]:
        """Proper scores of the posterior predictive on held-out rows.

        Parameters
        ----------
        X : array-like or DataFrame of shape (n_samples, n_features)
        y : array-like of shape (n_samples,)

        Returns
        -------
        dict
            ``log_score`` (mean log predictive density, higher is better), ``crps`` (lower
            is better) and ``coverage_50``, ``coverage_90``, ``coverage_95`` (the share of
            targets inside the central intervals): :func:`estimators.scoring.regression_scores`.
        """
        target = np.asarray(y, dtype=np.float64).ravel()
        return regression_scores(self.sample_posterior_predictive(X), self.log_predictive_density(X, target), target)

    def predictive_check(
        self, X: Any, y: Any, *, shown_rows: np.ndarray, n_shown_draws: int, coverage_prob: float
    ) -> dict[str, Any]:
        """The posterior predictive against observed rows (the training data), in one pass over them.

        One posterior predictive draw per posterior draw and row is made, in chunks of rows:
        their mean is the prediction (so ``score`` is R^2 as :meth:`score` computes it) and
        their central interval is the one :meth:`predict_interval` gives.

        Parameters
        ----------
        X : array-like or DataFrame of shape (n_samples, n_features)
        y : array-like of shape (n_samples,)
        shown_rows : ndarray of int
            Sorted rows whose targets and draws are returned for a plot.
        n_shown_draws : int
            Draws returned per shown row.
        coverage_prob : float
            Probability of the central interval whose coverage is returned.

        Returns
        -------
        dict
            ``score``, ``coverage`` (the share of targets inside the central
            ``coverage_prob`` interval), ``observed`` (the shown rows' targets) and
            ``draws`` (``n_shown_draws`` x shown rows).
        """
        target = np.asarray(y).ravel()
        check = {"observed": target[shown_rows]}
        target = target.astype(np.float64)
        chunk = max(1, CHECK_CHUNK_VALUES // self.n_posterior_draws_)
        mean, inside, draws = np.empty(len(target)), np.empty(len(target), dtype=bool), []
        for start in range(0, len(target), chunk):
            rows = slice(start, start + chunk)
            samples = self.sample_posterior_predictive(feature_rows(X, rows))
            mean[rows] = samples.mean(axis=0)
            inside[rows] = inside_central_interval(samples, target[rows], coverage_prob)
            shown = shown_rows[(shown_rows >= start) & (shown_rows < start + chunk)] - start
            draws.append(samples[:n_shown_draws, shown])
        check["coverage"] = float(np.mean(inside))
        check["draws"] = np.concatenate(draws, axis=1)
        # R^2 of the posterior predictive mean is what RegressorMixin.score computes; an
        # estimator with its own score is asked directly.
        own_score = type(self).score is not RegressorMixin.score
        check["score"] = float(self.score(X, y)) if own_score else float(r2_score(target, mean))
        return check
