"""The ``pmlearn`` MLflow flavor: Bayesian estimators saved with their posterior trace.

This module exports the estimators of the ``estimators`` package in two flavors:

pmlearn (native) format
    The estimator, rebuilt from a JSON document and its ArviZ trace (NetCDF), or a
    scikit-learn ``Pipeline`` ending in one, its preprocessing saved with skops; loaded
    back with :func:`load_model`.
:py:mod:`mlflow.pyfunc`
    Serves posterior predictions as a DataFrame: mean, standard deviation, credible
    intervals; a classifier's labels, and its class probabilities with ``predict_proba``.

Functions: :func:`save_model`, :func:`log_model`, :func:`load_model`, :func:`autolog`,
:func:`compare`, :func:`get_default_pip_requirements`, :func:`get_default_conda_env`.
"""

from __future__ import annotations

import copy
import os
import shutil
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import mlflow
import mlflow.pyfunc
import pandas as pd
import yaml
from mlflow.exceptions import MlflowException
from mlflow.models import Model, ModelInputExample, ModelSignature
from mlflow.models.model import MLMODEL_FILE_NAME
from mlflow.models.utils import _save_example
from mlflow.protos.databricks_pb2 import RESOURCE_ALREADY_EXISTS
from mlflow.tracking._model_registry import DEFAULT_AWAIT_MAX_SLEEP_SECONDS
from mlflow.tracking.artifact_utils import _download_artifact_from_uri
from mlflow.utils.autologging_utils import autologging_integration, safe_patch
from mlflow.utils.docstring_utils import LOG_MODEL_PARAM_DOCS, format_docstring
from mlflow.utils.environment import (
    _CONDA_ENV_FILE_NAME,
    _CONSTRAINTS_FILE_NAME,
    _PYTHON_ENV_FILE_NAME,
    _REQUIREMENTS_FILE_NAME,
    _process_conda_env,
    _process_pip_requirements,
    _PythonEnv,
    _validate_env_arguments,
)
from mlflow.utils.file_utils import get_total_file_size, write_to
from mlflow.utils.model_utils import (
    _copy_extra_files,
    _get_flavor_configuration,
    _validate_and_copy_code_paths,
)
from mlflow.utils.requirements_utils import _get_pinned_requirement
from sklearn.pipeline import Pipeline

import estimators
from estimators.base import BayesianEstimator
from estimators.predictive import PredictorMemoryError
from mlflow_pmlearn.environment import (
    add_requirement,
    get_default_conda_env,
    get_default_pip_requirements,
    release_requirement,
)
from mlflow_pmlearn.pipelines import final_estimator, is_pipeline_directory, load_pipeline, save_pipeline
from mlflow_pmlearn.pyfunc import PmlearnModelWrapper, model_signature, params_schema, probabilities_by_default
from mlflow_pmlearn.safety import (
    MAX_MLMODEL_BYTES,
    MAX_PREDICTOR_BYTES_VARIABLE,
    confined_path,
    is_within,
    model_file,
)
from mlflow_pmlearn.serialization import load_estimator, save_estimator
from mlflow_pmlearn.versions import DISTRIBUTION, FLAVOR_NAME

__version__ = estimators.__version__
__all__ = [
    "FLAVOR_NAME",
    "autolog",
    "compare",
    "get_default_conda_env",
    "get_default_pip_requirements",
    "load_model",
    "log_model",
    "save_model",
]

_MODEL_DATA_SUBPATH = "estimator"
_PIPELINE_DATA_SUBPATH = "pipeline"
_CODE_SUBPATH = "code"


def _infer_signature(pm_model: BayesianEstimator | Pipeline, input_example: Any) -> ModelSignature:
    """From the input example; else, for an estimator, from its training rows (a pipeline's are not kept)."""
    if input_example is None and isinstance(pm_model, Pipeline):
        raise MlflowException.invalid_parameter_value(
            "A pipeline's signature is inferred from raw input rows, which the pipeline does not "
            "keep: pass input_example=<a few rows of raw input> (or a signature, or signature=False)."
        )
    return model_signature(pm_model, input_example if input_example is not None else pm_model.training_sample())


