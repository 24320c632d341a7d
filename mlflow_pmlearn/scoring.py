"""Held-out scores and their plots, shared by autolog, the evaluator and promotion.

The scores are the estimator kind's own (``proper_scores``, computed by
:mod:`estimators.scoring`); the calibration plots are chosen by the kind's form of target
(``target_type``). Plots are PNG bytes drawn off-screen (no pyplot state): the calibration
plots of the evaluator here, and the figure helpers that autolog's plots use.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from typing import Any

import numpy as np
import xarray as xr
from mlflow.exceptions import MlflowException

from estimators.base import BayesianEstimator
from estimators.scoring import confidence_bins, inside_central_interval, top_label
from mlflow_pmlearn.pipelines import split_pipeline

#: Bins of the PIT histogram.
PIT_BINS = 10
#: MLflow's model types whose held-out targets are scored (a density model has none).
SCORED_KINDS = ("regressor", "classifier")


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


# -- held-out scores ------------------------------------------------------------------------------


def _regression_plots(estimator: BayesianEstimator, X: Any, y: Any) -> dict[str, bytes]:
    """The PIT histogram and the intervals' calibration, from one predictive draw per posterior draw and row."""
    target = np.asarray(y, dtype=np.float64).ravel()
    samples = estimator.sample_posterior_predictive(X)
    pit = (samples < target).mean(axis=0)
    return {"pit_histogram.png": pit_histogram(pit), "calibration.png": calibration_plot(samples, target)}


def _classification_plots(estimator: BayesianEstimator, X: Any, y: Any) -> dict[str, bytes]:
    """The reliability diagram of the most probable class."""
    diagram = reliability_diagram(*top_label(estimator.classes_, estimator.predict_proba(X), np.asarray(y)))
    return {"reliability_diagram.png": diagram}


#: The calibration plots of each form of target, as the estimator's kind declares it (``target_type``).
_PLOTS = {"continuous": _regression_plots, "categorical": _classification_plots}


def held_out_scores(
    estimator: BayesianEstimator, X: Any, y: Any, *, plots: bool = False
) -> tuple[dict[str, float], dict[str, bytes]]:
    """Proper scores of ``estimator``'s predictive distribution on held-out ``X, y``, and their plots.

    Parameters
    ----------
    estimator : BayesianEstimator
        Fitted, of a kind with a target (a regressor or a classifier).
    X, y
        Held-out rows, as the estimator takes them, and their targets.
    plots : bool, default=False
        Also draw the calibration plots (regressors: ``pit_histogram.png``,
        ``calibration.png``; classifiers: ``reliability_diagram.png``).

    Returns
    -------
    scores : dict
        The kind's ``proper_scores``.
    plots : dict
        PNG bytes by file name; empty without ``plots``.

    Raises
    ------
    MlflowException
        For a kind with no target (a density model has none to score).
    """
    if estimator.target_type is None:
        kind = estimator.__sklearn_tags__().estimator_type
        raise MlflowException.invalid_parameter_value(
            f"{type(estimator).__name__} is a {kind}; held-out scores are for regressors and classifiers."
        )
    scores = estimator.proper_scores(X, y)
    return scores, (_PLOTS[estimator.target_type](estimator, X, y) if plots else {})
