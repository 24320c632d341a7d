"""bambi formula models as estimators, checked against bambi's own fit and predict.

Each reference is bambi itself: its NUTS fit of the same formula, priors and data (the
posterior of the common terms), its ``predict(kind="response_params")`` evaluated on our
posterior (the per-draw means that our predictive draws scatter around), and its
``compute_log_likelihood``.
"""

from __future__ import annotations

import functools
import json

import mlflow
import numpy as np
import pandas as pd
import pytest
import xarray as xr
from scipy.special import gammaln
from sklearn.base import clone
from sklearn.model_selection import GridSearchCV

import mlflow_pmlearn
from estimators.formula import FORMULA_DATA, BambiClassifier, BambiRegressor

bmb = pytest.importorskip("bambi", reason='pip install "mlflow-pmlearn[bambi]"')

NUTS = {
    "inference": "nuts",
    "n_draws": 1000,
    "n_tune": 1000,
    "n_chains": 2,
    "random_seed": 1,
    "progressbar": False,
}
LEVELS = list("abcdefgh")


def _groups(rng, n):
    return rng.choice(LEVELS, n), dict(zip(LEVELS, rng.normal(0.0, 0.5, len(LEVELS))))


def poisson_data(n=240, seed=0):
    rng = np.random.default_rng(seed)
    g, effect = _groups(rng, n)
    X = pd.DataFrame({"x": rng.normal(size=n), "c": rng.choice(["u", "v", "w"], n), "g": g})
    rate = np.exp(0.5 + 0.3 * X["x"] + X["c"].map({"u": 0.0, "v": 0.2, "w": -0.2}) + X["g"].map(effect))
    return X, pd.Series(rng.poisson(rate), name="count")


def gaussian_data(n=200, seed=1):
    rng = np.random.default_rng(seed)
    g, effect = _groups(rng, n)
    slope = dict(zip(LEVELS, rng.normal(0.0, 0.3, len(LEVELS))))
    X = pd.DataFrame({"x": rng.normal(size=n), "g": g})
    y = 1.0 + (0.8 + X["g"].map(slope)) * X["x"] + X["g"].map(effect) + rng.normal(0.0, 0.5, n)
    return X, pd.Series(y, name="y")


def bernoulli_data(n=300, seed=2):
    rng = np.random.default_rng(seed)
    X = pd.DataFrame({"x1": rng.normal(size=n), "x2": rng.normal(size=n)})
    logit = -0.3 + 1.2 * X["x1"] - 0.7 * X["x2"]
    return X, pd.Series((rng.uniform(size=n) < 1 / (1 + np.exp(-logit))).astype(int), name="bought")


CASES = {
    "poisson": ("count ~ x + c + (1|g)", "poisson", poisson_data, False),
    "gaussian": ("y ~ x + (x|g)", "gaussian", gaussian_data, True),
    "bernoulli": ("bought ~ x1 + x2", "bernoulli", bernoulli_data, True),
}


@functools.cache
def fit_case(case: str) -> tuple:
    """Our fit and bambi's own NUTS fit of one formula, family and data set (made once per case)."""
    formula, family, make_data, noncentered = CASES[case]
    X, y = make_data()
    estimator_class = BambiClassifier if family == "bernoulli" else BambiRegressor
    ours = estimator_class(formula, family=family, noncentered=noncentered, **NUTS).fit(X, y)
    reference = bmb.Model(formula, pd.concat([X, y], axis=1), family=family, noncentered=noncentered)
    idata = reference.fit(draws=1000, tune=1000, chains=2, cores=1, random_seed=2, progressbar=False)
    return case, ours, reference, idata, X, y


@pytest.fixture(scope="module", params=list(CASES))
def fitted(request):
    return fit_case(request.param)


@pytest.fixture(scope="module")
def poisson_fit():
    """The Poisson case: the model with a group intercept and a categorical predictor."""
    return fit_case("poisson")


def _common_terms(model) -> list[str]:
    component = model.parameters[model.family.likelihood.parent]
    return ["Intercept", *component.common_terms]


