"""Bad input gets a clear error that names the problem (and the column and row where it is).

Also runs the estimators' docstring examples.
"""

from __future__ import annotations

import doctest
import importlib

import numpy as np
import pandas as pd
import pytest
from scipy import sparse
from sklearn.exceptions import NotFittedError

from estimators.linear_model import HierarchicalLogisticRegression, LinearRegression, LogisticRegression

#: Validation is what is tested here, not the posterior: the smallest fits that run.
TINY = {"n_draws": 20, "max_iter": 200, "random_seed": 0, "progressbar": False}


@pytest.fixture(scope="module")
def frame():
    rng = np.random.default_rng(0)
    X = pd.DataFrame(rng.normal(size=(60, 3)), columns=["x0", "x1", "x2"])
    y = pd.Series(X.to_numpy() @ [1.0, -1.0, 0.5] + rng.normal(scale=0.3, size=60), name="y")
    return X, y


@pytest.fixture(scope="module")
def regressor(frame):
    X, y = frame
    return LinearRegression(**TINY).fit(X, y)


@pytest.fixture(scope="module")
def grouped_frame(frame):
    X, y = frame
    return X.assign(store=np.tile(["north", "south", "east"], 20)), (y > 0).map({True: "up", False: "down"})


@pytest.fixture(scope="module")
def hierarchical(grouped_frame):
    X, y = grouped_frame
    return HierarchicalLogisticRegression(group_col="store", **TINY).fit(X, y)


# -- non-finite values --------------------------------------------------------------------


def test_nan_in_X_at_fit_names_column_and_row(frame):
    X, y = frame
    bad = X.copy()
    bad.loc[4, "x1"] = np.nan
    with pytest.raises(ValueError, match=r"X contains NaN in column 'x1', row 4"):
        LinearRegression(**TINY).fit(bad, y)


def test_inf_in_X_names_column_and_row(frame, regressor):
    X, y = frame
    array = X.to_numpy().copy()
    array[7, 2] = np.inf
    with pytest.raises(ValueError, match=r"X contains infinity in column 2 \(0-based\), row 7"):
        LinearRegression(**TINY).fit(array, y)
    bad = X.iloc[:10].copy()
    bad.iloc[3, 0] = -np.inf
    with pytest.raises(ValueError, match=r"X contains infinity in column 'x0', row 3"):
        regressor.predict(bad)


def test_nan_at_predict_names_column_and_row(frame, regressor):
    X, _ = frame
    bad = X.iloc[:5].copy()
    bad.loc[2, "x2"] = np.nan
    with pytest.raises(ValueError, match=r"NaN in column 'x2', row 2"):
        regressor.predict(bad)


def test_nan_in_y_names_the_row(frame):
    X, y = frame
    with pytest.raises(ValueError, match=r"y contains NaN in row 9"):
        LinearRegression(**TINY).fit(X, y.where(y.index != 9))


def test_missing_class_label_in_y_names_the_row(frame):
    X, y = frame
    labels = np.where(y > 0, "up", "down").astype(object)
    labels[5] = None
    with pytest.raises(ValueError, match=r"missing label .* at row 5"):
        LogisticRegression(**TINY).fit(X, labels)


# -- columns at predict -------------------------------------------------------------------


@pytest.mark.filterwarnings("ignore:X does not have valid feature names")
def test_wrong_number_of_columns_at_predict(frame, regressor):
    X, _ = frame
    with pytest.raises(ValueError, match=r"X has 2 features, but LinearRegression is expecting 3"):
        regressor.predict(X.to_numpy()[:, :2])


def test_missing_column_at_predict_is_named(frame, regressor):
    X, _ = frame
    with pytest.raises(ValueError, match=r"missing column\(s\) \['x2'\]"):
        regressor.predict(X.drop(columns="x2"))


def test_renamed_column_at_predict_is_named(frame, regressor):
    X, _ = frame
    with pytest.raises(ValueError, match=r"missing column\(s\) \['x1'\] and unexpected column\(s\) \['x1_new'\]"):
        regressor.predict(X.rename(columns={"x1": "x1_new"}))


