"""Keeps this distribution's two import packages, ``estimators`` and ``mlflow_pmlearn``, from one installation.

MLflow puts a model's ``code/`` folder first on ``sys.path`` before it imports the model's
loader, and a model saved by mlflow-pmlearn 0.1.0 carries copies of both packages there.
Once this ``estimators`` is imported, ``mlflow_pmlearn`` is found only beside it, so a
process never runs one package from such a copy and the other from the installed release.
"""

from __future__ import annotations

import importlib.machinery
import sys
from pathlib import Path

_SIBLING = "mlflow_pmlearn"
_INSTALLATION = str(Path(__file__).resolve().parent.parent)


class SiblingFinder:
    """A ``sys.meta_path`` finder that looks for ``mlflow_pmlearn`` only beside this ``estimators``."""

    @staticmethod
    def find_spec(name: str, path=None, target=None) -> importlib.machinery.ModuleSpec | None:
        if name != _SIBLING:
            return None
        return importlib.machinery.PathFinder.find_spec(name, [_INSTALLATION])


def keep_packages_together() -> None:
    """Put :class:`SiblingFinder` first on ``sys.meta_path`` (once per process)."""
    if SiblingFinder not in sys.meta_path:
        sys.meta_path.insert(0, SiblingFinder)
