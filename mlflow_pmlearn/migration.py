"""Re-save a model of an earlier mlflow-pmlearn release in the current format.

Models saved by 0.1.0 carry a copy of that release in ``code/`` and name it for the pyfunc
flavor: ``mlflow.pyfunc.load_model`` in a process that has not imported this release runs
that copy, which needs PyMC 5. ``mlflow_pmlearn.load_model`` reads every earlier format
with this release (nothing from ``code/`` runs for a built-in estimator), so migrating is a
load and a save: the posterior, the settings, the signature and the metadata are kept, the
predictions are the same, and the new model names no code.

From the shell::

    python -m mlflow_pmlearn migrate models:/NAME/VERSION      # registers NAME's next version
    python -m mlflow_pmlearn migrate PATH --output NEW_PATH     # a model folder, saved anew
"""

from __future__ import annotations

import argparse
import copy
import os
from pathlib import Path

import mlflow
from mlflow.exceptions import MlflowException
from mlflow.models import Model, ModelSignature
from mlflow.models.model import ModelInfo
from mlflow.store.artifact.utils.models import get_model_name_and_version
from mlflow.tracking.artifact_utils import _download_artifact_from_uri

import mlflow_pmlearn
from mlflow_pmlearn.environment import IMPORT_PACKAGES
from mlflow_pmlearn.pipelines import final_estimator
from mlflow_pmlearn.pyfunc import params_schema
from mlflow_pmlearn.versions import FLAVOR_NAME

#: The tag a migrated model version carries: the URI it was migrated from.
MIGRATED_FROM_TAG = "pmlearn.migrated_from"


def _bespoke_code(model_dir: Path, model: object) -> list[str] | None:
    """The files of the model's ``code/`` a bespoke estimator needs: all but 0.1.0's copy of this release."""
    estimator = final_estimator(model)[1]
    code = model_dir / "code"
    if type(estimator).__module__.partition(".")[0] in IMPORT_PACKAGES or not code.is_dir():
        return None
    return [str(path) for path in sorted(code.iterdir()) if path.name not in (*IMPORT_PACKAGES, "__pycache__")] or None


def _kept_signature(signature: ModelSignature | None, model: object) -> ModelSignature | None:
    """The saved signature; one without params gets this release's, less ``predict_proba``.

    So a classifier keeps answering its class probabilities unasked, as a signature without
    ``predict_proba`` says it does (:func:`~mlflow_pmlearn.pyfunc.probabilities_by_default`);
    a signature with params (0.2.0's) is kept as it is, and says so already.
    """
    if signature is None or signature.params is not None:
        return signature
    kept = copy.copy(signature)
    kept.params = params_schema(final_estimator(model)[1], probabilities_param=False)
    return kept


def migrate(model_uri: str, output_path: str | os.PathLike | None = None) -> ModelInfo | Path:
    """Re-save the pmlearn model at ``model_uri`` in the current format.

    Parameters
    ----------
    model_uri : str
        ``models:/NAME/VERSION`` (or ``models:/NAME@ALIAS``): the migrated model is logged in
        a new run and registered as NAME's next version, tagged with where it came from.
        Any other URI or path needs ``output_path``.
    output_path : path, optional
        Save the migrated model in this new folder instead of registering it.

    Returns
    -------
    ModelInfo or Path
        The registered model's information, or the folder written.
    """
    local = Path(_download_artifact_from_uri(artifact_uri=model_uri))
    saved = Model.load(str(local))
    if FLAVOR_NAME not in saved.flavors:
        raise MlflowException.invalid_parameter_value(
            f"{model_uri} is not a pmlearn model (its flavors: {list(saved.flavors)})."
        )
    model = mlflow_pmlearn.load_model(str(local))
    keep = {"signature": _kept_signature(saved.signature, model), "metadata": saved.metadata}
    keep["code_paths"] = _bespoke_code(local, model)
    if output_path is not None:
        mlflow_pmlearn.save_model(model, output_path, **keep)
        return Path(output_path)
    if not model_uri.startswith("models:/"):
        raise MlflowException.invalid_parameter_value(
            f"{model_uri} is not a registered model version: give output_path to save the migrated model in a folder."
        )
    name = get_model_name_and_version(mlflow.MlflowClient(), model_uri)[0]
    with mlflow.start_run(run_name=f"migrate {name}"):
        info = mlflow_pmlearn.log_model(model, name="model", registered_model_name=name, **keep)
    mlflow.MlflowClient().set_model_version_tag(name, info.registered_model_version, MIGRATED_FROM_TAG, model_uri)
    return info


def main(argv: list[str] | None = None) -> None:
    """``python -m mlflow_pmlearn migrate MODEL_URI [--output PATH]``."""
    parser = argparse.ArgumentParser(prog="python -m mlflow_pmlearn", description="mlflow-pmlearn commands.")
    commands = parser.add_subparsers(dest="command", required=True)
    command = commands.add_parser("migrate", help=migrate.__doc__.splitlines()[0])
    command.add_argument("model_uri", help="models:/NAME/VERSION, or a model's URI or folder with --output")
    command.add_argument("--output", help="save the migrated model in this new folder instead of registering it")
    arguments = parser.parse_args(argv)
    result = migrate(arguments.model_uri, arguments.output)
    if isinstance(result, Path):
        print(f"saved the migrated model in {result}")
    else:
        print(f"registered the migrated model as version {result.registered_model_version} ({result.model_uri})")