def _write_model(
    pm_model: BayesianEstimator | Pipeline,
    path: Path,
    *,
    conda_env,
    code_paths,
    mlflow_model: Model,
    signature,
    input_example,
    pip_requirements,
    extra_pip_requirements,
    metadata,
    serialization_format: str,
    extra_files,
) -> None:
    step_path, estimator = final_estimator(pm_model)
    code_subpath = _validate_and_copy_code_paths(code_paths, str(path), default_subpath=_CODE_SUBPATH)
    extra_files_conf = _copy_extra_files(extra_files, str(path))
    saved_example = _save_example(mlflow_model, input_example, str(path))
    if signature is None:
        example = saved_example.inference_data if saved_example is not None else None
        signature = _infer_signature(pm_model, example)
    elif signature is not False and signature.params is None:
        signature = copy.copy(signature)  # the user's own object stays as given
        signature.params = params_schema(estimator)
    if signature is not False:
        mlflow_model.signature = signature
    if metadata is not None:
        mlflow_model.metadata = metadata

    data_subpath = _MODEL_DATA_SUBPATH if pm_model is estimator else _PIPELINE_DATA_SUBPATH
    (path / data_subpath).mkdir()
    pipeline_conf = {}
    if pm_model is estimator:
        save_estimator(estimator, path / data_subpath, serialization_format=serialization_format)
    else:
        save_pipeline(pm_model, path / data_subpath, serialization_format=serialization_format)
        pipeline_conf = {"model_kind": "pipeline", "final_step": step_path}

    mlflow.pyfunc.add_to_model(
        mlflow_model,
        loader_module="mlflow_pmlearn",
        data=data_subpath,
        conda_env=_CONDA_ENV_FILE_NAME,
        python_env=_PYTHON_ENV_FILE_NAME,
    )
    mlflow_model.add_flavor(
        FLAVOR_NAME,
        pmlearn_version=__version__,
        estimator_class=type(estimator).__name__,
        data=data_subpath,
        serialization_format=serialization_format,
        code=code_subpath,
        **pipeline_conf,
        **extra_files_conf,
    )
    if size := get_total_file_size(str(path)):
        mlflow_model.model_size_bytes = size
    mlflow_model.save(str(path / MLMODEL_FILE_NAME))

    if conda_env is None:
        default_requirements = None
        if pip_requirements is None:
            default_requirements = get_default_pip_requirements(serialization_format)
            if pm_model is not estimator:
                default_requirements.append(_get_pinned_requirement("skops"))
            default_requirements += [_get_pinned_requirement(package) for package in estimator.required_packages]
        conda_env, pip_requirements, pip_constraints = _process_pip_requirements(
            default_requirements, pip_requirements, extra_pip_requirements
        )
    else:
        conda_env, pip_requirements, pip_constraints = _process_conda_env(conda_env)
    add_requirement(conda_env, pip_requirements, release_requirement())
    with open(path / _CONDA_ENV_FILE_NAME, "w") as f:
        yaml.safe_dump(conda_env, stream=f, default_flow_style=False)
    if pip_constraints:
        write_to(str(path / _CONSTRAINTS_FILE_NAME), "\n".join(pip_constraints))
    write_to(str(path / _REQUIREMENTS_FILE_NAME), "\n".join(pip_requirements))
    _PythonEnv.current().to_yaml(str(path / _PYTHON_ENV_FILE_NAME))


