"""The three kind bases: what scikit-learn sees, a base without stubs, and a new model written on a kind."""

from __future__ import annotations

import ast
import inspect
import pickle

import numpy as np
import pymc as pm
import pytensor.tensor as pt
import pytest
from scipy import stats
from sklearn.base import ClassifierMixin, DensityMixin, RegressorMixin, is_classifier, is_regressor

import estimators.base
from estimators.base import BayesianEstimator
from estimators.classification import BayesianClassifier
from estimators.density import BayesianDensityEstimator
from estimators.regression import BayesianRegressor
from tests.conftest import FAST
from tests.family_helpers import every_estimator

KINDS = {
    BayesianRegressor: (RegressorMixin, "regressor", "continuous"),
    BayesianClassifier: (ClassifierMixin, "classifier", "categorical"),
    BayesianDensityEstimator: (DensityMixin, "density_estimator", None),
}


@pytest.mark.parametrize("kind", KINDS, ids=lambda kind: kind.__name__)
def test_each_kind_is_its_scikit_learn_mixin_and_a_bayesian_estimator(kind):
    mixin, estimator_type, target_type = KINDS[kind]
    assert issubclass(kind, mixin) and issubclass(kind, BayesianEstimator)
    assert kind.target_type == target_type
    # The scikit-learn mixin comes first, so its tags and score are the kind's.
    assert kind.__mro__.index(mixin) < kind.__mro__.index(BayesianEstimator)
    built_ins = [model for model in every_estimator() if isinstance(model, kind)]
    assert built_ins, f"no built-in estimator is a {kind.__name__}"
    for model in built_ins:
        assert model.__sklearn_tags__().estimator_type == estimator_type
        assert is_regressor(model) == (kind is BayesianRegressor)
        assert is_classifier(model) == (kind is BayesianClassifier)


def test_every_built_in_is_exactly_one_kind():
    for model in every_estimator():
        assert sum(isinstance(model, kind) for kind in KINDS) == 1, type(model).__name__


def test_the_base_has_no_stubs_and_no_branch_on_the_kind():
    source = inspect.getsource(estimators.base)
    tree = ast.parse(source)
    raised = [ast.unparse(node.exc) for node in ast.walk(tree) if isinstance(node, ast.Raise) and node.exc is not None]
    assert not [text for text in raised if "NotImplementedError" in text]
    for kind_test in ("target_tags", "estimator_type", "classes_", "is_regressor", "is_classifier", "Mixin)"):
        assert kind_test not in source.split("_KIND_ALIASES = {")[0], kind_test
    # What a kind must give is declared, so a class that is no kind cannot be made.
    assert {
        "build_model",
        "predict_frame",
        "proper_scores",
        "predictive_check",
    } <= BayesianEstimator.__abstractmethods__

    class NoKind(BayesianEstimator):
        def build_model(self, X, y):
            pm.Normal("y_obs", 0.0, 1.0, observed=y)

    with pytest.raises(TypeError, match="abstract"):
        NoKind()


def test_the_mixin_names_are_the_kind_bases_for_users_code():
    from estimators.base import BayesianClassifierMixin, BayesianDensityMixin, BayesianRegressorMixin

    assert BayesianRegressorMixin is BayesianRegressor
    assert BayesianClassifierMixin is BayesianClassifier
    assert BayesianDensityMixin is BayesianDensityEstimator
    # A class pickled by value by 0.2.0 (serialization_format="cloudpickle") names its base so.
    assert pickle.loads(b"cestimators.base\nBayesianRegressorMixin\n.") is BayesianRegressor

    class OldSpelling(BayesianRegressorMixin, BayesianEstimator):
        def build_model(self, X, y):
            pm.Normal("y_obs", 0.0, 1.0, observed=y)

    assert isinstance(OldSpelling(), BayesianRegressor)
    with pytest.raises(AttributeError, match="NoSuchMixin"):
        estimators.base.NoSuchMixin  # noqa: B018


class CountRegression(BayesianRegressor):
    """A new model on the regressor kind: Poisson counts with a log link, written with the template only."""

    def __init__(self, *, prior_scale=1.0, **inference_params):
        super().__init__(**inference_params)
        self.prior_scale = prior_scale

    def build_model(self, X, y):
        intercept = pm.Normal("intercept", 0.0, 3.0)
        coef = pm.Normal("coef", 0.0, self.prior_scale, shape=X.get_value().shape[1])
        pm.Poisson("y_obs", mu=pt.exp(intercept + pt.dot(X, coef)), observed=y, shape=X.shape[0])


@pytest.fixture(scope="module")
def counts():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(150, 2))
    return X, rng.poisson(np.exp(1.0 + X @ [0.5, -0.3])).astype(float)


@pytest.fixture(scope="module")
def count_model(counts):
    X, y = counts
    return CountRegression(**FAST).fit(X, y)


def test_a_new_model_on_a_kind_gets_the_kinds_predictions(count_model, counts):
    X, y = counts
    frame = count_model.predict_frame(X[:5], return_std=True, interval_prob=0.9, quantiles=[0.5], draws=3)
    assert list(frame.columns) == ["prediction", "std", "lower", "upper", "quantile_0.5", "draw_0", "draw_1", "draw_2"]
    # Poisson draws: whole numbers (quantiles interpolate between them), and the rate recovered.
    draws = frame[["draw_0", "draw_1", "draw_2"]].to_numpy()
    assert np.all(draws % 1 == 0) and np.all(count_model.sample_posterior_predictive(X[:5]) % 1 == 0)
    np.testing.assert_allclose(count_model.posterior_mean("coef"), [0.5, -0.3], atol=0.15)
    coverage = np.mean(
        (count_model.predict_interval(X, prob=0.9)[:, 0] <= y) & (y <= count_model.predict_interval(X, prob=0.9)[:, 1])
    )
    assert 0.85 <= coverage <= 1.0


def test_a_new_model_on_a_kind_gets_the_log_likelihood_and_scores(count_model, counts):
    X, y = counts
    posterior = count_model.idata_.posterior.to_dataset().stack(sample=("chain", "draw"))
    rate = np.exp(posterior["intercept"].values[:, None] + (X @ posterior["coef"].values).T)
    expected = stats.poisson.logpmf(y[None, :], rate)
    np.testing.assert_allclose(count_model.pointwise_log_likelihood(X, y), expected, rtol=1e-9)
    np.testing.assert_allclose(count_model.training_log_likelihood().values.reshape(len(rate), -1), expected, rtol=1e-9)
    scores = count_model.proper_scores(X, y)
    lpd = np.log(np.exp(expected).mean(axis=0)).mean()
    assert scores["log_score"] == pytest.approx(lpd, rel=1e-9)
    assert set(scores) == {"log_score", "crps", "coverage_50", "coverage_90", "coverage_95"}
    check = count_model.predictive_check(X, y, shown_rows=np.arange(10), n_shown_draws=4, coverage_prob=0.9)
    assert check["draws"].shape == (4, 10)
    np.testing.assert_array_equal(check["observed"], y[:10])
    assert check["score"] == pytest.approx(count_model.score(X, y))
    assert check["coverage"] == pytest.approx(scores["coverage_90"])
