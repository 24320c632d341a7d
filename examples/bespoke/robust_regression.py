"""A bespoke model written with the pmlearn template: robust (Student-t) linear regression.

One small class is the whole model: subclass :class:`~estimators.regression.BayesianRegressor`,
store the hyper-parameters in ``__init__``, write ``build_model``. Fitting (ADVI or NUTS),
prediction with uncertainty, scoring, saving, MLflow logging and serving come from the base
and the ``pmlearn`` flavor.

Run the demo (fit on data with outliers, log to MLflow, load back through pyfunc)::

    python examples/bespoke/robust_regression.py

It logs to ``MLFLOW_TRACKING_URI``, or to ``sqlite:///mlflow.db`` when that is unset.
"""

from __future__ import annotations

from numbers import Real

import numpy as np
import pandas as pd
import pymc as pm
import pytensor.tensor as pt
from sklearn.utils._param_validation import Interval

from estimators.base import BayesianEstimator
from estimators.modeling import standardized, training_constant
from estimators.regression import BayesianRegressor

_POSITIVE = [Interval(Real, 0, None, closed="neither")]


class RobustRegression(BayesianRegressor):
    """Linear regression with Student-t noise, so that outliers barely pull the fit.

    The degrees of freedom ``nu`` are learnt: ``nu = 1 + Exponential(nu_rate)``; a small
    ``nu`` means heavy tails (outliers are expected), a large one approaches Normal
    noise. Features are standardised with their training mean and standard deviation;
    the target with its median and median absolute deviation, which outliers do not
    inflate. ``coef``, ``intercept`` and ``sigma`` are kept in the original units.

    Parameters
    ----------
    prior_scale : float, default=2.5
        Standard deviation of the Normal priors on the standardised intercept and
        coefficients.
    prior_scale_noise : float, default=1.0
        Scale of the HalfNormal prior on the standardised noise scale.
    nu_rate : float, default=0.1
        Rate of the Exponential prior on ``nu - 1`` (prior mean of ``nu`` is
        ``1 + 1 / nu_rate``).
    **inference_params
        Inference settings of :class:`~estimators.base.BayesianEstimator`
        (``inference``, ``n_draws``, ``random_seed``, ...).

    Attributes
    ----------
    idata_ : xarray.DataTree
        Posterior draws, training data and fit history.
    coef_ : ndarray of shape (n_features,)
        Posterior mean of the coefficients.
    intercept_ : float
        Posterior mean of the intercept.
    nu_ : float
        Posterior mean of the degrees of freedom.
    n_features_in_ : int
        Number of features seen during fit.

    See Also
    --------
    estimators.linear_model.LinearRegression : the same model with Normal noise.
    sklearn.linear_model.HuberRegressor : a robust point-estimate peer.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> X = rng.normal(size=(200, 1))
    >>> y = 1.0 + 2.0 * X[:, 0] + rng.normal(scale=0.3, size=200)
    >>> y[:10] += 15.0  # outliers
    >>> model = RobustRegression(random_seed=0, progressbar=False).fit(X, y)
    >>> bool(abs(model.coef_[0] - 2.0) < 0.2)
    True
    >>> model.predict_interval(X[:3], prob=0.9).shape
    (3, 2)
    """

    _parameter_constraints = {
        **BayesianEstimator._parameter_constraints,
        "prior_scale": _POSITIVE,
        "prior_scale_noise": _POSITIVE,
        "nu_rate": _POSITIVE,
    }

    def __init__(
        self,
        *,
        prior_scale: float = 2.5,
        prior_scale_noise: float = 1.0,
        nu_rate: float = 0.1,
        **inference_params,
    ):
        super().__init__(**inference_params)
        self.prior_scale = prior_scale
        self.prior_scale_noise = prior_scale_noise
        self.nu_rate = nu_rate

    def build_model(self, X, y):
        X_std, x_loc, x_scale = standardized(X)
        # Robust location and scale of the training target, as training constants: shared
        # values, so that a refit on new data reuses the C code PyTensor compiled.
        y_train = np.asarray(y.get_value())
        median = np.median(y_train)
        y_loc = training_constant(median)
        y_scale = training_constant(1.4826 * np.median(np.abs(y_train - median)) or 1.0)
        intercept_std = pm.Normal("intercept_std", 0.0, self.prior_scale)
        coef_std = pm.Normal("coef_std", 0.0, self.prior_scale, shape=X.get_value().shape[1])
        noise_std = pm.HalfNormal("noise_std", self.prior_scale_noise)
        nu = pm.Deterministic("nu", 1.0 + pm.Exponential("nu_minus_one", self.nu_rate))
        coef = pm.Deterministic("coef", coef_std * y_scale / x_scale)
        pm.Deterministic("intercept", y_loc + y_scale * intercept_std - pt.dot(coef, x_loc))
        sigma = pm.Deterministic("sigma", noise_std * y_scale)
        mu = y_loc + y_scale * (intercept_std + pt.dot(X_std, coef_std))
        pm.StudentT("y_obs", nu=nu, mu=mu, sigma=sigma, observed=y, shape=X.shape[0])

    @property
    def coef_(self) -> np.ndarray:
        """Posterior mean of the coefficients, in the units of the features."""
        return self.posterior_mean("coef")

    @property
    def intercept_(self) -> float:
        """Posterior mean of the intercept."""
        return self.posterior_mean("intercept")

    @property
    def nu_(self) -> float:
        """Posterior mean of the Student-t degrees of freedom."""
        return self.posterior_mean("nu")


