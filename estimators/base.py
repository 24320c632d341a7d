"""The base class of every Bayesian estimator: the scikit-learn contract and the template.

A model is one small class: subclass the base of its kind (:class:`~estimators.regression.BayesianRegressor`,
:class:`~estimators.classification.BayesianClassifier` or
:class:`~estimators.density.BayesianDensityEstimator`), store the hyper-parameters in
``__init__`` the scikit-learn way, and write :meth:`~BayesianEstimator.build_model`.
Validation, every engine, prediction over the posterior, scoring, saving and loading come
from here and from the kind's base, which owns what the kind predicts and how it is scored.
"""

from __future__ import annotations

import inspect
from abc import ABCMeta, abstractmethod
from collections.abc import Callable
from typing import Any, ClassVar

import numpy as np
import pandas as pd
import pymc as pm
import pytensor.tensor as pt
import xarray as xr
from sklearn.base import BaseEstimator
from sklearn.utils.validation import check_is_fitted

from estimators.fitted import FittedModel
from estimators.inference import fit_posterior, resolve_progressbar
from estimators.inference.progress import fit_starting
from estimators.likelihood_draws import conditional_likelihood
from estimators.log_likelihood import (
    TARGET,
    as_trace_array,
    check_not_conditioned_on_targets,
    compile_log_likelihood,
    map_log_likelihood,
    with_target,
)
from estimators.predictive import PosteriorPredictor, likelihood_of
from estimators.settings import INIT_PARAMETERS, PARAMETER_CONSTRAINTS, SETTING_NAMES, InferenceSettings, parameters_doc
from estimators.validation import check_feature_state, check_features, numeric_matrix

#: Probability of the central credible interval when none is given.
DEFAULT_INTERVAL_PROB = 0.94


def quantile_column(level: float) -> str:
    """The name of the prediction column of the quantile at ``level``: ``quantile_0.05``."""
    return f"quantile_{level:g}"


def draw_column(index: int) -> str:
    """The name of the prediction column of joint predictive draw ``index``: ``draw_0``."""
    return f"draw_{index}"


def with_draw_columns(frame: pd.DataFrame, draws: np.ndarray) -> pd.DataFrame:
    """``frame`` with one column per joint draw (``draws``: draws x rows), named by :func:`draw_column`."""
    columns = pd.DataFrame(draws.T, columns=[draw_column(j) for j in range(len(draws))], index=frame.index)
    return pd.concat([frame, columns], axis=1)


def feature_rows(X: Any, rows: slice | np.ndarray) -> Any:
    """Rows ``rows`` of features ``X`` (a DataFrame's by position), in the form given."""
    return X.iloc[rows] if isinstance(X, pd.DataFrame) else np.asarray(X)[rows]


def observed_target(idata: xr.DataTree) -> np.ndarray:
    """The training target a supervised model observed, kept in ``idata``'s ``observed_data``."""
    (observed,) = idata.observed_data.data_vars.values()
    return observed.values


def probability_frame(labels: np.ndarray, proba: np.ndarray) -> pd.DataFrame:
    """``prediction`` (the most probable label) and one ``proba_<label>`` column per label."""
    frame = pd.DataFrame({"prediction": labels[np.argmax(proba, axis=1)]})
    for column, label in enumerate(labels):
        frame[f"proba_{label}"] = proba[:, column]
    return frame


