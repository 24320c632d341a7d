"""The run of an autologged pmlearn fit: its settings, its start and end, and what is logged into it.

The run's params and status are logged when the estimator's engine starts, and its progress
while it runs (:mod:`.progress`); everything else after the estimator's own ``fit`` has
returned, inside MLflow's ``safe_patch``: each part of the logging that fails becomes a
warning, the other parts are still logged, and the fit and its result are never changed
(but for the run's id, stamped into the trace's attributes as ``mlflow_run_id``).
"""

from __future__ import annotations

import functools
import sys
import tempfile
import time
import traceback
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import pandas as pd
import xarray as xr
from mlflow.entities import Metric, RunStatus
from mlflow.models import infer_signature
from mlflow.models.model import ModelInfo
from mlflow.tracking import MlflowClient
from mlflow.types import ColSpec, Schema
from mlflow.utils.autologging_utils import _get_new_training_session_class, get_autologging_config, with_managed_run
from mlflow.utils.mlflow_tags import MLFLOW_AUTOLOGGING
from mlflow.utils.validation import MAX_PARAM_VAL_LENGTH, MAX_TAG_VAL_LENGTH
from sklearn.base import BaseEstimator

from estimators.base import BayesianEstimator
from estimators.inference import interruption_behind
from estimators.inference.progress import watching
from estimators.settings import InferenceSettings, settings_that_do_not_apply
from mlflow_pmlearn import log_model
from mlflow_pmlearn.autologging.describe import bayesian_params, model_graph
from mlflow_pmlearn.autologging.failures import attempt, warn
from mlflow_pmlearn.autologging.loo import log_loo, loo_by_default
from mlflow_pmlearn.autologging.metrics import (
    PredictiveChecks,
    elbo_metrics,
    fit_metrics,
    posterior_summary,
    predictive_checks,
)
from mlflow_pmlearn.autologging.plots import fit_plots
from mlflow_pmlearn.autologging.priors import log_prior_checks, prior_checks_by_default
from mlflow_pmlearn.autologging.progress import STATUS_TAG, RunProgress, set_status
from mlflow_pmlearn.pipelines import final_estimator, final_step_feature_names
from mlflow_pmlearn.pyfunc import model_signature
from mlflow_pmlearn.serialization import NETCDF_ENGINE
from mlflow_pmlearn.versions import FLAVOR_NAME

#: Settings of :func:`mlflow_pmlearn.autolog` that the logging reads (their defaults are autolog's own).
AUTOLOG_SETTINGS = (
    "log_models",
    "log_input_examples",
    "log_model_signatures",
    "log_traces",
    "log_plots",
    "log_datasets",
    "registered_model_name",
    "max_tuning_runs",
    "extra_tags",
    "log_loo",
    "log_prior_checks",
)
#: Rows of the training data saved as the model's input example (``log_input_examples``).
INPUT_EXAMPLE_ROWS = 5
#: Rows of the training data from which its dataset's column types are inferred.
SCHEMA_SAMPLE_ROWS = 1000
#: Run tag holding the traceback of a fit that raised.
FIT_ERROR_TAG = "pmlearn.fit_error"
#: Run tag saying why no model was logged, when a meta-estimator fitted no pmlearn estimator.
LOGGED_MODEL_TAG = "pmlearn.logged_model"
#: The trace attribute (of its root) naming the run that logged it, as pymc-marketing names it.
RUN_ID_ATTR = "mlflow_run_id"


@dataclass
class Fit:
    """One pmlearn fit inside an autologged meta-estimator: what it was given and how long it took."""

    estimator: BayesianEstimator
    X: Any
    y: Any
    seconds: float


class TrainingSession(_get_new_training_session_class()):
    """An autologged fit in progress, on MLflow's training-session stack (as ``mlflow.sklearn`` keeps its own).

    The outermost session logs; the fits inside it (a pipeline's steps, a search's
    candidates and refit, an estimator's own nested fit) log nothing and hand the pmlearn fit
    they made up to the session they run in, as :attr:`last_fit`. MLflow's stack is one per
    process: a fit in a joblib worker thread of an autologged search is inside it, and so is a
    fit that another thread makes meanwhile.
    """

    def __init__(self, estimator: BaseEstimator):
        super().__init__(estimator, allow_children=False)
        self.last_fit: Fit | None = None


def autolog_config() -> dict[str, Any]:
    """The settings of the last :func:`mlflow_pmlearn.autolog` call that the logging reads."""
    return {key: get_autologging_config(FLAVOR_NAME, key) for key in AUTOLOG_SETTINGS}


