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

import numpy as np
import pandas as pd
import pymc as pm
import pytensor.tensor as pt
import xarray as xr
from scipy import sparse
from scipy.special import logsumexp
from sklearn.base import BaseEstimator, ClassifierMixin, DensityMixin, RegressorMixin
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
from estimators.predictive import PosteriorPredictor, conditional_likelihood, likelihood_of

#: Name of the data container that holds the training targets.
TARGET = "y"


def _column_label(feature_names: np.ndarray | None, column: int) -> str:
    if feature_names is not None and column < len(feature_names):
        return repr(str(feature_names[column]))
    return f"{column} (0-based)"


def numeric_matrix(X: Any, feature_names: np.ndarray | None = None, *, what: str = "X") -> np.ndarray:
    """``X`` as a finite 2-D float64 array, or an error naming the bad column and row.

    A ``ValueError``, or a ``TypeError`` for a value of a type that is not a number
    (as ``float()`` raises).

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
        columns = X.columns.tolist()
        if len(set(columns)) != len(columns):
            duplicated = sorted({str(c) for c in columns if columns.count(c) > 1})
            raise ValueError(f"{what} has duplicate column names: {duplicated}.")
        dtypes = X.dtypes.tolist()
        for position, (name, dtype) in enumerate(zip(columns, dtypes)):
            if not (pd.api.types.is_numeric_dtype(dtype) or pd.api.types.is_bool_dtype(dtype)):
                raise ValueError(
                    f"Column {str(name)!r} of {what} has dtype {dtype}"
                    f"{_first_non_number(X.iloc[:, position])}; the features must be numeric."
                )
        if all(isinstance(dtype, np.dtype) for dtype in dtypes):
            X = X.to_numpy(dtype=np.float64)
        else:  # pandas extension dtypes (nullable integers, ...): missing values become NaN
            X = X.to_numpy(dtype=np.float64, na_value=np.nan)
    array = np.asarray(X)
    check_shape(array.shape, what=what)
    if array.dtype.kind not in "biuf":
        for column in range(array.shape[1]):
            for row, value in enumerate(array[:, column]):
                try:
                    float(value)
                except (TypeError, ValueError) as error:
                    # Same exception type as float() itself (TypeError for a dict, ...).
                    raise type(error)(
                        f"{what} has a non-numeric value {value!r} in column "
                        f"{_column_label(feature_names, column)}, row {row} ({error})."
                    ) from None
    # C order, as the array is after a save and load: statistics a model takes from its
    # training data (column means, ...) then round identically before and after.
    array = np.ascontiguousarray(array, dtype=np.float64)
    check_finite(array, feature_names, what=what)
    return array


def _first_non_number(column: pd.Series) -> str:
    """`` (the value 'a' at row 3)``: the column's first value that is not a real number, if any."""
    for row, value in enumerate(column.tolist()):
        if isinstance(value, bool) or not isinstance(value, Real):
            return f" (the value {value!r} at row {row})"
    return ""


def check_shape(shape: tuple[int, ...], *, what: str = "X") -> None:
    """Raise a ``ValueError`` unless ``shape`` is 2-D with at least one row and one column.

    The wording follows scikit-learn's (``Reshape your data``, ``0 feature(s)``), which
    tools built on scikit-learn look for.
    """
    if len(shape) != 2:
        raise ValueError(
            f"{what} must be 2-D (rows x features); got an array of shape {shape}. Reshape your "
            "data with X.reshape(-1, 1) if it has a single feature or X.reshape(1, -1) if it "
            "is a single row."
        )
    if shape[0] == 0:
        raise ValueError(f"{what} is empty: 0 sample(s) (shape={shape}) while a minimum of 1 is required.")
    if shape[1] == 0:
        raise ValueError(
            f"{what} has no columns: 0 feature(s) (shape={shape}) while a minimum of 1 is required."
        )


#: Largest magnitude of a feature or regression target: its square is still a finite float64.
#: Larger values overflow the moments every model computes (a training set's standard
#: deviation becomes infinite and the feature silently drops out of the model).
MAX_MAGNITUDE = float(np.sqrt(np.finfo(np.float64).max))


