"""Hierarchical (partially pooled) logistic regression."""

from __future__ import annotations

from numbers import Integral, Real
from typing import Any

import numpy as np
import pandas as pd
import pymc as pm
from sklearn.utils._param_validation import Interval

from estimators.base import BayesianEstimator
from estimators.classification import BayesianClassifier
from estimators.modeling import class_likelihood, logit_labels, standardized
from estimators.validation import numeric_matrix

_POSITIVE = [Interval(Real, 0, None, closed="neither")]
#: ``pandas.api.types.infer_dtype`` kinds of group columns made only of strings and numbers.
_LABEL_KINDS = {"string", "integer", "floating", "boolean", "mixed-integer-float", "decimal"}


class HierarchicalLogisticRegression(BayesianClassifier):
    """Logistic regression with intercepts and slopes partially pooled across groups.

    The group is a column of ``X`` (named by ``group_col``), so one DataFrame carries
    everything, also when the model is served. Each group's intercepts and slopes are
    drawn around population-level means (non-centred parameterisation). A group not seen
    in training gets a fresh draw from the population distribution, so its predictions
    carry the between-group uncertainty.

    Parameters
    ----------
    group_col : str or int, default="group"
        Column of ``X`` holding the group label: a column name for DataFrames, or a
        position for arrays.
    prior_scale_intercept : float, default=2.5
        Standard deviation of the Normal prior on the population intercepts.
    prior_scale_coef : float, default=2.5
        Standard deviation of the Normal prior on the population slopes (standardised features).
    prior_scale_group : float, default=1.0
        Scale of the HalfNormal priors on the between-group standard deviations.
    **inference_params
        Inference settings of :class:`~estimators.base.BayesianEstimator`.

    Attributes
    ----------
    idata_ : xarray.DataTree
        Posterior draws, training data and fit history.
    classes_ : ndarray of shape (n_classes,)
        Class labels.
    groups_ : ndarray of shape (n_groups,)
        Group labels seen in training.
    n_features_in_ : int
        Number of columns of ``X``, the group column included.
    feature_names_in_ : ndarray of shape (`n_features_in_`,)
        Column names seen during fit, when X was a DataFrame with string columns.

    Examples
    --------
    >>> import numpy as np, pandas as pd
    >>> from estimators.linear_model import HierarchicalLogisticRegression
    >>> rng = np.random.default_rng(0)
    >>> X = pd.DataFrame({"x": rng.normal(size=300), "store": rng.choice(["a", "b", "c"], 300)})
    >>> y = (X["x"] + X["store"].map({"a": -1.0, "b": 0.0, "c": 1.0}) + rng.logistic(size=300) > 0)
    >>> model = HierarchicalLogisticRegression(group_col="store", random_seed=0, progressbar=False)
    >>> model = model.fit(X, y)
    >>> model.predict_proba(pd.DataFrame({"x": [0.0], "store": ["new store"]})).shape
    (1, 2)
    """

    _parameter_constraints = {
        **BayesianEstimator._parameter_constraints,
        "group_col": [str, Interval(Integral, 0, None, closed="left")],
        "prior_scale_intercept": _POSITIVE,
        "prior_scale_coef": _POSITIVE,
        "prior_scale_group": _POSITIVE,
    }
    input_names = ("X", "group")
    fitted_state_attributes = (*BayesianClassifier.fitted_state_attributes, "groups_")

    def __init__(
        self,
        *,
        group_col: str | int = "group",
        prior_scale_intercept: float = 2.5,
        prior_scale_coef: float = 2.5,
        prior_scale_group: float = 1.0,
        **inference_params,
    ):
        super().__init__(**inference_params)
        self.group_col = group_col
        self.prior_scale_intercept = prior_scale_intercept
        self.prior_scale_coef = prior_scale_coef
        self.prior_scale_group = prior_scale_group

    def _group_position(self, X: Any) -> int:
        n_columns = X.shape[1]
        if isinstance(self.group_col, str):
            if not isinstance(X, pd.DataFrame):
                raise ValueError(
                    f"group_col={self.group_col!r} names a column, but X has no column names; "
                    "pass a DataFrame, or give group_col as a column position."
                )
            if self.group_col not in X.columns:
                raise ValueError(f"X has no group column {self.group_col!r}; its columns are {list(X.columns)}.")
            return X.columns.get_loc(self.group_col)
        if self.group_col >= n_columns:
            raise ValueError(f"group_col={self.group_col} is out of range for X with {n_columns} columns.")
        return self.group_col

    def _fitted_group_position(self, names: list) -> int:
        """The group column's position among the training columns ``names``."""
        return names.index(self.group_col) if isinstance(self.group_col, str) else self.group_col

    def _split_group(self, X: Any) -> tuple[np.ndarray, Any, np.ndarray | None]:
        """The group labels (checked), the other features, and those features' names."""
        position = self._group_position(X)
        if isinstance(X, pd.DataFrame):
            labels = X.iloc[:, position].to_numpy()
            features = X.drop(columns=X.columns[position])
        else:
            labels = np.asarray(X)[:, position]
            features = np.delete(np.asarray(X), position, axis=1)
        invalid = pd.isna(labels)
        if labels.dtype.kind == "f":
            invalid |= np.isinf(labels)
        if invalid.any():
            row = int(np.flatnonzero(invalid)[0])
            raise ValueError(
                f"The group column has an invalid label {labels[row]} at row {row}; group labels "
                "must not be missing (NaN, None) or infinite (inf)."
            )
        if pd.api.types.infer_dtype(labels, skipna=False) not in _LABEL_KINDS:
            for row, value in enumerate(labels):
                try:
                    if not isinstance(value, str):
                        float(value)
                except (TypeError, ValueError) as error:
                    raise TypeError(
                        f"The group column has the label {value!r} at row {row}; group labels "
                        f"must be strings or numbers ({error})."
                    ) from None
        if features.shape[1] == 0:
            raise ValueError(
                f"X has 1 feature(s), the group column alone; {type(self).__name__} needs at "
                "least one feature besides the group."
            )
        feature_names = getattr(self, "feature_names_in_", None)
        if feature_names is not None:
            feature_names = np.delete(feature_names, position)
        return labels, features, feature_names

    def learn_from_features(self, X: Any) -> dict[str, Any]:
        labels, _, _ = self._split_group(X)
        return {"groups_": np.unique(labels)}

    def model_inputs(self, X: Any) -> dict[str, np.ndarray]:
        labels, features, feature_names = self._split_group(X)
        codes = pd.Index(self.groups_).get_indexer(labels)
        codes[codes < 0] = len(self.groups_)  # unseen groups: the population-level slot
        return {"X": numeric_matrix(features, feature_names), "group": codes.astype(np.int64)}

    def training_sample(self, n_rows: int = 5) -> pd.DataFrame | np.ndarray:
        features = self.idata_.constant_data["X"].values[:n_rows]
        labels = self.groups_[self.idata_.constant_data["group"].values[:n_rows]]
        names = getattr(self, "feature_names_in_", None)
        if names is None:
            position = self.group_col
            columns = [*features.T[:position], labels, *features.T[position:]]
            return np.column_stack(columns).astype(np.result_type(features, labels))
        position = self._fitted_group_position(list(names))
        frame = pd.DataFrame(features, columns=[n for i, n in enumerate(names) if i != position])
        frame.insert(position, names[position], labels)
        return frame

    def model_coords(self) -> dict[str, list]:
        """``"feature"``: the columns besides the group; ``"logit"``: each class but the first
        against the first; ``"group_label"``: the training groups, then ``"(unseen)"``, the
        population-level slot that groups not seen in training get."""
        names = super().model_coords()["feature"]
        names.pop(self._fitted_group_position(names))
        return {
            **super().model_coords(),
            "feature": names,
            "logit": logit_labels(self.classes_),
            "group_label": [*map(str, self.groups_), "(unseen)"],
        }

    def build_model(self, X, group, y):
        X_std, _, _ = standardized(X)
        n_features, n_logits = X.get_value().shape[1], len(self.classes_) - 1
        # One slot per training group, plus one with no data: the population draw for unseen groups.
        n_slots = len(self.groups_) + 1
        intercept_mu = pm.Normal("intercept_mu", 0.0, self.prior_scale_intercept, shape=n_logits, dims="logit")
        intercept_sigma = pm.HalfNormal("intercept_sigma", self.prior_scale_group, shape=n_logits, dims="logit")
        intercept_z = pm.Normal("intercept_z", 0.0, 1.0, shape=(n_slots, n_logits), dims=("group_label", "logit"))
        coef_mu = pm.Normal(
            "coef_mu", 0.0, self.prior_scale_coef, shape=(n_features, n_logits), dims=("feature", "logit")
        )
        coef_sigma = pm.HalfNormal(
            "coef_sigma", self.prior_scale_group, shape=(n_features, n_logits), dims=("feature", "logit")
        )
        coef_z = pm.Normal(
            "coef_z", 0.0, 1.0, shape=(n_slots, n_features, n_logits), dims=("group_label", "feature", "logit")
        )
        intercept = intercept_mu + intercept_sigma * intercept_z
        coef = coef_mu + coef_sigma * coef_z
        logits = intercept[group] + (X_std[:, :, None] * coef[group]).sum(axis=1)
        class_likelihood("y_obs", logits, y, n_classes=len(self.classes_))
