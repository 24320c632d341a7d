"""How our PyTensor functions are compiled, so that a seed gives the same floats whatever
the compile cache holds.

PyTensor's default backend, Numba, compiles with LLVM's fast-math flags (``reassoc``,
``contract``, ...: ``pytensor.config.numba__fastmath``) and caches each compiled function
on disk. With those flags, the machine code Numba stores in its cache and loads in a later
process does not compute a sum in the same order as the code it compiled fresh in the
process that stored it, when the function calls other compiled functions (PyTensor's whole
graph calls one function per node). A seeded fit on an empty cache then differed from the
same fit on a warm one in the last bit of the first gradient (the intercept's), and NUTS
carried that into posteriors 1e-3 apart; served predictions differed from in-process ones
in the last bits. Without fast-math, LLVM keeps the order of floating-point operations as
written, and a freshly compiled function and its cached copy agree bit for bit.

The flag is global and read when a function is compiled, so :func:`reproducible_compilation`
sets it only while our fits and predictors compile. A function compiled in another process
(PyMC's parallel NUTS chains unpickle the sampler in worker processes and compile it there)
takes that process's flag; compiled with :data:`STRICT_NUMBA`, it carries the strictness
with it.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

import pytensor
from pytensor.compile.executor import Function
from pytensor.compile.mode import Mode, get_mode
from pytensor.link.numba.linker import NumbaLinker

#: Held by the thread inside :func:`reproducible_compilation`: one compilation at a time.
_compiling = threading.RLock()


@contextmanager
def reproducible_compilation() -> Iterator[None]:
    """Within the block, PyTensor compiles without Numba's fast-math flags, one thread at a time.

    The flag is read when a function is compiled, so it is set only while our fits and
    predictors compile. Fast-math and strict functions have separate cache entries.

    Threads take turns through the block (a re-entrant lock). PyTensor's flags are global to
    the process, and PyTensor sets its ``mode`` flag to the mode of each graph it rewrites:
    two threads compiling at once restore each other's flags out of order, which left the
    mode of one of PyMC's internal functions (a Python VM) as the process's default mode.
    """
    with _compiling, pytensor.config.change_flags(numba__fastmath=False):
        yield


def compile_function(inputs, outputs, **kwargs) -> Function:
    """``pytensor.function(inputs, outputs, **kwargs)``, compiled under :func:`reproducible_compilation`."""
    with reproducible_compilation():
        return pytensor.function(inputs, outputs, **kwargs)


class StrictNumbaLinker(NumbaLinker):
    """PyTensor's Numba linker, compiling as under :func:`reproducible_compilation` wherever it runs.

    A function compiled with :data:`STRICT_NUMBA` carries this linker: unpickled in another
    process (PyMC's parallel chains), it compiles there without fast-math too, as in the
    process that pickled it, so both run the same machine code.
    """

    def fgraph_convert(self, *args, **kwargs):
        with reproducible_compilation():
            return super().fgraph_convert(*args, **kwargs)

    def jit_compile(self, *args, **kwargs):
        with reproducible_compilation():
            return super().jit_compile(*args, **kwargs)


#: PyTensor's Numba mode with :class:`StrictNumbaLinker`.
STRICT_NUMBA = Mode(StrictNumbaLinker(), get_mode("NUMBA").provided_optimizer)


def compiles_with_numba() -> bool:
    """Whether PyTensor's default mode (``pytensor.config.mode``) compiles with Numba."""
    return isinstance(get_mode(None).linker, NumbaLinker)
