"""Posterior predictive draws from any univariate PyMC likelihood at new rows.

Every prediction keeps three properties: a row's draws do not depend on the other rows
in its batch, repeat exactly for the fit's seed, and barely move when an input moves in
its last bits (as a JSON round trip moves it). The draws come from the first of three
methods that the likelihood supports, chosen from what PyMC can derive, never by the
distribution's name:

1. ``"inverse_cdf"``: PyMC's inverse CDF (``pm.icdf``: Normal, StudentT, Gamma, Beta, ...,
   and ``pm.Censored`` / ``pm.Truncated`` of them) at each posterior draw's fixed,
   stratified uniform ``u_s``: a quantile, smooth in the inputs.
2. ``"forward"``: a likelihood without one is drawn by its own sampler, all posterior
   draws of a row at once, row by row: a plain random variable (Poisson,
   NegativeBinomial, Binomial, SkewNormal, a ``pm.CustomDist`` with ``random``, ...) has
   its parameters computed for all rows in one compiled call and its NumPy sampler
   (``rng_fn``) called per row; a composite one (zero-inflated families, ``pm.Mixture``
   of plain components, ...), whose sampler, inlined, vectorises over the draws, is a
   compiled call per row. Every row starts from the same random stream (the fit's
   seed), so a row gets the same draws alone or in any batch, and rows with nearly equal
   parameters get nearly always equal draws (common random numbers). Speed: about the
   NumPy floor for a plain distribution, ten or more times it for a composite one
   (``benchmarks/likelihoods.py``).
3. ``"inverted_cdf"``: a composite distribution whose sampler does not vectorise (hurdle
   families and ``pm.Truncated`` of a count, whose samplers loop; ``NormalMixture``) has
   its CDF (``pm.logcdf``) inverted numerically at ``u_s``: searched from its support
   point, by integer steps for a discrete distribution and by bisection for a continuous
   one, for all rows at once and the posterior draws still searching.

A distribution with none of the three cannot predict; the error says which variable and
what to write instead.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping, Sequence

import numpy as np
import pymc as pm
import pytensor.tensor as pt
import xarray as xr
from pymc.distributions.continuous import ExGaussianRV
from pymc.distributions.distribution import support_point
from pymc.distributions.moments import mean as distribution_mean
from pymc.distributions.shape_utils import change_dist_size
from pymc.exceptions import UndefinedMomentException
from pytensor.compile.builders import OpFromGraph
from pytensor.compile.rewriting import inline_ofg_node
from pytensor.graph.traversal import ancestors, apply_ancestors
from pytensor.tensor.random.op import RandomVariable
from pytensor.tensor.variable import TensorVariable

from estimators.predictive import (
    PosteriorPredictor,
    PrecomputationRefused,
    replace_keeping_random_variables,
    select_rows,
)

#: Bisection of a continuous CDF stops at this relative width of the bracket.
RELATIVE_TOLERANCE = 1e-10
#: Doublings of the search bracket before a quantile is declared not found.
MAX_BRACKET_DOUBLINGS = 1100

DistributionAt = Callable[[Mapping[TensorVariable, TensorVariable]], TensorVariable]


def conditional_likelihood(likelihood: TensorVariable, replacements: Mapping) -> TensorVariable:
    """The likelihood's distribution at new inputs, one value per new row.

    The observed variable's size is tied to the training rows. A plain random variable
    is rebuilt from its parameters alone (its shape then follows the new inputs); a
    composite one (a mixture, a censored or truncated distribution, a ``CustomDist``
    built from ``dist``) is resized with PyMC's ``change_dist_size`` to the new rows.
    """
    node = likelihood.owner
    if isinstance(node.op, RandomVariable):
        params = replace_keeping_random_variables(node.op.dist_params(node), dict(replacements))
        _, value = node.op(*params, rng=node.op.rng_param(node), return_next_rng=True)
        value.name = likelihood.name
        return value
    # Resized before the inputs are replaced: PyMC 6.3's resizing of a CustomDist built
    # from `dist` takes the parameters it was created with, not those of its node.
    resized = change_dist_size(likelihood, new_size=(next(iter(replacements.values())).shape[0],))
    (at_new_inputs,) = replace_keeping_random_variables([resized], dict(replacements))
    return at_new_inputs


def derive_given_draw(derive: Callable, model: pm.Model, distribution: TensorVariable, *args) -> TensorVariable:
    """``derive(distribution, *args)`` (``pm.icdf``, ``pm.logcdf``, ``pm.logp``, ...) given one posterior draw.

    PyMC derives these for a composite distribution by rewriting its whole graph, which
    would copy the model's free variables among its parents and treat them as random.
    Held as fixed inputs while deriving, they stay the variables the posterior draws
    replace.
    """
    held = [rv.type(name=rv.name) for rv in model.free_RVs]
    (distribution,) = replace_keeping_random_variables([distribution], dict(zip(model.free_RVs, held)))
    (derived,) = replace_keeping_random_variables([derive(distribution, *args)], dict(zip(held, model.free_RVs)))
    return derived


class _NotDrawableForward(Exception):
    """A composite distribution whose sampler does not vectorise over posterior draws."""


def one_row_sampler(
    distribution: TensorVariable, containers: Sequence[TensorVariable], per_draw: TensorVariable
) -> TensorVariable:
    """A composite distribution at one new row, as plain random variables (which vectorise).

    PyMC's composite distributions (mixtures, censoring, ...) are op-from-graphs of plain
    random variables; resized to one row (forward draws are made row by row) and inlined,
    they vectorise over the posterior draws where their inner graph allows it. Each inner
    random variable is tied to ``per_draw`` (a scalar input vectorised over the posterior
    draws): one whose parameters are constants (the uniform inside AsymmetricLaplace)
    would otherwise be drawn once and shared by all posterior draws.

    Raises
    ------
    _NotDrawableForward
        Where resizing brings back the training inputs (PyMC 6.3 resizes a ``CustomDist``
        built from ``dist`` with the parameters it was created with).
    """
    sampler = change_dist_size(distribution, new_size=(1,))
    if set(containers) & set(ancestors([sampler])):
        raise _NotDrawableForward
    parameters = set(apply_ancestors(sampler.owner.inputs))  # the model's own random variables among them
    while node := next((n for n in apply_ancestors([sampler]) if isinstance(n.op, OpFromGraph)), None):
        (sampler,) = replace_keeping_random_variables([sampler], dict(zip(node.outputs, inline_ofg_node(node))))
    tied = set()
    while node := next(
        (n for n in apply_ancestors([sampler]) if isinstance(n.op, RandomVariable) and n not in tied | parameters),
        None,
    ):
        first, *others = node.op.dist_params(node)
        tied_first = first + pt.zeros_like(per_draw, dtype=first.dtype)  # the same values, batched by draw
        new_node = node.op.make_node(node.op.rng_param(node), node.op.size_param(node), tied_first, *others)
        tied.add(new_node)
        (sampler,) = replace_keeping_random_variables([sampler], dict(zip(node.outputs, new_node.outputs)))
    return sampler


def _supports(derive: Callable, model: pm.Model, distribution: TensorVariable) -> bool:
    """Whether PyMC can derive ``derive`` (``pm.icdf``, ``pm.logcdf``) for the distribution."""
    try:
        derive_given_draw(derive, model, distribution, distribution.type())
    except NotImplementedError:
        return False
    return True


def _cannot_predict(distribution: TensorVariable) -> TypeError:
    kind = type(distribution.owner.op).__name__
    return TypeError(
        f"The likelihood {distribution.name or kind!r} ({kind}) cannot predict: PyMC gives it no inverse "
        "CDF and no CDF, and it cannot be drawn forward. Give pm.CustomDist a `logcdf` or a `random` "
        "function, build it from `dist=` with distributions PyMC knows, or override predictive_distribution."
    )


class InverseCdfPredictor(PosteriorPredictor):
    """Quantiles of the likelihood (its inverse CDF) at each posterior draw's uniform.

    Joint draws take a uniform per row and draw instead: the same graph, compiled with
    ``per_row_uniforms`` on their first use (what most requests never ask for).
    """

    def __init__(self, model, posterior, input_names, build_outputs, *, seed: int):
        super().__init__(model, posterior, input_names, build_outputs, seed=seed)
        self._compile_joint = lambda: PosteriorPredictor(
            model, posterior, input_names, build_outputs, seed=seed, per_row_uniforms=True
        )
        self._joint: PosteriorPredictor | None = None
        self._joint_lock = threading.Lock()

    def joint_draws(self, inputs: Mapping[str, np.ndarray], n_joint: int) -> np.ndarray:
        """``n_joint`` joint predictive draws of the rows of ``inputs`` (draws x rows): draw
        ``j`` of every row at posterior draw ``joint_draw_indices(n_joint)[j]``, each row at
        uniforms of its own."""
        with self._joint_lock:
            if self._joint is None:
                self._joint = self._compile_joint()
        n_rows = len(next(iter(inputs.values())))
        draws, uniforms = self.joint_draw_indices(n_joint), self.joint_uniforms(n_rows, n_joint)
        chunks = []
        for rows in self.row_chunks(n_rows, n_draws=n_joint):
            row_uniforms = np.ascontiguousarray(uniforms[:, rows])
            chunks.append(self._joint.evaluate(select_rows(inputs, rows), draws=draws, uniforms=row_uniforms)[0])
        return np.concatenate(chunks, axis=1)


class ForwardDrawPredictor(PosteriorPredictor):
    """Draws forward from the likelihood, row by row, each row from the same random stream.

    A row's posterior draws are made at once, with generators that start where every
    other row's started (from the fit's seed), so a row gets the same draws whatever
    batch it comes in, and a row whose parameters move slightly gets the same draws
    unless a draw crosses one of its sampler's thresholds.

    A plain random variable (``sampler`` given) has its parameters computed for all rows
    in one compiled call, and only its own NumPy sampler (``rng_fn``) runs row by row; a
    composite one is a compiled call per row.
    """

    def __init__(self, *args, distribution: TensorVariable, sampler: RandomVariable | None = None, **kwargs):
        super().__init__(*args, n_streams=None if sampler is None else 1, **kwargs)
        self._distribution = distribution
        self._sampler = sampler

    def __call__(self, inputs: Mapping[str, np.ndarray]) -> list[np.ndarray]:
        arrays = self.input_arrays(inputs)
        n_rows = len(next(iter(arrays.values())))
        if not n_rows:
            return [np.empty((self.n_draws, 0), dtype=self._distribution.dtype)]
        try:
            if self._sampler is not None:
                (generator,) = self.generators()
                start = generator.bit_generator.state

                def from_the_start(row: int) -> np.random.Generator:
                    generator.bit_generator.state = start
                    return generator

                return [self._draw_rows(self.evaluate(arrays, generators=[]), from_the_start)]
            rows = []
            for index in range(n_rows):
                # New generators each call: every row from the same streams.
                rows.append(self.evaluate(select_rows(arrays, slice(index, index + 1))))
        except NotImplementedError as error:  # e.g. a CustomDist given neither `random` nor `dist`
            raise _cannot_predict(self._distribution) from error
        return [np.concatenate(parts, axis=1) for parts in zip(*rows)]

    def joint_draws(self, inputs: Mapping[str, np.ndarray], n_joint: int) -> np.ndarray:
        """``n_joint`` joint predictive draws of the rows of ``inputs`` (draws x rows): row by
        row at the posterior draws ``joint_draw_indices(n_joint)``, each row from a random
        stream of its own (:meth:`row_generators`)."""
        arrays = self.input_arrays(inputs)
        n_rows = len(next(iter(arrays.values())))
        draws = self.joint_draw_indices(n_joint)
        if not n_rows:
            return np.empty((n_joint, 0), dtype=self._distribution.dtype)
        if self._sampler is not None:
            parameters = self.evaluate(arrays, draws=draws, generators=[])
            try:
                return self._draw_rows(parameters, lambda row: self.row_generators(row)[0])
            except NotImplementedError as error:
                raise _cannot_predict(self._distribution) from error
        rows = [
            self.evaluate(select_rows(arrays, slice(row, row + 1)), draws=draws, generators=self.row_generators(row))[0]
            for row in range(n_rows)
        ]
        return np.concatenate(rows, axis=1)

    def _draw_rows(
        self, parameters: list[np.ndarray], generator_of: Callable[[int], np.random.Generator]
    ) -> np.ndarray:
        """The sampler's draws at each row's parameters (draws x rows), row ``i`` from ``generator_of(i)``."""
        by_row = [np.ascontiguousarray(np.moveaxis(values, 1, 0)) for values in parameters]  # (rows, draws, ...)
        n_rows, n_draws = by_row[0].shape[:2]
        draws = np.empty((n_rows, n_draws), dtype=self._distribution.dtype)
        for index in range(n_rows):
            draws[index] = self._sampler.rng_fn(generator_of(index), *(values[index] for values in by_row), None)
        return draws.T


class InvertedCdfPredictor(PosteriorPredictor):
    """Quantiles at the draws' uniforms, found by searching the likelihood's CDF.

    The compiled function gives ``log F(value)`` for a value per draw and row, and the
    distribution's support point (e.g. its mode); the search doubles a bracket out from
    the support point (up or down) until ``F(lower) < u <= F(upper)``, then halves it,
    for all rows at once and for the posterior draws still searching: to the smallest
    such integer for a discrete distribution, to a relative width of
    :data:`RELATIVE_TOLERANCE` for a continuous one.
    """

    def __init__(self, *args, discrete: bool, **kwargs):
        super().__init__(*args, **kwargs)
        self._discrete = discrete

    def __call__(self, inputs: Mapping[str, np.ndarray]) -> list[np.ndarray]:
        return [self._quantiles(inputs, np.log(self.uniforms)[:, None], np.arange(self.n_draws))]

    def joint_draws(self, inputs: Mapping[str, np.ndarray], n_joint: int) -> np.ndarray:
        """``n_joint`` joint predictive draws of the rows of ``inputs`` (draws x rows): draw
        ``j`` of every row at posterior draw ``joint_draw_indices(n_joint)[j]``, each row at
        uniforms of its own."""
        n_rows = len(next(iter(inputs.values())))
        draws, log_u = self.joint_draw_indices(n_joint), np.log(self.joint_uniforms(n_rows, n_joint))
        chunks = [
            self._quantiles(select_rows(inputs, rows), log_u[:, rows], draws)
            for rows in self.row_chunks(n_rows, n_draws=n_joint)
        ]
        return np.concatenate(chunks, axis=1)

    def _quantiles(self, inputs: Mapping[str, np.ndarray], log_u: np.ndarray, draws: np.ndarray) -> np.ndarray:
        """The quantiles at ``exp(log_u)`` (one row per entry of ``draws``, one column per row
        or one for all) of the posterior draws ``draws``, of shape (draws, rows)."""
        n_rows = len(next(iter(inputs.values())))
        dtype = np.int64 if self._discrete else np.float64

        def below(value: np.ndarray, positions: np.ndarray) -> np.ndarray:
            """Where ``F(value) < u`` at ``draws[positions]``: the quantile lies above."""
            return self.evaluate(inputs, value, draws=draws[positions])[0] < log_u[positions]

        every_draw = np.arange(len(draws))
        log_cdf, start = self.evaluate(inputs, np.zeros((len(draws), n_rows), dtype=dtype), draws=draws)
        start = np.broadcast_to(np.floor(start) if self._discrete else start, log_cdf.shape).astype(dtype)
        upward = below(start, every_draw)  # the quantile lies above the support point
        lower, upper = np.where(upward, start, start - 1), np.where(upward, start + 1, start)
        # Only the draws with a row still searching are evaluated: those with extreme
        # uniforms take the most steps.
        searching = every_draw
        for _ in range(MAX_BRACKET_DOUBLINGS):
            edge_below = below(np.where(upward, upper, lower)[searching], searching)
            unbracketed = np.where(upward[searching], edge_below, ~edge_below)
            still = unbracketed.any(axis=1)
            searching, unbracketed = searching[still], unbracketed[still]
            if not len(searching):
                break
            low, high, up = lower[searching], upper[searching], upward[searching]
            width = high - low
            lower[searching] = np.where(unbracketed, np.where(up, high, low - 2 * width), low)
            upper[searching] = np.where(unbracketed, np.where(up, high + 2 * width, low), high)
        else:
            raise ValueError("The likelihood's quantile was not found: its CDF never reaches the draw's uniform.")
        searching = every_draw
        while True:
            width = upper[searching] - lower[searching]
            if self._discrete:
                unresolved = width > 1
            else:
                unresolved = width > RELATIVE_TOLERANCE * np.maximum(1.0, np.abs(upper[searching]))
            still = unresolved.any(axis=1)
            searching, unresolved, width = searching[still], unresolved[still], width[still]
            if not len(searching):
                break
            low = lower[searching]
            middle = low + width // 2 if self._discrete else low + width / 2
            go_up = below(middle, searching) & unresolved
            lower[searching] = np.where(go_up, middle, low)
            upper[searching] = np.where(unresolved & ~go_up, middle, upper[searching])
        return upper if self._discrete else (lower + upper) / 2


def _parameters_per_row(distribution: TensorVariable) -> list[TensorVariable]:
    """A plain random variable's parameters, each broadcast to one value (and its core shape) per row."""
    node = distribution.owner
    return [
        pt.broadcast_to(parameter, (*distribution.shape, *parameter.shape[parameter.ndim - ndim :]))
        for parameter, ndim in zip(node.op.dist_params(node), node.op.ndims_params)
    ]