@format_docstring(LOG_MODEL_PARAM_DOCS.format(package_name=DISTRIBUTION))
def save_model(
    pm_model: BayesianEstimator | Pipeline,
    path: str | os.PathLike,
    conda_env=None,
    code_paths: list[str] | None = None,
    mlflow_model: Model | None = None,
    signature: ModelSignature | None = None,
    input_example: ModelInputExample | None = None,
    pip_requirements=None,
    extra_pip_requirements=None,
    metadata: dict[str, Any] | None = None,
    serialization_format: str = "json",
    extra_files: list[str] | None = None,
) -> None:
    """Save a fitted estimator, or a fitted pipeline ending in one, as an MLflow model at ``path``.

    The model is written into a temporary directory beside ``path`` and moved into place
    whole, so a failed save leaves nothing behind and ``path`` is either absent or a
    complete model; an existing non-empty ``path`` is refused untouched. A process killed
    while saving may leave its hidden temporary directory, ``.<name>.saving-*``, beside
    ``path``: never a model, safe to delete. It is not deleted by later saves, which cannot
    tell it from a save that another process is making.

    Requirements are not inferred: unless given, they are :func:`get_default_pip_requirements`,
    and the model always requires the mlflow-pmlearn release that saved it, pinned
    (``mlflow-pmlearn==<version>``). For an environment without the package index, ship the
    wheels with MLflow's ``mlflow.models.utils.add_libraries_to_model``.

    Parameters
    ----------
    pm_model : BayesianEstimator or Pipeline
        A fitted estimator, or a fitted scikit-learn ``Pipeline`` whose final step (through
        nested pipelines) is one. The pipeline's other steps are saved with skops, never
        pickled, and must hold only trusted types (see :mod:`mlflow_pmlearn.pipelines`);
        pyfunc then takes the raw columns the pipeline takes.
    path : str or path-like
        Local directory to create.
    conda_env : dict or str, optional
        {{ conda_env }}
    code_paths : list of str, optional
        {{ code_paths }}

        This is also how a bespoke estimator class travels with the model: loading
        imports such a class only from this code.
    mlflow_model : Model, optional
        The :py:class:`Model <mlflow.models.Model>` this flavor is added to.
    signature : ModelSignature or False, optional
        Inferred from ``input_example`` (or, for an estimator, from the training data's
        schema; a pipeline needs the example) when omitted; ``False`` disables it. The
        inference parameters (``return_std``, ``interval_prob``; a classifier's
        ``predict_proba``) are added as its ``params``, to a copy of a signature given without them.
    input_example : DataFrame or ndarray, optional
        {{ input_example }}
    pip_requirements : iterable of str or str, optional
        {{ pip_requirements }}
    extra_pip_requirements : iterable of str or str, optional
        {{ extra_pip_requirements }}
    metadata : dict, optional
        {{ metadata }}
    serialization_format : {"json", "cloudpickle"}, default="json"
        ``"cloudpickle"`` pickles a bespoke estimator class that is not importable where
        the model will be loaded; loading it then requires pickle to be allowed.
    extra_files : list of str, optional
        {{ extra_files }}

        They are listed under ``extra_files`` in the ``pmlearn`` flavor of ``MLmodel``.
    """
    _validate_env_arguments(conda_env, pip_requirements, extra_pip_requirements)
    if final_estimator(pm_model)[1] is None:
        raise MlflowException.invalid_parameter_value(
            "pm_model must be a fitted pmlearn BayesianEstimator, or a scikit-learn Pipeline whose "
            f"final step is one; got {type(pm_model).__name__}."
        )
    path = Path(path).absolute()
    if path.exists() and (not path.is_dir() or any(path.iterdir())):
        raise MlflowException(f"Path '{path}' already exists and is not empty", RESOURCE_ALREADY_EXISTS)
    path.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{path.name}.saving-", dir=path.parent))
    try:
        _write_model(
            pm_model,
            staging,
            conda_env=conda_env,
            code_paths=code_paths,
            mlflow_model=mlflow_model if mlflow_model is not None else Model(),
            signature=signature,
            input_example=input_example,
            pip_requirements=pip_requirements,
            extra_pip_requirements=extra_pip_requirements,
            metadata=metadata,
            serialization_format=serialization_format,
            extra_files=extra_files,
        )
        umask = os.umask(0)
        os.umask(umask)
        staging.chmod(0o777 & ~umask)
        if path.exists():
            path.rmdir()
        staging.rename(path)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


