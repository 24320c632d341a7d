"""Our regressors as skpro probabilistic regressors (the ``[skpro]`` extra).

:class:`SkproRegressor` wraps any of our regressors (built-in, bespoke, formula) as an
skpro ``BaseProbaRegressor``, so skpro's tools (``evaluate`` with CRPS or log loss,
pipelines, tuning, sktime's reduction to forecasting) take it. Its ``predict_proba``
returns :class:`PosteriorPredictiveMixture`: each row's posterior predictive distribution,
the equal-weight mixture over the posterior draws of the likelihood at that draw, exactly,
not a sample of it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats
from scipy.special import erf, logsumexp
from sklearn.base import clone
from skpro.distributions.base import BaseDistribution
from skpro.regression.base import BaseProbaRegressor

from estimators.base import BayesianEstimator
from estimators.predictive import likelihood_of

#: Bisection of a mixture's quantile stops at this relative width of the bracket.
RELATIVE_TOLERANCE = 1e-12
#: Most halvings (and doublings of a bracket) in a quantile search.
MAX_STEPS = 200
#: Pairs of draws (times rows) whose energy is computed at once: bounds the memory of ``energy()``.
PAIRS_PER_BLOCK = 2**21


def mixture_quantile(
    cdf: Callable[[np.ndarray], np.ndarray],
    p: np.ndarray,
    lower: np.ndarray,
    upper: np.ndarray,
    *,
    discrete: bool = False,
) -> np.ndarray:
    """The quantile at ``p`` of each row's distribution, from its CDF, by bisection.

    Parameters
    ----------
    cdf : callable
        Values of shape (n_rows,) to the CDF at them, of shape (n_rows,).
    p : ndarray of shape (n_rows,)
        Levels in (0, 1).
    lower, upper : ndarray of shape (n_rows,)
        A first bracket; widened (doubling its width) until ``cdf(lower) < p <= cdf(upper)``.
    discrete : bool
        Search the whole numbers: the smallest ``k`` with ``cdf(k) >= p``.
    """
    lower, upper = np.asarray(lower, dtype=float).copy(), np.asarray(upper, dtype=float).copy()
    for _ in range(MAX_STEPS):
        low, high = cdf(lower) >= p, cdf(upper) < p
        if not (low.any() or high.any()):
            break
        width = np.maximum(upper - lower, 1.0)
        lower, upper = np.where(low, lower - width, lower), np.where(high, upper + width, upper)
    for _ in range(MAX_STEPS):
        width = upper - lower
        unresolved = width > 1 if discrete else width > RELATIVE_TOLERANCE * np.maximum(1.0, np.abs(upper))
        if not unresolved.any():
            break
        middle = np.floor(lower + width / 2) if discrete else lower + width / 2
        below = cdf(middle) < p
        lower = np.where(unresolved & below, middle, lower)
        upper = np.where(unresolved & ~below, middle, upper)
    return upper if discrete else (lower + upper) / 2


class PosteriorPredictiveMixture(BaseDistribution):
    """Each row's posterior predictive distribution: the mixture over the posterior draws.

    Row ``i`` has the density ``p(y | x_i) = mean_s p(y | x_i, draw s)``. A Normal
    likelihood's mixture is computed in closed form from each draw's mean and scale
    (``pdf``, ``log_pdf``, ``cdf``, ``mean``, ``var``, ``energy``); any other likelihood's
    ``pdf``, ``log_pdf`` and ``cdf`` come from the estimator's compiled log density and log
    CDF over the draws, and its ``mean`` and ``var`` from its predictive draws (Monte Carlo,
    so they are tagged approximate); for a count likelihood, ``pmf`` and ``log_pmf`` are its
    mixture's. ``ppf`` is the mixture CDF's inverse, found by bisection.

    Parameters
    ----------
    estimator : BayesianEstimator
        A fitted regressor of ours.
    X : DataFrame
        The rows, in the columns the estimator was fitted on.
    index, columns : pd.Index, optional
        Of the distribution: one row per row of ``X``, one column (the target).
    """

    _tags = {
        "capabilities:approx": ["pdfnorm"],
        "capabilities:exact": ["mean", "var", "pdf", "log_pdf", "cdf", "ppf", "energy"],
        "distr:measuretype": "continuous",
        "distr:paramtype": "composite",
        "broadcast_init": "off",
    }

    def __init__(self, estimator: BayesianEstimator, X: pd.DataFrame, index=None, columns=None):
        self.estimator = estimator
        self.X = X
        super().__init__(
            index=pd.RangeIndex(len(X)) if index is None else index,
            columns=pd.RangeIndex(1) if columns is None else columns,
        )
        parameters = estimator.likelihood_parameters(X)
        self._normal = parameters[1] if parameters is not None and parameters[0] == "normal" else None
        self._discrete = likelihood_of(estimator.pymc_model()).dtype.startswith("int")
        if self._normal is None:
            self.set_tags(
                **{
                    "capabilities:approx": ["pdfnorm", "mean", "var", "energy"],
                    "capabilities:exact": ["pdf", "log_pdf", "cdf", "ppf"],
                    "distr:measuretype": "discrete" if self._discrete else "continuous",
                }
            )

    # -- per draw and row (draws x rows), at one value per row -------------------------------

    def _log_densities(self, y: np.ndarray) -> np.ndarray:
        if self._normal is not None:
            mu, sigma = self._normal
            return stats.norm.logpdf(y, mu, sigma)
        return self.estimator.pointwise_log_likelihood(self.X, y)

    def _cdfs(self, y: np.ndarray) -> np.ndarray:
        if self._normal is not None:
            mu, sigma = self._normal
            return stats.norm.cdf(y, mu, sigma)
        return np.exp(self.estimator.pointwise_log_cdf(self.X, y))

    # -- the mixture (skpro passes and expects arrays of the distribution's shape, rows x 1) --

    def _log_pdf(self, x: np.ndarray) -> np.ndarray:
        log_densities = self._log_densities(x[:, 0])
        return (logsumexp(log_densities, axis=0) - np.log(len(log_densities)))[:, None]

    def _pdf(self, x: np.ndarray) -> np.ndarray:
        return np.exp(self._log_pdf(x))

    # A count likelihood's mixture has a probability mass function (skpro's pdf is then 0).
    _log_pmf = _log_pdf
    _pmf = _pdf

    def _cdf(self, x: np.ndarray) -> np.ndarray:
        return self._cdfs(x[:, 0]).mean(axis=0)[:, None]

    def _ppf(self, p: np.ndarray) -> np.ndarray:
        levels = p[:, 0]
        if self._normal is not None:  # the mixture's quantile lies between its components' quantiles
            mu, sigma = self._normal
            per_draw = stats.norm.ppf(levels, mu, sigma)
            lower, upper = per_draw.min(axis=0), per_draw.max(axis=0)
        else:
            lower = upper = np.median(self.estimator.sample_posterior_predictive(self.X), axis=0)
        quantile = mixture_quantile(lambda y: self._cdfs(y).mean(axis=0), levels, lower, upper, discrete=self._discrete)
        return quantile[:, None]

    def _mean(self) -> np.ndarray:
        if self._normal is not None:
            return self._normal[0].mean(axis=0)[:, None]
        return self.estimator.predict_summary(self.X)["mean"][:, None]

    def _var(self) -> np.ndarray:
        if self._normal is not None:  # the law of total variance
            mu, sigma = self._normal
            return ((sigma**2).mean(axis=0) + mu.var(axis=0))[:, None]
        return (self.estimator.predict_summary(self.X)["std"] ** 2)[:, None]

    def _energy_x(self, x: np.ndarray) -> np.ndarray:
        """``E|Y - x|``: for a Normal mixture, the mean over draws of the Normal's closed form."""
        if self._normal is None:
            return self._energy_default(x)
        mu, sigma = self._normal
        return _mean_absolute_normal(x[:, 0] - mu, sigma).mean(axis=0)[:, None]

    def _energy_self(self) -> np.ndarray:
        """``E|Y - Y'|`` for independent ``Y, Y'``: for a Normal mixture, over every pair of draws."""
        if self._normal is None:
            return self._energy_default()
        mu, sigma = self._normal
        n_draws, n_rows = mu.shape
        block = max(1, PAIRS_PER_BLOCK // (n_draws * n_rows))  # draws paired with all others at once
        total = np.zeros(n_rows)
        for start in range(0, n_draws, block):
            difference = mu[start : start + block, None, :] - mu[None, :, :]
            scale = np.sqrt(sigma[start : start + block, None, :] ** 2 + sigma[None, :, :] ** 2)
            total += _mean_absolute_normal(difference, scale).sum(axis=(0, 1))
        return (total / n_draws**2)[:, None]

    def _sample(self, n_samples: int | None = None) -> pd.DataFrame:
        """Exact draws: for each sample and row, a posterior draw at random, then its likelihood."""
        if self._normal is None:
            return super()._sample(n_samples)
        mu, sigma = self._normal
        rng = np.random.default_rng()
        count = 1 if n_samples is None else n_samples
        draws = rng.integers(len(mu), size=(count, mu.shape[1]))
        rows = np.arange(mu.shape[1])
        values = rng.normal(mu[draws, rows], sigma[draws, rows])
        if n_samples is None:
            return pd.DataFrame(values[0][:, None], index=self.index, columns=self.columns)
        index = pd.MultiIndex.from_product([range(n_samples), self.index])
        return pd.DataFrame(values.reshape(-1, 1), index=index, columns=self.columns)

    # -- subsets: the same estimator at a subset of the rows ----------------------------------

    def _iloc(self, rowidx=None, colidx=None):
        rows = np.arange(len(self.index)) if rowidx is None else np.atleast_1d(np.arange(len(self.index))[rowidx])
        columns = self.columns if colidx is None else self.columns[np.atleast_1d(np.arange(len(self.columns))[colidx])]
        return type(self)(self.estimator, self.X.iloc[rows], index=self.index[rows], columns=columns)

    def _iat(self, rowidx=None, colidx=None):
        return self._iloc(rowidx=rowidx, colidx=colidx)


def _mean_absolute_normal(location: np.ndarray, scale: np.ndarray) -> np.ndarray:
    """``E|Z|`` for ``Z ~ N(location, scale)``: ``scale (2 phi(z) + z (2 Phi(z) - 1))``, ``z = location/scale``."""
    z = location / scale
    return scale * (np.sqrt(2 / np.pi) * np.exp(-0.5 * z**2) + z * erf(z / np.sqrt(2)))  # 2 Phi(z) - 1 = erf(z/sqrt2)


def _string_columns(X: pd.DataFrame) -> pd.DataFrame:
    """``X`` with its column names as strings (skpro passes mixed int and str names; ours take strings)."""
    return X.set_axis([str(name) for name in X.columns], axis=1)


class SkproRegressor(BaseProbaRegressor):
    """One of our regressors as an skpro probabilistic regressor.

    ``predict_proba`` returns each row's exact posterior predictive distribution (the
    mixture over the posterior draws, :class:`PosteriorPredictiveMixture`);
    ``predict_quantiles`` and ``predict_interval`` are the wrapped estimator's own
    quantiles (its ``predict_quantiles``), in skpro's column format.

    Parameters
    ----------
    estimator : BayesianEstimator, default=None
        A regressor of ours (built-in, bespoke or formula), cloned at fit; None for
        :class:`~estimators.linear_model.LinearRegression` with its defaults.

    Attributes
    ----------
    estimator_ : BayesianEstimator
        The fitted clone.

    Examples
    --------
    >>> from sklearn.datasets import load_diabetes
    >>> from estimators.linear_model import LinearRegression
    >>> from estimators.skpro import SkproRegressor
    >>> X, y = load_diabetes(return_X_y=True, as_frame=True)
    >>> regressor = SkproRegressor(LinearRegression(inference="advi", random_seed=0, progressbar=False))
    >>> regressor = regressor.fit(X.iloc[:300], y.iloc[:300])
    >>> distribution = regressor.predict_proba(X.iloc[300:])
    >>> distribution.log_pdf(y.iloc[300:].to_frame()).shape
    (142, 1)
    """

    _tags = {
        "authors": ["mlflow-pmlearn developers"],
        "python_dependencies": ["pymc"],
        "capability:multioutput": False,
        "capability:missing": False,
        "X_inner_mtype": "pd_DataFrame_Table",
        "y_inner_mtype": "pd_DataFrame_Table",
    }

    def __init__(self, estimator: BayesianEstimator | None = None):
        self.estimator = estimator
        super().__init__()

    def _fit(self, X: pd.DataFrame, y: pd.DataFrame) -> SkproRegressor:
        if self.estimator is None:
            from estimators.linear_model import LinearRegression

            self.estimator_ = LinearRegression()
        else:
            self.estimator_ = clone(self.estimator)
        self.estimator_.fit(_string_columns(X), y.iloc[:, 0].to_numpy())
        return self

    def _predict(self, X: pd.DataFrame) -> pd.DataFrame:
        mean = self.estimator_.predict(_string_columns(X))
        return pd.DataFrame(mean, index=X.index, columns=self._get_columns(method="predict"))

    def _predict_proba(self, X: pd.DataFrame) -> PosteriorPredictiveMixture:
        return PosteriorPredictiveMixture(
            self.estimator_, _string_columns(X), index=X.index, columns=self._get_columns(method="predict")
        )

    def _predict_quantiles(self, X: pd.DataFrame, alpha: Sequence[float]) -> pd.DataFrame:
        quantiles = self.estimator_.predict_quantiles(_string_columns(X), list(alpha))
        columns = self._get_columns(method="predict_quantiles", alpha=alpha)
        return pd.DataFrame(quantiles, index=X.index, columns=columns)

    @classmethod
    def get_test_params(cls, parameter_set: str = "default") -> list[dict[str, Any]]:
        """Linear regressions with short ADVI, for skpro's estimator checks."""
        from estimators.linear_model import LinearRegression

        fast = {"inference": "advi", "n_draws": 30, "max_iter": 200, "random_seed": 0, "progressbar": False}
        return [{"estimator": LinearRegression(**fast)}, {"estimator": LinearRegression(prior_scale_noise=2.0, **fast)}]