def _log_cdf_and_start(model: pm.Model, distribution: TensorVariable, value: TensorVariable) -> list[TensorVariable]:
    """The distribution's log CDF at ``value``, and where a search for its quantiles starts.

    A discrete distribution's search starts at its support point (e.g. its mode), since
    its steps are whole numbers; a continuous one's at 0 (bisection dominates its cost,
    and not every continuous mixture's support point vectorises over draws).
    """
    log_cdf = derive_given_draw(pm.logcdf, model, distribution, value)
    if distribution.dtype.startswith("int"):
        return [log_cdf, derive_given_draw(support_point, model, distribution)]
    return [log_cdf, pt.zeros_like(value)]


def likelihood_draw_predictor(
    model: pm.Model,
    posterior: xr.Dataset,
    input_names: Sequence[str],
    distribution_at: DistributionAt,
    *,
    seed: int,
) -> PosteriorPredictor:
    """A predictor whose one output is a predictive draw per posterior draw and row.

    By the first method the distribution supports (see the module's docstring): its
    inverse CDF, forward draws, or its CDF inverted numerically.

    Parameters
    ----------
    model : pm.Model
        The fitted model.
    posterior : xr.Dataset
        The fit's posterior.
    input_names : sequence of str
        The data containers that new rows replace.
    distribution_at : callable
        ``distribution_at(inputs)``: the predictive distribution at the symbolic new rows.
    seed : int
        The fit's seed: of the uniforms, and of the random streams of forward draws.
    """
    probe = {model[name]: model[name].type() for name in input_names}
    distribution = distribution_at(probe)
    if _supports(pm.icdf, model, distribution):
        return InverseCdfPredictor(
            model,
            posterior,
            input_names,
            lambda inputs, uniform: [derive_given_draw(pm.icdf, model, distribution_at(inputs), uniform)],
            seed=seed,
        )
    op = distribution.owner.op
    if isinstance(op, RandomVariable) and op.ndim_supp == 0:
        return ForwardDrawPredictor(
            model,
            posterior,
            input_names,
            lambda inputs, uniform: _parameters_per_row(distribution_at(inputs)),
            seed=seed,
            distribution=distribution,
            sampler=op,
        )
    containers = [model[name] for name in input_names]
    try:
        return ForwardDrawPredictor(
            model,
            posterior,
            input_names,
            lambda inputs, uniform: [one_row_sampler(distribution_at(inputs), containers, uniform)],
            seed=seed,
            distribution=distribution,
        )
    except (_NotDrawableForward, NotImplementedError, ValueError) as error:  # a composite's sampler that loops
        if not _supports(pm.logcdf, model, distribution):
            raise _cannot_predict(distribution) from error
    value = pt.vector("value", dtype=distribution.dtype)
    return InvertedCdfPredictor(
        model,
        posterior,
        input_names,
        lambda inputs, uniform: _log_cdf_and_start(model, distribution_at(inputs), value),
        seed=seed,
        arguments=[value],
        discrete=distribution.dtype.startswith("int"),
    )


