"""Predicting with a bambi formula model: our compiled predictor against bambi's own ``predict``.

Two ``BambiRegressor`` models are fitted with NUTS (2 chains x 500 draws) on 300 seeded
rows: ``"count ~ x + c + (1|g)"`` (Poisson) and ``"y ~ x + (x|g)"`` (Gaussian). Then, on
1,000 new rows, warm (median of the repeats, run alternately), like for like:

- the predictive mean: ``predict(X)`` against bambi 0.21's
  ``Model.predict(idata, data=X, kind="response_params")`` averaged over the draws. Both
  evaluate the likelihood's mean at every posterior draw and row (formulae's design of the
  rows, the linear predictor, the inverse link) and draw nothing; ours is one compiled call
  (``estimators.likelihood_draws.predictive_mean_predictor``), bambi's NumPy/xarray
  products. The two agree to rounding;
- the mean and the standard deviation: ``predict(X, return_std=True)`` (the std from one
  predictive draw per posterior draw: a Gaussian's inverse CDF in one vectorised call, a
  Poisson's NumPy sampler row by row, as ``estimators/likelihood_draws.py`` explains)
  against ``kind="response"``, which draws the same posterior predictive, then its mean and
  std. Agreement: bambi's mean minus ours, in Monte Carlo standard errors of bambi's, scatters
  over the rows with an sd near 1 (ours is exact given the posterior); and the stds.

- the floor of each: what any predictor does once formulae has designed the new rows
  (which both sides do), timed side by side with bambi: the inverse link at every draw and
  row and the mean over the draws; one draw per posterior draw and row in a single NumPy
  call, then their mean and std. The linear predictor is computed beforehand and left out.
  Each floor row's note says how many times the floor ours and bambi's take.

Target: at least 20x faster than bambi, which is reachable only where bambi takes at least
20x the floor.

Run from the repository root::

    python -m benchmarks.formula            # prints a table, writes benchmarks/formula.json
    python -m benchmarks.formula --quick    # fewer repeats
"""

from __future__ import annotations

import argparse
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd

from benchmarks import write_results
from benchmarks.run import _print_table, _row, side_by_side

warnings.filterwarnings("ignore")

RESULTS = Path(__file__).with_name("formula.json")
N_TRAIN, N_NEW = 300, 1_000
TARGET = "ratio <= 0.05 (20x)"


def poisson_rows(n_rows: int, seed: int) -> tuple[pd.DataFrame, np.ndarray]:
    """Seeded counts with a log mean of ``0.5 + 0.3 x`` plus a level and a group effect."""
    rng = np.random.default_rng(seed)
    groups = list("abcdefgh")
    effect = dict(zip(groups, np.random.default_rng(0).normal(0.0, 0.5, len(groups))))
    X = pd.DataFrame(
        {
            "x": rng.normal(size=n_rows),
            "c": rng.choice(["u", "v", "w"], n_rows),
            "g": rng.choice(groups, n_rows),
        }
    )
    rate = np.exp(0.5 + 0.3 * X["x"] + X["c"].map({"u": 0.0, "v": 0.2, "w": -0.2}) + X["g"].map(effect))
    return X, rng.poisson(rate)


def gaussian_rows(n_rows: int, seed: int) -> tuple[pd.DataFrame, np.ndarray]:
    """Seeded responses ``1 + 0.8 x`` plus a group intercept and slope and noise of sd 0.5."""
    rng = np.random.default_rng(seed)
    groups = list("abcdefgh")
    effects = np.random.default_rng(0).normal(0.0, [[0.5], [0.3]], (2, len(groups)))
    X = pd.DataFrame({"x": rng.normal(size=n_rows), "g": rng.choice(groups, n_rows)})
    index = X["g"].map({g: i for i, g in enumerate(groups)}).to_numpy()
    return X, 1.0 + (0.8 + effects[1, index]) * X["x"] + effects[0, index] + rng.normal(0.0, 0.5, n_rows)


#: name -> formula, family, data, noncentered.
CASES = {
    "poisson": ("count ~ x + c + (1|g)", "poisson", poisson_rows, False),
    "gaussian": ("y ~ x + (x|g)", "gaussian", gaussian_rows, True),
}


