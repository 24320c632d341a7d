"""The ``pmlearn`` MLflow flavor against a real MLflow: sqlite tracking store and registry.

No mocks: models are saved to disk, logged to runs, registered, loaded back by URI (run,
version, alias) and, for bespoke classes, in a fresh Python process that can only import
them from the code shipped with the model.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import json
import os
import platform
import shutil
import subprocess
import sys
import textwrap
import uuid
from pathlib import Path

import mlflow
import mlflow.pyfunc
import numpy as np
import pandas as pd
import pytest
import yaml
from conftest import FAST
from mlflow.exceptions import MlflowException
from mlflow.models import Model, ModelSignature
from mlflow.models.model import ModelInfo
from mlflow.tracking import MlflowClient
from mlflow.types.schema import ColSpec, ParamSchema, ParamSpec, Schema
from references import assert_linear_regression_frame_within_monte_carlo_error, logistic_regression_proba
from sklearn.exceptions import NotFittedError

import mlflow_pmlearn
from estimators.linear_model import HierarchicalLogisticRegression, LinearRegression, LogisticRegression
from mlflow_pmlearn import serialization
from mlflow_pmlearn.serialization import BUILTIN_ESTIMATORS, CONFIG_FILE, FORMAT_VERSION, load_estimator

REPO = Path(__file__).resolve().parents[2]
BESPOKE_FILE = REPO / "examples" / "bespoke" / "robust_regression.py"
N_TRAIN = 150
#: The requirement that installs this release from the wheel every model carries.
RELEASE = f"mlflow-pmlearn=={mlflow_pmlearn.__version__}"


def _import_bespoke():
    """The example module, imported from its file under its own name (as a user would)."""
    module = sys.modules.get("robust_regression")
    if module is None:
        spec = importlib.util.spec_from_file_location("robust_regression", BESPOKE_FILE)
        module = importlib.util.module_from_spec(spec)
        sys.modules["robust_regression"] = module
        spec.loader.exec_module(module)
    return module


class PickledRegression(LinearRegression):
    """A bespoke class defined here, in the test module: shipped only by cloudpickle."""

    marker = "defined-in-test-module"


def _file_bytes(directory: Path) -> dict[str, bytes]:
    return {
        str(path.relative_to(directory)): path.read_bytes() for path in sorted(directory.rglob("*")) if path.is_file()
    }


def _staging_leftovers(parent: Path) -> list[str]:
    return [p.name for p in parent.iterdir() if ".saving-" in p.name]


def _use_new_experiment(tmp_path_factory, label: str) -> None:
    """A fresh experiment whose artifacts go to a temporary directory (not ./mlruns)."""
    artifacts = tmp_path_factory.mktemp(f"artifacts-{label}")
    experiment_id = mlflow.create_experiment(
        f"test_flavor-{label}-{uuid.uuid4().hex[:8]}", artifact_location=artifacts.as_uri()
    )
    mlflow.set_experiment(experiment_id=experiment_id)


def _rewrite_config(model_dir: Path, **changes) -> None:
    config_path = model_dir / "estimator" / CONFIG_FILE
    config = json.loads(config_path.read_text())
    config.update(changes)
    config_path.write_text(json.dumps(config))


# -- fitted models, shared by the whole module --------------------------------------------


@pytest.fixture(scope="module")
def regression(regression_data):
    X, y, _ = regression_data
    X, y = X.iloc[:N_TRAIN], y.iloc[:N_TRAIN]
    return LinearRegression(**FAST).fit(X, y), X


@pytest.fixture(scope="module")
def classification(binary_data):
    X, y, _ = binary_data
    X, y = X.iloc[:N_TRAIN], y.iloc[:N_TRAIN]
    return LogisticRegression(**FAST).fit(X, y), X


@pytest.fixture(scope="module")
def hierarchical():
    rng = np.random.default_rng(3)
    X = pd.DataFrame({"x": rng.normal(size=N_TRAIN), "store": rng.choice(["north", "south", "east"], N_TRAIN)})
    logits = X["x"] + X["store"].map({"north": -1.0, "south": 0.0, "east": 1.0})
    y = np.where(rng.uniform(size=N_TRAIN) < 1 / (1 + np.exp(-logits)), "buy", "skip")
    model = HierarchicalLogisticRegression(group_col="store", **FAST).fit(X, y)
    X_new = pd.DataFrame({"x": [-1.0, 0.0, 1.0, 0.5], "store": ["north", "east", "never-seen", "south"]})
    return model, X_new


@pytest.fixture(scope="module")
def robust():
    module = _import_bespoke()
    X, y = module.make_data(n_samples=N_TRAIN, n_outliers=8, seed=1)
    return module.RobustRegression(**FAST).fit(X, y), X


@pytest.fixture(scope="module")
def saved(tmp_path_factory, regression, classification, hierarchical):
    """Each built-in saved once with ``save_model`` (no input example: inferred signature)."""
    root = tmp_path_factory.mktemp("saved")
    paths = {}
    for name, (model, _) in {"linear": regression, "logistic": classification, "hierarchical": hierarchical}.items():
        paths[name] = root / name
        mlflow_pmlearn.save_model(model, paths[name])
    return paths


@pytest.fixture(scope="module")
def registered(tracking_uri, tmp_path_factory, regression, classification):
    """The regressor and the classifier logged in one run and registered."""
    _use_new_experiment(tmp_path_factory, "registry")
    suffix = uuid.uuid4().hex[:8]
    names = {"linear": f"pmlearn-linear-{suffix}", "logistic": f"pmlearn-logistic-{suffix}"}
    with mlflow.start_run() as run:
        infos = {
            "linear": mlflow_pmlearn.log_model(
                regression[0], name="linear", registered_model_name=names["linear"], input_example=regression[1].head(3)
            ),
            "logistic": mlflow_pmlearn.log_model(
                classification[0], name="logistic", registered_model_name=names["logistic"]
            ),
        }
    return {"run_id": run.info.run_id, "names": names, "infos": infos}


# -- save_model -> load_model -------------------------------------------------------------


def test_regressor_round_trip_predicts_identically(regression, saved):
    model, X = regression
    loaded = mlflow_pmlearn.load_model(str(saved["linear"]))
    assert type(loaded) is LinearRegression
    assert loaded.get_params() == model.get_params()
    assert list(loaded.feature_names_in_) == ["x0", "x1", "x2"]
    np.testing.assert_array_equal(loaded.predict(X), model.predict(X))
    for got, expected in zip(loaded.predict(X, return_std=True), model.predict(X, return_std=True)):
        np.testing.assert_array_equal(got, expected)
    np.testing.assert_array_equal(loaded.predict_interval(X, prob=0.8), model.predict_interval(X, prob=0.8))
    np.testing.assert_array_equal(loaded.coef_, model.coef_)


def test_classifier_with_string_labels_round_trips(classification, saved):
    model, X = classification
    loaded = mlflow_pmlearn.load_model(str(saved["logistic"]))
    assert type(loaded) is LogisticRegression
    assert list(loaded.classes_) == ["no", "yes"]
    np.testing.assert_array_equal(loaded.predict_proba(X), model.predict_proba(X))
    np.testing.assert_array_equal(loaded.predict(X), model.predict(X))
    assert set(loaded.predict(X)) <= {"no", "yes"}


def test_hierarchical_round_trip_with_unseen_group(hierarchical, saved):
    model, X_new = hierarchical
    loaded = mlflow_pmlearn.load_model(str(saved["hierarchical"]))
    assert type(loaded) is HierarchicalLogisticRegression
    assert list(loaded.groups_) == ["east", "north", "south"]
    proba = loaded.predict_proba(X_new)
    np.testing.assert_array_equal(proba, model.predict_proba(X_new))
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)
    np.testing.assert_array_equal(loaded.predict(X_new), model.predict(X_new))
    # The pyfunc face takes the same DataFrame (string group column, unseen group included).
    frame = mlflow.pyfunc.load_model(str(saved["hierarchical"])).predict(X_new)
    assert list(frame.columns) == ["prediction", "proba_buy", "proba_skip"]
    np.testing.assert_array_equal(frame[["proba_buy", "proba_skip"]].to_numpy(), proba)


# -- log_model, the registry, pyfunc ------------------------------------------------------


def test_log_model_returns_model_info_and_registers(registered):
    client = MlflowClient()
    for key, info in registered["infos"].items():
        assert isinstance(info, ModelInfo)
        assert info.run_id == registered["run_id"]
        assert info.registered_model_version == 1
        assert mlflow_pmlearn.FLAVOR_NAME in info.flavors
        versions = client.search_model_versions(f"name='{registered['names'][key]}'")
        assert [int(v.version) for v in versions] == [1]
        assert versions[0].run_id == registered["run_id"]


def test_registered_regressor_serves_the_documented_frame(registered, regression):
    model, X = regression
    served = mlflow.pyfunc.load_model(f"models:/{registered['names']['linear']}/1")
    summary = model.predict_summary(X, interval_prob=0.9)

    plain = served.predict(X)
    assert list(plain.columns) == ["prediction"]
    np.testing.assert_array_equal(plain["prediction"].to_numpy(), summary["mean"])

    with_std = served.predict(X, params={"return_std": True})
    assert list(with_std.columns) == ["prediction", "std"]
    np.testing.assert_array_equal(with_std["std"].to_numpy(), summary["std"])
    assert (with_std["std"] > 0).all()

    with_interval = served.predict(X, params={"interval_prob": 0.9})
    assert list(with_interval.columns) == ["prediction", "lower", "upper"]
    np.testing.assert_array_equal(with_interval["lower"].to_numpy(), summary["lower"])
    np.testing.assert_array_equal(with_interval["upper"].to_numpy(), summary["upper"])
    assert (with_interval["lower"] < with_interval["prediction"]).all()
    assert (with_interval["prediction"] < with_interval["upper"]).all()
    # Independently of our code: the posterior predictive of the model's own draws.
    served_frame = with_interval.assign(std=with_std["std"])
    assert_linear_regression_frame_within_monte_carlo_error(served_frame, model, X, interval_prob=0.9)


def test_registered_classifier_serves_labels_and_probabilities(registered, classification):
    model, X = classification
    frame = mlflow.pyfunc.load_model(f"models:/{registered['names']['logistic']}/1").predict(X)
    assert list(frame.columns) == ["prediction", "proba_no", "proba_yes"]
    proba = frame[["proba_no", "proba_yes"]].to_numpy()
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)
    np.testing.assert_array_equal(proba, model.predict_proba(X))
    np.testing.assert_allclose(proba, logistic_regression_proba(model, X), atol=1e-9)
    np.testing.assert_array_equal(frame["prediction"].to_numpy(), model.predict(X))


def test_load_by_alias(registered, regression):
    model, X = regression
    name = registered["names"]["linear"]
    MlflowClient().set_registered_model_alias(name, "champion", "1")
    served = mlflow.pyfunc.load_model(f"models:/{name}@champion")
    np.testing.assert_array_equal(served.predict(X)["prediction"].to_numpy(), model.predict(X))
    native = mlflow_pmlearn.load_model(f"models:/{name}@champion")
    np.testing.assert_array_equal(native.predict(X), model.predict(X))


def test_load_model_downloads_into_dst_path(registered, regression, tmp_path):
    model, X = regression
    uri = registered["infos"]["linear"].model_uri
    destination = tmp_path / "destination"
    destination.mkdir()
    loaded = mlflow_pmlearn.load_model(uri, dst_path=str(destination))
    np.testing.assert_array_equal(loaded.predict(X), model.predict(X))
    # The whole model is there, as stored, and loads from there alone.
    stored = Path(mlflow.artifacts.download_artifacts(uri, dst_path=str(tmp_path / "reference")))
    assert (destination / "MLmodel").is_file() and _file_bytes(destination) == _file_bytes(stored)
    from_destination = mlflow_pmlearn.load_model(str(destination))
    np.testing.assert_array_equal(from_destination.predict(X), model.predict(X))


# -- what is in the saved model -----------------------------------------------------------


def test_signature_is_inferred_with_inference_params(saved, registered):
    regressor = Model.load(str(saved["linear"])).signature
    assert regressor is not None
    assert [spec.name for spec in regressor.inputs.inputs] == ["x0", "x1", "x2"]
    params = {spec.name: spec for spec in regressor.params.params}
    assert set(params) == {"return_std", "interval_prob", "quantiles", "draws"}
    assert params["return_std"].default is False
    assert (params["quantiles"].default, params["quantiles"].shape, params["quantiles"].dtype.name) == (
        [],
        (-1,),
        "double",
    )
    assert (params["draws"].default, params["draws"].dtype.name) == (0, "long")
    assert [spec.name for spec in regressor.outputs.inputs] == ["prediction", "std", "lower", "upper"]

    classifier = Model.load(str(saved["logistic"])).signature
    assert [(spec.name, spec.default) for spec in classifier.params.params] == [("draws", 0)]
    assert [spec.name for spec in classifier.outputs.inputs] == ["prediction", "proba_no", "proba_yes"]

    hierarchical = Model.load(str(saved["hierarchical"])).signature
    types = {spec.name: spec.type.name for spec in hierarchical.inputs.inputs}
    assert types == {"x": "double", "store": "string"}

    logged = registered["infos"]["linear"].signature
    assert {spec.name for spec in logged.params.params} == {"return_std", "interval_prob", "quantiles", "draws"}
    assert registered["infos"]["linear"].saved_input_example_info is not None


def test_environment_pins_this_release(saved):
    """The model names its libraries pinned, this release among them, as MLflow's flavors pin
    theirs; it ships no copy of this package (no ``code/``, no wheel) that could shadow the
    installed one."""
    path = saved["linear"]
    requirements = (path / "requirements.txt").read_text().splitlines()
    names = {line.split("==")[0].split(">")[0].split("<")[0].strip().lower() for line in requirements}
    assert {"pymc", "pytensor", "arviz", "xarray", "h5netcdf", "h5py", "scikit-learn", "mlflow"} <= names
    assert requirements[1] == RELEASE
    conda = yaml.safe_load((path / "conda.yaml").read_text())
    assert any("pymc" in str(dep) for dep in conda["dependencies"])
    assert [dep for dep in conda["dependencies"] if isinstance(dep, dict)] == [{"pip": requirements}]
    assert not (path / "code").exists() and not (path / "wheels").exists()


def _assert_environment(path: Path, requirements: list[str]) -> None:
    """``requirements.txt`` is ``requirements``; ``conda.yaml`` and ``python_env.yaml`` install the same."""
    assert (path / "requirements.txt").read_text().splitlines() == requirements
    conda = yaml.safe_load((path / "conda.yaml").read_text())
    assert f"python={platform.python_version()}" in conda["dependencies"]
    assert [dep for dep in conda["dependencies"] if isinstance(dep, dict)] == [{"pip": requirements}]
    python_env = yaml.safe_load((path / "python_env.yaml").read_text())
    assert python_env["python"] == platform.python_version()
    assert python_env["dependencies"] == ["-r requirements.txt"]


def test_pip_requirements_replace_the_defaults(regression, tmp_path):
    model, _ = regression
    constraints = tmp_path / "my-constraints.txt"
    constraints.write_text("numpy<3\n")
    path = tmp_path / "model"
    mlflow_pmlearn.save_model(
        model, path, signature=False, pip_requirements=["pymc==5.28.0", "my-extra==1.0", f"-c {constraints}"]
    )
    _assert_environment(
        path, [f"mlflow=={mlflow.__version__}", RELEASE, "pymc==5.28.0", "my-extra==1.0", "-c constraints.txt"]
    )
    assert (path / "constraints.txt").read_text() == "numpy<3"


def test_extra_pip_requirements_add_to_the_defaults(regression, tmp_path):
    model, _ = regression
    path = tmp_path / "model"
    mlflow_pmlearn.save_model(model, path, signature=False, extra_pip_requirements=["my-extra==1.0"])
    defaults = mlflow_pmlearn.get_default_pip_requirements()
    assert f"pymc=={importlib.metadata.version('pymc')}" in defaults
    _assert_environment(path, [f"mlflow=={mlflow.__version__}", RELEASE, *defaults, "my-extra==1.0"])


def test_user_signature_is_kept_and_enforced(regression, tmp_path):
    """A signature of the user's is saved as given and is the one the pyfunc enforces: here
    ``x0`` declared an integer column (refusing fractions) and ``return_std`` on by default."""
    model, X = regression
    inputs = Schema([ColSpec("long", "x0"), ColSpec("double", "x1"), ColSpec("double", "x2")])
    outputs = Schema([ColSpec("double", "prediction"), ColSpec("double", "std", required=False)])
    signature = ModelSignature(inputs, outputs, ParamSchema([ParamSpec("return_std", "boolean", True)]))
    as_given = signature.to_dict()
    mlflow_pmlearn.save_model(model, tmp_path / "model", signature=signature)
    assert Model.load(str(tmp_path / "model")).signature.to_dict() == as_given
    served = mlflow.pyfunc.load_model(str(tmp_path / "model"))
    with pytest.raises(MlflowException, match="column x0.*float64 to int64"):
        served.predict(X.head(3))
    whole = X.head(5).assign(x0=X["x0"].head(5).round().astype("int64"))
    frame = served.predict(whole)
    assert list(frame.columns) == ["prediction", "std"]
    mean, std = model.predict(whole, return_std=True)
    np.testing.assert_array_equal(frame["prediction"].to_numpy(), mean)
    np.testing.assert_array_equal(frame["std"].to_numpy(), std)
    # Without params of its own, a signature gets the inference params (documented), on a
    # copy: the user's object is left as given.
    without_params = ModelSignature(inputs, outputs)
    mlflow_pmlearn.save_model(model, tmp_path / "no-params", signature=without_params)
    saved = Model.load(str(tmp_path / "no-params")).signature
    assert saved.inputs == inputs and saved.outputs == outputs
    assert {spec.name for spec in saved.params.params} == {"return_std", "interval_prob", "quantiles", "draws"}
    assert without_params.params is None
    assert without_params.to_dict() == ModelSignature(inputs, outputs).to_dict()


def test_extra_files_travel_with_the_model(regression, mlflow_experiment, tmp_path):
    """As in MLflow's built-in flavors: copied into ``extra_files/`` and listed in the flavor."""
    model, _ = regression
    notes, labels = tmp_path / "notes.txt", tmp_path / "labels.csv"
    notes.write_text("fitted on the first 150 rows")
    labels.write_text("label\nlow\nhigh\n")
    listed = [{"path": "extra_files/notes.txt"}, {"path": "extra_files/labels.csv"}]

    mlflow_pmlearn.save_model(model, tmp_path / "saved", signature=False, extra_files=[str(notes), labels.as_uri()])
    with mlflow.start_run():
        info = mlflow_pmlearn.log_model(model, name="model", signature=False, extra_files=[str(notes), str(labels)])
    logged = Path(mlflow.artifacts.download_artifacts(info.model_uri))
    for model_dir in (tmp_path / "saved", logged):
        assert (model_dir / "extra_files" / "notes.txt").read_bytes() == notes.read_bytes()
        assert (model_dir / "extra_files" / "labels.csv").read_bytes() == labels.read_bytes()
        assert Model.load(str(model_dir)).flavors[mlflow_pmlearn.FLAVOR_NAME]["extra_files"] == listed

    # A file that is not there is refused, naming it, and nothing of the model is written.
    with pytest.raises(MlflowException, match="no-such-file.txt"):
        mlflow_pmlearn.save_model(
            model, tmp_path / "refused", signature=False, extra_files=[str(notes), str(tmp_path / "no-such-file.txt")]
        )
    assert not (tmp_path / "refused").exists()
    assert _staging_leftovers(tmp_path) == []


