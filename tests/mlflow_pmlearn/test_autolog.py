"""``mlflow_pmlearn.autolog()`` against a real MLflow: a sqlite tracking store and registry.

No mocks of MLflow: each fit is autologged into a fresh experiment, and what landed is read
back through the tracking API (params, metric histories, artifacts, dataset inputs, logged
and registered models). The fits that several tests read are made once per module.
"""

from __future__ import annotations

import io
import logging
import uuid
import warnings
from pathlib import Path

import arviz_stats
import joblib
import mlflow
import mlflow.pyfunc
import numpy as np
import pandas as pd
import pytest
import xarray as xr
from conftest import FAST, FAST_NUTS
from mlflow.tracking import MlflowClient
from PIL import Image
from scipy.stats import loguniform
from sklearn.linear_model import Ridge
from sklearn.model_selection import GridSearchCV, RandomizedSearchCV
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler
from test_flavor import BESPOKE_FILE, _import_bespoke

import mlflow_pmlearn
from estimators.linear_model import LinearRegression
from mlflow_pmlearn.autologging import metrics as autolog_metrics
from mlflow_pmlearn.autologging import plots as autolog_plots
from mlflow_pmlearn.autologging import runs as autolog_runs

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
#: Quicker still, for the tests that fit many times (search) or only look at the run.
QUICK = {**FAST, "n_draws": 100, "max_iter": 1500}


@pytest.fixture(autouse=True)
def _autolog_off_afterwards():
    """Whatever a test does, autolog is off for the next test and module."""
    yield
    mlflow_pmlearn.autolog(disable=True)


@pytest.fixture
def autolog_warnings():
    """Warnings raised while logging: inside ``safe_patch`` MLflow reroutes them to its logger."""
    records: list[logging.LogRecord] = []
    handler = logging.Handler(level=logging.WARNING)
    handler.emit = records.append
    logger = logging.getLogger("mlflow.utils.autologging_utils")
    logger.addHandler(handler)
    yield records
    logger.removeHandler(handler)


def _new_experiment(tmp_path_factory, label: str) -> str:
    experiment_id = mlflow.create_experiment(
        f"test_autolog-{label}-{uuid.uuid4().hex[:8]}",
        artifact_location=tmp_path_factory.mktemp(f"autolog-{label}").as_uri(),
    )
    mlflow.set_experiment(experiment_id=experiment_id)
    return experiment_id


def _runs(experiment_id: str) -> list[mlflow.entities.Run]:
    return mlflow.search_runs(experiment_ids=[experiment_id], output_format="list")


def _only_run(experiment_id: str) -> mlflow.entities.Run:
    (run,) = _runs(experiment_id)
    return run


def _logged_models(experiment_id: str) -> list:
    return mlflow.search_logged_models(experiment_ids=[experiment_id], output_format="list")


def _artifact_bytes(run_id: str, path: str, tmp_path) -> bytes:
    local = mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path=path, dst_path=str(tmp_path))
    with open(local, "rb") as file:
        return file.read()


def _broken_plots(*args, **kwargs):
    """Stands in for ``autolog_runs.fit_plots``: a part of the logging that fails."""
    raise RuntimeError("plotting broke on purpose")


def _autologged_fit(tmp_path_factory, label: str, estimator, X, y, **settings):
    """Fit ``estimator`` under ``autolog(**settings)`` in a new experiment: (estimator, run)."""
    experiment_id = _new_experiment(tmp_path_factory, label)
    mlflow_pmlearn.autolog(**settings)
    try:
        estimator.fit(X, y)
    finally:
        mlflow_pmlearn.autolog(disable=True)
    return estimator, _only_run(experiment_id)


@pytest.fixture(scope="module")
def advi_fit(tracking_uri, tmp_path_factory, regression_data):
    X, y, _ = regression_data
    return _autologged_fit(tmp_path_factory, "advi", LinearRegression(**FAST), X, y, extra_tags={"team": "bayes"})


@pytest.fixture(scope="module")
def nuts_fit(tracking_uri, tmp_path_factory, regression_data):
    X, y, _ = regression_data
    return _autologged_fit(tmp_path_factory, "nuts", LinearRegression(**FAST_NUTS), X.iloc[:150], y.iloc[:150])


@pytest.fixture(scope="module")
def plain_fit(regression_data):
    """The same ADVI fit as ``advi_fit``, without autolog."""
    X, y, _ = regression_data
    return LinearRegression(**FAST).fit(X, y)


