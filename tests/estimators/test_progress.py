"""The progress a fit reports to a watcher (``estimators.inference.progress``): its rate, what
each engine reports, and that watching changes nothing in the fit."""

from __future__ import annotations

import time

import numpy as np
import pytest
from conftest import FAST_NUTS

from estimators.inference.progress import ProgressReporter, watching
from estimators.linear_model import LinearRegression


class _Recorder:
    """A watcher that keeps what it is told."""

    def __init__(self, interval_s: float = 0.0):
        self.interval_s = interval_s
        self.started: list = []
        self.reports: list[tuple[float, int, dict]] = []

    def fit_starting(self, estimator, model, settings) -> None:
        self.started.append((estimator, [rv.name for rv in model.free_RVs], settings.inference))

    def progress(self, step: int, values: dict[str, float]) -> None:
        self.reports.append((time.monotonic(), step, values))


def test_reports_come_at_most_once_per_interval():
    recorder = _Recorder(interval_s=0.05)
    with watching(recorder):
        reporter = ProgressReporter()
    step, end = 0, time.monotonic() + 0.3
    while time.monotonic() < end:  # an engine stepping as fast as it can
        step += 1
        if reporter.due():
            reporter.report(step, draws=step)
    assert 2 <= len(recorder.reports) <= 7
    gaps = np.diff([at for at, _, _ in recorder.reports])
    assert gaps.min() >= 0.049  # the interval, less the clock's reading between report and record


def test_a_step_no_further_than_the_last_is_not_reported_again():
    recorder = _Recorder()
    with watching(recorder):
        reporter = ProgressReporter()
    for step in (0, 0, 0, 5, 5, 3, 8):  # a sampler still starting, then drawing
        reporter.report(step, draws=step)
    assert [step for _, step, _ in recorder.reports] == [0, 5, 8]


def test_without_a_watcher_nothing_is_due():
    reporter = ProgressReporter()
    assert reporter.watcher is None and not reporter.due()
    with reporter.heartbeat():
        pass


def test_a_heartbeat_reports_while_its_block_runs_and_stops_after():
    recorder = _Recorder(interval_s=0.02)
    with watching(recorder):
        reporter = ProgressReporter()
    with reporter.heartbeat():
        time.sleep(0.2)
    beats = [step for _, step, _ in recorder.reports]
    assert len(beats) >= 3 and beats == list(range(1, len(beats) + 1))
    time.sleep(0.1)
    assert len(recorder.reports) == len(beats)


@pytest.fixture(scope="module")
def data(regression_data):
    X, y, _ = regression_data
    return X.iloc[:150], y.iloc[:150]


def test_a_watched_nuts_fit_reports_draws_and_is_the_unwatched_fit(data):
    recorder = _Recorder()
    with watching(recorder):
        watched = LinearRegression(**FAST_NUTS).fit(*data)
    plain = LinearRegression(**FAST_NUTS).fit(*data)
    ((estimator, free, inference),) = recorder.started
    assert estimator is watched and inference == "nuts" and "coef_std" in free
    steps = [step for _, step, _ in recorder.reports]
    total = FAST_NUTS["n_chains"] * (FAST_NUTS["n_tune"] + FAST_NUTS["n_draws"])
    assert steps == list(range(1, total + 1))  # interval 0: every draw of every chain
    last = recorder.reports[-1][2]
    assert last["fraction_done"] == 1.0 and last["tuning"] == 0.0 and last["step_size"] > 0
    assert last["divergences"] >= float(watched.idata_.sample_stats["diverging"].sum())
    for name, values in plain.idata_.posterior.data_vars.items():
        np.testing.assert_array_equal(watched.idata_.posterior[name].values, values.values)


def test_a_watched_advi_fit_reports_its_falling_loss(data):
    recorder = _Recorder(interval_s=0.0)
    with watching(recorder):
        fitted = LinearRegression(
            inference="advi",
            n_draws=100,
            max_iter=3000,
            random_seed=0,
            progressbar=False,
        ).fit(*data)
    steps = [step for _, step, _ in recorder.reports]
    # Every iteration; PyMC keeps no loss of the one whose callback stopped the fit.
    iterations = fitted.idata_.fit_history.sizes["iteration"]
    assert steps == list(range(1, len(steps) + 1)) and len(steps) - iterations in (0, 1)
    losses = [values["loss"] for _, _, values in recorder.reports]
    assert losses[-1] < losses[0]
    history = fitted.idata_.fit_history["loss"].values
    np.testing.assert_allclose(losses[-1], np.mean(history[-100:]), rtol=1e-3)
