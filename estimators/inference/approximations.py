"""Pathfinder and the Laplace approximation, both from pymc-extras.

Each adds a ``fit_diagnostics`` group of scalars to the trace, which autolog logs as metrics:

- pathfinder: ``pareto_k`` (the Pareto-smoothed importance sampling diagnostic of its
  draws: above 0.7 the approximation is not to be trusted), ``elbo`` and the paths that
  succeeded;
- Laplace: the optimizer's result at the mode (``optimizer_success``, ``optimizer_iterations``,
  ``gradient_norm``, ``log_density_at_mode``) and ``hessian_condition_number``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pymc as pm
import xarray as xr

from estimators.inference._shared import refuse_minibatches
from estimators.settings import InferenceSettings

#: Groups of pymc-extras' traces that our trace layout replaces with ``fit_diagnostics``.
_ENGINE_GROUPS = ("pathfinder", "lbfgs", "fit", "optimizer_result", "unconstrained_posterior", "sample_stats")


def fit_pathfinder(
    model: pm.Model, settings: InferenceSettings, row_data: Sequence[str] = (), batch_size: int | None = None
) -> xr.DataTree:
    """Multi-path pathfinder (Zhang et al. 2022) with Pareto-smoothed importance resampling."""
    refuse_minibatches("pathfinder", batch_size)
    import pymc_extras

    idata = pymc_extras.fit_pathfinder(
        model=model,
        num_draws=settings.n_draws,
        random_seed=settings.random_seed,
        progressbar=settings.progressbar,
        parallel=False,  # a forked worker pool inside a server or a Spark task is not ours to start
    )
    result = idata.pathfinder
    diagnostics = {
        "pareto_k": float(result["pareto_k"]),
        "elbo": float(result["logP_mean"] - result["logQ_mean"]),
        "paths": int(result["num_paths"]),
        "paths_succeeded": int(result["num_successful_paths"]),
    }
    return _with_diagnostics(idata, "pathfinder", diagnostics)


def fit_laplace(
    model: pm.Model, settings: InferenceSettings, row_data: Sequence[str] = (), batch_size: int | None = None
) -> xr.DataTree:
    """A Gaussian at the posterior mode, on the unconstrained space, with the exact Hessian.

    The mode is found by trust-region Newton-CG, and the covariance is the inverse of the
    Hessian computed there from exact Hessian-vector products (not BFGS's running estimate,
    whose widths can be far off).
    """
    refuse_minibatches("Laplace", batch_size)
    import pymc_extras

    idata = pymc_extras.fit_laplace(
        optimize_method="trust-ncg",
        use_grad=True,
        use_hessp=True,
        # Not frozen: frozen data are constants of the compiled functions, which a refit on
        # new data would then compile again (the data containers keep them cached).
        freeze_model=False,
        model=model,
        draws=settings.n_draws,
        random_seed=settings.random_seed,
        progressbar=settings.progressbar,
    )
    result = idata.optimizer_result
    eigenvalues = np.linalg.eigvalsh(idata.fit["covariance_matrix"].values)
    diagnostics = {
        "optimizer_success": int(result["success"]),
        "optimizer_iterations": int(result["nit"]),
        "gradient_norm": float(np.linalg.norm(result["jac"].values)),
        "log_density_at_mode": -float(result["fun"]),
        "hessian_condition_number": float(eigenvalues.max() / eigenvalues.min()),
    }
    return _with_diagnostics(idata, "laplace", diagnostics)


def _with_diagnostics(idata: xr.DataTree, engine: str, diagnostics: dict[str, float]) -> xr.DataTree:
    for group in _ENGINE_GROUPS:
        if group in idata.children:
            del idata[group]
    idata["fit_diagnostics"] = xr.Dataset({name: ((), value) for name, value in diagnostics.items()}, attrs={"engine": engine})
    return idata