def _where(array: np.ndarray, index: np.ndarray, feature_names: np.ndarray | None) -> str:
    where = f"row {int(index[0])}"
    if array.ndim == 2:
        where = f"column {_column_label(feature_names, int(index[1]))}, {where}"
    return where


def check_finite(
    array: np.ndarray, feature_names: np.ndarray | None = None, *, what: str = "X", bounded: bool = True
) -> None:
    """Raise a ``ValueError`` naming the first NaN, infinity or too large value by column and row.

    Parameters
    ----------
    array : ndarray of float
        1-D (a target) or 2-D (features).
    feature_names : ndarray of str, optional
        Column names used in error messages.
    what : str
        What ``array`` is called in error messages.
    bounded : bool, default=True
        Also refuse values larger in magnitude than :data:`MAX_MAGNITUDE` (about 1.3e154);
        False for values that are labels, not numbers to compute with.
    """
    finite = np.isfinite(array)
    if not finite.all():
        bad = np.argwhere(~finite)
        value = array[tuple(bad[0])]
        kind = "NaN" if np.isnan(value) else "infinity"
        raise ValueError(
            f"Input {what} contains {kind} in {_where(array, bad[0], feature_names)} "
            f"({len(bad)} non-finite value(s) in all)."
        )
    if bounded and (too_large := np.abs(array) > MAX_MAGNITUDE).any():
        first = np.argwhere(too_large)[0]
        raise ValueError(
            f"Input {what} has the value {array[tuple(first)]:.3g} in {_where(array, first, feature_names)}, "
            f"too large to compute with: values must be at most {MAX_MAGNITUDE:.2g} in magnitude "
            "(so that their squares are finite)."
        )


def check_flag(value: Any, name: str) -> None:
    """Raise a ``TypeError`` unless ``value`` is a boolean (``"yes"`` or ``1`` is not ``True``)."""
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be True or False; got {value!r} ({type(value).__name__}).")