# -- an ADVI fit ---------------------------------------------------------------------------


def test_params_hold_hyperparameters_priors_structure_versions_and_data_shape(advi_fit):
    estimator, run = advi_fit
    params = run.data.params
    assert run.info.status == "FINISHED"
    assert run.data.tags["mlflow.autologging"] == "pmlearn" and run.data.tags["team"] == "bayes"
    # The hyper-parameters, and of the inference settings those that apply to ADVI.
    for name, value in estimator.get_params().items():
        if name not in ("n_tune", "n_chains", "n_jobs", "nuts_sampler", "progressbar"):
            assert params[name] == str(value)
        else:
            assert name not in params, f"{name} does not apply to an ADVI fit"
    assert params["prior.coef_std"] == "Normal(loc=0.0, scale=2.5)"
    assert params["prior.intercept_std"] == "Normal(loc=0.0, scale=2.5)"
    assert params["prior.noise_std"] == "HalfNormal(loc=0.0, scale=1.0)"
    model = estimator.pymc_model()
    prior_keys = sorted(key for key in params if key.startswith("prior."))
    assert prior_keys == sorted(f"prior.{rv.name}" for rv in model.free_RVs)
    assert params["model.free_variables"] == "3"
    assert params["model.parameters"] == "5"  # intercept, 3 coefficients, noise
    assert params["model.estimator_class"] == "estimators.linear_model._linear.LinearRegression"
    assert params["inference.seed"] == "0"
    assert params["training.rows"] == "400" and params["training.columns"] == "3"
    for package in ("pymc", "pytensor", "arviz", "mlflow-pmlearn"):
        assert params[f"version.{package}"] not in ("", "unknown")


def test_elbo_history_is_thinned_stepped_by_iteration_and_rises(advi_fit):
    estimator, run = advi_fit
    history = MlflowClient().get_metric_history(run.info.run_id, "elbo")
    steps = [metric.step for metric in history]
    values = [metric.value for metric in history]
    n_iterations = estimator.idata_.fit_history.sizes["iteration"]
    assert 100 < len(history) <= autolog_metrics.MAX_ELBO_POINTS
    assert steps == sorted(steps) and steps[0] == 1 and steps[-1] <= n_iterations
    assert values[-1] > values[0]
    metrics = run.data.metrics
    assert metrics["advi_iterations"] == n_iterations
    assert metrics["elbo_final"] == pytest.approx(-estimator.idata_.fit_history["loss"].values[-100:].mean())
    # This fit stops on its ELBO plateau, well before max_iter: it converged, and the metric says so.
    assert n_iterations < FAST["max_iter"]
    assert metrics["advi_converged"] == estimator.idata_.fit_history.attrs["converged"] == 1.0
    assert metrics["fit_time_s"] > 0


def test_training_score_and_coverage_are_those_of_the_estimator(advi_fit, regression_data):
    estimator, run = advi_fit
    X, y, _ = regression_data
    metrics = run.data.metrics
    assert metrics["training_score"] == pytest.approx(estimator.score(X, y), rel=1e-9)
    interval = estimator.predict_interval(X, prob=0.94)
    inside = np.mean((interval[:, 0] <= y) & (y <= interval[:, 1]))
    assert metrics["training_coverage_94"] == pytest.approx(inside, abs=1e-12)
    assert 0.85 < metrics["training_coverage_94"] <= 1.0


def test_trace_reloads_with_xarray_and_equals_idata(advi_fit, tmp_path):
    estimator, run = advi_fit
    path = mlflow.artifacts.download_artifacts(run_id=run.info.run_id, artifact_path="trace", dst_path=str(tmp_path))
    reloaded = xr.open_datatree(f"{path}/trace.nc", engine="h5netcdf")
    for name, values in estimator.idata_.posterior.data_vars.items():
        np.testing.assert_array_equal(reloaded.posterior[name].values, values.values)
    np.testing.assert_array_equal(reloaded.fit_history["loss"].values, estimator.idata_.fit_history["loss"].values)
    summary = pd.read_csv(f"{path}/summary.csv", index_col=0)
    assert {"mean", "sd", "eti89_lb", "eti89_ub"} <= set(summary.columns)
    # In the data's units and the user's names (the regression data's columns are x0, x1, x2).
    assert {"coef[x0]", "coef[x1]", "coef[x2]", "intercept", "sigma"} <= set(summary.index)
    assert "<table" in open(f"{path}/summary.html").read()


