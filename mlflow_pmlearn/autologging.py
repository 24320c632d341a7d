"""What fitting logs under :func:`mlflow_pmlearn.autolog`: priors, ELBO or sampler diagnostics,
the trace, plots, the training data and the model.

Everything here runs after the estimator's own ``fit`` has returned, inside MLflow's
``safe_patch``: each part of the logging that fails becomes a warning, the other parts are
still logged, and the fit and its result are never changed.

A ``Pipeline`` or a parameter search (``GridSearchCV``, ``RandomizedSearchCV``) whose
estimator ends in a pmlearn estimator logs once, as a whole: the fits inside it only hand
their data and timing up to it (:class:`_Session`) and create no run of their own.
"""

from __future__ import annotations

import contextvars
import importlib.util
import inspect
import io
import shutil
import sys
import tempfile
import time
import traceback
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import arviz_plots
import arviz_stats
import mlflow
import numpy as np
import pandas as pd
import pymc as pm
import pytensor.tensor as pt
import xarray as xr
from mlflow.entities import Metric, Param, RunStatus
from mlflow.models import infer_signature
from mlflow.tracking import MlflowClient
from mlflow.types import ColSpec, Schema
from mlflow.utils.mlflow_tags import MLFLOW_AUTOLOGGING, MLFLOW_PARENT_RUN_ID
from mlflow.utils.validation import MAX_PARAM_VAL_LENGTH, MAX_TAG_VAL_LENGTH
from pytensor.graph.basic import Constant
from pytensor.graph.traversal import ancestors
from pytensor.tensor.random.op import RandomVariable
from sklearn.base import BaseEstimator, RegressorMixin, is_classifier, is_regressor
from sklearn.metrics import r2_score
from sklearn.model_selection._search import BaseSearchCV
from sklearn.pipeline import Pipeline

from estimators.base import BayesianDensityMixin, BayesianEstimator
from mlflow_pmlearn.serialization import NETCDF_ENGINE

FLAVOR_NAME = "pmlearn"
#: Most points of the ELBO curve logged as a metric history.
MAX_ELBO_POINTS = 1000
#: Most panels (scalar components) in the rank plot.
MAX_RANK_PANELS = 12
#: Most rows (scalar components) in the posterior forest plot.
MAX_FOREST_ROWS = 60
#: Interval whose training-data coverage regressors report.
COVERAGE_PROB = 0.94
#: Rows of the training data from which its dataset's column types are inferred.
SCHEMA_SAMPLE_ROWS = 1000
#: Training rows, and posterior draws of each, drawn in the posterior predictive check plot.
PPC_ROWS, PPC_DRAWS = 2000, 50
#: Posterior predictive values held in memory at once while checking the training data.
_CHUNK_VALUES = 4_000_000
#: Run tag holding the traceback of a fit that raised.
FIT_ERROR_TAG = "pmlearn.fit_error"
#: Run tag saying what the logged model is when it is not the whole fitted estimator.
LOGGED_MODEL_TAG = "pmlearn.logged_model"


@dataclass
class _Fit:
    """One pmlearn fit inside an autologged meta-estimator: what it was given and how long it took."""

    estimator: BayesianEstimator
    X: Any
    y: Any
    seconds: float


class _Session:
    """The autologged fit in progress in this context; nested fits report to it and log nothing."""

    last_fit: _Fit | None = None


_session: contextvars.ContextVar[_Session | None] = contextvars.ContextVar("pmlearn_autolog", default=None)


def _format_value(value: np.ndarray) -> str:
    value = np.asarray(value)
    if value.size == 0:
        return f"array(shape={value.shape})"
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
            if depends_on:
                shown = f"f({', '.join(dict.fromkeys(depends_on))})"
            else:  # a constant (read directly), or an expression of constants (evaluated)
                shown = _format_value(param.data if isinstance(param, Constant) else param.eval())
        parts.append(f"{label}={shown}")
    return f"{name}({', '.join(parts)})"


def model_structure(model: pm.Model) -> dict[str, int]:
    """Counts of the model's variables and of its free (unconstrained) parameters."""
    values = [model.rvs_to_values[rv] for rv in model.free_RVs]
    if all(None not in value.type.shape for value in values):
        n_parameters = sum(int(np.prod(value.type.shape, dtype=int)) for value in values)
    else:  # some shape is only known numerically: compile the initial point, once
        point = model.initial_point()
        n_parameters = sum(int(np.size(point[value.name])) for value in values)
    return {
        "model.free_variables": len(model.free_RVs),
        "model.observed_variables": len(model.observed_RVs),
        "model.deterministics": len(model.deterministics),
        "model.parameters": n_parameters,
    }


