"""Bayesian Gaussian mixtures: a finite mixture and a truncated Dirichlet process mixture."""

from __future__ import annotations

import warnings
from numbers import Integral, Real

import numpy as np
import pymc as pm
import pytensor.tensor as pt
from sklearn.cluster import KMeans
from sklearn.exceptions import ConvergenceWarning
from sklearn.mixture import BayesianGaussianMixture
from sklearn.utils._param_validation import Interval, StrOptions

from estimators.base import BayesianEstimator
from estimators.density import BayesianDensityEstimator
from estimators.modeling import gaussian_log_joint, location_scale, training_constant
from estimators.predictive import likelihood_of

_POSITIVE = [Interval(Real, 0, None, closed="neither")]
COVARIANCE_TYPES = ("full", "diag")
#: Most training rows used to choose the starting values of the component means.
_INITIAL_ROWS = 2000

#: Prior and covariance settings shared by both mixtures.
_COMPONENT_CONSTRAINTS = {
    "covariance_type": [StrOptions(set(COVARIANCE_TYPES))],
    "prior_scale_mean": _POSITIVE,
    "prior_scale_sd": _POSITIVE,
    "lkj_eta": _POSITIVE,
}


def _mixture_logp(covariance_type: str):
    def logp(value, weights, means, scales):
        return pt.logsumexp(gaussian_log_joint(value, weights, means, scales, covariance_type), axis=-1)

    return logp


