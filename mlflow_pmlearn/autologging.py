"""What fitting logs under :func:`mlflow_pmlearn.autolog`: priors, ELBO or sampler diagnostics,
the trace, plots, the training data and the model.

Everything here runs after the estimator's own ``fit`` has returned, inside MLflow's
``safe_patch``: an error while logging becomes a warning and never changes the fit.
"""

from __future__ import annotations

import contextvars
import inspect
import io
import tempfile
import time
import traceback
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import arviz as az
import mlflow
import numpy as np
import pandas as pd
import pymc as pm
import pytensor.tensor as pt
from mlflow.entities import Metric
from mlflow.tracking import MlflowClient
from pytensor.graph.traversal import ancestors
from pytensor.tensor.random.op import RandomVariable
from sklearn.base import is_classifier, is_regressor

from estimators.base import BayesianEstimator

#: Most points of the ELBO curve logged as a metric history.
MAX_ELBO_POINTS = 1000
#: MLflow's limit of metrics in one ``log_batch`` call.
_BATCH = 1000
#: Most panels (scalar components) in the rank plot.
MAX_RANK_PANELS = 12
#: Interval whose training-data coverage regressors report.
COVERAGE_PROB = 0.94

_inside_autologged_fit: contextvars.ContextVar[bool] = contextvars.ContextVar("pmlearn_autolog", default=False)


def _format_value(value: np.ndarray) -> str:
    value = np.asarray(value)
    if value.ndim == 0:
        return repr(float(value)) if value.dtype.kind == "f" else repr(value.item())
    if value.size <= 4 or np.all(value == value.flat[0]):
        return repr(value.tolist()) if np.any(value != value.flat[0]) else f"{_format_value(value.flat[0])}"
    return f"array(shape={value.shape})"


def describe_prior(rv: pt.TensorVariable, model: pm.Model) -> str:
    """A readable prior such as ``Normal(loc=0.0, scale=10.0)``, read from the PyMC graph.

    Parameter names are those of the PyTensor distribution op; a parameter that depends on
    other model variables shows their names (e.g. ``Normal(loc=mu, scale=f(sigma))``).
    """
    node = rv.owner
    op = node.op
    name = getattr(op, "_print_name", (type(op).__name__,))[0]
    if not isinstance(op, RandomVariable):
        return name
    try:
        parameter_names = [
            p for p in inspect.signature(type(op).__call__).parameters
            if p not in {"self", "size", "rng", "name", "dtype", "kwargs", "args"}
        ]
    except (TypeError, ValueError):
        parameter_names = []
    named_vars = {v: v.name for v in model.free_RVs + model.deterministics}
    parts = []
    for index, param in enumerate(op.dist_params(node)):
        label = parameter_names[index] if index < len(parameter_names) else f"p{index}"
        if param in named_vars:
            shown = named_vars[param]
        else:
            depends_on = [named_vars[v] for v in ancestors([param]) if v in named_vars]
            shown = f"f({', '.join(dict.fromkeys(depends_on))})" if depends_on else _format_value(param.eval())
        parts.append(f"{label}={shown}")
    return f"{name}({', '.join(parts)})"


def model_structure(model: pm.Model) -> dict[str, int]:
    """Counts of the model's variables and free parameters."""
    return {
        "model.free_variables": len(model.free_RVs),
        "model.observed_variables": len(model.observed_RVs),
        "model.deterministics": len(model.deterministics),
        "model.parameters": int(sum(np.prod(model.initial_point()[model.rvs_to_values[rv].name].shape) for rv in model.free_RVs)),
    }


def _versions() -> dict[str, str]:
    result = {}
    for package in ("pymc", "pytensor", "arviz", "mlflow-pmlearn"):
        try:
            result[f"version.{package}"] = version(package)
        except PackageNotFoundError:
            result[f"version.{package}"] = "unknown"
    return result


def fit_params(estimator: BayesianEstimator, X: Any) -> dict[str, Any]:
    """Hyper-parameters, priors, model structure, versions and the training data shape."""
    model = estimator.pymc_model()
    params: dict[str, Any] = dict(estimator.get_params(deep=False))
    params.update({f"prior.{rv.name}": describe_prior(rv, model) for rv in model.free_RVs})
    params.update(model_structure(model))
    params.update(_versions())
    params["estimator_class"] = type(estimator).__name__
    params["training.rows"], params["training.columns"] = np.shape(X)[0], np.shape(X)[1]
    return params


def _elbo_metrics(idata: az.InferenceData, timestamp: int) -> list[Metric]:
    loss = idata.fit_history["loss"].values
    step = max(1, int(np.ceil(len(loss) / MAX_ELBO_POINTS)))
    iterations = np.arange(0, len(loss), step)
    # Mean of each thinned block, so the curve is smoother than single noisy iterations.
    elbo = -np.add.reduceat(loss, iterations) / np.diff(np.append(iterations, len(loss)))
    return [Metric("elbo", float(v), timestamp, int(i) + 1) for i, v in zip(iterations, elbo)]


