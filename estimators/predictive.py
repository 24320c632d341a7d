"""The prediction hot path: one compiled PyTensor function over all posterior draws.

``pm.sample_posterior_predictive`` calls a compiled function once per draw. Here the
model's predictive graph is instead vectorised over the draws (`vectorize_graph`) and
compiled once per fitted model: new inputs and the stacked posterior go in, arrays with a
leading draw axis come out. Each posterior draw has a fixed, stratified uniform, and random
variables left in the graph draw from fixed random streams, so a function's outputs are
deterministic; how draws from a likelihood keep a row's prediction independent of its
batch is :mod:`estimators.likelihood_draws`'s job.

What a draw's prediction computes from the draw alone (e.g. a Gaussian process's Cholesky
factor of its training covariance) is computed once per draw when the function is built,
not at every call: see :func:`per_draw_parts`.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from contextvars import ContextVar

import numpy as np
import pymc as pm
import pytensor.tensor as pt
import xarray as xr
from pymc.variational.minibatch_rv import MinibatchRandomVariable
from pytensor.compile import ViewOp
from pytensor.graph.replace import clone_replace, graph_replace, vectorize_graph
from pytensor.graph.traversal import apply_ancestors, graph_inputs, io_toposort, toposort
from pytensor.tensor.basic import Join
from pytensor.tensor.elemwise import DimShuffle, Elemwise
from pytensor.tensor.random.type import RandomType
from pytensor.tensor.shape import Reshape
from pytensor.tensor.subtensor import Subtensor
from pytensor.tensor.variable import TensorVariable

from estimators.compilation import compile_function

#: Spawn key that sets the random streams apart from other uses of the fit's seed.
RANDOM_STREAMS = 1
#: Spawn key of the random numbers of joint predictive draws (which posterior draws, each row's noise).
JOINT_DRAWS = 2
#: Upper bound on draws x rows (x classes) held in memory at once while predicting.
MAX_ELEMENTS_PER_CHUNK = 2**22
#: The most bytes the predictor being built may precompute over all draws (None: no limit).
_PRECOMPUTED_BYTES_LIMIT: ContextVar[int | None] = ContextVar("precomputed_bytes_limit", default=None)


class PredictorMemoryError(ValueError):
    """A predictor would precompute more bytes per posterior draw than its limit allows."""


class PrecomputationRefused(ValueError):
    """A predictor built with ``precompute=False`` would compute parts of its graph per posterior draw."""


@contextmanager
def precomputed_bytes_limit(max_bytes: int | None) -> Iterator[None]:
    """Within the block, building a predictor whose per-draw precomputed arrays take more
    than ``max_bytes`` in all raises :class:`PredictorMemoryError` before allocating them."""
    token = _PRECOMPUTED_BYTES_LIMIT.set(max_bytes)
    try:
        yield
    finally:
        _PRECOMPUTED_BYTES_LIMIT.reset(token)


OutputBuilder = Callable[[Mapping[TensorVariable, TensorVariable], TensorVariable], list[TensorVariable]]


def check_precomputed_bytes(needed: int, what: str) -> None:
    """Refuse, within a :func:`precomputed_bytes_limit`, a predictor that would precompute
    ``needed`` bytes (``what`` says of which arrays) over the limit."""
    limit = _PRECOMPUTED_BYTES_LIMIT.get()
    if limit is not None and needed > limit:
        raise PredictorMemoryError(
            f"The predictor would precompute {needed:,} bytes ({what}), over the limit of {limit:,} bytes."
        )


def stratified_uniforms(n_draws: int, seed: int) -> np.ndarray:
    """One uniform per posterior draw, one in each of ``n_draws`` equal strata, shuffled.

    Stratifying makes the predictive quantiles of a few hundred draws as accurate as
    those of many more independent ones; shuffling pairs strata with draws at random.
    """
    rng = np.random.default_rng(seed)
    return (rng.permutation(n_draws) + rng.uniform(size=n_draws)) / n_draws


def select_rows(inputs: Mapping[str, np.ndarray], rows: slice | np.ndarray) -> dict[str, np.ndarray]:
    """The rows ``rows`` of every input array."""
    return {name: values[rows] for name, values in inputs.items()}


def likelihood_of(model: pm.Model) -> TensorVariable:
    """The model's single observed random variable."""
    observed = model.observed_RVs
    if len(observed) != 1:
        raise ValueError(
            f"A pmlearn model must have exactly one observed variable (the likelihood); "
            f"this one has {len(observed)}: {[rv.name for rv in observed]}."
        )
    likelihood = observed[0]
    if isinstance(likelihood.owner.op, MinibatchRandomVariable):  # declared with total_size
        likelihood = likelihood.owner.inputs[0]
    return likelihood


