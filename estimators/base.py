"""The base class of every Bayesian estimator, and the regressor and classifier mixins.

A model is one small class: subclass a mixin and :class:`BayesianEstimator`, store the
hyper-parameters in ``__init__`` the scikit-learn way, and write :meth:`build_model`.
Validation, ADVI or NUTS, prediction over the posterior, scoring, saving and loading come
from here.
"""

from __future__ import annotations

import inspect
import threading
from numbers import Integral, Real
from typing import Any

import arviz as az
import numpy as np
import pandas as pd
import pymc as pm
import pytensor.tensor as pt
from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin
from sklearn.preprocessing import LabelEncoder
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted, column_or_1d, validate_data

from estimators.inference import (
    INFERENCE_METHODS,
    InferenceSettings,
    fit_posterior,
    resolve_progressbar,
)
from estimators.predictive import PosteriorPredictor, likelihood_of

#: Name of the data container that holds the training targets.
TARGET = "y"


def _column_label(feature_names: np.ndarray | None, column: int) -> str:
    if feature_names is not None and column < len(feature_names):
        return repr(str(feature_names[column]))
    return f"{column} (0-based)"


def numeric_matrix(X: Any, feature_names: np.ndarray | None = None, *, what: str = "X") -> np.ndarray:
    """``X`` as a finite 2-D float64 array, or a ``ValueError`` naming the bad column and row.

    Parameters
    ----------
    X : array-like or DataFrame
        The features.
    feature_names : ndarray of str, optional
        Column names used in error messages.
    what : str
        What ``X`` is called in error messages.
    """
    if isinstance(X, pd.DataFrame):
        if feature_names is None:
            feature_names = np.asarray(X.columns, dtype=object)
        duplicated = X.columns[X.columns.duplicated()].unique().tolist()
        if duplicated:
            raise ValueError(f"{what} has duplicate column names: {duplicated}.")
        for name, dtype in X.dtypes.items():
            if not (pd.api.types.is_numeric_dtype(dtype) or pd.api.types.is_bool_dtype(dtype)):
                raise ValueError(
                    f"Column {str(name)!r} of {what} has dtype {dtype}; the features must be numeric."
                )
        X = X.to_numpy(dtype=np.float64, na_value=np.nan)
    array = np.asarray(X)
    if array.ndim != 2:
        raise ValueError(
            f"{what} must be 2-D (rows x features); got an array of shape {array.shape}. "
            "Reshape a single feature with X.reshape(-1, 1) or a single row with X.reshape(1, -1)."
        )
    if array.shape[0] == 0:
        raise ValueError(f"{what} is empty: it has 0 rows (shape {array.shape}).")
    if array.shape[1] == 0:
        raise ValueError(f"{what} has no columns (shape {array.shape}).")
    if array.dtype.kind not in "biuf":
        for column in range(array.shape[1]):
            for row, value in enumerate(array[:, column]):
                try:
                    float(value)
                except (TypeError, ValueError):
                    raise ValueError(
                        f"{what} has a non-numeric value {value!r} in column "
                        f"{_column_label(feature_names, column)}, row {row}."
                    ) from None
    # C order, as the array is after a save and load: statistics a model takes from its
    # training data (column means, ...) then round identically before and after.
    array = np.ascontiguousarray(array, dtype=np.float64)
    check_finite(array, feature_names, what=what)
    return array


def check_finite(array: np.ndarray, feature_names: np.ndarray | None = None, *, what: str = "X") -> None:
    """Raise a ``ValueError`` naming the first NaN or infinity in ``array`` by column and row."""
    finite = np.isfinite(array)
    if finite.all():
        return
    bad = np.argwhere(~finite)
    row = int(bad[0][0])
    value = array[tuple(bad[0])]
    kind = "NaN" if np.isnan(value) else "infinity"
    where = f"row {row}"
    if array.ndim == 2:
        where = f"column {_column_label(feature_names, int(bad[0][1]))}, {where}"
    raise ValueError(f"Input {what} contains {kind} in {where} ({len(bad)} non-finite value(s) in all).")


