"""Independent references for the linear models' predictions, from their own posterior draws.

What the posterior predictive of a fitted ``LinearRegression`` or ``LogisticRegression``
should be, computed from its own posterior draws (``idata_.posterior``, stacked over chain
and draw in that order, as the estimators stack them) with plain NumPy and SciPy, never
through the estimator's compiled predictor; and the Monte Carlo error a predictor that
draws one predictive value per posterior draw may have. Tests compare the estimators,
their served endpoints or Spark UDFs with these instead of with ``predict_summary``.
"""

from __future__ import annotations

import numpy as np
from scipy.special import ndtr, softmax


def posterior_draws(estimator, name: str) -> np.ndarray:
    """The posterior draws of variable ``name``, with one leading draw axis (chain-major)."""
    values = estimator.idata_.posterior[name].values  # (chain, draw, ...)
    return values.reshape(-1, *values.shape[2:])


def linear_regression_draws(estimator, X) -> tuple[np.ndarray, np.ndarray]:
    """Per-draw mean and noise scale of a fitted ``LinearRegression`` at the rows of ``X``.

    Uses the model's variables in the original units: ``mu_s(x) = intercept_s + x @ coef_s``
    and ``sigma_s``.

    Returns
    -------
    mu : ndarray of shape (n_draws, n_samples)
    sigma : ndarray of shape (n_draws, 1)
        Broadcasts against ``mu``.
    """
    X = np.asarray(X, dtype=np.float64)
    mu = posterior_draws(estimator, "intercept")[:, None] + posterior_draws(estimator, "coef") @ X.T
    return mu, posterior_draws(estimator, "sigma")[:, None]


def normal_mixture_cdf(q: np.ndarray, mu: np.ndarray, sigma: np.ndarray) -> np.ndarray:
    """``mean_s Phi((q - mu_s) / sigma_s)``: the CDF of an equal-weight Normal mixture per row.

    Parameters
    ----------
    q : ndarray of shape (n_samples,)
    mu, sigma : ndarray broadcasting to (n_draws, n_samples)
    """
    return ndtr((q - mu) / sigma).mean(axis=0)


def invert_increasing(function, target, lower, upper) -> np.ndarray:
    """Where the increasing ``function`` reaches ``target``, elementwise, by vectorised bisection.

    100 halvings shrink the bracket ``[lower, upper]``, which must hold the answer, to the
    rounding error of its bounds.

    Parameters
    ----------
    function : callable
        Increasing in each element of its argument, e.g. a CDF (per draw and row, or
        averaged over the draws).
    target, lower, upper : ndarray
        Broadcast against ``function``'s values.
    """
    for _ in range(100):
        middle = (lower + upper) / 2
        below = function(middle) < target
        lower, upper = np.where(below, middle, lower), np.where(below, upper, middle)
    return (lower + upper) / 2


def normal_mixture_quantile(mu: np.ndarray, sigma: np.ndarray, prob: float) -> np.ndarray:
    """The ``prob`` quantile of each row's equal-weight Normal mixture, by vectorised bisection.

    The bracket [min(mu - 10 sigma), max(mu + 10 sigma)] holds every quantile.

    Parameters
    ----------
    mu, sigma : ndarray broadcasting to (n_draws, n_samples)
    prob : float
        In (0, 1).

    Returns
    -------
    ndarray of shape (n_samples,)
    """
    lower, upper = (mu - 10 * sigma).min(axis=0), (mu + 10 * sigma).max(axis=0)
    return invert_increasing(lambda q: normal_mixture_cdf(q, mu, sigma), prob, lower, upper)


def normal_mixture_summary(mu: np.ndarray, sigma: np.ndarray, interval_prob: float | None = None) -> dict:
    """Posterior predictive mean, std and central interval of Normal draws ``N(mu_s, sigma_s)``.

    The predictive distribution is the equal-weight mixture of the draws' Normals: its mean
    is ``mean_s mu_s``, its variance ``mean_s sigma_s**2 + var_s mu_s`` (noise plus parameter
    uncertainty), its interval bounds the mixture's quantiles.

    Parameters
    ----------
    mu, sigma : ndarray broadcasting to (n_draws, n_samples)
    interval_prob : float, optional
        Probability mass of the central interval.

    Returns
    -------
    dict
        ``mean`` and ``std`` of shape (n_samples,), and ``lower`` and ``upper`` when
        ``interval_prob`` is given: the keys of ``predict_summary``.
    """
    summary = {"mean": mu.mean(axis=0), "std": np.sqrt((sigma**2).mean(axis=0) + mu.var(axis=0))}
    if interval_prob is not None:
        tail = (1.0 - interval_prob) / 2.0
        summary["lower"] = normal_mixture_quantile(mu, sigma, tail)
        summary["upper"] = normal_mixture_quantile(mu, sigma, 1.0 - tail)
    return summary