def _versions() -> dict[str, str]:
    result = {}
    for package in ("pymc", "pytensor", "arviz", "mlflow-pmlearn"):
        try:
            result[f"version.{package}"] = version(package)
        except PackageNotFoundError:
            result[f"version.{package}"] = "unknown"
    return result


def bayesian_params(estimator: BayesianEstimator, X: Any) -> dict[str, Any]:
    """Priors, model structure, the seed used, versions and the training data shape.

    Every key has a dotted prefix (``prior.``, ``model.``, ...), so these never collide with
    the hyper-parameters of an estimator or of a scikit-learn meta-estimator.
    """
    model = estimator.pymc_model()
    params: dict[str, Any] = {f"prior.{rv.name}": describe_prior(rv, model) for rv in model.free_RVs}
    params.update(model_structure(model))
    params["model.estimator_class"] = f"{type(estimator).__module__}.{type(estimator).__qualname__}"
    # The seed the fit drew when random_seed=None: with it, the fit can be repeated exactly.
    params["inference.seed"] = estimator.idata_.posterior.attrs.get("pmlearn_seed")
    params.update(_versions())
    params["training.rows"], params["training.columns"] = _shape(X)
    return params


def _shape(X: Any) -> tuple[int, int]:
    shape = np.shape(X)
    return int(shape[0]), int(np.prod(shape[1:], dtype=int))


def _elbo_metrics(idata: xr.DataTree, timestamp: int) -> list[Metric]:
    loss = idata.fit_history["loss"].values
    step = max(1, int(np.ceil(len(loss) / MAX_ELBO_POINTS)))
    iterations = np.arange(0, len(loss), step)
    # Mean of each thinned block, so the curve is smoother than single noisy iterations.
    elbo = -np.add.reduceat(loss, iterations) / np.diff(np.append(iterations, len(loss)))
    return [Metric("elbo", float(v), timestamp, int(i) + 1) for i, v in zip(iterations, elbo)]


def posterior_summary(idata: xr.DataTree) -> pd.DataFrame:
    """``arviz_stats.summary`` of the posterior: with the convergence diagnostics for MCMC draws.

    ADVI draws are independent draws from the approximation (one "chain"), for which
    R-hat and effective sample sizes say nothing; they get the statistics only. The
    interval is ArviZ's default (equal-tailed, 89%); values are not rounded.
    """
    kind = "all" if "sample_stats" in idata.children else "stats"
    return arviz_stats.summary(idata, kind=kind, round_to="none")


@dataclass
class PredictiveChecks:
    """The fitted model's posterior predictive against its own training data."""

    #: The estimator's ``score`` on the training data (R^2, accuracy or mean log density).
    score: float | None = None
    #: Regressors: share of training targets inside the central ``COVERAGE_PROB`` interval.
    coverage: float | None = None
    #: Training targets of the rows drawn in the check plot, and ``PPC_DRAWS`` draws of each.
    observed: np.ndarray | None = None
    draws: np.ndarray | None = None
    n_rows: int = 0


def _rows(X: Any, rows: slice | np.ndarray) -> Any:
    return X.iloc[rows] if isinstance(X, pd.DataFrame) else np.asarray(X)[rows]


def _plot_rows(n_rows: int) -> np.ndarray:
    """The (seeded, sorted) training rows drawn in the posterior predictive check plot."""
    if n_rows <= PPC_ROWS:
        return np.arange(n_rows)
    return np.sort(np.random.default_rng(0).choice(n_rows, PPC_ROWS, replace=False))


def _inside_central_interval(samples: np.ndarray, target: np.ndarray, prob: float) -> np.ndarray:
    """Whether each target lies in the central ``prob`` interval of its column of draws.

    The same verdict as comparing with ``np.quantile(samples, [tail, 1 - tail], axis=0)``
    (as ``predict_interval`` does), without sorting every column: a bound interpolates
    between two neighbouring order statistics, so counting the draws below a target decides
    every column but the few where the target falls between those two; only those are sorted.
    """
    tail = (1.0 - prob) / 2.0
    low, high = np.floor((len(samples) - 1) * np.array([tail, 1.0 - tail])).astype(int)
    strictly_below = (samples < target).sum(axis=0)
    at_or_below = (samples <= target).sum(axis=0)
    above_lower = strictly_below >= low + 2  # beyond the upper neighbour of the lower bound
    below_upper = at_or_below <= high  # short of the lower neighbour of the upper bound
    undecided = ~((above_lower | (at_or_below <= low)) & (below_upper | (strictly_below >= high + 2)))
    inside = above_lower & below_upper
    if undecided.any():
        lower, upper = np.quantile(samples[:, undecided], [tail, 1.0 - tail], axis=0)
        inside[undecided] = (lower <= target[undecided]) & (target[undecided] <= upper)
    return inside


