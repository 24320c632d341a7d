"""A bespoke classifier of ordered classes (ratings, grades): ordered logistic regression.

Run the demo (fit on seeded ratings, log to MLflow, load back through pyfunc)::

    python examples/bespoke/ordinal_regression.py
"""

from __future__ import annotations

from numbers import Real

import numpy as np
import pandas as pd
import pymc as pm
from _linear_predictor import linear_predictor
from scipy.special import expit
from sklearn.utils._param_validation import Interval

from estimators.base import BayesianEstimator
from estimators.classification import BayesianClassifier

_POSITIVE = [Interval(Real, 0, None, closed="neither")]


class OrderedLogisticClassifier(BayesianClassifier):
    """Ordered classes from one latent score: ``P(y <= k) = sigmoid(cutpoint_k - X @ coef)``.

    The classes are ordered as ``classes_`` sorts them (numbers: ascending). The
    likelihood is ``pm.OrderedLogistic``, a ``Categorical`` over the class indices, so
    ``predict_proba`` gives every class's probability. The posterior holds ``coef``
    (features' units) and the ``cutpoints`` (on the scale of the centred score); read them
    with ``posterior_mean``.

    Parameters
    ----------
    prior_scale : float, default=2.5
        Standard deviation of the Normal priors on the coefficients of the standardised features.
    cutpoint_scale : float, default=5.0
        Standard deviation of the Normal prior on the (ordered) cutpoints.
    **inference_params
        Inference settings of :class:`~estimators.base.BayesianEstimator`.

    See Also
    --------
    estimators.linear_model.LogisticRegression : unordered classes.
    """

    _parameter_constraints = {
        **BayesianEstimator._parameter_constraints,
        "prior_scale": _POSITIVE,
        "cutpoint_scale": _POSITIVE,
    }

    def __init__(self, *, prior_scale: float = 2.5, cutpoint_scale: float = 5.0, **inference_params):
        super().__init__(**inference_params)
        self.prior_scale = prior_scale
        self.cutpoint_scale = cutpoint_scale

    def build_model(self, X, y):
        n_cutpoints = len(self.classes_) - 1
        eta = linear_predictor(X, self.prior_scale, intercept=False)
        cutpoints = pm.Normal(
            "cutpoints",
            0.0,
            self.cutpoint_scale,
            shape=n_cutpoints,
            transform=pm.distributions.transforms.ordered,
            initval=np.linspace(-1.0, 1.0, n_cutpoints),
        )
        pm.OrderedLogistic("y_obs", eta=eta, cutpoints=cutpoints, compute_p=False, observed=y, shape=X.shape[0])


def make_data(n_samples: int = 300, seed: int = 0) -> tuple[pd.DataFrame, pd.Series, np.ndarray]:
    """Seeded ratings 1 to 4 with score ``1.5 x0 - x1`` and cutpoints (-1.5, 0, 1.5), and
    each class's probability, shape (n_samples, 4)."""
    rng = np.random.default_rng(seed)
    X = pd.DataFrame(rng.normal(size=(n_samples, 2)), columns=["x0", "x1"])
    below = expit(np.array([-1.5, 0.0, 1.5]) - (X.to_numpy() @ np.array([1.5, -1.0]))[:, None])
    proba = np.diff(below, prepend=0.0, append=1.0, axis=1)
    ratings = 1 + (rng.uniform(size=(n_samples, 1)) > np.cumsum(proba, axis=1)[:, :-1]).sum(axis=1)
    return X, pd.Series(ratings, name="rating"), proba


if __name__ == "__main__":
    from _demo import run_demo
    from ordinal_regression import OrderedLogisticClassifier  # noqa: F811  (see run_demo)

    X, y, _ = make_data()
    model = OrderedLogisticClassifier(random_seed=0, progressbar=False)
    run_demo(model, X, y, __file__, ["coef", "cutpoints"], params={})
