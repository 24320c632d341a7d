"""ADVI, mean-field or full-rank, stopped when its loss converges.

The trace gets a ``fit_history`` group with the loss (negative ELBO) at every iteration.
With ``progressbar``, the fit's progress bar ends at done when the fit converges early.
Progress (:mod:`.progress`): the iterations done and the current loss (as on the bar).
"""

from __future__ import annotations

import logging
import threading
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

from estimators.inference._shared import interrupted
from estimators.inference.progress import ProgressReporter
from estimators.settings import InferenceSettings

#: Iterations per window of the ADVI plateau schedule (full-batch fits).
PLATEAU_WINDOW = 100
#: PyMC's ADVI logger, whose handler prints to the console. A fit's closing line there is
#: this module's (:func:`fit_advi`), in place of PyMC's.
ADVI_LOGGER = logging.getLogger("pymc.variational.inference")
#: The ADVI families, by the ``inference`` setting that names them, with how the console names them.
ADVI_METHODS = {"advi": "ADVI", "fullrank_advi": "Full-rank ADVI"}
#: Full-rank ADVI's learning rate, as a share of ``learning_rate``: it starts at the
#: converged mean-field fit, and larger steps of its covariance factor make its loss erratic.
FULL_RANK_LEARNING_RATE_SHARE = 0.2


def final_loss(loss: np.ndarray) -> float:
    """The loss an ADVI fit ends with: the mean of its last ``PLATEAU_WINDOW`` iterations.

    One number for the console, the ``elbo_final`` metric (its negative) and the plot.
    """
    return float(np.mean(loss[-PLATEAU_WINDOW:]))


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

    def __init__(self, max_iter: int, *, enabled: bool, description: str = "Fitting:"):
        self._progress = CustomProgress(
            *Progress.get_default_columns(),
            TextColumn("{task.fields[loss]}"),
            console=Console(theme=default_progress_theme),
            disable=not enabled,
        )
        self._task = self._progress.add_task(description, total=max_iter, loss="")

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


class _LossReporter:
    """ADVI callback: reports the iterations done (of both phases of full-rank ADVI, counted
    from ``first_iteration``) and the loss the bar shows (:func:`final_loss` so far), when due."""

    def __init__(self, reporter: ProgressReporter, first_iteration: int = 0):
        self.reporter = reporter
        self.first_iteration = first_iteration

    def __call__(self, approx, losses: np.ndarray, i: int) -> None:
        if self.reporter.due():
            iteration = self.first_iteration + i
            self.reporter.report(iteration, iterations=iteration, loss=final_loss(losses))


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
    """Fit ADVI (``settings.inference``: mean-field or full-rank) until the loss converges,
    then draw from the approximation.

    Full-rank ADVI fits a Gaussian with a dense covariance on the unconstrained space: it
    keeps the posterior's correlations that mean-field ADVI drops (and so its width along
    correlated directions), at a cost quadratic in the number of parameters. It starts
    from the converged mean-field fit (its means and standard deviations): from PyMC's
    own start, a unit covariance, its loss stalled far above mean-field's on a plain
    linear regression. The loss history holds both phases; its ``mean_field_iterations``
    attribute says where the full-rank one starts.

    With ``batch_size``, each step uses a random minibatch of the rows of the
    containers named in ``row_data`` (see :func:`minibatch_replacements`); the loss history
    is then that of the minibatches, scaled by PyMC to one minibatch's worth of data. A
    minibatch's loss is noisier, so the plateau windows are ``sqrt(n_rows / batch_size)``
    times longer (a heuristic: with 100-iteration windows, minibatch fits of a small
    network stopped at a third of the iterations a full-batch fit needs, and underfitted).
    """
    label = ADVI_METHODS[settings.inference]
    fit_seed, draw_seed = np.random.default_rng(settings.random_seed).integers(2**31, size=2)
    replacements = {}
    window = PLATEAU_WINDOW
    if batch_size is not None:
        replacements = minibatch_replacements(model, row_data, batch_size)
        if replacements:
            n_rows = len(model[row_data[0]].get_value())
            window = int(np.ceil(PLATEAU_WINDOW * np.sqrt(n_rows / batch_size)))
    reporter = ProgressReporter()
    with model:
        full_rank = settings.inference == "fullrank_advi"
        approx, history, converged = _converge(
            pm.ADVI(random_seed=int(fit_seed)),
            settings,
            settings.learning_rate,
            window,
            replacements,
            "ADVI",
            "Fitting, mean-field start:" if full_rank else "Fitting:",
            _LossReporter(reporter),
        )
        mean_field_iterations = history.size
        if full_rank:
            inference = _full_rank_from(approx, seed=int(fit_seed) + 1)
            learning_rate = settings.learning_rate * FULL_RANK_LEARNING_RATE_SHARE
            approx, full_rank_history, converged = _converge(
                inference,
                settings,
                learning_rate,
                window,
                replacements,
                label,
                "Fitting, full rank:",
                _LossReporter(reporter, first_iteration=mean_field_iterations),
            )
            history = np.concatenate([history, full_rank_history])
        idata = approx.sample(settings.n_draws, random_seed=int(draw_seed))
    if "sample_stats" in idata.children:  # PyMC 6 adds an empty one; ADVI has no sampler statistics
        del idata["sample_stats"]
    idata["fit_history"] = xr.Dataset(
        {"loss": ("iteration", history)},
        coords={"iteration": np.arange(1, history.size + 1)},
        attrs={
            "converged": int(converged),
            "max_iter": settings.max_iter,
            **({"mean_field_iterations": mean_field_iterations} if full_rank else {}),
            **({"batch_size": batch_size, "plateau_window": window} if replacements else {}),
        },
    )
    return idata


