"""Exact Gaussian-process regression: Gaussian noise (marginal) and Student-t noise (latent)."""

from __future__ import annotations

from collections.abc import Sequence
from numbers import Integral, Real
from typing import Any

import numpy as np
import pymc as pm
import pytensor
import pytensor.tensor as pt
from pytensor.graph.replace import vectorize_graph
from pytensor.tensor.linalg import cho_solve, cholesky, solve_triangular
from sklearn.utils._param_validation import Interval, StrOptions

from estimators.base import TARGET, BayesianEstimator
from estimators.compilation import compile_function
from estimators.gaussian_process._kernels import JITTER, KERNELS, covariance, gaussian_log_likelihood
from estimators.likelihood_draws import likelihood_draw_predictor
from estimators.modeling import location_scale, standardized, training_constant
from estimators.predictive import PosteriorPredictor, check_precomputed_bytes
from estimators.regression import BayesianRegressor
from estimators.validation import check_finite_predictions

_POSITIVE = [Interval(Real, 0, None, closed="neither")]

#: Model variables of the kernel hyper-parameters, in standardised units.
LENGTH_SCALE, AMPLITUDE, NOISE = "length_scale_std", "amplitude_std", "noise_std"
#: Spawn key of the seeded subset of posterior draws that predictions take the latent variance at.
VARIANCE_SUBSET = 3


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


def _training_factor(kernel, X_train, length_scale, amplitude, noise):
    """Lower Cholesky factor ``L`` of ``k(X, X) + noise^2 I`` (plus the jitter) for one draw."""
    K = covariance(kernel, X_train, X_train, length_scale, amplitude)
    return cholesky(K + (noise**2 + JITTER) * pt.eye(X_train.shape[0]), lower=True)


def _latent_mean(kernel, X_train, X_new, target, L, length_scale, amplitude):
    """Mean ``k(X_new, X) K^-1 y`` of the latent function at ``X_new`` for one draw (``K = L L^T``).

    ``K^-1 y`` depends on the draw only, so the prediction function computes it once per
    draw, not per call.
    """
    return covariance(kernel, X_train, X_new, length_scale, amplitude).T @ cho_solve((L, True), target)


def _latent_variance(kernel, X_train, X_new, L, length_scale, amplitude):
    """Variance ``amplitude^2 - |L^-1 k(X, X_new)|^2`` of the latent function at ``X_new`` for one
    draw (the kernels are stationary): a triangular solve with the ``n x n`` factor per row."""
    V = solve_triangular(L, covariance(kernel, X_train, X_new, length_scale, amplitude), lower=True)
    return pt.maximum(amplitude**2 - pt.sum(V**2, axis=0), 0.0)


def _gaussian_conditional(kernel, X_train, X_new, target, length_scale, amplitude, noise):
    """Mean and variance of the latent function at ``X_new`` given noisy targets at ``X_train``, for one draw."""
    L = _training_factor(kernel, X_train, length_scale, amplitude, noise)
    return (
        _latent_mean(kernel, X_train, X_new, target, L, length_scale, amplitude),
        _latent_variance(kernel, X_train, X_new, L, length_scale, amplitude),
    )


class _VarianceSubset:
    """The latent variance at new rows for a seeded subset of the posterior draws.

    The latent mean costs ``O(n)`` per row and draw, the latent variance ``O(n^2)`` (a
    triangular solve): predictions take the mean at every draw and the variance at
    ``n_variance_draws`` of them, drawn without replacement. The subset's Cholesky factors
    are computed once, here, and kept (``n_subset * n^2`` floats).

    Parameters
    ----------
    estimator : GaussianProcessRegressor
        The fitted estimator (kernel, ``n_variance_draws``).
    model : pm.Model
        Its fitted model.
    posterior : xr.Dataset
        Its posterior.
    seed : int
        The fit's seed, from which the subset is drawn.
    """

    def __init__(self, estimator, model: pm.Model, posterior, seed: int):
        stacked = posterior.stack(sample=("chain", "draw"))
        n_draws, wanted = stacked.sizes["sample"], estimator.n_variance_draws
        n_subset = n_draws if wanted is None else min(wanted, n_draws)
        #: Indices of the subset's draws among the stacked (chain, draw) ones.
        self.draws = np.sort(np.random.default_rng([seed, VARIANCE_SUBSET]).permutation(n_draws)[:n_subset])
        self.kernel = estimator._kernel_name()
        X_train = estimator._training_parts(model)[0]
        n_rows = len(model["X"].get_value())
        check_precomputed_bytes(n_subset * n_rows**2 * 8, f"{n_subset} Cholesky factors of {n_rows:,} training rows")
        names = (LENGTH_SCALE, AMPLITUDE, NOISE)
        hyper = [model[name].type(name=name) for name in names]
        factor = compile_function(hyper, _training_factor(self.kernel, X_train, *hyper))
        values = [stacked[name].transpose("sample", ...).values[self.draws] for name in names]
        self._factors = pytensor.shared(np.stack([factor(*draw) for draw in zip(*values)]), name="subset_factors")
        self._length_scales = pytensor.shared(values[0], name="subset_length_scales")
        self._amplitudes = pytensor.shared(values[1], name="subset_amplitudes")
        self._hyper = hyper

    def latent_variances(self, X_train, X_new) -> pt.TensorVariable:
        """The latent variance at ``X_new`` under each draw of the subset, shape ``(n_subset, n_new)``."""
        length_scale, amplitude, _ = self._hyper
        L = pt.matrix("factor", dtype="float64")
        variance = _latent_variance(self.kernel, X_train, X_new, L, length_scale, amplitude)
        return vectorize_graph(
            variance, {L: self._factors, length_scale: self._length_scales, amplitude: self._amplitudes}
        )


