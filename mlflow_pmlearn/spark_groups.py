"""One model per group of a Spark table: fitted in parallel, logged as child runs, served as one model.

:func:`fit_groups` fits a clone of an estimator to each group of a Spark DataFrame with
``groupBy(...).applyInPandas``. Each group's fit runs on an executor, in a child run of one
parent run, where its metrics and its ``pmlearn`` model are logged. :func:`log_grouped_model`
then logs one ``python_function`` model, :class:`GroupedModel`, that carries every group's
model and routes each row to the model of its group: one registered model, one endpoint of
``mlflow models serve``, one Spark UDF for a table of mixed groups.

Needs the Spark extra (``pip install "mlflow-pmlearn[spark]"``) to fit; serving a grouped
model does not need it.
"""

from __future__ import annotations

import json
import tempfile
import time
import traceback
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import mlflow
import mlflow.pyfunc
import numpy as np
import pandas as pd
from mlflow.exceptions import MlflowException
from mlflow.models import Model, ModelSignature, infer_signature
from mlflow.models.model import ModelInfo
from mlflow.types.schema import Schema
from mlflow.utils.environment import _REQUIREMENTS_FILE_NAME
from mlflow.utils.validation import MAX_TAG_VAL_LENGTH
from sklearn.base import clone

import mlflow_pmlearn
from estimators.base import BayesianEstimator
from mlflow_pmlearn.autologging.metrics import fit_metrics, predictive_checks
from mlflow_pmlearn.autologging.runs import FIT_ERROR_TAG
from mlflow_pmlearn.pyfunc import PmlearnModelWrapper, probabilities_by_default
from mlflow_pmlearn.safety import confined_path, refuse_model_code_unless_allowed

if TYPE_CHECKING:
    from pyspark.sql import DataFrame as SparkDataFrame

#: Tag of each child run: the value of its group.
GROUP_TAG = "pmlearn.group"
#: The columns :func:`fit_groups` returns besides the group's.
RESULT_COLUMNS = {
    "run_id": "string",
    "model_uri": "string",
    "n_rows": "long",
    "training_score": "double",
    "error": "string",
}
#: Folder of a grouped model's artifacts that holds one group model per sub-folder, and
#: the folder MLflow keeps a model's artifacts in.
_GROUPS_ARTIFACT = "groups"
_ARTIFACTS_FOLDER = "artifacts"
#: The file in that folder naming the group column and each group's folder (JSON).
_ROUTES_FILE = "routes.json"
#: The model's code, logged as MLflow's "model from code": loading it pickles nothing.
_MODEL_CODE = Path(__file__).with_name("_grouped_model.py")


def _fit_group(
    frame: pd.DataFrame,
    *,
    group_col: str,
    estimator: BayesianEstimator,
    feature_cols: list[str],
    target_col: str,
    parent_run_id: str,
    experiment_id: str,
    tracking_uri: str,
) -> pd.DataFrame:
    """Fit and log one group's model in a child run (on an executor); its row of the result.

    A failed fit leaves its child run FAILED with the traceback in ``pmlearn.fit_error``,
    and a row whose ``error`` says why, so that one bad group does not stop the others.
    """
    mlflow.set_tracking_uri(tracking_uri)
    key = frame[group_col].iloc[0]
    row: dict[str, Any] = {
        group_col: key,
        "run_id": None,
        "model_uri": None,
        "n_rows": len(frame),
        "training_score": np.nan,
        "error": None,
    }
    X, y = frame[feature_cols], frame[target_col]
    try:
        with mlflow.start_run(
            experiment_id=experiment_id,
            parent_run_id=parent_run_id,
            nested=True,
            run_name=f"{group_col}={key}",
            tags={GROUP_TAG: str(key)},
        ) as run:
            row["run_id"] = run.info.run_id
            try:
                model = clone(estimator)
                start = time.perf_counter()
                model.fit(X, y)
                fit_seconds = time.perf_counter() - start
                checks = predictive_checks(model, X, y)
                mlflow.log_params({"group_column": group_col, "n_rows": len(frame)})
                mlflow.log_metrics(fit_metrics(model, fit_seconds, checks=checks))
                row["model_uri"] = mlflow_pmlearn.log_model(model, name="model").model_uri
                row["training_score"] = checks.score
            except Exception:
                mlflow.set_tag(FIT_ERROR_TAG, traceback.format_exc()[-MAX_TAG_VAL_LENGTH:])
                raise
    except Exception as error:
        row["error"] = f"{type(error).__name__}: {error}"
    return pd.DataFrame([row])


