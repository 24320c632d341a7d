"""Estimator <-> directory: a JSON document and the trace (an ``xarray.DataTree``) as NetCDF.

``estimator.json`` holds the class, the hyper-parameters, the fitted state (feature
names, classes, ...), the format version and the versions of the libraries that wrote
it; ``trace.nc`` holds ``idata_`` (posterior, training data, fit history). Loading a
built-in estimator unpickles nothing: the class is looked up in an allow-list. A bespoke
class is imported only from code shipped with the model (``code_paths``; a module the
process has already imported is used as it is, which runs nothing), or, when the user
saved it with ``serialization_format="cloudpickle"``, from a pickle that MLflow's
``MLFLOW_ALLOW_PICKLE_DESERIALIZATION`` switch must allow.

A damaged model is refused with an ``MlflowException`` naming the file and the problem:
a missing file, a document that is not JSON or has missing or wrong-typed fields
(:func:`validate_config`), a trace that does not match the SHA-256 recorded when it was
written or cannot be read as NetCDF, or a posterior whose variables are not those of the
model the class builds (:func:`check_trace_fits_model`).

A hostile one is refused the same way before it can take memory, run code or reach
outside the model (:mod:`mlflow_pmlearn.safety`): every file is read only inside its
folder, ``estimator.json`` and a pickled class only up to ``MAX_DOCUMENT_BYTES``, the trace
only once its HDF5 metadata, walked within limits, shows arrays whose *decoded* sizes fit
the estimator's settings and a byte budget (``MLFLOW_PMLEARN_MAX_TRACE_BYTES``, default
2 GiB), and the estimator only once the memory its predictor would allocate fits the same
budget. A bespoke class's module is imported by file from the model's ``code`` folder
(:mod:`mlflow_pmlearn.model_code`), never through ``sys.path``, and only where
``MLFLOW_ALLOW_MODEL_CODE_EXECUTION`` allows.
"""

from __future__ import annotations

import hashlib
import importlib
import json
import logging
import os
import re
import sys
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr
from mlflow.environment_variables import MLFLOW_ALLOW_PICKLE_DESERIALIZATION
from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import INVALID_PARAMETER_VALUE

from estimators.base import BayesianEstimator
from mlflow_pmlearn.model_code import import_estimator_class
from mlflow_pmlearn.safety import (
    MAX_DOCUMENT_BYTES,
    MAX_TRACE_BYTES_VARIABLE,
    DeclaredArray,
    max_predictor_bytes,
    max_trace_bytes,
    model_file,
    refuse_model_code_unless_allowed,
    scan_trace,
)
from mlflow_pmlearn.versions import DISTRIBUTION, library_versions

_logger = logging.getLogger(__name__)

#: The saved layout's version. 1: mlflow-pmlearn 0.1.0 (PyMC 5 trace; this package's code
#: copied into the model's ``code/``). 2: 0.2.0 and later (PyMC 6 trace; 0.2.0 also shipped
#: its release as a wheel in ``wheels/``, later releases pin it). Both load.
FORMAT_VERSION = 2
CONFIG_FILE = "estimator.json"
TRACE_FILE = "trace.nc"
PICKLED_CLASS_FILE = "estimator_class.pkl"
SERIALIZATION_FORMATS = ("json", "cloudpickle")
#: The NetCDF library that writes and reads traces (HDF5 through h5py, no netCDF4 C library).
NETCDF_ENGINE = "h5netcdf"

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
    "estimators.formula.BambiRegressor",
    "estimators.formula.BambiClassifier",
)


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
    params = estimator.saved_params()
    try:
        json.dumps(params)
    except TypeError as error:
        raise MlflowException(
            f"The hyper-parameters of {type(estimator).__name__} cannot be written as JSON "
            f"({error}); give them JSON-compatible values.",
            INVALID_PARAMETER_VALUE,
        ) from None
    return params


