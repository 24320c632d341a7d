"""bambi formula models as estimators: ``y ~ x + (1|g)`` with a family, fitted, predicted and saved like the others.

Install with ``pip install "mlflow-pmlearn[bambi]"``. bambi turns the formula, the family and
the priors into a model (its terms, its default priors, formulae's design information); the
PyMC model fitted here is written from bambi's own parts (its term builders, priors, links and
likelihoods), with two differences that bambi's own graph cannot give:

- the design matrices are data containers, so new rows (through formulae's
  ``evaluate_new_data``, as bambi's ``predict`` does) go through the compiled predictor;
- the intercept bambi samples on centred predictors is named ``Intercept_centered``, and
  ``Intercept`` is the un-centred intercept that bambi's ``fit`` computes after sampling,
  kept in the posterior as a deterministic: ``idata_`` holds what bambi's fit returns
  (``Intercept``, ``x``, ``1|g_sigma``, ``1|g``, ...), plus the offsets of non-centred
  group effects.

A group level not seen in training is predicted from the population: each group-specific
term has one extra effect, ``<term>_new_level``, drawn per posterior draw from the fitted
group distribution (a standard normal offset times the group scale for Normal priors), as
brms's ``sample_new_levels="gaussian"`` does. (bambi 0.21 instead borrows the effect of a
randomly chosen training group.) Within one posterior draw, all unseen levels of a term share
that effect, so joint draws of two different new groups are correlated. A level of a
categorical predictor not seen in training is an error naming the column and the level.

Binomial families take bambi's ``p(successes, trials) ~ x``: ``y`` is the successes, and the
trials a column of ``X`` (an input of the PyMC model of its own, so new rows bring theirs) or
a number. Ordinal families (``cumulative``, ``sratio``) are classifiers over ordered levels,
with bambi's ``threshold``.

Saving keeps everything as data: the formula, family, link and priors as JSON parameters, and
the training columns in the trace's ``formula_data`` group, from which loading rebuilds the
same bambi model (its default priors and design information depend on the training data).
"""

from __future__ import annotations

import re
from numbers import Real
from typing import Any

import numpy as np
import pandas as pd
import pymc as pm
import pytensor.tensor as pt
import xarray as xr
from sklearn.utils._param_validation import StrOptions

from estimators.base import BayesianEstimator
from estimators.classification import BayesianClassifier
from estimators.modeling import training_constant
from estimators.regression import BayesianRegressor

#: The group of the trace that keeps the training columns.
FORMULA_DATA = "formula_data"
#: Families whose response has more than one column.
_UNSUPPORTED_FAMILIES = {
    "multinomial": "is multivariate",
    "dirichlet_multinomial": "is multivariate",
}
#: Families of a count of successes out of a number of trials: ``p(successes, trials) ~ ...``.
_BINOMIAL_FAMILIES = ("binomial", "beta_binomial", "zero_inflated_binomial")
#: Families of ordered classes.
_ORDINAL_FAMILIES = ("cumulative", "sratio")
_CLASSIFIER_FAMILIES = ("bernoulli", "categorical", *_ORDINAL_FAMILIES)
#: bambi's left-hand side of a binomial family: successes and trials (a column or a number).
_TRIALS_RESPONSE = re.compile(r"^(?:p|prop)\(\s*([A-Za-z_]\w*)\s*,\s*([A-Za-z_]\w*|\d+)\s*\)$")


def _bambi():
    try:
        import bambi
    except ImportError as error:  # pragma: no cover - the extra is installed in CI
        raise ImportError('Formula models need bambi: pip install "mlflow-pmlearn[bambi]".') from error
    return bambi


# -- priors as data -------------------------------------------------------------------------