def predictive_checks(estimator: BayesianEstimator, X: Any, y: Any) -> PredictiveChecks:
    """Score, interval coverage and the check plot's draws, in one pass over the training rows.

    For regressors one posterior predictive draw per posterior draw and row is made, in
    chunks of rows: their mean is the prediction (so ``score`` is R^2 as ``estimator.score``
    computes it) and their central interval is the one ``predict_interval`` gives.
    """
    if y is None:
        if isinstance(estimator, BayesianDensityMixin):
            return PredictiveChecks(score=float(estimator.score(X)))
        return PredictiveChecks()
    target = np.asarray(y).ravel()
    shown = _plot_rows(len(target))
    checks = PredictiveChecks(observed=target[shown], n_rows=len(target))
    if not is_regressor(estimator):
        if is_classifier(estimator):
            checks.score = float(estimator.score(X, y))
            checks.draws = estimator.sample_posterior_predictive(_rows(X, shown))[:PPC_DRAWS]
        return checks
    target = target.astype(np.float64)
    chunk = max(1, _CHUNK_VALUES // estimator.n_posterior_draws_)
    mean, inside, draws = np.empty(len(target)), np.empty(len(target), dtype=bool), []
    for start in range(0, len(target), chunk):
        rows = slice(start, start + chunk)
        samples = estimator.sample_posterior_predictive(_rows(X, rows))
        mean[rows] = samples.mean(axis=0)
        inside[rows] = _inside_central_interval(samples, target[rows], COVERAGE_PROB)
        draws.append(samples[:PPC_DRAWS, shown[(shown >= start) & (shown < start + chunk)] - start])
    checks.coverage = float(np.mean(inside))
    checks.draws = np.concatenate(draws, axis=1)
    # R^2 of the posterior predictive mean is what RegressorMixin.score computes; an
    # estimator with its own score is asked directly.
    own_score = type(estimator).score is not RegressorMixin.score
    checks.score = float(estimator.score(X, y)) if own_score else float(r2_score(target, mean))
    return checks


def fit_metrics(
    estimator: BayesianEstimator,
    fit_seconds: float,
    summary: pd.DataFrame | None = None,
    checks: PredictiveChecks | None = None,
) -> dict[str, float]:
    """ADVI or NUTS diagnostics, the fit time, the training score and (regressors) coverage.

    Parameters
    ----------
    estimator : BayesianEstimator
        The fitted estimator.
    fit_seconds : float
        Wall time of the fit.
    summary : DataFrame, optional
        :func:`posterior_summary` of ``estimator.idata_`` (computed when omitted).
    checks : PredictiveChecks, optional
        :func:`predictive_checks` on the training data (no score or coverage when omitted).
    """
    idata = estimator.idata_
    metrics: dict[str, float] = {"fit_time_s": fit_seconds}
    if "fit_history" in idata.children:
        loss = idata.fit_history["loss"].values
        metrics["elbo_final"] = float(-np.mean(loss[-100:]))
        metrics["advi_iterations"] = float(len(loss))
        metrics["advi_converged"] = float(idata.fit_history.attrs.get("converged", 0))
    if "sample_stats" in idata.children:
        stats = idata.sample_stats
        if summary is None:
            summary = posterior_summary(idata)
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
    if checks is not None and checks.score is not None:
        metrics["training_score"] = checks.score
    if checks is not None and checks.coverage is not None:
        metrics[f"training_coverage_{round(100 * COVERAGE_PROB)}"] = checks.coverage
    return metrics


def _png(figure) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=100, bbox_inches="tight")
    return buffer.getvalue()


def _arviz_png(plot: Callable, idata: xr.DataTree, title: str | None = None, **kwargs) -> bytes:
    """PNG of an ``arviz_plots`` plot, drawn with matplotlib; its figure is then closed
    (``arviz_plots`` creates figures through pyplot, which would otherwise keep them)."""
    from matplotlib import pyplot

    collection = plot(idata, backend="matplotlib", **kwargs)
    if title is not None:
        collection.add_title(title)
    figure = collection.viz["figure"].item()
    try:
        return _png(figure)
    finally:
        pyplot.close(figure)


