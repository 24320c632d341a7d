"""Bayesian linear and logistic regression."""

from __future__ import annotations

from numbers import Real

import numpy as np
import pymc as pm
import pytensor.tensor as pt
from sklearn.utils._param_validation import Interval

from estimators.base import BayesianEstimator
from estimators.classification import BayesianClassifier
from estimators.modeling import class_likelihood, location_scale, logit_labels, standardized, training_constant
from estimators.regression import BayesianRegressor

_POSITIVE = [Interval(Real, 0, None, closed="neither")]


class _CoefficientsMixin:
    """``coef_`` and ``intercept_`` as posterior means of the ``coef``/``intercept`` variables."""

    @property
    def coef_(self) -> np.ndarray:
        """Posterior mean of the coefficients, in the units of the features."""
        return self.posterior_mean("coef")

    @property
    def intercept_(self) -> np.ndarray | float:
        """Posterior mean of the intercept."""
        return self.posterior_mean("intercept")


class LinearRegression(_CoefficientsMixin, BayesianRegressor):
    """Bayesian linear regression: Normal priors, Normal noise.

    Features and target are standardised inside the model with their training mean and
    standard deviation, so the priors are weakly informative whatever the data's units
    and ADVI converges quickly; ``coef``, ``intercept`` and ``sigma`` are kept in the
    original units as deterministic variables of the posterior.

    Parameters
    ----------
    prior_scale_intercept : float, default=2.5
        Standard deviation of the Normal prior on the standardised intercept.
    prior_scale_coef : float, default=2.5
        Standard deviation of the Normal prior on each standardised coefficient.
    prior_scale_noise : float, default=1.0
        Scale of the HalfNormal prior on the standardised noise standard deviation.
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
    n_features_in_ : int
        Number of features seen during fit.
    feature_names_in_ : ndarray of shape (`n_features_in_`,)
        Names of the features seen during fit, when X was a DataFrame with string columns.

    See Also
    --------
    sklearn.linear_model.BayesianRidge : the conjugate, point-estimate-of-hyperparameters peer.

    Examples
    --------
    >>> import numpy as np
    >>> from estimators.linear_model import LinearRegression
    >>> rng = np.random.default_rng(0)
    >>> X = rng.normal(size=(200, 2))
    >>> y = 1.0 + X @ [2.0, -1.0] + rng.normal(scale=0.5, size=200)
    >>> model = LinearRegression(random_seed=0, progressbar=False).fit(X, y)
    >>> bool(np.allclose(model.coef_, [2.0, -1.0], atol=0.15))
    True
    >>> mean, std = model.predict(X[:2], return_std=True)
    """

    _parameter_constraints = {
        **BayesianEstimator._parameter_constraints,
        "prior_scale_intercept": _POSITIVE,
        "prior_scale_coef": _POSITIVE,
        "prior_scale_noise": _POSITIVE,
    }

    def __init__(
        self,
        *,
        prior_scale_intercept: float = 2.5,
        prior_scale_coef: float = 2.5,
        prior_scale_noise: float = 1.0,
        **inference_params,
    ):
        super().__init__(**inference_params)
        self.prior_scale_intercept = prior_scale_intercept
        self.prior_scale_coef = prior_scale_coef
        self.prior_scale_noise = prior_scale_noise

    def build_model(self, X, y):
        X_std, x_loc, x_scale = standardized(X)
        y_loc, y_scale = map(training_constant, location_scale(np.asarray(y.get_value())))
        n_features = X.get_value().shape[1]
        intercept_std = pm.Normal("intercept_std", 0.0, self.prior_scale_intercept)
        coef_std = pm.Normal("coef_std", 0.0, self.prior_scale_coef, shape=n_features)
        noise_std = pm.HalfNormal("noise_std", self.prior_scale_noise)
        coef = pm.Deterministic("coef", coef_std * y_scale / x_scale, dims="feature")
        pm.Deterministic("intercept", y_loc + y_scale * intercept_std - pt.dot(coef, x_loc))
        sigma = pm.Deterministic("sigma", noise_std * y_scale)
        mu = y_loc + y_scale * (intercept_std + pt.dot(X_std, coef_std))
        pm.Normal("y_obs", mu=mu, sigma=sigma, observed=y, shape=X.shape[0])


class LogisticRegression(_CoefficientsMixin, BayesianClassifier):
    """Bayesian logistic regression: binary (Bernoulli) or multiclass (softmax).

    Class 0 (``classes_[0]``) is the reference: the model has one intercept and one
    coefficient vector per other class, with Normal priors on the standardised features.

    Parameters
    ----------
    prior_scale_intercept : float, default=2.5
        Standard deviation of the Normal prior on each intercept.
    prior_scale_coef : float, default=2.5
        Standard deviation of the Normal prior on each coefficient of a standardised feature.
    **inference_params
        Inference settings of :class:`~estimators.base.BayesianEstimator`.

    Attributes
    ----------
    idata_ : xarray.DataTree
        Posterior draws, training data and fit history.
    classes_ : ndarray of shape (n_classes,)
        Class labels.
    coef_ : ndarray of shape (n_classes - 1, n_features)
        Posterior mean log-odds coefficients of classes ``1..K-1`` against class 0.
    intercept_ : ndarray of shape (n_classes - 1,)
        Posterior mean intercepts.
    n_features_in_ : int
        Number of features seen during fit.
    feature_names_in_ : ndarray of shape (`n_features_in_`,)
        Names of the features seen during fit, when X was a DataFrame with string columns.

    See Also
    --------
    sklearn.linear_model.LogisticRegression : the penalised maximum-likelihood peer.

    Examples
    --------
    >>> import numpy as np
    >>> from estimators.linear_model import LogisticRegression
    >>> rng = np.random.default_rng(0)
    >>> X = rng.normal(size=(300, 2))
    >>> y = (X[:, 0] - X[:, 1] + rng.logistic(size=300) > 0).astype(int)
    >>> model = LogisticRegression(random_seed=0, progressbar=False).fit(X, y)
    >>> model.predict_proba(X[:1]).shape
    (1, 2)
    """

    _parameter_constraints = {
        **BayesianEstimator._parameter_constraints,
        "prior_scale_intercept": _POSITIVE,
        "prior_scale_coef": _POSITIVE,
    }

    def __init__(self, *, prior_scale_intercept: float = 2.5, prior_scale_coef: float = 2.5, **inference_params):
        super().__init__(**inference_params)
        self.prior_scale_intercept = prior_scale_intercept
        self.prior_scale_coef = prior_scale_coef

    def model_coords(self) -> dict[str, list]:
        """Also ``"logit"``: each class but the first, whose log-odds against the first the model learns."""
        return {**super().model_coords(), "logit": logit_labels(self.classes_)}

    def build_model(self, X, y):
        X_std, x_loc, x_scale = standardized(X)
        n_logits = len(self.classes_) - 1
        intercept_std = pm.Normal("intercept_std", 0.0, self.prior_scale_intercept, shape=n_logits)
        coef_std = pm.Normal("coef_std", 0.0, self.prior_scale_coef, shape=(X.get_value().shape[1], n_logits))
        pm.Deterministic("coef", (coef_std / x_scale[:, None]).T, dims=("logit", "feature"))
        pm.Deterministic("intercept", intercept_std - pt.dot(x_loc / x_scale, coef_std), dims="logit")
        logits = intercept_std + pt.dot(X_std, coef_std)
        class_likelihood("y_obs", logits, y, n_classes=len(self.classes_))