def prior_to_data(prior: Any, where: str) -> Any:
    """A bambi ``Prior`` (or its dict, or a number) as JSON data: ``{"name": ..., "args": {...}}``.

    Raises
    ------
    TypeError
        For what cannot be saved without pickle: a callable, a ``Prior`` with a custom
        ``dist``, or an argument that is not a number, an array of numbers or a prior.
    """
    bmb = _bambi()
    if isinstance(prior, bool) or callable(prior) and not isinstance(prior, bmb.Prior):
        raise TypeError(
            f"The prior of {where} is {prior!r:.60}; a formula model saves its priors as data, so give a "
            'bambi Prior of a named distribution (bmb.Prior("Normal", mu=0, sigma=1)) or its dict.'
        )
    if isinstance(prior, Real):
        return float(prior)
    if isinstance(prior, dict):
        prior = _prior_from_dict(prior, where)
    if not isinstance(prior, bmb.Prior):
        raise TypeError(f"The prior of {where} must be a bambi Prior, a dict or a number; got {type(prior).__name__}.")
    if prior.dist is not None:
        raise TypeError(
            f"The prior of {where} uses a custom distribution ({prior.dist!r:.60}), which cannot be saved "
            'without pickle; use a distribution PyMC names (bmb.Prior("Normal", ...)).'
        )
    args = {}
    for name, value in prior.args.items():
        if isinstance(value, (bmb.Prior, dict)):
            args[name] = prior_to_data(value, f"{where}, argument {name!r}")
            continue
        array = np.asarray(value)
        if array.dtype.kind not in "biuf":
            raise TypeError(f"The prior of {where} has the argument {name}={value!r:.60}; give numbers or priors.")
        args[name] = array.tolist()
    data = {"name": prior.name, "args": args}
    if prior.noncentered is not None:
        data["noncentered"] = bool(prior.noncentered)
    return data


def _prior_from_dict(data: dict, where: str):
    bmb = _bambi()
    if not isinstance(data.get("name"), str) or not isinstance(data.get("args", {}), dict):
        raise TypeError(f'The prior of {where} must look like {{"name": "Normal", "args": {{"mu": 0, "sigma": 1}}}}.')
    args = {
        key: _prior_from_dict(value, f"{where}, argument {key!r}") if isinstance(value, dict) else value
        for key, value in data.get("args", {}).items()
    }
    return bmb.Prior(data["name"], **args, noncentered=data.get("noncentered"))


def priors_to_data(priors: dict | None) -> dict[str, Any] | None:
    """The ``priors`` parameter as JSON data (see :func:`prior_to_data`)."""
    if priors is None:
        return None
    if not isinstance(priors, dict):
        raise TypeError(f"priors must be a dict of term name to prior; got {type(priors).__name__}.")
    return {str(term): prior_to_data(prior, f"{term!r}") for term, prior in priors.items()}


def _priors_for_bambi(priors: dict | None) -> dict[str, Any] | None:
    """``priors`` as bambi takes them: numbers and ``Prior`` objects."""
    data = priors_to_data(priors)
    if data is None:
        return None
    return {term: value if isinstance(value, float) else _prior_from_dict(value, term) for term, value in data.items()}


# -- the training columns -------------------------------------------------------------------


def _check_frame(X: Any, what: str = "X") -> pd.DataFrame:
    """``X`` as a DataFrame with string column names and no missing or infinite value."""
    if not isinstance(X, pd.DataFrame):
        raise TypeError(f"{what} must be a pandas DataFrame with the formula's columns; got {type(X).__name__}.")
    for column in X.columns:
        if not isinstance(column, str):
            raise TypeError(
                f"{what} has the column name {column!r}; a formula model's columns must be named by strings."
            )
        values = X[column]
        missing = pd.isna(values).to_numpy().copy()
        if pd.api.types.is_float_dtype(values.dtype):
            missing |= np.isinf(values.to_numpy(dtype=np.float64, na_value=np.nan))
        if missing.any():
            row = int(np.flatnonzero(missing)[0])
            raise ValueError(
                f"Column {column!r} of {what} has the value {values.iloc[row]!r} at row {row}; "
                "formula models take no missing or infinite values."
            )
    return X


def _encode_column(values: pd.Series) -> xr.DataArray:
    """A training column as the trace keeps it (a categorical one as strings and its categories)."""
    if isinstance(values.dtype, pd.CategoricalDtype):
        return xr.DataArray(
            values.astype(str).to_numpy(dtype=object),
            dims="row",
            attrs={
                "categories": [str(c) for c in values.cat.categories],
                "ordered": int(values.cat.ordered),
            },
        )
    if values.dtype == object or pd.api.types.is_string_dtype(values.dtype):
        return xr.DataArray(values.astype(str).to_numpy(dtype=object), dims="row")
    return xr.DataArray(values.to_numpy(), dims="row")