def test_pyfunc_loads_only_the_data_folder_its_model_names(saved, regression, tmp_path):
    """``mlflow.pyfunc`` hands ``_load_pyfunc`` only the data folder (having read ``MLmodel``
    itself): the flavor loads it only where the folder above is the model whose ``MLmodel``
    names it, so an absolute ``data`` in a tampered ``MLmodel`` cannot point it elsewhere."""
    model, X = regression
    model_dir = tmp_path / "model"
    shutil.copytree(saved["linear"], model_dir)
    frame = mlflow_pmlearn._load_pyfunc(str(model_dir / "estimator")).predict(X.head(5))
    np.testing.assert_array_equal(frame["prediction"].to_numpy(), model.predict(X.head(5)))
    (model_dir / "MLmodel").unlink()
    with pytest.raises(MlflowException, match=r"is not inside a model's folder .* has no MLmodel"):
        mlflow_pmlearn._load_pyfunc(str(model_dir / "estimator"))


def test_builtin_models_contain_no_pickle(saved):
    for path in saved.values():
        files = [p for p in path.rglob("*") if p.is_file()]
        assert files
        for file in files:
            assert file.suffix not in {".pkl", ".pickle"}, file
            head = file.read_bytes()[:1]
            assert head != b"\x80", f"{file} starts with a pickle protocol header"
        config = json.loads((path / "estimator" / CONFIG_FILE).read_text())
        assert config["estimator_class"] in BUILTIN_ESTIMATORS
        assert config["serialization_format"] == "json"
        assert config["format_version"] == FORMAT_VERSION


