"""Simulation-based calibration (Talts et al. 2018) of NUTS and of mean-field ADVI on a small linear regression.

Each replication draws the parameters and a target from the model's prior (one
``pm.sample_prior_predictive`` call on the estimator's built model, for all replications),
fits the estimator to the simulated target with each engine, and ranks the true value of
each parameter among ``L`` posterior draws. If the fit is right, each rank is uniform on
``0..L``. NUTS's draws are thinned to ``L`` evenly spaced draws of the 2 x 500 kept (about
independent: this model's bulk ESS is above 1,000); ADVI's ``L`` draws are independent.

The model is ``LinearRegression``'s written with the template but with priors in the
target's units (``intercept, coef ~ N(0, 2.5)`` on standardised features, ``sigma ~
HalfNormal(1)``): ``LinearRegression`` standardises the target with its own training mean
and sd, a data-dependent prior under which the simulated data's model differs from the
simulating one, so exact SBC of it is not possible. The features (30 rows x 2, seeded) are
fixed across replications, so their standardisation is part of the model.

Uniformity: a chi-square test of the ranks in ``N_BINS`` equal bins, per parameter; the
rank histograms, with the band that 99% of bins of a uniform fall in, go to
``sbc_<engine>.png``.

Run from the repository root::

    python -m benchmarks.sbc                         # up to 200 replications, 20 minutes at most
    python -m benchmarks.sbc --replications 100 --budget 600
"""

from __future__ import annotations

import argparse
import json
import platform
import time
import warnings
from pathlib import Path

import numpy as np
import pymc as pm
from scipy import stats

from estimators.base import BayesianEstimator, BayesianRegressorMixin
from estimators.modeling import standardized

HERE = Path(__file__).parent
RESULTS = HERE / "sbc.json"
N_ROWS, N_FEATURES, L, N_BINS = 30, 2, 99, 10
PARAMETERS = ("intercept", "coef", "sigma")
ENGINES = {
    "nuts_pymc": {"inference": "nuts", "nuts_sampler": "pymc", "n_draws": 500, "n_tune": 500, "n_chains": 2},
    "advi": {"inference": "advi", "n_draws": L},
}


class _FixedPriorRegression(BayesianRegressorMixin, BayesianEstimator):
    """Linear regression with Normal noise and priors in the target's units."""

    def build_model(self, X, y):
        X_std, _, _ = standardized(X)
        intercept = pm.Normal("intercept", 0.0, 2.5)
        coef = pm.Normal("coef", 0.0, 2.5, shape=X.get_value().shape[1])
        sigma = pm.HalfNormal("sigma", 1.0)
        pm.Normal("y_obs", intercept + pm.math.dot(X_std, coef), sigma, observed=y, shape=X.shape[0])


def _columns(dataset, index=None) -> dict[str, np.ndarray]:
    """Each scalar parameter (``coef[0]``, ...) as one array over the stacked draws."""
    columns = {}
    for name in PARAMETERS:
        values = dataset[name].transpose("chain", "draw", ...).values
        values = values.reshape(values.shape[0] * values.shape[1], -1)
        for j in range(values.shape[1]):
            key = name if values.shape[1] == 1 else f"{name}[{j}]"
            columns[key] = values[:, j] if index is None else values[index, j]
    return columns


def _ranks(estimator, truth: dict[str, float]) -> dict[str, int]:
    draws = _columns(estimator.idata_.posterior.to_dataset())
    n_draws = len(next(iter(draws.values())))
    thinned = np.round(np.linspace(0, n_draws - 1, L)).astype(int)
    return {key: int(np.sum(values[thinned] < truth[key])) for key, values in draws.items()}


def _uniformity(ranks: list[int]) -> float:
    counts = np.histogram(ranks, bins=N_BINS, range=(0, L + 1))[0]
    return float(stats.chisquare(counts).pvalue)


