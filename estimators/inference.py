"""The ways to fit a PyMC model: ADVI with a convergence stop, and NUTS.

Both return the trace as PyMC returns it, an ``xarray.DataTree`` (ArviZ 1's trace type)
whose ``posterior`` group holds the draws and whose ``constant_data`` / ``observed_data``
groups hold the training data. ADVI adds a ``fit_history`` group with the loss (negative
ELBO) at every iteration.

A Ctrl-C (``KeyboardInterrupt``) that PyMC catches to stop early is raised again: a fit
either completes or raises, never returns a half-fitted posterior.

With ``progressbar``, a fit says when it compiles the model (a cold compile cache: tens
of seconds), and ADVI's progress bar ends at done when the fit converges early.
"""

from __future__ import annotations

import logging
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Self

import numpy as np
import pymc as pm
import pytensor
import xarray as xr
from pymc.progress_bar import CustomProgress, default_progress_theme
from pymc.variational.minibatch_rv import MinibatchRandomVariable
from rich.console import Console
from rich.progress import Progress, TextColumn

from estimators.settings import InferenceSettings

#: Iterations per window of the ADVI plateau schedule (full-batch fits).
PLATEAU_WINDOW = 100
#: PyMC's ADVI logger, whose handler prints to the console. A fit's closing line there is
#: this module's (:func:`fit_advi`), in place of PyMC's.
ADVI_LOGGER = logging.getLogger("pymc.variational.inference")
#: Seconds of compiling in one fit after which the console says that the model is compiling.
COMPILE_NOTICE_AFTER = 1.0
#: What it says (through PyMC's logger, which owns the console handler).
COMPILE_NOTICE = "Compiling the model (compiled code is cached on disk for later fits)..."


def final_loss(loss: np.ndarray) -> float:
    """The loss an ADVI fit ends with: the mean of its last ``PLATEAU_WINDOW`` iterations.

    One number for the console, the ``elbo_final`` metric (its negative) and the plot.
    """
    return float(np.mean(loss[-PLATEAU_WINDOW:]))


def resolve_progressbar(progressbar: bool | None) -> bool:
    """Show progress when asked, or by default when standard error is a terminal."""
    if progressbar is None:
        return sys.stderr.isatty()
    return bool(progressbar)


class PlateauSchedule:
    """ADVI callback: lower the learning rate when the loss plateaus, stop after the last plateau.

    Every ``window`` iterations it compares the mean loss of the last window with the mean
    of the window before. When the relative improvement is below ``tol`` the loss has
    plateaued at this step size: the learning rate is divided by ten (Adam's parameters
    jitter in proportion to it), until it has been lowered ``n_reductions`` times, after
    which the fit has converged and stops. Comparing window means, not single
    iterations, keeps the noise of the stochastic ELBO from deciding.

    Parameters
    ----------
    learning_rate : SharedVariable
        The optimizer's learning rate.
    window : int
        Iterations per window.
    tol : float
        Relative improvement of the windowed mean loss that counts as a plateau.
    n_reductions : int
        How many times to lower the learning rate before stopping.
    """

    def __init__(self, learning_rate, *, window: int = 100, tol: float = 1e-4, n_reductions: int = 2):
        self.learning_rate = learning_rate
        self.window = window
        self.tol = tol
        self.n_reductions = n_reductions
        self.reductions = 0
        self.converged = False
        #: The message of the ``StopIteration`` that stops a converged fit.
        self.stop_message = "ADVI converged"
        self._since = 0

    def __call__(self, approx, losses: np.ndarray, i: int) -> None:
        if i % self.window or i - self._since < 2 * self.window:
            return
        current = np.mean(losses[i - self.window : i])
        previous = np.mean(losses[i - 2 * self.window : i - self.window])
        if previous - current >= self.tol * abs(current):
            return
        if self.reductions == self.n_reductions:
            self.converged = True
            raise StopIteration(self.stop_message)
        self.reductions += 1
        self._since = i
        self.learning_rate.set_value(self.learning_rate.get_value() / 10.0)


class _ProgressBar:
    """ADVI callback: the fit's progress bar, which ends at done when the fit converges.

    It stands in for PyMC's bar, which freezes where the schedule stopped a converged fit
    ("6%"): :meth:`done` makes the iterations run the bar's total. A Ctrl-C leaves it where
    the fit was. The loss shown is :func:`final_loss` of the iterations so far, the number
    the closing line ends with. The bar appears at the first iteration, after the model is
    compiled, so that the console's lines before it are not drawn over.
    """

    def __init__(self, max_iter: int, *, enabled: bool):
        self._progress = CustomProgress(
            *Progress.get_default_columns(),
            TextColumn("{task.fields[loss]}"),
            console=Console(theme=default_progress_theme),
            disable=not enabled,
        )
        self._task = self._progress.add_task("Fitting:", total=max_iter, loss="")

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info) -> None:
        self._progress.stop()

    def __call__(self, approx, losses: np.ndarray, i: int) -> None:
        if i == 1:
            self._progress.start()
        self._progress.update(self._task, completed=i, **(self._loss(losses) if i % 10 == 0 else {}))

    def done(self, losses: np.ndarray) -> None:
        """End the bar at the iterations the fit ran, with the final loss."""
        self._progress.update(self._task, total=losses.size, completed=losses.size, **self._loss(losses))

    @staticmethod
    def _loss(losses: np.ndarray) -> dict[str, str]:
        return {"loss": f"Average Loss = {final_loss(losses):,.6g}"}


