"""A model file from someone else can neither run code nor exhaust the host that loads it.

Each family below is one parametrised test; each case edits a real saved model as an
attacker who can write all of its files would (checksums updated), then loads it in a
child process capped at 3 GiB of address space and timed, with both loaders
(``mlflow_pmlearn.load_model`` and ``mlflow.pyfunc.load_model``, after importing the
flavor as a user's program does). A case passes when each loader refuses it by name with
an ``MlflowException``, or loads it harmlessly (then the child's peak memory is checked),
within 30 seconds.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import subprocess
import sys
import zipfile
import zlib
from collections.abc import Callable
from pathlib import Path

import h5netcdf
import h5py
import mlflow
import mlflow.pyfunc
import numpy as np
import pandas as pd
import pytest
import xarray as xr
import yaml
from conftest import FAST, isolated_environment
from mlflow.exceptions import MlflowException
from mlflow.pyfunc import PythonModelContext
from packaging.version import Version
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import SplineTransformer
from test_bad_files import (
    _assign,
    _data,
    _rewrite_trace,
    _set_config,
    saved_model,  # noqa: F401  (the module's fixture: a LinearRegression saved once)
)
from test_hostile_files import ADDRESS_SPACE, _hostile_copy

import mlflow_pmlearn
from estimators.gaussian_process import GaussianProcessRegressor
from estimators.linear_model import LinearRegression
from mlflow_pmlearn.pipelines import PIPELINE_FILE, PREPROCESSING_FILE
from mlflow_pmlearn.safety import (
    ALLOW_MODEL_CODE_VARIABLE,
    MAX_ATTRIBUTE_BYTES,
    MAX_TRACE_DEPTH,
    MAX_TRACE_OBJECTS,
)
from mlflow_pmlearn.serialization import CONFIG_FILE, TRACE_FILE
from mlflow_pmlearn.spark_groups import GroupedModel

REPO = Path(__file__).resolve().parents[2]
BESPOKE_FILE = REPO / "examples" / "bespoke" / "robust_regression.py"
SHARED_CODE = REPO / "examples" / "bespoke" / "_linear_predictor.py"
#: Each hostile load must end within this (the issue's bound), refusals included.
SECONDS = 30
#: A harmless load of the small models here peaks well under this.
HARMLESS_PEAK_BYTES = int(1.5 * 2**30)

CHILD = f"""
import io, json, resource, sys, time
resource.setrlimit(resource.RLIMIT_AS, ({ADDRESS_SPACE}, {ADDRESS_SPACE}))
import mlflow.pyfunc, mlflow_pmlearn, pandas as pd
from mlflow.exceptions import MlflowException
model, rows = sys.argv[1], pd.read_json(io.StringIO(sys.argv[2]), orient="split")
report = {{"outcomes": [], "seconds": []}}
for load in (mlflow_pmlearn.load_model, mlflow.pyfunc.load_model):
    start = time.perf_counter()
    try:
        loaded = load(model)
        loaded.predict(rows)
    except MlflowException as error:
        report["outcomes"].append("refused: " + error.message.replace("\\n", " "))
    except ValueError as error:  # raised by predict, as for any bad call
        report["outcomes"].append("refused: " + str(error).replace("\\n", " "))
    else:
        report["outcomes"].append("loaded")
    report["seconds"].append(time.perf_counter() - start)
for name in sys.argv[3:]:  # modules a later step of the program imports
    __import__(name)
