"""The shared scores and the pipeline split: CRPS against its closed form, coverage against NumPy's quantiles."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from properscoring_reference import crps_gaussian_reference
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

from estimators.linear_model import LinearRegression
from mlflow_pmlearn.pipelines import split_pipeline
from mlflow_pmlearn.scoring import bayesian_step, crps, inside_central_interval
from tests.conftest import FAST


def test_crps_of_samples_matches_the_closed_form_for_a_normal():
    rng = np.random.default_rng(0)
    samples = rng.normal(1.0, 2.0, size=(20_000, 1))
    for y in (-1.0, 1.0, 4.0):
        assert crps(samples, np.array([y]))[0] == pytest.approx(crps_gaussian_reference(y, 1.0, 2.0), rel=0.02)


@pytest.mark.parametrize("prob", [0.5, 0.9, 0.94])
def test_inside_central_interval_agrees_with_numpy_quantiles(prob):
    rng = np.random.default_rng(1)
    samples = rng.normal(size=(101, 500)).round(1)  # ties, and targets on the draws themselves
    target = np.concatenate([rng.normal(size=250).round(1), samples[3, 250:]])
    lower, upper = np.quantile(samples, [(1 - prob) / 2, (1 + prob) / 2], axis=0)
    np.testing.assert_array_equal(inside_central_interval(samples, target, prob), (lower <= target) & (target <= upper))


def test_split_pipeline_gives_the_preprocessing_and_the_bayesian_step(regression_data):
    X, y, _ = regression_data
    X, y = X.iloc[:60], y.iloc[:60]
    inner = Pipeline([("scale", StandardScaler()), ("reg", LinearRegression(**FAST))])
    pipeline = Pipeline([("first", StandardScaler()), ("inner", inner)]).fit(X, y)
    preprocessing, estimator = split_pipeline(pipeline)
    assert estimator is inner.named_steps["reg"]
    expected = inner.named_steps["scale"].transform(pipeline.named_steps["first"].transform(X))
    np.testing.assert_allclose(preprocessing.transform(X), expected)
    assert pipeline.named_steps["inner"].steps[-1][1] is estimator  # the pipeline is unchanged
    assert split_pipeline(estimator) == (None, estimator)
    assert split_pipeline(StandardScaler()) == (None, None)
    assert split_pipeline(Pipeline([("scale", StandardScaler())])) == (None, None)
    step, rows = bayesian_step(pipeline, X)
    assert step is estimator
    np.testing.assert_allclose(rows, expected)
    with pytest.raises(Exception, match="Not a pmlearn model: DataFrame"):
        bayesian_step(pd.DataFrame())
