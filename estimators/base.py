"""The base class of every Bayesian estimator, and the regressor and classifier mixins.

A model is one small class: subclass a mixin and :class:`BayesianEstimator`, store the
hyper-parameters in ``__init__`` the scikit-learn way, and write :meth:`build_model`.
Validation, ADVI or NUTS, prediction over the posterior, scoring, saving and loading come
from here.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import pandas as pd
import pymc as pm
import pytensor.tensor as pt
import xarray as xr
from pytensor.graph.traversal import ancestors, apply_ancestors
from pytensor.tensor.random.op import RandomVariable
from pytensor.tensor.shape import Shape, Shape_i
from scipy.special import logsumexp
from sklearn.base import BaseEstimator, ClassifierMixin, DensityMixin, RegressorMixin
from sklearn.utils.validation import check_is_fitted, column_or_1d

from estimators.fitted import FittedModel
from estimators.inference import fit_posterior, resolve_progressbar
from estimators.inference.progress import fit_starting
from estimators.likelihood_draws import (
    conditional_likelihood,
    derive_given_draw,
    likelihood_draw_predictor,
    predictive_mean_predictor,
)
from estimators.predictive import PosteriorPredictor, likelihood_of, select_rows
from estimators.settings import INIT_PARAMETERS, PARAMETER_CONSTRAINTS, SETTING_NAMES, InferenceSettings, parameters_doc
from estimators.validation import (
    check_draw_count,
    check_feature_state,
    check_features,
    check_finite_predictions,
    check_flag,
    check_probability,
    class_labels,
    numeric_matrix,
    quantile_levels,
    regression_target,
)

#: Name of the data container that holds the training targets.
TARGET = "y"
#: Probability of the central credible interval when none is given.
DEFAULT_INTERVAL_PROB = 0.94


def quantile_column(level: float) -> str:
    """The name of the prediction column of the quantile at ``level``: ``quantile_0.05``."""
    return f"quantile_{level:g}"


def draw_column(index: int) -> str:
    """The name of the prediction column of joint predictive draw ``index``: ``draw_0``."""
    return f"draw_{index}"


def _with_draw_columns(frame: pd.DataFrame, draws: np.ndarray) -> pd.DataFrame:
    """``frame`` with one column per joint draw (``draws``: draws x rows), named by :func:`draw_column`."""
    columns = pd.DataFrame(draws.T, columns=[draw_column(j) for j in range(len(draws))], index=frame.index)
    return pd.concat([frame, columns], axis=1)


class BayesianEstimator(BaseEstimator):
    """Base class of the Bayesian estimators: scikit-learn API over a PyMC model.

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
            Set by the mixin: the parameters of :meth:`predict_frame` and their defaults.
        all_columns_params : dict
            Set by the mixin: values of ``prediction_params`` that turn on every column whose
            name is fixed (not the quantile columns, named by the levels asked for).
        optional_columns : tuple of str
            Set by the mixin: the columns of :meth:`predict_frame` present only when asked for.
        required_packages : tuple of str
            Libraries beyond this package's own dependencies that the estimator needs to load
            and predict (e.g. ``("bambi",)``); a saved model pins them among its requirements.
    """

    _parameter_constraints: dict = dict(PARAMETER_CONSTRAINTS)
    input_names: tuple[str, ...] = ("X",)
    fitted_state_attributes: tuple[str, ...] = ("n_features_in_", "feature_names_in_")
    prediction_params: dict[str, Any] = {}
    all_columns_params: dict[str, Any] = {}
    optional_columns: tuple[str, ...] = ()
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
        """The training inputs and target (None for density models) kept in ``idata_``."""
        inputs = {name: self.idata_.constant_data[name].values for name in self.input_names}
        target = None
        if self.__sklearn_tags__().target_tags.required:
            (observed,) = self.idata_.observed_data.data_vars.values()
            target = observed.values
        return inputs, target

    def model_coords(self) -> dict[str, list]:
        """Named coordinates that the model's variables may take as ``dims``.

        Plots and ``summary.csv`` then label those variables' entries by name. By default
        ``"feature"``: the training columns' names (``x0``, ``x1``, ... for an array, as
        scikit-learn names them), and for a classifier ``"class"``: its labels. Override to
        add more, e.g. ``{**super().model_coords(), "group": ...}``.

        Returns
        -------
        dict
            Coordinate name to its labels.
        """
        names = getattr(self, "feature_names_in_", None)
        if names is None:
            names = [f"x{i}" for i in range(self.n_features_in_)]
        coords = {"feature": [str(name) for name in names]}
        if hasattr(self, "classes_"):
            coords["class"] = self.classes_.tolist()
        return coords

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

    def _target(self, y: Any) -> tuple[np.ndarray | None, dict[str, Any]]:
        """The training target as the model observes it, and fitted attributes learned from it."""
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
        row_data = [*inputs, TARGET] if target is not None else list(inputs)
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

    def predict_frame(self, X: Any, **params: Any) -> pd.DataFrame:
        """The posterior predictions of ``X`` as named columns (set by the mixin).

        Parameters
        ----------
        X : array-like or DataFrame of shape (n_samples, n_features)
        **params
            Any of :attr:`prediction_params`.

        Returns
        -------
        DataFrame
            ``prediction`` first, then the kind's summaries (see the mixins).
        """
        raise NotImplementedError

    def _predictive_outputs(self, model: pm.Model, inputs: dict, uniform: pt.TensorVariable) -> list:
        """Per-draw outputs at new inputs; set by the classifier or density mixin."""
        raise NotImplementedError

    def _compile_predictor(self, model: pm.Model, posterior: xr.Dataset, seed: int) -> PosteriorPredictor:
        """The predictor of :meth:`_predictive_outputs`, vectorised over the posterior draws."""
        return PosteriorPredictor(
            model,
            posterior,
            list(self.input_names),
            lambda inputs, uniform: self._predictive_outputs(model, inputs, uniform),
            seed=seed,
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

    # -- log-likelihood ----------------------------------------------------------------

    def _observed_target(self, y: Any) -> np.ndarray:
        """New targets as the model observes them; set by the regressor and classifier mixins."""
        raise NotImplementedError

    def _observations(self, X: Any, y: Any) -> dict[str, np.ndarray]:
        """The model inputs of rows ``X`` and, for a model with a target, ``y`` as it observes it."""
        inputs = self._inputs(X)
        if not self.__sklearn_tags__().target_tags.required:
            return inputs  # density models: X is what they observe, y is ignored
        target = self._observed_target(y)
        n_rows = len(next(iter(inputs.values())))
        if len(target) != n_rows:
            raise ValueError(f"X has {n_rows} rows but y has {len(target)}; they must match.")
        return {**inputs, TARGET: target}

    def _compile_log_likelihood(
        self, model: pm.Model, posterior: xr.Dataset, seed: int, derive: Callable = pm.logp
    ) -> PosteriorPredictor:
        """The log density (or, with ``derive=pm.logcdf``, the log CDF) of
        :meth:`predictive_distribution` at new targets, over all draws."""

        def log_likelihood(new, uniform):
            features = {container: value for container, value in new.items() if container is not model[TARGET]}
            distribution = self.predictive_distribution(model, features)
            return [derive_given_draw(derive, model, distribution, new[model[TARGET]])]

        return PosteriorPredictor(model, posterior, [*self.input_names, TARGET], log_likelihood, seed=seed)

    def _log_likelihood_predictor(self) -> tuple[PosteriorPredictor, int]:
        """The compiled function whose first output is the log-likelihood of rows (draws x rows),
        and the elements per row and draw of its largest output (for :meth:`PosteriorPredictor.map_rows`)."""
        return self._cached_predictor("log_likelihood", self._compile_log_likelihood), 1

    def _map_log_likelihood(
        self, observations: dict[str, np.ndarray], summarize: Callable[[np.ndarray], np.ndarray]
    ) -> np.ndarray:
        """``summarize`` of each row chunk's log-likelihood (draws x rows), concatenated over the rows."""
        predictor, width = self._log_likelihood_predictor()
        return predictor.map_rows(observations, lambda outputs: {"value": summarize(outputs[0])}, width=width)["value"]

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
            symbolic = {model[name]: model[name].type() for name in self.input_names}
            distribution = self.predictive_distribution(model, symbolic)
            # Only the targets' values count: a resized mixture takes its number of components
            # from the shape of its training-sized components, which the targets' shape sets.
            shapes = [
                node.outputs[0] for node in apply_ancestors([distribution]) if isinstance(node.op, Shape | Shape_i)
            ]
            if model[TARGET] in ancestors([distribution], blockers=shapes):
                raise ValueError(
                    f"{type(self).__name__}'s predictive distribution conditions on the training targets, "
                    "so it has no pointwise log-likelihood of its training rows; score it on held-out rows "
                    "with pointwise_log_likelihood(X, y) instead."
                )
        observations = inputs if target is None else {**inputs, TARGET: target}
        values = self._map_log_likelihood(observations, np.transpose).T
        posterior = self.idata_.posterior
        return xr.DataArray(
            values.reshape(posterior.sizes["chain"], posterior.sizes["draw"], -1),
            dims=("chain", "draw", "row"),
            coords={"chain": posterior["chain"].values, "draw": posterior["draw"].values},
            name=likelihood_of(model).name,
        )

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
BayesianEstimator.__doc__ = BayesianEstimator.__doc__.replace("{inference_settings}", parameters_doc())