# VmHWM, this process's own peak: ru_maxrss keeps the parent's across exec on Linux.
report["peak_bytes"] = int(next(l for l in open("/proc/self/status") if l.startswith("VmHWM")).split()[1]) * 1024
report["model_on_sys_path"] = [entry for entry in sys.path if model in entry]
print("REPORT", json.dumps(report))
"""


def _load_in_child(model_dir: Path, rows: pd.DataFrame, *imports: str, environment: dict | None = None) -> dict:
    """What each loader did with the model in a capped child process, how long it took, and its peak memory."""
    child = subprocess.run(
        [sys.executable, "-c", CHILD, str(model_dir), rows.to_json(orient="split"), *imports],
        capture_output=True,
        text=True,
        env={**isolated_environment(), **(environment or {})},
        timeout=300,
    )
    lines = [line for line in child.stdout.splitlines() if line.startswith("REPORT ")]
    assert child.returncode == 0 and lines and "MemoryError" not in child.stderr, child.stderr[-3000:]
    report = json.loads(lines[-1].removeprefix("REPORT "))
    assert max(report["seconds"]) < SECONDS, report
    return report


#: Rows for the LinearRegression of ``test_bad_files`` (features x0, x1, x2).
ROWS = pd.DataFrame(np.zeros((3, 3)), columns=["x0", "x1", "x2"])


def _rehash_trace(model_dir: Path) -> None:
    path = _data(model_dir) / TRACE_FILE
    _set_config(trace_sha256=hashlib.sha256(path.read_bytes()).hexdigest())(model_dir)


# -- 1. code in the model's folder: a built-in model imports none of it --------------------


def _plant(name: str, marker: Path) -> Callable[[Path], None]:
    """``code/<name>`` (a module or a package) that writes ``marker`` when imported; both flavors name ``code``."""

    def damage(model_dir: Path) -> None:
        body = f"open({str(marker)!r}, 'w').write('ran')\n"
        code = model_dir / "code"
        if "." in name or name in ("h5netcdf", "estimators", "mlflow_pmlearn", "numba", "skops"):
            (code / name).mkdir(parents=True)
            (code / name / "__init__.py").write_text(body)
        else:
            code.mkdir(exist_ok=True)
            (code / f"{name}.py").write_text(body)
        mlmodel = yaml.safe_load((model_dir / "MLmodel").read_text())
        for flavor in ("pmlearn", "python_function"):
            mlmodel["flavors"][flavor]["code"] = "code"
        (model_dir / "MLmodel").write_text(yaml.safe_dump(mlmodel))

    return damage


@pytest.mark.parametrize("shadowed", ["h5netcdf", "getopt", "estimators", "mlflow_pmlearn", "numba", "skops"])
def test_a_built_in_model_runs_nothing_from_its_folder(saved_model, tmp_path, shadowed):
    marker = tmp_path / "ran"
    model_dir = _hostile_copy(saved_model, tmp_path, _plant(shadowed, marker))
    report = _load_in_child(model_dir, ROWS, shadowed)
    assert report["outcomes"] == ["loaded", "loaded"], report
    assert not marker.exists(), f"code/{shadowed} ran"
    assert report["model_on_sys_path"] == [], report


# -- 2. code runs only where MLFLOW_ALLOW_MODEL_CODE_EXECUTION allows it ----------------------


@pytest.fixture(scope="module")
def bespoke_model(tmp_path_factory, regression_data) -> Path:
    """The gallery's robust regression, saved with its module and the module it imports as code."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("robust_regression_for_safety", BESPOKE_FILE)
    sys.path.insert(0, str(SHARED_CODE.parent))
    try:
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(str(SHARED_CODE.parent))
    X, y, _ = regression_data
    model = module.RobustRegression(**FAST).fit(X.iloc[:80], y.iloc[:80])
    path = tmp_path_factory.mktemp("bespoke") / "model"
    mlflow_pmlearn.save_model(model, path, code_paths=[str(BESPOKE_FILE), str(SHARED_CODE)])
    config = json.loads((path / "estimator" / CONFIG_FILE).read_text())
    config["estimator_class"] = "robust_regression.RobustRegression"  # as saved from its own module
    (path / "estimator" / CONFIG_FILE).write_text(json.dumps(config))
    return path


def test_a_bespoke_model_loads_from_its_code_by_file_in_a_fresh_process(bespoke_model, regression_data):
    X, _, _ = regression_data
    report = _load_in_child(bespoke_model, X.head(5))
    assert report["outcomes"] == ["loaded", "loaded"], report
    assert report["model_on_sys_path"] == [], report


