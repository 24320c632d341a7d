"""Every inference engine on the same eight models: wall time, ESS per second, and error against long NUTS.

Models: linear regression 10,000 x 10 (seeded), diabetes linear regression, breast-cancer
logistic regression on six correlated standardised features, hierarchical logistic
regression (8 groups), eight schools (a bespoke non-centred model, below), an exact GP on
300 rows, a sparse GP (50 inducing points) on 2,000 rows, and a small MLP classifier. Engines: ``advi``, ``fullrank_advi``, ``pathfinder``,
``laplace``, and ``nuts`` run by ``pymc``, ``nutpie``, ``numpyro`` and ``blackjax``.

Each engine+model pair runs in a fresh process (killed after ``PAIR_TIMEOUT`` seconds and
recorded as skipped; an engine's error is recorded, not raised):

- ``first``: the first fit in that process: imports done, but the model built, compiled
  and fitted once (PyTensor's on-disk compile cache may already hold its C/Numba code from
  earlier runs; JAX's and nutpie's compilations are per process);
- ``warm``: a second, identical fit in the same process (run when the first took under
  ``WARM_LIMIT`` seconds);
- ``ess/s`` (samplers): the smallest bulk ESS (arviz_stats) over the named parameters,
  divided by the warm fit's wall time (tuning included; the first fit's where no warm one);
- error against the reference (PyMC NUTS, 4 chains x 2,500 draws after 1,000 tuning
  steps, seed 0): the largest ``|mean - ref mean| / ref sd`` and the smallest and largest
  ``sd / ref sd`` over every element of the model's named parameters. A pair meets the
  accuracy rule when the mean error is <= 0.1 and every sd ratio is within 0.8-1.2. The
  MLP's weights are not identified, so it is scored on its output instead: the log-odds
  of class 1 at 25 points of the data's range.

Compared runs: 1,000 draws (per chain for NUTS, in all for approximations), 1,000 tuning
steps, 2 chains, seed 0. Then the wrapper's overhead: ``LinearRegression(inference="nuts")``
on the diabetes data against ``pm.sample`` with the same settings on the estimator's own
model, alternately, ``OVERHEAD_REPEATS`` times each, medians.

Run from the repository root::

    python -m benchmarks.engines                                  # everything
    python -m benchmarks.engines --models diabetes,eight_schools  # some models
    python -m benchmarks.engines --resume                         # keep the pairs already in engines.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import time
import warnings
from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd
import xarray as xr

RESULTS = Path(__file__).with_name("engines.json")
ENGINES = (
    "advi",
    "fullrank_advi",
    "pathfinder",
    "laplace",
    "nuts:pymc",
    "nuts:nutpie",
    "nuts:numpyro",
    "nuts:blackjax",
)
COMPARED = {"n_draws": 1000, "n_tune": 1000, "n_chains": 2, "random_seed": 0, "progressbar": False}
REFERENCE = {
    "inference": "nuts",
    "nuts_sampler": "pymc",
    "n_draws": 2500,
    "n_tune": 1000,
    "n_chains": 4,
    "random_seed": 0,
    "progressbar": False,
}
PAIR_TIMEOUT, REFERENCE_TIMEOUT, WARM_LIMIT = 180, 900, 60
MEAN_TOLERANCE, SD_RATIO_RANGE = 0.1, (0.8, 1.2)
OVERHEAD_REPEATS = 5
#: The name under which a model whose weights are not identified is scored on its output instead.
LOG_ODDS = "log_odds"


def _eight_schools_estimator():
    import pymc as pm

    from estimators.base import BayesianEstimator, BayesianRegressorMixin

    class EightSchools(BayesianRegressorMixin, BayesianEstimator):
        """Eight schools (Rubin 1981), non-centred: X is each school's standard error, y its estimate."""

        def build_model(self, X, y):
            mu = pm.Normal("mu", 0.0, 5.0)
            tau = pm.HalfCauchy("tau", 5.0)
            theta_z = pm.Normal("theta_z", 0.0, 1.0, shape=X.shape[0])
            theta = pm.Deterministic("theta", mu + tau * theta_z)
            pm.Normal("y_obs", theta, X[:, 0], observed=y, shape=X.shape[0])

    return EightSchools