def test_posterior_of_common_terms_matches_bambis_own_fit(fitted):
    _, ours, reference, idata, _, _ = fitted
    for name in _common_terms(reference):
        mine = ours.idata_.posterior[name].stack(sample=("chain", "draw")).values
        theirs = idata.posterior[name].stack(sample=("chain", "draw")).values
        mine, theirs = (
            mine.reshape(-1, mine.shape[-1]),
            theirs.reshape(-1, theirs.shape[-1]),
        )
        sd = theirs.std(axis=-1)
        np.testing.assert_array_less(np.abs(mine.mean(axis=-1) - theirs.mean(axis=-1)), 0.15 * sd, err_msg=name)
        np.testing.assert_allclose(mine.std(axis=-1), sd, rtol=0.2, err_msg=name)


def _new_rows(case: str, X: pd.DataFrame) -> pd.DataFrame:
    rows = X.sample(40, random_state=3).reset_index(drop=True)
    rng = np.random.default_rng(4)
    for column in rows.columns:
        if rows[column].dtype.kind == "f":
            rows[column] = rng.normal(size=len(rows))
    return rows


def test_predictive_means_match_bambis_predict_on_our_posterior(fitted):
    case, ours, reference, _, X, _ = fitted
    rows = _new_rows(case, X)
    parent = reference.family.likelihood.parent
    # bambi computes the per-draw means itself (formulae's design of the new rows, its own link).
    means = reference.predict(ours.idata_, data=rows, kind="response_params", inplace=False).posterior[parent]
    means = means.stack(sample=("chain", "draw")).transpose("sample", ...).values
    if case == "bernoulli":  # probabilities are means over the draws: no predictive noise
        np.testing.assert_allclose(ours.predict_proba(rows)[:, 1], means.mean(axis=0), rtol=1e-9)
        return
    # Our predictive mean is the likelihood's mean averaged over the draws: bambi's, exactly.
    np.testing.assert_allclose(ours.predict(rows), means.mean(axis=0), rtol=1e-9)
    draws = ours.sample_posterior_predictive(rows)
    assert draws.shape == means.shape
    # The predictive draws scatter around it by the Monte Carlo error of one draw per posterior draw.
    standard_error = draws.std(axis=0) / np.sqrt(len(draws))
    assert np.all(np.abs(draws.mean(axis=0) - means.mean(axis=0)) < 4.5 * standard_error + 1e-9)


def test_unseen_group_is_predicted_from_the_population(poisson_fit):
    _, ours, *_ = poisson_fit
    rows = pd.DataFrame({"x": [0.0, 1.0], "c": ["u", "v"], "g": ["never seen", "never seen"]})
    post = ours.idata_.posterior.to_dataset().stack(sample=("chain", "draw"))
    c_effect = np.vstack([np.zeros(post.sizes["sample"]), post["c"].values])  # reference level u
    eta = post["Intercept"].values + np.outer([0.0, 1.0], post["x"].values) + c_effect[[0, 1]]
    # brms's sample_new_levels="gaussian": per posterior draw, a new group effect sigma * z with
    # z ~ N(0, 1). The chance of each count is that Poisson pmf averaged over z (Gauss-Hermite),
    # then over the draws: bounded, so its Monte Carlo error is binomial (the mean's is
    # lognormal-tailed and slow to settle).
    nodes, weights = np.polynomial.hermite.hermgauss(60)
    rates = np.exp(eta[..., None] + np.sqrt(2) * post["1|g_sigma"].values[:, None] * nodes)
    draws = ours.sample_posterior_predictive(rows)
    for count in range(4):
        pmf = np.exp(count * np.log(rates) - rates - gammaln(count + 1)) @ weights / np.sqrt(np.pi)
        expected, observed = pmf.mean(axis=1), (draws == count).mean(axis=0)
        standard_error = np.sqrt(expected * (1 - expected) / len(draws))
        np.testing.assert_array_less(np.abs(observed - expected), 4.5 * standard_error, err_msg=f"P(y={count})")
    # Wider than the same row in a seen group: the between-group spread is in it.
    seen = rows.assign(g="a")
    assert np.all(ours.predict(rows, return_std=True)[1] > ours.predict(seen, return_std=True)[1])