def _converge(
    inference: pm.KLqp,
    settings: InferenceSettings,
    learning_rate: float,
    window: int,
    replacements: dict,
    label: str,
    description: str,
    loss_reporter: _LossReporter,
) -> tuple[pm.Approximation, np.ndarray, bool]:
    """Run ``inference`` until the plateau schedule stops it, or ``max_iter``; say how it ended
    (``label`` names it on the console's closing line, ``description`` on its progress bar)
    and report its progress through ``loss_reporter``.

    Returns the approximation, the loss at every iteration, and whether it converged.
    """
    rate = pytensor.shared(np.float64(learning_rate), name="learning_rate")
    schedule = PlateauSchedule(rate, window=window, tol=settings.tol)
    bar = _ProgressBar(settings.max_iter, enabled=settings.progressbar, description=description)
    with _closing_lines_replaced(schedule), bar:
        approx = inference.fit(
            settings.max_iter,
            obj_optimizer=pm.adam(learning_rate=rate),
            callbacks=[bar, loss_reporter, schedule],
            progressbar=False,  # the bar above stands in for PyMC's
            more_replacements=replacements or None,
        )
        history = np.asarray(inference.hist, dtype=np.float64)
        if history.size < settings.max_iter and not schedule.converged:
            interrupted(f"{label} at iteration {history.size:,} of {settings.max_iter:,}")
        bar.done(history)
    if schedule.converged:
        outcome = f"{label} converged after {history.size:,} iterations (of at most {settings.max_iter:,})"
    else:
        outcome = (
            f"{label} ran all max_iter={settings.max_iter:,} iterations without converging (raise max_iter, "
            "or tol, to let it converge)"
        )
    ADVI_LOGGER.info(
        f"{outcome}; final loss {final_loss(history):,.6g} (mean of the last {min(PLATEAU_WINDOW, history.size)})."
    )
    return approx, history, schedule.converged


def _full_rank_from(mean_field: pm.MeanField, seed: int) -> pm.FullRankADVI:
    """Full-rank ADVI started at a mean-field fit: its means, and its standard deviations on
    the diagonal of the covariance factor (both parametrise the diagonal through softplus)."""
    full_rank = pm.FullRankADVI(random_seed=seed)
    mean, rho = (mean_field.params_dict[name].get_value() for name in ("mu", "rho"))
    full_rank.approx.params_dict["mu"].set_value(mean)
    full_rank.approx.params_dict["L_tril"].set_value(np.diag(rho)[np.tril_indices(mean.size)])
    return full_rank


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
