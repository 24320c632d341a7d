"""A bespoke model of measurements with a detection limit: right-censored Normal regression.

Run the demo (fit on seeded censored data, log to MLflow, load back through pyfunc)::

    python examples/bespoke/censored_regression.py
"""

from __future__ import annotations

from numbers import Real

import numpy as np
import pandas as pd
import pymc as pm
from _linear_predictor import linear_predictor
from scipy.stats import norm
from sklearn.utils._param_validation import Interval

from estimators.base import BayesianEstimator
from estimators.modeling import training_constant
from estimators.regression import BayesianRegressor


class CensoredRegression(BayesianRegressor):
    """Linear regression whose targets are read as ``upper`` whenever they exceed it.

    ``y = min(y*, upper)`` with ``y* ~ Normal(intercept + X @ coef, sigma)``; the
    likelihood is ``pm.Censored(Normal, upper=upper)``, so a reading at the limit counts
    as "at least ``upper``". Predictions are of ``y``, never past the limit. The posterior
    holds ``coef``, ``intercept`` and ``sigma`` of ``y*``; read them with ``posterior_mean``.

    Parameters
    ----------
    upper : float or None, default=None
        The detection limit; None for none (then a plain Normal regression).
    prior_scale : float, default=2.5
        Standard deviation of the Normal priors on the intercept and the coefficients, in
        units of the standardised features and targets.
    **inference_params
        Inference settings of :class:`~estimators.base.BayesianEstimator`.

    See Also
    --------
    estimators.linear_model.LinearRegression : the same model without a limit.
    """

    _parameter_constraints = {
        **BayesianEstimator._parameter_constraints,
        "upper": [Real, None],
        "prior_scale": [Interval(Real, 0, None, closed="neither")],
    }

    def __init__(self, *, upper: float | None = None, prior_scale: float = 2.5, **inference_params):
        super().__init__(**inference_params)
        self.upper = upper
        self.prior_scale = prior_scale

    def build_model(self, X, y):
        target = y.get_value()
        y_loc, y_scale = training_constant(target.mean()), training_constant(target.std() or 1.0)
        mu = linear_predictor(X, self.prior_scale, offset=y_loc, scale=y_scale)
        sigma = pm.Deterministic("sigma", y_scale * pm.HalfNormal("noise_std", 1.0))
        likelihood = pm.Normal.dist(mu, sigma)
        pm.Censored("y_obs", likelihood, lower=None, upper=self.upper, observed=y, shape=X.shape[0])


def make_data(n_samples: int = 300, seed: int = 0, upper: float = 2.0) -> tuple[pd.DataFrame, pd.Series, np.ndarray]:
    """Seeded ``y* = 1 + x0 - 0.5 x1 + N(0, 0.5)`` read as ``min(y*, upper)``, and that reading's mean."""
    rng = np.random.default_rng(seed)
    X = pd.DataFrame(rng.normal(size=(n_samples, 2)), columns=["x0", "x1"])
    mu, sigma = 1.0 + X.to_numpy() @ np.array([1.0, -0.5]), 0.5
    z = (upper - mu) / sigma
    mean = mu * norm.cdf(z) - sigma * norm.pdf(z) + upper * norm.sf(z)  # E[min(y*, upper)]
    return X, pd.Series(np.minimum(rng.normal(mu, sigma), upper), name="reading"), mean


if __name__ == "__main__":
    from _demo import run_demo
    from censored_regression import CensoredRegression  # noqa: F811  (the class from its module: see run_demo)

    X, y, _ = make_data()
    model = CensoredRegression(upper=2.0, random_seed=0, progressbar=False)
    run_demo(model, X, y, __file__, ["coef", "intercept", "sigma"])