def minibatch_replacements(model: pm.Model, row_data: Sequence[str], batch_size: int) -> dict:
    """Each row-indexed data container mapped to one random minibatch of its rows.

    The same rows are drawn from every container at each ADVI step. The model stays
    written over the full containers (so prediction can replace them); ``pm.fit`` swaps in
    the minibatches, and the likelihood, declared with ``total_size`` (the number of
    training rows), scales their log-likelihood up to the full data. With no more rows
    than ``batch_size`` there is nothing to subsample: no replacements.
    """
    if not any(isinstance(rv.owner.op, MinibatchRandomVariable) for rv in model.observed_RVs):
        raise ValueError(
            "batch_size is set, but the model's likelihood was not declared with total_size: "
            "minibatch log-likelihoods would not be scaled up to the full data. In build_model, "
            "pass total_size=<number of training rows> (an int, e.g. len(X.get_value())) to "
            "the observed variable."
        )
    containers = [model[name] for name in row_data]
    if not containers or len(containers[0].get_value()) <= batch_size:
        return {}
    batches = pm.Minibatch(*containers, batch_size=int(batch_size))
    return dict(zip(containers, batches if len(containers) > 1 else [batches]))


def fit_advi(
    model: pm.Model, settings: InferenceSettings, row_data: Sequence[str] = (), batch_size: int | None = None
) -> xr.DataTree:
    """Fit mean-field ADVI until the loss converges, then draw from the approximation.

    With ``batch_size``, each step uses a random minibatch of the rows of the
    containers named in ``row_data`` (see :func:`minibatch_replacements`); the loss history
    is then that of the minibatches, scaled by PyMC to one minibatch's worth of data. A
    minibatch's loss is noisier, so the plateau windows are ``sqrt(n_rows / batch_size)``
    times longer (a heuristic: with 100-iteration windows, minibatch fits of a small
    network stopped at a third of the iterations a full-batch fit needs, and underfitted).
    """
    fit_seed, draw_seed = np.random.default_rng(settings.random_seed).integers(2**31, size=2)
    learning_rate = pytensor.shared(np.float64(settings.learning_rate), name="learning_rate")
    replacements = {}
    window = PLATEAU_WINDOW
    if batch_size is not None:
        replacements = minibatch_replacements(model, row_data, batch_size)
        if replacements:
            n_rows = len(model[row_data[0]].get_value())
            window = int(np.ceil(PLATEAU_WINDOW * np.sqrt(n_rows / batch_size)))
    schedule = PlateauSchedule(learning_rate, window=window, tol=settings.tol)
    bar = _ProgressBar(settings.max_iter, enabled=settings.progressbar)
    with model, _closing_lines_replaced(schedule):
        with bar:
            approx = pm.fit(
                n=settings.max_iter,
                method="advi",
                obj_optimizer=pm.adam(learning_rate=learning_rate),
                callbacks=[bar, schedule],
                random_seed=int(fit_seed),
                progressbar=False,  # the bar above stands in for PyMC's
                more_replacements=replacements or None,
            )
            history = np.asarray(approx.hist, dtype=np.float64)
            if history.size < settings.max_iter and not schedule.converged:
                _interrupted(f"ADVI at iteration {history.size:,} of {settings.max_iter:,}")
            bar.done(history)
        idata = approx.sample(settings.n_draws, random_seed=int(draw_seed))
    if schedule.converged:
        outcome = f"ADVI converged after {history.size:,} iterations (of at most {settings.max_iter:,})"
    else:
        outcome = (
            f"ADVI ran all max_iter={settings.max_iter:,} iterations without converging (raise max_iter, "
            "or tol, to let it converge)"
        )
    ADVI_LOGGER.info(f"{outcome}; final loss {final_loss(history):,.6g} (mean of the last {min(PLATEAU_WINDOW, history.size)}).")
    if "sample_stats" in idata.children:  # PyMC 6 adds an empty one; ADVI has no sampler statistics
        del idata["sample_stats"]
    idata["fit_history"] = xr.Dataset(
        {"loss": ("iteration", history)},
        coords={"iteration": np.arange(1, history.size + 1)},
        attrs={
            "converged": int(schedule.converged),
            "max_iter": settings.max_iter,
            **({"batch_size": batch_size, "plateau_window": window} if replacements else {}),
        },
    )
    return idata


