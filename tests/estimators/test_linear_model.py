"""The linear models: parameter recovery, scores against scikit-learn, the prediction API.

Every tolerance is stated where it is used. Fits are shared through module-scoped
fixtures, so each model is fitted once per inference method.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy.special import ndtri
from sklearn.base import clone
from sklearn.datasets import load_breast_cancer, load_diabetes, load_iris
from sklearn.exceptions import NotFittedError
from sklearn.linear_model import BayesianRidge
from sklearn.linear_model import LogisticRegression as SklearnLogisticRegression
from sklearn.model_selection import GridSearchCV, train_test_split
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler

from estimators.linear_model import HierarchicalLogisticRegression, LinearRegression, LogisticRegression
from tests.conftest import FAST, FAST_NUTS
from tests.references import assert_within_monte_carlo_error, linear_regression_draws

SETTINGS = {"advi": FAST, "nuts": FAST_NUTS}
INFERENCE = pytest.mark.parametrize("inference", ["advi", "nuts"])

#: Largest error of a posterior mean coefficient / intercept against the value that made the data.
#: ADVI (mean-field, few hundred draws) gets the same budget as NUTS: both must land on the truth.
COEF_TOL = 0.15
#: Relative error of the posterior mean noise scale.
SIGMA_RTOL = 0.15


def _softmax_labels(rng, X, intercept, coef, labels):
    logits = np.column_stack([np.zeros(len(X)), intercept + X @ coef.T])
    proba = np.exp(logits - logits.max(axis=1, keepdims=True))
    proba /= proba.sum(axis=1, keepdims=True)
    index = (rng.uniform(size=(len(X), 1)) > proba.cumsum(axis=1)).sum(axis=1)
    return labels[index]


@pytest.fixture(scope="module")
def multiclass_data():
    """Seeded 3-class softmax data, class "a" the reference: logits of b and c against a."""
    rng = np.random.default_rng(5)
    X = pd.DataFrame(rng.normal(size=(900, 2)), columns=["x0", "x1"])
    truth = {"intercept": np.array([0.5, -0.5]), "coef": np.array([[1.5, -1.0], [-1.0, 2.0]])}
    y = _softmax_labels(rng, X.to_numpy(), truth["intercept"], truth["coef"], np.array(["a", "b", "c"]))
    return X, pd.Series(y, name="label"), truth


@pytest.fixture(scope="module")
def grouped_data():
    """Seeded grouped logistic data: logit p = group intercept + 1.0 x, four stores."""
    rng = np.random.default_rng(11)
    stores = np.array(["a", "b", "c", "d"])
    intercepts = np.array([-1.5, -0.5, 0.5, 1.5])
    index = rng.integers(0, len(stores), size=800)
    X = pd.DataFrame({"x": rng.normal(size=800), "store": stores[index]})
    logits = intercepts[index] + 1.0 * X["x"].to_numpy()
    y = (rng.uniform(size=len(X)) < 1 / (1 + np.exp(-logits))).astype(int)
    return X, pd.Series(y, name="bought"), {"intercepts": intercepts, "slope": 1.0}


@pytest.fixture(scope="module", params=["advi", "nuts"])
def linear_fit(request, regression_data):
    X, y, truth = regression_data
    return LinearRegression(**SETTINGS[request.param]).fit(X, y), truth


@pytest.fixture(scope="module", params=["advi", "nuts"])
def binary_fit(request, binary_data):
    X, y, truth = binary_data
    return LogisticRegression(**SETTINGS[request.param]).fit(X, y), truth


@pytest.fixture(scope="module", params=["advi", "nuts"])
def multiclass_fit(request, multiclass_data):
    X, y, truth = multiclass_data
    return LogisticRegression(**SETTINGS[request.param]).fit(X, y), truth


@pytest.fixture(scope="module", params=["advi", "nuts"])
def hierarchical_fit(request, grouped_data):
    X, y, truth = grouped_data
    return HierarchicalLogisticRegression(group_col="store", **SETTINGS[request.param]).fit(X, y), truth


@pytest.fixture(scope="module")
def regressor(regression_data):
    """The ADVI fit used by the prediction-API tests."""
    X, y, _ = regression_data
    return LinearRegression(**FAST).fit(X, y)


@pytest.fixture(scope="module")
def classifier(binary_data):
    X, y, _ = binary_data
    return LogisticRegression(**FAST).fit(X, y)


def _group_intercepts(model):
    """Posterior mean intercept of every slot: the training groups, then the unseen-group slot."""
    posterior = model.idata_.posterior
    mu, sigma = posterior["intercept_mu"].values, posterior["intercept_sigma"].values  # (chain, draw, logit)
    intercept = mu[:, :, None, :] + sigma[:, :, None, :] * posterior["intercept_z"].values
    return intercept.mean(axis=(0, 1))[:, 0]


# -- 1. parameter recovery and posterior attributes -------------------------------------


def test_linear_regression_recovers_coefficients_intercept_and_noise(linear_fit):
    model, truth = linear_fit
    assert model.coef_.shape == (3,)
    np.testing.assert_allclose(model.coef_, truth["coef"], atol=COEF_TOL)
    assert isinstance(model.intercept_, float)
    assert abs(model.intercept_ - truth["intercept"]) < COEF_TOL
    sigma = model.posterior_mean("sigma")
    assert isinstance(sigma, float)
    assert abs(sigma - truth["sigma"]) < SIGMA_RTOL * truth["sigma"]


def test_binary_logistic_regression_recovers_log_odds(binary_fit):
    model, truth = binary_fit
    assert list(model.classes_) == ["no", "yes"]  # "yes" is class 1: its log-odds are modelled
    assert model.coef_.shape == (1, 2) and model.intercept_.shape == (1,)
    np.testing.assert_allclose(model.coef_[0], truth["coef"], atol=COEF_TOL)
    np.testing.assert_allclose(model.intercept_[0], truth["intercept"], atol=COEF_TOL)


def test_multiclass_logistic_regression_recovers_log_odds_against_the_reference_class(multiclass_fit, multiclass_data):
    model, truth = multiclass_fit
    assert list(model.classes_) == ["a", "b", "c"]
    assert model.coef_.shape == (2, 2) and model.intercept_.shape == (2,)
    # Logits against the smallest class are noisy at n=900 (the maximum-likelihood error
    # here is up to 0.3), so the truth must lie within 3 posterior standard deviations ...
    posterior = model.idata_.posterior
    coef_sd = posterior["coef"].std(("chain", "draw")).values
    intercept_sd = posterior["intercept"].std(("chain", "draw")).values
    assert np.all(np.abs(model.coef_ - truth["coef"]) < 3 * coef_sd)
    assert np.all(np.abs(model.intercept_ - truth["intercept"]) < 3 * intercept_sd)
    # ... and the posterior mean must match the unpenalised maximum-likelihood fit closely.
    X, y, _ = multiclass_data
    reference = SklearnLogisticRegression(C=1e6, max_iter=5000).fit(X, y)
    np.testing.assert_allclose(model.coef_, reference.coef_[1:] - reference.coef_[0], atol=COEF_TOL)
    np.testing.assert_allclose(model.intercept_, reference.intercept_[1:] - reference.intercept_[0], atol=COEF_TOL)


def test_posterior_names_features_and_classes_as_the_user_did(multiclass_fit):
    """The posterior in the data's units carries the user's names, which ArviZ's plots and
    summaries (autolog's posterior.png and summary.csv) use as labels."""
    model, _ = multiclass_fit
    coef = model.idata_.posterior["coef"]
    assert coef.dims[2:] == ("logit", "feature")
    assert coef.coords["feature"].values.tolist() == ["x0", "x1"]
    assert coef.coords["logit"].values.tolist() == ["b vs a", "c vs a"]
    # The labels name what the values are: the row "c vs a" holds c's log-odds against a.
    np.testing.assert_array_equal(coef.sel(logit="c vs a").mean(("chain", "draw")).values, model.coef_[1])


def test_hierarchical_posterior_names_features_groups_and_the_unseen_slot(hierarchical_fit):
    model, _ = hierarchical_fit
    coef_z = model.idata_.posterior["coef_z"]
    assert coef_z.dims[2:] == ("group_label", "feature", "logit")
    assert coef_z.coords["feature"].values.tolist() == ["x"]  # the group column is not a feature
    assert coef_z.coords["group_label"].values.tolist() == ["a", "b", "c", "d", "(unseen)"]
    assert coef_z.coords["logit"].values.tolist() == ["1 vs 0"]


def test_features_of_an_array_are_named_as_scikit_learn_names_them():
    X = np.random.default_rng(0).normal(size=(40, 3))
    model = LinearRegression(**FAST).fit(X, X @ [1.0, 2.0, 3.0])
    assert model.idata_.posterior["coef"].coords["feature"].values.tolist() == ["x0", "x1", "x2"]


def test_hierarchical_model_recovers_group_intercepts_in_order_and_sign(hierarchical_fit):
    model, truth = hierarchical_fit
    assert list(model.groups_) == ["a", "b", "c", "d"]
    intercepts = _group_intercepts(model)[: len(model.groups_)]
    # Partial pooling shrinks the groups toward their mean; order and sign must survive,
    # and each within 0.4 of the intercept that made the data.
    assert list(np.argsort(intercepts)) == list(np.argsort(truth["intercepts"]))
    np.testing.assert_array_equal(np.sign(intercepts), np.sign(truth["intercepts"]))
    np.testing.assert_allclose(intercepts, truth["intercepts"], atol=0.4)
    slope = float(model.posterior_mean("coef_mu").squeeze())
    assert abs(slope - truth["slope"]) < COEF_TOL


def test_hierarchical_unseen_group_gets_population_level_probabilities(hierarchical_fit):
    model, _ = hierarchical_fit
    rows = pd.DataFrame({"x": 0.0, "store": ["a", "b", "c", "d", "a store never seen"]})
    proba = model.predict_proba(rows)[:, 1]
    seen, unseen = proba[:4], proba[4]
    assert np.all(np.diff(seen) > 0)  # the groups' own intercepts, in order
    assert seen.min() < unseen < seen.max()
    # The population draw averages over the between-group spread: near the groups' mean.
    assert abs(unseen - seen.mean()) < 0.1
    # An unseen label is not mistaken for a training group.
    assert not np.isclose(unseen, seen).any()


@INFERENCE
def test_posterior_groups_by_inference_method(inference, regression_data):
    X, y, _ = regression_data
    model = LinearRegression(**{**SETTINGS[inference], "n_draws": 50, "n_tune": 100}).fit(X.iloc[:100], y.iloc[:100])
    idata = model.idata_
    assert "posterior" in idata.children
    assert set(idata.posterior.data_vars) >= {"coef", "intercept", "sigma"}
    assert idata.posterior.attrs["pmlearn_inference"] == inference
    if inference == "advi":
        assert "fit_history" in idata.children
        loss = idata.fit_history["loss"].values
        assert loss.ndim == 1 and loss.size == model.n_iter_ > 0
        assert np.all(np.isfinite(loss))
        assert loss[-100:].mean() < loss[:100].mean()  # the ELBO improved
        assert idata.posterior.sizes["chain"] == 1 and idata.posterior.sizes["draw"] == 50
        assert "sample_stats" not in idata.children
    else:
        assert "sample_stats" in idata.children
        assert "diverging" in idata.sample_stats
        assert idata.posterior.sizes["chain"] == 2 and idata.posterior.sizes["draw"] == 50
        assert model.n_iter_ == 100 + 50
        assert "fit_history" not in idata.children
    assert model.n_posterior_draws_ == idata.posterior.sizes["chain"] * idata.posterior.sizes["draw"]


# -- 2. scores against the scikit-learn peer on bundled real data -----------------------


def _split(loader):
    X, y = loader(return_X_y=True, as_frame=True)
    return train_test_split(X, y, random_state=0)


def test_linear_regression_scores_like_bayesian_ridge_on_diabetes():
    X_train, X_test, y_train, y_test = _split(load_diabetes)
    ours = LinearRegression(**FAST).fit(X_train, y_train).score(X_test, y_test)
    peer = BayesianRidge().fit(X_train, y_train).score(X_test, y_test)
    assert ours > 0.3  # the split's R2 is about 0.36: a real fit, not a constant
    assert abs(ours - peer) < 0.03, (ours, peer)


@pytest.mark.parametrize(("loader", "margin"), [(load_breast_cancer, 0.03), (load_iris, 0.05)])
def test_logistic_regression_scores_like_sklearn(loader, margin):
    X_train, X_test, y_train, y_test = _split(loader)
    model = LogisticRegression(**FAST).fit(X_train, y_train)
    ours = model.score(X_test, y_test)
    # The peer standardises too (as our model does inside), so both see the same features.
    peer = make_pipeline(StandardScaler(), SklearnLogisticRegression()).fit(X_train, y_train).score(X_test, y_test)
    assert len(model.classes_) == y_train.nunique()
    assert abs(ours - peer) < margin, (ours, peer)
    assert ours > 0.9


# -- 4. the prediction API ------------------------------------------------------------


def test_predict_mean_and_std_shapes(regressor, regression_data):
    X, y, _ = regression_data
    mean = regressor.predict(X.iloc[:7])
    mean_again, std = regressor.predict(X.iloc[:7], return_std=True)
    assert mean.shape == std.shape == (7,)
    np.testing.assert_array_equal(mean, mean_again)
    assert np.all(std > 0)
    # Mean and std of the noise plus parameter uncertainty, as computed in NumPy from the
    # same posterior draws (tests/references.py), within 4 Monte Carlo standard errors
    # (tests/estimators/test_posterior_reference.py checks them where parameter uncertainty dominates).
    assert_within_monte_carlo_error({"mean": mean, "std": std}, *linear_regression_draws(regressor, X.iloc[:7]))
    assert regressor.score(X, y) > 0.9


def test_predict_interval_brackets_the_mean_and_covers_the_data(regressor, regression_data):
    X, y, _ = regression_data
    interval = regressor.predict_interval(X, prob=0.9)
    mean = regressor.predict(X)
    assert interval.shape == (len(X), 2)
    assert np.all(interval[:, 0] <= mean) and np.all(mean <= interval[:, 1])
    wider = regressor.predict_interval(X, prob=0.99)
    assert np.all(wider[:, 0] <= interval[:, 0]) and np.all(interval[:, 1] <= wider[:, 1])
    coverage = np.mean((interval[:, 0] <= y) & (y <= interval[:, 1]))
    assert 0.85 < coverage < 0.95, coverage


def test_sample_posterior_predictive_shape(regressor, classifier, regression_data, binary_data):
    X, _, _ = regression_data
    samples = regressor.sample_posterior_predictive(X.iloc[:5])
    assert samples.shape == (regressor.n_posterior_draws_, 5) == (FAST["n_draws"], 5)
    # Their mean is the predictive mean computed in NumPy from the posterior draws.
    assert_within_monte_carlo_error({"mean": samples.mean(axis=0)}, *linear_regression_draws(regressor, X.iloc[:5]))
    X_bin, _, _ = binary_data
    labels = classifier.sample_posterior_predictive(X_bin.iloc[:5])
    assert labels.shape == (FAST["n_draws"], 5)
    # Each label against its draw's probabilities: test_predictive.py.
    assert set(np.unique(labels)) <= set(classifier.classes_)


@pytest.mark.parametrize("linear_fit", ["nuts"], indirect=True)
def test_nuts_sample_posterior_predictive_has_one_draw_per_chain_and_draw(linear_fit, regression_data):
    """Every chain's every draw gives one predictive draw, paired with that draw's parameters."""
    nuts_regressor, _ = linear_fit
    X, _, _ = regression_data
    samples = nuts_regressor.sample_posterior_predictive(X.iloc[:3])
    posterior = nuts_regressor.idata_.posterior
    assert posterior.sizes["chain"] == FAST_NUTS["n_chains"] > 1
    assert samples.shape == (FAST_NUTS["n_chains"] * FAST_NUTS["n_draws"], 3)
    # Draw s (chain-major) is mu_s + sigma_s * Phi^-1(u_s): a chain dropped, repeated or
    # reordered pairs draws with the wrong parameters.
    mu, sigma = linear_regression_draws(nuts_regressor, X.iloc[:3])
    uniforms = nuts_regressor.posterior_predictor().uniforms[:, None]
    np.testing.assert_allclose(samples, mu + sigma * ndtri(uniforms), rtol=1e-9, atol=1e-9)


def test_a_row_predicts_the_same_alone_or_in_a_batch(regressor, classifier, regression_data, binary_data):
    X, _, _ = regression_data
    batch_mean, batch_std = regressor.predict(X.iloc[:20], return_std=True)
    batch_interval = regressor.predict_interval(X.iloc[:20])
    for row in (0, 7, 19):
        mean, std = regressor.predict(X.iloc[[row]], return_std=True)
        np.testing.assert_allclose(mean[0], batch_mean[row], rtol=1e-12)
        np.testing.assert_allclose(std[0], batch_std[row], rtol=1e-12)
        np.testing.assert_allclose(regressor.predict_interval(X.iloc[[row]])[0], batch_interval[row], rtol=1e-12)
    # Order does not matter either.
    np.testing.assert_allclose(regressor.predict(X.iloc[:20].iloc[::-1]), batch_mean[::-1], rtol=1e-12)
    X_bin, _, _ = binary_data
    batch_proba = classifier.predict_proba(X_bin.iloc[:20])
    np.testing.assert_allclose(classifier.predict_proba(X_bin.iloc[[3]])[0], batch_proba[3], rtol=1e-12)


@INFERENCE
def test_the_same_seed_gives_identical_predictions(inference, regression_data):
    X, y, _ = regression_data
    settings = {**SETTINGS[inference], "random_seed": 123, "n_draws": 100, "n_tune": 200}
    first = LinearRegression(**settings).fit(X, y)
    second = LinearRegression(**settings).fit(X, y)
    np.testing.assert_array_equal(first.predict(X.iloc[:10]), second.predict(X.iloc[:10]))
    np.testing.assert_array_equal(first.predict_interval(X.iloc[:10]), second.predict_interval(X.iloc[:10]))
    np.testing.assert_array_equal(first.coef_, second.coef_)
    other = LinearRegression(**{**settings, "random_seed": 124}).fit(X, y)
    assert not np.array_equal(first.coef_, other.coef_)


def test_clone_get_params_set_params(regressor):
    params = regressor.get_params()
    assert params["prior_scale_coef"] == 2.5 and params["n_draws"] == FAST["n_draws"]
    assert {"inference", "n_tune", "random_seed", "prior_scale_noise"} <= set(params)
    copy = clone(regressor)
    assert copy.get_params() == params
    assert not hasattr(copy, "idata_")
    with pytest.raises(NotFittedError):
        copy.predict(np.zeros((1, 3)))
    assert copy.set_params(prior_scale_coef=0.5, inference="nuts") is copy
    assert copy.prior_scale_coef == 0.5 and copy.inference == "nuts"
    assert regressor.get_params() == params  # the original is untouched
    with pytest.raises(ValueError, match="Invalid parameter 'not_a_parameter'"):
        copy.set_params(not_a_parameter=1)
    # The repr shows only what differs from the defaults, the inherited settings included.
    assert repr(LinearRegression(n_draws=10)) == "LinearRegression(n_draws=10)"


def test_pipeline_with_a_scaler(regression_data):
    X, y, _ = regression_data
    pipeline = Pipeline([("scale", StandardScaler()), ("model", LinearRegression(**FAST))]).fit(X, y)
    mean, std = pipeline.predict(X.iloc[:5], return_std=True)
    assert mean.shape == std.shape == (5,)
    assert pipeline.score(X, y) > 0.9
    # Scaling the features rescales the coefficients by the features' spread.
    np.testing.assert_allclose(pipeline["model"].coef_ / X.std(ddof=0).to_numpy(), [2.0, -1.0, 0.5], atol=COEF_TOL)


def test_grid_search_over_the_coefficient_prior(regression_data):
    X, y, _ = regression_data
    small = {**FAST, "n_draws": 50, "max_iter": 1000}
    search = GridSearchCV(LinearRegression(**small), {"prior_scale_coef": [0.01, 2.5]}, cv=2).fit(X, y)
    assert len(search.cv_results_["params"]) == 2
    # A prior of 0.01 on standardised coefficients shrinks them to nearly nothing.
    assert search.best_params_ == {"prior_scale_coef": 2.5}
    assert search.best_score_ > 0.9
    assert search.best_estimator_.predict(X.iloc[:3]).shape == (3,)
