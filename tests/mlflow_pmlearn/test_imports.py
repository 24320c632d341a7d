"""Importing the packages imports only what a call needs: optional heavy libraries wait for first use.

Each check runs in a fresh interpreter (this one has imported everything by now).
``benchmarks/imports.py`` measures the time.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

#: Libraries imported on first use only: plotting, Spark, skops, JAX, pymc-extras, bambi.
OPTIONAL = ("matplotlib", "arviz_plots", "skops", "pyspark", "jax", "jaxlib", "pymc_extras", "bambi", "nutpie")
#: Our modules that import some of them, or much of MLflow's evaluation machinery.
OWN_ON_FIRST_USE = (
    "mlflow_pmlearn.autologging",
    "mlflow_pmlearn.evaluation",
    "mlflow_pmlearn.promote",
    "mlflow_pmlearn.spark_groups",
    "estimators.formula",
    "estimators.skpro",
)
FAMILIES = ("linear_model", "gaussian_process", "naive_bayes", "mixture", "neural_network")

_PROBE = """
import json, sys
{statement}
# arviz_base registers JAX with lazy_loader: a module placeholder, loaded on first attribute access.
loaded = [name for name, module in sys.modules.items() if type(module).__name__ != "_LazyModule"]
print(json.dumps(loaded))
"""


def modules_after(statement: str) -> set[str]:
    """The modules (lazy placeholders left out) that ``statement`` leaves imported in a fresh interpreter."""
    probe = _PROBE.format(statement=statement)
    environment = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    output = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, env=environment
    ).stdout
    return set(json.loads(output.splitlines()[-1]))


def optional(modules: set[str]) -> set[str]:
    return {name for name in modules if name.split(".")[0] in OPTIONAL or name.startswith(OWN_ON_FIRST_USE)}


@pytest.fixture(scope="module")
def mlflow_alone() -> set[str]:
    """What ``import mlflow`` imports itself (its schema module imports PySpark's types when installed)."""
    return optional(modules_after("import mlflow"))


@pytest.mark.parametrize(
    "statement",
    [
        "; ".join(f"import estimators.{family}" for family in FAMILIES),
        "import mlflow_pmlearn; " + "; ".join(f"import estimators.{family}" for family in FAMILIES),
    ],
    ids=["estimators", "flavor"],
)
def test_importing_imports_no_optional_library(statement, mlflow_alone):
    assert optional(modules_after(statement)) - mlflow_alone == set()


def test_the_check_sees_an_optional_library_imported():
    """The probe is not blind: a statement that imports plotting and the evaluator is caught."""
    found = optional(modules_after("import mlflow_pmlearn.evaluation; import matplotlib.pyplot"))
    assert {"matplotlib", "mlflow_pmlearn.evaluation"} <= found