def replace_keeping_random_variables(
    outputs: Sequence[TensorVariable], replacements: Mapping[TensorVariable, TensorVariable]
) -> list[TensorVariable]:
    """``graph_replace(outputs, replacements)``, keeping every random variable the replacements do not reach.

    PyTensor's ``graph_replace`` also copies parts of the graph that do not depend on the
    replaced variables, where they share an input with a part that does (``NoneConst``,
    the ``size`` of every random variable given none). A copied random variable is a new
    one: the posterior draws, which replace the model's free variables, would not reach
    it, and it would draw from its prior (a mixture's weights, for one). Each random
    variable is given as its own replacement, so it stays the model's.
    """
    reached = set(replacements)
    kept = {}
    for node in toposort(outputs):
        if any(i in reached for i in node.inputs):
            reached.update(node.outputs)
        elif any(isinstance(i.type, RandomType) for i in node.inputs):
            kept.update({output: output for output in node.outputs})
    return graph_replace(list(outputs), {**kept, **replacements}, strict=False)


def without_views(outputs: list[TensorVariable]) -> list[TensorVariable]:
    """``outputs`` with view ops (how PyMC marks deterministics) bypassed.

    A view op has no vectorised form, so left in place it would be evaluated in a Python
    loop over the posterior draws.
    """
    views = {node.outputs[0]: node.inputs[0] for node in apply_ancestors(outputs) if isinstance(node.op, ViewOp)}
    return replace_keeping_random_variables(outputs, views) if views else outputs


#: Ops cheap enough to recompute at every call (elementwise and reshaping).
_CHEAP_OPS = (Elemwise, DimShuffle, Subtensor, Join, Reshape)


def per_draw_parts(
    outputs: Sequence[TensorVariable],
    draw_inputs: Sequence[TensorVariable],
    call_inputs: Sequence[TensorVariable],
) -> list[TensorVariable]:
    """Where a per-draw prediction graph starts to depend on the new rows.

    Returns variables that depend on the posterior draw (``draw_inputs``) and fixed data
    only, and that the rest of the graph (what depends on ``call_inputs``: new rows, the
    uniform) uses: computed once per draw, they make the per-call graph. A variable whose
    computation from the draw is only elementwise or reshaping is not precomputed (its
    own inputs are taken instead), nor is an integer one (shapes, indices): so for most
    models the parts are the draws themselves, and only a costly computation (a Cholesky
    factor of a training covariance, a solve, a product with the training data) is
    precomputed.
    """
    varying, from_draws, costly = set(call_inputs), set(draw_inputs), set()
    for node in io_toposort([*draw_inputs, *call_inputs], outputs):
        if any(i in varying or isinstance(i.type, RandomType) for i in node.inputs):
            varying.update(node.outputs)
        elif any(i in from_draws for i in node.inputs):
            if not all(getattr(o.type, "dtype", "").startswith("float") for o in node.outputs):
                varying.update(node.outputs)
                continue
            from_draws.update(node.outputs)
            if not isinstance(node.op, _CHEAP_OPS) or any(i in costly for i in node.inputs):
                costly.update(node.outputs)
    used = [
        i
        for node in io_toposort([*draw_inputs, *call_inputs], outputs)
        if any(o in varying for o in node.outputs)
        for i in node.inputs
    ]
    parts: list[TensorVariable] = []
    pending = [v for v in [*used, *outputs] if v in from_draws and v not in varying]
    while pending:
        variable = pending.pop(0)
        if variable in parts:
            continue
        if variable in costly or variable.owner is None or variable in draw_inputs:
            parts.append(variable)
        else:  # cheap: recomputed at each call from its own inputs
            pending.extend(i for i in variable.owner.inputs if i in from_draws)
    return parts