#: Ours refusing a bespoke model's code, and (from MLflow 3.18, which reads the same
#: variable) MLflow refusing every load through ``mlflow.pyfunc``, built-in models too.
OUR_REFUSAL = f"refused: .*running code from a model is disabled \\({ALLOW_MODEL_CODE_VARIABLE}=false\\)"
MLFLOW_REFUSES_EVERY_PYFUNC = Version(mlflow.__version__) >= Version("3.18")
MLFLOW_REFUSAL = "refused: Loading PyFunc models is disallowed"


@pytest.mark.parametrize(
    "model_name, outcomes",
    [
        ("built-in", ["loaded", MLFLOW_REFUSAL if MLFLOW_REFUSES_EVERY_PYFUNC else "loaded"]),
        ("bespoke", [OUR_REFUSAL, MLFLOW_REFUSAL if MLFLOW_REFUSES_EVERY_PYFUNC else OUR_REFUSAL]),
    ],
)
def test_model_code_runs_only_where_allowed(saved_model, bespoke_model, regression_data, model_name, outcomes):
    X, _, _ = regression_data
    model_dir = saved_model if model_name == "built-in" else bespoke_model
    report = _load_in_child(model_dir, X.head(5), environment={ALLOW_MODEL_CODE_VARIABLE: "false"})
    assert len(report["outcomes"]) == len(outcomes), report
    assert all(re.match(expected, outcome) for expected, outcome in zip(outcomes, report["outcomes"])), report


def _name_class(class_path: str) -> Callable[[Path], None]:
    def damage(model_dir: Path) -> None:
        config = json.loads((model_dir / "estimator" / CONFIG_FILE).read_text())
        config["estimator_class"] = class_path
        (model_dir / "estimator" / CONFIG_FILE).write_text(json.dumps(config))

    return damage


def _add_module_without_the_class(marker: Path) -> Callable[[Path], None]:
    def damage(model_dir: Path) -> None:
        (model_dir / "code" / "innocent.py").write_text(f"open({str(marker)!r}, 'w').write('ran')\n")
        _name_class("innocent.RobustRegression")(model_dir)

    return damage


@pytest.mark.parametrize(
    "case, refusal",
    [
        (
            "an installed module not imported yet",
            r"'antigravity\.Model', whose module has the name of an installed module",
        ),
        ("a module file without the class", r"innocent\.py does not define the class 'RobustRegression'"),
        ("no such module", r"names the class 'nowhere\.Model', which is neither a built-in"),
    ],
)
def test_a_bespoke_class_path_is_checked_before_anything_runs(bespoke_model, tmp_path, case, refusal):
    marker = tmp_path / "ran"
    damage = {
        "an installed module not imported yet": _name_class("antigravity.Model"),
        "a module file without the class": _add_module_without_the_class(marker),
        "no such module": _name_class("nowhere.Model"),
    }[case]
    model_dir = _hostile_copy(bespoke_model, tmp_path, damage)
    for load in (mlflow_pmlearn.load_model, mlflow.pyfunc.load_model):
        with pytest.raises(MlflowException, match=refusal):
            load(str(model_dir))
    assert not marker.exists() and "antigravity" not in sys.modules


def test_a_grouped_model_is_refused_where_model_code_is_not_allowed(tmp_path, monkeypatch):
    monkeypatch.setenv(ALLOW_MODEL_CODE_VARIABLE, "false")
    groups = tmp_path / "model" / "artifacts" / "groups"
    groups.mkdir(parents=True)
    with pytest.raises(MlflowException, match=f"{ALLOW_MODEL_CODE_VARIABLE}=false"):
        GroupedModel().load_context(PythonModelContext(artifacts={"groups": str(groups)}, model_config={}))


# -- 3. budgets on what is decoded, not what is declared --------------------------------------

BIG = 400_000_000


def _edit_trace(edit: Callable[[h5netcdf.File], None]) -> Callable[[Path], None]:
    def damage(model_dir: Path) -> None:
        with h5netcdf.File(_data(model_dir) / TRACE_FILE, "a") as file:
            edit(file)
        _rehash_trace(model_dir)

    return damage


