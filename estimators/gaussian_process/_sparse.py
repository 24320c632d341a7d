"""Sparse Gaussian-process regression with inducing points (FITC or VFE)."""

from __future__ import annotations

from numbers import Integral
from typing import Any

import numpy as np
import pymc as pm
import pytensor.tensor as pt
from pytensor.tensor.linalg import cholesky, solve_triangular
from sklearn.utils._param_validation import Interval, StrOptions

from estimators.base import BayesianEstimator
from estimators.gaussian_process._gpr import AMPLITUDE, LENGTH_SCALE, NOISE, _GaussianProcessMixin
from estimators.gaussian_process._kernels import JITTER, covariance
from estimators.modeling import location_scale, standardized
from estimators.regression import BayesianRegressor

#: Name of the data container holding the inducing points (in the units of the features).
INDUCING_POINTS = "inducing_points"


def _inducing_factors(kernel, X_train, Z, target, length_scale, amplitude, noise, approx):
    """What the inducing-point approximation needs of the training data, for one draw.

    With ``A = Luu^-1 Kuf`` (``Kuu = Luu Luu^T``) and ``Lambda`` the diagonal noise
    (``noise^2``; FITC adds ``diag(Kff - Qff)``), ``B = I + A Lambda^-1 A^T = LB LB^T``.

    Returns
    -------
    Luu, LB : TensorVariable of shape (m, m)
    weights : TensorVariable of shape (m,)
        ``LB^-T LB^-1 A Lambda^-1 y``: the predictive mean at ``x`` is ``a(x)^T weights``.
    log_likelihood : TensorVariable
        The FITC log marginal likelihood or the VFE lower bound of the standardised targets.
    """
    n_rows = X_train.shape[0]
    Kuu = covariance(kernel, Z, Z, length_scale, amplitude) + JITTER * pt.eye(Z.shape[0])
    Luu = cholesky(Kuu, lower=True)
    A = solve_triangular(Luu, covariance(kernel, Z, X_train, length_scale, amplitude), lower=True)
    Qff_diagonal = pt.sum(A**2, axis=0)
    if approx == "fitc":
        noise_diagonal = pt.maximum(amplitude**2 - Qff_diagonal, 0.0) + noise**2
        trace = 0.0
    else:  # vfe: the variational bound penalises what the inducing points miss
        noise_diagonal = pt.ones_like(Qff_diagonal) * noise**2
        trace = (n_rows * amplitude**2 - pt.sum(Qff_diagonal)) / (2.0 * noise**2)
    A_scaled = A / noise_diagonal
    LB = cholesky(pt.eye(Z.shape[0]) + A_scaled @ A.T, lower=True)
    c = solve_triangular(LB, A_scaled @ target, lower=True)
    weights = solve_triangular(LB.T, c, lower=False)
    # LB's diagonal as a masked row sum, not pt.diag: the gradient of pt.diag is an
    # OpFromGraph whose repeated shape inference made compiling the ADVI step 40% slower.
    LB_diagonal = pt.sum(LB * pt.eye(Z.shape[0]), axis=1)
    log_likelihood = -(
        0.5 * n_rows * np.log(2.0 * np.pi)
        + 0.5 * pt.sum(pt.log(noise_diagonal))
        + pt.sum(pt.log(LB_diagonal))
        + 0.5 * (pt.sum(target**2 / noise_diagonal) - pt.sum(c**2))
        + trace
    )
    return Luu, LB, weights, log_likelihood