class BayesianRegressorMixin(RegressorMixin):
    """Regression over the posterior predictive: mean, standard deviation, intervals.

    The predictive distribution at each row is represented by one draw per posterior
    draw (the likelihood's inverse CDF at a fixed stratified uniform), so a row's
    prediction does not depend on the other rows it is predicted with.

    With :attr:`closed_form_mean` True, the mean draws nothing where PyMC knows the
    likelihood's mean in closed form (Normal, Poisson, Binomial, Gamma, ...): it is that
    mean averaged over the posterior draws, exact given them. It is off by default, so
    that a model saved by an earlier release predicts exactly the mean it predicted then
    (the draws' mean, which differs by Monte Carlo error); formula models turn it on.

    :meth:`predict_frame` gives ``prediction`` (the posterior predictive mean), plus
    ``std`` with ``return_std=True``, ``lower``, ``upper`` with ``interval_prob=p``,
    one column per level with ``quantiles=[...]``, named by :func:`quantile_column`
    (``quantile_0.05``, ``quantile_0.5``, ...), and ``draw_0`` ... ``draw_{k-1}`` with
    ``draws=k``: joint predictive draws (:meth:`joint_predictive_draws`).
    """

    prediction_params = {"return_std": False, "interval_prob": None, "quantiles": [], "draws": 0}
    all_columns_params = {"return_std": True, "interval_prob": DEFAULT_INTERVAL_PROB}
    optional_columns = ("std", "lower", "upper")
    #: Predict the mean from the likelihood's closed-form mean, drawing nothing (see above).
    closed_form_mean = False

    def _target(self, y: Any) -> tuple[np.ndarray, dict[str, Any]]:
        return regression_target(self, y), {}

    def _observed_target(self, y: Any) -> np.ndarray:
        return regression_target(self, y)

    def _compile_predictor(self, model, posterior, seed, build=likelihood_draw_predictor):
        """The predictor ``build`` makes of :meth:`predictive_distribution` (by default its draws)."""
        return build(
            model,
            posterior,
            list(self.input_names),
            lambda inputs: self.predictive_distribution(model, inputs),
            seed=seed,
        )

    def _exact_means(self, inputs: dict[str, np.ndarray]) -> np.ndarray | None:
        """The posterior predictive mean of each row from the likelihood's mean in closed form
        (:func:`~estimators.likelihood_draws.predictive_mean_predictor`); None where PyMC has none
        or :attr:`closed_form_mean` is off."""
        if not self.closed_form_mean:
            return None
        predictor = self._cached_predictor(
            "mean",
            lambda model, posterior, seed: self._compile_predictor(model, posterior, seed, predictive_mean_predictor),
        )
        if predictor is None:
            return None
        summary = predictor.map_rows(inputs, lambda outputs: {"mean": outputs[0].mean(axis=0)})
        check_finite_predictions(summary, inputs)
        return summary["mean"]

    def sample_posterior_predictive(self, X: Any) -> np.ndarray:
        """One posterior predictive draw per posterior draw and row.

        Parameters
        ----------
        X : array-like or DataFrame of shape (n_samples, n_features)

        Returns
        -------
        ndarray of shape (n_draws, n_samples)
        """
        inputs = self._inputs(X)
        (samples,) = self.posterior_predictor()(inputs)
        return samples

    def pointwise_log_cdf(self, X: Any, y: Any) -> np.ndarray:
        """Log CDF of each row's target under each posterior draw: ``log P(Y_i <= y_i | x_i, draw s)``.

        Parameters
        ----------
        X : array-like or DataFrame of shape (n_samples, n_features)
        y : array-like of shape (n_samples,)

        Returns
        -------
        ndarray of shape (n_draws, n_samples)
        """
        predictor = self._cached_predictor(
            "log_cdf", lambda model, posterior, seed: self._compile_log_likelihood(model, posterior, seed, pm.logcdf)
        )
        return predictor.map_rows(self._observations(X, y), lambda outputs: {"value": outputs[0].T})["value"].T

    def likelihood_parameters(self, X: Any) -> tuple[str, list[np.ndarray]] | None:
        """The predictive distribution's name and parameters at each posterior draw and row.

        Parameters
        ----------
        X : array-like or DataFrame of shape (n_samples, n_features)

        Returns
        -------
        tuple or None
            The name PyMC gives the distribution (``"normal"``, ``"studentt"``, ...) and its
            parameters in PyMC's order, each of shape (n_draws, n_samples); None where the
            predictive distribution is not a plain PyMC distribution (a mixture, a censored
            or custom one).
        """
        model = self.pymc_model()
        probe = self.predictive_distribution(model, {model[name]: model[name].type() for name in self.input_names})
        if not isinstance(probe.owner.op, RandomVariable):
            return None

        def compile_parameters(model, posterior, seed):
            def parameters(inputs, uniform):
                distribution = self.predictive_distribution(model, inputs)
                params = distribution.owner.op.dist_params(distribution.owner)
                return [pt.broadcast_to(param, distribution.shape) for param in params]

            return PosteriorPredictor(model, posterior, list(self.input_names), parameters, seed=seed)

        predictor = self._cached_predictor("likelihood_parameters", compile_parameters)
        return probe.owner.op.name, predictor(self._inputs(X))

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
        return self._map_log_likelihood(self._observations(X, y), log_mean_exp_over_draws)

    def predict_summary(
        self, X: Any, *, interval_prob: float | None = None, quantiles: Sequence[float] = ()
    ) -> dict[str, np.ndarray]:
        """Posterior predictive mean, standard deviation and (optionally) interval and quantiles.

        Parameters
        ----------
        X : array-like or DataFrame of shape (n_samples, n_features)
        interval_prob : float, optional
            Probability mass of the central credible interval, in (0, 1).
        quantiles : sequence of float, optional
            Levels of predictive quantiles, each in (0, 1).

        Returns
        -------
        dict
            ``mean`` and ``std`` of shape (n_samples,); ``lower`` and ``upper`` when
            ``interval_prob`` is given; ``quantiles`` of shape (n_samples, n_levels) when
            levels are. Computed in row chunks, so memory stays bounded.
        """
        if interval_prob is not None:
            check_probability(interval_prob)
        levels = quantile_levels(quantiles)
        inputs = self._inputs(X)

        def summarize(outputs: list[np.ndarray]) -> dict[str, np.ndarray]:
            (samples,) = outputs
            summary = {"mean": samples.mean(axis=0), "std": samples.std(axis=0)}
            if interval_prob is not None:
                tail = (1.0 - interval_prob) / 2.0
                summary["lower"], summary["upper"] = np.quantile(samples, [tail, 1.0 - tail], axis=0)
            if levels:
                summary["quantiles"] = np.quantile(samples, levels, axis=0).T
            return summary

        summary = self.posterior_predictor().map_rows(inputs, summarize)
        check_finite_predictions(summary, inputs)
        if (means := self._exact_means(inputs)) is not None:
            summary["mean"] = means
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
        if not return_std and (means := self._exact_means(self._inputs(X))) is not None:
            return means  # no predictive draws needed
        summary = self.predict_summary(X)
        return (summary["mean"], summary["std"]) if return_std else summary["mean"]

    def predict_frame(
        self,
        X: Any,
        *,
        return_std: bool = False,
        interval_prob: float | None = None,
        quantiles: Sequence[float] = (),
        draws: int = 0,
    ) -> pd.DataFrame:
        check_flag(return_std, "return_std")
        joint = self.joint_predictive_draws(X, draws) if draws != 0 else None
        summary = self.predict_summary(X, interval_prob=interval_prob, quantiles=quantiles)
        frame = pd.DataFrame({"prediction": summary["mean"]})
        if return_std:
            frame["std"] = summary["std"]
        if interval_prob is not None:
            frame["lower"] = summary["lower"]
            frame["upper"] = summary["upper"]
        for column, level in enumerate(quantiles):  # levels checked by predict_summary
            frame[quantile_column(level)] = summary["quantiles"][:, column]
        return frame if joint is None else _with_draw_columns(frame, joint)

    def joint_predictive_draws(self, X: Any, n_draws: int) -> np.ndarray:
        """Joint posterior predictive draws of the rows: sums over rows are draws of the total.

        Draw ``j`` of every row comes from the same posterior draw (the first ``n_draws`` of
        a shuffle seeded by the fit's seed), and each row's noise is drawn independently of
        the other rows'. The same rows give the same draws at every call (a row's draws
        depend on its position among the rows, not on the rows after it).

        Parameters
        ----------
        X : array-like or DataFrame of shape (n_samples, n_features)
        n_draws : int
            How many joint draws, from 1 to :attr:`n_posterior_draws_`.

        Returns
        -------
        ndarray of shape (n_draws, n_samples)

        Raises
        ------
        ValueError
            For ``n_draws`` out of range, or a model that gives no joint draws (``draws``
            is not among its :attr:`prediction_params`: a Gaussian process, whose
            predictive distribution treats each row alone).
        """
        check_draw_count(n_draws, self.n_posterior_draws_)
        if "draws" not in self.prediction_params:
            raise ValueError(
                f"{type(self).__name__} gives no joint draws: its predictive distribution is each row's alone "
                "(rows are not independent given a posterior draw), so sums over rows would be too narrow."
            )
        inputs = self._inputs(X)
        return self.posterior_predictor().joint_draws(inputs, n_draws)

    def predict_quantiles(self, X: Any, quantiles: Sequence[float]) -> np.ndarray:
        """Posterior predictive quantiles of each row.

        Parameters
        ----------
        X : array-like or DataFrame of shape (n_samples, n_features)
        quantiles : sequence of float
            Levels, each strictly between 0 and 1, e.g. ``[0.05, 0.5, 0.95]``.

        Returns
        -------
        ndarray of shape (n_samples, n_levels)
            Column ``j`` is the quantile at ``quantiles[j]``.
        """
        if not quantile_levels(quantiles):
            raise ValueError("quantiles is empty; give at least one level, e.g. [0.05, 0.5, 0.95].")
        return self.predict_summary(X, quantiles=quantiles)["quantiles"]

    def predict_interval(self, X: Any, prob: float = DEFAULT_INTERVAL_PROB) -> np.ndarray:
        """Central credible interval of the posterior predictive.

        Parameters
        ----------
        X : array-like or DataFrame of shape (n_samples, n_features)
        prob : float, default=0.94
            (:data:`DEFAULT_INTERVAL_PROB`)
            Probability mass inside the interval, in (0, 1).

        Returns
        -------
        ndarray of shape (n_samples, 2)
            Lower and upper bounds.
        """
        summary = self.predict_summary(X, interval_prob=prob)
        return np.column_stack([summary["lower"], summary["upper"]])


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