def test_the_posterior_plot_shows_the_variables_in_the_data_units(advi_fit):
    estimator, _ = advi_fit  # not coef_std, intercept_std, noise_std: the standardised scale
    assert autolog_plots.in_data_units(estimator.pymc_model()) == ["coef", "intercept", "sigma"]


def test_plots_are_valid_png_files_drawn_off_screen(advi_fit, tmp_path):
    _, run = advi_fit
    names = {a.path for a in MlflowClient().list_artifacts(run.info.run_id, "plots")}
    expected = {"plots/elbo.png", "plots/posterior.png", "plots/posterior_predictive_check.png"}
    assert expected <= names
    assert names & {"plots/model_graph.png", "plots/model_graph.txt"}
    for name in expected:
        content = _artifact_bytes(run.info.run_id, name, tmp_path)
        assert content.startswith(PNG_SIGNATURE)
        with Image.open(io.BytesIO(content)) as image:
            image.verify()
            assert image.size[0] > 100 and image.size[1] > 100
    import matplotlib.pyplot as plt  # nothing was drawn through pyplot's global state

    assert plt.get_fignums() == []


def test_training_data_is_a_dataset_input_with_source_and_digest(advi_fit, regression_data):
    _, run = advi_fit
    X, y, _ = regression_data
    (dataset_input,) = mlflow.get_run(run.info.run_id).inputs.dataset_inputs
    dataset = dataset_input.dataset
    assert dataset.name == "training"
    assert dataset.digest == autolog_runs.training_dataset(X, y).digest
    assert dataset.source_type == "code" and dataset.source
    assert {tag.key: tag.value for tag in dataset_input.tags}["mlflow.data.context"] == "training"
    assert '"name": "target"' in dataset.schema and '"name": "x0"' in dataset.schema