def _gzip_bomb(model_dir: Path) -> None:
    """``posterior/coef`` stored gzipped, its one chunk a deflate stream of 1.5 GiB of zeros (about 1.5 MB)."""
    path = _data(model_dir) / TRACE_FILE
    coef = xr.load_datatree(path, engine="h5netcdf")["posterior"]["coef"]
    _rewrite_trace(lambda idata: _assign(idata, "posterior", idata["posterior"].to_dataset().drop_vars("coef")))(
        model_dir
    )
    with h5netcdf.File(path, "a") as file:
        for dim, size in coef.sizes.items():
            if dim not in file["posterior"].dimensions:
                file["posterior"].dimensions[dim] = size
        file["posterior"].create_variable("coef", coef.dims, coef.dtype, chunks=coef.shape, compression="gzip")
    deflater, block, stream = zlib.compressobj(), bytes(2**20), io.BytesIO()
    for _ in range(1536):
        stream.write(deflater.compress(block))
    stream.write(deflater.flush())
    with h5py.File(path, "a") as file:
        file["posterior/coef"].id.write_direct_chunk((0,) * coef.ndim, stream.getvalue())
    _rehash_trace(model_dir)


def _scaled_int8(file: h5netcdf.File) -> None:
    """A 400 MB int8 variable with a float64 ``scale_factor``: 3.2 GB once decoded."""
    file["posterior"].dimensions["extra_dim"] = BIG
    variable = file["posterior"].create_variable("extra", ("extra_dim",), "i1", chunks=(1 << 20,))
    variable.attrs["scale_factor"] = np.float64(0.5)


def _encoded_characters(file: h5netcdf.File) -> None:
    """50 million 8-character strings as a character array with ``_Encoding``: Python strings once decoded."""
    file["posterior"].dimensions["label_dim"] = 50_000_000
    file["posterior"].dimensions["string8"] = 8
    variable = file["posterior"].create_variable("labels", ("label_dim", "string8"), "S1", chunks=(1 << 16, 8))
    variable.attrs["_Encoding"] = "utf-8"