#: Distributions whose mean PyMC 6.3 gets wrong: ExGaussian's reads its parameters in the
#: wrong order (``mu + sigma`` instead of ``mu + nu``). Their means come from the draws.
_MEANS_PYMC_GETS_WRONG = (ExGaussianRV,)


def predictive_mean_predictor(
    model: pm.Model,
    posterior: xr.Dataset,
    input_names: Sequence[str],
    distribution_at: DistributionAt,
    *,
    seed: int,
) -> PosteriorPredictor | None:
    """A predictor whose one output is the likelihood's mean per posterior draw and row, drawing nothing.

    The mean in closed form from PyMC's moments (``pymc.distributions.moments.mean``; of a
    mixture, the weighted means of its components): the posterior predictive mean of a row
    is its average over the posterior draws, exact given the draws, where a mean of
    predictive draws would add Monte Carlo error and cost a draw per posterior draw.

    Returns
    -------
    PosteriorPredictor or None
        None where PyMC has no mean of the distribution (a truncated, censored or custom
        one), gets it wrong (ExGaussian) or it is undefined (Cauchy), and where the mean would need its own arrays
        computed per posterior draw (a Gaussian process's factor of its training
        covariance, which the draws' predictor holds already): the predictive draws'
        mean stands in for it.
    """
    probe = distribution_at({model[name]: model[name].type() for name in input_names})
    free = set(model.free_RVs)
    if any(
        isinstance(node.op, _MEANS_PYMC_GETS_WRONG) and not set(node.outputs) & free
        for node in apply_ancestors([probe])
    ):
        return None
    try:
        probe_mean = derive_given_draw(distribution_mean, model, probe)
    except (NotImplementedError, UndefinedMomentException):
        return None
    if any(
        isinstance(node.op, RandomVariable) and not set(node.outputs) & free for node in apply_ancestors([probe_mean])
    ):
        return None  # a mean that draws (a composite's inner random variables) is no closed form

    def means(inputs, uniform):
        n_rows = next(iter(inputs.values())).shape[0]  # not the distribution's shape: a mixture's keeps its node
        return [pt.broadcast_to(derive_given_draw(distribution_mean, model, distribution_at(inputs)), (n_rows,))]

    try:
        return PosteriorPredictor(model, posterior, input_names, means, seed=seed, precompute=False)
    except PrecomputationRefused:
        return None
