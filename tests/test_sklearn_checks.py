"""scikit-learn's own estimator checks over the three linear models.

The instances use tiny inference settings: the checks test the API contract (validation,
cloning, fitted attributes, determinism, dtypes, pickling, ...) on toy data, not the quality
of the posterior, and they fit well over a hundred models, each compiled by PyTensor.
"""

from __future__ import annotations

import pytest
from sklearn.utils.estimator_checks import parametrize_with_checks

from estimators.linear_model import HierarchicalLogisticRegression, LinearRegression, LogisticRegression

pytestmark = pytest.mark.slow  # about 160 checks, each fitting and compiling: minutes, not seconds

#: Few draws and a short ADVI run: enough for the checks' easy training-score thresholds.
CHECK_SETTINGS = {"n_draws": 20, "max_iter": 300, "random_seed": 0, "progressbar": False}

ESTIMATORS = [
    LinearRegression(**CHECK_SETTINGS),
    LogisticRegression(**CHECK_SETTINGS),
    HierarchicalLogisticRegression(group_col=0, **CHECK_SETTINGS),
]


def expected_failed_checks(estimator) -> dict[str, str]:
    """Checks that cannot hold for the estimator, each with the reason."""
    if isinstance(estimator, HierarchicalLogisticRegression):
        return {
            "check_classifiers_train": (
                "The check's features are continuous, so column 0 (group_col=0) gives every "
                "row its own group label: the model can use that column only through "
                "partially pooled one-row group intercepts, not as a slope, and on the "
                "3-class blobs (one feature left) training accuracy is 0.79 with ADVI and "
                "0.82 with NUTS (the exact posterior), under the check's 0.83; a plain "
                "logistic regression on the remaining feature gets 0.78. Grouped data with "
                "categorical groups is tested in test_linear_model."
            ),
        }
    return {}


@parametrize_with_checks(ESTIMATORS, expected_failed_checks=expected_failed_checks, xfail_strict=True)
def test_sklearn_estimator_checks(estimator, check):
    check(estimator)