@format_docstring(LOG_MODEL_PARAM_DOCS.format(package_name=DISTRIBUTION))
def log_model(
    pm_model: BayesianEstimator | Pipeline,
    artifact_path: str | None = None,
    conda_env=None,
    code_paths: list[str] | None = None,
    registered_model_name: str | None = None,
    signature: ModelSignature | None = None,
    input_example: ModelInputExample | None = None,
    await_registration_for: int = DEFAULT_AWAIT_MAX_SLEEP_SECONDS,
    pip_requirements=None,
    extra_pip_requirements=None,
    metadata: dict[str, Any] | None = None,
    serialization_format: str = "json",
    name: str | None = None,
    params: dict[str, Any] | None = None,
    tags: dict[str, Any] | None = None,
    model_type: str | None = None,
    step: int = 0,
    model_id: str | None = None,
    extra_files: list[str] | None = None,
    **kwargs,
):
    """Log a fitted estimator, or a fitted pipeline ending in one, as an MLflow model of the current run.

    Parameters
    ----------
    pm_model, signature, serialization_format
        As in :func:`save_model`.
    artifact_path : str, optional
        Deprecated: use ``name``.
    conda_env : dict or str, optional
        {{ conda_env }}
    code_paths : list of str, optional
        {{ code_paths }}

        This is also how a bespoke estimator class travels with the model.
    registered_model_name : str, optional
        Register the model as a new version of this registered model (created if absent).
    input_example : DataFrame or ndarray, optional
        {{ input_example }}
    await_registration_for : int, default=300
        Seconds to wait for the model version to be ``READY``; 0 or None not to wait.
    pip_requirements : iterable of str or str, optional
        {{ pip_requirements }}
    extra_pip_requirements : iterable of str or str, optional
        {{ extra_pip_requirements }}
    metadata : dict, optional
        {{ metadata }}
    name : str, optional
        {{ name }}
    params : dict, optional
        {{ params }}
    tags : dict, optional
        {{ tags }}
    model_type : str, optional
        {{ model_type }}
    step : int, default=0
        {{ step }}
    model_id : str, optional
        {{ model_id }}
    extra_files : list of str, optional
        {{ extra_files }}
    **kwargs
        Passed on to :py:meth:`mlflow.models.Model.log`.

    Returns
    -------
    mlflow.models.model.ModelInfo
        Metadata of the logged model, its ``model_uri`` among them.
    """
    return Model.log(
        artifact_path=artifact_path,
        name=name,
        flavor=sys.modules[__name__],
        registered_model_name=registered_model_name,
        pm_model=pm_model,
        conda_env=conda_env,
        code_paths=code_paths,
        signature=signature,
        input_example=input_example,
        await_registration_for=await_registration_for,
        pip_requirements=pip_requirements,
        extra_pip_requirements=extra_pip_requirements,
        metadata=metadata,
        serialization_format=serialization_format,
        params=params,
        tags=tags,
        model_type=model_type,
        step=step,
        model_id=model_id,
        extra_files=extra_files,
        **kwargs,
    )


def _load_model_data(model_dir: Path, data: str) -> BayesianEstimator | Pipeline:
    """The estimator or pipeline in the model's data folder ``data``; a bespoke class only from the ``code`` folder.

    ``data`` must lead to a folder inside ``model_dir``. The code folder is found from the
    model's layout (``code`` beside the data), refused if it is a link leading out, and is
    never put on ``sys.path``: a built-in estimator imports nothing from it, and a bespoke
    class's module is imported from it by file (:mod:`mlflow_pmlearn.model_code`).
    """
    data_dir = confined_path(model_dir, data, "data folder")
    code_dir = model_dir / _CODE_SUBPATH
    code_dir = (
        confined_path(model_dir, _CODE_SUBPATH, "code folder") if code_dir.is_symlink() or code_dir.is_dir() else None
    )
    load = load_pipeline if is_pipeline_directory(data_dir) else load_estimator
    return load(data_dir, code_directory=code_dir)


