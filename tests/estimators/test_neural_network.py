"""MLPClassifier, the Bayesian neural network, and the minibatch ADVI hook it uses.

Quality is measured on seeded data against stated baselines (a linear model, scikit-learn's
MLPClassifier, the full-batch fit); every margin is stated where it is used. Fits are shared
through module-scoped fixtures. The three spellings of ``hidden_layer_sizes`` are all fitted:
a tuple (moons), a list (iris, and every loaded model: JSON turns tuples into lists) and an
int (scikit-learn's checks).
"""

from __future__ import annotations

import json
import uuid
from numbers import Integral

import mlflow
import mlflow.pyfunc
import numpy as np
import pandas as pd
import pymc as pm
import pytensor.tensor as pt
import pytest
from conftest import FAST
from references import posterior_draws
from scipy.special import expit
from sklearn.datasets import load_breast_cancer, load_iris, make_moons
from sklearn.model_selection import train_test_split
from sklearn.neural_network import MLPClassifier as SklearnMLPClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils._param_validation import Interval

import mlflow_pmlearn
from estimators.base import BayesianEstimator, BayesianRegressorMixin
from estimators.linear_model import LogisticRegression
from estimators.neural_network import MLPClassifier
from mlflow_pmlearn.serialization import BUILTIN_ESTIMATORS, CONFIG_FILE

#: Rows per minibatch in the minibatch fits (the moons training set has 300 rows).
BATCH = 50


# -- data and fits shared by the module ---------------------------------------------------


@pytest.fixture(scope="module")
def moons():
    """Two interleaved half circles: no straight line separates them."""
    X, y = make_moons(600, noise=0.2, random_state=0)
    return train_test_split(X, y, test_size=0.5, random_state=0)


@pytest.fixture(scope="module")
def moons_full(moons):
    X_train, _, y_train, _ = moons
    return MLPClassifier(hidden_layer_sizes=(16,), **FAST).fit(X_train, y_train)


@pytest.fixture(scope="module")
def moons_minibatch(moons):
    X_train, _, y_train, _ = moons
    return MLPClassifier(hidden_layer_sizes=(16,), batch_size=BATCH, **FAST).fit(X_train, y_train)


@pytest.fixture(scope="module")
def iris():
    data = load_iris(as_frame=True)
    y = data.target_names[data.target.to_numpy()]  # string labels: setosa, versicolor, virginica
    return train_test_split(data.data, y, test_size=0.3, random_state=0, stratify=y)


@pytest.fixture(scope="module")
def iris_fit(iris):
    X_train, _, y_train, _ = iris
    return MLPClassifier(hidden_layer_sizes=[8], **FAST).fit(X_train, y_train)


# -- what the network learns --------------------------------------------------------------


def test_learns_a_nonlinear_boundary_a_linear_model_cannot(moons, moons_full):
    X_train, X_test, y_train, y_test = moons
    linear = LogisticRegression(**FAST).fit(X_train, y_train).score(X_test, y_test)
    network = moons_full.score(X_test, y_test)
    # Measured: network 0.933, linear 0.860 (an RBF SVM gets 0.93 on this split).
    assert network >= 0.91
    assert network >= linear + 0.04
    assert moons_full.n_layers_ == 3 and moons_full.n_outputs_ == 1
    assert moons_full.out_activation_ == "logistic"


def test_multiclass_probabilities_and_labels(iris, iris_fit):
    _, X_test, _, y_test = iris
    assert list(iris_fit.classes_) == ["setosa", "versicolor", "virginica"]
    assert list(iris_fit.feature_names_in_) == list(X_test.columns)
    proba = iris_fit.predict_proba(X_test)
    assert proba.shape == (len(X_test), 3)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)
    np.testing.assert_array_equal(iris_fit.predict(X_test), iris_fit.classes_[proba.argmax(axis=1)])
    assert iris_fit.out_activation_ == "softmax" and iris_fit.n_outputs_ == 2
    # 45 test rows; measured 0.978 (one error; scikit-learn's MLP, below, makes none).
    assert iris_fit.score(X_test, y_test) >= 0.9


@pytest.mark.parametrize("dataset", ["iris", "breast_cancer"])
def test_scores_like_sklearn_mlp_on_the_same_split(dataset, iris, iris_fit):
    """Test accuracy within a stated margin of scikit-learn's (maximum-likelihood) MLP."""
    if dataset == "iris":
        X_train, X_test, y_train, y_test = iris
        model, width = iris_fit, 8
        margin = 0.05  # 45 test rows: about two of them
    else:
        X, y = load_breast_cancer(return_X_y=True)
        X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=0.3, random_state=0, stratify=y)
        model, width = MLPClassifier(hidden_layer_sizes=(8,), **FAST).fit(X_train, y_train), 8
        margin = 0.03  # 171 test rows: about five of them
    reference = make_pipeline(
        StandardScaler(), SklearnMLPClassifier(hidden_layer_sizes=(width,), max_iter=2000, random_state=0)
    ).fit(X_train, y_train)
    # Measured (this network vs scikit-learn's): iris 0.978 vs 1.0; breast cancer 0.953 vs 0.965.
    assert model.score(X_test, y_test) >= reference.score(X_test, y_test) - margin


