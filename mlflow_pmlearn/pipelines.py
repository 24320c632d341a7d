"""Pipeline <-> directory: the preprocessing with skops, the final pmlearn estimator as an estimator folder.

A scikit-learn ``Pipeline`` whose final step is a pmlearn estimator (through nested
pipelines; its other steps may be ``ColumnTransformer``\\ s, nested or not) is saved in
three parts: ``pipeline.json`` (the format version, the final step's path, the SHA-256 of
the preprocessing file, the library versions), ``preprocessing.skops`` (the pipeline with
its final estimator replaced by ``"passthrough"``, written by skops, never pickled) and
``final_step/`` (the estimator, as :func:`~mlflow_pmlearn.serialization.save_estimator`
writes it).

Loading unpickles nothing: skops rebuilds only the types it trusts by default (scikit-learn's
estimators, NumPy arrays, Python's builtins), those of :data:`TRUSTED_TYPES`, and those the
user names in ``MLFLOW_PMLEARN_TRUSTED_TYPES``; a file holding any other type is refused by
name before anything is built. The preprocessing file is refused, as the other model files
are, when it lies outside its folder, does not match its recorded SHA-256, or is, or
declares as uncompressed, more than :data:`MAX_PREPROCESSING_BYTES`.
"""

from __future__ import annotations

import copy
import io
import json
import os
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import INVALID_PARAMETER_VALUE
from sklearn.base import BaseEstimator
from sklearn.pipeline import Pipeline

from estimators.base import BayesianEstimator
from mlflow_pmlearn.safety import MAX_DOCUMENT_BYTES, confined_path, model_file
from mlflow_pmlearn.serialization import load_estimator, read_json_document, save_estimator, sha256_of
from mlflow_pmlearn.versions import DISTRIBUTION, library_versions

PIPELINE_FILE = "pipeline.json"
PREPROCESSING_FILE = "preprocessing.skops"
FINAL_STEP_FOLDER = "final_step"
#: The layout's version (1: mlflow-pmlearn 0.2.0).
PIPELINE_FORMAT_VERSION = 1
#: Most bytes of ``preprocessing.skops``, as a file and as its members inflated.
MAX_PREPROCESSING_BYTES = 256 * 2**20
#: Most members of ``preprocessing.skops`` (skops writes its schema and one file per array).
MAX_PREPROCESSING_MEMBERS = 10_000
_BLOCK_BYTES = 2**20
#: Environment variable: more types to trust in ``preprocessing.skops``, comma-separated
#: (e.g. ``my_package.transformers.LogTransformer``), for code the loading process trusts.
TRUSTED_TYPES_VARIABLE = "MLFLOW_PMLEARN_TRUSTED_TYPES"
#: Types that skops does not trust by default, trusted here: they hold data, run no code.
#: ``numpy.dtype`` (the fit dtype that ``SimpleImputer`` and ``KNNImputer`` keep),
#: ``make_column_selector`` (a ``ColumnTransformer``'s rule: dtypes and a name pattern) and
#: SciPy's B-splines (``SplineTransformer``'s fitted knots and coefficients; rebuilt through
#: their checking constructor at load).
TRUSTED_TYPES = (
    "numpy.dtype",
    "sklearn.compose._column_transformer.make_column_selector",
    "scipy.interpolate._bsplines.BSpline",
    "scipy.interpolate._bsplines._BSpline",
)


def final_estimator(model: Any) -> tuple[str, BayesianEstimator | None]:
    """The pmlearn estimator that ``model`` ends in, and its step path (``"reg"``, ``"a__b"``).

    ``model`` itself (path ``""``), or a ``Pipeline``'s final step, through nested
    pipelines; ``None`` when it does not end in a pmlearn estimator.
    """
    path = []
    while isinstance(model, Pipeline):
        name, model = model.steps[-1]
        path.append(name)
    return "__".join(path), (model if isinstance(model, BayesianEstimator) else None)


def with_final_step(pipeline: Pipeline, final: Any) -> Pipeline:
    """A shallow copy of ``pipeline`` whose final estimator (through nested pipelines) is ``final``.

    The other steps are the same objects; ``pipeline`` is unchanged. With ``"passthrough"``,
    the copy's ``transform`` gives the rows the final estimator takes.
    """
    copied = copy.copy(pipeline)
    name, last = pipeline.steps[-1]
    copied.steps = [*pipeline.steps[:-1], (name, with_final_step(last, final) if isinstance(last, Pipeline) else final)]
    return copied