def test_builtins_load_without_unpickling(saved, regression, monkeypatch):
    import pickle

    import cloudpickle

    def forbidden(*args, **kwargs):
        raise AssertionError("a built-in model must load without unpickling")

    for module in (pickle, cloudpickle):
        monkeypatch.setattr(module, "loads", forbidden)
        monkeypatch.setattr(module, "load", forbidden)
    monkeypatch.setattr(pickle, "Unpickler", forbidden)
    monkeypatch.setenv("MLFLOW_ALLOW_PICKLE_DESERIALIZATION", "false")
    loaded = {}
    for name, expected in [
        ("linear", LinearRegression),
        ("logistic", LogisticRegression),
        ("hierarchical", HierarchicalLogisticRegression),
    ]:
        loaded[name] = load_estimator(saved[name] / "estimator")
        assert type(loaded[name]) is expected
    # Predicting compiles, and Numba's on-disk compile cache reads its index with pickle:
    # that is the compiler's cache, not the model, so the ban ends with the loading.
    monkeypatch.undo()
    model, X = regression
    np.testing.assert_array_equal(loaded["linear"].predict(X), model.predict(X))


# -- failed and refused saves -------------------------------------------------------------


def test_save_over_non_empty_path_is_refused_untouched(regression, saved, tmp_path):
    model, _ = regression
    occupied = tmp_path / "occupied"
    occupied.mkdir()
    (occupied / "notes.txt").write_text("keep me")
    (occupied / "sub").mkdir()
    (occupied / "sub" / "data.bin").write_bytes(b"\x00\x01\x02")
    for target in (occupied, saved["linear"]):
        before = _file_bytes(target)
        with pytest.raises(MlflowException, match="already exists"):
            mlflow_pmlearn.save_model(model, target)
        assert _file_bytes(target) == before
        assert _staging_leftovers(target.parent) == []
    # An existing *empty* directory is fine to save into.
    empty = tmp_path / "empty"
    empty.mkdir()
    mlflow_pmlearn.save_model(model, empty, signature=False)
    assert (empty / "MLmodel").is_file()
    assert _staging_leftovers(tmp_path) == []