def make_data(n_samples: int = 300, n_outliers: int = 15, seed: int = 0):
    """Seeded linear data, y = 1 + 2 x0 - 1 x1 + N(0, 0.5), with gross outliers in y."""
    rng = np.random.default_rng(seed)
    X = pd.DataFrame(rng.normal(size=(n_samples, 2)), columns=["x0", "x1"])
    y = 1.0 + X.to_numpy() @ np.array([2.0, -1.0]) + rng.normal(scale=0.5, size=n_samples)
    outliers = rng.choice(n_samples, size=n_outliers, replace=False)
    y[outliers] += rng.choice([-1.0, 1.0], size=n_outliers) * rng.uniform(10.0, 20.0, size=n_outliers)
    return X, pd.Series(y, name="y")


def main() -> None:
    import os

    import mlflow

    import mlflow_pmlearn

    mlflow.set_tracking_uri(os.environ.get("MLFLOW_TRACKING_URI", "sqlite:///mlflow.db"))
    mlflow.set_experiment("pmlearn-bespoke-robust-regression")

    X, y = make_data()
    model = RobustRegression(n_draws=500, random_seed=0, progressbar=False).fit(X, y)
    print(f"coef = {np.round(model.coef_, 2)}, intercept = {model.intercept_:.2f}, nu = {model.nu_:.1f}")

    with mlflow.start_run():
        mlflow.log_params({k: v for k, v in model.get_params().items() if v is not None})
        # code_paths ships this file with the model: wherever the model is loaded, the
        # class is imported from that copy (never from a pickle).
        info = mlflow_pmlearn.log_model(model, name="model", code_paths=[__file__], input_example=X.head(3))
    print(f"logged {info.model_uri}")

    served = mlflow.pyfunc.load_model(info.model_uri)
    new_rows = pd.DataFrame({"x0": [-1.0, 0.0, 1.0], "x1": [0.5, 0.0, -0.5]})
    frame = served.predict(new_rows, params={"return_std": True, "interval_prob": 0.9})
    print(pd.concat([new_rows, frame], axis=1).round(3).to_string(index=False))


if __name__ == "__main__":
    # Use the class from its module, not from ``__main__``: the saved model then names
    # ``robust_regression.RobustRegression``, which the shipped copy of this file provides
    # wherever the model is loaded (a class in ``__main__`` is not findable by name there).
    from robust_regression import RobustRegression  # noqa: F811  (this very file)

    main()