def _figure(*, width: float = 8.0, height: float = 3.0):
    """A one-panel figure drawn off-screen (no pyplot state, no window), and its axes."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width, height))
    FigureCanvasAgg(figure)
    return figure, figure.subplots()


def _forest_variables(idata: xr.DataTree, names: list[str]) -> tuple[list[str], list[str]]:
    """The variables that fit in the forest plot (``MAX_FOREST_ROWS`` rows), and those left out."""
    shown, left_out, rows = [], [], 0
    for name in names:
        size = int(np.prod(idata.posterior[name].shape[2:]))
        if rows + size <= MAX_FOREST_ROWS:
            shown.append(name)
            rows += size
        else:
            left_out.append(name)
    return shown, left_out


def fit_plots(estimator: BayesianEstimator, checks: PredictiveChecks | None = None) -> dict[str, bytes]:
    """PNG plots by file name: ELBO curve or trace and rank plots, posteriors, a PPC.

    Parameters
    ----------
    estimator : BayesianEstimator
        The fitted estimator.
    checks : PredictiveChecks, optional
        :func:`predictive_checks` on the training data; without draws, no PPC plot.
    """
    idata = estimator.idata_
    model = estimator.pymc_model()
    free = [rv.name for rv in model.free_RVs]
    plots = {}
    if "fit_history" in idata.children:
        figure, ax = _figure()
        loss = idata.fit_history["loss"].values
        ax.plot(np.arange(1, len(loss) + 1), -loss, lw=0.6)
        ax.set(xlabel="iteration", ylabel="ELBO", title="ADVI evidence lower bound")
        low, high = np.percentile(-loss[len(loss) // 10 :], [1, 100])
        ax.set_ylim(low - 0.1 * (high - low), high + 0.1 * (high - low))
        plots["elbo.png"] = _png(figure)
    if "sample_stats" in idata.children:
        plots["trace.png"] = _arviz_png(arviz_plots.plot_trace_dist, idata, var_names=free, compact=True)
        ranked, n_panels = [], 0
        for name in free:  # rank plots of the first dozen scalar components
            size = int(np.prod(idata.posterior[name].shape[2:]))
            if n_panels + size > MAX_RANK_PANELS:
                break
            ranked.append(name)
            n_panels += size
        if ranked:
            plots["rank.png"] = _arviz_png(arviz_plots.plot_rank, idata, var_names=ranked)
    shown, left_out = _forest_variables(idata, free)
    if shown:
        title = "posterior of each prior-governed variable"
        if left_out:
            title += f"\nnot shown (too many components): {', '.join(left_out)}"
        plots["posterior.png"] = _arviz_png(arviz_plots.plot_forest, idata, title, var_names=shown, combined=True)
    if checks is not None and checks.draws is not None:
        plots["posterior_predictive_check.png"] = _ppc_plot(estimator, checks)
    return plots


def _ppc_plot(estimator: BayesianEstimator, checks: PredictiveChecks) -> bytes:
    from matplotlib.collections import LineCollection

    figure, ax = _figure(width=7, height=4)
    observed, samples = checks.observed, checks.draws
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
        bins = np.histogram_bin_edges(np.concatenate([observed, samples.ravel()]), bins=40)
        edges = np.repeat(bins, 2)[1:-1]
        # All draws' histograms as one collection of step lines: one artist draws fast.
        steps = [np.column_stack([edges, np.repeat(np.histogram(draw, bins, density=True)[0], 2)]) for draw in samples]
        ax.add_collection(LineCollection(steps, colors="C0", alpha=0.15, label=f"posterior predictive ({len(samples)} draws)"))
        ax.stairs(np.histogram(observed, bins, density=True)[0], bins, color="k", lw=2, label="observed")
        ax.autoscale_view()
        ax.set(xlabel="target", ylabel="density")
    title = "posterior predictive check on the training data"
    if len(observed) < checks.n_rows:
        title += f" ({len(observed):,} of {checks.n_rows:,} rows)"
    ax.set_title(title)
    ax.legend()
    return _png(figure)


def model_graph(model: pm.Model) -> tuple[str, bytes]:
    """The model graph as PNG (graphviz, where installed) or as text."""
    if importlib.util.find_spec("graphviz") is not None and shutil.which("dot") is not None:
        try:
            return "model_graph.png", pm.model_to_graphviz(model).pipe(format="png")
        except Exception as error:  # a graphviz that fails: the text below still describes the model
            _warn("the model graph as PNG (logged as text instead)", error)
    return "model_graph.txt", str(model.str_repr()).encode()


#: Settings of :func:`mlflow_pmlearn.autolog` that the logging reads, with their defaults.
_CONFIG_DEFAULTS = {
    "log_models": True,
    "log_input_examples": False,
    "log_model_signatures": True,
    "log_traces": True,
    "log_plots": True,
    "log_datasets": True,
    "registered_model_name": None,
    "max_tuning_runs": 5,
    "extra_tags": None,
}
#: Rows of the training data saved as the model's input example (``log_input_examples``).
INPUT_EXAMPLE_ROWS = 5


def _config() -> dict[str, Any]:
    from mlflow.utils.autologging_utils import get_autologging_config

    return {key: get_autologging_config(FLAVOR_NAME, key, default) for key, default in _CONFIG_DEFAULTS.items()}


def _warn(what: str, error: BaseException) -> None:
    # Inside safe_patch, warnings go to MLflow's autologging logger (and silent=True mutes them).
    warnings.warn(f"pmlearn autologging could not log {what}: {type(error).__name__}: {error}", stacklevel=3)


def _attempt(what: str, action: Callable[[], Any]) -> Any:
    """``action()``, or None and a warning if it raises: one part failing never stops the others."""
    try:
        return action()
    except Exception as error:
        _warn(what, error)
        return None


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


def _loggable(params: dict[str, Any]) -> dict[str, str]:
    """Parameters as MLflow stores them: strings within its length limit."""
    result = {}
    for key, value in params.items():
        text = str(_readable(value))
        result[key] = text if len(text) <= MAX_PARAM_VAL_LENGTH else text[: MAX_PARAM_VAL_LENGTH - 3] + "..."
    return result


def _log_params(params: dict[str, Any]) -> None:
    """Log ``params`` on the active run, keeping any value the run already has.

    MLflow parameters are written once, and ``mlflow run`` logs its entry point's
    parameters before the fit: one may share a name with a hyper-parameter, spelled
    differently (``-P prior_scale=1`` against the estimator's ``1.0``). MLflow would refuse
    the whole batch for that one value; here the others are logged and a warning names it.
    """
    loggable = _loggable(params)
    existing = MlflowClient().get_run(mlflow.active_run().info.run_id).data.params
    differing = [f"{key}={existing[key]!r} (fit: {value!r})" for key, value in loggable.items() if existing.get(key, value) != value]
    if differing:
        warnings.warn(
            f"pmlearn autologging kept the run's earlier values of {', '.join(differing)}: MLflow "
            "parameters are written once.",
            stacklevel=3,
        )
    mlflow.log_params({key: value for key, value in loggable.items() if key not in existing})


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


def _log_dataset(X: Any, y: Any) -> mlflow.data.pandas_dataset.PandasDataset:
    dataset = training_dataset(X, y)
    mlflow.log_input(dataset, context="training")
    return dataset


def _log_metrics(values: dict[str, float], dataset=None, history: list[Metric] = ()) -> None:
    """One ``log_batch`` (MLflow splits it into batches of its limit); ``training_*`` metrics
    are tied to the training dataset."""
    timestamp = int(time.time() * 1000)
    link = {"dataset_name": dataset.name, "dataset_digest": dataset.digest} if dataset is not None else {}
    metrics = [
        Metric(key, float(value), timestamp, 0, **(link if key.startswith("training_") else {}))
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
    model_note: str | None = None,
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
        The autolog settings (``_config()``).
    params : dict, optional
        Hyper-parameters to log; by default ``estimator.get_params(deep=False)``; a
        meta-estimator passes its own.
    metrics : dict, optional
        More metrics, e.g. a search's ``best_cv_score``.
    data : (X, y), optional
        The training data as the user passed it (to a pipeline), for the dataset input and
        the data shape; by default ``(X, y)``.
    model_note : str, optional
        Set when the estimator is only the last step of a pipeline: the model is then
        logged as ``bayesian_step`` (not registered) and this note says what it expects.
    """
    raw_X, raw_y = data if data is not None else (X, y)
    hyper = params if params is not None else estimator.get_params(deep=False)
    _attempt("the hyper-parameters", lambda: _log_params(hyper))
    _attempt("the priors and model structure", lambda: _log_params(bayesian_params(estimator, raw_X)))
    dataset = _attempt("the training dataset", lambda: _log_dataset(raw_X, raw_y)) if config["log_datasets"] else None
    summary = _attempt("the posterior summary", lambda: posterior_summary(estimator.idata_))
    checks = _attempt("the posterior predictive checks", lambda: predictive_checks(estimator, X, y))

    def log_metrics() -> None:
        values = {**fit_metrics(estimator, fit_seconds, summary, checks), **(metrics or {})}
        has_history = "fit_history" in estimator.idata_.children
        _log_metrics(values, dataset, _elbo_metrics(estimator.idata_, int(time.time() * 1000)) if has_history else [])

    _attempt("the metrics", log_metrics)
    if config["log_traces"]:
        _attempt("the trace", lambda: _log_trace(estimator, summary))
    if config["log_plots"]:
        _attempt("the plots", lambda: _log_plots(estimator, checks))
    if config["log_models"]:
        _attempt("the model", lambda: _log_model(estimator, config, model_note))


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


def _log_model(estimator: BayesianEstimator, config: dict[str, Any], model_note: str | None) -> None:
    import mlflow_pmlearn

    name, registered_model_name, metadata = "model", config["registered_model_name"], None
    if model_note is not None:
        name, metadata = "bayesian_step", {"pmlearn_logged_model": model_note}
        mlflow.set_tag(LOGGED_MODEL_TAG, model_note)
        message = f"pmlearn autologging logged the model as 'bayesian_step': {model_note}"
        if registered_model_name:
            message += f"; it is not registered as {registered_model_name!r}, as it is not the whole pipeline"
            registered_model_name = None
        warnings.warn(message, stacklevel=2)
    mlflow_pmlearn.log_model(
        estimator,
        name=name,
        input_example=estimator.training_sample(INPUT_EXAMPLE_ROWS) if config["log_input_examples"] else None,
        signature=None if config["log_model_signatures"] else False,
        registered_model_name=registered_model_name,
        code_paths=_code_paths(estimator),
        metadata=metadata,
    )


def _log_files(files: dict[str, bytes], artifact_path: str) -> None:
    with tempfile.TemporaryDirectory() as directory:
        for name, content in files.items():
            (Path(directory) / name).write_bytes(content)
        mlflow.log_artifacts(directory, artifact_path)


def _log_plots(estimator: BayesianEstimator, checks: PredictiveChecks | None) -> None:
    graph_name, graph = model_graph(estimator.pymc_model())
    _log_files({**fit_plots(estimator, checks), graph_name: graph}, "plots")


def _log_trace(estimator: BayesianEstimator, summary: pd.DataFrame | None) -> None:
    """The trace as NetCDF (reloads with ``xarray.open_datatree``) and its summary as CSV and HTML."""
    with tempfile.TemporaryDirectory() as directory:
        estimator.idata_.to_netcdf(Path(directory) / "trace.nc", engine=NETCDF_ENGINE)
        if summary is not None:
            summary.to_csv(Path(directory) / "summary.csv")
            (Path(directory) / "summary.html").write_text(summary.to_html(float_format=lambda v: f"{v:.4g}"))
        mlflow.log_artifacts(directory, "trace")


def _run_tags(config: dict[str, Any]) -> dict[str, str]:
    return {**(config["extra_tags"] or {}), MLFLOW_AUTOLOGGING: FLAVOR_NAME}


def _record_fit_error() -> None:
    """Keep the traceback of the exception being handled in the run (never masking it)."""
    try:
        if mlflow.active_run() is not None:
            mlflow.set_tag(FIT_ERROR_TAG, traceback.format_exc()[-MAX_TAG_VAL_LENGTH:])
    except Exception as error:
        _warn("the fit's error", error)


def _timed_fit(original: Callable, estimator: BaseEstimator, X: Any, y: Any, kwargs: dict) -> tuple[Any, float]:
    start = time.perf_counter()
    try:
        result = original(estimator, X, y, **kwargs)
    except BaseException:  # KeyboardInterrupt and SystemExit too: the run says where the fit stopped
        _record_fit_error()
        raise
    return result, time.perf_counter() - start


def _in_managed_run(function: Callable, config: dict[str, Any], *args, **kwargs):
    """``function(*args, **kwargs)`` in the run MLflow's ``with_managed_run`` starts if none is active.

    That run ends FINISHED, or FAILED on an exception or a KeyboardInterrupt. A
    ``SystemExit`` (e.g. raised by an application's SIGTERM handler) would leave it active
    until MLflow's exit hook ended it FINISHED; it is ended KILLED instead. No signal handler
    is installed: a library must not take over the process's signals.
    """
    from mlflow.utils.autologging_utils import with_managed_run

    starts_run = mlflow.active_run() is None
    try:
        return with_managed_run(FLAVOR_NAME, function, tags=_run_tags(config))(*args, **kwargs)
    except SystemExit:
        if starts_run and mlflow.active_run() is not None:
            mlflow.end_run(RunStatus.to_string(RunStatus.KILLED))
        raise


#: Autologged meta-estimator fits running (in any thread); see ``patched_fit``.
_meta_fits_running: list[BaseEstimator] = []


def patched_fit(original: Callable, self: BayesianEstimator, X: Any, y: Any = None, **kwargs):
    """``BayesianEstimator.fit`` under autolog: fit, then log; a fit inside another logs nothing.

    Inside an autologged fit in this context (a pipeline's, a search's, or an estimator's
    own nested fit) the fit reports its data and time to that fit's session. In another
    thread while a meta-estimator's autologged fit runs, it is taken for a worker of that
    fit (joblib's threading backend) and logs nothing either.
    """
    session = _session.get()
    if session is not None:
        start = time.perf_counter()
        result = original(self, X, y, **kwargs)
        session.last_fit = _Fit(self, X, y, time.perf_counter() - start)
        return result
    if _meta_fits_running:
        return original(self, X, y, **kwargs)
    config = _config()
    return _in_managed_run(_fit_and_log, config, original, self, X, y, config, **kwargs)


def _fit_and_log(original: Callable, estimator: BayesianEstimator, X: Any, y: Any, config: dict[str, Any], **kwargs):
    token = _session.set(_Session())
    try:
        result, seconds = _timed_fit(original, estimator, X, y, kwargs)
    finally:
        _session.reset(token)
    # Whatever fails while logging is a warning: the run still ends FINISHED, as the fit did.
    _attempt("the fit", lambda: log_fit(estimator, X, y, seconds, config))
    return result


# -- scikit-learn meta-estimators ----------------------------------------------------------


def bayesian_step(estimator: BaseEstimator | None) -> tuple[str, BayesianEstimator | None]:
    """The pmlearn estimator that ``estimator`` ends in, and its step path (``"reg"``, ``"a__b"``).

    ``estimator`` itself (path ``""``), or a ``Pipeline``'s final step, through nested
    pipelines; ``None`` when it does not end in a pmlearn estimator.
    """
    path = []
    while isinstance(estimator, Pipeline):
        name, estimator = estimator.steps[-1]
        path.append(name)
    return "__".join(path), (estimator if isinstance(estimator, BayesianEstimator) else None)


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
        isinstance(candidate, BaseEstimator) and bayesian_step(candidate)[1] is not None
        for candidate in _candidates(meta)
    )