def bench_case(name: str, repeats: int) -> list[dict]:
    """Ours against bambi's ``predict`` on the same posterior and rows: the mean, and the mean with the std."""
    import bambi as bmb

    from estimators.formula import BambiRegressor

    formula, family, make_rows, noncentered = CASES[name]
    response = formula.split("~")[0].strip()
    X, y = make_rows(N_TRAIN, seed=0)
    model = BambiRegressor(
        formula,
        family=family,
        noncentered=noncentered,
        n_draws=500,
        n_chains=2,
        random_seed=0,
        progressbar=False,
    ).fit(X, y)
    reference = bmb.Model(formula, X.assign(**{response: y}), family=family, noncentered=noncentered)
    reference.build()
    new, _ = make_rows(N_NEW, seed=1)
    parent = reference.family.likelihood.parent

    def bambi_mean() -> np.ndarray:
        idata = reference.predict(model.idata_, data=new, kind="response_params", inplace=False)
        return idata.posterior[parent].mean(("chain", "draw")).values

    def bambi_draws() -> np.ndarray:
        idata = reference.predict(model.idata_, data=new, kind="response", inplace=False, random_seed=0)
        draws = idata.posterior_predictive[response].stack(sample=("chain", "draw")).transpose("sample", ...).values
        return draws.mean(axis=0), draws.std(axis=0)

    label = f"BambiRegressor {family} {formula!r}, {N_NEW:,} new rows x {model.n_posterior_draws_:,} draws"
    ours, theirs = side_by_side(lambda: model.predict(new), bambi_mean, repeats)
    gap = float(np.max(np.abs(model.predict(new) / bambi_mean() - 1.0)))
    mean_row = _row(
        "formula", f"{label}, mean", ours, 'bambi predict(kind="response_params"), mean', theirs, target=TARGET
    )
    mean_row["note"] = f"largest relative gap between the two means: {gap:.1e} (both exact given the posterior)"
    mean_row["max_relative_gap"] = gap

    # The least any predictor does, given formulae's design of the new rows (which bambi's
    # predict and ours both make): for the mean, the inverse link at every posterior draw and
    # row and the mean over the draws; for the std, one NumPy draw per posterior draw and row
    # (one vectorised call) and their mean and std. The linear predictor itself, a small
    # matrix product, is computed beforehand and left out.
    name, parameters = model.likelihood_parameters(new)
    linear_predictor = reference.family.link[parent].link(parameters[0])
    inverse_link = reference.family.link[parent].linkinv
    sampler = getattr(np.random.default_rng(0), name)  # "normal", "poisson": NumPy's names too

    def mean_floor() -> np.ndarray:
        model.model_inputs(new)
        return inverse_link(linear_predictor).mean(axis=0)

    def draws_floor() -> tuple[np.ndarray, np.ndarray]:
        model.model_inputs(new)
        draws = sampler(*parameters)
        return draws.mean(axis=0), draws.std(axis=0)

    mean_floor_row = _floor_row(f"{label}, mean", ours, mean_floor, bambi_mean, "response_params", repeats)

    ours, theirs = side_by_side(lambda: model.predict(new, return_std=True), bambi_draws, repeats)
    mean, std = model.predict(new, return_std=True)
    their_mean, their_std = bambi_draws()
    # Ours is exact given the posterior; bambi's is a mean of one predictive draw per posterior draw,
    # off by its Monte Carlo error: across the rows, these z-scores scatter with an sd of about 1.
    z = (their_mean - mean) / (their_std / np.sqrt(model.n_posterior_draws_))
    std_gap = float(np.max(np.abs(std / their_std - 1.0)))
    std_row = _row(
        "formula",
        f"{label}, mean + std",
        ours,
        'bambi predict(kind="response"), mean + std',
        theirs,
        target=TARGET,
    )
    std_row["note"] = (
        f"bambi's mean minus ours in Monte Carlo standard errors, over the rows: sd {z.std():.2f}, mean "
        f"{z.mean():+.2f}, largest {np.abs(z).max():.2f} (agreement: sd near 1, mean near 0); stds: largest "
        f"relative gap {std_gap:.1%} (a std from {model.n_posterior_draws_:,} draws is off by "
        f"{1 / np.sqrt(2 * model.n_posterior_draws_):.1%} on average)"
    )
    std_row["mean_gap_z_sd"] = float(z.std())
    std_row["max_gap_in_standard_errors"] = float(np.abs(z).max())
    draws_floor_row = _floor_row(f"{label}, mean + std", ours, draws_floor, bambi_draws, "response", repeats)
    return [mean_row, mean_floor_row, std_row, draws_floor_row]


def _floor_row(case: str, ours: float, floor: Callable, bambi: Callable, kind: str, repeats: int) -> dict:
    """The floor of ``case`` against bambi's ``predict(kind=kind)``, side by side: 20x faster
    than bambi is within reach only where bambi takes at least 20x the floor."""
    floor_seconds, theirs = side_by_side(floor, bambi, repeats)
    row = _row("formula", f"{case}: the floor", floor_seconds, f'bambi predict(kind="{kind}")', theirs)
    row["note"] = (
        f"ours {ours / floor_seconds:.2f}x the floor (measured before); bambi {theirs / floor_seconds:.1f}x it"
    )
    row["ours_over_floor"] = ours / floor_seconds
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="fewer repeats")
    parser.add_argument("--output", default=str(RESULTS), help="where to write the JSON results")
    args = parser.parse_args()
    rows = [row for name in CASES for row in bench_case(name, 1 if args.quick else 5)]
    _print_table(rows)
    write_results(args.output, quick=args.quick, rows=rows)


if __name__ == "__main__":
    main()
