"""Helpers for writing ``build_model``: standardised inputs, class likelihoods, Gaussian densities.

They are what the built-in models use, and are meant for bespoke models too.
"""

from __future__ import annotations

import numpy as np
import pymc as pm
import pytensor
import pytensor.tensor as pt


def location_scale(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Column means and standard deviations of training values (scale 1 where constant)."""
    location = values.mean(axis=0)
    scale = values.std(axis=0)
    return location, np.where(scale > 0, scale, 1.0)


def training_constant(value: np.ndarray | float) -> pt.TensorVariable:
    """A statistic of the training data (a mean, a scale) for use in a model's graph.

    A shared variable, not a literal constant: PyTensor keys its caches of compiled code
    (Numba and C) by the values of a graph's constants, so literal training statistics
    would make every fit on new data compile its functions afresh (33 new Numba functions,
    seconds, for a LinearRegression refit).
    """
    return pytensor.shared(np.asarray(value, dtype=np.float64))


def standardized(container: pt.TensorVariable) -> tuple[pt.TensorVariable, pt.TensorVariable, pt.TensorVariable]:
    """The data in ``container`` centred and scaled by its training mean and standard deviation.

    The mean and standard deviation are taken from the training values (see
    :func:`training_constant`), so new rows put in the container at prediction time are
    scaled the same way.

    Returns
    -------
    standardized : TensorVariable
    location, scale : TensorVariable
        The training statistics used, to map coefficients back to the original units.
    """
    location, scale = map(training_constant, location_scale(np.asarray(container.get_value())))
    return (container - location) / scale, location, scale


def logit_labels(classes: np.ndarray) -> list[str]:
    """Names of the log-odds a multi-class model learns: each class against the first."""
    first, *others = classes.tolist()
    return [f"{label} vs {first}" for label in others]


def class_likelihood(
    name: str,
    logits: pt.TensorVariable,
    observed: pt.TensorVariable,
    n_classes: int,
    total_size: int | None = None,
):
    """Bernoulli (one logit column) or Categorical (K-1 columns, class 0 as reference) likelihood.

    Parameters
    ----------
    name : str
        Name of the observed variable.
    logits : TensorVariable of shape (n_samples, n_classes - 1)
        Log-odds of classes ``1..K-1`` against class 0.
    observed : TensorVariable
        Class indices ``0..K-1``.
    n_classes : int
        K, the number of classes.
    total_size : int, optional
        Number of training rows, for fitting on minibatches (see ``BayesianEstimator.minibatch_size``).
    """
    if n_classes == 2:
        return pm.Bernoulli(name, logit_p=logits[:, 0], observed=observed, shape=logits.shape[0], total_size=total_size)
    full = pt.concatenate([pt.zeros_like(logits[:, :1]), logits], axis=1)
    return pm.Categorical(
        name, p=pt.special.softmax(full, axis=-1), observed=observed, shape=logits.shape[0], total_size=total_size
    )


def gaussian_log_joint(
    x: pt.TensorVariable,
    weights: pt.TensorVariable,
    means: pt.TensorVariable,
    scales: pt.TensorVariable,
    covariance_type: str,
) -> pt.TensorVariable:
    """``log w_k + log N(x | mean_k, cov_k)`` of each row of ``x``, shape (n_samples, n_components).

    Parameters
    ----------
    x : TensorVariable of shape (n_samples, n_features)
    weights : TensorVariable of shape (..., n_components)
    means : TensorVariable of shape (..., n_components, n_features)
    scales : TensorVariable
        Lower Cholesky factors of the covariances, (..., n_components, n_features,
        n_features), for ``"full"``; standard deviations, (..., n_components, n_features),
        for ``"diag"``. Leading dimensions, if any, have length 1.
    covariance_type : {"full", "diag"}
    """
    diff = x[:, None, :] - means  # (n, K, D)
    if covariance_type == "full":
        # An explicit inverse of the small D x D factors: PyTensor's triangular solve is a
        # Python-level op that costs milliseconds per call, here called per component.
        inverse = pt.linalg.inv(scales)
        z = pt.sum(inverse * diff[..., None, :], axis=-1)
        log_det = pt.sum(pt.log(pt.diagonal(scales, axis1=-2, axis2=-1)), axis=-1)
    else:
        z = diff / scales
        log_det = pt.sum(pt.log(scales), axis=-1)
    n_features = pt.cast(x.shape[-1], "float64")
    return pt.log(weights) - 0.5 * pt.sum(z**2, axis=-1) - log_det - 0.5 * n_features * np.log(2.0 * np.pi)