def test_pointwise_log_likelihood_matches_bambis(fitted):
    _, ours, reference, *_ = fitted
    theirs = reference.compute_log_likelihood(ours.idata_, inplace=False).log_likelihood
    (theirs,) = theirs.data_vars.values()
    mine = ours.training_log_likelihood()
    np.testing.assert_allclose(mine.values, theirs.values, rtol=1e-8, atol=1e-10)


def test_save_and_load_predict_identically_without_pickle(fitted, tmp_path):
    case, ours, _, _, X, _ = fitted
    path = tmp_path / case
    mlflow_pmlearn.save_model(ours, path)
    assert not list(path.rglob("*.pkl"))
    config = json.loads((path / "estimator" / "estimator.json").read_text())
    assert config["estimator_class"].startswith("estimators.formula.")  # a built-in: nothing imported from the folder
    assert "bambi==" in (path / "requirements.txt").read_text()
    loaded = mlflow_pmlearn.load_model(path)
    rows = _new_rows(case, X)
    if case == "bernoulli":
        np.testing.assert_array_equal(loaded.predict_proba(rows), ours.predict_proba(rows))
    else:
        np.testing.assert_array_equal(loaded.predict_interval(rows, 0.9), ours.predict_interval(rows, 0.9))
        np.testing.assert_array_equal(loaded.predict(rows), ours.predict(rows))


def test_categorical_classifier_has_one_probability_per_class():
    rng = np.random.default_rng(5)
    n = 240
    X = pd.DataFrame({"x": rng.normal(size=n)})
    logits = np.column_stack([np.zeros(n), 0.5 + 1.5 * X["x"], -0.5 - 1.0 * X["x"]])
    p = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    y = pd.Series(np.array(["bus", "car", "walk"])[(rng.uniform(size=(n, 1)) > p.cumsum(axis=1)).sum(axis=1)])
    fast = {**NUTS, "n_draws": 300, "n_tune": 300}
    model = BambiClassifier("mode ~ x", family="categorical", **fast).fit(X, y)
    assert model.classes_.tolist() == ["bus", "car", "walk"]
    rows = pd.DataFrame({"x": [-1.0, 0.0, 2.0]})
    proba = model.predict_proba(rows)
    reference = bmb.Model("mode ~ x", pd.concat([X, y.rename("mode")], axis=1), family="categorical")
    reference.build()
    means = reference.predict(model.idata_, data=rows, kind="response_params", inplace=False).posterior["p"]
    np.testing.assert_allclose(proba, means.mean(("chain", "draw")).values, rtol=1e-9)
    assert model.predict(rows).tolist() == model.classes_[proba.argmax(axis=1)].tolist()


def test_refuses_what_cannot_be_saved_as_data():
    X, y = bernoulli_data(n=50)
    with pytest.raises(TypeError, match="custom distribution"):
        BambiClassifier("bought ~ x1", priors={"x1": bmb.Prior("Normal", dist=lambda name: None)}).fit(X, y)
    with pytest.raises(TypeError, match="saves its priors as data"):
        BambiClassifier("bought ~ x1", priors={"x1": lambda: 0}).fit(X, y)
    with pytest.raises(TypeError, match="custom bambi Family cannot be saved without pickle"):
        BambiRegressor(
            "bought ~ x1",
            family=bmb.Family(
                "custom",
                bmb.Likelihood("Normal", params=["mu", "sigma"], parent="mu"),
                {},
            ),
        ).fit(X, y)


def test_priors_given_as_dicts_equal_prior_objects_and_clone():
    objects = {"x": bmb.Prior("Normal", mu=0, sigma=bmb.Prior("HalfNormal", sigma=2))}
    model = BambiRegressor("y ~ x", priors=objects, n_draws=10)
    saved = model.saved_params()["priors"]
    assert saved == {
        "x": {
            "name": "Normal",
            "args": {
                "mu": 0.0,
                "sigma": {"name": "HalfNormal", "args": {"sigma": 2.0}},
            },
        }
    }
    json.dumps(saved)
    assert BambiRegressor("y ~ x", priors=saved).saved_params()["priors"] == saved
    assert clone(model).get_params()["priors"] is not None


