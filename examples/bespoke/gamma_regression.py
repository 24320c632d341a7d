"""A bespoke model of positive, right-skewed targets: Gamma regression with a log link.

Run the demo (fit on seeded data, log to MLflow, load back through pyfunc)::

    python examples/bespoke/gamma_regression.py
"""

from __future__ import annotations

from numbers import Real

import numpy as np
import pandas as pd
import pymc as pm
import pytensor.tensor as pt
from _linear_predictor import linear_predictor
from sklearn.utils._param_validation import Interval

from estimators.base import BayesianEstimator
from estimators.modeling import training_constant
from estimators.regression import BayesianRegressor

_POSITIVE = [Interval(Real, 0, None, closed="neither")]


class GammaRegression(BayesianRegressor):
    """Positive targets with ``log mean = intercept + X @ coef`` and a learnt Gamma shape.

    ``y ~ Gamma(alpha=shape, beta=shape / mean)``: the coefficient of variation is
    ``1 / sqrt(shape)`` at every mean. The posterior holds ``coef``, ``intercept`` (log
    scale, features' units) and ``shape``; read them with ``posterior_mean``.

    Parameters
    ----------
    prior_scale : float, default=1.0
        Standard deviation of the Normal priors on the intercept and the coefficients of
        the standardised features, on the log scale.
    shape_rate : float, default=0.1
        Rate of the Exponential prior on ``shape`` (prior mean ``1 / shape_rate``).
    **inference_params
        Inference settings of :class:`~estimators.base.BayesianEstimator`.

    See Also
    --------
    sklearn.linear_model.GammaRegressor : the point-estimate peer.
    """

    _parameter_constraints = {
        **BayesianEstimator._parameter_constraints,
        "prior_scale": _POSITIVE,
        "shape_rate": _POSITIVE,
    }

    def __init__(self, *, prior_scale: float = 1.0, shape_rate: float = 0.1, **inference_params):
        super().__init__(**inference_params)
        self.prior_scale = prior_scale
        self.shape_rate = shape_rate

    def build_model(self, X, y):
        log_mean = training_constant(np.log(np.mean(y.get_value())))
        mean = pt.exp(linear_predictor(X, self.prior_scale, offset=log_mean))
        shape = pm.Exponential("shape", self.shape_rate)
        pm.Gamma("y_obs", alpha=shape, beta=shape / mean, observed=y, shape=X.shape[0])


def make_data(n_samples: int = 300, seed: int = 0) -> tuple[pd.DataFrame, pd.Series, np.ndarray]:
    """Seeded positive targets with ``log mean = 1 + 0.5 x0 - 0.3 x1`` and shape 4, and that mean."""
    rng = np.random.default_rng(seed)
    X = pd.DataFrame(rng.normal(size=(n_samples, 2)), columns=["x0", "x1"])
    mean, shape = np.exp(1.0 + X.to_numpy() @ np.array([0.5, -0.3])), 4.0
    return X, pd.Series(rng.gamma(shape, mean / shape), name="y"), mean


if __name__ == "__main__":
    from _demo import run_demo
    from gamma_regression import GammaRegression  # noqa: F811  (the class from its module: see run_demo)

    X, y, _ = make_data()
    run_demo(GammaRegression(random_seed=0, progressbar=False), X, y, __file__, ["coef", "intercept", "shape"])
