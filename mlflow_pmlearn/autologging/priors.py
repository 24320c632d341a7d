"""Checks of a fit's priors: a prior predictive check, priors against posteriors, and power-scaling sensitivity.

- ``plots/prior_predictive_check.png``: the training targets against the targets the priors
  alone predict at the training inputs (are the priors' predictions on the data's scale?);
- ``plots/prior_posterior.png``: each parameter's prior and posterior densities, in the data's
  units (what the data taught, parameter by parameter);
- ``prior_sensitivity.csv``: ArviZ's power-scaling sensitivity (Kallioinen et al., 2024) of
  each free parameter's posterior to the prior and to the likelihood, with ArviZ's diagnosis;
  a parameter diagnosed with prior-data conflict or a strong prior / weak likelihood gets the
  tag :data:`PRIOR_WARNING_TAG` and a warning.
"""

from __future__ import annotations

import logging
import tempfile
import threading
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import arviz_plots
import arviz_stats
import mlflow
import numpy as np
import pandas as pd
import pymc as pm
import xarray as xr
from mlflow.utils.validation import MAX_TAG_VAL_LENGTH

from estimators.base import BayesianEstimator
from mlflow_pmlearn.autologging.metrics import PPC_DRAWS, PredictiveChecks, plot_rows
from mlflow_pmlearn.autologging.plots import MAX_RANK_PANELS, in_data_units, ppc_plot
from mlflow_pmlearn.scoring import arviz_png

#: Training rows times posterior draws up to which autolog runs the prior checks by default
#: (``log_prior_checks=None``): the sensitivity needs every row's log-likelihood under every
#: draw, as PSIS-LOO does. Measured on a 2-core machine under load (load average 4 to 5):
#: 3.6 s at 2,000 rows x 1,000 draws (the two plots about 1.3 s, ArviZ's psense 0.3 to 2 s,
#: the log prior and the prior draws about 0.5 s each), 4.1 s at 10,000 x 1,000 beyond the
#: log-likelihood that LOO computed (``python -m benchmarks.run --only autolog``).
DEFAULT_PRIOR_CHECKS_MAX_VALUES = 2_000_000
#: Draws from the prior (for the prior-vs-posterior densities; the check plot shows ``PPC_DRAWS``).
PRIOR_DRAWS = 500
#: Power-scaling sensitivity above which ArviZ calls a posterior sensitive (its default).
SENSITIVITY_THRESHOLD = 0.05
#: Run tag naming the parameters whose posterior is prior-sensitive; absent when none is.
PRIOR_WARNING_TAG = "pmlearn.prior_warning"
#: ArviZ's diagnosis of a parameter that is not sensitive.
_NO_ISSUE = "✓"
#: The logger through which ``psense_summary`` says that it found potential issues.
_PSENSE_LOGGER = logging.getLogger("arviz_stats.psense")


@contextmanager
def _muted_in_this_thread(logger: logging.Logger) -> Iterator[None]:
    """Drop ``logger``'s records from this thread while the block runs (other threads' pass)."""
    thread = threading.get_ident()

    def keep(record: logging.LogRecord) -> bool:
        return record.thread != thread

    logger.addFilter(keep)
    try:
        yield
    finally:
        logger.removeFilter(keep)


def prior_checks_by_default(estimator: BayesianEstimator) -> bool:
    """Whether autolog's default runs the prior checks for this fit: when its training rows
    times its posterior draws are at most :data:`DEFAULT_PRIOR_CHECKS_MAX_VALUES`."""
    training = next(iter(estimator.idata_.constant_data.data_vars.values()))
    return training.shape[0] * estimator.n_posterior_draws_ <= DEFAULT_PRIOR_CHECKS_MAX_VALUES


def _free_names(estimator: BayesianEstimator) -> list[str]:
    return [rv.name for rv in estimator.pymc_model().free_RVs]


