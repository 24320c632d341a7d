"""Hostile model files: each is refused by name before it takes memory or reads outside the model's folder.

The cases copy the LinearRegression that ``test_bad_files`` saves and make it hostile as an
attacker who can write all of a model's files would (updating the trace's checksum). The
memory bombs, and the escapes from the model's folder, are loaded in a child process whose
address space is capped (``RLIMIT_AS``; a real load peaks under 1 GiB), with
``mlflow_pmlearn.load_model`` and ``mlflow.pyfunc.load_model``: each must refuse by name,
never fail with a MemoryError. The other cases, which cannot allocate before their
refusal, are loaded in this process.
"""

from __future__ import annotations

import hashlib
import re
import resource
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import h5netcdf
import h5py
import mlflow.pyfunc
import pytest
import xarray as xr
import yaml
from conftest import isolated_environment
from mlflow.exceptions import MlflowException
from model_server import ModelServer
from test_bad_files import (
    _assign,
    _data,
    _edit_config,
    _rewrite_trace,
    _set_config,
    saved_model,  # noqa: F401  (the module's fixture: the model fitted and saved once)
)

import mlflow_pmlearn
from mlflow_pmlearn.safety import MAX_DOCUMENT_BYTES, MAX_MLMODEL_BYTES, MAX_TRACE_BYTES_VARIABLE
from mlflow_pmlearn.serialization import CONFIG_FILE, TRACE_FILE

#: The child's address-space cap: about four times what a real load of the model takes (0.8 GiB).
ADDRESS_SPACE = 3 * 2**30
#: Length of a declared chunk along a bombed dimension (no chunk is ever written).
CHUNK = 1 << 16
BOMB = 2_000_000_000

LOAD_WITHIN_CAP = f"""
import resource, sys
resource.setrlimit(resource.RLIMIT_AS, ({ADDRESS_SPACE}, {ADDRESS_SPACE}))
import mlflow.pyfunc, mlflow_pmlearn
from mlflow.exceptions import MlflowException
for load in (mlflow_pmlearn.load_model, mlflow.pyfunc.load_model):
    try:
        load(sys.argv[1])
    except MlflowException as error:
        print("refused:", error.message.replace("\\n", " "), file=sys.stderr)
    else:
        print("loaded", file=sys.stderr)
"""


def _load_within_cap(model_dir: Path) -> list[str]:
    """What each loader did with the model in a capped child process: ``loaded`` or ``refused: <message>``."""
    child = subprocess.run(
        [sys.executable, "-c", LOAD_WITHIN_CAP, str(model_dir)],
        capture_output=True,
        text=True,
        env=isolated_environment(),
        timeout=300,
    )
    assert child.returncode == 0 and "MemoryError" not in child.stderr, child.stderr[-3000:]
    outcomes = [line for line in child.stderr.splitlines() if line.startswith(("loaded", "refused: "))]
    assert len(outcomes) == 2, child.stderr[-3000:]
    return outcomes


def _hostile_copy(saved_model: Path, tmp_path: Path, damage: Callable[[Path], None]) -> Path:
    model_dir = tmp_path / "model"
    shutil.copytree(saved_model, model_dir)
    damage(model_dir)
    return model_dir


# -- ways to make a copy of the model hostile --------------------------------------------------


def _declare(group: str, dimension: str, size: int) -> Callable[[Path], None]:
    """The trace, its ``dimension`` of ``group`` declared ``size`` long, the checksum updated.

    Every variable along it is re-created in chunked storage that nothing is written to:
    HDF5 allocates a chunk only when it is written, so the file stays small and valid
    NetCDF, while reading it would allocate the whole declared array.
    """

    def damage(model_dir: Path) -> None:
        path = _data(model_dir) / TRACE_FILE
        dataset = xr.load_datatree(path, engine="h5netcdf")[group].to_dataset()
        along = {name: variable for name, variable in dataset.variables.items() if dimension in variable.dims}
        _rewrite_trace(lambda idata: _assign(idata, group, dataset.drop_vars(list(along))))(model_dir)
        with h5netcdf.File(path, "a") as file:
            file[group].dimensions[dimension] = size
            for name, variable in along.items():
                chunks = tuple(CHUNK if dim == dimension else length for dim, length in variable.sizes.items())
                file[group].create_variable(name, variable.dims, variable.dtype, chunks=chunks)
        _set_config(trace_sha256=hashlib.sha256(path.read_bytes()).hexdigest())(model_dir)

    return damage


def _both(*damages: Callable[[Path], None]) -> Callable[[Path], None]:
    def damage(model_dir: Path) -> None:
        for each in damages:
            each(model_dir)

    return damage


def _pad_config(model_dir: Path) -> None:
    """``estimator.json``, still valid JSON, padded with blanks to one byte over the limit."""
    path = _data(model_dir) / CONFIG_FILE
    text = path.read_text()
    path.write_text(text + " " * (MAX_DOCUMENT_BYTES + 1 - len(text)))


