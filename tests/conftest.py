"""Shared fixtures: a real sqlite MLflow store in a temporary directory, seeded data, fast settings."""

from __future__ import annotations

import os

import mlflow
import numpy as np
import pandas as pd
import pytest
from threadpoolctl import threadpool_limits

# The xdist workers (one per core) and the processes tests start share the cores: thread
# pools of their own would oversubscribe them, and OpenBLAS then slows down by orders of
# magnitude (a 200 x 200 Cholesky factorisation took 0.2 ms alone, 250 ms oversubscribed).
# One BLAS/OpenMP thread per process, here and (through the environment) in its children.
#: The variables that set BLAS's and OpenMP's thread counts (users' machines leave them unset).
THREAD_COUNT_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")
for _variable in THREAD_COUNT_VARIABLES:
    os.environ.setdefault(_variable, "1")
threadpool_limits(limits=1)

#: Inference settings that keep the suite inside the CI budget: few draws, capped ADVI
#: (named, so that the tests do not depend on the estimators' default engine).
FAST = {"inference": "advi", "n_draws": 200, "max_iter": 5000, "random_seed": 0, "progressbar": False}
FAST_NUTS = {"inference": "nuts", "n_draws": 200, "n_tune": 300, "n_chains": 2, "random_seed": 0, "progressbar": False}


def raised_from(error: BaseException, cause: BaseException | None = None) -> BaseException:
    """``error`` as Python leaves it after ``raise error from cause``: with its cause and traceback."""
    try:
        raise error from cause
    except BaseException as raised:
        return raised


def isolated_environment(tracking_uri: str | None = None) -> dict[str, str]:
    """This process's environment for a child process, without the ``MLFLOW_*`` variables that
    the suite's fixtures set (tracking and registry URIs, experiment, run), and with
    ``MLFLOW_TRACKING_URI`` set to ``tracking_uri`` when given."""
    environment = {name: value for name, value in os.environ.items() if not name.startswith("MLFLOW_")}
    if tracking_uri is not None:
        environment["MLFLOW_TRACKING_URI"] = tracking_uri
    return environment


@pytest.fixture(scope="session")
def tracking_uri(tmp_path_factory) -> str:
    """One sqlite tracking store and registry for the session (creating its tables is slow)."""
    root = tmp_path_factory.mktemp("mlflow")
    uri = f"sqlite:///{root}/mlflow.db"
    os.environ["MLFLOW_TRACKING_URI"] = uri
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    return uri


@pytest.fixture
def mlflow_experiment(tracking_uri, request, tmp_path) -> str:
    """A fresh experiment per test, its artifacts in the test's temporary directory."""
    name = f"{request.node.nodeid}-{np.random.default_rng().integers(1 << 30)}"
    experiment_id = mlflow.create_experiment(name, artifact_location=(tmp_path / "artifacts").as_uri())
    mlflow.set_experiment(experiment_id=experiment_id)
    yield experiment_id
    if mlflow.active_run() is not None:
        mlflow.end_run()


@pytest.fixture(scope="module")
def spark():
    """A local Spark session on two cores, for the modules that skip without pyspark."""
    from pyspark.sql import SparkSession

    session = (
        SparkSession.builder.master("local[2]")
        .appName("pmlearn-tests")
        .config("spark.driver.host", "127.0.0.1")
        .config("spark.driver.bindAddress", "127.0.0.1")
        .config("spark.ui.enabled", "false")
        .config("spark.sql.shuffle.partitions", "2")
        .getOrCreate()
    )
    yield session
    session.stop()


@pytest.fixture(scope="session")
def regression_data():
    """Seeded linear data with known coefficients: y = 1 + X @ [2, -1, 0.5] + N(0, 0.5)."""
    rng = np.random.default_rng(42)
    X = pd.DataFrame(rng.normal(size=(400, 3)), columns=["x0", "x1", "x2"])
    coef = np.array([2.0, -1.0, 0.5])
    y = 1.0 + X.to_numpy() @ coef + rng.normal(scale=0.5, size=len(X))
    return X, pd.Series(y, name="target"), {"coef": coef, "intercept": 1.0, "sigma": 0.5}


@pytest.fixture(scope="session")
def binary_data():
    """Seeded logistic data: logit p = -0.5 + 1.5 x0 - 1.0 x1."""
    rng = np.random.default_rng(7)
    X = pd.DataFrame(rng.normal(size=(600, 2)), columns=["x0", "x1"])
    logits = -0.5 + X.to_numpy() @ np.array([1.5, -1.0])
    y = np.where(rng.uniform(size=len(X)) < 1 / (1 + np.exp(-logits)), "yes", "no")
    return X, pd.Series(y, name="label"), {"coef": np.array([1.5, -1.0]), "intercept": -0.5}