def _model(name: str):
    """``(estimator class, its fixed parameters, X, y, named parameters)`` of one benchmark model."""
    from sklearn.datasets import load_breast_cancer, load_diabetes, make_moons

    from benchmarks.gp import gp_rows
    from estimators.gaussian_process import GaussianProcessRegressor, SparseGaussianProcessRegressor
    from estimators.linear_model import HierarchicalLogisticRegression, LinearRegression, LogisticRegression
    from estimators.neural_network import MLPClassifier

    if name == "linear_10k":
        rng = np.random.default_rng(0)
        X = pd.DataFrame(rng.normal(size=(10_000, 10)), columns=[f"x{i}" for i in range(10)])
        y = 1.0 + X.to_numpy() @ rng.normal(size=10) + rng.normal(scale=0.5, size=10_000)
        return LinearRegression, {}, X, y, ("coef", "intercept", "sigma")
    if name == "diabetes":
        X, y = load_diabetes(return_X_y=True, as_frame=True)
        return LinearRegression, {}, X, y.to_numpy(), ("coef", "intercept", "sigma")
    if name == "breast_cancer":
        data = load_breast_cancer(as_frame=True)
        columns = [
            "mean radius",
            "mean perimeter",
            "mean area",
            "mean compactness",
            "mean concavity",
            "mean concave points",
        ]
        X = data.data[columns]
        return LogisticRegression, {}, (X - X.mean()) / X.std(), data.target.to_numpy(), ("coef", "intercept")
    if name == "hierarchical":
        rng = np.random.default_rng(0)
        n_rows, n_groups = 400, 8
        group = rng.integers(n_groups, size=n_rows)
        features = rng.normal(size=(n_rows, 2))
        logits = (
            rng.normal(0.0, 1.0, n_groups)[group]
            + features @ [1.0, -0.5]
            + rng.normal(0.0, 0.5, (n_groups, 2))[group].T[0] * features[:, 0]
        )
        X = pd.DataFrame({"x0": features[:, 0], "x1": features[:, 1], "group": [f"g{g}" for g in group]})
        y = (rng.uniform(size=n_rows) < 1 / (1 + np.exp(-logits))).astype(int)
        return (
            HierarchicalLogisticRegression,
            {"group_col": "group"},
            X,
            y,
            ("intercept_mu", "intercept_sigma", "coef_mu", "coef_sigma"),
        )
    if name == "eight_schools":
        X = np.array([[15.0], [10.0], [16.0], [11.0], [9.0], [11.0], [10.0], [18.0]])
        y = np.array([28.0, 8.0, -3.0, 7.0, -1.0, 1.0, 18.0, 12.0])
        return _eight_schools_estimator(), {}, X, y, ("mu", "tau", "theta")
    if name == "gp_300":
        return GaussianProcessRegressor, {}, *gp_rows(0, 300), ("length_scale", "amplitude", "noise")
    if name == "sparse_gp_2000":
        return SparseGaussianProcessRegressor, {}, *gp_rows(0, 2_000), ("length_scale", "amplitude", "noise")
    if name == "mlp":
        X, y = make_moons(200, noise=0.2, random_state=0)
        return MLPClassifier, {"hidden_layer_sizes": (4,)}, X, y, (LOG_ODDS,)
    raise ValueError(f"unknown model {name!r}")


MODELS = ("linear_10k", "diabetes", "breast_cancer", "hierarchical", "eight_schools", "gp_300", "sparse_gp_2000", "mlp")


def _settings(engine: str) -> dict:
    inference, _, sampler = engine.partition(":")
    return {"inference": inference, **({"nuts_sampler": sampler} if sampler else {}), **COMPARED}


def _log_odds(estimator) -> xr.Dataset:
    """The MLP's output, the log-odds of class 1, at a 5 x 5 grid over the moons' range, per draw.

    A network's weights are not identified (hidden units permute, signs flip), so the
    accuracy rule is applied to what the posterior does identify: the function it gives,
    the same for every equivalent set of weights.
    """
    grid = np.stack(np.meshgrid(np.linspace(-1.5, 2.5, 5), np.linspace(-1.0, 1.5, 5)), axis=-1).reshape(-1, 2)
    probability = np.clip(estimator.posterior_predictor()(estimator.model_inputs(grid))[0][..., 1], 1e-12, 1 - 1e-12)
    sizes = estimator.idata_.posterior.sizes
    values = (np.log(probability) - np.log1p(-probability)).reshape(sizes["chain"], sizes["draw"], len(grid))
    return xr.Dataset({LOG_ODDS: (("chain", "draw", "point"), values)})


def _summary(estimator, names: tuple[str, ...]) -> dict:
    """Per-element posterior means and sds of the named parameters, and their smallest bulk ESS."""
    from arviz_stats import ess

    posterior = _log_odds(estimator) if names == (LOG_ODDS,) else estimator.idata_.posterior.to_dataset()[list(names)]
    n_samples = posterior.sizes["chain"] * posterior.sizes["draw"]
    flat = {name: posterior[name].transpose("chain", "draw", ...).values.reshape(n_samples, -1) for name in names}
    result = {
        "mean": {name: values.mean(0).tolist() for name, values in flat.items()},
        "sd": {name: values.std(0).tolist() for name, values in flat.items()},
    }
    if posterior.sizes["chain"] > 1:
        bulk = ess(posterior, method="bulk")
        result["ess_bulk_min"] = float(min(np.nanmin(bulk[name].values) for name in names))
    return result


