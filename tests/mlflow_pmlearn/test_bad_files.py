"""Damaged model files: each is refused with an ``MlflowException`` naming the file and the problem.

One LinearRegression is fitted and saved per module; each case copies the saved model,
damages the copy and loads it with ``mlflow_pmlearn.load_model`` and with
``mlflow.pyfunc.load_model``. Never a raw NetCDF/HDF5, JSON or KeyError traceback.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
from collections.abc import Callable
from pathlib import Path

import mlflow.pyfunc
import numpy as np
import pytest
import xarray as xr
from conftest import FAST
from mlflow.exceptions import MlflowException

import mlflow_pmlearn
from estimators.linear_model import LinearRegression
from mlflow_pmlearn.serialization import CONFIG_FILE, TRACE_FILE

N_TRAIN = 120


@pytest.fixture(scope="module")
def saved_model(tmp_path_factory, regression_data) -> Path:
    X, y, _ = regression_data
    model = LinearRegression(**FAST).fit(X.iloc[:N_TRAIN], y.iloc[:N_TRAIN])
    path = tmp_path_factory.mktemp("bad-files") / "model"
    mlflow_pmlearn.save_model(model, path)
    return path


# -- ways to damage a copy of the model ------------------------------------------------------


def _data(model_dir: Path) -> Path:
    return model_dir / "estimator"


def _edit_config(edit: Callable[[dict], object]) -> Callable[[Path], None]:
    """``edit`` changes the parsed document in place (what it returns is ignored)."""

    def damage(model_dir: Path) -> None:
        path = _data(model_dir) / CONFIG_FILE
        config = json.loads(path.read_text())
        edit(config)
        path.write_text(json.dumps(config))

    return damage


def _wrap_config_in_array(model_dir: Path) -> None:
    path = _data(model_dir) / CONFIG_FILE
    path.write_text(f"[{path.read_text()}]")


def _set_config(**fields) -> Callable[[Path], None]:
    return _edit_config(lambda config: config.update(fields))


def _set_fitted_state(**fields) -> Callable[[Path], None]:
    return _edit_config(lambda config: config["fitted_state"].update(fields))


def _write(name: str, content: bytes) -> Callable[[Path], None]:
    return lambda model_dir: (_data(model_dir) / name).write_bytes(content)


def _delete(name: str) -> Callable[[Path], None]:
    return lambda model_dir: (_data(model_dir) / name).unlink()


def _truncate_trace(model_dir: Path) -> None:
    path = _data(model_dir) / TRACE_FILE
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def _overwrite_trace_block(model_dir: Path) -> None:
    path = _data(model_dir) / TRACE_FILE
    content = bytearray(path.read_bytes())
    middle = len(content) // 2
    content[middle : middle + 64] = np.random.default_rng(0).bytes(64)
    path.write_bytes(bytes(content))


def _without_checksum(damage: Callable[[Path], None]) -> Callable[[Path], None]:
    """The damage, to a model saved without a recorded checksum: the NetCDF reader meets it."""

    def damage_unchecked(model_dir: Path) -> None:
        _edit_config(lambda config: config.pop("trace_sha256"))(model_dir)
        damage(model_dir)

    return damage_unchecked


def _rewrite_trace(edit: Callable[[xr.DataTree], xr.DataTree]) -> Callable[[Path], None]:
    """A trace rewritten consistently (checksum updated): the files agree, the model does not."""

    def damage(model_dir: Path) -> None:
        path = _data(model_dir) / TRACE_FILE
        idata = edit(xr.load_datatree(path, engine="h5netcdf"))
        path.unlink()
        idata.to_netcdf(path, engine="h5netcdf")
        _set_config(trace_sha256=hashlib.sha256(path.read_bytes()).hexdigest())(model_dir)

    return damage


def _rename_posterior(old: str, new: str) -> Callable[[Path], None]:
    return _rewrite_trace(lambda idata: _assign(idata, "posterior", idata["posterior"].to_dataset().rename({old: new})))


def _narrow_coefficients(idata: xr.DataTree) -> xr.DataTree:
    posterior = idata["posterior"].to_dataset()
    narrower = posterior["coef_std"].isel(coef_std_dim_0=slice(0, 2))
    return _assign(idata, "posterior", posterior.drop_vars(["coef_std", "coef_std_dim_0"]).assign(coef_std=narrower))


def _nan_draw(idata: xr.DataTree) -> xr.DataTree:
    posterior = idata["posterior"].to_dataset()
    noise = posterior["noise_std"].copy()
    noise[0, 5] = np.nan
    return _assign(idata, "posterior", posterior.assign(noise_std=noise))


def _narrow_training_data(idata: xr.DataTree) -> xr.DataTree:
    constant = idata["constant_data"].to_dataset()
    return _assign(idata, "constant_data", constant.isel({constant["X"].dims[1]: slice(0, 2)}))


def _drop_group(group: str) -> Callable[[Path], None]:
    def edit(idata: xr.DataTree) -> xr.DataTree:
        del idata[group]
        return idata

    return _rewrite_trace(edit)


def _assign(idata: xr.DataTree, group: str, dataset) -> xr.DataTree:
    idata[group] = dataset
    return idata


# (case, damage, file named in the error, problem the error states)
CASES = [
    ("trace truncated", _truncate_trace, TRACE_FILE, "corrupted or was changed"),
    ("trace truncated, no checksum", _without_checksum(_truncate_trace), TRACE_FILE, r"could not be read .*truncated"),
    ("trace empty, no checksum", _without_checksum(_write(TRACE_FILE, b"")), TRACE_FILE, "could not be read"),
    (
        "trace random bytes",
        _write(TRACE_FILE, np.random.default_rng(1).bytes(50_000)),
        TRACE_FILE,
        "corrupted or was changed",
    ),
    (
        "trace random bytes, no checksum",
        _without_checksum(_write(TRACE_FILE, np.random.default_rng(1).bytes(50_000))),
        TRACE_FILE,
        "could not be read",
    ),
    ("trace block overwritten", _overwrite_trace_block, TRACE_FILE, "corrupted or was changed"),
    ("trace missing", _delete(TRACE_FILE), TRACE_FILE, "no trace.*missing"),
    ("estimator.json missing", _delete(CONFIG_FILE), CONFIG_FILE, "no estimator.json.*missing"),
    (
        "estimator.json not JSON",
        _write(CONFIG_FILE, b'{"format_version": 1, "params": '),
        CONFIG_FILE,
        "not valid JSON",
    ),
    (
        "estimator.json random bytes",
        _write(CONFIG_FILE, np.random.default_rng(2).bytes(300)),
        CONFIG_FILE,
        "not valid JSON",
    ),
    ("estimator.json an array", _wrap_config_in_array, CONFIG_FILE, "must hold a JSON object; it holds an array"),
    ("params a list", _set_config(params=[2.5, 2.5]), CONFIG_FILE, "'params' must be an object, not an array"),
    (
        "format_version a string",
        _set_config(format_version="1"),
        CONFIG_FILE,
        "'format_version' must be an integer, not a string",
    ),
    (
        "format_version a boolean",
        _set_config(format_version=True),
        CONFIG_FILE,
        "'format_version' must be an integer, not a boolean",
    ),
    ("format_version zero", _set_config(format_version=0), CONFIG_FILE, "'format_version' must be at least 1"),
    (
        "class missing",
        _edit_config(lambda config: config.pop("estimator_class")),
        CONFIG_FILE,
        "'estimator_class' is missing",
    ),
    (
        "class a number",
        _set_config(estimator_class=42),
        CONFIG_FILE,
        "'estimator_class' must be a string, not an integer",
    ),
    ("fitted_state null", _set_config(fitted_state=None), CONFIG_FILE, "'fitted_state' must be an object, not null"),
    (
        "two fields wrong",
        _set_config(params="x", fitted_state=[]),
        CONFIG_FILE,
        "'params' must be .*; the field 'fitted_state' must be",
    ),
    (
        "unknown serialization format",
        _set_config(serialization_format="yaml"),
        CONFIG_FILE,
        "'serialization_format' must be one of",
    ),
    ("checksum malformed", _set_config(trace_sha256="abc"), CONFIG_FILE, "'trace_sha256' must be 64"),
    (
        "unknown parameter",
        _edit_config(lambda config: config["params"].update(bogus=1)),
        CONFIG_FILE,
        r"takes no parameter\(s\) \['bogus'\]",
    ),
    (
        "invalid parameter value",
        _edit_config(lambda config: config["params"].update(prior_scale_coef="big")),
        CONFIG_FILE,
        "'prior_scale_coef' parameter of LinearRegression must be",
    ),
    (
        "n_features_in_ a string",
        _set_fitted_state(n_features_in_="3"),
        CONFIG_FILE,
        "n_features_in_ must be a positive integer",
    ),
    (
        "feature names too few",
        _set_fitted_state(feature_names_in_=["x0", "x1"]),
        CONFIG_FILE,
        "feature_names_in_ has 2 names but n_features_in_ is 3",
    ),
    (
        "posterior variable renamed",
        _rename_posterior("coef_std", "coef_standard"),
        TRACE_FILE,
        r"does not match the model LinearRegression builds: the model's variable 'coef_std' is missing; "
        r"\['coef_standard'\] are not variables",
    ),
    (
        "posterior variable of the wrong shape",
        _rewrite_trace(_narrow_coefficients),
        TRACE_FILE,
        r"'coef_std' has shape \(2,\) per draw where the model's is \(3,\)",
    ),
    ("posterior draw NaN", _rewrite_trace(_nan_draw), TRACE_FILE, r"'noise_std' has 1 non-finite draw\(s\)"),
    (
        "training data of the wrong width",
        _rewrite_trace(_narrow_training_data),
        TRACE_FILE,
        r"'coef_std' has shape \(3,\) per draw where the model's is \(2,\)",
    ),
    ("posterior group missing", _drop_group("posterior"), TRACE_FILE, "has no posterior group"),
    ("observed data missing", _drop_group("observed_data"), TRACE_FILE, "has no observed_data group"),
]


@pytest.mark.parametrize("case, damage, file_name, problem", CASES, ids=[case[0] for case in CASES])
def test_damaged_model_is_refused_naming_file_and_problem(saved_model, tmp_path, case, damage, file_name, problem):
    model_dir = tmp_path / "model"
    shutil.copytree(saved_model, model_dir)
    damage(model_dir)
    for load in (mlflow_pmlearn.load_model, mlflow.pyfunc.load_model):
        with pytest.raises(MlflowException) as raised:
            load(str(model_dir))
        message = raised.value.message
        assert str(_data(model_dir) / file_name) in message, (case, message)
        assert re.search(problem, message, flags=re.DOTALL), (case, message)


def test_the_undamaged_copy_loads_and_predicts_as_saved(saved_model, regression_data, tmp_path):
    """The control: the copying itself breaks nothing, so each refusal above is the damage's."""
    model_dir = tmp_path / "model"
    shutil.copytree(saved_model, model_dir)
    X = regression_data[0].head(5)
    np.testing.assert_array_equal(
        mlflow_pmlearn.load_model(str(model_dir)).predict(X), mlflow_pmlearn.load_model(str(saved_model)).predict(X)
    )
