"""Exact Gaussian-process regression: Gaussian noise (marginal) and Student-t noise (latent)."""

from __future__ import annotations

from numbers import Real

import numpy as np
import pymc as pm
import pytensor.tensor as pt
from pytensor.tensor.linalg import cho_solve, cholesky, solve_triangular
from sklearn.utils._param_validation import Interval, StrOptions

from estimators.base import TARGET, BayesianEstimator
from estimators.gaussian_process._kernels import JITTER, KERNELS, covariance, gaussian_log_likelihood
from estimators.modeling import location_scale, standardized, training_constant
from estimators.regression import BayesianRegressor

_POSITIVE = [Interval(Real, 0, None, closed="neither")]

#: Model variables of the kernel hyper-parameters, in standardised units.
LENGTH_SCALE, AMPLITUDE, NOISE = "length_scale_std", "amplitude_std", "noise_std"


class _GaussianProcessMixin:
    """What the Gaussian-process regressors share: kernel, hyper-priors, standardisation, attributes.

    Features are standardised with their training mean and standard deviation and the
    target with a training location and scale, inside the model (as
    :class:`~estimators.linear_model.LinearRegression` does): the priors below are then
    weakly informative whatever the data's units. The hyper-parameters are kept in the
    units of the data as the deterministic variables ``length_scale``, ``amplitude`` and
    ``noise``.

    A prediction is each row's own distribution given a posterior draw of the
    hyper-parameters, with the latent function at the new rows marginalised row by row:
    rows are not independent given a draw, so these models give no joint draws (no
    ``draws`` prediction parameter).
    """

    prediction_params = {
        name: default for name, default in BayesianRegressor.prediction_params.items() if name != "draws"
    }
    _parameter_constraints: dict = {
        **BayesianEstimator._parameter_constraints,
        "kernel": [StrOptions(set(KERNELS)), None],
        "ard": ["boolean"],
        "prior_length_scale": _POSITIVE,
        "prior_scale_amplitude": _POSITIVE,
        "prior_scale_noise": _POSITIVE,
    }

    def _kernel_name(self) -> str:
        return KERNELS[0] if self.kernel is None else self.kernel

    def _target_location_scale(self, y: np.ndarray) -> tuple[float, float]:
        """Training location and scale of the target; the mean and standard deviation."""
        location, scale = location_scale(y)
        return float(location), float(scale)

    def _target_standardization(self, y: pt.TensorVariable) -> tuple[pt.TensorVariable, pt.TensorVariable]:
        """The target's training location and scale, as training constants of the graph."""
        location, scale = self._target_location_scale(np.asarray(y.get_value()))
        return training_constant(location), training_constant(scale)

    def _hyperpriors(self, x_scale: pt.TensorVariable, y_scale: pt.TensorVariable):
        """Priors of the length scale(s), amplitude and noise (standardised units).

        Length scale: LogNormal with median ``prior_length_scale`` and log-scale 1 (one per
        feature with ``ard=True``); amplitude and noise standard deviation: HalfNormal.
        """
        shape = x_scale.get_value().shape if self.ard else ()
        length_scale = pm.LogNormal(LENGTH_SCALE, mu=np.log(self.prior_length_scale), sigma=1.0, shape=shape)
        amplitude = pm.HalfNormal(AMPLITUDE, self.prior_scale_amplitude)
        noise = pm.HalfNormal(NOISE, self.prior_scale_noise)
        pm.Deterministic("length_scale", length_scale * x_scale, dims="feature" if self.ard else None)
        pm.Deterministic("amplitude", amplitude * y_scale)
        pm.Deterministic("noise", noise * y_scale)
        return length_scale, amplitude, noise

    def _training_parts(self, model: pm.Model, inputs: dict | None = None):
        """Standardised training features and targets (and new rows), from the fitted model.

        Returns
        -------
        X_train, X_new : TensorVariable
            Standardised with the training statistics; ``X_new`` is None without ``inputs``.
        target : TensorVariable
            The standardised training targets.
        y_location, y_scale : TensorVariable
        """
        X = model["X"]
        X_train, x_location, x_scale = standardized(X)
        X_new = None if inputs is None else (inputs[X] - x_location) / x_scale
        y_location, y_scale = self._target_standardization(model[TARGET])
        target = (model[TARGET] - y_location) / y_scale
        return X_train, X_new, target, y_location, y_scale

    @property
    def length_scale_(self) -> np.ndarray:
        """Posterior mean length scale of each feature, in the units of the features."""
        return np.atleast_1d(self.posterior_mean("length_scale"))

    @property
    def amplitude_(self) -> float:
        """Posterior mean standard deviation of the latent function, in the units of the target."""
        return self.posterior_mean("amplitude")

    @property
    def noise_(self) -> float:
        """Posterior mean noise standard deviation (Student-t: noise scale), in the units of the target."""
        return self.posterior_mean("noise")


