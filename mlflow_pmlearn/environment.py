"""A saved model's Python environment: its pinned requirements, this release among them.

A saved model names the libraries it needs, pinned to the versions that saved it, and this
release as ``mlflow-pmlearn==<version>``, as every MLflow flavor pins its library. An
environment built from the model's files (``mlflow models serve --env-manager uv``)
installs them from the package index (or from a private index or a find-links folder that
``pip``/``uv`` are pointed to). To ship the wheels inside a registered model for an offline
environment, use MLflow's own ``mlflow.models.utils.add_libraries_to_model``.
"""

from __future__ import annotations

from typing import Any

from mlflow.utils.environment import _mlflow_conda_env
from mlflow.utils.requirements_utils import _get_pinned_requirement

import estimators
from mlflow_pmlearn.versions import DISTRIBUTION

#: This distribution's import packages.
IMPORT_PACKAGES = ("estimators", "mlflow_pmlearn")


def get_default_pip_requirements(serialization_format: str = "json") -> list[str]:
    """The libraries a ``pmlearn`` model needs, pinned to the versions installed here.

    This release itself (:func:`release_requirement`) is added to every saved model's
    requirements, also where the user gives their own.

    Parameters
    ----------
    serialization_format : {"json", "cloudpickle"}
        ``"cloudpickle"`` adds cloudpickle.

    Returns
    -------
    list of str
        Pinned requirements.
    """
    packages = ["pymc", "pytensor", "arviz", "xarray", "h5netcdf", "h5py", "scikit-learn", "pandas", "numpy"]
    if serialization_format == "cloudpickle":
        packages.append("cloudpickle")
    return [_get_pinned_requirement(package) for package in packages]


def get_default_conda_env(serialization_format: str = "json") -> dict[str, Any]:
    """The default Conda environment of a ``pmlearn`` model.

    Returns
    -------
    dict
        A Conda environment specification.
    """
    return _mlflow_conda_env(additional_pip_deps=get_default_pip_requirements(serialization_format))


def release_requirement() -> str:
    """This release, pinned: ``mlflow-pmlearn==<version>`` (the version of the code running)."""
    return f"{DISTRIBUTION}=={estimators.__version__}"


def _insert_after_mlflow(requirements: list, requirement: str) -> None:
    position = 1 if requirements[:1] and str(requirements[0]).startswith("mlflow") else 0
    requirements.insert(position, requirement)


def add_requirement(conda_env: dict, pip_requirements: list[str], requirement: str) -> None:
    """Add ``requirement`` to the pip requirements and to the Conda environment's pip list."""
    _insert_after_mlflow(pip_requirements, requirement)
    dependencies = conda_env.setdefault("dependencies", [])
    pip_section = next((item for item in dependencies if isinstance(item, dict) and "pip" in item), None)
    if pip_section is None:
        pip_section = {"pip": []}
        dependencies.extend(["pip", pip_section])
    _insert_after_mlflow(pip_section["pip"], requirement)