def one_draw_each_standard_errors(mu: np.ndarray, sigma: np.ndarray, summary: dict) -> dict:
    """Monte Carlo standard errors of summaries of one predictive draw per posterior draw.

    A predictor that draws ``y_s = mu_s + sigma_s z_s`` with independent standard normal
    ``z_s`` (one per posterior draw) and summarises the ``y_s`` misses the exact mixture
    ``summary`` (from :func:`normal_mixture_summary`) by about these, given the posterior
    draws: the mean by ``sqrt(sum_s sigma_s**2) / S``; the variance by
    ``sqrt(sum_s (4 (mu_s - mean)**2 sigma_s**2 + 2 sigma_s**4)) / S`` (the std by that over
    ``2 std``); a quantile ``q`` by ``sqrt(sum_s F_s (1 - F_s)) / S`` over the mixture density
    at ``q``, ``F_s`` the draw's CDF at ``q``. The estimators' stratified uniforms, one per
    stratum paired with the draws at random, do no worse than independent ones.

    Returns
    -------
    dict
        The keys of ``summary``, each of shape (n_samples,).
    """
    n_draws = len(mu)
    sigma = np.broadcast_to(sigma, mu.shape)
    centred = mu - summary["mean"]
    errors = {
        "mean": draws_mean_standard_errors(sigma**2),
        "std": np.sqrt((4 * centred**2 * sigma**2 + 2 * sigma**4).sum(axis=0)) / n_draws / (2 * summary["std"]),
    }
    for bound in ("lower", "upper"):
        if bound in summary:
            errors[bound] = quantile_standard_errors(summary[bound], mu, sigma)
    return errors


def quantile_standard_errors(quantile: np.ndarray, mu: np.ndarray, sigma: np.ndarray) -> np.ndarray:
    """Monte Carlo standard error of a predictive quantile from one draw per posterior draw.

    ``sqrt(sum_s F_s (1 - F_s)) / S`` over the mixture density at the exact ``quantile``,
    ``F_s`` the draw's CDF there (see :func:`one_draw_each_standard_errors`).
    """
    sigma = np.broadcast_to(sigma, mu.shape)
    z = (quantile - mu) / sigma
    density = (np.exp(-0.5 * z**2) / (np.sqrt(2 * np.pi) * sigma)).mean(axis=0)
    return draws_quantile_standard_errors(ndtr(z), density)


def draws_mean_standard_errors(variance: np.ndarray) -> np.ndarray:
    """Monte Carlo standard error of a predictive mean from one draw per posterior draw, any distribution:
    ``sqrt(sum_s variance_s) / S``, ``variance`` (n_draws, n_samples) each draw's predictive variance."""
    return np.sqrt(variance.sum(axis=0)) / len(variance)


def draws_quantile_standard_errors(cdf: np.ndarray, density: np.ndarray) -> np.ndarray:
    """Monte Carlo standard error of a predictive quantile from one draw per posterior draw, any distribution.

    Parameters
    ----------
    cdf : ndarray of shape (n_draws, n_samples)
        Each posterior draw's predictive CDF at the exact quantile.
    density : ndarray of shape (n_samples,)
        The posterior predictive density there (the draws' densities averaged).
    """
    return np.sqrt((cdf * (1 - cdf)).sum(axis=0)) / len(cdf) / density


