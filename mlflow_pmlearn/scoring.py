"""Proper scores of a predictive distribution and their plots, shared by autolog, the evaluator and promotion.

Scores of held-out data: for regressors the log predictive density (``log_score``), CRPS
and the coverage of central intervals; for classifiers the log loss, the Brier score, the
accuracy and the expected calibration error. Plots are PNG bytes drawn off-screen (no
pyplot state): the calibration plots of the evaluator here, and the figure helpers that
autolog's plots use.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from typing import Any

import numpy as np
import xarray as xr
from mlflow.exceptions import MlflowException
from sklearn.metrics import accuracy_score, log_loss

from estimators.base import BayesianEstimator
from mlflow_pmlearn.pipelines import split_pipeline

#: Probabilities of the central intervals whose coverage is reported for held-out data.
COVERAGE_PROBS = (0.5, 0.9, 0.95)
#: Bins of the PIT histogram, and of confidence in the expected calibration error.
PIT_BINS = ECE_BINS = 10


# -- the estimator a model ends in ----------------------------------------------------------


def bayesian_step(model: Any, X: Any = None) -> tuple[BayesianEstimator, Any]:
    """The pmlearn estimator a loaded model ends in, and ``X`` as the steps before it transform it.

    Raises
    ------
    MlflowException
        When ``model`` neither is nor ends in a pmlearn estimator.
    """
    preprocessing, estimator = split_pipeline(model)
    if estimator is None:
        raise MlflowException.invalid_parameter_value(f"Not a pmlearn model: {type(model).__name__}.")
    return estimator, X if preprocessing is None or X is None else preprocessing.transform(X)


# -- scores -----------------------------------------------------------------------------------


def inside_central_interval(samples: np.ndarray, target: np.ndarray, prob: float) -> np.ndarray:
    """Whether each target lies in the central ``prob`` interval of its column of draws.

    The same verdict as comparing with ``np.quantile(samples, [tail, 1 - tail], axis=0)``
    (as ``predict_interval`` does), without sorting every column: a bound interpolates
    between two neighbouring order statistics, so counting the draws below a target decides
    every column but the few where the target falls between those two; only those are sorted.
    """
    tail = (1.0 - prob) / 2.0
    low, high = np.floor((len(samples) - 1) * np.array([tail, 1.0 - tail])).astype(int)
    strictly_below = (samples < target).sum(axis=0)
    at_or_below = (samples <= target).sum(axis=0)
    above_lower = strictly_below >= low + 2  # beyond the upper neighbour of the lower bound
    below_upper = at_or_below <= high  # short of the lower neighbour of the upper bound
    undecided = ~((above_lower | (at_or_below <= low)) & (below_upper | (strictly_below >= high + 2)))
    inside = above_lower & below_upper
    if undecided.any():
        lower, upper = np.quantile(samples[:, undecided], [tail, 1.0 - tail], axis=0)
        inside[undecided] = (lower <= target[undecided]) & (target[undecided] <= upper)
    return inside


def crps(samples: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Continuous ranked probability score of each target under its predictive samples.

    Parameters
    ----------
    samples : ndarray of shape (n_draws, n_samples)
    y : ndarray of shape (n_samples,)

    Returns
    -------
    ndarray of shape (n_samples,)
        ``E|Y - y| - E|Y - Y'| / 2``, lower is better.
    """
    n_draws = samples.shape[0]
    ordered = np.sort(samples, axis=0)
    to_target = np.abs(samples - y).mean(axis=0)
    # Sum over pairs |x_i - x_j| of sorted draws is 2 * sum_i (2i - n - 1) x_(i).
    weights = 2 * np.arange(1, n_draws + 1) - n_draws - 1
    spread = 2 * (weights[:, None] * ordered).sum(axis=0) / n_draws**2
    return to_target - spread / 2


