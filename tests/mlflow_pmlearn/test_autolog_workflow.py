"""autolog as a Bayesian workflow, against a real sqlite store: the run while the fit runs,
the prior checks, and the trace naming its run.

The run is polled from another thread while the fit runs, as a user watching the MLflow UI
would see it. The progress interval is shortened (``PROGRESS_INTERVAL_S``) so that these
small fits, of a second or so of sampling, log several steps.
"""

from __future__ import annotations

import threading
import time

import arviz_stats
import mlflow
import numpy as np
import pandas as pd
import pymc as pm
import pytest
import xarray as xr
from conftest import FAST_NUTS, raised_from
from mlflow.tracking import MlflowClient
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler
from test_autolog import (
    QUICK,
    _artifact_bytes,
    _autologged_fit,
    _new_experiment,
    _only_run,
)

import mlflow_pmlearn
from estimators.linear_model import LinearRegression
from mlflow_pmlearn.autologging import progress as autolog_progress
from mlflow_pmlearn.autologging import runs as autolog_runs
from mlflow_pmlearn.autologging.priors import PRIOR_WARNING_TAG
from mlflow_pmlearn.autologging.progress import STATUS_TAG

#: Long enough sampling (a second or so) for a few progress steps at the shortened interval.
WATCHED_NUTS = {**FAST_NUTS, "n_tune": 1000, "n_draws": 1000}


@pytest.fixture(autouse=True)
def _autolog_off_afterwards():
    yield
    mlflow_pmlearn.autolog(disable=True)


class _Poller:
    """Reads the experiment's runs from another thread while a fit runs: what a UI would show."""

    def __init__(self, experiment_id: str):
        self.experiment_id = experiment_id
        self.seen: list[dict] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)

    def _poll(self) -> None:
        client = MlflowClient()
        while not self._stop.wait(0.05):
            for run in mlflow.search_runs(experiment_ids=[self.experiment_id], output_format="list"):
                if run.info.status == "RUNNING":
                    steps = [metric.step for metric in client.get_metric_history(run.info.run_id, "progress/draws")]
                    self.seen.append(
                        {
                            "params": run.data.params,
                            "tags": run.data.tags,
                            "steps": steps,
                        }
                    )

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc_info):
        self._stop.set()
        self._thread.join()


#: Each sampler's settings and progress interval (s). PyMC's samples WATCHED_NUTS's 4,000
#: draws in about 2 s; nutpie in about 0.2 s: it gets more draws and its fastest rate (its
#: reports come from its own thread, so the logging does not slow its sampling).
SAMPLERS = {
    "pymc": (WATCHED_NUTS, 0.1),
    "nutpie": ({**WATCHED_NUTS, "n_tune": 3000, "n_draws": 3000}, 0.01),
}


@pytest.mark.parametrize("sampler", list(SAMPLERS))
def test_a_nuts_fit_shows_its_settings_and_progress_while_it_samples(
    tracking_uri, tmp_path_factory, regression_data, monkeypatch, sampler
):
    settings, interval_s = SAMPLERS[sampler]
    monkeypatch.setattr(autolog_progress, "PROGRESS_INTERVAL_S", interval_s)
    X, y, _ = regression_data
    experiment_id = _new_experiment(tmp_path_factory, f"live-{sampler}")
    mlflow_pmlearn.autolog(log_models=False, log_plots=False, log_traces=False, log_prior_checks=False)
    with _Poller(experiment_id) as poller:
        LinearRegression(nuts_sampler=sampler, **settings).fit(X.iloc[:150], y.iloc[:150])
        returned_ms = time.time() * 1000
    run = _only_run(experiment_id)

    # Seen from the other thread while the run was RUNNING: the settings, priors and data
    # shape, the status, and progress that grew.
    live = [seen for seen in poller.seen if seen["steps"]]
    assert live, "no progress was visible while the fit ran"
    assert {"n_draws", "nuts_sampler", "prior.coef_std", "training.rows"} <= set(live[0]["params"])
    assert live[0]["params"]["nuts_sampler"] == sampler
    assert live[0]["tags"][STATUS_TAG].startswith(f"fitting: NUTS ({sampler} sampler")

    history = MlflowClient().get_metric_history(run.info.run_id, "progress/draws")
    steps = [metric.step for metric in history]
    assert len(steps) >= 3 and steps == sorted(steps) and len(set(steps)) == len(steps)
    assert all(metric.timestamp <= returned_ms for metric in history)  # logged before fit returned
    assert all(metric.value == metric.step for metric in history)
    assert steps[-1] <= 2 * (settings["n_tune"] + settings["n_draws"])
    for name in ("divergences", "step_size", "fraction_done", "elapsed_s"):
        assert len(MlflowClient().get_metric_history(run.info.run_id, f"progress/{name}")) == len(steps), name
    assert run.info.status == "FINISHED" and run.data.tags[STATUS_TAG] == "finished"