class BayesianEstimator(BaseEstimator, metaclass=ABCMeta):
    """Base class of the Bayesian estimators: scikit-learn API over a PyMC model.

    A model subclasses the base of its kind (``BayesianRegressor``, ``BayesianClassifier``,
    ``BayesianDensityEstimator``), which owns what the kind predicts and how it is scored.
    Subclasses store their hyper-parameters in ``__init__`` (keyword-only, no logic) and
    implement :meth:`build_model`. They take the inference settings below either by
    passing ``**inference_params`` on to ``super().__init__`` (every setting is then a
    parameter of the subclass), or by naming some of them, the scikit-learn way, and
    passing those on (the others keep their defaults and are not parameters).

    A model with inputs beyond ``X``, or that learns something from its training data
    before it is built, uses the second tier: :attr:`input_names`,
    :meth:`learn_from_features`, :meth:`model_inputs`, :attr:`fitted_state_attributes`
    and :meth:`minibatch_size`.

    Parameters
    ----------
    {inference_settings}

    Attributes
    ----------
    input_names : tuple of str, default=("X",)
        The data containers that new rows fill at prediction time: :meth:`build_model`
        gets one ``pm.Data`` container per name (and ``y``), and :meth:`model_inputs`
        returns one array per name.
    fitted_state_attributes : tuple of str
        Fitted attributes saved with the model (JSON-compatible values: numbers, strings,
        arrays of them) that, with the parameters and ``idata_``, rebuild the estimator.
    prediction_params : dict
        Set by the kind: the parameters of :meth:`predict_frame` and their defaults.
    all_columns_params : dict
        Set by the kind: values of ``prediction_params`` that turn on every column whose
        name is fixed (not the quantile columns, named by the levels asked for).
    optional_columns : tuple of str
        Set by the kind: the columns of :meth:`predict_frame` present only when asked for.
    target_type : str or None
        Set by the kind: what its targets are, for the plots that show them:
        ``"continuous"`` (numbers), ``"categorical"`` (class labels), or None (no target).
    required_packages : tuple of str
        Libraries beyond this package's own dependencies that the estimator needs to load
        and predict (e.g. ``("bambi",)``); a saved model pins them among its requirements.
    """

    _parameter_constraints: dict = dict(PARAMETER_CONSTRAINTS)
    input_names: tuple[str, ...] = ("X",)
    fitted_state_attributes: tuple[str, ...] = ("n_features_in_", "feature_names_in_")
    prediction_params: ClassVar[dict[str, Any]]
    all_columns_params: ClassVar[dict[str, Any]]
    optional_columns: ClassVar[tuple[str, ...]]
    target_type: ClassVar[str | None]
    required_packages: tuple[str, ...] = ()

    def __init__(self, **inference_params):
        if unknown := sorted(set(inference_params) - set(SETTING_NAMES)):
            raise TypeError(f"{type(self).__name__}.__init__() got unexpected keyword argument(s) {unknown}")
        defaults = InferenceSettings()
        for name in SETTING_NAMES:
            setattr(self, name, inference_params.get(name, getattr(defaults, name)))

    __init__.__signature__ = inspect.Signature(
        [inspect.Parameter("self", inspect.Parameter.POSITIONAL_OR_KEYWORD), *INIT_PARAMETERS]
    )

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
            if parameter.name not in names
            and parameter.name != "self"
            and parameter.kind is inspect.Parameter.KEYWORD_ONLY
        ]
        init.__signature__ = signature.replace(parameters=[*own, *inherited])

    # -- the model ---------------------------------------------------------------------

    @abstractmethod
    def build_model(self, X: pt.TensorVariable, y: pt.TensorVariable) -> None:
        """Write the PyMC model; called inside an active ``pm.Model`` context.

        Create the priors and exactly one observed variable, the likelihood, with
        ``observed=y``. ``X`` and ``y`` are ``pm.Data`` containers; at prediction time
        ``X`` is replaced by the new rows, so any statistic of the training data that the
        model uses (e.g. for standardising) must be computed from ``X.get_value()``, not
        symbolically. Give the likelihood a shape that follows ``X`` (e.g. its mean).

        A model fitted on minibatches (:meth:`minibatch_size`) declares its likelihood with
        ``total_size=len(X.get_value())`` (an int), which scales a minibatch's
        log-likelihood up to the whole training set.

        Parameters
        ----------
        X : TensorVariable
            The features; a model with more inputs takes one argument per entry of
            :attr:`input_names`.
        y : TensorVariable
            The targets: floats for regressors, class indices ``0..K-1`` for classifiers.
        """

    def pymc_model(self) -> pm.Model:
        """The PyMC model over the training data, as fitted.

        Returns
        -------
        pm.Model
            The model; built once per fitted estimator (after loading, from the training
            data kept in ``idata_``).
        """
        check_is_fitted(self)
        return self._fitted_model.model

    def _attach_fitted_model(self, model: pm.Model | None = None) -> None:
        """Give the estimator its :class:`FittedModel` (at fit, load and unpickling).

        Made before any prediction: predicting then never adds an attribute, and leaves
        the estimator's ``__dict__`` as fitting left it (as scikit-learn requires).
        """
        self._fitted_model = FittedModel(self._model_from_trace, model)

    def _model_from_trace(self) -> pm.Model:
        """The model rebuilt from the training data kept in ``idata_``."""
        return self._build_pymc_model(*self._training_data())

    def _training_data(self) -> tuple[dict[str, np.ndarray], np.ndarray | None]:
        """The training inputs and target (None for a kind without one) kept in ``idata_``."""
        inputs = {name: self.idata_.constant_data[name].values for name in self.input_names}
        return inputs, self._training_target()

    def model_coords(self) -> dict[str, list]:
        """Named coordinates that the model's variables may take as ``dims``.

        Plots and ``summary.csv`` then label those variables' entries by name. By default
        ``"feature"``: the training columns' names (``x0``, ``x1``, ... for an array, as
        scikit-learn names them); a kind may add its own (a classifier's ``"class"``: its
        labels). Override to add more, e.g. ``{**super().model_coords(), "group": ...}``.

        Returns
        -------
        dict
            Coordinate name to its labels.
        """
        names = getattr(self, "feature_names_in_", None)
        if names is None:
            names = [f"x{i}" for i in range(self.n_features_in_)]
        return {"feature": [str(name) for name in names]}

    def _build_pymc_model(self, inputs: dict[str, np.ndarray], y: np.ndarray | None) -> pm.Model:
        with pm.Model(coords=self.model_coords()) as model:
            containers = {name: pm.Data(name, value) for name, value in inputs.items()}
            if y is not None:
                containers[TARGET] = pm.Data(TARGET, y)
            self.build_model(**containers)
        likelihood_of(model)
        return model

    # -- the template's second tier: inputs, learned state, minibatches --------------

    def learn_from_features(self, X: Any) -> dict[str, Any]:
        """Fitted attributes to learn from the training features before the model is built.

        ``fit`` sets them (e.g. the groups seen, inducing points); :meth:`model_inputs`
        and :meth:`build_model` may then use them. Name them in
        :attr:`fitted_state_attributes` so that they are saved. By default, none.

        Parameters
        ----------
        X : DataFrame or ndarray
            The training features, checked for shape and columns, values not yet converted.

        Returns
        -------
        dict
            Attribute name (ending in ``_``) to value.
        """
        return {}

    def model_inputs(self, X: Any) -> dict[str, np.ndarray]:
        """The model's input arrays, one per entry of :attr:`input_names`, from features.

        Called at fit (after :meth:`learn_from_features`) and at every prediction, with
        features checked for shape and put in the training column order. Raise a
        ``ValueError`` or ``TypeError`` naming the column and row of a bad value. By
        default, ``X`` as a finite float matrix (:func:`~estimators.validation.numeric_matrix`).

        Parameters
        ----------
        X : DataFrame or ndarray
            The features.

        Returns
        -------
        dict
            Container name to array, with one row per row of ``X``.
        """
        return {"X": numeric_matrix(X, getattr(self, "feature_names_in_", None))}

    def minibatch_size(self) -> int | None:
        """Rows per ADVI step, for fitting on random minibatches; None (the default) for all rows.

        A model that returns a number (e.g. its ``batch_size`` hyper-parameter) declares its
        likelihood with ``total_size`` (see :meth:`build_model`); NUTS refuses minibatches.
        """
        return None

    def training_data_groups(self, X: Any) -> dict[str, xr.Dataset]:
        """Groups that ``fit`` adds to the trace: training data beyond the model inputs.

        For an estimator that a load rebuilds from more than its model inputs (a formula
        model, from the training columns themselves). By default, none.

        Parameters
        ----------
        X : DataFrame or ndarray
            The training features, checked for shape and columns.

        Returns
        -------
        dict
            Group name to dataset (JSON-free: what NetCDF stores).
        """
        return {}

    def _inputs(self, X: Any) -> dict[str, np.ndarray]:
        """The model inputs of new rows, for a fitted estimator."""
        return self.model_inputs(check_features(self, X, reset=False))

    # -- the kind's hooks: its target ---------------------------------------------------

    @abstractmethod
    def _target(self, y: Any) -> tuple[np.ndarray | None, dict[str, Any]]:
        """The training target as the model observes it (None for a kind without one), and
        fitted attributes learned from it."""

    @abstractmethod
    def _observed_target(self, y: Any) -> np.ndarray | None:
        """New targets as the model observes them (None for a kind without one)."""

    @abstractmethod
    def _training_target(self) -> np.ndarray | None:
        """The training target kept in ``idata_`` (None for a kind without one)."""

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
        X = check_features(self, X, reset=True)
        target, learned = self._target(y)
        if target is not None and len(target) != X.shape[0]:
            raise ValueError(f"X has {X.shape[0]} rows but y has {len(target)}; they must match.")
        learned |= self.learn_from_features(X)
        for name, value in learned.items():
            setattr(self, name, value)
        inputs = self.model_inputs(X)
        seed = self.random_seed if self.random_seed is not None else int(np.random.SeedSequence().generate_state(1)[0])
        model = self._build_pymc_model(inputs, target)
        self._attach_fitted_model(model)
        row_data = list(inputs) if target is None else [*inputs, TARGET]
        settings = InferenceSettings.of(self, random_seed=seed, progressbar=resolve_progressbar(self.progressbar))
        fit_starting(self, model, settings)
        idata = fit_posterior(model, settings, row_data, batch_size=self.minibatch_size())
        _keep_training_inputs(idata, inputs)
        for name, group in self.training_data_groups(X).items():
            idata[name] = group
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

    @abstractmethod
    def predict_frame(self, X: Any, **params: Any) -> pd.DataFrame:
        """The posterior predictions of ``X`` as named columns, as the kind names them.

        Parameters
        ----------
        X : array-like or DataFrame of shape (n_samples, n_features)
        **params
            Any of :attr:`prediction_params`.

        Returns
        -------
        DataFrame
            ``prediction`` first, then the kind's summaries.
        """

    @abstractmethod
    def _compile_predictor(self, model: pm.Model, posterior: xr.Dataset, seed: int) -> PosteriorPredictor:
        """The kind's prediction function at new inputs, vectorised over the posterior draws."""

    def _outputs_predictor(
        self, model: pm.Model, posterior: xr.Dataset, seed: int, outputs: Callable[[dict], list]
    ) -> PosteriorPredictor:
        """The predictor of ``outputs(inputs)`` (per-draw outputs at new inputs) over all draws."""
        return PosteriorPredictor(
            model, posterior, list(self.input_names), lambda inputs, uniform: outputs(inputs), seed=seed
        )

    def limit_predictor_memory(self, max_bytes: int | None) -> None:
        """Refuse to build predictors whose arrays precomputed per posterior draw take more than ``max_bytes``.

        Most models precompute nothing; a Gaussian process keeps a factor of its training
        covariance per draw (``n_draws * n_train**2`` floats). A predictor over the limit
        raises :class:`~estimators.predictive.PredictorMemoryError` (a ``ValueError``)
        before allocating. ``None`` (the default after ``fit``) sets no limit.
        """
        check_is_fitted(self)
        self._fitted_model.max_precomputed_bytes = max_bytes

    def posterior_predictor(self) -> PosteriorPredictor:
        """The compiled prediction function over all posterior draws, built once and reused."""
        check_is_fitted(self)
        return self._cached_predictor("predictor", self._compile_predictor)

    def _cached_predictor(
        self, key: str, compile_predictor: Callable[[pm.Model, xr.Dataset, int], PosteriorPredictor]
    ) -> PosteriorPredictor:
        """A predictor made by ``compile_predictor(model, posterior, seed)`` on first use and
        kept with the fitted state."""
        return self._fitted_model.predictor(
            key,
            lambda model: compile_predictor(
                model, self.idata_["posterior"].to_dataset(), int(self.idata_.posterior.attrs["pmlearn_seed"])
            ),
        )

    # -- the kind's hooks: what the MLflow flavor logs ---------------------------------

    @abstractmethod
    def proper_scores(self, X: Any, y: Any) -> dict[str, float]:
        """Proper scores of the posterior predictive on held-out rows, by name (see the kind's)."""

    @abstractmethod
    def predictive_check(
        self, X: Any, y: Any, *, shown_rows: np.ndarray, n_shown_draws: int, coverage_prob: float
    ) -> dict[str, Any]:
        """The posterior predictive against observed rows (the training data), for a fit's metrics and plot.

        Parameters
        ----------
        X : array-like or DataFrame of shape (n_samples, n_features)
        y : array-like of shape (n_samples,)
            The targets (ignored by a kind without one).
        shown_rows : ndarray of int
            Sorted rows whose targets and predictive draws are returned for a plot.
        n_shown_draws : int
            Predictive draws returned per shown row.
        coverage_prob : float
            Probability of the central interval whose coverage is returned (numeric targets).

        Returns
        -------
        dict
            ``score`` (the estimator's ``score``), and as the kind has them ``coverage``,
            ``observed`` (the shown rows' targets) and ``draws`` (draws x shown rows).
        """

    # -- log-likelihood (computed by estimators.log_likelihood) -------------------------

    def _observations(self, X: Any, y: Any) -> dict[str, np.ndarray]:
        """The model inputs of rows ``X`` and, for a kind with a target, ``y`` as the model observes it."""
        inputs = self._inputs(X)
        target = self._observed_target(y)
        return inputs if target is None else with_target(inputs, target)

    def _compile_log_likelihood(
        self, model: pm.Model, posterior: xr.Dataset, seed: int, derive: Callable = pm.logp
    ) -> PosteriorPredictor:
        return compile_log_likelihood(
            model, posterior, seed, self.input_names, self.predictive_distribution, derive=derive
        )

    def _log_likelihood_predictor(self) -> tuple[PosteriorPredictor, int]:
        """The compiled function whose first output is the log-likelihood of rows (draws x rows),
        and the elements per row and draw of its largest output (for :meth:`PosteriorPredictor.map_rows`).

        By default the log density of :meth:`predictive_distribution` at the rows' targets.
        """
        return self._cached_predictor("log_likelihood", self._compile_log_likelihood), 1

    def _map_log_likelihood(
        self, observations: dict[str, np.ndarray], summarize: Callable[[np.ndarray], np.ndarray]
    ) -> np.ndarray:
        """``summarize`` of each row chunk's log-likelihood (draws x rows), concatenated over the rows."""
        predictor, width = self._log_likelihood_predictor()
        return map_log_likelihood(predictor, observations, summarize, width=width)

    def pointwise_log_likelihood(self, X: Any, y: Any = None) -> np.ndarray:
        """Log-likelihood of each row under each posterior draw: ``log p(y_i | x_i, draw s)``.

        Computed by one compiled function over all draws, in row chunks, as predictions are.

        Parameters
        ----------
        X : array-like or DataFrame of shape (n_samples, n_features)
        y : array-like of shape (n_samples,)
            The targets (class labels for a classifier); ignored by density models, whose
            rows ``X`` are what they observe.

        Returns
        -------
        ndarray of shape (n_draws, n_samples)
            Draws in the order of ``idata_.posterior`` stacked over ``(chain, draw)``.
        """
        return self._map_log_likelihood(self._observations(X, y), np.transpose).T

    def training_log_likelihood(self) -> xr.DataArray:
        """Pointwise log-likelihood of the training rows kept in ``idata_``, for PSIS-LOO.

        Returns
        -------
        DataArray of shape (n_chains, n_draws, n_rows)
            Dimensions ``chain``, ``draw`` (those of ``idata_.posterior``) and ``row``;
            named after the model's likelihood.

        Raises
        ------
        ValueError
            Where :meth:`predictive_distribution` conditions on the training targets (a
            marginal Gaussian process): its value at a training row is not that row's
            likelihood given the draw, so leave-one-out estimates from it would be wrong.
        """
        check_is_fitted(self)
        inputs, target = self._training_data()
        model = self.pymc_model()
        if target is not None:
            check_not_conditioned_on_targets(model, self.input_names, self.predictive_distribution, type(self).__name__)
        observations = inputs if target is None else {**inputs, TARGET: target}
        values = self._map_log_likelihood(observations, np.transpose).T
        return as_trace_array(values, self.idata_.posterior, likelihood_of(model).name)

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

    def saved_params(self) -> dict[str, Any]:
        """The hyper-parameters as a saved model keeps them: ``get_params(deep=False)``.

        A class whose parameters take objects that have a data form (e.g. bambi ``Prior``
        objects) overrides it to return that form; ``__init__`` must accept it back.
        """
        return self.get_params(deep=False)

    def get_fitted_state(self) -> dict[str, Any]:
        """JSON-compatible fitted attributes that, with the parameters and ``idata_``, rebuild it.

        Returns
        -------
        dict
            Attribute name to value (arrays as lists); ``None`` for absent attributes.
        """
        check_is_fitted(self)
        state = {}
        for name in self.fitted_state_attributes:
            value = getattr(self, name, None)
            state[name] = value.tolist() if isinstance(value, np.ndarray) else value
        return state

    @classmethod
    def from_fitted_state(cls, params: dict[str, Any], state: dict[str, Any], idata: xr.DataTree) -> BayesianEstimator:
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
        check_feature_state(state)
        for name in cls.fitted_state_attributes:
            value = state.get(name)
            if value is None:
                continue
            if isinstance(value, list):
                value = np.asarray(value, dtype=object if name == "feature_names_in_" else None)
            setattr(estimator, name, value)
        estimator.idata_ = idata
        estimator._attach_fitted_model()
        return estimator

    def __getstate__(self) -> dict[str, Any]:
        """Pickle without the compiled model and function; they are rebuilt on demand."""
        state = self.__dict__.copy()
        state.pop("_fitted_model", None)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        super().__setstate__(state)
        if "idata_" in state:
            self._attach_fitted_model()

    def __sklearn_is_fitted__(self) -> bool:
        """Fitted once there is a posterior: a fit that failed part-way (after validation
        set ``n_features_in_``, ...) must still raise ``NotFittedError`` on predict."""
        return "idata_" in self.__dict__

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.non_deterministic = self.random_seed is None
        return tags


#: The Parameters section lists the settings from their one declaration.
BayesianEstimator.__doc__ = BayesianEstimator.__doc__.replace("    {inference_settings}", parameters_doc())


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


#: The names the kind bases had as mixins (subclassed with ``BayesianEstimator``), kept for
#: users' code: ``class M(BayesianRegressorMixin, BayesianEstimator)`` is a ``BayesianRegressor``.
_KIND_ALIASES = {
    "BayesianRegressorMixin": ("estimators.regression", "BayesianRegressor"),
    "BayesianClassifierMixin": ("estimators.classification", "BayesianClassifier"),
    "BayesianDensityMixin": ("estimators.density", "BayesianDensityEstimator"),
}


def __getattr__(name: str) -> Any:
    """The kinds' old mixin names (:data:`_KIND_ALIASES`), imported from the kind's module on first use."""
    if name not in _KIND_ALIASES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib

    module, kind = _KIND_ALIASES[name]
    return getattr(importlib.import_module(module), kind)