def _philox_keys(entropy: list[int], n_streams: int) -> list[np.ndarray]:
    """Keys of ``n_streams`` independent Philox streams spawned from ``entropy``."""
    return [np.random.Philox(child).state["state"]["key"] for child in np.random.SeedSequence(entropy).spawn(n_streams)]


def _evaluate_per_draw(parts, draw_inputs, draws: list[np.ndarray]) -> list[np.ndarray]:
    """The value of each part at each posterior draw, stacked along a leading draw axis.

    One draw at a time, so that memory holds one draw's intermediate arrays at most. Under
    a :func:`precomputed_bytes_limit`, their shapes are computed first (from the graph's
    shape inference, not the values), and a total over the limit is refused.
    """
    index = {variable: k for k, variable in enumerate(draw_inputs)}
    computed = [part for part in parts if part not in index]
    values: dict = {part: draws[index[part]] for part in parts if part in index}
    if computed:
        n_draws = len(draws[0]) if draws else 1
        if _PRECOMPUTED_BYTES_LIMIT.get() is not None:
            shapes = compile_function(list(draw_inputs), [part.shape for part in computed], on_unused_input="ignore")
            first = shapes(*(values_[0] for values_ in draws))
            needed = n_draws * sum(
                math.prod(shape) * np.dtype(part.dtype).itemsize for shape, part in zip(first, computed)
            )
            described = ", ".join(str(tuple(int(n) for n in shape)) for shape in first)
            check_precomputed_bytes(needed, f"{n_draws:,} posterior draws of arrays shaped {described}")
        function = compile_function(list(draw_inputs), computed, on_unused_input="ignore")
        stacked = None
        for draw in range(n_draws):
            results = function(*(values_[draw] for values_ in draws))
            if stacked is None:
                stacked = [np.empty((n_draws, *np.shape(r)), dtype=part.dtype) for r, part in zip(results, computed)]
            for target, result in zip(stacked, results):
                target[draw] = result
        values.update(zip(computed, stacked))
    return [np.ascontiguousarray(values[part]) for part in parts]