def _set_mlmodel(flavors: tuple[str, ...] = ("pmlearn", "python_function"), **fields) -> Callable[[Path], None]:
    def damage(model_dir: Path) -> None:
        path = model_dir / "MLmodel"
        mlmodel = yaml.safe_load(path.read_text())
        for flavor in flavors:
            mlmodel["flavors"][flavor].update(fields)
        path.write_text(yaml.safe_dump(mlmodel))

    return damage


def _link_outside(name: str) -> Callable[[Path], None]:
    """``name`` (relative to the model's folder) moved out of it, a symbolic link left in its place."""

    def damage(model_dir: Path) -> None:
        inside = model_dir / name
        outside = model_dir.parent / "elsewhere" / inside.name
        outside.parent.mkdir()
        inside.rename(outside)
        inside.symlink_to(outside)

    return damage


def _edit_trace_file(edit: Callable[[h5py.File], None]) -> Callable[[Path], None]:
    """The trace changed through HDF5 itself, the checksum updated."""

    def damage(model_dir: Path) -> None:
        path = _data(model_dir) / TRACE_FILE
        with h5py.File(path, "a") as file:
            edit(file)
        _set_config(trace_sha256=hashlib.sha256(path.read_bytes()).hexdigest())(model_dir)

    return damage


def _add_link(name: str, link: Callable[[h5py.File], object]) -> Callable[[Path], None]:
    return _edit_trace_file(lambda file: file.__setitem__(name, link(file)))


def _delete_seed(file: h5py.File) -> None:
    del file["posterior"].attrs["pmlearn_seed"]


def _set_params(**params) -> Callable[[Path], None]:
    return _edit_config(lambda config: config["params"].update(params))


def _write_mlmodel(content: str) -> Callable[[Path], None]:
    return lambda model_dir: (model_dir / "MLmodel").write_text(content)


def _three_chains(idata: xr.DataTree) -> xr.DataTree:
    posterior = idata["posterior"].to_dataset()
    chains = [posterior.assign_coords(chain=[chain]) for chain in range(3)]
    return _assign(idata, "posterior", xr.concat(chains, "chain"))


def _fewer_targets(idata: xr.DataTree) -> xr.DataTree:
    observed = idata["observed_data"].to_dataset()
    return _assign(idata, "observed_data", observed.isel({observed["y_obs"].dims[0]: slice(0, 10)}))


TRACE = f"estimator/{TRACE_FILE}"
OVER_BUDGET = (
    r"declares [\d,]+ bytes of arrays once decoded, over the limit of 2,147,483,648 bytes "
    r"\(MLFLOW_PMLEARN_MAX_TRACE_BYTES\); refusing"
)

# (case, damage, the file the refusal names (relative to the model's folder), the refusal)
HOSTILE = [
    (
        "draw bomb",
        _declare("posterior", "draw", BOMB),
        TRACE,
        OVER_BUDGET + r".*posterior/coef \(1, 2000000000, 3\) of float64: 48,000,000,000 bytes",
    ),
    (
        "draw bomb, estimator.json agreeing",
        _both(_declare("posterior", "draw", BOMB), _set_params(n_draws=BOMB)),
        TRACE,
        OVER_BUDGET + r".*posterior/\w+ \(1, 2000000000\) of float64: 16,000,000,000 bytes decoded",
    ),
    (
        "variable bomb",
        _declare("posterior", "coef_std_dim_0", BOMB),
        TRACE,
        OVER_BUDGET + r".*posterior/coef_std \(1, 200, 2000000000\) of float64",
    ),
    (
        "training-data bomb",
        _declare("constant_data", "X_dim_0", BOMB),
        TRACE,
        OVER_BUDGET + r".*constant_data/X \(2000000000, 3\) of float64: 48,000,000,000 bytes",
    ),
    (
        "huge estimator.json",
        _pad_config,
        f"estimator/{CONFIG_FILE}",
        r"has 16,777,217 bytes, over the limit of 16,777,216 bytes for the model's estimator.json; refusing",
    ),
    ("MLmodel data: ../..", _set_mlmodel(data="../.."), "", r"leads outside the model's folder"),
    (
        "trace a link outside the folder",
        _link_outside(TRACE),
        TRACE,
        r"leads outside .*/estimator \(it is a link to .*/elsewhere/trace.nc\)",
    ),
]


@pytest.mark.parametrize("case, damage, file_name, refusal", HOSTILE, ids=[case[0] for case in HOSTILE])
def test_hostile_model_is_refused_by_name_within_a_memory_cap(saved_model, tmp_path, case, damage, file_name, refusal):
    model_dir = _hostile_copy(saved_model, tmp_path, damage)
    for outcome in _load_within_cap(model_dir):
        assert outcome.startswith("refused: "), (case, outcome)
        assert str(model_dir / file_name) in outcome, (case, outcome)
        assert re.search(refusal, outcome), (case, outcome)


def test_the_unharmed_copy_loads_within_the_same_cap(saved_model, tmp_path):
    """The control: the cap leaves room for a real load, so the refusals above are the loader's."""
    assert _load_within_cap(_hostile_copy(saved_model, tmp_path, lambda model_dir: None)) == ["loaded", "loaded"]