def _decode_column(array: xr.DataArray) -> pd.Series:
    values = array.values
    if "categories" in array.attrs:
        categories = list(np.atleast_1d(array.attrs["categories"]))
        return pd.Series(
            pd.Categorical(
                values.astype(str),
                categories=categories,
                ordered=bool(array.attrs["ordered"]),
            )
        )
    if values.dtype.kind in "OSU":
        return pd.Series(values.astype(str).astype(object))
    return pd.Series(values)


def _encode_frame(frame: pd.DataFrame) -> xr.Dataset:
    return xr.Dataset({f"column_{i}": _encode_column(frame[name]) for i, name in enumerate(frame.columns)})


def _decode_frame(dataset: xr.Dataset, names: list[str]) -> pd.DataFrame:
    return pd.DataFrame({name: _decode_column(dataset[f"column_{i}"]).to_numpy() for i, name in enumerate(names)})


class _Backend:
    """What bambi's term builders take as their PyMC backend: the model they add coordinates to."""

    def __init__(self, model: pm.Model):
        self.model = model


class _BambiFormulaModel(BayesianEstimator):
    """The parts shared by :class:`BambiRegressor` and :class:`BambiClassifier`."""

    _parameter_constraints = {
        **BayesianEstimator._parameter_constraints,
        "formula": [str],
        "family": [str],
        "link": [str, None],
        "priors": [dict, None],
        "noncentered": ["boolean"],
    }
    input_names = ("X", "Z", "group", "offset", "trials")
    required_packages = ("bambi",)

    def __init__(
        self,
        formula: str,
        *,
        family: str,
        link: str | None = None,
        priors: dict | None = None,
        noncentered: bool = True,
        **inference_params,
    ):
        super().__init__(**inference_params)
        self.formula = formula
        self.family = family
        self.link = link
        self.priors = priors
        self.noncentered = noncentered

    # -- the bambi model --------------------------------------------------------------------

    def _left_hand_side(self) -> tuple[str, str | int | None]:
        """The response the formula's left-hand side names, and the trials of a binomial family.

        The trials are a column of ``X`` (``p(successes, trials) ~ x``) or a number
        (``p(successes, 10) ~ x``); None for the other families.
        """
        lhs = self.formula.split("~", 1)[0].strip() if "~" in self.formula else ""
        trials_response = _TRIALS_RESPONSE.match(lhs)
        if self.family in _BINOMIAL_FAMILIES:
            if trials_response is None:
                raise ValueError(
                    f"The family {self.family!r} needs the number of trials on the formula's left-hand side: "
                    "p(successes, trials) ~ x, with y the successes and trials a column of X (or a number); "
                    f"got {self.formula!r}."
                )
            successes, trials = trials_response.groups()
            return successes, int(trials) if trials.isdigit() else trials
        if not lhs.isidentifier():
            raise ValueError(
                f"The formula {self.formula!r} must name the response column on its left-hand side "
                "(y ~ x + (1|g), or p(successes, trials) ~ x with a binomial family); transformed, censored or "
                "multi-column responses are not supported."
            )
        return lhs, None

    def response_name(self) -> str:
        """The response column the formula's left-hand side names (the successes of ``p(successes, trials)``)."""
        return self._left_hand_side()[0]

    def _trials(self, frame: pd.DataFrame) -> np.ndarray:
        """Each row's number of trials (a binomial family), checked; ones for other families."""
        trials = self._left_hand_side()[1]
        if trials is None:
            return np.ones(len(frame), dtype=np.int64)
        if isinstance(trials, int):
            return np.full(len(frame), trials, dtype=np.int64)
        if trials not in frame.columns:
            raise ValueError(
                f"X has no column {trials!r}, the number of trials that the formula {self.formula!r} names."
            )
        values = frame[trials].to_numpy()
        if values.dtype.kind not in "biuf":
            raise ValueError(
                f"Column {trials!r} of X (the number of trials) must be numeric; got dtype {values.dtype}."
            )
        values = values.astype(np.float64)
        bad = np.flatnonzero((values < 0) | (values != np.round(values)))
        if bad.size:
            raise ValueError(
                f"Column {trials!r} of X (the number of trials) has the value {values[bad[0]]:g} at row {int(bad[0])}; "
                "trials are whole numbers, 0 or more."
            )
        return values.astype(np.int64)

    def _check_family(self) -> None:
        if self.family in _UNSUPPORTED_FAMILIES:
            raise ValueError(
                f"The family {self.family!r} {_UNSUPPORTED_FAMILIES[self.family]}; formula models do not support it."
            )

    def _bambi_model(self, frame: pd.DataFrame, response: np.ndarray | pd.Series):
        """bambi's model of ``frame`` with the response column, built (its PyMC graph not used)."""
        bmb = _bambi()
        data = frame.copy()
        data[self.response_name()] = response
        model = bmb.Model(
            self.formula,
            data,
            family=self.family,
            priors=_priors_for_bambi(self.priors),
            link=self.link,
            noncentered=self.noncentered,
            dropna=False,
        )
        component = model.parameters[model.family.likelihood.parent]
        if component.hsgp_terms:
            raise ValueError(f"The formula {self.formula!r} has HSGP terms; formula models do not support them yet.")
        if len(model.conditional_parameters) != 1:
            raise ValueError(
                "Formula models take one formula, for the mean; distributional sub-models are not supported."
            )
        model.build()
        return model

    def _response_for_bambi(self, target: np.ndarray) -> Any:
        return target

    def _spec(self):
        """bambi's model of the training data: built at fit, rebuilt at load from the trace."""
        spec = self.__dict__.get("_bambi_spec")
        if spec is None:
            spec = self._bambi_spec = self._bambi_model(
                self._training_frame(),
                self._response_for_bambi(self._training_data()[1]),
            )
        return spec

    def _training_frame(self) -> pd.DataFrame:
        return _decode_frame(self.idata_[FORMULA_DATA].to_dataset(), list(self.feature_names_in_))

    def fit(self, X: Any, y: Any = None) -> _BambiFormulaModel:
        """Fit the posterior of the formula model to the columns of ``X`` and the response ``y``.

        Parameters
        ----------
        X : DataFrame of shape (n_samples, n_columns)
            The formula's predictor and group columns (others are kept but not used).
        y : array-like of shape (n_samples,)
            The response that the formula's left-hand side names.

        Returns
        -------
        self
        """
        for name in ("family", "link"):
            if not isinstance(getattr(self, name), (str, type(None))):
                raise TypeError(
                    f"{name} must be a name, such as {'poisson' if name == 'family' else 'log'!r}; got a "
                    f"{type(getattr(self, name)).__name__}. A formula model saves its {name} as data: a custom "
                    f"bambi {name.capitalize()} cannot be saved without pickle."
                )
        self._validate_params()
        self._check_family()
        priors_to_data(self.priors)
        frame = _check_frame(X)
        if self.response_name() in frame.columns:
            raise ValueError(f"X has a column {self.response_name()!r}, the formula's response; pass it as y.")
        # The columns as the trace keeps them: a loaded model rebuilds bambi's model from the same values.
        frame = _decode_frame(_encode_frame(frame), list(frame.columns))
        target, _ = self._target(y)
        if len(target) != len(frame):
            raise ValueError(f"X has {len(frame)} rows but y has {len(target)}; they must match.")
        if self.family in _BINOMIAL_FAMILIES:
            trials = self._trials(frame)
            bad = np.flatnonzero((target < 0) | (target > trials) | (target != np.round(target)))
            if bad.size:
                raise ValueError(
                    f"y (the successes) has the value {target[bad[0]]:g} at row {int(bad[0])}, with "
                    f"{trials[bad[0]]:g} trials; successes are whole numbers from 0 to the trials."
                )
        self.__dict__.pop("idata_", None)
        self._bambi_spec = self._bambi_model(frame, self._response_for_bambi(target))
        return super().fit(frame, y)

    def training_data_groups(self, X: pd.DataFrame) -> dict[str, xr.Dataset]:
        """The training columns, from which a load rebuilds bambi's model."""
        return {FORMULA_DATA: _encode_frame(X)}

    # -- model inputs -------------------------------------------------------------------------

    def _component(self):
        spec = self._spec()
        return spec.parameters[spec.family.likelihood.parent]

    def model_inputs(self, X: Any) -> dict[str, np.ndarray]:
        frame = _check_frame(X)
        # formulae reads a categorical column value by value: from NumPy objects, not from
        # pandas' Arrow-backed strings (which it would iterate four times slower).
        strings = [name for name, dtype in frame.dtypes.items() if isinstance(dtype, pd.StringDtype)]
        frame = frame.astype(dict.fromkeys(strings, object))
        component = self._component()
        n_rows = len(frame)
        common_columns, offsets = [], np.zeros(n_rows)
        if component.design.common:
            try:
                common = component.design.common.evaluate_new_data(frame)
            except ValueError as error:  # formulae names the column and the unseen level
                raise ValueError(f"X cannot be used with the formula: {error}") from None
            matrix = np.asarray(common.design_matrix, dtype=np.float64)
            slices = _contiguous_slices(common)
            common_columns = [matrix[:, slices[name]] for name in component.common_terms]
            for name in component.offset_terms:
                offsets = offsets + matrix[:, slices[name]].sum(axis=1)
        predictors, groups, group_indices = [], [], {}
        for term in component.group_specific_terms.values():
            try:
                values = np.asarray(term.term.expr.eval_new_data(frame), dtype=np.float64)
            except ValueError as error:
                raise ValueError(f"X cannot be used with the group term {term.name!r}: {error}") from None
            predictors.append(values.reshape(n_rows, -1))
            factor = (term.term.factor.name, tuple(term.groups))  # (1|g) and (x|g) share g's index
            if factor not in group_indices:
                group_indices[factor] = self._group_index(term, frame)
            groups.append(group_indices[factor])
        return {
            "X": np.column_stack(common_columns) if common_columns else np.zeros((n_rows, 0)),
            "Z": np.column_stack(predictors) if predictors else np.zeros((n_rows, 0)),
            "group": np.column_stack(groups).astype(np.int64) if groups else np.zeros((n_rows, 0), dtype=np.int64),
            "offset": offsets,
            "trials": self._trials(frame),
        }

    @staticmethod
    def _group_index(term, frame: pd.DataFrame) -> np.ndarray:
        """Each row's index among the term's training groups; the number of groups for a new one."""
        factor = term.term.factor
        known = np.ones(len(frame), dtype=bool)
        for variable in factor.components:
            if not hasattr(variable, "levels") or variable.name not in frame.columns:
                raise ValueError(f"The grouping factor of {term.name!r} must be columns of X.")
            known &= frame[variable.name].isin(list(variable.levels)).to_numpy()
        index = np.full(len(frame), len(term.groups), dtype=np.int64)
        if known.any():
            dummies = np.asarray(factor.eval_new_data(frame.loc[known]))
            # A combination of known levels that training did not have (g1:g2) is new too.
            index[known] = np.where(dummies.any(axis=1), dummies.argmax(axis=1), len(term.groups))
        return index

    def training_sample(self, n_rows: int = 5) -> pd.DataFrame:
        return self._training_frame().head(n_rows)

    # -- the PyMC model ---------------------------------------------------------------------

    def build_model(self, X, Z, group, offset, trials, y):
        from bambi.backend.model_components import ConstantComponent
        from bambi.backend.pymc import PyMCModel
        from bambi.backend.utils import get_distribution_from_likelihood, get_linkinv

        spec = self._spec()
        model = pm.modelcontext(None)
        backend = _Backend(model)
        for name, values in spec.response_term.coords.items():
            model.add_coords({name: values})
        family = spec.family
        kwargs = {}
        for name, component in spec.marginal_parameters.items():
            constant = ConstantComponent(component)
            constant.build(backend, spec)
            kwargs[name] = constant.output
        parent = family.likelihood.parent
        response_shape = [len(values) for values in spec.response_term.coords.values()]
        eta = pt.zeros((X.shape[0], *response_shape)) + offset.reshape((-1, *[1] * len(response_shape)))
        eta = eta + self._common_part(spec, backend, X) + self._group_part(spec, backend, Z, group)
        if family.name == "categorical":  # the reference level's linear predictor is 0
            eta = pt.concatenate([pt.zeros((eta.shape[0], 1)), eta], axis=1)
        elif family.name in _ORDINAL_FAMILIES:  # threshold_k - eta, one column per threshold
            eta = family.transform_backend_eta(eta, kwargs)
        kwargs[parent] = get_linkinv(family.link[parent], PyMCModel.INVLINKS)(eta)
        if family.name in _BINOMIAL_FAMILIES:
            # bambi's own transform takes successes and trials as one observed matrix; here the
            # trials are an input of their own, so that new rows bring theirs.
            kwargs["n"] = trials
            kwargs["observed"] = y
            if hasattr(family, "transform_kwargs"):
                kwargs = family.transform_kwargs(kwargs)
        else:
            kwargs["observed"] = y
            if hasattr(family, "transform_backend_kwargs"):
                kwargs = family.transform_backend_kwargs(kwargs)
        distribution = get_distribution_from_likelihood(family.likelihood)
        distribution(f"{spec.response_term.name}_obs", **kwargs, shape=X.shape[0])

    def _common_part(self, spec, backend, X):
        from bambi.backend.terms import CommonTerm
        from bambi.utils import get_aliased_name

        component = spec.parameters[spec.family.likelihood.parent]
        multivariate = bool(spec.response_term.coords)
        intercept = 0
        if component.intercept_term is not None:
            term = component.intercept_term
            name = get_aliased_name(term)
            centred = component.common_terms and spec.center_predictors
            distribution = _distribution_of(term.prior)
            dims = list(spec.response_term.coords) if multivariate else None
            intercept = distribution(f"{name}_centered" if centred else name, dims=dims, **term.prior.args)
        if not component.common_terms:
            return intercept
        coefs = []
        for term in component.common_terms.values():
            common_term = CommonTerm(term)
            for name, values in common_term.coords.items():
                backend.model.add_coords({name: values})
            coefs.append(common_term.build(spec))
        coefs = pt.concatenate(coefs, axis=0)
        if component.intercept_term is None or not spec.center_predictors:
            return intercept + pt.dot(X, coefs)
        mean = training_constant(np.asarray(X.get_value()).mean(axis=0))
        pm.Deterministic(
            get_aliased_name(component.intercept_term),
            intercept - pt.dot(mean, coefs),
            dims=list(spec.response_term.coords) if multivariate else None,
        )
        return intercept + pt.dot(X - mean, coefs)

    def _group_part(self, spec, backend, Z, group):
        from bambi.backend.terms import GroupSpecificTerm
        from bambi.backend.utils import noncentered_default_for

        component = spec.parameters[spec.family.likelihood.parent]
        multivariate = bool(spec.response_term.coords)
        noncentered = noncentered_default_for(spec, component.name)
        contribution, start = 0, 0
        for position, term in enumerate(component.group_specific_terms.values()):
            builder = GroupSpecificTerm(term, noncentered)
            for name, values in builder.coords.items():
                if name not in backend.model.coords:
                    backend.model.add_coords({name: values})
            coef = builder.build(spec)
            dims = [dim for dim in [*builder.coords, *spec.response_term.coords] if not dim.endswith("__factor_dim")]
            new_level = _new_level_effect(builder, dims, noncentered)
            effects = pt.concatenate([coef, new_level[None]], axis=0)[group[:, position]]
            width = int(np.prod(term.predictor.shape[1:]))
            predictor = Z[:, start : start + width] if term.predictor.ndim > 1 else Z[:, start]
            start += width
            if multivariate:
                predictor = predictor[..., None]
            term_contribution = effects * predictor
            if term.predictor.ndim > 1:
                term_contribution = term_contribution.sum(axis=1)
            contribution = contribution + term_contribution
        return contribution

    # -- saving ---------------------------------------------------------------------------

    def saved_params(self) -> dict[str, Any]:
        return {**super().saved_params(), "priors": priors_to_data(self.priors)}

    @classmethod
    def from_fitted_state(cls, params, state, idata):
        estimator = super().from_fitted_state(params, state, idata)
        if FORMULA_DATA not in idata.children:
            raise ValueError(f"the trace has no {FORMULA_DATA!r} group (the training columns).")
        try:
            estimator._spec()
        except (KeyError, TypeError, ValueError) as error:
            raise ValueError(
                f"bambi's model could not be rebuilt from the training columns in the trace's {FORMULA_DATA!r} "
                f"group: {type(error).__name__}: {error}"
            ) from None
        return estimator

    def __getstate__(self) -> dict[str, Any]:
        state = super().__getstate__()
        state.pop("_bambi_spec", None)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        super().__setstate__(state)
        if "idata_" in state:
            self._spec()


