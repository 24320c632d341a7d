"""The pointwise log-likelihood over all posterior draws, beside the predictor that computes it.

PSIS-LOO, model comparison and the log score need ``log p(y_i | x_i, draw s)`` for every
row and draw. It is computed as predictions are: one compiled function over all draws
(:class:`~estimators.predictive.PosteriorPredictor`), in row chunks. The estimators'
``pointwise_log_likelihood``, ``training_log_likelihood``, ``log_predictive_density`` and
``pointwise_log_cdf`` are thin faces over these functions.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import numpy as np
import pymc as pm
import pytensor.tensor as pt
import xarray as xr
from pytensor.graph.traversal import ancestors, apply_ancestors
from pytensor.tensor.shape import Shape, Shape_i
from scipy.special import logsumexp

from estimators.likelihood_draws import derive_given_draw
from estimators.predictive import PosteriorPredictor

#: Name of the data container that holds the training targets.
TARGET = "y"

#: ``predictive_distribution(model, inputs)`` of an estimator: a new row's target under one draw.
PredictiveDistribution = Callable[[pm.Model, dict], pt.TensorVariable]


def log_mean_exp_over_draws(log_values: np.ndarray) -> np.ndarray:
    """``log(mean(exp(log_values)))`` over the leading (posterior draw) axis, computed stably."""
    return logsumexp(log_values, axis=0) - np.log(len(log_values))


def with_target(inputs: dict[str, np.ndarray], target: np.ndarray) -> dict[str, np.ndarray]:
    """The model inputs of rows and their targets, under :data:`TARGET`; the row counts must match."""
    n_rows = len(next(iter(inputs.values())))
    if len(target) != n_rows:
        raise ValueError(f"X has {n_rows} rows but y has {len(target)}; they must match.")
    return {**inputs, TARGET: target}


def compile_log_likelihood(
    model: pm.Model,
    posterior: xr.Dataset,
    seed: int,
    input_names: Sequence[str],
    predictive_distribution: PredictiveDistribution,
    derive: Callable = pm.logp,
) -> PosteriorPredictor:
    """The log density (or, with ``derive=pm.logcdf``, the log CDF) of the predictive
    distribution at new targets, over all posterior draws.

    The predictor takes the inputs named ``input_names`` and :data:`TARGET`; its one
    output has shape (draws, rows).
    """

    def log_likelihood(new, uniform):
        features = {container: value for container, value in new.items() if container is not model[TARGET]}
        distribution = predictive_distribution(model, features)
        return [derive_given_draw(derive, model, distribution, new[model[TARGET]])]

    return PosteriorPredictor(model, posterior, [*input_names, TARGET], log_likelihood, seed=seed)


def map_log_likelihood(
    predictor: PosteriorPredictor,
    observations: Mapping[str, np.ndarray],
    summarize: Callable[[np.ndarray], np.ndarray],
    *,
    width: int = 1,
) -> np.ndarray:
    """``summarize`` of each row chunk's log-likelihood (``predictor``'s first output, draws x
    rows), concatenated over the rows; ``width`` as for :meth:`PosteriorPredictor.map_rows`."""
    return predictor.map_rows(observations, lambda outputs: {"value": summarize(outputs[0])}, width=width)["value"]


def check_not_conditioned_on_targets(
    model: pm.Model, input_names: Sequence[str], predictive_distribution: PredictiveDistribution, name: str
) -> None:
    """Refuse a training log-likelihood where the predictive distribution conditions on the training targets.

    Its value at a training row (a marginal Gaussian process's) is then not that row's
    likelihood given the draw, so leave-one-out estimates from it would be wrong.

    Raises
    ------
    ValueError
        Naming the estimator ``name`` and what to do instead.
    """
    symbolic = {model[input_name]: model[input_name].type() for input_name in input_names}
    distribution = predictive_distribution(model, symbolic)
    # Only the targets' values count: a resized mixture takes its number of components
    # from the shape of its training-sized components, which the targets' shape sets.
    shapes = [node.outputs[0] for node in apply_ancestors([distribution]) if isinstance(node.op, Shape | Shape_i)]
    if model[TARGET] in ancestors([distribution], blockers=shapes):
        raise ValueError(
            f"{name}'s predictive distribution conditions on the training targets, so it has no pointwise "
            "log-likelihood of its training rows; score it on held-out rows with pointwise_log_likelihood(X, y) "
            "instead."
        )


def as_trace_array(values: np.ndarray, posterior: xr.DataTree | xr.Dataset, name: str) -> xr.DataArray:
    """Pointwise values (draws stacked over chain and draw, x rows) as a (chain, draw, row) array."""
    return xr.DataArray(
        values.reshape(posterior.sizes["chain"], posterior.sizes["draw"], -1),
        dims=("chain", "draw", "row"),
        coords={"chain": posterior["chain"].values, "draw": posterior["draw"].values},
        name=name,
    )
