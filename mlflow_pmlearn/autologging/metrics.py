"""Metrics and diagnostics of a fit: each engine's own, posterior summary, checks on the training data."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import arviz_stats
import numpy as np
import pandas as pd
import xarray as xr
from mlflow.entities import Metric

from estimators.base import DEFAULT_INTERVAL_PROB, BayesianEstimator
from estimators.inference import final_loss

#: Most points of the ELBO curve logged as a metric history.
MAX_ELBO_POINTS = 1000
#: Interval whose training-data coverage regressors report.
COVERAGE_PROB = DEFAULT_INTERVAL_PROB
#: Training rows, and posterior draws of each, drawn in the posterior predictive check plot.
PPC_ROWS, PPC_DRAWS = 2000, 50


def elbo_metrics(idata: xr.DataTree, timestamp: int) -> list[Metric]:
    """The ELBO history as step-indexed metrics: at most ``MAX_ELBO_POINTS`` block means."""
    loss = idata.fit_history["loss"].values
    step = max(1, int(np.ceil(len(loss) / MAX_ELBO_POINTS)))
    iterations = np.arange(0, len(loss), step)
    # Mean of each thinned block, so the curve is smoother than single noisy iterations.
    elbo = -np.add.reduceat(loss, iterations) / np.diff(np.append(iterations, len(loss)))
    return [Metric("elbo", float(v), timestamp, int(i) + 1) for i, v in zip(iterations, elbo)]


def sampler_metrics(idata: xr.DataTree, summary: pd.DataFrame) -> dict[str, float]:
    """A NUTS sampler's diagnostics, read from its own ``sample_stats`` (whose names differ:
    nutpie's tree depth is ``depth``; BlackJAX keeps no step size, which is then not logged).

    The sampling time is in ``sample_stats``' attributes for PyMC's sampler and in the
    posterior's for the others.
    """
    stats = idata.sample_stats
    metrics = {
        "divergences": float(stats["diverging"].sum()),
        "r_hat_max": float(summary["r_hat"].max()),
        "ess_bulk_min": float(summary["ess_bulk"].min()),
        "ess_tail_min": float(summary["ess_tail"].min()),
    }
    depth = next((stats[name] for name in ("tree_depth", "depth") if name in stats), None)
    if depth is not None:
        metrics["mean_tree_depth"] = float(depth.mean())
    if "step_size" in stats:
        metrics["step_size"] = float(stats["step_size"].mean())
    sampling_time = float(stats.attrs.get("sampling_time", idata.posterior.attrs.get("sampling_time", np.nan)))
    if sampling_time > 0:
        metrics["sampling_time_s"] = sampling_time
        metrics["draws_per_second"] = stats.sizes["chain"] * stats.sizes["draw"] / sampling_time
    return metrics


def posterior_summary(idata: xr.DataTree) -> pd.DataFrame:
    """``arviz_stats.summary`` of the posterior: with the convergence diagnostics for MCMC draws.

    ADVI draws are independent draws from the approximation (one "chain"), for which
    R-hat and effective sample sizes say nothing; they get the statistics only. The
    interval is ArviZ's default (equal-tailed, 89%); values are not rounded.
    """
    kind = "all" if "sample_stats" in idata.children else "stats"
    return arviz_stats.summary(idata, kind=kind, round_to="none")


@dataclass
class PredictiveChecks:
    """The fitted model's posterior predictive against its own training data."""

    #: The estimator's ``score`` on the training data (R^2, accuracy or mean log density).
    score: float | None = None
    #: Regressors: share of training targets inside the central ``COVERAGE_PROB`` interval.
    coverage: float | None = None
    #: Training targets of the rows drawn in the check plot, and ``PPC_DRAWS`` draws of each.
    observed: np.ndarray | None = None
    draws: np.ndarray | None = None
    n_rows: int = 0
    #: The target's own name (a named ``y``, e.g. a DataFrame column), for the plot.
    target_name: str = "target"
    #: What drew ``draws``, as the plot names it (the prior checks' are the prior predictive).
    draws_from: str = "posterior predictive"


def plot_rows(n_rows: int) -> np.ndarray:
    """The (seeded, sorted) training rows drawn in the posterior predictive check plot."""
    if n_rows <= PPC_ROWS:
        return np.arange(n_rows)
    return np.sort(np.random.default_rng(0).choice(n_rows, PPC_ROWS, replace=False))


def predictive_checks(estimator: BayesianEstimator, X: Any, y: Any) -> PredictiveChecks:
    """The posterior predictive checks of ``estimator``'s kind on its training data ``X, y``.

    What the kind's ``predictive_check`` gives: regressors R^2, coverage of the central
    ``COVERAGE_PROB`` interval and draws for the check plot; classifiers accuracy and
    draws; density estimators the mean log density.
    """
    n_rows = len(X)
    check = estimator.predictive_check(
        X, y, shown_rows=plot_rows(n_rows), n_shown_draws=PPC_DRAWS, coverage_prob=COVERAGE_PROB
    )
    checks = PredictiveChecks(n_rows=n_rows, **check)
    if isinstance(getattr(y, "name", None), str):
        checks.target_name = y.name
    return checks


def fit_metrics(
    estimator: BayesianEstimator,
    fit_seconds: float,
    summary: pd.DataFrame | None = None,
    checks: PredictiveChecks | None = None,
) -> dict[str, float]:
    """The engine's diagnostics, the fit time, the training score and (regressors) coverage.

    ADVI (mean-field or full-rank): the final ELBO, iterations and convergence; NUTS (any
    sampler): :func:`sampler_metrics`; pathfinder and Laplace: their ``fit_diagnostics``.

    Parameters
    ----------
    estimator : BayesianEstimator
        The fitted estimator.
    fit_seconds : float
        Wall time of the fit.
    summary : DataFrame, optional
        :func:`posterior_summary` of ``estimator.idata_`` (computed when omitted).
    checks : PredictiveChecks, optional
        :func:`predictive_checks` on the training data (no score or coverage when omitted).
    """
    idata = estimator.idata_
    metrics: dict[str, float] = {"fit_time_s": fit_seconds}
    if "fit_history" in idata.children:
        loss = idata.fit_history["loss"].values
        metrics["elbo_final"] = -final_loss(loss)
        metrics["advi_iterations"] = float(len(loss))
        metrics["advi_converged"] = float(idata.fit_history.attrs.get("converged", 0))
    if "sample_stats" in idata.children:
        if summary is None:
            summary = posterior_summary(idata)
        metrics |= sampler_metrics(idata, summary)
    if "fit_diagnostics" in idata.children:
        metrics |= {name: float(value) for name, value in idata.fit_diagnostics.to_dataset().data_vars.items()}
    if checks is not None and checks.score is not None:
        metrics["training_score"] = checks.score
    if checks is not None and checks.coverage is not None:
        metrics[f"training_coverage_{round(100 * COVERAGE_PROB)}"] = checks.coverage
    return metrics