def _contiguous_slices(common) -> dict[str, slice]:
    """Each term's columns in a common design matrix, in the order of its terms.

    formulae's own ``slices`` keep the intercept's column where bambi removed it (ordinal
    families), so the columns are counted again from the terms' widths.
    """
    slices, start = {}, 0
    for name, columns in common.slices.items():
        if name in common.terms:
            width = columns.stop - columns.start
            slices[name], start = slice(start, start + width), start + width
    return slices


def _distribution_of(prior):
    from bambi.backend.utils import get_distribution_from_prior

    return get_distribution_from_prior(prior)


def _new_level_effect(builder, dims: list[str], noncentered: bool) -> pt.TensorVariable:
    """The effect of a group level not seen in training: one draw from the group distribution per posterior draw.

    Normal group priors get it as a standard normal offset times the group scale (as bambi's
    non-centred effects); others as a variable of the prior's own distribution, given the
    draws of its hyper-parameters.
    """
    model = pm.modelcontext(None)
    term, label = builder.term, builder.name
    prior = term.prior
    args = {}
    for key, value in prior.args.items():
        if isinstance(value, type(prior)):
            args[key] = model[f"{label}_{term.hyperprior_alias.get(key, key)}"]
        else:
            args[key] = value
    if prior.name == "Normal" and isinstance(args.get("sigma"), pt.TensorVariable):
        offset = pm.Normal(f"{label}_new_level_offset", mu=0.0, sigma=1.0, dims=dims or None)
        location = 0.0 if (prior.noncentered if prior.noncentered is not None else noncentered) else args.get("mu", 0.0)
        return pm.Deterministic(f"{label}_new_level", location + offset * args["sigma"], dims=dims or None)
    return _distribution_of(prior)(f"{label}_new_level", **args, dims=dims or None)


