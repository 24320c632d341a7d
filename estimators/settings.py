"""The inference settings every estimator takes, declared once: defaults, valid values and docs.

:class:`InferenceSettings` is the declaration. The base estimator's ``__init__`` signature,
its ``_parameter_constraints``, the Parameters section of its docstring and the settings
object a fit runs with are all derived from it.
"""

from __future__ import annotations

import dataclasses
import inspect
import os
import textwrap
from numbers import Integral, Real
from typing import Any

from sklearn.utils._param_validation import Interval, Options, StrOptions

INFERENCE_METHODS = ("advi", "fullrank_advi", "nuts", "pathfinder", "laplace")
NUTS_SAMPLERS = ("pymc", "nutpie", "numpyro", "blackjax")


#: The inference methods a setting applies to (``_DISPLAY``: none, it changes only what is shown).
_ALL, _ADVI, _NUTS, _DISPLAY = INFERENCE_METHODS, ("advi", "fullrank_advi"), ("nuts",), ()


def _setting(default: Any, constraints: list, kind: str, doc: str, applies_to: tuple[str, ...] = _ALL) -> Any:
    metadata = {"constraints": constraints, "kind": kind, "doc": doc, "applies_to": applies_to}
    return dataclasses.field(default=default, metadata=metadata)


@dataclasses.dataclass(frozen=True)
class InferenceSettings:
    """How an estimator is fitted: its inference settings, as given to ``__init__``."""

    inference: str = _setting(
        "nuts",
        [StrOptions(set(INFERENCE_METHODS))],
        "{" + ", ".join(f'"{name}"' for name in INFERENCE_METHODS) + "}",
        "How to fit: NUTS, run by ``nuts_sampler`` (the default: the exact posterior); ADVI "
        "(mean-field or full-rank) stopped when the loss converges, the choice for large data "
        "with minibatches; multi-path pathfinder; or the Laplace approximation (a Gaussian at "
        "the posterior mode, on the unconstrained space).",
    )
    nuts_sampler: str = _setting(
        "pymc",
        [StrOptions(set(NUTS_SAMPLERS))],
        "{" + ", ".join(f'"{name}"' for name in NUTS_SAMPLERS) + "}",
        "The NUTS implementation, as in ``pm.sample``: PyMC's own (the fastest measured "
        'here: it compiles a model once, nutpie at every fit), nutpie (the "nutpie" extra), or '
        'NumPyro or BlackJAX (the "jax" extra).',
        _NUTS,
    )
    n_draws: int = _setting(
        1000,
        [Interval(Integral, 1, None, closed="left")],
        "int",
        "Posterior draws kept: per NUTS chain, or in all from an approximation (ADVI, pathfinder, Laplace).",
    )
    n_tune: int = _setting(
        1000, [Interval(Integral, 0, None, closed="left")], "int", "NUTS tuning steps per chain.", _NUTS
    )
    n_chains: int = _setting(2, [Interval(Integral, 1, None, closed="left")], "int", "NUTS chains.", _NUTS)
    n_jobs: int | None = _setting(
        None,
        [Interval(Integral, 1, None, closed="left"), Options(Integral, {-1}), None],
        "int or None",
        "NUTS chains run at once, each in a process of its own (PyMC's sampler; nutpie's "
        "threads); -1: one per chain, up to the CPUs this process may use; None: PyMC's "
        "choice, half the logical CPUs up to 4 (one at a time on 2). The draws for a seed "
        "are the same whatever it is.",
        _NUTS,
    )
    max_iter: int = _setting(
        20_000,
        [Interval(Integral, 1, None, closed="left")],
        "int",
        "Most ADVI iterations, if the loss has not converged before.",
        _ADVI,
    )
    tol: float = _setting(
        1e-4,
        [Interval(Real, 0, None, closed="neither")],
        "float",
        "ADVI plateau threshold: when the mean loss of the last 100 iterations improves on the "
        "100 before by less than this fraction, the learning rate is divided by ten; at the "
        "third plateau the fit has converged and stops.",
        _ADVI,
    )
    learning_rate: float = _setting(
        0.05, [Interval(Real, 0, None, closed="neither")], "float", "Initial Adam learning rate of ADVI.", _ADVI
    )
    random_seed: int | None = _setting(
        None,
        [Interval(Integral, 0, 2**32 - 1, closed="both"), None],
        "int or None",
        "Seed of the fit and of the predictive draws; the same seed gives the same posterior and predictions.",
    )
    progressbar: bool | None = _setting(
        None,
        ["boolean", None],
        "bool or None",
        "PyMC's progress bar; by default shown only when standard error is a terminal.",
        _DISPLAY,
    )

    @classmethod
    def of(cls, estimator: Any, **resolved: Any) -> InferenceSettings:
        """The settings of ``estimator`` (its attributes), with ``resolved`` values in place."""
        return cls(**{name: getattr(estimator, name) for name in SETTING_NAMES} | resolved)

    def chain_processes(self) -> int | None:
        """``n_jobs`` as PyMC's ``cores``: -1 resolved to the chains this machine can run at once."""
        if self.n_jobs != -1:
            return self.n_jobs
        available = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
        return min(self.n_chains, available)


_FIELDS = dataclasses.fields(InferenceSettings)
SETTING_NAMES = tuple(field.name for field in _FIELDS)
PARAMETER_CONSTRAINTS = {field.name: field.metadata["constraints"] for field in _FIELDS}
#: The settings as keyword-only ``__init__`` parameters, with their defaults.
INIT_PARAMETERS = tuple(
    inspect.Parameter(field.name, inspect.Parameter.KEYWORD_ONLY, default=field.default) for field in _FIELDS
)


def settings_that_do_not_apply(inference: str) -> frozenset[str]:
    """The settings that change nothing in a fit by ``inference`` (NUTS's on ADVI, ...) or
    that change only what is shown (``progressbar``): what autolog leaves out."""
    return frozenset(field.name for field in _FIELDS if inference not in field.metadata["applies_to"])


def parameters_doc(indent: str = "    ") -> str:
    """The settings as the entries of a numpydoc Parameters section."""
    entries = []
    for field in _FIELDS:
        default = f'"{field.default}"' if isinstance(field.default, str) else field.default
        entries.append(f"{indent}{field.name} : {field.metadata['kind']}, default={default}")
        entries.append(
            textwrap.fill(field.metadata["doc"], 88, initial_indent=indent * 2, subsequent_indent=indent * 2)
        )
    return "\n".join(entries)
