"""The linear predictor the gallery's models share: standardised features, priors, coefficients in original units."""

from __future__ import annotations

import pymc as pm
import pytensor.tensor as pt

from estimators.modeling import standardized


def linear_predictor(
    X: pt.TensorVariable,
    prior_scale: float,
    *,
    offset: pt.TensorVariable | float = 0.0,
    scale: pt.TensorVariable | float = 1.0,
    intercept: bool = True,
) -> pt.TensorVariable:
    """``offset + scale * (intercept_std + X_std @ coef_std)``, for use inside ``build_model``.

    The features are standardised with their training mean and standard deviation
    (:func:`~estimators.modeling.standardized`) and the priors are ``Normal(0,
    prior_scale)`` on that scale, which ADVI fits fast. The model also records ``coef``
    and (with ``intercept``) ``intercept`` in the features' units, so that
    ``posterior_mean("coef")`` reads them.

    Parameters
    ----------
    X : TensorVariable
        The features' data container.
    prior_scale : float
        Standard deviation of the priors on the standardised intercept and coefficients.
    offset, scale : TensorVariable or float
        Where the predictor is centred and how it is scaled, e.g. the log of the training
        targets' mean for a log link, or their mean and standard deviation for an identity
        link (training constants, see :func:`~estimators.modeling.training_constant`).
    intercept : bool, default=True
        Whether the predictor has an intercept (an ordinal model's cutpoints take its place).

    Returns
    -------
    TensorVariable of shape (n_samples,)
    """
    X_std, x_loc, x_scale = standardized(X)
    coef_std = pm.Normal("coef_std", 0.0, prior_scale, shape=X.get_value().shape[1])
    coef = pm.Deterministic("coef", scale * coef_std / x_scale)
    eta = offset + scale * pt.dot(X_std, coef_std)
    if not intercept:
        return eta
    intercept_std = pm.Normal("intercept_std", 0.0, prior_scale)
    pm.Deterministic("intercept", offset + scale * intercept_std - pt.dot(coef, x_loc))
    return eta + scale * intercept_std