def test_bad_rows_are_named(poisson_fit):
    _, ours, _, _, X, _ = poisson_fit
    rows = X.head(3).copy()
    with pytest.raises(ValueError, match=r"'c'.*|zz"):
        ours.predict(rows.assign(c=["u", "zz", "v"]))
    with pytest.raises(ValueError, match=r"Column 'x' of X .* row 1"):
        ours.predict(rows.assign(x=[0.0, np.nan, 1.0]))
    with pytest.raises(ValueError, match="missing column"):
        ours.predict(rows.drop(columns="x"))


def test_grid_search_over_the_link():
    X, y = bernoulli_data()
    fast = {"inference": "advi", "n_draws": 200, "max_iter": 3000, "random_seed": 0, "progressbar": False}
    search = GridSearchCV(BambiClassifier("bought ~ x1 + x2", **fast), {"link": ["logit", "probit"]}, cv=2, refit=False)
    search.fit(X, y)
    # The seeded data are logistic with clear slopes: both links classify about 70% of rows right.
    assert np.all((search.cv_results_["mean_test_score"] > 0.6) & (search.cv_results_["mean_test_score"] < 0.9))


def test_a_trace_without_its_training_columns_is_refused_at_load(poisson_fit, tmp_path):
    from mlflow.exceptions import MlflowException

    from mlflow_pmlearn.serialization import load_estimator, save_estimator

    _, ours, *_ = poisson_fit
    damaged = clone(ours)
    damaged.__dict__.update({k: v for k, v in ours.__dict__.items() if k.endswith("_")})
    damaged.idata_ = ours.idata_.copy()
    del damaged.idata_[FORMULA_DATA]
    save_estimator(damaged, tmp_path)
    with pytest.raises(MlflowException, match="formula_data"):
        load_estimator(tmp_path)


def _family_data(family: str, n: int = 100) -> tuple[pd.DataFrame, pd.Series]:
    """Seeded responses of the family, with a mean that rises with ``x``."""
    rng = np.random.default_rng(6)
    X = pd.DataFrame({"x": rng.normal(size=n)})
    eta = 0.3 + 0.4 * X["x"].to_numpy()
    mean, noise = np.exp(eta), 0.3 * rng.normal(size=n)
    counts = rng.negative_binomial(3.0, 3.0 / (3.0 + mean)) if "negativebinomial" in family else rng.poisson(mean)
    present = rng.uniform(size=n) < 0.7
    y = {
        "gamma": rng.gamma(3.0, mean / 3.0),
        "beta": rng.beta(10 / (1 + np.exp(-eta)), 10 / (1 + np.exp(eta))),
        "t": eta + 0.3 * rng.standard_t(4, n),
        "exponential": rng.exponential(mean),
        "wald": rng.wald(mean, 5.0),
        "vonmises": rng.vonmises(eta, 8.0),
        "laplace": eta + rng.laplace(0.0, 0.3, n),
        "asymmetriclaplace": eta + rng.laplace(0.0, 0.3, n),
        "lognormal": np.exp(eta + noise),
        "weibull": mean * rng.weibull(2.0, n),
        "exgaussian": eta + noise + rng.exponential(0.5, n),
        "hurdle_gamma": np.where(present, rng.gamma(3.0, mean / 3.0), 0.0),
        "hurdle_lognormal": np.where(present, np.exp(eta + noise), 0.0),
    }.get(family)
    if y is None:  # counts: plain, zero-inflated or hurdle
        y = np.where(present, np.maximum(counts, 1) if family.startswith("hurdle") else counts, 0)
    return X, pd.Series(y, name="y")


def _hurdle_poisson_mean(p):
    return p["psi"] * p["mu"] / (1 - np.exp(-p["mu"]))


def _hurdle_negativebinomial_mean(p):
    return p["psi"] * p["mu"] / (1 - (p["alpha"] / (p["mu"] + p["alpha"])) ** p["alpha"])