def test_failed_saves_leave_nothing_behind(regression, tmp_path):
    model, _ = regression
    with pytest.raises((NotFittedError, MlflowException), match="not fitted"):
        mlflow_pmlearn.save_model(LinearRegression(), tmp_path / "unfitted")
    assert not (tmp_path / "unfitted").exists()
    assert _staging_leftovers(tmp_path) == []

    odd = LinearRegression(**FAST)
    odd.__dict__.update({k: v for k, v in model.__dict__.items() if k.endswith("_")})
    odd.prior_scale_coef = np.float32(2.5)  # not JSON-serializable
    with pytest.raises(MlflowException, match="JSON"):
        mlflow_pmlearn.save_model(odd, tmp_path / "odd", signature=False)
    assert not (tmp_path / "odd").exists()
    assert _staging_leftovers(tmp_path) == []

    with pytest.raises(MlflowException, match="pm_model"):
        mlflow_pmlearn.save_model(object(), tmp_path / "not-an-estimator")
    assert list(tmp_path.iterdir()) == []


# -- bespoke models -----------------------------------------------------------------------


FRESH_LOADER = textwrap.dedent(
    """
    import importlib.util, json, sys
    import mlflow, numpy as np, pandas as pd
    from pathlib import Path

    request = json.loads(sys.argv[1])
    mlflow.set_tracking_uri(request["tracking_uri"])
    mlflow.set_registry_uri(request["tracking_uri"])
    for module_name in request["not_importable"]:
        assert importlib.util.find_spec(module_name.split(".")[0]) is None, module_name
    out = {}
    for key, uri in request["uris"].items():
        served = mlflow.pyfunc.load_model(uri)
        X = pd.DataFrame(request["X"][key])
        out[key] = {
            "frame": served.predict(X, params=request["params"][key]).to_dict(orient="list"),
            "class_file": getattr(sys.modules.get(type(served.get_raw_model()).__module__), "__file__", None),
            "class_module": type(served.get_raw_model()).__module__,
        }
    print("RESULT " + json.dumps(out))
    """
)


