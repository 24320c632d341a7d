"""GaussianMixture and DirichletProcessMixture: recovery, scikit-learn peers, API checks, flavor."""

from __future__ import annotations

import uuid

import mlflow
import mlflow.pyfunc
import numpy as np
import pandas as pd
import pytest
from conftest import FAST, FAST_NUTS
from family_helpers import assert_saved_without_pickle
from mlflow.models import Model
from pymc.distributions.distribution import support_point
from scipy.special import logsumexp
from scipy.stats import multivariate_normal
from sklearn.datasets import load_iris
from sklearn.mixture import BayesianGaussianMixture
from sklearn.mixture import GaussianMixture as SklearnGaussianMixture
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import StandardScaler

import mlflow_pmlearn
from estimators.mixture import DirichletProcessMixture, GaussianMixture

# Three clusters whose first coordinates increase: the components' order under the constraint.
MEANS = np.array([[-4.0, -1.0], [0.0, 3.0], [4.0, 0.0]])
COVARIANCES = np.array([[[1.0, 0.5], [0.5, 1.0]], [[0.5, 0.0], [0.0, 1.5]], [[1.0, -0.4], [-0.4, 0.6]]])
WEIGHTS = np.array([0.5, 0.3, 0.2])
CORNERS = np.array([[-6.0, -6.0], [-6.0, 6.0], [6.0, -6.0], [6.0, 6.0]])


@pytest.fixture(scope="module")
def clusters():
    rng = np.random.default_rng(5)
    labels = rng.choice(3, size=400, p=WEIGHTS)
    X = np.stack([rng.multivariate_normal(MEANS[k], COVARIANCES[k]) for k in labels])
    return pd.DataFrame(X, columns=["x0", "x1"]), labels


@pytest.fixture(scope="module")
def mixture(clusters):
    X, _ = clusters
    return GaussianMixture(n_components=3, **FAST).fit(X)


@pytest.fixture(scope="module")
def separated():
    """Four well-separated clusters of 80 rows, at the corners of a square."""
    rng = np.random.default_rng(8)
    return np.concatenate([rng.normal(corner, 1.0, size=(80, 2)) for corner in CORNERS])


@pytest.fixture(scope="module")
def dirichlet_process(separated):
    return DirichletProcessMixture(n_components=8, covariance_type="diag", **FAST).fit(separated)


def test_recovers_clusters_in_order(mixture, clusters):
    X, labels = clusters
    counts = np.bincount(labels) / len(labels)
    # Standard errors: means <= 1.2 / sqrt(80) = 0.14, weights <= 0.025, variances <= 0.25.
    np.testing.assert_allclose(mixture.means_, MEANS, atol=0.35)
    np.testing.assert_allclose(mixture.weights_, counts, atol=0.05)
    np.testing.assert_allclose(mixture.covariances_, COVARIANCES, atol=0.4)
    # The ordering constraint makes component k the cluster with the k-th smallest x0.
    assert (mixture.predict(X) == labels).mean() > 0.97


def test_covariance_factors_start_at_pymcs_own_default(mixture):
    """The explicit start of the Cholesky factors (which spares compiling the prior's sampler)
    is the start PyMC would choose: the fit and its draws are PyMC's."""
    model = mixture.pymc_model()
    for k in range(mixture.n_components):
        factor = model[f"chol_cov_std_{k}"]
        np.testing.assert_array_equal(model.rvs_to_initial_values[factor], support_point(factor).eval())


def test_components_keep_their_labels_across_nuts_chains():
    """The ordering constraint identifies the components: chains do not swap them."""
    rng = np.random.default_rng(3)
    X = np.concatenate([rng.normal(-2.0, 1.0, (120, 2)), rng.normal(2.0, 1.0, (80, 2))])
    model = GaussianMixture(n_components=2, covariance_type="diag", **FAST_NUTS).fit(X)
    means = model.idata_.posterior["means"].values  # (chain, draw, component, feature)
    assert np.all(np.diff(means[..., 0], axis=-1) > 0)
    per_chain = means.mean(axis=1)
    assert np.abs(per_chain[0] - per_chain[1]).max() < 0.2
    np.testing.assert_allclose(model.means_, [[-2.0, -2.0], [2.0, 2.0]], atol=0.3)
    weights = model.idata_.posterior["weights"].values.mean(axis=1)
    np.testing.assert_allclose(weights, [[0.6, 0.4], [0.6, 0.4]], atol=0.07)