def fit_metrics(estimator: BayesianEstimator, X: Any, y: Any, fit_seconds: float) -> dict[str, float]:
    """ADVI or NUTS diagnostics, the training score and (regressors) interval coverage."""
    idata = estimator.idata_
    metrics: dict[str, float] = {"fit_time_s": fit_seconds}
    if "fit_history" in idata.groups():
        loss = idata.fit_history["loss"].values
        metrics["elbo_final"] = float(-np.mean(loss[-100:]))
        metrics["advi_iterations"] = float(len(loss))
        metrics["advi_converged"] = float(idata.fit_history.attrs.get("converged", 0))
    if "sample_stats" in idata.groups():
        stats = idata.sample_stats
        summary = az.summary(idata, kind="diagnostics")
        metrics["divergences"] = float(stats["diverging"].sum())
        metrics["r_hat_max"] = float(summary["r_hat"].max())
        metrics["ess_bulk_min"] = float(summary["ess_bulk"].min())
        metrics["ess_tail_min"] = float(summary["ess_tail"].min())
        metrics["mean_tree_depth"] = float(stats["tree_depth"].mean())
        metrics["step_size"] = float(stats["step_size"].mean())
        sampling_time = float(stats.attrs.get("sampling_time", np.nan))
        metrics["sampling_time_s"] = sampling_time
        n_draws = stats.sizes["chain"] * stats.sizes["draw"]
        metrics["draws_per_second"] = n_draws / sampling_time if sampling_time > 0 else np.nan
    if y is not None and (is_regressor(estimator) or is_classifier(estimator)):
        metrics["training_score"] = float(estimator.score(X, y))
    if y is not None and is_regressor(estimator):
        interval = estimator.predict_interval(X, prob=COVERAGE_PROB)
        target = np.asarray(y, dtype=np.float64).ravel()
        inside = (interval[:, 0] <= target) & (target <= interval[:, 1])
        metrics["training_coverage_94"] = float(inside.mean())
    return metrics


def _png(figure) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=100, bbox_inches="tight")
    return buffer.getvalue()


