"""Processes killed half-way: a save, and a fit under autolog.

A model directory is either absent or complete: ``save_model`` writes into a hidden
temporary directory beside the target (``.<name>.saving-*``) and renames it into place. A
process killed while it saves leaves no target, or a complete one; the temporary directory
it may leave is never taken for a model, and ``save_model`` does not delete such leftovers
by itself (it cannot tell one from a save another process is making now).

A fit under autolog that is killed leaves a tracking store that opens and a run that is not
FINISHED, with no model logged and no version registered. After SIGKILL, or a SIGTERM the
application does not handle, the process runs no more code, so the run stays RUNNING (what
MLflow does for every flavor: nothing in the process can mark it). Ctrl-C (SIGINT) and a
SIGTERM the application turns into ``SystemExit`` do run Python code: the run is marked
FAILED (KeyboardInterrupt, by MLflow's managed run) or KILLED (SystemExit, by pmlearn's
autolog) and nothing more is logged: the run keeps what was logged while the fit ran (its
settings and priors, its progress).
"""

from __future__ import annotations

import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import mlflow
import pytest
from conftest import FAST
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

import mlflow_pmlearn
from estimators.linear_model import LinearRegression

pytestmark = pytest.mark.slow  # each case starts a Python process (and kills it)

REPO = Path(__file__).resolve().parents[2]
POLL_SECONDS = 0.005


def _child_env(**variables: str) -> dict[str, str]:
    """This environment without any ``MLFLOW_*`` variable (the session's store among them), plus ``variables``."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("MLFLOW_")}
    return {**env, **variables}


@pytest.fixture
def start():
    """Start ``python -c script *args``; whatever happens in the test, the process ends with it."""
    processes: list[subprocess.Popen] = []

    def start_process(script: str, *args: str, env: dict[str, str] | None = None, cwd: Path = REPO) -> subprocess.Popen:
        process = subprocess.Popen(
            [sys.executable, "-c", script, *args],
            cwd=cwd,
            env=env or _child_env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        processes.append(process)
        return process

    yield start_process
    for process in processes:
        if process.poll() is None:
            process.kill()
            process.communicate()


def _wait_for(condition: Callable[[], bool], process: subprocess.Popen, what: str, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if process.poll() is not None:
            raise AssertionError(f"the process ended before {what}: {process.stdout.read()[-3000:]}")
        if time.monotonic() > deadline:
            process.kill()
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(POLL_SECONDS)


def _kill(process: subprocess.Popen, signal_number: int = signal.SIGKILL) -> str:
    """Send the signal and wait for the process to end; return its output."""
    process.send_signal(signal_number)
    try:
        return process.communicate(timeout=60)[0]
    except subprocess.TimeoutExpired:
        process.kill()
        raise AssertionError(
            f"the process outlived signal {signal_number}: {process.communicate()[0][-2000:]}"
        ) from None


def _press_ctrl_c(process: subprocess.Popen, iterating: Path, *, presses: int = 3) -> str:
    """Ctrl-C as a user presses it: again only while the fit still iterates; return the output.

    On one core PyMC samples the chains one after the other, and Ctrl-C stops only the
    chain being sampled. A press is repeated only when the ``iterating`` file, removed a
    second after the press, is touched again: never while the process is shutting down
    (where a second KeyboardInterrupt would only disturb its clean-up).
    """
    for _ in range(presses):
        process.send_signal(signal.SIGINT)
        time.sleep(1.0)
        iterating.unlink(missing_ok=True)
        _wait_for(lambda: process.poll() is not None or iterating.exists(), process, "the fit to stop or go on")
        if process.poll() is not None:
            return process.communicate()[0]
    return _kill(process)


# -- a save killed half-way -------------------------------------------------------------------

SAVE = """
import sys, time
import xarray as xr
import mlflow_pmlearn

source, target, stall = sys.argv[1:]
model = mlflow_pmlearn.load_model(source)
if stall == "after-trace":  # hold the save still once the trace is written, to kill it there
    write = xr.DataTree.to_netcdf
    def write_then_stall(self, *args, **kwargs):
        result = write(self, *args, **kwargs)
        time.sleep(60)
        return result
    xr.DataTree.to_netcdf = write_then_stall
