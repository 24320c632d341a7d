"""PSIS-LOO at scale, and what it adds to an autologged fit.

A LinearRegression is fitted with ADVI on 10,000 seeded rows x 10 features, keeping 1,000
posterior draws (the defaults). Then:

- ``loo``: :func:`mlflow_pmlearn.autologging.loo.psis_loo`, the pointwise log-likelihood of the
  10,000 training rows under the 1,000 draws (one compiled function, row chunks) and
  ``arviz_stats.loo`` on it, warm (median of the repeats), against the PyMC way:
  ``pm.compute_log_likelihood`` (one compiled call per draw) and the same ``arviz_stats.loo``;
- the two parts of ours alone: the log-likelihood, and ``arviz_stats.loo``;
- ``autolog``: what ``autolog(log_loo=True)`` adds to the autologged fit, which is exactly
  :func:`mlflow_pmlearn.autologging.loo.log_loo` (PSIS-LOO, its four metrics and the Pareto-k
  plot, into a sqlite store), against the ADVI fit itself; and the same without the plot
  (``log_plots=False``).

Run from the repository root::

    python -m benchmarks.loo            # prints a table, writes benchmarks/loo.json
    python -m benchmarks.loo --quick    # fewer repeats
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import warnings
from collections.abc import Callable
from pathlib import Path

import xarray as xr

from benchmarks import write_results
from benchmarks.run import _print_table, _row, side_by_side, synthetic, timed
from estimators.base import BayesianEstimator

warnings.filterwarnings("ignore")

RESULTS = Path(__file__).with_name("loo.json")
N_ROWS, N_DRAWS = 10_000, 1_000


def _median(function, repeats: int) -> float:
    function()  # warm: compiled once per fitted model
    return statistics.median(timed(function) for _ in range(repeats))


def bench_loo(fitted, repeats: int, rows: list[dict]) -> None:
    """Our PSIS-LOO (log-likelihood and ``arviz_stats.loo``) against PyMC's log-likelihood and the same LOO."""
    import arviz_stats
    import pymc as pm

    from mlflow_pmlearn.autologging.loo import psis_loo

    log_likelihood = fitted.training_log_likelihood()
    data = xr.DataTree.from_dict(
        {"posterior": fitted.idata_.posterior.to_dataset(), "log_likelihood": log_likelihood.to_dataset()}
    )

    def pymc_log_likelihood() -> xr.DataTree:
        idata = fitted.idata_.copy()
        with fitted.pymc_model():
            pm.compute_log_likelihood(idata, progressbar=False)
        return idata

    def pymc_way():
        arviz_stats.loo(pymc_log_likelihood(), pointwise=True)

    ours = _median(lambda: psis_loo(fitted), repeats)
    theirs = _median(pymc_way, 1)
    case = f"PSIS-LOO, {N_ROWS:,} rows x {N_DRAWS:,} draws (log-likelihood + arviz_stats.loo)"
    rows.append(
        _row("loo", case, ours, "pm.compute_log_likelihood + arviz_stats.loo", theirs, target="seconds (<= 5 s)")
    )
    log_lik = _median(fitted.training_log_likelihood, repeats)
    rows.append(
        _row(
            "loo",
            "  its pointwise log-likelihood (one compiled function, all draws)",
            log_lik,
            "pm.compute_log_likelihood",
            _median(pymc_log_likelihood, 1),
        )
    )
    psis = _median(lambda: arviz_stats.loo(data, pointwise=True), repeats)
    rows.append(
        _row("loo", "  its arviz_stats.loo (PSIS, one row at a time in Python)", psis, "the whole PSIS-LOO", ours)
    )


def bench_autolog(fit: Callable[[], BayesianEstimator], repeats: int, rows: list[dict]) -> None:
    """What ``autolog(log_loo=True)`` adds to an autologged fit: ``log_loo``, against the fit itself."""
    import mlflow

    from mlflow_pmlearn.autologging.loo import log_loo

    fitted = fit()
    with tempfile.TemporaryDirectory() as directory:
        mlflow.set_tracking_uri(f"sqlite:///{directory}/mlflow.db")
        experiment = mlflow.create_experiment("bench-loo", artifact_location=Path(directory, "artifacts").as_uri())
        with mlflow.start_run(experiment_id=experiment):
            added, plain = side_by_side(lambda: log_loo(fitted), fit, repeats)
            without_plot = _median(lambda: log_loo(fitted, plot=False), repeats)
    case = f"what autolog(log_loo=True) adds to the ADVI fit of {N_ROWS:,} x 10: LOO, 4 metrics, Pareto-k plot"
    rows.append(_row("autolog", case, added, "the ADVI fit itself", plain))
    rows.append(
        _row(
            "autolog", "  the same with log_plots=False (no Pareto-k plot)", without_plot, "the ADVI fit itself", plain
        )
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="fewer repeats")
    parser.add_argument("--output", default=str(RESULTS), help="where to write the JSON results")
    args = parser.parse_args()
    from estimators.linear_model import LinearRegression

    repeats = 1 if args.quick else 3
    X, y, *_ = synthetic(N_ROWS)

    def fit() -> BayesianEstimator:
        return LinearRegression(inference="advi", n_draws=N_DRAWS, random_seed=0, progressbar=False).fit(X, y)

    rows: list[dict] = []
    bench_loo(fit(), repeats, rows)
    bench_autolog(fit, repeats, rows)
    _print_table(rows)
    write_results(args.output, quick=args.quick, rows=rows)


if __name__ == "__main__":
    main()