class BayesianEstimator(BaseEstimator):
    """Base class of the Bayesian estimators: scikit-learn API over a PyMC model.

    Subclasses store their hyper-parameters in ``__init__`` (keyword-only, no logic),
    pass the remaining keyword arguments (the inference settings below) to
    ``super().__init__`` and implement :meth:`build_model`.

    Parameters
    ----------
    inference : {"advi", "nuts"}, default="advi"
        How to fit: mean-field ADVI stopped when the loss converges, or PyMC's NUTS sampler.
    n_draws : int, default=1000
        Posterior draws kept: drawn from the ADVI approximation, or per NUTS chain.
    n_tune : int, default=1000
        NUTS tuning steps per chain.
    n_chains : int, default=2
        NUTS chains.
    max_iter : int, default=20000
        Most ADVI iterations, if the loss has not converged before.
    tol : float, default=1e-4
        ADVI plateau threshold: when the mean loss of the last 100 iterations improves
        on the 100 before by less than this fraction, the learning rate is divided by
        ten; at the third plateau the fit has converged and stops.
    learning_rate : float, default=0.05
        Initial Adam learning rate of ADVI.
    random_seed : int or None, default=None
        Seed of the fit and of the predictive draws; the same seed gives the same
        posterior and predictions.
    progressbar : bool or None, default=None
        PyMC's progress bar; by default shown only when standard error is a terminal.
    """

    _parameter_constraints: dict = {
        "inference": [StrOptions(set(INFERENCE_METHODS))],
        "n_draws": [Interval(Integral, 1, None, closed="left")],
        "n_tune": [Interval(Integral, 0, None, closed="left")],
        "n_chains": [Interval(Integral, 1, None, closed="left")],
        "max_iter": [Interval(Integral, 1, None, closed="left")],
        "tol": [Interval(Real, 0, None, closed="neither")],
        "learning_rate": [Interval(Real, 0, None, closed="neither")],
        "random_seed": [Interval(Integral, 0, 2**32 - 1, closed="both"), None],
        "progressbar": ["boolean", None],
    }

    #: Fitted attributes that, with the hyper-parameters and ``idata_``, rebuild the estimator.
    _fitted_state_attributes: tuple[str, ...] = ("n_features_in_", "feature_names_in_")

    def __init__(
        self,
        *,
        inference: str = "advi",
        n_draws: int = 1000,
        n_tune: int = 1000,
        n_chains: int = 2,
        max_iter: int = 20_000,
        tol: float = 1e-4,
        learning_rate: float = 0.05,
        random_seed: int | None = None,
        progressbar: bool | None = None,
    ):
        self.inference = inference
        self.n_draws = n_draws
        self.n_tune = n_tune
        self.n_chains = n_chains
        self.max_iter = max_iter
        self.tol = tol
        self.learning_rate = learning_rate
        self.random_seed = random_seed
        self.progressbar = progressbar

    @classmethod
    def _get_param_names(cls) -> list[str]:
        """The subclass's own hyper-parameters plus the inference settings of the base."""
        own = super()._get_param_names()
        base = [
            name
            for name in inspect.signature(BayesianEstimator.__init__).parameters
            if name != "self"
        ]
        return sorted(set(own) | set(base))

    # -- the model ---------------------------------------------------------------------

    def build_model(self, X: pt.TensorVariable, y: pt.TensorVariable) -> None:
        """Write the PyMC model; called inside an active ``pm.Model`` context.

        Create the priors and exactly one observed variable, the likelihood, with
        ``observed=y``. ``X`` and ``y`` are ``pm.Data`` containers; at prediction time
        ``X`` is replaced by the new rows, so any statistic of the training data that the
        model uses (e.g. for standardising) must be computed from ``X.get_value()``, not
        symbolically. Give the likelihood a shape that follows ``X`` (e.g. its mean).

        Parameters
        ----------
        X : TensorVariable
            The features (one ``pm.Data`` container per entry of :meth:`_inputs_from_features`).
        y : TensorVariable
            The targets: floats for regressors, class indices ``0..K-1`` for classifiers.
        """
        raise NotImplementedError(f"{type(self).__name__} must implement build_model(X, y).")

    def pymc_model(self) -> pm.Model:
        """The PyMC model over the training data, as fitted.

        Returns
        -------
        pm.Model
            The model; built once per fitted estimator (after loading, from the training
            data kept in ``idata_``).
        """
        check_is_fitted(self)
        if self.__dict__.get("_model") is None:
            inputs = {name: self.idata_.constant_data[name].values for name in self._input_names()}
            (target,) = self.idata_.observed_data.data_vars.values()
            self._model = self._build_pymc_model(inputs, target.values)
        return self._model

    def _build_pymc_model(self, inputs: dict[str, np.ndarray], y: np.ndarray) -> pm.Model:
        with pm.Model() as model:
            containers = {name: pm.Data(name, value) for name, value in inputs.items()}
            self.build_model(**containers, y=pm.Data(TARGET, y))
        likelihood_of(model)
        return model

    def _input_names(self) -> list[str]:
        """Names of the data containers that new rows replace at prediction time."""
        return ["X"]

    # -- validation --------------------------------------------------------------------

    def _aligned_columns(self, X: Any) -> Any:
        """``X`` with its columns in the order seen at fit, or an error naming the difference."""
        expected = getattr(self, "feature_names_in_", None)
        if expected is None or not isinstance(X, pd.DataFrame):
            return X
        columns = [str(c) for c in X.columns]
        missing = [c for c in expected if c not in columns]
        unexpected = [c for c in columns if c not in set(expected)]
        if missing or unexpected:
            parts = []
            if missing:
                parts.append(f"missing column(s) {missing}")
            if unexpected:
                parts.append(f"unexpected column(s) {unexpected}")
            raise ValueError(
                f"X has {' and '.join(parts)}; {type(self).__name__} was fitted on the "
                f"columns {list(expected)}."
            )
        if columns != list(expected):
            X = X.loc[:, list(expected)]
        return X

    def _inputs_from_features(self, X: Any, *, reset: bool) -> dict[str, np.ndarray]:
        """The model's inputs (by container name) from validated, aligned features."""
        return {"X": numeric_matrix(X, getattr(self, "feature_names_in_", None))}

    def _validate_features(self, X: Any, *, reset: bool) -> dict[str, np.ndarray]:
        if not reset:
            check_is_fitted(self)
            X = self._aligned_columns(X)
        if not hasattr(X, "shape"):
            X = np.asarray(X)
        if getattr(X, "ndim", 2) != 2:
            raise ValueError(
                f"X must be 2-D (rows x features); got an array of shape {np.shape(X)}. "
                "Reshape a single feature with X.reshape(-1, 1) or a single row with X.reshape(1, -1)."
            )
        validate_data(self, X, reset=reset, skip_check_array=True)
        return self._inputs_from_features(X, reset=reset)

    def _validate_target(self, y: Any) -> np.ndarray:
        raise NotImplementedError

    def training_sample(self, n_rows: int = 5) -> pd.DataFrame | np.ndarray:
        """The first rows of the training features, in the form given to ``fit``.

        Parameters
        ----------
        n_rows : int, default=5
            How many rows.

        Returns
        -------
        DataFrame or ndarray
            A DataFrame with the training columns when fitted on one, else an array.
        """
        check_is_fitted(self)
        features = self.idata_.constant_data["X"].values[:n_rows]
        names = getattr(self, "feature_names_in_", None)
        return features if names is None else pd.DataFrame(features, columns=list(names))

    # -- fitting -----------------------------------------------------------------------

    def _inference_settings(self, seed: int) -> InferenceSettings:
        return InferenceSettings(
            method=self.inference,
            n_draws=self.n_draws,
            n_tune=self.n_tune,
            n_chains=self.n_chains,
            max_iter=self.max_iter,
            tol=self.tol,
            learning_rate=self.learning_rate,
            random_seed=seed,
            progressbar=resolve_progressbar(self.progressbar),
        )

    def fit(self, X: Any, y: Any) -> BayesianEstimator:
        """Fit the posterior of the model to ``X, y``.

        Parameters
        ----------
        X : array-like or DataFrame of shape (n_samples, n_features)
            Training features.
        y : array-like of shape (n_samples,)
            Training targets.

        Returns
        -------
        self
            The fitted estimator.
        """
        self._validate_params()
        if y is None:
            raise ValueError(f"{type(self).__name__} requires y to be passed, but the target y is None.")
        inputs = self._validate_features(X, reset=True)
        target = self._validate_target(y)
        n_rows = len(next(iter(inputs.values())))
        if len(target) != n_rows:
            raise ValueError(f"X has {n_rows} rows but y has {len(target)}; they must match.")
        seed = (
            self.random_seed
            if self.random_seed is not None
            else int(np.random.SeedSequence().generate_state(1)[0])
        )
        self._model = self._build_pymc_model(inputs, target)
        self._predictor = None
        idata = fit_posterior(self._model, self._inference_settings(seed))
        idata.posterior.attrs["pmlearn_seed"] = seed
        idata.posterior.attrs["pmlearn_inference"] = self.inference
        self.idata_ = idata
        return self

    # -- prediction --------------------------------------------------------------------

    def _predictive_outputs(self, distribution: pt.TensorVariable, uniform: pt.TensorVariable) -> list:
        """Per-draw outputs at new inputs; set by the regressor or classifier mixin."""
        raise NotImplementedError

    def posterior_predictor(self) -> PosteriorPredictor:
        """The compiled prediction function over all posterior draws, built once and reused."""
        check_is_fitted(self)
        lock = self.__dict__.setdefault("_predictor_lock", threading.Lock())
        with lock:
            if self.__dict__.get("_predictor") is None:
                self._predictor = PosteriorPredictor(
                    self.pymc_model(),
                    self.idata_.posterior,
                    self._input_names(),
                    self._predictive_outputs,
                    seed=int(self.idata_.posterior.attrs["pmlearn_seed"]),
                )
            return self._predictor

    def posterior_mean(self, name: str) -> np.ndarray | float:
        """Posterior mean of the model variable ``name`` (a float for a scalar).

        Parameters
        ----------
        name : str
            A free or deterministic variable of the model.
        """
        check_is_fitted(self)
        value = self.idata_.posterior[name].mean(("chain", "draw")).values
        return value.item() if value.ndim == 0 else value

    @property
    def n_posterior_draws_(self) -> int:
        """Number of posterior draws that predictions average over."""
        check_is_fitted(self)
        posterior = self.idata_.posterior
        return posterior.sizes["chain"] * posterior.sizes["draw"]

    # -- state for saving and loading --------------------------------------------------

    def get_fitted_state(self) -> dict[str, Any]:
        """JSON-compatible fitted attributes that, with the parameters and ``idata_``, rebuild it.

        Returns
        -------
        dict
            Attribute name to value (arrays as lists); ``None`` for absent attributes.
        """
        check_is_fitted(self)
        state = {}
        for name in self._fitted_state_attributes:
            value = getattr(self, name, None)
            state[name] = value.tolist() if isinstance(value, np.ndarray) else value
        return state

    @classmethod
    def from_fitted_state(
        cls, params: dict[str, Any], state: dict[str, Any], idata: az.InferenceData
    ) -> BayesianEstimator:
        """Rebuild a fitted estimator from its parameters, fitted state and trace.

        Parameters
        ----------
        params : dict
            Output of ``get_params(deep=False)``.
        state : dict
            Output of :meth:`get_fitted_state`.
        idata : InferenceData
            The fitted trace, ``idata_``.

        Returns
        -------
        BayesianEstimator
            An estimator that predicts exactly as the one that was saved.
        """
        estimator = cls(**params)
        for name in cls._fitted_state_attributes:
            value = state.get(name)
            if value is None:
                continue
            if isinstance(value, list):
                value = np.asarray(value, dtype=object if name == "feature_names_in_" else None)
            setattr(estimator, name, value)
        estimator.idata_ = idata
        return estimator

    def __getstate__(self) -> dict[str, Any]:
        """Pickle without the compiled model and function; they are rebuilt on demand."""
        state = self.__dict__.copy()
        for cached in ("_model", "_predictor", "_predictor_lock"):
            state.pop(cached, None)
        return state

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.non_deterministic = self.random_seed is None
        return tags