def sensitivity_data(
    estimator: BayesianEstimator,
    log_likelihood: Callable[[], xr.DataArray] | None = None,
) -> xr.DataTree:
    """The fit's free parameters' posterior draws with their log prior and log-likelihood, as ArviZ reads them.

    The log prior is PyMC's (``pm.stats.compute_log_prior``: the prior densities of the
    parameters' values, no Jacobian), its function run once and so compiled in PyTensor's
    ``FAST_COMPILE`` mode (NumPy; 0.6 s less on an empty compile cache); the log-likelihood
    is that of the training rows
    (:meth:`~estimators.base.BayesianEstimator.training_log_likelihood`, or what ``log_likelihood`` gives).
    """
    posterior = estimator.idata_.posterior.to_dataset()[_free_names(estimator)]
    log_prior = pm.stats.compute_log_prior(
        xr.DataTree.from_dict({"posterior": posterior}),
        model=estimator.pymc_model(),
        extend_inferencedata=False,
        progressbar=False,
        compile_kwargs={"mode": "FAST_COMPILE"},
    )
    pointwise = (log_likelihood or estimator.training_log_likelihood)()
    return xr.DataTree.from_dict(
        {
            "posterior": posterior,
            "log_prior": log_prior,
            "log_likelihood": pointwise.to_dataset(),
        }
    )


def prior_sensitivity(
    estimator: BayesianEstimator,
    log_likelihood: Callable[[], xr.DataArray] | None = None,
) -> pd.DataFrame:
    """``arviz_stats.psense_summary`` of the fit: a row per free parameter (per component of a
    vector one), its prior and likelihood sensitivity and ArviZ's diagnosis, unrounded.

    Raises
    ------
    ValueError
        For a model with no pointwise likelihood of its training rows (a marginal Gaussian process).
    """
    data = sensitivity_data(estimator, log_likelihood)
    # What the table shows, log_prior_checks says once (a tag and a warning, muted by
    # autolog's silent=True): ArviZ's own console line and Pareto-shape warnings are left out.
    with warnings.catch_warnings(), _muted_in_this_thread(_PSENSE_LOGGER):
        warnings.filterwarnings("ignore", message="Estimated shape parameter of Pareto distribution")
        table = arviz_stats.psense_summary(data, threshold=SENSITIVITY_THRESHOLD, round_to=15)
    table.index.name = "parameter"
    return table


def sensitivity_warning(table: pd.DataFrame) -> str | None:
    """What the sensitivity table warns of, in words, or None when no parameter is sensitive."""
    flagged = table[table["diagnosis"] != _NO_ISSUE]
    if flagged.empty:
        return None
    found = "; ".join(
        f"{name}: {row['diagnosis']} (prior {row['prior']:.3f}, likelihood {row['likelihood']:.3f})"
        for name, row in flagged.iterrows()
    )
    return (
        f"power-scaling sensitivity of {SENSITIVITY_THRESHOLD} or more for {found}. The posterior of these "
        "parameters depends on the prior: check that the prior states what is known (prior_sensitivity.csv, "
        "plots/prior_posterior.png)"
    )


def prior_draws(estimator: BayesianEstimator) -> xr.DataTree:
    """:data:`PRIOR_DRAWS` draws of the parameters and targets at the training inputs, from the priors alone.

    The function that draws them runs once, so it is not compiled to machine code: PyTensor's
    ``FAST_COMPILE`` mode runs each operation with NumPy (Numba took 6.6 s to compile it on
    an empty cache, for a call that takes milliseconds).
    """
    seed = int(estimator.idata_.posterior.attrs.get("pmlearn_seed", 0))
    return pm.sample_prior_predictive(
        draws=PRIOR_DRAWS,
        model=estimator.pymc_model(),
        random_seed=seed,
        compile_kwargs={"mode": "FAST_COMPILE"},
    )