def _gaussian_conditional(kernel, X_train, X_new, target, length_scale, amplitude, noise):
    """Mean and variance of the latent function at ``X_new`` given noisy targets at ``X_train``.

    For one draw of the hyper-parameters: ``K = k(X, X) + noise^2 I = L L^T``; mean
    ``k(X_new, X) K^-1 y`` and variance ``amplitude^2 - |L^-1 k(X, X_new)|^2`` (the
    kernels are stationary). ``L`` and ``K^-1 y`` depend on the draw only, so the
    prediction function computes them once per draw, not per call.
    """
    K = covariance(kernel, X_train, X_train, length_scale, amplitude)
    L = cholesky(K + (noise**2 + JITTER) * pt.eye(X_train.shape[0]), lower=True)
    alpha = cho_solve((L, True), target)
    K_cross = covariance(kernel, X_train, X_new, length_scale, amplitude)
    V = solve_triangular(L, K_cross, lower=True)
    return K_cross.T @ alpha, pt.maximum(amplitude**2 - pt.sum(V**2, axis=0), 0.0)


class GaussianProcessRegressor(_GaussianProcessMixin, BayesianRegressor):
    """Gaussian-process regression with a posterior over the kernel hyper-parameters.

    The latent function is integrated out (the marginal likelihood of a GP with Gaussian
    noise, ``y ~ N(mean, K + noise^2 I)``, written directly; its gradient costs one
    Cholesky factorisation and one inverse per step), so the posterior is over the
    length scale(s), amplitude and noise only. Features and target are standardised inside
    the model; the mean function is the training mean of the target.

    A prediction is, for each posterior draw, the GP conditioned on the training data
    (kept in ``idata_``): ``Normal(mu*, sqrt(var* + noise^2))``; the draws are averaged.
    Its cost grows with the training rows ``n``: fitting factorises an ``n x n`` matrix
    at every gradient or Hessian-vector product (``O(n^3)``; a few dozen of them for a
    Laplace fit: a retraining fit at 1,000 rows took 1.7 times scikit-learn's on two cores,
    where ADVI takes about 1,900); the prediction
    function factorises it once per posterior draw when first built and keeps the factors
    (``n_draws * n^2`` floats: 800 MB for 100 draws of 1,000 rows, 32 MB for 200 rows),
    and a call then costs ``O(n_draws * n^2)`` per row (1,000 rows: 35 ms for one row,
    5 s for 1,000). Hence ``n_draws=100`` by default. For more than about a thousand rows
    use :class:`SparseGaussianProcessRegressor`.

    Parameters
    ----------
    kernel : {"rbf", "matern52", "matern32", "exponential"} or None, default=None
        Covariance function of the standardised features: squared exponential (``None``
        and ``"rbf"``), Matern 5/2, Matern 3/2 or exponential (Matern 1/2). A name, so
        that it is a JSON-compatible hyper-parameter; the length scales, amplitude and noise
        are inferred.
    ard : bool, default=False
        One length scale per feature (automatic relevance determination) instead of one
        shared by all (standardised) features.
    prior_length_scale : float, default=1.0
        Median of the LogNormal prior (log-scale 1) of the length scale, in standard
        deviations of the features.
    prior_scale_amplitude : float, default=1.0
        Scale of the HalfNormal prior of the amplitude, in standard deviations of the target.
    prior_scale_noise : float, default=1.0
        Scale of the HalfNormal prior of the noise standard deviation, in standard
        deviations of the target.
    n_draws : int, default=100
        Posterior draws kept and averaged over by predictions (fewer than the base's
        default: see the cost above).
    inference : {"advi", "fullrank_advi", "nuts", "pathfinder", "laplace"}, default="laplace"
        How to fit; see :class:`~estimators.base.BayesianEstimator`. The posterior is over
        three numbers (``2 + n_features`` with ``ard``), so the Laplace approximation (the
        mode by L-BFGS, the covariance from the exact Hessian) takes a dozen steps where
        ADVI takes about 2,000 and NUTS several thousand gradients, each of which
        factorises the ``n x n`` covariance. It meets the accuracy rule of
        ``benchmarks/engines.py`` on its 300-row GP (means within 0.08 sd of a long NUTS
        run, widths 0.95-0.97x) in 1.5 s where NUTS took 141 s; ``benchmarks/gp.py``
        measures it against scikit-learn.
    **inference_params
        Other inference settings of :class:`~estimators.base.BayesianEstimator`
        (``random_seed``, ...).

    Attributes
    ----------
    idata_ : xarray.DataTree
        Posterior draws, training data and fit history.
    length_scale_ : ndarray of shape (n_features,)
        Posterior mean length scale of each feature, in its units.
    amplitude_ : float
        Posterior mean amplitude (standard deviation of the latent function).
    noise_ : float
        Posterior mean noise standard deviation.
    n_features_in_ : int
        Number of features seen during fit.
    feature_names_in_ : ndarray of shape (n_features_in_,)
        Names of the features seen during fit, when X was a DataFrame with string columns.

    See Also
    --------
    sklearn.gaussian_process.GaussianProcessRegressor : hyper-parameters by maximum
        marginal likelihood instead of a posterior.
    StudentTProcessRegressor : Student-t noise, robust to outliers.
    SparseGaussianProcessRegressor : inducing points, for many rows.

    Examples
    --------
    >>> import numpy as np
    >>> from estimators.gaussian_process import GaussianProcessRegressor
    >>> rng = np.random.default_rng(0)
    >>> X = rng.uniform(0, 10, size=(80, 1))
    >>> y = np.sin(X[:, 0]) + rng.normal(scale=0.1, size=80)
    >>> model = GaussianProcessRegressor(kernel="matern52", random_seed=0, progressbar=False)
    >>> model = model.fit(X, y)
    >>> mean, std = model.predict([[2.5], [5.0]], return_std=True)
    >>> bool(np.all(np.abs(mean - np.sin([2.5, 5.0])) < 0.2))
    True
    """

    def __init__(
        self,
        *,
        kernel: str | None = None,
        ard: bool = False,
        prior_length_scale: float = 1.0,
        prior_scale_amplitude: float = 1.0,
        prior_scale_noise: float = 1.0,
        n_draws: int = 100,
        inference: str = "laplace",
        **inference_params,
    ):
        super().__init__(n_draws=n_draws, inference=inference, **inference_params)
        self.kernel = kernel
        self.ard = ard
        self.prior_length_scale = prior_length_scale
        self.prior_scale_amplitude = prior_scale_amplitude
        self.prior_scale_noise = prior_scale_noise

    def build_model(self, X, y):
        X_std, _, x_scale = standardized(X)
        y_location, y_scale = self._target_standardization(y)
        length_scale, amplitude, noise = self._hyperpriors(x_scale, y_scale)
        K = covariance(self._kernel_name(), X_std, X_std, length_scale, amplitude)
        K = K + (noise**2 + JITTER) * pt.eye(X.shape[0])

        def logp(value, K):
            standardized_value = (value - y_location) / y_scale
            return gaussian_log_likelihood(K, standardized_value)[0] - value.shape[0] * pt.log(y_scale)

        pm.CustomDist("y_obs", K, logp=logp, observed=y, signature="(n,n)->(n)")

    def predictive_distribution(self, model, inputs):
        X_train, X_new, target, y_location, y_scale = self._training_parts(model, inputs)
        length_scale, amplitude, noise = (model[name] for name in (LENGTH_SCALE, AMPLITUDE, NOISE))
        mean, variance = _gaussian_conditional(
            self._kernel_name(), X_train, X_new, target, length_scale, amplitude, noise
        )
        return pm.Normal.dist(y_location + y_scale * mean, y_scale * pt.sqrt(variance + noise**2))