def _probability_frame(labels: np.ndarray, proba: np.ndarray) -> pd.DataFrame:
    """``prediction`` (the most probable label) and one ``proba_<label>`` column per label."""
    frame = pd.DataFrame({"prediction": labels[np.argmax(proba, axis=1)]})
    for column, label in enumerate(labels):
        frame[f"proba_{label}"] = proba[:, column]
    return frame


def _sampled_classes(proba: np.ndarray, uniforms: np.ndarray) -> np.ndarray:
    """Class indices drawn by inverting each row's CDF (``proba``: draws x rows x classes) at
    ``uniforms`` (draws x rows, or draws x 1)."""
    index = (np.cumsum(proba, axis=-1) < uniforms[..., None]).sum(axis=-1)
    return np.minimum(index, proba.shape[-1] - 1)


def log_mean_exp_over_draws(log_values: np.ndarray) -> np.ndarray:
    """``log(mean(exp(log_values)))`` over the leading (posterior draw) axis, computed stably."""
    return logsumexp(log_values, axis=0) - np.log(len(log_values))


class BayesianClassifierMixin(ClassifierMixin):
    """Classification with posterior mean class probabilities.

    The likelihood must be ``pm.Bernoulli`` (two classes) or ``pm.Categorical`` over the
    class indices ``0..K-1`` that ``y`` holds in :meth:`BayesianEstimator.build_model`.

    :meth:`predict_frame` gives ``prediction`` (the label) and ``proba_<class>`` per class,
    and ``draw_0`` ... ``draw_{k-1}`` with ``draws=k``: labels sampled jointly
    (:meth:`joint_predictive_draws`).
    """

    fitted_state_attributes = ("n_features_in_", "feature_names_in_", "classes_")
    prediction_params = {"draws": 0}

    def _target(self, y: Any) -> tuple[np.ndarray, dict[str, Any]]:
        classes, codes = class_labels(self, y)
        return codes, {"classes_": classes}

    def _observed_target(self, y: Any) -> np.ndarray:
        """Labels as indices into ``classes_``; a label not seen in fit is an error naming its row."""
        if y is None:
            raise ValueError(f"{type(self).__name__} requires y to be passed, but the target y is None.")
        labels = column_or_1d(y, warn=True)
        codes = pd.Index(self.classes_).get_indexer(labels)
        if (unseen := np.flatnonzero(codes < 0)).size:
            raise ValueError(
                f"y has the label {labels[unseen[:1]].tolist()[0]!r} at row {int(unseen[0])}, not one of the classes "
                f"seen in fit: {self.classes_.tolist()}."
            )
        return codes.astype(np.int64)

    def _predictive_outputs(self, model, inputs, uniform):
        distribution = self.predictive_distribution(model, inputs)
        op_name = distribution.owner.op.name
        (p,) = distribution.owner.op.dist_params(distribution.owner)
        if op_name == "bernoulli":
            return [pt.stack([1.0 - p, p], axis=-1)]
        if op_name == "categorical":
            return [p]
        raise TypeError(
            f"A classifier's likelihood must be Bernoulli or Categorical; {type(self).__name__} uses {op_name}."
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
        inputs = self._inputs(X)
        summary = self.posterior_predictor().map_rows(
            inputs, lambda outputs: {"proba": outputs[0].mean(axis=0)}, width=len(self.classes_)
        )
        check_finite_predictions(summary, inputs)
        return summary["proba"]

    def predict_frame(self, X: Any, *, draws: int = 0) -> pd.DataFrame:
        joint = self.joint_predictive_draws(X, draws) if draws != 0 else None
        frame = _probability_frame(self.classes_, self.predict_proba(X))
        return frame if joint is None else _with_draw_columns(frame, joint)

    def joint_predictive_draws(self, X: Any, n_draws: int) -> np.ndarray:
        """Labels drawn jointly: draw ``j`` of every row from the same posterior draw.

        As for regressors: the posterior draws are the first ``n_draws`` of a seeded
        shuffle, each row's label is drawn independently of the other rows', and the same
        rows give the same labels at every call, so counts over rows are draws of the count.

        Parameters
        ----------
        X : array-like or DataFrame of shape (n_samples, n_features)
        n_draws : int
            How many joint draws, from 1 to :attr:`n_posterior_draws_`.

        Returns
        -------
        ndarray of shape (n_draws, n_samples)
            Class labels.
        """
        check_draw_count(n_draws, self.n_posterior_draws_)
        inputs = self._inputs(X)
        predictor = self.posterior_predictor()
        n_rows = len(next(iter(inputs.values())))
        draws, uniforms = predictor.joint_draw_indices(n_draws), predictor.joint_uniforms(n_rows, n_draws)
        codes = []
        for rows in predictor.row_chunks(n_rows, width=len(self.classes_), n_draws=n_draws):
            (proba,) = predictor.evaluate(select_rows(inputs, rows), draws=draws)
            codes.append(_sampled_classes(proba, uniforms[:, rows]))
        return self.classes_[np.concatenate(codes, axis=1)]

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
        inputs = self._inputs(X)
        predictor = self.posterior_predictor()
        (proba,) = predictor(inputs)
        return self.classes_[_sampled_classes(proba, predictor.uniforms[:, None])]


class BayesianDensityMixin(DensityMixin):
    """Density estimation over the posterior: components, responsibilities, log density.

    Subclasses take ``n_components``, observe ``X`` itself in :meth:`build_model`
    (``build_model(self, X)``, no ``y``) and implement :meth:`component_log_density`.

    :meth:`predict_frame` gives ``prediction`` (the most probable component),
    ``proba_<k>`` per component ``k`` (its posterior mean responsibility) and
    ``log_density`` (the log posterior predictive density of the row).
    """

    def _target(self, y: Any) -> tuple[None, dict[str, Any]]:
        return None, {}  # unsupervised: y is ignored, as in scikit-learn

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

    def _log_likelihood_predictor(self) -> tuple[PosteriorPredictor, int]:
        return self.posterior_predictor(), self.n_components

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
        inputs = self._inputs(X)

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

    def predict_frame(self, X: Any) -> pd.DataFrame:
        summary = self.predict_summary(X)
        frame = _probability_frame(np.arange(self.n_components), summary["proba"])
        frame["log_density"] = summary["log_density"]
        return frame

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
