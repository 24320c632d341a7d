"""How far a running fit is, for whoever watches it (autolog logs it into the MLflow run).

A watcher (any object with the :class:`FitWatcher` methods) is installed for the fits of one
context with :func:`watching`. ``BayesianEstimator.fit`` tells it, with :func:`fit_starting`,
when the model is built and the engine is about to start; each engine then reports its
progress through a :class:`ProgressReporter`, at most once per the watcher's
``interval_s``; an engine with no progress hook of its own (pathfinder, Laplace, NumPyro,
BlackJAX) reports only a heartbeat (:meth:`ProgressReporter.heartbeat`). With no watcher,
reporting costs one context-variable lookup per engine and one check per step.
The estimators never know who watches: nothing here imports MLflow.
"""

from __future__ import annotations

import contextvars
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, Protocol

import pymc as pm

from estimators.settings import InferenceSettings


class FitWatcher(Protocol):
    """What watches the fits of a context: told when an engine starts, then of its progress."""

    #: Least seconds between two progress reports of one engine.
    interval_s: float

    def fit_starting(self, estimator: Any, model: pm.Model, settings: InferenceSettings) -> None:
        """``estimator``'s model is built and its engine (``settings.inference``) starts now."""

    def progress(self, step: int, values: dict[str, float]) -> None:
        """The running engine is at ``step`` (draws over all chains, or iterations), with ``values``.

        Called from the engine's thread, or from a sampler's own thread (nutpie's); it must not raise.
        """


_watcher: contextvars.ContextVar[FitWatcher | None] = contextvars.ContextVar("pmlearn_fit_watcher", default=None)


@contextmanager
def watching(watcher: FitWatcher) -> Iterator[None]:
    """Report the fits run in this context (this thread, or this task) to ``watcher``."""
    token = _watcher.set(watcher)
    try:
        yield
    finally:
        _watcher.reset(token)


def fit_starting(estimator: Any, model: pm.Model, settings: InferenceSettings) -> None:
    """Tell this context's watcher, if any, that ``estimator``'s engine starts on ``model``."""
    watcher = _watcher.get()
    if watcher is not None:
        watcher.fit_starting(estimator, model, settings)


class ProgressReporter:
    """An engine's progress, passed to this context's watcher at most once per its ``interval_s``.

    Made in the engine's thread when the engine starts (so a sampler's own thread reports to
    the same watcher). An engine asks :meth:`due` before it computes what it reports.
    """

    def __init__(self) -> None:
        self.watcher = _watcher.get()
        self._next = 0.0  # the first report is due at once
        self._last_step = -1

    def due(self) -> bool:
        """Whether a report now would be passed on (a watcher, and its interval has passed)."""
        return self.watcher is not None and time.monotonic() >= self._next

    def report(self, step: int, **values: float) -> None:
        """Pass ``values`` at ``step`` to the watcher (call it when :meth:`due`).

        A step no further than the last one passed on is not passed again: a sampler that is
        still starting (nutpie, before its first draw) reports zero draws at every tick.
        """
        if self.watcher is None or step <= self._last_step:
            return
        self._last_step = int(step)
        self._next = time.monotonic() + self.watcher.interval_s
        self.watcher.progress(int(step), {name: float(value) for name, value in values.items()})

    @contextmanager
    def heartbeat(self) -> Iterator[None]:
        """While the block runs, report (with no values: the watcher knows the time) once per interval.

        For an engine that offers no progress hook: the watcher still hears that it runs.
        The reports come from a daemon thread, stopped when the block ends.
        """
        if self.watcher is None:
            yield
            return
        stop = threading.Event()

        def beat() -> None:
            beats = 0
            while not stop.wait(self.watcher.interval_s):
                beats += 1
                self.report(beats)

        thread = threading.Thread(target=beat, name="pmlearn-fit-heartbeat", daemon=True)
        thread.start()
        try:
            yield
        finally:
            stop.set()
            thread.join()