def test_an_advi_fit_logs_its_loss_as_it_runs(tracking_uri, tmp_path_factory, regression_data, monkeypatch):
    monkeypatch.setattr(autolog_progress, "PROGRESS_INTERVAL_S", 0.1)
    X, y, _ = regression_data
    estimator, run = _autologged_fit(
        tmp_path_factory,
        "live-advi",
        LinearRegression(**QUICK),
        X,
        y,
        log_models=False,
        log_plots=False,
        log_traces=False,
    )
    loss = MlflowClient().get_metric_history(run.info.run_id, "progress/loss")
    assert len(loss) >= 3
    iterations = [metric.step for metric in loss]
    assert iterations == sorted(iterations) and iterations[-1] <= estimator.idata_.fit_history.sizes["iteration"]
    assert loss[-1].value < loss[0].value  # the loss falls as ADVI fits


def test_an_interrupted_fit_leaves_a_failed_run_with_its_progress(
    tracking_uri, tmp_path_factory, regression_data, monkeypatch
):
    """A Ctrl-C while sampling (raised here from the progress logging, as PyMC allows in its callback)."""
    monkeypatch.setattr(autolog_progress, "PROGRESS_INTERVAL_S", 0.1)
    logged = autolog_progress.RunProgress.progress

    def interrupt_after_two(self, step, values):
        logged(self, step, values)
        self.reports = getattr(self, "reports", 0) + 1
        if self.reports == 2:
            raise KeyboardInterrupt

    monkeypatch.setattr(autolog_progress.RunProgress, "progress", interrupt_after_two)
    X, y, _ = regression_data
    experiment_id = _new_experiment(tmp_path_factory, "interrupted")
    mlflow_pmlearn.autolog()
    with pytest.raises(KeyboardInterrupt):
        LinearRegression(**WATCHED_NUTS).fit(X.iloc[:150], y.iloc[:150])
    run = _only_run(experiment_id)
    assert run.info.status == "FAILED" and run.data.tags[STATUS_TAG] == "interrupted"
    assert "prior.coef_std" in run.data.params and run.data.params["n_draws"] == "1000"
    draws = [metric.value for metric in MlflowClient().get_metric_history(run.info.run_id, "progress/draws")]
    assert len(draws) >= 2 and max(draws) < 2 * (WATCHED_NUTS["n_tune"] + WATCHED_NUTS["n_draws"])  # where it stopped
    assert "training_score" not in run.data.metrics
    assert mlflow.search_logged_models(experiment_ids=[experiment_id], output_format="list") == []


@pytest.mark.parametrize(
    ("error", "status"),
    [
        (raised_from(KeyboardInterrupt()), "interrupted"),
        # Ctrl-C landing in compiled code: CPython raises SystemError from the KeyboardInterrupt.
        (raised_from(SystemError("returned a result with an exception set"), KeyboardInterrupt()), "interrupted"),
        (raised_from(SystemExit(1)), "killed"),
        (raised_from(ValueError("bad rows"), ZeroDivisionError()), "failed: ValueError"),
    ],
)
def test_the_run_status_names_what_stopped_the_fit(error, status):
    assert autolog_runs._fit_status(error) == status


@pytest.fixture(scope="module")
def nuts_fits(tracking_uri, tmp_path_factory, regression_data):
    """Autologged NUTS fits of a well-specified prior and of one that conflicts with the data:
    the coefficients' prior sd 0.05 on the standardised scale, where the data put them near 0.9."""
    X, y, _ = regression_data
    settings = {"log_models": False}
    return {
        name: _autologged_fit(
            tmp_path_factory,
            f"priors-{name}",
            LinearRegression(**FAST_NUTS, **params),
            X.iloc[:150],
            y.iloc[:150],
            **settings,
        )
        for name, params in {
            "default": {},
            "conflicting": {"prior_scale_coef": 0.05},
        }.items()
    }


def _sensitivity(run, tmp_path) -> pd.DataFrame:
    (tmp_path / "sensitivity").mkdir(exist_ok=True)
    local = mlflow.artifacts.download_artifacts(
        run_id=run.info.run_id,
        artifact_path="prior_sensitivity.csv",
        dst_path=str(tmp_path / "sensitivity"),
    )
    return pd.read_csv(local, index_col="parameter", keep_default_na=False)