def fit_groups(
    df: SparkDataFrame,
    group_col: str,
    estimator: BayesianEstimator,
    feature_cols: Sequence[str],
    target_col: str,
    *,
    parent_run_id: str | None = None,
    partitions: int | None = None,
) -> pd.DataFrame:
    """Fit a clone of ``estimator`` to each group of ``df`` on Spark, each logged in a child run.

    Each group's fit runs on an executor, in a child run of the parent run named
    ``<group_col>=<value>`` and tagged ``pmlearn.group``, where its parameters, the fit's
    metrics (as autolog logs them, with the training score) and its ``pmlearn`` model
    (``name="model"``) are logged. The executors log to this process's tracking URI, so
    it (and its artifact store) must be reachable from them: a tracking server, or on one
    machine a local store.

    The fits run when this function is called and their results are collected (one row
    per group), so that no later Spark action fits and logs them again.

    Parameters
    ----------
    df : pyspark.sql.DataFrame
        The table: the group column, the features and the target.
    group_col : str
        The column whose values define the groups.
    estimator : BayesianEstimator
        An unfitted estimator, cloned for each group (set its inference settings here).
    feature_cols : sequence of str
        The feature columns, in the order the models take them.
    target_col : str
        The target column.
    parent_run_id : str, optional
        The parent run; by default the active run.
    partitions : int, optional
        The tasks the groups are spread over (by their value's hash), each fitting its
        groups one after another; by default ``spark.sql.shuffle.partitions``. The table is
        repartitioned explicitly because Spark's adaptive execution would otherwise merge
        the shuffle's small partitions (small for the work they carry) into one task that
        fits every group in turn.

    Returns
    -------
    pandas.DataFrame
        One row per group, in the order of the group values: the group column, ``run_id``,
        ``model_uri`` (missing where the fit failed), ``n_rows``, ``training_score`` (the
        estimator's ``score`` on the group's rows: R^2 for regressors) and ``error``
        (missing where the fit succeeded).
    """
    if parent_run_id is None:
        if mlflow.active_run() is None:
            raise MlflowException.invalid_parameter_value(
                "fit_groups logs each group's model in a child run: start the parent run first "
                "(with mlflow.start_run(): ...) or pass parent_run_id."
            )
        parent_run_id = mlflow.active_run().info.run_id
    feature_cols = list(feature_cols)
    missing = [c for c in [group_col, *feature_cols, target_col] if c not in df.columns]
    if missing:
        raise ValueError(f"The table has no column {missing}; its columns are {df.columns}.")
    settings = {
        "group_col": group_col,
        "estimator": clone(estimator),
        "feature_cols": feature_cols,
        "target_col": target_col,
        "parent_run_id": parent_run_id,
        "experiment_id": mlflow.get_run(parent_run_id).info.experiment_id,
        "tracking_uri": mlflow.get_tracking_uri(),
    }

    def fit(frame):  # no type hints: applyInPandas takes a plain function of a DataFrame
        return _fit_group(frame, **settings)

    schema = ", ".join(
        [
            f"`{group_col}` {df.schema[group_col].dataType.simpleString()}",
            *(f"{name} {kind}" for name, kind in RESULT_COLUMNS.items()),
        ]
    )
    partitions = partitions or int(df.sparkSession.conf.get("spark.sql.shuffle.partitions"))
    table = df.select(group_col, *feature_cols, target_col).repartition(partitions, group_col)
    fits = table.groupBy(group_col).applyInPandas(fit, schema).toPandas()
    return fits.sort_values(group_col, ignore_index=True)