def test_dataset_schema_is_the_one_mlflow_infers():
    rows = 3 * autolog_runs.SCHEMA_SAMPLE_ROWS  # missing values beyond the rows types are read from
    rng = np.random.default_rng(0)
    with_nan = rng.normal(size=rows)
    with_nan[-1] = np.nan
    with_none = np.array(["a", "b"] * (rows // 2), dtype=object)
    with_none[-1] = None
    frame = pd.DataFrame(
        {
            "float": rng.normal(size=rows),
            "int": np.arange(rows),
            "bool": np.arange(rows) % 2 == 0,
            "text": ["a", "b", "c"] * (rows // 3),
            "float_with_nan": with_nan,
            "text_with_none": with_none,
        }
    )
    assert autolog_runs.dataset_schema(frame) == mlflow.data.from_pandas(frame).schema


def test_model_loads_through_pyfunc_and_predicts_as_the_estimator(advi_fit, regression_data):
    estimator, run = advi_fit
    X, _, _ = regression_data
    (model,) = _logged_models(run.info.experiment_id)
    assert model.source_run_id == run.info.run_id and model.name == "model"
    served = mlflow.pyfunc.load_model(model.model_uri)
    assert served.metadata.get_input_schema().input_names() == ["x0", "x1", "x2"]
    frame = served.predict(X.iloc[:20], params={"return_std": True})
    mean, std = estimator.predict(X.iloc[:20], return_std=True)
    np.testing.assert_allclose(frame["prediction"], mean)
    np.testing.assert_allclose(frame["std"], std)


def test_autolog_leaves_the_fit_unchanged(advi_fit, plain_fit):
    estimator, _ = advi_fit
    for name, values in plain_fit.idata_.posterior.data_vars.items():
        np.testing.assert_array_equal(estimator.idata_.posterior[name].values, values.values)


# -- a NUTS fit ----------------------------------------------------------------------------


def test_nuts_diagnostics_agree_with_arviz_summary_of_the_logged_trace(nuts_fit, tmp_path):
    estimator, run = nuts_fit
    metrics = run.data.metrics
    path = mlflow.artifacts.download_artifacts(
        run_id=run.info.run_id, artifact_path="trace/trace.nc", dst_path=str(tmp_path)
    )
    trace = xr.open_datatree(path, engine="h5netcdf")
    summary = arviz_stats.summary(trace, round_to="none")
    assert metrics["r_hat_max"] == pytest.approx(summary["r_hat"].max())
    assert metrics["ess_bulk_min"] == pytest.approx(summary["ess_bulk"].min())
    assert metrics["ess_tail_min"] == pytest.approx(summary["ess_tail"].min())
    assert metrics["divergences"] == int(trace.sample_stats["diverging"].sum())
    assert metrics["mean_tree_depth"] == pytest.approx(float(trace.sample_stats["tree_depth"].mean()))
    assert metrics["step_size"] == pytest.approx(float(trace.sample_stats["step_size"].mean()))
    assert metrics["sampling_time_s"] > 0
    n_draws = FAST_NUTS["n_draws"] * FAST_NUTS["n_chains"]
    assert metrics["draws_per_second"] == pytest.approx(n_draws / metrics["sampling_time_s"])
    assert "elbo" not in metrics and "advi_iterations" not in metrics
    assert {"training_score", "training_coverage_94", "fit_time_s"} <= set(metrics)
    logged_summary = pd.read_csv(
        mlflow.artifacts.download_artifacts(
            run_id=run.info.run_id, artifact_path="trace/summary.csv", dst_path=str(tmp_path)
        ),
        index_col=0,
    )
    assert {"r_hat", "ess_bulk", "ess_tail"} <= set(logged_summary.columns)


def test_a_nuts_run_logs_the_settings_that_apply_to_nuts(nuts_fit):
    estimator, run = nuts_fit
    params = run.data.params
    assert (params["n_tune"], params["n_chains"], params["n_draws"]) == tuple(
        str(FAST_NUTS[k]) for k in ("n_tune", "n_chains", "n_draws")
    )
    assert params["inference"] == "nuts"
    assert not {"max_iter", "tol", "learning_rate", "progressbar"} & set(params)


def test_nuts_fit_logs_trace_and_rank_plots(nuts_fit, tmp_path):
    _, run = nuts_fit
    names = {a.path for a in MlflowClient().list_artifacts(run.info.run_id, "plots")}
    assert {"plots/trace.png", "plots/rank.png", "plots/posterior.png"} <= names
    assert "plots/elbo.png" not in names
    assert _artifact_bytes(run.info.run_id, "plots/rank.png", tmp_path).startswith(PNG_SIGNATURE)


# -- behaviour -----------------------------------------------------------------------------


def test_failing_fit_propagates_and_marks_the_run_failed(tracking_uri, tmp_path_factory, regression_data):
    X, y, _ = regression_data
    X = X.copy()
    X.iloc[3, 1] = np.nan
    experiment_id = _new_experiment(tmp_path_factory, "failing")
    mlflow_pmlearn.autolog()
    with pytest.raises(ValueError, match="NaN"):
        LinearRegression(**FAST).fit(X, y)
    run = _only_run(experiment_id)
    assert run.info.status == "FAILED"
    assert "ValueError" in run.data.tags[autolog_runs.FIT_ERROR_TAG]
    assert "NaN" in run.data.tags[autolog_runs.FIT_ERROR_TAG]
    assert mlflow.active_run() is None


def test_logging_failure_warns_and_leaves_the_fit_and_the_rest_of_the_run(
    tracking_uri, tmp_path_factory, regression_data, plain_fit, autolog_warnings, monkeypatch
):
    monkeypatch.setattr(autolog_runs, "fit_plots", _broken_plots)
    X, y, _ = regression_data
    estimator = LinearRegression(**FAST)
    estimator, run = _autologged_fit(tmp_path_factory, "broken-plots", estimator, X, y)
    assert estimator.idata_ is not None
    for name, values in plain_fit.idata_.posterior.data_vars.items():
        np.testing.assert_array_equal(estimator.idata_.posterior[name].values, values.values)
    messages = [record.getMessage() for record in autolog_warnings]
    assert any("could not log the plots" in m and "plotting broke on purpose" in m for m in messages)
    assert run.info.status == "FINISHED"
    assert "training_score" in run.data.metrics and "prior.coef_std" in run.data.params
    artifacts = {a.path for a in MlflowClient().list_artifacts(run.info.run_id)}
    plots = {a.path for a in MlflowClient().list_artifacts(run.info.run_id, "plots")}
    # Only LOO's and the prior checks', logged apart.
    assert "trace" in artifacts
    assert plots <= {"plots/pareto_k.png", "plots/prior_predictive_check.png", "plots/prior_posterior.png"}
    assert len(_logged_models(run.info.experiment_id)) == 1


def test_disable_logs_nothing(tracking_uri, tmp_path_factory, regression_data):
    X, y, _ = regression_data
    experiment_id = _new_experiment(tmp_path_factory, "disabled")
    mlflow_pmlearn.autolog()
    mlflow_pmlearn.autolog(disable=True)
    LinearRegression(**QUICK).fit(X.iloc[:100], y.iloc[:100])
    assert _runs(experiment_id) == []


def test_log_models_false_logs_into_the_active_run_without_a_model(tracking_uri, tmp_path_factory, regression_data):
    X, y, _ = regression_data
    experiment_id = _new_experiment(tmp_path_factory, "no-model")
    mlflow_pmlearn.autolog(log_models=False, log_plots=False, log_traces=False, log_prior_checks=False)
    with mlflow.start_run() as run:
        LinearRegression(**QUICK).fit(X.iloc[:100], y.iloc[:100])
        assert mlflow.active_run().info.run_id == run.info.run_id  # autolog left the user's run open
    assert [r.info.run_id for r in _runs(experiment_id)] == [run.info.run_id]
    logged = mlflow.get_run(run.info.run_id)
    assert "prior.coef_std" in logged.data.params and "training_score" in logged.data.metrics
    assert _logged_models(experiment_id) == []
    assert MlflowClient().list_artifacts(run.info.run_id) == []


def test_log_datasets_false_logs_no_dataset_input(tracking_uri, tmp_path_factory, regression_data):
    X, y, _ = regression_data
    _, run = _autologged_fit(
        tmp_path_factory,
        "no-dataset",
        LinearRegression(**QUICK),
        X.iloc[:100],
        y.iloc[:100],
        log_datasets=False,
        log_models=False,
        log_plots=False,
        log_traces=False,
    )
    assert mlflow.get_run(run.info.run_id).inputs.dataset_inputs == []
    assert "prior.coef_std" in run.data.params and "training_score" in run.data.metrics  # the rest is logged


def test_exclusive_logs_nothing_into_a_run_the_user_started(tracking_uri, tmp_path_factory, regression_data):
    X, y, _ = regression_data
    X, y = X.iloc[:100], y.iloc[:100]
    experiment_id = _new_experiment(tmp_path_factory, "exclusive")
    mlflow_pmlearn.autolog(exclusive=True, log_models=False, log_plots=False, log_traces=False)
    with mlflow.start_run() as user_run:
        estimator = LinearRegression(**QUICK).fit(X, y)
    assert estimator.idata_ is not None
    logged = mlflow.get_run(user_run.info.run_id)
    assert logged.data.params == {} and logged.data.metrics == {}
    assert "mlflow.autologging" not in logged.data.tags and logged.inputs.dataset_inputs == []
    assert [r.info.run_id for r in _runs(experiment_id)] == [user_run.info.run_id]
    # Without a run of the user's, the fit is logged as usual, in a run of its own.
    LinearRegression(**QUICK).fit(X, y)
    (own,) = [r for r in _runs(experiment_id) if r.info.run_id != user_run.info.run_id]
    assert own.data.tags["mlflow.autologging"] == "pmlearn" and "prior.coef_std" in own.data.params


def test_a_parameter_the_run_already_has_costs_no_other_parameter(tracking_uri, tmp_path_factory, regression_data):
    """``mlflow run -P max_iter=3e3`` logs ``3e3`` before the fit logs ``3000``: MLflow keeps the
    first; the other hyper-parameters and priors are still logged, and a warning names it (once:
    the params are logged when the engine starts, inside the fit, where a warning is the user's)."""
    X, y, _ = regression_data
    X, y = X.iloc[:100], y.iloc[:100]
    _new_experiment(tmp_path_factory, "param-clash")
    mlflow_pmlearn.autolog(log_models=False, log_plots=False, log_traces=False)
    with mlflow.start_run() as run, warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        mlflow.log_param("max_iter", "3e3")
        LinearRegression(**{**QUICK, "max_iter": 3000}).fit(X, y)
    params = mlflow.get_run(run.info.run_id).data.params
    assert params["max_iter"] == "3e3"
    assert params["n_draws"] == str(QUICK["n_draws"]) and "prior.coef_std" in params
    kept = [str(w.message) for w in caught if "kept the run's earlier values" in str(w.message)]
    assert len(kept) == 1 and "max_iter='3e3' (fit: '3000')" in kept[0]


def _reaches_the_root_logger(logger: logging.Logger) -> bool:
    """Whether ``logger``'s records propagate up to the root logger's handlers."""
    while logger.parent is not None:
        if not logger.propagate:
            return False
        logger = logger.parent
    return True


def test_silent_prints_and_logs_nothing_beyond_the_fit_itself(
    tracking_uri, tmp_path_factory, regression_data, monkeypatch, capfd, caplog
):
    """With a part of the logging failing, autolog prints a warning; with ``silent=True`` the
    output is the fit's own, exactly as without autolog: stdout, stderr, and the log records
    that reach the root logger (pytest's log capture keeps them off stderr). MLflow's own
    loggers do not propagate: they print through MLflow's stream, which silent mode turns
    off and stderr shows; their records still exist, and pytest >= 9.2 captures those too."""
    monkeypatch.setattr(autolog_runs, "fit_plots", _broken_plots)
    X, y, _ = regression_data
    X, y = X.iloc[:100], y.iloc[:100]
    light = {"log_models": False, "log_traces": False}

    def output() -> tuple[str, str, list[tuple[str, int, str]]]:
        captured = capfd.readouterr()
        records = [
            (record.name, record.levelno, record.getMessage())
            for record in caplog.records
            if _reaches_the_root_logger(logging.getLogger(record.name))
        ]
        caplog.clear()
        return captured.out, captured.err, records

    output()
    LinearRegression(**QUICK).fit(X, y)
    fit_alone = output()
    _autologged_fit(tmp_path_factory, "loud", LinearRegression(**QUICK), X, y, **light)
    loud_err = output()[1]
    _autologged_fit(tmp_path_factory, "silent", LinearRegression(**QUICK), X, y, silent=True, **light)
    silent = output()
    assert "pmlearn autologging could not log the plots: RuntimeError: plotting broke on purpose" in loud_err
    assert silent == fit_alone


def test_registered_model_name_registers_a_version(tracking_uri, tmp_path_factory, regression_data):
    X, y, _ = regression_data
    name = f"autolog-registered-{uuid.uuid4().hex[:8]}"
    _, run = _autologged_fit(
        tmp_path_factory,
        "registered",
        LinearRegression(**QUICK),
        X.iloc[:100],
        y.iloc[:100],
        registered_model_name=name,
        log_plots=False,
    )
    (version,) = MlflowClient().search_model_versions(f"name = '{name}'")
    assert version.run_id == run.info.run_id
    served = mlflow.pyfunc.load_model(f"models:/{name}/{version.version}")
    assert list(served.predict(X.iloc[:3]).columns) == ["prediction"]


def test_bespoke_estimator_autologs_its_priors_and_ships_its_code(tracking_uri, tmp_path_factory):
    module = _import_bespoke()
    X, y = module.make_data(n_samples=120, n_outliers=6)
    estimator, run = _autologged_fit(
        tmp_path_factory, "bespoke", module.RobustRegression(**QUICK), X, y, log_plots=False
    )
    params = run.data.params
    assert params["prior.nu_minus_one"] == "Exponential(scale=10.0)"  # rate nu_rate=0.1
    assert params["prior.coef_std"] == "Normal(loc=0.0, scale=2.5)"
    assert params["prior.noise_std"] == "HalfNormal(loc=0.0, scale=1.0)"
    assert params["nu_rate"] == "0.1"
    assert params["model.estimator_class"] == "robust_regression.RobustRegression"
    (model,) = _logged_models(run.info.experiment_id)
    local = mlflow.artifacts.download_artifacts(model.model_uri, dst_path=str(tmp_path_factory.mktemp("bespoke-model")))
    assert BESPOKE_FILE.name in {path.name for path in Path(local, "code").iterdir()}
    served = mlflow.pyfunc.load_model(model.model_uri)
    np.testing.assert_allclose(served.predict(X.iloc[:5])["prediction"], estimator.predict(X.iloc[:5]))


# -- scikit-learn meta-estimators ----------------------------------------------------------


def test_pipeline_logs_one_run_with_its_params_and_the_whole_pipeline(tracking_uri, tmp_path_factory, regression_data):
    X, y, _ = regression_data
    pipeline = Pipeline(
        [("scale", StandardScaler().set_output(transform="pandas")), ("reg", LinearRegression(**QUICK))]
    )
    name = f"autolog-pipeline-{uuid.uuid4().hex[:8]}"
    pipeline, run = _autologged_fit(tmp_path_factory, "pipeline", pipeline, X, y, registered_model_name=name)
    params, metrics, tags = run.data.params, run.data.metrics, run.data.tags
    assert params["reg__prior_scale_coef"] == "2.5" and params["scale__with_mean"] == "True"
    assert params["steps"] == "[('scale', 'StandardScaler'), ('reg', 'LinearRegression')]"
    assert params["prior.coef_std"] == "Normal(loc=0.0, scale=2.5)"
    assert params["training.rows"] == "400"
    assert metrics["training_score"] == pytest.approx(pipeline.score(X, y), rel=1e-9)
    assert {"elbo_final", "advi_iterations", "fit_time_s"} <= set(metrics)
    artifacts = {a.path for a in MlflowClient().list_artifacts(run.info.run_id)}
    assert {"trace", "plots"} <= artifacts
    # The whole pipeline is the model, registered; it takes the raw features.
    assert tags["pmlearn.bayesian_step"] == "reg"
    assert autolog_runs.LOGGED_MODEL_TAG not in tags
    (model,) = _logged_models(run.info.experiment_id)
    assert model.name == "model"
    assert len(MlflowClient().search_model_versions(f"name = '{name}'")) == 1
    served = mlflow.pyfunc.load_model(model.model_uri)
    np.testing.assert_allclose(served.predict(X.iloc[:5])["prediction"], pipeline.predict(X.iloc[:5]))


def test_pipeline_without_a_pmlearn_estimator_is_not_logged(tracking_uri, tmp_path_factory, regression_data):
    X, y, _ = regression_data
    experiment_id = _new_experiment(tmp_path_factory, "sklearn-only")
    mlflow_pmlearn.autolog()
    Pipeline([("scale", StandardScaler()), ("ridge", Ridge())]).fit(X, y)
    assert _runs(experiment_id) == []


def test_grid_search_logs_a_parent_run_and_capped_child_runs(tracking_uri, tmp_path_factory, regression_data):
    X, y, _ = regression_data
    X, y = X.iloc[:120], y.iloc[:120]
    grid = {"prior_scale_coef": [0.05, 5.0]}
    search = GridSearchCV(LinearRegression(**QUICK), grid, cv=2)
    experiment_id = _new_experiment(tmp_path_factory, "grid")
    mlflow_pmlearn.autolog(max_tuning_runs=1)
    search.fit(X, y)
    runs = _runs(experiment_id)
    (parent,) = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    (child,) = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
    assert len(runs) == 2  # no run for any of the five fits inside the search
    # The parent: the search, and the refitted best estimator with its priors and model.
    params, metrics = parent.data.params, parent.data.metrics
    best = search.best_params_["prior_scale_coef"]
    assert params["best_prior_scale_coef"] == str(best)
    assert params["estimator"] == "LinearRegression" and params["cv"] == "2"
    assert params["prior.coef_std"] == f"Normal(loc=0.0, scale={float(best)})"
    assert metrics["best_cv_score"] == pytest.approx(search.best_score_)
    assert metrics["training_score"] == pytest.approx(search.best_estimator_.score(X, y), rel=1e-9)
    artifacts = {a.path for a in MlflowClient().list_artifacts(parent.info.run_id)}
    assert {"cv_results.csv", "trace", "plots"} <= artifacts
    (model,) = _logged_models(experiment_id)
    assert model.source_run_id == parent.info.run_id and model.name == "model"
    # The child: the best candidate only (max_tuning_runs=1), its parameters and CV scores.
    assert child.info.status == "FINISHED"
    assert child.data.params["prior_scale_coef"] == str(best)
    assert child.data.params["n_draws"] == str(QUICK["n_draws"])
    assert child.data.metrics["rank_test_score"] == 1
    assert child.data.metrics["mean_test_score"] == pytest.approx(search.best_score_)
    assert {"std_test_score", "split0_test_score", "mean_fit_time"} <= set(child.data.metrics)
    assert parent.data.tags["pmlearn.child_runs"].startswith("1 of 2")


def test_randomized_search_logs_a_parent_run_and_capped_child_runs(
    tracking_uri, tmp_path_factory, regression_data, tmp_path
):
    X, y, _ = regression_data
    X, y = X.iloc[:120], y.iloc[:120]
    search = RandomizedSearchCV(
        LinearRegression(**QUICK), {"prior_scale_coef": loguniform(0.01, 10.0)}, n_iter=2, cv=2, random_state=0
    )
    experiment_id = _new_experiment(tmp_path_factory, "randomized")
    mlflow_pmlearn.autolog(max_tuning_runs=1, log_models=False, log_plots=False, log_traces=False)
    search.fit(X, y)
    runs = _runs(experiment_id)
    assert len(runs) == 2  # no run for any of the five fits inside the search
    (parent,) = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    (child,) = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
    # The parent: the search, the drawn candidates, and the refitted best estimator.
    params, metrics = parent.data.params, parent.data.metrics
    best = search.best_params_["prior_scale_coef"]
    assert params["best_prior_scale_coef"] == str(best)
    assert params["estimator"] == "LinearRegression" and params["n_iter"] == "2" and params["cv"] == "2"
    assert params["prior.coef_std"] == f"Normal(loc=0.0, scale={float(best)})"
    assert metrics["best_cv_score"] == pytest.approx(search.best_score_)
    assert metrics["training_score"] == pytest.approx(search.best_estimator_.score(X, y), rel=1e-9)
    cv_results = pd.read_csv(io.BytesIO(_artifact_bytes(parent.info.run_id, "cv_results.csv", tmp_path)))
    np.testing.assert_allclose(
        cv_results["param_prior_scale_coef"], search.cv_results_["param_prior_scale_coef"].astype(float)
    )
    # The child: the best of the two drawn candidates only (max_tuning_runs=1).
    assert child.data.params["prior_scale_coef"] == str(best)
    assert child.data.metrics["rank_test_score"] == 1
    assert child.data.metrics["mean_test_score"] == pytest.approx(search.best_score_)
    assert parent.data.tags["pmlearn.child_runs"].startswith("1 of 2")


def test_grid_search_over_a_pipeline_logs_no_runs_for_the_inner_fits(tracking_uri, tmp_path_factory, regression_data):
    X, y, _ = regression_data
    X, y = X.iloc[:100], y.iloc[:100]
    pipeline = Pipeline([("scale", "passthrough"), ("reg", LinearRegression(**QUICK))])
    search = GridSearchCV(pipeline, {"reg__prior_scale_coef": [2.0]}, cv=2)
    experiment_id = _new_experiment(tmp_path_factory, "grid-pipeline")
    mlflow_pmlearn.autolog(max_tuning_runs=None, log_plots=False)
    search.fit(X, y)
    runs = _runs(experiment_id)
    assert len(runs) == 2  # the parent and the candidate: no run for the pipelines inside
    (parent,) = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    assert parent.data.tags["pmlearn.bayesian_step"] == "reg"
    # Only passthrough before the Bayesian step: the step is the whole model.
    (model,) = _logged_models(experiment_id)
    assert model.name == "model" and autolog_runs.LOGGED_MODEL_TAG not in parent.data.tags


def test_a_search_on_joblib_threads_logs_no_run_for_its_candidates(tracking_uri, tmp_path_factory, regression_data):
    """The search's candidates, fitted in joblib's worker threads, are inside the search's
    training session (MLflow's, one per process): they log nothing, and the refitted best
    estimator is the one the search's run describes."""
    X, y, _ = regression_data
    X, y = X.iloc[:100], y.iloc[:100]
    search = GridSearchCV(LinearRegression(**QUICK), {"prior_scale_coef": [1.0, 2.0]}, cv=2, n_jobs=2)
    experiment_id = _new_experiment(tmp_path_factory, "threads")
    mlflow_pmlearn.autolog(log_models=False, log_plots=False, log_traces=False)
    with joblib.parallel_config(backend="threading"):
        search.fit(X, y)
    runs = _runs(experiment_id)
    assert len(runs) == 3  # the search and its two candidates: none for the search's five fits
    (parent,) = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    assert parent.data.metrics["best_cv_score"] == pytest.approx(search.best_score_)
    assert parent.data.metrics["training_score"] == pytest.approx(search.best_estimator_.score(X, y), rel=1e-9)
    best = search.best_params_["prior_scale_coef"]
    assert parent.data.params["prior.coef_std"] == f"Normal(loc=0.0, scale={float(best)})"


def test_max_tuning_runs_must_be_non_negative():
    with pytest.raises(mlflow.exceptions.MlflowException, match="max_tuning_runs"):
        mlflow_pmlearn.autolog(max_tuning_runs=-1)


def test_the_predictive_check_names_the_target_as_the_user_did(advi_fit, regression_data):
    estimator, _ = advi_fit
    X, y, _ = regression_data
    named = autolog_metrics.predictive_checks(estimator, X.iloc[:50], pd.Series(np.asarray(y)[:50], name="house price"))
    assert named.target_name == "house price"
    assert autolog_metrics.predictive_checks(estimator, X.iloc[:50], np.asarray(y)[:50]).target_name == "target"
