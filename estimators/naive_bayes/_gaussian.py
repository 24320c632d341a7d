"""Bayesian Gaussian naive Bayes."""

from __future__ import annotations

from numbers import Real

import numpy as np
import pymc as pm
import pytensor.tensor as pt
from sklearn.utils._param_validation import Interval
from sklearn.utils.validation import check_is_fitted

from estimators.base import BayesianEstimator
from estimators.classification import BayesianClassifier
from estimators.modeling import gaussian_log_joint, location_scale, training_constant
from estimators.predictive import likelihood_of

_POSITIVE = [Interval(Real, 0, None, closed="neither")]


def _joint_logp(value, class_prior, theta, sd, x):
    """``log p(x, y)`` of each training row: the features and the class observed together.

    Naive Bayes is a mixture of diagonal Gaussians whose component, the class, is observed.
    """
    joint = gaussian_log_joint(x, class_prior, theta, sd, "diag")
    return pt.take_along_axis(joint, value[:, None], axis=-1)[:, 0]


class GaussianNB(BayesianClassifier):
    """Bayesian Gaussian naive Bayes: a generative classifier with uncertain class statistics.

    Classes have a Dirichlet prior; within a class the features are independent Normals
    whose means and standard deviations get priors (Normal and HalfNormal, on the
    features standardised inside the model). The likelihood is the joint density of the
    features and the class of each training row. :meth:`predict_proba` integrates over the
    posterior: the class posterior ``p(k | x, theta)`` of each draw (Bayes' rule),
    averaged over the draws.

    Parameters
    ----------
    prior_concentration : float, default=1.0
        Concentration of the symmetric Dirichlet prior on the class probabilities.
    prior_scale_mean : float, default=2.5
        Standard deviation of the Normal prior on each standardised class mean.
    prior_scale_sd : float, default=1.0
        Scale of the HalfNormal prior on each standardised class standard deviation.
    var_smoothing : float, default=1e-9
        Added to every class variance, as a fraction of the feature's training variance,
        as in scikit-learn. It keeps the posterior proper when a feature is constant
        within a class.
    **inference_params
        Inference settings of :class:`~estimators.base.BayesianEstimator`
        (``inference``, ``n_draws``, ``random_seed``, ...).

    Attributes
    ----------
    idata_ : xarray.DataTree
        Posterior draws, training data and fit history.
    classes_ : ndarray of shape (n_classes,)
        Class labels.
    class_prior_ : ndarray of shape (n_classes,)
        Posterior mean of the class probabilities.
    class_count_ : ndarray of shape (n_classes,)
        Training rows per class.
    theta_ : ndarray of shape (n_classes, n_features)
        Posterior mean of the class means, in the units of the features.
    var_ : ndarray of shape (n_classes, n_features)
        Posterior mean of the class variances.
    n_features_in_ : int
        Number of features seen during fit.
    feature_names_in_ : ndarray of shape (`n_features_in_`,)
        Names of the features seen during fit, when X was a DataFrame with string columns.

    See Also
    --------
    sklearn.naive_bayes.GaussianNB : the maximum-likelihood (plug-in) peer.

    Examples
    --------
    >>> import numpy as np
    >>> from estimators.naive_bayes import GaussianNB
    >>> rng = np.random.default_rng(0)
    >>> X = np.concatenate([rng.normal(0, 1, (100, 2)), rng.normal(3, 1, (100, 2))])
    >>> y = np.repeat(["a", "b"], 100)
    >>> model = GaussianNB(random_seed=0, progressbar=False).fit(X, y)
    >>> bool(np.allclose(model.theta_, [[0.0, 0.0], [3.0, 3.0]], atol=0.3))
    True
    >>> model.predict([[0.0, 0.0], [3.0, 3.0]])
    array(['a', 'b'], dtype='<U1')
    """

    _parameter_constraints = {
        **BayesianEstimator._parameter_constraints,
        "prior_concentration": _POSITIVE,
        "prior_scale_mean": _POSITIVE,
        "prior_scale_sd": _POSITIVE,
        "var_smoothing": [Interval(Real, 0, None, closed="left")],
    }

    def __init__(
        self,
        *,
        prior_concentration: float = 1.0,
        prior_scale_mean: float = 2.5,
        prior_scale_sd: float = 1.0,
        var_smoothing: float = 1e-9,
        **inference_params,
    ):
        super().__init__(**inference_params)
        self.prior_concentration = prior_concentration
        self.prior_scale_mean = prior_scale_mean
        self.prior_scale_sd = prior_scale_sd
        self.var_smoothing = var_smoothing

    def build_model(self, X, y):
        location, scale = location_scale(np.asarray(X.get_value()))
        shape = (len(self.classes_), len(location))
        class_prior = pm.Dirichlet("class_prior", np.full(shape[0], float(self.prior_concentration)))
        theta_std = pm.Normal("theta_std", 0.0, self.prior_scale_mean, shape=shape)
        sd_std = pm.HalfNormal("sd_std", self.prior_scale_sd, shape=shape)
        location, scale = training_constant(location), training_constant(scale)
        theta = pm.Deterministic("theta", location + scale * theta_std, dims=("class", "feature"))
        var = pm.Deterministic("var", scale**2 * (sd_std**2 + self.var_smoothing), dims=("class", "feature"))
        pm.CustomDist(
            "y_obs",
            class_prior,
            theta,
            pt.sqrt(var),
            X,
            logp=_joint_logp,
            observed=y,
            signature="(k),(k,d),(k,d),(d)->()",
            dtype="int64",
        )

    def predictive_distribution(self, model: pm.Model, inputs: dict) -> pt.TensorVariable:
        """The class of each new row by Bayes' rule, for one posterior draw."""
        likelihood = likelihood_of(model)
        class_prior, theta, sd, _ = likelihood.owner.op.dist_params(likelihood.owner)
        joint = gaussian_log_joint(inputs[model["X"]], class_prior, theta, sd, "diag")
        return pm.Categorical.dist(p=pt.special.softmax(joint, axis=-1))

    @property
    def class_prior_(self) -> np.ndarray:
        """Posterior mean of the class probabilities."""
        return self.posterior_mean("class_prior")

    @property
    def class_count_(self) -> np.ndarray:
        """Training rows per class."""
        check_is_fitted(self)
        (observed,) = self.idata_.observed_data.data_vars.values()
        return np.bincount(observed.values.astype(np.int64), minlength=len(self.classes_)).astype(np.float64)

    @property
    def theta_(self) -> np.ndarray:
        """Posterior mean of the class means."""
        return self.posterior_mean("theta")

    @property
    def var_(self) -> np.ndarray:
        """Posterior mean of the class variances."""
        return self.posterior_mean("var")