def prior_plots(
    estimator: BayesianEstimator,
    prior: xr.DataTree,
    idata: xr.DataTree,
    target_name: str,
) -> dict[str, bytes]:
    """PNG plots by file name: the prior predictive check (regressors and classifiers) and
    the parameters' priors against their posteriors (``idata``'s, perhaps relabelled)."""
    plots = {}
    if estimator.target_type is not None and "prior_predictive" in prior.children:
        (observed,) = estimator.idata_.observed_data.data_vars.values()
        (predicted,) = prior.prior_predictive.data_vars.values()
        shown = plot_rows(observed.size)
        # The likelihood's values in the user's terms (a classifier's labels for class indices).
        draws = estimator.decode_target(predicted.values.reshape(-1, observed.size)[:PPC_DRAWS, shown])
        target = estimator.decode_target(observed.values.ravel()[shown])
        checks = PredictiveChecks(
            observed=target,
            draws=draws,
            n_rows=observed.size,
            target_name=target_name,
            draws_from="prior predictive",
        )
        plots["prior_predictive_check.png"] = ppc_plot(estimator, checks)
    names, panels = [], 0
    for name in in_data_units(estimator.pymc_model()):
        size = int(np.prod(idata.posterior[name].shape[2:]))
        if name in prior.prior and panels + size <= MAX_RANK_PANELS:
            names.append(name)
            panels += size
    if names:
        both = xr.DataTree.from_dict(
            {
                "posterior": idata.posterior.to_dataset()[names],
                "prior": _like(prior.prior, idata)[names],
            }
        )
        plots["prior_posterior.png"] = arviz_png(
            arviz_plots.plot_prior_posterior,
            both,
            "prior and posterior",
            var_names=names,
        )
    return plots


def _like(prior: xr.DataTree, idata: xr.DataTree) -> xr.Dataset:
    """The prior draws with the posterior's coordinates (a pipeline's relabelled feature names)."""
    dataset = prior.to_dataset()
    shared = {
        dim: idata.posterior[dim]
        for dim in dataset.dims
        if dim in idata.posterior.coords and dim not in ("chain", "draw")
    }
    return dataset.assign_coords(shared)


def log_prior_checks(
    estimator: BayesianEstimator,
    idata: xr.DataTree,
    *,
    log_likelihood: Callable[[], xr.DataArray] | None = None,
    plot: bool = True,
    target_name: str = "target",
) -> None:
    """Log the fit's prior checks to the active run: ``prior_sensitivity.csv``, the plots (with
    ``plot``) and, where a parameter is prior-sensitive, a tag and a warning (:data:`PRIOR_WARNING_TAG`).

    Parameters
    ----------
    estimator : BayesianEstimator
        The fitted estimator.
    idata : DataTree
        Its trace as logged (coordinates perhaps relabelled with a pipeline's feature names).
    log_likelihood : callable, optional
        What gives the training rows' pointwise log-likelihood (one shared with PSIS-LOO).
    plot : bool, default=True
        Also log the plots.
    target_name : str, default="target"
        The target's name, for the prior predictive check.
    """
    with tempfile.TemporaryDirectory() as directory:
        try:
            table = prior_sensitivity(estimator, log_likelihood)
        except ValueError as error:  # no pointwise likelihood of the training rows
            mlflow.set_tag(PRIOR_WARNING_TAG, f"sensitivity not computed: {error}")
        else:
            path = Path(directory) / "prior_sensitivity.csv"
            table.to_csv(path, float_format="%.10f")
            mlflow.log_artifact(str(path))
            if message := sensitivity_warning(table):
                mlflow.set_tag(PRIOR_WARNING_TAG, message[:MAX_TAG_VAL_LENGTH])
                warnings.warn(f"pmlearn autologging: {message}.", stacklevel=2)
        if plot:
            for name, content in prior_plots(estimator, prior_draws(estimator), idata, target_name).items():
                (Path(directory) / name).write_bytes(content)
                mlflow.log_artifact(str(Path(directory) / name), "plots")