def test_extra_column_at_predict_is_named(frame, regressor):
    X, _ = frame
    with pytest.raises(ValueError, match=r"unexpected column\(s\) \['extra'\]"):
        regressor.predict(X.assign(extra=1.0))


def test_reordered_columns_are_accepted_with_the_same_predictions(frame, regressor):
    X, _ = frame
    reordered = X[["x2", "x0", "x1"]]
    np.testing.assert_array_equal(regressor.predict(reordered), regressor.predict(X))
    np.testing.assert_array_equal(regressor.predict_interval(reordered), regressor.predict_interval(X))


def test_hierarchical_missing_group_column_at_predict(grouped_frame, hierarchical):
    X, _ = grouped_frame
    with pytest.raises(ValueError, match=r"missing column\(s\) \['store'\]"):
        hierarchical.predict(X.drop(columns="store"))
    reordered = X[["store", "x2", "x1", "x0"]]
    np.testing.assert_array_equal(hierarchical.predict_proba(reordered), hierarchical.predict_proba(X))


# -- types and shapes ---------------------------------------------------------------------


def test_non_numeric_column_is_named(frame):
    X, y = frame
    with pytest.raises(ValueError, match=r"Column 'city' of X has dtype .*; the features must be numeric"):
        LinearRegression(**TINY).fit(X.assign(city="Paris"), y)


@pytest.mark.filterwarnings("ignore:X does not have valid feature names")
def test_non_numeric_value_in_an_array_names_column_and_row(frame, regressor):
    X, y = frame
    array = X.to_numpy().astype(object)
    array[2, 1] = "abc"
    with pytest.raises(ValueError, match=r"non-numeric value 'abc' in column 1 \(0-based\), row 2"):
        LinearRegression(**TINY).fit(array, y)
    array = X.iloc[:5].to_numpy().astype(object)
    array[3, 0] = {"a": 1}
    with pytest.raises(TypeError, match=r"non-numeric value \{'a': 1\} in column 'x0', row 3"):
        regressor.predict(array)


def test_single_class_is_rejected(frame):
    X, _ = frame
    with pytest.raises(ValueError, match=r"y has only one class \('yes'\); a classifier needs at least two"):
        LogisticRegression(**TINY).fit(X, np.full(len(X), "yes"))


def test_empty_frame_is_rejected(frame, regressor):
    X, y = frame
    with pytest.raises(ValueError, match=r"X is empty: 0 sample\(s\)"):
        LinearRegression(**TINY).fit(X.iloc[:0], y.iloc[:0])
    with pytest.raises(ValueError, match=r"X has no columns: 0 feature\(s\)"):
        LinearRegression(**TINY).fit(pd.DataFrame(index=range(5)), np.arange(5.0))
    with pytest.raises(ValueError, match=r"X is empty: 0 sample\(s\)"):
        regressor.predict(X.iloc[:0])


def test_mismatched_lengths_of_X_and_y(frame):
    X, y = frame
    with pytest.raises(ValueError, match=r"X has 60 rows but y has 10"):
        LinearRegression(**TINY).fit(X, y.iloc[:10])


def test_one_dimensional_X_asks_for_a_reshape(frame, regressor):
    X, y = frame
    with pytest.raises(ValueError, match=r"must be 2-D .* Reshape your data"):
        regressor.predict(X.to_numpy()[0])
    with pytest.raises(ValueError, match=r"must be 2-D .* Reshape your data"):
        LinearRegression(**TINY).fit(X["x0"].to_numpy(), y)


def test_sparse_and_complex_inputs_are_rejected(frame):
    X, y = frame
    with pytest.raises(TypeError, match=r"does not support sparse input"):
        LinearRegression(**TINY).fit(sparse.csr_matrix(X.to_numpy()), y)
    with pytest.raises(ValueError, match=r"Complex data not supported"):
        LinearRegression(**TINY).fit(X.to_numpy() + 1j, y)


