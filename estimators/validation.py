"""Input checking at the edge: features, targets and settings, with errors that name the column and row."""

from __future__ import annotations

from numbers import Integral, Real
from typing import Any

import numpy as np
import pandas as pd
from scipy import sparse
from sklearn.base import BaseEstimator
from sklearn.preprocessing import LabelEncoder
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted, column_or_1d, validate_data


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
        raise ValueError(f"{what} has no columns: 0 feature(s) (shape={shape}) while a minimum of 1 is required.")


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


def check_feature_state(state: dict[str, Any]) -> None:
    """Raise unless ``n_features_in_`` is a positive int and ``feature_names_in_`` (if any) that many strings.

    Parameters
    ----------
    state : dict
        Saved fitted attributes, as :meth:`BayesianEstimator.get_fitted_state` returns them.
    """
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


def _check_target_given(estimator: BaseEstimator, y: Any) -> None:
    if y is None:
        raise ValueError(f"{type(estimator).__name__} requires y to be passed, but the target y is None.")


def check_probability(prob: Any) -> None:
    """Raise a ``ValueError`` unless ``prob`` is a number strictly between 0 and 1."""
    if isinstance(prob, bool) or not isinstance(prob, Real) or not 0.0 < float(prob) < 1.0:
        raise ValueError(f"The interval probability must be a number strictly between 0 and 1; got {prob!r}.")


def check_draw_count(draws: Any, n_posterior_draws: int) -> None:
    """Raise a ``ValueError`` unless ``draws`` is a whole number from 1 to ``n_posterior_draws``."""
    if isinstance(draws, (bool, np.bool_)) or not isinstance(draws, Integral) or not 1 <= draws <= n_posterior_draws:
        raise ValueError(
            f"draws must be a whole number from 1 to {n_posterior_draws} (the model's posterior draws); got {draws!r}."
        )


#: Most quantile levels one prediction takes.
MAX_QUANTILE_LEVELS = 99


def quantile_levels(levels: Any) -> tuple[float, ...]:
    """``levels`` as distinct floats strictly between 0 and 1, or an error naming the bad one.

    Parameters
    ----------
    levels : sequence of float
        Quantile levels, e.g. ``[0.05, 0.5, 0.95]``; at most :data:`MAX_QUANTILE_LEVELS`.

    Returns
    -------
    tuple of float
        The levels, in the order given.
    """
    if isinstance(levels, (str, bytes)) or not hasattr(levels, "__len__"):
        raise TypeError(f"quantiles must be a list of levels such as [0.05, 0.5, 0.95]; got {levels!r:.80}.")
    if len(levels) > MAX_QUANTILE_LEVELS:
        raise ValueError(f"quantiles has {len(levels)} levels; at most {MAX_QUANTILE_LEVELS} are taken at once.")
    for position, level in enumerate(levels):
        if (
            isinstance(level, (bool, np.bool_))
            or not isinstance(level, (Real, np.floating, np.integer))
            or not 0.0 < float(level) < 1.0
        ):
            raise ValueError(
                f"quantiles[{position}] is {level!r}; each quantile level must be a number strictly between 0 and 1."
            )
    floats = tuple(float(level) for level in levels)
    if len(set(floats)) != len(floats):
        repeated = sorted({level for level in floats if floats.count(level) > 1})
        raise ValueError(f"quantiles repeats the level(s) {repeated}; give each level once.")
    return floats


def aligned_columns(estimator: BaseEstimator, X: Any) -> Any:
    """``X`` with its columns in the order seen at fit, or an error naming the difference."""
    expected = getattr(estimator, "feature_names_in_", None)
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
            f"X has {' and '.join(parts)}; {type(estimator).__name__} was fitted on the columns {expected}."
        )
    return X.loc[:, expected]


def check_features(estimator: BaseEstimator, X: Any, *, reset: bool) -> Any:
    """``X`` checked as a table of features: dense, 2-D, real, with the training columns.

    With ``reset`` (at fit), scikit-learn's ``validate_data`` records ``n_features_in_``
    and ``feature_names_in_`` on ``estimator``; otherwise the estimator must be fitted and
    a DataFrame's columns are put in the training order. The values themselves are
    checked when the estimator turns ``X`` into model inputs (:func:`numeric_matrix`).

    Parameters
    ----------
    estimator : BaseEstimator
        The estimator ``X`` is for.
    X : array-like or DataFrame
        The features.
    reset : bool
        True when fitting.

    Returns
    -------
    DataFrame or ndarray
        ``X``, with its columns aligned to the training ones.
    """
    if not reset:
        check_is_fitted(estimator)
        X = aligned_columns(estimator, X)
    if sparse.issparse(X):
        raise TypeError(
            f"{type(estimator).__name__} does not support sparse input; pass a dense array "
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
    names_checked = not reset and isinstance(X, pd.DataFrame) and hasattr(estimator, "feature_names_in_")
    if not names_checked:  # aligned_columns has already matched names and count
        validate_data(estimator, X, reset=reset, skip_check_array=True)
    return X


def regression_target(estimator: BaseEstimator, y: Any) -> np.ndarray:
    """``y`` as a finite 1-D float64 array, or an error naming the problem."""
    _check_target_given(estimator, y)
    y = column_or_1d(y, warn=True)
    if y.dtype.kind not in "biuf":
        try:
            y = y.astype(np.float64)
        except (TypeError, ValueError):
            raise ValueError(f"y must be numeric for a regressor; got dtype {y.dtype}.") from None
    y = y.astype(np.float64)
    check_finite(y, what="y")
    return y


def class_labels(estimator: BaseEstimator, y: Any) -> tuple[np.ndarray, np.ndarray]:
    """The classes of ``y`` (at least two, none missing) and ``y`` as class indices ``0..K-1``.

    Returns
    -------
    classes : ndarray of shape (n_classes,)
        The sorted class labels.
    codes : ndarray of int64, shape (n_samples,)
        Each label's index in ``classes``.
    """
    _check_target_given(estimator, y)
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
    return encoder.classes_, encoder.transform(y).astype(np.int64)