def check_finite_predictions(predictions: dict[str, np.ndarray], inputs: dict[str, np.ndarray]) -> None:
    """Raise a ``ValueError`` naming the first row whose prediction is not finite.

    Finite inputs give a non-finite prediction when they are so large that the model's
    arithmetic overflows (e.g. 1e308 times a coefficient); a NaN or infinity is never
    returned as if it were an answer.

    Parameters
    ----------
    predictions : dict
        Output name to array with a leading row axis.
    inputs : dict
        The validated model inputs the predictions were made from, by container name.
    """
    for name, values in predictions.items():
        finite = np.isfinite(values)
        if finite.all():
            continue
        row = int(np.argwhere(~finite)[0][0])
        largest = max((np.abs(value[row]).max() for value in inputs.values() if value.dtype.kind == "f"), default=0.0)
        raise ValueError(
            f"The prediction ({name}) of row {row} is not finite ({np.ravel(values[row])[0]}): the "
            f"row's values (largest magnitude {largest:.3g}) are too large for the model's "
            "arithmetic, which overflows."
        )


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

    def __init_subclass__(cls, **kwargs):
        """Spell out the inherited settings in the signature of a subclass's ``__init__``.

        A subclass passes them on through ``**inference_params``; naming them in its
        signature lets ``inspect.signature``, ``help()`` and scikit-learn (its estimator
        checks, a ``repr`` that shows only changed parameters) see every parameter.
        """
        super().__init_subclass__(**kwargs)
        init = cls.__dict__.get("__init__")
        if init is None:
            return
        signature = inspect.signature(init)
        *own, last = signature.parameters.values()
        if last.kind is not inspect.Parameter.VAR_KEYWORD:
            return
        names = {parameter.name for parameter in own}
        inherited = [
            parameter
            for parameter in inspect.signature(super(cls, cls).__init__).parameters.values()
            if parameter.name not in names and parameter.name != "self"
            and parameter.kind is inspect.Parameter.KEYWORD_ONLY
        ]
        init.__signature__ = signature.replace(parameters=[*own, *inherited])

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

        Minibatch ADVI is opt-in: a model with a ``batch_size`` hyper-parameter is fitted
        on random minibatches of that many rows (``None``: full data; NUTS refuses it). Its
        likelihood must then be declared with ``total_size=len(X.get_value())`` (an int),
        which scales a minibatch's log-likelihood up to the whole training set.

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
        cache = self._fit_cache()
        with cache["lock"]:
            if cache.get("model") is None:
                inputs = {name: self.idata_.constant_data[name].values for name in self._input_names()}
                target = None
                if self.__sklearn_tags__().target_tags.required:
                    (observed,) = self.idata_.observed_data.data_vars.values()
                    target = observed.values
                cache["model"] = self._build_pymc_model(inputs, target)
            return cache["model"]

    def _fit_cache(self) -> dict[str, Any]:
        """Memo of the fitted PyMC model and compiled predictor, made when fitting or loading.

        One mutable dict filled on first use: predicting never rebinds an attribute, so it
        leaves the estimator's ``__dict__`` as fitting left it (as scikit-learn requires).
        """
        return self.__dict__.setdefault("_cache", {"lock": threading.RLock()})

    def _build_pymc_model(self, inputs: dict[str, np.ndarray], y: np.ndarray | None) -> pm.Model:
        with pm.Model() as model:
            containers = {name: pm.Data(name, value) for name, value in inputs.items()}
            if y is not None:
                containers[TARGET] = pm.Data(TARGET, y)
            self.build_model(**containers)
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
        columns, expected = [str(c) for c in X.columns.tolist()], expected.tolist()
        if columns == expected:  # the common case, and the serving hot path
            return X
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
                f"columns {expected}."
            )
        return X.loc[:, expected]

    def _inputs_from_features(self, X: Any, *, reset: bool) -> dict[str, np.ndarray]:
        """The model's inputs (by container name) from validated, aligned features."""
        return {"X": numeric_matrix(X, getattr(self, "feature_names_in_", None))}

    def _validate_features(self, X: Any, *, reset: bool) -> dict[str, np.ndarray]:
        if not reset:
            check_is_fitted(self)
            X = self._aligned_columns(X)
        if sparse.issparse(X):
            raise TypeError(
                f"{type(self).__name__} does not support sparse input; pass a dense array "
                "(X.toarray()) or a DataFrame."
            )
        if not hasattr(X, "shape"):
            X = np.asarray(X)
        check_shape(np.shape(X))
        if isinstance(X, pd.DataFrame):
            is_complex = any(pd.api.types.is_complex_dtype(dtype) for dtype in X.dtypes.tolist())
        else:
            is_complex = np.iscomplexobj(X)
        if is_complex:
            raise ValueError("Complex data not supported: X has complex values; the features must be real.")
        names_checked = not reset and isinstance(X, pd.DataFrame) and hasattr(self, "feature_names_in_")
        if not names_checked:  # _aligned_columns has already matched names and count
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
            # Opt-in: an estimator with a ``batch_size`` hyper-parameter fits on minibatches.
            batch_size=getattr(self, "batch_size", None),
        )

    def fit(self, X: Any, y: Any = None) -> BayesianEstimator:
        """Fit the posterior of the model to ``X, y``.

        Parameters
        ----------
        X : array-like or DataFrame of shape (n_samples, n_features)
            Training features.
        y : array-like of shape (n_samples,)
            Training targets (ignored by density models).

        Returns
        -------
        self
            The fitted estimator.
        """
        self._validate_params()
        inputs = self._validate_features(X, reset=True)
        target = self._validate_target(y)
        n_rows = len(next(iter(inputs.values())))
        if target is not None and len(target) != n_rows:
            raise ValueError(f"X has {n_rows} rows but y has {len(target)}; they must match.")
        seed = (
            self.random_seed
            if self.random_seed is not None
            else int(np.random.SeedSequence().generate_state(1)[0])
        )
        model = self._build_pymc_model(inputs, target)
        self._cache = {"lock": threading.RLock(), "model": model}
        row_data = [*inputs, TARGET] if target is not None else list(inputs)
        idata = fit_posterior(model, self._inference_settings(seed), row_data)
        _keep_training_inputs(idata, inputs)
        idata.posterior.attrs["pmlearn_seed"] = seed
        idata.posterior.attrs["pmlearn_inference"] = self.inference
        self.idata_ = idata
        return self

    # -- prediction --------------------------------------------------------------------

    def predictive_distribution(self, model: pm.Model, inputs: dict) -> pt.TensorVariable:
        """The distribution of a new row's target under one posterior draw.

        By default the model's likelihood with the new rows in place of the training
        inputs. Override it where prediction is not the likelihood at new inputs, e.g. a
        Gaussian process conditioned on its training data.

        Parameters
        ----------
        model : pm.Model
            The fitted model.
        inputs : dict
            Each input container (e.g. ``model["X"]``) mapped to the symbolic new rows.

        Returns
        -------
        TensorVariable
            A PyMC random variable (e.g. ``pm.Normal.dist(mu, sigma)``), one value per row.
        """
        return conditional_likelihood(likelihood_of(model), inputs)

    def _predictive_outputs(self, model: pm.Model, inputs: dict, uniform: pt.TensorVariable) -> list:
        """Per-draw outputs at new inputs; set by the regressor, classifier or density mixin."""
        raise NotImplementedError

    def posterior_predictor(self) -> PosteriorPredictor:
        """The compiled prediction function over all posterior draws, built once and reused."""
        check_is_fitted(self)
        return self._cached_predictor("predictor", self._input_names(), self._predictive_outputs)

    def _cached_predictor(self, key: str, input_names: list[str], build_outputs) -> PosteriorPredictor:
        """A :class:`PosteriorPredictor` compiled on first use and kept with the fitted state."""
        cache = self._fit_cache()
        with cache["lock"]:
            if cache.get(key) is None:
                model = self.pymc_model()
                cache[key] = PosteriorPredictor(
                    model,
                    self.idata_["posterior"].to_dataset(),
                    input_names,
                    lambda inputs, uniform: build_outputs(model, inputs, uniform),
                    seed=int(self.idata_.posterior.attrs["pmlearn_seed"]),
                )
            return cache[key]

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

    @property
    def n_iter_(self) -> int:
        """Iterations the fit ran: ADVI steps, or NUTS tuning steps plus draws per chain."""
        check_is_fitted(self)
        if "fit_history" in self.idata_.children:
            return int(self.idata_.fit_history.sizes["iteration"])
        tuning = self.idata_.sample_stats.attrs.get("tuning_steps", 0) if "sample_stats" in self.idata_.children else 0
        return int(tuning) + int(self.idata_.posterior.sizes["draw"])

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
        cls, params: dict[str, Any], state: dict[str, Any], idata: xr.DataTree
    ) -> BayesianEstimator:
        """Rebuild a fitted estimator from its parameters, fitted state and trace.

        Parameters
        ----------
        params : dict
            Output of ``get_params(deep=False)``.
        state : dict
            Output of :meth:`get_fitted_state`.
        idata : xarray.DataTree
            The fitted trace, ``idata_``.

        Returns
        -------
        BayesianEstimator
            An estimator that predicts exactly as the one that was saved.

        Raises
        ------
        ValueError or TypeError
            For a parameter the class does not take or an invalid value (as ``fit`` would
            raise), or a malformed ``n_features_in_`` or ``feature_names_in_``.
        """
        if unknown := sorted(set(params) - set(cls._get_param_names())):
            raise ValueError(f"{cls.__name__} takes no parameter(s) {unknown}.")
        estimator = cls(**params)
        estimator._validate_params()
        _check_feature_state(state)
        for name in cls._fitted_state_attributes:
            value = state.get(name)
            if value is None:
                continue
            if isinstance(value, list):
                value = np.asarray(value, dtype=object if name == "feature_names_in_" else None)
            setattr(estimator, name, value)
        estimator.idata_ = idata
        estimator._fit_cache()
        return estimator

    def __getstate__(self) -> dict[str, Any]:
        """Pickle without the compiled model and function; they are rebuilt on demand."""
        state = self.__dict__.copy()
        state.pop("_cache", None)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        super().__setstate__(state)
        if "idata_" in state:
            self._fit_cache()

    def __sklearn_is_fitted__(self) -> bool:
        """Fitted once there is a posterior: a fit that failed part-way (after validation
        set ``n_features_in_``, ...) must still raise ``NotFittedError`` on predict."""
        return "idata_" in self.__dict__

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
        _check_target_given(self, y)
        y = column_or_1d(y, warn=True)
        if y.dtype.kind not in "biuf":
            try:
                y = y.astype(np.float64)
            except (TypeError, ValueError):
                raise ValueError(f"y must be numeric for a regressor; got dtype {y.dtype}.") from None
        y = y.astype(np.float64)
        check_finite(y, what="y")
        return y

    def _predictive_outputs(self, model, inputs, uniform):
        return [pm.icdf(self.predictive_distribution(model, inputs), uniform)]

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

    def log_predictive_density(self, X: Any, y: Any) -> np.ndarray:
        """Log posterior predictive density of each observed target: ``log mean_s p(y | x, draw s)``.

        The log score, a proper scoring rule: higher is better.

        Parameters
        ----------
        X : array-like or DataFrame of shape (n_samples, n_features)
        y : array-like of shape (n_samples,)

        Returns
        -------
        ndarray of shape (n_samples,)
        """
        inputs = self._validate_features(X, reset=False)
        target = self._validate_target(y)
        if len(target) != len(next(iter(inputs.values()))):
            raise ValueError(f"X has {len(next(iter(inputs.values())))} rows but y has {len(target)}; they must match.")

        def log_density(model, new, uniform):
            features = {container: value for container, value in new.items() if container is not model[TARGET]}
            return [pm.logp(self.predictive_distribution(model, features), new[model[TARGET]])]

        predictor = self._cached_predictor("log_density", [*self._input_names(), TARGET], log_density)
        return predictor.map_rows(
            {**inputs, TARGET: target},
            lambda outputs: {"lpd": log_mean_exp_over_draws(outputs[0])},
        )["lpd"]

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

        summary = self.posterior_predictor().map_rows(inputs, summarize)
        check_finite_predictions(summary, inputs)
        return summary

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
        check_flag(return_std, "return_std")
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


