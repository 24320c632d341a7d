"""Property-based tests (hypothesis) of the prediction path.

Any finite numeric frame with the training columns (|x| <= 1e6, 1 to 50 rows) gives finite
posterior predictive means, non-negative standard deviations, central intervals around
the mean, and class probabilities in [0, 1] that sum to 1; through the estimator and
through the pyfunc wrapper alike. One LinearRegression and one LogisticRegression are
fitted per module.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from conftest import FAST
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from estimators.linear_model import LinearRegression, LogisticRegression
from mlflow_pmlearn.pyfunc import PmlearnModelWrapper

MAX_ABS = 1e6
PROPERTY_SETTINGS = settings(max_examples=50, deadline=None)


@pytest.fixture(scope="module")
def regressor(regression_data) -> LinearRegression:
    X, y, _ = regression_data
    return LinearRegression(**FAST).fit(X.iloc[:150], y.iloc[:150])


@pytest.fixture(scope="module")
def classifier(binary_data) -> LogisticRegression:
    X, y, _ = binary_data
    return LogisticRegression(**FAST).fit(X.iloc[:150], y.iloc[:150])


def frames(columns: list[str]) -> st.SearchStrategy[pd.DataFrame]:
    """Finite frames with ``columns``, 1 to 50 rows, values in [-1e6, 1e6] (subnormals, zeros and extremes included)."""
    values = st.floats(min_value=-MAX_ABS, max_value=MAX_ABS, allow_nan=False, allow_infinity=False)
    shapes = st.integers(min_value=1, max_value=50).map(lambda n_rows: (n_rows, len(columns)))
    return arrays(np.float64, shapes, elements=values).map(lambda array: pd.DataFrame(array, columns=columns))


@PROPERTY_SETTINGS
@given(data=st.data())
def test_regression_summaries_are_finite_and_ordered(regressor, data):
    """Mean finite, std >= 0, lower <= mean <= upper.

    The interval probability is drawn from [0.5, 0.99]: a narrower central interval of a
    skewed predictive distribution need not contain its mean (the regressor's is Normal,
    but its 200-draw sample mean and median differ by sampling noise).
    """
    X = data.draw(frames(list(regressor.feature_names_in_)), label="X")
    prob = data.draw(st.floats(min_value=0.5, max_value=0.99), label="interval_prob")
    summary = regressor.predict_summary(X, interval_prob=prob)
    mean, std, lower, upper = (summary[key] for key in ("mean", "std", "lower", "upper"))
    assert mean.shape == std.shape == lower.shape == upper.shape == (len(X),)
    for values in (mean, std, lower, upper):
        assert np.isfinite(values).all()
    assert (std >= 0).all()
    assert (lower <= mean).all() and (mean <= upper).all()

    served = PmlearnModelWrapper(regressor).predict(X, params={"return_std": True, "interval_prob": prob})
    np.testing.assert_array_equal(served["prediction"], mean)
    np.testing.assert_array_equal(served[["std", "lower", "upper"]].to_numpy(), np.column_stack([std, lower, upper]))


@PROPERTY_SETTINGS
@given(data=st.data())
def test_class_probabilities_are_a_distribution(classifier, data):
    """Each row's probabilities are in [0, 1] and sum to 1; the label is the most probable class."""
    X = data.draw(frames(list(classifier.feature_names_in_)), label="X")
    proba = classifier.predict_proba(X)
    assert proba.shape == (len(X), len(classifier.classes_))
    assert np.isfinite(proba).all()
    assert ((proba >= 0) & (proba <= 1)).all()
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, rtol=0, atol=1e-12)

    served = PmlearnModelWrapper(classifier).predict(X, params={"predict_proba": True})
    np.testing.assert_array_equal(served[[f"proba_{label}" for label in classifier.classes_]].to_numpy(), proba)
    assert list(served["prediction"]) == list(classifier.classes_[np.argmax(proba, axis=1)])


@PROPERTY_SETTINGS
@given(data=st.data())
def test_a_row_predicts_as_it_does_alone(regressor, data):
    """A row's prediction does not depend on the rows it is sent with (documented)."""
    X = data.draw(frames(list(regressor.feature_names_in_)), label="X")
    row = data.draw(st.integers(min_value=0, max_value=len(X) - 1), label="row")
    batch = regressor.predict_summary(X, interval_prob=0.9)
    alone = regressor.predict_summary(X.iloc[[row]], interval_prob=0.9)
    for key, values in alone.items():
        np.testing.assert_allclose(values[0], batch[key][row], rtol=1e-12, atol=0, err_msg=key)