#: family -> (link, the response's mean at each posterior draw from bambi's response parameters).
#: For most families bambi's ``mu`` is the mean; zero-inflated and hurdle families keep a
#: count with probability ``psi`` (a hurdle one truncated above 0).
FAMILY_MEANS = {
    "gamma": ("log", lambda p: p["mu"]),
    "negativebinomial": (None, lambda p: p["mu"]),
    "beta": (None, lambda p: p["mu"]),
    "t": (None, lambda p: p["mu"]),
    "exponential": (None, lambda p: p["mu"]),
    "wald": ("log", lambda p: p["mu"]),
    "vonmises": (None, lambda p: p["mu"]),  # concentrated far from +-pi: the linear mean is mu
    "laplace": (None, lambda p: p["mu"]),
    "asymmetriclaplace": (None, lambda p: p["mu"] - (p["kappa"] - 1 / p["kappa"]) / p["b"]),
    "lognormal": (None, lambda p: np.exp(p["mu"] + p["sigma"] ** 2 / 2)),
    "weibull": (None, lambda p: p["mu"]),
    "exgaussian": (None, lambda p: p["mu"] + p["nu"]),
    "zero_inflated_poisson": (None, lambda p: p["psi"] * p["mu"]),
    "zero_inflated_negativebinomial": (None, lambda p: p["psi"] * p["mu"]),
    "hurdle_poisson": (None, _hurdle_poisson_mean),
    "hurdle_negativebinomial": (None, _hurdle_negativebinomial_mean),
    "hurdle_gamma": (None, lambda p: p["psi"] * p["mu"]),
    "hurdle_lognormal": (None, lambda p: p["psi"] * np.exp(p["mu"] + p["sigma"] ** 2 / 2)),
}


@pytest.mark.parametrize("family", list(FAMILY_MEANS))
def test_each_univariate_family_predicts_bambis_mean_and_round_trips(family, tmp_path):
    link, mean_of = FAMILY_MEANS[family]
    X, y = _family_data(family)
    fast = {**NUTS, "n_draws": 200, "n_tune": 200, "n_chains": 1}
    model = BambiRegressor("y ~ x", family=family, link=link, **fast).fit(X, y)
    rows = pd.DataFrame({"x": [-1.0, 0.0, 1.0]})
    reference = bmb.Model("y ~ x", pd.concat([X, y], axis=1), family=family, link=link)
    reference.build()
    params = reference.predict(model.idata_, data=rows, kind="response_params", inplace=False).posterior.to_dataset()
    expected = mean_of(params.stack(sample=("chain", "draw"))).transpose("sample", ...).values
    draws = model.sample_posterior_predictive(rows)
    assert draws.shape == (200, 3)
    standard_error = draws.std(axis=0) / np.sqrt(len(draws))
    np.testing.assert_array_less(np.abs(model.predict(rows) - expected.mean(axis=0)), 4.5 * standard_error)
    mlflow_pmlearn.save_model(model, tmp_path / family)
    loaded = mlflow_pmlearn.load_model(tmp_path / family)
    np.testing.assert_array_equal(loaded.predict_interval(rows, 0.9), model.predict_interval(rows, 0.9))


def test_an_offset_term_scales_the_mean_as_bambi_does():
    rng = np.random.default_rng(7)
    n = 150
    X = pd.DataFrame({"x": rng.normal(size=n), "log_exposure": np.log(rng.uniform(0.5, 4.0, n))})
    y = pd.Series(rng.poisson(np.exp(X["log_exposure"] + 0.2 + 0.5 * X["x"])), name="claims")
    formula = "claims ~ x + offset(log_exposure)"
    fast = {**NUTS, "n_draws": 300, "n_tune": 300, "n_chains": 1}
    model = BambiRegressor(formula, family="poisson", **fast).fit(X, y)
    posterior = model.idata_.posterior
    assert abs(float(posterior["x"].mean()) - 0.5) < 0.15 and abs(float(posterior["Intercept"].mean()) - 0.2) < 0.2
    rows = pd.DataFrame({"x": [0.5, 0.5], "log_exposure": [0.0, np.log(3.0)]})
    reference = bmb.Model(formula, pd.concat([X, y], axis=1), family="poisson")
    reference.build()
    means = reference.predict(model.idata_, data=rows, kind="response_params", inplace=False).posterior["mu"]
    means = means.stack(sample=("chain", "draw")).transpose("sample", ...).values
    np.testing.assert_allclose(means[:, 1], 3.0 * means[:, 0])  # bambi's own means carry the offset
    draws = model.sample_posterior_predictive(rows)
    standard_error = draws.std(axis=0) / np.sqrt(len(draws))
    np.testing.assert_array_less(np.abs(draws.mean(axis=0) - means.mean(axis=0)), 4.5 * standard_error)