def _readable(value: Any) -> Any:
    """``value`` with estimators replaced by their class names (their parameters have own keys)."""
    if isinstance(value, BaseEstimator):
        return type(value).__name__
    if isinstance(value, (list, tuple)):
        items = [_readable(item) for item in value]
        return tuple(items) if isinstance(value, tuple) else items
    if isinstance(value, dict):
        return {key: _readable(item) for key, item in value.items()}
    return value


def loggable(params: dict[str, Any]) -> dict[str, str]:
    """Parameters as MLflow stores them: strings within its length limit."""
    result = {}
    for key, value in params.items():
        text = str(_readable(value))
        result[key] = text if len(text) <= MAX_PARAM_VAL_LENGTH else text[: MAX_PARAM_VAL_LENGTH - 3] + "..."
    return result


def log_params(params: dict[str, Any]) -> None:
    """Log ``params`` on the active run, keeping any value the run already has.

    MLflow parameters are written once, and ``mlflow run`` logs its entry point's
    parameters before the fit: one may share a name with a hyper-parameter, spelled
    differently (``-P prior_scale=1`` against the estimator's ``1.0``). MLflow would refuse
    the whole batch for that one value; here the others are logged and a warning names it.
    """
    values = loggable(params)
    existing = MlflowClient().get_run(mlflow.active_run().info.run_id).data.params
    differing = [
        f"{key}={existing[key]!r} (fit: {value!r})"
        for key, value in values.items()
        if existing.get(key, value) != value
    ]
    if differing:
        warnings.warn(
            f"pmlearn autologging kept the run's earlier values of {', '.join(differing)}: MLflow "
            "parameters are written once.",
            stacklevel=3,
        )
    mlflow.log_params({key: value for key, value in values.items() if key not in existing})


def hyperparameters(estimator: BayesianEstimator) -> dict[str, Any]:
    """``estimator.get_params(deep=False)`` less the inference settings that do not apply to its
    fit (``n_tune`` on an ADVI fit) or change only what is shown (``progressbar``)."""
    skipped = settings_that_do_not_apply(estimator.inference)
    return {name: value for name, value in estimator.get_params(deep=False).items() if name not in skipped}


def run_progress(estimator: BayesianEstimator, params: dict[str, Any] | None, raw_X: Any) -> RunProgress:
    """The watcher of ``estimator``'s fit in the active run: it logs the run's params (``params``,
    by default :func:`hyperparameters`; the priors, structure and data shape ``raw_X``) and the
    status when the engine starts, then the progress."""

    def log_settings(model, settings: InferenceSettings) -> None:
        log_params(params if params is not None else hyperparameters(estimator))
        log_params(bayesian_params(estimator, model, settings.random_seed, raw_X))

    return RunProgress(mlflow.active_run().info.run_id, estimator, log_settings)


def training_dataset(X: Any, y: Any) -> mlflow.data.pandas_dataset.PandasDataset:
    """The training data as one MLflow dataset: the features and, as ``target``, the targets.

    Its source is the code that ran the fit (script or notebook, user, git commit), and its
    digest identifies the data, so runs fitted on the same data show the same dataset.
    """
    frame = X.copy() if isinstance(X, pd.DataFrame) else pd.DataFrame(np.asarray(X))
    frame.columns = [str(c) for c in frame.columns]
    targets = None
    if y is not None:
        targets = "target" if "target" not in frame.columns else "__target__"
        frame[targets] = np.asarray(y).ravel()  # by position, whatever y's index
    dataset = mlflow.data.from_pandas(frame, targets=targets, name="training")
    # Seed the dataset's cached schema: MLflow would test each value for missingness in a
    # Python loop (0.14 s at 10,000 x 11 values, growing with the rows).
    dataset.__dict__["schema"] = dataset_schema(frame)
    return dataset


def dataset_schema(frame: pd.DataFrame) -> Schema | None:
    """The MLflow schema of ``frame``: types from its first rows, required-ness from all of them.

    The same schema as MLflow infers from the whole frame (for columns of one type each),
    with the missing values found by one vectorised check. None where MLflow cannot infer one.
    """
    try:
        with warnings.catch_warnings():  # MLflow's hint about integer columns concerns serving
            warnings.simplefilter("ignore")
            sample_schema = infer_signature(frame.head(SCHEMA_SAMPLE_ROWS)).inputs
    except Exception:
        return None
    missing = frame.isna().any()
    return Schema([ColSpec(spec.type, spec.name, required=not missing[spec.name]) for spec in sample_schema.inputs])