def assert_within_monte_carlo_error(
    summary: dict, mu: np.ndarray, sigma: np.ndarray, *, interval_prob: float | None = None, n_errors: float = 4.0
) -> tuple[dict, dict]:
    """Assert that a predictor's ``summary`` is the Normal mixture's, up to ``n_errors`` standard errors.

    Parameters
    ----------
    summary : dict
        Any of ``mean``, ``std``, ``lower`` and ``upper`` of each row (the keys of
        ``predict_summary``), from one predictive draw per posterior draw.
    mu, sigma : ndarray broadcasting to (n_draws, n_samples)
        The posterior draws it was computed from (see :func:`linear_regression_draws`).
    interval_prob : float, optional
        Probability of the interval; needed when ``summary`` has ``lower`` or ``upper``.
    n_errors : float, default=4.0
        Tolerance, in the standard errors of :func:`one_draw_each_standard_errors`.

    Returns
    -------
    reference, tolerance : dict
        The exact summary (:func:`normal_mixture_summary`) and the tolerance of each row.
    """
    if interval_prob is None and {"lower", "upper"} & set(summary):
        raise ValueError("interval_prob is needed to check an interval.")
    reference = normal_mixture_summary(mu, sigma, interval_prob)
    errors = one_draw_each_standard_errors(mu, sigma, reference)
    for key, got in summary.items():
        assert_within_standard_errors(got, reference[key], errors[key], key, n_errors=n_errors)
    return reference, {key: n_errors * error for key, error in errors.items()}


def assert_within_standard_errors(
    got: np.ndarray, reference: np.ndarray, standard_error: np.ndarray, what: str, *, n_errors: float = 4.0
) -> None:
    """Assert that each row's ``got`` is its ``reference`` within ``n_errors`` of its Monte Carlo ``standard_error``."""
    got = np.asarray(got)
    deviation, tolerance = np.abs(got - reference), n_errors * np.broadcast_to(standard_error, np.shape(reference))
    row = int(np.argmax(deviation / tolerance))
    assert deviation[row] < tolerance[row], (
        f"{what} of row {row} is {got[row]!r}, {deviation[row]:.3g} from the reference "
        f"{reference[row]!r}: more than {n_errors} Monte Carlo standard errors ({tolerance[row]:.3g})"
    )


def assert_linear_regression_frame_within_monte_carlo_error(
    frame, estimator, X, *, interval_prob: float | None = None
) -> None:
    """Assert that a fitted ``LinearRegression``'s pyfunc output at the rows of ``X`` is its
    posterior predictive (:func:`assert_within_monte_carlo_error`), wherever it was computed
    (pyfunc, a served endpoint, a Spark UDF).

    Parameters
    ----------
    frame : DataFrame
        The pyfunc columns ``prediction`` and any of ``std``, ``lower`` and ``upper``.
    interval_prob : float, optional
        Probability of the interval in ``lower`` and ``upper``.
    """
    keys = {"prediction": "mean", "std": "std", "lower": "lower", "upper": "upper"}
    summary = {key: frame[column].to_numpy() for column, key in keys.items() if column in frame}
    mu, sigma = linear_regression_draws(estimator, X)
    assert_within_monte_carlo_error(summary, mu, sigma, interval_prob=interval_prob)


def softmax_class_probabilities(intercept: np.ndarray, coef: np.ndarray, X) -> np.ndarray:
    """Class probabilities of a logistic model whose class 0 is the reference, per draw.

    Parameters
    ----------
    intercept : ndarray of shape (n_draws, n_classes - 1)
    coef : ndarray of shape (n_draws, n_classes - 1, n_features)
        Log-odds of classes ``1..K-1`` against class 0 (binary: one row, the log-odds of
        class 1, so the softmax of ``[0, logit]`` is ``[1 - expit, expit]``).
    X : array-like of shape (n_samples, n_features)

    Returns
    -------
    ndarray of shape (n_draws, n_samples, n_classes)
    """
    logits = intercept[:, None, :] + np.einsum("nf,skf->snk", np.asarray(X, dtype=np.float64), coef)
    reference = np.zeros((*logits.shape[:2], 1))
    return softmax(np.concatenate([reference, logits], axis=-1), axis=-1)


def logistic_regression_proba(estimator, X) -> np.ndarray:
    """Posterior mean class probabilities of a fitted ``LogisticRegression``: averaged over draws.

    Returns
    -------
    ndarray of shape (n_samples, n_classes)
    """
    per_draw = softmax_class_probabilities(
        posterior_draws(estimator, "intercept"), posterior_draws(estimator, "coef"), X
    )
    return per_draw.mean(axis=0)