# -- hyper-parameters ---------------------------------------------------------------------


def test_unknown_inference_method(frame):
    X, y = frame
    with pytest.raises(ValueError, match=r"'inference' parameter of LinearRegression must be a str among .*'nuts'.*\. Got 'mcmc'"):
        LinearRegression(inference="mcmc").fit(X, y)


@pytest.mark.parametrize("name", ["prior_scale_coef", "prior_scale_intercept", "prior_scale_noise"])
def test_negative_prior_scale(frame, name):
    X, y = frame
    with pytest.raises(ValueError, match=rf"'{name}' parameter of LinearRegression must be a float in the range \(0.0, inf\)\. Got -1"):
        LinearRegression(**{name: -1.0}).fit(X, y)


def test_invalid_interval_probability(frame, regressor):
    X, _ = frame
    for prob in (0.0, 1.0, 1.5, "0.9"):
        with pytest.raises(ValueError, match=r"interval probability must be a number strictly between 0 and 1"):
            regressor.predict_interval(X.iloc[:3], prob=prob)


# -- the group column ---------------------------------------------------------------------


def test_group_column_errors(grouped_frame):
    X, y = grouped_frame
    with pytest.raises(ValueError, match=r"X has no group column 'shop'"):
        HierarchicalLogisticRegression(group_col="shop", **TINY).fit(X, y)
    with pytest.raises(ValueError, match=r"group_col='store' names a column, but X has no column names"):
        HierarchicalLogisticRegression(group_col="store", **TINY).fit(X.to_numpy(), y)
    with pytest.raises(ValueError, match=r"group_col=9 is out of range for X with 4 columns"):
        HierarchicalLogisticRegression(group_col=9, **TINY).fit(X, y)
    missing = X.copy()
    missing.loc[6, "store"] = None
    with pytest.raises(ValueError, match=r"group column has an invalid label (None|nan) at row 6; .* missing"):
        HierarchicalLogisticRegression(group_col="store", **TINY).fit(missing, y)
    with pytest.raises(ValueError, match=r"X has 1 feature\(s\), the group column alone"):
        HierarchicalLogisticRegression(group_col="store", **TINY).fit(X[["store"]], y)


# -- not fitted ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "estimator",
    [LinearRegression(**TINY), LogisticRegression(**TINY), HierarchicalLogisticRegression(group_col=0, **TINY)],
    ids=lambda estimator: type(estimator).__name__,
)
def test_not_fitted_error_before_fit(estimator, frame):
    X, _ = frame
    methods = ["predict", "sample_posterior_predictive"]
    methods += ["predict_interval"] if hasattr(estimator, "predict_interval") else ["predict_proba"]
    for method in methods:
        with pytest.raises(NotFittedError):
            getattr(estimator, method)(X)
    with pytest.raises(NotFittedError):
        estimator.posterior_mean("intercept")
    if hasattr(type(estimator), "coef_"):
        with pytest.raises(NotFittedError):
            estimator.coef_  # noqa: B018


def test_a_failed_fit_leaves_the_estimator_unfitted(frame):
    X, y = frame
    model = LinearRegression(**TINY)
    with pytest.raises(ValueError, match="NaN"):
        model.fit(X, y.where(y.index != 3))  # X passed validation, y did not
    assert hasattr(model, "n_features_in_")
    with pytest.raises(NotFittedError):
        model.predict(X)


# -- docstring examples -------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize(
    "module",
    [
        "estimators.linear_model._linear",
        "estimators.linear_model._hierarchical",
        "estimators.neural_network._multilayer_perceptron",
        "estimators.naive_bayes._gaussian",
        "estimators.mixture._gaussian_mixture",
        "estimators.gaussian_process._gpr",
        "estimators.gaussian_process._sparse",
    ],
)
def test_docstring_examples_run(module):
    result = doctest.testmod(importlib.import_module(module), optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 0
    assert result.failed == 0