def log_dataset(X: Any, y: Any) -> mlflow.data.pandas_dataset.PandasDataset:
    """Log the training data as the active run's ``training`` input (:func:`training_dataset`)."""
    dataset = training_dataset(X, y)
    mlflow.log_input(dataset, context="training")
    return dataset


def log_metrics(
    values: dict[str, float], dataset=None, history: list[Metric] = (), model_id: str | None = None
) -> None:
    """One ``log_batch`` (MLflow splits it into batches of its limit).

    ``values`` are linked to the logged model ``model_id`` and ``training_*`` metrics to the
    training dataset, as MLflow's own autologging links them (the UI's logged-model page lists
    the model's metrics and, from their datasets, the "Datasets used"). The ``history`` (the
    ELBO curve) stays on the run only: ``Model.log`` too links only the metrics of the model's step.
    """
    timestamp = int(time.time() * 1000)
    link = {"dataset_name": dataset.name, "dataset_digest": dataset.digest} if dataset is not None else {}
    metrics = [
        Metric(key, float(value), timestamp, 0, model_id=model_id, **(link if key.startswith("training_") else {}))
        for key, value in values.items()
    ]
    MlflowClient().log_batch(mlflow.active_run().info.run_id, metrics=[*metrics, *history])


def log_fit(
    estimator: BayesianEstimator,
    X: Any,
    y: Any,
    fit_seconds: float,
    config: dict[str, Any],
    *,
    params: dict[str, Any] | None = None,
    metrics: dict[str, float] | None = None,
    data: tuple[Any, Any] | None = None,
    whole_model: BaseEstimator | None = None,
    params_logged: bool = False,
) -> None:
    """Log one finished fit to the active run; each part that fails becomes a warning.

    Parameters
    ----------
    estimator : BayesianEstimator
        The fitted estimator.
    X, y
        What ``estimator.fit`` was given.
    fit_seconds : float
        Wall time of the fit (of the whole meta-estimator's fit, for one).
    config : dict
        The autolog settings (:func:`autolog_config`).
    params : dict, optional
        Hyper-parameters to log; by default :func:`hyperparameters`; a meta-estimator passes its own.
    metrics : dict, optional
        More metrics, e.g. a search's ``best_cv_score``.
    data : (X, y), optional
        The training data as the user passed it (to a pipeline), for the dataset input, the
        data shape and a pipeline's signature; by default ``(X, y)``.
    whole_model : Pipeline, optional
        The pipeline that ends in ``estimator``: the model logged (and registered), by
        default ``estimator``.
    params_logged : bool, default=False
        Whether the params (hyper-parameters, priors, structure, data shape) were logged
        when the engine started (:func:`run_progress`); if not, they are logged here.
    """
    run_id = mlflow.active_run().info.run_id
    set_status(run_id, "logging")
    raw_X, raw_y = data if data is not None else (X, y)
    estimator.idata_.attrs[RUN_ID_ATTR] = run_id  # before the trace and the model are logged
    if not params_logged:  # a search's refit, or a fit whose params failed to log when it started
        attempt("the hyper-parameters", lambda: log_params(hyperparameters(estimator) if params is None else params))
        seed = estimator.idata_.posterior.attrs.get("pmlearn_seed")
        attempt(
            "the priors and model structure",
            lambda: log_params(bayesian_params(estimator, estimator.pymc_model(), seed, raw_X)),
        )
    dataset = attempt("the training dataset", lambda: log_dataset(raw_X, raw_y)) if config["log_datasets"] else None
    idata = _labelled_trace(estimator, whole_model)
    summary = attempt("the posterior summary", lambda: posterior_summary(idata))
    checks = attempt("the posterior predictive checks", lambda: predictive_checks(estimator, X, y))

    # The model first, so that the metrics can name it (as MLflow's scikit-learn autolog does).
    logged = estimator if whole_model is None else whole_model
    model = attempt("the model", lambda: _log_model(logged, config, raw_X)) if config["log_models"] else None

    def log_fit_metrics() -> None:
        values = {**fit_metrics(estimator, fit_seconds, summary, checks), **(metrics or {})}
        has_history = "fit_history" in estimator.idata_.children
        history = elbo_metrics(estimator.idata_, int(time.time() * 1000)) if has_history else []
        log_metrics(values, dataset, history, model_id=model.model_id if model is not None else None)

    attempt("the metrics", log_fit_metrics)
    # Computed once for PSIS-LOO and the prior sensitivity, when either needs it.
    log_likelihood = functools.cache(estimator.training_log_likelihood)
    if config["log_loo"] or (config["log_loo"] is None and loo_by_default(estimator)):
        model_id = model.model_id if model is not None else None
        attempt(
            "PSIS-LOO",
            lambda: log_loo(
                estimator, model_id=model_id, dataset=dataset, plot=config["log_plots"], log_likelihood=log_likelihood
            ),
        )
    if config["log_prior_checks"] or (config["log_prior_checks"] is None and prior_checks_by_default(estimator)):
        target_name = checks.target_name if checks is not None else "target"
        attempt(
            "the prior checks",
            lambda: log_prior_checks(
                estimator, idata, log_likelihood=log_likelihood, plot=config["log_plots"], target_name=target_name
            ),
        )
    if config["log_traces"]:
        attempt("the trace", lambda: _log_trace(idata, summary))
    if config["log_plots"]:
        attempt("the plots", lambda: _log_plots(estimator, checks, idata))
    set_status(run_id, "finished")


