"""The code of a grouped model (:class:`~mlflow_pmlearn.spark_groups.GroupedModel`), which MLflow
logs as a "model from code" and runs at load: nothing is unpickled."""

import mlflow

from mlflow_pmlearn.spark_groups import GroupedModel

mlflow.models.set_model(GroupedModel())