def load_model(model_uri: str, dst_path: str | None = None) -> BayesianEstimator | Pipeline:
    """Load a ``pmlearn`` model as its estimator, or as its pipeline: the safe way to load a model from someone else.

    Only the model's own files are read, and no code from the model's folder runs for a
    built-in estimator or a pipeline of trusted types. ``MLmodel`` (at most 1 MiB) must name
    its ``data`` and ``code`` folders inside the model's folder; then see
    :func:`~mlflow_pmlearn.serialization.load_estimator` for the limits on the data files
    (and :func:`~mlflow_pmlearn.pipelines.load_pipeline` for a pipeline's preprocessing).
    A bespoke estimator's module is imported by file from the model's ``code`` folder, only
    where ``MLFLOW_ALLOW_MODEL_CODE_EXECUTION`` is not false.

    Parameters
    ----------
    model_uri : str
        ``runs:/<run_id>/<name>``, ``models:/<name>/<version>``, ``models:/<name>@<alias>``,
        a local path, or any other URI MLflow resolves.
    dst_path : str, optional
        Where to download the artifacts.

    Returns
    -------
    BayesianEstimator or Pipeline
        The fitted estimator, or the fitted pipeline.
    """
    local_path = Path(_download_artifact_from_uri(artifact_uri=model_uri, output_path=dst_path))
    model_file(local_path, MLMODEL_FILE_NAME, MLMODEL_FILE_NAME, MAX_MLMODEL_BYTES)
    flavor_conf = _get_flavor_configuration(model_path=str(local_path), flavor_name=FLAVOR_NAME)
    if code := flavor_conf.get("code"):
        confined_path(local_path, code, "code folder")
    return _load_model_data(local_path, flavor_conf.get("data"))


def _check_data_folder(data_dir: Path) -> Path:
    """The model's folder of ``data_dir``, once its ``MLmodel`` shows that it names ``data_dir`` as this flavor's data.

    ``mlflow.pyfunc.load_model`` joins the model's folder with the ``data`` its ``MLmodel``
    names and passes only the result: an absolute ``data`` or one with ``..`` leads
    elsewhere. The folder above must be a pmlearn model whose ``MLmodel`` names this
    folder, by its plain name.
    """
    if ".." in data_dir.parts:
        raise MlflowException(
            f"The data folder {data_dir} leads outside the model's folder (its MLmodel names it with "
            "'..'); refusing to read it."
        )
    model_dir = data_dir.parent
    mlmodel = model_dir / MLMODEL_FILE_NAME
    if not mlmodel.is_file():
        raise MlflowException(
            f"The data folder {data_dir} is not inside a model's folder ({model_dir} has no MLmodel): its "
            "MLmodel names a folder elsewhere (an absolute path?); refusing to read it."
        )
    model_file(model_dir, MLMODEL_FILE_NAME, MLMODEL_FILE_NAME, MAX_MLMODEL_BYTES)
    conf = Model.load(str(mlmodel)).flavors.get("python_function", {})
    if conf.get("data") != data_dir.name or conf.get("loader_module") != __name__:
        raise MlflowException(
            f"The data folder {data_dir} is not the one the MLmodel of {model_dir} names for mlflow_pmlearn "
            f"({conf.get('data')!r}); refusing to read it."
        )
    return model_dir


def _forget_model_folder_on_sys_path(model_dir: Path) -> None:
    """Take off ``sys.path`` what MLflow put there from the model's folder, so nothing later imports it."""
    sys.path[:] = [entry for entry in sys.path if not (entry and is_within(entry, model_dir))]


