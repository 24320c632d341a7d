"""Models saved by mlflow-pmlearn 0.1.0 and 0.2.0 load with the installed release and predict as they did.

``fixtures/models_0_1_0`` holds one small model per built-in family and the bespoke
example, saved by 0.1.0 on Python 3.11 / PyMC 5, and ``fixtures/models_0_2_0`` the same
models saved by 0.2.0 on Python 3.12 / PyMC 6 (each ``make_fixtures.py`` says how), each
with new input rows and the pyfunc predictions its release made for them. Each is loaded straight
from the fixture directory, both as its estimator and through ``mlflow.pyfunc``, and must
predict the stored values, import the bespoke class from the model's own ``code/`` copy
(not from ``examples/``), and leave every file of the model as it was.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import mlflow
import mlflow.pyfunc
import numpy as np
import pandas as pd
import pytest
from mlflow.models import Model
from pandas.api.types import is_float_dtype

import estimators
import mlflow_pmlearn
from mlflow_pmlearn.pyfunc import PmlearnModelWrapper, probabilities_by_default
from mlflow_pmlearn.serialization import BUILTIN_ESTIMATORS, CONFIG_FILE

#: Each earlier release's fixtures.
FIXTURES = {
    release: Path(__file__).resolve().parents[1] / "fixtures" / f"models_{release.replace('.', '_')}"
    for release in ("0.1.0", "0.2.0")
}
SAVED_MODELS = [
    (release, path.name)
    for release, folder in FIXTURES.items()
    for path in sorted(folder.iterdir())
    if (path / "model").is_dir()
]
#: The bespoke example's module, as the saved model names it (``robust_regression.RobustRegression``).
BESPOKE_MODULE = "robust_regression"

#: Relative tolerance between today's predictions and those stored by 0.1.0 or 0.2.0. The stack that
#: saved them (Python 3.11, PyMC 5.28, PyTensor 2 compiling C, ArviZ 0.23) and today's
#: (PyMC 6, PyTensor 3 compiling with Numba, xarray's reader) run the same computation on
#: the same numbers: the posterior draws are read back from ``trace.nc`` bit for bit, and
#: the predictive uniforms come from the stored seed through NumPy's generator. Only the
#: compiled code's floating-point order of operations (Numba's fast-math rewrites, BLAS
#: summation order) differs. Measured: at most 2e-15 relative for the linear, mixture,
#: naive Bayes and MLP models, 1e-13 for the GPs and 1.7e-11 for the Student-t process
#: (its Cholesky solves amplify rounding by the kernel matrix's condition number): well
#: under 1e-9, while a different draw, seed or dropped parameter uncertainty moves the
#: second digit. The 0.2.0 models, saved on today's stack, are not predicted bit for bit
#: either (today's compiled predictors are other graphs): measured, at most 3.5e-15 for the
#: linear, mixture, naive Bayes, MLP and robust models, 1.3e-13 for the GPs and 1.6e-11
#: for the Student-t process; the labels, logistic and MLP probabilities exactly.
#: Labels and component indices are compared exactly.
RTOL = 1e-9

LOADERS = {
    # Wrapped as the flavor wraps a model that 0.1.0 or 0.2.0 saved: its classifiers answer probabilities unasked.
    "mlflow_pmlearn.load_model": lambda path: PmlearnModelWrapper(
        mlflow_pmlearn.load_model(path),
        probabilities_by_default=probabilities_by_default(Model.load(path).signature),
    ),
    "mlflow.pyfunc.load_model": mlflow.pyfunc.load_model,
}


def _read_json(path: Path):
    return json.loads(path.read_text())


def _frame(split: dict) -> pd.DataFrame:
    return pd.DataFrame(split["data"], columns=split["columns"])


def _file_states(directory: Path) -> dict[str, tuple]:
    """Every file and folder under ``directory``: files by SHA-256, size and modification time."""
    states = {}
    for path in sorted(directory.rglob("*")):
        relative = str(path.relative_to(directory))
        if path.is_file():
            status = path.stat()
            states[relative] = (hashlib.sha256(path.read_bytes()).hexdigest(), status.st_size, status.st_mtime_ns)
        else:
            states[relative] = ("folder",)
    return states


@pytest.fixture
def release() -> str:
    """The release that saved the model; tests about one release's models only take 0.1.0's."""
    return "0.1.0"


@pytest.fixture
def saved_model(release, name) -> Path:
    """The fixture directory of model ``name``, checked to hold exactly the files ``release`` saved.

    Whatever a load adds to the model directory is removed afterwards, so that one test's
    write can neither fail nor hide the next one's.
    """
    fixture = FIXTURES[release] / name
    model_dir = fixture / "model"
    states = _file_states(model_dir)
    saved = {path: state[0] for path, state in states.items() if state[0] != "folder"}
    assert saved == _read_json(fixture / "model_sha256.json"), (
        f"{model_dir} no longer holds exactly the files {release} saved: the fixture was edited"
    )
    yield fixture
    for path in sorted(model_dir.rglob("*"), reverse=True):  # a folder's files before the folder
        if str(path.relative_to(model_dir)) not in states:
            path.rmdir() if path.is_dir() else path.unlink()


@pytest.fixture
def default_imports(monkeypatch):
    """Import as Python does by default, and undo what loading a model does to the process.

    Bytecode writing is on (some machines turn it off with PYTHONDONTWRITEBYTECODE, which
    would hide a write into the model). Loading puts the model's ``code/`` first on
    ``sys.path`` and may import the bespoke module from there: both are undone after the
    test. The bespoke module is also taken out of ``sys.modules`` for the test
    (test_flavor imports the example's own file under that name), so that the model's copy
    is the one imported; the earlier module, if any, is put back afterwards.
    """
    monkeypatch.setattr(sys, "dont_write_bytecode", False)
    monkeypatch.setattr(sys, "path", list(sys.path))
    monkeypatch.delitem(sys.modules, BESPOKE_MODULE, raising=False)
    yield
    sys.modules.pop(BESPOKE_MODULE, None)


@pytest.mark.parametrize("loader", LOADERS)
@pytest.mark.parametrize(("release", "name"), SAVED_MODELS)
def test_model_saved_by_an_earlier_release_loads_and_predicts_as_saved(saved_model, loader, default_imports):
    model_dir = saved_model / "model"
    before = _file_states(model_dir)
    stored = _read_json(saved_model / "predictions.json")

    model = LOADERS[loader](str(model_dir))
    frame = model.predict(_frame(_read_json(saved_model / "input.json")), params=stored["params"])

    expected = _frame(stored["predictions"])
    assert list(frame.columns) == list(expected.columns)
    for column in expected:
        if is_float_dtype(expected[column]):
            np.testing.assert_allclose(
                frame[column].to_numpy(dtype=float), expected[column], rtol=RTOL, atol=0, err_msg=column
            )
        else:
            assert frame[column].tolist() == expected[column].tolist(), column

    # What ran: the bespoke class from the model's code/ copy, and this package only from
    # the installed release, which the process had imported (never a mix with the copy).
    assert sys.modules["mlflow_pmlearn"] is mlflow_pmlearn
    assert sys.modules["estimators"].__file__ == estimators.__file__
    if _read_json(model_dir / "estimator" / CONFIG_FILE)["estimator_class"] not in BUILTIN_ESTIMATORS:
        class_module = sys.modules[type(model.get_raw_model()).__module__]
        assert Path(class_module.__file__).resolve() == (model_dir / "code" / f"{BESPOKE_MODULE}.py").resolve()
    copies = [
        module_name
        for module_name, module in sys.modules.items()
        if module_name.split(".")[0] in ("estimators", "mlflow_pmlearn")
        and Path(getattr(module, "__file__", None) or "/").resolve().is_relative_to(model_dir.resolve())
    ]
    assert copies == []

    after = _file_states(model_dir)
    written = sorted(path for path in before.keys() | after.keys() if before.get(path) != after.get(path))
    assert written == [], "loading or predicting wrote into the model's files"


#: The classifiers among each release's fixtures.
CLASSIFIERS = ["GaussianNB", "HierarchicalLogisticRegression", "LogisticRegression", "MLPClassifier"]


@pytest.mark.parametrize("release", FIXTURES)
@pytest.mark.parametrize("name", CLASSIFIERS)
def test_classifiers_of_earlier_releases_answer_their_probabilities_unasked(saved_model):
    """0.1.0's and 0.2.0's classifiers answered labels and probabilities with no params, and
    their signatures declare no ``predict_proba``: the stored predictions that
    test_model_saved_by_an_earlier_release_loads_and_predicts_as_saved reproduces hold both."""
    model_dir = saved_model / "model"
    assert probabilities_by_default(Model.load(str(model_dir)).signature)
    stored = _read_json(saved_model / "predictions.json")
    classes = _read_json(model_dir / "estimator" / CONFIG_FILE)["fitted_state"]["classes_"]
    assert stored["params"] == {}
    assert stored["predictions"]["columns"] == ["prediction", *(f"proba_{label}" for label in classes)]


#: Loads a model with ``mlflow.pyfunc`` in a fresh process, after the given imports, and
#: prints its predictions (or the error) and where each module of this package came from.
FRESH_PYFUNC_LOAD = """
import json, sys
exec(sys.argv[1])
import mlflow.pyfunc, pandas as pd
model_dir, rows, params = sys.argv[2], json.loads(sys.argv[3]), json.loads(sys.argv[4])
try:
    frame = mlflow.pyfunc.load_model(model_dir).predict(
        pd.DataFrame(rows["data"], columns=rows["columns"]), params=params
    )
    result = {"predictions": json.loads(frame.to_json(orient="split", index=False))}
except Exception as error:
    result = {"error": repr(error)}
result["module_files"] = {
    name: module.__file__ for name, module in sys.modules.items()
    if name.split(".")[0] in ("estimators", "mlflow_pmlearn") and getattr(module, "__file__", None)
}
print("RESULT " + json.dumps(result))
"""


def _fresh_pyfunc_load(model_dir: Path, first_imports: str, stored: dict, rows: dict) -> tuple[dict, str]:
    finished = subprocess.run(
        [
            sys.executable,
            "-c",
            FRESH_PYFUNC_LOAD,
            first_imports,
            str(model_dir),
            json.dumps(rows),
            json.dumps(stored["params"]),
        ],
        capture_output=True,
        text=True,
        timeout=600,
        env={k: v for k, v in os.environ.items() if k != "PYTHONPATH"},
    )
    assert finished.returncode == 0, finished.stderr[-3000:]
    (line,) = [line for line in finished.stdout.splitlines() if line.startswith("RESULT ")]
    return json.loads(line[len("RESULT ") :]), finished.stderr


@pytest.mark.slow
@pytest.mark.parametrize("name", ["LinearRegression"])
def test_fresh_process_runs_the_installed_release_once_it_is_imported(saved_model):
    """Once a process has imported this release's ``mlflow_pmlearn``, a 0.1.0 model loaded
    through ``mlflow.pyfunc`` (which puts the model's ``code/`` first on ``sys.path``) runs
    the installed release, both packages of it, and predicts as saved."""
    model_dir = saved_model / "model"
    before = _file_states(model_dir)
    stored = _read_json(saved_model / "predictions.json")
    result, _ = _fresh_pyfunc_load(model_dir, "import mlflow_pmlearn", stored, _read_json(saved_model / "input.json"))

    assert "error" not in result, result.get("error")
    installed = Path(estimators.__file__).resolve().parents[1]
    for module_name, module_file in result["module_files"].items():
        assert Path(module_file).resolve().is_relative_to(installed), (module_name, module_file)
    assert {"estimators", "mlflow_pmlearn"} <= set(result["module_files"])
    np.testing.assert_allclose(result["predictions"]["data"], stored["predictions"]["data"], rtol=RTOL, atol=0)
    assert _file_states(model_dir) == before, "loading or predicting wrote into the model's files"


@pytest.mark.slow
@pytest.mark.parametrize("name", ["LinearRegression", "RobustRegression"])
def test_a_migrated_model_runs_the_installed_release_in_any_fresh_process(saved_model, tmp_path):
    """``python -m mlflow_pmlearn migrate`` re-saves a 0.1.0 model in the current format: it names
    no code for the pyfunc, so a fresh process that imported nothing runs the installed release
    (a bespoke class from the migrated model's own code) and predicts as 0.1.0 stored."""
    migrated = tmp_path / "migrated"
    finished = subprocess.run(
        [sys.executable, "-m", "mlflow_pmlearn", "migrate", str(saved_model / "model"), "--output", str(migrated)],
        capture_output=True,
        text=True,
        timeout=600,
        env={k: v for k, v in os.environ.items() if k != "PYTHONPATH"},
    )
    assert finished.returncode == 0 and "saved the migrated model in" in finished.stdout, finished.stderr[-3000:]
    assert "code" not in mlflow.models.Model.load(str(migrated)).flavors["python_function"]
    stored = _read_json(saved_model / "predictions.json")
    result, _ = _fresh_pyfunc_load(migrated, "", stored, _read_json(saved_model / "input.json"))

    assert "error" not in result, result.get("error")
    installed = Path(estimators.__file__).resolve().parents[1]
    for module_name, module_file in result["module_files"].items():
        assert Path(module_file).resolve().is_relative_to(installed), (module_name, module_file)
    np.testing.assert_allclose(result["predictions"]["data"], stored["predictions"]["data"], rtol=RTOL, atol=0)


@pytest.mark.parametrize("name", ["LinearRegression"])
def test_migrating_a_registered_version_registers_the_next_one(saved_model, mlflow_experiment):
    from mlflow_pmlearn.migration import MIGRATED_FROM_TAG, migrate

    with mlflow.start_run() as run:
        mlflow.log_artifacts(str(saved_model / "model"), "model")
    name = f"migrate-{run.info.run_id}"
    mlflow.register_model(f"runs:/{run.info.run_id}/model", name)
    info = migrate(f"models:/{name}/1")

    assert info.registered_model_version == 2
    version = mlflow.MlflowClient().get_model_version(name, "2")
    assert version.tags[MIGRATED_FROM_TAG] == f"models:/{name}/1"
    stored = _read_json(saved_model / "predictions.json")
    frame = mlflow.pyfunc.load_model(f"models:/{name}/2").predict(
        _frame(_read_json(saved_model / "input.json")), params=stored["params"]
    )
    np.testing.assert_allclose(frame.to_numpy(dtype=float), stored["predictions"]["data"], rtol=RTOL, atol=0)


@pytest.mark.parametrize("name", ["LogisticRegression"])
def test_a_migrated_classifier_keeps_answering_its_probabilities(saved_model, tmp_path):
    """0.1.0's classifiers answered labels and probabilities unasked: migrated, they still do."""
    from mlflow_pmlearn.migration import migrate

    migrated = migrate(str(saved_model / "model"), output_path=tmp_path / "migrated")
    params = Model.load(str(migrated)).signature.params
    assert [spec.name for spec in params.params] == ["draws"]
    stored = _read_json(saved_model / "predictions.json")
    frame = mlflow.pyfunc.load_model(str(migrated)).predict(_frame(_read_json(saved_model / "input.json")))
    expected = _frame(stored["predictions"])
    assert list(frame.columns) == list(expected.columns)
    assert frame["prediction"].tolist() == expected["prediction"].tolist()
    np.testing.assert_allclose(frame.iloc[:, 1:], expected.iloc[:, 1:], rtol=RTOL, atol=0)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["LinearRegression"])
def test_fresh_process_that_imported_neither_package_runs_the_models_own_copy(saved_model):
    """MLflow imports the model's loader from its ``code/`` first: a process that has not
    imported this package runs the 0.1.0 copy the model carries, both packages of it, never
    a mix. That copy needs PyMC 5, so here, on PyMC 6, it fails, and MLflow's warning names
    the versions the model needs and how to get its environment (or serve it with
    ``--env-manager uv``, tested in test_model_environment)."""
    model_dir = saved_model / "model"
    stored = _read_json(saved_model / "predictions.json")
    result, stderr = _fresh_pyfunc_load(model_dir, "", stored, _read_json(saved_model / "input.json"))

    copy = (model_dir / "code").resolve()
    assert {"estimators", "mlflow_pmlearn"} <= set(result["module_files"])
    for module_name, module_file in result["module_files"].items():
        assert Path(module_file).resolve().is_relative_to(copy), (module_name, module_file)
    assert "error" in result
    versions = _read_json(FIXTURES["0.1.0"] / "versions.json")
    assert f"required: pymc=={versions['pymc']}" in stderr
    assert "mlflow.pyfunc.get_model_dependencies" in stderr
