"""Train step of the example MLprojects: autolog a fit, score it on held-out data, register it.

Run through ``mlflow run examples/regression`` or ``mlflow run examples/classification``
(see their MLproject files for the parameters), or directly::

    python examples/train.py --estimator LinearRegression --dataset diabetes
"""

from __future__ import annotations

import argparse
import importlib

import mlflow
import pandas as pd
from sklearn import datasets
from sklearn.model_selection import train_test_split

import mlflow_pmlearn
from mlflow_pmlearn.promote import scoring_rules
from mlflow_pmlearn.serialization import BUILTIN_ESTIMATORS

ESTIMATORS = {path.rpartition(".")[2]: path for path in BUILTIN_ESTIMATORS}
BUNDLED = {"diabetes": datasets.load_diabetes, "breast_cancer": datasets.load_breast_cancer, "iris": datasets.load_iris}


def count(value: str) -> int:
    """A whole number given as ``"200"`` or ``"200.0"`` (MLproject numbers are floats)."""
    return int(float(value))


def load_data(dataset: str, target: str | None) -> tuple[pd.DataFrame, pd.Series]:
    """A bundled scikit-learn dataset by name, or a CSV file with a ``target`` column."""
    if dataset in BUNDLED:
        X, y = BUNDLED[dataset](return_X_y=True, as_frame=True)
        return X, y
    frame = pd.read_csv(dataset)
    if target not in frame.columns:
        raise SystemExit(f"--target {target!r} is not a column of {dataset}; columns: {list(frame.columns)}")
    return frame.drop(columns=[target]), frame[target]


def build_estimator(name: str, args: argparse.Namespace):
    """The named built-in estimator with the run's settings (prior scale where it has one)."""
    module, _, attribute = ESTIMATORS[name].rpartition(".")
    estimator_class = getattr(importlib.import_module(module), attribute)
    settings = {"inference": args.inference, "n_draws": args.draws, "max_iter": args.max_iter, "random_seed": args.seed}
    if args.inference == "nuts":
        settings.update(n_tune=args.tune, n_chains=args.chains)
    accepted = estimator_class().get_params()
    settings.update({key: args.prior_scale for key in ("prior_scale_coef", "prior_scale") if key in accepted})
    return estimator_class(**settings)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--estimator", choices=sorted(ESTIMATORS), default="LinearRegression")
    parser.add_argument("--inference", choices=["advi", "nuts"], default="advi")
    parser.add_argument("--draws", type=count, default=1000, help="posterior draws kept (per chain for NUTS)")
    parser.add_argument("--max-iter", type=count, default=20_000, help="most ADVI iterations")
    parser.add_argument("--tune", type=count, default=1000, help="NUTS tuning steps")
    parser.add_argument("--chains", type=count, default=2, help="NUTS chains")
    parser.add_argument("--prior-scale", type=float, default=2.5, help="scale of the coefficient priors")
    parser.add_argument("--dataset", default="diabetes", help=f"one of {sorted(BUNDLED)} or a CSV path")
    parser.add_argument("--target", default=None, help="target column of a CSV dataset")
    parser.add_argument("--test-size", type=float, default=0.25)
    parser.add_argument("--seed", type=count, default=0)
    parser.add_argument("--registered-model-name", default="", help="register the model under this name")
    args = parser.parse_args()

    X, y = load_data(args.dataset, args.target)
    X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=args.test_size, random_state=args.seed)
    mlflow_pmlearn.autolog(registered_model_name=args.registered_model_name or None)
    with mlflow.start_run():
        model = build_estimator(args.estimator, args).fit(X_train, y_train)
        scores = scoring_rules(model, X_test, y_test)
        mlflow.log_metrics({f"test_{name}": value for name, value in scores.items()})
    print(f"{args.estimator} on {args.dataset}: " + ", ".join(f"test {k} = {v:.4f}" for k, v in scores.items()))


if __name__ == "__main__":
    main()