def _preceding_steps(pipeline: BaseEstimator, path: str) -> list[str]:
    """``name=Class`` of the steps that transform the data before the pmlearn step."""
    steps = []
    for name in path.split("__") if path else []:
        for before, step in pipeline.steps[:-1]:
            if step is not None and step != "passthrough":
                steps.append(f"{before}={type(step).__name__}")
        pipeline = dict(pipeline.steps)[name]
    return steps


def _model_note(estimator: BaseEstimator, path: str) -> str | None:
    """What a model of only the pmlearn step is, or None when the step is the whole model."""
    preceding = _preceding_steps(estimator, path)
    if not preceding:
        return None
    return (
        f"the pipeline's final step {path!r} ({type(bayesian_step(estimator)[1]).__name__}) only; "
        f"it takes the output of the steps before it ({', '.join(preceding)}), not raw features"
    )


def patched_meta_fit(original: Callable, self: BaseEstimator, X: Any, y: Any = None, **kwargs):
    """``Pipeline.fit`` and ``BaseSearchCV.fit`` under autolog: one run when they hold a pmlearn
    estimator (nothing otherwise, and nothing for one inside another autologged fit)."""
    if _session.get() is not None or _meta_fits_running or not contains_bayesian(self):
        return original(self, X, y, **kwargs)
    config = _config()
    return _in_managed_run(_fit_and_log_meta, config, original, self, X, y, config, **kwargs)


