"""Registry promotion by proper scoring rules, on a real sqlite registry."""

from __future__ import annotations

import mlflow
import numpy as np
import pytest
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

import mlflow_pmlearn
from estimators.linear_model import LinearRegression, LogisticRegression
from estimators.mixture import GaussianMixture
from mlflow_pmlearn.promote import LOO_SE_MULTIPLE, main, promote, scoring_rules
from tests.conftest import FAST


def _register(model, name: str) -> str:
    with mlflow.start_run():
        info = mlflow_pmlearn.log_model(model, name="model", registered_model_name=name)
    return str(info.registered_model_version)


def test_better_candidate_takes_the_alias_and_worse_one_does_not(mlflow_experiment, regression_data, tmp_path):
    X, y, _ = regression_data
    train, held_out = slice(0, 300), slice(300, None)
    name = "promotion-regression"
    good = LinearRegression(**FAST).fit(X[train], y[train])
    # A prior pinned near zero cannot fit the slopes: a clearly worse model.
    bad = LinearRegression(**FAST, prior_scale_coef=1e-3).fit(X[train], y[train])
    first, worse, better = _register(good, name), _register(bad, name), _register(good, name)
    client = MlflowClient()

    result = promote(name, first, X[held_out], y[held_out])
    assert result.promoted and result.champion_version is None
    assert str(client.get_model_version_by_alias(name, "champion").version) == first

    result = promote(name, worse, X[held_out], y[held_out])
    assert not result.promoted
    assert result.candidate_scores["log_predictive_density"] < result.champion_scores["log_predictive_density"]
    assert result.candidate_scores["crps"] > result.champion_scores["crps"]
    assert str(client.get_model_version_by_alias(name, "champion").version) == first
    recorded = client.get_model_version(name, worse)
    assert recorded.tags["pmlearn.promotion.decision"] == "rejected"
    assert recorded.tags["pmlearn.promotion.compared_with"] == first
    assert "kept the current champion" in recorded.description

    # The same model again is not strictly better: the champion stays.
    assert not promote(name, better, X[held_out], y[held_out]).promoted

    # The command line promotes the good model over a champion that is the bad one.
    client.set_registered_model_alias(name, "champion", worse)
    csv = tmp_path / "held_out.csv"
    X[held_out].assign(target=y[held_out]).to_csv(csv, index=False)
    main(["--name", name, "--version", better, "--data", str(csv), "--target", "target"])
    assert str(client.get_model_version_by_alias(name, "champion").version) == better
    served = mlflow.pyfunc.load_model(f"models:/{name}@champion")
    np.testing.assert_allclose(served.predict(X[held_out])["prediction"], good.predict(X[held_out]))


def test_classifiers_are_compared_by_log_loss(mlflow_experiment, binary_data):
    X, y, _ = binary_data
    name = "promotion-classifier"
    good = LogisticRegression(**FAST).fit(X[:400], y[:400])
    bad = LogisticRegression(**FAST, prior_scale_coef=1e-3).fit(X[:400], y[:400])
    bad_version, good_version = _register(bad, name), _register(good, name)
    promote(name, bad_version, X[400:], y[400:])
    result = promote(name, good_version, X[400:], y[400:])
    assert result.promoted
    assert result.candidate_scores["log_loss"] < result.champion_scores["log_loss"]
    assert result.candidate_scores["brier_score"] < result.champion_scores["brier_score"]


def test_density_models_are_refused_by_name():
    X = np.random.default_rng(0).normal(size=(40, 2))
    mixture = GaussianMixture(n_components=2, covariance_type="diag", **FAST).fit(X)
    with pytest.raises(
        MlflowException, match="GaussianMixture is a density_estimator; held-out scores are for regressors"
    ):
        scoring_rules(mixture, X, None)


def test_without_held_out_data_the_alias_moves_only_by_more_than_the_stated_multiple_of_dse(
    mlflow_experiment, regression_data
):
    X, y, _ = regression_data
    X, y = X.iloc[:150], y.iloc[:150]
    name = "promotion-loo"
    settings = {**FAST, "n_draws": 1000}
    # Missing the real term x0 (slope 2): a clearly worse model on the same rows.
    partial_version = _register(LinearRegression(**settings).fit(X[["x1", "x2"]], y), name)
    full_version = _register(LinearRegression(**settings).fit(X, y), name)
    again_version = _register(LinearRegression(**{**settings, "random_seed": 1}).fit(X, y), name)
    client = MlflowClient()

    assert promote(name, partial_version).promoted  # no champion yet
    result = promote(name, full_version)
    assert result.promoted and result.primary_rule == "elpd_loo"
    difference = result.loo_difference
    assert difference["elpd_diff"] > LOO_SE_MULTIPLE * difference["dse"] > 0
    assert difference["elpd_diff"] == pytest.approx(
        result.candidate_scores["elpd_loo"] - result.champion_scores["elpd_loo"]
    )
    tags = client.get_model_version(name, full_version).tags
    assert tags["pmlearn.promotion.decision"] == "promoted"
    assert float(tags["pmlearn.promotion.loo.dse"]) == pytest.approx(difference["dse"], rel=1e-5)
    assert float(tags["pmlearn.promotion.loo.se_multiple"]) == LOO_SE_MULTIPLE
    assert "pmlearn.promotion.elpd_loo" in tags and "pmlearn.promotion.champion.elpd_loo" in tags

    # The same model, refitted with another seed, is not better by 2 dse: the champion stays.
    main(["--name", name, "--version", again_version])
    assert client.get_model_version(name, again_version).tags["pmlearn.promotion.decision"] == "rejected"
    assert "promoted only above 2 x dse" in client.get_model_version(name, again_version).description
    assert str(client.get_model_version_by_alias(name, "champion").version) == full_version
