"""PyTensor compiles an estimator's code once, not once per training set.

Statistics of the training data (means, scales) enter the models as shared values, not
literal constants: PyTensor keys its caches of compiled code (Numba functions, PyTensor 3's
default backend, and C modules) by the values of a graph's constants, so a literal
training mean would make every fit on new data compile afresh (seconds per fit, and a
minute or more on a cold cache).
"""

from __future__ import annotations

import numpy as np
import pytest
from numba.core import dispatcher as numba_dispatcher
from pytensor.link.c.cmodule import GCC_compiler
from sklearn.base import is_classifier, is_regressor

from family_helpers import every_estimator

TINY = {"n_draws": 10, "max_iter": 30, "random_seed": 0, "progressbar": False}


def _training_set(estimator, seed: int):
    """40 rows of 3 features whose location and scale depend on ``seed``; ``y`` as the estimator needs."""
    rng = np.random.default_rng(seed)
    X = rng.normal(loc=rng.normal(scale=5.0), scale=rng.uniform(0.5, 5.0), size=(40, 3))
    X[:, 0] = np.arange(40) % 3  # the hierarchical model's group column
    response = X[:, 1] * rng.uniform(1.0, 3.0) + rng.normal(size=40) + rng.normal(scale=5.0)
    if is_regressor(estimator):
        return X, response
    if is_classifier(estimator):
        return X, (response > np.median(response)).astype(int)
    return X, None


@pytest.mark.parametrize("estimator", every_estimator(**TINY), ids=lambda estimator: type(estimator).__name__)
def test_refit_on_new_data_compiles_no_new_code(estimator, monkeypatch):
    X, y = _training_set(estimator, seed=1)
    estimator.fit(X, y).predict(X)  # compiles, or finds in the caches, everything the estimator needs

    compiled = []
    c_compile = GCC_compiler.compile_str
    monkeypatch.setattr(
        GCC_compiler, "compile_str", staticmethod(lambda name, *a, **k: compiled.append(name) or c_compile(name, *a, **k))
    )
    # Numba runs its compiler pipeline only for a function that is in neither cache.
    numba_compile = numba_dispatcher.compiler.compile_extra
    monkeypatch.setattr(
        numba_dispatcher.compiler,
        "compile_extra",
        lambda typing, target, function, *a, **k: compiled.append(function.__name__) or numba_compile(typing, target, function, *a, **k),
    )
    X_new, y_new = _training_set(estimator, seed=2)
    estimator.fit(X_new, y_new).predict(X_new)

    assert compiled == [], f"fitting on new data compiled {len(compiled)} new function(s): {compiled[:5]}"