def _huge_attribute(model_dir: Path) -> None:
    with h5py.File(_data(model_dir) / TRACE_FILE, "a") as file:
        file["posterior"].attrs.create("blob", np.zeros(MAX_ATTRIBUTE_BYTES // 8 + 1))
    _rehash_trace(model_dir)


def _nested_groups(model_dir: Path) -> None:
    with h5py.File(_data(model_dir) / TRACE_FILE, "a") as file:
        file.create_group("/".join(["deep"] * (MAX_TRACE_DEPTH + 1)))
    _rehash_trace(model_dir)


def _many_variables(model_dir: Path) -> None:
    with h5py.File(_data(model_dir) / TRACE_FILE, "a") as file:
        group = file.create_group("many")
        for number in range(MAX_TRACE_OBJECTS + 1):
            group.create_dataset(f"v{number}", data=0.0)
    _rehash_trace(model_dir)


DECODED = [
    (
        "gzip chunk inflating past its declared size",
        _gzip_bomb,
        r"'posterior/coef' has a compressed chunk that inflates beyond its declared 4,800 bytes",
    ),
    (
        "int8 with a float64 scale_factor",
        _edit_trace(_scaled_int8),
        r"declares [\d,]+ bytes of arrays once decoded.*posterior/extra \(400000000,\) of int8: 3,200,000,000 bytes",
    ),
    (
        "character array with _Encoding",
        _edit_trace(_encoded_characters),
        r"declares [\d,]+ bytes of arrays once decoded.*posterior/labels \(50000000, 8\) of \|S1",
    ),
    ("attribute over its budget", _huge_attribute, r"bytes of attributes, over the limit of 16,777,216"),
    ("groups nested deep", _nested_groups, rf"nests groups more than {MAX_TRACE_DEPTH} deep"),
    ("many tiny variables", _many_variables, rf"holds more than {MAX_TRACE_OBJECTS:,} groups and variables"),
]


@pytest.mark.parametrize("case, damage, refusal", DECODED, ids=[case[0] for case in DECODED])
def test_what_a_trace_decodes_to_is_budgeted(saved_model, tmp_path, case, damage, refusal):
    model_dir = _hostile_copy(saved_model, tmp_path, damage)
    report = _load_in_child(model_dir, ROWS)
    for outcome in report["outcomes"]:
        assert outcome.startswith("refused: ") and str(_data(model_dir) / TRACE_FILE) in outcome, report
        assert re.search(refusal, outcome), report


@pytest.fixture(scope="module")
def saved_gp(tmp_path_factory) -> Path:
    rng = np.random.default_rng(3)
    X = pd.DataFrame(rng.uniform(-2, 2, size=(30, 1)), columns=["x"])
    y = np.sin(X["x"].to_numpy()) + rng.normal(scale=0.1, size=30)
    path = tmp_path_factory.mktemp("gp") / "model"
    mlflow_pmlearn.save_model(GaussianProcessRegressor(random_seed=0, progressbar=False).fit(X, y), path)
    return path


def _more_gp_rows(rows: int) -> Callable[[Path], None]:
    """The GP's training data replaced by ``rows`` consistent rows (a trace of a few dozen KB)."""

    def damage(model_dir: Path) -> None:
        path = _data(model_dir) / TRACE_FILE
        idata = xr.load_datatree(path, engine="h5netcdf")
        x_name = next(iter(idata["constant_data"].data_vars))
        y_name = next(iter(idata["observed_data"].data_vars))
        x, y = idata["constant_data"][x_name], idata["observed_data"][y_name]
        repeat = -(-rows // x.shape[0])
        new_x = np.tile(x.values, (repeat, 1))[:rows] + np.linspace(0, 1e-3, rows)[:, None]
        new_y = np.tile(y.values, repeat)[:rows]
        idata["constant_data"] = xr.DataTree(xr.Dataset({x_name: (x.dims, new_x)}))
        idata["observed_data"] = xr.DataTree(xr.Dataset({y_name: (y.dims, new_y)}))
        path.unlink()
        idata.to_netcdf(path, engine="h5netcdf")
        _rehash_trace(model_dir)

    return damage


def test_a_gaussian_process_whose_predictor_would_exhaust_memory_is_refused_at_serving_load(saved_gp, tmp_path):
    """6,000 training rows make the 8 Cholesky factors of predict's variance subset 288 MB each:
    2.3 GB, over the 2 GiB predictor budget."""
    model_dir = _hostile_copy(saved_gp, tmp_path, _more_gp_rows(6_000))
    rows = pd.DataFrame({"x": [0.0, 0.5]})
    report = _load_in_child(model_dir, rows)
    # The flavor's loader builds no predictor at load; its first prediction refuses (a ValueError), where
    # the pyfunc's load refuses with the setting named.
    refusal = "The predictor would precompute 2,304,000,000 bytes"
    for outcome in report["outcomes"]:
        assert outcome.startswith("refused: ") and refusal in outcome, report
    assert "MLFLOW_PMLEARN_MAX_PREDICTOR_BYTES" in report["outcomes"][1], report


# -- 4. the preprocessing archive: members inflated within their size, splines checked ------------


@pytest.fixture(scope="module")
def saved_spline_pipeline(tmp_path_factory) -> tuple[Path, pd.DataFrame]:
    rng = np.random.default_rng(5)
    X = pd.DataFrame({"x": rng.uniform(-2, 2, size=60)})
    y = np.sin(X["x"].to_numpy()) + rng.normal(scale=0.1, size=60)
    pipeline = Pipeline([("spline", SplineTransformer(n_knots=4)), ("reg", LinearRegression(**FAST))]).fit(X, y)
    path = tmp_path_factory.mktemp("spline") / "model"
    mlflow_pmlearn.save_model(pipeline, path, input_example=X.head(3))
    return path, X.head(5)


def _rewrite_preprocessing(rewrite: Callable[[zipfile.ZipFile, zipfile.ZipFile], None]) -> Callable[[Path], None]:
    def damage(model_dir: Path) -> None:
        path = model_dir / "pipeline" / PREPROCESSING_FILE
        source = zipfile.ZipFile(io.BytesIO(path.read_bytes()))
        with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as target:
            rewrite(source, target)
        config = json.loads((model_dir / "pipeline" / PIPELINE_FILE).read_text())
        config["preprocessing_sha256"] = hashlib.sha256(path.read_bytes()).hexdigest()
        (model_dir / "pipeline" / PIPELINE_FILE).write_text(json.dumps(config))

    return damage


def _spline_degree(degree: str) -> Callable[[zipfile.ZipFile, zipfile.ZipFile], None]:
    def rewrite(source: zipfile.ZipFile, target: zipfile.ZipFile) -> None:
        for name in source.namelist():
            data = source.read(name)
            if name == "schema.json":
                schema = json.loads(data)

                def visit(node):
                    if isinstance(node, dict):
                        if node.get("__class__") == "_BSpline":  # SciPy's BSpline delegates to a _BSpline
                            # A new id too: skops builds a node once per id (and 3 is the degree's too).
                            node["content"]["content"]["k"].update(content=degree, __id__=1)
                        for value in node.values():
                            visit(value)
                    elif isinstance(node, list):
                        for value in node:
                            visit(value)

                visit(schema)
                data = json.dumps(schema).encode()
            target.writestr(name, data)

    return rewrite


def _malformed_method_node(source: zipfile.ZipFile, target: zipfile.ZipFile) -> None:
    """The pipeline's ``memory`` attribute replaced by a method node missing its object."""
    for name in source.namelist():
        data = source.read(name)
        if name == "schema.json":
            schema = json.loads(data)
            schema["content"]["content"]["memory"] = {
                "__class__": "method",
                "__module__": "builtins",
                "__loader__": "MethodNode",
                "content": {"func": "x"},
                "__id__": 1,
            }
            data = json.dumps(schema).encode()
        target.writestr(name, data)


def _member_bomb(source: zipfile.ZipFile, target: zipfile.ZipFile) -> None:
    """``schema.json`` whose deflate stream goes on for 1.5 GiB past the size and CRC its headers declare."""
    for name in source.namelist():
        if name != "schema.json":
            target.writestr(name, source.read(name))
    schema = source.read("schema.json")
    with target.open("schema.json", "w") as member:
        member.write(schema)
        block = b" " * 2**20
        for _ in range(1536):
            member.write(block)
    info = target.getinfo("schema.json")
    real_size, real_crc = info.file_size, info.CRC
    target.fp.flush()
    # Rewrite the local header's CRC and size to those of the schema alone (the central
    # directory is written from ``info`` when the archive closes).
    info.file_size, info.CRC = len(schema), zlib.crc32(schema)
    position = target.fp.tell()
    target.fp.seek(info.header_offset + 14)
    target.fp.write(info.CRC.to_bytes(4, "little"))
    target.fp.seek(info.header_offset + 22)
    target.fp.write(len(schema).to_bytes(4, "little"))
    target.fp.seek(position)
    assert real_size > len(schema) and real_crc != info.CRC


PREPROCESSING = [
    ("spline of degree -5", _rewrite_preprocessing(_spline_degree("-5")), "refused", r"holds an invalid B-spline"),
    (
        "spline with too few knots for its degree",
        _rewrite_preprocessing(_spline_degree("5")),
        "refused",
        r"holds an invalid B-spline",
    ),
    (
        "malformed method node",
        _rewrite_preprocessing(_malformed_method_node),
        "refused",
        r"preprocessing.skops could not be loaded: KeyError",
    ),
    ("member inflating past its declared size", _rewrite_preprocessing(_member_bomb), "loaded", None),
]


@pytest.mark.parametrize("case, damage, outcome, refusal", PREPROCESSING, ids=[case[0] for case in PREPROCESSING])
def test_a_pipeline_preprocessing_archive_is_decoded_within_its_budget(
    saved_spline_pipeline, tmp_path, case, damage, outcome, refusal
):
    saved, rows = saved_spline_pipeline
    model_dir = _hostile_copy(saved, tmp_path, damage)
    report = _load_in_child(model_dir, rows)
    if outcome == "loaded":  # harmless: the archive's declared contents, and no more, were read
        assert report["outcomes"] == ["loaded", "loaded"] and report["peak_bytes"] < HARMLESS_PEAK_BYTES, report
    else:
        for each in report["outcomes"]:
            assert each.startswith("refused: ") and re.search(refusal, each), report


# -- 5. paths on the pyfunc path, and 6. malformed documents: refused in this process ---------------


def _set_python_function(**fields) -> Callable[[Path], None]:
    def damage(model_dir: Path) -> None:
        mlmodel = yaml.safe_load((model_dir / "MLmodel").read_text())
        mlmodel["flavors"]["python_function"].update(fields)
        (model_dir / "MLmodel").write_text(yaml.safe_dump(mlmodel))

    return damage


def _code_link_outside(model_dir: Path) -> None:
    outside = model_dir.parent / "elsewhere"
    outside.mkdir()
    (model_dir / "code").symlink_to(outside)


def _long_integer_in(document: str) -> Callable[[Path], None]:
    def damage(model_dir: Path) -> None:
        path = model_dir / document
        path.write_text(path.read_text().replace('"format_version": 2', '"format_version": ' + "9" * 5000, 1))

    return damage


PYFUNC_ONLY = (mlflow.pyfunc.load_model,)
BOTH = (mlflow_pmlearn.load_model, mlflow.pyfunc.load_model)

REFUSED = [
    (
        "absolute data folder on the pyfunc path",
        _set_python_function(data=str(REPO / "tests")),
        PYFUNC_ONLY,
        r"is not inside a model's folder .* has no MLmodel",
    ),
    ("code folder a link outside", _code_link_outside, BOTH, r"code folder .* leads outside .* \(it is a link to"),
    (
        "5,000-digit integer in estimator.json",
        _long_integer_in(f"estimator/{CONFIG_FILE}"),
        BOTH,
        r"estimator.json is not valid JSON: Exceeds the limit",
    ),
]


@pytest.mark.parametrize("case, damage, loaders, refusal", REFUSED, ids=[case[0] for case in REFUSED])
def test_escaping_or_malformed_model_is_refused_by_name(saved_model, tmp_path, case, damage, loaders, refusal):
    model_dir = _hostile_copy(saved_model, tmp_path, damage)
    for load in loaders:
        with pytest.raises(MlflowException, match=refusal):
            load(str(model_dir))


def test_a_long_integer_in_pipeline_json_is_refused_by_name(saved_spline_pipeline, tmp_path):
    saved, _ = saved_spline_pipeline

    def damage(model_dir: Path) -> None:
        path = model_dir / "pipeline" / PIPELINE_FILE
        path.write_text(path.read_text().replace('"format_version": 1', '"format_version": ' + "9" * 5000, 1))

    model_dir = _hostile_copy(saved, tmp_path, damage)
    with pytest.raises(MlflowException, match=r"pipeline.json is not valid JSON: Exceeds the limit"):
        mlflow_pmlearn.load_model(str(model_dir))


def test_a_grouped_model_reads_its_groups_only_in_its_own_folder(tmp_path):
    model_dir = tmp_path / "model"
    (model_dir / "artifacts").mkdir(parents=True)
    (model_dir / "MLmodel").write_text("flavors: {}\n")
    elsewhere = tmp_path / "elsewhere" / "groups"
    elsewhere.mkdir(parents=True)
    escaping = model_dir / "artifacts" / ".." / ".." / "elsewhere" / "groups"
    with pytest.raises(MlflowException, match=r"not in its folder's artifacts/groups; refusing"):
        GroupedModel().load_context(
            PythonModelContext(artifacts={"groups": os.path.normpath(escaping)}, model_config={})
        )