def _load_pyfunc(path: str) -> PmlearnModelWrapper:
    """Called by ``mlflow.pyfunc.load_model`` with the model's data folder.

    MLflow has read ``MLmodel``, put any ``code`` folder its ``python_function`` flavor
    names first on ``sys.path``, and joined the model's folder with the ``data`` it names.
    That folder is checked (:func:`_check_data_folder`) and the model's folder taken off
    ``sys.path`` before anything else is imported, so no file of the model can stand in for
    a module imported later; the model is then loaded as :func:`load_model` loads it, and
    its predictor built under ``MLFLOW_PMLEARN_MAX_PREDICTOR_BYTES``. A classifier saved
    before 0.3.0 keeps answering its class probabilities by default
    (:func:`~mlflow_pmlearn.pyfunc.probabilities_by_default`).
    """
    data_dir = Path(path)
    model_dir = _check_data_folder(data_dir)
    _forget_model_folder_on_sys_path(model_dir)
    signature = Model.load(str(model_dir / MLMODEL_FILE_NAME)).signature
    model = _load_model_data(model_dir, data_dir.name)
    try:
        return PmlearnModelWrapper(model, probabilities_by_default=probabilities_by_default(signature))
    except PredictorMemoryError as error:
        raise MlflowException(
            f"The model at {model_dir} is refused: {error} Raise {MAX_PREDICTOR_BYTES_VARIABLE} if this host "
            "has the memory for it."
        ) from None


def compare(model_uris: Sequence[str]) -> pd.DataFrame:
    """Compare pmlearn models fitted on the same rows by PSIS-LOO; inside a run, log the table.

    See :func:`mlflow_pmlearn.evaluation.compare` (imported on first use: it loads ArviZ's
    LOO and MLflow's evaluation machinery, which importing the flavor does not need).

    Returns
    -------
    DataFrame
        ArviZ's comparison table indexed by model URI, best first: ``elpd_loo``,
        ``elpd_diff``, ``dse``, ``weight``, ...
    """
    from mlflow_pmlearn.evaluation import compare as compare_by_loo

    return compare_by_loo(model_uris)