def test_families_outside_a_univariate_response_are_refused_at_fit():
    X, y = _family_data("poisson", n=20)
    with pytest.raises(ValueError, match="'multinomial' is multivariate.*; formula models do not support it"):
        BambiRegressor("y ~ x", family="multinomial").fit(X, y)


def binomial_data(n=150, seed=8):
    """Seeded successes out of a varying number of trials, logit ``0.2 + 0.7 x`` plus a group effect."""
    rng = np.random.default_rng(seed)
    g, effect = _groups(rng, n)
    X = pd.DataFrame({"x": rng.normal(size=n), "g": g, "n": rng.integers(1, 20, n)})
    p = 1 / (1 + np.exp(-(0.2 + 0.7 * X["x"] + X["g"].map(effect))))
    return X, pd.Series(rng.binomial(X["n"], p), name="k")


#: family -> the response's mean per draw from bambi's response parameters, given the trials.
BINOMIAL_MEANS = {
    "binomial": lambda p, trials: trials * p["p"],
    "beta_binomial": lambda p, trials: trials * p["mu"],
    "zero_inflated_binomial": lambda p, trials: p["psi"] * trials * p["p"],
}


@pytest.mark.parametrize("family", list(BINOMIAL_MEANS))
def test_binomial_families_take_the_trials_from_a_column_of_X(family, tmp_path):
    X, y = binomial_data()
    formula = "p(k, n) ~ x + (1|g)"
    fast = {**NUTS, "n_draws": 300, "n_tune": 300, "n_chains": 1}
    model = BambiRegressor(formula, family=family, **fast).fit(X, y)
    reference = bmb.Model(formula, pd.concat([X, y], axis=1), family=family)
    reference.build()
    # New rows bring their own trials; the same row with 4x the trials has 4x the mean.
    rows = pd.DataFrame({"x": [-1.0, 0.0, 1.0, 1.0], "g": ["a", "b", "c", "c"], "n": [5, 10, 10, 40]})
    params = reference.predict(model.idata_, data=rows, kind="response_params", inplace=False).posterior.to_dataset()
    trials = xr.DataArray(rows["n"].to_numpy(), dims="__obs__")
    expected = BINOMIAL_MEANS[family](params, trials).stack(sample=("chain", "draw")).transpose("sample", ...).values
    draws = model.sample_posterior_predictive(rows)
    assert np.all((draws >= 0) & (draws <= rows["n"].to_numpy())) and np.all(draws == np.round(draws))
    standard_error = draws.std(axis=0) / np.sqrt(len(draws))
    np.testing.assert_array_less(np.abs(model.predict(rows) - expected.mean(axis=0)), 4.5 * standard_error)
    theirs = reference.compute_log_likelihood(model.idata_, inplace=False).log_likelihood
    (theirs,) = theirs.data_vars.values()
    np.testing.assert_allclose(model.training_log_likelihood().values, theirs.values, rtol=1e-8, atol=1e-10)
    mlflow_pmlearn.save_model(model, tmp_path / family)
    served = mlflow.pyfunc.load_model(str(tmp_path / family))
    params = {"return_std": True, "interval_prob": 0.9}
    pd.testing.assert_frame_equal(served.predict(rows, params=params), model.predict_frame(rows, **params))
    loaded = mlflow_pmlearn.load_model(tmp_path / family)
    np.testing.assert_array_equal(loaded.predict_interval(rows, 0.9), model.predict_interval(rows, 0.9))
    np.testing.assert_array_equal(loaded.predict(rows), model.predict(rows))