def _fit_and_log_meta(original: Callable, meta: BaseEstimator, X: Any, y: Any, config: dict[str, Any], **kwargs):
    session = _Session()
    token = _session.set(session)
    _meta_fits_running.append(meta)
    try:
        result, seconds = _timed_fit(original, meta, X, y, kwargs)
    finally:
        _meta_fits_running.remove(meta)
        _session.reset(token)
    log = log_search_fit if isinstance(meta, BaseSearchCV) else log_pipeline_fit
    _attempt(f"the {type(meta).__name__} fit", lambda: log(meta, X, y, seconds, session.last_fit, config))
    return result


def _log_without_posterior(params: dict[str, Any], metrics: dict[str, float], X: Any, y: Any, config: dict[str, Any], reason: str) -> None:
    """A meta-estimator's run when no pmlearn fit can be reported (e.g. a search with refit=False)."""
    mlflow.set_tag(LOGGED_MODEL_TAG, f"none: {reason}")
    _attempt("the hyper-parameters", lambda: _log_params(params))
    dataset = _attempt("the training dataset", lambda: _log_dataset(X, y)) if config["log_datasets"] else None
    _attempt("the metrics", lambda: _log_metrics(metrics, dataset))


def log_pipeline_fit(pipeline: Pipeline, X: Any, y: Any, fit_seconds: float, fit: _Fit | None, config: dict[str, Any]) -> None:
    """One run for a pipeline: its parameters (deep), and everything about its pmlearn step."""
    params = pipeline.get_params(deep=True)
    path, step = bayesian_step(pipeline)
    if step is None or fit is None or fit.estimator is not step:
        _log_without_posterior(params, {"fit_time_s": fit_seconds}, X, y, config, "the pipeline did not fit a pmlearn estimator as its final step")
        return
    mlflow.set_tag("pmlearn.bayesian_step", path)
    log_fit(step, fit.X, fit.y, fit_seconds, config, params=params, data=(X, y), model_note=_model_note(pipeline, path))