#: The hidden-layer activations in NumPy, by scikit-learn's names.
NUMPY_ACTIVATIONS = {"identity": lambda z: z, "logistic": expit, "tanh": np.tanh, "relu": lambda z: np.maximum(z, 0.0)}


def numpy_network_proba(model: MLPClassifier, X_train: np.ndarray, X: np.ndarray) -> np.ndarray:
    """Posterior mean class probabilities of a fitted two-class network, computed in NumPy.

    Standardises ``X`` with the training columns' mean and (population) standard deviation,
    runs it through every posterior draw of the weights (``w_1``, ``b_1``, ..., ``w_out``,
    ``b_out``) with the model's activation, and averages the draws' probabilities.
    """
    units = (X - X_train.mean(axis=0)) / X_train.std(axis=0)  # (n_samples, n_features)
    layers = [str(layer) for layer in range(1, model.n_layers_ - 1)] + ["out"]
    for name in layers:
        units = units @ posterior_draws(model, f"w_{name}") + posterior_draws(model, f"b_{name}")[:, None, :]
        if name != "out":
            units = NUMPY_ACTIVATIONS[model.activation](units)
    p = expit(units[..., 0])  # (n_draws, n_samples)
    return np.column_stack([1.0 - p.mean(axis=0), p.mean(axis=0)])


@pytest.mark.parametrize("activation", ["relu", "logistic", "identity", "tanh"])
def test_each_activation_predicts_what_a_numpy_forward_pass_of_its_draws_gives(activation, moons):
    """The compiled network applies the named activation: ``predict_proba`` equals a NumPy pass.

    How well the network fits does not matter here (100 ADVI iterations): only that the
    predictions are the named network's, draw by draw.
    """
    X_train, X_test, y_train, _ = moons
    model = MLPClassifier(
        hidden_layer_sizes=(4,), activation=activation, **{**FAST, "n_draws": 50, "max_iter": 100}
    ).fit(X_train[:60], y_train[:60])
    expected = numpy_network_proba(model, X_train[:60], X_test[:40])
    np.testing.assert_allclose(model.predict_proba(X_test[:40]), expected, rtol=1e-10, atol=1e-12)


# -- minibatches ---------------------------------------------------------------------------


def test_minibatch_fit_is_as_accurate_as_full_batch(moons, moons_full, moons_minibatch):
    _, X_test, _, y_test = moons
    history = moons_minibatch.idata_.fit_history
    assert history.attrs["batch_size"] == BATCH  # the fit did run on minibatches
    assert "batch_size" not in moons_full.idata_.fit_history.attrs
    # Measured: 0.933 (minibatch) vs 0.933 (full batch); test probabilities differ by 0.008 on
    # average, 0.046 at most.
    assert moons_minibatch.score(X_test, y_test) >= moons_full.score(X_test, y_test) - 0.02
    gap = np.abs(moons_minibatch.predict_proba(X_test) - moons_full.predict_proba(X_test))[:, 1]
    assert gap.mean() <= 0.05


def test_minibatch_is_refused_by_nuts(moons):
    X_train, _, y_train, _ = moons
    with pytest.raises(ValueError, match="ADVI only"):
        MLPClassifier(inference="nuts", batch_size=BATCH, progressbar=False).fit(X_train, y_train)


class KnownNoiseRegression(BayesianRegressorMixin, BayesianEstimator):
    """A bespoke model using the minibatch hook: y ~ Normal(X @ coef, 1), flat-ish prior.

    ``declare_total_size=False`` forgets ``total_size``, which minibatch fitting must refuse.
    """

    _parameter_constraints = {
        **BayesianEstimator._parameter_constraints,
        "batch_size": [Interval(Integral, 1, None, closed="left"), None],
        "declare_total_size": ["boolean"],
    }

    def __init__(self, *, batch_size=None, declare_total_size=True, **inference_params):
        super().__init__(**inference_params)
        self.batch_size = batch_size
        self.declare_total_size = declare_total_size

    def minibatch_size(self):
        return self.batch_size

    def build_model(self, X, y):
        coef = pm.Normal("coef", 0.0, 10.0, shape=X.get_value().shape[1])
        total_size = len(X.get_value()) if self.declare_total_size else None
        pm.Normal("y_obs", pt.dot(X, coef), 1.0, observed=y, shape=X.shape[0], total_size=total_size)


@pytest.fixture(scope="module")
def known_noise_data():
    rng = np.random.default_rng(3)
    X = rng.normal(size=(400, 2))
    return X, X @ np.array([1.0, -2.0]) + rng.normal(size=400)