def _subset_mean_standard_error(values: np.ndarray, n_population: int) -> np.ndarray:
    """Monte Carlo standard error of the mean of ``values`` (subset first) as an estimate of
    the mean over a population of ``n_population`` draws that they are a simple random
    sample of, without replacement (0 when they are all of it)."""
    n_subset = len(values)
    if n_subset == n_population:
        return np.zeros(values.shape[1:])
    spread = values.std(axis=0, ddof=1)
    return spread / np.sqrt(n_subset) * np.sqrt(1.0 - n_subset / n_population)


class GaussianProcessRegressor(_GaussianProcessMixin, BayesianRegressor):
    """Gaussian-process regression with a posterior over the kernel hyper-parameters.

    The latent function is integrated out (the marginal likelihood of a GP with Gaussian
    noise, ``y ~ N(mean, K + noise^2 I)``, written directly; its gradient costs one
    Cholesky factorisation and one inverse per step), so the posterior is over the
    length scale(s), amplitude and noise only. Features and target are standardised inside
    the model; the mean function is the training mean of the target.

    A prediction is, for each posterior draw, the GP conditioned on the training data
    (kept in ``idata_``): ``Normal(mu*, sqrt(var* + noise^2))``; the draws are mixed.
    Its cost grows with the training rows ``n``: fitting factorises an ``n x n`` matrix
    at every gradient or Hessian-vector product (``O(n^3)``; a few dozen of them for a
    Laplace fit: a retraining fit at 1,000 rows took 1.7 times scikit-learn's on two cores,
    where ADVI takes about 1,900). The prediction function factorises it once per
    posterior draw when first built and keeps ``K^-1 y`` of each draw: the mean ``mu*``
    then costs ``O(n)`` per row and draw, and is taken at every draw. The latent variance
    ``var*`` costs ``O(n^2)`` per row and draw (a triangular solve), so ``predict`` takes
    it at a seeded subset of ``n_variance_draws`` draws, whose factors it keeps
    (``n_variance_draws * n^2`` floats: 64 MB at 1,000 rows), and uses their mean at
    every draw: the mixture's mean is exact, its standard deviation has a Monte Carlo
    error that :meth:`predict_summary` reports (``std_error``; the latent variance varies
    little between draws next to the rest, 0.1 to 1 % of the standard deviation here).
    The log predictive density, CDF and likelihood parameters take every draw's own
    variance. For more than about a thousand rows use
    :class:`SparseGaussianProcessRegressor`.

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
    n_variance_draws : int or None, default=8
        Posterior draws at which ``predict`` and predictive draws take the latent
        variance (see above); None: every draw's own, exactly (``n_draws / n_variance_draws``
        times the cost, and the ``n_draws * n^2`` floats of every draw's factor), with
        the moments from the predictive draws as for the other regressors: how models saved
        before this parameter existed predict.
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
    feature_names_in_ : ndarray of shape (`n_features_in_`,)
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
        n_variance_draws: int | None = 8,
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
        self.n_variance_draws = n_variance_draws

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

    _parameter_constraints = {
        **_GaussianProcessMixin._parameter_constraints,
        "n_variance_draws": [Interval(Integral, 2, None, closed="left"), None],
    }

    def predictive_distribution(self, model, inputs):
        """Each draw's exact predictive distribution (the log density, CDF and likelihood
        parameters use it; ``predict`` and predictive draws use :meth:`_predictive_parts`)."""
        X_train, X_new, target, y_location, y_scale = self._training_parts(model, inputs)
        length_scale, amplitude, noise = (model[name] for name in (LENGTH_SCALE, AMPLITUDE, NOISE))
        mean, variance = _gaussian_conditional(
            self._kernel_name(), X_train, X_new, target, length_scale, amplitude, noise
        )
        return pm.Normal.dist(y_location + y_scale * mean, y_scale * pt.sqrt(variance + noise**2))

    def _predictive_parts(self, model, inputs, subset: _VarianceSubset):
        """Per draw, the predictive mean and noise variance at the new rows; and the latent
        variance at each draw of ``subset`` (not per draw), all in the target's units."""
        X_train, X_new, target, y_location, y_scale = self._training_parts(model, inputs)
        length_scale, amplitude, noise = (model[name] for name in (LENGTH_SCALE, AMPLITUDE, NOISE))
        kernel = self._kernel_name()
        L = _training_factor(kernel, X_train, length_scale, amplitude, noise)
        mean = _latent_mean(kernel, X_train, X_new, target, L, length_scale, amplitude)
        latent_variances = subset.latent_variances(X_train, X_new)
        return y_location + y_scale * mean, (y_scale * noise) ** 2, y_scale**2 * latent_variances

    @classmethod
    def from_fitted_state(cls, params, state, idata):
        """As the base's; a model saved before ``n_variance_draws`` existed predicts as it did
        (every draw's own latent variance: ``None``)."""
        return super().from_fitted_state({"n_variance_draws": None, **params}, state, idata)

    def _compile_predictor(self, model, posterior, seed):
        """Predictive draws from each draw's Normal, its latent variance the subset's mean
        (with ``n_variance_draws=None``, each draw's own)."""
        if self.n_variance_draws is None:
            return super()._compile_predictor(model, posterior, seed)
        subset = self._variance_subset(model, posterior, seed)

        def distribution(inputs):
            mean, noise_variance, latent_variances = self._predictive_parts(model, inputs, subset)
            return pm.Normal.dist(mean, pt.sqrt(noise_variance + latent_variances.mean(axis=0)))

        return likelihood_draw_predictor(model, posterior, list(self.input_names), distribution, seed=seed)

    def _variance_subset(self, model, posterior, seed) -> _VarianceSubset:
        return self._fitted_model.predictor("variance_subset", lambda _: _VarianceSubset(self, model, posterior, seed))

    def _compile_moments(self, model, posterior, seed) -> PosteriorPredictor:
        subset = self._variance_subset(model, posterior, seed)

        def parts(inputs, uniform):
            return list(self._predictive_parts(model, inputs, subset))

        return PosteriorPredictor(model, posterior, list(self.input_names), parts, seed=seed)

    def predict_summary(
        self, X: Any, *, interval_prob: float | None = None, quantiles: Sequence[float] = ()
    ) -> dict[str, np.ndarray]:
        """Posterior predictive mean and standard deviation in closed form (and interval, quantiles).

        The predictive distribution is the mixture over posterior draws ``s`` of
        ``Normal(mu_s, sqrt(v_s + noise_s^2))``: its mean ``mean_s(mu_s)`` and variance
        ``mean_s(v_s + noise_s^2) + var_s(mu_s)``. ``mu_s`` and ``noise_s`` are taken at every
        draw; the latent variance ``v_s`` (a triangular solve per row and draw) at the
        ``n_variance_draws`` of the subset, whose mean stands for ``mean_s(v_s)``: the key
        ``std_error`` is its Monte Carlo standard error carried into ``std`` (0 when the
        subset is all draws). Interval and quantiles come from predictive draws of the
        mixture (one per posterior draw), as for the other regressors. With
        ``n_variance_draws=None``, all of them do, each draw with its own latent variance, as
        for the other regressors (and no ``std_error``).

        Parameters and returns as :meth:`BayesianRegressor.predict_summary`'s, with
        ``std_error`` of shape (n_samples,) besides.
        """
        if self.n_variance_draws is None:
            return super().predict_summary(X, interval_prob=interval_prob, quantiles=quantiles)
        summary = {}
        if interval_prob is not None or len(quantiles):
            summary = super().predict_summary(X, interval_prob=interval_prob, quantiles=quantiles)
        inputs = self._inputs(X)
        predictor = self._cached_predictor("moments", self._compile_moments)

        def moments(outputs: list[np.ndarray]) -> dict[str, np.ndarray]:
            mean, noise_variance, latent_variances = outputs
            variance = np.mean(noise_variance, axis=0) + latent_variances.mean(axis=0) + mean.var(axis=0)
            std = np.sqrt(variance)
            error = _subset_mean_standard_error(latent_variances, len(mean))
            return {"mean": mean.mean(axis=0), "std": std, "std_error": error / (2.0 * std)}

        summary.update(predictor.map_rows(inputs, moments))
        check_finite_predictions(summary, inputs)
        return summary


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
    factor per draw (``n_draws * n^2`` floats).

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
    feature_names_in_ : ndarray of shape (`n_features_in_`,)
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
