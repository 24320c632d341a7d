"""What every engine shares: progress on the console, refusing a half-finished fit, and
naming what an engine cannot take (a missing extra, minibatches)."""

from __future__ import annotations

import importlib
import logging
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

#: Seconds of compiling in one fit after which the console says that the model is compiling.
COMPILE_NOTICE_AFTER = 1.0
#: What it says (through PyMC's logger, which owns the console handler).
COMPILE_NOTICE = "Compiling the model (compiled code is cached on disk for later fits)..."


def resolve_progressbar(progressbar: bool | None) -> bool:
    """Show progress when asked, or by default when standard error is a terminal."""
    if progressbar is None:
        return sys.stderr.isatty()
    return bool(progressbar)


def interrupted(where: str) -> None:
    """Raise the ``KeyboardInterrupt`` that PyMC caught, so that ``fit`` stops instead of returning.

    On Ctrl-C, ``pm.fit`` and ``pm.sample`` stop and return what they have so far; an
    estimator must not pass that off as a fitted posterior (nor autolog log and register it).
    """
    raise KeyboardInterrupt(f"The fit was interrupted: {where}; no estimator was fitted.")


def interruption_behind(error: BaseException) -> KeyboardInterrupt | SystemExit | None:
    """The Ctrl-C or exit request in ``error``'s chain of causes and contexts, if any.

    A ``KeyboardInterrupt``, or the ``SystemExit`` an application's SIGTERM handler raises,
    that lands while compiled code runs can come out of it as another error with the
    interrupt in its chain (CPython's ``SystemError``: "returned a result with an exception
    set").
    """
    seen: set[int] = set()
    cause: BaseException | None = error
    while cause is not None and id(cause) not in seen:
        if isinstance(cause, (KeyboardInterrupt, SystemExit)):
            return cause
        seen.add(id(cause))
        cause = cause.__cause__ or cause.__context__
    return None


@contextmanager
def compile_notice(*, enabled: bool) -> Iterator[None]:
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


def require(modules: tuple[str, ...], extra: str, engine: str) -> None:
    """Raise an ``ImportError`` that names the extra to install when ``engine`` needs a missing module."""
    missing = []
    for module in modules:
        try:
            importlib.import_module(module)
        except ImportError:
            missing.append(module)
    if missing:
        raise ImportError(
            f"{engine} needs {', '.join(missing)}, which is not installed. Install the "
            f'"{extra}" extra: pip install "mlflow-pmlearn[{extra}]"'
        )


def refuse_minibatches(engine: str, batch_size: int | None) -> None:
    """Engines other than ADVI fit the exact posterior on the full data: no minibatches."""
    if batch_size is not None:
        raise ValueError(
            f"batch_size={batch_size} applies to ADVI only: {engine} needs the full data at every step. "
            f'Set batch_size=None to use {engine}, or inference="advi" (or "fullrank_advi") to fit on minibatches.'
        )