def log_search_fit(search: BaseSearchCV, X: Any, y: Any, fit_seconds: float, fit: _Fit | None, config: dict[str, Any]) -> None:
    """The parent run of a parameter search, with the refitted best estimator; a child run per
    candidate (the best ``max_tuning_runs``) with its parameters and cross-validation scores."""
    params = search.get_params(deep=False)
    params.update({f"best_{key}": value for key, value in (getattr(search, "best_params_", None) or {}).items()})
    metrics = {"best_cv_score": float(search.best_score_)} if hasattr(search, "best_score_") else {}
    if hasattr(search, "cv_results_"):
        _attempt("the search results (cv_results.csv)", lambda: _log_cv_results(search))
        _attempt("the candidates' child runs", lambda: _log_child_runs(search, config))
    best = getattr(search, "best_estimator_", None)
    path, step = bayesian_step(best)
    if step is None or fit is None or fit.estimator is not step:
        reason = "refit=False: no best estimator was fitted" if best is None else f"the best estimator ({type(best).__name__}) is not a pmlearn estimator"
        _log_without_posterior(params, {"fit_time_s": fit_seconds, **metrics}, X, y, config, reason)
        return
    if path:
        mlflow.set_tag("pmlearn.bayesian_step", path)
    log_fit(step, fit.X, fit.y, fit_seconds, config, params=params, metrics=metrics, data=(X, y), model_note=_model_note(best, path))


