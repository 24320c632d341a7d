"""Estimator <-> directory: a JSON document and the ArviZ trace as NetCDF.

``estimator.json`` holds the class, the hyper-parameters, the fitted state (feature
names, classes, ...), the format version and the versions of the libraries that wrote
it; ``trace.nc`` holds ``idata_`` (posterior, training data, fit history). Loading a
built-in estimator unpickles nothing: the class is looked up in an allow-list. A bespoke
class is imported only from code shipped with the model (``code_paths``; a module the
process has already imported is used as it is, which runs nothing), or, when the user
saved it with ``serialization_format="cloudpickle"``, from a pickle that MLflow's
``MLFLOW_ALLOW_PICKLE_DESERIALIZATION`` switch must allow.
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import os
import sys
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import arviz as az
from mlflow.environment_variables import MLFLOW_ALLOW_PICKLE_DESERIALIZATION
from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import INVALID_PARAMETER_VALUE

from estimators.base import BayesianEstimator

FORMAT_VERSION = 1
CONFIG_FILE = "estimator.json"
TRACE_FILE = "trace.nc"
PICKLED_CLASS_FILE = "estimator_class.pkl"
SERIALIZATION_FORMATS = ("json", "cloudpickle")

#: The built-in estimators, by the public path recorded in ``estimator.json``.
BUILTIN_ESTIMATORS = (
    "estimators.linear_model.LinearRegression",
    "estimators.linear_model.LogisticRegression",
    "estimators.linear_model.HierarchicalLogisticRegression",
    "estimators.gaussian_process.GaussianProcessRegressor",
    "estimators.gaussian_process.StudentTProcessRegressor",
    "estimators.gaussian_process.SparseGaussianProcessRegressor",
    "estimators.naive_bayes.GaussianNB",
    "estimators.mixture.GaussianMixture",
    "estimators.mixture.DirichletProcessMixture",
    "estimators.neural_network.MLPClassifier",
)


def _distribution_version(name: str) -> str | None:
    try:
        return version(name)
    except PackageNotFoundError:
        return None


def _import_attribute(path: str) -> Any:
    module_name, _, attribute = path.rpartition(".")
    return getattr(importlib.import_module(module_name), attribute)


def _builtin_path(estimator_class: type) -> str | None:
    """The public path of a built-in estimator class, or None for any other class."""
    for path in BUILTIN_ESTIMATORS:
        package, _, name = path.rpartition(".")
        if estimator_class.__name__ == name and estimator_class.__module__.startswith(package):
            if _import_attribute(path) is estimator_class:
                return path
    return None


def _class_path(estimator_class: type, serialization_format: str) -> str:
    builtin = _builtin_path(estimator_class)
    if builtin is not None:
        return builtin
    module, qualname = estimator_class.__module__, estimator_class.__qualname__
    if serialization_format == "json" and (module == "__main__" or "<locals>" in qualname):
        where = "the __main__ script or notebook" if module == "__main__" else "a function"
        raise MlflowException(
            f"{qualname} is defined in {where}, so a model saved with it could not find the "
            "class by name when loaded. Define it in a module, import it from there and save "
            'with code_paths=[<that module>], or save with serialization_format="cloudpickle".',
            INVALID_PARAMETER_VALUE,
        )
    return f"{module}.{qualname}"


def _json_params(estimator: BayesianEstimator) -> dict[str, Any]:
    params = estimator.get_params(deep=False)
    try:
        json.dumps(params)
    except TypeError as error:
        raise MlflowException(
            f"The hyper-parameters of {type(estimator).__name__} cannot be written as JSON "
            f"({error}); give them JSON-compatible values.",
            INVALID_PARAMETER_VALUE,
        ) from None
    return params


def save_estimator(estimator: BayesianEstimator, directory: str | os.PathLike, serialization_format: str = "json") -> None:
    """Write a fitted estimator into an existing, empty ``directory``.

    Parameters
    ----------
    estimator : BayesianEstimator
        A fitted estimator.
    directory : path
        Where to write ``estimator.json`` and ``trace.nc``.
    serialization_format : {"json", "cloudpickle"}
        ``"cloudpickle"`` also pickles the estimator class, for bespoke classes whose code
        is not importable where the model is loaded (e.g. defined in a notebook).
    """
    if serialization_format not in SERIALIZATION_FORMATS:
        raise MlflowException(
            f"serialization_format must be one of {SERIALIZATION_FORMATS}; got {serialization_format!r}.",
            INVALID_PARAMETER_VALUE,
        )
    directory = Path(directory)
    estimator_class = type(estimator)
    config = {
        "format_version": FORMAT_VERSION,
        "estimator_class": _class_path(estimator_class, serialization_format),
        "serialization_format": serialization_format,
        "params": _json_params(estimator),
        "fitted_state": estimator.get_fitted_state(),
        "versions": {
            name: _distribution_version(name)
            for name in ("mlflow-pmlearn", "pymc", "pytensor", "arviz", "scikit-learn")
        },
    }
    if serialization_format == "cloudpickle":
        import cloudpickle

        # By value, so that loading does not need the class's module to be importable.
        module = sys.modules.get(estimator_class.__module__)
        by_value = module is not None and estimator_class.__module__ != "__main__"
        if by_value:
            cloudpickle.register_pickle_by_value(module)
        try:
            (directory / PICKLED_CLASS_FILE).write_bytes(cloudpickle.dumps(estimator_class))
        finally:
            if by_value:
                cloudpickle.unregister_pickle_by_value(module)
    estimator.idata_.to_netcdf(str(directory / TRACE_FILE))
    (directory / CONFIG_FILE).write_text(json.dumps(config, indent=2))


def _is_within(path: str | None, directory: Path) -> bool:
    return path is not None and Path(path).resolve().is_relative_to(directory.resolve())


def _importable_from(module_name: str, code_directory: Path | None) -> bool:
    """Whether importing ``module_name`` runs only code from ``code_directory``.

    Modules already imported run nothing; each one that is not (the module and its
    parent packages) must be found inside ``code_directory``. Parents are checked before
    ``find_spec`` looks up a child, because that imports the parent.
    """
    parts = module_name.split(".")
    for depth in range(1, len(parts) + 1):
        name = ".".join(parts[:depth])
        if name in sys.modules:
            continue
        if code_directory is None:
            return False
        spec = importlib.util.find_spec(name)
        if spec is None:
            return False
        locations = [spec.origin] if spec.has_location else list(spec.submodule_search_locations or [])
        if not locations or not all(_is_within(location, code_directory) for location in locations):
            return False
    return True


def _resolve_class(config: dict[str, Any], directory: Path, code_directory: Path | None) -> type:
    class_path = config["estimator_class"]
    if class_path in BUILTIN_ESTIMATORS:
        return _import_attribute(class_path)
    if config.get("serialization_format") == "cloudpickle":
        if not MLFLOW_ALLOW_PICKLE_DESERIALIZATION.get():
            raise MlflowException(
                f"The model at {directory} holds a pickled estimator class ({class_path}), and "
                "pickle deserialization is disabled (MLFLOW_ALLOW_PICKLE_DESERIALIZATION=false).",
                INVALID_PARAMETER_VALUE,
            )
        import cloudpickle

        estimator_class = cloudpickle.loads((directory / PICKLED_CLASS_FILE).read_bytes())
    else:
        module_name, _, attribute = class_path.rpartition(".")
        if not module_name or not _importable_from(module_name, code_directory):
            raise MlflowException(
                f"{directory / CONFIG_FILE} names the class {class_path!r}, which is neither a "
                "built-in pmlearn estimator nor defined in code shipped with the model; refusing "
                "to import it. Save bespoke models with code_paths=[<their module>] (or "
                'serialization_format="cloudpickle").',
                INVALID_PARAMETER_VALUE,
            )
        estimator_class = getattr(importlib.import_module(module_name), attribute, None)
    if not (isinstance(estimator_class, type) and issubclass(estimator_class, BayesianEstimator)):
        raise MlflowException(
            f"{class_path!r} in {directory} is not a BayesianEstimator subclass.", INVALID_PARAMETER_VALUE
        )
    return estimator_class


def load_estimator(directory: str | os.PathLike, code_directory: str | os.PathLike | None = None) -> BayesianEstimator:
    """Read an estimator written by :func:`save_estimator`.

    Parameters
    ----------
    directory : path
        The directory holding ``estimator.json`` and ``trace.nc``.
    code_directory : path, optional
        Code shipped with the model; bespoke classes are imported only from there (or
        taken from modules already imported).

    Returns
    -------
    BayesianEstimator
        The fitted estimator, predicting as the saved one did.
    """
    directory = Path(directory)
    config_path = directory / CONFIG_FILE
    try:
        config = json.loads(config_path.read_text())
    except FileNotFoundError:
        raise MlflowException(f"The model has no {CONFIG_FILE}: {config_path} is missing.") from None
    except json.JSONDecodeError as error:
        raise MlflowException(f"{config_path} is not valid JSON: {error}.") from None
    written_with = config.get("format_version")
    if not isinstance(written_with, int) or written_with > FORMAT_VERSION:
        raise MlflowException(
            f"{config_path} was written in pmlearn format version {written_with}; this mlflow-pmlearn "
            f"reads versions up to {FORMAT_VERSION}. Upgrade mlflow-pmlearn to load it."
        )
    estimator_class = _resolve_class(config, directory, Path(code_directory) if code_directory else None)
    trace_path = directory / TRACE_FILE
    try:
        idata = az.from_netcdf(str(trace_path))
    except FileNotFoundError:
        raise MlflowException(f"The model has no trace: {trace_path} is missing.") from None
    except Exception as error:  # netCDF/HDF5 raise many types for a damaged file
        raise MlflowException(f"{trace_path} could not be read as an ArviZ NetCDF trace: {error}") from None
    return estimator_class.from_fitted_state(config["params"], config["fitted_state"], idata)