print("SAVING", flush=True)
mlflow_pmlearn.save_model(model, target)
print("SAVED", flush=True)
"""


@pytest.fixture(scope="module")
def source_model(regression_data, tmp_path_factory) -> Path:
    X, y, _ = regression_data
    path = tmp_path_factory.mktemp("source") / "model"
    mlflow_pmlearn.save_model(LinearRegression(**FAST).fit(X.iloc[:100], y.iloc[:100]), path)
    return path


def _staging_dirs(parent: Path, name: str) -> list[Path]:
    return sorted(parent.glob(f".{name}.saving-*"))


#: When to kill the saving process: as soon as its temporary directory appears; once the
#: trace is written into it (the save held there); a little after it appears (wherever
#: the save has got to).
KILL_POINTS = {
    "staging appears": ("none", lambda staging: True, 0.0),
    "trace written": ("after-trace", lambda staging: (staging / "estimator" / "trace.nc").is_file(), 0.2),
    "0.3 s into the save": ("none", lambda staging: True, 0.3),
}


@pytest.mark.parametrize("point", list(KILL_POINTS))
def test_save_killed_midway_leaves_no_model_or_a_complete_one(start, source_model, tmp_path, point):
    stall, ready, delay = KILL_POINTS[point]
    parent = tmp_path / "models"
    parent.mkdir()
    target = parent / "model"
    process = start(SAVE, str(source_model), str(target), stall)
    _wait_for(lambda: bool(_staging_dirs(parent, "model")) or target.exists(), process, "the save to start")
    if not target.exists():
        (staging,) = _staging_dirs(parent, "model")
        _wait_for(lambda: ready(staging), process, f"{point}")
    time.sleep(delay)
    output = _kill(process)

    assert "SAVED" not in output or point == "0.3 s into the save", output
    if target.exists():  # the rename happened before the kill: a complete model
        loaded = mlflow_pmlearn.load_model(str(target))
        assert loaded.get_params() == mlflow_pmlearn.load_model(str(source_model)).get_params()
    else:
        with pytest.raises(MlflowException):
            mlflow_pmlearn.load_model(str(target))

    # Whatever is left beside the target is hidden and named as a save in progress.
    leftovers = [path for path in parent.iterdir() if path != target]
    assert all(path.name.startswith(".model.saving-") for path in leftovers), leftovers
    if point == "trace written":  # held there: certainly half-written
        assert not target.exists()
        (leftover,) = leftovers
        assert (leftover / "estimator" / "trace.nc").is_file() and not (leftover / "MLmodel").exists()
        with pytest.raises(MlflowException):
            mlflow.pyfunc.load_model(str(leftover))
        # The next save to the same target is not disturbed by the leftover.
        mlflow_pmlearn.save_model(mlflow_pmlearn.load_model(str(source_model)), target)
        assert mlflow_pmlearn.load_model(str(target)).n_features_in_ == 3


# -- a fit under autolog killed half-way ----------------------------------------------------

AUTOLOGGED_FIT = """
import pathlib, signal, sys, warnings
warnings.filterwarnings("ignore")
import numpy as np
import pymc as pm
import mlflow_pmlearn
from estimators.inference import advi
from estimators.linear_model import LinearRegression

handling, name, method = sys.argv[1:]
# Ctrl-C as a terminal's foreground process gets it, whatever the test process passed on:
# an ignored SIGINT is inherited (and Python then installs no KeyboardInterrupt handler).
signal.signal(signal.SIGINT, signal.default_int_handler)
signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})
if handling == "sigterm-exits":  # what many applications do: SIGTERM -> SystemExit
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))

def tell(*args, **kwargs):  # a file says that the ADVI loop or the NUTS sampling is running
    pathlib.Path("iterating").touch()
# ADVI: the plateau schedule replaced (it never converges); NUTS: a callback at every draw.
advi.PlateauSchedule.__call__ = tell
sample = pm.sample

def sample_telling(*args, callback=None, **kwargs):  # autolog passes its own progress callback
    def both(**draw):
        tell()
        if callback is not None:
            callback(**draw)
    return sample(*args, callback=both, **kwargs)

