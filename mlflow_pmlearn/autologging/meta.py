"""Autologged Pipeline and parameter-search fits: one run each, and a child run per search candidate.

A ``Pipeline`` or a parameter search (``GridSearchCV``, ``RandomizedSearchCV``) whose
estimator ends in a pmlearn estimator logs once, as a whole: the fits inside it only hand
their data and timing up to it (:class:`~mlflow_pmlearn.autologging.runs.TrainingSession`)
and create no run of their own; a search adds a finished child run per candidate.
"""

from __future__ import annotations

import contextlib
import functools
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import pandas as pd
from mlflow.entities import Metric, Param
from mlflow.tracking import MlflowClient
from mlflow.utils.mlflow_tags import MLFLOW_PARENT_RUN_ID
from sklearn.base import BaseEstimator
from sklearn.model_selection._search import BaseSearchCV
from sklearn.pipeline import Pipeline

from estimators.inference.progress import watching
from mlflow_pmlearn.autologging.failures import attempt
from mlflow_pmlearn.autologging.runs import (
    LOGGED_MODEL_TAG,
    Fit,
    TrainingSession,
    autolog_config,
    in_managed_run,
    log_dataset,
    log_fit,
    log_metrics,
    log_params,
    loggable,
    run_progress,
    run_tags,
    timed_fit,
)
from mlflow_pmlearn.pipelines import final_estimator


def _candidates(meta: BaseEstimator) -> Iterator[Any]:
    """The estimators a meta-estimator fits: its own, and a search's grid entries."""
    if not isinstance(meta, BaseSearchCV):
        yield meta
        return
    yield meta.estimator
    grids = getattr(meta, "param_grid", None) or getattr(meta, "param_distributions", None) or []
    for grid in grids if isinstance(grids, list) else [grids]:
        for values in grid.values() if isinstance(grid, dict) else []:
            if isinstance(values, (list, tuple)):
                yield from values


def contains_bayesian(meta: BaseEstimator) -> bool:
    """Whether a Pipeline or search ends in a pmlearn estimator (or its grid puts one there)."""
    return any(
        isinstance(candidate, BaseEstimator) and final_estimator(candidate)[1] is not None
        for candidate in _candidates(meta)
    )


def patched_meta_fit(original: Callable, self: BaseEstimator, X: Any, y: Any = None, **kwargs):
    """``Pipeline.fit`` and ``BaseSearchCV.fit`` under autolog: one run when they hold a pmlearn
    estimator (nothing otherwise); inside another autologged fit, nothing, and the pmlearn fit
    made inside is handed up to that fit's :class:`~mlflow_pmlearn.autologging.runs.TrainingSession`."""
    if not contains_bayesian(self):
        return original(self, X, y, **kwargs)
    config = autolog_config()
    return in_managed_run(_meta_fit_in_session, config, original, self, X, y, config, **kwargs)


def _meta_fit_in_session(original: Callable, meta: BaseEstimator, X: Any, y: Any, config: dict[str, Any], **kwargs):
    parent = TrainingSession.get_current_session()
    with TrainingSession(meta) as session:
        if session.should_log():
            return fit_and_log_meta(original, meta, X, y, config, session, **kwargs)
        result = original(meta, X, y, **kwargs)
        if parent is not None and session.last_fit is not None:
            parent.last_fit = session.last_fit
        return result


def fit_and_log_meta(
    original: Callable,
    meta: BaseEstimator,
    X: Any,
    y: Any,
    config: dict[str, Any],
    session: TrainingSession,
    **kwargs,
):
    """Fit a pipeline or search in the active run, then log it with the pmlearn fit ``session`` saw."""
    # A pipeline's run shows its pmlearn step's fit as it runs; a search's many fits are not watched.
    step = final_estimator(meta)[1] if isinstance(meta, Pipeline) else None
    progress = run_progress(step, meta.get_params(deep=True), X) if step is not None else None
    try:
        with watching(progress) if progress is not None else contextlib.nullcontext():
            result, seconds = timed_fit(original, meta, X, y, kwargs)
    finally:
        if progress is not None:
            progress.wait()
    if isinstance(meta, BaseSearchCV):
        log = functools.partial(log_search_fit, meta, X, y, seconds, session.last_fit, config)
    else:
        params_logged = progress is not None and progress.settings_logged
        log = functools.partial(log_pipeline_fit, meta, X, y, seconds, session.last_fit, config, params_logged)
    attempt(f"the {type(meta).__name__} fit", log)
    return result