class StudentTProcessRegressor(_GaussianProcessMixin, BayesianRegressor):
    """Gaussian-process regression with Student-t noise: robust to outliers.

    A latent GP ``f`` (non-centred: ``f = L z``, ``z ~ N(0, I)``, ``K = L L^T``) with
    Student-t noise ``y ~ StudentT(nu, f, noise)`` whose degrees of freedom are inferred,
    ``nu = 1 + Exponential(nu_rate)``: a small ``nu`` lets outliers sit in the tails
    instead of bending the function or inflating the noise, a large one approaches
    Gaussian noise. The target is standardised with its median and median absolute
    deviation, which outliers do not inflate.

    A prediction is, for each posterior draw, ``StudentT(nu, mu*, sqrt(noise^2 + var*))``
    with ``mu*`` and ``var*`` the GP conditioned on the draw's latent values at the
    training rows: exact where ``var*`` is small next to ``noise^2`` (near training data),
    heavier-tailed than the exact Normal-plus-Student-t sum far from them. The posterior
    has one latent value per training row, so this model suits hundreds of rows, not
    thousands: fitting costs ``O(n^3)`` per ADVI step, and prediction keeps one Cholesky
    factor per draw, as :class:`GaussianProcessRegressor` does.

    Parameters
    ----------
    kernel : {"rbf", "matern52", "matern32", "exponential"} or None, default=None
        Covariance function (``None``: squared exponential); see
        :class:`GaussianProcessRegressor`.
    ard : bool, default=False
        One length scale per feature.
    prior_length_scale : float, default=1.0
        Median of the LogNormal prior of the length scale (standardised features).
    prior_scale_amplitude : float, default=1.0
        Scale of the HalfNormal prior of the amplitude (standardised target).
    prior_scale_noise : float, default=1.0
        Scale of the HalfNormal prior of the noise scale (standardised target).
    nu_rate : float, default=0.1
        Rate of the Exponential prior of ``nu - 1`` (prior mean of ``nu``: ``1 + 1 / nu_rate``).
    n_draws : int, default=100
        Posterior draws kept and averaged over by predictions.
    inference : {"advi", "fullrank_advi", "nuts", "pathfinder", "laplace"}, default="advi"
        How to fit; see :class:`~estimators.base.BayesianEstimator`. ADVI, not NUTS as
        elsewhere: the posterior has a latent value per training row, and every NUTS
        gradient factorises the ``n x n`` covariance (thousands of them per fit).
    **inference_params
        Other inference settings of :class:`~estimators.base.BayesianEstimator`.

    Attributes
    ----------
    idata_ : xarray.DataTree
        Posterior draws (hyper-parameters and the whitened latent values ``f_whitened``),
        training data and fit history.
    length_scale_ : ndarray of shape (n_features,)
        Posterior mean length scale of each feature, in its units.
    amplitude_ : float
        Posterior mean amplitude.
    noise_ : float
        Posterior mean noise scale.
    nu_ : float
        Posterior mean degrees of freedom of the noise.
    n_features_in_ : int
        Number of features seen during fit.
    feature_names_in_ : ndarray of shape (n_features_in_,)
        Names of the features seen during fit, when X was a DataFrame with string columns.

    See Also
    --------
    GaussianProcessRegressor : Gaussian noise, the latent function integrated out.

    Examples
    --------
    >>> import numpy as np
    >>> from estimators.gaussian_process import StudentTProcessRegressor
    >>> rng = np.random.default_rng(0)
    >>> X = rng.uniform(0, 10, size=(80, 1))
    >>> y = np.sin(X[:, 0]) + rng.normal(scale=0.1, size=80)
    >>> y[::10] += 5.0  # outliers
    >>> model = StudentTProcessRegressor(random_seed=0, progressbar=False).fit(X, y)
    >>> bool(abs(model.predict([[5.0]])[0] - np.sin(5.0)) < 0.3)
    True
    """

    _parameter_constraints = {
        **_GaussianProcessMixin._parameter_constraints,
        "nu_rate": _POSITIVE,
    }

    def __init__(
        self,
        *,
        kernel: str | None = None,
        ard: bool = False,
        prior_length_scale: float = 1.0,
        prior_scale_amplitude: float = 1.0,
        prior_scale_noise: float = 1.0,
        nu_rate: float = 0.1,
        n_draws: int = 100,
        inference: str = "advi",
        **inference_params,
    ):
        super().__init__(n_draws=n_draws, inference=inference, **inference_params)
        self.kernel = kernel
        self.ard = ard
        self.prior_length_scale = prior_length_scale
        self.prior_scale_amplitude = prior_scale_amplitude
        self.prior_scale_noise = prior_scale_noise
        self.nu_rate = nu_rate

    def _target_location_scale(self, y: np.ndarray) -> tuple[float, float]:
        """Median and scaled median absolute deviation (the standard deviation if that is 0)."""
        location = float(np.median(y))
        scale = 1.4826 * float(np.median(np.abs(y - location)))
        if not scale > 0:
            scale = float(location_scale(y)[1])
        return location, scale

    def build_model(self, X, y):
        X_std, _, x_scale = standardized(X)
        y_location, y_scale = self._target_standardization(y)
        length_scale, amplitude, noise = self._hyperpriors(x_scale, y_scale)
        nu = pm.Deterministic("nu", 1.0 + pm.Exponential("nu_minus_one", self.nu_rate))
        n_rows = len(X.get_value())
        K = covariance(self._kernel_name(), X_std, X_std, length_scale, amplitude)
        L = cholesky(K + JITTER * pt.eye(n_rows), lower=True)
        f = L @ pm.Normal("f_whitened", 0.0, 1.0, shape=n_rows)
        pm.StudentT("y_obs", nu=nu, mu=y_location + y_scale * f, sigma=y_scale * noise, observed=y, shape=n_rows)

    def predictive_distribution(self, model, inputs):
        X_train, X_new, _, y_location, y_scale = self._training_parts(model, inputs)
        length_scale, amplitude, noise = (model[name] for name in (LENGTH_SCALE, AMPLITUDE, NOISE))
        kernel = self._kernel_name()
        K = covariance(kernel, X_train, X_train, length_scale, amplitude)
        L = cholesky(K + JITTER * pt.eye(X_train.shape[0]), lower=True)
        # K^-1 f = L^-T z for the draw's latent values f = L z.
        weights = solve_triangular(L.T, model["f_whitened"], lower=False)
        K_cross = covariance(kernel, X_train, X_new, length_scale, amplitude)
        V = solve_triangular(L, K_cross, lower=True)
        mean = K_cross.T @ weights
        variance = pt.maximum(amplitude**2 - pt.sum(V**2, axis=0), 0.0)
        return pm.StudentT.dist(
            nu=model["nu"], mu=y_location + y_scale * mean, sigma=y_scale * pt.sqrt(noise**2 + variance)
        )

    @property
    def nu_(self) -> float:
        """Posterior mean degrees of freedom of the Student-t noise."""
        return self.posterior_mean("nu")
