"""NUTS, run by the sampler the ``nuts_sampler`` setting names: PyMC's own, nutpie, NumPyro or BlackJAX.

The trace keeps the sampler's own ``sample_stats`` (their names differ: nutpie's tree depth
is ``depth``, the others' ``tree_depth``; BlackJAX records no step size), less the
non-numeric ones (nutpie's divergence messages), which a NetCDF trace cannot hold portably.

Progress (:mod:`.progress`): PyMC's sampler and nutpie report the draws done over all chains
(tuning included), the divergences so far (tuning's included) and the current step size.
NumPyro and BlackJAX run as one compiled program with no per-draw hook: a heartbeat only.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Sequence

import numpy as np
import pymc as pm
import xarray as xr

from estimators.compilation import STRICT_NUMBA, compiles_with_numba
from estimators.inference._shared import interrupted, refuse_minibatches, require
from estimators.inference.progress import ProgressReporter
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
    reporter = ProgressReporter()
    # PyMC refuses a callback for the other samplers; an unwatched fit passes none.
    callback = _DrawReporter(reporter, settings) if reporter.watcher and settings.nuts_sampler == "pymc" else None
    if settings.nuts_sampler == "nutpie":
        idata = _sample_nutpie(model, settings, reporter)
    else:
        heartbeat = reporter.heartbeat() if callback is None else contextlib.nullcontext()  # NumPyro, BlackJAX
        with model, heartbeat:
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
                callback=callback,
                **_SAMPLER_ARGUMENTS.get(settings.nuts_sampler, {}),
                **(_parallel_chains(settings) if settings.nuts_sampler == "pymc" else {}),
            )
    posterior = idata.posterior
    if posterior.sizes["draw"] < settings.n_draws or posterior.sizes["chain"] < settings.n_chains:
        interrupted(
            f"NUTS after {posterior.sizes['draw']:,} of {settings.n_draws:,} draws "
            f"({posterior.sizes['chain']} of {settings.n_chains} chains)"
        )
    stats = idata.sample_stats.to_dataset()
    numeric = [
        name
        for name, values in stats.data_vars.items()
        if np.issubdtype(values.dtype, np.number) or values.dtype == bool
    ]
    idata["sample_stats"] = stats[numeric]
    return idata


def _parallel_chains(settings: InferenceSettings) -> dict:
    """``pm.sample``'s arguments for PyMC's chains: ``n_jobs`` processes, each compiling as this one.

    A chain in a process of its own gets the step method pickled and compiles it afresh; the
    mode it is given (:data:`~estimators.compilation.STRICT_NUMBA`, where PyTensor compiles
    with Numba) compiles it there without fast-math too, so the draws are those of the
    chains run one after the other here.
    """
    arguments: dict = {"cores": settings.chain_processes()}
    if compiles_with_numba():
        arguments["compile_kwargs"] = {"mode": STRICT_NUMBA}
    return arguments


class _DrawReporter:
    """``pm.sample`` callback (PyMC's sampler calls it with each draw of each chain, in this
    process): counts the draws and divergences, and reports them with the step size when due."""

    def __init__(self, reporter: ProgressReporter, settings: InferenceSettings):
        self.reporter = reporter
        self.total = settings.n_chains * (settings.n_tune + settings.n_draws)
        self.draws = 0
        self.divergences = 0

    def __call__(self, trace, draw) -> None:
        self.draws += 1
        stats = draw.stats[0]  # NUTS is the only step method
        self.divergences += bool(stats.get("diverging", False))
        if self.reporter.due():
            self.reporter.report(
                self.draws,
                draws=self.draws,
                fraction_done=self.draws / self.total,
                divergences=self.divergences,
                step_size=stats["step_size"],
                tuning=draw.tuning,
            )


def _sample_nutpie(model: pm.Model, settings: InferenceSettings, reporter: ProgressReporter) -> xr.DataTree:
    """NUTS by nutpie, called directly: ``pm.sample`` takes nutpie's progress callback for its
    own progress bar. The same calls and trace as ``pm.sample(nuts_sampler="nutpie")`` makes
    (PyMC's ``patch_nutpie_idata`` adds the data groups and the sampling time)."""
    import nutpie
    from pymc.backends.arviz import patch_nutpie_idata

    def report(chains) -> None:  # nutpie calls it from its own thread, every progress_rate ms
        if reporter.due():
            draws = sum(chain.finished_draws for chain in chains)
            reporter.report(
                draws,
                draws=draws,
                fraction_done=draws / max(1, sum(chain.total_draws for chain in chains)),
                divergences=sum(chain.divergences for chain in chains),
                step_size=float(np.mean([chain.step_size for chain in chains])),
                tuning=any(chain.tuning for chain in chains),
            )

    watched = {}
    if reporter.watcher is not None:  # nutpie's default rate (100 ms; its bar's too), or faster where asked
        rate_ms = min(100, max(10, round(1000 * reporter.watcher.interval_s)))
        watched = {"progress_callback": report, "progress_rate": rate_ms}
    compiled = nutpie.compile_pymc_model(model, backend="numba")
    start = time.time()
    idata = nutpie.sample(
        compiled,
        draws=settings.n_draws,
        tune=max(settings.n_tune, 1),  # nutpie panics at no tuning, as PyMC notes
        chains=settings.n_chains,
        cores=settings.chain_processes(),
        seed=settings.random_seed,
        save_warmup=False,
        progress_bar=settings.progressbar,
        **watched,
    )
    patch_nutpie_idata(idata, model, sampling_time=time.time() - start)
    return idata
