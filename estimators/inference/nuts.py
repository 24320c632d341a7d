"""NUTS, run by the sampler the ``nuts_sampler`` setting names: PyMC's own, nutpie, NumPyro or BlackJAX.

The trace keeps the sampler's own ``sample_stats`` (their names differ: nutpie's tree depth
is ``depth``, the others' ``tree_depth``; BlackJAX records no step size), less the
non-numeric ones (nutpie's divergence messages), which a NetCDF trace cannot hold portably.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pymc as pm
import xarray as xr

from estimators.inference._shared import interrupted, refuse_minibatches, require
from estimators.settings import InferenceSettings

#: Each sampler's modules beyond PyMC, and the extra that installs them.
SAMPLER_REQUIREMENTS: dict[str, tuple[tuple[str, ...], str]] = {
    "pymc": ((), ""),
    "nutpie": (("nutpie",), "nutpie"),
    "numpyro": (("jax", "numpyro"), "jax"),
    "blackjax": (("jax", "blackjax"), "jax"),
}

#: Arguments a sampler needs beyond ``pm.sample``'s defaults. BlackJAX runs its chains in one
#: vectorised program: PyMC's default maps them over devices with ``jax.pmap``, which fails
#: when there are more chains than devices (one CPU device: "cannot select an axis to
#: squeeze out which has size not equal to one").
_SAMPLER_ARGUMENTS = {"blackjax": {"nuts_sampler_kwargs": {"chain_method": "vectorized"}}}


def fit_nuts(
    model: pm.Model, settings: InferenceSettings, row_data: Sequence[str] = (), batch_size: int | None = None
) -> xr.DataTree:
    """Sample the posterior with NUTS, run by ``settings.nuts_sampler`` (on the full data)."""
    refuse_minibatches(f'NUTS (nuts_sampler="{settings.nuts_sampler}")', batch_size)
    modules, extra = SAMPLER_REQUIREMENTS[settings.nuts_sampler]
    require(modules, extra, f'nuts_sampler="{settings.nuts_sampler}"')
    with model:
        idata = pm.sample(
            draws=settings.n_draws,
            tune=settings.n_tune,
            chains=settings.n_chains,
            random_seed=settings.random_seed,
            progressbar=settings.progressbar,
            compute_convergence_checks=False,
            # Named always: PyMC 6 would pick nutpie whenever it is installed, and the draws
            # for a seed would then depend on the environment.
            nuts_sampler=settings.nuts_sampler,
            **_SAMPLER_ARGUMENTS.get(settings.nuts_sampler, {}),
        )
    posterior = idata.posterior
    if posterior.sizes["draw"] < settings.n_draws or posterior.sizes["chain"] < settings.n_chains:
        interrupted(
            f"NUTS after {posterior.sizes['draw']:,} of {settings.n_draws:,} draws "
            f"({posterior.sizes['chain']} of {settings.n_chains} chains)"
        )
    stats = idata.sample_stats.to_dataset()
    numeric = [name for name, values in stats.data_vars.items() if np.issubdtype(values.dtype, np.number) or values.dtype == bool]
    idata["sample_stats"] = stats[numeric]
    return idata