def _check_feature_state(state: dict[str, Any]) -> None:
    """``n_features_in_`` a positive int and ``feature_names_in_`` (if any) that many strings."""
    n_features = state.get("n_features_in_")
    if n_features is not None and (type(n_features) is not int or n_features < 1):
        raise TypeError(f"n_features_in_ must be a positive integer; got {n_features!r}.")
    names = state.get("feature_names_in_")
    if names is None:
        return
    if not isinstance(names, list) or not all(isinstance(name, str) for name in names):
        raise TypeError(f"feature_names_in_ must be a list of strings; got {names!r:.80}.")
    if n_features is not None and len(names) != n_features:
        raise ValueError(f"feature_names_in_ has {len(names)} names but n_features_in_ is {n_features}.")


def _keep_training_inputs(idata: xr.DataTree, inputs: dict[str, np.ndarray]) -> None:
    """Make sure ``constant_data`` holds every input, also one the model observes (density models)."""
    group = idata["constant_data"].to_dataset() if "constant_data" in idata.children else None
    missing = {
        name: xr.DataArray(value, dims=[f"{name}_dim_{axis}" for axis in range(value.ndim)])
        for name, value in inputs.items()
        if group is None or name not in group
    }
    if not missing:
        return
    idata["constant_data"] = xr.Dataset(missing) if group is None else group.assign(missing)