def _labelled_trace(estimator: BayesianEstimator, whole_model: BaseEstimator | None) -> xr.DataTree:
    """The estimator's trace, its ``feature`` coordinate named after a pipeline's transformed columns.

    A pipeline's final step fitted on an unnamed array (the earlier steps output NumPy)
    calls its features ``x0``, ``x1``, ...; the summary, trace and plots logged then use
    ``get_feature_names_out`` of the earlier steps instead. The estimator is unchanged.
    """
    idata = estimator.idata_
    if whole_model is None or hasattr(estimator, "feature_names_in_"):
        return idata
    names = final_step_feature_names(whole_model)
    if names is None or len(names) != estimator.n_features_in_:
        return idata
    return idata.map_over_datasets(lambda data: data.assign_coords(feature=names) if "feature" in data.dims else data)


def _code_paths(estimator: BayesianEstimator) -> list[str] | None:
    """The file of a bespoke estimator's top-level module, to ship with the model.

    The same as ``code_paths=[__file__]`` in that module: the class is then found by name
    wherever the model is loaded. Built-ins (and classes in packages) ship nothing here.
    """
    module = sys.modules.get(type(estimator).__module__)
    path = getattr(module, "__file__", None)
    if module is None or "." in module.__name__ or module.__name__ == "__main__" or not path:
        return None
    return [path] if path.endswith(".py") and Path(path).name != "__init__.py" else None


def _log_model(model: BaseEstimator, config: dict[str, Any], raw_X: Any) -> ModelInfo:
    """Log (and register) the fitted estimator, or the pipeline ending in it, as ``model``.

    A pipeline's input example and signature come from the raw rows it was fitted on.
    """
    estimator = final_estimator(model)[1]
    if model is estimator:
        example, signature = estimator.training_sample(INPUT_EXAMPLE_ROWS), None
    else:
        example = (
            raw_X.head(INPUT_EXAMPLE_ROWS)
            if isinstance(raw_X, pd.DataFrame)
            else np.asarray(raw_X)[:INPUT_EXAMPLE_ROWS]
        )
        signature = model_signature(model, example) if config["log_model_signatures"] else None
    return log_model(
        model,
        name="model",
        input_example=example if config["log_input_examples"] else None,
        signature=signature if config["log_model_signatures"] else False,
        registered_model_name=config["registered_model_name"],
        code_paths=_code_paths(estimator),
    )


def _log_files(files: dict[str, bytes], artifact_path: str) -> None:
    with tempfile.TemporaryDirectory() as directory:
        for name, content in files.items():
            (Path(directory) / name).write_bytes(content)
        mlflow.log_artifacts(directory, artifact_path)


def _log_plots(estimator: BayesianEstimator, checks: PredictiveChecks | None, idata: xr.DataTree) -> None:
    graph_name, graph = model_graph(estimator.pymc_model())
    _log_files({**fit_plots(estimator, checks, idata), graph_name: graph}, "plots")


def _log_trace(idata: xr.DataTree, summary: pd.DataFrame | None) -> None:
    """The trace as NetCDF (reloads with ``xarray.open_datatree``) and its summary as CSV and HTML."""
    with tempfile.TemporaryDirectory() as directory:
        idata.to_netcdf(Path(directory) / "trace.nc", engine=NETCDF_ENGINE)
        if summary is not None:
            summary.to_csv(Path(directory) / "summary.csv")
            (Path(directory) / "summary.html").write_text(summary.to_html(float_format=lambda v: f"{v:.4g}"))
        mlflow.log_artifacts(directory, "trace")


