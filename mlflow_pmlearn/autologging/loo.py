"""PSIS-LOO of a fit on its training rows: its metrics, its Pareto-k plot, and a warning where it is unreliable."""

from __future__ import annotations

import tempfile
import warnings
from collections.abc import Callable
from pathlib import Path

import arviz_plots
import arviz_stats
import mlflow
import numpy as np
import xarray as xr
from arviz_stats.utils import ELPDData

from estimators.base import BayesianEstimator
from mlflow_pmlearn.scoring import arviz_png

#: Pareto k above which a row's importance-sampling estimate is unreliable (Vehtari et al., 2024).
PARETO_K_THRESHOLD = 0.7
#: Share of rows with Pareto k above the threshold beyond which LOO as a whole is flagged unreliable.
MAX_BAD_K_SHARE = 0.01
#: Run tag holding why a fit's LOO is unreliable (or not computed); absent when it is fine.
LOO_WARNING_TAG = "pmlearn.loo_warning"
#: Training rows times posterior draws up to which autolog logs LOO by default: its cost
#: grows with both (ArviZ smooths each row's draws in Python: 3.2-4.9 s at 10,000 x 1,000),
#: and this much costs about half a second.
DEFAULT_LOO_MAX_VALUES = 2_000_000


def loo_by_default(estimator: BayesianEstimator) -> bool:
    """Whether autolog's default (``log_loo=None``) logs LOO for this fit: when its training
    rows times its posterior draws are at most :data:`DEFAULT_LOO_MAX_VALUES`."""
    training = next(iter(estimator.idata_.constant_data.data_vars.values()))
    return training.shape[0] * estimator.n_posterior_draws_ <= DEFAULT_LOO_MAX_VALUES


def psis_loo(estimator: BayesianEstimator, log_likelihood: Callable[[], xr.DataArray] | None = None) -> ELPDData:
    """``arviz_stats.loo`` of the estimator's training rows, pointwise (a Pareto k per row).

    Parameters
    ----------
    estimator : BayesianEstimator
        A fitted estimator; its log-likelihood comes from
        :meth:`~estimators.base.BayesianEstimator.training_log_likelihood`.
    log_likelihood : callable, optional
        What gives that log-likelihood instead (e.g. a cached one that the prior checks share).

    Returns
    -------
    ELPDData
        ``elpd``, ``se``, ``p``, and ``pareto_k`` and ``elpd_i`` per row.

    Raises
    ------
    ValueError
        For a model with no pointwise likelihood of its training rows (a marginal Gaussian process).
    """
    pointwise = (log_likelihood or estimator.training_log_likelihood)()
    data = xr.DataTree.from_dict(
        {"posterior": estimator.idata_.posterior.to_dataset(), "log_likelihood": pointwise.to_dataset()}
    )
    with warnings.catch_warnings():  # unreliability is judged (and said) by loo_warnings
        warnings.filterwarnings("ignore", message="Estimated shape parameter of Pareto distribution")
        return arviz_stats.loo(data, pointwise=True)


def bad_k_share(elpd: ELPDData) -> float:
    """The share of rows whose Pareto k exceeds :data:`PARETO_K_THRESHOLD`."""
    return float(np.mean(elpd.pareto_k.values > PARETO_K_THRESHOLD))


def loo_metrics(elpd: ELPDData) -> dict[str, float]:
    """``elpd_loo``, ``elpd_loo_se``, ``p_loo`` and ``pareto_k_bad`` (the share of rows with k > 0.7)."""
    return {
        "elpd_loo": float(elpd.elpd),
        "elpd_loo_se": float(elpd.se),
        "p_loo": float(elpd.p),
        "pareto_k_bad": bad_k_share(elpd),
    }


def loo_warnings(estimator: BayesianEstimator, elpd: ELPDData) -> list[str]:
    """Why the estimator's LOO cannot be trusted, if it cannot: many high Pareto k, a minibatch fit."""
    reasons = []
    if (share := bad_k_share(elpd)) > MAX_BAD_K_SHARE:
        reasons.append(
            f"{share:.1%} of the training rows have Pareto k > {PARETO_K_THRESHOLD} (more than "
            f"{MAX_BAD_K_SHARE:.0%}): leaving them out changes the posterior too much for importance "
            "sampling; refit without them (or use K-fold cross-validation), or use a more robust model"
        )
    if estimator.minibatch_size() is not None:
        reasons.append(
            "the model was fitted on minibatches: PSIS-LOO takes the draws for exact posterior draws, "
            "and a minibatch ADVI approximation is a rough one"
        )
    return reasons


def log_loo(
    estimator: BayesianEstimator,
    *,
    model_id: str | None = None,
    dataset=None,
    plot: bool = True,
    log_likelihood: Callable[[], xr.DataArray] | None = None,
) -> None:
    """Log the fit's PSIS-LOO to the active run: metrics, ``plots/pareto_k.png``, and a tag and a
    warning (:data:`LOO_WARNING_TAG`) where it is unreliable or cannot be computed.

    Parameters
    ----------
    estimator : BayesianEstimator
        The fitted estimator.
    model_id : str, optional
        The logged model the metrics are linked to.
    dataset : mlflow.data.Dataset, optional
        The training dataset the metrics are linked to.
    plot : bool, default=True
        Also log the Pareto-k plot.
    log_likelihood : callable, optional
        As in :func:`psis_loo`.
    """
    try:
        elpd = psis_loo(estimator, log_likelihood)
    except ValueError as error:  # no pointwise likelihood of the training rows: nothing to estimate
        mlflow.set_tag(LOO_WARNING_TAG, f"not computed: {error}")
        return
    mlflow.log_metrics(loo_metrics(elpd), model_id=model_id, dataset=dataset)
    if reasons := loo_warnings(estimator, elpd):
        message = "PSIS-LOO is unreliable: " + "; ".join(reasons) + "."
        mlflow.set_tag(LOO_WARNING_TAG, message)
        warnings.warn(f"pmlearn autologging: {message}", stacklevel=2)
    if plot:
        with tempfile.TemporaryDirectory() as directory:
            path = Path(directory) / "pareto_k.png"
            path.write_bytes(arviz_png(arviz_plots.plot_khat, elpd, threshold=PARETO_K_THRESHOLD))
            mlflow.log_artifact(str(path), "plots")