def test_minibatch_log_likelihood_is_scaled_to_the_full_data(known_noise_data):
    """A bespoke model gets minibatches from the base: the posterior matches the full-batch one.

    The exact posterior standard deviation is about 1 / sqrt(400) = 0.05. Minibatches of 20
    rows whose log-likelihood was not scaled up would act as 20 rows of data: a standard
    deviation sqrt(400 / 20) = 4.5 times wider.
    """
    X, y = known_noise_data
    full = KnownNoiseRegression(**FAST).fit(X, y)
    batched = KnownNoiseRegression(batch_size=20, **FAST).fit(X, y)
    fits = {"full": full.idata_.posterior["coef"], "batched": batched.idata_.posterior["coef"]}
    mean = {name: draws.mean(("chain", "draw")).values for name, draws in fits.items()}
    std = {name: draws.std(("chain", "draw")).values for name, draws in fits.items()}
    # Measured: sd ratios 0.96 and 0.84 (unscaled minibatches: about 4.5); means 0.01 apart.
    ratio = std["batched"] / std["full"]
    assert np.all((ratio > 0.6) & (ratio < 1.5)), ratio
    np.testing.assert_allclose(mean["batched"], mean["full"], atol=0.05)  # one posterior sd
    np.testing.assert_allclose(mean["batched"], [1.0, -2.0], atol=0.15)
    # The same seed draws the same minibatches: the same posterior.
    again = KnownNoiseRegression(batch_size=20, **FAST).fit(X, y)
    np.testing.assert_array_equal(again.idata_.posterior["coef"].values, batched.idata_.posterior["coef"].values)


def test_minibatch_without_total_size_is_refused(known_noise_data):
    X, y = known_noise_data
    with pytest.raises(ValueError, match="total_size"):
        KnownNoiseRegression(batch_size=20, declare_total_size=False, **FAST).fit(X, y)


# -- hyper-parameters ---------------------------------------------------------------------


@pytest.mark.parametrize("sizes", [(4, 0), (2.5,), ("8",)])
def test_bad_hidden_layer_sizes_are_refused(sizes, moons):
    X_train, _, y_train, _ = moons
    with pytest.raises(ValueError, match="positive integers"):
        MLPClassifier(hidden_layer_sizes=sizes, progressbar=False).fit(X_train, y_train)


# -- the pmlearn flavor -------------------------------------------------------------------


def test_save_load_predicts_identically_and_holds_no_pickle(moons, moons_full, tmp_path):
    _, X_test, _, _ = moons
    path = tmp_path / "mlp"
    mlflow_pmlearn.save_model(moons_full, path)
    loaded = mlflow_pmlearn.load_model(str(path))
    assert type(loaded) is MLPClassifier
    # A tuple comes back from JSON as a list; the network built from it is the same.
    expected = {**moons_full.get_params(), "hidden_layer_sizes": [16]}
    assert loaded.get_params() == expected
    np.testing.assert_array_equal(loaded.predict_proba(X_test), moons_full.predict_proba(X_test))
    np.testing.assert_array_equal(loaded.predict(X_test), moons_full.predict(X_test))
    files = [p for p in path.rglob("*") if p.is_file()]
    assert files
    for file in files:
        assert file.suffix not in {".pkl", ".pickle"}, file
        assert file.read_bytes()[:1] != b"\x80", f"{file} starts with a pickle protocol header"
    config = json.loads((path / "estimator" / CONFIG_FILE).read_text())
    assert config["estimator_class"] == "estimators.neural_network.MLPClassifier"
    assert config["estimator_class"] in BUILTIN_ESTIMATORS
    assert config["serialization_format"] == "json"


def test_log_register_and_serve_from_the_registry(mlflow_experiment, iris, iris_fit):
    _, X_test, _, _ = iris
    name = f"pmlearn-mlp-{uuid.uuid4().hex[:8]}"
    with mlflow.start_run():
        mlflow_pmlearn.log_model(iris_fit, name="mlp", registered_model_name=name, input_example=X_test.head(3))
    loaded = mlflow.pyfunc.load_model(f"models:/{name}/1")
    labels = loaded.predict(X_test)
    assert isinstance(labels, pd.Series) and labels.name == "prediction"
    np.testing.assert_array_equal(labels.to_numpy(), iris_fit.predict(X_test))
    frame = loaded.predict(X_test, params={"predict_proba": True})
    assert list(frame.columns) == ["prediction", "proba_setosa", "proba_versicolor", "proba_virginica"]
    # The registry's copy compiles its own function from a rebuilt graph: Numba's cached copy
    # of what the fit compiled, which gives the same floats (estimators/compilation.py).
    np.testing.assert_array_equal(frame.iloc[:, 1:].to_numpy(), iris_fit.predict_proba(X_test))
    np.testing.assert_array_equal(frame["prediction"].to_numpy(), iris_fit.predict(X_test))