def run_tags(config: dict[str, Any]) -> dict[str, str]:
    """The tags of a run that autolog starts: the user's ``extra_tags`` and MLflow's autologging tag."""
    return {**(config["extra_tags"] or {}), MLFLOW_AUTOLOGGING: FLAVOR_NAME}


def _fit_status(error: BaseException) -> str:
    """The run's status after an error stopped a fit: "interrupted", "killed" or "failed: <error>".

    A Ctrl-C that lands inside compiled code can surface as another error, raised while
    the ``KeyboardInterrupt`` is handled: the chain of errors says what stopped the fit.
    """
    interruption = interruption_behind(error)
    if interruption is None:
        return f"failed: {type(error).__name__}"
    return "interrupted" if isinstance(interruption, KeyboardInterrupt) else "killed"


def _record_fit_error(error: BaseException) -> None:
    """Keep the traceback of ``error``, being handled, and the status in the run (never masking it)."""
    status = _fit_status(error)
    try:
        if mlflow.active_run() is not None:
            mlflow.set_tags({FIT_ERROR_TAG: traceback.format_exc()[-MAX_TAG_VAL_LENGTH:], STATUS_TAG: status})
    except Exception as logging_error:
        warn("the fit's error", logging_error)


def timed_fit(original: Callable, estimator: BaseEstimator, X: Any, y: Any, kwargs: dict) -> tuple[Any, float]:
    """``original(estimator, X, y, **kwargs)`` and its wall time; an error it raises is recorded in the run."""
    start = time.perf_counter()
    try:
        result = original(estimator, X, y, **kwargs)
    except BaseException as error:  # KeyboardInterrupt and SystemExit too: the run says where the fit stopped
        _record_fit_error(error)
        raise
    return result, time.perf_counter() - start


def in_managed_run(function: Callable, config: dict[str, Any], *args, **kwargs):
    """``function(*args, **kwargs)`` in the run MLflow's ``with_managed_run`` starts if none is active.

    That run ends FINISHED, or FAILED on an exception or a KeyboardInterrupt. A
    ``SystemExit`` (e.g. raised by an application's SIGTERM handler) would leave it active
    until MLflow's exit hook ended it FINISHED; it is ended KILLED instead. No signal handler
    is installed: a library must not take over the process's signals.
    """
    starts_run = mlflow.active_run() is None
    try:
        return with_managed_run(FLAVOR_NAME, function, tags=run_tags(config))(*args, **kwargs)
    except SystemExit:
        if starts_run and mlflow.active_run() is not None:
            mlflow.end_run(RunStatus.to_string(RunStatus.KILLED))
        raise


def patched_fit(original: Callable, self: BayesianEstimator, X: Any, y: Any = None, **kwargs):
    """``BayesianEstimator.fit`` under autolog: fit, then log; a fit inside another autologged fit
    logs nothing and hands itself up to that fit's :class:`TrainingSession`."""
    config = autolog_config()
    # MLflow's managed run starts a run only outside every training session: for the outermost fit.
    return in_managed_run(_fit_in_session, config, original, self, X, y, config, **kwargs)


def _fit_in_session(original: Callable, estimator: BayesianEstimator, X: Any, y: Any, config: dict[str, Any], **kwargs):
    parent = TrainingSession.get_current_session()
    with TrainingSession(estimator) as session:
        if session.should_log():
            return fit_and_log(original, estimator, X, y, config, **kwargs)
        start = time.perf_counter()
        result = original(estimator, X, y, **kwargs)
        if parent is not None:
            parent.last_fit = Fit(estimator, X, y, time.perf_counter() - start)
        return result


def fit_and_log(original: Callable, estimator: BayesianEstimator, X: Any, y: Any, config: dict[str, Any], **kwargs):
    """Fit ``estimator`` in the active run, showing its progress, then log the fit."""
    progress = run_progress(estimator, None, X)
    try:
        with watching(progress):
            result, seconds = timed_fit(original, estimator, X, y, kwargs)
    finally:
        progress.wait()
    # Whatever fails while logging is a warning: the run still ends FINISHED, as the fit did.
    attempt("the fit", lambda: log_fit(estimator, X, y, seconds, config, params_logged=progress.settings_logged))
    return result
