"""Proper scores of predictive distributions against observed targets, in NumPy.

The kinds' ``proper_scores`` compute them from their predictions; the MLflow flavor logs
them (evaluation, promotion) and plots calibration from the same helpers.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.metrics import accuracy_score, log_loss

#: Probabilities of the central intervals whose coverage regressors report.
COVERAGE_PROBS = (0.5, 0.9, 0.95)
#: Equal-width confidence bins of the expected calibration error.
ECE_BINS = 10


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


def regression_scores(samples: np.ndarray, log_density: np.ndarray, y: np.ndarray) -> dict[str, float]:
    """``log_score`` (mean log predictive density), ``crps`` and the central intervals' coverage.

    Parameters
    ----------
    samples : ndarray of shape (n_draws, n_samples)
        One posterior predictive draw per posterior draw and row.
    log_density : ndarray of shape (n_samples,)
        Log posterior predictive density of each target.
    y : ndarray of shape (n_samples,)

    Returns
    -------
    dict
        ``log_score`` (higher is better), ``crps`` (lower is better) and ``coverage_<p>``
        for each probability of :data:`COVERAGE_PROBS` (the share of targets inside).
    """
    scores = {"log_score": float(log_density.mean()), "crps": float(crps(samples, y).mean())}
    for prob in COVERAGE_PROBS:
        scores[f"coverage_{round(100 * prob)}"] = float(np.mean(inside_central_interval(samples, y, prob)))
    return scores


def top_label(classes: np.ndarray, proba: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The probability of each row's most probable class, and whether that class is its label."""
    return proba.max(axis=1), classes[np.argmax(proba, axis=1)] == labels


def confidence_bins(confidence: np.ndarray, correct: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per occupied bin of :data:`ECE_BINS` equal-width confidence bins of [0, 1]: its share of
    the rows, their mean confidence and their accuracy."""
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


def probability_scores(classes: np.ndarray, proba: np.ndarray, y: Any) -> dict[str, float]:
    """``log_loss``, ``brier_score`` (summed over classes, averaged over rows), ``accuracy``
    and ``ece`` (expected calibration error of the most probable class) of class
    probabilities ``proba`` (columns in the order of ``classes``)."""
    labels = np.asarray(y)
    one_hot = (labels[:, None] == classes[None, :]).astype(float)
    return {
        "log_loss": float(log_loss(labels, proba, labels=classes)),
        "brier_score": float(np.mean(np.sum((proba - one_hot) ** 2, axis=1))),
        "accuracy": float(accuracy_score(labels, classes[np.argmax(proba, axis=1)])),
        "ece": expected_calibration_error(*top_label(classes, proba, labels)),
    }
