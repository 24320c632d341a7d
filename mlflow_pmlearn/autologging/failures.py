"""How a part of autologging that fails is reported: as a warning, while the other parts go on."""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any


def warn(what: str, error: BaseException) -> None:
    """Warn that ``what`` could not be logged, and why."""
    # Inside safe_patch, warnings go to MLflow's autologging logger (and silent=True mutes them).
    warnings.warn(f"pmlearn autologging could not log {what}: {type(error).__name__}: {error}", stacklevel=3)


def attempt(what: str, action: Callable[[], Any]) -> Any:
    """``action()``, or None and a warning if it raises: one part failing never stops the others."""
    try:
        return action()
    except Exception as error:
        warn(what, error)
        return None