def test_the_sensitivity_table_is_arviz_psense_on_the_logged_draws(nuts_fits, tmp_path):
    estimator, run = nuts_fits["default"]
    table = _sensitivity(run, tmp_path)
    # Independently of autolog: the logged trace's draws, PyMC's log prior and log-likelihood, ArviZ.
    trace_path = mlflow.artifacts.download_artifacts(
        run_id=run.info.run_id, artifact_path="trace/trace.nc", dst_path=str(tmp_path)
    )
    free = [rv.name for rv in estimator.pymc_model().free_RVs]
    posterior = xr.open_datatree(trace_path).posterior.to_dataset()[free].load()
    data = xr.DataTree.from_dict({"posterior": posterior})
    model = estimator.pymc_model()
    log_prior = pm.stats.compute_log_prior(data, model=model, extend_inferencedata=False, progressbar=False)
    log_likelihood = pm.stats.compute_log_likelihood(data, model=model, extend_inferencedata=False, progressbar=False)
    data = xr.DataTree.from_dict(
        {
            "posterior": posterior,
            "log_prior": log_prior,
            "log_likelihood": log_likelihood,
        }
    )
    reference = arviz_stats.psense_summary(data, round_to=12)

    assert list(table.index) == list(reference.index)  # a row per free parameter's component
    assert list(table.index) == [
        "intercept_std",
        "coef_std[0]",
        "coef_std[1]",
        "coef_std[2]",
        "noise_std",
    ]
    np.testing.assert_allclose(
        table[["prior", "likelihood"]],
        reference[["prior", "likelihood"]],
        rtol=1e-8,
        atol=1e-10,
    )
    assert list(table["diagnosis"]) == list(reference["diagnosis"])
    # Written unrounded: at least 6 decimals (ArviZ's summary rounds to 3).
    text = _artifact_bytes(run.info.run_id, "prior_sensitivity.csv", tmp_path).decode()
    assert all(len(line.split(",")[1].split(".")[1]) >= 6 for line in text.splitlines()[1:])


def test_a_conflicting_prior_is_tagged_and_a_well_specified_one_is_not(nuts_fits, tmp_path):
    _, default_run = nuts_fits["default"]
    _, conflicting_run = nuts_fits["conflicting"]
    assert PRIOR_WARNING_TAG not in default_run.data.tags
    assert set(_sensitivity(default_run, tmp_path)["diagnosis"]) == {"✓"}
    warning = conflicting_run.data.tags[PRIOR_WARNING_TAG]
    assert "coef_std[0]: potential prior-data conflict" in warning
    assert (_sensitivity(conflicting_run, tmp_path).loc["coef_std[0]", ["prior", "likelihood"]] > 0.05).all()


def test_prior_checks_log_their_plots(nuts_fits):
    _, run = nuts_fits["default"]
    plots = {artifact.path for artifact in MlflowClient().list_artifacts(run.info.run_id, "plots")}
    assert {"plots/prior_predictive_check.png", "plots/prior_posterior.png"} <= plots


def test_log_prior_checks_false_logs_none(tracking_uri, tmp_path_factory, regression_data):
    X, y, _ = regression_data
    _, run = _autologged_fit(
        tmp_path_factory,
        "no-priors",
        LinearRegression(**QUICK),
        X.iloc[:100],
        y.iloc[:100],
        log_prior_checks=False,
        log_models=False,
    )
    paths = {artifact.path for artifact in MlflowClient().list_artifacts(run.info.run_id)}
    plots = {artifact.path for artifact in MlflowClient().list_artifacts(run.info.run_id, "plots")}
    assert "prior_sensitivity.csv" not in paths and "plots/posterior.png" in plots
    assert not {"plots/prior_predictive_check.png", "plots/prior_posterior.png"} & plots


def test_the_trace_names_its_run_in_the_fitted_and_the_logged_trace(nuts_fits, tmp_path):
    estimator, run = nuts_fits["default"]
    assert estimator.idata_.attrs["mlflow_run_id"] == run.info.run_id
    trace_path = mlflow.artifacts.download_artifacts(
        run_id=run.info.run_id, artifact_path="trace/trace.nc", dst_path=str(tmp_path)
    )
    assert xr.open_datatree(trace_path).attrs["mlflow_run_id"] == run.info.run_id


def test_a_pipelines_run_shows_its_pmlearn_steps_progress(tracking_uri, tmp_path_factory, regression_data, monkeypatch):
    monkeypatch.setattr(autolog_progress, "PROGRESS_INTERVAL_S", 0.02)
    X, y, _ = regression_data
    pipeline = Pipeline([("scale", StandardScaler()), ("reg", LinearRegression(**QUICK))])
    _, run = _autologged_fit(
        tmp_path_factory,
        "live-pipeline",
        pipeline,
        X.iloc[:100],
        y.iloc[:100],
        log_models=False,
        log_plots=False,
        log_traces=False,
        log_prior_checks=False,
    )
    assert len(MlflowClient().get_metric_history(run.info.run_id, "progress/loss")) >= 2
    assert {"reg__n_draws", "prior.coef_std", "training.rows"} <= set(run.data.params)
    assert run.data.tags[STATUS_TAG] == "finished"


def test_the_run_is_told_only_of_its_own_estimators_fit():
    """A nested estimator's fit (another object) is not the run's: its start logs nothing."""
    settings_logged = []
    watched, other = LinearRegression(), LinearRegression()
    watcher = autolog_progress.RunProgress("no-run", watched, lambda model, settings: settings_logged.append(settings))
    watcher.fit_starting(other, pm.Model(), None)
    watcher.progress(1, {"draws": 1.0})  # before its own fit starts: nothing is logged (no run is called)
    assert settings_logged == [] and watcher._pending == []
