"""scikit-learn's own estimator checks over every built-in estimator.

The instances use tiny inference settings: the checks test the API contract (validation,
cloning, fitted attributes, determinism, dtypes, pickling, ...) on toy data, not the quality
of the posterior, and they fit dozens of models per estimator. Each check runs in
PyTensor's ``FAST_COMPILE`` mode (NumPy, few graph rewrites), not the default Numba
backend: on toy data compiling, not running, is what the default costs, and the checks do
not test the compiled code (the other tests do).
"""

from __future__ import annotations

import pytensor
import pytest
from family_helpers import every_estimator
from sklearn.utils.estimator_checks import parametrize_with_checks

from estimators.linear_model import HierarchicalLogisticRegression

pytestmark = pytest.mark.slow  # minutes, not seconds: each check fits and compiles

#: Few draws and a short ADVI run: enough for the checks' easy training-score thresholds.
CHECK_SETTINGS = {"inference": "advi", "n_draws": 20, "max_iter": 300, "random_seed": 0, "progressbar": False}


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


#: Every built-in estimator, in a small configuration.
CHECKED = every_estimator(**CHECK_SETTINGS)


def _check_class(estimator) -> type:
    """A test class running scikit-learn's checks on ``estimator``.

    One class per estimator because pytest-xdist's ``--dist loadscope`` hands each class
    to one worker whole: so the estimators, not only the modules, spread over the workers.
    """

    @parametrize_with_checks([estimator], expected_failed_checks=expected_failed_checks, xfail_strict=True)
    def test_sklearn_estimator_checks(self, estimator, check):
        with pytensor.config.change_flags(mode="FAST_COMPILE"):
            check(estimator)

    return type(f"Test{type(estimator).__name__}", (), {"test_sklearn_estimator_checks": test_sklearn_estimator_checks})


for _estimator in CHECKED:
    _test_class = _check_class(_estimator)
    globals()[_test_class.__name__] = _test_class