def fit_nuts(
    model: pm.Model, settings: InferenceSettings, row_data: Sequence[str] = (), batch_size: int | None = None
) -> xr.DataTree:
    """Sample the posterior with PyMC's own NUTS sampler (on the full data: no minibatches)."""
    if batch_size is not None:
        raise ValueError(
            f"batch_size={batch_size} applies to ADVI only: NUTS samples the exact "
            "posterior and needs the full data at every step. Set batch_size=None to use NUTS, "
            'or inference="advi" to fit on minibatches.'
        )
    with model:
        idata = pm.sample(
            draws=settings.n_draws,
            tune=settings.n_tune,
            chains=settings.n_chains,
            random_seed=settings.random_seed,
            progressbar=settings.progressbar,
            compute_convergence_checks=False,
            # PyMC 6 would pick nutpie whenever it is installed: the draws for a seed would
            # then depend on the environment, and nutpie recompiles the model at every fit.
            nuts_sampler="pymc",
        )
    posterior = idata.posterior
    if posterior.sizes["draw"] < settings.n_draws or posterior.sizes["chain"] < settings.n_chains:
        _interrupted(
            f"NUTS after {posterior.sizes['draw']:,} of {settings.n_draws:,} draws "
            f"({posterior.sizes['chain']} of {settings.n_chains} chains)"
        )
    return idata


@contextmanager
def _closing_lines_replaced(schedule: PlateauSchedule) -> Iterator[None]:
    """Drop PyMC's closing lines of this thread's ADVI fit, which say "Interrupted at 6%"
    when the schedule stopped a converged fit; a Ctrl-C's lines are kept."""

    thread = threading.get_ident()

    def keep(record: logging.LogRecord) -> bool:
        if record.thread != thread:
            return True
        message = record.getMessage()
        if message.startswith("Finished ["):  # max_iter reached: fit_advi's closing line says so
            return False
        # A converged fit: PyMC logs the schedule's stop message and "Interrupted at ...%".
        return not (schedule.converged and (message == schedule.stop_message or message.startswith("Interrupted at ")))

    ADVI_LOGGER.addFilter(keep)
    try:
        yield
    finally:
        ADVI_LOGGER.removeFilter(keep)


@contextmanager
def _compile_notice(*, enabled: bool) -> Iterator[None]:
    """Say once, through PyMC's console logger, that the model is compiling, once this
    thread has spent ``COMPILE_NOTICE_AFTER`` seconds in Numba's compiler.

    Numba compiles only functions that are in neither its in-memory nor its on-disk cache
    (PyTensor's compiledir), and announces each compilation with a ``numba:compile`` event:
    a first fit on a cold cache compiles for tens of seconds, a fit on a warm one for a
    tenth of a second (a few functions that Numba never caches).
    """
    if not enabled:
        yield
        return
    from numba.core import event  # here: importing Numba takes a second, and compiling imports it anyway

    thread = threading.get_ident()

    class CompileClock(event.Listener):
        """The seconds this thread spends inside Numba compilations, nested ones counted once."""

        depth, seconds, since, said = 0, 0.0, 0.0, False

        def on_start(self, _event) -> None:
            self._tick(+1)

        def on_end(self, _event) -> None:
            self._tick(-1)

        def _tick(self, step: int) -> None:
            if threading.get_ident() != thread:
                return
            now = time.perf_counter()
            if self.depth:
                self.seconds += now - self.since
            self.depth, self.since = self.depth + step, now
            if self.seconds > COMPILE_NOTICE_AFTER and not self.said:
                self.said = True
                logging.getLogger("pymc").info(COMPILE_NOTICE)

    with event.install_listener("numba:compile", CompileClock()):
        yield


def _interrupted(where: str) -> None:
    """Raise the ``KeyboardInterrupt`` that PyMC caught, so that ``fit`` stops instead of returning.

    On Ctrl-C, ``pm.fit`` and ``pm.sample`` stop and return what they have so far; an
    estimator must not pass that off as a fitted posterior (nor autolog log and register it).
    """
    raise KeyboardInterrupt(f"The fit was interrupted: {where}; no estimator was fitted.")


def fit_posterior(
    model: pm.Model, settings: InferenceSettings, row_data: Sequence[str] = (), batch_size: int | None = None
) -> xr.DataTree:
    """Fit ``model`` with the method named in ``settings.inference``.

    ``row_data`` names the data containers indexed by training row (inputs and target):
    the ones that minibatches of ``batch_size`` rows slice (None: the full data).
    """
    fitters = {"advi": fit_advi, "nuts": fit_nuts}
    with _compile_notice(enabled=settings.progressbar):
        return fitters[settings.inference](model, settings, row_data, batch_size)