def split_pipeline(model: Any) -> tuple[Pipeline | None, BayesianEstimator | None]:
    """The preprocessing before the pmlearn estimator that ``model`` ends in, and that estimator.

    Returns
    -------
    preprocessing : Pipeline or None
        For a ``Pipeline``, a shallow copy whose final estimator (through nested pipelines) is
        ``"passthrough"``: its ``transform`` gives the rows the estimator takes. None for an
        estimator.
    estimator : BayesianEstimator or None
        None when ``model`` does not end in a pmlearn estimator.
    """
    estimator = final_estimator(model)[1]
    if estimator is None or model is estimator:
        return None, estimator
    return with_final_step(model, "passthrough"), estimator


def final_step_feature_names(pipeline: Pipeline) -> list[str] | None:
    """Names of the columns the final pmlearn step of ``pipeline`` is given.

    Read from the earlier steps' ``get_feature_names_out``, as fitted; None when a step
    cannot name its output columns (e.g. a ``FunctionTransformer`` without
    ``feature_names_out``).
    """
    try:
        names = split_pipeline(pipeline)[0].get_feature_names_out()
    except (AttributeError, TypeError, ValueError):
        return None
    return [str(name) for name in names]


def _trusted_types() -> list[str]:
    extra = os.environ.get(TRUSTED_TYPES_VARIABLE, "")
    return [*TRUSTED_TYPES, *(name.strip() for name in extra.split(",") if name.strip())]


def _refuse_untrusted(path: Path, untrusted: list[str]) -> None:
    if untrusted:
        raise MlflowException(
            f"{path} holds types that are not trusted: {', '.join(untrusted)}. Loading would build "
            f"them, running their code; refusing. If you trust that code, name the types in "
            f"{TRUSTED_TYPES_VARIABLE} (comma-separated) where the model is saved and loaded.",
            INVALID_PARAMETER_VALUE,
        )


def _untrusted_types(archive: bytes) -> list[str]:
    import skops.io

    trusted = set(_trusted_types())
    return [name for name in skops.io.get_untrusted_types(data=archive) if name not in trusted]


def save_pipeline(pipeline: Pipeline, directory: str | os.PathLike, serialization_format: str = "json") -> None:
    """Write a fitted pipeline ending in a pmlearn estimator into an existing, empty ``directory``.

    Parameters
    ----------
    pipeline : Pipeline
        Fitted; its final estimator (through nested pipelines) a pmlearn estimator.
    directory : path
        Where to write ``pipeline.json``, ``preprocessing.skops`` and ``final_step/``.
    serialization_format : {"json", "cloudpickle"}
        For the final estimator, as in :func:`~mlflow_pmlearn.serialization.save_estimator`.

    Raises
    ------
    MlflowException
        For preprocessing that holds a type loading would refuse (named, with how to trust it).
    """
    import skops.io

    directory = Path(directory)
    path = final_estimator(pipeline)[0]
    preprocessing, estimator = split_pipeline(pipeline)
    skops.io.dump(preprocessing, directory / PREPROCESSING_FILE)
    _refuse_untrusted(directory / PREPROCESSING_FILE, _untrusted_types((directory / PREPROCESSING_FILE).read_bytes()))
    (directory / FINAL_STEP_FOLDER).mkdir()
    save_estimator(estimator, directory / FINAL_STEP_FOLDER, serialization_format=serialization_format)
    config = {
        "format_version": PIPELINE_FORMAT_VERSION,
        "final_step": path,
        "preprocessing_sha256": sha256_of(directory / PREPROCESSING_FILE),
        "versions": library_versions((DISTRIBUTION, "scikit-learn", "skops")),
    }
    (directory / PIPELINE_FILE).write_text(json.dumps(config, indent=2))


def is_pipeline_directory(directory: str | os.PathLike) -> bool:
    """Whether a model's data folder holds a pipeline (else an estimator)."""
    return (Path(directory) / PIPELINE_FILE).exists()


def _read_pipeline_config(directory: Path) -> dict[str, Any]:
    path = model_file(directory, PIPELINE_FILE, PIPELINE_FILE, MAX_DOCUMENT_BYTES)
    config = read_json_document(path)
    expected = {"format_version": int, "final_step": str, "preprocessing_sha256": str}
    problems = [
        f"the field {name!r} must be {kind.__name__}"
        for name, kind in expected.items()
        if not isinstance(config, dict) or type(config.get(name)) is not kind
    ]
    if not problems and config["format_version"] > PIPELINE_FORMAT_VERSION:
        problems.append(f"its format version {config['format_version']} is newer than this mlflow-pmlearn reads")
    if problems:
        raise MlflowException(f"{path} is not a valid pmlearn pipeline document: {'; '.join(problems)}.")
    return config


