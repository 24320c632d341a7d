"""GaussianNB: recovery of known class statistics, parity with scikit-learn, API checks, flavor."""

from __future__ import annotations

import uuid

import mlflow
import mlflow.pyfunc
import numpy as np
import pandas as pd
import pytest
from conftest import FAST
from family_helpers import assert_saved_without_pickle
from sklearn.datasets import load_breast_cancer, load_iris
from sklearn.model_selection import train_test_split
from sklearn.naive_bayes import GaussianNB as SklearnGaussianNB

import mlflow_pmlearn
from estimators.naive_bayes import GaussianNB

MEANS = np.array([[-2.0, 0.0], [2.0, 1.0], [0.0, 4.0]])
SDS = np.array([[1.0, 0.5], [0.5, 1.0], [1.0, 1.0]])
COUNTS = np.array([300, 180, 120])
LABELS = np.array(["cat", "dog", "eel"])


@pytest.fixture(scope="module")
def synthetic():
    """Three classes with known means, standard deviations and frequencies."""
    rng = np.random.default_rng(11)
    y = np.repeat(np.arange(3), COUNTS)
    X = rng.normal(MEANS[y], SDS[y])
    order = rng.permutation(len(y))
    X = pd.DataFrame(X[order], columns=["length", "width"])
    return X, LABELS[y[order]]


@pytest.fixture(scope="module")
def fitted(synthetic):
    X, y = synthetic
    return GaussianNB(**FAST).fit(X, y), X, y


def test_recovers_class_statistics(fitted):
    model, X, y = fitted
    assert list(model.classes_) == list(LABELS)
    np.testing.assert_array_equal(model.class_count_, COUNTS)
    # Standard errors of the class means are at most 1 / sqrt(120) = 0.09: 0.3 is > 3 of them.
    np.testing.assert_allclose(model.theta_, MEANS, atol=0.3)
    np.testing.assert_allclose(np.sqrt(model.var_), SDS, rtol=0.15)
    np.testing.assert_allclose(model.class_prior_, COUNTS / COUNTS.sum(), atol=0.03)


def test_probabilities_integrate_over_the_posterior(fitted):
    model, X, y = fitted
    proba = model.predict_proba(X)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)
    np.testing.assert_array_equal(model.predict(X), model.classes_[proba.argmax(axis=1)])
    # With 600 rows the posterior is concentrated: close to the plug-in classifier.
    plug_in = SklearnGaussianNB().fit(X, y)
    assert np.abs(proba - plug_in.predict_proba(X)).max() < 0.05
    # The average of per-draw class posteriors, each from Bayes' rule at that draw's statistics.
    posterior = model.idata_["posterior"].to_dataset().stack(sample=("chain", "draw"))
    rows = X.to_numpy()[:5]
    prior = posterior["class_prior"].transpose("sample", ...).values
    theta = posterior["theta"].transpose("sample", ...).values
    var = posterior["var"].transpose("sample", ...).values
    log_joint = np.log(prior)[:, None, :] - 0.5 * np.sum(
        np.log(2 * np.pi * var)[:, None] + (rows[None, :, None, :] - theta[:, None]) ** 2 / var[:, None], axis=-1
    )
    per_draw = np.exp(log_joint - log_joint.max(axis=-1, keepdims=True))
    per_draw /= per_draw.sum(axis=-1, keepdims=True)
    np.testing.assert_allclose(proba[:5], per_draw.mean(axis=0), rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("loader", [load_iris, load_breast_cancer], ids=["iris", "breast_cancer"])
def test_accuracy_matches_scikit_learn(loader):
    X, y = loader(return_X_y=True)
    X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=0.3, stratify=y, random_state=0)
    ours = GaussianNB(**FAST).fit(X_train, y_train).score(X_test, y_test)
    theirs = SklearnGaussianNB().fit(X_train, y_train).score(X_test, y_test)
    # Margin: 0.04 accuracy, 2 of 45 iris test rows or 7 of 171 breast-cancer ones.
    assert ours >= theirs - 0.04, (ours, theirs)


# -- the pmlearn flavor ------------------------------------------------------------------


def test_save_load_predicts_identically(fitted, tmp_path):
    model, X, _ = fitted
    mlflow_pmlearn.save_model(model, tmp_path / "model")
    assert_saved_without_pickle(tmp_path / "model")
    loaded = mlflow_pmlearn.load_model(str(tmp_path / "model"))
    assert type(loaded) is GaussianNB
    assert loaded.get_params() == model.get_params()
    np.testing.assert_array_equal(loaded.classes_, model.classes_)
    np.testing.assert_array_equal(loaded.predict_proba(X), model.predict_proba(X))
    np.testing.assert_array_equal(loaded.predict(X), model.predict(X))
    np.testing.assert_array_equal(loaded.theta_, model.theta_)


def test_registered_model_serves_labels_and_probabilities(fitted, mlflow_experiment):
    model, X, _ = fitted
    name = f"pmlearn-gaussian-nb-{uuid.uuid4().hex[:8]}"
    with mlflow.start_run():
        info = mlflow_pmlearn.log_model(model, name="model", registered_model_name=name)
    loaded = mlflow.pyfunc.load_model(f"models:/{name}/{info.registered_model_version}")
    labels = loaded.predict(X)
    assert isinstance(labels, pd.Series) and labels.name == "prediction"
    np.testing.assert_array_equal(labels.to_numpy(), model.predict(X))
    frame = loaded.predict(X, params={"predict_proba": True})
    assert list(frame.columns) == ["prediction", "proba_cat", "proba_dog", "proba_eel"]
    np.testing.assert_array_equal(frame.iloc[:, 1:].to_numpy(), model.predict_proba(X))
    np.testing.assert_array_equal(frame["prediction"].to_numpy(), model.predict(X))