def initial_means(z: np.ndarray, n_components: int, covariance_type: str, *, dirichlet_process: bool) -> np.ndarray:
    """Starting values of the component means from the (standardised) training rows, largest first.

    A mixture started with all components at one point sits in a poor local optimum
    (mean-field ADVI does not leave it); a data-driven start avoids that. A finite mixture
    starts from k-means centres. A Dirichlet process mixture starts from scikit-learn's
    coordinate-ascent variational fit with a Dirichlet process prior, which leaves the
    components the data do not need empty: from k-means centres, clusters split between
    several components stay split. At most ``_INITIAL_ROWS`` evenly spaced rows are used,
    which bounds the cost when a saved model is rebuilt (``build_model`` runs again then,
    although the start no longer matters); the start is deterministic.
    """
    if len(z) < n_components:
        raise ValueError(
            f"Expected n_samples >= n_components but got n_components = {n_components}, "
            f"n_samples = {len(z)}; fit on more rows or lower n_components."
        )
    z = z[:: -(-len(z) // _INITIAL_ROWS)]  # every ceil(n / _INITIAL_ROWS)-th row
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)  # e.g. fewer distinct rows than clusters
        if dirichlet_process:
            fitted = BayesianGaussianMixture(
                n_components=n_components,
                covariance_type=covariance_type,
                weight_concentration_prior_type="dirichlet_process",
                random_state=0,
            ).fit(z)
            centres, sizes = fitted.means_, fitted.weights_
        else:
            fitted = KMeans(n_clusters=n_components, n_init=3, random_state=0).fit(z)
            centres, sizes = fitted.cluster_centers_, np.bincount(fitted.labels_, minlength=n_components)
    return centres[np.argsort(-sizes, kind="stable")]


class _GaussianComponentsMixin:
    """Gaussian components with priors in standardised units; fitted attributes of both mixtures.

    The features are standardised with their training mean and standard deviation inside
    the model; component means get Normal(0, ``prior_scale_mean``) priors and component
    standard deviations HalfNormal(``prior_scale_sd``) priors in those units, with an
    LKJ(``lkj_eta``) prior on the correlations for ``covariance_type="full"``. The
    likelihood, ``means`` and ``covariances`` are in the original units.
    """

    def model_coords(self) -> dict[str, list]:
        """Also ``"component"``: the component numbers ``0..n_components-1``."""
        return {**super().model_coords(), "component": list(range(self.n_components))}

    def _observe_mixture(self, X, weights, *, dirichlet_process: bool) -> None:
        """Create the component priors and the mixture likelihood of ``X``.

        Parameters
        ----------
        X : TensorVariable
            The training rows (the ``pm.Data`` container).
        weights : TensorVariable of shape (n_components,)
            The mixture weights.
        dirichlet_process : bool
            Whether the weights come from stick-breaking, which orders the components by
            weight. Otherwise the first coordinate of the (standardised) component means
            is constrained to increase with the component index, which identifies them.
        """
        values = np.asarray(X.get_value())
        location, scale = location_scale(values)
        n_components, n_features = self.n_components, values.shape[1]
        start = initial_means(
            (values - location) / scale, n_components, self.covariance_type, dirichlet_process=dirichlet_process
        )
        if not dirichlet_process:
            start = start[np.argsort(start[:, 0], kind="stable")]
            for k in range(1, n_components):  # the ordered transform needs a strict increase
                start[k, 0] = max(start[k, 0], start[k - 1, 0] + 1e-3)
            first = pm.Normal(
                "means_first_std",
                0.0,
                self.prior_scale_mean,
                shape=n_components,
                transform=pm.distributions.transforms.ordered,
                initval=start[:, 0],
            )
            means_std = first[:, None]
            if n_features > 1:
                rest = pm.Normal(
                    "means_rest_std",
                    0.0,
                    self.prior_scale_mean,
                    shape=(n_components, n_features - 1),
                    initval=start[:, 1:],
                )
                means_std = pt.concatenate([means_std, rest], axis=1)
        else:
            means_std = pm.Normal(
                "means_std", 0.0, self.prior_scale_mean, shape=(n_components, n_features), initval=start
            )
        location, scale = training_constant(location), training_constant(scale)
        means = pm.Deterministic("means", location + scale * means_std, dims=("component", "feature"))
        if self.covariance_type == "full":
            # Started at the identity, PyMC's own default start; given here, PyMC need not
            # compile the prior's sampler (a Scan, compiled in C: 10 s on an empty cache) to find it.
            identity = np.eye(n_features)[np.tril_indices(n_features)]
            factors = [
                pm.expand_packed_triangular(
                    n_features,
                    pm.LKJCholeskyCov(
                        f"chol_cov_std_{k}",
                        n=n_features,
                        eta=self.lkj_eta,
                        sd_dist=pm.HalfNormal.dist(self.prior_scale_sd, shape=n_features),
                        compute_corr=False,
                        initval=identity,
                    ),
                )
                for k in range(n_components)
            ]
            scales = scale[:, None] * pt.stack(factors)  # Cholesky factors in the original units
            pm.Deterministic("covariances", scales @ pt.swapaxes(scales, -1, -2))
            signature = "(k),(k,d),(k,d,d)->(d)"
        else:
            sd_std = pm.HalfNormal("sd_std", self.prior_scale_sd, shape=(n_components, n_features))
            scales = scale * sd_std
            pm.Deterministic("covariances", scales**2)
            signature = "(k),(k,d),(k,d)->(d)"
        pm.CustomDist(
            "X_obs",
            weights,
            means,
            scales,
            logp=_mixture_logp(self.covariance_type),
            observed=X,
            signature=signature,
        )

    def component_log_density(self, model: pm.Model, inputs: dict) -> pt.TensorVariable:
        """``log weight_k + log N(x | mean_k, covariance_k)`` of new rows, for one posterior draw."""
        likelihood = likelihood_of(model)
        weights, means, scales = likelihood.owner.op.dist_params(likelihood.owner)
        return gaussian_log_joint(inputs[model["X"]], weights, means, scales, self.covariance_type)

    @property
    def weights_(self) -> np.ndarray:
        """Posterior mean of the mixture weights, shape (n_components,)."""
        return self.posterior_mean("weights")

    @property
    def means_(self) -> np.ndarray:
        """Posterior mean of the component means, shape (n_components, n_features)."""
        return self.posterior_mean("means")

    @property
    def covariances_(self) -> np.ndarray:
        """Posterior mean of the component covariances.

        Shape (n_components, n_features, n_features) for ``"full"``, (n_components,
        n_features) (the variances) for ``"diag"``, as in scikit-learn.
        """
        return self.posterior_mean("covariances")


class GaussianMixture(_GaussianComponentsMixin, BayesianDensityEstimator):
    """Bayesian Gaussian mixture with a fixed number of components.

    Weights get a symmetric Dirichlet prior; each component a mean and a full (LKJ
    Cholesky prior) or diagonal covariance, with weakly informative priors on the features
    standardised inside the model. The fit starts from k-means centres.

    **Label switching.** A mixture's likelihood is the same under any permutation of its
    components, so an unconstrained posterior has ``n_components!`` symmetric modes and
    averaging responsibilities over draws from several of them would be meaningless. The
    first coordinate of the component means is therefore constrained to increase with
    the component index (an ``ordered`` transform): component 0 is the one with the
    smallest mean of the first feature, in every draw and every chain. Put a feature that
    separates the clusters first; where clusters share their first coordinate the
    constraint identifies them only weakly.

    Predictions average over the posterior draws: :meth:`predict_proba` is the posterior
    mean responsibility, :meth:`predict` the most probable component, and
    :meth:`score_samples` the log posterior predictive density
    ``log mean_s p(x | theta_s)``; :meth:`score` is its mean over the rows, the
    Bayesian counterpart of scikit-learn's mean log-likelihood.

    Parameters
    ----------
    n_components : int, default=1
        Number of mixture components.
    covariance_type : {"full", "diag"}, default="full"
        Full covariances with an LKJ prior on the correlations, or diagonal ones.
    weight_concentration : float, default=1.0
        Concentration of the symmetric Dirichlet prior on the weights.
    prior_scale_mean : float, default=2.5
        Standard deviation of the Normal prior on each standardised component mean.
    prior_scale_sd : float, default=1.0
        Scale of the HalfNormal prior on each standardised component standard deviation.
    lkj_eta : float, default=2.0
        Shape of the LKJ prior on the correlations (``"full"`` only); 1 is uniform, larger
        values favour weaker correlations.
    **inference_params
        Inference settings of :class:`~estimators.base.BayesianEstimator`
        (``inference``, ``n_draws``, ``random_seed``, ...).

    Attributes
    ----------
    idata_ : xarray.DataTree
        Posterior draws, training data and fit history.
    weights_ : ndarray of shape (n_components,)
        Posterior mean of the weights.
    means_ : ndarray of shape (n_components, n_features)
        Posterior mean of the component means, in the units of the features.
    covariances_ : ndarray
        Posterior mean of the covariances: (n_components, n_features, n_features) for
        ``"full"``, (n_components, n_features) for ``"diag"``.
    n_features_in_ : int
        Number of features seen during fit.
    feature_names_in_ : ndarray of shape (`n_features_in_`,)
        Names of the features seen during fit, when X was a DataFrame with string columns.

    See Also
    --------
    DirichletProcessMixture : the number of components inferred, up to a truncation level.
    sklearn.mixture.GaussianMixture : the maximum-likelihood (EM) peer.

    Examples
    --------
    >>> import numpy as np
    >>> from estimators.mixture import GaussianMixture
    >>> rng = np.random.default_rng(0)
    >>> X = np.concatenate([rng.normal(-3, 1, (100, 2)), rng.normal(3, 1, (100, 2))])
    >>> model = GaussianMixture(n_components=2, covariance_type="diag", random_seed=0, progressbar=False)
    >>> model = model.fit(X)
    >>> np.round(model.means_[:, 0])
    array([-3.,  3.])
    >>> model.predict([[-3.0, -3.0], [3.0, 3.0]])
    array([0, 1])
    """

    _parameter_constraints = {
        **BayesianEstimator._parameter_constraints,
        **_COMPONENT_CONSTRAINTS,
        "n_components": [Interval(Integral, 1, None, closed="left")],
        "weight_concentration": _POSITIVE,
    }

    def __init__(
        self,
        *,
        n_components: int = 1,
        covariance_type: str = "full",
        weight_concentration: float = 1.0,
        prior_scale_mean: float = 2.5,
        prior_scale_sd: float = 1.0,
        lkj_eta: float = 2.0,
        **inference_params,
    ):
        super().__init__(**inference_params)
        self.n_components = n_components
        self.covariance_type = covariance_type
        self.weight_concentration = weight_concentration
        self.prior_scale_mean = prior_scale_mean
        self.prior_scale_sd = prior_scale_sd
        self.lkj_eta = lkj_eta

    def build_model(self, X):
        weights = pm.Dirichlet(
            "weights", np.full(self.n_components, float(self.weight_concentration)), dims="component"
        )
        self._observe_mixture(X, weights, dirichlet_process=False)


class DirichletProcessMixture(_GaussianComponentsMixin, BayesianDensityEstimator):
    """Dirichlet process Gaussian mixture, truncated stick-breaking: how many components the data need.

    The weights come from stick-breaking: ``v_k ~ Beta(1, alpha)``,
    ``w_k = v_k prod_{j<k} (1 - v_j)``, the last component taking the rest of the stick,
    with a Gamma prior on the concentration ``alpha``. ``n_components`` is the truncation
    level, an upper bound: components the data do not need get negligible weight, and
    ``n_effective_components_`` counts those that remain. The components are as in
    :class:`GaussianMixture`.

    **Label switching.** Stick-breaking is not exchangeable: it favours large weights for
    early components, which orders the components by weight (largest first, in
    expectation) and identifies them. The fit starts from scikit-learn's coordinate-ascent
    variational fit of the same kind of model, its components in that order (see
    :func:`initial_means`). With several NUTS chains, check that they agree
    (``arviz_stats.summary(idata_)``).

    :meth:`predict_proba`, :meth:`predict`, :meth:`score_samples` and :meth:`score` are
    as in :class:`GaussianMixture`, over all ``n_components`` components.

    Parameters
    ----------
    n_components : int, default=10
        Truncation level: the most components the mixture can use.
    covariance_type : {"full", "diag"}, default="full"
        Full covariances with an LKJ prior on the correlations, or diagonal ones.
    concentration_shape : float, default=1.0
        Shape of the Gamma prior on the concentration ``alpha``.
    concentration_rate : float, default=1.0
        Rate of the Gamma prior on ``alpha``; the prior mean is shape / rate. Smaller
        ``alpha`` favours fewer components.
    prior_scale_mean : float, default=2.5
        Standard deviation of the Normal prior on each standardised component mean.
    prior_scale_sd : float, default=1.0
        Scale of the HalfNormal prior on each standardised component standard deviation.
    lkj_eta : float, default=2.0
        Shape of the LKJ prior on the correlations (``"full"`` only).
    weight_threshold : float, default=0.01
        A component counts in ``n_effective_components_`` when its posterior mean weight
        exceeds this; it does not change the fit.
    **inference_params
        Inference settings of :class:`~estimators.base.BayesianEstimator`.

    Attributes
    ----------
    idata_ : xarray.DataTree
        Posterior draws (``concentration``, ``weights``, ...), training data and fit history.
    weights_ : ndarray of shape (n_components,)
        Posterior mean of the weights.
    means_ : ndarray of shape (n_components, n_features)
        Posterior mean of the component means, in the units of the features.
    covariances_ : ndarray
        Posterior mean of the covariances, shaped as in :class:`GaussianMixture`.
    n_effective_components_ : int
        Components whose posterior mean weight exceeds ``weight_threshold``.
    n_features_in_ : int
        Number of features seen during fit.
    feature_names_in_ : ndarray of shape (`n_features_in_`,)
        Names of the features seen during fit, when X was a DataFrame with string columns.

    See Also
    --------
    GaussianMixture : a fixed number of components.
    sklearn.mixture.BayesianGaussianMixture : the coordinate-ascent variational peer.

    Examples
    --------
    >>> import numpy as np
    >>> from estimators.mixture import DirichletProcessMixture
    >>> rng = np.random.default_rng(0)
    >>> X = np.concatenate([rng.normal(-4, 1, (100, 2)), rng.normal(4, 1, (100, 2))])
    >>> model = DirichletProcessMixture(n_components=5, covariance_type="diag", random_seed=0,
    ...                                 progressbar=False).fit(X)
    >>> model.n_effective_components_
    2
    """

    _parameter_constraints = {
        **BayesianEstimator._parameter_constraints,
        **_COMPONENT_CONSTRAINTS,
        "n_components": [Interval(Integral, 1, None, closed="left")],
        "concentration_shape": _POSITIVE,
        "concentration_rate": _POSITIVE,
        "weight_threshold": [Interval(Real, 0, 1, closed="neither")],
    }

    def __init__(
        self,
        *,
        n_components: int = 10,
        covariance_type: str = "full",
        concentration_shape: float = 1.0,
        concentration_rate: float = 1.0,
        prior_scale_mean: float = 2.5,
        prior_scale_sd: float = 1.0,
        lkj_eta: float = 2.0,
        weight_threshold: float = 0.01,
        **inference_params,
    ):
        super().__init__(**inference_params)
        self.n_components = n_components
        self.covariance_type = covariance_type
        self.concentration_shape = concentration_shape
        self.concentration_rate = concentration_rate
        self.prior_scale_mean = prior_scale_mean
        self.prior_scale_sd = prior_scale_sd
        self.lkj_eta = lkj_eta
        self.weight_threshold = weight_threshold

    def build_model(self, X):
        concentration = pm.Gamma("concentration", alpha=self.concentration_shape, beta=self.concentration_rate)
        if self.n_components > 1:
            sticks = pm.Beta("sticks", 1.0, concentration, shape=self.n_components - 1)
        else:  # nothing to break (and a zero-length variable would have no draws to stack)
            sticks = pt.zeros(0)
        remaining = pt.concatenate([pt.ones(1), pt.cumprod(1.0 - sticks)])
        weights = pm.Deterministic("weights", pt.concatenate([sticks, pt.ones(1)]) * remaining, dims="component")
        self._observe_mixture(X, weights, dirichlet_process=True)

    @property
    def n_effective_components_(self) -> int:
        """Components whose posterior mean weight exceeds ``weight_threshold``."""
        return int(np.sum(self.weights_ > self.weight_threshold))