def save_estimator(
    estimator: BayesianEstimator, directory: str | os.PathLike, serialization_format: str = "json"
) -> None:
    """Write a fitted estimator into an existing, empty ``directory``.

    Parameters
    ----------
    estimator : BayesianEstimator
        A fitted estimator.
    directory : path
        Where to write ``estimator.json`` and ``trace.nc`` (whose SHA-256 the JSON records).
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
        "versions": library_versions((DISTRIBUTION, "pymc", "pytensor", "arviz", "scikit-learn")),
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
    estimator.idata_.to_netcdf(directory / TRACE_FILE, engine=NETCDF_ENGINE)
    config["trace_sha256"] = sha256_of(directory / TRACE_FILE)
    (directory / CONFIG_FILE).write_text(json.dumps(config, indent=2))


def sha256_of(path: str | os.PathLike) -> str:
    """The SHA-256 of a file, as lower-case hexadecimal digits."""
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _resolve_class(config: dict[str, Any], directory: Path, code_directory: Path | None) -> type:
    class_path = config["estimator_class"]
    if class_path in BUILTIN_ESTIMATORS:
        if code_directory is not None and config["format_version"] >= 2:  # 0.1.0 shipped its own copy there
            _logger.warning(
                "The model at %s ships code in %s; a built-in pmlearn estimator runs none of it (ignored).",
                directory,
                code_directory,
            )
        return _import_attribute(class_path)
    if config.get("serialization_format") == "cloudpickle":
        if not MLFLOW_ALLOW_PICKLE_DESERIALIZATION.get():
            raise MlflowException(
                f"The model at {directory} holds a pickled estimator class ({class_path}), and "
                "pickle deserialization is disabled (MLFLOW_ALLOW_PICKLE_DESERIALIZATION=false).",
                INVALID_PARAMETER_VALUE,
            )
        refuse_model_code_unless_allowed(f"the pickled estimator class {class_path}", directory)
        import cloudpickle

        pickled = model_file(directory, PICKLED_CLASS_FILE, "pickled estimator class", MAX_DOCUMENT_BYTES).read_bytes()
        try:
            estimator_class = cloudpickle.loads(pickled)
        except Exception as error:  # a damaged pickle raises anything
            raise MlflowException(
                f"{directory / PICKLED_CLASS_FILE} could not be unpickled: {type(error).__name__}: {error}"
            ) from None
    else:
        estimator_class = import_estimator_class(class_path, code_directory, directory)
    if not (isinstance(estimator_class, type) and issubclass(estimator_class, BayesianEstimator)):
        raise MlflowException(
            f"{class_path!r} in {directory} is not a BayesianEstimator subclass.", INVALID_PARAMETER_VALUE
        )
    return estimator_class


#: The fields of ``estimator.json``: name -> (JSON type, required).
CONFIG_FIELDS: dict[str, tuple[type, bool]] = {
    "format_version": (int, True),
    "estimator_class": (str, True),
    "serialization_format": (str, False),
    "params": (dict, True),
    "fitted_state": (dict, True),
    "versions": (dict, False),
    "trace_sha256": (str, False),
}
_JSON_TYPE_NAMES = {
    dict: "an object",
    list: "an array",
    str: "a string",
    int: "an integer",
    float: "a number",
    bool: "a boolean",
    type(None): "null",
}


def _json_type(value: Any) -> str:
    return _JSON_TYPE_NAMES.get(type(value), type(value).__name__)


def read_json_document(path: Path) -> Any:
    """The JSON document at ``path``, or an ``MlflowException`` naming it and what is wrong with it."""
    try:
        return json.loads(path.read_bytes())
    except (ValueError, RecursionError) as error:  # decoding, syntax, integers too long; RecursionError: too deep
        raise MlflowException(f"{path} is not valid JSON: {error}.") from None


def validate_config(config: Any, path: str | os.PathLike) -> dict[str, Any]:
    """Check the fields of an ``estimator.json`` document: their presence, types and values.

    A document written by a newer format version is refused first, with the version
    needed (a newer version may have changed any other field).

    Parameters
    ----------
    config : Any
        The parsed JSON document.
    path : path
        Where it was read from, for the error message.

    Returns
    -------
    dict
        ``config``, valid.

    Raises
    ------
    MlflowException
        Naming ``path`` and every problem found.
    """
    if not isinstance(config, dict):
        raise MlflowException(f"{path} must hold a JSON object; it holds {_json_type(config)}.")
    written_with = config.get("format_version")
    if type(written_with) is int and written_with > FORMAT_VERSION:
        raise MlflowException(
            f"{path} was written in pmlearn format version {written_with}; this mlflow-pmlearn "
            f"reads versions up to {FORMAT_VERSION}. Upgrade mlflow-pmlearn to load it."
        )
    problems = []
    for name, (expected, required) in CONFIG_FIELDS.items():
        if name not in config:
            if required:
                problems.append(f"the field {name!r} is missing")
        elif type(config[name]) is not expected:  # not isinstance: True is no format version
            problems.append(
                f"the field {name!r} must be {_JSON_TYPE_NAMES[expected]}, not "
                f"{_json_type(config[name])} ({config[name]!r:.60})"
            )
    if not problems:
        if written_with < 1:
            problems.append(f"the field 'format_version' must be at least 1, not {written_with}")
        if not config["estimator_class"]:
            problems.append("the field 'estimator_class' is empty")
        if config.get("serialization_format", "json") not in SERIALIZATION_FORMATS:
            problems.append(
                f"the field 'serialization_format' must be one of {SERIALIZATION_FORMATS}, not "
                f"{config['serialization_format']!r}"
            )
        if "trace_sha256" in config and not re.fullmatch(r"[0-9a-f]{64}", config["trace_sha256"]):
            problems.append("the field 'trace_sha256' must be 64 lower-case hexadecimal digits")
    if problems:
        raise MlflowException(f"{path} is not a valid pmlearn model document: {'; '.join(problems)}.")
    return config


def _length(arrays: dict[str, DeclaredArray], name: str) -> int | None:
    """The declared length of the dataset ``name`` along its first axis; None without one."""
    array = arrays.get(name)
    return array.shape[0] if array is not None and array.shape else None


def _check_declared_sizes(
    path: Path, arrays: dict[str, DeclaredArray], config: dict[str, Any], estimator_class: type
) -> None:
    """Refuse a trace whose declared arrays disagree with ``estimator.json``.

    Compared with the configuration: the draws per chain with ``n_draws`` and the chains
    with ``n_chains`` (where the parameters name them), and the rows of the training
    inputs (``input_names``) and of the observed target with each other. The shapes of
    the model's variables need the model, built from the training data: they are
    compared once the trace, within the budget, is read (:func:`check_trace_fits_model`).
    """
    params, problems = config["params"], []
    draws, chains = _length(arrays, "posterior/draw"), _length(arrays, "posterior/chain")
    n_draws, n_chains = params.get("n_draws"), params.get("n_chains")
    if type(n_draws) is int and draws is not None and draws != n_draws:
        problems.append(f"the posterior has {draws:,} draws per chain where n_draws is {n_draws:,}")
    if type(n_chains) is int and chains is not None and chains > n_chains:
        problems.append(f"the posterior has {chains:,} chains, more than n_chains={n_chains:,}")
    training = [f"constant_data/{name}" for name in estimator_class.input_names]
    training += [name for name, array in arrays.items() if name.startswith("observed_data/") and not array.is_dimension]
    rows = {name: count for name in training if (count := _length(arrays, name)) is not None}
    if len(set(rows.values())) > 1:
        listed = ", ".join(f"{name} has {count:,}" for name, count in rows.items())
        problems.append(f"the training data disagree on their number of rows ({listed})")
    if problems:
        raise MlflowException(
            f"{path} does not fit the {estimator_class.__name__} that {CONFIG_FILE} describes: "
            f"{'; '.join(problems)}. Refusing to read it."
        )


def _unreadable(path: Path, error: Exception) -> MlflowException:
    return MlflowException(
        f"{path} could not be read as a NetCDF trace (truncated or corrupted?): {type(error).__name__}: {error}"
    )


def _read_trace(path: Path, config: dict[str, Any], estimator_class: type) -> xr.DataTree:
    """The whole trace, read into memory (its file closed), or an error naming the problem.

    Its checksum is compared first, then its HDF5 metadata is walked within limits
    (:func:`~mlflow_pmlearn.safety.scan_trace`) and compared with ``estimator.json``
    (:func:`_check_declared_sizes`) before xarray opens it: opening decodes every
    coordinate, and a declared coordinate of billions of draws is an allocation of that
    size. Read eagerly (``load_datatree``): opened lazily, a damaged data block would
    otherwise surface at the first prediction, and the file would stay open.
    """
    expected_sha256 = config.get("trace_sha256")
    if expected_sha256 is not None and sha256_of(path) != expected_sha256:
        raise MlflowException(
            f"{path} is corrupted or was changed after it was saved: its SHA-256 differs from "
            f"the one recorded in {CONFIG_FILE}."
        )
    try:
        contents = scan_trace(path)
    except MlflowException:
        raise
    except Exception as error:  # HDF5 raises many types for a damaged file
        raise _unreadable(path, error) from None
    if contents.foreign:
        raise MlflowException(
            f"{path} holds what a pmlearn trace does not: {'; '.join(contents.foreign)}. Refusing to read it."
        )
    _check_declared_sizes(path, contents.arrays, config, estimator_class)
    try:
        return xr.load_datatree(path, engine=NETCDF_ENGINE)
    except Exception as error:  # netCDF/HDF5 raise many types for a damaged file
        raise _unreadable(path, error) from None


def _shape_text(shape: tuple[int, ...]) -> str:
    return str(tuple(int(size) for size in shape))


def check_trace_fits_model(estimator: BayesianEstimator, trace_path: str | os.PathLike) -> None:
    """Check that a loaded estimator's posterior is one of the model its class builds.

    The posterior must carry the seed of the predictive draws (its ``pmlearn_seed``
    attribute). The model is rebuilt from the training data kept in the trace; each of its free
    variables must be in the posterior with the shape the model gives it and finite draws
    (prediction reads them), and every posterior variable must be a free or deterministic
    variable of the model. The shapes of deterministic variables are not compared:
    computed on minibatches, they may legitimately differ from the full-data model's.

    Parameters
    ----------
    estimator : BayesianEstimator
        The estimator rebuilt from ``estimator.json`` with the trace as ``idata_``.
    trace_path : path
        The trace file, for the error message.

    Raises
    ------
    MlflowException
        Naming the file and the variables that differ.
    """
    name = type(estimator).__name__
    idata = estimator.idata_
    required = ["posterior", "constant_data"]
    if estimator.__sklearn_tags__().target_tags.required:
        required.append("observed_data")
    if missing := [group for group in required if group not in idata.children]:
        raise MlflowException(f"{trace_path} has no {' or '.join(missing)} group; a fitted {name} trace has.")
    posterior = idata["posterior"].to_dataset()
    if not {"chain", "draw"} <= set(posterior.dims):
        raise MlflowException(
            f"{trace_path}: the posterior must have the dimensions chain and draw; it has {list(posterior.dims)}."
        )
    seed = posterior.attrs.get("pmlearn_seed")
    if not (isinstance(seed, (int, np.integer)) and not isinstance(seed, bool) and seed >= 0):
        found = "missing" if seed is None else f"{seed!r:.60}"
        raise MlflowException(
            f"{trace_path}: the posterior's attribute 'pmlearn_seed' (the seed of the predictive draws) "
            f"must be a non-negative integer; it is {found}."
        )
    try:
        model = estimator.pymc_model()
        shapes = model.eval_rv_shapes()
    except Exception as error:  # whatever build_model raises on inconsistent state
        raise MlflowException(
            f"{name} could not rebuild its model from {CONFIG_FILE} and the training data in "
            f"{trace_path}: {type(error).__name__}: {error}"
        ) from None
    problems = []
    for rv in model.free_RVs:
        if rv.name not in posterior:
            problems.append(f"the model's variable {rv.name!r} is missing")
            continue
        draws = posterior[rv.name].transpose("chain", "draw", ...).values
        if tuple(draws.shape[2:]) != tuple(shapes[rv.name]):
            problems.append(
                f"{rv.name!r} has shape {_shape_text(draws.shape[2:])} per draw where the model's is "
                f"{_shape_text(shapes[rv.name])}"
            )
        elif draws.dtype.kind == "f" and not (finite := np.isfinite(draws)).all():
            problems.append(f"{rv.name!r} has {int((~finite).sum())} non-finite draw(s) (NaN or infinity)")
    known = {rv.name for rv in model.free_RVs} | {variable.name for variable in model.deterministics}
    if unknown := [variable for variable in posterior.data_vars if variable not in known]:
        problems.append(f"{sorted(map(str, unknown))} are not variables of the model")
    if problems:
        raise MlflowException(
            f"The posterior in {trace_path} does not match the model {name} builds: {'; '.join(problems)}."
        )


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

    Raises
    ------
    MlflowException
        For a missing, damaged or inconsistent file, naming it and the problem; for a
        class that is not allowed; for a newer format version; for a file over its size
        limit or that a link leads out of ``directory``; for a trace whose HDF5 metadata
        declares more bytes than ``MLFLOW_PMLEARN_MAX_TRACE_BYTES`` (default 2 GiB), sizes
        that disagree with the estimator's settings, or data in other files. These are
        checked before any array is read.
    """
    directory = Path(directory)
    config_path = model_file(directory, CONFIG_FILE, CONFIG_FILE, MAX_DOCUMENT_BYTES)
    config = validate_config(read_json_document(config_path), config_path)
    estimator_class = _resolve_class(config, directory, Path(code_directory) if code_directory else None)
    trace_path = model_file(directory, TRACE_FILE, "trace", max_trace_bytes(), MAX_TRACE_BYTES_VARIABLE)
    idata = _read_trace(trace_path, config, estimator_class)
    try:
        estimator = estimator_class.from_fitted_state(config["params"], config["fitted_state"], idata)
    except (TypeError, ValueError) as error:
        raise MlflowException(f"{config_path} does not describe a valid {estimator_class.__name__}: {error}") from None
    check_trace_fits_model(estimator, trace_path)
    estimator.limit_predictor_memory(max_predictor_bytes())
    return estimator