class BayesianRegressorMixin(RegressorMixin):
    """Regression over the posterior predictive: mean, standard deviation, intervals.

    The predictive distribution at each row is represented by one draw per posterior
    draw (the likelihood's inverse CDF at a fixed stratified uniform), so a row's
    prediction does not depend on the other rows it is predicted with.
    """

    def _validate_target(self, y: Any) -> np.ndarray:
        y = column_or_1d(y, warn=True)
        if y.dtype.kind not in "biuf":
            try:
                y = y.astype(np.float64)
            except (TypeError, ValueError):
                raise ValueError(f"y must be numeric for a regressor; got dtype {y.dtype}.") from None
        y = y.astype(np.float64)
        check_finite(y, what="y")
        return y

    def _predictive_outputs(self, distribution, uniform):
        return [pm.icdf(distribution, uniform)]

    def sample_posterior_predictive(self, X: Any) -> np.ndarray:
        """One posterior predictive draw per posterior draw and row.

        Parameters
        ----------
        X : array-like or DataFrame of shape (n_samples, n_features)

        Returns
        -------
        ndarray of shape (n_draws, n_samples)
        """
        inputs = self._validate_features(X, reset=False)
        (samples,) = self.posterior_predictor()(inputs)
        return samples

    def predict_summary(self, X: Any, *, interval_prob: float | None = None) -> dict[str, np.ndarray]:
        """Posterior predictive mean, standard deviation and (optionally) central interval.

        Parameters
        ----------
        X : array-like or DataFrame of shape (n_samples, n_features)
        interval_prob : float, optional
            Probability mass of the central credible interval, in (0, 1).

        Returns
        -------
        dict
            ``mean`` and ``std`` of shape (n_samples,), and ``lower`` and ``upper`` when
            ``interval_prob`` is given. Computed in row chunks, so memory stays bounded.
        """
        if interval_prob is not None:
            _check_probability(interval_prob)
        inputs = self._validate_features(X, reset=False)

        def summarize(outputs: list[np.ndarray]) -> dict[str, np.ndarray]:
            (samples,) = outputs
            summary = {"mean": samples.mean(axis=0), "std": samples.std(axis=0)}
            if interval_prob is not None:
                tail = (1.0 - interval_prob) / 2.0
                summary["lower"], summary["upper"] = np.quantile(samples, [tail, 1.0 - tail], axis=0)
            return summary

        return self.posterior_predictor().map_rows(inputs, summarize)

    def predict(self, X: Any, return_std: bool = False):
        """Posterior predictive mean (and standard deviation).

        Parameters
        ----------
        X : array-like or DataFrame of shape (n_samples, n_features)
        return_std : bool, default=False
            Also return the posterior predictive standard deviation.

        Returns
        -------
        y_mean : ndarray of shape (n_samples,)
        y_std : ndarray of shape (n_samples,)
            Only when ``return_std`` is True.
        """
        summary = self.predict_summary(X)
        return (summary["mean"], summary["std"]) if return_std else summary["mean"]

    def predict_interval(self, X: Any, prob: float = 0.94) -> np.ndarray:
        """Central credible interval of the posterior predictive.

        Parameters
        ----------
        X : array-like or DataFrame of shape (n_samples, n_features)
        prob : float, default=0.94
            Probability mass inside the interval, in (0, 1).

        Returns
        -------
        ndarray of shape (n_samples, 2)
            Lower and upper bounds.
        """
        summary = self.predict_summary(X, interval_prob=prob)
        return np.column_stack([summary["lower"], summary["upper"]])