class GroupedModel(mlflow.pyfunc.PythonModel):
    """pyfunc of one model per group: each row is predicted by the model of its group.

    The input has the group column besides the groups' features; the output is the groups'
    models' output (the same columns and ``params`` as a ``pmlearn`` model), row for row.
    A group's model is loaded the first time one of its rows comes, so a server or Spark
    task loads only the groups it sees. A row of a group without a model is refused
    (HTTP 400 from a server) with the group named.

    It is logged as a model from code (``_grouped_model.py``), not pickled: the group
    column and each group's folder are read from the ``groups`` artifact's ``routes.json``.
    MLflow runs that file from the model's folder at load, so a grouped model loads only
    where ``MLFLOW_ALLOW_MODEL_CODE_EXECUTION`` is not false; each group's model is then
    loaded as :func:`mlflow_pmlearn.load_model` loads a model (nothing of it runs code from
    its folder, unless it is bespoke).
    """

    def load_context(self, context) -> None:
        root = Path(context.artifacts[_GROUPS_ARTIFACT])
        model_dir = root.parent.parent
        refuse_model_code_unless_allowed("its grouped-model code (_grouped_model.py)", model_dir)
        expected = Path(_ARTIFACTS_FOLDER, _GROUPS_ARTIFACT)
        if root.parent.name != _ARTIFACTS_FOLDER or not (model_dir / "MLmodel").is_file():
            raise MlflowException(
                f"The groups of this grouped model are at {root}, not in its folder's {expected}; "
                "refusing to read them."
            )
        self._root = confined_path(model_dir, str(expected), "groups folder")
        routes = json.loads(confined_path(self._root, _ROUTES_FILE, "the routes of a grouped model").read_text())
        self.group_col = routes["group_col"]
        self.folders = {group: folder for group, folder in routes["folders"]}
        self._models: dict[Any, PmlearnModelWrapper] = {}

    def _model(self, group: Any):
        if group not in self._models:
            folder = confined_path(self._root, self.folders[group], f"the model of {self.group_col} {group!r}")
            signature = Model.load(str(folder)).signature
            self._models[group] = PmlearnModelWrapper(
                mlflow_pmlearn.load_model(str(folder)), probabilities_by_default=probabilities_by_default(signature)
            )
        return self._models[group]

    def predict(self, context, model_input: pd.DataFrame, params: dict[str, Any] | None = None) -> pd.DataFrame:
        """Each row's prediction by its group's model, in the rows' order (``params`` as for a group)."""
        groups = model_input[self.group_col]
        unknown = sorted({g for g in groups.unique() if g not in self.folders}, key=str)
        if unknown:
            raise MlflowException.invalid_parameter_value(
                f"No model for {self.group_col} {unknown[:10]}; this model has {len(self.folders)} groups."
            )
        features = model_input.drop(columns=self.group_col)
        positions = groups.groupby(groups, sort=False).indices
        parts = [
            self._model(group).predict(features.iloc[rows], params=params).set_axis(rows)
            for group, rows in positions.items()
        ]
        return pd.concat(parts).sort_index().set_axis(model_input.index)


def _group_value(value: Any) -> Any:
    """A group value as plain Python, as JSON keeps it."""
    return value.item() if isinstance(value, np.generic) else value


def _requirements(group_dir: Path) -> list[str]:
    """A group model's requirements (this release among them, pinned)."""
    return [line for line in (group_dir / _REQUIREMENTS_FILE_NAME).read_text().splitlines() if line]


def log_grouped_model(
    fits: pd.DataFrame,
    group_col: str,
    *,
    name: str = "model",
    registered_model_name: str | None = None,
) -> ModelInfo:
    """Log one :class:`GroupedModel` of the groups' models in the active run (the parent).

    The groups' models are copied into the grouped model, so it serves without the
    child runs; its signature is a group model's, with the group column first. Each
    group's child run is kept in the logged model's metadata (``group_runs``).

    Parameters
    ----------
    fits : pandas.DataFrame
        :func:`fit_groups`'s result, or any frame with the group column and ``model_uri``
        (and ``run_id``): a row per group; rows without a ``model_uri`` are left out.
    group_col : str
        The group column.
    name : str, default="model"
        The model's name in the run.
    registered_model_name : str, optional
        Register the model as a new version of this registered model (created if absent).

    Returns
    -------
    mlflow.models.model.ModelInfo
        The logged model's information.
    """
    fitted = fits[fits["model_uri"].notna()]
    if fitted.empty:
        raise MlflowException.invalid_parameter_value("No group has a model: every fit failed (see `error`).")
    with tempfile.TemporaryDirectory() as directory:
        root = Path(directory) / _GROUPS_ARTIFACT
        folders = {}
        for number, (group, uri) in enumerate(zip(fitted[group_col], fitted["model_uri"])):
            folders[_group_value(group)] = f"{number:06d}"
            mlflow.artifacts.download_artifacts(uri, dst_path=str(root / f"{number:06d}"))
        (root / _ROUTES_FILE).write_text(json.dumps({"group_col": group_col, "folders": list(folders.items())}))
        first = Model.load(str(root / next(iter(folders.values()))))
        inputs = infer_signature(fitted[[group_col]]).inputs.inputs + first.signature.inputs.inputs
        signature = ModelSignature(Schema(inputs), first.signature.outputs, first.signature.params)
        return mlflow.pyfunc.log_model(
            name=name,
            python_model=str(_MODEL_CODE),
            artifacts={_GROUPS_ARTIFACT: str(root)},
            signature=signature,
            pip_requirements=_requirements(root / next(iter(folders.values()))),
            metadata={
                "group_column": group_col,
                "group_runs": dict(zip(map(str, fitted[group_col]), fitted["run_id"])),
            },
            registered_model_name=registered_model_name,
        )
