"""The ways to fit a PyMC model, behind one name each, all returning one trace layout.

Every engine returns the trace as PyMC returns it, an ``xarray.DataTree`` (ArviZ 1's trace
type): a ``posterior`` group with ``chain`` and ``draw`` dimensions, and the training data in
``constant_data`` / ``observed_data``. Besides, each keeps its own diagnostics:

- ``"advi"``, ``"fullrank_advi"`` (:mod:`.advi`): a ``fit_history`` group, the loss (negative
  ELBO) at every iteration;
- ``"nuts"`` (:mod:`.nuts`): the sampler's own ``sample_stats``;
- ``"pathfinder"``, ``"laplace"`` (:mod:`.approximations`): a ``fit_diagnostics`` group of
  scalars (Pareto k and ELBO; the optimizer's result and the Hessian's conditioning).

A Ctrl-C (``KeyboardInterrupt``) that PyMC catches to stop early is raised again: a fit
either completes or raises, never returns a half-fitted posterior. A Ctrl-C or a SIGTERM
handler's ``SystemExit`` that compiled code turned into another error is raised as itself,
so that the process stops as the user or the handler meant. With ``progressbar``, a fit
says when it compiles the model (a cold compile cache: tens of seconds).
"""

from __future__ import annotations

from collections.abc import Sequence

import pymc as pm
import xarray as xr

from estimators.compilation import reproducible_compilation
from estimators.inference._shared import COMPILE_NOTICE, compile_notice, interruption_behind, resolve_progressbar
from estimators.inference.advi import PLATEAU_WINDOW, final_loss, fit_advi
from estimators.inference.approximations import fit_laplace, fit_pathfinder
from estimators.inference.nuts import fit_nuts
from estimators.settings import InferenceSettings

#: Each ``inference`` setting's engine.
ENGINES = {
    "advi": fit_advi,
    "fullrank_advi": fit_advi,
    "nuts": fit_nuts,
    "pathfinder": fit_pathfinder,
    "laplace": fit_laplace,
}

__all__ = [
    "COMPILE_NOTICE",
    "PLATEAU_WINDOW",
    "final_loss",
    "fit_posterior",
    "interruption_behind",
    "resolve_progressbar",
]


def fit_posterior(
    model: pm.Model, settings: InferenceSettings, row_data: Sequence[str] = (), batch_size: int | None = None
) -> xr.DataTree:
    """Fit ``model`` with the engine named in ``settings.inference``.

    ``row_data`` names the data containers indexed by training row (inputs and target):
    the ones that minibatches of ``batch_size`` rows slice (None: the full data, which is
    all that engines other than ADVI accept).
    """
    with reproducible_compilation(), compile_notice(enabled=settings.progressbar):
        try:
            return ENGINES[settings.inference](model, settings, row_data, batch_size)
        except Exception as error:
            interruption = interruption_behind(error)
            if interruption is None:
                raise
            raise interruption from None  # its own traceback shows where it landed
