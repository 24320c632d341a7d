"""PyTensor compiles an estimator's code once, not once per training set.

Statistics of the training data (means, scales) enter the models as shared values, not
literal constants: PyTensor keys its caches of compiled code (Numba functions, PyTensor 3's
default backend, and C modules) by the values of a graph's constants, so a literal
training mean would make every fit on new data compile afresh (seconds per fit, and a
minute or more on a cold cache).

The training data are drawn afresh in each run, so a literal statistic is new to any
compile cache, warm or cold, and the check does not depend on what earlier runs compiled.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import cloudpickle
import numpy as np
import pytensor
import pytensor.tensor as pt
import pytest
from family_helpers import every_estimator, training_set
from numba.core import dispatcher as numba_dispatcher
from pytensor.link.c.basic import CLinker

from estimators.compilation import STRICT_NUMBA, reproducible_compilation
from estimators.linear_model import LinearRegression

TINY = {"n_draws": 10, "max_iter": 30, "random_seed": 0, "progressbar": False}


@contextmanager
def compilations() -> Iterator[list[str]]:
    """What PyTensor compiles inside the block, whichever backend is active (cache hits compile nothing).

    A C module is recorded with the start of its graph; a Numba compilation (Numba runs its
    compiler only for a function that is in neither its in-memory nor its on-disk cache)
    with the compiled Python function's name.
    """
    compiled = []
    compile_cmodule = CLinker.compile_cmodule
    numba_compile = numba_dispatcher.compiler.compile_extra

    def recording_c(linker, *args, **kwargs):
        compiled.append(f"C: {str(linker.fgraph)[:300]}")
        return compile_cmodule(linker, *args, **kwargs)

    def recording_numba(typing, target, function, *args, **kwargs):
        compiled.append(f"Numba: {function.__name__}")
        return numba_compile(typing, target, function, *args, **kwargs)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(CLinker, "compile_cmodule", recording_c)
        patch.setattr(numba_dispatcher.compiler, "compile_extra", recording_numba)
        yield compiled


def _compiled_by_fit(estimator, rng: np.random.Generator) -> list[str]:
    """What is compiled to fit ``estimator`` on a new training set and predict its rows."""
    X, y = training_set(estimator, rng)
    with compilations() as compiled:
        estimator.fit(X, y).predict(X)
    return compiled


#: Compiles ``exp(x) * <a new literal>`` under the probe in a fresh interpreter, and prints what it recorded.
_NEW_LITERAL = """
import json, sys
sys.path[:0] = sys.argv[2:]
import numpy as np, pytensor, pytensor.tensor as pt
from test_compilation import compilations
x = pt.dvector("x")
with compilations() as compiled:
    pytensor.function([x], pt.exp(x) * np.random.default_rng().uniform(), mode=sys.argv[1])(np.ones(2))
print(json.dumps(compiled))
"""


@pytest.mark.parametrize(("mode", "backend"), [("NUMBA", "Numba"), ("CVM", "C")])
def test_a_new_literal_compiles_code_the_probe_records(mode, backend):
    """The probe sees compilations on either backend (Numba is PyTensor 3's default, and
    ``PYTENSOR_FLAGS=linker=cvm`` makes it C): a scalar literal new to the caches compiles new code.

    In a fresh interpreter: in one full-suite run, inside a long-lived worker that had run
    other modules first, the C case recorded no compilation (not reproduced alone).
    """
    here = Path(__file__).resolve()
    child = subprocess.run(
        [sys.executable, "-c", _NEW_LITERAL, mode, str(here.parent), str(here.parents[1])],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert child.returncode == 0, child.stderr[-3000:]
    compiled = json.loads(child.stdout.strip().splitlines()[-1])
    assert any(entry.startswith(f"{backend}: ") for entry in compiled), compiled
    if backend == "C":
        assert any("exp" in entry for entry in compiled), compiled


@pytest.mark.parametrize("estimator", every_estimator(**TINY), ids=lambda estimator: type(estimator).__name__)
def test_refit_on_new_data_compiles_no_new_code(estimator):
    entropy = np.random.SeedSequence().entropy
    rng = np.random.default_rng(entropy)
    _compiled_by_fit(estimator, rng)  # compiles, or finds in the caches, everything the estimator needs

    compiled = _compiled_by_fit(estimator, rng)
    if compiled:
        # PyTensor's graph rewrites are not deterministic (pymc-devs/pytensor#1581): on a
        # cold cache a refit can compile a variant of a data-independent graph, once. A
        # literal training statistic compiles again on every new training set.
        compiled_again = _compiled_by_fit(estimator, rng)
        assert compiled_again == [], (
            f"each of two fits on new data compiled new code ({len(compiled)}, then "
            f"{len(compiled_again)} function(s); data from np.random.default_rng({entropy})): "
            f"{compiled_again[:5]}"
        )


#: Loads a pickled PyTensor function in a fresh interpreter (fast-math on by default there) and prints its sum.
_LOAD_AND_SUM = """
import pickle, sys
import numpy as np
function = pickle.loads(open(sys.argv[1], "rb").read())
print(repr(float(function(np.load(sys.argv[2])))))
"""


def test_a_function_compiled_strictly_compiles_strictly_in_the_process_that_unpickles_it(tmp_path):
    """What PyMC's parallel chains rely on: each worker unpickles the sampler and compiles it
    afresh. With ``STRICT_NUMBA`` it compiles without fast-math there too, and a sum keeps
    its order; compiled strictly in this process by the default mode, it would not."""
    # Left to right: 3069.001; reassociated into partial sums, as fast-math lets LLVM, not.
    values = np.tile([1e16, 1.0, -1e16, 1.0, 3.0, -2.0, 1e-3, 7.0], 256)
    in_order = 0.0
    for value in values:
        in_order += value
    np.save(tmp_path / "values.npy", values)
    x = pt.dvector("x")
    sums = {}
    for name, mode in (("strict", STRICT_NUMBA), ("default", None)):
        with reproducible_compilation():
            function = pytensor.function([x], x.sum(), mode=mode)
        assert function(values) == in_order
        (tmp_path / name).write_bytes(cloudpickle.dumps(function))
        child = subprocess.run(
            [sys.executable, "-c", _LOAD_AND_SUM, str(tmp_path / name), str(tmp_path / "values.npy")],
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert child.returncode == 0, child.stderr[-3000:]
        sums[name] = float(child.stdout.strip().splitlines()[-1])
    assert sums["strict"] == in_order
    assert sums["default"] != in_order  # the check can fail: the default mode takes fast-math there


def test_fits_on_threads_leave_pytensors_default_mode_as_it_was():
    """PyTensor sets its process-wide ``mode`` flag to each graph's mode while rewriting it;
    fits compiling at once on threads restored each other's flags out of order, and left a
    Python VM mode (one of PyMC's internal functions') as the default of every later
    compilation. Our compilations take turns."""
    rng = np.random.default_rng(0)
    X = rng.normal(size=(40, 2))
    y = X @ [1.0, 2.0] + rng.normal(size=40)
    before = pytensor.config.mode

    def fit_and_predict(seed: int) -> np.ndarray:
        return LinearRegression(**{**TINY, "random_seed": seed}, inference="advi").fit(X, y).predict(X)

    with ThreadPoolExecutor(4) as pool:
        predictions = list(pool.map(fit_and_predict, range(4)))
    assert pytensor.config.mode == before
    # Each thread's fit is its own: the same seed alone gives the same predictions.
    np.testing.assert_array_equal(predictions[1], fit_and_predict(1))
