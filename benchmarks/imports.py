"""Import time: ``mlflow_pmlearn`` and a built-in estimator against MLflow and scikit-learn.

Each statement runs in a fresh interpreter, which reports the seconds of the statement alone
(interpreter start-up is the same on both sides and left out). The statements alternate,
``REPEATS`` times each, and the medians are kept.

- ``ours``: ``import mlflow_pmlearn; from estimators.linear_model import LinearRegression``.
- ``mlflow + sklearn``: ``import mlflow; from sklearn.linear_model import LinearRegression``,
  the comparison the target is set against (``ours`` within 1.2x).
- ``mlflow + sklearn + pymc``: the same and ``import pymc``, the floor of any flavor whose
  models are fitted with PyMC: what ``ours`` costs beyond it is the flavor's own.
- ``estimators`` alone against ``sklearn`` alone, with and without PyMC.

Each fresh ``ours`` process also lists which optional heavy libraries it imported (plotting,
Spark, skops, JAX, pymc-extras): none should be.

Run from the repository root::

    python -m benchmarks.imports     # prints a table, writes imports.json (42 fresh interpreters: minutes on 2 cores)
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

if not __package__:  # run as a script: the repository root, for ``benchmarks``
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks import write_results  # noqa: E402 (after the path above)

RESULTS = Path(__file__).with_name("imports.json")
REPEATS = 7
TARGET = 1.2
#: Imported on first use only; ``sys.modules`` entries that are ``lazy_loader`` placeholders do not count.
OPTIONAL = ("matplotlib", "arviz_plots", "skops", "pyspark.ml", "jax", "pymc_extras", "mlflow_pmlearn.evaluation")
OURS = "import mlflow_pmlearn; from estimators.linear_model import LinearRegression"
STATEMENTS = {
    "ours": OURS,
    "mlflow + sklearn": "import mlflow; from sklearn.linear_model import LinearRegression",
    "mlflow + sklearn + pymc": "import mlflow; from sklearn.linear_model import LinearRegression; import pymc",
    "estimators": "from estimators.linear_model import LinearRegression",
    "sklearn": "from sklearn.linear_model import LinearRegression",
    "sklearn + pymc": "from sklearn.linear_model import LinearRegression; import pymc",
}
_PROBE = """
import importlib.util, json, sys, time
start = time.perf_counter()
exec({statement!r})
seconds = time.perf_counter() - start
loaded = [name for name in {optional!r} if name in sys.modules
          and not isinstance(sys.modules[name], importlib.util._LazyModule)]
print(json.dumps({{"seconds": seconds, "loaded": loaded}}))
"""


def imported(statement: str) -> dict:
    """Seconds of ``statement`` in a fresh interpreter, and the optional libraries it imported."""
    probe = _PROBE.format(statement=statement, optional=OPTIONAL)
    output = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout
    return json.loads(output.splitlines()[-1])


def main() -> None:
    runs: dict[str, list[dict]] = {name: [] for name in STATEMENTS}
    for _ in range(REPEATS):
        for name, statement in STATEMENTS.items():
            runs[name].append(imported(statement))
    seconds = {name: statistics.median(run["seconds"] for run in runs[name]) for name in STATEMENTS}
    loaded = sorted({module for run in runs["ours"] for module in run["loaded"]})
    rows = [
        {
            "ours": "mlflow_pmlearn + estimators LinearRegression",
            "ours_s": seconds["ours"],
            "theirs": "mlflow + sklearn LinearRegression",
            "theirs_s": seconds["mlflow + sklearn"],
            "ratio": seconds["ours"] / seconds["mlflow + sklearn"],
            "target": f"<= {TARGET}",
        },
        {
            "ours": "mlflow_pmlearn + estimators LinearRegression",
            "ours_s": seconds["ours"],
            "theirs": "mlflow + sklearn LinearRegression + pymc (the floor of a PyMC flavor)",
            "theirs_s": seconds["mlflow + sklearn + pymc"],
            "ratio": seconds["ours"] / seconds["mlflow + sklearn + pymc"],
        },
        {
            "ours": "estimators LinearRegression",
            "ours_s": seconds["estimators"],
            "theirs": "sklearn LinearRegression",
            "theirs_s": seconds["sklearn"],
            "ratio": seconds["estimators"] / seconds["sklearn"],
        },
        {
            "ours": "estimators LinearRegression",
            "ours_s": seconds["estimators"],
            "theirs": "sklearn LinearRegression + pymc",
            "theirs_s": seconds["sklearn + pymc"],
            "ratio": seconds["estimators"] / seconds["sklearn + pymc"],
        },
    ]
    print(f"import time in a fresh interpreter, median of {REPEATS} alternating; load {os.getloadavg()[0]:.1f}")
    print(f"{'ours':46s} {'s':>6s}  {'theirs':70s} {'s':>6s} {'ratio':>7s}")
    for row in rows:
        print(
            f"{row['ours']:46s} {row['ours_s']:6.2f}  {row['theirs']:70s} {row['theirs_s']:6.2f} {row['ratio']:6.2f}x"
        )
    print(f"optional libraries imported by ours: {', '.join(loaded) or 'none'}")
    write_results(
        RESULTS,
        repeats=REPEATS,
        load_average=os.getloadavg()[0],
        rows=rows,
        optional_imported=loaded,
        statements=STATEMENTS,
    )


if __name__ == "__main__":
    main()
