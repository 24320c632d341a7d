"""ADVI's stopping rule and settings: the plateau schedule, ``tol`` and ``learning_rate``.

The schedule is driven directly over made-up loss curves, whose plateaus (and so the
iterations where the rule must act) are worked out by hand in each test. The settings are
then checked end to end on a model with a closed-form posterior, through the estimator
API as users pass them.
"""

from __future__ import annotations

import logging
import os

import numpy as np
import pymc as pm
import pytensor
import pytest
from conftest import FAST, raised_from

from estimators import inference
from estimators.base import BayesianEstimator, BayesianRegressorMixin
from estimators.inference.advi import ADVI_LOGGER, PlateauSchedule, final_loss
from estimators.settings import InferenceSettings


def run_schedule(losses: np.ndarray, *, window: int, tol: float, learning_rate: float = 0.05):
    """Call a ``PlateauSchedule`` after each iteration of ``losses``, as ``pm.fit`` does.

    After iteration ``i`` (counted from 1) it gets the first ``i`` losses.

    Returns
    -------
    stop : int or None
        The iteration at which it stopped the fit; None if it never did.
    rates : ndarray
        The learning rate after each iteration before the stop.
    schedule : PlateauSchedule
    """
    learning_rate = pytensor.shared(np.float64(learning_rate))
    schedule = PlateauSchedule(learning_rate, window=window, tol=tol)
    rates = []
    for i in range(1, len(losses) + 1):
        try:
            schedule(None, losses[:i], i)
        except StopIteration:
            return i, np.array(rates), schedule
        rates.append(learning_rate.get_value())
    return None, np.array(rates), schedule


def two_speed_curve(n_iterations: int = 400) -> np.ndarray:
    """A loss that falls by 1 per iteration up to iteration 100, by 0.1 up to 300, then stays at 100.

    Over a window of 10 iterations it improves by 10 (5 to 8% of the loss), then by 1
    (0.8 to 1%), then not at all.
    """
    t = np.arange(n_iterations)
    return 100.0 + 0.1 * np.maximum(300 - t, 0) + 0.9 * np.maximum(100 - t, 0)


# -- the plateau schedule, on made-up loss curves ------------------------------------------------


@pytest.mark.parametrize(
    "tol, plateaus",
    [
        # 2%: the slow phase (about 1% a window) is a plateau. The first window of it is
        # compared at iteration 120; after each reduction the rule waits two fresh windows.
        (0.02, [120, 140, 160]),
        # 0.2%: the slow phase still improves; the flat part (from 300) is the first plateau,
        # seen at 320 (the window 300-309 still beats 290-299 by 0.55%).
        (0.002, [320, 340, 360]),
    ],
)
def test_schedule_lowers_the_rate_at_two_plateaus_and_stops_at_the_third(tol, plateaus):
    stop, rates, schedule = run_schedule(two_speed_curve(), window=10, tol=tol, learning_rate=0.05)
    first, second, third = plateaus
    assert stop == third
    assert schedule.converged and schedule.reductions == 2
    expected = np.repeat([0.05, 0.005, 0.0005], [first - 1, second - first, third - second])
    np.testing.assert_allclose(rates, expected, rtol=1e-12)


def test_schedule_compares_window_means_not_single_iterations():
    """A loss that rises at every other iteration but falls 2% a window never plateaus."""
    t = np.arange(600)
    losses = 1500.0 - 2.0 * t + 30.0 * (-1) ** t
    stop, rates, schedule = run_schedule(losses, window=10, tol=0.01)
    assert stop is None and not schedule.converged
    np.testing.assert_array_equal(rates, 0.05)


# -- the settings, end to end ----------------------------------------------------------------


class UnknownMean(BayesianRegressorMixin, BayesianEstimator):
    """``y ~ Normal(mu, 1)`` with a ``Normal(0, 100)`` prior on ``mu``; ``X`` is not used.

    Its posterior is Normal with mean ``sum(y) / (n + 1e-4)`` and standard deviation
    ``1 / sqrt(n + 1e-4)``, and its mean-field ADVI starts ``mu`` at 0.
    """

    def build_model(self, X, y):
        mu = pm.Normal("mu", 0.0, 100.0)
        pm.Normal("y_obs", mu, 1.0, observed=y, shape=X.shape[0])


@pytest.fixture(scope="module")
def mean_five():
    """100 rows whose target averages exactly 5: the posterior of ``mu`` is about N(5, 0.1)."""
    y = np.random.default_rng(0).normal(size=100)
    return np.zeros((100, 1)), y - y.mean() + 5.0


def fitted_mu(model: UnknownMean) -> np.ndarray:
    """The posterior draws of ``mu``."""
    return model.idata_.posterior["mu"].values.ravel()


def test_a_fit_stops_once_converged_well_before_max_iter(mean_five):
    X, y = mean_five
    model = UnknownMean(**FAST).fit(X, y)  # the default tol and learning rate
    history = model.idata_.fit_history
    assert history.attrs["converged"] == 1 and history.attrs["max_iter"] == FAST["max_iter"]
    # Measured: 899 iterations (seeds 0-2: 899 to 1,799), of the 5,000 allowed.
    assert model.n_iter_ == history.sizes["iteration"] <= FAST["max_iter"] // 2
    # It stopped at the posterior, N(5, 0.1): the mean within half a posterior standard deviation.
    assert abs(fitted_mu(model).mean() - 5.0) < 0.05