def regression_scores(samples: np.ndarray, log_density: np.ndarray, y: np.ndarray) -> dict[str, float]:
    """``log_score`` (mean log predictive density), ``crps`` and the central intervals' coverage.

    Parameters
    ----------
    samples : ndarray of shape (n_draws, n_samples)
        One posterior predictive draw per posterior draw and row.
    log_density : ndarray of shape (n_samples,)
        Log posterior predictive density of each target.
    y : ndarray of shape (n_samples,)
    """
    scores = {"log_score": float(log_density.mean()), "crps": float(crps(samples, y).mean())}
    for prob in COVERAGE_PROBS:
        scores[f"coverage_{round(100 * prob)}"] = float(np.mean(inside_central_interval(samples, y, prob)))
    return scores


def probability_scores(classes: np.ndarray, proba: np.ndarray, y: Any) -> dict[str, float]:
    """``log_loss``, ``brier_score`` (summed over classes, averaged over rows), ``accuracy``
    and ``ece`` of class probabilities ``proba`` (columns in the order of ``classes``)."""
    labels = np.asarray(y)
    one_hot = (labels[:, None] == classes[None, :]).astype(float)
    return {
        "log_loss": float(log_loss(labels, proba, labels=classes)),
        "brier_score": float(np.mean(np.sum((proba - one_hot) ** 2, axis=1))),
        "accuracy": float(accuracy_score(labels, classes[np.argmax(proba, axis=1)])),
        "ece": expected_calibration_error(*top_label(classes, proba, labels)),
    }