@pytest.mark.slow
def test_serving_a_draw_bomb_fails_to_start_with_the_refusal(saved_model, tmp_path):
    model_dir = _hostile_copy(saved_model, tmp_path, _declare("posterior", "draw", BOMB))
    server = ModelServer(str(model_dir), tmp_path)
    try:
        # Capped before it imports anything; its uvicorn worker inherits the cap.
        resource.prlimit(server.process.pid, resource.RLIMIT_AS, (ADDRESS_SPACE, ADDRESS_SPACE))
        with pytest.raises(RuntimeError, match="server exited"):
            server.wait_until_ready(timeout=120)
    finally:
        server.stop()
    log = server.log_path.read_text()
    assert re.search(OVER_BUDGET, log) and str(model_dir / TRACE) in log, log[-3000:]
    assert "MemoryError" not in log, log[-3000:]


# -- refused before anything large is read: loaded in this process ----------------------------

BOTH = (mlflow_pmlearn.load_model, mlflow.pyfunc.load_model)
FLAVOR_ONLY = (mlflow_pmlearn.load_model,)  # mlflow.pyfunc reads MLmodel and its code path itself

# (case, damage, loaders, the file the refusal names (relative to the model's folder), the refusal)
REFUSED = [
    (
        "draws other than n_draws",
        _set_params(n_draws=100),
        BOTH,
        TRACE,
        r"does not fit the LinearRegression that estimator.json describes: the posterior has 200 draws per "
        r"chain where n_draws is 100",
    ),
    (
        "more chains than n_chains",
        _rewrite_trace(_three_chains),
        BOTH,
        TRACE,
        r"the posterior has 3 chains, more than n_chains=2",
    ),
    (
        "training rows disagree",
        _rewrite_trace(_fewer_targets),
        BOTH,
        TRACE,
        r"the training data disagree on their number of rows \(constant_data/X has 120, observed_data/y_obs has 10\)",
    ),
    (
        "no pmlearn_seed",
        _edit_trace_file(_delete_seed),
        BOTH,
        TRACE,
        r"attribute 'pmlearn_seed' .* must be a non-negative integer; it is missing",
    ),
    (
        "external link in the trace",
        _add_link("posterior/outside", lambda file: h5py.ExternalLink("/etc/passwd", "/")),
        BOTH,
        TRACE,
        r"holds what a pmlearn trace does not: 'posterior/outside' is a link \(ExternalLink\)",
    ),
    (
        "soft link in the trace",
        _add_link("posterior/again", lambda file: h5py.SoftLink("/posterior/coef")),
        BOTH,
        TRACE,
        r"'posterior/again' is a link \(SoftLink\)",
    ),
    (
        "group under two names",
        _add_link("posterior/loop", lambda file: file["/"]),
        BOTH,
        TRACE,
        r"'posterior/loop' has 2 names",
    ),
    (
        "data folder a link outside",
        _link_outside("estimator"),
        BOTH,
        "estimator",
        r"leads outside .* \(it is a link to",
    ),
    (
        "data folder absolute",
        _set_mlmodel(("pmlearn",), data="/etc"),
        FLAVOR_ONLY,
        "",
        r"data folder '/etc' .* leads outside the model's folder",
    ),
    (
        "code folder '..'",
        _set_mlmodel(("pmlearn",), code="../code"),
        FLAVOR_ONLY,
        "",
        r"code folder '../code' .* leads outside the model's folder",
    ),
    (
        "huge MLmodel",
        _write_mlmodel(" " * (MAX_MLMODEL_BYTES + 1)),
        FLAVOR_ONLY,
        "MLmodel",
        r"over the limit of 1,048,576 bytes for the model's MLmodel",
    ),
]


@pytest.mark.parametrize("case, damage, loaders, file_name, refusal", REFUSED, ids=[case[0] for case in REFUSED])
def test_inconsistent_or_escaping_model_is_refused_by_name(
    saved_model, tmp_path, case, damage, loaders, file_name, refusal
):
    model_dir = _hostile_copy(saved_model, tmp_path, damage)
    for load in loaders:
        with pytest.raises(MlflowException) as raised:
            load(str(model_dir))
        message = raised.value.message
        assert str(model_dir / file_name) in message, (case, message)
        assert re.search(refusal, message), (case, message)


def test_the_trace_budget_is_set_by_its_environment_variable(saved_model, tmp_path, monkeypatch):
    """It limits the file, and the arrays it declares: here a million draws, in a small file."""
    model_dir = _hostile_copy(saved_model, tmp_path, _declare("posterior", "draw", 1_000_000))
    monkeypatch.setenv(MAX_TRACE_BYTES_VARIABLE, "10000")
    limit = r"over the limit of 10,000 bytes for the model's trace \(MLFLOW_PMLEARN_MAX_TRACE_BYTES\)"
    with pytest.raises(MlflowException, match=limit):
        mlflow_pmlearn.load_model(str(model_dir))
    monkeypatch.setenv(MAX_TRACE_BYTES_VARIABLE, "1000000")
    with pytest.raises(
        MlflowException, match=r"declares [\d,]+ bytes of arrays once decoded, over the limit of 1,000,000 bytes"
    ):
        mlflow_pmlearn.load_model(str(model_dir))