class BambiRegressor(BayesianRegressor, _BambiFormulaModel):
    """A bambi formula model of a numeric response, e.g. ``"y ~ x + (1|store)"`` with a Poisson family.

    Parameters
    ----------
    formula : str
        The model formula; its left-hand side names the response (``y`` given to ``fit``),
        its right-hand side the columns of ``X``.
    family : str, default="gaussian"
        A bambi family by name, for a univariate response (``"gaussian"``, ``"poisson"``,
        ``"negativebinomial"``, ``"gamma"``, ``"t"``, ``"beta"``, ...). A binomial family
        (``"binomial"``, ``"beta_binomial"``, ``"zero_inflated_binomial"``) takes bambi's
        left-hand side ``p(successes, trials)``: ``y`` is the successes, and the trials are
        the column of ``X`` that the formula names (or a number, ``p(k, 20)``), at fit and
        at predict.
    link : str, optional
        The link of the mean, by name; the family's default when None.
    priors : dict, optional
        Term name (``"x"``, ``"Intercept"``, ``"1|g"``, ``"sigma"``) to a bambi ``Prior`` of a
        named distribution, its dict (``{"name": "Normal", "args": {"mu": 0, "sigma": 1}}``) or a
        number; bambi's defaults for the others. Callables and custom distributions are
        refused: they cannot be saved without pickle.
    noncentered : bool, default=True
        bambi's non-centred parametrisation of group effects. Groups with much data sample
        better centred (False).
    **inference_params
        Inference settings of :class:`~estimators.base.BayesianEstimator`.

    Attributes
    ----------
    idata_ : xarray.DataTree
        The posterior in bambi's names, the training data and the training columns
        (``formula_data``).

    Examples
    --------
    >>> import numpy as np, pandas as pd
    >>> from estimators.formula import BambiRegressor
    >>> rng = np.random.default_rng(0)
    >>> X = pd.DataFrame({"x": rng.normal(size=200), "g": rng.choice(list("abcd"), 200)})
    >>> y = rng.poisson(np.exp(0.5 + 0.3 * X["x"]))
    >>> model = BambiRegressor("y ~ x + (1|g)", family="poisson", inference="advi", random_seed=0,
    ...                        progressbar=False).fit(X, y)
    >>> model.predict(pd.DataFrame({"x": [0.0], "g": ["new"]})).shape
    (1,)
    """

    #: The mean is the likelihood's, averaged over the draws (as bambi's ``response_params``).
    closed_form_mean = True

    def __init__(
        self,
        formula: str,
        *,
        family: str = "gaussian",
        link: str | None = None,
        priors: dict | None = None,
        noncentered: bool = True,
        **inference_params,
    ):
        super().__init__(
            formula,
            family=family,
            link=link,
            priors=priors,
            noncentered=noncentered,
            **inference_params,
        )

    def _check_family(self) -> None:
        super()._check_family()
        if self.family in _CLASSIFIER_FAMILIES:
            raise ValueError(f"The family {self.family!r} models class labels; use BambiClassifier.")


