"""A bespoke model of proportions: Beta regression with a logit link.

Run the demo (fit on seeded proportions, log to MLflow, load back through pyfunc)::

    python examples/bespoke/beta_regression.py
"""

from __future__ import annotations

from numbers import Real

import numpy as np
import pandas as pd
import pymc as pm
import pytensor.tensor as pt
from _linear_predictor import linear_predictor
from scipy.special import expit, logit
from sklearn.utils._param_validation import Interval

from estimators.base import BayesianEstimator
from estimators.modeling import training_constant
from estimators.regression import BayesianRegressor

_POSITIVE = [Interval(Real, 0, None, closed="neither")]


class BetaRegression(BayesianRegressor):
    """Targets in (0, 1) with ``logit mean = intercept + X @ coef`` and a learnt precision.

    ``y ~ Beta(mean * phi, (1 - mean) * phi)``: the variance is
    ``mean * (1 - mean) / (1 + phi)``. The posterior holds ``coef``, ``intercept`` (logit
    scale, features' units) and ``phi``; read them with ``posterior_mean``.

    Parameters
    ----------
    prior_scale : float, default=1.0
        Standard deviation of the Normal priors on the intercept and the coefficients of
        the standardised features, on the logit scale.
    phi_rate : float, default=0.05
        Rate of the Exponential prior on the precision ``phi`` (prior mean ``1 / phi_rate``).
    **inference_params
        Inference settings of :class:`~estimators.base.BayesianEstimator`.
    """

    _parameter_constraints = {
        **BayesianEstimator._parameter_constraints,
        "prior_scale": _POSITIVE,
        "phi_rate": _POSITIVE,
    }

    def __init__(self, *, prior_scale: float = 1.0, phi_rate: float = 0.05, **inference_params):
        super().__init__(**inference_params)
        self.prior_scale = prior_scale
        self.phi_rate = phi_rate

    def build_model(self, X, y):
        logit_mean = training_constant(logit(np.mean(y.get_value())))
        mean = pt.sigmoid(linear_predictor(X, self.prior_scale, offset=logit_mean))
        phi = pm.Exponential("phi", self.phi_rate)
        pm.Beta("y_obs", alpha=mean * phi, beta=(1.0 - mean) * phi, observed=y, shape=X.shape[0])


def make_data(n_samples: int = 300, seed: int = 0) -> tuple[pd.DataFrame, pd.Series, np.ndarray]:
    """Seeded proportions with ``logit mean = 0.3 + 0.8 x0 - 0.5 x1`` and ``phi = 20``, and that mean."""
    rng = np.random.default_rng(seed)
    X = pd.DataFrame(rng.normal(size=(n_samples, 2)), columns=["x0", "x1"])
    mean, phi = expit(0.3 + X.to_numpy() @ np.array([0.8, -0.5])), 20.0
    return X, pd.Series(rng.beta(mean * phi, (1.0 - mean) * phi), name="share"), mean


if __name__ == "__main__":
    from _demo import run_demo
    from beta_regression import BetaRegression  # noqa: F811  (the class from its module: see run_demo)

    X, y, _ = make_data()
    run_demo(BetaRegression(random_seed=0, progressbar=False), X, y, __file__, ["coef", "intercept", "phi"])
