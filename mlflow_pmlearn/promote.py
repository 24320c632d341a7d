"""Promote a registered model version to an alias (``champion``) only when it scores better.

The candidate and the current alias holder are scored on the same held-out data with
proper scoring rules: for regressors the log predictive density (primary), CRPS and the
coverage of the 90% interval; for classifiers the log loss (primary), the Brier score and
the accuracy. The alias moves only when the candidate is better on the primary rule; the
comparison is recorded on the candidate version (tags and description) either way.

Command line::

    python -m mlflow_pmlearn.promote --name diabetes-bayesian-regression --version 3 --data holdout.csv --target y
"""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient
from sklearn.metrics import accuracy_score, log_loss

from estimators.base import BayesianEstimator

INTERVAL_PROB = 0.9


def crps(samples: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Continuous ranked probability score of each target under its predictive samples.

    Parameters
    ----------
    samples : ndarray of shape (n_draws, n_samples)
    y : ndarray of shape (n_samples,)

    Returns
    -------
    ndarray of shape (n_samples,)
        ``E|Y - y| - E|Y - Y'| / 2``, lower is better.
    """
    n_draws = samples.shape[0]
    ordered = np.sort(samples, axis=0)
    to_target = np.abs(samples - y).mean(axis=0)
    # Sum over pairs |x_i - x_j| of sorted draws is 2 * sum_i (2i - n - 1) x_(i).
    weights = 2 * np.arange(1, n_draws + 1) - n_draws - 1
    spread = 2 * (weights[:, None] * ordered).sum(axis=0) / n_draws**2
    return to_target - spread / 2


def _classification_scores(estimator: BayesianEstimator, X: Any, y: Any) -> dict[str, float]:
    proba = estimator.predict_proba(X)
    labels = np.asarray(y)
    one_hot = (labels[:, None] == estimator.classes_[None, :]).astype(float)
    return {
        "log_loss": float(log_loss(labels, proba, labels=estimator.classes_)),
        "brier_score": float(np.mean(np.sum((proba - one_hot) ** 2, axis=1))),
        "accuracy": float(accuracy_score(labels, estimator.classes_[np.argmax(proba, axis=1)])),
    }


def _regression_scores(estimator: BayesianEstimator, X: Any, y: Any) -> dict[str, float]:
    target = np.asarray(y, dtype=np.float64).ravel()
    interval = estimator.predict_interval(X, prob=INTERVAL_PROB)
    return {
        "log_predictive_density": float(estimator.log_predictive_density(X, target).mean()),
        "crps": float(crps(estimator.sample_posterior_predictive(X), target).mean()),
        "coverage_90": float(np.mean((interval[:, 0] <= target) & (target <= interval[:, 1]))),
    }


#: The proper scoring rules of each kind of estimator, by scikit-learn's ``estimator_type`` tag.
_SCORING_RULES = {"classifier": _classification_scores, "regressor": _regression_scores}


def scoring_rules(estimator: BayesianEstimator, X: Any, y: Any) -> dict[str, float]:
    """Proper scoring rules of ``estimator`` on held-out ``X, y``.

    Returns
    -------
    dict
        Regressors: ``log_predictive_density`` (mean per row, higher is better), ``crps``
        (lower is better), ``coverage_90``. Classifiers: ``log_loss``, ``brier_score``
        (lower is better), ``accuracy``.

    Raises
    ------
    MlflowException
        For an estimator that is neither (a density model has no target to score).
    """
    kind = estimator.__sklearn_tags__().estimator_type
    if kind not in _SCORING_RULES:
        raise MlflowException.invalid_parameter_value(
            f"{type(estimator).__name__} is a {kind}; promotion compares regressors or classifiers on held-out targets."
        )
    return _SCORING_RULES[kind](estimator, X, y)


#: The rule that decides, and whether higher is better.
PRIMARY = {"log_predictive_density": True, "log_loss": False}


@dataclass
class Promotion:
    """The outcome of :func:`promote`."""

    name: str
    candidate_version: str
    alias: str
    champion_version: str | None
    promoted: bool
    primary_rule: str
    candidate_scores: dict[str, float]
    champion_scores: dict[str, float] = field(default_factory=dict)

    def summary(self) -> str:
        """One line saying what was decided and why."""
        verdict = "promoted" if self.promoted else "kept the current champion"
        if self.champion_version is None:
            return f"{self.name} v{self.candidate_version}: {verdict} (no '{self.alias}' alias existed)."
        rule = self.primary_rule
        return (
            f"{self.name} v{self.candidate_version} vs v{self.champion_version}: {verdict} "
            f"({rule} {self.candidate_scores[rule]:.4f} vs {self.champion_scores[rule]:.4f})."
        )


def promote(
    name: str,
    candidate_version: str | int,
    X: Any,
    y: Any,
    *,
    alias: str = "champion",
    client: MlflowClient | None = None,
) -> Promotion:
    """Move ``alias`` to the candidate version if it beats the current holder on held-out data.

    Parameters
    ----------
    name : str
        Registered model name.
    candidate_version : str or int
        The version to consider.
    X, y : held-out features and targets
    alias : str, default="champion"
        The alias to move.
    client : MlflowClient, optional
        Defaults to one for the current tracking and registry URIs.

    Returns
    -------
    Promotion
        Scores of both versions and the decision, also written to the candidate version's
        tags (``pmlearn.promotion.*``) and description.
    """
    import mlflow_pmlearn

    client = client or MlflowClient()
    candidate_version = str(candidate_version)
    candidate = mlflow_pmlearn.load_model(f"models:/{name}/{candidate_version}")
    candidate_scores = scoring_rules(candidate, X, y)
    primary = next(rule for rule in PRIMARY if rule in candidate_scores)
    try:
        champion_version = str(client.get_model_version_by_alias(name, alias).version)
    except MlflowException:
        champion_version = None
    champion_scores: dict[str, float] = {}
    promoted = champion_version is None
    if champion_version is not None and champion_version != candidate_version:
        champion = mlflow_pmlearn.load_model(f"models:/{name}/{champion_version}")
        champion_scores = scoring_rules(champion, X, y)
        higher_is_better = PRIMARY[primary]
        difference = candidate_scores[primary] - champion_scores[primary]
        promoted = difference > 0 if higher_is_better else difference < 0
    result = Promotion(name, candidate_version, alias, champion_version, promoted, primary, candidate_scores, champion_scores)
    _record(client, result)
    if promoted:
        client.set_registered_model_alias(name, alias, candidate_version)
    return result


def _record(client: MlflowClient, result: Promotion) -> None:
    tags = {f"pmlearn.promotion.{rule}": f"{value:.6g}" for rule, value in result.candidate_scores.items()}
    tags.update({f"pmlearn.promotion.{result.alias}.{rule}": f"{value:.6g}" for rule, value in result.champion_scores.items()})
    tags["pmlearn.promotion.compared_with"] = result.champion_version or "none"
    tags["pmlearn.promotion.decision"] = "promoted" if result.promoted else "rejected"
    for key, value in tags.items():
        client.set_model_version_tag(result.name, result.candidate_version, key, value)
    client.update_model_version(result.name, result.candidate_version, description=result.summary())


def main(argv: list[str] | None = None) -> None:
    """Command line: score a candidate on a CSV of held-out rows and promote it if better."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--name", required=True, help="registered model name")
    parser.add_argument("--version", required=True, help="candidate version")
    parser.add_argument("--data", required=True, help="CSV of held-out rows: the features and the target")
    parser.add_argument("--target", required=True, help="target column of the CSV")
    parser.add_argument("--alias", default="champion")
    args = parser.parse_args(argv)
    frame = pd.read_csv(args.data)
    if args.target not in frame.columns:
        parser.error(f"--target {args.target!r} is not a column of {args.data}; columns: {list(frame.columns)}")
    result = promote(args.name, args.version, frame.drop(columns=[args.target]), frame[args.target], alias=args.alias)
    print(result.summary())
    print(json.dumps({"candidate": result.candidate_scores, "champion": result.champion_scores}, indent=2))


if __name__ == "__main__":
    main()
