"""Promote a registered model version to an alias (``champion``) only when it scores better.

With held-out data, the candidate and the current alias holder are scored on it with
proper scoring rules: for regressors the log predictive density (primary), CRPS and the
coverage of the 90% interval; for classifiers the log loss (primary), the Brier score and
the accuracy. The alias moves only when the candidate is better on the primary rule.

Without held-out data, both are compared by PSIS-LOO on their training data (which must be
the same rows), with the standard-error rule: the alias moves only when the candidate's
``elpd_loo`` exceeds the champion's by more than ``se_multiple`` (default
:data:`LOO_SE_MULTIPLE`) standard errors of the difference (``dse``).

The comparison is recorded on the candidate version (tags and description) either way.

Command line::

    python -m mlflow_pmlearn.promote --name diabetes-bayesian-regression --version 3 --data holdout.csv --target y
    python -m mlflow_pmlearn.promote --name diabetes-bayesian-regression --version 3   # by PSIS-LOO
"""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass, field
from typing import Any

import pandas as pd
from arviz_stats.utils import ELPDData
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from estimators.base import BayesianEstimator
from mlflow_pmlearn import load_model
from mlflow_pmlearn.autologging.loo import loo_metrics, psis_loo
from mlflow_pmlearn.evaluation import loo_comparison
from mlflow_pmlearn.scoring import bayesian_step, held_out_scores

#: Standard errors of the ``elpd_loo`` difference by which a candidate must beat the champion.
LOO_SE_MULTIPLE = 2.0


#: The names promotion records for the kinds' proper scores, where they differ.
_RULE_NAMES = {"log_score": "log_predictive_density"}


def scoring_rules(model: Any, X: Any, y: Any) -> dict[str, float]:
    """Proper scoring rules of ``model`` (an estimator, or a pipeline ending in one) on held-out ``X, y``: its
    kind's ``proper_scores``.

    Returns
    -------
    dict
        Regressors: ``log_predictive_density`` (mean per row, higher is better), ``crps``
        (lower is better), ``coverage_50``, ``coverage_90``, ``coverage_95``. Classifiers:
        ``log_loss``, ``brier_score``, ``ece`` (lower is better), ``accuracy``.

    Raises
    ------
    MlflowException
        For an estimator with no target (a density model has none to score).
    """
    estimator, rows = bayesian_step(model, X)
    scores = held_out_scores(estimator, rows, y)[0]
    return {_RULE_NAMES.get(name, name): value for name, value in scores.items()}


#: The rule that decides, and whether higher is better.
PRIMARY = {"log_predictive_density": True, "log_loss": False, "elpd_loo": True}


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
    #: By PSIS-LOO against a champion: ``elpd_diff`` (candidate minus champion), ``dse`` and ``se_multiple``.
    loo_difference: dict[str, float] = field(default_factory=dict)

    def summary(self) -> str:
        """One line saying what was decided and why."""
        verdict = "promoted" if self.promoted else "kept the current champion"
        if self.champion_version is None:
            return f"{self.name} v{self.candidate_version}: {verdict} (no '{self.alias}' alias existed)."
        rule = self.primary_rule
        reason = f"{rule} {self.candidate_scores[rule]:.4f} vs {self.champion_scores[rule]:.4f}"
        if self.loo_difference:
            difference = self.loo_difference
            reason += (
                f"; gain {difference['elpd_diff']:.4g}, promoted only above "
                f"{difference['se_multiple']:g} x dse = {difference['se_multiple'] * difference['dse']:.4g}"
            )
        return f"{self.name} v{self.candidate_version} vs v{self.champion_version}: {verdict} ({reason})."