@pytest.fixture(scope="module")
def bespoke_logged(tracking_uri, tmp_path_factory, robust):
    model, _ = robust
    _use_new_experiment(tmp_path_factory, "bespoke")
    name = f"pmlearn-robust-{uuid.uuid4().hex[:8]}"
    with mlflow.start_run():
        info = mlflow_pmlearn.log_model(
            model, name="robust", code_paths=[str(BESPOKE_FILE)], registered_model_name=name
        )
    return info, name


@pytest.fixture(scope="module")
def pickled(tmp_path_factory, regression):
    _, X = regression
    model = PickledRegression(**FAST).fit(X, X["x0"] * 2.0 - X["x1"] + 0.5)
    path = tmp_path_factory.mktemp("pickled") / "model"
    mlflow_pmlearn.save_model(model, path, serialization_format="cloudpickle")
    return model, path


def test_bespoke_model_logs_and_loads_in_a_fresh_process(bespoke_logged, robust, pickled, regression, tmp_path):
    (model, X), (info, name) = robust, bespoke_logged
    pickled_model, pickled_path = pickled
    X_reg = regression[1]
    local = Path(mlflow.artifacts.download_artifacts(info.model_uri))
    assert (local / "code" / "robust_regression.py").is_file()
    config = json.loads((local / "estimator" / CONFIG_FILE).read_text())
    assert config["estimator_class"] == "robust_regression.RobustRegression"

    request = {
        "tracking_uri": mlflow.get_tracking_uri(),
        "not_importable": ["robust_regression", PickledRegression.__module__],
        "X": {"robust": X.to_dict(orient="list"), "pickled": X_reg.to_dict(orient="list")},
        "uris": {"robust": f"models:/{name}/1", "pickled": str(pickled_path)},
        "params": {"robust": {"return_std": True, "interval_prob": 0.9}, "pickled": {}},
    }
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "MLFLOW_ALLOW_PICKLE_DESERIALIZATION")}
    result = subprocess.run(
        [sys.executable, "-c", FRESH_LOADER, json.dumps(request)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    (line,) = [line for line in result.stdout.splitlines() if line.startswith("RESULT ")]
    out = json.loads(line[len("RESULT ") :])

    robust_out = out["robust"]
    assert robust_out["class_module"] == "robust_regression"
    assert Path(robust_out["class_file"]).parent.name == "code"
    assert Path(robust_out["class_file"]).resolve() != BESPOKE_FILE.resolve()
    summary = model.predict_summary(X, interval_prob=0.9)
    frame = robust_out["frame"]
    assert list(frame) == ["prediction", "std", "lower", "upper"]
    for column, key in [("prediction", "mean"), ("std", "std"), ("lower", "lower"), ("upper", "upper")]:
        np.testing.assert_array_equal(frame[column], summary[key])

    # The cloudpickled class travelled by value: its module is not importable there.
    assert out["pickled"]["class_module"] == PickledRegression.__module__
    assert out["pickled"]["class_file"] is None
    np.testing.assert_array_equal(out["pickled"]["frame"]["prediction"], pickled_model.predict(X_reg))


def test_bespoke_model_loads_in_the_process_that_logged_it(bespoke_logged, robust):
    (model, X), (info, name) = robust, bespoke_logged
    served = mlflow.pyfunc.load_model(f"models:/{name}/1")
    frame = served.predict(X, params={"interval_prob": 0.9})
    summary = model.predict_summary(X, interval_prob=0.9)
    np.testing.assert_array_equal(frame["prediction"].to_numpy(), summary["mean"])
    np.testing.assert_array_equal(frame["upper"].to_numpy(), summary["upper"])
    assert type(mlflow_pmlearn.load_model(info.model_uri)).__name__ == "RobustRegression"


def test_bespoke_class_in_main_is_refused_at_save(robust, tmp_path):
    model, _ = robust
    in_main = type("RobustRegression", (type(model),), {"__module__": "__main__"})
    stray = in_main.__new__(in_main)
    stray.__dict__.update(model.__getstate__())
    with pytest.raises(MlflowException, match="__main__"):
        mlflow_pmlearn.save_model(stray, tmp_path / "model", signature=False)
    assert list(tmp_path.iterdir()) == []


def test_class_outside_builtins_and_shipped_code_is_refused(saved, tmp_path, monkeypatch):
    calls = []
    monkeypatch.setattr(os, "system", lambda *args, **kwargs: calls.append(args))
    canary = tmp_path / "canary"
    monkeypatch.setenv("PMLEARN_CANARY", str(canary))
    library = tmp_path / "lib"
    (library / "canarypkg").mkdir(parents=True)
    side_effect = "import os, pathlib; pathlib.Path(os.environ['PMLEARN_CANARY']).write_text('{}')\n"
    (library / "pmlearn_canary.py").write_text(side_effect.format("module") + "class Evil: pass\n")
    (library / "canarypkg" / "__init__.py").write_text(side_effect.format("package"))
    (library / "canarypkg" / "models.py").write_text("class Evil: pass\n")
    monkeypatch.syspath_prepend(str(library))

    for class_path in (
        "os.system",
        "json.decoder.Evil.Evil",
        "pmlearn_canary.Evil",
        "canarypkg.models.Evil",
        "sklearn.linear_model.Ridge",
    ):
        model_dir = tmp_path / class_path.replace(".", "_")
        shutil.copytree(saved["linear"], model_dir)
        _rewrite_config(model_dir, estimator_class=class_path)
        with pytest.raises(MlflowException, match="refus|not a BayesianEstimator"):
            mlflow_pmlearn.load_model(str(model_dir))
        with pytest.raises(MlflowException):
            mlflow.pyfunc.load_model(str(model_dir))
    assert calls == []
    assert not canary.exists(), f"importing {canary.read_text()} ran its code"
    assert "pmlearn_canary" not in sys.modules and "canarypkg" not in sys.modules


def test_cloudpickle_format_round_trips_and_obeys_the_pickle_switch(pickled, regression, monkeypatch):
    model, path = pickled
    _, X = regression
    assert (path / "estimator" / serialization.PICKLED_CLASS_FILE).is_file()
    assert "cloudpickle" in (path / "requirements.txt").read_text()
    loaded = mlflow_pmlearn.load_model(str(path))
    assert type(loaded).__name__ == "PickledRegression"
    assert loaded.marker == "defined-in-test-module"
    np.testing.assert_array_equal(loaded.predict(X), model.predict(X))

    monkeypatch.setenv("MLFLOW_ALLOW_PICKLE_DESERIALIZATION", "false")
    with pytest.raises(MlflowException, match="pickle"):
        mlflow_pmlearn.load_model(str(path))
    with pytest.raises(MlflowException, match="pickle"):
        mlflow.pyfunc.load_model(str(path))


def test_future_format_version_is_refused(saved, tmp_path):
    model_dir = tmp_path / "future"
    shutil.copytree(saved["linear"], model_dir)
    _rewrite_config(model_dir, format_version=FORMAT_VERSION + 1)
    with pytest.raises(MlflowException, match=f"format version {FORMAT_VERSION + 1}.*Upgrade mlflow-pmlearn"):
        mlflow_pmlearn.load_model(str(model_dir))