def _log_without_posterior(
    params: dict[str, Any], metrics: dict[str, float], X: Any, y: Any, config: dict[str, Any], reason: str
) -> None:
    """A meta-estimator's run when no pmlearn fit can be reported (e.g. a search with refit=False)."""
    mlflow.set_tag(LOGGED_MODEL_TAG, f"none: {reason}")
    attempt("the hyper-parameters", lambda: log_params(params))
    dataset = attempt("the training dataset", lambda: log_dataset(X, y)) if config["log_datasets"] else None
    attempt("the metrics", lambda: log_metrics(metrics, dataset))


def log_pipeline_fit(
    pipeline: Pipeline,
    X: Any,
    y: Any,
    fit_seconds: float,
    fit: Fit | None,
    config: dict[str, Any],
    params_logged: bool = False,
) -> None:
    """One run for a pipeline: its parameters (deep), everything about its pmlearn step, and the pipeline as the model
    (``params_logged``: as :func:`~mlflow_pmlearn.autologging.runs.log_fit`'s)."""
    params = pipeline.get_params(deep=True)
    path, step = final_estimator(pipeline)
    if step is None or fit is None or fit.estimator is not step:
        _log_without_posterior(
            params,
            {"fit_time_s": fit_seconds},
            X,
            y,
            config,
            "the pipeline did not fit a pmlearn estimator as its final step",
        )
        return
    mlflow.set_tag("pmlearn.bayesian_step", path)
    log_fit(
        step,
        fit.X,
        fit.y,
        fit_seconds,
        config,
        params=params,
        data=(X, y),
        whole_model=pipeline,
        params_logged=params_logged,
    )


def log_search_fit(
    search: BaseSearchCV, X: Any, y: Any, fit_seconds: float, fit: Fit | None, config: dict[str, Any]
) -> None:
    """The parent run of a parameter search, with the refitted best estimator; a child run per
    candidate (the best ``max_tuning_runs``) with its parameters and cross-validation scores."""
    params = search.get_params(deep=False)
    params.update({f"best_{key}": value for key, value in (getattr(search, "best_params_", None) or {}).items()})
    metrics = {"best_cv_score": float(search.best_score_)} if hasattr(search, "best_score_") else {}
    if hasattr(search, "cv_results_"):
        attempt("the search results (cv_results.csv)", lambda: _log_cv_results(search))
        attempt("the candidates' child runs", lambda: _log_child_runs(search, config))
    best = getattr(search, "best_estimator_", None)
    path, step = final_estimator(best)
    if step is None or fit is None or fit.estimator is not step:
        reason = (
            "refit=False: no best estimator was fitted"
            if best is None
            else f"the best estimator ({type(best).__name__}) is not a pmlearn estimator"
        )
        _log_without_posterior(params, {"fit_time_s": fit_seconds, **metrics}, X, y, config, reason)
        return
    if path:
        mlflow.set_tag("pmlearn.bayesian_step", path)
    log_fit(step, fit.X, fit.y, fit_seconds, config, params=params, metrics=metrics, data=(X, y), whole_model=best)


def _log_cv_results(search: BaseSearchCV) -> None:
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "cv_results.csv"
        pd.DataFrame(search.cv_results_).to_csv(path, index=False)
        mlflow.log_artifact(str(path))


def _log_child_runs(search: BaseSearchCV, config: dict[str, Any]) -> None:
    """A finished child run per candidate: the best ``max_tuning_runs`` by rank, or all for None."""
    from mlflow.tracking.context.registry import resolve_tags

    results = pd.DataFrame(search.cv_results_)
    rank = (
        "rank_test_score"
        if "rank_test_score" in results
        else next((c for c in results if c.startswith("rank_test_")), None)
    )
    limit = config["max_tuning_runs"]
    chosen = results if limit is None else results.nsmallest(limit, rank) if rank else results.head(limit)
    parent = mlflow.active_run()
    client = MlflowClient()
    base = search.estimator.get_params(deep=True)
    tags = resolve_tags({**run_tags(config), MLFLOW_PARENT_RUN_ID: parent.info.run_id})
    now = int(time.time() * 1000)
    for index, row in chosen.iterrows():
        name = f"candidate {index}" + (f" (rank {row[rank]})" if rank else "")
        run = client.create_run(parent.info.experiment_id, start_time=parent.info.start_time, tags=tags, run_name=name)
        scores = {
            key: float(value)
            for key, value in row.items()
            if key != "params" and not key.startswith("param_") and isinstance(value, (int, float, np.number))
        }
        client.log_batch(
            run.info.run_id,
            metrics=[Metric(key, value, now, 0) for key, value in scores.items()],
            params=[Param(key, value) for key, value in loggable({**base, **row["params"]}).items()],
        )
        client.set_terminated(run.info.run_id, end_time=now)
    mlflow.set_tag("pmlearn.child_runs", f"{len(chosen)} of {len(results)} candidates (max_tuning_runs={limit})")