def _checked_preprocessing(directory: Path, config: dict[str, Any]) -> bytes:
    """The preprocessing archive, each member inflated at most to its declared size, re-packed uncompressed.

    Refused before skops reads it when damaged, changed or too large. zipfile inflates a
    member whole when asked for all of it, whatever size it declares: here each member is
    read in blocks that stop at its declared size (its CRC checked), within
    :data:`MAX_PREPROCESSING_BYTES` in all, and skops is handed those bytes, stored.
    """
    path = model_file(directory, PREPROCESSING_FILE, "preprocessing", MAX_PREPROCESSING_BYTES)
    if sha256_of(path) != config["preprocessing_sha256"]:
        raise MlflowException(
            f"{path} is corrupted or was changed after it was saved: its SHA-256 differs from the one "
            f"recorded in {PIPELINE_FILE}."
        )
    repacked, total = io.BytesIO(), 0
    try:
        with zipfile.ZipFile(path) as archive, zipfile.ZipFile(repacked, "w", zipfile.ZIP_STORED) as output:
            members = archive.infolist()
            if len(members) > MAX_PREPROCESSING_MEMBERS:
                raise MlflowException(
                    f"{path} has {len(members):,} members, over the limit of {MAX_PREPROCESSING_MEMBERS:,}; "
                    "refusing to read it."
                )
            for member in members:
                total += member.file_size
                if total > MAX_PREPROCESSING_BYTES:
                    raise MlflowException(
                        f"{path} declares more than {MAX_PREPROCESSING_BYTES:,} uncompressed bytes; "
                        "refusing to read it."
                    )
                with archive.open(member) as source:
                    data = b"".join(iter(lambda: source.read(_BLOCK_BYTES), b""))
                output.writestr(member.filename, data)
    except (zipfile.BadZipFile, EOFError, OSError, ValueError, NotImplementedError) as error:
        raise MlflowException(f"{path} could not be read as a skops file: {error}") from None
    return repacked.getvalue()


def _validated_splines(value: Any, path: Path, seen: set[int]) -> Any:
    """``value`` with every SciPy B-spline in it rebuilt through its checking constructor.

    skops restores a ``BSpline`` (``SplineTransformer``'s fitted splines) without its
    constructor's checks: a negative degree or too few coefficients would crash or read out
    of bounds at the first prediction.
    """
    from scipy.interpolate import BSpline

    if id(value) in seen or isinstance(value, (str, bytes, int, float, np.ndarray, type(None))):
        return value
    seen.add(id(value))
    if isinstance(value, BSpline):
        try:
            return BSpline(value.t, value.c, value.k, extrapolate=value.extrapolate, axis=value.axis)
        except (TypeError, ValueError, AttributeError) as error:
            raise MlflowException(f"{path} holds an invalid B-spline ({error}); refusing to load it.") from None
    if isinstance(value, list):
        value[:] = [_validated_splines(item, path, seen) for item in value]
    elif isinstance(value, tuple):
        return type(value)(_validated_splines(item, path, seen) for item in value)
    elif isinstance(value, dict):
        for key, item in value.items():
            value[key] = _validated_splines(item, path, seen)
    elif isinstance(value, BaseEstimator):
        for name, item in vars(value).items():
            setattr(value, name, _validated_splines(item, path, seen))
    return value


def load_pipeline(directory: str | os.PathLike, code_directory: str | os.PathLike | None = None) -> Pipeline:
    """Read a pipeline written by :func:`save_pipeline`.

    Parameters
    ----------
    directory : path
        The folder holding ``pipeline.json``, ``preprocessing.skops`` and ``final_step/``.
    code_directory : path, optional
        Code shipped with the model, for a bespoke final estimator.

    Returns
    -------
    Pipeline
        The fitted pipeline, predicting as the saved one did.

    Raises
    ------
    MlflowException
        For a missing, damaged, changed or oversized file, and for preprocessing holding a
        type that is not trusted (named, with how to trust it), before that type is built.
    """
    import skops.io

    directory = Path(directory)
    config = _read_pipeline_config(directory)
    archive = _checked_preprocessing(directory, config)
    path = directory / PREPROCESSING_FILE
    try:
        _refuse_untrusted(path, _untrusted_types(archive))
        preprocessing = skops.io.load(io.BytesIO(archive), trusted=_trusted_types())
    except MlflowException:
        raise
    except Exception as error:  # a damaged archive raises anything
        raise MlflowException(f"{path} could not be loaded: {type(error).__name__}: {error}") from None
    preprocessing = _validated_splines(preprocessing, path, set())
    if not isinstance(preprocessing, Pipeline) or final_estimator(preprocessing)[0] != config["final_step"]:
        raise MlflowException(
            f"{path} does not hold a pipeline whose final step is {config['final_step']!r}, as {PIPELINE_FILE} says."
        )
    final_step = confined_path(directory, FINAL_STEP_FOLDER, "final step folder")
    estimator = load_estimator(final_step, code_directory=code_directory)
    return with_final_step(preprocessing, estimator)