@autologging_integration(FLAVOR_NAME)
def autolog(
    log_models: bool = True,
    log_traces: bool = True,
    log_plots: bool = True,
    log_datasets: bool = True,
    registered_model_name: str | None = None,
    disable: bool = False,
    exclusive: bool = False,
    disable_for_unsupported_versions: bool = False,
    silent: bool = False,
    extra_tags: dict[str, str] | None = None,
    max_tuning_runs: int | None = 5,
    log_input_examples: bool = False,
    log_model_signatures: bool = True,
    log_loo: bool | None = None,
    log_prior_checks: bool | None = None,
) -> None:
    """Log every ``fit`` of a pmlearn estimator to MLflow.

    **While it fits.** Once the model is built, before the engine starts, the run gets the
    params below (settings, priors, data shape) and the tag ``pmlearn.status`` ("fitting:
    NUTS (pymc sampler, 2 chains x (1000 tuning + 1000 draws))"; then "logging", "finished",
    or "failed: <error>", "interrupted", "killed"). While the engine runs, step-indexed metrics
    ``progress/*``, at most one batch a second (and one a second while the engine reports):
    NUTS with PyMC's sampler or nutpie, ``progress/draws`` (all chains, tuning included; also
    the step), ``progress/fraction_done``, ``progress/divergences`` (tuning's included),
    ``progress/step_size``, ``progress/tuning``; ADVI, ``progress/iterations`` and
    ``progress/loss`` (the mean negative ELBO of the last 100 iterations); every engine,
    ``progress/elapsed_s`` (pathfinder, Laplace, NumPyro and BlackJAX offer no progress hook:
    that heartbeat only). A pipeline's run shows its pmlearn step's fit so; a parameter
    search's run is logged when the search ends.

    A fit logs, in the active run or in a run it starts and ends:

    - params: the hyper-parameters (of the inference settings, those that apply to the
      method used: no ``n_tune`` on an ADVI fit, no ``progressbar``); each prior as
      ``prior.<variable>`` (e.g. ``Normal(loc=0.0, scale=2.5)``), read from the PyMC model, so
      bespoke models are described too; the model structure (``model.*``); the seed used
      (``inference.seed``); the PyMC, PyTensor, ArviZ and mlflow-pmlearn versions; the
      training data shape (``training.rows``, ``training.columns``);
    - metrics: ADVI's ``elbo`` history (iteration as step, thinned to at most 1000 block
      means), ``elbo_final``, ``advi_iterations``, ``advi_converged``; or NUTS's
      ``divergences``, ``r_hat_max``, ``ess_bulk_min``, ``ess_tail_min``,
      ``mean_tree_depth``, ``step_size``, ``sampling_time_s``, ``draws_per_second``; and
      ``fit_time_s``, ``training_score`` and, for regressors, ``training_coverage_94`` (the
      share of training targets inside the central 94% posterior predictive interval);
    - artifacts: ``trace/trace.nc`` (``xarray.open_datatree`` reloads it), ``trace/summary.csv``
      and ``.html``, with the variables labelled by the model's coordinates (feature names,
      class labels, component numbers); PNG plots under ``plots/`` (ELBO, or trace and rank
      plots; the posterior in the data's units; a posterior predictive check) and the
      model graph (PNG with graphviz, else text);
    - prior checks (``log_prior_checks``): ``prior_sensitivity.csv``, ``plots/prior_predictive_check.png``
      and ``plots/prior_posterior.png``;
    - the training data as a dataset input (source: the code that ran; with its digest);
    - the model, with :func:`log_model`, linked to the run's metrics (the training ones on
      the training dataset), as MLflow's own flavors link theirs.

    The trace names its run: ``idata_.attrs["mlflow_run_id"]``, also in the logged
    ``trace.nc`` and model (the one change autolog makes to the fitted estimator).

    A failure while logging becomes a warning and never changes the fit (the rest is still
    logged); an exception in the fit propagates and a run started by autolog is marked
    FAILED, with the traceback in the tag ``pmlearn.fit_error``. So does Ctrl-C
    (``KeyboardInterrupt``; PyMC's ADVI and NUTS stop early on it and keep what they have,
    but ``fit`` raises it again rather than return a half-fitted estimator), and a
    ``SystemExit`` (e.g. from the application's SIGTERM handler) marks the run KILLED: no
    model is logged or registered. A process killed outright (SIGKILL, or a SIGTERM the
    application does not handle) runs no more code: its run stays RUNNING, as with every
    MLflow flavor. autolog installs no signal handlers.

    **Meta-estimators.** A scikit-learn ``Pipeline`` ending in a pmlearn estimator logs one
    run: the pipeline's deep parameters (``reg__prior_scale_coef``, ...), and the priors,
    diagnostics, plots and trace of its pmlearn step, fitted on the data the earlier steps
    produced and labelled by their ``get_feature_names_out`` (``num__size``, ``cat__city_lyon``,
    ...), whether the steps output DataFrames or arrays. The model logged, and registered under
    ``registered_model_name``, is the whole pipeline (its preprocessing saved with skops),
    taking the raw features; its signature is inferred from the raw training rows. A parameter
    search (``GridSearchCV``, ``RandomizedSearchCV``) over a pmlearn estimator, or over such a
    pipeline, logs a parent run with the search's parameters, ``best_<param>`` params,
    ``best_cv_score``, ``cv_results.csv`` and everything above for the refitted best
    estimator (its model, the estimator or pipeline, as ``model``, registered); plus a
    finished child run per candidate, the best ``max_tuning_runs`` by rank, with its
    parameters and cross-validation scores. Fits inside these never start runs of their own
    (they run in MLflow's training session of the outer fit, as with ``mlflow.sklearn``; that
    session is one per process, so a fit another thread makes meanwhile logs no run either).

    Parameters
    ----------
    log_models : bool, default=True
        Log the fitted model with :func:`log_model`; its signature is inferred from the
        training data. A bespoke estimator whose class is in a top-level module file ships
        that file with the model (``code_paths``), so the model loads elsewhere.
    log_traces : bool, default=True
        Log ``trace/trace.nc`` and ``arviz_stats.summary`` as ``trace/summary.csv`` and ``.html``
        (with R-hat and effective sample sizes for NUTS).
    log_plots : bool, default=True
        Log PNG plots under ``plots/``, drawn off-screen (no pyplot state).
    log_datasets : bool, default=True
        Log the training data with ``mlflow.log_input``.
    registered_model_name : str, optional
        Register each logged model as a new version of this registered model.
    disable, exclusive, disable_for_unsupported_versions, silent, extra_tags
        As in MLflow's built-in autolog integrations.
    max_tuning_runs : int or None, default=5
        Most child runs of a parameter search, the best candidates by rank; None for all.
        Every candidate is in the parent run's ``cv_results.csv``.
    log_input_examples : bool, default=False
        Also save the first training rows as the model's input example (MLflow then loads
        the model once more to validate it, which costs time).
    log_model_signatures : bool, default=True
        Give the model a signature (inputs, outputs and inference params).
    log_loo : bool or None, default=None
        Log PSIS-LOO of the training rows (``arviz_stats.loo``): the metrics ``elpd_loo``,
        ``elpd_loo_se``, ``p_loo`` and ``pareto_k_bad`` (the share of rows with Pareto k > 0.7),
        and ``plots/pareto_k.png`` (with ``log_plots``). Where it is unreliable (more than 1% of
        rows with k > 0.7, or a minibatch fit) the tag ``pmlearn.loo_warning`` and a warning say
        why; a model with no pointwise likelihood of its training rows (a marginal Gaussian
        process) gets only the tag. ``None``: only where it is cheap, when the training rows
        times the posterior draws are at most 2,000,000 (about half a second; at 10,000 rows x
        1,000 draws it takes 3.5 s or more, most of it ``arviz_stats.loo``: ``benchmarks/loo.py``).
    log_prior_checks : bool or None, default=None
        Check the priors: ``plots/prior_predictive_check.png`` (regressors and classifiers: the
        training targets against 50 draws of the targets the priors alone predict at the
        training inputs); ``plots/prior_posterior.png`` (each parameter's prior and posterior
        density, in the data's units, up to 12 panels); and ``prior_sensitivity.csv``, ArviZ's
        power-scaling sensitivity (``arviz_stats.psense_summary``, Kallioinen et al. 2024) of
        each free parameter (a row per component) to the prior and to the likelihood, unrounded,
        with ArviZ's diagnosis. A parameter diagnosed with "potential prior-data conflict" or
        "potential strong prior / weak likelihood" (sensitivity >= 0.05) gets the tag
        ``pmlearn.prior_warning`` and a warning. ``None``: only where it is cheap, when the
        training rows times the posterior draws are at most 2,000,000, as for LOO (the
        sensitivity needs every row's log-likelihood under every draw, computed once for both;
        the checks took 3.6 s at 2,000 x 1,000 on a loaded 2-core machine, about 1.3 s of it
        the two plots).
    """
    from sklearn.model_selection._search import BaseSearchCV

    from mlflow_pmlearn.autologging import patched_fit, patched_meta_fit

    if max_tuning_runs is not None and (not isinstance(max_tuning_runs, int) or max_tuning_runs < 0):
        raise MlflowException.invalid_parameter_value(
            f"max_tuning_runs must be a non-negative integer or None; got {max_tuning_runs!r}."
        )
    if extra_tags is not None and not isinstance(extra_tags, dict):
        raise MlflowException.invalid_parameter_value(
            f"extra_tags must be a dictionary of tags; got {type(extra_tags).__name__}."
        )
    # The patches start (and end) runs themselves, only for fits they log.
    safe_patch(FLAVOR_NAME, BayesianEstimator, "fit", patched_fit)
    for meta_estimator in (Pipeline, BaseSearchCV):
        safe_patch(FLAVOR_NAME, meta_estimator, "fit", patched_meta_fit)
