"""Pathfinder and the Laplace approximation, both built on pymc-extras.

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
import scipy.optimize
import xarray as xr
from arviz_base import dict_to_dataset
from pymc.backends.arviz import (
    coords_and_dims_for_inferencedata,
    find_constants,
    find_observations,
)
from pymc.blocking import DictToArrayBijection

from estimators.inference._shared import refuse_minibatches
from estimators.inference.progress import ProgressReporter
from estimators.settings import InferenceSettings

#: Groups of pymc-extras' traces that our trace layout replaces with ``fit_diagnostics``.
_ENGINE_GROUPS = ("pathfinder", "lbfgs", "fit", "optimizer_result", "unconstrained_posterior", "sample_stats")


def fit_pathfinder(
    model: pm.Model, settings: InferenceSettings, row_data: Sequence[str] = (), batch_size: int | None = None
) -> xr.DataTree:
    """Multi-path pathfinder (Zhang et al. 2022) with Pareto-smoothed importance resampling."""
    refuse_minibatches("pathfinder", batch_size)
    import pymc_extras

    with ProgressReporter().heartbeat():  # pymc-extras passes its paths' progress to its own bar only
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
    """A Gaussian at the mode of the posterior density of the unconstrained values, with the exact Hessian.

    The density includes the log-Jacobian of the transforms (``log sigma`` for a positive
    ``sigma``), as Stan's Laplace approximation does: the Gaussian then approximates the
    posterior of the values it is drawn on. pymc-extras' ``fit_laplace`` leaves the
    Jacobian out (its ``find_MAP`` does since pymc-devs/pymc-extras#641), which centres the
    Gaussian at the mode in the constrained space: for a scale parameter, below the bulk
    of its posterior (0.4 posterior sd on the test's closed form; at 0 for the eight
    schools' ``tau``).
    pymc-extras' pieces do the rest: its compiled loss, gradient and Hessian-vector
    products, and its draws from the Gaussian. The mode is found by L-BFGS-B; the
    covariance is the inverse of the Hessian there, one Hessian-vector product per
    unconstrained value.
    """
    refuse_minibatches("Laplace", batch_size)
    from pymc_extras.inference.laplace_approx.laplace import draws_from_laplace_approx
    from pymc_extras.inference.laplace_approx.scipy_interface import (
        scipy_optimize_funcs_from_loss,
    )

    if model.discrete_value_vars:
        names = ", ".join(variable.name for variable in model.discrete_value_vars)
        raise ValueError(f'inference="laplace" needs continuous parameters; {names} are discrete.')
    initial_point = model.initial_point(random_seed=settings.random_seed)
    loss_and_gradient, hessian_times = scipy_optimize_funcs_from_loss(
        loss=-model.logp(jacobian=True),
        inputs=model.continuous_value_vars,
        initial_point_dict=initial_point,
        use_grad=True,
        use_hess=False,
        use_hessp=True,
    )
    with ProgressReporter().heartbeat():
        start = DictToArrayBijection.map(initial_point).data
        result = scipy.optimize.minimize(loss_and_gradient, start, jac=True, method="L-BFGS-B")
    hessian = np.column_stack([hessian_times(result.x, unit) for unit in np.eye(result.x.size)])
    hessian = (hessian + hessian.T) / 2
    eigenvalues = np.linalg.eigvalsh(hessian)
    if not eigenvalues.min() > 0:
        raise ValueError(
            "The Laplace approximation has no covariance: the Hessian of the negative log posterior "
            f"at the mode is not positive definite (smallest eigenvalue {eigenvalues.min():.3g}; "
            f"the optimizer {'converged' if result.success else 'stopped: ' + str(result.message)}). "
            'The posterior is not peaked there; use inference="nuts".'
        )
    posterior, _ = draws_from_laplace_approx(
        mean=result.x,
        covariance=np.linalg.inv(hessian),
        draws=settings.n_draws,
        model=model,
        return_unconstrained=False,
        random_seed=settings.random_seed,
    )
    coords, dims = coords_and_dims_for_inferencedata(model)

    def data_group(values: dict) -> xr.Dataset:
        return dict_to_dataset(values, inference_library=pm, coords=coords, dims=dims, sample_dims=[])

    idata = xr.DataTree.from_dict(
        {
            "posterior": posterior,
            "observed_data": data_group(find_observations(model)),
            "constant_data": data_group(find_constants(model)),
        }
    )
    diagnostics = {
        "optimizer_success": int(result.success),
        "optimizer_iterations": int(result.nit),
        "gradient_norm": float(np.linalg.norm(result.jac)),
        "log_density_at_mode": -float(result.fun),
        "hessian_condition_number": float(eigenvalues.max() / eigenvalues.min()),
    }
    return _with_diagnostics(idata, "laplace", diagnostics)


def _with_diagnostics(idata: xr.DataTree, engine: str, diagnostics: dict[str, float]) -> xr.DataTree:
    for group in _ENGINE_GROUPS:
        if group in idata.children:
            del idata[group]
    idata["fit_diagnostics"] = xr.Dataset(
        {name: ((), value) for name, value in diagnostics.items()}, attrs={"engine": engine}
    )
    return idata
