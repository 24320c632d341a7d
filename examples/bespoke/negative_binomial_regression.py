"""A bespoke count model: negative binomial regression, for counts more variable than Poisson's.

Run the demo (fit on seeded counts, log to MLflow, load back through pyfunc)::

    python examples/bespoke/negative_binomial_regression.py
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


class NegativeBinomialRegression(BayesianRegressor):
    """Overdispersed counts: ``y ~ NegativeBinomial(mu=exp(intercept + X @ coef), alpha)``.

    The variance is ``mu + mu**2 / alpha``; the dispersion ``alpha`` is learnt (a large
    ``alpha`` means nearly Poisson counts). The posterior holds ``coef``, ``intercept``
    (log scale, features' units) and ``alpha``; read them with ``posterior_mean``.

    Parameters
    ----------
    prior_scale : float, default=1.0
        Standard deviation of the Normal priors on the intercept and the coefficients of
        the standardised features, on the log scale.
    alpha_rate : float, default=0.1
        Rate of the Exponential prior on ``alpha`` (prior mean ``1 / alpha_rate``).
    **inference_params
        Inference settings of :class:`~estimators.base.BayesianEstimator`.

    See Also
    --------
    poisson_regression.PoissonRegression : counts without overdispersion.
    """

    _parameter_constraints = {
        **BayesianEstimator._parameter_constraints,
        "prior_scale": _POSITIVE,
        "alpha_rate": _POSITIVE,
    }

    def __init__(self, *, prior_scale: float = 1.0, alpha_rate: float = 0.1, **inference_params):
        super().__init__(**inference_params)
        self.prior_scale = prior_scale
        self.alpha_rate = alpha_rate

    def build_model(self, X, y):
        log_mean = training_constant(np.log(np.mean(y.get_value()) + 0.5))
        eta = linear_predictor(X, self.prior_scale, offset=log_mean)
        alpha = pm.Exponential("alpha", self.alpha_rate)
        pm.NegativeBinomial("y_obs", mu=pt.exp(eta), alpha=alpha, observed=y, shape=X.shape[0])


def make_data(n_samples: int = 300, seed: int = 0) -> tuple[pd.DataFrame, pd.Series, np.ndarray]:
    """Seeded counts with ``log mean = 3 + 0.4 x0 - 0.3 x1`` and ``alpha = 5``, and that mean."""
    rng = np.random.default_rng(seed)
    X = pd.DataFrame(rng.normal(size=(n_samples, 2)), columns=["x0", "x1"])
    mean, alpha = np.exp(3.0 + X.to_numpy() @ np.array([0.4, -0.3])), 5.0
    return X, pd.Series(rng.negative_binomial(alpha, alpha / (alpha + mean)), name="count"), mean


if __name__ == "__main__":
    from _demo import run_demo
    from negative_binomial_regression import NegativeBinomialRegression  # noqa: F811  (see run_demo)

    X, y, _ = make_data()
    model = NegativeBinomialRegression(random_seed=0, progressbar=False)
    run_demo(model, X, y, __file__, ["coef", "intercept", "alpha"])