def log_mean_exp_over_draws(log_values: np.ndarray) -> np.ndarray:
    """``log(mean(exp(log_values)))`` over the leading (posterior draw) axis, computed stably."""
    return logsumexp(log_values, axis=0) - np.log(len(log_values))


def _check_target_given(estimator: BaseEstimator, y: Any) -> None:
    if y is None:
        raise ValueError(f"{type(estimator).__name__} requires y to be passed, but the target y is None.")


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
        _check_target_given(self, y)
        y = column_or_1d(y, warn=True)
        if y.dtype.kind == "f":
            check_finite(y, what="y", bounded=False)
        elif y.dtype == object and pd.isna(y).any():
            raise ValueError(f"Input y contains a missing label (None or NaN) at row {int(np.flatnonzero(pd.isna(y))[0])}.")
        check_classification_targets(y)
        encoder = LabelEncoder().fit(y)
        if len(encoder.classes_) < 2:
            (label,) = encoder.classes_.tolist()
            raise ValueError(f"y has only one class ({label!r}); a classifier needs at least two.")
        self.classes_ = encoder.classes_
        return encoder.transform(y).astype(np.int64)

    def _predictive_outputs(self, model, inputs, uniform):
        distribution = self.predictive_distribution(model, inputs)
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
        summary = self.posterior_predictor().map_rows(
            inputs, lambda outputs: {"proba": outputs[0].mean(axis=0)}, width=len(self.classes_)
        )
        check_finite_predictions(summary, inputs)
        return summary["proba"]

    def predict(self, X: Any) -> np.ndarray:
        """Most probable class under the posterior mean probabilities.

        Parameters
        ----------
        X : array-like or DataFrame of shape (n_samples, n_features)

        Returns
        -------
        ndarray of shape (n_samples,)
        """
        proba = self.predict_proba(X)  # first: before fit, it raises NotFittedError
        return self.classes_[np.argmax(proba, axis=1)]

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


