"""Describing a fitted model for its run: priors, structure, graph, seed, versions, data shape."""

from __future__ import annotations

import importlib.util
import inspect
import re
import shutil
from typing import Any

import numpy as np
import pymc as pm
import pytensor.tensor as pt
from pytensor.graph.basic import Constant
from pytensor.graph.traversal import ancestors
from pytensor.tensor.random.op import RandomVariable

from estimators.base import BayesianEstimator
from mlflow_pmlearn.autologging.failures import warn
from mlflow_pmlearn.versions import DISTRIBUTION, library_versions


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
            p
            for p in inspect.signature(type(op).__call__).parameters
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
            else:  # a constant (read directly), or an expression of constants (evaluated once, with NumPy)
                shown = _format_value(param.data if isinstance(param, Constant) else param.eval(mode="FAST_COMPILE"))
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


#: What MLflow refuses in a parameter's name: all but alphanumerics, ``_ - . : /`` and spaces.
_NOT_IN_PARAM_KEYS = re.compile(r"[^\w\-.:/ ]")


def param_key(name: str) -> str:
    """A variable's name as an MLflow parameter key: each character MLflow refuses (bambi's
    ``|`` in ``1|g_sigma``) becomes ``:`` (``1:g_sigma``)."""
    return _NOT_IN_PARAM_KEYS.sub(":", name)


def _versions() -> dict[str, str]:
    versions = library_versions(("pymc", "pytensor", "arviz", DISTRIBUTION))
    return {f"version.{name}": found or "unknown" for name, found in versions.items()}


def bayesian_params(estimator: BayesianEstimator, model: pm.Model, seed: int | None, X: Any) -> dict[str, Any]:
    """Priors, model structure, the seed used, versions and the training data shape.

    ``model`` is the estimator's PyMC model over ``X`` and ``seed`` the fit's seed: known once
    the model is built, before the engine starts. Every key has a dotted prefix (``prior.``,
    ``model.``, ...), so these never collide with the hyper-parameters of an estimator or of a
    scikit-learn meta-estimator.
    """
    params: dict[str, Any] = {f"prior.{param_key(rv.name)}": describe_prior(rv, model) for rv in model.free_RVs}
    params.update(model_structure(model))
    params["model.estimator_class"] = f"{type(estimator).__module__}.{type(estimator).__qualname__}"
    # The seed the fit drew when random_seed=None: with it, the fit can be repeated exactly.
    params["inference.seed"] = seed
    params.update(_versions())
    params["training.rows"], params["training.columns"] = _shape(X)
    return params


def _shape(X: Any) -> tuple[int, int]:
    shape = np.shape(X)
    return int(shape[0]), int(np.prod(shape[1:], dtype=int))


def model_graph(model: pm.Model) -> tuple[str, bytes]:
    """The model graph as PNG (graphviz, where installed) or as text."""
    if importlib.util.find_spec("graphviz") is not None and shutil.which("dot") is not None:
        try:
            return "model_graph.png", pm.model_to_graphviz(model).pipe(format="png")
        except Exception as error:  # a graphviz that fails: the text below still describes the model
            warn("the model graph as PNG (logged as text instead)", error)
    return "model_graph.txt", str(model.str_repr()).encode()