class SparseGaussianProcessRegressor(_GaussianProcessMixin, BayesianRegressor):
    """Gaussian-process regression on many rows, through ``m`` inducing points.

    The exact GP's ``n x n`` covariance is replaced by its projection on ``m`` inducing
    points ``Z`` (``n_inducing``, placed by k-means on the standardised features by
    default): a gradient then costs ``O(n m^2)`` instead of ``O(n^3)``, and memory
    ``O(n m)``. Two approximations (Quinonero-Candela and Rasmussen 2005; Titsias 2009;
    Bauer, van der Wilk and Rasmussen 2016):

    - ``"vfe"`` (variational free energy, the default): the collapsed variational bound;
      it approaches the exact GP as ``m`` grows and over-estimates the noise rather than
      over-fit when ``m`` is too small.
    - ``"fitc"`` (fully independent training conditional): an exact GP under a modified
      prior, with a heteroscedastic noise correction ``diag(K - Q)``; it can under-estimate
      the noise.

    The inducing points are fixed (not inferred): they are chosen at fit, deterministically
    given ``random_seed``, kept as ``inducing_points_`` and in ``idata_.constant_data``,
    and saved with the model. As for :class:`GaussianProcessRegressor`, the posterior is
    over the length scale(s), amplitude and noise, features and target are standardised in
    the model, and a prediction is, per posterior draw, ``Normal(mu*, sqrt(var* +
    noise^2))``; what it needs of the training data (two ``m x m`` factors and ``m``
    weights per draw) is computed once when the prediction function is compiled, so a call
    costs ``O(n_draws m^2)`` per row, whatever the number of training rows.

    Parameters
    ----------
    n_inducing : int, default=50
        Number of inducing points (at most the number of distinct training rows). A step
        costs ``O(n m^2)``: 50 suit a smooth function of a few features; raise it for
        rougher functions or more features.
    approx : {"vfe", "fitc"}, default="vfe"
        The sparse approximation.
    inducing_points : {"kmeans", "random"}, default="kmeans"
        How to place them: k-means centres of the standardised training features, or
        distinct training rows drawn at random.
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
        Scale of the HalfNormal prior of the noise standard deviation (standardised target).
    n_draws : int, default=200
        Posterior draws kept and averaged over by predictions.
    inference : {"advi", "fullrank_advi", "nuts", "pathfinder", "laplace"}, default="laplace"
        How to fit; see :class:`~estimators.base.BayesianEstimator`. Laplace, as for
        :class:`GaussianProcessRegressor`: the posterior is over the kernel's few
        hyper-parameters. On 2,000 rows it meets the accuracy rule of
        ``benchmarks/engines.py`` (means within 0.05 sd of a long NUTS run, widths
        0.96-1.00x) where mean-field ADVI, the default before, did not (0.24 sd, widths
        0.69-2.96x); at 20,000 rows it fits in about 8 s, ADVI in 41 s (``benchmarks/gp.py``).
    **inference_params
        Other inference settings of :class:`~estimators.base.BayesianEstimator`.

    Attributes
    ----------
    idata_ : xarray.DataTree
        Posterior draws, training data (with the inducing points) and fit history.
    inducing_points_ : ndarray of shape (n_inducing, n_features)
        The inducing points, in the units of the features.
    length_scale_ : ndarray of shape (n_features,)
        Posterior mean length scale of each feature, in its units.
    amplitude_ : float
        Posterior mean amplitude.
    noise_ : float
        Posterior mean noise standard deviation.
    n_features_in_ : int
        Number of features seen during fit.
    feature_names_in_ : ndarray of shape (`n_features_in_`,)
        Names of the features seen during fit, when X was a DataFrame with string columns.

    See Also
    --------
    GaussianProcessRegressor : the exact GP, for up to a few thousand rows.

    Examples
    --------
    >>> import numpy as np
    >>> from estimators.gaussian_process import SparseGaussianProcessRegressor
    >>> rng = np.random.default_rng(0)
    >>> X = rng.uniform(0, 10, size=(500, 1))
    >>> y = np.sin(X[:, 0]) + rng.normal(scale=0.1, size=500)
    >>> model = SparseGaussianProcessRegressor(n_inducing=20, random_seed=0, progressbar=False)
    >>> model = model.fit(X, y)
    >>> model.inducing_points_.shape
    (20, 1)
    >>> bool(abs(model.predict([[5.0]])[0] - np.sin(5.0)) < 0.2)
    True
    """

    _parameter_constraints = {
        **_GaussianProcessMixin._parameter_constraints,
        "n_inducing": [Interval(Integral, 1, None, closed="left")],
        "approx": [StrOptions({"vfe", "fitc"})],
        "inducing_points": [StrOptions({"kmeans", "random"})],
    }
    fitted_state_attributes = (*BayesianEstimator.fitted_state_attributes, "inducing_points_")

    def __init__(
        self,
        *,
        n_inducing: int = 50,
        approx: str = "vfe",
        inducing_points: str = "kmeans",
        kernel: str | None = None,
        ard: bool = False,
        prior_length_scale: float = 1.0,
        prior_scale_amplitude: float = 1.0,
        prior_scale_noise: float = 1.0,
        n_draws: int = 200,
        inference: str = "laplace",
        **inference_params,
    ):
        super().__init__(n_draws=n_draws, inference=inference, **inference_params)
        self.n_inducing = n_inducing
        self.approx = approx
        self.inducing_points = inducing_points
        self.kernel = kernel
        self.ard = ard
        self.prior_length_scale = prior_length_scale
        self.prior_scale_amplitude = prior_scale_amplitude
        self.prior_scale_noise = prior_scale_noise

    def learn_from_features(self, X: Any) -> dict[str, Any]:
        return {"inducing_points_": self._place_inducing_points(self.model_inputs(X)["X"])}

    def _place_inducing_points(self, X: np.ndarray) -> np.ndarray:
        """``n_inducing`` points (fewer if there are fewer distinct rows), in the units of ``X``."""
        distinct = np.unique(X, axis=0)
        n_points = min(self.n_inducing, len(distinct))
        if self.inducing_points == "random" or n_points == len(distinct):
            rng = np.random.default_rng(self.random_seed)
            return np.ascontiguousarray(distinct[np.sort(rng.choice(len(distinct), n_points, replace=False))])
        from sklearn.cluster import KMeans

        location, scale = location_scale(X)
        kmeans = KMeans(n_clusters=n_points, n_init=1, random_state=self.random_seed)
        return np.ascontiguousarray(kmeans.fit((X - location) / scale).cluster_centers_ * scale + location)

    def build_model(self, X, y):
        X_std, x_location, x_scale = standardized(X)
        Z = (pm.Data(INDUCING_POINTS, self.inducing_points_) - x_location) / x_scale
        y_location, y_scale = self._target_standardization(y)
        length_scale, amplitude, noise = self._hyperpriors(x_scale, y_scale)
        kernel, approx = self._kernel_name(), self.approx

        def logp(value, X_std, Z, length_scale, amplitude, noise):
            target = (value - y_location) / y_scale
            *_, log_likelihood = _inducing_factors(kernel, X_std, Z, target, length_scale, amplitude, noise, approx)
            return log_likelihood - value.shape[0] * pt.log(y_scale)

        pm.CustomDist(
            "y_obs",
            X_std,
            Z,
            pt.atleast_1d(length_scale),
            amplitude,
            noise,
            logp=logp,
            observed=y,
            signature="(n,d),(m,d),(k),(),()->(n)",
        )

    def predictive_distribution(self, model, inputs):
        X_train, X_new, target, y_location, y_scale = self._training_parts(model, inputs)
        _, x_location, x_scale = standardized(model["X"])
        Z = (model[INDUCING_POINTS] - x_location) / x_scale
        length_scale, amplitude, noise = (model[name] for name in (LENGTH_SCALE, AMPLITUDE, NOISE))
        kernel = self._kernel_name()
        Luu, LB, weights, _ = _inducing_factors(kernel, X_train, Z, target, length_scale, amplitude, noise, self.approx)
        A_new = solve_triangular(Luu, covariance(kernel, Z, X_new, length_scale, amplitude), lower=True)
        C = solve_triangular(LB, A_new, lower=True)
        mean = A_new.T @ weights
        variance = pt.maximum(amplitude**2 - pt.sum(A_new**2, axis=0) + pt.sum(C**2, axis=0), 0.0)
        return pm.Normal.dist(y_location + y_scale * mean, y_scale * pt.sqrt(variance + noise**2))