def top_label(classes: np.ndarray, proba: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The probability of each row's most probable class, and whether that class is its label."""
    return proba.max(axis=1), classes[np.argmax(proba, axis=1)] == labels


def confidence_bins(confidence: np.ndarray, correct: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per occupied bin of ``ECE_BINS`` equal-width confidence bins of [0, 1]: its share of the
    rows, their mean confidence and their accuracy."""
    bins = np.minimum((confidence * ECE_BINS).astype(int), ECE_BINS - 1)
    occupied = np.unique(bins)
    share = np.array([np.mean(bins == b) for b in occupied])
    return (
        share,
        np.array([confidence[bins == b].mean() for b in occupied]),
        np.array([correct[bins == b].mean() for b in occupied]),
    )


def expected_calibration_error(confidence: np.ndarray, correct: np.ndarray) -> float:
    """``sum_b n_b / n * |accuracy_b - confidence_b|`` over the confidence bins."""
    share, mean_confidence, accuracy = confidence_bins(confidence, correct)
    return float(np.sum(share * np.abs(accuracy - mean_confidence)))


# -- figures ----------------------------------------------------------------------------------


def png(figure) -> bytes:
    """The figure as PNG bytes."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=100, bbox_inches="tight")
    return buffer.getvalue()


def arviz_png(plot: Callable, idata: xr.DataTree, title: str | None = None, **kwargs) -> bytes:
    """PNG of an ``arviz_plots`` plot, drawn with matplotlib; its figure is then closed
    (``arviz_plots`` creates figures through pyplot, which would otherwise keep them)."""
    from matplotlib import pyplot

    collection = plot(idata, backend="matplotlib", **kwargs)
    if title is not None:
        collection.add_title(title)
    drawn = collection.viz["figure"].item()
    try:
        return png(drawn)
    finally:
        pyplot.close(drawn)


def figure(*, width: float = 8.0, height: float = 3.0, panels: int = 1):
    """A figure of ``panels`` side by side, drawn off-screen (no pyplot state, no window), and its axes."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    drawn = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(drawn)
    return drawn, drawn.subplots(1, panels)


def pit_histogram(pit: np.ndarray) -> bytes:
    """Histogram of the probability integral transforms, against the uniform of a calibrated model."""
    drawn, ax = figure(width=6, height=4)
    ax.hist(pit, bins=PIT_BINS, range=(0, 1), density=True, color="C0", alpha=0.7, label="observed")
    ax.axhline(1.0, color="k", lw=1, label="calibrated (uniform)")
    ax.set(xlabel="PIT: predictive CDF at the target", ylabel="density", title="PIT histogram")
    ax.legend()
    return png(drawn)


def _against_diagonal(expected: np.ndarray, observed: np.ndarray, xlabel: str, ylabel: str, title: str) -> bytes:
    """Observed against expected frequencies, with the diagonal of perfect calibration."""
    drawn, ax = figure(width=5, height=5)
    ax.plot([0, 1], [0, 1], color="k", lw=1, label="calibrated")
    ax.plot(expected, observed, "o-", color="C0", label="observed")
    ax.set(xlabel=xlabel, ylabel=ylabel, title=title, xlim=(0, 1), ylim=(0, 1))
    ax.legend()
    return png(drawn)


def calibration_plot(samples: np.ndarray, y: np.ndarray) -> bytes:
    """The share of targets inside each central interval of the predictive draws, against its probability."""
    nominal = np.linspace(0.05, 0.95, 19)
    observed = [np.mean(inside_central_interval(samples, y, prob)) for prob in nominal]
    return _against_diagonal(
        nominal,
        observed,
        "central interval probability",
        "share of targets inside",
        "calibration of the predictive intervals",
    )


def reliability_diagram(confidence: np.ndarray, correct: np.ndarray) -> bytes:
    """Accuracy against confidence of the predicted class, per confidence bin."""
    _, mean_confidence, accuracy = confidence_bins(confidence, correct)
    return _against_diagonal(
        mean_confidence,
        accuracy,
        "probability of the predicted class",
        "share predicted correctly",
        "reliability diagram",
    )


# -- held-out scores of each kind ---------------------------------------------------------------


def _held_out_regressor(
    estimator: BayesianEstimator, X: Any, y: Any, plots: bool
) -> tuple[dict[str, float], dict[str, bytes]]:
    target = np.asarray(y, dtype=np.float64).ravel()
    samples = estimator.sample_posterior_predictive(X)
    scores = regression_scores(samples, estimator.log_predictive_density(X, target), target)
    if not plots:
        return scores, {}
    pit = (samples < target).mean(axis=0)
    return scores, {"pit_histogram.png": pit_histogram(pit), "calibration.png": calibration_plot(samples, target)}


def _held_out_classifier(
    estimator: BayesianEstimator, X: Any, y: Any, plots: bool
) -> tuple[dict[str, float], dict[str, bytes]]:
    proba = estimator.predict_proba(X)
    scores = probability_scores(estimator.classes_, proba, y)
    if not plots:
        return scores, {}
    diagram = reliability_diagram(*top_label(estimator.classes_, proba, np.asarray(y)))
    return scores, {"reliability_diagram.png": diagram}


#: The held-out scores of each kind of estimator, by scikit-learn's ``estimator_type`` tag.
_HELD_OUT_SCORES = {"regressor": _held_out_regressor, "classifier": _held_out_classifier}


#: The kinds of estimator that :func:`held_out_scores` scores.
SCORED_KINDS = tuple(_HELD_OUT_SCORES)


def held_out_scores(
    estimator: BayesianEstimator, X: Any, y: Any, *, plots: bool = False
) -> tuple[dict[str, float], dict[str, bytes]]:
    """Proper scores of ``estimator``'s predictive distribution on held-out ``X, y``, and their plots.

    Parameters
    ----------
    estimator : BayesianEstimator
        Fitted; a regressor or a classifier.
    X, y
        Held-out rows, as the estimator takes them, and their targets.
    plots : bool, default=False
        Also draw the calibration plots (regressors: ``pit_histogram.png``,
        ``calibration.png``; classifiers: ``reliability_diagram.png``).

    Returns
    -------
    scores : dict
        Regressors: :func:`regression_scores`; classifiers: :func:`probability_scores`.
    plots : dict
        PNG bytes by file name; empty without ``plots``.

    Raises
    ------
    MlflowException
        For another kind (a density model has no target to score).
    """
    kind = estimator.__sklearn_tags__().estimator_type
    if kind not in _HELD_OUT_SCORES:
        raise MlflowException.invalid_parameter_value(
            f"{type(estimator).__name__} is a {kind}; held-out scores are for regressors and classifiers."
        )
    return _HELD_OUT_SCORES[kind](estimator, X, y, plots)
