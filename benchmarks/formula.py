"""Predicting with a bambi formula model: our compiled predictor against bambi's own ``predict``.

Two ``BambiRegressor`` models are fitted with NUTS (2 chains x 500 draws) on 300 seeded
rows: ``"count ~ x + c + (1|g)"`` (Poisson) and ``"y ~ x + (x|g)"`` (Gaussian). Then, on
1,000 new rows, warm (median of the repeats, run alternately):

- ``predict(X, return_std=True)``: the posterior predictive mean and standard deviation from
  one predictive draw per posterior draw, through the compiled predictor, against bambi
  0.21's ``Model.predict(idata, data=X, kind="response")``, which draws the same posterior
  predictive (formulae's design of the rows, NumPy/xarray products, the family's sampler)
  from the same posterior; target: at least 20x faster. A Poisson likelihood has no inverse
  CDF in PyMC, so ours draws it forward (``estimators/likelihood_draws.py``): its means for
  all rows in one compiled call, then NumPy's Poisson sampler row by row, each row from the
  same stream (a row's draws do not depend on its batch); a Gaussian one is one vectorised
  call (its inverse CDF);
- the agreement: the largest gap between the two predictive means, in units of its Monte
  Carlo standard error (both are means of 1,000 predictive draws): below 4 is agreement.

Run from the repository root::

    python -m benchmarks.formula            # prints a table, writes benchmarks/formula.json
    python -m benchmarks.formula --quick    # fewer repeats
"""

from __future__ import annotations

import argparse
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

from benchmarks import write_results
from benchmarks.run import _print_table, _row, side_by_side

warnings.filterwarnings("ignore")

RESULTS = Path(__file__).with_name("formula.json")
N_TRAIN, N_NEW = 300, 1_000


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


def bench_case(name: str, repeats: int) -> dict:
    """Our ``predict(return_std=True)`` and bambi's ``predict(kind="response")`` on the same posterior and rows."""
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

    def bambi_predict() -> np.ndarray:
        idata = reference.predict(model.idata_, data=new, kind="response", inplace=False, random_seed=0)
        return idata.posterior_predictive[response].stack(sample=("chain", "draw")).transpose("sample", ...).values

    ours, theirs = side_by_side(lambda: model.predict(new, return_std=True), bambi_predict, repeats)
    mean, std = model.predict(new, return_std=True)
    their_draws = bambi_predict()
    standard_error = np.sqrt((std**2 + their_draws.var(axis=0)) / model.n_posterior_draws_)
    gap = float(np.max(np.abs(mean - their_draws.mean(axis=0)) / standard_error))
    case = f"BambiRegressor {family} {formula!r}, {N_NEW:,} new rows x {model.n_posterior_draws_:,} draws, mean + std"
    row = _row(
        "formula",
        case,
        ours,
        'bambi Model.predict(kind="response")',
        theirs,
        target="ratio <= 0.05 (20x)",
    )
    row["note"] = f"largest gap between the predictive means: {gap:.2f} Monte Carlo standard errors (agreement: < 4)"
    row["max_gap_in_standard_errors"] = gap
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="fewer repeats")
    parser.add_argument("--output", default=str(RESULTS), help="where to write the JSON results")
    args = parser.parse_args()
    rows = [bench_case(name, 1 if args.quick else 3) for name in CASES]
    _print_table(rows)
    write_results(args.output, quick=args.quick, rows=rows)


if __name__ == "__main__":
    main()
