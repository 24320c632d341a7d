"""The model autolog logs is linked to the run's training dataset and metrics, as MLflow 3 links its own.

Read back from a real sqlite store: the logged model's metrics (the UI's logged-model page
lists them, and shows their datasets as "Datasets used"), a search of logged models by the
training dataset, and the run's outputs.
"""

from __future__ import annotations

import mlflow
import pytest
from mlflow.tracking import MlflowClient
from test_autolog import QUICK, _autologged_fit, _logged_models, _new_experiment

import mlflow_pmlearn
from estimators.linear_model import LinearRegression
from mlflow_pmlearn.autologging import runs as autolog_runs

#: The metrics computed on the training data: those linked to the training dataset.
#: Metrics of the training data (PSIS-LOO's among them: this fit's rows x draws are within
#: autolog's default budget for it).
TRAINING_METRICS = {"training_score", "training_coverage_94", "elpd_loo", "elpd_loo_se", "p_loo", "pareto_k_bad"}


@pytest.fixture(scope="module")
def linked_fit(tracking_uri, tmp_path_factory, regression_data):
    """An autologged ADVI fit: its run, its logged model (as ``get_logged_model`` reads it) and its dataset."""
    X, y, _ = regression_data
    _, run = _autologged_fit(tmp_path_factory, "links", LinearRegression(**QUICK), X.iloc[:150], y.iloc[:150])
    (model,) = _logged_models(run.info.experiment_id)
    run = mlflow.get_run(run.info.run_id)
    (dataset_input,) = run.inputs.dataset_inputs
    return run, mlflow.get_logged_model(model.model_id), dataset_input.dataset


def test_the_run_metrics_are_the_models_and_the_training_ones_name_the_training_dataset(linked_fit):
    run, model, dataset = linked_fit
    linked = {metric.key: metric for metric in model.metrics}
    # Every metric but the ELBO curve and the progress while fitting, which stay on the run
    # (elbo_final and advi_iterations sum them up on the model).
    progress = {key for key in run.data.metrics if key.startswith("progress/")}
    assert progress >= {"progress/iterations", "progress/loss", "progress/elapsed_s"}
    assert set(linked) == set(run.data.metrics) - {"elbo"} - progress
    assert TRAINING_METRICS | {"elbo_final", "advi_iterations", "fit_time_s"} <= set(linked)
    assert len(MlflowClient().get_metric_history(run.info.run_id, "elbo")) > 1
    for key, metric in linked.items():
        assert (metric.value, metric.step, metric.run_id) == (run.data.metrics[key], 0, run.info.run_id)
        on_dataset = (metric.dataset_name, metric.dataset_digest)
        assert on_dataset == ((dataset.name, dataset.digest) if key in TRAINING_METRICS else (None, None)), key


def test_a_search_by_the_training_dataset_finds_the_model_the_run_output(linked_fit):
    run, model, dataset = linked_fit
    assert [output.model_id for output in run.outputs.model_outputs] == [model.model_id]

    def search(digest: str) -> list[str]:
        datasets = [{"dataset_name": dataset.name, "dataset_digest": digest}]
        found = mlflow.search_logged_models(
            experiment_ids=[run.info.experiment_id], datasets=datasets, output_format="list"
        )
        return [found_model.model_id for found_model in found]

    assert search(dataset.digest) == [model.model_id]
    assert search("0" * len(dataset.digest)) == []


def test_without_a_dataset_input_the_metrics_name_no_dataset_and_a_later_one_is_linked_too(
    tracking_uri, tmp_path_factory, regression_data
):
    X, y, _ = regression_data
    experiment_id = _new_experiment(tmp_path_factory, "links-no-dataset")
    mlflow_pmlearn.autolog(log_datasets=False, log_plots=False, log_traces=False)
    try:
        with mlflow.start_run() as run:
            LinearRegression(**QUICK).fit(X.iloc[:100], y.iloc[:100])
            mlflow.log_metric("test_r2", 0.5)  # as the main job logs its held-out score
    finally:
        mlflow_pmlearn.autolog(disable=True)
    (model,) = _logged_models(experiment_id)
    linked = {metric.key: metric for metric in mlflow.get_logged_model(model.model_id).metrics}
    assert {"training_score", "fit_time_s", "test_r2"} <= set(linked)
    assert all(metric.dataset_name is None and metric.dataset_digest is None for metric in linked.values())
    assert mlflow.get_run(run.info.run_id).inputs.dataset_inputs == []


def test_a_model_that_fails_to_log_leaves_the_metrics_on_the_run(
    tracking_uri, tmp_path_factory, regression_data, monkeypatch
):
    def refuse(*args, **kwargs):
        raise RuntimeError("model logging broke on purpose")

    monkeypatch.setattr(autolog_runs, "log_model", refuse)
    X, y, _ = regression_data
    _, run = _autologged_fit(
        tmp_path_factory,
        "links-no-model",
        LinearRegression(**QUICK),
        X.iloc[:100],
        y.iloc[:100],
        log_plots=False,
        log_traces=False,
    )
    assert run.info.status == "FINISHED"
    assert {"training_score", "elbo_final", "fit_time_s"} <= set(run.data.metrics)
    assert _logged_models(run.info.experiment_id) == []


def test_the_logged_model_has_the_runs_params_logged_before_the_fit(linked_fit):
    """MLflow 3 copies the run's params onto the model logged in it: now logged when the engine
    starts, they are all there (settings, priors, data shape)."""
    run, model, _ = linked_fit
    assert model.params == run.data.params
    assert {"n_draws", "inference", "prior.coef_std", "training.rows", "inference.seed"} <= set(model.params)


def test_the_pmlearn_evaluators_metrics_are_linked_to_the_autologged_model(linked_fit, regression_data):
    run, model, _ = linked_fit
    X, y, _ = regression_data
    held_out = X.iloc[300:360].assign(target=y.iloc[300:360].to_numpy())
    mlflow.set_experiment(experiment_id=run.info.experiment_id)
    with mlflow.start_run(run_id=run.info.run_id):  # the evaluation of the model, in the run that made it
        result = mlflow.models.evaluate(
            f"models:/{model.model_id}", held_out, targets="target", model_type="regressor", evaluators=["pmlearn"]
        )
    linked = {metric.key: metric for metric in mlflow.get_logged_model(model.model_id).metrics}
    for key in ("crps", "log_score", "coverage_90"):
        assert linked[key].value == result.metrics[key] and linked[key].run_id == run.info.run_id, key
