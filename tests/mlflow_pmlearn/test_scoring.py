"""The pipeline split that autolog, the evaluator and promotion share."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

from estimators.linear_model import LinearRegression
from mlflow_pmlearn.pipelines import split_pipeline
from mlflow_pmlearn.scoring import bayesian_step
from tests.conftest import FAST


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