def _check_probability(prob: Any) -> None:
    if isinstance(prob, bool) or not isinstance(prob, Real) or not 0.0 < float(prob) < 1.0:
        raise ValueError(f"The interval probability must be a number strictly between 0 and 1; got {prob!r}.")


class BayesianClassifierMixin(ClassifierMixin):
    """Classification with posterior mean class probabilities.

    The likelihood must be ``pm.Bernoulli`` (two classes) or ``pm.Categorical`` over the
    class indices ``0..K-1`` that ``y`` holds in :meth:`BayesianEstimator.build_model`.
    """

    _fitted_state_attributes = ("n_features_in_", "feature_names_in_", "classes_")

    def _validate_target(self, y: Any) -> np.ndarray:
        y = column_or_1d(y, warn=True)
        if y.dtype.kind == "f":
            check_finite(y, what="y")
        elif y.dtype == object and pd.isna(y).any():
            raise ValueError(f"Input y contains a missing label (None or NaN) at row {int(np.flatnonzero(pd.isna(y))[0])}.")
        check_classification_targets(y)
        encoder = LabelEncoder().fit(y)
        if len(encoder.classes_) < 2:
            raise ValueError(
                f"y has a single class ({encoder.classes_[0]!r}); a classifier needs at least two."
            )
        self.classes_ = encoder.classes_
        return encoder.transform(y).astype(np.int64)

    def _predictive_outputs(self, distribution, uniform):
        op_name = distribution.owner.op.name
        (p,) = distribution.owner.op.dist_params(distribution.owner)
        if op_name == "bernoulli":
            return [pt.stack([1.0 - p, p], axis=-1)]
        if op_name == "categorical":
            return [p]
        raise TypeError(
            f"A classifier's likelihood must be Bernoulli or Categorical; {type(self).__name__} "
            f"uses {op_name}."
        )

    def predict_proba(self, X: Any) -> np.ndarray:
        """Posterior mean class probabilities.

        Parameters
        ----------
        X : array-like or DataFrame of shape (n_samples, n_features)

        Returns
        -------
        ndarray of shape (n_samples, n_classes)
            Columns in the order of ``classes_``.
        """
        inputs = self._validate_features(X, reset=False)
        return self.posterior_predictor().map_rows(
            inputs, lambda outputs: {"proba": outputs[0].mean(axis=0)}, width=len(self.classes_)
        )["proba"]

    def predict(self, X: Any) -> np.ndarray:
        """Most probable class under the posterior mean probabilities.

        Parameters
        ----------
        X : array-like or DataFrame of shape (n_samples, n_features)

        Returns
        -------
        ndarray of shape (n_samples,)
        """
        return self.classes_[np.argmax(self.predict_proba(X), axis=1)]

    def sample_posterior_predictive(self, X: Any) -> np.ndarray:
        """One label drawn from the likelihood per posterior draw and row.

        Parameters
        ----------
        X : array-like or DataFrame of shape (n_samples, n_features)

        Returns
        -------
        ndarray of shape (n_draws, n_samples)
            Class labels.
        """
        inputs = self._validate_features(X, reset=False)
        predictor = self.posterior_predictor()
        (proba,) = predictor(inputs)
        cumulative = np.cumsum(proba, axis=-1)
        uniforms = predictor.uniforms[:, None, None]
        index = np.minimum((cumulative < uniforms).sum(axis=-1), len(self.classes_) - 1)
        return self.classes_[index]