def _log_cv_results(search: BaseSearchCV) -> None:
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "cv_results.csv"
        pd.DataFrame(search.cv_results_).to_csv(path, index=False)
        mlflow.log_artifact(str(path))


def _log_child_runs(search: BaseSearchCV, config: dict[str, Any]) -> None:
    """A finished child run per candidate: the best ``max_tuning_runs`` by rank, or all for None."""
    from mlflow.tracking.context.registry import resolve_tags

    results = pd.DataFrame(search.cv_results_)
    rank = "rank_test_score" if "rank_test_score" in results else next((c for c in results if c.startswith("rank_test_")), None)
    limit = config["max_tuning_runs"]
    chosen = results if limit is None else results.nsmallest(limit, rank) if rank else results.head(limit)
    parent = mlflow.active_run()
    client = MlflowClient()
    base = search.estimator.get_params(deep=True)
    tags = resolve_tags({**_run_tags(config), MLFLOW_PARENT_RUN_ID: parent.info.run_id})
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
            params=[Param(key, value) for key, value in _loggable({**base, **row["params"]}).items()],
        )
        client.set_terminated(run.info.run_id, end_time=now)
    mlflow.set_tag("pmlearn.child_runs", f"{len(chosen)} of {len(results)} candidates (max_tuning_runs={limit})")
