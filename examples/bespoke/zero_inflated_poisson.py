"""A bespoke count model: zero-inflated Poisson regression, for counts with extra zeros.

Run the demo (fit on seeded counts, log to MLflow, load back through pyfunc)::

    python examples/bespoke/zero_inflated_poisson.py
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


class ZeroInflatedPoissonRegression(BayesianRegressor):
    """Counts that are a structural zero with probability ``1 - psi``, else Poisson.

    ``y ~ ZeroInflatedPoisson(psi, mu=exp(intercept + X @ coef))``, so the mean is
    ``psi * mu``; ``psi`` is learnt, with a uniform prior. The posterior holds ``coef``,
    ``intercept`` (of the Poisson part's log mean, features' units) and ``psi``; read them
    with ``posterior_mean``.

    Parameters
    ----------
    prior_scale : float, default=1.0
        Standard deviation of the Normal priors on the intercept and the coefficients of
        the standardised features, on the log scale.
    **inference_params
        Inference settings of :class:`~estimators.base.BayesianEstimator`.

    See Also
    --------
    poisson_regression.PoissonRegression : counts without extra zeros.
    """

    _parameter_constraints = {
        **BayesianEstimator._parameter_constraints,
        "prior_scale": [Interval(Real, 0, None, closed="neither")],
    }

    def __init__(self, *, prior_scale: float = 1.0, **inference_params):
        super().__init__(**inference_params)
        self.prior_scale = prior_scale

    def build_model(self, X, y):
        counts = y.get_value()
        log_mean = training_constant(np.log(np.mean(counts[counts > 0]) if counts.any() else 1.0))
        eta = linear_predictor(X, self.prior_scale, offset=log_mean)
        psi = pm.Beta("psi", 1.0, 1.0)
        pm.ZeroInflatedPoisson("y_obs", psi=psi, mu=pt.exp(eta), observed=y, shape=X.shape[0])


def make_data(n_samples: int = 300, seed: int = 0) -> tuple[pd.DataFrame, pd.Series, np.ndarray]:
    """Seeded counts: Poisson with ``log mu = 3 + 0.4 x0 - 0.3 x1``, zero with probability
    ``1 - psi = 0.04``; and the mean ``psi * mu``."""
    rng = np.random.default_rng(seed)
    X = pd.DataFrame(rng.normal(size=(n_samples, 2)), columns=["x0", "x1"])
    mu, psi = np.exp(3.0 + X.to_numpy() @ np.array([0.4, -0.3])), 0.96
    counts = np.where(rng.uniform(size=n_samples) < psi, rng.poisson(mu), 0)
    return X, pd.Series(counts, name="count"), psi * mu


if __name__ == "__main__":
    from _demo import run_demo
    from zero_inflated_poisson import ZeroInflatedPoissonRegression  # noqa: F811  (see run_demo)

    X, y, _ = make_data()
    model = ZeroInflatedPoissonRegression(random_seed=0, progressbar=False)
    run_demo(model, X, y, __file__, ["coef", "intercept", "psi"])