class BambiClassifier(BayesianClassifier, _BambiFormulaModel):
    """A bambi formula model of class labels: ``"bernoulli"`` for two classes, ``"categorical"`` for more,
    ``"cumulative"`` or ``"sratio"`` for ordered classes.

    ``classes_`` are the sorted labels. With ``"bernoulli"`` the model is of the probability
    of the second class (``1`` for a 0/1 response, as bambi models it); with
    ``"categorical"`` the first class is bambi's reference level, and ``predict_proba`` has
    one column per class. With an ordinal family, ``classes_`` are in the order of ``y``'s
    categories when ``y`` is an ordered pandas ``Categorical`` (else sorted), ``predict_proba``
    has one column per level in that order, and ``idata_`` holds bambi's ``threshold``
    (bambi drops the formula's intercept, which the thresholds replace).

    Parameters
    ----------
    formula : str
        The model formula; its left-hand side names the response.
    family : {"bernoulli", "categorical", "cumulative", "sratio"}, default="bernoulli"
    link : str, optional
        The link, by name (``"logit"``, ``"probit"``, ``"cloglog"`` for Bernoulli).
    priors : dict, optional
        As for :class:`BambiRegressor`.
    noncentered : bool, default=True
        bambi's non-centred parametrisation of group effects.
    **inference_params
        Inference settings of :class:`~estimators.base.BayesianEstimator`.
    """

    _parameter_constraints = {
        **_BambiFormulaModel._parameter_constraints,
        "family": [StrOptions(set(_CLASSIFIER_FAMILIES))],
    }
    fitted_state_attributes = (*_BambiFormulaModel.fitted_state_attributes, "classes_")

    def __init__(
        self,
        formula: str,
        *,
        family: str = "bernoulli",
        link: str | None = None,
        priors: dict | None = None,
        noncentered: bool = True,
        **inference_params,
    ):
        super().__init__(
            formula,
            family=family,
            link=link,
            priors=priors,
            noncentered=noncentered,
            **inference_params,
        )

    def _target(self, y: Any):
        if self.family in _ORDINAL_FAMILIES and isinstance(getattr(y, "dtype", None), pd.CategoricalDtype):
            # Ordered levels keep their order (low < medium < high), not the sorted one.
            categories = y.dtype.categories
            codes, learned = super()._target(pd.Series(categories.get_indexer(y)))
            learned["classes_"] = np.asarray(categories)[learned["classes_"]]
            self.classes_ = learned["classes_"]
            return codes, learned
        codes, learned = super()._target(y)
        if self.family == "bernoulli" and len(learned["classes_"]) > 2:
            raise ValueError(
                f'y has {len(learned["classes_"])} classes; the bernoulli family models two. Use family="categorical".'
            )
        self.classes_ = learned["classes_"]
        return codes, learned

    def _response_for_bambi(self, target: np.ndarray) -> Any:
        if self.family == "bernoulli":
            return target
        return pd.Categorical(
            np.asarray(self.classes_)[target],
            categories=list(self.classes_),
            ordered=self.family in _ORDINAL_FAMILIES,
        )