def _fit_pair(model_name: str, settings: dict, warm: bool) -> dict:
    """Fit once (and again, warm, if the first fit was quick); time both; summarise."""
    warnings.filterwarnings("ignore")
    estimator_class, fixed, X, y, names = _model(model_name)
    start = time.perf_counter()
    estimator = estimator_class(**fixed, **settings).fit(X, y)
    result = {"first_s": time.perf_counter() - start}
    if warm and result["first_s"] < WARM_LIMIT:
        start = time.perf_counter()
        estimator = estimator_class(**fixed, **settings).fit(X, y)
        result["warm_s"] = time.perf_counter() - start
    result.update(_summary(estimator, names))
    if settings["inference"] == "nuts":
        stats = estimator.idata_.sample_stats
        diverging = next((stats[k] for k in ("diverging", "divergences") if k in stats), None)
        result["divergences"] = int(diverging.values.sum()) if diverging is not None else None
    return result


def _in_subprocess(args: list[str], timeout: float) -> dict:
    """Run this module with ``args`` in a fresh process; its last stdout line is the JSON result."""
    try:
        done = subprocess.run(
            [sys.executable, "-m", "benchmarks.engines", *args], capture_output=True, text=True, timeout=timeout
        )
    except subprocess.TimeoutExpired:
        return {"error": f"skipped: over {timeout:.0f} s"}
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if done.returncode != 0 or not lines:
        tail = (done.stderr or done.stdout).strip().splitlines()[-25:]
        return {"error": _error_line(tail), "traceback_tail": "\n".join(tail)}
    return json.loads(lines[-1])


def _error_line(traceback: list[str]) -> str:
    """The exception's own line of a traceback (its last ``...Error: ...`` line), shortened."""
    raised = [line for line in traceback if re.match(r"^[\w.]+(Error|Exception|Interrupt)\b", line)]
    return (raised or [line for line in traceback if line and not line.startswith(" ")] or ["no output"])[-1][:300]


def _errors(summary: dict, reference: dict) -> dict:
    """Largest standardised mean error and the range of sd ratios, over every element."""
    mean_errors, ratios = [], []
    for name, ref_mean in reference["mean"].items():
        ref_mean, ref_sd = np.asarray(ref_mean), np.asarray(reference["sd"][name])
        mean_errors.append(np.abs(np.asarray(summary["mean"][name]) - ref_mean) / ref_sd)
        ratios.append(np.asarray(summary["sd"][name]) / ref_sd)
    mean_error, ratios = float(np.max(np.concatenate(mean_errors))), np.concatenate(ratios)
    low, high = float(ratios.min()), float(ratios.max())
    passes = mean_error <= MEAN_TOLERANCE and SD_RATIO_RANGE[0] <= low and high <= SD_RATIO_RANGE[1]
    return {"mean_error_max": mean_error, "sd_ratio_min": low, "sd_ratio_max": high, "meets_rule": bool(passes)}


def _overhead() -> dict:
    """``LinearRegression(inference="nuts").fit`` against ``pm.sample`` on its model, alternately."""
    import pymc as pm
    from sklearn.datasets import load_diabetes

    from estimators.linear_model import LinearRegression

    warnings.filterwarnings("ignore")
    X, y = load_diabetes(return_X_y=True, as_frame=True)
    settings = _settings("nuts:pymc")
    model = LinearRegression(**settings).fit(X, y).pymc_model()

    def ours():
        LinearRegression(**settings).fit(X, y)

    def hand_written():
        pm.sample(
            draws=1000,
            tune=1000,
            chains=2,
            random_seed=0,
            progressbar=False,
            model=model,
            compute_convergence_checks=False,
            nuts_sampler="pymc",
        )

    ours(), hand_written()
    times: dict[str, list[float]] = {"ours": [], "pm_sample": []}
    for _ in range(OVERHEAD_REPEATS):
        for key, function in (("ours", ours), ("pm_sample", hand_written)):
            start = time.perf_counter()
            function()
            times[key].append(time.perf_counter() - start)
    ours_s, theirs_s = statistics.median(times["ours"]), statistics.median(times["pm_sample"])
    return {"ours_s": ours_s, "pm_sample_s": theirs_s, "overhead": ours_s / theirs_s - 1, "times": times}