def test_binomial_trials_and_successes_are_checked():
    X, y = binomial_data(n=30)
    fast = {"inference": "advi", "n_draws": 20, "max_iter": 200, "random_seed": 0, "progressbar": False}
    with pytest.raises(ValueError, match=r"needs the number of trials .* p\(successes, trials\)"):
        BambiRegressor("k ~ x", family="binomial", **fast).fit(X, y)
    with pytest.raises(ValueError, match="X has no column 'm', the number of trials"):
        BambiRegressor("p(k, m) ~ x", family="binomial", **fast).fit(X, y)
    with pytest.raises(ValueError, match=r"y \(the successes\) has the value .* at row 3"):
        BambiRegressor("p(k, n) ~ x", family="binomial", **fast).fit(X, y.where(y.index != 3, 99))
    model = BambiRegressor("p(k, 20) ~ x", family="binomial", **fast).fit(X, y)  # a number of trials
    assert np.all(model.sample_posterior_predictive(X.head(3)) <= 20)
    with pytest.raises(ValueError, match=r"Column 'n' of X \(the number of trials\) has the value -1 at row 1"):
        BambiRegressor("p(k, n) ~ x", family="binomial", **fast).fit(X, y).predict(X.head(3).assign(n=[2, -1, 3]))


def ordinal_data(n=200, seed=9):
    """Seeded ordered ratings: a logistic latent ``x`` plus a group effect, cut at three thresholds."""
    rng = np.random.default_rng(seed)
    g, effect = _groups(rng, n)
    X = pd.DataFrame({"x": rng.normal(size=n), "g": g})
    latent = X["x"] + X["g"].map(effect) + rng.logistic(size=n)
    levels = ["low", "mid", "high", "top"]  # not in sorted order
    ratings = pd.Categorical(np.array(levels)[np.digitize(latent, [-1.0, 0.3, 1.5])], categories=levels, ordered=True)
    return X, pd.Series(ratings, name="rating")


@pytest.mark.parametrize("family", ["cumulative", "sratio"])
def test_ordinal_families_predict_bambis_probabilities_per_level_in_order(family, tmp_path):
    X, y = ordinal_data()
    formula = "rating ~ x + (1|g)"
    fast = {**NUTS, "n_draws": 300, "n_tune": 300, "n_chains": 1}
    model = BambiClassifier(formula, family=family, **fast).fit(X, y)
    assert model.classes_.tolist() == ["low", "mid", "high", "top"]
    # The thresholds under bambi's name, ordered; x's effect recovered.
    thresholds = model.idata_.posterior["threshold"].mean(("chain", "draw")).values
    assert thresholds.shape == (3,) and np.all(np.diff(thresholds) > 0)
    assert float(model.idata_.posterior["x"].mean()) == pytest.approx(1.0, abs=0.35)
    reference = bmb.Model(formula, pd.concat([X, y], axis=1), family=family)
    reference.build()
    rows = pd.DataFrame({"x": [-1.0, 0.0, 2.0], "g": ["a", "b", "c"]})
    means = reference.predict(model.idata_, data=rows, kind="response_params", inplace=False).posterior["p"]
    proba = model.predict_proba(rows)
    np.testing.assert_allclose(proba, means.mean(("chain", "draw")).values, rtol=1e-9)
    assert model.predict(rows).tolist() == model.classes_[proba.argmax(axis=1)].tolist()
    theirs = reference.compute_log_likelihood(model.idata_, inplace=False).log_likelihood
    (theirs,) = theirs.data_vars.values()
    np.testing.assert_allclose(model.training_log_likelihood().values, theirs.values, rtol=1e-8, atol=1e-10)
    mlflow_pmlearn.save_model(model, tmp_path / family)
    served = mlflow.pyfunc.load_model(str(tmp_path / family))
    pd.testing.assert_series_equal(served.predict(rows), model.predict_frame(rows)["prediction"])
    served_proba = served.predict(rows, params={"predict_proba": True})
    pd.testing.assert_frame_equal(served_proba, model.predict_frame(rows))
    np.testing.assert_array_equal(mlflow_pmlearn.load_model(tmp_path / family).predict_proba(rows), proba)