def promote(
    name: str,
    candidate_version: str | int,
    X: Any = None,
    y: Any = None,
    *,
    alias: str = "champion",
    client: MlflowClient | None = None,
    se_multiple: float = LOO_SE_MULTIPLE,
) -> Promotion:
    """Move ``alias`` to the candidate version if it beats the current holder.

    Parameters
    ----------
    name : str
        Registered model name.
    candidate_version : str or int
        The version to consider.
    X, y : held-out features and targets, optional
        Without them, the versions are compared by PSIS-LOO on their training data.
    alias : str, default="champion"
        The alias to move.
    client : MlflowClient, optional
        Defaults to one for the current tracking and registry URIs.
    se_multiple : float, default=2.0
        (:data:`LOO_SE_MULTIPLE`) By PSIS-LOO, the candidate is promoted only when its
        ``elpd_loo`` gain over the champion exceeds this many ``dse``.

    Returns
    -------
    Promotion
        Scores of both versions and the decision, also written to the candidate version's
        tags (``pmlearn.promotion.*``) and description.
    """
    client = client or MlflowClient()
    candidate_version = str(candidate_version)
    if (X is None) != (y is None):
        raise MlflowException.invalid_parameter_value(
            "Give both held-out X and y, or neither (to compare by PSIS-LOO)."
        )
    by_loo = X is None
    candidate = load_model(f"models:/{name}/{candidate_version}")
    if by_loo:
        candidate, candidate_loo = _with_loo(candidate)
        candidate_scores = loo_metrics(candidate_loo)
    else:
        candidate_scores = scoring_rules(candidate, X, y)
    primary = next(rule for rule in PRIMARY if rule in candidate_scores)
    try:
        champion_version = str(client.get_model_version_by_alias(name, alias).version)
    except MlflowException:
        champion_version = None
    champion_scores: dict[str, float] = {}
    loo_difference: dict[str, float] = {}
    promoted = champion_version is None
    if champion_version is not None and champion_version != candidate_version:
        champion = load_model(f"models:/{name}/{champion_version}")
        if by_loo:
            champion, champion_loo = _with_loo(champion)
            champion_scores = loo_metrics(champion_loo)
            table = loo_comparison(
                {"candidate": candidate, "champion": champion}, {"candidate": candidate_loo, "champion": champion_loo}
            )
            loo_difference = {
                "elpd_diff": float(table.loc["candidate", "elpd_loo"] - table.loc["champion", "elpd_loo"]),
                "dse": float(table["dse"].max()),  # the better model's row holds 0
                "se_multiple": float(se_multiple),
            }
            promoted = loo_difference["elpd_diff"] > se_multiple * loo_difference["dse"]
        else:
            champion_scores = scoring_rules(champion, X, y)
            higher_is_better = PRIMARY[primary]
            difference = candidate_scores[primary] - champion_scores[primary]
            promoted = difference > 0 if higher_is_better else difference < 0
    result = Promotion(
        name,
        candidate_version,
        alias,
        champion_version,
        promoted,
        primary,
        candidate_scores,
        champion_scores,
        loo_difference,
    )
    _record(client, result)
    if promoted:
        client.set_registered_model_alias(name, alias, candidate_version)
    return result


def _with_loo(model: Any) -> tuple[BayesianEstimator, ELPDData]:
    """The pmlearn estimator a loaded model ends in, and its PSIS-LOO."""
    estimator = bayesian_step(model)[0]
    return estimator, psis_loo(estimator)


def _record(client: MlflowClient, result: Promotion) -> None:
    tags = {f"pmlearn.promotion.{rule}": f"{value:.6g}" for rule, value in result.candidate_scores.items()}
    tags.update(
        {f"pmlearn.promotion.{result.alias}.{rule}": f"{value:.6g}" for rule, value in result.champion_scores.items()}
    )
    tags.update({f"pmlearn.promotion.loo.{key}": f"{value:.6g}" for key, value in result.loo_difference.items()})
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
    parser.add_argument("--data", help="CSV of held-out rows: the features and the target (omit: compare by PSIS-LOO)")
    parser.add_argument("--target", help="target column of the CSV (with --data)")
    parser.add_argument("--alias", default="champion")
    parser.add_argument(
        "--se-multiple", type=float, default=LOO_SE_MULTIPLE, help="by PSIS-LOO: the gain must exceed this many dse"
    )
    args = parser.parse_args(argv)
    X = y = None
    if args.data is not None:
        if args.target is None:
            parser.error("--data needs --target, the target column of the CSV")
        frame = pd.read_csv(args.data)
        if args.target not in frame.columns:
            parser.error(f"--target {args.target!r} is not a column of {args.data}; columns: {list(frame.columns)}")
        X, y = frame.drop(columns=[args.target]), frame[args.target]
    result = promote(args.name, args.version, X, y, alias=args.alias, se_multiple=args.se_multiple)
    print(result.summary())
    print(json.dumps({"candidate": result.candidate_scores, "champion": result.champion_scores}, indent=2))


if __name__ == "__main__":
    main()