def _figure(rows: int = 1, columns: int = 1, *, width: float = 8.0, height: float = 3.0):
    """A figure drawn off-screen (no pyplot state, no window)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width, height * rows))
    FigureCanvasAgg(figure)
    axes = figure.subplots(rows, columns, squeeze=False)
    return figure, axes


def fit_plots(estimator: BayesianEstimator, X: Any, y: Any) -> dict[str, bytes]:
    """PNG plots by file name: ELBO curve or trace and rank plots, posteriors, a PPC."""
    idata = estimator.idata_
    model = estimator.pymc_model()
    free = [rv.name for rv in model.free_RVs]
    plots = {}
    if "fit_history" in idata.groups():
        figure, axes = _figure()
        loss = idata.fit_history["loss"].values
        axes[0, 0].plot(np.arange(1, len(loss) + 1), -loss, lw=0.6)
        axes[0, 0].set(xlabel="iteration", ylabel="ELBO", title="ADVI evidence lower bound")
        low, high = np.percentile(-loss[len(loss) // 10 :], [1, 100])
        axes[0, 0].set_ylim(low - 0.1 * (high - low), high + 0.1 * (high - low))
        plots["elbo.png"] = _png(figure)
    if "sample_stats" in idata.groups():
        figure, axes = _figure(len(free), 2, width=10, height=2.2)
        az.plot_trace(idata, var_names=free, axes=axes, compact=True)
        plots["trace.png"] = _png(figure)
        ranked, n_panels = [], 0
        for name in free:  # rank plots of the first dozen scalar components
            size = int(np.prod(idata.posterior[name].shape[2:]))
            if n_panels + size > MAX_RANK_PANELS:
                break
            ranked.append(name)
            n_panels += size
        if ranked:
            figure, axes = _figure(1, n_panels, width=2.6 * n_panels, height=2.6)
            az.plot_rank(idata, var_names=ranked, ax=axes[0])
            plots["rank.png"] = _png(figure)
    figure, axes = _figure(height=max(3.0, 0.25 * sum(int(np.prod(idata.posterior[v].shape[2:])) for v in free)))
    az.plot_forest(idata, var_names=free, combined=True, ax=axes[0, 0])
    axes[0, 0].set_title("posterior of each prior-governed variable (94% HDI)")
    plots["posterior.png"] = _png(figure)
    if y is not None and (is_regressor(estimator) or is_classifier(estimator)):
        plots["posterior_predictive_check.png"] = _ppc_plot(estimator, X, y)
    return plots


def _ppc_plot(estimator: BayesianEstimator, X: Any, y: Any) -> bytes:
    figure, axes = _figure(width=7, height=4)
    ax = axes[0, 0]
    samples = estimator.sample_posterior_predictive(X)
    observed = np.asarray(y).ravel()
    if is_classifier(estimator):
        classes = estimator.classes_
        positions = np.arange(len(classes))
        draw_shares = np.stack([(samples == c).mean(axis=1) for c in classes], axis=1)
        low, high = np.percentile(draw_shares, [3, 97], axis=0)
        ax.bar(positions, [(observed == c).mean() for c in classes], color="0.7", label="observed")
        ax.errorbar(positions, draw_shares.mean(0), yerr=[draw_shares.mean(0) - low, high - draw_shares.mean(0)], fmt="o", color="C0", label="posterior predictive (94%)")
        ax.set_xticks(positions, [str(c) for c in classes])
        ax.set(ylabel="share of rows")
    else:
        bins = np.histogram_bin_edges(np.concatenate([observed, samples[:50].ravel()]), bins=40)
        for draw in samples[: min(50, len(samples))]:
            ax.hist(draw, bins=bins, histtype="step", color="C0", alpha=0.15, density=True)
        ax.hist(observed, bins=bins, histtype="step", color="k", lw=2, density=True, label="observed")
        ax.set(xlabel="target", ylabel="density")
    ax.set_title("posterior predictive check on the training data")
    ax.legend()
    return _png(figure)


def model_graph(model: pm.Model) -> tuple[str, bytes]:
    """The model graph as PNG (graphviz, where installed) or as text."""
    try:
        graph = pm.model_to_graphviz(model)
        return "model_graph.png", graph.pipe(format="png")
    except Exception:  # graphviz (Python package or its `dot` binary) not installed
        return "model_graph.txt", str(model.str_repr()).encode()


def _log_dataset(X: Any, y: Any) -> None:
    frame = X if isinstance(X, pd.DataFrame) else pd.DataFrame(np.asarray(X))
    frame = frame.copy()
    frame.columns = [str(c) for c in frame.columns]
    targets = None
    if y is not None:
        targets = "target" if "target" not in frame.columns else "__target__"
        frame[targets] = np.asarray(y).ravel()
    dataset = mlflow.data.from_pandas(frame, targets=targets, name="training")
    mlflow.log_input(dataset, context="training")


def log_fit(estimator: BayesianEstimator, X: Any, y: Any, fit_seconds: float, config: dict[str, Any]) -> None:
    """Log one finished fit to the active run."""
    run_id = mlflow.active_run().info.run_id
    client = MlflowClient()
    mlflow.log_params(fit_params(estimator, X))
    timestamp = int(time.time() * 1000)
    metrics = [Metric(k, float(v), timestamp, 0) for k, v in fit_metrics(estimator, X, y, fit_seconds).items()]
    if "fit_history" in estimator.idata_.groups():
        metrics += _elbo_metrics(estimator.idata_, timestamp)
    for start in range(0, len(metrics), _BATCH):
        client.log_batch(run_id, metrics=metrics[start : start + _BATCH])
    if config.get("log_traces", True):
        _log_trace(estimator)
    if config.get("log_plots", True):
        graph_name, graph = model_graph(estimator.pymc_model())
        _log_files({**fit_plots(estimator, X, y), graph_name: graph}, "plots")
    if config.get("log_datasets", True):
        _log_dataset(X, y)
    if config.get("log_models", True):
        import mlflow_pmlearn

        mlflow_pmlearn.log_model(
            estimator,
            name="model",
            input_example=estimator.training_sample(5),
            registered_model_name=config.get("registered_model_name"),
        )


def _log_files(files: dict[str, bytes], artifact_path: str) -> None:
    with tempfile.TemporaryDirectory() as directory:
        for name, content in files.items():
            (Path(directory) / name).write_bytes(content)
        mlflow.log_artifacts(directory, artifact_path)


def _log_trace(estimator: BayesianEstimator) -> None:
    """The trace as NetCDF (reloads with ``az.from_netcdf``) and ``az.summary`` as CSV and HTML."""
    summary = az.summary(estimator.idata_)
    with tempfile.TemporaryDirectory() as directory:
        estimator.idata_.to_netcdf(str(Path(directory) / "trace.nc"))
        summary.to_csv(Path(directory) / "summary.csv")
        (Path(directory) / "summary.html").write_text(summary.to_html(float_format=lambda v: f"{v:.4g}"))
        mlflow.log_artifacts(directory, "trace")


def patched_fit(original, self: BayesianEstimator, X: Any, y: Any = None, **kwargs):
    """``BayesianEstimator.fit`` under autolog: fit, then log (once, not for nested fits)."""
    from mlflow.utils.autologging_utils import get_autologging_config

    if _inside_autologged_fit.get():
        return original(self, X, y, **kwargs)
    token = _inside_autologged_fit.set(True)
    try:
        start = time.perf_counter()
        try:
            result = original(self, X, y, **kwargs)
        except Exception:
            mlflow.set_tag("pmlearn.fit_error", traceback.format_exc()[-4000:])
            raise
        fit_seconds = time.perf_counter() - start
    finally:
        _inside_autologged_fit.reset(token)
    config = {
        key: get_autologging_config("pmlearn", key, default)
        for key, default in (
            ("log_models", True),
            ("log_traces", True),
            ("log_plots", True),
            ("log_datasets", True),
            ("registered_model_name", None),
        )
    }
    log_fit(self, X, y, fit_seconds, config)
    return result