class BayesianDensityMixin(DensityMixin):
    """Density estimation over the posterior: components, responsibilities, log density.

    Subclasses take ``n_components``, observe ``X`` itself in :meth:`build_model`
    (``build_model(self, X)``, no ``y``) and implement :meth:`component_log_density`.
    """

    def _validate_target(self, y: Any) -> None:
        return None  # unsupervised: y is ignored, as in scikit-learn

    def component_log_density(self, model: pm.Model, inputs: dict) -> pt.TensorVariable:
        """``log weight_k + log p(x | component k)`` of each new row under one posterior draw.

        Parameters
        ----------
        model : pm.Model
            The fitted model.
        inputs : dict
            Each input container mapped to the symbolic new rows.

        Returns
        -------
        TensorVariable of shape (n_samples, n_components)
        """
        raise NotImplementedError(f"{type(self).__name__} must implement component_log_density.")

    def _predictive_outputs(self, model, inputs, uniform):
        joint = self.component_log_density(model, inputs)
        log_density = pt.logsumexp(joint, axis=-1)
        return [log_density, pt.exp(joint - log_density[..., None])]

    def predict_summary(self, X: Any) -> dict[str, np.ndarray]:
        """Log posterior predictive density and posterior mean responsibilities of each row.

        Parameters
        ----------
        X : array-like or DataFrame of shape (n_samples, n_features)

        Returns
        -------
        dict
            ``log_density`` of shape (n_samples,): the log of the density averaged over the
            posterior draws; ``proba`` of shape (n_samples, n_components).
        """
        inputs = self._validate_features(X, reset=False)

        def summarize(outputs: list[np.ndarray]) -> dict[str, np.ndarray]:
            log_density, responsibilities = outputs
            return {
                "log_density": log_mean_exp_over_draws(log_density),
                "proba": responsibilities.mean(axis=0),
            }

        return self.posterior_predictor().map_rows(inputs, summarize, width=self.n_components)

    def score_samples(self, X: Any) -> np.ndarray:
        """Log posterior predictive density of each row.

        Parameters
        ----------
        X : array-like or DataFrame of shape (n_samples, n_features)

        Returns
        -------
        ndarray of shape (n_samples,)
        """
        return self.predict_summary(X)["log_density"]

    def score(self, X: Any, y: Any = None) -> float:
        """Mean log posterior predictive density per row, as scikit-learn's mixtures report.

        Parameters
        ----------
        X : array-like or DataFrame of shape (n_samples, n_features)
        y : ignored

        Returns
        -------
        float
        """
        return float(self.score_samples(X).mean())

    def predict_proba(self, X: Any) -> np.ndarray:
        """Posterior mean probability that each row belongs to each component.

        Parameters
        ----------
        X : array-like or DataFrame of shape (n_samples, n_features)

        Returns
        -------
        ndarray of shape (n_samples, n_components)
        """
        return self.predict_summary(X)["proba"]

    def predict(self, X: Any) -> np.ndarray:
        """Most probable component of each row.

        Parameters
        ----------
        X : array-like or DataFrame of shape (n_samples, n_features)

        Returns
        -------
        ndarray of shape (n_samples,)
        """
        return np.argmax(self.predict_proba(X), axis=1)
