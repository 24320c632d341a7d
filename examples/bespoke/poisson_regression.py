"""A bespoke count model: Poisson regression with a log link.

Run the demo (fit on seeded counts, log to MLflow, load back through pyfunc)::

    python examples/bespoke/poisson_regression.py
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


class PoissonRegression(BayesianRegressor):
    """Counts whose log mean is linear in the features: ``y ~ Poisson(exp(intercept + X @ coef))``.

    The log link is centred on the log of the training counts' mean. The posterior holds
    ``coef`` and ``intercept`` (log scale, features' units); read them with
    ``posterior_mean``.

    Parameters
    ----------
    prior_scale : float, default=1.0
        Standard deviation of the Normal priors on the intercept and the coefficients of
        the standardised features, on the log scale.
    **inference_params
        Inference settings of :class:`~estimators.base.BayesianEstimator`.

    See Also
    --------
    negative_binomial_regression.NegativeBinomialRegression : for overdispersed counts.
    sklearn.linear_model.PoissonRegressor : the point-estimate peer.
    """

    _parameter_constraints = {
        **BayesianEstimator._parameter_constraints,
        "prior_scale": [Interval(Real, 0, None, closed="neither")],
    }

    def __init__(self, *, prior_scale: float = 1.0, **inference_params):
        super().__init__(**inference_params)
        self.prior_scale = prior_scale

    def build_model(self, X, y):
        log_mean = training_constant(np.log(np.mean(y.get_value()) + 0.5))
        eta = linear_predictor(X, self.prior_scale, offset=log_mean)
        pm.Poisson("y_obs", mu=pt.exp(eta), observed=y, shape=X.shape[0])


def make_data(n_samples: int = 300, seed: int = 0) -> tuple[pd.DataFrame, pd.Series, np.ndarray]:
    """Seeded counts with ``log mean = 3 + 0.4 x0 - 0.3 x1`` (means of about 8 to 50), and that mean."""
    rng = np.random.default_rng(seed)
    X = pd.DataFrame(rng.normal(size=(n_samples, 2)), columns=["x0", "x1"])
    mean = np.exp(3.0 + X.to_numpy() @ np.array([0.4, -0.3]))
    return X, pd.Series(rng.poisson(mean), name="count"), mean


if __name__ == "__main__":
    from _demo import run_demo
    from poisson_regression import PoissonRegression  # noqa: F811  (the class from its module: see run_demo)

    X, y, _ = make_data()
    run_demo(PoissonRegression(random_seed=0, progressbar=False), X, y, __file__, ["coef", "intercept"])