#: How a fit ends, by max_iter: converged (measured: well before 5,000), or at max_iter.
CLOSING_LINES = {
    5000: "ADVI converged after {n:,} iterations (of at most 5,000)",
    300: "ADVI ran all max_iter=300 iterations without converging (raise max_iter, or tol, to let it converge)",
}


@pytest.mark.parametrize("max_iter", CLOSING_LINES)
def test_the_console_ends_a_fit_with_one_true_line(mean_five, caplog, max_iter):
    """One closing line, which says how the fit ended and the final loss that the
    ``elbo_final`` metric reports; never PyMC's "Interrupted at 18%" for a converged fit."""
    X, y = mean_five
    with caplog.at_level(logging.INFO, logger=ADVI_LOGGER.name):
        model = UnknownMean(**{**FAST, "max_iter": max_iter}).fit(X, y)
    loss = model.idata_.fit_history["loss"].values
    lines = [record.getMessage() for record in caplog.records if record.name.startswith("pymc")]
    ending = CLOSING_LINES[max_iter].format(n=len(loss))
    assert lines == [f"{ending}; final loss {final_loss(loss):,.6g} (mean of the last 100)."]
    assert final_loss(loss) == np.mean(loss[-100:])


def test_a_larger_tol_stops_earlier(mean_five):
    """The same data and seed: the more improvement ``tol`` asks of a window, the sooner the fit stops.

    At ``learning_rate=0.01``, ``mu`` needs about 500 iterations to reach the posterior and
    the loss flattens gradually on the way, so ``tol`` decides where the plateaus are seen.
    """
    X, y = mean_five
    loose, strict = (UnknownMean(**FAST, tol=tol, learning_rate=0.01).fit(X, y).n_iter_ for tol in (0.1, 1e-4))
    # Measured: 1,299 and 1,899 iterations (seeds 0-4: 1,199-1,299 and 1,799-1,899).
    assert loose < strict, (loose, strict)


@pytest.mark.parametrize("learning_rate", [0.004, 0.01])
def test_learning_rate_is_the_size_of_the_first_adam_steps(learning_rate, mean_five):
    """Adam moves a parameter by about the learning rate per step while its gradient keeps its sign.

    ``mu`` starts at 0 and its posterior is at 5: after 100 iterations (before the schedule's
    first check) it has moved about ``100 * learning_rate``. The default, 0.05, would have
    taken it to 3.8.
    """
    X, y = mean_five
    model = UnknownMean(**{**FAST, "max_iter": 100, "n_draws": 2000}, learning_rate=learning_rate).fit(X, y)
    # Measured (seeds 0-2) at 0.002 to 0.02: 0.89 to 1.04 times 100 * learning_rate. The mean
    # of 2,000 draws of scale 0.7 is itself uncertain by 0.016.
    np.testing.assert_allclose(fitted_mu(model).mean(), 100 * learning_rate, rtol=0.12)


# -- interrupts that compiled code turned into other errors ---------------------------------------


@pytest.mark.parametrize(
    "interruption",
    [KeyboardInterrupt("Ctrl-C"), SystemExit(3)],
    ids=["Ctrl-C", "SIGTERM handler's SystemExit"],
)
def test_an_interrupt_that_compiled_code_turned_into_another_error_stops_the_fit_as_itself(
    interruption, mean_five, monkeypatch
):
    """CPython raises SystemError "returned a result with an exception set" from an interrupt
    that lands in compiled code; the fit raises the interrupt, as it would from Python code."""

    def engine_interrupted_in_compiled_code(*args):
        raise raised_from(SystemError("returned a result with an exception set"), interruption)

    monkeypatch.setitem(inference.ENGINES, "advi", engine_interrupted_in_compiled_code)
    with pytest.raises(type(interruption)) as raised:
        UnknownMean(**FAST).fit(*mean_five)
    assert raised.value is interruption


def test_other_errors_of_an_engine_are_raised_unchanged(mean_five, monkeypatch):
    failure = raised_from(ValueError("the engine failed"), ZeroDivisionError())

    def failing_engine(*args):
        raise failure

    monkeypatch.setitem(inference.ENGINES, "advi", failing_engine)
    with pytest.raises(ValueError) as raised:
        UnknownMean(**FAST).fit(*mean_five)
    assert raised.value is failure


@pytest.mark.parametrize(("n_jobs", "n_chains", "expected"), [(None, 2, None), (3, 2, 3), (-1, 1, 1), (-1, 64, "cpus")])
def test_n_jobs_minus_one_runs_a_process_per_chain_up_to_the_cpus(n_jobs, n_chains, expected):
    cpus = len(os.sched_getaffinity(0))
    settings = InferenceSettings(n_jobs=n_jobs, n_chains=n_chains)
    assert settings.chain_processes() == (min(64, cpus) if expected == "cpus" else expected)
