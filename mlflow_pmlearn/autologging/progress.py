"""A fit's run while it runs: its settings before the engine starts, its progress, its status.

:class:`RunProgress` is the :class:`~estimators.inference.progress.FitWatcher` that autolog
installs around a fit. When the estimator's engine is about to start it logs the run's
params (settings, priors, data shape) and the status tag; while the engine runs, the
metrics ``progress/<name>`` at the engine's step, at most once per :data:`PROGRESS_INTERVAL_S`
(and, for an engine that reports nothing but a heartbeat, ``progress/elapsed_s`` alone):

- NUTS, PyMC's sampler and nutpie: ``draws`` (over all chains, tuning included),
  ``fraction_done``, ``divergences`` (tuning's included: the final ``divergences`` metric
  counts the kept draws only), ``step_size`` (nutpie: the chains' mean), ``tuning`` (1 or 0);
- ADVI: ``iterations`` and ``loss`` (the mean of the last 100 iterations' negative ELBO);
- every engine: ``elapsed_s``, the seconds since the engine started.

It writes through ``MlflowClient`` with the run's id, since nutpie reports from its own
thread, where MLflow's active run is not set, and asynchronously (MLflow's own queue), so the
engine never waits for the store; :meth:`RunProgress.wait` waits for what it has logged. A
failure to log becomes one warning.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pymc as pm
from mlflow.entities import Metric
from mlflow.tracking import MlflowClient

from estimators.settings import InferenceSettings
from mlflow_pmlearn.autologging.failures import attempt, warn

#: Least seconds between two progress logs of one fit: at most one metric batch a second,
#: and one at least every second while the engine reports (every draw for PyMC's sampler,
#: every 100 ms for nutpie, every iteration for ADVI, every second for the heartbeat).
PROGRESS_INTERVAL_S = 1.0
#: Run tag saying where the fit is: "fitting: ...", "logging", "finished", "failed: ...".
STATUS_TAG = "pmlearn.status"
#: The metrics' prefix (the MLflow UI groups the metrics by it).
PROGRESS_PREFIX = "progress/"


def describe_engine(settings: InferenceSettings) -> str:
    """The engine in words, for the status tag: ``NUTS (pymc sampler, 2 chains x (1000 tuning + 1000 draws))``."""
    if settings.inference == "nuts":
        return (
            f"NUTS ({settings.nuts_sampler} sampler, {settings.n_chains} chains x "
            f"({settings.n_tune} tuning + {settings.n_draws} draws))"
        )
    return settings.inference


def set_status(run_id: str, status: str) -> None:
    """Set the run's :data:`STATUS_TAG`; a failure becomes a warning."""
    attempt("the status tag", lambda: MlflowClient().set_tag(run_id, STATUS_TAG, status))


class RunProgress:
    """Logs the fit of ``estimator`` into the run ``run_id`` while it runs (see the module).

    Parameters
    ----------
    run_id : str
        The run.
    estimator : BayesianEstimator
        The estimator whose fit is watched; the fits of any other (nested) estimators are not.
    log_settings : callable
        ``log_settings(model, settings)`` logs the run's params once the model is built.
    """

    def __init__(
        self,
        run_id: str,
        estimator: Any,
        log_settings: Callable[[pm.Model, InferenceSettings], None],
    ):
        self.run_id = run_id
        self.estimator = estimator
        self.log_settings = log_settings
        self.interval_s = PROGRESS_INTERVAL_S
        self._started: float | None = None
        self._failed = False
        self._pending: list = []
        #: Whether the run's params were logged when the engine started (then not again after).
        self.settings_logged = False

    def fit_starting(self, estimator: Any, model: pm.Model, settings: InferenceSettings) -> None:
        if estimator is not self.estimator:
            return
        self._started = time.monotonic()
        try:
            self.log_settings(model, settings)
            self.settings_logged = True
        except Exception as error:  # logged after the fit instead
            warn("the settings before the fit", error)
        set_status(self.run_id, f"fitting: {describe_engine(settings)}")

    def progress(self, step: int, values: dict[str, float]) -> None:
        if self._started is None or self._failed:
            return
        timestamp = int(time.time() * 1000)
        values = {**values, "elapsed_s": time.monotonic() - self._started}
        metrics = [Metric(PROGRESS_PREFIX + name, value, timestamp, step) for name, value in values.items()]
        try:
            self._pending.append(MlflowClient().log_batch(self.run_id, metrics=metrics, synchronous=False))
        except Exception as error:  # the fit goes on; the run gets no more progress
            self._failed = True
            warn("the fit's progress", error)

    def wait(self) -> None:
        """Wait until the progress logged so far is stored (before the run goes on or ends)."""
        pending, self._pending = self._pending, []
        for operations in pending:
            attempt("the fit's progress", operations.wait)