def test_density_and_responsibilities_average_over_the_posterior(mixture, clusters):
    X, _ = clusters
    rows = X.iloc[:6]
    summary = mixture.predict_summary(rows)
    posterior = mixture.idata_["posterior"].to_dataset().stack(sample=("chain", "draw"))
    weights = posterior["weights"].transpose("sample", ...).values
    means = posterior["means"].transpose("sample", ...).values
    covariances = posterior["covariances"].transpose("sample", ...).values
    joint = np.array(
        [
            [
                np.log(weights[s, k]) + multivariate_normal(means[s, k], covariances[s, k]).logpdf(rows.to_numpy())
                for k in range(3)
            ]
            for s in range(len(weights))
        ]
    ).transpose(0, 2, 1)  # (draw, row, component)
    per_draw = logsumexp(joint, axis=-1)
    np.testing.assert_allclose(summary["log_density"], logsumexp(per_draw, axis=0) - np.log(len(weights)), rtol=1e-8)
    np.testing.assert_allclose(summary["proba"], np.exp(joint - per_draw[..., None]).mean(axis=0), atol=1e-10)
    np.testing.assert_allclose(mixture.predict_proba(rows).sum(axis=1), 1.0)
    np.testing.assert_array_equal(mixture.score_samples(rows), summary["log_density"])
    assert mixture.score(rows) == pytest.approx(summary["log_density"].mean())


def test_held_out_log_likelihood_matches_scikit_learn_on_iris():
    X, species = load_iris(return_X_y=True)
    X_train, X_test = train_test_split(X, test_size=0.3, stratify=species, random_state=0)
    scaler = StandardScaler().fit(X_train)
    X_train, X_test = scaler.transform(X_train), scaler.transform(X_test)
    ours = GaussianMixture(n_components=3, **FAST).fit(X_train).score(X_test)
    em = SklearnGaussianMixture(n_components=3, random_state=0).fit(X_train).score(X_test)
    variational = BayesianGaussianMixture(n_components=3, max_iter=1000, random_state=0).fit(X_train).score(X_test)
    # Mean log-likelihood per held-out row: within 0.15 nats of the better peer, or above it.
    assert ours >= max(em, variational) - 0.15, (ours, em, variational)


def test_dirichlet_process_finds_the_number_of_clusters(dirichlet_process, separated):
    model = dirichlet_process
    assert model.n_effective_components_ == 4
    assert model.weights_.sum() == pytest.approx(1.0)
    kept = model.weights_ > model.weight_threshold
    np.testing.assert_allclose(np.sort(model.weights_[kept]), 0.25, atol=0.04)
    distances = np.linalg.norm(model.means_[kept][:, None, :] - CORNERS[None], axis=-1)
    assert sorted(distances.argmin(axis=1)) == [0, 1, 2, 3]  # one component per cluster
    assert distances.min(axis=1).max() < 0.4
    # Every row goes to one of the four components that carry weight.
    assert set(np.unique(model.predict(separated))) == set(np.flatnonzero(kept))
    assert model.predict_proba(separated).shape == (len(separated), 8)


# -- the pmlearn flavor ------------------------------------------------------------------


def _expected_frame(model, X) -> pd.DataFrame:
    proba = model.predict_proba(X)
    frame = pd.DataFrame({"prediction": model.predict(X)})
    for k in range(model.n_components):
        frame[f"proba_{k}"] = proba[:, k]
    frame["log_density"] = model.score_samples(X)
    return frame


@pytest.mark.parametrize("which", ["mixture", "dirichlet_process"])
def test_save_load_predicts_identically(which, request, clusters, separated, tmp_path):
    model = request.getfixturevalue(which)
    X = clusters[0] if which == "mixture" else separated
    mlflow_pmlearn.save_model(model, tmp_path / "model")
    assert_saved_without_pickle(tmp_path / "model")
    loaded = mlflow_pmlearn.load_model(str(tmp_path / "model"))
    assert type(loaded) is type(model)
    assert loaded.get_params() == model.get_params()
    np.testing.assert_array_equal(loaded.predict_proba(X), model.predict_proba(X))
    np.testing.assert_array_equal(loaded.score_samples(X), model.score_samples(X))
    np.testing.assert_array_equal(loaded.means_, model.means_)
    signature = Model.load(str(tmp_path / "model")).signature
    assert signature.params is None
    assert [spec.name for spec in signature.outputs.inputs] == list(_expected_frame(model, X).columns)
    pd.testing.assert_frame_equal(
        mlflow.pyfunc.load_model(str(tmp_path / "model")).predict(X), _expected_frame(model, X)
    )


def test_registered_mixture_serves_components_and_density(mixture, clusters, mlflow_experiment):
    X, _ = clusters
    name = f"pmlearn-gaussian-mixture-{uuid.uuid4().hex[:8]}"
    with mlflow.start_run():
        info = mlflow_pmlearn.log_model(mixture, name="model", registered_model_name=name)
    frame = mlflow.pyfunc.load_model(f"models:/{name}/{info.registered_model_version}").predict(X)
    assert list(frame.columns) == ["prediction", "proba_0", "proba_1", "proba_2", "log_density"]
    pd.testing.assert_frame_equal(frame, _expected_frame(mixture, X))
    np.testing.assert_allclose(frame[["proba_0", "proba_1", "proba_2"]].sum(axis=1), 1.0)