def _print_table(results: dict) -> None:
    header = f"{'model':<14} {'engine':<14} {'first s':>8} {'warm s':>8} {'ess/s':>8} {'mean err':>9} {'sd ratio':>12} {'rule':>5}  note"
    print(header)
    print("-" * len(header))
    for model_name, model_result in results["models"].items():
        reference = model_result.get("reference", {})
        first = f"{reference['first_s']:8.1f}" if "first_s" in reference else f"{'':>8}"
        print(
            f"{model_name:<14} {'reference':<14} {first} {'':>8} {'':>8} {'':>9} {'':>12} {'':>5}  {reference.get('error', '4 x 2500 PyMC NUTS')[:70]}"
        )
        for engine, row in model_result["engines"].items():
            if "error" in row:
                print(f"{'':<14} {engine:<14} {'':>8} {'':>8} {'':>8} {'':>9} {'':>12} {'':>5}  {row['error'][:120]}")
                continue
            ess_rate = f"{row['ess_per_s']:8.0f}" if "ess_per_s" in row else f"{'':>8}"
            warm = f"{row['warm_s']:8.1f}" if "warm_s" in row else f"{'-':>8}"
            if "mean_error_max" in row:
                accuracy = f"{row['mean_error_max']:9.2f} {row['sd_ratio_min']:5.2f}-{row['sd_ratio_max']:<6.2f} {'yes' if row['meets_rule'] else 'no':>5}"
            else:
                accuracy = f"{'n/a':>9} {'n/a':>12} {'n/a':>5}"
            note = f"{row['divergences']} divergences" if row.get("divergences") else ""
            print(f"{'':<14} {engine:<14} {row['first_s']:8.1f} {warm} {ess_rate} {accuracy}  {note}")
    overhead = results.get("overhead")
    if overhead:
        print(
            f"\nwrapper overhead, diabetes LinearRegression NUTS (pymc, 2 x 1000+1000), median of {OVERHEAD_REPEATS} alternated: "
            f"estimator {overhead['ours_s']:.2f} s vs pm.sample {overhead['pm_sample_s']:.2f} s: {overhead['overhead']:+.1%} (target <= +5%)"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default=",".join(MODELS))
    parser.add_argument("--engines", default=",".join(ENGINES))
    parser.add_argument("--resume", action="store_true", help="keep the results already in engines.json")
    parser.add_argument("--no-overhead", action="store_true", help="skip the wrapper-overhead comparison")
    parser.add_argument("--pair", nargs=2, metavar=("MODEL", "ENGINE"), help=argparse.SUPPRESS)
    parser.add_argument("--reference", metavar="MODEL", help=argparse.SUPPRESS)
    parser.add_argument("--overhead-only", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--table", action="store_true", help="print the table of engines.json and stop")
    args = parser.parse_args()
    if args.table:
        _print_table(json.loads(RESULTS.read_text()))
        return
    if args.pair:  # a child process: one engine on one model
        print(json.dumps(_fit_pair(args.pair[0], _settings(args.pair[1]), warm=True)))
        return
    if args.reference:
        print(json.dumps(_fit_pair(args.reference, REFERENCE, warm=False)))
        return
    if args.overhead_only:
        print(json.dumps(_overhead()))
        return

    results = json.loads(RESULTS.read_text()) if args.resume and RESULTS.exists() else {}
    results.update(
        date=date.today().isoformat(),
        machine=f"{platform.machine()}, {os.cpu_count()} cores (shared), Python {platform.python_version()}",
        compared_settings=COMPARED,
        reference_settings=REFERENCE,
        rule=f"max |mean - ref mean| / ref sd <= {MEAN_TOLERANCE}; sd / ref sd within {SD_RATIO_RANGE}",
    )
    results.setdefault("models", {})

    def save() -> None:
        RESULTS.write_text(json.dumps(results, indent=2) + "\n")

    for model_name in args.models.split(","):
        entry = results["models"].setdefault(model_name, {"engines": {}})
        if "mean" not in entry.get("reference", {}) and "skipped" not in entry.get("reference", {}).get("error", ""):
            entry["reference"] = _in_subprocess(["--reference", model_name], REFERENCE_TIMEOUT)
            save()
        reference = entry["reference"]
        for engine in args.engines.split(","):
            if args.resume and engine in entry["engines"]:
                continue
            row = _in_subprocess(["--pair", model_name, engine], PAIR_TIMEOUT)
            if "mean" in row:
                if "ess_bulk_min" in row:
                    row["ess_per_s"] = row["ess_bulk_min"] / row.get("warm_s", row["first_s"])
                if "mean" in reference:
                    row.update(_errors(row, reference))
            entry["engines"][engine] = row
            print(f"{model_name} {engine}: {row['error'] if 'error' in row else round(row['first_s'], 1)}", flush=True)
            save()
    if not args.no_overhead:
        results["overhead"] = _in_subprocess(["--overhead-only"], 1800)
        save()
    _print_table(results)
    print(f"\nwrote {RESULTS}")


if __name__ == "__main__":
    main()