class PosteriorPredictor:
    """A compiled function from new model inputs to per-draw predictive quantities.

    Parameters
    ----------
    model : pm.Model
        The fitted model, with its data containers.
    posterior : xr.Dataset
        The ``posterior`` group of the fit (dimensions ``chain``, ``draw``, ...).
    input_names : sequence of str
        The data containers that new data replace (e.g. ``["X"]``).
    build_outputs : callable
        ``build_outputs(inputs, uniform)`` returns the outputs for one posterior draw,
        given a mapping from each input container to the symbolic new rows that replace
        it, and a scalar uniform; they are vectorised over all draws.
    seed : int
        Seed of the stratified uniforms.
    arguments : sequence of TensorVariable, optional
        Further per-draw variables that ``build_outputs`` uses (e.g. a candidate value
        per row); each call passes their values with a leading draw axis.
    per_row_uniforms : bool, default=False
        Give ``build_outputs`` a vector of uniforms, one per new row, instead of a scalar:
        each call then passes a matrix of them (draws x rows), as joint draws need.
    n_streams : int, optional
        Random streams that :meth:`generators` and :meth:`row_generators` give: by default
        one per random variable left in the outputs; a predictor that draws outside the
        compiled function asks for its own (and passes ``generators=[]`` to :meth:`evaluate`).
    precompute : bool, default=True
        Whether the outputs may need parts computed once per draw (:func:`per_draw_parts`);
        if not and they do, :class:`PrecomputationRefused` is raised before computing any.

    Notes
    -----
    Random variables left in the outputs (a likelihood drawn forward) draw from
    :meth:`generators`, new at every call: every call starts from the same streams.

    Joint predictive draws take their randomness from :meth:`joint_draw_indices`,
    :meth:`joint_uniforms` and :meth:`row_generators`: draw ``j`` of every row comes
    from the same posterior draw, and each row has noise of its own.
    """

    def __init__(
        self,
        model: pm.Model,
        posterior: xr.Dataset,
        input_names: Sequence[str],
        build_outputs: OutputBuilder,
        *,
        seed: int,
        arguments: Sequence[TensorVariable] = (),
        per_row_uniforms: bool = False,
        n_streams: int | None = None,
        precompute: bool = True,
    ):
        self.input_names = list(input_names)
        self.seed = seed
        containers = [model[name] for name in self.input_names]
        new_inputs = [pt.tensor(name=f"{c.name}_new", dtype=c.dtype, shape=(None,) * c.ndim) for c in containers]
        uniform_shape = (None,) if per_row_uniforms else ()  # one per row, or one for all rows
        uniform = pt.tensor("uniform", dtype="float64", shape=uniform_shape)
        outputs = without_views(build_outputs(dict(zip(containers, new_inputs)), uniform))
        free_rvs = [rv for rv in model.free_RVs if rv.name in posterior]
        stacked = posterior.stack(sample=("chain", "draw"))
        self.n_draws = stacked.sizes["sample"]
        # One draw of each free variable, as a root of the graph.
        draw_inputs = [rv.type(name=rv.name) for rv in free_rvs]
        outputs = clone_replace(outputs, dict(zip(free_rvs, draw_inputs)))
        # Random variables left (the likelihood, drawn forward) draw from generators given per call.
        shared_generators = [v for v in graph_inputs(outputs) if isinstance(v.type, RandomType)]
        generators = [v.type(name=v.name) for v in shared_generators]
        outputs = graph_replace(outputs, dict(zip(shared_generators, generators)), strict=False)
        #: Number of random generators each call must pass (random variables drawn forward).
        self.n_generators = len(generators)
        parts = per_draw_parts(outputs, draw_inputs, [*new_inputs, uniform, *arguments, *generators])
        if not precompute and not set(parts) <= set(draw_inputs):
            raise PrecomputationRefused("the outputs need parts computed once per posterior draw.")
        self._draws = _evaluate_per_draw(
            parts,
            draw_inputs,
            [stacked[rv.name].transpose("sample", ...).values.astype(rv.dtype) for rv in free_rvs],
        )
        #: Widest axis of the precomputed arrays of a draw: how wide a row's intermediate
        #: arrays get per draw (e.g. a GP's training rows), which bounds the row chunks.
        self.row_width = max(
            [
                1,
                *(
                    max(value.shape[1:], default=1)
                    for part, value in zip(parts, self._draws)
                    if part not in draw_inputs
                ),
            ]
        )
        part_inputs = [part.type(name=part.name) for part in parts]
        outputs = clone_replace(outputs, dict(zip(parts, part_inputs)))
        # TensorType, not pt.tensor: pt.tensor refuses a name that NumPy parses as a dtype
        # (bambi's "1|g_offset").
        batched_parts = [
            pt.TensorType(dtype=part.dtype, shape=(None, *part.type.shape))(name=part.name) for part in part_inputs
        ]
        uniforms = pt.tensor("uniforms", dtype="float64", shape=(None, *uniform_shape))
        batched_arguments = [pt.tensor(dtype=a.dtype, shape=(None, *a.type.shape)) for a in arguments]
        batched_outputs = vectorize_graph(
            outputs,
            replace={
                **dict(zip(part_inputs, batched_parts)),
                uniform: uniforms,
                **dict(zip(arguments, batched_arguments)),
            },
        )
        self._function = compile_function(
            [*new_inputs, *batched_parts, uniforms, *batched_arguments, *generators],
            batched_outputs,
            on_unused_input="ignore",
            trust_input=True,
        )
        self.uniforms = stratified_uniforms(self.n_draws, seed)
        n_streams = self.n_generators if n_streams is None else n_streams
        self._stream_keys = _philox_keys([seed, RANDOM_STREAMS], n_streams)
        self._row_stream_keys = _philox_keys([seed, JOINT_DRAWS, 2], n_streams)
        self._input_dtypes = [c.dtype for c in containers]
        self._lock = threading.Lock()

    def input_arrays(self, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """``inputs`` as contiguous arrays of the dtypes the compiled function takes."""
        return {
            name: np.ascontiguousarray(inputs[name], dtype=dtype)
            for name, dtype in zip(self.input_names, self._input_dtypes)
        }

    def evaluate(
        self,
        inputs: Mapping[str, np.ndarray],
        *arguments: np.ndarray,
        draws: np.ndarray | None = None,
        uniforms: np.ndarray | None = None,
        generators: list[np.random.Generator] | None = None,
    ) -> list[np.ndarray]:
        """The compiled function's outputs, each with a leading draw axis, for the rows of ``inputs``.

        ``arguments`` are the values of the per-draw ``arguments`` given at construction
        (one per draw evaluated), and ``draws`` the indices of the posterior draws to
        evaluate (all by default). ``uniforms`` replace the draws' stratified uniforms
        (draws x rows for a predictor with ``per_row_uniforms``). Random variables draw
        from ``generators``, by default new :meth:`generators`.
        """
        arrays = self.input_arrays(inputs)
        per_draw = self._draws if draws is None else [values[draws] for values in self._draws]
        if uniforms is None:
            uniforms = self.uniforms if draws is None else self.uniforms[draws]
        generators = self.generators() if generators is None else generators
        with self._lock:
            return self._function(*arrays.values(), *per_draw, uniforms, *arguments, *generators)

    def generators(self) -> list[np.random.Generator]:
        """One generator per random variable left in the outputs, at the start of its stream
        (from the fit's seed): every call draws from the same streams."""
        return [np.random.Generator(np.random.Philox(key=key)) for key in self._stream_keys]

    def joint_draw_indices(self, n_joint: int) -> np.ndarray:
        """The posterior draws behind ``n_joint`` joint draws: the first ``n_joint`` of a
        shuffle seeded by the fit's seed (so joint draw ``j`` is the same posterior draw
        whatever ``n_joint``, and draws of several chains mix)."""
        rng = np.random.default_rng([self.seed, JOINT_DRAWS, 0])
        return rng.permutation(self.n_draws)[:n_joint]

    def joint_uniforms(self, n_rows: int, n_joint: int) -> np.ndarray:
        """Independent uniforms, ``n_joint`` per row (draws x rows): row ``i``'s depend on
        ``i`` and ``n_joint`` alone, not on the other rows of the request."""
        rng = np.random.default_rng([self.seed, JOINT_DRAWS, 1])
        return np.ascontiguousarray(rng.uniform(size=(n_rows, n_joint)).T)

    def row_generators(self, row: int) -> list[np.random.Generator]:
        """Generators of the random variables left in the outputs for the joint draws of the
        request's row ``row``: a stream of its own per row (Philox jumped ``row`` times)."""
        return [np.random.Generator(np.random.Philox(key=key).jumped(row)) for key in self._row_stream_keys]

    def __call__(self, inputs: Mapping[str, np.ndarray]) -> list[np.ndarray]:
        """All outputs, each with a leading draw axis, for the rows of ``inputs``."""
        return self.evaluate(inputs)

    def row_chunks(self, n_rows: int, *, width: int = 1, n_draws: int | None = None) -> list[slice]:
        """Row ranges small enough that ``n_draws`` (all by default) x rows x ``width``
        elements, times :attr:`row_width`, stay within :data:`MAX_ELEMENTS_PER_CHUNK`."""
        n_draws = self.n_draws if n_draws is None else n_draws
        rows_per_chunk = max(1, MAX_ELEMENTS_PER_CHUNK // (max(n_draws, 1) * width * self.row_width))
        return [slice(start, start + rows_per_chunk) for start in range(0, max(n_rows, 1), rows_per_chunk)]

    def map_rows(
        self,
        inputs: Mapping[str, np.ndarray],
        summarize: Callable[[list[np.ndarray]], Mapping[str, np.ndarray]],
        *,
        width: int = 1,
    ) -> dict[str, np.ndarray]:
        """Summaries over the draws, computed in row chunks so memory stays bounded.

        Parameters
        ----------
        inputs : mapping of str to ndarray
            New inputs; all share their first (row) axis.
        summarize : callable
            Turns one chunk's outputs (leading draw axis) into arrays with a leading row
            axis.
        width : int
            Elements per row and draw in the largest output (e.g. the number of classes).
            Chunks also shrink with ``row_width``, the widest axis of the arrays
            precomputed per draw (a Gaussian process's training rows).
        """
        n_rows = len(next(iter(inputs.values())))
        chunks = []
        for rows in self.row_chunks(n_rows, width=width):
            chunks.append(summarize(self(select_rows(inputs, rows))))
        return {key: np.concatenate([c[key] for c in chunks]) for key in chunks[0]}
