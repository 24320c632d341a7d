"""The flavor's name and the library versions that saved models and autologged runs record."""

from __future__ import annotations

from collections.abc import Iterable
from importlib.metadata import PackageNotFoundError, version

FLAVOR_NAME = "pmlearn"
#: This package's distribution name, as pip knows it.
DISTRIBUTION = "mlflow-pmlearn"


def library_versions(distributions: Iterable[str]) -> dict[str, str | None]:
    """The installed version of each distribution, by name; None for one not installed.

    Parameters
    ----------
    distributions : iterable of str
        Distribution names, e.g. ``"pymc"``, ``"mlflow-pmlearn"``.

    Returns
    -------
    dict
        Version strings (or None), in the order given.
    """
    result = {}
    for name in distributions:
        try:
            result[name] = version(name)
        except PackageNotFoundError:
            result[name] = None
    return result