def _plot(engine: str, ranks: dict[str, list[int]], p_values: dict[str, float]) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = len(next(iter(ranks.values())))
    low, high = stats.binom.ppf([0.005, 0.995], n, 1 / N_BINS)
    figure, axes = plt.subplots(1, len(ranks), figsize=(3 * len(ranks), 2.6), sharey=True)
    for axis, (key, values) in zip(axes, ranks.items()):
        axis.axhspan(low, high, color="0.85", label="99% band, uniform")
        axis.hist(values, bins=N_BINS, range=(0, L + 1), color="C0", edgecolor="white")
        axis.set_title(f"{key}  (p = {p_values[key]:.2f})", fontsize=9)
        axis.set_xlabel(f"rank of the true value among {L} draws", fontsize=8)
    axes[0].set_ylabel(f"replications (of {n})")
    figure.suptitle(f"SBC rank histograms, {engine}", fontsize=10)
    figure.tight_layout()
    path = HERE / f"sbc_{engine}.png"
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--replications", type=int, default=200)
    parser.add_argument("--budget", type=float, default=1200.0, help="seconds; stop starting replications after it")
    args = parser.parse_args()
    warnings.filterwarnings("ignore")

    rng = np.random.default_rng(0)
    X = rng.normal(size=(N_ROWS, N_FEATURES))
    placeholder = _FixedPriorRegression(inference="advi", random_seed=0, progressbar=False).fit(
        X, rng.normal(size=N_ROWS)
    )
    prior = pm.sample_prior_predictive(draws=args.replications, model=placeholder.pymc_model(), random_seed=1)
    truths = _columns(prior.prior.to_dataset())
    simulated = (
        prior.prior_predictive["y_obs"].transpose("chain", "draw", ...).values.reshape(args.replications, N_ROWS)
    )

    ranks: dict[str, dict[str, list[int]]] = {engine: {key: [] for key in truths} for engine in ENGINES}
    seconds = {engine: 0.0 for engine in ENGINES}
    start = time.perf_counter()
    done = 0
    for i in range(args.replications):
        if time.perf_counter() - start > args.budget:
            break
        truth = {key: values[i] for key, values in truths.items()}
        for engine, settings in ENGINES.items():
            began = time.perf_counter()
            estimator = _FixedPriorRegression(**settings, random_seed=i, progressbar=False).fit(X, simulated[i])
            seconds[engine] += time.perf_counter() - began
            for key, rank in _ranks(estimator, truth).items():
                ranks[engine][key].append(rank)
        done += 1
        if done % 10 == 0:
            print(f"{done} replications, {time.perf_counter() - start:.0f} s", flush=True)

    results = {
        "machine": platform.platform(),
        "model": f"linear regression, {N_ROWS} rows x {N_FEATURES} features (fixed, seeded), priors in the target's units",
        "replications": done,
        "replications_asked": args.replications,
        "draws_ranked": L,
        "bins": N_BINS,
        "engines": {},
    }
    print(
        f"SBC: {done} replications (of {args.replications} asked), ranks among {L} draws, chi-square on {N_BINS} bins"
    )
    print(f"{'engine':<10} {'s/fit':>6} " + " ".join(f"{key:>9}" for key in truths))
    for engine in ENGINES:
        p_values = {key: _uniformity(values) for key, values in ranks[engine].items()}
        figure = _plot(engine, ranks[engine], p_values)
        results["engines"][engine] = {
            "settings": ENGINES[engine],
            "seconds_per_fit": seconds[engine] / max(done, 1),
            "p_values": p_values,
            "ranks": ranks[engine],
            "figure": figure.name,
        }
        print(f"{engine:<10} {seconds[engine] / max(done, 1):6.2f} " + " ".join(f"{p:9.3f}" for p in p_values.values()))
    RESULTS.write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {RESULTS} and the sbc_<engine>.png figures")


if __name__ == "__main__":
    main()
