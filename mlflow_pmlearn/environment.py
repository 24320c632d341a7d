"""A saved model's Python environment: its pinned requirements and this release as a wheel.

Every model carries the mlflow-pmlearn release that saved it as a wheel in ``wheels/``
(MLflow's folder for a model's own wheels) and names it in ``requirements.txt``, so that an
environment built from the model's files (``mlflow models serve --env-manager uv``) installs
that release, and nothing else than the package index is needed. Where the model is loaded
in an existing environment, the release installed there runs: the model ships no importable
copy of this package that could shadow it (models saved by 0.1.0 ship one in ``code/``).
"""

from __future__ import annotations

import base64
import hashlib
import importlib
import zipfile
from importlib.metadata import distribution
from pathlib import Path
from typing import Any

from mlflow.utils.environment import _mlflow_conda_env
from mlflow.utils.requirements_utils import _get_pinned_requirement

from mlflow_pmlearn.versions import DISTRIBUTION

#: This distribution's import packages, the content of its wheel.
IMPORT_PACKAGES = ("estimators", "mlflow_pmlearn")
WHEELS_FOLDER = "wheels"
_WHEEL_FILE = "Wheel-Version: 1.0\nGenerator: mlflow-pmlearn\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
#: Fixed timestamps make the wheel, and so the model's files, the same bytes on every save.
_ZIP_DATE = (1980, 1, 1, 0, 0, 0)


def get_default_pip_requirements(serialization_format: str = "json") -> list[str]:
    """The libraries a ``pmlearn`` model needs, pinned to the versions installed here.

    This release itself is added to a saved model's requirements as its wheel.

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


def _record_hash(data: bytes) -> str:
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    return f"sha256={digest}"


def write_release_wheel(model_path: Path) -> str:
    """Pack the installed release into ``<model_path>/wheels/`` as a pure-Python wheel.

    The wheel holds the import packages' files as installed here (no bytecode) and the
    distribution's own ``METADATA``; pip and uv install it like the wheel a build would make.

    Parameters
    ----------
    model_path : Path
        The model directory.

    Returns
    -------
    str
        The requirement that installs it, relative to the model directory.
    """
    metadata = distribution(DISTRIBUTION)
    stem = f"{DISTRIBUTION.replace('-', '_')}-{metadata.version}"
    files = []
    for package in IMPORT_PACKAGES:
        package_dir = Path(importlib.import_module(package).__file__).parent
        for path in sorted(package_dir.rglob("*")):
            if path.is_file() and "__pycache__" not in path.parts and path.suffix != ".pyc":
                files.append((path.relative_to(package_dir.parent).as_posix(), path.read_bytes()))
    dist_info = f"{stem}.dist-info"
    # An installed distribution has METADATA; a source tree's egg-info, the same as PKG-INFO.
    core_metadata = metadata.read_text("METADATA") or metadata.read_text("PKG-INFO")
    files.append((f"{dist_info}/METADATA", core_metadata.encode()))
    files.append((f"{dist_info}/WHEEL", _WHEEL_FILE.encode()))
    record = "".join(f"{name},{_record_hash(data)},{len(data)}\n" for name, data in files)
    files.append((f"{dist_info}/RECORD", f"{record}{dist_info}/RECORD,,\n".encode()))

    wheel_name = f"{WHEELS_FOLDER}/{stem}-py3-none-any.whl"
    (model_path / WHEELS_FOLDER).mkdir()
    with zipfile.ZipFile(model_path / wheel_name, "w") as wheel:
        for name, data in files:
            entry = zipfile.ZipInfo(name, date_time=_ZIP_DATE)
            entry.external_attr = 0o644 << 16
            wheel.writestr(entry, data, compress_type=zipfile.ZIP_DEFLATED)
    return wheel_name


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
