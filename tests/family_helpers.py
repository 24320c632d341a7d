"""Shared by the tests of the model families: every built-in estimator in a small
configuration, and what a saved built-in model must (not) hold."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from sklearn.base import is_classifier, is_regressor

from estimators.base import BayesianEstimator
from estimators.gaussian_process import (
    GaussianProcessRegressor,
    SparseGaussianProcessRegressor,
    StudentTProcessRegressor,
)
from estimators.linear_model import HierarchicalLogisticRegression, LinearRegression, LogisticRegression
from estimators.mixture import DirichletProcessMixture, GaussianMixture
from estimators.naive_bayes import GaussianNB
from estimators.neural_network import MLPClassifier
from mlflow_pmlearn.serialization import BUILTIN_ESTIMATORS, CONFIG_FILE


def every_estimator(**settings) -> list[BayesianEstimator]:
    """Each built-in estimator, small, with the inference ``settings``.

    Each runs its own model, validation and prediction code (a network on minibatches, a
    sparse GP, ...). The mixtures have diagonal covariances: the API contract does not
    depend on the covariance type, and an LKJ prior costs each fit twice the compile time
    (full covariances are tested in test_mixture).
    """
    return [
        LinearRegression(**settings),
        LogisticRegression(**settings),
        HierarchicalLogisticRegression(group_col=0, **settings),
        MLPClassifier(hidden_layer_sizes=4, batch_size=8, **{"inference": "advi", **settings}),  # minibatches: ADVI
        GaussianNB(**settings),
        GaussianMixture(n_components=2, covariance_type="diag", **settings),
        DirichletProcessMixture(n_components=3, covariance_type="diag", **settings),
        GaussianProcessRegressor(**settings),
        StudentTProcessRegressor(**settings),
        SparseGaussianProcessRegressor(n_inducing=10, **settings),
    ]


def training_set(estimator: BayesianEstimator, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray | None]:
    """40 rows of one feature with a random location and scale; ``y`` as the estimator needs.

    One feature, so the feature statistics are scalars: both PyTensor backends key their
    caches by a scalar literal's value (the C backend writes it into the code, and does not
    key on a vector literal's values; Numba keys on both). The hierarchical model gets a
    group column in front of the feature.
    """
    feature = rng.normal(loc=rng.normal(scale=5.0), scale=rng.uniform(0.5, 5.0), size=40)
    response = feature * rng.uniform(1.0, 3.0) + rng.normal(size=40) + rng.normal(scale=5.0)
    X = np.column_stack([np.arange(40) % 3, feature] if hasattr(estimator, "group_col") else [feature])
    if is_regressor(estimator):
        return X, response
    if is_classifier(estimator):
        return X, (response > np.median(response)).astype(int)
    return X, None


def assert_saved_without_pickle(model_dir: Path) -> None:
    """The saved model holds no pickle, and names its class from the built-in allow-list."""
    files = [path for path in model_dir.rglob("*") if path.is_file()]
    assert files
    for file in files:
        assert file.suffix not in {".pkl", ".pickle"}, file
        assert file.read_bytes()[:1] != b"\x80", f"{file} starts with a pickle protocol header"
    config = json.loads((model_dir / "estimator" / CONFIG_FILE).read_text())
    assert config["estimator_class"] in BUILTIN_ESTIMATORS
    assert config["serialization_format"] == "json"