pm.sample = sample_telling
mlflow_pmlearn.autolog(registered_model_name=name, log_plots=False)
rng = np.random.default_rng(0)
X = rng.normal(size=(200, 3))
y = X @ [1.0, -2.0, 0.5] + rng.normal(size=200)
print("FITTING", flush=True)
# Far more iterations or draws than the test waits for.
settings = {"max_iter": 10_000_000, "n_draws": 50} if method == "advi" else {"n_tune": 100, "n_draws": 1_000_000}
LinearRegression(inference=method, random_seed=0, progressbar=False, **settings).fit(X, y)
print("FITTED", flush=True)
"""

#: (signal, how the child treats it, inference method, the run status it must end with).
KILLS = {
    "SIGKILL": (signal.SIGKILL, "default", "advi", "RUNNING"),
    "SIGTERM, unhandled": (signal.SIGTERM, "default", "advi", "RUNNING"),
    "SIGTERM raising SystemExit": (signal.SIGTERM, "sigterm-exits", "advi", "KILLED"),
    "SIGINT (Ctrl-C) during ADVI": (signal.SIGINT, "default", "advi", "FAILED"),
    "SIGINT (Ctrl-C) during NUTS": (signal.SIGINT, "default", "nuts", "FAILED"),
}


@pytest.fixture(scope="module")
def empty_store(tmp_path_factory) -> Path:
    """An sqlite store with its tables made (which takes seconds), copied for each test."""
    path = tmp_path_factory.mktemp("store") / "mlflow.db"
    MlflowClient(tracking_uri=f"sqlite:///{path}").search_experiments()
    return path


def _sqlite_store(empty_store: Path, directory: Path) -> tuple[str, MlflowClient, str]:
    """A fresh copy of the store, before any child opens it, and an experiment in it."""
    shutil.copyfile(empty_store, directory / "mlflow.db")
    uri = f"sqlite:///{directory / 'mlflow.db'}"
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    experiment_id = client.create_experiment("killed", artifact_location=(directory / "artifacts").as_uri())
    return uri, client, experiment_id


@pytest.mark.parametrize("kill", list(KILLS))
def test_autologged_fit_killed_midway_leaves_a_consistent_store_and_no_model(start, empty_store, tmp_path, kill):
    signal_number, handling, method, expected_status = KILLS[kill]
    uri, client, experiment_id = _sqlite_store(empty_store, tmp_path)
    name = "killed-model"
    process = start(
        AUTOLOGGED_FIT,
        handling,
        name,
        method,
        cwd=tmp_path,
        env=_child_env(MLFLOW_TRACKING_URI=uri, MLFLOW_EXPERIMENT_ID=experiment_id),
    )

    _wait_for((tmp_path / "iterating").exists, process, "the ADVI loop or the sampling to start")
    time.sleep(0.5)  # well into the loop, which would run for minutes
    if signal_number == signal.SIGINT:
        output = _press_ctrl_c(process, tmp_path / "iterating")
    else:
        output = _kill(process, signal_number)
    assert "FITTED" not in output, output

    with sqlite3.connect(tmp_path / "mlflow.db") as connection:
        assert connection.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    reopened = MlflowClient(tracking_uri=uri, registry_uri=uri)
    (run,) = reopened.search_runs([experiment_id])
    # The status tag says how far the child's own handling got (its output is shortened by pytest).
    assert run.info.status == expected_status, (kill, run.info.status, run.data.tags.get("pmlearn.status"), output)
    assert reopened.search_logged_models(experiment_ids=[experiment_id]) == []
    assert reopened.search_registered_models() == []
    assert reopened.search_model_versions(f"name='{name}'") == []
    assert not any(artifact.path == "model" for artifact in reopened.list_artifacts(run.info.run_id))
    # Logged before the engine started: the settings, the priors, the data shape, the status.
    assert {"max_iter" if method == "advi" else "n_draws", "prior.coef_std", "training.rows"} <= set(run.data.params)
    if expected_status == "RUNNING":
        assert run.data.tags["pmlearn.status"].startswith("fitting: "), run.data.tags
    else:  # the run says where the fit stopped, with its progress so far
        expected_error = "SystemExit" if expected_status == "KILLED" else "KeyboardInterrupt"
        assert expected_error in run.data.tags.get("pmlearn.fit_error", ""), run.data.tags
        assert run.data.tags["pmlearn.status"] == ("killed" if expected_status == "KILLED" else "interrupted")
        progress = "progress/iterations" if method == "advi" else "progress/draws"
        assert reopened.get_metric_history(run.info.run_id, progress), run.data.metrics
